"""What Ray costs over the local process pool, side by side on this machine.

Runs one suite (default: ``quick``, 162 runs) three times, each into a fresh database on one
throwaway PostgreSQL server (tests/pg.py), in this order:

1. ``pool``: the local process pool, ``-j 2``;
2. ``ray``: Ray on this machine, one node with 2 CPUs, one CPU per run (2 runs at a time);
3. ``ray-2x2``: a two-node Ray cluster on 127.0.0.1 (head and worker node, 2 CPUs each), one
   CPU per run: 2 worker processes per node, 4 runs at a time on this machine's cores.

and prints the wall time of each, the time per run, and Ray's overhead per run over the
pool: ``(T_ray - T_pool) / runs * slots`` (the seconds each run's slot is held longer).
Numbers are written to ``--out`` (JSON).  Needs PostgreSQL's server binaries and Ray.

    python benchmarks/ray_overhead.py --suite quick --out benchmarks/results/ray_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.raycluster import RAY_TEST_ENV, local_cluster  # noqa: E402
from tests.pg import throwaway_server  # noqa: E402


def _fresh_db(url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **RAY_TEST_ENV}
    env.pop("ARCHBENCH_DB", None)
    base = [sys.executable, "-m", "harness", "suite", args.suite, "-q"]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, throwaway_server() as url:
        tmp = Path(tmp)
        n_runs = len(subprocess.run(base + ["--dry-run"], cwd=tmp, env=env, capture_output=True, text=True)
                     .stdout.strip().splitlines()) - 1
        out["pool"] = _timed(base + ["-j", "2", "--db", _fresh_db(url, "pool")], tmp, env)
        print(f"pool (-j 2): {out['pool']:.1f} s", flush=True)
        out["ray"] = _timed(base + ["--executor", "ray", "--db", _fresh_db(url, "ray")],
                            tmp, env)  # ray.init on a 2-core machine: 2 CPUs
        print(f"ray (one node, 2 CPUs): {out['ray']:.1f} s", flush=True)
        with local_cluster(tmp, head_cpus=2, worker_cpus=2) as (address, _):
            out["ray-2x2"] = _timed(base + ["--executor", "ray", "--address", address, "--db",
                                            _fresh_db(url, "ray2x2")], tmp, env)
        print(f"ray (two nodes x 2 CPUs): {out['ray-2x2']:.1f} s", flush=True)
    slots = {"pool": 2, "ray": 2, "ray-2x2": 4}
    report = {"suite": args.suite, "runs": n_runs, "seconds": out,
              "seconds_per_run": {k: v / n_runs for k, v in out.items()},
              "ray_overhead_per_run_s": (out["ray"] - out["pool"]) / n_runs * slots["ray"],
              "cpu_count": os.cpu_count()}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
