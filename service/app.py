"""Application wiring: the layers every request passes, outermost first.

1. :class:`Match` finds the request's operation in the route table, on the path
   relative to the root path, and notes it (and its metric label) in the scope;
2. :class:`service.observe.Observe`: request id, access log line, metrics;
3. CORS, when origins are configured;
4. :class:`service.security.ApiKeyAuth`, when keys are configured (fails closed);
5. :class:`Dispatch`: compute operations to :class:`service.pipeline.Pipeline`,
   a known path with another method to 405, everything else to FastAPI
   (catalog, probes, metrics, pages, docs), whose routes come from the same table.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__, budget, document, lifecycle, pages
from .activations import ActivationError
from .observe import Observe
from .pipeline import Pipeline
from .problems import RequestError, problem, response_for
from .routes import TABLE, Table, route_path
from .security import ApiKeyAuth
from .settings import Settings

logger = logging.getLogger("service")

DESCRIPTION = """\
Neural-network activation functions, their derivatives and vector-Jacobian
products, computed exactly in float64 by a NumPy core.

* `POST /activate`: y = f(x) for a number or an N-D array.
* `POST /derivative`: f'(x) (or the Jacobian of a vector function), or with an
  upstream gradient `grad` the product gᵀJ that backpropagation needs.
  The derivative is always taken at the input x.
* `POST /activate/npy`, `POST /derivative/npy`: the same with NumPy files (.npy, .npz),
  the activation and each of its parameters as query parameters.
* `GET /activations`: the catalog: parameters, formulas, kinks, typical use.

The service also speaks the Open Inference Protocol (KServe v2, Triton) under
`/v2`, outside this document: every activation is a model with inputs `x` and
`grad` and outputs `y`, `dydx`, `d2ydx2` and `grad_x`.

Numbers: inputs must be finite; outputs are always finite. NaN, Infinity and
overflowing results are refused with a 422 that names the element.
Every error is `application/problem+json` with the offending field and the reason.
"""


def create_app(settings: Settings | None = None) -> Any:
    """The ASGI application (see the module's docstring for its layers)."""
    settings = settings or Settings()
    budget.give_back_freed_memory()  # (every worker process creates its application)
    pipeline = Pipeline(settings)
    app: Any = Dispatch(create_fastapi_app(), pipeline)
    if settings.api_keys:
        app = ApiKeyAuth(app, settings.api_keys)
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "accept", "x-request-id"],
            expose_headers=[
                "x-activation",
                "x-activation-params",
                "x-activation-result",
                "x-activation-dtype",
                "x-request-id",
            ],
        )
    return Match(Observe(app), Table(), pipeline)


class Match:
    """Outermost layer: find the operation and its metric label; every other layer reads them."""

    def __init__(self, app: ASGIApp, table: Table, pipeline: Pipeline) -> None:
        self.app = app
        self.table = table
        self.pipeline = pipeline  # the compute pipeline, for probes of its state (tests, tools)

    def __getattr__(self, name: str) -> Any:
        # openapi(), routes, state ... of the application behind, for tools that inspect it.
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            operation, allowed, inference = self.table.find(scope["method"], path)
            state = scope.setdefault("state", {})
            state["operation"] = operation
            state["inference"] = inference  # errors in the protocol's shape (service.problems)
            state["path_params"] = self.table.path_params(operation, path) if operation else {}
            state["allowed"] = allowed  # the methods the path takes: none for an unknown path
            state["label"] = operation.metric if operation else "other"
        await self.app(scope, receive, send)


class Dispatch:
    """Innermost layer: the compute pipeline, a 405, or FastAPI."""

    def __init__(self, fastapi_app: FastAPI, pipeline: Pipeline) -> None:
        self.fastapi_app = fastapi_app
        self.pipeline = pipeline

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fastapi_app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state", {})
        operation = state.get("operation")
        if scope["type"] != "http":
            await self.fastapi_app(scope, receive, send)
        elif operation is not None and operation.compute is not None:
            await self.pipeline(operation.compute, scope, receive, send)
        elif operation is None and state.get("allowed"):
            allowed = state["allowed"]
            reason = f"method {scope['method'][:20]} is not allowed here; use {', '.join(allowed)}"
            await problem(405, [("", reason)], {"allow": ", ".join(allowed)}, scope)(scope, receive, send)
        else:
            await self.fastapi_app(scope, receive, send)


def create_fastapi_app() -> FastAPI:
    """FastAPI, for the operations of the table that are not compute operations, and the document.

    The root path is the server's (uvicorn's ``--root-path``, set from ACTIVATION_ROOT_PATH).
    """
    app = FastAPI(
        lifespan=lifecycle.lifespan,  # chains the SIGTERM handler that starts the drain
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served from the route table (routes.openapi_document)
        title="activation-service",
        version=__version__,
        description=DESCRIPTION,
        license_info={"name": "MIT", "identifier": "MIT"},
        openapi_tags=[
            {"name": "compute", "description": "Values, derivatives and gradients."},
            {"name": "catalog", "description": "What each activation is and how it is defined."},
            {"name": "health", "description": "Probes for orchestrators."},
        ],
    )
    for op in TABLE:
        if op.endpoint is not None:
            app.add_api_route(
                op.path,
                op.endpoint,
                methods=[op.method],
                operation_id=op.operation_id,
                summary=op.summary,
                tags=list(op.tags) or None,
                responses=dict(op.responses) or None,
                include_in_schema=op.operation_id is not None,
                **op.route,
            )
    pages.mount_static(app)
    app.add_exception_handler(RequestError, _error)
    app.add_exception_handler(ActivationError, _error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _error)
    app.openapi = lambda: document.document(app)  # type: ignore[method-assign]
    return app


async def _error(request: Request, exc: Exception) -> Response:
    return response_for(exc, f"{request.method} {request.url.path[:100]}", request.scope)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if part not in ("query", "path", "body")]
        errors.append((".".join(loc), str(error["msg"])))
    return problem(422, errors, scope=request.scope)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = exc.detail if isinstance(exc.detail, str) else "request refused"
    return problem(exc.status_code, [("", reason)], exc.headers, request.scope)
