"""The one dispatch every op's public function goes through.

:class:`Dispatch` does two things, in this order, on every call:

1. checks the shared calling convention (``kernels/README.md``): ``q, k, v`` (and ``w``) are
   ``[batch, time, heads, head_dim]``, ``v`` may have its own last dimension unless the op
   says otherwise, per-head scalars (``beta``, ``log_f``) are ``[batch, time, heads]``, and
   ``chunk_size`` (where the op has one) is at least 1.  A bad input raises ``ValueError``
   naming the op, the argument, the expected shape and the shape it got;
2. picks the path, by the kernel mode (:func:`kernel_mode`: an architecture's ``kernels``
   option through :func:`use_kernels`, else ``ARCHBENCH_KERNELS``, else ``auto``):

   * ``auto``: the op's Triton implementation when ``q`` is on CUDA and Triton can be
     imported, else its torch path.  If a Triton launch fails for resources (shared memory or
     registers the device does not have: ``triton.runtime.errors.OutOfResources``) or the
     kernel does not support the head dim (``UnsupportedHeadDim``), the call is repeated on the torch path, with one :class:`KernelFallbackWarning` per op, and that
     op stays on torch for the rest of the process;
   * ``torch``: always the torch path;
   * ``triton``: always the Triton path -- on CUDA, or on CPU tensors when Triton's
     interpreter is on (``TRITON_INTERPRET=1``, how the tests train through it); anything
     else raises :class:`KernelPathError` naming the fix.

   The Triton implementation is a ``"module:attr"`` string, imported on first use (so
   importing an op never imports Triton), or a function of the op's own that imports it;
   an op without one (``softmax_attention``) always runs its torch path.

:func:`paths_taken` tells which path each op took in this process (``archbench train`` stores
it with the run).

It returns the chosen function; the op calls it with its own arguments::

    _dispatch = Dispatch("fox_attention", torch=fox_attention_fast,
                         triton="kernels.fox.triton_kernel:fox_attention_triton", v_like_q=True)

    def fox_attention(q, k, v, log_f, scale=None):
        return _dispatch(q, k, v, per_head={"log_f": log_f})(q, k, v, log_f, scale)
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import warnings
from typing import Callable, Iterator, Mapping

import torch

from archbench.registry import load_target

__all__ = ["HAS_TRITON", "KERNEL_MODES", "Dispatch", "KernelFallbackWarning", "KernelPathError", "check_inputs",
           "check_kernel_mode", "clear_paths", "interpreter_on", "kernel_mode", "paths_taken", "use_kernels"]

HAS_TRITON = importlib.util.find_spec("triton") is not None
KERNEL_MODES = ("auto", "torch", "triton")
ENV_VAR = "ARCHBENCH_KERNELS"
_NOT_LOADED = object()
_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("archbench_kernels", default=None)
_taken: dict[str, str] = {}


class KernelPathError(RuntimeError):
    """The kernel mode asks for a path this machine cannot run; the message names the fix."""


class KernelFallbackWarning(RuntimeWarning):
    """``auto`` mode: a Triton launch failed for resources and the op moved to its torch path."""


def check_kernel_mode(mode: str, where: str = ENV_VAR) -> str:
    if mode not in KERNEL_MODES:
        raise ValueError(f"{where}={mode!r} is not a kernel mode; use one of {', '.join(KERNEL_MODES)}")
    return mode


def kernel_mode() -> str:
    """The kernel mode in force: :func:`use_kernels`'s, else ``$ARCHBENCH_KERNELS``, else ``auto``."""
    mode = _mode.get()
    if mode is not None:
        return mode
    return check_kernel_mode(os.environ.get(ENV_VAR, "").strip().lower() or "auto")


@contextlib.contextmanager
def use_kernels(mode: str | None) -> Iterator[None]:
    """Run the block with kernel mode ``mode`` (``None``: leave it as it is)."""
    if mode is None:
        yield
        return
    token = _mode.set(check_kernel_mode(mode, "kernels"))
    try:
        yield
    finally:
        _mode.reset(token)


def paths_taken() -> dict[str, str]:
    """``{op: path}`` for every op called in this process: ``"triton"``, ``"torch"`` or
    ``"torch (fallback)"`` (the last call's path)."""
    return dict(_taken)


def clear_paths() -> None:
    """Forget the paths taken so far (a new run starts)."""
    _taken.clear()


def interpreter_on() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors, through the interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _is_resource_error(e: BaseException) -> bool:
    """A Triton launch this device cannot make (shared memory, registers) or a head dim the
    kernel does not support: ``auto`` runs those calls on the torch path instead."""
    return type(e).__name__ in ("OutOfResources", "UnsupportedHeadDim")


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
        self._auto_fn: Callable[..., torch.Tensor] | None = None  # the Triton path with its fallback, made once
        self._fell_back = False

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                 like_q: Mapping[str, torch.Tensor] | None = None,
                 per_head: Mapping[str, torch.Tensor | None] | None = None,
                 chunk_size: int | None = None) -> Callable[..., torch.Tensor]:
        """Check the inputs, then return the function to call them with."""
        check_inputs(self.op, q, k, v, like_q=like_q, per_head=per_head, v_like_q=self.v_like_q,
                     chunk_size=chunk_size)
        return self.pick(q)

    def pick(self, q: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The path the kernel mode chooses for ``q`` (see the module docstring)."""
        mode = kernel_mode()
        if mode == "torch" or self.triton is None:  # an op without a Triton implementation has one path
            return self._record(self.torch, "torch")
        if mode == "triton":
            if not (q.is_cuda or interpreter_on()):
                raise KernelPathError(f"{self.op}: kernel mode triton needs CUDA tensors (or TRITON_INTERPRET=1 "
                                      f"to interpret the kernels on the CPU); got a {q.device.type} tensor. "
                                      f"Use {ENV_VAR}=auto or =torch, or run on a GPU")
            fn = self._load_triton()
            if fn is None:
                raise KernelPathError(f"{self.op}: kernel mode triton but Triton cannot be imported here; "
                                      f"install triton, or use {ENV_VAR}=auto or =torch")
            return self._record(fn, "triton")
        if q.is_cuda and not self._fell_back:
            fn = self._load_triton()
            if fn is not None:
                if self._auto_fn is None:
                    self._auto_fn = self._with_fallback(fn)
                return self._auto_fn
        return self._record(self.torch, "torch (fallback)" if self._fell_back and q.is_cuda else "torch")

    def _record(self, fn: Callable[..., torch.Tensor], path: str) -> Callable[..., torch.Tensor]:
        _taken[self.op] = path
        return fn

    def _with_fallback(self, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def call(*args, **kwargs):
            try:
                out = fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - only resource failures fall back; the rest re-raise
                if not _is_resource_error(e):
                    raise
                self._fell_back = True
                warnings.warn(f"{self.op}: the Triton kernel cannot launch on this device ({e}); "
                              f"using the torch path for this op from now on", KernelFallbackWarning, stacklevel=3)
                _taken[self.op] = "torch (fallback)"
                return self.torch(*args, **kwargs)
            _taken[self.op] = "triton"
            return out
        return call

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
