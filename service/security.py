"""API-key authentication (off unless keys are configured), as plain ASGI.

Fails closed: when keys are set, every request needs one except those to the
operations the route table marks open (probes, metrics, the docs and their
assets, the playground).  A path the table does not know needs a key too, so
nobody learns what is there without one; a documented path asked with a method
it does not take gets its 405 either way.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem


class ApiKeyAuth:
    """Require ``Authorization: Bearer <key>`` on every operation that is not open."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state", {})
        operation = state.get("operation")
        # Open operations, and a documented path asked with another method (405 says which,
        # as /openapi.json does), need no key; everything else does.
        if scope["type"] != "http" or (operation.open if operation else bool(state.get("allowed"))):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        # Compare against every key, in constant time, whatever matches first.
        ok = scheme.lower() == b"bearer" and any([hmac.compare_digest(token, key) for key in self.keys])
        if ok:
            await self.app(scope, receive, send)
            return
        reason = "missing or invalid API key; send Authorization: Bearer <key>"
        response = problem(
            401, [("authorization", reason)], {"www-authenticate": 'Bearer realm="activation-service"'}, scope
        )
        await response(scope, receive, send)
