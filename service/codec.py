"""JSON on the wire: request bytes to validated arrays, results to bytes.

Fast path: simdjson parses the body and copies the numbers of ``x`` and
``grad`` straight into float64 buffers, without a Python object per element.
simdjson flattens nested arrays, so the fast path proves the structure itself
(every non-leaf array has the length of the first one at its depth, the count
of numbers is the product of the shape, and the body holds exactly the
brackets that shape needs) and declines anything it cannot prove.

Exact path: orjson (C) builds Python objects; a nested list of numbers
becomes one contiguous array in a single ``np.array`` call after a type check
at C speed per row (``set(map(type, row))``).  It names every rejected
element (``x[1][0]``).  The fast path accepts exactly what the exact path
accepts, with the same result; whatever it declines goes the exact way.

Responses serialise ndarrays directly with orjson's numpy support: no
``tolist()``, no ``jsonable_encoder``.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from .activations import Array, first_non_finite
from .problems import RequestError

#: Deeper nesting than this is refused before it reaches NumPy.
MAX_DEPTH = 32

_NUMBER_TYPES = frozenset({int, float})
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def load_json(body: bytes | bytearray) -> Any:
    """Parse a JSON request body.

    orjson refuses NaN, Infinity and numbers that overflow (1e999) with a bare
    syntax error; on any failure the body is parsed again by the standard
    library, which reads those as non-finite floats, so the validation that
    follows can name the element.  Only genuinely malformed JSON is a 400.
    """
    if not body.strip():
        raise RequestError.one(400, "body", "the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=float, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:
        reason = f"not valid JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
        if isinstance(exc, json.JSONDecodeError):
            reason += f" (line {exc.lineno}, column {exc.colno})"
        raise RequestError.one(400, "body", reason) from None


#: Fields whose values are arrays; every other field is a scalar or an object of scalars.
ARRAY_FIELDS = ("x", "grad")
_local = threading.local()


#: Below this size orjson is faster than simdjson's per-document setup; above
#: it, a fresh parser is used and dropped, so its buffers (several times the
#: body) do not stay allocated between requests.
FAST_MIN_BYTES = 4096
_REUSE_MAX_BYTES = 1 << 20


def load_json_fast(
    body: bytes | bytearray, min_bytes: int = FAST_MIN_BYTES
) -> tuple[dict[str, Any], dict[str, Array]] | None:
    """The envelope and the arrays of a request, or None to take the exact path."""
    if len(body) < min_bytes:
        return None
    if len(body) > _REUSE_MAX_BYTES:
        try:
            return _fast_flat_segments(body) or _fast(simdjson.Parser(), body)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
            return None
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        return _fast(parser, body)
    except RuntimeError:
        # A parser still referenced from an earlier failure: start afresh next time.
        _local.parser = None
        return None
    except (ValueError, TypeError, KeyError, IndexError):
        return None


#: A large flat array is parsed in this many segments: one simdjson call holds
#: the GIL for its whole duration (33 ms for 1M floats), which would keep the
#: event loop from answering anyone else for as long.
_SEGMENTS = 16


def _fast_flat_segments(body: bytes | bytearray) -> tuple[dict[str, Any], dict[str, Array]] | None:
    """The common large request, a single flat array ``x``, parsed segment by segment.

    Taken only when the body's one '[' opens the value of the one key "x" (so
    no other array, and no nesting); everything else, and any segment that is
    not purely numbers, goes the general way.
    """
    if body.count(b"[") != 1 or body.count(b'"x"') != 1:
        return None
    key = body.find(b'"x"')
    start = body.find(b"[")
    if start < key or body[key + 3 : start].strip() != b":":
        return None
    end = body.find(b"]", start)
    if end < 0:
        return None
    envelope = orjson.loads(bytes(body[:start]) + b"0" + bytes(body[end + 1 :]))
    if not isinstance(envelope, dict) or envelope.get("x") != 0:
        return None
    parser = simdjson.Parser()
    pieces = []
    step = max(1, (end - start) // _SEGMENTS)
    pos = start + 1
    while pos < end:
        cut = body.find(b",", min(pos + step, end), end)
        stop = end if cut < 0 else cut
        doc: Any = parser.parse(b"[" + bytes(body[pos:stop]) + b"]")
        pieces.append(np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64).copy())
        if len(doc) != pieces[-1].size:
            return None  # a nested array after all
        del doc
        pos = stop + 1
    if not pieces or (pos != end + 1 and pos != end):
        return None
    del envelope["x"]
    return envelope, {"x": np.concatenate(pieces)}


def _fast(parser: Any, body: bytes | bytearray) -> tuple[dict[str, Any], dict[str, Array]] | None:
    doc = parser.parse(body)
    if not isinstance(doc, simdjson.Object):
        return None
    envelope: dict[str, Any] = {}
    arrays: dict[str, Array] = {}
    brackets = 0
    for key in doc.keys():  # noqa: SIM118  (simdjson.Object is not a dict)
        if key in envelope or key in arrays:
            return None  # a repeated key: the exact path keeps the last, as JSON parsers do
        value = doc[key]
        if key in ARRAY_FIELDS and isinstance(value, simdjson.Array):
            shape = _rectangular_shape(value)
            if shape is None:
                return None
            flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
            if flat.size != math.prod(shape):
                return None
            arrays[key] = flat.reshape(shape)
            brackets += sum(math.prod(shape[:depth]) for depth in range(len(shape)))
        elif isinstance(value, simdjson.Array):
            return None
        else:
            envelope[key] = value.as_dict() if isinstance(value, simdjson.Object) else value
    if body.count(b"[") != brackets:
        return None  # a nested array where a number belongs, or a bracket in a string
    return envelope, arrays


def _rectangular_shape(value: Any) -> tuple[int, ...] | None:
    """The shape implied by the first element at each depth, if every array agrees."""
    shape: list[int] = []
    node = value
    while isinstance(node, simdjson.Array):
        if len(node) == 0 or len(shape) >= MAX_DEPTH:
            return None
        shape.append(len(node))
        node = node[0]
    level = [value]
    for depth in range(len(shape) - 1):
        children = []
        for array in level:
            if len(array) != shape[depth]:
                return None
            for child in array:
                if not isinstance(child, simdjson.Array):
                    return None
                children.append(child)
        level = children
    if any(len(array) != shape[-1] for array in level):
        return None
    return tuple(shape)


def _parse_int(text: str) -> float | int:
    # Long integers are read as floats (huge ones become inf and are named by
    # the finiteness check) instead of tripping Python's digit limit.
    return int(text) if len(text) < 20 else float(text)


def to_array(value: Any, field: str, dtype: type = np.float64) -> Array:
    """A number, a rectangular nested list of numbers or a fast-path array, as float64.

    With ``dtype=np.float32`` every element is first rounded to float32: the
    computation then runs on exactly the numbers a float32 caller holds.
    """
    if isinstance(value, np.ndarray):
        arr = value
    elif type(value) in _NUMBER_TYPES:
        arr = np.array(value, dtype=np.float64)
    elif isinstance(value, list):
        _check_nested(value, field, 0)
        arr = np.array(value, dtype=np.float64)
    else:
        raise RequestError.one(
            422, field, f"must be a number or a nested list of numbers, not {_kind(value)}"
        )
    if (index := first_non_finite(arr)) is not None:
        raise RequestError.one(422, _name(field, index), "is not a finite number")
    if dtype is not np.float64:
        with np.errstate(over="ignore"):
            rounded: Array = arr.astype(dtype)
        if (index := first_non_finite(rounded)) is not None:
            limit = float(np.finfo(dtype).max)
            raise RequestError.one(
                422, _name(field, index), f"is beyond the {np.dtype(dtype).name} range (+-{limit:.4g})"
            )
        arr = rounded.astype(np.float64)
    return arr


def _check_nested(value: list[Any], field: str, depth: int) -> None:
    """Check that ``value`` is a non-empty rectangular list of numbers."""
    if depth >= MAX_DEPTH:
        raise RequestError.one(422, field, f"is nested more than {MAX_DEPTH} levels deep")
    if not value:
        raise RequestError.one(422, field, "is empty; send at least one number")
    kinds = set(map(type, value))
    if kinds <= _NUMBER_TYPES:
        return
    if kinds == {list}:
        length = len(value[0])
        for i, row in enumerate(value):
            if len(row) != length:
                raise RequestError.one(
                    422,
                    f"{field}[{i}]",
                    f"has {len(row)} elements where {field}[0] has {length}: x must be rectangular",
                )
            _check_nested(row, f"{field}[{i}]", depth + 1)
        return
    for i, item in enumerate(value):
        if isinstance(item, list) and kinds & _NUMBER_TYPES:
            raise RequestError.one(
                422, f"{field}[{i}]", "is a list beside numbers at the same level: x must be rectangular"
            )
        if type(item) not in _NUMBER_TYPES and not isinstance(item, list):
            raise RequestError.one(422, f"{field}[{i}]", f"must be a number, not {_kind(item)}")
    raise AssertionError("unreachable")  # pragma: no cover


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__  # pragma: no cover


def _name(field: str, index: Any) -> str:
    return field + "".join(f"[{int(i)}]" for i in index)


def wire(arr: Array) -> float | Array:
    """An array as orjson writes it: a scalar for 0-d, C-contiguous otherwise."""
    if arr.ndim == 0:
        return float(arr)
    return np.ascontiguousarray(arr)


#: Arrays larger than this are written in pieces of about this many elements:
#: orjson holds the GIL for a whole call (33 ms for 1M floats), which would
#: keep the event loop from answering anyone else; between pieces it can.
SERIALIZE_PIECE = 65536
_PLACEHOLDER = "\x00array:{}\x00"


def dumps(payload: dict[str, Any]) -> bytes:
    """Serialise a response payload; ndarrays are written directly by orjson."""
    return b"".join(dump_parts(payload))


def dump_parts(payload: dict[str, Any]) -> list[bytes]:
    """The JSON of ``payload`` as consecutive pieces, large arrays split up."""
    big = [k for k, v in payload.items() if isinstance(v, np.ndarray) and v.size > SERIALIZE_PIECE]
    if not big:
        return [orjson.dumps(payload, option=_DUMPS_OPTIONS)]
    marked = payload | {k: _PLACEHOLDER.format(i) for i, k in enumerate(big)}
    text = orjson.dumps(marked, option=_DUMPS_OPTIONS)
    parts: list[bytes] = []
    for i, key in enumerate(big):
        head, text = text.split(orjson.dumps(_PLACEHOLDER.format(i)), 1)
        parts.append(head)
        _array_pieces(payload[key], parts)
    parts.append(text)
    return parts


def _array_pieces(arr: Array, out: list[bytes]) -> None:
    """Append the JSON of ``arr`` to ``out`` in pieces of about SERIALIZE_PIECE elements."""
    if arr.size <= SERIALIZE_PIECE or arr.ndim == 0:
        out.append(orjson.dumps(arr, option=_DUMPS_OPTIONS))
        return
    out.append(b"[")
    rows = max(1, SERIALIZE_PIECE // max(1, arr[0].size))
    for start in range(0, arr.shape[0], rows):
        if start:
            out.append(b",")
        block = arr[start : start + rows]
        if block.shape[0] == 1 and arr.ndim > 1 and block.size > SERIALIZE_PIECE:
            _array_pieces(block[0], out)  # one huge row: split inside it
        else:
            out.append(orjson.dumps(block, option=_DUMPS_OPTIONS)[1:-1])
    out.append(b"]")
