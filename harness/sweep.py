"""Running many runs: in this process (``jobs=1``) or on a local process pool.

The store is the source of truth for what is left to do: every run is first entered as
``queued``, then each worker claims it (see :meth:`Store.claim_run`).  Starting a killed
sweep again therefore skips the runs that finished and redoes the ones that did not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

from harness.config import RunConfig, SweepFile, run_id
from harness.errors import UserError
from harness.store import Store
from harness.train import RunResult, run_fields, train_run
from kernels.cpu_memory import keep_freed_memory

_worker_store: Store | None = None


def require_runs(sweep: SweepFile, path: Path) -> None:
    """Refuse a sweep file that holds no run config: no task under ``base``, in every
    ``include`` entry, or on a grid axis (an empty file, a name alone, a grid without a base)."""
    if ("task" in sweep.base or (sweep.include and all("task" in inc for inc in sweep.include))
            or any(axis == "task" or axis.startswith("task.") for axis in sweep.grid)):
        return
    raise UserError(f"sweep file {path} holds no run config: give it a `base:` with at least "
                    f"`task: {{name: mqar}}` (see `archbench tasks`), then grid axes to vary; see README.md")


def _init_worker(url: str, threads: int) -> None:
    global _worker_store
    from harness.plugins import load_plugins

    load_plugins()  # the parent exported its plugins in ARCHBENCH_PLUGINS
    keep_freed_memory()
    torch.set_num_threads(threads)
    _worker_store = Store(url)


def _work(cfg_json: dict, sweep: str | None, ckpt_dir: str, retry_failed: bool) -> RunResult:
    assert _worker_store is not None
    cfg = RunConfig(**cfg_json)
    return train_run(cfg, _worker_store, sweep=sweep, checkpoint_dir=ckpt_dir, progress=False,
                     retry_failed=retry_failed)


def run_sweep(configs: list[RunConfig], store: Store, *, sweep: str | None, jobs: int = 1,
              checkpoint_dir: str | Path = "checkpoints", progress: bool = True, retry_failed: bool = False,
              on_result: Callable[[RunResult, RunConfig], None] | None = None) -> list[RunResult]:
    store.enqueue((run_id(c), run_fields(c, sweep)) for c in configs)
    by_id = {run_id(c): c for c in configs}
    results: list[RunResult] = []

    def done(r: RunResult) -> None:
        results.append(r)
        if on_result:
            on_result(r, by_id[r.run_id])

    if jobs <= 1:
        for cfg in configs:
            done(train_run(cfg, store, sweep=sweep, checkpoint_dir=checkpoint_dir, progress=progress,
                           retry_failed=retry_failed))
        return results

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(store.url, threads)) as pool:
        futures = [pool.submit(_work, c.model_dump(mode="json"), sweep, str(checkpoint_dir), retry_failed)
                   for c in configs]
        try:
            for f in as_completed(futures):
                done(f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return results
