"""The compiled first tier (``service/activations/_kernel*.c``): built, bounded, and giving the
same bits as the routes it stands in front of.

``test_fast_rounding.py`` checks the core's values against the exact definitions with the kernel
in use; here the kernel's own pieces are checked: its double-double exp against MPFR (the bound
holds), each of its builds (AVX-512, AVX2, and Dekker's products on any CPU) against the bounded long
double route with the kernel off, bit for bit, and the share of elements it decides.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import gmpy2
import ml_dtypes
import numpy as np
import pytest
from gmpy2 import mpfr

from service import activations
from service.activations import compiled, correct
from service.activations.registry import ResultOverflow

from .test_fast_rounding import _grid, _param_sets, _same

NAMES = sorted(compiled._FUNCTIONS)
QUANTITIES = [(name, "value") for name in NAMES] + [
    (name, "derivative") for name in sorted(compiled._DERIVATIVES)
]
FORMATS = {"float64": np.float64, "float32": np.float32}


def test_the_kernel_is_built_where_the_tests_run() -> None:
    # The extension is optional for installs without a C compiler; CI has one, and a build that
    # failed quietly would leave every test below comparing the slow route with itself.
    assert compiled.available()


@pytest.fixture(params=list(compiled.BUILDS))
def variant(request: pytest.FixtureRequest) -> Iterator[str]:
    best = compiled.build("avx512")
    used = compiled.build(request.param)
    if used != request.param:
        compiled.build(best)
        pytest.skip(f"this CPU has not the {request.param} build's instructions (it uses {used})")
    yield used
    compiled.build(best)


def _exp_points() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(5)
    return np.concatenate(
        [
            rng.uniform(-746, 709.5, 3000),
            rng.normal(0, 3, 3000),
            rng.uniform(-1.4e-3, 1.4e-3, 500),  # the table's first entry: e^r itself
            rng.uniform(-745.2, -708, 1000),  # subnormal results
            np.ldexp(rng.uniform(-1, 1, 500), rng.integers(-1074, -10, 500)),
            np.array([0.0, -0.0, 709.78, -745.13, -745.14, -708.39, 1e-300, 2.0**-1074]),
        ]
    )


def test_exp_lies_within_its_bound(variant: str) -> None:
    with gmpy2.context(gmpy2.get_context(), precision=300):
        for x in _exp_points():
            for lo in (0.0, float(x) * 2.0**-60):  # a double-double argument as well
                h, low, e = compiled.exp_dd(float(x), lo, variant)
                true = gmpy2.exp(mpfr(float(x)) + mpfr(lo))
                assert abs(mpfr(h) + mpfr(low) - true) <= e, (x, lo)


def test_exp_bound_is_tight_enough_to_decide() -> None:
    # About 2^-90 relative for ordinary arguments (the rounding test of float64 needs < 2^-53).
    for x in (-30.0, -1.0, 0.25, 3.0, 80.0):
        h, _, e = compiled.exp_dd(x)
        assert e < abs(h) * 2.0**-75


def _sincos_points() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(9)
    k = rng.integers(-333_000, 333_000, 400).astype(np.float64)
    near = k * (np.pi / 2)  # the doubles nearest k pi/2: r tiny, sin or cos of t nearly 0
    steps = rng.integers(-101, 102, 300) / 128 + rng.integers(-3, 4, 300) * (np.pi / 2)
    return np.concatenate(
        [
            near,
            np.nextafter(near, np.inf),
            steps,
            np.nextafter(steps, -np.inf),
            rng.uniform(-(2.0**19), 2.0**19, 500),
            rng.normal(0, 3, 500),
            np.ldexp(rng.uniform(-1, 1, 200), rng.integers(-290, 0, 200)),
            np.array([0.0, np.pi / 4, -np.pi / 4, 2.0**19, -(2.0**19), 355.0, 103993.0, 2.0**-300]),
        ]
    )


def test_sin_and_cos_lie_within_their_bounds(variant: str) -> None:
    # snake's argument reduction (pi/2 in three parts) and series, against MPFR: the bound must hold
    # where sin or cos of t is nearly 0, which is where a reduction loses its last bits.
    with gmpy2.context(gmpy2.get_context(), precision=400):
        for t in _sincos_points():
            for lo in (0.0, float(t) * 2.0**-60):  # an exact low part as well (a x's)
                sh, sl, se, ch, cl, ce = compiled.sincos_dd(float(t), lo, variant)
                arg = mpfr(float(t)) + mpfr(lo)
                assert abs(mpfr(sh) + mpfr(sl) - gmpy2.sin(arg)) <= se, (t, lo)
                assert abs(mpfr(ch) + mpfr(cl) - gmpy2.cos(arg)) <= ce, (t, lo)


def test_sin_and_cos_bounds_are_tight_enough_to_decide() -> None:
    # About 2^-70 absolute (b^3/6 of the series in double): 2^17 below half a float64 unit of 1.
    for t in (0.3, -1.0, 2.5, 1000.0, -123456.75):
        _, _, se, _, _, ce = compiled.sincos_dd(t)
        assert se < 2.0**-68, (t, se)
        assert ce < 2.0**-68, (t, ce)


def _params(name: str) -> Iterator[dict[str, Any]]:
    yield from _param_sets(activations.get(name))


def _on_and_off(call: Any) -> tuple[Any, Any]:
    """call() with the compiled tier and without it: each a float64 array, or the overflow's
    message where the call refuses."""
    results: list[Any] = []
    for on in (True, False):
        previous = compiled.use(on)
        try:
            results.append(np.asarray(call()).astype(np.float64))
        except ResultOverflow as error:
            results.append(str(error))
        finally:
            compiled.use(previous)
    return results[0], results[1]


def _at_the_kinks(dtype: Any) -> np.ndarray[Any, Any]:
    # The pieces' boundaries of the functions' default parameters (and smelu's, xielu's).
    kinks = np.array([2.0, -2.0, 1.0, -1.0, 3.0, -3.0, -1e-6, 1e-6, -0.5, 0.5, 2.5, -2.5, 0.0])
    return np.concatenate([kinks, np.nextafter(kinks, np.inf), np.nextafter(kinks, -np.inf)]).astype(dtype)


def _through(quantity: str, entry: activations.Activation, x: Any, params: Any, dtype: Any) -> Any:
    if quantity == "value":
        return entry.value(x, params, -1, dtype)
    return entry.jacobian(x, params, -1, dtype)


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@pytest.mark.parametrize(("name", "quantity"), QUANTITIES)
def test_the_kernel_gives_the_bits_of_the_route_without_it(
    name: str, quantity: str, fmt_name: str, variant: str
) -> None:
    entry, dtype = activations.get(name), FORMATS[fmt_name]
    for k, params in enumerate(_params(name)):
        x = _grid(hash((name, fmt_name, k, "compiled")) % 2**32, dtype, 400).astype(dtype)
        x = np.concatenate([x, _at_the_kinks(dtype)])
        with_kernel, without = _on_and_off(functools.partial(_through, quantity, entry, x, params, dtype))
        if isinstance(without, str):
            assert with_kernel == without  # the same element named
            continue
        assert isinstance(with_kernel, np.ndarray)
        wrong = np.flatnonzero(~_same(with_kernel, without))
        assert not wrong.size, [(x[i], with_kernel[i], without[i]) for i in wrong[:5]]


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@pytest.mark.parametrize(("name", "quantity"), QUANTITIES)
def test_the_kernel_decides_nearly_every_ordinary_element(name: str, quantity: str, fmt_name: str) -> None:
    entry = activations.get(name)
    x = np.random.default_rng(3).normal(0, 3, 20000).astype(FORMATS[fmt_name]).astype(np.float64)
    decided = compiled.values(name, quantity, x, entry.bind({}), fmt_name)
    assert decided is not None
    # (hard_sigmoid's (x + 3)/6 lands exactly on a midpoint of the format for about 1 input in 40
    # between -3 and 3: the kernel recognises an exact quotient, so a bound need not tell a tie
    # from a near-tie.)  Near the zeros of a derivative (silu's, mish's, gelu_tanh's) its terms
    # cancel and the bound widens: those few go to the slower routes.
    floor = 0.995 if quantity == "derivative" else 0.999
    assert decided[1].mean() > floor, decided[1].mean()


@pytest.mark.parametrize(("name", "quantity"), QUANTITIES)
def test_the_float32_builds_give_the_double_double_builds_bits(
    name: str, quantity: str, variant: str
) -> None:
    # float32 from one double and its bound a value (then the double-double build for what that
    # leaves) against the double-double build alone: the same bits wherever both decide, and
    # nothing the double-double build decides left undecided.  The inputs: ordinary, tiny, zeros
    # (0 times a bounded factor is exactly 0), the exp windows, float32's edges, and g.
    entry = activations.get(name)
    rng = np.random.default_rng(hash((name, quantity)) % 2**32)
    x = np.concatenate(
        [
            rng.normal(0, 3, 4000),
            rng.uniform(-120, 120, 1000),
            rng.normal(0, 1e-5, 500),
            np.ldexp(rng.uniform(-1, 1, 500), rng.integers(-160, 128, 500)),
            _at_the_kinks(np.float64),
            [0.0, -0.0, 88.72, -103.97, 3.4e38, -3.4e38],
        ]
    )
    x = x.astype(np.float32).astype(np.float64)
    g = rng.normal(0, 2, x.size).astype(np.float32).astype(np.float64)
    for params in _params(name):
        bound = entry.bind(params)
        for gs in (None, g):
            previous = compiled.float32_builds(False)
            try:
                wide = compiled.values(name, quantity, x, bound, "float32", gs)
            finally:
                compiled.float32_builds(previous)
            light = compiled.values(name, quantity, x, bound, "float32", gs)
            if wide is None:
                assert light is None
                continue
            assert light is not None
            both = wide[1] & light[1]
            assert np.array_equal(wide[0][both].view(np.int64), light[0][both].view(np.int64))
            assert not np.any(wide[1] & ~light[1])


def test_what_the_kernel_decides_is_the_exact_definition_rounded() -> None:
    # Values and derivatives straight against MPFR (Ziv's strategy on the exact definitions), on points the grids above
    # do not stress: a spread of magnitudes for every function.
    rng = np.random.default_rng(8)
    x = rng.choice([-1.0, 1.0], 60) * 10.0 ** rng.uniform(-8, 2.5, 60)
    for name in NAMES:
        entry = activations.get(name)
        params = entry.bind({})
        for fmt_name in FORMATS:
            fmt = correct.FORMATS[fmt_name]
            xs = x.astype(FORMATS[fmt_name]).astype(np.float64)
            for quantity in ("value", "derivative"):
                decided = compiled.values(name, quantity, xs, params, fmt_name)
                if decided is None:
                    assert quantity == "derivative"
                    assert name not in compiled._DERIVATIVES
                    continue
                got, sure = decided
                want = correct.elementwise(entry, quantity, xs[sure], params, fmt)
                assert _same(got[sure], want).all(), (name, quantity)


def test_what_the_kernel_does_not_take() -> None:
    x = np.array([1.0, -2.0])
    assert compiled.values("snake", "second_derivative", x, {"a": 1.0}, "float64") is None
    assert compiled.values("sigmoid", "second_derivative", x, {}, "float64") is None
    assert compiled.values("leaky_relu", "derivative", x, {"negative_slope": 0.1}, "float64") is None
    assert compiled.values("sigmoid", "value", x, {}, "float16") is None
    weight = activations.get("prelu").bind({"weight": [0.1, 0.2]})
    assert compiled.values("prelu", "value", x, weight, "float64") is None  # one weight a channel
    # Beyond 2^200 the kernel leaves the element to the slower routes.
    _, sure = compiled.values("sigmoid", "value", np.array([2.0**201, -(2.0**201), 3.0]), {}, "float64") or (
        0,
        0,
    )
    assert list(sure) == [False, False, True]
    # snake's a x beyond 2^19 (its argument reduction's range): the slower routes.
    _, sure = compiled.values(
        "snake", "value", np.array([2.0**19 + 1, -(2.0**20), 2.0**19]), {"a": 1.0}, "float64"
    ) or (
        0,
        0,
    )
    assert list(sure) == [False, False, True]


def test_hard_silu_decides_float32_ties() -> None:
    # x (x + 3) / 6 exactly on a midpoint of float32 (ties to even): for float32 the kernel takes
    # the quotient itself, which it knows exact, where a product by 1/6 could not tell a tie.
    x = np.array([-2.9928131103515625, -2.90789794921875, -2.5133056640625, 1.212158203125])
    for v in x:
        q = Fraction(float(v)) * (Fraction(float(v)) + 3) / 6
        below = np.float32(float(q))
        above = np.nextafter(below, np.float32(np.inf) if Fraction(float(below)) < q else np.float32(-np.inf))
        assert (Fraction(float(below)) + Fraction(float(above))) / 2 == q  # a tie, truly
    decided = compiled.values("hard_silu", "value", x, {}, "float32")
    assert decided is not None
    got, sure = decided
    assert sure.all()
    want = correct.elementwise(activations.get("hard_silu"), "value", x, {}, correct.FORMATS["float32"])
    assert _same(got, want).all()


def _snake_hard_points(rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """a x near multiples of pi/2 (where the reduced argument r is tiny and sin or cos of a x is
    nearly 0), near the tables' steps j/128 of r, near the derivative's zeros, and across the
    reduction's whole range."""
    k = rng.integers(-333_000, 333_000, 150).astype(np.float64)
    near = k * (np.pi / 2)
    steps = rng.integers(-3, 4, 150) * (np.pi / 2) + rng.integers(-101, 102, 150) / 128 + 1 / 256
    points = [near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf), near + rng.normal(0, 1e-9, 150)]
    points += [steps, np.nextafter(steps, np.inf), rng.uniform(-(2.0**19), 2.0**19, 300)]
    # near the derivative's zeros, a x = -pi/4 + k pi, where 1 + sin(2 a x) cancels: an error in
    # the reduction's last bits shows there as many units
    zeros = -np.pi / 4 + rng.integers(-166_000, 166_000, 300) * np.pi
    points += [zeros + rng.choice([-1, 1], 300) * 10.0 ** rng.uniform(-7, -3, 300)]
    points += [np.array([np.pi / 2, -np.pi / 2, np.pi, 3 * np.pi / 4, np.pi / 4, 2.0**19, -(2.0**19)])]
    return np.concatenate(points)


@pytest.mark.parametrize("a", [1.0, 2.5, 0.3])
def test_snake_through_its_argument_reduction_is_the_exact_definition_rounded(a: float) -> None:
    # The kernel's sine and cosine (pi/2 in three parts, a table of j/128, Taylor series) against
    # MPFR on the points a reduction gets wrong first.
    entry = activations.get("snake")
    t = _snake_hard_points(np.random.default_rng(int(a * 10)))
    for fmt_name in FORMATS:
        fmt = correct.FORMATS[fmt_name]
        x = (t / a).astype(FORMATS[fmt_name]).astype(np.float64)
        for quantity in ("value", "derivative"):
            decided = compiled.values("snake", quantity, x, {"a": a}, fmt_name)
            assert decided is not None
            got, sure = decided
            # (the points are hard on purpose: the derivative's within 1e-5 of its zeros goes to
            # the slower routes; test_the_kernel_decides_nearly_every_ordinary_element has the
            # share on ordinary inputs)
            assert sure.mean() > 0.6, (fmt_name, quantity, sure.mean())
            want = correct.elementwise(entry, quantity, x[sure], {"a": a}, fmt)
            wrong = np.flatnonzero(~_same(got[sure], want))
            assert not wrong.size, [(x[sure][i], got[sure][i], want[i]) for i in wrong[:5]]


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@pytest.mark.parametrize("name", sorted(compiled._DERIVATIVES))
def test_vector_jacobian_products_through_the_kernel_are_the_same_bits(
    name: str, fmt_name: str, variant: str
) -> None:
    # g f'(x), the double-double product rounded once: the kernel's, and the route's without it.
    entry, dtype = activations.get(name), FORMATS[fmt_name]
    rng = np.random.default_rng(17)
    params = entry.bind({})
    x = np.concatenate([_grid(23, dtype, 200), _at_the_kinks(np.float64)]).astype(dtype)
    g = (rng.choice([-1.0, 1.0], x.size) * 10.0 ** rng.uniform(-20, 20, x.size)).astype(dtype)
    g[::9] = 0.0
    with_kernel, without = _on_and_off(lambda: entry.vector_jacobian_product(x, g, params, -1, dtype))
    if isinstance(without, str):
        assert with_kernel == without
        return
    assert isinstance(with_kernel, np.ndarray)
    wrong = np.flatnonzero(~_same(with_kernel, without))
    assert not wrong.size, [(x[i], g[i], with_kernel[i], without[i]) for i in wrong[:5]]


VECTORS = [
    ("softmax", {}),
    ("softmax", {"temperature": 0.37}),
    ("log_softmax", {}),
    ("log_softmax", {"temperature": 3.3}),
    ("softmin", {"temperature": 2.0}),
    ("gumbel_softmax", {"seed": 3}),
    ("glu", {}),
    ("swiglu", {"gate_half": 1}),
    ("reglu", {}),
    ("geglu_tanh", {}),
    ("geglu", {}),
]


def _vectors(seed: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "ordinary": rng.normal(0, 3, (60, 16)),
        "wide": rng.normal(0, 300, (30, 12)),  # e^q below the subnormals
        "ties": np.round(rng.normal(0, 2, (40, 8))),
        "a hair apart": rng.normal(0, 1e-9, (20, 10)),
        "every scale": rng.choice([-1, 1], (30, 8)) * 10.0 ** rng.uniform(-300, 3, (30, 8)),
        "long": rng.normal(0, 3, (1, 3000)),
    }


#: The 16-bit formats take the kernel's float64 values, rounded again where that is not a midpoint.
WITH_16_BIT = {**FORMATS, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


@pytest.mark.parametrize("fmt_name", list(WITH_16_BIT))
@pytest.mark.parametrize(("name", "params"), VECTORS, ids=lambda v: str(v))
def test_vector_values_through_the_kernel_are_the_same_bits(
    name: str, params: dict[str, Any], fmt_name: str, variant: str
) -> None:
    entry, dtype = activations.get(name), WITH_16_BIT[fmt_name]
    bound = entry.bind(params)
    for case, x in _vectors(29).items():
        xs = x.astype(dtype)
        # (The gated units of every scale overflow float16: both refuse alike.)
        with_kernel, without = _on_and_off(functools.partial(entry.value, xs, bound, -1, dtype))
        if isinstance(without, str):
            assert with_kernel == without
            continue
        wrong = np.argwhere(~_same(with_kernel, without))
        assert not wrong.size, (
            case,
            [(tuple(i), with_kernel[tuple(i)], without[tuple(i)]) for i in wrong[:5]],
        )


def test_the_softmax_kernel_decides_nearly_every_ordinary_vector() -> None:
    x = np.random.default_rng(4).normal(0, 3, (1000, 100))
    for log in (False, True):
        decided = compiled.softmax(x, 1.0, log, False, "float64")
        assert decided is not None
        assert np.all(decided[1], axis=-1).mean() > 0.999


def test_parameters_of_extreme_magnitude_are_left_to_the_slower_routes() -> None:
    # An independent oracle found the kernel one unit off where a parameter's products underflow:
    # smelu's g f' at beta = 1e-300, squareplus' f' at b = 1e-310.
    x = np.array([-9.999999999999997e-301, 0.5])
    assert compiled.values("smelu", "derivative", x, {"beta": 1e-300}, "float64") is None
    assert compiled.values("squareplus", "derivative", x, {"b": 1e-310}, "float64") is None
    assert compiled.values("squareplus", "derivative", x, {"b": 1e100}, "float64") is not None
    entry = activations.get("smelu")
    params = entry.bind({"beta": 1e-300})
    got = entry.vector_jacobian_product(x[:1], np.array([-4504.137931619316]), params, -1, np.float64)
    assert got.tolist() == [-7.467001353768138e-13]  # the oracle's correctly rounded value


def test_gated_elements_the_kernel_leaves_are_finished_alone() -> None:
    """geglu's elements that gelu's kernel cannot decide (in float64, about 0.02%) go on one by
    one (not their whole vectors), and come out as without the kernel."""
    fmt_name = "float64"
    rng = np.random.default_rng(8)
    a, b = rng.normal(0, 1, (200, 500)), rng.normal(0, 3, (200, 500))
    left = compiled.values("gelu", "value", b, activations.get("gelu").bind(), fmt_name, a)
    assert left is not None
    assert np.count_nonzero(~left[1]) > 0, "some elements are left to the slower routes"
    entry, dtype = activations.get("geglu"), np.float64
    x = np.concatenate([a, b], axis=-1)
    with_kernel, without = _on_and_off(functools.partial(entry.value, x, entry.bind(), -1, dtype))
    assert _same(with_kernel, without).all()
