"""Causal linear attention written out plainly (tests only): the O(T^2) masked form."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_map(x):
    """``phi(x) = elu(x) + 1 > 0`` (Katharopoulos et al. 2020)."""
    return F.elu(x) + 1


def linear_attention_ref(q, k, v, scale=None, chunk_size=64, *, eps=1e-6):
    """``o_i = sum_{j<=i} s_ij v_j / (sum_{j<=i} s_ij + eps)``, ``s_ij = scale * phi(q_i).phi(k_j)``.

    ``chunk_size`` is accepted (and ignored) so the reference takes the op's arguments.
    """
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    s = torch.einsum("bihd,bjhd->bhij", feature_map(q), feature_map(k)) * scale
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~causal, 0.0)
    num = torch.einsum("bhij,bjhd->bihd", s, v)
    den = s.sum(-1).transpose(1, 2)[..., None]  # [B, T, H, 1]
    return num / (den + eps)
