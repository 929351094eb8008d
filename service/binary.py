"""NumPy binary bodies: ``.npy`` (one array) and ``.npz`` (``x`` and ``grad``).

Nothing is unpickled and nothing is allocated from a declared size before it
is checked: the header is read first, the dtype must be float32 or float64,
the element count must be within the limit, and the data must be exactly as
long as the header says.  In an ``.npz`` archive each member's declared size
is checked against its header before its data is read, so a compressed
archive cannot expand beyond the limit (no zip bombs).
"""

from __future__ import annotations

import io
import math
import zipfile
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from .activations import Array
from .problems import RequestError

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"
FLOAT_DTYPES = (np.dtype("<f4"), np.dtype(">f4"), np.dtype("<f8"), np.dtype(">f8"))
_MAX_HEADER = 10_000
_NPZ_MEMBERS = ("x", "grad")


def read_npy(data: bytes | bytearray | memoryview, field: str, max_elements: int) -> tuple[Array, type]:
    """An ``.npy`` body as a float64 array, and the float type it was sent in."""
    stream = io.BytesIO(data)
    shape, fortran, dtype = _header(stream, field, max_elements)
    offset = stream.tell()
    count = math.prod(shape)
    expected = offset + count * dtype.itemsize
    if len(data) != expected:
        raise RequestError.one(
            400,
            field,
            f"the .npy data is {len(data) - offset} bytes; its header declares {expected - offset}",
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    arr = flat.reshape(shape, order="F" if fortran else "C")
    return arr.astype(np.float64, copy=False), np.float32 if dtype.itemsize == 4 else np.float64


def read_npz(data: bytes | bytearray | memoryview, max_elements: int) -> dict[str, tuple[Array, type]]:
    """The arrays ``x`` (required) and ``grad`` (optional) of an ``.npz`` body."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RequestError.one(400, "body", "not a valid .npz (zip) archive") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        names = {name.removesuffix(".npy") for name in members}
        unknown = sorted(names - set(_NPZ_MEMBERS))
        if unknown or "x" not in names or len(members) != len(names):
            raise RequestError.one(
                422, "body", f"an .npz body holds the arrays x and optionally grad; found {sorted(members)}"
            )
        arrays = {}
        for name in _NPZ_MEMBERS:
            info = members.get(f"{name}.npy")
            if info is not None:
                arrays[name] = _read_member(archive, info, name, max_elements)
        return arrays


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, max_elements: int
) -> tuple[Array, type]:
    try:
        with archive.open(info) as member:
            shape, fortran, dtype = _header(member, name, max_elements)
            header_size = member.tell() if member.seekable() else None
            data_size = math.prod(shape) * dtype.itemsize
            if header_size is not None and info.file_size != header_size + data_size:
                raise RequestError.one(
                    400,
                    name,
                    f"the archive declares {info.file_size} bytes; the .npy header implies {header_size + data_size}",
                )
            raw = member.read(data_size + 1)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise RequestError.one(400, name, f"the .npz member is damaged: {exc}") from None
    if len(raw) != data_size:
        raise RequestError.one(
            400, name, f"the .npy data is {len(raw)} bytes; its header declares {data_size}"
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(np.float64, copy=False), np.float32 if dtype.itemsize == 4 else np.float64


def _header(stream: Any, field: str, max_elements: int) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream, max_header_size=_MAX_HEADER)
        else:
            raise RequestError.one(
                400, field, f".npy format version {version} is not supported (1.0 and 2.0 are)"
            )
    except RequestError:
        raise
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise RequestError.one(400, field, f"not a valid .npy header: {str(exc)[:200]}") from None
    if dtype not in FLOAT_DTYPES:
        raise RequestError.one(
            422, field, f"must hold float32 or float64 numbers, not {dtype.str} ({dtype.name})"
        )
    count = math.prod(shape)
    if count > max_elements:
        raise RequestError.one(413, field, f"has {count} elements; the limit is {max_elements}")
    if count == 0:
        raise RequestError.one(422, field, "is empty; send at least one number")
    return shape, fortran, dtype


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
