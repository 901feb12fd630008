"""Ranking architectures: like compared with like, every failure counted.

The input is one row per finished run (:meth:`Store.score_frame`: ``done``, ``failed`` and
``diverged`` runs) with its entry and setting ids (:mod:`harness.identity`):

- an **entry** is one leaderboard row: the resolved config without seed, lr and task;
- a **setting** is an entry on one task config; its runs are seeds and learning rates.

Per setting:

1. every run is normalised against its task's no-skill floor (the strongest of uniform
   chance and the trivial strategies the task declares, scored on the run's test split):
   ``(score - floor) / (1 - floor)``.  A failed or diverged run, or a done run without a
   score, counts as no-skill, 0, unless failures are excluded;
2. the learning rate with the best mean normalised *validation* score over its seeds is
   chosen (ties go to the smaller lr); choosing on test, as Zoology and MAD-lab do, would
   inflate the scores;
3. that lr's normalised *test* scores are averaged over seeds, then clipped at 0 (clipping
   each seed first would lift near-floor cells).

Entries are ranked only against entries that ran the same task settings: the reference
set is the task-setting set (one entry's set) that covers the most (entry, setting) cells;
entries holding all of it are ranked on it, the rest are listed as incomplete with what
they miss.  An entry's score is the mean of its setting scores.  Its 95% interval is a
percentile bootstrap over seeds within settings when every setting has at least
:data:`MIN_BOOTSTRAP_SEEDS` seeds; otherwise a Student-t interval on the per-seed scores
(Welch-Satterthwaite degrees of freedom), which is never narrower than the standard error;
with one seed there is no interval.  The win rate is the share of same-setting
comparisons won (ties half) between ranked entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.identity import entry_fields
from harness.store.schema import FINISHED

MIN_BOOTSTRAP_SEEDS = 5
"""Below this many seeds in some setting, a bootstrap interval is too narrow; use t."""

@dataclass(frozen=True)
class Column:
    """One leaderboard column as people see it, in the terminal and on the dashboard.

    ``fields`` are the table's columns it shows: one, or the two ends of an interval (the
    terminal prints them as one ``low-high`` column, the dashboard as two).  ``fmt`` is a
    :meth:`str.format` pattern for one value (``None``: shown as stored); ``best`` marks columns where higher is better
    (the dashboard highlights each one's best); ``se`` names the field holding the value's standard error (shown
    together as ``value ± se``, :mod:`harness.benchmark_board`)."""

    name: str
    header: str
    fmt: str | None = None  # None: as stored
    help: str = ""
    best: bool = False
    ends: tuple[str, str] | None = None
    se: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return self.ends or ((self.name, self.se) if self.se else (self.name,))

    @property
    def headers(self) -> dict[str, str]:
        """Each field's header where the fields are shown apart (an interval's ``low``/``high``)."""
        if self.se is not None:
            return {self.name: self.header, self.se: f"{self.header} stderr"}
        if self.ends is None:
            return {self.name: self.header}
        return {self.ends[0]: f"{self.header} low", self.ends[1]: f"{self.header} high"}


BOARD_COLUMNS = (
    Column("rank", "rank"),
    Column("arch", "arch"),
    Column("size", "size"),
    Column("score", "score", "{:.3f}", "mean normalised test score over task settings", best=True),
    Column("ci", "95% CI", "{:.3f}", "95% interval of the score (none with one seed)", best=True,
           ends=("ci_low", "ci_high")),
    Column("win_rate", "win", "{:.3f}", "share of same-setting comparisons won, ties half", best=True),
    Column("n_params", "params", "{:.0f}", "parameters, embeddings included"),
    Column("seeds", "seeds", help="fewest seeds in any setting"),
    Column("runs", "runs", help="runs counted, failed ones included"),
    Column("failed", "failed", help="failed or diverged runs (each scored 0)"),
    Column("settings", "settings", help="task settings scored"),
)
"""The leaderboard's summary columns as shown, in order; one column per probe follows
(:func:`board_columns`).  ``archbench leaderboard`` and the dashboard both show these."""

SUMMARY = [f for c in BOARD_COLUMNS for f in c.fields]
"""The leaderboard table's summary columns, in order (``ci_low``, ``ci_high`` apart); per-task columns follow."""


def board_columns(table: pd.DataFrame) -> list[Column]:
    """The columns a leaderboard table is shown with: :data:`BOARD_COLUMNS`, then its probes."""
    return [*BOARD_COLUMNS, *(Column(p, p, "{:.3f}", f"mean normalised test score over {p} settings", best=True)
                              for p in task_columns(table))]

SHORT_NAMES = {"optimizer.weight_decay": "wd", "optimizer.warmup_steps": "warmup", "train.steps": "steps",
               "train.batch_size": "bs", "train.epochs": "epochs", "optimizer.schedule": "schedule",
               "arch.mlp_ratio": "mlp_ratio", "arch.tie_embeddings": "tied", "arch.init_std": "init_std"}
"""How a config field that tells two entries apart is written in their labels."""

_LABEL_SKIP = ("arch.name", "arch.mlp", "arch.norm", "arch.d_model", "arch.n_layers", "arch.n_heads")
"""Config fields already in the arch label or the size column: whole keys (``arch.mlp_ratio`` is not
``arch.mlp``), plus every ``arch.options.*`` (the mixer's options)."""


@dataclass
class Leaderboard:
    table: pd.DataFrame  # one row per ranked entry
    settings: pd.DataFrame  # one row per (entry, task setting): chosen lr and scores
    incomplete: pd.DataFrame = field(default_factory=pd.DataFrame)  # entries missing reference settings
    notes: list[str] = field(default_factory=list)  # what the reader must know (e.g. failures excluded)

    def records(self) -> list[dict]:
        return self.table.to_dict(orient="records")

    def spreads(self) -> dict[str, float]:
        """Per task column: max - min over ranked entries (a column near 0 separates nothing)."""
        cols = task_columns(self.table)
        return {c: float(self.table[c].max() - self.table[c].min()) for c in cols if self.table[c].notna().any()}


def task_columns(table: pd.DataFrame) -> list[str]:
    """The per-task score columns of a leaderboard table."""
    return [c for c in table.columns if c not in SUMMARY and c != "entry_id"]


def normalise(score, floor):
    """``(score - floor) / (1 - floor)``, unclipped: 0 is no skill, 1 is perfect."""
    floor = np.asarray(floor, dtype=float)
    return (np.asarray(score, dtype=float) - floor) / (1.0 - floor)


def choose_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the lr with the best mean normalised val score (ties: the smaller lr)."""
    means = runs.groupby(["setting_id", "lr"])["val_norm"].mean().reset_index()
    means = means.sort_values(["setting_id", "val_norm", "lr"], ascending=[True, False, True])
    return means.groupby("setting_id").head(1).rename(columns={"val_norm": "val_mean"})


def prepare(df: pd.DataFrame, *, exclude_failed: bool = False) -> pd.DataFrame:
    """Finished runs with ``failed`` (bool), ``val_norm`` and ``test_norm`` columns."""
    df = df[df["status"].isin(FINISHED)].copy()
    df["failed"] = (df["status"] != "done") | df["val_score"].isna() | df["test_score"].isna()
    if exclude_failed:
        df = df[~df["failed"]].copy()
    floor = df["floor"].astype(float).fillna(df["chance"].astype(float)).fillna(0.0)
    df["val_norm"] = np.where(df["failed"], 0.0, normalise(df["val_score"].astype(float), floor))
    df["test_norm"] = np.where(df["failed"], 0.0, normalise(df["test_score"].astype(float), floor))
    return df


def entry_labels(entries: pd.DataFrame) -> pd.Series:
    """``arch_label``, plus the config fields that tell apart entries of one (arch, size).

    ``entries``: one row per entry with ``entry_id``, ``arch_label``, ``size`` and
    ``entry_config`` (the entry's flattened config, :func:`harness.identity.entry_fields`, or NaN).
    """
    labels = {}
    for _, g in entries.groupby(["arch_label", "size"], dropna=False):
        configs = [c if isinstance(c, dict) else {} for c in g["entry_config"]]
        keys = sorted(set().union(*configs)) if configs else []
        differ = [k for k in keys if k not in _LABEL_SKIP and not k.startswith("arch.options.")
                  and len({repr(c.get(k)) for c in configs}) > 1]
        for eid, label, c in zip(g["entry_id"], g["arch_label"], configs):
            extra = " ".join(f"{SHORT_NAMES.get(k, k.rsplit('.', 1)[-1])}={_short(c.get(k))}" for k in differ)
            labels[eid] = f"{label} {extra}" if extra else label
    return pd.Series(labels, dtype=object)


def _short(v) -> str:  # noqa: ANN001
    return f"{v:g}" if isinstance(v, float) else str(v)


def reference_settings(cells: pd.DataFrame) -> set:
    """The task-setting set (one entry's) covering the most (entry, setting) cells."""
    have = cells.groupby("entry_id")["task_id"].agg(lambda s: frozenset(s))
    best, best_key = frozenset(), (-1, -1, ())
    for cand in set(have):
        covered = int(sum(cand <= h for h in have))
        key = (covered * len(cand), len(cand), tuple(sorted(map(str, cand))))
        if key > best_key:
            best, best_key = cand, key
    return set(best)


def _interval(per_setting: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    if min(len(v) for v in per_setting) >= MIN_BOOTSTRAP_SEEDS:
        boots = np.zeros(n_boot)
        for v in per_setting:
            idx = rng.integers(0, len(v), size=(n_boot, len(v)))
            boots += np.clip(v[idx].mean(axis=1), 0.0, None)
        lo, hi = np.percentile(boots / len(per_setting), [2.5, 97.5])
        return float(lo), float(hi)
    return t_interval(per_setting)


def t_interval(per_setting: list[np.ndarray], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval around the entry's score (the mean over settings of the clipped
    per-setting seed means).

    The standard error comes from the per-setting sample variances of the unclipped
    per-seed scores (clipping only shrinks the spread, so this is never too narrow) and
    the degrees of freedom from Welch-Satterthwaite.  NaN when some setting has one seed
    (no variance to estimate).  Bounds are clipped to [0, 1] like the score.
    """
    from scipy import stats

    if min(len(v) for v in per_setting) < 2:
        return float("nan"), float("nan")
    k = len(per_setting)
    score = float(np.mean([max(0.0, v.mean()) for v in per_setting]))
    parts = np.array([v.var(ddof=1) / len(v) for v in per_setting]) / k**2
    se = math.sqrt(parts.sum())
    if se == 0.0:
        return score, score
    df = parts.sum() ** 2 / sum(p**2 / (len(v) - 1) for p, v in zip(parts, per_setting) if p > 0)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return float(np.clip(score - half, 0.0, 1.0)), float(np.clip(score + half, 0.0, 1.0))


def rank(df: pd.DataFrame, *, exclude_failed: bool = False, n_boot: int = 1000, seed: int = 0) -> Leaderboard:
    """Rank the entries of a :meth:`Store.score_frame`-shaped frame (see the module docstring)."""
    notes = ["failed and diverged runs excluded (--exclude-failed)"] if exclude_failed else []
    if df.empty:
        return Leaderboard(pd.DataFrame(columns=SUMMARY), pd.DataFrame(), pd.DataFrame(), notes)
    runs = prepare(df, exclude_failed=exclude_failed)
    if runs.empty:
        return Leaderboard(pd.DataFrame(columns=SUMMARY), pd.DataFrame(), pd.DataFrame(), notes)

    first = runs.drop_duplicates("entry_id").set_index("entry_id")
    entries = first[["arch_label", "size"]].reset_index()
    entries["entry_config"] = ([entry_fields(c) if isinstance(c, dict) else None for c in first["config"]]
                               if "config" in first else None)
    label = entry_labels(entries)
    size = first["size"]

    chosen = choose_lr(runs)
    picked = runs.merge(chosen, on=["setting_id", "lr"])
    settings = (picked.groupby(["entry_id", "setting_id"])
                .agg(task=("task", "first"), task_setting=("task_setting", "first"), task_id=("task_id", "first"),
                     lr=("lr", "first"), val_norm=("val_mean", "first"), test_mean=("test_score", "mean"),
                     floor=("floor", "first"), chance=("chance", "first"), norm_mean=("test_norm", "mean"),
                     seeds=("seed", "nunique"), failed=("failed", "sum"))
                .reset_index())
    settings["score"] = settings["norm_mean"].clip(lower=0.0)
    settings.insert(0, "arch", settings["entry_id"].map(label))
    settings.insert(1, "size", settings["entry_id"].map(size))

    reference = reference_settings(settings)
    have = settings.groupby("entry_id")["task_id"].agg(set)
    complete = [e for e, h in have.items() if reference <= h]
    setting_label = dict(zip(settings["task_id"], settings["task_setting"]))
    incomplete = pd.DataFrame([
        dict(arch=label[e], size=size[e], settings=len(h & reference), missing=", ".join(
            sorted(setting_label[k] for k in reference - h)))
        for e, h in have.items() if not reference <= h], columns=["arch", "size", "settings", "missing"])

    ranked = settings[settings["entry_id"].isin(complete) & settings["task_id"].isin(reference)]
    rng = np.random.default_rng(seed)
    rows = []
    for eid, g in ranked.groupby("entry_id"):
        mine = picked[picked["setting_id"].isin(set(g["setting_id"]))]
        per_setting = [s["test_norm"].to_numpy(dtype=float) for _, s in mine.groupby("setting_id")]
        lo, hi = _interval(per_setting, n_boot, rng)
        all_runs = runs[runs["entry_id"] == eid]
        params = all_runs["n_params"].dropna()
        rows.append(dict(entry_id=eid, arch=label[eid], size=size[eid], score=float(g["score"].mean()),
                         ci_low=lo, ci_high=hi, n_params=int(params.median()) if len(params) else None,
                         seeds=int(g["seeds"].min()), runs=len(all_runs), failed=int(all_runs["failed"].sum()),
                         settings=len(g)))
    table = pd.DataFrame(rows)
    table["win_rate"] = table["entry_id"].map(win_rates(ranked))
    per_task = ranked.groupby(["entry_id", "task"])["score"].mean().unstack("task")
    table = table.merge(per_task, left_on="entry_id", right_index=True, how="left")
    table = table.sort_values(["score", "win_rate", "arch"], ascending=[False, False, True]).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    ordered = SUMMARY + [c for c in table.columns if c not in SUMMARY and c != "entry_id"] + ["entry_id"]
    return Leaderboard(table[ordered], settings, incomplete, notes)


def win_rates(settings: pd.DataFrame) -> pd.Series:
    """Per entry: share of same-setting comparisons won against the other entries, ties half."""
    wins: dict[str, float] = {}
    games: dict[str, int] = {}
    for _, g in settings.groupby("task_id"):
        ids, vals = list(g["entry_id"]), g["score"].to_numpy()
        for i, a in enumerate(ids):
            for j in range(len(ids)):
                if i != j:
                    games[a] = games.get(a, 0) + 1
                    wins[a] = wins.get(a, 0.0) + (1.0 if vals[i] > vals[j] else 0.5 if vals[i] == vals[j] else 0.0)
    return pd.Series({a: wins[a] / games[a] for a in games}, dtype=float)
