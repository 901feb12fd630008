"""Needle in a haystack, with the RULER variants (Hsieh et al. 2024).

A sequence of length ``len`` is a *haystack* of random filler tokens holding ``num_keys``
*needles* ``[NEEDLE, key, value_1 .. value_m]`` (``m = num_values``, distinct keys), then a
*query* ``[QUERY, key, value_1 .. value_m]`` for the first needle's key.  The model is
scored at the query key and at every answer token but the last: it must output all ``m``
values of the queried key, in order (teacher forced).  The other ``num_keys - 1`` needles
are distractors (RULER's multi-key NIAH); ``num_values > 1`` is RULER's multi-value NIAH.

Depth.  The queried needle sits at depth ``d`` in [0, 1]: exactly ``round(d * F)`` of the
haystack's ``F`` filler tokens precede it (``F = len - query - num_keys * needle``), so
``d = 0`` puts it first and ``d = 1`` right before the query.  Distractor needles sit at
uniform filler offsets, each independently, in random order among ties.

Token layout (``vocab_size = 3 + key_vocab + value_vocab + filler_vocab``)::

    0                      PAD     right padding of rows shorter than the tensor
    1                      NEEDLE  marks the start of a needle
    2                      QUERY   marks the query
    [3, 3+K)               keys    (K = key_vocab)
    [3+K, 3+K+V)           values  (V = value_vocab)
    [3+K+V, 3+K+V+F)       filler  (F = filler_vocab)

Lengths.  ``train``, ``val`` and ``test`` rows have lengths uniform in ``[min_len,
train_len]`` and depths uniform in [0, 1], right-padded with PAD to ``train_len`` (a causal
model never sees the padding from a scored position).  The ``grid`` split crosses
``grid_lengths`` (by default ``L/2, L, 2L, 3L, 4L`` for ``L = train_len``, so length
extrapolation up to 4x is measured) with ``grid_depths`` (by default 0.0, 0.1, ..., 1.0):
row ``i`` belongs to cell ``i mod (#lengths * #depths)``, length-major, and is padded to
the longest grid length.  ``score`` on ``grid`` relies on that row order and checks it.

Train and test come from independent streams over a space of ``filler_vocab ** len``
haystacks; repeated rows are astronomically unlikely (the tests check by hashing).

No-skill strategy (:meth:`Needle.trivial_predictions`): ``context_value``, a value drawn
uniformly from the distinct values in the row, ignoring the key; declared when the row
holds more than one value (``num_keys * num_values > 1``).  With one needle of one value
(the ``quick`` and ``paper`` presets) the only value in the row *is* the answer: finding it
is the long-range retrieval that setting measures, not a no-skill rule, so nothing is
declared there and the floor is chance (values are uniform, so no fixed guess beats it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator

from tasks.base import (IGNORE, Task, TaskConfig, TaskData, TextExample, scored_rows, split_generator,
                        strategy_generator)
from tasks.registry import register_task
from tasks.sampling import distinct_integers, uniform_pick

PAD, NEEDLE, QUERY = 0, 1, 2
N_SPECIAL = 3


class NeedleConfig(TaskConfig):
    train_len: int = Field(1024, ge=4, description="L: the longest training length")
    min_len: int | None = Field(None, ge=4, description="shortest train/val/test length (default: train_len)")
    num_keys: int = Field(1, ge=1, description="needles in the haystack (1 queried, the rest distractors)")
    num_values: int = Field(1, ge=1, description="values per needle; all must be recalled")
    key_vocab: int = Field(256, ge=1, description="distinct key tokens")
    value_vocab: int = Field(256, ge=2, description="distinct value tokens")
    filler_vocab: int = Field(1024, ge=1, description="distinct filler tokens")
    grid_lengths: tuple[int, ...] | None = Field(
        None, description="lengths of the grid split (default L/2, L, 2L, 3L, 4L)")
    grid_depths: tuple[float, ...] | None = Field(
        None, description="depths of the grid split (default 0.0, 0.1, ..., 1.0)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            L = data.get("train_len", cls.model_fields["train_len"].default)
            if data.get("min_len") is None:
                data["min_len"] = L
            if data.get("grid_lengths") is None:
                try:
                    L = int(L)
                except (TypeError, ValueError):
                    pass  # the field's own validation reports it
                else:
                    data["grid_lengths"] = (L // 2, L, 2 * L, 3 * L, 4 * L)
            if data.get("grid_depths") is None:
                data["grid_depths"] = tuple(round(0.1 * i, 2) for i in range(11))
        return data

    @property
    def needle_tokens(self) -> int:
        return 2 + self.num_values

    @property
    def query_tokens(self) -> int:
        return 2 + self.num_values

    @property
    def shortest_len(self) -> int:
        """Room for the query, every needle and one filler token."""
        return self.query_tokens + self.num_keys * self.needle_tokens + 1

    @model_validator(mode="after")
    def _feasible(self) -> "NeedleConfig":
        if self.min_len is None or self.grid_lengths is None or self.grid_depths is None:
            raise ValueError("needle needs min_len, grid_lengths and grid_depths (left unset they take defaults)")
        if self.num_keys > self.key_vocab:
            raise ValueError(
                f"needle needs num_keys <= key_vocab (distinct keys); got num_keys={self.num_keys}, "
                f"key_vocab={self.key_vocab}"
            )
        if self.min_len > self.train_len:
            raise ValueError(f"needle needs min_len <= train_len; got min_len={self.min_len}, train_len={self.train_len}")
        need = self.shortest_len
        if self.min_len < need:
            raise ValueError(
                f"needle needs every length >= query + num_keys * needle + 1 filler = {need} tokens "
                f"(num_keys={self.num_keys}, num_values={self.num_values}); got min_len={self.min_len}"
            )
        if not self.grid_lengths or not self.grid_depths:
            raise ValueError("needle needs at least one grid length and one grid depth")
        if min(self.grid_lengths) < need:
            raise ValueError(
                f"needle needs every grid length >= {need} tokens (query + needles + 1 filler); "
                f"got grid_lengths={list(self.grid_lengths)}"
            )
        if list(self.grid_lengths) != sorted(set(self.grid_lengths)):
            raise ValueError(f"needle needs grid_lengths strictly increasing; got {list(self.grid_lengths)}")
        if any(not 0.0 <= d <= 1.0 for d in self.grid_depths) or len(set(self.grid_depths)) != len(self.grid_depths):
            raise ValueError(f"needle needs distinct grid_depths in [0, 1]; got {list(self.grid_depths)}")
        return self


def generate_needle(g: torch.Generator, lengths: torch.Tensor, depths: torch.Tensor | None,
                    width: int, c: NeedleConfig) -> TaskData:
    """One row per entry of ``lengths`` (``[n]`` int64), padded to ``width``; the queried
    needle at ``depths`` (``[n]`` float64 in [0, 1]) or a uniform depth when ``None``."""
    n = lengths.numel()
    K, m, s = c.num_keys, c.num_values, c.needle_tokens
    key_base = N_SPECIAL
    val_base = key_base + c.key_vocab
    fill_base = val_base + c.value_vocab

    H = lengths - c.query_tokens            # haystack length per row
    F = H - K * s                           # filler tokens per row
    if depths is None:
        depths = torch.rand(n, generator=g, dtype=torch.float64)
    # filler tokens before each needle: the queried one at its depth, distractors uniform
    f = torch.empty(n, K, dtype=torch.long)
    f[:, 0] = torch.floor(depths * F.double() + 0.5).long()
    if K > 1:
        u = torch.rand(n, K - 1, generator=g, dtype=torch.float64)
        f[:, 1:] = (u * (F.view(-1, 1) + 1).double()).long()
        order_key = f.double() + 0.5 * torch.rand(n, K, generator=g, dtype=torch.float64)
        rank = (order_key.unsqueeze(1) < order_key.unsqueeze(2)).sum(dim=2)  # blocks before each
    else:
        rank = torch.zeros(n, 1, dtype=torch.long)
    start = f + s * rank                    # [n, K]

    keys = distinct_integers(g, n, K, 0, c.key_vocab) + key_base
    values = torch.randint(0, c.value_vocab, (n, K, m), generator=g) + val_base

    inputs = torch.randint(fill_base, fill_base + c.filler_vocab, (n, width), generator=g)
    block = torch.empty(n, K, s, dtype=torch.long)
    block[:, :, 0] = NEEDLE
    block[:, :, 1] = keys
    block[:, :, 2:] = values
    offs = torch.arange(s)
    inputs.scatter_(1, (start.unsqueeze(2) + offs).view(n, K * s), block.view(n, K * s))
    qpos = H.view(-1, 1) + torch.arange(c.query_tokens)          # [n, q]
    query = torch.cat((torch.full((n, 1), QUERY), keys[:, :1], values[:, 0]), dim=1)
    inputs.scatter_(1, qpos, query)
    if int(lengths.min()) < width:
        inputs.masked_fill_(torch.arange(width) >= lengths.view(-1, 1), PAD)

    targets = torch.full((n, width), IGNORE, dtype=torch.long)
    targets.scatter_(1, qpos[:, 1 : 1 + m], values[:, 0])
    return TaskData(inputs, targets)


def _fmt_depth(d: float) -> str:
    return f"{d:.2f}"


@register_task("needle")
class Needle(Task):
    Config = NeedleConfig
    description = "needle in a haystack (RULER-style): recall the queried key's value(s) across lengths and depths"
    knob: ClassVar[str] = "train_len"
    presets = {
        "quick": dict(train_len=64, min_len=32, key_vocab=32, value_vocab=32, filler_vocab=64,
                      n_train=20_000, n_val=256, n_test=512),
        "quick-multikey": dict(train_len=64, min_len=32, num_keys=4, key_vocab=32, value_vocab=32,
                               filler_vocab=64, n_train=20_000, n_val=256, n_test=512),
        "quick-multivalue": dict(train_len=64, min_len=32, num_values=4, key_vocab=32, value_vocab=32,
                                 filler_vocab=64, n_train=20_000, n_val=256, n_test=512),
        # RULER evaluates pretrained models; for training from scratch we take L = 1024 and
        # a 5 x 11 grid up to 4L (40 rows per cell in the default n_test)
        "paper": dict(train_len=1024, min_len=256, n_train=100_000, n_val=1_000, n_test=2_200),
    }

    @property
    def vocab_size(self) -> int:
        c = self.config
        return N_SPECIAL + c.key_vocab + c.value_vocab + c.filler_vocab

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test", "grid")

    @property
    def chance(self) -> float:
        return 1.0 / self.config.value_vocab

    @property
    def grid_cells(self) -> list[tuple[int, float]]:
        """``(length, depth)`` of each cell, in row order: row ``i`` is cell ``i % len(cells)``."""
        c = self.config
        assert c.grid_lengths is not None and c.grid_depths is not None
        return [(L, d) for L in c.grid_lengths for d in c.grid_depths]

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        c = self.config
        n = self.split_size(split) if n is None else n
        g = split_generator(self.name, split, seed)
        if split == "grid":
            cells = self.grid_cells
            cell = torch.arange(n) % len(cells)
            lengths = torch.tensor([L for L, _ in cells], dtype=torch.long)[cell]
            depths = torch.tensor([d for _, d in cells], dtype=torch.float64)[cell]
            assert c.grid_lengths is not None
            return generate_needle(g, lengths, depths, max(c.grid_lengths), c)
        assert c.min_len is not None
        lengths = torch.randint(c.min_len, c.train_len + 1, (n,), generator=g)
        return generate_needle(g, lengths, None, c.train_len, c)

    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        mask = targets != IGNORE
        correct = ((preds == targets) & mask).sum(dim=1).double()
        scored = mask.sum(dim=1).double()
        total = float(scored.sum())
        out = {"accuracy": float(correct.sum()) / total if total else float("nan")}
        if split != "grid":
            return out
        cells = self.grid_cells
        n = targets.shape[0]
        cell = torch.arange(n) % len(cells)
        # the last scored position of a row of length L is L - 2: check the row order
        last = torch.where(mask, torch.arange(targets.shape[1]), -1).max(dim=1).values
        expect = torch.tensor([L for L, _ in cells])[cell] - 2
        if n and not bool((last == expect).all()):
            raise ValueError(
                "needle grid predictions must keep the row order generate('grid') produced "
                "(row i is cell i mod #cells)"
            )
        c = self.config
        assert c.grid_lengths is not None and c.grid_depths is not None
        nd = len(c.grid_depths)
        for i, L in enumerate(c.grid_lengths):
            in_len = (cell // nd) == i
            if in_len.any():
                out[f"accuracy/len={L}"] = float(correct[in_len].sum() / scored[in_len].sum())
            for j, d in enumerate(c.grid_depths):
                sel = cell == i * nd + j
                if sel.any():
                    out[f"accuracy/len={L}/depth={_fmt_depth(d)}"] = float(correct[sel].sum() / scored[sel].sum())
        return out

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """``context_value`` when a row holds more than one value (see the module docstring)."""
        c = self.config
        x, y = data.inputs, data.targets
        mask = y != IGNORE
        if c.num_keys * c.num_values == 1 or not bool(mask.any()):
            return {}
        base, V = N_SPECIAL + c.key_vocab, c.value_vocab
        # every value in a row sits in a needle before the query (the query repeats one)
        is_value = (x >= base) & (x < base + V)
        present = torch.zeros(x.shape[0], V + 1, dtype=torch.bool)
        present.scatter_(1, torch.where(is_value, x - base, V), True)
        rows = mask.nonzero()[:, 0]
        g = strategy_generator(self.name, data, "context_value")
        preds = torch.zeros_like(x)
        preds[mask] = uniform_pick(g, present[rows, :V]) + base
        return {"context_value": preds}

    def token_text(self, tok: int) -> str:
        c = self.config
        if tok == PAD:
            return ""
        if tok == NEEDLE:
            return "| needle:"
        if tok == QUERY:
            return "| query:"
        tok -= N_SPECIAL
        if tok < c.key_vocab:
            return f"k{tok}"
        tok -= c.key_vocab
        if tok < c.value_vocab:
            return f"v{tok}"
        return f"w{tok - c.value_vocab}"

    def render(self, data: TaskData) -> list[TextExample]:
        """Prompt: the haystack and the query key; answer: the value(s), space separated."""
        out = []
        for x, y, scored in scored_rows(data):
            first = scored[0]
            prompt = " ".join(w for w in map(self.token_text, x[: first + 1]) if w)
            answer = " ".join(self.token_text(y[t]) for t in scored)
            out.append(TextExample(prompt, answer))
        return out
