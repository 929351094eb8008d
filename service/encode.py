"""A computed payload to the bytes of a reply: JSON, or the result array as an .npy body."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from . import binary, codec

JSON_MEDIA_TYPE = "application/json"
#: Media type, extra headers and the body in pieces (large arrays are not joined into one copy).
Reply = tuple[str, dict[str, str], list[bytes | memoryview]]

#: The fields of a response that hold the one result array.
RESULTS = ("y", "dydx", "grad_x", "d2ydx2")

#: The longest JSON a float64 takes ("-2.2250738585072014e-308") and its comma; float32's.
_JSON_BYTES = {"float64": 25, "float32": 16}


OCTET_MEDIA_TYPE = "application/octet-stream"


def npy_media_type(accept: str, binary_default: bool = False) -> str | None:
    """The media type an .npy reply is labelled with, or None for JSON.

    .npy when asked for, or by default (``binary_default``) unless JSON is asked
    for; labelled application/octet-stream when only that is asked for.
    """
    if binary.NPY_MEDIA_TYPE in accept:
        return binary.NPY_MEDIA_TYPE
    if JSON_MEDIA_TYPE in accept or not binary_default:
        return None
    return OCTET_MEDIA_TYPE if OCTET_MEDIA_TYPE in accept else binary.NPY_MEDIA_TYPE


def reply_bytes(elements: int, dtype: str, npy: bool) -> int:
    """An upper bound of the encoded reply's size for ``elements`` result numbers."""
    return 8 * elements + 256 if npy else _JSON_BYTES.get(dtype, 25) * elements + 1024


def encode(payload: dict[str, Any], npy: str | None = None) -> Reply:
    """Media type, extra headers and body pieces: JSON, or with ``npy`` (its media type) the
    result array as an .npy body with the rest of the envelope in headers."""
    result = next((k for k in RESULTS if k in payload), None)
    if npy and result is not None:
        headers = {
            "x-activation": payload["activation"],
            "x-activation-params": orjson.dumps(payload["params"]).decode(),
            "x-activation-result": result,
            # bfloat16 results travel as the same numbers in float32: the header names the format.
            "x-activation-dtype": payload["dtype"],
        }
        return npy, headers, binary.npy_parts(payload[result])
    wire = {k: codec.wire(v) if isinstance(v, np.ndarray) else v for k, v in payload.items()}
    if "dydparams" in payload:
        wire["dydparams"] = {k: codec.wire(v) for k, v in payload["dydparams"].items()}
    return JSON_MEDIA_TYPE, {}, list(codec.dump_parts(wire))


def response_of(reply: Reply) -> Response:
    """An encoded reply as one Response (in-process use)."""
    media_type, headers, parts = reply
    return Response(b"".join(parts), media_type=media_type, headers=headers)
