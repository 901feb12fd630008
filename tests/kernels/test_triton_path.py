"""PaTH Triton kernels (forward and backward) under TRITON_INTERPRET=1, in fp32.

TRITON_INTERPRET must be set before triton is first imported, and another test in this
process may already have imported it, so the kernels run in a fresh interpreter process
that prints its errors against the float64 reference as JSON.
"""

from __future__ import annotations

import pytest

NAMES = ["q", "k", "v", "w", "beta", "log_f"]

SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import torch.nn.functional as F
from kernels.path.triton_kernel import path_attention_triton
from kernels.path.reference import path_attention_ref

CASES = {
    # name: (batch, time, heads, head_dim, chunk, fox)
    "three_chunks": (2, 37, 2, 16, 16, False),
    "three_chunks_fox": (2, 37, 2, 16, 16, True),
    "head_dim_24_fox": (1, 50, 2, 24, 16, True),
    "chunk_32_fox": (1, 70, 1, 32, 32, True),
    "single_position": (1, 1, 2, 16, 16, False),
}
torch.manual_seed(0)
report = {}
for name, (b, t, h, d, chunk, fox) in CASES.items():
    q, k, v = torch.randn(b, t, h, d), torch.randn(b, t, h, d), torch.randn(b, t, h, d)
    w = F.normalize(torch.randn(b, t, h, d), dim=-1)
    beta = 0.02 + 1.96 * torch.rand(b, t, h)
    xs = [q, k, v, w, beta] + ([F.logsigmoid(torch.randn(b, t, h) + 2)] if fox else [])
    xs = [x.requires_grad_() for x in xs]
    out = path_attention_triton(*xs, chunk_size=chunk)
    cot = torch.randn_like(out)
    g = torch.autograd.grad(out, xs, cot, allow_unused=True, materialize_grads=True)
    with torch.no_grad():
        out_ng = path_attention_triton(*xs, chunk_size=chunk)
    x64 = [x.detach().double().requires_grad_() for x in xs]
    ref = path_attention_ref(*x64)
    g_ref = torch.autograd.grad(ref, x64, cot.double(), allow_unused=True, materialize_grads=True)
    report[name] = {
        "out": (out.double() - ref).abs().max().item(),
        "out_no_grad": (out_ng.double() - ref).abs().max().item(),
        "beta_above_1": bool((beta > 1).any()),
        "grads": [(a.double() - r).abs().max().item() for a, r in zip(g, g_ref)],
    }
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def report(run_interpreted):
    return run_interpreted(SCRIPT)


def test_all_cases_ran(report):
    assert set(report) == {"three_chunks", "three_chunks_fox", "head_dim_24_fox",
                           "chunk_32_fox", "single_position"}
    assert report["three_chunks"]["beta_above_1"]  # negative eigenvalues exercised


def test_triton_forward_matches_reference(report):
    for name, errs in report.items():
        assert errs["out"] < 1e-5, (name, errs["out"])
        assert errs["out_no_grad"] < 1e-5, (name, errs["out_no_grad"])


def test_triton_backward_matches_reference(report):
    for name, errs in report.items():
        n = len(errs["grads"])
        assert n == (6 if name.endswith("fox") else 5)
        for var, e in zip(NAMES, errs["grads"]):
            assert e < 5e-5, (name, var, e)
