"""Small helpers shared by the Triton kernels (imported only where Triton is installed)."""

from __future__ import annotations

import contextlib

import torch
import triton


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (the CPU interpreter: one fixed config, no autotuning)."""
    return triton.knobs.runtime.interpret


def on_device(x: torch.Tensor):
    """Triton launches on the *current* CUDA device; make that the tensor's device."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def pow2_block(x: int) -> int:
    """The tile size covering ``x``: the next power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, triton.next_power_of_2(x))


def dot_precision(low_precision_inputs: bool) -> str:
    """``tl.dot``'s ``input_precision``: IEEE fp32, unless the inputs were fp16/bf16 or the
    user allowed TF32 for CUDA matmuls (``torch.backends.cuda.matmul.allow_tf32``)."""
    if low_precision_inputs or torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"
