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

from typing import Any

import torch

from kernels.dispatch import Dispatch
from kernels.flops import attention_flops
from kernels.inputs import KernelShape, qkv_inputs
from kernels.registry import HALF_DTYPES, TRITON, register_kernel, register_op
from kernels.softmax_attention.fast import flash_attention, sdpa_attention, softmax_attention_fast

__all__ = ["softmax_attention"]

_dispatch = Dispatch("softmax_attention", torch=softmax_attention_fast)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      scale: float | None = None, window: int | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` in, ``[B, T, H, D]`` out, causal."""
    return _dispatch(q, k, v)(q, k, v, scale, window)


# -- registration (the benchmark's view of the op) -----------------------------------------------

def sdpa_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v`` and the causal flag."""
    return {**qkv_inputs(spec), "causal": spec.causal}


def softmax_flops(shape: KernelShape) -> tuple[float, float]:
    """``(A, 0)`` with ``A = attention_flops(B, T, H, D, causal)``; softmax's ``exp`` is not
    counted (the FlashAttention convention)."""
    return attention_flops(shape.batch, shape.seq_len, shape.heads, shape.head_dim, shape.causal), 0.0


register_op("softmax", inputs=qkv_inputs, flops=softmax_flops, description="causal softmax attention")
register_kernel("softmax", "sdpa", inputs=sdpa_inputs, causal=(True, False))(sdpa_attention)
register_kernel("softmax", "flash", inputs=sdpa_inputs, causal=(True, False), dtypes=HALF_DTYPES,
                devices=("cuda",))(flash_attention)
register_kernel("softmax", "triton", **TRITON)("kernels.softmax_attention.triton_kernel:softmax_attention_triton")
register_kernel("softmax", "reference", default=False, max_seq_len=1024)(
    "kernels.softmax_attention.reference:softmax_attention_ref")
