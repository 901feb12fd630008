"""Forgetting attention (FoX; Lin et al. 2025): softmax attention with a forget gate.

``fox_attention(q, k, v, log_f)`` weighs key ``j <= i`` for query ``i`` by
``exp(scale * q_i . k_j + sum_{s=j+1..i} log_f_s)``; ``log_f <= 0`` is the per-head log
forget gate, ``[B, T, H]``.  ``log_f = 0`` is plain causal softmax attention.

Dispatch: CUDA tensors with Triton installed -> ``triton_kernel`` (imported lazily, on first
CUDA call); otherwise ``fast`` (one fused SDPA call with the gate folded into the head dim).
"""

from __future__ import annotations

import torch

from kernels.fox.fast import fox_attention_fast

__all__ = ["fox_attention"]


def _triton_op():
    """The Triton op, or ``None`` when Triton cannot be imported."""
    try:
        from kernels.fox.triton_kernel import fox_attention_triton
    except ImportError:
        return None
    return fox_attention_triton


def fox_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                  scale: float | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` q, k, v and ``[B, T, H]`` log forget gates in; ``[B, T, H, D]`` out, causal."""
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3] or v.shape[-1] != q.shape[-1]:
        raise ValueError(f"fox_attention: q, k, v must be [batch, time, heads, head_dim] of one "
                         f"shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if log_f.shape != q.shape[:3]:
        raise ValueError(f"fox_attention: log_f must be [batch, time, heads] = {tuple(q.shape[:3])}, "
                         f"got {tuple(log_f.shape)}")
    if q.is_cuda:
        op = _triton_op()
        if op is not None:
            return op(q, k, v, log_f, scale)
    return fox_attention_fast(q, k, v, log_f, scale)
