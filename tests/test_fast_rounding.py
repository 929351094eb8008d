"""float64 and float32 results are correctly rounded: the bounded fast path and its exact fallback.

Every elementwise function with a fast definition is evaluated through the core's public API
(what every route of the service calls) on a seeded grid that mixes ordinary inputs, magnitudes
from the subnormals to the largest float64, the exp under- and overflow windows and points next
to the kinks, and compared bit for bit with the exact definitions rounded by Ziv's strategy
(:mod:`service.activations.correct`, checked itself against an independent integer rounding in
``test_correct_rounding.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from service import activations
from service.activations import bounded, compiled, correct, exact
from service.activations.registry import ActivationError, ResultOverflow

FAST = [e for e in activations.entries() if e.fast is not None and e.kind == "elementwise"]
FORMATS = {"float64": np.float64, "float32": np.float32}
QUANTITIES = ("value", "derivative", "second_derivative")


def _grid(seed: int, dtype: Any, n: int = 120) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    parts = [
        rng.uniform(-40, 40, n),
        rng.normal(0, 2, n),
        rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-320, 308, n),
        rng.uniform(-746, -700, n // 4),
        rng.uniform(700, 746, n // 4),
        rng.uniform(-104, -85, n // 4),  # float32's exp window
        np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, 1.0, -1.0, 3.0, -3.0, 6.0, 0.5, -0.5, 1e308, -1e308]),
    ]
    x = np.concatenate(parts)
    if dtype is np.float32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)
        x = x[np.isfinite(x)].astype(np.float64)
    return x


def _param_sets(entry: activations.Activation) -> Iterator[dict[str, Any]]:
    yield entry.bind({})
    odd: dict[str, Any] = {}
    for p in entry.params:
        if isinstance(p.default, tuple):  # an array parameter: each number moved alike
            odd[p.name] = tuple(v * 1.37 + 0.11 for v in p.default)
            continue
        value = p.default * 1.37 + 0.11 if p.default else 0.23
        if p.maximum is not None:
            value = min(value, p.maximum)
        odd[p.name] = value
    try:
        yield entry.bind(odd)
    except ActivationError:
        return


def _same(got: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (got == want) & (np.signbit(got) == np.signbit(want))


def _through_api(entry: activations.Activation, quantity: str, x: Any, params: Any, dtype: Any) -> Any:
    xs = x.astype(dtype)
    if quantity == "value":
        return entry.value(xs, params, -1, dtype)
    if quantity == "derivative":
        return entry.jacobian(xs, params, -1, dtype)
    return entry.second_derivative(xs, params, dtype)


def _finite_reference(
    entry: activations.Activation, quantity: str, x: Any, params: Any, fmt: Any, param: str | None = None
) -> tuple[Any, Any]:
    want = correct.elementwise(entry, quantity, x, params, fmt, param)
    keep = np.isfinite(want)
    return x[keep], want[keep]


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@pytest.mark.parametrize("entry", FAST, ids=lambda e: e.name)
def test_every_quantity_is_correctly_rounded(entry: activations.Activation, fmt_name: str) -> None:
    dtype, fmt = FORMATS[fmt_name], correct.FORMATS[fmt_name]
    for k, params in enumerate(_param_sets(entry)):
        x_all = _grid(hash((entry.name, fmt_name, k)) % 2**32, dtype)
        for quantity in QUANTITIES:
            x, want = _finite_reference(entry, quantity, x_all, params, fmt)
            got = np.asarray(_through_api(entry, quantity, x, params, dtype), dtype=np.float64)
            wrong = np.flatnonzero(~_same(got, want))
            assert not wrong.size, (
                f"{entry.name} {quantity} {params} {fmt_name}: {[(x[i], got[i], want[i]) for i in wrong[:5]]}"
            )


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@pytest.mark.parametrize("entry", [e for e in FAST if e.params], ids=lambda e: e.name)
def test_parameter_derivatives_and_their_sums_are_correctly_rounded(
    entry: activations.Activation, fmt_name: str
) -> None:
    dtype, fmt = FORMATS[fmt_name], correct.FORMATS[fmt_name]
    rng = np.random.default_rng(11)
    for params in _param_sets(entry):
        x_all = _grid(5, dtype, 60)
        for p in entry.learnable:
            for k, c in enumerate(p.components(params[p.name])):  # an array parameter: each number
                x, want = _finite_reference(entry, "value", x_all, params, fmt, c)
                try:
                    got = entry.parameter_jacobian(x.astype(dtype), params, -1, dtype)[p.name]
                except ResultOverflow:
                    continue  # another parameter's derivative exceeds the format at some element
                got = got[..., k] if isinstance(params[p.name], tuple) else got
                assert _same(np.asarray(got, np.float64), want).all(), (entry.name, c, params)
        x = rng.normal(0, 4, 300).astype(dtype).astype(np.float64)
        g = rng.normal(0, 1, 300).astype(dtype).astype(np.float64)
        sums = entry.parameter_vjp(x.astype(dtype), g.astype(dtype), params, -1, dtype)
        for p in entry.learnable:
            got_sums = sums[p.name] if isinstance(params[p.name], tuple) else [sums[p.name]]
            want_sums = [correct.summed(entry, c, x, g, params, fmt) for c in p.components(params[p.name])]
            assert got_sums == want_sums, (entry.name, p.name)


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_vector_jacobian_products_round_the_exact_product(fmt_name: str) -> None:
    dtype, fmt = FORMATS[fmt_name], correct.FORMATS[fmt_name]
    rng = np.random.default_rng(2)
    for entry in FAST:
        params = entry.bind({})
        x = _grid(3, dtype, 30)
        g = (rng.choice([-1.0, 1.0], x.size) * 10.0 ** rng.uniform(-30, 30, x.size)).astype(dtype)
        g = g.astype(np.float64)
        g[::7] = -0.0  # an exact 0 product is +0 (found by an independent oracle: -0 * f' was -0)
        want = correct.scaled(entry, "derivative", x, g, params, fmt)
        keep = np.isfinite(want)
        got = entry.vector_jacobian_product(x[keep].astype(dtype), g[keep].astype(dtype), params, -1, dtype)
        assert _same(np.asarray(got, np.float64), want[keep]).all(), entry.name


def test_the_route_without_an_extended_long_double_gives_the_same_numbers() -> None:
    """Where np.longdouble is float64 (Windows, macOS on ARM) the fast path decides almost nothing
    and the exact definitions do the work: forced here (without the compiled tier, which would
    decide the values first), the results are the same bits."""
    x = _grid(9, np.float64, 12)
    previous = correct.force_working("float64", np.float64)
    kernel = compiled.use(False)
    try:
        forced = {}
        for name in ("sigmoid", "gelu_tanh", "mish", "softplus", "hard_silu", "tanhshrink"):
            entry = activations.get(name)
            forced[name] = [
                np.asarray(_through_api(entry, q, x, entry.bind({}), np.float64)) for q in QUANTITIES
            ]
    finally:
        correct.force_working("float64", previous)
        compiled.use(kernel)
    for name, results in forced.items():
        entry = activations.get(name)
        for q, got in zip(QUANTITIES, results, strict=True):
            assert _same(got, np.asarray(_through_api(entry, q, x, entry.bind({}), np.float64))).all()


def test_the_forced_route_decides_little_so_the_test_above_is_not_empty() -> None:
    x = _grid(9, np.float64, 12)
    b = activations.get("sigmoid").fast.value(bounded.B.exact(x, np.float64))
    _, sure = bounded.decide(b, np.float64)
    assert np.mean(sure) < 0.9


# -- the cases of the audit that found the core's misses ----------------------------------------


@pytest.mark.parametrize(
    ("name", "quantity", "x", "params"),
    [
        ("sigmoid", "value", [-720.0, -740.5, -745.0], {}),  # subnormal results, not 0
        ("sigmoid", "derivative", [-720.0, -744.0], {}),
        ("log_sigmoid", "second_derivative", [-730.0, 712.0], {}),
        ("mish", "derivative", [-713.6186278758374, -714.8, -709.9], {}),  # the sign of a tiny f'
        ("mish", "value", [-714.8, -712.0, -709.9], {}),
        ("squareplus", "value", [-4.5e307, -1e308], {}),
        ("squareplus", "derivative", [-6.7e153, -1e200], {}),
        ("softplus", "value", [1e308, 7e307], {"beta": 2.0}),
        ("gelu_tanh", "derivative", [-0.75, -0.7505, -1.5], {}),
        ("quick_gelu", "derivative", [-0.7505, -1.2806], {}),
        ("silu", "derivative", [-1.2806, -1.2784645427610738], {}),
        ("celu", "value", [-1e-300, -3.0], {"alpha": 1e-300}),
        # beta x and alpha_n (-1 - x) cancel where beta = alpha_n: -alpha_n, not 0
        ("xielu", "value", [-1e300, -1e308, -7e15, -800.0, -2.0], {"alpha_n": 0.8, "beta": 0.8}),
        ("xielu", "value", [-1e300, -3e200, -1e20], {"alpha_n": 1e-300, "beta": 1e-300}),
        ("xielu", "value", [-1e300, -5e50], {"alpha_n": 3.0, "beta": 3.0000000000000004}),
    ],
)
def test_the_audit_cases(name: str, quantity: str, x: list[float], params: dict[str, float]) -> None:
    entry = activations.get(name)
    bound = entry.bind(params)
    for fmt_name, dtype in FORMATS.items():
        with np.errstate(over="ignore"):
            xs = np.array(x).astype(dtype).astype(np.float64)
        xs = xs[np.isfinite(xs)]
        want = correct.elementwise(entry, quantity, xs, bound, correct.FORMATS[fmt_name])
        if not np.isfinite(want).all():
            continue
        got = np.asarray(_through_api(entry, quantity, xs, bound, dtype), np.float64)
        assert _same(got, want).all(), (fmt_name, got, want)


def test_a_result_does_not_depend_on_the_rest_of_the_request() -> None:
    entry = activations.get("squareplus")
    params = entry.bind({})
    x = np.array([0.5, -2.0, 3.0, 1e-3])
    alone = entry.value(x, params)
    with_huge = entry.value(np.concatenate([x, [-1e200, 1e300]]), params)[:4]
    assert _same(alone, with_huge).all()


def test_a_true_result_beyond_the_format_is_refused_at_its_element() -> None:
    entry = activations.get("exponential")
    with pytest.raises(ResultOverflow) as caught:
        entry.value(np.array([1.0, 2.0, 100.0, 1e6, 3.0]), {}, -1, np.float32)
    assert caught.value.field == "y[2]"
    with pytest.raises(ResultOverflow) as caught:
        entry.value(np.array([1.0, 709.0, 709.8, 1e6]), {})
    assert caught.value.field == "y[2]"


def test_the_bounds_are_not_vacuous() -> None:
    """Most elements are decided by the fast path (a bound of inf would make every result exact,
    and slow): at least 90% on ordinary inputs, for every function and quantity."""
    x = np.random.default_rng(4).normal(0, 3, 4000)
    for entry in FAST:
        for quantity in QUANTITIES:
            fn = correct.bounded_of(entry, quantity)
            with np.errstate(all="ignore"):
                b = fn(bounded.B.exact(x, np.longdouble), **entry.bind({}))
            _, sure = bounded.decide(b, np.float64)
            assert np.mean(sure) > 0.9, (entry.name, quantity, np.mean(sure))


# -- the core API in the 16-bit formats ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["snake", "xielu", "silu", "softplus"])
async def test_the_core_takes_16_bit_dtypes_as_the_api_does(name: str, fmt: str) -> None:
    """entry.value(x, params, dtype=float16) and the other quantities: x (and g) rounded to the
    format once, every result as POST /activate and /derivative answer it (not a KeyError)."""
    import ml_dtypes

    from service.app import create_app
    from service.settings import Settings
    from tests.conftest import asgi_client

    dtype = np.float16 if fmt == "float16" else ml_dtypes.bfloat16
    entry = activations.get(name)
    params = entry.bind()
    x = np.array([-3.3, -0.1, 0.0, 0.1, 1.0, 2.5, 17.0, 200.0])
    g = np.array([1.0, -2.0, 0.5, 3.0, 0.25, -1.0, 2.0, 1.5])
    core = {
        "y": entry.value(x, params, dtype=dtype),
        "dydx": entry.jacobian(x, params, dtype=dtype),
        "d2ydx2": entry.second_derivative(x, params, dtype),
        "grad_x": entry.vector_jacobian_product(x, g, params, dtype=dtype),
    }
    for got in core.values():
        assert got.dtype == np.dtype(dtype)
    sums = entry.parameter_vjp(x, g, params, dtype=dtype)
    dydp = entry.parameter_jacobian(x, params, dtype=dtype)
    async with asgi_client(create_app(Settings.model_construct())) as client:
        asked: dict[str, tuple[str, dict[str, Any]]] = {
            "y": ("/activate", {}),
            "dydx": ("/derivative", {}),
            "d2ydx2": ("/derivative", {"order": 2}),
            "grad_x": ("/derivative", {"grad": g.tolist()}),
        }
        for field, (path, extra) in asked.items():
            r = await client.post(path, json={"activation": name, "x": x.tolist(), "dtype": fmt, **extra})
            assert r.status_code == 200, r.text
            # (JSON carries a 16-bit number as the shortest decimal that names it as a float32)
            wire = np.asarray(r.json()[field], np.float32)
            assert wire.tolist() == core[field].astype(np.float32).tolist(), field
        r = await client.post(
            "/derivative", json={"activation": name, "x": x.tolist(), "dtype": fmt, "wrt": "params"}
        )
        assert {k: np.asarray(v, np.float32).tolist() for k, v in r.json()["dydparams"].items()} == {
            k: v.astype(np.float32).tolist() for k, v in dydp.items()
        }
        r = await client.post(
            "/derivative",
            json={"activation": name, "x": x.tolist(), "dtype": fmt, "wrt": "params", "grad": g.tolist()},
        )
        assert {k: float(np.float32(v)) for k, v in r.json()["grad_params"].items()} == sums


@pytest.mark.parametrize("fmt_name", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("prelu", {"weight": 1.5}),  # w x needs 12 bits: many products are exactly midpoints
        ("prelu", {"weight": -0.3}),
        ("gelu", {}),
        ("softplus", {}),
        ("mish", {}),
        ("elu", {"alpha": 1.0}),
        ("relu", {}),
    ],
)
def test_16_bit_results_through_float64_agree_with_the_exact_tables(
    name: str, params: dict[str, float], fmt_name: str
) -> None:
    # The core's 16-bit results come from its correctly rounded float64 ones, rounded again, except
    # where the float64 result is exactly a midpoint of the format (correct.from_double); here every
    # finite input of the format against the table the exact definitions give, bit for bit (signs of
    # zeros and overflows included).
    entry = activations.get(name)
    fmt = correct.FORMATS[fmt_name]
    bound = entry.bind(params)
    x = correct.finite_inputs(fmt)
    x = x[np.abs(x) < 1e4]  # (results beyond the format are refused, at their first element)
    dtype = fmt.numpy
    quantities = {
        "value": lambda: entry.value(x, bound, dtype=dtype),
        "derivative": lambda: entry.jacobian(x, bound, dtype=dtype),
    }
    for quantity, core in quantities.items():
        got = np.asarray(core(), np.float64)
        want = correct.sixteen_bit(entry, quantity, x, bound, fmt)  # the table, exactly
        assert np.array_equal(np.signbit(got), np.signbit(want)), quantity
        bad = np.flatnonzero(got != want)
        assert not bad.size, (quantity, x[bad[:5]].tolist(), got[bad[:5]].tolist(), want[bad[:5]].tolist())
    g = np.resize(np.array([1.0, -2.5, 0.375, 3.0]), x.shape)
    got = np.asarray(entry.vector_jacobian_product(x, g, bound, dtype=dtype), np.float64)
    want = correct.scaled(entry, "derivative", x, g, bound, fmt)
    assert np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("alpha", [1e-300, 3e-305, 1e-310, 2.5e-320, 5e-324])
def test_celu_with_a_tiny_alpha(alpha: float) -> None:
    """x / alpha with a tiny alpha: its remainder underflowed, and e^(x / alpha) came out up to
    250 ULP off (f' at x = -5.9e-311, alpha = 1e-310) while its bound claimed 2^-100."""
    entry = activations.get("celu")
    params = entry.bind({"alpha": alpha})
    rng = np.random.default_rng(int(-math.log10(alpha)))
    t = -np.abs(rng.standard_normal(200)) * rng.choice([1.0, 10.0, 100.0, 700.0], 200)
    x = t * alpha
    x = x[x != 0]
    for fmt_name, dtype in FORMATS.items():
        xs = x.astype(dtype).astype(np.float64)
        for quantity in QUANTITIES:
            want = correct.elementwise(entry, quantity, xs, params, correct.FORMATS[fmt_name])
            keep = np.isfinite(want)
            got = np.asarray(_through_api(entry, quantity, xs[keep], params, dtype), np.float64)
            wrong = np.flatnonzero(~_same(got, want[keep]))
            assert not wrong.size, (
                fmt_name,
                quantity,
                [(xs[keep][i], got[i], want[keep][i]) for i in wrong[:3]],
            )


def test_a_quotient_and_its_remainder_at_the_ends_of_the_range() -> None:
    rng = np.random.default_rng(4)
    for d in [1e-310, 5e-324, 1e-300, 3.0, 1e300]:
        x = rng.choice([-1.0, 1.0], 100) * 10.0 ** rng.uniform(-323, 0, 100) * max(d, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            hi, lo = exact.divide(x, d)
        for xi, h, low in zip(x, hi, lo, strict=True):
            q = Fraction(float(xi)) / Fraction(d)
            if 2.0**-960 < abs(q) < 2.0**1023:  # (below, lo is itself subnormal: only an absolute bound)
                assert abs(Fraction(float(h)) + Fraction(float(low)) - q) <= abs(q) * Fraction(2) ** -100, (
                    xi,
                    d,
                )
