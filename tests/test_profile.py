"""POST /profile and POST /simulate: Gaussian moments against closed forms and an independent
quadrature, mean-field quantities against their closed forms, and simulated networks against
mean-field predictions."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import mpmath as mp
import numpy as np
import pytest
from scipy import integrate, special

from service import activations
from service.activations import profile
from service.app import create_app
from service.settings import Settings
from tests.conftest import asgi_client
from tests.test_api import assert_problem

REL = 1e-12


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(Settings.model_construct())) as c:
        yield c


async def prof(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/profile", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def close(got: float, want: float, rel: float = REL, absolute: float = 1e-15) -> bool:
    return abs(got - want) <= max(rel * abs(want), absolute)


def phi(t: float) -> float:
    return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def cdf(t: float) -> float:
    return float(special.ndtr(t))


# -- closed forms ---------------------------------------------------------------------------------


async def test_relu_closed_forms(api: httpx.AsyncClient) -> None:
    body = await prof(api, activation="relu")
    m = body["moments"]
    assert close(m["second_moment"], 0.5)
    assert close(m["mean"], 1 / math.sqrt(2 * math.pi))
    assert close(m["derivative_mean"], 0.5)
    assert close(m["dead"], 0.5)
    assert close(m["saturated"], 0.5)
    assert close(body["gain"]["value"], math.sqrt(2))
    assert close(body["gain"]["torch"], math.sqrt(2))
    field = (await prof(api, activation="relu", sigma_w=1.0, sigma_b=0.0))["mean_field"]
    assert close(field["critical_sigma_w"], math.sqrt(2))


@pytest.mark.parametrize(("mu", "sd"), [(0.7, 2.3), (-1.9, 0.4), (3.0, 1e-3)])
async def test_relu_under_a_shifted_gaussian(api: httpx.AsyncClient, mu: float, sd: float) -> None:
    m = (await prof(api, activation="relu", mean=mu, std=sd))["moments"]
    a = mu / sd
    assert close(m["mean"], mu * cdf(a) + sd * phi(a))
    assert close(m["second_moment"], (mu * mu + sd * sd) * cdf(a) + mu * sd * phi(a))
    with mp.workdps(40):  # Var = E[f²] - E[f]², without the cancellation in float64
        am, asd = mp.mpf(mu) / sd, mp.mpf(sd)
        mean = mu * mp.ncdf(am) + asd * mp.npdf(am)
        var = (mu * mu + asd * asd) * mp.ncdf(am) + mu * asd * mp.npdf(am) - mean**2
    assert close(m["variance"], float(var), rel=1e-11)
    assert close(m["dead"], cdf(-a), absolute=1e-300)
    assert close(m["derivative_second_moment"], cdf(a))


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5, 1.0])
async def test_leaky_relu_gain(api: httpx.AsyncClient, slope: float) -> None:
    body = await prof(api, activation="leaky_relu", params={"negative_slope": slope})
    assert close(body["gain"]["value"], math.sqrt(2 / (1 + slope * slope)))
    assert close(body["gain"]["torch"], body["gain"]["value"])
    assert body["moments"]["dead"] == 0.0


async def test_selu_keeps_the_standard_normal(api: httpx.AsyncClient) -> None:
    m = (await prof(api, activation="selu"))["moments"]
    assert abs(m["mean"]) < 1e-12
    assert close(m["second_moment"], 1.0)
    body = await prof(api, activation="selu")
    assert body["gain"]["torch"] == 0.75
    assert close(body["gain"]["value"], 1.0)


async def test_tanh_edge_of_chaos_and_saturation(api: httpx.AsyncClient) -> None:
    body = await prof(api, activation="tanh", sigma_w=1.0, sigma_b=0.0, depth=10)
    assert close(body["mean_field"]["critical_sigma_w"], 1.0)
    assert close(body["mean_field"]["chi1"], 1.0, rel=1e-9)
    # |tanh'| = 1 - tanh² < 0.01 where |z| > atanh(sqrt(0.99))
    edge = math.atanh(math.sqrt(0.99))
    assert close(body["moments"]["saturated"], 2 * cdf(-edge), rel=1e-10)
    assert body["gain"]["torch"] == pytest.approx(5 / 3)


@pytest.mark.parametrize(
    ("name", "mu", "sd", "key", "want"),
    [
        ("gelu", 0.0, 1.0, "mean", 1 / (2 * math.sqrt(math.pi))),  # E[z Φ(z)] = E[φ(z)]
        ("gelu", 0.0, 1.0, "derivative_mean", 0.5),
        ("identity", 0.4, 1.7, "second_moment", 0.4**2 + 1.7**2),
        ("step", 0.4, 1.7, "mean", cdf(0.4 / 1.7)),
        ("step", 0.4, 1.7, "dead", 1.0),
        ("exponential", 0.3, 1.2, "mean", math.exp(0.3 + 1.2**2 / 2)),
        ("exponential", 0.3, 1.2, "second_moment", math.exp(0.6 + 2 * 1.2**2)),
        ("sigmoid", 0.0, 3.0, "mean", 0.5),
        ("hardshrink", 0.0, 1.0, "dead", 2 * cdf(0.5) - 1),
        ("hard_tanh", 0.0, 2.0, "saturated", 2 * cdf(-0.5)),
    ],
)
async def test_other_closed_forms(
    api: httpx.AsyncClient, name: str, mu: float, sd: float, key: str, want: float
) -> None:
    got = (await prof(api, activation=name, mean=mu, std=sd))["moments"][key]
    assert close(got, want), (got, want)


# -- an independent quadrature for every elementwise function --------------------------------------

ELEMENTWISE = [e.name for e in activations.entries() if e.kind == "elementwise"]


def _quad(fn: Any, mu: float, sd: float, breaks: list[float]) -> float:
    """∫ fn(z) φ_{mu,sd}(z) dz by adaptive Gauss–Kronrod (QUADPACK), split at the kinks."""
    lo, hi = mu - 40 * sd, mu + 40 * sd
    bulk = [mu + k * sd for k in range(-8, 9)]
    points = sorted({lo, hi, *bulk, *(b for b in breaks if lo < b < hi)})
    total = 0.0
    for a, b in itertools.pairwise(points):
        with warnings.catch_warnings():  # QUADPACK's roundoff notice: the comparison below judges
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            value, _ = integrate.quad(
                lambda z: fn(z) * math.exp(-0.5 * ((z - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)),
                a,
                b,
                epsabs=1e-16,
                epsrel=1e-14,
                limit=500,
            )
        total += value
    return total


@pytest.mark.parametrize("name", ELEMENTWISE)
async def test_moments_against_an_independent_quadrature(api: httpx.AsyncClient, name: str) -> None:
    entry = activations.get(name)
    params = entry.bind({})
    mu, sd = 0.37, 1.9  # not a grid the service was tuned to
    body = await prof(api, activation=name, mean=mu, std=sd)
    kinks = [
        float(
            -params[k.at[1:]]
            if isinstance(k.at, str) and k.at.startswith("-")
            else params.get(str(k.at), k.at)
        )
        for k in entry.kinks
    ]

    def f(z: float) -> float:
        return float(entry.value(np.array([z]), params)[0])

    def df(z: float) -> float:
        return float(entry.jacobian(np.array([z]), params)[0])

    want = {
        "mean": _quad(f, mu, sd, kinks),
        "second_moment": _quad(lambda z: f(z) ** 2, mu, sd, kinks),
        "derivative_mean": _quad(df, mu, sd, kinks),
        "derivative_second_moment": _quad(lambda z: df(z) ** 2, mu, sd, kinks),
    }
    scale = math.sqrt(want["second_moment"])
    for key, value in want.items():
        got = body["moments"][key]
        floor = 1e-14 * (scale if key == "mean" else 1.0) + 1e-15
        assert close(got, value, rel=1e-11, absolute=floor), (key, got, value)
    assert 0.0 <= body["moments"]["dead"] <= body["moments"]["saturated"] <= 1.0


# -- mean field -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sigma_w", "sigma_b"), [(1.0, 0.3), (1.2, 0.05), (0.5, 2.0)])
async def test_relu_fixed_point(api: httpx.AsyncClient, sigma_w: float, sigma_b: float) -> None:
    field = (await prof(api, activation="relu", sigma_w=sigma_w, sigma_b=sigma_b, depth=7))["mean_field"]
    assert close(field["q_star"], sigma_b**2 / (1 - sigma_w**2 / 2))
    assert close(field["chi1"], sigma_w**2 / 2)
    assert close(field["gradient_ratio"], (sigma_w**2 / 2) ** 7)
    assert close(field["critical_sigma_w"], math.sqrt(2))


async def test_relu_at_he_initialisation_is_marginal(api: httpx.AsyncClient) -> None:
    field = (await prof(api, activation="relu", sigma_w=math.sqrt(2), depth=50))["mean_field"]
    assert close(field["chi1"], 1.0)
    assert close(field["gradient_ratio"], 1.0, rel=1e-11)


async def test_unbounded_growth_has_no_fixed_point(api: httpx.AsyncClient) -> None:
    field = (await prof(api, activation="relu", sigma_w=2.0, sigma_b=0.1, depth=5))["mean_field"]
    assert "q_star" not in field
    assert "chi1" not in field
    assert "gradient_ratio" not in field
    assert "without bound" in field["note"]


async def test_sigmoid_fixed_point_is_a_fixed_point(api: httpx.AsyncClient) -> None:
    field = (await prof(api, activation="sigmoid", sigma_w=1.0, sigma_b=0.2))["mean_field"]
    q = field["q_star"]
    entry = activations.get("sigmoid")
    m2 = _quad(lambda z: float(entry.value(np.array([z]), {})[0]) ** 2, 0.0, math.sqrt(q), [])
    assert close(q, m2 + 0.04, rel=1e-11)
    chi = _quad(lambda z: float(entry.jacobian(np.array([z]), {})[0]) ** 2, 0.0, math.sqrt(q), [])
    assert close(field["chi1"], chi, rel=1e-11)


# -- bad input --------------------------------------------------------------------------------------


async def test_profile_refusals(api: httpx.AsyncClient) -> None:
    assert_problem(await api.post("/profile", json={"activation": "softmax"}), 422, "activation", "vector")
    assert_problem(await api.post("/profile", json={"activation": "relu", "std": 0}), 422, "std")
    assert_problem(
        await api.post("/profile", json={"activation": "relu", "depth": 3}), 422, "depth", "sigma_w"
    )
    assert_problem(
        await api.post("/profile", json={"activation": "exponential", "std": 30}),
        422,
        "moments.mean",
        "float64",
    )
    assert_problem(await api.post("/profile", json={"activation": "relu", "sigma_w": -1}), 422, "sigma_w")
    assert_problem(await api.post("/profile", json={"activation": "nope"}), 422, "activation")


# -- simulated networks -------------------------------------------------------------------------


async def sim(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/simulate", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


SEEDS = 16


@pytest.mark.parametrize(
    ("name", "init"),
    [("tanh", "xavier"), ("relu", "he"), ("gelu", "he"), ("sigmoid", "lecun"), ("selu", "lecun")],
)
async def test_simulation_agrees_with_mean_field(api: httpx.AsyncClient, name: str, init: str) -> None:
    """Over several seeds, each layer's second moments and squared gradient RMS average to the
    mean-field prediction within four standard errors (and 2% for the finite width's bias).

    The seeds are needed: the batch shares the weights, and as the inputs' correlation grows with
    depth, one network's layer is off the prediction by 10-30% at width 128."""
    depth = 5
    runs = [
        await sim(api, activation=name, init=init, width=256, batch=32, depth=depth, seed=s)
        for s in range(SEEDS)
    ]
    predicted = runs[0]["mean_field"]
    for k in range(depth):
        layers = [run["layers"][k] for run in runs]
        checks = {
            "preactivation": (
                [la["preactivation_variance"] + la["preactivation_mean"] ** 2 for la in layers],
                predicted["preactivation_second_moment"][k],
            ),
            "activation": (
                [la["activation_variance"] + la["activation_mean"] ** 2 for la in layers],
                predicted["activation_second_moment"][k],
            ),
            "gradient": ([la["gradient_rms"] ** 2 for la in layers], predicted["gradient_rms"][k] ** 2),
        }
        for what, (samples, want) in checks.items():
            ratios = np.array(samples) / want
            standard_error = ratios.std(ddof=1) / math.sqrt(SEEDS)
            assert abs(ratios.mean() - 1) < 4 * standard_error + 0.02, (what, k, ratios)


async def test_sigmoid_gradients_vanish_and_relu_units_die(api: httpx.AsyncClient) -> None:
    body = await sim(api, activation="sigmoid", depth=30, init="xavier")
    rms = [layer["gradient_rms"] for layer in body["layers"]]
    assert rms[0] < 1e-12 * rms[-1]
    relu = await sim(api, activation="relu", depth=30)
    dead = [layer["dead"] for layer in relu["layers"]]
    assert all(0.4 < d < 0.6 for d in dead), dead
    assert relu["sigma_w"] == math.sqrt(2)


async def test_simulation_is_reproducible_by_seed(api: httpx.AsyncClient) -> None:
    a = await sim(api, activation="tanh", depth=4, width=32, batch=16, seed=11)
    b = await sim(api, activation="tanh", depth=4, width=32, batch=16, seed=11)
    c = await sim(api, activation="tanh", depth=4, width=32, batch=16, seed=12)
    assert a == b
    assert a["layers"] != c["layers"]


async def test_critical_initialisation(api: httpx.AsyncClient) -> None:
    body = await sim(api, activation="tanh", init="critical", sigma_b=0.0, depth=5, width=64, batch=32)
    assert close(body["sigma_w"], 1.0)
    assert_problem(
        await api.post("/simulate", json={"activation": "step", "init": "critical"}),
        422,
        "init",
        "edge of chaos",
    )


async def test_simulation_refusals(api: httpx.AsyncClient) -> None:
    assert_problem(
        await api.post("/simulate", json={"activation": "relu", "width": 1024, "batch": 1024, "depth": 2}),
        413,
        "width",
        "limit",
    )
    assert_problem(
        await api.post("/simulate", json={"activation": "relu", "init": "explicit"}), 422, "sigma_w"
    )
    assert_problem(
        await api.post("/simulate", json={"activation": "relu", "init": "he", "sigma_w": 1.0}), 422, "sigma_w"
    )
    assert_problem(await api.post("/simulate", json={"activation": "softmax"}), 422, "activation", "vector")
    assert_problem(await api.post("/simulate", json={"activation": "relu", "depth": 0}), 422, "depth")
    assert_problem(
        await api.post(
            "/simulate", json={"activation": "exponential", "init": "explicit", "sigma_w": 3.0, "depth": 60}
        ),
        422,
        "depth",
        "float64",
    )


def test_profile_core_refuses_vector_functions() -> None:
    with pytest.raises(activations.NotSupported):
        profile.Profile(activations.get("softmax"), {"temperature": 1.0})


@pytest.mark.parametrize(("name", "params"), [("softplus", {"beta": 1e300}), ("squareplus", {"b": 1e-300})])
@pytest.mark.parametrize("mu", [-1.3, 0.0, 0.45, 2.2])
async def test_a_kink_nobody_declared_is_found(
    api: httpx.AsyncClient, name: str, params: dict[str, float], mu: float
) -> None:
    # Both are relu to within 1e-300: the adaptive rule must find the corner at 0 by itself.
    m = (await prof(api, activation=name, params=params, mean=mu))["moments"]
    assert close(m["derivative_mean"], cdf(mu))
    assert close(m["mean"], mu * cdf(mu) + phi(mu))
    assert close(m["second_moment"], (mu * mu + 1) * cdf(mu) + mu * phi(mu))


async def test_answers_at_the_edges_of_the_attack(api: httpx.AsyncClient) -> None:
    # All the mass at one float64: f' there decides the dead and saturated shares.
    m = (await prof(api, activation="relu", mean=-1.0, std=1e-18))["moments"]
    assert m["dead"] == 1.0
    assert m["saturated"] == 1.0
    assert (await prof(api, activation="softsign", mean=1e6, std=1e-300))["moments"]["saturated"] == 1.0
    # E[f(z)^2] = 0 at N(0, 1) leaves out the gain, not the moments.
    body = await prof(api, activation="threshold", params={"threshold": 40.0, "value": 0.0}, mean=100.0)
    assert "value" not in body["gain"]
    assert "no finite weight scale" in body["gain"]["note"]
    assert close(body["moments"]["variance"], 1.0)
    # Subnormal integrands do not send the adaptive rule to its panel limit.
    small = await prof(api, activation="gelu", std=3.1622776601683794e-158)
    assert small["moments"]["derivative_mean"] == pytest.approx(0.5)
    # A predicted gradient beyond float64 is refused, never sent as null.
    body = {
        "activation": "softsign",
        "width": 8,
        "depth": 300,
        "batch": 4,
        "init": "explicit",
        "sigma_w": 1000.0,
    }
    assert_problem(await api.post("/simulate", json=body), 422, "depth", "exceeds float64")
    # star_relu's second moment grows layer by layer at He's scale: its variance overflows first.
    assert_problem(
        await api.post("/simulate", json={"activation": "star_relu"}), 422, "depth", "exceed float64"
    )
