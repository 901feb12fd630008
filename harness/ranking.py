"""Ranking architectures: best learning rate on val, its test score, chance-normalised.

For every (architecture, size, task setting):

1. the learning rate with the best mean *validation* score over seeds is chosen (ties go
   to the smaller learning rate); choosing on the test split, as Zoology and MAD-lab do,
   would inflate the scores;
2. that learning rate's *test* scores (one per seed) are normalised against the task's
   chance level: ``max(0, (score - chance) / (1 - chance))``.

An architecture's headline score is the mean over its task settings of the mean over
seeds.  The 95% interval is a percentile bootstrap that resamples seeds within every task
setting.  The win rate is the share of pairwise comparisons (same task setting, against
every other architecture that has it) whose normalised mean is higher, ties counting half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY = ["arch_label", "size"]


@dataclass
class Leaderboard:
    table: pd.DataFrame  # one row per architecture, ranked
    settings: pd.DataFrame  # one row per (architecture, task setting): chosen lr and scores

    def records(self) -> list[dict]:
        return self.table.to_dict(orient="records")


def normalise(score, chance):
    return np.clip((np.asarray(score, dtype=float) - chance) / (1.0 - np.asarray(chance, dtype=float)), 0.0, None)


def choose_lr(df: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, size, setting): the lr with the best mean val score over seeds."""
    means = (df.groupby(KEY + ["task", "task_setting", "lr"], dropna=False)["val_score"].mean()
             .reset_index().sort_values(KEY + ["task_setting", "val_score", "lr"],
                                        ascending=[True, True, True, False, True]))
    return means.groupby(KEY + ["task_setting"], dropna=False).head(1)[KEY + ["task", "task_setting", "lr", "val_score"]]


def rank(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> Leaderboard:
    """Rank the architectures in a :meth:`Store.score_frame`-shaped frame of ``done`` runs."""
    cols = ["rank", "arch", "size", "score", "ci_low", "ci_high", "win_rate", "n_params", "runs", "settings"]
    if df.empty:
        return Leaderboard(pd.DataFrame(columns=cols), pd.DataFrame())
    df = df.dropna(subset=["val_score", "test_score"])
    chosen = choose_lr(df).rename(columns={"val_score": "val_mean"})
    picked = df.merge(chosen[KEY + ["task_setting", "lr", "val_mean"]], on=KEY + ["task_setting", "lr"])
    picked = picked.assign(norm=normalise(picked["test_score"], picked["chance"]))
    settings = (picked.groupby(KEY + ["task", "task_setting"], dropna=False)
                .agg(lr=("lr", "first"), val_mean=("val_mean", "first"), test_mean=("test_score", "mean"),
                     norm_mean=("norm", "mean"), seeds=("seed", "nunique"), chance=("chance", "first"))
                .reset_index())

    rng = np.random.default_rng(seed)
    rows = []
    for (arch, size), g in picked.groupby(KEY, dropna=False):
        per_setting = [s["norm"].to_numpy() for _, s in g.groupby("task_setting")]
        score = float(np.mean([v.mean() for v in per_setting]))
        boots = np.zeros(n_boot)
        for v in per_setting:
            idx = rng.integers(0, len(v), size=(n_boot, len(v)))
            boots += v[idx].mean(axis=1)
        boots /= len(per_setting)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        all_runs = df[(df["arch_label"] == arch) & (df["size"] == size)]
        rows.append(dict(arch=arch, size=size, score=score, ci_low=float(lo), ci_high=float(hi),
                         n_params=int(all_runs["n_params"].median()) if all_runs["n_params"].notna().any() else None,
                         runs=len(all_runs), settings=len(per_setting)))
    table = pd.DataFrame(rows)
    table["win_rate"] = win_rates(settings).reindex(list(zip(table["arch"], table["size"]))).to_numpy()

    # one column per task: mean normalised score over that task's settings
    per_task = settings.groupby(KEY + ["task"])["norm_mean"].mean().unstack("task")
    table = table.merge(per_task, left_on=["arch", "size"], right_index=True, how="left")
    table = table.sort_values(["score", "win_rate", "arch"], ascending=[False, False, True]).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    ordered = cols + [c for c in table.columns if c not in cols]
    return Leaderboard(table[ordered], settings)


def win_rates(settings: pd.DataFrame) -> pd.Series:
    """Share of pairwise (same task setting) comparisons won, ties half, per (arch, size)."""
    wins: dict[tuple, float] = {}
    games: dict[tuple, int] = {}
    for _, g in settings.groupby("task_setting"):
        ids = list(zip(g["arch_label"], g["size"]))
        vals = g["norm_mean"].to_numpy()
        for i, a in enumerate(ids):
            for j, _b in enumerate(ids):
                if i == j:
                    continue
                games[a] = games.get(a, 0) + 1
                wins[a] = wins.get(a, 0.0) + (1.0 if vals[i] > vals[j] else 0.5 if vals[i] == vals[j] else 0.0)
    return pd.Series({a: (wins[a] / games[a] if games.get(a) else float("nan")) for a in set(games) | set(
        zip(settings["arch_label"], settings["size"]))}, dtype=float)
