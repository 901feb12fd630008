from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import IGNORE, TaskConfigError, TaskData, make_task
from tasks.base import split_generator, strategy_generator
from tasks.files import TaskFileError, save_tensor_file
from tasks.mqar import generate_mqar

from _task_util import data_digest


def check_mqar(data, V: int, N: int) -> None:
    x, y = data.inputs, data.targets
    half = V // 2
    ctx = 2 * N
    keys, values = x[:, 0:ctx:2], x[:, 1:ctx:2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < V)).all()
    for row_x, row_y, k, v in zip(x.tolist(), y.tolist(), keys.tolist(), values.tolist()):
        assert len(set(k)) == N and len(set(v)) == N
        kv = dict(zip(k, v))
        assert all(t == IGNORE for t in row_y[:ctx])
        scored = [t for t, tgt in enumerate(row_y) if tgt != IGNORE]
        assert len(scored) == N
        queried = [row_x[t] for t in scored]
        assert sorted(queried) == sorted(k), "every key is queried exactly once"
        for t in scored:
            assert (t - ctx) % 2 == 0
            assert row_y[t] == kv[row_x[t]]
            # the query key occurs once in the context (and nowhere else as a key-value)
            assert row_x[:ctx:2].count(row_x[t]) == 1


@settings(max_examples=30, deadline=None)
@given(V=st.sampled_from([64, 256, 8192]), N=st.integers(1, 12), extra=st.integers(0, 40),
       seed=st.integers(0, 2**31), noise=st.booleans())
def test_every_query_targets_its_value(V, N, extra, seed, noise):
    T = min(4 * N + extra, V - 1)
    if 4 * N > T or N > V // 2 - 1:
        return
    data = generate_mqar(torch.Generator().manual_seed(seed), 12, V, T, N, random_non_queries=noise)
    assert data.inputs.shape == (12, T)
    check_mqar(data, V, N)
    if not noise:
        unwritten = data.targets[:, 2 * N:] == IGNORE
        assert (data.inputs[:, 2 * N:][unwritten] == 0).all()


def test_keys_values_and_filler_cover_their_ranges():
    """Keys come from all of [1, V/2), values from all of [V/2, V), filler from the whole vocabulary."""
    V, T, N = 16, 8, 2           # context 0..3, queries at 4 and 6, filler at 5 and 7
    data = generate_mqar(torch.Generator().manual_seed(0), 2000, V, T, N)
    x = data.inputs
    assert set(x[:, 0:4:2].unique().tolist()) == set(range(1, 8)), "keys"
    assert set(x[:, 1:4:2].unique().tolist()) == set(range(8, 16)), "values"
    assert set(x[:, 5::2].unique().tolist()) == set(range(16)), "filler"


@pytest.mark.parametrize("T", [8, 9])
def test_queries_sit_at_the_even_offsets_after_the_context(T):
    """2 pairs: context 0..3, (T - 4) // 2 = 2 query slots at 4 and 6, none at the odd tail."""
    data = generate_mqar(torch.Generator().manual_seed(0), 500, 64, T, 2)
    scored = (data.targets != IGNORE).nonzero()[:, 1].view(500, 2)
    assert (scored == torch.tensor([4, 6])).all(), scored.unique().tolist()


def test_defaults_are_zoologys():
    """Without the last two arguments: a = 0.01 and random filler."""
    a = generate_mqar(torch.Generator().manual_seed(3), 64, 256, 64, 4)
    b = generate_mqar(torch.Generator().manual_seed(3), 64, 256, 64, 4, 0.01, True)
    assert data_digest(a) == data_digest(b)


def test_query_gaps_follow_the_power_law():
    """The first query's gap is distributed as p(i) ~ i^(a-1) over the (T - 2N)/2 slots."""
    V, T, N, a = 8192, 64, 1, 0.01
    data = generate_mqar(torch.Generator().manual_seed(0), 20_000, V, T, N, a)
    pos = (data.targets != IGNORE).float().argmax(dim=1)
    gaps = (pos - 2 * N) // 2
    space = (T - 2 * N) // 2
    p = torch.tensor([i ** (a - 1) for i in range(1, space + 1)])
    p /= p.sum()
    freq = torch.bincount(gaps, minlength=space).double() / len(gaps)
    assert freq.shape[0] == space
    assert torch.allclose(freq, p.double(), atol=0.01)


def test_gaps_are_sequential_draws_without_replacement():
    """With N = 2 the second query is drawn from what is left: P(g2 | g1) = p(g2)/(1 - p(g1))."""
    V, T, N, a = 256, 16, 2, 0.5
    data = generate_mqar(torch.Generator().manual_seed(1), 40_000, V, T, N, a)
    keys = data.inputs[:, 0:4:2]
    space = (T - 4) // 2
    w = torch.tensor([a * i ** (a - 1) for i in range(1, space + 1)], dtype=torch.float64)
    p = w / w.sum()
    # the draw order is the order of the keys in the context: key j is the j-th drawn
    qpos = torch.stack([(data.inputs[:, 4:] == keys[:, j : j + 1]).float().argmax(dim=1) for j in range(2)], 1)
    g1, g2 = qpos[:, 0] // 2, qpos[:, 1] // 2
    joint = torch.zeros(space, space, dtype=torch.float64)
    joint.index_put_((g1, g2), torch.ones(len(g1), dtype=torch.float64), accumulate=True)
    joint /= joint.sum()
    expect = p[:, None] * p[None, :] / (1 - p[:, None])
    expect.fill_diagonal_(0)
    assert torch.allclose(joint, expect, atol=0.01)


@pytest.mark.parametrize("params", [{}, {"random_non_queries": False, "power_a": 0.5}])
def test_each_split_is_drawn_from_its_own_stream(params):
    """Split s at seed k is generate_mqar at that split's (seq_len, num_pairs) and the config's
    gap law and filler, drawn from split_generator("mqar", s, k); n defaults to the split's
    size, seed to 0."""
    task = make_task("mqar", {"vocab_size": 64, "seq_len": 16, "num_pairs": 2,
                              "n_train": 5, "n_val": 3, "n_test": 4, **params})
    a, noise = params.get("power_a", 0.01), params.get("random_non_queries", True)
    for split in task.splits:
        T, N = {"ood_pairs": (16, 4), "ood_len": (32, 2)}.get(split, (16, 2))
        n = {"train": 5, "val": 3}.get(split, 4)
        expect = generate_mqar(split_generator("mqar", split, 0), n, 64, T, N, a, noise)
        assert data_digest(task.generate(split)) == data_digest(expect), split


def test_smallest_feasible_setting():
    """The smallest setting the checks allow (vocab_size 5, seq_len 4, one pair): key 1, a value
    in [2, 5), one query."""
    task = make_task("mqar", {"vocab_size": 5, "seq_len": 4, "num_pairs": 1})
    assert (task.config.ood_num_pairs, task.config.ood_seq_len) == (1, 4)
    check_mqar(task.generate("test", n=8), 5, 1)


def test_paper_grid_presets():
    grid = {"paper-64": (64, 4), "paper-128": (128, 8), "paper-256": (256, 16), "paper-512": (512, 64)}
    for preset, (T, N) in grid.items():
        task = make_task("mqar", preset=preset)
        c = task.config
        assert (c.seq_len, c.num_pairs, c.vocab_size) == (T, N, 8192)
        assert c.ood_num_pairs == 2 * N and c.ood_seq_len == 2 * T
        check_mqar(task.generate("test", n=4, seed=0), 8192, N)
        assert task.generate("ood_pairs", n=2).inputs.shape == (2, T)
        assert task.generate("ood_len", n=2).inputs.shape == (2, 2 * T)
    assert make_task("mqar", preset="paper").config == make_task("mqar", preset="paper-64").config
    assert make_task("mqar", preset="paper").knob == "num_pairs"


def test_ood_splits_have_more_pairs_and_longer_sequences():
    task = make_task("mqar", preset="quick")
    c = task.config
    assert task.splits == ("train", "val", "test", "ood_pairs", "ood_len")
    d = task.generate("ood_pairs", n=8, seed=1)
    assert d.inputs.shape == (8, c.seq_len)
    assert ((d.targets != IGNORE).sum(dim=1) == c.ood_num_pairs).all()
    check_mqar(d, c.vocab_size, c.ood_num_pairs)
    d = task.generate("ood_len", n=8, seed=1)
    assert d.inputs.shape == (8, c.ood_seq_len)
    check_mqar(d, c.vocab_size, c.num_pairs)


def test_ood_defaults_fall_back_to_the_largest_feasible():
    c = make_task("mqar", {"vocab_size": 100, "seq_len": 64, "num_pairs": 10}).config
    assert c.ood_num_pairs == 16        # 2 x 10 does not fit 64 tokens: 64 // 4
    assert c.ood_seq_len == 99          # 128 needs vocab_size > 128
    c = make_task("mqar", {"vocab_size": 256, "seq_len": 64, "num_pairs": 16}).config
    assert c.ood_num_pairs == 16        # no room at all: the trained number


@pytest.mark.parametrize("params, constraint", [
    ({"seq_len": 64, "num_pairs": 17}, r"seq_len >= 4 \* num_pairs"),
    ({"vocab_size": 64, "seq_len": 64, "num_pairs": 4}, "vocab_size > seq_len"),
    ({"seq_len": 64, "num_pairs": 4, "ood_num_pairs": 2}, "ood_num_pairs >= num_pairs"),
    ({"seq_len": 64, "num_pairs": 4, "ood_num_pairs": 17}, r"seq_len >= 4 \* num_pairs.*ood_num_pairs"),
    ({"seq_len": 64, "ood_seq_len": 32}, "ood_seq_len >= seq_len"),
    ({"vocab_size": 256, "seq_len": 64, "ood_seq_len": 300}, "vocab_size > seq_len.*ood_seq_len"),
    ({"power_a": 0}, "power_a"),
])
def test_rejected_settings(params, constraint):
    with pytest.raises(TaskConfigError, match=constraint):
        make_task("mqar", params)


@pytest.mark.parametrize("params, tail", [
    ({"seq_len": 64, "num_pairs": 17}, "queries); got seq_len=64, num_pairs=17"),
    ({"seq_len": 64, "num_pairs": 4, "ood_num_pairs": 17},
     "queries) (for the ood_num_pairs split setting); got seq_len=64, num_pairs=17"),
])
def test_only_ood_errors_name_a_split_setting(params, tail):
    with pytest.raises(TaskConfigError) as e:
        make_task("mqar", params)
    assert str(e.value).endswith(tail), str(e.value)


def test_score_by_hand():
    task = make_task("mqar", preset="quick")
    targets = torch.full((2, 8), IGNORE)
    targets[0, 4], targets[0, 6], targets[1, 6] = 200, 201, 202
    preds = torch.zeros(2, 8, dtype=torch.long)
    preds[0, 4], preds[1, 6] = 200, 202
    assert task.score(preds, targets, "test")["accuracy"] == pytest.approx(2 / 3)
    assert task.chance == pytest.approx(1 / 128)
    assert math.isnan(task.score(preds, torch.full((2, 8), IGNORE), "test")["accuracy"])


def test_strategies_follow_the_splits_pair_count():
    """On ood_pairs the context holds ood_num_pairs pairs: recent_value is the last of them."""
    task = make_task("mqar", preset="quick")
    N = task.config.ood_num_pairs
    assert N > task.config.num_pairs
    data = task.generate("ood_pairs", n=16, seed=0)
    recent = task.trivial_predictions(data, "ood_pairs")["recent_value"]
    assert torch.equal(recent, data.inputs[:, 2 * N - 1 : 2 * N].expand_as(recent)), "not the last pair's value"


def test_context_value_picks_a_context_value_uniformly():
    """Each guess is one of the row's N values, each about 1/N of the time, drawn from the
    strategy's own generator (seeded by task, strategy name and data)."""
    task = make_task("mqar", preset="quick")
    N = task.config.num_pairs
    data = task.generate("test", n=256, seed=0)
    guess = task.trivial_predictions(data, "test")["context_value"]
    values = data.inputs[:, 1 : 2 * N : 2]
    hit = guess[:, :, None] == values[:, None, :]           # [n, T, N]; values are distinct in a row
    assert (hit.sum(dim=2) == 1).all(), "a guess that is not one of the row's values"
    pair = hit.int().argmax(dim=2)
    freq = torch.bincount(pair.view(-1), minlength=N).double() / pair.numel()
    assert torch.allclose(freq, torch.full((N,), 1 / N, dtype=torch.float64), atol=0.01), freq
    g = strategy_generator("mqar", data, "context_value")
    assert torch.equal(pair, torch.randint(0, N, pair.shape, generator=g)), "not the strategy's own draws"


@pytest.mark.parametrize("n, T, declared", [
    (1, 32, True),
    (0, 32, False),
    (3, 16, True),          # T = 4N: the shortest layout
    (3, 15, False),         # too short for a query slot per pair
    (3, 10, False),
    (3, 8, False),          # the context alone
    (3, 7, False),
])
def test_strategies_need_the_mqar_layout(n, T, declared):
    """Rows too short for N pairs and a query slot each (T < 4N), or no rows, get no strategies."""
    task = make_task("mqar", {"vocab_size": 64, "seq_len": 32, "num_pairs": 4})
    if T >= 16:
        data = generate_mqar(torch.Generator().manual_seed(0), n, 64, T, 4)
    else:
        data = TaskData(torch.randint(32, 64, (n, T)), torch.full((n, T), IGNORE))
    preds = task.trivial_predictions(data, "test")
    expect = {"context_value", "recent_value", "value_by_position"} if declared else set()
    assert set(preds) == expect, f"n={n}, T={T}: {sorted(preds)}"


def test_load_rejects_out_of_range_tokens_naming_the_file(tmp_path):
    x = torch.tensor([[1, 40, 2, 50, 1, 2, 9, 9]])
    y = torch.full_like(x, IGNORE)
    y[0, 4], y[0, 5] = 40, 50
    path = save_tensor_file(tmp_path / "mqar.npz", TaskData(x, y))
    task = make_task("mqar", {"vocab_size": 64, "seq_len": 8, "num_pairs": 2})
    assert torch.equal(task.load(path).inputs, x)
    with pytest.raises(TaskFileError) as e:
        make_task("mqar", {"vocab_size": 32, "seq_len": 8, "num_pairs": 2}).load(path)
    assert str(e.value).startswith(f"{path}: `inputs` holds token ids outside [0, 32)"), str(e.value)


def test_render_by_hand():
    """Prompt: the tokens up to and including the first query key; answer: its value."""
    x = torch.tensor([[5, 130, 7, 140, 9, 7, 3, 5], [5, 130, 7, 140, 5, 1, 7, 2]])
    y = torch.full_like(x, IGNORE)
    y[0, 5], y[0, 7], y[1, 4], y[1, 6] = 140, 130, 130, 140
    out = make_task("mqar", preset="quick").render(TaskData(x, y))
    assert [(e.prompt, e.answer) for e in out] == [("5 130 7 140 9 7", "140"), ("5 130 7 140 5", "130")]
