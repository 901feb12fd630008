"""The ``archbench`` command line.

Every command that a user can feed bad input prints one ``error: ...`` line naming the
fix and exits with status 2; nothing is written to the store in that case.
"""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark and rank neural sequence architectures.")
db_app = typer.Typer(no_args_is_help=True, help="Manage the results database.")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

DB = typer.Option(None, "--db", help="SQLAlchemy URL or SQLite path (default: $ARCHBENCH_DB or sqlite:///results.db)")
FORMAT = typer.Option("table", "--format", "-f", help="table, markdown, csv or json")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bars (for logs)")
CKPT = typer.Option("checkpoints", "--checkpoint-dir", help="where checkpoints are written")
PLUGIN = typer.Option(None, "--plugin", help="a .py file or module that registers mixers/tasks (repeatable)")


def handles_errors(fn: Callable) -> Callable:
    """Print user errors as one line and exit 2; turn SIGTERM into an orderly interrupt."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from harness.errors import user_error_types

        def _term(signum, frame):  # noqa: ANN001
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        try:
            return fn(*args, **kwargs)
        except user_error_types() as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: unfinished runs are marked and will be redone next time")
            raise typer.Exit(130) from None

    return wrapper


def _parse_sets(sets: list[str] | None) -> dict[str, Any]:
    from harness.errors import UserError

    out_: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise UserError(f"--set takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out_[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out_[key.strip()] = value
    return out_


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "-" if x != x else f"{x:.3f}"
    return "-" if x is None else str(x)


def print_frame(df, fmt: str, title: str | None = None, red_rows=None) -> None:  # noqa: ANN001
    from harness.errors import UserError

    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "markdown":
        cols = list(df.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
        sys.stdout.write("\n".join(lines) + "\n")
    elif fmt == "table":
        t = Table(title=title, header_style="bold")
        for c in df.columns:
            t.add_column(str(c), justify="right" if df[c].dtype.kind in "fiu" else "left")
        red = [False] * len(df) if red_rows is None else list(red_rows)
        for row, is_red in zip(df.itertuples(index=False), red):
            t.add_row(*(_fmt(v) for v in row), style="red" if is_red else None)
        out.print(t)
    else:
        raise UserError(f"unknown --format {fmt!r}; use table, markdown, csv or json")


def print_board(lb, fmt: str, title: str) -> None:  # noqa: ANN001
    """The leaderboard: ranked entries, then the incomplete ones and the notes. In a terminal
    too narrow for the per-probe columns, the summary ones."""
    from harness.ranking import task_columns

    table = lb.table.drop(columns=["entry_id"], errors="ignore")
    if fmt in ("json", "csv"):
        print_frame(table, fmt, title=title)
        return
    if table.empty:
        print_frame(table, fmt, title=title)
    else:
        t = table.copy()  # the interval in one column, short headers
        t.insert(t.columns.get_loc("ci_low"), "95% CI", [
            f"{a:.3f}-{b:.3f}" if a == a else "none (1 seed)" for a, b in zip(t.ci_low, t.ci_high)])
        t = t.drop(columns=["ci_low", "ci_high"]).rename(columns={"win_rate": "win", "n_params": "params"})
        probes = task_columns(table)
        if fmt == "table" and probes and out.width < 90 + 9 * len(probes):
            t = t.drop(columns=probes)
            print_frame(t, fmt, title=title, red_rows=t["failed"] > 0)
            out.print(f"[dim]per-probe columns ({', '.join(probes)}): widen the terminal or use --format markdown[/]")
        else:
            print_frame(t, fmt, title=title, red_rows=t["failed"] > 0)
        spreads = lb.spreads()
        if spreads:
            dead = [c for c, v in spreads.items() if v < 0.05]
            line = "column spread (max - min): " + ", ".join(f"{c} {v:.2f}" for c, v in spreads.items())
            out.print(line + (f"; [red]separates nothing (< 0.05): {', '.join(dead)}[/]" if dead else ""),
                      highlight=False)
    if not lb.incomplete.empty:
        print_frame(lb.incomplete, fmt, title="incomplete (not ranked: missing task settings)")
    for note in lb.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)


def _open(db: str | None, readonly: bool = False):  # noqa: ANN202
    from harness.store import Store

    return Store(db, readonly=readonly)


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
    from harness.config import _set_path, parse_run_config
    from harness.errors import UserError
    from harness.plugins import load_plugins
    from harness.train import train_run

    load_plugins(plugin or [])
    data: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise UserError(f"run config {str(config)!r} does not exist")
        data = yaml.safe_load(config.read_text()) or {}
        if not isinstance(data, dict):
            raise UserError(f"{config} must hold a mapping (a run config)")
    if arch:
        data = _set_path(data, "arch.name", arch)
    if task:
        data = _set_path(data, "task.name", task)
    if preset:
        data = _set_path(data, "task.preset", preset)
    for k, v in _parse_sets(set_).items():
        data = _set_path(data, k, v)
    if "task" not in data:
        raise UserError("say which task to train on: --task NAME (see `archbench tasks`) or a config file")
    cfg = parse_run_config(data)
    store = _open(db)
    r = train_run(cfg, store, checkpoint_dir=checkpoint_dir, progress=not quiet, retry_failed=retry_failed)
    _report_run(r, cfg)
    if r.status.startswith("skipped"):
        out.print(f"run {r.run_id} was not trained again ({r.status.split(':', 1)[1]}); "
                  f"its results are in the store (`archbench runs`)")
    elif r.status != "done":
        raise typer.Exit(1)


def _report_run(r, cfg) -> None:  # noqa: ANN001
    from harness.train import arch_label

    what = f"{arch_label(cfg)} {cfg.task.setting_label} lr={cfg.optimizer.lr:g} seed={cfg.seed}"
    if r.status == "done":
        out.print(f"[green]done[/] {r.run_id} {what}: val {r.scores['val_score']:.4f} "
                  f"test {r.scores['test_score']:.4f} ({r.step} steps, {r.seconds:.1f}s) -> {r.checkpoint}",
                  highlight=False)
    elif r.status.startswith("skipped"):
        out.print(f"[dim]skip[/] {r.run_id} {what} ({r.status.split(':', 1)[1]})", highlight=False)
    else:
        last = (r.error or "").strip().splitlines()[-1:] or [""]
        out.print(f"[red]{r.status}[/] {r.run_id} {what}: {last[0]}", highlight=False)


@app.command("eval")
@handles_errors
def eval_(
    checkpoint: Path = typer.Argument(..., help="checkpoint directory written by train"),
    task: Optional[str] = typer.Option(None, help="task to evaluate on (default: the one trained on)"),
    preset: Optional[str] = typer.Option(None, help="task preset"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="task knob override, e.g. seq_len=256"),
    data: Optional[str] = typer.Option(None, "--data", help="a test set: .npz/.safetensors (inputs, labels [n, T]), "
                                       "or the task's text format (.jsonl, .parquet, a Hugging Face dataset)"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="splits to score (default: all but train)"),
    seed: Optional[int] = typer.Option(None, help="data seed (default: the run's seed)"),
    db: Optional[str] = DB, fmt: str = FORMAT, plugin: Optional[list[str]] = PLUGIN,
) -> None:
    """Score a checkpoint on its task's splits, other task settings, or a data file."""
    from harness.evaluate_checkpoint import evaluate_checkpoint, store_evaluation
    from harness.plugins import load_plugins

    load_plugins(plugin or [])
    rows = evaluate_checkpoint(checkpoint, task=task, preset=preset, overrides=_parse_sets(set_),
                               data_file=data, splits=split, seed=seed)
    store_evaluation(_open(db), rows)
    import pandas as pd

    print_frame(pd.DataFrame(rows)[["split", "name", "value", "n_examples"]], fmt, title=f"eval {checkpoint}")


# -- sweeps ---------------------------------------------------------------------------

def _run_sweep_file(path: Path, jobs: int, dry_run: bool, db: str | None, checkpoint_dir: str, quiet: bool,
                    retry_failed: bool, plugins: list[str] | None = None) -> None:
    from harness.config import expand_sweep, load_sweep, run_id
    from harness.plugins import load_plugins
    from harness.sweep import require_runs, run_sweep
    from harness.train import arch_label

    sweep = load_sweep(path)
    require_runs(sweep, path)
    load_plugins(sweep.plugins, base_dir=path.parent)  # sweep-file paths are relative to the file
    load_plugins(plugins or [])
    configs = expand_sweep(sweep)
    if dry_run:
        for i, c in enumerate(configs, 1):
            print(f"{i:4d}  {run_id(c)}  {arch_label(c):20s} {c.arch.size_label:12s} "
                  f"{c.task.setting_label}  lr={c.optimizer.lr:g} seed={c.seed}")
        out.print(f"{len(configs)} runs in sweep {sweep.name!r}")
        return
    store = _open(db)
    out.print(f"sweep {sweep.name!r}: {len(configs)} runs, {jobs} at a time, results in {store.url}")
    results = run_sweep(configs, store, sweep=sweep.name, jobs=jobs, checkpoint_dir=checkpoint_dir,
                        progress=not quiet, retry_failed=retry_failed, on_result=_report_run)
    counts: dict[str, int] = {}
    for r in results:
        k = r.status.split(":")[0]
        counts[k] = counts.get(k, 0) + 1
    out.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    from harness.queries import scoped_leaderboard

    lb, _ = scoped_leaderboard(store.score_frame(), sweep=sweep.name)
    print_board(lb, "table", title=f"leaderboard: {sweep.name}")


JOBS = typer.Option(1, "--jobs", "-j", min=1, help="runs at a time (local process pool)")
DRY = typer.Option(False, "--dry-run", help="print the expanded runs and stop")
RETRY = typer.Option(False, "--retry-failed", help="redo runs that failed or diverged before")


@app.command()
@handles_errors
def sweep(file: Path = typer.Argument(..., help="sweep YAML (base + grid)"), jobs: int = JOBS, dry_run: bool = DRY,
          db: Optional[str] = DB, checkpoint_dir: str = CKPT, quiet: bool = QUIET, retry_failed: bool = RETRY,
          plugin: Optional[list[str]] = PLUGIN) -> None:
    """Run a sweep file's grid; finished runs are skipped, killed ones redone."""
    _run_sweep_file(file, jobs, dry_run, db, checkpoint_dir, quiet, retry_failed, plugin)


@app.command()
@handles_errors
def suite(name: str = typer.Argument("quick", help="built-in suite (quick, ...)"), jobs: int = JOBS,
          dry_run: bool = DRY, db: Optional[str] = DB, checkpoint_dir: str = CKPT, quiet: bool = QUIET,
          retry_failed: bool = RETRY, plugin: Optional[list[str]] = PLUGIN) -> None:
    """Run a built-in sweep shipped with archbench (`quick` runs on a laptop CPU in minutes)."""
    from harness.config import suite_path

    _run_sweep_file(suite_path(name), jobs, dry_run, db, checkpoint_dir, quiet, retry_failed, plugin)


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
                kernels: bool = typer.Option(False, "--kernels", help="latest kernel benchmarks, not the ranking")) -> None:
    """Rank architectures: best lr on val, its test score over the no-skill floor, failures as 0."""
    from harness.queries import scoped_leaderboard

    store = _open(db, readonly=True)
    if kernels:
        from harness.queries import KERNEL_COLUMNS, latest_kernels

        kb = latest_kernels(store)
        if kb.empty and fmt == "table":
            out.print("no kernel benchmarks yet; run `archbench bench`")
        else:
            kb = kb.sort_values(["device_name", "dtype", "mode", "seq_len", "op", "impl"], kind="stable")
            kb = kb.assign(git_sha=kb["git_sha"].map(lambda s: s[:8] if isinstance(s, str) else s),
                           created_at=kb["created_at"].map(lambda t: t.isoformat(sep=" ", timespec="seconds")
                                                           if t is not None and t == t else None))
            print_frame(kb[KERNEL_COLUMNS].reset_index(drop=True), fmt,
                        title="kernel benchmarks (latest per op, impl, shape, device)")
        return
    frame = store.score_frame(task=task, size=size)
    if frame.empty and fmt == "table":
        out.print("no finished runs yet; run `archbench suite quick` to make some")
        return
    lb, scope = scoped_leaderboard(frame, sweep=sweep, every_sweep=every, exclude_failed=exclude_failed)
    title = f"archbench leaderboard: {scope}" + (" [failures excluded]" if exclude_failed else "")
    if settings:
        print_frame(lb.settings.drop(columns=["entry_id", "setting_id", "task_id"], errors="ignore"), fmt,
                    title=title + ", per task setting")
    else:
        print_board(lb, fmt, title=title)


@app.command()
@handles_errors
def runs(db: Optional[str] = DB, status: Optional[str] = typer.Option(None, help="queued, running, done, failed, ..."),
         arch: Optional[str] = None, task: Optional[str] = None, sweep: Optional[str] = None,
         limit: Optional[int] = typer.Option(None, min=1), fmt: str = FORMAT) -> None:
    """List runs with their status and headline scores."""
    import pandas as pd

    from harness.errors import UserError
    from harness.store import RUN_STATUSES

    if status is not None and status not in RUN_STATUSES:
        raise UserError(f"unknown --status {status!r}; use one of {', '.join(RUN_STATUSES)}")
    rows = _open(db, readonly=True).runs(status=status, arch=arch, task=task, sweep=sweep, limit=limit)
    df = pd.DataFrame([dict(id=r.id, status=r.status, arch=r.arch_label, size=r.size, task=r.task_setting,
                            lr=r.lr, seed=r.seed, step=r.step, val=r.val_score, test=r.test_score,
                            seconds=r.duration_s, sweep=r.sweep) for r in rows])
    if df.empty and fmt == "table":
        out.print("no runs match")
        return
    print_frame(df, fmt, title="runs")


@db_app.command("upgrade")
@handles_errors
def db_upgrade(db: Optional[str] = DB) -> None:
    """Migrate a results database to the newest schema."""
    from harness.store import engine as eng

    from harness.floors import backfill_floors
    from harness.store import Store

    url = eng.resolve_url(db)
    e = eng.create(url)
    before, after = eng.upgrade(e)
    out.print(f"{url}: schema {before or 'empty'} -> {after}")
    filled, skipped = backfill_floors(Store(url))
    if filled or skipped:
        out.print(f"no-skill floors computed for {filled} runs from their stored configs"
                  + (f"; {len(skipped)} left at chance (e.g. {next(iter(skipped.values()))})" if skipped else ""),
                  highlight=False)


@app.command()
@handles_errors
def tasks(fmt: str = FORMAT, plugin: Optional[list[str]] = PLUGIN) -> None:
    """List the registered tasks with their knobs and presets."""
    import pandas as pd

    from harness.plugins import load_plugins

    load_plugins(plugin or [])
    from tasks import get_task_class, task_names

    rows = []
    for name in task_names():
        cls = get_task_class(name)
        skip = {"n_train", "n_val", "n_test"}
        knobs = ", ".join(f"{k}={f.default!r}" for k, f in cls.Config.model_fields.items() if k not in skip)
        rows.append(dict(task=name, metric=cls.metric, presets=", ".join(cls.presets), knobs=knobs,
                         description=cls.description))
    print_frame(pd.DataFrame(rows), fmt, title="tasks")


@app.command()
@handles_errors
def archs(d_model: int = typer.Option(128, "--d-model"), n_layers: int = typer.Option(2, "--n-layers"),
          n_heads: int = typer.Option(4, "--n-heads"), vocab: int = typer.Option(8192, help="vocabulary size"),
          fmt: str = FORMAT, plugin: Optional[list[str]] = PLUGIN) -> None:
    """List the registered architectures with parameter counts at one size."""
    import pandas as pd

    from harness.plugins import load_plugins

    load_plugins(plugin or [])
    from models import LM, ArchConfig, mixer_names
    from models.registry import mixer_description

    rows = []
    base = None
    for name in mixer_names():
        m = LM(ArchConfig(name=name, d_model=d_model, n_layers=n_layers, n_heads=n_heads), vocab)
        n = m.num_params(embeddings=False)
        base = n if name == "transformer" else base
        rows.append(dict(arch=name, params=m.num_params(), non_embedding=n, description=mixer_description(name)))
    df = pd.DataFrame(rows)
    if base:
        df.insert(3, "vs_transformer", df["non_embedding"] / base)
    print_frame(df, fmt, title=f"architectures at d_model={d_model}, n_layers={n_layers}, n_heads={n_heads}")


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
    import importlib.util
    import os
    import subprocess

    from harness.errors import OlderSchema, StoreNotReady, UserError
    from harness.store import resolve_url

    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the dashboard needs Streamlit: pip install 'archbench[dashboard]'")
    url = resolve_url(db)
    try:
        _open(url, readonly=True).close()
    except (StoreNotReady, OlderSchema) as e:
        # a missing, empty or older store still gets the page, which says how to fill or upgrade
        # it (and shows the runs once they arrive); any other failure stops here with its fix
        err.print(f"[yellow]note[/]: {e}", highlight=False, soft_wrap=True)
    app_path = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.address", host, "--server.headless", str(not open_browser).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", "--", "--db", url]
    out.print(f"archbench dashboard on http://{host}:{port} (reading {url}); Ctrl-C to stop")
    raise typer.Exit(subprocess.call(cmd, env={**os.environ, "ARCHBENCH_DB": url}))


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
