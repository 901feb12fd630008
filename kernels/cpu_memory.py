"""Keep freed memory inside the process (glibc malloc), so CPU ops stop page-faulting.

PyTorch's CPU allocator is ``malloc``.  glibc serves every block above its mmap threshold
(128 KiB, raised on the fly only up to the largest block freed so far) with a fresh
``mmap`` and unmaps it on free, and trims the heap top when it frees: an op whose
temporaries are a few MiB then touches freshly mapped pages on every call.  The chunked
PaTH forward at T=1024 took ~3,300 minor page faults and ~15% of its time that way; SDPA,
which allocates little, took none, so the faults also skewed every op-vs-SDPA ratio.
PyTorch's CPU performance guide suggests jemalloc or tcmalloc for the same reason; this
needs neither.

:func:`keep_freed_memory` raises both thresholds with ``mallopt``.  The archbench CLI (every
command, ``archbench bench`` included) and its sweep workers call it at start-up; library
users decide for themselves.  It does nothing off glibc, or when ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` are set (the user's own tuning wins).  The cost: the process's
resident memory stays near its peak instead of shrinking after large frees.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Serve blocks below ``mmap_threshold`` bytes from the heap and keep up to
    ``trim_threshold`` bytes of freed heap; True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
