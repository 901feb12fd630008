"""PaTH Triton kernels (forward and every gradient) under TRITON_INTERPRET=1, against the
float64 reference, in fp32 and fp16, plus bit-reproducibility of the backward.

TRITON_INTERPRET must be set before triton is first imported, and another test in this
process may already have imported it, so the kernels run in a fresh interpreter process
that prints ``(max |error|, max |reference|)`` per tensor as JSON.
"""

from __future__ import annotations

import pytest

NAMES = ["q", "k", "v", "w", "beta", "log_f"]

SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import torch.nn.functional as F
import kernels.path.triton_kernel as tk
from kernels.path.reference import path_attention_ref

CASES = {
    # name: (batch, time, heads, head_dim, chunk_size, fox, dtype, extreme)
    "ragged": (2, 37, 2, 16, 16, False, "fp32", False),
    "ragged_fox": (2, 37, 2, 16, 16, True, "fp32", False),
    "head_dim_24_fox": (1, 50, 2, 24, 16, True, "fp32", False),
    "extreme_fox": (2, 45, 2, 16, 16, True, "fp32", True),
    "single_position": (1, 1, 2, 16, 16, False, "fp32", False),
    "single_position_fox": (2, 1, 1, 16, 16, True, "fp32", False),
    "ragged_fp16": (2, 37, 2, 16, 16, False, "fp16", False),
    "ragged_fox_fp16": (2, 37, 2, 32, 16, True, "fp16", False),
    "extreme_fox_fp16": (1, 45, 2, 16, 16, True, "fp16", True),
    "fwd64_bwd32_fox_fp16": (1, 70, 1, 32, 64, True, "fp16", False),  # forward/backward chunks differ
}
DT = {"fp32": torch.float32, "fp16": torch.float16}
gen = torch.Generator().manual_seed(0)


def inputs(b, t, h, d, fox, extreme):
    q, k, v = (torch.randn(b, t, h, d, generator=gen) for _ in range(3))
    w = F.normalize(torch.randn(b, t, h, d, generator=gen), dim=-1)
    beta = 0.02 + 1.96 * torch.rand(b, t, h, generator=gen)
    log_f = F.logsigmoid(torch.randn(b, t, h, generator=gen) + 2)
    if extreme:  # beta near 0 and near 2, gates that shut (log_f = -20) and stay open (0)
        pick = torch.randint(0, 4, (b, t, h), generator=gen)
        beta = torch.where(pick == 0, torch.full_like(beta, 1e-4), beta)
        beta = torch.where(pick == 1, torch.full_like(beta, 2 - 1e-4), beta)
        log_f = torch.where(pick == 2, torch.full_like(log_f, -20.0), log_f)
        log_f = torch.where(pick == 3, torch.zeros_like(log_f), log_f)
    return [q, k, v, w, beta] + ([log_f] if fox else [])


def grads(xs, cot, **kw):
    out = tk.path_attention_triton(*xs, **kw)
    g = torch.autograd.grad(out, xs, cot, allow_unused=True, materialize_grads=True)
    return out, g


report = {}
for name, (b, t, h, d, chunk, fox, dt, extreme) in CASES.items():
    xs = [x.to(DT[dt]).requires_grad_() for x in inputs(b, t, h, d, fox, extreme)]
    cot = torch.randn(b, t, h, d, generator=gen).to(DT[dt])
    out, g = grads(xs, cot, chunk_size=chunk)
    with torch.no_grad():
        out_ng = tk.path_attention_triton(*xs, chunk_size=chunk)
    x64 = [x.detach().double().requires_grad_() for x in xs]
    ref = path_attention_ref(*x64)
    g_ref = torch.autograd.grad(ref, x64, cot.double(), allow_unused=True, materialize_grads=True)
    err = lambda a, r: ((a.double() - r).abs().max().item(), r.abs().max().item())
    report[name] = {
        "out": err(out, ref),
        "out_no_grad": err(out_ng, ref),
        "dtype_out": str(out.dtype),
        "grads": [err(a, r) for a, r in zip(g, g_ref)],
        "beta_range": [xs[4].min().item(), xs[4].max().item()],
    }

# determinism: two backward runs, and a run with the scratch capped to one batch-head per group
xs = [x.requires_grad_() for x in inputs(2, 53, 2, 16, True, False)]
cot = torch.randn(2, 53, 2, 16, generator=gen)
_, g1 = grads(xs, cot, chunk_size=16)
_, g2 = grads(xs, cot, chunk_size=16)
tk.SCRATCH_BYTES = tk.scratch_bytes_per_head(4, 16, 16, torch.float32)  # one batch-head per group
_, g3 = grads(xs, cot, chunk_size=16)
report["determinism"] = {"repeat": all(torch.equal(a, b) for a, b in zip(g1, g2)),
                         "grouped": all(torch.equal(a, b) for a, b in zip(g1, g3))}
print("REPORT" + json.dumps(report))
"""

TOL = {
    "fp32": {"out": 1e-5, "grads": 5e-5},
    "fp16": {"out": 1e-2, "grads": 2e-2},
}


@pytest.fixture(scope="module")
def report(run_interpreted):
    return run_interpreted(SCRIPT)


def test_all_cases_ran(report):
    assert len(report) == 11
    assert report["extreme_fox"]["beta_range"][0] < 1e-3 < 1.999 < report["extreme_fox"]["beta_range"][1]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_triton_matches_reference(report, check_errors, dtype):
    cases = {k: v for k, v in report.items() if k != "determinism" and k.endswith("fp16") == (dtype == "fp16")}
    assert cases
    for name, errs in cases.items():
        names = NAMES if "fox" in name else NAMES[:5]
        check_errors(errs, names, TOL[dtype], name)
        err, scale = errs["out_no_grad"]
        assert err <= TOL[dtype]["out"] * max(1.0, scale), (name, "out without grad", err)
        assert errs["dtype_out"] == ("torch.float16" if dtype == "fp16" else "torch.float32")


def test_backward_is_deterministic(report):
    assert report["determinism"] == {"repeat": True, "grouped": True}
