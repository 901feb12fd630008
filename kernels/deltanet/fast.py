"""DeltaNet, chunked with the WY (UT) representation, in plain torch (the CPU path).

Per head, ``k`` is L2-normalised inside the op (``k / sqrt(|k|^2 + 1e-6)``), then::

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,      o_t = S_t (scale * q_t)

Chunk ``n`` (rows ``t = 0..C-1``) starting from state ``S``: writing
``S_t = S + sum_{s<=t} d_s k_s^T`` the update terms obey
``d_t = beta_t (v_t - S k_t - sum_{s<t} d_s k_s^T k_t)``, i.e. ``(I + strict_tril(diag(beta) K K^T)) D
= diag(beta) (V - K S^T)``.  With ``A = (I + strict_tril(diag(beta) K K^T))^{-1} diag(beta)``
(one unit-triangular solve per chunk) and ``W = A K``, ``U = A V``::

    D      = U - W S^T
    O      = Q S^T + tril(Q K^T) D
    S_next = S + D^T K

``A``, ``W``, ``U`` and ``tril(Q K^T)`` are computed for all chunks at once; only the state
recurrence (two small matmuls per chunk) runs sequentially over the ``T / C`` chunks.
Gradients come from torch autograd through these ops.
"""

from __future__ import annotations

import math

import torch

from kernels.chunking import to_chunks

L2_EPS = 1e-6


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + L2_EPS)


def deltanet_prep(q, k, v, beta, scale: float, chunk: int):
    """Everything that is parallel over chunks.

    Returns ``qw = [Q ; W]`` (``[BH, N, 2C, Dk]``, Q scaled), ``u`` (``[BH, N, C, Dv]``),
    ``kc`` (normalised keys, ``[BH, N, C, Dk]``) and ``qk = tril(Q K^T)`` (``[BH, N, C, C]``).
    """
    t = q.shape[1]
    n = math.ceil(t / chunk)
    qc = to_chunks(q, n, chunk) * scale
    kc = to_chunks(l2_normalize(k), n, chunk)
    vc = to_chunks(v, n, chunk)
    bc = to_chunks(beta, n, chunk)  # padding: beta = 0 and k = 0, a no-op update
    dv = vc.shape[-1]

    gram = kc @ torch.cat([kc, qc], dim=-2).mT  # [K K^T | K Q^T]
    kk, kq = gram[..., :chunk], gram[..., chunk:]
    # A = (I + strict_tril(diag(beta) K K^T))^{-1} diag(beta); with unitriangular=True the
    # solve reads only the strictly lower part of its matrix
    a = torch.linalg.solve_triangular(kk * bc[..., :, None], torch.diag_embed(bc), upper=False,
                                      unitriangular=True)
    wu = a @ torch.cat([kc, vc], dim=-1)  # [W | U]
    qw = torch.cat([qc, wu[..., :-dv]], dim=-2)
    return qw, wu[..., -dv:], kc, torch.tril(kq.mT)


def deltanet_recurrence(qw, u, kc, qk):
    """Sequential part: returns the output ``[BH, N, C, Dv]``."""
    bh, n, chunk2, dk = qw.shape
    chunk = chunk2 // 2
    dv = u.shape[-1]
    state_t = qw.new_zeros(bh, dk, dv)  # S^T
    inter, deltas = [], []
    for i in range(n):
        x = qw[:, i] @ state_t                   # [Q S^T ; W S^T]
        d = u[:, i] - x[:, chunk:]
        state_t = torch.baddbmm(state_t, kc[:, i].mT, d)
        inter.append(x[:, :chunk])
        deltas.append(d)
    return torch.stack(inter, 1) + qk @ torch.stack(deltas, 1)


def deltanet_fast(q, k, v, beta, scale=None, chunk_size: int = 64):
    """Chunked DeltaNet; ``q, k``: ``[B, T, H, Dk]``, ``v``: ``[B, T, H, Dv]``, ``beta``: ``[B, T, H]``.

    Half-precision inputs are computed in float32 and cast back.
    """
    b, t, h, dk = q.shape
    scale = dk ** -0.5 if scale is None else scale
    in_dtype = q.dtype
    if in_dtype in (torch.float16, torch.bfloat16):
        q, k, v, beta = (x.float() for x in (q, k, v, beta))
    chunk = max(1, min(chunk_size, t))
    out = deltanet_recurrence(*deltanet_prep(q, k, v, beta, scale, chunk))
    dv = out.shape[-1]
    return out.reshape(b, h, -1, dv)[:, :, :t].movedim(1, 2).to(in_dtype)
