"""What the CLI prints: the listings it shows and how a frame or the leaderboard is printed.

Printing is kept apart from the commands (:mod:`harness.cli` parses, calls one harness
function, prints with these) and from the numbers (:mod:`harness.ranking`), so a table looks
the same whichever command prints it.  The leaderboard's columns, headers and formats are
:data:`harness.ranking.BOARD_COLUMNS`, which the dashboard shows too.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from harness.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

out = Console()
err = Console(stderr=True)

def _fmt(x: Any, pattern: str | None = None) -> str:
    """One cell: ``-`` for a missing value, floats to 3 decimals unless ``pattern`` says otherwise."""
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if pattern is not None:
        return pattern.format(x)
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def print_frame(df: pd.DataFrame, fmt: str, title: str | None = None, red_rows=None,  # noqa: ANN001
                formats: dict[str, str] | None = None) -> None:
    """``df`` as a terminal table, markdown, CSV or JSON (``fmt``); ``red_rows`` marks rows in
    the terminal table, ``formats`` gives some columns a :meth:`str.format` pattern."""
    formats = formats or {}
    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "markdown":
        cols = list(df.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(v, formats.get(c)) for c, v in zip(cols, row)) + " |"
                  for row in df.itertuples(index=False)]
        sys.stdout.write("\n".join(lines) + "\n")
    elif fmt == "table":
        t = Table(title=title, header_style="bold")
        for c in df.columns:
            t.add_column(str(c), justify="right" if df[c].dtype.kind in "fiu" else "left")
        red = [False] * len(df) if red_rows is None else list(red_rows)
        for row, is_red in zip(df.itertuples(index=False), red):
            t.add_row(*(_fmt(v, formats.get(c)) for c, v in zip(df.columns, row)), style="red" if is_red else None)
        out.print(t)
    else:
        raise UserError(f"unknown --format {fmt!r}; use table, markdown, csv or json")


def board_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """A ranked table as the terminal shows it: columns renamed to their headers, each interval
    as one ``low-high`` column; with the per-column formats and the probe headers."""
    import pandas as pd

    from harness.ranking import board_columns, task_columns

    shown: dict[str, Any] = {}
    formats: dict[str, str] = {}
    for c in board_columns(table):
        if c.ends:
            lo, hi = (table[f] for f in c.ends)
            shown[c.header] = [f"{c.fmt.format(a)}-{c.fmt.format(b)}" if a == a else "none (1 seed)"
                               for a, b in zip(lo, hi)]
        else:
            shown[c.header] = table[c.name]
            if c.fmt is not None:
                formats[c.header] = c.fmt
    probes = task_columns(table)  # a probe's header is its name
    return pd.DataFrame(shown, index=table.index), formats, probes


def print_board(lb, fmt: str, title: str) -> None:  # noqa: ANN001
    """The leaderboard: ranked entries, then the incomplete ones and the notes. In a terminal
    too narrow for the per-probe columns, the summary ones."""
    table = lb.table.drop(columns=["entry_id"], errors="ignore")
    if fmt in ("json", "csv"):
        print_frame(table, fmt, title=title)
        return
    if table.empty:
        print_frame(table, fmt, title=title)
    else:
        t, formats, probes = board_frame(table)
        if fmt == "table" and probes and out.width < 90 + 9 * len(probes):
            t = t.drop(columns=probes)
            print_frame(t, fmt, title=title, red_rows=t["failed"] > 0, formats=formats)
            out.print(f"[dim]per-probe columns ({', '.join(probes)}): widen the terminal or use --format markdown[/]")
        else:
            print_frame(t, fmt, title=title, red_rows=t["failed"] > 0, formats=formats)
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


NO_BENCHMARKS = "no lm-eval scores yet; run `archbench eval CHECKPOINT --lm-tasks ...` (e.g. --lm-tasks hellaswag)"


def print_benchmark_board(board, fmt: str) -> None:  # noqa: ANN001
    """``archbench leaderboard --benchmarks``: models ranked on lm-eval scores
    (:mod:`harness.benchmark_board`), then the incomplete ones and the notes.  JSON and CSV give
    the table's numbers (each stderr its own field); the table and markdown show ``value ± stderr``."""
    from harness.benchmark_board import shown_table

    if board.empty:
        if fmt in ("table", "markdown"):
            out.print(NO_BENCHMARKS, highlight=False, soft_wrap=True)
            return
        print_frame(board.table, fmt)  # json: [], csv: the header (an unknown format: its error)
        err.print(NO_BENCHMARKS, highlight=False, soft_wrap=True)  # not on stdout: the output stays parseable
        return
    title = "archbench benchmarks: models ranked on lm-eval scores"
    if fmt in ("json", "csv"):
        print_frame(board.table, fmt, title=title)
        return
    t = shown_table(board)
    cells = list(board.cells["cell"])
    if fmt == "table" and cells and out.width < 80 + 18 * len(cells):
        print_frame(t.drop(columns=cells), fmt, title=title)
        out.print(f"[dim]per-benchmark columns ({', '.join(cells)}): widen the terminal or use --format markdown[/]",
                  highlight=False)
    else:
        print_frame(t, fmt, title=title)
    if not board.incomplete.empty:
        print_frame(board.incomplete, fmt, title="incomplete (not ranked: missing reference benchmarks)")
    for note in board.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def print_settings(lb, fmt: str, title: str) -> None:  # noqa: ANN001
    """Per (entry, task setting): the chosen learning rate and its scores (``--settings``)."""
    print_frame(lb.settings.drop(columns=["entry_id", "setting_id", "task_id"], errors="ignore"), fmt, title=title)


def run_line(r, cfg) -> str:  # noqa: ANN001
    """One finished (or skipped) run in one line, as ``train`` and ``sweep`` report it (rich markup)."""
    from harness.train import arch_label

    what = f"{arch_label(cfg)} {cfg.task.setting_label} lr={cfg.optimizer.lr:g} seed={cfg.seed}"
    if r.status == "done":
        return (f"[green]done[/] {r.run_id} {what}: val {r.scores['val_score']:.4f} "
                f"test {r.scores['test_score']:.4f} ({r.step} steps, {r.seconds:.1f}s) -> {r.checkpoint}")
    if r.status.startswith("skipped"):
        return f"[dim]skip[/] {r.run_id} {what} ({r.status.split(':', 1)[1]})"
    last = (r.error or "").strip().splitlines()[-1:] or [""]
    return f"[red]{r.status}[/] {r.run_id} {what}: {last[0]}"


# -- listings -------------------------------------------------------------------------

EVAL_COLUMNS = ["split", "name", "value", "n_examples"]
BENCHMARK_COLUMNS = ["benchmark", "metric", "filter", "value", "stderr", "n_samples", "num_fewshot"]
"""What ``archbench eval --lm-tasks`` prints of each stored lm-eval score."""
BENCHMARK_FORMATS = {"value": "{:.4f}", "stderr": "{:.4f}", "n_samples": "{:.0f}", "num_fewshot": "{:.0f}"}
"""What ``archbench eval`` prints of each stored evaluation row."""


def runs_table(db: str | None, *, status: str | None = None, arch: str | None = None, task: str | None = None,
               sweep: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Runs with their status and headline scores (``archbench runs``), oldest first, from the
    store at ``db`` (opened read-only, and only once the filters are known to be valid)."""
    import pandas as pd

    from harness.store import RUN_STATUSES, Store

    if status is not None and status not in RUN_STATUSES:
        raise UserError(f"unknown --status {status!r}; use one of {', '.join(RUN_STATUSES)}")
    rows = Store(db, readonly=True).runs(status=status, arch=arch, task=task, sweep=sweep, limit=limit)
    return pd.DataFrame([dict(id=r.id, status=r.status, arch=r.arch_label, size=r.size, task=r.task_setting,
                              lr=r.lr, seed=r.seed, step=r.step, val=r.val_score, test=r.test_score,
                              seconds=r.duration_s, sweep=r.sweep) for r in rows])


def task_table() -> pd.DataFrame:
    """The registered tasks with their metric, presets, knobs (at their defaults) and description."""
    import pandas as pd

    from tasks import get_task_class, task_names

    rows = []
    skip = {"n_train", "n_val", "n_test"}
    for name in task_names():
        cls = get_task_class(name)
        knobs = ", ".join(f"{k}={f.default!r}" for k, f in cls.Config.model_fields.items() if k not in skip)
        rows.append(dict(task=name, metric=cls.metric, presets=", ".join(cls.presets), knobs=knobs,
                         description=cls.description))
    return pd.DataFrame(rows)


def arch_table(d_model: int, n_layers: int, n_heads: int, vocab: int) -> pd.DataFrame:
    """The registered architectures with their parameter counts at one size (and, when the
    transformer is registered, their non-embedding count relative to it)."""
    import pandas as pd

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
    return df


def print_kernels(kb: pd.DataFrame, fmt: str) -> None:
    """``archbench leaderboard --kernels``: the latest kernel benchmarks (:func:`harness.queries.latest_kernels`)."""
    from harness.queries import KERNEL_COLUMNS

    if kb.empty and fmt == "table":
        out.print("no kernel benchmarks yet; run `archbench bench`")
        return
    kb = kb.sort_values(["device_name", "dtype", "mode", "seq_len", "op", "impl"], kind="stable")
    kb = kb.assign(git_sha=kb["git_sha"].map(lambda s: s[:8] if isinstance(s, str) else s),
                   created_at=kb["created_at"].map(lambda t: t.isoformat(sep=" ", timespec="seconds")
                                                   if t is not None and t == t else None))
    print_frame(kb[KERNEL_COLUMNS].reset_index(drop=True), fmt,
                title="kernel benchmarks (latest per op, impl, shape, device)")
