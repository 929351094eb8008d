"""A typed Python client for activation-service, sync and async, over httpx.

    from activation_client import ActivationClient

    with ActivationClient("http://127.0.0.1:8000") as client:
        y = client.activate("gelu", x)                     # x: any NumPy array
        dydx = client.derivative("softmax", x, axis=-1)    # the Jacobian
        grad_x = client.derivative("tanh", x, grad=g)      # g^T J

    async with AsyncActivationClient("http://127.0.0.1:8000") as client:
        y = await client.activate("gelu", x)

Arrays travel as .npy (and .npz with a gradient) when the server accepts them,
as JSON otherwise; results come back as NumPy arrays in the input's float
type (float32 stays float32).  Errors raise :class:`ActivationServiceError`
carrying the server's message and field errors; a 503 is retried with
backoff (honouring Retry-After) before it is raised.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np

__version__ = "0.1.0"
__all__ = [
    "ActivationClient",
    "ActivationServiceError",
    "AsyncActivationClient",
    "ClientError",
    "ServerError",
]

NPY = "application/x-npy"
NPZ = "application/x-npz"


class ActivationServiceError(Exception):
    """A request the service refused or could not serve."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []


class ClientError(ActivationServiceError):
    """4xx: the request itself was wrong (the message names the field)."""


class ServerError(ActivationServiceError):
    """5xx: the service failed or stayed unavailable through every retry."""


#: An activation parameter: a number, or an array of numbers (rational's coefficients).
ParamValue = float | Sequence[float]


def _query_value(value: ParamValue) -> str | float:
    """A parameter as a query string carries it: an array as comma-separated numbers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        return value  # type: ignore[return-value]
    return ",".join(repr(float(v)) for v in value)


def _npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


def _npz(x: np.ndarray, grad: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, x=x, grad=grad)
    return out.getvalue()


def _as_float(x: Any) -> np.ndarray:
    """x as it travels: float16, float32 and float64 as they are, bfloat16 as the same numbers in
    float32 (with dtype=bfloat16 beside them), anything else as float64."""
    arr = np.asarray(x)
    if arr.dtype.name == "bfloat16":
        return arr.astype(np.float32)
    if arr.dtype not in (np.float16, np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _format(x: Any, dtype: str | None) -> str:
    """The format of a call: the one asked for, else x's own."""
    if dtype is not None:
        return dtype
    name = np.asarray(x).dtype.name
    return name if name in ("float16", "bfloat16", "float32", "float64") else "float64"


def _numpy_type(fmt: str, like: Any) -> Any:
    """The NumPy type results of ``fmt`` are given in: bfloat16 as x's bfloat16 type, or ml_dtypes'
    when it is installed, else as float32 (the same numbers)."""
    if fmt == "bfloat16":
        if np.asarray(like).dtype.name == "bfloat16":
            return np.asarray(like).dtype
        try:
            import ml_dtypes

            return ml_dtypes.bfloat16
        except ImportError:
            return np.float32
    return {"float16": np.float16, "float32": np.float32}.get(fmt, np.float64)


class _Requests:
    """What the sync and async clients share: how a call becomes a request, and a response a result."""

    def __init__(self, base_url: str, api_key: str | None, binary: bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.binary = binary

    def post_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON request for the operations without arrays to speak of (profile, simulate, fit)."""
        body = {
            k: (_as_float(v).tolist() if k in ("x", "y") else v) for k, v in body.items() if v is not None
        }
        return {"method": "POST", "url": f"{self.base_url}{path}", "json": body, "headers": self.headers}

    def build(
        self,
        path: str,
        name: str,
        x: Any,
        grad: Any,
        fields: Mapping[str, Any],
        params: Mapping[str, ParamValue],
    ) -> dict[str, Any]:
        arr = _as_float(x)
        fields = {k: v for k, v in fields.items() if v is not None}
        fields.setdefault("dtype", _format(x, None))
        if self.binary:
            content = _npy(arr) if grad is None else _npz(arr, _as_float(grad).astype(arr.dtype))
            return {
                "method": "POST",
                "url": f"{self.base_url}{path}",
                "params": {"activation": name, **fields, **{k: _query_value(v) for k, v in params.items()}},
                "content": content,
                "headers": self.headers | {"content-type": NPY if grad is None else NPZ, "accept": NPY},
            }
        body: dict[str, Any] = {"activation": name, "x": arr.tolist(), "params": dict(params), **fields}
        if grad is not None:
            body["grad"] = _as_float(grad).tolist()
        return {"method": "POST", "url": f"{self.base_url}{path}", "json": body, "headers": self.headers}

    @staticmethod
    def result(response: httpx.Response, x: Any) -> Any:
        """The result array(s) of a response, in the NumPy type of the call's format."""
        if response.headers.get("content-type", "").startswith(NPY):
            arr = np.load(io.BytesIO(response.content), allow_pickle=False)
            fmt = response.headers.get("x-activation-dtype") or _format(x, None)
            return arr.astype(_numpy_type(fmt, x)) if fmt == "bfloat16" else arr
        data = response.json()
        dtype = _numpy_type(data.get("dtype", "float64"), x)
        for key in ("y", "dydx", "grad_x", "d2ydx2"):
            if key in data:
                return np.asarray(data[key], dtype=dtype)
        if "dydparams" in data:
            return {k: np.asarray(v, dtype=dtype) for k, v in data["dydparams"].items()}
        return dict(data["grad_params"])

    @staticmethod
    def error(response: httpx.Response) -> ActivationServiceError:
        try:
            body = response.json()
            detail, errors = str(body.get("detail", response.reason_phrase)), list(body.get("errors", []))
        except ValueError:
            detail, errors = response.text[:500] or response.reason_phrase, []
        kind = ClientError if response.status_code < 500 else ServerError
        return kind(response.status_code, detail, errors)

    @staticmethod
    def wait(response: httpx.Response, attempt: int) -> float:
        retry_after = response.headers.get("retry-after", "")
        return float(retry_after) if retry_after.isdigit() else min(0.1 * 2**attempt, 5.0)


class ActivationClient:
    """Synchronous client. ``binary=False`` forces JSON on the wire."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        binary: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._requests = _Requests(base_url, api_key, binary)
        self._retries = retries
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> ActivationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def activate(
        self, name: str, x: Any, *, axis: int | None = None, dtype: str | None = None, **params: ParamValue
    ) -> np.ndarray:
        """f(x) for a NumPy array (or anything np.asarray takes)."""
        return self._call("/activate", name, x, None, {"axis": axis, "dtype": dtype}, params)  # type: ignore[no-any-return]

    def derivative(
        self,
        name: str,
        x: Any,
        *,
        grad: Any = None,
        order: int = 1,
        wrt: str = "x",
        axis: int | None = None,
        dtype: str | None = None,
        **params: ParamValue,
    ) -> Any:
        """f'(x) (or the Jacobian), g^T J with ``grad``, f'' with ``order=2``; with
        ``wrt="params"`` a dict of parameter gradients."""
        fields = {
            "axis": axis,
            "dtype": dtype,
            "order": order if order != 1 else None,
            "wrt": wrt if wrt != "x" else None,
        }
        return self._call("/derivative", name, x, grad, fields, params)

    def catalog(self) -> list[dict[str, Any]]:
        """The catalog entries (GET /activations)."""
        response = self._send(
            {
                "method": "GET",
                "url": f"{self._requests.base_url}/activations",
                "headers": self._requests.headers,
            }
        )
        return list(response.json()["activations"])

    def profile(
        self,
        name: str,
        *,
        mean: float = 0.0,
        std: float = 1.0,
        sigma_w: float | None = None,
        sigma_b: float = 0.0,
        depth: int | None = None,
        **params: ParamValue,
    ) -> dict[str, Any]:
        """Moments of f and f' under N(mean, std^2), the gain, and with ``sigma_w`` the mean field
        of a deep random network (POST /profile)."""
        body = {"activation": name, "params": params, "mean": mean, "std": std}
        body |= {"sigma_w": sigma_w, "sigma_b": sigma_b, "depth": depth} if sigma_w is not None else {}
        return dict(self._send(self._requests.post_json("/profile", body)).json())

    def simulate(self, name: str, *, init: str = "he", seed: int = 0, **fields: Any) -> dict[str, Any]:
        """A random deep network's per-layer statistics (POST /simulate): ``width``, ``depth``,
        ``batch``, ``sigma_w``, ``sigma_b`` and ``params`` (a dict) as keywords."""
        body = {"activation": name, "init": init, "seed": seed, **fields}
        return dict(self._send(self._requests.post_json("/simulate", body)).json())

    def fit(
        self,
        name: str,
        x: Any,
        y: Any = None,
        *,
        target: str | None = None,
        target_params: Mapping[str, ParamValue] | None = None,
        fit: list[str] | None = None,
        max_iterations: int | None = None,
        **params: ParamValue,
    ) -> dict[str, Any]:
        """Parameters fitted to (x, y), or to x and a ``target`` activation (POST /fit)."""
        goal = {"activation": target, "params": dict(target_params or {})} if target is not None else None
        body = {"activation": name, "params": params, "x": x, "y": y, "target": goal, "fit": fit}
        body["max_iterations"] = max_iterations
        return dict(self._send(self._requests.post_json("/fit", body)).json())

    def _call(
        self,
        path: str,
        name: str,
        x: Any,
        grad: Any,
        fields: Mapping[str, Any],
        params: Mapping[str, ParamValue],
    ) -> Any:
        request = self._requests.build(path, name, x, grad, fields, params)
        try:
            return _Requests.result(self._send(request), x)
        except ClientError as exc:
            if exc.status != 415 or not self._requests.binary:
                raise
            self._requests.binary = False  # a server without the binary path: JSON from now on
            return self._call(path, name, x, grad, fields, params)

    def _send(self, request: dict[str, Any]) -> httpx.Response:
        for attempt in range(self._retries + 1):
            response = self._http.request(**request)
            if response.status_code != 503 or attempt == self._retries:
                break
            time.sleep(_Requests.wait(response, attempt))
        if response.is_error:
            raise _Requests.error(response)
        return response


class AsyncActivationClient:
    """Asynchronous client with the same methods as :class:`ActivationClient`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        binary: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._requests = _Requests(base_url, api_key, binary)
        self._retries = retries
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncActivationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def activate(
        self, name: str, x: Any, *, axis: int | None = None, dtype: str | None = None, **params: ParamValue
    ) -> np.ndarray:
        return await self._call("/activate", name, x, None, {"axis": axis, "dtype": dtype}, params)  # type: ignore[no-any-return]

    async def derivative(
        self,
        name: str,
        x: Any,
        *,
        grad: Any = None,
        order: int = 1,
        wrt: str = "x",
        axis: int | None = None,
        dtype: str | None = None,
        **params: ParamValue,
    ) -> Any:
        fields = {
            "axis": axis,
            "dtype": dtype,
            "order": order if order != 1 else None,
            "wrt": wrt if wrt != "x" else None,
        }
        return await self._call("/derivative", name, x, grad, fields, params)

    async def catalog(self) -> list[dict[str, Any]]:
        response = await self._send(
            {
                "method": "GET",
                "url": f"{self._requests.base_url}/activations",
                "headers": self._requests.headers,
            }
        )
        return list(response.json()["activations"])

    async def profile(
        self,
        name: str,
        *,
        mean: float = 0.0,
        std: float = 1.0,
        sigma_w: float | None = None,
        sigma_b: float = 0.0,
        depth: int | None = None,
        **params: ParamValue,
    ) -> dict[str, Any]:
        """Moments of f and f' under N(mean, std^2), the gain, and with ``sigma_w`` the mean field
        of a deep random network (POST /profile)."""
        body = {"activation": name, "params": params, "mean": mean, "std": std}
        body |= {"sigma_w": sigma_w, "sigma_b": sigma_b, "depth": depth} if sigma_w is not None else {}
        return dict((await self._send(self._requests.post_json("/profile", body))).json())

    async def simulate(self, name: str, *, init: str = "he", seed: int = 0, **fields: Any) -> dict[str, Any]:
        """A random deep network's per-layer statistics (POST /simulate): ``width``, ``depth``,
        ``batch``, ``sigma_w``, ``sigma_b`` and ``params`` (a dict) as keywords."""
        body = {"activation": name, "init": init, "seed": seed, **fields}
        return dict((await self._send(self._requests.post_json("/simulate", body))).json())

    async def fit(
        self,
        name: str,
        x: Any,
        y: Any = None,
        *,
        target: str | None = None,
        target_params: Mapping[str, ParamValue] | None = None,
        fit: list[str] | None = None,
        max_iterations: int | None = None,
        **params: ParamValue,
    ) -> dict[str, Any]:
        """Parameters fitted to (x, y), or to x and a ``target`` activation (POST /fit)."""
        goal = {"activation": target, "params": dict(target_params or {})} if target is not None else None
        body = {"activation": name, "params": params, "x": x, "y": y, "target": goal, "fit": fit}
        body["max_iterations"] = max_iterations
        return dict((await self._send(self._requests.post_json("/fit", body))).json())

    async def _call(
        self,
        path: str,
        name: str,
        x: Any,
        grad: Any,
        fields: Mapping[str, Any],
        params: Mapping[str, ParamValue],
    ) -> Any:
        request = self._requests.build(path, name, x, grad, fields, params)
        try:
            return _Requests.result(await self._send(request), x)
        except ClientError as exc:
            if exc.status != 415 or not self._requests.binary:
                raise
            self._requests.binary = False
            return await self._call(path, name, x, grad, fields, params)

    async def _send(self, request: dict[str, Any]) -> httpx.Response:
        for attempt in range(self._retries + 1):
            response = await self._http.request(**request)
            if response.status_code != 503 or attempt == self._retries:
                break
            await asyncio.sleep(_Requests.wait(response, attempt))
        if response.is_error:
            raise _Requests.error(response)
        return response
