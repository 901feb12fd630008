"""A check that ``import kernels`` finds archbench's ``kernels/`` and not a namesake.

Hugging Face's ``kernels`` distribution (required by ``transformers`` 5.25 and later) is also
a top-level package called ``kernels``.  Installed beside archbench it hides (or, in a
site-packages install, overwrites) archbench's own, and the failure would surface far away
as an import error of some op.  :func:`check_kernels_package` turns that into one message
with the fix; ``models`` calls it before it imports any op.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_OWN = ("dispatch.py", "registry.py", "inputs.py")  # files only archbench's kernels package has


def check_kernels_package() -> None:
    spec = importlib.util.find_spec("kernels")
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is None or all((origin.parent / f).is_file() for f in _OWN):
        return
    raise ImportError(
        f"`import kernels` finds another package ({origin.parent}), not archbench's kernels/: most likely "
        f"Hugging Face's `kernels`, which transformers>=5.25 installs. Fix: pip uninstall kernels && "
        f"pip install 'transformers<5.25' (archbench's lm-eval extra pins it)")
