"""`archbench sweep --executor ray` on a real local Ray cluster (a head and a worker node on
127.0.0.1) into the real PostgreSQL store: a worker node SIGKILLed mid-sweep, every run
done exactly once, the lost attempts recorded."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import yaml

pytest.importorskip("ray")

from sqlalchemy import create_engine, inspect, text  # noqa: E402

from tests.conftest import tiny_run  # noqa: E402
from tests.harness.raycluster import RAY_TEST_ENV, kill_node, local_cluster  # noqa: E402

ARCHBENCH = [sys.executable, "-m", "harness"]
FAST_CLAIMS = {"ARCHBENCH_HEARTBEAT_S": "1", "ARCHBENCH_STALE_AFTER_S": "10", **RAY_TEST_ENV}


def unique_run(**train) -> dict:
    """A tiny run config no other test (or earlier session on the same database) has: a run's id
    is the hash of its config, so a shared store would skip it as done."""
    cfg = tiny_run(train=train)
    cfg["optimizer"]["lr"] = 3e-3 * (1 + uuid.uuid4().int % 100_000 / 1e9)
    return cfg


def sweep_rows(url: str, sweep: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            if not inspect(c).has_table("runs"):
                return []  # the sweep has not created its tables yet
            return c.execute(text(
                "select r.id, r.status, r.attempts, r.attempt_log, r.error, "
                "(select count(*) from metrics m where m.run_id = r.id and m.final) as finals, "
                "(select count(*) from metrics m where m.run_id = r.id and not m.final) as curve "
                "from runs r where r.sweep = :s order by r.id"), {"s": sweep}).all()
    finally:
        engine.dispose()


def test_a_ray_sweep_into_postgres_survives_a_killed_worker_node(tmp_path, fresh_postgres_url, cli_env):
    name = f"ray-{uuid.uuid4().hex[:8]}"
    base = unique_run(steps=60, eval_every=20)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": name, "base": base, "grid": {"seed": list(range(24))}}))
    env = {**cli_env, **FAST_CLAIMS}
    with local_cluster(tmp_path, env=FAST_CLAIMS) as (address, worker):
        cmd = ARCHBENCH + ["sweep", "s.yaml", "--db", fresh_postgres_url, "-q", "--executor", "ray", "--address", address,
                           "--max-retries", "3"]
        log = tmp_path / "sweep.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while True:  # a few runs done and both nodes busy: then the worker node dies
                rows = sweep_rows(fresh_postgres_url, name) if proc.poll() is None else []
                done = sum(r[1] == "done" for r in rows)
                running = sum(r[1] == "running" for r in rows)
                if done >= 4 and running >= 2:
                    break
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            kill_node(worker)
            assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    rows = sweep_rows(fresh_postgres_url, name)
    assert len(rows) == 24
    assert {r[1] for r in rows} == {"done"}, [(r[0], r[1], r[4]) for r in rows if r[1] != "done"]
    finals = {r[5] for r in rows}
    curves = {r[6] for r in rows}
    assert len(finals) == 1 and len(curves) == 1  # no run's metrics doubled by a retried attempt
    retried = [r for r in rows if r[2] > 1]
    assert retried, "the killed node was running a run: it must have been retried"
    for rid, _, attempts, log_, _, _, _ in rows:
        assert len(log_ or []) == attempts - 1  # every lost attempt is recorded, and only those
    for r in retried:
        ended = r[3][-1]["ended"]
        assert "executor retried" in ended or "died" in ended or "heartbeat" in ended, ended
    print(f"retried runs: {[(r[0], r[2], r[3][-1]['ended']) for r in retried]}")
    out = log.read_text()
    print(out.strip().splitlines()[-1] if out.strip() else "")
    assert "24 done" in out and "finished per node" in out


def test_a_ray_sweep_and_a_local_sweep_on_one_store_never_run_a_config_twice(tmp_path, fresh_postgres_url, cli_env):
    name = f"both-{uuid.uuid4().hex[:8]}"
    base = unique_run(steps=40, eval_every=20)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": name, "base": base, "grid": {"seed": list(range(8))}}))
    common = ["sweep", "s.yaml", "--db", fresh_postgres_url, "-q"]
    procs = [subprocess.Popen(ARCHBENCH + common + extra, cwd=tmp_path, env={**cli_env, **RAY_TEST_ENV}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for extra in (["--executor", "ray", "--num-cpus", "1"], ["-j", "1"])]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = sweep_rows(fresh_postgres_url, name)
    assert len(rows) == 8 and {r[1] for r in rows} == {"done"}
    assert {r[2] for r in rows} == {1}  # every config trained once: by one sweep, skipped by the other
    trained = [out.count("done ") for out in outs]
    assert sum(trained) == 8 and all("skipped" in out or n == 8 for out, n in zip(outs, trained)), outs


def test_a_killed_ray_driver_is_resumed_by_running_the_same_command(tmp_path, fresh_postgres_url, cli_env):
    import os
    import signal

    name = f"drv-{uuid.uuid4().hex[:8]}"
    base = unique_run(steps=60, eval_every=20)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": name, "base": base, "grid": {"seed": list(range(10))}}))
    env = {**cli_env, **FAST_CLAIMS}
    with local_cluster(tmp_path, env=FAST_CLAIMS) as (address, _):
        cmd = ARCHBENCH + ["sweep", "s.yaml", "--db", fresh_postgres_url, "-q", "--executor", "ray", "--address", address]
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "first.err", "wb"),
                                 start_new_session=True)
        deadline = time.monotonic() + 300
        while sum(r[1] == "done" for r in sweep_rows(fresh_postgres_url, name)) < 3:
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.err").read_text()[-2000:]
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies; Ray ends its job's tasks
        first.wait()
        killed = sweep_rows(fresh_postgres_url, name)
        done_before = {r[0] for r in killed if r[1] == "done"}
        assert 3 <= len(done_before) < 10
        again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
    rows = sweep_rows(fresh_postgres_url, name)
    assert len(rows) == 10 and {r[1] for r in rows} == {"done"}
    for rid, _, attempts, log_, _, _, _ in rows:
        if rid in done_before:
            assert attempts == 1 and not log_  # done runs were skipped, not redone
        assert len(log_ or []) == attempts - 1
    assert len(done_before) + again.stdout.count("done ") == 10
