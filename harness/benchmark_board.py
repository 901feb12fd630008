"""The benchmark board: models ranked on their lm-eval scores, like compared with like.

Input: rows of the ``benchmark_scores`` table (:func:`harness.queries.benchmark_scores`), written by
``archbench eval MODEL --lm-tasks ...``.  The rules:

1. A model is its weights (``model_sha256``), or, for a hub id that has no hash, what was asked for
   (``model``).  Of each model's rows only the latest (``created_at``, then ``id``) per (benchmark,
   metric, filter, few-shot count, limit) counts: a re-run replaces the earlier score.
   A group's subtasks (``archbench_needle``'s lengths, mmlu's subjects) are left out: the group's
   own row stands for them, so a group counts once in the mean, as one benchmark.
2. A *cell* is a (benchmark, few-shot count, limit): scores with another few-shot count or on
   another subset of documents are not the same number and are never averaged together.
3. Each benchmark has one headline metric, the same for every model: ``acc_norm``, else ``acc``,
   else ``exact_match``, else the first (as stored) higher-is-better metric; of its filters
   ``none``, else the first.  A benchmark whose metrics are all lower-is-better (perplexity
   tasks) has no headline: it is shown (``bits_per_byte`` when present) but never averaged.
4. The reference cell set is the one model's set of averaged cells that the most models hold,
   counted as :func:`harness.ranking.reference_settings` counts task settings: the set whose
   (models holding all of it) x (its size) is largest, ties to the larger set, so one model
   scored on a single benchmark does not shrink everyone's score to that benchmark.  Models
   holding all of it are ranked by their mean headline score over it, with the standard error of that
   mean, ``sqrt(sum se^2) / k``, assuming independent benchmarks.  One unknown stderr (lm-eval's
   "N/A", stored as NULL) makes the mean's unknown too: no interval is invented.  Equal scores
   share a rank.  The other models are listed as incomplete, with the cells they miss.

Nothing here reads the store; the columns, headers and formats are
:data:`BENCHMARK_BOARD_COLUMNS` (plus one column per cell), which the CLI and the dashboard show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.ranking import Column, reference_settings

HEADLINE_METRICS = ("acc_norm", "acc", "exact_match")
"""Headline metric preference per benchmark; after these, the first higher-is-better metric."""
SHOWN_LOWER = ("bits_per_byte", "byte_perplexity", "word_perplexity", "perplexity")
"""What a benchmark without a higher-is-better metric shows (the first present; else its first metric)."""
PROBE_PREFIX = "archbench_"
"""lm-eval tasks exported from archbench probes (``archbench_needle``, ...): probe scores too."""

ROW_KEY = ["model_key", "benchmark", "metric", "filter", "num_fewshot", "limit"]
"""One score of one model: the latest row per key counts."""
CELL_KEY = ["benchmark", "num_fewshot", "limit"]
VALUE_FMT = "{:.4f}"

BENCHMARK_BOARD_COLUMNS = (
    Column("rank", "rank", help="equal scores share a rank"),
    Column("model", "model", help="the model's label (architecture and size, or its directory name)"),
    Column("id", "id", help="first 12 hex digits of the weights' sha256, or the hub id"),
    Column("kind", "kind", help="archbench checkpoint or Hugging Face model"),
    Column("score", "score", VALUE_FMT, "mean headline score over the reference benchmarks", best=True,
           se="score_se"),
    Column("benchmarks", "benchmarks", help="benchmarks averaged into the score"),
)
"""The benchmark board's summary columns, in order; one ``value ± stderr`` column per cell follows
(:func:`benchmark_board_columns`).  ``archbench leaderboard --benchmarks`` and the dashboard show these."""

SUMMARY = [f for c in BENCHMARK_BOARD_COLUMNS for f in c.fields]
INCOMPLETE_COLUMNS = ["model", "id", "kind", "benchmarks", "missing"]


@dataclass
class BenchmarkBoard:
    table: pd.DataFrame  # one row per model holding every reference cell, best first
    incomplete: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INCOMPLETE_COLUMNS))
    notes: list[str] = field(default_factory=list)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per cell: what its column shows

    @property
    def empty(self) -> bool:
        """No model at all (no lm-eval scores stored)."""
        return self.table.empty and self.incomplete.empty

    def records(self) -> list[dict]:
        return self.table.to_dict(orient="records")


def model_keys(frame: pd.DataFrame) -> pd.Series:
    """Each row's model identity: its weights hash, else what was asked for (a hub id)."""
    return frame["model_sha256"].where(frame["model_sha256"].notna(), frame["model"])


def short_id(key: str) -> str:
    """A model identity as shown: a sha256 cut to 12 hex digits, anything else whole."""
    if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
        return key[:12]
    return key


def cell_label(benchmark: str, num_fewshot, limit) -> str:  # noqa: ANN001
    """``hellaswag (0-shot)``, ``arc_easy (5-shot, limit 100)``; the benchmark alone when neither is known."""
    parts = []
    if num_fewshot is not None and num_fewshot == num_fewshot:
        parts.append(f"{int(num_fewshot)}-shot")
    if limit is not None and limit == limit:
        parts.append(f"limit {limit:g}")
    return f"{benchmark} ({', '.join(parts)})" if parts else benchmark


def is_probe(benchmark: str) -> bool:
    return benchmark.startswith(PROBE_PREFIX)


def latest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The latest row per :data:`ROW_KEY`, with ``model_key`` added; rows of a group's subtasks
    are left out (the group's own row stands for them, so a group counts once)."""
    if "group" in frame.columns:
        frame = frame[frame["group"].isna()]
    df = frame.assign(model_key=model_keys(frame))
    return df.sort_values(["created_at", "id"], kind="stable").drop_duplicates(ROW_KEY, keep="last")


def headlines(latest: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: the metric and filter its column shows, and whether it is averaged."""
    rows = []
    for bench, g in latest.groupby("benchmark", sort=True):
        first_id = g.groupby("metric")["id"].min().sort_values()
        order = list(first_id.index)  # metrics in the order lm-eval reported them
        hib = g.groupby("metric")["higher_is_better"].agg(lambda s: [v for v in s if v is not None and v == v])
        higher = [m for m in order if any(bool(v) for v in hib[m])]
        lower_only = [m for m in order if hib[m] and not any(bool(v) for v in hib[m])]
        named = [m for m in HEADLINE_METRICS if m in order and m not in lower_only]
        if named or higher:
            metric, averaged = (named or higher)[0], True
        else:
            metric = next((m for m in SHOWN_LOWER if m in order), order[0])
            averaged = False
        filters = g[g["metric"] == metric].groupby("filter")["id"].min().sort_values()
        filt = "none" if "none" in filters.index else str(filters.index[0])
        rows.append(dict(benchmark=bench, metric=metric, filter=filt, averaged=averaged))
    return pd.DataFrame(rows, columns=["benchmark", "metric", "filter", "averaged"])


def reference_cells(held: dict[str, frozenset]) -> frozenset:
    """The reference cell set: of the models' own cell sets, the one covering the most (model, cell)
    pairs among the models holding all of it (the probe leaderboard's rule,
    :func:`harness.ranking.reference_settings`); ties go to the larger set, then by name."""
    pairs = pd.DataFrame([(m, c) for m, h in held.items() for c in h], columns=["entry_id", "task_id"])
    return frozenset(reference_settings(pairs)) if not pairs.empty else frozenset()


def _plus_se(values: list[float], ses: list[float]) -> tuple[float, float]:
    k = len(values)
    mean = float(np.mean(values))
    if any(s is None or s != s for s in ses):
        return mean, float("nan")
    return mean, math.sqrt(sum(s * s for s in ses)) / k


def rank_benchmarks(frame: pd.DataFrame) -> BenchmarkBoard:
    """The benchmark board of a :func:`harness.queries.benchmark_scores` frame (the module docstring's rules)."""
    if frame.empty:
        return BenchmarkBoard(pd.DataFrame(columns=SUMMARY))
    latest = latest_rows(frame)
    heads = headlines(latest)
    shown = latest.merge(heads, on=["benchmark", "metric", "filter"])
    shown = shown[shown["value"].notna()].copy()
    shown["cell"] = [cell_label(b, n, lim) for b, n, lim in zip(shown["benchmark"], shown["num_fewshot"],
                                                                shown["limit"])]

    # the models, labelled by their latest row; a label two models share gets their ids
    models = latest.sort_values(["created_at", "id"], kind="stable").groupby("model_key").tail(1)
    models = models.set_index("model_key")[["label", "model_kind", "run_id"]]
    models["id"] = [short_id(k) for k in models.index]
    clash = models["label"].duplicated(keep=False)
    models.loc[clash, "label"] = models.loc[clash, "label"] + " (" + models.loc[clash, "id"] + ")"

    cells = (shown.groupby("cell").agg(benchmark=("benchmark", "first"), num_fewshot=("num_fewshot", "first"),
                                       limit=("limit", "first"), metric=("metric", "first"),
                                       filter=("filter", "first"), averaged=("averaged", "first"),
                                       models=("model_key", "nunique"))
             .reset_index())
    averaged = shown[shown["averaged"].astype(bool)]
    held = {k: frozenset(averaged.loc[averaged["model_key"] == k, "cell"]) for k in models.index}
    reference = reference_cells(held)
    cells["reference"] = cells["cell"].isin(reference)
    cells = cells.sort_values(["reference", "averaged", "cell"], ascending=[False, False, True], ignore_index=True)

    value = shown.set_index(["model_key", "cell"])["value"]
    stderr = shown.set_index(["model_key", "cell"])["stderr"]
    complete = [k for k in models.index if reference and reference <= held[k]] if reference else list(models.index)
    rows = []
    for k in complete:
        row = dict(model=models.at[k, "label"], id=models.at[k, "id"], kind=models.at[k, "model_kind"])
        if reference:
            row["score"], row["score_se"] = _plus_se([value[(k, c)] for c in sorted(reference)],
                                                     [stderr[(k, c)] for c in sorted(reference)])
        else:
            row["score"] = row["score_se"] = float("nan")
        row["benchmarks"] = len(reference)
        for c in cells["cell"]:
            row[c] = value.get((k, c), float("nan"))
            row[f"{c} stderr"] = stderr.get((k, c), float("nan"))
        row["model_key"], row["run_id"] = k, models.at[k, "run_id"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if reference:
        score = table["score"].round(12)  # equal up to rounding: a tie, whatever order the sums ran in
        table = table.assign(_s=score).sort_values(["_s", "model"], ascending=[False, True], ignore_index=True)
        table.insert(0, "rank", table["_s"].rank(method="min", ascending=False).astype(int))
        table = table.drop(columns="_s")
    else:
        table = table.sort_values("model", ignore_index=True)
        table.insert(0, "rank", pd.Series([None] * len(table), dtype=object))

    incomplete = pd.DataFrame([
        dict(model=models.at[k, "label"], id=models.at[k, "id"], kind=models.at[k, "model_kind"],
             benchmarks=len(held[k] & reference), missing=", ".join(sorted(reference - held[k])))
        for k in models.index if k not in set(complete)], columns=INCOMPLETE_COLUMNS)
    return BenchmarkBoard(table, incomplete, _notes(cells, shown, table, reference), cells)


def _notes(cells: pd.DataFrame, shown: pd.DataFrame, table: pd.DataFrame, reference: frozenset) -> list[str]:
    notes = []
    if reference:
        notes.append("score: mean headline score over " + ", ".join(sorted(reference))
                     + "; its stderr sqrt(sum se^2)/k assumes independent benchmarks")
    else:
        notes.append("no benchmark with a higher-is-better metric: nothing to average, models shown unranked")
    heads = [f"{c.cell} {c.metric}" + ("" if c.filter == "none" else f" [{c.filter}]")
             + ("" if c.averaged else " (lower is better: shown, not averaged)") for c in cells.itertuples()]
    notes.append("headline metrics: " + "; ".join(heads))
    if not table.empty and table["score_se"].isna().any() and table["score"].notna().any():
        notes.append("lm-eval gave no stderr for some benchmark: that model's score stderr is unknown (-)")
    if cells["limit"].notna().any():
        notes.append("'limit N': scored on the first N documents (a fraction below 1), not the whole benchmark")
    for cell, g in shown.groupby("cell"):
        versions = sorted({str(v) for v in g["task_version"] if v is not None and v == v})
        if len(versions) > 1:
            notes.append(f"{cell}: scored with different task versions ({', '.join(versions)})")
    return notes


def benchmark_board_columns(board: BenchmarkBoard) -> list[Column]:
    """The columns the board is shown with: :data:`BENCHMARK_BOARD_COLUMNS`, then one per cell."""
    cols = list(BENCHMARK_BOARD_COLUMNS)
    for c in board.cells.itertuples():
        how = ("higher is better" if c.averaged else "lower is better, not averaged") + (
            "" if c.reference or not c.averaged else ", not in the reference set")
        cols.append(Column(c.cell, c.cell, VALUE_FMT, f"{c.metric} ({c.filter}), {how}; value ± stderr",
                           best=bool(c.averaged), se=f"{c.cell} stderr"))
    return cols


def plus_minus(value, se, fmt: str = VALUE_FMT) -> str:  # noqa: ANN001
    """``0.5123 ± 0.0100``; an unknown stderr is ``-``; an unknown value ``-`` alone."""
    if value is None or value != value:
        return "-"
    return f"{fmt.format(value)} ± " + ("-" if se is None or se != se else fmt.format(se))


def shown_table(board: BenchmarkBoard) -> pd.DataFrame:
    """The ranked table as people read it (CLI table/markdown, dashboard): each column under its
    header, each value with its stderr as one ``value ± stderr`` text."""
    shown: dict[str, list] = {}
    t = board.table
    for c in benchmark_board_columns(board):
        if c.se:
            shown[c.header] = [plus_minus(v, s, c.fmt) for v, s in zip(t[c.name], t[c.se])]
        else:
            shown[c.header] = [None if v is None or v != v else v for v in t[c.name]]
    return pd.DataFrame(shown, columns=list(shown))
