"""Plugins: user modules that register mixers, tasks or kernels before a command runs.

A plugin is a Python file (``my_mixer.py``) or an importable module name
(``mylab.archs``); importing it runs its ``@register_mixer`` / ``@register_task`` /
``@register_kernel`` decorators.  Plugins come from three places, in this order:

- the ``ARCHBENCH_PLUGINS`` environment variable (entries separated by ``os.pathsep``),
- a sweep file's ``plugins:`` list (file paths relative to the sweep file),
- ``--plugin`` on the command line.

Installed packages use the ``archbench.mixers`` / ``archbench.tasks`` entry-point groups
instead and need none of this.  :func:`load_plugins` also writes the resolved list back to
``ARCHBENCH_PLUGINS``, so the worker processes of a sweep import the same plugins.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from harness.errors import UserError

ENV = "ARCHBENCH_PLUGINS"
_loaded: set[str] = set()


def _resolve(spec: str, base_dir: Path | None) -> str:
    """An absolute file path for file plugins; module names unchanged."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        path = path.resolve()
        if not path.is_file():
            raise UserError(f"plugin file {spec!r} not found (looked at {path}); "
                            "give a path to a .py file or an importable module name")
        return str(path)
    return spec


def _import(spec: str) -> None:
    try:
        if spec.endswith(".py"):
            name = f"archbench_plugin_{Path(spec).stem}_{hashlib.sha1(spec.encode()).hexdigest()[:8]}"
            module_spec = importlib.util.spec_from_file_location(name, spec)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except UserError:
        raise
    except ModuleNotFoundError as e:
        raise UserError(f"plugin {spec!r} could not be imported ({e}); install it or give the path "
                        "to its .py file") from None
    except Exception as e:  # the plugin's own bug: name it, with its message
        raise UserError(f"plugin {spec!r} failed while importing: {type(e).__name__}: {e}") from None


def load_plugins(specs: Iterable[str] = (), base_dir: str | Path | None = None) -> list[str]:
    """Import the plugins from ``ARCHBENCH_PLUGINS`` and ``specs``; returns all loaded so far."""
    base = Path(base_dir) if base_dir is not None else None
    env = [s for s in os.environ.get(ENV, "").split(os.pathsep) if s]
    wanted = [_resolve(s, None) for s in env] + [_resolve(s, base) for s in specs]
    for spec in wanted:
        if spec not in _loaded:
            _import(spec)
            _loaded.add(spec)
    merged = list(dict.fromkeys(env + wanted))
    if merged:
        os.environ[ENV] = os.pathsep.join(merged)
    return merged


def print_plugin_warnings(stream=None) -> None:  # noqa: ANN001
    """Show every :class:`~archbench.registry.PluginWarning` (an installed plugin that failed to
    load) as one ``warning: ...`` line on stderr, without Python's file and source line; other
    warnings keep the default display.  The CLI calls this once at start-up."""
    import warnings

    from archbench.registry import PluginWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, PluginWarning):
            print(f"warning: {message}", file=stream or file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", PluginWarning)  # every broken plugin, each time it is skipped
