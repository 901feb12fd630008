"""The ``archbench`` command line: each command parses its options, makes one harness call
and prints what comes back (:mod:`harness.report`); the work is done in ``harness``.

Every command that a user can feed bad input prints one ``error: ...`` line naming the
fix and exits with status 2; nothing is written to the store in that case.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from harness.cli_support import (ADDRESS, CKPT, CPUS, DB, DRY, EXECUTOR, FORMAT, GPUS, JOBS, PLUGIN, QUIET,
                                 RETRIES, RETRY, handles_errors)
from harness.report import err, out, print_board, print_frame, print_settings, run_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark and rank neural sequence architectures.")
db_app = typer.Typer(no_args_is_help=True, help="Manage the results database.")
app.add_typer(db_app, name="db")


def _open(db: str | None, readonly: bool = False):  # noqa: ANN202
    from harness.store import Store

    return Store(db, readonly=readonly)


def _plugins(plugin: list[str] | None) -> None:
    from harness.plugins import load_plugins

    load_plugins(plugin or [])


# -- train / eval ---------------------------------------------------------------------

@app.command()
@handles_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML run config (else built from the options)"),
    arch: Optional[str] = typer.Option(None, help="architecture (see `archbench archs`)"),
    task: Optional[str] = typer.Option(None, help="task (see `archbench tasks`)"),
    preset: Optional[str] = typer.Option(None, help="task preset, e.g. quick or paper"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="dotted override, e.g. arch.d_model=128"),
    db: Optional[str] = DB, checkpoint_dir: str = CKPT, quiet: bool = QUIET,
    retry_failed: bool = typer.Option(False, help="run again even if an earlier attempt failed"),
    plugin: Optional[list[str]] = PLUGIN,
) -> None:
    """Train one run and store its learning curve, scores and checkpoint."""
    from harness.config import build_run_config
    from harness.train import train_to_store

    _plugins(plugin)
    cfg = build_run_config(config, arch=arch, task=task, preset=preset, sets=set_)
    r = train_to_store(cfg, db, checkpoint_dir=checkpoint_dir, progress=not quiet, retry_failed=retry_failed)
    _report_run(r, cfg)
    if r.status.startswith("skipped"):
        out.print(f"run {r.run_id} was not trained again ({r.status.split(':', 1)[1]}); "
                  f"its results are in the store (`archbench runs`)")
    elif r.status != "done":
        raise typer.Exit(1)


def _report_run(r, cfg) -> None:  # noqa: ANN001
    out.print(run_line(r, cfg), highlight=False)


@app.command("eval")
@handles_errors
def eval_(
    checkpoint: str = typer.Argument(..., help="checkpoint directory written by train, or hf:PATH (a Hugging Face "
                                     "model directory or hub id, with --lm-tasks)"),
    task: Optional[str] = typer.Option(None, help="task to evaluate on (default: the one trained on)"),
    preset: Optional[str] = typer.Option(None, help="task preset"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="task knob override, e.g. seq_len=256"),
    data: Optional[str] = typer.Option(None, "--data", help="a test set: .npz/.safetensors (inputs, labels [n, T]), "
                                       "or the task's text format (.jsonl, .parquet, a Hugging Face dataset)"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="splits to score (default: all but train)"),
    seed: Optional[int] = typer.Option(None, help="data seed (default: the run's seed; lm-eval: 0)"),
    lm_tasks: Optional[str] = typer.Option(None, "--lm-tasks", help="lm-eval tasks, comma separated (hellaswag, "
                                           "archbench_needle, ...): run lm-eval instead of the probe splits"),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="lm-eval few-shot examples (default: "
                                              "each task's own)"),
    limit: Optional[float] = typer.Option(None, "--limit", help="lm-eval: at most this many documents per task "
                                          "(below 1: a fraction)"),
    batch_size: int = typer.Option(16, "--batch-size", help="lm-eval batch size"),
    device: str = typer.Option("cpu", "--device", help="lm-eval device: cpu, cuda, cuda:N"),
    include_path: Optional[list[str]] = typer.Option(None, "--include-path", help="a directory of your own lm-eval "
                                                     "task YAMLs (repeatable)"),
    db: Optional[str] = DB, fmt: str = FORMAT, plugin: Optional[list[str]] = PLUGIN,
) -> None:
    """Score a checkpoint on its task's splits, other task settings, a data file, or lm-eval tasks."""
    import pandas as pd

    _plugins(plugin)
    if lm_tasks is not None:
        from harness.lm_eval_run import evaluate_lm_and_store
        from harness.report import BENCHMARK_COLUMNS, BENCHMARK_FORMATS

        outcome = evaluate_lm_and_store(checkpoint, lm_tasks, db, num_fewshot=num_fewshot, limit=limit,
                                        batch_size=batch_size, device=device, include_path=include_path,
                                        seed=seed or 0)
        print_frame(pd.DataFrame(outcome.rows, columns=BENCHMARK_COLUMNS)[BENCHMARK_COLUMNS], fmt,
                    title=f"lm-eval {outcome.label}", formats=BENCHMARK_FORMATS)
        return
    from harness.evaluate_checkpoint import evaluate_and_store
    from harness.report import EVAL_COLUMNS

    rows = evaluate_and_store(checkpoint, db, task=task, preset=preset, sets=set_, data_file=data, splits=split,
                              seed=seed)
    print_frame(pd.DataFrame(rows)[EVAL_COLUMNS], fmt, title=f"eval {checkpoint}")


# -- sweeps ---------------------------------------------------------------------------

def _run_sweep_file(path: Path, jobs: int, dry_run: bool, db: str | None, checkpoint_dir: str, quiet: bool,
                    retry_failed: bool, plugins: list[str] | None, executor: str, address: str | None,
                    num_cpus: float | None, num_gpus: float | None, max_retries: int) -> None:
    from harness.sweep import make_executor, plan_sweep, run_sweep_file

    if dry_run:
        plan = plan_sweep(path, plugins)
        for line in plan.listing():
            print(line)
        out.print(f"{len(plan.configs)} runs in sweep {plan.name!r}")
        return
    ex = make_executor(executor, jobs, address=address, num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)

    def started(plan, url: str) -> None:  # noqa: ANN001
        out.print(f"sweep {plan.name!r}: {len(plan.configs)} runs, {ex.with_resources(plan.resources).describe()}, "
                  f"results in {url}")

    done = run_sweep_file(path, db, jobs=jobs, checkpoint_dir=checkpoint_dir, progress=not quiet,
                          retry_failed=retry_failed, plugins=plugins, on_start=started, on_result=_report_run,
                          executor=ex, on_progress=lambda line: err.print(line, highlight=False))
    out.print(done.summary)
    print_board(done.leaderboard, "table", title=f"leaderboard: {done.name}")




@app.command()
@handles_errors
def sweep(file: Path = typer.Argument(..., help="sweep YAML (base + grid)"), jobs: int = JOBS, dry_run: bool = DRY,
          db: Optional[str] = DB, checkpoint_dir: str = CKPT, quiet: bool = QUIET, retry_failed: bool = RETRY,
          plugin: Optional[list[str]] = PLUGIN, executor: str = EXECUTOR, address: Optional[str] = ADDRESS,
          num_cpus: Optional[float] = CPUS, num_gpus: Optional[float] = GPUS, max_retries: int = RETRIES) -> None:
    """Run a sweep file's grid; finished runs are skipped, killed ones redone."""
    _run_sweep_file(file, jobs, dry_run, db, checkpoint_dir, quiet, retry_failed, plugin, executor, address,
                    num_cpus, num_gpus, max_retries)


@app.command()
@handles_errors
def suite(name: str = typer.Argument("quick", help="built-in suite (quick, ...)"), jobs: int = JOBS,
          dry_run: bool = DRY, db: Optional[str] = DB, checkpoint_dir: str = CKPT, quiet: bool = QUIET,
          retry_failed: bool = RETRY, plugin: Optional[list[str]] = PLUGIN, executor: str = EXECUTOR,
          address: Optional[str] = ADDRESS, num_cpus: Optional[float] = CPUS, num_gpus: Optional[float] = GPUS,
          max_retries: int = RETRIES) -> None:
    """Run a built-in sweep shipped with archbench (`quick` runs on a laptop CPU in minutes)."""
    from harness.config import suite_path

    _run_sweep_file(suite_path(name), jobs, dry_run, db, checkpoint_dir, quiet, retry_failed, plugin, executor,
                    address, num_cpus, num_gpus, max_retries)


# -- reading the store ----------------------------------------------------------------

@app.command()
@handles_errors
def leaderboard(fmt: str = FORMAT, db: Optional[str] = DB,
                sweep: Optional[str] = typer.Option(None, "--sweep", "--suite",
                                                    help="rank this sweep or suite (default: the latest)"),
                every: bool = typer.Option(False, "--all", help="rank every run in the store, all sweeps together"),
                task: Optional[str] = typer.Option(None, help="only this task"),
                size: Optional[str] = typer.Option(None, help="only this size, e.g. d64-L2-H2"),
                exclude_failed: bool = typer.Option(False, "--exclude-failed",
                                                    help="leave failed and diverged runs out (default: they score 0)"),
                settings: bool = typer.Option(False, "--settings", help="per task setting: chosen lr and scores"),
                kernels: bool = typer.Option(False, "--kernels", help="latest kernel benchmarks, not the ranking"),
                benchmarks: bool = typer.Option(False, "--benchmarks", help="models ranked on lm-eval scores")) -> None:
    """Rank architectures: best lr on val, its test score over the no-skill floor, failures as 0."""
    from harness.queries import benchmark_leaderboard, scoped_leaderboard
    from harness.report import print_benchmark_board

    store = _open(db, readonly=True)
    if benchmarks:
        return print_benchmark_board(benchmark_leaderboard(store), fmt)
    if kernels:
        from harness.queries import latest_kernels
        from harness.report import print_kernels

        return print_kernels(latest_kernels(store), fmt)
    frame = store.score_frame(task=task, size=size)
    if frame.empty and fmt == "table":
        out.print("no finished runs yet; run `archbench suite quick` to make some")
        return
    lb, scope = scoped_leaderboard(frame, sweep=sweep, every_sweep=every, exclude_failed=exclude_failed)
    title = f"archbench leaderboard: {scope}" + (" [failures excluded]" if exclude_failed else "")
    if settings:
        print_settings(lb, fmt, title=title + ", per task setting")
    else:
        print_board(lb, fmt, title=title)


@app.command()
@handles_errors
def runs(db: Optional[str] = DB, status: Optional[str] = typer.Option(None, help="queued, running, done, failed, ..."),
         arch: Optional[str] = None, task: Optional[str] = None, sweep: Optional[str] = None,
         limit: Optional[int] = typer.Option(None, min=1), fmt: str = FORMAT) -> None:
    """List runs with their status and headline scores."""
    from harness.report import runs_table

    df = runs_table(db, status=status, arch=arch, task=task, sweep=sweep, limit=limit)
    if df.empty and fmt == "table":
        out.print("no runs match")
        return
    print_frame(df, fmt, title="runs")


@db_app.command("upgrade")
@handles_errors
def db_upgrade(db: Optional[str] = DB) -> None:
    """Migrate a results database to the newest schema."""
    from harness.floors import upgrade_store

    for line in upgrade_store(db):
        out.print(line, highlight=False)


@db_app.command("copy")
@handles_errors
def db_copy(src: str = typer.Argument(..., help="the store to read (SQLAlchemy URL or SQLite path)"),
            dst: str = typer.Argument(..., help="an empty store to write (created and migrated if new)")) -> None:
    """Copy every row of one results database into another (SQLite <-> PostgreSQL)."""
    from harness.store.copy import copy_store

    counts = copy_store(src, dst)
    out.print(", ".join(f"{n} {t}" for t, n in counts.items()) + f": copied into {dst}", highlight=False)


@app.command()
@handles_errors
def tasks(fmt: str = FORMAT, plugin: Optional[list[str]] = PLUGIN) -> None:
    """List the registered tasks with their knobs and presets."""
    from harness.report import task_table

    _plugins(plugin)
    print_frame(task_table(), fmt, title="tasks")


@app.command()
@handles_errors
def archs(d_model: int = typer.Option(128, "--d-model"), n_layers: int = typer.Option(2, "--n-layers"),
          n_heads: int = typer.Option(4, "--n-heads"), vocab: int = typer.Option(8192, help="vocabulary size"),
          fmt: str = FORMAT, plugin: Optional[list[str]] = PLUGIN) -> None:
    """List the registered architectures with parameter counts at one size."""
    from harness.report import arch_table

    _plugins(plugin)
    print_frame(arch_table(d_model, n_layers, n_heads, vocab), fmt,
                title=f"architectures at d_model={d_model}, n_layers={n_layers}, n_heads={n_heads}")


@app.command("bench-probes")
@handles_errors
def bench_probes_cmd(preset: str = typer.Option("paper", help="which preset of each probe to time"),
                     tokens: int = typer.Option(2_000_000, min=1000, help="tokens generated per repetition"),
                     reps: int = typer.Option(3, min=1, help="repetitions (the best is reported)"),
                     task: Optional[list[str]] = typer.Option(None, "--task", help="only these probes"),
                     db: Optional[str] = DB, fmt: str = FORMAT,
                     store_results: bool = typer.Option(True, "--store/--no-store", help="write rows to the store")) -> None:
    """Time every probe's generator (tokens per second) and store the numbers."""
    import pandas as pd

    from harness import environment
    from tasks import get_task_class
    from tasks.generation_speed import bench_probes

    for name in task or []:
        get_task_class(name)  # unknown names fail before any work
    rows = bench_probes(preset=preset, n_tokens=tokens, reps=reps, tasks=task or None)
    if store_results:
        store = _open(db)
        env_id = store.environment(environment.describe("cpu"))
        store.add_probe_benchmarks([dict(task=r["task"], preset=r["preset"], tokens=r["tokens"],
                                         seconds=r["tokens"] / r["tokens_per_s"], tokens_per_s=r["tokens_per_s"],
                                         environment_id=env_id) for r in rows])
    df = pd.DataFrame(rows)
    df["Mtok_per_s"] = df["tokens_per_s"] / 1e6
    df["target_Mtok_per_s"] = df["target_tokens_per_s"] / 1e6
    print_frame(df[["task", "preset", "seq_len", "tokens", "Mtok_per_s", "target_Mtok_per_s", "meets_target"]],
                fmt, title="probe generation speed (best of reps)")


@app.command()
@handles_errors
def dashboard(db: Optional[str] = DB, port: int = typer.Option(8501, help="port to serve on"),
              host: str = typer.Option("localhost", help="address to bind"),
              open_browser: bool = typer.Option(False, "--open/--no-open", help="open a browser tab")) -> None:
    """Serve the Streamlit leaderboard over the results database (read-only)."""
    from harness.serve import serve_dashboard

    raise typer.Exit(serve_dashboard(db, port=port, host=host, open_browser=open_browser))


@app.command("bench")
@handles_errors
def bench_cmd(
    ops: Optional[list[str]] = typer.Option(None, "--ops", help="ops, comma-separated or repeated (default: all): "
                                            "softmax (sdpa), fox, path, path-fox, momentum, linear, deltanet"),
    impls: Optional[list[str]] = typer.Option(None, "--impls", help="torch, triton, sdpa, flash, fla, reference "
                                              "(default: all but reference that run on the device)"),
    seq_lens: Optional[list[str]] = typer.Option(None, "--seq-lens", "-T", help="sequence lengths (default 256,1024)"),
    shapes: Optional[list[str]] = typer.Option(None, "--shapes", help="explicit BxTxHxD shapes, e.g. 1x4096x8x64 "
                                               "(instead of the batch x heads x head-dim x seq-lens grid)"),
    batch: str = typer.Option("1", "--batch", "-B", help="batch sizes, comma-separated"),
    heads: str = typer.Option("4", "--heads", "-H", help="head counts, comma-separated"),
    head_dim: str = typer.Option("64", "--head-dim", "-D", help="head dims, comma-separated"),
    causal: str = typer.Option("true", "--causal", help="true, false or both (only SDPA runs non-causal)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16, float16, comma-separated "
                                        "(default: bfloat16 on GPU, float32 on CPU)"),
    mode: str = typer.Option("fwd,fwd+bwd", "--mode", help="fwd, fwd+bwd, or both comma-separated"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: torch's)"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="interleaved rounds; each timing keeps its fastest"),
    min_run_time: float = typer.Option(0.2, "--min-run-time", min=0.01, help="CPU seconds per timing"),
    clock: str = typer.Option("wall", "--clock", help="CPU timing clock: wall, or cpu (thread CPU time; "
                              "needs --threads 1; robust on a busy machine)"),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="measure peak memory of one call"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv (or markdown)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="baseline JSON (or a directory of "
                                           "<device-class>.json): exit 1 when a kernel got slower"),
    max_slowdown: str = typer.Option("20%", "--max-slowdown", help="allowed growth of op time / SDPA time"),
    save_baseline: Optional[Path] = typer.Option(None, "--save-baseline", help="write this run as the baseline "
                                                 "for this device class (a file, or a directory)"),
    db: Optional[str] = DB,
    store_results: bool = typer.Option(True, "--store/--no-store", help="write rows to the store"),
    quiet: bool = QUIET, plugin: Optional[list[str]] = PLUGIN,
) -> None:
    """Time kernels (fwd, fwd+bwd) against SDPA: ms, tokens/s, TFLOP/s, memory; gate on a baseline."""
    import os

    import torch

    from harness import kernelbench
    from harness.plugins import load_plugins

    load_plugins(plugin or [])
    if threads:
        torch.set_num_threads(threads)
    outcome = kernelbench.run(
        ops=ops, impls=impls, seq_lens=seq_lens, shapes=shapes, batch=batch, heads=heads, head_dim=head_dim,
        causal=causal, dtype=dtype, mode=mode, device=device, rounds=rounds, min_run_time=min_run_time, clock=clock,
        memory=memory, fmt=fmt, slowdown=os.environ.get(kernelbench.SLOWDOWN_ENV), compare=compare,
        max_slowdown=max_slowdown, save_baseline_to=save_baseline, command="archbench " + " ".join(sys.argv[1:]),
        open_store=(lambda: _open(db)) if store_results else None,
        progress=lambda: kernelbench.progress_bar(err, disable=quiet),
        announce=lambda text: err.print(text, highlight=False, soft_wrap=True))
    kernelbench.print_outcome(outcome, fmt, print_frame=print_frame, out=out, err=err)
    if not outcome.passed:
        raise typer.Exit(1)


def main() -> None:
    from kernels.cpu_memory import keep_freed_memory

    from harness.plugins import print_plugin_warnings

    keep_freed_memory()  # CPU ops stop page-faulting their temporaries in (see the module)
    print_plugin_warnings()
    app()


if __name__ == "__main__":
    main()
