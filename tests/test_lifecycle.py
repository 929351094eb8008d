"""Graceful operation: overload, drain on SIGTERM, a killed worker replaced (real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import Server, ServerState
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service import lifecycle
from tests import servers
from tests.test_api import assert_problem


async def test_readiness_turns_503_while_draining(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).status_code == 200
    lifecycle.DRAINING.set()
    try:
        r = await client.get("/readyz")
        assert_problem(r, 503, "", "draining")
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
    finally:
        lifecycle.DRAINING.clear()


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        servers.stop(proc)


def _slow_request(base: str, elements: int) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    """f'' of gelu_tanh on ``elements`` numbers (npy), sent from a started thread; its response lands in the dict."""
    body = io.BytesIO()
    np.save(body, np.linspace(-5, 5, elements))
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["r"] = httpx.post(
            f"{base}/derivative?activation=gelu_tanh&order=2",
            content=body.getvalue(),
            headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
            timeout=60,
        )

    thread = threading.Thread(target=send)
    thread.start()
    return thread, result


def test_sigterm_lets_the_request_in_flight_finish(stop: list[subprocess.Popen[bytes]]) -> None:
    proc, base = servers.start("--drain-seconds", "20")
    stop.append(proc)
    thread, result = _slow_request(base, 1_000_000)
    time.sleep(0.15)  # the request is being read and computed
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(timeout=30) == 0
    thread.join(timeout=30)
    assert result["r"].status_code == 200
    assert np.load(io.BytesIO(result["r"].content)).size == 1_000_000
    assert time.monotonic() - started < 20


def test_a_request_past_the_drain_timeout_gets_503_and_the_process_exits_on_time(
    stop: list[subprocess.Popen[bytes]],
) -> None:
    # f'' of gelu_tanh on 16M elements computes for seconds; the drain allows one.
    env = {"ACTIVATION_MAX_BODY_BYTES": str(256 * 2**20), "ACTIVATION_MEMORY_BUDGET_BYTES": str(2**31)}
    proc, base = servers.start("--drain-seconds", "1", env=env)
    stop.append(proc)
    thread, result = _slow_request(base, 16_000_000)
    time.sleep(1.0)  # sent and being computed
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert proc.wait(timeout=30) == 0
    # It exits when the drain ends, not when the computation would have (seconds later):
    # the computation's thread is abandoned, and the request is told to retry.
    assert time.monotonic() - signalled < 3
    thread.join(timeout=30)
    assert_problem(result["r"], 503, "", "ACTIVATION_DRAIN_SECONDS", "retry")
    assert result["r"].headers["retry-after"] == "1"


def test_a_killed_worker_is_replaced(stop: list[subprocess.Popen[bytes]]) -> None:
    proc, base = servers.start("--workers", "2")
    stop.append(proc)
    deadline = time.monotonic() + 20
    while len(servers.workers(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = servers.workers(proc.pid)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    failures = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{base}/activate", json={"activation": "relu", "x": [1.0]}, timeout=5)
            failures += r.status_code != 200
        except httpx.TransportError:
            failures += 1
        now = servers.workers(proc.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    assert len(servers.workers(proc.pid)) == 2
    assert victim not in servers.workers(proc.pid)
    # The surviving worker kept answering; the closed socket may cost the odd request.
    assert failures <= 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_the_gate_refuses_new_connections_and_keeps_queued_ones() -> None:
    with socket.socket() as listener:
        listener.bind((servers.HOST, 0))
        listener.listen(8)
        address = listener.getsockname()
        queued = socket.create_connection(address)
        queued.sendall(b"sent before the gate")
        assert lifecycle.accept_queue(listener) == 1
        assert lifecycle.close_gate(listener)
        late = socket.socket()
        late.settimeout(0.5)
        with pytest.raises(TimeoutError):  # its SYN is dropped; retried after the listener closes, refused
            late.connect(address)
        conn, _ = listener.accept()  # what was queued stays, and talks both ways
        assert conn.recv(64) == b"sent before the gate"
        conn.sendall(b"answer")
        assert queued.recv(64) == b"answer"
        assert lifecycle.accept_queue(listener) == 0
        for s in (conn, queued, late):
            s.close()


def test_drain_waits_until_the_queue_is_accepted() -> None:
    with socket.socket() as listener:
        listener.bind((servers.HOST, 0))
        listener.listen(8)
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        accepted: list[socket.socket] = []
        threading.Timer(0.2, lambda: accepted.extend(listener.accept()[0] for _ in clients)).start()
        lifecycle.drain_listeners([listener], timeout=10)
        assert len(accepted) == 3
        assert lifecycle.accept_queue(listener) == 0
        for s in clients + accepted:
            s.close()


@pytest.mark.parametrize(
    ("workers", "keepalive"),
    [("1", False), ("1", True), ("2", False)],
    ids=["connection-per-request", "keep-alive", "two-workers"],
)
def test_sigterm_under_load_loses_no_accepted_request(
    stop: list[subprocess.Popen[bytes]], workers: str, keepalive: bool
) -> None:
    # With --workers the supervisor owns the listening socket and drains it; single, the server.
    proc, base = servers.start("--drain-seconds", "20", "--workers", workers)
    stop.append(proc)
    threading.Timer(1.0, proc.send_signal, args=(signal.SIGTERM,)).start()
    outcome = servers.hammer(base, until=lambda: proc.poll() is not None, limit=20.0, keepalive=keepalive)
    assert proc.wait(timeout=30) == 0
    assert outcome["ok"] > 100  # it was under load when the signal came
    # Requests after the listener closed are refused (never accepted); none may be lost.
    assert set(outcome) <= {"ok", "refused"}, outcome


def test_readiness_turns_503_and_an_idle_connection_is_still_answered(
    stop: list[subprocess.Popen[bytes]],
) -> None:
    proc, base = servers.start("--drain-seconds", "20")
    stop.append(proc)
    # Two keep-alive connections: one polls readiness, the other stays idle until the drain.
    with httpx.Client(base_url=base, timeout=10) as poller, httpx.Client(base_url=base, timeout=10) as idle:
        assert poller.get("/readyz").status_code == 200
        assert idle.get("/healthz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (r := poller.get("/readyz")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert_problem(r, 503, "", "draining")
        # The server then closes its listener and its idle connections, giving each 1 s
        # for a request already on its way: this one, sent within that second, is answered.
        time.sleep(0.3)
        r = idle.post("/activate", json={"activation": "relu", "x": [-1.0, 2.0]})
        assert r.status_code == 200
        assert r.json()["y"] == [0.0, 2.0]
    assert proc.wait(timeout=30) == 0


# -- workers and their supervisor ---------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Process ``pid`` exists and has not exited (a zombie has)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _kill_worker(pid: int) -> None:
    """SIGKILL a worker left behind by a failed test, if ``pid`` still is one (not a reused PID)."""
    with contextlib.suppress(OSError):
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _two_workers(proc: subprocess.Popen[bytes]) -> set[int]:
    deadline = time.monotonic() + 20
    while len(servers.workers(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = servers.workers(proc.pid)
    assert len(workers) == 2
    return workers


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_exit_when_the_supervisor_is_killed(stop: list[subprocess.Popen[bytes]]) -> None:
    proc, base = servers.start("--workers", "2")
    stop.append(proc)
    port = int(base.rsplit(":", 1)[1])
    workers = _two_workers(proc)
    try:
        proc.kill()  # SIGKILL: the supervisor cannot stop its workers itself
        proc.wait(timeout=10)
        killed = time.monotonic()
        while any(map(_alive, workers)) and time.monotonic() < killed + 10:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "workers outlived their supervisor"
        assert time.monotonic() - killed < 5
        with socket.socket() as sock:  # nobody serves the port any more: a new server can take it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((servers.HOST, port))
            sock.listen()
    finally:
        for pid in workers:
            _kill_worker(pid)


def _in_flight(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("activation_in_flight_requests")
    )


def _owners(server_port: int, client_ports: list[int], pids: set[int]) -> dict[int, int]:
    """Which of ``pids`` holds the server end of each loopback connection from ``client_ports``: port -> pid."""
    inodes: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) in client_ports:
            inodes[f"socket:[{inode}]"] = int(remote.split(":")[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if (target := os.readlink(fd)) in inodes:
                    owners[inodes[target]] = pid
    return owners


def test_a_killed_worker_leaves_the_in_flight_gauge(stop: list[subprocess.Popen[bytes]]) -> None:
    # Requests whose body never comes stay in flight (as long as --body-timeout allows).
    proc, base = servers.start("--workers", "2", "--body-timeout", "60", "--request-timeout", "120")
    stop.append(proc)
    port = int(base.rsplit(":", 1)[1])
    workers = _two_workers(proc)
    clients = [socket.create_connection((servers.HOST, port)) for _ in range(6)]
    try:
        for sock in clients:
            sock.sendall(
                b"POST /activate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
        deadline = time.monotonic() + 10
        while _in_flight(base) != len(clients) + 1 and time.monotonic() < deadline:  # and /metrics itself
            time.sleep(0.05)
        assert _in_flight(base) == len(clients) + 1
        owners = _owners(port, [sock.getsockname()[1] for sock in clients], workers)
        assert len(owners) == len(clients)
        victim = next(iter(owners.values()))
        held = sum(pid == victim for pid in owners.values())
        os.kill(victim, signal.SIGKILL)
        expected = len(clients) - held + 1
        deadline = time.monotonic() + 10
        while (now := _in_flight(base)) != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert now == expected, f"{now} in flight, {expected} really"
    finally:
        for sock in clients:
            sock.close()


# -- uvicorn internals ----------------------------------------------------------------------------


def test_the_uvicorn_internals_relied_on_are_there() -> None:
    """service.lifecycle subclasses uvicorn's httptools protocol, Config and supervisor.

    If this fails, uvicorn changed what they override or call: re-check
    service.lifecycle against the new version before moving the pin in pyproject.toml.
    """
    assert uvicorn.__version__.startswith("0.54."), f"uvicorn {uvicorn.__version__}: not the version tested"
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_header",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
        "pause_writing",
        "resume_writing",
        "shutdown",
        "timeout_keep_alive_handler",
        "_unset_keepalive_if_required",
        "_should_upgrade",
        "_unsupported_upgrade_warning",
        "handle_websocket_upgrade",
        "send_400_response",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"HttpToolsProtocol.{name}"
    # How the server makes a protocol, and that each worker loads the (pickled) config.
    assert list(inspect.signature(HttpToolsProtocol.__init__).parameters) == [
        "self",
        "config",
        "server_state",
        "app_state",
        "_loop",
    ]
    assert "config.http_protocol_class(" in inspect.getsource(Server.startup)
    assert "config.load()" in inspect.getsource(Server._serve)

    # The state a protocol reads and the timer it shares with uvicorn.
    async def app(scope: object, receive: object, send: object) -> None:
        pass

    limits = lifecycle.ConnectionLimits(idle_timeout=1.5)
    config = lifecycle.ServiceConfig(app, http=lifecycle.DrainingHttpProtocol, log_config=None, limits=limits)
    loop = asyncio.new_event_loop()
    try:
        protocol = lifecycle.DrainingHttpProtocol(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
    finally:
        loop.close()
    assert protocol.limits is limits
    assert protocol.timeout_keep_alive == 1.5
    for name in (
        "parser",
        "cycle",
        "pipeline",
        "transport",
        "flow",
        "timeout_keep_alive_task",
        "loop",
        "client",
    ):
        assert hasattr(protocol, name), f"HttpToolsProtocol().{name}"
    for name in ("pause_reading", "resume_reading", "pause_writing", "resume_writing", "drain"):
        assert callable(getattr(FlowControl, name, None)), f"FlowControl.{name}"
    cycle = inspect.getsource(RequestResponseCycle)
    for needle in ("self.response_complete =", "self.keep_alive =", "await self.flow.drain()"):
        assert needle in cycle, needle
    # connection_lost releases a send waiting for the transport (what the write timeout relies on).
    assert "self.flow.resume_writing()" in inspect.getsource(HttpToolsProtocol.connection_lost)
    # The supervisor's hooks, and the worker's PID.
    for name in ("keep_subprocess_alive", "handle_signals", "run"):
        assert callable(getattr(Multiprocess, name, None)), f"Multiprocess.{name}"
    assert "self.processes" in inspect.getsource(Multiprocess.__init__)
    assert isinstance(inspect.getattr_static(Process, "pid"), property)
