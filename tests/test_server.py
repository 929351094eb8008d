"""`python -m service` starts a real uvicorn server that answers on loopback."""

from __future__ import annotations

import httpx


def test_server_answers_softmax(server: str) -> None:
    r = httpx.post(f"{server}/activate", json={"activation": "softmax", "x": [1, 2, 3]}, timeout=10)
    assert r.status_code == 200
    assert [round(v, 8) for v in r.json()["y"]] == [0.09003057, 0.24472847, 0.66524096]


def test_server_answers_large_request_in_a_thread(server: str) -> None:
    # Above the inline threshold: parsed and computed off the event loop.
    x = [[(i % 17) - 8.0 for i in range(100)] for _ in range(200)]
    r = httpx.post(f"{server}/derivative", json={"activation": "sigmoid", "x": x}, timeout=30)
    assert r.status_code == 200
    assert r.json()["shape"] == [200, 100]
    assert r.json()["dydx"][0][8] == 0.25


def test_server_serves_docs_and_openapi(server: str) -> None:
    assert httpx.get(f"{server}/docs", timeout=10).status_code == 200
    doc = httpx.get(f"{server}/openapi.json", timeout=10).json()
    assert doc["paths"]["/activate"]["post"]["operationId"] == "activate"


def test_server_streams_a_large_npy_result(server: str) -> None:
    import io

    import numpy as np

    x = np.random.default_rng(4).standard_normal((700, 1000))
    body = io.BytesIO()
    np.save(body, x, allow_pickle=False)
    r = httpx.post(
        f"{server}/activate?activation=tanh",
        content=body.getvalue(),
        headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
        timeout=30,
    )
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(r.content)
    # The core's correctly rounded tanh, streamed unchanged.
    from service import activations

    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), activations.get("tanh").value(x, {}))


def test_server_streams_a_large_json_result(server: str) -> None:
    x = [[(i % 23) - 11.0 for i in range(1000)] for _ in range(300)]
    r = httpx.post(f"{server}/activate", json={"activation": "relu", "x": x}, timeout=30)
    assert r.status_code == 200
    assert r.json()["y"][299][999] == max(0.0, (999 % 23) - 11.0)
