import subprocess
import sys

import pytest

from kernels.cpu_memory import keep_freed_memory

SCRIPT = r"""
import resource, sys, torch
from kernels.cpu_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
def temporaries():
    x = torch.ones(2_000_000)   # 8 MB: above glibc's default mmap threshold
    return float((x * 2).sum())
for _ in range(3):
    temporaries()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    temporaries()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, env=None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_keep_freed_memory_stops_page_faults_on_large_temporaries():
    applied, tuned = _faults("tuned")
    if applied != "True":
        pytest.skip("no glibc mallopt here")
    _, default = _faults("default")
    assert tuned * 10 < default, (tuned, default)   # ~4,000 faults per 20 calls become a handful


def test_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
