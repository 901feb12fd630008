"""What a registered kernel is called with: the grid point (:class:`KernelShape`) and the
seeded builders that turn it into keyword arguments.

Every builder draws on the CPU, in float32, from ``shape.generator()``, then moves the
tensors to ``shape.device`` and ``shape.dtype``, so the same shape and seed give the same
numbers on every device and dtype.  The helpers here are shared by the op folders and may be
reused by plugins; each op's own builder lives in its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

__all__ = ["InputBuilder", "KernelShape", "draw_qkv", "log_forget_gates", "qkv_inputs", "randn", "uniform"]


@dataclass(frozen=True)
class KernelShape:
    """One point of a benchmark grid; ``label`` is ``B1-T256-H4-D64``."""

    batch: int
    seq_len: int
    heads: int
    head_dim: int
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    seed: int = 0
    causal: bool = True

    @property
    def label(self) -> str:
        return f"B{self.batch}-T{self.seq_len}-H{self.heads}-D{self.head_dim}"

    def generator(self) -> torch.Generator:
        """A CPU generator seeded with ``seed``: tensors are drawn on the CPU, in float32,
        then moved, so every device and dtype sees the same numbers."""
        return torch.Generator().manual_seed(self.seed)


InputBuilder = Callable[[KernelShape], dict[str, Any]]


def randn(shape: tuple[int, ...], spec: KernelShape, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=spec.device, dtype=spec.dtype)


def uniform(shape: tuple[int, ...], lo: float, hi: float, spec: KernelShape, gen: torch.Generator) -> torch.Tensor:
    x = torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo
    return x.to(device=spec.device, dtype=spec.dtype)


def log_forget_gates(spec: KernelShape, gen: torch.Generator) -> torch.Tensor:
    """Realistic forget gates, ``log sigmoid(N(0, 1) + 4)``: ``[B, T, H]``."""
    x = torch.randn((spec.batch, spec.seq_len, spec.heads), generator=gen, dtype=torch.float32)
    return F.logsigmoid(x + 4.0).to(device=spec.device, dtype=spec.dtype)


def draw_qkv(spec: KernelShape) -> tuple[dict[str, torch.Tensor], torch.Generator]:
    """``q, k, v`` (``[B, T, H, D]`` standard normal) and the generator, to draw the rest from."""
    gen = spec.generator()
    shape = (spec.batch, spec.seq_len, spec.heads, spec.head_dim)
    return {n: randn(shape, spec, gen) for n in ("q", "k", "v")}, gen


def qkv_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v``: ``[B, T, H, D]`` standard normal."""
    return draw_qkv(spec)[0]
