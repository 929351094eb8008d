"""The HTTP routes: translate requests to core calls and results to bytes.

``/activate`` and ``/derivative`` read the raw body and do the rest in one
synchronous pipeline (parse, validate, compute, serialise).  Small bodies run
it inline, which is cheaper than a thread hop; larger ones run it in a
thread so that a big request never blocks the event loop for others.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Annotated, Any, TypeVar

import numpy as np
import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.responses import Response

from . import activations, binary, codec
from .activations import Activation, ActivationError, Array
from .lifecycle import DRAINING, in_daemon_thread
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
from .settings import Settings

#: Bodies up to this size are handled on the event loop; larger ones in a thread.
INLINE_BODY_BYTES = 64 * 1024
JSON_MEDIA_TYPE = "application/json"
NPY_MEDIA_TYPE = binary.NPY_MEDIA_TYPE


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the ACTIVATION_MAX_* settings)."""

    max_body_bytes: int
    max_elements: int
    max_jacobian_elements: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_elements, settings.max_jacobian_elements)


#: The defaults of the settings, whatever the environment says.
DEFAULT_LIMITS = Limits.of(Settings.model_construct())
MAX_ELEMENTS = DEFAULT_LIMITS.max_elements

router = APIRouter()
M = TypeVar("M", bound=BaseModel)
Compute = Callable[..., dict[str, Any]]


# -- documentation helpers ------------------------------------------------------------


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    } | extra


def _body(model: type[BaseModel], examples: dict[str, Any], derivative: bool = False) -> dict[str, Any]:
    """The request body (JSON, .npy, .npz) and the query parameters of the binary bodies."""
    binary_only = "Binary bodies only (with JSON, the body carries it)."
    parameters = [
        _query(
            "activation",
            f"{binary_only} The activation's name; required with a binary body.",
            {"type": "string", "enum": activations.all_names()},
        ),
        _query("axis", binary_only, {"type": "integer"}),
        _query(
            "dtype",
            f"{binary_only} Defaults to the dtype of the .npy array.",
            {"type": "string", "enum": ["float32", "float64"]},
        ),
        _query(
            "params",
            f"{binary_only} Each parameter as its own query parameter, e.g. ?negative_slope=0.1.",
            {"type": "object", "additionalProperties": {"type": "number"}},
            style="form",
            explode=True,
        ),
    ]
    if derivative:
        parameters += [
            _query("order", binary_only, {"type": "integer", "enum": [1, 2]}),
            _query("wrt", binary_only, {"type": "string", "enum": ["x", "params"]}),
        ]
    content = {
        JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}, "examples": examples},
        binary.NPY_MEDIA_TYPE: _BINARY
        | {"description": "x as an .npy file (float32 or float64, any shape); the rest in the query string."},
    }
    if derivative:
        content[binary.NPZ_MEDIA_TYPE] = _BINARY | {
            "description": "An .npz archive with the arrays x and grad (np.savez); the rest in the query string."
        }
    return {"requestBody": {"required": True, "content": content}, "parameters": parameters}


_NPY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result. With Accept: application/x-npy the result array is sent as an "
        ".npy file, with the activation and its parameters in the X-Activation and "
        "X-Activation-Params headers and the result's name in X-Activation-Result.",
        "content": {binary.NPY_MEDIA_TYPE: _BINARY},
    }
}


COMPUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("The body is not valid JSON, or a binary body is damaged or truncated."),
    401: _problem("An API key is required (when ACTIVATION_API_KEYS is set) and was missing or wrong."),
    413: _problem(
        "The body is over ACTIVATION_MAX_BODY_BYTES (default 64 MiB), an array over "
        "ACTIVATION_MAX_ELEMENTS (default 16,000,000 elements), or a Jacobian over "
        "ACTIVATION_MAX_JACOBIAN_ELEMENTS (default 25,000,000; send grad instead)."
    ),
    415: _problem("The body is neither JSON, .npy nor .npz."),
    503: _problem(
        "Over ACTIVATION_MAX_CONCURRENCY requests in progress, or the server shut down before "
        "finishing this request (ACTIVATION_DRAIN_SECONDS): retry after Retry-After seconds."
    ),
    422: _problem(
        "A field is invalid: unknown activation or parameter, a value out of bounds, "
        "x or grad not a finite rectangular array (or beyond the float32 range with dtype float32), "
        "axis out of range, unknown fields, order 2 of a vector function, wrt=params for a "
        "function without parameters, or a result too large for the dtype."
    ),
}


# -- the request pipeline ---------------------------------------------------------------


def parser_for(
    model: type[ActivateRequest], content_type: str, query: dict[str, str], max_elements: int = MAX_ELEMENTS
) -> Callable[[bytes | bytearray], ActivateRequest]:
    """The body parser for a content type: JSON, or .npy/.npz with the rest in the query string."""
    media_type = _media_type(content_type)
    if media_type == JSON_MEDIA_TYPE or media_type.endswith("+json"):
        _check_query(model, query)  # documented for binary bodies; sent anyway, it must still be valid
        return partial(_parse, model)
    if media_type in (binary.NPY_MEDIA_TYPE, binary.NPZ_MEDIA_TYPE):
        return partial(_parse_binary, model, media_type, query, max_elements)
    raise RequestError.one(
        415,
        "content-type",
        f"unsupported media type {media_type!r}; send {JSON_MEDIA_TYPE}, {binary.NPY_MEDIA_TYPE} or {binary.NPZ_MEDIA_TYPE}",
    )


Reply = tuple[str, dict[str, str], list[bytes | memoryview]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def serve(
    model: type[ActivateRequest],
    compute: Compute,
    headers: Mapping[str, str],
    query: dict[str, str],
    receive: Receive,
    limits: Limits,
    info: dict[str, Any] | None = None,
) -> Reply:
    """One compute request, from its ASGI ``receive`` to the encoded reply.

    ``headers`` are looked up by lower-case name.  The body is read within the
    limits, then parsed, computed and encoded in one pipeline: inline for small
    bodies, in a worker thread for large ones.
    """
    parse = parser_for(model, headers.get("content-type", JSON_MEDIA_TYPE), query, limits.max_elements)
    npy_out = NPY_MEDIA_TYPE in headers.get("accept", "")
    holder = [await read_body(receive, headers.get("content-length"), limits.max_body_bytes)]

    def pipeline() -> Reply:
        # The body leaves the holder as it is parsed, so it can be freed
        # before the result is computed and serialised.
        return encode(compute(parse(holder.pop()), limits=limits, info=info), npy_out)

    if len(holder[0]) <= INLINE_BODY_BYTES:
        return pipeline()
    return await in_daemon_thread(pipeline)


async def read_body(receive: Receive, content_length: str | None, limit: int) -> bytes | bytearray:
    """The request body in one buffer; 413 as soon as it exceeds ``limit`` bytes."""
    declared = int(content_length) if content_length and content_length.isdigit() else None
    if declared is not None and declared > limit:
        raise RequestError.one(
            413, "body", f"is {declared} bytes; the limit is {limit} (ACTIVATION_MAX_BODY_BYTES)"
        )
    message = await receive()
    chunk = message.get("body", b"")
    if not message.get("more_body", False):
        return bytes(chunk)  # the whole body in one message: no copy for bytes
    body = bytearray(declared or 0)
    size = 0
    while True:
        end = size + len(chunk)
        if end > limit:
            raise RequestError.one(
                413, "body", f"exceeds the limit of {limit} bytes (ACTIVATION_MAX_BODY_BYTES)"
            )
        body[size:end] = chunk  # within the declared size, or growing a chunked body
        size = end
        if not message.get("more_body", False):
            break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError.one(400, "body", "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
    del body[size:]
    return body


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _parse(model: type[M], body: bytes | bytearray) -> M:
    fast = codec.load_json_fast(body)
    if fast is not None:
        envelope, arrays = fast
        data: Any = envelope | arrays
    else:
        data = codec.load_json(body)
    if not isinstance(data, dict):
        raise RequestError.one(422, "body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(422, [_field_error(e, model) for e in exc.errors()]) from None


def _parse_binary(
    model: type[M], media_type: str, query: dict[str, str], max_elements: int, body: bytes | bytearray
) -> M:
    """A request from an .npy/.npz body and the query string (activation, axis, ... and parameters)."""
    if media_type == binary.NPY_MEDIA_TYPE:
        arrays = {"x": binary.read_npy(body, "x", max_elements)}
    else:
        arrays = binary.read_npz(body, max_elements)
    data: dict[str, Any] = {"dtype": np.dtype(arrays["x"][1]).name}
    fields = set(model.model_fields) - {"x", "grad", "params"}
    params: dict[str, Any] = {}
    for key, text in query.items():
        if key in ("axis", "order"):
            data[key] = _query_number(key, text, int)
        elif key in fields:
            data[key] = text
        else:
            params[key] = _query_number(f"params.{key}", text, float)
    if "grad" in arrays and "grad" not in model.model_fields:
        raise RequestError.one(422, "grad", "is not a known field here; send grad to /derivative")
    data |= {name: arr for name, (arr, _) in arrays.items()} | {"params": params}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(422, [_field_error(e, model) for e in exc.errors()]) from None


_QUERY_CHOICES = {"dtype": ("float32", "float64"), "wrt": ("x", "params"), "order": ("1", "2")}


def _check_query(model: type[BaseModel], query: dict[str, str]) -> None:
    """Refuse query parameters a binary body would refuse (with a JSON body they are unused)."""
    for key, text in query.items():
        if key == "activation":
            try:
                activations.get(text)
            except activations.UnknownActivation as exc:
                raise RequestError.one(422, "query.activation", exc.reason) from None
        elif key in _QUERY_CHOICES and key in model.model_fields:
            if text not in _QUERY_CHOICES[key]:
                raise RequestError.one(
                    422, f"query.{key}", f"must be one of {', '.join(_QUERY_CHOICES[key])}"
                )
        elif key == "axis":
            _query_number("query.axis", text, int)
        else:
            _query_number(f"query.{key}", text, float)


def _query_number(field: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise RequestError.one(422, field, f"must be {noun}, got {text[:40]!r}") from None


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


#: The fields of a response that hold the one result array.
_RESULTS = ("y", "dydx", "grad_x", "d2ydx2")


def encode(
    payload: dict[str, Any], npy: bool = False
) -> tuple[str, dict[str, str], list[bytes | memoryview]]:
    """Media type, extra headers and body pieces: JSON, or with ``npy`` the result
    array as an .npy body with the rest of the envelope in headers."""
    result = next((k for k in _RESULTS if k in payload), None)
    if npy and result is not None:
        headers = {
            "x-activation": payload["activation"],
            "x-activation-params": orjson.dumps(payload["params"]).decode(),
            "x-activation-result": result,
        }
        return binary.NPY_MEDIA_TYPE, headers, binary.npy_parts(payload[result])
    wire = {k: codec.wire(v) if isinstance(v, np.ndarray) else v for k, v in payload.items()}
    if "dydparams" in payload:
        wire["dydparams"] = {k: codec.wire(v) for k, v in payload["dydparams"].items()}
    return JSON_MEDIA_TYPE, {}, list(codec.dump_parts(wire))


def response_of(reply: Reply) -> Response:
    """An encoded reply as one Response (the FastAPI routes and in-process use)."""
    media_type, headers, parts = reply
    return Response(b"".join(parts), media_type=media_type, headers=headers)


_DTYPES: dict[str, type[np.float32] | type[np.float64]] = {"float32": np.float32, "float64": np.float64}


def _inputs(
    req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None
) -> tuple[Activation, dict[str, float], Array, int, type]:
    """The activation, its bound parameters, x as float64, the axis and the dtype of a request.

    ``info`` (the access log's record of the request) gets the activation and the element count.
    """
    entry = activations.get(req.activation)
    if info is not None:
        info["activation"] = entry.name
    params = entry.bind(req.params)
    dtype = _DTYPES[req.dtype]
    x = codec.to_array(req.x, "x", dtype)
    if x.size > limits.max_elements:
        raise RequestError.one(
            413, "x", f"has {x.size} elements; the limit is {limits.max_elements} (ACTIVATION_MAX_ELEMENTS)"
        )
    if info is not None:
        info["elements"] = int(x.size)
    axis = entry.check_axis(x, req.axis) if entry.kind == "vector" else req.axis
    return entry, params, x, axis, dtype


def compute_activate(
    req: ActivateRequest, limits: Limits = DEFAULT_LIMITS, info: dict[str, Any] | None = None
) -> dict[str, Any]:
    entry, params, x, axis, dtype = _inputs(req, limits, info)
    y = entry.value(x, params, axis, dtype)
    return _envelope(entry, params, axis, req.dtype, y.shape) | {"y": y}


def compute_derivative(
    req: ActivateRequest, limits: Limits = DEFAULT_LIMITS, info: dict[str, Any] | None = None
) -> dict[str, Any]:
    assert isinstance(req, DerivativeRequest)
    entry, params, x, axis, dtype = _inputs(req, limits, info)
    head = partial(_envelope, entry, params, axis, req.dtype)
    if req.order == 2:
        if req.grad is not None:
            raise ActivationError("grad", "applies to first derivatives; leave it out with order 2")
        if req.wrt == "params":
            raise ActivationError(
                "order", "second derivatives are taken with respect to x; use order 1 with wrt=params"
            )
        d2 = entry.second_derivative(x, params, dtype)
        return head(d2.shape) | {"d2ydx2": d2}
    if req.grad is None:
        if req.wrt == "params":
            grads = entry.parameter_jacobian(x, params, axis, dtype)
            return head(entry.output_shape(x.shape, axis)) | {"dydparams": grads}
        if entry.kind == "vector":
            size = math.prod(entry.output_shape(x.shape, axis)) * x.shape[axis]
            if size > limits.max_jacobian_elements:
                raise RequestError.one(
                    413,
                    "x",
                    f"the Jacobian would have {size} elements; the limit is {limits.max_jacobian_elements} "
                    "(ACTIVATION_MAX_JACOBIAN_ELEMENTS): send grad to get the vector-Jacobian product instead",
                )
        dydx = entry.jacobian(x, params, axis, dtype)
        return head(dydx.shape) | {"dydx": dydx}
    g = codec.to_array(req.grad, "grad", dtype)
    expected = entry.output_shape(x.shape, axis)
    if g.shape != expected:
        whose = "x's shape" if expected == x.shape else "the shape of y"
        raise ActivationError("grad", f"has shape {list(g.shape)}; it must have {whose} {list(expected)}")
    if req.wrt == "params":
        return head(()) | {"grad_params": entry.parameter_vjp(x, g, params, axis, dtype)}
    grad_x = entry.vector_jacobian_product(x, g, params, axis, dtype)
    return head(grad_x.shape) | {"grad_x": grad_x}


def activate_json(body: bytes) -> Response:
    """The whole JSON pipeline in-process: parse, compute, serialise (used by the benchmark)."""
    return response_of(encode(compute_activate(_parse(ActivateRequest, body))))


# -- routes ------------------------------------------------------------------------------


@router.post(
    "/activate",
    operation_id="activate",
    summary="Evaluate an activation function",
    response_model=ActivateResponse,
    response_model_exclude_none=True,
    responses=COMPUTE_ERRORS | _NPY_RESPONSE,
    openapi_extra=_body(ActivateRequest, request_examples()),
    tags=["compute"],
)
async def activate(request: Request) -> Response:
    """y = f(x) for every element of x (vector functions such as softmax: along `axis`)."""
    return await _route(request, ActivateRequest, compute_activate)


@router.post(
    "/derivative",
    operation_id="derivative",
    summary="Differentiate an activation function at x",
    response_model=DerivativeResponse,
    response_model_exclude_none=True,
    responses=COMPUTE_ERRORS | _NPY_RESPONSE,
    openapi_extra=_body(DerivativeRequest, request_examples(derivative=True), derivative=True),
    tags=["compute"],
)
async def derivative(request: Request) -> Response:
    """The derivative at the input x (never at an already-activated value).

    Without `grad`: `dydx`, which is f'(x) for elementwise functions and the Jacobian
    along `axis` (shape x.shape + [n]) for vector functions. With `grad` (dL/dy, x's
    shape): `grad_x` = gᵀJ, the vector-Jacobian product that backpropagation needs.
    """
    return await _route(request, DerivativeRequest, compute_derivative)


async def _route(request: Request, model: type[ActivateRequest], compute: Compute) -> Response:
    # service.fastpath serves these two operations in front of FastAPI; this
    # runs when the FastAPI application is served alone.  Same pipeline.
    query = dict(request.query_params)
    limits = request.app.state.limits  # set by service.app.create_fastapi_app
    return response_of(await serve(model, compute, request.headers, query, request.receive, limits))


UseTag = Enum("UseTag", {tag: tag for tag in activations.USES}, type=str)  # type: ignore[misc]
_CATALOG = {entry.name: ActivationInfo.of(entry) for entry in activations.entries()}


@router.get(
    "/activations",
    operation_id="list_activations",
    summary="The catalog of activation functions",
    response_model=Catalog,
    responses={401: COMPUTE_ERRORS[401], 422: _problem("Unknown value of `use`.")},
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
    responses={401: COMPUTE_ERRORS[401], 404: _problem("No activation has this name or alias.")},
    tags=["catalog"],
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


@router.get("/healthz", operation_id="healthz", summary="Liveness", response_model=Health, tags=["health"])
async def healthz() -> Response:
    """200 while the process serves requests."""
    return Response(_OK, media_type=JSON_MEDIA_TYPE)


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    tags=["health"],
)
def metrics() -> Response:
    """Requests by route, status and activation; latency; elements computed; requests in flight."""
    from .observe import metrics_text

    body, media_type = metrics_text()
    return Response(body, media_type=media_type)


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness",
    response_model=Health,
    responses={503: _problem("Draining after SIGTERM: in-flight requests finish, new ones go elsewhere.")},
    tags=["health"],
)
async def readyz() -> Response:
    """200 when the service is ready to take traffic; 503 while it drains."""
    if DRAINING.is_set():
        raise RequestError(503, [("", "draining: the process is shutting down")], {"retry-after": "1"})
    return Response(_OK, media_type=JSON_MEDIA_TYPE)
