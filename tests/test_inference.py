"""The Open Inference Protocol (KServe v2 / Triton) REST binding, through the stock clients and hostile bodies.

Every value is compared, bit for bit, with what the service's own JSON API (``POST /activate``,
``POST /derivative``) answers for the same input, in float32 and float64.  The clients are the real
ones: ``tritonclient.http.InferenceServerClient`` at its defaults and KServe's ``InferenceRESTClient``
(in a venv of its own, see :mod:`tests.inference_clients`).  The hostile requests are built by hand
with httpx: each must be a 4xx with ``{"error": ...}`` naming what is wrong, never a 500.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import service
from tests import servers
from tests.inference_clients import assert_same, datatype, reference, run_kserve

KEY = "oip-test-key"
MAX_BODY = 1 << 20  # ACTIVATION_MAX_BODY_BYTES of the servers here: a bomb needs little to pass it
RNG = np.random.default_rng(20260)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with servers.running(env={"ACTIVATION_MAX_BODY_BYTES": str(MAX_BODY)}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    with servers.running(env={"ACTIVATION_API_KEYS": KEY}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def lean() -> Iterator[tuple[str, int]]:
    """A server that serves only the memory tests, so its peak memory is theirs."""
    with servers.running(env={"ACTIVATION_MAX_BODY_BYTES": str(MAX_BODY)}) as (url, pid):
        yield url, pid


@pytest.fixture
def client(base: str) -> Iterator[triton.InferenceServerClient]:
    # A client per test: geventhttpclient keeps its connection, which the server closes when idle.
    c = triton.InferenceServerClient(base.removeprefix("http://"))
    try:
        yield c
    finally:
        c.close()


def sample(shape: tuple[int, ...], dtype: type, scale: float = 3.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def tensor(name: str, arr: np.ndarray, binary: bool = True) -> triton.InferInput:
    t = triton.InferInput(name, list(arr.shape), datatype(arr))
    t.set_data_from_numpy(arr, binary_data=binary)
    return t


def wanted(names: list[str], binary: bool = True) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(n, binary_data=binary) for n in names]


# -- metadata and health ----------------------------------------------------------------------------


def catalog_names(base: str) -> list[str]:
    entries = httpx.get(f"{base}/activations", timeout=10).json()["activations"]
    return [n for e in entries for n in (e["name"], *e["aliases"])]


def test_server_live_ready_and_metadata(client: triton.InferenceServerClient, base: str) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": "activation-service",
        "version": service.__version__,
        "extensions": ["binary_tensor_data"],
    }
    assert httpx.get(f"{base}/v2/health/live", timeout=10).json() == {"live": True}
    assert httpx.get(f"{base}/v2/health/ready", timeout=10).json() == {"ready": True}


def test_every_name_and_alias_is_a_ready_model(client: triton.InferenceServerClient, base: str) -> None:
    names = catalog_names(base)
    assert {"gelu", "GELU", "leaky_relu", "LeakyReLU", "softmax"} <= set(names)
    assert [n for n in names if not client.is_model_ready(n)] == []


@pytest.mark.parametrize("name", ["gelu", "LeakyReLU", "softmax"])
def test_model_metadata(client: triton.InferenceServerClient, name: str) -> None:
    meta = client.get_model_metadata(name)
    assert meta["name"] == name
    assert isinstance(meta["versions"], list)
    assert isinstance(meta["platform"], str)
    assert [i["name"] for i in meta["inputs"]] == ["x", "grad"]
    outputs = [o["name"] for o in meta["outputs"]]
    assert {"y", "grad_x"} <= set(outputs)
    if name != "softmax":
        assert set(outputs) == {"y", "dydx", "d2ydx2", "grad_x"}
    for t in meta["inputs"] + meta["outputs"]:  # the spec's $metadata_tensor
        assert isinstance(t["datatype"], str)
        assert isinstance(t["shape"], list)


def test_unknown_model(client: triton.InferenceServerClient, base: str) -> None:
    assert not client.is_model_ready("no_such_fn")
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no_such_fn")
    assert e.value.status() == "404"
    assert "no_such_fn" in e.value.message()
    x = sample((3,), np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_fn", [tensor("x", x)])
    assert e.value.status() == "404"
    assert "no_such_fn" in e.value.message()
    for path in ("/v2/models/no_such_fn", "/v2/models/no_such_fn/ready"):
        r = httpx.get(f"{base}{path}", timeout=10)
        assert r.status_code == 404, path
        assert "no_such_fn" in r.json()["error"], path


def test_versioned_paths(client: triton.InferenceServerClient, base: str) -> None:
    # The metadata lists the versions that may be asked for explicitly (/versions/<v>/...).
    versions = client.get_model_metadata("gelu")["versions"]
    assert versions
    x = sample((3,), np.float32)
    for v in versions:
        assert client.is_model_ready("gelu", model_version=v)
        assert client.get_model_metadata("gelu", model_version=v)["name"] == "gelu"
        result = client.infer("gelu", [tensor("x", x)], model_version=v)
        assert_same(result.as_numpy("y"), reference(base, "gelu", x, ("y",))["y"])
    assert not client.is_model_ready("gelu", model_version="999")


# -- inference with tritonclient ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_in_binary_out_by_default(
    client: triton.InferenceServerClient, base: str, dtype: type
) -> None:
    x = sample((3, 4), dtype)
    result = client.infer("gelu", [tensor("x", x)])
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["y"]
    (y,) = response["outputs"]
    assert y["datatype"] == datatype(x)
    assert y["shape"] == [3, 4]
    assert y["parameters"]["binary_data_size"] == x.nbytes
    assert "data" not in y
    assert_same(result.as_numpy("y"), reference(base, "gelu", x, ("y",))["y"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_json_in_json_out(client: triton.InferenceServerClient, base: str, dtype: type) -> None:
    x = sample((2, 5), dtype)
    result = client.infer("tanh", [tensor("x", x, binary=False)], outputs=wanted(["y", "dydx"], binary=False))
    for output in result.get_response()["outputs"]:
        assert "binary_data_size" not in output.get("parameters", {})
        assert len(output["data"]) == x.size
        assert output["datatype"] == datatype(x)
    want = reference(base, "tanh", x, ("y", "dydx"))
    assert_same(result.as_numpy("y"), want["y"], "y")
    assert_same(result.as_numpy("dydx"), want["dydx"], "dydx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("model", "activation", "params", "axis"),
    [
        ("leaky_relu", "leaky_relu", {"negative_slope": 0.1}, None),
        ("LeakyReLU", "leaky_relu", {"negative_slope": 0.3}, None),
        ("Hardtanh", "hard_tanh", {"min_val": -0.5, "max_val": 2.0}, None),
        ("softmax", "softmax", {}, 0),
        ("softmax", "softmax", {"temperature": 2.5}, 0),
        ("log_softmax", "log_softmax", {}, None),
    ],
)
def test_parameters(
    client: triton.InferenceServerClient,
    base: str,
    dtype: type,
    model: str,
    activation: str,
    params: dict[str, float],
    axis: int | None,
) -> None:
    x = sample((3, 4), dtype)
    parameters: dict[str, Any] = dict(params) | ({} if axis is None else {"axis": axis})
    result = client.infer(model, [tensor("x", x)], parameters=parameters)
    want = reference(base, activation, x, ("y",), params=params, axis=axis)["y"]
    assert_same(result.as_numpy("y"), want)
    if params or axis is not None:  # the parameters change the answer, so they were not ignored
        assert result.as_numpy("y").tobytes() != reference(base, activation, x, ("y",))["y"].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_gives_grad_x(client: triton.InferenceServerClient, base: str, dtype: type) -> None:
    x, g = sample((4, 3), dtype), sample((4, 3), dtype, 1.0)
    result = client.infer("gelu", [tensor("x", x), tensor("grad", g)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["y", "grad_x"]
    want = reference(base, "gelu", x, ("y", "grad_x"), grad=g)
    assert_same(result.as_numpy("y"), want["y"], "y")
    assert_same(result.as_numpy("grad_x"), want["grad_x"], "grad_x")

    # a vector function: the vector-Jacobian product along the axis
    result = client.infer(
        "softmax", [tensor("x", x, binary=False), tensor("grad", g)], parameters={"axis": 0}
    )
    want = reference(base, "softmax", x, ("y", "grad_x"), grad=g, axis=0)
    assert_same(result.as_numpy("y"), want["y"], "softmax y")
    assert_same(result.as_numpy("grad_x"), want["grad_x"], "softmax grad_x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_several_outputs_mixing_binary_and_json(
    client: triton.InferenceServerClient, base: str, dtype: type
) -> None:
    x, g = sample((2, 3, 2), dtype), sample((2, 3, 2), dtype, 1.0)
    outputs = [
        triton.InferRequestedOutput("d2ydx2", binary_data=True),
        triton.InferRequestedOutput("y", binary_data=False),
        triton.InferRequestedOutput("grad_x", binary_data=True),
        triton.InferRequestedOutput("dydx", binary_data=True),
    ]
    result = client.infer("silu", [tensor("x", x), tensor("grad", g, binary=False)], outputs=outputs)
    response = result.get_response()
    assert sorted(o["name"] for o in response["outputs"]) == ["d2ydx2", "dydx", "grad_x", "y"]
    binary = {o["name"] for o in response["outputs"] if "binary_data_size" in o.get("parameters", {})}
    assert binary == {"d2ydx2", "grad_x", "dydx"}
    want = reference(base, "silu", x, ("y", "dydx", "d2ydx2", "grad_x"), grad=g)
    for name, arr in want.items():
        assert_same(result.as_numpy(name), arr, name)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
def test_compressed_requests(
    client: triton.InferenceServerClient, base: str, algorithm: str, binary: bool
) -> None:
    x, g = sample((50, 20), np.float32), sample((50, 20), np.float32, 1.0)
    result = client.infer(
        "elu",
        [tensor("x", x, binary), tensor("grad", g, binary)],
        parameters={"alpha": 0.5},
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    want = reference(base, "elu", x, ("y", "grad_x"), params={"alpha": 0.5}, grad=g)
    assert_same(result.as_numpy("y"), want["y"], "y")
    assert_same(result.as_numpy("grad_x"), want["grad_x"], "grad_x")


def test_request_id_is_echoed(client: triton.InferenceServerClient) -> None:
    x = sample((2,), np.float64)
    assert client.infer("relu", [tensor("x", x)], request_id="req-42").get_response()["id"] == "req-42"
    json_result = client.infer(
        "relu", [tensor("x", x, False)], outputs=wanted(["y"], False), request_id="a b"
    )
    assert json_result.get_response()["id"] == "a b"


@pytest.mark.parametrize(
    ("model", "inputs", "parameters", "outputs", "field"),
    [
        ("leaky_relu", ["x"], {"negative_slope": 5.0}, None, "negative_slope"),
        ("softmax", ["x"], {"axis": 7}, None, "axis"),
        ("gelu", ["x", "bad_grad"], None, None, "grad"),
        ("gelu", ["x"], None, ["grad_x"], "grad"),
        ("gelu", ["x"], None, ["z"], "z"),
        ("softmax", ["x"], None, ["d2ydx2"], "d2ydx2"),
    ],
)
def test_errors_surface_as_exceptions_naming_the_field(
    client: triton.InferenceServerClient,
    model: str,
    inputs: list[str],
    parameters: dict[str, Any] | None,
    outputs: list[str] | None,
    field: str,
) -> None:
    x = sample((3, 4), np.float32)
    arrays = {"x": tensor("x", x), "bad_grad": tensor("grad", sample((4, 3), np.float32))}
    with pytest.raises(InferenceServerException) as e:
        client.infer(
            model,
            [arrays[n] for n in inputs],
            parameters=parameters,
            outputs=None if outputs is None else wanted(outputs),
        )
    assert e.value.status() == "400", e.value
    assert field in e.value.message(), e.value


def test_api_keys(keyed: str) -> None:
    with triton.InferenceServerClient(keyed.removeprefix("http://")) as open_client:
        assert open_client.is_server_live()  # health stays open
        assert open_client.is_server_ready()
        with pytest.raises(InferenceServerException) as e:
            open_client.infer("gelu", [tensor("x", sample((3,), np.float32))])
        assert e.value.status() == "401"
    r = httpx.post(f"{keyed}/v2/models/gelu/infer", json={"inputs": []}, timeout=10)
    assert r.status_code == 401
    assert isinstance(r.json()["error"], str)  # the protocol's error object, which tritonclient reads

    x = sample((3, 4), np.float64)
    auth = {"Authorization": f"Bearer {KEY}"}
    with triton.InferenceServerClient(keyed.removeprefix("http://")) as c:
        assert c.get_server_metadata(headers=dict(auth))["name"] == "activation-service"
        assert c.get_model_metadata("gelu", headers=dict(auth))["name"] == "gelu"
        result = c.infer("gelu", [tensor("x", x)], headers=dict(auth))
        with pytest.raises(InferenceServerException) as e:
            c.infer("gelu", [tensor("x", x)], headers={"Authorization": "Bearer wrong"})
        assert e.value.status() == "401"
    assert_same(result.as_numpy("y"), reference(keyed, "gelu", x, ("y",), headers=auth)["y"])


def test_metrics_count_inference(client: triton.InferenceServerClient, base: str) -> None:
    client.infer("GELU", [tensor("x", sample((3,), np.float32))])
    lines = httpx.get(f"{base}/metrics", timeout=10).text.splitlines()
    served = [
        line
        for line in lines
        if line.startswith("activation_requests_total{") and 'status="200"' in line and "/infer" in line
    ]
    assert served, [line for line in lines if line.startswith("activation_requests_total{")]
    assert all("GELU" not in line.split("route=")[1].split(",")[0] for line in served)  # bounded labels


# -- KServe's InferenceRESTClient ------------------------------------------------------------------


def test_kserve_client(base: str) -> None:
    x32, g32 = sample((3, 4), np.float32), sample((3, 4), np.float32, 1.0)
    x64 = sample((2, 3), np.float64)
    calls: list[dict[str, Any]] = [
        {"op": "live"},
        {"op": "ready"},
        {"op": "model_ready", "model": "gelu"},
        {"op": "model_ready", "model": "no_such_fn"},
        # 4: binary inputs, default outputs
        {"op": "infer", "model": "gelu", "inputs": [{"name": "x", "array": x32}], "id": "k-1"},
        # 5: JSON (flat) inputs and outputs, float64, parameters
        {
            "op": "infer",
            "model": "LeakyReLU",
            "inputs": [{"name": "x", "array": x64, "binary": False}],
            "parameters": {"negative_slope": 0.2},
            "outputs": [{"name": "y", "binary": False}, {"name": "dydx", "binary": False}],
        },
        # 6: grad, binary outputs asked one by one
        {
            "op": "infer",
            "model": "softmax",
            "inputs": [{"name": "x", "array": x32}, {"name": "grad", "array": g32}],
            "parameters": {"axis": 0},
            "outputs": [{"name": "grad_x", "binary": True}, {"name": "y", "binary": True}],
        },
        # 7: an error
        {
            "op": "infer",
            "model": "leaky_relu",
            "inputs": [{"name": "x", "array": x64, "binary": False}],
            "parameters": {"negative_slope": 5.0},
        },
    ]
    results = run_kserve(base, calls)
    assert [r["ok"] for r in results] == [True] * 7 + [False], results
    assert [r["value"] for r in results[:4]] == [True, True, True, False]

    def outputs(result: dict[str, Any]) -> dict[str, np.ndarray]:
        return {o["name"]: o["array"] for o in result["outputs"]}

    assert results[4]["id"] == "k-1"
    assert results[4]["model_name"] == "gelu"
    assert list(outputs(results[4])) == ["y"]
    assert_same(outputs(results[4])["y"], reference(base, "gelu", x32, ("y",))["y"])

    want = reference(base, "leaky_relu", x64, ("y", "dydx"), params={"negative_slope": 0.2})
    assert outputs(results[5]).keys() == want.keys()
    for name, arr in want.items():
        assert_same(outputs(results[5])[name], arr, name)

    want = reference(base, "softmax", x32, ("y", "grad_x"), axis=0, grad=g32)
    assert outputs(results[6]).keys() == want.keys()
    for name, arr in want.items():
        assert_same(outputs(results[6])[name], arr, name)

    assert results[7]["status"] == 400
    assert "negative_slope" in results[7]["message"]  # KServe found the message under "error"


# -- hostile requests, raw ---------------------------------------------------------------------------


def post(
    base: str,
    head: dict[str, Any] | bytes,
    binary: bytes = b"",
    *,
    model: str = "gelu",
    length: str | None = "auto",
    headers: dict[str, str] | None = None,
    compress: str | None = None,
) -> httpx.Response:
    """POST an infer body: JSON ``head`` (or raw bytes) then ``binary``; ``length`` is the
    Inference-Header-Content-Length to send ("auto": the JSON's, when there is binary data; None: none)."""
    raw = head if isinstance(head, bytes) else json.dumps(head).encode()
    hdrs = dict(headers or {})
    if length == "auto":
        length = str(len(raw)) if binary else None
    if length is not None:
        hdrs["Inference-Header-Content-Length"] = length
    body = raw + binary
    if compress == "gzip":
        body, hdrs["Content-Encoding"] = zlib.compress(body, wbits=31), "gzip"
    elif compress == "deflate":
        body, hdrs["Content-Encoding"] = zlib.compress(body), "deflate"
    return httpx.post(f"{base}/v2/models/{model}/infer", content=body, headers=hdrs, timeout=30)


def assert_error(r: httpx.Response, *patterns: str, status: int | None = None) -> str:
    """A 4xx (``status`` if given) whose ``{"error": ...}`` matches one of ``patterns`` (regexes, any case)."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == "application/json", r.headers
    message = r.json()["error"]
    assert isinstance(message, str), r.text
    assert any(re.search(p, message, re.IGNORECASE) for p in patterns), (patterns, message)
    return message


X = r"(?<![a-z_])x(?![a-z_])"  # the input named x, as a word
F32 = np.arange(4, dtype="<f4") - 1.5


def x_json(shape: list[Any], data: Any, dt: str = "FP32", name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": dt, "data": data}


def x_bin(shape: list[Any], size: Any, dt: str = "FP32", name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": dt, "parameters": {"binary_data_size": size}}


def test_raw_binary_request_is_answered(base: str) -> None:
    # The baseline the hostile variants below break: it must work.
    r = post(base, {"inputs": [x_bin([4], 16)], "outputs": [{"name": "y"}]}, F32.tobytes())
    assert r.status_code == 200, r.text
    got = np.array(r.json()["outputs"][0]["data"], dtype=np.float32)
    assert_same(got, reference(base, "gelu", F32.astype(np.float32), ("y",))["y"])


ASCII = np.frombuffer(b"0123456789abcdef", dtype="<f4")  # four finite floats whose bytes are UTF-8 too


@pytest.mark.parametrize(
    ("length", "tail"),
    [
        (None, F32),
        (None, ASCII),
        ("abc", F32),
        ("-5", F32),
        ("1e3", F32),
        ("", F32),
        ("99999", F32),
        ("0", F32),
    ],
    ids=["missing", "missing-utf8-tail", "non-numeric", "negative", "float", "empty", "beyond-body", "zero"],
)
def test_bad_inference_header_content_length(base: str, length: str | None, tail: np.ndarray) -> None:
    # Missing, the whole body is taken for JSON: the message must still point at the header.
    r = post(base, {"inputs": [x_bin([4], 16)]}, tail.tobytes(), length=length)
    assert_error(r, "inference-header-content-length")


@pytest.mark.parametrize("shift", [-3, 4], ids=["inside-json", "inside-binary"])
def test_inference_header_content_length_off_the_json(base: str, shift: int) -> None:
    head = json.dumps({"inputs": [x_bin([4], 16)]}).encode()
    r = post(base, head, F32.tobytes(), length=str(len(head) + shift))
    assert_error(r, "inference-header-content-length", "json")


@pytest.mark.parametrize(
    ("inputs", "tail", "patterns"),
    [
        ([x_bin([4], 16)], F32.tobytes() + b"\0" * 4, ["binary_data_size", "binary"]),
        ([x_bin([4], 16)], F32.tobytes()[:12], ["binary_data_size", "binary"]),
        ([x_bin([4], 12)], F32.tobytes()[:12], [X]),
        ([x_bin([4], 16), x_bin([4], 16, name="grad")], F32.tobytes() * 2 + b"\0", ["binary_data_size"]),
        ([x_bin([4], 16), x_bin([4], 20, name="grad")], F32.tobytes() * 2, ["binary_data_size", "grad"]),
        ([x_bin([4], -16)], F32.tobytes(), ["binary_data_size"]),
        ([x_bin([4], "16")], F32.tobytes(), ["binary_data_size"]),
        ([x_bin([4], 16.0)], F32.tobytes(), ["binary_data_size"]),
        ([x_bin([4], True)], F32.tobytes(), ["binary_data_size"]),
        ([x_bin([4], 16) | {"data": [1, 2, 3, 4]}], F32.tobytes(), ["binary_data_size", "data", X]),
    ],
    ids=[
        "extra-bytes",
        "missing-bytes",
        "size-not-shape",
        "sum-short",
        "sum-long",
        "negative",
        "string",
        "float",
        "bool",
        "both-data-and-binary",
    ],
)
def test_binary_sizes_that_do_not_add_up(
    base: str, inputs: list[dict[str, Any]], tail: bytes, patterns: list[str]
) -> None:
    assert_error(post(base, {"inputs": inputs}, tail), *patterns)


@pytest.mark.parametrize(
    ("inp", "patterns"),
    [
        (x_json([2, 3], [1, 2, 3, 4, 5]), [X]),
        (x_json([5], [1, 2, 3, 4, 5, 6]), [X]),
        (x_json([-1, 4], [1, 2, 3, 4]), [X, "shape"]),
        (x_json([2, -2], [1, 2, 3, 4]), [X, "shape"]),
        (x_json([2.5], [1, 2]), [X, "shape"]),
        (x_json([True, 2], [1, 2]), [X, "shape"]),
        (x_json("4", [1, 2, 3, 4]), [X, "shape"]),
        (x_json([2**64], [1]), [X, "shape"]),
        (x_json([[2, 2]], [1, 2, 3, 4]), [X, "shape"]),
        (x_json([2, 2], [[1, 2], [3]]), [X]),
        (x_json([2, 2], [[1, 2], 3, 4]), [X]),
        (x_json([4], [1, "2", 3, 4]), [X]),
        (x_json([4], [1, None, 3, 4]), [X]),
        (x_json([4], [1, True, 3, 4]), [X]),
        (x_json([4], None), [X, "data"]),
        (x_json([4], {"a": 1}), [X, "data"]),
        ({"name": "x", "datatype": "FP32", "data": [1]}, [X, "shape"]),
        ({"name": "x", "shape": [1], "data": [1]}, [X, "datatype"]),
        (x_json([1], [1], dt="BYTES"), ["BYTES"]),
        (x_json([1], [1], dt="INT8"), ["INT8"]),
        (x_json([1], [1], dt="INT32"), ["INT32"]),
        (x_json([1], [1], dt="fp128"), ["fp128"]),
        (x_json([1], [1], dt=32), [X, "datatype"]),
    ],
    ids=[
        "shape-more-than-data",
        "shape-less-than-data",
        "negative-dim",
        "negative-dim-2",
        "float-dim",
        "bool-dim",
        "shape-string",
        "dim-past-uint64",
        "nested-shape",
        "ragged-data",
        "mixed-nesting",
        "string-element",
        "null-element",
        "bool-element",
        "data-null",
        "data-object",
        "no-shape",
        "no-datatype",
        "bytes",
        "int8",
        "int32",
        "unknown-datatype",
        "datatype-number",
    ],
)
def test_bad_json_tensors(base: str, inp: dict[str, Any], patterns: list[str]) -> None:
    assert_error(post(base, {"inputs": [inp]}), *patterns)


def test_integer_binary_input_is_refused(base: str) -> None:
    ints = np.arange(4, dtype="<i2")
    assert_error(post(base, {"inputs": [x_bin([4], 8, dt="INT16")]}, ints.tobytes()), "INT16")


@pytest.mark.parametrize(
    ("body", "patterns"),
    [
        ({"inputs": [x_json([1], [1], name="z")]}, [r"(?<![a-z_])z(?![a-z_])"]),
        ({"inputs": [x_json([1], [1]), x_json([1], [2])]}, [X]),
        ({"inputs": [x_json([1], [1], name="grad")]}, [X]),
        ({"inputs": []}, [X, "inputs"]),
        ({}, ["inputs"]),
        ({"inputs": {"x": [1]}}, ["inputs"]),
        ({"inputs": [x_json([2], [1, 2]), x_json([2], [1, 2], dt="FP64", name="grad")]}, ["grad"]),
        ({"inputs": [x_json([2], [1, 2]), x_json([3], [1, 2, 3], name="grad")]}, ["grad"]),
        ({"inputs": [x_json([1], [1])], "outputs": [{"name": "z"}]}, [r"(?<![a-z_])z(?![a-z_])"]),
        ({"inputs": [x_json([1], [1])], "outputs": [{"name": "grad_x"}]}, ["grad"]),
        ({"inputs": [x_json([1], [1])], "outputs": [{}]}, ["outputs", "name"]),
        ({"inputs": [x_json([1], [1])], "outputs": "y"}, ["outputs"]),
        ({"inputs": [x_json([1], [1])], "parameters": [1]}, ["parameters"]),
    ],
    ids=[
        "unknown-input",
        "duplicate-x",
        "missing-x",
        "no-inputs",
        "inputs-absent",
        "inputs-object",
        "grad-other-datatype",
        "grad-other-shape",
        "unknown-output",
        "grad_x-without-grad",
        "output-without-name",
        "outputs-string",
        "parameters-list",
    ],
)
def test_bad_requests(base: str, body: dict[str, Any], patterns: list[str]) -> None:
    assert_error(post(base, body), *patterns)


def test_d2ydx2_of_a_vector_function(base: str) -> None:
    body = {"inputs": [x_json([3], [1, 2, 3])], "outputs": [{"name": "d2ydx2"}]}
    assert_error(post(base, body, model="softmax"), "d2ydx2", "softmax")


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_json_data(base: str, token: bytes) -> None:
    head = b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1, %b, 2]}]}' % token
    assert_error(post(base, head), X, "finite", "json")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dt", ["FP32", "FP64"])
def test_non_finite_binary_data(base: str, value: float, dt: str) -> None:
    arr = np.array([1.0, value, 2.0], dtype="<f4" if dt == "FP32" else "<f8")
    assert_error(post(base, {"inputs": [x_bin([3], arr.nbytes, dt=dt)]}, arr.tobytes()), X, "finite")


def test_nested_and_flat_data_agree(base: str) -> None:
    x = sample((2, 3), np.float64)
    flat = post(base, {"inputs": [x_json([2, 3], x.ravel().tolist(), "FP64")]})
    nested = post(base, {"inputs": [x_json([2, 3], x.tolist(), "FP64")]})
    assert flat.status_code == nested.status_code == 200, (flat.text, nested.text)
    assert flat.json()["outputs"] == nested.json()["outputs"]
    got = np.array(flat.json()["outputs"][0]["data"], dtype=np.float64).reshape(2, 3)
    assert_same(got, reference(base, "gelu", x, ("y",))["y"])


@pytest.mark.parametrize(
    ("model", "parameters", "name"),
    [
        ("leaky_relu", {"negative_slope": "0.1"}, "negative_slope"),
        ("leaky_relu", {"negative_slope": True}, "negative_slope"),
        ("leaky_relu", {"negative_slope": -0.5}, "negative_slope"),
        ("softmax", {"axis": "0"}, "axis"),
        ("softmax", {"axis": 0.5}, "axis"),
        ("softmax", {"axis": True}, "axis"),
        ("softmax", {"temperature": 0}, "temperature"),
    ],
)
def test_bad_parameter_values(base: str, model: str, parameters: dict[str, Any], name: str) -> None:
    body = {"inputs": [x_json([2], [1, 2])], "parameters": parameters}
    assert_error(post(base, body, model=model), name)


@pytest.mark.parametrize("token", [b"NaN", b"Infinity"])
def test_non_finite_parameter(base: str, token: bytes) -> None:
    head = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}], '
    head += b'"parameters": {"negative_slope": %b}}' % token
    assert_error(post(base, head, model="leaky_relu"), "negative_slope", "json", "finite")


@pytest.mark.parametrize(
    ("body", "headers", "patterns"),
    [
        (b"not json", {}, ["json"]),
        (b"[1, 2]", {}, ["object", "json"]),
        (b'{"inputs": [x_json]}', {}, ["json"]),
        (b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, ["gzip", "compress", "encod"]),
        (b"garbage", {"Content-Encoding": "deflate"}, ["deflate", "compress", "encod"]),
        (zlib.compress(b'{"inputs": []}'), {"Content-Encoding": "br"}, ["br", "encoding"]),
    ],
    ids=["not-json", "json-array", "bad-json", "bad-gzip", "bad-deflate", "unknown-encoding"],
)
def test_unreadable_bodies(base: str, body: bytes, headers: dict[str, str], patterns: list[str]) -> None:
    assert_error(post(base, body, length=None, headers=headers), *patterns)


# -- sizes and memory --------------------------------------------------------------------------------


def peak_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM) so far, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)[1])  # type: ignore[index]


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        ({"inputs": [x_json([10**6, 10**6], [1, 2, 3])]}, b""),
        ({"inputs": [x_json([10**12], [1, 2, 3])]}, b""),
        ({"inputs": [x_bin([10**6, 10**6], 4 * 10**12)]}, F32.tobytes()),
        ({"inputs": [x_bin([4], 16), x_bin([10**12], 8 * 10**12, "FP64", "grad")]}, F32.tobytes()),
        ({"inputs": [x_json([0, 10**12], [])]}, b""),
    ],
    ids=["json-2d", "json-1d", "binary", "binary-grad", "zero-times-huge"],
)
def test_huge_declared_shapes_are_refused_without_allocating(
    lean: tuple[str, int], head: dict[str, Any], tail: bytes
) -> None:
    url, pid = lean
    before = peak_kib(pid)
    started = time.monotonic()
    r = post(url, head, tail)
    elapsed = time.monotonic() - started
    if head["inputs"][0]["shape"] == [0, 10**12]:
        # no element at all, so nothing to allocate: an empty answer or a refusal, never a 5xx
        assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    else:
        assert_error(r, X, "shape", "grad", "binary_data_size", "large", "elements")
    assert elapsed < 2, elapsed
    assert peak_kib(pid) - before < 32 * 1024


def bomb(size: int, wbits: int, prefix: bytes, fill: bytes) -> bytes:
    """``prefix`` then ``size`` bytes of ``fill``, compressed: a few hundred KiB inflating to ``size``."""
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = fill * ((1 << 20) // len(fill))
    parts = [z.compress(prefix)]
    for _ in range(size // len(chunk)):
        parts.append(z.compress(chunk))
    parts.append(z.flush())
    return b"".join(parts)


@pytest.mark.parametrize(
    ("encoding", "wbits", "binary"),
    [("gzip", 31, True), ("deflate", 15, True), ("gzip", 31, False), ("deflate", 15, False)],
    ids=["gzip-binary", "deflate-binary", "gzip-json", "deflate-json"],
)
def test_compression_bombs_are_413_with_memory_bounded(
    lean: tuple[str, int], encoding: str, wbits: int, binary: bool
) -> None:
    url, pid = lean
    inflated = 64 << 20  # 64 times the limit
    if binary:  # a small tensor declared, then a flood of bytes past it
        head = json.dumps({"inputs": [x_bin([4], 16)]}).encode()
        body = bomb(inflated, wbits, head + F32.tobytes(), b"\0")
        headers = {"Inference-Header-Content-Length": str(len(head))}
    else:  # a JSON header padded with whitespace
        body = bomb(inflated, wbits, b'{"inputs": [], "pad": "', b" ")
        headers = {}
    assert len(body) < MAX_BODY  # the compressed body itself is within the limit
    before = peak_kib(pid)
    r = httpx.post(
        f"{url}/v2/models/gelu/infer",
        content=body,
        headers=headers | {"Content-Encoding": encoding},
        timeout=60,
    )
    assert_error(r, "large", "limit", "bytes", "body", status=413)
    assert peak_kib(pid) - before < 24 * 1024  # inflating it all would take 64 MiB
    assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200


def test_model_named_in_the_body_must_be_the_one_in_the_path(base: str) -> None:
    body = {"model_name": "relu", "inputs": [x_json([1], [1.0])]}
    assert_error(post(base, body, model="gelu"), "model_name", status=400)
    assert post(base, body | {"model_name": "relu"}, model="relu").status_code == 200
    assert_error(post(base, body | {"model_version": "7"}, model="relu"), "model_version", status=400)


def test_tritonclients_scheduling_parameters_are_accepted(client: triton.InferenceServerClient) -> None:
    x = triton.InferInput("x", [2], "FP64")
    x.set_data_from_numpy(np.array([-1.0, 2.0]))
    result = client.infer("relu", [x], priority=1, timeout=1_000_000)
    assert result.as_numpy("y").tolist() == [0.0, 2.0]


@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/models/gelu/config", "/v2/models/gelu/stats"])
def test_unknown_protocol_paths_answer_in_the_protocols_shape(
    client: triton.InferenceServerClient, base: str, path: str
) -> None:
    # tritonclient reads {"error": ...} from every failed call; a problem+json body made it crash.
    r = httpx.get(f"{base}{path}", timeout=10)
    assert r.status_code == 404
    assert set(r.json()) == {"error"}
    with pytest.raises(InferenceServerException):
        client.get_model_config("gelu")


@pytest.mark.parametrize(
    ("dt", "binary"),
    # (tritonclient sends BF16 as binary data only: BF16 as JSON is tested below with a raw request)
    [("FP16", True), ("FP16", False), ("BF16", True)],
    ids=["FP16-binary", "FP16-json", "BF16-binary"],
)
def test_16_bit_tensors_are_correctly_rounded(
    client: triton.InferenceServerClient, base: str, dt: str, binary: bool
) -> None:
    # The 16-bit formats (elementwise functions): the JSON API's correctly rounded results, bit for bit.
    kind = np.float16 if dt == "FP16" else ml_dtypes.bfloat16
    x = np.array([[-3.0, -0.5, 0.0], [0.1, 1.0, 6.0]]).astype(kind)
    g = np.array([[1.0, 2.0, -1.0], [0.5, 3.0, 7.0]]).astype(kind)
    inputs = [triton.InferInput("x", [2, 3], dt), triton.InferInput("grad", [2, 3], dt)]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    inputs[1].set_data_from_numpy(g, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("y", "dydx", "grad_x")]
    result = client.infer("sigmoid", inputs, outputs=outputs)
    fmt = "float16" if dt == "FP16" else "bfloat16"
    for name, path, extra in (
        ("y", "/activate", {}),
        ("dydx", "/derivative", {}),
        ("grad_x", "/derivative", {"grad": g}),
    ):
        body = {"activation": "sigmoid", "x": x.astype(float).tolist(), "dtype": fmt}
        body |= {k: v.astype(float).tolist() for k, v in extra.items()}
        want = np.array(httpx.post(f"{base}{path}", json=body, timeout=30).json()[name], dtype=np.float32)
        got = result.as_numpy(name)
        assert got.dtype == kind, (name, got.dtype)
        assert got.astype(np.float32).tolist() == want.astype(kind).astype(np.float32).tolist(), name
    assert result.get_response()["outputs"][0]["datatype"] == dt


def test_16_bit_tensors_of_a_vector_function(client: triton.InferenceServerClient, base: str) -> None:
    # Correctly rounded to float16 as over /activate: the same numbers, as FP16.
    values = [1.0, 2.0, -0.5, 3.0]
    x = triton.InferInput("x", [4], "FP16")
    x.set_data_from_numpy(np.array(values, dtype=np.float16))
    got = client.infer("softmax", [x]).as_numpy("y")
    body = {"activation": "softmax", "x": values, "dtype": "float16"}
    want = httpx.post(f"{base}/activate", json=body, timeout=30).json()["y"]
    assert got.dtype == np.float16
    assert got.tolist() == np.array(want, dtype=np.float16).tolist()
    assert float(np.sum(got, dtype=np.float64)) != 0.0


def test_bf16_json_tensors(base: str) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [3], "datatype": "BF16", "data": [-1.0, 0.5, 3.0]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
    }
    r = httpx.post(f"{base}/v2/models/sigmoid/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    (y,) = r.json()["outputs"]
    assert y["datatype"] == "BF16"
    want = httpx.post(
        f"{base}/activate",
        json={"activation": "sigmoid", "x": [-1.0, 0.5, 3.0], "dtype": "bfloat16"},
        timeout=30,
    ).json()["y"]
    assert y["data"] == want


@pytest.mark.parametrize("value", ["0.1,0.2,0.3", "1", 1.0, True])
def test_an_unknown_parameter_is_named_as_unknown_whatever_its_value(base: str, value: Any) -> None:
    # A string sent for a parameter the model does not have was answered "must be a number ... got a
    # string": the name is what is wrong, as the JSON API says.
    body = {
        "inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}],
        "parameters": {"weight": value},
    }
    r = httpx.post(f"{base}/v2/models/softmax/infer", json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert "parameters.weight: unknown parameter for softmax; expected: temperature" in r.json()["error"]
