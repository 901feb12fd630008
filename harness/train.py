"""Training one run: the whole loop in one place (nanoGPT-style).

``train_run(cfg, store)`` claims the run in the store, builds the task's data and the
model from explicit seeds, trains with AdamW (warmup + cosine), evaluates every
``eval_every`` steps (the learning curve goes to the store as it comes), stops early at
the threshold, scores every evaluation split at the end and saves a checkpoint: status,
final scores and checkpoint are written in one transaction.  A loss that turns NaN/inf
ends the run as ``diverged``; any other exception as ``failed`` with its traceback;
Ctrl-C or SIGTERM as ``interrupted``.  A run killed outright stays ``running`` with a
dead pid and is redone by the next sweep.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness import environment
from harness.config import RunConfig, check_device, run_id
from harness.evaluate import score
from harness.identity import identity_columns
from harness.store import Store
from models import LM, save_checkpoint
from tasks import IGNORE, Task, TaskData, make_task


class Diverged(RuntimeError):
    pass


@dataclass
class _Reached:
    """The last optimizer step a run finished, for the record of a run cut short."""

    step: int = 0


@dataclass
class RunResult:
    run_id: str
    status: str  # done | failed | diverged | interrupted | skipped:<reason>
    step: int | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    final: dict[tuple[str, str], float | None] = field(default_factory=dict)
    checkpoint: str | None = None
    error: str | None = None
    seconds: float = 0.0


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


class _Progress:
    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.3f} val {task.fields[acc]}"),
                                TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, loss=float("nan"), acc="-")

    def update(self, step: int, loss: float, acc: float | None = None) -> None:
        if self.bar is not None:
            kw = {"acc": f"{acc:.3f}"} if acc is not None else {}
            self.bar.update(self.task, completed=step, loss=loss, **kw)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train_run(cfg: RunConfig, store: Store, *, sweep: str | None = None, checkpoint_dir: str | Path = "checkpoints",
              progress: bool = True, retry_failed: bool = False) -> RunResult:
    """Train, evaluate and store one run (``cfg`` must be resolved)."""
    rid = run_id(cfg)
    device = pick_device(cfg.device)
    env = environment.describe(device)
    fields = run_fields(cfg, sweep)
    fields["environment_id"] = store.environment(env)
    reason = store.claim_run(rid, fields, retry_failed=retry_failed)
    if reason is not None:
        return RunResult(rid, f"skipped:{reason}")

    t0 = time.perf_counter()
    reached = _Reached()
    try:
        result = _train(cfg, rid, store, device, Path(checkpoint_dir), progress, t0, reached)
    except KeyboardInterrupt:
        store.finish_run(rid, status="interrupted", step=reached.step, duration_s=time.perf_counter() - t0,
                         error="interrupted (Ctrl-C or SIGTERM)")
        raise
    except Diverged as e:
        step = int(e.args[1])
        store.finish_run(rid, status="diverged", step=step, duration_s=time.perf_counter() - t0, error=str(e.args[0]))
        return RunResult(rid, "diverged", step, error=str(e.args[0]), seconds=time.perf_counter() - t0)
    except Exception as e:  # a bug or an impossible run: record it, let the sweep go on
        err = "".join(traceback.format_exception(e))
        store.finish_run(rid, status="failed", step=None, duration_s=time.perf_counter() - t0, error=err)
        return RunResult(rid, "failed", error=err, seconds=time.perf_counter() - t0)
    return result


def _train(cfg: RunConfig, rid: str, store: Store, device: torch.device, ckpt_dir: Path,
           progress: bool, t0: float, reached: _Reached) -> RunResult:
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
    bar = _Progress(progress, steps, f"{arch_label(cfg)} {cfg.task.name} lr={o.lr:g} seed={cfg.seed}")

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
        store.record_curve(rid, step, rows)
        return dict(((sp, n), v) for sp, n, v in rows)[(task.val_split, task.metric)]

    model.train()
    step, val_score, loss_value = 0, None, float("nan")
    try:
        while step < steps:
            x, y = batches.next()
            x, y = x.to(device), y.to(device)
            pos = y != IGNORE
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits = model(x, pos)
            loss = F.cross_entropy(logits.float(), y[pos])
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
                bar.update(step, loss_value, val_score)
                if cfg.train.early_stop is not None and val_score >= cfg.train.early_stop:
                    break
            elif step % 10 == 0:
                bar.update(step, loss_value)
    finally:
        bar.close()

    final: dict[tuple[str, str], float | None] = {}
    for split, data in eval_data.items():
        for name, value in score(model, task, data, split, device, autocast).items():
            final[(split, name)] = value
    for name, value in task.curve_metrics(curve).items():
        final[("curve", name)] = value
    ckpt_path = ckpt_dir / rid
    sha = save_checkpoint(model, ckpt_path, {"run_id": rid, "step": step, "task": cfg.task.model_dump(mode="json"),
                                             "seed": cfg.seed})
    floor, strategy = task.floor(eval_data[task.test_split], task.test_split)
    scores = dict(metric=task.metric, val_score=final[(task.val_split, task.metric)],
                  test_score=final[(task.test_split, task.metric)], chance=task.chance, floor=floor,
                  floor_strategy=strategy, n_params=model.num_params())
    duration = time.perf_counter() - t0
    store.finish_run(rid, status="done", step=step, duration_s=duration,
                     final=[(sp, n, v) for (sp, n), v in final.items()], scores=scores,
                     checkpoint=(str(ckpt_path), sha))
    return RunResult(rid, "done", step, scores, final, str(ckpt_path), seconds=duration)
