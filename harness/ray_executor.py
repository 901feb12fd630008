"""The Ray executor: a sweep's runs as Ray tasks, scheduled across a cluster.

``archbench sweep FILE --executor ray [--address auto|ray://HOST:PORT]`` sends every run to
Ray as one task with its resource request (``--num-cpus``, ``--num-gpus``; fractional GPUs
pack several runs on one card).  Each task opens the store itself (PostgreSQL for a real
cluster: every node must reach it) and trains through :func:`harness.train.train_run`, so a
run is claimed in the store exactly as a local run is: a Ray sweep and a local sweep on one
store never run one config twice, and a run that is done is skipped.

Faults.  A task whose worker process or node dies is retried by Ray (``--max-retries``,
default 2).  The retry carries the same claim token, so it takes over its dead predecessor's
claim at once (a claim from another process, without the token, waits for its heartbeat to
go stale: :mod:`harness.store.retry`); the lost attempt is appended to the run's
``attempt_log`` and its partial metrics and checkpoint are dropped.  When the retries run out,
the driver records the run as failed with Ray's error.  Killing the driver leaves the claims
of running tasks to expire; running the same command again skips what is done and redoes
the rest.

The driver prints one progress line per finished run (done / running / failed / queued, and
how many runs each node has finished) through ``on_progress``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunConfig, run_id
from harness.errors import UserError
from harness.store import Store
from harness.train import RunResult

_PASS_ENV = ("ARCHBENCH_PLUGINS", "ARCHBENCH_KERNELS", "ARCHBENCH_HEARTBEAT_S", "ARCHBENCH_STALE_AFTER_S",
             "ARCHBENCH_DB_RETRY_S", "ARCHBENCH_SLOWDOWN")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start Ray on this machine; "auto": the running cluster; ray://host:port
    num_cpus: float | None = None  # None: the sweep file's resources (default 1 CPU)
    num_gpus: float | None = None  # None: the sweep file's resources (default none)
    max_retries: int = 2

    def check(self) -> None:
        if self.num_cpus is not None and self.num_cpus <= 0:
            raise UserError(f"--num-cpus must be positive; got {self.num_cpus:g}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise UserError(f"--num-gpus must be 0 or more; got {self.num_gpus:g}")
        if self.max_retries < 0:
            raise UserError(f"--max-retries must be 0 or more; got {self.max_retries}")


def check_store_url(url: str, options: RayOptions) -> None:
    """A Ray cluster's workers on other machines cannot share one SQLite file: refuse it."""
    if url.startswith("sqlite") and options.address not in (None, "local"):
        raise UserError(f"a Ray cluster's workers cannot share the SQLite file {url}; give --db a "
                        f"PostgreSQL URL every node reaches (see README, \"Running on a cluster\")")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'archbench[ray]'") from None
    return ray


def _train_task(cfg_json: dict, url: str, sweep: str | None, checkpoint_dir: str, retry_failed: bool,
                token: str, threads: int) -> tuple[RunResult, str]:
    """One run on a Ray worker: its own store connection, the same claim protocol as a local run."""
    import torch

    from harness.plugins import load_plugins
    from harness.train import train_run
    from kernels.cpu_memory import keep_freed_memory

    load_plugins()  # the driver exported its plugins in ARCHBENCH_PLUGINS
    keep_freed_memory()
    torch.set_num_threads(threads)
    store = Store(url, wait=True)
    try:
        result = train_run(RunConfig(**cfg_json), store, sweep=sweep, checkpoint_dir=checkpoint_dir,
                           progress=False, retry_failed=retry_failed, token=token)
    finally:
        store.close()
    return result, socket.gethostname()


def run_sweep_ray(configs: list[RunConfig], store: Store, *, sweep: str | None, options: RayOptions,
                  checkpoint_dir: str | Path = "checkpoints", retry_failed: bool = False,
                  on_result: Callable[[RunResult, RunConfig], None] | None = None,
                  on_progress: Callable[[str], None] | None = None) -> list[RunResult]:
    """Run ``configs`` as Ray tasks into ``store`` (already holding them as ``queued``)."""
    options.check()
    cpus = 1.0 if options.num_cpus is None else options.num_cpus
    gpus = 0.0 if options.num_gpus is None else options.num_gpus
    ray = _ray()
    check_store_url(store.url, options)
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    try:
        ray.init(address=None if options.address in (None, "local") else options.address,
                 ignore_reinit_error=True, log_to_driver=False, runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot reach the Ray cluster at {options.address!r} ({e}); start it with "
                        f"`ray start --head` or pass --address") from None
    task = ray.remote(_train_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=options.max_retries,
                                           retry_exceptions=False)
    threads = max(1, int(cpus))
    pending: dict[Any, RunConfig] = {}
    for cfg in configs:
        ref = task.remote(cfg.model_dump(mode="json"), store.url, sweep, str(checkpoint_dir), retry_failed,
                          uuid.uuid4().hex, threads)
        pending[ref] = cfg
    results: list[RunResult] = []
    placement: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cfg = pending.pop(ref)
                try:
                    result, host = ray.get(ref)
                except ray.exceptions.RayError as e:  # retries exhausted, or the task itself raised
                    result, host = _record_lost(store, cfg, e, options.max_retries), "?"
                results.append(result)
                placement[host] += 1
                counts[result.status.split(":")[0]] += 1
                if on_result:
                    on_result(result, cfg)
                if on_progress:
                    on_progress(_progress_line(counts, len(pending), store, sweep, placement))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return results


def _record_lost(store: Store, cfg: RunConfig, e: BaseException, retries: int) -> RunResult:
    rid = run_id(cfg)
    error = (f"the Ray task failed after {retries} retries: {type(e).__name__}: "
             f"{' '.join(str(e).split())[:2000]}")
    store.record_failure(rid, error)
    return RunResult(rid, "failed", error=error)


def _progress_line(counts: Counter[str], left: int, store: Store, sweep: str | None,
                   placement: Counter[str]) -> str:
    running = store.status_counts(sweep=sweep).get("running", 0)
    nodes = ", ".join(f"{h} {n}" for h, n in sorted(placement.items()))
    finished = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return f"ray: {finished}; {min(running, left)} running, {max(0, left - running)} queued; finished per node: {nodes}"
