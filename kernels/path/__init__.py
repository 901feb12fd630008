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

import torch

from kernels.dispatch import Dispatch
from kernels.path.fast import path_attention_fast

__all__ = ["path_attention"]

_TRITON = "kernels.path.triton_kernel:path_attention_triton"
_dispatch = Dispatch("path_attention", torch=path_attention_fast, triton=_TRITON)


def path_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                   beta: torch.Tensor, log_f: torch.Tensor | None = None,
                   scale: float | None = None) -> torch.Tensor:
    """Causal PaTH attention; ``scale`` defaults to ``head_dim ** -0.5`` (``log_f`` is unscaled)."""
    fn = _dispatch(q, k, v, like_q={"w": w}, per_head={"beta": beta, "log_f": log_f})
    return fn(q, k, v, w, beta, log_f, scale)

