"""How one runner is timed: the CPU and CUDA timers, peak memory of one call, and the planted
slowdown (``ARCHBENCH_SLOWDOWN``).

**Timers.**  CPU: ``torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time)`` with
the thread pool at ``torch.get_num_threads()`` (``--threads``); a :class:`Timing` holds the
median, the 20th / 80th percentiles of the measurement's per-block times, and the mean per
call over the whole measurement (total time / calls, what the gate's paired ratios use: a
median of blocks would not see a slowdown that hits only some calls).  ``--clock cpu`` times
with the calling thread's CPU time (see :class:`CpuTimer`).  CUDA: ``triton.testing.do_bench``
(its own warm-up, the L2 cache flushed before every call, ``quantiles=[0.5, 0.2, 0.8]``; the
mean is the median there).

**Memory** (``peak_mem_bytes``): the peak of bytes allocated *during one call* beyond what
was allocated before it, so the inputs are excluded and the output, saved activations,
gradients and temporaries are included.  CUDA: ``torch.cuda.reset_peak_memory_stats``, one
call, ``max_memory_allocated() - memory_allocated_before``.  CPU: torch keeps no peak
statistics for its CPU allocator and ``tracemalloc`` does not see it, so one call runs under
``torch.profiler`` with ``profile_memory=True`` and the peak is the running sum of the
allocator's alloc/free events in time order.  Anything that fails leaves ``None``.

**The planted slowdown.**  ``ARCHBENCH_SLOWDOWN="fox=1.25"`` makes every implementation of
the named op (never the SDPA baseline) do ``factor`` times its work per call on average
(:func:`slowed`), to show that the gate catches a slowdown of that size.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from harness.errors import UserError

SLOWDOWN_ENV = "ARCHBENCH_SLOWDOWN"


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    mean_ms: float | None = None  # total time / calls; None: use the median

    @property
    def per_call_ms(self) -> float:
        """The mean per call when the timer knows it, else the median."""
        return self.median_ms if self.mean_ms is None else self.mean_ms


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

    def longer(self, factor: float) -> CpuTimer:
        """The same timer with ``factor`` times the run time per timing (for re-measuring)."""
        return CpuTimer(self.min_run_time * factor, num_threads=self.num_threads, clock=self.clock)

    def time(self, fn: Callable[[], object]) -> Timing:
        import time

        from torch.utils.benchmark import Timer

        clock = time.thread_time if self.clock == "cpu" else time.perf_counter
        m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=self.num_threads, timer=clock).blocked_autorange(
            min_run_time=self.min_run_time)
        times = list(m.times) or [m.median]
        return Timing(m.median * 1e3, _quantile(times, 0.2) * 1e3, _quantile(times, 0.8) * 1e3, m.mean * 1e3)

    def peak_memory(self, fn: Callable[[], object], device: str) -> int | None:
        return cpu_peak_memory(fn)


class CudaTimer:
    """``triton.testing.do_bench`` (warm-up, L2 flushed before every call); memory from
    ``torch.cuda``'s allocator statistics."""

    kind = "cuda"
    quantiles = [0.5, 0.2, 0.8]

    def __init__(self, warmup_ms: float = 25, rep_ms: float = 100) -> None:
        self.warmup_ms, self.rep_ms = warmup_ms, rep_ms

    def longer(self, factor: float) -> CudaTimer:
        """The same timer with ``factor`` times the repetitions per timing (for re-measuring)."""
        return CudaTimer(self.warmup_ms, self.rep_ms * factor)

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


def longer(timer, factor: float):  # noqa: ANN001, ANN201
    """``timer.longer(factor)`` when the timer has it (a test's fake timer need not)."""
    return timer.longer(factor) if hasattr(timer, "longer") else timer


# -- the planted slowdown ------------------------------------------------------------------------

def parse_slowdown(text: str | None) -> dict[str, float]:
    """``ARCHBENCH_SLOWDOWN="fox=2,path=1.25"`` -> ``{"fox": 2.0, "path": 1.25}``: the bench
    makes each named op (every implementation of it, never the SDPA baseline) do ``factor``
    times its work per timed call on average (:func:`slowed`), so it looks ``factor`` times
    slower.  Used to show that the gate catches slowdowns."""
    out: dict[str, float] = {}
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        op, sep, factor = item.partition("=")
        try:
            f = float(factor)
        except ValueError:
            f = float("nan")
        if not sep or not op.strip() or not math.isfinite(f) or f < 1:
            raise UserError(f"{SLOWDOWN_ENV} takes op=factor with a factor >= 1 (e.g. fox=2 or fox=1.25), "
                            f"comma-separated, got {item!r}")
        out[op.strip()] = f
    return out


def slowed(run: Callable[[], object], factor: float) -> Callable[[], object]:
    """``run`` doing ``factor`` times its work per call on average: ``floor(factor)`` runs every
    call, plus one more on the calls where an accumulator of the fractional part crosses 1, so
    ``N`` calls run it ``round(N * factor)`` times, give or take one, in any stretch of calls."""
    whole = int(factor)
    frac = factor - whole
    acc = 0.0

    def slowed_run():
        nonlocal acc
        for _ in range(whole - 1):
            run()
        acc += frac
        if acc >= 1 - 1e-9:
            acc -= 1
            run()
        return run()

    return slowed_run
