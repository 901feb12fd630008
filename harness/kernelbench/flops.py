"""FLOPs of one kernel call, and the peak throughput they are divided by.

The FLOPs follow the FlashAttention convention: forward attention is ``4 B T^2 H D`` (the
``QK^T`` and ``PV`` matmuls), halved when causal, and the backward is 2.5x the forward; each op
adds the matmul work it has beyond that (its backward counted as 2x).  TFLOP/s = FLOPs /
median time; the FLOPs are the op's, not the implementation's, so a ``reference``
implementation is charged the same work.  ``peak_fraction`` divides by the dense bf16/fp16
tensor-core peak of the GPU (:data:`GPU_PEAK_TFLOPS`); it is ``None`` on CPUs, for float32, and
on unknown GPUs.

:func:`kernel_flops` is the one function the rest of the wing calls.  The per-op forward
formulas live in the op folders (``kernels/<op>/__init__.py``, each op's ``register_op(...,
flops=...)``) and are read through ``kernels.registry.forward_flops(op, shape)``; this module
adds only the backward convention, so a new op's FLOPs need no edit here.
"""

from __future__ import annotations

import re

import torch

from harness.kernelbench.spec import DTYPES
from kernels.registry import KernelEntry, KernelShape, forward_flops

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

BWD_ATTENTION = 2.5  # FlashAttention convention: backward = 2.5 x forward for the attention part
BWD_EXTRA = 2.0      # every other matmul: its backward is two matmuls of the same size


def kernel_flops(op: str, batch: int, seq_len: int, heads: int, head_dim: int, causal: bool, mode: str,
                 entry: KernelEntry | None = None) -> float | None:
    """FLOPs of one call in ``mode``: forward ``attn + extra``; ``fwd+bwd`` adds
    ``2.5 attn + 2 extra``.  An op without a formula uses its registry entry's ``flops(shape)``
    (forward FLOPs, counted like attention: ``fwd+bwd = 3.5 x``); else ``None``.

    The forward ``(attention part, extra part)`` is the op's own formula, declared in its folder
    (``kernels/<op>/__init__.py``) and read through :func:`kernels.registry.forward_flops`."""
    shape = KernelShape(batch, seq_len, heads, head_dim, causal=causal)
    parts = forward_flops(op, shape)
    if parts is None:
        if entry is None or entry.flops is None:
            return None
        parts = (float(entry.flops(shape)), 0.0)
    attn, extra = parts
    if mode == "fwd":
        return attn + extra
    return attn * (1 + BWD_ATTENTION) + extra * (1 + BWD_EXTRA)
