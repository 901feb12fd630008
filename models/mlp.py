"""MLP variants beyond SwiGLU and ReLU."""

from __future__ import annotations

from torch import nn


def make_extra_mlp(kind: str, d_model: int, ratio: float, n_layers: int) -> nn.Module:
    raise ValueError(f"MLP {kind!r} is not available yet; use swiglu, relu or none")
