"""Presenting and storing results: the results frame and table title, the rows written to the
store's ``kernel_benchmarks`` table, and the text ``archbench bench`` prints.

Each result becomes one row (one transaction for the whole grid) with the git sha and the
environment (torch/Triton versions, device); the reported numbers are the fastest timing of
the interleaved rounds (``median_ms``, p20, p80), tokens/s, TFLOP/s, share of peak and peak
memory.  The gate's paired ratios are not stored: the gate reads committed baseline files
(:mod:`harness.kernelbench.gate`), and stored rows are read back by
:func:`harness.queries.latest_kernels` (``archbench leaderboard --kernels``, the dashboard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from harness.kernelbench.flops import peak_tflops
from harness.kernelbench.measure import BenchResult
from harness.kernelbench.spec import default_dtype, device_class, device_name, dtype_name
from harness.kernelbench.timers import SLOWDOWN_ENV

if TYPE_CHECKING:
    from harness.kernelbench.command import BenchOutcome

DB_FIELDS = ("op", "impl", "mode", "dtype", "batch", "seq_len", "heads", "head_dim", "causal", "status", "error",
             "median_ms", "p20_ms", "p80_ms", "tokens_per_s", "tflops", "peak_fraction", "peak_mem_bytes",
             "device_name")
FORMATS = ("table", "markdown", "csv", "json")


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
    store.add_kernel_benchmarks([{**{k: getattr(r, k) for k in DB_FIELDS}, "git_sha": info["git_sha"],
                                  "environment_id": env_id} for r in results])
    return env_id


# -- what the command prints --------------------------------------------------------------------

def slowdown_note(slowdown: dict[str, float]) -> str:
    shown = {op: int(f) if float(f).is_integer() else f for op, f in slowdown.items()}
    return f"[yellow]{SLOWDOWN_ENV}[/]: planted slowdown {shown}"


def print_outcome(outcome: BenchOutcome, fmt: str, *, print_frame: Callable[..., None],
                  out, err) -> None:  # noqa: ANN001
    """The table (or json/csv), failed entries, what was skipped, the baseline written, and the
    gate's verdict (on stderr when it failed; for json/csv every note goes to stderr)."""
    results, device = outcome.results, outcome.spec.device
    print_frame(results_frame(results, compact=fmt == "table"), fmt, title=table_title(results, device))
    note = err if fmt in ("json", "csv") else out

    def say(console, text: str) -> None:  # noqa: ANN001
        console.print(text, highlight=False, soft_wrap=True)

    for r in results:
        if r.status != "ok":
            say(note, f"[red]{r.status}[/] {r.label}: {r.error}")
    if outcome.skipped:
        say(note, "[dim]skipped: " + "; ".join(outcome.skipped) + "[/]")
    if outcome.baseline_written is not None:
        say(note, f"baseline for {outcome.dev_class} written to {outcome.baseline_written}")
    if outcome.gate_note is not None:
        say(note, f"[yellow]note[/]: {outcome.gate_note}")
    if outcome.gate is None:
        return
    from harness.kernelbench.gate import summary

    text = summary(outcome.gate, outcome.baseline_file, outcome.dev_class)
    if outcome.gate.passed:
        say(note, f"[green]pass[/] {text}")
        return
    say(err, f"[bold red]FAIL[/] {text}")
    threshold = outcome.gate.threshold
    for k in outcome.gate.failing_kernels:
        say(err, f"[red]slower:[/] {k.message(threshold)}")
        for f in k.findings:
            say(err, f"  {f.message(threshold)}")
