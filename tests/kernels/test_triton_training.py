"""A 2-layer model trained 20 steps through the Triton kernels (under the interpreter) follows
the torch path's loss curve to 1e-4 in fp32, for every architecture with a Triton mixer op.

Both paths run in one fresh interpreter process (``TRITON_INTERPRET=1`` must be set before
triton is imported): the same initial weights, the same batches, the same AdamW steps, once
inside ``use_kernels("torch")`` and once inside ``use_kernels("triton")``.  The recorded paths
(:func:`kernels.dispatch.paths_taken`) prove which code ran.  A difference in any gradient
(a wrong ``dw`` in PaTH, a wrong gate gradient in FoX) moves the weights and shows in the
later losses, so the curve checks the backward as well as the forward.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.triton

ARCHS = {"fox": "fox_attention", "path": "path_attention", "path-fox": "path_attention", "deltanet": "deltanet"}

SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from kernels.dispatch import clear_paths, paths_taken, use_kernels
from models import LM
from models.config import ArchConfig

ARCHS = %s
STEPS, BATCH, T, VOCAB = 20, 2, 21, 11   # T not a multiple of any block: ragged edges every step
torch.manual_seed(0)
start = torch.randint(0, VOCAB, (STEPS, BATCH, 1))
data = (start + 3 * torch.arange(T + 1)) %% VOCAB   # a learnable sequence: each token fixes the next
report = {}
for arch in ARCHS:
    curves, paths = {}, {}
    for mode in ("torch", "triton"):
        torch.manual_seed(1)
        model = LM(ArchConfig(name=arch, d_model=32, n_layers=2, n_heads=2), VOCAB)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        clear_paths()
        with use_kernels(mode):
            for step in range(STEPS):
                x, y = data[step, :, :-1], data[step, :, 1:]
                loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        curves[mode], paths[mode] = losses, paths_taken()
    report[arch] = {"curves": curves, "paths": paths}
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def report(run_interpreted):
    return run_interpreted(SCRIPT % (list(ARCHS),), timeout=900)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_triton_training_matches_the_torch_path(report, arch):
    r = report[arch]
    assert r["paths"]["torch"] == {ARCHS[arch]: "torch"}
    assert r["paths"]["triton"] == {ARCHS[arch]: "triton"}
    torch_curve, triton_curve = r["curves"]["torch"], r["curves"]["triton"]
    assert len(torch_curve) == len(triton_curve) == 20
    diffs = [abs(a - b) for a, b in zip(torch_curve, triton_curve)]
    assert max(diffs) <= 1e-4, (arch, diffs)
    assert torch_curve[-1] < torch_curve[0] - 0.05  # the model learned something: the curve is not flat
