"""harness.queries: the read-only queries behind the dashboard (no Streamlit needed)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from harness import queries
from harness.ranking import choose_lr, prepare, rank
from harness.store import Run, Store
from harness.store.synthetic import seed_database


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('q') / 'results.db'}"
    seed_database(url, archs=["transformer", "fox", "linear"], sizes=[(32, 2, 2), (64, 4, 4)], lrs=[1e-3, 1e-2],
                  seeds=2, curve_points=4, tasks=["mqar", "needle", "modular_addition"])
    s = queries.open_store(url)
    yield s
    s.close()


def test_unfiltered_leaderboard_is_the_cli_ranking(store):
    ours = queries.leaderboard(queries.score_frame(store))
    cli = rank(store.score_frame())  # what `archbench leaderboard` computes
    pd.testing.assert_frame_equal(ours.table, cli.table)
    pd.testing.assert_frame_equal(ours.settings, cli.settings)


def test_filters(store):
    df = queries.score_frame(store)
    assert set(df["d_model"]) == {32, 64} and set(df["n_layers"]) == {2, 4}
    assert set(queries.filter_scores(df, d_model=[64])["size"]) == {"d64-L4-H4"}
    assert set(queries.filter_scores(df, n_layers=[2])["size"]) == {"d32-L2-H2"}
    assert set(queries.filter_scores(df, tasks=["needle"])["task"]) == {"needle"}
    assert len(queries.filter_scores(df, sweeps=["quick"])) == len(df)
    assert queries.filter_scores(df, sweeps=[queries.NO_SWEEP]).empty
    # the seeder leaves some runs queued or running: those groups have one finished seed
    two = queries.filter_scores(df, min_seeds=2)
    assert 0 < len(two) < len(df)
    assert (two.groupby(["setting_id", "lr"])["seed"].nunique() >= 2).all()
    lb = queries.leaderboard(df, tasks=["mqar"], d_model=[32])
    assert queries.task_columns(lb.table) == ["mqar"] and set(lb.table["size"]) == {"d32-L2-H2"}


def test_size_columns_come_from_the_config_not_the_label(store):
    df = queries.score_frame(store)
    for cfg, d, layers, heads in zip(df["config"], df["d_model"], df["n_layers"], df["n_heads"]):
        assert (cfg["arch"]["d_model"], cfg["arch"]["n_layers"], cfg["arch"]["n_heads"]) == (d, layers, heads)


def test_probe_finals_use_the_chosen_learning_rate(store):
    finals = queries.probe_finals(store, "needle")
    assert {"grid", "val", "test"} <= set(finals["split"])
    assert finals["name"].str.startswith("accuracy/len=").any()
    lrs = finals.groupby(["arch_label", "size", "task_setting"])["lr"].unique()
    assert (lrs.map(len) == 1).all()
    runs = prepare(store.score_frame(task="needle"))
    chosen = runs.merge(choose_lr(runs), on=["setting_id", "lr"])
    chosen = chosen.groupby(["arch_label", "size", "task_setting"])["lr"].unique()
    for key, lr in lrs.items():
        assert list(lr) == list(chosen[key])
    assert queries.probe_finals(store, "flipflop").empty


def test_task_params_and_knobs(store):
    params = queries.task_params(store, "mqar")
    assert len(params) == 4 and "n_train" not in params
    assert queries.varying_knobs(params) == ["seq_len", "num_pairs", "ood_num_pairs", "ood_seq_len"]
    frame = store.score_frame()
    done = frame[frame["status"] == "done"].groupby("task").size()
    assert (frame["status"] != "done").any()  # the seeded store holds failed runs, not counted
    assert queries.task_run_counts(store) == done.to_dict()
    assert set(done.index) == {"mqar", "needle", "modular_addition"}


def test_curves(store):
    ids = queries.probe_finals(store, "modular_addition")["run_id"].unique()[:3]
    curve = queries.curve_frame(store, list(ids), names=["accuracy"])
    assert set(curve["run_id"]) == set(ids)
    assert {"train", "val", "test"} == set(curve["split"])
    assert (curve.groupby("run_id")["step"].nunique() == 4).all()


def test_kernels(store):
    kf = queries.kernel_frame(store)
    assert {"kernel", "shape", "created_at"} <= set(kf.columns) and kf["git_sha"].nunique() == 6
    latest = queries.latest_kernels(kf)
    assert len(latest) == len(kf) / 6  # one row per point: the newest of the six commits
    sdpa = latest[latest["kernel"] == "softmax/sdpa"]
    assert (sdpa["vs_sdpa"] == 1.0).all()


def test_kernel_baseline_is_the_registry_one():
    from kernels.registry import BASELINE

    assert queries.KERNEL_BASELINE == BASELINE


def test_runs_search_and_detail(store):
    runs = queries.runs_frame(store)
    assert runs["created_at"].is_monotonic_decreasing
    hits = queries.search_runs(runs, "FOX needle")
    assert len(hits) and set(hits["arch_label"]) == {"fox"} and set(hits["task"]) == {"needle"}
    assert queries.search_runs(runs, "") is runs
    detail = queries.run_detail(store, hits["id"].iloc[0])
    assert detail["run"]["config"]["arch"]["name"] == "fox"
    assert detail["environment"]["device"] == "cpu"
    assert detail["checkpoints"][0]["path"].startswith("checkpoints/")
    assert set(detail["metrics"]["final"]) == {True, False}
    assert queries.run_detail(store, "nosuchrun") is None


def test_config_diff():
    a = {"arch": {"name": "fox", "d_model": 64, "options": {}}, "seed": 0, "lrs": [1, 2]}
    b = {"arch": {"name": "fox", "d_model": 128, "options": {}}, "seed": 0, "extra": True}
    assert queries.flatten(a) == {"arch.name": "fox", "arch.d_model": 64, "arch.options": {}, "seed": 0,
                                  "lrs": [1, 2]}
    d = queries.config_diff(a, b).set_index("key")
    assert d.loc["arch.d_model", "differs"] and d.loc["arch.d_model", "b"] == "128"
    assert not d.loc["seed", "differs"] and not d.loc["arch.name", "differs"]
    assert d.loc["lrs", "differs"] and d.loc["lrs", "b"] == ""
    assert d.loc["extra", "differs"]


def test_open_store_is_read_only(store):
    assert isinstance(store, Store) and store.readonly
    before = store.status_counts()
    with pytest.raises(OperationalError, match="readonly"):  # the connection itself refuses writes
        with store.engine.begin() as conn:
            conn.execute(update(Run).values(status="failed"))
    assert store.status_counts() == before
