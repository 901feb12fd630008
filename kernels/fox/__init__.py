"""Forgetting attention (FoX; Lin et al. 2025): softmax attention with a forget gate.

``fox_attention(q, k, v, log_f)`` weighs key ``j <= i`` for query ``i`` by
``exp(scale * q_i . k_j + sum_{s=j+1..i} log_f_s)``; ``log_f <= 0`` is the per-head log
forget gate, ``[B, T, H]``.  ``log_f = 0`` is plain causal softmax attention.

Dispatch (:mod:`kernels.dispatch`): CUDA tensors with Triton installed -> ``triton_kernel``
(imported lazily, on first CUDA call); otherwise ``fast`` (one fused SDPA call with the gate
folded into the head dim).  Registered as op ``fox``: ``torch``, ``triton``, ``reference``.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.dispatch import Dispatch
from kernels.flops import attention_flops
from kernels.fox.fast import fox_attention_fast
from kernels.inputs import KernelShape, draw_qkv, log_forget_gates
from kernels.registry import TRITON, register_kernel, register_op

__all__ = ["fox_attention"]

_TRITON = "kernels.fox.triton_kernel:fox_attention_triton"
_dispatch = Dispatch("fox_attention", torch=fox_attention_fast, triton=_TRITON, v_like_q=True)


def fox_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                  scale: float | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` q, k, v and ``[B, T, H]`` log forget gates in; ``[B, T, H, D]`` out, causal."""
    return _dispatch(q, k, v, per_head={"log_f": log_f})(q, k, v, log_f, scale)


# -- registration (the benchmark's view of the op) -----------------------------------------------

def fox_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v`` and ``log_f`` (:func:`~kernels.inputs.log_forget_gates`)."""
    base, gen = draw_qkv(spec)
    return {**base, "log_f": log_forget_gates(spec, gen)}


def fox_flops(shape: KernelShape) -> tuple[float, float]:
    """``(A, 0)`` with ``A = attention_flops(B, T, H, D, causal)``.  The gate adds ``O(T^2)``
    elementwise work per head, not counted, like softmax's ``exp`` in the FlashAttention convention."""
    return attention_flops(shape.batch, shape.seq_len, shape.heads, shape.head_dim, shape.causal), 0.0


register_op("fox", inputs=fox_inputs, flops=fox_flops, description="forgetting attention (FoX)")
register_kernel("fox", "torch")(fox_attention_fast)
register_kernel("fox", "triton", **TRITON)(_TRITON)
register_kernel("fox", "reference", default=False, max_seq_len=1024)("kernels.fox.reference:fox_attention_ref")
