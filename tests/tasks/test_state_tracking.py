from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import TaskConfigError, TaskData, make_task
from tasks.base import split_generator
from tasks.state_tracking import group_elements, multiplication_table, running_products

GROUPS = ["Z60", "S3", "A4", "S4", "A5", "S5"]


def slow_product(name: str, tokens: list[int]) -> list[int]:
    """Reference: compose the permutations as functions, the newest acting first."""
    elems = group_elements(name)
    out, acc = [], None
    for tok in tokens:
        e = elems[tok]
        if acc is None:
            acc = e
        elif name.startswith("Z"):
            acc = ((acc[0] + e[0]) % int(name[1:]),)
        else:
            acc = tuple(acc[e[i]] for i in range(len(e)))   # (acc . e)(i) = acc(e(i))
        out.append(elems.index(acc))
    return out


def test_group_orders_and_identity():
    sizes = {"Z60": 60, "S3": 6, "A4": 12, "S4": 24, "A5": 60, "S5": 120}
    for name, size in sizes.items():
        elems = group_elements(name)
        assert len(elems) == size == len(set(elems))
        table = multiplication_table(name)
        assert table.shape == (size, size)
        assert torch.equal(table[0], torch.arange(size)) and torch.equal(table[:, 0], torch.arange(size))
        # a Latin square: every row and column is a permutation (group axiom check)
        assert (table.sort(dim=1).values == torch.arange(size)).all()
        assert (table.sort(dim=0).values == torch.arange(size).view(-1, 1)).all()
    a5 = group_elements("A5")
    assert all(sum(p[i] > p[j] for i, j in itertools.combinations(range(5), 2)) % 2 == 0 for p in a5)


def test_a5_is_not_abelian_and_order_is_documented():
    table = multiplication_table("A5")
    assert not torch.equal(table, table.t())
    elems = group_elements("A5")
    s, t = elems.index((1, 2, 0, 3, 4)), elems.index((0, 2, 3, 1, 4))
    # (s t)(i) = s(t(i)): t first
    assert elems[int(table[s, t])] == tuple((1, 2, 0, 3, 4)[i] for i in (0, 2, 3, 1, 4))


def test_associativity_of_the_table():
    for name in ("S4", "A5"):
        tb = multiplication_table(name)
        G = tb.shape[0]
        a, b, c = torch.randint(0, G, (3, 5000), generator=torch.Generator().manual_seed(0))
        assert torch.equal(tb[tb[a, b], c], tb[a, tb[b, c]])


@settings(max_examples=20, deadline=None)
@given(group=st.sampled_from(GROUPS), T=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_targets_are_running_products(group, T, seed):
    task = make_task("state_tracking", {"group": group, "seq_len": T})
    data = task.generate("train", n=6, seed=seed)
    assert data.inputs.shape == (6, T)
    for x, y in zip(data.inputs.tolist(), data.targets.tolist()):
        assert y == slow_product(group, x)


def test_running_products_match_the_slow_reference_on_long_sequences():
    x = torch.randint(0, 120, (3, 200), generator=torch.Generator().manual_seed(1))
    y = running_products(x, multiplication_table("S5"))
    for xr, yr in zip(x.tolist(), y.tolist()):
        assert yr == slow_product("S5", xr)


def test_splits_and_lengths():
    task = make_task("state_tracking", preset="quick")
    assert task.splits == ("train", "val", "test", "ood_len")
    assert task.generate("test", n=4).inputs.shape == (4, 16) and task.config.group == "S3"
    assert task.generate("ood_len", n=4).inputs.shape == (4, 32)
    assert task.chance == pytest.approx(1 / 6) and task.vocab_size == 6
    assert make_task("state_tracking", {"group": "S5"}).chance == pytest.approx(1 / 120)
    p = make_task("state_tracking", preset="paper").config
    assert (p.group, p.seq_len, p.ood_seq_len) == ("A5", 64, 128)


def test_score_by_hand():
    task = make_task("state_tracking", {"group": "A5", "seq_len": 8, "ood_seq_len": 16})
    data = task.generate("ood_len", n=10, seed=0)
    preds = data.targets.clone()
    preds[:5, 9:] = (preds[:5, 9:] + 1) % 60     # half the rows wrong from length 10 on
    s = task.score(preds, data.targets, "ood_len")
    assert s["last_accuracy"] == 0.5
    assert s["accuracy/len=8"] == 1.0 and s["accuracy/len=10"] == 0.5 and s["accuracy/len=16"] == 0.5
    assert set(k for k in s if k.startswith("accuracy/len=")) == {f"accuracy/len={L}" for L in range(2, 17, 2)}
    assert s["accuracy"] == pytest.approx(1 - 5 * 7 / 160)
    assert task.render(data)[0].answer == "".join(map(str, group_elements("A5")[int(data.targets[0, -1])]))


@pytest.mark.parametrize("params, constraint", [
    ({"group": "A6"}, "group"),
    ({"seq_len": 32, "ood_seq_len": 32}, "ood_seq_len > seq_len"),
    ({"seq_len": 0}, "seq_len"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("state_tracking", params)


# S3 in token order: 0 012, 1 021, 2 102, 3 120, 4 201, 5 210 (one-line notation)
@pytest.mark.parametrize("group, x, y, prompt, answer", [
    ("Z60", [5, 55, 7], [5, 0, 7], "Product (sum mod 60) of: 5 55 7 =", "7"),
    # 021 then 120, the rightmost acting first: i -> 021[120[i]] gives 210
    ("S3", [1, 3], [1, 5], "Product (composition of permutations in one-line notation, "
                           "the rightmost acting first) of: 021 120 =", "210"),
])
def test_render_by_hand(group, x, y, prompt, answer):
    task = make_task("state_tracking", {"group": group, "seq_len": len(x)})
    x, y = torch.tensor([x]), torch.tensor([y])
    assert torch.equal(running_products(x, multiplication_table(group)), y)
    [ex] = task.render(TaskData(x, y))
    assert (ex.prompt, ex.answer) == (prompt, answer)


def test_score_reports_every_length_and_the_last_position():
    # seq_len 4: lengths are reported in steps of 4 // 4 = 1
    task = make_task("state_tracking", {"group": "S3", "seq_len": 4})
    y = task.generate("test", n=4, seed=0).targets
    preds = y.clone()
    preds[:, -1] = (y[:, -1] + 1) % 6       # every row wrong at the last position
    preds[:2, 0] = (y[:2, 0] + 1) % 6       # half the rows wrong at the first
    s = task.score(preds, y, "test")
    assert s == {"accuracy": 1 - 6 / 16, "last_accuracy": 0.0, "accuracy/len=1": 0.5,
                 "accuracy/len=2": 1.0, "accuracy/len=3": 1.0, "accuracy/len=4": 0.0}, s


def test_score_of_length_one_and_of_empty_splits():
    task = make_task("state_tracking", {"group": "S3", "seq_len": 1})
    y = task.generate("test", n=3, seed=0).targets
    assert task.score(y.clone(), y, "test") == {"accuracy": 1.0, "last_accuracy": 1.0, "accuracy/len=1": 1.0}
    for shape in [(0, 1), (0, 4), (3, 0)]:
        empty = torch.zeros(shape, dtype=torch.long)
        s = task.score(empty, empty, "test")
        assert set(s) == {"accuracy", "last_accuracy"} and all(math.isnan(v) for v in s.values()), (shape, s)


def test_strategies_on_a_single_position():
    task = make_task("state_tracking", {"group": "S3", "seq_len": 1})
    data = TaskData(torch.tensor([[4]]), torch.tensor([[4]]))
    assert task.no_skill(data, "test") == {"chance": 1 / 6, "copy_input": 1.0, "most_frequent_state": 1.0}


def test_inputs_are_uniform_draws_from_the_splits_own_stream():
    """Each split's elements are i.i.d. uniform over the whole group, drawn from the stream
    seeded by (task, split, seed), with seed 0 by default: the same data in every version."""
    task = make_task("state_tracking", {"group": "S3", "seq_len": 4, "n_train": 7, "n_val": 5, "n_test": 3})
    for split, n in [("train", 7), ("val", 5), ("test", 3), ("ood_len", 3)]:
        data = task.generate(split)
        T = task.split_len(split)
        expected = torch.randint(0, 6, (n, T), generator=split_generator("state_tracking", split, 0))
        assert torch.equal(data.inputs, expected), split
        assert torch.equal(data.targets, running_products(expected, multiplication_table("S3"))), split
    x = task.generate("train", n=3000, seed=1).inputs
    counts = torch.bincount(x.flatten(), minlength=6).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.1, counts    # the identity (token 0) too
