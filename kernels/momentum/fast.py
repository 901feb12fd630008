"""Momentum attention on CPU: a time shear of q and k, RoPE, then fused SDPA.

The shear ``x_t + gamma * (x_t - x_{t-1})`` is one ``lerp(x_{t-1}, x_t, 1 + gamma)``;
everything else is ``kernels.rope.apply_rope`` and ``kernels.softmax_attention``, so memory
stays O(T * D).  q and k travel together (concatenated along heads) through the shear and
RoPE, and the backward of that transform is written out by hand: on CPU each elementwise
kernel costs mostly its allocation and memory traffic, not its arithmetic, so the point is
to launch (and allocate) as few as possible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from kernels.rope import apply_rope, rope_angles
from kernels.softmax_attention import softmax_attention


def gamma_as_tensor(gamma, x: torch.Tensor) -> torch.Tensor | float:
    """Shape gamma to broadcast against ``[B, T, H, D]``: float and 0-d stay scalars,
    ``[H]`` -> ``[1, 1, H, 1]``, ``[B, T, H]`` -> ``[B, T, H, 1]``."""
    if not isinstance(gamma, torch.Tensor):
        return float(gamma)
    g = gamma.to(dtype=x.dtype, device=x.device)
    if g.dim() == 0:
        return g
    h = x.shape[2]
    if g.dim() == 1 and g.shape[0] == h:
        return g.view(1, 1, h, 1)
    if g.dim() == 3 and g.shape == x.shape[:3]:
        return g[..., None]
    raise ValueError(f"momentum gamma must be a float, a 0-d tensor, [heads]={h} or "
                     f"[batch, time, heads]={tuple(x.shape[:3])}; got shape {tuple(g.shape)}")


def shear(x: torch.Tensor, gamma) -> torch.Tensor:
    """``y_t = x_t + gamma * (x_t - x_{t-1})`` along time (dim 1), ``y_0 = x_0``.

    ``gamma`` as returned by ``gamma_as_tensor``.  With ``x_{-1} := x_0`` this is
    ``lerp(x_{t-1}, x_t, 1 + gamma)`` at every t (``p_0 = 0`` falls out).
    """
    prev = torch.cat((x[:, :1], x[:, :-1]), dim=1)
    return torch.lerp(prev, x, 1.0 + gamma)


class _ShearRope(torch.autograd.Function):
    """``apply_rope(shear(x, gamma))`` with a hand-written backward.

    Autograd through the dozen small ops of shear + RoPE spends most of its time allocating
    and zero-filling slice gradients; the transpose written out is half as many kernels:
    ``dz = RoPE^T dy`` (rotation by minus the angle), ``dx_t = dz_t + gamma_t dz_t [t>0]
    - gamma_{t+1} dz_{t+1}`` and ``dgamma_t = dz_t . (x_t - x_{t-1})`` summed to gamma's shape.
    ``gamma`` is a tensor broadcastable to ``x`` (0-d, ``[1, 1, H, 1]`` or ``[B, T, H, 1]``).
    """

    @staticmethod
    def forward(ctx, x, gamma, rope_base):
        ctx.save_for_backward(x, gamma)
        ctx.rope_base = rope_base
        return apply_rope(shear(x, gamma), rope_base)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, gamma = ctx.saved_tensors
        t, d = x.shape[1], x.shape[3]
        half = d // 2
        cos, sin = rope_angles(t, d, ctx.rope_base, device=x.device, dtype=x.dtype)
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        dy1, dy2 = dy[..., :half], dy[..., half:]
        dz = torch.cat((dy1 * cos + dy2 * sin, dy2 * cos - dy1 * sin), dim=-1)
        gdz = dz * gamma  # gamma_t dz_t
        dx = dz + gdz
        dx[:, 0] -= gdz[:, 0]  # z_0 = x_0: no gamma term at t = 0
        dx[:, :-1] -= gdz[:, 1:]  # x_t also enters z_{t+1} with weight -gamma_{t+1}
        dgamma = None
        if ctx.needs_input_grad[1]:
            prod = dz[:, 1:] * (x[:, 1:] - x[:, :-1])  # t >= 1; p_0 = 0
            if gamma.dim() == 4 and gamma.shape[1] == t and t > 1:  # per position
                dgamma = F.pad(prod.sum(-1, keepdim=True), (0, 0, 0, 0, 1, 0))
            else:
                dgamma = prod.sum_to_size(gamma.shape) if prod.numel() else torch.zeros_like(gamma)
            dgamma = dgamma.reshape(gamma.shape)
        return dx, dgamma, None


def momentum_attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma,
                            scale: float | None = None, rope_base: float = 10000.0) -> torch.Tensor:
    h = q.shape[2]
    g = gamma_as_tensor(gamma, q)
    if not isinstance(g, torch.Tensor):
        g = torch.tensor(g, dtype=q.dtype, device=q.device)
    elif g.dim() == 4 and g.shape[2] == h:
        g = torch.cat((g, g), dim=2)  # per-head / per-position gamma, for q's and k's heads
    qk = torch.cat((q, k), dim=2)  # [B, T, 2H, D]: one pass of shear + RoPE for both
    qs, ks = _ShearRope.apply(qk, g, float(rope_base)).split(h, dim=2)
    return softmax_attention(qs, ks, v, scale=scale)
