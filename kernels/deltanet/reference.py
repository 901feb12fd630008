"""The delta rule written out as its sequential recurrence (tests only).

DeltaNet (Schlag et al. 2021; Yang et al. 2024, "Parallelizing Linear Transformers with
the Delta Rule over Sequence Length").  Per head, with ``k`` L2-normalised inside the op::

    k_t <- k_t / sqrt(|k_t|^2 + 1e-6)
    S_t  = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T        (S is [D_v, D_k], S_0 = 0)
    o_t  = S_t (scale * q_t)

One Python step per position; works in float64.
"""

from __future__ import annotations

import torch


def deltanet_ref(q, k, v, beta, scale=None):
    """``q, k``: ``[B, T, H, Dk]``, ``v``: ``[B, T, H, Dv]``, ``beta``: ``[B, T, H]``."""
    b, t, h, dk = q.shape
    scale = dk ** -0.5 if scale is None else scale
    k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    state = q.new_zeros(b, h, v.shape[-1], dk)
    outs = []
    for i in range(t):
        kt, vt, bt = k[:, i], v[:, i], beta[:, i, :, None, None]
        predicted = state @ kt[..., None]                              # S_{t-1} k_t: [B, H, Dv, 1]
        state = state + bt * (vt[..., None] - predicted) * kt[..., None, :]
        outs.append((state @ (scale * q[:, i])[..., None])[..., 0])
    return torch.stack(outs, dim=1)
