"""Scoring a model on task data: arg-max predictions at the scored positions."""

from __future__ import annotations

import torch

from models import LM
from tasks import IGNORE, Task, TaskData

EVAL_BATCH = 256


@torch.no_grad()
def predict(model: LM, data: TaskData, device: torch.device | str = "cpu",
            batch_size: int = EVAL_BATCH, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Arg-max predictions ``[n, T]`` where ``data.targets`` is scored, ``-1`` elsewhere."""
    was_training = model.training
    model.eval()
    preds = torch.full_like(data.targets, -1)
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
    finally:
        model.train(was_training)
    return preds


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
    return task.score(predict(model, data, device, autocast_dtype=autocast_dtype), data.targets, split)
