"""POST /fit: least squares for an activation's parameters with the exact parameter Jacobian."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import asgi_client
from tests.test_api import assert_problem

X = np.linspace(-6.0, 6.0, 1000).tolist()


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(Settings.model_construct())) as c:
        yield c


async def samples(
    api: httpx.AsyncClient, name: str, params: dict[str, float], x: list[float] = X
) -> list[float]:
    response = await api.post("/activate", json={"activation": name, "x": x, "params": params})
    assert response.status_code == 200, response.text
    return list(response.json()["y"])


async def fitted(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/fit", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    ("name", "truth", "start"),
    [
        ("silu", {"beta": 1.7}, {}),
        ("softplus", {"beta": 2.5}, {"beta": 0.3}),
        ("elu", {"alpha": 0.37}, {}),
        ("leaky_relu", {"negative_slope": 0.2}, {}),
        ("hard_tanh", {"min_val": -0.5, "max_val": 2.0}, {}),
        ("squareplus", {"b": 0.7}, {"b": 9.0}),
        ("star_relu", {"scale": 1.3, "bias": -0.2}, {}),
        ("smelu", {"beta": 0.7}, {}),
        ("xielu", {"alpha_p": 1.2, "alpha_n": 0.6, "beta": 0.3, "eps": -1e-6}, {}),
        ("snake", {"a": 1.7}, {"a": 1.5}),
    ],
)
async def test_recovers_parameters_from_noiseless_samples(
    api: httpx.AsyncClient, name: str, truth: dict[str, float], start: dict[str, float]
) -> None:
    y = await samples(api, name, truth)
    body = await fitted(api, activation=name, x=X, y=y, params=start)
    for key, value in truth.items():
        assert abs(body["params"][key] - value) <= 1e-10 * abs(value), (key, body)
    assert body["converged"] is True
    assert body["r2"] >= 1 - 1e-15
    assert body["max_abs_error"] < 1e-12
    assert body["fitted"] == list(truth)


async def test_loss_and_r2_are_those_of_the_fitted_function(api: httpx.AsyncClient) -> None:
    body = await fitted(api, activation="prelu", x=X, target={"activation": "gelu"})
    assert body["params"]["weight"] != 0.25  # moved from its default
    y = np.array(await samples(api, "prelu", body["params"]))
    target = np.array(await samples(api, "gelu", {}))
    r = y - target
    assert body["loss"] == pytest.approx(float(np.mean(r * r)), rel=1e-9)
    assert body["max_abs_error"] == pytest.approx(float(np.max(np.abs(r))), rel=1e-9)
    sst = float(np.sum((target - target.mean()) ** 2))
    assert body["r2"] == pytest.approx(1 - float(np.sum(r * r)) / sst, rel=1e-9)
    # The least-squares optimum: moving the weight either way makes the loss larger.
    for step in (1e-3, -1e-3):
        moved = np.array(await samples(api, "prelu", {"weight": body["params"]["weight"] + step})) - target
        assert float(np.mean(moved * moved)) > body["loss"]


async def test_fits_only_the_named_parameters(api: httpx.AsyncClient) -> None:
    y = await samples(api, "hard_tanh", {"min_val": -1.0, "max_val": 3.0})
    body = await fitted(api, activation="hard_tanh", x=X, y=y, fit=["max_val"], params={"min_val": -1.0})
    assert body["fitted"] == ["max_val"]
    assert body["params"]["min_val"] == -1.0
    assert body["params"]["max_val"] == pytest.approx(3.0, rel=1e-12)


async def test_stays_within_the_parameter_bounds(api: httpx.AsyncClient) -> None:
    # Decreasing data pull softplus's beta towards 0, which it may not reach.
    body = await fitted(api, activation="softplus", x=X, y=[-v for v in X])
    assert body["params"]["beta"] > 0


async def test_reports_a_fit_cut_short(api: httpx.AsyncClient) -> None:
    y = await samples(api, "silu", {"beta": 1.7})
    body = await fitted(api, activation="silu", x=X, y=y, max_iterations=1)
    assert body["converged"] is False
    assert body["evaluations"] <= 1


async def test_fit_refusals(api: httpx.AsyncClient) -> None:
    assert_problem(
        await api.post("/fit", json={"activation": "relu", "x": [1], "y": [1]}),
        422,
        "activation",
        "no parameters",
    )
    assert_problem(
        await api.post("/fit", json={"activation": "softmax", "x": [1], "y": [1]}),
        422,
        "activation",
        "vector",
    )
    assert_problem(
        await api.post("/fit", json={"activation": "silu", "x": [1, 2], "y": [1]}), 422, "y", "1 values"
    )
    assert_problem(await api.post("/fit", json={"activation": "silu", "x": [1, 2]}), 422, "y", "send y")
    assert_problem(
        await api.post(
            "/fit", json={"activation": "silu", "x": [1], "y": [1], "target": {"activation": "gelu"}}
        ),
        422,
        "y",
        "not both",
    )
    assert_problem(
        await api.post("/fit", json={"activation": "silu", "x": [1], "target": {"activation": "softmax"}}),
        422,
        "target.activation",
        "vector",
    )
    assert_problem(
        await api.post("/fit", json={"activation": "silu", "x": [1], "y": [1], "fit": ["alpha"]}),
        422,
        "fit[0]",
        "alpha",
    )
    assert_problem(
        await api.post("/fit", json={"activation": "silu", "x": [1], "y": [1], "fit": []}),
        422,
        "fit",
        "no parameter",
    )
    assert_problem(
        await api.post(
            "/fit",
            content=b'{"activation": "silu", "x": [1], "y": [1e999]}',
            headers={"content-type": "application/json"},
        ),
        422,
        "y[0]",
    )
    assert_problem(await api.post("/fit", json={"activation": "silu", "x": [1], "y": None}), 422, "y")
    assert_problem(
        await api.post(
            "/fit",
            json={"activation": "silu", "x": [0.5] * 50_000, "y": [0.3] * 50_000, "max_iterations": 2000},
        ),
        413,
        "max_iterations",
        "limit",
    )
    assert_problem(
        await api.post("/fit", json={"activation": "silu", "x": [1], "y": [1], "params": {"beta": -1}}),
        422,
        "params.beta",
    )


async def test_data_far_from_one_are_fitted_in_their_own_units(api: httpx.AsyncClient) -> None:
    tiny = await fitted(api, activation="leaky_relu", x=[-1e-200, -2e-200], y=[-3e-201, -6e-201])
    assert tiny["params"]["negative_slope"] == pytest.approx(0.3, rel=1e-12)
    assert tiny["r2"] == pytest.approx(1.0)
    huge = await fitted(api, activation="leaky_relu", x=[-1e150, -2e150], y=[-3e149, -6e149])
    assert huge["params"]["negative_slope"] == pytest.approx(0.3, rel=1e-12)
    body = {"activation": "leaky_relu", "x": [-1, 0, 1, 2], "y": [1e160] * 4}
    assert_problem(await api.post("/fit", json=body), 422, "y", "exceeds float64")
