"""Causal linear attention (Katharopoulos et al. 2020) with ``phi(x) = elu(x) + 1``.

``o_i = sum_{j<=i} s_ij v_j / (sum_{j<=i} s_ij + eps)`` with
``s_ij = scale * phi(q_i) . phi(k_j)``.  ``scale`` multiplies the scores (it is *not* applied
to q before the feature map): in the normalised output it cancels except against ``eps``,
and it is kept only so every op shares one calling convention (default ``head_dim**-0.5``).

Dispatch: CUDA tensors with Triton installed -> the chunked Triton kernel; otherwise the
chunked torch ``fast`` path.
"""

from __future__ import annotations

import torch

from kernels.linear_attention.fast import linear_attention_fast
from kernels.linear_attention.reference import feature_map

__all__ = ["linear_attention", "feature_map"]


def _triton_op():
    try:
        from kernels.linear_attention.triton_kernel import linear_attention_triton
    except ImportError:
        return None
    return linear_attention_triton


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     chunk_size: int = 64, *, eps: float = 1e-6) -> torch.Tensor:
    """``[B, T, H, D]`` in, ``[B, T, H, D]`` out, causal."""
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"linear_attention: q, k, v must be [batch, time, heads, head_dim], "
                         f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if chunk_size < 1:
        raise ValueError(f"linear_attention: chunk_size must be >= 1, got {chunk_size}")
    if q.is_cuda:
        op = _triton_op()
        if op is not None:
            return op(q, k, v, scale, chunk_size, eps=eps)
    return linear_attention_fast(q, k, v, scale, chunk_size, eps=eps)
