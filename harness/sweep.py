"""Running many runs: in this process (``jobs=1``), on a local process pool, or on a Ray
cluster (:mod:`harness.ray_executor`).

The store is the source of truth for what is left to do: every run is first entered as
``queued``, then each worker claims it (see :meth:`Store.claim_run`).  Starting a killed
sweep again therefore skips the runs that finished and redoes the ones that did not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from harness.config import RunConfig, SweepFile, run_id
from harness.errors import UserError
from harness.store import Store
from harness.train import RunResult, arch_label, check_fits, check_task, run_fields, train_run
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


@dataclass(frozen=True)
class Executor:
    """Where a sweep's runs go: ``local`` (``jobs`` at a time in a process pool; 1: this
    process) or ``ray`` (tasks on a Ray cluster, :class:`~harness.ray_executor.RayOptions`)."""

    kind: str = "local"
    jobs: int = 1
    ray: Any = None  # harness.ray_executor.RayOptions

    def with_resources(self, resources: Any) -> "Executor":
        """This executor with a sweep file's ``resources`` where the command line gave none."""
        from dataclasses import replace

        if self.ray is None or resources is None:
            return self
        r = self.ray
        return replace(self, ray=replace(r, num_cpus=resources.num_cpus if r.num_cpus is None else r.num_cpus,
                                         num_gpus=resources.num_gpus if r.num_gpus is None else r.num_gpus))

    def describe(self) -> str:
        if self.kind == "ray":
            where = self.ray.address or "this machine"
            gpus = f", {self.ray.num_gpus:g} GPU" if self.ray.num_gpus else ""
            return f"on Ray at {where} ({self.ray.num_cpus:g} CPU{gpus} per run)"
        return f"{self.jobs} at a time"


def make_executor(kind: str = "local", jobs: int = 1, *, address: str | None = None, num_cpus: float | None = None,
                  num_gpus: float | None = None, max_retries: int = 2) -> Executor:
    """An :class:`Executor` from the command line's options; bad ones raise :class:`UserError`."""
    if kind == "local":
        return Executor("local", jobs)
    if kind != "ray":
        raise UserError(f"unknown --executor {kind!r}; use local or ray")
    from harness.ray_executor import RayOptions, _ray

    _ray()  # Ray must be installed before anything is written
    options = RayOptions(address=address, num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)
    options.check()
    return Executor("ray", jobs, options)


def run_sweep(configs: list[RunConfig], store: Store, *, sweep: str | None, jobs: int = 1,
              checkpoint_dir: str | Path = "checkpoints", progress: bool = True, retry_failed: bool = False,
              on_result: Callable[[RunResult, RunConfig], None] | None = None, executor: Executor | None = None,
              on_progress: Callable[[str], None] | None = None) -> list[RunResult]:
    for c in configs:  # a model too big for this machine stops the sweep before anything is queued
        check_fits(c)
    store.enqueue((run_id(c), run_fields(c, sweep)) for c in configs)
    if executor is not None and executor.kind == "ray":
        from harness.ray_executor import run_sweep_ray

        return run_sweep_ray(configs, store, sweep=sweep, options=executor.ray, checkpoint_dir=checkpoint_dir,
                             retry_failed=retry_failed, on_result=on_result, on_progress=on_progress)
    jobs = executor.jobs if executor is not None else jobs
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


# -- a sweep file, start to finish (``archbench sweep`` and ``archbench suite``) ----------

@dataclass
class SweepPlan:
    """A sweep file read, its plugins loaded and its grid expanded into validated configs."""

    name: str
    configs: list[RunConfig]
    resources: Any = None  # harness.config.RunResources: what each run asks of a Ray cluster

    def listing(self) -> list[str]:
        """One line per run (``--dry-run``): number, run id, architecture, size, setting, lr, seed."""
        return [f"{i:4d}  {run_id(c)}  {arch_label(c):20s} {c.arch.size_label:12s} "
                f"{c.task.setting_label}  lr={c.optimizer.lr:g} seed={c.seed}" for i, c in enumerate(self.configs, 1)]


@dataclass
class SweepOutcome:
    """What a sweep did: every run's result, the count per status, and the sweep's leaderboard."""

    name: str
    url: str
    results: list[RunResult]
    counts: dict[str, int] = field(default_factory=dict)
    leaderboard: Any = None  # harness.ranking.Leaderboard

    @property
    def summary(self) -> str:
        """``"1 diverged, 4 done, 2 skipped"``: runs per status, the skip reasons folded together."""
        return ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))


def plan_sweep(path: str | Path, plugins: list[str] | None = None) -> SweepPlan:
    """Read and expand a sweep file; every config is validated, so bad input fails here, before
    any store is opened.  Plugins named in the file load relative to it, then ``plugins``."""
    from harness.config import expand_sweep, load_sweep
    from harness.plugins import load_plugins

    path = Path(path)
    sweep = load_sweep(path)
    require_runs(sweep, path)
    load_plugins(sweep.plugins, base_dir=path.parent)  # sweep-file paths are relative to the file
    load_plugins(plugins or [])
    return SweepPlan(sweep.name, expand_sweep(sweep), sweep.resources)


def run_sweep_file(path: str | Path, db: str | None = None, *, jobs: int = 1,
                   checkpoint_dir: str | Path = "checkpoints", progress: bool = True, retry_failed: bool = False,
                   plugins: list[str] | None = None, on_start: Callable[[SweepPlan, str], None] | None = None,
                   on_result: Callable[[RunResult, RunConfig], None] | None = None, executor: Executor | None = None,
                   on_progress: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run a sweep file into the store at ``db`` and rank it.

    The file is planned (:func:`plan_sweep`) and every model checked against this machine's
    memory before the store is opened, so a mistake leaves no store behind.  ``on_start``
    hears the plan and the store's URL before the first run, ``on_result`` each run's result.
    """
    from harness.queries import scoped_leaderboard

    plan = plan_sweep(path, plugins)
    if executor is not None and executor.kind == "ray":  # the file's resources, unless flags gave them
        from harness.ray_executor import check_store_url
        from harness.store import resolve_url

        executor = executor.with_resources(plan.resources)
        check_store_url(resolve_url(db), executor.ray)  # before the store is opened
    for c in plan.configs:
        check_fits(c)
        check_task(c)
    store = Store(db)
    if on_start:
        on_start(plan, store.url)
    results = run_sweep(plan.configs, store, sweep=plan.name, jobs=jobs, checkpoint_dir=checkpoint_dir,
                        progress=progress, retry_failed=retry_failed, on_result=on_result, executor=executor,
                        on_progress=on_progress)
    counts: dict[str, int] = {}
    for r in results:
        k = r.status.split(":")[0]
        counts[k] = counts.get(k, 0) + 1
    lb, _ = scoped_leaderboard(store.score_frame(), sweep=plan.name)
    return SweepOutcome(plan.name, store.url, results, counts, lb)
