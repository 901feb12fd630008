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
