"""Checkpoints: ``model.safetensors`` plus ``config.json`` in one directory.

Loading never executes code: the weights are safetensors, the config is JSON holding the
architecture config, the vocabulary size and the task the model was trained on.  A
checkpoint is written to a temporary directory and renamed into place, so a crash never
leaves a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from models.backbone import LM
from models.config import ArchConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "archbench-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message says what is wrong and what to do."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: LM, path: str | Path, meta: dict[str, Any]) -> str:
    """Write ``model`` and ``meta`` (task spec, run id, step...) to ``path``; return the weights' sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS))
    sha = file_sha256(tmp / WEIGHTS)
    config = {
        "format": FORMAT,
        "arch": model.cfg.model_dump(mode="json"),
        "vocab_size": model.vocab_size,
        "weights_sha256": sha,
        **meta,
    }
    with open(tmp / CONFIG, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return sha


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass a directory written by `archbench train`")
    if not path.is_dir() or not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(
            f"{str(path)!r} is not an archbench checkpoint: expected a directory holding {CONFIG} and {WEIGHTS}"
        )
    try:
        config = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / CONFIG} is not valid JSON ({e}); the checkpoint is damaged, re-train or re-copy it") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG} is not an {FORMAT} config")
    return config


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[LM, dict[str, Any]]:
    """The model and its config dict; raises :class:`CheckpointError` on any damage."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = read_checkpoint_config(path)
    try:
        arch = ArchConfig(**config["arch"])
        model = LM(arch, int(config["vocab_size"]))
    except (KeyError, TypeError, ValidationError, ValueError, LookupError) as e:
        raise CheckpointError(f"{path / CONFIG} does not describe a model this archbench can build: {e}") from None
    expected = config.get("weights_sha256")
    if expected and file_sha256(path / WEIGHTS) != expected:
        raise CheckpointError(
            f"{path / WEIGHTS} does not match the sha256 in {CONFIG} (truncated or modified); re-train or re-copy it"
        )
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path / WEIGHTS} ({e}); the file is truncated or damaged") from None
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(
            f"{path / WEIGHTS} does not fit its config (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path / WEIGHTS} does not fit its config: {e}") from None
    return model.to(device), config
