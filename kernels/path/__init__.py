"""PaTH attention (Yang et al. 2025): causal softmax attention whose logits see keys
through a data-dependent product of Householder-like matrices ``H_t = I - beta_t w_t w_t^T``;
with ``log_f`` it is PaTH-FoX (a forgetting-gate bias added to the logits).

``path_attention(q, k, v, w, beta, log_f=None, scale=None)``: ``q, k, v, w`` are
``[batch, time, heads, head_dim]`` (``w`` unit-norm rows), ``beta`` (in ``(0, 2)``) and
``log_f`` (log forget gates, ``<= 0``) are ``[batch, time, heads]``; the output is
``[batch, time, heads, head_dim]``.  CUDA tensors with Triton installed run the Triton
kernels (:mod:`.triton_kernel`); everything else runs the chunked torch path
(:mod:`.fast`).  :mod:`.reference` holds the plain definition used by the tests.
"""

from __future__ import annotations

import importlib.util

import torch

from kernels.path.fast import path_attention_fast

_HAS_TRITON = importlib.util.find_spec("triton") is not None

__all__ = ["path_attention"]


def _check(q, k, v, w, beta, log_f):
    if q.dim() != 4:
        raise ValueError(f"q must be [batch, time, heads, head_dim], got shape {tuple(q.shape)}")
    for name, x in (("k", k), ("w", w)):
        if x.shape != q.shape:
            raise ValueError(f"{name} must have the shape of q {tuple(q.shape)}, got {tuple(x.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [batch, time, heads, dv] matching q, got {tuple(v.shape)}")
    for name, x in (("beta", beta), ("log_f", log_f)):
        if x is not None and x.shape != q.shape[:3]:
            raise ValueError(f"{name} must be [batch, time, heads] = {tuple(q.shape[:3])}, "
                             f"got {tuple(x.shape)}")


def path_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                   beta: torch.Tensor, log_f: torch.Tensor | None = None,
                   scale: float | None = None) -> torch.Tensor:
    """Causal PaTH attention; ``scale`` defaults to ``head_dim ** -0.5`` (``log_f`` is unscaled)."""
    _check(q, k, v, w, beta, log_f)
    if q.is_cuda and _HAS_TRITON:
        from kernels.path.triton_kernel import path_attention_triton

        return path_attention_triton(q, k, v, w, beta, log_f, scale)
    return path_attention_fast(q, k, v, w, beta, log_f, scale)
