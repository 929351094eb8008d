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
accepts, with the same result; whatever it declines goes the exact way, up to
EXACT_MAX_BYTES (a body larger than that which the fast path declines is
refused as a whole, naming the field: see :func:`diagnose`).  Both refuse the
same ambiguous input: a key given twice, a body that is not UTF-8, a lone
surrogate, an object with more than MAX_KEYS keys.

Responses serialise ndarrays directly with orjson's numpy support: no
``tolist()``, no ``jsonable_encoder``.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from .activations import Array, element, first_non_finite
from .problems import RequestError

#: Arrays have at most this many dimensions (JSON nesting deeper is refused before it reaches
#: NumPy). The OpenAPI document spells every level out, and the code that generators write
#: for it nests a loop per level: Python compiles at most 20 nested blocks.
MAX_DEPTH = 16

_NUMBER_TYPES = frozenset({int, float})
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def load(body: bytes | bytearray, max_elements: int) -> dict[str, Any]:
    """A JSON request body as a dict whose ``x`` and ``grad`` may already be arrays.

    The fast path first; what it declines goes the exact way up to
    EXACT_MAX_BYTES, and is refused beyond (:func:`diagnose` says why).
    """
    if is_flat(body):
        # One large flat array: its segments, and never a parse of the whole document.
        try:
            flat = _fast_flat_segments(body, max_elements)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
            flat = None
        if flat is None:
            raise _diagnose_flat(body)
        return flat[0] | flat[1]
    fast = load_json_fast(body, max_elements=max_elements)
    if fast is not None:
        envelope, arrays = fast
        return envelope | arrays
    if len(body) > EXACT_MAX_BYTES:
        raise diagnose(body)
    data = load_json(body)
    if not isinstance(data, dict):
        raise RequestError.one(422, "body", "must be a JSON object")
    check_keys("body", list(data))
    for key, value in data.items():
        if isinstance(value, dict):
            check_keys(key, list(value))
    return data


def load_json(body: bytes | bytearray) -> Any:
    """Parse a JSON request body exactly (the bodies the fast path declines, up to EXACT_MAX_BYTES).

    orjson refuses NaN, Infinity and numbers that overflow (1e999) with a bare
    syntax error; on any failure the body is parsed again by the standard
    library, which reads those as non-finite floats, so the validation that
    follows can name the element.  Only genuinely malformed JSON is a 400.
    Both parsers refuse the same things beyond that: a body that is not UTF-8
    (the standard library would guess UTF-16 or UTF-32), a key given twice in
    one object (orjson would keep the last silently), a lone surrogate.
    """
    if not body.strip():
        raise RequestError.one(400, "body", "the request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _load_json_checked(body)
    if _key_count(data) != _colons(body):
        _load_json_checked(body)  # a key may be repeated: find out exactly (raises if one is)
    return data


def _load_json_checked(body: bytes | bytearray) -> Any:
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError.one(
            400, "body", f"is not UTF-8 (byte {exc.start}); JSON bodies must be UTF-8 (RFC 8259)"
        ) from None
    repeated: list[bool] = []
    try:
        data = json.loads(
            text,
            parse_constant=float,
            parse_int=_parse_int,
            object_pairs_hook=lambda pairs: _object(pairs, repeated),
        )
    except (ValueError, RecursionError) as exc:
        reason = f"not valid JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
        if isinstance(exc, json.JSONDecodeError):
            reason += f" (line {exc.lineno}, column {exc.colno})"
        raise RequestError.one(400, "body", reason) from None
    if repeated:
        path = _repeated_path(data, "")
        raise duplicate_key(path or "body")
    return data


#: Marks an object in which a key was repeated (the parser knows no path: it is found afterwards).
_REPEATED = object()


def _object(pairs: list[tuple[str, Any]], repeated: list[bool]) -> dict[Any, Any]:
    """A JSON object, refusing strings that are not Unicode (lone surrogates) and marking repeated
    keys (refused by the caller, which names the whole path)."""
    out: dict[Any, Any] = {}
    for key, value in pairs:
        for text in (key, value) if isinstance(value, str) else (key,):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise RequestError.one(
                        400, "body", "a string holds a lone UTF-16 surrogate, which is not Unicode text"
                    ) from None
        if key in out and _REPEATED not in out:
            out[_REPEATED] = key
            repeated.append(True)
        out[key] = value
    return out


def _repeated_path(data: Any, path: str) -> str | None:
    """Where the first repeated key is: "params.alpha", "inputs[0].name"."""
    if isinstance(data, dict):
        if _REPEATED in data:
            key = data[_REPEATED]
            return f"{path}.{key}" if path else key
        items: Any = ((f"{path}.{k}" if path else k, v) for k, v in data.items())
    elif isinstance(data, list):
        items = ((f"{path}[{k}]", v) for k, v in enumerate(data) if isinstance(v, dict | list))
    else:
        return None
    for inner, value in items:
        found = _repeated_path(value, inner)
        if found is not None:
            return found
    return None


#: No object of a request has more keys than this (the fields, or one activation's parameters).
MAX_KEYS = 64


def too_many_keys(field: str, count: int) -> RequestError:
    return RequestError.one(422, field, f"has {count} keys; an object of a request has at most {MAX_KEYS}")


def check_keys(field: str, keys: list[str]) -> None:
    """Refuse an object with too many keys or a repeated one."""
    if len(keys) > MAX_KEYS:
        raise too_many_keys(field, len(keys))
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise duplicate_key(key if field == "body" else f"{field}.{key}")
        seen.add(key)


def duplicate_key(path: str) -> RequestError:
    return RequestError.one(422, path[:100], "is given twice in one object; give each field once")


def _key_count(data: Any, depth: int = 0) -> int:
    """Keys of the object and of the objects among its values, at every depth (/fit's
    target.params is three levels down): every key a request may have.  -1 for anything that is
    not an object, or objects nested deeper than MAX_DEPTH (the checked parse decides those)."""
    if not isinstance(data, dict) or depth > MAX_DEPTH:
        return -1
    total = len(data)
    for value in data.values():
        if isinstance(value, dict):
            inner = _key_count(value, depth + 1)
            if inner < 0:
                return -1
            total += inner
    return total


def _colons(body: bytes | bytearray) -> int:
    # Every key is followed by a colon; a colon inside a string only makes this larger.
    return body.count(b":")


#: Fields whose values are arrays; every other field is a scalar or an object of scalars.
ARRAY_FIELDS = ("x", "grad", "y")
_local = threading.local()


#: Below this size orjson is faster than simdjson's per-document setup; above
#: it, a fresh parser is used and dropped, so its buffers (several times the
#: body) do not stay allocated between requests.
FAST_MIN_BYTES = 4096
#: The exact path builds a Python object per number: it takes bodies up to this size only.
EXACT_MAX_BYTES = 1 << 20
_REUSE_MAX_BYTES = 1 << 20


def load_json_fast(
    body: bytes | bytearray, min_bytes: int = FAST_MIN_BYTES, max_elements: int = 1 << 62
) -> tuple[dict[str, Any], dict[str, Array]] | None:
    """The envelope and the arrays of a request, or None to take the exact path.

    The element limit is checked from the shape, before any number is copied
    (413); a key given twice is refused (422), as the exact path refuses it.
    """
    if len(body) < min_bytes:
        return None
    if len(body) > _REUSE_MAX_BYTES:
        try:
            return _fast_flat_segments(body, max_elements) or _fast(simdjson.Parser(), body, max_elements)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
            return None
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        return _fast(parser, body, max_elements)
    except RequestError:
        _local.parser = None  # the refusal's traceback still holds the parser's document
        raise
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


def _fast_flat_segments(
    body: bytes | bytearray, max_elements: int
) -> tuple[dict[str, Any], dict[str, Array]] | None:
    """The common large request, a single flat array ``x``, parsed segment by segment.

    Taken only when the body's one '[' opens the value of the one key "x" (so
    no other array, and no nesting); everything else, and any segment that is
    not purely numbers, goes the general way.
    """
    start = body.find(b"[")
    end = body.find(b"]", start)
    if start < 0 or end < 0 or not _once(body, b"["):
        return None
    head, tail = bytes(body[:start]), bytes(body[end + 1 :])
    key = head.find(b'"x"')
    if key < 0 or head.count(b'"x"') != 1 or b'"x"' in tail or head[key + 3 :].strip() != b":":
        return None
    envelope_text = head + b"0" + tail
    if _colons(envelope_text) > 2 * MAX_KEYS:
        return None  # too many keys to be a request: the general way refuses it without a dict of them
    envelope = orjson.loads(envelope_text)
    if (
        not isinstance(envelope, dict)
        or envelope.get("x") != 0
        or _key_count(envelope) != _colons(envelope_text)
    ):
        return None  # (a repeated key: the general way refuses it)
    parser = simdjson.Parser()
    pieces = []
    count = 0  # checked as the segments are read: at most one segment beyond the limit is held
    step = max(1, (end - start) // _SEGMENTS)
    pos = start + 1
    while pos < end:
        cut = body.find(b",", min(pos + step, end), end)
        stop = end if cut < 0 else cut
        if not body[pos:stop].strip():
            return None  # an empty element ("[1,,2]", "[1,]"): not JSON, the general way says so
        doc: Any = parser.parse(b"[" + bytes(body[pos:stop]) + b"]")
        pieces.append(np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64).copy())
        if len(doc) != pieces[-1].size:
            return None  # a nested array after all
        del doc
        count += pieces[-1].size
        if count > max_elements:
            raise too_many("x", count + body.count(b",", stop, end), max_elements)
        pos = stop + 1
    if not pieces or (pos != end + 1 and pos != end):
        return None
    del envelope["x"]
    return envelope, {"x": np.concatenate(pieces)}


def _fast(
    parser: Any, body: bytes | bytearray, max_elements: int
) -> tuple[dict[str, Any], dict[str, Array]] | None:
    doc = parser.parse(body)
    if not isinstance(doc, simdjson.Object):
        return None
    envelope: dict[str, Any] = {}
    arrays: dict[str, Array] = {}
    brackets = 0
    if len(doc) > MAX_KEYS:  # counted by simdjson, before a Python string is made of any key
        raise too_many_keys("body", len(doc))
    keys = list(doc.keys())
    check_keys("body", keys)
    for key in keys:
        value = doc[key]
        if key in ARRAY_FIELDS and isinstance(value, simdjson.Array):
            shape = _rectangular_shape(value)
            if shape is None:
                return None
            if math.prod(shape) > max_elements:
                raise too_many(key, math.prod(shape), max_elements)
            flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
            if flat.size != math.prod(shape):
                return None
            arrays[key] = flat.reshape(shape)
            brackets += sum(math.prod(shape[:depth]) for depth in range(len(shape)))
        elif isinstance(value, simdjson.Array):
            return None
        elif isinstance(value, simdjson.Object):
            nested = [0]
            inner = _checked_object(value, key, 1, nested)
            if inner is None:
                return None
            envelope[key] = inner
            brackets += nested[0]
        else:
            envelope[key] = value
    if count_byte(body, b"[") != brackets:
        return None  # a nested array where a number belongs, or a bracket in a string
    return envelope, arrays


#: The longest array an object of a request may hold (an array parameter's numbers).
MAX_NESTED_ARRAY = 64


def _checked_object(value: Any, field: str, depth: int, arrays: list[int]) -> dict[str, Any] | None:
    """A simdjson object as a dict, its keys checked at every depth (simdjson keeps the last of a
    repeated key silently); flat arrays of up to MAX_NESTED_ARRAY numbers (rational's coefficients)
    kept as lists and counted in ``arrays``; None for what the exact path should decide (objects
    nested deeper than MAX_DEPTH, other arrays)."""
    if depth > MAX_DEPTH:
        return None
    if len(value) > MAX_KEYS:
        raise too_many_keys(field, len(value))
    keys = list(value.keys())
    check_keys(field, keys)
    out: dict[str, Any] = {}
    for key in keys:
        item = value[key]
        if isinstance(item, simdjson.Object):
            inner = _checked_object(item, f"{field}.{key}"[:100], depth + 1, arrays)
            if inner is None:
                return None
            out[key] = inner
        elif isinstance(item, simdjson.Array):
            if len(item) > MAX_NESTED_ARRAY:
                return None
            numbers = item.as_list()
            if any(isinstance(v, list | dict) for v in numbers):
                return None  # nested deeper: the exact path names what is wrong
            out[key] = numbers
            arrays[0] += 1
        else:
            out[key] = item
    return out


def too_many(field: str, count: int, limit: int) -> RequestError:
    return RequestError.one(
        413, field, f"has {count} elements; the limit is {limit} (ACTIVATION_MAX_ELEMENTS)"
    )


_EMPTY_ELEMENT = re.compile(rb"[\[,]\s*[,\]]")
_NOT_NUMBER = re.compile(rb"[^0-9eE+\-.,\s]")


_COUNT_SLICE = 1 << 18


def count_byte(body: bytes | bytearray | memoryview, byte: bytes) -> int:
    """How often ``byte`` occurs in ``body``: vectorised (bytes.count is 5x slower on large bodies)."""
    if len(body) < 1024:
        return bytes(body).count(byte)  # (faster than NumPy's setup on tiny bodies)
    data = np.frombuffer(body, np.uint8)
    # In slices through one small buffer: a comparison of the whole body would allocate (and
    # fault in) a buffer as large as the body each time, which cost up to 46 ms on 18 MB.
    mask = np.empty(min(_COUNT_SLICE, data.size), dtype=bool)
    total = 0
    for start in range(0, data.size, _COUNT_SLICE):
        part = data[start : start + _COUNT_SLICE]
        np.equal(part, ord(byte), out=mask[: part.size])
        total += int(np.count_nonzero(mask[: part.size]))
    return total


def _once(body: bytes | bytearray, pattern: bytes) -> bool:
    """Whether ``pattern`` occurs exactly once in ``body`` (a search, which is faster than a count)."""
    first = body.find(pattern)
    return first >= 0 and body.find(pattern, first + 1) < 0


def is_flat(body: bytes | bytearray) -> bool:
    """Whether a body is too large for the exact path and holds a single array: the segmented path's."""
    return len(body) > EXACT_MAX_BYTES and _once(body, b"[")


def _diagnose_flat(body: bytes | bytearray) -> RequestError:
    """Why the segmented path declined a large body with one array, without parsing the whole of it."""
    keys = _colons(body)
    if keys > MAX_KEYS:
        return too_many_keys("body", keys)
    if body.count(b'"x"') != 1:
        return RequestError.one(422, "x", "is required, once, and must be the array of the body")
    start, end = body.find(b"["), body.find(b"]")
    try:
        envelope = orjson.loads(bytes(body[:start]) + b"0" + bytes(body[end + 1 :]))
    except orjson.JSONDecodeError as exc:
        return RequestError.one(400, "body", f"not valid JSON: {str(exc)[:100]}")
    if not isinstance(envelope, dict) or envelope.get("x") != 0:
        return RequestError.one(422, "x", "must be the one array of the body")
    if _key_count(envelope) != _colons(bytes(body[:start]) + bytes(body[end + 1 :])):
        return RequestError.one(422, "body", "gives a key twice in one object; give each field once")
    where = "(a body over 1 MiB is checked as a whole; send a smaller one to have the element named)"
    elements = bytes(body[start + 1 : end])
    if _EMPTY_ELEMENT.search(b"[" + elements + b"]"):
        return RequestError.one(
            400, "body", f"not valid JSON: x has an empty element or a trailing comma {where}"
        )
    odd = _NOT_NUMBER.search(elements)
    token = elements[odd.start() : odd.start() + 12].decode("latin-1") if odd else ""
    if token.startswith(("true", "false", "null", '"')):
        return RequestError.one(422, "x", f"holds {token.split(',')[0]!r} where only numbers belong {where}")
    return RequestError.one(
        400,
        "body",
        f"not valid JSON in x near {token!r}: NaN, Infinity and numbers beyond the float64 range "
        f"are not JSON numbers the service accepts {where}",
    )


def diagnose(body: bytes | bytearray) -> RequestError:
    """Why a body too large for the exact path was declined by the fast path, as cheaply as can be said.

    The exact path names the first offending element; it builds a Python object
    per number, so it only takes bodies up to EXACT_MAX_BYTES.
    """
    try:
        doc: Any = simdjson.Parser().parse(bytes(body))
    except ValueError as exc:
        return RequestError.one(
            400,
            "body",
            f"not valid JSON ({str(exc)[:100]}); NaN, Infinity and numbers beyond the float64 "
            "range are not accepted either",
        )
    if not isinstance(doc, simdjson.Object):
        return RequestError.one(422, "body", "must be a JSON object")
    for key in ARRAY_FIELDS:
        value = doc.get(key)
        if value is None and key != "x":
            continue
        if value is None or not _numbers_of(value):
            return RequestError.one(
                422,
                key,
                "is required"
                if value is None
                else f"must be a non-empty rectangular nested list of finite numbers, at most {MAX_DEPTH} "
                f"levels deep (a body over {EXACT_MAX_BYTES} bytes is checked as a whole; send a "
                "smaller one to have the first offending element named)",
            )
    return RequestError.one(422, "body", f"holds an array where only {', '.join(ARRAY_FIELDS)} may hold one")


def _numbers_of(value: Any) -> bool:
    """Whether a simdjson value is a rectangular array of numbers."""
    if not isinstance(value, simdjson.Array):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if _rectangular_shape(value) is None:
        return False
    try:
        value.as_buffer(of_type="d")
    except (ValueError, TypeError):
        return False
    return True


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
        raise RequestError.one(422, field, f"must be a number or a nested list of numbers, not {kind(value)}")
    if (index := first_non_finite(arr)) is not None:
        raise RequestError.one(422, element(field, index), "is not a finite number")
    if dtype is not np.float64:
        with np.errstate(over="ignore"):
            rounded: Array = arr.astype(dtype)
        if (index := first_non_finite(rounded)) is not None:
            limit = float(np.finfo(dtype).max)
            raise RequestError.one(
                422, element(field, index), f"is beyond the {np.dtype(dtype).name} range (+-{limit:.4g})"
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
            raise RequestError.one(422, f"{field}[{i}]", f"must be a number, not {kind(item)}")
    raise AssertionError("unreachable")  # pragma: no cover


def kind(value: Any) -> str:
    """What a JSON value is, for an error message."""
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


def dump_parts(payload: dict[str, Any]) -> list[bytes | memoryview]:
    """The JSON of ``payload`` as consecutive pieces, large arrays split up."""
    big = [k for k, v in payload.items() if isinstance(v, np.ndarray) and v.size > SERIALIZE_PIECE]
    if not big:
        return [orjson.dumps(payload, option=_DUMPS_OPTIONS)]
    marked = payload | {k: _PLACEHOLDER.format(i) for i, k in enumerate(big)}
    text = orjson.dumps(marked, option=_DUMPS_OPTIONS)
    parts: list[bytes | memoryview] = []
    for i, key in enumerate(big):
        head, text = text.split(orjson.dumps(_PLACEHOLDER.format(i)), 1)
        parts.append(head)
        array_pieces(payload[key], parts)
    parts.append(text)
    return parts


def array_pieces(arr: Array, out: list[bytes | memoryview]) -> None:
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
            array_pieces(block[0], out)  # one huge row: split inside it
        else:
            out.append(orjson.dumps(block, option=_DUMPS_OPTIONS)[1:-1])
    out.append(b"]")
