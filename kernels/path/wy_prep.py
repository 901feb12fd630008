"""Intra-chunk preparation for the Triton PaTH core, in torch (differentiated by autograd).

Per chunk (``C`` positions, rows ``W`` = the ``w_t``, ``Q`` scaled queries, ``K`` keys) the
product ``H_{C-1} ... H_0`` is ``I - W^T A W`` with ``A`` the lower-triangular UT matrix
``(I + strict_tril(diag(beta) W W^T))^{-1} diag(beta)`` (see :mod:`kernels.path.fast`).
This is :func:`kernels.path.fast.path_prep` in its ``low_rank`` form: it never forms the
``D x D`` transition but returns ``W`` and ``W2 = A W`` (both ``[C, D]``), so the core applies
``g P = g - (g W^T) W2`` as a rank-``C`` update.

Returns ``qh`` (queries pulled back to their chunk start, scaled), ``kh`` (keys pushed to
their chunk end), ``wc`` (``W``), ``w2`` (``A W``), all ``[BH, N, C, D]``; ``s_diag``
(``[BH, N, C, C]`` intra-chunk logits incl. scale and gate, unmasked) and ``c``
(``[BH, N*C]`` cumulative log gate, or ``None``).  Everything is ``O(T C D)`` work.
"""

from __future__ import annotations

from kernels.path.fast import path_prep


def wy_prep(q, k, w, beta, log_f, scale: float, chunk: int):
    """``q, k, w``: ``[B, T, H, D]``; ``beta``, ``log_f``: ``[B, T, H]`` (same float dtype)."""
    return path_prep(q, k, w, beta, log_f, scale, chunk, low_rank=True)
