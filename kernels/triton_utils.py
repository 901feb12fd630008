"""Small helpers shared by the Triton kernels (imported only where Triton is installed).

**Launch configs per target.**  Every kernel declares its launch configs with :func:`tuned`:
a function ``configs(cc, args) -> list[triton.Config]`` giving, for a device of compute
capability ``cc`` (80 = A100, 90 = H100) and the launch's named arguments (tensors and
constexprs), the candidates ``triton.autotune`` times on CUDA; under the interpreter one fixed
config is used instead (autotuning needs a driver).  The same function is what the offline
compile test (:mod:`kernels.compile_targets`) compiles for ``sm_80`` and ``sm_90``, so every
config a GPU could pick has been compiled and checked against that target's shared-memory
limit.  Each kernel module lists its launches for the compile test in
``compile_launches(cc, dtype, head_dim) -> list[KernelLaunch]``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import triton

__all__ = ["SHARED_LIMIT", "KernelLaunch", "UnsupportedHeadDim", "check_head_dim", "device_cc", "dot_precision",
           "interpreting", "launches_for", "on_device", "pow2_block", "tl_dtype", "tuned"]

# the most dynamic shared memory one block may use, in bytes (CUDA's per-block opt-in limit)
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


class UnsupportedHeadDim(ValueError):
    """A head dimension a Triton kernel does not support (raised at dispatch, before any launch)."""


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (the CPU interpreter: one fixed config, no autotuning)."""
    return triton.knobs.runtime.interpret


def on_device(x: torch.Tensor):
    """Triton launches on the *current* CUDA device; make that the tensor's device."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def pow2_block(x: int) -> int:
    """The tile size covering ``x``: the next power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, triton.next_power_of_2(x))


def dot_precision(low_precision_inputs: bool) -> str:
    """``tl.dot``'s ``input_precision``: IEEE fp32, unless the inputs were fp16/bf16 or the
    user allowed TF32 for CUDA matmuls (``torch.backends.cuda.matmul.allow_tf32``)."""
    if low_precision_inputs or torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def check_head_dim(op: str, head_dim: int, supported: tuple[int, ...]) -> None:
    """Raise :class:`UnsupportedHeadDim` unless ``head_dim <= max(supported)``; the message names the fix."""
    if head_dim > max(supported):
        raise UnsupportedHeadDim(
            f"{op}: head_dim {head_dim} is not supported by the Triton kernel (at most {max(supported)}); "
            f"use more heads of a smaller dimension, or run the torch path (ARCHBENCH_KERNELS=torch)")


def device_cc(device: torch.device | None = None) -> int:
    """Compute capability of a CUDA device as one number (``(9, 0) -> 90``)."""
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


def _target_cc(cc: int) -> int:
    """The compiled-and-checked target whose configs a device uses: 90 for Hopper and later
    datacenter parts, 80 otherwise (consumer parts with less shared memory rely on the
    ``auto`` fallback if a config does not fit)."""
    return 90 if cc >= 90 else 80


ConfigFn = Callable[[int, Mapping[str, Any]], "list[triton.Config]"]


def tuned(configs: ConfigFn, *, interpret: triton.Config, key: list[str]):
    """Decorator: ``triton.autotune`` over ``configs(cc, args)`` for the launching device
    (``cc`` 80 or 90, see :func:`_target_cc`), or the single ``interpret`` config under the
    interpreter.  ``key``: the launch arguments a new choice depends on (tensor dtypes are
    always part of the key).  The wrapped function keeps ``.configs_for = configs``.

    ``triton.autotune`` consults its pruning hook only when it holds more than one config,
    so it is given ``interpret`` twice; the hook replaces the list in every case.
    """
    def prune(_configs, named_args, **kwargs):
        if interpreting():
            return [interpret]
        args = {**named_args, **kwargs}
        device = next(v.device for v in args.values() if isinstance(v, torch.Tensor))
        return configs(_target_cc(device_cc(device)), args)

    def wrap(fn):
        tuner = triton.autotune(configs=[interpret, interpret], key=key,
                                prune_configs_by={"early_config_prune": prune})(fn)
        tuner.configs_for = configs
        tuner.interpret_config = interpret
        return tuner

    return wrap


_TL_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int32: "i32",
             torch.int64: "i64"}


def tl_dtype(dtype: torch.dtype) -> str:
    """Triton's name for a torch dtype (``torch.bfloat16 -> "bf16"``)."""
    return _TL_DTYPE[dtype]


@dataclass(frozen=True)
class KernelLaunch:
    """One kernel launch as the dispatcher would issue it on a target, for the compile test.

    ``fn``: the ``@triton.jit`` function (or a :func:`tuned` wrapper around it);
    ``pointers``: pointer arguments and their dtypes; ``floats``: scalar float arguments
    (every other non-constexpr argument is an ``i32``); ``constexprs``: every constexpr,
    including the config's block sizes; ``spill_budget``: bytes per thread the kernel is
    allowed to spill on this target (0: none; a kernel needing more states it here).
    """

    name: str
    fn: Any
    pointers: Mapping[str, torch.dtype]
    constexprs: Mapping[str, Any]
    num_warps: int
    num_stages: int
    floats: tuple[str, ...] = ()
    spill_budget: int = 0
    config: str = field(default="")

    def jit_fn(self):
        fn = self.fn
        while not isinstance(fn, triton.runtime.jit.JITFunction):
            fn = fn.fn
        return fn

    def signature(self) -> dict[str, str]:
        fn = self.jit_fn()
        sig = {}
        for name in fn.arg_names:
            if name in self.constexprs:
                sig[name] = "constexpr"
            elif name in self.pointers:
                sig[name] = "*" + tl_dtype(self.pointers[name])
            elif name in self.floats:
                sig[name] = "fp32"
            else:
                sig[name] = "i32"
        return sig


def launches_for(name: str, fn, configs: ConfigFn, cc: int, args: Mapping[str, Any], *,
                 pointers: Mapping[str, torch.dtype], constexprs: Mapping[str, Any],
                 floats: tuple[str, ...] = (), spill_budget: int = 0) -> list[KernelLaunch]:
    """One :class:`KernelLaunch` per config ``configs(cc, args)`` returns (``args``: what the
    config function reads, e.g. ``{"BD": 64, "dtype": torch.bfloat16}``)."""
    out = []
    for cfg in configs(cc, args):
        const = {**constexprs, **cfg.kwargs}
        label = ",".join(f"{k}={v}" for k, v in cfg.kwargs.items()) + f",w{cfg.num_warps},s{cfg.num_stages}"
        out.append(KernelLaunch(name=name, fn=fn, pointers=pointers, constexprs=const, num_warps=cfg.num_warps,
                                num_stages=cfg.num_stages, floats=floats, spill_budget=spill_budget, config=label))
    return out
