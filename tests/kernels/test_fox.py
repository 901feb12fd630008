"""FoX: the fast (SDPA) path against the plain reference, forward and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import fox_attention, softmax_attention
from kernels.fox.fast import fox_attention_fast
from kernels.fox.reference import fox_attention_ref


def make_inputs(b, t, h, d, dtype=torch.float64, gate_bias=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, t, h, d, generator=g, dtype=torch.float64) for _ in range(3))
    log_f = F.logsigmoid(torch.randn(b, t, h, generator=g, dtype=torch.float64) + gate_bias)
    return [x.to(dtype).requires_grad_() for x in (q, k, v, log_f)]


def outputs_and_grads(fn, inputs, seed=1):
    out = fn(*inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g.to(out.dtype)  # same cotangent whatever the dtype
    return out, torch.autograd.grad(out, inputs, g)


SHAPES = [(2, 37, 3, 16), (1, 1, 2, 8), (3, 64, 2, 8), (2, 130, 2, 32)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fast_matches_reference_float64(shape):
    inputs = make_inputs(*shape)
    out, grads = outputs_and_grads(fox_attention, inputs)
    ref, ref_grads = outputs_and_grads(fox_attention_ref, inputs)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    for name, a, b in zip(("q", "k", "v", "log_f"), grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=f"grad {name}")


@pytest.mark.parametrize("shape", [(2, 37, 3, 16), (1, 200, 2, 64)])
def test_fast_float32_close_to_float64_reference(shape):
    inputs64 = make_inputs(*shape)
    inputs32 = [x.detach().float().requires_grad_() for x in inputs64]
    out, grads = outputs_and_grads(fox_attention, inputs32)
    ref, ref_grads = outputs_and_grads(fox_attention_ref, inputs64)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
    for name, a, b in zip(("q", "k", "v", "log_f"), grads, ref_grads):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4, msg=f"grad {name}")


def test_gradcheck_tiny():
    inputs = make_inputs(1, 5, 2, 4, gate_bias=0.0)
    assert torch.autograd.gradcheck(fox_attention_fast, inputs, eps=1e-6, atol=1e-7, fast_mode=True)


def test_zero_gate_is_softmax_attention():
    q, k, v, _ = make_inputs(2, 19, 2, 8)
    log_f = torch.zeros(2, 19, 2, dtype=torch.float64)
    torch.testing.assert_close(fox_attention(q, k, v, log_f), softmax_attention(q, k, v),
                               atol=1e-12, rtol=1e-12)


def test_full_forgetting_attends_to_self_only():
    q, k, v, _ = make_inputs(1, 11, 2, 8)
    log_f = torch.full((1, 11, 2), -1e4, dtype=torch.float64)
    torch.testing.assert_close(fox_attention(q, k, v, log_f), v, atol=1e-12, rtol=0)


def test_custom_scale():
    inputs = make_inputs(2, 9, 2, 8)
    torch.testing.assert_close(fox_attention(*inputs, scale=0.3),
                               fox_attention_ref(*inputs, scale=0.3), atol=1e-10, rtol=1e-10)


def test_float32_precision_long_sequence_strong_forgetting():
    """|cumsum(log_f)| reaches ~1700 here; a naive fp32 bias c_i - c_j would be ~1e-4 off."""
    q, k, v, log_f = (x.detach() for x in make_inputs(1, 2048, 1, 32, gate_bias=0.0))
    log_f = log_f.float().double()  # the fp32 gates are the exact input for both sides
    assert log_f.sum() < -1000
    ref = fox_attention_ref(q, k, v, log_f)
    out = fox_attention(q.float(), k.float(), v.float(), log_f.float())
    assert (out.double() - ref).abs().max().item() < 5e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_on_cpu(dtype):
    inputs64 = make_inputs(2, 40, 2, 16)
    inputs = [x.detach().to(dtype) for x in inputs64]
    out = fox_attention(*inputs)
    assert out.dtype == dtype
    ref = fox_attention_ref(*[x.double() for x in inputs])
    torch.testing.assert_close(out.double(), ref, atol=2e-2, rtol=2e-2)


def test_bad_shapes_raise():
    q, k, v, log_f = make_inputs(1, 4, 2, 8)
    with pytest.raises(ValueError, match="log_f"):
        fox_attention(q, k, v, log_f[..., :1])
    with pytest.raises(ValueError, match="head_dim"):
        fox_attention(q, k[:, :3], v, log_f)
