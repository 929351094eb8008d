"""The one table of routes, and the endpoints that are not compute operations.

Each :class:`Operation` says everything a layer needs about a route: method
and path (relative to the root path), operation id and OpenAPI text, the
metric label, whether it is open when API keys are set, and what serves it
(a compute operation for :mod:`service.pipeline`, or an endpoint for
FastAPI).  Routing, authentication, metrics, load shedding and the OpenAPI
document are all derived from :data:`TABLE`; no other module lists paths.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Path, Query, Request
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Scope

from . import activations, binary, codec, decode, inference, operations, pages
from .activations import correct
from .lifecycle import DRAINING
from .observe import metrics_text
from .problems import PROBLEM_MEDIA_TYPE, RequestError
from .schemas import (
    ActivateRequest,
    ActivateResponse,
    ActivationInfo,
    Catalog,
    CheckRequest,
    CheckResponse,
    DerivativeRequest,
    DerivativeResponse,
    FitRequest,
    FitResponse,
    Health,
    ProfileRequest,
    ProfileResponse,
    SimulateRequest,
    SimulateResponse,
    check_examples,
    fit_examples,
    profile_examples,
    simulate_examples,
)

JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class Compute:
    """A compute operation: its request model and the function that plans its work."""

    model: type[BaseModel]
    plan: Callable[[Any, operations.Limits, dict[str, Any] | None], operations.Plan]
    response_model: type[Any]
    #: Takes .npy/.npz bodies only (the rest in the query string) and answers .npy unless
    #: JSON is asked for; otherwise JSON is documented (binary bodies are taken as well).
    binary: bool = False
    #: Speaks the Open Inference Protocol (:mod:`service.inference`) instead.
    inference: bool = False
    #: The request examples of the OpenAPI document (default: those of /activate or /derivative).
    examples: Callable[[], dict[str, dict[str, Any]]] | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    #: Relative to the root path; ``{name}`` matches one segment; a path ending in "/" with
    #: ``prefix`` matches everything under it.
    path: str
    #: The metrics label: the path as written here, so label values stay bounded.
    label: str = ""
    #: Served without a key when API keys are set (probes, metrics, docs, the playground).
    open: bool = False
    prefix: bool = False
    operation_id: str | None = None
    summary: str | None = None
    tags: tuple[str, ...] = ()
    compute: Compute | None = None
    #: A FastAPI endpoint; None for compute operations and for what FastAPI serves itself.
    endpoint: Callable[..., Any] | None = None
    responses: Mapping[int | str, Any] = field(default_factory=dict)
    route: Mapping[str, Any] = field(default_factory=dict)  # more arguments for FastAPI's add_api_route
    #: An operation of the Open Inference Protocol: its errors are {"error": "..."} (service.problems).
    inference: bool = False

    @property
    def metric(self) -> str:
        return self.label or self.path


def documented_problem(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is the problem shape."""
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


UNAUTHORIZED = documented_problem(
    "An API key is required (when ACTIVATION_API_KEYS is set) and was missing or wrong."
)


# -- endpoints --------------------------------------------------------------------------------

UseTag = Enum("UseTag", {tag: tag for tag in activations.USES}, type=str)  # type: ignore[misc]
_CATALOG = {entry.name: ActivationInfo.of(entry) for entry in activations.entries()}


def list_activations(
    use: UseTag = Query(None, description="Only activations with this typical use."),  # noqa: B008
) -> Catalog:
    """Every activation with its parameters, formulas, range, kinks and typical use."""
    return Catalog(
        activations=[info for info in _CATALOG.values() if use is None or use.value in info.typical_use]
    )


def get_activation(
    name: Annotated[
        str,
        Path(
            description="A canonical name or an alias (PyTorch, JAX and Keras spellings).",
            openapi_examples={
                "gelu": {"summary": "a canonical name", "value": "gelu"},
                "SiLU": {"summary": "an alias (PyTorch)", "value": "SiLU"},
            },
        ),
    ],
) -> ActivationInfo:
    """One catalog entry, by canonical name or alias."""
    try:
        return _CATALOG[activations.get(name).name]
    except activations.UnknownActivation as exc:
        raise RequestError.one(404, exc.field, exc.reason) from None


_OK = codec.dumps(Health(status="ok").model_dump())


async def healthz() -> Response:
    """200 while the process serves requests."""
    return Response(_OK, media_type=JSON_MEDIA_TYPE)


def _not_draining() -> None:
    if DRAINING.is_set():
        raise RequestError.retry_later("draining: the process is shutting down")


async def readyz() -> Response:
    """200 when the service is ready to take traffic; 503 while it drains."""
    _not_draining()
    return Response(_OK, media_type=JSON_MEDIA_TYPE)


def metrics() -> Response:
    """Requests by route, status and activation; latency; elements computed; requests in flight."""
    body, media_type = metrics_text()
    return Response(body, media_type=media_type)


def openapi_document(request: Request) -> Response:
    """The OpenAPI document; behind a proxy prefix (the root path), its one server is the prefix."""
    doc = request.app.openapi()
    root = request.scope.get("root_path", "").rstrip("/")
    if root:
        doc = doc | {"servers": [{"url": root}]}
    return _json(doc)


# -- reference tables (service.activations.correct) ----------------------------------------------

#: One table is computed at a time (about a second each); the others wait this long, then get 503.
_TABLES = threading.BoundedSemaphore(1)
TABLE_WAIT = 10.0


def reference(
    request: Request,
    name: Annotated[str, Path(description="A canonical name or an alias (elementwise functions).")],
    dtype: Annotated[
        Literal["float16", "bfloat16"], Query(description="The 16-bit format whose every input is tabulated.")
    ],
    quantity: Annotated[
        Literal["value", "derivative", "second_derivative"], Query(description="f(x), f'(x) or f''(x).")
    ] = "value",
) -> Response:
    """Every finite input of a 16-bit format and the correctly rounded result there, as an .npz.

    The arrays x and y, in the order of x's bit patterns (float16 as float16; bfloat16 as float32
    holding exactly the bfloat16 numbers). y is inf where the true result exceeds the format.
    The activation's parameters are query parameters by name (``?negative_slope=0.1``).
    """
    try:
        entry = activations.get(name)
    except activations.UnknownActivation as exc:
        raise RequestError.one(404, exc.field, exc.reason) from None
    given: dict[str, Any] = {}
    seen: set[str] = set()
    for key, text in request.query_params.multi_items():
        if key in seen:
            raise RequestError.one(422, f"query.{key[:100]}", "is given more than once; give it once")
        seen.add(key)
        if key in ("dtype", "quantity"):
            continue
        given[key] = decode.query_param(f"params.{key[:100]}", text)
    params = entry.bind(given, per_channel=False)
    fmt = correct.FORMATS[dtype]
    correct.function_of(entry, quantity)
    if not _TABLES.acquire(timeout=TABLE_WAIT):
        raise RequestError.retry_later("busy computing another reference table; retry shortly")
    try:
        x, y = correct.table(entry, quantity, params, fmt)
    finally:
        _TABLES.release()
    wire = np.float16 if dtype == "float16" else np.float32
    out = io.BytesIO()
    np.savez(out, x=x.astype(wire), y=y.astype(wire))
    filename = f"{entry.name}-{quantity}-{dtype}.npz"
    accept = request.headers.get("accept", "")
    octet = "application/octet-stream" in accept and binary.NPZ_MEDIA_TYPE not in accept
    return Response(
        out.getvalue(),
        media_type="application/octet-stream" if octet else binary.NPZ_MEDIA_TYPE,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


# -- the Open Inference Protocol (service.inference) ---------------------------------------------------


def _json(payload: Any) -> Response:
    return Response(codec.dumps(payload), media_type=JSON_MEDIA_TYPE)


async def v2_server_metadata() -> Response:
    return _json(inference.server_metadata())


async def v2_live() -> Response:
    return _json({"live": True})


async def v2_ready() -> Response:
    _not_draining()
    return _json({"ready": True})


async def v2_model_metadata(name: str, version: str | None = None) -> Response:
    return _json(inference.model_metadata(name, version))


async def v2_model_ready(name: str, version: str | None = None) -> Response:
    inference.model(name, version)
    _not_draining()
    return _json({"name": name, "ready": True})


def _v2(method: str, path: str, **kwargs: Any) -> Operation:
    return Operation(method, path, inference=True, tags=("inference protocol",), **kwargs)


_INFER = Compute(DerivativeRequest, inference.plan, dict, inference=True)


# -- the table -----------------------------------------------------------------------------------

_ACTIVATE = Compute(ActivateRequest, operations.plan_activate, ActivateResponse)
_DERIVATIVE = Compute(DerivativeRequest, operations.plan_derivative, DerivativeResponse)
_ACTIVATE_DESCRIPTION = "y = f(x) for every element of x (vector functions such as softmax: along `axis`)."
_DERIVATIVE_DESCRIPTION = (
    "The derivative at the input x (never at an already-activated value).\n\n"
    "Without `grad`: `dydx`, which is f'(x) for elementwise functions and the Jacobian along "
    "`axis` (shape x.shape + [n]) for vector functions. With `grad` (dL/dy, x's shape): "
    "`grad_x` = gᵀJ, the vector-Jacobian product that backpropagation needs."
)
_BINARY_DESCRIPTION = (
    "\n\nThe same operation with NumPy files: the body is x as an .npy file{npz}, the activation, its "
    "parameters and the options are query parameters, and the result comes back as an .npy file "
    "(the JSON envelope with `Accept: application/json`)."
)

TABLE: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/activate",
        operation_id="activate",
        summary="Evaluate an activation function",
        tags=("compute",),
        compute=_ACTIVATE,
        route={"description": _ACTIVATE_DESCRIPTION},
    ),
    Operation(
        "POST",
        "/derivative",
        operation_id="derivative",
        summary="Differentiate an activation function at x",
        tags=("compute",),
        compute=_DERIVATIVE,
        route={"description": _DERIVATIVE_DESCRIPTION},
    ),
    Operation(
        "POST",
        "/activate/npy",
        operation_id="activate_npy",
        summary="Evaluate an activation function on an .npy array",
        tags=("compute",),
        compute=replace(_ACTIVATE, binary=True),
        route={"description": _ACTIVATE_DESCRIPTION + _BINARY_DESCRIPTION.format(npz="")},
    ),
    Operation(
        "POST",
        "/derivative/npy",
        operation_id="derivative_npy",
        summary="Differentiate an activation function on an .npy array",
        tags=("compute",),
        compute=replace(_DERIVATIVE, binary=True),
        route={
            "description": _DERIVATIVE_DESCRIPTION
            + _BINARY_DESCRIPTION.format(npz=" (with grad: an .npz archive holding the arrays x and grad)")
        },
    ),
    Operation(
        "POST",
        "/check",
        operation_id="check",
        summary="Check another implementation's results against the correctly rounded ones",
        tags=("correct rounding",),
        compute=Compute(CheckRequest, operations.plan_check, CheckResponse, examples=check_examples),
        route={
            "description": "y is what the implementation under test returned at x (numbers of dtype); "
            "the answer counts the results that are correctly rounded, and the errors in ULPs of dtype. "
            "Elementwise functions. float64 and float32 checks take up to 100,000 numbers; 16-bit ones "
            "any number."
        },
    ),
    Operation(
        "POST",
        "/profile",
        operation_id="profile",
        summary="An activation under Gaussian inputs: moments, gain, and deep-network mean field",
        tags=("signal propagation",),
        compute=Compute(ProfileRequest, operations.plan_profile, ProfileResponse, examples=profile_examples),
        route={
            "description": "E[f], E[f^2], Var f, E[f'], E[f'^2], the share of dead (f' = 0) and saturated "
            "(|f'| < 0.01) units for z ~ N(mean, std^2); the gain 1/sqrt(E[f(z)^2]) at N(0, 1) beside "
            "torch.nn.init.calculate_gain; with sigma_w (and sigma_b, depth) the fixed point q*, chi1, the "
            "critical sigma_w (edge of chaos) and chi1^depth of a deep random network (Poole et al. 2016, "
            "Schoenholz et al. 2017). Integrals to about 1e-15 relative. Elementwise functions."
        },
    ),
    Operation(
        "POST",
        "/simulate",
        operation_id="simulate",
        summary="A random deep network run forward and backward: per-layer statistics",
        tags=("signal propagation",),
        compute=Compute(
            SimulateRequest, operations.plan_simulate, SimulateResponse, examples=simulate_examples
        ),
        route={
            "description": "A fully connected network of `depth` layers of `width` units with Gaussian weights "
            "(variance sigma_w^2/width) and biases, fed `batch` Gaussian inputs, reproducible by `seed`: per "
            "layer the mean and variance of pre-activations and activations, the dead and saturated shares and "
            "the RMS of the back-propagated gradient (computed with the service's own f and f'), beside what "
            "mean-field theory predicts. width * batch * depth is at most 2^20, width^2 * depth at most 2^25 "
            "and width^2 * batch * depth at most 2^31."
        },
    ),
    Operation(
        "POST",
        "/fit",
        operation_id="fit",
        summary="Fit an activation's parameters to samples",
        tags=("fitting",),
        compute=Compute(FitRequest, operations.plan_fit, FitResponse, examples=fit_examples),
        route={
            "description": "Least squares (SciPy's trust-region reflective least_squares, within each parameter's "
            "bounds) with the exact parameter Jacobian, from the given or default starting values: to x and y, or "
            "to x and the values of a target activation. Elementwise functions with parameters; at most 100,000 "
            "points and points * max_iterations at most 5e7."
        },
    ),
    Operation(
        "GET",
        "/reference/{name}",
        operation_id="reference",
        summary="The correctly rounded table of a 16-bit format",
        tags=("correct rounding",),
        endpoint=reference,
        responses={
            200: {
                "description": "An .npz archive holding the arrays x and y.",
                "content": {
                    binary.NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
                    # what generic clients ask for
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            401: UNAUTHORIZED,
            404: documented_problem("No activation has this name or alias."),
            422: documented_problem("A vector function, an unknown or out-of-range parameter."),
            503: documented_problem("Another table is being computed: retry after Retry-After seconds."),
        },
        route={"response_class": Response},
    ),
    Operation(
        "GET",
        "/activations",
        operation_id="list_activations",
        summary="The catalog of activation functions",
        tags=("catalog",),
        endpoint=list_activations,
        responses={401: UNAUTHORIZED, 422: documented_problem("Unknown value of `use`.")},
        route={"response_model": Catalog},
    ),
    Operation(
        "GET",
        "/activations/{name}",
        operation_id="get_activation",
        summary="One activation function",
        tags=("catalog",),
        endpoint=get_activation,
        responses={401: UNAUTHORIZED, 404: documented_problem("No activation has this name or alias.")},
        route={"response_model": ActivationInfo},
    ),
    Operation(
        "GET",
        "/healthz",
        open=True,
        operation_id="healthz",
        summary="Liveness",
        tags=("health",),
        endpoint=healthz,
        route={"response_model": Health},
    ),
    Operation(
        "GET",
        "/readyz",
        open=True,
        operation_id="readyz",
        summary="Readiness",
        tags=("health",),
        endpoint=readyz,
        responses={
            503: documented_problem(
                "Draining after SIGTERM: in-flight requests finish, new ones go elsewhere."
            )
        },
        route={"response_model": Health},
    ),
    Operation(
        "GET",
        "/metrics",
        open=True,
        operation_id="metrics",
        summary="Prometheus metrics",
        tags=("health",),
        endpoint=metrics,
        responses={
            200: {
                "description": "Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        route={"response_class": Response},
    ),
    # The Open Inference Protocol (KServe v2, Triton), outside the OpenAPI document (it has its own).
    _v2("GET", "/v2", endpoint=v2_server_metadata),
    _v2("GET", "/v2/health/live", open=True, endpoint=v2_live),
    _v2("GET", "/v2/health/ready", open=True, endpoint=v2_ready),
    _v2("GET", "/v2/models/{name}", endpoint=v2_model_metadata),
    _v2("GET", "/v2/models/{name}/versions/{version}", endpoint=v2_model_metadata),
    _v2("GET", "/v2/models/{name}/ready", endpoint=v2_model_ready),
    _v2("GET", "/v2/models/{name}/versions/{version}/ready", endpoint=v2_model_ready),
    _v2("POST", "/v2/models/{name}/infer", compute=_INFER),
    _v2("POST", "/v2/models/{name}/versions/{version}/infer", compute=_INFER),
    # Pages for people, outside the OpenAPI document.
    Operation("GET", "/", open=True, endpoint=pages.playground, route=pages.HTML),
    Operation("GET", "/docs", open=True, endpoint=pages.swagger_ui, route=pages.HTML),
    Operation("GET", "/redoc", open=True, endpoint=pages.redoc, route=pages.HTML),
    Operation("GET", "/openapi.json", open=True, endpoint=openapi_document),
    Operation("GET", "/static/redoc.standalone.js", open=True, label="/static", endpoint=pages.redoc_bundle),
    Operation("GET", "/static/", open=True, prefix=True, label="/static"),  # pages.mount_static
)


# -- matching -----------------------------------------------------------------------------------


def route_path(scope: Scope) -> str:
    """The path relative to the root path, as Starlette routes on it (``starlette._utils.get_route_path``).

    uvicorn puts the root path (``--root-path``) in front of ``scope["path"]``;
    every layer routes on what follows it.
    """
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def _pattern(op: Operation) -> re.Pattern[str]:
    if op.prefix:
        return re.compile(re.escape(op.path) + ".*")
    return re.compile(re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(op.path)))


class Table:
    """The operations of :data:`TABLE`, found by path and method."""

    def __init__(self, operations: tuple[Operation, ...] = TABLE) -> None:
        self.operations = operations
        self._exact: dict[str, list[Operation]] = {}
        self._patterns: list[tuple[re.Pattern[str], Operation]] = []
        self._pattern_of: dict[int, re.Pattern[str]] = {}
        self._inference_root = next((op.path.split("/")[1] for op in operations if op.inference), "")
        for op in operations:
            if op.prefix or "{" in op.path:
                self._patterns.append((_pattern(op), op))
                self._pattern_of[id(op)] = self._patterns[-1][0]
            else:
                self._exact.setdefault(op.path, []).append(op)

    def find(self, method: str, path: str) -> tuple[Operation | None, tuple[str, ...], bool]:
        """The operation for a request, the methods its path takes (none: an unknown path), and
        whether the path is one of the Open Inference Protocol's (whose errors take its shape)."""
        candidates = self._exact.get(path) or [op for p, op in self._patterns if p.fullmatch(path)]
        method = "GET" if method == "HEAD" else method
        allowed = tuple(sorted({op.method for op in candidates}))
        # An unknown path under the protocol's root (/v2/repository/index ...) answers in its shape too.
        inference = any(op.inference for op in candidates) or (
            not candidates and path.split("/", 2)[1:2] == [self._inference_root]
        )
        return next((op for op in candidates if op.method == method), None), allowed, inference

    def path_params(self, op: Operation, path: str) -> dict[str, str]:
        """The values of the ``{name}`` segments of ``op``'s path in ``path``."""
        pattern = self._pattern_of.get(id(op))
        match = pattern.fullmatch(path) if pattern is not None else None
        return match.groupdict() if match is not None else {}
