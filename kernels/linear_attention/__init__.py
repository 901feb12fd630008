"""Causal linear attention (Katharopoulos et al. 2020) with ``phi(x) = elu(x) + 1``.

``o_i = sum_{j<=i} s_ij v_j / (sum_{j<=i} s_ij + eps)`` with
``s_ij = scale * phi(q_i) . phi(k_j)``.  ``scale`` multiplies the scores (it is *not* applied
to q before the feature map): in the normalised output it cancels except against ``eps``,
and it is kept only so every op shares one calling convention (default ``head_dim**-0.5``).

Dispatch (:mod:`kernels.dispatch`): CUDA tensors with Triton installed -> the chunked Triton
kernel; otherwise the chunked torch ``fast`` path.  Registered as op ``linear``: ``torch``,
``triton``, ``reference``.
"""

from __future__ import annotations

import torch

from kernels.dispatch import Dispatch
from kernels.linear_attention.fast import linear_attention_fast
from kernels.linear_attention.reference import feature_map

__all__ = ["linear_attention", "feature_map"]

_TRITON = "kernels.linear_attention.triton_kernel:linear_attention_triton"
_dispatch = Dispatch("linear_attention", torch=linear_attention_fast, triton=_TRITON)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     chunk_size: int = 64, *, eps: float = 1e-6) -> torch.Tensor:
    """``[B, T, H, D]`` in, ``[B, T, H, D]`` out, causal."""
    return _dispatch(q, k, v, chunk_size=chunk_size)(q, k, v, scale, chunk_size, eps=eps)

