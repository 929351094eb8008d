"""Correctly rounded results: the rounding itself, the 16-bit formats through the API, /check and
/reference, each against the tests' own reference (tests/reference.py, mpmath) rounded by
tests/rounding.py, both written independently of the service."""

from __future__ import annotations

import functools
import io
import math
from fractions import Fraction
from typing import Any

import httpx
import mpmath as mp
import numpy as np
import pytest

from service.activations import correct
from tests import reference, rounding
from tests.test_api import assert_problem

FMTS = ("float64", "float32", "float16", "bfloat16")
SIXTEEN = ("float16", "bfloat16")


@functools.cache
def expected(quantity: str, x: float, fmt: str, name: str = "sigmoid") -> float:
    """The reference's quantity at x, rounded to fmt independently."""
    ref = reference.ELEMENTWISE[name]
    fn = {"value": ref.value, "derivative": ref.d1, "second_derivative": ref.d2}[quantity]
    # Near 0, the terms past the first are x^2 smaller: as many more digits as that takes to be seen.
    digits = 40 + (int(2 * abs(math.log10(abs(x)))) if x else 0)
    with mp.workdps(digits):
        return rounding.round_mpf(fn(mp.mpf(x)), fmt)


def npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


# -- rounding a float64 to a format ---------------------------------------------------------


@pytest.mark.parametrize("fmt", FMTS)
def test_inputs_are_rounded_once_to_the_format(fmt: str) -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.standard_normal(4000) * 10.0 ** rng.integers(-45, 40, 4000),
            rng.standard_normal(400) * 1e-310,
            # midpoints and their neighbours in each 16-bit format, and the edges of the ranges
            [65504.0, 65519.99, 65520.0, 2.0**-25, 1.5 * 2.0**-25, 1 + 2.0**-11, 1 + 3 * 2.0**-11],
            [1 + 2.0**-8, 1 + 3 * 2.0**-8, np.nextafter(1 + 2.0**-8, 2), 3.3961e38, -0.0],
        ]
    )
    got = correct.round_to(x, correct.FORMATS[fmt])
    want = np.array([rounding.round_to(Fraction(float(v)), fmt) for v in x])
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[x == 0]).tolist() == np.signbit(x[x == 0]).tolist()


def test_bfloat16_input_rounds_once_not_through_float32() -> None:
    # 1 + 2^-8 + 2^-30: float32 rounds it to 1 + 2^-8, a bfloat16 midpoint, which then goes to 1
    # (even); rounded once, it is above the midpoint and goes up.
    x = np.array([1 + 2.0**-8 + 2.0**-30])
    assert correct.round_to(x, correct.FORMATS["bfloat16"])[0] == 1 + 2.0**-7


# -- the 16-bit formats through /activate and /derivative -------------------------------------


@pytest.mark.parametrize("fmt", SIXTEEN)
@pytest.mark.parametrize("quantity", ["value", "derivative", "second_derivative"])
async def test_every_16_bit_input_is_correctly_rounded(
    client: httpx.AsyncClient, fmt: str, quantity: str
) -> None:
    # Every 11th: all signs and binades (the whole table is computed either way); other offsets in
    # the other quantities, so that together they reach more inputs.
    offset = ["value", "derivative", "second_derivative"].index(quantity)
    x = correct.finite_inputs(correct.FORMATS[fmt])[offset::11]
    if quantity == "value":
        r = await client.post("/activate", json={"activation": "sigmoid", "x": x.tolist(), "dtype": fmt})
        got = r.json()["y"]
    else:
        order = 2 if quantity == "second_derivative" else 1
        body = {"activation": "sigmoid", "x": x.tolist(), "dtype": fmt, "order": order}
        r = await client.post("/derivative", json=body)
        got = r.json()["d2ydx2" if order == 2 else "dydx"]
    assert r.status_code == 200, r.text
    assert r.json()["dtype"] == fmt
    want = [expected(quantity, float(v), fmt) for v in x]
    # JSON holds the shortest decimal that round-trips through float32, which names one number of
    # the format: the one read back.
    read = [rounding.round_to(Fraction(g), fmt) for g in got]
    wrong = [(float(v), g, w) for v, g, w in zip(x, read, want, strict=True) if g != w]
    assert not wrong, wrong[:5]


async def test_a_single_number_in_a_16_bit_format(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate", json={"activation": "sigmoid", "x": 0.5, "dtype": "bfloat16"})
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == []
    assert rounding.round_to(Fraction(r.json()["y"]), "bfloat16") == expected("value", 0.5, "bfloat16")
    r = await client.post("/check", json={"activation": "sigmoid", "x": 0.5, "y": 0.5, "dtype": "float16"})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 1
    assert r.json()["correctly_rounded"] == 0


async def test_float16_npy_in_float16_npy_out(client: httpx.AsyncClient) -> None:
    x = np.linspace(-6, 6, 25).astype(np.float16)
    r = await client.post(
        "/activate/npy?activation=sigmoid", content=npy(x), headers={"content-type": "application/x-npy"}
    )
    assert r.status_code == 200, r.text
    y = np.load(io.BytesIO(r.content))
    assert y.dtype == np.float16
    assert y.tolist() == [expected("value", float(v), "float16") for v in x]


async def test_bfloat16_from_a_float32_npy(client: httpx.AsyncClient) -> None:
    x = np.array([0.1, -3.0, 7.5], dtype=np.float32)
    r = await client.post(
        "/derivative/npy?activation=sigmoid&dtype=bfloat16",
        content=npy(x),
        headers={"content-type": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    y = np.load(io.BytesIO(r.content))
    assert y.dtype == np.float32  # bfloat16 numbers, held exactly in float32
    rounded = correct.round_to(x.astype(np.float64), correct.FORMATS["bfloat16"])
    assert y.tolist() == [expected("derivative", float(v), "bfloat16") for v in rounded]


async def test_16_bit_vector_jacobian_product_is_one_rounding_of_the_exact_product(
    client: httpx.AsyncClient,
) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal(300).astype(np.float16).astype(np.float64)
    g = (rng.standard_normal(300) * 100).astype(np.float16).astype(np.float64)
    body = {"activation": "sigmoid", "x": x.tolist(), "grad": g.tolist(), "dtype": "float16"}
    r = await client.post("/derivative", json=body)
    assert r.status_code == 200, r.text
    with mp.workdps(60):
        want = [
            rounding.round_mpf(mp.mpf(gi) * reference.dsig(mp.mpf(xi)), "float16")
            for xi, gi in zip(x, g, strict=True)
        ]
    assert [rounding.round_to(Fraction(v), "float16") for v in r.json()["grad_x"]] == want


@pytest.mark.parametrize(
    ("path", "body", "field", "reason"),
    [
        (
            "/activate",
            {"activation": "sigmoid", "x": [1, 70000], "dtype": "float16"},
            "x[1]",
            "float16 range",
        ),
        (
            "/derivative",
            {"activation": "softmax", "x": [1, 2], "order": 2, "dtype": "bfloat16"},
            "order",
            "vector function",
        ),
        (
            "/derivative",
            {"activation": "sigmoid", "x": [1], "grad": [1], "order": 2, "dtype": "float16"},
            "grad",
            "order 2",
        ),
        (
            "/derivative",
            {"activation": "sigmoid", "x": [1, 2], "grad": [1], "dtype": "bfloat16"},
            "grad",
            "x's shape",
        ),
    ],
)
async def test_16_bit_refusals(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str, reason: str
) -> None:
    assert_problem(await client.post(path, json=body), 422, field, reason)


# -- /check ---------------------------------------------------------------------------------


async def test_check_counts_what_is_correctly_rounded_and_bins_the_errors(client: httpx.AsyncClient) -> None:
    x = np.linspace(-4, 4, 41)
    right = np.array([expected("value", float(v), "float64") for v in x])
    y = right.copy()
    y[3] = np.nextafter(y[3], 2)  # 1 ULP
    y[7] = y[7] + 4 * correct.ulp(y[7:8], correct.FORMATS["float64"])[0]  # 4 ULP
    y[9] = y[9] * (1 + 1e-12)  # thousands of ULP
    r = await client.post("/check", json={"activation": "sigmoid", "x": x.tolist(), "y": y.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 41
    assert body["correctly_rounded"] == 38
    assert body["histogram"]["0"] == 38
    assert body["histogram"]["1"] == 1
    assert body["histogram"]["4"] == 1
    assert body["histogram"]["larger"] == 1
    assert sum(body["histogram"].values()) == 41
    assert [p["index"] for p in body["worst"]] == [[9], [7], [3]]
    assert body["worst"][0]["correct"] == right[9]
    assert body["max_ulp"] == body["worst"][0]["ulp"] > 256


async def test_check_float16_from_an_npz_counts_non_finite_results(client: httpx.AsyncClient) -> None:
    x = np.linspace(-8, 8, 33).astype(np.float16)
    right = np.array([expected("value", float(v), "float16") for v in x], dtype=np.float16)
    y = right.copy()
    y[0] = np.inf
    y[1] = np.nan
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    r = await client.post(
        "/check?activation=sigmoid", content=buf.getvalue(), headers={"content-type": "application/x-npz"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dtype"] == "float16"
    assert body["histogram"]["non_finite"] == 2
    assert body["correctly_rounded"] == 31
    assert body["worst"] == []


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"activation": "sigmoid", "dtype": "float16", "x": [0.1], "y": [0.5]}, "x[0]", 422),
        ({"activation": "sigmoid", "dtype": "float16", "x": [0.5], "y": [0.1]}, "y[0]", 422),
        ({"activation": "sigmoid", "x": [0.5, 1], "y": [0.5]}, "y", 422),
        ({"activation": "softmax", "x": [0.5], "y": [0.5]}, "dtype", 422),
        ({"activation": "sigmoid", "x": [0.0] * 100_001, "y": [0.5] * 100_001}, "x", 413),
    ],
)
async def test_check_refusals(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, status: int
) -> None:
    assert_problem(await client.post("/check", json=body), status, field)


# -- /reference -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", SIXTEEN)
async def test_reference_table_holds_every_finite_input(client: httpx.AsyncClient, fmt: str) -> None:
    r = await client.get(f"/reference/logistic?dtype={fmt}&quantity=derivative")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npz"
    table = np.load(io.BytesIO(r.content))
    x, y = table["x"].astype(np.float64), table["y"].astype(np.float64)
    assert x.size == (63488 if fmt == "float16" else 65280)
    assert np.all(np.isfinite(x))
    rng = np.random.default_rng(5)
    for i in rng.choice(x.size, 300, replace=False):
        assert y[i] == expected("derivative", float(x[i]), fmt), x[i]


async def test_reference_refusals(client: httpx.AsyncClient) -> None:
    assert (await client.get("/reference/nope?dtype=float16")).status_code == 404
    assert_problem(await client.get("/reference/softmax?dtype=float16"), 422, "dtype")
    assert_problem(await client.get("/reference/sigmoid?dtype=float32"), 422, "dtype")
    assert_problem(await client.get("/reference/sigmoid?dtype=float16&alpha=1"), 422, "params.alpha")


def test_an_error_against_a_zero_is_counted_in_the_smallest_subnormal() -> None:
    for name, fmt in correct.FORMATS.items():
        assert correct.ulp(np.array([0.0, -0.0]), fmt).tolist() == [fmt.smallest] * 2, name
    error = correct.ulp_error(np.array([1e-300]), np.array([0.0]), correct.FORMATS["float64"])
    assert error[0] == pytest.approx(1e-300 / 5e-324)


async def test_check_against_a_correct_zero_reports_a_finite_error(client: httpx.AsyncClient) -> None:
    # gelu(0) = 0: any other y is more ULPs (of the smallest subnormal) off than float64 can count.
    body = {"activation": "gelu", "x": [0.0, 1.0], "y": [-0.0004342598, 7.1e-07]}
    r = await client.post("/check", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["max_ulp"] == np.finfo(np.float64).max
    assert r.json()["mean_ulp"] > 1e300
    assert r.json()["histogram"]["larger"] == 2
    body = {"activation": "relu_squared", "x": [-0.75, -0.7518], "y": [-0.0004342598, 7.1e-07]}
    r = await client.post("/check", json=body)  # two such errors: their sum, too
    assert r.status_code == 200, r.text
    assert r.json()["mean_ulp"] == np.finfo(np.float64).max
