"""Tokenizers of the text task: raw bytes, or a byte-level BPE trained on the user's text.

Both map text to ids and back and know how many bytes of text each id stands for (for
bits per byte, which compares models across tokenizers).  Both reserve one id,
``<|endoftext|>`` (:attr:`Tokenizer.eot_id`), for document boundaries; language-model
evaluation uses it as the context of a text with none.

- :class:`ByteTokenizer`: ids 0-255 are the bytes of the UTF-8 text, 256 is the
  end-of-text id.  Nothing to train or save.
- :class:`BPETokenizer`: a byte-level BPE (Hugging Face ``tokenizers``) trained on the
  training text, saved as ``tokenizer.json`` beside a checkpoint's weights, so a text
  checkpoint is evaluated without its training files and without downloads.  Loading it
  reads JSON; it never executes code.

:func:`make_tokenizer` builds one from the text config, :func:`load_tokenizer` reads the one a
checkpoint carries.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

EOT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """A tokenizer that cannot be built or read; the message names the fix."""


class Tokenizer:
    """What the text task and the lm-eval adapter need of a tokenizer."""

    kind: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    @property
    def token_bytes(self) -> torch.Tensor:
        """``int64 [vocab_size]``: the bytes of text each id stands for (0 for end-of-text)."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """What a checkpoint's config records about this tokenizer."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "eot_id": self.eot_id}

    def files(self) -> dict[str, bytes]:
        """Files a checkpoint must carry to rebuild this tokenizer (name -> content)."""
        return {}


class ByteTokenizer(Tokenizer):
    kind = "bytes"
    vocab_size = 257
    eot_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_bytes(self, data: bytes) -> list[int]:
        return list(data)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    @cached_property
    def token_bytes(self) -> torch.Tensor:
        t = torch.ones(self.vocab_size, dtype=torch.long)
        t[self.eot_id] = 0
        return t


def _byte_level_alphabet() -> dict[str, int]:
    """The character -> byte map of byte-level BPE (the GPT-2 convention ``tokenizers`` uses):
    printable Latin-1 bytes stand for themselves, the other bytes for code points 256 and up,
    in byte order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    kept_set = set(kept)
    chars, extra = {}, 0
    for b in range(256):
        if b in kept_set:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _tokenizers():  # noqa: ANN202
    if importlib.util.find_spec("tokenizers") is None:
        raise TokenizerError("a BPE tokenizer needs the tokenizers package: pip install tokenizers "
                             "(or use tokenizer: bytes)")
    import tokenizers

    return tokenizers


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()
        eot = tok.token_to_id(EOT)
        if eot is None:
            raise TokenizerError(f"this tokenizer has no {EOT} token; train it with archbench (tokenizer: bpe)")
        self.eot_id = eot

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """A byte-level BPE of ``vocab_size`` ids (256 bytes, ``<|endoftext|>``, merges) trained on
        ``texts``; the same texts give the same tokenizer."""
        tk = _tokenizers()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str, where: str) -> "BPETokenizer":
        tk = _tokenizers()
        try:
            return cls(tk.Tokenizer.from_str(text))
        except Exception as e:  # the Rust side raises its own exception type
            raise TokenizerError(f"{where} is not a tokenizer archbench can read ({e}); re-train or re-copy it") from None

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    @cached_property
    def token_bytes(self) -> torch.Tensor:
        alphabet = _byte_level_alphabet()
        out = torch.zeros(self.vocab_size, dtype=torch.long)
        for token, i in self.tok.get_vocab().items():
            if token != EOT:
                out[i] = sum(1 for ch in token if ch in alphabet)
        return out

    def files(self) -> dict[str, bytes]:
        return {TOKENIZER_FILE: self.tok.to_str().encode("utf-8")}

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "file": TOKENIZER_FILE}


def make_tokenizer(kind: str, texts: Iterable[str] = (), vocab_size: int = 4096) -> Tokenizer:
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size)
    raise TokenizerError(f"unknown tokenizer {kind!r}; use bytes or bpe")


def load_tokenizer(directory: str | Path, spec: dict[str, Any] | None) -> Tokenizer:
    """The tokenizer a checkpoint in ``directory`` carries, from its config's ``tokenizer`` entry."""
    directory = Path(directory)
    if not spec:
        raise TokenizerError(f"{directory} holds no tokenizer: it is not a text model; lm-eval needs a text model "
                             f"(train one with `archbench train --task text`)")
    kind = spec.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        path = directory / str(spec.get("file", TOKENIZER_FILE))
        if not path.is_file():
            raise TokenizerError(f"{path} is missing: the checkpoint's BPE tokenizer was not copied with it; "
                                 f"re-copy the whole checkpoint directory")
        return BPETokenizer.from_json(path.read_text(encoding="utf-8"), str(path))
    raise TokenizerError(f"{directory}: unknown tokenizer kind {kind!r} in its config; upgrade archbench")

