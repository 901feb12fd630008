"""The one entry point ``archbench bench`` calls: :func:`run` takes the command's options and
returns a :class:`BenchOutcome` for the CLI to print.

The hops, in order:

1. parse and check every option (:func:`harness.kernelbench.spec.make_spec`, the
   ``--max-slowdown``, ``--format`` and ``--clock``, the ``--compare`` baseline file for this
   device class): a bad one is a :class:`~harness.errors.UserError` before any work and
   before the store is opened;
2. measure the grid (:func:`harness.kernelbench.measure.run_bench`);
3. store the rows in ``kernel_benchmarks`` unless ``--no-store``
   (:func:`harness.kernelbench.report.store_results`);
4. write ``--save-baseline`` (:func:`harness.kernelbench.gate.save_baseline`);
5. the gate with ``--compare``: the results against the committed baseline file, the failing
   kernels measured once more, on CPU in a fresh process (:func:`harness.kernelbench.gate.run_gate`,
   :mod:`harness.kernelbench.fresh`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

from harness.errors import UserError
from harness.kernelbench.gate import GateReport, load_baseline, parse_max_slowdown, run_gate, save_baseline
from harness.kernelbench.fresh import fresh_remeasurer
from harness.kernelbench.measure import BenchResult, Progress, remeasurer, run_bench
from harness.kernelbench.report import FORMATS, slowdown_note, store_results
from harness.kernelbench.spec import BenchSpec, Option, device_class, make_spec
from harness.kernelbench.timers import CpuTimer, make_timer


@dataclass
class BenchOutcome:
    spec: BenchSpec
    dev_class: str
    results: list[BenchResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    baseline_written: Path | None = None  # --save-baseline's file
    baseline_file: Path | None = None     # --compare's file for this device class
    gate_note: str | None = None          # why the gate was skipped
    gate: GateReport | None = None

    @property
    def passed(self) -> bool:
        """False only when the gate ran and found a slowdown."""
        return self.gate is None or self.gate.passed


def run(*, ops: Option = None, impls: Option = None, seq_lens: Option = None, shapes: Option = None,
        batch: Option = None, heads: Option = None, head_dim: Option = None, causal: str | None = None,
        dtype: Option = None, mode: Option = None, device: str | None = None, rounds: int = 3,
        min_run_time: float = 0.2, clock: str = "wall", memory: bool = True, fmt: str = "table",
        slowdown: str | None = None, compare: Path | None = None, max_slowdown: str = "20%",
        save_baseline_to: Path | None = None, command: str | None = None,
        open_store: Callable[[], Any] | None = None,
        progress: Callable[[], ContextManager[Progress]] | None = None,
        announce: Callable[[str], None] | None = None) -> BenchOutcome:
    """Check the options, measure, store, save the baseline and run the gate (see the module
    docstring).  ``open_store`` is called once the options are known good (``None``: do not
    store); ``progress`` makes the progress bar for the measurement; ``announce`` gets the
    notes worth printing before it starts (a planted slowdown)."""
    spec = make_spec(ops=ops, impls=impls, seq_lens=seq_lens, shapes=shapes, batch=batch, heads=heads,
                     head_dim=head_dim, causal=causal, dtype=dtype, mode=mode, device=device, rounds=rounds,
                     memory=memory, slowdown=slowdown)
    threshold = parse_max_slowdown(max_slowdown)
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use table, markdown, csv or json")
    outcome = BenchOutcome(spec=spec, dev_class=device_class(spec.device))
    entries = None
    if compare is not None:
        entries, outcome.baseline_file, outcome.gate_note = load_baseline(compare, outcome.dev_class)
    timer = make_timer(spec.device, min_run_time, clock=clock)
    store = open_store() if open_store is not None else None
    if spec.slowdown and announce is not None:
        announce(slowdown_note(spec.slowdown))
    with (progress() if progress is not None else contextlib.nullcontext()) as bar:
        outcome.results, outcome.skipped = run_bench(spec, timer=timer, progress=bar)
    if store is not None:
        store_results(store, outcome.results, spec.device)
    if save_baseline_to is not None:
        outcome.baseline_written = save_baseline(save_baseline_to, outcome.results, outcome.dev_class,
                                                 command=command)
    if entries is not None:
        # on CPU the second opinion comes from a fresh process: a process's offset is its own
        again = fresh_remeasurer(spec, timer) if isinstance(timer, CpuTimer) else remeasurer(spec, timer)
        outcome.gate = run_gate(outcome.results, entries, threshold, remeasure=again)
    return outcome
