"""Every Triton kernel on a real GPU, forward and every gradient, against its float64 reference.

Marked ``gpu`` (deselected by default; ``benchmarks/gpu_check.sh`` runs it): bf16 at head
dims 64 and 128 (the training configs), plus fp16 and fp32 at 64.  Inputs come from each op's
own builder (the benchmark's inputs), the reference runs in float64 on the same device, and
errors are measured relative to the reference's largest magnitude, so one tolerance fits ops
whose outputs and gradients have different scales.

``ARCHBENCH_GPU_CHECK_DEVICE=cpu`` with ``TRITON_INTERPRET=1`` runs the same checks through the
interpreter at a small size (how this file was checked on a machine without a GPU).
"""

from __future__ import annotations

import os

import pytest
import torch

from kernels.inputs import KernelShape
from kernels.registry import get_kernel, get_op

DEVICE = os.environ.get("ARCHBENCH_GPU_CHECK_DEVICE", "cuda")
OPS = ("softmax", "fox", "path", "path-fox", "momentum", "linear", "deltanet")
CASES = [(torch.bfloat16, 64), (torch.bfloat16, 128), (torch.float16, 64), (torch.float32, 64)]
TOL = {torch.bfloat16: 4e-2, torch.float16: 1e-2, torch.float32: 1e-4}

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize(("dtype", "head_dim"), CASES, ids=lambda x: str(x).replace("torch.", ""))
@pytest.mark.parametrize("op", OPS)
def test_triton_matches_the_reference(op, dtype, head_dim):
    small = DEVICE != "cuda"
    shape = KernelShape(1 if small else 2, 37 if small else 250, 2 if small else 3,
                        16 if small else head_dim, dtype=dtype, device=DEVICE, seed=7)
    inputs = get_op(op).inputs(shape)
    leaves = {k: (v.detach().requires_grad_() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
              for k, v in inputs.items()}
    out = get_kernel(op, "triton").fn(**leaves)
    ref_in = {k: (v.detach().double().requires_grad_() if isinstance(v, torch.Tensor) and v.is_floating_point()
                  else v) for k, v in inputs.items()}
    ref = get_kernel(op, "reference").fn(**ref_in)
    assert out.dtype == dtype and out.shape == ref.shape
    cot = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(DEVICE)
    names = [k for k, v in leaves.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    grads = torch.autograd.grad(out, [leaves[k] for k in names], cot.to(dtype), allow_unused=True)
    ref_grads = torch.autograd.grad(ref, [ref_in[k] for k in names], cot, allow_unused=True)
    errors = {"out": relative_error(out, ref)}
    for name, g, r in zip(names, grads, ref_grads):
        if r is None:
            continue
        assert g is not None, f"{op}: no gradient for {name}"
        errors[f"d{name}"] = relative_error(g, r)
    bad = {k: e for k, e in errors.items() if not e <= TOL[dtype]}
    assert not bad, f"{op} {dtype} d{head_dim}: relative errors over {TOL[dtype]}: {bad} (all: {errors})"
