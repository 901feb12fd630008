"""FLOPs of one kernel call, and the peak throughput they are divided by.

The FLOPs follow the FlashAttention convention: forward attention is ``4 B T^2 H D`` (the
``QK^T`` and ``PV`` matmuls), halved when causal, and the backward is 2.5x the forward; each op
adds the matmul work it has beyond that (its backward counted as 2x).  TFLOP/s = FLOPs /
median time; the FLOPs are the op's, not the implementation's, so a ``reference``
implementation is charged the same work.  ``peak_fraction`` divides by the dense bf16/fp16
tensor-core peak of the GPU (:data:`GPU_PEAK_TFLOPS`); it is ``None`` on CPUs, for float32, and
on unknown GPUs.

:func:`kernel_flops` is the one function the rest of the wing calls.  The per-op formulas
below (:func:`forward_flops`) move to the op folders (``kernels/<op>/__init__.py``, exposed as
``kernels.registry.forward_flops(op, shape)``); when that lands, only :func:`kernel_flops`
changes its source.
"""

from __future__ import annotations

import math
import re

import torch

from harness.kernelbench.spec import DTYPES
from kernels.registry import KernelEntry, KernelShape

# -- peak throughput --------------------------------------------------------------------------

# Dense (no 2:4 sparsity) bf16/fp16 tensor-core peak in TFLOP/s, from NVIDIA's datasheets,
# matched in order against the device name (`torch.cuda.get_device_name`).
GPU_PEAK_TFLOPS: list[tuple[str, float | None]] = [
    (r"\bH200\b", 989.0),
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", None),  # not in our table: say "peak unknown" rather than guess
    (r"\bH100\b", 989.0),          # SXM, reported as "NVIDIA H100 80GB HBM3"
    (r"\bA100\b", 312.0),
]


def peak_tflops(device_name: str | None, dtype: torch.dtype | str = torch.bfloat16) -> float | None:
    """The dense half-precision peak of ``device_name``; ``None`` for unknown devices, CPUs
    and dtypes other than bf16/fp16 (their tensor-core peaks differ and torch does not use
    TF32 for float32 matmuls by default)."""
    if isinstance(dtype, str):
        dtype = DTYPES.get(dtype, torch.float32)
    if not device_name or dtype not in (torch.float16, torch.bfloat16):
        return None
    for pattern, peak in GPU_PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


# -- FLOPs ---------------------------------------------------------------------------------------
# moves to the op folders: CHUNK, BWD_*, attention_flops and forward_flops become each op's own
# formula (kernels.registry.forward_flops(op, shape)); kernel_flops then calls that instead.

CHUNK = 64          # the chunk size of the chunked ops (PaTH, linear attention, DeltaNet)
BWD_ATTENTION = 2.5  # FlashAttention convention: backward = 2.5 x forward for the attention part
BWD_EXTRA = 2.0      # every other matmul: its backward is two matmuls of the same size


def attention_flops(batch: int, seq_len: int, heads: int, head_dim: int, causal: bool = True) -> float:
    """``4 B T^2 H D`` (``QK^T`` and ``PV``, 2 FLOPs per multiply-add), halved when causal."""
    f = 4.0 * batch * seq_len * seq_len * heads * head_dim
    return f / 2 if causal else f


def forward_flops(op: str, batch: int, seq_len: int, heads: int, head_dim: int,
                  causal: bool = True, chunk: int = CHUNK) -> tuple[float, float] | None:
    """Forward FLOPs of ``op`` as ``(attention part, extra part)``; ``None`` for an op with no formula.

    With ``B, T, H, D`` the shape, ``A = attention_flops(B, T, H, D, causal)``,
    ``c = min(chunk, T)`` and ``n = ceil(T / c)`` chunks, per batch-head unless multiplied by ``BH``:

    - ``softmax``, ``fox``: ``(A, 0)``.  FoX's gate adds ``O(T^2)`` elementwise work per head,
      not counted, like softmax's ``exp`` in the FlashAttention convention.
    - ``momentum``: ``(A, 10 BTHD)``: the time shear (a subtract and a multiply-add per element
      of q and k: ``4 BTHD``) and RoPE (two multiplies and an add: ``6 BTHD``).
    - ``path``, ``path-fox``: ``(A, transport + ut)``, the chunked PaTH algorithm:
        * ``transport = BH * c * D^2 * (n-1)(n-2)``: every query row of chunk ``a`` is carried
          through the ``D x D`` Householder product ``P_b`` of each chunk ``0 < b < a``
          (``2 D^2`` per row and chunk, ``c (n-1)(n-2)/2`` row-chunk pairs);
        * ``ut = BH * n * (8c^2 D + c^3 + 2c^2 (c+D) + 2c (c+D)^2)``: per chunk the Gram matrix of
          ``[W; Q]`` and ``[W; K]`` (``[2c, D] x [D, 2c]``), the UT transform (a ``c x c``
          unit-triangular solve with ``c`` right-hand sides, ``c^3``), ``A [W | tril(W K^T)]``
          and the correction ``[tril(Q W^T); W^T] X``.
      The gate of PaTH-FoX is elementwise and not counted.
    - ``linear``: ``(0, BH * n * (2c^2 D + 2c^2 (D+1) + 4 c D (D+1)))``: per chunk the intra-chunk
      scores ``phi(Q) phi(K)^T``, their product with ``[V | 1]`` (the normaliser is one more
      value column), the inter-chunk read ``phi(Q) S`` and the state update ``phi(K)^T [V | 1]``.
    - ``deltanet``: ``(0, BH * n * (10 c^2 D + c^3 + 6 c D^2))``: per chunk (WY form) ``K K^T``,
      the ``c x c`` triangular solve, ``W = A (beta K)``, ``U = A (beta V)``, ``tril(Q K^T)`` and its
      product with the corrected values (five ``2c^2 D`` matmuls), and ``U - W S^T``, ``Q S^T`` and
      the state update (three ``2 c D^2``).
    """
    b, t, h, d = batch, seq_len, heads, head_dim
    bh = float(b * h)
    c = max(1, min(chunk, t))
    n = math.ceil(t / c)
    attn = attention_flops(b, t, h, d, causal)
    if op in ("softmax", "fox"):
        return attn, 0.0
    if op == "momentum":
        return attn, 10.0 * b * t * h * d
    if op in ("path", "path-fox"):
        transport = bh * c * d * d * (n - 1) * max(n - 2, 0)
        ut = bh * n * (8 * c * c * d + c ** 3 + 2 * c * c * (c + d) + 2 * c * (c + d) ** 2)
        return attn, transport + ut
    if op == "linear":
        return 0.0, bh * n * (2 * c * c * d + 2 * c * c * (d + 1) + 4 * c * d * (d + 1))
    if op == "deltanet":
        return 0.0, bh * n * (10 * c * c * d + c ** 3 + 6 * c * d * d)
    return None


def kernel_flops(op: str, batch: int, seq_len: int, heads: int, head_dim: int, causal: bool, mode: str,
                 entry: KernelEntry | None = None) -> float | None:
    """FLOPs of one call in ``mode``: forward ``attn + extra``; ``fwd+bwd`` adds
    ``2.5 attn + 2 extra``.  An op without a formula uses its registry entry's ``flops(shape)``
    (forward FLOPs, counted like attention: ``fwd+bwd = 3.5 x``); else ``None``."""
    parts = forward_flops(op, batch, seq_len, heads, head_dim, causal)
    if parts is None:
        if entry is None or entry.flops is None:
            return None
        parts = (float(entry.flops(KernelShape(batch, seq_len, heads, head_dim, causal=causal))), 0.0)
    attn, extra = parts
    if mode == "fwd":
        return attn + extra
    return attn * (1 + BWD_ATTENTION) + extra * (1 + BWD_EXTRA)
