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
