"""Generation speed of every registered probe: ``python -m tasks.generation_speed``.

Times ``generate("train")`` at a preset (the ``paper`` one by default) with
``time.perf_counter``: each repetition generates at least ``n_tokens`` tokens (one call
for most probes; repeated calls for finite data sets such as modular addition, whose
whole training set is smaller), and the best repetition is reported (the least disturbed
by other work on the machine) next to the median.  Tokens are ``n * T`` of the returned
``inputs`` (padding included).  Speeds are measured numbers: they are printed, never
asserted by tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from tasks.registry import get_task_class, make_task, task_names

TARGET_TOKENS_PER_S: dict[str, float] = {
    "mqar": 20e6, "flipflop": 20e6, "needle": 20e6, "induction": 20e6, "modular_addition": 20e6,
    "multiplication": 5e6, "state_tracking": 5e6,
}
"""The generation speed each probe should reach on a 2-core CPU (tokens per second)."""


def _one_rep(task: Any, split: str, n_tokens: int, seed: int) -> tuple[float, int, int, int]:
    """Seconds, tokens, rows and T of one repetition (>= n_tokens tokens)."""
    finite = getattr(type(task), "finite", False)
    tokens = rows = calls = T = 0
    start = time.perf_counter()
    while tokens < n_tokens:
        if finite:
            data = task.generate(split, seed=seed + calls)
        else:
            T_guess = T or _probe_len(task, split)
            data = task.generate(split, n=max(1, -(-(n_tokens - tokens) // T_guess)), seed=seed + calls)
        T = data.inputs.shape[1]
        rows += data.inputs.shape[0]
        tokens += data.inputs.numel()
        calls += 1
    return time.perf_counter() - start, tokens, rows, T


def _probe_len(task: Any, split: str) -> int:
    return task.generate(split, n=1).inputs.shape[1]


def bench_probes(preset: str = "paper", n_tokens: int = 2_000_000, reps: int = 3,
                 tasks: list[str] | None = None, split: str = "train") -> list[dict[str, Any]]:
    """Time ``generate(split)`` for every registered probe (or ``tasks``) at ``preset``.

    Returns one dict per probe: ``task, preset, split, seq_len, rows, tokens,
    tokens_per_s`` (best of ``reps``), ``median_tokens_per_s``, ``target_tokens_per_s``
    (None when the probe has none) and ``meets_target``.  A probe without the preset is
    skipped.
    """
    out = []
    for name in tasks or task_names():
        cls = get_task_class(name)
        if preset not in cls.presets or not cls.synthetic:  # text reads the user's files: nothing to generate
            continue
        task = make_task(name, preset=preset)
        _one_rep(task, split, min(n_tokens, 50_000), seed=10_000)   # warm up
        rates, last = [], (0.0, 0, 0, 0)
        for r in range(reps):
            last = _one_rep(task, split, n_tokens, seed=r * 1_000)
            rates.append(last[1] / last[0])
        target = TARGET_TOKENS_PER_S.get(name)
        best = max(rates)
        out.append({
            "task": name, "preset": preset, "split": split, "seq_len": last[3], "rows": last[2],
            "tokens": last[1], "tokens_per_s": best, "median_tokens_per_s": statistics.median(rates),
            "target_tokens_per_s": target, "meets_target": None if target is None else best >= target,
        })
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'task':<18}{'preset':<12}{'T':>6}{'tokens':>11}{'Mtok/s best':>13}{'median':>9}{'target':>8}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        tgt = "-" if r["target_tokens_per_s"] is None else f"{r['target_tokens_per_s'] / 1e6:.0f}"
        ok = "-" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO")
        lines.append(
            f"{r['task']:<18}{r['preset']:<12}{r['seq_len']:>6}{r['tokens']:>11,}"
            f"{r['tokens_per_s'] / 1e6:>13.1f}{r['median_tokens_per_s'] / 1e6:>9.1f}{tgt:>8}  {ok}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.generation_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", help="preset to time (default: paper)")
    ap.add_argument("--all-paper", action="store_true", help="also every paper-* preset (mqar's grid, 5x5, ...)")
    ap.add_argument("--tokens", type=int, default=2_000_000, help="tokens per repetition (default 2M)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tasks", nargs="*", help="only these probes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = bench_probes(args.preset, args.tokens, args.reps, args.tasks)
    if args.all_paper:
        for name in args.tasks or task_names():
            for p in get_task_class(name).presets:
                if p.startswith("paper-"):
                    rows += bench_probes(p, args.tokens, args.reps, [name])
    print(format_table(rows))


if __name__ == "__main__":
    main()
