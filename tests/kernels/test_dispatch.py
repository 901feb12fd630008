"""The one dispatch every op's public function uses: the shape check and the choice of path."""

from __future__ import annotations

import re
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch

import kernels
import kernels.dispatch as dispatch
from kernels.dispatch import Dispatch, check_inputs, use_kernels


def qkv(b=1, t=4, h=2, d=8):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, t, h, d, generator=g) for _ in range(3)]


def gate(b=1, t=4, h=2):
    return torch.full((b, t, h), -0.1)


# every public op, called right; `bad` builds one wrong call of it from (q, k, v)
OPS = {
    "softmax_attention": lambda q, k, v: kernels.softmax_attention(q, k, v),
    "fox_attention": lambda q, k, v: kernels.fox_attention(q, k, v, gate(*q.shape[:3])),
    "path_attention": lambda q, k, v: kernels.path_attention(q, k, v, torch.nn.functional.normalize(k, dim=-1),
                                                             gate(*q.shape[:3]).neg()),
    "momentum_attention": lambda q, k, v: kernels.momentum_attention(q, k, v, 0.3),
    "linear_attention": lambda q, k, v: kernels.linear_attention(q, k, v),
    "deltanet": lambda q, k, v: kernels.deltanet(q, k, v, gate(*q.shape[:3]).neg()),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_checks_the_shared_convention_through_one_dispatch(op):
    q, k, v = qkv()
    assert OPS[op](q, k, v).shape == q.shape
    with pytest.raises(ValueError,
                       match=re.escape(f"{op}: q must be [batch, time, heads, head_dim], got shape (4, 2, 8)")):
        OPS[op](q[0], k[0], v[0])
    with pytest.raises(ValueError, match=re.escape(f"{op}: k must have the shape of q, [batch, time, heads, head_dim] "
                                                   f"= (1, 4, 2, 8), got (1, 3, 2, 8)")):
        OPS[op](q, k[:, :3], v)
    with pytest.raises(ValueError, match=re.escape(f"{op}: v must")):
        OPS[op](q, k, v[:, :, :1])
    assert isinstance(sys.modules[getattr(kernels, op).__module__]._dispatch, Dispatch)


def test_per_head_scalars_and_chunk_size_are_checked():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=re.escape("fox_attention: log_f must be [batch, time, heads] = (1, 4, 2), "
                                                   "got (1, 4, 1)")):
        kernels.fox_attention(q, k, v, gate()[..., :1])
    with pytest.raises(ValueError, match=re.escape("path_attention: w must have the shape of q")):
        kernels.path_attention(q, k, v, k[..., :2], gate().neg())
    kernels.path_attention(q, k, v, k, gate().neg(), log_f=None)  # an absent optional scalar passes
    with pytest.raises(ValueError, match="deltanet: chunk_size must be >= 1, got 0"):
        kernels.deltanet(q, k, v, gate().neg(), chunk_size=0)
    with pytest.raises(ValueError, match="fox_attention: v must have the shape of q"):  # FoX: dv = d
        kernels.fox_attention(q, k, torch.zeros(1, 4, 2, 4), gate())
    check_inputs("op", q, k, torch.zeros(1, 4, 2, 4))  # elsewhere v has its own head_dim


def torch_path(*args):
    return "torch"


def picked(d: Dispatch, q) -> str:
    """What the picked function returns when called (the wrapped Triton path is a closure)."""
    return d.pick(q)("a", "b")


def triton_path(*args):
    return "triton"


def test_triton_on_cuda_when_triton_imports_else_the_torch_path(monkeypatch):
    monkeypatch.delenv("ARCHBENCH_KERNELS", raising=False)
    cpu, cuda = SimpleNamespace(is_cuda=False), SimpleNamespace(is_cuda=True)
    monkeypatch.setattr(dispatch, "HAS_TRITON", True)
    assert picked(Dispatch("op", torch=torch_path, triton="posixpath:join"), cuda) == "a/b"
    assert Dispatch("op", torch=torch_path, triton="posixpath:join").pick(cpu) is torch_path
    assert Dispatch("op", torch=torch_path).pick(cuda) is torch_path  # an op without a Triton path
    assert Dispatch("op", torch=torch_path, triton="no_such_module_xyz:f").pick(cuda) is torch_path
    assert picked(Dispatch("op", torch=torch_path, triton=triton_path), cuda) == "triton"
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    assert Dispatch("op", torch=torch_path, triton="posixpath:join").pick(cuda) is torch_path
    assert Dispatch("op", torch=torch_path, triton=triton_path).pick(cuda) is torch_path


class OutOfResources(Exception):
    """Named like Triton's resource error (the dispatcher matches the class name, so that
    importing this module needs no Triton)."""


def test_auto_falls_back_to_torch_once_when_a_launch_does_not_fit(monkeypatch):
    monkeypatch.delenv("ARCHBENCH_KERNELS", raising=False)
    monkeypatch.setattr(dispatch, "HAS_TRITON", True)
    cuda = SimpleNamespace(is_cuda=True)
    calls = []

    def too_big(*args):
        calls.append(args)
        raise OutOfResources("out of resource: shared memory, Required: 262144, Hardware limit: 232448")

    d = Dispatch("op_fb", torch=torch_path, triton=too_big)
    with pytest.warns(dispatch.KernelFallbackWarning, match=r"op_fb: the Triton kernel cannot launch .*262144"):
        assert d.pick(cuda)("x") == "torch"
    assert dispatch.paths_taken()["op_fb"] == "torch (fallback)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per op, not one per call
        assert d.pick(cuda) is torch_path
        assert d.pick(cuda)("x") == "torch"
    assert len(calls) == 1  # Triton is not tried again
    assert dispatch.paths_taken()["op_fb"] == "torch (fallback)"

    def broken(*args):
        raise RuntimeError("a bug, not a resource limit")

    with pytest.raises(RuntimeError, match="a bug"):  # anything else is not hidden by a fallback
        Dispatch("op_bug", torch=torch_path, triton=broken).pick(cuda)("x")


def test_kernel_modes_from_the_environment_and_the_arch_option(monkeypatch):
    monkeypatch.setattr(dispatch, "HAS_TRITON", True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cpu, cuda = SimpleNamespace(is_cuda=False, device=SimpleNamespace(type="cpu")), SimpleNamespace(is_cuda=True)
    d = Dispatch("op_mode", torch=torch_path, triton=triton_path)
    monkeypatch.setenv("ARCHBENCH_KERNELS", "torch")
    assert d.pick(cuda) is torch_path
    assert dispatch.paths_taken()["op_mode"] == "torch"
    monkeypatch.setenv("ARCHBENCH_KERNELS", "triton")
    assert d.pick(cuda) is triton_path
    assert dispatch.paths_taken()["op_mode"] == "triton"
    with pytest.raises(dispatch.KernelPathError, match="needs CUDA tensors .*TRITON_INTERPRET=1"):
        d.pick(cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert d.pick(cpu) is triton_path  # the interpreter runs the kernels on CPU tensors
    with use_kernels("torch"):  # an architecture's option wins over the environment
        assert d.pick(cuda) is torch_path
        with use_kernels(None):
            assert d.pick(cuda) is torch_path
    assert d.pick(cuda) is triton_path
    monkeypatch.setenv("ARCHBENCH_KERNELS", "fast")
    with pytest.raises(ValueError, match="ARCHBENCH_KERNELS='fast' is not a kernel mode; use one of auto, torch, triton"):
        d.pick(cuda)
    with pytest.raises(ValueError, match="kernels='gpu' is not a kernel mode"):
        with use_kernels("gpu"):
            pass
    monkeypatch.setenv("ARCHBENCH_KERNELS", "triton")
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    with pytest.raises(dispatch.KernelPathError, match="Triton cannot be imported"):
        Dispatch("op_none", torch=torch_path, triton="posixpath:join").pick(cuda)
