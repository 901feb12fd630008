"""FoX on CUDA: a FlashAttention-2-style Triton kernel (with ``log_f=None`` plain softmax attention,
the Triton path of :mod:`kernels.softmax_attention`).

Forward: one program per (query block, batch*head) streams key blocks, keeps a running
max / sum in fp32 and adds the forget-gate bias ``c_i - c_j`` (``c = cumsum(log_f)``) to
each logit tile; it writes the output and the row log-sum-exp (base 2) for the backward.
Backward: two kernels that recompute the probabilities from the saved log-sum-exp, one
over key blocks (``dk``, ``dv`` and the gate gradient) and one over query blocks
(``dq``), so no atomics are needed.

Scheduling: the grid is ``(batch*head, blocks)`` with the block index on the slow axis, so
blocks of equal work launch together; the forward and the dq kernel walk their query blocks
in reverse (program 0 takes the *last* query block, whose rows see the most keys, so the
longest programs start first and the short ones fill the tail), and the dk/dv kernel takes
the *first* key block first for the same reason (it is read by every later query).

Gate: the host sums ``c`` in float64, centres it, multiplies it by ``log2(e)`` (the kernels
work in base 2, ``exp2``) and passes it as ``hi = fp32(c log2 e)`` plus the residue ``lo``,
each a contiguous ``[B*H, T]`` row per batch-head; the kernels add ``(hi_i - hi_j) - lo_j``
to the base-2 logits without a multiply (``lo_i`` is a per-row constant, which softmax
ignores).  Forming ``hi_i - hi_j`` first is exact for nearby positions, so the bias is
accurate to ``ulp(|c_i - c_j|)`` rather than ``ulp(|c|)``, which grows with T.

Gate gradient: the logit ``l_ij`` depends on ``c`` through ``c_i - c_j``, so
``dL/dc_m = sum_j dS_mj - sum_i dS_im``.  Each row of ``dS = P * (dP - delta)`` sums to
zero (softmax is shift invariant), so only the column sums remain; ``dlog_f`` is their
reversed cumulative sum, done in torch.

Precision: fp16/bf16 inputs feed ``tl.dot`` as fp16/bf16 (the probabilities and ``dS``
are cast to the input dtype) with fp32 accumulation on tensor cores; fp32 inputs use
3xTF32 dots (fp32-level accuracy).  Softmax statistics, the gate and all accumulators are
fp32.  Plain ``tl.dot`` only (no Hopper-only features), so one source serves sm80 and sm90.

Configs (:func:`kernels.triton_utils.tuned`): per target (sm80 / sm90), input width
(16-bit / fp32) and padded head dim (16, 32, 64, 128) a short list of
``(BLOCK_M, BLOCK_N, warps, stages)`` candidates (a few differ without the gate),
autotuned on CUDA per ``(T, head dim, gate, dtype)``; every one is compiled offline and fits its target's shared memory without
register spills (``python -m kernels.compile_targets --ops fox``).  Constraints kept:
forward and dq need ``BLOCK_M % BLOCK_N == 0``, dk/dv needs ``BLOCK_N % BLOCK_M == 0``
(so only the diagonal block needs the causal mask).  Under ``TRITON_INTERPRET=1`` one small
config (16/32 blocks, so tests cross block edges) is used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_utils import (KernelLaunch, check_head_dim, launches_for, on_device, pow2_block,
                                  tuned)

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = ("bf16", "fp16", "fp32")

LOG2E = 1.4426950408889634


# --------------------------------------------------------------------------- configs
def _cfg(m: int, n: int, w: int, s: int) -> triton.Config:
    return triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)


# (BLOCK_M, BLOCK_N, warps, stages) per (target, 16-bit?, padded head dim), chosen from
# offline compiles (every one without spills): on sm80 (mma.sync, operands in registers)
# BLOCK_M = 128 spills at head dim 128, so 64-row tiles with 8 warps; sm90 keeps
# FlashAttention-2's 128 x 64 with 8 warps.  fp32 (3xTF32 dots split every operand in two)
# needs small tiles, 16 x 16 at head dim 128.  Head dim 256 is not offered: only 16-32 row
# tiles compile without spills there (too little work per program to be worth offering).
_SMALL = (16, 32, 64)


def _table(rows):
    out = {}
    for (cc, half, dims), cands in rows.items():
        for d in (dims if isinstance(dims, tuple) else (dims,)):
            out[(cc, half, d)] = cands
    return out


_FWD = _table({
    (90, True, _SMALL): [(128, 64, 8, 2), (128, 128, 8, 2)],
    (90, True, 128): [(128, 64, 8, 2), (128, 64, 8, 3)],
    (80, True, 16): [(128, 64, 4, 3), (128, 128, 8, 2)],
    (80, True, (32, 64)): [(128, 64, 8, 2), (128, 32, 8, 2)],
    (80, True, 128): [(64, 64, 8, 2), (32, 16, 4, 2)],
    (90, False, (16, 64)): [(32, 32, 8, 2), (32, 16, 4, 2)],
    (90, False, 32): [(32, 32, 8, 2), (64, 16, 8, 2)],
    (80, False, (16, 32, 64)): [(32, 32, 8, 2), (32, 16, 4, 2)],
    (90, False, 128): [(16, 16, 4, 2), (16, 16, 4, 1)],
    (80, False, 128): [(16, 16, 4, 2), (16, 16, 4, 1)],
})
# dk/dv: BLOCK_N % BLOCK_M == 0
_DKDV = _table({
    (90, True, _SMALL): [(32, 128, 8, 2), (32, 64, 4, 2)],
    (90, True, 128): [(32, 32, 4, 2), (16, 32, 4, 2)],
    (80, True, (16, 64)): [(32, 128, 8, 2), (32, 64, 8, 2)],
    (80, True, 32): [(64, 128, 8, 2), (32, 64, 8, 2)],
    (80, True, 128): [(32, 64, 8, 2), (16, 32, 4, 2)],
    (90, False, 16): [(32, 32, 8, 2), (16, 32, 8, 2)],
    (80, False, 16): [(32, 32, 8, 2), (32, 32, 4, 2)],
    (90, False, 32): [(16, 32, 8, 2), (16, 32, 4, 2)],
    (80, False, 32): [(16, 32, 8, 2), (16, 32, 4, 2)],
    (90, False, 64): [(32, 32, 8, 2), (16, 32, 8, 2)],
    (80, False, 64): [(32, 32, 8, 2), (32, 32, 4, 2)],
    (90, False, 128): [(16, 16, 4, 2), (16, 16, 4, 1)],
    (80, False, 128): [(16, 16, 4, 1), (16, 16, 8, 1)],
})
# dq: BLOCK_M % BLOCK_N == 0
_DQ = _table({
    (90, True, _SMALL): [(128, 32, 8, 2), (64, 32, 4, 2)],
    (90, True, 128): [(128, 32, 8, 2), (32, 32, 4, 2)],
    (80, True, _SMALL): [(128, 32, 8, 2), (64, 32, 4, 2)],
    (80, True, 128): [(64, 64, 8, 2), (32, 32, 4, 2)],
    (90, False, 16): [(32, 32, 8, 2), (32, 16, 8, 2)],
    (80, False, 16): [(32, 32, 8, 2), (32, 16, 8, 2)],
    (90, False, 32): [(32, 16, 8, 2), (32, 16, 4, 2)],
    (80, False, 32): [(32, 32, 8, 2), (32, 16, 8, 2)],
    (90, False, 64): [(32, 32, 8, 2), (32, 16, 8, 2)],
    (80, False, 64): [(32, 32, 8, 2), (16, 16, 4, 2)],
    (90, False, 128): [(16, 16, 8, 1), (16, 16, 2, 1)],
    (80, False, 128): [(16, 16, 4, 1)],
})


# without the gate (plain softmax) ptxas allocates differently, and these cases spilled
_NO_GATE = {
    ("dkdv", 80, True, 16): [(32, 128, 4, 2), (32, 64, 8, 2)],
    ("dq", 80, True, 128): [(64, 32, 8, 2), (32, 32, 4, 2)],
    ("dq", 80, False, 128): [(16, 16, 8, 2)],
    ("dq", 90, False, 64): [(32, 32, 8, 2), (16, 16, 4, 2)],
    ("dq", 90, False, 128): [(16, 16, 8, 1)],
}


def _lookup(kernel, table, cc, args):
    key = (cc, args["Q"].dtype != torch.float32, int(args["BLOCK_D"]))
    cands = table[key] if args["HAS_GATE"] else _NO_GATE.get((kernel, *key), table[key])
    return [_cfg(*c) for c in cands]


def _fwd_configs(cc, args):
    return _lookup("fwd", _FWD, cc, args)


def _dkdv_configs(cc, args):
    return _lookup("dkdv", _DKDV, cc, args)


def _dq_configs(cc, args):
    return _lookup("dq", _DQ, cc, args)


_KEY = ["T", "BLOCK_D", "HAS_GATE"]


@triton.jit
def _load_kv(K, V, HI, LO, base, c_base, stride_t, offs_n, offs_d, T, D,
             HAS_GATE: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr):
    """A key/value block and its gate terms; masks only on the diagonal block (keys before
    a query block are all < T) and on padded head dims."""
    ptr = base + offs_n[:, None] * stride_t + offs_d[None, :]
    if MASKED:
        nmask = offs_n < T
        if EVEN_D:
            kv_mask = nmask[:, None]
        else:
            kv_mask = nmask[:, None] & (offs_d[None, :] < D)
        k = tl.load(K + ptr, mask=kv_mask, other=0.0)
        v = tl.load(V + ptr, mask=kv_mask, other=0.0)
    elif EVEN_D:
        k = tl.load(K + ptr)
        v = tl.load(V + ptr)
    else:
        k = tl.load(K + ptr, mask=offs_d[None, :] < D, other=0.0)
        v = tl.load(V + ptr, mask=offs_d[None, :] < D, other=0.0)
    hk = tl.zeros_like(offs_n).to(tl.float32)  # unused without a gate
    lk = hk
    if HAS_GATE:
        if MASKED:
            hk = tl.load(HI + c_base + offs_n, mask=offs_n < T, other=0.0)
            lk = tl.load(LO + c_base + offs_n, mask=offs_n < T, other=0.0)
        else:
            hk = tl.load(HI + c_base + offs_n)
            lk = tl.load(LO + c_base + offs_n)
    return k, v, hk, lk


@triton.jit
def _load_rows(Q, DO, HI, LSE, DELTA, base, c_base, stride_t, offs_m, offs_d, T, D,
               HAS_GATE: tl.constexpr, EVEN_D: tl.constexpr):
    """A query block's q, dO, gate, lse (+inf past T) and delta."""
    mmask = offs_m < T
    ptr = base + offs_m[:, None] * stride_t + offs_d[None, :]
    if EVEN_D:
        m2 = mmask[:, None]
    else:
        m2 = mmask[:, None] & (offs_d[None, :] < D)
    q = tl.load(Q + ptr, mask=m2, other=0.0)
    do = tl.load(DO + ptr, mask=m2, other=0.0)
    lse = tl.load(LSE + c_base + offs_m, mask=mmask, other=float("inf"))
    delta = tl.load(DELTA + c_base + offs_m, mask=mmask, other=0.0)
    hq = tl.zeros_like(offs_m).to(tl.float32)  # unused without a gate
    if HAS_GATE:
        hq = tl.load(HI + c_base + offs_m, mask=mmask, other=0.0)
    return q, do, hq, lse, delta


# --------------------------------------------------------------------------- forward
@triton.jit
def _fwd_tile(acc, m_i, l_i, q, hq, K, V, HI, LO, kv_base, c_base, stride_t,
              offs_m, offs_d, T, D, qk_scale, lo_n, hi_n,
              HAS_GATE: tl.constexpr, MASKED: tl.constexpr, BLOCK_N: tl.constexpr,
              PRECISION: tl.constexpr, EVEN_D: tl.constexpr):
    """Accumulate key blocks ``[lo_n, hi_n)`` into the running (base-2) softmax state."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo_n, hi_n, BLOCK_N):
        offs_n = start_n + offs_n0
        k, v, hk, lk = _load_kv(K, V, HI, LO, kv_base, c_base, stride_t, offs_n, offs_d, T, D,
                                HAS_GATE, MASKED, EVEN_D)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        if HAS_GATE:  # the gate comes pre-scaled by log2(e)
            s += (hq[:, None] - hk[None, :]) - lk[None, :]
        if MASKED:
            s = tl.where((offs_n[None, :] <= offs_m[:, None]) & (offs_n < T)[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@tuned(_fwd_configs, interpret=triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=1, num_stages=1),
       key=_KEY)
@triton.jit
def _fox_fwd_kernel(Q, K, V, HI, LO, O, LSE, stride_b, stride_t, stride_h,
                    H, T, D, qk_scale,
                    HAS_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
                    EVEN_D: tl.constexpr):
    """Q, K, V, O: one contiguous ``[B, T, H, D]`` layout.  HI, LO, LSE: ``[B*H, T]`` rows."""
    pid_bh = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)  # the last (longest) query block first
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    base = b * stride_b + h * stride_h
    c_base = pid_bh.to(tl.int64) * T

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mmask = offs_m < T
    dmask = offs_d[None, :] < D
    q = tl.load(Q + base + offs_m[:, None] * stride_t + offs_d[None, :],
                mask=mmask[:, None] & dmask, other=0.0)
    if HAS_GATE:
        hq = tl.load(HI + c_base + offs_m, mask=mmask, other=0.0)
    else:
        hq = tl.zeros([BLOCK_M], dtype=tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # keys strictly before this query block: no mask needed (BLOCK_M % BLOCK_N == 0)
    acc, m_i, l_i = _fwd_tile(acc, m_i, l_i, q, hq, K, V, HI, LO, base, c_base, stride_t,
                              offs_m, offs_d, T, D, qk_scale, 0, start_m,
                              HAS_GATE, False, BLOCK_N, PRECISION, EVEN_D)
    # the diagonal block: causal and length masks
    acc, m_i, l_i = _fwd_tile(acc, m_i, l_i, q, hq, K, V, HI, LO, base, c_base, stride_t,
                              offs_m, offs_d, T, D, qk_scale, start_m,
                              tl.minimum(start_m + BLOCK_M, T), HAS_GATE, True, BLOCK_N, PRECISION, EVEN_D)
    acc = acc / l_i[:, None]
    tl.store(O + base + offs_m[:, None] * stride_t + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=mmask[:, None] & dmask)
    tl.store(LSE + c_base + offs_m, m_i + tl.log2(l_i), mask=mmask)


# --------------------------------------------------------------------------- backward
@triton.jit
def _bwd_dkdv_tile(dk, dv, dck, k, v, hk, lk, Q, DO, HI, LSE, DELTA, base, c_base, stride_t,
                   offs_n, offs_d, T, D, qk_scale, lo_m, hi_m, HAS_GATE: tl.constexpr,
                   MASKED: tl.constexpr, BLOCK_M: tl.constexpr, PRECISION: tl.constexpr,
                   EVEN_D: tl.constexpr):
    offs_m0 = tl.arange(0, BLOCK_M)
    for start_m in range(lo_m, hi_m, BLOCK_M):
        offs_m = start_m + offs_m0
        # rows past T (ragged tail, every block) get lse = +inf, hence p = 0
        q, do, hq, lse, delta = _load_rows(Q, DO, HI, LSE, DELTA, base, c_base, stride_t,
                                           offs_m, offs_d, T, D, HAS_GATE, EVEN_D)
        sT = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [N, M]
        if HAS_GATE:
            sT += (hq[None, :] - hk[:, None]) - lk[:, None]
        pT = tl.exp2(sT - lse[None, :])
        if MASKED:
            pT = tl.where(offs_m[None, :] >= offs_n[:, None], pT, 0.0)
        dv += tl.dot(pT.to(do.dtype), do, input_precision=PRECISION)
        dpT = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(q.dtype), q, input_precision=PRECISION)
        if HAS_GATE:
            dck -= tl.sum(dsT, 1)
    return dk, dv, dck


@tuned(_dkdv_configs, interpret=triton.Config({"BLOCK_M": 16, "BLOCK_N": 32}, num_warps=1, num_stages=1),
       key=_KEY)
@triton.jit
def _fox_bwd_dkdv_kernel(Q, K, V, HI, LO, DO, LSE, DELTA, DK, DV, DC, stride_b, stride_t, stride_h,
                         H, T, D, qk_scale, sm_scale,
                         HAS_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
                    EVEN_D: tl.constexpr):
    """One program per key block (the first key block, read by the most queries, first):
    dk, dv and the gate's column sums ``-sum_i dS_ij``.  Q, K, V, DO, DK, DV share one
    contiguous ``[B, T, H, D]`` layout; HI, LO, LSE, DELTA, DC are ``[B*H, T]`` rows."""
    pid_bh = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    base = b * stride_b + h * stride_h
    c_base = pid_bh.to(tl.int64) * T

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    nmask = offs_n < T
    dmask = offs_d[None, :] < D
    kv_mask = nmask[:, None] & dmask
    k = tl.load(K + base + offs_n[:, None] * stride_t + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + base + offs_n[:, None] * stride_t + offs_d[None, :], mask=kv_mask, other=0.0)
    if HAS_GATE:
        hk = tl.load(HI + c_base + offs_n, mask=nmask, other=0.0)
        lk = tl.load(LO + c_base + offs_n, mask=nmask, other=0.0)
    else:
        hk = tl.zeros([BLOCK_N], dtype=tl.float32)
        lk = tl.zeros([BLOCK_N], dtype=tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dck = tl.zeros([BLOCK_N], dtype=tl.float32)
    # queries on the diagonal block (causal mask; BLOCK_N % BLOCK_M == 0) ...
    dk, dv, dck = _bwd_dkdv_tile(dk, dv, dck, k, v, hk, lk, Q, DO, HI, LSE, DELTA, base, c_base,
                                 stride_t, offs_n, offs_d, T, D, qk_scale, start_n,
                                 start_n + BLOCK_N, HAS_GATE, True, BLOCK_M, PRECISION, EVEN_D)
    # ... then every later query, unmasked
    dk, dv, dck = _bwd_dkdv_tile(dk, dv, dck, k, v, hk, lk, Q, DO, HI, LSE, DELTA, base, c_base,
                                 stride_t, offs_n, offs_d, T, D, qk_scale, start_n + BLOCK_N, T,
                                 HAS_GATE, False, BLOCK_M, PRECISION, EVEN_D)
    tl.store(DK + base + offs_n[:, None] * stride_t + offs_d[None, :],
             (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + base + offs_n[:, None] * stride_t + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)
    if HAS_GATE:
        tl.store(DC + c_base + offs_n, dck, mask=nmask)


@triton.jit
def _bwd_dq_tile(dq, q, do, hq, lse, delta, K, V, HI, LO, base, c_base, stride_t,
                 offs_m, offs_d, T, D, qk_scale, lo_n, hi_n, HAS_GATE: tl.constexpr,
                 MASKED: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
                 EVEN_D: tl.constexpr):
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo_n, hi_n, BLOCK_N):
        offs_n = start_n + offs_n0
        k, v, hk, lk = _load_kv(K, V, HI, LO, base, c_base, stride_t, offs_n, offs_d, T, D,
                                HAS_GATE, MASKED, EVEN_D)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        if HAS_GATE:
            s += (hq[:, None] - hk[None, :]) - lk[None, :]
        p = tl.exp2(s - lse[:, None])
        if MASKED:
            p = tl.where((offs_n[None, :] <= offs_m[:, None]) & (offs_n < T)[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    return dq


@tuned(_dq_configs, interpret=triton.Config({"BLOCK_M": 32, "BLOCK_N": 16}, num_warps=1, num_stages=1),
       key=_KEY)
@triton.jit
def _fox_bwd_dq_kernel(Q, K, V, HI, LO, DO, LSE, DELTA, DQ, stride_b, stride_t, stride_h,
                       H, T, D, qk_scale, sm_scale,
                       HAS_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
                    EVEN_D: tl.constexpr):
    """One program per query block (the last one first): dq.  Layouts as in the dk/dv kernel."""
    pid_bh = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    base = b * stride_b + h * stride_h
    c_base = pid_bh.to(tl.int64) * T

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mmask = offs_m < T
    dmask = offs_d[None, :] < D
    q = tl.load(Q + base + offs_m[:, None] * stride_t + offs_d[None, :],
                mask=mmask[:, None] & dmask, other=0.0)
    do = tl.load(DO + base + offs_m[:, None] * stride_t + offs_d[None, :],
                 mask=mmask[:, None] & dmask, other=0.0)
    lse = tl.load(LSE + c_base + offs_m, mask=mmask, other=float("inf"))
    delta = tl.load(DELTA + c_base + offs_m, mask=mmask, other=0.0)
    if HAS_GATE:
        hq = tl.load(HI + c_base + offs_m, mask=mmask, other=0.0)
    else:
        hq = tl.zeros([BLOCK_M], dtype=tl.float32)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # keys before the block (BLOCK_M % BLOCK_N == 0), then the diagonal block
    dq = _bwd_dq_tile(dq, q, do, hq, lse, delta, K, V, HI, LO, base, c_base, stride_t,
                      offs_m, offs_d, T, D, qk_scale, 0, start_m, HAS_GATE, False,
                      BLOCK_N, PRECISION, EVEN_D)
    dq = _bwd_dq_tile(dq, q, do, hq, lse, delta, K, V, HI, LO, base, c_base, stride_t,
                      offs_m, offs_d, T, D, qk_scale, start_m,
                      tl.minimum(start_m + BLOCK_M, T), HAS_GATE, True, BLOCK_N, PRECISION, EVEN_D)
    tl.store(DQ + base + offs_m[:, None] * stride_t + offs_d[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=mmask[:, None] & dmask)


# --------------------------------------------------------------------------- host side
def _precision(dtype: torch.dtype) -> str:
    """``tl.dot`` precision: 3xTF32 (fp32-level) for fp32; ignored for fp16/bf16 operands."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


def _gate_terms(log_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``c = cumsum(log_f)`` in float64, centred, times ``log2(e)``, as contiguous fp32
    ``hi + lo`` rows ``[B*H, T]``."""
    b, t, h = log_f.shape
    c = torch.cumsum(log_f.detach().to(torch.float64), dim=1)
    c = (c - 0.5 * c[:, -1:]) * LOG2E
    c = c.transpose(1, 2).reshape(b * h, t)
    hi = c.to(torch.float32)
    lo = (c - hi.to(torch.float64)).to(torch.float32)
    return hi.contiguous(), lo.contiguous()


class _FoxTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, log_f, scale):
        b, t, h, d = q.shape
        if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16,
                                                                   torch.float32):
            raise TypeError(f"q, k, v must share one of fp16/bf16/fp32, got "
                            f"{q.dtype}, {k.dtype}, {v.dtype}")
        if not (q.shape == k.shape == v.shape):
            raise ValueError(f"q, k, v must have one shape [B, T, H, D], got "
                             f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        has_gate = log_f is not None
        if has_gate:
            hi, lo = _gate_terms(log_f)
        else:
            hi = lo = torch.empty(0, device=q.device, dtype=torch.float32)  # never read
        d_pad = pow2_block(d)
        precision = _precision(q.dtype)
        o = torch.empty_like(q)
        lse = torch.empty(b * h, t, device=q.device, dtype=torch.float32)
        grid = lambda META: (b * h, triton.cdiv(t, META["BLOCK_M"]))  # noqa: E731
        with on_device(q):
            _fox_fwd_kernel[grid](q, k, v, hi, lo, o, lse, q.stride(0), q.stride(1), q.stride(2),
                                  h, t, d, scale * LOG2E,
                                  HAS_GATE=has_gate, BLOCK_D=d_pad, PRECISION=precision,
                                  EVEN_D=d == d_pad)
        ctx.save_for_backward(q, k, v, o, lse, hi, lo)
        ctx.scale, ctx.has_gate, ctx.d_pad, ctx.precision = scale, has_gate, d_pad, precision
        ctx.log_f_dtype = log_f.dtype if has_gate else None
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, hi, lo = ctx.saved_tensors
        b, t, h, d = q.shape
        do = do.contiguous()
        if do.stride() != q.stride():  # size-1 dims can carry any stride; align to q's
            do = torch.empty_like(q).copy_(do)
        delta = (do.float() * o.float()).sum(-1).transpose(1, 2).reshape(b * h, t).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dc = torch.empty(b * h, t, device=q.device, dtype=torch.float32) if ctx.has_gate else hi
        common = dict(HAS_GATE=ctx.has_gate, BLOCK_D=ctx.d_pad, PRECISION=ctx.precision,
                      EVEN_D=d == ctx.d_pad)
        args = (q.stride(0), q.stride(1), q.stride(2), h, t, d, ctx.scale * LOG2E, ctx.scale)
        with on_device(q):
            _fox_bwd_dkdv_kernel[lambda META: (b * h, triton.cdiv(t, META["BLOCK_N"]))](
                q, k, v, hi, lo, do, lse, delta, dk, dv, dc, *args, **common)
            _fox_bwd_dq_kernel[lambda META: (b * h, triton.cdiv(t, META["BLOCK_M"]))](
                q, k, v, hi, lo, do, lse, delta, dq, *args, **common)
        dlog_f = None
        if ctx.has_gate and ctx.needs_input_grad[3]:
            # c_m = sum_{s<=m} log_f_s  =>  dlog_f_s = sum_{m>=s} dc_m
            dc = dc.view(b, h, t).transpose(1, 2)
            dlog_f = dc.flip(1).cumsum(1).flip(1).to(ctx.log_f_dtype)
        return dq, dk, dv, dlog_f, None


def fox_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor | None,
                         scale: float | None = None) -> torch.Tensor:
    """FoX on CUDA (or under ``TRITON_INTERPRET=1``): ``[B, T, H, D]`` in and out.  ``log_f=None``
    is plain causal softmax attention with the gate code compiled out
    (:mod:`kernels.softmax_attention.triton_kernel`).  Head dims up to 128."""
    check_head_dim("fox_attention", q.shape[-1], HEAD_DIMS)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _FoxTriton.apply(q, k, v, log_f, scale)


# --------------------------------------------------------------------------- compile test
def compile_launches(cc: int, dtype: torch.dtype, head_dim: int, *, gate: bool = True) -> list[KernelLaunch]:
    """Every launch (forward, dk/dv, dq) with each config the autotuner may pick on ``sm_<cc>``
    for ``dtype`` and ``head_dim``; with the gate (FoX), or without (``gate=False``: plain
    softmax attention, :func:`kernels.softmax_attention.triton_kernel.compile_launches`)."""
    d_pad = pow2_block(head_dim)
    meta = torch.empty(0, dtype=dtype, device="meta")
    args = {"Q": meta, "BLOCK_D": d_pad, "HAS_GATE": gate}
    const = {"HAS_GATE": gate, "BLOCK_D": d_pad, "PRECISION": _precision(dtype), "EVEN_D": d_pad == head_dim}
    f32 = torch.float32
    io = dict.fromkeys(("Q", "K", "V", "O", "DO", "DQ", "DK", "DV"), dtype)
    rows = dict.fromkeys(("HI", "LO", "LSE", "DELTA", "DC"), f32)
    ptrs = {**io, **rows}

    def pick(*names):
        return {n: ptrs[n] for n in names}

    return (launches_for("fox_fwd", _fox_fwd_kernel, _fwd_configs, cc, args,
                         pointers=pick("Q", "K", "V", "HI", "LO", "O", "LSE"), constexprs=const,
                         floats=("qk_scale",))
            + launches_for("fox_bwd_dkdv", _fox_bwd_dkdv_kernel, _dkdv_configs, cc, args,
                           pointers=pick("Q", "K", "V", "HI", "LO", "DO", "LSE", "DELTA", "DK", "DV", "DC"),
                           constexprs=const, floats=("qk_scale", "sm_scale"))
            + launches_for("fox_bwd_dq", _fox_bwd_dq_kernel, _dq_configs, cc, args,
                           pointers=pick("Q", "K", "V", "HI", "LO", "DO", "LSE", "DELTA", "DQ"),
                           constexprs=const, floats=("qk_scale", "sm_scale")))
