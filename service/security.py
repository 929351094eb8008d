"""API-key authentication (off unless keys are configured), as plain ASGI."""

from __future__ import annotations

import hmac

from .fastpath import ASGIApp, Receive, Scope, Send
from .problems import problem

#: What needs a key; health, readiness, metrics, the docs and the playground page stay open.
PROTECTED = ("/activate", "/derivative", "/activations")


class ApiKeyAuth:
    """Require ``Authorization: Bearer <key>`` on the API operations."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" or not path.startswith(PROTECTED):
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
            401, [("authorization", reason)], {"www-authenticate": 'Bearer realm="activation-service"'}
        )
        await response(scope, receive, send)
