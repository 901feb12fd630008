import numpy as np
import pandas as pd
import pytest

from harness.ranking import choose_lr, normalise, rank


def row(arch, setting, lr, seed, val, test, chance=0.0, task=None):
    return dict(id=f"{arch}{setting}{lr}{seed}", arch=arch, arch_label=arch, size="s", task=task or setting.split("(")[0],
                task_setting=setting, lr=lr, seed=seed, sweep="x", metric="accuracy",
                val_score=val, test_score=test, chance=chance, n_params=100)


def hand_table():
    """Hand-checked: A beats B on t1, ties on t2; lr must be chosen on val, not test."""
    rows = []
    # A on t1: lr 0.1 has the better val (0.8 vs 0.6) but the worse test (0.7 vs 0.9)
    rows += [row("A", "t1", 0.1, 0, 0.8, 0.7, chance=0.5), row("A", "t1", 0.1, 1, 0.8, 0.8, chance=0.5),
             row("A", "t1", 0.01, 0, 0.6, 0.9, chance=0.5), row("A", "t1", 0.01, 1, 0.6, 0.9, chance=0.5)]
    rows += [row("B", "t1", 0.1, 0, 0.5, 0.4, chance=0.5), row("B", "t1", 0.1, 1, 0.5, 0.6, chance=0.5)]
    rows += [row("A", "t2", 0.1, 0, 1.0, 1.0), row("A", "t2", 0.1, 1, 1.0, 1.0),
             row("B", "t2", 0.1, 0, 1.0, 1.0), row("B", "t2", 0.1, 1, 1.0, 1.0)]
    return pd.DataFrame(rows)


def test_lr_is_chosen_on_val_and_scored_on_test():
    chosen = choose_lr(hand_table())
    a1 = chosen[(chosen.arch_label == "A") & (chosen.task_setting == "t1")]
    assert a1.lr.item() == 0.1  # best val, although lr 0.01 has the better test score


def test_hand_checked_scores_and_win_rate():
    lb = rank(hand_table(), n_boot=200)
    t = lb.table.set_index("arch")
    # A, t1: test (0.7, 0.8) -> normalised ((0.7-.5)/.5, (0.8-.5)/.5) = (0.4, 0.6) -> 0.5; t2 -> 1.0
    assert t.loc["A", "score"] == pytest.approx((0.5 + 1.0) / 2)
    # B, t1: test (0.4, 0.6) -> (0 clipped, 0.2) -> 0.1; t2 -> 1.0
    assert t.loc["B", "score"] == pytest.approx((0.1 + 1.0) / 2)
    # one win and one tie for A out of two comparisons; B the mirror
    assert t.loc["A", "win_rate"] == pytest.approx(0.75)
    assert t.loc["B", "win_rate"] == pytest.approx(0.25)
    assert list(lb.table["arch"]) == ["A", "B"] and list(lb.table["rank"]) == [1, 2]
    assert t.loc["A", "runs"] == 6 and t.loc["A", "settings"] == 2
    assert t.loc["A", "t1"] == pytest.approx(0.5)


def test_bootstrap_interval_brackets_the_mean_and_collapses_without_variance():
    lb = rank(hand_table(), n_boot=500).table.set_index("arch")
    assert lb.loc["A", "ci_low"] <= lb.loc["A", "score"] <= lb.loc["A", "ci_high"]
    assert lb.loc["A", "ci_low"] == pytest.approx((0.4 + 1.0) / 2)  # both seeds 0.4 in some resample
    same = pd.DataFrame([row("C", "t", 0.1, s, 0.9, 0.9) for s in range(3)])
    c = rank(same).table.iloc[0]
    assert c.ci_low == c.ci_high == pytest.approx(0.9)


def test_normalise_clips_at_chance():
    assert normalise([0.25, 0.5, 1.0], 0.5).tolist() == [0.0, 0.0, 1.0]
    assert np.allclose(normalise(0.75, 0.5), 0.5)


def test_empty_frame_gives_empty_table():
    assert rank(pd.DataFrame()).table.empty
