"""The one error shape of the service: RFC 9457 problem details with field errors.

Every 4xx (and the rare 5xx) answers ``application/problem+json``::

    {"status": 422, "title": "Unprocessable Content",
     "detail": "x[3]: not a finite number",
     "errors": [{"field": "x[3]", "reason": "not a finite number"}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus

import orjson
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"


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
        return "; ".join(f"{field}: {reason}" if field else reason for field, reason in self.errors)


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
        "detail": "; ".join(f"{f}: {r}" if f else r for f, r in pairs),
        "errors": [{"field": f, "reason": r} for f, r in pairs],
    }
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def from_error(exc: RequestError) -> Response:
    return problem(exc.status, exc.errors, exc.headers)
