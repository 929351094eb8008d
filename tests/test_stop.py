"""A computation whose client has left, or that runs past ACTIVATION_COMPUTE_TIMEOUT, is stopped:
its thread and memory come back within a checkpoint (a block, a vector, an element of the exact
route, an iteration of a profile, simulation or fit), not when the work would have ended.

The work here is a softmax vector-Jacobian product of (1000, 1000) numbers of mixed magnitudes,
whose vectors nearly all take the exact route: over 10 s of one thread.
"""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.settings import Settings
from tests import servers
from tests.conftest import asgi_client

#: How long the test waits for what it checks (each wait ends as soon as the check holds).
PATIENCE = 8.0


def heavy_npz() -> bytes:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1000, 1000)) * np.exp(rng.uniform(-3, 4, (1000, 1000)))
    x.flat[rng.integers(0, x.size, 40)] = np.where(np.arange(40) % 2, 700.0, -700.0)
    g = rng.standard_normal((1000, 1000)) * np.exp(rng.uniform(-3, 4, (1000, 1000)))
    out = io.BytesIO()
    np.savez(out, x=x, grad=g)
    return out.getvalue()


PATH = "/derivative/npy?activation=softmax"
NPZ = {"content-type": "application/x-npz"}


@pytest.fixture
async def quick() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.model_construct(compute_timeout=0.5)
    async with asgi_client(create_app(settings)) as c:
        yield c


async def test_a_computation_past_its_deadline_is_stopped_and_refused(quick: httpx.AsyncClient) -> None:
    r = await quick.post(PATH, content=heavy_npz(), headers=NPZ)
    # The answer comes only once the worker has raised at a checkpoint: the thread is free again.
    assert r.status_code == 503, r.text[:300]
    assert r.headers["retry-after"] == "1"
    assert "ran past 0.5 s (ACTIVATION_COMPUTE_TIMEOUT)" in r.json()["detail"]
    assert "send less work per request" in r.json()["detail"]
    # A request within the deadline is served as before.
    small = await quick.post(
        "/derivative", json={"activation": "softmax", "x": [1.0, 2.0], "grad": [1.0, 0.0]}
    )
    assert small.status_code == 200


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with servers.running("--compute-threads", "1") as (base, _):
        yield base


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {PATIENCE} s: {what}")


def test_a_client_that_leaves_gets_its_computation_stopped(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    body = heavy_npz()
    stopped = 'activation_stopped_computations_total{reason="disconnect"}'
    before = metric(server, stopped)
    idle = metric(server, "activation_in_flight_requests")  # (the /metrics request counts itself)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-npz\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        conn.sendall(head.encode() + body)
        wait_for(lambda: metric(server, "activation_in_flight_requests") > idle, "the request is at work")
        time.sleep(0.5)  # at work for a while; then the client gives up
    wait_for(lambda: metric(server, stopped) == before + 1, "the disconnect is seen")
    # The one compute thread is back long before the 10+ s the work would take: the request ended.
    wait_for(lambda: metric(server, "activation_in_flight_requests") == idle, "the computation stops")
    ok = httpx.post(f"{server}/activate", json={"activation": "gelu", "x": [1.0] * 5000}, timeout=10)
    assert ok.status_code == 200
