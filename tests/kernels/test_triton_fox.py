"""Triton kernels under Triton's CPU interpreter: FoX / softmax attention (forward and
backward), plus the momentum (shear + RoPE) and linear-attention kernels, which share this
file's single interpreter subprocess to keep the suite fast.

``TRITON_INTERPRET=1`` must be set before ``triton`` is first imported: triton's own
language helpers (``tl.zeros`` ...) are decorated at that moment, and kernels decorated
later cannot repair them.  In a full ``pytest tests/`` run another module may import
triton first, so setting the variable at the top of this module is not enough (checked:
with triton imported before the variable is set, every kernel launch fails with "Cannot
call @triton.jit'd outside of the scope of a kernel").  Hence:

* when this process was started with ``TRITON_INTERPRET=1`` and triton's language is
  interpreted, the kernel tests below (marked ``triton_interpreter``) run directly and
  ``test_interpreter_tests_in_subprocess`` is deselected;
* otherwise ``test_interpreter_tests_in_subprocess`` re-runs this file in a fresh
  ``python -m pytest`` with the variable set, and the kernel tests are deselected here
  (not skipped: they do run, in that subprocess), see ``tests/kernels/conftest.py``.

The interpreter computes bf16 dots wrongly, so only fp32 and fp16 are checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.kernels.conftest import require_triton

triton = require_triton()

from kernels.fox.reference import fox_attention_ref  # noqa: E402
from kernels.linear_attention.reference import linear_attention_ref  # noqa: E402
from kernels.momentum.reference import momentum_attention_ref  # noqa: E402
from kernels.softmax_attention.reference import softmax_attention_ref  # noqa: E402

pytestmark = pytest.mark.triton

REPO = Path(__file__).resolve().parents[2]


def _language_interpreted() -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(triton.language.standard.zeros, InterpretedFunction)


# read by the collection hook in tests/kernels/conftest.py: True runs only the tests marked
# triton_interpreter here, False deselects them (the subprocess test runs them)
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1" and _language_interpreted()
in_interpreter = pytest.mark.triton_interpreter

if INTERPRETING:
    from kernels.fox import triton_kernel as tk
    from kernels.linear_attention import triton_kernel as la_tk
    from kernels.momentum import triton_kernel as mo_tk
    from kernels.softmax_attention import triton_kernel as sm_tk
else:
    tk = la_tk = mo_tk = None

def interpreter_tests() -> dict[str, int]:
    """Each test function of this module marked ``triton_interpreter``, with its number of
    parametrized cases: what the subprocess must run and pass."""
    tests = {}
    for name, fn in globals().items():
        marks = getattr(fn, "pytestmark", [])
        if name.startswith("test_") and any(m.name == "triton_interpreter" for m in marks):
            cases = 1
            for m in marks:
                if m.name == "parametrize":
                    cases *= len(m.args[1])
            tests[name] = cases
    return tests


def test_interpreter_tests_in_subprocess(tmp_path):
    expected = interpreter_tests()
    assert sum(expected.values()) >= 15  # FoX, softmax, momentum and linear attention cases
    junit = tmp_path / "interpreted.xml"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider",
         "-p", "no:randomly", f"--junitxml={junit}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    ran: dict[str, int] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        assert not outcome, (case.get("name"), outcome, proc.stdout[-3000:])
        fn = case.get("name").split("[")[0]
        ran[fn] = ran.get(fn, 0) + 1
    # every interpreter test ran and passed, each parametrization once; nothing else ran
    assert ran == expected, proc.stdout[-3000:]

@in_interpreter
def test_kernels_are_interpreted():
    from triton.runtime.interpreter import InterpretedFunction

    # the kernels are tuned (triton.autotune) wrappers around the interpreted functions
    for fn in (tk._fox_fwd_kernel, tk._fox_bwd_dkdv_kernel, tk._fox_bwd_dq_kernel, la_tk._la_state_kernel,
               la_tk._la_fwd_kernel, mo_tk._shear_rope_fwd_kernel):
        assert isinstance(fn.fn, InterpretedFunction)


def make_inputs(b, t, h, d, dtype, seed=0, gate_bias=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, t, h, d, generator=g, dtype=torch.float64) for _ in range(3))
    log_f = F.logsigmoid(torch.randn(b, t, h, generator=g, dtype=torch.float64) + gate_bias)
    return [x.to(dtype).requires_grad_() for x in (q, k, v)] + [log_f.float().requires_grad_()]


def check_against_reference(fn, ref_fn, inputs, atol, rtol):
    out = fn(*inputs)
    assert out.dtype == inputs[0].dtype and out.shape == inputs[2].shape  # shaped like v
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad(out, inputs, cot.to(out.dtype))
    inputs64 = [x.detach().double().requires_grad_() for x in inputs]
    ref = ref_fn(*inputs64)
    ref_grads = torch.autograd.grad(ref, inputs64, cot)
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=rtol)
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        torch.testing.assert_close(a.double(), b, atol=atol, rtol=rtol, msg=f"grad of input {i}")


# Under the interpreter the blocks are 16 (forward, dq rows; dk/dv rows) and 32 (dk/dv
# columns), so: (2, 37, 3, 16): batch and heads > 1 (3 heads, so a batch/head mix-up in the
# [B*H, T] gate rows shows), T not a multiple of any block, three query blocks walked in
# reverse; (1, 64, 1, 24): head dim padded to 32, full blocks only; (2, 1, 2, 16): a single
# position; (2, 50, 2, 32): four query blocks, two key blocks with a ragged tail.
@in_interpreter
@pytest.mark.parametrize("shape", [(2, 37, 3, 16), (1, 64, 1, 24), (2, 1, 2, 16), (2, 50, 2, 32)])
def test_fox_triton_fp32(shape):
    check_against_reference(tk.fox_attention_triton, fox_attention_ref,
                            make_inputs(*shape, torch.float32), atol=2e-5, rtol=1e-4)


@in_interpreter
@pytest.mark.parametrize("shape", [(2, 37, 3, 16), (2, 1, 2, 16)])
def test_fox_triton_fp16(shape):
    inputs = make_inputs(*shape, torch.float16)
    check_against_reference(tk.fox_attention_triton, fox_attention_ref, inputs,
                            atol=2e-2, rtol=2e-2)


def extreme_gates(b, t, h, seed=2):
    """log_f with exact zeros (no forgetting) and -30 (forget everything before) mixed with
    ordinary values: whole rows of zeros, single -30 spikes, and a run of -30s."""
    g = torch.Generator().manual_seed(seed)
    log_f = F.logsigmoid(torch.randn(b, t, h, generator=g, dtype=torch.float64) + 1.0)
    log_f[:, :, 0] = 0.0  # head 0: plain softmax attention through the gate code
    log_f[0, t // 3, 1:] = -30.0
    log_f[-1, t // 2: t // 2 + 5, -1] = -30.0
    log_f[0, 2 * t // 3:, 1:] = 0.0
    return log_f.float()


@in_interpreter
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float16, 2e-2)])
def test_fox_triton_extreme_gates(dtype, tol):
    q, k, v, _ = make_inputs(2, 45, 3, 16, dtype, seed=3)
    log_f = extreme_gates(2, 45, 3).requires_grad_()
    check_against_reference(tk.fox_attention_triton, fox_attention_ref, [q, k, v, log_f],
                            atol=tol, rtol=max(tol, 1e-4))


@in_interpreter
def test_fox_triton_strided_inputs():
    """q, k, v as non-contiguous views of one fused projection (the wrapper copies them)."""
    g = torch.Generator().manual_seed(4)
    qkv = torch.randn(2, 29, 2, 3, 16, generator=g)
    q, k, v = (x.detach().requires_grad_() for x in qkv.unbind(3))
    log_f = F.logsigmoid(torch.randn(2, 29, 2, generator=g)).requires_grad_()
    check_against_reference(tk.fox_attention_triton, fox_attention_ref, [q, k, v, log_f],
                            atol=2e-5, rtol=1e-4)


@in_interpreter
def test_unsupported_head_dim_raises():
    from kernels.triton_utils import UnsupportedHeadDim

    x = torch.zeros(1, 4, 1, 256)
    with pytest.raises(UnsupportedHeadDim, match="head_dim 256"):
        tk.fox_attention_triton(x, x, x, torch.zeros(1, 4, 1))
    with pytest.raises(UnsupportedHeadDim):
        sm_tk.softmax_attention_triton(x, x, x)


@in_interpreter
def test_fox_triton_custom_scale_and_strong_gates():
    inputs = make_inputs(1, 45, 2, 16, torch.float32, gate_bias=-1.0)
    check_against_reference(lambda q, k, v, lf: tk.fox_attention_triton(q, k, v, lf, scale=0.5),
                            lambda q, k, v, lf: fox_attention_ref(q, k, v, lf, scale=0.5),
                            inputs, atol=2e-5, rtol=1e-4)


@in_interpreter
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float16, 2e-2)])
def test_softmax_triton(dtype, tol):
    q, k, v, _ = make_inputs(2, 37, 3, 16, dtype)
    check_against_reference(sm_tk.softmax_attention_triton, softmax_attention_ref, [q, k, v],
                            atol=tol, rtol=max(tol, 1e-4))


@in_interpreter
@pytest.mark.parametrize("gamma_kind", ["float", "scalar", "per_head", "per_position"])
def test_momentum_triton_fp32(gamma_kind):
    b, t, h, d = 2, 37, 2, 16
    q, k, v, _ = make_inputs(b, t, h, d, torch.float32)
    g = torch.Generator().manual_seed(3)
    gamma = {"float": 0.4, "scalar": torch.tensor(0.6), "per_head": torch.rand(h, generator=g),
             "per_position": torch.rand(b, t, h, generator=g)}[gamma_kind]
    if isinstance(gamma, torch.Tensor):
        gamma.requires_grad_()
        check_against_reference(mo_tk.momentum_attention_triton, momentum_attention_ref,
                                [q, k, v, gamma], atol=1e-4, rtol=1e-4)
    else:
        check_against_reference(lambda q, k, v: mo_tk.momentum_attention_triton(q, k, v, gamma),
                                lambda q, k, v: momentum_attention_ref(q, k, v, gamma),
                                [q, k, v], atol=2e-5, rtol=1e-4)


@in_interpreter
@pytest.mark.parametrize("t,d,dv,chunk", [(37, 16, 16, 16), (70, 24, 20, 32), (1, 16, 16, 64)])
def test_linear_attention_triton_fp32(t, d, dv, chunk):
    g = torch.Generator().manual_seed(4)
    q, k = (torch.randn(2, t, 2, d, generator=g).requires_grad_() for _ in range(2))
    v = torch.randn(2, t, 2, dv, generator=g).requires_grad_()
    check_against_reference(lambda q, k, v: la_tk.linear_attention_triton(q, k, v, chunk_size=chunk),
                            linear_attention_ref, [q, k, v], atol=2e-5, rtol=1e-4)


@in_interpreter
def test_linear_attention_triton_fp16():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 45, 2, 16, generator=g).half().requires_grad_() for _ in range(3))
    check_against_reference(la_tk.linear_attention_triton, linear_attention_ref, [q, k, v],
                            atol=1e-2, rtol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(INTERPRETING or not torch.cuda.is_available(),
                    reason="needs a CUDA GPU and compiled (not interpreted) kernels")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_fox_cuda_dispatch(dtype):
    """On a GPU the public op runs the compiled Triton kernels; compare with the CPU path."""
    from kernels import fox_attention

    inputs = [x.detach() for x in make_inputs(2, 300, 4, 64, dtype)]
    cuda_inputs = [x.cuda().requires_grad_() for x in inputs]
    cpu_inputs = [x.float().requires_grad_() for x in inputs]
    out = fox_attention(*cuda_inputs)
    ref = fox_attention(*cpu_inputs)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, cuda_inputs, cot.to(device="cuda", dtype=dtype))
    ref_grads = torch.autograd.grad(ref, cpu_inputs, cot)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.float().cpu(), ref, atol=tol, rtol=tol)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.float().cpu(), b, atol=tol * 10, rtol=tol * 10)


@pytest.mark.gpu
@pytest.mark.skipif(INTERPRETING or not torch.cuda.is_available(),
                    reason="needs a CUDA GPU and compiled (not interpreted) kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_momentum_and_linear_cuda_dispatch(dtype):
    """On a GPU, momentum (fused shear + RoPE kernel) and linear attention (chunked kernels)
    agree with their CPU paths, forward and gradients (gamma included)."""
    from kernels import linear_attention, momentum_attention

    g = torch.Generator().manual_seed(6)
    qkv = [torch.randn(2, 300, 4, 64, generator=g) for _ in range(3)]
    gamma = torch.rand(4, generator=g)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    for fn, extra in ((momentum_attention, [gamma]), (linear_attention, [])):
        cuda_in = [x.to("cuda", dtype).requires_grad_() for x in qkv + extra]
        cpu_in = [x.clone().requires_grad_() for x in qkv + extra]
        out, ref = fn(*cuda_in), fn(*cpu_in)
        cot = torch.randn(ref.shape, generator=g)
        grads = torch.autograd.grad(out, cuda_in, cot.to("cuda", dtype))
        ref_grads = torch.autograd.grad(ref, cpu_in, cot)
        torch.testing.assert_close(out.float().cpu(), ref, atol=tol, rtol=tol)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a.float().cpu(), b, atol=tol * 10, rtol=tol * 10)
