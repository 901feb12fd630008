"""DeltaNet on CUDA: Triton kernels for the chunk-state recurrence, forward and backward.

The split is the same as in :mod:`kernels.deltanet.fast`: ``deltanet_prep`` (batched torch
ops, differentiated by autograd) L2-normalises ``k`` and computes per chunk the UT
transform ``A`` (one triangular solve), ``W = A K``, ``U = A V`` and ``tril(Q K^T)``.
``_DeltaCoreTriton`` then runs the sequential part:

* ``_delta_fwd_kernel``, one program per (batch-head, block of ``Dv`` columns): keeps the
  state block ``S^T`` (``[Dk, BV]``) in registers and walks the chunks in order,
  ``D = U - W S^T``, ``O = Q S^T + tril(Q K^T) D``, ``S^T += K^T D``.  When gradients are
  needed it stores the state at every chunk start (``[BH, N, Dk, Dv]``, ``O(T D^2 / C)``).
* ``_delta_bwd_kernel``, one program per batch-head (all ``Dv`` columns, since ``dQ``,
  ``dW``, ``dK`` sum over them): walks the chunks backwards carrying ``dS^T``, recomputing
  ``D`` from the stored state.  This is a real Triton backward; only the cheap per-chunk
  prep goes through torch autograd.

Float32 throughout (half inputs are upcast); ``tl.dot`` is IEEE fp32 unless
``torch.backends.cuda.matmul.allow_tf32`` is set or the inputs were fp16/bf16 (then TF32).
Plain ``tl.dot`` (sm80/sm90), one fixed config, so it runs under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.deltanet.fast import deltanet_prep
from kernels.triton_utils import dot_precision, on_device, pow2_block


@triton.jit
def _delta_fwd_kernel(qw, u, kc, qk, o, hbuf,
                      N, DK, DV,
                      C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                      STORE_H: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    vb = tl.program_id(1)
    rc = tl.arange(0, C)
    rk = tl.arange(0, BK)
    rv = vb * BV + tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    ck_tile = rc[:, None] * DK + rk[None, :]
    cv_tile = rc[:, None] * DV + rv[None, :]
    kv_tile = rk[:, None] * DV + rv[None, :]
    m_kv = mk[:, None] & mv[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float32)  # S^T, columns rv
    for n in range(0, N):
        chunk = bh * N + n
        if STORE_H:
            tl.store(hbuf + chunk * DK * DV + kv_tile, state, mask=m_kv)
        qn = tl.load(qw + chunk * 2 * C * DK + ck_tile, mask=mk[None, :], other=0.0)
        wn = tl.load(qw + chunk * 2 * C * DK + C * DK + ck_tile, mask=mk[None, :], other=0.0)
        kn = tl.load(kc + chunk * C * DK + ck_tile, mask=mk[None, :], other=0.0)
        un = tl.load(u + chunk * C * DV + cv_tile, mask=mv[None, :], other=0.0)
        an = tl.load(qk + chunk * C * C + rc[:, None] * C + rc[None, :])
        dn = un - tl.dot(wn, state, input_precision=PREC)
        on = tl.dot(qn, state, input_precision=PREC) + tl.dot(an, dn, input_precision=PREC)
        tl.store(o + chunk * C * DV + cv_tile, on, mask=mv[None, :])
        state += tl.dot(tl.trans(kn), dn, input_precision=PREC)


@triton.jit
def _delta_bwd_kernel(qw, u, kc, qk, do, hbuf, dqw, du, dkc, dqk,
                      N, DK, DV,
                      C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                      PREC: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    rc = tl.arange(0, C)
    rk = tl.arange(0, BK)
    rv = tl.arange(0, BV)
    mk = rk < DK
    mv = rv < DV
    ck_tile = rc[:, None] * DK + rk[None, :]
    cv_tile = rc[:, None] * DV + rv[None, :]
    kv_tile = rk[:, None] * DV + rv[None, :]
    cc_tile = rc[:, None] * C + rc[None, :]
    m_kv = mk[:, None] & mv[None, :]
    dstate = tl.zeros([BK, BV], dtype=tl.float32)  # gradient of S^T after the chunk
    for it in range(0, N):
        chunk = bh * N + (N - 1 - it)
        state = tl.load(hbuf + chunk * DK * DV + kv_tile, mask=m_kv, other=0.0)
        qn = tl.load(qw + chunk * 2 * C * DK + ck_tile, mask=mk[None, :], other=0.0)
        wn = tl.load(qw + chunk * 2 * C * DK + C * DK + ck_tile, mask=mk[None, :], other=0.0)
        kn = tl.load(kc + chunk * C * DK + ck_tile, mask=mk[None, :], other=0.0)
        un = tl.load(u + chunk * C * DV + cv_tile, mask=mv[None, :], other=0.0)
        an = tl.load(qk + chunk * C * C + cc_tile)
        don = tl.load(do + chunk * C * DV + cv_tile, mask=mv[None, :], other=0.0)
        dn = un - tl.dot(wn, state, input_precision=PREC)
        # O = Q S^T + A D ;  S^T_next = S^T + K^T D ;  D = U - W S^T
        ddn = tl.dot(tl.trans(an), don, input_precision=PREC) \
            + tl.dot(kn, dstate, input_precision=PREC)
        tl.store(dqw + chunk * 2 * C * DK + ck_tile,
                 tl.dot(don, tl.trans(state), input_precision=PREC), mask=mk[None, :])
        tl.store(dqw + chunk * 2 * C * DK + C * DK + ck_tile,
                 -tl.dot(ddn, tl.trans(state), input_precision=PREC), mask=mk[None, :])
        tl.store(dkc + chunk * C * DK + ck_tile,
                 tl.dot(dn, tl.trans(dstate), input_precision=PREC), mask=mk[None, :])
        tl.store(du + chunk * C * DV + cv_tile, ddn, mask=mv[None, :])
        tl.store(dqk + chunk * C * C + cc_tile, tl.dot(don, tl.trans(dn), input_precision=PREC))
        dstate += tl.dot(tl.trans(qn), don, input_precision=PREC) \
            - tl.dot(tl.trans(wn), ddn, input_precision=PREC)


class _DeltaCoreTriton(torch.autograd.Function):
    """Same contract as ``kernels.deltanet.fast.deltanet_recurrence``."""

    @staticmethod
    def forward(ctx, qw, u, kc, qk, prec):
        bh, n, chunk2, dk = qw.shape
        chunk = chunk2 // 2
        dv = u.shape[-1]
        qw, u, kc, qk = (x.contiguous() for x in (qw, u, kc, qk))
        out = torch.empty(bh, n, chunk, dv, device=qw.device, dtype=torch.float32)
        store_h = any(ctx.needs_input_grad)
        hbuf = torch.empty(bh, n, dk, dv, device=qw.device, dtype=torch.float32) if store_h else qw
        bv = pow2_block(dv) if store_h else min(64, pow2_block(dv))
        with on_device(qw):
            _delta_fwd_kernel[(bh, triton.cdiv(dv, bv))](qw, u, kc, qk, out, hbuf, n, dk, dv,
                                                         C=chunk, BK=pow2_block(dk), BV=bv,
                                                         STORE_H=store_h, PREC=prec, num_warps=4)
        ctx.save_for_backward(qw, u, kc, qk, hbuf if store_h else None)
        ctx.prec = prec
        return out

    @staticmethod
    def backward(ctx, d_out):
        qw, u, kc, qk, hbuf = ctx.saved_tensors
        bh, n, chunk2, dk = qw.shape
        chunk = chunk2 // 2
        dv = u.shape[-1]
        d_out = d_out.contiguous().float()
        d_qw, d_u, d_kc, d_qk = (torch.empty_like(x) for x in (qw, u, kc, qk))
        with on_device(qw):
            _delta_bwd_kernel[(bh,)](qw, u, kc, qk, d_out, hbuf, d_qw, d_u, d_kc, d_qk, n, dk, dv,
                                     C=chunk, BK=pow2_block(dk), BV=pow2_block(dv), PREC=ctx.prec,
                                     num_warps=4)
        return d_qw, d_u, d_kc, d_qk, None


def deltanet_triton(q, k, v, beta, scale=None, chunk_size: int = 64):
    """DeltaNet with the Triton recurrence; same contract as ``deltanet_fast``.

    ``chunk_size`` must be a power of two >= 16; short sequences use the smallest such
    chunk that covers them.
    """
    b, t, h, dk = q.shape
    scale = dk ** -0.5 if scale is None else scale
    in_dtype = q.dtype
    low = in_dtype in (torch.float16, torch.bfloat16)
    q, k, v, beta = (x.float() for x in (q, k, v, beta))
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
    chunk = min(chunk_size, pow2_block(t))
    qw, u, kc, qk = deltanet_prep(q, k, v, beta, scale, chunk)
    out = _DeltaCoreTriton.apply(qw, u, kc, qk, dot_precision(low))
    dv = out.shape[-1]
    return out.reshape(b, h, -1, dv)[:, :, :t].movedim(1, 2).to(in_dtype)
