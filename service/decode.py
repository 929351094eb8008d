"""Request bytes to a validated request model: JSON, or .npy/.npz with the rest in the query string.

The body parser for a content type is chosen before the body is read (415
early), and the memory that decoding a body will hold is estimated from the
body before it is decoded (:func:`decode_cost`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from . import activations, binary, codec
from .activations.registry import MAX_CHANNELS
from .problems import RequestError

JSON_MEDIA_TYPE = "application/json"
NPY_MEDIA_TYPE = binary.NPY_MEDIA_TYPE
NPZ_MEDIA_TYPE = binary.NPZ_MEDIA_TYPE
#: Taken by the operations on NumPy files as well: an .npy file or an .npz archive, told apart
#: by their first bytes (what generated clients send for a binary body).
OCTET_MEDIA_TYPE = "application/octet-stream"
M = TypeVar("M", bound=BaseModel)
Query = list[tuple[str, str]]
Parser = Callable[[bytes | bytearray], BaseModel]


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    """Whether a media type (as :func:`media_type` gives it) is JSON."""
    return kind == JSON_MEDIA_TYPE or kind.endswith("+json")


def parser_for(
    model: type[BaseModel], kind: str, query: Query, max_elements: int, binary: bool = False
) -> Parser:
    """The body parser for a media type: JSON, or .npy/.npz with the rest in the query string.

    ``binary``: the operation takes .npy/.npz bodies only.
    """
    fields = _single(query)
    if binary and kind not in (NPY_MEDIA_TYPE, NPZ_MEDIA_TYPE, OCTET_MEDIA_TYPE):
        raise RequestError.one(
            415,
            "content-type",
            f"unsupported media type {kind[:100]!r} here; send {NPY_MEDIA_TYPE} (x as an .npy file) or "
            f"{NPZ_MEDIA_TYPE} (x and grad), or send JSON to the operation without /npy",
        )
    if binary and kind == OCTET_MEDIA_TYPE:
        return lambda body: _parse_binary(model, sniff(kind, body), fields, max_elements, body)
    if is_json(kind):
        _check_query(model, fields)  # documented for binary bodies; sent anyway, it must still be valid
        return partial(_parse_json, model, max_elements)
    if kind in (NPY_MEDIA_TYPE, NPZ_MEDIA_TYPE):
        return partial(_parse_binary, model, kind, fields, max_elements)
    raise RequestError.one(
        415,
        "content-type",
        f"unsupported media type {kind[:100]!r}; send {JSON_MEDIA_TYPE}, {NPY_MEDIA_TYPE} or {NPZ_MEDIA_TYPE}",
    )


#: Bytes a decoded number may hold at its peak: simdjson's tape (16) and the float64 buffer (8);
#: the exact path builds a Python float and a list slot per number instead.
_FAST_BYTES_PER_NUMBER = 24
_EXACT_BYTES_PER_NUMBER = 64
_DOCUMENT_PARSER_FACTOR = 6


def sniff(kind: str, body: bytes | bytearray) -> str:
    """The media type of an application/octet-stream body from its first bytes: .npy or .npz."""
    if kind != OCTET_MEDIA_TYPE:
        return kind
    if body[:6] == b"\x93NUMPY":
        return NPY_MEDIA_TYPE
    if body[:4] == b"PK\x03\x04":
        return NPZ_MEDIA_TYPE
    raise RequestError.one(
        400, "body", "is neither an .npy file (magic \\x93NUMPY) nor an .npz archive (a zip file)"
    )


def decode_cost(kind: str, body: bytes | bytearray, max_elements: int) -> tuple[int, int]:
    """Bytes that decoding ``body`` will hold at its peak (the body included), and the numbers it
    holds at most, before decoding it.

    JSON: from an upper bound of the numbers it holds (its commas); binary bodies:
    from the element counts their headers declare (read with hard caps), as
    float64 arrays (and a decompressed copy of each .npz member).
    """
    if is_json(kind):
        numbers = codec.count_byte(body, b",") + 1
        if codec.is_flat(body):  # parsed in segments: each segment's parser is small
            return len(body) + _FAST_BYTES_PER_NUMBER * numbers, numbers
        return document_cost(len(body), numbers), numbers
    kind = sniff(kind, body)
    elements = binary.declared_elements(body, kind, max_elements)
    return len(body) + (8 if kind == NPY_MEDIA_TYPE else 16) * elements, elements


def document_cost(length: int, numbers: int) -> int:
    """Bytes that parsing a whole JSON document of ``length`` bytes and up to ``numbers`` numbers
    holds at its peak.

    simdjson's whole-document parser touches up to about 4.3 times the body (measured on a body of
    a million keys; 2.2 times for numbers); up to EXACT_MAX_BYTES the exact path may follow.
    """
    per = _EXACT_BYTES_PER_NUMBER if length <= codec.EXACT_MAX_BYTES else _FAST_BYTES_PER_NUMBER
    return _DOCUMENT_PARSER_FACTOR * length + per * numbers


def _parse_json(model: type[M], max_elements: int, body: bytes | bytearray) -> M:
    return validate(model, codec.load(body, max_elements))


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(422, [_field_error(e, model) for e in exc.errors()]) from None


def _parse_binary(
    model: type[M], kind: str, query: dict[str, str], max_elements: int, body: bytes | bytearray
) -> M:
    """A request from an .npy/.npz body and the query string (activation, axis, ... and parameters)."""
    if kind == NPY_MEDIA_TYPE:
        arrays = {"x": binary.read_npy(body, "x", max_elements)}
    else:
        arrays = binary.read_npz(body, max_elements)
    data: dict[str, Any] = {"dtype": np.dtype(arrays["x"][1]).name}
    fields = set(model.model_fields) - {*codec.ARRAY_FIELDS, "params"}
    params: dict[str, Any] = {}
    for key, text in query.items():
        if key in ("axis", "order"):
            data[key] = query_number(key, text, int)
        elif key in fields:
            data[key] = text
        else:
            params[key] = query_param(f"params.{key}", text)
    for name in arrays:
        if name not in model.model_fields:
            raise RequestError.one(
                422, name, f"is not a known field here; expected: {', '.join(model.model_fields)}"
            )
    data |= {name: arr for name, (arr, _) in arrays.items()} | {"params": params}
    return validate(model, data)


def _single(query: Query) -> dict[str, str]:
    """The query parameters by name; a name given twice is refused, not guessed."""
    if len(query) > codec.MAX_KEYS:
        raise RequestError.one(422, "query", f"has {len(query)} parameters; the most is {codec.MAX_KEYS}")
    fields: dict[str, str] = {}
    for key, value in query:
        if key in fields:
            raise RequestError.one(422, f"query.{key[:100]}", "is given more than once; give it once")
        fields[key] = value
    return fields


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
            query_number("query.axis", text, int)
        else:
            query_param(f"query.{key[:100]}", text)


def query_param(field: str, text: str) -> float | list[float]:
    """An activation parameter in a query string: a number, or an array as comma-separated numbers
    (``numerator=0,0.5,0.3``)."""
    if "," not in text:
        return query_number(field, text, float)
    if text.count(",") >= MAX_CHANNELS:
        raise RequestError.one(
            422, field, f"has {text.count(',') + 1} numbers; an array parameter has at most {MAX_CHANNELS:,}"
        )
    parts = text.split(",")
    return [float(query_number(f"{field}[{k}]", part.strip(" "), float)) for k, part in enumerate(parts)]


#: What a query string's numbers look like: decimal, ASCII, as JSON writes them (and with a sign
#: or a leading point); Python's own spellings ("1_000", full-width digits, padding) are refused.
_NUMBER = {
    int: re.compile(r"[+-]?[0-9]+", re.ASCII),
    float: re.compile(
        r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
        re.ASCII | re.I,
    ),
}


def query_number(field: str, text: str, kind: type[int] | type[float]) -> int | float:
    if _NUMBER[kind].fullmatch(text):
        return kind(text)
    noun = "an integer" if kind is int else "a number"
    raise RequestError.one(422, field, f"must be {noun}, got {text[:40]!r}")


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
