"""Induction: continue a repeated random segment ("... A B ... A -> B").

The single-layer induction probe (the Momentum-attention paper, Maitra 2026, claims one
momentum layer suffices where standard attention needs two; Olsson et al. 2022 for the
mechanism).  A sequence of ``seq_len`` tokens holds a *segment* of ``segment_len``
distinct random tokens, then ``num_repeats`` copies of it later, every block at random
non-overlapping positions; all other positions are random *filler* tokens drawn from the
vocabulary minus the segment's tokens, so each segment token's earlier occurrences are
all followed by the same token and the continuation is unambiguous.

Scored positions: inside every copy, each token but the last, whose target is the next
token of the copy: ``targets[:, c + j] = segment[j + 1]`` for a copy starting at ``c``,
``j = 0 .. segment_len - 2``.  The first token of a copy is never predictable and is
not scored.  Meant for 1-layer models.

Placement ("stars and bars"): with ``F = seq_len - (1 + num_repeats) * segment_len``
filler tokens, the blocks sit after ``f_0 <= f_1 <= ...`` filler tokens (sorted uniform
draws from ``[0, F]``), block ``j`` starting at ``f_j + j * segment_len``.

Splits: ``train``, ``val``, ``test`` and ``ood_len`` (``ood_seq_len``, default twice as
long: the same blocks spread over more filler).  Spaces of ``vocab^seq_len`` sequences
make train/test repeats astronomically unlikely (the tests check by hashing).  The
Momentum paper's own synthetic settings are not reproduced: the ``paper`` preset repeats
64 random tokens once at a random distance in 512 tokens.  The distance must vary: with
``segment_len = seq_len / 2`` and no filler (Olsson et al.'s repeated random tokens) the
copy sits at a fixed offset, and a model could attend by position alone.

No-skill strategies (:meth:`Induction.trivial_predictions`), guesses from the counts of
tokens seen so far that ignore which token came after the current one: ``seen_once`` (a
token drawn uniformly among those seen exactly once, the current token excluded: with one
repeat the target is one of them) and ``seen_before`` (among all tokens seen, the current
one excluded).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, model_validator

from tasks.base import (IGNORE, LengthOODConfig, LengthOODSplits, Task, TaskData, TextExample, scored_rows,
                        split_generator, strategy_generator)
from tasks.registry import register_task
from tasks.sampling import distinct_integers, sorted_uniform_ints, uniform_excluding, uniform_pick


class InductionConfig(LengthOODConfig):
    vocab_size: int = Field(64, ge=3, description="tokens 0..vocab_size-1")
    seq_len: int = Field(64, ge=2, description="sequence length T")
    segment_len: int = Field(8, ge=2, description="tokens in the repeated segment")
    num_repeats: int = Field(1, ge=1, description="copies of the segment after its first occurrence")
    ood_seq_len: int | None = Field(None, description="length of the ood_len split (default 2 * seq_len)")

    @model_validator(mode="after")
    def _feasible(self) -> "InductionConfig":
        blocks = (1 + self.num_repeats) * self.segment_len
        if blocks > self.seq_len:
            raise ValueError(
                f"induction needs (1 + num_repeats) * segment_len <= seq_len; got "
                f"(1 + {self.num_repeats}) * {self.segment_len} = {blocks} > seq_len={self.seq_len}"
            )
        if self.ood_seq_len is None or self.ood_seq_len <= self.seq_len:
            raise ValueError(
                f"induction needs ood_seq_len > seq_len; got ood_seq_len={self.ood_seq_len}, seq_len={self.seq_len}"
            )
        if self.segment_len >= self.vocab_size:
            raise ValueError(
                f"induction needs segment_len < vocab_size (distinct segment tokens plus at least "
                f"one filler token); got segment_len={self.segment_len}, vocab_size={self.vocab_size}"
            )
        return self


def generate_induction(g: torch.Generator, n: int, vocab_size: int, seq_len: int,
                       segment_len: int, num_repeats: int) -> TaskData:
    """``n`` induction sequences drawn from ``g`` (see the module docstring)."""
    V, T, s, B = vocab_size, seq_len, segment_len, 1 + num_repeats
    seg = distinct_integers(g, n, s, 0, V)                              # [n, s]
    F = T - B * s
    if F > 0:
        inputs = uniform_excluding(g, T, V, seg)
        f = sorted_uniform_ints(g, n, B, F)                              # [n, B]
        start = f + s * torch.arange(B)
    else:
        inputs = torch.empty(n, T, dtype=torch.long)
        start = (s * torch.arange(B)).expand(n, B)
    pos = (start.unsqueeze(2) + torch.arange(s)).view(n, B * s)         # [n, B*s]
    inputs.scatter_(1, pos, seg.repeat(1, B))
    targets = torch.full((n, T), IGNORE, dtype=torch.long)
    copy_pos = (start[:, 1:].unsqueeze(2) + torch.arange(s - 1)).view(n, num_repeats * (s - 1))
    targets.scatter_(1, copy_pos, seg[:, 1:].repeat(1, num_repeats))
    return TaskData(inputs, targets)


@register_task("induction")
class Induction(LengthOODSplits, Task):
    Config = InductionConfig
    description = "induction: continue the later copies of a repeated random segment (1-layer models)"
    knob: ClassVar[str] = "seq_len"
    presets = {
        # a 2-layer transformer learns this within a CPU-minute
        "quick": dict(vocab_size=32, seq_len=32, segment_len=12, num_repeats=1,
                      n_train=20_000, n_val=256, n_test=512),
        # 64 random tokens repeated once at a random distance inside 512 tokens of filler
        "paper": dict(vocab_size=1024, seq_len=512, segment_len=64, num_repeats=1,
                      n_train=100_000, n_val=1_000, n_test=2_000),
    }

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        c = self.config
        n = self.split_size(split) if n is None else n
        g = split_generator(self.name, split, seed)
        return generate_induction(g, n, c.vocab_size, self.split_len(split), c.segment_len, c.num_repeats)

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """``seen_once`` and ``seen_before`` (see the module docstring)."""
        x, y = data.inputs, data.targets
        n, T = x.shape
        V = self.config.vocab_size
        # first and second occurrence of every token in every row (T when there is none):
        # v is seen once in x[:t+1] iff first[v] <= t < second[v]
        pos = torch.arange(T).expand(n, T)
        first = torch.full((n, V), T, dtype=torch.long).scatter_reduce_(1, x, pos, "amin")
        later = torch.where(first.gather(1, x) == pos, T, pos)
        second = torch.full((n, V), T, dtype=torch.long).scatter_reduce_(1, x, later, "amin")
        mask = y != IGNORE
        rows, t = mask.nonzero().unbind(dim=1)
        current = x[rows, t]
        names = ("seen_once", "seen_before")
        picks: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        gens = {name: strategy_generator(self.name, data, name) for name in names}
        chunk = max(1, (1 << 22) // V)
        for k0 in range(0, rows.numel(), chunk):
            r, tt, cur = rows[k0 : k0 + chunk], t[k0 : k0 + chunk, None], current[k0 : k0 + chunk]
            seen = first[r] <= tt
            seen[torch.arange(r.numel()), cur] = False                  # never the current token
            for name, allowed in (("seen_once", seen & (second[r] > tt)), ("seen_before", seen)):
                picks[name].append(uniform_pick(gens[name], allowed))
        out = {}
        for name in names:
            preds = torch.zeros_like(x)
            preds[mask] = torch.cat(picks[name]) if picks[name] else torch.empty(0, dtype=torch.long)
            out[name] = preds
        return out

    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        mask = targets != IGNORE
        total = int(mask.sum())
        out = {"accuracy": float(((preds == targets) & mask).sum()) / total if total else float("nan")}
        R = self.config.num_repeats
        if R > 1 and total:
            # the k-th scored block of segment_len - 1 positions in a row is copy k
            k = (mask.long().cumsum(dim=1) - 1) // (self.config.segment_len - 1) + 1
            for r in range(1, R + 1):
                sel = mask & (k == r)
                out[f"accuracy/repeat={r}"] = float(((preds == targets) & sel).sum()) / max(1, int(sel.sum()))
        return out

    def render(self, data: TaskData) -> list[TextExample]:
        """Prompt: the tokens up to the first scored position; answer: the rest of the copy."""
        out = []
        for x, y, scored in scored_rows(data):
            first = scored[0]
            run = [t for t in scored if t - first < self.config.segment_len - 1]
            out.append(TextExample(" ".join(map(str, x[: first + 1])), " ".join(str(y[t]) for t in run)))
        return out
