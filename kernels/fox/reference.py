"""Forgetting attention (FoX) written out plainly (tests only).

Lin et al. 2025, "Forgetting Transformer: Softmax Attention with a Forget Gate".
Query ``i`` weighs key ``j <= i`` by ``exp(scale * q_i . k_j + sum_{s=j+1..i} log_f_s)``.
"""

from __future__ import annotations

import torch


def fox_attention_ref(q, k, v, log_f, scale=None):
    """Full ``[T, T]`` logits plus an explicit ``[T, T]`` gate matrix, causal softmax.

    ``gate[i, j] = sum_{j < s <= i} log_f[s]`` is built column by column as a running sum
    down each column, so every entry only ever adds its own terms (no ``c_i - c_j``
    cancellation): this stays accurate for long sequences.
    """
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    pos = torch.arange(t, device=q.device)
    later = pos[:, None] > pos[None, :]  # [i, j]: i > j, the positions s in (j, i]
    lf = log_f.transpose(1, 2)[..., :, None]  # [B, H, T(s), 1]
    gate = torch.cumsum(lf * later, dim=-2)  # [B, H, T(i), T(j)]
    logits = logits + gate
    logits = logits.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", logits.softmax(-1), v)
