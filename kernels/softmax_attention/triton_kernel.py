"""Plain causal softmax attention on CUDA (or under ``TRITON_INTERPRET=1``).

It is FoX's FlashAttention-2-style Triton kernel (:mod:`kernels.fox.triton_kernel`, the
shared core) called without a gate: ``log_f = None`` compiles the gate code out.  The
public :func:`kernels.softmax_attention` runs SDPA on every device (faster, and it has the
sliding window); this kernel is registered for the benchmark and tested against the reference.
"""

from __future__ import annotations

import torch

from kernels.fox.triton_kernel import fox_attention_triton


def softmax_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             scale: float | None = None) -> torch.Tensor:
    """Plain causal softmax attention: the FoX kernel with ``log_f = 0`` (gate code compiled out)."""
    return fox_attention_triton(q, k, v, None, scale)
