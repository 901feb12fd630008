"""The intra-chunk preparation of PaTH (:func:`kernels.path.wy_prep.wy_prep`) as one Triton
kernel, forward only.

One program per (chunk, batch-head), in fp32 (``tl.dot`` IEEE-fp32 for fp32 inputs, TF32 for
fp16/bf16 inputs).  The head dim is walked in slices of ``BK`` columns (32 for fp16/bf16,
16 for fp32), so only ``C x C`` tiles stay live:

1. Gram matrices, summed over the slices: ``W W^T``, ``W K^T``, ``Q W^T``, ``Q K^T``
   (``Q`` scaled);
2. ``X = (I + L)^{-1}`` with ``L = strict_tril(diag(beta) W W^T)`` by forward substitution
   row by row (``X_i = e_i - sum_{j<i} L_ij X_j``; rows ``j < i`` are final when row ``i`` is
   formed), ``A = X diag(beta)`` (the UT matrix), ``AWK = A strict_tril(W K^T)`` and the
   intra-chunk logits ``Q K^T - tril(Q W^T) AWK`` plus the gate ``c_i - c_j``;
3. per slice again: ``W2 = A W``, ``kh = K - AWK^T W``, ``qh = Q - tril(Q W^T) W2``.

It has no backward: the op's backward recomputes the preparation with the torch version
under autograd (see :mod:`kernels.path.triton_kernel`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_utils import launches_for, on_device, pow2_block, tuned

__all__ = ["prep_configs", "prep_launches", "triton_prep"]



def prep_configs(cc, args):
    return [triton.Config({}, num_warps=4 if args["C"] <= 32 else 8, num_stages=1)]


@tuned(prep_configs, interpret=triton.Config({}, num_warps=4, num_stages=1), key=["C", "BD"])
@triton.jit
def _path_prep(q, k, w, beta, c, qh, kh, w2, sd, N, scale, D: tl.constexpr,
               C: tl.constexpr, BD: tl.constexpr, BK: tl.constexpr, HAS_GATE: tl.constexpr,
               PREC: tl.constexpr):
    n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    ty = qh.dtype.element_ty
    rc = tl.arange(0, C)
    rk = tl.arange(0, BK)
    off = (bh * N + n) * C * D

    # 1. Gram matrices over head-dim slices
    ww = tl.zeros([C, C], dtype=tl.float32)
    wk = tl.zeros([C, C], dtype=tl.float32)
    qw = tl.zeros([C, C], dtype=tl.float32)
    qk = tl.zeros([C, C], dtype=tl.float32)
    for k0 in range(0, BD, BK):
        cols = k0 + rk
        ptr = off + rc[:, None] * D + cols[None, :]
        msk = (cols < D)[None, :]
        wm = tl.load(w + ptr, mask=msk, other=0.0).to(tl.float32)
        km = tl.load(k + ptr, mask=msk, other=0.0).to(tl.float32)
        qm = tl.load(q + ptr, mask=msk, other=0.0).to(tl.float32) * scale
        ww += tl.dot(wm, tl.trans(wm), input_precision=PREC)
        wk += tl.dot(wm, tl.trans(km), input_precision=PREC)
        qw += tl.dot(qm, tl.trans(wm), input_precision=PREC)
        qk += tl.dot(qm, tl.trans(km), input_precision=PREC)

    # 2. A, A strict_tril(W K^T), intra-chunk logits
    lower = rc[:, None] > rc[None, :]
    bt = tl.load(beta + (bh * N + n) * C + rc).to(tl.float32)
    ell = tl.where(lower, ww * bt[:, None], 0.0)
    x = tl.where(rc[:, None] == rc[None, :], 1.0, 0.0)
    for i in range(1, C):
        l_i = tl.sum(tl.where(rc[:, None] == i, ell, 0.0), 0)       # row i of L, by column j
        x_i = tl.sum(l_i[:, None] * x, 0)                             # sum_j L_ij X_j
        x = tl.where(rc[:, None] == i, x - x_i[None, :], x)
    a = x * bt[None, :]
    awk = tl.dot(a, tl.where(lower, wk, 0.0), input_precision=PREC)
    qw = tl.where(rc[:, None] >= rc[None, :], qw, 0.0)
    s = qk - tl.dot(qw, awk, input_precision=PREC)
    if HAS_GATE:
        cr = tl.load(c + (bh * N + n) * C + rc)
        s += cr[:, None] - cr[None, :]
    tl.store(sd + (bh * N + n) * C * C + rc[:, None] * C + rc[None, :], s)

    # 3. W2 = A W, kh, qh, slice by slice
    for k0 in range(0, BD, BK):
        cols = k0 + rk
        ptr = off + rc[:, None] * D + cols[None, :]
        msk = (cols < D)[None, :]
        wm = tl.load(w + ptr, mask=msk, other=0.0).to(tl.float32)
        w2m = tl.dot(a, wm, input_precision=PREC)
        tl.store(w2 + ptr, w2m.to(ty), mask=msk)
        km = tl.load(k + ptr, mask=msk, other=0.0).to(tl.float32)
        tl.store(kh + ptr, (km - tl.dot(tl.trans(awk), wm, input_precision=PREC)).to(ty), mask=msk)
        qm = tl.load(q + ptr, mask=msk, other=0.0).to(tl.float32) * scale
        tl.store(qh + ptr, (qm - tl.dot(qw, w2m, input_precision=PREC)).to(ty), mask=msk)


def _prec(dtype: torch.dtype) -> str:
    return "tf32" if dtype in (torch.float16, torch.bfloat16) else "ieee"


def _bk(d: int, dtype: torch.dtype) -> int:
    """Head-dim slice: 32 columns for fp16/bf16, 16 for fp32 (IEEE dots hold more registers)."""
    return min(32 if dtype in (torch.float16, torch.bfloat16) else 16, pow2_block(d))


def triton_prep(qc, kc, wc, bc, c, scale: float):
    """``qc, kc, wc``: ``[BH, N, C, D]`` chunked inputs, ``bc``: ``[BH, N, C]`` betas, ``c``:
    ``[BH, N*C]`` fp32 cumulative log gate or ``None``.  Returns ``qh, kh, w2`` (dtype of
    ``qc``) and the fp32 intra-chunk logits ``[BH, N, C, C]``."""
    bh, n, chunk, d = qc.shape
    qh, kh, w2 = torch.empty_like(qc), torch.empty_like(qc), torch.empty_like(qc)
    sd = torch.empty(bh, n, chunk, chunk, device=qc.device, dtype=torch.float32)
    has_gate = c is not None
    with on_device(qc):
        _path_prep[(n, bh)](qc, kc, wc, bc, c if has_gate else sd, qh, kh, w2, sd, n, scale, D=d,
                            C=chunk, BD=pow2_block(d), BK=_bk(d, qc.dtype), HAS_GATE=has_gate, PREC=_prec(qc.dtype))
    return qh, kh, w2, sd


def prep_launches(cc: int, dtype: torch.dtype, head_dim: int, chunk: int):
    """The preparation's launch on target ``cc`` (for :func:`kernels.path.triton_kernel.compile_launches`)."""
    f32 = torch.float32
    ptrs = dict(q=dtype, k=dtype, w=dtype, beta=dtype, c=f32, qh=dtype, kh=dtype, w2=dtype, sd=f32)
    const = dict(D=head_dim, C=chunk, BD=pow2_block(head_dim), BK=_bk(head_dim, dtype), HAS_GATE=True,
                 PREC=_prec(dtype))
    args = {**{k: torch.empty(0, dtype=v, device="meta") for k, v in ptrs.items()}, **const}
    return launches_for("path_prep", _path_prep, prep_configs, cc, args, pointers=ptrs, constexprs=const,
                        floats=("scale",))
