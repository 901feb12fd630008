"""DeltaNet (the delta rule; Schlag et al. 2021, Yang et al. 2024).

``deltanet(q, k, v, beta, scale=None, chunk_size=64)``: ``q, k`` are
``[batch, time, heads, dk]``, ``v`` is ``[batch, time, heads, dv]``, ``beta`` (in ``(0, 1)``)
is ``[batch, time, heads]``; output ``[batch, time, heads, dv]``.  **``k`` is L2-normalised
inside the op** (``k / sqrt(|k|^2 + 1e-6)``), then per head::

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,      o_t = S_t (scale * q_t)

with ``S_0 = 0`` and ``scale`` defaulting to ``dk ** -0.5``.  Dispatch
(:mod:`kernels.dispatch`): CUDA tensors with Triton installed run the Triton kernels
(:mod:`.triton_kernel`, ``chunk_size`` rounded to a power of two >= 16); everything else runs
the chunked torch path (:mod:`.fast`).  :mod:`.reference` holds the sequential recurrence
used by the tests.  Registered as op ``deltanet``: ``torch``, ``triton``, ``reference``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels.deltanet.fast import deltanet_fast
from kernels.dispatch import Dispatch
from kernels.flops import chunks
from kernels.inputs import KernelShape, draw_qkv, uniform
from kernels.registry import TRITON, register_kernel, register_op

__all__ = ["deltanet"]


def _deltanet_triton(q, k, v, beta, scale, chunk_size):
    """The Triton kernels, with ``chunk_size`` rounded up to a power of two >= 16."""
    from kernels.deltanet.triton_kernel import deltanet_triton

    pow2 = 1 << max(4, (chunk_size - 1).bit_length())
    return deltanet_triton(q, k, v, beta, scale, chunk_size=pow2)


_dispatch = Dispatch("deltanet", torch=deltanet_fast, triton=_deltanet_triton)


def deltanet(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
             scale: float | None = None, chunk_size: int = 64) -> torch.Tensor:
    """Causal delta-rule linear attention (see the module docstring)."""
    fn = _dispatch(q, k, v, per_head={"beta": beta}, chunk_size=chunk_size)
    return fn(q, k, v, beta, scale, chunk_size)


# -- registration (the benchmark's view of the op) -----------------------------------------------

def deltanet_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q``, unit-norm ``k``, ``v`` and ``beta ~ U(0, 1)``."""
    base, gen = draw_qkv(spec)
    base["k"] = F.normalize(base["k"].float(), dim=-1).to(spec.dtype)
    return {**base, "beta": uniform((spec.batch, spec.seq_len, spec.heads), 0.0, 1.0, spec, gen)}


def deltanet_flops(shape: KernelShape) -> tuple[float, float]:
    """``(0, BH * n * (10 c^2 D + c^3 + 6 c D^2))`` with ``c = min(64, T)``, ``n = ceil(T / c)``:
    per chunk (WY form) ``K K^T``, the ``c x c`` triangular solve, ``W = A (beta K)``,
    ``U = A (beta V)``, ``tril(Q K^T)`` and its product with the corrected values (five
    ``2c^2 D`` matmuls), and ``U - W S^T``, ``Q S^T`` and the state update (three ``2 c D^2``)."""
    bh, d = float(shape.batch * shape.heads), shape.head_dim
    c, n = chunks(shape.seq_len)
    return 0.0, bh * n * (10 * c * c * d + c ** 3 + 6 * c * d * d)


register_op("deltanet", inputs=deltanet_inputs, flops=deltanet_flops, description="DeltaNet (the delta rule)")
register_kernel("deltanet", "torch")(deltanet_fast)
register_kernel("deltanet", "triton", **TRITON)("kernels.deltanet.triton_kernel:deltanet_triton")
register_kernel("deltanet", "reference", default=False, max_seq_len=512)("kernels.deltanet.reference:deltanet_ref")
