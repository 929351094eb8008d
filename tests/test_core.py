"""The numeric core, parametrized over the registry so every new entry is covered."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service import activations
from service.activations import ActivationError, Kink, ResultOverflow
from tests import accuracy, reference

ENTRIES = list(activations.entries())
ELEMENTWISE = [e for e in ENTRIES if e.kind == "elementwise"]
VECTOR = [e for e in ENTRIES if e.kind == "vector"]
ids = [e.name for e in ENTRIES]


def _param(entry: activations.Activation, value: float | str) -> float:
    """Resolve a kink field that names a parameter to that parameter's default."""
    return entry.bind()[value] if isinstance(value, str) else value


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
        p.check(p.default)  # the default lies within the bounds


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
            exact = [float(v) for v in reference.VECTOR[entry.name][0](list(x))]  # type: ignore[assignment]
        np.testing.assert_allclose(example.y, exact, rtol=1e-15, atol=0)


def test_tutorial_softmax_values() -> None:
    # The value the classic tutorials print.
    y = activations.get("softmax").value(np.array([1.0, 2.0, 3.0]), {})
    np.testing.assert_allclose(y, [0.09003057, 0.24472847, 0.66524096], atol=5e-9)


# -- accuracy against the 50-digit reference -------------------------------------------


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_elementwise_accuracy_on_the_stress_grid(entry: activations.Activation) -> None:
    worst = accuracy.elementwise_errors(entry.name, accuracy.stress_grid())
    for key, w in worst.items():
        assert w.error <= accuracy.REL_TOL, f"{entry.name} {key}: {w.error:.3g} at x={w.at}"


@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_vector_accuracy(entry: activations.Activation) -> None:
    worst = accuracy.vector_errors(entry.name, accuracy.softmax_cases())
    for key, w in worst.items():
        assert w.error <= accuracy.REL_TOL, f"{entry.name} {key}: {w.error:.3g} at {w.at}"


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
    grad_x = entry.vector_jacobian_product(np.array([40.0, 0.0]), np.array([1.0, 0.0]), {})
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


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_derivative_matches_central_differences(entry: activations.Activation) -> None:
    params = entry.bind()
    kinks = [_param(entry, k.at) for k in entry.kinks]
    x = np.array([v for v in np.linspace(-6.0, 6.0, 241) if all(abs(v - k) > 1e-3 for k in kinks)])
    h = 1e-6
    fd = (entry.value(x + h, params) - entry.value(x - h, params)) / (2 * h)
    np.testing.assert_allclose(entry.jacobian(x, params), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_jacobian_matches_central_differences(entry: activations.Activation) -> None:
    x = np.array([0.3, -1.2, 2.0, 0.0])
    h = 1e-6
    columns = []
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = h
        columns.append((entry.value(x + step, {}) - entry.value(x - step, {})) / (2 * h))
    np.testing.assert_allclose(entry.jacobian(x, {}), np.stack(columns, axis=-1), atol=1e-9)


# -- extremes, shapes, axes -------------------------------------------------------------


EXTREMES = np.array([-1.7976931348623157e308, -1e300, -1000.0, -5e-324, 0.0, 5e-324, 1000.0, 1e300])


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_finite_at_the_extremes(entry: activations.Activation) -> None:
    # filterwarnings=error turns any NumPy warning into a failure here too.
    params = entry.bind()
    x = EXTREMES if entry.kind == "elementwise" else EXTREMES.reshape(2, 4)
    for out in (
        entry.value(x, params),
        entry.jacobian(x, params),
        entry.vector_jacobian_product(x, np.ones_like(x), params),
    ):
        assert np.isfinite(out).all()


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
@pytest.mark.parametrize("shape", [(), (1,), (3, 4), (2, 1, 3)])
def test_elementwise_keeps_shape(entry: activations.Activation, shape: tuple[int, ...]) -> None:
    x = np.linspace(-3, 3, int(np.prod(shape))).reshape(shape)
    params = entry.bind()
    assert entry.value(x, params).shape == shape
    assert entry.jacobian(x, params).shape == shape
    assert entry.value(x, params).dtype == np.float64


def test_softmax_acts_along_the_requested_axis() -> None:
    entry = activations.get("softmax")
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(entry.value(x, {}, axis=0).sum(axis=0), 1.0)
    np.testing.assert_allclose(entry.value(x, {}, axis=0), entry.value(x.T, {}).T)
    jac = entry.jacobian(x, {}, axis=0)
    assert jac.shape == (2, 3, 2)
    # dydx[i, j, k] = d y[i, j] / d x[k, j]
    np.testing.assert_allclose(jac[:, 1, :], entry.jacobian(x[:, 1], {}))


def test_softmax_vjp_equals_gradient_times_jacobian() -> None:
    entry = activations.get("softmax")
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    via_jacobian = np.einsum("bi,bij->bj", g, entry.jacobian(x, {}))
    np.testing.assert_allclose(entry.vector_jacobian_product(x, g, {}), via_jacobian, atol=1e-15)


@pytest.mark.parametrize(("x", "expected"), [([1000.0, 1000.0], [0.5, 0.5]), ([-1e308, 1e308], [0.0, 1.0])])
def test_softmax_never_overflows(x: list[float], expected: list[float]) -> None:
    assert activations.get("softmax").value(np.array(x), {}).tolist() == expected


def test_axis_out_of_range_names_the_axis() -> None:
    with pytest.raises(ActivationError, match="out of range") as info:
        activations.get("softmax").value(np.zeros((2, 2)), {}, axis=2)
    assert info.value.field == "axis"


def test_vector_function_needs_an_axis() -> None:
    with pytest.raises(ActivationError) as info:
        activations.get("softmax").value(np.array(1.0), {})
    assert info.value.field == "x"


def test_result_that_overflows_names_the_element() -> None:
    # An entry outside the registry whose true result exceeds float64 at x = 1000.
    exp = activations.Activation(
        name="exp_probe",
        kind="elementwise",
        forward=np.exp,
        derivative=np.exp,
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
    big = entry.vector_jacobian_product(x, np.array([1e308, -1e308]), {})
    small = entry.vector_jacobian_product(x, np.array([1.0, -1.0]), {})
    np.testing.assert_allclose(big, small * 1e308, rtol=1e-15)


# -- properties ----------------------------------------------------------------------------

finite = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-700, 700)), st.floats(-100, 100))
def test_softmax_sums_to_one_and_is_shift_invariant(x: np.ndarray, c: float) -> None:
    entry = activations.get("softmax")
    s = entry.value(x, {})
    assert abs(s.sum() - 1.0) <= 1e-14 * x.size
    np.testing.assert_allclose(entry.value(x + c, {}), s, rtol=1e-9, atol=1e-300)


MONOTONE = [e for e in ELEMENTWISE if e.name in {"step", "identity", "sigmoid", "tanh", "relu", "leaky_relu"}]


@pytest.mark.parametrize("entry", MONOTONE, ids=[e.name for e in MONOTONE])
@settings(max_examples=100, deadline=None)
@given(x=arrays(np.float64, 20, elements=finite))
def test_monotone_functions_are_monotone(entry: activations.Activation, x: np.ndarray) -> None:
    x = np.sort(x)
    assert (np.diff(entry.value(x, entry.bind())) >= 0).all()
    assert (entry.jacobian(x, entry.bind()) >= 0).all()
