from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from tasks import IGNORE, TaskData, make_task
from tasks import files
from tasks.files import TaskFileError, load_tensor_file, read_text_column, save_tensor_file


def sample() -> TaskData:
    x = torch.arange(12).view(3, 4)
    y = torch.full((3, 4), IGNORE)
    y[:, 2] = 7
    return TaskData(x, y)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_tensor_round_trip(tmp_path, suffix):
    path = save_tensor_file(tmp_path / f"t{suffix}", sample())
    data = load_tensor_file(path)
    assert data.inputs.dtype == torch.int64 and data.targets.dtype == torch.int64
    assert torch.equal(data.inputs, sample().inputs) and torch.equal(data.targets, sample().targets)


def test_int32_and_targets_alias_accepted(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, inputs=np.zeros((2, 3), np.int32), targets=np.full((2, 3), -100, np.int16))
    data = load_tensor_file(path)
    assert data.inputs.dtype == torch.int64 and (data.targets == IGNORE).all()


def test_safetensors_written_elsewhere(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file({"inputs": torch.ones(2, 5, dtype=torch.int64), "labels": torch.full((2, 5), -100)}, str(path))
    assert load_tensor_file(path).inputs.shape == (2, 5)


@pytest.mark.parametrize("arrays, problem", [
    ({"inputs": np.zeros((2, 3), np.int64)}, "lacks the key.*labels"),
    ({"labels": np.zeros((2, 3), np.int64)}, "lacks the key.*inputs"),
    ({"inputs": np.zeros((2, 3), np.int64), "labels": np.zeros((2, 4), np.int64)}, "same shape"),
    ({"inputs": np.zeros((2, 3), np.float32), "labels": np.zeros((2, 3), np.int64)}, "integers.*float32"),
    ({"inputs": np.zeros(3, np.int64), "labels": np.zeros(3, np.int64)}, "2-D"),
    ({"inputs": -np.ones((2, 3), np.int64), "labels": np.zeros((2, 3), np.int64)}, "negative"),
])
def test_bad_tensor_files(tmp_path, arrays, problem):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(TaskFileError, match=problem):
        load_tensor_file(path)


def test_missing_unknown_and_corrupt_tensor_files(tmp_path):
    with pytest.raises(TaskFileError, match="no such file"):
        load_tensor_file(tmp_path / "absent.npz")
    (tmp_path / "t.pt").write_bytes(b"x")
    with pytest.raises(TaskFileError, match=r"\.npz or \.safetensors"):
        load_tensor_file(tmp_path / "t.pt")
    (tmp_path / "c.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TaskFileError, match="not a readable"):
        load_tensor_file(tmp_path / "c.safetensors")
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(TaskFileError, match="not a readable"):
        load_tensor_file(tmp_path / "c.npz")


def test_mqar_loads_a_saved_test_set_and_checks_the_vocabulary(tmp_path):
    task = make_task("mqar", preset="quick")
    data = task.generate("test", n=8, seed=0)
    path = save_tensor_file(tmp_path / "mqar.safetensors", data)
    loaded = task.load(path)
    assert torch.equal(loaded.inputs, data.inputs) and torch.equal(loaded.targets, data.targets)
    small = make_task("mqar", {"vocab_size": 128, "seq_len": 64, "num_pairs": 4})
    with pytest.raises(TaskFileError, match=r"outside \[0, 128\)"):
        small.load(path)


def test_jsonl_reader_errors(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "w1r1"}\n\n{"txt": "w0r0"}\n')
    with pytest.raises(TaskFileError, match=r"a.jsonl:3: expected an object with a 'text' field"):
        read_text_column(p)
    p.write_text('{"text": "w1r1"}\nnot json\n')
    with pytest.raises(TaskFileError, match=r":2: not valid JSON"):
        read_text_column(p)
    p.write_text('{"text": 5}\n')
    with pytest.raises(TaskFileError, match="must be a string"):
        read_text_column(p)
    p.write_text('{"text": "w1r1"}\n\n{"text": "w0r0"}\n')
    assert read_text_column(p) == ["w1r1", "w0r0"]
    with pytest.raises(TaskFileError, match="no such file"):
        read_text_column(tmp_path / "absent.jsonl")
    (tmp_path / "a.csv").write_text("text\n")
    with pytest.raises(TaskFileError, match="jsonl or .parquet"):
        read_text_column(tmp_path / "a.csv")


def test_parquet_without_an_engine_names_the_fix(tmp_path, monkeypatch):
    # hide both Parquet engines whether or not they are installed: a None entry in
    # sys.modules makes find_spec answer None and an import raise ImportError
    for engine in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, engine, None)
    with pytest.raises(ImportError):
        import pyarrow  # noqa: F401
    p = tmp_path / "a.parquet"
    p.write_bytes(b"PAR1")
    with pytest.raises(TaskFileError, match=r"reading Parquet \(.*a\.parquet\) needs pyarrow: pip install pyarrow"):
        read_text_column(p)


def test_parquet_text_column(tmp_path):
    pytest.importorskip("pyarrow")  # installed with the dev extras (datasets depends on it)
    import pandas as pd

    p = tmp_path / "a.parquet"
    pd.DataFrame({"text": ["w1r1", "w0r0"], "other": [1, 2]}).to_parquet(p)
    assert read_text_column(p) == ["w1r1", "w0r0"]


def test_hugging_face_id_without_datasets_names_the_fix(monkeypatch):
    real = importlib.util.find_spec

    def no_datasets(name, *args):
        return None if name == "datasets" else real(name, *args)

    monkeypatch.setattr(files.importlib.util, "find_spec", no_datasets)
    with pytest.raises(TaskFileError, match="pip install datasets"):
        read_text_column("synthseq/flipflop", split="val")
    with pytest.raises(TaskFileError, match="pip install datasets"):
        make_task("flipflop", preset="quick").load("synthseq/flipflop", split="sparse")
    with pytest.raises(TaskFileError, match="neither a file nor a Hugging Face dataset id"):
        read_text_column("flipflop")


class _FakeDataset:
    def __init__(self, rows: dict[str, list[str]]):
        self.rows = rows
        self.column_names = list(rows)

    def __getitem__(self, key: str) -> list[str]:
        return self.rows[key]


def test_hugging_face_dataset_via_the_datasets_api(monkeypatch):
    """The `datasets` path, with a stand-in module (no network in tests)."""
    import importlib.machinery
    import sys
    import types

    calls = []
    fake = types.ModuleType("datasets")
    fake.__spec__ = importlib.machinery.ModuleSpec("datasets", None)

    def load_dataset(dataset_id, split):
        calls.append((dataset_id, split))
        if split == "missing":
            raise FileNotFoundError("no split")
        return _FakeDataset({"text": ["w1i0r1", "w0w1r1"], "id": ["a", "b"]})

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    data = make_task("flipflop", preset="quick").load("synthseq/flipflop", split="sparse")
    assert calls == [("synthseq/flipflop", "val_sparse")]
    assert data.targets[:, 4].tolist() == [4, 4]
    with pytest.raises(TaskFileError, match="has no column 'body'"):
        read_text_column("synthseq/flipflop", column="body")
    with pytest.raises(TaskFileError, match="cannot load Hugging Face dataset"):
        read_text_column("synthseq/flipflop", split="missing")
