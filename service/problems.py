"""The one error shape of the service: RFC 9457 problem details with field errors.

Every 4xx (and the rare 5xx) answers ``application/problem+json``::

    {"status": 422, "title": "Unprocessable Content",
     "detail": "x[3]: not a finite number",
     "errors": [{"field": "x[3]", "reason": "not a finite number"}]}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus

import orjson
from starlette.responses import Response

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

    @property
    def detail(self) -> str:
        return _detail(self.errors)


def _detail(pairs: Iterable[tuple[str, str]]) -> str:
    """All field errors in one line: 'x[3]: is not a finite number; axis: ...'."""
    return "; ".join(f"{field}: {reason}" if field else reason for field, reason in pairs)


def problem(
    status: int,
    errors: Iterable[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build the problem+json response for ``errors`` (pairs of field and reason)."""
    pairs = list(errors)
    body = {
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": _detail(pairs),
        "errors": [{"field": f, "reason": r} for f, r in pairs],
    }
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def from_error(exc: RequestError) -> Response:
    return problem(exc.status, exc.errors, exc.headers)


def response_for(exc: Exception, where: str) -> Response:
    """The one mapping of an exception to a response, for every layer that serves requests.

    A refused request keeps its status; a domain error of the core is a 422
    naming its field; anything else is logged (by type, see service.observe)
    and answered with a bare 500 that tells the client nothing about internals.
    """
    if isinstance(exc, RequestError):
        return from_error(exc)
    if isinstance(exc, ActivationError):
        return problem(422, [(exc.field, exc.reason)])
    logger.error("unhandled error on %s", where, exc_info=exc)
    return problem(500, [("", "internal error; the request was not processed")])
