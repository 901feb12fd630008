"""Causal linear attention on CPU, chunked.

Within a chunk of ``C`` positions the scores are a masked ``[C, C]`` matmul; across chunks
each head carries the state ``S = sum_j phi(k_j)^T [v_j, 1]`` (``[D, D + 1]``; the extra
column is the normaliser ``sum_j phi(k_j)``), so one matmul gives numerator and
denominator together.  Cost O(T * C * D + T * D^2), memory O(T * (C + D)), any T (the tail
chunk is zero-padded *after* the feature map, so padding contributes nothing).  Autograd
runs through plain torch ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.linear_attention.reference import feature_map


def linear_attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          scale: float | None = None, chunk_size: int = 64, *,
                          eps: float = 1e-6) -> torch.Tensor:
    b, t, h, d = q.shape
    dv = v.shape[-1]
    scale = d ** -0.5 if scale is None else scale
    c = max(1, min(int(chunk_size), t))
    n = -(-t // c)
    pad = n * c - t
    # scores carry `scale`; dividing numerator and denominator by it leaves eps / scale
    eps = eps / scale
    # [B, H, T, D] layouts padded to n * c positions: zero feature rows for the padding,
    # so it adds nothing to any state; v gets a column of ones (numerator and normaliser
    # in one matmul), and its padded rows may hold anything.
    qf = F.pad(feature_map(q).transpose(1, 2), (0, 0, 0, pad)).reshape(b, h, n, c, d)
    kf = F.pad(feature_map(k).transpose(1, 2), (0, 0, 0, pad)).reshape(b, h, n, c, d)
    va = F.pad(v.transpose(1, 2), (0, 1, 0, pad), value=1.0).reshape(b, h, n, c, dv + 1)

    out = (qf @ kf.transpose(-1, -2)).tril_() @ va  # intra-chunk, [B, H, N, C, D + 1]
    if n > 1:
        kv = kf.transpose(-1, -2) @ va  # [B, H, N, D, D + 1], one chunk's contribution
        state = F.pad(torch.cumsum(kv[:, :, :-1], dim=2), (0, 0, 0, 0, 1, 0))  # before chunk
        out = out + qf @ state
    out = out.view(b, h, n * c, dv + 1)[:, :, :t].transpose(1, 2)
    return out[..., :dv] / (out[..., dv:] + eps)
