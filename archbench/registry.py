"""The one registry mechanism behind mixers, tasks and kernels.

A :class:`Registry` maps names to objects of one kind.  Objects arrive three ways:

- **decorators** in archbench's own modules and in user plugins (``@register_mixer``,
  ``@register_task``, ``@register_kernel`` are thin wrappers around :meth:`Registry.add`);
- **lazy entries**, ``"module:attr"`` strings imported on first :meth:`Registry.get`, so a
  registry can list what it offers without importing (for kernels: without importing Triton);
- **entry points** of the registry's group (``archbench.mixers``, ``archbench.tasks``,
  ``archbench.kernels``), loaded on the first lookup or listing.  Loading one imports its
  module, whose decorators register what it offers.

**One failure policy for plugins.**  An entry point (or lazy entry) that fails to load
never takes the command down: it is skipped with a :class:`PluginWarning` that names the
plugin, where it points and its error, the same words for every group, and the error is
kept in :meth:`Registry.plugin_errors`.  A *name* nobody registered is different: that is
the user's mistake, raised as the registry's lookup error with the known names listed.
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["PluginWarning", "Registry", "load_target", "plugin_warning"]

T = TypeVar("T")


class PluginWarning(RuntimeWarning):
    """A plugin (entry point or lazy entry) failed to load and was skipped."""


def plugin_warning(kind: str, name: str, where: str, error: BaseException) -> str:
    """Warn that plugin ``name`` (pointing at ``where``) failed to load; returns the error text."""
    text = f"{type(error).__name__}: {error}"
    warnings.warn(f"archbench: the {kind} plugin {name!r} ({where}) failed to load and is skipped: {text}",
                  PluginWarning, stacklevel=3)
    return text


def load_target(target: str) -> object:
    """Import ``"package.module:attr"`` (or a bare module path) and return the object."""
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


class _Lazy:
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


class Registry(Generic[T]):
    """Names -> objects of one ``kind`` (``"task"``, ``"architecture"``, ``"kernel"``).

    ``group`` is the entry-point group (``None`` for none); ``unknown`` the exception type
    raised for an unregistered name, with ``hint`` (e.g. ``"see `archbench tasks`"``) after the
    list of known names; ``check(name, obj)`` runs on every object registered or loaded and
    raises ``TypeError`` for one of the wrong kind (the base-class check).
    """

    def __init__(self, kind: str, group: str | None = None, *, plural: str | None = None,
                 unknown: type[LookupError] = LookupError, hint: str = "",
                 check: Callable[[str, object], None] | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.group = group
        self.unknown = unknown
        self.hint = hint
        self._check = check
        self._items: dict[str, T | _Lazy] = {}
        self._errors: dict[str, str] = {}
        self._entry_points_loaded = group is None

    # -- adding ------------------------------------------------------------------------------

    def add(self, name: str, obj: T, *, source: str | None = None) -> T:
        """Register ``obj`` as ``name``.  Registering the same object again is a no-op; another
        object under a taken name is an error naming who took it."""
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        if self._check is not None:
            self._check(name, obj)
        old = self._items.get(name)
        if old is not None and old is not obj and not isinstance(old, _Lazy):
            who = source_of(old)
            raise ValueError(f"{self.kind} {name!r} is already registered by {who}")
        self._items[name] = obj
        return obj

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``name`` as ``"module:attr"``, imported on first :meth:`get`."""
        if ":" not in target:
            raise ValueError(f"a lazy {self.kind} entry is 'module:attr', got {target!r}")
        self._items.setdefault(name, _Lazy(target))

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    # -- looking up ---------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import every entry point of the group once; a broken one is warned about and skipped."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            try:
                ep.load()
            except Exception as e:  # noqa: BLE001 -- one broken plugin must not take the rest down
                self._errors[ep.name] = plugin_warning(self.kind, ep.name, f"{ep.value}, entry point group "
                                                                           f"{self.group}", e)

    def plugin_errors(self) -> dict[str, str]:
        """Plugins of this registry that failed to load, with their errors."""
        self.load_entry_points()
        return dict(self._errors)

    def names(self) -> list[str]:
        """Every registered name, sorted; lazy entries are listed without being imported."""
        self.load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def peek(self, name: str) -> T | None:
        """What ``name`` holds right now, loading nothing: no entry points, no lazy import
        (``None`` when absent or still lazy).  For code that runs while registering."""
        obj = self._items.get(name)
        return None if isinstance(obj, _Lazy) else obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; the registry's lookup error lists the known names."""
        self.load_entry_points()
        try:
            obj = self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            hint = f" ({self.hint})" if self.hint else ""
            raise self.unknown(f"unknown {self.kind} {name!r}; known {self.plural}: {known}{hint}") from None
        if isinstance(obj, _Lazy):
            obj = self._resolve(name, obj)
        return obj

    def _resolve(self, name: str, lazy: _Lazy) -> T:
        loaded = load_target(lazy.target)
        if self._check is not None:
            self._check(name, loaded)
        if self._items.get(name) is lazy:  # importing it may have registered it already
            self._items[name] = loaded
        return self._items[name]  # type: ignore[return-value]

    def loaded(self) -> dict[str, T]:
        """Every entry, lazy ones imported; one that fails to import is warned about and left out."""
        out: dict[str, T] = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except Exception as e:  # noqa: BLE001
                if not isinstance(self._items.get(name), _Lazy):
                    raise
                target = self._items[name].target  # type: ignore[union-attr]
                self._errors[name] = plugin_warning(self.kind, name, target, e)
        return out


def source_of(obj: object) -> str:
    """The module that defined ``obj`` (for "already registered by ..." messages)."""
    return getattr(obj, "source", None) or getattr(obj, "__module__", None) or "?"
