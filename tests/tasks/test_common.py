"""Properties every registered probe must have."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tasks
from tasks import IGNORE, TaskConfig, TaskConfigError, TextExample, get_task_class, make_task, task_names

from _task_util import REPO_ROOT, data_digest, row_hashes, wrong_preds

PROBES = ["flipflop", "induction", "modular_addition", "mqar", "multiplication", "needle", "state_tracking"]


def small_n(task, split: str) -> int | None:
    return min(16, task.split_size(split))


def test_every_probe_is_registered():
    assert set(PROBES) <= set(task_names())


@pytest.mark.parametrize("name", PROBES)
def test_class_contract(name):
    cls = get_task_class(name)
    assert issubclass(cls.Config, TaskConfig)
    assert cls.Config.model_config.get("extra") == "forbid"
    assert {"quick", "paper"} <= set(cls.presets)
    assert cls.description
    with pytest.raises(TaskConfigError, match="no_such_knob"):
        make_task(name, {"no_such_knob": 1})
    for preset in cls.presets:
        task = make_task(name, preset=preset)
        assert task.splits[0] == "train"
        assert task.val_split in task.splits and task.test_split in task.splits
        assert len(set(task.splits)) == len(task.splits)
        assert 0 < task.chance <= 0.5
        # the knob names a config field (or a property of it) holding the number plots put on an axis
        assert type(getattr(task.config, cls.knob)) in (int, float), (preset, cls.knob)


@pytest.mark.parametrize("name", PROBES)
def test_resolved_config_round_trips(name):
    for preset in get_task_class(name).presets:
        params = tasks.resolve_task_params(name, preset=preset)
        assert tasks.resolve_task_params(name, params) == params


@pytest.mark.parametrize("name", PROBES)
def test_splits_shapes_scoring_and_render(name):
    task = make_task(name, preset="quick")
    for split in task.splits:
        data = task.generate(split, n=small_n(task, split), seed=3)
        x, y = data.inputs, data.targets
        assert x.dtype == torch.int64 and y.dtype == torch.int64
        assert x.shape == y.shape and x.shape[0] == small_n(task, split)
        assert int(x.min()) >= 0 and int(x.max()) < task.vocab_size
        scored = y != IGNORE
        assert scored.any(dim=1).all(), "every example scores at least one position"
        assert int(y[scored].min()) >= 0 and int(y[scored].max()) < task.vocab_size
        # every metric is a share of right answers (1 when perfect, 0 when all wrong) except
        # error rates, which are the reverse
        perfect = task.score(y.clone(), y, split)
        wrong = task.score(wrong_preds(y, task.vocab_size), y, split)
        assert task.metric in perfect and set(wrong) == set(perfect)
        assert perfect == {k: 0.0 if k in ERROR_RATES else 1.0 for k in perfect}
        assert wrong == {k: 1.0 if k in ERROR_RATES else 0.0 for k in wrong}
        check_render(task, data)


ERROR_RATES = {"glitch_rate"}


def check_render(task, data):
    """One text example per example; the prompt comes from the inputs alone (it cannot leak
    the answer), and the answer is the right one: it follows the targets, or for arithmetic
    probes it is the arithmetic of the prompt's operands."""
    import re

    from tasks import TaskData

    rendered = task.render(data)
    assert len(rendered) == len(data) and all(type(r) is TextExample for r in rendered)
    y = data.targets
    other = task.render(TaskData(data.inputs, torch.where(y == IGNORE, y, wrong_preds(y, task.vocab_size))))
    assert [r.prompt for r in other] == [r.prompt for r in rendered]
    for r, o in zip(rendered, other):
        if m := re.fullmatch(r"(\d+) \* (\d+) =", r.prompt):
            assert r.answer == str(int(m[1]) * int(m[2]))
        elif m := re.fullmatch(r"(\d+) \+ (\d+) mod (\d+) =", r.prompt):
            assert r.answer == str((int(m[1]) + int(m[2])) % int(m[3]))
        else:
            assert r.prompt and r.answer and o.answer != r.answer, (task.name, r)


@pytest.mark.parametrize("name", PROBES)
def test_deterministic_and_seed_dependent(name):
    task = make_task(name, preset="quick")
    for split in task.splits:
        n = small_n(task, split)
        a = task.generate(split, n=n, seed=5)
        b = make_task(name, preset="quick").generate(split, n=n, seed=5)
        assert data_digest(a) == data_digest(b)
        c = task.generate(split, n=n, seed=6)
        assert data_digest(a) != data_digest(c)


_SUBPROCESS = """
import json, sys
from tasks import make_task
sys.path.insert(0, {util!r})
from _task_util import data_digest
out = {{}}
for name in {probes!r}:
    task = make_task(name, preset="quick")
    for split in task.splits:
        out[name + "/" + split] = data_digest(task.generate(split, n=min(16, task.split_size(split)), seed=11))
print(json.dumps(out))
"""


def test_same_tensors_in_another_process():
    code = _SUBPROCESS.format(util=str(REPO_ROOT / "tests" / "tasks"), probes=PROBES)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    for name in PROBES:
        task = make_task(name, preset="quick")
        for split in task.splits:
            ours = data_digest(task.generate(split, n=min(16, task.split_size(split)), seed=11))
            assert theirs[name + "/" + split] == ours, (name, split)


@pytest.mark.parametrize("name", PROBES)
@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_train_shares_no_example_with_eval_splits(name, preset):
    task = make_task(name, preset=preset)
    if name == "modular_addition":
        n_train, n_eval = None, None          # the whole (finite) splits
    elif preset == "quick":
        n_train, n_eval = 4_000, 500
    else:
        n_train, n_eval = 200, 50
    if name == "needle" and preset == "paper":
        n_train, n_eval = 40, 20              # 4096-token rows
    train = row_hashes(task.generate("train", n=n_train, seed=0))
    for split in task.eval_splits:
        assert not train & row_hashes(task.generate(split, n=n_eval, seed=0)), split
