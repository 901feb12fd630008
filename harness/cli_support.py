"""What every command of the command line shares: its options (``--db``, ``--format``, the sweep
and executor options) and :func:`handles_errors`, the one way a user error is printed."""

from __future__ import annotations

import functools
import signal
from typing import Any, Callable

import typer

from harness.report import err

DB = typer.Option(None, "--db", help="SQLAlchemy URL or SQLite path (default: $ARCHBENCH_DB or sqlite:///results.db)")
FORMAT = typer.Option("table", "--format", "-f", help="table, markdown, csv or json")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bars (for logs)")
CKPT = typer.Option("checkpoints", "--checkpoint-dir", help="where checkpoints are written")
PLUGIN = typer.Option(None, "--plugin", help="a .py file or module that registers mixers/tasks (repeatable)")

JOBS = typer.Option(1, "--jobs", "-j", min=1, help="runs at a time (local process pool)")
DRY = typer.Option(False, "--dry-run", help="print the expanded runs and stop")
RETRY = typer.Option(False, "--retry-failed", help="redo runs that failed or diverged before")
EXECUTOR = typer.Option("local", "--executor", help="local (a process pool of --jobs) or ray (a Ray cluster)")
ADDRESS = typer.Option(None, "--address", help="Ray: auto (the running cluster) or ray://HOST:PORT (default: "
                       "start Ray on this machine)")
CPUS = typer.Option(None, "--num-cpus", help="Ray: CPUs per run (default: the sweep file's resources, else 1)")
GPUS = typer.Option(None, "--num-gpus", help="Ray: GPUs per run, fractions share a card (default: the file's, else 0)")
RETRIES = typer.Option(2, "--max-retries", help="Ray: times a run whose worker or node died is retried")


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
