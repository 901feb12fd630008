"""harness.lm_eval_tasks: every probe's text rendering exported as an lm-eval task.

The scoring tests run the real lm-eval (``simple_evaluate`` on the exported YAMLs, loaded
by a real ``TaskManager``) with a fake ``LM`` that knows every gold answer from the
exported documents: gold answers must score 1.0, wrong ones 0 (generation) or 0 and chance
(multiple choice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.model import LM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from harness import lm_eval_tasks as mod  # noqa: E402
from harness.lm_eval_tasks import PROBE_TASKS, export_probe_tasks, needle_subtask  # noqa: E402
from tasks import UnknownTaskError  # noqa: E402

N = 6  # documents per exported task (per needle length)
NEEDLE_LENGTHS = (32, 64, 128, 192, 256)  # the quick preset's grid
GENERATION = [t for t in PROBE_TASKS if t not in ("archbench_flipflop", "archbench_needle")]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Nothing may be downloaded: the variable, and datasets' copy of it read at import."""
    import datasets.config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_probe_tasks(cache_dir=tmp_path_factory.mktemp("cache"), n=N)


@pytest.fixture(scope="module")
def task_manager(exported) -> TaskManager:
    """lm-eval's own task index plus the export, as a user builds it."""
    return TaskManager(include_path=str(exported))


def read_docs(path: Path) -> dict[str, list[dict]]:
    """lm-eval task name -> its exported documents."""
    return {f.stem: [json.loads(line) for line in f.read_text().splitlines()] for f in sorted(path.glob("*.jsonl"))}


def wrong(answer: str) -> str:
    """The answer with its last character changed: same length, never equal."""
    last = answer[-1]
    swap = str((int(last) + 1) % 10) if last.isdigit() else ("y" if last == "x" else "x")
    return answer[:-1] + swap


class FakeLM(LM):
    """Answers from the exported documents, looked up by the prompt lm-eval sends.

    ``mode``: ``gold`` (the gold answer, after a space and followed by a newline and more
    text, cut at the request's stop sequences as a real backend does; the gold choice
    scores highest), ``wrong`` (a wrong answer; the gold choice scores lowest), or
    ``choice0`` / ``choice1`` (always prefer that choice, ignoring the prompt)."""

    def __init__(self, docs: dict[str, list[dict]], mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.gold: dict[str, str] = {}
        for task_docs in docs.values():
            for d in task_docs:
                assert self.gold.setdefault(d["prompt"], d["answer"]) == d["answer"], "one prompt, two answers"
        self.gen_kwargs: list[dict] = []
        self.contexts: list[str] = []

    def loglikelihood(self, requests):
        out = []
        for req in requests:
            context, continuation = req.args
            self.contexts.append(context)
            if self.mode in ("choice0", "choice1"):
                best = continuation == self.mode[-1]
            else:
                best = (continuation == self.gold[context]) == (self.mode == "gold")
            out.append((0.0 if best else -5.0, best))
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError("no exported task asks for rolling loglikelihoods")

    def generate_until(self, requests):
        out = []
        for req in requests:
            context, kwargs = req.args
            self.contexts.append(context)
            self.gen_kwargs.append(kwargs)
            gold = self.gold[context]
            assert kwargs["max_gen_toks"] >= len(gold)
            answer = gold if self.mode == "gold" else wrong(gold)
            text = f" {answer} \nnext line: {wrong(gold)}"
            stops = [text.index(s) for s in kwargs["until"] if s in text]
            out.append(text[: min(stops, default=len(text))])
        return out


def evaluate(model: FakeLM, tasks: list[str], task_manager: TaskManager) -> dict:
    return lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=task_manager, limit=N,
                                   bootstrap_iters=0, log_samples=False)


def test_every_yaml_loads_and_no_name_clashes_with_lm_eval(exported, task_manager):
    index = task_manager.task_index
    names = list(PROBE_TASKS) + [needle_subtask(L) for L in NEEDLE_LENGTHS]
    for name in names:
        assert Path(index[name].yaml_path).parent == exported, name
    assert sorted(p.stem for p in exported.glob("*.yaml")) == sorted(names)
    loaded = task_manager.load(list(PROBE_TASKS))
    assert sorted(loaded["tasks"]) == sorted(n for n in names if n != "archbench_needle")
    assert list(loaded["groups"]) == ["archbench_needle"]
    for name, task in loaded["tasks"].items():
        assert len(task.test_docs()) == N, name


@pytest.mark.parametrize("mode", ["gold", "wrong"])
def test_every_task_scores_gold_1_and_wrong_0(exported, task_manager, mode):
    docs = read_docs(exported)
    model = FakeLM(docs, mode)
    res = evaluate(model, list(PROBE_TASKS), task_manager)
    results = res["results"]
    expect = 1.0 if mode == "gold" else 0.0
    assert results["archbench_flipflop"]["acc,none"] == expect
    for name in GENERATION + [needle_subtask(L) for L in NEEDLE_LENGTHS]:
        assert results[name]["exact_match,none"] == expect, name
        assert res["n-samples"][name]["effective"] == N
    # the group's aggregate, weighted by size over its five lengths
    assert results["archbench_needle"]["exact_match,none"] == expect
    assert results["archbench_needle"]["sample_count"]["exact_match,none"] == len(NEEDLE_LENGTHS) * N
    # lm-eval sent every exported prompt verbatim, and stops generation at a newline
    assert sorted(set(model.contexts)) == sorted(d["prompt"] for ds in docs.values() for d in ds)
    assert all(kw["until"] == ["\n"] and kw["do_sample"] is False for kw in model.gen_kwargs)


def test_flipflop_constant_choices_score_the_label_shares_averaging_chance(exported):
    docs = read_docs(exported)["archbench_flipflop"]
    tm = TaskManager(include_path=str(exported), include_defaults=False)
    acc = {c: evaluate(FakeLM({"f": docs}, f"choice{c}"), ["archbench_flipflop"], tm)["results"]
           ["archbench_flipflop"]["acc,none"] for c in "01"}
    share0 = sum(d["answer"] == "0" for d in docs) / len(docs)
    assert acc["0"] == pytest.approx(share0) and acc["1"] == pytest.approx(1 - share0)
    assert (acc["0"] + acc["1"]) / 2 == pytest.approx(0.5)  # chance, as the metadata says
    cfg = tm.load(["archbench_flipflop"])["tasks"]["archbench_flipflop"].config
    assert cfg.metadata["archbench"]["chance"] == 0.5
    assert cfg.doc_to_choice == ["0", "1"] and cfg.output_type == "multiple_choice"


def test_results_trace_back_to_probe_config_and_seed(tmp_path):
    path = export_probe_tasks(["mqar"], tmp_path, seed=3, n=2, params={"mqar": {"num_pairs": 4}})
    tm = TaskManager(include_path=str(path), include_defaults=False)
    docs = read_docs(path)
    res = evaluate(FakeLM(docs, "gold"), ["archbench_mqar"], tm)
    meta = res["configs"]["archbench_mqar"]["metadata"]
    assert meta["version"] == mod.EXPORT_VERSION
    info = meta["archbench"]
    assert (info["probe"], info["preset"], info["split"], info["seed"]) == ("mqar", "quick", "test", 3)
    assert info["config"]["num_pairs"] == 4 and info["config"]["vocab_size"] == 256
    assert info["export"] == path.name
    assert [d["index"] for d in docs["archbench_mqar"]] == [0, 1]


def test_output_types_and_generation_budget(exported):
    tm = TaskManager(include_path=str(exported), include_defaults=False)
    docs = read_docs(exported)
    tasks = tm.load(GENERATION + [needle_subtask(L) for L in NEEDLE_LENGTHS])["tasks"]
    for name, task in tasks.items():
        cfg = task.config
        assert cfg.output_type == "generate_until", name
        assert [m["metric"] for m in cfg.metric_list] == ["exact_match"]
        longest = max(len(d["answer"]) for d in docs[name])
        assert cfg.generation_kwargs["max_gen_toks"] == longest + 4


def test_needle_docs_carry_length_and_depth_per_length_subtask(exported):
    from tasks import make_task

    grid = make_task("needle", preset="quick")
    cells = grid.grid_cells
    docs = read_docs(exported)
    for L in NEEDLE_LENGTHS:
        sub = docs[needle_subtask(L)]
        assert len(sub) == N
        for d in sub:
            assert d["length"] == L and (d["length"], d["depth"]) == cells[d["index"] % len(cells)]
        # the first N rows of a length sweep its depths in order
        assert [d["depth"] for d in sub] == [c[1] for c in cells if c[0] == L][:N]


def test_export_is_deterministic_and_reused(tmp_path):
    a = export_probe_tasks(cache_dir=tmp_path / "a", n=4)
    b = export_probe_tasks(cache_dir=tmp_path / "b", n=4)
    assert a.name == b.name
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        ta, tb = (a / name).read_bytes(), (b / name).read_bytes()
        if name.endswith(".yaml"):  # they differ only in the absolute path of the data
            tb = tb.replace(str(b).encode(), str(a).encode())
        assert ta == tb, name
    mtimes = {p.name: p.stat().st_mtime_ns for p in a.iterdir()}
    assert export_probe_tasks(cache_dir=tmp_path / "a", n=4) == a  # reused, not rewritten
    assert {p.name: p.stat().st_mtime_ns for p in a.iterdir()} == mtimes
    # names in another order, or as probe names, are the same export
    assert export_probe_tasks(["needle", "archbench_mqar"], tmp_path / "a", n=4) == \
        export_probe_tasks(["mqar", "archbench_needle"], tmp_path / "a", n=4)


def test_default_cache_dir_is_archbench_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "env-cache"))
    path = export_probe_tasks(["multiplication"], n=1)
    assert path.parent == tmp_path / "env-cache" / "lm_eval_tasks"


def test_another_seed_gives_other_documents(tmp_path):
    s0 = read_docs(export_probe_tasks(cache_dir=tmp_path, seed=0, n=4))
    s1_path = export_probe_tasks(cache_dir=tmp_path, seed=1, n=4)
    s1 = read_docs(s1_path)
    assert s0.keys() == s1.keys()
    for name in s0:
        assert s0[name] != s1[name], name
    assert len(list((tmp_path / "lm_eval_tasks").iterdir())) == 2


def test_n_caps_documents_and_keeps_a_prefix(tmp_path):
    full = read_docs(export_probe_tasks(["mqar", "needle", "modular_addition"], tmp_path))
    capped = read_docs(export_probe_tasks(["mqar", "needle", "modular_addition"], tmp_path, n=3))
    assert len(full["archbench_mqar"]) == 512 and len(full["archbench_modular_addition"]) == 884
    assert sum(len(full[needle_subtask(L)]) for L in NEEDLE_LENGTHS) == 512
    for name, docs in capped.items():
        assert docs == full[name][:3], name


def test_unknown_names_list_close_matches(tmp_path):
    with pytest.raises(ValueError, match=r"'archbench_mqr' \(did you mean 'archbench_mqar'") as e:
        export_probe_tasks(["archbench_mqr"], tmp_path)
    for name in PROBE_TASKS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match=r"'state' \(did you mean 'state_tracking'\?\)"):
        export_probe_tasks("state", tmp_path)  # one name as a string; an abbreviation
    with pytest.raises(ValueError, match=r"did you mean 'flipflop'"):
        export_probe_tasks(["flipflop"], tmp_path, params={"flip_flop": {"seq_len": 32}})
    assert not (tmp_path / "lm_eval_tasks").exists()


def test_params_override_preset_and_split(tmp_path):
    base = export_probe_tasks(["flipflop"], tmp_path, n=2)
    sparse = export_probe_tasks(["flipflop"], tmp_path, n=2, params={"flipflop": {"split": "sparse", "seq_len": 32}})
    assert base != sparse
    meta = json.loads((sparse / "archbench_export.json").read_text())["tasks"]["archbench_flipflop"]
    assert meta["split"] == "sparse" and meta["config"]["seq_len"] == 32
    assert all(len(d["prompt"]) == 31 for d in read_docs(sparse)["archbench_flipflop"])
    with pytest.raises(ValueError, match="grid"):
        export_probe_tasks(["needle"], tmp_path, params={"needle": {"split": "test"}})
    with pytest.raises(UnknownTaskError, match="paper-x"):
        export_probe_tasks(["mqar"], tmp_path, params={"mqar": {"preset": "paper-x"}})


def test_a_failed_export_leaves_nothing_half_written(tmp_path, monkeypatch):
    real = mod._write_yaml
    calls = []

    def failing(path, cfg):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, cfg)

    monkeypatch.setattr(mod, "_write_yaml", failing)
    with pytest.raises(OSError, match="disk full"):
        export_probe_tasks(cache_dir=tmp_path, n=2)
    assert list((tmp_path / "lm_eval_tasks").iterdir()) == []
    monkeypatch.setattr(mod, "_write_yaml", real)
    path = export_probe_tasks(cache_dir=tmp_path, n=2)
    assert len(list(path.glob("*.yaml"))) == len(PROBE_TASKS) + len(NEEDLE_LENGTHS)
