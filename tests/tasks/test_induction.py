from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, TaskData, make_task
from tasks.base import split_generator, strategy_generator
from tasks.induction import generate_induction
from tasks.sampling import uniform_pick

from _task_util import data_digest, row_hashes


def check_induction(x: torch.Tensor, y: torch.Tensor, V: int, s: int, R: int) -> None:
    for row, tgt in zip(x.tolist(), y.tolist()):
        assert all(0 <= v < V for v in row)
        scored = [t for t, v in enumerate(tgt) if v != IGNORE]
        assert len(scored) == R * (s - 1)
        for t in scored:
            # the target is the token that followed the earlier occurrence of the current token
            earlier = [u for u in range(t) if row[u] == row[t]]
            assert earlier, "the current token occurred before"
            assert all(row[u + 1] == tgt[t] for u in earlier), "every earlier occurrence agrees"
            assert row[t + 1] == tgt[t], "the copy continues with the target"
        # the segment's tokens are distinct and appear only inside the blocks
        counts = torch.bincount(torch.tensor(row), minlength=V)
        seg_tokens = {row[t] for t in scored} | {tgt[t] for t in scored}
        assert len(seg_tokens) == s
        assert all(int(counts[v]) == R + 1 for v in seg_tokens)


@settings(max_examples=30, deadline=None)
@given(V=st.integers(8, 200), s=st.integers(2, 8), R=st.integers(1, 3), extra=st.integers(0, 30),
       seed=st.integers(0, 2**31))
def test_scored_targets_follow_the_earlier_occurrence(V, s, R, extra, seed):
    if s >= V:
        return
    T = (1 + R) * s + extra
    data = generate_induction(torch.Generator().manual_seed(seed), 10, V, T, s, R)
    assert data.inputs.shape == (10, T)
    check_induction(data.inputs, data.targets, V, s, R)


def test_blocks_land_everywhere_and_filler_is_uniform():
    data = generate_induction(torch.Generator().manual_seed(0), 3000, 32, 64, 8, 1)
    first_scored = (data.targets != IGNORE).float().argmax(dim=1)
    assert int(first_scored.min()) <= 10 and int(first_scored.max()) >= 54  # copies start in [8, 56]
    assert int(first_scored.min()) >= 8 and int(first_scored.max()) <= 56
    counts = torch.bincount(data.inputs.flatten(), minlength=32).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.05


def test_without_filler_the_segment_is_repeated_back_to_back():
    d = generate_induction(torch.Generator().manual_seed(0), 3, 2048, 512, 256, 1)
    assert torch.equal(d.inputs[:, :256], d.inputs[:, 256:])
    assert torch.equal(d.targets[:, 256:511], d.inputs[:, 257:])
    assert (d.targets[:, :256] == IGNORE).all() and (d.targets[:, 511] == IGNORE).all()


def test_paper_preset_and_ood_len():
    task = make_task("induction", preset="paper")
    c = task.config
    assert (c.vocab_size, c.seq_len, c.segment_len, c.num_repeats, c.ood_seq_len) == (1024, 512, 64, 1, 1024)
    d = task.generate("test", n=4, seed=0)
    check_induction(d.inputs, d.targets, 1024, 64, 1)
    ood = task.generate("ood_len", n=3, seed=0)
    assert ood.inputs.shape == (3, 1024)
    check_induction(ood.inputs, ood.targets, 1024, 64, 1)


def test_generate_sizes_seeds_and_streams():
    """Without n a split has its configured size; the seed defaults to 0; each split is its own
    stream, split_generator("induction", split, seed)."""
    task = make_task("induction", {"vocab_size": 16, "seq_len": 12, "segment_len": 3,
                                   "n_train": 7, "n_val": 5, "n_test": 3})
    for split, n, T in (("train", 7, 12), ("val", 5, 12), ("test", 3, 12), ("ood_len", 3, 24)):
        data = task.generate(split)
        assert len(data) == n, f"{split}: its configured size"
        expected = generate_induction(split_generator("induction", split, 0), n, 16, T, 3, 1)
        assert data_digest(data) == data_digest(expected), f"{split}: seed 0 of the split's own stream"
    same_n = [row_hashes(task.generate(split, n=5, seed=3)) for split in ("train", "val", "test")]
    assert not (same_n[0] & same_n[1] or same_n[0] & same_n[2] or same_n[1] & same_n[2]), \
        "splits share no rows even at equal n and seed"


def test_score_by_hand():
    task = make_task("induction", {"vocab_size": 16, "seq_len": 24, "segment_len": 3, "num_repeats": 2})
    targets = torch.full((1, 24), IGNORE)
    targets[0, [5, 6, 12, 13]] = torch.tensor([1, 2, 1, 2])
    preds = torch.zeros(1, 24, dtype=torch.long)
    preds[0, [5, 6, 12]] = torch.tensor([1, 2, 1])
    s = task.score(preds, targets, "test")
    assert s == {"accuracy": 0.75, "accuracy/repeat=1": 1.0, "accuracy/repeat=2": 0.5}
    assert task.chance == pytest.approx(1 / 16)


@pytest.mark.parametrize("segment_len, num_repeats", [(2, 1), (2, 3), (4, 2)])
def test_accuracy_per_repeat_only_with_several_repeats(segment_len, num_repeats):
    task = make_task("induction", {"vocab_size": 16, "seq_len": 24, "segment_len": segment_len,
                                   "num_repeats": num_repeats})
    data = task.generate("test", n=1, seed=0)
    scored = (data.targets[0] != IGNORE).nonzero()[:, 0].tolist()
    preds = data.targets.clone()
    preds[0, scored[-(segment_len - 1):]] += 1      # the last copy wrong, the others right
    s = task.score(preds, data.targets, "test")
    expected = {"accuracy": pytest.approx((num_repeats - 1) / num_repeats)}
    if num_repeats > 1:
        expected.update({f"accuracy/repeat={r}": float(r < num_repeats) for r in range(1, num_repeats + 1)})
    assert s == expected, "accuracy per copy when the segment is repeated more than once"


def test_nothing_scored_scores_nan_and_the_floor_is_chance():
    task = make_task("induction", {"vocab_size": 16, "seq_len": 24, "segment_len": 3, "num_repeats": 2})
    data = task.generate("test", n=4, seed=0)
    empty = TaskData(data.inputs, torch.full_like(data.targets, IGNORE))
    s = task.score(data.inputs, empty.targets, "test")
    assert set(s) == {"accuracy"} and math.isnan(s["accuracy"]), "0 of 0 scored is NaN, with no per-copy entries"
    no_skill = task.no_skill(empty, "test")
    assert set(no_skill) == {"chance", "seen_once", "seen_before"}
    assert math.isnan(no_skill["seen_once"]) and math.isnan(no_skill["seen_before"])
    assert task.floor(empty, "test") == (1 / 16, "chance")


def test_strategies_guess_uniformly_among_the_tokens_seen():
    """seen_once: among the tokens seen exactly once so far; seen_before: among all seen so
    far; never the current token; each drawn with its strategy's own generator."""
    V = 10
    task = make_task("induction", {"vocab_size": V, "seq_len": 20, "segment_len": 4, "num_repeats": 2})
    data = task.generate("test", n=32, seed=0)
    preds = task.trivial_predictions(data, "test")
    mask = data.targets != IGNORE
    once, before = [], []
    for i, t in mask.nonzero().tolist():
        seen = data.inputs[i, : t + 1].tolist()
        cur = seen[-1]
        once.append([seen.count(v) == 1 and v != cur for v in range(V)])
        before.append([v in seen and v != cur for v in range(V)])
    for name, allowed in (("seen_once", once), ("seen_before", before)):
        expected = uniform_pick(strategy_generator("induction", data, name), torch.tensor(allowed))
        assert torch.equal(preds[name][mask], expected), name


def test_render_by_hand():
    task = make_task("induction", {"vocab_size": 8, "seq_len": 12, "segment_len": 3, "num_repeats": 2})
    # segment 5 1 7 with its copies back to back; segment 4 2 3 with filler between the copies
    x = torch.tensor([[5, 1, 7, 5, 1, 7, 5, 1, 7, 0, 0, 0], [0, 4, 2, 3, 6, 4, 2, 3, 6, 4, 2, 3]])
    y = torch.full_like(x, IGNORE)
    y[0, [3, 4, 6, 7]] = torch.tensor([1, 7, 1, 7])
    y[1, [5, 6, 9, 10]] = torch.tensor([2, 3, 2, 3])
    check_induction(x, y, 8, 3, 2)
    out = [(e.prompt, e.answer) for e in task.render(TaskData(x, y))]
    assert out == [("5 1 7 5", "1 7"), ("0 4 2 3 6 4", "2 3")], "prompt: up to the first scored token; answer: its copy"


@pytest.mark.parametrize("params, constraint", [
    ({"seq_len": 16, "segment_len": 9}, r"\(1 \+ num_repeats\) \* segment_len <= seq_len"),
    ({"vocab_size": 8, "segment_len": 8}, "segment_len < vocab_size"),
    ({"seq_len": 64, "ood_seq_len": 64}, "ood_seq_len > seq_len"),
    ({"segment_len": 1}, "segment_len"),
    ({"num_repeats": 0}, "num_repeats"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("induction", params)
