"""The task registry: ``@register_task`` plus the ``archbench.tasks`` entry-point group."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from pydantic import ValidationError

from archbench.registry import Registry
from archbench.validation import format_validation_error
from tasks.base import Task

T = TypeVar("T", bound=type[Task])


class UnknownTaskError(LookupError):
    """An unknown task or preset name; the message lists the known ones."""


class TaskConfigError(ValueError):
    """Task parameters that fail validation; the message names the constraint."""


def _is_task(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        raise TypeError(f"task {name!r} must be a subclass of tasks.base.Task, got {obj!r}")


TASKS: Registry[type[Task]] = Registry("task", "archbench.tasks", unknown=UnknownTaskError,
                                       hint="see `archbench tasks`", check=_is_task)


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: make a :class:`Task` subclass available by ``name``."""

    def deco(cls: T) -> T:
        TASKS.add(name, cls)
        cls.name = name
        return cls

    return deco


def task_names() -> list[str]:
    return TASKS.names()


def get_task_class(name: str) -> type[Task]:
    return TASKS.get(name)


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
        raise TaskConfigError(f"invalid settings for task {name!r}: {format_validation_error(e)}") from None


def make_task(name: str, params: dict[str, Any] | None = None, preset: str | None = None) -> Task:
    cls = get_task_class(name)
    return cls(cls.Config(**resolve_task_params(name, params, preset)))

