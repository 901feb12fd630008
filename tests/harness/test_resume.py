"""A sweep killed with SIGKILL and started again finishes every run exactly once.

The kill must land mid-sweep, whatever the machine's speed: the sweep trains a test-only
mixer (``held``, written next to the sweep file as a plugin) that, while
``ARCHBENCH_TEST_HOLD`` names a folder, lets the first run it builds train through and
stops every later run in the middle of training (after two evaluations were stored) until
the process is killed.  The test kills the sweep once one run is done and each worker is
held in its next run; the second start, without the variable, trains everything left.
"""

import os
import signal
import sqlite3
import subprocess
import time

import pytest
import yaml

from tests.conftest import ARCHBENCH, tiny_run

HELD_MIXER = '''
import os
import time
from pathlib import Path

import torch

from models import get_mixer, register_mixer

HOLD = os.environ.get("ARCHBENCH_TEST_HOLD")
HOLD_AT_STEP = 25  # after the evaluations at steps 10 and 20 went to the store


def _held():
    """The first run built (by any worker) trains through; every later one is held."""
    if not HOLD:
        return False
    try:
        os.close(os.open(os.path.join(HOLD, "free"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return False
    except FileExistsError:
        return True


@register_mixer("held", "test only: RoPE attention that can stop mid-training")
class Held(get_mixer("transformer")):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held, self.steps = _held(), 0

    def forward(self, x):
        if self.held and self.training and torch.is_grad_enabled():
            self.steps += 1
            if self.steps == HOLD_AT_STEP:
                Path(HOLD, f"held-{os.getpid()}").touch()
                deadline = time.monotonic() + 600  # the test kills us long before
                while time.monotonic() < deadline:
                    time.sleep(0.1)
        return super().forward(x)
'''


def _sqlite_query(db):
    """``query(sql) -> rows`` on the SQLite file ``db``; no rows while the file is missing or locked."""

    def query(sql):
        if not db.exists():
            return []
        try:
            con = sqlite3.connect(db, timeout=30)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError:
            return []

    return query


def sigkill_mid_sweep_then_resume(tmp_path, cli_env, jobs, db, query):
    """The scenario of the module docstring, against the store ``db`` (a ``--db`` value) that
    ``query(sql) -> rows`` reads (test_store_postgres runs it on PostgreSQL)."""
    base = tiny_run(train={"steps": 40, "eval_every": 10})  # held runs stop at step 25 of 40
    base["arch"]["name"] = "held"
    sweep = {"name": "killme", "plugins": ["held.py"], "base": base, "grid": {"seed": [0, 1, 2, 3]}}
    (tmp_path / "held.py").write_text(HELD_MIXER)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    hold = tmp_path / "hold"
    hold.mkdir()
    cmd = ARCHBENCH + ["sweep", "s.yaml", "--db", db, "-q", "-j", str(jobs)]
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**cli_env, "ARCHBENCH_TEST_HOLD": str(hold)},
                                start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        # one run done, then every worker held mid-way through its next run
        while len(list(hold.glob("held-*"))) < jobs:
            assert proc.poll() is None, f"the sweep ended ({proc.returncode}) before it was held:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the sweep was not held in 300 s:\n{log.read_text()}"
            time.sleep(0.1)
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pool workers
        proc.wait()
    killed = dict(query("select status, count(*) from runs group by status"))
    assert killed == {"done": 1, "running": jobs, "queued": 3 - jobs}, killed
    partial = query("select r.id, count(distinct m.step) from runs r join metrics m on m.run_id = r.id "
                    "where r.status = 'running' and not m.final group by r.id")
    assert sorted(n for _, n in partial) == [2] * jobs  # the held runs stored part of their curve

    done_before = {r[0] for r in query("select id from runs where status='done'")}
    p = subprocess.run(cmd, cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    rows = query("select id, status, attempts from runs")
    assert len(rows) == 4 and {r[1] for r in rows} == {"done"}
    for rid, _, attempts in rows:
        if rid in done_before:
            assert attempts == 1  # finished runs were not redone
        else:
            assert attempts in (1, 2)  # a killed run was claimed once more
    assert sum(a == 2 for _, _, a in rows) == jobs  # ... and only the killed ones
    # no duplicated metric rows: each run has exactly one curve (4 evaluations) and one final score set
    per_run = query("select run_id, count(*) from metrics where not final and name='accuracy' group by run_id")
    assert sorted(n for _, n in per_run) == [4] * 4
    finals = query("select run_id, count(*) from metrics where final and split='test' group by run_id")
    assert sorted(n for _, n in finals) == [1] * 4
    assert query("select count(*) from checkpoints")[0][0] == 4
    lb = subprocess.run(ARCHBENCH + ["leaderboard", "--db", db, "--format", "json"], cwd=tmp_path, env=cli_env,
                        capture_output=True, text=True)
    assert yaml.safe_load(lb.stdout)[0]["runs"] == 4
    return rows


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_mid_sweep_then_resume(tmp_path, cli_env, jobs):
    db = tmp_path / "r.db"
    sigkill_mid_sweep_then_resume(tmp_path, cli_env, jobs, str(db), _sqlite_query(db))
