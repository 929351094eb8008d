"""The HTTP routes: translate requests to core calls and results to bytes.

``/activate`` and ``/derivative`` read the raw body and do the rest in one
synchronous pipeline (parse, validate, compute, serialise).  Small bodies run
it inline, which is cheaper than a thread hop; larger ones run it in the
threadpool so that a big request never blocks the event loop for others.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.responses import Response

from . import activations, codec
from .activations import Activation, ActivationError, Array
from .problems import PROBLEM_MEDIA_TYPE, RequestError
from .schemas import (
    ActivateRequest,
    ActivateResponse,
    ActivationInfo,
    Catalog,
    DerivativeRequest,
    DerivativeResponse,
    Health,
    request_examples,
)

#: Bodies up to this size are handled on the event loop; larger ones in a thread.
INLINE_BODY_BYTES = 64 * 1024
JSON_MEDIA_TYPE = "application/json"

router = APIRouter()
M = TypeVar("M", bound=BaseModel)


# -- documentation helpers ------------------------------------------------------------


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _json_body(model: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON_MEDIA_TYPE: {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "examples": examples,
                }
            },
        }
    }


COMPUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("The body is not valid JSON."),
    415: _problem("The body is not JSON (send Content-Type: application/json)."),
    422: _problem(
        "A field is invalid: unknown activation or parameter, a value out of bounds, "
        "x or grad not a finite rectangular array (or beyond the float32 range with dtype float32), "
        "axis out of range, unknown fields, order 2 of a vector function, wrt=params for a "
        "function without parameters, or a result too large for the dtype."
    ),
}


# -- the request pipeline ---------------------------------------------------------------


async def _dispatch(request: Request, pipeline: Callable[[bytes], Response]) -> Response:
    content_type = request.headers.get("content-type", JSON_MEDIA_TYPE)
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE and not media_type.endswith("+json"):
        raise RequestError.one(
            415, "content-type", f"unsupported media type {media_type!r}; send {JSON_MEDIA_TYPE}"
        )
    body = await request.body()
    if len(body) <= INLINE_BODY_BYTES:
        return pipeline(body)
    return await run_in_threadpool(pipeline, body)


def _parse(model: type[M], body: bytes) -> M:
    data = codec.load_json(body)
    if not isinstance(data, dict):
        raise RequestError.one(422, "body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(422, [_field_error(e, model) for e in exc.errors()]) from None


def _field_error(error: ErrorDetails, model: type[BaseModel]) -> tuple[str, str]:
    field = ""
    for part in error["loc"]:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        return field, f"is not a known field; expected: {', '.join(model.model_fields)}"
    if kind == "missing":
        return field, "is required"
    return field, error["msg"]


def _envelope(
    entry: Activation, params: dict[str, float], axis: int, dtype: str, shape: tuple[int, ...]
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "activation": entry.name,
        "params": params,
        "dtype": dtype,
        "shape": list(shape),
    }
    if entry.kind == "vector":
        payload["axis"] = axis
    return payload


def _respond(payload: dict[str, Any]) -> Response:
    return Response(codec.dumps(payload), media_type=JSON_MEDIA_TYPE)


_DTYPES: dict[str, type[np.float32] | type[np.float64]] = {"float32": np.float32, "float64": np.float64}


def _inputs(req: ActivateRequest) -> tuple[Activation, dict[str, float], Array, int, type]:
    """The activation, its bound parameters, x as float64, the axis and the dtype of a request."""
    entry = activations.get(req.activation)
    params = entry.bind(req.params)
    dtype = _DTYPES[req.dtype]
    x = codec.to_array(req.x, "x", dtype)
    axis = entry.check_axis(x, req.axis) if entry.kind == "vector" else req.axis
    return entry, params, x, axis, dtype


def activate_json(body: bytes) -> Response:
    req = _parse(ActivateRequest, body)
    entry, params, x, axis, dtype = _inputs(req)
    y = entry.value(x, params, axis, dtype)
    return _respond(_envelope(entry, params, axis, req.dtype, y.shape) | {"y": codec.wire(y)})


def derivative_json(body: bytes) -> Response:
    req = _parse(DerivativeRequest, body)
    entry, params, x, axis, dtype = _inputs(req)
    head = partial(_envelope, entry, params, axis, req.dtype)
    if req.order == 2:
        if req.grad is not None:
            raise ActivationError("grad", "applies to first derivatives; leave it out with order 2")
        if req.wrt == "params":
            raise ActivationError(
                "order", "second derivatives are taken with respect to x; use order 1 with wrt=params"
            )
        d2 = entry.second_derivative(x, params, dtype)
        return _respond(head(d2.shape) | {"d2ydx2": codec.wire(d2)})
    if req.grad is None:
        if req.wrt == "params":
            grads = entry.parameter_jacobian(x, params, axis, dtype)
            shape = entry.output_shape(x.shape, axis)
            return _respond(head(shape) | {"dydparams": {k: codec.wire(v) for k, v in grads.items()}})
        dydx = entry.jacobian(x, params, axis, dtype)
        return _respond(head(dydx.shape) | {"dydx": codec.wire(dydx)})
    g = codec.to_array(req.grad, "grad", dtype)
    expected = entry.output_shape(x.shape, axis)
    if g.shape != expected:
        whose = "x's shape" if expected == x.shape else "the shape of y"
        raise ActivationError("grad", f"has shape {list(g.shape)}; it must have {whose} {list(expected)}")
    if req.wrt == "params":
        totals = entry.parameter_vjp(x, g, params, axis)
        if dtype is np.float32:
            totals = {k: float(v) for k, v in _finite_float32(totals).items()}
        return _respond(head(()) | {"grad_params": totals})
    grad_x = entry.vector_jacobian_product(x, g, params, axis, dtype)
    return _respond(head(grad_x.shape) | {"grad_x": codec.wire(grad_x)})


def _finite_float32(values: dict[str, float]) -> dict[str, np.float32]:
    out = {}
    for name, value in values.items():
        with np.errstate(over="ignore"):
            rounded = np.float32(value)
        if not np.isfinite(rounded):
            raise ActivationError(f"grad_params.{name}", "the true result is too large for float32")
        out[name] = rounded
    return out


# -- routes ------------------------------------------------------------------------------


@router.post(
    "/activate",
    operation_id="activate",
    summary="Evaluate an activation function",
    response_model=ActivateResponse,
    response_model_exclude_none=True,
    responses=COMPUTE_ERRORS,
    openapi_extra=_json_body(ActivateRequest, request_examples()),
    tags=["compute"],
)
async def activate(request: Request) -> Response:
    """y = f(x) for every element of x (vector functions such as softmax: along `axis`)."""
    return await _dispatch(request, activate_json)


@router.post(
    "/derivative",
    operation_id="derivative",
    summary="Differentiate an activation function at x",
    response_model=DerivativeResponse,
    response_model_exclude_none=True,
    responses=COMPUTE_ERRORS,
    openapi_extra=_json_body(DerivativeRequest, request_examples(derivative=True)),
    tags=["compute"],
)
async def derivative(request: Request) -> Response:
    """The derivative at the input x (never at an already-activated value).

    Without `grad`: `dydx`, which is f'(x) for elementwise functions and the Jacobian
    along `axis` (shape x.shape + [n]) for vector functions. With `grad` (dL/dy, x's
    shape): `grad_x` = gᵀJ, the vector-Jacobian product that backpropagation needs.
    """
    return await _dispatch(request, derivative_json)


UseTag = Enum("UseTag", {tag: tag for tag in activations.USES}, type=str)  # type: ignore[misc]
_CATALOG = {entry.name: ActivationInfo.of(entry) for entry in activations.entries()}


@router.get(
    "/activations",
    operation_id="list_activations",
    summary="The catalog of activation functions",
    response_model=Catalog,
    responses={422: _problem("Unknown value of `use`.")},
    tags=["catalog"],
)
def list_activations(
    use: UseTag = Query(None, description="Only activations with this typical use."),  # noqa: B008
) -> Catalog:
    """Every activation with its parameters, formulas, range, kinks and typical use."""
    return Catalog(
        activations=[info for info in _CATALOG.values() if use is None or use.value in info.typical_use]
    )


@router.get(
    "/activations/{name}",
    operation_id="get_activation",
    summary="One activation function",
    response_model=ActivationInfo,
    responses={404: _problem("No activation has this name or alias.")},
    tags=["catalog"],
)
def get_activation(name: str) -> ActivationInfo:
    """One catalog entry, by canonical name or alias."""
    try:
        return _CATALOG[activations.get(name).name]
    except activations.UnknownActivation as exc:
        raise RequestError.one(404, exc.field, exc.reason) from None


_OK = codec.dumps(Health(status="ok").model_dump())


@router.get("/healthz", operation_id="healthz", summary="Liveness", response_model=Health, tags=["health"])
async def healthz() -> Response:
    """200 while the process serves requests."""
    return Response(_OK, media_type=JSON_MEDIA_TYPE)


@router.get("/readyz", operation_id="readyz", summary="Readiness", response_model=Health, tags=["health"])
async def readyz() -> Response:
    """200 when the service is ready to take traffic."""
    return Response(_OK, media_type=JSON_MEDIA_TYPE)
