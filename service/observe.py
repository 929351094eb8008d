"""Request IDs, structured access logs and Prometheus metrics, as plain ASGI.

Every response carries ``X-Request-ID`` (the caller's, when it is a sane
token, or a fresh one), and every log line written while the request runs
carries it too.  One JSON line per request goes to stdout with the method,
path, status, activation, element count and duration.  ``GET /metrics``
serves the counters in Prometheus text format; with several worker processes
they are aggregated through ``PROMETHEUS_MULTIPROC_DIR`` (set by
``python -m service --workers N``).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("service.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUESTS = Counter(
    "activation_requests",
    "Requests served, by route, status and activation.",
    ["route", "status", "activation"],
)
LATENCY = Histogram(
    "activation_request_duration_seconds",
    "Request latency, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ELEMENTS = Counter("activation_elements", "Array elements computed, by activation.", ["activation"])
STOPPED = Counter(
    "activation_stopped_computations",
    "Computations stopped before they finished: their client left, or they ran past "
    "ACTIVATION_COMPUTE_TIMEOUT.",
    ["reason"],
)
IN_FLIGHT = Gauge("activation_in_flight_requests", "Requests being served.", multiprocess_mode="livesum")


def label(scope: Scope) -> str:
    """The route's metric label, set by the router (service.app.Match): bounded, whatever the path."""
    return str(scope.get("state", {}).get("label", "other"))


_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count()


def _new_id() -> str:
    """A request id unique across processes: a random prefix per process and a counter.

    (uuid4 read the system's random source for every request, the dearest step of /healthz.)
    """
    return f"{_ID_PREFIX}{next(_ids):016x}"


class Observe:
    """Outermost layer: request id, access log line, metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else _new_id()
        token = request_id.set(rid)
        info: dict[str, Any] = {}
        scope.setdefault("state", {})["observe"] = info
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            IN_FLIGHT.dec()
            duration = time.perf_counter() - start
            route = label(scope)
            activation = str(info.get("activation", ""))
            REQUESTS.labels(route, str(status), activation).inc()
            LATENCY.labels(route).observe(duration)
            if info.get("elements"):
                ELEMENTS.labels(activation).inc(info["elements"])
            access_log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": str(scope.get("path", ""))[:200],
                    "status": status,
                    "activation": activation or None,
                    "elements": info.get("elements"),
                    "duration_ms": round(duration * 1e3, 3),
                },
            )
            request_id.reset(token)


def metrics_text() -> tuple[bytes, str]:
    """The metrics of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


# -- logging -----------------------------------------------------------------------------------

_FIELDS = ("method", "path", "status", "activation", "elements", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, request id, message, request fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id.get(),
            "message": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        if record.exc_info:
            # The type only: tracebacks (paths, values) stay out of the logs.
            out["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "error"
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{f}={getattr(record, f)}" for f in _FIELDS if getattr(record, f, None) is not None
        )
        return f"{self.formatTime(record)} {record.levelname} [{request_id.get()}] {record.getMessage()} {fields}".rstrip()


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A logging.config dict for uvicorn: everything to stdout in the chosen format."""
    formatter = "service.observe.JsonFormatter" if fmt == "json" else "service.observe.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stdout"}
        },
        "loggers": {
            "service": {"handlers": ["stdout"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stdout"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"handlers": ["stdout"], "level": level.upper(), "propagate": False},
        },
    }
