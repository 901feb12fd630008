"""Store queries and bulk writes, called in-process: runs (filters, order, limit), enqueue,
runs_without_floor, set_floors, status_counts, metrics, score_frame, checkpoints and
environment rows.  Tiny SQLite stores in tmp_path; every test states the exact answer."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from harness.store import Environment, Metric, Run, Store

T0 = datetime(2026, 1, 1, 12, 0, 0)
BASE = dict(config={"k": 1}, arch="a", arch_label="a", size="s", task="t", task_setting="t", lr=0.1, seed=0,
            sweep="x", status="done")


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def put(store: Store, run_id: str, minutes: float = 0, **fields) -> None:
    """A run row written directly, created ``minutes`` after T0."""
    with store.session() as s:
        s.add(Run(id=run_id, created_at=T0 + timedelta(minutes=minutes), **{**BASE, **fields}))


def ids(runs) -> list[str]:
    return [r.id for r in runs]


# -- runs ------------------------------------------------------------------------------

@pytest.fixture
def mixed(store):
    """Six runs, created in the order r6 ... r1 (ids run against time) on one axis each."""
    put(store, "r6", 1, status="done", arch="fox", task="mqar", sweep="s1")
    put(store, "r5", 2, status="failed", arch="fox", task="needle", sweep="s1")
    put(store, "r4", 3, status="done", arch="rope", task="mqar", sweep="s2")
    put(store, "r3", 4, status="queued", arch="rope", task="needle", sweep="s2")
    put(store, "r2", 5, status="done", arch="fox", task="mqar", sweep="s2")
    put(store, "r1", 6, status="running", arch="rope", task="mqar", sweep=None)
    return store


def test_runs_come_oldest_first(mixed):
    assert ids(mixed.runs()) == ["r6", "r5", "r4", "r3", "r2", "r1"]


@pytest.mark.parametrize("filters, expected", [
    (dict(status="done"), ["r6", "r4", "r2"]),
    (dict(status="queued"), ["r3"]),
    (dict(arch="fox"), ["r6", "r5", "r2"]),
    (dict(task="needle"), ["r5", "r3"]),
    (dict(sweep="s2"), ["r4", "r3", "r2"]),
    (dict(status="done", arch="fox"), ["r6", "r2"]),
    (dict(status="done", arch="fox", task="mqar", sweep="s2"), ["r2"]),
    (dict(status="diverged"), []),
    (dict(arch="nosuch"), []),
])
def test_runs_filters_keep_exactly_the_matching_runs(mixed, filters, expected):
    assert ids(mixed.runs(**filters)) == expected


def test_runs_limit_takes_the_oldest(mixed):
    assert ids(mixed.runs(limit=2)) == ["r6", "r5"]
    assert ids(mixed.runs(limit=1, status="done")) == ["r6"]
    assert ids(mixed.runs(limit=2, sweep="s2")) == ["r4", "r3"]
    assert len(mixed.runs(limit=None)) == 6


def test_runs_created_at_the_same_moment_come_in_id_order(store):
    for run_id in ["c", "a", "d", "b"]:  # inserted out of id order, one timestamp
        put(store, run_id, 0)
    put(store, "0-later", 1)
    assert ids(store.runs()) == ["a", "b", "c", "d", "0-later"]


def test_runs_returns_usable_rows(mixed):
    (r,) = mixed.runs(task="needle", status="failed")
    assert (r.id, r.arch, r.task, r.sweep, r.config) == ("r5", "fox", "needle", "s1", {"k": 1})


# -- enqueue ---------------------------------------------------------------------------

def fields(**kw):
    return {k: v for k, v in {**BASE, **kw}.items() if k != "status"}


def test_enqueue_adds_queued_rows_for_new_runs_only_and_counts_them(store):
    put(store, "old", status="done", attempts=3, lr=0.5)
    n = store.enqueue([("q1", fields(seed=1)), ("old", fields(lr=0.9)), ("q2", fields(seed=2, arch="fox"))])
    assert n == 2
    q1, q2, old = store.get_run("q1"), store.get_run("q2"), store.get_run("old")
    assert (q1.status, q1.attempts, q1.seed, q1.arch) == ("queued", 0, 1, "a")
    assert (q2.status, q2.attempts, q2.seed, q2.arch) == ("queued", 0, 2, "fox")
    assert (old.status, old.attempts, old.lr) == ("done", 3, 0.5)  # a known run is left as it was
    assert ids(store.runs(status="queued")) == ["q1", "q2"]


def test_enqueue_counts_nothing_when_nothing_is_new(store):
    assert store.enqueue([]) == 0
    assert store.enqueue([("q1", fields())]) == 1
    assert store.enqueue([("q1", fields()), ("q1", fields())]) == 0
    assert store.enqueue(iter([("q2", fields()), ("q3", fields()), ("q4", fields())])) == 3
    assert store.status_counts() == {"queued": 4}


def test_enqueue_attempts_are_zero_in_the_database(store):
    store.enqueue([("q1", fields())])
    with store.session() as s:
        assert s.execute(select(Run.attempts).where(Run.id == "q1")).scalar_one() == 0


# -- floors ----------------------------------------------------------------------------

def test_runs_without_floor_lists_done_runs_lacking_one(store):
    put(store, "want", status="done", seed=7, config={"c": "want"})
    put(store, "also", status="done", seed=8, config={"c": "also"})
    put(store, "has-floor", status="done", floor=0.1, floor_strategy="chance")
    for status in ("failed", "diverged", "queued", "running", "interrupted"):
        put(store, status, status=status)
    assert sorted(store.runs_without_floor()) == [("also", {"c": "also"}, 8), ("want", {"c": "want"}, 7)]


def test_set_floors_stores_each_floor_and_its_strategy(store):
    put(store, "a")
    put(store, "b")
    put(store, "c")
    store.set_floors({"a": (0.25, "chance"), "b": (0.5, "majority")})
    got = {r.id: (r.floor, r.floor_strategy) for r in store.runs()}
    assert got == {"a": (0.25, "chance"), "b": (0.5, "majority"), "c": (None, None)}
    assert [r[0] for r in store.runs_without_floor()] == ["c"]


# -- status counts, metrics, checkpoints -------------------------------------------------

def test_status_counts_counts_each_status(mixed):
    assert mixed.status_counts() == {"done": 3, "failed": 1, "queued": 1, "running": 1}


def test_status_counts_of_an_empty_store(store):
    assert store.status_counts() == {}


def test_metrics_of_one_run_by_step_then_insertion(store):
    put(store, "r1", status="running")
    put(store, "r2", status="running")
    store.record_curve("r1", 10, [("val", "z", 0.5), ("train", "a", 0.25)])
    store.record_curve("r2", 1, [("val", "z", 0.9)])
    store.record_curve("r1", 5, [("val", "z", 0.125)])
    store.finish_run("r1", status="done", step=5, duration_s=1.0, final=[("val", "b", 0.75)])
    df = store.metrics("r1")
    assert list(df.columns) == ["split", "name", "value", "step", "final"]
    assert df.values.tolist() == [["val", "z", 0.125, 5, False], ["val", "b", 0.75, 5, True],
                                  ["val", "z", 0.5, 10, False], ["train", "a", 0.25, 10, False]]
    assert store.metrics("r1", final=True).values.tolist() == [["val", "b", 0.75, 5, True]]
    assert store.metrics("r1", final=False)[["name", "step"]].values.tolist() == [["z", 5], ["z", 10], ["a", 10]]
    assert store.metrics("r2").values.tolist() == [["val", "z", 0.9, 1, False]]


def test_metrics_of_one_step_come_in_the_order_they_were_written(store):
    put(store, "r", status="running")
    store.finish_run("r", status="done", step=5, duration_s=1.0, final=[("val", "b", 1.0)])
    store.record_curve("r", 5, [("val", "z", 0.5), ("test", "a", 0.25)])
    assert store.metrics("r")[["name", "final"]].values.tolist() == [["b", True], ["z", False], ["a", False]]


def test_metrics_of_a_run_without_any_keep_the_columns(store):
    df = store.metrics("nosuch")
    assert df.empty and list(df.columns) == ["split", "name", "value", "step", "final"]
    assert list(store.metrics("nosuch", final=True).columns) == ["split", "name", "value", "step", "final"]


def test_checkpoints_are_those_of_the_run(store):
    for run_id in ("r1", "r2"):
        put(store, run_id, status="running")
    store.finish_run("r1", status="done", step=4, duration_s=1.0, checkpoint=("/ck/r1", "aa" * 32))
    store.finish_run("r2", status="done", step=6, duration_s=1.0, checkpoint=("/ck/r2", "bb" * 32))
    assert [(c.run_id, c.path, c.sha256, c.step) for c in store.checkpoints("r1")] == [("r1", "/ck/r1", "aa" * 32, 4)]
    assert [c.path for c in store.checkpoints("r2")] == ["/ck/r2"]
    assert store.checkpoints("nosuch") == []


# -- score_frame ------------------------------------------------------------------------

def test_score_frame_holds_the_finished_runs_oldest_first(store):
    put(store, "z-done", 1, status="done", val_score=0.5, test_score=0.25)
    put(store, "y-failed", 2, status="failed")
    put(store, "x-diverged", 3, status="diverged")
    put(store, "b-tie", 4, status="done")
    put(store, "a-tie", 4, status="done")
    for status in ("queued", "running", "interrupted"):
        put(store, status, 0, status=status)
    df = store.score_frame()
    assert list(df["id"]) == ["z-done", "y-failed", "x-diverged", "a-tie", "b-tie"]
    assert list(df["status"]) == ["done", "failed", "diverged", "done", "done"]
    row = df.set_index("id").loc["z-done"]
    assert (row["val_score"], row["test_score"], row["config"]) == (0.5, 0.25, {"k": 1})
    assert {"id", "arch", "setting_id", "lr", "seed", "val_score", "test_score", "floor", "config"} <= set(df.columns)


@pytest.mark.parametrize("filters, expected", [
    (dict(sweep="s1"), ["a", "c"]),
    (dict(task="needle"), ["b", "c"]),
    (dict(size="big"), ["a", "b"]),
    (dict(sweep="s1", task="needle", size="small"), ["c"]),
    (dict(sweep="nosuch"), []),
])
def test_score_frame_filters(store, filters, expected):
    put(store, "a", 1, sweep="s1", task="mqar", size="big")
    put(store, "b", 2, sweep="s2", task="needle", size="big")
    put(store, "c", 3, sweep="s1", task="needle", size="small")
    assert list(store.score_frame(**filters)["id"]) == expected


def test_score_frame_of_an_empty_store_keeps_the_columns(store):
    df = store.score_frame()
    assert df.empty and {"id", "setting_id", "val_score", "test_score", "config"} <= set(df.columns)


# -- evaluations and benchmarks ------------------------------------------------------------

def test_evaluation_and_benchmark_rows_are_stored(store):
    from harness.store import Evaluation, KernelBenchmark, ProbeBenchmark

    store.record_evaluation([dict(checkpoint_sha256="c" * 64, checkpoint_path="/ck", task="mqar", task_config={},
                                  split="test", name="accuracy", value=v, n_examples=8) for v in (0.5, 0.75)])
    store.add_probe_benchmarks([dict(task="mqar", preset="quick", tokens=100, seconds=2.0, tokens_per_s=50.0)])
    store.add_kernel_benchmarks([dict(op="softmax_attention", impl="torch", mode="fwd", dtype="float32", batch=1,
                                      seq_len=64, heads=2, head_dim=16, status="ok", median_ms=1.5,
                                      device_name="cpu")])
    with store.session() as s:
        assert sorted(s.scalars(select(Evaluation.value))) == [0.5, 0.75]
        assert s.execute(select(ProbeBenchmark.task, ProbeBenchmark.tokens_per_s)).all() == [("mqar", 50.0)]
        assert s.execute(select(KernelBenchmark.op, KernelBenchmark.median_ms)).all() == [("softmax_attention", 1.5)]


# -- environments and the store itself ----------------------------------------------------

ENV = dict(id="e" * 16, git_sha=None, git_dirty=None, archbench_version="0.1", python_version="3.11",
           torch_version="2.3", triton_version=None, platform="linux", device="cpu", cpu_name="x",
           gpu_name=None, num_threads=2)


def test_environment_rows_are_written_once_per_id(store):
    assert store.environment(dict(ENV)) == "e" * 16
    assert store.environment({**ENV, "platform": "other"}) == "e" * 16  # same id: the first row stays
    store.environment({**ENV, "id": "f" * 16})
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(Environment)).scalar_one() == 2
        assert s.get(Environment, "e" * 16).platform == "linux"
    put(store, "r", environment_id="e" * 16)  # a run can point at it
    assert store.get_run("r").environment_id == "e" * 16


def test_a_store_opens_the_file_it_was_given(tmp_path):
    s = Store(str(tmp_path / "mine.db"))
    assert s.url == f"sqlite:///{tmp_path / 'mine.db'}" and not s.readonly
    s.enqueue([("q", fields())])
    assert (tmp_path / "mine.db").exists()
    assert Store(f"sqlite:///{tmp_path / 'mine.db'}", readonly=True).get_run("q").status == "queued"


def test_a_readonly_store_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Store(url).enqueue([("q", fields())])
    ro = Store(url, readonly=True)
    assert ro.readonly
    ro.enqueue([("q2", fields())])
    ro.set_floors({"q": (0.5, "chance")})
    fresh = Store(url)
    assert ids(fresh.runs()) == ["q"] and fresh.get_run("q").floor is None


def test_rows_read_back_stay_usable_after_the_session(store):
    put(store, "r", val_score=0.5)
    run = store.get_run("r")
    store.set_floors({"r": (0.1, "chance")})
    assert (run.id, run.val_score, run.floor) == ("r", 0.5, None)  # a snapshot, not reloaded
    assert store.get_run("r").floor == 0.1
    assert store.get_run("nosuch") is None
