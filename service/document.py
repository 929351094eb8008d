"""The OpenAPI document: FastAPI's, for the routes it serves, plus the compute operations of the table.

The compute operations are served by :mod:`service.pipeline`, not by FastAPI,
so their entries are written here from the route table and the request and
response models.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from . import activations, binary
from .routes import TABLE, UNAUTHORIZED, Operation, documented_problem
from .schemas import (
    ACTIVATION_NAME_SCHEMA,
    NUMBER_ARRAY_SCHEMA,
    DerivativeRequest,
    Problem,
    request_examples,
)

JSON_MEDIA_TYPE = "application/json"
OCTET_MEDIA_TYPE = "application/octet-stream"
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _binary(description: str) -> dict[str, Any]:
    """A binary media type; its description goes in the schema (a media type object has none)."""
    return {"schema": _BINARY["schema"] | {"description": description}}


COMPUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: documented_problem("The body is not valid JSON, or a binary body is damaged or truncated."),
    401: UNAUTHORIZED,
    408: documented_problem(
        "The body paused longer than ACTIVATION_BODY_TIMEOUT (default 10 s), or the request took "
        "longer than ACTIVATION_REQUEST_TIMEOUT (default 60 s) to arrive."
    ),
    413: documented_problem(
        "The body is over ACTIVATION_MAX_BODY_BYTES (default 64 MiB), an array over "
        "ACTIVATION_MAX_ELEMENTS (default 16,000,000 elements), a Jacobian over "
        "ACTIVATION_MAX_JACOBIAN_ELEMENTS (default 25,000,000; send grad instead), or the request "
        "would need more memory than ACTIVATION_MEMORY_BUDGET_BYTES (default 512 MiB) allows; the "
        "reason names the cheaper form (grad instead of the Jacobian, .npy instead of JSON)."
    ),
    415: documented_problem("The body is neither JSON, .npy nor .npz."),
    422: documented_problem(
        "A field is invalid: unknown activation or parameter, a value out of bounds, "
        "x or grad not a finite rectangular array (or beyond the float32 range with dtype float32), "
        "axis out of range, unknown or repeated fields, order 2 of a vector function, wrt=params for a "
        "function without parameters, or a result too large for the dtype."
    ),
    503: documented_problem(
        "Over ACTIVATION_MAX_CONCURRENCY requests in progress, the memory budget taken by other "
        "requests, or the server shut down before finishing this request (ACTIVATION_DRAIN_SECONDS): "
        "retry after Retry-After seconds."
    ),
}


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _parameter_queries() -> list[dict[str, Any]]:
    """One query parameter per activation parameter name, saying which activations take it."""
    users: dict[str, list[str]] = {}
    choices: dict[str, list[float]] = {}
    integers: set[str] = set()
    for entry in activations.entries():
        for p in entry.params:
            users.setdefault(p.name, []).append(entry.name)
            if p.choices:
                choices[p.name] = list(p.choices)
            if p.integer:
                integers.add(p.name)
    # A choice is written as its range and named in the description: generators (openapi-python-client)
    # take no enum of numbers.
    return [
        _query(
            name,
            f"Parameter of {', '.join(users[name])} (bounds and default: GET /activations/{{name}})"
            + (f"; one of {', '.join(f'{c:g}' for c in choices[name])}." if name in choices else "."),
            {"type": "number", "minimum": min(choices[name]), "maximum": max(choices[name])}
            if name in choices
            else {"type": "integer", "minimum": 0}
            if name in integers
            else {"type": "number"},
        )
        for name in sorted(users)
    ]


def _binary_operation(op: Operation, derivative: bool) -> dict[str, Any]:
    """Parameters, body and 200 of an operation on NumPy files."""
    parameters = [
        _query("activation", "The activation.", ACTIVATION_NAME_SCHEMA | {"example": "gelu"}, required=True),
        _query(
            "axis", "Vector functions (softmax) work along this axis.", {"type": "integer", "default": -1}
        ),
        _query(
            "dtype",
            "float32 or float64; defaults to the dtype of the .npy array.",
            {"type": "string", "enum": ["float32", "float64"]},
        ),
    ]
    if derivative:
        parameters += [
            _query("order", "2: the second derivative.", {"type": "integer", "enum": [1, 2], "default": 1}),
            _query(
                "wrt",
                "params: derivatives with respect to the parameters.",
                {"type": "string", "enum": ["x", "params"], "default": "x"},
            ),
        ]
    # One media type for the file, as generators expect (they skip operations whose body is a
    # type they do not know); the server tells .npy from .npz by their first bytes, and takes them
    # labelled application/x-npy and application/x-npz as well.
    what = "x as an .npy file (float32 or float64, any shape)"
    if derivative:
        what += (
            ", or an .npz archive holding the arrays x and grad (np.savez) for the vector-Jacobian product"
        )
    content = {
        OCTET_MEDIA_TYPE: _binary(
            f"{what}. Sent as application/x-npy or application/x-npz, it is taken as well."
        )
    }
    ok = {
        "description": "The result array as an .npy file (the JSON envelope with Accept: application/json); "
        "the activation, its parameters and the result's name are in the X-Activation, "
        "X-Activation-Params and X-Activation-Result headers.",
        "content": {binary.NPY_MEDIA_TYPE: _BINARY, OCTET_MEDIA_TYPE: _BINARY},
    }
    return {
        "parameters": parameters + _parameter_queries(),
        "requestBody": {"required": True, "content": content},
        "responses": {"200": ok},
    }


def _json_operation(op: Operation, derivative: bool) -> dict[str, Any]:
    """Body and 200 of an operation on JSON."""
    assert op.compute is not None
    model = op.compute.model.__name__
    response = op.compute.response_model.__name__
    examples = (
        op.compute.examples() if op.compute.examples is not None else request_examples(derivative=derivative)
    )
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model}"}, "examples": examples}
            },
        },
        "responses": {
            "200": {
                "description": "The result.",
                "content": {JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{response}"}}},
            }
        },
    }


def _compute_operation(op: Operation) -> dict[str, Any]:
    """The OpenAPI operation object of a compute operation."""
    assert op.compute is not None
    derivative = issubclass(op.compute.model, DerivativeRequest)
    body = (_binary_operation if op.compute.binary else _json_operation)(op, derivative)
    operation = {
        "tags": list(op.tags),
        "summary": op.summary,
        "description": op.route.get("description", ""),
        "operationId": op.operation_id,
    } | body
    operation["responses"] |= {str(status): answer for status, answer in sorted(COMPUTE_ERRORS.items())}
    return operation


def _without_lone_all_of(node: Any) -> Any:
    """``node`` with every schema that is only ``{"allOf": [s]}`` replaced by ``s``.

    pydantic wraps the NumberArray reference in an allOf so that sibling keys survive; where
    there are none (the values of dydparams), the wrapper is noise that linters flag.
    """
    if isinstance(node, list):
        return [_without_lone_all_of(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.keys() == {"allOf"} and len(node["allOf"]) == 1:
        return _without_lone_all_of(node["allOf"][0])
    return {key: _without_lone_all_of(value) for key, value in node.items()}


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the compute operations and the schemas of the bodies they parse."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        license_info=app.license_info,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    compute = [op for op in TABLE if op.compute is not None and op.operation_id is not None]
    paths = {op.path: {op.method.lower(): _compute_operation(op)} for op in compute}
    schema["servers"] = [{"url": "/", "description": "The server that serves this document."}]
    schema["paths"] = paths | schema.get("paths", {})
    requests = list(dict.fromkeys(op.compute.model for op in compute if op.compute))
    models: list[Any] = [(model, "validation") for model in requests] + [(Problem, "validation")]
    models += [(op.compute.response_model, "serialization") for op in compute if op.compute]
    _, extra = models_json_schema(models, ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI documents a 422 with its own error shape on every route that has
    # parameters; the routes here answer problem+json, documented per route.
    for item in schema["paths"].values():
        for operation in item.values():
            default_422 = operation["responses"].get("422", {})
            if "HTTPValidationError" in str(default_422):
                del operation["responses"]["422"]
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.update(_without_lone_all_of(extra.get("$defs", {})))
    components["NumberArray"] = NUMBER_ARRAY_SCHEMA
    # Request bodies are written where they are used: openapi-typescript makes every property
    # that has a default a required one, except under a requestBody.
    for served in compute:
        operation = schema["paths"][served.path][served.method.lower()]
        media = operation["requestBody"]["content"].get(JSON_MEDIA_TYPE)
        if media is not None:
            body = components.pop(media["schema"]["$ref"].rsplit("/", 1)[1])
            body.pop("title", None)  # generators name it after the operation: ActivateBody
            media["schema"] = body
    # The Authorize button of /docs: a bearer key, required only when ACTIVATION_API_KEYS is set.
    schema["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An ACTIVATION_API_KEYS key, when keys are set.",
        }
    }
    by_path = {op.path: op for op in TABLE}
    for path, item in schema["paths"].items():
        op = by_path.get(path)
        for operation in item.values():
            # Keyed routes take the bearer key when keys are set; open routes never need one.
            operation["security"] = [] if op is not None and op.open else [{"bearer": []}, {}]
    app.openapi_schema = schema
    return schema
