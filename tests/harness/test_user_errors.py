"""Errors a user can cause: each gets one ``error:`` line on stderr naming the fix, exit
status 2, no traceback, and leaves every file as it was (no run row, no checkpoint
directory, no results.db where there was none)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.config import parse_run_config
from harness.errors import UserError
from tests.conftest import ARCHBENCH, tiny_run

runner = CliRunner()

DB_FILES = ("results.db", "results.db-wal", "results.db-shm")


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (dot files included) with its content's sha256."""
    state = {}
    for p in sorted(root.rglob("*")):
        key = p.relative_to(root).as_posix()
        if p.is_symlink():
            state[key] = "link:" + os.readlink(p)
        elif p.is_dir():
            state[key] = "dir"
        else:
            try:
                state[key] = hashlib.sha256(p.read_bytes()).hexdigest()
            except PermissionError:
                state[key] = f"unreadable:{p.stat().st_size}"
    return state


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(res, *needles: str) -> str:
    """The one ``error:`` line of a CliRunner result (exit 2, no traceback), holding every needle."""
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    return _one_line(res.stderr, res.stdout, needles)


def _one_line(stderr: str, stdout: str, needles) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    assert stdout.strip() == "", stdout
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def real_cli(args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(ARCHBENCH + [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def real_error_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    return _one_line(p.stderr, p.stdout, needles)


def assert_nothing_created(cwd: Path) -> None:
    assert not any((cwd / f).exists() for f in DB_FILES), sorted(x.name for x in cwd.iterdir())
    assert not (cwd / "checkpoints").exists()


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine has no CUDA, whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """A store (results.db) holding one finished tiny run and the run's checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    cfg = root / "run.yaml"
    cfg.write_text(yaml.safe_dump(tiny_run()))
    res = cli("train", cfg, "--db", root / "results.db", "--checkpoint-dir", root / "checkpoints", "-q")
    assert res.exit_code == 0, res.output
    cfg.unlink()
    return root


@pytest.fixture
def trained(trained_once, tmp_path, monkeypatch):
    """A private copy of ``trained_once`` in the working directory: (dir, db, checkpoint)."""
    work = tmp_path / "work"
    shutil.copytree(trained_once, work)
    monkeypatch.chdir(work)
    ck = next((work / "checkpoints").iterdir())
    return work, work / "results.db", ck


def _runs_in(db: Path) -> list[str]:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("select status from runs")]
    finally:
        con.close()


# -- 1. a device this machine does not have -------------------------------------------

DEVICE_CASES = [
    ("cuda", ["CUDA is not available on this machine", "--set device=cpu"]),
    ("cuda:0", ["must be one of cpu, cuda, auto", "'cuda:0'", "CUDA_VISIBLE_DEVICES"]),
    ("mps", ["must be one of cpu, cuda, auto", "'mps'"]),
    ("nonsense", ["must be one of cpu, cuda, auto", "'nonsense'"]),
]


@pytest.mark.parametrize("device, needles", DEVICE_CASES)
def test_train_on_an_unavailable_device_creates_no_store(device, needles, no_cuda, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("train", "--arch", "transformer", "--task", "mqar", "--set", f"device={device}", "-q")
    line = error_line(res, "device", *needles)
    assert line.startswith("error: invalid config: device")
    assert_nothing_created(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device, needles", DEVICE_CASES)
def test_train_on_an_unavailable_device_adds_no_run_to_a_store(device, needles, no_cuda, trained):
    work, db, _ = trained
    before = tree(work)
    res = cli("train", "--arch", "transformer", "--task", "mqar", "--set", f"device={device}", "-q", "--db", db)
    error_line(res, *needles)
    assert tree(work) == before
    assert _runs_in(db) == ["done"]  # the fixture's run, nothing claimed or queued


def test_device_is_checked_against_this_machine_when_the_config_is_read(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        parse_run_config(tiny_run(device="cuda"))
    for ok in ("cpu", "auto"):
        assert parse_run_config(tiny_run(device=ok)).device == ok
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parse_run_config(tiny_run(device="cuda")).device == "cuda"  # a GPU machine takes it


def test_pick_device_refuses_cuda_without_a_gpu(no_cuda):
    from harness.train import pick_device

    with pytest.raises(UserError, match="device=cpu"):
        pick_device("cuda")
    assert pick_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device=cuda is valid here")
def test_real_entry_point_refuses_cuda_in_a_fresh_directory(tmp_path, cli_env):
    """The reported bug: a traceback and exit 1 from the installed command, and a results.db left behind."""
    p = real_cli(["train", "--arch", "transformer", "--task", "mqar", "--set", "device=cuda"], tmp_path, cli_env)
    real_error_line(p, "CUDA is not available", "--set device=cpu")
    assert list(tmp_path.iterdir()) == []


def _sweep_file(path: Path, **data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _device_sweep(path: Path) -> Path:
    # the first run is fine; the second asks for CUDA: neither may start
    return _sweep_file(path, name="devices", base=tiny_run(), grid={"device": ["cpu", "cuda"]})


def test_sweep_checks_every_device_before_running_anything(no_cuda, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = _device_sweep(tmp_path / "s.yaml")
    before = tree(tmp_path)
    res = cli("sweep", f, "-q")
    error_line(res, "run 2 of sweep 'devices'", "device=cuda", "CUDA is not available", "device: cpu")
    assert tree(tmp_path) == before
    assert_nothing_created(tmp_path)


def test_suite_checks_every_device_before_running_anything(no_cuda, tmp_path, monkeypatch):
    import harness.config

    monkeypatch.chdir(tmp_path)
    f = _device_sweep(tmp_path / "s.yaml")
    monkeypatch.setattr(harness.config, "suite_path", lambda name: f)  # a built-in suite that asks for CUDA
    before = tree(tmp_path)
    error_line(cli("suite", "gpu", "-q"), "run 2 of sweep 'devices'", "CUDA is not available")
    assert tree(tmp_path) == before


def test_sweep_with_a_bad_device_adds_nothing_to_a_store(no_cuda, trained, tmp_path):
    work, db, _ = trained
    f = _device_sweep(tmp_path / "s.yaml")
    before = tree(work)
    error_line(cli("sweep", f, "-q", "--db", db), "CUDA is not available")
    assert tree(work) == before and _runs_in(db) == ["done"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device=cuda is valid here")
def test_real_entry_point_sweep_refuses_cuda(tmp_path, cli_env):
    f = _device_sweep(tmp_path / "s.yaml")
    p = real_cli(["sweep", f, "-q"], tmp_path, cli_env)
    real_error_line(p, "run 2 of sweep 'devices'", "CUDA is not available")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.yaml"]


# -- 1b. a model too big for this machine's memory -------------------------------------

HUGE = ["--arch", "transformer", "--task", "mqar", "--preset", "quick", "--set", "arch.d_model=10000000"]


def test_train_of_a_model_too_big_for_memory_adds_no_run_to_a_store(trained):
    """A typo in d_model is refused before the run is claimed, with the size and the fix."""
    work, db, _ = trained
    before = tree(work)
    line = error_line(cli("train", *HUGE, "-q", "--db", db), "the run config describes a model of",
                      "GiB of memory", "arch.d_model")
    assert line.startswith("error: ")
    assert tree(work) == before
    assert _runs_in(db) == ["done"]  # the fixture's run only: nothing claimed or queued


def test_train_of_a_model_too_big_for_memory_creates_no_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error_line(cli("train", *HUGE, "-q"), "GiB of memory")
    assert list(tmp_path.iterdir()) == []


def test_sweep_with_a_model_too_big_for_memory_runs_nothing(trained, tmp_path):
    work, db, _ = trained
    f = _sweep_file(tmp_path / "s.yaml", name="sizes", base=tiny_run(), grid={"arch.d_model": [32, 10_000_000]})
    before = tree(work)
    error_line(cli("sweep", f, "-q", "--db", db), "GiB of memory", "arch.d_model")
    assert tree(work) == before and _runs_in(db) == ["done"]


# -- 2. runs --status ---------------------------------------------------------------

def test_runs_with_an_unknown_status_lists_the_valid_ones(trained, tmp_path, monkeypatch):
    from harness.store import RUN_STATUSES

    work, db, _ = trained
    before = tree(work)
    line = error_line(cli("runs", "--status", "bogus", "--db", db), "'bogus'")
    assert all(s in line for s in RUN_STATUSES) and "done" in RUN_STATUSES
    assert tree(work) == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    error_line(cli("runs", "--status", "bogus"), "'bogus'", "failed")
    assert list(fresh.iterdir()) == []


# -- 3. eval --split ------------------------------------------------------------------

@pytest.mark.parametrize("splits", [["nosuch"], ["val", "nosuch"]])
def test_eval_with_an_unknown_split_names_the_tasks_splits(splits, trained):
    work, db, ck = trained
    before = tree(work)
    args = [a for s in splits for a in ("--split", s)]
    line = error_line(cli("eval", ck, *args, "--db", db), "task mqar has no split 'nosuch'", "--split")
    for s in ("train", "val", "test", "ood_pairs"):
        assert s in line.split("splits:")[1]
    assert tree(work) == before


def test_eval_with_an_unknown_split_creates_no_store(trained, tmp_path, monkeypatch):
    _, _, ck = trained
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    error_line(cli("eval", ck, "--split", "nosuch"), "no split 'nosuch'")
    assert list(fresh.iterdir()) == []


# -- 4. eval --data -------------------------------------------------------------------

def _write_data(tmp_path: Path, kind: str) -> Path:
    import numpy as np

    if kind == "missing":
        return tmp_path / "nosuch.npz"
    if kind == "garbage npz":
        p = tmp_path / "garbage.npz"
        p.write_bytes(b"this is not a zip archive\n" * 10)
    elif kind == "empty npz":
        p = tmp_path / "empty.npz"
        p.write_bytes(b"")
    elif kind == "garbage safetensors":
        p = tmp_path / "garbage.safetensors"
        p.write_bytes(b"\xff" * 64)
    elif kind == "wrong format":
        p = tmp_path / "set.csv"
        p.write_text("inputs,labels\n1,2\n")
    elif kind == "no labels":
        p = tmp_path / "nolabels.npz"
        np.savez(p, inputs=np.zeros((2, 32), dtype=np.int64))
    elif kind == "directory":
        p = tmp_path / "set.npz"
        p.mkdir()
    elif kind == "unreadable device":
        p = tmp_path / "mem.npz"
        p.symlink_to("/proc/self/mem")  # a file that exists and whose first bytes cannot be read, even by root
    return p


DATA_CASES = [
    ("missing", ["no such file"]),
    ("garbage npz", ["not an .npz file", "numpy.savez"]),
    ("empty npz", ["not an .npz file", "numpy.savez"]),
    ("garbage safetensors", ["not a readable .safetensors file"]),
    ("wrong format", [".npz or .safetensors"]),
    ("no labels", ["lacks the key(s) labels"]),
    ("directory", ["is a directory", ".npz or .safetensors file itself"]),
    ("unreadable device", ["cannot read it"]),
]


@pytest.mark.parametrize("kind, needles", DATA_CASES, ids=[k for k, _ in DATA_CASES])
def test_eval_with_bad_data_writes_nothing(kind, needles, trained, tmp_path):
    if kind == "unreadable device" and not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux /proc")
    work, db, ck = trained
    src = _write_data(tmp_path, kind)
    before = tree(work)
    error_line(cli("eval", ck, "--data", src, "--db", db), f"cannot use --data {src}", *needles)
    assert tree(work) == before


def test_eval_with_a_data_file_without_read_permission(trained, tmp_path, monkeypatch):
    import numpy as np

    work, db, ck = trained
    src = tmp_path / "locked.npz"
    np.savez(src, inputs=np.zeros((2, 32), dtype=np.int64), labels=np.zeros((2, 32), dtype=np.int64))
    src.chmod(0)
    if os.geteuid() == 0:
        # root reads a file whatever its mode, so os.access answers as it would for a user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == src else real_access(p, mode))
    try:
        before = tree(work)
        error_line(cli("eval", ck, "--data", src, "--db", db), "permission denied", "chmod +r")
        assert tree(work) == before
    finally:
        src.chmod(0o644)


def test_eval_with_bad_data_creates_no_store(trained, tmp_path, monkeypatch):
    _, _, ck = trained
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    src = _write_data(tmp_path, "garbage npz")
    monkeypatch.chdir(fresh)
    error_line(cli("eval", ck, "--data", src), "not an .npz file")
    assert list(fresh.iterdir()) == []


# -- 5. a sweep file without a run config ---------------------------------------------

NO_RUN_CONFIG = {
    "empty": "",
    "comment only": "# a sweep, some day\n",
    "name only": "name: lonely\n",
    "empty base": "name: x\nbase: {}\n",
    "grid without base": "name: x\ngrid:\n  arch.name: [transformer, fox]\n  optimizer.lr: [0.001, 0.003]\n",
    "include without task": "name: x\ninclude:\n  - {seed: 1}\n  - {seed: 2}\n",
}


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("case", list(NO_RUN_CONFIG))
def test_sweep_file_without_a_run_config(case, dry_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "s.yaml"
    f.write_text(NO_RUN_CONFIG[case])
    before = tree(tmp_path)
    res = cli("sweep", f, "-q", *(["--dry-run"] if dry_run else []))
    line = error_line(res, str(f), "base")
    if case not in ("empty", "comment only"):
        assert "holds no run config" in line and "task: {name: mqar}" in line
    assert tree(tmp_path) == before


def test_sweep_file_without_a_run_config_leaves_a_store_alone(trained, tmp_path):
    work, db, _ = trained
    f = tmp_path / "s.yaml"
    f.write_text(NO_RUN_CONFIG["grid without base"])
    before = tree(work)
    error_line(cli("sweep", f, "-q", "--db", db), "holds no run config")
    assert tree(work) == before


def test_a_task_on_a_grid_axis_or_in_every_include_is_a_run_config(tmp_path):
    """The check refuses only files with no task anywhere: these expand to runs."""
    task = tiny_run()["task"]
    rest = {k: v for k, v in tiny_run().items() if k != "task"}
    for i, data in enumerate([dict(base=rest, grid={"task.name": ["mqar"]}),
                              dict(base=rest, include=[{"task": task}])]):
        f = _sweep_file(tmp_path / f"s{i}.yaml", name=f"s{i}", **data)
        res = cli("sweep", f, "--dry-run")
        assert res.exit_code == 0, res.output
        assert "1 runs in sweep" in res.output


# -- 6. bench-probes --task -----------------------------------------------------------

def test_bench_probes_with_an_unknown_task_names_the_known_ones(trained, tmp_path, monkeypatch):
    from tasks import task_names

    work, db, _ = trained
    before = tree(work)
    line = error_line(cli("bench-probes", "--task", "nosuch", "--db", db), "unknown task 'nosuch'")
    assert all(t in line for t in task_names()) and "mqar" in task_names()
    assert tree(work) == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    error_line(cli("bench-probes", "--task", "mqar", "--task", "nosuch", "--tokens", 1000, "--reps", 1),
               "unknown task 'nosuch'")
    assert list(fresh.iterdir()) == []


# -- 7. damaged checkpoints -----------------------------------------------------------

def _damage(ck: Path, config=None, weights=None, keep_sha: bool = False) -> None:
    """Rewrite a checkpoint's config and/or tensors; the recorded sha256 follows the new
    weights (as a tool that re-saves them would write it) unless ``keep_sha``."""
    from safetensors.torch import load_file, save_file

    from models.checkpoint import file_sha256

    cfg = json.loads((ck / "config.json").read_text())
    if weights is not None:
        state = load_file(str(ck / "model.safetensors"))
        weights(state)
        save_file(state, str(ck / "model.safetensors"))
        if not keep_sha:
            cfg["weights_sha256"] = file_sha256(ck / "model.safetensors")
    if config is not None:
        config(cfg)
    (ck / "config.json").write_text(json.dumps(cfg))


def _drop(name):
    return lambda state: state.pop(name)


def _add(state):
    state["blocks.0.mixer.extra"] = torch.zeros(3)


def _widen(name):
    def f(state):
        t = state[name]
        state[name] = torch.zeros(t.shape[0] + 1, *t.shape[1:], dtype=t.dtype)
    return f


def _ints(name):
    def f(state):
        state[name] = state[name].to(torch.int64)
    return f


def _set(key, value):
    return lambda cfg: cfg.__setitem__(key, value)


CHECKPOINT_CASES = {
    "wrong format": (dict(config=_set("format", "someone-elses/2")),
                     ["config.json has format 'someone-elses/2'", "expected 'archbench-checkpoint/1'",
                      "archbench train"]),
    "no format": (dict(config=lambda c: c.pop("format")),
                  ["config.json has no format", "expected 'archbench-checkpoint/1'"]),
    "missing tensor": (dict(weights=_drop("norm.weight")),
                       ["lacks tensor(s) norm.weight", "re-train or re-copy"]),
    "unexpected tensor": (dict(weights=_add),
                          ["holds tensor(s) blocks.0.mixer.extra", "does not have", "re-train or re-copy"]),
    "shape mismatch": (dict(weights=_widen("blocks.0.mixer.out.weight")),
                       ["tensor blocks.0.mixer.out.weight has shape [33, 32]", "needs [32, 32]",
                        "re-train or re-copy"]),
    "integer weights": (dict(weights=_ints("blocks.0.mixer.out.weight")),
                        ["tensor blocks.0.mixer.out.weight holds torch.int64", "needs torch.float32"]),
    "bad arch config": (dict(config=lambda c: c["arch"].__setitem__("bogus_key", 1)),
                        ["does not describe a model", "arch.bogus_key", "re-train or re-copy"]),
    "impossible size": (dict(config=lambda c: c["arch"].__setitem__("d_model", 10**7)),
                        ["describes a model of 1,200,", "parameters", "GiB as float32", "memory",
                         "arch.d_model"]),
    "weights changed, sha kept": (dict(weights=_drop("norm.weight"), keep_sha=True),
                                  ["does not match the sha256 in config.json"]),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_eval_of_a_damaged_checkpoint_names_the_damage(case, trained):
    work, db, ck = trained
    damage, needles = CHECKPOINT_CASES[case]
    _damage(ck, **damage)
    before = tree(work)
    error_line(cli("eval", ck, "--db", db), str(ck), *needles)
    assert tree(work) == before


def test_checkpoint_damage_is_found_before_a_store_is_created(trained, tmp_path, monkeypatch):
    _, _, ck = trained
    _damage(ck, weights=_widen("blocks.0.mixer.out.weight"))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    error_line(cli("eval", ck), "blocks.0.mixer.out.weight")
    assert list(fresh.iterdir()) == []


def test_real_entry_point_reports_a_shape_mismatch_on_one_line(trained, cli_env):
    """torch's own message spans lines; the installed command must still print one."""
    work, db, ck = trained
    _damage(ck, weights=_widen("blocks.0.mixer.out.weight"))
    before = tree(work)
    p = real_cli(["eval", ck, "--db", db], work, cli_env)
    real_error_line(p, "blocks.0.mixer.out.weight has shape [33, 32]")
    assert tree(work) == before


def test_an_undamaged_copy_still_evaluates(trained):
    """The fixture's checkpoint is sound: the errors above come from the damage alone."""
    work, db, ck = trained
    res = cli("eval", ck, "--db", db, "--split", "test", "--format", "json")
    assert res.exit_code == 0, res.output
    assert [r["split"] for r in json.loads(res.stdout)] == ["test"]
