"""The Open Inference Protocol (KServe v2, Triton), REST binding, free of HTTP: a body in, a plan out,
a payload to the bytes of a reply.

Every catalog name and alias is a model.  A model's inputs are ``x`` and,
optional, ``grad`` (the upstream gradient, y's shape, x's datatype); its
outputs are named like the JSON API's fields: ``y``, ``dydx`` and ``d2ydx2``
(the latter elementwise functions only) and ``grad_x`` (with ``grad``).
Without ``outputs`` a request gets ``y``, and ``grad_x`` when it sends ``grad``.
The activation's parameters and ``axis`` travel in the request's
``parameters`` under their catalog names.

Tensors come as JSON (``data``, flat or nested, row-major) or, with the
binary tensor data extension, as little-endian row-major bytes after the JSON
header (``Inference-Header-Content-Length``, ``binary_data_size``); outputs go
back the same ways (``binary_data``, ``binary_data_output``).  Datatypes FP32
and FP64.  Every size is checked against the body and the element limit
before anything is allocated from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import simdjson

from . import __version__, activations, codec, decode, operations
from .activations import ActivationError
from .problems import RequestError
from .schemas import DerivativeRequest

HEADER_LENGTH = "inference-header-content-length"
JSON_MEDIA_TYPE = "application/json"
BINARY_MEDIA_TYPE = "application/octet-stream"
DATATYPES: dict[str, Any] = {
    "FP64": np.float64,
    "FP32": np.float32,
    "FP16": np.float16,
    "BF16": ml_dtypes.bfloat16,  # (as float16: correctly rounded)
}
DTYPE_NAMES = {"FP64": "float64", "FP32": "float32", "FP16": "float16", "BF16": "bfloat16"}
INPUTS = ("x", "grad")
OUTPUTS = ("y", "dydx", "d2ydx2", "grad_x")
VERSION = "1"
#: Request-level parameters that are the protocol's, not the activation's. tritonclient's
#: ``priority`` and ``timeout`` (scheduling hints) are accepted and have no effect.
_PROTOCOL_PARAMETERS = ("binary_data_output", "axis", "priority", "timeout")
#: Top-level fields of a request; KServe's client also sends model_name (and may send model_version).
_REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs", "model_name", "model_version")


def server_metadata() -> dict[str, Any]:
    return {"name": "activation-service", "version": __version__, "extensions": ["binary_tensor_data"]}


def model(name: str, version: str | None = None) -> activations.Activation:
    """The activation a model name (canonical or alias) and version stand for; 404 otherwise."""
    try:
        entry = activations.get(name)
    except activations.UnknownActivation:
        raise RequestError.one(
            404, "model", f"unknown model {name[:100]!r}; every activation of GET /activations is a model"
        ) from None
    if version is not None and version != VERSION:
        raise RequestError.one(404, "model_version", f"model {name[:100]!r} has only version {VERSION}")
    return entry


def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
    entry = model(name, version)
    outputs = ["y", "dydx", "grad_x"] if entry.kind == "vector" else ["y", "dydx", "d2ydx2", "grad_x"]
    tensor = {"datatype": "FP64", "shape": [-1]}  # FP32 as well; any shape
    return {
        "name": name,
        "versions": [VERSION],
        "platform": "activation-service",
        "inputs": [{"name": n} | tensor for n in INPUTS],
        "outputs": [{"name": n} | tensor for n in outputs],
        "parameters": {
            "activation": entry.name,
            "kind": entry.kind,
            "parameters": ",".join(p.name for p in entry.params),
            "datatypes": ",".join(DATATYPES),
        },
    }


# -- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferRequest:
    """A validated inference request: the JSON API's request, and which outputs go back how."""

    model_name: str
    id: str | None
    request: DerivativeRequest
    #: (output name, as binary data) in the order they are answered.
    outputs: tuple[tuple[str, bool], ...]


def split(body: bytes | bytearray, header_length: str | None) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary part of a body (Inference-Header-Content-Length)."""
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    text = header_length.strip()
    if not text.isdigit() or not text.isascii():
        raise RequestError.one(400, "Inference-Header-Content-Length", "must be a non-negative integer")
    length = int(text)
    if length == 0:
        raise RequestError.one(
            400, "Inference-Header-Content-Length", "is 0 (a raw binary body): send the JSON header first"
        )
    if length > len(body):
        raise RequestError.one(
            400,
            "Inference-Header-Content-Length",
            f"is {length}, beyond the body's {len(body)} bytes",
        )
    return view[:length], view[length:]


def cost(body: bytes | bytearray, header_length: str | None) -> tuple[int, int]:
    """Bytes that decoding ``body`` holds at its peak, and the numbers it holds at most, from the
    body alone: the JSON header's commas, and the binary part at 4 bytes a number."""
    head, tail = split(body, header_length)
    numbers = codec.count_byte(head, b",") + 1 + len(tail) // 4
    return len(body) + decode.document_cost(len(head), numbers) + 8 * numbers, numbers


def _load_header(head: memoryview) -> dict[str, Any]:
    """The JSON header as plain values, the arrays under inputs[].data as float64 arrays where flat."""
    if len(head) <= codec.EXACT_MAX_BYTES:
        data = codec.load_json(bytes(head))
    else:
        try:
            data = _load_large(bytes(head))
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
            raise codec.diagnose(bytes(head)) from None
    if not isinstance(data, dict):
        raise RequestError.one(400, "body", "must be a JSON object (the inference request)")
    return data


def _load_large(head: bytes) -> dict[str, Any]:
    """A large JSON header (its tensors' data inline): the data of each input read as one buffer."""
    doc = simdjson.Parser().parse(head)
    if not isinstance(doc, simdjson.Object):
        raise RequestError.one(400, "body", "must be a JSON object (the inference request)")
    codec.check_keys("body", list(doc.keys()))
    out: dict[str, Any] = {}
    for key in doc.keys():  # noqa: SIM118 (a simdjson Object, not a dict)
        value = doc[key]
        if key != "inputs" or not isinstance(value, simdjson.Array):
            out[key] = (
                value.as_dict()
                if isinstance(value, simdjson.Object)
                else (value.as_list() if isinstance(value, simdjson.Array) else value)
            )
            continue
        inputs: list[Any] = []
        for item in value:
            if not isinstance(item, simdjson.Object):
                inputs.append(item.as_list() if isinstance(item, simdjson.Array) else item)
                continue
            codec.check_keys("inputs[]", list(item.keys()))
            tensor: dict[str, Any] = {}
            for field in item.keys():  # noqa: SIM118
                part = item[field]
                if field == "data" and isinstance(part, simdjson.Array):
                    try:
                        tensor[field] = np.frombuffer(part.as_buffer(of_type="d"), dtype=np.float64)
                    except (ValueError, TypeError):
                        tensor[field] = part.as_list()  # nested, or not all numbers: checked below
                elif isinstance(part, simdjson.Object):
                    tensor[field] = part.as_dict()
                elif isinstance(part, simdjson.Array):
                    tensor[field] = part.as_list()
                else:
                    tensor[field] = part
            inputs.append(tensor)
        out[key] = inputs
    return out


def parse(
    model_name: str,
    version: str | None,
    body: bytes | bytearray,
    header_length: str | None,
    max_elements: int,
) -> InferRequest:
    """An inference request from its body; 400 naming the tensor or parameter, 413 past the limits."""
    entry = model(model_name, version)
    if header_length is None and b'"binary_data_size"' in body:
        raise RequestError.one(
            400,
            "Inference-Header-Content-Length",
            "is required when tensors are sent as binary data (binary_data_size): "
            "it gives the length of the JSON header that precedes them",
        )
    head, tail = split(body, header_length)
    data = _load_header(head)
    for key in data:
        if key not in _REQUEST_FIELDS:
            raise RequestError.one(
                400, key[:100], f"is not a field of an inference request: {', '.join(_REQUEST_FIELDS)}"
            )
    # KServe's client repeats the model in the body: it must be the one in the path.
    if "model_name" in data and data["model_name"] != model_name:
        named = data["model_name"]
        shown = named[:100] if isinstance(named, str) else _kind(named)
        raise RequestError.one(
            400, "model_name", f"is {shown!r}, but the path names model {model_name[:100]!r}"
        )
    if "model_version" in data and data["model_version"] not in ("", VERSION):
        raise RequestError.one(400, "model_version", f"must be {VERSION!r}, the only version")
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError.one(400, "id", "must be a string")
    parameters = _object(data.get("parameters", {}), "parameters")
    inputs = _inputs(data.get("inputs"), tail, max_elements)
    x, dtype = inputs["x"]
    grad = inputs.get("grad")
    if grad is not None and grad[1] != dtype:
        raise RequestError.one(400, "inputs.grad", f"has datatype {grad[1]}; it must be x's, {dtype}")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise RequestError.one(400, "parameters.binary_data_output", "must be true or false")
    params: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in _PROTOCOL_PARAMETERS:
            continue
        declared = next((p for p in entry.params if p.name == key), None)
        if declared is None:  # whatever its value: the name is what is wrong
            expected = ", ".join(p.name for p in entry.params) or "none"
            raise RequestError.one(
                400, f"parameters.{key[:100]}", f"unknown parameter for {entry.name}; expected: {expected}"
            )
        if (
            isinstance(value, str)
            and declared is not None
            and (declared.length is not None or declared.channels)
        ):
            # an array parameter: comma-separated numbers (the protocol's parameters are strings,
            # numbers and booleans)
            params[key] = decode.query_param(f"parameters.{key[:100]}", value)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError.one(
                400,
                f"parameters.{key[:100]}",
                f"must be a number (an array parameter: a string of comma-separated numbers), got {_kind(value)}",
            )
        params[key] = float(value)
    axis = parameters.get("axis", -1)
    if type(axis) is not int:
        raise RequestError.one(400, "parameters.axis", f"must be an integer, got {_kind(axis)}")
    fields = {"activation": entry.name, "x": x, "params": params, "axis": axis, "dtype": DTYPE_NAMES[dtype]}
    if grad is not None:
        fields["grad"] = grad[0]
    try:
        request = decode.validate(DerivativeRequest, fields)
    except RequestError as exc:  # the parameters, as the JSON API checks them
        raise _renamed(exc) from None
    outputs = _outputs(data.get("outputs"), binary_default, entry, grad is not None)
    return InferRequest(model_name, request_id, request, outputs)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError.one(400, field, f"must be an object, got {_kind(value)}")
    codec.check_keys(field, list(value))
    return value


def _named(item: dict[str, Any], field: str, names: tuple[str, ...]) -> str:
    """The name of an input or a requested output, one of ``names``."""
    name = item.get("name")
    if not isinstance(name, str) or name not in names:
        shown = repr(name[:100]) if isinstance(name, str) else _kind(name)
        raise RequestError.one(
            400, field, f"unknown {field[:-1]} {shown}; the {field} are {', '.join(names)}"
        )
    return name


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, list | np.ndarray):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return repr(value)[:40]


def _shape(value: Any, field: str, max_elements: int) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > codec.MAX_DEPTH:
        raise RequestError.one(400, field, f"must be a list of at most {codec.MAX_DEPTH} dimensions")
    if any(type(d) is not int or d < 0 for d in value):
        raise RequestError.one(400, field, "must hold non-negative integers")
    size = math.prod(value)
    if size > max_elements:
        raise RequestError(
            413, [(field, f"declares {size} elements; the limit is {max_elements} (ACTIVATION_MAX_ELEMENTS)")]
        )
    if size == 0:
        raise RequestError.one(400, field, "declares no elements; send at least one")
    return tuple(value)


def _inputs(value: Any, tail: memoryview, max_elements: int) -> dict[str, tuple[np.ndarray[Any, Any], str]]:
    """The input tensors by name, as arrays of their datatype, and the datatype's name."""
    if not isinstance(value, list) or not value:
        raise RequestError.one(400, "inputs", "must be a non-empty list of tensors (x, and optionally grad)")
    if len(value) > len(INPUTS):
        raise RequestError.one(400, "inputs", f"has {len(value)} tensors; the inputs are {', '.join(INPUTS)}")
    out: dict[str, tuple[np.ndarray[Any, Any], str]] = {}
    offset = 0
    total = 0
    for item in value:
        tensor = _object(item, "inputs[]")
        name = _named(tensor, "inputs", INPUTS)
        field = f"inputs.{name}"
        if name in out:
            raise RequestError.one(400, field, "is given more than once")
        for key in tensor:
            if key not in ("name", "shape", "datatype", "parameters", "data"):
                raise RequestError.one(400, f"{field}.{key[:100]}", "is not a field of an input tensor")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            shown = datatype[:40] if isinstance(datatype, str) else _kind(datatype)
            raise RequestError.one(
                400, f"{field}.datatype", f"is {shown!r}; supported: {', '.join(DATATYPES)}"
            )
        shape = _shape(tensor.get("shape"), f"{field}.shape", max_elements)
        total += math.prod(shape)
        if total > max_elements:
            raise RequestError(
                413,
                [
                    (
                        field,
                        f"the inputs hold {total} elements; the limit is {max_elements} (ACTIVATION_MAX_ELEMENTS)",
                    )
                ],
            )
        dtype = np.dtype(DATATYPES[datatype])
        parameters = _object(tensor.get("parameters", {}), f"{field}.parameters")
        for key in parameters:
            if key != "binary_data_size":
                raise RequestError.one(
                    400, f"{field}.parameters.{key[:100]}", "is not supported (binary_data_size is)"
                )
        if "binary_data_size" in parameters:
            size = parameters["binary_data_size"]
            if "data" in tensor:
                raise RequestError.one(400, field, "has both data and binary_data_size; send one")
            if type(size) is not int or size < 0:
                raise RequestError.one(
                    400, f"{field}.parameters.binary_data_size", "must be a non-negative integer"
                )
            expected = math.prod(shape) * dtype.itemsize
            if size != expected:
                raise RequestError.one(
                    400,
                    f"{field}.parameters.binary_data_size",
                    f"is {size} bytes; shape {list(shape)} of {datatype} takes {expected}",
                )
            if offset + size > len(tail):
                raise RequestError.one(
                    400, field, f"its binary data runs past the body's end ({len(tail) - offset} bytes left)"
                )
            raw = tail[offset : offset + size]
            if datatype == "BF16":  # 16-bit patterns, little-endian
                arr = np.frombuffer(raw, dtype="<u2").astype(np.uint16).view(ml_dtypes.bfloat16)
            else:
                arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
            arr = arr.reshape(shape)
            if datatype in ("FP16", "BF16"):
                arr = arr.astype(np.float64)  # exact; rounded to the format again, a no-op
            offset += size
        elif "data" in tensor:
            arr = _json_data(tensor["data"], field, shape)
        else:
            raise RequestError.one(400, field, "has neither data nor parameters.binary_data_size")
        out[name] = (arr, datatype)
    if offset != len(tail):
        raise RequestError.one(
            400,
            "body",
            f"{len(tail) - offset} bytes of binary data follow the tensors' binary_data_size; "
            "Inference-Header-Content-Length must be the JSON header's length",
        )
    if "x" not in out:
        raise RequestError.one(400, "inputs.x", "is required")
    return out


def _json_data(value: Any, field: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """A tensor's JSON data, flat or nested to its shape, as float64 (the JSON API's checks follow)."""
    if isinstance(value, np.ndarray):  # a large header's flat numbers
        arr = value
    elif isinstance(value, list):
        arr = codec.to_array(value, f"{field}.data")
    else:
        raise RequestError.one(400, f"{field}.data", f"must be a list of numbers, got {_kind(value)}")
    if arr.shape == shape:
        return arr
    if arr.ndim == 1 and arr.size == math.prod(shape):
        return arr.reshape(shape)
    what = f"holds {arr.size} numbers" if arr.ndim == 1 else f"is nested to shape {list(arr.shape)}"
    raise RequestError.one(400, f"{field}.data", f"{what}; the tensor's shape is {list(shape)}")


def _outputs(
    value: Any, binary_default: bool, entry: activations.Activation, has_grad: bool
) -> tuple[tuple[str, bool], ...]:
    if value is None:
        names = [("y", binary_default)]
        if has_grad:
            names.append(("grad_x", binary_default))
        return tuple(names)
    if not isinstance(value, list) or not value:
        raise RequestError.one(400, "outputs", "must be a non-empty list of requested outputs")
    out: list[tuple[str, bool]] = []
    for item in value:
        requested = _object(item, "outputs[]")
        name = _named(requested, "outputs", OUTPUTS)
        field = f"outputs.{name}"
        if any(name == seen for seen, _ in out):
            raise RequestError.one(400, field, "is requested more than once")
        for key in requested:
            if key not in ("name", "parameters"):
                raise RequestError.one(400, f"{field}.{key[:100]}", "is not a field of a requested output")
        parameters = _object(requested.get("parameters", {}), f"{field}.parameters")
        binary = binary_default
        for key, flag in parameters.items():
            if key == "binary_data":
                if not isinstance(flag, bool):
                    raise RequestError.one(400, f"{field}.parameters.binary_data", "must be true or false")
                binary = flag
            elif key == "classification" and flag == 0:
                continue  # tritonclient's default: no classification
            else:
                raise RequestError.one(
                    400, f"{field}.parameters.{key[:100]}", "is not supported (binary_data is)"
                )
        if name == "grad_x" and not has_grad:
            raise RequestError.one(400, field, "needs the input grad (the upstream gradient dL/dy)")
        if name == "d2ydx2" and entry.kind == "vector":
            raise RequestError.one(
                400, field, f"{entry.name} is a vector function: its second derivative is not offered"
            )
        out.append((name, binary))
    return tuple(out)


# -- planning and answering -------------------------------------------------------------------


def _renamed(exc: RequestError | ActivationError) -> RequestError:
    """An error of the JSON API's checks, its fields named as the protocol names them."""
    pairs = [(exc.field, exc.reason)] if isinstance(exc, ActivationError) else exc.errors
    status = exc.status if isinstance(exc, RequestError) else 422
    renamed = []
    for field, reason in pairs:
        if field.startswith("params."):
            field = "parameters." + field[len("params.") :]
        elif field == "axis":
            field = "parameters.axis"
        elif field == "dtype":
            field = "inputs.x.datatype"
        elif field.startswith(("x", "grad")):
            field = "inputs." + field
        renamed.append((field, reason))
    return RequestError(status, renamed, exc.headers if isinstance(exc, RequestError) else None)


def plan(req: InferRequest, limits: operations.Limits, info: dict[str, Any] | None = None) -> operations.Plan:
    """The plans of the requested outputs, as one."""
    base = req.request
    plans: list[tuple[str, bool, operations.Plan]] = []
    try:
        for name, binary in req.outputs:
            if name == "y":
                sub = operations.plan_activate(base, limits, info)
            else:
                update: dict[str, Any] = {"order": 2 if name == "d2ydx2" else 1}
                if name != "grad_x":
                    update["grad"] = None
                sub = operations.plan_derivative(base.model_copy(update=update), limits, info)
            plans.append((name, binary, sub))
    except (RequestError, ActivationError) as exc:
        raise _renamed(exc) from None
    result_keys = {"y": "y", "dydx": "dydx", "d2ydx2": "d2ydx2", "grad_x": "grad_x"}

    def run() -> dict[str, Any]:
        outputs = []
        head: dict[str, Any] = {}
        try:
            for name, binary, sub in plans:
                payload = sub.run()
                result = np.asarray(payload[result_keys[name]])
                if base.dtype == "bfloat16":  # held as the same numbers in float32 until here
                    result = result.astype(ml_dtypes.bfloat16)
                outputs.append((name, binary, result))
                head = payload
        except (RequestError, ActivationError) as exc:
            raise _renamed(exc) from None
        parameters: dict[str, Any] = {"activation": head["activation"]}
        for key, value in head["params"].items():
            # an array parameter as it came: comma-separated numbers (the protocol has no arrays)
            parameters[key] = ",".join(repr(float(v)) for v in value) if isinstance(value, tuple) else value
        if "axis" in head:
            parameters["axis"] = head["axis"]
        return {"model_name": req.model_name, "id": req.id, "parameters": parameters, "outputs": outputs}

    return operations.Plan(
        run,
        sum(p.work for _, _, p in plans),
        sum(p.workspace for _, _, p in plans),
        sum(p.result_elements for _, _, p in plans),
        base.dtype,
    )


_DATATYPE_OF = {np.dtype(t): name for name, t in DATATYPES.items()}


def encode(payload: dict[str, Any]) -> tuple[str, dict[str, str], list[bytes | memoryview]]:
    """The reply: the JSON header, then the binary outputs' bytes in order (little-endian, row-major)."""
    head: dict[str, Any] = {"model_name": payload["model_name"], "model_version": VERSION}
    if payload["id"] is not None:
        head["id"] = payload["id"]
    head["parameters"] = payload["parameters"]
    described = []
    binaries: list[bytes | memoryview] = []
    arrays: list[np.ndarray[Any, Any]] = []
    for name, binary, arr in payload["outputs"]:
        arr = np.ascontiguousarray(arr)
        tensor: dict[str, Any] = {"name": name, "datatype": _DATATYPE_OF[arr.dtype], "shape": list(arr.shape)}
        if binary:
            if arr.dtype == ml_dtypes.bfloat16:
                data = arr.view(np.uint16).astype("<u2", copy=False)
            else:
                data = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            tensor["parameters"] = {"binary_data_size": data.nbytes}
            binaries.append(data.reshape(-1).view(np.uint8).data)
        else:
            # JSON numbers: bfloat16 as the same numbers in float32 (which JSON writers know).
            arrays.append((arr.astype(np.float32) if arr.dtype == ml_dtypes.bfloat16 else arr).reshape(-1))
            tensor["data"] = len(arrays) - 1  # replaced by the array's numbers below
        described.append(tensor)
    head["outputs"] = described
    parts = _json_parts(head, arrays)
    headers: dict[str, str] = {}
    if binaries:
        headers[HEADER_LENGTH] = str(sum(len(p) for p in parts))
        return BINARY_MEDIA_TYPE, headers, parts + binaries
    return JSON_MEDIA_TYPE, headers, parts


def _json_parts(head: dict[str, Any], arrays: list[np.ndarray[Any, Any]]) -> list[bytes | memoryview]:
    """The JSON header in pieces, each output's data written as its numbers (large arrays in pieces)."""
    marked = head | {
        "outputs": [t | {"data": f"\x00data:{t['data']}\x00"} if "data" in t else t for t in head["outputs"]]
    }
    text = orjson.dumps(marked)
    parts: list[bytes | memoryview] = []
    for i, arr in enumerate(arrays):
        before, text = text.split(orjson.dumps(f"\x00data:{i}\x00"), 1)
        parts.append(before)
        codec.array_pieces(arr, parts)
    parts.append(text)
    return parts


def reply_bytes(elements: int, dtype: str) -> int:
    """An upper bound of the reply's size (as JSON, the larger)."""
    return 25 * elements + 4096


Planner = Callable[[InferRequest, operations.Limits, dict[str, Any] | None], operations.Plan]
