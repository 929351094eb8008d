"""Real servers for tests and benchmarks: started on a free loopback port, stopped by their PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start(*args: str, app: str | None = None, timeout: float = 30) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m service ARGS`` (or uvicorn serving ``app``) on a free port, once /healthz answers."""
    port = free_port()
    if app is None:
        cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port), *args]
    else:
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), *args]
    env = os.environ | {"ACTIVATION_LOG_LEVEL": "warning"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@contextmanager
def running(*args: str, app: str | None = None) -> Iterator[tuple[str, int]]:
    """A server for the duration of a with-block: (base URL, PID)."""
    proc, base = start(*args, app=app)
    try:
        yield base, proc.pid
    finally:
        stop(proc)
