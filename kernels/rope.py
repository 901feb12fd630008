"""Rotary position embedding (Su et al. 2021), as a pure tensor op."""

from __future__ import annotations

import torch


def rope_angles(t: int, dim: int, base: float = 10000.0, *, offset: int = 0,
                device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape ``[t, dim // 2]`` for positions ``offset .. offset+t-1``."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)
    pos = torch.arange(offset, offset + t, device=device, dtype=torch.float64)
    ang = torch.outer(pos, inv_freq)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, base: float = 10000.0, *, offset: int = 0) -> torch.Tensor:
    """Rotate ``x`` of shape ``[batch, time, heads, dim]`` (dim even) by its position.

    Pairs are (x[..., :dim/2], x[..., dim/2:]) ("rotate half" layout).
    """
    b, t, h, d = x.shape
    if d % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {d}")
    cos, sin = rope_angles(t, d, base, offset=offset, device=x.device, dtype=x.dtype)
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
