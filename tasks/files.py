"""Reading published test sets from files.

Two shapes of file are understood:

- **tensor files** (``.npz`` or ``.safetensors``) holding integer ``inputs`` and ``labels``
  arrays, both ``[n, T]``, with ``-100`` where nothing is scored: :func:`load_tensor_file`.
  ``labels`` follow the task convention (``labels[:, t]`` is the token to predict at
  position ``t``).  ``targets`` is accepted as another name for ``labels``.
- **text datasets** with one string column (``text`` by default): a JSON-lines file, a
  Parquet file (read through pandas, which needs ``pyarrow`` or ``fastparquet``), or a
  Hugging Face dataset id such as ``synthseq/flipflop`` or a dataset saved with
  ``save_to_disk`` (both need the optional ``datasets`` package): :func:`read_text_column`.  Tasks turn the strings into tensors.

Every problem a user can cause is raised as :class:`TaskFileError` naming the fix.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.base import TaskData

TENSOR_SUFFIXES = (".npz", ".safetensors")
TEXT_SUFFIXES = (".jsonl", ".json", ".parquet")


class TaskFileError(ValueError):
    """A test-set file that cannot be read; the message names the problem and the fix."""


# -- tensor files ------------------------------------------------------------------

def load_tensor_file(path: str | Path) -> TaskData:
    """Read ``inputs`` and ``labels`` (``[n, T]`` integers, ``-100`` = not scored) from an
    ``.npz`` or ``.safetensors`` file."""
    p = Path(path)
    if not p.is_file():
        raise TaskFileError(f"no such file: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise TaskFileError(f"{p} is not a readable .npz file ({e})") from None
    elif suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise TaskFileError(f"{p} is not a readable .safetensors file ({e})") from None
    else:
        raise TaskFileError(
            f"cannot read {p}: tensor test sets must be .npz or .safetensors files"
        )

    label_key = "labels" if "labels" in arrays else "targets" if "targets" in arrays else None
    missing = [k for k, present in (("inputs", "inputs" in arrays), ("labels", label_key)) if not present]
    if missing:
        raise TaskFileError(
            f"{p} lacks the key(s) {', '.join(missing)}; a tensor test set holds `inputs` and "
            f"`labels` ([n, T] integers, -100 = not scored); found: {', '.join(sorted(arrays)) or 'nothing'}"
        )
    assert label_key is not None
    inputs, labels = arrays["inputs"], arrays[label_key]
    for key, a in (("inputs", inputs), (label_key, labels)):
        if not np.issubdtype(a.dtype, np.integer):
            raise TaskFileError(f"{p}: `{key}` must hold integers (token ids); found dtype {a.dtype}")
        if a.ndim != 2:
            raise TaskFileError(f"{p}: `{key}` must be 2-D [n, T]; found shape {tuple(a.shape)}")
    if inputs.shape != labels.shape:
        raise TaskFileError(
            f"{p}: `inputs` and `{label_key}` must have the same shape [n, T]; found "
            f"{tuple(inputs.shape)} and {tuple(labels.shape)}"
        )
    if inputs.size and inputs.min() < 0:
        raise TaskFileError(f"{p}: `inputs` holds negative token ids")
    return TaskData(torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(labels.astype(np.int64)))


def save_tensor_file(path: str | Path, data: TaskData) -> Path:
    """Write ``data`` as ``inputs``/``labels`` to an ``.npz`` or ``.safetensors`` file."""
    p = Path(path)
    arrays = {"inputs": data.inputs.numpy().astype(np.int64), "labels": data.targets.numpy().astype(np.int64)}
    if p.suffix.lower() == ".npz":
        np.savez(p, **arrays)
    elif p.suffix.lower() == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(p))
    else:
        raise TaskFileError(f"cannot write {p}: use a .npz or .safetensors name")
    return p


def check_token_range(data: TaskData, vocab_size: int, source: Any) -> TaskData:
    """Raise if ``data`` holds token ids outside ``[0, vocab_size)``."""
    for name, t in (("inputs", data.inputs), ("labels", data.targets)):
        vals = t[t != -100] if name == "labels" else t
        if vals.numel() and (int(vals.min()) < 0 or int(vals.max()) >= vocab_size):
            raise TaskFileError(
                f"{source}: `{name}` holds token ids outside [0, {vocab_size}) "
                f"(found {int(vals.min())}..{int(vals.max())}); check the task settings "
                f"(vocab_size) match the file"
            )
    return data


# -- text datasets -----------------------------------------------------------------

def read_text_column(source: str | Path, column: str = "text", split: str = "test") -> list[str]:
    """The strings of one column from a JSON-lines or Parquet file, or from a Hugging Face
    dataset id (``owner/name``; ``split`` picks its split)."""
    p = Path(source)
    suffix = p.suffix.lower()
    if p.is_file():
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(p, column)
        if suffix == ".parquet":
            return _read_parquet(p, column)
        raise TaskFileError(
            f"cannot read {p}: text test sets must be .jsonl or .parquet files or a "
            f"Hugging Face dataset id"
        )
    if p.is_dir():
        return _read_hf_saved(p, column, split)
    if suffix in TEXT_SUFFIXES or p.is_absolute() or str(source).startswith("."):
        raise TaskFileError(f"no such file: {p}")
    return _read_hf(str(source), column, split)


def _read_jsonl(p: Path, column: str) -> list[str]:
    out = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskFileError(f"{p}:{lineno}: not valid JSON ({e.msg}); expected one object per line") from None
            if not isinstance(row, dict) or column not in row:
                raise TaskFileError(f"{p}:{lineno}: expected an object with a {column!r} field")
            if not isinstance(row[column], str):
                raise TaskFileError(f"{p}:{lineno}: the {column!r} field must be a string")
            out.append(row[column])
    return out


def _read_parquet(p: Path, column: str) -> list[str]:
    if importlib.util.find_spec("pyarrow") is None and importlib.util.find_spec("fastparquet") is None:
        raise TaskFileError(f"reading Parquet ({p}) needs pyarrow: pip install pyarrow")
    import pandas as pd

    try:
        df = pd.read_parquet(p, columns=[column])
    except (KeyError, ValueError) as e:
        raise TaskFileError(f"{p}: cannot read column {column!r} ({e})") from None
    return [str(s) for s in df[column].tolist()]


def _datasets(what: str):  # noqa: ANN202
    if importlib.util.find_spec("datasets") is None:
        raise TaskFileError(f"reading {what} needs the datasets package: pip install datasets")
    import datasets  # optional dependency, imported only here

    return datasets


def _column(ds, column: str, what: str) -> list[str]:  # noqa: ANN001
    if column not in ds.column_names:
        raise TaskFileError(f"{what} has no column {column!r}; columns: {', '.join(ds.column_names)}")
    return list(ds[column])


def _read_hf_saved(p: Path, column: str, split: str) -> list[str]:
    """A Hugging Face dataset saved with ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``)."""
    datasets = _datasets(f"the saved Hugging Face dataset {p}")
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # not a saved dataset: one message
        raise TaskFileError(f"{p} is a directory but not a dataset saved by `datasets` ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise TaskFileError(f"saved dataset {p} has no split {split!r}; splits: {', '.join(ds)}")
        ds = ds[split]
    return _column(ds, column, f"saved dataset {p}")


def _read_hf(dataset_id: str, column: str, split: str) -> list[str]:
    if "/" not in dataset_id:
        raise TaskFileError(
            f"{dataset_id!r} is neither a file nor a Hugging Face dataset id (owner/name)"
        )
    datasets = _datasets(f"the Hugging Face dataset {dataset_id!r}")
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:  # network, auth, unknown split: all surface as one message
        raise TaskFileError(f"cannot load Hugging Face dataset {dataset_id!r} split {split!r}: {e}") from None
    return _column(ds, column, f"Hugging Face dataset {dataset_id!r}")
