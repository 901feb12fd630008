"""Small building blocks shared by the backbone and the mixers."""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


DEFAULT_INIT_STD = 0.02
_init_std: ContextVar[float] = ContextVar("archbench_init_std", default=DEFAULT_INIT_STD)


def base_std() -> float:
    """The std of plain weight matrices for the model being built (``arch.init_std``)."""
    return _init_std.get()


def residual_std(n_layers: int) -> float:
    """The std of projections that write into the residual stream (a mixer's or MLP's output):
    :func:`base_std` over ``sqrt(2 n_layers)``, so the stream's variance does not grow with depth."""
    return base_std() / math.sqrt(2 * n_layers)


@contextmanager
def init_scale(std: float | None) -> Iterator[None]:
    """Build layers whose plain weights are drawn with ``std`` (``None``: the default 0.02).

    Only the default scheme follows it (embeddings, head, projections, MLPs, output
    projections at ``std / sqrt(2 n_layers)``); a layer's own special initialisation (gate
    biases, PaTH's w and beta projections) is untouched."""
    token = _init_std.set(DEFAULT_INIT_STD if std is None else float(std))
    try:
        yield
    finally:
        _init_std.reset(token)


def init_linear(layer: nn.Linear, std: float | None = None, zero_bias: bool = True) -> nn.Linear:
    """Normal init of ``layer.weight`` (``std`` defaults to :func:`base_std`), zero bias."""
    nn.init.normal_(layer.weight, mean=0.0, std=base_std() if std is None else std)
    if layer.bias is not None and zero_bias:
        nn.init.zeros_(layer.bias)
    return layer


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class ShortConv(nn.Module):
    """Causal depthwise convolution over time on ``[B, T, C]``: ``y_t = sum_i w_i x_{t-i}``, ``i < size``.

    Weights start normal with ``std`` (default :func:`base_std`, as flash-linear-attention's
    models initialise their short convolutions); no bias.
    """

    def __init__(self, channels: int, size: int, std: float | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, size, groups=channels, padding=size - 1, bias=False)
        nn.init.normal_(self.conv.weight, std=base_std() if std is None else std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        return self.conv(x.transpose(1, 2))[..., :t].transpose(1, 2)  # drop the right padding: causal


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int, out_std: float) -> None:
        super().__init__()
        self.gate_up = init_linear(nn.Linear(d_model, 2 * hidden, bias=False))
        self.down = init_linear(nn.Linear(hidden, d_model, bias=False), out_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class ReluMLP(nn.Module):
    def __init__(self, d_model: int, hidden: int, out_std: float) -> None:
        super().__init__()
        self.up = init_linear(nn.Linear(d_model, hidden))
        self.down = init_linear(nn.Linear(hidden, d_model), out_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)))


def make_mlp(kind: str, d_model: int, ratio: float, n_layers: int) -> nn.Module | None:
    """The MLP of one block (``None`` for ``mlp="none"``)."""
    out_std = residual_std(n_layers)
    if kind == "none":
        return None
    if kind == "swiglu":
        # 2/3 of the width keeps the parameter count of a plain MLP of the same ratio
        return SwiGLU(d_model, max(1, round(ratio * d_model * 2 / 3)), out_std)
    if kind == "relu":
        return ReluMLP(d_model, max(1, round(ratio * d_model)), out_std)
    from models.mlp import make_extra_mlp  # variants added by the architecture zoo

    return make_extra_mlp(kind, d_model, ratio, n_layers)
