"""``ARCHBENCH_KERNELS`` from ``archbench train``: ``torch`` and ``triton`` (the Triton kernels,
interpreted on this CPU with ``TRITON_INTERPRET=1``) both train, and the store says which path
every op took (``runs.kernel_paths``) and which mode was asked for (``environments.kernels``).
``triton`` where nothing can run Triton is refused before anything is written."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
import yaml

from tests.conftest import ARCHBENCH, tiny_run


def _config(tmp_path):
    cfg = tiny_run(arch={"name": "fox", "d_model": 32, "n_layers": 1, "n_heads": 2},
                   task={"params": {"vocab_size": 64, "seq_len": 32, "num_pairs": 4,
                                    "n_train": 64, "n_val": 16, "n_test": 16}},
                   train={"steps": 3, "batch_size": 8, "eval_every": 3})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(tmp_path, cli_env, db, **env):
    return subprocess.run(ARCHBENCH + ["train", str(_config(tmp_path)), "--db", str(db), "-q",
                                       "--checkpoint-dir", str(tmp_path / "ck")],
                          capture_output=True, text=True, env={**cli_env, **env}, cwd=tmp_path, timeout=600)


@pytest.mark.triton
@pytest.mark.parametrize("mode", ["torch", "triton"])
def test_train_runs_on_the_kernel_path_asked_for(tmp_path, cli_env, mode):
    pytest.importorskip("triton")
    db = tmp_path / f"{mode}.db"
    p = _train(tmp_path, cli_env, db, ARCHBENCH_KERNELS=mode, TRITON_INTERPRET="1")
    assert p.returncode == 0, p.stderr[-3000:]
    con = sqlite3.connect(db)
    status, paths, kernels = con.execute(
        "select r.status, r.kernel_paths, e.kernels from runs r join environments e on e.id = r.environment_id"
    ).fetchone()
    assert status == "done"
    assert json.loads(paths) == {"fox_attention": mode}
    assert kernels == mode


def test_triton_without_a_gpu_or_the_interpreter_exits_2_before_writing(tmp_path, cli_env):
    db = tmp_path / "r.db"
    env = {k: v for k, v in cli_env.items() if k != "TRITON_INTERPRET"}
    p = subprocess.run(ARCHBENCH + ["train", str(_config(tmp_path)), "--db", str(db), "-q"],
                       capture_output=True, text=True, env={**env, "ARCHBENCH_KERNELS": "triton"}, cwd=tmp_path)
    assert p.returncode == 2
    assert "ARCHBENCH_KERNELS=triton needs a CUDA device" in p.stderr and "Traceback" not in p.stderr
    assert not db.exists()
    p = subprocess.run(ARCHBENCH + ["train", str(_config(tmp_path)), "--db", str(db), "-q"],
                       capture_output=True, text=True, env={**env, "ARCHBENCH_KERNELS": "gpu"}, cwd=tmp_path)
    assert p.returncode == 2
    assert "ARCHBENCH_KERNELS='gpu' is not a kernel mode; use one of auto, torch, triton" in p.stderr
    assert not db.exists()
