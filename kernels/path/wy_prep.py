"""Intra-chunk preparation for the Triton PaTH core, in torch (differentiated by autograd).

Per chunk (``C`` positions, rows ``W`` = the ``w_t``, ``Q`` scaled queries, ``K`` keys) the
product ``H_{C-1} ... H_0`` is ``I - W^T A W`` with ``A`` the lower-triangular UT matrix
``(I + strict_tril(diag(beta) W W^T))^{-1} diag(beta)`` (see :mod:`kernels.path.fast`).
Unlike :func:`kernels.path.fast.path_prep` this never forms the ``D x D`` transition: it
returns ``W`` and ``W2 = A W`` (both ``[C, D]``), so the core applies
``g P = g - (g W^T) W2`` as a rank-``C`` update.

Returns ``qh`` (queries pulled back to their chunk start, scaled), ``kh`` (keys pushed to
their chunk end), ``wc`` (``W``), ``w2`` (``A W``), all ``[BH, N, C, D]``; ``s_diag``
(``[BH, N, C, C]`` intra-chunk logits incl. scale and gate, unmasked) and ``c``
(``[BH, N*C]`` cumulative log gate, or ``None``).  Everything is ``O(T C D)`` work.
"""

from __future__ import annotations

import math

import torch

from kernels.chunking import to_chunks


def wy_prep(q, k, w, beta, log_f, scale: float, chunk: int):
    """``q, k, w``: ``[B, T, H, D]``; ``beta``, ``log_f``: ``[B, T, H]`` (same float dtype)."""
    b, t, h, d = q.shape
    n = math.ceil(t / chunk)
    qc = to_chunks(q, n, chunk) * scale           # [BH, N, C, D]; padding is zero
    kc = to_chunks(k, n, chunk)
    wc = to_chunks(w, n, chunk)
    bc = to_chunks(beta, n, chunk)                # padding has beta = 0 -> H = I

    ww = wc @ wc.mT                               # [BH, N, C, C]
    wk = torch.tril(wc @ kc.mT, -1)               # (w_r . k_j), r > j
    qw = torch.tril(qc @ wc.mT)                   # (q_i . w_s), s <= i
    # A = (I + strict_tril(diag(beta) W W^T))^{-1} diag(beta): unit-triangular solve
    a = torch.linalg.solve_triangular(ww * bc[..., :, None], torch.diag_embed(bc), upper=False,
                                      unitriangular=True)
    w2 = a @ wc                                    # A W
    awk = a @ wk                                   # A strict_tril(W K^T)
    qh = qc - qw @ w2
    kh = kc - awk.mT @ wc
    s_diag = qc @ kc.mT - qw @ awk

    c = None
    if log_f is not None:
        c = to_chunks(log_f, n, chunk).reshape(b * h, n * chunk).cumsum(-1)
        cc = c.reshape(b * h, n, chunk)
        s_diag = s_diag + (cc[..., :, None] - cc[..., None, :])
    return qh, kh, wc, w2, s_diag, c
