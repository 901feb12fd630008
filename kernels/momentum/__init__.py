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

from typing import Any

import torch

from kernels.dispatch import Dispatch
from kernels.flops import attention_flops
from kernels.inputs import KernelShape, qkv_inputs
from kernels.momentum.fast import momentum_attention_fast
from kernels.registry import TRITON, register_kernel, register_op

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


# -- registration (the benchmark's view of the op) -----------------------------------------------

def momentum_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v`` and a 0-d ``gamma = 0.5`` (a learnable per-layer scalar; gets a gradient)."""
    return {**qkv_inputs(spec), "gamma": torch.tensor(0.5, device=spec.device, dtype=spec.dtype)}


def momentum_flops(shape: KernelShape) -> tuple[float, float]:
    """``(A, 10 BTHD)``: attention, plus the time shear (a subtract and a multiply-add per element
    of q and k: ``4 BTHD``) and RoPE (two multiplies and an add: ``6 BTHD``)."""
    b, t, h, d = shape.batch, shape.seq_len, shape.heads, shape.head_dim
    return attention_flops(b, t, h, d, shape.causal), 10.0 * b * t * h * d


register_op("momentum", inputs=momentum_inputs, flops=momentum_flops,
            description="softmax attention on time-sheared q and k, with RoPE")
register_kernel("momentum", "torch")(momentum_attention_fast)
register_kernel("momentum", "triton", **TRITON)(_TRITON)
register_kernel("momentum", "reference", default=False, max_seq_len=1024)(
    "kernels.momentum.reference:momentum_attention_ref")
