from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, TaskData, make_task, resolve_task_params
from tasks.base import split_generator


@settings(max_examples=15, deadline=None)
@given(p=st.integers(3, 60), tf=st.floats(0.1, 0.8), vf=st.floats(0.05, 0.15), seed=st.integers(0, 2**31))
def test_train_val_test_partition_all_pairs(p, tf, vf, seed):
    try:
        task = make_task("modular_addition", {"p": p, "train_fraction": tf, "val_fraction": vf})
    except TaskConfigError:
        return                                   # a split would be empty at this tiny p
    seen = []
    for split in ("train", "val", "test"):
        d = task.generate(split, seed=seed)
        assert len(d) == task.split_size(split)
        a, b, eq = d.inputs.unbind(dim=1)
        assert (eq == p).all() and ((a >= 0) & (a < p) & (b >= 0) & (b < p)).all()
        assert (d.targets[:, :2] == IGNORE).all() and torch.equal(d.targets[:, 2], (a + b) % p)
        seen.append(a * p + b)
        # a + b = b + a: both orders of every pair are in the same split
        assert set(zip(a.tolist(), b.tolist())) == set(zip(b.tolist(), a.tolist())), split
    allp = torch.cat(seen)
    assert allp.numel() == p * p and torch.equal(allp.sort().values, torch.arange(p * p))
    assert len(seen[0]) == round(tf * p * p)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_no_val_or_test_pair_has_its_swap_in_train(preset):
    task = make_task("modular_addition", preset=preset)
    train = set(map(tuple, task.generate("train", seed=1).inputs[:, :2].tolist()))
    assert len(train) == task.config.n_train
    for split in ("val", "test"):
        pairs = set(map(tuple, task.generate(split, seed=1).inputs[:, :2].tolist()))
        assert len(pairs) == task.split_size(split)
        assert not train & pairs and not train & {(b, a) for a, b in pairs}, split
    d = task.diagonal_counts()
    assert sum(d) == task.config.p
    # the pairs a = a are spread in proportion to the split sizes (up to two per split)
    for di, size in zip(d, (task.config.n_train, task.config.n_val, task.config.n_test)):
        assert abs(di - size / task.config.p) <= 2


def test_derived_sizes_and_full_batch():
    task = make_task("modular_addition", preset="paper")
    c = task.config
    assert (c.p, c.train_fraction) == (113, 0.3)
    assert c.n_train == round(0.3 * 113**2) == 3831
    assert c.n_train + c.n_val + c.n_test == 113**2
    full = task.generate("train", seed=4)
    assert len(full) == 3831
    prefix = task.generate("train", n=100, seed=4)
    assert torch.equal(prefix.inputs, full.inputs[:100])
    assert torch.equal(task.generate("train", n=3831, seed=4).inputs, full.inputs), "n = the split's size: all of it"
    with pytest.raises(ValueError, match="has 3831 pairs"):
        task.generate("train", n=3832)
    # the permutation follows the seed; the same seed gives the same partition
    other = task.generate("train", seed=5)
    assert not torch.equal(other.inputs, full.inputs)
    assert make_task("modular_addition", preset="paper-97").config.p == 97
    # a resolved config (with its derived sizes) validates again unchanged
    params = resolve_task_params("modular_addition", {"p": 31}, preset="quick")
    assert params["n_train"] == round(0.5 * 31 * 31)
    assert resolve_task_params("modular_addition", params) == params


def _pair_sets(task, seed):
    return [set(map(tuple, task.generate(split, seed=seed).inputs[:, :2].tolist())) for split in ("train", "val", "test")]


def test_the_partition_follows_the_seed_and_no_seed_means_seed_0():
    task = make_task("modular_addition", preset="quick")
    assert _pair_sets(task, 1) != _pair_sets(task, 2), "another seed, another train/val/test partition"
    for split in ("train", "val", "test"):
        assert torch.equal(task.generate(split).inputs, task.generate(split, seed=0).inputs), split
        assert torch.equal(task.split_pairs(split), task.split_pairs(split, seed=0)), split


@pytest.mark.parametrize("p, tf, seed", [(7, 0.5, 0), (11, 0.3, 3)])
def test_the_partition_follows_the_documented_recipe(p, tf, seed):
    """Rebuilt from the module docstring and split_generator's (task, stream, seed) streams:
    the p pairs a = a are permuted, then the pairs a < b, both by the "partition" stream;
    each split takes the next diagonal_counts() of the former and the next (size - d) / 2
    of the latter, with their swaps; its rows (a = a, a < b, then the swaps) are shuffled
    by the "order/<split>" stream.  The same seed must give the same data in every version:
    stored results are keyed by the config and the seed."""
    task = make_task("modular_addition", {"p": p, "train_fraction": tf})
    g = split_generator("modular_addition", "partition", seed)
    diag = [(a, a) for a in torch.randperm(p, generator=g).tolist()]
    upper = [(a, b) for a in range(p) for b in range(a + 1, p)]
    upper = [upper[i] for i in torch.randperm(len(upper), generator=g).tolist()]
    for split, size, d in zip(("train", "val", "test"), (task.split_size(s) for s in ("train", "val", "test")),
                              task.diagonal_counts()):
        o = (size - d) // 2
        mine, diag = diag[:d], diag[d:]
        ours, upper = upper[:o], upper[o:]
        rows = mine + ours + [(b, a) for a, b in ours]
        order = torch.randperm(size, generator=split_generator("modular_addition", f"order/{split}", seed))
        want = [rows[i] for i in order.tolist()]
        assert task.generate(split, seed=seed).inputs[:, :2].tolist() == [list(r) for r in want], split
    assert not diag and not upper, "the splits use up every pair"


def test_answer_mode_is_the_most_frequent_answer():
    task = make_task("modular_addition", {"p": 7})
    a, b = torch.tensor([1, 2, 6, 0, 5]), torch.tensor([2, 1, 4, 4, 0])        # answers 3 3 3 4 5
    inputs = torch.stack((a, b, torch.full_like(a, 7)), dim=1)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, 2] = (a + b) % 7
    (name, preds), = task.trivial_predictions(TaskData(inputs, targets), "test").items()
    assert name == "answer_mode" and preds[:, 2].tolist() == [3] * 5
    one = task.trivial_predictions(TaskData(inputs[3:4], targets[3:4]), "test")
    assert one["answer_mode"][:, 2].tolist() == [4], "one row: its answer"
    assert task.trivial_predictions(TaskData(inputs[:0], targets[:0]), "test") == {}, "no strategy on no data"


def test_class_attributes_for_the_harness():
    task = make_task("modular_addition", preset="paper")
    assert task.eval_train is True
    t = task.paper_training
    assert (t["n_layers"], t["d_model"], t["n_heads"]) == (1, 128, 4)
    assert (t["lr"], t["weight_decay"], t["betas"], t["batch_size"]) == (1e-3, 1.0, (0.9, 0.98), "full")
    assert task.chance == pytest.approx(1 / 113) and task.vocab_size == 114


def test_curve_metrics():
    task = make_task("modular_addition", preset="quick")
    curve = [
        (0, "train", "accuracy", 0.1), (0, "test", "accuracy", 0.01),
        (100, "train", "accuracy", 1.0), (100, "test", "accuracy", 0.2),
        (200, "train", "loss", 0.0), (200, "test", "accuracy", 0.985),
        (400, "test", "accuracy", 0.995), (300, "test", "accuracy", 0.99),
        (300, "val", "accuracy", 1.0),
    ]
    assert task.curve_metrics(curve) == {"steps_to_fit": 100, "steps_to_grok": 300, "grok_delay": 200}
    never = [(0, "train", "accuracy", 0.99), (10, "test", "accuracy", 0.5)]
    assert task.curve_metrics(never) == {"steps_to_fit": None, "steps_to_grok": None, "grok_delay": None}
    fit_only = [(0, "train", "accuracy", 1.0), (10, "test", "accuracy", 0.5)]
    assert task.curve_metrics(fit_only) == {"steps_to_fit": 0, "steps_to_grok": None, "grok_delay": None}
    grok_only = [(0, "train", "accuracy", 0.9), (10, "test", "accuracy", 0.995)]
    assert task.curve_metrics(grok_only) == {"steps_to_fit": None, "steps_to_grok": 10, "grok_delay": None}


def test_score_by_hand():
    task = make_task("modular_addition", {"p": 7})
    targets = torch.tensor([[IGNORE, IGNORE, 3], [IGNORE, IGNORE, 5]])
    preds = torch.tensor([[0, 0, 3], [0, 0, 4]])
    assert task.score(preds, targets, "test") == {"accuracy": 0.5}
    assert task.render(task.generate("test", n=1))[0].prompt.endswith("mod 7 =")


@pytest.mark.parametrize("params, constraint", [
    ({"n_train": 5}, "derives n_train.*leave n_train unset"),
    ({"n_test": 5}, "derives n_test"),
    ({"train_fraction": 0.95}, r"train_fraction \+ val_fraction < 1"),
    ({"p": 2, "train_fraction": 0.1, "val_fraction": 0.1}, "each non-empty"),
    ({"train_fraction": 0.0}, "train_fraction"),
    ({"p": 1}, "p"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("modular_addition", params)
