"""The pages in a real browser: Debian's chromium driven by Playwright, every non-loopback request blocked.

Screenshots are saved under artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from tests import servers
from tests.browsing import Visit


def test_docs_render_every_operation_offline(visit: Visit, server: str) -> None:
    page = visit.page
    page.goto(f"{server}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    doc = httpx.get(f"{server}/openapi.json").json()
    assert {p.replace("\u200b", "") for p in paths} == set(doc["paths"])
    visit.shot("docs")


def test_docs_try_it_out_on_activate_answers_200(visit: Visit, server: str) -> None:
    page = visit.page
    page.goto(f"{server}/docs")
    block = page.locator(".opblock-post").filter(has_text="/activate").first
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip() == "200"
    visit.shot("docs-try-it-out")


def test_docs_try_it_out_with_an_npy_upload_answers_on_the_first_click(
    visit: Visit, server: str, tmp_path: Path
) -> None:
    # Pick a file, press Execute: nothing else to fill in, nothing stray sent along.
    path = tmp_path / "x.npy"
    np.save(path, np.array([-1.0, 0.0, 2.0]))
    page = visit.page
    page.goto(f"{server}/docs")
    block = page.locator("#operations-compute-activate_npy")
    block.locator(".opblock-summary").click()
    block.locator("input[type=file]").set_input_files(str(path))
    block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip() == "200"
    curl = block.locator(".curl-command").inner_text()
    assert "activation=gelu" in curl
    assert "additionalProp" not in curl
    visit.shot("docs-try-it-out-npy")


def test_redoc_renders(visit: Visit, server: str) -> None:
    page = visit.page
    page.goto(f"{server}/redoc")
    page.locator("h2", has_text="Evaluate an activation function").first.wait_for(timeout=30_000)
    visit.shot("redoc")


def _canvas_pixels(page: Page) -> dict[str, Any]:
    """How many pixels carry each curve's colour, and the image itself."""
    return page.evaluate(
        """() => {
        const c = document.getElementById('plot');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const near = (i, r, g, b) => Math.abs(d[i]-r) < 40 && Math.abs(d[i+1]-g) < 40 && Math.abs(d[i+2]-b) < 40;
        let f = 0, d1 = 0;
        for (let i = 0; i < d.length; i += 4) { if (near(i, 31, 111, 209)) f++; if (near(i, 224, 118, 26)) d1++; }
        return {f, d1, url: c.toDataURL()};
    }"""
    )


def _open_playground(visit: Visit, server: str) -> Page:
    page = visit.page
    page.goto(f"{server}/")
    page.wait_for_function("document.getElementById('plot').dataset.activation === 'sigmoid'", timeout=20_000)
    return page


def test_playground_draws_sigmoid_and_its_derivative(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    pixels = _canvas_pixels(page)
    assert pixels["f"] > 300
    assert pixels["d1"] > 300
    assert page.locator("#plot").get_attribute("data-curves") == "2"
    assert "0.25" in page.locator("#info-notes").inner_text()
    visit.shot("playground-sigmoid")


def test_playground_switching_to_relu_changes_the_curves(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    before = _canvas_pixels(page)["url"]
    page.select_option("select[name=activation]", "relu")
    page.wait_for_function("document.getElementById('plot').dataset.activation === 'relu'")
    assert _canvas_pixels(page)["url"] != before
    assert page.locator("#info-name").inner_text().startswith("relu")


def _hover_readout(page: Page, fraction: float) -> dict[str, float]:
    box = page.locator("#plot").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    readout = page.get_by_test_id("readout")
    return {k: float(readout.get_attribute(f"data-{k}") or "nan") for k in ("x", "y", "dydx")}


def test_playground_reflects_a_leaky_relu_slope(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    page.select_option("select[name=activation]", "leaky_relu")
    page.wait_for_function("document.getElementById('plot').dataset.activation === 'leaky_relu'")
    page.fill("input[name=negative_slope]", "0.3")
    page.wait_for_function(
        "JSON.parse(document.getElementById('plot').dataset.params).negative_slope === 0.3"
    )
    point = _hover_readout(page, 0.2)
    assert point["x"] < 0
    assert point["y"] == pytest.approx(0.3 * point["x"], rel=1e-12)
    assert point["dydx"] == 0.3
    visit.shot("playground-leaky-relu")


def test_playground_readout_matches_the_api(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    point = _hover_readout(page, 0.63)
    assert "f(x)" in page.get_by_test_id("readout").inner_text()
    y = httpx.post(f"{server}/activate", json={"activation": "sigmoid", "x": [point["x"]]}).json()["y"][0]
    dydx = httpx.post(f"{server}/derivative", json={"activation": "sigmoid", "x": [point["x"]]}).json()[
        "dydx"
    ][0]
    assert (point["y"], point["dydx"]) == (y, dydx)


def test_playground_fits_a_phone_screen(browser: Browser, server: str) -> None:
    phone = Visit(browser, width=390)
    try:
        phone.page.goto(f"{server}/")
        phone.page.wait_for_function("document.getElementById('plot').dataset.activation === 'sigmoid'")
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
        phone.shot("playground-phone")
    finally:
        phone.close()


def test_playground_sends_the_api_key(visit: Visit, server: str) -> None:
    # The key typed in the page goes out as a bearer token on every API call.
    seen: list[str] = []
    visit.page.on(
        "request", lambda r: seen.append(r.headers.get("authorization", "")) if "/activate" in r.url else None
    )
    page = _open_playground(visit, server)
    page.fill("input[name=api_key]", "secret-key")
    page.wait_for_timeout(500)
    assert "Bearer secret-key" in seen
    assert json.loads(page.locator("#plot").get_attribute("data-params") or "{}") == {}


KEY = "browser-test-key"


@pytest.fixture(scope="module")
def secured() -> Iterator[str]:
    with servers.running(env={"ACTIVATION_API_KEYS": KEY}) as (base, _):
        yield base


def _execute(block: Any) -> str:
    """Click Execute on an expanded operation and read the status it gets."""
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    if status.count():
        block.get_by_role("button", name="Clear").click()
    block.get_by_role("button", name="Execute").click()
    status.wait_for(timeout=20_000)
    return str(status.inner_text().strip())


def test_docs_authorize_button_makes_try_it_out_work(visit: Visit, secured: str) -> None:
    page = visit.page
    page.goto(f"{secured}/docs")
    block = page.locator(".opblock-post").filter(has_text="/activate").first
    block.locator(".opblock-summary").click()
    assert _execute(block) == "401"  # keys are set and none was given
    authorize(page, KEY)
    assert _execute(block) == "200"
    visit.shot("docs-authorized")


def authorize(page: Page, key: str) -> None:
    """Give /docs a key through its Authorize dialog."""
    page.locator("button.authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#auth-bearer-value").fill(key)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.locator("button.btn-done").click()


def test_playground_works_with_a_key_when_keys_are_set(visit: Visit, secured: str) -> None:
    page = visit.page
    page.goto(f"{secured}/")
    status = page.locator("#status")
    status.filter(has_text="API key").wait_for(timeout=20_000)  # the catalog needs the key: the page says so
    page.fill("input[name=api_key]", KEY)
    page.wait_for_function("document.getElementById('plot').dataset.activation === 'sigmoid'", timeout=20_000)
    pixels = _canvas_pixels(page)
    assert pixels["f"] > 200
    assert pixels["d1"] > 200
    assert status.inner_text() == ""
