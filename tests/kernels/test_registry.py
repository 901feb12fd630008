"""The kernel registry: built-ins, op declarations and their FLOP formulas, the decorator,
entry points, an op added in a folder of its own, and the fla adapters (mocked)."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

import archbench.registry
import kernels
import kernels.registry as reg
from kernels.registry import (
    BASELINE, KernelShape, UnknownKernelError, forward_flops, get_kernel, get_op, kernel_entries, op_names,
    register_fla, register_kernel, register_op,
)

ROOT = Path(__file__).resolve().parents[2]
OPS = ["deltanet", "fox", "linear", "momentum", "path", "path-fox", "softmax"]


@pytest.fixture
def fresh(monkeypatch):
    """No kernels, the built-in op declarations (copied: what a test declares is undone) and
    nothing left to load lazily."""
    monkeypatch.setattr(reg, "_KERNELS", {})
    monkeypatch.setattr(reg, "_loaded", {"builtins", "entry_points", "fla"})
    monkeypatch.setattr(reg.OPS, "_items", dict(reg.OPS._items))
    monkeypatch.setattr(reg.OPS, "_errors", {})
    return reg


def test_builtins_cover_every_op_with_torch_triton_and_reference():
    assert set(OPS) <= set(op_names())
    for op in OPS:
        impls = {e.impl for e in kernel_entries(op)}
        assert {"triton", "reference"} <= impls, op
        assert ("sdpa" if op == "softmax" else "torch") in impls, op
        tri = get_kernel(op, "triton")
        assert tri.needs_cuda and tri.devices == ("cuda",) and "triton" in tri.requires
        ref = get_kernel(op, "reference")
        assert not ref.default and ref.max_seq_len is not None and ref.max_seq_len <= 1024
    base = get_kernel(*BASELINE)
    assert base.causal == (True, False) and "cpu" in base.devices
    assert get_kernel("softmax", "flash").dtypes == (torch.float16, torch.bfloat16)


def test_registry_does_not_import_triton_eagerly():
    """TRITON_INTERPRET must still work after the registry is loaded (see test_triton_fox)."""
    code = ("import sys, kernels.registry as r; r.kernel_entries(); "
            "r.forward_flops('fox', r.KernelShape(1, 8, 1, 8)); "
            "print('triton' in sys.modules, 'kernels.fox.triton_kernel' in sys.modules, "
            "'kernels.softmax_attention.triton_kernel' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False", "False"]


def test_unsupported_says_why():
    shape = KernelShape(1, 2048, 2, 16)
    assert "cuda" in get_kernel("fox", "triton").unsupported(shape)
    assert get_kernel("fox", "triton").unavailable() in (None, "needs CUDA")
    assert "T <=" in get_kernel("path", "reference").unsupported(shape)
    assert get_kernel("fox", "torch").unsupported(shape) is None
    assert get_kernel("fox", "torch").unsupported(KernelShape(1, 64, 2, 16, causal=False)) == "causal only"
    assert get_kernel(*BASELINE).unsupported(KernelShape(1, 64, 2, 16, causal=False)) is None
    assert "float16/bfloat16" in get_kernel("softmax", "flash").unsupported(
        KernelShape(1, 64, 2, 16, device="cuda"))


@pytest.mark.parametrize("op", OPS)
def test_builders_are_seeded_and_torch_path_matches_reference(op):
    shape = KernelShape(batch=1, seq_len=40, heads=2, head_dim=16, seed=3)
    fast = get_kernel(op, "sdpa" if op == "softmax" else "torch")
    ref = get_kernel(op, "reference")
    a, b = fast.inputs(shape), fast.inputs(shape)
    assert a.keys() == b.keys()
    for name, x in a.items():
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, b[name]), name
            assert x.dtype == torch.float32
    assert not torch.equal(a["q"], fast.inputs(KernelShape(1, 40, 2, 16, seed=4))["q"])
    assert a["q"].shape == (1, 40, 2, 16)
    inputs = {k: v for k, v in ref.inputs(shape).items()}
    out_ref = ref.fn(**inputs)
    out_fast = fast.fn(**fast.inputs(shape))
    assert out_fast.shape == (1, 40, 2, 16)
    torch.testing.assert_close(out_fast, out_ref, atol=2e-4, rtol=2e-3)


def test_path_fox_differs_from_path_so_the_gate_reaches_the_op():
    shape = KernelShape(1, 32, 2, 16)
    p = get_kernel("path", "torch")
    pf = get_kernel("path-fox", "torch")
    assert "log_f" not in p.inputs(shape) and "log_f" in pf.inputs(shape)
    assert not torch.allclose(p.fn(**p.inputs(shape)), pf.fn(**pf.inputs(shape)))


# -- op declarations and FLOP formulas ---------------------------------------------------------

def test_every_builtin_op_declares_its_inputs_and_formula_and_its_kernels_share_them():
    for op in OPS:
        spec = get_op(op)
        assert spec.flops is not None and spec.source.startswith("kernels."), op
        for e in kernel_entries(op):
            if (op, e.impl) not in (("softmax", "sdpa"), ("softmax", "flash")):  # these take the causal flag too
                assert e.inputs is spec.inputs, e.name
    assert get_op("path").flops is get_op("path-fox").flops  # the gate is elementwise: not counted
    with pytest.raises(UnknownKernelError, match="unknown kernel 'nosuch'; known kernel ops: deltanet, fox"):
        get_op("nosuch")


def test_forward_flops_by_hand():
    """The hand-derived numbers of tests/harness/test_bench.py, from the ops' own formulas."""
    from kernels.flops import attention_flops

    def at(b, t, h, d, causal=True):
        return KernelShape(b, t, h, d, causal=causal)

    # attention: 4 * B * T^2 * H * D, halved when causal (the FlashAttention convention)
    assert attention_flops(1, 256, 4, 64, causal=False) == 4 * 256 * 256 * 4 * 64 == 67_108_864
    assert attention_flops(1, 256, 4, 64, causal=True) == 33_554_432
    assert attention_flops(2, 1024, 8, 128, causal=True) == 2 * 1024 * 1024 * 2 * 8 * 128
    assert forward_flops("softmax", at(1, 256, 4, 64)) == (33_554_432, 0.0)
    assert forward_flops("softmax", at(1, 256, 4, 64, causal=False)) == (67_108_864, 0.0)
    assert forward_flops("fox", at(1, 256, 4, 64)) == (33_554_432, 0.0)
    # momentum: shear (4 BTHD) + RoPE (6 BTHD) on top of attention
    assert forward_flops("momentum", at(1, 256, 4, 64)) == (33_554_432, 10 * 256 * 4 * 64)
    # PaTH at B1 T256 H4 D64, c = 64, n = 4 chunks, BH = 4:
    #   transport = BH * c * D^2 * (n-1)(n-2) = 4 * 64 * 4096 * 3 * 2
    #   ut per chunk = 8c^2D + c^3 + 2c^2(c+D) + 2c(c+D)^2 = 2097152 + 262144 + 1048576 + 2097152
    transport = 4 * 64 * 4096 * 6
    ut = 4 * 4 * (2_097_152 + 262_144 + 1_048_576 + 2_097_152)
    assert transport == 6_291_456 and ut == 88_080_384
    assert forward_flops("path", at(1, 256, 4, 64)) == (33_554_432, transport + ut)
    assert forward_flops("path-fox", at(1, 256, 4, 64)) == forward_flops("path", at(1, 256, 4, 64))
    # a single chunk has no transport
    assert forward_flops("path", at(1, 64, 1, 64))[1] == 5_505_024
    # linear: per chunk 2c^2D + 2c^2(D+1) + 4cD(D+1) = 524288 + 532480 + 1064960
    assert forward_flops("linear", at(1, 256, 4, 64)) == (0.0, 16 * 2_121_728)
    # deltanet: per chunk 10c^2D + c^3 + 6cD^2 = 2621440 + 262144 + 1572864
    assert forward_flops("deltanet", at(1, 256, 4, 64)) == (0.0, 16 * 4_456_448)
    assert forward_flops("nosuch", at(1, 256, 4, 64)) is None


def test_a_kernel_takes_its_ops_declaration_unless_it_overrides_it(fresh):
    def inputs(s):
        return {"x": torch.zeros(s.batch, s.seq_len, s.heads, s.head_dim)}

    register_op("declared", inputs=inputs, dtypes=(torch.float32,), devices=("cpu",))
    register_kernel("declared", "plain")(lambda x: x)
    register_kernel("declared", "wide", dtypes=(torch.float16,), devices=("cuda",))(lambda x: x)
    plain, wide = get_kernel("declared", "plain"), get_kernel("declared", "wide")
    assert plain.inputs is inputs and plain.dtypes == (torch.float32,) and plain.devices == ("cpu",)
    assert wide.inputs is inputs and wide.dtypes == (torch.float16,) and wide.needs_cuda
    assert forward_flops("declared", KernelShape(1, 8, 1, 4)) is None  # declared without a formula
    with pytest.raises(ValueError, match=f"kernel 'declared' is already registered by {__name__}$"):
        register_op("declared", inputs=inputs)
    with pytest.raises(ValueError, match="kernel undeclared/torch needs inputs=: op 'undeclared' is not declared"):
        register_kernel("undeclared", "torch")
    assert "undeclared" not in op_names()


def test_a_module_attr_string_is_registered_lazily(fresh):
    register_op("lazy", inputs=lambda s: {"text": "x", "prefix": "> "})
    assert register_kernel("lazy", "indent")("textwrap:indent") == "textwrap:indent"
    register_kernel("lazy", "indent")("textwrap:indent")  # the same target again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_kernel("lazy", "indent")("textwrap:dedent")
    e = get_kernel("lazy", "indent")
    assert e.source == "textwrap" and e.fn.__name__ == "indent" and "imported on first call" in e.description
    assert e.fn(**e.inputs(KernelShape(1, 1, 1, 1))) == "> x"


TOY_OP = {  # an op folder kernels/<pkg>/, and all it takes
    "__init__.py": '''"""A toy op, entirely in its folder: the function, its dispatch and its registration."""
import torch

from kernels.dispatch import Dispatch
from kernels.flops import attention_flops
from kernels.inputs import KernelShape, qkv_inputs
from kernels.registry import TRITON, register_kernel, register_op
from kernels.{pkg}.fast import toy_fast

_TRITON = "kernels.{pkg}.triton_kernel:toy_triton"
_dispatch = Dispatch("toy_attention", torch=toy_fast, triton=_TRITON)


def toy_attention(q, k, v):
    return _dispatch(q, k, v)(q, k, v)


def toy_flops(shape: KernelShape) -> tuple[float, float]:
    return attention_flops(shape.batch, shape.seq_len, shape.heads, shape.head_dim, shape.causal), 7.0 * shape.seq_len


register_op("toy", inputs=qkv_inputs, flops=toy_flops, dtypes=(torch.float32,))
register_kernel("toy", "torch")(toy_fast)
register_kernel("toy", "triton", **TRITON)(_TRITON)
''',
    "fast.py": '''def toy_fast(q, k, v):
    """The toy op: q + k + v."""
    return q + k + v
''',
    "triton_kernel.py": "raise ImportError('imported at registration')\n",
}


TOY_PKG = "toy_op_for_tests"


@contextlib.contextmanager
def toy_op_folder(monkeypatch, tmp_path):
    """:data:`TOY_OP` written as ``kernels/toy_op_for_tests/`` (a folder on ``kernels.__path__``),
    with the registry reset so that the next lookup scans the op folders again; nothing else
    is edited.  Removes the folder's modules afterwards."""
    pkg = TOY_PKG
    (tmp_path / pkg).mkdir()
    for name, text in TOY_OP.items():
        (tmp_path / pkg / name).write_text(text.replace("{pkg}", pkg))
    kernel_entries()  # everything else loaded first
    monkeypatch.setattr(reg, "_KERNELS", dict(reg._KERNELS))
    monkeypatch.setattr(reg.OPS, "_items", dict(reg.OPS._items))
    monkeypatch.setattr(reg, "_loaded", {"entry_points", "fla"})  # the next lookup scans the op folders again
    monkeypatch.setattr(kernels, "__path__", [*kernels.__path__, str(tmp_path)])  # as if it were kernels/<pkg>/
    importlib.invalidate_caches()
    try:
        yield pkg
    finally:
        for name in [m for m in sys.modules if m == f"kernels.{pkg}" or m.startswith(f"kernels.{pkg}.")]:
            del sys.modules[name]
        if hasattr(kernels, pkg):
            delattr(kernels, pkg)


def test_an_op_in_a_folder_of_its_own_registers_itself(monkeypatch, tmp_path):
    """Adding an op touches only its folder: the first lookup imports every op folder of
    ``kernels``, and the folder's ``__init__`` registers the op, its kernels and its FLOPs."""
    with toy_op_folder(monkeypatch, tmp_path) as pkg:
        names = [e.name for e in kernel_entries()]
        assert {"toy/torch", "toy/triton", "fox/torch", "softmax/sdpa"} <= set(names)
        assert forward_flops("toy", KernelShape(1, 16, 2, 8)) == (2 * 16 * 16 * 2 * 8, 7.0 * 16)
        e = get_kernel("toy", "torch")
        assert e.dtypes == (torch.float32,) and e.source == f"kernels.{pkg}.fast"
        assert e.description == "The toy op: q + k + v."
        assert "float32 only" in e.unsupported(KernelShape(1, 16, 2, 8, dtype=torch.float16))
        tri = get_kernel("toy", "triton")
        assert tri.needs_cuda and tri.dtypes == (torch.float32,)
        inputs = e.inputs(KernelShape(1, 16, 2, 8))
        toy = importlib.import_module(f"kernels.{pkg}")
        assert torch.equal(toy.toy_attention(**inputs), e.fn(**inputs))
        with pytest.raises(ValueError, match=r"toy_attention: k must have the shape of q"):
            toy.toy_attention(inputs["q"], inputs["k"][:, :3], inputs["v"])
        assert f"kernels.{pkg}.triton_kernel" not in sys.modules  # registered lazily, never imported on CPU


def test_register_kernel_decorator(fresh):
    def inputs(s):
        return {"x": torch.zeros(s.batch, s.seq_len, s.heads, s.head_dim)}

    @register_kernel(op="mine", impl="torch", inputs=inputs, max_seq_len=128, description="my op")
    def mine(x):
        return x + 1

    assert mine(torch.zeros(1)).item() == 1  # returned unchanged
    e = get_kernel("mine", "torch")
    assert e.fn is mine and e.description == "my op" and e.max_seq_len == 128 and e.default
    assert e.source == __name__
    register_kernel(op="mine", impl="torch", inputs=inputs)(mine)  # same function again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_kernel(op="mine", impl="torch", inputs=inputs)(lambda x: x)
    with pytest.raises(ValueError, match="non-empty names without '/', got 'a/b'"):
        register_kernel(op="a/b", impl="torch", inputs=inputs)
    assert "a/b" not in op_names()  # nothing half-registered
    with pytest.raises(UnknownKernelError, match="mine/torch"):
        get_kernel("mine", "triton")
    cuda_only = register_kernel(op="mine", impl="cu", inputs=inputs, devices=("cuda",))(lambda x: x)
    assert cuda_only is not None and get_kernel("mine", "cu").needs_cuda


def test_entry_points_are_loaded_lazily_and_a_broken_one_is_skipped(fresh, monkeypatch, tmp_path):
    (tmp_path / "kplugin_ok.py").write_text(
        "import torch\n"
        "from kernels.registry import register_kernel, register_op, qkv_inputs\n"
        "register_op('double', inputs=qkv_inputs, flops=lambda s: (0.0, 2.0 * s.seq_len))\n"
        "@register_kernel(op='double', impl='torch')\n"
        "def double(q, k, v):\n"
        "    return 2 * v\n")
    (tmp_path / "kplugin_bad.py").write_text("raise RuntimeError('plugin bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [EntryPoint(name="ok", value="kplugin_ok", group=reg.ENTRY_POINT_GROUP),
           EntryPoint(name="bad", value="kplugin_bad", group=reg.ENTRY_POINT_GROUP)]
    asked = []

    def fake_entry_points(*, group):
        asked.append(group)
        return [e for e in eps if e.group == group]

    monkeypatch.setattr(archbench.registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(reg.OPS, "_entry_points_loaded", False)
    monkeypatch.setattr(reg, "_loaded", {"builtins", "fla"})
    assert asked == []  # nothing loaded before the first lookup
    with pytest.warns(archbench.registry.PluginWarning,
                      match=r"the kernel plugin 'bad' \(kplugin_bad, entry point group archbench.kernels\) "
                            r"failed to load and is skipped: RuntimeError: plugin bug"):
        names = op_names()
    assert asked == ["archbench.kernels"]
    assert "double" in names
    e = get_kernel("double", "torch")
    out = e.fn(**e.inputs(KernelShape(1, 8, 1, 4)))
    assert out.shape == (1, 8, 1, 4)
    assert forward_flops("double", KernelShape(1, 8, 1, 4)) == (0.0, 16.0)
    assert "bad" in reg.entry_point_errors()
    op_names()
    assert asked == ["archbench.kernels"]  # once per process


# -- fla (mocked: it cannot be installed here) -------------------------------------------------

class _Calls(list):
    pass


def _fake_fla(with_path: bool = True):
    calls = _Calls()

    def parallel_forgetting_attn(q, k, v, g, scale=None, cu_seqlens=None, head_first=False):
        calls.append(("fox", dict(g=g, scale=scale, head_first=head_first)))
        return q.clone()

    def parallel_path_attention(q, k, v, w, beta, g=None, scale=None, cu_seqlens=None, use_cache=False):
        calls.append(("path", dict(g=g, scale=scale)))
        return q + 1, None  # newer fla returns (o, k_cache)

    def chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state=False,
                         use_qk_l2norm_in_kernel=False, cu_seqlens=None, head_first=False):
        calls.append(("delta", dict(k=k, head_first=head_first)))
        return v.clone(), None

    def chunk_linear_attn(q, k, v, scale=None, initial_state=None, output_final_state=False, normalize=True):
        calls.append(("linear", dict(q=q, normalize=normalize)))
        return v.clone(), None

    ops = types.ModuleType("fla.ops")
    ops.parallel_forgetting_attn = parallel_forgetting_attn
    if with_path:
        ops.parallel_path_attention = parallel_path_attention
    ops.chunk_delta_rule = chunk_delta_rule
    ops.chunk_linear_attn = chunk_linear_attn
    fla = types.ModuleType("fla")
    fla.ops = ops
    return fla, ops, calls


def _install(monkeypatch, fla, ops):
    monkeypatch.setitem(sys.modules, "fla", fla)
    monkeypatch.setitem(sys.modules, "fla.ops", ops)


def test_fla_adapters_registered_with_cuda_and_fla(fresh, monkeypatch):
    fla, ops, calls = _fake_fla()
    _install(monkeypatch, fla, ops)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    done = register_fla()
    assert sorted(e.op for e in done) == ["deltanet", "fox", "linear", "path", "path-fox"]
    for e in done:
        assert e.impl == "fla" and e.devices == ("cuda",) and e.needs_cuda
        assert e.dtypes == (torch.float16, torch.bfloat16)
        assert e.unavailable() is None  # cuda "available"

    # the adapters speak archbench's convention (run here on CPU tensors)
    shape = KernelShape(1, 16, 2, 8)
    fox = get_kernel("fox", "fla")
    inp = fox.inputs(shape)
    out = fox.fn(**inp)
    name, kw = calls[-1]
    assert name == "fox" and kw["head_first"] is False and kw["g"] is inp["log_f"]
    assert torch.equal(out, inp["q"])

    path = get_kernel("path", "fla")
    inp = path.inputs(shape)
    out = path.fn(**inp)  # (o, cache) -> o
    assert torch.equal(out, inp["q"] + 1) and calls[-1] == ("path", {"g": None, "scale": None})
    pf = get_kernel("path-fox", "fla")
    inp = pf.inputs(shape)
    pf.fn(**inp)
    assert calls[-1][1]["g"] is inp["log_f"]
    assert "head_dim" in path.unsupported(KernelShape(1, 16, 2, 128, dtype=torch.bfloat16, device="cuda"))
    assert path.unsupported(KernelShape(1, 16, 2, 64, dtype=torch.bfloat16, device="cuda")) is None

    delta = get_kernel("deltanet", "fla")
    inp = delta.inputs(shape)
    inp["k"] = inp["k"] * 3  # archbench's deltanet normalises k inside; fla wants it normalised
    delta.fn(**inp)
    name, kw = calls[-1]
    assert kw["head_first"] is False
    torch.testing.assert_close(kw["k"].norm(dim=-1), torch.ones(1, 16, 2), atol=1e-3, rtol=0)

    lin = get_kernel("linear", "fla")
    inp = lin.inputs(shape)
    lin.fn(**inp)
    name, kw = calls[-1]
    assert kw["normalize"] is True and (kw["q"] > 0).all()  # phi = elu + 1 applied; no head_first passed


def test_fla_skipped_without_cuda_without_fla_or_with_a_changed_api(fresh, monkeypatch):
    fla, ops, _ = _fake_fla(with_path=False)
    _install(monkeypatch, fla, ops)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert register_fla() == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sorted(e.op for e in register_fla()) == ["deltanet", "fox", "linear"]  # no path in this "version"
    monkeypatch.setitem(sys.modules, "fla.ops", None)  # importing it raises ImportError
    monkeypatch.setattr(reg, "_KERNELS", {})
    assert register_fla() == []
    assert kernel_entries(impl="fla") == []


def test_fla_is_loaded_lazily_through_the_registry(fresh, monkeypatch):
    fla, ops, _ = _fake_fla()
    _install(monkeypatch, fla, ops)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(reg, "_loaded", {"builtins", "entry_points"})
    assert {e.op for e in kernel_entries(impl="fla")} == {"deltanet", "fox", "linear", "path", "path-fox"}
