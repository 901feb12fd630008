"""Training one run: the whole loop in one place (nanoGPT-style).

:func:`train` builds the task's data and the model from explicit seeds, trains with AdamW
(warmup + cosine), evaluates every ``eval_every`` steps, stops early at the threshold,
scores every evaluation split at the end, optionally saves a checkpoint, and returns a
:class:`TrainResult`.  It writes nothing else: what it has to say goes to callbacks
(:mod:`harness.callbacks`), so it runs without a store.  A loss that turns NaN/inf ends the
run as ``diverged``; any other exception as ``failed`` with its traceback; Ctrl-C or
SIGTERM as ``interrupted`` at the last step that finished.

:func:`train_run` is the stored way: it refuses a model too big for this machine, claims
the run (skipping one that is done or owned by a live process), and trains with a
:class:`~harness.callbacks.StoreCallback` that records the learning curve as it comes and
writes status, final scores and checkpoint in one transaction.  A run killed outright stays
``running`` with a dead pid and is redone by the next sweep.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness import environment
from harness.callbacks import ProgressBar, StoreCallback, emit
from harness.config import RunConfig, check_device, run_id
from harness.errors import UserError
from harness.evaluate import score
from harness.identity import identity_columns
from harness.store import Store
from models import LM, save_checkpoint
from models.backbone import param_count
from models.checkpoint import CheckpointError, check_size, fits_in_memory
from tasks import IGNORE, Task, TaskData, make_task


class Diverged(RuntimeError):
    pass


@dataclass
class _Reached:
    """The last optimizer step a run finished, for the record of a run cut short."""

    step: int = 0


@dataclass
class RunResult:
    """What :func:`train_run` returns (and a sweep's worker sends back): small and picklable."""

    run_id: str
    status: str  # done | failed | diverged | interrupted | skipped:<reason>
    step: int | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    final: dict[tuple[str, str], float | None] = field(default_factory=dict)
    checkpoint: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class TrainResult(RunResult):
    """What :func:`train` returns: a run's outcome, plus the trained model when it is done.

    ``scores`` holds the headline numbers (val_score, test_score, chance, floor, n_params, ...),
    ``final`` every (split, metric) at the end, ``checkpoint`` its directory (if one was written)."""

    model: LM | None = None


def arch_label(cfg: RunConfig) -> str:
    """The architecture's name, plus its options where they differ from the defaults."""
    from models import get_mixer

    defaults = get_mixer(cfg.arch.name).Options().model_dump(mode="json")
    diff = {k: v for k, v in cfg.arch.options.items() if defaults.get(k) != v}
    extra = [f"{k}={v}" for k, v in sorted(diff.items())]
    if cfg.arch.mlp != "swiglu":
        extra.append(f"mlp={cfg.arch.mlp}")
    if cfg.arch.norm != "rmsnorm":
        extra.append(f"norm={cfg.arch.norm}")
    return cfg.arch.name + (f"[{','.join(extra)}]" if extra else "")


def run_fields(cfg: RunConfig, sweep: str | None) -> dict[str, Any]:
    config = cfg.model_dump(mode="json")
    return dict(
        config=config, arch=cfg.arch.name, arch_label=arch_label(cfg), size=cfg.arch.size_label,
        task=cfg.task.name, task_setting=cfg.task.setting_label, lr=cfg.optimizer.lr, seed=cfg.seed, sweep=sweep,
        **identity_columns(config),
    )


def pick_device(name: str) -> torch.device:
    """The torch device of a run config's ``device`` (:func:`parse_run_config` already refused
    an unavailable one; this repeats the check for configs built another way)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    return torch.device(name)


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: LM, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices (and embeddings), not on gains or biases."""
    o = cfg.optimizer
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps)


def total_steps(cfg: RunConfig, n_train: int) -> tuple[int, int]:
    """(steps, batch size) from the train config."""
    t = cfg.train
    bs = n_train if t.batch_size == "full" else min(int(t.batch_size), n_train)
    steps = t.steps if t.steps is not None else max(1, math.ceil(t.epochs * n_train / bs))
    return steps, bs


class _Batches:
    """Shuffled passes over a fixed training set, from an explicit seed."""

    def __init__(self, data: TaskData, batch_size: int, seed: int) -> None:
        self.data, self.bs = data, batch_size
        self.g = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.data)
        if self.bs >= n:
            return self.data.inputs, self.data.targets
        if self.pos + self.bs > self.order.numel():
            self.order, self.pos = torch.randperm(n, generator=self.g), 0
        idx = self.order[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return self.data.inputs[idx], self.data.targets[idx]


def check_fits(cfg: RunConfig) -> None:
    """Refuse a config whose float32 weights alone exceed this machine's memory (a typo in
    ``arch.d_model``), before anything is written for the run: building it would end in an
    allocation error, or swap the machine to a halt.  The same check as loading a checkpoint
    (:func:`models.checkpoint.check_size`).  It needs the task's vocabulary, which is why
    :func:`parse_run_config` does not do it.

    The weights outside the mixers (embedding, MLPs, norms) are counted first, on the meta
    device and without building a mixer: a run that goes ahead has its mixers constructed only
    by the run itself (a plugin mixer's constructor may count its calls, or be slow).  Only a
    config that is refused anyway is counted whole, for the message."""
    try:
        vocab_size = make_task(cfg.task.name, cfg.task.params).vocab_size
        floor = param_count(cfg.arch, vocab_size, mixers=False)
    except Exception:  # noqa: BLE001 - what cannot be counted fails where it is built, as a failed run
        return
    if fits_in_memory(floor):
        return
    try:
        n_params = param_count(cfg.arch, vocab_size)
    except Exception:  # noqa: BLE001 - a mixer that cannot be built on the meta device: the floor says enough
        n_params = floor
    try:
        check_size(n_params, "the run config", fix="lower arch.d_model or arch.n_layers (`--set arch.d_model=128` "
                   "for train), or train it on a machine with more memory")
    except CheckpointError as e:
        raise UserError(str(e)) from None


def check_task(cfg: RunConfig) -> None:
    """Let the task read its data source (a text task's files) before anything is stored: a
    missing file is one clear error, not a failed run with a traceback."""
    make_task(cfg.task.name, cfg.task.params).prepare()


def train_run(cfg: RunConfig, store: Store, *, sweep: str | None = None, checkpoint_dir: str | Path = "checkpoints",
              progress: bool = True, retry_failed: bool = False, token: str | None = None) -> RunResult:
    """Train, evaluate and store one run (``cfg`` must be resolved): :func:`train` with a
    :class:`StoreCallback` (claim, curve, final record) and, with ``progress``, a bar."""
    check_fits(cfg)  # before the store hears of the run
    rid = run_id(cfg)
    device = pick_device(cfg.device)
    fields = run_fields(cfg, sweep)
    fields["environment_id"] = store.environment(environment.describe(device))
    keeper = StoreCallback(store, rid, fields)
    reason = keeper.claim(retry_failed=retry_failed, token=token)
    if reason is not None:
        return RunResult(rid, f"skipped:{reason}")
    callbacks: list[Any] = [keeper]
    if progress:  # first, so the bar is gone before the run's record is written
        label = f"{arch_label(cfg)} {cfg.task.name} lr={cfg.optimizer.lr:g} seed={cfg.seed}"
        callbacks.insert(0, ProgressBar(label))
    r = train(cfg, callbacks, checkpoint_dir=checkpoint_dir, device=device)
    return RunResult(r.run_id, r.status, r.step, r.scores, r.final, r.checkpoint, r.error, r.seconds)


def train_to_store(cfg: RunConfig, db: str | None = None, **kwargs: Any) -> RunResult:
    """``archbench train``: :func:`train_run` into the store at ``db`` (keywords as there).  The
    size check runs before the store is opened, so a refused config leaves no store behind."""
    check_fits(cfg)
    check_task(cfg)
    return train_run(cfg, Store(db), **kwargs)


def train(cfg: RunConfig, callbacks: Sequence[Any] = (), *, checkpoint_dir: str | Path | None = None,
          device: torch.device | None = None) -> TrainResult:
    """Train one run and return its result; no store needed.

    ``callbacks`` hear about the run as it goes (:mod:`harness.callbacks`).  With
    ``checkpoint_dir`` the weights are saved to ``checkpoint_dir/<run id>``; the loop's only
    side effect.  A loss that turns NaN/inf ends the run as ``diverged``, any other exception
    as ``failed`` (with its traceback); both are returned, not raised.  Ctrl-C is reported
    (status ``interrupted``, at the last step that finished) and raised again.
    """
    rid = run_id(cfg)
    device = device or pick_device(cfg.device)
    cbs = list(callbacks)
    t0 = time.perf_counter()
    reached = _Reached()
    try:
        result = _train(cfg, rid, device, None if checkpoint_dir is None else Path(checkpoint_dir), cbs, t0, reached)
        emit(cbs, "on_end", result)
        return result
    except KeyboardInterrupt:
        emit(cbs, "on_end", TrainResult(rid, "interrupted", reached.step, error="interrupted (Ctrl-C or SIGTERM)",
                                        seconds=time.perf_counter() - t0))
        raise
    except Diverged as e:
        result = TrainResult(rid, "diverged", int(e.args[1]), error=str(e.args[0]), seconds=time.perf_counter() - t0)
    except Exception as e:  # a bug or an impossible run: report it, let a sweep go on
        result = TrainResult(rid, "failed", error="".join(traceback.format_exception(e)),
                             seconds=time.perf_counter() - t0)
    emit(cbs, "on_end", result)
    return result


def _train(cfg: RunConfig, rid: str, device: torch.device, ckpt_dir: Path | None, callbacks: list[Any],
           t0: float, reached: _Reached) -> TrainResult:
    task: Task = make_task(cfg.task.name, cfg.task.params)
    autocast = torch.bfloat16 if cfg.dtype == "bfloat16" else None
    train_data = task.generate("train", seed=cfg.seed)
    eval_data = {s: task.generate(s, seed=cfg.seed) for s in task.eval_splits}
    if getattr(task, "eval_train", False):
        eval_data = {"train": train_data, **eval_data}
    val = eval_data[task.val_split]
    if cfg.train.eval_examples:
        val = TaskData(val.inputs[: cfg.train.eval_examples], val.targets[: cfg.train.eval_examples])

    torch.manual_seed(cfg.seed)
    model = LM(cfg.arch, task.vocab_size).to(device)
    opt = make_optimizer(model, cfg)
    steps, bs = total_steps(cfg, len(train_data))
    o = cfg.optimizer
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, o.warmup_steps, o.schedule, o.min_lr_ratio))
    batches = _Batches(train_data, bs, cfg.seed)
    curve: list[tuple[int, str, str, float]] = []
    emit(callbacks, "on_start", rid, steps)

    def evaluate_curve(step: int) -> float:
        splits = {task.val_split: val}
        if "train" in eval_data:
            splits["train"] = eval_data["train"]
        for extra in task.curve_splits:  # reported only: the val split alone chooses and stops
            splits[extra] = eval_data[extra]
        rows = []
        for split, data in splits.items():
            for name, value in score(model, task, data, split, device,
                                     autocast).items():
                rows.append((split, name, value))
        curve.extend((step, sp, n, v) for sp, n, v in rows)
        emit(callbacks, "on_eval", step, rows)
        return dict(((sp, n), v) for sp, n, v in rows)[(task.val_split, task.metric)]

    model.train()
    step, val_score, loss_value, tokens = 0, None, float("nan"), 0
    while step < steps:
        x, y = batches.next()
        x, y = x.to(device), y.to(device)
        pos = y != IGNORE
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = model(x, pos)
        loss = F.cross_entropy(logits.float(), y[pos])
        tokens += int(x.numel())
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise Diverged(f"loss became {loss_value} at step {step + 1}", step + 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        sched.step()
        step += 1
        reached.step = step
        if step % cfg.train.eval_every == 0 or step == steps:
            val_score = evaluate_curve(step)
            emit(callbacks, "on_progress", step, loss_value, val_score, tokens)
            if cfg.train.early_stop is not None and val_score >= cfg.train.early_stop:
                break
        elif step % 10 == 0:
            emit(callbacks, "on_progress", step, loss_value, None, tokens)

    final: dict[tuple[str, str], float | None] = {}
    for split, data in eval_data.items():
        for name, value in score(model, task, data, split, device, autocast).items():
            final[(split, name)] = value
    for name, value in task.curve_metrics(curve).items():
        final[("curve", name)] = value
    ckpt = None
    if ckpt_dir is not None:
        ckpt = str(ckpt_dir / rid)
        sha = save_checkpoint(model, ckpt, {"run_id": rid, "step": step, "task": cfg.task.model_dump(mode="json"),
                                            "seed": cfg.seed, **task.checkpoint_meta()},
                              files=task.checkpoint_files())
        emit(callbacks, "on_checkpoint", ckpt, sha, step)
    floor, strategy = task.floor(eval_data[task.test_split], task.test_split)
    scores = dict(metric=task.metric, val_score=final[(task.val_split, task.metric)],
                  test_score=final[(task.test_split, task.metric)], chance=task.chance, floor=floor,
                  floor_strategy=strategy, n_params=model.num_params())
    return TrainResult(rid, "done", step, scores, final, ckpt, seconds=time.perf_counter() - t0, model=model)
