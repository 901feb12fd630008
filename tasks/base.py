"""The task interface.

A task turns ``(config, split, seed)`` into integer tensors and scores predictions.  It
knows nothing of models: the harness runs a model over ``inputs``, takes the arg-max
prediction at every position, and hands those predictions back to :meth:`Task.score`.

Conventions (shared with Zoology and lm-eval's loglikelihood view):

- ``inputs[:, t]`` is the token at position ``t``; ``targets[:, t]`` is the token the
  model must predict *at* position ``t`` (already shifted), or ``-100`` where nothing is
  scored.
- Every split is generated from its own stream, seeded by ``(task name, split, seed)``,
  so the same config, split and seed give identical tensors in any process.

No-skill floor.  ``chance`` (uniform guessing) is not the only score a model gets without
the skill a probe measures: each task declares *trivial strategies* (:meth:`Task.
trivial_predictions`: rules that need no mixing of the kind the probe tests, such as
guessing a value seen in the context or copying the input), and the leaderboard
normalises against the strongest of chance and those strategies' scores on the split
being scored (:meth:`Task.floor`): ``(score - floor) / (1 - floor)``.

Test-set audit (quick presets; the tests check each item):

- multiplication: pairs are drawn without replacement and every split is a disjoint set of
  pairs (fixed hash buckets).  With ``n_digits == m_digits`` the bucket is a function of the
  unordered pair, so the swap ``(b, a)`` of a val/test pair (same product) is never in
  train; with different digit counts the swap is a different example (other format) and
  is not held out.  Before: the quick test split held 329 distinct pairs in 512 rows and
  81% of its rows had their swap in train.  Asking for more distinct pairs than a split
  holds raises an error.
- modular_addition: splits partition the unordered pairs ``{a, b}`` (both orders go to
  one split); before, about ``train_fraction`` of val/test pairs had their swap in train
  (48% of the quick test split, 30% at ``paper``).
- mqar, needle, flipflop, induction, state_tracking: independent streams over spaces too
  large to repeat; no row of test repeats in train (full quick train split) or within test.
  Short prefixes do repeat (e.g. state tracking's first few positions) by construction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

IGNORE = -100
"""Target value for positions that are not scored."""


class TaskConfig(BaseModel):
    """Knobs common to every task; each task subclasses this with its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_train: int = Field(20_000, ge=1, description="training examples (a fixed set)")
    n_val: int = Field(500, ge=1, description="validation examples (learning-rate choice)")
    n_test: int = Field(1_000, ge=1, description="test examples per test split")


class LengthOODConfig(TaskConfig):
    """For tasks with an ``ood_len`` split: ``ood_seq_len`` defaults to twice ``seq_len``.

    Subclasses may redeclare both fields (bounds, descriptions) and check
    ``ood_seq_len > seq_len`` themselves."""

    seq_len: int = Field(64, ge=1, description="sequence length T of train/val/test")
    ood_seq_len: int | None = Field(None, description="length of the ood_len split (default 2 * seq_len)")

    @model_validator(mode="before")
    @classmethod
    def _default_ood_seq_len(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("ood_seq_len") is None:
            data = dict(data)
            try:
                data["ood_seq_len"] = 2 * int(data.get("seq_len", cls.model_fields["seq_len"].default))
            except (TypeError, ValueError):
                pass  # an invalid seq_len gets its own error from the field
        return data


class LengthOODSplits:
    """Task mixin for a :class:`LengthOODConfig`: ``train``, ``val``, ``test`` at ``seq_len``
    and ``ood_len`` at ``ood_seq_len``."""

    config: LengthOODConfig

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test", "ood_len")

    def split_len(self, split: str) -> int:
        c = self.config
        assert c.ood_seq_len is not None
        return c.ood_seq_len if split == "ood_len" else c.seq_len


@dataclass(frozen=True)
class TaskData:
    """A split's tensors: ``inputs`` and ``targets``, both ``int64 [n, T]``."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.dim() != 2:
            raise ValueError(
                f"inputs and targets must both be [n, T]; got {tuple(self.inputs.shape)} "
                f"and {tuple(self.targets.shape)}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass(frozen=True)
class TextExample:
    """A (prompt, answer) rendering of one example, for evaluating text language models."""

    prompt: str
    answer: str


def scored_rows(data: TaskData) -> Iterator[tuple[list[int], list[int], list[int]]]:
    """``(inputs row, targets row, scored positions)`` of every example that has a scored
    position, as Python lists (for text renderings)."""
    for x, y in zip(data.inputs.tolist(), data.targets.tolist()):
        scored = [t for t, v in enumerate(y) if v != IGNORE]
        if scored:
            yield x, y, scored


def split_generator(task: str, split: str, seed: int) -> torch.Generator:
    """A CPU generator seeded by a stable hash of ``(task, split, seed)``."""
    digest = hashlib.sha256(f"{task}/{split}/{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def strategy_generator(task: str, data: TaskData, strategy: str) -> torch.Generator:
    """A CPU generator for a trivial strategy's random guesses, seeded by a hash of the
    task, the strategy name and the data (never by the global RNG)."""
    h = hashlib.sha256(f"{task}/{strategy}/".encode())
    for t in (data.inputs, data.targets):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(h.digest()[:8], "little") >> 1)


def normalise(score: float, floor: float) -> float:
    """``(score - floor) / (1 - floor)``: 0 at the no-skill floor, 1 for a perfect score."""
    if floor >= 1.0:
        raise ValueError(f"a no-skill floor of {floor} leaves nothing to normalise against")
    return (score - floor) / (1.0 - floor)


def masked_accuracy(preds: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy over positions whose target is not ``IGNORE``."""
    mask = targets != IGNORE
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    return float((preds[mask] == targets[mask]).sum()) / n


class Task:
    """Base class for a registered task.

    Subclasses set ``name``, ``Config``, ``presets`` and implement :meth:`generate`;
    most also override :meth:`score` and :attr:`chance`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    description: ClassVar[str] = ""
    metric: ClassVar[str] = "accuracy"
    """The headline metric, ranked on the leaderboard (higher is better)."""
    val_split: ClassVar[str] = "val"
    test_split: ClassVar[str] = "test"
    eval_train: ClassVar[bool] = False
    """Also score the train split at every evaluation step (for fit curves)."""
    synthetic: ClassVar[bool] = True
    """Generated from a seed (a probe); ``False`` for a task that reads the user's data (text)."""
    scores_loglikelihood: ClassVar[bool] = False
    """Also hand the negative log-likelihood of every scored target to
    :meth:`score_loglikelihood` (language modelling's metrics need more than arg-max)."""
    curve_splits: ClassVar[tuple[str, ...]] = ()
    """Splits besides ``val_split`` scored at every evaluation step (stored as curves);
    never used to choose anything, only to report (e.g. grokking's test curve)."""

    def __init__(self, config: TaskConfig) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    # -- shape of the task -------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split, ``train`` first. Out-of-distribution splits follow ``test``."""
        return ("train", "val", "test")

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.splits if s != "train")

    def split_size(self, split: str) -> int:
        c = self.config
        return {"train": c.n_train, "val": c.n_val}.get(split, c.n_test)

    @property
    def chance(self) -> float:
        """The headline metric's value for a model that guesses uniformly."""
        return 1.0 / self.vocab_size

    # -- data --------------------------------------------------------------------
    def prepare(self) -> None:
        """Read what the task's data comes from (files, a dataset) and raise a
        :class:`~tasks.registry.TaskConfigError` naming the fix if it cannot be used.  The
        harness calls it before a run is stored; probes generate their data and read nothing."""

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        raise NotImplementedError

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name} has no split {split!r}; its splits are {', '.join(self.splits)}")

    # -- scoring -----------------------------------------------------------------
    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        """Metrics for arg-max predictions ``preds [n, T]`` against ``targets [n, T]``."""
        return {"accuracy": masked_accuracy(preds, targets)}

    def score_loglikelihood(self, nll: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        """Metrics from ``nll``, the negative log-likelihood (nats, float64) of every scored
        target in the order of ``targets[targets != IGNORE]``; called only for tasks that set
        :attr:`scores_loglikelihood`."""
        return {}

    # -- checkpoints ---------------------------------------------------------------
    def checkpoint_meta(self) -> dict[str, Any]:
        """JSON a checkpoint of a model trained on this task records beside its weights
        (a text task: its tokenizer)."""
        return {}

    def checkpoint_files(self) -> dict[str, bytes]:
        """Files a checkpoint must carry beside its weights (name -> content; e.g. a tokenizer)."""
        return {}

    # -- no-skill floor ------------------------------------------------------------
    def trivial_predictions(self, data: TaskData, split: str) -> dict[str, torch.Tensor]:
        """Strategy name -> arg-max predictions ``[n, T]`` (the shape of ``data.targets``) of
        each trivial strategy that needs no sequence mixing of the kind the task probes.
        Deterministic given ``data``: any randomness comes from :func:`strategy_generator`.
        Only scored positions matter.  The base class declares none."""
        return {}

    def no_skill(self, data: TaskData, split: str) -> dict[str, float]:
        """``{"chance": chance, strategy: headline metric of its predictions, ...}``."""
        out = {"chance": self.chance}
        for name, preds in self.trivial_predictions(data, split).items():
            if preds.shape != data.targets.shape:
                raise ValueError(
                    f"{self.name}: strategy {name!r} predicted {tuple(preds.shape)}, "
                    f"targets are {tuple(data.targets.shape)}"
                )
            out[name] = self.score(preds, data.targets, split)[self.metric]
        return out

    def floor(self, data: TaskData, split: str) -> tuple[float, str]:
        """``(value, name)`` of the strongest entry of :meth:`no_skill` (chance on ties;
        NaN scores, from splits with nothing scored, are skipped)."""
        best_name, best = "chance", self.chance
        for name, v in self.no_skill(data, split).items():
            if v == v and v > best:
                best_name, best = name, v
        return best, best_name

    def curve_metrics(self, curve: list[tuple[int, str, str, float]]) -> dict[str, float | None]:
        """Metrics read off the learning curve ``[(step, split, name, value), ...]``."""
        return {}

    # -- text --------------------------------------------------------------------
    def render(self, data: TaskData) -> list[TextExample]:
        """Text renderings of examples, for pretrained language models."""
        raise NotImplementedError(f"{self.name} has no text rendering")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
