"""prelu with one weight per channel (PyTorch's nn.PReLU(num_parameters=C)): each element takes its
channel's weight along ``axis``, through every interface; results against exact rationals rounded
once by the tests' own rounding (y = x or w x, f' = 1 or w, dy/dw = 0 or x, the sums exactly)."""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.settings import Settings
from tests import rounding
from tests.conftest import asgi_client

FORMATS = ("float64", "float32", "float16", "bfloat16")
WEIGHTS = [0.1, -0.75, 1.0 / 3.0]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(Settings.model_construct())) as c:
        yield c


def in_format(a: Any, fmt: str) -> np.ndarray:
    flat = [rounding.round_to(Fraction(float(v)), fmt) for v in np.ravel(a)]
    return np.asarray(flat, np.float64).reshape(np.shape(a))


def read(values: Any, fmt: str) -> np.ndarray:
    """JSON numbers of a format: the number of the format each names (float32 and bfloat16 travel
    as their shortest decimals)."""
    return in_format(np.asarray(values, np.float64), fmt)


def exact(x: np.ndarray, g: np.ndarray, w: list[float], axis: int, fmt: str) -> dict[str, Any]:
    """Every quantity from exact rationals, rounded once to fmt."""
    ws = np.moveaxis(
        np.broadcast_to(np.reshape(w, [-1 if k == axis % x.ndim else 1 for k in range(x.ndim)]), x.shape),
        0,
        0,
    )

    def rnd(q: Fraction) -> float:
        return rounding.round_to(q, fmt)

    fx = [Fraction(float(v)) for v in x.ravel()]
    fw = [Fraction(float(v)) for v in ws.ravel()]
    fg = [Fraction(float(v)) for v in g.ravel()]
    shape = x.shape
    value = [rnd(a if a > 0 else b * a) for a, b in zip(fx, fw, strict=True)]
    slope = [Fraction(1) if a > 0 else b for a, b in zip(fx, fw, strict=True)]
    dydw = [Fraction(0) if a > 0 else a for a in fx]
    channel = np.moveaxis(
        np.broadcast_to(
            np.arange(len(w)).reshape([-1 if k == axis % x.ndim else 1 for k in range(x.ndim)]), shape
        ),
        0,
        0,
    ).ravel()
    sums = [
        sum((gi * d for gi, d, c in zip(fg, dydw, channel, strict=True) if c == k), Fraction(0))
        for k in range(len(w))
    ]
    return {
        "y": np.reshape(value, shape),
        "dydx": np.reshape([rnd(s) for s in slope], shape),
        "grad_x": np.reshape([rnd(gi * s) for gi, s in zip(fg, slope, strict=True)], shape),
        "dydw": np.reshape([rnd(d) for d in dydw], shape),
        "grad_w": [rnd(s) for s in sums],
    }


def same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return a.shape == b.shape and all(
        (u == v and math.copysign(1, u) == math.copysign(1, v)) for u, v in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("axis", [1, -2, 0])
async def test_every_quantity_takes_each_channels_weight(
    client: httpx.AsyncClient, fmt: str, axis: int
) -> None:
    rng = np.random.default_rng(abs(axis) + 7)
    shape = (2, 3, 5) if axis % 3 == 1 else (3, 2, 5)
    x = in_format(rng.normal(size=shape) * 4, fmt)
    x.flat[0] = 0.0  # the kink: f'(0) is the weight
    g = in_format(rng.normal(size=shape), fmt)
    w = [float(v) for v in in_format(WEIGHTS, fmt)]
    want = exact(x, g, w, axis, fmt)
    body = {"activation": "prelu", "x": x.tolist(), "params": {"weight": w}, "axis": axis, "dtype": fmt}
    r = await client.post("/activate", json=body)
    assert r.status_code == 200, r.text
    assert same(read(r.json()["y"], fmt), want["y"])
    r = await client.post("/derivative", json=body)
    assert r.status_code == 200, r.text
    assert same(read(r.json()["dydx"], fmt), want["dydx"])
    r = await client.post("/derivative", json=body | {"grad": g.tolist()})
    assert r.status_code == 200, r.text
    assert same(read(r.json()["grad_x"], fmt), want["grad_x"])
    r = await client.post("/derivative", json=body | {"wrt": "params"})
    assert r.status_code == 200, r.text
    assert np.shape(r.json()["dydparams"]["weight"]) == shape  # each element's own channel's
    assert same(read(r.json()["dydparams"]["weight"], fmt), want["dydw"])
    r = await client.post("/derivative", json=body | {"wrt": "params", "grad": g.tolist()})
    assert r.status_code == 200, r.text
    assert same(read(r.json()["grad_params"]["weight"], fmt), want["grad_w"])  # one sum a channel
    r = await client.post("/derivative", json=body | {"order": 2})
    assert r.status_code == 200, r.text
    assert same(r.json()["d2ydx2"], np.zeros(shape))


async def test_a_single_number_is_the_scalar_form_unchanged(client: httpx.AsyncClient) -> None:
    x = [[-2.0, 3.0], [-4.0, 0.5]]
    r = await client.post(
        "/derivative",
        json={
            "activation": "prelu",
            "x": x,
            "params": {"weight": 0.5},
            "wrt": "params",
            "grad": [[1, 1], [1, 1]],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["grad_params"] == {"weight": -6.0}


async def test_per_channel_weights_in_a_query_string_and_the_inference_protocol(
    client: httpx.AsyncClient,
) -> None:
    x = np.array([[-1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    buf = io.BytesIO()
    np.save(buf, x)
    r = await client.post(
        "/activate/npy?activation=prelu&weight=0.5,0.25,2&axis=1",
        content=buf.getvalue(),
        headers={"content-type": "application/octet-stream", "accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["y"] == [[-0.5, -0.5, 3.0], [-2.0, 5.0, -12.0]]
    body = {
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": x.ravel().tolist()}],
        "parameters": {"weight": "0.5,0.25,2", "axis": 1},
    }
    r = await client.post("/v2/models/prelu/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [-0.5, -0.5, 3.0, -2.0, 5.0, -12.0]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/activate", {"activation": "prelu", "x": [[1.0, 2.0]], "params": {"weight": [0.1, 0.2, 0.3]}, "axis": 1}, "params.weight"),
        ("/activate", {"activation": "prelu", "x": 1.0, "params": {"weight": [0.1]}}, "x"),
        ("/activate", {"activation": "prelu", "x": [1.0, 2.0], "params": {"weight": [0.1, 0.2]}, "axis": 3}, "axis"),
        ("/activate", {"activation": "prelu", "x": [1.0], "params": {"weight": [0.1, "a"]}}, "params.weight"),
        ("/activate", {"activation": "prelu", "x": [1.0] * 5000, "params": {"weight": [0.1] * 5000}}, "params.weight"),
        ("/check", {"activation": "prelu", "x": [1.0, 2.0], "y": [1.0, 2.0], "params": {"weight": [0.1, 0.2]}}, "params.weight"),
        ("/fit", {"activation": "prelu", "x": [1.0, -2.0], "y": [1.0, -1.0], "params": {"weight": [0.1, 0.2]}}, "params.weight"),
        ("/profile", {"activation": "prelu", "params": {"weight": [0.1, 0.2]}}, "params.weight"),
    ],
)  # fmt: skip
async def test_per_channel_refusals_name_the_field(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


async def test_the_catalog_says_the_weight_can_be_per_channel(client: httpx.AsyncClient) -> None:
    entries = {e["name"]: e for e in (await client.get("/activations")).json()["activations"]}
    (weight,) = entries["prelu"]["params"]
    assert weight["channels"] is True
    assert weight["length"] is None  # a number by default: the scalar form
    assert not any(p["channels"] for e in entries.values() for p in e["params"] if e["name"] != "prelu")


async def test_the_most_channels_pass_every_interface(client: httpx.AsyncClient) -> None:
    # 4,096 channels through JSON, a .npy body's query string and the inference protocol (an
    # array-parameter limit of 64 once stopped them all); 4,097 refused by name on each.
    rng = np.random.default_rng(4096)
    channels = 4096
    x = rng.standard_normal((2, channels))
    w = rng.integers(-16, 16, channels) / 16  # short decimals: the query string stays under 64 KiB
    want = np.where(
        x >= 0,
        x,
        [
            [rounding.round_to(Fraction(a) * Fraction(b), "float64") for a, b in zip(row, w, strict=True)]
            for row in x
        ],
    )
    for weights, status in ((w, 200), (np.append(w, 0.5), 422)):
        text = ",".join(repr(float(v)) for v in weights)
        r = await client.post(
            "/activate",
            json={"activation": "prelu", "x": x.tolist(), "params": {"weight": weights.tolist()}, "axis": 1},
        )
        buf = io.BytesIO()
        np.save(buf, x)
        npy = await client.post(
            f"/activate/npy?activation=prelu&axis=1&weight={text}",
            content=buf.getvalue(),
            headers={"content-type": "application/octet-stream", "accept": "application/json"},
        )
        body = {
            "inputs": [{"name": "x", "shape": [2, channels], "datatype": "FP64", "data": x.ravel().tolist()}],
            "parameters": {"weight": text, "axis": 1},
        }
        oip = await client.post("/v2/models/prelu/infer", json=body)
        for answer, refused in ((r, 422), (npy, 422), (oip, 400)):  # the protocol's errors are 400s
            assert answer.status_code == (status if status == 200 else refused), answer.text[:300]
            if status != 200:
                assert "weight" in answer.text
                assert "4,096" in answer.text
        if status == 200:
            assert r.json()["y"] == want.tolist()
            assert npy.json()["y"] == want.tolist()
            assert oip.json()["outputs"][0]["data"] == want.ravel().tolist()


@pytest.mark.parametrize(
    ("axis", "weight", "extra", "field"),
    [
        (1, [1.0, 1.0, 10.0], {}, "y[1][2]"),
        (0, [1.0, 10.0], {}, "y[1][2]"),
        (
            1,
            [1.0, 1.0, 1.0],
            {"wrt": "params", "grad": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]},
            "grad_params.weight[2]",
        ),
    ],
)
async def test_a_result_beyond_the_format_is_named_in_the_whole_of_x(
    client: httpx.AsyncClient, axis: int, weight: list[float], extra: dict[str, Any], field: str
) -> None:
    # 10 * -1e308 overflows float64: the element (or the channel's sum, -1e308 - 1e308) is named
    # where it is in x, not where it is in its channel's slice (y[1]).
    body = {
        "activation": "prelu",
        "x": [[1.0, 1.0, -1e308 if extra else 1.0], [1.0, 1.0, -1e308]],
        "params": {"weight": weight},
        "axis": axis,
    }
    r = await client.post("/derivative" if extra else "/activate", json=body | extra)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
