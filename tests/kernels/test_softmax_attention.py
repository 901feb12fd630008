"""Softmax attention: the SDPA path against the plain reference, with and without a window."""

from __future__ import annotations

import pytest
import torch

from kernels import softmax_attention
from kernels.softmax_attention.reference import softmax_attention_ref


def make_qkv(b, t, h, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
            for _ in range(3)]


def run(fn, inputs, **kw):
    out = fn(*inputs, **kw)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return out, torch.autograd.grad(out, inputs, cot.to(out.dtype))


@pytest.mark.parametrize("window", [None, 1, 5, 100])
@pytest.mark.parametrize("shape", [(2, 37, 3, 16), (1, 1, 2, 8)])
def test_sdpa_matches_reference_float64(shape, window):
    qkv = make_qkv(*shape)
    out, grads = run(softmax_attention, qkv, window=window)
    ref, ref_grads = run(softmax_attention_ref, qkv, window=window)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("window", [None, 8])
def test_sdpa_float32_close_to_float64_reference(window):
    qkv64 = make_qkv(2, 120, 2, 64)
    qkv32 = [x.detach().float().requires_grad_() for x in qkv64]
    out, grads = run(softmax_attention, qkv32, window=window, scale=0.2)
    ref, ref_grads = run(softmax_attention_ref, qkv64, window=window, scale=0.2)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-4)


def test_window_one_returns_own_value():
    q, k, v = (x.detach() for x in make_qkv(1, 9, 2, 8))
    torch.testing.assert_close(softmax_attention(q, k, v, window=1), v, atol=1e-12, rtol=0)


def test_window_changes_the_result_and_is_causal():
    q, k, v = (x.detach() for x in make_qkv(1, 20, 2, 8))
    full = softmax_attention(q, k, v)
    windowed = softmax_attention(q, k, v, window=4)
    # the first 4 positions see the same keys either way; later ones do not
    torch.testing.assert_close(windowed[:, :4], full[:, :4], atol=1e-12, rtol=0)
    assert (windowed[:, 4:] - full[:, 4:]).abs().max() > 1e-3
    # causality: changing the future leaves the past untouched
    v2 = v.clone()
    v2[:, 10:] += 1.0
    torch.testing.assert_close(softmax_attention(q, k, v2)[:, :10], full[:, :10], atol=1e-12, rtol=0)
