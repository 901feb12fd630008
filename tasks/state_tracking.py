"""Group word problems: state tracking as in the PaTH paper (Yang et al. 2025) after
Merrill, Petty & Sabharwal 2024, "The Illusion of State in State-Space Models".

A sequence is ``x_1 .. x_T`` of uniformly random elements of a finite group ``G`` (each
element one token); the target at position ``t`` is the running product
``P_t = x_1 x_2 ... x_t`` (as an element token).  ``A5`` (the alternating group, 60
elements, non-solvable: the word problem is NC1-complete) is the hard case, ``S5`` (120)
harder still, and the cyclic group ``Z60`` (same size as A5, abelian) the easy control;
``S3``, ``A4`` and ``S4`` are smaller solvable groups.

Elements and order.  A permutation of ``{0..4}`` is the tuple ``s`` with ``s[i]`` the image
of ``i``; elements are numbered in lexicographic order of their tuples (``itertools.
permutations``), so the identity is token 0.  Products compose as functions, the right
factor acting first: ``(s t)[i] = s[t[i]]``; hence ``P_t = P_{t-1} x_t`` and
``P_t[i] = x_1[x_2[...x_t[i]]]``.  ``Zn`` elements are ``0..n-1`` with ``P_t = sum mod n``.
Tokens are shared by inputs and targets (vocab ``|G|``).

Splits: ``train``, ``val``, ``test`` at ``seq_len`` and ``ood_len`` at ``ood_seq_len``
(longer: length generalisation).  Because ``P_t`` is the answer to the word problem of
length ``t``, ``accuracy/len=L`` (the accuracy at position ``L - 1``) is accuracy by
problem length; ``last_accuracy`` is the last position's.  Spaces of ``|G|^T`` sequences
make train/test repeats astronomically unlikely (the tests check by hashing).

No-skill strategies (:meth:`StateTracking.trivial_predictions`): ``copy_input`` (predict
``x_t``: right at ``t = 1`` and whenever ``P_{t-1}`` is the identity) and
``most_frequent_state`` (the most frequent target of the data being scored, everywhere).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from tasks.base import LengthOODConfig, LengthOODSplits, Task, TaskData, TextExample, split_generator
from tasks.registry import register_task

GroupName = Literal["Z60", "S3", "A4", "S4", "A5", "S5"]


def _parity(perm: tuple[int, ...]) -> int:
    inversions = sum(1 for i in range(len(perm)) for j in range(i + 1, len(perm)) if perm[i] > perm[j])
    return inversions % 2


@lru_cache(maxsize=None)
def group_elements(name: str) -> tuple[tuple[int, ...], ...]:
    """The group's elements in token order (a permutation tuple, or ``(k,)`` for ``Zn``)."""
    if name.startswith("Z"):
        return tuple((k,) for k in range(int(name[1:])))
    degree = int(name[1:])
    perms = list(itertools.permutations(range(degree)))
    if name.startswith("A"):
        perms = [p for p in perms if _parity(p) == 0]
    return tuple(perms)


def compose(name: str, s: tuple[int, ...], t: tuple[int, ...]) -> tuple[int, ...]:
    """The product ``s t`` (``t`` acts first): ``(s t)[i] = s[t[i]]``; addition for ``Zn``."""
    if name.startswith("Z"):
        return ((s[0] + t[0]) % int(name[1:]),)
    return tuple(s[i] for i in t)


@lru_cache(maxsize=None)
def multiplication_table(name: str) -> torch.Tensor:
    """``table[a, b]`` = token of ``element(a) element(b)``; computed once per group."""
    elems = group_elements(name)
    index = {e: i for i, e in enumerate(elems)}
    table = torch.tensor([[index[compose(name, s, t)] for t in elems] for s in elems], dtype=torch.long)
    return table


class StateTrackingConfig(LengthOODConfig):
    group: GroupName = Field("A5", description="the group: A5 (hard), S5, Z60 (easy control), S3, A4, S4")
    seq_len: int = Field(64, ge=1, description="sequence length T of train/val/test")
    ood_seq_len: int | None = Field(None, description="length of the ood_len split (default 2 * seq_len)")

    @model_validator(mode="after")
    def _feasible(self) -> "StateTrackingConfig":
        if self.ood_seq_len is None or self.ood_seq_len <= self.seq_len:
            raise ValueError(
                f"state_tracking needs ood_seq_len > seq_len (longer sequences than trained on); "
                f"got ood_seq_len={self.ood_seq_len}, seq_len={self.seq_len}"
            )
        return self


def running_products(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``[n, T]`` running products ``P_t = P_{t-1} x_t`` of the element tokens ``x``."""
    n, T = x.shape
    G = table.shape[0]
    flat = table.view(-1)
    xt = x.t().contiguous()          # [T, n]: each step reads a contiguous row
    out = torch.empty_like(xt)
    p = xt[0]
    out[0] = p
    for t in range(1, T):            # a loop over positions, batched over all examples
        p = flat[p * G + xt[t]]
        out[t] = p
    return out.t().contiguous()


@register_task("state_tracking")
class StateTracking(LengthOODSplits, Task):
    Config = StateTrackingConfig
    description = "group word problem (A5, S5, Z60 ...): output the running product at every position"
    knob: ClassVar[str] = "seq_len"
    presets = {
        # a 2-layer transformer learns the 6-element S3 partly within a CPU-minute; A5 at
        # any length is much harder for it, which is the point of the probe
        "quick": dict(group="S3", seq_len=16, n_train=20_000, n_val=256, n_test=512),
        "quick-a5": dict(group="A5", seq_len=8, n_train=20_000, n_val=256, n_test=512),
        "quick-z60": dict(group="Z60", seq_len=8, n_train=20_000, n_val=256, n_test=512),
        # A5 word problems (the PaTH paper's state-tracking probe) at length 64, OOD 128
        "paper": dict(group="A5", seq_len=64, n_train=100_000, n_val=1_000, n_test=2_000),
        "paper-s5": dict(group="S5", seq_len=64, n_train=100_000, n_val=1_000, n_test=2_000),
        "paper-z60": dict(group="Z60", seq_len=64, n_train=100_000, n_val=1_000, n_test=2_000),
    }

    @property
    def group_size(self) -> int:
        return len(group_elements(self.config.group))

    @property
    def vocab_size(self) -> int:
        return self.group_size

    @property
    def chance(self) -> float:
        return 1.0 / self.group_size

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        n = self.split_size(split) if n is None else n
        g = split_generator(self.name, split, seed)
        x = torch.randint(0, self.group_size, (n, self.split_len(split)), generator=g)
        return TaskData(x, running_products(x, multiplication_table(self.config.group)))

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """``copy_input`` and ``most_frequent_state`` (see the module docstring)."""
        x, y = data.inputs, data.targets
        if y.numel() == 0:
            return {}
        mode = torch.bincount(y.reshape(-1), minlength=self.group_size).argmax()
        return {"copy_input": x.clone(), "most_frequent_state": torch.full_like(y, int(mode))}

    def report_lengths(self, T: int) -> list[int]:
        """Problem lengths reported as ``accuracy/len=L``: multiples of ``seq_len / 4``."""
        step = max(1, self.config.seq_len // 4)
        return list(range(step, T + 1, step))

    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        n, T = targets.shape
        if n == 0 or T == 0:
            return {"accuracy": float("nan"), "last_accuracy": float("nan")}
        ok = (preds == targets).double()
        per_pos = ok.mean(dim=0)
        out = {"accuracy": float(ok.mean()), "last_accuracy": float(per_pos[-1])}
        for L in self.report_lengths(T):
            out[f"accuracy/len={L}"] = float(per_pos[L - 1])
        return out

    def element_text(self, tok: int) -> str:
        e = group_elements(self.config.group)[tok]
        return str(e[0]) if self.config.group.startswith("Z") else "".join(map(str, e))

    def render(self, data: TaskData) -> list[TextExample]:
        """Prompt: the elements (permutations in one-line notation) and the composition
        convention; answer: the final product."""
        c = self.config
        rule = ("sum mod " + c.group[1:]) if c.group.startswith("Z") else \
            "composition of permutations in one-line notation, the rightmost acting first"
        out = []
        for x, y in zip(data.inputs.tolist(), data.targets.tolist()):
            words = " ".join(self.element_text(v) for v in x)
            out.append(TextExample(f"Product ({rule}) of: {words} =", self.element_text(y[-1])))
        return out
