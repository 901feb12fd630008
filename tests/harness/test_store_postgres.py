"""The store on a real PostgreSQL server, as a sweep across machines uses it.

Each test gets its own fresh database on the session's throwaway server
(``fresh_postgres_url``, tests/conftest.py); the restart test starts a server of its own
(``tests/pg.py``), since it stops it under a writer.  Many processes write at once, race for
the same runs, get killed, and lose their server mid-write; nothing may be lost or done twice.
``archbench db copy`` must carry every row SQLite -> PostgreSQL -> SQLite unchanged.
"""

from __future__ import annotations

import contextlib
import math
import os
import runpy
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from harness.store import Store
from harness.store.schema import Base
from tests.conftest import ARCHBENCH
from tests.harness.test_resume import sigkill_mid_sweep_then_resume

HERE = Path(__file__).parent
WRITERS = 16


def _query(url):
    """``query(sql) -> rows`` on the database at ``url`` (a fresh connection each call)."""
    engine = create_engine(url)

    def query(sql):
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]

    query.engine = engine
    return query


def _python(script, *args):
    return [sys.executable, str(HERE / script), *map(str, args)]


def _forked(script, argvs, logs, timeout=120):
    """Run ``HERE/script`` as ``__main__`` in one process per argument list, all at once, each
    forked from this one: harness.store is imported here already, so sixteen of them start in
    a fraction of a second instead of a second of imports each (2 cores).  Each process opens
    its own store and connection, as a separate worker would.  Returns the stdout of each;
    every process must exit 0."""
    pids = []
    for i, argv in enumerate(argvs):
        pid = os.fork()
        if pid == 0:  # the child: runs the script and leaves, never returning into pytest
            code = 70
            try:
                for fd, name in ((1, f"{i}.out"), (2, f"{i}.err")):
                    f = os.open(logs / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    os.dup2(f, fd)
                    os.close(f)
                sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                sys.argv = [str(HERE / script), *map(str, argv)]
                try:
                    runpy.run_path(str(HERE / script), run_name="__main__")
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else int(e.code is not None)
                except BaseException:  # noqa: BLE001
                    traceback.print_exc()
                    code = 1
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    deadline, codes = time.monotonic() + timeout, {}
    try:
        while len(codes) < len(pids):
            for pid in pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, f"{script}: {len(pids) - len(codes)} processes still running"
            time.sleep(0.05)
    finally:
        for pid in set(pids) - set(codes):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    for i, pid in enumerate(pids):
        assert codes[pid] == 0, (i, codes[pid], (logs / f"{i}.err").read_text())
    return [(logs / f"{i}.out").read_text() for i in range(len(pids))]


# -- 16 writers at once ----------------------------------------------------------------

def test_sixteen_writer_processes_lose_no_row(fresh_postgres_url, tmp_path):
    """16 processes open the same new (unmigrated) database at once and each writes runs of
    its own: every run and every metric row arrives, once."""
    n = 25
    _forked("_store_writer.py", [(fresh_postgres_url, w, n) for w in range(WRITERS)], tmp_path)
    q = _query(fresh_postgres_url)
    assert q("select status, count(*), count(distinct id), min(attempts), max(attempts) from runs group by status") \
        == [("done", WRITERS * n, WRITERS * n, 1, 1)]
    assert q("select count(*) from metrics")[0][0] == WRITERS * n * 3
    per_run = q("select n, count(*) from (select run_id, count(*) as n from metrics group by run_id) c group by n")
    assert per_run == [(3, WRITERS * n)]  # no run lost a metric row or got one twice
    q.engine.dispose()


def test_sixteen_processes_racing_for_the_same_runs_claim_each_once(fresh_postgres_url, tmp_path):
    """16 processes released at once try to claim the same 48 runs, each in its own order; half
    the runs are queued first (a sweep's path: the row exists, claims lock it FOR UPDATE), half
    are new (claims race to insert the row).  Every run is claimed by exactly one process."""
    n = 48
    store = Store(fresh_postgres_url)
    queued = [f"race{i:03d}" for i in range(0, n, 2)]
    fields = dict(config={}, arch="a", arch_label="a", size="s", task="t", task_setting="t", lr=0.1, seed=0,
                  sweep="race")
    assert store.enqueue((rid, fields) for rid in queued) == n // 2
    store.close()
    barrier = tmp_path / "barrier"
    barrier.mkdir()

    def release():  # once every racer has its store open
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
            time.sleep(0.02)
        (barrier / "go").touch()

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    outs = _forked("_claim_racer.py", [(fresh_postgres_url, w, n, barrier) for w in range(WRITERS)], tmp_path)
    releaser.join()

    claims = Counter(line.split()[1] for o in outs for line in o.splitlines() if line.startswith("claimed "))
    assert sorted(claims) == [f"race{i:03d}" for i in range(n)]
    assert set(claims.values()) == {1}, {k: v for k, v in claims.items() if v > 1}
    summaries = [o.splitlines()[-1] for o in outs]
    print("\n".join(summaries))  # who won how many, and lost to a live claim or a finished run
    assert sum(int(s.split("claimed=")[1].split()[0]) for s in summaries) == n
    q = _query(fresh_postgres_url)
    assert q("select status, count(*), min(attempts), max(attempts) from runs group by status") == [("done", n, 1, 1)]
    assert q("select count(*) from metrics")[0][0] == n * 3
    assert q("select count(*) from (select run_id from metrics group by run_id having count(*) = 3) c")[0][0] == n
    q.engine.dispose()


# -- db copy -----------------------------------------------------------------------------

T0 = datetime(2026, 12, 3, 10, 11, 12, 345678)
ENV = dict(git_sha="a" * 40, archbench_version="0.1.0", python_version="3.11.9", torch_version="2.5.1+cpu",
           platform="Linux-6.8-x86_64", device="cpu", created_at=T0)


def _fill(url):
    """A store with a row in every table and the awkward values: every run status, JSON
    (nested, unicode, null inside and SQL NULL), inf, tiny and huge floats, NULL and
    non-NULL booleans, datetimes with microseconds, a retried run's attempt log."""
    s = Store(url)
    e1 = s.environment(dict(ENV, id="e" * 16, git_dirty=True, triton_version=None, cpu_name="Xeon \u00fc",
                            gpu_name=None, num_threads=2))
    e2 = s.environment(dict(ENV, id="f" * 16, git_dirty=None, triton_version="3.1", cpu_name=None,
                            gpu_name="NVIDIA H200", num_threads=None, device="cuda"))
    statuses = ["done", "done", "failed", "diverged", "running", "queued", "interrupted", "done"]
    ids = [f"r{i:02d}{status[:4]}" for i, status in enumerate(statuses)]
    for i, (rid, status) in enumerate(zip(ids, statuses, strict=True)):
        fields = dict(config={"arch": {"name": "fox", "d_model": 64, "gate": None}, "lr": 1 / 3 * 10 ** -i,
                              "tags": ["\u00fcber", "\u6f22"], "flags": [True, False], "big": 2 ** 40},
                      arch="fox", arch_label=f"fox \u00b7 {i}", size="tiny", entry_id=f"ent{i % 2}", setting_id=None,
                      task_id="t" * 16, d_model=64, n_layers=2, n_heads=None, task="mqar", task_setting="mqar(k=4)",
                      lr=1 / 3 * 10 ** -i, seed=i, sweep="copy" if i % 2 else None, n_params=123_456,
                      environment_id=e1 if i % 3 else e2)
        if status == "queued":
            s.enqueue([(rid, fields)])
            continue
        assert s.claim_run(rid, fields) is None
        s.record_curve(rid, 10, [("val", "accuracy", 0.25), ("val", "loss", 1e-300 if i else 1e300)])
        if status == "running":
            continue
        if status == "diverged":
            s.record_curve(rid, 20, [("val", "loss", math.inf), ("val", "accuracy", None)])
        if i == 7:  # a failed attempt, retried: the run carries an attempt log
            s.record_failure(rid, "worker lost\nTraceback: \u26a0")
            assert s.claim_run(rid, fields, retry_failed=True) is None
        s.finish_run(rid, status=status, step=20, duration_s=12.5 + i,
                     error="boom \u2603" if status == "failed" else None,
                     final=[("test", "accuracy", 0.75), ("test", "loss", -math.inf if status == "diverged" else 0.5)],
                     scores=dict(metric="accuracy", val_score=0.7, test_score=0.75 if i % 2 else None, chance=1 / 64),
                     checkpoint=(f"/ckpt/{rid}/model.safetensors", "c" * 64) if status == "done" else None)
    s.set_floors({ids[0]: (1 / 64, "uniform"), ids[1]: (0.0, "majority")})
    s.record_evaluation([dict(checkpoint_sha256="c" * 64, checkpoint_path=f"/ckpt/{ids[0]}/model.safetensors",
                              run_id=ids[0], task="mqar", task_config={"seq_len": 64, "extra": {"x": [1.5, None]}},
                              data_file=data, data_sha256=sha, split="test", name="accuracy", value=v,
                              n_examples=256, environment_id=e1, created_at=T0)
                         for data, sha, v in [(None, None, 0.5), ("/data/x.jsonl", "d" * 64, None)]])
    s.record_benchmark_scores([dict(model=f"/ckpt/{ids[0]}", model_kind="archbench", model_sha256="c" * 64,
                                    label="fox", run_id=ids[0], benchmark=b, group=g, metric="acc", filter="none",
                                    value=v, stderr=se, higher_is_better=hib, n_samples=100, num_fewshot=0,
                                    limit=lim, task_version="1.0", lm_eval_version="0.4.5",
                                    settings={"batch_size": 8, "device": "cpu", "model_args": {"a": None}},
                                    environment_id=e2)
                               for b, g, v, se, hib, lim in [("hellaswag", None, 0.31, 0.0123, True, None),
                                                             ("piqa", "group", 0.6, None, None, 0.5),
                                                             ("wikitext", None, 35.25, None, False, 20.0)]])
    s.add_kernel_benchmarks([dict(op="fox_attention", impl=impl, mode="fwd", dtype="bf16", batch=2, seq_len=4096,
                                  heads=8, head_dim=64, causal=causal, status=st, error=err,
                                  median_ms=ms, p20_ms=ms, p80_ms=ms, tokens_per_s=None if ms is None else 8192 / ms,
                                  tflops=None, peak_fraction=0.5, peak_mem_bytes=mem, device_name="NVIDIA H200",
                                  git_sha=None, environment_id=e2)
                             for impl, causal, st, err, ms, mem in [
                                 ("naive", True, "ok", None, 1.25, 3 * 2 ** 30),  # 3 GiB: past a 32-bit integer
                                 ("triton", False, "error", "OOM \u2192 skipped", None, None)]])
    s.add_probe_benchmarks([dict(task="mqar", preset=p, tokens=t, seconds=sec, tokens_per_s=t / sec,
                                 environment_id=e1) for p, t, sec in [("quick", 4096, 0.125), ("paper", 10 ** 6, 3.5)]])
    s.close()
    return ids


def _typed_rows(url):
    """Every table, ordered by primary key, as SQLAlchemy types the values."""
    engine = create_engine(url)
    with engine.connect() as c:
        rows = {t.name: [tuple(r) for r in c.execute(select(t).order_by(*t.primary_key))]
                for t in Base.metadata.sorted_tables}
        # SQL NULL and JSON null read alike above: count the SQL NULLs of every column apart
        nulls = {t.name: {col.name: c.execute(select(col).where(col.is_(None))).all().__len__() for col in t.columns}
                 for t in Base.metadata.sorted_tables}
    engine.dispose()
    return rows, nulls


def _raw_sqlite(path):
    """Every table of an SQLite file as stored, ordered by primary key."""
    con = sqlite3.connect(path)
    try:
        return {t.name: con.execute(f"select * from {t.name} order by "
                                    f"{', '.join(c.name for c in t.primary_key)}").fetchall()
                for t in Base.metadata.sorted_tables}
    finally:
        con.close()


def _columns(table):
    return [c.name for c in Base.metadata.tables[table].columns]


def _copy(src, dst, cli_env, cwd):
    return subprocess.run(ARCHBENCH + ["db", "copy", src, dst], cwd=cwd, env=cli_env, capture_output=True, text=True,
                          timeout=120)


def test_db_copy_sqlite_to_postgres_to_sqlite_is_row_for_row(fresh_postgres_url, cli_env, tmp_path):
    first, last = tmp_path / "first.db", tmp_path / "last.db"
    ids = _fill(f"sqlite:///{first}")
    want, want_nulls = _typed_rows(f"sqlite:///{first}")
    assert all(want.values()), {t: len(r) for t, r in want.items()}  # a row in every table
    assert Counter(r[_columns("runs").index("status")] for r in want["runs"]) == Counter(
        done=3, failed=1, diverged=1, running=1, queued=1, interrupted=1)

    p = _copy(str(first), fresh_postgres_url, cli_env, tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{len(want['metrics'])} metrics" in p.stdout
    got, got_nulls = _typed_rows(fresh_postgres_url)
    for table in want:
        assert got[table] == want[table], table
    assert got_nulls == want_nulls

    p = _copy(fresh_postgres_url, f"sqlite:///{last}", cli_env, tmp_path)
    assert p.returncode == 0, p.stderr
    back, back_nulls = _typed_rows(f"sqlite:///{last}")
    for table in want:
        assert back[table] == want[table], table
    assert back_nulls == want_nulls
    assert _raw_sqlite(last) == _raw_sqlite(first)  # as stored: JSON text, datetimes, floats, 0/1

    # the copy moved PostgreSQL's id sequences past the copied ids: a new row in every table
    # with an id sequence gets the next id (without the move: a duplicate key error)
    s = Store(fresh_postgres_url)
    assert s.claim_run(ids[5], {}) is None  # the queued run
    s.finish_run(ids[5], status="done", step=1, duration_s=1.0, final=[("test", "accuracy", 0.5)],
                 checkpoint=("/ckpt/new", "n" * 64))
    s.record_evaluation([dict(checkpoint_sha256="n" * 64, checkpoint_path="/ckpt/new", run_id=ids[5], task="mqar",
                              task_config={}, split="val", name="accuracy", value=0.5, n_examples=1)])
    s.record_benchmark_scores([dict(model="/ckpt/new", model_kind="archbench", label="x", benchmark="piqa",
                                    metric="acc", filter="none", value=0.5, lm_eval_version="0.4.5", settings={})])
    s.add_kernel_benchmarks([dict(op="op", impl="torch", mode="fwd", dtype="fp32", batch=1, seq_len=1, heads=1,
                                  head_dim=1, status="ok", device_name="cpu")])
    s.add_probe_benchmarks([dict(task="mqar", preset="quick", tokens=1, seconds=1.0, tokens_per_s=1.0)])
    with s.engine.connect() as c:
        for t in Base.metadata.sorted_tables:
            if t.name not in ("runs", "environments"):
                n = len(want[t.name])
                assert c.execute(text(f"select max(id), count(*) from {t.name}")).one() == (n + 1, n + 1), t.name
    s.close()


def test_db_copy_refuses_a_full_destination_and_itself(fresh_postgres_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import app

    def copy(a, b):  # the CLI in this process (a subprocess costs seconds of imports)
        res = CliRunner().invoke(app, ["db", "copy", a, b])
        assert res.exit_code == 2, (a, b, res.output)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr  # one line
        assert "Traceback" not in res.output and res.stdout == ""
        return res.stderr

    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src.db"
    _fill(f"sqlite:///{src}")
    s = Store(fresh_postgres_url)
    assert s.claim_run("mine", dict(config={}, arch="a", arch_label="a", size="s", task="t", task_setting="t",
                                    lr=0.1, seed=0)) is None
    s.close()
    before = _typed_rows(fresh_postgres_url)
    assert "already holds results (1 runs); copy into an empty database" in copy(str(src), fresh_postgres_url)
    assert _typed_rows(fresh_postgres_url) == before  # nothing written

    raw = _raw_sqlite(src)
    # one database under two names: a path and a URL; two drivers' URLs of one server database
    for a, b in [("./src.db", f"sqlite:///{src}"), (fresh_postgres_url, fresh_postgres_url.replace("+psycopg", ""))]:
        assert "SRC and DST are the same" in copy(a, b)
    assert _raw_sqlite(src) == raw
    assert _typed_rows(fresh_postgres_url) == before


# -- a sweep killed and resumed, on PostgreSQL --------------------------------------------

@pytest.mark.parametrize("jobs", [2])
def test_sigkill_mid_sweep_then_resume_on_postgres(fresh_postgres_url, cli_env, tmp_path, jobs):
    q = _query(fresh_postgres_url)
    sigkill_mid_sweep_then_resume(tmp_path, cli_env, jobs, fresh_postgres_url, q)
    q.engine.dispose()


# -- the server restarts under a writer -----------------------------------------------------

@pytest.fixture
def own_server():
    """A PostgreSQL server of this test's own (tests/pg.py), which the test may stop and start."""
    from tests.conftest import no_postgres
    from tests.pg import NoPostgres, restartable_server

    server_cm = restartable_server()
    try:
        server = server_cm.__enter__()
    except NoPostgres as e:
        no_postgres(str(e))
    try:
        yield server
    finally:
        server_cm.__exit__(None, None, None)


def test_a_writer_survives_a_server_restart(own_server, cli_env):
    """A writer looping claim / record_curve / finish_run over its runs loses the server
    (fast shutdown: its connection is cut) for a while mid-way; it retries, finishes after the
    restart, and every run and metric row is there once."""
    n = 60
    Store(own_server.url).close()  # migrated before the writer starts
    env = dict(cli_env, ARCHBENCH_DB_RETRY_S="60")
    proc = subprocess.Popen(_python("_store_writer.py", own_server.url, 0, n, 0.02), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:  # let it write a few runs first
            lines.append(line)
            if line.startswith("wrote 9"):
                break
        assert lines and lines[-1].startswith("wrote 9"), (lines, proc.stderr.read())
        own_server.stop("fast")
        time.sleep(1.5)  # the writer keeps trying while the server is down
        own_server.start()
        out, errs = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errs
    lines += out.splitlines(keepends=True)
    assert [ln.split()[1] for ln in lines[:-1]] == [str(i) for i in range(n)]  # 10 before the stop, 50 after
    retries = int(lines[-1].split("retries=")[1])
    print(f"writer retried {retries} transactions across the restart")
    assert retries > 0  # it did meet the stopped server
    q = _query(own_server.url)
    assert q("select status, count(*), min(attempts), max(attempts) from runs group by status") == [("done", n, 1, 1)]
    assert q("select count(*) from metrics")[0][0] == n * 3
    q.engine.dispose()


def test_db_copy_of_a_store_being_written_is_the_store_at_one_moment(fresh_postgres_url, cli_env, tmp_path):
    """Copies of a PostgreSQL store taken while a writer adds runs (claim, curve, finish: three
    transactions each) succeed and hold whole transactions only: every copied run's metrics,
    no metric without its run, and the counts checked against the same snapshot."""
    from harness.store.copy import copy_store

    Store(fresh_postgres_url).close()
    proc = subprocess.Popen(_python("_store_writer.py", fresh_postgres_url, 0, 400, 0.0), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env)
    copies = []
    try:
        assert proc.stdout.readline().startswith("wrote")
        while proc.poll() is None and len(copies) < 12:
            dst = tmp_path / f"copy{len(copies)}.db"
            copy_store(fresh_postgres_url, str(dst))
            copies.append(dst)
    finally:
        proc.kill()
        proc.wait()
    assert len(copies) >= 3
    sizes = []
    for dst in copies:
        con = sqlite3.connect(dst)
        runs = dict(con.execute("select status, count(*) from runs group by status").fetchall())
        per_run = dict(con.execute("select r.status, count(m.id) from runs r left join metrics m on m.run_id = r.id "
                                   "group by r.status").fetchall())
        con.close()
        assert set(runs) <= {"done", "running"} and runs.get("running", 0) <= 1, runs
        assert per_run.get("done", 0) == 3 * runs.get("done", 0)  # a finished run with all three metric rows
        sizes.append(sum(runs.values()))
    print("runs in each copy:", sizes)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # the copies were taken while the store grew


def test_a_sweep_completes_across_a_server_restart_and_loses_nothing(own_server, cli_env, tmp_path):
    """`archbench sweep -j 2` into PostgreSQL; the server is stopped (fast: every connection cut)
    once a few runs are done and started again 2 s later.  The sweep's workers retry their writes
    and the sweep ends with exit 0: every run done once, every curve point and final metric there."""
    import yaml

    from tests.conftest import tiny_run

    n = 8
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(
        {"name": "restart", "base": tiny_run(train={"steps": 60, "eval_every": 10}), "grid": {"seed": list(range(n))}}))
    env = dict(cli_env, ARCHBENCH_DB_RETRY_S="90", ARCHBENCH_HEARTBEAT_S="1")
    cmd = [sys.executable, "-m", "harness", "sweep", "s.yaml", "--db", own_server.url, "-q", "-j", "2"]
    log = tmp_path / "sweep.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        q = None
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the sweep ended before the restart:\n{log.read_text()[-3000:]}")
            try:
                q = q or _query(own_server.url)
                if q("select count(*) from runs where status = 'done'")[0][0] >= 2:
                    break
            except Exception:  # noqa: BLE001 - tables not created yet
                q = None
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        own_server.stop("fast")
        time.sleep(2.0)
        own_server.start()
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    q = _query(own_server.url)
    assert q("select status, count(*) from runs group by status") == [("done", n)]
    per_run = q("select r.id, r.attempts, (select count(*) from metrics m where m.run_id = r.id and m.final), "
                "(select count(distinct m.step) from metrics m where m.run_id = r.id and not m.final) from runs r")
    assert len({(finals, steps) for _, _, finals, steps in per_run}) == 1  # the same metrics for every run
    assert {steps for *_, steps in per_run} == {6}  # curve points at 10, 20, ..., 60: none lost
    assert "8 done" in log.read_text()
