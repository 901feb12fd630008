"""Momentum attention: softmax attention whose queries and keys carry a time shear.

With ``p_t = x_t - x_{t-1}`` (``p_0 = 0``), queries become ``q_t + gamma * p_t`` and keys
``k_t + gamma * p_t`` (each with its own differences); values are untouched; then RoPE
and causal softmax attention.

The shear is applied **before** RoPE: it mixes adjacent positions of the raw projections,
and RoPE then rotates the result by its own position.  Shearing after RoPE would subtract
vectors rotated by different angles, so ``q_t - q_{t-1}`` would no longer be a difference
of like quantities and the score would stop depending on relative position only.

``gamma`` is a float, a 0-d tensor (one per layer, may require grad), a per-head ``[H]``
tensor, or a per-position ``[B, T, H]`` tensor; gradients reach it when it is a tensor.

Dispatch (:mod:`kernels.dispatch`): CUDA tensors with Triton installed -> a fused shear + RoPE
Triton kernel followed by SDPA (FlashAttention); otherwise the torch ``fast`` path.
Registered as op ``momentum``: ``torch``, ``triton``, ``reference``.
"""

from __future__ import annotations

import torch

from kernels.dispatch import Dispatch
from kernels.momentum.fast import momentum_attention_fast

__all__ = ["momentum_attention"]

_TRITON = "kernels.momentum.triton_kernel:momentum_attention_triton"
_dispatch = Dispatch("momentum_attention", torch=momentum_attention_fast, triton=_TRITON)


def momentum_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma,
                       scale: float | None = None, rope_base: float = 10000.0) -> torch.Tensor:
    """``[B, T, H, D]`` q, k, v (D even) and gamma in; ``[B, T, H, D]`` out, causal.

    Order: shear q and k along time, then RoPE, then causal softmax attention (see module
    docstring for why the shear must come before RoPE).  ``gamma``'s shape is checked by the
    path itself (it has several valid shapes).
    """
    return _dispatch(q, k, v)(q, k, v, gamma, scale, rope_base)

