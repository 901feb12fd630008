"""The mixer registry: ``@register_mixer`` plus the ``archbench.mixers`` entry-point group.

A mixer is an ``nn.Module`` mapping ``[batch, time, d_model]`` to the same shape, causally.
Its class carries an ``Options`` pydantic model (``extra="forbid"``) for its own settings
and is built as ``cls(d_model, n_heads, options, layer_idx=i, n_layers=L)``.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from pydantic import BaseModel, ConfigDict
from torch import nn

from archbench.registry import Registry


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnknownArchError(LookupError):
    """An unknown architecture name; the message lists the known ones."""


M = TypeVar("M", bound=type[nn.Module])

def _is_mixer(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise TypeError(f"mixer {name!r} must be an nn.Module subclass, got {obj!r}")


MIXERS: Registry[type[nn.Module]] = Registry("architecture", "archbench.mixers", unknown=UnknownArchError,
                                             hint="see `archbench archs`", check=_is_mixer)
_DESCRIPTIONS: dict[str, str] = {}


def register_mixer(name: str, description: str = "") -> Callable[[M], M]:
    """Class decorator: make a mixer available as architecture ``name``."""

    def deco(cls: M) -> M:
        MIXERS.add(name, cls)
        if not hasattr(cls, "Options"):
            cls.Options = NoOptions
        _DESCRIPTIONS[name] = description or (cls.__doc__ or "").strip().split("\n")[0]
        return cls

    return deco


def mixer_names() -> list[str]:
    return MIXERS.names()


def mixer_description(name: str) -> str:
    get_mixer(name)
    return _DESCRIPTIONS[name]


def get_mixer(name: str) -> type[nn.Module]:
    return MIXERS.get(name)
