"""Run as a separate process by test_store: hammer one store with run/metric writes."""

import sys

from harness.store import Store

url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = Store(url)
for i in range(n):
    rid = f"w{worker:02d}r{i:04d}"
    fields = dict(config={"w": worker, "i": i}, arch="a", arch_label="a", size="s", task="t", task_setting="t",
                  lr=0.1, seed=i, sweep="conc")
    assert store.claim_run(rid, fields) is None
    store.record_curve(rid, 1, [("val", "accuracy", 0.5), ("val", "loss", 1.0)])
    store.finish_run(rid, status="done", step=2, duration_s=0.0, final=[("test", "accuracy", 0.9)],
                     scores=dict(metric="accuracy", val_score=0.5, test_score=0.9, chance=0.1, n_params=1))
print("ok", worker)
