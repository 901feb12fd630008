"""Momentum attention: the fast path against the plain reference, forward and every gradient."""

from __future__ import annotations

import pytest
import torch

from kernels import apply_rope, momentum_attention, softmax_attention
from kernels.momentum.fast import momentum_attention_fast, shear
from kernels.momentum.reference import momentum_attention_ref, rope_ref, shear_ref


def make_qkv(b, t, h, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
            for _ in range(3)]


def make_gamma(kind, b, t, h, dtype=torch.float64, seed=2):
    g = torch.Generator().manual_seed(seed)
    if kind == "float":
        return 0.35
    if kind == "scalar":
        return torch.tensor(0.6, dtype=dtype, requires_grad=True)
    if kind == "per_head":
        return torch.rand(h, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    return torch.rand(b, t, h, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def run(fn, inputs, gamma, **kw):
    leaves = list(inputs) + ([gamma] if isinstance(gamma, torch.Tensor) else [])
    out = fn(*inputs, gamma, **kw)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # T = 1: the reference never touches gamma (no difference to take): its gradient is 0
    return out, torch.autograd.grad(out, leaves, cot.to(out.dtype), allow_unused=True,
                                    materialize_grads=True)


GAMMAS = ["float", "scalar", "per_head", "per_position"]


@pytest.mark.parametrize("gamma_kind", GAMMAS)
@pytest.mark.parametrize("shape", [(2, 37, 3, 16), (1, 1, 2, 8)])
def test_fast_matches_reference_float64(shape, gamma_kind):
    b, t, h, d = shape
    qkv = make_qkv(*shape)
    gamma = make_gamma(gamma_kind, b, t, h)
    out, grads = run(momentum_attention, qkv, gamma)
    ref, ref_grads = run(momentum_attention_ref, qkv, gamma)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    assert len(grads) == (3 if gamma_kind == "float" else 4)
    for a, b_ in zip(grads, ref_grads):
        torch.testing.assert_close(a, b_, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("gamma_kind", ["scalar", "per_head"])
def test_float32_close_to_float64_reference(gamma_kind):
    qkv64 = make_qkv(2, 50, 2, 32)
    g64 = make_gamma(gamma_kind, 2, 50, 2)
    qkv32 = [x.detach().float().requires_grad_() for x in qkv64]
    g32 = g64.detach().float().requires_grad_()
    out, grads = run(momentum_attention, qkv32, g32)
    ref, ref_grads = run(momentum_attention_ref, qkv64, g64)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    for a, b_ in zip(grads[:3], ref_grads[:3]):
        torch.testing.assert_close(a.double(), b_, atol=1e-4, rtol=1e-4)
    # gamma's gradient sums over every element: fp32 accumulation, looser
    torch.testing.assert_close(grads[3].double(), ref_grads[3], atol=1e-3, rtol=1e-3)


def test_gradcheck_tiny():
    q, k, v = make_qkv(1, 4, 2, 4)
    gamma = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k, v, g: momentum_attention_fast(q, k, v, g),
                                    (q, k, v, gamma), eps=1e-6, atol=1e-7, fast_mode=True)


def test_zero_gamma_is_rope_attention():
    q, k, v = make_qkv(2, 21, 2, 8)
    expected = softmax_attention(apply_rope(q), apply_rope(k), v)
    torch.testing.assert_close(momentum_attention(q, k, v, 0.0), expected, atol=1e-12, rtol=1e-12)


def test_shear_definition():
    x = torch.arange(6, dtype=torch.float64).view(1, 3, 1, 2) ** 2  # x_t = [(2t)^2, (2t+1)^2]
    y = shear(x, 0.5)
    # y_0 = x_0 (p_0 = 0); y_t = x_t + 0.5 (x_t - x_{t-1})
    expected = torch.tensor([[0.0, 1.0], [4 + 2.0, 9 + 4.0], [16 + 6.0, 25 + 8.0]], dtype=torch.float64)
    torch.testing.assert_close(y[0, :, 0], expected)
    torch.testing.assert_close(shear_ref(x, 0.5), y)


def test_shear_is_applied_before_rope():
    """Reference order is shear -> RoPE; the other order gives a different op."""
    q, k, v = (x.detach() for x in make_qkv(1, 16, 2, 8))
    out = momentum_attention(q, k, v, 0.8)
    wrong = softmax_attention(shear(apply_rope(q), 0.8), shear(apply_rope(k), 0.8), v)
    right = softmax_attention(apply_rope(shear(q, 0.8)), apply_rope(shear(k, 0.8)), v)
    torch.testing.assert_close(out, right, atol=1e-12, rtol=1e-12)
    assert (out - wrong).abs().max() > 1e-3


def test_reference_rope_matches_kernels_rope():
    x = make_qkv(2, 9, 3, 8)[0].detach()
    torch.testing.assert_close(rope_ref(x, 500.0), apply_rope(x, 500.0), atol=1e-12, rtol=1e-12)


def test_scale_and_rope_base_are_used():
    q, k, v = (x.detach() for x in make_qkv(1, 12, 2, 8))
    base = momentum_attention(q, k, v, 0.5)
    torch.testing.assert_close(momentum_attention(q, k, v, 0.5, scale=0.7, rope_base=100.0),
                               momentum_attention_ref(q, k, v, 0.5, scale=0.7, rope_base=100.0),
                               atol=1e-12, rtol=1e-12)
    assert (momentum_attention(q, k, v, 0.5, scale=0.7) - base).abs().max() > 1e-3
    assert (momentum_attention(q, k, v, 0.5, rope_base=100.0) - base).abs().max() > 1e-3


def test_bad_gamma_shape_raises():
    q, k, v = make_qkv(1, 4, 2, 8)
    with pytest.raises(ValueError, match="gamma"):
        momentum_attention(q, k, v, torch.zeros(3))
