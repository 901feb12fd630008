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
from kernels.flops import chunks
from kernels.inputs import KernelShape, qkv_inputs
from kernels.linear_attention.fast import linear_attention_fast
from kernels.linear_attention.reference import feature_map
from kernels.registry import TRITON, register_kernel, register_op

__all__ = ["linear_attention", "feature_map"]

_TRITON = "kernels.linear_attention.triton_kernel:linear_attention_triton"
_dispatch = Dispatch("linear_attention", torch=linear_attention_fast, triton=_TRITON)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     chunk_size: int = 64, *, eps: float = 1e-6) -> torch.Tensor:
    """``[B, T, H, D]`` in, ``[B, T, H, D]`` out, causal."""
    return _dispatch(q, k, v, chunk_size=chunk_size)(q, k, v, scale, chunk_size, eps=eps)


# -- registration (the benchmark's view of the op) -----------------------------------------------

def linear_flops(shape: KernelShape) -> tuple[float, float]:
    """``(0, BH * n * (2c^2 D + 2c^2 (D+1) + 4 c D (D+1)))`` with ``c = min(64, T)`` and
    ``n = ceil(T / c)`` chunks: per chunk the intra-chunk scores ``phi(Q) phi(K)^T``, their
    product with ``[V | 1]`` (the normaliser is one more value column), the inter-chunk read
    ``phi(Q) S`` and the state update ``phi(K)^T [V | 1]``."""
    bh, d = float(shape.batch * shape.heads), shape.head_dim
    c, n = chunks(shape.seq_len)
    return 0.0, bh * n * (2 * c * c * d + 2 * c * c * (d + 1) + 4 * c * d * (d + 1))


register_op("linear", inputs=qkv_inputs, flops=linear_flops, description="causal linear attention (elu + 1)")
register_kernel("linear", "torch")(linear_attention_fast)
register_kernel("linear", "triton", **TRITON)(_TRITON)
register_kernel("linear", "reference", default=False, max_seq_len=1024)(
    "kernels.linear_attention.reference:linear_attention_ref")
