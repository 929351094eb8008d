"""NumPy binary bodies: ``.npy`` (one array) and ``.npz`` (``x.npy`` and ``grad.npy``).

Every byte of a body is hostile until checked, and nothing is allocated from a
declared size before it is checked:

* The ``.npy`` header is read by this module, not by NumPy: the declared header
  length is refused above ``_MAX_HEADER`` bytes before the header is read, and
  the header dictionary is parsed by a small strict tokenizer (no ``eval``, no
  ``ast.literal_eval``, no recursion).  Nothing is unpickled.
* The dtype must be float32 or float64 (either byte order); the shape must have
  non-negative dimensions, at most ``MAX_DEPTH`` of them, and an element count
  (a Python int, so it cannot overflow) within the limit; the data must be
  exactly as long as the header says.
* An ``.npz`` archive holds exactly ``x.npy`` and optionally ``grad.npy``,
  stored or deflated, unencrypted.  Each member's declared size and compression
  ratio are checked before anything is decompressed; it is then inflated in
  bounded pieces, and refused as soon as it yields more than it declares (no
  zip bombs).  Its ``.npy`` header goes through the same capped reader.

``declared_elements`` reads only the headers, so a caller can budget memory
before decoding.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from .activations import Array
from .codec import MAX_DEPTH
from .problems import RequestError

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"
FLOAT_DTYPES = tuple(np.dtype(f"{order}f{size}") for size in (2, 4, 8) for order in "<>")

_MAGIC = b"\x93NUMPY"
#: Largest header dictionary accepted (NumPy writes ~120 bytes for up to 32 dimensions).
_MAX_HEADER = 10_000
#: Magic string, version and the longest (4-byte) header length field.
_MAX_PREFIX = len(_MAGIC) + 2 + 4
#: Largest decompressed-to-compressed size ratio of an .npz member (deflate tops out near 1032:1).
_MAX_RATIO = 1000
#: Compressed bytes fed to the inflater at a time.
_INPUT_PIECE = 1 << 16
#: Decompressed bytes produced at a time.
_OUTPUT_PIECE = 1 << 20
_NPZ_MEMBERS = ("x", "grad", "y")
#: x alone, x and grad (a vector-Jacobian product), x and y (POST /check).
_NPZ_LAYOUTS = (["x.npy"], ["grad.npy", "x.npy"], ["x.npy", "y.npy"])


class _Header(NamedTuple):
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]
    #: Bytes of magic string, version, length field and header dictionary.
    size: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * self.dtype.itemsize


# ---------------------------------------------------------------- public API


def read_npy(data: bytes | bytearray | memoryview, field: str, max_elements: int) -> tuple[Array, type]:
    """An ``.npy`` body as a float64 array, and the float type it was sent in."""
    view = _bytes_view(data)
    header = _read_header(_Cursor(view).read, field, max_elements)
    if len(view) != header.size + header.nbytes:
        raise RequestError.one(
            400,
            field,
            f"the .npy data is {len(view) - header.size} bytes; its header declares {header.nbytes}",
        )
    flat = np.frombuffer(view, dtype=header.dtype, count=header.elements, offset=header.size)
    return _result(flat, header)


def read_npz(data: bytes | bytearray | memoryview, max_elements: int) -> dict[str, tuple[Array, type]]:
    """The arrays ``x`` (required) and ``grad`` (optional) of an ``.npz`` body."""
    view = _bytes_view(data)
    return {
        name: _read_member(view, info, name, max_elements)
        for name, info in _npz_members(view, max_elements).items()
    }


def declared_elements(data: bytes | bytearray | memoryview, media_type: str, max_elements: int) -> int:
    """The total number of elements an ``.npy``/``.npz`` body declares, from its headers alone.

    Applies the same checks and limits as ``read_npy``/``read_npz`` to the
    headers (raising the same ``RequestError``); decompresses at most the first
    ~10 kB of each ``.npz`` member and never reads the array data, so it is
    cheap enough to run before deciding whether the body may be decoded.
    """
    view = _bytes_view(data)
    if media_type == NPY_MEDIA_TYPE:
        return _read_header(_Cursor(view).read, "x", max_elements).elements
    if media_type == NPZ_MEDIA_TYPE:
        return sum(
            _read_header(_MemberStream(view, info, name).read, name, max_elements).elements
            for name, info in _npz_members(view, max_elements).items()
        )
    raise ValueError(f"not a NumPy media type: {media_type!r}")


#: Size of the slices an .npy response is sent in.
SEND_PIECE = 1 << 20


def npy_parts(arr: Array) -> list[bytes | memoryview]:
    """``arr`` as an ``.npy`` file: the header, then slices of the array's own memory."""
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, npy_format.header_data_from_array_1_0(arr))
    data = arr.data.cast("B")
    return [header.getvalue(), *(data[i : i + SEND_PIECE] for i in range(0, len(data), SEND_PIECE))]


def write_npy(arr: Array) -> bytes:
    """``arr`` as an ``.npy`` file (one bytes object)."""
    return b"".join(npy_parts(arr))


# ---------------------------------------------------------------- .npy header


def _bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _result(flat: Array, header: _Header) -> tuple[Array, type]:
    arr = flat.reshape(header.shape, order="F" if header.fortran else "C")
    with np.errstate(invalid="ignore"):  # (a float32 signalling NaN; non-finite numbers are refused later)
        wide = arr.astype(np.float64, copy=False)
    return wide, {2: np.float16, 4: np.float32}.get(header.dtype.itemsize, np.float64)


class _Cursor:
    """``read(n)`` over a bare body: at most ``n`` bytes, fewer only at its end."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def read(self, n: int) -> bytes:
        piece = bytes(self._view[self._pos : self._pos + n])
        self._pos += len(piece)
        return piece


def _bad_header(field: str, reason: str) -> RequestError:
    return RequestError.one(400, field, f"not a valid .npy header: {reason}")


def _read_header(read: Callable[[int], bytes], field: str, max_elements: int) -> _Header:
    """Magic, version, capped length, then the strictly parsed dictionary, checked."""
    prefix = read(len(_MAGIC) + 2)
    if len(prefix) < len(_MAGIC) + 2:
        raise _bad_header(field, f"it is truncated ({len(prefix)} bytes)")
    if prefix[: len(_MAGIC)] != _MAGIC:
        raise _bad_header(field, "it does not start with the .npy magic string \\x93NUMPY")
    version = (prefix[-2], prefix[-1])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise _bad_header(
            field, f"format version {version[0]}.{version[1]} is not supported (1.0, 2.0 and 3.0 are)"
        )
    length_format = "<H" if version == (1, 0) else "<I"
    raw_length = read(struct.calcsize(length_format))
    if len(raw_length) < struct.calcsize(length_format):
        raise _bad_header(field, "it is truncated inside its length field")
    (length,) = struct.unpack(length_format, raw_length)
    if length > _MAX_HEADER:
        raise _bad_header(field, f"it declares a header of {length} bytes; the limit is {_MAX_HEADER}")
    raw = read(length)
    if len(raw) < length:
        raise _bad_header(field, f"it is truncated ({len(raw)} of the {length} bytes it declares)")
    try:
        text = raw.decode("utf-8" if version == (3, 0) else "latin-1")
    except UnicodeDecodeError:
        raise _bad_header(field, "a version 3.0 header must be UTF-8") from None
    descr, fortran, shape = _HeaderDict(text, field).parse()
    dtype = _float_dtype(descr, field)
    _check_shape(shape, field, max_elements)
    return _Header(shape, fortran, dtype, len(prefix) + len(raw_length) + length)


_SIMPLE_DESCR = re.compile(r"[<>|=]?[biufcO?][0-9]{0,2}")


def _float_dtype(descr: str, field: str) -> np.dtype[Any]:
    """float32 or float64 in either byte order; NumPy only ever sees a short, simple type string."""
    dtype: np.dtype[Any] | None = None
    if _SIMPLE_DESCR.fullmatch(descr):
        try:
            dtype = np.dtype(descr)
        except TypeError:
            dtype = None
    if dtype is not None and dtype in FLOAT_DTYPES:
        return dtype
    sent = f"{dtype.str} ({dtype.name})" if dtype is not None else repr(descr[:40])
    raise RequestError.one(422, field, f"must hold float16, float32 or float64 numbers, not {sent}")


def _check_shape(shape: tuple[int, ...], field: str, max_elements: int) -> None:
    for axis, size in enumerate(shape):
        if size < 0:
            raise _bad_header(field, f"dimension {axis} of the shape is negative")
    if len(shape) > MAX_DEPTH:
        raise RequestError.one(422, field, f"has {len(shape)} dimensions; the limit is {MAX_DEPTH}")
    count = math.prod(shape)  # Python ints: exact, however large
    if count > max_elements:
        # (str() of a number with thousands of digits raises; say how big it is instead)
        said = str(count) if count < 10**30 else f"more than 10^{int((count.bit_length() - 1) * 0.30103)}"
        raise RequestError.one(413, field, f"has {said} elements; the limit is {max_elements}")
    if count == 0:
        raise RequestError.one(422, field, "is empty; send at least one number")


_TOKEN = re.compile(
    r"""[ \t\r\n]*(?:
        (?P<str>'[^'\\\n]*'|"[^"\\\n]*")
      | (?P<int>-?(?:0(?![0-9])|[1-9][0-9]*))
      | (?P<word>True|False)(?![A-Za-z0-9_])
      | (?P<punct>[{}():,\[])
    )""",
    re.VERBOSE,
)
_KEYS = ("descr", "fortran_order", "shape")
_MAX_DIGITS = 4000  # int() refuses more than 4300 digits


class _HeaderDict:
    """The one dictionary of an ``.npy`` header, by a strict tokenizer and a flat parser.

    Accepts ``{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }``:
    the three keys once each in any order, single or double quotes, an optional
    trailing comma, whitespace between tokens and after the closing brace.
    The shape is ``()``, ``(n,)`` or ``(n, m, ...)`` of decimal integers.
    """

    def __init__(self, text: str, field: str) -> None:
        self._text = text
        self._field = field
        self._pos = 0

    def _bad(self, reason: str) -> RequestError:
        return _bad_header(self._field, reason)

    def _at_end(self) -> bool:
        return not self._text[self._pos :].lstrip(" \t\r\n")

    def _take(self, wanted: str) -> tuple[str, str]:
        """The next token, as (kind, text); read one at a time, so the first error is the one reported."""
        match = _TOKEN.match(self._text, self._pos)
        if match is None:
            rest = self._text[self._pos :].lstrip(" \t\r\n")
            raise self._bad(
                f"unexpected text {rest[:20]!r}" if rest else f"it ends where {wanted} was expected"
            )
        self._pos = match.end()
        kind = match.lastgroup or ""
        return kind, match[kind]

    def _punct(self, wanted: str, *allowed: str) -> str:
        kind, value = self._take(wanted)
        if kind != "punct" or value not in allowed:
            raise self._bad(f"expected {wanted}, found {value[:20]!r}")
        return value

    def parse(self) -> tuple[str, bool, tuple[int, ...]]:
        self._punct("'{'", "{")
        found: dict[str, Any] = {}
        while True:
            kind, value = self._take("a key or '}'")
            if kind == "punct" and value == "}":
                break
            if kind != "str":
                raise self._bad(f"expected a key, found {value[:20]!r}")
            key = value[1:-1]
            if key not in _KEYS:
                raise self._bad(f"unexpected key {key[:20]!r}")
            if key in found:
                raise self._bad(f"the key {key!r} appears twice")
            self._punct("':'", ":")
            found[key] = (
                self._descr()
                if key == "descr"
                else self._fortran()
                if key == "fortran_order"
                else self._shape()
            )
            if self._punct("',' or '}'", ",", "}") == "}":
                break
        if not self._at_end():
            raise self._bad("unexpected text after the dictionary")
        for key in _KEYS:
            if key not in found:
                raise self._bad(f"the key {key!r} is missing")
        return found["descr"], found["fortran_order"], found["shape"]

    def _descr(self) -> str:
        kind, value = self._take("the descr")
        if kind == "punct" and value == "[":
            raise RequestError.one(
                422, self._field, "must hold float16, float32 or float64 numbers, not a structured dtype"
            )
        if kind != "str":
            raise self._bad(f"descr must be a type string, not {value[:20]!r}")
        return value[1:-1]

    def _fortran(self) -> bool:
        kind, value = self._take("fortran_order")
        if kind != "word":
            raise self._bad(f"fortran_order must be True or False, not {value[:20]!r}")
        return value == "True"

    def _shape(self) -> tuple[int, ...]:
        self._punct("the shape's '('", "(")
        dims: list[int] = []
        comma = False
        while True:
            kind, value = self._take("a dimension or ')'")
            if kind == "punct" and value == ")":
                break
            if kind != "int":
                raise self._bad(f"the shape must be a tuple of integers; found {value[:20]!r}")
            if len(value) > _MAX_DIGITS:
                raise self._bad(f"a dimension of the shape has more than {_MAX_DIGITS} digits")
            dims.append(int(value))
            comma = self._punct("',' or ')' in the shape", ",", ")") == ","
            if not comma:
                break
        if len(dims) == 1 and not comma:
            raise self._bad("the shape must be a tuple; a one-dimensional shape is written (n,)")
        return tuple(dims)


# ---------------------------------------------------------------- .npz archive


def _npz_members(view: memoryview, max_elements: int) -> dict[str, zipfile.ZipInfo]:
    """The checked members of an archive, by array name; nothing is decompressed."""
    try:
        with zipfile.ZipFile(_ViewFile(view)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError, struct.error) as exc:
        # (NotImplementedError: "zip file version 25.0", a member needing a newer unzip)
        raise RequestError.one(400, "body", f"not a valid .npz (zip) archive: {str(exc)[:200]}") from None
    names = [info.filename for info in infos]
    if sorted(names) not in _NPZ_LAYOUTS:
        shown = repr(names[:10])[:-1] + (f", ... ({len(names)} members)]" if len(names) > 10 else "]")
        raise RequestError.one(
            422,
            "body",
            f"an .npz body holds the member x.npy, and grad.npy or y.npy (POST /check); found {shown}",
        )
    members = {info.filename.removesuffix(".npy"): info for info in infos}
    limit = _MAX_PREFIX + _MAX_HEADER + max_elements * 8
    for name in _NPZ_MEMBERS:
        info = members.get(name)
        if info is None:
            continue
        where = f"the .npz member {info.filename}"
        if info.flag_bits & 0x1:
            raise RequestError.one(400, name, f"{where} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise RequestError.one(
                400,
                name,
                f"{where} uses compression method {info.compress_type}; only stored and deflate are accepted",
            )
        if info.file_size > limit:
            raise RequestError.one(
                413,
                name,
                f"{where} declares {info.file_size} bytes; the limit for {max_elements} elements is {limit}",
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise RequestError.one(
                400,
                name,
                f"{where} is damaged: it is stored, in {info.compress_size} bytes, but declares {info.file_size}",
            )
        if info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise RequestError.one(
                413,
                name,
                f"{where} has a compression ratio of {info.file_size // max(info.compress_size, 1)}:1; "
                f"the limit is {_MAX_RATIO}:1",
            )
    return {name: members[name] for name in _NPZ_MEMBERS if name in members}


class _ViewFile(io.RawIOBase):
    """A read-only file over the body, for zipfile's central directory reader (BytesIO would copy it)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)  # (as BytesIO)
        return self._pos

    def read(self, size: int | None = -1, /) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        piece = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return piece

    def readinto(self, buffer: Any) -> int:
        piece = self._view[self._pos : self._pos + len(buffer)]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


def _read_member(view: memoryview, info: zipfile.ZipInfo, name: str, max_elements: int) -> tuple[Array, type]:
    stream = _MemberStream(view, info, name)
    header = _read_header(stream.read, name, max_elements)
    if info.file_size != header.size + header.nbytes:
        raise RequestError.one(
            400,
            name,
            f"the archive declares {info.file_size} bytes for {info.filename}; "
            f"the .npy header implies {header.size + header.nbytes}",
        )
    # Bounded: nbytes is within the element limit, and equals the member's declared
    # size, which is within the compression ratio of bytes actually in the body.
    buffer = np.empty(header.nbytes, dtype=np.uint8)
    stream.read_exactly(buffer.data)
    stream.finish()
    return _result(buffer.view(header.dtype), header)


class _MemberStream:
    """The decompressed bytes of one ``.npz`` member, in bounded pieces, never more than declared."""

    def __init__(self, view: memoryview, info: zipfile.ZipInfo, field: str) -> None:
        self._info = info
        self._field = field
        self._raw = self._compressed(view)
        self._pos = 0
        self._inflater = (
            zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
        )
        self._ended = False
        self._produced = 0
        self._crc = 0

    def _damaged(self, reason: str) -> RequestError:
        return RequestError.one(
            400, self._field, f"the .npz member {self._info.filename} is damaged: {reason}"
        )

    def _compressed(self, view: memoryview) -> memoryview:
        """The member's data, located through its local header."""
        at = self._info.header_offset
        fixed = bytes(view[at : at + 30]) if at >= 0 else b""
        if len(fixed) < 30 or fixed[:4] != b"PK\x03\x04":
            raise self._damaged("its local header is missing")
        (flags,) = struct.unpack_from("<H", fixed, 6)
        name_length, extra_length = struct.unpack_from("<HH", fixed, 26)
        if flags & 0x1:
            raise RequestError.one(400, self._field, f"the .npz member {self._info.filename} is encrypted")
        encoding = "utf-8" if self._info.flag_bits & 0x800 else "cp437"
        if bytes(view[at + 30 : at + 30 + name_length]) != self._info.orig_filename.encode(encoding):
            raise self._damaged("its local header names another file")
        start = at + 30 + name_length + extra_length
        end = start + self._info.compress_size
        if end > len(view):
            raise self._damaged("the archive ends inside its data")
        return view[start:end]

    def _piece(self, limit: int) -> bytes:
        """At most ``limit`` (> 0) decompressed bytes; empty only at the end of the member."""
        while not self._ended:
            if self._inflater is None:
                piece = bytes(self._raw[self._pos : self._pos + limit])
                self._pos += len(piece)
                self._ended = not piece
            else:
                fed: bytes | memoryview = self._inflater.unconsumed_tail
                if not fed:
                    fed = self._raw[self._pos : self._pos + _INPUT_PIECE]
                    self._pos += len(fed)
                try:
                    piece = self._inflater.decompress(fed, limit)
                except zlib.error as exc:
                    raise self._damaged(str(exc)) from None
                self._ended = self._inflater.eof
                if not piece and not fed and not self._ended:
                    raise self._damaged("its compressed data ends early")
            if piece:
                self._produced += len(piece)
                if self._produced > self._info.file_size:
                    raise RequestError.one(
                        413,
                        self._field,
                        f"the .npz member {self._info.filename} expands beyond the "
                        f"{self._info.file_size} bytes it declares",
                    )
                self._crc = zlib.crc32(piece, self._crc)
                return piece
        return b""

    def read(self, n: int) -> bytes:
        """At most ``n`` bytes; fewer only at the end of the member."""
        pieces = []
        while n > 0 and (piece := self._piece(min(n, _OUTPUT_PIECE))):
            pieces.append(piece)
            n -= len(piece)
        return b"".join(pieces)

    def read_exactly(self, out: memoryview) -> None:
        filled = 0
        while filled < len(out):
            piece = self._piece(min(len(out) - filled, _OUTPUT_PIECE))
            if not piece:
                raise self._damaged(f"it holds {self._produced} bytes but declares {self._info.file_size}")
            out[filled : filled + len(piece)] = piece
            filled += len(piece)

    def finish(self) -> None:
        """The member must end here, with the CRC-32 it declares."""
        self._piece(1)  # (raises if anything more comes out; otherwise reaches the end)
        if self._crc != self._info.CRC:
            raise self._damaged("its CRC-32 does not match its data")
