"""Multi-query associative recall (MQAR), as defined by Zoology (Arora et al. 2023).

A sequence opens with ``num_pairs`` key-value pairs ``k1 v1 k2 v2 ...``; keys come from
``[1, V/2)`` and values from ``[V/2, V)``, distinct within a sequence.  The rest of the
sequence holds the keys again as queries, each at a gap drawn from a power law
(``p(gap = i) ~ a * i^(a-1)``, ``a = 0.01``: most queries sit close to the context, a
few far away), in the order they were drawn.  Every other position is a random filler
token from the whole vocabulary.  The model is scored only at each query key, where it
must predict that key's value.

Out-of-distribution splits: ``ood_pairs`` (``ood_num_pairs`` pairs, by default twice as
many as trained on, at the same length) and ``ood_len`` (``ood_seq_len`` tokens, by default
twice as long, same pairs: the queries spread over more positions).  When the default 2x
setting is infeasible (``seq_len < 4 * 2 * num_pairs``, or ``vocab_size <= 2 * seq_len``)
the largest feasible value is taken instead; both defaults are resolved when the config
is validated, so the stored config records the values used.

Train, val and test come from independent streams; repeated rows are astronomically
unlikely at every preset (random filler everywhere; the tests check by hashing).

No-skill strategies (:meth:`MQAR.trivial_predictions`), none of which matches the query
to its key: ``context_value`` (a value drawn uniformly from the context's ``num_pairs``
values), ``recent_value`` (the last pair's value) and ``value_by_position`` (at each query
position, the value of the pair most often queried there under the gap law, from a fixed
simulation of it (:func:`query_position_table`), not from the data being scored: the
power-law gaps put the first pairs' queries early).

Published test sets saved as tensors (``.npz`` or ``.safetensors`` with ``inputs`` and
``labels``) are read by :meth:`MQAR.load`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator

from tasks.base import (IGNORE, Task, TaskConfig, TaskData, TextExample, scored_rows, split_generator,
                        strategy_generator)
from tasks.files import check_token_range, load_tensor_file
from tasks.registry import register_task
from tasks.sampling import distinct_integers, weighted_without_replacement


class MQARConfig(TaskConfig):
    vocab_size: int = Field(8192, ge=4, description="V: keys from [1, V/2), values from [V/2, V)")
    seq_len: int = Field(64, ge=4, description="sequence length T")
    num_pairs: int = Field(4, ge=1, description="key-value pairs per sequence")
    power_a: float = Field(0.01, gt=0, le=1, description="power-law exponent of query gaps")
    random_non_queries: bool = Field(True, description="fill unused positions with random tokens")
    ood_num_pairs: int | None = Field(
        None, ge=1, description="pairs in the ood_pairs split (default 2 * num_pairs, or the most that fit)")
    ood_seq_len: int | None = Field(
        None, ge=4, description="length of the ood_len split (default 2 * seq_len, or the longest that fits)")

    @model_validator(mode="before")
    @classmethod
    def _ood_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        try:
            V = int(data.get("vocab_size", cls.model_fields["vocab_size"].default))
            T = int(data.get("seq_len", cls.model_fields["seq_len"].default))
            N = int(data.get("num_pairs", cls.model_fields["num_pairs"].default))
        except (TypeError, ValueError):
            return data  # the fields' own validation reports it
        if data.get("ood_num_pairs") is None:
            data["ood_num_pairs"] = max(N, min(2 * N, T // 4, V // 2 - 1))
        if data.get("ood_seq_len") is None:
            data["ood_seq_len"] = max(T, min(2 * T, V - 1))
        return data

    @model_validator(mode="after")
    def _feasible(self) -> "MQARConfig":
        _check_mqar(self.vocab_size, self.seq_len, self.num_pairs)
        if self.ood_num_pairs is None or self.ood_seq_len is None:
            raise ValueError("MQAR needs ood_num_pairs and ood_seq_len (left unset they take defaults)")
        if self.ood_num_pairs < self.num_pairs:
            raise ValueError(
                f"MQAR needs ood_num_pairs >= num_pairs (at least as many pairs as trained on); "
                f"got ood_num_pairs={self.ood_num_pairs}, num_pairs={self.num_pairs}"
            )
        if self.ood_seq_len < self.seq_len:
            raise ValueError(
                f"MQAR needs ood_seq_len >= seq_len (at least as long as trained on); "
                f"got ood_seq_len={self.ood_seq_len}, seq_len={self.seq_len}"
            )
        _check_mqar(self.vocab_size, self.seq_len, self.ood_num_pairs, "ood_num_pairs")
        _check_mqar(self.vocab_size, self.ood_seq_len, self.num_pairs, "ood_seq_len")
        return self


def _check_mqar(V: int, T: int, N: int, which: str = "") -> None:
    where = f" (for the {which} split setting)" if which else ""
    if 4 * N > T:
        raise ValueError(
            f"MQAR needs seq_len >= 4 * num_pairs (2 context tokens per pair plus room "
            f"for the queries){where}; got seq_len={T}, num_pairs={N}"
        )
    if V <= T:
        raise ValueError(f"MQAR needs vocab_size > seq_len{where}; got vocab_size={V}, seq_len={T}")
    if N > V // 2 - 1:
        raise ValueError(
            f"num_pairs={N} distinct keys do not fit in the {V // 2 - 1} key tokens of "
            f"vocab_size={V}{where}"
        )


def generate_mqar(g: torch.Generator, n: int, vocab_size: int, seq_len: int,
                  num_pairs: int, power_a: float = 0.01,
                  random_non_queries: bool = True) -> TaskData:
    """``n`` MQAR sequences drawn from ``g`` (see the module docstring)."""
    V, T, N = vocab_size, seq_len, num_pairs
    half = V // 2
    ctx = 2 * N
    keys = distinct_integers(g, n, N, 1, half)
    values = distinct_integers(g, n, N, half, V)

    space = (T - ctx) // 2
    gaps = weighted_without_replacement(g, n, N, _gap_log_weights(space, power_a))  # [n, N]
    qpos = ctx + 2 * gaps

    # every position not written below keeps its filler (0 when there is none); keys are
    # >= 1 and values >= V/2, so a written position is never mistaken for filler
    if random_non_queries:
        inputs = torch.randint(0, V, (n, T), generator=g)
    else:
        inputs = torch.zeros(n, T, dtype=torch.long)
    inputs[:, 0:ctx:2] = keys
    inputs[:, 1:ctx:2] = values
    inputs.scatter_(1, qpos, keys)
    targets = torch.full((n, T), IGNORE, dtype=torch.long)
    targets.scatter_(1, qpos, values)
    return TaskData(inputs, targets)


@lru_cache(maxsize=16)
def query_position_table(T: int, N: int, power_a: float, n_sim: int = 20_000) -> torch.Tensor:
    """``[T, N]``: how often pair ``j`` is queried at position ``t`` in ``n_sim`` simulated
    rows of :func:`generate_mqar`'s gap law (a fixed seed: the same table in any process)."""
    space = (T - 2 * N) // 2
    g = torch.Generator().manual_seed(0)
    gaps = weighted_without_replacement(g, n_sim, N, _gap_log_weights(space, power_a))
    pos = 2 * N + 2 * gaps
    return torch.bincount((pos * N + torch.arange(N)).view(-1), minlength=T * N).view(T, N)


def _gap_log_weights(space: int, power_a: float) -> torch.Tensor:
    """``log p(gap = i)`` up to a constant, ``p(i) ~ a i^(a-1)`` for ``i = 1..space``."""
    i = torch.arange(1, space + 1, dtype=torch.float64)
    return math.log(power_a) + (power_a - 1) * torch.log(i)


_PAPER = dict(vocab_size=8192, n_train=100_000, n_val=1_000, n_test=3_000)


@register_task("mqar")
class MQAR(Task):
    Config = MQARConfig
    description = "multi-query associative recall (Zoology): recall each queried key's value"
    knob: ClassVar[str] = "num_pairs"
    presets = {
        "quick": dict(vocab_size=256, seq_len=64, num_pairs=8, n_train=6_000, n_val=256, n_test=512),
        # Zoology Figure 2: (seq_len, num_pairs) = (64, 4), (128, 8), (256, 16), (512, 64)
        "paper": dict(seq_len=64, num_pairs=4, **_PAPER),
        "paper-64": dict(seq_len=64, num_pairs=4, **_PAPER),
        "paper-128": dict(seq_len=128, num_pairs=8, **_PAPER),
        "paper-256": dict(seq_len=256, num_pairs=16, **_PAPER),
        "paper-512": dict(seq_len=512, num_pairs=64, **_PAPER),
    }

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def chance(self) -> float:
        # the answer is one of the V - V/2 value tokens
        return 1.0 / (self.config.vocab_size - self.config.vocab_size // 2)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test", "ood_pairs", "ood_len")

    def split_shape(self, split: str) -> tuple[int, int]:
        """``(seq_len, num_pairs)`` of a split."""
        c = self.config
        assert c.ood_num_pairs is not None and c.ood_seq_len is not None
        if split == "ood_pairs":
            return c.seq_len, c.ood_num_pairs
        if split == "ood_len":
            return c.ood_seq_len, c.num_pairs
        return c.seq_len, c.num_pairs

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        c = self.config
        n = self.split_size(split) if n is None else n
        g = split_generator(self.name, split, seed)
        T, N = self.split_shape(split)
        return generate_mqar(g, n, c.vocab_size, T, N, c.power_a, c.random_non_queries)

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """Guesses among the context's values that ignore which key is queried (see the
        module docstring); rows follow the layout of :func:`generate_mqar`.  Rows too
        short for it (``T < 4 * N``: the context and a query slot per pair) get none."""
        _, N = self.split_shape(split)
        x, y = data.inputs, data.targets
        n, T = x.shape
        if n == 0 or T < 4 * N:
            return {}
        keys, values = x[:, 0 : 2 * N : 2], x[:, 1 : 2 * N : 2]
        rows = torch.arange(n).view(-1, 1)
        g = strategy_generator(self.name, data, "context_value")
        out = {
            "context_value": values[rows, torch.randint(0, N, (n, T), generator=g)],
            "recent_value": values[:, -1:].expand(n, T).clone(),
        }
        # the pair most often queried at each position, from the query-gap law itself
        table = query_position_table(T, N, self.config.power_a)
        out["value_by_position"] = values[rows, table.argmax(dim=1).expand(n, T)]
        return out

    def load(self, source: str | Path, split: str = "test") -> TaskData:
        """A published test set saved as tensors (``.npz``/``.safetensors`` with ``inputs``
        and ``labels``) to score as ``split``; token ids must fit this config's ``vocab_size``."""
        self.check_split(split)
        return check_token_range(load_tensor_file(source), self.config.vocab_size, source)

    def render(self, data: TaskData) -> list[TextExample]:
        out = []
        for x, y, pos in scored_rows(data):
            first = pos[0]
            out.append(TextExample(" ".join(map(str, x[: first + 1])), str(y[first])))
        return out
