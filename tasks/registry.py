"""The task registry: ``@register_task`` plus the ``archbench.tasks`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

from pydantic import ValidationError

from tasks.base import Task

T = TypeVar("T", bound=type[Task])

_TASKS: dict[str, type[Task]] = {}
_entry_points_loaded = False


class UnknownTaskError(LookupError):
    """An unknown task or preset name; the message lists the known ones."""


class TaskConfigError(ValueError):
    """Task parameters that fail validation; the message names the constraint."""


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: make a :class:`Task` subclass available by ``name``."""

    def deco(cls: T) -> T:
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is already registered by {_TASKS[name].__module__}")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="archbench.tasks"):
        ep.load()


def task_names() -> list[str]:
    _load_entry_points()
    return sorted(_TASKS)


def get_task_class(name: str) -> type[Task]:
    _load_entry_points()
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))} (see `archbench tasks`)"
        ) from None


def resolve_task_params(name: str, params: dict[str, Any] | None = None,
                        preset: str | None = None) -> dict[str, Any]:
    """The fully resolved config of a task as a plain dict (preset, then explicit params)."""
    cls = get_task_class(name)
    merged: dict[str, Any] = {}
    if preset is not None:
        if preset not in cls.presets:
            known = ", ".join(sorted(cls.presets)) or "none"
            raise UnknownTaskError(f"task {name!r} has no preset {preset!r}; its presets: {known}")
        merged.update(cls.presets[preset])
    merged.update(params or {})
    try:
        return cls.Config(**merged).model_dump()
    except ValidationError as e:
        raise TaskConfigError(f"invalid settings for task {name!r}: {_first_error(e)}") from None


def make_task(name: str, params: dict[str, Any] | None = None, preset: str | None = None) -> Task:
    cls = get_task_class(name)
    return cls(cls.Config(**resolve_task_params(name, params, preset)))


def _first_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
