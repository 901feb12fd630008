"""The results store: every run, metric, checkpoint, evaluation and kernel benchmark.

``Store(url)`` opens (and, for writers, migrates) a database; its methods are the only
way the rest of archbench writes.  Every write is one transaction, so a crash leaves the
store as it was before the write or after it, never in between.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from harness.store import engine as _engine
from harness.errors import UserError
from harness.store.retry import retry_window, stale_after, transient_retry
from harness.store.schema import (
    FINISHED, RUN_STATUSES, BenchmarkScore, Checkpoint, Environment, Evaluation, KernelBenchmark, Metric, ProbeBenchmark, Run, utcnow,
)

__all__ = [
    "RUN_STATUSES", "BenchmarkScore", "Checkpoint", "Environment", "Evaluation", "KernelBenchmark", "Metric", "Run",
    "Store", "resolve_url",
]

resolve_url = _engine.resolve_url


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    def __init__(self, url: str | None = None, *, readonly: bool = False, wait: bool = False) -> None:
        """Open the store at ``url``.  ``wait``: a server that cannot be reached yet (restarting) is
        tried again for up to :func:`~harness.store.retry.retry_window` seconds (sweep workers)."""
        self.url = resolve_url(url)
        self.readonly = readonly
        deadline = time.monotonic() + (retry_window() if wait and not self.url.startswith("sqlite") else 0.0)
        while True:
            try:
                self.engine = _engine.create(self.url, readonly=readonly)
                break
            except UserError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)
        _engine.check_schema(self.engine, self.url, auto_upgrade=not readonly)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.retries = 0  # transactions run again after a transient server error (harness.store.retry)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        if self.readonly:
            with self._sessions() as s:
                yield s
            return
        with self._sessions.begin() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- environments ----------------------------------------------------------------
    @transient_retry
    def environment(self, info: dict[str, Any]) -> str:
        try:
            with self.session() as s:
                if s.get(Environment, info["id"]) is None:
                    s.add(Environment(**info))
        except IntegrityError:  # another worker recorded the same environment first
            pass
        return info["id"]

    # -- runs ------------------------------------------------------------------------
    def claim_run(self, run_id: str, fields: dict[str, Any], *, retry_failed: bool = False,
                  token: str | None = None) -> str | None:
        """Mark a run ``running`` for this process, or say why not (the reason).

        Returns ``None`` when the run is claimed, else a reason to skip it: already done,
        failed earlier (unless ``retry_failed``), or running elsewhere and alive.  A ``running``
        claim is alive when its process lives (same host) or its heartbeat is younger than
        :func:`stale_after` (another host).  Leftovers of a dead attempt (``running`` with a dead
        pid or a stale heartbeat, ``interrupted``, ``queued``), and a ``running`` claim holding
        ``token`` (an earlier attempt of the same executor task, which the executor retried
        because its worker died), are claimed again: their partial metrics and checkpoints are
        removed and how the attempt ended is appended to ``attempt_log``.

        The row is read ``FOR UPDATE`` (PostgreSQL; SQLite's write transactions are serial
        anyway), so two workers never both claim one run; two first claims of a new run race
        on its primary key, and the loser reads the winner's claim.
        """
        for _ in range(3):
            try:
                return self._claim(run_id, fields, retry_failed, token)
            except IntegrityError:  # another worker inserted the row first: read its claim
                continue
        return self._claim(run_id, fields, retry_failed, token)

    @transient_retry
    def _claim(self, run_id: str, fields: dict[str, Any], retry_failed: bool, token: str | None) -> str | None:
        host, now = socket.gethostname(), utcnow()
        with self.session() as s:
            run = s.get(Run, run_id, with_for_update=True)
            lost = None
            if run is not None:
                if run.status == "done":
                    return "done"
                if run.status in ("failed", "diverged"):
                    if not retry_failed:
                        return run.status
                    lost = f"{run.status}: {(run.error or '').strip()[-2000:]}"
                if run.status == "running" and not (run.pid == os.getpid() and run.host == host):
                    if token is not None and run.claim_token == token:
                        lost = "its worker died; the executor retried the task"
                    elif run.host == host:
                        if run.pid and _pid_alive(run.pid):
                            return f"running in process {run.pid}"
                        lost = f"process {run.pid} on {host} died"
                    else:
                        age = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else None
                        if age is not None and age < stale_after():
                            return f"running on {run.host} (heartbeat {age:.0f} s ago)"
                        lost = (f"no heartbeat from {run.host} for {age:.0f} s" if age is not None
                                else f"no heartbeat from {run.host}")
                if run.status == "interrupted":
                    lost = "interrupted"
                if lost is not None and (run.attempts or 0) > 0:
                    log = list(run.attempt_log or [])
                    log.append({"attempt": run.attempts, "host": run.host, "pid": run.pid,
                                "started_at": run.started_at.isoformat() if run.started_at else None,
                                "step": run.step, "ended": lost})
                    run.attempt_log = log
                s.execute(delete(Metric).where(Metric.run_id == run_id))
                s.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id))
            else:
                run = Run(id=run_id, attempts=0, status="running", **fields)
                s.add(run)
                s.flush()  # a concurrent first claim fails here (primary key), before anything else
            for k, v in fields.items():
                setattr(run, k, v)
            run.status = "running"
            run.attempts = (run.attempts or 0) + 1
            run.pid, run.host, run.claim_token = os.getpid(), host, token
            run.started_at, run.finished_at, run.heartbeat_at = now, None, now
            run.error = run.step = run.duration_s = None
            run.val_score = run.test_score = None
        return None

    @transient_retry
    def record_failure(self, run_id: str, error: str) -> None:
        """Mark a run ``failed`` with ``error`` from outside it (an executor whose task died too
        often); a run that is done is left as it is."""
        with self.session() as s:
            run = s.get(Run, run_id, with_for_update=True)
            if run is None or run.status == "done":
                return
            run.status, run.error, run.finished_at = "failed", error, utcnow()

    @transient_retry
    def heartbeat(self, run_id: str) -> bool:
        """Refresh this process's claim on ``run_id``; ``False`` when the claim is no longer ours."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None or run.status != "running" or run.pid != os.getpid() or run.host != socket.gethostname():
                return False
            run.heartbeat_at = utcnow()
            return True

    @transient_retry
    def enqueue(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Insert ``queued`` rows for runs not yet in the store; returns how many were new."""
        n = 0
        with self.session() as s:
            for run_id, fields in rows:
                if s.get(Run, run_id) is None:
                    s.add(Run(id=run_id, status="queued", attempts=0, **fields))
                    n += 1
        return n

    @staticmethod
    def _owns(run: Run) -> bool:
        """Whether this process holds ``run``'s claim (a run never claimed, pid NULL, counts as ours)."""
        return run.pid is None or (run.pid == os.getpid() and run.host == socket.gethostname())

    @transient_retry
    def record_curve(self, run_id: str, step: int, values: Iterable[tuple[str, str, float]]) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is not None and not self._owns(run):
                return  # a dead attempt's late writes never mix into the new attempt's curve
            s.add_all(Metric(run_id=run_id, split=sp, name=n, value=v, step=step, final=False)
                      for sp, n, v in values)

    @transient_retry
    def finish_run(self, run_id: str, *, status: str, step: int | None, duration_s: float,
                   error: str | None = None, final: Iterable[tuple[str, str, float | None]] = (),
                   scores: dict[str, Any] | None = None,
                   checkpoint: tuple[str, str] | None = None,
                   kernel_paths: dict[str, str] | None = None) -> None:
        """Close a run: status, final metrics, headline scores, checkpoint and the path each
        kernel op took (``{"fox_attention": "triton"}``) in one transaction."""
        assert status in RUN_STATUSES
        with self.session() as s:
            run = s.get(Run, run_id, with_for_update=True)
            if run is None:
                raise KeyError(run_id)
            if not self._owns(run):
                return  # another attempt took the run over (this one was declared dead): its record stands
            s.add_all(Metric(run_id=run_id, split=sp, name=n, value=v, step=step or 0, final=True)
                      for sp, n, v in final)
            if checkpoint is not None:
                s.add(Checkpoint(run_id=run_id, path=checkpoint[0], sha256=checkpoint[1], step=step or 0))
            for k, v in (scores or {}).items():
                setattr(run, k, v)
            run.status, run.step, run.error = status, step, error
            run.finished_at, run.duration_s = utcnow(), duration_s
            if kernel_paths:
                run.kernel_paths = kernel_paths

    def runs_without_floor(self) -> list[tuple[str, dict[str, Any], int]]:
        """``(run id, config, seed)`` of the done runs stored before floors were (schema 0003)."""
        q = select(Run.id, Run.config, Run.seed).where(Run.status == "done", Run.floor.is_(None))
        with self.session() as s:
            return [tuple(r) for r in s.execute(q).all()]

    @transient_retry
    def set_floors(self, floors: dict[str, tuple[float, str]]) -> None:
        """Store ``run id -> (floor, strategy)`` in one transaction."""
        with self.session() as s:
            for run_id, (floor, strategy) in floors.items():
                run = s.get(Run, run_id)
                run.floor, run.floor_strategy = floor, strategy

    # -- evaluations -------------------------------------------------------------------
    @transient_retry
    def record_evaluation(self, rows: list[dict[str, Any]]) -> None:
        with self.session() as s:
            s.add_all(Evaluation(**r) for r in rows)

    @transient_retry
    def record_benchmark_scores(self, rows: list[dict[str, Any]]) -> None:
        """lm-eval scores of one ``archbench eval --lm-tasks`` call, in one transaction."""
        with self.session() as s:
            s.add_all(BenchmarkScore(**r) for r in rows)

    @transient_retry
    def add_probe_benchmarks(self, rows: list[dict[str, Any]]) -> None:
        with self.session() as s:
            s.add_all(ProbeBenchmark(**r) for r in rows)

    @transient_retry
    def add_kernel_benchmarks(self, rows: list[dict[str, Any]]) -> None:
        with self.session() as s:
            s.add_all(KernelBenchmark(**r) for r in rows)

    # -- queries -----------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        with self.session() as s:
            return s.get(Run, run_id)

    def runs(self, *, status: str | None = None, arch: str | None = None, task: str | None = None,
             sweep: str | None = None, limit: int | None = None) -> list[Run]:
        q = select(Run).order_by(Run.created_at, Run.id)
        for col, val in ((Run.status, status), (Run.arch, arch), (Run.task, task), (Run.sweep, sweep)):
            if val is not None:
                q = q.where(col == val)
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return list(s.scalars(q))

    def status_counts(self, sweep: str | None = None) -> dict[str, int]:
        q = select(Run.status, func.count()).group_by(Run.status)
        if sweep is not None:
            q = q.where(Run.sweep == sweep)
        with self.session() as s:
            return dict(s.execute(q).all())

    def metrics(self, run_id: str, final: bool | None = None) -> pd.DataFrame:
        q = select(Metric.split, Metric.name, Metric.value, Metric.step, Metric.final).where(Metric.run_id == run_id)
        if final is not None:
            q = q.where(Metric.final == final)
        with self.session() as s:
            rows = s.execute(q.order_by(Metric.step, Metric.id)).all()
        return pd.DataFrame(rows, columns=["split", "name", "value", "step", "final"])

    def score_frame(self, *, sweep: str | None = None, task: str | None = None,
                    size: str | None = None) -> pd.DataFrame:
        """One row per finished run (``done``, ``failed``, ``diverged``) with its ids, headline
        val/test scores, floor and config: the ranking's input (:func:`harness.ranking.rank`)."""
        cols = [Run.id, Run.arch, Run.arch_label, Run.size, Run.entry_id, Run.setting_id, Run.task_id,
                Run.d_model, Run.n_layers, Run.n_heads, Run.task, Run.task_setting, Run.lr, Run.seed,
                Run.sweep, Run.status, Run.metric, Run.val_score, Run.test_score, Run.chance, Run.floor,
                Run.n_params, Run.created_at, Run.finished_at, Run.config]
        q = select(*cols).where(Run.status.in_(FINISHED))
        for col, val in ((Run.sweep, sweep), (Run.task, task), (Run.size, size)):
            if val is not None:
                q = q.where(col == val)
        with self.session() as s:
            rows = s.execute(q.order_by(Run.created_at, Run.id)).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=[c.key for c in cols])

    def checkpoints(self, run_id: str) -> list[Checkpoint]:
        with self.session() as s:
            return list(s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)))
