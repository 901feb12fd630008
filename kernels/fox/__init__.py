"""Forgetting attention (FoX; Lin et al. 2025): softmax attention with a forget gate.

``fox_attention(q, k, v, log_f)`` weighs key ``j <= i`` for query ``i`` by
``exp(scale * q_i . k_j + sum_{s=j+1..i} log_f_s)``; ``log_f <= 0`` is the per-head log
forget gate, ``[B, T, H]``.  ``log_f = 0`` is plain causal softmax attention.

Dispatch (:mod:`kernels.dispatch`): CUDA tensors with Triton installed -> ``triton_kernel``
(imported lazily, on first CUDA call); otherwise ``fast`` (one fused SDPA call with the gate
folded into the head dim).  Registered as op ``fox``: ``torch``, ``triton``, ``reference``.
"""

from __future__ import annotations

import torch

from kernels.dispatch import Dispatch
from kernels.fox.fast import fox_attention_fast

__all__ = ["fox_attention"]

_TRITON = "kernels.fox.triton_kernel:fox_attention_triton"
_dispatch = Dispatch("fox_attention", torch=fox_attention_fast, triton=_TRITON, v_like_q=True)


def fox_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                  scale: float | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` q, k, v and ``[B, T, H]`` log forget gates in; ``[B, T, H, D]`` out, causal."""
    return _dispatch(q, k, v, per_head={"log_f": log_f})(q, k, v, log_f, scale)

