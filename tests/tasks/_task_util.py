"""Helpers shared by the task tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from tasks import IGNORE, TaskData

REPO_ROOT = Path(__file__).resolve().parents[2]


def row_hashes(data: TaskData) -> set[bytes]:
    """One digest per example (inputs and targets), to test splits for shared rows."""
    x = torch.cat((data.inputs, data.targets), dim=1).contiguous().numpy()
    return {hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x}


def data_digest(data: TaskData) -> str:
    h = hashlib.sha256()
    for t in (data.inputs, data.targets):
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def wrong_preds(targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """Predictions that miss every scored position."""
    return torch.where(targets == IGNORE, 0, (targets + 1) % vocab)
