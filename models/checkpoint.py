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

from archbench.validation import format_validation_error

from models.backbone import LM, param_count
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


def save_checkpoint(model: LM, path: str | Path, meta: dict[str, Any], files: dict[str, bytes] | None = None) -> str:
    """Write ``model`` and ``meta`` (task spec, run id, step...) to ``path``; return the weights' sha256.

    ``files`` (name -> content) are written beside them (a text model's ``tokenizer.json``),
    inside the same atomic rename."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for name, content in (files or {}).items():
        if name in (WEIGHTS, CONFIG) or Path(name).name != name:
            raise ValueError(f"a checkpoint cannot carry a file named {name!r}")
        (tmp / name).write_bytes(content)
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
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / CONFIG} holds no {FORMAT} config (a JSON object); "
                              f"pass a directory written by `archbench train`")
    if config.get("format") != FORMAT:
        found = f"format {config['format']!r}" if "format" in config else "no format"
        raise CheckpointError(f"{path / CONFIG} has {found}, expected {FORMAT!r}: not a checkpoint this "
                              f"archbench reads; pass a directory written by `archbench train` (or upgrade archbench)")
    return config


def _names(keys: set[str]) -> str:
    shown = sorted(keys)[:3]
    return ", ".join(shown) + (f" (and {len(keys) - len(shown)} more)" if len(keys) > len(shown) else "")


def check_state(state: dict[str, torch.Tensor], model: LM, where: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensors of ``state`` that do not fit
    ``model``: absent, extra, of another shape, or not floating point where the model's are."""
    fix = f"the weights and {CONFIG} come from different models or were damaged; re-train or re-copy the checkpoint"
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing:
        raise CheckpointError(f"{where} lacks tensor(s) {_names(missing)} of the model in {CONFIG}; {fix}")
    if unexpected:
        raise CheckpointError(f"{where} holds tensor(s) {_names(unexpected)} that the model in {CONFIG} "
                              f"does not have; {fix}")
    for name in sorted(own):
        want, got = own[name], state[name]
        if got.shape != want.shape:
            raise CheckpointError(f"{where}: tensor {name} has shape {list(got.shape)} but the model in {CONFIG} "
                                  f"needs {list(want.shape)}; {fix}")
        if got.is_floating_point() != want.is_floating_point():
            raise CheckpointError(f"{where}: tensor {name} holds {got.dtype} but the model in {CONFIG} "
                                  f"needs {want.dtype}; {fix}")


def memory_bytes() -> int:
    """This machine's physical memory in bytes (1 TiB where the system does not say)."""
    try:
        n = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        n = -1
    return n if n > 0 else 1 << 40


def fits_in_memory(n_params: int) -> bool:
    """Whether ``n_params`` float32 weights alone fit in this machine's memory."""
    return 4 * n_params <= memory_bytes()


def check_size(n_params: int, where: str, fix: str | None = None) -> None:
    """Raise :class:`CheckpointError` when ``n_params`` float32 weights alone exceed this
    machine's memory: such a model cannot be built, and trying ends in an allocation error.
    This catches impossible configs (a typo in d_model), not tight ones: loading also holds
    the stored tensors, so a model just under the limit may still not fit.  ``fix`` replaces
    the advice for a checkpoint with the caller's (training checks a run config the same way)."""
    if not fits_in_memory(n_params):
        need, have = 4 * n_params, memory_bytes()
        fix = fix or "check arch.d_model, arch.n_layers and vocab_size in it, or load it on a machine with more memory"
        raise CheckpointError(
            f"{where} describes a model of {n_params:,} parameters ({need / 2**30:,.1f} GiB as float32), "
            f"more than this machine's {have / 2**30:,.1f} GiB of memory; {fix}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[LM, dict[str, Any]]:
    """The model and its config dict; raises :class:`CheckpointError` on any damage."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = read_checkpoint_config(path)
    try:
        arch = ArchConfig(**config["arch"])
        vocab_size = int(config["vocab_size"])
        check_size(param_count(arch, vocab_size), str(path / CONFIG))  # before allocating anything
        model = LM(arch, vocab_size)
    except CheckpointError:
        raise
    except ValidationError as e:
        why = format_validation_error(e, prefix=("arch",))  # a whole-config error reads "arch: ..."
        raise CheckpointError(f"{path / CONFIG} does not describe a model this archbench can build ({why}); "
                              f"re-train or re-copy the checkpoint") from None
    except KeyError as e:
        raise CheckpointError(f"{path / CONFIG} does not describe a model this archbench can build: "
                              f"it lacks {e}; re-train or re-copy the checkpoint") from None
    except (TypeError, ValueError, LookupError) as e:
        raise CheckpointError(f"{path / CONFIG} does not describe a model this archbench can build: "
                              f"{' '.join(str(e).split())}") from None
    expected = config.get("weights_sha256")
    if expected and file_sha256(path / WEIGHTS) != expected:
        raise CheckpointError(
            f"{path / WEIGHTS} does not match the sha256 in {CONFIG} (truncated or modified); re-train or re-copy it"
        )
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path / WEIGHTS} ({e}); the file is truncated or damaged") from None
    check_state(state, model, str(path / WEIGHTS))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())  # torch's message spans lines; the CLI prints one
        raise CheckpointError(f"{path / WEIGHTS} does not fit its config: {detail}") from None
    return model.to(device), config
