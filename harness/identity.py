"""What makes two runs the same experiment, as hashes of the resolved config.

Three levels, each the sha256 (16 hex digits) of a canonical JSON dump of the fully
resolved run config (``RunConfig.model_dump(mode="json")``) with some keys left out:

- **run**: the whole config.  Same run id = same run; the store keeps one row per id.
- **setting**: the config without ``seed`` and ``optimizer.lr``.  Runs of one setting are
  the seeds and learning rates of one leaderboard cell; everything else (weight decay,
  steps, batch size, init, dtype, the task's knobs, ...) is equal.
- **entry**: the setting without ``task``.  One leaderboard row: an architecture at one
  size and one training recipe, scored on its task settings.

Plain dicts in, so the store's migration can compute the ids of old rows from the config
they kept, without importing models or tasks.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

SEED_AND_LR = (("seed",), ("optimizer", "lr"))
"""The keys that vary between the runs of one setting."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any) -> str:
    """16 hex digits of the sha256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def _without(config: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    for path in paths:
        node = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def run_id_of(config: dict[str, Any]) -> str:
    return digest(config)


def setting_id_of(config: dict[str, Any]) -> str:
    return digest(_without(config, SEED_AND_LR))


def entry_id_of(config: dict[str, Any]) -> str:
    return digest(_without(config, SEED_AND_LR + (("task",),)))


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"arch.d_model": 64, ...}`` (lists kept whole, empty dicts kept)."""
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for k, v in config.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: config}


def entry_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The entry's config flattened to dotted keys (``optimizer.weight_decay``), for labels
    that show what differs between entries."""
    return flatten(_without(config, SEED_AND_LR + (("task",),)))


def task_id_of(config: dict[str, Any]) -> str:
    """The task config alone: the same probe setting across entries (a leaderboard column)."""
    return digest(config.get("task"))


def identity_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The runs-table columns derived from a resolved config dump."""
    arch = config.get("arch") or {}
    return dict(entry_id=entry_id_of(config), setting_id=setting_id_of(config), task_id=task_id_of(config),
                d_model=arch.get("d_model"), n_layers=arch.get("n_layers"), n_heads=arch.get("n_heads"))
