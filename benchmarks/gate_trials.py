"""Does the kernel gate catch a small slowdown without false alarms?  Run CI's gate command
N times on the unchanged tree and N times with a planted slowdown, and count.

    python benchmarks/gate_trials.py                     # 10 clean + 10 planted (factor 1.25)
    python benchmarks/gate_trials.py -n 3 --factor 1.5 --out /tmp/trials.json

The command is the ``archbench bench ...`` line of ``.ci/run`` (``--command`` overrides it),
run as ``python -m harness bench ...`` from the repository root.  Planted trials set
``ARCHBENCH_SLOWDOWN=<op>=<factor>``, a different op each trial, cycling through the ops the
committed baseline has for this machine's device class.  Clean and planted trials alternate,
so a change in the machine's load lands on both kinds.

A *false alarm* is a clean trial that exits 1; a *miss* is a planted trial that exits 0, or
that fails without naming the planted op.  Any other exit status is an *error* (e.g. no
baseline for this device class: the gate skips, and there is nothing to count).  The table
goes to stdout, every trial (exit status, seconds, load average, the gate's summary and its
"slower:" lines) to ``--out`` as JSON.  Run it on a quiet machine and write down the load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOWDOWN_ENV = "ARCHBENCH_SLOWDOWN"


def ci_command(ci_file: Path = ROOT / ".ci" / "run") -> list[str]:
    """The ``archbench bench`` command of the CI script, continuation lines joined."""
    text = ci_file.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip().startswith("archbench bench"):
            return shlex.split(line.strip())
    raise SystemExit(f"no `archbench bench` line in {ci_file}; pass --command")


def _option(cmd: list[str], name: str) -> str | None:
    for i, a in enumerate(cmd):
        if a == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def gate_ops(cmd: list[str]) -> list[str]:
    """The ops the baseline holds for this machine's device class (at the command's thread count)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from harness.kernelbench import device_class, load_baseline, resolve_device

    threads = _option(cmd, "--threads")
    if threads:
        torch.set_num_threads(int(threads))
    compare = _option(cmd, "--compare")
    if compare is None:
        raise SystemExit("the command has no --compare: there is no gate to trial")
    dev_class = device_class(resolve_device(_option(cmd, "--device")))
    entries, file, note = load_baseline(ROOT / compare, dev_class)
    if entries is None:
        raise SystemExit(f"{note}\nno baseline for {dev_class}: the gate skips here, nothing to count")
    return sorted({key.split("/")[0] for key in entries})


def run_trial(cmd: list[str], planted: str | None, factor: float) -> dict:
    argv = [sys.executable, "-m", "harness", *cmd[1:]]  # `archbench` -> this interpreter
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop(SLOWDOWN_ENV, None)
    if planted:
        env[SLOWDOWN_ENV] = f"{planted}={factor:g}"
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    text = proc.stdout + proc.stderr
    summary = next((ln.strip() for ln in text.splitlines() if re.match(r"\s*(pass|FAIL) gate:", ln)), None)
    slower = [ln.strip().removeprefix("slower: ") for ln in text.splitlines() if ln.strip().startswith("slower:")]
    worst = re.search(r"worst entry \S+ .*? at ([0-9.]+)x its baseline", summary or "")
    kernel = re.search(r"worst kernel (\S+) at ([0-9.]+)x", summary or "")
    failed = [s.split(":", 1)[0] for s in slower]  # the kernels (op/impl) the gate failed
    twice = re.search(r"(\d+) measured twice", summary or "")
    if proc.returncode == 0:
        verdict = "miss" if planted else "ok"
    elif proc.returncode == 1:
        named = planted is not None and any(k.startswith(f"{planted}/") for k in failed)
        others = [k for k in failed if planted is None or not k.startswith(f"{planted}/")]
        if planted is None:
            verdict = "FALSE ALARM"
        elif not named:
            verdict = "miss (other op failed)"
        else:
            verdict = "caught" + (f" + FALSE ALARM {','.join(others)}" if others else "")
    else:
        verdict = f"error (exit {proc.returncode})"
    return dict(kind="planted" if planted else "clean", planted=planted, factor=factor if planted else None,
                exit=proc.returncode, verdict=verdict, seconds=round(seconds, 1), load_before=round(load_before, 2),
                load_after=round(os.getloadavg()[0], 2), worst_relative=float(worst.group(1)) if worst else None,
                worst_kernel=kernel.group(1) if kernel else None,
                worst_kernel_relative=float(kernel.group(2)) if kernel else None, failed_kernels=failed,
                measured_twice=int(twice.group(1)) if twice else 0, summary=summary, slower=slower,
                output_tail=text[-3000:] if proc.returncode not in (0, 1) else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="clean trials, and as many planted ones")
    ap.add_argument("--factor", type=float, default=1.25, help="planted slowdown factor")
    ap.add_argument("--command", default=None, help="the gate command (default: the one in .ci/run)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "gate_trials.json", help="JSON of every trial")
    a = ap.parse_args(argv)
    cmd = shlex.split(a.command) if a.command else ci_command()
    ops = gate_ops(cmd)
    print(f"command: {shlex.join(cmd)}\nplanted: {SLOWDOWN_ENV}=<op>={a.factor:g}, cycling {', '.join(ops)}\n"
          f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs",
          flush=True)
    trials = []
    head = (f"{'#':>3} {'kind':<8} {'planted':<10} {'exit':>4} {'verdict':<24} {'kernel':>6} {'entry':>6} {'2x':>3} "
            f"{'s':>6} {'load':>5}")
    print(head + "\n" + "-" * len(head), flush=True)
    for i in range(a.n):
        for planted in (None, ops[i % len(ops)]):
            t = run_trial(cmd, planted, a.factor)
            trials.append(t)
            worst = "-" if t["worst_relative"] is None else f"{t['worst_relative']:.2f}"
            kern = "-" if t["worst_kernel_relative"] is None else f"{t['worst_kernel_relative']:.2f}"
            print(f"{len(trials):>3} {t['kind']:<8} {t['planted'] or '-':<10} {t['exit']:>4} {t['verdict']:<24} "
                  f"{kern:>6} {worst:>6} {t['measured_twice']:>3} {t['seconds']:>6.1f} {t['load_before']:>5.2f}",
                  flush=True)
    clean = [t for t in trials if t["kind"] == "clean"]
    planted = [t for t in trials if t["kind"] == "planted"]
    counts = dict(clean=len(clean), false_alarms=sum(t["exit"] == 1 for t in clean), planted=len(planted),
                  collateral_false_alarms=sum("FALSE ALARM" in t["verdict"] for t in planted),
                  caught=sum(t["verdict"] == "caught" for t in planted),
                  misses=sum(t["verdict"].startswith("miss") for t in planted),
                  errors=sum(t["verdict"].startswith("error") for t in trials),
                  max_seconds=max(t["seconds"] for t in trials),
                  worst_clean_relative=max((t["worst_relative"] or 0 for t in clean), default=None))
    print(f"\nfalse alarms: {counts['false_alarms']}/{counts['clean']} clean trials, "
          f"{counts['collateral_false_alarms']}/{counts['planted']} planted trials failing another op too   "
          f"misses: {counts['misses']}/{counts['planted']}"
          f"   errors: {counts['errors']}   slowest trial: {counts['max_seconds']:.0f} s   "
          f"worst clean entry: {counts['worst_clean_relative']}x its baseline")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(dict(command=shlex.join(cmd), factor=a.factor, ops=ops, cpus=os.cpu_count(),
                                     counts=counts, trials=trials), indent=2) + "\n")
    print(f"written: {a.out}")
    bad = counts["false_alarms"] + counts["collateral_false_alarms"] + counts["misses"] + counts["errors"]
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
