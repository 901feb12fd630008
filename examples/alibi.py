"""A custom mixer: ALiBi attention (Press et al. 2022), registered as architecture `alibi`."""

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from models import register_mixer


class AlibiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_slope: float = 1.0  # head h (1-based) gets slope max_slope * 2 ** (-8 h / n_heads)


@register_mixer("alibi", "softmax attention with ALiBi distance penalties (Press et al. 2022)")
class Alibi(nn.Module):
    Options = AlibiOptions

    def __init__(self, d_model, n_heads, options, layer_idx=0, n_layers=1):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        slopes = options.max_slope * 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)
        self.register_buffer("slopes", slopes, persistent=False)

    def forward(self, x):  # [batch, time, d_model] -> same, causal
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        pos = torch.arange(t, device=x.device)
        dist = (pos[:, None] - pos[None, :]).to(q.dtype)  # i - j
        bias = (-self.slopes.to(q.dtype)[:, None, None] * dist).masked_fill(dist < 0, float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [b, h, t, d/h]
        return self.out(y.transpose(1, 2).reshape(b, t, d))
