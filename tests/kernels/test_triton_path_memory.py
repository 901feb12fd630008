"""What the PaTH Triton forward saves for the backward: O(T D) per head (the closed form
``kernels.path.triton_kernel.saved_bytes``), measured with ``saved_tensors_hooks`` under
TRITON_INTERPRET=1 at two sequence lengths; it must scale linearly in T."""

from __future__ import annotations

import pytest

SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import torch.nn.functional as F
import kernels.path.triton_kernel as tk

B, H, D = 2, 2, 16


def measure(t, fox, dtype):
    g = torch.Generator().manual_seed(t)
    xs = [torch.randn(B, t, H, D, generator=g) for _ in range(3)]
    xs.append(F.normalize(torch.randn(B, t, H, D, generator=g), dim=-1))
    xs.append(torch.rand(B, t, H, generator=g) * 2)
    if fox:
        xs.append(F.logsigmoid(torch.randn(B, t, H, generator=g)))
    xs = [x.to(dtype).requires_grad_() for x in xs]
    storages = {}

    def pack(x):
        s = x.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = tk.path_attention_triton(*xs, chunk_size=64)
    out.sum().backward()  # the saved graph is usable
    return sum(storages.values()), tk.saved_bytes(B, t, H, D, dtype, fox)


report = {}
for fox in (False, True):
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        report[f"{name}_fox{int(fox)}"] = {t: measure(t, fox, dtype) for t in (64, 256)}
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def report(run_interpreted):
    return run_interpreted(SCRIPT)


def test_forward_saves_linear_in_t(report):
    assert len(report) == 4
    for case, by_t in report.items():
        (m64, f64), (m256, f256) = by_t["64"], by_t["256"]
        print(f"{case}: saved {m64} B at T=64, {m256} B at T=256 (formula {f64}, {f256})")
        assert m64 == f64 and m256 == f256, case
        assert m256 == 4 * m64, case  # linear in T: 4x the length, 4x the bytes
