"""Run as a separate process by test_store_postgres: race other processes for the same runs.

``python _claim_racer.py URL WORKER N BARRIER_DIR``: opens the store, says it is ready
(``BARRIER_DIR/ready-WORKER``) and waits for ``BARRIER_DIR/go``, so every racer starts at
once; then tries to claim runs ``race000`` .. ``race{N-1}`` in its own shuffled order and
finishes each run it claims (a curve point, final metrics, ``done``).  It prints
``claimed ID`` for each, and last ``ok WORKER claimed=.. running=.. done=.. retries=..``:
how many claims it won, and lost to a live claim or to a finished run.
"""

import random
import sys
import time
from pathlib import Path

from harness.store import Store

url, worker, n, barrier = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
store = Store(url)
(barrier / f"ready-{worker}").touch()
deadline = time.monotonic() + 120
while not (barrier / "go").exists():
    assert time.monotonic() < deadline, "no go signal in 120 s"
    time.sleep(0.01)

ids = [f"race{i:03d}" for i in range(n)]
random.Random(worker).shuffle(ids)
lost = {"running": 0, "done": 0}
claimed = 0
for rid in ids:
    fields = dict(config={"id": rid}, arch="a", arch_label="a", size="s", task="t", task_setting="t",
                  lr=0.1, seed=0, sweep="race")
    reason = store.claim_run(rid, fields)
    if reason is not None:
        kind = "done" if reason == "done" else "running" if reason.startswith("running") else reason
        lost[kind] = lost.get(kind, 0) + 1
        continue
    claimed += 1
    print("claimed", rid, flush=True)
    store.record_curve(rid, 1, [("val", "accuracy", 0.5), ("val", "loss", 1.0)])
    store.finish_run(rid, status="done", step=2, duration_s=0.0, final=[("test", "accuracy", 0.9)],
                     scores=dict(metric="accuracy", val_score=0.5, test_score=0.9, chance=0.1, n_params=1))
print("ok", worker, f"claimed={claimed}", *(f"{k}={v}" for k, v in lost.items()), f"retries={store.retries}",
      flush=True)
