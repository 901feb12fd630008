"""The one dispatch every op's public function goes through.

:class:`Dispatch` does two things, in this order, on every call:

1. checks the shared calling convention (``kernels/README.md``): ``q, k, v`` (and ``w``) are
   ``[batch, time, heads, head_dim]``, ``v`` may have its own last dimension unless the op
   says otherwise, per-head scalars (``beta``, ``log_f``) are ``[batch, time, heads]``, and
   ``chunk_size`` (where the op has one) is at least 1.  A bad input raises ``ValueError``
   naming the op, the argument, the expected shape and the shape it got;
2. picks the path: the op's Triton implementation when ``q`` is on CUDA and Triton can be
   imported, else its torch path.  The Triton implementation is a ``"module:attr"`` string,
   imported on the first CUDA call (so importing an op never imports Triton), or a function
   of the op's own that imports it; an op without one (``softmax_attention``) always runs
   its torch path.

It returns the chosen function; the op calls it with its own arguments::

    _dispatch = Dispatch("fox_attention", torch=fox_attention_fast,
                         triton="kernels.fox.triton_kernel:fox_attention_triton", v_like_q=True)

    def fox_attention(q, k, v, log_f, scale=None):
        return _dispatch(q, k, v, per_head={"log_f": log_f})(q, k, v, log_f, scale)
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Mapping

import torch

from archbench.registry import load_target

__all__ = ["HAS_TRITON", "Dispatch", "check_inputs"]

HAS_TRITON = importlib.util.find_spec("triton") is not None
_NOT_LOADED = object()


def check_inputs(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                 like_q: Mapping[str, torch.Tensor] | None = None,
                 per_head: Mapping[str, torch.Tensor | None] | None = None,
                 v_like_q: bool = False, chunk_size: int | None = None) -> None:
    """Raise ``ValueError`` unless the arguments follow the shared calling convention.

    ``like_q``: further tensors that must have exactly q's shape (PaTH's ``w``);
    ``per_head``: ``[batch, time, heads]`` tensors (``None`` means "not given" and passes);
    ``v_like_q``: ``v`` must have q's head_dim too (FoX's kernel).
    """
    if q.dim() != 4:
        raise ValueError(f"{op}: q must be [batch, time, heads, head_dim], got shape {tuple(q.shape)}")
    same = {"k": k, **({"v": v} if v_like_q else {}), **(like_q or {})}
    for name, x in same.items():
        if x.shape != q.shape:
            raise ValueError(f"{op}: {name} must have the shape of q, [batch, time, heads, head_dim] = "
                             f"{tuple(q.shape)}, got {tuple(x.shape)}")
    if not v_like_q and (v.dim() != 4 or v.shape[:3] != q.shape[:3]):
        raise ValueError(f"{op}: v must be [batch, time, heads, dv] matching q's {tuple(q.shape[:3])}, "
                         f"got {tuple(v.shape)}")
    for name, x in (per_head or {}).items():
        if x is not None and x.shape != q.shape[:3]:
            raise ValueError(f"{op}: {name} must be [batch, time, heads] = {tuple(q.shape[:3])}, "
                             f"got {tuple(x.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be >= 1, got {chunk_size}")


class Dispatch:
    """One op's shape check and device dispatch (see the module docstring).

    ``op`` is the public function's name (it prefixes every error); ``torch`` the torch path;
    ``triton`` the Triton path as ``"module:attr"`` or a function (``None``: the op has none);
    ``v_like_q`` whether ``v`` must have q's head_dim.
    """

    def __init__(self, op: str, *, torch: Callable[..., torch.Tensor],
                 triton: str | Callable[..., torch.Tensor] | None = None, v_like_q: bool = False) -> None:
        self.op = op
        self.torch = torch
        self.triton = triton
        self.v_like_q = v_like_q
        self._triton_fn: object = _NOT_LOADED

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                 like_q: Mapping[str, torch.Tensor] | None = None,
                 per_head: Mapping[str, torch.Tensor | None] | None = None,
                 chunk_size: int | None = None) -> Callable[..., torch.Tensor]:
        """Check the inputs, then return the function to call them with."""
        check_inputs(self.op, q, k, v, like_q=like_q, per_head=per_head, v_like_q=self.v_like_q,
                     chunk_size=chunk_size)
        return self.pick(q)

    def pick(self, q: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The Triton path for a CUDA ``q`` when Triton imports, else the torch path."""
        if q.is_cuda and self.triton is not None:
            fn = self._load_triton()
            if fn is not None:
                return fn
        return self.torch

    def _load_triton(self) -> Callable[..., torch.Tensor] | None:
        if self._triton_fn is _NOT_LOADED:
            fn = None
            if HAS_TRITON:
                if callable(self.triton):
                    fn = self.triton
                else:
                    try:
                        fn = load_target(self.triton)
                    except ImportError:  # Triton present but unusable here: the torch path still works
                        fn = None
            self._triton_fn = fn
        return self._triton_fn  # type: ignore[return-value]
