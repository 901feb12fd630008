"""Linear attention: the chunked fast path against the O(T^2) reference."""

from __future__ import annotations

import pytest
import torch

from kernels import linear_attention
from kernels.linear_attention.fast import linear_attention_fast
from kernels.linear_attention.reference import feature_map, linear_attention_ref


def make_qkv(b, t, h, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
            for _ in range(3)]


def run(fn, inputs, **kw):
    out = fn(*inputs, **kw)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return out, torch.autograd.grad(out, inputs, cot.to(out.dtype))


# (T, chunk): ragged tail, exact multiple, chunk > T, T = 1, chunk = 1, odd chunk
CASES = [(37, 16), (64, 16), (20, 64), (1, 64), (9, 1), (50, 7)]


@pytest.mark.parametrize("t,chunk", CASES)
def test_fast_matches_reference_float64(t, chunk):
    qkv = make_qkv(2, t, 3, 8)
    out, grads = run(linear_attention, qkv, chunk_size=chunk)
    ref, ref_grads = run(linear_attention_ref, qkv)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_float32_close_to_float64_reference():
    qkv64 = make_qkv(2, 300, 2, 64)
    qkv32 = [x.detach().float().requires_grad_() for x in qkv64]
    out, grads = run(linear_attention, qkv32)
    ref, ref_grads = run(linear_attention_ref, qkv64)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-4)


def test_gradcheck_tiny():
    qkv = make_qkv(1, 6, 2, 3)
    assert torch.autograd.gradcheck(lambda q, k, v: linear_attention_fast(q, k, v, chunk_size=4),
                                    qkv, eps=1e-6, atol=1e-7, fast_mode=True)


def test_first_position_returns_its_value():
    q, k, v = (x.detach() for x in make_qkv(2, 5, 2, 4))
    out = linear_attention(q, k, v, eps=0.0)
    torch.testing.assert_close(out[:, 0], v[:, 0], atol=1e-12, rtol=1e-12)


def test_output_is_convex_combination_of_past_values():
    """Scores are positive, so o_i lies within [min_{j<=i} v_j, max_{j<=i} v_j] per channel."""
    q, k, v = (x.detach() for x in make_qkv(1, 40, 2, 4))
    out = linear_attention(q, k, v, chunk_size=8, eps=0.0)
    assert (out <= v.cummax(dim=1).values + 1e-12).all()
    assert (out >= v.cummin(dim=1).values - 1e-12).all()
    assert (feature_map(torch.linspace(-20, 5, 50, dtype=torch.float64)) > 0).all()


def test_scale_only_matters_against_eps():
    qkv = [x.detach() for x in make_qkv(1, 30, 2, 8)]
    torch.testing.assert_close(linear_attention(*qkv, scale=1.0, eps=0.0),
                               linear_attention(*qkv, scale=0.01, eps=0.0), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(linear_attention(*qkv, scale=0.3, eps=0.1),
                               linear_attention_ref(*qkv, scale=0.3, eps=0.1), atol=1e-12, rtol=1e-12)


def test_chunk_size_does_not_change_result():
    qkv = [x.detach() for x in make_qkv(2, 70, 2, 8)]
    a = linear_attention(*qkv, chunk_size=1)
    for c in (5, 16, 64, 128):
        torch.testing.assert_close(linear_attention(*qkv, chunk_size=c), a, atol=1e-12, rtol=1e-12)


def test_bad_chunk_size_raises():
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attention(*make_qkv(1, 4, 1, 4), chunk_size=0)
