from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, TaskData, make_task
from tasks.base import split_generator, strategy_generator
from tasks.needle import NEEDLE, PAD, QUERY, generate_needle
from tasks.sampling import uniform_pick

from _task_util import data_digest, row_hashes

BASE = dict(train_len=48, min_len=24, key_vocab=16, value_vocab=16, filler_vocab=32)


def parse_row(task, x: list[int], y: list[int]):
    """Decode one row by hand: its length, needles (start, key, values), query, filler."""
    c = task.config
    length = len(x)
    while length and x[length - 1] == PAD:
        length -= 1
    q = c.query_tokens
    H = length - q
    assert x[H] == QUERY
    qkey, qvals = x[H + 1], x[H + 2 : length]
    needles, filler_before, fill = [], {}, 0
    t = 0
    while t < H:
        if x[t] == NEEDLE:
            needles.append((t, x[t + 1], x[t + 2 : t + c.needle_tokens]))
            filler_before[x[t + 1]] = fill
            t += c.needle_tokens
        else:
            fill += 1
            t += 1
    return length, H, needles, qkey, qvals, filler_before, fill


def check_rows(task, data, lengths=None, depths=None):
    c = task.config
    key_lo = 3
    val_lo = key_lo + c.key_vocab
    fill_lo = val_lo + c.value_vocab
    for i, (x, y) in enumerate(zip(data.inputs.tolist(), data.targets.tolist())):
        length, H, needles, qkey, qvals, filler_before, F = parse_row(task, x, y)
        assert len(needles) == c.num_keys
        keys = [k for _, k, _ in needles]
        assert len(set(keys)) == c.num_keys and all(key_lo <= k < val_lo for k in keys)
        assert qkey in keys
        vals = {k: v for _, k, v in needles}
        assert qvals == vals[qkey], "the answer is the queried key's values, in order"
        assert all(val_lo <= v < fill_lo for v in qvals)
        filler = [t for t in x[:H] if t not in (NEEDLE,)]
        assert F == H - c.num_keys * c.needle_tokens
        # targets: the values, at the query key and at every answer token but the last
        scored = [t for t, v in enumerate(y) if v != IGNORE]
        assert scored == list(range(H + 1, H + 1 + c.num_values))
        assert [y[t] for t in scored] == qvals
        assert all(v == PAD for v in x[length:])
        assert len(filler) >= F
        if lengths is not None:
            assert length == lengths[i]
        if depths is not None:
            assert filler_before[qkey] == int(depths[i] * F + 0.5)


@settings(max_examples=25, deadline=None)
@given(num_keys=st.integers(1, 4), num_values=st.integers(1, 4), seed=st.integers(0, 2**31),
       depth=st.floats(0, 1), length=st.integers(0, 40))
def test_target_is_the_queried_value_at_the_requested_depth(num_keys, num_values, seed, depth, length):
    task = make_task("needle", dict(BASE, num_keys=num_keys, num_values=num_values, min_len=None,
                                    train_len=80))
    shortest = task.config.shortest_len
    L = shortest + length
    n = 8
    g = torch.Generator().manual_seed(seed)
    lengths = torch.full((n,), L)
    depths = torch.full((n,), depth, dtype=torch.float64)
    data = generate_needle(g, lengths, depths, L + 3, task.config)
    check_rows(task, data, lengths.tolist(), depths.tolist())


def test_depth_zero_and_one_put_the_needle_first_and_last():
    task = make_task("needle", dict(BASE, grid_lengths=(24, 48), grid_depths=(0.0, 1.0)))
    data = task.generate("grid", n=40, seed=2)
    for i, x in enumerate(data.inputs.tolist()):
        L, d = task.grid_cells[i % 4]
        H = L - task.config.query_tokens
        if d == 0.0:
            assert x[0] == NEEDLE
        else:
            assert x[H - task.config.needle_tokens] == NEEDLE


def test_train_lengths_and_depths_vary():
    task = make_task("needle", BASE)
    data = task.generate("train", n=400, seed=0)
    check_rows(task, data)
    lengths = 48 - (data.inputs == PAD).sum(dim=1)
    assert int(lengths.min()) == 24 and int(lengths.max()) == 48
    starts = (data.inputs == NEEDLE).float().argmax(dim=1)
    assert int(starts.min()) == 0 and int(starts.max()) > 30


def test_keys_cover_the_key_vocab_and_distractors_sit_uniformly():
    task = make_task("needle", dict(BASE, num_keys=3))
    data = task.generate("train", n=400, seed=0)
    keys, fractions = set(), []
    for x, y in zip(data.inputs.tolist(), data.targets.tolist()):
        _, _, needles, qkey, _, filler_before, F = parse_row(task, x, y)
        keys |= {k for _, k, _ in needles}
        fractions += [filler_before[k] / F for _, k, _ in needles if k != qkey]
    assert keys == set(range(3, 3 + 16)), "every key token is used"
    mean = sum(fractions) / len(fractions)
    assert abs(mean - 0.5) < 0.05 and min(fractions) == 0 and max(fractions) == 1, \
        f"distractor depths are uniform over the haystack (mean {mean:.3f})"


def test_generation_ignores_the_global_rng():
    task = make_task("needle", dict(BASE, num_keys=4, min_len=24, train_len=24, grid_lengths=(24,)))  # ties
    torch.manual_seed(0)
    a = task.generate("test", n=64, seed=1)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    b = task.generate("test", n=64, seed=1)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG was drawn from"
    assert data_digest(a) == data_digest(b), "the data depends on the global RNG"


def test_grid_covers_lengths_up_to_4L_and_every_depth():
    task = make_task("needle", BASE)
    c = task.config
    assert c.grid_lengths == (24, 48, 96, 144, 192)
    assert len(c.grid_depths) == 11 and c.grid_depths[0] == 0.0 and c.grid_depths[-1] == 1.0
    cells = task.grid_cells
    data = task.generate("grid", n=3 * len(cells), seed=1)
    assert data.inputs.shape == (3 * len(cells), 192)
    lengths = [cells[i % len(cells)][0] for i in range(len(data))]
    depths = [cells[i % len(cells)][1] for i in range(len(data))]
    check_rows(task, data, lengths, depths)


def test_generate_sizes_seeds_and_streams():
    """Without n a split has its configured size (grid: n_test); the seed defaults to 0; each
    split is its own stream, split_generator("needle", split, seed)."""
    task = make_task("needle", dict(BASE, grid_lengths=(24, 48), grid_depths=(0.0, 1.0),
                                    n_train=7, n_val=5, n_test=6))
    for split, n in (("train", 7), ("val", 5), ("test", 6), ("grid", 6)):
        data = task.generate(split)
        assert len(data) == n, f"{split}: its configured size"
        assert data_digest(data) == data_digest(task.generate(split, n=n, seed=0)), f"{split}: seed 0 by default"
    cells = [task.grid_cells[i % 4] for i in range(6)]
    expected = generate_needle(split_generator("needle", "grid", 0), torch.tensor([L for L, _ in cells]),
                               torch.tensor([d for _, d in cells], dtype=torch.float64), 48, task.config)
    assert data_digest(task.generate("grid")) == data_digest(expected), "the grid split's own stream"
    same_n = [row_hashes(task.generate(split, n=5, seed=3)) for split in ("train", "val", "test")]
    assert not (same_n[0] & same_n[1] or same_n[0] & same_n[2] or same_n[1] & same_n[2]), \
        "splits share no rows even at equal n and seed"


def test_grid_scores_per_cell():
    task = make_task("needle", dict(BASE, grid_lengths=(24, 96), grid_depths=(0.0, 0.5)))
    data = task.generate("grid", n=8, seed=0)
    preds = data.targets.clone()
    preds[1] = 0                       # row 1 is cell (24, 0.50): wrong
    s = task.score(preds, data.targets, "grid")
    assert s["accuracy"] == pytest.approx(7 / 8)
    assert s["accuracy/len=24/depth=0.50"] == pytest.approx(0.5)
    assert s["accuracy/len=24/depth=0.00"] == 1.0
    assert s["accuracy/len=96/depth=0.50"] == 1.0
    assert s["accuracy/len=24"] == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match=r"needle grid predictions must keep the row order generate\('grid'\) "
                                         r"produced \(row i is cell i mod #cells\)"):
        task.score(preds.flip(0), data.targets.flip(0), "grid")
    assert set(task.score(preds, data.targets, "test")) == {"accuracy"}


def test_multivalue_scores_every_value():
    task = make_task("needle", preset="quick-multivalue")
    data = task.generate("test", n=4, seed=0)
    assert ((data.targets != IGNORE).sum(dim=1) == 4).all()
    preds = data.targets.clone()
    first = (data.targets != IGNORE).float().argmax(dim=1)
    preds[torch.arange(4), first] = 0
    assert task.score(preds, data.targets, "test")["accuracy"] == pytest.approx(0.75)
    assert task.chance == pytest.approx(1 / 32)
    ex = task.render(data)[0]
    assert ex.prompt.endswith(task.token_text(data.inputs[0, first[0]].item())) and len(ex.answer.split()) == 4


def test_nothing_scored_scores_nan():
    task = make_task("needle", dict(BASE, num_keys=2))
    data = task.generate("test", n=3, seed=0)
    none = torch.full_like(data.targets, IGNORE)
    assert math.isnan(task.score(data.targets, none, "test")["accuracy"]), "0 of 0 scored is NaN, not an error"
    assert task.no_skill(TaskData(data.inputs, none), "test") == {"chance": 1 / 16}


@pytest.mark.parametrize("num_keys, num_values", [(1, 1), (3, 1), (1, 3), (2, 2)])
def test_context_value_guesses_uniformly_among_the_values_in_the_row(num_keys, num_values):
    """Declared only when a row holds more than one value; each guess is drawn, with the
    strategy's own generator, uniformly from the distinct value tokens of the row."""
    task = make_task("needle", dict(BASE, num_keys=num_keys, num_values=num_values, value_vocab=4))
    c = task.config
    data = task.generate("test", n=48, seed=0)
    preds = task.trivial_predictions(data, "test")
    if num_keys * num_values == 1:
        assert preds == {}, "one needle of one value: its value is the answer, no no-skill rule"
        return
    assert set(preds) == {"context_value"}
    val_lo = 3 + c.key_vocab
    mask = data.targets != IGNORE
    allowed = torch.zeros(int(mask.sum()), c.value_vocab, dtype=torch.bool)
    for k, (i, t) in enumerate(mask.nonzero().tolist()):
        for tok in set(data.inputs[i].tolist()):
            if val_lo <= tok < val_lo + c.value_vocab:
                allowed[k, tok - val_lo] = True
    expected = uniform_pick(strategy_generator("needle", data, "context_value"), allowed) + val_lo
    assert torch.equal(preds["context_value"][mask], expected), "a uniform pick among the row's values"


def test_token_text_and_render_by_hand():
    task = make_task("needle", dict(train_len=10, min_len=9, num_values=2, key_vocab=2, value_vocab=3,
                                    filler_vocab=2, grid_lengths=(9, 10)))
    # 0 PAD, 1 NEEDLE, 2 QUERY, keys 3-4, values 5-7, filler 8-9
    assert [task.token_text(t) for t in range(10)] == [
        "", "| needle:", "| query:", "k0", "k1", "v0", "v1", "v2", "w0", "w1"]
    x = torch.tensor([[8, NEEDLE, 4, 7, 5, 9, QUERY, 4, 7, 5],
                      [NEEDLE, 3, 6, 6, 8, QUERY, 3, 6, 6, PAD]])
    y = torch.full_like(x, IGNORE)
    y[0, 7:9] = torch.tensor([7, 5])
    y[1, 6:8] = torch.tensor([6, 6])
    out = [(e.prompt, e.answer) for e in task.render(TaskData(x, y))]
    assert out == [("w0 | needle: k1 v2 v0 w1 | query: k1", "v2 v0"),
                   ("| needle: k0 v1 v1 w0 | query: k0", "v1 v1")]


@pytest.mark.parametrize("params, constraint", [
    (dict(num_keys=20, key_vocab=16), "num_keys <= key_vocab"),
    (dict(min_len=60), "min_len <= train_len"),
    (dict(min_len=6, num_keys=2), r"every length >= query \+ num_keys \* needle \+ 1 filler = 10"),
    (dict(grid_lengths=(5, 48)), "every grid length >= 7"),
    (dict(grid_lengths=(48, 24)), "strictly increasing"),
    (dict(grid_depths=(0.0, 1.5)), r"grid_depths in \[0, 1\]"),
    (dict(grid_depths=()), "at least one grid length and one grid depth"),
    (dict(value_vocab=1), "value_vocab"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("needle", dict(BASE, **params))


def test_paper_preset_grid():
    task = make_task("needle", preset="paper")
    c = task.config
    assert c.train_len == 1024 and c.grid_lengths == (512, 1024, 2048, 3072, 4096)
    assert len(task.grid_cells) == 55
    data = task.generate("grid", n=55, seed=0)
    assert data.inputs.shape == (55, 4096)
    check_rows(task, data, [L for L, _ in task.grid_cells], [d for _, d in task.grid_cells])
