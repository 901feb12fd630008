"""The shared causal LM backbone (nanoGPT-style, pre-norm).

    tokens -> embedding -> n_layers x [x + mixer(norm(x)); x + mlp(norm(x))] -> norm -> head

Architectures differ only in their mixer (and optionally their MLP). Each layer sets up its
own initialisation in its constructor; nothing here re-initialises parameters globally, so
a mixer's special init (a forget-gate bias, say) survives.

``forward(inputs, positions=None)`` returns logits ``[B, T, V]``; pass a boolean
``positions`` mask ``[B, T]`` to get logits only where it is true (``[n_selected, V]``):
the probes score few positions, and skipping the head elsewhere saves most of the compute.
The last block's MLP is also run only there: after the last mixer, positions no longer
interact, so the result is the same (on short sequences such as grokking's ``a b =``, where
one position in three is scored, this saves about half of a training step).
"""

from __future__ import annotations

import torch
from torch import nn

import models.mixers  # noqa: F401  (registers the built-in mixers)
from kernels.dispatch import use_kernels
from models.config import ArchConfig
from models.layers import RMSNorm, base_std, init_scale, make_mlp
from models.registry import get_mixer


def _norm(kind: str, d: int) -> nn.Module:
    return RMSNorm(d) if kind == "rmsnorm" else nn.Identity()


class Block(nn.Module):
    def __init__(self, cfg: ArchConfig, layer_idx: int) -> None:
        super().__init__()
        mixer_cls = get_mixer(cfg.name)
        self.norm1 = _norm(cfg.norm, cfg.d_model)
        self.mixer = mixer_cls(cfg.d_model, cfg.n_heads, cfg.mixer_options(),
                               layer_idx=layer_idx, n_layers=cfg.n_layers)
        self.mlp = make_mlp(cfg.mlp, cfg.d_model, cfg.mlp_ratio, cfg.n_layers)
        self.norm2 = _norm(cfg.norm, cfg.d_model) if self.mlp is not None else None
        self.kernels = cfg.kernels  # the arch's kernel mode (None: $ARCHBENCH_KERNELS, else auto)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``positions`` (a ``[B, T]`` mask) keeps only those rows after the mixer: ``[n, d]``."""
        with use_kernels(self.kernels):
            x = x + self.mixer(self.norm1(x))
        if positions is not None:
            x = x[positions]
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class LM(nn.Module):
    def __init__(self, cfg: ArchConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg = cfg.resolved()
        self.vocab_size = vocab_size
        with init_scale(cfg.init_std):
            self.embed = nn.Embedding(vocab_size, cfg.d_model)
            nn.init.normal_(self.embed.weight, std=base_std())
            self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
            self.norm = _norm(cfg.norm, cfg.d_model)
            if cfg.tie_embeddings:
                self.head = None
            else:
                self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
                nn.init.normal_(self.head.weight, std=base_std())

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.embed(inputs)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        w = self.embed.weight if self.head is None else self.head.weight
        return h @ w.t()

    def forward(self, inputs: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            return self.logits_from_hidden(self.hidden(inputs))
        x = self.embed(inputs)
        for block in self.blocks[:-1]:
            x = block(x)
        x = self.blocks[-1](x, positions)  # the last MLP runs only where logits are wanted
        return self.logits_from_hidden(self.norm(x))

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.embed.weight.numel()


def param_count(cfg: ArchConfig, vocab_size: int, *, mixers: bool = True) -> int:
    """The parameter count of ``LM(cfg, vocab_size)``, found without allocating its weights.

    One block is built on the meta device (shapes only, no memory) and counted ``n_layers``
    times; this assumes every layer has the first one's shape, which holds for the built-in
    mixers (a test compares the count with the real models).  Embedding, head and final
    norm are counted from the config.  ``mixers=False`` leaves the mixers out: a lower bound
    that runs no mixer's constructor (a plugin's may have side effects, or be slow)."""
    cfg = cfg.resolved()
    with torch.device("meta"):
        if mixers:
            block = sum(p.numel() for p in Block(cfg, 0).parameters())
        else:
            mlp = make_mlp(cfg.mlp, cfg.d_model, cfg.mlp_ratio, cfg.n_layers)
            parts = [_norm(cfg.norm, cfg.d_model)] + ([mlp, _norm(cfg.norm, cfg.d_model)] if mlp is not None else [])
            block = sum(p.numel() for m in parts for p in m.parameters())
    embed = vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    return embed + cfg.n_layers * block + (cfg.d_model if cfg.norm == "rmsnorm" else 0)
