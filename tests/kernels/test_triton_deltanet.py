"""DeltaNet Triton kernels (forward and backward) under TRITON_INTERPRET=1, fp32 and fp16,
against the float64 sequential reference; plus the head-dim check and the compile-launch list.

TRITON_INTERPRET must be set before triton is first imported, and another test in this
process may already have imported it, so the kernels run in a fresh interpreter process
that prints its errors against the reference as JSON.  Under the interpreter the value
block is 16 columns and the key block of the per-chunk kernels 16, so ``dv = 48`` runs three
value blocks and ``dk = 32`` two key blocks.  (The interpreter's bf16 ``tl.dot`` is wrong, so
bf16 numerics are not tested here.)
"""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import require_triton

NAMES = ["q", "k", "v", "beta"]

SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from kernels.deltanet.triton_kernel import deltanet_triton, block_v
from kernels.deltanet.reference import deltanet_ref

CASES = {
    # name: (batch, time, heads, dk, dv, chunk, beta kind, dtype)
    "ragged_three_chunks_three_vblocks": (2, 37, 2, 32, 48, 16, "uniform", "float32"),
    "dk_gt_dv_chunk32": (1, 70, 2, 32, 16, 32, "uniform", "float32"),
    "odd_dims": (2, 21, 2, 24, 20, 16, "uniform", "float32"),
    "beta_near_0_and_1": (2, 40, 2, 16, 32, 16, "extreme", "float32"),
    "single_position": (2, 1, 2, 16, 32, 64, "uniform", "float32"),
    "fp16_ragged": (2, 37, 2, 32, 48, 16, "uniform", "float16"),
    "fp16_beta_near_0_and_1": (1, 33, 2, 16, 32, 16, "extreme", "float16"),
    "fp16_single_position": (1, 1, 3, 16, 16, 16, "uniform", "float16"),
    "fp16_dk_256": (1, 20, 2, 256, 32, 16, "uniform", "float16"),
    "fp32_dv_256": (1, 20, 1, 32, 256, 16, "uniform", "float32"),
}
torch.manual_seed(0)
report = {"block_v": block_v(torch.float32, 32, 48)}
for name, (b, t, h, dk, dv, chunk, kind, dtype) in CASES.items():
    dtype = getattr(torch, dtype)
    q, k, v = torch.randn(b, t, h, dk), torch.randn(b, t, h, dk), torch.randn(b, t, h, dv)
    if kind == "extreme":
        beta = torch.where(torch.rand(b, t, h) < 0.5, 1e-4, 1 - 1e-4) * torch.ones(b, t, h)
    else:
        beta = torch.rand(b, t, h)
    xs = [x.to(dtype).requires_grad_() for x in (q, k, v, beta)]
    out = deltanet_triton(*xs, chunk_size=chunk)
    cot = torch.randn(out.shape).to(dtype)
    g = torch.autograd.grad(out, xs, cot)
    with torch.no_grad():
        out_ng = deltanet_triton(*xs, chunk_size=chunk)
    x64 = [x.detach().double().requires_grad_() for x in xs]
    ref = deltanet_ref(*x64)
    g_ref = torch.autograd.grad(ref, x64, cot.double())
    pair = lambda a, r: ((a.double() - r).abs().max().item(), r.abs().max().item())
    report[name] = {
        "dtype": str(out.dtype), "grad_dtypes": [str(x.dtype) for x in g],
        "out": pair(out, ref), "out_no_grad": pair(out_ng, ref),
        "grads": [pair(a, r) for a, r in zip(g, g_ref)],
    }
print("REPORT" + json.dumps(report))
"""

TOL = {
    "float32": {"out": 2e-5, "grads": 5e-5},
    "float16": {"out": 1e-2, "grads": 2e-2},
}


@pytest.fixture(scope="module")
def report(run_interpreted):
    return run_interpreted(SCRIPT)


def test_all_cases_ran(report):
    assert report["block_v"] == 16  # the interpreter's value block: dv = 48 is three blocks
    assert len(report) == 1 + 10


def test_forward_and_gradients_match_reference(report, check_errors):
    for name, errs in report.items():
        if name == "block_v":
            continue
        dtype = "float16" if name.startswith("fp16") else "float32"
        assert errs["dtype"] == f"torch.{dtype}", name
        assert errs["grad_dtypes"] == [f"torch.{dtype}"] * 4, name
        check_errors(errs, NAMES, TOL[dtype], name)
        err, scale = errs["out_no_grad"]
        assert err <= TOL[dtype]["out"] * max(1.0, scale), (name, "out without grad", err)


def test_unsupported_head_dim_names_the_fix():
    require_triton()
    from kernels.deltanet.triton_kernel import deltanet_triton
    from kernels.triton_utils import UnsupportedHeadDim

    b, t, h = 1, 4, 1
    cases = [(512, 64, torch.float16, "at most 256"), (64, 320, torch.float32, "at most 256"),
             (256, 64, torch.float32, "use bf16 or fp16 inputs")]
    for dk, dv, dtype, says in cases:
        q, k = torch.randn(b, t, h, dk, dtype=dtype), torch.randn(b, t, h, dk, dtype=dtype)
        v, beta = torch.randn(b, t, h, dv, dtype=dtype), torch.rand(b, t, h, dtype=dtype)
        with pytest.raises(UnsupportedHeadDim, match="ARCHBENCH_KERNELS=torch") as err:
            deltanet_triton(q, k, v, beta)
        assert says in str(err.value), (dk, dv, dtype)


@pytest.mark.parametrize("cc", [80, 90])
def test_compile_launches_cover_forward_and_backward(cc):
    require_triton()
    from kernels.deltanet import triton_kernel as tk

    assert tk.HEAD_DIMS == (16, 32, 64, 128, 256) and tk.DTYPES == ("bf16", "fp16", "fp32")
    assert tk.compile_launches(cc, torch.float32, 256) == []  # refused by the wrapper, never launched
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for d in tk.HEAD_DIMS:
            if dtype == torch.float32 and d > tk.FP32_MAX_DK:
                continue
            launches = tk.compile_launches(cc, dtype, d)
            names = {x.name for x in launches}
            assert names == {"deltanet_fwd_h", "deltanet_fwd_o", "deltanet_bwd_dh", "deltanet_bwd_grads"}
            for name, fn, configs in (("deltanet_fwd_h", tk._delta_fwd_h_kernel, tk._recur_configs),
                                      ("deltanet_bwd_grads", tk._delta_bwd_grads_kernel, tk._par_configs)):
                mine = [x for x in launches if x.name == name]
                assert all(x.fn is fn for x in mine)
                args = {"qw": torch.empty(0, dtype=dtype, device="meta"), "BK": d, "DV": d}
                want = configs(cc, args)
                assert [(x.num_warps, x.num_stages) for x in mine] == [(c.num_warps, c.num_stages) for c in want]
                assert all(x.constexprs["C"] == tk.chunk_cap(dtype, d, d) for x in mine)
            for x in launches:
                sig = x.signature()  # every pointer the kernel takes has a declared dtype
                assert all(v != "i32" for k, v in sig.items() if k in ("qw", "do", "hbuf", "o", "dqw"))
                assert x.pointers["qw"] == dtype and x.pointers["hbuf"] == torch.float32
