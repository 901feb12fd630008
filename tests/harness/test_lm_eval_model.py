"""The lm-eval adapter on a text model archbench trains here: lm-eval's numbers equal the
model's own, computed directly; through `simple_evaluate`, `archbench eval --lm-tasks` and
lm-eval's command line (`archbench-lm-eval --model archbench`).  Offline: every task and
its data are local files the test writes."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys

import pytest
import torch

pytest.importorskip("lm_eval")

from harness.lm_eval_model import ArchbenchLM  # noqa: E402

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
SEQ = 24
SENTENCE = "the quick brown fox jumps over the lazy dog. "
LONG_TEXT = "".join(f"{i} {SENTENCE}" for i in range(12))  # ~600 bytes: many windows of 24


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A text model trained by archbench on text written here, plus local lm-eval tasks."""
    from harness.config import parse_run_config
    from harness.train import train

    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text(SENTENCE * 300)
    checkpoints = {}
    for kind in ("bytes", "bpe"):
        cfg = parse_run_config({
            "arch": {"name": "transformer", "d_model": 48, "n_layers": 2, "n_heads": 2},
            "task": {"name": "text", "params": {"files": [str(corpus)], "seq_len": SEQ, "tokenizer": kind,
                                               "vocab_size": 280}},
            "train": {"steps": 60, "eval_every": 60, "batch_size": 16}, "optimizer": {"lr": 3e-3}})
        r = train(cfg, checkpoint_dir=root / kind)
        assert r.status == "done", r.error
        checkpoints[kind] = str(root / kind / r.run_id)
    tasks = root / "tasks"
    tasks.mkdir()
    write_tasks(tasks)
    return {"root": root, "tasks": tasks, **checkpoints}


MC_DOCS = [
    {"q": "the quick brown", "choices": [" fox", " dog", " cat"], "gold": 0},
    {"q": "jumps over the", "choices": [" lazy", " quick", " brown dog"], "gold": 0},
    {"q": "", "choices": ["the", "fox"], "gold": 0},  # empty context: the end-of-text prefix
    {"q": "the lazy dog. " * 4, "choices": [" the quick", "x" * 40], "gold": 0},  # longer than the window
]
GEN_DOCS = [{"q": "the quick ", "a": "brown"}, {"q": "over the ", "a": "lazy"}, {"q": "fox ", "a": "jumps"}]


def write_tasks(d):
    def dump(name, docs):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))

    dump("mc", MC_DOCS)
    dump("gen", GEN_DOCS)
    dump("ppl", [{"text": LONG_TEXT}, {"text": SENTENCE}])
    common = "dataset_path: json\ntest_split: test\nmetadata:\n  version: 1.0\n"
    (d / "mc.yaml").write_text(
        f"task: t_mc\n{common}dataset_kwargs:\n  data_files:\n    test: {d / 'mc.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: gold\n"
        "target_delimiter: ''\nmetric_list:\n  - metric: acc\n")
    (d / "gen.yaml").write_text(
        f"task: t_gen\n{common}dataset_kwargs:\n  data_files:\n    test: {d / 'gen.jsonl'}\n"
        "output_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\ntarget_delimiter: ''\n"
        "generation_kwargs:\n  until: [' ']\n  max_gen_toks: 12\nmetric_list:\n  - metric: exact_match\n")
    (d / "ppl.yaml").write_text(
        f"task: t_ppl\n{common}dataset_kwargs:\n  data_files:\n    test: {d / 'ppl.jsonl'}\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: bits_per_byte\n  - metric: word_perplexity\n")


# -- direct computations with the model, independent of the adapter ---------------------------

@torch.no_grad()
def logprobs(model, ids):
    return torch.log_softmax(model(torch.tensor([ids])).float(), -1)[0]


def direct_loglikelihood(lm, context, continuation):
    """log p(continuation | context) as lm-eval defines it: the pair encoded whole (trailing
    spaces of the context moved to the continuation), an empty context replaced by end-of-text,
    the input cut from the left to the model's window."""
    tok, L = lm.tok, lm.max_length
    if context == "":
        ctx, cont = [tok.eot_id], tok.encode(continuation)
    else:
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = tok.encode(context + continuation)
        ctx = tok.encode(context)
        ctx, cont = whole[: len(ctx)], whole[len(ctx):]
    ids = (ctx + cont)[-(L + 1):]
    lp = logprobs(lm.model, ids[:-1])
    k = min(len(cont), len(ids) - 1)
    rows = lp[len(ids) - 1 - k:]
    targets = torch.tensor(ids[len(ids) - k:])
    return float(rows.gather(-1, targets[:, None]).sum()), bool((rows.argmax(-1) == targets).all())


def direct_rolling(lm, text):
    """Every token of ``text`` predicted once, in disjoint windows of max_length predictions."""
    full = [lm.tok.eot_id] + lm.tok.encode(text)
    L, total, s = lm.max_length, 0.0, 1
    while s < len(full):
        e = min(len(full), s + L)
        a = max(0, e - 1 - L)
        lp = logprobs(lm.model, full[a: e - 1])
        total += sum(float(lp[t - 1 - a, full[t]]) for t in range(s, e))
        s = e
    return total


def direct_greedy(lm, context, n):
    ids = lm.tok.encode(context)
    for _ in range(n):
        ids.append(int(logprobs(lm.model, ids[-lm.max_length:])[-1].argmax()))
    return lm.tok.decode(ids[len(lm.tok.encode(context)):])


def evaluate(lm, tasks, lab, **kw):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(model=lm, tasks=tasks, task_manager=TaskManager(include_path=str(lab["tasks"])),
                           log_samples=True, **kw)


@pytest.mark.parametrize("kind", ["bytes", "bpe"])
def test_multiple_choice_loglikelihoods_equal_the_model_computed_directly(lab, kind):
    lm = ArchbenchLM(checkpoint=lab[kind], batch_size=3)
    assert lm.max_length == SEQ
    res = evaluate(lm, ["t_mc"], lab)
    samples = res["samples"]["t_mc"]
    assert len(samples) == len(MC_DOCS)
    n_checked = 0
    for s in samples:
        for (ctx, cont), (ll, greedy) in zip(s["arguments"], s["filtered_resps"]):
            want, want_greedy = direct_loglikelihood(lm, ctx, cont)
            assert ll == pytest.approx(want, abs=1e-4)
            assert greedy == want_greedy
            n_checked += 1
    assert n_checked == sum(len(d["choices"]) for d in MC_DOCS)
    # the trained model prefers the sentence's own words
    assert res["results"]["t_mc"]["acc,none"] >= 0.75


@pytest.mark.parametrize("kind", ["bytes", "bpe"])
def test_rolling_loglikelihood_over_a_text_longer_than_the_window_is_the_windowed_sum(lab, kind):
    lm = ArchbenchLM(checkpoint=lab[kind], batch_size=4)
    assert len(lm.tok.encode(LONG_TEXT)) > 4 * SEQ
    res = evaluate(lm, ["t_ppl"], lab)
    got = {s["doc"]["text"]: s["filtered_resps"][0] for s in res["samples"]["t_ppl"]}
    for text, ll in got.items():
        assert ll == pytest.approx(direct_rolling(lm, text), abs=1e-4)
    # and lm-eval's bits per byte is that sum over the documents' bytes
    n_bytes = sum(len(t.encode()) for t in got)
    bpb = -sum(got.values()) / n_bytes / math.log(2)
    assert res["results"]["t_ppl"]["bits_per_byte,none"] == pytest.approx(bpb, rel=1e-9)


def test_a_sliding_stride_gives_every_token_more_context_and_still_scores_each_once(lab):
    lm = ArchbenchLM(checkpoint=lab["bytes"], rolling_stride=8)
    ids = lm.tok.encode(LONG_TEXT)
    windows = lm.rolling_windows(ids)
    predicted = [t for _, cont in windows for t in cont]
    assert predicted == ids
    assert all(len(ctx) + len(cont) - 1 <= SEQ for ctx, cont in windows)
    assert all(len(ctx) >= SEQ - 8 for ctx, _ in windows[1:])


def test_greedy_generation_matches_direct_decoding_and_stops_at_stop_strings(lab):
    lm = ArchbenchLM(checkpoint=lab["bytes"], batch_size=2)
    res = evaluate(lm, ["t_gen"], lab)
    for s in res["samples"]["t_gen"]:
        ctx, kw = s["arguments"][0]
        raw = direct_greedy(lm, ctx, 12)
        want = raw.split(" ")[0]
        assert s["filtered_resps"][0] == want and " " not in want
    assert res["results"]["t_gen"]["exact_match,none"] >= 2 / 3  # the model learnt the sentence

    class Req:
        def __init__(self, *args):
            self.args = args

    raw = direct_greedy(lm, "the quick ", 16)
    cut = next(j for j in range(1, len(raw)) if raw[j] not in raw[:j])  # a stop string first seen at j
    got = lm.generate_until([Req("the quick ", {"until": [raw[j:j + 2] for j in (cut,)], "max_gen_toks": 16}),
                             Req("the quick ", {"until": [], "max_gen_toks": 5}),
                             Req("the quick ", {"until": ["\n"], "max_gen_toks": 16})])
    assert got[0] == raw[:cut]
    assert got[1] == direct_greedy(lm, "the quick ", 5)
    assert got[2] == raw


def test_archbench_eval_lm_tasks_stores_scores_and_standard_errors(lab, tmp_path):
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "harness.cli", "eval", lab["bytes"], "--lm-tasks", "t_mc,t_ppl,t_gen",
           "--include-path", str(lab["tasks"]), "--db", str(db), "--format", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    printed = json.loads(p.stdout)
    con = sqlite3.connect(db)
    rows = con.execute("select benchmark, metric, value, stderr, n_samples, num_fewshot, task_version, "
                       "lm_eval_version, model_kind, model_sha256 from benchmark_scores").fetchall()
    assert {(r[0], r[1]) for r in rows} == {("t_mc", "acc"), ("t_ppl", "bits_per_byte"),
                                             ("t_ppl", "word_perplexity"), ("t_gen", "exact_match")}
    assert len(printed) == len(rows)
    by = {(r[0], r[1]): r for r in rows}
    import lm_eval

    acc = by[("t_mc", "acc")]
    assert acc[3] is not None and acc[3] > 0 or acc[2] in (0.0, 1.0)  # a standard error where lm-eval gives one
    assert by[("t_ppl", "bits_per_byte")][3] is None  # lm-eval's "N/A" is NULL
    assert acc[4] == len(MC_DOCS) and acc[5] == 0 and acc[6] == "1.0" and acc[7] == lm_eval.__version__
    meta = json.loads(open(os.path.join(lab["bytes"], "config.json")).read())
    assert acc[8] == "archbench" and acc[9] == meta["weights_sha256"]
    # the same numbers as simple_evaluate on the same model
    res = evaluate(ArchbenchLM(checkpoint=lab["bytes"]), ["t_mc", "t_ppl"], lab)
    assert by[("t_mc", "acc")][2] == pytest.approx(res["results"]["t_mc"]["acc,none"])
    assert by[("t_ppl", "bits_per_byte")][2] == pytest.approx(res["results"]["t_ppl"]["bits_per_byte,none"])


def test_lm_eval_command_line_runs_the_archbench_model(lab, tmp_path):
    out = tmp_path / "out"
    cmd = ["archbench-lm-eval", "--model", "archbench", "--model_args", f"checkpoint={lab['bytes']}",
           "--tasks", "t_mc,t_ppl", "--include_path", str(lab["tasks"]), "--device", "cpu",
           "--output_path", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    (result_file,) = out.rglob("results_*.json")
    cli = json.loads(result_file.read_text())["results"]
    res = evaluate(ArchbenchLM(checkpoint=lab["bytes"]), ["t_mc", "t_ppl"], lab)
    assert cli["t_mc"]["acc,none"] == pytest.approx(res["results"]["t_mc"]["acc,none"])
    assert cli["t_ppl"]["bits_per_byte,none"] == pytest.approx(res["results"]["t_ppl"]["bits_per_byte,none"],
                                                               rel=1e-9)


def test_user_errors_name_the_fix(lab, tmp_path):
    from harness.errors import UserError
    from harness.lm_eval_run import run_lm_eval

    probe_ckpt = tmp_path / "probe"
    from harness.config import parse_run_config
    from harness.train import train

    cfg = parse_run_config({"arch": {"name": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 1},
                            "task": {"name": "flipflop", "preset": "quick"}, "train": {"steps": 1}})
    r = train(cfg, checkpoint_dir=probe_ckpt)
    with pytest.raises(UserError, match="not a text model; lm-eval needs a text model"):
        run_lm_eval(str(probe_ckpt / r.run_id), "t_mc", include_path=[str(lab["tasks"])])
    with pytest.raises(UserError, match=r"unknown lm-eval task 't_mcc' \(close: t_mc"):
        run_lm_eval(lab["bytes"], "t_mcc", include_path=[str(lab["tasks"])])
    with pytest.raises(UserError, match="--include-path .*no such directory"):
        run_lm_eval(lab["bytes"], "t_mc", include_path=[str(tmp_path / "nope")])
    p = subprocess.run([sys.executable, "-m", "harness.cli", "eval", lab["bytes"], "--lm-tasks", "t_mcc",
                        "--include-path", str(lab["tasks"]), "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "close: t_mc" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.db").exists()
