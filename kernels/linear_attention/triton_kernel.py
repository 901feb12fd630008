"""Causal linear attention on CUDA: chunked Triton kernels (forward, and a two-pass backward).

One program per (batch, head) walks the chunks in order, keeping the running state
``S = sum_j phi(k_j)^T v_j`` (``[D, Dv]``) and normaliser ``z = sum_j phi(k_j)`` in fp32
registers; inside a chunk the scores are a masked ``[C, C]`` tile.  The feature map
``phi(x) = elu(x) + 1`` is applied on load, so nothing but the output and the per-row
denominator ``r_i = scale * phi(q_i) . sum_{j<=i} phi(k_j) + eps`` is written.

Backward.  With ``o_i = n_i / r_i``, let ``dn_i = do_i / r_i`` and
``dr_i = -(do_i . o_i) / r_i`` (computed in torch).  Then, with ``qs = scale * phi(q)``,

    dqs_i = sum_{j<=i} (dn_i . v_j + dr_i) phi(k_j)        (forward scan, state sum v^T phi(k))
    dphik_j = sum_{i>=j} (dn_i . v_j + dr_i) qs_i          (reverse scan, state sum dn^T qs)
    dv_j  = sum_{i>=j} (qs_i . phi(k_j)) dn_i              (same reverse scan, same state)

and the chain rule through ``phi`` (``phi'(x) = 1`` for ``x > 0``, ``exp(x)`` otherwise)
is applied in the kernels.  Dots run in fp32 (3xTF32 for fp32 inputs, TF32 for 16-bit
inputs).  ``chunk_size`` is only a tiling choice here (the result does not depend on it): it
is rounded to a power of two in [16, 64].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_utils import on_device



@triton.jit
def _phi(x):
    return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _dphi(x):
    return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _la_fwd_kernel(Q, K, V, O, R, stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh,
                   H, T, D, DV, scale, eps,
                   BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                   PRECISION: tl.constexpr):
    """Q, K share strides (stride_*); V, O share strides (stride_v*).  R is [B*H, T]."""
    pid = tl.program_id(0)
    b = (pid // H).to(tl.int64)
    h = (pid % H).to(tl.int64)
    qk_base = b * stride_b + h * stride_h
    v_base = b * stride_vb + h * stride_vh
    r_base = pid.to(tl.int64) * T
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    dmask = offs_d < D
    emask = offs_e < DV
    causal = offs_c[:, None] >= offs_c[None, :]
    state = tl.zeros([BLOCK_D, BLOCK_DV], dtype=tl.float32)
    z = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, T, BLOCK_C):
        offs_t = start + offs_c
        tmask = offs_t < T
        qk_off = qk_base + offs_t[:, None] * stride_t + offs_d[None, :]
        qk_mask = tmask[:, None] & dmask[None, :]
        v_off = v_base + offs_t[:, None] * stride_vt + offs_e[None, :]
        v_mask = tmask[:, None] & emask[None, :]
        q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        v = tl.load(V + v_off, mask=v_mask, other=0.0).to(tl.float32)
        qs = tl.where(qk_mask, _phi(q) * scale, 0.0)
        kf = tl.where(qk_mask, _phi(k), 0.0)  # padding contributes nothing
        s = tl.dot(qs, tl.trans(kf), input_precision=PRECISION)
        s = tl.where(causal, s, 0.0)
        num = tl.dot(s, v, input_precision=PRECISION) + tl.dot(qs, state, input_precision=PRECISION)
        den = tl.sum(s, 1) + tl.sum(qs * z[None, :], 1) + eps
        tl.store(O + v_off, (num / den[:, None]).to(O.dtype.element_ty), mask=v_mask)
        tl.store(R + r_base + offs_t, den, mask=tmask)
        state += tl.dot(tl.trans(kf), v, input_precision=PRECISION)
        z += tl.sum(kf, 0)


@triton.jit
def _la_bwd_dq_kernel(Q, K, V, DN, DR, DQ, stride_b, stride_t, stride_h,
                      stride_vb, stride_vt, stride_vh, H, T, D, DV, scale,
                      BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                      PRECISION: tl.constexpr):
    """Forward scan: dq.  Q, K, DQ share strides; V, DN share strides; DR is [B*H, T]."""
    pid = tl.program_id(0)
    b = (pid // H).to(tl.int64)
    h = (pid % H).to(tl.int64)
    qk_base = b * stride_b + h * stride_h
    v_base = b * stride_vb + h * stride_vh
    r_base = pid.to(tl.int64) * T
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    dmask = offs_d < D
    emask = offs_e < DV
    causal = offs_c[:, None] >= offs_c[None, :]
    state = tl.zeros([BLOCK_DV, BLOCK_D], dtype=tl.float32)  # sum_j v_j^T phi(k_j)
    z = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, T, BLOCK_C):
        offs_t = start + offs_c
        tmask = offs_t < T
        qk_off = qk_base + offs_t[:, None] * stride_t + offs_d[None, :]
        qk_mask = tmask[:, None] & dmask[None, :]
        v_off = v_base + offs_t[:, None] * stride_vt + offs_e[None, :]
        v_mask = tmask[:, None] & emask[None, :]
        k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        v = tl.load(V + v_off, mask=v_mask, other=0.0).to(tl.float32)
        dn = tl.load(DN + v_off, mask=v_mask, other=0.0).to(tl.float32)
        dr = tl.load(DR + r_base + offs_t, mask=tmask, other=0.0)
        kf = tl.where(qk_mask, _phi(k), 0.0)
        a = tl.dot(dn, tl.trans(v), input_precision=PRECISION) + dr[:, None]
        a = tl.where(causal, a, 0.0)
        dqs = (tl.dot(a, kf, input_precision=PRECISION)
               + tl.dot(dn, state, input_precision=PRECISION) + dr[:, None] * z[None, :])
        q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        tl.store(DQ + qk_off, (dqs * scale * _dphi(q)).to(DQ.dtype.element_ty), mask=qk_mask)
        state += tl.dot(tl.trans(v), kf, input_precision=PRECISION)
        z += tl.sum(kf, 0)


@triton.jit
def _la_bwd_dkdv_kernel(Q, K, V, DN, DR, DK, DV_, stride_b, stride_t, stride_h,
                        stride_vb, stride_vt, stride_vh, H, T, D, DV, scale,
                        BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                        PRECISION: tl.constexpr):
    """Reverse scan: dk and dv.  Q, K, DK share strides; V, DN, DV_ share strides."""
    pid = tl.program_id(0)
    b = (pid // H).to(tl.int64)
    h = (pid % H).to(tl.int64)
    qk_base = b * stride_b + h * stride_h
    v_base = b * stride_vb + h * stride_vh
    r_base = pid.to(tl.int64) * T
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    dmask = offs_d < D
    emask = offs_e < DV
    later = offs_c[:, None] <= offs_c[None, :]  # [j, i]: i >= j
    state = tl.zeros([BLOCK_DV, BLOCK_D], dtype=tl.float32)  # sum_i dn_i^T qs_i (later chunks)
    w = tl.zeros([BLOCK_D], dtype=tl.float32)  # sum_i dr_i qs_i (later chunks)
    n_chunks = tl.cdiv(T, BLOCK_C)
    for idx in range(0, n_chunks):
        start = (n_chunks - 1 - idx) * BLOCK_C
        offs_t = start + offs_c
        tmask = offs_t < T
        qk_off = qk_base + offs_t[:, None] * stride_t + offs_d[None, :]
        qk_mask = tmask[:, None] & dmask[None, :]
        v_off = v_base + offs_t[:, None] * stride_vt + offs_e[None, :]
        v_mask = tmask[:, None] & emask[None, :]
        q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
        v = tl.load(V + v_off, mask=v_mask, other=0.0).to(tl.float32)
        dn = tl.load(DN + v_off, mask=v_mask, other=0.0).to(tl.float32)
        dr = tl.load(DR + r_base + offs_t, mask=tmask, other=0.0)
        qs = tl.where(qk_mask, _phi(q) * scale, 0.0)
        kf = tl.where(qk_mask, _phi(k), 0.0)
        # a_t[j, i] = dn_i . v_j + dr_i for i >= j
        a_t = tl.dot(v, tl.trans(dn), input_precision=PRECISION) + dr[None, :]
        a_t = tl.where(later, a_t, 0.0)
        dkf = (tl.dot(a_t, qs, input_precision=PRECISION)
               + tl.dot(v, state, input_precision=PRECISION) + w[None, :])
        s_t = tl.where(later, tl.dot(kf, tl.trans(qs), input_precision=PRECISION), 0.0)  # [j, i]
        dv = (tl.dot(s_t, dn, input_precision=PRECISION)
              + tl.dot(kf, tl.trans(state), input_precision=PRECISION))
        tl.store(DK + qk_off, (dkf * _dphi(k)).to(DK.dtype.element_ty), mask=qk_mask)
        tl.store(DV_ + v_off, dv.to(DV_.dtype.element_ty), mask=v_mask)
        state += tl.dot(tl.trans(dn), qs, input_precision=PRECISION)
        w += tl.sum(qs * dr[:, None], 0)



def _block(chunk_size: int) -> int:
    return int(min(64, max(16, triton.next_power_of_2(int(chunk_size)))))


class _LinearAttentionTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale, chunk_size, eps):
        b, t, h, d = q.shape
        dv = v.shape[-1]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        o = torch.empty_like(v)
        r = torch.empty(b * h, t, device=q.device, dtype=torch.float32)
        bc, bd, be = _block(chunk_size), max(16, triton.next_power_of_2(d)), max(16, triton.next_power_of_2(dv))
        precision = "tf32x3" if q.dtype == torch.float32 else "tf32"
        nw = 4 if bd * be < 64 * 64 else 8  # the fp32 [D, Dv] state lives in registers
        with on_device(q):
            _la_fwd_kernel[(b * h,)](q, k, v, o, r, q.stride(0), q.stride(1), q.stride(2),
                                     v.stride(0), v.stride(1), v.stride(2), h, t, d, dv, scale,
                                     eps, BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be, PRECISION=precision,
                                     num_warps=nw, num_stages=1)
        ctx.save_for_backward(q, k, v, o, r)
        ctx.cfg = (scale, bc, bd, be, precision, nw)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, r = ctx.saved_tensors
        scale, bc, bd, be, precision, nw = ctx.cfg
        b, t, h, d = q.shape
        dv_ = v.shape[-1]
        rr = r.view(b, h, t).transpose(1, 2)[..., None]  # [B, T, H, 1]
        dn = torch.empty_like(v, dtype=torch.float32)  # same strides as v (passed once)
        torch.div(do.float(), rr, out=dn)
        dr = (-(do.float() * o.float()).sum(-1, keepdim=True) / rr)[..., 0]  # [B, T, H]
        dr = dr.transpose(1, 2).reshape(b * h, t).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        strides = (q.stride(0), q.stride(1), q.stride(2), v.stride(0), v.stride(1), v.stride(2))
        meta = dict(BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be, PRECISION=precision, num_warps=nw,
                    num_stages=1)
        with on_device(q):
            _la_bwd_dq_kernel[(b * h,)](q, k, v, dn, dr, dq, *strides, h, t, d, dv_, scale, **meta)
            _la_bwd_dkdv_kernel[(b * h,)](q, k, v, dn, dr, dk, dv, *strides, h, t, d, dv_, scale,
                                          **meta)
        return dq, dk, dv, None, None, None


def linear_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            scale: float | None = None, chunk_size: int = 64, *,
                            eps: float = 1e-6) -> torch.Tensor:
    """Causal linear attention with ``phi = elu + 1``; same contract as ``linear_attention``."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _LinearAttentionTriton.apply(q, k, v, scale, chunk_size, float(eps))
