"""The Python client, against the app through ASGI and against a real uvicorn on loopback;
installed alone, it brings none of the server's packages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import ml_dtypes
import numpy as np
import pytest
from activation_client import ActivationClient, AsyncActivationClient, ClientError, ServerError

from service import activations
from service.activations import correct
from service.app import create_app
from service.settings import Settings


def asgi_client(**kwargs: object) -> AsyncActivationClient:
    return AsyncActivationClient(
        "http://service.test",
        transport=httpx.ASGITransport(app=create_app(Settings.model_construct())),
        **kwargs,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
async def test_async_client_activate_and_derivatives(binary: bool) -> None:
    x = np.random.default_rng(1).standard_normal((4, 5))
    gelu = activations.get("gelu")
    async with asgi_client(binary=binary) as client:
        np.testing.assert_array_equal(await client.activate("gelu", x), gelu.value(x, {}))
        np.testing.assert_array_equal(await client.derivative("gelu", x), gelu.jacobian(x, {}))
        np.testing.assert_array_equal(
            await client.derivative("gelu", x, order=2), gelu.second_derivative(x, {})
        )
        g = np.cos(x)
        softmax = activations.get("softmax")
        expected = softmax.vector_jacobian_product(x, g, softmax.bind())
        np.testing.assert_array_equal(await client.derivative("softmax", x, grad=g), expected)
        leaky = await client.activate("leaky_relu", [-2.0, 3.0], negative_slope=0.1)
        np.testing.assert_array_equal(leaky, [-0.2, 3.0])


async def test_async_client_keeps_float32() -> None:
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    async with asgi_client() as client:
        y = await client.activate("sigmoid", x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(
        y, activations.get("sigmoid").value(x.astype(np.float64), {}, dtype=np.float32)
    )


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
async def test_async_client_keeps_16_bit_formats(binary: bool) -> None:
    # float16 and bfloat16 arrays come back in their own type, correctly rounded.
    sigmoid = activations.get("sigmoid")
    for dtype in (np.float16, ml_dtypes.bfloat16):
        x = np.linspace(-3, 3, 7).astype(dtype)
        async with asgi_client(binary=binary) as client:
            y = await client.activate("sigmoid", x)
            dydx = await client.derivative("sigmoid", x)
        fmt = correct.FORMATS[np.dtype(dtype).name]
        assert y.dtype == x.dtype
        assert dydx.dtype == x.dtype
        wide = x.astype(np.float64)
        assert y.astype(np.float64).tolist() == correct.elementwise(sigmoid, "value", wide, {}, fmt).tolist()
        assert (
            dydx.astype(np.float64).tolist()
            == correct.elementwise(sigmoid, "derivative", wide, {}, fmt).tolist()
        )


async def test_async_client_asks_for_bfloat16_from_float32_input() -> None:
    x = np.array([0.1, 1.0], dtype=np.float32)
    async with asgi_client() as client:
        y = await client.activate("sigmoid", x, dtype="bfloat16")
    assert y.dtype.name == "bfloat16"


async def test_async_client_parameter_gradients() -> None:
    async with asgi_client() as client:
        grads = await client.derivative("elu", [-1.0, 2.0], wrt="params")
        totals = await client.derivative("elu", [-1.0, 2.0], wrt="params", grad=[1.0, 1.0])
    assert set(grads) == {"alpha"}
    assert totals["alpha"] == pytest.approx(float(np.expm1(-1.0)), rel=1e-15)


async def test_async_client_raises_the_servers_message() -> None:
    async with asgi_client() as client:
        with pytest.raises(ClientError) as info:
            await client.activate("leaky_relu", [1.0], negative_slope=5.0)
    assert info.value.status == 422
    assert info.value.errors[0]["field"] == "params.negative_slope"
    assert "at most 1" in info.value.detail


class RefusesBinary(httpx.AsyncBaseTransport):
    """A server without the binary path: 415 for .npy bodies, the real app otherwise."""

    def __init__(self) -> None:
        self.inner = httpx.ASGITransport(app=create_app(Settings.model_construct()))
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("content-type", "").startswith("application/x-np"):
            self.refused += 1
            return httpx.Response(415, json={"status": 415, "detail": "no", "errors": []})
        return await self.inner.handle_async_request(request)


async def test_async_client_falls_back_to_json() -> None:
    transport = RefusesBinary()
    async with AsyncActivationClient("http://service.test", transport=transport) as client:
        assert (await client.activate("relu", [-1.0, 2.0])).tolist() == [0.0, 2.0]
        assert (await client.activate("relu", [3.0])).tolist() == [3.0]
    assert transport.refused == 1


def test_sync_client_retries_503_then_succeeds() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(
                503, headers={"retry-after": "0"}, json={"status": 503, "detail": "busy", "errors": []}
            )
        return httpx.Response(
            200, json={"activation": "relu", "params": {}, "dtype": "float64", "shape": [1], "y": [1.0]}
        )

    with ActivationClient("http://x", binary=False, transport=httpx.MockTransport(handler)) as client:
        assert client.activate("relu", [1.0]).tolist() == [1.0]
    assert len(calls) == 3


def test_sync_client_gives_up_after_its_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, headers={"retry-after": "0"}, json={"status": 503, "detail": "draining", "errors": []}
        )

    with (
        ActivationClient("http://x", retries=2, transport=httpx.MockTransport(handler)) as client,
        pytest.raises(ServerError) as info,
    ):
        client.activate("relu", [1.0])
    assert info.value.status == 503
    assert info.value.detail == "draining"


def test_sync_client_against_a_real_server(server: str) -> None:
    x = np.random.default_rng(2).standard_normal(1000)
    with ActivationClient(server) as client:
        # The correctly rounded tanh (NumPy's np.tanh is within an ULP or so, not always the nearest).
        exact = correct.elementwise(activations.get("tanh"), "value", x, {}, correct.FORMATS["float64"])
        np.testing.assert_array_equal(client.activate("tanh", x), exact)
        assert "relu" in {entry["name"] for entry in client.catalog()}
        with pytest.raises(ClientError) as info:
            client.activate("rleu", x)
    assert info.value.errors[0]["field"] == "activation"


async def test_async_client_against_a_real_server(server: str) -> None:
    x = np.random.default_rng(3).standard_normal((10, 8))
    async with AsyncActivationClient(server) as client:
        y = await client.activate("softmax", x, axis=0)
    np.testing.assert_allclose(y.sum(axis=0), 1.0)


def test_sync_client_profiles_simulates_and_fits(server: str) -> None:
    x = np.linspace(-4.0, 4.0, 200)
    with ActivationClient(server) as client:
        relu = client.profile("relu", sigma_w=1.2, sigma_b=0.1, depth=10)
        assert relu["moments"]["second_moment"] == pytest.approx(0.5, rel=1e-12)
        assert relu["mean_field"]["chi1"] == pytest.approx(0.72, rel=1e-12)
        assert "mean_field" not in client.profile("tanh", mean=0.5, std=2.0)
        net = client.simulate("tanh", width=32, depth=3, batch=8, seed=5)
        assert [layer["layer"] for layer in net["layers"]] == [1, 2, 3]
        assert net == client.simulate("tanh", width=32, depth=3, batch=8, seed=5)
        y = client.activate("silu", x, beta=1.7)
        assert client.fit("silu", x, y)["params"]["beta"] == pytest.approx(1.7, rel=1e-10)
        fitted = client.fit("elu", x, target="selu", max_iterations=50)
        assert fitted["params"]["alpha"] == pytest.approx(1.0507009873554805 * 1.6732632423543772, rel=1e-6)
        with pytest.raises(ClientError) as info:
            client.fit("relu", x, y)
    assert info.value.errors[0]["field"] == "activation"


async def test_async_client_profiles_simulates_and_fits(server: str) -> None:
    async with AsyncActivationClient(server) as client:
        profile = await client.profile("leaky_relu", negative_slope=0.2)
        net = await client.simulate("relu", init="explicit", sigma_w=1.0, width=16, depth=2, batch=4)
        fitted = await client.fit("softplus", [0.0, 1.0, 2.0], [0.5, 1.0, 2.0], fit=["beta"])
    assert profile["gain"]["value"] == pytest.approx((2 / 1.04) ** 0.5, rel=1e-12)
    assert net["sigma_w"] == 1.0
    assert fitted["fitted"] == ["beta"]


CLIENT = Path(__file__).resolve().parent.parent / "client"
SERVER_ONLY = {
    "fastapi",
    "uvicorn",
    "scipy",
    "pydantic",
    "starlette",
    "orjson",
    "pysimdjson",
    "activation-service",
}


def test_the_client_installs_alone_and_its_readme_example_runs(server: str, tmp_path: Path) -> None:
    """``pip install ./client`` into a fresh venv: httpx and NumPy, nothing of the server; its README runs."""
    source = tmp_path / "client"  # pip builds in the source tree: a copy keeps the checkout clean
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp_path / "venv")], check=True, env=env)
    python = str(tmp_path / "venv" / "bin" / "python")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True, env=env
    )
    assert pip.returncode == 0, pip.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True, env=env
    ).stdout
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    assert {"activation-client", "httpx", "numpy"} <= installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY
    readme = (CLIENT / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert example, "client/README.md has a Python example"
    code = example[1].replace("http://127.0.0.1:8000", server) + (
        "import activation_client, importlib.util, pathlib\n"
        "typed = (pathlib.Path(activation_client.__file__).parent / 'py.typed').is_file()\n"
        "print(importlib.util.find_spec('service'), 'relu' in names, grads['weight'], typed)\n"
    )
    ran = subprocess.run(
        [python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "422 [{'field': 'params.negative_slope', 'reason': 'must be at most 1, got 5'}]",
        "None True [-2.  0.] True",
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
async def test_async_client_sends_array_parameters(binary: bool) -> None:
    # rational's coefficients: JSON arrays, or comma-separated numbers in the .npy query string
    entry = activations.get("rational")
    params = {"numerator": (1.5, -2.25, 0.375), "denominator": (0.5,)}
    x = np.array([[1.0, -2.0, 0.25]])
    async with asgi_client(binary=binary) as client:
        y = await client.activate("rational", x, **params)
        grads = await client.derivative("rational", x, wrt="params", **params)
    np.testing.assert_array_equal(y, entry.value(x, entry.bind(params)))
    assert grads["numerator"].shape == (1, 3, 3)
    np.testing.assert_array_equal(
        grads["denominator"], entry.parameter_jacobian(x, entry.bind(params))["denominator"]
    )


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
async def test_async_client_sends_per_channel_weights(binary: bool) -> None:
    # prelu with one weight per channel along axis 1 (PyTorch's nn.PReLU(num_parameters=3))
    entry = activations.get("prelu")
    weight = (0.5, 0.25, 2.0)
    x = np.array([[-1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    g = np.ones_like(x)
    async with asgi_client(binary=binary) as client:
        y = await client.activate("prelu", x, axis=1, weight=weight)
        sums = await client.derivative("prelu", x, grad=g, wrt="params", axis=1, weight=weight)
    np.testing.assert_array_equal(y, [[-0.5, -0.5, 3.0], [-2.0, 5.0, -12.0]])
    np.testing.assert_array_equal(y, entry.value(x, entry.bind({"weight": weight}), 1))
    assert list(sums["weight"]) == [-5.0, -2.0, -6.0]
