"""The architecture zoo: FoX, PaTH, PaTH-FoX, Momentum attention, linear attention, DeltaNet.

Each mixer only projects, gates and reshapes; the sequence mixing itself is a ``kernels``
op.  Each layer sets up its own initialisation here (forget-gate bias, PaTH's ``w`` and
``beta`` projections) and nothing later overwrites it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from kernels import (
    apply_rope, deltanet, fox_attention, linear_attention, momentum_attention, path_attention,
)
from models.layers import RMSNorm, ShortConv, init_linear
from models.mixers.attention import MultiHeadMixer
from models.registry import register_mixer


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- FoX ------------------------------------------------------------------------------

# Forget-gate bias at initialisation, (first head, last head), spread linearly across heads.
# The FoX authors start at 0; 1..5 learned far better in small models (see FoX's docstring).
GATE_BIAS = (1.0, 5.0)


class ForgetGate(nn.Module):
    """Per-head scalar forget gate ``f_t = sigmoid(w_f . x_t + b_f)``, returned as ``log f_t``.

    The bias starts spread linearly over ``[bias_low, bias_high]`` across heads (equal
    bounds: every head starts at that bias; ``0, 0`` is the authors' zero init, ``f = 0.5``).
    """

    def __init__(self, d_model: int, n_heads: int, bias_low: float, bias_high: float) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, n_heads, bias=True)
        nn.init.normal_(self.proj.weight, std=0.02)
        with torch.no_grad():
            self.proj.bias.copy_(torch.linspace(bias_low, bias_high, n_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(self.proj(x).float()).to(x.dtype)


class FoXOptions(_Opts):
    rope: bool = Field(False, description="FoX uses no position encoding by default")
    gate_bias_low: float = Field(GATE_BIAS[0], description="forget-gate bias of the first head")
    gate_bias_high: float = Field(GATE_BIAS[1], description="forget-gate bias of the last head")


@register_mixer("fox", "Forgetting Transformer: softmax attention with a per-head forget gate (Lin et al. 2025)")
class FoX(MultiHeadMixer):
    """The Forgetting Transformer's attention, Lin et al. 2025 ("Forgetting Transformer: Softmax
    Attention with a Forget Gate"), in its basic ("LLaMA") form: causal softmax attention whose
    logit ``q_i . k_j / sqrt(d)`` gets ``+ sum_{s=j+1..i} log f_s`` with the data-dependent
    per-head gate ``f_t = sigmoid(w_f . x_t + b_f)``; no RoPE.

    Differences from the authors' layer: the "Pro" block's extras (output gate, output
    RMSNorm, QK-norm, data-dependent key/value shift) are not included; the authors' code
    starts ``b_f`` at zero (``f = 0.5``), here it starts spread over ``GATE_BIAS = 1..5``
    across heads (``gate_bias_low/high: 0`` gives theirs). Measured at d_model 32, 2 layers,
    2 heads (README): zero init reached test 0.03 and 0.04 on quick needle where the spread
    init reached 1.0 and 0.74, and MQAR 0.15 vs 0.25 (mean of 3 seeds); a gate of 0.5 per
    step hides everything a few tokens back until the bias has been learned.
    """

    Options = FoXOptions
    def __init__(self, d_model: int, n_heads: int, options: FoXOptions, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, n_heads, n_layers)
        self.opts = options
        self.gate = ForgetGate(d_model, n_heads, options.gate_bias_low, options.gate_bias_high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_qkv(x)
        if self.opts.rope:
            q, k = apply_rope(q), apply_rope(k)
        return self.merge(fox_attention(q, k, v, self.gate(x)))


# -- PaTH -----------------------------------------------------------------------------

class HouseholderParams(nn.Module):
    """PaTH's per-position ``w_t`` (unit vectors) and ``beta_t`` in (0, 2), per head.

    ``w_t = L2-normalise(SiLU(short causal depthwise conv(low-rank projection of x_t)))`` and
    ``beta_t = 2 * sigmoid(u . x_t + b)``, so ``I - beta w w^T`` can have eigenvalue
    ``1 - beta < 0`` (a reflection at ``beta = 2``).
    """

    def __init__(self, d_model: int, n_heads: int, rank: int, conv: int, silu: bool = True) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.silu = n_heads, d_model // n_heads, silu
        self.down = init_linear(nn.Linear(d_model, rank, bias=False), std=1.0 / math.sqrt(d_model))
        self.up = init_linear(nn.Linear(rank, d_model, bias=False), std=1.0 / math.sqrt(rank))
        self.conv = nn.Conv1d(d_model, d_model, conv, groups=d_model, padding=conv - 1, bias=False)
        with torch.no_grad():  # start near the identity filter: the newest position dominates
            self.conv.weight.zero_()
            self.conv.weight[:, 0, -1] = 1.0
            self.conv.weight.add_(0.05 * torch.randn_like(self.conv.weight))
        self.beta = nn.Linear(d_model, n_heads, bias=True)
        nn.init.normal_(self.beta.weight, std=0.02)
        nn.init.zeros_(self.beta.bias)  # beta starts at 1: a projection, halfway to a reflection

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        u = self.up(self.down(x)).transpose(1, 2)  # [B, D, T]
        u = self.conv(u)[..., :t].transpose(1, 2)  # causal: drop the right padding
        if self.silu:
            u = F.silu(u)
        w = F.normalize(u.view(b, t, self.n_heads, self.head_dim).float(), dim=-1).to(x.dtype)
        beta = 2.0 * torch.sigmoid(self.beta(x))
        return w, beta


class PaTHOptions(_Opts):
    w_rank: int | None = Field(None, ge=1, description="rank of the w projection (default d_model // 16, at least 4)")
    conv_size: int = Field(3, ge=1, description="width of the causal convolution on w")
    w_silu: bool = Field(True, description="SiLU after the convolution on w, before L2 normalisation")


@register_mixer("path", "PaTH attention: accumulated Householder position encoding (Yang et al. 2025)")
class PaTH(MultiHeadMixer):
    """PaTH attention, Yang et al. 2025, "PaTH Attention: Position Encoding via Accumulating
    Householder Transformations" (the layer of flash-linear-attention's ``PaTHAttention``).

    Softmax attention whose key at ``j`` is seen by the query at ``i`` through
    ``prod_{s=j+1..i} (I - beta_s w_s w_s^T)``; ``w`` is a low-rank projection, a short
    causal conv (width 3), SiLU and L2 normalisation; ``beta = 2 sigmoid(.)``; no RoPE.

    Differences from the authors' layer: the ``w`` rank scales with the model
    (``d_model // 16``, at least 4; theirs is fixed at 32, which at ``d_model <= 128`` would
    break the 5% size match); the ``w`` conv starts near the identity filter (theirs: normal
    with std 0.02) and the ``w`` projections start at ``1/sqrt(fan_in)``; the optional QK-norm
    of their layer (off by default there) is not offered.
    """

    Options = PaTHOptions
    forget_gate = False

    def __init__(self, d_model: int, n_heads: int, options: PaTHOptions, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, n_heads, n_layers)
        rank = options.w_rank or max(4, d_model // 16)
        self.householder = HouseholderParams(d_model, n_heads, rank, options.conv_size, options.w_silu)
        self.gate = (ForgetGate(d_model, n_heads, options.gate_bias_low, options.gate_bias_high)
                     if self.forget_gate else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_qkv(x)
        w, beta = self.householder(x)
        log_f = self.gate(x) if self.gate is not None else None
        return self.merge(path_attention(q, k, v, w, beta, log_f))


class PaTHFoXOptions(PaTHOptions):
    gate_bias_low: float = Field(GATE_BIAS[0], description="forget-gate bias of the first head")
    gate_bias_high: float = Field(GATE_BIAS[1], description="forget-gate bias of the last head")


@register_mixer("path-fox", "PaTH attention plus the FoX forget gate (Yang et al. 2025)")
class PaTHFoX(PaTH):
    """PaTH-FoX from the same paper: PaTH attention with FoX's data-dependent forget gate
    added to the logits. Differences from the authors' layer: those of :class:`PaTH`; the gate
    bias starts like :class:`FoX`'s (options ``gate_bias_low/high``)."""

    Options = PaTHFoXOptions
    forget_gate = True


# -- Momentum attention -----------------------------------------------------------------

class MomentumOptions(_Opts):
    gamma: float = Field(0.5, description="shear strength: q_t + gamma (q_t - q_{t-1}), same for keys")
    learnable: bool = Field(True, description="learn gamma (one scalar per layer), starting at `gamma`")
    rope_base: float = Field(10000.0, gt=1.0)


@register_mixer("momentum", "Momentum attention: a first-difference shear on q and k before RoPE (2026)")
class MomentumAttention(MultiHeadMixer):
    """Momentum attention, Maitra 2026 ("Momentum Attention: The Physics of In-Context
    Learning and Spectral Forensics for Mechanistic Interpretability", arXiv 2602.04902):
    the symplectic shear ``q_t + gamma (q_t - q_{t-1})`` on queries and keys (values
    untouched), then RoPE softmax attention.

    Differences from the paper's layer, not changed here (each would change the
    ``momentum_attention`` op in ``kernels/``): the shear is applied *before* RoPE
    (``kernels/momentum`` gives the reason), while the paper's orthogonality argument is
    stated for momentum applied to the RoPE-rotated q, k; gamma is one learnable scalar per
    layer starting at 0.5 (``learnable: false`` fixes it), while the paper studies fixed
    couplings and fits ``gamma* = 4.17 N^-0.74`` against depth.
    """

    Options = MomentumOptions

    def __init__(self, d_model: int, n_heads: int, options: MomentumOptions, layer_idx: int = 0,
                 n_layers: int = 1) -> None:
        super().__init__(d_model, n_heads, n_layers)
        self.opts = options
        g = torch.tensor(float(options.gamma))
        if options.learnable:
            self.gamma = nn.Parameter(g)
        else:
            self.register_buffer("gamma", g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_qkv(x)
        return self.merge(momentum_attention(q, k, v, self.gamma, rope_base=self.opts.rope_base))


# -- linear RNN baselines --------------------------------------------------------------

class ChunkOptions(_Opts):
    chunk_size: int = Field(64, ge=1)


@register_mixer("linear", "linear attention with an elu+1 feature map (Katharopoulos et al. 2020)")
class LinearAttention(MultiHeadMixer):
    """Causal linear attention of Katharopoulos et al. 2020 ("Transformers are RNNs"):
    ``o_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)`` with ``phi = elu + 1``,
    computed in chunks. No differences from the paper's layer (an ``eps`` in the
    denominator guards against division by zero).
    """

    Options = ChunkOptions

    def __init__(self, d_model: int, n_heads: int, options: ChunkOptions, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, n_heads, n_layers)
        self.chunk_size = options.chunk_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_qkv(x)
        return self.merge(linear_attention(q, k, v, chunk_size=self.chunk_size))


class DeltaNetOptions(_Opts):
    chunk_size: int = Field(64, ge=1)
    conv_size: int | None = Field(4, ge=0, description="short causal depthwise conv on q, k, v after the "
                                  "projections (kernel width); 0 or null: none")
    feature_map: Literal["silu", "identity"] = Field("silu", description="on q and k before L2 normalisation")
    value_silu: bool = Field(True, description="SiLU on v (flash-linear-attention's DeltaNet applies it)")
    output_norm: bool = Field(True, description="per-head RMSNorm of the delta-rule output")
    output_gate: bool = Field(False, description="gate the normed output with SiLU(W_g x); adds d_model^2 "
                              "parameters per layer, so sizes are no longer matched")

    @model_validator(mode="after")
    def _check(self) -> "DeltaNetOptions":
        if self.output_gate and not self.output_norm:
            raise ValueError("output_gate needs output_norm: true (the gate multiplies the normed output)")
        return self


@register_mixer("deltanet", "DeltaNet: delta rule, short convs, SiLU + L2 q/k, output norm (Yang et al. 2024)")
class DeltaNet(MultiHeadMixer):
    """DeltaNet as in Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over
    Sequence Length" (the layer of flash-linear-attention's ``DeltaNet``)::

        q, k, v = conv4(W_q x), conv4(W_k x), conv4(W_v x)          short causal depthwise convs
        q, k = L2(SiLU(q)), L2(SiLU(k));  v = SiLU(v);  beta = sigmoid(w_beta . x) per head
        S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T;   o_t = S_t q_t / sqrt(d_head)
        out = W_o RMSNorm_head(o)                                   (gated: RMSNorm(o) * SiLU(W_g x))

    Options turn the parts off one by one; ``conv_size: 0, feature_map: identity,
    value_silu: false, output_norm: false`` is the bare delta rule (Schlag et al. 2021 with
    L2-normalised q, k; ``beta`` has no bias, as in flash-linear-attention). Differences from
    the paper's layer: none known in the defaults (the output gate is off, as in
    flash-linear-attention). The convs start normal with std ``arch.init_std`` (0.02), as
    flash-linear-attention's models initialise them; in the small models here (d_model 32) the
    output's mean square then starts below the norm's eps (1e-5), so the norm starts as a
    plain rescale and normalises only once the weights have grown.
    """

    Options = DeltaNetOptions

    def __init__(self, d_model: int, n_heads: int, options: DeltaNetOptions, layer_idx: int = 0,
                 n_layers: int = 1) -> None:
        super().__init__(d_model, n_heads, n_layers)
        self.opts = options
        self.conv = ShortConv(3 * d_model, options.conv_size) if options.conv_size else None
        self.beta = init_linear(nn.Linear(d_model, n_heads, bias=False))
        self.norm = RMSNorm(self.head_dim, eps=1e-5) if options.output_norm else None
        self.gate = init_linear(nn.Linear(d_model, d_model, bias=False)) if options.output_gate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        qkv = self.qkv(x)
        if self.conv is not None:  # one depthwise conv over the fused q|k|v = three separate convs
            qkv = self.conv(qkv)
        q, k, v = qkv.view(b, t, 3, self.n_heads, self.head_dim).unbind(2)
        if self.opts.feature_map == "silu":
            q, k = F.silu(q), F.silu(k)
        if self.opts.value_silu:
            v = F.silu(v)
        q = F.normalize(q, dim=-1)  # keys are L2-normalised inside the op
        beta = torch.sigmoid(self.beta(x))
        o = deltanet(q, k, v, beta, chunk_size=self.opts.chunk_size)
        if self.norm is not None:
            o = self.norm(o)
        if self.gate is not None:
            o = o * F.silu(self.gate(x)).view(b, t, self.n_heads, self.head_dim)
        return self.merge(o)
