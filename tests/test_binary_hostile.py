"""Hostile .npy and .npz bodies, built byte by byte: each is a 4xx naming what is wrong, never a 500."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib

import httpx
import numpy as np
import pytest

from service import binary
from service.codec import MAX_DEPTH
from service.problems import RequestError
from service.settings import Settings
from tests.test_api import assert_problem

NPY = {"content-type": "application/x-npy"}
NPZ = {"content-type": "application/x-npz"}
MAGIC = b"\x93NUMPY"
MAX_ELEMENTS = Settings.model_construct().max_elements  # (what the client fixture serves with)


def npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


def header(text: str, version: tuple[int, int] = (1, 0), length: int | None = None) -> bytes:
    """Magic, version, length field (``length`` if given, else the text's) and the header text."""
    raw = text.encode("utf-8" if version == (3, 0) else "latin-1")
    fmt = "<H" if version == (1, 0) else "<I"
    return MAGIC + bytes(version) + struct.pack(fmt, len(raw) if length is None else length) + raw


def dict_text(shape: str = "(2,)", descr: str = "'<f8'", fortran: str = "False") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def member(
    name: str,
    content: bytes,
    *,
    method: int = 8,
    data: bytes | None = None,
    file_size: int | None = None,
    compress_size: int | None = None,
    crc: int | None = None,
    flags: int = 0,
) -> dict[str, object]:
    """One archive member; ``data`` (the bytes stored) defaults to ``content`` stored or deflated."""
    if data is None:
        data = deflate(content) if method == 8 else content
    return {
        "name": name.encode(),
        "method": method,
        "data": data,
        "file_size": len(content) if file_size is None else file_size,
        "compress_size": len(data) if compress_size is None else compress_size,
        "crc": zlib.crc32(content) if crc is None else crc,
        "flags": flags,
    }


def archive(*members: dict[str, object]) -> bytes:
    """A zip archive written by hand, so that any field can lie."""
    out, central = bytearray(), bytearray()
    for m in members:
        name, data = m["name"], m["data"]
        assert isinstance(name, bytes)
        assert isinstance(data, bytes)
        fields = (m["flags"], m["method"], 0, 0, m["crc"], m["compress_size"], m["file_size"], len(name))
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, *fields, 0) + name + data
        central += struct.pack("<4sHH", b"PK\x01\x02", 20, 20)
        central += struct.pack("<HHHHIIIHHHHHII", *fields, 0, 0, 0, 0, 0, offset) + name
    n = len(members)
    return bytes(
        out + central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    )


def refused(call: object, status: int, field: str, *words: str) -> RequestError:
    assert callable(call)
    with pytest.raises(RequestError) as info:
        call()
    exc = info.value
    assert exc.status == status, exc.detail
    assert [f for f, _ in exc.errors] == [field]
    for word in words:
        assert word in exc.errors[0][1], exc.detail
    return exc


async def post_npy(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post("/activate?activation=relu", content=body, headers=NPY)


async def post_npz(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post("/derivative?activation=relu", content=body, headers=NPZ)


def test_the_hand_built_archive_is_a_valid_zip() -> None:
    body = archive(member("x.npy", npy(np.ones(3))), member("grad.npy", npy(np.ones(3)), method=0))
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.testzip() is None
    arrays = binary.read_npz(body, 100)
    assert sorted(arrays) == ["grad", "x"]
    np.testing.assert_array_equal(arrays["x"][0], np.ones(3))


# ---------------------------------------------------------------- the .npy header


async def test_npy_header_declaring_1_gib_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body = header(dict_text(), version=(2, 0), length=2**30) + bytes(1000)
    r = await post_npy(client, body)
    assert_problem(r, 400, "x", "not a valid .npy header", "1073741824", "limit is 10000")


async def test_oversized_header_error_gives_no_advice_to_disable_safety(client: httpx.AsyncClient) -> None:
    # A real 60,000-byte header: NumPy's own error says to use allow_pickle=True or max_header_size.
    text = dict_text().ljust(60_000 - 1) + "\n"
    r = await post_npy(client, header(text) + bytes(16))
    assert_problem(r, 400, "x", "not a valid .npy header", "limit is 10000")
    assert "allow_pickle" not in r.text
    assert "max_header_size" not in r.text


async def test_shape_with_3000_minus_signs_is_a_400(client: httpx.AsyncClient) -> None:
    # ast.literal_eval recurses once per unary minus: RecursionError (a 500) before.
    r = await post_npy(client, header(dict_text(shape="(" + "-" * 3000 + "1,)")) + bytes(8))
    assert_problem(r, 400, "x", "not a valid .npy header")


@pytest.mark.parametrize("ndim", [MAX_DEPTH + 1, 65, 1000])
async def test_too_many_dimensions_are_a_422_naming_the_limit(client: httpx.AsyncClient, ndim: int) -> None:
    r = await post_npy(client, header(dict_text(shape="(" + "1, " * ndim + ")")) + bytes(8))
    assert_problem(r, 422, "x", f"has {ndim} dimensions", f"the limit is {MAX_DEPTH}")


async def test_max_depth_dimensions_are_accepted(client: httpx.AsyncClient) -> None:
    r = await post_npy(client, npy(np.ones((1,) * MAX_DEPTH)))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("shape", ["(-2, -1)", "(-1,)", "(3, -0, -4)", "(-5, 0)"])
async def test_negative_dimensions_are_a_400(client: httpx.AsyncClient, shape: str) -> None:
    # (-2, -1) has 2 elements, so 16 bytes of data matched its size: a 500 from reshape before.
    r = await post_npy(client, header(dict_text(shape=shape)) + bytes(16))
    assert_problem(r, 400, "x", "not a valid .npy header", "negative")


@pytest.mark.parametrize("shape", ["(1099511627776, 1099511627776, 1099511627776)", "(" + "9" * 300 + ",)"])
async def test_huge_dimensions_are_a_413(client: httpx.AsyncClient, shape: str) -> None:
    r = await post_npy(client, header(dict_text(shape=shape)) + bytes(8))
    assert_problem(r, 413, "x", "elements", f"the limit is {MAX_ELEMENTS}")
    assert len(r.text) < 1000


async def test_huge_and_zero_dimensions_are_empty(client: httpx.AsyncClient) -> None:
    r = await post_npy(client, header(dict_text(shape="(" + "9" * 300 + ", 0)")))
    assert_problem(r, 422, "x", "empty")


@pytest.mark.parametrize(
    "text",
    [
        dict_text(shape="(5)"),  # an int, not a tuple
        dict_text(shape="[5]"),
        dict_text(shape="((5,),)"),
        dict_text(shape="(5.0,)"),
        dict_text(shape="(0x5,)"),
        dict_text(shape="(05,)"),
        dict_text(shape="(5,,)"),
        dict_text(shape="(,)"),
        dict_text(shape="(True,)"),
        dict_text(shape="(1_0,)"),
        dict_text(shape="(--5,)"),
        dict_text(shape="(- 5,)"),
        dict_text(shape="(" + "1" * 5000 + ",)"),
        dict_text(descr="<f8"),
        dict_text(descr="'<f8' '<f8'"),
        dict_text(descr="'<\\x66\\x38'"),
        dict_text(fortran="0"),
        dict_text(fortran="Falsey"),
        dict_text(fortran="__import__('os').system('true')"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f8', 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,),,}",
        "{'descr': '<f8', 'fortran_order': False 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
        "{descr: '<f8', fortran_order: False, shape: (2,)}",
        "dict(descr='<f8', fortran_order=False, shape=(2,))",
        "",
        "{" * 3000,
    ],
)
async def test_malformed_headers_are_a_400(client: httpx.AsyncClient, text: str) -> None:
    r = await post_npy(client, header(text) + bytes(16))
    assert_problem(r, 400, "x", "not a valid .npy header: ")
    assert len(r.text) < 1000


@pytest.mark.parametrize(
    "shape", ["(\u0665,)", "(5,\u00a0)", "(\uff15,)"]
)  # Arabic-Indic and full-width fives
async def test_non_ascii_in_a_utf8_header_is_a_400(client: httpx.AsyncClient, shape: str) -> None:
    r = await post_npy(client, header(dict_text(shape=shape), version=(3, 0)) + bytes(40))
    assert_problem(r, 400, "x", "not a valid .npy header: ")


@pytest.mark.parametrize(
    ("body", "word"),
    [
        (b"", "truncated"),
        (MAGIC, "truncated"),
        (b"\x93NUMPX\x01\x00" + bytes(100), "magic string"),
        (MAGIC + b"\x04\x00" + bytes(100), "format version 4.0 is not supported"),
        (MAGIC + b"\x02\x00\x10", "length field"),
        (header(dict_text(), length=500), "truncated"),
        (MAGIC + b"\x03\x00" + struct.pack("<I", 64) + b"\xff" * 64, "UTF-8"),
    ],
    ids=["empty", "magic-only", "bad-magic", "version-4", "short-length", "short-header", "bad-utf8"],
)
async def test_truncated_or_foreign_prefixes_are_a_400(
    client: httpx.AsyncClient, body: bytes, word: str
) -> None:
    assert_problem(await post_npy(client, body), 400, "x", "not a valid .npy header: ", word)


async def test_float32_signalling_nan_is_a_422_not_a_cast_warning(client: httpx.AsyncClient) -> None:
    r = await post_npy(client, npy(np.frombuffer(np.uint32(0x7F800001).tobytes(), np.float32)))
    assert_problem(r, 422, "x[0]", "finite")


async def test_structured_dtype_is_a_422(client: httpx.AsyncClient) -> None:
    r = await post_npy(client, npy(np.zeros(2, dtype=[("a", "<f8")])))
    assert_problem(r, 422, "x", "float32 or float64", "structured")


@pytest.mark.parametrize("descr", ["'<U3'", "'(2,)<f8'", "'<M8[ns]'", "'<i2'", "'<f16'", "'<c16'", "'zz'"])
async def test_other_dtypes_are_a_422(client: httpx.AsyncClient, descr: str) -> None:
    r = await post_npy(client, header(dict_text(descr=descr)) + bytes(16))
    assert_problem(r, 422, "x", "float32 or float64")


@pytest.mark.parametrize(
    "text",
    [
        "{'shape': (2, 3), 'fortran_order': True, 'descr': '>f4'}",
        '{"descr": ">f4", "fortran_order": true, "shape": (2, 3)}'.replace("true", "True"),
        "{ 'fortran_order' : True ,'descr':'>f4','shape':(2,3,) }   \n",
        "{'descr': '>f4',\n 'fortran_order': True,\n 'shape': (2, 3)}\t\r\n",
    ],
)
def test_header_variants_are_accepted(text: str) -> None:
    values = np.arange(6, dtype=">f4")
    arr, kind = binary.read_npy(header(text) + values.tobytes(), "x", 100)
    assert kind is np.float32
    np.testing.assert_array_equal(arr, values.reshape((2, 3), order="F"))


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_versions_1_2_and_3_are_accepted(version: tuple[int, int]) -> None:
    body = header(dict_text(shape="()"), version=version) + np.float64(2.5).tobytes()
    arr, kind = binary.read_npy(body, "x", 1)
    assert arr.shape == ()
    assert arr == 2.5
    assert kind is np.float64


@pytest.mark.parametrize(
    "arr",
    [np.ones(3), np.arange(6.0, dtype=">f8").reshape(2, 3), np.asfortranarray(np.ones((3, 4), np.float32))],
)
def test_numpy_written_files_round_trip(arr: np.ndarray) -> None:
    back, _ = binary.read_npy(npy(arr), "x", 100)
    np.testing.assert_array_equal(back, arr)
    assert binary.declared_elements(npy(arr), binary.NPY_MEDIA_TYPE, 100) == arr.size


# ---------------------------------------------------------------- .npz members


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        (["x"], "['x']"),
        (["x.npy", "grad"], "['x.npy', 'grad']"),
        (["x.npy", "x.npy"], "['x.npy', 'x.npy']"),
        (["x.npy", "grad.npy", "grad.npy"], "['x.npy', 'grad.npy', 'grad.npy']"),
        (["x.npy", "w.npy"], "['x.npy', 'w.npy']"),
        (["x.npy/"], "['x.npy/']"),
        (["grad.npy"], "['grad.npy']"),
        (["X.npy"], "['X.npy']"),
        ([], "[]"),
    ],
)
async def test_npz_members_must_be_x_npy_and_grad_npy(
    client: httpx.AsyncClient, names: list[str], shown: str
) -> None:
    body = archive(*(member(name, npy(np.ones(2))) for name in names))
    r = await post_npz(client, body)
    assert_problem(
        r,
        422,
        "body",
        "an .npz body holds the member x.npy, and grad.npy or y.npy (POST /check); found " + shown,
    )


async def test_npz_with_many_members_lists_only_a_few(client: httpx.AsyncClient) -> None:
    body = archive(*(member(f"m{i}.npy", b"") for i in range(500)))
    r = await post_npz(client, body)
    assert_problem(r, 422, "body", "(500 members)")
    assert len(r.text) < 1000


async def test_npz_encrypted_member_is_a_400(client: httpx.AsyncClient) -> None:
    body = bytearray(archive(member("x.npy", npy(np.ones(2)))))
    # Patch the general-purpose flag bit 0 in both the local and the central header.
    body[6] |= 1
    central = body.index(b"PK\x01\x02")
    body[central + 8] |= 1
    r = await post_npz(client, bytes(body))
    assert_problem(r, 400, "x", "x.npy", "is encrypted")


async def test_npz_encrypted_local_header_is_a_400(client: httpx.AsyncClient) -> None:
    body = bytearray(archive(member("x.npy", npy(np.ones(2)))))
    body[6] |= 1
    assert_problem(await post_npz(client, bytes(body)), 400, "x", "x.npy", "is encrypted")


@pytest.mark.parametrize("method", [12, 14, 1, 99])
async def test_npz_compression_methods_other_than_stored_and_deflate_are_a_400(
    client: httpx.AsyncClient, method: int
) -> None:
    body = bytearray(archive(member("x.npy", npy(np.ones(2)))))
    struct.pack_into("<H", body, 8, method)  # local header
    struct.pack_into("<H", body, body.index(b"PK\x01\x02") + 10, method)  # central directory
    r = await post_npz(client, bytes(body))
    assert_problem(
        r, 400, "x", f"x.npy uses compression method {method}; only stored and deflate are accepted"
    )


async def test_npz_corrupted_deflate_stream_is_a_400(client: httpx.AsyncClient) -> None:
    content = npy(np.ones(2))
    # 0xff: a final block of the reserved type 3, which zlib refuses (zlib.error).
    body = archive(member("grad.npy", content), member("x.npy", content, data=b"\xff" * 40))
    r = await post_npz(client, body)
    assert_problem(r, 400, "x", "x.npy is damaged", "invalid block type")


async def test_npz_deflate_stream_ending_early_is_a_400(client: httpx.AsyncClient) -> None:
    content = npy(np.arange(1000.0))
    data = deflate(content)
    r = await post_npz(client, archive(member("x.npy", content, data=data[: len(data) // 2])))
    assert_problem(r, 400, "x", "x.npy is damaged", "ends early")


async def test_npz_stream_ending_before_its_declared_size_is_a_400(client: httpx.AsyncClient) -> None:
    content = npy(np.arange(10.0))
    r = await post_npz(client, archive(member("x.npy", content, data=deflate(content[:-8]))))
    assert_problem(
        r, 400, "x", "x.npy is damaged", f"holds {len(content) - 8} bytes but declares {len(content)}"
    )


async def test_npz_member_data_past_the_end_of_the_body_is_a_400(client: httpx.AsyncClient) -> None:
    content = npy(np.ones(2))
    r = await post_npz(client, archive(member("x.npy", content, compress_size=100_000)))
    assert_problem(r, 400, "x", "x.npy is damaged", "ends inside its data")


async def test_npz_missing_local_header_is_a_400(client: httpx.AsyncClient) -> None:
    body = bytearray(archive(member("x.npy", npy(np.ones(2)))))
    body[:4] = b"XXXX"
    assert_problem(await post_npz(client, bytes(body)), 400, "x", "x.npy is damaged", "local header")


@pytest.mark.parametrize("cut", [1, 10, 22, 60])
async def test_npz_truncated_archive_is_a_400(client: httpx.AsyncClient, cut: int) -> None:
    body = archive(member("x.npy", npy(np.ones(2))))
    assert_problem(await post_npz(client, body[:-cut]), 400, "body", "not a valid .npz (zip) archive")


async def test_npz_needing_a_newer_zip_version_is_a_400(client: httpx.AsyncClient) -> None:
    body = bytearray(archive(member("x.npy", npy(np.ones(2)))))
    body[body.index(b"PK\x01\x02") + 6] = (
        250  # "version needed to extract": zipfile raised NotImplementedError
    )
    assert_problem(await post_npz(client, bytes(body)), 400, "body", "not a valid .npz (zip) archive", "25.0")


async def test_npz_bad_crc_is_a_400(client: httpx.AsyncClient) -> None:
    content = npy(np.ones(2))
    r = await post_npz(client, archive(member("x.npy", content, crc=zlib.crc32(content) ^ 1)))
    assert_problem(r, 400, "x", "x.npy is damaged", "CRC-32")


async def test_npz_stored_member_with_different_sizes_is_a_400(client: httpx.AsyncClient) -> None:
    content = npy(np.ones(2))
    r = await post_npz(client, archive(member("x.npy", content, method=0, file_size=len(content) - 8)))
    assert_problem(r, 400, "x", "x.npy is damaged", "stored")


async def test_npz_member_yielding_more_than_it_declares_is_a_413(client: httpx.AsyncClient) -> None:
    # The header and the declared size agree; the deflate stream then goes on (zipfile cut it silently).
    content = npy(np.ones(4))
    extra = content + bytes(5000)
    body = archive(member("x.npy", content, data=deflate(extra)))
    r = await post_npz(client, body)
    assert_problem(r, 413, "x", "x.npy expands beyond the", f"{len(content)} bytes it declares")


async def test_npz_member_beyond_the_element_limit_is_refused_before_decompressing(
    client: httpx.AsyncClient,
) -> None:
    r = await post_npz(client, archive(member("x.npy", b"", data=b"\x03\x00", file_size=2**32 - 1)))
    assert_problem(r, 413, "x", "x.npy declares 4294967295 bytes", "limit")


async def test_npz_compression_ratio_above_1000_is_a_413(client: httpx.AsyncClient) -> None:
    out = io.BytesIO()
    np.savez_compressed(out, x=np.zeros(1_000_000))
    with zipfile.ZipFile(out) as z:
        info = z.getinfo("x.npy")
    assert info.file_size > 1000 * info.compress_size  # (deflate reaches ~1030:1 on zeros)
    r = await post_npz(client, out.getvalue())
    assert_problem(r, 413, "x", "x.npy has a compression ratio of 10", "the limit is 1000:1")


async def test_npz_declared_ratio_above_1000_is_a_413(client: httpx.AsyncClient) -> None:
    content = npy(np.ones(2))
    r = await post_npz(client, archive(member("x.npy", content, file_size=len(deflate(content)) * 2000)))
    assert_problem(r, 413, "x", "compression ratio of 2000:1")


async def test_npz_member_header_declaring_1_gib_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    content = header(dict_text(), version=(2, 0), length=2**30) + bytes(1000)
    for method in (0, 8):
        r = await post_npz(client, archive(member("x.npy", content, method=method)))
        assert_problem(r, 400, "x", "not a valid .npy header", "limit is 10000")


def inflating_to_1_gib_of_header() -> bytes:
    """~1 MB of deflate whose 1 GiB output is an .npy v2.0 prefix declaring a 1 GiB header, then spaces."""
    prefix = MAGIC + b"\x02\x00" + struct.pack("<I", 2**30)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(b" " * 2**20) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(b" " * 2**20) + c.flush(zlib.Z_FULL_FLUSH) == block  # (a full flush resets)
    data = head + block * 1024 + c.flush()
    return archive(member("x.npy", b"", data=data, file_size=len(prefix) + 2**30, crc=0))


@pytest.mark.parametrize("max_elements", [MAX_ELEMENTS, 2**28])
def test_npz_inflating_to_1_gib_allocates_little(max_elements: int) -> None:
    body = inflating_to_1_gib_of_header()
    assert len(body) < 1_200_000
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as read:
            binary.read_npz(body, max_elements)
        with pytest.raises(RequestError) as declared:
            binary.declared_elements(body, binary.NPZ_MEDIA_TYPE, max_elements)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20  # (NumPy's header reader inflated all 1 GiB, then copied it: 2 GiB)
    for refusal in (read.value, declared.value):
        assert refusal.status == 413, refusal.detail
        assert refusal.errors[0][0] == "x"
        assert "x.npy" in refusal.errors[0][1]


def test_npz_header_declaring_1_gib_within_a_member_allocates_little() -> None:
    # Small declared size, so it gets to the member's header: the length is refused before it is read.
    content = header(dict_text(), version=(2, 0), length=2**30) + bytes(1_000_000)
    body = archive(member("x.npy", content))
    tracemalloc.start()
    try:
        refused(lambda: binary.read_npz(body, MAX_ELEMENTS), 400, "x", "limit is 10000")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * 2**20


@pytest.mark.parametrize(
    ("shape", "status", "words"),
    [
        ("(" + "-" * 3000 + "1,)", 400, ("not a valid .npy header",)),
        ("(-2, -1)", 400, ("negative",)),
        ("(" + "1, " * (MAX_DEPTH + 1) + ")", 422, (f"the limit is {MAX_DEPTH}",)),
        ("(1099511627776, 1099511627776)", 413, ("limit",)),
    ],
)
def test_npz_member_headers_are_checked_like_bare_npy_headers(
    shape: str, status: int, words: tuple[str, ...]
) -> None:
    body = archive(member("x.npy", header(dict_text(shape=shape)) + bytes(16)))
    refused(lambda: binary.read_npz(body, 100), status, "x", *words)


# ---------------------------------------------------------------- declared_elements


def test_declared_elements_of_npz_reads_only_the_headers() -> None:
    out = io.BytesIO()
    np.savez_compressed(
        out, x=np.random.default_rng(1).standard_normal((500, 400)), grad=np.ones(7, np.float32)
    )
    body = out.getvalue()
    tracemalloc.start()
    try:
        assert binary.declared_elements(body, binary.NPZ_MEDIA_TYPE, 10**6) == 200_007
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_500_000 + len(body)  # (not the 1.6 MB of data)


def test_declared_elements_applies_the_same_checks() -> None:
    refused(
        lambda: binary.declared_elements(npy(np.ones(10)), binary.NPY_MEDIA_TYPE, 9), 413, "x", "limit is 9"
    )
    big = header(dict_text(), version=(2, 0), length=2**30)
    refused(lambda: binary.declared_elements(big, binary.NPY_MEDIA_TYPE, 9), 400, "x", "limit is 10000")
    refused(
        lambda: binary.declared_elements(archive(member("x", b"")), binary.NPZ_MEDIA_TYPE, 9), 422, "body"
    )
    # Headers only: the data need not be there.
    assert binary.declared_elements(npy(np.ones(10))[:-8], binary.NPY_MEDIA_TYPE, 10) == 10
    with pytest.raises(ValueError, match="media type"):
        binary.declared_elements(b"{}", "application/json", 10)
