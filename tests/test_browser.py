"""The pages in a real browser: Debian's chromium driven by Playwright, every non-loopback request blocked.

Screenshots are saved under artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import itertools
import json
import math
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
    # The README's picture (service/static/playground-sigmoid.png is a copy): the viewport, with the
    # readout at x = 1.5.
    page.focus("#plot")
    for _ in range(50):
        page.keyboard.press("ArrowRight")
    page.locator("#plot").blur()
    assert page.get_by_test_id("readout").get_attribute("data-x") == "1.5"
    page.locator("#profile[data-state=ready]").wait_for()
    assert visit.shot("readme-playground", full_page=False).stat().st_size <= 150_000


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


# -- the learning lab: formulas, axes, kinks, keyboard, compare, softmax, depth lab, URL state -------


def _dataset(page: Page, selector: str = "#plot") -> dict[str, str]:
    return dict(page.locator(selector).evaluate("el => ({...el.dataset})"))


def _json(page: Page, name: str, selector: str = "#plot") -> Any:
    return json.loads(_dataset(page, selector)[name])


def _wait_plot(page: Page, condition: str) -> None:
    """Wait until the JavaScript ``condition`` on ``d`` (the plot's dataset) holds."""
    page.wait_for_function(
        f"(() => {{ const d = document.getElementById('plot').dataset; return {condition}; }})()"
    )


def _legend(page: Page, selector: str = "#legend") -> list[str]:
    return [t.strip() for t in page.locator(f"{selector} li").all_inner_texts()]


def _is_nice(ticks: list[float]) -> bool:
    """Evenly spaced multiples of a step that is 1, 2 or 5 times a power of ten, written short."""
    if len(ticks) < 2:
        return False
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    if not any(math.isclose(mantissa, m, rel_tol=1e-9) for m in (1, 2, 5, 10)):
        return False
    for a, b in itertools.pairwise(ticks):
        if not math.isclose(b - a, step, rel_tol=1e-9):
            return False
    return all(
        math.isclose(t / step, round(t / step), abs_tol=1e-9) and float(f"{t:.12g}") == t for t in ticks
    )


def test_is_nice_tells_round_ticks_from_the_old_ones() -> None:
    assert _is_nice([0, 0.2, 0.4, 0.6, 0.8, 1])
    assert _is_nice([-6, -4, -2, 0, 2, 4, 6])
    assert _is_nice([0, 50, 100, 150])
    assert not _is_nice(
        [-0.017, 0.23, 0.48, 0.73]
    )  # the page's old ticks: four equal parts of the data range
    assert not _is_nice([0, 0.3, 0.6, 0.9])
    assert not _is_nice([0, 0.30000000000000004])


def test_playground_formulas_are_typeset_by_katex(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    info = page.locator("#info")
    assert info.locator("#info-formula .katex").count() == 1
    assert info.locator("#info-derivative .katex").count() == 1
    assert "\\frac" not in info.inner_text()
    assert "\\sigma" not in info.inner_text()
    page.select_option("select[name=activation]", "relu")
    _wait_plot(page, "d.activation === 'relu'")
    assert info.locator("#info-derivative .katex").count() == 1
    assert "\\begin{cases}" not in info.inner_text()
    # KaTeX's own fonts, served from static/vendor/katex/fonts, are what the formulas are set in.
    page.wait_for_function("document.fonts.status === 'loaded'")
    families = page.evaluate("[...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)")
    assert "KaTeX_Main" in families
    assert "KaTeX_Math" in families
    assert [f for f in visit.failed if "/static/" in f] == []
    visit.shot("playground-formulas", selector="#info")


@pytest.mark.parametrize(
    ("url", "activation"),
    [("", "sigmoid"), ("?fn=exponential&x=-3,7", "exponential"), ("?fn=tanh&x=-0.37,2.9&d2=1", "tanh")],
)
def test_playground_tick_labels_are_round_numbers(
    visit: Visit, server: str, url: str, activation: str
) -> None:
    page = visit.page
    page.goto(f"{server}/{url}")
    _wait_plot(page, f"d.activation === '{activation}'")
    for axis in ("xticks", "yticks"):
        ticks = _json(page, axis)
        assert len(ticks) >= 3, (axis, ticks)
        assert _is_nice(ticks), (axis, ticks)
        labels = _json(page, axis.replace("ticks", "tickLabels"))
        assert [float(s.replace("\u2212", "-")) for s in labels] == ticks
    x = _json(page, "xticks")
    lo, hi = (float(page.input_value(f"input[name={n}]")) for n in ("xmin", "xmax"))
    assert lo <= x[0] < lo + (x[1] - x[0])
    assert hi - (x[1] - x[0]) < x[-1] <= hi


def test_playground_legend_lists_only_the_curves_drawn(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    assert _legend(page) == ["f(x)", "f\u2032(x)"]
    page.check("input[name=second]")
    _wait_plot(page, "d.curves === '3'")
    assert _legend(page) == ["f(x)", "f\u2032(x)", "f\u2033(x)"]
    page.uncheck("input[name=second]")
    _wait_plot(page, "d.curves === '2'")
    assert _legend(page) == ["f(x)", "f\u2032(x)"]
    page.select_option("select[name=activation]", "relu")
    _wait_plot(page, "d.activation === 'relu'")
    legend = _legend(page)
    assert legend[:2] == ["f(x)", "f\u2032(x)"]
    assert any("kink" in item for item in legend[2:])
    assert any("one-sided" in item for item in legend[2:])


def test_playground_marks_the_kinks_on_the_derivative(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    assert _json(page, "kinks") == []  # sigmoid is smooth
    page.select_option("select[name=activation]", "relu")
    _wait_plot(page, "d.activation === 'relu'")
    # A closed dot where the service answers (relu'(0) = 0), open dots at the one-sided limits 0 and 1.
    assert _json(page, "kinks") == [{"activation": "relu", "x": 0, "value": 0, "left": 0, "right": 1}]
    pixels = page.evaluate(
        """() => { const c = document.getElementById('plot'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i]-224) < 40 && Math.abs(d[i+1]-118) < 40 && Math.abs(d[i+2]-26) < 40) n++;
        return n; }"""
    )
    assert pixels > 300
    visit.shot("playground-relu-kink")

    page.select_option("select[name=activation]", "leaky_relu")
    _wait_plot(page, "d.activation === 'leaky_relu'")
    assert _json(page, "kinks") == [
        {"activation": "leaky_relu", "x": 0, "value": 0.01, "left": 0.01, "right": 1}
    ]
    page.fill("input[name=negative_slope]", "0.3")
    _wait_plot(page, "JSON.parse(d.params).negative_slope === 0.3")
    [kink] = _json(page, "kinks")
    assert (kink["x"], kink["value"], kink["left"], kink["right"]) == (0, 0.3, 0.3, 1)
    dydx = httpx.post(
        f"{server}/derivative",
        json={"activation": "leaky_relu", "x": [0.0], "params": {"negative_slope": 0.3}},
    ).json()["dydx"]
    assert dydx == [kink["value"]]

    # A kink at a parameter's value, negated: softshrink's at -lambda and lambda.
    page.select_option("select[name=activation]", "softshrink")
    _wait_plot(page, "d.activation === 'softshrink'")
    page.fill("input[name=lambda]", "2")
    _wait_plot(page, "JSON.parse(d.params).lambda === 2")
    kinks = _json(page, "kinks")
    assert [(k["x"], k["value"], k["left"], k["right"]) for k in kinks] == [(-2, 0, 1, 0), (2, 0, 0, 1)]

    # Only the kinks inside the x range are marked.
    page.fill("input[name=xmin]", "2.5")
    _wait_plot(page, "JSON.parse(d.xticks)[0] >= 2.5")
    assert _json(page, "kinks") == []


def test_playground_arrow_keys_move_the_readout_along_the_grid(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    readout = page.get_by_test_id("readout")
    page.focus("#plot")
    page.wait_for_function("document.querySelector('[data-testid=readout]').dataset.x !== undefined")
    x0 = float(readout.get_attribute("data-x") or "nan")
    step = 12 / 400
    page.keyboard.press("ArrowRight")
    x1 = float(readout.get_attribute("data-x") or "nan")
    assert x1 == pytest.approx(x0 + step, abs=1e-12)
    page.keyboard.press("Shift+ArrowRight")
    x2 = float(readout.get_attribute("data-x") or "nan")
    assert x2 == pytest.approx(x1 + 10 * step, abs=1e-12)
    page.keyboard.press("ArrowLeft")
    x3 = float(readout.get_attribute("data-x") or "nan")
    assert x3 == pytest.approx(x2 - step, abs=1e-12)
    body = {"activation": "sigmoid", "x": [x3]}
    y = httpx.post(f"{server}/activate", json=body).json()["y"][0]
    dydx = httpx.post(f"{server}/derivative", json=body).json()["dydx"][0]
    assert (
        float(readout.get_attribute("data-y") or "nan"),
        float(readout.get_attribute("data-dydx") or "nan"),
    ) == (
        y,
        dydx,
    )
    # With f'' drawn the readout gives it too, from the service.
    page.check("input[name=second]")
    _wait_plot(page, "d.curves === '3'")
    page.wait_for_function("document.querySelector('[data-testid=readout]').dataset.d2ydx2 !== undefined")
    d2 = httpx.post(f"{server}/derivative", json={**body, "order": 2}).json()["d2ydx2"][0]
    assert float(readout.get_attribute("data-d2ydx2") or "nan") == d2
    assert float(readout.get_attribute("data-x") or "nan") == x3
    assert "f\u2033(x)" in readout.inner_text()
    # The keys stay on the grid's ends.
    page.focus("#plot")
    page.keyboard.press("End")
    page.keyboard.press("ArrowRight")
    assert float(readout.get_attribute("data-x") or "nan") == 6


def test_playground_readout_follows_what_is_drawn(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    readout = page.get_by_test_id("readout")
    assert readout.get_attribute("data-y") is None
    _hover_readout(page, 0.3)
    assert readout.get_attribute("data-y") is not None
    # Another function: the sigmoid numbers go, nothing stale is left.
    page.select_option("select[name=activation]", "leaky_relu")
    _wait_plot(page, "d.activation === 'leaky_relu'")
    assert readout.get_attribute("data-x") is None
    assert readout.get_attribute("data-y") is None
    assert "sigmoid" not in readout.inner_text()
    assert "f(x) =" not in readout.inner_text()
    # A parameter changes: the readout is worked out again at the same x.
    point = _hover_readout(page, 0.3)
    assert point["dydx"] == 0.01
    page.fill("input[name=negative_slope]", "0.5")
    _wait_plot(page, "JSON.parse(d.params).negative_slope === 0.5")
    page.wait_for_function("document.querySelector('[data-testid=readout]').dataset.dydx === '0.5'")
    assert float(readout.get_attribute("data-x") or "nan") == point["x"]
    assert float(readout.get_attribute("data-y") or "nan") == pytest.approx(0.5 * point["x"], rel=1e-12)
    # The range changes: the readout stays at that x (now a point of the new grid) with new numbers.
    page.fill("input[name=xmin]", "-4")
    _wait_plot(page, "JSON.parse(d.xticks)[0] === -4")
    x = float(readout.get_attribute("data-x") or "nan")
    assert x == pytest.approx(point["x"], abs=8 / 400)
    y = httpx.post(
        f"{server}/activate", json={"activation": "leaky_relu", "x": [x], "params": {"negative_slope": 0.5}}
    ).json()["y"][0]
    assert float(readout.get_attribute("data-y") or "nan") == y


def test_playground_says_when_the_range_is_reversed_and_keeps_the_plot(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    status = page.locator("#status")
    before = _canvas_pixels(page)["url"]
    page.fill("input[name=xmin]", "7")
    status.filter(has_text="x from must be below to").wait_for()
    page.wait_for_timeout(300)
    assert _canvas_pixels(page)["url"] == before
    assert _json(page, "xticks")[0] == -6
    page.fill("input[name=xmin]", "6")  # an empty range: the same message
    status.filter(has_text="x from must be below to").wait_for()
    page.fill("input[name=xmin]", "")
    status.filter(has_text="must be numbers").wait_for()
    page.fill("input[name=xmin]", "-2")
    _wait_plot(page, "JSON.parse(d.xticks)[0] === -2")
    assert status.inner_text() == ""
    assert "x=-2,6" in page.url


def test_playground_says_second_derivatives_are_for_elementwise_functions(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    status = page.locator("#status")
    page.check("input[name=second]")
    _wait_plot(page, "d.curves === '3'")
    assert status.inner_text() == ""
    page.select_option("select[name=activation]", "softmax")
    status.filter(has_text="elementwise functions only").wait_for()
    assert "softmax is a vector function" in status.inner_text()
    page.uncheck("input[name=second]")
    page.wait_for_function("document.getElementById('status').textContent === ''")
    page.check("input[name=second]")
    status.filter(has_text="elementwise functions only").wait_for()
    page.select_option("select[name=activation]", "tanh")
    _wait_plot(page, "d.activation === 'tanh' && d.curves === '3'")
    assert status.inner_text() == ""


PALETTE = [(31, 111, 209), (201, 42, 42), (43, 138, 62), (112, 72, 232)]


def _colour_counts(page: Page) -> list[int]:
    return list(
        page.evaluate(
            """(palette) => { const c = document.getElementById('plot'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return palette.map(([r, g, b]) => { let n = 0; for (let i = 0; i < d.length; i += 4)
              if (Math.abs(d[i]-r) < 30 && Math.abs(d[i+1]-g) < 30 && Math.abs(d[i+2]-b) < 30) n++; return n; }); }""",
            PALETTE,
        )
    )


def test_playground_compares_functions_on_one_scale(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    page.check("input[name=compare]")
    page.select_option("#compare-add", "relu")
    page.select_option("#compare-add", "tanh")
    _wait_plot(page, "d.mode === 'compare' && d.curves === '3'")
    assert _json(page, "drawn") == ["sigmoid", "relu", "tanh"]
    assert _legend(page) == ["f(x): sigmoid", "f(x): relu", "f(x): tanh"]
    counts = _colour_counts(page)
    assert all(n > 200 for n in counts[:3]), counts
    assert "cmp=relu,tanh" in page.url
    assert "cmode=f" in page.url
    # The readout gives every compared function's value, from the service.
    _hover_readout(page, 0.7)
    values = json.loads(page.get_by_test_id("readout").get_attribute("data-values") or "{}")
    x = float(page.get_by_test_id("readout").get_attribute("data-x") or "nan")
    for name in ("sigmoid", "relu", "tanh"):
        assert (
            values[name]
            == httpx.post(f"{server}/activate", json={"activation": name, "x": [x]}).json()["y"][0]
        )
    visit.shot("playground-compare")
    # f' instead of f, a fourth function, then at most four.
    page.check("input[name=cmode][value=df]")
    page.select_option("#compare-add", "gelu")
    _wait_plot(page, "d.mode === 'compare' && d.curves === '4' && JSON.parse(d.drawn)[3] === 'gelu'")
    page.wait_for_function("document.querySelector('#legend li').textContent.startsWith('f\u2032')")
    assert _legend(page)[:4] == [
        "f\u2032(x): sigmoid",
        "f\u2032(x): relu",
        "f\u2032(x): tanh",
        "f\u2032(x): gelu",
    ]
    assert page.locator("#compare-add").is_disabled()
    assert [k["activation"] for k in _json(page, "kinks")] == ["relu"]  # relu's kink on its f'
    visit.shot("playground-compare-derivatives")
    page.click("#compare-list li[data-name=relu] button")
    _wait_plot(page, "d.curves === '3'")
    assert _json(page, "drawn") == ["sigmoid", "tanh", "gelu"]
    page.uncheck("input[name=compare]")
    _wait_plot(page, "d.mode === 'single'")
    assert _legend(page) == ["f(x)", "f\u2032(x)"]


def _bars(page: Page, activation: str) -> list[float]:
    return list(
        json.loads(
            page.locator(f"figure.bars[data-activation={activation}]").get_attribute("data-values") or "[]"
        )
    )


def test_softmax_view_shows_probabilities_as_bars(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    page.click("#tab-softmax")
    page.locator("figure.bars[data-activation=sparsemax]").wait_for()
    assert page.input_value("select[name=activation]") == "softmax"
    assert page.locator("#sm-intro").inner_text().startswith("softmax turns four logits")
    assert not page.locator("#plot").is_visible()
    catalog = [e["name"] for e in httpx.get(f"{server}/activations").json()["activations"]]
    shown = page.locator("figure.bars").evaluate_all("els => els.map(e => e.dataset.activation)")
    # every entmax the catalog has, in its order
    assert shown == ["softmax", "sparsemax", *[n for n in catalog if "entmax" in n]]
    assert "entmax15" in shown

    def check(logits: list[float], temperature: float) -> None:
        for name, params in (("softmax", {"temperature": temperature}), ("sparsemax", {})):
            bars = _bars(page, name)
            assert math.fsum(bars) == pytest.approx(1, abs=1e-12)
            answer = httpx.post(
                f"{server}/activate", json={"activation": name, "x": logits, "params": params}
            )
            assert bars == answer.json()["y"], name

    check([1.5, 1, 0.2, -1], 1)
    before = _bars(page, "softmax")
    page.focus("input[name=z4]")
    for _ in range(30):
        page.keyboard.press("ArrowRight")  # z4 from -1 to 2
    page.wait_for_function(
        "document.querySelector('figure.bars[data-activation=softmax]').dataset.x === '[1.5,1,0.2,2]'"
    )
    after = _bars(page, "softmax")
    assert after != before
    assert after[3] > before[3]
    check([1.5, 1, 0.2, 2], 1)
    assert "z=1.5,1,0.2,2" in page.url
    # The temperature: lower sharpens softmax.
    page.fill("input[name=temperature]", "50")  # 10 ** (50 / 100 - 1)
    page.wait_for_function(
        "JSON.parse(document.querySelector('figure.bars[data-activation=softmax]').dataset.params).temperature === 0.32"
    )
    check([1.5, 1, 0.2, 2], 0.32)
    assert max(_bars(page, "softmax")) > max(after)
    assert "T=0.32" in page.url
    visit.shot("softmax")
    # glu: half its input gated by the other half.
    page.select_option("select[name=activation]", "glu")
    page.locator("figure.bars[data-activation=glu]").wait_for()
    assert "halves its input" in page.locator("#sm-intro").inner_text()
    glu = httpx.post(f"{server}/activate", json={"activation": "glu", "x": [1.5, 1, 0.2, 2]}).json()["y"]
    assert _bars(page, "glu") == glu
    assert len(glu) == 2
    visit.shot("softmax-glu")
    # Back to the plot: an elementwise function again.
    page.click("#tab-plot")
    _wait_plot(page, "d.activation === 'sigmoid'")
    assert page.locator("#plot").is_visible()


def test_playground_state_is_in_the_url(visit: Visit, server: str) -> None:
    page = visit.page
    page.goto(f"{server}/?fn=leaky_relu&p.negative_slope=0.2&x=-3,3&d2=1")
    _wait_plot(page, "d.activation === 'leaky_relu'")
    assert page.input_value("input[name=negative_slope]") == "0.2"
    assert (page.input_value("input[name=xmin]"), page.input_value("input[name=xmax]")) == ("-3", "3")
    assert page.is_checked("input[name=second]")
    assert json.loads(page.locator("#plot").get_attribute("data-params") or "{}") == {"negative_slope": 0.2}
    assert page.locator("#plot").get_attribute("data-curves") == "3"
    assert (_json(page, "xticks")[0], _json(page, "xticks")[-1]) == (-3, 3)
    # A change goes into the address at once.
    page.fill("input[name=xmax]", "4")
    page.wait_for_function("location.search.includes('x=-3,4')")
    page.uncheck("input[name=second]")
    page.wait_for_function("!location.search.includes('d2=')")
    page.select_option("select[name=activation]", "elu")
    page.wait_for_function(
        "location.search.includes('fn=elu') && !location.search.includes('negative_slope')"
    )

    page.goto(f"{server}/?fn=relu&cmp=tanh,gelu&cmode=df")
    _wait_plot(page, "d.mode === 'compare'")
    assert page.is_checked("input[name=compare]")
    assert page.is_checked("input[name=cmode][value=df]")
    assert _json(page, "drawn") == ["relu", "tanh", "gelu"]

    page.goto(f"{server}/?view=softmax&fn=sparsemax&z=3,2.5,-1,0&T=2")
    page.locator("figure.bars[data-activation=softmax]").wait_for()
    assert page.get_attribute("#tab-softmax", "aria-selected") == "true"
    assert [page.input_value(f"input[name=z{i}]") for i in range(1, 5)] == ["3", "2.5", "-1", "0"]
    assert (
        _bars(page, "sparsemax")
        == httpx.post(f"{server}/activate", json={"activation": "sparsemax", "x": [3, 2.5, -1, 0]}).json()[
            "y"
        ]
    )
    assert (
        json.loads(page.locator("figure.bars[data-activation=softmax]").get_attribute("data-params") or "")[
            "temperature"
        ]
        == 2
    )

    page.goto(f"{server}/?view=lab&lab.fn=tanh&lab.depth=12&lab.width=64&lab.init=xavier")
    page.locator("#panel-lab").wait_for()
    assert page.get_attribute("#tab-lab", "aria-selected") == "true"
    assert [page.input_value(f"[name=lab_{k}]") for k in ("activation", "depth", "width", "init")] == [
        "tanh",
        "12",
        "64",
        "xavier",
    ]
    page.select_option("select[name=lab_init]", "critical")
    page.wait_for_function("location.search.includes('lab.init=critical')")

    # What the address cannot hold is said, and the rest still applies.
    page.goto(f"{server}/?fn=nonsense&x=-2,2")
    _wait_plot(page, "d.activation === 'sigmoid'")
    assert "nonsense" in page.locator("#status").inner_text()
    assert _json(page, "xticks")[0] == -2


def test_playground_every_view_fits_a_phone_screen(browser: Browser, server: str) -> None:
    phone = Visit(browser, width=390)
    try:
        page = phone.page
        for name, url, ready in [
            ("phone-plot", "?fn=hard_silu&d2=1", "#profile[data-state=ready][data-activation=hard_silu]"),
            ("phone-compare", "?fn=relu&cmp=tanh,gelu,elu&cmode=df", "#plot[data-mode=compare]"),
            ("phone-softmax", "?view=softmax", "figure.bars[data-activation=sparsemax]"),
            ("phone-glu", "?view=softmax&fn=glu", "figure.bars[data-activation=glu]"),
            ("phone-lab", "?view=lab", "#lab-plot[data-state=ready]"),
        ]:
            page.goto(f"{server}/{url}")
            page.locator(ready).wait_for()
            page.wait_for_timeout(200)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
            phone.shot(name)
    finally:
        phone.close()


def test_profile_card_shows_moments_gain_and_the_critical_weight_scale(visit: Visit, server: str) -> None:
    page = _open_playground(visit, server)
    page.select_option("select[name=activation]", "relu")
    page.wait_for_function(
        "(() => { const d = document.getElementById('profile').dataset; return d.state === 'ready' && d.activation === 'relu'; })()"
    )
    shown = _json(page, "profile", "#profile")
    body = {"activation": "relu", "params": {}, "mean": 0, "std": 1, "sigma_w": 1, "sigma_b": 0}
    assert shown == httpx.post(f"{server}/profile", json=body).json()
    card = page.locator("#profile").inner_text()
    assert "50.0 %" in card  # relu' = 0 for half of N(0, 1)
    assert "1.414" in card  # its gain, torch's, and the critical sigma_w: all sqrt(2)
    assert "calculate_gain" in card
    assert "hidden layers" in card
    visit.shot("profile-card", selector="#profile")
    # A parameter goes to the profile too.
    page.select_option("select[name=activation]", "leaky_relu")
    page.fill("input[name=negative_slope]", "0.5")
    page.wait_for_function(
        "(() => { const d = document.getElementById('profile').dataset; return d.state === 'ready' && "
        "d.activation === 'leaky_relu' && JSON.parse(d.profile).params.negative_slope === 0.5; })()"
    )
    assert "0.0 %" in page.locator("#profile").inner_text()  # no dead units with a slope on the left
    # "Which function where": the catalog's other choices, one click away.
    page.locator("#profile details.guide summary").click()
    page.click("#profile button.link[data-fn=gelu]")
    _wait_plot(page, "d.activation === 'gelu'")


def test_depth_lab_shows_vanishing_gradients_and_dead_units(visit: Visit, server: str) -> None:
    page = visit.page
    page.goto(f"{server}/?view=lab&lab.fn=sigmoid&lab.depth=30")
    ready = "(() => {{ const d = document.getElementById('lab-plot').dataset; return d.state === 'ready' && d.activation === '{}'; }})()"
    page.wait_for_function(ready.format("sigmoid"), timeout=60_000)
    gradient = _json(page, "gradientRms", "#lab-plot")
    body = {
        "activation": "sigmoid",
        "params": {},
        "width": 128,
        "depth": 30,
        "batch": 64,
        "init": "he",
        "seed": 0,
    }
    answer = httpx.post(f"{server}/simulate", json=body, timeout=60).json()
    assert gradient == [layer["gradient_rms"] for layer in answer["layers"]]
    assert len(gradient) == 30
    assert gradient[-1] / gradient[0] > 1e6  # sigmoid' <= 1/4: the gradient vanishes on its way back
    assert _json(page, "meanFieldGradientRms", "#lab-plot") == answer["mean_field"]["gradient_rms"]
    assert "shrinks by a factor of about 10" in page.locator("#lab-summary").inner_text()
    legend = _legend(page, "#lab-legend")
    assert any("simulated" in item for item in legend)
    assert any("mean field" in item for item in legend)
    visit.shot("depth-lab-sigmoid")
    # The README's picture of the lab (service/static/playground-lab.png is a copy).
    assert visit.shot("readme-lab", full_page=False).stat().st_size <= 150_000
    page.select_option("select[name=lab_activation]", "relu")
    page.wait_for_function(ready.format("relu"), timeout=60_000)
    dead = _json(page, "dead", "#lab-plot")
    assert len(dead) == 30
    assert all(0.4 < d < 0.6 for d in dead), dead  # relu' = 0 for about half the units
    visit.shot("depth-lab-relu")
    # The address holds the lab's settings: the same page again shows the same network.
    page.goto(page.url)
    page.wait_for_function(ready.format("relu"), timeout=60_000)
    assert _json(page, "dead", "#lab-plot") == dead
    # The widest and deepest network the lab offers: a smaller batch keeps it within the service's bounds.
    page.select_option("select[name=lab_width]", "512")
    page.fill("input[name=lab_depth]", "100")
    page.wait_for_function(
        "(() => { const d = document.getElementById('lab-plot').dataset; return d.state === 'ready' && d.depth === '100'; })()",
        timeout=60_000,
    )
    assert "width 512, batch 20" in page.locator("#lab-summary").inner_text()
    assert page.locator("#status").inner_text() == ""
