"""FoX on CPU: one fused SDPA call with the forget-gate bias folded into the head dim.

With ``c = cumsum(log_f)`` over time the gate bias ``c_i - c_j`` is a sum of a per-query
and a per-key term, so it fits in a few extra head-dim slots:

    q' = [hi_i,  1,    lo_i,  1,    scale * q_i]
    k' = [1,    -hi_j, 1,    -lo_j, k_j        ]        v' = [0, 0, 0, 0, v_j]

and ``q'_i . k'_j = c_i - c_j + scale * q_i . k_j``.  One causal
``scaled_dot_product_attention(q', k', v', scale=1)`` then computes FoX with SDPA's fused
CPU kernel: O(T * D) memory, and autograd reaches ``log_f`` through ``c``.  ``v`` is padded
to the same width because that kernel needs equal head dims (a narrower ``v`` silently
drops to the O(T^2)-memory math path, ~4x slower).

Precision.  ``|c|`` grows linearly with T (about 300 at T=4096 for gates near
``sigmoid(3)``), so a bias formed as ``fp32(c_i) - fp32(c_j)`` carries an error of
``ulp(|c|)`` (~1e-5), and so does a dot product that adds ``c_i`` to ``q.k`` before
subtracting ``c_j``.  Two cures, both cheap:

* ``c`` is summed in float64 and split as ``hi + lo`` (``hi = fp32(c)``, ``lo`` the
  rounding residue), so nothing is lost in representing it;
* the gate slots come *first*, so the dot product's running sum forms
  ``hi_i - hi_j`` (exact for nearby positions) before anything else is added.

The second relies on the GEMM accumulating the head dim in order, which CPU BLAS
micro-kernels do; were it not so, the error would fall back to ``ulp(|c|)``, never worse.
At T=4096 the fp32 error against the float64 reference is ~1e-6 even for strong
forgetting (plain fp32 SDPA: ~5e-7).  fp16/bf16 inputs are computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

N_GATE_SLOTS = 4


def fox_attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                       scale: float | None = None) -> torch.Tensor:
    """``[B, T, H, D]`` q, k, v and ``[B, T, H]`` log forget gates in, ``[B, T, H, D]`` out."""
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    out_dtype = q.dtype
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    c = torch.cumsum(log_f.to(torch.float64), dim=1)  # [B, T, H]
    c = c - 0.5 * c[:, -1:].detach()  # centre: only differences c_i - c_j matter
    hi = c.detach().to(dt)  # exact representable part; gradient flows through lo
    lo = (c - hi.to(torch.float64)).to(dt)
    hi, lo = hi[..., None], lo[..., None]
    one = torch.ones_like(hi)
    qa = torch.cat((hi, one, lo, one, q * scale), dim=-1)
    ka = torch.cat((one, -hi, one, -lo, k), dim=-1)
    va = F.pad(v, (N_GATE_SLOTS, 0))
    o = F.scaled_dot_product_attention(qa.transpose(1, 2), ka.transpose(1, 2), va.transpose(1, 2),
                                       is_causal=True, scale=1.0)
    return o.transpose(1, 2)[..., N_GATE_SLOTS:].to(out_dtype)
