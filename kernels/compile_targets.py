"""Compile every Triton kernel for real GPU targets on a machine without a GPU.

``triton.compile`` on an ``ASTSource`` with ``GPUTarget("cuda", 80|90, 32)`` runs Triton's own
NVIDIA backend down to a cubin (PTX assembled by the ``ptxas`` shipped in the Triton
wheel).  For each launch a kernel module declares (``compile_launches(cc, dtype, head_dim)``,
built from the same config functions the autotuner uses, see :mod:`kernels.triton_utils`)
this records the shared memory Triton reserves (``metadata.shared``), and from ``ptxas -v``
the registers per thread and the spill stores/loads in bytes per thread.

    python -m kernels.compile_targets                      # the full matrix, a table
    python -m kernels.compile_targets --dtypes bf16 --head-dims 64 128 --json out.json

A launch *fits* when its shared memory is within the target's per-block limit
(:data:`~kernels.triton_utils.SHARED_LIMIT`: 163 KiB on sm80, 227 KiB on sm90) and its spills
are within the budget the kernel states (0 unless it says otherwise).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

OPS = ("fox", "softmax_attention", "path", "deltanet", "linear_attention", "momentum")
TARGETS = (80, 90)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
HEAD_DIMS = (16, 32, 64, 128, 256)


@dataclass
class Resources:
    op: str
    kernel: str
    target: int
    dtype: str
    head_dim: int
    config: str
    shared: int
    registers: int
    spill_stores: int
    spill_loads: int
    spill_budget: int
    num_warps: int
    wgmma_serialized: bool
    seconds: float

    @property
    def shared_limit(self) -> int:
        from kernels.triton_utils import SHARED_LIMIT
        return SHARED_LIMIT[self.target]

    @property
    def fits(self) -> bool:
        return self.shared <= self.shared_limit and max(self.spill_stores, self.spill_loads) <= self.spill_budget


def _ptxas(cc: int) -> str:
    """The ``ptxas`` Triton itself assembles ``sm_<cc>`` code with (a newer one from sm90 on)."""
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(cc).path


_REGS_RE = re.compile(r"Used (\d+) registers")
_SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def ptxas_report(ptx: str, cc: int) -> tuple[int, int, int, bool]:
    """``(registers, spill stores, spill loads, wgmma serialized)`` from ``ptxas -v`` on ``ptx``
    (its own ``.target``).  The last is ptxas's sm90 warning that Hopper's asynchronous MMAs run
    one at a time for want of registers: the launch works, slower."""
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1).rstrip(",")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([_ptxas(cc), "-v", f"--gpu-name={arch}", str(src),
                               "-o", str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"ptxas failed for {arch}: {proc.stderr[-2000:]}")
    regs, spills = _REGS_RE.search(proc.stderr), _SPILL_RE.search(proc.stderr)
    if regs is None or spills is None:
        raise RuntimeError(f"could not read ptxas -v output:\n{proc.stderr[-2000:]}")
    serialized = "wgmma.mma_async instructions are serialized" in proc.stderr
    return int(regs.group(1)), int(spills.group(1)), int(spills.group(2)), serialized


def compile_launch(launch, cc: int):
    """Compile one :class:`~kernels.triton_utils.KernelLaunch` for ``sm_<cc>``; the compiled kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = launch.jit_fn()
    sig = launch.signature()
    # a real launch specializes on 16-byte-aligned pointers (every fresh torch allocation is),
    # which lets loads vectorize; compile the same specialization
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names) if sig[name].startswith("*")}
    src = ASTSource(fn, sig, constexprs={(fn.arg_names.index(k),): v for k, v in launch.constexprs.items()},
                    attrs=aligned)
    return triton.compile(src, target=GPUTarget("cuda", cc, 32),
                          options={"num_warps": launch.num_warps, "num_stages": launch.num_stages})


def measure(op: str, launch, cc: int, dtype: str, head_dim: int) -> Resources:
    t0 = time.perf_counter()
    kernel = compile_launch(launch, cc)
    regs, stores, loads, serialized = ptxas_report(kernel.asm["ptx"], cc)
    return Resources(op=op, kernel=launch.name, target=cc, dtype=dtype, head_dim=head_dim, config=launch.config,
                     shared=int(kernel.metadata.shared), registers=regs, spill_stores=stores, spill_loads=loads,
                     spill_budget=launch.spill_budget, num_warps=launch.num_warps,
                     wgmma_serialized=serialized, seconds=time.perf_counter() - t0)


def module(op: str):
    return importlib.import_module(f"kernels.{op}.triton_kernel")


def supported(op: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``(head dims, dtype names)`` an op's Triton kernels support."""
    mod = module(op)
    dims = tuple(getattr(mod, "HEAD_DIMS", HEAD_DIMS[:4]))
    dtypes = tuple(getattr(mod, "DTYPES", ("bf16", "fp16", "fp32")))
    return dims, dtypes


def head_dims_for(op: str, dtype: str) -> tuple[int, ...]:
    """The head dims an op's Triton kernels support in ``dtype`` (``HEAD_DIMS_BY_DTYPE`` where
    a dtype has fewer, e.g. DeltaNet's fp32 state at 256 does not fit in registers)."""
    mod = module(op)
    return tuple(getattr(mod, "HEAD_DIMS_BY_DTYPE", {}).get(dtype, supported(op)[0]))


def launches(op: str, cc: int, dtype: str, head_dim: int):
    return module(op).compile_launches(cc, DTYPES[dtype], head_dim)


def matrix(ops=OPS, targets=TARGETS, dtypes=tuple(DTYPES), head_dims=HEAD_DIMS):
    """Every ``(op, target, dtype, head_dim)`` the ops support, in a stable order."""
    for op in ops:
        _, kinds = supported(op)
        for cc in targets:
            for dtype in dtypes:
                if dtype not in kinds:
                    continue
                for d in head_dims:
                    if d in head_dims_for(op, dtype):
                        yield op, cc, dtype, d


def markdown(rows: list[Resources]) -> str:
    lines = ["| op | kernel | target | dtype | head dim | config | shared KiB | registers | spills (st/ld B) | note |",
             "|---|---|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        note = "wgmma serialized" if r.wgmma_serialized else ""
        lines.append(f"| {r.op} | {r.kernel} | sm{r.target} | {r.dtype} | {r.head_dim} | {r.config} | "
                     f"{r.shared / 1024:.1f} | {r.registers} | {r.spill_stores}/{r.spill_loads} | {note} |")
    return "\n".join(lines)


def summary(rows: list[Resources], dtype: str = "bf16", head_dims: tuple[int, ...] = (64, 128)) -> str:
    """One line per kernel: for each target x head dim, the largest shared memory and register
    count over its configs and the largest spill (``KiB / regs / spill bytes``)."""
    cols = [(cc, d) for cc in TARGETS for d in head_dims]
    kernels: dict[tuple[str, str], dict[tuple[int, int], list[Resources]]] = {}
    for r in rows:
        if r.dtype == dtype and r.head_dim in head_dims:
            kernels.setdefault((r.op, r.kernel), {}).setdefault((r.target, r.head_dim), []).append(r)
    head = "| op | kernel | " + " | ".join(f"sm{cc} d{d}" for cc, d in cols) + " |"
    lines = [head, "|---|---|" + "---:|" * len(cols)]
    for (op, kernel), cells in kernels.items():
        out = []
        for col in cols:
            rs = cells.get(col)
            if not rs:
                out.append("-")
                continue
            spill = max(max(r.spill_stores, r.spill_loads) for r in rs)
            out.append(f"{max(r.shared for r in rs) / 1024:.0f} / {max(r.registers for r in rs)} / {spill}")
        lines.append(f"| {op} | {kernel} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.compile_targets", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--targets", nargs="+", type=int, default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--head-dims", nargs="+", type=int, default=list(HEAD_DIMS))
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    parser.add_argument("--markdown", type=Path, help="also write the full table (markdown) to this file")
    args = parser.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    rows, bad = [], []
    for op, cc, dtype, d in matrix(args.ops, args.targets, args.dtypes, args.head_dims):
        for launch in launches(op, cc, dtype, d):
            r = measure(op, launch, cc, dtype, d)
            rows.append(r)
            if not r.fits:
                bad.append(r)
            print(f"{op:16s} {r.kernel:22s} sm{cc} {dtype} d{d:<4d} {r.config:40s} shared {r.shared / 1024:6.1f} KiB  "
                  f"regs {r.registers:3d}  spills {r.spill_stores}/{r.spill_loads}  {r.seconds:.1f}s"
                  + ("" if r.fits else "  DOES NOT FIT"), flush=True)
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if args.markdown:
        args.markdown.write_text(markdown(rows) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
