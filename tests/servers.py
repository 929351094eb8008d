"""Real servers for tests and benchmarks: started on a free loopback port, stopped by their PID."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

import httpx

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start(
    *args: str,
    app: str | None = None,
    timeout: float = 30,
    launcher: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m service ARGS`` (or uvicorn serving ``app``) on a free port, once /healthz answers.

    ``launcher`` comes before the command (it must exec it, keeping the PID);
    ``env`` adds environment variables; ``stdout`` receives the logs.
    """
    port = free_port()
    if app is None:
        cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(port), *args]
    else:
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), *args]
    cmd = [*launcher, *cmd]
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environ |= {"ACTIVATION_LOG_LEVEL": "warning", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=stdout, stderr=subprocess.PIPE)
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


def workers(pid: int) -> set[int]:
    """The worker processes of a ``--workers`` server (multiprocessing also starts a resource tracker)."""
    found = set()
    for child in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except FileNotFoundError:
            pass
    return found


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
def running(
    *args: str, app: str | None = None, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """A server for the duration of a with-block: (base URL, PID)."""
    proc, base = start(*args, app=app, env=env)
    try:
        yield base, proc.pid
    finally:
        stop(proc)


def hammer(
    base: str, until: Callable[[], bool], limit: float, threads: int = 8, keepalive: bool = False
) -> Counter[str]:
    """Valid requests from several threads until ``until()`` or ``limit`` seconds: outcomes counted.

    "refused": the connection was never accepted (expected once a server stops
    listening); "failed": a request sent to a server that accepted its
    connection and did not answer it in full.  Without ``keepalive`` each request
    goes on its own connection, over a plain socket (as fast as a client gets,
    so the server's accept queue fills); with it, over httpx's keep-alive pool.
    """
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + limit
    body = b'{"activation": "gelu", "x": [[-1.5, 0, 0.5, 2], [3, -3, 1, 0.25]]}'
    host, port = base.removeprefix("http://").split(":")
    request = (
        b"POST /activate HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (host.encode(), len(body), body)
    )

    def one_connection() -> str:
        try:
            sock = socket.create_connection((host, int(port)), timeout=30)
        except ConnectionRefusedError:
            return "refused"
        response = b""
        with sock:
            try:
                sock.sendall(request)
                while chunk := sock.recv(65536):
                    response += chunk
            except OSError:
                return "failed"
        head, _, content = response.partition(b"\r\n\r\n")
        length = next(
            (int(h[15:]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")), -1
        )
        if len(content) != length:
            return "failed"  # closed before the whole answer
        return "ok" if head.startswith(b"HTTP/1.1 200 ") else f"status {head[9:12].decode()}"

    def on_keepalive(client: httpx.Client) -> str:
        try:
            status = client.post(
                f"{base}/activate", content=body, headers={"content-type": "application/json"}
            ).status_code
        except httpx.ConnectError:
            return "refused"
        except httpx.TransportError:
            return "failed"
        return "ok" if status == 200 else f"status {status}"

    def worker() -> None:
        with contextlib.ExitStack() as stack:
            send = one_connection
            if keepalive:
                send = partial(on_keepalive, stack.enter_context(httpx.Client(timeout=30)))
            while not until() and time.monotonic() < deadline:
                key = send()
                with lock:
                    counts[key] += 1
                if key == "refused":
                    time.sleep(0.01)  # nobody listens: do not spin

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return counts
