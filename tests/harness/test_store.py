import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from harness.errors import UserError
from harness.store import Store
from harness.store import engine as eng

FIELDS = dict(config={}, arch="a", arch_label="a", size="s", task="t", task_setting="t", lr=0.1, seed=0, sweep="x")


def test_a_new_store_is_created_at_the_newest_schema(db_url):
    store = Store(db_url)
    assert eng.current_revision(store.engine) == eng.head_revision()
    with store.engine.connect() as c:
        tables = {r[0] for r in c.execute(text("select name from sqlite_master where type='table'"))}
        assert c.execute(text("pragma journal_mode")).scalar() == "wal"
    assert {"runs", "metrics", "checkpoints", "environments", "kernel_benchmarks", "evaluations"} <= tables


def test_claim_skips_done_and_failed_and_redoes_leftovers(db_url):
    s = Store(db_url)
    assert s.claim_run("r1", FIELDS) is None
    s.record_curve("r1", 5, [("val", "accuracy", 0.1)])
    # a killed attempt: still 'running' with a dead pid -> claimed again, partial curve removed
    with s.session() as sess:
        sess.execute(text("update runs set pid = 999999999 where id = 'r1'"))
    assert s.claim_run("r1", FIELDS) is None
    assert s.metrics("r1").empty
    assert s.get_run("r1").attempts == 2
    s.finish_run("r1", status="done", step=3, duration_s=1.0, final=[("test", "accuracy", 1.0)])
    assert s.claim_run("r1", FIELDS) == "done"
    s.claim_run("r2", FIELDS)
    s.finish_run("r2", status="failed", step=None, duration_s=0.1, error="boom")
    assert s.claim_run("r2", FIELDS) == "failed"
    assert s.claim_run("r2", FIELDS, retry_failed=True) is None


def test_claim_does_not_steal_a_run_from_a_live_process(db_url):
    s = Store(db_url)
    s.claim_run("r1", FIELDS)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with s.session() as sess:
            sess.execute(text(f"update runs set pid = {proc.pid} where id = 'r1'"))
        assert s.claim_run("r1", FIELDS).startswith("running in process")
    finally:
        proc.kill()
        proc.wait()
    assert s.claim_run("r1", FIELDS) is None


def test_finish_is_atomic(db_url):
    s = Store(db_url)
    s.claim_run("r1", FIELDS)
    with pytest.raises(AssertionError):
        s.finish_run("r1", status="bogus", step=1, duration_s=0)
    # a metric row that violates the uniqueness constraint rolls back the whole finish
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed: metrics"):
        s.finish_run("r1", status="done", step=1, duration_s=0,
                     final=[("test", "accuracy", 1.0), ("test", "accuracy", 0.5)])
    assert s.get_run("r1").status == "running"
    assert s.metrics("r1").empty


def test_four_concurrent_writer_processes_lose_no_row(tmp_path, cli_env):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    n = 40
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).with_name("_store_writer.py")), url, str(w), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
             for w in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e
    s = Store(url)
    with s.engine.connect() as c:
        assert c.execute(text("select count(*) from runs where status='done'")).scalar() == 4 * n
        assert c.execute(text("select count(*) from metrics")).scalar() == 4 * n * 3
    assert s.status_counts() == {"done": 4 * n}


@pytest.mark.parametrize("url, needle", [
    ("nosuchdialect://x/y", "cannot use database URL"),
    ("sqlite:////nonexistent-dir/sub/r.db", "does not exist"),
])
def test_bad_urls_say_what_to_do(url, needle):
    with pytest.raises(UserError) as e:
        Store(url)
    assert needle in str(e.value)


def test_readonly_store_never_creates_or_upgrades(tmp_path):
    path = tmp_path / "r.db"
    with pytest.raises(UserError, match="archbench suite quick"):
        Store(f"sqlite:///{path}", readonly=True)
    assert not path.exists()
    # an empty file is a database at no revision: readers say how, writers upgrade it
    path.touch()
    with pytest.raises(UserError, match="no results yet"):
        Store(f"sqlite:///{path}", readonly=True)
    Store(f"sqlite:///{path}")
    Store(f"sqlite:///{path}", readonly=True)


def test_a_database_from_a_newer_archbench_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    Store(url)
    e = eng.create(url)
    with e.begin() as c:
        c.execute(text("update alembic_version set version_num = 'ffff'"))
    with pytest.raises(UserError, match="newer archbench"):
        Store(url)


def store_at(url: str, revision: str, runs: list[dict]) -> None:
    """A store at an older schema ``revision`` holding ``runs`` (``id``, ``config`` and
    ``seed``; headline scores val 0.5, test 0.25), written as that release would have."""
    from alembic import command

    e = eng.create(url)
    cfg = eng._alembic_config()
    with e.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, revision)
        for r in runs:
            c.execute(text("insert into runs (id, config, arch, arch_label, size, task, task_setting, lr, seed, "
                           "status, val_score, test_score, chance, attempts, created_at) values (:id, :config, 'a', "
                           "'a', 's', 't', 't', 0.001, :seed, 'done', 0.5, 0.25, 0.0078, 1, '2026-01-01')"),
                      dict(id=r["id"], config=json.dumps(r["config"]), seed=r.get("seed", 0)))
    e.dispose()


def test_refusals_name_the_database_and_the_command_for_it(tmp_path):
    old = f"sqlite:///{tmp_path / 'old.db'}"
    store_at(old, "0001", [])
    with pytest.raises(UserError) as e:
        Store(old, readonly=True)
    assert f"database {old!r} has an older schema (0001, newest {eng.head_revision()}); " \
           f"run `archbench db upgrade --db {old}`" == str(e.value)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(UserError) as e:
        Store(f"sqlite:///{empty}", readonly=True)
    assert str(e.value).startswith(f"database {f'sqlite:///{empty}'!r} holds no results yet")
    newer = f"sqlite:///{tmp_path / 'newer.db'}"
    Store(newer)
    with eng.create(newer).begin() as c:
        c.execute(text("update alembic_version set version_num = 'ffff'"))
    with pytest.raises(UserError) as e:
        Store(newer)
    assert str(e.value).startswith(f"database {newer!r} has schema revision ffff")


def test_a_database_at_the_first_schema_is_upgraded_with_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    store_at(url, "0001", [dict(id="old", config={})])
    with pytest.raises(UserError, match="older schema"):
        Store(url, readonly=True)
    s = Store(url)  # writers upgrade
    assert eng.current_revision(s.engine) == eng.head_revision() != "0001"
    assert s.get_run("old").status == "done"
    s.add_probe_benchmarks([dict(task="mqar", preset="paper", tokens=10, seconds=1.0, tokens_per_s=10.0)])


def test_db_upgrade_command(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["db", "upgrade", "--db", str(tmp_path / "n.db")])
    assert res.exit_code == 0 and f"-> {eng.head_revision()}" in res.output


def test_foreign_database_is_refused(tmp_path):
    import sqlite3

    path = tmp_path / "f.db"
    con = sqlite3.connect(path)
    con.execute("create table stuff (x int)")
    con.commit()
    con.close()
    with pytest.raises(UserError, match="not an archbench store"):
        Store(f"sqlite:///{path}")


def test_url_resolution(monkeypatch):
    monkeypatch.delenv("ARCHBENCH_DB", raising=False)
    assert eng.resolve_url(None) == "sqlite:///results.db"
    monkeypatch.setenv("ARCHBENCH_DB", "sqlite:////tmp/x.db")
    assert eng.resolve_url(None) == "sqlite:////tmp/x.db"
    assert eng.resolve_url("my.db") == "sqlite:///my.db"
    assert eng.resolve_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_upgrade_to_0003_fills_identity_from_the_stored_config_and_keeps_scores(tmp_path):
    from harness.config import RunConfig, entry_id, run_id, setting_id

    cfg = RunConfig(arch={"name": "transformer", "d_model": 32, "n_layers": 2, "n_heads": 2},
                    task={"name": "mqar", "preset": "quick"}, seed=1).resolved()
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    store_at(url, "0002", [dict(id=run_id(cfg), config=cfg.model_dump(mode="json"), seed=1)])
    s = Store(url)
    run = s.get_run(run_id(cfg))
    assert (run.entry_id, run.setting_id) == (entry_id(cfg), setting_id(cfg))
    assert (run.d_model, run.n_layers, run.n_heads) == (32, 2, 2)
    assert (run.val_score, run.test_score, run.floor) == (0.5, 0.25, None)  # numbers kept; floor not yet known


def test_db_upgrade_computes_the_floors_of_old_runs(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.config import RunConfig, run_id
    from tasks import make_task

    cfg = RunConfig(arch={"name": "transformer", "d_model": 32, "n_layers": 2, "n_heads": 2},
                    task={"name": "mqar", "preset": "quick", "params": {"n_test": 64}}, seed=3).resolved()
    lost = RunConfig(task={"name": "no-longer-registered"}, seed=0)
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    store_at(url, "0002", [dict(id=run_id(cfg), config=cfg.model_dump(mode="json"), seed=3),
                           dict(id="lost", config=lost.model_dump(mode="json"))])
    res = CliRunner().invoke(app, ["db", "upgrade", "--db", url])
    assert res.exit_code == 0, res.output
    assert "floors computed for 1 runs" in res.output and "1 left at chance" in res.output
    task = make_task("mqar", cfg.task.params)
    expected = task.floor(task.generate("test", seed=3), "test")
    s = Store(url)
    assert (s.get_run(run_id(cfg)).floor, s.get_run(run_id(cfg)).floor_strategy) == expected
    assert s.get_run("lost").floor is None and s.get_run("lost").test_score == 0.25


# -- claim_run: every branch, in-process ------------------------------------------------

@pytest.fixture
def live_pid():
    """The pid of a live process on this host that is not this one (a sleeping child)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _ckpt_store(db_url) -> Store:
    """A store holding run ``other`` with a curve point, a final metric and a checkpoint:
    none of it may be touched when another run is claimed."""
    s = Store(db_url)
    s.claim_run("other", FIELDS)
    s.record_curve("other", 1, [("val", "accuracy", 0.5)])
    s.finish_run("other", status="done", step=2, duration_s=1.0, final=[("test", "accuracy", 0.5)],
                 checkpoint=("/ck/other", "0" * 64))
    return s


def _leave(s: Store, run_id: str, status: str, *, pid=None, host=None) -> None:
    """Run ``run_id`` as an earlier attempt left it: claimed, a curve point, then closed
    as ``status`` with a step, an error, scores, a final metric and a checkpoint; finally
    the pid and host it was claimed by are set (NULL pid: ``pid=None``)."""
    assert s.claim_run(run_id, FIELDS, retry_failed=True) is None
    s.record_curve(run_id, 3, [("val", "accuracy", 0.25)])
    s.finish_run(run_id, status=status, step=3, duration_s=2.5, error="earlier", final=[("test", "accuracy", 0.25)],
                 scores=dict(val_score=0.25, test_score=0.125), checkpoint=("/ck/" + run_id, "f" * 64))
    with s.session() as sess:
        sess.execute(text("update runs set pid = :pid, host = coalesce(:host, host) where id = :id"),
                     dict(pid=pid, host=host, id=run_id))


def _snapshot(s: Store, run_id: str):
    r = s.get_run(run_id)
    return (r.status, r.attempts, r.pid, r.host, r.step, r.error, r.duration_s, r.val_score, r.test_score,
            r.started_at, r.finished_at, r.sweep, len(s.metrics(run_id)), len(s.checkpoints(run_id)))


def _other_untouched(s: Store) -> None:
    assert s.metrics("other")[["step", "final"]].values.tolist() == [[1, False], [2, True]]
    assert [c.path for c in s.checkpoints("other")] == ["/ck/other"]
    assert s.get_run("other").status == "done"


def test_a_first_claim_records_who_runs_it(db_url):
    import os
    import socket

    s = Store(db_url)
    assert s.claim_run("new", {**FIELDS, "sweep": "first", "seed": 4}) is None
    r = s.get_run("new")
    assert (r.status, r.attempts, r.pid, r.host) == ("running", 1, os.getpid(), socket.gethostname())
    assert (r.sweep, r.seed, r.arch, r.lr) == ("first", 4, "a", 0.1)
    assert r.started_at is not None and r.finished_at is None
    assert (r.step, r.error, r.duration_s, r.val_score, r.test_score) == (None,) * 5
    assert s.status_counts() == {"running": 1}


def test_a_claim_with_a_field_the_table_lacks_writes_nothing(db_url):
    s = Store(db_url)
    with pytest.raises(TypeError, match="bogus"):
        s.claim_run("new", {**FIELDS, "bogus": 1})
    assert s.get_run("new") is None


@pytest.mark.parametrize("status, retry, reason", [
    ("done", False, "done"),
    ("done", True, "done"),  # a finished run is never redone, not even with retry_failed
    ("failed", False, "failed"),
    ("diverged", False, "diverged"),
])
def test_a_finished_run_is_not_claimed_and_is_left_as_it_was(db_url, status, retry, reason):
    s = _ckpt_store(db_url)
    _leave(s, "r", status, pid=999999999)
    before = _snapshot(s, "r")
    kw = dict(retry_failed=True) if retry else {}  # retry_failed is off unless asked for
    assert s.claim_run("r", {**FIELDS, "sweep": "changed"}, **kw) == reason
    assert _snapshot(s, "r") == before
    assert before[0] == status and before[-2:] == (2, 1)  # its metrics and checkpoint are kept
    _other_untouched(s)


def _reclaimed(s: Store, run_id: str, attempts: int) -> None:
    import os
    import socket

    r = s.get_run(run_id)
    assert (r.status, r.attempts, r.pid, r.host) == ("running", attempts, os.getpid(), socket.gethostname())
    assert (r.step, r.error, r.duration_s, r.val_score, r.test_score, r.finished_at) == (None,) * 6
    assert r.sweep == "changed"  # the claim's fields replace the stored ones
    assert s.metrics(run_id).empty and s.checkpoints(run_id) == []
    _other_untouched(s)


@pytest.mark.parametrize("status", ["failed", "diverged"])
def test_retry_failed_claims_a_failed_or_diverged_run_afresh(db_url, status):
    s = _ckpt_store(db_url)
    _leave(s, "r", status, pid=999999999)
    started = s.get_run("r").started_at
    assert s.claim_run("r", {**FIELDS, "sweep": "changed"}, retry_failed=True) is None
    _reclaimed(s, "r", attempts=2)
    assert s.get_run("r").started_at >= started


@pytest.mark.parametrize("status, pid", [
    ("running", 999999999),  # the process that ran it is gone
    ("running", None),
    ("running", "self"),  # this very process claimed it before (an earlier call)
    ("interrupted", "live"),  # Ctrl-C'd: its process may live on, the run is over
    ("interrupted", None),
    ("queued", None),
    ("queued", "live"),
])
def test_leftovers_of_a_killed_attempt_are_claimed_afresh(db_url, live_pid, status, pid):
    import os

    pid = {"self": os.getpid(), "live": live_pid}.get(pid, pid)
    s = _ckpt_store(db_url)
    _leave(s, "r", status, pid=pid)
    assert s.claim_run("r", {**FIELDS, "sweep": "changed"}) is None
    _reclaimed(s, "r", attempts=2)
    assert s.claim_run("r", {**FIELDS, "sweep": "changed"}) is None  # own pid: claimed again
    assert s.get_run("r").attempts == 3


def test_a_run_running_in_a_live_process_on_this_host_is_not_claimed(db_url, live_pid):
    s = _ckpt_store(db_url)
    _leave(s, "r", "running", pid=live_pid)
    before = _snapshot(s, "r")
    assert s.claim_run("r", {**FIELDS, "sweep": "changed"}) == f"running in process {live_pid}"
    assert s.claim_run("r", FIELDS, retry_failed=True) == f"running in process {live_pid}"
    assert _snapshot(s, "r") == before
    _other_untouched(s)


def test_attempts_count_every_claim(db_url):
    s = Store(db_url)
    for attempt in (1, 2, 3, 4):
        assert s.claim_run("r", FIELDS) is None
        assert s.get_run("r").attempts == attempt
        s.finish_run("r", status="interrupted", step=1, duration_s=0.1)


def test_a_queued_run_is_claimed_from_zero_attempts(db_url):
    s = Store(db_url)
    assert s.enqueue([("q", FIELDS)]) == 1
    assert s.claim_run("q", FIELDS) is None
    assert (s.get_run("q").status, s.get_run("q").attempts) == ("running", 1)


# -- finish_run --------------------------------------------------------------------------

def test_finish_stores_status_scores_metrics_and_checkpoint(db_url):
    s = Store(db_url)
    s.claim_run("r", FIELDS)
    s.record_curve("r", 4, [("val", "accuracy", 0.5)])
    s.finish_run("r", status="diverged", step=7, duration_s=3.5, error="nan loss",
                 final=[("test", "accuracy", 0.75), ("val", "loss", None)],
                 scores=dict(metric="accuracy", val_score=0.5, test_score=0.75, chance=0.1, n_params=123),
                 checkpoint=("/ck/r", "ab" * 32))
    r = s.get_run("r")
    assert (r.status, r.step, r.error, r.duration_s) == ("diverged", 7, "nan loss", 3.5)
    assert (r.metric, r.val_score, r.test_score, r.chance, r.n_params) == ("accuracy", 0.5, 0.75, 0.1, 123)
    assert r.finished_at is not None and r.finished_at >= r.started_at
    df = s.metrics("r")
    assert df.drop(columns="value").values.tolist() == [["val", "accuracy", 4, False], ["test", "accuracy", 7, True],
                                                       ["val", "loss", 7, True]]
    assert df["value"].tolist()[:2] == [0.5, 0.75] and df["value"].isna().tolist() == [False, False, True]
    assert [(c.path, c.sha256, c.step) for c in s.checkpoints("r")] == [("/ck/r", "ab" * 32, 7)]


def test_finish_without_a_step_stores_metrics_and_checkpoint_at_step_0(db_url):
    s = Store(db_url)
    s.claim_run("r", FIELDS)
    s.finish_run("r", status="failed", step=None, duration_s=0.5, error="boom",
                 final=[("test", "accuracy", 0.0)], checkpoint=("/ck/r", "cd" * 32))
    r = s.get_run("r")
    assert (r.status, r.step, r.error, r.val_score) == ("failed", None, "boom", None)
    assert s.metrics("r", final=True)[["step", "final"]].values.tolist() == [[0, True]]
    assert [c.step for c in s.checkpoints("r")] == [0]


def test_finish_without_scores_or_checkpoint_leaves_them_empty(db_url):
    s = Store(db_url)
    s.claim_run("r", FIELDS)
    s.finish_run("r", status="done", step=2, duration_s=1.0)
    r = s.get_run("r")
    assert (r.status, r.step, r.error, r.val_score, r.test_score) == ("done", 2, None, None, None)
    assert s.metrics("r").empty and s.checkpoints("r") == []


def test_finishing_an_unknown_run_is_a_key_error_naming_it(db_url):
    s = Store(db_url)
    with pytest.raises(KeyError, match="nosuch"):
        s.finish_run("nosuch", status="done", step=1, duration_s=0.0, final=[("test", "accuracy", 1.0)])
    assert s.metrics("nosuch").empty and s.status_counts() == {}


# -- _pid_alive ---------------------------------------------------------------------------

def test_pid_alive_probes_with_signal_0_and_reads_the_answer(monkeypatch):
    import os

    from harness.store import _pid_alive

    calls = []

    def fake_kill(pid, sig, result=None):
        calls.append((pid, sig))
        if isinstance(result, BaseException):
            raise result

    for result, alive in [(None, True), (ProcessLookupError(), False), (PermissionError(), True)]:
        monkeypatch.setattr(os, "kill", lambda pid, sig, r=result: fake_kill(pid, sig, r))
        assert _pid_alive(4321) is alive
    assert calls == [(4321, 0)] * 3


# a child that any signal but 0 ends: every catchable signal back to its default action
# (a parent run under nohup would otherwise hand it an ignored SIGHUP)
_DEFAULT_SIGNALS_THEN_SLEEP = """
import signal, time
for s in signal.valid_signals():
    try:
        signal.signal(s, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
print("ready", flush=True)
time.sleep(30)
"""


def test_pid_alive_on_real_processes_leaves_them_running():
    from harness.store import _pid_alive

    proc = subprocess.Popen([sys.executable, "-c", _DEFAULT_SIGNALS_THEN_SLEEP], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        assert _pid_alive(proc.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)  # probing sent no signal that ends it
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert not _pid_alive(proc.pid)
