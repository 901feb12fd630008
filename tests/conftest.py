import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tiny_run(**over):
    """A run config dict that trains in about a second."""
    cfg = {
        "arch": {"name": "transformer", "d_model": 32, "n_layers": 1, "n_heads": 2},
        "task": {"name": "mqar", "params": {"vocab_size": 64, "seq_len": 32, "num_pairs": 4,
                                            "n_train": 256, "n_val": 64, "n_test": 64}},
        "train": {"steps": 20, "batch_size": 32, "eval_every": 10},
        "optimizer": {"lr": 3e-3, "warmup_steps": 2},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the CLI in a subprocess inside tmp_path."""
    env = dict(os.environ)
    env.pop("ARCHBENCH_DB", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


ARCHBENCH = [sys.executable, "-m", "harness"]
