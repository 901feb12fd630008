"""Time each kernel op against causal SDPA at the same shape, in the same run.

    python -m kernels.benchmark [--ops fox momentum ...] [--T 256 1024 4096] [--mode fwd fwd+bwd]

A quick, dependency-free view; ``archbench bench`` (``harness/bench.py``) is the full runner
(every implementation, TFLOP/s, memory, the results store and the CI regression gate).

Each op runs the implementation its public function dispatches to on the device (the
registry's ``torch`` entry on CPU, ``triton`` on CUDA when Triton is importable), with
inputs from the registry's builders (:mod:`kernels.registry`), timed with
``torch.utils.benchmark.Timer.blocked_autorange`` (median).  ``fwd`` runs under
``no_grad``; ``fwd+bwd`` runs the forward and ``torch.autograd.grad`` of every floating-point
input (:func:`make_runner`).  The baseline is ``F.scaled_dot_product_attention(...,
is_causal=True)`` on the same q, k, v; ``ratio = op_ms / sdpa_ms``.  SDPA and the ops are
timed in interleaved rounds and each keeps its fastest round, which keeps ratios usable on a
shared, busy machine.  ``bench_ops`` returns the rows; this module prints, never asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any, Callable

import torch
from torch.utils.benchmark import Timer

from kernels.cpu_memory import keep_freed_memory
from kernels.registry import BASELINE, KernelEntry, KernelShape, get_kernel, kernel_entries

MODES = ("fwd", "fwd+bwd")


def available_ops(device: str | torch.device = "cpu") -> dict[str, KernelEntry]:
    """For every registered op except the SDPA baseline's: the entry its public function
    would run on ``device`` (``triton`` on CUDA with Triton importable, else ``torch``)."""
    device = torch.device(device).type
    prefer = ["triton", "torch"] if device == "cuda" and importlib.util.find_spec("triton") else ["torch"]
    ops: dict[str, KernelEntry] = {}
    for entry in kernel_entries():
        if entry.impl not in prefer or device not in entry.devices:
            continue
        old = ops.get(entry.op)
        if old is None or prefer.index(entry.impl) < prefer.index(old.impl):
            ops[entry.op] = entry
    return ops


def make_runner(fn: Callable[..., Any], inputs: dict[str, Any], mode: str) -> Callable[[], object]:
    """A zero-argument callable running ``fn(**inputs)`` once in ``mode``.

    ``fwd``: the call under ``no_grad``.  ``fwd+bwd``: the call with every floating-point
    tensor input as a leaf requiring grad, then ``torch.autograd.grad`` of all of them with a
    fixed random output gradient.  Non-tensor inputs (flags) pass through.
    """
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(**inputs)
        return run
    if mode != "fwd+bwd":
        raise ValueError(f"mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    leaves = {n: (x.detach().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x)
              for n, x in inputs.items()}
    diff = [x for x in leaves.values() if isinstance(x, torch.Tensor) and x.requires_grad]
    with torch.no_grad():
        out = fn(**leaves)
    gen = torch.Generator().manual_seed(1)
    grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(device=out.device, dtype=out.dtype)

    def run():
        return torch.autograd.grad(fn(**leaves), diff, grad_out)
    return run


_runner = make_runner  # the old private name


def _time(fn: Callable[[], object], min_run_time: float) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call (compiles Triton kernels)."""
    fn()
    timer = Timer(stmt="fn()", globals={"fn": fn})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def bench_ops(ops: list[str] | None = None, Ts=(256, 1024, 4096), modes=MODES,
              B: int = 1, H: int = 4, D: int = 64, dtype: torch.dtype = torch.float32,
              device: str | torch.device | None = None, min_run_time: float = 0.5,
              rounds: int = 3, seed: int = 0) -> list[dict]:
    """Time ``ops`` (names from ``available_ops()``; all when ``None``) and SDPA.

    For each (T, mode), SDPA and every op are timed in turn, ``rounds`` times over; each
    timing is the median of one ``blocked_autorange`` and the row keeps the smallest of its
    rounds (on a shared machine, contention only ever adds time).  Returns one dict per
    (op, T, mode): ``op, impl, T, mode, B, H, D, dtype, device, ms, sdpa_ms, ratio``.
    """
    device = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    registry = available_ops(device)
    names = [n for n in registry if (n, registry[n].impl) != BASELINE] if ops is None else list(ops)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown or unavailable op(s) {unknown}; available: {sorted(registry)}")
    sdpa = get_kernel(*BASELINE)
    rows = []
    for t in Ts:
        shape = KernelShape(B, t, H, D, dtype=dtype, device=str(device), seed=seed)
        inputs = {n: registry[n].inputs(shape) for n in names}
        for mode in modes:
            runners = {"sdpa": make_runner(sdpa.fn, sdpa.inputs(shape), mode)}
            runners.update({n: make_runner(registry[n].fn, inputs[n], mode) for n in names})
            best = {n: float("inf") for n in runners}
            for _ in range(max(1, rounds)):
                for n, fn in runners.items():
                    best[n] = min(best[n], _time(fn, min_run_time))
            for n in names:
                rows.append(dict(op=n, impl=registry[n].impl, T=t, mode=mode, B=B, H=H, D=D,
                                 dtype=str(dtype).removeprefix("torch."), device=str(device),
                                 ms=best[n], sdpa_ms=best["sdpa"], ratio=best[n] / best["sdpa"]))
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'op':<10} {'impl':<7} {'T':>6} {'mode':<8} {'ms':>10} {'sdpa ms':>10} {'op/sdpa':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['op']:<10} {r['impl']:<7} {r['T']:>6} {r['mode']:<8} {r['ms']:>10.3f} "
                     f"{r['sdpa_ms']:>10.3f} {r['ratio']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # as the archbench CLI does: no page faults skewing the ratios
    p = argparse.ArgumentParser(prog="python -m kernels.benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--ops", nargs="+", default=None, help="op names (default: all available)")
    p.add_argument("--T", nargs="+", type=int, default=[256, 1024, 4096], help="sequence lengths")
    p.add_argument("--mode", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--B", type=int, default=1)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--D", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest is kept")
    a = p.parse_args(argv)
    try:
        rows = bench_ops(a.ops, a.T, a.mode, B=a.B, H=a.H, D=a.D, dtype=getattr(torch, a.dtype),
                         device=a.device, min_run_time=a.min_run_time, rounds=a.rounds)
    except ValueError as e:
        p.error(str(e))
    dev = rows[0]["device"] if rows else "?"
    print(f"device={dev} threads={torch.get_num_threads()} B={a.B} H={a.H} D={a.D} "
          f"dtype={a.dtype} (best of {a.rounds} interleaved blocked_autorange medians)")
    print(format_table(rows))


if __name__ == "__main__":
    main()
