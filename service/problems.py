"""The one error shape of the service: RFC 9457 problem details with field errors.

Every 4xx (and the rare 5xx) answers ``application/problem+json``::

    {"status": 422, "title": "Unprocessable Content",
     "detail": "x[3]: not a finite number",
     "errors": [{"field": "x[3]", "reason": "not a finite number"}]}

except on the paths of the Open Inference Protocol, whose clients read
``{"error": "<the detail>"}`` (``application/json``), with 400 for what is
422 or 415 elsewhere.  Every layer passes the ASGI scope, whose state (set
from the route table, see :class:`service.app.Match`) says which shape its
errors take.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus

import orjson
from starlette.responses import Response
from starlette.types import Scope

from .activations import ActivationError

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("service")


class RequestError(Exception):
    """A request the service refuses; carries the status and the field errors."""

    def __init__(
        self,
        status: int,
        errors: Iterable[tuple[str, str]],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.errors = list(errors)
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    @classmethod
    def one(cls, status: int, field: str, reason: str) -> RequestError:
        return cls(status, [(field, reason)])

    @classmethod
    def retry_later(cls, reason: str) -> RequestError:
        """503 with Retry-After: the request is fine, the server cannot take it now."""
        return cls(503, [("", reason)], {"retry-after": "1"})

    @property
    def detail(self) -> str:
        return _detail(self.errors)


def _detail(pairs: Iterable[tuple[str, str]]) -> str:
    """All field errors in one line: 'x[3]: is not a finite number; axis: ...'."""
    return "; ".join(f"{field}: {reason}" if field else reason for field, reason in pairs)


#: At most this many field errors are reported, each field name and reason cut to these lengths:
#: a request with a million bad fields gets a short answer.
MAX_ERRORS = 20
MAX_FIELD = 100
MAX_REASON = 1000


def _clip(text: str, limit: int) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # A lone surrogate (from a JSON escape such as "\udc00") is not UTF-8: show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(
    status: int,
    errors: Iterable[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
    scope: Scope | None = None,
) -> Response:
    """The error response for ``errors`` (pairs of field and reason): problem+json, or the
    Open Inference Protocol's shape when the request's operation (in ``scope``) is one of it."""
    pairs = []
    for count, (field, reason) in enumerate(errors):
        if count == MAX_ERRORS:
            pairs.append(("", f"more errors not shown; at most {MAX_ERRORS} are reported"))
            break
        pairs.append((_clip(field, MAX_FIELD), _clip(reason, MAX_REASON)))
    if scope is not None and scope.get("state", {}).get("inference"):
        status = 400 if status in (415, 422) else status
        body: dict[str, object] = {"error": _detail(pairs)}
        return Response(
            orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
        )
    body = {
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": _detail(pairs),
        "errors": [{"field": f, "reason": r} for f, r in pairs],
    }
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def from_error(exc: RequestError, scope: Scope | None = None) -> Response:
    return problem(exc.status, exc.errors, exc.headers, scope)


def response_for(exc: Exception, where: str, scope: Scope | None = None) -> Response:
    """The one mapping of an exception to a response, for every layer that serves requests.

    A refused request keeps its status; a domain error of the core is a 422
    naming its field; anything else is logged (by type, see service.observe)
    and answered with a bare 500 that tells the client nothing about internals.
    """
    if isinstance(exc, RequestError):
        return from_error(exc, scope)
    if isinstance(exc, ActivationError):
        return problem(422, [(exc.field, exc.reason)], scope=scope)
    logger.error("unhandled error on %s", where, exc_info=exc)
    return problem(500, [("", "internal error; the request was not processed")], scope=scope)
