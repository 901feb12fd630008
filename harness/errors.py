"""Errors a user can cause. The CLI prints their message without a traceback and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (config, file, name, URL): the message says what is wrong and how to fix it."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type that signals bad input, from all packages."""
    from models import ArchConfigError, CheckpointError, UnknownArchError
    from tasks import TaskConfigError, UnknownTaskError

    return (UserError, ArchConfigError, CheckpointError, UnknownArchError, TaskConfigError, UnknownTaskError)
