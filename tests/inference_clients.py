"""Helpers for the Open Inference Protocol tests: the service's JSON API as the reference, and KServe's client.

KServe's ``InferenceRESTClient`` lives in the ``kserve`` package, which pins its own FastAPI,
uvicorn, pydantic, protobuf, grpcio, pandas and Kubernetes client, and whose ``__init__`` imports
nearly all of them.  It therefore gets a venv of its own (built once, then reused: a cache
directory outside the checkout) and runs in a subprocess: this file is also the script that
subprocess runs (``python inference_clients.py`` reads calls as JSON on stdin and writes results
as JSON on stdout), so at module level it imports only what both venvs have.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

KSERVE_VERSION = "0.21.0"
DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
JSON_DTYPES = {"FP32": "float32", "FP64": "float64"}


def datatype(arr: np.ndarray) -> str:
    return {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}[arr.dtype]


# -- the reference: the service's own JSON API -----------------------------------------------------


def reference(
    base: str,
    activation: str,
    x: np.ndarray,
    names: tuple[str, ...],
    *,
    params: dict[str, Any] | None = None,
    axis: int | None = None,
    grad: np.ndarray | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """``names`` (y, dydx, d2ydx2, grad_x) as ``POST /activate`` and ``POST /derivative`` compute them."""
    import httpx

    body: dict[str, Any] = {"activation": activation, "x": x.tolist(), "dtype": JSON_DTYPES[datatype(x)]}
    if params:
        body["params"] = params
    if axis is not None:
        body["axis"] = axis
    calls = {
        "y": ("/activate", {}),
        "dydx": ("/derivative", {"order": 1}),
        "d2ydx2": ("/derivative", {"order": 2}),
        "grad_x": ("/derivative", {"grad": None if grad is None else grad.tolist()}),
    }
    out = {}
    for name in names:
        path, extra = calls[name]
        r = httpx.post(f"{base}{path}", json=body | extra, headers=headers, timeout=30)
        assert r.status_code == 200, (path, r.text)
        out[name] = np.array(r.json()[name], dtype=x.dtype)
    return out


def assert_same(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Equal bit for bit: dtype, shape and every value (a -0.0 against a 0.0 fails)."""
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    np.testing.assert_array_equal(got, want, err_msg=what)
    assert got.tobytes() == want.tobytes(), (what, got, want)


# -- KServe's InferenceRESTClient, in a venv of its own --------------------------------------------


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "activation-service"


def kserve_venv() -> Path:
    """The venv holding ``kserve==KSERVE_VERSION``: ``ACTIVATION_KSERVE_VENV`` if set, else in the cache.

    Built on first use (about 30 s from PyPI, 450 MB), under a lock so that two test sessions
    never build it at once; a ``.complete`` marker, written last, tells a finished venv from one
    an interrupted build left behind (which is then built again).
    """
    tag = f"kserve-{KSERVE_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    venv = Path(os.environ.get("ACTIVATION_KSERVE_VENV") or _cache_dir() / tag)
    marker = venv / ".complete"
    if marker.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, f"kserve=={KSERVE_VERSION}"], capture_output=True, check=False)
        assert done.returncode == 0, f"installing kserve failed:\n{done.stderr.decode()}"
        marker.write_text(f"built in {time.monotonic() - started:.0f} s\n")
    return venv


def run_kserve(base: str, calls: list[dict[str, Any]], timeout: float = 180) -> list[dict[str, Any]]:
    """Run ``calls`` with KServe's client against ``base``; one result per call (see :func:`_drive`).

    An input is ``{"name", "array": ndarray, "binary": bool}``; an output ``{"name", "binary": bool}``.
    """
    encoded = []
    for call in calls:
        call = dict(call)
        if "inputs" in call:
            call["inputs"] = [
                {
                    "name": i["name"],
                    "datatype": datatype(i["array"]),
                    "shape": list(i["array"].shape),
                    "b64": base64.b64encode(
                        i["array"].astype(DTYPES[datatype(i["array"])]).tobytes()
                    ).decode(),
                    "binary": i.get("binary", True),
                }
                for i in call["inputs"]
            ]
        encoded.append(call)
    python = kserve_venv() / "bin" / "python"
    done = subprocess.run(
        [str(python), "-W", "ignore", __file__],
        input=json.dumps({"base": base, "calls": encoded}).encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    results: list[dict[str, Any]] = json.loads(done.stdout)
    for result in results:
        for output in result.get("outputs", []):
            raw = base64.b64decode(output.pop("b64"))
            output["array"] = np.frombuffer(raw, dtype=DTYPES[output["datatype"]]).reshape(output["shape"])
    return results


async def _drive_one(client: Any, base: str, call: dict[str, Any]) -> dict[str, Any]:
    from kserve import InferInput, InferRequest
    from kserve.protocol.infer_type import RequestedOutput

    op = call["op"]
    headers = call.get("headers")
    if op == "live":
        return {"ok": True, "value": await client.is_server_live(base, headers=headers)}
    if op == "ready":
        return {"ok": True, "value": await client.is_server_ready(base, headers=headers)}
    if op == "model_ready":
        return {"ok": True, "value": await client.is_model_ready(base, call["model"], headers=headers)}
    inputs = []
    for spec in call["inputs"]:
        array = np.frombuffer(base64.b64decode(spec["b64"]), dtype=DTYPES[spec["datatype"]])
        array = array.reshape(spec["shape"])
        if spec["binary"]:
            tensor = InferInput(spec["name"], spec["shape"], spec["datatype"])
            tensor.set_data_from_numpy(array, binary_data=True)
        else:  # KServe sends an ndarray as JSON: a flat list
            tensor = InferInput(spec["name"], spec["shape"], spec["datatype"], data=array)
        inputs.append(tensor)
    outputs = None
    if call.get("outputs") is not None:
        outputs = [RequestedOutput(o["name"], {"binary_data": o["binary"]}) for o in call["outputs"]]
    request = InferRequest(
        call["model"],
        inputs,
        request_id=call.get("id"),
        parameters=call.get("parameters"),
        request_outputs=outputs,
    )
    response = await client.infer(base, request, model_name=call["model"], headers=headers)
    return {
        "ok": True,
        "id": response.id,
        "model_name": response.model_name,
        "outputs": [
            {
                "name": o.name,
                "datatype": o.datatype,
                "shape": list(o.shape),
                "b64": base64.b64encode(o.as_numpy().astype(DTYPES[o.datatype]).tobytes()).decode(),
            }
            for o in response.outputs
        ],
    }


async def _drive(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Each call's result, or ``{"ok": False, "type", "message", "status"}`` for what it raised."""
    from kserve import InferenceRESTClient, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    results = []
    try:
        for call in job["calls"]:
            try:
                results.append(await _drive_one(client, job["base"], call))
            except Exception as e:
                response = getattr(e, "response", None)
                results.append(
                    {
                        "ok": False,
                        "type": type(e).__name__,
                        "message": str(e),
                        "status": None if response is None else response.status_code,
                    }
                )
    finally:
        await client.close()
    return results


if __name__ == "__main__":
    import asyncio

    sys.stdout.write(json.dumps(asyncio.run(_drive(json.load(sys.stdin)))))
