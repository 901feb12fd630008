"""What machine and software produced a number: stored with every run and benchmark."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from kernels.dispatch import kernel_mode


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


@lru_cache(maxsize=None)
def _static() -> dict[str, Any]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    from harness import __version__

    sha = _git("rev-parse", "HEAD")
    return {
        "git_sha": sha,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if sha else None,
        "archbench_version": __version__,
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "triton_version": triton_version,
        "platform": platform.platform(),
        "cpu_name": cpu_name(),
    }


def describe(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The environment row for work done on ``device``; ``id`` is a hash of the rest."""
    device = torch.device(device)
    info = dict(_static())
    info["device"] = device.type
    info["gpu_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    info["num_threads"] = torch.get_num_threads()
    info["kernels"] = kernel_mode()
    info["id"] = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]
    return info


def device_name(device: str | torch.device = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name() or "cpu"


