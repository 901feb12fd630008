"""The chunk layout shared by the chunked ops (PaTH, DeltaNet): ``[B, T, H, ...]`` <->
``[B*H, N, C, ...]`` with time zero-padded to ``N*C``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_chunks(x: torch.Tensor, n_chunks: int, chunk: int) -> torch.Tensor:
    """``[B, T, H, ...]`` -> ``[B*H, N, C, ...]``, zero-padding time to ``N*C``."""
    b, t, h = x.shape[:3]
    rest = x.shape[3:]
    x = x.movedim(2, 1)
    pad = n_chunks * chunk - t
    if pad:
        x = F.pad(x, (0, 0) * len(rest) + (0, pad))
    return x.reshape(b * h, n_chunks, chunk, *rest).contiguous()


def from_chunks(x: torch.Tensor, b: int, t: int, h: int) -> torch.Tensor:
    """``[B*H, N, C, D]`` -> ``[B, T, H, D]`` (drops the padding)."""
    d = x.shape[-1]
    return x.reshape(b, h, -1, d)[:, :, :t].movedim(1, 2)
