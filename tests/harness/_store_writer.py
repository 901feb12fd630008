"""Run as a separate process by the store tests: hammer one store with run/metric writes.

``python _store_writer.py URL WORKER N [PACE_S]``: claims, records and finishes N runs of its
own, printing ``wrote I`` (flushed) after each when PACE_S is given, and sleeping PACE_S seconds
between runs, so a test can act while it writes (test_store_postgres restarts the server under
it).  The last line says how many transactions :class:`Store` ran again after a transient error.
"""

import sys
import time

from harness.store import Store

url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pace = float(sys.argv[4]) if len(sys.argv) > 4 else None
store = Store(url)
for i in range(n):
    rid = f"w{worker:02d}r{i:04d}"
    fields = dict(config={"w": worker, "i": i}, arch="a", arch_label="a", size="s", task="t", task_setting="t",
                  lr=0.1, seed=i, sweep="conc")
    assert store.claim_run(rid, fields) is None
    store.record_curve(rid, 1, [("val", "accuracy", 0.5), ("val", "loss", 1.0)])
    store.finish_run(rid, status="done", step=2, duration_s=0.0, final=[("test", "accuracy", 0.9)],
                     scores=dict(metric="accuracy", val_score=0.5, test_score=0.9, chance=0.1, n_params=1))
    if pace is not None:
        print("wrote", i, flush=True)
        time.sleep(pace)
print("ok", worker, f"retries={store.retries}", flush=True)
