"""Softmax attention mixers: ``transformer`` (RoPE), ``nope`` and ``sliding``."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from kernels import apply_rope, softmax_attention
from models.layers import init_linear, residual_std
from models.registry import register_mixer


class AttentionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rope: bool = Field(True, description="rotary position embedding on q and k")
    rope_base: float = Field(10000.0, gt=1.0)
    window: int | None = Field(None, ge=1, description="attend to the last `window` keys only")


class MultiHeadMixer(nn.Module):
    """Shared plumbing: a fused q/k/v projection and an output projection."""

    def __init__(self, d_model: int, n_heads: int, n_layers: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = init_linear(nn.Linear(d_model, 3 * d_model, bias=False))
        self.out = init_linear(nn.Linear(d_model, d_model, bias=False), residual_std(n_layers))

    def split_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).unbind(2)
        return q, k, v

    def merge(self, o: torch.Tensor) -> torch.Tensor:
        b, t = o.shape[:2]
        return self.out(o.reshape(b, t, -1))


@register_mixer("transformer", "softmax attention with RoPE (Vaswani et al. 2017; Su et al. 2021)")
class SoftmaxAttention(MultiHeadMixer):
    """Multi-head causal softmax attention (Vaswani et al. 2017) with rotary position
    embedding (Su et al. 2021, "RoFormer"), as in LLaMA-style models.

    Differences from the papers' layers: none in the mixer (no projection biases, RoPE in
    the "rotate half" layout, base 10,000, on every head dimension). The backbone around
    it is pre-norm RMSNorm + SwiGLU (LLaMA), not the 2017 post-LayerNorm + ReLU block with
    sinusoidal absolute positions.
    """

    Options = AttentionOptions

    def __init__(self, d_model: int, n_heads: int, options: AttentionOptions,
                 layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, n_heads, n_layers)
        self.opts = options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_qkv(x)
        if self.opts.rope:
            q = apply_rope(q, self.opts.rope_base)
            k = apply_rope(k, self.opts.rope_base)
        return self.merge(softmax_attention(q, k, v, window=self.opts.window))


class NoPEOptions(AttentionOptions):
    rope: bool = False


class SlidingOptions(AttentionOptions):
    window: int | None = Field(32, ge=1, description="attend to the last `window` keys only")


@register_mixer("nope", "softmax attention without position encoding (control)")
class NoPEAttention(SoftmaxAttention):
    """Causal softmax attention with no position encoding (NoPE; Kazemnejad et al. 2023, "The
    Impact of Positional Encoding on Length Generalization in Transformers"): order is
    known only through the causal mask. A control; no differences from that setting."""

    Options = NoPEOptions


@register_mixer("sliding", "RoPE softmax attention limited to a window (control)")
class SlidingAttention(SoftmaxAttention):
    """RoPE softmax attention where each query sees only its last ``window`` keys (itself
    included): the sliding-window attention of Longformer (Beltagy et al. 2020) and Mistral
    7B (Jiang et al. 2023), used here as a bounded-memory control. Differences: every layer
    uses the window (no global tokens, no interleaved full-attention layers); default
    window 32 (Mistral: 4,096), sized for the short probes.
    """

    Options = SlidingOptions
