"""Momentum attention: the fast path against the plain reference, forward and every gradient."""

from __future__ import annotations

import re

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


def test_reference_rope_default_base_is_10000():
    """Pair (x_i, x_{i+D/2}) as the complex number x_i + 1j x_{i+D/2}, times exp(1j t 10000^(-2i/D))."""
    x = make_qkv(1, 12, 2, 8)[0].detach()
    half = x.shape[-1] // 2
    pos = torch.arange(x.shape[1], dtype=torch.float64)[:, None]
    angle = pos * 10000.0 ** (-2.0 * torch.arange(half, dtype=torch.float64) / x.shape[-1])
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angle), angle)[None, :, None]
    torch.testing.assert_close(rope_ref(x), torch.cat((z.real, z.imag), dim=-1), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_rope_rounds_angles_to_input_dtype_like_kernels_rope(dtype):
    """Below float64 the reference rotates with cos/sin tables rounded to x's dtype and
    computes in that dtype, exactly as ``apply_rope`` (and so the fast path) does."""
    x = make_qkv(2, 40, 3, 16, dtype=dtype)[0].detach()
    assert torch.equal(rope_ref(x, 500.0), apply_rope(x, 500.0)), "reference RoPE rounds differently"


@pytest.mark.parametrize("gamma_kind", ["per_head", "per_position"])
@pytest.mark.parametrize("dtype, gamma_dtype", [(torch.float32, torch.float64), (torch.bfloat16, torch.float32)])
def test_gamma_of_another_dtype(gamma_kind, dtype, gamma_dtype):
    """gamma in another dtype than q, k, v (a float32 gamma parameter with bfloat16 activations
    under autocast; a float64 gamma with float32 inputs): the op computes in the inputs' dtype
    and gamma's gradient comes back in gamma's dtype."""
    b, t, h, d = 2, 9, 2, 8
    qkv64 = make_qkv(b, t, h, d)
    g64 = make_gamma(gamma_kind, b, t, h)
    qkv = [x.detach().to(dtype).requires_grad_() for x in qkv64]
    gamma = g64.detach().to(gamma_dtype).requires_grad_()
    out, grads = run(momentum_attention, qkv, gamma)
    ref, ref_grads = run(momentum_attention_ref, qkv64, g64)
    assert (out.dtype, grads[3].dtype) == (dtype, gamma_dtype), "output in q's dtype, grad in gamma's"
    out_tol, grad_tol = (1e-5, 1e-4) if dtype == torch.float32 else (5e-2, 2e-1)  # bf16: 8-bit mantissa
    torch.testing.assert_close(out.double(), ref, atol=out_tol, rtol=out_tol)
    torch.testing.assert_close(grads[3].double(), ref_grads[3], atol=grad_tol, rtol=grad_tol / 4,
                               msg="grad gamma")


@pytest.mark.parametrize("gamma_kind", GAMMAS)
def test_gamma_on_cpu_inputs_on_another_device(gamma_kind):
    """gamma built on the CPU (a float, or a tensor) with q, k, v elsewhere: both the fast path
    and the reference move it to the inputs' device.  The meta device stands in for CUDA here
    (it refuses to mix with CPU tensors just as CUDA does) and checks placement, not values."""
    b, t, h, d = 1, 6, 2, 8
    q, k, v = (torch.empty(b, t, h, d, device="meta") for _ in range(3))
    gamma = make_gamma(gamma_kind, b, t, h, dtype=torch.float32)
    gamma = gamma.detach() if isinstance(gamma, torch.Tensor) else gamma
    for fn in (momentum_attention, momentum_attention_ref):
        out = fn(q, k, v, gamma)
        assert out.device == q.device and out.shape == q.shape, fn.__name__


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
    for bad in (torch.zeros(3), torch.zeros(1, 4, 3), torch.zeros(2, 4, 2), torch.zeros(1, 4, 2, 1)):
        with pytest.raises(ValueError, match=re.escape(f"[batch, time, heads]=(1, 4, 2); got shape {tuple(bad.shape)}")):
            momentum_attention(q, k, v, bad)
