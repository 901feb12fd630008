"""PaTH attention written out plainly (tests only).

PaTH (Yang et al. 2025, "PaTH Attention: Position Encoding via Accumulating Householder
Transformations") replaces a fixed positional rotation by a data-dependent product of
Householder-like matrices.  Per head and position ``t``::

    H_t = I - beta_t * w_t w_t^T            (w_t unit norm, beta_t in (0, 2))

    logit(i, j) = scale * q_i^T H_i H_{i-1} ... H_{j+1} k_j      (j <= i; empty product = I)
                  [+ sum_{s=j+1..i} log_f_s                      when log_f is given: PaTH-FoX]

    out_i = sum_j softmax_j(logit(i, .)) v_j

This file builds every ``H_t`` as an explicit ``D x D`` matrix and walks the diagonals of
the logit matrix: for distance ``d = i - j`` it keeps ``r_d(i) = q_i^T H_i ... H_{i-d+1}``
for all ``i`` at once and extends it by one matrix per step.  ``O(T^2 D^2)`` work and
``T`` Python steps: only for the tiny shapes used in tests.  Works in float64.
"""

from __future__ import annotations

import torch


def path_attention_ref(q, k, v, w, beta, log_f=None, scale=None):
    """``q, k, v, w``: ``[B, T, H, D]``; ``beta``, ``log_f``: ``[B, T, H]``; out ``[B, T, H, D]``."""
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    eye = torch.eye(d, dtype=q.dtype, device=q.device)
    house = eye - beta[..., None, None] * w[..., :, None] * w[..., None, :]  # [B, T, H, D, D]

    diagonals = []  # diagonals[dist]: logits of (i, i - dist) for i = dist .. T-1, [B, T - dist, H]
    r = q  # r[:, n] = q_i^T H_i ... H_{i-dist+1} for i = dist + n
    gate = torch.zeros_like(beta)  # gate[:, n] = sum_{s=i-dist+1..i} log_f_s for i = dist + n
    for dist in range(t):
        logit = scale * (r * k[:, : t - dist]).sum(-1)
        if log_f is not None:
            logit = logit + gate
        diagonals.append(logit)
        # one more factor: H_{i-dist} on the right, for i = dist + 1 .. T-1
        r = (r[:, 1:, :, None, :] @ house[:, 1: t - dist]).squeeze(-2)
        if log_f is not None:
            gate = gate[:, 1:] + log_f[:, 1: t - dist]

    # scatter the diagonals into a [T, T] matrix; entries above the diagonal stay -inf
    rows = torch.cat([torch.arange(dist, t, device=q.device) for dist in range(t)])
    cols = torch.cat([torch.arange(0, t - dist, device=q.device) for dist in range(t)])
    values = torch.cat(diagonals, dim=1).permute(0, 2, 1)  # [B, H, T(T+1)/2]
    logits = torch.full((b, h, t * t), float("-inf"), dtype=q.dtype, device=q.device)
    logits = logits.scatter(-1, (rows * t + cols).expand(b, h, -1), values).reshape(b, h, t, t)
    return torch.einsum("bhij,bjhd->bihd", logits.softmax(-1), v)
