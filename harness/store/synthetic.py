"""Synthetic results databases for the dashboard's tests, benchmark (``benchmarks/dashboard_bench.py``)
and screenshot.

``seed_database(url, ...)`` creates the store through :class:`harness.store.Store` (so the
schema is the migrated one) and fills it with bulk inserts through SQLAlchemy core: runs of
every built-in probe with the metric names each task's ``score``/``curve_metrics`` really
stores, learning curves, checkpoints, environments and kernel benchmarks over several git
shas.  The scores follow a simple model (each architecture has a skill per probe, harder
settings and learning rates away from the best one score lower, seeds add noise), so
plots look like plots.  No training happens: 10,000 runs take seconds.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from harness.store import Store
from harness.identity import identity_columns
from harness.store.schema import FINISHED, Checkpoint, Environment, KernelBenchmark, Metric, Run

# architecture label -> (mixer name, options, skill per probe in [0, 1])
ARCHS: dict[str, tuple[str, dict[str, Any], dict[str, float]]] = {
    "path-fox": ("path-fox", {}, dict(mqar=.92, flipflop=.97, needle=.90, multiplication=.70, modular_addition=.85,
                                      state_tracking=.90, induction=.95)),
    "path": ("path", {}, dict(mqar=.90, flipflop=.95, needle=.86, multiplication=.68, modular_addition=.84,
                              state_tracking=.92, induction=.93)),
    "fox": ("fox", {}, dict(mqar=.86, flipflop=.93, needle=.80, multiplication=.62, modular_addition=.82,
                            state_tracking=.55, induction=.92)),
    "transformer": ("transformer", {"rope": True}, dict(mqar=.88, flipflop=.80, needle=.75, multiplication=.60,
                                                        modular_addition=.83, state_tracking=.45, induction=.94)),
    "momentum": ("momentum", {}, dict(mqar=.84, flipflop=.82, needle=.72, multiplication=.58, modular_addition=.80,
                                      state_tracking=.47, induction=.96)),
    "deltanet": ("deltanet", {}, dict(mqar=.70, flipflop=.88, needle=.55, multiplication=.50, modular_addition=.70,
                                      state_tracking=.75, induction=.80)),
    "sliding[window=8]": ("sliding", {"window": 8}, dict(mqar=.40, flipflop=.60, needle=.30, multiplication=.45,
                                                         modular_addition=.75, state_tracking=.40, induction=.60)),
    "nope": ("nope", {}, dict(mqar=.65, flipflop=.62, needle=.45, multiplication=.40, modular_addition=.78,
                              state_tracking=.35, induction=.70)),
    "linear": ("linear", {}, dict(mqar=.45, flipflop=.70, needle=.35, multiplication=.35, modular_addition=.60,
                                  state_tracking=.50, induction=.55)),
}

SIZES = [(32, 2, 2), (64, 2, 2), (64, 4, 4), (128, 2, 4)]
LRS = [1e-3, 3e-3, 1e-2, 3e-2]
BEST_LR = 3e-3


def _setting(task: str, params: dict[str, Any], label_keys: list[str], difficulty: float) -> dict[str, Any]:
    label = f"{task}({','.join(f'{k}={params[k]}' for k in sorted(label_keys))})" if label_keys else task
    return dict(task=task, params=params, label=label, difficulty=difficulty)


def _settings() -> list[dict[str, Any]]:
    out = []
    for seq_len, pairs in ((64, 4), (64, 8), (64, 16), (128, 32)):
        out.append(_setting("mqar", dict(vocab_size=256, seq_len=seq_len, num_pairs=pairs, power_a=0.01,
                                         random_non_queries=True, ood_num_pairs=2 * pairs, ood_seq_len=2 * seq_len),
                            ["num_pairs", "seq_len", "vocab_size"], pairs / 40))
    for seq_len in (32, 64, 128):
        out.append(_setting("flipflop", dict(seq_len=seq_len, p_i=0.8, p_i_sparse=0.98, p_i_dense=0.1),
                            ["seq_len"], seq_len / 200))
    for train_len in (32, 64):
        lengths = [train_len // 2, train_len, 2 * train_len, 3 * train_len, 4 * train_len]
        out.append(_setting("needle", dict(train_len=train_len, min_len=train_len // 2, num_keys=1, num_values=1,
                                           key_vocab=32, value_vocab=32, filler_vocab=64, grid_lengths=lengths,
                                           grid_depths=[0.0, 0.25, 0.5, 0.75, 1.0]),
                            ["grid_lengths", "train_len"], train_len / 160))
    for n in (2, 3, 4):
        out.append(_setting("multiplication", dict(n_digits=n, m_digits=n, holdout_modulus=16),
                            ["m_digits", "n_digits"], (n - 1) / 4))
    for p, frac in ((47, 0.5), (113, 0.3)):
        out.append(_setting("modular_addition", dict(p=p, train_fraction=frac, val_fraction=0.1),
                            ["p", "train_fraction"], p / 300))
    for group, seq_len in (("S3", 16), ("A5", 16), ("A5", 32)):
        out.append(_setting("state_tracking", dict(group=group, seq_len=seq_len, ood_seq_len=2 * seq_len),
                            ["group", "seq_len"], (0.2 if group == "S3" else 0.5) + seq_len / 100))
    for seq_len in (32, 64):
        out.append(_setting("induction", dict(vocab_size=32, seq_len=seq_len, segment_len=8, num_repeats=1,
                                              ood_seq_len=2 * seq_len), ["seq_len"], seq_len / 200))
    return out


def _chance(task: str, params: dict[str, Any]) -> float:
    if task == "mqar":
        return 2.0 / params["vocab_size"]
    if task == "flipflop":
        return 0.5
    if task == "needle":
        return 1.0 / params["value_vocab"]
    if task == "multiplication":
        return 0.1 ** (params["n_digits"] + params["m_digits"])
    if task == "modular_addition":
        return 1.0 / params["p"]
    if task == "state_tracking":
        return 1.0 / (6 if params["group"] == "S3" else 60)
    return 1.0 / params["vocab_size"]


def _acc(skill: float, difficulty: float, lr: float, noise: float, chance: float) -> float:
    """Accuracy between chance and 1: a sigmoid of skill minus difficulty, minus an lr penalty."""
    margin = skill - difficulty - 0.12 * abs(math.log10(lr / BEST_LR)) + noise
    frac = 1.0 / (1.0 + math.exp(-10.0 * (margin - 0.25)))
    return min(1.0, max(0.0, chance + (1.0 - chance) * frac))


def _finals(task: str, p: dict[str, Any], acc: float, rng: random.Random,
            steps: int) -> list[tuple[str, str, float | None]]:
    """The final metrics this task's ``score`` (and ``curve_metrics``) would store."""
    def jitter(x: float, s: float = 0.02) -> float:
        return min(1.0, max(0.0, x + rng.gauss(0, s)))

    rows: list[tuple[str, str, float | None]] = []
    if task == "mqar":
        rows += [("val", "accuracy", jitter(acc, .01)), ("test", "accuracy", acc),
                 ("ood_pairs", "accuracy", jitter(acc * 0.7)), ("ood_len", "accuracy", jitter(acc * 0.8))]
    elif task == "flipflop":
        for split, f in (("val", 1.0), ("in_dist", 1.0), ("sparse", 0.97), ("dense", 0.93)):
            a = acc if split == "in_dist" else jitter(acc * f + (1 - f) * 0.5, 0.01)
            rows += [(split, "accuracy", a), (split, "glitch_rate", 1 - a), (split, "sequence_accuracy", a ** 8)]
    elif task == "needle":
        rows += [("val", "accuracy", jitter(acc, .01)), ("test", "accuracy", acc)]
        cells = []
        for L in p["grid_lengths"]:
            over = max(0.0, L / p["train_len"] - 1.0)
            row = []
            for d in p["grid_depths"]:
                mid = 1.0 - 0.25 * math.sin(math.pi * d)  # lost in the middle
                a = jitter(acc * mid * math.exp(-over * (1.1 - acc)))
                row.append(a)
                cells.append((f"accuracy/len={L}/depth={d:.2f}", a))
            rows.append(("grid", f"accuracy/len={L}", sum(row) / len(row)))
        rows += [("grid", name, v) for name, v in cells]
        rows.append(("grid", "accuracy", sum(v for _, v in cells) / len(cells)))
    elif task == "multiplication":
        D = p["n_digits"] + p["m_digits"]
        for split in ("val", "test"):
            per = [jitter(min(1.0, acc ** 0.25 * (1.0 - 0.6 * (1 - acc ** 0.25) * math.sin(math.pi * k / (D - 1)))))
                   for k in range(D)]
            rows += [(split, "exact_match", acc if split == "test" else jitter(acc, .01)),
                     (split, "digit_accuracy", sum(per) / D)]
            rows += [(split, f"digit_accuracy/pos={k}", v) for k, v in enumerate(per)]
    elif task == "modular_addition":
        rows += [("train", "accuracy", 1.0), ("val", "accuracy", jitter(acc, .01)), ("test", "accuracy", acc)]
        fit = int(steps * 0.1)
        grok = int(steps * (1.2 - acc)) // 100 * 100 if acc > 0.95 else None
        rows += [("curve", "steps_to_fit", fit), ("curve", "steps_to_grok", grok),
                 ("curve", "grok_delay", None if grok is None else grok - fit)]
    elif task == "state_tracking":
        T, To = p["seq_len"], p["ood_seq_len"]
        step = max(1, T // 4)
        for split, n in (("val", T), ("test", T), ("ood_len", To)):
            per = {L: jitter(acc ** (L / T)) for L in range(step, n + 1, step)}
            rows += [(split, "accuracy", sum(per.values()) / len(per)), (split, "last_accuracy", per[n])]
            rows += [(split, f"accuracy/len={L}", v) for L, v in per.items()]
    else:  # induction
        rows += [("val", "accuracy", jitter(acc, .01)), ("test", "accuracy", acc),
                 ("ood_len", "accuracy", jitter(acc * 0.85))]
    return rows


def _headline(task: str) -> tuple[str, str, str]:
    """(metric, val split, test split) as the task class declares them."""
    return {"multiplication": ("exact_match", "val", "test"),
            "flipflop": ("accuracy", "val", "in_dist")}.get(task, ("accuracy", "val", "test"))


def _curve_splits(task: str) -> tuple[str, ...]:
    return ("val", "train", "test") if task == "modular_addition" else ("val",)


def _run_id(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


ENVIRONMENTS = [
    dict(id="env0cpu000000000", git_sha="3f1c2a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39", git_dirty=False,
         archbench_version="0.1.0", python_version="3.11.7", torch_version="2.13.0+cpu", triton_version=None,
         platform="Linux-6.1-x86_64", device="cpu", cpu_name="AMD EPYC 9654", gpu_name=None, num_threads=2),
    dict(id="env1h10000000000", git_sha="9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b", git_dirty=False,
         archbench_version="0.1.0", python_version="3.11.7", torch_version="2.13.0+cu128", triton_version="3.5.0",
         platform="Linux-6.1-x86_64", device="cuda", cpu_name="Intel Xeon Platinum 8480+",
         gpu_name="NVIDIA H100 80GB HBM3", num_threads=16),
]


def seed_database(url: str, *, runs: int | None = None, metrics: int | None = None,
                  archs: list[str] | None = None, sizes: list[tuple[int, int, int]] | None = None,
                  lrs: list[float] | None = None, seeds: int = 3, tasks: list[str] | None = None,
                  curve_points: int = 12, failed_every: int = 41, kernels: bool = True,
                  sweep: str | None = "quick", seed: int = 0) -> dict[str, int]:
    """Fill a new store at ``url``; returns the row counts written.

    The grid is architectures x sizes x task settings x learning rates x seeds (seeds
    outermost), cut at ``runs`` when given.  ``metrics`` (a total) sets the number of
    learning-curve points per run instead of ``curve_points``.  Every ``failed_every``-th
    run is left failed/queued/running instead of done.
    """
    rng = random.Random(seed)
    archs = archs or list(ARCHS)
    sizes = sizes or SIZES[:1]
    lrs = lrs or [BEST_LR]
    settings = [s for s in _settings() if not tasks or s["task"] in tasks]
    grid = [(sd, lr, size, a, st) for sd in range(seeds) for lr in lrs for size in sizes for a in archs
            for st in settings]
    if runs is not None:
        if runs > len(grid):
            raise ValueError(f"the grid holds {len(grid)} runs; ask for more seeds, sizes or lrs")
        grid = grid[:runs]
    store = Store(url)  # creates and migrates the schema
    t0 = datetime(2026, 11, 1, 9, 0, 0)
    steps_total = 1000

    plan = []
    n_final = 0
    for i, (sd, lr, size, a, st) in enumerate(grid):
        task, p = st["task"], st["params"]
        status = "done"
        if failed_every and i % failed_every == failed_every - 1:
            status = ("failed", "queued", "diverged", "running")[(i // failed_every) % 4]
        noise = rng.gauss(0, 0.04)
        skill = ARCHS[a][2][task] + 0.05 * math.log2(size[0] / 32) + 0.03 * (size[1] - 2)
        chance = _chance(task, p)
        acc = _acc(skill, st["difficulty"], lr, noise, chance)
        finals = _finals(task, p, acc, rng, steps_total) if status == "done" else []
        n_final += len(finals)
        plan.append((i, sd, lr, size, a, st, status, acc, chance, finals))

    if metrics is not None:
        per_step = sum(len(_curve_splits(row[5]["task"])) for row in plan if row[6] in ("done", "diverged"))
        curve_points = max(1, math.ceil((metrics - n_final) / max(per_step, 1)))

    run_rows, metric_rows, ckpt_rows = [], [], []
    for i, sd, lr, size, a, st, status, acc, chance, finals in plan:
        task, p = st["task"], st["params"]
        d, L, H = size
        name, options, _ = ARCHS[a]
        rid = _run_id(a, size, st["label"], lr, sd)
        created = t0 + timedelta(minutes=3 * i)
        metric, val_split, test_split = _headline(task)
        fin = {(sp, n): v for sp, n, v in finals}
        n_params = int(12 * L * d * d * (1.02 if name in ("path", "path-fox", "deltanet") else 1.0)
                       + d * (p.get("vocab_size", 128)))
        config = dict(
            arch=dict(name=name, d_model=d, n_layers=L, n_heads=H, mlp="swiglu", mlp_ratio=4.0, norm="rmsnorm",
                      tie_embeddings=True, options=options),
            task=dict(name=task, preset=None, params=dict(n_train=6000, n_val=256, n_test=512, **p)),
            optimizer=dict(lr=lr, weight_decay=0.1, betas=[0.9, 0.98], eps=1e-8, warmup_steps=20, schedule="cosine",
                           min_lr_ratio=0.1, grad_clip=1.0),
            train=dict(steps=steps_total, epochs=None, batch_size=32, eval_every=steps_total // curve_points,
                       eval_examples=None, early_stop=None),
            seed=sd, device="cpu", dtype="float32")
        done = status == "done"
        run_rows.append(dict(
            id=rid, config=config, arch=name, arch_label=a, size=f"d{d}-L{L}-H{H}", task=task,
            task_setting=st["label"], lr=lr, seed=sd, sweep=sweep, status=status,
            n_params=n_params if done else None, metric=metric if done else None,
            val_score=fin.get((val_split, metric)), test_score=fin.get((test_split, metric)),
            chance=chance if done else None, floor=chance if done else None, step=steps_total if done else None,
            error="RuntimeError: CUDA error: out of memory" if status == "failed" else
            ("loss became nan at step 412" if status == "diverged" else None),
            attempts=1, pid=None, host="bench-host", environment_id=ENVIRONMENTS[0]["id"],
            created_at=created, started_at=created, finished_at=created + timedelta(seconds=95) if status in FINISHED else None,
            duration_s=95.0 + 10 * rng.random() if done else None, **identity_columns(config)))
        if not done and status != "diverged":
            continue
        for k in range(1, curve_points + 1):
            step = k * steps_total // curve_points
            frac = step / steps_total
            for split in _curve_splits(task):
                if split == "train":
                    v = min(1.0, 1.4 * frac ** 0.5)
                elif task == "modular_addition":  # test accuracy climbs late: grokking
                    grok = fin.get(("curve", "steps_to_grok"))
                    centre = (grok or 1.5 * steps_total) / steps_total
                    v = chance + (acc - chance) / (1 + math.exp(-18 * (frac - centre + 0.08)))
                else:
                    v = chance + (acc - chance) * (1 - math.exp(-4 * frac))
                metric_rows.append(dict(run_id=rid, split=split, name=metric if split != "train" else "accuracy",
                                        value=v, step=step, final=False))
        for sp, n, v in finals:
            metric_rows.append(dict(run_id=rid, split=sp, name=n, value=v, step=steps_total, final=True))
        if done:
            ckpt_rows.append(dict(run_id=rid, path=f"checkpoints/{rid}", sha256=_run_id("ckpt", rid) * 4,
                                  step=steps_total, created_at=created + timedelta(seconds=95)))

    kernel_rows = _kernel_rows(rng, t0) if kernels else []
    with store.engine.begin() as conn:
        conn.execute(insert(Environment.__table__), [dict(e, created_at=t0) for e in ENVIRONMENTS])
        for table, rows in ((Run, run_rows), (Metric, metric_rows), (Checkpoint, ckpt_rows),
                            (KernelBenchmark, kernel_rows)):
            for i in range(0, len(rows), 20_000):
                if rows[i:i + 20_000]:
                    conn.execute(insert(table.__table__), rows[i:i + 20_000])
    store.close()
    return dict(runs=len(run_rows), metrics=len(metric_rows), checkpoints=len(ckpt_rows), kernels=len(kernel_rows))


def _kernel_rows(rng: random.Random, t0: datetime) -> list[dict[str, Any]]:
    """Kernel timings on an H100 over six commits; ``path/triton`` got 35% slower at the fourth."""
    kernels = [("softmax", "sdpa", 2, 1.0), ("fox", "triton", 2, 1.6), ("path", "triton", 2, 2.4),
               ("path-fox", "triton", 2, 2.7), ("momentum", "triton", 2, 1.2), ("linear", "triton", 1, 0.9),
               ("deltanet", "triton", 1, 1.5)]
    shas = [_run_id("sha", i) * 2 + "abcdefgh" for i in range(6)]
    B, H, D = 4, 8, 64
    rows = []
    for c, sha in enumerate(shas):
        when = t0 + timedelta(days=2 * c)
        for mode, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
            for T in (512, 1024, 2048, 4096, 8192):
                flops = 4.0 * B * H * D * T * T / 2 * (1 if mode == "fwd" else 3.5)
                for op, impl, power, slow in kernels:
                    base = 0.004 * (T / 512) ** power * slow * mult * (1 + 0.3 * 512 / T)
                    if op == "path" and c >= 3:
                        base *= 1.35
                    ms = base * (1 + rng.gauss(0, 0.02))
                    tflops = flops / (ms * 1e-3) / 1e12 if power == 2 else flops / 8 / (ms * 1e-3) / 1e12
                    rows.append(dict(op=op, impl=impl, mode=mode, dtype="bfloat16", batch=B, seq_len=T, heads=H,
                                     head_dim=D, causal=True, status="ok", error=None, median_ms=ms,
                                     p20_ms=ms * 0.98, p80_ms=ms * 1.03, tokens_per_s=B * T / (ms * 1e-3),
                                     tflops=tflops, peak_fraction=tflops / 989.0,
                                     peak_mem_bytes=int(B * H * T * D * 2 * 6), device_name="NVIDIA H100 80GB HBM3",
                                     git_sha=sha, environment_id=ENVIRONMENTS[1]["id"],
                                     created_at=when + timedelta(minutes=rng.randint(0, 30))))
    return rows
