from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, TaskData, make_task, multiplication
from tasks.multiplication import EQUALS, STAR, decode_operands, pair_bucket, split_codes
from tasks.base import split_generator
from tasks.sampling import mix_hash


def digits_value(ds: list[int]) -> int:
    return sum(d * 10**i for i, d in enumerate(ds))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 2**31),
       split=st.sampled_from(["train", "val", "test"]))
def test_digits_decode_to_the_product(n, m, seed, split):
    K = 3 if n + m <= 2 else 16
    task = make_task("multiplication", {"n_digits": n, "m_digits": m, "holdout_modulus": K})
    rows = 32 if n + m > 3 else min(32, split_codes(n, m, K, split).numel())
    data = task.generate(split, n=rows, seed=seed)
    T = 2 * (n + m) + 1
    assert data.inputs.shape == (rows, T)
    eq = n + 1 + m
    for x, y in zip(data.inputs.tolist(), data.targets.tolist()):
        assert x[n] == STAR and x[eq] == EQUALS
        a, b = digits_value(x[:n]), digits_value(x[n + 1 : eq])
        assert 10 ** (n - 1) <= a < 10**n and 10 ** (m - 1) <= b < 10**m, "leading digits are nonzero"
        assert all(t == IGNORE for t in y[:eq])
        prod = y[eq:]
        assert len(prod) == n + m and digits_value(prod) == a * b
        assert x[eq + 1 :] == prod[:-1], "teacher forcing: the inputs hold the product shifted by one"
    a, b = decode_operands(data.inputs, n, m)
    assert len(set(zip(a.tolist(), b.tolist()))) == rows, "no pair repeats within a split"
    bucket = pair_bucket(a, b, n, m, K)
    if split == "test":
        assert (bucket == 0).all()
    elif split == "val":
        assert (bucket == 1).all()
    else:
        assert (bucket >= 2).all()


def test_hash_partition_is_balanced_and_fixed():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(1000, 10000, (400_000,), generator=g)
    b = torch.randint(1000, 10000, (400_000,), generator=g)
    counts = torch.bincount(pair_bucket(a, b, 4, 4, 64), minlength=64).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.06
    # neighbouring pairs are spread over the buckets, not clustered
    near = pair_bucket(torch.full((640,), 4321), torch.arange(1000, 1640), 4, 4, 64)
    assert len(set(near.tolist())) > 50
    # equal digit counts: a pair and its swap share a bucket; different counts: independent
    assert torch.equal(pair_bucket(a, b, 4, 4, 64), pair_bucket(b, a, 4, 4, 64))
    assert not torch.equal(pair_bucket(a, b, 4, 4, 64), pair_bucket(a, b, 4, 5, 64))


def _pairs(task, split, n=None, seed=0):
    c = task.config
    a, b = decode_operands(task.generate(split, n=n, seed=seed).inputs, c.n_digits, c.m_digits)
    return list(zip(a.tolist(), b.tolist()))


def test_quick_test_set_is_not_answerable_from_memory():
    task = make_task("multiplication", preset="quick")           # 2x2: 8100 pairs
    test, val = _pairs(task, "test"), _pairs(task, "val")
    assert len(set(test)) == len(test) == task.config.n_test, "test pairs drawn without replacement"
    assert len(set(val)) == len(val) == task.config.n_val
    assert not set(test) & set(val)
    for seed in range(3):
        train = _pairs(task, "train", seed=seed)
        assert len(set(train)) == len(train) == task.config.n_train
        seen = set(train)
        for split, pairs in (("test", test), ("val", val)):
            assert not seen & set(pairs), split
            assert not seen & {(y, x) for x, y in pairs}, f"the swap of a {split} pair is in train"
    # the buckets do not depend on the seed: every test pair, whatever the seed, is in bucket 0
    a = torch.arange(10, 100).repeat_interleave(90)
    b = torch.arange(10, 100).repeat(90)
    bucket0 = set(zip(a[pair_bucket(a, b, 2, 2, 8) == 0].tolist(), b[pair_bucket(a, b, 2, 2, 8) == 0].tolist()))
    assert len(bucket0) == split_codes(2, 2, 8, "test").numel()
    for seed in (0, 9):
        assert set(_pairs(task, "test", seed=seed)) <= bucket0


@pytest.mark.parametrize("split, knob", [("train", "n_train"), ("val", "n_val"), ("test", "n_test")])
def test_the_whole_split_without_replacement_and_a_clear_error_beyond(split, knob):
    task = make_task("multiplication", {"n_digits": 2, "m_digits": 1, "holdout_modulus": 8})
    total = split_codes(2, 1, 8, split).numel()
    assert 0 < total < 810
    pairs = _pairs(task, split, n=total, seed=1)
    assert len(set(pairs)) == total
    with pytest.raises(ValueError, match=rf"has {total} distinct {split} pairs; asked for {total + 1}.*{knob} <= {total}"):
        task.generate(split, n=total + 1)


def test_a_configured_split_size_beyond_the_split_is_refused():
    with pytest.raises(ValueError, match="n_train <="):
        make_task("multiplication", {"n_digits": 2, "m_digits": 2, "n_train": 8000}).generate("train")


def test_sampled_spaces_give_up_to_half_a_split(monkeypatch):
    """The sampler's limit on a small space sent through it (nothing listed): 2x2 digits,
    holdout_modulus 8, about 8100 / 8 = 1012 test pairs, so 506 may be asked for, 507 not."""
    monkeypatch.setattr(multiplication, "_ENUMERATE", 0)
    task = make_task("multiplication", {"n_digits": 2, "m_digits": 2, "holdout_modulus": 8})
    half = _pairs(task, "test", n=506, seed=3)
    assert len(set(half)) == 506 and all(10 <= a < 100 and 10 <= b < 100 for a, b in half)
    assert set(half) <= {(c // 100, c % 100) for c in split_codes(2, 2, 8, "test").tolist()}
    with pytest.raises(ValueError, match="has about 1012 distinct test pairs; asked for 507, more than half"):
        task.generate("test", n=507)


def _rejection_recipe(split: str, n: int, seed: int) -> tuple[list[tuple[int, int]], int]:
    """The first n pairs of a 4x4-digit split (holdout_modulus 64) by the documented sampler,
    and how many batches of draws it took."""
    share = 1.0 / 64 if split == "test" else (64 - 2) / 64
    g = split_generator("multiplication", split, seed)
    found: dict[tuple[int, int], None] = {}
    batches = 0
    while len(found) < n:
        m = int((n - len(found)) / share * 1.1) + 64
        a = torch.randint(1000, 10000, (m,), generator=g)
        b = torch.randint(1000, 10000, (m,), generator=g)
        for x, y, k in zip(a.tolist(), b.tolist(), pair_bucket(a, b, 4, 4, 64).tolist()):
            in_split = k == 0 if split == "test" else k >= 2
            if in_split:
                found.setdefault((x, y))
        batches += 1
    return list(found)[:n], batches


@pytest.mark.parametrize("split, n", [("train", 300), ("test", 300), ("test", 4)])
def test_sampled_splits_follow_the_rejection_recipe(split, n):
    """The recipe rebuilt: from split_generator("multiplication", split, seed), draw a batch
    of a's then of b's, 1.1 x (pairs still needed) / (the split's share) + 64 of each, keep
    the split's pairs not seen before, in draw order, until there are n.  The paper presets
    (81M and 8.1G pairs) are sampled this way: this fixes their data for a seed."""
    task = make_task("multiplication", preset="paper")              # 4x4, holdout_modulus 64
    batches = []
    for seed in range(3 if n > 10 else 6):
        want, k = _rejection_recipe(split, n, seed)
        assert _pairs(task, split, n=n, seed=seed) == want, (split, n, seed)
        batches.append(k)
    if n < 10:
        assert max(batches) > 1, "a seed whose first batch fell short (the top-up batches are checked too)"


@pytest.mark.parametrize("split, knob, about", [("train", "n_train", 40_500_000), ("val", "n_val", 20_250_000),
                                                ("test", "n_test", 20_250_000)])
def test_sampled_spaces_refuse_more_than_half_a_split_and_say_how_many(split, knob, about):
    """4x4 digits: 9000 * 9000 = 81M pairs, too many to list; holdout_modulus 4 puts a
    quarter in test, a quarter in val and half in train."""
    task = make_task("multiplication", {"n_digits": 4, "m_digits": 4, "holdout_modulus": 4})
    with pytest.raises(ValueError, match=rf"has about {about} distinct {split} pairs; asked for {about // 2 + 1}, "
                                         rf"more than half of them: set {knob} <= {about // 2}$"):
        task.generate(split, n=about // 2 + 1)


def test_listed_splits_are_drawn_by_the_split_s_own_stream():
    """The recipe rebuilt: a split's first n pairs are its codes (ascending) under a
    permutation from split_generator("multiplication", split, seed).  The same seed must give
    the same data in every version (stored results are keyed by the config and the seed);
    no seed means seed 0."""
    task = make_task("multiplication", preset="quick")                # 2x2, holdout_modulus 8
    for split in ("train", "val", "test"):
        codes = split_codes(2, 2, 8, split)
        for seed in (0, 5):
            perm = torch.randperm(codes.numel(), generator=split_generator("multiplication", split, seed))
            want = [(c // 100, c % 100) for c in codes[perm[:20]].tolist()]
            assert _pairs(task, split, n=20, seed=seed) == want, (split, seed)
        assert torch.equal(task.generate(split, n=20).inputs, task.generate(split, n=20, seed=0).inputs), split


def test_sampled_spaces_give_the_same_pairs_for_the_same_seed():
    big = make_task("multiplication", {"n_digits": 4, "m_digits": 4, "holdout_modulus": 4})
    for split in ("train", "test"):
        first = _pairs(big, split, n=50, seed=7)
        assert _pairs(big, split, n=50, seed=7) == first, f"{split}: the seed fixes the sampled pairs"
        assert _pairs(big, split, n=50, seed=8) != first, f"{split}: another seed, other pairs"
        assert all(1000 <= a < 10000 and 1000 <= b < 10000 for a, b in first), split


@pytest.mark.parametrize("n, m, K", [(2, 2, 8), (2, 1, 3), (1, 3, 16)])
def test_train_val_and_test_partition_every_pair(n, m, K):
    every = sorted(a * 10**m + b for a in range(10 ** (n - 1), 10**n) for b in range(10 ** (m - 1), 10**m))
    splits = [split_codes(n, m, K, split).tolist() for split in ("train", "val", "test")]
    assert sorted(sum(splits, [])) == every, "each pair is in exactly one of train, val and test"


@pytest.mark.parametrize("a, b, n, m", [(37, 5, 2, 1), (5, 37, 1, 2), (4321, 1234, 4, 4), (1234, 4321, 4, 4),
                                        (90, 10, 2, 2), (123, 45678, 3, 5)])
def test_the_bucket_is_the_fixed_hash_of_the_pair_written_as_one_number(a, b, n, m):
    """The held-out set is fixed by definition: the hash key is a's digits then b's
    zero-padded to m digits (37 and 5 at m = 1: 375; 123 and 45678: 12345678), the smaller
    operand first when n == m (4321 and 1234: 12344321)."""
    x, y = (min(a, b), max(a, b)) if n == m else (a, b)
    key = int(f"{x}{y:0{m}d}")
    for K in (3, 64, 1000):
        want = int(mix_hash(torch.tensor([key]))[0]) % K
        assert pair_bucket(torch.tensor([a]), torch.tensor([b]), n, m, K).tolist() == [want], (a, b, K)


def test_sparse_buckets_are_still_sampled_by_rejection():
    """4x3 digits with holdout_modulus 10000: about 810 test pairs in 8.1M, so one batch of
    draws for a single pair (about 11k) holds no test pair a third of the time (seeds 1 and 2
    here); the sampler keeps drawing."""
    task = make_task("multiplication", {"n_digits": 4, "m_digits": 3, "holdout_modulus": 10_000})
    for seed in range(8):
        (pair,) = _pairs(task, "test", n=1, seed=seed)
        assert pair_bucket(torch.tensor([pair[0]]), torch.tensor([pair[1]]), 4, 3, 10_000).item() == 0, seed


def test_large_spaces_sample_distinct_pairs_by_rejection():
    task = make_task("multiplication", {"n_digits": 4, "m_digits": 4, "holdout_modulus": 4})   # 81M pairs
    pairs = _pairs(task, "test", n=3000, seed=2)
    assert len(set(pairs)) == 3000
    train = set(_pairs(task, "train", n=20_000, seed=2))
    assert not train & {(y, x) for x, y in pairs} and not train & set(pairs)
    with pytest.raises(ValueError, match="more than half of them"):
        task.generate("test", n=11_000_000)


def test_different_digit_counts_keep_the_swap_format_apart():
    """3x2 and its swap 2x3 are different examples (different formats); the split is over
    ordered pairs and still disjoint."""
    task = make_task("multiplication", {"n_digits": 3, "m_digits": 2, "holdout_modulus": 8})
    test = set(_pairs(task, "test", n=500))
    train = set(_pairs(task, "train", n=20_000))
    assert not test & train


def test_presets():
    paper = make_task("multiplication", preset="paper")
    assert (paper.config.n_digits, paper.config.m_digits) == (4, 4) and paper.seq_len == 17
    big = make_task("multiplication", preset="paper-5x5")
    assert (big.config.n_digits, big.config.m_digits) == (5, 5)
    assert paper.metric == "exact_match" and paper.chance < 1e-6 and paper.vocab_size == 12


def test_score_by_hand():
    task = make_task("multiplication", {"n_digits": 1, "m_digits": 2, "holdout_modulus": 3})
    # 7 * 12 = 84 -> digits LSD first [4, 8, 0]
    x = torch.tensor([[7, STAR, 2, 1, EQUALS, 4, 8]])
    y = torch.tensor([[IGNORE] * 4 + [4, 8, 0]])
    assert task.score(y, y, "test") == {
        "exact_match": 1.0, "digit_accuracy": 1.0,
        "digit_accuracy/pos=0": 1.0, "digit_accuracy/pos=1": 1.0, "digit_accuracy/pos=2": 1.0}
    preds = torch.tensor([[0, 0, 0, 0, 4, 9, 0]])             # the middle digit wrong
    s = task.score(preds, y, "test")
    assert s["exact_match"] == 0.0 and s["digit_accuracy"] == pytest.approx(2 / 3)
    assert s["digit_accuracy/pos=1"] == 0.0 and s["digit_accuracy/pos=2"] == 1.0
    from tasks.base import TaskData
    assert task.render(TaskData(x, y))[0].prompt == "7 * 12 =" and task.render(TaskData(x, y))[0].answer == "84"
    with pytest.raises(ValueError, match=r"\[n, 7\]"):
        task.score(preds[:, :5], y[:, :5], "test")


def _rows(*pairs):
    """Hand-made 1x2-digit rows: inputs and targets of ``a * b`` for each ``(a, b)``."""
    x, y = [], []
    for a, b in pairs:
        c = [a * b // 10**k % 10 for k in range(3)]
        x.append([a, STAR, b % 10, b // 10, EQUALS, c[0], c[1]])
        y.append([IGNORE] * 4 + c)
    return TaskData(torch.tensor(x, dtype=torch.long).reshape(-1, 7), torch.tensor(y, dtype=torch.long).reshape(-1, 7))


def test_exact_match_is_the_fraction_of_rows_with_every_digit_right():
    task = make_task("multiplication", {"n_digits": 1, "m_digits": 2, "holdout_modulus": 3})
    data = _rows((7, 12), (3, 45), (9, 99), (2, 10))              # 84, 135, 891, 20
    preds = data.targets.clone()
    preds[1, 5] = 0                                                # 135's middle digit wrong
    s = task.score(preds, data.targets, "test")
    assert s["exact_match"] == 0.75 and s["digit_accuracy"] == 11 / 12, s
    assert [s[f"digit_accuracy/pos={k}"] for k in range(3)] == [1.0, 0.75, 1.0]


def test_nothing_to_score_gives_nan_headline_metrics_only():
    task = make_task("multiplication", {"n_digits": 1, "m_digits": 2, "holdout_modulus": 3})
    empty = _rows()
    s = task.score(empty.targets, empty.targets, "test")
    assert set(s) == {"exact_match", "digit_accuracy"} and all(v != v for v in s.values()), s
    assert task.trivial_predictions(empty, "test") == {}, "no strategy on no data"


def test_digit_mode_is_the_most_frequent_digit_at_each_position():
    task = make_task("multiplication", {"n_digits": 1, "m_digits": 2, "holdout_modulus": 3})
    data = _rows((7, 12), (3, 45), (9, 99), (2, 10), (6, 14))     # 084, 135, 891, 020, 084
    # by position, least significant first: 4 5 1 0 4 -> 4; 8 3 9 2 8 -> 8; 0 1 8 0 0 -> 0
    (name, preds), = task.trivial_predictions(data, "test").items()
    assert name == "digit_mode"
    assert preds[:, 4:].tolist() == [[4, 8, 0]] * 5 and preds.shape == data.targets.shape
    one = _rows((3, 45))
    assert task.trivial_predictions(one, "test")["digit_mode"][0, 4:].tolist() == [5, 3, 1], "one row: its digits"


@pytest.mark.parametrize("params, constraint", [
    ({"n_digits": 10, "m_digits": 9}, r"n_digits \+ m_digits <= 18"),
    ({"n_digits": 1, "m_digits": 1, "holdout_modulus": 64}, r"pairs >= 10 \* holdout_modulus"),
    ({"holdout_modulus": 2}, "holdout_modulus"),
    ({"n_digits": 0}, "n_digits"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("multiplication", params)
