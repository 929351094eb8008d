"""The numeric core, parametrized over the registry so every new entry is covered."""

from __future__ import annotations

import decimal
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from functools import partial
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service import activations
from service.activations import ActivationError, Kink, ResultOverflow, correct, exact, smooth, vector
from tests import accuracy, reference

ENTRIES = list(activations.entries())
ELEMENTWISE = [e for e in ENTRIES if e.kind == "elementwise"]
VECTOR = [e for e in ENTRIES if e.kind == "vector"]
ids = [e.name for e in ENTRIES]


def _param(entry: activations.Activation, value: float | str | None) -> float:
    """Resolve a kink field that names a parameter ("alpha", "-lambda", "1/alpha") at its default."""
    assert value is not None
    if not isinstance(value, str):
        return value
    params = entry.bind()
    if value.startswith("-"):
        return -params[value[1:]]
    if value.startswith("1/"):
        return 1.0 / params[value[2:]]
    if "[" in value:  # "numerator[1]", "2*numerator[2]": a number of an array parameter (times 2)
        factor, _, item = value.rpartition("*")
        name, index = item[:-1].split("[")
        return (float(factor) if factor else 1.0) * params[name][int(index)]
    if " - " in value:  # "beta - alpha_n": rounded once, as the service rounds it
        left, right = value.split(" - ")
        return float(Fraction(params[left]) - Fraction(params[right]))
    return params[value]


# -- the registry itself ---------------------------------------------------------------


def test_every_entry_has_a_reference_implementation() -> None:
    assert {e.name for e in ELEMENTWISE} == set(reference.ELEMENTWISE)
    assert {e.name for e in VECTOR} == set(reference.VECTOR)


def test_the_seven_classic_activations_are_registered() -> None:
    assert {"step", "identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"} <= set(
        activations.names()
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_entry_is_documented(entry: activations.Activation) -> None:
    assert entry.name.islower()
    assert " " not in entry.name
    assert entry.formula
    assert entry.derivative_formula
    assert entry.range
    assert entry.reference
    assert entry.typical_use
    assert entry.examples
    for p in entry.params:
        assert p.description
        p.coerce(p.default)  # the default lies within the bounds (and an array's length within its range)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_aliases_resolve_to_the_entry(entry: activations.Activation) -> None:
    for alias in (entry.name, *entry.aliases):
        assert activations.get(alias) is entry


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(activations.UnknownActivation) as info:
        activations.get("rleu")
    assert info.value.field == "activation"
    assert "relu" in info.value.reason
    assert "softmax" in info.value.reason


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(ActivationError, match="unknown parameter") as info:
        activations.get("relu").bind({"alpha": 1.0})
    assert info.value.field == "params.alpha"


@pytest.mark.parametrize("value", [-0.5, 1.5, float("nan"), float("inf")])
def test_out_of_bounds_parameter_is_refused(value: float) -> None:
    with pytest.raises(ActivationError) as info:
        activations.get("leaky_relu").bind({"negative_slope": value})
    assert info.value.field == "params.negative_slope"


# -- exact arithmetic ----------------------------------------------------------------------


def test_importing_the_core_leaves_the_decimal_context_alone() -> None:
    # A fresh interpreter, so that the import really runs the module-level constants.
    code = (
        "import decimal\n"
        "decimal.getcontext().prec = 17\n"
        "import service.activations\n"
        "assert decimal.getcontext().prec == 17, decimal.getcontext().prec\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_decimal_constants_need_no_particular_context() -> None:
    # The module-level constants computed at import under a caller's 5-digit context, in a fresh
    # interpreter: reloading service.activations.exact here would replace the state other modules
    # hold of it (its context variable: exact ties were then rounded through MPFR for the rest of
    # the run).
    digits = "0.70710678118654752440084436210484903928483593768847"
    code = (
        "import decimal\n"
        "decimal.getcontext().prec = 5\n"
        "from service.activations import exact, smooth\n"
        f"hi, lo = exact.dd_constant({digits!r})\n"
        "assert decimal.getcontext().prec == 5, decimal.getcontext().prec\n"
        "assert (hi, lo) == smooth.INV_SQRT2, ((hi, lo), smooth.INV_SQRT2)\n"
        "print(hi.hex(), lo.hex())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    hi, lo = (float.fromhex(v) for v in out)
    assert hi + lo == hi
    assert lo != 0.0
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        assert abs(decimal.Decimal(hi) + decimal.Decimal(lo) - decimal.Decimal(digits)) < decimal.Decimal(
            "1e-32"
        )
    assert (hi, lo) == smooth.INV_SQRT2


def _written_out_shift(x: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """vector._shift as it was before it called exact.two_sum (TwoSum spelled out)."""
    m = np.max(x, axis=-1, keepdims=True)
    if temperature == 1.0 and float(np.max(m - np.min(x, axis=-1, keepdims=True))) < 1e308:
        d = x - m
        v = d - x
        return d, (x - (d - v)) + (-m - v)
    with np.errstate(over="ignore", invalid="ignore"):
        d = x - m
        v = d - x
        r = (x - (d - v)) + (-m - v)
        hi = np.where(np.isfinite(d), d / temperature, (0.5 * x - 0.5 * m) / (0.5 * temperature))
        p, p_lo = exact.two_prod(hi, temperature)
        lo = (((d - p) - p_lo) + r) / temperature
    return hi, np.where(hi > -800.0, lo, 0.0)


def test_two_sum_in_vector_functions_is_bitwise_the_written_out_one() -> None:
    rng = np.random.default_rng(11)
    cases = [np.array([40.0, 0.0]), np.array([700.0, -700.0, 0.0, 1.0]), np.array([-1e308, 1e308, 3.0])]
    cases += [rng.standard_normal((7, 50)) * scale for scale in (1e-300, 1e-8, 1.0, 30.0, 1e5, 1e300)]
    for x in cases:
        a, b = x, rng.standard_normal(x.shape) * np.exp(rng.uniform(-30, 30, x.shape))
        s, e = exact.two_sum(a, b)
        v = s - a
        assert s.tobytes() == (a + b).tobytes()
        assert e.tobytes() == ((a - (s - v)) + (b - v)).tobytes()
        for temperature in (1.0, 0.7, 3.0):
            with np.errstate(over="ignore"):  # as the registry calls it: -1e308 - 1e308 overflows
                got = vector._shift(x, temperature)
                want = _written_out_shift(x, temperature)
            assert got[0].tobytes() == want[0].tobytes()
            assert got[1].tobytes() == want[1].tobytes()
    # The blocked exponentials (a large batch) against the whole-array ones.
    x = rng.standard_normal((300, 200)) * 40
    e, _ = vector._exp_shifted_blocked(x, 1.0)
    assert e.tobytes() == vector._exp_shifted(x, 1.0).tobytes()


def test_one_extended_type() -> None:
    assert smooth.EXTENDED is vector.EXTENDED is exact.EXTENDED


# -- examples: the documented values hold, both in the core and in mpmath ----------------


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_examples_hold(entry: activations.Activation) -> None:
    for example in entry.examples:
        params = entry.bind(example.params)
        x = np.asarray(example.x, dtype=np.float64)
        got = entry.value(x, params)
        np.testing.assert_allclose(got, example.y, rtol=1e-15, atol=0)
        if entry.kind == "elementwise":
            exact = float(reference.ELEMENTWISE[entry.name].value(mp.mpf(float(x)), **params))
        else:
            exact = [float(v) for v in reference.VECTOR[entry.name].value(list(x), **params)]  # type: ignore[assignment]
        np.testing.assert_allclose(example.y, exact, rtol=1e-15, atol=0)


def test_tutorial_softmax_values() -> None:
    # The value the classic tutorials print.
    y = activations.get("softmax").value(np.array([1.0, 2.0, 3.0]), {"temperature": 1.0})
    np.testing.assert_allclose(y, [0.09003057, 0.24472847, 0.66524096], atol=5e-9)


# -- accuracy against the 50-digit reference -------------------------------------------

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_elementwise_accuracy_on_the_stress_grid(entry: activations.Activation, dtype: type) -> None:
    worst = accuracy.elementwise_scores(entry.name, accuracy.stress_grid(dtype), None, dtype)
    for key, w in worst.items():
        assert w.points > 1000
        assert w.score <= 1.0, f"{entry.name} {key}: {w.score:.3g} of the bound at x={w.at}"


ALT = [e for e in ENTRIES if e.name in accuracy.ALT_PARAMS]


@pytest.mark.parametrize("entry", ALT, ids=[e.name for e in ALT])
def test_accuracy_with_other_parameters(entry: activations.Activation) -> None:
    params = accuracy.ALT_PARAMS[entry.name]
    if entry.kind == "elementwise":
        worst = accuracy.elementwise_scores(entry.name, accuracy.dense_grid(), params)
    else:
        worst = accuracy.vector_scores(entry.name, accuracy.vector_cases(entry.name), params)
    for key, w in worst.items():
        assert w.score <= 1.0, f"{entry.name} {key}: {w.score:.3g} of the bound at x={w.at}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_vector_accuracy(entry: activations.Activation, dtype: type) -> None:
    worst = accuracy.vector_scores(entry.name, accuracy.vector_cases(entry.name), None, dtype)
    for key, w in worst.items():
        assert w.score <= 1.0, f"{entry.name} {key}: {w.score:.3g} of the bound at {w.at}"


@pytest.mark.parametrize(
    ("name", "x", "expected"),
    [("sigmoid", 40.0, 4.248354255291589e-18), ("tanh", 20.0, 1.6993417021166355e-17)],
)
def test_derivative_keeps_the_tail(name: str, x: float, expected: float) -> None:
    # y(1 - y) and 1 - y**2 give exactly 0 here; the true values are ordinary floats.
    got = activations.get(name).jacobian(np.array([x, -x]), {})
    exact = float(reference.ELEMENTWISE[name].d1(mp.mpf(x)))
    assert exact == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(got, [exact, exact], rtol=1e-15)


def test_softmax_dominant_vjp_is_not_rounded_to_zero() -> None:
    entry = activations.get("softmax")
    grad_x = entry.vector_jacobian_product(np.array([40.0, 0.0]), np.array([1.0, 0.0]), entry.bind())
    exact = [float(v) for v in reference.softmax_vjp([40.0, 0.0], [1.0, 0.0])]
    np.testing.assert_allclose(grad_x, exact, rtol=1e-15)
    assert grad_x[0] > 0


# -- kinks: the documented convention is the implemented one ----------------------------


KINKS = [(e, k) for e in ELEMENTWISE for k in e.kinks]


@pytest.mark.parametrize(("entry", "kink"), KINKS, ids=[f"{e.name}@{k.at}" for e, k in KINKS])
def test_kink_convention_is_implemented(entry: activations.Activation, kink: Kink) -> None:
    params = entry.bind()
    at = np.array([_param(entry, kink.at)])
    assert entry.jacobian(at, params)[0] == _param(entry, kink.derivative)
    if kink.second_derivative is not None:
        assert entry.second_derivative(at, params)[0] == _param(entry, kink.second_derivative)


@pytest.mark.parametrize(
    ("name", "at", "pytorch", "ours"),
    [
        ("hard_tanh", 1.0, 0.0, 0.0),
        ("hard_silu", -3.0, -0.5, 0.0),
        ("hard_silu", 3.0, 1.5, 1.0),
        ("elu", 0.0, 1.0, 1.0),
    ],
)
def test_documented_differences_from_other_libraries(
    name: str, at: float, pytorch: float, ours: float
) -> None:
    # Each convention is named in the catalog note of its kink.
    entry = activations.get(name)
    assert entry.jacobian(np.array([at]), entry.bind())[0] == ours
    note = next(k.note for k in entry.kinks if _param(entry, k.at) == at)
    assert "PyTorch" in note or "JAX" in note
    assert pytorch is not None


def test_relu_derivative_at_zero_is_zero() -> None:
    assert activations.get("relu").jacobian(np.array([0.0, -0.0]), {}).tolist() == [0.0, 0.0]


def test_leaky_relu_derivative_at_zero_is_the_negative_slope() -> None:
    # PyTorch's convention; JAX would give 1.
    entry = activations.get("leaky_relu")
    assert entry.jacobian(np.array([0.0]), entry.bind({"negative_slope": 0.2}))[0] == 0.2


def test_step_is_zero_at_zero_and_its_derivative_vanishes() -> None:
    entry = activations.get("step")
    x = np.array([-1.0, 0.0, 1e-300, 5.0])
    assert entry.value(x, {}).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert entry.jacobian(x, {}).tolist() == [0.0, 0.0, 0.0, 0.0]


# -- derivative agrees with the forward function (finite differences) -------------------


def _away_from_kinks(entry: activations.Activation) -> np.ndarray:
    """241 points on [-6, 6], less those within 1e-3 of a kink, where differences mislead."""
    kinks = [_param(entry, k.at) for k in entry.kinks]
    return np.array([v for v in np.linspace(-6.0, 6.0, 241) if all(abs(v - k) > 1e-3 for k in kinks)])


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_derivative_matches_central_differences(entry: activations.Activation) -> None:
    params = entry.bind()
    x = _away_from_kinks(entry)
    h = 1e-6
    fd = (entry.value(x + h, params) - entry.value(x - h, params)) / (2 * h)
    np.testing.assert_allclose(entry.jacobian(x, params), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_second_derivative_matches_central_differences(entry: activations.Activation) -> None:
    params = entry.bind()
    x = _away_from_kinks(entry)
    h = 1e-5
    fd = (entry.jacobian(x + h, params) - entry.jacobian(x - h, params)) / (2 * h)
    np.testing.assert_allclose(entry.second_derivative(x, params), fd, rtol=1e-6, atol=1e-7)


WITH_PARAMS = [e for e in ENTRIES if e.learnable]


@pytest.mark.parametrize("entry", WITH_PARAMS, ids=[e.name for e in WITH_PARAMS])
def test_parameter_gradients_match_central_differences(entry: activations.Activation) -> None:
    bound = entry.bind(accuracy.ALT_PARAMS.get(entry.name, {}))
    params = {p.name: bound[p.name] for p in entry.learnable}  # (choices and seeds have no derivative)
    scalars = [v for v in params.values() if not isinstance(v, tuple)]
    kinks = [0.0, *scalars, *(-v for v in scalars)]
    x = np.array([v for v in np.linspace(-4.0, 4.0, 81) if all(abs(v - k) > 1e-3 for k in kinks)])
    if entry.kind == "vector":
        x = x[: 2 * (x.size // 2)].reshape(2, -1)
    grads = entry.parameter_jacobian(x, bound)
    assert set(grads) == set(params)
    for name, value in params.items():
        # an array parameter: each of its numbers in turn, dy/dtheta on the last axis
        for k, v in enumerate(value if isinstance(value, tuple) else (value,)):
            h = 1e-6 * max(1.0, abs(v))

            def moved(
                step: float, k: int = k, v: float = v, name: str = name, value: object = value
            ) -> dict[str, object]:
                if not isinstance(value, tuple):
                    return entry.bind({**bound, name: v + step})
                return entry.bind({**bound, name: (*value[:k], v + step, *value[k + 1 :])})

            numeric = (entry.value(x, moved(h)) - entry.value(x, moved(-h))) / (2 * h)
            got = grads[name][..., k] if isinstance(value, tuple) else grads[name]
            np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7, err_msg=f"{name}[{k}]")


@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_jacobian_matches_central_differences(entry: activations.Activation) -> None:
    # (reglu's gate has relu's kink at 0: a difference quotient there is neither one-sided slope)
    x = np.array([0.3, -1.2, 2.0, -0.4 if entry.name == "reglu" else 0.0, 0.25, 0.1])
    params = entry.bind()
    h = 1e-6
    columns = []
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = h
        columns.append((entry.value(x + step, params) - entry.value(x - step, params)) / (2 * h))
    np.testing.assert_allclose(entry.jacobian(x, params), np.stack(columns, axis=-1), atol=1e-9)


# -- extremes, shapes, axes -------------------------------------------------------------


EXTREMES = np.array([-1.7976931348623157e308, -1e300, -1000.0, -5e-324, 0.0, 5e-324, 1000.0, 1e300])


#: exponential(1000), relu_squared(1e300), star_relu(1e300), xielu(1e300) and selu(1.8e308) exceed float64.
CAN_OVERFLOW = {"exponential", "relu_squared", "star_relu", "selu", "xielu"}


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_finite_or_refused_at_the_extremes(entry: activations.Activation) -> None:
    # filterwarnings=error turns any NumPy warning into a failure here too.
    params = entry.bind()
    x = EXTREMES if entry.kind == "elementwise" else EXTREMES.reshape(2, 4)
    quantities = [
        lambda v: entry.value(v, params),
        lambda v: entry.jacobian(v, params),
        lambda v: entry.vector_jacobian_product(v, np.ones(entry.output_shape(v.shape, v.ndim - 1)), params),
    ]
    if entry.kind == "elementwise":
        quantities.append(lambda v: entry.second_derivative(v, params))
    rows = [x, *([x[i : i + 1] for i in range(x.size)] if entry.kind == "elementwise" else [])]
    for quantity in quantities:
        for row in rows:
            try:
                out = quantity(row)
            except ResultOverflow:
                # Only functions whose true result exceeds float64 there may refuse.
                if entry.name not in CAN_OVERFLOW:
                    raise
                continue
            assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "x", "field"),
    [("exponential", [1.0, 710.0], "y[1]"), ("relu_squared", [2e154], "y[0]"), ("selu", [1.75e308], "y[0]")],
)
def test_result_beyond_float64_is_refused(name: str, x: list[float], field: str) -> None:
    entry = activations.get(name)
    with pytest.raises(ResultOverflow) as info:
        entry.value(np.array(x), entry.bind())
    assert info.value.field == field


def test_result_beyond_float32_is_refused() -> None:
    entry = activations.get("exponential")
    assert entry.value(np.array([88.0]), {}, dtype=np.float32).dtype == np.float32
    with pytest.raises(ResultOverflow, match="float32") as info:
        entry.value(np.array([0.0, 89.0]), {}, dtype=np.float32)
    assert info.value.field == "y[1]"


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
@pytest.mark.parametrize("shape", [(), (1,), (3, 4), (2, 1, 3)])
def test_elementwise_keeps_shape(entry: activations.Activation, shape: tuple[int, ...]) -> None:
    x = np.linspace(-3, 3, int(np.prod(shape))).reshape(shape)
    params = entry.bind()
    assert entry.value(x, params).shape == shape
    assert entry.jacobian(x, params).shape == shape
    assert entry.value(x, params).dtype == np.float64


@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_vector_function_acts_along_the_requested_axis(entry: activations.Activation) -> None:
    params = entry.bind()
    if entry.prepare is not None:  # gumbel_softmax: softmax of x + noise, the noise in x's own layout
        x = np.arange(8.0).reshape(4, 2) / 3
        z = entry.prepared(x, params)
        assert not np.array_equal(z, x)
        softmax = activations.get("softmax")
        t = {"temperature": params["temperature"]}
        assert np.array_equal(entry.value(x, params, axis=0), softmax.value(z, t, axis=0))
        assert np.array_equal(entry.jacobian(x, params, axis=0), softmax.jacobian(z, t, axis=0))
        return
    x = np.arange(8.0).reshape(4, 2) / 3
    y = entry.value(x, params, axis=0)
    np.testing.assert_allclose(y, entry.value(x.T, params).T)
    jac = entry.jacobian(x, params, axis=0)
    assert jac.shape == (*y.shape, 4)
    # dydx[i, j, k] = d y[i, j] / d x[k, j]
    np.testing.assert_allclose(jac[:, 1, :], entry.jacobian(x[:, 1], params))


@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_vjp_equals_gradient_times_jacobian(entry: activations.Activation) -> None:
    params = entry.bind()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6))
    g = rng.standard_normal(entry.output_shape(x.shape, 1))
    via_jacobian = np.einsum("bi,bij->bj", g, entry.jacobian(x, params))
    np.testing.assert_allclose(entry.vector_jacobian_product(x, g, params), via_jacobian, atol=1e-15)


def test_glu_needs_an_even_length() -> None:
    with pytest.raises(ActivationError, match="odd") as info:
        activations.get("glu").value(np.ones((2, 3)), {})
    assert info.value.field == "x"


def test_log_softmax_of_the_winning_class_is_not_zero() -> None:
    y = activations.get("log_softmax").value(np.array([40.0, 0.0]), activations.get("log_softmax").bind())
    exact = [float(v) for v in reference.log_softmax([40.0, 0.0])]
    np.testing.assert_allclose(y, exact, rtol=1e-15)
    assert y[0] < 0


def test_second_derivative_of_a_vector_function_is_refused() -> None:
    with pytest.raises(activations.NotSupported) as info:
        activations.get("softmax").second_derivative(np.ones(3), {})
    assert info.value.field == "order"


def test_parameter_gradient_without_parameters_is_refused() -> None:
    with pytest.raises(activations.NotSupported) as info:
        activations.get("relu").parameter_jacobian(np.ones(3), {})
    assert info.value.field == "wrt"


@pytest.mark.parametrize(
    ("name", "params"),
    [("hard_tanh", {"min_val": 2.0, "max_val": 1.0}), ("rrelu", {"lower": 0.5, "upper": 0.2})],
)
def test_crossed_parameters_are_refused(name: str, params: dict[str, float]) -> None:
    with pytest.raises(ActivationError) as info:
        activations.get(name).bind(params)
    assert info.value.field == f"params.{next(iter(params))}"


def test_parameter_vjp_sums_gradient_times_jacobian() -> None:
    entry = activations.get("silu")
    params = entry.bind({"beta": 1.3})
    x = np.linspace(-3, 3, 13)
    g = np.cos(x)
    total = entry.parameter_vjp(x, g, params)["beta"]
    assert total == pytest.approx(float(np.sum(g * entry.parameter_jacobian(x, params)["beta"])), rel=1e-15)


@pytest.mark.parametrize(("x", "expected"), [([1000.0, 1000.0], [0.5, 0.5]), ([-1e308, 1e308], [0.0, 1.0])])
def test_softmax_never_overflows(x: list[float], expected: list[float]) -> None:
    entry = activations.get("softmax")
    assert entry.value(np.array(x), entry.bind()).tolist() == expected


def test_axis_out_of_range_names_the_axis() -> None:
    with pytest.raises(ActivationError, match="out of range") as info:
        activations.get("softmax").value(np.zeros((2, 2)), {"temperature": 1.0}, axis=2)
    assert info.value.field == "axis"


def test_vector_function_needs_an_axis() -> None:
    with pytest.raises(ActivationError) as info:
        activations.get("softmax").value(np.array(1.0), {"temperature": 1.0})
    assert info.value.field == "x"


def test_result_that_overflows_names_the_element() -> None:
    # An entry outside the registry whose true result exceeds float64 at x = 1000.
    exp = activations.Activation(
        name="exp_probe",
        kind="elementwise",
        forward=np.exp,
        derivative=np.exp,
        second=np.exp,
        formula="e^x",
        derivative_formula="e^x",
        range="(0, inf)",
        typical_use=("hidden",),
        reference="-",
    )
    x = np.array([[1.0, 2.0], [3.0, 1000.0]])
    with pytest.raises(ResultOverflow) as info:
        exp.value(x, {})
    assert info.value.field == "y[1][1]"
    with pytest.raises(ResultOverflow) as info:
        exp.vector_jacobian_product(np.array([1.0, 700.0]), np.array([1.0, 1e10]), {})
    assert info.value.field == "grad_x[1]"


def test_huge_gradients_do_not_overflow_the_softmax_vjp() -> None:
    entry = activations.get("softmax")
    x = np.array([40.0, 0.0])
    big = entry.vector_jacobian_product(x, np.array([1e308, -1e308]), entry.bind())
    small = entry.vector_jacobian_product(x, np.array([1.0, -1.0]), entry.bind())
    np.testing.assert_allclose(big, small * 1e308, rtol=1e-15)


# -- properties ----------------------------------------------------------------------------

finite = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-700, 700)), st.floats(-100, 100))
def test_softmax_sums_to_one_and_is_shift_invariant(x: np.ndarray, c: float) -> None:
    entry = activations.get("softmax")
    params = entry.bind()
    s = entry.value(x, params)
    assert abs(s.sum() - 1.0) <= 1e-14 * x.size
    np.testing.assert_allclose(entry.value(x + c, params), s, rtol=1e-9, atol=1e-300)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e6, 1e6)))
def test_sparsemax_is_a_probability_vector(x: np.ndarray) -> None:
    y = activations.get("sparsemax").value(x, {})
    assert (y >= 0).all()
    assert abs(y.sum() - 1.0) <= 1e-12


NON_MONOTONE = {"gelu", "gelu_tanh", "silu", "quick_gelu", "mish", "hard_silu", "xielu", "rational"}
MONOTONE = [e for e in ELEMENTWISE if e.name not in NON_MONOTONE]


@pytest.mark.parametrize("entry", MONOTONE, ids=[e.name for e in MONOTONE])
@settings(max_examples=100, deadline=None)
@given(x=arrays(np.float64, 20, elements=finite))
def test_monotone_functions_are_monotone(entry: activations.Activation, x: np.ndarray) -> None:
    x = np.sort(np.clip(x, -700, 700))  # stay below exponential's overflow
    assert (np.diff(entry.value(x, entry.bind())) >= 0).all()
    assert (entry.jacobian(x, entry.bind()) >= 0).all()


@pytest.mark.parametrize("name", sorted(NON_MONOTONE))
def test_non_monotone_functions_dip_below_zero(name: str) -> None:
    # Their derivative changes sign: the catalog's range starts below 0.
    entry = activations.get(name)
    x = np.linspace(-5, 0, 501)
    assert entry.jacobian(x, entry.bind()).min() < 0
    assert entry.value(x, entry.bind()).min() < 0


SMOOTH = [e for e in ELEMENTWISE if not e.kinks and e.name != "step"]


@pytest.mark.parametrize("entry", SMOOTH, ids=[e.name for e in SMOOTH])
@settings(max_examples=25, deadline=None)
@given(x=st.floats(-30, 30))
def test_derivatives_match_numerical_differentiation_of_the_reference(
    entry: activations.Activation, x: float
) -> None:
    # mpmath's diff differentiates the 50-digit reference value numerically, so this
    # checks the service's derivatives without trusting any analytic derivative.
    params = entry.bind()
    ref = reference.ELEMENTWISE[entry.name]
    d1 = mp.diff(lambda t: ref.value(t, **params), mp.mpf(x))
    d2 = mp.diff(lambda t: ref.value(t, **params), mp.mpf(x), 2)
    got1 = float(entry.jacobian(np.array([x]), params)[0])
    got2 = float(entry.second_derivative(np.array([x]), params)[0])
    # Relative bounds, plus the absolute 1e-16 max(1, |x|) that the accuracy rules
    # allow where a quantity passes through zero (gelu' at -0.7518).
    floor = 1e-16 * max(1.0, abs(x))
    assert abs(got1 - d1) <= 1e-14 * abs(d1) + floor
    assert abs(got2 - d2) <= 1e-13 * abs(d2) + floor


def _outcome(op: Callable[[np.ndarray], object], x: np.ndarray) -> object:
    """What a core call gives: its result as float64 bytes, or the error it raises."""
    try:
        result = op(x)
    except ResultOverflow as exc:
        return ("overflow", str(exc).replace("[0]", ""))
    if isinstance(result, dict):
        return {k: np.asarray(v, np.float64).tobytes() for k, v in result.items()}
    return np.asarray(result, np.float64).tobytes()


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_a_scalar_gets_what_a_one_element_array_gets(entry: activations.Activation) -> None:
    # A bare number in a request reaches the core as a 0-d array, on which masked
    # assignments fail; the far tails are where functions take such branches.
    params = entry.bind({})
    ops: list[Callable[[np.ndarray], object]] = [
        partial(entry.value, params=params),
        partial(entry.jacobian, params=params),
    ]
    if entry.second is not None:
        ops.append(partial(entry.second_derivative, params=params))
    if entry.param_grads is not None:
        ops.append(partial(entry.parameter_jacobian, params=params, axis=-1))
    grid = accuracy.stress_grid(np.float64)
    for x in grid[:: max(1, grid.size // 300)]:
        for op in ops:
            assert _outcome(op, np.asarray(x)) == _outcome(op, np.asarray([x])), (op.func.__name__, x)


@pytest.mark.parametrize(
    ("name", "params"),
    [("prelu", {"weight": 1.5}), ("leaky_relu", {"negative_slope": 0.0}), ("leaky_relu", {"negative_slope": 0.3}),
     ("rrelu", {"lower": 0.5, "upper": 1.0}), ("elu", {"alpha": 0.0}), ("star_relu", {"scale": 3.0, "bias": 0.5})],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exact_products_are_rounded_once_not_sent_to_the_exact_route(
    name: str, params: dict[str, float], dtype: type
) -> None:
    # x * 1.5 often lands exactly on a midpoint of float64: it is exact, and rounds to even at once
    # (200k such elements once exceeded the exact route's budget and took 15 us each).
    entry = activations.get(name)
    bound = entry.bind(params)
    x = np.random.default_rng(8).standard_normal(200_000).astype(dtype).astype(np.float64)
    fmt = correct.FORMATS[np.dtype(dtype).name]
    for quantity, got in (
        ("value", entry.value(x, bound, dtype=dtype)),
        ("derivative", entry.jacobian(x, bound, dtype=dtype)),
    ):
        # Against the exact definition (MPFR, one element at a time), not the route under test.
        fn = correct.function_of(entry, quantity)
        want = np.array([correct.correctly_rounded(fn, v, bound, fmt) for v in x[:400]])
        np.testing.assert_array_equal(got[:400], want)
        assert np.array_equal(np.signbit(got[:400]), np.signbit(want))
