from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, make_task
from tasks.base import TaskData, split_generator
from tasks.files import TaskFileError
from tasks.flipflop import ALPHABET, ONE, R, W, ZERO, flipflop_from_strings, generate_flipflop

from _task_util import data_digest


def reference_targets(x: torch.Tensor) -> torch.Tensor:
    """Slow reference: walk each sequence, remembering the last written bit."""
    out = torch.full_like(x, IGNORE)
    for i, row in enumerate(x.tolist()):
        last = None
        for t in range(0, len(row), 2):
            if row[t] == W:
                last = row[t + 1]
            elif row[t] == R:
                assert last is not None
                out[i, t] = last
    return out


@settings(max_examples=25, deadline=None)
@given(pairs=st.integers(2, 40), p_i=st.sampled_from([0.0, 0.1, 0.5, 0.8, 0.98, 1.0]), seed=st.integers(0, 2**31))
def test_every_scored_bit_is_the_last_written_bit(pairs, p_i, seed):
    data = generate_flipflop(torch.Generator().manual_seed(seed), 16, 2 * pairs, p_i)
    x, y = data.inputs, data.targets
    assert x.shape == (16, 2 * pairs)
    instr, bits = x[:, 0::2], x[:, 1::2]
    assert ((instr >= 0) & (instr <= 2)).all() and ((bits == ZERO) | (bits == ONE)).all()
    assert (instr[:, 0] == W).all() and (instr[:, -1] == R).all()
    assert torch.equal(y, reference_targets(x))
    # the bit that follows every read is the one scored at the read
    reads = y != IGNORE
    assert torch.equal(y[reads], x[:, 1:][reads[:, :-1]])


def test_instruction_frequencies_follow_p_i():
    for p_i in (0.1, 0.8, 0.98):
        x = generate_flipflop(torch.Generator().manual_seed(1), 2000, 512, p_i).inputs[:, 2:-2:2]
        n = x.numel()
        assert abs(float((x == 2).sum()) / n - p_i) < 0.01
        assert abs(float((x == W).sum()) / n - (1 - p_i) / 2) < 0.01
    bits = generate_flipflop(torch.Generator().manual_seed(2), 2000, 512, 0.8).inputs[:, 1::2]
    assert abs(float((bits == ONE).double().mean()) - 0.5) < 0.01


def test_splits_use_their_p_i():
    task = make_task("flipflop", {"seq_len": 256, "p_i_dense": 0.3})
    assert task.splits == ("train", "val", "in_dist", "sparse", "dense")
    assert task.test_split == "in_dist" and task.val_split == "val"
    for split, p in (("train", 0.8), ("in_dist", 0.8), ("sparse", 0.98), ("dense", 0.3)):
        x = task.generate(split, n=400, seed=0).inputs[:, 2:-2:2]
        assert abs(float((x == 2).double().mean()) - p) < 0.02, split


def test_each_split_is_drawn_from_its_own_stream():
    """Split s at seed k is FFL(p_i of s) drawn from split_generator("flipflop", s, k), so a
    stored run's test split can be regenerated; n defaults to the split's size, seed to 0."""
    task = make_task("flipflop", {"seq_len": 8, "n_train": 5, "n_val": 3, "n_test": 4})
    for split in task.splits:
        n = {"train": 5, "val": 3}.get(split, 4)
        p_i = {"sparse": 0.98, "dense": 0.1}.get(split, 0.8)
        expect = generate_flipflop(split_generator("flipflop", split, 0), n, 8, p_i)
        assert data_digest(task.generate(split)) == data_digest(expect), split


def test_paper_preset():
    task = make_task("flipflop", preset="paper")
    assert task.config.seq_len == 512 and task.config.p_i == 0.8
    assert task.config.p_i_sparse == 0.98 and task.config.p_i_dense == 0.1
    assert task.chance == 0.5 and task.vocab_size == 5


@pytest.mark.parametrize("params, constraint", [
    ({"seq_len": 63}, "even seq_len"),
    ({"seq_len": 2}, "seq_len"),
    ({"p_i": 1.5}, "p_i"),
    ({"p_i_sparse": -0.1}, "p_i_sparse"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("flipflop", params)


def test_score_by_hand():
    task = make_task("flipflop", preset="quick")
    targets = torch.full((2, 6), IGNORE)
    targets[0, 2], targets[0, 4], targets[1, 4] = ONE, ZERO, ONE
    preds = torch.zeros(2, 6, dtype=torch.long)
    preds[0, 2], preds[0, 4], preds[1, 4] = ONE, ONE, ONE   # one of three reads wrong
    s = task.score(preds, targets, "in_dist")
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["glitch_rate"] == pytest.approx(1 / 3)
    assert s["sequence_accuracy"] == pytest.approx(0.5)


def test_score_with_nothing_scored_is_nan():
    """No read to score: every metric is NaN (skipped by the floor), not a division by zero;
    one read is enough to score."""
    task = make_task("flipflop", preset="quick")
    preds = torch.full((2, 6), ZERO)
    s = task.score(preds, torch.full((2, 6), IGNORE), "in_dist")
    assert set(s) == {"accuracy", "glitch_rate", "sequence_accuracy"} and all(v != v for v in s.values()), s
    targets = torch.full((1, 6), IGNORE)
    targets[0, 4] = ONE
    s = task.score(preds[:1], targets, "in_dist")
    assert s == {"accuracy": 0.0, "glitch_rate": 1.0, "sequence_accuracy": 0.0}, s


@pytest.mark.parametrize("read_bits, majority", [
    ("1110", ONE), ("0001", ZERO), ("11000", ZERO), ("1100", ZERO),   # a tie goes to 0
])
def test_majority_bit_is_the_more_frequent_read_bit(read_bits, majority):
    """One row per read (``w<b>r<b>``): majority_bit predicts the bit most reads expect, everywhere."""
    task = make_task("flipflop", {"seq_len": 4})
    data = flipflop_from_strings([f"w{b}r{b}" for b in read_bits])
    pred = task.trivial_predictions(data, "in_dist")["majority_bit"]
    assert (pred == majority).all(), f"{read_bits}: expected {ALPHABET[majority]!r} at every position, got {pred.tolist()}"


def test_no_strategies_without_reads():
    task = make_task("flipflop", {"seq_len": 4})
    assert task.trivial_predictions(flipflop_from_strings(["w1i0", "i0w1"]), "in_dist") == {}


def test_strings_round_trip_through_jsonl(tmp_path):
    task = make_task("flipflop", {"seq_len": 32})
    data = task.generate("sparse", n=20, seed=4)
    strings = ["".join(ALPHABET[t] for t in row) for row in data.inputs.tolist()]
    path = tmp_path / "ffl.jsonl"
    path.write_text("\n".join(json.dumps({"text": s, "other": 1}) for s in strings) + "\n")
    loaded = task.load(path, split="sparse")
    assert torch.equal(loaded.inputs, data.inputs) and torch.equal(loaded.targets, data.targets)
    # render gives the prompt up to the last read and the bit that follows it
    ex = task.render(loaded)[0]
    assert ex.prompt.endswith("r") and ex.answer in "01" and strings[0].startswith(ex.prompt + ex.answer)
    # the default split is in_dist (the published "val" split)
    assert torch.equal(task.load(path).inputs, data.inputs)


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "ffl.jsonl"
    path.write_text(json.dumps({"text": "w1r1"}) + "\n" + json.dumps({"text": "w1rx"}) + "\n")
    with pytest.raises(TaskFileError) as e:
        make_task("flipflop", {"seq_len": 4}).load(path)
    assert str(e.value).startswith(f"{path}: sequence 1 is not in the flip-flop format"), str(e.value)


def test_published_format_by_hand():
    data = flipflop_from_strings(["w1i0r1w0r0", "w0r0i1i1r0"])
    assert data.inputs[0].tolist() == [0, 4, 2, 3, 1, 4, 0, 3, 1, 3]
    assert data.targets[0].tolist() == [IGNORE] * 4 + [ONE, IGNORE, IGNORE, IGNORE, ZERO, IGNORE]
    assert data.targets[1].tolist() == [IGNORE, IGNORE, ZERO] + [IGNORE] * 5 + [ZERO, IGNORE]
    # the shortest sequence is one pair
    data = flipflop_from_strings(["w1", "i0"])
    assert data.inputs.tolist() == [[0, 4], [2, 3]] and (data.targets == IGNORE).all()


@pytest.mark.parametrize("strings, problem", [
    (["w1r1", "w1r1i0"], "one length"),
    (["w1r"], "even length"),
    (["w1x1"], "not in the flip-flop format"),
    (["1wr1"], "not in the flip-flop format"),
    (["w1r\u00e9"], "characters"),
    ([""], "even length >= 2"),
    ([], "no flip-flop sequences"),
])
def test_bad_strings_are_rejected(strings, problem):
    with pytest.raises(TaskFileError, match=problem):
        flipflop_from_strings(strings)


@pytest.mark.parametrize("bad", [
    "w1x1",                 # an instruction that is no instruction
    "w11r",                 # a bit where an instruction goes
    "w1rr",                 # an instruction where a bit goes
    "w1r9",                 # a bit that is no bit
    "w1" * 30 + "rw",       # long: the message quotes its first 40 characters
])
def test_rejection_names_the_bad_sequence(bad):
    good = "w0" + "r0" * (len(bad) // 2 - 1)
    with pytest.raises(TaskFileError) as e:
        flipflop_from_strings([good, bad, good])
    msg = str(e.value)
    assert msg.startswith("strings: sequence 1 is not in the flip-flop format") and msg.endswith(repr(bad[:40])), msg


def test_length_mismatch_lists_the_five_smallest_lengths():
    with pytest.raises(TaskFileError) as e:
        flipflop_from_strings(["w1" * k for k in range(7, 0, -1)])
    assert str(e.value).endswith("found lengths [2, 4, 6, 8, 10]"), str(e.value)


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed: Parquet reading is optional")
    import pandas as pd

    task = make_task("flipflop", {"seq_len": 16})
    data = task.generate("dense", n=10, seed=1)
    strings = ["".join(ALPHABET[t] for t in row) for row in data.inputs.tolist()]
    path = tmp_path / "ffl.parquet"
    pd.DataFrame({"text": strings}).to_parquet(path)
    loaded = task.load(path, split="dense")
    assert isinstance(loaded, TaskData) and torch.equal(loaded.inputs, data.inputs)
    assert torch.equal(loaded.targets, data.targets)
