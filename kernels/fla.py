"""flash-linear-attention's kernels as ``impl="fla"`` entries of archbench's ops.

:func:`register_fla` runs on the registry's first lookup (:mod:`kernels.registry`).  When
``fla`` is importable *and* CUDA is available it registers, through the same
:func:`~kernels.registry.register_kernel` as every op, small adapters to archbench's
convention (all fla ops take ``[B, T, H, D]`` with ``head_first=False``); each takes its op's
declared input builder:

- ``fox``: ``fla.ops.parallel_forgetting_attn(q, k, v, g=log_f, scale)``;
- ``path`` / ``path-fox``: ``fla.ops.parallel_path_attention(q, k, v, w, beta, g=log_f, scale)``
  (fla supports head_dim 16/32/64; newer releases return ``(o, k_cache)``);
- ``deltanet``: ``fla.ops.chunk_delta_rule(q, l2norm(k), v, beta, scale)`` -- archbench's
  DeltaNet normalises ``k`` inside the op, fla expects it normalised;
- ``linear``: ``fla.ops.chunk_linear_attn(phi(q), phi(k), v, scale, normalize=True)`` with
  archbench's feature map ``phi = elu + 1`` (fla's normaliser has no ``eps``).

Half precision only (fla's chunked kernels reject or mis-handle float32 in some releases).
A missing ``fla``, an op missing from the installed fla, one whose signature cannot be read,
or an archbench op that is not declared, is skipped silently, never an error.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

import torch
import torch.nn.functional as F

from kernels import registry
from kernels.inputs import KernelShape

__all__ = ["register_fla"]


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


def _fox(fn):
    def fla_fox(q, k, v, log_f, scale=None):
        return fn(q, k, v, g=log_f, scale=scale)
    return fla_fox


def _path(fn):
    def fla_path(q, k, v, w, beta, scale=None):
        return fn(q, k, v, w, beta, g=None, scale=scale)
    return fla_path


def _path_fox(fn):
    def fla_path_fox(q, k, v, w, beta, log_f, scale=None):
        return fn(q, k, v, w, beta, g=log_f, scale=scale)
    return fla_path_fox


def _delta(fn):
    def fla_deltanet(q, k, v, beta, scale=None):
        return fn(q, _l2norm(k), v, beta, scale=scale)
    return fla_deltanet


def _linear(fn):
    def fla_linear(q, k, v, scale=None):
        return fn(F.elu(q) + 1, F.elu(k) + 1, v, scale=scale, normalize=True)
    return fla_linear


ADAPTERS = [  # archbench op, fla.ops attribute, adapter, check
    ("fox", "parallel_forgetting_attn", _fox, None),
    ("path", "parallel_path_attention", _path, _fla_path_check),
    ("path-fox", "parallel_path_attention", _path_fox, _fla_path_check),
    ("deltanet", "chunk_delta_rule", _delta, None),
    ("linear", "chunk_linear_attn", _linear, None),
]


def register_fla() -> list[registry.KernelEntry]:
    """Register flash-linear-attention's kernels as ``impl="fla"`` when ``fla`` is importable
    and CUDA is available; returns what was registered (nothing otherwise)."""
    if not torch.cuda.is_available():
        return []
    try:
        ops = importlib.import_module("fla.ops")
    except Exception:  # fla absent, or present but broken (e.g. a Triton mismatch)
        return []
    done = []
    for op, attr, adapt, check in ADAPTERS:
        fn = getattr(ops, attr, None)
        if not callable(fn) or registry.declared_op(op) is None:
            continue
        try:
            adapter = adapt(_fla_caller(fn))
        except Exception:  # pragma: no cover - an API we cannot introspect
            continue
        adapter.__module__ = f"fla.ops.{attr}"
        adapter.__doc__ = f"fla.ops.{attr} through archbench's adapter"
        registry.unregister_kernel(op, "fla")  # a second call replaces the first's adapters
        registry.register_kernel(op, "fla", devices=("cuda",), dtypes=registry.HALF_DTYPES, needs_cuda=True,
                                 check=check)(adapter)
        done.append(registry._KERNELS[(op, "fla")])
    return done
