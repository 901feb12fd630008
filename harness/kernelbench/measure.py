"""Measuring: a runner per (entry, grid point), timed in interleaved rounds beside SDPA.

**Runners** (:func:`make_runner`): ``fwd`` is one call under ``no_grad``; ``fwd+bwd`` is the
call plus ``torch.autograd.grad`` of every floating-point input.

**Interleaved rounds** (:func:`measure`).  At each grid point the SDPA baseline
(``softmax/sdpa``, :data:`kernels.registry.BASELINE`) is timed beside the entries: ``rounds``
rounds, each timing every entry once (in a rotated order) right after a fresh timing of SDPA.
Two numbers come out per entry:

- the reported time (``median_ms``, p20, p80; stored, printed, and ``ratio = median_ms /
  sdpa_ms``, the ``vs_sdpa`` column): every runner keeps its fastest timing.  Contention on a
  shared machine only ever adds time, so the fastest timing is the least disturbed one; SDPA,
  whose time every ratio of the grid point shares, gets the most samples.
- the gate's normalised time (``gate_ratio``): per round, the entry's mean time per call over
  the mean of the SDPA timing right before it (a *paired* ratio: the two timings are
  neighbours in time, so a slow stretch of the machine lands on both), and the median of
  those per-round ratios.  The mean per call, not the median of blocks, so that a slowdown
  hitting a fraction of the calls counts in full.

A machine that is uniformly slower cancels out of both ratios.  :func:`remeasurer` times a
few entries again for the gate: twice the rounds, twice the run time per timing, and each
round over all of them before the next (``spread``).
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator, Protocol

import torch

from harness.kernelbench.flops import kernel_flops, peak_tflops
from harness.kernelbench.spec import DTYPES, BenchSpec, Group, device_name, dtype_name, plan
from harness.kernelbench.timers import Timing, longer, make_timer, slowed
from kernels.registry import BASELINE, KernelEntry, KernelShape, get_kernel


def make_runner(fn: Callable[..., Any], inputs: dict[str, Any], mode: str) -> Callable[[], object]:
    """A zero-argument callable running ``fn(**inputs)`` once in ``mode``.

    ``fwd``: the call under ``no_grad``.  ``fwd+bwd``: the call with every floating-point
    tensor input as a leaf requiring grad, then ``torch.autograd.grad`` of all of them with a
    fixed random output gradient.  Non-tensor inputs (flags) pass through.
    """
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(**inputs)
        return run
    if mode != "fwd+bwd":
        raise ValueError(f"mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    leaves = {n: (x.detach().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x)
              for n, x in inputs.items()}
    diff = [x for x in leaves.values() if isinstance(x, torch.Tensor) and x.requires_grad]
    with torch.no_grad():
        out = fn(**leaves)
    gen = torch.Generator().manual_seed(1)
    grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(device=out.device, dtype=out.dtype)

    def run():
        return torch.autograd.grad(fn(**leaves), diff, grad_out)
    return run


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
    # per round: mean time per call over that of the SDPA timing right before (for the gate)
    paired_ratios: list[float] = field(default_factory=list, metadata={"record": False})

    @property
    def ratio(self) -> float | None:
        """Normalised time: this entry's median over SDPA's at the same shape, same run."""
        if self.median_ms is None or not self.sdpa_ms:
            return None
        return self.median_ms / self.sdpa_ms

    @property
    def gate_ratio(self) -> float | None:
        """The gate's normalised time: the median of the per-round paired ratios (``ratio``
        when there are none, e.g. a result built by hand)."""
        if self.status != "ok":
            return None
        return statistics.median(self.paired_ratios) if self.paired_ratios else self.ratio

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
        """Every reported field and ``ratio`` (``--format json/csv``)."""
        hidden = {f.name for f in fields(self) if f.metadata.get("record") is False}
        return {**{k: v for k, v in asdict(self).items() if k not in hidden}, "ratio": self.ratio}


def _failure(e: BaseException) -> tuple[str, str]:
    msg = f"{type(e).__name__}: {e}".strip()
    text = msg.lower()
    oom = (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
           or "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text)
    return ("oom" if oom else "error"), msg[:2000]


# -- progress -------------------------------------------------------------------------------------

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


# -- measuring ------------------------------------------------------------------------------------

def _clear_cuda(device: str) -> None:
    if torch.device(device).type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


class _Point:
    """One grid point being measured: its rows, runners, and best timings so far."""

    def __init__(self, g: Group, baseline: KernelEntry, slowdown: dict[str, float]) -> None:
        shape, mode = g.shape, g.mode
        self.shape, self.mode, self.baseline = shape, mode, baseline
        self.dev_name = device_name(shape.device)
        self.entries = [baseline] + [e for e in g.entries if (e.op, e.impl) != BASELINE]
        self.rows = {e.name: BenchResult(op=e.op, impl=e.impl, mode=mode, dtype=dtype_name(shape.dtype),
                                         batch=shape.batch, seq_len=shape.seq_len, heads=shape.heads,
                                         head_dim=shape.head_dim, causal=shape.causal, device_name=self.dev_name)
                     for e in self.entries}
        self.runners: dict[str, Callable[[], object]] = {}
        self.best: dict[str, Timing] = {}
        for e in self.entries:
            try:
                run = make_runner(e.fn, e.inputs(shape), mode)
                if e.op in slowdown and (e.op, e.impl) != BASELINE:
                    run = slowed(run, slowdown[e.op])
                run()  # warm-up: first-call compilation, allocator growth
                self.runners[e.name] = run
            except Exception as exc:  # noqa: BLE001 - any failure of a kernel is a result, not a crash
                self.rows[e.name].status, self.rows[e.name].error = _failure(exc)
                _clear_cuda(shape.device)

    def round(self, r: int, timer, progress: Progress) -> None:  # noqa: ANN001
        """Round ``r``: SDPA is timed right before every entry (in an order rotated by ``r``):
        all ratios of a grid point share its time, so it gets the most samples (and keeps its
        fastest); each entry's timing over that SDPA timing is one paired ratio for the gate."""
        base = self.baseline.name
        others = [e.name for e in self.entries[1:]]
        order = others[r % len(others):] + others[:r % len(others)] if others else []
        sdpa_now: Timing | None = None
        for name in [x for o in order for x in (base, o)] or [base]:
            progress.step(f"{name} {self.mode} {self.shape.label}")
            run = self.runners.get(name)
            if run is None:
                continue
            try:
                t = timer.time(run)
            except Exception as exc:  # noqa: BLE001
                self.rows[name].status, self.rows[name].error = _failure(exc)
                self.runners.pop(name)
                _clear_cuda(self.shape.device)
                continue
            if name == base:
                sdpa_now = t
            elif sdpa_now is not None and sdpa_now.per_call_ms > 0:
                self.rows[name].paired_ratios.append(t.per_call_ms / sdpa_now.per_call_ms)
            if name not in self.best or t.median_ms < self.best[name].median_ms:
                self.best[name] = t

    def finish(self, timer, memory: bool) -> list[BenchResult]:  # noqa: ANN001
        """Peak memory (one call each), then times, tokens/s, FLOPs and TFLOP/s from the best timings."""
        shape, rows = self.shape, self.rows
        if memory:
            for name, run in self.runners.items():
                rows[name].peak_mem_bytes = timer.peak_memory(run, shape.device)
        self.runners.clear()
        _clear_cuda(shape.device)
        sdpa = self.best.get(self.baseline.name)
        peak = peak_tflops(self.dev_name if torch.device(shape.device).type == "cuda" else None, shape.dtype)
        for e in self.entries:
            row, t = rows[e.name], self.best.get(e.name)
            if t is None:
                continue
            row.median_ms, row.p20_ms, row.p80_ms = t.median_ms, t.p20_ms, t.p80_ms
            row.sdpa_ms = sdpa.median_ms if sdpa is not None else None
            seconds = t.median_ms / 1e3
            row.tokens_per_s = shape.batch * shape.seq_len / seconds if seconds > 0 else None
            row.flops = kernel_flops(e.op, shape.batch, shape.seq_len, shape.heads, shape.head_dim, shape.causal,
                                     self.mode, entry=e)
            if row.flops is not None and seconds > 0:
                row.tflops = row.flops / seconds / 1e12
                row.peak_fraction = row.tflops / peak if peak else None
        return [rows[e.name] for e in self.entries]


def measure(groups: list[Group], *, timer, rounds: int = 3, memory: bool = True,  # noqa: ANN001
            slowdown: dict[str, float] | None = None, progress: Progress | None = None,
            baseline: KernelEntry | None = None, spread: bool = False) -> list[BenchResult]:
    """Time every group (see the module docstring); one :class:`BenchResult` per entry and
    grid point, the SDPA baseline's included.  An entry that raises (or runs out of memory)
    while building its inputs, warming up or being timed gets ``status='error'`` / ``'oom'``
    with the message, and the grid goes on.

    The rounds of a grid point run back to back, one point after the other; ``spread=True``
    runs each round over every point before the next round, so a point's rounds are spread
    over the whole measurement (a busy spell of the machine then spoils one round of each
    point rather than every round of one point).  That keeps every point's inputs alive at
    once, so it is for a few points (the gate's re-measurement)."""
    progress = progress or _NoProgress()
    slowdown = slowdown or {}
    baseline = baseline or get_kernel(*BASELINE)
    rounds = max(1, rounds)
    progress.start(sum(max(1, 2 * len([e for e in g.entries if (e.op, e.impl) != BASELINE])) * rounds
                       for g in groups))
    results: list[BenchResult] = []
    if spread:
        points = [_Point(g, baseline, slowdown) for g in groups]
        for r in range(rounds):
            for p in points:
                p.round(r, timer, progress)
        for p in points:
            results.extend(p.finish(timer, memory))
        return results
    for g in groups:
        p = _Point(g, baseline, slowdown)
        for r in range(rounds):
            p.round(r, timer, progress)
        results.extend(p.finish(timer, memory))
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
    the rounds, each timing twice as long, the rounds spread over all of them: a second
    opinion should be the steadier one)."""

    def again(failing: list[BenchResult]) -> list[BenchResult]:
        groups: dict[tuple, Group] = {}
        for r in failing:
            entry = get_kernel(r.op, r.impl)
            shape = KernelShape(r.batch, r.seq_len, r.heads, r.head_dim, dtype=DTYPES[r.dtype], device=spec.device,
                                seed=spec.seed, causal=r.causal)
            g = groups.setdefault((shape, r.mode), Group(shape, r.mode, []))
            g.entries.append(entry)
        return measure(list(groups.values()), timer=longer(timer, 2), rounds=2 * spec.rounds, memory=False,
                       slowdown=spec.slowdown, progress=progress, spread=True)

    return again
