"""The NumPy binary path: .npy and .npz bodies and responses."""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
import pytest

from service import activations
from tests.test_api import assert_problem

NPY = {"content-type": "application/x-npy"}
NPZ = {"content-type": "application/x-npz"}


def npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def load(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


async def test_npy_in_npy_out(client: httpx.AsyncClient) -> None:
    x = np.array([[-2.0, 0.0], [1.0, 3.0]])
    r = await client.post(
        "/activate?activation=leaky_relu&negative_slope=0.1",
        content=npy(x),
        headers=NPY | {"accept": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    assert r.headers["x-activation"] == "leaky_relu"
    assert r.headers["x-activation-params"] == '{"negative_slope":0.1}'
    assert r.headers["x-activation-result"] == "y"
    y = load(r.content)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [[-0.2, 0.0], [1.0, 3.0]])


async def test_npy_in_json_out_without_accept(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=softmax", content=npy(np.array([1.0, 2.0, 3.0])), headers=NPY)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert [round(v, 8) for v in r.json()["y"]] == [0.09003057, 0.24472847, 0.66524096]


async def test_npy_float32_gives_float32(client: httpx.AsyncClient) -> None:
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    r = await client.post(
        "/activate?activation=sigmoid", content=npy(x), headers=NPY | {"accept": "application/x-npy"}
    )
    y = load(r.content)
    assert y.dtype == np.float32
    expected = activations.get("sigmoid").value(x.astype(np.float64), {}, dtype=np.float32)
    np.testing.assert_array_equal(y, expected)


async def test_npy_big_endian_and_fortran_order(client: httpx.AsyncClient) -> None:
    x = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3) - 2)
    r = await client.post(
        "/activate?activation=relu", content=npy(x), headers=NPY | {"accept": "application/x-npy"}
    )
    np.testing.assert_array_equal(load(r.content), np.maximum(x.astype("<f8"), 0))


async def test_npz_derivative_with_grad(client: httpx.AsyncClient) -> None:
    x, g = np.array([40.0, 0.0]), np.array([1.0, 0.0])
    r = await client.post(
        "/derivative?activation=softmax",
        content=npz(x=x, grad=g),
        headers=NPZ | {"accept": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-activation-result"] == "grad_x"
    expected = activations.get("softmax").vector_jacobian_product(x, g, {"temperature": 1.0})
    np.testing.assert_array_equal(load(r.content), expected)


async def test_npy_second_derivative_and_query_fields(client: httpx.AsyncClient) -> None:
    x = np.array([[0.0, 1.0], [2.0, -1.0]])
    r = await client.post("/derivative?activation=gelu&order=2", content=npy(x), headers=NPY)
    assert r.status_code == 200
    expected = activations.get("gelu").second_derivative(x, {})
    assert r.json()["d2ydx2"] == expected.tolist()


async def test_npy_wrt_params_answers_json(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/derivative?activation=elu&wrt=params",
        content=npy(np.array([-1.0, 1.0])),
        headers=NPY | {"accept": "application/x-npy"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()["dydparams"]) == {"alpha"}


async def test_npy_missing_activation_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.post("/activate", content=npy(np.ones(2)), headers=NPY), 422, "activation", "required"
    )


async def test_npy_non_numeric_parameter_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/activate?activation=leaky_relu&negative_slope=abc", content=npy(np.ones(2)), headers=NPY
    )
    assert_problem(r, 422, "params.negative_slope", "number")


async def test_npy_unknown_parameter_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=relu&alpha=1", content=npy(np.ones(2)), headers=NPY)
    assert_problem(r, 422, "params.alpha", "unknown parameter")


async def test_npy_integer_dtype_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=relu", content=npy(np.arange(3)), headers=NPY)
    assert_problem(r, 422, "x", "float32 or float64", "int64")


async def test_npy_object_array_is_refused_without_unpickling(client: httpx.AsyncClient) -> None:
    out = io.BytesIO()
    np.save(out, np.array([1.0, "a"], dtype=object), allow_pickle=True)
    r = await client.post("/activate?activation=relu", content=out.getvalue(), headers=NPY)
    assert_problem(r, 422, "x", "float32 or float64", "object")


async def test_npy_truncated_header_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=relu", content=npy(np.ones(4))[:20], headers=NPY)
    assert_problem(r, 400, "x", "header")


async def test_npy_truncated_data_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=relu", content=npy(np.ones(4))[:-3], headers=NPY)
    assert_problem(r, 400, "x", "bytes", "declares")


async def test_npy_trailing_bytes_return_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=relu", content=npy(np.ones(4)) + b"xx", headers=NPY)
    assert_problem(r, 400, "x", "declares")


async def test_npy_header_declaring_too_many_elements_returns_413(client: httpx.AsyncClient) -> None:
    # A 100-byte body whose header claims 10^12 elements: refused before any allocation.
    header = npy(np.ones(1))[:-8].replace(b"(1,)", b"(1000000,1000000)")
    r = await client.post("/activate?activation=relu", content=header, headers=NPY)
    assert_problem(r, 413, "x", "limit")


async def test_npy_non_finite_value_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=relu", content=npy(np.array([[1.0, np.nan]])), headers=NPY)
    assert_problem(r, 422, "x[0][1]", "finite")


async def test_npz_zip_bomb_is_refused_from_its_header(client: httpx.AsyncClient) -> None:
    # 10^8 zeros compress to ~100 kB; the header says 10^8 elements > the limit.
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("x.npy", "w", force_zip64=True) as member,
    ):
        member.write(npy(np.zeros(1))[:-8].replace(b"(1,)", b"(100000000,)"))
        chunk = bytes(1 << 20)
        for _ in range(800):
            member.write(chunk)
    assert len(out.getvalue()) < 2_000_000
    r = await client.post("/derivative?activation=relu", content=out.getvalue(), headers=NPZ)
    assert_problem(r, 413, "x", "limit")


async def test_npz_member_size_disagreeing_with_header_returns_400(client: httpx.AsyncClient) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.npy", npy(np.ones(4)) + b"extra")
    r = await client.post("/derivative?activation=relu", content=out.getvalue(), headers=NPZ)
    assert_problem(r, 400, "x", "declares")


async def test_npz_unknown_member_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/derivative?activation=relu", content=npz(x=np.ones(2), w=np.ones(2)), headers=NPZ)
    assert_problem(r, 422, "body", "the member x.npy, and grad.npy or y.npy", "w.npy")


async def test_npz_not_a_zip_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/derivative?activation=relu", content=b"not a zip", headers=NPZ)
    assert_problem(r, 400, "body", "zip")


async def test_npz_grad_shape_mismatch_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/derivative?activation=tanh", content=npz(x=np.ones(3), grad=np.ones(2)), headers=NPZ
    )
    assert_problem(r, 422, "grad", "shape")


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
async def test_binary_agrees_with_json(client: httpx.AsyncClient, path: str) -> None:
    x = np.random.default_rng(5).standard_normal((3, 4)) * 10
    for entry in activations.entries():
        if entry.name == "glu":
            continue  # odd length along the last axis
        via_json = await client.post(path, json={"activation": entry.name, "x": x.tolist()})
        via_npy = await client.post(f"{path}?activation={entry.name}", content=npy(x), headers=NPY)
        assert via_npy.status_code == via_json.status_code == 200
        assert via_npy.json() == via_json.json(), entry.name


@pytest.mark.parametrize(
    "arr",
    [np.array(2.5), np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3).T, np.ones(3, np.float32)],
    ids=["scalar", "matrix", "transposed", "float32"],
)
def test_write_npy_round_trips(arr: np.ndarray) -> None:
    from service import binary

    back = load(binary.write_npy(arr))
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize(
    ("query", "field"),
    [("dtype=AAA", "query.dtype"), ("wrt=", "query.wrt"), ("negative_slope=", "query.negative_slope"),
     ("activation=rleu", "query.activation"), ("axis=1.5", "query.axis"),
     # Python's own spellings of numbers are not numbers here: digit groups, padding, other digits
     ("negative_slope=1_000", "query.negative_slope"), ("axis=1_0", "query.axis"),
     ("negative_slope=%200.5", "query.negative_slope"), ("negative_slope=0.5%C2%A0", "query.negative_slope"),
     ("axis=%EF%BC%91", "query.axis"), ("negative_slope=0x10", "query.negative_slope")],
)  # fmt: skip
async def test_invalid_query_parameters_are_refused_with_json_too(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    # Found by schemathesis: documented query parameters must be valid whenever they are sent.
    r = await client.post(f"/derivative?{query}", json={"activation": "relu", "x": [1.0]})
    assert_problem(r, 422, field)


async def test_valid_query_parameters_with_json_are_unused(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate?activation=tanh&dtype=float32", json={"activation": "relu", "x": [-1.0]})
    assert r.status_code == 200
    assert r.json()["activation"] == "relu"
    assert r.json()["dtype"] == "float64"


# -- the operations on NumPy files: /activate/npy and /derivative/npy ---------------------------


async def test_npy_operation_answers_npy_by_default(client: httpx.AsyncClient) -> None:
    x = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    r = await client.post(
        "/activate/npy?activation=leaky_relu&negative_slope=0.25", content=npy(x), headers=NPY
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    assert r.headers["x-activation-params"] == '{"negative_slope":0.25}'
    y = load(r.content)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [-0.5, 0.0, 3.0])


async def test_npy_operation_answers_json_when_asked(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/derivative/npy?activation=sigmoid",
        content=npy(np.array([0.0])),
        headers=NPY | {"accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["dydx"] == [0.25]


async def test_npz_vjp_on_the_npy_operation(client: httpx.AsyncClient) -> None:
    x = np.array([40.0, 0.0])
    r = await client.post(
        "/derivative/npy?activation=softmax", content=npz(x=x, grad=np.array([1.0, 0.0])), headers=NPZ
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-activation-result"] == "grad_x"
    json_r = await client.post("/derivative", json={"activation": "softmax", "x": [40, 0], "grad": [1, 0]})
    np.testing.assert_array_equal(load(r.content), json_r.json()["grad_x"])


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_npy_operation_refuses_other_bodies_with_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = await client.post("/activate/npy?activation=relu", content=b'{"x": [1]}', headers=headers)
    assert_problem(r, 415, "content-type")
    assert "application/x-npy" in r.text
    assert "without /npy" in r.text


async def test_npy_operation_refuses_a_parameter_object_in_the_query(client: httpx.AsyncClient) -> None:
    # What a generator would send for an object parameter: each parameter has its own name instead.
    r = await client.post(
        "/activate/npy?activation=leaky_relu&params[negative_slope]=0.1",
        content=npy(np.zeros(2)),
        headers=NPY,
    )
    assert_problem(r, 422, "params.params[negative_slope]")


async def test_query_numbers_are_decimal_as_json_writes_them(client: httpx.AsyncClient) -> None:
    x = np.array([-2.0], np.float64)
    for text, slope in [("0.25", 0.25), ("2.5e-1", 0.25), (".25", 0.25), ("%2B0.25", 0.25), ("25E-2", 0.25)]:
        r = await client.post(
            f"/activate/npy?activation=leaky_relu&negative_slope={text}", content=npy(x), headers=NPY
        )
        assert r.status_code == 200, (text, r.text)
        assert load(r.content)[0] == -2.0 * slope
    r = await client.post(
        "/activate/npy?activation=leaky_relu&negative_slope=1_000", content=npy(x), headers=NPY
    )
    assert_problem(r, 422, "params.negative_slope")
    assert "1_000" in r.json()["detail"]
