"""The no-skill floor: every probe's trivial strategies, scored against its test split."""

from __future__ import annotations

import pytest
import torch

from tasks import IGNORE, Task, TaskData, make_task
from tasks.base import normalise
from tasks.mqar import query_position_table

from _task_util import row_hashes

# probe -> the strategies its quick preset declares, and those that must beat chance there
DECLARED = {
    "mqar": ({"context_value", "recent_value", "value_by_position"},
             {"context_value", "recent_value", "value_by_position"}),
    "flipflop": ({"last_bit", "majority_bit"}, {"last_bit"}),
    "needle": (set(), set()),
    "multiplication": ({"digit_mode"}, set()),
    "modular_addition": ({"answer_mode"}, set()),
    "state_tracking": ({"copy_input", "most_frequent_state"}, {"copy_input"}),
    "induction": ({"seen_once", "seen_before"}, {"seen_once", "seen_before"}),
}
N_TEST = {"modular_addition": None}          # its test split is the whole finite set


def quick_test(name: str, preset: str = "quick") -> tuple[Task, TaskData]:
    task = make_task(name, preset=preset)
    return task, task.generate(task.test_split, n=N_TEST.get(name, 256), seed=0)


@pytest.mark.parametrize("name, preset", [(n, "quick") for n in DECLARED] + [
    ("needle", "quick-multikey"), ("needle", "quick-multivalue"), ("state_tracking", "quick-a5"),
    ("mqar", "paper")])
def test_floor_is_the_strongest_strategy(name, preset):
    task, data = quick_test(name, preset)
    split = task.test_split
    preds = task.trivial_predictions(data, split)
    if preset == "quick":
        assert set(preds) == DECLARED[name][0]
    floor, best = task.floor(data, split)
    no_skill = task.no_skill(data, split)
    assert no_skill["chance"] == task.chance
    assert floor >= task.chance and floor == max(no_skill.values()) and no_skill[best] == floor
    assert floor < 1
    for s, p in preds.items():
        assert p.shape == data.targets.shape and p.dtype == torch.int64
        score = task.score(p, data.targets, split)[task.metric]
        assert score == no_skill[s]
        assert normalise(score, floor) <= 0
        if s == best:
            assert normalise(score, floor) == 0
    assert normalise(task.score(data.targets.clone(), data.targets, split)[task.metric], floor) == 1.0


@pytest.mark.parametrize("name", DECLARED)
def test_strategies_beat_chance_where_they_should(name):
    task, data = quick_test(name)
    no_skill = task.no_skill(data, task.test_split)
    for s in DECLARED[name][1]:
        assert no_skill[s] > task.chance, s


@pytest.mark.parametrize("name", DECLARED)
def test_strategies_are_deterministic_and_leave_the_global_rng_alone(name):
    task, data = quick_test(name)
    state = torch.get_rng_state()
    a = task.trivial_predictions(data, task.test_split)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG was drawn from"
    torch.manual_seed(12345)
    b = make_task(name, preset="quick").trivial_predictions(
        TaskData(data.inputs.clone(), data.targets.clone()), task.test_split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # different data, different guesses (for the randomised strategies)
    other = task.generate(task.test_split, n=N_TEST.get(name, 256), seed=1)
    c = task.trivial_predictions(other, task.test_split)
    for k in set(a) & {"context_value", "seen_once", "seen_before"}:
        assert not torch.equal(a[k], c[k])


def test_strategies_by_hand():
    # flip-flop: w0 i1 r? -> the last bit is 1 (wrong, the write was 0); w1 r? -> 1 (right)
    ff = make_task("flipflop", {"seq_len": 6})
    x = torch.tensor([[0, 3, 2, 4, 1, 3], [0, 4, 2, 4, 1, 4]])
    y = torch.full_like(x, IGNORE)
    y[:, 4] = x[:, 5]
    p = ff.trivial_predictions(TaskData(x, y), "val")
    assert p["last_bit"][:, 4].tolist() == [4, 4]
    assert ff.no_skill(TaskData(x, y), "val")["last_bit"] == 0.5
    # state tracking on Z60: copying the input is right at t = 1 and after a zero sum
    st = make_task("state_tracking", {"group": "Z60", "seq_len": 3})
    x = torch.tensor([[5, 55, 7]])
    y = torch.tensor([[5, 0, 7]])
    assert st.no_skill(TaskData(x, y), "test")["copy_input"] == pytest.approx(2 / 3)
    # induction: at the second "1", tokens 2 and 3 are seen once; at the second "2", only 3
    ind = make_task("induction", {"vocab_size": 8, "seq_len": 6, "segment_len": 3})
    x = torch.tensor([[1, 2, 3, 1, 2, 3]])
    y = torch.full_like(x, IGNORE)
    y[0, 3], y[0, 4] = 2, 3
    p = ind.trivial_predictions(TaskData(x, y), "test")
    assert p["seen_once"][0, 3] in (2, 3) and p["seen_once"][0, 4] == 3
    assert p["seen_before"][0, 4] in (1, 3)
    # mqar: value_by_position picks the pair most often queried right after the context
    mq = make_task("mqar", {"vocab_size": 64, "seq_len": 32, "num_pairs": 4})
    table = query_position_table(32, 4, 0.01)
    assert int(table[8].argmax()) == 0 and int(table.sum()) == 4 * 20_000
    data = mq.generate("test", n=64)
    vbp = mq.trivial_predictions(data, "test")["value_by_position"]
    assert torch.equal(vbp[:, 8], data.inputs[:, 1])


def test_base_class_declares_nothing():
    class Plain(Task):
        name = "plain"

        @property
        def vocab_size(self) -> int:
            return 4

    t = Plain(Plain.Config())
    data = TaskData(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[IGNORE, 1, 2], [IGNORE, 3, 0]]))
    assert t.trivial_predictions(data, "test") == {}
    assert t.no_skill(data, "test") == {"chance": 0.25}
    assert t.floor(data, "test") == (0.25, "chance")
    with pytest.raises(ValueError, match="nothing to normalise"):
        normalise(0.5, 1.0)


@pytest.mark.parametrize("name, preset", [(n, "quick") for n in DECLARED] + [
    ("needle", "quick-multikey"), ("state_tracking", "quick-a5"), ("state_tracking", "quick-z60")])
def test_quick_test_split_is_unique_and_unseen_in_train(name, preset):
    """The full quick test split: no repeated row, and no row of the full train split."""
    task = make_task(name, preset=preset)
    test = task.generate(task.test_split, seed=0)
    assert len(row_hashes(test)) == len(test)
    assert not row_hashes(task.generate("train", seed=0)) & row_hashes(test)
