"""The kernel registry: ops declare themselves, implementations register under them, and
installed packages add both through the ``archbench.kernels`` entry-point group.

Two levels:

- an **op** (:func:`register_op`) is *what* is computed -- ``softmax``, ``fox``, ``path``,
  ``path-fox``, ``momentum``, ``linear``, ``deltanet`` (a plugin may add others).  It declares
  its input builder (``KernelShape -> dict`` of keyword arguments, seeded: the same shape
  and seed give the same tensors), its FLOP formula (``KernelShape -> (attention part,
  extra part)``, see :mod:`kernels.flops` and :func:`forward_flops`), and the dtypes and
  devices its implementations support unless they say otherwise;
- a **kernel** (:func:`register_kernel`) is *how*: one implementation of one op at the
  shared calling convention (``[batch, time, heads, head_dim]`` in and out, causal; see
  ``kernels/README.md``) -- ``torch`` (the op's chunked torch path, ``fast.py``), ``triton``
  (``triton_kernel.py``, CUDA only), ``reference`` (``reference.py``, small ``T`` only),
  ``sdpa`` / ``flash`` (PyTorch's fused attention), ``fla`` (flash-linear-attention).  It takes
  the op's inputs, dtypes and devices unless it passes its own, and says what else it needs:
  ``max_seq_len``, ``causal`` (which values of the causal flag), ``needs_cuda``, ``requires``
  (modules that must be importable) and an optional ``check(shape) -> reason | None``.

``("softmax", "sdpa")`` -- ``F.scaled_dot_product_attention`` -- is :data:`BASELINE`: the
benchmark times it beside every other entry at the same shape and reports each entry's
time as a multiple of it.

**Where entries come from.**  Each op folder ``kernels/<op>/__init__.py`` calls
:func:`register_op` and :func:`register_kernel` when it is imported; nothing else lists the
built-ins.  ``import kernels`` imports the built-in op folders (to export their functions),
so they are registered by the time this module is usable; on the first lookup every other
sub-package of ``kernels`` is imported too, so a new op folder needs no edit elsewhere.
Then the ``archbench.kernels`` entry points are loaded through the project's generic
:class:`archbench.registry.Registry` (loading one runs its module's ``register_op`` /
``@register_kernel`` calls; one that fails to load is skipped with the same
:class:`~archbench.registry.PluginWarning` as a broken task or mixer plugin, see
:func:`entry_point_errors`).  Last, when ``fla`` is importable *and* CUDA is available,
:mod:`kernels.fla` adds flash-linear-attention's kernels as ``impl="fla"``.

Nothing here imports Triton: an implementation given as ``"module:attr"`` is imported on
its first call, so that ``TRITON_INTERPRET`` (set by the interpreter tests) still takes effect.
This module imports no op folder when it is imported (the op folders import it).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, TypeVar

import torch

from archbench.registry import Registry, load_target
from kernels.inputs import InputBuilder, KernelShape, log_forget_gates, qkv_inputs, randn, uniform

__all__ = [
    "ALL_DTYPES", "BASELINE", "HALF_DTYPES", "TRITON", "FlopFormula", "InputBuilder", "KernelEntry", "KernelShape",
    "OpSpec", "UnknownKernelError", "declared_op", "entry_point_errors", "forward_flops", "get_kernel", "get_op",
    "impl_names", "kernel_entries", "lazy", "log_forget_gates", "op_names", "qkv_inputs", "randn", "register_fla",
    "register_kernel", "register_op", "uniform", "unregister_kernel",
]

BASELINE = ("softmax", "sdpa")
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HALF_DTYPES = (torch.float16, torch.bfloat16)
ENTRY_POINT_GROUP = "archbench.kernels"
# the keywords of a Triton implementation: `register_kernel(op, "triton", **TRITON)`
TRITON = MappingProxyType({"devices": ("cuda",), "needs_cuda": True, "requires": ("triton",)})

FlopFormula = Callable[[KernelShape], "tuple[float, float]"]
F = TypeVar("F", bound=Callable)


class UnknownKernelError(LookupError):
    """An op or implementation name that no registered kernel has; the message lists them."""


@dataclass(frozen=True)
class OpSpec:
    """An op's declaration: what every implementation of it shares."""

    name: str
    inputs: InputBuilder
    flops: FlopFormula | None = None  # forward FLOPs as (attention part, extra part)
    dtypes: tuple[torch.dtype, ...] = ALL_DTYPES
    devices: tuple[str, ...] = ("cpu", "cuda")
    description: str = ""
    source: str = field(default="archbench", compare=False)


@dataclass(frozen=True)
class KernelEntry:
    op: str
    impl: str
    fn: Callable[..., torch.Tensor]
    inputs: InputBuilder
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] = ALL_DTYPES
    max_seq_len: int | None = None
    needs_cuda: bool = False
    causal: tuple[bool, ...] = (True,)
    default: bool = True  # part of the default selection of `archbench bench`
    requires: tuple[str, ...] = ()
    check: Callable[[KernelShape], str | None] | None = None
    flops: Callable[[KernelShape], float] | None = None  # forward FLOPs, for ops with no formula of their own
    description: str = ""
    source: str = field(default="archbench", compare=False)

    @property
    def name(self) -> str:
        return f"{self.op}/{self.impl}"

    def unavailable(self) -> str | None:
        """Why this entry cannot run in this process at all (``None`` when it can)."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs {', '.join(missing)}"
        if self.needs_cuda and not torch.cuda.is_available():
            return "needs CUDA"
        return None

    def unsupported(self, shape: KernelShape) -> str | None:
        """Why this entry does not run at ``shape`` (``None`` when it does)."""
        device = torch.device(shape.device).type
        if device not in self.devices:
            return f"runs on {'/'.join(self.devices)} only"
        if shape.dtype not in self.dtypes:
            return f"supports {'/'.join(str(d).removeprefix('torch.') for d in self.dtypes)} only"
        if self.max_seq_len is not None and shape.seq_len > self.max_seq_len:
            return f"T <= {self.max_seq_len} only"
        if shape.causal not in self.causal:
            return "causal only" if self.causal == (True,) else "non-causal only"
        if self.check is not None:
            return self.check(shape)
        return None


def _check_op(name: str, obj: object) -> None:
    if not isinstance(obj, OpSpec):
        raise TypeError(f"kernel op {name!r} must be a kernels.registry.OpSpec, got {obj!r}")


# The declared ops, and the owner of the `archbench.kernels` entry points (so a broken kernel
# plugin is reported exactly like a broken task or mixer plugin).
OPS: Registry[OpSpec] = Registry("kernel", ENTRY_POINT_GROUP, plural="kernel ops", unknown=UnknownKernelError,
                                 check=_check_op)
_KERNELS: dict[tuple[str, str], KernelEntry] = {}
_loaded: set[str] = set()  # which of "builtins", "entry_points", "fla" have been loaded


def _caller_module() -> str:
    """The module that called the function calling this (for "already registered by ...")."""
    return sys._getframe(2).f_globals.get("__name__", "?")


def register_op(name: str, *, inputs: InputBuilder, flops: FlopFormula | None = None,
                dtypes: tuple[torch.dtype, ...] = ALL_DTYPES, devices: tuple[str, ...] = ("cpu", "cuda"),
                description: str = "") -> OpSpec:
    """Declare op ``name``: its input builder, its forward FLOP formula ``flops(shape) ->
    (attention part, extra part)`` (``None``: no formula), and the dtypes and devices its
    kernels support unless they say otherwise.  Call it before the op's :func:`register_kernel`
    calls.  Declaring another op under a taken name is an error."""
    if not name or "/" in name:
        raise ValueError(f"a kernel op needs a non-empty name without '/', got {name!r}")
    spec = OpSpec(name=name, inputs=inputs, flops=flops, dtypes=tuple(dtypes), devices=tuple(devices),
                  description=description, source=_caller_module())
    return OPS.add(name, spec)


def declared_op(op: str) -> OpSpec | None:
    """The op's declaration, without loading entry points (used while registering)."""
    spec = OPS.peek(op)  # OPS.get would load the entry points mid-registration
    return spec if isinstance(spec, OpSpec) else None


def register_kernel(op: str, impl: str, *, inputs: InputBuilder | None = None,
                    devices: tuple[str, ...] | None = None, dtypes: tuple[torch.dtype, ...] | None = None,
                    max_seq_len: int | None = None, needs_cuda: bool = False, causal: tuple[bool, ...] = (True,),
                    default: bool = True, requires: tuple[str, ...] = (),
                    check: Callable[[KernelShape], str | None] | None = None,
                    flops: Callable[[KernelShape], float] | None = None,
                    description: str = "") -> Callable[[F], F]:
    """Function decorator: make ``fn(**inputs(shape))`` available as kernel ``op/impl``.

    ``inputs``, ``devices`` and ``dtypes`` default to the op's (:func:`register_op`); an op
    that was not declared needs ``inputs``.  ``flops`` (forward FLOPs as one number) is for
    a plugin op without a declared formula.  The decorator returns its argument unchanged;
    a ``"module:attr"`` string is registered through :func:`lazy` (imported on first call).
    Registering another function under a taken ``(op, impl)`` is an error; registering the
    same one again is a no-op.
    """
    if not op or not impl or "/" in op or "/" in impl:
        raise ValueError(f"kernel op and impl must be non-empty names without '/', got {op!r}, {impl!r}")
    spec = declared_op(op)
    if inputs is None and spec is None:
        raise ValueError(f"kernel {op}/{impl} needs inputs=: op {op!r} is not declared "
                         f"(declare it with kernels.registry.register_op, or pass inputs)")
    inputs = inputs if inputs is not None else spec.inputs  # type: ignore[union-attr]
    devices = tuple(devices) if devices is not None else (spec.devices if spec else ("cpu", "cuda"))
    dtypes = tuple(dtypes) if dtypes is not None else (spec.dtypes if spec else ALL_DTYPES)

    def deco(target: F) -> F:
        key = (op, impl)
        old = _KERNELS.get(key)
        if old is not None and old.fn is not target and getattr(old.fn, "target", None) != target:
            raise ValueError(f"kernel {op}/{impl} is already registered by {old.source}")
        if old is not None and isinstance(target, str):
            fn = old.fn  # the same "module:attr" again: keep its (possibly loaded) function
        else:
            fn = lazy(target) if isinstance(target, str) else target
        _KERNELS[key] = KernelEntry(
            op=op, impl=impl, fn=fn, inputs=inputs, devices=devices, dtypes=dtypes,
            max_seq_len=max_seq_len, needs_cuda=needs_cuda or devices == ("cuda",),
            causal=tuple(causal), default=default, requires=tuple(requires), check=check, flops=flops,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            source=getattr(fn, "__module__", None) or "?")
        return target

    return deco


def unregister_kernel(op: str, impl: str) -> None:
    _KERNELS.pop((op, impl), None)


def lazy(target: str) -> Callable[..., torch.Tensor]:
    """A function that imports ``"module:attr"`` on its first call and calls it (Triton kernels,
    references), so registering it imports nothing."""
    module, sep, name = target.partition(":")
    if not sep or not name:
        raise ValueError(f"a lazy kernel is 'module:attr', got {target!r}")
    cache: dict[str, Callable] = {}

    def call(*args, **kwargs):
        fn = cache.get("fn")
        if fn is None:
            fn = cache["fn"] = load_target(target)
        return fn(*args, **kwargs)

    call.__name__ = call.__qualname__ = name.rsplit(".", 1)[-1]
    call.__module__ = module
    call.__doc__ = f"``{module}.{name}`` (imported on first call)."
    call.target = target  # type: ignore[attr-defined]
    return call


# -- loading and lookup ------------------------------------------------------------------------

def _load_builtins() -> None:
    """Import every op folder (sub-package) of ``kernels``; importing one registers it."""
    import kernels

    for info in pkgutil.iter_modules(kernels.__path__, "kernels."):
        if info.ispkg:
            importlib.import_module(info.name)


def _ensure_loaded() -> None:
    if "builtins" not in _loaded:
        _loaded.add("builtins")
        _load_builtins()
    if "entry_points" not in _loaded:
        _loaded.add("entry_points")
        OPS.load_entry_points()
    if "fla" not in _loaded:
        _loaded.add("fla")
        register_fla()


def entry_point_errors() -> dict[str, str]:
    """Entry points of the ``archbench.kernels`` group that failed to load, with why."""
    _ensure_loaded()
    return OPS.plugin_errors()


def kernel_entries(op: str | None = None, impl: str | None = None) -> list[KernelEntry]:
    """Registered entries (optionally of one op and/or impl), sorted by op then impl."""
    _ensure_loaded()
    return [e for k, e in sorted(_KERNELS.items())
            if (op is None or e.op == op) and (impl is None or e.impl == impl)]


def op_names() -> list[str]:
    """The ops with at least one registered kernel."""
    _ensure_loaded()
    return sorted({op for op, _ in _KERNELS})


def impl_names() -> list[str]:
    _ensure_loaded()
    return sorted({impl for _, impl in _KERNELS})


def get_kernel(op: str, impl: str) -> KernelEntry:
    _ensure_loaded()
    try:
        return _KERNELS[(op, impl)]
    except KeyError:
        known = ", ".join(f"{o}/{i}" for o, i in sorted(_KERNELS))
        raise UnknownKernelError(f"no kernel {op}/{impl}; registered: {known}") from None


def get_op(name: str) -> OpSpec:
    """The declaration of op ``name`` (:class:`UnknownKernelError`, listing the declared ops, if none)."""
    _ensure_loaded()
    return OPS.get(name)


def forward_flops(op: str, shape: KernelShape) -> tuple[float, float] | None:
    """Forward FLOPs of one call of ``op`` at ``shape`` as ``(attention part, extra part)``, from
    the op's declared formula; ``None`` for an op that declares none (or is not declared)."""
    _ensure_loaded()
    if op not in OPS:
        return None
    spec = OPS.get(op)
    return None if spec.flops is None else spec.flops(shape)


def register_fla() -> list[KernelEntry]:
    """Register flash-linear-attention's kernels as ``impl="fla"`` when ``fla`` is importable
    and CUDA is available; returns what was registered.  See :mod:`kernels.fla`."""
    from kernels.fla import register_fla as register

    return register()
