"""The service behind a real reverse proxy (Debian's nginx) with a path prefix, keys set."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests import proxy, servers
from tests.browsing import Visit
from tests.test_api import assert_problem
from tests.test_browser import _execute, authorize

KEY = "proxy-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def behind() -> Iterator[tuple[str, str]]:
    """(the service through nginx under /api, the service itself), with keys and the root path set."""
    with (
        servers.running("--root-path", "/api", "--api-keys", KEY) as (base, _),
        proxy.nginx(base.removeprefix("http://"), "/api") as front,
    ):
        yield front, base


@pytest.mark.parametrize("via", ["proxy", "direct"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/activate", {"activation": "gelu", "x": [1.0, -2.0]}),
        ("POST", "/derivative", {"activation": "softmax", "x": [1.0, 2.0], "grad": [1.0, 0.0]}),
        ("GET", "/activations", None),
        ("GET", "/activations/SiLU", None),
    ],
)
def test_keys_hold_under_the_prefix(
    behind: tuple[str, str], via: str, method: str, path: str, body: object
) -> None:
    base = behind[0] if via == "proxy" else behind[1]
    r = httpx.request(method, f"{base}{path}", json=body, timeout=10)
    assert_problem(r, 401, "authorization")
    ok = httpx.request(method, f"{base}{path}", json=body, headers=AUTH, timeout=10)
    assert ok.status_code == 200, ok.text


def test_open_routes_and_request_ids_pass_through_the_proxy(behind: tuple[str, str]) -> None:
    front, _ = behind
    for path in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/", "/metrics"):
        assert httpx.get(f"{front}{path}", timeout=10).status_code == 200, path
    r = httpx.post(
        f"{front}/activate",
        json={"activation": "relu", "x": [1]},
        headers={**AUTH, "x-request-id": "via-nginx-1"},
    )
    assert r.headers["x-request-id"] == "via-nginx-1"
    assert httpx.get(f"{front}/nowhere", timeout=10).status_code == 401  # unknown paths fail closed


def test_docs_under_the_prefix_load_their_document(behind: tuple[str, str]) -> None:
    front, _ = behind
    html = httpx.get(f"{front}/docs", timeout=10).text
    assert "'/api/openapi.json'" in html or '"/api/openapi.json"' in html
    assert "/api/static/docs/swagger-ui-bundle.js" in html
    assert httpx.get(f"{front}/static/docs/swagger-ui-bundle.js", timeout=10).status_code == 200
    doc = httpx.get(f"{front}/openapi.json", timeout=10).json()
    assert doc["servers"] == [{"url": "/api"}]


def test_metrics_label_routes_under_the_prefix(behind: tuple[str, str]) -> None:
    front, _ = behind
    httpx.post(f"{front}/derivative", json={"activation": "relu", "x": [1]}, headers=AUTH, timeout=10)
    text = httpx.get(f"{front}/metrics", timeout=10).text
    assert 'route="/derivative",status="200"' in text
    assert 'route="/api' not in text


def test_try_it_out_through_the_proxy(visit: Visit, behind: tuple[str, str]) -> None:
    front, _ = behind
    page = visit.page
    page.goto(f"{front}/docs")
    block = page.locator(".opblock-post").filter(has_text="/activate").first
    block.locator(".opblock-summary").click()
    assert _execute(block) == "401"
    authorize(page, KEY)
    assert _execute(block) == "200"
    visit.shot("docs-behind-nginx")


def test_the_inference_protocol_through_the_proxy_with_its_key(behind: tuple[str, str]) -> None:
    # tritonclient takes "host:port/prefix" and calls /prefix/v2/...; keys hold there as elsewhere.
    front, _ = behind
    client = triton.InferenceServerClient(front.removeprefix("http://"))
    assert client.is_server_live()  # open, like /healthz
    x = triton.InferInput("x", [3], "FP64")
    x.set_data_from_numpy(np.array([-1.0, 0.0, 2.0]))
    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("relu", [x])
    result = client.infer("relu", [x], headers={"Authorization": f"Bearer {KEY}"})
    assert result.as_numpy("y").tolist() == [0.0, 0.0, 2.0]
    client.close()
