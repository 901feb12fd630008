"""PaTH attention (Yang et al. 2025): causal softmax attention whose logits see keys
through a data-dependent product of Householder-like matrices ``H_t = I - beta_t w_t w_t^T``;
with ``log_f`` it is PaTH-FoX (a forgetting-gate bias added to the logits).

``path_attention(q, k, v, w, beta, log_f=None, scale=None)``: ``q, k, v, w`` are
``[batch, time, heads, head_dim]`` (``w`` unit-norm rows), ``beta`` (in ``(0, 2)``) and
``log_f`` (log forget gates, ``<= 0``) are ``[batch, time, heads]``; the output is
``[batch, time, heads, head_dim]``.  Dispatch (:mod:`kernels.dispatch`): CUDA tensors with
Triton installed run the Triton kernels (:mod:`.triton_kernel`); everything else runs the
chunked torch path (:mod:`.fast`).  :mod:`.reference` holds the plain definition used by
the tests.

Registered as two ops, each with ``torch``, ``triton`` and ``reference``: ``path`` (no gate)
and ``path-fox`` (with ``log_f``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from kernels.dispatch import Dispatch
from kernels.flops import attention_flops, chunks
from kernels.inputs import KernelShape, draw_qkv, log_forget_gates, uniform
from kernels.path.fast import path_attention_fast
from kernels.registry import TRITON, lazy, register_kernel, register_op

__all__ = ["path_attention"]

_TRITON = "kernels.path.triton_kernel:path_attention_triton"
_REFERENCE = "kernels.path.reference:path_attention_ref"
_dispatch = Dispatch("path_attention", torch=path_attention_fast, triton=_TRITON)


def path_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                   beta: torch.Tensor, log_f: torch.Tensor | None = None,
                   scale: float | None = None) -> torch.Tensor:
    """Causal PaTH attention; ``scale`` defaults to ``head_dim ** -0.5`` (``log_f`` is unscaled)."""
    fn = _dispatch(q, k, v, like_q={"w": w}, per_head={"beta": beta, "log_f": log_f})
    return fn(q, k, v, w, beta, log_f, scale)


# -- registration (the benchmark's view of the ops) ----------------------------------------------

def _path_draw(spec: KernelShape) -> tuple[dict[str, Any], torch.Generator]:
    base, gen = draw_qkv(spec)
    w = torch.randn((spec.batch, spec.seq_len, spec.heads, spec.head_dim), generator=gen, dtype=torch.float32)
    base["w"] = F.normalize(w, dim=-1).to(device=spec.device, dtype=spec.dtype)
    base["beta"] = uniform((spec.batch, spec.seq_len, spec.heads), 0.0, 2.0, spec, gen)
    return base, gen


def path_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v``, unit-norm ``w`` and ``beta ~ U(0, 2)``."""
    return _path_draw(spec)[0]


def path_fox_inputs(spec: KernelShape) -> dict[str, Any]:
    """:func:`path_inputs` plus ``log_f``."""
    base, gen = _path_draw(spec)
    return {**base, "log_f": log_forget_gates(spec, gen)}


def path_flops(shape: KernelShape) -> tuple[float, float]:
    """``(A, transport + ut)``, the chunked PaTH algorithm, with ``c = min(64, T)``, ``n = ceil(T / c)``:

    * ``transport = BH * c * D^2 * (n-1)(n-2)``: every query row of chunk ``a`` is carried
      through the ``D x D`` Householder product ``P_b`` of each chunk ``0 < b < a``
      (``2 D^2`` per row and chunk, ``c (n-1)(n-2)/2`` row-chunk pairs);
    * ``ut = BH * n * (8c^2 D + c^3 + 2c^2 (c+D) + 2c (c+D)^2)``: per chunk the Gram matrix of
      ``[W; Q]`` and ``[W; K]`` (``[2c, D] x [D, 2c]``), the UT transform (a ``c x c``
      unit-triangular solve with ``c`` right-hand sides, ``c^3``), ``A [W | tril(W K^T)]``
      and the correction ``[tril(Q W^T); W^T] X``.

    The gate of PaTH-FoX is elementwise and not counted, so both ops share this formula.
    """
    b, t, h, d = shape.batch, shape.seq_len, shape.heads, shape.head_dim
    bh = float(b * h)
    c, n = chunks(t)
    transport = bh * c * d * d * (n - 1) * max(n - 2, 0)
    ut = bh * n * (8 * c * c * d + c ** 3 + 2 * c * c * (c + d) + 2 * c * (c + d) ** 2)
    return attention_flops(b, t, h, d, shape.causal), transport + ut


def _without_gate(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn(q, k, v, w, beta)`` with ``log_f=None``: op ``path``'s inputs have no gate."""
    def call(q, k, v, w, beta):
        return fn(q, k, v, w, beta, None)
    call.__name__ = getattr(fn, "__name__", "path")
    call.__module__ = getattr(fn, "__module__", __name__)
    return call


register_op("path", inputs=path_inputs, flops=path_flops, description="PaTH attention")
register_op("path-fox", inputs=path_fox_inputs, flops=path_flops, description="PaTH attention with a forget gate")
register_kernel("path", "torch")(_without_gate(path_attention_fast))
register_kernel("path", "triton", **TRITON)(_without_gate(lazy(_TRITON)))
register_kernel("path", "reference", default=False, max_seq_len=256)(_without_gate(lazy(_REFERENCE)))
register_kernel("path-fox", "torch")(path_attention_fast)
register_kernel("path-fox", "triton", **TRITON)(_TRITON)
register_kernel("path-fox", "reference", default=False, max_seq_len=256)(_REFERENCE)
