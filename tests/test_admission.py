"""Admission at the boundary: the route table, keys that fail closed, budgets, time limits, shedding.

Every test runs twice: served directly and behind a path prefix (the ``root`` fixture).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import asgi_client
from tests.test_api import assert_problem

RELU = {"activation": "relu", "x": [1.0, -1.0]}


def app_with(**settings: Any) -> Any:
    return create_app(Settings.model_construct(**settings))


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/activate"), ("POST", "/derivative"), ("GET", "/activations"), ("GET", "/activations/gelu"),
     ("GET", "/no-such-path"), ("GET", "/activations/")],
)  # fmt: skip
async def test_with_keys_every_route_but_the_open_ones_needs_one(root: str, method: str, path: str) -> None:
    async with asgi_client(app_with(api_keys=["k"]), root) as c:
        body = {"json": RELU} if method == "POST" else {}
        r = await c.request(method, path, **body)  # type: ignore[arg-type]
        assert_problem(r, 401, "authorization")
        keyed = await c.request(method, path, headers={"authorization": "Bearer k"}, **body)  # type: ignore[arg-type]
        assert keyed.status_code != 401


@pytest.mark.parametrize("keys", [[], ["k"]])
async def test_a_known_path_with_another_method_is_405(root: str, keys: list[str]) -> None:
    async with asgi_client(app_with(api_keys=keys), root) as c:
        r = await c.get("/activate")
        assert_problem(r, 405, "", "POST")
        assert r.headers["allow"] == "POST"


async def test_metrics_label_routes_by_their_path_under_the_prefix(root: str) -> None:
    async with asgi_client(app_with(), root) as c:
        await c.post("/derivative", json=RELU)
        await c.get("/activations/SiLU")
        await c.get("/nowhere/" + "x" * 50)
        text = (await c.get("/metrics")).text
    assert 'route="/derivative",status="200"' in text
    assert 'route="/activations/{name}",status="200"' in text
    assert 'route="other",status="404"' in text
    assert "nowhere" not in text
    assert root == "" or f'route="{root}' not in text


async def test_overload_answers_503_with_retry_after(root: str) -> None:
    app = app_with(max_concurrency=2)
    async with asgi_client(app, root) as c:
        app.pipeline.active = 2  # two requests in progress
        r = await c.post("/activate", json=RELU)
        assert_problem(r, 503, "", "ACTIVATION_MAX_CONCURRENCY")
        assert r.headers["retry-after"] == "1"
        assert (await c.get("/healthz")).status_code == 200  # probes are never shed
        app.pipeline.active = 1
        assert (await c.post("/activate", json=RELU)).status_code == 200


async def test_a_request_that_can_never_fit_the_budget_gets_413_naming_the_cheaper_form(root: str) -> None:
    # 16 MiB: a 1000-vector softmax Jacobian (1M numbers, up to 25 MB as JSON) cannot fit.
    async with asgi_client(app_with(memory_budget_bytes=16 << 20), root) as c:
        r = await c.post("/derivative", json={"activation": "softmax", "x": [0.5] * 1000})
        assert_problem(r, 413, "x", "ACTIVATION_MEMORY_BUDGET_BYTES", "grad", "Accept: application/x-npy")
        ok = await c.post(
            "/derivative", json={"activation": "softmax", "x": [0.5] * 1000, "grad": [1.0] * 1000}
        )
        assert ok.status_code == 200


async def test_a_request_that_does_not_fit_now_waits_then_gets_503(root: str) -> None:
    app = app_with(memory_budget_bytes=16 << 20, queue_timeout=0.2)
    budget = app.pipeline.budget
    async with asgi_client(app, root) as c:
        budget.used = budget.capacity - 1000  # others hold the budget
        r = await c.post("/activate", json={"activation": "relu", "x": [0.5] * 1000})
        assert_problem(r, 503, "", "memory budget")
        assert r.headers["retry-after"] == "1"

        async def release_soon() -> None:
            await asyncio.sleep(0.05)
            budget.used = 0
            budget._give(0)  # as a finishing request does

        releaser = asyncio.create_task(release_soon())
        r = await c.post("/activate", json={"activation": "relu", "x": [0.5] * 1000})
        await releaser
        assert r.status_code == 200  # it waited for the room
    assert budget.used == 0  # every reservation was given back


async def _call(
    app: Any, root: str, body_parts: list[bytes | None], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, Any], float]:
    """One raw ASGI request whose body arrives in parts; None is a pause the client never ends."""
    loop = asyncio.get_running_loop()
    messages: list[dict[str, Any]] = []
    parts = list(body_parts)

    async def receive() -> dict[str, Any]:
        part = parts.pop(0) if parts else None
        if part is None:
            await asyncio.sleep(3600)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": f"{root}/activate", "raw_path": f"{root}/activate".encode(), "root_path": root,
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip
    start = loop.time()
    await asyncio.wait_for(app(scope, receive, send), 10)
    status = messages[0]["status"]
    body = json.loads(b"".join(m.get("body", b"") for m in messages[1:]))
    return status, body, loop.time() - start


async def test_a_body_that_pauses_gets_408_and_holds_no_slot_meanwhile(root: str) -> None:
    app = app_with(body_timeout=0.3, max_concurrency=1)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    stalled = asyncio.create_task(_call(app, root, [b'{"activation": "relu", ', None], headers))
    await asyncio.sleep(0.1)
    # The stalled client holds no concurrency slot: another request is served meanwhile.
    assert app.pipeline.active == 0
    async with asgi_client(app, root) as c:
        assert (await c.post("/activate", json=RELU)).status_code == 200
    status, body, elapsed = await stalled
    assert status == 408
    assert body["errors"][0]["field"] == "body"
    assert "ACTIVATION_BODY_TIMEOUT" in body["detail"]
    assert 0.25 < elapsed < 2
    assert app.pipeline.budget.used == 0


async def test_a_large_body_sent_too_slowly_gets_408_and_gives_its_reservation_back(root: str) -> None:
    import service.pipeline

    app = app_with(body_timeout=5, min_body_rate=1_000_000)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"10000000")]
    service.pipeline.BODY_RATE_GRACE, grace = 0.2, service.pipeline.BODY_RATE_GRACE
    try:
        task = asyncio.create_task(_call(app, root, [b" " * 1000, None], headers))
        await asyncio.sleep(0.1)
        # Reserved from the body share before the first byte was read.
        assert app.pipeline.budget.body_used == 20_000_000  # the pieces and their joined copy
        status, body, elapsed = await task
    finally:
        service.pipeline.BODY_RATE_GRACE = grace
    assert status == 408
    assert "ACTIVATION_MIN_BODY_RATE" in body["detail"]
    assert elapsed < 2
    assert app.pipeline.budget.used == 0
    assert app.pipeline.budget.body_used == 0


async def test_bodies_being_received_take_at_most_half_the_budget(root: str) -> None:
    # A body that declares more than half the budget can never be received: 413 before reading it.
    app = app_with(memory_budget_bytes=16 << 20, max_body_bytes=64 << 20)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(9 << 20).encode())]
    status, body, _ = await _call(app, root, [None], headers)
    assert status == 413
    assert "ACTIVATION_MEMORY_BUDGET_BYTES" in body["detail"]
    assert "half" in body["detail"]
    # Bodies still arriving hold the body share; a request already received is served meanwhile.
    app.pipeline.budget.body_used = app.pipeline.budget.used = app.pipeline.budget.body_capacity
    async with asgi_client(app, root) as c:
        assert (await c.post("/activate", json=RELU)).status_code == 200


async def test_a_body_that_trickles_past_the_request_timeout_gets_408(root: str) -> None:
    app = app_with(body_timeout=5, request_timeout=0.3)
    headers = [(b"content-type", b"application/json")]
    trickle: list[bytes | None] = [b" "] * 3 + [None]
    status, body, elapsed = await _call(app, root, trickle, headers)
    assert status == 408
    assert "ACTIVATION_REQUEST_TIMEOUT" in body["detail"]
    assert elapsed < 2


async def test_a_reply_reports_at_most_twenty_errors_each_cut_short(root: str) -> None:
    async with asgi_client(app_with(), root) as c:
        params = {f"p{i}" + "q" * 300: 1.0 for i in range(60)}
        r = await c.post("/activate", json={"activation": "relu", "x": [1], "params": params})
        assert r.status_code == 422
        errors = r.json()["errors"]
        assert len(errors) <= 21
        assert all(len(e["field"]) <= 100 and len(e["reason"]) <= 1000 for e in errors)
        many = {f"k{i}": 1 for i in range(1000)}
        r = await c.post("/activate", json={"activation": "relu", "x": [1], **many})
        assert_problem(r, 422, "body", "1002 keys")
        assert len(r.content) < 2000


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"activation": "relu", "x": [1], "params": {"\\udc00": 1}}', 400, "body"),
        (b'{"activation": "relu", "x": [1], "x": [2]}', 422, "x"),
        ('{"activation": "relu", "x": [1]}'.encode("utf-16"), 400, "body"),
        (b'{"activation": "relu", "x": [1], "order": true}', 422, "order"),
        (b'{"activation": "relu", "x": [1], "order": 2.0}', 422, "order"),
    ],
    ids=["lone-surrogate", "repeated-key", "utf-16", "order-true", "order-float"],
)
async def test_ambiguous_bodies_are_refused_not_guessed(
    root: str, body: bytes, status: int, field: str
) -> None:
    async with asgi_client(app_with(), root) as c:
        r = await c.post("/derivative", content=body, headers={"content-type": "application/json"})
        assert_problem(r, status, field)
        assert r.headers["x-request-id"]


async def test_a_repeated_query_parameter_is_refused(root: str) -> None:
    async with asgi_client(app_with(), root) as c:
        r = await c.post(
            "/activate?activation=leaky_relu&negative_slope=0.1&negative_slope=0.2",
            content=b"\x93NUMPY",
            headers={"content-type": "application/x-npy"},
        )
        assert_problem(r, 422, "query.negative_slope", "more than once")


async def test_an_error_from_a_worker_thread_keeps_none_of_its_frames() -> None:
    # A refusal raised in a worker thread used to carry its traceback, whose frames hold the
    # request's body and buffers in a reference cycle: 45 refused 12 MB bodies held 1 GiB.
    from service.lifecycle import in_daemon_thread
    from service.problems import RequestError

    def work() -> None:
        body = bytearray(1000)  # noqa: F841  (what the frame would keep alive)
        try:
            raise ValueError("inner")
        except ValueError:
            raise RequestError.one(422, "x", "refused") from None

    with pytest.raises(RequestError) as refused:
        await in_daemon_thread(work)
    assert refused.value.__context__ is None
    frames = []
    tb = refused.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "work" not in frames


async def test_echoed_names_are_cut_to_a_hundred_characters(root: str) -> None:
    async with asgi_client(app_with(), root) as c:
        r = await c.post("/activate", json={"activation": "r" * 10_000, "x": [1], "params": {"p" * 5000: 1}})
        assert_problem(r, 422, "activation", "unknown activation")
        assert "r" * 101 not in r.text
        assert "p" * 101 not in r.text
        assert len(r.content) < 4000
