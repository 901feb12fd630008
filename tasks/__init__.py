"""The task registry: synthetic probes (and text language modelling) that turn (config, split,
seed) into tensors.

Importing this package registers the built-in probes.
"""

from tasks.base import IGNORE, Task, TaskConfig, TaskData, TextExample
from tasks.registry import (
    TaskConfigError,
    UnknownTaskError,
    get_task_class,
    make_task,
    register_task,
    resolve_task_params,
    task_names,
)

from tasks import (  # noqa: F401  (registers the built-in probes)
    flipflop, induction, modular_addition, mqar, multiplication, needle, state_tracking, text,
)

__all__ = [
    "IGNORE", "Task", "TaskConfig", "TaskData", "TextExample", "TaskConfigError",
    "UnknownTaskError", "get_task_class", "make_task", "register_task",
    "resolve_task_params", "task_names",
]
