"""The dashboard's benchmarks page, run headless with Streamlit's AppTest on a small store of lm-eval
scores (written as ``archbench eval --lm-tasks`` writes them), a training run and a probe evaluation."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit", reason="the dashboard needs streamlit (pip install 'archbench[dashboard]')")

from streamlit.testing.v1 import AppTest  # noqa: E402

from harness import queries  # noqa: E402
from harness.store import Store  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.dashboard.seed import make_empty  # noqa: E402
from tests.dashboard.test_dashboard_pages import db_state  # noqa: E402
from tests.harness.test_benchmark_board import both, row, sha  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
PAGE = "views/benchmarks.py"


@pytest.fixture(scope="module")
def bench_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('bench') / 'results.db'}"
    store = Store(url)
    fields = dict(config={"k": 1}, arch="transformer", arch_label="transformer", size="d32-L2-H2", task="mqar",
                  task_setting="mqar(num_pairs=4)", lr=1e-3, seed=0, entry_id="e1", setting_id="s1", task_id="t1")
    assert store.claim_run("run1", fields) is None
    store.finish_run("run1", status="done", step=10, duration_s=1.0,
                     scores=dict(metric="accuracy", val_score=0.8, test_score=0.75, chance=0.1))
    store.record_evaluation([dict(checkpoint_sha256=sha("fox"), checkpoint_path="/checkpoints/fox", run_id="run1",
                                  task="needle", task_config={"train_len": 64}, split="test", name="accuracy",
                                  value=0.625, n_examples=32)])
    store.record_benchmark_scores(both("fox", 0.6, 0.8, run_id="run1")
                                  + [row("fox", "archbench_needle", 0.55, None, metric="acc", run_id="run1")])
    store.record_benchmark_scores(both("gpt2", 0.5, 0.5, kind="hf", hashed=False))
    store.record_benchmark_scores([row("tiny", "hellaswag", 0.9)])  # holds one of the two benchmarks
    store.close()
    return url


def open_page(url: str, monkeypatch) -> AppTest:  # noqa: ANN001
    monkeypatch.setenv("ARCHBENCH_DB", url)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table_with(at: AppTest, *columns: str):  # noqa: ANN201
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with {columns} among {len(at.dataframe)}")


def test_the_page_ranks_like_the_cli_and_shows_one_models_scores(bench_db, monkeypatch):
    before = db_state(bench_db)
    at = open_page(bench_db, monkeypatch)
    board = table_with(at, "rank", "model", "score", "hellaswag (0-shot)")
    store = queries.open_store(bench_db)
    expected = queries.benchmark_leaderboard(store).table
    store.close()
    assert list(board["model"]) == list(expected["model"]) == ["fox", "gpt2"]
    assert list(board["rank"]) == [1, 2]
    assert list(board["hellaswag (0-shot)"]) == ["0.6000 ± 0.0100", "0.5000 ± 0.0100"]
    assert board["archbench_needle (0-shot)"].iloc[0] == "0.5500 ± -"
    assert at.metric[0].value == "fox"
    incomplete = table_with(at, "missing")
    assert list(incomplete["model"]) == ["tiny"] and list(incomplete["missing"]) == ["arc_easy (0-shot)"]

    # the top model is selected: its probe scores from lm-eval, archbench eval and its training run
    assert at.selectbox(key="bm_model").value == sha("fox")
    probes = table_with(at, "source", "task", "value")
    assert set(zip(probes["source"], probes["task"], probes["value"])) == {
        ("lm-eval", "archbench_needle", 0.55), ("archbench eval", "needle", 0.625), ("training run", "mqar", 0.75)}
    bench = at.dataframe[-1].value
    assert set(bench["task"]) == {"hellaswag", "arc_easy"}

    at.selectbox(key="bm_model").set_value("hf:gpt2").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No probe scores" in i.value for i in at.info)
    assert set(at.dataframe[-1].value["task"]) == {"hellaswag", "arc_easy"}
    assert db_state(bench_db) == before  # the page never writes


def test_without_benchmark_scores_the_page_says_how_to_get_them(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    make_empty(url)
    store = Store(url)
    fields = dict(config={}, arch="a", arch_label="a", size="s", task="mqar", task_setting="mqar", lr=0.1, seed=0,
                  entry_id="e", setting_id="s", task_id="t")
    store.claim_run("r", fields)
    store.finish_run("r", status="done", step=1, duration_s=0.0, scores=dict(val_score=0.5, test_score=0.5))
    store.close()
    at = open_page(url, monkeypatch)
    assert any("No lm-eval scores yet" in i.value for i in at.info)
    assert any("--lm-tasks" in c.value for c in at.code)
