"""The kernel-benchmark wing: ``archbench bench`` and the CI regression gate.

From a command to a stored row and to the gate::

    archbench bench ...  (harness.cli.bench_cmd: parse, one call, print)
      -> command.run(options)                 check every option; nothing runs on bad input
         -> spec.make_spec / spec.plan        registry entries x grid -> one Group per point
         -> measure.run_bench                 per point: runners (measure.make_runner), SDPA
                                              and the entries in interleaved rounds, timed by
                                              timers.CpuTimer / CudaTimer; FLOPs from
                                              flops.kernel_flops
         -> report.store_results              `kernel_benchmarks` rows (unless --no-store)
         -> gate.save_baseline                with --save-baseline: the normalised times
         -> gate.run_gate                     with --compare: against the committed baseline
                                              file benchmarks/baselines/<device class>.json,
                                              suspects re-measured (measure.remeasurer)
      -> report.print_outcome                 table / json / csv, notes, the gate's verdict;
                                              exit 1 when the gate failed

The gate reads committed baseline files, never the store: a fresh CI machine has an empty
store.  The store is read back by :func:`harness.queries.latest_kernels` (``archbench
leaderboard --kernels`` and the dashboard's kernels page).

Modules: :mod:`~harness.kernelbench.spec` (what to measure), :mod:`~harness.kernelbench.timers`
(timers, memory, the planted slowdown), :mod:`~harness.kernelbench.measure` (runners and
interleaved rounds), :mod:`~harness.kernelbench.flops` (FLOPs and peak throughput),
:mod:`~harness.kernelbench.report` (frames, storing, printing), :mod:`~harness.kernelbench.gate`
(baselines and the gate), :mod:`~harness.kernelbench.command` (:func:`run`).
"""

from harness.kernelbench.command import BenchOutcome, run
from harness.kernelbench.flops import (
    BWD_ATTENTION, BWD_EXTRA, GPU_PEAK_TFLOPS, kernel_flops, peak_tflops,
)
from harness.kernelbench.gate import (
    BASELINE_FORMAT, ENTRY_FACTOR, MAX_SAMPLES, GateFinding, GateReport, KernelVerdict, baseline_path, compare,
    load_baseline, parse_max_slowdown, run_gate, save_baseline,
)
from harness.kernelbench.measure import (
    BenchResult, Progress, make_runner, measure, progress_bar, remeasurer, run_bench,
)
from harness.kernelbench.report import print_outcome, results_frame, store_results, table_title
from harness.kernelbench.spec import (
    DTYPES, MODES, BenchSpec, Group, default_dtype, device_class, device_name, dtype_name, make_spec,
    parse_causal, parse_dtypes, parse_modes, parse_shapes, plan, resolve_device, select_entries,
)
from harness.kernelbench.timers import (
    SLOWDOWN_ENV, CpuTimer, CudaTimer, Timing, cpu_peak_memory, make_timer, parse_slowdown, slowed,
)

__all__ = [
    "BASELINE_FORMAT", "ENTRY_FACTOR", "MAX_SAMPLES", "KernelVerdict", "BWD_ATTENTION", "BWD_EXTRA", "DTYPES", "GPU_PEAK_TFLOPS", "MODES", "SLOWDOWN_ENV",
    "BenchOutcome", "BenchResult", "BenchSpec", "CpuTimer", "CudaTimer", "GateFinding", "GateReport", "Group",
    "Progress", "Timing", "baseline_path", "compare", "cpu_peak_memory", "default_dtype",
    "device_class", "device_name", "dtype_name", "kernel_flops", "load_baseline", "make_runner",
    "make_spec", "make_timer", "measure", "parse_causal", "parse_dtypes", "parse_max_slowdown", "parse_modes",
    "parse_shapes", "parse_slowdown", "peak_tflops", "plan", "print_outcome", "progress_bar", "remeasurer",
    "resolve_device", "results_frame", "run", "run_bench", "run_gate", "save_baseline", "select_entries",
    "slowed", "store_results", "table_title",
]
