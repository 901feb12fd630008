"""Surviving a database server that drops connections, restarts or aborts a transaction.

Every write of :class:`~harness.store.Store` is one transaction, so a write that fails with a
*transient* error (the connection was lost, the server is shutting down or restarting, a
serialization failure or deadlock) is safe to run again from the start.  :func:`transient_retry`
does that, with exponential backoff (0.2 s doubling to 5 s), for up to :func:`retry_window`
seconds (``ARCHBENCH_DB_RETRY_S``, default 300: a PostgreSQL restart takes seconds), dropping
the engine's pooled connections first so the retry opens a fresh one.  Any other error, and
every SQLite error (its waits are the busy timeout's job), is raised at once.

The claim protocol's clock is here too: a worker refreshes its run's heartbeat every
:func:`heartbeat_every` seconds (``ARCHBENCH_HEARTBEAT_S``, default 15) and a ``running`` claim
from another host whose heartbeat is older than :func:`stale_after` (``ARCHBENCH_STALE_AFTER_S``,
default 120) belongs to a dead worker and is claimed again.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

F = TypeVar("F", bound=Callable[..., Any])

TRANSIENT_SQLSTATES = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "57P01", "57P02", "57P03",  # admin_shutdown, crash_shutdown, cannot_connect_now (starting up)
    "08000", "08001", "08003", "08004", "08006",  # connection exceptions
})
_TRANSIENT_WORDS = ("server closed the connection", "terminating connection", "connection refused",
                    "could not connect", "connection is closed", "the database system is starting up",
                    "the database system is shutting down", "consuming input failed", "ssl syscall error",
                    "connection timed out", "connection failed")


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def retry_window() -> float:
    return _env_seconds("ARCHBENCH_DB_RETRY_S", 300.0)


def heartbeat_every() -> float:
    return _env_seconds("ARCHBENCH_HEARTBEAT_S", 15.0)


def stale_after() -> float:
    return _env_seconds("ARCHBENCH_STALE_AFTER_S", 120.0)


def is_transient(e: BaseException) -> bool:
    """Whether ``e`` says the transaction may succeed if run again (see the module docstring)."""
    if not isinstance(e, DBAPIError):
        return False
    if e.connection_invalidated:
        return True
    orig = getattr(e, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in TRANSIENT_SQLSTATES:
        return True
    text = str(orig or e).lower()
    return any(w in text for w in _TRANSIENT_WORDS)


def transient_retry(method: F) -> F:
    """Run a :class:`Store` write again after a transient error of a server database."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
        if self.url.startswith("sqlite"):
            return method(self, *args, **kwargs)
        deadline, pause = time.monotonic() + retry_window(), 0.2
        while True:
            try:
                return method(self, *args, **kwargs)
            except DBAPIError as e:
                if not is_transient(e) or time.monotonic() + pause > deadline:
                    raise
                self.engine.dispose()  # pooled connections to a restarted server are dead
                self.retries += 1
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    return wrapper  # type: ignore[return-value]
