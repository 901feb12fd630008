"""How long the dashboard's leaderboard page takes on a large store.

    python benchmarks/dashboard_bench.py                 # 10,000 runs, 200,000 metric rows
    python benchmarks/dashboard_bench.py --runs 2000 --metrics 40000 --db /tmp/small.db

Seeds an SQLite store (bulk inserts through SQLAlchemy core; no training; the metric count
is rounded up to whole learning curves), then, in fresh interpreters (``--processes``), runs
the leaderboard page's script with Streamlit's AppTest and prints the medians of:

- first page run: a cold query cache in a fresh interpreter, after Streamlit's own one-time
  set-up (the page's imports, opening the store, the query, the ranking, the table);
- cached rerun: what a user waits for when the page reruns within the cache's TTL;
- cold cache, warm interpreter: the query and ranking again, imports already done;
- filter change: a new filter value (the score frame comes from the cache, the ranking not);
- the query and the ranking alone.

Wall-clock seconds and the process's CPU seconds are both printed: on a shared machine the
wall clock also counts waiting for a core.  The target is the page's script under 2 s in a
running dashboard, the "cold cache, warm interpreter" line: the slowest a page load gets once
the server is up (the first page after a start also pays the Python imports, once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_S = 2.0
FIRST = "first page run (cold cache, page's imports included)"


def clock():  # noqa: ANN201
    return time.perf_counter(), time.process_time()


def since(t: tuple[float, float]) -> dict[str, float]:
    w, c = clock()
    return {"wall_s": w - t[0], "cpu_s": c - t[1]}


def time_page(url: str, repeats: int) -> dict[str, dict[str, float]]:
    """Run in a fresh interpreter: time the leaderboard page's script."""
    os.environ["ARCHBENCH_DB"] = url
    t = clock()
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    out = {"import streamlit (server start, not the page)": since(t)}
    t = clock()
    # Streamlit's one-time runtime set-up (it scans every installed package for components)
    # happens on the first script run in a process: in a served dashboard, before any page.
    AppTest.from_string("import streamlit as st\nst.write('warm-up')", default_timeout=600).run()
    out["first script of the process (server start, not the page)"] = since(t)

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)

    def run() -> dict[str, float]:
        t = clock()
        at.run()
        r = since(t)
        if at.exception:
            raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
        return r

    def median(samples: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(s[k] for s in samples) for k in samples[0]}

    out[FIRST] = run()
    rows = next(len(d.value) for d in at.dataframe if {"rank", "arch", "score"} <= set(d.value.columns))
    out["cached rerun"] = median([run() for _ in range(repeats)])
    cold = []
    for _ in range(repeats):
        st.cache_data.clear()
        cold.append(run())
    out["cold cache, warm interpreter"] = median(cold)
    d_models = at.multiselect(key="lb_d_model").options
    filt = []
    for i in range(repeats):
        st.cache_data.clear()
        at.multiselect(key="lb_d_model").set_value([])
        at.run()  # the score frame is cached now; the filtered ranking is not
        at.multiselect(key="lb_d_model").set_value([d_models[i % len(d_models)]])
        filt.append(run())
    out["filter change (score frame cached, ranking not)"] = median(filt)

    from harness import queries
    from harness.ranking import rank

    store = queries.open_store(url)
    q, r = [], []
    for _ in range(repeats):
        t = clock()
        df = queries.score_frame(store)
        q.append(since(t))
        t = clock()
        rank(df.drop(columns=["d_model", "n_layers"]))
        r.append(since(t))
    out["query alone (score frame)"] = median(q)
    out["ranking alone (harness.ranking.rank)"] = median(r)
    out["_rows"] = {"wall_s": rows, "cpu_s": rows}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--metrics", type=int, default=200_000, help="metric rows in all (finals + curve points)")
    ap.add_argument("--db", help="SQLite file to create (default: a temporary one); reused when it exists")
    ap.add_argument("--repeats", type=int, default=3, help="timings per interpreter (median)")
    ap.add_argument("--processes", type=int, default=3, help="fresh interpreters (median)")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    ap.add_argument("--time-only", help=argparse.SUPPRESS)  # internal: the fresh interpreter's part
    args = ap.parse_args()

    if args.time_only:
        print(json.dumps(time_page(args.time_only, args.repeats)))
        return

    from sqlalchemy import func, select

    from harness.store import Metric, Run, Store
    from harness.store.synthetic import seed_database

    path = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="archbench-bench-")) / "results.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        # 9 architectures x 4 sizes x 19 task settings x 4 learning rates x 4 seeds, cut at --runs
        n = seed_database(url, runs=args.runs, metrics=args.metrics, sizes=[(32, 2, 2), (64, 2, 2), (64, 4, 4),
                          (128, 2, 4)], lrs=[1e-3, 3e-3, 1e-2, 3e-2], seeds=4)
        print(f"seeded {path}: {n} in {time.perf_counter() - t:.1f} s")
    store = Store(url, readonly=True)
    with store.session() as s:
        n_runs = s.scalar(select(func.count()).select_from(Run))
        n_done = s.scalar(select(func.count()).select_from(Run).where(Run.status == "done"))
        n_metrics = s.scalar(select(func.count()).select_from(Metric))
    store.close()
    print(f"store: {n_runs:,} runs ({n_done:,} done), {n_metrics:,} metric rows, {path.stat().st_size / 1e6:.1f} MB")

    # every fresh interpreter is timed on its own; each figure is the median over them
    runs = []
    for _ in range(args.processes):
        proc = subprocess.run([sys.executable, __file__, "--time-only", url, "--repeats", str(args.repeats)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            sys.exit(proc.stderr + proc.stdout)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = int(runs[0]["_rows"]["wall_s"])
    res = {name: {k: statistics.median(r[name][k] for r in runs) for k in ("wall_s", "cpu_s")}
           for name in runs[0] if name != "_rows"}
    print(f"leaderboard page ({rows} rows); medians over {args.processes} fresh interpreters x {args.repeats} "
          f"repeats where repeated:")
    print(f"  {'':58s} {'wall s':>8s} {'CPU s':>8s}")
    for name, r in res.items():
        flag = ""
        if name == FIRST:
            flag = "  once per server process"
        elif not name.startswith(("import", "first script", "query", "ranking")):
            flag = "  ok (< 2 s)" if r["wall_s"] < TARGET_S else ("  over 2 s wall (CPU under 2 s)" if
                                                                    r["cpu_s"] < TARGET_S else "  OVER 2 s")
        print(f"  {name:58s} {r['wall_s']:8.3f} {r['cpu_s']:8.3f}{flag}")
    page = res["cold cache, warm interpreter"]["wall_s"]
    first = res[FIRST]["wall_s"]
    print(f"\nleaderboard page script on {n_runs:,} runs / {n_metrics:,} metric rows: {page:.2f} s wall with a cold "
          f"query cache ({'under' if page < TARGET_S else 'OVER'} the {TARGET_S:g} s target); {first:.2f} s for the "
          f"first page after the server starts (the page's one-time imports included)")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
