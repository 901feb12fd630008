"""Time each kernel op against causal SDPA at the same shape, in the same run.

    python -m kernels.benchmark [--ops fox momentum ...] [--T 256 1024 4096] [--mode fwd fwd+bwd]

Each op is called through its public function (so: the torch fast path on CPU, Triton on
CUDA) and timed with ``torch.utils.benchmark.Timer.blocked_autorange`` (median).  ``fwd``
runs under ``no_grad``; ``fwd+bwd`` runs the forward and ``torch.autograd.grad`` of every
input.  The baseline is ``F.scaled_dot_product_attention(..., is_causal=True)`` on the same
q, k, v; ``ratio = op_ms / sdpa_ms``.  SDPA and the ops are timed in interleaved rounds and
each keeps its fastest round, which keeps ratios usable on a shared, busy machine.
``bench_ops`` returns the rows for other code (the harness stores them); this module
prints, never asserts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer


@dataclass(frozen=True)
class BenchOp:
    name: str
    fn: Callable[..., torch.Tensor]
    extra: Callable[[int, int, int, int, torch.dtype, torch.device, torch.Generator, dict], dict]


def _sdpa(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=True).transpose(1, 2)


def _rand(shape, dtype, device, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def _uniform(shape, lo, hi, dtype, device, gen):
    x = torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo
    return x.to(device=device, dtype=dtype)


def _log_f(b, t, h, dtype, device, gen):
    """Realistic forget gates: ``log sigmoid(N(0, 1) + 4)``."""
    return F.logsigmoid(_rand((b, t, h), torch.float32, "cpu", gen) + 4.0).to(device=device,
                                                                              dtype=dtype)


def _no_extra(b, t, h, d, dtype, device, gen, base):
    return {}


def _public_op(name: str):
    """``kernels.<name>`` if it is a function; ``None`` when absent or still a bare package
    (``from kernels import deltanet`` yields the namespace package while it is unwritten)."""
    try:
        import kernels

        fn = getattr(kernels, name, None)
    except ImportError:  # pragma: no cover
        return None
    return fn if callable(fn) else None


def available_ops() -> dict[str, BenchOp]:
    """Every op exported by ``kernels`` now (path and deltanet may not exist yet)."""
    ops: dict[str, BenchOp] = {}
    if (fn := _public_op("softmax_attention")) is not None:
        ops["softmax"] = BenchOp("softmax", fn, _no_extra)
    if (fn := _public_op("fox_attention")) is not None:
        ops["fox"] = BenchOp("fox", fn, lambda b, t, h, d, dt, dev, g, base: {
            "log_f": _log_f(b, t, h, dt, dev, g)})
    if (fn := _public_op("momentum_attention")) is not None:
        ops["momentum"] = BenchOp("momentum", fn, lambda b, t, h, d, dt, dev, g, base: {
            "gamma": torch.tensor(0.5, device=dev, dtype=dt)})
    if (fn := _public_op("linear_attention")) is not None:
        ops["linear"] = BenchOp("linear", fn, _no_extra)
    if (fn := _public_op("path_attention")) is not None:
        def path_extra(b, t, h, d, dt, dev, g, base):
            w = F.normalize(_rand((b, t, h, d), torch.float32, "cpu", g), dim=-1)
            return {"w": w.to(device=dev, dtype=dt), "beta": _uniform((b, t, h), 0.0, 2.0, dt, dev, g)}

        def path_fox_extra(b, t, h, d, dt, dev, g, base):
            return {**path_extra(b, t, h, d, dt, dev, g, base), "log_f": _log_f(b, t, h, dt, dev, g)}

        ops["path"] = BenchOp("path", fn, path_extra)
        ops["path-fox"] = BenchOp("path-fox", fn, path_fox_extra)
    if (fn := _public_op("deltanet")) is not None:
        def delta_extra(b, t, h, d, dt, dev, g, base):
            return {"k": F.normalize(base["k"].float(), dim=-1).to(dt),
                    "beta": _uniform((b, t, h), 0.0, 1.0, dt, dev, g)}

        ops["deltanet"] = BenchOp("deltanet", fn, delta_extra)
    return ops


def _time(fn: Callable[[], object], min_run_time: float) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call (compiles Triton kernels)."""
    fn()
    timer = Timer(stmt="fn()", globals={"fn": fn})
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _runner(fn: Callable[..., torch.Tensor], inputs: dict, mode: str) -> Callable[[], object]:
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(**inputs)
        return run
    if mode != "fwd+bwd":
        raise ValueError(f"mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    leaves = {n: x.detach().requires_grad_(x.is_floating_point()) for n, x in inputs.items()}
    diff = [x for x in leaves.values() if x.requires_grad]
    with torch.no_grad():
        grad_out = torch.randn_like(fn(**leaves))

    def run():
        out = fn(**leaves)
        return torch.autograd.grad(out, diff, grad_out)
    return run


def bench_ops(ops: list[str] | None = None, Ts=(256, 1024, 4096), modes=("fwd", "fwd+bwd"),
              B: int = 1, H: int = 4, D: int = 64, dtype: torch.dtype = torch.float32,
              device: str | torch.device | None = None, min_run_time: float = 0.5,
              rounds: int = 3, seed: int = 0) -> list[dict]:
    """Time ``ops`` (names from ``available_ops()``; all when ``None``) and SDPA.

    For each (T, mode), SDPA and every op are timed in turn, ``rounds`` times over; each
    timing is the median of one ``blocked_autorange`` and the row keeps the smallest of its
    rounds (on a shared machine, contention only ever adds time).  Returns one dict per
    (op, T, mode): ``op, T, mode, B, H, D, dtype, device, ms, sdpa_ms, ratio``.
    """
    device = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    registry = available_ops()
    names = list(registry) if ops is None else list(ops)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown or unavailable op(s) {unknown}; available: {sorted(registry)}")
    rows = []
    for t in Ts:
        gen = torch.Generator().manual_seed(seed)
        base = {n: _rand((B, t, H, D), dtype, device, gen) for n in ("q", "k", "v")}
        extras = {n: registry[n].extra(B, t, H, D, dtype, device, gen, base) for n in names}
        for mode in modes:
            runners = {"sdpa": _runner(_sdpa, base, mode)}
            runners.update({n: _runner(registry[n].fn, {**base, **extras[n]}, mode) for n in names})
            best = {n: float("inf") for n in runners}
            for _ in range(max(1, rounds)):
                for n, fn in runners.items():
                    best[n] = min(best[n], _time(fn, min_run_time))
            for n in names:
                rows.append(dict(op=n, T=t, mode=mode, B=B, H=H, D=D,
                                 dtype=str(dtype).removeprefix("torch."), device=str(device),
                                 ms=best[n], sdpa_ms=best["sdpa"], ratio=best[n] / best["sdpa"]))
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'op':<10} {'T':>6} {'mode':<8} {'ms':>10} {'sdpa ms':>10} {'op/sdpa':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['op']:<10} {r['T']:>6} {r['mode']:<8} {r['ms']:>10.3f} "
                     f"{r['sdpa_ms']:>10.3f} {r['ratio']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m kernels.benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--ops", nargs="+", default=None, help="op names (default: all available)")
    p.add_argument("--T", nargs="+", type=int, default=[256, 1024, 4096], help="sequence lengths")
    p.add_argument("--mode", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
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
