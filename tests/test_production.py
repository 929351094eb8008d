"""Settings, limits, authentication and CORS."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from service.__main__ import parse_settings
from service.app import create_app, create_fastapi_app
from service.settings import Settings
from tests.conftest import asgi_client
from tests.test_api import assert_problem


def client_for(root: str = "", **settings: object) -> httpx.AsyncClient:
    return asgi_client(create_app(Settings.model_construct(**settings)), root)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVATION_MAX_ELEMENTS", "5")
    monkeypatch.setenv("ACTIVATION_API_KEYS", " key-one, key-two ,")
    monkeypatch.setenv("ACTIVATION_LOG_FORMAT", "text")
    settings = Settings()
    assert settings.max_elements == 5
    assert settings.api_keys == ["key-one", "key-two"]
    assert settings.log_format == "text"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVATION_PORT", "8001")
    monkeypatch.setenv("ACTIVATION_WORKERS", "3")
    settings = parse_settings(["--port", "9000", "--cors-origins", "https://a.example,https://b.example"])
    assert settings.port == 9000
    assert settings.workers == 3
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_invalid_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVATION_PORT", "0")
    with pytest.raises(ValueError, match="port"):
        Settings()


@pytest.fixture
async def limited(root: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(root, max_body_bytes=4096, max_elements=100, max_jacobian_elements=50) as c:
        yield c


async def test_body_over_the_limit_returns_413_from_its_content_length(limited: httpx.AsyncClient) -> None:
    r = await limited.post(
        "/activate", content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"}
    )
    assert_problem(r, 413, "body", "4096", "ACTIVATION_MAX_BODY_BYTES")


async def test_streamed_body_over_the_limit_returns_413(limited: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = await limited.post("/activate", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(r, 413, "body", "4096")


async def test_too_many_elements_returns_413(limited: httpx.AsyncClient) -> None:
    r = await limited.post("/activate", json={"activation": "relu", "x": [1.0] * 101})
    assert_problem(r, 413, "x", "101", "limit is 100", "ACTIVATION_MAX_ELEMENTS")


async def test_too_many_elements_in_npy_returns_413(limited: httpx.AsyncClient) -> None:
    out = io.BytesIO()
    np.save(out, np.ones(101))
    r = await limited.post(
        "/activate?activation=relu", content=out.getvalue(), headers={"content-type": "application/x-npy"}
    )
    assert_problem(r, 413, "x", "limit is 100")


async def test_jacobian_over_the_limit_returns_413_suggesting_grad(limited: httpx.AsyncClient) -> None:
    r = await limited.post("/derivative", json={"activation": "softmax", "x": [1.0] * 8})
    assert_problem(r, 413, "x", "Jacobian would have 64", "send grad")
    ok = await limited.post("/derivative", json={"activation": "softmax", "x": [1.0] * 8, "grad": [1.0] * 8})
    assert ok.status_code == 200


@pytest.fixture
async def secured(root: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(root, api_keys=["s3cret-key", "other-key"]) as c:
        yield c


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
async def test_missing_key_returns_401_with_www_authenticate(secured: httpx.AsyncClient, path: str) -> None:
    r = await secured.post(path, json={"activation": "relu", "x": [1]})
    assert_problem(r, 401, "authorization", "Bearer")
    assert r.headers["www-authenticate"] == 'Bearer realm="activation-service"'


async def test_wrong_key_returns_401_without_echoing_it(secured: httpx.AsyncClient) -> None:
    r = await secured.get("/activations", headers={"authorization": "Bearer s3cret-kez"})
    assert_problem(r, 401, "authorization", "invalid")
    assert "s3cret" not in r.text


@pytest.mark.parametrize("key", ["s3cret-key", "other-key"])
async def test_any_configured_key_is_accepted(secured: httpx.AsyncClient, key: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    assert (
        await secured.post("/activate", json={"activation": "relu", "x": [1]}, headers=headers)
    ).status_code == 200
    assert (await secured.get("/activations/relu", headers=headers)).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/openapi.json", "/"])
async def test_probes_and_pages_stay_open(secured: httpx.AsyncClient, path: str) -> None:
    assert (await secured.get(path)).status_code == 200


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_allows_configured_origins_even_with_auth() -> None:
    async with client_for(cors_origins=["https://app.example"], api_keys=["k"]) as c:
        preflight = await c.options(
            "/activate",
            headers={"origin": "https://app.example", "access-control-request-method": "POST",
                     "access-control-request-headers": "authorization,content-type"},
        )  # fmt: skip
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        r = await c.post("/activate", json={"activation": "relu", "x": [1]},
                         headers={"origin": "https://app.example", "authorization": "Bearer k"})  # fmt: skip
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        other = await c.get("/healthz", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_openapi_documents_the_security_scheme_and_401() -> None:
    from tests.test_openapi import DOC, OPERATIONS

    assert DOC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for (path, _), op in OPERATIONS.items():
        if path.startswith(("/activate", "/derivative", "/activations")):
            assert "401" in op["responses"], path
            assert {"bearer": []} in op["security"]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


_SAME_ANSWER_CASES = {  # path, request, the status both must answer
    "json": ("/activate", {"json": {"activation": "relu", "x": [-1.0, 2.5]}}, 200),
    "jacobian": ("/derivative", {"json": {"activation": "softmax", "x": [[1.0, 2.0, 3.0]]}}, 200),
    "npy": (
        "/activate?activation=gelu",
        {"content": _npy(np.array([-1.0, 0.5])), "headers": {"content-type": "application/x-npy", "accept": "application/x-npy"}},
        200,
    ),
    "too many elements": ("/activate", {"json": {"activation": "relu", "x": list(range(11))}}, 413),
    "body too large": ("/activate", {"content": b"[" + b"1," * 600 + b"1]", "headers": {"content-type": "application/json"}}, 413),
    "unknown activation": ("/activate", {"json": {"activation": "rleu", "x": [1.0]}}, 422),
    "media type": ("/activate", {"content": b"1", "headers": {"content-type": "text/plain"}}, 415),
}  # fmt: skip


@pytest.mark.parametrize("case", _SAME_ANSWER_CASES, ids=list(_SAME_ANSWER_CASES))
async def test_compute_operations_have_one_pipeline(case: str) -> None:
    # FastAPI serves no compute operation: the pipeline is the only way to one, so
    # every refusal comes from it, with the configured limits.
    assert not any(
        getattr(route, "path", "") in ("/activate", "/derivative") for route in create_fastapi_app().routes
    )
    settings = Settings.model_construct(max_body_bytes=1024, max_elements=10)
    path, request, status = _SAME_ANSWER_CASES[case]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://t"
    ) as client:
        r = await client.post(path, **request)  # type: ignore[arg-type]
    assert r.status_code == status
    if status != 200:
        assert r.headers["content-type"] == "application/problem+json"
