"""The gate's second opinion on CPU, measured in a fresh process.

On a shared CPU machine one entry's normalised time is offset by up to ~20% from one process
to the next (memory layout, which pages and caches it got), while the same process measures
it again within ~2% (``benchmarks/gate_trials.py``; the ``samples`` of a baseline file).  So
re-measuring a suspect in the process that first measured it only repeats that process's
offset.  :func:`fresh_remeasurer` measures the failing kernels again in a new Python process
(``python -m harness.kernelbench.fresh``): the same entries, shapes, modes, dtype, thread
count, clock and planted slowdown, twice the rounds and twice the time per timing, rounds
spread over the entries.  Plugins come along through ``ARCHBENCH_PLUGINS``, which
:func:`harness.plugins.load_plugins` has set for the child.

The child reads the request as JSON on stdin and writes one JSON list on stdout: per entry
its key fields, ``status``, ``error`` and the paired round ratios.  A child that cannot run
(it crashed, or printed no JSON) leaves the first measurement standing, as an in-process
re-measurement that fails would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable

from harness.kernelbench.measure import BenchResult, remeasurer
from harness.kernelbench.spec import BenchSpec

_FIELDS = ("op", "impl", "mode", "dtype", "batch", "seq_len", "heads", "head_dim", "causal")


def fresh_remeasurer(spec: BenchSpec, timer) -> Callable[[list[BenchResult]], list[BenchResult]]:  # noqa: ANN001
    """Like :func:`~harness.kernelbench.measure.remeasurer`, in a fresh process (CPU timers)."""

    def again(failing: list[BenchResult]) -> list[BenchResult]:
        request = dict(
            device=spec.device, seed=spec.seed, rounds=spec.rounds, slowdown=spec.slowdown,
            min_run_time=timer.min_run_time, clock=timer.clock, threads=timer.num_threads,
            results=[{f: getattr(r, f) for f in _FIELDS} for r in failing])
        proc = subprocess.run([sys.executable, "-m", "harness.kernelbench.fresh"], input=json.dumps(request),
                              capture_output=True, text=True)
        try:
            rows = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
        except (json.JSONDecodeError, IndexError):
            rows = []
        return [BenchResult(**{f: row[f] for f in _FIELDS}, status=row["status"], error=row["error"],
                            paired_ratios=row["paired_ratios"]) for row in rows]

    return again


def _child(request: dict[str, Any]) -> list[dict[str, Any]]:
    import torch

    from harness.kernelbench.timers import CpuTimer
    from harness.plugins import load_plugins
    from kernels.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as the CLI does: the same allocator settings as the first measurement
    load_plugins()
    torch.set_num_threads(request["threads"])
    spec = BenchSpec(entries=[], shapes=[], device=request["device"], rounds=request["rounds"],
                     seed=request["seed"], slowdown=request["slowdown"] or {})  # what the re-measurement reads
    timer = CpuTimer(request["min_run_time"], num_threads=request["threads"], clock=request["clock"])
    failing = [BenchResult(**r) for r in request["results"]]
    return [{**{f: getattr(r, f) for f in _FIELDS}, "status": r.status, "error": r.error,
             "paired_ratios": r.paired_ratios} for r in remeasurer(spec, timer)(failing)]


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.stdin.read()))))
