"""Choosing where a sweep runs: --executor, Ray's resource requests from flags or the sweep
file, and the refusals that come before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from harness.config import load_sweep
from harness.errors import UserError
from harness.sweep import make_executor
from tests.conftest import tiny_run

pytest.importorskip("ray")


def sweep_file(tmp_path, **extra):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "base": tiny_run(), **extra}))
    return p


def test_resources_come_from_the_sweep_file_unless_the_flags_give_them(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, resources={"num_cpus": 2, "num_gpus": 0.25}))
    from_file = make_executor("ray").with_resources(sweep.resources)
    assert (from_file.ray.num_cpus, from_file.ray.num_gpus) == (2, 0.25)
    flags = make_executor("ray", num_cpus=4, num_gpus=0).with_resources(sweep.resources)
    assert (flags.ray.num_cpus, flags.ray.num_gpus) == (4, 0)
    default = make_executor("ray").with_resources(load_sweep(sweep_file(tmp_path)).resources)
    assert (default.ray.num_cpus, default.ray.num_gpus) == (1, 0)
    assert "2 CPU, 0.25 GPU per run" in from_file.describe()


@pytest.mark.parametrize("kw, match", [
    ({"kind": "slurm"}, "unknown --executor 'slurm'; use local or ray"),
    ({"kind": "ray", "num_cpus": 0}, "--num-cpus must be positive"),
    ({"kind": "ray", "num_gpus": -1}, "--num-gpus must be 0 or more"),
    ({"kind": "ray", "max_retries": -1}, "--max-retries must be 0 or more"),
])
def test_bad_executor_options_are_refused(kw, match):
    with pytest.raises(UserError, match=match):
        make_executor(**kw)


def test_a_bad_resource_in_the_sweep_file_is_refused(tmp_path):
    with pytest.raises(UserError, match="resources.num_gpus"):
        load_sweep(sweep_file(tmp_path, resources={"num_gpus": -0.5}))


def test_a_ray_cluster_with_an_sqlite_store_is_refused_before_anything_is_written(tmp_path, cli_env):
    p = sweep_file(tmp_path, grid={"seed": [0, 1]})
    r = subprocess.run([sys.executable, "-m", "harness", "sweep", str(p), "--executor", "ray", "--address",
                        "127.0.0.1:1", "--db", str(tmp_path / "r.db")], capture_output=True, text=True, env=cli_env,
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot share the SQLite file" in r.stderr and "PostgreSQL URL" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r.db").exists()  # refused before the store was opened
