"""Momentum attention on CUDA: a fused shear + RoPE Triton kernel, then SDPA.

The attention itself is ``kernels.softmax_attention`` (SDPA's FlashAttention kernel is
already the fastest there is).  What Triton adds is one pass for the query/key transform

    y_t = RoPE_t(x_t + gamma_t * p_t),   p_t = x_t - x_{t-1},  p_0 = 0

instead of ~10 elementwise torch kernels.  The backward is the transpose, also one pass:
``dz_t = RoPE_t^T(dy_t)``, ``dx_t = (1 + gamma_t [t>0]) dz_t - gamma_{t+1} dz_{t+1}``, and
``dgamma_t = dz_t . p_t`` per (batch, time, head); broadcasting gamma (a scalar or ``[H]``)
to ``[B, T, H]`` happens in torch, whose autograd sums that gradient back to gamma's shape.
The cos/sin tables come from ``kernels.rope.rope_angles`` (float64 angles, as in
``apply_rope``), so both paths rotate identically.

Precision: elementwise, computed in fp32 whatever the input dtype (fp16/bf16/fp32); y and
dx are stored in the input dtype, the gamma gradient in fp32.  No ``tl.dot``.

Configs (:func:`kernels.triton_utils.tuned`): one program covers ``BLOCK_T`` positions of
one batch-head and the whole (padded) half head dim; ``BLOCK_T`` and the warps are
autotuned per target among tiles of 2048 / 1024 / 4096 elements per half (4, 2 and 8
warps), each compiled offline without spills (``python -m kernels.compile_targets --ops
momentum``).  Under ``TRITON_INTERPRET=1`` the time block is 16, so small tests cross block
boundaries (``x_{t-1}`` and ``dz_{t+1}`` are read from the neighbouring block).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.rope import rope_angles
from kernels.softmax_attention import softmax_attention
from kernels.triton_utils import KernelLaunch, check_head_dim, launches_for, on_device, tuned

HEAD_DIMS = (16, 32, 64, 128, 256)
DTYPES = ("bf16", "fp16", "fp32")


def _configs(cc, args):
    """Tiles of 2048 / 1024 / 4096 elements per half head dim on 4 / 2 / 8 warps (each thread
    holds 16 per live tile; sm80 and sm90 alike: the kernel is bandwidth bound).  1024 on 4
    warps is not offered: ptxas spills it for fp16 on sm90."""
    half = int(args["BLOCK_HALF"])
    return [triton.Config({"BLOCK_T": max(1, n // half)}, num_warps=w, num_stages=1)
            for n, w in ((2048, 4), (1024, 2), (4096, 8))]


_INTERPRET = triton.Config({"BLOCK_T": 16}, num_warps=1, num_stages=1)


@tuned(_configs, interpret=_INTERPRET, key=["T", "BLOCK_HALF"])
@triton.jit
def _shear_rope_fwd_kernel(X, G, COS, SIN, Y, stride_xb, stride_xt, stride_xh,
                           stride_gb, stride_gt, stride_gh, H, T, HALF,
                           BLOCK_T: tl.constexpr, BLOCK_HALF: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_i = tl.arange(0, BLOCK_HALF)
    tmask = offs_t < T
    imask = offs_i < HALF
    m = tmask[:, None] & imask[None, :]
    mp = m & (offs_t[:, None] >= 1)
    base = b * stride_xb + h * stride_xh
    off = base + offs_t[:, None] * stride_xt + offs_i[None, :]
    x1 = tl.load(X + off, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(X + off + HALF, mask=m, other=0.0).to(tl.float32)
    p1 = tl.where(mp, x1 - tl.load(X + off - stride_xt, mask=mp, other=0.0).to(tl.float32), 0.0)
    p2 = tl.where(mp, x2 - tl.load(X + off + HALF - stride_xt, mask=mp, other=0.0).to(tl.float32), 0.0)
    g = tl.load(G + b * stride_gb + h * stride_gh + offs_t * stride_gt, mask=tmask, other=0.0)
    z1 = x1 + g[:, None] * p1
    z2 = x2 + g[:, None] * p2
    cs_off = offs_t[:, None] * HALF + offs_i[None, :]
    c = tl.load(COS + cs_off, mask=m, other=0.0)
    s = tl.load(SIN + cs_off, mask=m, other=0.0)
    tl.store(Y + off, (z1 * c - z2 * s).to(Y.dtype.element_ty), mask=m)
    tl.store(Y + off + HALF, (z1 * s + z2 * c).to(Y.dtype.element_ty), mask=m)


@triton.jit
def _rope_t(DY, COS, SIN, off, cs_off, m, HALF):
    """``RoPE^T`` of the gradient at the given rows (zero where ``m`` is false)."""
    dy1 = tl.load(DY + off, mask=m, other=0.0).to(tl.float32)
    dy2 = tl.load(DY + off + HALF, mask=m, other=0.0).to(tl.float32)
    c = tl.load(COS + cs_off, mask=m, other=0.0)
    s = tl.load(SIN + cs_off, mask=m, other=0.0)
    return dy1 * c + dy2 * s, dy2 * c - dy1 * s


@tuned(_configs, interpret=_INTERPRET, key=["T", "BLOCK_HALF"])
@triton.jit
def _shear_rope_bwd_kernel(X, G, COS, SIN, DY, DX, DG, stride_xb, stride_xt, stride_xh,
                           stride_gb, stride_gt, stride_gh, H, T, HALF,
                           BLOCK_T: tl.constexpr, BLOCK_HALF: tl.constexpr):
    """X, DY, DX share strides; DG is a contiguous ``[B, T, H]`` fp32 tensor."""
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_i = tl.arange(0, BLOCK_HALF)
    tmask = offs_t < T
    imask = offs_i < HALF
    m = tmask[:, None] & imask[None, :]
    mp = m & (offs_t[:, None] >= 1)
    mn = m & (offs_t[:, None] + 1 < T)
    base = b * stride_xb + h * stride_xh
    off = base + offs_t[:, None] * stride_xt + offs_i[None, :]
    cs_off = offs_t[:, None] * HALF + offs_i[None, :]
    g_ptr = G + b * stride_gb + h * stride_gh + offs_t * stride_gt
    g = tl.load(g_ptr, mask=tmask, other=0.0)
    g_next = tl.load(g_ptr + stride_gt, mask=tmask & (offs_t + 1 < T), other=0.0)
    dz1, dz2 = _rope_t(DY, COS, SIN, off, cs_off, m, HALF)
    dn1, dn2 = _rope_t(DY, COS, SIN, off + stride_xt, cs_off + HALF, mn, HALF)
    gs = tl.where(offs_t >= 1, g, 0.0)
    dx1 = dz1 * (1.0 + gs[:, None]) - g_next[:, None] * dn1
    dx2 = dz2 * (1.0 + gs[:, None]) - g_next[:, None] * dn2
    tl.store(DX + off, dx1.to(DX.dtype.element_ty), mask=m)
    tl.store(DX + off + HALF, dx2.to(DX.dtype.element_ty), mask=m)
    x1 = tl.load(X + off, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(X + off + HALF, mask=m, other=0.0).to(tl.float32)
    p1 = tl.where(mp, x1 - tl.load(X + off - stride_xt, mask=mp, other=0.0).to(tl.float32), 0.0)
    p2 = tl.where(mp, x2 - tl.load(X + off + HALF - stride_xt, mask=mp, other=0.0).to(tl.float32), 0.0)
    dg = tl.sum(dz1 * p1 + dz2 * p2, 1)
    tl.store(DG + (b * T + offs_t) * H + h, dg, mask=tmask)




def _grid(t: int, bh: int):
    return lambda META: (triton.cdiv(t, META["BLOCK_T"]), bh)


def _gamma_bth(gamma, x: torch.Tensor) -> torch.Tensor:
    """gamma (float, 0-d, ``[H]`` or ``[B, T, H]``) as an fp32 ``[B, T, H]`` view (expanded,
    so zero strides where it is broadcast; autograd sums its gradient back to gamma's shape).

    fp32 whatever x's dtype: the kernel computes in fp32, and rounding a learnable gamma
    (and its gradient, before the broadcast sum) to bf16 would cost ~3 significant digits.
    """
    b, t, h, _ = x.shape
    if not isinstance(gamma, torch.Tensor):
        return torch.full((1, 1, 1), float(gamma), device=x.device, dtype=torch.float32).expand(b, t, h)
    g = gamma.to(device=x.device, dtype=torch.float32)
    if g.dim() == 0:
        g = g.reshape(1, 1, 1)
    elif g.dim() == 1 and g.shape[0] == h:
        g = g.view(1, 1, h)
    elif not (g.dim() == 3 and g.shape == x.shape[:3]):
        raise ValueError(f"momentum gamma must be a float, a 0-d tensor, [heads]={h} or "
                         f"[batch, time, heads]={tuple(x.shape[:3])}; got shape {tuple(g.shape)}")
    return g.expand(b, t, h)


class _ShearRope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g_full, cos, sin):
        b, t, h, d = x.shape
        x = x.contiguous()
        g32 = g_full  # fp32 [B, T, H], possibly with zero strides
        y = torch.empty_like(x)
        with on_device(x):
            _shear_rope_fwd_kernel[_grid(t, b * h)](
                x, g32, cos, sin, y, x.stride(0), x.stride(1), x.stride(2),
                g32.stride(0), g32.stride(1), g32.stride(2), h, t, d // 2,
                BLOCK_HALF=triton.next_power_of_2(d // 2))
        ctx.save_for_backward(x, g32, cos, sin)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, g32, cos, sin = ctx.saved_tensors
        b, t, h, d = x.shape
        dy = dy.contiguous()
        if dy.stride() != x.stride():  # size-1 dims can carry any stride; align to x's
            dy = torch.empty_like(x).copy_(dy)
        dx = torch.empty_like(x)
        dg = torch.empty(b, t, h, device=x.device, dtype=torch.float32)
        with on_device(x):
            _shear_rope_bwd_kernel[_grid(t, b * h)](
                x, g32, cos, sin, dy, dx, dg, x.stride(0), x.stride(1), x.stride(2),
                g32.stride(0), g32.stride(1), g32.stride(2), h, t, d // 2,
                BLOCK_HALF=triton.next_power_of_2(d // 2))
        return dx, (dg if ctx.needs_input_grad[1] else None), None, None


def shear_rope_triton(x: torch.Tensor, gamma, rope_base: float = 10000.0) -> torch.Tensor:
    """``RoPE(shear(x, gamma))`` in one kernel; ``x`` is ``[B, T, H, D]`` with D even."""
    b, t, h, d = x.shape
    check_head_dim("momentum_attention", d, HEAD_DIMS)
    if d % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {d}")
    g_full = _gamma_bth(gamma, x)
    cos, sin = rope_angles(t, d, rope_base, device=x.device, dtype=torch.float32)
    return _ShearRope.apply(x, g_full, cos.contiguous(), sin.contiguous())


def momentum_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma,
                              scale: float | None = None, rope_base: float = 10000.0) -> torch.Tensor:
    """Momentum attention: fused shear + RoPE on q and k (Triton), then SDPA."""
    check_head_dim("momentum_attention", q.shape[-1], HEAD_DIMS)
    qs = shear_rope_triton(q, gamma, rope_base)
    ks = shear_rope_triton(k, gamma, rope_base)
    return softmax_attention(qs, ks, v, scale=scale)


def compile_launches(cc: int, dtype: torch.dtype, head_dim: int) -> list[KernelLaunch]:
    """The forward and backward shear + RoPE launches with each config the autotuner may pick
    on ``sm_<cc>`` (x in ``dtype``; gamma, cos, sin and the gamma gradient in fp32)."""
    half = triton.next_power_of_2(head_dim // 2)
    f32 = torch.float32
    const = {"BLOCK_HALF": half}
    args = {"BLOCK_HALF": half}
    return (launches_for("shear_rope_fwd", _shear_rope_fwd_kernel, _configs, cc, args,
                         pointers={"X": dtype, "G": f32, "COS": f32, "SIN": f32, "Y": dtype}, constexprs=const)
            + launches_for("shear_rope_bwd", _shear_rope_bwd_kernel, _configs, cc, args,
                           pointers={"X": dtype, "G": f32, "COS": f32, "SIN": f32, "DY": dtype, "DX": dtype,
                                     "DG": f32}, constexprs=const))
