"""A sweep killed with SIGKILL and started again finishes every run exactly once."""

import os
import signal
import sqlite3
import subprocess
import time

import pytest
import yaml

from tests.conftest import ARCHBENCH, tiny_run


def _counts(db):
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(db, timeout=30)
        rows = con.execute("select status, count(*) from runs group by status").fetchall()
        con.close()
        return dict(rows)
    except sqlite3.OperationalError:
        return {}


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_mid_sweep_then_resume(tmp_path, cli_env, jobs):
    sweep = {"name": "killme", "base": tiny_run(train={"steps": 120, "eval_every": 10}),
             "grid": {"seed": [0, 1, 2, 3]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    db = tmp_path / "r.db"
    cmd = ARCHBENCH + ["sweep", "s.yaml", "--db", str(db), "-q", "-j", str(jobs)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until one run is done and another is mid-way
        c = _counts(db)
        if c.get("done", 0) >= 1 and c.get("running", 0) >= 1:
            break
        assert proc.poll() is None, "sweep ended before it could be killed"
        time.sleep(0.05)
    else:
        pytest.fail("sweep never got going")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = _counts(db)
    assert killed.get("running", 0) >= 1 and killed.get("done", 0) < 4

    con = sqlite3.connect(db)
    done_before = {r[0] for r in con.execute("select id from runs where status='done'")}
    con.close()
    p = subprocess.run(cmd, cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    con = sqlite3.connect(db)
    rows = con.execute("select id, status, attempts from runs").fetchall()
    assert len(rows) == 4 and {r[1] for r in rows} == {"done"}
    for rid, _, attempts in rows:
        if rid in done_before:
            assert attempts == 1  # finished runs were not redone
    # no duplicated metric rows: each run has exactly one curve (12 evaluations) and one final score set
    per_run = con.execute("select run_id, count(*) from metrics where final=0 and name='accuracy' group by run_id").fetchall()
    assert sorted(n for _, n in per_run) == [12] * 4
    finals = con.execute("select run_id, count(*) from metrics where final=1 and split='test' group by run_id").fetchall()
    assert sorted(n for _, n in finals) == [1] * 4
    assert con.execute("select count(*) from checkpoints").fetchone()[0] == 4
    con.close()
    lb = subprocess.run(ARCHBENCH + ["leaderboard", "--db", str(db), "--format", "json"], cwd=tmp_path, env=cli_env,
                        capture_output=True, text=True)
    assert yaml.safe_load(lb.stdout)[0]["runs"] == 4
