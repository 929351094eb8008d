"""Graceful operation: overload, drain on SIGTERM, a killed worker replaced (real processes)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from service import lifecycle
from service.app import create_app
from service.settings import Settings
from tests import servers
from tests.test_api import assert_problem


async def test_overload_answers_503_with_retry_after() -> None:
    app = create_app(Settings.model_construct(max_concurrency=2))
    app.app.active = 2  # the compute layer, behind the observability layer: two requests in progress
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/activate", json={"activation": "relu", "x": [1]})
        assert_problem(r, 503, "", "ACTIVATION_MAX_CONCURRENCY")
        assert r.headers["retry-after"] == "1"
        assert (await client.get("/healthz")).status_code == 200  # probes are never shed
        app.app.active = 1
        assert (await client.post("/activate", json={"activation": "relu", "x": [1]})).status_code == 200


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
    thread, result = _slow_request(base, 4_000_000)
    time.sleep(0.15)  # the request is being read and computed
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(timeout=30) == 0
    thread.join(timeout=30)
    assert result["r"].status_code == 200
    assert np.load(io.BytesIO(result["r"].content)).size == 4_000_000
    assert time.monotonic() - started < 20


def test_a_request_past_the_drain_timeout_gets_503_and_the_process_exits_on_time(
    stop: list[subprocess.Popen[bytes]],
) -> None:
    # f'' of gelu_tanh on 16M elements computes for seconds; the drain allows one.
    env = {"ACTIVATION_MAX_BODY_BYTES": str(256 * 2**20)}
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
