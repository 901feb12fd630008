"""Shared pieces of the ops' FLOP formulas.

Each op folder declares ``flops(shape) -> (attention part, extra part)``, the forward FLOPs
of one call at a :class:`~kernels.inputs.KernelShape` (``B, T, H, D``), in the FlashAttention
convention: 2 FLOPs per multiply-add, elementwise work (``exp``, gates) not counted.  The
split exists for the backward: the benchmark counts ``fwd+bwd`` as ``3.5 x`` the attention
part (FlashAttention's backward is ``2.5 x`` its forward) plus ``3 x`` the extra part (every
other matmul's backward is two matmuls of its size).  Look a formula up with
:func:`kernels.registry.forward_flops`.
"""

from __future__ import annotations

import math

__all__ = ["CHUNK", "attention_flops", "chunks"]

CHUNK = 64  # the chunk size of the chunked ops (PaTH, linear attention, DeltaNet) that the formulas assume


def attention_flops(batch: int, seq_len: int, heads: int, head_dim: int, causal: bool = True) -> float:
    """``4 B T^2 H D`` (``QK^T`` and ``PV``, 2 FLOPs per multiply-add), halved when causal."""
    f = 4.0 * batch * seq_len * seq_len * heads * head_dim
    return f / 2 if causal else f


def chunks(seq_len: int, chunk: int = CHUNK) -> tuple[int, int]:
    """``(c, n)``: the chunk length ``c = min(chunk, T)`` (at least 1) and ``n = ceil(T / c)`` chunks."""
    c = max(1, min(chunk, seq_len))
    return c, math.ceil(seq_len / c)
