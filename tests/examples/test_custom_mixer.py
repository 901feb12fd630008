"""The README's custom mixer: the code shown is the code tested, and it sweeps and ranks."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from harness.plugins import load_plugins
from models import LM, ArchConfig
from tests.conftest import ARCHBENCH

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "alibi.py"


def test_readme_shows_the_example_verbatim():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert EXAMPLE.read_text() in blocks


def test_alibi_is_causal_and_size_matched():
    load_plugins([str(EXAMPLE)])
    torch.manual_seed(0)
    cfg = dict(d_model=32, n_layers=2, n_heads=2)
    model = LM(ArchConfig(name="alibi", **cfg), 64).eval()
    x = torch.randint(0, 64, (2, 12))
    y = x.clone()
    y[:, 7:] = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :7], model(y)[:, :7], atol=1e-6)
    ref = LM(ArchConfig(name="transformer", **cfg), 64)
    assert model.num_params() == ref.num_params()


def test_example_sweep_runs_on_two_workers_and_ranks(tmp_path, cli_env):
    sweep = yaml.safe_load((ROOT / "examples" / "alibi_sweep.yaml").read_text())
    sweep["plugins"] = [str(EXAMPLE)]
    sweep["base"]["train"] = {"steps": 15, "batch_size": 16, "eval_every": 15}
    sweep["grid"] = {"arch.name": ["alibi", "transformer"], "seed": [0], "optimizer.lr": [0.003]}
    sweep["include"] = sweep["include"][1:]  # flip-flop only
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    env = {k: v for k, v in cli_env.items() if k != "ARCHBENCH_PLUGINS"}
    db = str(tmp_path / "r.db")
    run = subprocess.run(ARCHBENCH + ["sweep", "s.yaml", "-j", "2", "--db", db, "-q"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lb = subprocess.run(ARCHBENCH + ["leaderboard", "--db", db, "--format", "json"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120)
    assert lb.returncode == 0, lb.stderr
    assert {row["arch"] for row in json.loads(lb.stdout)} == {"alibi", "transformer"}


def test_a_missing_plugin_is_a_clear_error(tmp_path, cli_env):
    res = subprocess.run(ARCHBENCH + ["archs", "--plugin", "nosuch_file.py"], cwd=tmp_path, env=cli_env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "plugin file 'nosuch_file.py' not found" in res.stderr
    assert "Traceback" not in res.stderr
