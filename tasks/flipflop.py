"""Flip-flop language modeling (FFLM), as defined by Liu et al. 2023, "Exposing Attention
Glitches with Flip-Flop Language Modeling".

A sequence is ``seq_len / 2`` (instruction, bit) pairs over the alphabet ``{w, r, i, 0, 1}``
(tokens ``w=0 r=1 i=2 '0'=3 '1'=4``).  It starts with ``w`` and ends with ``r``; every other
instruction is ``i`` (ignore) with probability ``p_i`` and ``w`` (write) or ``r`` (read) with
probability ``(1 - p_i) / 2`` each.  The bit after ``w`` or ``i`` is uniformly random; the bit
after ``r`` equals the bit of the most recent ``w``.  FFL(p) names this distribution.

Scored positions are the ``r`` tokens: ``targets[:, t]`` at an ``r`` is the bit that must
follow it.  The paper trains on FFL(0.8) with 256 pairs (512 tokens) and tests on FFL(0.8)
(``in_dist``), FFL(0.98) (``sparse``: long gaps between reads) and FFL(0.1) (``dense``:
many writes and reads).  A model's errors there are "attention glitches": the headline is
accuracy at the read positions, ``glitch_rate = 1 - accuracy``.

Train, val and the test splits come from independent streams; over 2^(seq_len/2)-sized
spaces a repeated sequence is astronomically unlikely at the paper setting (the tests
check disjointness by hashing rows), so no filtering is done.

No-skill strategies (:meth:`FlipFlop.trivial_predictions`): ``last_bit`` (at a read, the
bit just before it: right when the previous instruction was a write or a read, a coin
flip after an ignore) and ``majority_bit`` (the more frequent target bit of the data
being scored, at every read).

The published test sets (Hugging Face ``synthseq/flipflop``: a ``text`` column of strings
such as ``"w1i0r1..."``; splits ``val``, ``val_sparse``, ``val_dense``) are read by
:meth:`FlipFlop.load`, from a JSON-lines or Parquet file or the dataset id.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator

from tasks.base import IGNORE, Task, TaskConfig, TaskData, TextExample, scored_rows, split_generator
from tasks.files import TaskFileError, read_text_column
from tasks.registry import register_task

W, R, I, ZERO, ONE = 0, 1, 2, 3, 4
ALPHABET = "wri01"
"""Token id -> character: ``ALPHABET[token]``."""

_CHAR_TO_TOKEN = np.full(256, -1, dtype=np.int64)
for _tok, _ch in enumerate(ALPHABET):
    _CHAR_TO_TOKEN[ord(_ch)] = _tok


class FlipFlopConfig(TaskConfig):
    seq_len: int = Field(512, ge=4, description="tokens per sequence (2 per instruction)")
    p_i: float = Field(0.8, ge=0, le=1, description="P(ignore) in train, val and in_dist")
    p_i_sparse: float = Field(0.98, ge=0, le=1, description="P(ignore) in the sparse split")
    p_i_dense: float = Field(0.1, ge=0, le=1, description="P(ignore) in the dense split")

    @model_validator(mode="after")
    def _feasible(self) -> "FlipFlopConfig":
        if self.seq_len % 2:
            raise ValueError(
                f"flip-flop needs an even seq_len (instruction, bit pairs); got seq_len={self.seq_len}"
            )
        return self


def generate_flipflop(g: torch.Generator, n: int, seq_len: int, p_i: float) -> TaskData:
    """``n`` FFL(p_i) sequences of ``seq_len`` tokens drawn from ``g``."""
    L = seq_len // 2
    u = torch.rand(n, L, generator=g)
    q = (1.0 - p_i) / 2.0
    # u < p_i: ignore; then write; then read.  (Exact: u is uniform on [0, 1).)
    instr = torch.where(u < p_i, I, torch.where(u < p_i + q, W, R))
    instr[:, 0] = W
    instr[:, -1] = R
    bits = torch.randint(0, 2, (n, L), generator=g)
    pos = torch.arange(L).expand(n, L)
    is_w = instr == W
    last_w = torch.where(is_w, pos, 0).cummax(dim=1).values
    is_r = instr == R
    bits = torch.where(is_r, bits.gather(1, last_w), bits)
    bit_tok = bits + ZERO
    inputs = torch.stack((instr, bit_tok), dim=2).view(n, 2 * L)
    targets = torch.full((n, L, 2), IGNORE, dtype=torch.long)
    targets[:, :, 0] = torch.where(is_r, bit_tok, IGNORE)
    return TaskData(inputs, targets.view(n, 2 * L))


def flipflop_from_strings(strings: list[str], source: object = "strings") -> TaskData:
    """Tensors for flip-flop strings in the published format (``"w1i0r1..."``), all of one
    even length; the bit after every ``r`` is scored at the ``r``."""
    if not strings:
        raise TaskFileError(f"{source}: no flip-flop sequences found")
    lengths = {len(s) for s in strings}
    if len(lengths) != 1:
        raise TaskFileError(
            f"{source}: flip-flop sequences must all have one length; found lengths "
            f"{sorted(lengths)[:5]}"
        )
    T = lengths.pop()
    if T < 2 or T % 2:
        raise TaskFileError(f"{source}: flip-flop sequences must have an even length >= 2; found {T}")
    try:
        raw = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise TaskFileError(f"{source}: flip-flop sequences may only hold the characters {ALPHABET}") from None
    tok = _CHAR_TO_TOKEN[raw].reshape(len(strings), T)
    instr, bits = tok[:, 0::2], tok[:, 1::2]
    bad_rows = ((instr < W) | (instr > I)).any(axis=1) | ((bits < ZERO) | (bits > ONE)).any(axis=1)
    if bad_rows.any():
        row = int(np.flatnonzero(bad_rows)[0])
        raise TaskFileError(
            f"{source}: sequence {row} is not in the flip-flop format (instructions w/r/i at "
            f"even positions, bits 0/1 at odd positions): {strings[row][:40]!r}"
        )
    inputs = torch.from_numpy(tok)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, 0::2] = torch.where(inputs[:, 0::2] == R, inputs[:, 1::2], IGNORE)
    return TaskData(inputs, targets)


@register_task("flipflop")
class FlipFlop(Task):
    Config = FlipFlopConfig
    description = "flip-flop language modeling (Liu et al. 2023): recall the last written bit at every read"
    knob: ClassVar[str] = "p_i"
    test_split = "in_dist"
    presets = {
        "quick": dict(seq_len=64, n_train=20_000, n_val=256, n_test=512),
        # the paper: 256 instructions; the published data has 1.6M train sequences,
        # 16K val, 160K val_sparse, 4K val_dense
        "paper": dict(seq_len=512, p_i=0.8, n_train=1_600_000, n_val=1_000, n_test=16_000),
    }
    HF_DATASET: ClassVar[str] = "synthseq/flipflop"
    HF_SPLITS: ClassVar[dict[str, str]] = {
        "val": "val", "in_dist": "val", "sparse": "val_sparse", "dense": "val_dense", "train": "train",
    }
    """Our split -> the split name in the published Hugging Face dataset."""

    @property
    def vocab_size(self) -> int:
        return len(ALPHABET)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "in_dist", "sparse", "dense")

    @property
    def chance(self) -> float:
        return 0.5

    def split_p_i(self, split: str) -> float:
        c = self.config
        return {"sparse": c.p_i_sparse, "dense": c.p_i_dense}.get(split, c.p_i)

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        n = self.split_size(split) if n is None else n
        g = split_generator(self.name, split, seed)
        return generate_flipflop(g, n, self.config.seq_len, self.split_p_i(split))

    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        mask = targets != IGNORE
        n_scored = int(mask.sum())
        if n_scored == 0:
            return {"accuracy": float("nan"), "glitch_rate": float("nan"), "sequence_accuracy": float("nan")}
        correct = (preds == targets) & mask
        acc = float(correct.sum()) / n_scored
        seq_ok = (correct == mask).all(dim=1)
        return {"accuracy": acc, "glitch_rate": 1.0 - acc, "sequence_accuracy": float(seq_ok.float().mean())}

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """``last_bit`` and ``majority_bit`` (see the module docstring)."""
        x, y = data.inputs, data.targets
        mask = y != IGNORE
        if not bool(mask.any()):
            return {}
        last = torch.full_like(x, ZERO)
        last[:, 1:] = x[:, :-1]
        ones = int((y[mask] == ONE).sum())
        majority = ONE if 2 * ones > int(mask.sum()) else ZERO
        return {"last_bit": last, "majority_bit": torch.full_like(x, majority)}

    def load(self, source: str | Path, split: str = "in_dist") -> TaskData:
        """A published test set: a ``.jsonl``/``.parquet`` file with a ``text`` column, or a
        Hugging Face dataset id (default split names follow :attr:`HF_SPLITS`)."""
        self.check_split(split)
        strings = read_text_column(source, column="text", split=self.HF_SPLITS[split])
        return flipflop_from_strings(strings, source)

    def render(self, data: TaskData) -> list[TextExample]:
        """Prompt: the string up to and including the last read; answer: the bit."""
        out = []
        for x, y, scored in scored_rows(data):
            last = scored[-1]
            out.append(TextExample("".join(ALPHABET[v] for v in x[: last + 1]), ALPHABET[y[last]]))
        return out
