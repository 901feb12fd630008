"""The shared Task machinery: accuracy over scored positions, the no-skill floor, and the
generators that make splits and trivial strategies reproducible."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from tasks import IGNORE, Task, TaskConfig, TaskData
from tasks.base import LengthOODConfig, LengthOODSplits, masked_accuracy, split_generator, strategy_generator


class Probe(Task):
    """A 4-token task (chance 1/4) whose trivial strategies are given per test; it records
    the split its strategies and scorer are called with."""

    name = "probe"

    def __init__(self, strategies: dict[str, torch.Tensor], config: TaskConfig | None = None) -> None:
        super().__init__(config or Task.Config())
        self.strategies = strategies
        self.calls: list[tuple[str, str]] = []

    @property
    def vocab_size(self) -> int:
        return 4

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        self.calls.append(("trivial_predictions", split))
        return self.strategies

    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        self.calls.append(("score", split))
        return super().score(preds, targets, split)


# two rows, four scored positions
TARGETS = torch.tensor([[IGNORE, 1, 2], [3, IGNORE, 0]])
DATA = TaskData(torch.zeros(2, 3, dtype=torch.long), TARGETS)


def test_masked_accuracy_counts_only_scored_positions():
    preds = torch.tensor([[1, 1, 0], [3, 1, 0]])     # 3 of the 4 scored positions right
    assert masked_accuracy(preds, TARGETS) == 0.75, "unscored positions must not count"
    nothing = torch.full_like(TARGETS, IGNORE)
    assert math.isnan(masked_accuracy(preds, nothing)), "nothing scored: NaN, not 0 or 1"


def test_no_skill_and_floor_score_on_the_split_they_are_given():
    task = Probe({"ones": torch.ones(2, 3, dtype=torch.long)})
    assert task.no_skill(DATA, "ood_len") == {"chance": 0.25, "ones": 0.25}
    task.floor(DATA, "ood_len")
    expected = [("trivial_predictions", "ood_len"), ("score", "ood_len")] * 2
    assert task.calls == expected, "strategies and scorer must see the split being scored"


def test_no_skill_rejects_misshapen_predictions():
    task = Probe({"short": torch.zeros(2, 2, dtype=torch.long)})
    with pytest.raises(ValueError) as err:
        task.no_skill(DATA, "test")
    assert str(err.value) == "probe: strategy 'short' predicted (2, 2), targets are (2, 3)", str(err.value)


@pytest.mark.parametrize("preds, floor", [
    (torch.tensor([[0, 1, 0], [0, 0, 1]]), (0.25, "chance")),        # 1 of 4 right: ties chance
    (torch.tensor([[0, 1, 2], [0, 0, 1]]), (0.5, "guess")),          # 2 of 4 right: beats it
    (torch.tensor([[0, 0, 0], [1, 1, 1]]), (0.25, "chance")),        # none right: below it
])
def test_floor_is_the_strongest_entry_and_chance_on_ties(preds, floor):
    assert Probe({"guess": preds}).floor(DATA, "test") == floor


def test_floor_skips_strategies_with_nothing_scored():
    unscored = TaskData(DATA.inputs, torch.full_like(TARGETS, IGNORE))
    task = Probe({"guess": torch.zeros(2, 3, dtype=torch.long)})
    assert math.isnan(task.no_skill(unscored, "test")["guess"])
    assert task.floor(unscored, "test") == (0.25, "chance")


def seed_of(text: bytes) -> int:
    """The documented seeding: the first 8 bytes of a SHA-256 digest, little-endian, shifted
    to a non-negative 63-bit seed (changing it would silently change every split)."""
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def test_split_generator_is_seeded_by_task_split_and_seed():
    for task, split, seed in [("mqar", "train", 0), ("state_tracking", "ood_len", 12345)]:
        g = split_generator(task, split, seed)
        assert g.initial_seed() == seed_of(f"{task}/{split}/{seed}".encode()), (task, split, seed)


def test_strategy_generator_is_seeded_by_task_strategy_and_data():
    x = torch.arange(6).view(2, 3)
    y = torch.tensor([[IGNORE, 1, 2], [IGNORE, 4, 5]])
    data = TaskData(x, y)
    text = b"mqar/context_value/" + b"(2, 3)" + x.numpy().tobytes() + b"(2, 3)" + y.numpy().tobytes()
    assert strategy_generator("mqar", data, "context_value").initial_seed() == seed_of(text)
    # the same bytes in another shape are other data
    reshaped = TaskData(x.reshape(3, 2), y.reshape(3, 2))
    assert (strategy_generator("mqar", reshaped, "context_value").initial_seed()
            != strategy_generator("mqar", data, "context_value").initial_seed()), "the shape must count"


@pytest.mark.parametrize("inputs, targets, shapes", [
    (torch.zeros(2, 3), torch.zeros(2, 2), "(2, 3) and (2, 2)"),
    (torch.zeros(3), torch.zeros(3), "(3,) and (3,)"),
    (torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), "(1, 2, 3) and (1, 2, 3)"),
])
def test_task_data_must_be_two_matching_n_by_t_tensors(inputs, targets, shapes):
    with pytest.raises(ValueError) as err:
        TaskData(inputs.long(), targets.long())
    assert str(err.value) == f"inputs and targets must both be [n, T]; got {shapes}", str(err.value)
    assert len(TaskData(torch.zeros(5, 1, dtype=torch.long), torch.zeros(5, 1, dtype=torch.long))) == 5


def test_task_refuses_another_tasks_config():
    from tasks.state_tracking import StateTracking

    with pytest.raises(TypeError) as err:
        StateTracking(Task.Config())
    assert str(err.value) == "state_tracking needs a StateTrackingConfig, got TaskConfig", str(err.value)


def test_split_sizes_and_unknown_splits():
    task = Probe({}, TaskConfig(n_train=7, n_val=5, n_test=3))
    assert [task.split_size(s) for s in ("train", "val", "test", "ood_len")] == [7, 5, 3, 3]
    task.check_split("val")                                # a known split passes
    with pytest.raises(ValueError) as err:
        task.check_split("ood_len")
    assert str(err.value) == "probe has no split 'ood_len'; its splits are train, val, test", str(err.value)


def test_length_ood_splits():
    class Lengths(LengthOODSplits, Task):
        name = "lengths"
        Config = LengthOODConfig

    task = Lengths(LengthOODConfig(seq_len=5))
    assert task.splits == ("train", "val", "test", "ood_len")
    assert [task.split_len(s) for s in task.splits] == [5, 5, 5, 10], "ood_len defaults to twice seq_len"
    assert Lengths(LengthOODConfig(seq_len=5, ood_seq_len=7)).split_len("ood_len") == 7
