"""Multi-digit multiplication, as studied in "Why Can't Transformers Learn Multiplication?"
(Bai, Pres, Deng et al. 2025) after Deng et al.'s implicit chain-of-thought work.

An example multiplies an ``n``-digit ``a`` by an ``m``-digit ``b`` (leading digits nonzero),
every number written least significant digit first::

    a_0 .. a_{n-1}  *  b_0 .. b_{m-1}  =  c_0 .. c_{n+m-1}

where ``c = a * b`` zero-padded to ``n + m`` digits.  Tokens: digits ``0..9`` are ``0..9``,
``'*' = 10``, ``'=' = 11`` (vocab 12; no separator or end token is needed at a fixed
format).  ``inputs`` is the sequence without its final digit (``T = 2(n+m) + 1``): the
model predicts ``c_0`` at ``=`` and ``c_{k+1}`` at ``c_k`` (teacher forced); only product
digits are scored.  Metrics: ``exact_match`` (every product digit right; the headline),
``digit_accuracy`` and ``digit_accuracy/pos=k`` (``k = 0`` is the least significant digit;
models fail in the middle).

Train/test disjointness.  Each pair ``(a, b)`` goes to a bucket
``mix_hash(key) mod holdout_modulus``, a fixed hash that ignores the seed: bucket 0 is the
test set, bucket 1 the validation set, every other bucket the training set.  When
``n_digits == m_digits`` the key is the unordered pair ``(min, max)``, so a pair and its
swap ``(b, a)`` (the same product) always share a split and no val/test pair's twin is
trained on; with different digit counts the swap is written in another format (a
different example) and is not held out.  Each split draws its pairs uniformly *without
replacement* from its buckets (no row repeats within a split); asking for more pairs than
a split holds raises an error naming the count.  Spaces of up to ``2**22`` pairs are
enumerated; larger ones are sampled by rejection, keeping the first draw of each pair.

No-skill strategy (:meth:`Multiplication.trivial_predictions`): ``digit_mode``, the most
frequent product digit at each position, read off the data being scored.  (The most
frequent whole product *of the scored data* is not declared: it scores at least
``1 / n`` by construction, far above what a model could know.)
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import torch
from pydantic import Field, model_validator

from tasks.base import IGNORE, Task, TaskConfig, TaskData, TextExample, split_generator
from tasks.registry import register_task
from tasks.sampling import mix_hash

STAR, EQUALS = 10, 11
_BUCKETS = {"test": 0, "val": 1}


class MultiplicationConfig(TaskConfig):
    n_digits: int = Field(4, ge=1, description="digits of the first operand")
    m_digits: int = Field(4, ge=1, description="digits of the second operand")
    holdout_modulus: int = Field(64, ge=3, description="1/holdout_modulus of all pairs is test, as much val")

    @model_validator(mode="after")
    def _feasible(self) -> "MultiplicationConfig":
        if self.n_digits + self.m_digits > 18:
            raise ValueError(
                f"multiplication needs n_digits + m_digits <= 18 (products must fit in int64); "
                f"got {self.n_digits} + {self.m_digits}"
            )
        pairs = 81 * 10 ** (self.n_digits + self.m_digits - 2)
        if pairs < 10 * self.holdout_modulus:
            raise ValueError(
                f"multiplication needs >= 10 operand pairs per hash bucket on average "
                f"(pairs >= 10 * holdout_modulus); {self.n_digits}x{self.m_digits} digits give "
                f"{pairs} pairs, holdout_modulus={self.holdout_modulus}: lower holdout_modulus"
            )
        return self


_ENUMERATE = 1 << 22
"""Operand spaces up to this many pairs are enumerated (exact counts per split)."""


def pair_bucket(a: torch.Tensor, b: torch.Tensor, n_digits: int, m_digits: int, modulus: int) -> torch.Tensor:
    """The fixed hash bucket of each pair ``(a, b)``: 0 = test, 1 = val, others = train.
    With ``n_digits == m_digits`` it depends on the unordered pair: ``(b, a)`` shares it."""
    if n_digits == m_digits:
        a, b = torch.minimum(a, b), torch.maximum(a, b)
    return mix_hash(a * 10**m_digits + b) % modulus


def _in_split(bucket: torch.Tensor, split: str) -> torch.Tensor:
    return bucket == _BUCKETS[split] if split in _BUCKETS else bucket >= 2


def _size_knob(split: str) -> str:
    return {"train": "n_train", "val": "n_val"}.get(split, "n_test")


@lru_cache(maxsize=32)
def split_codes(n_digits: int, m_digits: int, modulus: int, split: str) -> torch.Tensor:
    """Every pair of a split as the code ``a * 10^m + b``, ascending (enumerated spaces only)."""
    a = torch.arange(10 ** (n_digits - 1), 10**n_digits)
    b = torch.arange(10 ** (m_digits - 1), 10**m_digits)
    a, b = a.repeat_interleave(b.numel()), b.repeat(a.numel())
    keep = _in_split(pair_bucket(a, b, n_digits, m_digits, modulus), split)
    return (a * 10**m_digits + b)[keep]


def _first_occurrences(x: torch.Tensor) -> torch.Tensor:
    """``x`` without repeats, each value kept at its first occurrence, order kept."""
    _, inv = torch.unique(x, return_inverse=True)
    first = torch.full((int(inv.max()) + 1 if x.numel() else 0,), x.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inv, torch.arange(x.numel()), "amin")
    return x[first.sort().values]


def digits_lsd_first(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[n, k]`` decimal digits of ``x`` (``[n]``), least significant first."""
    pow10 = 10 ** torch.arange(k, dtype=torch.long)
    return torch.div(x.unsqueeze(1), pow10, rounding_mode="floor") % 10


def sample_pairs(g: torch.Generator, n: int, c: MultiplicationConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distinct pairs drawn uniformly without replacement from the split's buckets."""
    lo_a, hi_a = 10 ** (c.n_digits - 1), 10**c.n_digits
    lo_b, hi_b = 10 ** (c.m_digits - 1), 10**c.m_digits
    K = c.holdout_modulus
    space = (hi_a - lo_a) * (hi_b - lo_b)
    share = 1.0 / K if split in _BUCKETS else (K - 2) / K
    if space <= _ENUMERATE:
        codes = split_codes(c.n_digits, c.m_digits, K, split)
        if n > codes.numel():
            raise ValueError(
                f"multiplication {c.n_digits}x{c.m_digits} (holdout_modulus={K}) has {codes.numel()} "
                f"distinct {split} pairs; asked for {n}: set {_size_knob(split)} <= {codes.numel()} "
                f"(or use more digits)"
            )
        codes = codes[torch.randperm(codes.numel(), generator=g)[:n]]
    else:
        expected = int(space * share)
        if n > expected // 2:
            raise ValueError(
                f"multiplication {c.n_digits}x{c.m_digits} (holdout_modulus={K}) has about {expected} "
                f"distinct {split} pairs; asked for {n}, more than half of them: set "
                f"{_size_knob(split)} <= {expected // 2}"
            )
        codes = torch.empty(0, dtype=torch.long)
        while codes.numel() < n:
            m = int((n - codes.numel()) / share * 1.1) + 64
            a = torch.randint(lo_a, hi_a, (m,), generator=g)
            b = torch.randint(lo_b, hi_b, (m,), generator=g)
            keep = _in_split(pair_bucket(a, b, c.n_digits, c.m_digits, K), split)
            codes = _first_occurrences(torch.cat((codes, (a * 10**c.m_digits + b)[keep])))
        codes = codes[:n]
    return torch.div(codes, 10**c.m_digits, rounding_mode="floor"), codes % 10**c.m_digits


def encode(a: torch.Tensor, b: torch.Tensor, n_digits: int, m_digits: int) -> TaskData:
    """Tensors for the pairs ``(a, b)`` (see the module docstring for the format)."""
    n = a.numel()
    D = n_digits + m_digits
    eq = n_digits + 1 + m_digits
    T = 2 * D + 1
    prod = digits_lsd_first(a * b, D)
    inputs = torch.empty(n, T, dtype=torch.long)
    inputs[:, :n_digits] = digits_lsd_first(a, n_digits)
    inputs[:, n_digits] = STAR
    inputs[:, n_digits + 1 : eq] = digits_lsd_first(b, m_digits)
    inputs[:, eq] = EQUALS
    inputs[:, eq + 1 :] = prod[:, :-1]
    targets = torch.full((n, T), IGNORE, dtype=torch.long)
    targets[:, eq:] = prod
    return TaskData(inputs, targets)


def decode_operands(inputs: torch.Tensor, n_digits: int, m_digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` read back from ``inputs``."""
    pa = 10 ** torch.arange(n_digits, dtype=torch.long)
    pb = 10 ** torch.arange(m_digits, dtype=torch.long)
    a = (inputs[:, :n_digits] * pa).sum(dim=1)
    b = (inputs[:, n_digits + 1 : n_digits + 1 + m_digits] * pb).sum(dim=1)
    return a, b


@register_task("multiplication")
class Multiplication(Task):
    Config = MultiplicationConfig
    description = "n x m digit multiplication, digits least significant first (Bai, Pres, Deng et al. 2025)"
    metric = "exact_match"
    knob: ClassVar[str] = "n_digits"
    presets = {
        "quick": dict(n_digits=2, m_digits=2, holdout_modulus=8, n_train=6_000, n_val=256, n_test=512),
        # (2x2 with holdout_modulus 8: 6050 train, 970 val and 1080 test pairs in all)
        # 4x4 and 5x5 as in the paper (data sizes after Deng et al.'s released 4x4 set:
        # 808k train, 1k val, 1k test)
        "paper": dict(n_digits=4, m_digits=4, n_train=808_000, n_val=1_000, n_test=1_000),
        "paper-5x5": dict(n_digits=5, m_digits=5, n_train=808_000, n_val=1_000, n_test=1_000),
    }

    @property
    def vocab_size(self) -> int:
        return 12

    @property
    def seq_len(self) -> int:
        c = self.config
        return 2 * (c.n_digits + c.m_digits) + 1

    @property
    def chance(self) -> float:
        # guessing every product digit uniformly
        return 0.1 ** (self.config.n_digits + self.config.m_digits)

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        c = self.config
        n = self.split_size(split) if n is None else n
        g = split_generator(self.name, split, seed)
        a, b = sample_pairs(g, n, c, split)
        return encode(a, b, c.n_digits, c.m_digits)

    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        c = self.config
        D = c.n_digits + c.m_digits
        eq = c.n_digits + 1 + c.m_digits
        if targets.shape[1] != self.seq_len:
            raise ValueError(
                f"multiplication {c.n_digits}x{c.m_digits} predictions must be [n, {self.seq_len}]; "
                f"got {tuple(targets.shape)}"
            )
        t = targets[:, eq : eq + D]
        ok = preds[:, eq : eq + D] == t
        if t.shape[0] == 0:
            return {"exact_match": float("nan"), "digit_accuracy": float("nan")}
        out = {"exact_match": float(ok.all(dim=1).double().mean()), "digit_accuracy": float(ok.double().mean())}
        per_pos = ok.double().mean(dim=0)
        for k in range(D):
            out[f"digit_accuracy/pos={k}"] = float(per_pos[k])
        return out

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """``digit_mode``: the most frequent product digit of ``data`` at each position."""
        c = self.config
        D = c.n_digits + c.m_digits
        eq = c.n_digits + 1 + c.m_digits
        t = data.targets[:, eq : eq + D]
        if t.shape[0] == 0:
            return {}
        preds = torch.zeros_like(data.targets)
        preds[:, eq : eq + D] = torch.stack([torch.bincount(t[:, k], minlength=10).argmax() for k in range(D)])
        return {"digit_mode": preds}

    def render(self, data: TaskData) -> list[TextExample]:
        """Conventional decimal text (most significant digit first), e.g. ``"1234 * 5678 ="``
        -> ``"7006652"``: pretrained models know that order, not the reversed one."""
        c = self.config
        a, b = decode_operands(data.inputs, c.n_digits, c.m_digits)
        return [TextExample(f"{x} * {y} =", str(x * y)) for x, y in zip(a.tolist(), b.tolist())]
