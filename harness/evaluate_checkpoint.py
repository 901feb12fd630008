"""``archbench eval``: score a saved checkpoint and store the numbers against it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from harness import environment
from harness.errors import UserError
from harness.evaluate import check_vocab, score
from harness.store import Store
from models import load_checkpoint
from models.checkpoint import file_sha256
from tasks import Task, TaskData, make_task


def evaluate_checkpoint(path: str | Path, *, task: str | None = None, preset: str | None = None,
                        overrides: dict[str, Any] | None = None, data_file: str | Path | None = None,
                        splits: list[str] | None = None, seed: int | None = None) -> list[dict[str, Any]]:
    """Metric rows for ``path`` on its task (or another setting/task, or a data file).

    With no ``task``, the checkpoint's own task is used, its knobs overridden by
    ``overrides`` (say a longer ``seq_len``); with ``data_file`` the file's examples are
    scored by that task's metrics as split ``file`` (:func:`load_data`).  Nothing is stored here: bad input
    fails before any database is touched; see :func:`store_evaluation`.
    """
    if str(path).startswith("hf:"):
        raise UserError("a Hugging Face model is scored by lm-eval: add --lm-tasks (e.g. --lm-tasks archbench_needle)")
    path = Path(path)
    model, meta = load_checkpoint(path)
    trained = meta.get("task") or {}
    name = task or trained.get("name")
    if name is None:
        raise UserError(f"{path} does not record its task; pass --task NAME")
    if task is None or task == trained.get("name"):
        params = dict(trained.get("params", {})) if preset is None else {}
    else:
        params = {}
    params.update(overrides or {})
    t = make_task(name, params, preset)
    if t.vocab_size > model.vocab_size:
        raise UserError(
            f"task {name} with these settings uses {t.vocab_size} tokens but the model knows {model.vocab_size}; "
            f"keep vocab_size <= {model.vocab_size}"
        )
    seed = meta.get("seed", 0) if seed is None else seed

    datasets = {}
    data_sha = None
    if data_file is not None:
        data, data_sha = load_data(t, data_file, model.vocab_size)
        datasets["file"] = data
    else:
        wanted = list(dict.fromkeys(splits or t.eval_splits))
        unknown = [s for s in wanted if s not in t.splits]
        if unknown:  # before generating any split
            raise UserError(f"task {name} has no split {', '.join(map(repr, unknown))}; "
                            f"use --split with one of its splits: {', '.join(t.splits)}")
        for s in wanted:
            datasets[s] = t.generate(s, seed=seed)

    sha = meta.get("weights_sha256") or file_sha256(path / "model.safetensors")
    rows = []
    for split, data in datasets.items():
        for metric, value in score(model, t, data, split).items():
            rows.append(dict(checkpoint_sha256=sha, checkpoint_path=str(path.resolve()), run_id=meta.get("run_id"),
                             task=name, task_config=t.config.model_dump(mode="json"),
                             data_file=str(data_file) if data_file else None, data_sha256=data_sha,
                             split=split, name=metric,
                             value=value, n_examples=len(data)))
    return rows


def load_data(task: Task, source: str | Path, vocab_size: int) -> tuple[TaskData, str | None]:
    """A test set from ``source`` and the sha256 of its file (``None`` for a hub dataset id).

    Tensor files (``.npz``/``.safetensors``: ``inputs``, ``labels``) work for every task; a
    task with a published text format reads it itself (:meth:`load`; flip-flop's strings
    from JSONL, Parquet, a saved or hub Hugging Face dataset)."""
    from tasks.files import TENSOR_SUFFIXES, load_tensor_file

    text_loader = getattr(task, "load", None)
    p = Path(source)
    tensors = p.suffix.lower() in TENSOR_SUFFIXES
    _check_readable(p, tensors)
    if not tensors and text_loader is None:
        raise UserError(f"cannot use --data {source}: task {task.name} reads test sets from .npz or "
                        f".safetensors files (inputs, labels [n, T])")
    try:
        data = load_tensor_file(source) if tensors else text_loader(source)
        check_vocab(data, vocab_size, f"--data {source}")
    except (OSError, ValueError, KeyError) as e:  # TaskFileError is a ValueError
        raise UserError(f"cannot use --data {source}: {e}") from None
    return data, data_sha256(Path(source))


# how each tensor format begins: .npz is a zip archive (an empty one starts with its end record)
_MAGIC = {".npz": (b"PK\x03\x04", b"PK\x05\x06")}


def _check_readable(p: Path, tensors: bool) -> None:
    """Refuse a data path that exists but cannot be what --data needs, with the fix; a path
    that does not exist is left to the loaders (a text-format task may read it as a hub id)."""
    if not p.exists():
        return
    if tensors and p.is_dir():
        raise UserError(f"cannot use --data {p}: it is a directory; pass the .npz or .safetensors file itself")
    if not os.access(p, os.R_OK):
        raise UserError(f"cannot use --data {p}: permission denied; make it readable (chmod +r) or pass a copy")
    magic = _MAGIC.get(p.suffix.lower())
    if magic and p.is_file():
        try:
            with open(p, "rb") as f:
                head = f.read(4)
        except OSError as e:
            raise UserError(f"cannot use --data {p}: cannot read it ({e.strerror or e})") from None
        if not head.startswith(magic):
            raise UserError(f"cannot use --data {p}: not an .npz file (no zip archive inside); write one with "
                            f"numpy.savez(path, inputs=..., labels=...)")


def data_sha256(p: Path) -> str | None:
    """sha256 of a file; of a saved dataset directory, over its files' paths and hashes;
    ``None`` for what is not on disk (a hub dataset id)."""
    if p.is_file():
        return file_sha256(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\n".encode())
        return h.hexdigest()
    return None


def store_evaluation(store: Store, rows: list[dict[str, Any]]) -> None:
    env_id = store.environment(environment.describe("cpu"))
    store.record_evaluation([{**r, "environment_id": env_id} for r in rows])


def evaluate_and_store(path: str | Path, db: str | None = None, *, sets: list[str] | None = None,
                       **kwargs: Any) -> list[dict[str, Any]]:
    """``archbench eval``: :func:`evaluate_checkpoint` (``sets``: ``--set key=value`` task knob
    overrides, other keywords as there), then the rows stored against the checkpoint in the
    store at ``db``.  The store is opened only once every row is scored, so bad input leaves
    no store behind."""
    from harness.config import parse_sets

    rows = evaluate_checkpoint(path, overrides=parse_sets(sets), **kwargs)
    store_evaluation(Store(db), rows)
    return rows
