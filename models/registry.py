"""The mixer registry: ``@register_mixer`` plus the ``archbench.mixers`` entry-point group.

A mixer is an ``nn.Module`` mapping ``[batch, time, d_model]`` to the same shape, causally.
Its class carries an ``Options`` pydantic model (``extra="forbid"``) for its own settings
and is built as ``cls(d_model, n_heads, options, layer_idx=i, n_layers=L)``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, TypeVar

from pydantic import BaseModel, ConfigDict
from torch import nn


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnknownArchError(LookupError):
    """An unknown architecture name; the message lists the known ones."""


M = TypeVar("M", bound=type[nn.Module])

_MIXERS: dict[str, type[nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_entry_points_loaded = False


def register_mixer(name: str, description: str = "") -> Callable[[M], M]:
    """Class decorator: make a mixer available as architecture ``name``."""

    def deco(cls: M) -> M:
        if name in _MIXERS and _MIXERS[name] is not cls:
            raise ValueError(f"mixer {name!r} is already registered by {_MIXERS[name].__module__}")
        if not hasattr(cls, "Options"):
            cls.Options = NoOptions
        _MIXERS[name] = cls
        _DESCRIPTIONS[name] = description or (cls.__doc__ or "").strip().split("\n")[0]
        return cls

    return deco


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group="archbench.mixers"):
            ep.load()


def mixer_names() -> list[str]:
    _load_entry_points()
    return sorted(_MIXERS)


def mixer_description(name: str) -> str:
    get_mixer(name)
    return _DESCRIPTIONS[name]


def get_mixer(name: str) -> type[nn.Module]:
    _load_entry_points()
    try:
        return _MIXERS[name]
    except KeyError:
        raise UnknownArchError(
            f"unknown architecture {name!r}; known architectures: {', '.join(sorted(_MIXERS))} "
            f"(see `archbench archs`)"
        ) from None
