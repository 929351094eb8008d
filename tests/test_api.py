"""The HTTP contract, through httpx.AsyncClient over ASGITransport."""

from __future__ import annotations

import math
from typing import Any

import httpx
import mpmath as mp
import numpy as np
import pytest

from service import activations
from service.codec import MAX_DEPTH
from tests import reference


def assert_problem(response: httpx.Response, status: int, field: str, *words: str) -> None:
    """The one error shape: status, problem+json, the field named, the reason given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert [e["field"] for e in body["errors"]] == [field]
    reason = body["errors"][0]["reason"]
    for word in words:
        assert word in reason, reason
    assert field in body["detail"]
    assert reason in body["detail"]
    assert "Traceback" not in response.text
    assert "/service/" not in response.text


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body)


# -- /activate ---------------------------------------------------------------------------


async def test_activate_leaky_relu_contract_example(client: httpx.AsyncClient) -> None:
    body = {"activation": "leaky_relu", "x": [[-2, 0], [1, 3]], "params": {"negative_slope": 0.1}, "axis": -1}
    r = await post(client, "/activate", body)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "activation": "leaky_relu",
        "params": {"negative_slope": 0.1},
        "dtype": "float64",
        "shape": [2, 2],
        "y": [[-0.2, 0.0], [1.0, 3.0]],
    }


async def test_activate_softmax_of_one_two_three(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "softmax", "x": [1, 2, 3]})
    assert r.status_code == 200
    body = r.json()
    assert body["axis"] == 0
    assert body["shape"] == [3]
    expected = [float(v) for v in reference.softmax([1.0, 2.0, 3.0])]
    assert body["y"] == pytest.approx(expected, rel=1e-15)
    assert [round(v, 8) for v in body["y"]] == [0.09003057, 0.24472847, 0.66524096]


async def test_activate_fills_in_default_params(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "leaky_relu", "x": [-1]})
    assert r.status_code == 200
    assert r.json()["params"] == {"negative_slope": 0.01}
    assert r.json()["y"] == [-0.01]


async def test_activate_scalar_returns_scalar(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "sigmoid", "x": 0})
    assert r.status_code == 200
    assert r.json()["shape"] == []
    assert r.json()["y"] == 0.5


async def test_activate_accepts_an_alias_and_answers_the_canonical_name(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "heaviside", "x": [-1, 0, 1]})
    assert r.status_code == 200
    assert r.json()["activation"] == "step"
    assert r.json()["y"] == [0.0, 0.0, 1.0]


async def test_activate_three_dimensional_input_keeps_shape(client: httpx.AsyncClient) -> None:
    x = [[[1, -1], [2, -2]], [[3, -3], [4, -4]], [[5, -5], [6, -6]]]
    r = await post(client, "/activate", {"activation": "relu", "x": x})
    assert r.status_code == 200
    assert r.json()["shape"] == [3, 2, 2]
    assert r.json()["y"][2][1] == [6.0, 0.0]


async def test_activate_softmax_along_axis_zero(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "softmax", "x": [[1, 5], [1, 3]], "axis": 0})
    assert r.status_code == 200
    y = r.json()["y"]
    assert y[0][0] == y[1][0] == 0.5
    assert y[0][1] + y[1][1] == pytest.approx(1.0)


@pytest.mark.parametrize("entry", list(activations.entries()), ids=lambda e: e.name)
async def test_activate_every_registered_example(
    client: httpx.AsyncClient, entry: activations.Activation
) -> None:
    for example in entry.examples:
        x = list(example.x) if isinstance(example.x, tuple) else example.x
        r = await post(
            client, "/activate", {"activation": entry.name, "x": x, "params": dict(example.params)}
        )
        assert r.status_code == 200, r.text
        assert r.json()["y"] == pytest.approx(example.y, rel=1e-15)
        # and a zero's sign (an exact 0 is +0; a negative result too small for float64 is -0)
        got, want = np.asarray(r.json()["y"], np.float64), np.asarray(example.y, np.float64)
        assert np.array_equal(np.signbit(got[got == 0]), np.signbit(want[got == 0]))


# -- /derivative ---------------------------------------------------------------------------


async def test_derivative_of_sigmoid_at_zero_is_a_quarter(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "sigmoid", "x": [0]})
    assert r.status_code == 200
    assert r.json()["dydx"] == [0.25]
    assert "grad_x" not in r.json()


async def test_derivative_keeps_the_sigmoid_tail(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "sigmoid", "x": [40]})
    exact = float(reference.ELEMENTWISE["sigmoid"].d1(mp.mpf(40)))
    assert r.json()["dydx"][0] == pytest.approx(exact, rel=1e-15)


async def test_derivative_softmax_returns_the_jacobian(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "softmax", "x": [[1, 2, 3], [0, 0, 0]]})
    assert r.status_code == 200
    body = r.json()
    assert body["shape"] == [2, 3, 3]
    s = [float(v) for v in reference.softmax([1.0, 2.0, 3.0])]
    assert body["dydx"][0][0][1] == pytest.approx(-s[0] * s[1], rel=1e-15)
    assert body["dydx"][1][2][2] == pytest.approx(1 / 3 * 2 / 3, rel=1e-15)


async def test_derivative_with_grad_returns_the_vector_jacobian_product(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "softmax", "x": [40, 0], "grad": [1, 0]})
    assert r.status_code == 200
    body = r.json()
    assert "dydx" not in body
    assert body["shape"] == [2]
    exact = [float(v) for v in reference.softmax_vjp([40.0, 0.0], [1.0, 0.0])]
    assert body["grad_x"] == pytest.approx(exact, rel=1e-15)
    assert body["grad_x"][0] > 0


async def test_derivative_with_grad_for_elementwise_multiplies(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "relu", "x": [[-1, 2]], "grad": [[5, 7]]})
    assert r.status_code == 200
    assert r.json()["grad_x"] == [[0.0, 7.0]]


async def test_derivative_of_leaky_relu_at_zero_is_the_slope(client: httpx.AsyncClient) -> None:
    r = await post(
        client, "/derivative", {"activation": "leaky_relu", "x": [0], "params": {"negative_slope": 0.3}}
    )
    assert r.json()["dydx"] == [0.3]


# -- /activations ----------------------------------------------------------------------


async def test_catalog_lists_every_activation_with_its_fields(client: httpx.AsyncClient) -> None:
    r = await client.get("/activations")
    assert r.status_code == 200
    items = r.json()["activations"]
    assert [a["name"] for a in items] == activations.names()
    for item in items:
        for key in (
            "name",
            "kind",
            "aliases",
            "params",
            "formula",
            "derivative_formula",
            "range",
            "kinks",
            "typical_use",
            "reference",
        ):
            assert key in item
    leaky = next(a for a in items if a["name"] == "leaky_relu")
    assert leaky["params"][0] | {"description": ""} == {
        "name": "negative_slope",
        "default": 0.01,
        "minimum": 0.0,
        "maximum": 1.0,
        "exclusive_minimum": False,
        "choices": [],
        "integer": False,
        "length": None,
        "channels": False,
        "description": "",
    }
    swiglu = next(a for a in items if a["name"] == "swiglu")
    assert [(p["name"], p["default"], p["choices"]) for p in swiglu["params"]] == [
        ("gate_half", 2.0, [1.0, 2.0])
    ]
    assert leaky["kinks"][0]["at"] == 0.0
    assert leaky["kinks"][0]["derivative"] == "negative_slope"


async def test_catalog_filters_by_typical_use(client: httpx.AsyncClient) -> None:
    r = await client.get("/activations", params={"use": "hidden"})
    assert r.status_code == 200
    names = {a["name"] for a in r.json()["activations"]}
    expected = {e.name for e in activations.entries() if "hidden" in e.typical_use}
    assert names == expected
    assert "relu" in names
    assert "softmax" not in names


async def test_catalog_unknown_use_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/activations", params={"use": "everything"}), 422, "use", "hidden")


async def test_catalog_entry_by_alias(client: httpx.AsyncClient) -> None:
    r = await client.get("/activations/logistic")
    assert r.status_code == 200
    assert r.json()["name"] == "sigmoid"
    assert any("0.25" in note for note in r.json()["notes"])


async def test_catalog_unknown_entry_returns_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/activations/rleu"), 404, "activation", "rleu", "relu")


# -- health -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_answer_ok(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


# -- error paths: each names the field and the reason ---------------------------------------


async def test_activate_unknown_activation_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "rleu", "x": [1]})
    assert_problem(r, 422, "activation", "unknown activation 'rleu'", "relu", "leaky_relu")


async def test_activate_missing_activation_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"x": [1]}), 422, "activation", "required")


async def test_activate_missing_x_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "relu"}), 422, "x", "required")


async def test_activate_string_in_x_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [[1, 2], [3, "4"]]})
    assert_problem(r, 422, "x[1][1]", "string")


async def test_activate_boolean_in_x_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(
        await post(client, "/activate", {"activation": "relu", "x": [1, True]}), 422, "x[1]", "boolean"
    )


async def test_activate_boolean_x_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "relu", "x": False}), 422, "x", "boolean")


async def test_activate_null_in_x_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "relu", "x": [None]}), 422, "x[0]", "null")


async def test_activate_object_x_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "relu", "x": {"a": 1}}), 422, "x", "object")


async def test_activate_ragged_x_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [[1, 2], [3]]})
    assert_problem(r, 422, "x[1]", "rectangular")


async def test_activate_list_beside_number_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [1, [2]]})
    assert_problem(r, 422, "x[1]", "rectangular")


async def test_activate_empty_x_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "relu", "x": []}), 422, "x", "empty")


async def test_activate_empty_row_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "relu", "x": [[]]}), 422, "x[0]", "empty")


async def test_activate_too_deep_nesting_returns_422(client: httpx.AsyncClient) -> None:
    x: Any = 1.0
    for _ in range(40):
        x = [x]
    assert_problem(
        await post(client, "/activate", {"activation": "relu", "x": x}),
        422,
        "x" + "[0]" * MAX_DEPTH,
        "nested",
    )


async def test_activate_accepts_the_deepest_nesting_the_document_describes(client: httpx.AsyncClient) -> None:
    x: Any = [-1.0, 2.0]
    for _ in range(MAX_DEPTH - 1):
        x = [x]
    r = await post(client, "/activate", {"activation": "relu", "x": x})
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == [1] * (MAX_DEPTH - 1) + [2]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
async def test_activate_non_finite_number_returns_422(client: httpx.AsyncClient, literal: str) -> None:
    body = f'{{"activation": "relu", "x": [[0, 1], [2, {literal}]]}}'
    r = await client.post("/activate", content=body, headers={"content-type": "application/json"})
    assert_problem(r, 422, "x[1][1]", "finite")


async def test_activate_huge_integer_returns_422(client: httpx.AsyncClient) -> None:
    body = '{"activation": "relu", "x": [1, %s]}' % ("9" * 400)
    r = await client.post("/activate", content=body, headers={"content-type": "application/json"})
    assert_problem(r, 422, "x[1]", "finite")


async def test_activate_unknown_param_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "leaky_relu", "x": [1], "params": {"alpha": 0.2}})
    assert_problem(r, 422, "params.alpha", "unknown parameter", "negative_slope")


async def test_activate_param_for_function_without_params_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [1], "params": {"negative_slope": 0.2}})
    assert_problem(r, 422, "params.negative_slope", "unknown parameter", "none")


async def test_activate_out_of_bounds_param_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(
        client, "/activate", {"activation": "leaky_relu", "x": [1], "params": {"negative_slope": -1}}
    )
    assert_problem(r, 422, "params.negative_slope", "at least 0")


async def test_activate_boolean_param_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(
        client, "/activate", {"activation": "leaky_relu", "x": [1], "params": {"negative_slope": True}}
    )
    assert_problem(r, 422, "params.negative_slope", "number", "not a boolean")


async def test_activate_string_param_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(
        client, "/activate", {"activation": "leaky_relu", "x": [1], "params": {"negative_slope": "0.1"}}
    )
    assert_problem(r, 422, "params.negative_slope", "number", "not a string", "without quotes")


async def test_activate_axis_out_of_range_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "softmax", "x": [[1, 2]], "axis": 2})
    assert_problem(r, 422, "axis", "out of range")


async def test_activate_non_integer_axis_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "softmax", "x": [1, 2], "axis": 0.5})
    assert_problem(r, 422, "axis", "integer")


async def test_activate_softmax_of_a_number_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "softmax", "x": 3}), 422, "x", "axis")


async def test_activate_unknown_field_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [1], "inputs": [1]})
    assert_problem(r, 422, "inputs", "not a known field", "activation, x, params, axis")


async def test_activate_grad_is_unknown_field_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [1], "grad": [1]})
    assert_problem(r, 422, "grad", "not a known field")


async def test_activate_malformed_json_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/activate", content=b'{"activation": "relu", "x": [1,', headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "body", "not valid JSON", "line 1")


async def test_activate_empty_body_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate", content=b"", headers={"content-type": "application/json"})
    assert_problem(r, 400, "body", "empty")


async def test_activate_json_array_body_returns_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert_problem(r, 422, "body", "JSON object")


async def test_activate_wrong_content_type_returns_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/activate", content=b"activation=relu", headers={"content-type": "text/plain"})
    assert_problem(r, 415, "content-type", "text/plain", "application/json")


async def test_activate_wrong_method_returns_405(client: httpx.AsyncClient) -> None:
    r = await client.get("/activate")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.headers["content-type"] == "application/problem+json"


async def test_unknown_path_returns_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/activatee")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_derivative_grad_of_wrong_shape_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "tanh", "x": [[1, 2]], "grad": [1, 2]})
    assert_problem(r, 422, "grad", "shape [2]", "[1, 2]")


async def test_derivative_null_grad_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "tanh", "x": [1], "grad": None})
    assert_problem(r, 422, "grad", "null")


async def test_derivative_non_finite_grad_returns_422(client: httpx.AsyncClient) -> None:
    body = '{"activation": "tanh", "x": [1, 2], "grad": [1, NaN]}'
    r = await client.post("/derivative", content=body, headers={"content-type": "application/json"})
    assert_problem(r, 422, "grad[1]", "finite")


async def test_responses_never_contain_non_finite_numbers(client: httpx.AsyncClient) -> None:
    extremes = [-1.7976931348623157e308, -1000, -1, -5e-324, 0, 5e-324, 1000, 1.7976931348623157e308]
    for entry in activations.entries():
        for path in ("/activate", "/derivative"):
            r = await post(client, path, {"activation": entry.name, "x": extremes})
            if r.status_code == 422:  # only a true result beyond float64 may be refused
                assert "too large for float64" in r.json()["detail"], (entry.name, r.text)
                continue
            assert r.status_code == 200, r.text
            values = r.json().get("y", r.json().get("dydx"))
            flat = np.asarray(values, dtype=object).ravel()
            assert all(isinstance(v, float) and math.isfinite(v) for v in flat)


# -- dtype, order, wrt (the complete catalog) ---------------------------------------------------


async def test_activate_float32_writes_shortest_float32_decimals(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "sigmoid", "x": [0.1, 1.0, 10.0], "dtype": "float32"})
    assert r.status_code == 200
    body = r.json()
    assert body["dtype"] == "float32"
    exact = [reference.sig(mp.mpf(float(np.float32(v)))) for v in (0.1, 1.0, 10.0)]
    assert [np.float32(v) for v in body["y"]] == [np.float32(float(e)) for e in exact]
    # shortest round-trip decimals of float32, not of float64
    assert '"y":[0.5249792,0.7310586,0.9999546]' in r.text


async def test_activate_float32_out_of_range_input_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [1, 1e39], "dtype": "float32"})
    assert_problem(r, 422, "x[1]", "float32 range")


async def test_activate_float32_overflowing_result_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "exponential", "x": [1, 89], "dtype": "float32"})
    assert_problem(r, 422, "y[1]", "too large for float32")


async def test_activate_overflowing_result_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "exponential", "x": [[0, 1], [710, 2]]})
    assert_problem(r, 422, "y[1][0]", "too large for float64")


async def test_activate_unknown_dtype_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "relu", "x": [1], "dtype": "float8"})
    assert_problem(r, 422, "dtype", "float32")


async def test_derivative_order_two_returns_the_second_derivative(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "gelu", "x": [-1, 0, 1], "order": 2})
    assert r.status_code == 200
    body = r.json()
    assert "dydx" not in body
    assert body["shape"] == [3]
    exact = [float(reference.ELEMENTWISE["gelu"].d2(mp.mpf(v))) for v in (-1, 0, 1)]
    assert body["d2ydx2"] == pytest.approx(exact, rel=1e-15)


async def test_derivative_order_two_of_a_vector_function_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "softmax", "x": [1, 2], "order": 2})
    assert_problem(r, 422, "order", "elementwise")


async def test_derivative_order_two_with_grad_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "tanh", "x": [1], "grad": [1], "order": 2})
    assert_problem(r, 422, "grad", "first derivatives")


async def test_derivative_order_three_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(
        await post(client, "/derivative", {"activation": "tanh", "x": [1], "order": 3}), 422, "order", "1"
    )


async def test_derivative_wrt_params_returns_each_parameter_gradient(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "hard_tanh", "x": [-3, 0, 3], "wrt": "params"})
    assert r.status_code == 200
    assert r.json()["dydparams"] == {"min_val": [1.0, 0.0, 0.0], "max_val": [0.0, 0.0, 1.0]}
    assert r.json()["shape"] == [3]


async def test_derivative_wrt_params_with_grad_returns_scalars(client: httpx.AsyncClient) -> None:
    r = await post(
        client, "/derivative", {"activation": "elu", "x": [-2, -1, 1], "wrt": "params", "grad": [1, 2, 3]}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["shape"] == []
    exact = float(mp.expm1(-2) + 2 * mp.expm1(-1))
    assert body["grad_params"]["alpha"] == pytest.approx(exact, rel=1e-15)


async def test_derivative_wrt_params_without_params_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "relu", "x": [1], "wrt": "params"})
    assert_problem(r, 422, "wrt", "no parameters")


async def test_derivative_wrt_params_with_order_two_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "elu", "x": [1], "wrt": "params", "order": 2})
    assert_problem(r, 422, "order", "with respect to x")


async def test_derivative_glu_grad_has_the_output_shape(client: httpx.AsyncClient) -> None:
    r = await post(client, "/derivative", {"activation": "glu", "x": [[1, -2, 0, 2]], "grad": [[1, 1]]})
    assert r.status_code == 200
    assert r.json()["shape"] == [1, 4]
    bad = await post(
        client, "/derivative", {"activation": "glu", "x": [[1, -2, 0, 2]], "grad": [[1, 1, 1, 1]]}
    )
    assert_problem(bad, 422, "grad", "shape of y", "[1, 2]")


async def test_activate_glu_odd_length_returns_422(client: httpx.AsyncClient) -> None:
    assert_problem(await post(client, "/activate", {"activation": "glu", "x": [1, 2, 3]}), 422, "x", "odd")


async def test_activate_crossed_hard_tanh_bounds_returns_422(client: httpx.AsyncClient) -> None:
    r = await post(
        client, "/activate", {"activation": "hard_tanh", "x": [1], "params": {"min_val": 2, "max_val": 1}}
    )
    assert_problem(r, 422, "params.min_val", "less than max_val")


async def test_activate_log_softmax_keeps_the_winning_class(client: httpx.AsyncClient) -> None:
    r = await post(client, "/activate", {"activation": "log_softmax", "x": [40, 0]})
    assert r.status_code == 200
    assert r.json()["y"][0] == pytest.approx(float(reference.log_softmax([40.0, 0.0])[0]), rel=1e-15)
    assert r.json()["y"][0] < 0


@pytest.mark.parametrize("use", ["gating", "positive_output", "sparse_coding", "multiclass_output"])
async def test_catalog_every_use_tag_has_members(client: httpx.AsyncClient, use: str) -> None:
    r = await client.get("/activations", params={"use": use})
    assert r.status_code == 200
    assert r.json()["activations"], use
