"""MLP variants beyond SwiGLU and ReLU.

``hourglass`` follows "Rethinking the shape convention of an MLP" (2025): the skip
connection lives in a *wide* space and the residual branch goes through a *narrow*
bottleneck (wide-narrow-wide), instead of the usual narrow-wide-narrow MLP.  Here one block
projects ``d_model -> wide``, adds ``up(gelu(down(h)))`` through the narrow bottleneck in
the wide space, and projects back ``wide -> d_model``.  ``wide = mlp_ratio / 2 * d_model``
and the bottleneck is sized so that the block has the parameter count of the SwiGLU MLP of
the same ``mlp_ratio`` (``3 * (2/3 * ratio) * d^2``), keeping sizes matched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import init_linear, residual_std


class Hourglass(nn.Module):
    def __init__(self, d_model: int, wide: int, narrow: int, out_std: float) -> None:
        super().__init__()
        self.inp = init_linear(nn.Linear(d_model, wide, bias=False))
        self.down = init_linear(nn.Linear(wide, narrow, bias=False))
        self.up = init_linear(nn.Linear(narrow, wide, bias=False), out_std)
        self.out = init_linear(nn.Linear(wide, d_model, bias=False), out_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + self.up(F.gelu(self.down(h)))
        return self.out(h)


def hourglass_dims(d_model: int, ratio: float) -> tuple[int, int]:
    wide = max(1, round(ratio / 2 * d_model))
    budget = 3 * round(ratio * d_model * 2 / 3) * d_model  # SwiGLU's parameters
    narrow = max(1, round((budget - 2 * d_model * wide) / (2 * wide)))
    return wide, narrow


def make_extra_mlp(kind: str, d_model: int, ratio: float, n_layers: int) -> nn.Module:
    if kind == "hourglass":
        wide, narrow = hourglass_dims(d_model, ratio)
        return Hourglass(d_model, wide, narrow, residual_std(n_layers))
    raise ValueError(f"unknown MLP {kind!r}; use swiglu, relu, none or hourglass")
