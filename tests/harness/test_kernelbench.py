"""`archbench bench` and the kernel regression gate.

No test here reads a wall clock: kernels are fakes that add "work units" to a counter and
a fake timer reports the units a call did as its time, so every timing is exact.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

import kernels.registry as reg
from harness import kernelbench as kb
from harness.kernelbench import command
from harness.queries import latest_kernels
from harness import environment
from harness.cli import app
from harness.errors import UserError
from harness.store import Environment, KernelBenchmark, Store
from kernels.flops import attention_flops
from kernels.registry import KernelShape, register_kernel

runner = CliRunner()
H100 = "NVIDIA H100 80GB HBM3"


class Clock:
    units = 0.0


def unit_kernel(cost: float):
    """A kernel that does ``cost`` units of "work" per call."""

    def fn(q, k, v, **_):
        Clock.units += cost
        return q + k + v

    return fn


def cpu_inputs(s: KernelShape) -> dict:
    """Builds on the CPU whatever the device (the GPU tests mock CUDA)."""
    g = torch.Generator().manual_seed(s.seed)
    return {n: torch.randn(s.batch, s.seq_len, s.heads, s.head_dim, generator=g).to(s.dtype) for n in "qkv"}


class FakeTimer:
    """Reports the work units of one call, times ``scale`` (a uniformly slower machine)."""

    kind = "cpu"

    def __init__(self, scale: float = 1.0, memory: int | None = 4096, calls: int = 1):
        self.scale, self.memory, self.timed, self.calls = scale, memory, 0, calls

    def time(self, fn):
        self.timed += 1
        units = []
        for _ in range(self.calls):
            before = Clock.units
            fn()
            units.append((Clock.units - before) * self.scale)
        ms = sorted(units)[len(units) // 2]
        mean = None if self.calls == 1 else sum(units) / len(units)
        return kb.Timing(ms, 0.9 * ms, 1.1 * ms, mean)

    def peak_memory(self, fn, device):
        return self.memory


@pytest.fixture
def fake_kernels(monkeypatch):
    """A registry with SDPA (1 unit), fox (2 units) and path (5 units) fakes only."""
    monkeypatch.setattr(reg, "_KERNELS", {})
    monkeypatch.setattr(reg, "_loaded", {"builtins", "entry_points", "fla"})
    devices = ("cpu", "cuda")
    register_kernel("softmax", "sdpa", inputs=cpu_inputs, devices=devices, causal=(True, False))(unit_kernel(1))
    register_kernel("fox", "torch", inputs=cpu_inputs, devices=devices)(unit_kernel(2))
    register_kernel("path", "torch", inputs=cpu_inputs, devices=devices)(unit_kernel(5))
    return reg


def _spec(**kw):
    base = dict(seq_lens="16,32", batch="1", heads="2", head_dim="8", mode="fwd,fwd+bwd", device="cpu", rounds=2)
    base.update(kw)
    return kb.make_spec(**base)


# -- FLOPs ------------------------------------------------------------------------------------

def test_kernel_flops_take_the_ops_forward_formula_and_add_the_flashattention_backward():
    # the forward formulas are each op's own (tests/kernels/test_registry.py checks them by hand);
    # the wing adds the backward: attention x 2.5, every other matmul x 2
    attn = attention_flops(1, 256, 4, 64, causal=True)
    assert attn == 33_554_432
    assert kb.kernel_flops("softmax", 1, 256, 4, 64, True, "fwd") == attn
    assert kb.kernel_flops("softmax", 1, 256, 4, 64, True, "fwd+bwd") == attn * 3.5
    assert kb.kernel_flops("fox", 1, 256, 4, 64, False, "fwd") == 2 * attn  # non-causal: twice the work
    transport, ut = 6_291_456, 88_080_384  # PaTH at B1 T256 H4 D64 (see test_registry.py)
    assert kb.kernel_flops("path", 1, 256, 4, 64, True, "fwd") == attn + transport + ut
    assert kb.kernel_flops("path", 1, 256, 4, 64, True, "fwd+bwd") == attn * 3.5 + (transport + ut) * 3
    assert kb.kernel_flops("deltanet", 1, 256, 4, 64, True, "fwd+bwd") == 16 * 4_456_448 * 3
    assert kb.kernel_flops("nosuch", 1, 256, 4, 64, True, "fwd") is None


def test_plugin_ops_bring_their_own_flops(fake_kernels):
    register_kernel("mine", "torch", inputs=cpu_inputs, flops=lambda s: 1e6 * s.seq_len)(unit_kernel(1))
    e = reg.get_kernel("mine", "torch")
    assert kb.kernel_flops("mine", 1, 10, 1, 8, True, "fwd", entry=e) == 1e7
    assert kb.kernel_flops("mine", 1, 10, 1, 8, True, "fwd+bwd", entry=e) == 3.5e7
    assert kb.kernel_flops("mine", 1, 10, 1, 8, True, "fwd") is None


def test_tokens_and_tflops_from_the_median(fake_kernels):
    spec = _spec(ops="fox", seq_lens="32", mode="fwd")
    results, _ = kb.run_bench(spec, timer=FakeTimer(scale=0.5))  # fox: 2 units -> 1 ms
    fox = next(r for r in results if r.op == "fox")
    assert fox.median_ms == 1.0 and fox.p20_ms == 0.9 and fox.p80_ms == 1.1
    assert fox.tokens_per_s == pytest.approx(1 * 32 / 1e-3)
    assert fox.flops == attention_flops(1, 32, 2, 8)
    assert fox.tflops == pytest.approx(fox.flops / 1e-3 / 1e12)
    assert fox.peak_fraction is None  # CPU: peak unknown
    assert fox.ratio == 2.0 and fox.sdpa_ms == 0.5


# -- GPU path, mocked ---------------------------------------------------------------------------

def test_peak_table():
    assert kb.peak_tflops(H100, torch.bfloat16) == 989
    assert kb.peak_tflops("NVIDIA H200", "bfloat16") == 989
    assert kb.peak_tflops("NVIDIA A100-SXM4-80GB", torch.float16) == 312
    assert kb.peak_tflops("NVIDIA A100 80GB PCIe", torch.bfloat16) == 312
    assert kb.peak_tflops("NVIDIA H100 PCIe", torch.bfloat16) == 756
    assert kb.peak_tflops("NVIDIA GeForce RTX 4090", torch.bfloat16) is None
    assert kb.peak_tflops(H100, torch.float32) is None  # tensor-core peak is for half precision
    assert kb.peak_tflops(None, torch.bfloat16) is None


def test_defaults_bf16_on_gpu_fp32_on_cpu():
    assert kb.default_dtype("cuda") == torch.bfloat16 and kb.default_dtype("cpu") == torch.float32
    assert kb.parse_dtypes(None, "cuda") == [torch.bfloat16]
    assert kb.parse_dtypes(None, "cpu") == [torch.float32]
    assert kb.parse_dtypes("bf16,float32", "cpu") == [torch.bfloat16, torch.float32]


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA "available": an H100 whose allocator stats are scripted; do_bench mocked."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: H100)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 1000 + 2 ** 20)

    def do_bench(fn, warmup=25, rep=100, grad_to_none=None, quantiles=None, return_mode="mean"):
        calls.append(("do_bench", quantiles))
        before = Clock.units
        fn()
        ms = Clock.units - before
        return [ms, 0.8 * ms, 1.2 * ms]

    testing = types.ModuleType("triton.testing")
    testing.do_bench = do_bench
    triton = types.ModuleType("triton")
    triton.testing = testing
    monkeypatch.setitem(sys.modules, "triton", triton)
    monkeypatch.setitem(sys.modules, "triton.testing", testing)
    return calls


def test_cuda_timer_uses_do_bench_and_allocator_stats(fake_cuda):
    t = kb.CudaTimer()
    kernel = unit_kernel(3)
    timing = t.time(lambda: kernel(*[torch.zeros(1)] * 3))
    assert timing.median_ms == 3.0 and timing.p20_ms == pytest.approx(2.4) and timing.p80_ms == pytest.approx(3.6)
    assert ("do_bench", [0.5, 0.2, 0.8]) in fake_cuda
    assert t.peak_memory(lambda: None, "cuda") == 2 ** 20  # max allocated - allocated before
    assert "reset" in fake_cuda


def test_gpu_grid_end_to_end_mocked(fake_kernels, fake_cuda, tmp_path):
    spec = kb.make_spec(ops="fox", seq_lens="64", batch="1", heads="2", head_dim="8", mode="fwd")  # device: cuda
    assert spec.device == "cuda" and spec.dtypes == [torch.bfloat16]
    assert kb.device_class("cuda") == "cuda-nvidia-h100-80gb-hbm3"
    timer = kb.make_timer(spec.device)
    assert isinstance(timer, kb.CudaTimer)
    results, _ = kb.run_bench(spec, timer=timer)
    fox = next(r for r in results if r.op == "fox")
    assert fox.dtype == "bfloat16" and fox.device_name == H100
    assert fox.median_ms == 2.0 and fox.p20_ms == 1.6 and fox.p80_ms == 2.4
    assert fox.peak_mem_bytes == 2 ** 20
    assert fox.peak_fraction == pytest.approx(fox.tflops / 989)
    assert sum(1 for c in fake_cuda if c == "reset") == 2  # memory of sdpa and fox
    assert "peak 989 TFLOP/s" in kb.table_title(results, "cuda")


# -- the grid -----------------------------------------------------------------------------------

def test_sdpa_is_timed_interleaved_at_every_grid_point(fake_kernels):
    spec = _spec()
    timer = FakeTimer()
    results, skipped = kb.run_bench(spec, timer=timer)
    assert skipped == []
    assert len(results) == 2 * 2 * 3  # T x mode x (sdpa, fox, path)
    # each round times SDPA right before every other entry
    assert timer.timed == 2 * sum(1 for r in results if r.op != "softmax") * spec.rounds
    for r in results:
        assert r.status == "ok" and r.sdpa_ms == 1.0
        assert r.ratio == {"softmax": 1, "fox": 2, "path": 5}[r.op]
        assert r.peak_mem_bytes == 4096


def test_errors_and_ooms_are_rows_and_the_grid_goes_on(fake_kernels):
    def boom(q, k, v):
        raise RuntimeError("boom")

    def oom(q, k, v):
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")

    calls = {"n": 0}

    def flaky(q, k, v):  # fine while warming up, fails while being timed
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ValueError("flaky")
        return q

    register_kernel("boom", "torch", inputs=cpu_inputs)(boom)
    register_kernel("oom", "torch", inputs=cpu_inputs)(oom)
    register_kernel("flaky", "torch", inputs=cpu_inputs)(flaky)
    results, _ = kb.run_bench(_spec(mode="fwd"), timer=FakeTimer())
    by = {(r.op, r.seq_len): r for r in results}
    assert by[("boom", 16)].status == "error" and "boom" in by[("boom", 16)].error
    assert by[("oom", 16)].status == "oom" and "out of memory" in by[("oom", 16)].error
    assert by[("flaky", 16)].status == "error" and "flaky" in by[("flaky", 16)].error
    assert by[("boom", 16)].median_ms is None and by[("boom", 16)].ratio is None
    assert by[("fox", 16)].status == "ok" and by[("fox", 32)].status == "ok"  # the grid went on
    assert by[("boom", 32)].status == "error"


def test_unsupported_points_are_skipped_with_why(fake_kernels):
    register_kernel("short", "torch", inputs=cpu_inputs, max_seq_len=16)(unit_kernel(1))
    register_kernel("gpu", "triton", inputs=cpu_inputs, devices=("cuda",))(unit_kernel(1))
    spec = _spec(causal="both", mode="fwd")
    assert any("gpu/triton: needs CUDA" in s for s in spec.skipped) or torch.cuda.is_available()
    results, skipped = kb.run_bench(spec, timer=FakeTimer())
    assert any(s.startswith("short/torch: T <= 16") for s in skipped)
    assert any(s.startswith("fox/torch: causal only") for s in skipped)
    assert {(r.op, r.seq_len, r.causal) for r in results if r.op == "short"} == {("short", 16, True)}
    assert {r.causal for r in results if r.op == "softmax"} == {True, False}


@pytest.mark.parametrize("kw, needle", [
    (dict(mode="backward"), "unknown --mode 'backward'"),
    (dict(ops="nosuch"), "unknown op 'nosuch'"),
    (dict(impls="cuda-magic"), "unknown implementation"),
    (dict(seq_lens="abc"), "--seq-lens takes whole numbers"),
    (dict(dtype="int8"), "unknown --dtype"),
    (dict(causal="maybe"), "--causal takes"),
    (dict(shapes="1x2x3"), "--shapes takes BxTxHxD"),
    (dict(device="tpu"), "unknown --device"),
])
def test_bad_options_are_user_errors(fake_kernels, kw, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace("+", r"\+")):
        _spec(**kw)


def test_slowdown_env_parsing():
    assert kb.parse_slowdown("fox=2, path=3") == {"fox": 2, "path": 3}
    assert kb.parse_slowdown("") == {} and kb.parse_slowdown(None) == {}
    assert kb.parse_slowdown("fox=1.25") == {"fox": 1.25}
    for bad in ("fox", "fox=0", "fox=0.5", "fox=abc", "fox=inf", "fox=nan", "=2"):
        with pytest.raises(UserError, match="ARCHBENCH_SLOWDOWN.*e.g. fox=2 or fox=1.25"):
            kb.parse_slowdown(bad)


@pytest.mark.parametrize("factor", [1.0, 1.25, 1.5, 2.0, 2.3, 3.0, 1.1])
@pytest.mark.parametrize("n", [1, 7, 40, 1000])
def test_fractional_slowdown_runs_the_op_round_n_times_factor(factor, n):
    calls = []
    run = kb.slowed(lambda: calls.append(1), factor)
    for _ in range(n):
        run()
    assert abs(len(calls) - round(n * factor)) <= 1


def test_fractional_slowdown_is_spread_over_any_stretch_of_calls():
    calls = []
    run = kb.slowed(lambda: calls.append(1), 1.25)
    for _ in range(100):
        run()
    before = len(calls)
    for _ in range(8):  # any 8 consecutive calls: 10 runs, give or take one
        run()
    assert abs(len(calls) - before - 10) <= 1


def test_gate_ratio_is_the_median_of_paired_round_ratios(fake_kernels):
    results, _ = kb.run_bench(_spec(ops="fox", rounds=3, mode="fwd", seq_lens="16"), timer=FakeTimer(calls=4))
    fox = next(r for r in results if r.op == "fox")
    assert fox.paired_ratios == [2.0, 2.0, 2.0] and fox.gate_ratio == 2.0
    fox.paired_ratios = [2.0, 9.0, 2.2]  # one disturbed round does not move it
    assert fox.gate_ratio == 2.2
    assert "paired_ratios" not in fox.record()


def test_planted_fractional_slowdown_shows_in_the_gate_ratio(fake_kernels):
    results, _ = kb.run_bench(_spec(ops="fox", slowdown="fox=1.25", mode="fwd", seq_lens="16"),
                              timer=FakeTimer(calls=8))
    fox = next(r for r in results if r.op == "fox")
    assert fox.gate_ratio == pytest.approx(2.5, rel=1 / 8)  # 2 units x 1.25, within one call of eight
    assert next(r for r in results if r.op == "softmax").sdpa_ms == 1.0


def test_planted_slowdown_repeats_the_op_not_the_baseline(fake_kernels):
    results, _ = kb.run_bench(_spec(slowdown="fox=3,softmax=5"), timer=FakeTimer())
    for r in results:
        assert r.sdpa_ms == 1.0
        if r.op == "fox":
            assert r.median_ms == 6.0 and r.ratio == 6.0


# -- the gate -----------------------------------------------------------------------------------

def _result(op, median, sdpa, impl="torch", t=256, status="ok"):
    r = kb.BenchResult(op=op, impl=impl, mode="fwd+bwd", dtype="float32", batch=1, seq_len=t, heads=4, head_dim=64,
                       status=status, median_ms=median if status == "ok" else None, sdpa_ms=sdpa)
    if status != "ok":
        r.error = "RuntimeError: broke"
    return r


def _run(scale=1.0, fox=2.0, path=5.0):
    return [_result("softmax", 1.0 * scale, 1.0 * scale, impl="sdpa"), _result("fox", fox * scale, 1.0 * scale),
            _result("path", path * scale, 1.0 * scale)]


BASE = {"fox/torch/fwd+bwd/float32/B1-T256-H4-D64/causal": {"ratio": 2.0},
        "path/torch/fwd+bwd/float32/B1-T256-H4-D64/causal": {"ratio": 5.0}}


def test_gate_passes_unchanged_and_fails_a_2x_slowdown_naming_it():
    ok = kb.run_gate(_run(), BASE, 0.2)
    assert ok.passed and len(ok.checked) == 2 and ok.worst.relative == 1.0
    slow = kb.run_gate(_run(fox=4.0), BASE, 0.2)
    assert not slow.passed
    [f] = slow.failures
    msg = f.message(0.2)
    assert "fox/torch" in msg and "fwd+bwd" in msg and "B1-T256-H4-D64" in msg
    assert "4.00x SDPA vs baseline 2.00x" in msg and "+100%" in msg and "limit +20%" in msg
    # just under the limit passes, just over fails
    assert kb.run_gate(_run(fox=2.0 * 1.19), BASE, 0.2).passed
    assert not kb.run_gate(_run(fox=2.0 * 1.21), BASE, 0.2).passed


def test_normalisation_cancels_a_uniformly_slower_machine():
    assert kb.run_gate(_run(scale=3.0), BASE, 0.2).passed
    assert kb.run_gate(_run(scale=0.25), BASE, 0.2).passed
    assert not kb.run_gate(_run(scale=3.0, fox=4.0), BASE, 0.2).passed


def test_failing_entries_are_measured_again_and_fail_only_twice():
    asked = []

    def noise_gone(failing):
        asked.append([r.op for r in failing])
        return [_result(r.op, 2.1, 1.0) for r in failing]

    report = kb.run_gate(_run(fox=4.0), BASE, 0.2, remeasure=noise_gone)
    assert asked == [["fox"]]  # only the failing entry is measured again
    assert report.passed and report.remeasured == ["fox/torch/fwd+bwd/float32/B1-T256-H4-D64/causal"]

    def still_slow(failing):
        return [_result(r.op, 3.8, 1.0) for r in failing]

    report = kb.run_gate(_run(fox=4.0), BASE, 0.2, remeasure=still_slow)
    [f] = report.failures
    assert f.ratio == 3.8 and "measured 4.00x, then 3.80x" in f.message(0.2)

    calls = []
    kb.run_gate(_run(), BASE, 0.2, remeasure=lambda failing: calls.append(failing) or [])
    assert calls == []  # nothing failed: nothing re-measured


def test_gate_fails_an_entry_that_now_errors_and_ignores_entries_without_baseline():
    results = _run() + [_result("deltanet", 1.0, 1.0)]
    results[1] = _result("fox", None, 1.0, status="oom")
    report = kb.run_gate(results, BASE, 0.2, remeasure=lambda failing: [_result("fox", None, 1.0, status="oom")])
    [f] = report.failures
    assert "fox/torch" in f.message(0.2) and "now fails (oom" in f.message(0.2)
    assert report.missing == ["deltanet/torch/fwd+bwd/float32/B1-T256-H4-D64/causal"]


def _grid(**rel):
    """fox/torch at four shapes x modes, each at ``rel[name]`` times its baseline ratio 2.0."""
    results, base = [_result("softmax", 1.0, 1.0, impl="sdpa")], {}
    for i, t in enumerate((256, 512)):
        for mode in ("fwd", "fwd+bwd"):
            r = _result("fox", 2.0 * rel.get(f"e{2 * i + (mode == 'fwd+bwd')}", 1.0), 1.0, t=t)
            r.mode = mode
            results.append(r)
            base[r.key] = {"gate_ratio": 2.0}
    return results, base


def test_a_kernel_is_judged_on_the_geometric_mean_of_its_entries():
    # one noisy entry at +25% among four: the kernel is at 1.057x, within +15%
    results, base = _grid(e0=1.25)
    report = kb.run_gate(results, base, 0.15)
    assert report.passed and report.worst.relative == 1.25
    assert report.worst_kernel.name == "fox/torch" and report.worst_kernel.relative == pytest.approx(1.25 ** 0.25)
    # the whole kernel 1.2x slower: every entry a bit over, the mean over the limit
    results, base = _grid(e0=1.2, e1=1.2, e2=1.2, e3=1.2)
    report = kb.run_gate(results, base, 0.15)
    assert not report.passed and len(report.failures) == 4
    [k] = report.failing_kernels
    assert "fox/torch: 1.20x its baseline over 4 entries" in k.message(0.15) and "one entry alone +30%" in k.message(0.15)
    # one entry alone past twice the limit fails the kernel, whatever the others do
    results, base = _grid(e3=1.31)
    assert not kb.run_gate(results, base, 0.15).passed
    results, base = _grid(e3=1.29)
    assert kb.run_gate(results, base, 0.15).passed


def test_a_failing_kernel_is_measured_again_on_all_its_entries_keeping_each_ones_smaller_ratio():
    results, base = _grid(e0=1.2, e1=1.2, e2=1.2, e3=1.2)
    report = kb.run_gate(results, base, 0.15, remeasure=lambda failing: [
        _with_mode(x, r.mode) for r in failing for x in [_result(r.op, 2.0 * (1.05 if r.mode == "fwd" else 1.3),
                                                                    1.0, t=r.seq_len)]])
    assert len(report.remeasured) == 4
    # fwd entries: min(1.2, 1.05) = 1.05; fwd+bwd: min(1.2, 1.3) = 1.2; geometric mean 1.122 < 1.15
    assert report.passed and report.worst_kernel.relative == pytest.approx((1.05 * 1.2) ** 0.5)


def _with_mode(r, mode):
    r.mode = mode
    return r


def test_the_baseline_is_the_median_of_the_saves_from_the_same_tree(tmp_path, monkeypatch):
    from harness import environment

    sha = {"v": "aaa"}
    monkeypatch.setattr(environment, "describe", lambda device: {"git_sha": sha["v"], "torch_version": "2.x"})
    key = "fox/torch/fwd+bwd/float32/B1-T256-H4-D64/causal"
    for fox in (2.0, 2.6, 2.2):
        path = kb.save_baseline(tmp_path, _run(fox=fox), "cpu-x", command="archbench bench")
    entry = json.loads(path.read_text())["device_classes"]["cpu-x"]["entries"][key]
    assert entry["samples"] == [2.0, 2.6, 2.2] and entry["gate_ratio"] == 2.2  # the median, not the last
    for fox in (3.0,) * 6:
        kb.save_baseline(tmp_path, _run(fox=fox), "cpu-x", command="archbench bench")
    entry = json.loads(path.read_text())["device_classes"]["cpu-x"]["entries"][key]
    assert len(entry["samples"]) == kb.MAX_SAMPLES and entry["gate_ratio"] == 3.0
    sha["v"] = "bbb"  # another tree starts afresh
    kb.save_baseline(tmp_path, _run(fox=2.4), "cpu-x", command="archbench bench")
    entry = json.loads(path.read_text())["device_classes"]["cpu-x"]["entries"][key]
    assert entry["samples"] == [2.4] and entry["gate_ratio"] == 2.4


def test_max_slowdown_parsing():
    assert kb.parse_max_slowdown("20%") == pytest.approx(0.2)
    assert kb.parse_max_slowdown("0.35") == pytest.approx(0.35)
    assert kb.parse_max_slowdown("150%") == pytest.approx(1.5)
    for bad in ("20", "abc", "-5%"):
        with pytest.raises(UserError, match="--max-slowdown"):
            kb.parse_max_slowdown(bad)


def test_baseline_file_roundtrip_and_missing_device_class(tmp_path):
    results = _run()
    path = kb.save_baseline(tmp_path / "b.json", results, "cpu-test-1t-x", command="archbench bench ...")
    doc = json.loads(path.read_text())
    block = doc["device_classes"]["cpu-test-1t-x"]
    assert doc["format"] == kb.BASELINE_FORMAT and block["command"] == "archbench bench ..."
    assert set(block["entries"]) == set(BASE)  # the SDPA baseline itself is not an entry
    entries, file, note = kb.load_baseline(path, "cpu-test-1t-x")
    assert entries[next(iter(BASE))]["ratio"] == 2.0 and note is None
    kb.save_baseline(path, [_result("linear", 3.0, 1.0)], "cpu-other")  # merged, not replaced
    entries, _, note = kb.load_baseline(path, "cpu-nope")
    assert entries is None and "cpu-nope" in note and "cpu-other" in note
    # a directory holds one file per device class; a missing one is a note, not an error
    d = tmp_path / "baselines"
    d.mkdir()
    kb.save_baseline(d, results, "cpu-test-1t-x")
    assert (d / "cpu-test-1t-x.json").exists()
    assert kb.load_baseline(d, "cpu-test-1t-x")[0] == kb.load_baseline(path, "cpu-test-1t-x")[0]  # same results
    entries, _, note = kb.load_baseline(d, "cpu-elsewhere")
    assert entries is None and "gate skipped" in note
    # a path not named *.json that does not exist yet is a directory to create
    fresh = tmp_path / "new" / "baselines"
    assert kb.save_baseline(fresh, results, "cpu-test-1t-x") == fresh / "cpu-test-1t-x.json"
    assert kb.load_baseline(tmp_path / "none-yet", "cpu-test-1t-x")[0] is None
    with pytest.raises(UserError, match="does not exist"):
        kb.load_baseline(tmp_path / "missing.json", "x")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        kb.load_baseline(tmp_path / "bad.json", "x")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(UserError, match="not an archbench kernel baseline"):
        kb.load_baseline(tmp_path / "other.json", "x")


def test_cpu_device_class_names_arch_threads_and_model():
    dc = kb.device_class("cpu")
    assert dc.startswith("cpu-") and f"-{torch.get_num_threads()}t-" in dc
    assert dc == dc.lower() and " " not in dc


# -- storing --------------------------------------------------------------------------------------

def test_rows_are_stored_with_git_sha_and_environment(fake_kernels, db_url):
    results, _ = kb.run_bench(_spec(mode="fwd", seq_lens="16"), timer=FakeTimer())
    store = Store(db_url)
    env_id = kb.store_results(store, results, "cpu")
    with store.session() as s:
        rows = list(s.scalars(select(KernelBenchmark)))
        env = s.get(Environment, env_id)
    info = environment.describe("cpu")
    assert env is not None and env.torch_version == torch.__version__
    assert len(rows) == 3
    measured = {r.op: (r.median_ms, r.p20_ms, r.p80_ms) for r in results}
    assert measured["path"][0] == pytest.approx(2.5 * measured["fox"][0])  # 5 units against 2
    for row in rows:
        assert row.git_sha == info["git_sha"] and row.environment_id == env_id
        assert row.status == "ok" and (row.median_ms, row.p20_ms, row.p80_ms) == measured[row.op]
        assert row.device_name == environment.device_name("cpu") and row.dtype == "float32"
    frame = latest_kernels(store)
    assert set(frame.op) == {"softmax", "fox", "path"}
    assert frame.set_index("op").loc["fox", "vs_sdpa"] == 2.0


# -- the command ------------------------------------------------------------------------------------

def test_cli_bench_tiny_real_grid_writes_rows(tmp_path):
    db = tmp_path / "k.db"
    res = runner.invoke(app, ["bench", "--ops", "fox", "-T", "32", "--heads", "2", "--head-dim", "16", "--mode", "fwd",
                              "--rounds", "1", "--min-run-time", "0.01", "--no-memory", "-q", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "fox/torch" in res.stdout and "peak unknown" in res.stdout
    store = Store(f"sqlite:///{db}", readonly=True)
    with store.session() as s:
        rows = list(s.scalars(select(KernelBenchmark)))
    assert {(r.op, r.impl) for r in rows} == {("fox", "torch"), ("softmax", "sdpa")}
    res = runner.invoke(app, ["leaderboard", "--kernels", "--db", str(db), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert {r["op"] for r in json.loads(res.stdout)} == {"fox", "softmax"}


def test_cli_bench_json_output(fake_kernels, monkeypatch, tmp_path):
    monkeypatch.setattr(command, "make_timer", lambda *a, **k: FakeTimer())
    res = runner.invoke(app, ["bench", "-T", "16", "--mode", "fwd", "--no-store", "-q", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["op"] for r in rows} == {"softmax", "fox", "path"}
    assert all({"median_ms", "p20_ms", "p80_ms", "ratio", "tflops", "tokens_per_s"} <= set(r) for r in rows)
    res = runner.invoke(app, ["bench", "-T", "16", "--mode", "fwd", "--no-store", "-q", "--format", "csv"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("op,impl,mode")


@pytest.mark.parametrize("args, needle", [
    (["--mode", "backward"], "unknown --mode 'backward'; use fwd or fwd+bwd"),
    (["--ops", "nosuch"], "unknown op 'nosuch'"),
    (["--max-slowdown", "20"], "write it as a percentage"),
    (["--compare", "missing.json"], "does not exist"),
    (["--format", "xml"], "unknown --format 'xml'"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(fake_kernels, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["bench", "-q", "--db", str(tmp_path / "k.db"), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not (tmp_path / "k.db").exists()


def test_cli_bad_slowdown_env_exits_2(fake_kernels):
    res = runner.invoke(app, ["bench", "-q", "--no-store"], env={kb.SLOWDOWN_ENV: "fox"})
    assert res.exit_code == 2 and "ARCHBENCH_SLOWDOWN" in res.output


def test_cli_gate_save_compare_and_planted_slowdown(fake_kernels, monkeypatch, tmp_path):
    monkeypatch.setattr(command, "make_timer", lambda *a, **k: FakeTimer())
    base_dir = tmp_path / "baselines"
    base_dir.mkdir()
    grid = ["bench", "-T", "16,32", "--mode", "fwd+bwd", "--no-store", "-q"]
    res = runner.invoke(app, [*grid, "--compare", str(base_dir)])
    assert res.exit_code == 0 and "gate skipped" in res.output  # no baseline for this device class: a note
    res = runner.invoke(app, [*grid, "--save-baseline", str(base_dir)])
    assert res.exit_code == 0, res.output
    assert (base_dir / f"{kb.device_class('cpu')}.json").exists()
    res = runner.invoke(app, [*grid, "--compare", str(base_dir), "--max-slowdown", "20%"])
    assert res.exit_code == 0, res.output
    assert "pass" in res.output and "4 kernels" in res.output
    # a machine 3x slower everywhere still passes: SDPA got slower too
    monkeypatch.setattr(command, "make_timer", lambda *a, **k: FakeTimer(scale=3.0))
    assert runner.invoke(app, [*grid, "--compare", str(base_dir)]).exit_code == 0
    res = runner.invoke(app, [*grid, "--compare", str(base_dir)], env={kb.SLOWDOWN_ENV: "fox=2"})
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "fox/torch fwd+bwd float32 B1-T16-H4-D64" in res.output
    assert "path/torch" not in res.stderr.split("FAIL", 1)[1]
    assert "+100%" in res.output


def test_cli_gate_catches_a_planted_quarter_slowdown(fake_kernels, monkeypatch, tmp_path):
    monkeypatch.setattr(command, "make_timer", lambda *a, **k: FakeTimer(calls=8))
    grid = ["bench", "-T", "16", "--mode", "fwd+bwd", "--no-store", "-q", "--rounds", "3"]
    res = runner.invoke(app, [*grid, "--save-baseline", str(tmp_path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*grid, "--compare", str(tmp_path), "--max-slowdown", "15%"],
                        env={kb.SLOWDOWN_ENV: "fox=1.25"})
    assert res.exit_code == 1 and "planted slowdown {'fox': 1.25}" in res.output
    assert "fox/torch fwd+bwd" in res.stderr.split("FAIL", 1)[1] and "measured twice" in res.output
    res = runner.invoke(app, [*grid, "--compare", str(tmp_path), "--max-slowdown", "30%"],
                        env={kb.SLOWDOWN_ENV: "fox=1.25"})
    assert res.exit_code == 0, res.output


def test_baseline_without_gate_ratio_is_compared_on_its_ratio():
    old = {k: {"ratio": v["ratio"]} for k, v in BASE.items()}
    assert kb.run_gate(_run(), old, 0.2).passed
    assert not kb.run_gate(_run(fox=2.6), old, 0.2).passed


def test_an_op_added_in_its_own_folder_is_benchmarked_with_its_flops(monkeypatch, tmp_path):
    """Acceptance for "adding an op touches only its folder": a toy op written as one folder
    (``tests/kernels/test_registry.py::TOY_OP``, nothing under harness/ edited) shows up in
    ``archbench bench`` with the FLOPs its own formula declares (forward ``(attention, 7 T)``),
    the wing adding the FlashAttention backward convention."""
    from tests.kernels.test_registry import toy_op_folder

    with toy_op_folder(monkeypatch, tmp_path):
        res = CliRunner().invoke(app, ["bench", "--ops", "toy", "--shapes", "1x16x2x8", "--rounds", "1",
                                       "--min-run-time", "0.01", "--no-memory", "--no-store", "--quiet",
                                       "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {(r["op"], r["impl"], r["mode"]): r for r in json.loads(res.stdout)}
    attn, extra = attention_flops(1, 16, 2, 8), 7.0 * 16
    assert rows["toy", "torch", "fwd"]["status"] == "ok"
    assert rows["toy", "torch", "fwd"]["flops"] == attn + extra
    assert rows["toy", "torch", "fwd+bwd"]["flops"] == 3.5 * attn + 3 * extra
    assert rows["toy", "torch", "fwd"]["tflops"] > 0
    assert ("toy", "triton", "fwd") not in rows  # CUDA only: skipped on this machine, not failed
    assert "toy/triton: needs CUDA" in res.stderr


def test_the_cpu_second_opinion_comes_from_a_fresh_process_with_the_same_settings():
    """The child process measures the same entries (key fields, slowdown, clock, threads) and
    hands back paired ratios the gate reads; a planted 2x shows there too."""
    spec = kb.make_spec(ops="fox", impls="torch", shapes="1x32x2x8", mode="fwd", rounds=1, slowdown="fox=2")
    timer = kb.CpuTimer(0.01, num_threads=1, clock="cpu")
    first = [kb.BenchResult(op="fox", impl="torch", mode="fwd", dtype="float32", batch=1, seq_len=32, heads=2,
                            head_dim=8)]
    from harness.kernelbench.fresh import fresh_remeasurer

    again = fresh_remeasurer(spec, timer)(first)
    by = {r.key: r for r in again}
    fox = by[first[0].key]
    assert fox.status == "ok" and len(fox.paired_ratios) == 2  # twice the rounds
    assert fox.gate_ratio > 1.0  # fox is ~1x SDPA at this size; the planted 2x doubles it
    assert any(r.is_baseline for r in again)


def test_a_fresh_process_that_cannot_run_leaves_the_first_measurement(monkeypatch):
    from harness.kernelbench import fresh

    spec = kb.make_spec(ops="fox", impls="torch", shapes="1x32x2x8", mode="fwd", rounds=1)
    timer = kb.make_timer("cpu", 0.01)
    monkeypatch.setattr(fresh.sys, "executable", "/bin/false")
    first = [_result("fox", 4.0, 1.0)]
    assert fresh.fresh_remeasurer(spec, timer)(first) == []
    report = kb.run_gate(_run(fox=4.0), BASE, 0.2, remeasure=fresh.fresh_remeasurer(spec, timer))
    assert not report.passed and report.failures[0].ratios == [4.0]  # measured once: still a failure
