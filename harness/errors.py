"""Errors a user can cause. The CLI prints their message without a traceback and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (config, file, name, URL): the message says what is wrong and how to fix it."""


class StoreNotReady(UserError):
    """The store exists or can exist, but holds nothing to show yet: no file, or no results."""


class OlderSchema(UserError):
    """The store was written by an older archbench; ``archbench db upgrade`` migrates it."""


class NewerSchema(UserError):
    """The store was written by a newer archbench; upgrade archbench to read it."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type that signals bad input, from all packages."""
    from models import ArchConfigError, CheckpointError, UnknownArchError
    from tasks import TaskConfigError, UnknownTaskError

    return (UserError, ArchConfigError, CheckpointError, UnknownArchError, TaskConfigError, UnknownTaskError)
