"""Kernel throughput benchmarks (``archbench bench``) and the CI regression gate.

**What is timed.**  Every selected registry entry (:mod:`kernels.registry`: an op and one
implementation of it) over a grid of batch x heads x head_dim x seq_len x causal x dtype x
mode, where ``fwd`` is one call under ``no_grad`` and ``fwd+bwd`` is the call plus
``torch.autograd.grad`` of every floating-point input (:func:`kernels.benchmark.make_runner`).
At each grid point the SDPA baseline (``softmax/sdpa``, :data:`kernels.registry.BASELINE`) is
timed too, interleaved with the entries: ``rounds`` rounds, each timing every entry once
(in a rotated order) right after a fresh timing of SDPA, and every runner keeps its fastest
timing.  Contention on a shared machine only ever adds time, so the fastest timing is the
least disturbed one; SDPA, whose time every ratio of the grid point shares, gets the most
samples.  The *normalised time* ``median / sdpa_median`` cancels a machine that is
uniformly slower.

**Timers.**  CPU: ``torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time)`` with
the thread pool at ``torch.get_num_threads()`` (``--threads``); median, and the 20th / 80th
percentiles of the measurement's per-block times.  CUDA: ``triton.testing.do_bench``
(its own warm-up, the L2 cache flushed before every call, ``quantiles=[0.5, 0.2, 0.8]``).

**Memory** (``peak_mem_bytes``): the peak of bytes allocated *during one call* beyond what
was allocated before it, so the inputs are excluded and the output, saved activations,
gradients and temporaries are included.  CUDA: ``torch.cuda.reset_peak_memory_stats``, one
call, ``max_memory_allocated() - memory_allocated_before``.  CPU: torch keeps no peak
statistics for its CPU allocator and ``tracemalloc`` does not see it, so one call runs under
``torch.profiler`` with ``profile_memory=True`` and the peak is the running sum of the
allocator's alloc/free events in time order.  Anything that fails leaves ``None``.

**FLOPs** (:func:`forward_flops`, :func:`kernel_flops`) follow the FlashAttention
convention: forward attention is ``4 B T^2 H D`` (the ``QK^T`` and ``PV`` matmuls), halved
when causal, and the backward is 2.5x the forward; each op adds the matmul work it has
beyond that (its backward counted as 2x).  TFLOP/s = FLOPs / median time; the FLOPs are the
op's, not the implementation's, so a ``reference`` implementation is charged the same work.
``peak_fraction`` divides by the dense bf16/fp16 tensor-core peak of the GPU
(:data:`GPU_PEAK_TFLOPS`); it is ``None`` on CPUs, for float32, and on unknown GPUs.

**The gate** (:func:`run_gate`): a baseline file holds, per device class and per
``op/impl/mode/dtype/shape`` key, the normalised time measured on a known-good tree.  An
entry fails when its normalised time exceeds ``baseline * (1 + max_slowdown)``; failing
entries are measured once more and fail only when the slowdown shows in both measurements
(the smaller ratio is kept).  A device class with no baseline passes with a note: ratios
depend on the CPU/GPU model and the thread count, and comparing against another machine's
baseline would fail (or pass) for reasons that have nothing to do with the change.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch

from harness.errors import UserError
from kernels.benchmark import make_runner
from kernels.registry import (
    BASELINE, KernelEntry, KernelShape, UnknownKernelError, get_kernel, impl_names, kernel_entries, op_names,
)

MODES = ("fwd", "fwd+bwd")
SLOWDOWN_ENV = "ARCHBENCH_SLOWDOWN"
BASELINE_FORMAT = "archbench-kernel-baseline/1"

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bfloat16 on GPUs (what models train in there), float32 on CPUs."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


# -- peak throughput --------------------------------------------------------------------------

# Dense (no 2:4 sparsity) bf16/fp16 tensor-core peak in TFLOP/s, from NVIDIA's datasheets,
# matched in order against the device name (`torch.cuda.get_device_name`).
GPU_PEAK_TFLOPS: list[tuple[str, float | None]] = [
    (r"\bH200\b", 989.0),
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", None),  # not in our table: say "peak unknown" rather than guess
    (r"\bH100\b", 989.0),          # SXM, reported as "NVIDIA H100 80GB HBM3"
    (r"\bA100\b", 312.0),
]


def peak_tflops(device_name: str | None, dtype: torch.dtype | str = torch.bfloat16) -> float | None:
    """The dense half-precision peak of ``device_name``; ``None`` for unknown devices, CPUs
    and dtypes other than bf16/fp16 (their tensor-core peaks differ and torch does not use
    TF32 for float32 matmuls by default)."""
    if isinstance(dtype, str):
        dtype = _DTYPES.get(dtype, torch.float32)
    if not device_name or dtype not in (torch.float16, torch.bfloat16):
        return None
    for pattern, peak in GPU_PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


# -- FLOPs ---------------------------------------------------------------------------------------

CHUNK = 64          # the chunk size of the chunked ops (PaTH, linear attention, DeltaNet)
BWD_ATTENTION = 2.5  # FlashAttention convention: backward = 2.5 x forward for the attention part
BWD_EXTRA = 2.0      # every other matmul: its backward is two matmuls of the same size


def attention_flops(batch: int, seq_len: int, heads: int, head_dim: int, causal: bool = True) -> float:
    """``4 B T^2 H D`` (``QK^T`` and ``PV``, 2 FLOPs per multiply-add), halved when causal."""
    f = 4.0 * batch * seq_len * seq_len * heads * head_dim
    return f / 2 if causal else f


def forward_flops(op: str, batch: int, seq_len: int, heads: int, head_dim: int,
                  causal: bool = True, chunk: int = CHUNK) -> tuple[float, float] | None:
    """Forward FLOPs of ``op`` as ``(attention part, extra part)``; ``None`` for an op with no formula.

    With ``B, T, H, D`` the shape, ``A = attention_flops(B, T, H, D, causal)``,
    ``c = min(chunk, T)`` and ``n = ceil(T / c)`` chunks, per batch-head unless multiplied by ``BH``:

    - ``softmax``, ``fox``: ``(A, 0)``.  FoX's gate adds ``O(T^2)`` elementwise work per head,
      not counted, like softmax's ``exp`` in the FlashAttention convention.
    - ``momentum``: ``(A, 10 BTHD)``: the time shear (a subtract and a multiply-add per element
      of q and k: ``4 BTHD``) and RoPE (two multiplies and an add: ``6 BTHD``).
    - ``path``, ``path-fox``: ``(A, transport + ut)``, the chunked PaTH algorithm:
        * ``transport = BH * c * D^2 * (n-1)(n-2)``: every query row of chunk ``a`` is carried
          through the ``D x D`` Householder product ``P_b`` of each chunk ``0 < b < a``
          (``2 D^2`` per row and chunk, ``c (n-1)(n-2)/2`` row-chunk pairs);
        * ``ut = BH * n * (8c^2 D + c^3 + 2c^2 (c+D) + 2c (c+D)^2)``: per chunk the Gram matrix of
          ``[W; Q]`` and ``[W; K]`` (``[2c, D] x [D, 2c]``), the UT transform (a ``c x c``
          unit-triangular solve with ``c`` right-hand sides, ``c^3``), ``A [W | tril(W K^T)]``
          and the correction ``[tril(Q W^T); W^T] X``.
      The gate of PaTH-FoX is elementwise and not counted.
    - ``linear``: ``(0, BH * n * (2c^2 D + 2c^2 (D+1) + 4 c D (D+1)))``: per chunk the intra-chunk
      scores ``phi(Q) phi(K)^T``, their product with ``[V | 1]`` (the normaliser is one more
      value column), the inter-chunk read ``phi(Q) S`` and the state update ``phi(K)^T [V | 1]``.
    - ``deltanet``: ``(0, BH * n * (10 c^2 D + c^3 + 6 c D^2))``: per chunk (WY form) ``K K^T``,
      the ``c x c`` triangular solve, ``W = A (beta K)``, ``U = A (beta V)``, ``tril(Q K^T)`` and its
      product with the corrected values (five ``2c^2 D`` matmuls), and ``U - W S^T``, ``Q S^T`` and
      the state update (three ``2 c D^2``).
    """
    b, t, h, d = batch, seq_len, heads, head_dim
    bh = float(b * h)
    c = max(1, min(chunk, t))
    n = math.ceil(t / c)
    attn = attention_flops(b, t, h, d, causal)
    if op in ("softmax", "fox"):
        return attn, 0.0
    if op == "momentum":
        return attn, 10.0 * b * t * h * d
    if op in ("path", "path-fox"):
        transport = bh * c * d * d * (n - 1) * max(n - 2, 0)
        ut = bh * n * (8 * c * c * d + c ** 3 + 2 * c * c * (c + d) + 2 * c * (c + d) ** 2)
        return attn, transport + ut
    if op == "linear":
        return 0.0, bh * n * (2 * c * c * d + 2 * c * c * (d + 1) + 4 * c * d * (d + 1))
    if op == "deltanet":
        return 0.0, bh * n * (10 * c * c * d + c ** 3 + 6 * c * d * d)
    return None


def kernel_flops(op: str, batch: int, seq_len: int, heads: int, head_dim: int, causal: bool, mode: str,
                 entry: KernelEntry | None = None) -> float | None:
    """FLOPs of one call in ``mode``: forward ``attn + extra``; ``fwd+bwd`` adds
    ``2.5 attn + 2 extra``.  An op without a formula uses its registry entry's ``flops(shape)``
    (forward FLOPs, counted like attention: ``fwd+bwd = 3.5 x``); else ``None``."""
    parts = forward_flops(op, batch, seq_len, heads, head_dim, causal)
    if parts is None:
        if entry is None or entry.flops is None:
            return None
        parts = (float(entry.flops(KernelShape(batch, seq_len, heads, head_dim, causal=causal))), 0.0)
    attn, extra = parts
    if mode == "fwd":
        return attn + extra
    return attn * (1 + BWD_ATTENTION) + extra * (1 + BWD_EXTRA)


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


# -- timers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def _quantile(values: Sequence[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (the profiler's C++ side prints start/stop lines)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_memory(fn: Callable[[], object]) -> int | None:
    """Peak bytes held by torch's CPU allocator during one ``fn()`` beyond what it held before,
    from ``torch.profiler``'s memory events (alloc > 0, free < 0) summed in time order."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = [e for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
        events.sort(key=lambda e: e.start_ns())
        now = peak = 0
        for e in events:
            now += e.nbytes()
            peak = max(peak, now)
        return int(peak)
    except Exception:
        return None


CLOCKS = ("wall", "cpu")


class CpuTimer:
    """``blocked_autorange`` at the current thread count; memory through the profiler.

    ``clock="wall"`` (default) times with ``time.perf_counter``.  ``clock="cpu"`` times with
    ``time.thread_time``, the CPU time of the calling thread: with one thread, torch runs the
    op on that thread, so this is the op's compute time and does not count the time the
    thread spent descheduled -- on a shared, oversubscribed machine (a CI runner) that is
    most of the noise.  It is only meaningful single-threaded, so it requires one thread.
    """

    kind = "cpu"

    def __init__(self, min_run_time: float = 0.2, num_threads: int | None = None, clock: str = "wall") -> None:
        if clock not in CLOCKS:
            raise UserError(f"unknown --clock {clock!r}; use wall or cpu")
        self.min_run_time = min_run_time
        self.num_threads = num_threads or torch.get_num_threads()
        if clock == "cpu" and self.num_threads != 1:
            raise UserError("--clock cpu measures the calling thread's CPU time, so it needs --threads 1")
        self.clock = clock

    def time(self, fn: Callable[[], object]) -> Timing:
        import time

        from torch.utils.benchmark import Timer

        clock = time.thread_time if self.clock == "cpu" else time.perf_counter
        m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=self.num_threads, timer=clock).blocked_autorange(
            min_run_time=self.min_run_time)
        times = list(m.times) or [m.median]
        return Timing(m.median * 1e3, _quantile(times, 0.2) * 1e3, _quantile(times, 0.8) * 1e3)

    def peak_memory(self, fn: Callable[[], object], device: str) -> int | None:
        return cpu_peak_memory(fn)


class CudaTimer:
    """``triton.testing.do_bench`` (warm-up, L2 flushed before every call); memory from
    ``torch.cuda``'s allocator statistics."""

    kind = "cuda"
    quantiles = [0.5, 0.2, 0.8]

    def __init__(self, warmup_ms: float = 25, rep_ms: float = 100) -> None:
        self.warmup_ms, self.rep_ms = warmup_ms, rep_ms

    def time(self, fn: Callable[[], object]) -> Timing:
        from triton.testing import do_bench

        median, p20, p80 = do_bench(fn, warmup=self.warmup_ms, rep=self.rep_ms, quantiles=self.quantiles)
        return Timing(float(median), float(p20), float(p80))

    def peak_memory(self, fn: Callable[[], object], device: str) -> int | None:
        try:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize(device)
            return int(torch.cuda.max_memory_allocated(device) - before)
        except Exception:
            return None


def make_timer(device: str, min_run_time: float = 0.2, rep_ms: float = 100, clock: str = "wall"):  # noqa: ANN201
    """:class:`CudaTimer` for CUDA devices (``clock`` must be ``wall``), else :class:`CpuTimer`."""
    if torch.device(device).type == "cuda":
        if clock != "wall":
            raise UserError("--clock cpu is for CPU timing; CUDA kernels are timed with do_bench")
        return CudaTimer(rep_ms=rep_ms)
    return CpuTimer(min_run_time, clock=clock)


# -- the planted slowdown ------------------------------------------------------------------------

def parse_slowdown(text: str | None) -> dict[str, int]:
    """``ARCHBENCH_SLOWDOWN="fox=2,path=3"`` -> ``{"fox": 2, "path": 3}``: the bench runs each
    named op (every implementation of it, never the SDPA baseline) that many times per timed
    call, so it looks ``factor`` times slower.  Used to show that the gate catches slowdowns."""
    out: dict[str, int] = {}
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        op, sep, factor = item.partition("=")
        try:
            n = int(factor)
        except ValueError:
            n = 0
        if not sep or not op.strip() or n < 1:
            raise UserError(f"{SLOWDOWN_ENV} takes op=factor with a whole factor >= 1, "
                            f"comma-separated (e.g. fox=2), got {item!r}")
        out[op.strip()] = n
    return out


def _repeat(run: Callable[[], object], factor: int) -> Callable[[], object]:
    def slowed():
        for _ in range(factor - 1):
            run()
        return run()
    return slowed


# -- results ----------------------------------------------------------------------------------

@dataclass
class BenchResult:
    op: str
    impl: str
    mode: str
    dtype: str
    batch: int
    seq_len: int
    heads: int
    head_dim: int
    causal: bool = True
    status: str = "ok"  # ok | error | oom
    error: str | None = None
    median_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    tokens_per_s: float | None = None
    tflops: float | None = None
    peak_fraction: float | None = None
    peak_mem_bytes: int | None = None
    device_name: str = ""
    flops: float | None = None
    sdpa_ms: float | None = None

    @property
    def ratio(self) -> float | None:
        """Normalised time: this entry's median over SDPA's at the same shape, same run."""
        if self.median_ms is None or not self.sdpa_ms:
            return None
        return self.median_ms / self.sdpa_ms

    @property
    def shape_label(self) -> str:
        return f"B{self.batch}-T{self.seq_len}-H{self.heads}-D{self.head_dim}"

    @property
    def key(self) -> str:
        """The baseline key: ``op/impl/mode/dtype/B1-T256-H4-D64/causal``."""
        return "/".join([self.op, self.impl, self.mode, self.dtype, self.shape_label,
                         "causal" if self.causal else "full"])

    @property
    def label(self) -> str:
        return (f"{self.op}/{self.impl} {self.mode} {self.dtype} {self.shape_label}"
                f"{'' if self.causal else ' non-causal'}")

    @property
    def is_baseline(self) -> bool:
        return (self.op, self.impl) == BASELINE

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


_DB_FIELDS = ("op", "impl", "mode", "dtype", "batch", "seq_len", "heads", "head_dim", "causal", "status", "error",
              "median_ms", "p20_ms", "p80_ms", "tokens_per_s", "tflops", "peak_fraction", "peak_mem_bytes",
              "device_name")


def _failure(e: BaseException) -> tuple[str, str]:
    msg = f"{type(e).__name__}: {e}".strip()
    text = msg.lower()
    oom = (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
           or "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text)
    return ("oom" if oom else "error"), msg[:2000]


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
    slowdown: dict[str, int] = field(default_factory=dict)
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
    bad = [d for d in items if d.lower() not in _DTYPES]
    if bad:
        raise UserError(f"unknown --dtype {bad[0]!r}; use float32, bfloat16 or float16")
    return list(dict.fromkeys(_DTYPES[d.lower()] for d in items))


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


# -- measuring ------------------------------------------------------------------------------------

class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def step(self, description: str) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def step(self, description: str) -> None:
        pass


@contextlib.contextmanager
def progress_bar(console, disable: bool = False) -> Iterator[Progress]:  # noqa: ANN001
    """A rich progress bar over the timings of a grid (on ``console``, e.g. stderr)."""
    if disable:
        yield _NoProgress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

    with RichProgress(TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
        task = bar.add_task("kernels", total=None)

        class _Bar:
            def start(self, total: int) -> None:
                bar.update(task, total=total, completed=0)

            def step(self, description: str) -> None:
                bar.update(task, advance=1, description=description)

        yield _Bar()


def _clear_cuda(device: str) -> None:
    if torch.device(device).type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


def measure(groups: list[Group], *, timer, rounds: int = 3, memory: bool = True,  # noqa: ANN001
            slowdown: dict[str, int] | None = None, progress: Progress | None = None,
            baseline: KernelEntry | None = None) -> list[BenchResult]:
    """Time every group (see the module docstring); one :class:`BenchResult` per entry and
    grid point, the SDPA baseline's included.  An entry that raises (or runs out of memory)
    while building its inputs, warming up or being timed gets ``status='error'`` / ``'oom'``
    with the message, and the grid goes on."""
    progress = progress or _NoProgress()
    slowdown = slowdown or {}
    baseline = baseline or get_kernel(*BASELINE)
    rounds = max(1, rounds)
    progress.start(sum(max(1, 2 * len([e for e in g.entries if (e.op, e.impl) != BASELINE])) * rounds
                       for g in groups))
    results: list[BenchResult] = []
    for g in groups:
        shape, mode = g.shape, g.mode
        dev_name = device_name(shape.device)
        entries = [baseline] + [e for e in g.entries if (e.op, e.impl) != BASELINE]
        rows = {e.name: BenchResult(op=e.op, impl=e.impl, mode=mode, dtype=dtype_name(shape.dtype),
                                    batch=shape.batch, seq_len=shape.seq_len, heads=shape.heads,
                                    head_dim=shape.head_dim, causal=shape.causal, device_name=dev_name)
                for e in entries}
        runners: dict[str, Callable[[], object]] = {}
        for e in entries:
            try:
                run = make_runner(e.fn, e.inputs(shape), mode)
                if e.op in slowdown and (e.op, e.impl) != BASELINE:
                    run = _repeat(run, slowdown[e.op])
                run()  # warm-up: first-call compilation, allocator growth
                runners[e.name] = run
            except Exception as exc:  # noqa: BLE001 - any failure of a kernel is a result, not a crash
                rows[e.name].status, rows[e.name].error = _failure(exc)
                _clear_cuda(shape.device)
        best: dict[str, Timing] = {}
        others = [e.name for e in entries[1:]]
        for r in range(rounds):
            # SDPA is timed right before every entry: all ratios of a grid point share its
            # time, so it gets the most samples (and keeps its fastest)
            order = others[r % len(others):] + others[:r % len(others)] if others else []
            for name in [x for o in order for x in (baseline.name, o)] or [baseline.name]:
                progress.step(f"{name} {mode} {shape.label}")
                run = runners.get(name)
                if run is None:
                    continue
                try:
                    t = timer.time(run)
                except Exception as exc:  # noqa: BLE001
                    rows[name].status, rows[name].error = _failure(exc)
                    runners.pop(name)
                    _clear_cuda(shape.device)
                    continue
                if name not in best or t.median_ms < best[name].median_ms:
                    best[name] = t
        if memory:
            for name, run in runners.items():
                rows[name].peak_mem_bytes = timer.peak_memory(run, shape.device)
        runners.clear()
        _clear_cuda(shape.device)
        sdpa = best.get(baseline.name)
        peak = peak_tflops(dev_name if torch.device(shape.device).type == "cuda" else None, shape.dtype)
        for e in entries:
            row, t = rows[e.name], best.get(e.name)
            if t is None:
                continue
            row.median_ms, row.p20_ms, row.p80_ms = t.median_ms, t.p20_ms, t.p80_ms
            row.sdpa_ms = sdpa.median_ms if sdpa is not None else None
            seconds = t.median_ms / 1e3
            row.tokens_per_s = shape.batch * shape.seq_len / seconds if seconds > 0 else None
            row.flops = kernel_flops(e.op, shape.batch, shape.seq_len, shape.heads, shape.head_dim, shape.causal,
                                     mode, entry=e)
            if row.flops is not None and seconds > 0:
                row.tflops = row.flops / seconds / 1e12
                row.peak_fraction = row.tflops / peak if peak else None
        results.extend(rows[e.name] for e in entries)
    return results


def run_bench(spec: BenchSpec, *, timer=None, progress: Progress | None = None,  # noqa: ANN001
              min_run_time: float = 0.2) -> tuple[list[BenchResult], list[str]]:
    """Plan and measure ``spec``; returns the results and what was skipped, with why."""
    groups, skipped = plan(spec)
    timer = timer or make_timer(spec.device, min_run_time)
    results = measure(groups, timer=timer, rounds=spec.rounds, memory=spec.memory, slowdown=spec.slowdown,
                      progress=progress)
    return results, skipped


def remeasurer(spec: BenchSpec, timer, progress: Progress | None = None  # noqa: ANN001
               ) -> Callable[[list[BenchResult]], list[BenchResult]]:
    """For the gate: measure just these results' entries again (same shapes and modes, twice
    the rounds: a second opinion should be the steadier one)."""

    def again(failing: list[BenchResult]) -> list[BenchResult]:
        groups: dict[tuple, Group] = {}
        for r in failing:
            entry = get_kernel(r.op, r.impl)
            shape = KernelShape(r.batch, r.seq_len, r.heads, r.head_dim, dtype=_DTYPES[r.dtype], device=spec.device,
                                seed=spec.seed, causal=r.causal)
            g = groups.setdefault((shape, r.mode), Group(shape, r.mode, []))
            g.entries.append(entry)
        return measure(list(groups.values()), timer=timer, rounds=2 * spec.rounds, memory=False,
                       slowdown=spec.slowdown, progress=progress)

    return again


# -- presenting and storing -----------------------------------------------------------------------

def _constant(results: list[BenchResult], attr: str) -> Any:
    values = {getattr(r, attr) for r in results}
    return values.pop() if len(values) == 1 else None


def results_frame(results: list[BenchResult], compact: bool = True):  # noqa: ANN201
    """A DataFrame of the results: every field (and ``ratio``) for ``--format json/csv``; for
    the table, the columns that fit a terminal (what is constant over the grid moves to the
    title, see :func:`table_title`; p20/p80 are in json/csv and the store)."""
    import pandas as pd

    if not compact:
        return pd.DataFrame([r.record() for r in results])
    same_bhd = all(_constant(results, a) is not None for a in ("batch", "heads", "head_dim"))
    rows = []
    for r in results:
        row: dict[str, Any] = {"kernel": f"{r.op}/{r.impl}"}
        if _constant(results, "mode") is None:
            row["mode"] = r.mode
        if _constant(results, "dtype") is None:
            row["dtype"] = r.dtype
        if same_bhd:
            row["T"] = r.seq_len
        else:
            row["shape"] = r.shape_label
        if _constant(results, "causal") is None:
            row["causal"] = r.causal
        if any(x.status != "ok" for x in results):
            row["status"] = r.status
        row.update(ms=r.median_ms, vs_sdpa=r.ratio, Mtok_s=None if r.tokens_per_s is None else r.tokens_per_s / 1e6,
                   TFLOPs=r.tflops)
        if any(x.peak_fraction is not None for x in results):
            row["peak_pct"] = None if r.peak_fraction is None else 100 * r.peak_fraction
        if any(x.peak_mem_bytes is not None for x in results):
            row["mem_MiB"] = None if r.peak_mem_bytes is None else r.peak_mem_bytes / 2 ** 20
        rows.append(row)
    return pd.DataFrame(rows)


def table_title(results: list[BenchResult], device: str) -> str:
    """Device, device class, what is constant over the grid, and the peak used for peak_pct
    (or "peak unknown")."""
    name = device_name(device)
    dtypes = sorted({r.dtype for r in results}) or [dtype_name(default_dtype(device))]
    peaks = {d: peak_tflops(name if torch.device(device).type == "cuda" else None, d) for d in dtypes}
    prefix = (lambda d: "") if len(peaks) == 1 else (lambda d: f"{d} ")
    peak = ", ".join(f"{prefix(d)}peak {p:g} TFLOP/s" if p else f"{prefix(d)}peak unknown" for d, p in peaks.items())
    fixed = []
    if results and all(_constant(results, a) is not None for a in ("batch", "heads", "head_dim")):
        fixed.append(f"B{results[0].batch} H{results[0].heads} D{results[0].head_dim}")
    for attr in ("mode", "dtype"):
        if results and _constant(results, attr) is not None:
            fixed.append(str(getattr(results[0], attr)))
    if results and _constant(results, "causal") is False:
        fixed.append("non-causal")
    threads = f", {torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}" \
        if torch.device(device).type == "cpu" else ""
    return f"{name} ({device_class(device)}{threads}) {' '.join(fixed)}; {peak}"


def store_results(store, results: list[BenchResult], device: str) -> str:  # noqa: ANN001
    """Write the results (one transaction) with the git sha and environment; returns the environment id."""
    from harness import environment

    info = environment.describe(device)
    env_id = store.environment(info)
    store.add_kernel_benchmarks([{**{k: getattr(r, k) for k in _DB_FIELDS}, "git_sha": info["git_sha"],
                                  "environment_id": env_id} for r in results])
    return env_id


# -- the gate ---------------------------------------------------------------------------------

def parse_max_slowdown(text: str | float) -> float:
    """``"20%"`` -> 0.2; a bare number is a fraction (``0.2``)."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UserError(f"--max-slowdown takes a percentage like 20% (or a fraction like 0.2), got {text!r}") from None
    if not s.endswith("%") and value >= 1:
        raise UserError(f"--max-slowdown {text!r}: write it as a percentage, e.g. {value:g}%")
    if value < 0 or value != value:
        raise UserError(f"--max-slowdown must be >= 0, got {text!r}")
    return value


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"baseline {str(path)!r} is not readable JSON ({e}); write one with --save-baseline") from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT or not isinstance(
            doc.get("device_classes"), dict):
        raise UserError(f"{str(path)!r} is not an archbench kernel baseline (format {BASELINE_FORMAT}); "
                        f"write one with --save-baseline")
    return doc


def _is_dir_arg(path: Path) -> bool:
    """A directory, or a path that does not exist yet and is not named ``*.json``."""
    return path.is_dir() or (not path.exists() and path.suffix != ".json")


def baseline_path(path: Path, dev_class: str) -> Path:
    """A directory means ``<dir>/<device class>.json``."""
    return path / f"{dev_class}.json" if _is_dir_arg(path) else path


def load_baseline(path: Path, dev_class: str) -> tuple[dict[str, dict] | None, Path, str | None]:
    """The baseline entries for ``dev_class`` from ``path`` (a file or a directory of
    ``<device class>.json`` files).  Returns ``(entries, file, note)``: ``entries`` is ``None``
    with a note when this device class has no baseline (the gate then passes); a named file
    that does not exist, or is not a baseline, is a :class:`UserError`."""
    path = Path(path)
    file = baseline_path(path, dev_class)
    if _is_dir_arg(path) and not file.exists():
        return None, file, (f"no kernel baseline for device class {dev_class!r} in {path}/; gate skipped "
                            f"(save one with --save-baseline {file})")
    if not file.exists():
        raise UserError(f"baseline file {str(file)!r} does not exist; write one with --save-baseline")
    doc = _read_doc(file)
    block = doc["device_classes"].get(dev_class)
    if not block or not block.get("entries"):
        have = ", ".join(sorted(doc["device_classes"])) or "none"
        return None, file, (f"{file} has no baseline for device class {dev_class!r} (it has: {have}); gate skipped")
    return dict(block["entries"]), file, None


def save_baseline(path: Path, results: list[BenchResult], dev_class: str, *, command: str | None = None) -> Path:
    """Merge the normalised times of ``results`` into ``path`` under ``dev_class`` (the SDPA
    baseline itself and failed entries are left out); returns the file written."""
    from harness import environment

    path = Path(path)
    file = baseline_path(path, dev_class)
    doc = _read_doc(file) if file.exists() else {"format": BASELINE_FORMAT, "device_classes": {}}
    block = doc["device_classes"].setdefault(dev_class, {"entries": {}})
    info = environment.describe("cpu")
    device = results[0].device_name if results else None
    block.update({
        "device_name": device, "git_sha": info["git_sha"], "torch_version": info["torch_version"],
        "num_threads": torch.get_num_threads(), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metric": "median_ms / sdpa_median_ms at the same shape, each the fastest of interleaved rounds",
    })
    if command:
        block["command"] = command
    entries = block.setdefault("entries", {})
    for r in results:
        if r.is_baseline or r.status != "ok" or r.ratio is None:
            continue
        entries[r.key] = {"ratio": round(r.ratio, 4), "median_ms": round(r.median_ms, 4),
                          "sdpa_ms": round(r.sdpa_ms, 4)}
    block["entries"] = dict(sorted(entries.items()))
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return file


@dataclass
class GateFinding:
    key: str
    label: str
    baseline_ratio: float
    ratio: float | None
    status: str = "ok"
    error: str | None = None
    ratios: list[float] = field(default_factory=list)  # every measurement's ratio (re-measured ones too)

    def exceeds(self, threshold: float) -> bool:
        return self.status != "ok" or self.ratio is None or self.ratio > self.baseline_ratio * (1 + threshold)

    @property
    def relative(self) -> float | None:
        return None if self.ratio is None else self.ratio / self.baseline_ratio

    def message(self, threshold: float) -> str:
        if self.status != "ok" or self.ratio is None:
            return (f"{self.label}: now fails ({self.status}: {self.error}); baseline "
                    f"{self.baseline_ratio:.2f}x SDPA")
        seen = ""
        if len(self.ratios) > 1:
            seen = " (measured " + ", then ".join(f"{x:.2f}x" for x in self.ratios) + ")"
        return (f"{self.label}: {self.ratio:.2f}x SDPA vs baseline {self.baseline_ratio:.2f}x "
                f"({100 * (self.relative - 1):+.0f}%, limit +{100 * threshold:.0f}%){seen}")


@dataclass
class GateReport:
    threshold: float
    checked: list[GateFinding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # measured, but not in the baseline
    remeasured: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[GateFinding]:
        return [f for f in self.checked if f.exceeds(self.threshold)]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> GateFinding | None:
        ok = [f for f in self.checked if f.relative is not None]
        return max(ok, key=lambda f: f.relative) if ok else None


def compare(results: list[BenchResult], entries: dict[str, dict], threshold: float) -> GateReport:
    """Check every non-baseline result that has a baseline entry (pure: no timing)."""
    report = GateReport(threshold)
    for r in results:
        if r.is_baseline:
            continue
        base = entries.get(r.key)
        if base is None:
            report.missing.append(r.key)
            continue
        report.checked.append(GateFinding(key=r.key, label=r.label, baseline_ratio=float(base["ratio"]),
                                          ratio=r.ratio if r.status == "ok" else None, status=r.status,
                                          error=r.error, ratios=[r.ratio] if r.ratio is not None else []))
    return report


def run_gate(results: list[BenchResult], entries: dict[str, dict], threshold: float,
             remeasure: Callable[[list[BenchResult]], list[BenchResult]] | None = None) -> GateReport:
    """:func:`compare`, then measure the failing entries once more: an entry fails only if
    it fails again (its ratio is the smaller of the two measurements)."""
    report = compare(results, entries, threshold)
    failing = report.failures
    if not failing or remeasure is None:
        return report
    by_key = {r.key: r for r in results}
    again = {r.key: r for r in remeasure([by_key[f.key] for f in failing])}
    for f in failing:
        r = again.get(f.key)
        report.remeasured.append(f.key)
        if r is None:
            continue
        if r.status != "ok" or r.ratio is None:
            if f.status == "ok":  # worked before, fails now: keep the earlier measurement
                continue
            f.status, f.error = r.status, r.error
            continue
        f.ratios.append(r.ratio)
        f.ratio = r.ratio if f.ratio is None else min(f.ratio, r.ratio)
        f.status, f.error = "ok", None
    return report
