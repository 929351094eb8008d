"""Request ids, access logs and metrics."""

from __future__ import annotations

import json
import logging
import re
import sys

import httpx
import pytest

from service.observe import JsonFormatter
from tests import servers


async def test_request_id_is_generated_and_returned(client: httpx.AsyncClient) -> None:
    a = await client.get("/healthz")
    b = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", a.headers["x-request-id"])
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


async def test_request_id_from_the_caller_is_kept(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/activate", json={"activation": "relu", "x": [1]}, headers={"x-request-id": "trace-42.a"}
    )
    assert r.headers["x-request-id"] == "trace-42.a"


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"x-request-id": "bad id\twith spaces" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_error_responses_carry_the_request_id_too(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/activate", json={"activation": "rleu", "x": [1]}, headers={"x-request-id": "err-1"}
    )
    assert r.status_code == 422
    assert r.headers["x-request-id"] == "err-1"


async def test_access_log_line_is_structured_json(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, root: str
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        await client.post(
            "/activate",
            json={"activation": "heaviside", "x": [[1, 2], [3, 4]]},
            headers={"x-request-id": "log-1"},
        )
    record = next(r for r in caplog.records if r.name == "service.access")
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request"
    # The path as the client sent it (the prefix included), the route as the table knows it.
    assert (line["method"], line["path"], line["status"]) == ("POST", f"{root}/activate", 200)
    assert (line["activation"], line["elements"]) == ("step", 4)
    assert line["duration_ms"] >= 0
    assert line["level"] == "info"


def test_json_log_lines_keep_tracebacks_out() -> None:
    try:
        raise ValueError("/secret/path/in/a/traceback")
    except ValueError:
        record = logging.getLogger("service").makeRecord(
            "service", logging.ERROR, __file__, 1, "boom", (), sys.exc_info()
        )
    text = JsonFormatter().format(record)
    assert json.loads(text)["error"] == "ValueError"
    assert "/secret/path" not in text


def _count(metrics: str, activation: str, route: str = "/activate", status: str = "200") -> float:
    pattern = rf'activation_requests_total\{{activation="{activation}",route="{route}",status="{status}"\}} ([0-9.e+]+)'
    match = re.search(pattern, metrics)
    return float(match.group(1)) if match else 0.0


async def test_metrics_count_requests_by_route_status_and_activation(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    for _ in range(3):
        await client.post("/activate", json={"activation": "softsign", "x": [1.0, 2.0]})
    await client.post("/activate", json={"activation": "softsign", "x": "nope"})
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert _count(r.text, "softsign") - _count(before, "softsign") == 3
    assert _count(r.text, "softsign", status="422") - _count(before, "softsign", status="422") == 1
    for name in (
        "activation_request_duration_seconds_bucket",
        "activation_elements_total",
        "activation_in_flight_requests",
    ):
        assert name in r.text


def test_metrics_sum_over_several_workers() -> None:
    with servers.running("--workers", "2") as (base, _), httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(40):  # new connections, so both workers take some
            httpx.post(
                f"{base}/activate", json={"activation": "mish", "x": [1.0]}, timeout=10
            ).raise_for_status()
        counts = {_count(http.get("/metrics").text, "mish") for _ in range(6)}
    assert counts == {40.0}  # whichever worker answers /metrics, it sums them all
