"""Momentum attention written out plainly (tests only).

Queries and keys get a shear along time before RoPE: ``x_t <- x_t + gamma * (x_t - x_{t-1})``
(with ``x_{-1} := x_0``, i.e. no momentum at ``t = 0``), then causal softmax attention.
"""

from __future__ import annotations

import torch

from kernels.softmax_attention.reference import softmax_attention_ref


def _gamma_like(gamma, x):
    """Broadcast gamma (float, 0-d, ``[H]`` or ``[B, T, H]``) against ``x`` ``[B, T, H, D]``."""
    g = torch.as_tensor(gamma, dtype=x.dtype, device=x.device)
    if g.dim() == 1:
        return g[None, None, :, None]
    if g.dim() == 3:
        return g[..., None]
    return g


def shear_ref(x, gamma):
    """One position at a time: ``y_t = x_t + gamma_t * (x_t - x_{t-1})``, ``y_0 = x_0``."""
    g = _gamma_like(gamma, x).expand_as(x)
    rows = [x[:, 0]]
    for t in range(1, x.shape[1]):
        rows.append(x[:, t] + g[:, t] * (x[:, t] - x[:, t - 1]))
    return torch.stack(rows, dim=1)


def rope_ref(x, base=10000.0):
    """RoPE, pair ``(x[..., i], x[..., i + D/2])`` rotated by ``t * base^(-2i/D)`` radians."""
    b, t, h, d = x.shape
    half = d // 2
    out = torch.empty_like(x)
    for i in range(half):
        theta = torch.tensor([pos * base ** (-2 * i / d) for pos in range(t)], dtype=torch.float64,
                             device=x.device)
        cos = theta.cos().to(x.dtype)[None, :, None]
        sin = theta.sin().to(x.dtype)[None, :, None]
        a, c = x[..., i], x[..., i + half]
        out[..., i] = a * cos - c * sin
        out[..., i + half] = a * sin + c * cos
    return out


def momentum_attention_ref(q, k, v, gamma, scale=None, rope_base=10000.0):
    qs = rope_ref(shear_ref(q, gamma), rope_base)
    ks = rope_ref(shear_ref(k, gamma), rope_base)
    return softmax_attention_ref(qs, ks, v, scale)


__all__ = ["momentum_attention_ref", "shear_ref", "rope_ref"]
