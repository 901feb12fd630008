"""Causal softmax attention.

``softmax_attention(q, k, v, scale=None, window=None)``: ``[B, T, H, D]`` in and out;
``window`` limits each query to its last ``window`` keys (sliding-window attention).  On CPU
and CUDA alike it runs PyTorch's fused SDPA (:mod:`.fast`; FlashAttention on sm80/sm90), already
the fastest path, so the op declares no Triton path for dispatch.  :mod:`.triton_kernel` (FoX's
kernel without the gate) is registered for the benchmark only; :mod:`.reference` holds the
plain definition used by the tests.

Registered as op ``softmax``: ``sdpa`` (the benchmark's baseline), ``flash`` (SDPA's
FlashAttention backend: CUDA, half precision), ``triton`` and ``reference``.
"""

from __future__ import annotations

import torch

from kernels.dispatch import Dispatch
from kernels.softmax_attention.fast import softmax_attention_fast

__all__ = ["softmax_attention"]

_dispatch = Dispatch("softmax_attention", torch=softmax_attention_fast)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      scale: float | None = None, window: int | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` in, ``[B, T, H, D]`` out, causal."""
    return _dispatch(q, k, v)(q, k, v, scale, window)

