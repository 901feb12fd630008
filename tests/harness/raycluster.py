"""A real local Ray cluster for the tests: a head node and a worker node on 127.0.0.1.

:func:`local_cluster` starts the head with ``ray start --head`` and a worker node with
``ray start --address ... --block`` in a session of its own (so a test can SIGKILL the whole
node, :func:`kill_node`), waits until both nodes are alive, yields ``(address, worker)``, and stops every
Ray process at the end (``ray stop --force``), also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    exe = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not os.access(exe, os.X_OK):
        pytest.skip("Ray is not installed (pip install 'archbench[ray]')")
    return exe


RAY_TEST_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
                # Ray 2.5x turns token authentication on for a cluster a bare ray.init() starts and
                # saves the token in ~/.ray, which later `ray start` calls pick up one-sidedly: the
                # tests' clusters live on 127.0.0.1 only and run without it, explicitly
                "RAY_AUTH_MODE": "disabled"}


def ray_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **RAY_TEST_ENV, **(extra or {})}


def alive_nodes(address: str) -> int:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))" % address)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ray_env(), timeout=120)
    return int(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 and p.stdout.strip() else 0


@contextlib.contextmanager
def local_cluster(tmp: Path, head_cpus: int = 1, worker_cpus: int = 1,
                  env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    ray = _ray_cli()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--object-store-memory=100000000", "--disable-usage-stats"]
    e = ray_env(env)
    worker = None
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", f"--num-cpus={head_cpus}", "--num-gpus=0",
                        "--include-dashboard=false", *common], check=True, capture_output=True, env=e, timeout=180)
        log = open(tmp / "ray-worker-node.log", "wb")
        worker = subprocess.Popen([ray, "start", f"--address={address}", f"--num-cpus={worker_cpus}", "--num-gpus=0",
                                   "--block", *common], env=e, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deadline = time.monotonic() + 180
        while alive_nodes(address) < 2:
            assert worker.poll() is None, (tmp / "ray-worker-node.log").read_text()
            assert time.monotonic() < deadline, "the Ray worker node did not join in 180 s"
            time.sleep(1)
        yield address, worker
    finally:
        if worker is not None and worker.poll() is None:
            kill_node(worker)
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=e, timeout=120)


def node_processes(worker: subprocess.Popen) -> list[int]:
    """Every process of a worker node: its session (Ray puts each worker process in a process
    group of its own, but all stay in the session ``ray start`` was given)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, sid in (line.split() for line in out.splitlines() if line.strip())
            if int(sid) == worker.pid]


def kill_node(worker: subprocess.Popen) -> list[int]:
    """SIGKILL a worker node as if its machine died: `ray start --block`, its raylet and every
    worker process (a task's process among them), at once; returns the pids killed."""
    pids = node_processes(worker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.wait()
    return pids
