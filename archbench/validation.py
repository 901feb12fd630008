"""One way to turn a pydantic ``ValidationError`` into the one-line message a user reads.

Run configs, task settings, mixer options and checkpoint configs all report through
:func:`format_validation_error`, so the same mistake reads the same wherever it is made:
``loc.of.the.key: what is wrong``, several errors joined by ``"; "``.
"""

from __future__ import annotations

from typing import Sequence

from pydantic import ValidationError

__all__ = ["format_validation_error"]


def format_validation_error(e: ValidationError, prefix: Sequence[str | int] = ()) -> str:
    """``"a.b: message; c: message"``; ``prefix`` is put before every location (``("arch",)``
    for a section read on its own), and pydantic's ``"Value error, "`` is dropped."""
    parts = []
    for err in e.errors():
        loc_parts = (*prefix, *err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against the config reference in README.md)"
        elif err["type"] == "invalid_key":  # YAML reads 1, yes, on, ... as numbers and booleans
            loc_parts = loc_parts[:-1]
            msg = f"key {err['input']!r} is not a string (quote it in YAML: '1', 'on', 'yes')"
        loc = ".".join(str(x) for x in loc_parts)
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
