"""The ranking on small hand-built frames: each defect of a naive leaderboard, fixed."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.identity import identity_columns
from harness.ranking import MIN_BOOTSTRAP_SEEDS, choose_lr, normalise, prepare, rank, t_interval


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
