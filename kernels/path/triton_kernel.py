"""PaTH attention on CUDA: Triton kernels for the inter-chunk part, forward and backward.

The split is the same as in :mod:`kernels.path.fast`:

* ``path_prep`` (batched torch ops, differentiated by autograd) computes per chunk the
  WY factors and from them ``qh`` (queries pulled back to their chunk start, scaled),
  ``kh`` (keys pushed to their chunk end), the chunk transition ``P_n = I - W^T A W``
  (``D x D``) and the intra-chunk logits.  This is ``O(T C D)`` work.
* ``_PathCoreTriton`` replaces the torch core with two kernels:

  - ``_path_fwd_kernel``, one program per (query chunk ``a``, batch-head): a
    FlashAttention-style online softmax over key chunks ``a, a-1, ..., 0``.  The program
    keeps its queries as the row block ``g = qh_a^T P_{a-1} ... P_{b+1}`` and moves one
    key chunk left with one ``tl.dot`` (``g <- g P_b``), so the logits of key chunk ``b``
    are ``g kh_b^T`` (plus the FoX gate ``c_i - c_j``).  Writes ``out`` and the row
    log-sum-exp; when gradients are needed it also stores every ``g`` (the packed buffer
    ``gbuf``, ``N (N - 1) / 2`` blocks of ``[C, D]`` per batch-head, i.e.
    ``O(T^2 D / C)`` memory, the same as the torch path saves).
  - ``_path_bwd_kernel``, one program per (query chunk, batch-head): walks the key chunks
    the other way (``b = 0 .. a-1``), recomputes ``p = exp(g kh_b^T - lse)`` from the stored
    ``g``, and carries ``dg`` back through ``g_{b-1} = g_b P_b``
    (``dP_b += g_b^T dg_{b-1}``, ``dg_b = dg_{b-1} P_b^T + dS kh_b``).  Key-side gradients
    (``dkh_b``, ``dv_b``, ``dP_b``, the gate) are summed over query chunks with fp32
    ``tl.atomic_add`` (so they are not bit-reproducible run to run).

  This is a real Triton backward; only the cheap intra-chunk part goes through torch
  autograd.

Precision: the kernels run in float32 (half inputs are upcast by the prep).  ``tl.dot``
uses IEEE fp32 unless ``torch.backends.cuda.matmul.allow_tf32`` is set or the caller's
inputs were fp16/bf16, in which case it uses TF32 tensor cores.  Written for sm80/sm90
with plain ``tl.dot`` (no Hopper-only features); one fixed config (no autotuning), so it
also runs under ``TRITON_INTERPRET=1``, where the tests check it in fp32.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.chunking import from_chunks, to_chunks
from kernels.path.fast import path_prep
from kernels.triton_utils import dot_precision, on_device, pow2_block


@triton.jit
def _path_fwd_kernel(qh, kh, pm, sd, v, c, o, lse, gbuf,
                     N, D, DV,
                     C: tl.constexpr, BD: tl.constexpr, BV: tl.constexpr,
                     HAS_GATE: tl.constexpr, STORE_G: tl.constexpr, PREC: tl.constexpr):
    a = tl.num_programs(0) - 1 - tl.program_id(0)   # longest rows first
    bh = tl.program_id(1).to(tl.int64)
    rc = tl.arange(0, C)
    rd = tl.arange(0, BD)
    rv = tl.arange(0, BV)
    md = rd < D
    mv = rv < DV
    cd_tile = rc[:, None] * D + rd[None, :]
    cv_tile = rc[:, None] * DV + rv[None, :]
    dd_tile = rd[:, None] * D + rd[None, :]
    m_cd = md[None, :]
    m_cv = mv[None, :]
    m_dd = md[:, None] & md[None, :]
    chunk0 = bh * N  # index of this batch-head's first chunk

    # diagonal block (intra-chunk logits come precomputed, unmasked)
    g = tl.load(qh + (chunk0 + a) * C * D + cd_tile, mask=m_cd, other=0.0)
    s = tl.load(sd + (chunk0 + a) * C * C + rc[:, None] * C + rc[None, :])
    s = tl.where(rc[:, None] >= rc[None, :], s, float("-inf"))
    m_i = tl.max(s, 1)
    p = tl.exp(s - m_i[:, None])
    l_i = tl.sum(p, 1)
    vb = tl.load(v + (chunk0 + a) * C * DV + cv_tile, mask=m_cv, other=0.0)
    acc = tl.dot(p, vb, input_precision=PREC)
    if HAS_GATE:
        c_row = tl.load(c + (chunk0 + a) * C + rc)

    g_base = (bh * (N * (N - 1) // 2) + a * (a - 1) // 2) * C * D
    for it in range(0, a):
        blk = a - 1 - it
        # here g = qh_a^T P_{a-1} ... P_{blk+1}
        if STORE_G:
            tl.store(gbuf + g_base + blk * C * D + cd_tile, g, mask=m_cd)
        kb = tl.load(kh + (chunk0 + blk) * C * D + cd_tile, mask=m_cd, other=0.0)
        s = tl.dot(g, tl.trans(kb), input_precision=PREC)
        if HAS_GATE:
            s += c_row[:, None] - tl.load(c + (chunk0 + blk) * C + rc)[None, :]
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        vb = tl.load(v + (chunk0 + blk) * C * DV + cv_tile, mask=m_cv, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p, vb, input_precision=PREC)
        m_i = m_new
        # move one chunk left: g <- g P_blk
        pb = tl.load(pm + (chunk0 + blk) * D * D + dd_tile, mask=m_dd, other=0.0)
        g = tl.dot(g, pb, input_precision=PREC)

    tl.store(o + (chunk0 + a) * C * DV + cv_tile, acc / l_i[:, None], mask=m_cv)
    tl.store(lse + (chunk0 + a) * C + rc, m_i + tl.log(l_i))


@triton.jit
def _path_bwd_kernel(kh, pm, sd, v, c, do, lse, delta, gbuf,
                     dqh, dkh, dpm, dsd, dv, dc,
                     N, D, DV,
                     C: tl.constexpr, BD: tl.constexpr, BV: tl.constexpr,
                     HAS_GATE: tl.constexpr, PREC: tl.constexpr):
    a = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    rc = tl.arange(0, C)
    rd = tl.arange(0, BD)
    rv = tl.arange(0, BV)
    md = rd < D
    mv = rv < DV
    cd_tile = rc[:, None] * D + rd[None, :]
    cv_tile = rc[:, None] * DV + rv[None, :]
    dd_tile = rd[:, None] * D + rd[None, :]
    m_cd = md[None, :]
    m_cv = mv[None, :]
    m_dd = md[:, None] & md[None, :]
    chunk0 = bh * N

    do_a = tl.load(do + (chunk0 + a) * C * DV + cv_tile, mask=m_cv, other=0.0)
    lse_a = tl.load(lse + (chunk0 + a) * C + rc)
    delta_a = tl.load(delta + (chunk0 + a) * C + rc)

    # diagonal block
    s = tl.load(sd + (chunk0 + a) * C * C + rc[:, None] * C + rc[None, :])
    p = tl.where(rc[:, None] >= rc[None, :], tl.exp(s - lse_a[:, None]), 0.0)
    vb = tl.load(v + (chunk0 + a) * C * DV + cv_tile, mask=m_cv, other=0.0)
    ds = p * (tl.dot(do_a, tl.trans(vb), input_precision=PREC) - delta_a[:, None])
    tl.store(dsd + (chunk0 + a) * C * C + rc[:, None] * C + rc[None, :], ds)
    tl.atomic_add(dv + (chunk0 + a) * C * DV + cv_tile,
                  tl.dot(tl.trans(p), do_a, input_precision=PREC), mask=m_cv, sem="relaxed")

    if HAS_GATE:
        c_row = tl.load(c + (chunk0 + a) * C + rc)
        dc_row = tl.zeros([C], dtype=tl.float32)
    dg = tl.zeros([C, BD], dtype=tl.float32)
    g_base = (bh * (N * (N - 1) // 2) + a * (a - 1) // 2) * C * D
    for blk in range(0, a):
        g = tl.load(gbuf + g_base + blk * C * D + cd_tile, mask=m_cd, other=0.0)
        # g_{blk-1} = g_blk P_blk  (dg holds the gradient of g_{blk-1}; zero when blk = 0)
        pb = tl.load(pm + (chunk0 + blk) * D * D + dd_tile, mask=m_dd, other=0.0)
        tl.atomic_add(dpm + (chunk0 + blk) * D * D + dd_tile,
                      tl.dot(tl.trans(g), dg, input_precision=PREC), mask=m_dd, sem="relaxed")
        dg = tl.dot(dg, tl.trans(pb), input_precision=PREC)

        kb = tl.load(kh + (chunk0 + blk) * C * D + cd_tile, mask=m_cd, other=0.0)
        s = tl.dot(g, tl.trans(kb), input_precision=PREC)
        if HAS_GATE:
            c_col = tl.load(c + (chunk0 + blk) * C + rc)
            s += c_row[:, None] - c_col[None, :]
        p = tl.exp(s - lse_a[:, None])
        vb = tl.load(v + (chunk0 + blk) * C * DV + cv_tile, mask=m_cv, other=0.0)
        ds = p * (tl.dot(do_a, tl.trans(vb), input_precision=PREC) - delta_a[:, None])
        tl.atomic_add(dv + (chunk0 + blk) * C * DV + cv_tile,
                      tl.dot(tl.trans(p), do_a, input_precision=PREC), mask=m_cv, sem="relaxed")
        tl.atomic_add(dkh + (chunk0 + blk) * C * D + cd_tile,
                      tl.dot(tl.trans(ds), g, input_precision=PREC), mask=m_cd, sem="relaxed")
        if HAS_GATE:
            dc_row += tl.sum(ds, 1)
            tl.atomic_add(dc + (chunk0 + blk) * C + rc, -tl.sum(ds, 0), sem="relaxed")
        dg += tl.dot(ds, kb, input_precision=PREC)

    tl.store(dqh + (chunk0 + a) * C * D + cd_tile, dg, mask=m_cd)
    if HAS_GATE:
        tl.atomic_add(dc + (chunk0 + a) * C + rc, dc_row, sem="relaxed")


class _PathCoreTriton(torch.autograd.Function):
    """Same contract as ``kernels.path.fast._PathCore``, computed by the Triton kernels."""

    @staticmethod
    def forward(ctx, qh, kh, p_mat, s_diag, v, c, prec):
        bh, n, chunk, d = qh.shape
        dv = v.shape[-1]
        qh, kh, p_mat, s_diag, v = (x.contiguous() for x in (qh, kh, p_mat, s_diag, v))
        has_gate = c is not None
        c_arg = c.contiguous() if has_gate else qh  # dummy pointer when there is no gate
        out = torch.empty(bh, n, chunk, dv, device=qh.device, dtype=torch.float32)
        lse = torch.empty(bh, n * chunk, device=qh.device, dtype=torch.float32)
        store_g = any(ctx.needs_input_grad) and n > 1
        gbuf = (torch.empty(bh, n * (n - 1) // 2, chunk, d, device=qh.device, dtype=torch.float32)
                if store_g else qh)
        with on_device(qh):
            _path_fwd_kernel[(n, bh)](qh, kh, p_mat, s_diag, v, c_arg, out, lse, gbuf,
                                      n, d, dv, C=chunk, BD=pow2_block(d), BV=pow2_block(dv),
                                      HAS_GATE=has_gate, STORE_G=store_g, PREC=prec, num_warps=4)
        ctx.save_for_backward(kh, p_mat, s_diag, v, c, out, lse, gbuf if store_g else None)
        ctx.prec = prec
        return out

    @staticmethod
    def backward(ctx, d_out):
        kh, p_mat, s_diag, v, c, out, lse, gbuf = ctx.saved_tensors
        bh, n, chunk, d = kh.shape
        dv = v.shape[-1]
        d_out = d_out.contiguous().float()
        delta = (d_out * out).sum(-1).reshape(bh, n * chunk)
        has_gate = c is not None
        d_qh = torch.empty_like(kh)
        d_kh = torch.zeros_like(kh)
        d_p = torch.zeros_like(p_mat)
        d_sd = torch.empty_like(s_diag)
        d_v = torch.zeros_like(v)
        d_c = torch.zeros_like(c) if has_gate else None
        dummy = kh
        with on_device(kh):
            _path_bwd_kernel[(n, bh)](kh, p_mat, s_diag, v, c if has_gate else dummy, d_out, lse,
                                      delta, gbuf if gbuf is not None else dummy,
                                      d_qh, d_kh, d_p, d_sd, d_v, d_c if has_gate else dummy,
                                      n, d, dv, C=chunk, BD=pow2_block(d), BV=pow2_block(dv),
                                      HAS_GATE=has_gate, PREC=ctx.prec, num_warps=4)
        return d_qh, d_kh, d_p, d_sd, d_v, d_c, None


def path_attention_triton(q, k, v, w, beta, log_f=None, scale=None, chunk_size: int = 64):
    """PaTH attention with the Triton core; ``[B, T, H, D]`` in and out.

    ``chunk_size`` must be a power of two >= 16 (it is the kernels' block size); short
    sequences use the smallest such chunk that covers them.
    """
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    in_dtype = q.dtype
    low = in_dtype in (torch.float16, torch.bfloat16)
    q, k, v, w, beta = (x.float() for x in (q, k, v, w, beta))
    log_f = log_f.float() if log_f is not None else None
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
    chunk = min(chunk_size, pow2_block(t))
    n = math.ceil(t / chunk)
    qh, kh, p_mat, s_diag, c = path_prep(q, k, w, beta, log_f, scale, chunk)
    out = _PathCoreTriton.apply(qh, kh, p_mat, s_diag, to_chunks(v, n, chunk), c,
                                dot_precision(low))
    return from_chunks(out, b, t, h).to(in_dtype)
