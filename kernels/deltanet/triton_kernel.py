"""DeltaNet on CUDA: Triton kernels for the chunk-state recurrence, forward and backward.

What runs where.  ``deltanet_prep`` (:mod:`kernels.deltanet.fast`) stays in torch: batched
float32 ops, differentiated by torch autograd, that L2-normalise ``k`` and compute per chunk
the UT transform ``A`` (one triangular solve), ``W = A K``, ``U = A V`` and ``tril(Q K^T)``.
``_DeltaCoreTriton`` runs the rest in four Triton kernels.  Every step acts on the columns of
the state ``S^T`` (``[Dk, Dv]``) independently, so each kernel is split over blocks of ``BV``
value columns; the key dimension stays whole in the two recurrences:

* ``_delta_fwd_h_kernel`` (program per batch-head x value block, sequential over chunks):
  keeps its ``[Dk, BV]`` block of ``S^T`` in registers (float32); per chunk stores the state
  at the chunk start and ``D = U - W S^T`` (float32), then ``S^T += K^T D``.
* ``_delta_fwd_o_kernel`` (program per chunk x value block, parallel):
  ``O = Q S^T + tril(Q K^T) D``, ``Q S^T`` summed over blocks of ``KB`` key columns.
* ``_delta_bwd_dh_kernel`` (per batch-head x value block, chunks in reverse): carries
  ``dS^T`` (float32), stores it at every chunk end, writes ``dU = dD = A^T dO + K dS^T`` and
  updates ``dS^T += Q^T dO - W^T dD``.
* ``_delta_bwd_grads_kernel`` (per chunk x value block, parallel): this block's share of
  ``dQ = dO S``, ``dW = -dD S``, ``dK = D dS`` (per ``KB`` key columns) and
  ``d tril(QK^T) = dO D^T``.  These sum over all value columns: each block writes its own
  float32 slice and torch sums the slices (deterministic, no atomics).

Memory: the chunk-start states, ``D`` and (backward) ``dS^T`` are kept, ``O(T Dk Dv / C)``
floats per batch-head, also without gradients (the output kernel reads them).

Precision.  fp16/bf16 inputs: the prep runs in float32 and its outputs are cast to the input
dtype, so ``tl.dot`` takes fp16/bf16 operands with float32 accumulation (tensor cores); the
state, its gradient, ``D`` and ``dD`` stay float32 in registers and buffers and are rounded to
the input dtype only as ``tl.dot`` operands; outputs and gradients are float32 until the final
cast.  fp32 inputs keep every operand float32 and use ``tf32x3`` dots (three TF32 products,
fp32-accurate, on tensor cores; ``ieee`` falls back to FMA loops that spill), or plain TF32
when ``torch.backends.cuda.matmul.allow_tf32`` is set.

Configs (:func:`kernels.triton_utils.tuned`).  Per input dtype and head dims, :func:`_plan`
fixes the largest chunk (``chunk_size`` is capped by it), ``BV`` and ``KB``: fp16/bf16 chunk
64, ``BV`` 64 (``dk <= 32``) or 32, ``KB`` 64, and for ``dk = 256`` chunk 32, ``BV`` 16; fp32
chunk 32 (``dk <= 64``) or 16, ``BV`` 32 (``dk <= 32``) or 16, ``KB`` 32.  The autotuner picks ``num_warps`` / ``num_stages`` among
candidates that all compile for sm80 and sm90 within shared memory and without register
spills (``python -m kernels.compile_targets --ops deltanet``, at the capped chunk, ``dk = dv``).
Under ``TRITON_INTERPRET=1``: ``BV = KB = 16``, 4 warps, 1 stage.  Head dims (``dk`` and
``dv``): up to 256, except ``dk`` at most 128 with fp32 inputs (the whole ``[dk, BV]`` float32
state with tf32x3 dots does not fit in registers at 256); tiles are padded to a power of two
>= 16; anything else raises :class:`~kernels.triton_utils.UnsupportedHeadDim` before any work.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.deltanet.fast import deltanet_prep
from kernels.triton_utils import (
    KernelLaunch,
    UnsupportedHeadDim,
    check_head_dim,
    dot_precision,
    interpreting,
    launches_for,
    on_device,
    pow2_block,
    tuned,
)

__all__ = ["DTYPES", "FP32_MAX_DK", "HEAD_DIMS", "HEAD_DIMS_BY_DTYPE", "block_v", "chunk_cap", "compile_launches", "deltanet_triton"]

HEAD_DIMS = (16, 32, 64, 128, 256)
FP32_MAX_DK = 128  # a [256, BV] float32 state with tf32x3 dots spills at any BV / warps
# the head dims per dtype where they differ from HEAD_DIMS (read by kernels.compile_targets)
HEAD_DIMS_BY_DTYPE = {"fp32": tuple(d for d in HEAD_DIMS if d <= FP32_MAX_DK)}
DTYPES = ("bf16", "fp16", "fp32")

_INTERPRET_BV = 16
_LOW = (torch.float16, torch.bfloat16)


def _plan(dtype: torch.dtype, dk: int, dv: int) -> tuple[int, int, int]:
    """``(largest chunk, BV, KB)`` for these head dims and input dtype on a GPU: what keeps
    every launch within registers (no spills) and shared memory on sm80 and sm90."""
    bk, bvmax = pow2_block(dk), pow2_block(dv)
    if dtype in _LOW and bk > 128:
        chunk, bv, kb = 32, 16, 64
    elif dtype in _LOW:
        chunk, bv, kb = 64, (64 if bk <= 32 else 32), 64
    elif bk <= 32:  # fp32 operands (tf32x3 dots) take about twice the registers
        chunk, bv, kb = 32, 32, 32
    elif bk <= 64:
        chunk, bv, kb = 32, 16, 32
    else:
        chunk, bv, kb = 16, 16, 32
    return chunk, min(bv, bvmax), min(kb, bk)


def chunk_cap(dtype: torch.dtype, dk: int, dv: int) -> int:
    """The largest chunk the kernels use for these head dims and input dtype."""
    return _plan(dtype, dk, dv)[0]


def block_v(dtype: torch.dtype, dk: int, dv: int) -> int:
    """Value columns per program (the interpreter always uses 16)."""
    return _INTERPRET_BV if interpreting() else _plan(dtype, dk, dv)[1]


def _precision(op_dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision``: TF32 for fp16/bf16 operands (unused by those dots) or
    when the user allowed TF32; otherwise ``tf32x3`` (three TF32 products, fp32-accurate on
    tensor cores, where ``ieee`` would fall back to FMA loops that spill registers)."""
    prec = dot_precision(op_dtype in _LOW)
    return "tf32x3" if prec == "ieee" else prec


def _op_dtype(args) -> torch.dtype:
    return (args["qw"] if "qw" in args else args["do"]).dtype


# (num_warps, num_stages) candidates; every one compiled for sm80 and sm90 without spills.
# A [128, BV] state with 4 warps spills on sm80, so key dims above 64 take 8 warps.
_RECUR = [(4, 1), (4, 2), (8, 1), (8, 2)]
_RECUR_WIDE = [(8, 1), (8, 2)]
_PAR = [(4, 1), (4, 2), (8, 2)]
_PAR_NARROW = [(2, 1), (2, 2), (8, 2)]  # dk <= 16: with 4 warps ptxas spills 4 bytes (fp32, sm90)


def _recur_configs(cc, args):
    """The two recurrence kernels (``_delta_fwd_h_kernel``, ``_delta_bwd_dh_kernel``)."""
    _, bv, _ = _plan(_op_dtype(args), args["BK"], args["DV"])
    pairs = _RECUR if args["BK"] <= 64 else _RECUR_WIDE
    return [triton.Config({"BV": bv}, num_warps=w, num_stages=s) for w, s in pairs]


def _par_configs(cc, args):
    """The two per-chunk kernels (``_delta_fwd_o_kernel``, ``_delta_bwd_grads_kernel``)."""
    _, bv, kb = _plan(_op_dtype(args), args["BK"], args["DV"])
    pairs = _PAR if args["BK"] > 16 else _PAR_NARROW
    return [triton.Config({"BV": bv, "KB": kb}, num_warps=w, num_stages=s) for w, s in pairs]


_INTERPRET = triton.Config({"BV": _INTERPRET_BV}, num_warps=4, num_stages=1)
_INTERPRET_PAR = triton.Config({"BV": _INTERPRET_BV, "KB": 16}, num_warps=4, num_stages=1)


@triton.jit
def _ld(ptr, rows, cols, stride_r, stride_c, r0, c0, BR: tl.constexpr, BC: tl.constexpr):
    """The ``[BR, BC]`` tile at ``(r0, c0)`` of a ``rows x cols`` matrix, zero outside it.
    ``ptr`` is 16-byte aligned (the wrapper's buffers are, and every chunk/partial offset is a
    multiple of 16 bytes): the hint lets contiguous rows load as 16-byte vectors."""
    ptr = tl.multiple_of(ptr, 16)
    rr = r0 + tl.arange(0, BR)
    cc = c0 + tl.arange(0, BC)
    mask = (rr[:, None] < rows) & (cc[None, :] < cols)
    return tl.load(ptr + rr[:, None] * stride_r + cc[None, :] * stride_c, mask=mask, other=0.0)


@triton.jit
def _st(ptr, val, rows, cols, stride_r, stride_c, r0, c0, BR: tl.constexpr, BC: tl.constexpr):
    """Store ``val`` as the ``[BR, BC]`` tile at ``(r0, c0)`` of a ``rows x cols`` matrix
    (``ptr`` 16-byte aligned, as in :func:`_ld`)."""
    ptr = tl.multiple_of(ptr, 16)
    rr = r0 + tl.arange(0, BR)
    cc = c0 + tl.arange(0, BC)
    mask = (rr[:, None] < rows) & (cc[None, :] < cols)
    tl.store(ptr + rr[:, None] * stride_r + cc[None, :] * stride_c, val, mask=mask)


@tuned(_recur_configs, interpret=_INTERPRET, key=["DK", "DV", "C", "BK"])
@triton.jit
def _delta_fwd_h_kernel(qw, u, kc, hbuf, dbuf,
                        N, DK: tl.constexpr, DV: tl.constexpr,
                        C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """Forward recurrence for one (batch-head, value block): stores ``S^T`` at every chunk
    start and ``D = U - W S^T`` of every chunk (float32)."""
    bh = tl.program_id(0).to(tl.int64)
    v0 = tl.program_id(1) * BV
    state = tl.zeros([BK, BV], dtype=tl.float32)  # S^T, this block's columns
    for n in range(N):
        chunk = bh * N + n
        _st(hbuf + chunk * DK * DV, state, DK, DV, DV, 1, 0, v0, BK, BV)
        wn = _ld(qw + chunk * 2 * C * DK, 2 * C, DK, DK, 1, C, 0, C, BK)
        ktn = _ld(kc + chunk * C * DK, DK, C, 1, DK, 0, 0, BK, C)  # K^T
        un = _ld(u + chunk * C * DV, C, DV, DV, 1, 0, v0, C, BV)
        dn = un.to(tl.float32) - tl.dot(wn, state.to(wn.dtype), input_precision=PREC)
        _st(dbuf + chunk * C * DV, dn, C, DV, DV, 1, 0, v0, C, BV)
        state += tl.dot(ktn, dn.to(ktn.dtype), input_precision=PREC)


@tuned(_par_configs, interpret=_INTERPRET_PAR, key=["DK", "DV", "C", "BK"])
@triton.jit
def _delta_fwd_o_kernel(qw, qk, hbuf, dbuf, o,
                        DK: tl.constexpr, DV: tl.constexpr,
                        C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, KB: tl.constexpr,
                        PREC: tl.constexpr):
    """Output of one (chunk, value block): ``O = Q S^T + tril(Q K^T) D`` (``Q S^T`` summed
    over blocks of ``KB`` key columns, to bound the registers)."""
    chunk = tl.program_id(0).to(tl.int64)
    v0 = tl.program_id(1) * BV
    an = _ld(qk + chunk * C * C, C, C, C, 1, 0, 0, C, C)
    dn = _ld(dbuf + chunk * C * DV, C, DV, DV, 1, 0, v0, C, BV)
    on = tl.dot(an, dn.to(an.dtype), input_precision=PREC)
    for k0 in range(0, BK, KB):
        qn = _ld(qw + chunk * 2 * C * DK, 2 * C, DK, DK, 1, 0, k0, C, KB)
        sn = _ld(hbuf + chunk * DK * DV, DK, DV, DV, 1, k0, v0, KB, BV)
        on += tl.dot(qn, sn.to(qn.dtype), input_precision=PREC)
    _st(o + chunk * C * DV, on, C, DV, DV, 1, 0, v0, C, BV)


@tuned(_recur_configs, interpret=_INTERPRET, key=["DK", "DV", "C", "BK"])
@triton.jit
def _delta_bwd_dh_kernel(qw, kc, qk, do, dhbuf, du,
                         N, DK: tl.constexpr, DV: tl.constexpr,
                         C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """Backward recurrence for one (batch-head, value block), chunks in reverse: stores
    ``dS^T`` at every chunk end and ``dU = dD = A^T dO + K dS^T`` (float32)."""
    bh = tl.program_id(0).to(tl.int64)
    v0 = tl.program_id(1) * BV
    dstate = tl.zeros([BK, BV], dtype=tl.float32)  # gradient of S^T after the chunk
    for it in range(N):
        chunk = bh * N + (N - 1 - it)
        _st(dhbuf + chunk * DK * DV, dstate, DK, DV, DV, 1, 0, v0, BK, BV)
        qtn = _ld(qw + chunk * 2 * C * DK, DK, 2 * C, 1, DK, 0, 0, BK, C)  # Q^T
        wtn = _ld(qw + chunk * 2 * C * DK, DK, 2 * C, 1, DK, 0, C, BK, C)  # W^T
        kn = _ld(kc + chunk * C * DK, C, DK, DK, 1, 0, 0, C, BK)
        atn = _ld(qk + chunk * C * C, C, C, 1, C, 0, 0, C, C)  # A^T
        don = _ld(do + chunk * C * DV, C, DV, DV, 1, 0, v0, C, BV)
        # O = Q S^T + A D ;  S^T_next = S^T + K^T D ;  D = U - W S^T
        ddn = tl.dot(atn, don, input_precision=PREC) + tl.dot(kn, dstate.to(kn.dtype), input_precision=PREC)
        _st(du + chunk * C * DV, ddn, C, DV, DV, 1, 0, v0, C, BV)
        dstate += tl.dot(qtn, don, input_precision=PREC) - tl.dot(wtn, ddn.to(wtn.dtype), input_precision=PREC)


@tuned(_par_configs, interpret=_INTERPRET_PAR, key=["DK", "DV", "C", "BK"])
@triton.jit
def _delta_bwd_grads_kernel(do, hbuf, dhbuf, dbuf, du, dqw, dkc, dqk,
                            DK: tl.constexpr, DV: tl.constexpr,
                            C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, KB: tl.constexpr,
                            PREC: tl.constexpr):
    """One (chunk, value block), no recurrence: this block's partial ``dQ = dO S``,
    ``dW = -dD S``, ``dK = D dS`` and ``d tril(QK^T) = dO D^T``, each into the block's own
    slice of the partial-sum buffers."""
    chunk = tl.program_id(0).to(tl.int64)
    v0 = tl.program_id(1) * BV
    part = tl.program_id(1).to(tl.int64) * tl.num_programs(0) + chunk
    don = _ld(do + chunk * C * DV, C, DV, DV, 1, 0, v0, C, BV)
    dt = don.dtype
    dn = _ld(dbuf + chunk * C * DV, C, DV, DV, 1, 0, v0, C, BV).to(dt)
    ddn = _ld(du + chunk * C * DV, C, DV, DV, 1, 0, v0, C, BV).to(dt)
    dnt = _ld(dbuf + chunk * C * DV, DV, C, 1, DV, v0, 0, BV, C).to(dt)  # D^T
    _st(dqk + part * C * C, tl.dot(don, dnt, input_precision=PREC), C, C, C, 1, 0, 0, C, C)
    for k0 in range(0, BK, KB):  # blocks of KB key columns
        st = _ld(hbuf + chunk * DK * DV, DV, DK, 1, DV, v0, k0, BV, KB).to(dt)  # S, this block's rows
        dst = _ld(dhbuf + chunk * DK * DV, DV, DK, 1, DV, v0, k0, BV, KB).to(dt)
        _st(dqw + part * 2 * C * DK, tl.dot(don, st, input_precision=PREC), 2 * C, DK, DK, 1, 0, k0, C, KB)
        _st(dqw + part * 2 * C * DK, -tl.dot(ddn, st, input_precision=PREC), 2 * C, DK, DK, 1, C, k0, C, KB)
        _st(dkc + part * C * DK, tl.dot(dn, dst, input_precision=PREC), C, DK, DK, 1, 0, k0, C, KB)


def _aligned(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a contiguous ``dtype`` tensor whose data is 16-byte aligned (the kernels' hint)."""
    x = x.to(dtype).contiguous()
    return x if x.data_ptr() % 16 == 0 else x.clone()


def _sum_parts(x: torch.Tensor) -> torch.Tensor:
    return x[0] if x.shape[0] == 1 else x.sum(0)


class _DeltaCoreTriton(torch.autograd.Function):
    """Same contract as ``kernels.deltanet.fast.deltanet_recurrence`` (float32 in, float32
    out); ``op_dtype`` is the dtype of the ``tl.dot`` operands (the input dtype)."""

    @staticmethod
    def forward(ctx, qw, u, kc, qk, op_dtype):
        bh, n, chunk2, dk = qw.shape
        chunk = chunk2 // 2
        dv = u.shape[-1]
        qw, u, kc, qk = (_aligned(x, op_dtype) for x in (qw, u, kc, qk))
        f32 = {"device": qw.device, "dtype": torch.float32}
        out = torch.empty(bh, n, chunk, dv, **f32)
        hbuf = torch.empty(bh, n, dk, dv, **f32)
        dbuf = torch.empty(bh, n, chunk, dv, **f32)
        prec, bk = _precision(op_dtype), pow2_block(dk)
        with on_device(qw):
            _delta_fwd_h_kernel[lambda META: (bh, triton.cdiv(dv, META["BV"]))](
                qw, u, kc, hbuf, dbuf, n, dk, dv, C=chunk, BK=bk, PREC=prec)
            _delta_fwd_o_kernel[lambda META: (bh * n, triton.cdiv(dv, META["BV"]))](
                qw, qk, hbuf, dbuf, out, dk, dv, C=chunk, BK=bk, PREC=prec)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(qw, kc, qk, hbuf, dbuf)
        ctx.prec = prec
        return out

    @staticmethod
    def backward(ctx, d_out):
        qw, kc, qk, hbuf, dbuf = ctx.saved_tensors
        bh, n, chunk2, dk = qw.shape
        chunk = chunk2 // 2
        dv = hbuf.shape[-1]
        d_out = _aligned(d_out, qw.dtype)
        nv = triton.cdiv(dv, block_v(qw.dtype, dk, dv))
        f32 = {"device": qw.device, "dtype": torch.float32}
        dhbuf = torch.empty(hbuf.shape, **f32)
        d_u = torch.empty(dbuf.shape, **f32)
        d_qw = torch.empty(nv, *qw.shape, **f32)
        d_kc = torch.empty(nv, *kc.shape, **f32)
        d_qk = torch.empty(nv, *qk.shape, **f32)
        bk = pow2_block(dk)
        with on_device(qw):
            _delta_bwd_dh_kernel[lambda META: (bh, triton.cdiv(dv, META["BV"]))](
                qw, kc, qk, d_out, dhbuf, d_u, n, dk, dv, C=chunk, BK=bk, PREC=ctx.prec)
            _delta_bwd_grads_kernel[lambda META: (bh * n, triton.cdiv(dv, META["BV"]))](
                d_out, hbuf, dhbuf, dbuf, d_u, d_qw, d_kc, d_qk, dk, dv, C=chunk, BK=bk, PREC=ctx.prec)
        return _sum_parts(d_qw), d_u, _sum_parts(d_kc), _sum_parts(d_qk), None


def deltanet_triton(q, k, v, beta, scale=None, chunk_size: int = 64):
    """DeltaNet with the Triton recurrence; same contract as ``deltanet_fast``.

    ``chunk_size`` must be a power of two >= 16; it is capped by :func:`chunk_cap` (what fits
    in shared memory for these head dims and dtype), and short sequences use the smallest
    power-of-two chunk >= 16 that covers them.
    """
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    check_head_dim("deltanet", dk, HEAD_DIMS)
    check_head_dim("deltanet", dv, HEAD_DIMS)
    if dk > FP32_MAX_DK and q.dtype not in _LOW:
        raise UnsupportedHeadDim(
            f"deltanet: key head_dim {dk} with {q.dtype} inputs is not supported by the Triton kernel "
            f"(at most {FP32_MAX_DK} in float32, {max(HEAD_DIMS)} in bf16/fp16); use bf16 or fp16 inputs, "
            f"more heads of a smaller dimension, or run the torch path (ARCHBENCH_KERNELS=torch)")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"deltanet: chunk_size must be a power of two >= 16, got {chunk_size}")
    scale = dk ** -0.5 if scale is None else scale
    in_dtype = q.dtype
    op_dtype = in_dtype if in_dtype in _LOW else torch.float32
    q, k, v, beta = (x.float() for x in (q, k, v, beta))
    chunk = min(chunk_size, chunk_cap(in_dtype, dk, dv), pow2_block(t))
    qw, u, kc, qk = deltanet_prep(q, k, v, beta, scale, chunk)
    out = _DeltaCoreTriton.apply(qw, u, kc, qk, op_dtype)
    return out.reshape(b, h, -1, dv)[:, :, :t].movedim(1, 2).to(in_dtype)


# -- offline compile test (kernels.compile_targets) -----------------------------------------------

def compile_launches(cc: int, dtype: torch.dtype, head_dim: int, chunk: int | None = None) -> list[KernelLaunch]:
    """Every launch ``deltanet_triton`` issues for ``dk = dv = head_dim`` and ``dtype`` on
    ``sm_<cc>``, at the largest chunk it uses (:func:`chunk_cap`; ``chunk``: a smaller power of
    two >= 16 instead, as short sequences or a small ``chunk_size`` get): the two forward
    kernels and the two backward kernels.  None for float32 above :data:`FP32_MAX_DK` (refused
    before any launch)."""
    if dtype not in _LOW and head_dim > FP32_MAX_DK:
        return []
    op_dtype = dtype if dtype in _LOW else torch.float32
    bk = pow2_block(head_dim)
    chunk = min(chunk or chunk_cap(dtype, head_dim, head_dim), chunk_cap(dtype, head_dim, head_dim))
    meta = torch.empty(0, dtype=op_dtype, device="meta")
    args = {"qw": meta, "do": meta, "BK": bk, "DV": head_dim, "C": chunk}
    const = {"C": chunk, "BK": bk, "DK": head_dim, "DV": head_dim, "PREC": _precision(op_dtype)}
    ptrs = {**{name: op_dtype for name in ("qw", "u", "kc", "qk", "do")},
            **{name: torch.float32 for name in ("hbuf", "dbuf", "o", "dhbuf", "du", "dqw", "dkc", "dqk")}}
    kernels = [("deltanet_fwd_h", _delta_fwd_h_kernel, _recur_configs),
               ("deltanet_fwd_o", _delta_fwd_o_kernel, _par_configs),
               ("deltanet_bwd_dh", _delta_bwd_dh_kernel, _recur_configs),
               ("deltanet_bwd_grads", _delta_bwd_grads_kernel, _par_configs)]
    out = []
    for name, fn, configs in kernels:
        out += launches_for(name, fn, configs, cc, args, pointers=ptrs, constexprs=const)
    return out
