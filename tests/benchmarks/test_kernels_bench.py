"""pytest-benchmark timings of each op's CPU path at one small shape (B1 T128 H2 D32, fwd+bwd, one thread).

Tiny on purpose (a few rounds each, well under a second per op), so it runs with the rest of
the suite; nothing here asserts a time.  Compare runs with pytest-benchmark's own tools::

    pytest tests/benchmarks --benchmark-autosave          # then: pytest-benchmark compare

``archbench bench`` is the real benchmark (grids, SDPA-normalised ratios, the CI gate).
"""

from __future__ import annotations

import pytest
import torch

from harness.kernelbench import make_runner
from kernels.registry import BASELINE, KernelShape, get_kernel

SHAPE = KernelShape(batch=1, seq_len=128, heads=2, head_dim=32)
ENTRIES = [BASELINE] + [(op, "torch") for op in ("fox", "momentum", "linear", "path", "path-fox", "deltanet")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Single-threaded, like the CI gate: on a shared machine, multi-threaded CPU kernels are
    timed mostly waiting for a descheduled worker thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("op, impl", ENTRIES, ids=[f"{o}-{i}" for o, i in ENTRIES])
def test_kernel_fwd_bwd(benchmark, op, impl):
    entry = get_kernel(op, impl)
    run = make_runner(entry.fn, entry.inputs(SHAPE), "fwd+bwd")
    benchmark.group = f"{SHAPE.label} fwd+bwd"
    grads = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
