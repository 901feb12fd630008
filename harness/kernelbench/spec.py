"""What to measure: ``archbench bench``'s options parsed into a :class:`BenchSpec`, and the
spec planned into grid points (:class:`Group`).

A spec is a list of registry entries (:mod:`kernels.registry`: an op and one implementation
of it, the SDPA baseline left out -- it is timed at every point anyway) and a grid of batch x
heads x head_dim x seq_len (or explicit ``BxTxHxD`` shapes) x causal x dtype x mode, where
``fwd`` is one call under ``no_grad`` and ``fwd+bwd`` is the call plus ``torch.autograd.grad``
of every floating-point input.  :func:`plan` turns it into one :class:`Group` per grid point
(the entries that support that point; the rest are reported as skipped, with why).

Devices: ``cuda`` when available unless ``--device`` says otherwise; the default dtype is
bfloat16 on GPUs and float32 on CPUs.  :func:`device_class` names the machine class that
baselines are kept under.
"""

from __future__ import annotations

import platform
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch

from harness.errors import UserError
from harness.kernelbench.timers import parse_slowdown
from kernels.registry import BASELINE, KernelEntry, KernelShape, impl_names, kernel_entries, op_names

MODES = ("fwd", "fwd+bwd")

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bfloat16 on GPUs (what models train in there), float32 on CPUs."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


# -- devices ----------------------------------------------------------------------------------

def resolve_device(device: str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown --device {device!r}; use cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {device!r}; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu")
    return str(dev)


def device_name(device: str) -> str:
    from harness import environment

    return environment.device_name(device)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "unknown"


def device_class(device: str) -> str:
    """The key baselines are stored under: GPUs by model (``cuda-nvidia-h100-80gb-hbm3``);
    CPUs by architecture, thread count and model (``cpu-x86_64-1t-amd-epyc``), since the
    ratio of two CPU kernels depends on all three."""
    if torch.device(device).type == "cuda":
        return f"cuda-{_slug(device_name(device))}"
    return f"cpu-{_slug(platform.machine() or 'unknown')}-{torch.get_num_threads()}t-{_slug(device_name('cpu'))}"


# -- the grid -----------------------------------------------------------------------------------

@dataclass
class BenchSpec:
    entries: list[KernelEntry]
    shapes: list[tuple[int, int, int, int]]  # (batch, seq_len, heads, head_dim)
    causal: list[bool] = field(default_factory=lambda: [True])
    dtypes: list[torch.dtype] = field(default_factory=list)  # empty: the device's default
    modes: list[str] = field(default_factory=lambda: list(MODES))
    device: str = "cpu"
    rounds: int = 3
    memory: bool = True
    seed: int = 0
    slowdown: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # entries left out before planning, with why


@dataclass
class Group:
    """One grid point: the SDPA baseline and the entries timed interleaved with it."""

    shape: KernelShape
    mode: str
    entries: list[KernelEntry]


def _split(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [p.strip() for v in values for p in str(v).split(",") if p.strip()]


def _ints(values: Sequence[str] | str | None, what: str, default: list[int]) -> list[int]:
    items = _split(values)
    if not items:
        return list(default)
    try:
        out = [int(x) for x in items]
    except ValueError:
        raise UserError(f"{what} takes whole numbers, comma-separated (e.g. 256,1024), got {items}") from None
    if any(x < 1 for x in out):
        raise UserError(f"{what} must be >= 1, got {out}")
    return out


def parse_modes(values: Sequence[str] | str | None) -> list[str]:
    items = _split(values) or list(MODES)
    if items == ["both"] or items == ["all"]:
        return list(MODES)
    bad = [m for m in items if m not in MODES]
    if bad:
        raise UserError(f"unknown --mode {bad[0]!r}; use fwd or fwd+bwd (comma-separated for both)")
    return list(dict.fromkeys(items))


def parse_dtypes(values: Sequence[str] | str | None, device: str) -> list[torch.dtype]:
    items = _split(values)
    if not items:
        return [default_dtype(device)]
    bad = [d for d in items if d.lower() not in DTYPES]
    if bad:
        raise UserError(f"unknown --dtype {bad[0]!r}; use float32, bfloat16 or float16")
    return list(dict.fromkeys(DTYPES[d.lower()] for d in items))


def parse_causal(value: str | None) -> list[bool]:
    v = (value or "true").strip().lower()
    table = {"true": [True], "yes": [True], "causal": [True], "false": [False], "no": [False], "full": [False],
             "both": [True, False]}
    if v not in table:
        raise UserError(f"--causal takes true, false or both, got {value!r}")
    return table[v]


def parse_shapes(values: Sequence[str] | str | None) -> list[tuple[int, int, int, int]]:
    out = []
    for item in _split(values):
        parts = item.lower().split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = ()
        if len(dims) != 4 or any(x < 1 for x in dims):
            raise UserError(f"--shapes takes BxTxHxD, e.g. 1x4096x8x64, got {item!r}")
        out.append(dims)  # type: ignore[arg-type]
    return out


def select_entries(ops: Sequence[str] | str | None, impls: Sequence[str] | str | None
                   ) -> tuple[list[KernelEntry], list[str]]:
    """The registry entries named by ``--ops`` / ``--impls`` (default: every op, and every
    implementation marked ``default`` -- all but ``reference``), without the SDPA baseline
    (always timed).  Also returns the entries left out because they cannot run here."""
    known_ops, known_impls = op_names(), impl_names()
    want_ops = [("softmax" if o == "sdpa" else o) for o in _split(ops)]
    if not want_ops or "all" in want_ops:
        want_ops = known_ops
    bad = [o for o in want_ops if o not in known_ops]
    if bad:
        raise UserError(f"unknown op {bad[0]!r}; known ops: {', '.join(known_ops)}")
    want_impls = _split(impls)
    if "all" in want_impls:
        want_impls = known_impls
    bad = [i for i in want_impls if i not in known_impls]
    if bad:
        raise UserError(f"unknown implementation {bad[0]!r}; known: {', '.join(known_impls)}")
    chosen, skipped = [], []
    for e in kernel_entries():
        if e.op not in want_ops or (e.op, e.impl) == BASELINE:
            continue
        if want_impls and e.impl not in want_impls:
            continue
        if not want_impls and not e.default:
            continue
        why = e.unavailable()
        if why:
            skipped.append(f"{e.name}: {why}")
            continue
        chosen.append(e)
    if want_impls and not chosen and not ("softmax" in want_ops and "sdpa" in want_impls):
        raise UserError("nothing to run here: " + ("; ".join(skipped) or
                        f"no op of {', '.join(want_ops)} has implementation {', '.join(want_impls)}"))
    return chosen, skipped


Option = Sequence[str] | str | None


def make_spec(*, ops: Option = None, impls: Option = None, seq_lens: Option = None, shapes: Option = None,
              batch: Option = None, heads: Option = None, head_dim: Option = None, causal: str | None = None,
              dtype: Option = None, mode: Option = None, device: str | None = None, rounds: int = 3,
              memory: bool = True, seed: int = 0, slowdown: str | None = None) -> BenchSpec:
    """Parse ``archbench bench`` options into a :class:`BenchSpec`; bad input is a :class:`UserError`."""
    modes = parse_modes(mode)
    causal_l = parse_causal(causal)
    explicit = parse_shapes(shapes)
    ts = _ints(seq_lens, "--seq-lens", [256, 1024])
    bs = _ints(batch, "--batch", [1])
    hs = _ints(heads, "--heads", [4])
    ds = _ints(head_dim, "--head-dim", [64])
    slow = parse_slowdown(slowdown)
    dev = resolve_device(device)
    dtypes = parse_dtypes(dtype, dev)
    entries, skipped = select_entries(ops, impls)
    grid = explicit or [(b, t, h, d) for b in bs for h in hs for d in ds for t in ts]
    return BenchSpec(entries=entries, shapes=grid, causal=causal_l, dtypes=dtypes, modes=modes, device=dev,
                     rounds=max(1, int(rounds)), memory=memory, seed=seed, slowdown=slow, skipped=skipped)


def plan(spec: BenchSpec) -> tuple[list[Group], list[str]]:
    """Grid points with the entries that support them; the rest as ``"op/impl: why (n shapes)"``."""
    groups, why = [], Counter()
    for (b, t, h, d) in spec.shapes:
        for causal in spec.causal:
            for dtype in spec.dtypes or [default_dtype(spec.device)]:
                shape = KernelShape(b, t, h, d, dtype=dtype, device=spec.device, seed=spec.seed, causal=causal)
                members = []
                for e in spec.entries:
                    reason = e.unsupported(shape)
                    if reason:
                        why[f"{e.name}: {reason}"] += len(spec.modes)
                    else:
                        members.append(e)
                for mode in spec.modes:
                    groups.append(Group(shape, mode, members))
    skipped = list(spec.skipped) + [f"{k} ({n} grid point{'s' if n > 1 else ''})" for k, n in why.items()]
    return groups, skipped
