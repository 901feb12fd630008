"""The kernel registry: ``@register_kernel(op=..., impl=...)`` plus the ``archbench.kernels``
entry-point group.

An entry is one *implementation* of one *op* at the shared calling convention
(``[batch, time, heads, head_dim]`` in and out, causal; see ``kernels/README.md``):

- ``op``: what is computed -- ``softmax``, ``fox``, ``path``, ``path-fox``, ``momentum``,
  ``linear``, ``deltanet`` (a plugin may add others);
- ``impl``: how -- ``torch`` (the op's chunked torch path, ``fast.py``), ``triton``
  (``triton_kernel.py``, CUDA only), ``reference`` (``reference.py``, small ``T`` only),
  ``sdpa`` / ``flash`` (PyTorch's fused attention), ``fla`` (flash-linear-attention);
- ``inputs``: a builder ``KernelShape -> dict`` of keyword arguments for ``fn`` (seeded,
  so the same shape and seed give the same tensors);
- what it supports: ``devices``, ``dtypes``, ``max_seq_len``, ``causal`` (which values of the
  causal flag), ``needs_cuda``, ``requires`` (modules that must be importable) and an
  optional ``check(shape) -> reason | None`` for anything else.

``("softmax", "sdpa")`` -- ``F.scaled_dot_product_attention`` -- is :data:`BASELINE`: the
benchmark times it beside every other entry at the same shape and reports each entry's
time as a multiple of it.

Built-ins are registered on first lookup; installed packages add entries through the
``archbench.kernels`` entry-point group (loading the entry point's module runs its
``@register_kernel`` decorators; a module that fails to load is skipped with a warning,
see :func:`entry_point_errors`).  When ``fla`` is importable *and* CUDA is available,
:func:`register_fla` adds flash-linear-attention's kernels as ``impl="fla"`` through small
adapters; a missing ``fla`` or a function whose API changed is skipped, never an error.

Nothing here imports Triton: the Triton kernels are imported on their first call, so that
``TRITON_INTERPRET`` (set by the interpreter tests) still takes effect.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

import torch
import torch.nn.functional as F

__all__ = [
    "BASELINE", "KernelEntry", "KernelShape", "UnknownKernelError", "entry_point_errors", "get_kernel",
    "impl_names", "kernel_entries", "op_names", "register_fla", "register_kernel", "unregister_kernel",
]

BASELINE = ("softmax", "sdpa")
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HALF_DTYPES = (torch.float16, torch.bfloat16)
ENTRY_POINT_GROUP = "archbench.kernels"


class UnknownKernelError(LookupError):
    """An op or implementation name that no registered kernel has; the message lists them."""


@dataclass(frozen=True)
class KernelShape:
    """One point of a benchmark grid; ``label`` is ``B1-T256-H4-D64``."""

    batch: int
    seq_len: int
    heads: int
    head_dim: int
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    seed: int = 0
    causal: bool = True

    @property
    def label(self) -> str:
        return f"B{self.batch}-T{self.seq_len}-H{self.heads}-D{self.head_dim}"

    def generator(self) -> torch.Generator:
        """A CPU generator seeded with ``seed``: tensors are drawn on the CPU, in float32,
        then moved, so every device and dtype sees the same numbers."""
        return torch.Generator().manual_seed(self.seed)


InputBuilder = Callable[[KernelShape], dict[str, Any]]


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
    flops: Callable[[KernelShape], float] | None = None  # forward FLOPs, for ops archbench has no formula for
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


_KERNELS: dict[tuple[str, str], KernelEntry] = {}
_loaded: set[str] = set()  # which of "builtins", "entry_points", "fla" have been loaded
_ep_errors: dict[str, str] = {}


def register_kernel(op: str, impl: str, *, inputs: InputBuilder, devices: tuple[str, ...] = ("cpu", "cuda"),
                    dtypes: tuple[torch.dtype, ...] = ALL_DTYPES, max_seq_len: int | None = None,
                    needs_cuda: bool = False, causal: tuple[bool, ...] = (True,), default: bool = True,
                    requires: tuple[str, ...] = (), check: Callable[[KernelShape], str | None] | None = None,
                    flops: Callable[[KernelShape], float] | None = None,
                    description: str = "") -> Callable[[Callable], Callable]:
    """Function decorator: make ``fn(**inputs(shape))`` available as kernel ``op/impl``.

    The function is returned unchanged.  Registering another function under a taken
    ``(op, impl)`` is an error; registering the same one again is a no-op.
    """
    if not op or not impl or "/" in op or "/" in impl:
        raise ValueError(f"kernel op and impl must be non-empty names without '/', got {op!r}, {impl!r}")

    def deco(fn: Callable) -> Callable:
        key = (op, impl)
        old = _KERNELS.get(key)
        if old is not None and old.fn is not fn:
            raise ValueError(f"kernel {op}/{impl} is already registered by {old.source}")
        _KERNELS[key] = KernelEntry(
            op=op, impl=impl, fn=fn, inputs=inputs, devices=tuple(devices), dtypes=tuple(dtypes),
            max_seq_len=max_seq_len, needs_cuda=needs_cuda or tuple(devices) == ("cuda",),
            causal=tuple(causal), default=default, requires=tuple(requires), check=check, flops=flops,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            source=getattr(fn, "__module__", None) or "?")
        return fn

    return deco


def unregister_kernel(op: str, impl: str) -> None:
    _KERNELS.pop((op, impl), None)


def _ensure_loaded() -> None:
    if "builtins" not in _loaded:
        _loaded.add("builtins")
        _register_builtins()
    if "entry_points" not in _loaded:
        _loaded.add("entry_points")
        _load_entry_points()
    if "fla" not in _loaded:
        _loaded.add("fla")
        register_fla()


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not take the built-in kernels down with it
            _ep_errors[ep.name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"kernel entry point {ep.name!r} ({ep.value}) failed to load and is skipped: "
                          f"{type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)


def entry_point_errors() -> dict[str, str]:
    """Entry points of the ``archbench.kernels`` group that failed to load, with why."""
    _ensure_loaded()
    return dict(_ep_errors)


def kernel_entries(op: str | None = None, impl: str | None = None) -> list[KernelEntry]:
    """Registered entries (optionally of one op and/or impl), sorted by op then impl."""
    _ensure_loaded()
    return [e for k, e in sorted(_KERNELS.items())
            if (op is None or e.op == op) and (impl is None or e.impl == impl)]


def op_names() -> list[str]:
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


# -- input builders (shared by the built-ins; plugins may reuse them) ---------------------

def randn(shape: tuple[int, ...], spec: KernelShape, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=spec.device, dtype=spec.dtype)


def uniform(shape: tuple[int, ...], lo: float, hi: float, spec: KernelShape, gen: torch.Generator) -> torch.Tensor:
    x = torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo
    return x.to(device=spec.device, dtype=spec.dtype)


def log_forget_gates(spec: KernelShape, gen: torch.Generator) -> torch.Tensor:
    """Realistic forget gates, ``log sigmoid(N(0, 1) + 4)``: ``[B, T, H]``."""
    x = torch.randn((spec.batch, spec.seq_len, spec.heads), generator=gen, dtype=torch.float32)
    return F.logsigmoid(x + 4.0).to(device=spec.device, dtype=spec.dtype)


def _draw_qkv(spec: KernelShape) -> tuple[dict[str, torch.Tensor], torch.Generator]:
    gen = spec.generator()
    shape = (spec.batch, spec.seq_len, spec.heads, spec.head_dim)
    return {n: randn(shape, spec, gen) for n in ("q", "k", "v")}, gen


def qkv_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v``: ``[B, T, H, D]`` standard normal."""
    return _draw_qkv(spec)[0]


def sdpa_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v`` and the causal flag."""
    return {**qkv_inputs(spec), "causal": spec.causal}


def fox_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v`` and ``log_f`` (:func:`log_forget_gates`)."""
    base, gen = _draw_qkv(spec)
    return {**base, "log_f": log_forget_gates(spec, gen)}


def momentum_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q, k, v`` and a 0-d ``gamma = 0.5`` (a learnable per-layer scalar; gets a gradient)."""
    return {**qkv_inputs(spec), "gamma": torch.tensor(0.5, device=spec.device, dtype=spec.dtype)}


def _path_draw(spec: KernelShape) -> tuple[dict[str, Any], torch.Generator]:
    base, gen = _draw_qkv(spec)
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


def deltanet_inputs(spec: KernelShape) -> dict[str, Any]:
    """``q``, unit-norm ``k``, ``v`` and ``beta ~ U(0, 1)``."""
    base, gen = _draw_qkv(spec)
    base["k"] = F.normalize(base["k"].float(), dim=-1).to(spec.dtype)
    return {**base, "beta": uniform((spec.batch, spec.seq_len, spec.heads), 0.0, 1.0, spec, gen)}


# -- built-ins ------------------------------------------------------------------------------

def sdpa_attention(q, k, v, causal: bool = True):
    """PyTorch's fused ``scaled_dot_product_attention`` (the normalisation baseline)."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=causal).transpose(1, 2)


def flash_attention(q, k, v, causal: bool = True):
    """SDPA restricted to its FlashAttention backend (CUDA, half precision)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return sdpa_attention(q, k, v, causal)


def _lazy(module: str, name: str) -> Callable[..., torch.Tensor]:
    """``module.name``, imported on the first call (Triton kernels, references)."""
    cache: dict[str, Callable] = {}

    def call(*args, **kwargs):
        fn = cache.get("fn")
        if fn is None:
            fn = cache["fn"] = getattr(importlib.import_module(module), name)
        return fn(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = module
    call.__doc__ = f"``{module}.{name}`` (imported on first call)."
    return call


# reference implementations materialise T x T (or loop over T in Python): keep them small
_REFERENCE_MAX_T = {"softmax": 1024, "fox": 1024, "momentum": 1024, "linear": 1024,
                    "path": 256, "path-fox": 256, "deltanet": 512}


def _register_builtins() -> None:
    triton = dict(devices=("cuda",), needs_cuda=True, requires=("triton",))

    register_kernel("softmax", "sdpa", inputs=sdpa_inputs, causal=(True, False))(sdpa_attention)
    register_kernel("softmax", "flash", inputs=sdpa_inputs, causal=(True, False), dtypes=HALF_DTYPES,
                    devices=("cuda",))(flash_attention)
    register_kernel("softmax", "triton", inputs=qkv_inputs, **triton)(
        _lazy("kernels.softmax_attention.triton_kernel", "softmax_attention_triton"))
    register_kernel("softmax", "reference", inputs=qkv_inputs, default=False, max_seq_len=_REFERENCE_MAX_T["softmax"])(
        _lazy("kernels.softmax_attention.reference", "softmax_attention_ref"))

    def path_no_gate(fn):
        def call(q, k, v, w, beta):
            return fn(q, k, v, w, beta, None)
        call.__name__ = getattr(fn, "__name__", "path")
        call.__module__ = getattr(fn, "__module__", __name__)
        return call

    table = [  # op, inputs, (module, function) for the torch path, triton, reference
        ("fox", fox_inputs, ("kernels.fox.fast", "fox_attention_fast"),
         ("kernels.fox.triton_kernel", "fox_attention_triton"), ("kernels.fox.reference", "fox_attention_ref")),
        ("momentum", momentum_inputs, ("kernels.momentum.fast", "momentum_attention_fast"),
         ("kernels.momentum.triton_kernel", "momentum_attention_triton"),
         ("kernels.momentum.reference", "momentum_attention_ref")),
        ("linear", qkv_inputs, ("kernels.linear_attention.fast", "linear_attention_fast"),
         ("kernels.linear_attention.triton_kernel", "linear_attention_triton"),
         ("kernels.linear_attention.reference", "linear_attention_ref")),
        ("path", path_inputs, ("kernels.path.fast", "path_attention_fast"),
         ("kernels.path.triton_kernel", "path_attention_triton"), ("kernels.path.reference", "path_attention_ref")),
        ("path-fox", path_fox_inputs, ("kernels.path.fast", "path_attention_fast"),
         ("kernels.path.triton_kernel", "path_attention_triton"), ("kernels.path.reference", "path_attention_ref")),
        ("deltanet", deltanet_inputs, ("kernels.deltanet.fast", "deltanet_fast"),
         ("kernels.deltanet.triton_kernel", "deltanet_triton"), ("kernels.deltanet.reference", "deltanet_ref")),
    ]
    for op, inputs, fast, tri, ref in table:
        wrap = path_no_gate if op == "path" else (lambda f: f)
        fast_fn = getattr(importlib.import_module(fast[0]), fast[1])
        register_kernel(op, "torch", inputs=inputs)(wrap(fast_fn))
        register_kernel(op, "triton", inputs=inputs, **triton)(wrap(_lazy(*tri)))
        register_kernel(op, "reference", inputs=inputs, default=False, max_seq_len=_REFERENCE_MAX_T[op])(
            wrap(_lazy(*ref)))


# -- flash-linear-attention ------------------------------------------------------------------

def _accepts(fn: Callable) -> tuple[set[str], bool]:
    """The keyword names ``fn`` takes and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    return {p.name for p in params}, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _fla_caller(fn: Callable) -> Callable[..., torch.Tensor]:
    """Call an fla op in the ``[B, T, H, D]`` layout, whatever its version.

    Passes ``head_first=False`` when the function has that switch (older fla releases
    defaulted to ``[B, H, T, D]``), drops keywords the installed version does not take, and
    keeps only the output when it returns ``(output, state)``.
    """
    names, var_kw = _accepts(fn)

    def call(*args, **kwargs):
        if "head_first" in names:
            kwargs["head_first"] = False
        if not var_kw and names:
            kwargs = {k: v for k, v in kwargs.items() if k in names}
        out = fn(*args, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out

    return call


def _fla_path_check(spec: KernelShape) -> str | None:
    return None if spec.head_dim in (16, 32, 64) else "fla PaTH supports head_dim 16, 32, 64 only"


def _l2norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x.float() * x.float()).sum(-1, keepdim=True) + 1e-6).to(x.dtype)


def register_fla() -> list[KernelEntry]:
    """Register flash-linear-attention's kernels as ``impl="fla"`` when ``fla`` is importable
    and CUDA is available; returns what was registered (nothing otherwise).

    Adapters to archbench's convention (all fla ops take ``[B, T, H, D]`` with
    ``head_first=False``):

    - ``fox``: ``fla.ops.parallel_forgetting_attn(q, k, v, g=log_f, scale)``;
    - ``path`` / ``path-fox``: ``fla.ops.parallel_path_attention(q, k, v, w, beta, g=log_f, scale)``
      (fla supports head_dim 16/32/64; newer releases return ``(o, k_cache)``);
    - ``deltanet``: ``fla.ops.chunk_delta_rule(q, l2norm(k), v, beta, scale)`` -- archbench's
      DeltaNet normalises ``k`` inside the op, fla expects it normalised;
    - ``linear``: ``fla.ops.chunk_linear_attn(phi(q), phi(k), v, scale, normalize=True)`` with
      archbench's feature map ``phi = elu + 1`` (fla's normaliser has no ``eps``).

    Half precision only (fla's chunked kernels reject or mis-handle float32 in some
    releases).  An op missing from the installed fla, or one whose signature cannot be
    read, is skipped.
    """
    if not torch.cuda.is_available():
        return []
    try:
        ops = importlib.import_module("fla.ops")
    except Exception:  # fla absent, or present but broken (e.g. a Triton mismatch)
        return []

    def fox(fn):
        def fla_fox(q, k, v, log_f, scale=None):
            return fn(q, k, v, g=log_f, scale=scale)
        return fla_fox

    def path(fn):
        def fla_path(q, k, v, w, beta, scale=None):
            return fn(q, k, v, w, beta, g=None, scale=scale)
        return fla_path

    def path_fox(fn):
        def fla_path_fox(q, k, v, w, beta, log_f, scale=None):
            return fn(q, k, v, w, beta, g=log_f, scale=scale)
        return fla_path_fox

    def delta(fn):
        def fla_deltanet(q, k, v, beta, scale=None):
            return fn(q, _l2norm(k), v, beta, scale=scale)
        return fla_deltanet

    def linear(fn):
        def fla_linear(q, k, v, scale=None):
            return fn(F.elu(q) + 1, F.elu(k) + 1, v, scale=scale, normalize=True)
        return fla_linear

    specs = [  # op, fla.ops attribute, adapter, inputs, check
        ("fox", "parallel_forgetting_attn", fox, fox_inputs, None),
        ("path", "parallel_path_attention", path, path_inputs, _fla_path_check),
        ("path-fox", "parallel_path_attention", path_fox, path_fox_inputs, _fla_path_check),
        ("deltanet", "chunk_delta_rule", delta, deltanet_inputs, None),
        ("linear", "chunk_linear_attn", linear, qkv_inputs, None),
    ]
    done = []
    for op, attr, adapt, inputs, check in specs:
        fn = getattr(ops, attr, None)
        if not callable(fn):
            continue
        try:
            adapter = adapt(_fla_caller(fn))
        except Exception:  # pragma: no cover - an API we cannot introspect
            continue
        adapter.__module__ = f"fla.ops.{attr}"
        adapter.__doc__ = f"fla.ops.{attr} through archbench's adapter"
        if (op, "fla") in _KERNELS:
            unregister_kernel(op, "fla")
        register_kernel(op, "fla", inputs=inputs, devices=("cuda",), dtypes=HALF_DTYPES, needs_cuda=True,
                        check=check)(adapter)
        done.append(_KERNELS[(op, "fla")])
    return done
