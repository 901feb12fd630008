"""Every Triton kernel compiles for the GPUs our users have, within their limits.

No GPU is needed: :mod:`kernels.compile_targets` compiles each launch (forward and backward
kernels, every config the autotuner may pick on that target) with Triton's NVIDIA backend for
``sm_80`` (A100) and ``sm_90`` (H100), reads the shared memory Triton reserves and the
registers/spills ``ptxas -v`` reports.  A launch fits when its shared memory is within the
target's per-block limit (163 / 227 KiB) and it spills no more than the budget its kernel states.

CI compiles bf16 at head dims 64 and 128 on both targets (the configs training uses); the rest of
the matrix (fp16, fp32, head dims 16, 32 and 256) is marked ``slow``.
"""

from __future__ import annotations

import pytest

from tests.kernels.conftest import require_triton

triton = require_triton()
import triton.language as tl  # noqa: E402

from kernels import compile_targets as ct  # noqa: E402
from kernels.triton_utils import SHARED_LIMIT, KernelLaunch, UnsupportedHeadDim, launches_for  # noqa: E402

pytestmark = pytest.mark.triton

CI = {("bf16", 64), ("bf16", 128)}
CASES = [pytest.param(op, cc, dtype, d, id=f"{op}-sm{cc}-{dtype}-d{d}",
                      marks=() if (dtype, d) in CI else pytest.mark.slow)
         for op, cc, dtype, d in ct.matrix()]


@pytest.mark.parametrize(("op", "cc", "dtype", "head_dim"), CASES)
def test_every_launch_compiles_and_fits(op, cc, dtype, head_dim):
    launches = ct.launches(op, cc, dtype, head_dim)
    assert launches, f"{op} declares no launch for sm{cc} {dtype} d{head_dim}"
    rows = [ct.measure(op, launch, cc, dtype, head_dim) for launch in launches]
    too_big = [f"{r.kernel} [{r.config}]: {r.shared / 1024:.1f} KiB > {SHARED_LIMIT[cc] / 1024:.0f} KiB"
               for r in rows if r.shared > SHARED_LIMIT[cc]]
    spills = [f"{r.kernel} [{r.config}]: spills {r.spill_stores}/{r.spill_loads} B > budget {r.spill_budget} B"
              for r in rows if max(r.spill_stores, r.spill_loads) > r.spill_budget]
    assert not too_big and not spills, "\n".join(too_big + spills)
    assert all(r.registers <= 255 for r in rows)
    for r in rows:  # shown with -s / in the log: the numbers kernels/README.md tabulates
        print(f"{r.kernel:24s} sm{cc} {dtype} d{head_dim:<4d} {r.config:44s} {r.shared / 1024:6.1f} KiB "
              f"{r.registers:3d} regs spills {r.spill_stores}/{r.spill_loads}")


@pytest.mark.parametrize("op", ct.OPS)
def test_forward_and_backward_kernels_are_declared(op):
    dims, dtypes = ct.supported(op)
    names = {launch.name for launch in ct.launches(op, 90, dtypes[0], max(dims))}
    assert any("fwd" in n for n in names) and any("bwd" in n for n in names), names


def test_the_matrix_covers_the_head_dims_training_uses():
    for op in ct.OPS:
        dims, dtypes = ct.supported(op)
        assert {16, 32, 64, 128} <= set(dims), (op, dims)
        assert {"bf16", "fp16"} <= set(dtypes), (op, dtypes)


# -- the checker itself can fail ----------------------------------------------------------------

@triton.jit
def _big_tile_kernel(X, Y, BLOCK: tl.constexpr):
    r = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    for i in range(0, 4):
        a = tl.load(X + i * BLOCK * BLOCK + r[:, None] * BLOCK + r[None, :])
        acc += tl.dot(a, a)
    tl.store(Y + r[:, None] * BLOCK + r[None, :], acc)


def test_an_oversized_launch_is_reported_as_not_fitting():
    import torch

    def configs(cc, args):
        return [triton.Config({"BLOCK": 256}, num_warps=8, num_stages=4)]

    (launch,) = launches_for("big.fwd", _big_tile_kernel, configs, 90, {},
                             pointers={"X": torch.float32, "Y": torch.float32}, constexprs={})
    assert isinstance(launch, KernelLaunch) and launch.signature() == {"X": "*fp32", "Y": "*fp32",
                                                                        "BLOCK": "constexpr"}
    r = ct.measure("big", launch, 90, "fp32", 256)
    assert r.shared > SHARED_LIMIT[90] and not r.fits


@pytest.mark.parametrize("op", ct.OPS)
def test_an_unsupported_head_dim_is_refused_at_dispatch_with_the_fix(op):
    import torch

    import kernels

    dims, _ = ct.supported(op)
    d = 2 * max(dims)
    b, t, h = 1, 4, 1
    q = torch.randn(b, t, h, d)
    g = torch.full((b, t, h), 0.5)
    call = {
        "fox": lambda f: f(q, q, q, -g),
        "softmax_attention": lambda f: f(q, q, q),
        "path": lambda f: f(q, q, q, q, g),
        "deltanet": lambda f: f(q, q, q, g),
        "linear_attention": lambda f: f(q, q, q),
        "momentum": lambda f: f(q, q, q, 0.5),
    }[op]
    entry = kernels.registry.get_kernel({"linear_attention": "linear", "softmax_attention": "softmax"}.get(op, op),
                                        "triton")
    with pytest.raises(UnsupportedHeadDim, match=rf"head_dim {d} is not supported .*ARCHBENCH_KERNELS=torch"):
        call(entry.fn)
