"""Scoring a model on task data: arg-max predictions at the scored positions (and, for tasks
that ask, the negative log-likelihood of every scored target, from the same forward pass)."""

from __future__ import annotations

import torch

from models import LM
from tasks import IGNORE, Task, TaskData

EVAL_BATCH = 256


@torch.no_grad()
def predict(model: LM, data: TaskData, device: torch.device | str = "cpu",
            batch_size: int = EVAL_BATCH, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Arg-max predictions ``[n, T]`` where ``data.targets`` is scored, ``-1`` elsewhere."""
    return predict_with_nll(model, data, device, batch_size, autocast_dtype, nll=False)[0]


@torch.no_grad()
def predict_with_nll(model: LM, data: TaskData, device: torch.device | str = "cpu",
                     batch_size: int = EVAL_BATCH, autocast_dtype: torch.dtype | None = None,
                     nll: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Arg-max predictions ``[n, T]`` (``-1`` where nothing is scored) and, with ``nll``, the
    negative log-likelihood (nats, float64) of every scored target, in the order of
    ``data.targets[data.targets != IGNORE]``."""
    was_training = model.training
    model.eval()
    preds = torch.full_like(data.targets, -1)
    losses: list[torch.Tensor] = []
    device = torch.device(device)
    try:
        for i in range(0, len(data), batch_size):
            x = data.inputs[i:i + batch_size].to(device)
            y = data.targets[i:i + batch_size].to(device)
            pos = y != IGNORE
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(x, pos)
            block = torch.full_like(y, -1)
            block[pos] = logits.argmax(-1)
            preds[i:i + batch_size] = block.cpu()
            if nll:
                logp = torch.log_softmax(logits.float(), -1)
                losses.append(-logp.gather(-1, y[pos].unsqueeze(-1)).squeeze(-1).double().cpu())
    finally:
        model.train(was_training)
    if not nll:
        return preds, None
    return preds, torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64)


def check_vocab(data: TaskData, vocab_size: int, what: str) -> None:
    """Token ids must fit the model's vocabulary (a clear error instead of an index crash)."""
    hi = int(data.inputs.max()) if data.inputs.numel() else 0
    lo = int(data.inputs.min()) if data.inputs.numel() else 0
    scored = data.targets[data.targets != IGNORE]
    if lo < 0 or hi >= vocab_size or (scored.numel() and (scored.min() < 0 or scored.max() >= vocab_size)):
        raise ValueError(
            f"{what} holds token ids outside the model's vocabulary [0, {vocab_size}); "
            f"it was made for another task setting or tokenizer"
        )


def score(model: LM, task: Task, data: TaskData, split: str, device="cpu",
          autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """The task's metrics of ``model`` on ``data``: :meth:`Task.score` of the arg-max
    predictions, plus :meth:`Task.score_loglikelihood` for tasks that set
    ``scores_loglikelihood`` (one forward pass serves both)."""
    wants_nll = bool(getattr(task, "scores_loglikelihood", False))
    preds, nll = predict_with_nll(model, data, device, autocast_dtype=autocast_dtype, nll=wants_nll)
    metrics = task.score(preds, data.targets, split)
    if nll is not None:
        metrics.update(task.score_loglikelihood(nll, data.targets, split))
    return metrics
