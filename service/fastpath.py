"""POST /activate and /derivative served as plain ASGI, in front of FastAPI.

FastAPI's per-request machinery (routing, dependency solving, the Request
object, exception middleware) costs about as much as a whole /healthz call;
for a 10-element activation it would be most of the time.  This layer runs
the same request pipeline as the FastAPI routes (``api.serve``: the body read
into one buffer within the limits, parsed, computed, encoded), sends the reply
in pieces and answers errors in the same shape.  Everything else, and the
OpenAPI description of these two operations, stays with FastAPI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from . import api
from .problems import problem, response_for
from .schemas import ActivateRequest, DerivativeRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = api.Receive
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ComputeEndpoints:
    """Serve the compute operations directly; pass every other request to ``app``."""

    def __init__(self, app: Any, limits: api.Limits = api.DEFAULT_LIMITS, max_concurrency: int = 64) -> None:
        self.app = app
        self.limits = limits
        self.max_concurrency = max_concurrency
        self.active = 0
        self.routes = {
            "/activate": (ActivateRequest, api.compute_activate),
            "/derivative": (DerivativeRequest, api.compute_derivative),
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
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            info = scope.get("state", {}).get("observe")
            reply = await api.serve(*route, headers, query, receive, self.limits, info)
        except asyncio.CancelledError:
            # The drain ran out of time (ACTIVATION_DRAIN_SECONDS) before this request was
            # answered: say so, so that the client retries elsewhere, and end the request here.
            reason = "the server shut down before finishing this request (ACTIVATION_DRAIN_SECONDS); retry"
            response = problem(503, [("", reason)], {"retry-after": "1"})
        except Exception as exc:
            response = response_for(exc, f"POST {scope['path']}")
        else:
            await send_pieces(send, *reply)
            return
        finally:
            self.active -= 1
        await response(scope, receive, send)


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
