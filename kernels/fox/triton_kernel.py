"""FoX on CUDA: a FlashAttention-2-style Triton kernel (with ``log_f=None`` plain softmax attention,
the Triton path of :mod:`kernels.softmax_attention`).

Forward: one program per (query block, batch*head) streams key blocks, keeps a running
max / sum in fp32 and adds the forget-gate bias ``c_i - c_j`` (``c = cumsum(log_f)``) to
each logit tile; it writes the output and the row log-sum-exp (base 2) for the backward.
Backward: two kernels that recompute the probabilities from the saved log-sum-exp, one
over key blocks (``dk``, ``dv`` and the gate gradient) and one over query blocks
(``dq``), so no atomics are needed.

Gate gradient: the logit ``l_ij`` depends on ``c`` through ``c_i - c_j``, so
``dL/dc_m = sum_j dS_mj - sum_i dS_im``.  Each row of ``dS = P * (dP - delta)`` sums to
zero (softmax is shift invariant), so only the column sums remain; ``dlog_f`` is their
reversed cumulative sum, done in torch.

Precision: ``c`` is summed in float64 on the host and passed as ``hi = fp32(c)`` plus the
residue ``lo``; the kernel forms ``hi_i - hi_j`` first (exact for nearby positions) and
subtracts ``lo_j`` (``lo_i`` is a per-row constant, which softmax ignores).  So the bias is
accurate to ``ulp(|c_i - c_j|)`` rather than ``ulp(|c|)``, which grows with T.

All tiles are loaded with ``tl.dot`` (sm80/sm90 alike; no Hopper-only features), fp32
accumulators, fp16/bf16/fp32 inputs (fp32 dots use 3xTF32 for fp32-level accuracy).  The
wrapper picks one fixed block configuration per (head dim, dtype), so the kernels also
run under ``TRITON_INTERPRET=1`` (which has no autotuner).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_utils import interpreting, on_device


LOG2E = 1.4426950408889634


# --------------------------------------------------------------------------- forward
@triton.jit
def _fwd_tile(acc, m_i, l_i, q, hq, K, V, HI, LO, k_base, v_base, c_base, stride_kt, stride_vt,
              stride_ct,
              offs_m, offs_d, T, D, qk_scale, lo_n, hi_n,
              HAS_GATE: tl.constexpr, MASKED: tl.constexpr, BLOCK_N: tl.constexpr,
              PRECISION: tl.constexpr):
    """Accumulate key blocks ``[lo_n, hi_n)`` into the running softmax state."""
    offs_n0 = tl.arange(0, BLOCK_N)
    dmask = offs_d[None, :] < D
    for start_n in range(lo_n, hi_n, BLOCK_N):
        offs_n = start_n + offs_n0
        nmask = offs_n < T
        k = tl.load(K + k_base + offs_n[:, None] * stride_kt + offs_d[None, :],
                    mask=nmask[:, None] & dmask, other=0.0)
        v = tl.load(V + v_base + offs_n[:, None] * stride_vt + offs_d[None, :],
                    mask=nmask[:, None] & dmask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        if HAS_GATE:
            hk = tl.load(HI + c_base + offs_n * stride_ct, mask=nmask, other=0.0)
            lk = tl.load(LO + c_base + offs_n * stride_ct, mask=nmask, other=0.0)
            s += ((hq[:, None] - hk[None, :]) - lk[None, :]) * 1.4426950408889634
        if MASKED:
            s = tl.where((offs_n[None, :] <= offs_m[:, None]) & nmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _fox_fwd_kernel(Q, K, V, HI, LO, O, LSE,
                    stride_qb, stride_qt, stride_qh,
                    stride_kb, stride_kt, stride_kh,
                    stride_vb, stride_vt, stride_vh,
                    stride_ob, stride_ot, stride_oh,
                    stride_cb, stride_ct, stride_ch,
                    H, T, D, qk_scale,
                    HAS_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    q_base = b * stride_qb + h * stride_qh
    k_base = b * stride_kb + h * stride_kh
    v_base = b * stride_vb + h * stride_vh
    o_base = b * stride_ob + h * stride_oh
    c_base = b * stride_cb + h * stride_ch

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mmask = offs_m < T
    dmask = offs_d[None, :] < D
    q = tl.load(Q + q_base + offs_m[:, None] * stride_qt + offs_d[None, :],
                mask=mmask[:, None] & dmask, other=0.0)
    if HAS_GATE:
        hq = tl.load(HI + c_base + offs_m * stride_ct, mask=mmask, other=0.0)
    else:
        hq = tl.zeros([BLOCK_M], dtype=tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # keys strictly before this query block: no mask needed (BLOCK_M % BLOCK_N == 0)
    acc, m_i, l_i = _fwd_tile(acc, m_i, l_i, q, hq, K, V, HI, LO, k_base, v_base, c_base,
                              stride_kt, stride_vt, stride_ct, offs_m, offs_d, T, D, qk_scale,
                              0, start_m, HAS_GATE, False, BLOCK_N, PRECISION)
    # the diagonal block: causal and length masks
    acc, m_i, l_i = _fwd_tile(acc, m_i, l_i, q, hq, K, V, HI, LO, k_base, v_base, c_base,
                              stride_kt, stride_vt, stride_ct, offs_m, offs_d, T, D, qk_scale,
                              start_m, tl.minimum(start_m + BLOCK_M, T), HAS_GATE, True, BLOCK_N,
                              PRECISION)
    acc = acc / l_i[:, None]
    tl.store(O + o_base + offs_m[:, None] * stride_ot + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=mmask[:, None] & dmask)
    tl.store(LSE + pid_bh.to(tl.int64) * T + offs_m, m_i + tl.log2(l_i), mask=mmask)


# --------------------------------------------------------------------------- backward
@triton.jit
def _bwd_dkdv_tile(dk, dv, dck, k, v, hk, lk, Q, DO, HI, LSE, DELTA, q_base, do_base, c_base,
                   r_base, stride_qt, stride_dot, stride_ct, offs_n, offs_d, T, D, qk_scale,
                   lo_m, hi_m, HAS_GATE: tl.constexpr, MASKED: tl.constexpr,
                   BLOCK_M: tl.constexpr, PRECISION: tl.constexpr):
    offs_m0 = tl.arange(0, BLOCK_M)
    dmask = offs_d[None, :] < D
    for start_m in range(lo_m, hi_m, BLOCK_M):
        offs_m = start_m + offs_m0
        mmask = offs_m < T
        q = tl.load(Q + q_base + offs_m[:, None] * stride_qt + offs_d[None, :],
                    mask=mmask[:, None] & dmask, other=0.0)
        do = tl.load(DO + do_base + offs_m[:, None] * stride_dot + offs_d[None, :],
                     mask=mmask[:, None] & dmask, other=0.0)
        # rows past T get lse = +inf, hence p = 0
        lse = tl.load(LSE + r_base + offs_m, mask=mmask, other=float("inf"))
        delta = tl.load(DELTA + r_base + offs_m, mask=mmask, other=0.0)
        sT = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [N, M]
        if HAS_GATE:
            hq = tl.load(HI + c_base + offs_m * stride_ct, mask=mmask, other=0.0)
            sT += ((hq[None, :] - hk[:, None]) - lk[:, None]) * 1.4426950408889634
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


@triton.jit
def _fox_bwd_dkdv_kernel(Q, K, V, HI, LO, DO, LSE, DELTA, DK, DV, DC,
                         stride_qb, stride_qt, stride_qh,
                         stride_kb, stride_kt, stride_kh,
                         stride_dob, stride_dot, stride_doh,
                         stride_cb, stride_ct, stride_ch,
                         H, T, D, qk_scale, sm_scale,
                         HAS_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    """One program per key block: dk, dv and the gate's column sums ``-sum_i dS_ij``.

    K, V, DK, DV share one layout (the wrapper makes them contiguous ``[B, T, H, D]``).
    """
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    q_base = b * stride_qb + h * stride_qh
    k_base = b * stride_kb + h * stride_kh
    do_base = b * stride_dob + h * stride_doh
    c_base = b * stride_cb + h * stride_ch
    r_base = pid_bh.to(tl.int64) * T

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    nmask = offs_n < T
    dmask = offs_d[None, :] < D
    kv_mask = nmask[:, None] & dmask
    k = tl.load(K + k_base + offs_n[:, None] * stride_kt + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + k_base + offs_n[:, None] * stride_kt + offs_d[None, :], mask=kv_mask, other=0.0)
    if HAS_GATE:
        hk = tl.load(HI + c_base + offs_n * stride_ct, mask=nmask, other=0.0)
        lk = tl.load(LO + c_base + offs_n * stride_ct, mask=nmask, other=0.0)
    else:
        hk = tl.zeros([BLOCK_N], dtype=tl.float32)
        lk = tl.zeros([BLOCK_N], dtype=tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dck = tl.zeros([BLOCK_N], dtype=tl.float32)
    # queries on the diagonal block (causal mask; BLOCK_N % BLOCK_M == 0) ...
    dk, dv, dck = _bwd_dkdv_tile(dk, dv, dck, k, v, hk, lk, Q, DO, HI, LSE, DELTA, q_base, do_base,
                                 c_base, r_base, stride_qt, stride_dot, stride_ct, offs_n, offs_d,
                                 T, D, qk_scale, start_n, start_n + BLOCK_N, HAS_GATE, True,
                                 BLOCK_M, PRECISION)
    # ... then every later query, unmasked
    dk, dv, dck = _bwd_dkdv_tile(dk, dv, dck, k, v, hk, lk, Q, DO, HI, LSE, DELTA, q_base, do_base,
                                 c_base, r_base, stride_qt, stride_dot, stride_ct, offs_n, offs_d,
                                 T, D, qk_scale, start_n + BLOCK_N, T, HAS_GATE, False,
                                 BLOCK_M, PRECISION)
    tl.store(DK + k_base + offs_n[:, None] * stride_kt + offs_d[None, :],
             (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + k_base + offs_n[:, None] * stride_kt + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)
    if HAS_GATE:
        tl.store(DC + c_base + offs_n * stride_ct, dck, mask=nmask)


@triton.jit
def _bwd_dq_tile(dq, q, do, hq, lse, delta, K, V, HI, LO, k_base, c_base, stride_kt, stride_ct,
                 offs_m, offs_d, T, D, qk_scale, lo_n, hi_n, HAS_GATE: tl.constexpr,
                 MASKED: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    offs_n0 = tl.arange(0, BLOCK_N)
    dmask = offs_d[None, :] < D
    for start_n in range(lo_n, hi_n, BLOCK_N):
        offs_n = start_n + offs_n0
        nmask = offs_n < T
        k = tl.load(K + k_base + offs_n[:, None] * stride_kt + offs_d[None, :],
                    mask=nmask[:, None] & dmask, other=0.0)
        v = tl.load(V + k_base + offs_n[:, None] * stride_kt + offs_d[None, :],
                    mask=nmask[:, None] & dmask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        if HAS_GATE:
            hk = tl.load(HI + c_base + offs_n * stride_ct, mask=nmask, other=0.0)
            lk = tl.load(LO + c_base + offs_n * stride_ct, mask=nmask, other=0.0)
            s += ((hq[:, None] - hk[None, :]) - lk[None, :]) * 1.4426950408889634
        p = tl.exp2(s - lse[:, None])
        if MASKED:
            p = tl.where((offs_n[None, :] <= offs_m[:, None]) & nmask[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    return dq


@triton.jit
def _fox_bwd_dq_kernel(Q, K, V, HI, LO, DO, LSE, DELTA, DQ,
                       stride_qb, stride_qt, stride_qh,
                       stride_kb, stride_kt, stride_kh,
                       stride_dob, stride_dot, stride_doh,
                       stride_cb, stride_ct, stride_ch,
                       H, T, D, qk_scale, sm_scale,
                       HAS_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    """One program per query block: dq.  Q and DQ share one layout."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    q_base = b * stride_qb + h * stride_qh
    k_base = b * stride_kb + h * stride_kh
    do_base = b * stride_dob + h * stride_doh
    c_base = b * stride_cb + h * stride_ch
    r_base = pid_bh.to(tl.int64) * T

    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mmask = offs_m < T
    dmask = offs_d[None, :] < D
    q = tl.load(Q + q_base + offs_m[:, None] * stride_qt + offs_d[None, :],
                mask=mmask[:, None] & dmask, other=0.0)
    do = tl.load(DO + do_base + offs_m[:, None] * stride_dot + offs_d[None, :],
                 mask=mmask[:, None] & dmask, other=0.0)
    lse = tl.load(LSE + r_base + offs_m, mask=mmask, other=float("inf"))
    delta = tl.load(DELTA + r_base + offs_m, mask=mmask, other=0.0)
    if HAS_GATE:
        hq = tl.load(HI + c_base + offs_m * stride_ct, mask=mmask, other=0.0)
    else:
        hq = tl.zeros([BLOCK_M], dtype=tl.float32)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # keys before the block (BLOCK_M % BLOCK_N == 0), then the diagonal block
    dq = _bwd_dq_tile(dq, q, do, hq, lse, delta, K, V, HI, LO, k_base, c_base, stride_kt,
                      stride_ct, offs_m, offs_d, T, D, qk_scale, 0, start_m, HAS_GATE, False,
                      BLOCK_N, PRECISION)
    dq = _bwd_dq_tile(dq, q, do, hq, lse, delta, K, V, HI, LO, k_base, c_base, stride_kt,
                      stride_ct, offs_m, offs_d, T, D, qk_scale, start_m,
                      tl.minimum(start_m + BLOCK_M, T), HAS_GATE, True, BLOCK_N, PRECISION)
    tl.store(DQ + q_base + offs_m[:, None] * stride_qt + offs_d[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=mmask[:, None] & dmask)


# --------------------------------------------------------------------------- host side


def _configs(d_pad: int, dtype: torch.dtype):
    """Fixed (BLOCK_M, BLOCK_N, num_warps, num_stages) for forward, dk/dv and dq kernels.

    Constraints: forward and dq need BLOCK_M % BLOCK_N == 0, dk/dv needs
    BLOCK_N % BLOCK_M == 0.  Sizes keep shared memory under the sm80 limit (164 KiB).
    """
    if interpreting():  # small tiles, so tests see several blocks and ragged edges
        return (16, 16, 1, 1), (16, 32, 1, 1), (32, 16, 1, 1)
    wide = dtype == torch.float32 or d_pad > 128
    if not wide and d_pad <= 64:
        return (128, 64, 4, 3), (32, 128, 4, 2), (128, 32, 4, 2)
    if not wide:  # 16-bit, head dim 128
        return (128, 64, 8, 2), (32, 64, 4, 2), (64, 32, 4, 2)
    return (64, 32, 4, 2), (16, 32, 4, 1), (32, 16, 4, 1)


def _gate_terms(log_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``c = cumsum(log_f)`` (float64, centred) split into fp32 ``hi + lo``."""
    c = torch.cumsum(log_f.detach().to(torch.float64), dim=1)
    c = c - 0.5 * c[:, -1:]
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
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        has_gate = log_f is not None
        if has_gate:
            hi, lo = _gate_terms(log_f)
        else:
            hi = lo = torch.zeros(b, t, h, device=q.device, dtype=torch.float32)
        d_pad = max(16, triton.next_power_of_2(d))
        (bm, bn, nw, ns), _, _ = _configs(d_pad, q.dtype)
        precision = "tf32x3" if q.dtype == torch.float32 else "tf32"
        o = torch.empty_like(q)
        lse = torch.empty(b * h, t, device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(t, bm), b * h)
        with on_device(q):
            _fox_fwd_kernel[grid](
                q, k, v, hi, lo, o, lse,
                q.stride(0), q.stride(1), q.stride(2),
                k.stride(0), k.stride(1), k.stride(2),
                v.stride(0), v.stride(1), v.stride(2),
                o.stride(0), o.stride(1), o.stride(2),
                hi.stride(0), hi.stride(1), hi.stride(2),
                h, t, d, scale * LOG2E,
                HAS_GATE=has_gate, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=d_pad, PRECISION=precision,
                num_warps=nw, num_stages=ns)
        ctx.save_for_backward(q, k, v, o, lse, hi, lo)
        ctx.scale, ctx.has_gate, ctx.d_pad, ctx.precision = scale, has_gate, d_pad, precision
        ctx.log_f_dtype = log_f.dtype if has_gate else None
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, hi, lo = ctx.saved_tensors
        b, t, h, d = q.shape
        do = do.contiguous()
        delta = (do.float() * o.float()).sum(-1).transpose(1, 2).contiguous()  # [B, H, T]
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dc = torch.zeros(b, t, h, device=q.device, dtype=torch.float32)
        _, (bm1, bn1, nw1, ns1), (bm2, bn2, nw2, ns2) = _configs(ctx.d_pad, q.dtype)
        common = dict(HAS_GATE=ctx.has_gate, BLOCK_D=ctx.d_pad, PRECISION=ctx.precision)
        strides = (q.stride(0), q.stride(1), q.stride(2),
                   k.stride(0), k.stride(1), k.stride(2),
                   do.stride(0), do.stride(1), do.stride(2),
                   hi.stride(0), hi.stride(1), hi.stride(2))
        with on_device(q):
            _fox_bwd_dkdv_kernel[(triton.cdiv(t, bn1), b * h)](
                q, k, v, hi, lo, do, lse, delta, dk, dv, dc, *strides,
                h, t, d, ctx.scale * LOG2E, ctx.scale,
                BLOCK_M=bm1, BLOCK_N=bn1, num_warps=nw1, num_stages=ns1, **common)
            _fox_bwd_dq_kernel[(triton.cdiv(t, bm2), b * h)](
                q, k, v, hi, lo, do, lse, delta, dq, *strides,
                h, t, d, ctx.scale * LOG2E, ctx.scale,
                BLOCK_M=bm2, BLOCK_N=bn2, num_warps=nw2, num_stages=ns2, **common)
        dlog_f = None
        if ctx.has_gate and ctx.needs_input_grad[3]:
            # c_m = sum_{s<=m} log_f_s  =>  dlog_f_s = sum_{m>=s} dc_m
            dlog_f = dc.flip(1).cumsum(1).flip(1).to(ctx.log_f_dtype)
        return dq, dk, dv, dlog_f, None


def fox_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor | None,
                         scale: float | None = None) -> torch.Tensor:
    """FoX on CUDA (or under ``TRITON_INTERPRET=1``): ``[B, T, H, D]`` in and out.  ``log_f=None``
    is plain causal softmax attention with the gate code compiled out
    (:mod:`kernels.softmax_attention.triton_kernel`)."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _FoxTriton.apply(q, k, v, log_f, scale)
