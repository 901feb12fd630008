"""Causal softmax attention through PyTorch's fused ``scaled_dot_product_attention``.

On CPU and CUDA alike SDPA's fused kernels (FlashAttention on sm80/sm90) are already the
fastest path, so this is the op's path on every device.  The benchmark entries ``sdpa`` (the
baseline every kernel is compared with) and ``flash`` (SDPA restricted to its FlashAttention
backend) live here too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softmax_attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           scale: float | None = None, window: int | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` in, ``[B, T, H, D]`` out, causal; ``window`` limits each query to its
    last ``window`` keys (sliding-window attention) through a boolean mask."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    if window is None:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale)
    else:
        t = q.shape[1]
        i = torch.arange(t, device=q.device)[:, None]
        j = torch.arange(t, device=q.device)[None, :]
        mask = (j <= i) & (i - j < window)
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


def sdpa_attention(q, k, v, causal: bool = True):
    """PyTorch's fused ``scaled_dot_product_attention`` (the normalisation baseline)."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=causal).transpose(1, 2)


def flash_attention(q, k, v, causal: bool = True):
    """SDPA restricted to its FlashAttention backend (CUDA, half precision)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return sdpa_attention(q, k, v, causal)
