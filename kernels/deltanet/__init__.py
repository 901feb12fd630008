"""DeltaNet (the delta rule; Schlag et al. 2021, Yang et al. 2024).

``deltanet(q, k, v, beta, scale=None, chunk_size=64)``: ``q, k`` are
``[batch, time, heads, dk]``, ``v`` is ``[batch, time, heads, dv]``, ``beta`` (in ``(0, 1)``)
is ``[batch, time, heads]``; output ``[batch, time, heads, dv]``.  **``k`` is L2-normalised
inside the op** (``k / sqrt(|k|^2 + 1e-6)``), then per head::

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,      o_t = S_t (scale * q_t)

with ``S_0 = 0`` and ``scale`` defaulting to ``dk ** -0.5``.  CUDA tensors with Triton
installed run the Triton kernels (:mod:`.triton_kernel`, ``chunk_size`` rounded to a power
of two >= 16); everything else runs the chunked torch path (:mod:`.fast`).
:mod:`.reference` holds the sequential recurrence used by the tests.
"""

from __future__ import annotations

import importlib.util

import torch

from kernels.deltanet.fast import deltanet_fast

_HAS_TRITON = importlib.util.find_spec("triton") is not None

__all__ = ["deltanet"]


def deltanet(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
             scale: float | None = None, chunk_size: int = 64) -> torch.Tensor:
    """Causal delta-rule linear attention (see the module docstring)."""
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be [batch, time, heads, dk], got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [batch, time, heads, dv] matching q, got {tuple(v.shape)}")
    if beta.shape != q.shape[:3]:
        raise ValueError(f"beta must be [batch, time, heads] = {tuple(q.shape[:3])}, "
                         f"got {tuple(beta.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if q.is_cuda and _HAS_TRITON:
        from kernels.deltanet.triton_kernel import deltanet_triton

        pow2 = 1 << max(4, (chunk_size - 1).bit_length())
        return deltanet_triton(q, k, v, beta, scale, chunk_size=pow2)
    return deltanet_fast(q, k, v, beta, scale, chunk_size)
