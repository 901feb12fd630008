"""PaTH attention on CUDA: Triton kernels for the inter-chunk part, forward and backward.

Notation as in :mod:`kernels.path.fast` (one batch-head, chunk size ``C``, ``N`` chunks, head
dim ``D``): ``qh_a`` / ``kh_b`` are the queries / keys of chunk ``a`` / ``b`` carried to
their chunk boundaries, and the transition of chunk ``b`` is ``P_b = I - W_b^T A_b W_b``
(``W_b`` its ``[C, D]`` rows ``w_t``, ``A_b`` its ``C x C`` UT matrix).  The logits of
query chunk ``a`` against key chunk ``b < a`` are ``g_b^(a) kh_b^T`` with
``g_b^(a) = qh_a P_{a-1} ... P_{b+1}``.

**What runs where.**

* the intra-chunk preparation (per chunk the UT matrix ``A`` from one ``C x C``
  unit-triangular solve, ``qh, kh``, ``W2 = A W`` and the intra-chunk logits; the ``D x D``
  matrix ``P_b`` is never formed), ``O(T C D)`` work:

  - forward: Triton (:mod:`kernels.path.triton_prep`, one program per chunk, fp32);
  - backward: recomputed by the torch version (:func:`kernels.path.wy_prep.wy_prep`) under
    autograd, which differentiates the batched matmuls and the triangular solve; a
    hand-written Triton backward for it would be a second, larger kernel for a small share
    of the work, so it stays in torch.
* Triton, forward (``_path_fwd``, one program per (query chunk ``a``, batch-head)): a
  FlashAttention-style online softmax over key chunks ``a, a-1, ..., 0``; the query block
  moves one chunk left by the low-rank update ``g <- g - (g W_b^T) W2_b`` (two ``tl.dot``
  of ``[C, D] x [D, C]`` and ``[C, C] x [C, D]``, instead of a ``D x D`` product).
* Triton, backward, deterministic (no atomics), recomputing instead of loading saved ``g``:

  - ``_path_bwd_dq`` (one program per query chunk ``a``): walks down recomputing every
    ``g_b^(a)`` into a transient scratch ``G``, then walks up with the Horner accumulator
    ``dg <- dg P_b^T + dS_ab kh_b`` (``dg P_b^T = dg - (dg W2_b^T) W_b``), writing the
    accumulator that enters chunk ``b`` (``lambda_b^(a)``, the gradient of ``g_{b-1}^(a)``)
    into a second scratch ``L``.  Ends with ``dqh_a = dg`` and the gate's row term.
  - ``_path_bwd_dk`` (one program per key chunk ``b``, launched twice): ``PART=0`` does the
    diagonal block, then for ``a = b+1 .. N-1`` in order reads ``G[a, b]`` and sums ``dv_b``,
    ``dkh_b`` and the gate's column term; ``PART=1`` reads ``G[a, b]`` and ``L[a, b]`` and sums
    the low-rank projections of ``dP_b = sum_a g_b^(a)T lambda_b^(a)``: ``W_b dP_b`` and
    ``W2_b dP_b^T`` (``[C, D]``), giving ``dW2_b = -W_b dP_b`` and ``dW_b = -W2_b dP_b^T``
    (the rest, through ``A`` to ``w`` and ``beta``, by torch autograd of the preparation).
    Two launches so that each program holds two ``[C, D]`` fp32 accumulators, not four.

  Every sum runs in a fixed order inside one program and every output element is written
  by exactly one program: the backward is bit-reproducible (the tests check it).

  The preparation is recomputed in the backward (activation checkpointing of the cheap
  part), so the forward saves only its inputs, its output and the row log-sum-exp.  (The
  chunked ``q, k, w, v`` copies and the preparation's outputs live only during the forward.)

**Memory** (``B`` batch, ``H`` heads, ``T`` positions, ``e`` bytes per input element,
``f`` = 1 with ``log_f`` else 0, ``C`` the backward chunk, ``N = ceil(T / C)``):

* saved by the forward for the backward: ``B H T ((5 D + 1 + f) e + 4)`` bytes --
  ``q, k, v, w`` (``4 D``), ``beta`` (1), ``log_f`` (``f``), the output (``D``) and the fp32
  row log-sum-exp (4 bytes).  Linear in ``T``; ``O(T D)`` per head.
* transient in the backward: ``G`` and ``L`` hold ``N (N - 1) / 2`` blocks of ``[C, D]`` each
  per batch-head, ``N (N - 1) C D e`` bytes per batch-head (``e`` = 2 for fp16/bf16, 4 for
  fp32), plus the recomputed preparation (``O(T C)`` per head).  Batch-heads are processed
  in groups so that the scratch stays under :data:`SCRATCH_BYTES` (1 GiB by default; one
  batch-head at a time is the floor).  Freed when the backward returns.

**Precision.**  fp16/bf16 inputs: ``qh, kh, W, W2, v`` and the scratch are stored in the
input dtype and every ``tl.dot`` takes fp16/bf16 operands with fp32 accumulation (tensor
cores); the running query block ``g``, the softmax state, ``acc`` and every gradient
accumulator are fp32.  fp32 inputs: everything fp32 with IEEE-fp32 ``tl.dot`` (TF32 only if
``torch.backends.cuda.matmul.allow_tf32`` is set).  The preparation computes in fp32 (its
Triton forward uses TF32 dots for fp16/bf16 inputs, IEEE for fp32; the backward's torch
recomputation is plain fp32), and its outputs are rounded to the input dtype for the core.

**Configs.**  The tile is the chunk: ``C`` and ``num_warps`` per kernel come from ``_TABLE``
per (fp16/bf16 or fp32, head dim padded to a power of two), chosen so that every launch
compiles for sm80 and sm90 within the shared-memory limit and without register spills
(``python -m kernels.compile_targets --ops path``).  Forward and backward chunks are chosen
separately (the forward saves nothing chunk-shaped): fp16/bf16 forward 64/64/32/32 and
backward 64/32/32/32 for head dims 16/32/64/128; fp32 forward 32/32/16/16 and backward
32/32/16/16.  A smaller user ``chunk_size`` or a short sequence only lowers them.  One config
per target (``tuned`` is kept so that a GPU run could add candidates); ``num_stages=1``.
:func:`compile_launches` lists the five launches (prep, forward, dq, dk, dW).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.chunking import from_chunks, to_chunks
from kernels.path.triton_prep import prep_launches, triton_prep
from kernels.path.wy_prep import wy_prep
from kernels.triton_utils import (KernelLaunch, check_head_dim, dot_precision, launches_for, on_device,
                                  pow2_block, tuned)

__all__ = ["HEAD_DIMS", "DTYPES", "SCRATCH_BYTES", "compile_launches", "path_attention_triton",
           "saved_bytes"]

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = ("bf16", "fp16", "fp32")
SCRATCH_BYTES = 1 << 30  # cap on the backward's transient G/L scratch (module attribute, may be changed)


# -- launch configs ---------------------------------------------------------------------------------

def _low(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)


# Per (low precision?, padded head dim): the forward chunk and warps, the backward chunk, and
# the warps of dq / dk (PART 0) / dW (PART 1).  Chosen so that every launch compiles for sm80
# and sm90 without spills (see ``python -m kernels.compile_targets --ops path``, which compiles
# the 16-byte-aligned specialization a real launch gets): the big fp32 tiles and D = 128 need
# small chunks, and ptxas spills a few bytes of dW at some warp counts (4 warps at D = 32, 8 at 64).
_TABLE = {
    (True, 16): dict(fwd=(64, 4), bwd=64, dq=4, dk=8, dw=8),
    (True, 32): dict(fwd=(64, 4), bwd=32, dq=4, dk=4, dw=8),
    (True, 64): dict(fwd=(32, 8), bwd=32, dq=8, dk=8, dw=4),
    (True, 128): dict(fwd=(32, 8), bwd=32, dq=8, dk=8, dw=8),
    (False, 16): dict(fwd=(32, 8), bwd=32, dq=8, dk=8, dw=8),
    (False, 32): dict(fwd=(32, 8), bwd=32, dq=4, dk=8, dw=8),
    (False, 64): dict(fwd=(16, 8), bwd=16, dq=4, dk=8, dw=8),
    (False, 128): dict(fwd=(16, 8), bwd=16, dq=8, dk=8, dw=8),
}


def _entry(dtype: torch.dtype, bd: int) -> dict:
    return _TABLE[(_low(dtype), max(16, bd))]


def chunk_sizes(dtype: torch.dtype, bd: int) -> tuple[int, int]:
    """Largest ``(forward, backward)`` chunk for a dtype and padded head dim (a user's
    ``chunk_size`` and short sequences can only make them smaller)."""
    e = _entry(dtype, bd)
    return e["fwd"][0], e["bwd"]


def _fwd_configs(cc, args):
    e = _entry(args["qh"].dtype, args["BD"])
    return [triton.Config({}, num_warps=e["fwd"][1], num_stages=1)]


def _dq_configs(cc, args):
    e = _entry(args["qh"].dtype, args["BD"])
    return [triton.Config({}, num_warps=e["dq"], num_stages=1)]


def _dk_configs(cc, args):
    e = _entry(args["kh"].dtype, args["BD"])
    return [triton.Config({}, num_warps=e["dw" if args["PART"] else "dk"], num_stages=1)]


_INTERPRET = triton.Config({}, num_warps=4, num_stages=1)


# -- kernels ----------------------------------------------------------------------------------------

@tuned(_fwd_configs, interpret=_INTERPRET, key=["C", "BD"])
@triton.jit
def _path_fwd(qh, kh, w, w2, sd, v, c, o, lse, N, D: tl.constexpr,
              C: tl.constexpr, BD: tl.constexpr, HAS_GATE: tl.constexpr, PREC: tl.constexpr):
    a = tl.num_programs(0) - 1 - tl.program_id(0)  # longest rows first
    bh = tl.program_id(1).to(tl.int64)
    ty = qh.dtype.element_ty
    qh = tl.multiple_of(qh, 16)
    kh = tl.multiple_of(kh, 16)
    w = tl.multiple_of(w, 16)
    w2 = tl.multiple_of(w2, 16)
    v = tl.multiple_of(v, 16)
    o = tl.multiple_of(o, 16)
    rc = tl.arange(0, C)
    rd = tl.arange(0, BD)
    cd = rc[:, None] * D + rd[None, :]
    m_cd = (rd < D)[None, :]
    base = bh * N * C * D

    g = tl.load(qh + base + a * C * D + cd, mask=m_cd, other=0.0).to(tl.float32)
    s = tl.load(sd + (bh * N + a) * C * C + rc[:, None] * C + rc[None, :])
    s = tl.where(rc[:, None] >= rc[None, :], s, float("-inf"))
    m_i = tl.max(s, 1)
    p = tl.exp(s - m_i[:, None])
    l_i = tl.sum(p, 1)
    vb = tl.load(v + base + a * C * D + cd, mask=m_cd, other=0.0)
    acc = tl.dot(p.to(ty), vb, input_precision=PREC)
    if HAS_GATE:
        c_row = tl.load(c + (bh * N + a) * C + rc)

    gl = g.to(ty)
    for it in range(0, a):
        b = a - 1 - it
        off = base + b * C * D
        kb = tl.load(kh + off + cd, mask=m_cd, other=0.0)
        s = tl.dot(gl, tl.trans(kb), input_precision=PREC)
        if HAS_GATE:
            s += c_row[:, None] - tl.load(c + (bh * N + b) * C + rc)[None, :]
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        vb = tl.load(v + off + cd, mask=m_cd, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(ty), vb, input_precision=PREC)
        m_i = m_new
        if b > 0:  # g <- g P_b = g - (g W_b^T) W2_b
            wb = tl.load(w + off + cd, mask=m_cd, other=0.0)
            w2b = tl.load(w2 + off + cd, mask=m_cd, other=0.0)
            u = tl.dot(gl, tl.trans(wb), input_precision=PREC)
            g = g - tl.dot(u.to(ty), w2b, input_precision=PREC)
            gl = g.to(ty)

    tl.store(o + base + a * C * D + cd, (acc / l_i[:, None]).to(o.dtype.element_ty), mask=m_cd)
    tl.store(lse + (bh * N + a) * C + rc, m_i + tl.log(l_i))


@tuned(_dq_configs, interpret=_INTERPRET, key=["C", "BD"])
@triton.jit
def _path_bwd_dq(qh, kh, w, w2, v, c, do, lse, delta, gs, ls, dqh, dcr, N, D: tl.constexpr,
                 C: tl.constexpr, BD: tl.constexpr, HAS_GATE: tl.constexpr, PREC: tl.constexpr):
    a = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    ty = qh.dtype.element_ty
    rc = tl.arange(0, C)
    rd = tl.arange(0, BD)
    cd = rc[:, None] * D + rd[None, :]
    m_cd = (rd < D)[None, :]
    base = bh * N * C * D
    pairs = (bh * (N * (N - 1) // 2) + a * (a - 1) // 2) * C * D  # scratch block (a, 0)

    # walk down: G[a, b] = g_b^(a) for b = a-1 .. 0
    g = tl.load(qh + base + a * C * D + cd, mask=m_cd, other=0.0).to(tl.float32)
    gl = g.to(ty)
    for it in range(0, a):
        b = a - 1 - it
        tl.store(gs + pairs + b * C * D + cd, gl, mask=m_cd)
        if b > 0:
            off = base + b * C * D
            wb = tl.load(w + off + cd, mask=m_cd, other=0.0)
            w2b = tl.load(w2 + off + cd, mask=m_cd, other=0.0)
            u = tl.dot(gl, tl.trans(wb), input_precision=PREC)
            g = g - tl.dot(u.to(ty), w2b, input_precision=PREC)
            gl = g.to(ty)
    tl.debug_barrier()

    # walk up: dg = gradient of g_b^(a); L[a, b] = gradient of g_{b-1}^(a) (b >= 1)
    do_a = tl.load(do + base + a * C * D + cd, mask=m_cd, other=0.0)
    lse_a = tl.load(lse + (bh * N + a) * C + rc)
    delta_a = tl.load(delta + (bh * N + a) * C + rc)
    if HAS_GATE:
        c_row = tl.load(c + (bh * N + a) * C + rc)
    dc_row = tl.zeros([C], dtype=tl.float32)
    dg = tl.zeros([C, BD], dtype=tl.float32)
    for b in range(0, a):
        off = base + b * C * D
        if b > 0:  # dg <- dg P_b^T = dg - (dg W2_b^T) W_b
            dgl = dg.to(ty)
            tl.store(ls + pairs + b * C * D + cd, dgl, mask=m_cd)
            wb = tl.load(w + off + cd, mask=m_cd, other=0.0)
            w2b = tl.load(w2 + off + cd, mask=m_cd, other=0.0)
            z = tl.dot(dgl, tl.trans(w2b), input_precision=PREC)
            dg = dg - tl.dot(z.to(ty), wb, input_precision=PREC)
        gb = tl.load(gs + pairs + b * C * D + cd, mask=m_cd, other=0.0)
        kb = tl.load(kh + off + cd, mask=m_cd, other=0.0)
        s = tl.dot(gb, tl.trans(kb), input_precision=PREC)
        if HAS_GATE:
            s += c_row[:, None] - tl.load(c + (bh * N + b) * C + rc)[None, :]
        p = tl.exp(s - lse_a[:, None])
        vb = tl.load(v + off + cd, mask=m_cd, other=0.0)
        ds = p * (tl.dot(do_a, tl.trans(vb), input_precision=PREC) - delta_a[:, None])
        dg += tl.dot(ds.to(ty), kb, input_precision=PREC)
        dc_row += tl.sum(ds, 1)

    tl.store(dqh + base + a * C * D + cd, dg, mask=m_cd)
    if HAS_GATE:
        tl.store(dcr + (bh * N + a) * C + rc, dc_row)


@tuned(_dk_configs, interpret=_INTERPRET, key=["C", "BD", "PART"])
@triton.jit
def _path_bwd_dk(kh, w, w2, sd, v, c, do, lse, delta, gs, ls, dkh, dw, dw2, dsd, dv, dcc, N, D: tl.constexpr,
                 C: tl.constexpr, BD: tl.constexpr, HAS_GATE: tl.constexpr, PREC: tl.constexpr,
                 PART: tl.constexpr):
    """One program per key chunk ``b``.  ``PART == 0``: ``dv_b``, ``dkh_b``, the diagonal
    block's ``dS`` and the gate's column term; ``PART == 1``: ``dW_b`` and ``dW2_b`` (two
    launches so that each holds two ``[C, D]`` accumulators, not four)."""
    b = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    ty = kh.dtype.element_ty
    rc = tl.arange(0, C)
    rd = tl.arange(0, BD)
    cd = rc[:, None] * D + rd[None, :]
    m_cd = (rd < D)[None, :]
    base = bh * N * C * D
    off = base + b * C * D
    if PART == 0:
        kb = tl.load(kh + off + cd, mask=m_cd, other=0.0)
        vb = tl.load(v + off + cd, mask=m_cd, other=0.0)
        # diagonal block: its logits came from the preparation
        do_b = tl.load(do + off + cd, mask=m_cd, other=0.0)
        lse_b = tl.load(lse + (bh * N + b) * C + rc)
        delta_b = tl.load(delta + (bh * N + b) * C + rc)
        s = tl.load(sd + (bh * N + b) * C * C + rc[:, None] * C + rc[None, :])
        p = tl.where(rc[:, None] >= rc[None, :], tl.exp(s - lse_b[:, None]), 0.0)
        ds = p * (tl.dot(do_b, tl.trans(vb), input_precision=PREC) - delta_b[:, None])
        tl.store(dsd + (bh * N + b) * C * C + rc[:, None] * C + rc[None, :], ds)
        d_v = tl.dot(tl.trans(p.to(ty)), do_b, input_precision=PREC)
        d_k = tl.zeros([C, BD], dtype=tl.float32)
        dc_col = tl.zeros([C], dtype=tl.float32)
        if HAS_GATE:
            c_col = tl.load(c + (bh * N + b) * C + rc)
        for a in range(b + 1, N):
            pair = (bh * (N * (N - 1) // 2) + a * (a - 1) // 2 + b) * C * D
            g = tl.load(gs + pair + cd, mask=m_cd, other=0.0)
            do_a = tl.load(do + base + a * C * D + cd, mask=m_cd, other=0.0)
            lse_a = tl.load(lse + (bh * N + a) * C + rc)
            delta_a = tl.load(delta + (bh * N + a) * C + rc)
            s = tl.dot(g, tl.trans(kb), input_precision=PREC)
            if HAS_GATE:
                s += tl.load(c + (bh * N + a) * C + rc)[:, None] - c_col[None, :]
            p = tl.exp(s - lse_a[:, None])
            d_v += tl.dot(tl.trans(p.to(ty)), do_a, input_precision=PREC)
            ds = p * (tl.dot(do_a, tl.trans(vb), input_precision=PREC) - delta_a[:, None])
            d_k += tl.dot(tl.trans(ds.to(ty)), g, input_precision=PREC)
            dc_col -= tl.sum(ds, 0)
        tl.store(dkh + off + cd, d_k, mask=m_cd)
        tl.store(dv + off + cd, d_v, mask=m_cd)
        if HAS_GATE:
            tl.store(dcc + (bh * N + b) * C + rc, dc_col)
    else:
        wb = tl.load(w + off + cd, mask=m_cd, other=0.0)
        w2b = tl.load(w2 + off + cd, mask=m_cd, other=0.0)
        wdp = tl.zeros([C, BD], dtype=tl.float32)    # W_b dP_b
        w2dpt = tl.zeros([C, BD], dtype=tl.float32)  # W2_b dP_b^T
        lo = tl.maximum(b + 1, N * (b == 0))  # P_0 is never applied: nothing to sum for b = 0
        for a in range(lo, N):
            pair = (bh * (N * (N - 1) // 2) + a * (a - 1) // 2 + b) * C * D
            g = tl.load(gs + pair + cd, mask=m_cd, other=0.0)
            lam = tl.load(ls + pair + cd, mask=m_cd, other=0.0)
            u = tl.dot(g, tl.trans(wb), input_precision=PREC)      # g W^T
            wdp += tl.dot(tl.trans(u.to(ty)), lam, input_precision=PREC)
            z = tl.dot(lam, tl.trans(w2b), input_precision=PREC)   # lambda W2^T
            w2dpt += tl.dot(tl.trans(z.to(ty)), g, input_precision=PREC)
        tl.store(dw + off + cd, -w2dpt, mask=m_cd)
        tl.store(dw2 + off + cd, -wdp, mask=m_cd)


# -- launches ---------------------------------------------------------------------------------------

def _forward_core(qh, kh, wc, w2, sd, vc, c, prec):
    bh, n, chunk, d = qh.shape
    out = torch.empty_like(qh)
    lse = torch.empty(bh, n * chunk, device=qh.device, dtype=torch.float32)
    has_gate = c is not None
    with on_device(qh):
        _path_fwd[(n, bh)](qh, kh, wc, w2, sd, vc, c if has_gate else lse, out, lse, n, D=d,
                           C=chunk, BD=pow2_block(d), HAS_GATE=has_gate, PREC=prec)
    return out, lse


def scratch_bytes_per_head(n: int, chunk: int, d: int, dtype: torch.dtype) -> int:
    """Bytes of the backward's ``G`` + ``L`` scratch for one batch-head."""
    return n * (n - 1) * chunk * d * torch.empty(0, dtype=dtype).element_size()


def _backward_core(qh, kh, wc, w2, sd, vc, c, do, lse, delta, prec):
    bh, n, chunk, d = qh.shape
    f32 = dict(device=qh.device, dtype=torch.float32)
    has_gate = c is not None
    d_qh, d_kh, d_w, d_w2, d_v = (torch.empty(bh, n, chunk, d, **f32) for _ in range(5))
    d_sd = torch.empty(bh, n, chunk, chunk, **f32)
    d_cr = torch.zeros(bh, n * chunk, **f32) if has_gate else None
    d_cc = torch.zeros(bh, n * chunk, **f32) if has_gate else None
    per_head = scratch_bytes_per_head(n, chunk, d, qh.dtype)
    group = bh if per_head == 0 else max(1, min(bh, SCRATCH_BYTES // per_head))
    pairs = max(1, n * (n - 1) // 2)
    gs = torch.empty(group, pairs, chunk, d, device=qh.device, dtype=qh.dtype)
    ls = torch.empty_like(gs)
    bd = pow2_block(d)
    with on_device(qh):
        for h0 in range(0, bh, group):
            sl = slice(h0, min(bh, h0 + group))
            m = sl.stop - sl.start
            cg = c[sl] if has_gate else lse[sl]
            _path_bwd_dq[(n, m)](qh[sl], kh[sl], wc[sl], w2[sl], vc[sl], cg, do[sl], lse[sl], delta[sl],
                                 gs, ls, d_qh[sl], d_cr[sl] if has_gate else lse[sl], n, D=d,
                                 C=chunk, BD=bd, HAS_GATE=has_gate, PREC=prec)
            for part in (0, 1):
                _path_bwd_dk[(n, m)](kh[sl], wc[sl], w2[sl], sd[sl], vc[sl], cg, do[sl], lse[sl], delta[sl],
                                     gs, ls, d_kh[sl], d_w[sl], d_w2[sl], d_sd[sl], d_v[sl],
                                     d_cc[sl] if has_gate else lse[sl], n, D=d,
                                     C=chunk, BD=bd, HAS_GATE=has_gate, PREC=prec, PART=part)
    d_c = d_cr + d_cc if has_gate else None
    return d_qh, d_kh, d_w, d_w2, d_sd, d_v, d_c


def _chunk(t: int, chunk_size: int, cap: int) -> int:
    return max(16, min(chunk_size, cap, pow2_block(t)))


def _prep(q, k, w, beta, log_f, scale, chunk):
    f = [x.float() for x in (q, k, w, beta)]
    return wy_prep(*f, log_f.float() if log_f is not None else None, scale, chunk)


class _PathTriton(torch.autograd.Function):
    """Whole PaTH op: the forward saves only ``q, k, v, w, beta, log_f``, the output and the
    row log-sum-exp; the backward recomputes the preparation (see the module docstring)."""

    @staticmethod
    def forward(ctx, q, k, v, w, beta, log_f, scale, chunk_f, chunk_b):
        b, t, h, d = q.shape
        ty = q.dtype
        prec = dot_precision(_low(ty))
        n = math.ceil(t / chunk_f)
        with torch.no_grad():
            qc, kc, wc, vc = (to_chunks(x, n, chunk_f) for x in (q, k, w, v))
            c = None
            if log_f is not None:
                c = to_chunks(log_f.float(), n, chunk_f).reshape(b * h, n * chunk_f).cumsum(-1)
            qh, kh, w2, sd = triton_prep(qc, kc, wc, to_chunks(beta, n, chunk_f), c, scale)
            del qc, kc
            out, lse = _forward_core(qh, kh, wc, w2, sd, vc, c, prec)
            y = from_chunks(out, b, t, h).contiguous()
            lse = lse[:, :t].contiguous()
        ctx.save_for_backward(q, k, v, w, beta, log_f, y, lse)
        ctx.scale, ctx.chunk, ctx.prec = scale, chunk_b, prec
        return y

    @staticmethod
    def backward(ctx, dy):
        q, k, v, w, beta, log_f, y, lse = ctx.saved_tensors
        b, t, h, d = q.shape
        ty = q.dtype
        chunk = ctx.chunk
        n = math.ceil(t / chunk)
        pad = n * chunk - t
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_() for x in (q, k, w, beta)]
            gate_leaf = log_f.detach().requires_grad_() if log_f is not None else None
            qh, kh, wc, w2, sd, c = _prep(*leaves, gate_leaf, ctx.scale, chunk)
        vc = to_chunks(v, n, chunk)
        do = to_chunks(dy.to(ty), n, chunk)
        delta = (dy.float() * y.float()).sum(-1)                          # [B, T, H]
        delta = to_chunks(delta, n, chunk).reshape(b * h, n * chunk)
        lse_p = torch.nn.functional.pad(lse, (0, pad), value=float("inf"))  # padded rows: p = 0
        grads = _backward_core(*(x.detach().to(ty).contiguous() for x in (qh, kh, wc, w2)),
                               sd.detach().contiguous(), vc, c.detach() if c is not None else None,
                               do, lse_p, delta, ctx.prec)
        d_qh, d_kh, d_w, d_w2, d_sd, d_v, d_c = grads
        outs, gouts = [qh, kh, wc, w2, sd], [d_qh, d_kh, d_w, d_w2, d_sd]
        if c is not None:
            outs.append(c)
            gouts.append(d_c)
        inputs = leaves + ([gate_leaf] if gate_leaf is not None else [])
        g = torch.autograd.grad(outs, inputs, gouts, allow_unused=True)
        dq, dk, dw, dbeta = (x.to(ty) if x is not None else None for x in g[:4])
        dlog_f = g[4].to(log_f.dtype) if log_f is not None else None
        dv = from_chunks(d_v, b, t, h).to(v.dtype)
        return dq, dk, dv, dw, dbeta, dlog_f, None, None, None


def saved_bytes(b: int, t: int, h: int, d: int, dtype: torch.dtype, fox: bool) -> int:
    """Bytes the forward saves for the backward: ``B H T ((5 D + 1 + f) e + 4)``."""
    e = torch.empty(0, dtype=dtype).element_size()
    return b * h * t * ((5 * d + 1 + int(fox)) * e + 4)


def path_attention_triton(q, k, v, w, beta, log_f=None, scale=None, chunk_size: int = 64):
    """PaTH attention with the Triton core; ``[B, T, H, D]`` in and out (dtype of ``q``).

    ``chunk_size`` (a power of two >= 16) caps the chunk; the kernels use
    ``min(chunk_size, cap(dtype, head dim), next_pow2(T))``, separately for forward and backward
    (see :func:`chunk_sizes`).  The result does not depend on it beyond rounding.
    """
    d = q.shape[-1]
    check_head_dim("path_attention", d, HEAD_DIMS)
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
    t = q.shape[1]
    scale = d ** -0.5 if scale is None else scale
    cap_f, cap_b = chunk_sizes(q.dtype, pow2_block(d))
    return _PathTriton.apply(q, k, v, w, beta, log_f, scale, _chunk(t, chunk_size, cap_f),
                             _chunk(t, chunk_size, cap_b))


# -- offline compile list ---------------------------------------------------------------------------

def compile_launches(cc: int, dtype: torch.dtype, head_dim: int) -> list[KernelLaunch]:
    """Every kernel launch on target ``cc`` for inputs of ``dtype`` and ``head_dim`` at the
    default ``chunk_size`` and long sequences."""
    bd = pow2_block(head_dim)
    chunk_f, chunk_b = chunk_sizes(dtype, bd)
    low = _low(dtype)
    prec = dot_precision(low)
    f32 = torch.float32
    out = prep_launches(cc, dtype, head_dim, chunk_f)
    for has_gate in (True,):  # the gate only adds loads; compile the larger variant
        meta = {"dtype": dtype}
        for name, fn, cfg, chunk, ptrs in (
            ("path_fwd", _path_fwd, _fwd_configs, chunk_f,
             dict(qh=dtype, kh=dtype, w=dtype, w2=dtype, sd=f32, v=dtype, c=f32, o=dtype, lse=f32)),
            ("path_bwd_dq", _path_bwd_dq, _dq_configs, chunk_b,
             dict(qh=dtype, kh=dtype, w=dtype, w2=dtype, v=dtype, c=f32, do=dtype, lse=f32, delta=f32,
                  gs=dtype, ls=dtype, dqh=f32, dcr=f32)),
            ("path_bwd_dk", _path_bwd_dk, _dk_configs, chunk_b,
             dict(kh=dtype, w=dtype, w2=dtype, sd=f32, v=dtype, c=f32, do=dtype, lse=f32, delta=f32,
                  gs=dtype, ls=dtype, dkh=f32, dw=f32, dw2=f32, dsd=f32, dv=f32, dcc=f32)),
        ):
            for part in ((0, 1) if fn is _path_bwd_dk else (None,)):
                const = dict(D=head_dim, C=chunk, BD=bd, HAS_GATE=has_gate, PREC=prec)
                if part is not None:
                    const["PART"] = part
                args = {**{k: torch.empty(0, dtype=v, device="meta") for k, v in ptrs.items()}, **const, **meta}
                out += launches_for(name if part != 1 else "path_bwd_dw", fn, cfg, cc, args,
                                    pointers=ptrs, constexprs=const)
    return out
