"""Causal softmax attention written out plainly (tests only)."""

from __future__ import annotations

import torch


def softmax_attention_ref(q, k, v, scale=None, window=None):
    """Full ``[T, T]`` logits with a causal (optionally sliding-window) mask."""
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    i = torch.arange(t, device=q.device)[:, None]
    j = torch.arange(t, device=q.device)[None, :]
    allowed = j <= i
    if window is not None:
        allowed = allowed & (i - j < window)
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", logits.softmax(-1), v)
