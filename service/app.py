"""Application wiring: routes, error handlers and the OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from . import __version__, api, lifecycle, pages
from .activations import ActivationError
from .fastpath import ComputeEndpoints
from .observe import Observe
from .problems import RequestError, problem, response_for
from .schemas import NUMBER_ARRAY_SCHEMA, ActivateRequest, DerivativeRequest, Problem
from .security import PROTECTED, ApiKeyAuth
from .settings import Settings

logger = logging.getLogger("service")

DESCRIPTION = """\
Neural-network activation functions, their derivatives and vector-Jacobian
products, computed exactly in float64 by a NumPy core.

* `POST /activate`: y = f(x) for a number or an N-D array.
* `POST /derivative`: f'(x) (or the Jacobian of a vector function), or with an
  upstream gradient `grad` the product gᵀJ that backpropagation needs.
  The derivative is always taken at the input x.
* `GET /activations`: the catalog: parameters, formulas, kinks, typical use.

Numbers: inputs must be finite; outputs are always finite. NaN, Infinity and
overflowing results are refused with a 422 that names the element.
Every error is `application/problem+json` with the offending field and the reason.
"""


def create_app(settings: Settings | None = None) -> Any:
    """The ASGI application: request ids, logs and metrics; CORS and auth (when
    configured); the compute endpoints; FastAPI for the rest."""
    settings = settings or Settings()
    limits = api.Limits.of(settings)
    app: Any = ComputeEndpoints(create_fastapi_app(settings), limits, settings.max_concurrency)
    if settings.api_keys:
        app = ApiKeyAuth(app, settings.api_keys)
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "accept", "x-request-id"],
            expose_headers=["x-activation", "x-activation-params", "x-activation-result", "x-request-id"],
        )
    return Observe(app)


def create_fastapi_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        root_path=settings.root_path,
        lifespan=lifecycle.lifespan,  # chains the SIGTERM handler that starts the drain
        docs_url=None,
        redoc_url=None,
        title="activation-service",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "compute", "description": "Values, derivatives and gradients."},
            {"name": "catalog", "description": "What each activation is and how it is defined."},
            {"name": "health", "description": "Probes for orchestrators."},
        ],
    )
    app.state.limits = api.Limits.of(settings)  # for the compute routes when FastAPI is served alone
    app.include_router(api.router)
    app.include_router(pages.router)
    pages.mount_static(app)
    app.add_exception_handler(RequestError, _error)
    app.add_exception_handler(ActivationError, _error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _error)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _error(request: Request, exc: Exception) -> Response:
    return response_for(exc, f"{request.method} {request.url.path}")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if part not in ("query", "path", "body")]
        errors.append((".".join(loc), str(error["msg"])))
    return problem(422, errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = exc.detail if isinstance(exc.detail, str) else "request refused"
    return problem(exc.status_code, [("", reason)], exc.headers)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas of the bodies the routes parse themselves."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    _, extra = models_json_schema(
        [(m, "validation") for m in (ActivateRequest, DerivativeRequest, Problem)],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI documents a 422 with its own error shape on every route that has
    # parameters; the routes here answer problem+json, documented per route.
    for path in schema["paths"].values():
        for operation in path.values():
            default_422 = operation["responses"].get("422", {})
            if "HTTPValidationError" in str(default_422):
                del operation["responses"]["422"]
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.update(extra.get("$defs", {}))
    # The Authorize button of /docs: a bearer key, required only when ACTIVATION_API_KEYS is set.
    schema["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An ACTIVATION_API_KEYS key, when keys are set.",
        }
    }
    for path, item in schema["paths"].items():
        if path.startswith(PROTECTED):
            for operation in item.values():
                operation["security"] = [{"bearer": []}, {}]
    components["NumberArray"] = NUMBER_ARRAY_SCHEMA
    app.openapi_schema = schema
    return schema
