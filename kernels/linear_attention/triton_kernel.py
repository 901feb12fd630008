"""Causal linear attention on CUDA: chunk-parallel Triton kernels, forward and backward.

``o_i = n_i / r_i`` with ``n_i = sum_{j<=i} s_ij v_j``, ``r_i = sum_{j<=i} s_ij + eps`` and
``s_ij = qs_i . phi(k_j)``, ``qs = scale * phi(q)``, ``phi(x) = elu(x) + 1``.  Nothing walks
the sequence: every kernel runs one program per (batch*head, chunk of ``C`` positions).

Forward:

1. ``_la_state_kernel``: each chunk's state contribution ``phi(K_c)^T V_c`` (``[D, Dv]``,
   fp32) and key sum ``sum phi(K_c)`` (``[D]``);
2. an inclusive prefix sum over chunks in torch (``cumsum_``, fp32, in place); the program of
   chunk ``c`` reads entry ``c - 1`` (zero for the first chunk), the state at its start;
3. ``_la_fwd_kernel``: outputs from the chunk-start state (``qs S``, ``qs . z``) plus the
   intra-chunk causal part (a masked ``[C, C]`` score tile); writes ``o`` and ``r``.

Backward.  With ``dn_i = do_i / r_i`` and ``dr_i = -(do_i . o_i) / r_i`` (torch):

    dqs_i   = sum_{j<=i} (dn_i . v_j + dr_i) phi(k_j)       (forward states S^T, z again)
    dphik_j = sum_{i>=j} (dn_i . v_j + dr_i) qs_i           (reverse states G = sum qs^T dn,
    dv_j    = sum_{i>=j} (qs_i . phi(k_j)) dn_i               w = sum dr qs)

The state kernel recomputes the forward states (nothing but ``r`` is saved) and computes
``G``/``w`` per chunk into reversed slots, so the same in-place ``cumsum_`` gives suffix
sums; then ``_la_bwd_dq_kernel`` and ``_la_bwd_dkdv_kernel`` (one program per chunk each)
add the intra-chunk terms.  ``1/r_i`` is applied in fp32 as a row scale, so ``do`` itself
feeds the dots.  The chain rule through ``phi`` (``phi'(x) = 1`` for ``x > 0``, ``exp(x)``
otherwise) is applied in the kernels.  The result is exact (no approximation) and does not
depend on ``chunk_size``, which is only the tile: rounded to a power of two in [16, 64].

Precision: fp16/bf16 inputs feed ``tl.dot`` as fp16/bf16 (``phi`` of q and k and the
intra-chunk score tiles are rounded to the input dtype, like FlashAttention's ``P``) with
fp32 accumulation; the running states stay fp32 and their products use TF32 tensor cores
(never rounded to 16 bits, so long sequences cannot overflow fp16).  fp32 inputs use 3xTF32
dots everywhere (fp32-level accuracy).

Configs (:func:`kernels.triton_utils.tuned`): the tile is fixed by ``chunk_size``; warps and
pipeline stages are autotuned per target (sm80 / sm90) and head dim among a short list per
kernel, each compiled offline without spills (``python -m kernels.compile_targets --ops
linear_attention``).  Head dims up to 128 (a 256 x 256 fp32 state does not fit shared memory).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_utils import KernelLaunch, check_head_dim, launches_for, on_device, pow2_block, tuned

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = ("bf16", "fp16", "fp32")


def _cfgs(pairs):
    return [triton.Config({}, num_warps=w, num_stages=s) for w, s in pairs]


# (warps, stages) per (kernel, target, padded head dim)
_TABLE = {
    "state": {16: [(4, 1), (4, 2)], 32: [(4, 1), (4, 2)], 64: [(4, 1), (8, 1)], 128: [(8, 1), (4, 1)]},
    "fwd": {16: [(4, 1), (4, 2)], 32: [(4, 1), (4, 2)], 64: [(4, 1), (8, 1)], 128: [(8, 1), (4, 1)]},
    "dq": {16: [(4, 1), (4, 2)], 32: [(4, 1), (4, 2)], 64: [(4, 1), (8, 1)], 128: [(8, 1), (4, 1)]},
    "dkdv": {16: [(4, 1), (4, 2)], 32: [(4, 1), (4, 2)], 64: [(4, 1), (8, 1)], 128: [(8, 1), (4, 1)]},
}
_OVERRIDE: dict = {}  # (kernel, cc, dtype is fp32, BLOCK_D) -> pairs, where a target differs


def _configs_for(kernel):
    def configs(cc, args):
        bd = max(int(args["BLOCK_D"]), int(args["BLOCK_DV"]))
        fp32 = args["Q"].dtype == torch.float32
        return _cfgs(_OVERRIDE.get((kernel, cc, fp32, bd), _TABLE[kernel][bd]))
    configs.__name__ = f"_{kernel}_configs"
    return configs


_state_configs, _fwd_configs, _dq_configs, _dkdv_configs = (_configs_for(k) for k in ("state", "fwd", "dq", "dkdv"))
_INTERPRET = triton.Config({}, num_warps=1, num_stages=1)
_KEY = ["T", "BLOCK_C", "BLOCK_D", "BLOCK_DV"]


@triton.jit
def _phi(x):
    return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _dphi(x):
    return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _tiles(base, stride_t, offs_t, offs_d, T, D):
    """Offsets and mask of a ``[C, D]`` tile of a ``[B, T, H, D]`` tensor."""
    return base + offs_t[:, None] * stride_t + offs_d[None, :], (offs_t < T)[:, None] & (offs_d < D)[None, :]


@tuned(_state_configs, interpret=_INTERPRET, key=_KEY + ["BACKWARD"])
@triton.jit
def _la_state_kernel(Q, X, Y, R, U, S, Z, stride_xb, stride_xt, stride_xh, stride_yb, stride_yt, stride_yh,
                     H, T, D, DV, NC, scale,
                     BACKWARD: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr, PRECISION: tl.constexpr):
    """One chunk's state ``sum_i w_i phi(x_i)^T y_i`` (``[D, Dv]``) and vector ``sum_i u_i phi(x_i)``.

    Forward (X = K, Y = V): ``w = u = 1``, slot ``c``.  Backward (X = Q, Y = dO): the
    features are ``scale * phi(q)``, ``w_i = 1 / r_i``, ``u_i = dr_i`` (R, U: ``[B*H, T]``),
    slot ``NC - 1 - c`` (so a prefix sum over slots is a suffix sum over chunks).  Q only
    names the input dtype for the config function.
    """
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_t = c * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    x_off, x_mask = _tiles(b * stride_xb + h * stride_xh, stride_xt, offs_t, offs_d, T, D)
    y_off, y_mask = _tiles(b * stride_yb + h * stride_yh, stride_yt, offs_t, offs_e, T, DV)
    x = tl.load(X + x_off, mask=x_mask, other=0.0).to(tl.float32)
    y = tl.load(Y + y_off, mask=y_mask, other=0.0)
    xf = tl.where(x_mask, _phi(x), 0.0)  # padding contributes nothing
    tmask = offs_t < T
    if BACKWARD:
        xf = xf * scale
        r = tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
        u = tl.load(U + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=0.0)
        xw = xf / r[:, None]
        z = tl.sum(xf * u[:, None], 0)
        slot = NC - 1 - c
    else:
        xw = xf
        z = tl.sum(xf, 0)
        slot = c
    st = tl.dot(tl.trans(xw.to(Y.dtype.element_ty)), y, input_precision=PRECISION)  # [D, Dv]
    s_base = (pid_bh.to(tl.int64) * NC + slot) * D * DV
    tl.store(S + s_base + offs_d[:, None] * DV + offs_e[None, :], st,
             mask=(offs_d < D)[:, None] & (offs_e < DV)[None, :])
    tl.store(Z + (pid_bh.to(tl.int64) * NC + slot) * D + offs_d, z, mask=offs_d < D)


@triton.jit
def _load_state(S, Z, pid_bh, slot, valid, NC, D, DV, offs_d, offs_e, TRANSPOSE: tl.constexpr):
    """State ``slot`` of this batch-head (zeros unless ``valid``; the slot is clamped into
    range so nothing outside the buffer is read): ``[D, Dv]``, or ``[Dv, D]`` with TRANSPOSE,
    and its ``[D]`` vector."""
    base = (pid_bh.to(tl.int64) * NC + tl.maximum(tl.minimum(slot, NC - 1), 0)) * D
    keep = valid.to(tl.float32)
    if TRANSPOSE:
        st = tl.load(S + base * DV + offs_e[:, None] + offs_d[None, :] * DV,
                     mask=(offs_e < DV)[:, None] & (offs_d < D)[None, :], other=0.0)
    else:
        st = tl.load(S + base * DV + offs_d[:, None] * DV + offs_e[None, :],
                     mask=(offs_d < D)[:, None] & (offs_e < DV)[None, :], other=0.0)
    z = tl.load(Z + base + offs_d, mask=offs_d < D, other=0.0)
    return st * keep, z * keep


@tuned(_fwd_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_fwd_kernel(Q, K, V, S, Z, O, R, stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh,
                   H, T, D, DV, NC, scale, eps,
                   BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                   PRECISION: tl.constexpr):
    """Q, K share strides (stride_*); V, O share strides (stride_v*).  R is ``[B*H, T]``."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_d, T, D)
    v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    v = tl.load(V + v_off, mask=v_mask, other=0.0)
    qs = tl.where(qk_mask, _phi(q) * scale, 0.0)
    kf = tl.where(qk_mask, _phi(k), 0.0)
    dt = V.dtype.element_ty
    s = tl.dot(qs.to(dt), tl.trans(kf.to(dt)), input_precision=PRECISION)
    s = tl.where(offs_c[:, None] >= offs_c[None, :], s, 0.0)
    st, z = _load_state(S, Z, pid_bh, c - 1, c > 0, NC, D, DV, offs_d, offs_e, False)
    num = tl.dot(s.to(dt), v, input_precision=PRECISION) + tl.dot(qs, st, input_precision=PRECISION)
    den = tl.sum(s, 1) + tl.sum(qs * z[None, :], 1) + eps
    tl.store(O + v_off, (num / den[:, None]).to(O.dtype.element_ty), mask=v_mask)
    tl.store(R + pid_bh.to(tl.int64) * T + offs_t, den, mask=offs_t < T)


@tuned(_dq_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_bwd_dq_kernel(Q, K, V, DO, R, DR, S, Z, DQ, stride_b, stride_t, stride_h,
                      stride_vb, stride_vt, stride_vh, H, T, D, DV, NC, scale,
                      BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                      PRECISION: tl.constexpr):
    """dq of one chunk.  Q, K, DQ share strides; V, DO share strides; R, DR are ``[B*H, T]``;
    S, Z the forward prefix states (read transposed: ``sum_j v_j^T phi(k_j)``)."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    tmask = offs_t < T
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_d, T, D)
    v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    v = tl.load(V + v_off, mask=v_mask, other=0.0)
    do = tl.load(DO + v_off, mask=v_mask, other=0.0)
    rinv = 1.0 / tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
    dr = tl.load(DR + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=0.0)
    kf = tl.where(qk_mask, _phi(k), 0.0)
    dt = V.dtype.element_ty
    # a[i, j] = dn_i . v_j + dr_i for j <= i
    a = tl.dot(do, tl.trans(v), input_precision=PRECISION) * rinv[:, None] + dr[:, None]
    a = tl.where(offs_c[:, None] >= offs_c[None, :], a, 0.0)
    st, z = _load_state(S, Z, pid_bh, c - 1, c > 0, NC, D, DV, offs_d, offs_e, True)  # [Dv, D]
    dqs = (tl.dot(a.to(dt), kf.to(dt), input_precision=PRECISION)
           + tl.dot(do.to(tl.float32), st, input_precision=PRECISION)
           * rinv[:, None] + dr[:, None] * z[None, :])
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    tl.store(DQ + qk_off, (dqs * scale * _dphi(q)).to(DQ.dtype.element_ty), mask=qk_mask)


@tuned(_dkdv_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_bwd_dkdv_kernel(Q, K, V, DO, R, DR, G, W, DK, DV_, stride_b, stride_t, stride_h,
                        stride_vb, stride_vt, stride_vh, H, T, D, DV, NC, scale,
                        BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                        PRECISION: tl.constexpr):
    """dk and dv of one chunk.  G, W: suffix states in reversed slots (``sum qs^T dn``,
    ``sum dr qs`` over later chunks: slot ``NC - 2 - c``)."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_DV)
    tmask = offs_t < T
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_d, T, D)
    v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    v = tl.load(V + v_off, mask=v_mask, other=0.0)
    do = tl.load(DO + v_off, mask=v_mask, other=0.0)
    rinv = 1.0 / tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
    dr = tl.load(DR + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=0.0)
    qs = tl.where(qk_mask, _phi(q) * scale, 0.0)
    kf = tl.where(qk_mask, _phi(k), 0.0)
    dt = V.dtype.element_ty
    later = offs_c[:, None] <= offs_c[None, :]  # [j, i]: i >= j
    # a_t[j, i] = dn_i . v_j + dr_i for i >= j
    a_t = tl.dot(v, tl.trans(do), input_precision=PRECISION) * rinv[None, :] + dr[None, :]
    a_t = tl.where(later, a_t, 0.0)
    s_t = tl.dot(kf.to(dt), tl.trans(qs.to(dt)), input_precision=PRECISION) * rinv[None, :]
    s_t = tl.where(later, s_t, 0.0)
    g, w = _load_state(G, W, pid_bh, NC - 2 - c, c < NC - 1, NC, D, DV, offs_d, offs_e, False)  # [D, Dv]
    dkf = (tl.dot(a_t.to(dt), qs.to(dt), input_precision=PRECISION)
           + tl.dot(v.to(tl.float32), tl.trans(g), input_precision=PRECISION) + w[None, :])
    dv = (tl.dot(s_t.to(dt), do, input_precision=PRECISION)
          + tl.dot(kf, g, input_precision=PRECISION))
    tl.store(DK + qk_off, (dkf * _dphi(k)).to(DK.dtype.element_ty), mask=qk_mask)
    tl.store(DV_ + v_off, dv.to(DV_.dtype.element_ty), mask=v_mask)


def _block(chunk_size: int) -> int:
    return int(min(64, max(16, triton.next_power_of_2(int(chunk_size)))))


def _precision(dtype: torch.dtype) -> str:
    return "tf32x3" if dtype == torch.float32 else "tf32"


def _states(x, y, r, u, scale, nc, bc, bd, be, backward):
    """Per-chunk states of ``x`` (features) and ``y`` and their inclusive prefix sum over
    slots (fp32 ``[B*H, NC, D, Dv]`` and ``[B*H, NC, D]``)."""
    b, t, h, d = x.shape
    dv = y.shape[-1]
    s = torch.empty(b * h, nc, d, dv, device=x.device, dtype=torch.float32)
    z = torch.empty(b * h, nc, d, device=x.device, dtype=torch.float32)
    r = s if r is None else r
    u = s if u is None else u
    _la_state_kernel[(b * h, nc)](x, x, y, r, u, s, z, x.stride(0), x.stride(1), x.stride(2),
                                  y.stride(0), y.stride(1), y.stride(2), h, t, d, dv, nc, scale,
                                  BACKWARD=backward, BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be,
                                  PRECISION=_precision(x.dtype))
    s.cumsum_(1)
    z.cumsum_(1)
    return s, z


class _LinearAttentionTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale, chunk_size, eps):
        b, t, h, d = q.shape
        dv = v.shape[-1]
        if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(f"q, k, v must share one of fp16/bf16/fp32, got {q.dtype}, {k.dtype}, {v.dtype}")
        q, k = q.contiguous(), k.contiguous()
        if k.stride() != q.stride():  # size-1 dims can carry any stride
            k = torch.empty_like(q).copy_(k)
        v = v.contiguous()
        o = torch.empty_like(v)
        r = torch.empty(b * h, t, device=q.device, dtype=torch.float32)
        bc, bd, be = _block(chunk_size), pow2_block(d), pow2_block(dv)
        nc = triton.cdiv(t, bc)
        with on_device(q):
            s, z = _states(k, v, None, None, 1.0, nc, bc, bd, be, False)
            _la_fwd_kernel[(b * h, nc)](q, k, v, s, z, o, r, q.stride(0), q.stride(1), q.stride(2),
                                        v.stride(0), v.stride(1), v.stride(2), h, t, d, dv, nc, scale, eps,
                                        BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be, PRECISION=_precision(q.dtype))
        ctx.save_for_backward(q, k, v, o, r)
        ctx.cfg = (scale, bc, bd, be, nc)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, r = ctx.saved_tensors
        scale, bc, bd, be, nc = ctx.cfg
        b, t, h, d = q.shape
        dv_ = v.shape[-1]
        do = do.contiguous()
        if do.stride() != v.stride():  # do shares v's strides (passed once)
            do = torch.empty_like(v).copy_(do)
        rr = r.view(b, h, t).transpose(1, 2)  # [B, T, H]
        dr = (-(do.float() * o.float()).sum(-1) / rr).transpose(1, 2).reshape(b * h, t).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        strides = (q.stride(0), q.stride(1), q.stride(2), v.stride(0), v.stride(1), v.stride(2))
        meta = dict(BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be, PRECISION=_precision(q.dtype))
        with on_device(q):
            s, z = _states(k, v, None, None, 1.0, nc, bc, bd, be, False)
            _la_bwd_dq_kernel[(b * h, nc)](q, k, v, do, r, dr, s, z, dq, *strides, h, t, d, dv_, nc, scale,
                                           **meta)
            del s, z
            g, w = _states(q, do, r, dr, scale, nc, bc, bd, be, True)
            _la_bwd_dkdv_kernel[(b * h, nc)](q, k, v, do, r, dr, g, w, dk, dv, *strides, h, t, d, dv_, nc,
                                             scale, **meta)
        return dq, dk, dv, None, None, None


def linear_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            scale: float | None = None, chunk_size: int = 64, *,
                            eps: float = 1e-6) -> torch.Tensor:
    """Causal linear attention with ``phi = elu + 1``; same contract as ``linear_attention``."""
    check_head_dim("linear_attention", max(q.shape[-1], v.shape[-1]), HEAD_DIMS)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _LinearAttentionTriton.apply(q, k, v, scale, chunk_size, float(eps))


def compile_launches(cc: int, dtype: torch.dtype, head_dim: int) -> list[KernelLaunch]:
    """Every launch (state pass forward and backward, forward, dq, dk/dv) at the default
    chunk (64) and ``Dv = D``, with each config the autotuner may pick on ``sm_<cc>``."""
    bd = pow2_block(head_dim)
    meta = torch.empty(0, dtype=dtype, device="meta")
    args = {"Q": meta, "BLOCK_D": bd, "BLOCK_DV": bd}
    const = {"BLOCK_C": 64, "BLOCK_D": bd, "BLOCK_DV": bd, "PRECISION": _precision(dtype)}
    f32 = torch.float32
    return (launches_for("la_state_fwd", _la_state_kernel, _state_configs, cc, args,
                         pointers={"Q": dtype, "X": dtype, "Y": dtype, "R": f32, "U": f32, "S": f32, "Z": f32},
                         constexprs={**const, "BACKWARD": False}, floats=("scale",))
            + launches_for("la_state_bwd", _la_state_kernel, _state_configs, cc, args,
                           pointers={"Q": dtype, "X": dtype, "Y": dtype, "R": f32, "U": f32, "S": f32, "Z": f32},
                           constexprs={**const, "BACKWARD": True}, floats=("scale",))
            + launches_for("la_fwd", _la_fwd_kernel, _fwd_configs, cc, args,
                           pointers={"Q": dtype, "K": dtype, "V": dtype, "S": f32, "Z": f32, "O": dtype, "R": f32},
                           constexprs=const, floats=("scale", "eps"))
            + launches_for("la_bwd_dq", _la_bwd_dq_kernel, _dq_configs, cc, args,
                           pointers={"Q": dtype, "K": dtype, "V": dtype, "DO": dtype, "R": f32, "DR": f32,
                                     "S": f32, "Z": f32, "DQ": dtype},
                           constexprs=const, floats=("scale",))
            + launches_for("la_bwd_dkdv", _la_bwd_dkdv_kernel, _dkdv_configs, cc, args,
                           pointers={"Q": dtype, "K": dtype, "V": dtype, "DO": dtype, "R": f32, "DR": f32,
                                     "G": f32, "W": f32, "DK": dtype, "DV_": dtype},
                           constexprs=const, floats=("scale",)))
