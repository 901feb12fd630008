"""What the training loop reports to: persistence and progress, as callbacks.

The loop in :mod:`harness.train` computes and returns; everything else it does is a call
to the hooks below, so a run can be trained with no store at all (``train(cfg)``), into
the store (:class:`StoreCallback`), with a progress bar (:class:`ProgressBar`), or into
anything else a caller writes (a logger, a plot).  Every hook is optional: the loop calls
a method only where the callback has it, and :class:`Callback` is a do-nothing base.

Hooks, in the order a run calls them:

- ``on_start(run_id, steps)``: data and model are built; ``steps`` optimizer steps follow
  (fewer if the run stops early);
- ``on_progress(step, loss, acc, tokens)``: after an optimizer step (every 10th, and after
  every evaluation, where ``acc`` is the validation score; else ``None``); ``tokens``: the
  input tokens trained on so far;
- ``on_eval(step, rows)``: a learning-curve point, ``rows`` a list of (split, name, value);
- ``on_checkpoint(path, sha256, step)``: the checkpoint is written (before ``on_end``);
- ``on_end(result)``: the run's :class:`~harness.train.TrainResult`, whatever its status;
  for an interrupt, before the ``KeyboardInterrupt`` goes on to the caller.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from harness.store import Store
from kernels.dispatch import clear_paths, paths_taken

if TYPE_CHECKING:
    from harness.train import TrainResult


class Callback:
    """A do-nothing base for callbacks; subclass it and define the hooks you need."""

    def on_start(self, run_id: str, steps: int) -> None: ...

    def on_progress(self, step: int, loss: float, acc: float | None = None, tokens: int | None = None) -> None: ...

    def on_eval(self, step: int, rows: list[tuple[str, str, float]]) -> None: ...

    def on_checkpoint(self, path: str, sha256: str, step: int) -> None: ...

    def on_end(self, result: TrainResult) -> None: ...


def emit(callbacks: list[Any], hook: str, *args: Any) -> None:
    """Call ``hook`` on every callback that has it, in order."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


class StoreCallback(Callback):
    """One run's life in the store: claimed before training, its curve as it comes, and
    status, final metrics, scores and checkpoint in one transaction at the end."""

    def __init__(self, store: Store, run_id: str, fields: dict[str, Any]) -> None:
        self.store, self.run_id, self.fields = store, run_id, fields
        self.checkpoint: tuple[str, str] | None = None

    def claim(self, retry_failed: bool = False, token: str | None = None) -> str | None:
        """Take the run (``None``), or the reason another attempt keeps it (see :meth:`Store.claim_run`).
        A claimed run's heartbeat is refreshed from a background thread until the run ends."""
        reason = self.store.claim_run(self.run_id, self.fields, retry_failed=retry_failed, token=token)
        if reason is None:
            clear_paths()  # what this run's ops take is recorded at its end
            self._beat = _Heartbeat(self.store, self.run_id)
        return reason

    def on_eval(self, step: int, rows: list[tuple[str, str, float]]) -> None:
        self.store.record_curve(self.run_id, step, rows)

    def on_checkpoint(self, path: str, sha256: str, step: int) -> None:
        self.checkpoint = (path, sha256)

    def on_end(self, result: TrainResult) -> None:
        beat = getattr(self, "_beat", None)
        if beat is not None:
            beat.stop()
        paths = paths_taken()
        if result.status == "done":
            self.store.finish_run(self.run_id, status="done", step=result.step, duration_s=result.seconds,
                                  final=[(sp, n, v) for (sp, n), v in result.final.items()], scores=result.scores,
                                  checkpoint=self.checkpoint, kernel_paths=paths)
        else:  # interrupted runs keep the last finished step; failed ones none
            self.store.finish_run(self.run_id, status=result.status, step=result.step, duration_s=result.seconds,
                                  error=result.error, kernel_paths=paths)


class _Heartbeat:
    """Refreshes a claimed run's heartbeat every :func:`~harness.store.retry.heartbeat_every`
    seconds from a daemon thread, so a long step or evaluation never looks like a dead worker
    to a claimant on another host; a failed refresh is tried again at the next beat."""

    def __init__(self, store: Store, run_id: str) -> None:
        from harness.store.retry import heartbeat_every

        self.store, self.run_id, self.every = store, run_id, heartbeat_every()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{run_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.store.heartbeat(self.run_id):
                    return  # the claim is no longer ours
            except Exception:  # noqa: BLE001 - the database may be restarting; the next beat tries again
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ProgressBar(Callback):
    """A transient terminal bar: steps, loss, the last validation score and tokens per second.
    It appears once the run knows its length (``on_start``) and goes at the end of the run."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def on_start(self, run_id: str, steps: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.3f} val {task.fields[acc]} {task.fields[speed]}"),
                            TimeRemainingColumn(), transient=True)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=steps, loss=float("nan"), acc="-", speed="")
        self.t0 = time.perf_counter()

    def on_progress(self, step: int, loss: float, acc: float | None = None, tokens: int | None = None) -> None:
        if self.bar is not None:
            kw: dict[str, Any] = {"acc": f"{acc:.3f}"} if acc is not None else {}
            elapsed = time.perf_counter() - self.t0
            if tokens and elapsed > 0:
                kw["speed"] = f"{tokens / elapsed:,.0f} tok/s"
            self.bar.update(self.task, completed=step, loss=loss, **kw)

    def on_end(self, result: TrainResult) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
