"""An lm-evaluation-harness model for archbench text checkpoints, registered as ``archbench``.

lm-eval asks a model three things (its ``LM`` API), and :class:`ArchbenchLM` answers them
with the checkpoint's own model and tokenizer (:mod:`tasks.tokenizer`, saved beside the
weights), on CPU or CUDA:

- ``loglikelihood``: the log-probability of a continuation after a context, and whether
  greedy decoding would have produced it.  Requests are sorted by length (longest first)
  and batched, right-padded: every mixer is causal, so padding after a sequence never
  changes its scores.  A context longer than the model's window is cut from the left.
- ``loglikelihood_rolling``: a text's whole log-probability, predicted from an
  ``<|endoftext|>`` prefix in windows of ``max_length`` tokens.  With the default stride
  (``max_length``) the windows are disjoint, each seeing only its own tokens and the one
  before (lm-eval's ``hf`` model does the same, so perplexities compare); a smaller
  ``rolling_stride`` slides them, every token then predicted from at least
  ``max_length - rolling_stride`` tokens of context.
- ``generate_until``: greedy decoding until a stop string or ``max_gen_toks`` tokens; the
  stop string is cut from the answer.  Requests with equally long contexts decode as one
  batch (archbench models keep no cache, so each new token re-reads the window).

``max_length`` defaults to the sequence length the checkpoint was trained at.  Model
arguments (``--model_args`` / ``model_args=``): ``checkpoint`` (required), ``device``
(``cpu``, ``cuda``, ``cuda:N``), ``batch_size``, ``max_length``, ``rolling_stride``,
``dtype`` (``float32``, ``bfloat16``, ``float16``).

Importing this module registers the model with lm-eval.  lm-eval 0.4 finds models only
in its own registry (no entry points), so the ``lm_eval`` command line learns ``archbench``
through ``archbench-lm-eval``, which is lm-eval's own command line after this import
(:func:`main`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from harness.errors import UserError
from models import load_checkpoint
from tasks.tokenizer import Tokenizer, TokenizerError, load_tokenizer

DEFAULT_BATCH = 16
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_text_model(path: str | Path, device: str = "cpu") -> tuple[Any, Tokenizer, dict[str, Any]]:
    """A text checkpoint's model, tokenizer and config; a :class:`UserError` for a checkpoint
    that is not a text model (lm-eval needs text in and text out)."""
    model, meta = load_checkpoint(path, device)
    try:
        tok = load_tokenizer(path, meta.get("tokenizer"))
    except TokenizerError as e:
        raise UserError(str(e)) from None
    if tok.vocab_size > model.vocab_size:
        raise UserError(f"{path}: its tokenizer has {tok.vocab_size} ids but the model only {model.vocab_size}; "
                        f"the checkpoint is damaged, re-train or re-copy it")
    return model, tok, meta


def _batches(order: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(order), size):
        yield order[i:i + size]


@register_model("archbench")
class ArchbenchLM(TemplateLM):
    """lm-eval's view of an archbench text checkpoint (see the module docstring)."""

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", batch_size: int | str = DEFAULT_BATCH,
                 max_length: int | None = None, rolling_stride: int | None = None, dtype: str = "float32",
                 max_batch_size: int | None = None, **_ignored: Any) -> None:
        super().__init__()
        if not checkpoint:
            raise UserError("the archbench lm-eval model needs a checkpoint: --model_args checkpoint=PATH")
        if dtype not in _DTYPES:
            raise UserError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
        device = device or "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's command line asks for cuda unless told otherwise; its hf model falls back the same way
            warnings.warn(f"device {device!r} is not available here; running on cpu", stacklevel=2)
            device = "cpu"
        self._device = torch.device(device)
        self.model, self.tok, self.meta = load_text_model(checkpoint, str(self.device))
        self.model.eval()
        self.dtype = _DTYPES[dtype]
        trained = self.meta.get("seq_len") or ((self.meta.get("task") or {}).get("params") or {}).get("seq_len")
        self.max_length = int(max_length or trained or 256)
        self.rolling_stride = int(rolling_stride or self.max_length)
        if not 1 <= self.rolling_stride <= self.max_length:
            raise UserError(f"rolling_stride must be between 1 and max_length ({self.max_length}); "
                            f"got {rolling_stride}")
        try:
            self.batch_size = int(batch_size)
        except (TypeError, ValueError):  # "auto": lm-eval's probing is for HF models; a fixed size here
            self.batch_size = DEFAULT_BATCH
        self.batch_size = max(1, self.batch_size)

    # -- tokens --------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tok.eot_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tok.encode(string)

    def tok_decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(ids)

    @torch.no_grad()
    def _logprobs(self, rows: Sequence[list[int]]) -> list[torch.Tensor]:
        """Log-softmax ``[len(row), V]`` (float32, CPU) of each token row, run as one right-padded batch."""
        width = max(len(r) for r in rows)
        x = torch.full((len(rows), width), self.eot_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        x = x.to(self.device)
        enabled = self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled):
            logits = self.model(x)
        logp = torch.log_softmax(logits.float(), -1).cpu()
        return [logp[i, : len(r)] for i, r in enumerate(rows)]

    # -- loglikelihood ----------------------------------------------------------------
    def _score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """``(sum log p(continuation | context), greedy?)`` per (context ids, continuation ids);
        the context is cut from the left to fit ``max_length`` tokens of input."""
        L = self.max_length
        inputs, spans = [], []
        for ctx, cont in pairs:
            if not cont:
                inputs.append(ctx[-L:] or [self.eot_token_id])
                spans.append((0, []))
                continue
            whole = (ctx + cont)[-(L + 1):]
            inputs.append(whole[:-1])
            scored = cont[-(len(whole) - 1):]  # all of it, unless it alone outgrows the window
            spans.append((len(whole) - 1 - len(scored), scored))
        order = sorted(range(len(pairs)), key=lambda i: -len(inputs[i]))
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        for batch in _batches(order, self.batch_size):
            logps = self._logprobs([inputs[i] for i in batch])
            for i, logp in zip(batch, logps):
                start, cont = spans[i]
                if not cont:
                    out[i] = (0.0, True)
                    continue
                rows = logp[start: start + len(cont)]
                target = torch.tensor(cont, dtype=torch.long)
                total = float(rows.gather(-1, target.unsqueeze(-1)).double().sum())
                out[i] = (total, bool((rows.argmax(-1) == target).all()))
        return [o for o in out if o is not None]

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        results = self._score([(ctx, cont) for _, ctx, cont in requests])
        for (key, _, _), r in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", key, r)
        return results

    def rolling_windows(self, ids: list[int]) -> list[tuple[list[int], list[int]]]:
        """``(context ids, continuation ids)`` windows that predict every token of ``ids`` once,
        from an end-of-text prefix; each window's input is at most ``max_length`` tokens."""
        full = [self.eot_token_id] + list(ids)
        L, stride = self.max_length, self.rolling_stride
        windows, s = [], 1
        while s < len(full):
            e = min(len(full), s + (L if s == 1 else stride))
            a = max(0, e - 1 - L)
            windows.append((full[a:s], full[s:e]))
            s = e
        return windows

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        per_request: list[list[tuple[list[int], list[int]]]] = []
        for req in requests:
            (text,) = req.args
            per_request.append(self.rolling_windows(self.tok_encode(text)))
        flat = [w for ws in per_request for w in ws]
        scores = self._score(flat) if flat else []
        out, k = [], 0
        for req, ws in zip(requests, per_request):
            total = sum(score for score, _ in scores[k: k + len(ws)])
            k += len(ws)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return out

    # -- generation --------------------------------------------------------------------
    @torch.no_grad()
    def _greedy(self, contexts: list[list[int]], until: list[str], max_new: int) -> list[str]:
        """Greedy continuations of equally long ``contexts``, each cut at its first stop string."""
        rows = [list(c) for c in contexts]
        texts = [""] * len(rows)
        live = list(range(len(rows)))
        for _ in range(max_new):
            if not live:
                break
            window = [rows[i][-self.max_length:] for i in live]
            logps = self._logprobs(window)
            still = []
            for i, logp in zip(live, logps):
                nxt = int(logp[-1].argmax())
                rows[i].append(nxt)
                if nxt == self.eot_token_id:
                    continue
                texts[i] = self.tok_decode(rows[i][len(contexts[i]):])
                if not any(s and s in texts[i] for s in until):
                    still.append(i)
            live = still
        out = []
        for t in texts:
            cut = min((t.index(s) for s in until if s and s in t), default=len(t))
            out.append(t[:cut])
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        prepared = []
        for req in requests:
            context, gen_kwargs = req.args
            kw = dict(gen_kwargs or {})
            until = kw.pop("until", None) or []
            if isinstance(until, str):
                until = [until]
            max_new = int(kw.pop("max_gen_toks", 256))
            if kw.get("do_sample") or float(kw.get("temperature", 0.0) or 0.0) > 0:
                raise UserError("the archbench lm-eval model decodes greedily only; drop do_sample/temperature")
            ids = self.tok_encode(context) or [self.eot_token_id]
            prepared.append((ids[-(self.max_length - 1):] if self.max_length > 1 else ids[-1:], list(until), max_new))
        groups: dict[tuple[int, tuple[str, ...], int], list[int]] = {}
        for i, (ids, until, max_new) in enumerate(prepared):
            groups.setdefault((len(ids), tuple(until), max_new), []).append(i)
        out: list[str] = [""] * len(requests)
        for (_, until, max_new), members in sorted(groups.items(), key=lambda kv: -kv[0][0]):
            for batch in _batches(members, self.batch_size):
                texts = self._greedy([prepared[i][0] for i in batch], list(until), max_new)
                for i, t in zip(batch, texts):
                    out[i] = t
                    self.cache_hook.add_partial("generate_until", requests[i].args, t)
        return out


def main() -> None:
    """``archbench-lm-eval``: lm-eval's own command line, with ``--model archbench`` registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
