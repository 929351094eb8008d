"""POST /activate and /derivative served as plain ASGI, in front of FastAPI.

FastAPI's per-request machinery (routing, dependency solving, the Request
object, exception middleware) costs about as much as a whole /healthz call;
for a 10-element activation it would be most of the time.  This layer reads
the body into one buffer sized from Content-Length, runs the same request
pipeline as the FastAPI routes (``api.compute_*``) and answers through the
same error shape.  Everything else, and the OpenAPI description of these two
operations, stays with FastAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from anyio import to_thread

from . import api
from .problems import RequestError, problem, response_for
from .schemas import ActivateRequest, DerivativeRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Compute = Callable[..., dict[str, Any]]


class ComputeEndpoints:
    """Serve the compute operations directly; pass every other request to ``app``."""

    def __init__(self, app: Any, limits: api.Limits = api.DEFAULT_LIMITS, max_concurrency: int = 64) -> None:
        self.app = app
        self.limits = limits
        self.max_concurrency = max_concurrency
        self.active = 0
        self.routes = {
            "/activate": (ActivateRequest, partial(api.compute_activate, limits=limits)),
            "/derivative": (DerivativeRequest, partial(api.compute_derivative, limits=limits)),
        }

    def __getattr__(self, name: str) -> Any:
        # openapi(), routes, state ... of the FastAPI application behind.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_concurrency:
            # Shed load rather than queue without bound; the client retries after a second.
            reason = f"busy: {self.active} requests in progress (ACTIVATION_MAX_CONCURRENCY); retry shortly"
            await problem(503, [("", reason)], {"retry-after": "1"})(scope, receive, send)
            return
        self.active += 1
        try:
            reply = await self._serve(scope, receive, *route)
        except Exception as exc:
            response = response_for(exc, f"POST {scope['path']}")
        else:
            await send_pieces(send, *reply)
            return
        finally:
            self.active -= 1
        await response(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, model: Any, compute: Compute) -> Reply:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parse = api.parser_for(
            model,
            headers.get("content-type", api.JSON_MEDIA_TYPE),
            dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            self.limits.max_elements,
        )
        npy_out = api.NPY_MEDIA_TYPE in headers.get("accept", "")
        holder = [await read_body(receive, headers.get("content-length"), self.limits.max_body_bytes)]
        info = scope.get("state", {}).get("observe")

        def pipeline() -> Reply:
            # The body leaves the holder as it is parsed, so it can be freed
            # before the result is computed and serialised.
            return api.encode(compute(parse(holder.pop()), info=info), npy_out)

        if len(holder[0]) <= api.INLINE_BODY_BYTES:
            return pipeline()
        return await to_thread.run_sync(pipeline)


Reply = tuple[str, dict[str, str], list[bytes | memoryview]]


async def send_pieces(
    send: Send, media_type: str, extra: dict[str, str], parts: list[bytes | memoryview]
) -> None:
    """Send a 200 response piece by piece: no joined copy of a large body, and
    uvicorn waits for the socket to drain between pieces instead of buffering."""
    length = sum(len(p) for p in parts)
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(length).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    last = len(parts) - 1
    for i, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": i < last})


async def read_body(receive: Receive, content_length: str | None, limit: int) -> bytes | bytearray:
    """The request body in one buffer; 413 as soon as it exceeds ``limit`` bytes."""
    declared = int(content_length) if content_length and content_length.isdigit() else None
    if declared is not None and declared > limit:
        raise RequestError.one(
            413, "body", f"is {declared} bytes; the limit is {limit} (ACTIVATION_MAX_BODY_BYTES)"
        )
    message = await receive()
    chunk = message.get("body", b"")
    if not message.get("more_body", False):
        return bytes(chunk)  # the whole body in one message: no copy for bytes
    body = bytearray(declared or 0)
    size = 0
    while True:
        end = size + len(chunk)
        if end > limit:
            raise RequestError.one(
                413, "body", f"exceeds the limit of {limit} bytes (ACTIVATION_MAX_BODY_BYTES)"
            )
        body[size:end] = chunk  # within the declared size, or growing a chunked body
        size = end
        if not message.get("more_body", False):
            break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError.one(400, "body", "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
    del body[size:]
    return body
