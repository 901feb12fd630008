"""Text: language modelling on the user's own text, scored in bits per byte.

Any architecture trains here as a causal language model, on local files (paths,
directories, globs) or on a Hugging Face dataset read through ``datasets`` (a hub id, a
dataset saved with ``save_to_disk``, or a local ``.json``/``.jsonl``/``.parquet``/``.txt``
file), tokenized as raw bytes or with a byte-level BPE trained on the training text
(:mod:`tasks.tokenizer`).

Data.  Documents (files in sorted path order, or dataset rows in order) are joined into one
token stream, each followed by ``<|endoftext|>``.  The last ``test_fraction`` of the stream is
the ``test`` split and the ``val_fraction`` before it ``val``; the rest trains, so no window
of val or test is ever trained on (with sorted files, the held-out text is mostly whole
files the model never saw).  A split is cut into windows of ``seq_len`` tokens, each
predicting the next token at every position; val and test are their portions' consecutive
windows from the start (the same for every seed), train's start at an offset drawn from
the seed.  ``n_train``/``n_val``/``n_test`` cap the windows (default: all of them).  The
BPE is trained on the training portion only.

Metrics (every split): ``bits_per_byte`` (summed negative log-likelihood in bits over the
bytes of text predicted: comparable across tokenizers), ``loss`` (nats per token),
``perplexity`` (per token, so per tokenizer), ``accuracy`` (next-token top-1) and the
headline ``compression``: ``1 - bits_per_byte / 8``, the share of each byte's 8 bits the
model saves.  It is higher-is-better like every probe's headline and 0 for a model that
spreads its guesses uniformly over bytes (:attr:`chance`), so the leaderboard ranks text
runs as it ranks probes.  Its no-skill floor is the unigram model of the split (each
token's frequency, no context: the best any model does without mixing positions).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import math
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from tasks.base import IGNORE, Task, TaskConfig, TaskData, split_generator
from tasks.registry import TaskConfigError, register_task
from tasks.tokenizer import ByteTokenizer, Tokenizer, make_tokenizer

LN2 = math.log(2.0)


class TextError(TaskConfigError):
    """Text that cannot be read or is too short; the message names the fix."""


class TextConfig(TaskConfig):
    files: tuple[str, ...] = Field((), description="text files, directories (every file under them "
                                   "matching `include`) or glob patterns")
    include: str = Field("**/*", description="glob of the files taken from a directory in `files`")
    dataset: str | None = Field(None, description="a Hugging Face dataset: hub id, saved directory, or a local "
                                ".json/.jsonl/.parquet/.txt file (read through `datasets`)")
    dataset_config: str | None = Field(None, description="the dataset's configuration name")
    dataset_split: str = Field("train", description="the dataset split read (then divided into train/val/test)")
    text_column: str = Field("text", description="the dataset column holding the text")
    tokenizer: Literal["bytes", "bpe"] = Field("bytes", description="raw UTF-8 bytes, or a byte-level BPE "
                                                "trained on the training text")
    vocab_size: int = Field(4096, ge=260, le=1 << 20, description="BPE vocabulary (bytes: always 257)")
    seq_len: int = Field(256, ge=2, description="tokens per training and evaluation window")
    val_fraction: float = Field(0.05, gt=0, lt=0.5, description="share of the token stream held out for val")
    test_fraction: float = Field(0.05, gt=0, lt=0.5, description="share of the token stream held out for test")
    max_bytes: int | None = Field(None, ge=1, description="read at most this many bytes of text (the first)")
    n_train: int | None = Field(None, ge=1, description="train windows (default: all, non-overlapping)")
    n_val: int | None = Field(None, ge=1, description="val windows (default: all)")
    n_test: int | None = Field(None, ge=1, description="test windows (default: all)")

    @model_validator(mode="after")
    def _one_source(self) -> "TextConfig":
        if bool(self.files) == (self.dataset is not None):
            raise ValueError("text needs exactly one source: `files` (paths, directories, globs) or `dataset` (e.g. "
                             "--set 'task.params.files=[\"corpus/*.txt\"]' or --set task.params.dataset=owner/name)")
        return self


class Corpus:
    """The token stream of a text config and its tokenizer (built once per config per process)."""

    def __init__(self, tokenizer: Tokenizer, stream: torch.Tensor, train_end: int, val_end: int,
                 sha256: str, n_documents: int, n_bytes: int) -> None:
        self.tokenizer, self.stream = tokenizer, stream
        self.train_end, self.val_end = train_end, val_end
        self.sha256, self.n_documents, self.n_bytes = sha256, n_documents, n_bytes

    def portion(self, split: str) -> torch.Tensor:
        return {"train": self.stream[: self.train_end], "val": self.stream[self.train_end: self.val_end],
                "test": self.stream[self.val_end:]}[split]


def _expand(files: tuple[str, ...], include: str) -> list[Path]:
    out: list[Path] = []
    for entry in files:
        p = Path(entry).expanduser()
        if any(c in entry for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
            if not matches:
                raise TextError(f"text: the pattern {entry!r} matches no file; check the path (relative to "
                                f"{Path.cwd()})")
            out.extend(matches)
        elif p.is_dir():
            matches = sorted(f for f in p.glob(include) if f.is_file())
            if not matches:
                raise TextError(f"text: directory {entry!r} holds no file matching {include!r}; set task.include")
            out.extend(matches)
        elif p.is_file():
            out.append(p)
        else:
            raise TextError(f"text: no such file or directory: {entry!r} (relative to {Path.cwd()})")
    return list(dict.fromkeys(out))


def _capped(docs: Iterable[bytes], max_bytes: int | None) -> list[bytes]:
    """The documents until ``max_bytes`` bytes are taken (the last one cut); all of them without a cap.
    ``docs`` is read lazily, so nothing past the cap is read."""
    out, total = [], 0
    for data in docs:
        if max_bytes is not None:
            data = data[: max_bytes - total]
        out.append(data)
        total += len(data)
        if max_bytes is not None and total >= max_bytes:
            break
    return out


def _file_bytes(paths: list[Path]) -> Iterator[bytes]:
    for p in paths:
        try:
            yield p.read_bytes()
        except OSError as e:
            raise TextError(f"text: cannot read {p} ({e.strerror or e}); make it readable or leave it out") from None


def _read_files(c: TextConfig) -> list[bytes]:
    return _capped(_file_bytes(_expand(c.files, c.include)), c.max_bytes)


def _read_dataset(c: TextConfig) -> list[bytes]:
    if importlib.util.find_spec("datasets") is None:
        raise TextError("text: reading a dataset needs the datasets package: pip install datasets")
    import datasets

    src = c.dataset
    assert src is not None
    p = Path(src).expanduser()
    builders = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
    try:
        if p.is_dir():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if c.dataset_split not in ds:
                    raise TextError(f"text: saved dataset {src} has no split {c.dataset_split!r}; "
                                    f"set task.dataset_split to one of {', '.join(ds)}")
                ds = ds[c.dataset_split]
        elif p.is_file():
            if p.suffix.lower() not in builders:
                raise TextError(f"text: cannot read {src} as a dataset; use .json, .jsonl, .parquet or .txt "
                                f"(or list plain text files in task.files)")
            kw = {"sample_by": "document"} if builders[p.suffix.lower()] == "text" else {}
            ds = datasets.load_dataset(builders[p.suffix.lower()], data_files=str(p), split="train", **kw)
        else:
            ds = datasets.load_dataset(src, c.dataset_config, split=c.dataset_split)
    except TextError:
        raise
    except Exception as e:  # network, auth, format: one message
        raise TextError(f"text: cannot load dataset {src!r} (split {c.dataset_split!r}): "
                        f"{' '.join(str(e).split())[:300]}") from None
    if c.text_column not in ds.column_names:
        raise TextError(f"text: dataset {src} has no column {c.text_column!r}; set task.text_column to one of "
                        f"{', '.join(ds.column_names)}")
    return _capped((str(row).encode("utf-8") for row in ds[c.text_column]), c.max_bytes)


def _split_points(n_tokens: int, c: TextConfig) -> tuple[int, int]:
    test = max(c.seq_len + 1, int(round(n_tokens * c.test_fraction)))
    val = max(c.seq_len + 1, int(round(n_tokens * c.val_fraction)))
    train_end, val_end = n_tokens - test - val, n_tokens - test
    if train_end < c.seq_len + 1:
        raise TextError(f"text: {n_tokens:,} tokens are too few for seq_len {c.seq_len} (train, val and test each "
                        f"need at least {c.seq_len + 1}); add text or lower task.seq_len")
    return train_end, val_end


@lru_cache(maxsize=4)
def _corpus(config_json: str) -> Corpus:
    c = TextConfig.model_validate_json(config_json)
    docs = _read_files(c) if c.files else _read_dataset(c)
    docs = [d for d in docs if d]
    if not docs:
        raise TextError("text: the source holds no text; check task.files / task.dataset")
    h = hashlib.sha256()
    for d in docs:
        h.update(hashlib.sha256(d).digest())
    n_bytes = sum(len(d) for d in docs)
    if c.tokenizer == "bytes":
        tok: Tokenizer = ByteTokenizer()
        pieces = []
        for d in docs:
            pieces.append(torch.frombuffer(bytearray(d), dtype=torch.uint8).long())
            pieces.append(torch.tensor([tok.eot_id]))
        stream = torch.cat(pieces)
    else:
        # train the BPE on the training portion only: find it by bytes first (the split is by tokens, but
        # a BPE learnt on val/test text would leak it)
        cut = int(n_bytes * (1 - c.val_fraction - c.test_fraction))
        train_texts, seen = [], 0
        for d in docs:
            if seen >= cut:
                break
            train_texts.append(d[: cut - seen].decode("utf-8", errors="replace"))
            seen += len(d)
        tok = make_tokenizer("bpe", train_texts, c.vocab_size)
        encoded = tok.tok.encode_batch([d.decode("utf-8", errors="replace") for d in docs])
        ids: list[int] = []
        for e in encoded:
            ids.extend(e.ids)
            ids.append(tok.eot_id)
        stream = torch.tensor(ids, dtype=torch.long)
    train_end, val_end = _split_points(stream.numel(), c)
    return Corpus(tok, stream, train_end, val_end, h.hexdigest(), len(docs), n_bytes)


def _windows(tokens: torch.Tensor, seq_len: int, offset: int, limit: int | None) -> TaskData:
    n = (tokens.numel() - 1 - offset) // seq_len
    if limit is not None:
        n = min(n, limit)
    span = tokens[offset: offset + n * seq_len + 1]
    inputs = span[:-1].reshape(n, seq_len).clone()
    targets = span[1:].unfold(0, seq_len, seq_len)[:n].clone()
    return TaskData(inputs, targets)


@register_task("text")
class TextTask(Task):
    Config = TextConfig
    description = "causal language modelling on your text files or a Hugging Face dataset (bits per byte)"
    metric = "compression"
    synthetic = False
    scores_loglikelihood = True
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": dict(tokenizer="bytes", seq_len=128),  # the source is always yours: task.params.files / dataset
        "bpe": dict(tokenizer="bpe", vocab_size=4096, seq_len=256),
    }

    config: TextConfig

    @property
    def corpus(self) -> Corpus:
        return _corpus(self.config.model_dump_json())

    def prepare(self) -> None:
        self.corpus  # noqa: B018  (reads the text and tokenizes it, or raises TextError)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.corpus.tokenizer

    @property
    def vocab_size(self) -> int:
        return 257 if self.config.tokenizer == "bytes" else self.config.vocab_size

    @property
    def chance(self) -> float:
        """Compression of uniform guesses over the 256 byte values: 0."""
        return 0.0

    def split_size(self, split: str) -> int:
        return len(self.generate(split))

    def generate(self, split: str, n: int | None = None, seed: int = 0) -> TaskData:
        self.check_split(split)
        c = self.config
        tokens = self.corpus.portion(split)
        limit = n if n is not None else {"train": c.n_train, "val": c.n_val, "test": c.n_test}[split]
        offset = 0
        if split == "train":
            offset = int(torch.randint(0, c.seq_len, (1,), generator=split_generator(self.name, split, seed)))
            offset = min(offset, max(0, tokens.numel() - 1 - c.seq_len))
        return _windows(tokens, c.seq_len, offset, limit)

    # -- scoring -------------------------------------------------------------------
    def score(self, preds: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        from tasks.base import masked_accuracy

        return {"accuracy": masked_accuracy(preds, targets)}

    def score_loglikelihood(self, nll: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
        """Metrics from ``nll``: the negative log-likelihood (nats) of every scored target, in
        the order of ``targets[targets != IGNORE]``."""
        scored = targets[targets != IGNORE]
        n_bytes = int(self._token_bytes()[scored].sum())
        total = float(nll.double().sum())
        loss = total / max(1, scored.numel())
        bpb = total / LN2 / n_bytes if n_bytes else float("nan")
        return {"bits_per_byte": bpb, "compression": 1.0 - bpb / 8.0, "loss": loss,
                "perplexity": math.exp(min(loss, 700.0))}

    def _token_bytes(self) -> torch.Tensor:
        tb = self.tokenizer.token_bytes
        if tb.numel() < self.vocab_size:
            tb = torch.cat([tb, torch.zeros(self.vocab_size - tb.numel(), dtype=tb.dtype)])
        return tb

    def no_skill(self, data: TaskData, split: str) -> dict[str, float]:
        """Chance (uniform bytes, 0) and the unigram model fitted to this split's targets."""
        scored = data.targets[data.targets != IGNORE]
        if scored.numel() == 0:
            return {"chance": self.chance}
        counts = torch.bincount(scored, minlength=self.vocab_size).double()
        p = counts / counts.sum()
        nll = -torch.log(p[scored])
        return {"chance": self.chance, "unigram": self.score_loglikelihood(nll, data.targets, split)[self.metric]}

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a text checkpoint records beside its weights: the tokenizer, and the text it learnt from."""
        corpus = self.corpus
        return {"tokenizer": corpus.tokenizer.spec(), "seq_len": self.config.seq_len,
                "text": {"sha256": corpus.sha256, "documents": corpus.n_documents, "bytes": corpus.n_bytes,
                         "tokens": int(corpus.stream.numel())}}

    def checkpoint_files(self) -> dict[str, bytes]:
        return self.tokenizer.files()
