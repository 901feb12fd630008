"""Linear attention's chunk-parallel Triton kernels (per-chunk states, a prefix sum over
chunks, then one program per chunk for the output, dq and dk/dv) under
``TRITON_INTERPRET=1``: output and the gradients of q, k and v against the float64
reference, in fp32 (and fp16 cases).

The variable must be set before triton is first imported, and another test in this
pytest process may already have imported it, so the kernels run in one fresh Python
process that prints its errors as JSON; the tests below read that report.  The kernels'
chunk (block) size is ``chunk_size`` rounded to a power of two in [16, 64] (fp32: at most
32, 16 at head dim 128), and under the interpreter each program writes a 16-wide feature
slice (head dims 24, 20 and 32 run as two slices), so T = 37 with chunk 16 is three chunks
with a ragged tail, and the states passed between chunks (the forward prefix states, read
again for dq, and the reversed suffix states for dk/dv) are exercised; T = 130 is nine
chunks.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.triton


SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from triton.runtime.interpreter import InterpretedFunction
from kernels.linear_attention import triton_kernel as tk
from kernels.linear_attention.reference import linear_attention_ref

def max_err(a, ref):
    return (a.double() - ref).abs().max().item() if a.numel() else 0.0

def case(b, t, h, d, dv, chunk, seed, dtype=torch.float32, scale=None, eps=1e-6,
         strided=False, shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    if strided:  # q, k, v as views of one fused projection [B, T, H, 3, D]
        assert d == dv
        qkv = torch.randn(b, t, h, 3, d, generator=gen).to(dtype)
        q, k, v = (x.detach().requires_grad_() for x in qkv.unbind(3))
        assert not q.is_contiguous()
    else:
        # shift < 0 puts most features on the exp branch of elu + 1
        q, k = ((torch.randn(b, t, h, d, generator=gen) + shift).to(dtype).requires_grad_()
                for _ in range(2))
        v = torch.randn(b, t, h, dv, generator=gen).to(dtype).requires_grad_()
    out = tk.linear_attention_triton(q, k, v, scale, chunk, eps=eps)
    cot = torch.randn(out.shape, generator=gen).to(dtype)  # the reference gets the same cot
    grads = torch.autograd.grad(out, [q, k, v], cot)
    x64 = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref = linear_attention_ref(*x64, scale, eps=eps)
    ref_grads = torch.autograd.grad(ref, x64, cot.double())
    with torch.no_grad():  # forward alone (no autograd graph) gives the same output
        out_ng = tk.linear_attention_triton(q, k, v, scale, chunk, eps=eps)
    # errors as [max |a - ref|, max |ref|], so the test can scale its tolerance
    return {"out": [max_err(out, ref), ref.abs().max().item()],
            "out_no_grad": max_err(out_ng, out.double()),
            "grads": [[max_err(a, r), r.abs().max().item()] for a, r in zip(grads, ref_grads)],
            "dtype_ok": out.dtype == dtype and all(a.dtype == dtype for a in grads),
            "shape_ok": tuple(out.shape) == (b, t, h, dv)
                        and all(a.shape == x.shape for a, x in zip(grads, (q, k, v)))}

# the kernels are tuned (triton.autotune) wrappers around the interpreted functions
report = {"interpreted": all(isinstance(f.fn, InterpretedFunction) for f in (
              tk._la_state_kernel, tk._la_fwd_kernel, tk._la_bwd_dq_kernel, tk._la_bwd_dk_kernel,
              tk._la_bwd_dv_kernel)),
          "cases": {}}
C = report["cases"]
C["b2_t37_h3_c16"] = case(2, 37, 3, 16, 16, 16, seed=1)
C["b2_t32_h2_c16_two_full_chunks"] = case(2, 32, 2, 16, 16, 16, seed=2)
C["b2_t70_h2_d24_dv20_c32"] = case(2, 70, 2, 24, 20, 32, seed=3)
C["b2_t30_h2_c64_one_chunk"] = case(2, 30, 2, 16, 16, 64, seed=4)
C["b2_t1_h2_c16"] = case(2, 1, 2, 16, 16, 16, seed=5)
C["b2_t1_h3_d8_c64"] = case(2, 1, 3, 8, 8, 64, seed=6)
C["b2_t40_h2_c5_scale_eps_negative"] = case(2, 40, 2, 16, 16, 5, seed=7, scale=0.3, eps=1e-2,
                                            shift=-1.5)
C["b2_t24_h2_strided"] = case(2, 24, 2, 16, 16, 16, seed=8, strided=True)
C["b2_t130_h2_c16_nine_chunks"] = case(2, 130, 2, 16, 16, 16, seed=10)
C["b2_t37_h2_fp16"] = case(2, 37, 2, 16, 16, 16, seed=9, dtype=torch.float16)
C["b2_t70_h3_d32_c32_fp16"] = case(2, 70, 3, 32, 32, 32, seed=11, dtype=torch.float16)
try:  # an unsupported head dim is refused before any launch
    x = torch.zeros(1, 4, 1, 256)
    tk.linear_attention_triton(x, x, x)
    report["head_dim_256"] = "accepted"
except Exception as e:
    report["head_dim_256"] = type(e).__name__
print("REPORT" + json.dumps(report))
"""

CASES = ["b2_t37_h3_c16", "b2_t32_h2_c16_two_full_chunks", "b2_t70_h2_d24_dv20_c32",
         "b2_t30_h2_c64_one_chunk", "b2_t1_h2_c16", "b2_t1_h3_d8_c64",
         "b2_t40_h2_c5_scale_eps_negative", "b2_t24_h2_strided", "b2_t130_h2_c16_nine_chunks"]
FP16_CASES = ["b2_t37_h2_fp16", "b2_t70_h3_d32_c32_fp16"]
# Bounds on max |error| / max(1, max |reference|).  fp32 against float64 (the dots run as
# 3xTF32 on a GPU, fp32 under the interpreter): observed errors are below 1e-6 of the
# scale.  fp16: phi(q), phi(k) and the intra-chunk score tiles feed the dots in fp16 and the
# output and the gradients are stored in fp16 (2^-11 relative each).
TOL = {"out": 5e-6, "grads": 1e-5}
TOL_FP16 = {"out": 2e-3, "grads": 3e-3}


@pytest.fixture(scope="module")
def report(run_interpreted):
    return run_interpreted(SCRIPT)


def test_ran_interpreted_and_every_case(report):
    assert report["interpreted"]
    assert set(report["cases"]) == set(CASES) | set(FP16_CASES)
    for name, errs in report["cases"].items():
        assert errs["dtype_ok"] and errs["shape_ok"], name
        assert errs["out"][1] > 0.5, name  # the comparison is not vacuous
        assert errs["out_no_grad"] == 0.0, name  # same kernel, same numbers without autograd


def test_unsupported_head_dim_is_refused(report):
    assert report["head_dim_256"] == "UnsupportedHeadDim"


# batch 2, heads > 1; T = 37 (three chunks of 16, ragged tail), 32 (two full chunks), 70
# (chunk 32, head dims 24 / 20 padded to 32), 30 in one chunk, T = 1; chunk_size 5
# (rounded up to 16) with a custom scale, a large eps and mostly negative features (the
# exp branch of elu + 1); q, k, v as non-contiguous views of one fused projection; nine
# chunks.
@pytest.mark.parametrize("case", CASES)
def test_linear_attention_triton_matches_reference_fp32(report, check_errors, case):
    check_errors(report["cases"][case], ["q", "k", "v"], TOL, case)


@pytest.mark.parametrize("case", FP16_CASES)
def test_linear_attention_triton_matches_reference_fp16(report, check_errors, case):
    check_errors(report["cases"][case], ["q", "k", "v"], TOL_FP16, case)
