"""Fixtures for the kernel tests."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parents[2]


def require_triton():  # noqa: ANN201
    """The ``triton`` module.  Without it the calling test module is skipped, except in CI,
    where Triton (a dependency on Linux) must be installed and its absence is an error."""
    if importlib.util.find_spec("triton") is None and in_ci():
        raise ImportError("triton is not installed, but CI must run the Triton interpreter tests")
    return pytest.importorskip("triton")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A module that sets ``INTERPRETING`` (tests/kernels/test_triton_fox.py) runs its tests
    marked ``triton_interpreter`` only in a process started with ``TRITON_INTERPRET=1``.  In any
    other process they are deselected, not skipped: the module's subprocess test runs them
    (and fails unless each one passes); inside that subprocess only they run."""
    keep, drop = [], []
    for item in items:
        interpreting = getattr(getattr(item, "module", None), "INTERPRETING", None)
        if interpreting is None:
            keep.append(item)
            continue
        needs_interpreter = item.get_closest_marker("triton_interpreter") is not None
        (keep if needs_interpreter == interpreting else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def run_interpreted() -> Callable[[str], dict]:
    """``run_interpreted(script)`` runs ``script`` under ``TRITON_INTERPRET=1`` in a fresh
    interpreter (the variable must be set before triton is first imported) and returns the
    JSON the script printed on a line starting with ``REPORT``.  Skips without Triton
    (fails in CI, see :func:`require_triton`)."""
    require_triton()

    def run(script: str, timeout: float = 300) -> dict:
        env = {**os.environ, "TRITON_INTERPRET": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-4000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT"))
        return json.loads(line[len("REPORT"):])

    return run


@pytest.fixture(scope="session")
def check_errors() -> Callable[..., None]:
    """``check_errors(errs, names, tol, case)`` checks one case of a ``run_interpreted``
    report: ``errs["out"]`` and each of ``errs["grads"]`` (one per name in ``names``) are
    ``(max |error|, max |reference|)`` pairs, each within ``tol[...] * max(1, scale)``
    (``tol["grad_<name>"]`` for one gradient, else ``tol["grads"]``)."""

    def check(errs: dict, names: list[str], tol: dict[str, float], case: str) -> None:
        assert len(errs["grads"]) == len(names), case
        err, scale = errs["out"]
        assert err <= tol["out"] * max(1.0, scale), (case, "out", err, scale)
        for var, (err, scale) in zip(names, errs["grads"]):
            bound = tol.get(f"grad_{var}", tol["grads"])
            assert err <= bound * max(1.0, scale), (case, f"grad of {var}", err, scale)

    return check
