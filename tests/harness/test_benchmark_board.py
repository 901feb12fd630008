"""The benchmark board (``archbench leaderboard --benchmarks``): lm-eval scores ranked like with like.

Rows are written straight into a temporary SQLite store with ``Store.record_benchmark_scores``,
as ``archbench eval --lm-tasks`` writes them; no lm-eval run is needed.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness import queries
from harness.benchmark_board import (BENCHMARK_BOARD_COLUMNS, benchmark_board_columns, plus_minus, rank_benchmarks,
                                     shown_table)
from harness.cli import app
from harness.store import Store

T0 = datetime(2026, 1, 1)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def row(model: str, benchmark: str = "hellaswag", value: float | None = 0.5, stderr: float | None = 0.01, *,
        metric: str = "acc_norm", hib: bool | None = True, filt: str = "none", shots: int | None = 0,
        limit: float | None = None, minutes: int = 0, kind: str = "archbench", hashed: bool = True,
        run_id: str | None = None, version: str = "1.0") -> dict:
    ref = f"hf:{model}" if kind == "hf" else f"/checkpoints/{model}"
    return dict(model=ref, model_kind=kind, model_sha256=sha(model) if hashed else None, label=model, run_id=run_id,
                benchmark=benchmark, metric=metric, filter=filt, value=value, stderr=stderr, higher_is_better=hib,
                n_samples=100, num_fewshot=shots, limit=limit, task_version=version, lm_eval_version="0.4.9",
                settings={"tasks": [benchmark]}, created_at=T0 + timedelta(minutes=minutes))


def both(model: str, hella: float, arc: float, **kw) -> list[dict]:
    """A model's lm-eval call on hellaswag (acc and acc_norm) and arc_easy."""
    return [row(model, "hellaswag", hella, **kw), row(model, "hellaswag", hella - 0.1, metric="acc", **kw),
            row(model, "arc_easy", arc, **kw), row(model, "arc_easy", arc + 0.05, metric="acc", **kw)]


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'results.db'}"


def board_of(url: str, *batches: list[dict]):
    store = Store(url)
    for rows in batches:
        store.record_benchmark_scores(rows)
    store.close()
    ro = queries.open_store(url)
    try:
        return queries.benchmark_leaderboard(ro)
    finally:
        ro.close()


def by_model(table) -> dict:
    return {r["model"]: r for r in table.to_dict(orient="records")}


def test_the_latest_row_wins(url):
    board = board_of(url, both("a", 0.3, 0.4), both("a", 0.6, 0.7, minutes=5), both("b", 0.5, 0.5, minutes=1),
                     # the same moment: the later row (higher id) wins
                     [row("c", "hellaswag", 0.2, minutes=2), row("c", "hellaswag", 0.9, minutes=2),
                      row("c", "arc_easy", 0.3, minutes=2)])
    got = by_model(board.table)
    assert got["a"]["hellaswag (0-shot)"] == pytest.approx(0.6)
    assert got["a"]["score"] == pytest.approx((0.6 + 0.7) / 2)  # acc_norm, not acc
    assert got["c"]["hellaswag (0-shot)"] == pytest.approx(0.9)
    assert list(board.table["model"]) == ["a", "c", "b"]
    assert list(board.table["rank"]) == [1, 2, 3]


def test_reference_set_and_incomplete_models(url):
    rows = both("a", 0.6, 0.6) + both("b", 0.5, 0.5) + both("c", 0.4, 0.4)
    rows += [row("d", "hellaswag", 0.9)]  # a model scored on one benchmark only
    rows += [row("e", "hellaswag", 0.9), row("e", "arc_easy", 0.9, shots=5)]  # 5-shot is another cell
    rows += [row("f", "arc_easy", 0.9, limit=10), row("f", "hellaswag", 0.9)]  # so is a subset of documents
    board = board_of(url, rows)
    assert list(board.table["model"]) == ["a", "b", "c"]
    assert (board.table["benchmarks"] == 2).all()
    missing = dict(zip(board.incomplete["model"], board.incomplete["missing"]))
    assert missing == {"d": "arc_easy (0-shot)", "e": "arc_easy (0-shot)", "f": "arc_easy (0-shot)"}
    assert set(board.incomplete["benchmarks"]) == {1}
    ref = board.cells[board.cells["reference"]]
    assert set(ref["cell"]) == {"hellaswag (0-shot)", "arc_easy (0-shot)"}
    assert {"arc_easy (5-shot)", "arc_easy (0-shot, limit 10)"} <= set(board.cells["cell"])
    assert any("limit" in n for n in board.notes)


def test_a_null_stderr_stays_null(url):
    board = board_of(url, both("a", 0.6, 0.8), [row("b", "hellaswag", 0.7, None), row("b", "arc_easy", 0.7, 0.03)])
    got = by_model(board.table)
    assert got["a"]["score_se"] == pytest.approx(math.sqrt(0.01**2 + 0.01**2) / 2)
    assert math.isnan(got["b"]["score_se"]) and got["b"]["score"] == pytest.approx(0.7)
    assert math.isnan(got["b"]["hellaswag (0-shot) stderr"])
    shown = by_model(shown_table(board))
    assert shown["b"]["score"] == "0.7000 ± -" and shown["b"]["hellaswag (0-shot)"] == "0.7000 ± -"
    assert shown["b"]["arc_easy (0-shot)"] == "0.7000 ± 0.0300"
    assert shown["a"]["score"] == f"0.7000 ± {math.sqrt(2e-4) / 2:.4f}"
    assert any("stderr is unknown" in n for n in board.notes)


def test_a_lower_is_better_benchmark_is_shown_but_not_averaged(url):
    wikitext = [row("a", "wikitext", 1.1, None, metric="word_perplexity", hib=False),
                row("a", "wikitext", 0.9, None, metric="bits_per_byte", hib=False)]
    board = board_of(url, both("a", 0.6, 0.8) + wikitext, both("b", 0.5, 0.5))
    got = by_model(board.table)
    assert list(board.table["model"]) == ["a", "b"]  # b lacks wikitext, yet is ranked
    assert got["a"]["score"] == pytest.approx(0.7) and got["a"]["benchmarks"] == 2
    assert got["a"]["wikitext (0-shot)"] == pytest.approx(0.9)  # bits_per_byte shown
    assert math.isnan(got["b"]["wikitext (0-shot)"])
    cell = board.cells.set_index("cell").loc["wikitext (0-shot)"]
    assert cell["metric"] == "bits_per_byte" and not cell["averaged"] and not cell["reference"]
    col = {c.name: c for c in benchmark_board_columns(board)}["wikitext (0-shot)"]
    assert not col.best and "lower is better" in col.help
    assert by_model(shown_table(board))["b"]["wikitext (0-shot)"] == "-"


def test_ties_share_a_rank(url):
    board = board_of(url, both("a", 0.6, 0.8), both("b", 0.8, 0.6), both("c", 0.9, 0.9), both("d", 0.1, 0.2))
    assert list(board.table["model"]) == ["c", "a", "b", "d"]  # a tie is listed by name
    assert list(board.table["rank"]) == [1, 2, 2, 4]


def test_headline_metric_and_filter(url):
    gsm = [row(m, "gsm8k", v, metric="exact_match", filt=f) for m, vs in (("a", (0.2, 0.4)), ("b", (0.3, 0.1)))
           for f, v in zip(("strict-match", "flexible-extract"), vs)]
    squad = [row(m, "squad", v, metric=k, hib=h) for m, v in (("a", 0.5), ("b", 0.7))
             for k, h in (("loss", False), ("f1", True), ("em", True))]
    board = board_of(url, gsm + squad)
    cells = board.cells.set_index("benchmark")
    # exact_match, no "none" filter: the first one stored
    assert (cells.loc["gsm8k", "metric"], cells.loc["gsm8k", "filter"]) == ("exact_match", "strict-match")
    assert cells.loc["squad", "metric"] == "f1"  # the first higher-is-better metric
    got = by_model(board.table)
    assert got["a"]["gsm8k (0-shot)"] == pytest.approx(0.2) and got["b"]["squad (0-shot)"] == pytest.approx(0.7)


def test_models_are_their_weights_or_their_hub_id(url):
    # one checkpoint path holding two different weights: two models, shown apart by their ids
    renamed = [dict(r, model="/checkpoints/x") for r in both("same", 0.6, 0.6)]
    retrained = [dict(r, model="/checkpoints/x", model_sha256=sha("other"), label="same") for r in both("z", 0.4, 0.4)]
    hub = both("gpt2", 0.5, 0.5, kind="hf", hashed=False)
    board = board_of(url, renamed, retrained, hub)
    assert len(board.table) == 3
    ids = dict(zip(board.table["model"], board.table["id"]))
    assert ids["gpt2"] == "hf:gpt2"
    assert ids[f"same ({sha('same')[:12]})"] == sha("same")[:12]
    assert f"same ({sha('other')[:12]})" in ids
    assert set(board.table["model_key"]) == {sha("same"), sha("other"), "hf:gpt2"}


def test_board_columns_are_defined_once():
    names = [c.name for c in BENCHMARK_BOARD_COLUMNS]
    assert names[:5] == ["rank", "model", "id", "kind", "score"]
    assert {c.name: c for c in BENCHMARK_BOARD_COLUMNS}["score"].fields == ("score", "score_se")
    assert plus_minus(0.51234, 0.01) == "0.5123 ± 0.0100" and plus_minus(None, 0.1) == "-"
    empty = rank_benchmarks(pd.DataFrame())
    assert empty.empty and empty.table.empty


def test_a_models_probe_and_benchmark_scores_together(url):
    store = Store(url)
    fields = dict(config={"k": 1}, arch="transformer", arch_label="transformer", size="d32-L2-H2", task="mqar",
                  task_setting="mqar(num_pairs=4)", lr=1e-3, seed=0)
    assert store.claim_run("run1", fields) is None
    store.finish_run("run1", status="done", step=10, duration_s=1.0,
                     scores=dict(metric="accuracy", val_score=0.8, test_score=0.75, chance=0.1))
    store.record_evaluation([dict(checkpoint_sha256=sha("a"), checkpoint_path="/checkpoints/a", run_id="run1",
                                  task="needle", task_config={"train_len": 64, "n_train": 10}, split="test",
                                  name="accuracy", value=0.6, n_examples=32),
                             dict(checkpoint_sha256=sha("b"), checkpoint_path="/checkpoints/b", run_id=None,
                                  task="needle", task_config={}, split="test", name="accuracy", value=0.1,
                                  n_examples=32)])
    store.record_benchmark_scores(both("a", 0.6, 0.7, run_id="run1") + both("b", 0.2, 0.2)
                                  + [row("a", "archbench_needle", 0.55, metric="acc", run_id="run1")])
    store.close()
    ro = queries.open_store(url)
    try:
        assert set(queries.benchmark_scores(ro, sha("a"))["model_sha256"]) == {sha("a")}
        assert len(queries.benchmark_scores(ro, "/checkpoints/b")) == 4
        models = queries.benchmark_models(ro)
        assert set(models["model_key"]) == {sha("a"), sha("b")}
        got = queries.model_scores(ro, sha("a"))
    finally:
        ro.close()
    probes = got[got["kind"] == "probe"]
    assert set(zip(probes["source"], probes["task"], probes["value"])) == {
        ("lm-eval", "archbench_needle", 0.55), ("archbench eval", "needle", 0.6), ("training run", "mqar", 0.75)}
    assert probes.set_index("source").loc["archbench eval", "setting"] == "train_len=64"
    bench = got[got["kind"] == "benchmark"]
    assert set(zip(bench["task"], bench["metric"])) == {("hellaswag", "acc_norm"), ("hellaswag", "acc"),
                                                        ("arc_easy", "acc_norm"), ("arc_easy", "acc")}
    assert list(got["kind"]) == ["probe"] * 3 + ["benchmark"] * 4


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_prints_the_board_as_json(url):
    board_of(url, both("a", 0.6, 0.8), both("b", 0.5, 0.5), [row("d", "hellaswag", 0.9)])
    res = invoke("leaderboard", "--benchmarks", "--db", url, "--format", "json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert [r["model"] for r in got] == ["a", "b"] and [r["rank"] for r in got] == [1, 2]
    assert got[0]["score"] == pytest.approx(0.7) and got[0]["hellaswag (0-shot) stderr"] == pytest.approx(0.01)
    res = invoke("leaderboard", "--benchmarks", "--db", url, "--format", "markdown")
    assert res.exit_code == 0 and "0.7000 ± 0.0071" in res.output
    assert "| d |" in res.output and "arc_easy (0-shot)" in res.output  # the incomplete model, what it misses


def test_cli_without_benchmark_scores_says_how_to_get_them(url):
    Store(url).close()  # the newest schema, nothing in it
    res = invoke("leaderboard", "--benchmarks", "--db", url)
    assert res.exit_code == 0, res.output
    assert "no lm-eval scores yet" in res.output and "archbench eval CHECKPOINT --lm-tasks" in res.output
    res = invoke("leaderboard", "--benchmarks", "--db", url, "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    assert invoke("leaderboard", "--benchmarks", "--db", url, "--format", "yaml").exit_code == 2
