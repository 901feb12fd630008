from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, make_task
from tasks.induction import generate_induction


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


def test_score_by_hand():
    task = make_task("induction", {"vocab_size": 16, "seq_len": 24, "segment_len": 3, "num_repeats": 2})
    targets = torch.full((1, 24), IGNORE)
    targets[0, [5, 6, 12, 13]] = torch.tensor([1, 2, 1, 2])
    preds = torch.zeros(1, 24, dtype=torch.long)
    preds[0, [5, 6, 12]] = torch.tensor([1, 2, 1])
    s = task.score(preds, targets, "test")
    assert s == {"accuracy": 0.75, "accuracy/repeat=1": 1.0, "accuracy/repeat=2": 0.5}
    assert task.chance == pytest.approx(1 / 16)


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
