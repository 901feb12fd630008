"""The ranking on small hand-built frames: each defect of a naive leaderboard, fixed."""

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.identity import identity_columns
from harness.ranking import (MIN_BOOTSTRAP_SEEDS, SUMMARY, choose_lr, entry_labels, normalise, prepare, rank,
                             t_interval, win_rates)


def config(arch="A", task="t1", lr=0.1, seed=0, wd=0.1, d_model=32, steps=100):
    return {"arch": {"name": arch, "d_model": d_model, "n_layers": 2, "n_heads": 2, "options": {}},
            "task": {"name": task, "preset": None, "params": {"n": 1}},
            "optimizer": {"lr": lr, "weight_decay": wd}, "train": {"steps": steps}, "seed": seed}


def row(arch="A", task="t1", lr=0.1, seed=0, val=1.0, test=1.0, floor=0.0, status="done", **cfg):
    c = config(arch, task, lr, seed, **cfg)
    return dict(id=f"{arch}-{task}-{lr}-{seed}-{sorted(cfg.items())}", arch=arch, arch_label=arch,
                size=f"d{c['arch']['d_model']}-L2-H2", task=task, task_setting=task, lr=lr, seed=seed, sweep="x",
                status=status, metric="accuracy", val_score=val if status == "done" else None,
                test_score=test if status == "done" else None, chance=floor, floor=floor, n_params=100, config=c,
                **identity_columns(c))


def frame(rows):
    return pd.DataFrame(rows)


def with_fields(r, fields):
    """``r`` with dotted config fields set (``{"train.grad_clip": 0.5}``) and its ids recomputed."""
    c = copy.deepcopy(r["config"])
    for dotted, v in fields.items():
        node, *path = c, *dotted.split(".")
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = v
    return {**r, "config": c, "id": f"{r['id']}-{sorted(fields.items())}", **identity_columns(c)}


def test_lr_is_chosen_on_val_and_scored_on_test():
    rows = [row(lr=0.1, seed=s, val=0.8, test=0.7) for s in (0, 1)]
    rows += [row(lr=0.01, seed=s, val=0.6, test=0.9) for s in (0, 1)]
    chosen = choose_lr(prepare(frame(rows)))
    assert chosen["lr"].tolist() == [0.1]  # best val, although lr 0.01 has the better test score
    assert rank(frame(rows)).table["score"].item() == pytest.approx(0.7)


def test_lr_ties_go_to_the_smaller_lr():
    # lr 0.1 and 0.01 tie exactly on mean val (0.5), reached differently; the larger lr is
    # listed first and has the better test scores, so neither row order nor test decides
    rows = [row(lr=0.1, seed=0, val=0.25, test=0.9), row(lr=0.1, seed=1, val=0.75, test=0.9),
            row(lr=0.01, seed=0, val=0.5, test=0.3), row(lr=0.01, seed=1, val=0.5, test=0.4)]
    chosen = choose_lr(prepare(frame(rows)))
    assert chosen["lr"].tolist() == [0.01] and chosen["val_mean"].tolist() == [0.5]
    lb = rank(frame(rows))
    s = lb.settings.iloc[0]
    assert (s.lr, s.test_mean, s.seeds) == (0.01, pytest.approx(0.35), 2)  # the chosen lr's test scores
    assert lb.table["score"].item() == pytest.approx(0.35)
    # the same tie with the smaller lr listed first, and three lrs tied: still the smallest
    assert choose_lr(prepare(frame(rows[::-1])))["lr"].tolist() == [0.01]
    tied3 = rows + [row(lr=0.001, seed=s, val=0.5, test=0.1) for s in (0, 1)]
    assert rank(frame(tied3)).settings["lr"].item() == 0.001


def test_lr_is_chosen_on_the_mean_val_score_not_the_max_or_test():
    """lr 0.3 has the best single val run (max), lr 0.1 the best test scores, lr 0.01 the
    best mean val: only the mean of val chooses 0.01, and its test scores are reported."""
    rows = [row(lr=0.3, seed=0, val=0.95, test=0.5), row(lr=0.3, seed=1, val=0.15, test=0.5),   # mean val 0.55
            row(lr=0.1, seed=0, val=0.5, test=1.0), row(lr=0.1, seed=1, val=0.5, test=1.0),     # mean val 0.5
            row(lr=0.01, seed=0, val=0.6, test=0.7), row(lr=0.01, seed=1, val=0.7, test=0.8)]   # mean val 0.65
    chosen = choose_lr(prepare(frame(rows)))
    assert chosen["lr"].tolist() == [0.01] and chosen["val_mean"].item() == pytest.approx(0.65)
    lb = rank(frame(rows))
    assert lb.settings["lr"].item() == 0.01
    assert lb.settings["test_mean"].item() == pytest.approx(0.75)
    assert lb.table["score"].item() == pytest.approx(0.75)
    # per setting: a second setting (another task) chooses its own lr
    rows2 = rows + [row(task="t2", lr=0.3, seed=s, val=0.9, test=0.2) for s in (0, 1)]
    rows2 += [row(task="t2", lr=0.01, seed=s, val=0.1, test=0.9) for s in (0, 1)]
    picked = rank(frame(rows2)).settings.set_index("task")
    assert picked.loc["t1", "lr"] == 0.01 and picked.loc["t2", "lr"] == 0.3
    assert picked.loc["t2", "test_mean"] == pytest.approx(0.2)


def test_runs_that_differ_only_in_weight_decay_are_two_entries_labelled_by_it():
    rows = [row(wd=0.0, seed=0, val=0.3, test=0.29), row(wd=1.0, seed=0, val=1.0, test=0.9997)]
    t = rank(frame(rows)).table.set_index("arch")
    assert sorted(t.index) == ["A wd=0", "A wd=1"]
    assert t.loc["A wd=1", "score"] == pytest.approx(0.9997)
    assert t.loc["A wd=0", "score"] == pytest.approx(0.29)
    assert (t["runs"] == 1).all()


def test_entries_of_different_sizes_need_no_extra_label():
    rows = [row(d_model=32), row(d_model=64)]
    t = rank(frame(rows)).table
    assert sorted(t["arch"]) == ["A", "A"] and sorted(t["size"]) == ["d32-L2-H2", "d64-L2-H2"]


def test_a_diverged_seed_scores_zero_and_is_counted():
    ok = [row("A", seed=s, val=0.9, test=0.9) for s in (0, 1, 2)]
    hurt = [row("B", seed=s, val=0.9, test=0.9) for s in (0, 1)] + [row("B", seed=2, status="diverged")]
    t = rank(frame(ok + hurt)).table.set_index("arch")
    assert t.loc["B", "score"] == pytest.approx(0.6)  # (0.9 + 0.9 + 0) / 3
    assert t.loc["A", "score"] == pytest.approx(0.9)
    assert t.loc["B", "failed"] == 1 and t.loc["A", "failed"] == 0
    assert list(rank(frame(ok + hurt)).table["arch"]) == ["A", "B"]


def test_a_failed_seed_counts_in_the_lr_choice():
    # lr 0.1: one seed fine (val 0.9), one failed -> mean val 0.45; lr 0.01: 0.6 on both
    rows = [row(lr=0.1, seed=0, val=0.9, test=0.9), row(lr=0.1, seed=1, status="failed"),
            row(lr=0.01, seed=0, val=0.6, test=0.6), row(lr=0.01, seed=1, val=0.6, test=0.6)]
    lb = rank(frame(rows))
    assert lb.settings["lr"].item() == 0.01 and lb.table["failed"].item() == 1
    excluded = rank(frame(rows), exclude_failed=True)
    assert excluded.settings["lr"].item() == 0.1  # judged on the survivor, as asked
    # the failed run is gone, the three that finished are what is counted and scored
    assert (excluded.table["runs"].item(), excluded.table["failed"].item()) == (3, 0)
    assert excluded.table["score"].item() == pytest.approx(0.9)
    assert excluded.notes and "excluded" in excluded.notes[0]


def test_an_entry_with_fewer_settings_is_unranked_and_listed_as_incomplete():
    rows = [row(a, task=t, seed=0) for a in ("A", "B", "C") for t in ("t1", "t2", "t3")]
    rows += [row("D", task="t1", seed=0, wd=0.5)]  # only one of the three settings
    lb = rank(frame(rows))
    assert sorted(lb.table["arch"]) == ["A", "B", "C"]
    inc = lb.incomplete.set_index("arch")
    assert list(inc.index) == ["D"] and inc.loc["D", "missing"] == "t2, t3" and inc.loc["D", "settings"] == 1


def test_win_rate_counts_only_games_on_shared_settings():
    rows = [row("A", task="t1", test=0.9, val=0.9), row("B", task="t1", test=0.5, val=0.5)]
    rows += [row("A", task="t2", test=0.2, val=0.2), row("B", task="t2", test=0.2, val=0.2)]
    rows += [row("C", task="t1", test=1.0, val=1.0, wd=0.3)]  # incomplete: its games do not count
    t = rank(frame(rows)).table.set_index("arch")
    assert t.loc["A", "win_rate"] == pytest.approx(0.75) and t.loc["B", "win_rate"] == pytest.approx(0.25)


def test_two_seed_interval_is_at_least_the_t_interval():
    rows = [row(seed=0, val=0.6, test=0.6), row(seed=1, val=0.8, test=0.8)]
    t = rank(frame(rows)).table.iloc[0]
    sd = np.std([0.6, 0.8], ddof=1)
    half = stats.t.ppf(0.975, 1) * sd / np.sqrt(2)
    assert t.ci_high - t.ci_low >= min(2 * half, 1.0) - 1e-9
    assert t.ci_low == pytest.approx(max(0.0, 0.7 - half)) and t.ci_high == pytest.approx(min(1.0, 0.7 + half))
    assert t.ci_high - t.ci_low > 0.8 - 0.6  # wider than [min, max] of the two seeds


def test_the_interval_brackets_the_score_when_a_setting_is_clipped():
    # t1: seeds -0.3, -0.25 normalised (clipped to 0); t2: 0.2, 0.25 -> score (0 + 0.225) / 2
    rows = [row(task="t1", seed=s, val=v, test=v, floor=0.5) for s, v in ((0, 0.35), (1, 0.375))]
    rows += [row(task="t2", seed=s, val=v, test=v, floor=0.5) for s, v in ((0, 0.6), (1, 0.625))]
    t = rank(frame(rows)).table.iloc[0]
    assert t.score == pytest.approx(0.1125)
    assert t.ci_low <= t.score <= t.ci_high


def test_one_seed_has_no_interval():
    t = rank(frame([row(seed=0, val=0.6, test=0.6)])).table.iloc[0]
    assert np.isnan(t.ci_low) and np.isnan(t.ci_high) and t.seeds == 1


def test_bootstrap_only_with_enough_seeds():
    scores = [0.5, 0.6, 0.7, 0.8, 0.9]
    assert len(scores) == MIN_BOOTSTRAP_SEEDS
    rows = [row(seed=s, val=v, test=v) for s, v in enumerate(scores)]
    t = rank(frame(rows), n_boot=2000).table.iloc[0]
    lo_t, hi_t = t_interval([np.array(scores)])
    assert t.ci_low <= 0.7 <= t.ci_high
    assert (t.ci_low, t.ci_high) != pytest.approx((lo_t, hi_t))  # percentile bootstrap, not t
    four = rank(frame(rows[:4])).table.iloc[0]
    assert (four.ci_low, four.ci_high) == pytest.approx(t_interval([np.array(scores[:4])]))


def test_clipping_comes_after_averaging_seeds():
    # normalised seeds -0.2 and 0.4 (floor 0.5): mean 0.1; clipping each first would give 0.2
    rows = [row(seed=0, val=0.4, test=0.4, floor=0.5), row(seed=1, val=0.7, test=0.7, floor=0.5)]
    assert rank(frame(rows)).table["score"].item() == pytest.approx(0.1)
    below = [row(seed=s, val=0.3, test=0.3, floor=0.5) for s in (0, 1)]
    assert rank(frame(below)).table["score"].item() == 0.0


def test_floor_not_chance_is_the_zero():
    rows = [row(seed=0, val=0.24, test=0.24, floor=0.24)]
    rows[0]["chance"] = 0.01
    assert rank(frame(rows)).table["score"].item() == pytest.approx(0.0)


def test_rows_without_a_floor_fall_back_to_chance():
    r = row(seed=0, val=0.75, test=0.75, floor=0.5)
    r["floor"] = None
    assert rank(frame([r])).table["score"].item() == pytest.approx(0.5)


def test_normalise_is_affine_and_unclipped():
    assert normalise([0.25, 0.5, 1.0], 0.5).tolist() == [-0.5, 0.0, 1.0]


def test_spreads_flag_columns_that_separate_nothing():
    rows = [row(a, task=t, val=v, test=v) for a, v in (("A", 0.9), ("B", 0.2)) for t in ("t1",)]
    rows += [row(a, task="t2", val=0.5, test=0.5) for a in ("A", "B")]
    spreads = rank(frame(rows)).spreads()
    assert spreads["t1"] == pytest.approx(0.7) and spreads["t2"] == pytest.approx(0.0)


def test_empty_frame_gives_empty_table():
    assert rank(pd.DataFrame()).table.empty


# ---- the interval: Student-t (Welch-Satterthwaite) below MIN_BOOTSTRAP_SEEDS seeds ----

def test_t_interval_is_welch_satterthwaite_worked_by_hand():
    """Three settings, 2, 3 and 4 seeds, spreads 100-fold apart: the entry score is the mean
    of the setting means m_i, so its variance is sum(s_i^2 / n_i) / k^2 and its degrees of
    freedom are Welch-Satterthwaite's (sum a_i)^2 / sum(a_i^2 / (n_i - 1)), a_i = s_i^2 / n_i."""
    seeds = {"t1": [0.50, 0.60], "t2": [0.30, 0.45, 0.40], "t3": [0.70, 0.72, 0.69, 0.71]}
    k = len(seeds)
    means, a, dof_terms = [], [], []
    for xs in seeds.values():
        n = len(xs)
        m = sum(xs) / n
        s2 = sum((x - m) ** 2 for x in xs) / (n - 1)  # sample variance
        means.append(m)
        a.append(s2 / n)
        dof_terms.append((s2 / n) ** 2 / (n - 1))
    score = sum(means) / k
    se = (sum(a) / k**2) ** 0.5
    dof = sum(a) ** 2 / sum(dof_terms)
    assert 2 < dof < 3  # between the smallest setting's 1 and the pooled 6: Welch, not pooled
    half = stats.t.ppf(0.975, dof) * se
    lo, hi = score - half, score + half
    assert 0 < lo < score < hi < 1  # no clipping in play: the formula alone decides

    assert t_interval([np.array(v) for v in seeds.values()]) == pytest.approx((lo, hi), rel=1e-9)
    # a 90% interval uses the 95% quantile of the same t
    half90 = stats.t.ppf(0.95, dof) * se
    assert t_interval([np.array(v) for v in seeds.values()], level=0.9) == pytest.approx(
        (score - half90, score + half90), rel=1e-9)
    # and the leaderboard reports it (fewer than MIN_BOOTSTRAP_SEEDS seeds: t, not bootstrap)
    rows = [row(task=t, seed=i, val=x, test=x) for t, xs in seeds.items() for i, x in enumerate(xs)]
    e = rank(frame(rows)).table.iloc[0]
    assert e.score == pytest.approx(score)
    assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), rel=1e-9)


def test_t_interval_of_constant_scores_is_the_score_itself():
    assert t_interval([np.array([0.6, 0.6, 0.6])]) == (pytest.approx(0.6), pytest.approx(0.6))
    # two settings, each constant: no spread anywhere, the interval is the point (0.2 + 0.8) / 2
    lo, hi = t_interval([np.array([0.2, 0.2]), np.array([0.8, 0.8, 0.8])])
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    rows = [row(seed=s, val=0.6, test=0.6) for s in range(3)]
    e = rank(frame(rows)).table.iloc[0]
    assert (e.ci_low, e.ci_high) == (pytest.approx(0.6), pytest.approx(0.6))


def test_t_interval_bounds_are_clipped_to_the_unit_range():
    # out-of-range scores (2.0, 2.01): the unclipped interval 2.005 -/+ 12.7 * 0.005 lies
    # entirely above 1, and both bounds are clipped to 1 as documented
    se = np.std([2.0, 2.01], ddof=1) / np.sqrt(2)
    assert 2.005 - stats.t.ppf(0.975, 1) * se > 1.5
    assert t_interval([np.array([2.0, 2.01])]) == (1.0, 1.0)
    # below the floor everywhere: score 0, the interval starts at 0
    lo, hi = t_interval([np.array([-0.05, -0.03])])
    assert lo == 0.0 and hi == pytest.approx(stats.t.ppf(0.975, 1) * np.std([-0.05, -0.03], ddof=1) / np.sqrt(2))


# ---- the interval: percentile bootstrap with MIN_BOOTSTRAP_SEEDS or more seeds everywhere ----

def _percentile(sorted_xs, q):
    """Linear-interpolation percentile (numpy's default definition), written out."""
    pos = q / 100 * (len(sorted_xs) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_xs) - 1)
    return sorted_xs[i] + (pos - i) * (sorted_xs[j] - sorted_xs[i])


def test_bootstrap_interval_matches_an_independent_percentile_bootstrap():
    """rank() with its defaults (1000 resamples, generator seed 0): per setting (in setting-id
    order) a (1000, n) draw of seed indices, each resample's mean clipped at 0 (like the
    score), averaged over settings; the interval is the 2.5th and 97.5th percentiles."""
    t1 = [0.30, 0.45, 0.55, 0.60, 0.62]        # floor 0.5: normalised -0.4 .. 0.24, mean near 0
    t2 = [0.70, 0.80, 0.90, 0.85, 0.95, 0.75]  # normalised 0.4 .. 0.9
    rows = [row(task="t1", seed=i, val=x, test=x, floor=0.5) for i, x in enumerate(t1)]
    rows += [row(task="t2", seed=i, val=x, test=x, floor=0.5) for i, x in enumerate(t2)]
    norm = {r["setting_id"]: [] for r in rows}
    for r in rows:
        norm[r["setting_id"]].append((r["test_score"] - 0.5) / 0.5)

    rng = np.random.default_rng(0)
    totals = [0.0] * 1000
    for sid in sorted(norm):
        v = norm[sid]
        draws = rng.integers(0, len(v), size=(1000, len(v)))
        for b, idx in enumerate(draws):
            totals[b] += max(0.0, sum(v[i] for i in idx) / len(idx))
    boots = sorted(t / len(norm) for t in totals)
    lo, hi = _percentile(boots, 2.5), _percentile(boots, 97.5)

    e = rank(frame(rows)).table.iloc[0]
    assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    # the reference is sane: a resampled entry mean lies between (max(0, -0.4) + 0.4) / 2 and
    # (0.24 + 0.9) / 2, and the interval is not a point
    assert (0.0 + 0.4) / 2 <= lo < e.score < hi <= (0.24 + 0.9) / 2 and hi - lo > 0.05


def test_bootstrap_percentiles_are_2_5_and_97_5_on_a_two_valued_sample():
    """Seeds scoring 0 or 1: a resample's mean is Binomial(n, p) / n.  With 3 ones in 11
    seeds, P(mean = 0) = (8/11)^11 = 3.0%, above 2.5% (so the low bound is exactly 0) but
    below 3.5%; with 4 ones in 7, P(mean = 1) = (4/7)^7 = 2.0%, below 2.5% (so the high bound
    is 6/7, not 1).  20000 resamples put the empirical tails several standard errors from
    those cut-offs."""
    p0 = (8 / 11) ** 11
    p1 = (4 / 7) ** 7
    assert 0.025 < p0 < 0.035 and 0.015 < p1 < 0.025
    a = [row("A", seed=s, val=x, test=x) for s, x in enumerate([1.0] * 3 + [0.0] * 8)]
    b = [row("B", seed=s, val=x, test=x) for s, x in enumerate([1.0] * 4 + [0.0] * 3)]
    t = rank(frame(a + b), n_boot=20000).table.set_index("arch")
    assert t.loc["A", "ci_low"] == 0.0
    assert t.loc["A", "ci_high"] == pytest.approx(stats.binom.ppf(0.975, 11, 3 / 11) / 11)  # 6/11
    assert t.loc["B", "ci_high"] == pytest.approx(6 / 7)
    assert t.loc["A", "ci_low"] < t.loc["A", "score"] < t.loc["A", "ci_high"]


def test_bootstrap_interval_of_an_entry_below_the_floor_is_zero():
    # five seeds, all below the floor (normalised -0.8 .. -0.2): every resample's mean is
    # negative, clipped to 0 like the score, so the interval is exactly [0, 0]
    rows = [row(seed=s, val=x, test=x, floor=0.5) for s, x in enumerate([0.1, 0.2, 0.3, 0.35, 0.4])]
    e = rank(frame(rows)).table.iloc[0]
    assert e.score == 0.0 and (e.ci_low, e.ci_high) == (0.0, 0.0)


# ---- the frames rank() returns ----

NOTE = "failed and diverged runs excluded (--exclude-failed)"


@pytest.mark.parametrize("exclude_failed", [False, True])
def test_nothing_to_rank_gives_empty_frames_and_the_notes(exclude_failed):
    nothing = [pd.DataFrame(),
               frame([row(seed=0, status="failed"), row(seed=1, status="diverged")]) if exclude_failed
               else frame([row(seed=0, status="running"), row(seed=1, status="queued")])]
    for df in nothing:
        lb = rank(df, exclude_failed=exclude_failed)
        assert list(lb.table.columns) == SUMMARY and lb.table.empty
        assert isinstance(lb.settings, pd.DataFrame) and lb.settings.empty
        assert isinstance(lb.incomplete, pd.DataFrame) and lb.incomplete.empty
        assert lb.notes == ([NOTE] if exclude_failed else [])
        assert lb.records() == []


def test_notes_only_when_failures_are_excluded():
    rows = [row(seed=0), row(seed=1, status="failed")]
    assert rank(frame(rows)).notes == []
    assert rank(frame(rows), exclude_failed=True).notes == [NOTE]


def test_records_are_the_table_rows_in_rank_order():
    rows = [row("A", val=0.4, test=0.4), row("B", val=0.8, test=0.8)]
    lb = rank(frame(rows))
    recs = lb.records()
    assert [r["arch"] for r in recs] == ["B", "A"] and [r["rank"] for r in recs] == [1, 2]
    assert recs[0]["score"] == pytest.approx(0.8) and recs[1]["score"] == pytest.approx(0.4)
    assert all(list(r) == list(lb.table.columns) for r in recs)


def test_settings_frame_reports_each_chosen_cell():
    # lr 0.1: seeds val 0.6, 0.7 and one failed -> mean normalised val (0.5 + 0.625 + 0) / 3;
    # lr 0.01: val 0.2 -> normalised 0: lr 0.1 is chosen
    rows = [row(lr=0.1, seed=0, val=0.6, test=0.5, floor=0.2), row(lr=0.1, seed=1, val=0.7, test=0.6, floor=0.2),
            row(lr=0.1, seed=2, status="failed", floor=0.2), row(lr=0.01, seed=0, val=0.2, test=0.9, floor=0.2)]
    for r in rows:
        r["chance"] = 0.1
    s = rank(frame(rows)).settings
    assert list(s.columns[:4]) == ["arch", "size", "entry_id", "setting_id"]
    assert len(s) == 1
    c = s.iloc[0]
    assert (c["arch"], c["size"], c["entry_id"], c["setting_id"]) == ("A", "d32-L2-H2", rows[0]["entry_id"], rows[0]["setting_id"])
    assert c.lr == 0.1 and c.seeds == 3 and c.failed == 1
    assert c.val_norm == pytest.approx((0.4 / 0.8 + 0.5 / 0.8 + 0.0) / 3)
    assert c.test_mean == pytest.approx((0.5 + 0.6) / 2)  # raw test scores of the runs that have one
    assert c.norm_mean == pytest.approx((0.3 / 0.8 + 0.4 / 0.8 + 0.0) / 3) and c.score == pytest.approx(c.norm_mean)
    assert (c.floor, c.chance) == (0.2, 0.1)


def test_incomplete_frame_keeps_its_columns_and_sizes():
    complete = [row(a, task=t) for a in ("A", "B") for t in ("t1", "t2")]
    inc = rank(frame(complete)).incomplete
    assert inc.empty and list(inc.columns) == ["arch", "size", "settings", "missing"]
    inc = rank(frame(complete + [row("C", task="t1", d_model=64)])).incomplete
    assert inc.to_dict(orient="records") == [dict(arch="C", size="d64-L2-H2", settings=1, missing="t2")]


def test_a_lone_entry_has_no_win_rate():
    lb = rank(frame([row(seed=0)]))
    w = win_rates(lb.settings)
    assert w.empty and w.dtype == np.float64
    assert np.isnan(lb.table["win_rate"].item())


# ---- labels ----

def test_labels_name_every_field_that_differs_in_short_form():
    fields_1 = {"arch.tie_embeddings": True, "dtype": "bf16", "optimizer.schedule": "cosine",
                "train.data.order": "random", "train.grad_clip": 0.5}
    fields_2 = {"arch.tie_embeddings": False, "dtype": "fp32", "optimizer.schedule": "linear",
                "train.data.order": "sorted", "train.grad_clip": 1.0}
    rows = [with_fields(row(val=0.9, test=0.9), fields_1), with_fields(row(val=0.5, test=0.5), fields_2)]
    # keys in sorted order; SHORT_NAMES where it has one, else the last dotted part;
    # floats in %g form, everything else as str()
    assert list(rank(frame(rows)).table["arch"]) == [
        "A tied=True dtype=bf16 schedule=cosine order=random grad_clip=0.5",
        "A tied=False dtype=fp32 schedule=linear order=sorted grad_clip=1"]


def test_labels_tell_apart_entries_without_a_size():
    entries = pd.DataFrame(dict(entry_id=["e1", "e2", "e3"], arch_label=["A"] * 3, size=[None, None, "d32"],
                                entry_config=[{"optimizer.weight_decay": 0.0}, {"optimizer.weight_decay": 1.0},
                                              {"optimizer.weight_decay": 0.0}]))
    labels = entry_labels(entries)
    assert labels.to_dict() == {"e1": "A wd=0", "e2": "A wd=1", "e3": "A"}
    assert labels.dtype == object
    rows = [row(wd=0.0, val=0.8, test=0.8), row(wd=1.0, val=0.4, test=0.4)]
    for r in rows:
        r["size"] = None
    assert list(rank(frame(rows)).table["arch"]) == ["A wd=0", "A wd=1"]


def test_runs_without_a_config_are_labelled_by_their_arch():
    rows = [row(wd=0.0, val=0.8, test=0.8), row(wd=1.0, val=0.4, test=0.4)]
    no_config = frame(rows).drop(columns="config")
    t = rank(no_config).table
    assert list(t["arch"]) == ["A", "A"] and list(t["score"]) == [pytest.approx(0.8), pytest.approx(0.4)]
    # one entry's config missing (NaN in the frame): the other is labelled by its own fields
    # (weight decay and steps, which the config-less one lacks); no nameless field appears
    cfg = {"arch": {"name": "A", "d_model": 32, "n_layers": 2, "n_heads": 2}, "task": {"name": "t1"},
           "optimizer": {"lr": 0.1, "weight_decay": 0.1}, "train": {"steps": 100}, "seed": 0}
    rows[0]["config"] = cfg
    rows[1].pop("config")
    labels = list(rank(frame(rows)).table["arch"])
    assert labels[0] == "A wd=0.1 steps=100"
    assert labels[1].startswith("A ") and " =" not in labels[1] and "nan" not in labels[1]


def test_choose_lr_gives_one_row_per_setting_in_setting_order():
    rows = [row(task=t, lr=lr, seed=0, val=v, test=v) for t in ("t1", "t2", "t3")
            for lr, v in ((0.1, 0.4), (0.01, 0.6))]
    chosen = choose_lr(prepare(frame(rows)))
    assert list(chosen["setting_id"]) == sorted({r["setting_id"] for r in rows})
    assert list(chosen["lr"]) == [0.01] * 3


def test_score_ties_are_broken_by_win_rate_then_name():
    # both entries average 0.5 over three settings; B wins two of the three same-setting
    # comparisons (0.75 > 0.5 twice, 0 < 0.5 once), so B ranks first though A sorts first by name
    rows = [row("A", task=t, val=0.5, test=0.5) for t in ("t1", "t2", "t3")]
    rows += [row("B", task=t, val=v, test=v) for t, v in (("t1", 0.75), ("t2", 0.75), ("t3", 0.0))]
    t = rank(frame(rows)).table
    assert list(t["score"]) == [0.5, 0.5]
    assert list(t["arch"]) == ["B", "A"] and list(t["rank"]) == [1, 2]
    assert list(t["win_rate"]) == [pytest.approx(2 / 3), pytest.approx(1 / 3)]
    # equal scores and equal win rates: by name
    same = [row(a, task=t, val=0.5, test=0.5) for a in ("B", "A", "C") for t in ("t1", "t2")]
    assert list(rank(frame(same)).table["arch"]) == ["A", "B", "C"]


def test_table_counts_settings_and_reports_the_median_parameter_count():
    rows = [row("A", task=t, seed=s, val=0.5, test=0.5) for t in ("t1", "t2") for s in (0, 1)]
    for r, n in zip(rows, (100, 300, 200, 1000)):  # median of 100, 200, 300, 1000: 250
        r["n_params"] = n
    rows += [row("B", task=t, seed=0, val=0.5, test=0.5) for t in ("t1", "t2")]
    for r in rows[4:]:
        r["n_params"] = None  # e.g. runs that failed before building the model
    t = rank(frame(rows)).table.set_index("arch")
    assert t.loc["A", "n_params"] == 250 and t.loc["A", "settings"] == 2 and t.loc["B", "settings"] == 2
    assert pd.isna(t.loc["B", "n_params"])


def test_normalise_takes_plain_lists_with_missing_values():
    # a missing score or floor (None) gives NaN, the rest (0.75 - 0.5) / (1 - 0.5) and 0.6 / 1
    out = normalise([0.75, None, 0.6], [0.5, 0.5, None])
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and np.isnan(out[2])
    assert normalise([1, 0], 0).tolist() == [1.0, 0.0] and normalise([1, 0], 0).dtype == np.float64


def test_prepare_keeps_failures_unless_asked_and_a_missing_score_is_a_failure():
    rows = [row(seed=0, val=0.9, test=0.8, floor=0.5), row(seed=1, status="diverged"),
            row(seed=2, val=0.9, test=None), row(seed=3, val=None, test=0.9)]
    p = prepare(frame(rows))  # by default nothing is dropped
    assert list(p["seed"]) == [0, 1, 2, 3]
    assert list(p["failed"]) == [False, True, True, True]  # done without val or test: no-skill
    assert list(p["val_norm"]) == [pytest.approx(0.8), 0.0, 0.0, 0.0]
    assert list(p["test_norm"]) == [pytest.approx(0.6), 0.0, 0.0, 0.0]
    assert list(prepare(frame(rows), exclude_failed=True)["seed"]) == [0]


def test_without_floor_or_chance_the_zero_is_zero():
    r = row(seed=0, val=0.7, test=0.6)
    r["floor"] = r["chance"] = None
    p = prepare(frame([r]))
    assert p["val_norm"].item() == pytest.approx(0.7) and p["test_norm"].item() == pytest.approx(0.6)
    assert rank(frame([r])).table["score"].item() == pytest.approx(0.6)


def test_an_entry_whose_runs_name_no_task_is_still_ranked():
    rows = [row(seed=s, val=0.6, test=0.6) for s in (0, 1)]
    for r in rows:
        r["task"] = None
    t = rank(frame(rows)).table
    assert list(t["arch"]) == ["A"] and t["score"].item() == pytest.approx(0.6)


def test_entries_differing_only_in_mlp_ratio_are_labelled_by_it():
    # arch.mlp (the MLP kind) is in the arch label, arch.mlp_ratio is not (nor in the size):
    # two entries that differ only in it must not both read "A"
    rows = [with_fields(row(val=0.9, test=0.9), {"arch.mlp": "swiglu", "arch.mlp_ratio": 4.0}),
            with_fields(row(val=0.5, test=0.5), {"arch.mlp": "swiglu", "arch.mlp_ratio": 2.0})]
    assert list(rank(frame(rows)).table["arch"]) == ["A mlp_ratio=4", "A mlp_ratio=2"]
    # what the arch label and size already say is still left out
    rows = [with_fields(row(val=0.9, test=0.9), {"arch.mlp": "swiglu", "arch.norm": "rmsnorm", "arch.options.w": 1}),
            with_fields(row(val=0.5, test=0.5, wd=0.5), {"arch.mlp": "relu", "arch.norm": "none", "arch.options.w": 2})]
    assert list(rank(frame(rows)).table["arch"]) == ["A wd=0.1", "A wd=0.5"]
