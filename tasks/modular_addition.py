"""Modular addition, the grokking probe (Power et al. 2022; Nanda et al. 2023).

An example is ``a b =`` with ``a, b`` in ``[0, p)``: tokens ``0..p-1`` are the numbers and
``p`` is ``=``.  The model must output ``(a + b) mod p`` at the ``=`` position.

The data set is finite: the splits partition the ``p^2`` pairs, ``round(train_fraction *
p^2)`` for training, ``round(val_fraction * p^2)`` for validation and the rest for test.
Since ``a + b = b + a``, the partition is made of *unordered* pairs ``{a, b}``: both orders
of a pair go to one split, so no val/test pair has its swap in train.  The ``p`` pairs
``a = b`` (one row each) and the ``p(p-1)/2`` pairs ``a < b`` (two rows each) are shuffled
by permutations seeded by the run seed; each split takes the next ``d`` of the former
(``d`` fixed by the split's size parity and its fraction of ``p``) and the next
``(size - d) / 2`` of the latter.  ``n_train``, ``n_val`` and ``n_test`` are derived from
the fractions (set them only to the derived values).  ``generate("train")`` returns
exactly the training pairs, shuffled, so full-batch training is possible;
``generate(split, n)`` returns the first ``n`` of a split.

No-skill strategy (:meth:`ModularAddition.trivial_predictions`): ``answer_mode``, the
most frequent answer in the data being scored.

The harness also evaluates the ``train`` split (``eval_train``), and
:meth:`ModularAddition.curve_metrics` reads the grokking delay off the learning curve.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator

from tasks.base import IGNORE, Task, TaskConfig, TaskData, TextExample, split_generator
from tasks.registry import register_task

_DERIVED = ("n_train", "n_val", "n_test")


class ModularAdditionConfig(TaskConfig):
    p: int = Field(113, ge=2, description="the modulus; numbers are 0..p-1")
    train_fraction: float = Field(0.3, gt=0, lt=1, description="fraction of the p^2 pairs in train")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="fraction of the p^2 pairs in val (the rest is test)")
    n_train: int = Field(0, description="derived: round(train_fraction * p^2)")
    n_val: int = Field(0, description="derived: round(val_fraction * p^2)")
    n_test: int = Field(0, description="derived: p^2 - n_train - n_val")

    @staticmethod
    def derived_sizes(p: int, train_fraction: float, val_fraction: float) -> dict[str, int]:
        n_train = round(train_fraction * p * p)
        n_val = round(val_fraction * p * p)
        return {"n_train": n_train, "n_val": n_val, "n_test": p * p - n_train - n_val}

    @model_validator(mode="wrap")
    @classmethod
    def _derive_sizes(cls, data: Any, handler: Any) -> "ModularAdditionConfig":
        derived = None
        if isinstance(data, dict):
            data = dict(data)
            try:
                p = int(data.get("p", cls.model_fields["p"].default))
                tf = float(data.get("train_fraction", cls.model_fields["train_fraction"].default))
                vf = float(data.get("val_fraction", cls.model_fields["val_fraction"].default))
            except (TypeError, ValueError):
                pass  # the fields' own validation reports it
            else:
                derived = cls.derived_sizes(p, tf, vf)
                for k in _DERIVED:
                    if data.get(k) in (None, 0):
                        data[k] = derived[k]
        self = handler(data)
        if derived is not None:
            for k in _DERIVED:
                if getattr(self, k) != derived[k]:
                    raise ValueError(
                        f"modular_addition derives {k} from p and the fractions (= {derived[k]} for "
                        f"p={self.p}, train_fraction={self.train_fraction}, val_fraction="
                        f"{self.val_fraction}); leave {k} unset"
                    )
        return self

    @model_validator(mode="after")
    def _feasible(self) -> "ModularAdditionConfig":
        if self.n_train < 1 or self.n_val < 1 or self.n_test < 1:
            raise ValueError(
                f"modular_addition needs train, val and test each non-empty (train_fraction + "
                f"val_fraction < 1, each >= 1 pair of p^2={self.p ** 2}); got n_train={self.n_train}, "
                f"n_val={self.n_val}, n_test={self.n_test}"
            )
        return self


@register_task("modular_addition")
class ModularAddition(Task):
    Config = ModularAdditionConfig
    description = "modular addition a + b mod p from a fixed fraction of all pairs (grokking)"
    knob: ClassVar[str] = "train_fraction"
    eval_train: ClassVar[bool] = True
    """The harness evaluates the train split too (steps_to_fit needs train accuracy)."""
    curve_splits: ClassVar[tuple[str, ...]] = ("test",)
    """The test curve is the grokking curve (steps_to_grok reads it)."""
    finite: ClassVar[bool] = True
    """Each split is a fixed set: ``generate`` cannot return more than ``split_size`` rows."""
    presets = {
        "quick": dict(p=47, train_fraction=0.5),
        "paper": dict(p=113, train_fraction=0.3),       # Nanda et al. 2023
        "paper-97": dict(p=97, train_fraction=0.3),     # Power et al. 2022's modulus
    }
    paper_training: ClassVar[dict[str, Any]] = {
        # Nanda et al. 2023, "Progress measures for grokking via mechanistic interpretability"
        "n_layers": 1,
        "d_model": 128,
        "n_heads": 4,
        "d_head": 32,
        "d_mlp": 512,
        "activation": "relu",
        "layer_norm": False,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1.0,
        "betas": (0.9, 0.98),
        "batch_size": "full",
        "warmup_steps": 10,
        "steps": 40_000,
    }
    """The model and optimizer the paper trained with; the harness reads this."""

    @property
    def vocab_size(self) -> int:
        return self.config.p + 1

    @property
    def chance(self) -> float:
        return 1.0 / self.config.p

    def split_size(self, split: str) -> int:
        c = self.config
        return {"train": c.n_train, "val": c.n_val}.get(split, c.n_test)

    def diagonal_counts(self) -> tuple[int, int, int]:
        """Pairs ``a = a`` in train, val and test: each split's size parity, then the rest
        two at a time to the split furthest below its share of the ``p``."""
        c = self.config
        sizes = (c.n_train, c.n_val, c.n_test)
        d = [size % 2 for size in sizes]
        while sum(d) < c.p:   # p - sum(d) is even: sum(sizes) = p^2 has the parity of p
            room = [i for i in range(3) if d[i] + 2 <= sizes[i]]
            i = max(room, key=lambda j: sizes[j] / c.p - d[j])
            d[i] += 2
        return d[0], d[1], d[2]

    def split_pairs(self, split: str, seed: int = 0) -> torch.Tensor:
        """The split's pair indices ``a * p + b``, shuffled by the seed; a pair and its swap
        are always in the same split."""
        self.check_split(split)
        c = self.config
        p = c.p
        g = split_generator(self.name, "partition", seed)
        diag = (torch.arange(p) * (p + 1))[torch.randperm(p, generator=g)]
        iu = torch.triu_indices(p, p, offset=1)
        upper = iu[0] * p + iu[1]
        upper = upper[torch.randperm(upper.numel(), generator=g)]
        d = self.diagonal_counts()
        o = [(size - di) // 2 for size, di in zip((c.n_train, c.n_val, c.n_test), d)]
        i = ("train", "val", "test").index(split)
        dd = diag[sum(d[:i]) : sum(d[: i + 1])]
        uu = upper[sum(o[:i]) : sum(o[: i + 1])]
        swapped = (uu % p) * p + torch.div(uu, p, rounding_mode="floor")
        idx = torch.cat((dd, uu, swapped))
        return idx[torch.randperm(idx.numel(), generator=split_generator(self.name, f"order/{split}", seed))]

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        idx = self.split_pairs(split, seed)
        if n is not None:
            if n > idx.numel():
                raise ValueError(
                    f"modular_addition's {split} split has {idx.numel()} pairs (p={self.config.p}); "
                    f"asked for n={n}"
                )
            idx = idx[:n]
        p = self.config.p
        a, b = torch.div(idx, p, rounding_mode="floor"), idx % p
        inputs = torch.stack((a, b, torch.full_like(a, p)), dim=1)
        targets = torch.full_like(inputs, IGNORE)
        targets[:, 2] = (a + b) % p
        return TaskData(inputs, targets)

    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """``answer_mode``: the most frequent answer in ``data`` at every ``=``."""
        y = data.targets[:, 2]
        if y.numel() == 0:
            return {}
        preds = torch.zeros_like(data.targets)
        preds[:, 2] = torch.bincount(y, minlength=self.config.p).argmax()
        return {"answer_mode": preds}

    def curve_metrics(self, curve: list[tuple[int, str, str, float]]) -> dict[str, float | None]:
        """``steps_to_fit``: first step with train accuracy 1.0; ``steps_to_grok``: first
        step with test accuracy >= 0.99; ``grok_delay``: their difference (None if either
        never happened)."""
        def first(split: str, threshold: float) -> int | None:
            steps = [s for s, sp, name, v in curve if sp == split and name == "accuracy" and v >= threshold]
            return min(steps) if steps else None

        fit = first("train", 1.0)
        grok = first(self.test_split, 0.99)
        return {
            "steps_to_fit": fit,
            "steps_to_grok": grok,
            "grok_delay": grok - fit if fit is not None and grok is not None else None,
        }

    def render(self, data: TaskData) -> list[TextExample]:
        p = self.config.p
        return [TextExample(f"{a} + {b} mod {p} =", str(y)) for a, b, _ in data.inputs.tolist()
                for y in [(a + b) % p]]
