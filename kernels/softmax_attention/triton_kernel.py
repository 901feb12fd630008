"""Plain causal softmax attention on CUDA (or under ``TRITON_INTERPRET=1``).

It is FoX's FlashAttention-2-style Triton kernel (:mod:`kernels.fox.triton_kernel`, the
shared core) called without a gate: ``log_f = None`` compiles the gate code out.  The
public :func:`kernels.softmax_attention` runs SDPA on every device (faster, and it has the
sliding window); this kernel is registered for the benchmark and tested against the reference.
Head dims, dtypes and launch configs are FoX's (:data:`HEAD_DIMS`, :data:`DTYPES`, tuned per
target); :func:`compile_launches` lists the gate-free launches for the offline compile test.
"""

from __future__ import annotations

import torch

from kernels.fox.triton_kernel import DTYPES, HEAD_DIMS, fox_attention_triton
from kernels.fox.triton_kernel import compile_launches as _fox_launches
from kernels.triton_utils import KernelLaunch, check_head_dim

__all__ = ["DTYPES", "HEAD_DIMS", "compile_launches", "softmax_attention_triton"]


def softmax_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             scale: float | None = None) -> torch.Tensor:
    """Plain causal softmax attention: the FoX kernel with ``log_f = 0`` (gate code compiled out)."""
    check_head_dim("softmax_attention", q.shape[-1], HEAD_DIMS)
    return fox_attention_triton(q, k, v, None, scale)


def compile_launches(cc: int, dtype: torch.dtype, head_dim: int) -> list[KernelLaunch]:
    """FoX's forward, dk/dv and dq launches without the gate, each config per target."""
    return _fox_launches(cc, dtype, head_dim, gate=False)
