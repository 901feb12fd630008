"""DeltaNet: the chunked torch path against the sequential recurrence, plus closed forms,
and the Triton kernels under the interpreter (in a subprocess)."""

from __future__ import annotations

import pytest
import torch

from kernels import deltanet
from kernels.deltanet.fast import deltanet_fast
from kernels.deltanet.reference import deltanet_ref

NAMES = ["q", "k", "v", "beta"]


def make_inputs(b, t, h, d, dv=None, *, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, t, h, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, t, h, dv or d, generator=g, dtype=torch.float64)
    beta = 0.01 + 0.98 * torch.rand(b, t, h, generator=g, dtype=torch.float64)
    return [x.to(dtype) for x in (q, k, v, beta)]


def grads(fn, xs, cotangent):
    xs = [x.detach().clone().requires_grad_() for x in xs]
    out = fn(*xs)
    return out.detach(), torch.autograd.grad(out, xs, cotangent.to(out.dtype))


@pytest.mark.parametrize("t,chunk", [(1, 16), (5, 16), (37, 16), (130, 16), (64, 64), (130, 64)])
def test_fast_matches_reference_float64(t, chunk):
    xs = make_inputs(2, t, 3, 8, dv=6, seed=t + chunk)
    cot = torch.randn(2, t, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_out, ref_g = grads(deltanet_ref, xs, cot)
    out, g = grads(lambda *a: deltanet_fast(*a, chunk_size=chunk), xs, cot)
    torch.testing.assert_close(out, ref_out, atol=1e-9, rtol=1e-9)
    for name, a, b in zip(NAMES, g, ref_g):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=f"grad of {name}")


def test_fast_float32_close_to_reference():
    xs64 = make_inputs(2, 150, 2, 32, seed=3)
    cot = torch.randn(2, 150, 2, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref_out, ref_g = grads(deltanet_ref, xs64, cot)
    out, g = grads(lambda *a: deltanet_fast(*a, chunk_size=64), [x.float() for x in xs64], cot)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-4)
    for name, a, b in zip(NAMES, g, ref_g):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-3, msg=f"grad of {name}")


def test_gradcheck():
    xs = [x.requires_grad_() for x in make_inputs(2, 7, 2, 4, dv=3, seed=7)]
    assert torch.autograd.gradcheck(lambda *a: deltanet_fast(*a, chunk_size=3), xs, fast_mode=True)


def test_chunk_size_does_not_change_the_result():
    xs = make_inputs(1, 45, 2, 8, seed=5)
    outs = [deltanet_fast(*xs, chunk_size=c) for c in (1, 4, 16, 45, 64)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-12, rtol=1e-12)


def test_keys_are_normalised_inside_the_op():
    q, k, v, beta = make_inputs(2, 40, 2, 8, seed=8)
    # (the 1e-6 inside the norm makes this exact only up to ~1e-6 / |k|^2)
    stretch = 1.0 + 5 * torch.rand(2, 40, 2, 1, dtype=torch.float64)
    for op in (deltanet, deltanet_ref):
        torch.testing.assert_close(op(q, k * stretch, v, beta), op(q, k, v, beta),
                                   atol=1e-6, rtol=1e-6)


def test_orthonormal_keys_and_unit_beta_give_linear_attention():
    """With orthonormal keys and beta = 1 nothing is overwritten: o_t = sum_{s<=t} v_s (k_s . q_t)."""
    b, t, h, d = 2, 12, 2, 16
    q, _, v, _ = make_inputs(b, t, h, d, seed=9)
    basis, _ = torch.linalg.qr(torch.randn(b, h, d, d, dtype=torch.float64))
    k = 3.0 * basis.transpose(-1, -2)[:, :, :t].permute(0, 2, 1, 3)  # rows orthogonal, norm 3
    beta = torch.ones(b, t, h, dtype=torch.float64)
    scores = torch.einsum("bihd,bjhd->bhij", q, k / 3.0) * d ** -0.5
    expected = torch.einsum("bhij,bjhd->bihd", scores.tril(), v)
    torch.testing.assert_close(deltanet(q, k, v, beta, chunk_size=5), expected)


def test_beta_zero_gives_zero_output():
    q, k, v, _ = make_inputs(1, 20, 2, 8, seed=10)
    out = deltanet(q, k, v, torch.zeros(1, 20, 2, dtype=torch.float64))
    assert out.abs().max() == 0


def test_public_op_on_cpu_and_half_precision():
    xs = make_inputs(1, 70, 2, 16, dtype=torch.float32, seed=11)
    out = deltanet(*xs)
    torch.testing.assert_close(out, deltanet_fast(*xs))
    out16 = deltanet(*[x.bfloat16() for x in xs])
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), out, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="beta"):
        deltanet(xs[0], xs[1], xs[2], xs[3][:, :5])


# --- Triton kernels under the interpreter ---------------------------------------------
# TRITON_INTERPRET must be set before triton is first imported, so the check runs in a
# fresh interpreter process and reports its errors as JSON.
TRITON_SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from kernels.deltanet.triton_kernel import deltanet_triton
from kernels.deltanet.reference import deltanet_ref
torch.manual_seed(0)
report = {}
for name, (b, t, h, dk, dv, chunk) in {
    "multi_chunk": (2, 37, 2, 16, 16, 16),
    "odd_dims": (1, 50, 2, 24, 40, 16),
    "single_chunk": (1, 5, 1, 16, 16, 16),
}.items():
    q, k = torch.randn(b, t, h, dk), torch.randn(b, t, h, dk)
    v, beta = torch.randn(b, t, h, dv), torch.rand(b, t, h)
    xs = [x.requires_grad_() for x in (q, k, v, beta)]
    out = deltanet_triton(*xs, chunk_size=chunk)
    cot = torch.randn_like(out)
    g = torch.autograd.grad(out, xs, cot)
    x64 = [x.detach().double().requires_grad_() for x in xs]
    ref = deltanet_ref(*x64)
    g_ref = torch.autograd.grad(ref, x64, cot.double())
    report[name] = {"out": (out.double() - ref).abs().max().item(),
                    "grads": [(a.double() - r).abs().max().item() for a, r in zip(g, g_ref)]}
# forward without grad, Dv split over two programs
q, k, v, beta = torch.randn(1, 40, 2, 16), torch.randn(1, 40, 2, 16), torch.randn(1, 40, 2, 80), torch.rand(1, 40, 2)
with torch.no_grad():
    out = deltanet_triton(q, k, v, beta, chunk_size=16)
ref = deltanet_ref(*(x.double() for x in (q, k, v, beta)))
report["no_grad_split_dv"] = {"out": (out.double() - ref).abs().max().item(), "grads": []}
print("REPORT" + json.dumps(report))
"""


def test_triton_kernels_under_interpreter(run_interpreted):
    report = run_interpreted(TRITON_SCRIPT)
    assert set(report) == {"multi_chunk", "odd_dims", "single_chunk", "no_grad_split_dv"}
    for name, errs in report.items():
        assert errs["out"] < 1e-5, (name, errs)
        for var, e in zip(NAMES, errs["grads"]):
            assert e < 5e-5, (name, var, e)
