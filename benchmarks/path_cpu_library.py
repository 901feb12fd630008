"""PaTH's torch path on CPU as a library: its forward time over SDPA's at one shape, measured
in a plain Python process (glibc malloc as it comes) and in one tuned like the archbench CLI
(:func:`kernels.cpu_memory.keep_freed_memory`), side by side.

    python benchmarks/path_cpu_library.py [--seq-len 1024] [--threads 1] [--rounds 5]

Each process times ``path_attention`` (PaTH-FoX inputs, the dispatch a user's import gets) and
``F.scaled_dot_product_attention`` (causal) alternately, ``--rounds`` rounds of best-of-N, and
prints the median ratio; the parent prints both and writes them to
``benchmarks/results/path_cpu_library.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import torch
import torch.nn.functional as F
args = json.loads(sys.argv[1])
if args["tuned"]:
    from kernels.cpu_memory import keep_freed_memory
    keep_freed_memory()
torch.set_num_threads(args["threads"])
from kernels import path_attention
from kernels.inputs import KernelShape
from kernels.path import path_fox_inputs
shape = KernelShape(1, args["seq_len"], 4, 64)
x = path_fox_inputs(shape)
q, k, v = (t.transpose(1, 2).contiguous() for t in (x["q"], x["k"], x["v"]))

def best(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return min(ts)

with torch.no_grad():
    path = lambda: path_attention(**x)
    sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    for f in (path, sdpa):
        f(); f()
    ratios, tp, ts = [], [], []
    for _ in range(args["rounds"]):
        a, b = best(path, 5), best(sdpa, 5)
        tp.append(a); ts.append(b); ratios.append(a / b)
print("RESULT" + json.dumps({"ratio": sorted(ratios)[len(ratios) // 2], "path_ms": 1e3 * min(tp),
                             "sdpa_ms": 1e3 * min(ts)}))
"""


def run(tuned: bool, args) -> dict:
    root = Path(__file__).resolve().parents[1]
    spec = json.dumps({"tuned": tuned, "seq_len": args.seq_len, "threads": args.threads, "rounds": args.rounds})
    out = subprocess.run([sys.executable, "-c", CHILD, spec], cwd=root, capture_output=True, text=True,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[6:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="pairs of processes, alternating")
    args = p.parse_args()
    plain, tuned = [], []
    for _ in range(args.repeats):  # alternate, so a noisy minute hits both
        plain.append(run(False, args))
        tuned.append(run(True, args))
    res = {"shape": f"B1-T{args.seq_len}-H4-D64", "threads": args.threads,
           "plain_script": {"ratio_median": statistics.median(r["ratio"] for r in plain), "runs": plain},
           "cli_malloc": {"ratio_median": statistics.median(r["ratio"] for r in tuned), "runs": tuned},
           "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    print(f"PaTH-FoX torch forward / SDPA at {res['shape']}, {args.threads} thread(s):")
    print(f"  plain script : {res['plain_script']['ratio_median']:.2f}x")
    print(f"  CLI's malloc : {res['cli_malloc']['ratio_median']:.2f}x")
    out = Path(__file__).resolve().parent / "results" / "path_cpu_library.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
