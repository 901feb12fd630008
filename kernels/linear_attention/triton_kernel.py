"""Causal linear attention on CUDA: chunk-parallel Triton kernels, forward and backward.

``o_i = n_i / r_i`` with ``n_i = sum_{j<=i} s_ij v_j``, ``r_i = sum_{j<=i} s_ij + eps`` and
``s_ij = qs_i . phi(k_j)``, ``qs = scale * phi(q)``, ``phi(x) = elu(x) + 1``.  Nothing walks
the sequence: every kernel runs one program per (batch*head, chunk of ``C`` positions,
``BLOCK_S``-wide slice of the feature dim it writes), so a program holds a ``[D, BLOCK_S]``
slice of the ``D x Dv`` state, never all of it.

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
sums; then ``_la_bwd_dq_kernel``, ``_la_bwd_dk_kernel`` and ``_la_bwd_dv_kernel`` (one
program per chunk and slice each) add the intra-chunk terms; dq and dk contract over ``Dv``
in ``BLOCK_S``-wide steps.  ``1/r_i`` is applied in fp32 as a row scale, so ``do`` itself
feeds the dots.  The chain rule through ``phi`` (``phi'(x) = 1`` for ``x > 0``, ``exp(x)``
otherwise) is applied in the kernels.  The result is exact (no approximation) and does not
depend on ``chunk_size``, which is only the tile: a power of two in [16, 64] (for fp32 inputs
at most 32, and 16 at head dim 128).

Precision: fp16/bf16 inputs feed ``tl.dot`` as fp16/bf16 with fp32 accumulation (``phi`` of q
and k, the intra-chunk score tiles and the prefix states are rounded to the input dtype as
dot operands, like FlashAttention's ``P``; the states are summed in fp32 and stored once in
the input dtype, so an fp16 state entry past 65504 would overflow: prefer bf16 for very long
sequences).  Key sums, denominators and all accumulators are fp32.  fp32 inputs use 3xTF32
dots everywhere (fp32-level accuracy).

Configs (:func:`kernels.triton_utils.tuned`): the chunk is fixed by ``chunk_size``; the slice
width ``BLOCK_S`` and the warps are autotuned per target (sm80 / sm90), input width and head
dim among two candidates per kernel, each compiled offline without spills (``python -m
kernels.compile_targets --ops linear_attention``).  Head dims up to 128.  Under
``TRITON_INTERPRET=1`` the slice is 16 wide, so tests with head dims above 16 run several.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_utils import KernelLaunch, check_head_dim, launches_for, on_device, pow2_block, tuned

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = ("bf16", "fp16", "fp32")


def _cfg(split: int, warps: int) -> triton.Config:
    return triton.Config({"BLOCK_S": split}, num_warps=warps, num_stages=1)


# (split width BLOCK_S, warps) candidates per (target, fp32?, padded head dim): every kernel
# splits its output's feature dim (Dv for the state, output and dv passes, D for dq and dk)
# into BLOCK_S-wide slices, one program each, so a program holds a [D, BLOCK_S] slice of the
# D x Dv state instead of all of it.  Chosen from offline compiles, all spill-free.
_TABLE = {
    (False, 16): [(16, 4), (16, 2)],
    (False, 32): [(32, 4), (16, 4)],
    (False, 64): [(32, 4), (64, 8)],
    (False, 128): [(32, 8), (64, 8)],
    (True, 16): [(16, 4), (16, 2)],
    (True, 32): [(16, 4), (32, 8)],
    (True, 64): [(16, 4), (32, 8)],
    (True, 128): [(16, 8), (32, 8)],
}
_OVERRIDE = {  # (kernel, cc, fp32?, padded head dim) -> candidates, where one kernel differs
    **{(k, cc, False, 128): [(32, 8), (32, 4)] for k in ("dq", "dk") for cc in (80, 90)},
    **{("dv", cc, False, 128): [(64, 8), (16, 8)] for cc in (80, 90)},
    **{(k, cc, False, 64): [(32, 4), (16, 4)] for k in ("dq", "dk") for cc in (80, 90)},
}


def _configs_for(kernel):
    def configs(cc, args):
        bd = max(int(args["BLOCK_D"]), int(args["BLOCK_DV"]))
        fp32 = args["Q"].dtype == torch.float32
        return [_cfg(*c) for c in _OVERRIDE.get((kernel, cc, fp32, bd), _TABLE[(fp32, bd)])]
    configs.__name__ = f"_{kernel}_configs"
    return configs


_state_configs, _fwd_configs, _dq_configs, _dk_configs, _dv_configs = (
    _configs_for(k) for k in ("state", "fwd", "dq", "dk", "dv"))
# under the interpreter the split is 16, so head dims above 16 run as several slices
_INTERPRET = triton.Config({"BLOCK_S": 16}, num_warps=1, num_stages=1)
_KEY = ["T", "BLOCK_C", "BLOCK_D", "BLOCK_DV"]


@triton.jit
def _phi(x):
    return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _dphi(x):
    return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _tiles(base, stride_t, offs_t, offs_d, T, D):
    """Offsets and mask of a ``[C, len(offs_d)]`` tile of a ``[B, T, H, D]`` tensor."""
    return base + offs_t[:, None] * stride_t + offs_d[None, :], (offs_t < T)[:, None] & (offs_d < D)[None, :]


@triton.jit
def _load_state(S, pid_bh, slot, valid, NC, D, DV, offs_d, offs_e, TRANSPOSE: tl.constexpr):
    """Rows ``offs_d`` x columns ``offs_e`` of state ``slot`` of this batch-head (zeros unless
    ``valid``; the slot is clamped into range so nothing outside the buffer is read), or its
    transpose with TRANSPOSE."""
    base = (pid_bh.to(tl.int64) * NC + tl.maximum(tl.minimum(slot, NC - 1), 0)) * D * DV
    if TRANSPOSE:
        st = tl.load(S + base + offs_e[:, None] + offs_d[None, :] * DV,
                     mask=(offs_e < DV)[:, None] & (offs_d < D)[None, :], other=0.0)
    else:
        st = tl.load(S + base + offs_d[:, None] * DV + offs_e[None, :],
                     mask=(offs_d < D)[:, None] & (offs_e < DV)[None, :], other=0.0)
    return st * valid.to(st.dtype)


@triton.jit
def _load_vec(Z, pid_bh, slot, valid, NC, D, offs_d):
    """Entries ``offs_d`` of vector ``slot`` (``[B*H, NC, D]``), zeros unless ``valid``."""
    z = tl.load(Z + (pid_bh.to(tl.int64) * NC + tl.maximum(tl.minimum(slot, NC - 1), 0)) * D + offs_d,
                mask=offs_d < D, other=0.0)
    return z * valid.to(tl.float32)


@tuned(_state_configs, interpret=_INTERPRET, key=_KEY + ["BACKWARD"])
@triton.jit
def _la_state_kernel(Q, X, Y, R, U, S, Z, stride_xb, stride_xt, stride_xh, stride_yb, stride_yt, stride_yh,
                     H, T, D, DV, NC, scale,
                     BACKWARD: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr, BLOCK_S: tl.constexpr, PRECISION: tl.constexpr):
    """Columns ``[s*BLOCK_S, (s+1)*BLOCK_S)`` of one chunk's state ``sum_i w_i phi(x_i)^T y_i``
    (``[D, Dv]``, fp32) and (slice 0) the vector ``sum_i u_i phi(x_i)``.

    Forward (X = K, Y = V): ``w = u = 1``, slot ``c``.  Backward (X = Q, Y = dO): the
    features are ``scale * phi(q)``, ``w_i = 1 / r_i``, ``u_i = dr_i`` (R, U: ``[B*H, T]``),
    slot ``NC - 1 - c`` (so a prefix sum over slots is a suffix sum over chunks).  Q only
    names the input dtype for the config function.
    """
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    sl = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_t = c * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = sl * BLOCK_S + tl.arange(0, BLOCK_S)
    x_off, x_mask = _tiles(b * stride_xb + h * stride_xh, stride_xt, offs_t, offs_d, T, D)
    y_off, y_mask = _tiles(b * stride_yb + h * stride_yh, stride_yt, offs_t, offs_e, T, DV)
    x = tl.load(X + x_off, mask=x_mask, other=0.0).to(tl.float32)
    y = tl.load(Y + y_off, mask=y_mask, other=0.0)
    xf = tl.where(x_mask, _phi(x), 0.0)  # padding contributes nothing
    tmask = offs_t < T
    if BACKWARD:
        xf = xf * scale
        r = tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
        xw = xf / r[:, None]
        slot = NC - 1 - c
    else:
        xw = xf
        slot = c
    st = tl.dot(tl.trans(xw.to(Y.dtype.element_ty)), y, input_precision=PRECISION)  # [D, BLOCK_S]
    s_base = (pid_bh.to(tl.int64) * NC + slot) * D * DV
    tl.store(S + s_base + offs_d[:, None] * DV + offs_e[None, :], st,
             mask=(offs_d < D)[:, None] & (offs_e < DV)[None, :])
    if sl == 0:
        if BACKWARD:
            u = tl.load(U + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=0.0)
            z = tl.sum(xf * u[:, None], 0)
        else:
            z = tl.sum(xf, 0)
        tl.store(Z + (pid_bh.to(tl.int64) * NC + slot) * D + offs_d, z, mask=offs_d < D)


@tuned(_fwd_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_fwd_kernel(Q, K, V, S, Z, O, R, stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh,
                   H, T, D, DV, NC, scale, eps,
                   BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                   BLOCK_S: tl.constexpr, PRECISION: tl.constexpr):
    """Output columns of one slice of one chunk (slice 0 also writes ``r``).  Q, K share
    strides (stride_*); V, O share strides (stride_v*).  R is ``[B*H, T]``."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    sl = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = sl * BLOCK_S + tl.arange(0, BLOCK_S)
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_d, T, D)
    v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
    dt = V.dtype.element_ty
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    qs = tl.where(qk_mask, _phi(q) * scale, 0.0)
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    kf = tl.where(qk_mask, _phi(k), 0.0).to(dt)
    s = tl.dot(qs.to(dt), tl.trans(kf), input_precision=PRECISION)
    s = tl.where(offs_c[:, None] >= offs_c[None, :], s, 0.0)
    z = _load_vec(Z, pid_bh, c - 1, c > 0, NC, D, offs_d)
    den = tl.sum(s, 1) + tl.sum(qs * z[None, :], 1) + eps
    v = tl.load(V + v_off, mask=v_mask, other=0.0)
    st = _load_state(S, pid_bh, c - 1, c > 0, NC, D, DV, offs_d, offs_e, False)  # [D, BLOCK_S]
    num = (tl.dot(s.to(dt), v, input_precision=PRECISION)
           + tl.dot(qs.to(dt), st, input_precision=PRECISION))
    tl.store(O + v_off, (num / den[:, None]).to(O.dtype.element_ty), mask=v_mask)
    if sl == 0:
        tl.store(R + pid_bh.to(tl.int64) * T + offs_t, den, mask=offs_t < T)


@tuned(_dq_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_bwd_dq_kernel(Q, K, V, DO, R, DR, S, Z, DQ, stride_b, stride_t, stride_h,
                      stride_vb, stride_vt, stride_vh, H, T, D, DV, NC, scale,
                      BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                      BLOCK_S: tl.constexpr, PRECISION: tl.constexpr):
    """dq columns of one slice of one chunk.  Q, K, DQ share strides; V, DO share strides;
    R, DR are ``[B*H, T]``; S, Z the forward prefix states (read transposed:
    ``sum_j v_j^T phi(k_j)``)."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    sl = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_k = sl * BLOCK_S + tl.arange(0, BLOCK_S)
    tmask = offs_t < T
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_k, T, D)
    dt = V.dtype.element_ty
    rinv = 1.0 / tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
    dr = tl.load(DR + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=0.0)
    # contractions over Dv in BLOCK_S-wide steps (a few live tiles, whatever Dv is):
    # dov[i, j] = do_i . v_j and dos = do S^T (S^T = sum_j v_j^T phi(k_j), this slice's columns)
    dov = tl.zeros([BLOCK_C, BLOCK_C], dtype=tl.float32)
    dos = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for e0 in range(0, DV, BLOCK_S):
        offs_e = e0 + tl.arange(0, BLOCK_S)
        v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
        v = tl.load(V + v_off, mask=v_mask, other=0.0)
        do = tl.load(DO + v_off, mask=v_mask, other=0.0)
        dov += tl.dot(do, tl.trans(v), input_precision=PRECISION)
        st = _load_state(S, pid_bh, c - 1, c > 0, NC, D, DV, offs_k, offs_e, True)  # [BLOCK_S(e), BLOCK_S(k)]
        dos += tl.dot(do, st, input_precision=PRECISION)
    # a[i, j] = dn_i . v_j + dr_i for j <= i
    a = tl.where(offs_c[:, None] >= offs_c[None, :], dov * rinv[:, None] + dr[:, None], 0.0)
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    kf = tl.where(qk_mask, _phi(k), 0.0).to(dt)
    z = _load_vec(Z, pid_bh, c - 1, c > 0, NC, D, offs_k)
    dqs = (tl.dot(a.to(dt), kf, input_precision=PRECISION) + dos * rinv[:, None] + dr[:, None] * z[None, :])
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    tl.store(DQ + qk_off, (dqs * scale * _dphi(q)).to(DQ.dtype.element_ty), mask=qk_mask)


@tuned(_dk_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_bwd_dk_kernel(Q, K, V, DO, R, DR, G, W, DK, stride_b, stride_t, stride_h,
                      stride_vb, stride_vt, stride_vh, H, T, D, DV, NC, scale,
                      BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                      BLOCK_S: tl.constexpr, PRECISION: tl.constexpr):
    """dk columns of one slice of one chunk: ``dphik_j = sum_{i>=j} (dn_i . v_j + dr_i) qs_i``.
    G, W: suffix states in reversed slots (``sum qs^T dn``, ``sum dr qs`` over later chunks:
    slot ``NC - 2 - c``)."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    sl = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_k = sl * BLOCK_S + tl.arange(0, BLOCK_S)
    tmask = offs_t < T
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_k, T, D)
    dt = V.dtype.element_ty
    rinv = 1.0 / tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
    dr = tl.load(DR + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=0.0)
    # contractions over Dv in BLOCK_S-wide steps: vdo[j, i] = v_j . do_i and vg = v G^T
    vdo = tl.zeros([BLOCK_C, BLOCK_C], dtype=tl.float32)
    vg = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for e0 in range(0, DV, BLOCK_S):
        offs_e = e0 + tl.arange(0, BLOCK_S)
        v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
        v = tl.load(V + v_off, mask=v_mask, other=0.0)
        do = tl.load(DO + v_off, mask=v_mask, other=0.0)
        vdo += tl.dot(v, tl.trans(do), input_precision=PRECISION)
        g = _load_state(G, pid_bh, NC - 2 - c, c < NC - 1, NC, D, DV, offs_k, offs_e, True)  # [BLOCK_S(e), BLOCK_S(k)]
        vg += tl.dot(v, g, input_precision=PRECISION)
    # a_t[j, i] = dn_i . v_j + dr_i for i >= j
    a_t = tl.where(offs_c[:, None] <= offs_c[None, :], vdo * rinv[None, :] + dr[None, :], 0.0)
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    qs = tl.where(qk_mask, _phi(q) * scale, 0.0).to(dt)
    w = _load_vec(W, pid_bh, NC - 2 - c, c < NC - 1, NC, D, offs_k)
    dkf = tl.dot(a_t.to(dt), qs, input_precision=PRECISION) + vg + w[None, :]
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    tl.store(DK + qk_off, (dkf * _dphi(k)).to(DK.dtype.element_ty), mask=qk_mask)


@tuned(_dv_configs, interpret=_INTERPRET, key=_KEY)
@triton.jit
def _la_bwd_dv_kernel(Q, K, DO, R, G, DV_, stride_b, stride_t, stride_h,
                      stride_vb, stride_vt, stride_vh, H, T, D, DV, NC, scale,
                      BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                      BLOCK_S: tl.constexpr, PRECISION: tl.constexpr):
    """dv columns of one slice of one chunk: ``dv_j = sum_{i>=j} (qs_i . phi(k_j)) dn_i``.
    DO, DV_ share strides (stride_v*)."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    sl = tl.program_id(2)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_t = c * BLOCK_C + offs_c
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = sl * BLOCK_S + tl.arange(0, BLOCK_S)
    tmask = offs_t < T
    qk_off, qk_mask = _tiles(b * stride_b + h * stride_h, stride_t, offs_t, offs_d, T, D)
    v_off, v_mask = _tiles(b * stride_vb + h * stride_vh, stride_vt, offs_t, offs_e, T, DV)
    dt = DO.dtype.element_ty
    q = tl.load(Q + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    qs = tl.where(qk_mask, _phi(q) * scale, 0.0).to(dt)
    k = tl.load(K + qk_off, mask=qk_mask, other=0.0).to(tl.float32)
    kf = tl.where(qk_mask, _phi(k), 0.0).to(dt)
    rinv = 1.0 / tl.load(R + pid_bh.to(tl.int64) * T + offs_t, mask=tmask, other=1.0)
    s_t = tl.dot(kf, tl.trans(qs), input_precision=PRECISION) * rinv[None, :]  # [j, i]
    s_t = tl.where(offs_c[:, None] <= offs_c[None, :], s_t, 0.0)
    do = tl.load(DO + v_off, mask=v_mask, other=0.0)
    g = _load_state(G, pid_bh, NC - 2 - c, c < NC - 1, NC, D, DV, offs_d, offs_e, False)  # [D, BLOCK_S]
    dv = (tl.dot(s_t.to(dt), do, input_precision=PRECISION)
          + tl.dot(kf, g, input_precision=PRECISION))
    tl.store(DV_ + v_off, dv.to(DV_.dtype.element_ty), mask=v_mask)


def _block(chunk_size: int, dtype: torch.dtype, block_d: int) -> int:
    """The chunk (tile) length: ``chunk_size`` as a power of two in [16, 64]; for fp32 inputs
    at most 32, and 16 at head dim 128 (3xTF32 dots on longer fp32 tiles spill registers)."""
    top = 64 if dtype != torch.float32 else (16 if block_d >= 128 else 32)
    return int(min(top, max(16, triton.next_power_of_2(int(chunk_size)))))


def _precision(dtype: torch.dtype) -> str:
    return "tf32x3" if dtype == torch.float32 else "tf32"


def _grid(bh: int, nc: int, width: int):
    """One program per (batch-head, chunk, BLOCK_S-wide slice of ``width`` features)."""
    return lambda META: (bh, nc, triton.cdiv(width, META["BLOCK_S"]))


def _states(x, y, r, u, scale, nc, bc, bd, be, backward):
    """Per-chunk states of ``x`` (features) and ``y`` and their inclusive prefix sum over
    slots, summed in fp32: ``[B*H, NC, D, Dv]`` (then in x's dtype, as it feeds tl.dot with
    16-bit tiles) and fp32 ``[B*H, NC, D]``."""
    b, t, h, d = x.shape
    dv = y.shape[-1]
    s = torch.empty(b * h, nc, d, dv, device=x.device, dtype=torch.float32)
    z = torch.empty(b * h, nc, d, device=x.device, dtype=torch.float32)
    r = s if r is None else r
    u = s if u is None else u
    _la_state_kernel[_grid(b * h, nc, dv)](x, x, y, r, u, s, z, x.stride(0), x.stride(1), x.stride(2),
                                           y.stride(0), y.stride(1), y.stride(2), h, t, d, dv, nc, scale,
                                           BACKWARD=backward, BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be,
                                           PRECISION=_precision(x.dtype))
    s.cumsum_(1)
    z.cumsum_(1)
    return (s if x.dtype == torch.float32 else s.to(x.dtype)), z


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
        bd, be = pow2_block(d), pow2_block(dv)
        bc = _block(chunk_size, q.dtype, max(bd, be))
        nc = triton.cdiv(t, bc)
        with on_device(q):
            s, z = _states(k, v, None, None, 1.0, nc, bc, bd, be, False)
            _la_fwd_kernel[_grid(b * h, nc, dv)](q, k, v, s, z, o, r, q.stride(0), q.stride(1), q.stride(2),
                                                 v.stride(0), v.stride(1), v.stride(2), h, t, d, dv, nc, scale,
                                                 eps, BLOCK_C=bc, BLOCK_D=bd, BLOCK_DV=be,
                                                 PRECISION=_precision(q.dtype))
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
            _la_bwd_dq_kernel[_grid(b * h, nc, d)](q, k, v, do, r, dr, s, z, dq, *strides, h, t, d, dv_, nc,
                                                   scale, **meta)
            del s, z
            g, w = _states(q, do, r, dr, scale, nc, bc, bd, be, True)
            _la_bwd_dk_kernel[_grid(b * h, nc, d)](q, k, v, do, r, dr, g, w, dk, *strides, h, t, d, dv_, nc,
                                                   scale, **meta)
            _la_bwd_dv_kernel[_grid(b * h, nc, dv_)](q, k, do, r, g, dv, *strides, h, t, d, dv_, nc, scale,
                                                     **meta)
        return dq, dk, dv, None, None, None


def linear_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            scale: float | None = None, chunk_size: int = 64, *,
                            eps: float = 1e-6) -> torch.Tensor:
    """Causal linear attention with ``phi = elu + 1``; same contract as ``linear_attention``."""
    check_head_dim("linear_attention", max(q.shape[-1], v.shape[-1]), HEAD_DIMS)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _LinearAttentionTriton.apply(q, k, v, scale, chunk_size, float(eps))


def compile_launches(cc: int, dtype: torch.dtype, head_dim: int) -> list[KernelLaunch]:
    """Every launch (state pass forward and backward, forward, dq, dk, dv) at the default
    chunk (64; for fp32 32, or 16 at head dim 128) and ``Dv = D``, with each config the autotuner may pick on ``sm_<cc>``."""
    bd = pow2_block(head_dim)
    meta = torch.empty(0, dtype=dtype, device="meta")
    args = {"Q": meta, "BLOCK_D": bd, "BLOCK_DV": bd}
    const = {"BLOCK_C": _block(64, dtype, bd), "BLOCK_D": bd, "BLOCK_DV": bd, "PRECISION": _precision(dtype)}
    f32 = torch.float32
    state = {"Q": dtype, "X": dtype, "Y": dtype, "R": f32, "U": f32, "S": f32, "Z": f32}
    io = {"Q": dtype, "K": dtype, "V": dtype, "DO": dtype, "R": f32, "DR": f32}
    return (launches_for("la_state_fwd", _la_state_kernel, _state_configs, cc, args, pointers=state,
                         constexprs={**const, "BACKWARD": False}, floats=("scale",))
            + launches_for("la_state_bwd", _la_state_kernel, _state_configs, cc, args, pointers=state,
                           constexprs={**const, "BACKWARD": True}, floats=("scale",))
            + launches_for("la_fwd", _la_fwd_kernel, _fwd_configs, cc, args,
                           pointers={"Q": dtype, "K": dtype, "V": dtype, "S": dtype, "Z": f32, "O": dtype, "R": f32},
                           constexprs=const, floats=("scale", "eps"))
            + launches_for("la_bwd_dq", _la_bwd_dq_kernel, _dq_configs, cc, args,
                           pointers={**io, "S": dtype, "Z": f32, "DQ": dtype}, constexprs=const, floats=("scale",))
            + launches_for("la_bwd_dk", _la_bwd_dk_kernel, _dk_configs, cc, args,
                           pointers={**io, "G": dtype, "W": f32, "DK": dtype}, constexprs=const, floats=("scale",))
            + launches_for("la_bwd_dv", _la_bwd_dv_kernel, _dv_configs, cc, args,
                           pointers={"Q": dtype, "K": dtype, "DO": dtype, "R": f32, "G": dtype, "DV_": dtype},
                           constexprs=const, floats=("scale",)))
