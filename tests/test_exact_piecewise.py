"""Correctly rounded results of the functions in elementwise.py and piecewise.py.

The engine (``correct.correctly_rounded``) evaluates each registry entry's exact
definitions; here its results are compared with the independent mpmath reference
(``tests/reference.py``; parameter derivatives written out below as exact
fractions), rounded to each format by integer arithmetic in this file: the
reference value m 2^e rounded to nearest, ties to even, to p significant bits
with the format's subnormals, or to inf beyond its largest number.

The reference is evaluated at enough bits that its own rounding cannot decide a
result.  Every piece of these functions but tanh is a polynomial of degree at
most 2 in x and the parameters, divided by 1, 2, 3, 4 or 6: with 200 bits more
than twice the span of the exponents involved, its sums and products are exact,
and a division by 3 of an exact N leaves a repeating ...0101... tail, which no
midpoint of a format comes within 2^-150 of.  tanh gets 200 bits more than twice
log2(1/|x|): its tiny-x terms x^3/3 and 4x^3/3 sit that far below x.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from fractions import Fraction

import gmpy2
import httpx
import mpmath as mp
import numpy as np
import pytest
from gmpy2 import mpfr

from service import activations
from service.activations import ResultOverflow, correct
from tests import reference

#: Every elementwise function registered in elementwise.py and piecewise.py, with the parameter
#: sets it is checked at (the defaults first).
CASES: dict[str, list[dict[str, float]]] = {
    "step": [{}],
    "identity": [{}],
    "sigmoid": [{}],
    "tanh": [{}],
    "relu": [{}],
    "leaky_relu": [
        {"negative_slope": 0.01},
        {"negative_slope": 0.0},
        {"negative_slope": 1.0},
        {"negative_slope": 0.3},
        {"negative_slope": 5e-324},
    ],
    "relu6": [{}],
    "hard_tanh": [
        {"min_val": -1.0, "max_val": 1.0},
        {"min_val": -2.5, "max_val": 0.75},
        {"min_val": 1e-300, "max_val": 1e300},
        {"min_val": -5e-324, "max_val": 5e-324},
    ],
    "hard_sigmoid": [{}],
    "hard_silu": [{}],
    "softshrink": [{"lambda": 0.5}, {"lambda": 0.0}, {"lambda": 1e-300}, {"lambda": 3.25}, {"lambda": 1e300}],
    "hardshrink": [{"lambda": 0.5}, {"lambda": 0.0}, {"lambda": 5e-324}, {"lambda": 1e10}],
    "threshold": [
        {"threshold": 0.0, "value": 0.0},
        {"threshold": 1.0, "value": -1.0},
        {"threshold": -2.5, "value": 7.0},
        {"threshold": 1e-300, "value": -1e300},
    ],
    "prelu": [{"weight": 0.25}, {"weight": -3.5}, {"weight": 1e300}, {"weight": 1e-300}, {"weight": 0.0}],
    "rrelu": [
        {"lower": 1 / 8, "upper": 1 / 3},
        {"lower": 0.0, "upper": 1.0},
        {"lower": 0.1, "upper": 0.7},
        {"lower": 5e-324, "upper": 1.0},
    ],
    "sparse_plus": [{}],
    "sparse_sigmoid": [{}],
    "relu_squared": [{}],
    "star_relu": [
        {"scale": 0.8944, "bias": -0.4472},
        {"scale": -3.5, "bias": 1e-300},
        {"scale": 1e-300, "bias": 0.0},
        {"scale": 1.0, "bias": -4.0},
    ],
    "smelu": [{"beta": 2.0}, {"beta": 1.0}, {"beta": 1e-300}, {"beta": 3.25}, {"beta": 1e300}],
}
#: sigmoid's definitions are tested with the smooth functions; it is listed to check the
#: registry's coverage.
MINE = [name for name in CASES if name != "sigmoid"]
FORMATS = ("float64", "float32", "float16", "bfloat16")
#: Significant bits, smallest and largest normal exponent: IEEE 754 (bfloat16: float32's range).
IEEE: dict[str, tuple[int, int, int]] = {
    "float64": (53, -1022, 1023),
    "float32": (24, -126, 127),
    "float16": (11, -14, 15),
    "bfloat16": (8, -126, 127),
}
QUANTITIES = {"value": "value", "derivative": "d1", "second_derivative": "d2"}

Exactly = Callable[[Fraction, dict[str, Fraction]], Fraction]


def _negative_part(scale: Fraction) -> Exactly:
    return lambda x, p: Fraction(0) if x > 0 else scale * x


#: dy/dtheta, as the catalog defines them (at jumps and kinks too), in exact arithmetic.
PARAM_GRADS: dict[str, dict[str, Exactly]] = {
    "leaky_relu": {"negative_slope": _negative_part(Fraction(1))},
    "hard_tanh": {
        "min_val": lambda x, p: Fraction(x <= p["min_val"]),
        "max_val": lambda x, p: Fraction(x >= p["max_val"]),
    },
    "softshrink": {
        "lambda": lambda x, p: Fraction(-1 if x > p["lambda"] else 1 if x < -p["lambda"] else 0),
    },
    "hardshrink": {"lambda": lambda x, p: Fraction(0)},
    "threshold": {
        "threshold": lambda x, p: Fraction(0),
        "value": lambda x, p: Fraction(x <= p["threshold"]),
    },
    "prelu": {"weight": _negative_part(Fraction(1))},
    "rrelu": {"lower": _negative_part(Fraction(1, 2)), "upper": _negative_part(Fraction(1, 2))},
    "star_relu": {"scale": lambda x, p: max(x, Fraction(0)) ** 2, "bias": lambda x, p: Fraction(1)},
    "smelu": {
        "beta": lambda x, p: (
            (x + p["beta"]) * (p["beta"] - x) / (4 * p["beta"] ** 2)
            if -p["beta"] < x < p["beta"]
            else Fraction(0)
        )
    },
}


# -- rounding to a format, independently of the engine ------------------------------------------


def _round(negative: bool, m: int, e: int, fmt: str) -> float:
    """(-1)^negative m 2^e (m >= 0) rounded to nearest, ties to even, in ``fmt``."""
    p, emin, emax = IEEE[fmt]
    if m == 0:
        return 0.0
    top = e + m.bit_length() - 1  # 2^top <= m 2^e < 2^(top + 1)
    quantum = max(top, emin) - (p - 1)
    if top > emax + 1:
        n, quantum = 1, emax + 1  # certainly inf
    elif quantum <= e:
        n = m << (e - quantum)
    else:
        shift = quantum - e
        if shift > m.bit_length() + 1:
            n = 0  # below half the quantum
        else:
            n, rest = m >> shift, m & ((1 << shift) - 1)
            half = 1 << (shift - 1)
            if rest > half or (rest == half and n % 2):
                n += 1
    overflows = n.bit_length() + quantum > emax + 1
    result = math.inf if n and overflows else math.ldexp(n, quantum)
    return -result if negative else result


def round_mpf(v: mp.mpf, fmt: str) -> float:
    m, e = v.man_exp  # |v| = m 2^e, exactly (abs(v) would round to mpmath's precision)
    return _round(v < 0, int(m), int(e), fmt)


def round_fraction(v: Fraction, fmt: str) -> float:
    num, den = abs(v.numerator), v.denominator
    if den & (den - 1) == 0:  # dyadic: exactly num 2^-k
        return _round(v < 0, num, -(den.bit_length() - 1), fmt)
    # Otherwise 1200 bits below the smallest subnormal, and a sticky bit for the rest: rounding
    # that to nearest is rounding v (the sticky bit lies far below every rounding position).
    k = 1200 + max(0, den.bit_length() - num.bit_length())
    m, rest = divmod(num << k, den)
    return _round(v < 0, 2 * m + (rest != 0), -k - 1, fmt)


def test_the_rounding_here_is_ieee_rounding() -> None:
    # float(Fraction) is correctly rounded for float64; NumPy's float64 -> float32/float16
    # conversions are rounded once, so they check the other formats' rounding on doubles.
    rng = np.random.default_rng(7)
    xs = np.concatenate(
        [
            np.ldexp(rng.uniform(1, 2, 3000), rng.integers(-160, 140, 3000)),
            np.ldexp(np.arange(1, 200, dtype=np.float64), -150),  # float32 subnormals and ties
            np.ldexp(np.arange(1, 200, dtype=np.float64), -26),  # float16 subnormals and ties
            [65504.0, 65519.99, 65520.0, 3.4028235677973366e38, 3.4028235677973362e38],
        ]
    )
    xs = np.concatenate([xs, -xs])
    with np.errstate(over="ignore"):
        for x in xs:
            v = mp.mpf(float(x))
            assert _bits(round_mpf(v, "float32")) == _bits(float(np.float32(x)))
            assert _bits(round_mpf(v, "float16")) == _bits(float(np.float16(x)))
    for a, b in [(1, 3), (-2, 7), (10**300 + 1, 3), (1, 10**330), (-1, 3 * 2**1074 + 1)]:
        q = Fraction(a, b)
        with mp.workprec(4000):
            assert round_mpf(mp.mpf(a) / b, "float64") == float(q)
    assert round_mpf(mp.mpf(2) ** -1075, "float64") == 0.0  # a tie with 0: to even
    assert round_mpf(mp.mpf(3) * mp.mpf(2) ** -1075, "float64") == 2 * 5e-324
    assert _bits(round_mpf(-(mp.mpf(2) ** -2000), "bfloat16")) == _bits(-0.0)
    assert round_mpf(mp.mpf(2) ** 1024, "float64") == math.inf
    assert round_mpf(-(mp.mpf(2) ** 128) * (1 - mp.mpf(2) ** -9), "bfloat16") == -math.inf
    assert round_mpf((mp.mpf(2) ** 128) * (1 - mp.mpf(2) ** -8), "bfloat16") == 3.3895313892515355e38


def _bits(v: float) -> bytes:
    return struct.pack("<d", v)


# -- the reference ---------------------------------------------------------------------------


def reference_bits(name: str, x: float, params: dict[str, float]) -> int:
    """200 bits and twice the span of the exponents of x, the parameters and the constants (1 to 6),
    so that sums and products are exact; for tanh, 200 and twice the bits below 1 that x starts at."""
    if name == "tanh":
        return 200 + 2 * max(0, -math.frexp(x)[1])
    exponents = [math.frexp(v)[1] for v in (x, 1.0, 6.0, *params.values()) if v != 0]
    return 200 + 2 * (max(exponents) - min(exponents))


def reference_value(name: str, quantity: str, x: float, params: dict[str, float]) -> mp.mpf:
    fn = getattr(reference.ELEMENTWISE[name], QUANTITIES[quantity])
    with mp.workprec(reference_bits(name, x, params)):
        return +fn(mp.mpf(x), **params)


def expected(name: str, quantity: str, x: float, params: dict[str, float], param: str | None) -> list[float]:
    """The correctly rounded quantity in each of FORMATS."""
    if param is not None:
        exact = PARAM_GRADS[name][param](Fraction(x), {k: Fraction(v) for k, v in params.items()})
        return [round_fraction(exact, fmt) for fmt in FORMATS]
    value = reference_value(name, quantity, x, params)
    return [round_mpf(value, fmt) for fmt in FORMATS]


def engine(name: str, quantity: str, x: float, params: dict[str, float], param: str | None) -> list[float]:
    fn = correct.function_of(activations.get(name), quantity, param)
    return [correct.correctly_rounded(fn, x, params, correct.FORMATS[fmt]) for fmt in FORMATS]


def quantities(name: str) -> Iterator[tuple[str, str | None]]:
    for quantity in QUANTITIES:
        yield quantity, None
    for param in PARAM_GRADS.get(name, {}):
        yield "value", param


# -- the points --------------------------------------------------------------------------------

HUGE = float(np.finfo(np.float64).max)
SMALLEST = 5e-324


def breakpoints(name: str, params: dict[str, float]) -> list[float]:
    """x = 0 and every kink of the entry, parameter-defined ones at these parameters."""
    out = [0.0]
    for kink in activations.get(name).kinks:
        at = kink.at
        if isinstance(at, str):
            at = -params[at[1:]] if at.startswith("-") else params[at]
        out.append(at)
    return out


def fixed_points(name: str, params: dict[str, float]) -> list[float]:
    """Breakpoints and their neighbours, signed zeros, tiny and huge magnitudes."""
    magnitudes = [
        SMALLEST,
        2 * SMALLEST,
        3 * SMALLEST,
        2.0**-1074 * 12345,
        2.0**-1022,
        np.nextafter(2.0**-1022, 0),
        2.0**-149,
        1.5 * 2.0**-149,
        2.0**-133,
        2.0**-24,
        1e-300,
        1e-30,
        2.0**-27,
        1e-8,
        0.1,
        0.5,
        1.0,
        2.0,
        3.0,
        6.0,
        20.0,
        19.07,
        700.0,
        2048.0,
        3000.0,
        1e8,
        1e150,
        1.3407807929942596e154,
        1e200,
        1e300,
        1e308,
        HUGE,
    ]
    out = [0.0, -0.0, *magnitudes, *(-m for m in magnitudes)]
    for b in breakpoints(name, params):
        out.append(b)
        lo = hi = b
        for _ in range(3):
            lo, hi = float(np.nextafter(lo, -math.inf)), float(np.nextafter(hi, math.inf))
            out += [lo, hi]
        for k in (1, 10, 30, 52, 60, 200):
            step = math.ldexp(max(abs(b), 1.0), -k)
            out += [b - step, b + step]
    return [x for x in out if math.isfinite(x)]


def random_points(name: str, params: dict[str, float], seed: int) -> list[float]:
    """Log-uniform over the whole range, uniform over [-8, 8], close to each breakpoint at many
    scales, and midpoints of the narrower formats (where ties to even decide)."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], 400)
    out = list(sign[:150] * np.ldexp(rng.uniform(1, 2, 150), rng.integers(-1074, 1024, 150)))
    out += list(rng.uniform(-8, 8, 80))
    for b in breakpoints(name, params):
        scale = np.ldexp(max(abs(b), 1.0), -rng.integers(0, 60, 30))
        out += list(b + rng.standard_normal(30) * scale)
    for fmt in ("float32", "float16", "bfloat16"):
        p, emin, emax = IEEE[fmt]
        e = rng.integers(emin - p, emax, 25)
        m = rng.integers(1 << (p - 1), 1 << p, 25).astype(np.float64)
        # (2m + 1) 2^(e - p): halfway between m 2^(e-p+1) and (m + 1) 2^(e-p+1).
        out += list(sign[150:175] * np.ldexp(2 * m + 1, e - p))
    return [float(x) for x in out if math.isfinite(x)]


def points(name: str, params: dict[str, float], seed: int) -> list[float]:
    return fixed_points(name, params) + random_points(name, params, seed)


def _mismatches(name: str, params: dict[str, float], xs: list[float]) -> list[str]:
    bad = []
    for quantity, param in quantities(name):
        for x in xs:
            want = expected(name, quantity, x, params, param)
            got = engine(name, quantity, x, params, param)
            if list(map(_bits, got)) != list(map(_bits, want)):
                what = f"d/d{param}" if param else quantity
                bad.append(f"{what} at x={x!r} {params}: got {got}, expected {want} ({FORMATS})")
    return bad


# -- the registry ---------------------------------------------------------------------------------


def test_every_elementwise_and_piecewise_function_has_exact_definitions() -> None:
    ours = {
        e.name
        for e in activations.entries()
        if e.forward.__module__ in ("service.activations.elementwise", "service.activations.piecewise")
    }
    assert ours == set(CASES)
    for name in ours:
        entry = activations.get(name)
        assert entry.exact is not None, name
        assert set(entry.exact.params) == {p.name for p in entry.params}, name
        assert set(PARAM_GRADS.get(name, {})) == {p.name for p in entry.params}, name
        assert CASES[name][0] == entry.bind(), f"{name}: the defaults come first"
        for params in CASES[name]:
            entry.bind(params)  # within the bounds


@pytest.mark.parametrize("precision", [72, 117, 300])
@pytest.mark.parametrize("name", MINE)
def test_results_carry_the_working_precision(name: str, precision: int) -> None:
    entry = activations.get(name)
    params = {k: mpfr(v, 53) for k, v in CASES[name][-1].items()}
    for quantity, param in quantities(name):
        fn = correct.function_of(entry, quantity, param)
        for x in (-7.0, -1.0, -0.0, 0.5, 2.0**-1074, 5.0, 1e308):
            with gmpy2.context(gmpy2.get_context(), precision=precision):
                r = fn(mpfr(x, 53), **params)
            assert isinstance(r, type(mpfr(0))), (name, quantity, param, x)
            assert r.precision == precision, (name, quantity, param, x)


# -- correctly rounded, against the reference ----------------------------------------------------


@pytest.mark.parametrize("name", MINE)
def test_correctly_rounded_at_breakpoints_extremes_and_random_points(name: str) -> None:
    bad: list[str] = []
    checked = 0
    for i, params in enumerate(CASES[name]):
        xs = points(name, params, seed=1000 * MINE.index(name) + i)
        checked += len(xs)
        bad += _mismatches(name, params, xs)
    assert checked > 400
    assert not bad, f"{len(bad)} mismatches, first: " + "\n".join(bad[:10])


#: Inputs at which the formula evaluated with MPFR's rounding to nearest at the working precision
#: lands exactly on a midpoint of the format at 64 and at 128 extra bits alike, while the true
#: value lies to one side: the engine then stops, and the tie to even goes the wrong way.
HARD = [
    # x - lambda, float32: 1 + 2^-23 (below the midpoint 1 + 3 2^-24), not 1 + 2^-22.
    ("softshrink", "value", 1.0 + 3 * 2.0**-24, {"lambda": 1e-300}),
    ("softshrink", "value", -(1.0 + 3 * 2.0**-24), {"lambda": 1e-300}),
    ("softshrink", "value", 1.0 + 3 * 2.0**-11, {"lambda": 2.0**-300}),  # float16
    ("softshrink", "value", 1.0 + 3 * 2.0**-8, {"lambda": 2.0**-600}),  # bfloat16
    # x/2 + x^2/6, float64: just above 2^-1075, so 2^-1074, not 0.
    ("hard_silu", "value", SMALLEST, {}),
    # x - x^3/3 and -2x + 8x^3/3, float32: just inside the midpoint x (-2x).
    ("tanh", "value", 2.0**-100 * (1 + 3 * 2.0**-24), {}),
    ("tanh", "second_derivative", 2.0**-101 * (1 + 3 * 2.0**-24), {}),
    # The slope (lower + upper)/2, bfloat16: (1 + 2^-8)/4 + 2^-1075 rounds up.
    ("rrelu", "derivative", -1.0, {"lower": 5e-324, "upper": (1 + 2.0**-8) / 2}),
    ("rrelu", "value", -1.0, {"lower": 5e-324, "upper": (1 + 2.0**-8) / 2}),
]
#: The same formulas rounded to nearest at the working precision.
NAIVE: dict[tuple[str, str], Callable[..., mpfr]] = {
    ("softshrink", "value"): lambda x, **p: x - p["lambda"] if x > 0 else x + p["lambda"],
    ("hard_silu", "value"): lambda x: x * (x + 3) / 6,
    ("tanh", "value"): lambda x: gmpy2.tanh(x),
    ("tanh", "second_derivative"): lambda x: -2 * gmpy2.tanh(x) * gmpy2.sech(x) ** 2,
    ("rrelu", "derivative"): lambda x, lower, upper: (lower + upper) / 2,
    ("rrelu", "value"): lambda x, lower, upper: (lower + upper) / 2 * x,
}


@pytest.mark.parametrize(("name", "quantity", "x", "params"), HARD)
def test_midpoints_at_the_working_precision(
    name: str, quantity: str, x: float, params: dict[str, float]
) -> None:
    want = expected(name, quantity, x, params, None)
    assert engine(name, quantity, x, params, None) == want
    # The case is a hard one: the formula rounded to nearest at the working precision lands on a
    # midpoint at every precision tried; the engine never takes a midpoint for an answer, so it
    # gets even the naive formula right.
    naive = [
        correct.correctly_rounded(NAIVE[name, quantity], x, params, correct.FORMATS[fmt]) for fmt in FORMATS
    ]
    assert naive == want


# -- every 7th input of the 16-bit formats --------------------------------------------------------


#: Every STRIDE-th bit pattern, from an offset that differs between functions: together they see all.
STRIDE = 7


def sixteen_bit_inputs(fmt: str, offset: int) -> list[float]:
    bits = np.arange(offset, 1 << 16, STRIDE, dtype=np.uint16)
    with np.errstate(invalid="ignore"):  # the NaN patterns
        if fmt == "float16":
            values = bits.view(np.float16).astype(np.float64)
        else:
            values = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return [float(v) for v in values if math.isfinite(v)]


@pytest.mark.parametrize("name", MINE)
def test_sixteen_bit_inputs(name: str) -> None:
    entry = activations.get(name)
    params = CASES[name][0]
    offset = MINE.index(name) % STRIDE
    bad = []
    for fmt in ("float16", "bfloat16"):
        target = correct.FORMATS[fmt]
        xs = sixteen_bit_inputs(fmt, offset)
        assert len(xs) > 9000
        for quantity in ("value", "derivative"):
            fn = correct.function_of(entry, quantity)
            for x in xs:
                got = correct.correctly_rounded(fn, x, params, target)
                want = round_mpf(reference_value(name, quantity, x, params), fmt)
                if _bits(got) != _bits(want):
                    bad.append(f"{quantity} at {fmt} x={x!r}: got {got!r}, expected {want!r}")
    assert not bad, f"{len(bad)} mismatches, first: " + "\n".join(bad[:10])


# -- the semantics: the NumPy functions of the same entry -------------------------------------------


def _numpy(
    entry: activations.Activation, quantity: str, param: str | None, x: np.ndarray, params: dict[str, float]
) -> np.ndarray:
    if param is not None:
        return entry.parameter_jacobian(x, params)[param]
    if quantity == "value":
        return entry.value(x, params)
    if quantity == "derivative":
        return entry.jacobian(x, params)
    return entry.second_derivative(x, params)


@pytest.mark.parametrize("name", MINE)
def test_numpy_agrees_within_a_few_ulps_away_from_kinks(name: str) -> None:
    entry = activations.get(name)
    for i, params in enumerate(CASES[name]):
        marks = breakpoints(name, params)
        xs = [
            x
            for x in random_points(name, params, seed=77 + i) + fixed_points(name, params)
            if all(abs(x - b) > 1e-9 * max(1.0, abs(b)) for b in marks)
        ]
        for quantity, param in quantities(name):
            fn = correct.function_of(entry, quantity, param)
            exact = np.array(
                [correct.correctly_rounded(fn, x, params, correct.FORMATS["float64"]) for x in xs]
            )
            x = np.array(xs)
            finite = np.isfinite(exact)
            if param is not None:  # dydparams holds every parameter's derivative: all must fit
                for other in entry.params:
                    if other.name != param:
                        of = correct.function_of(entry, quantity, other.name)
                        finite &= np.isfinite(
                            [correct.correctly_rounded(of, v, params, correct.FORMATS["float64"]) for v in xs]
                        )
            for big in x[~finite]:  # the true result exceeds float64: the core refuses it
                with pytest.raises(ResultOverflow):
                    _numpy(entry, quantity, param, np.array([big]), params)
            got = _numpy(entry, quantity, param, x[finite], params)
            want = exact[finite]
            with np.errstate(over="ignore"):  # the spacing at the largest double is inf
                error = np.abs(got - want) / np.spacing(np.abs(want))
            worst = int(np.argmax(error)) if error.size else 0
            assert error.size == 0 or error[worst] <= 4, (
                f"{name} {param or quantity} {params} at x={x[finite][worst]!r}: "
                f"NumPy {got[worst]!r}, correctly rounded {want[worst]!r}"
            )


def _at(value: float | str, params: dict[str, float]) -> float:
    if isinstance(value, str):
        return -params[value[1:]] if value.startswith("-") else params[value]
    return value


@pytest.mark.parametrize("name", [n for n in MINE if activations.get(n).kinks])
def test_kink_conventions_are_the_catalogs(name: str) -> None:
    # At each kink the exact derivatives take the catalog's values, as the NumPy ones do.
    entry = activations.get(name)
    params = entry.bind()
    fmt = correct.FORMATS["float64"]
    for kink in entry.kinks:
        x = _at(kink.at, params)
        d1 = correct.correctly_rounded(correct.function_of(entry, "derivative"), x, params, fmt)
        d2 = correct.correctly_rounded(correct.function_of(entry, "second_derivative"), x, params, fmt)
        assert d1 == _at(kink.derivative, params) == float(entry.jacobian(np.array([x]), params)[0])
        assert kink.second_derivative is not None
        assert d2 == _at(kink.second_derivative, params)
        assert d2 == float(entry.second_derivative(np.array([x]), params)[0])


# -- products that are exact midpoints -----------------------------------------------------------

#: f' of the piecewise-quadratic functions (and d/dbeta of smelu), exactly: rationals with a 3 or
#: a beta in the denominator, so g f' can be a midpoint of a format while f' is not dyadic.
TIE_DERIVATIVES: dict[str, Exactly] = {
    "hard_silu": lambda x, p: Fraction(0) if x <= -3 else Fraction(1) if x >= 3 else (2 * x + 3) / 6,
    "hard_sigmoid": lambda x, p: Fraction(1, 6) if -3 < x < 3 else Fraction(0),
    "smelu": lambda x, p: (
        Fraction(0)
        if x <= -p["beta"]
        else Fraction(1)
        if x >= p["beta"]
        else (x + p["beta"]) / (2 * p["beta"])
    ),
}


def _is_midpoint(v: Fraction, fmt: str) -> bool:
    nudge = abs(v) / 2**200
    return v != 0 and round_fraction(v - nudge, fmt) != round_fraction(v + nudge, fmt)


def _ties(
    derivative: Exactly, params: dict[str, float], fmt: str, seed: int, count: int
) -> list[tuple[float, float]]:
    """Pairs (x, g) of the format's numbers where g f'(x) is exactly a midpoint of the format and
    f'(x) is not dyadic (a rational rounded before the product misses such a tie)."""
    rng = np.random.default_rng(seed)
    p = {k: Fraction(v) for k, v in params.items()}
    bits, emin, _ = IEEE[fmt]
    bottom = emin - bits + 1  # the exponent of the smallest subnormal
    found: list[tuple[float, float]] = []
    for _ in range(100_000):
        # x and g of few significant bits: a product on a midpoint has at most the format's
        x = round_fraction(Fraction(int(rng.integers(-3584, 3585)), 1024), fmt)
        # g = +-k 2^j, half the time with a product in the subnormals (where every float64 tie
        # of a 3 in the denominator lies), half anywhere up to 8
        low = rng.random() < 0.5
        j = bottom + int(rng.integers(0, 24)) if low else int(rng.integers(bottom, 4 - bits))
        g = round_fraction(
            int(rng.integers(1, 1 << min(bits, 12))) * Fraction(2) ** j * int(rng.choice([-1, 1])), fmt
        )
        d = derivative(Fraction(x), p)
        if d.denominator & (d.denominator - 1) and _is_midpoint(Fraction(g) * d, fmt):
            found.append((x, g))
            if len(found) == count:
                break
    return found


@pytest.mark.parametrize("fmt", ["float64", "float16", "bfloat16"])
@pytest.mark.parametrize(
    ("name", "params"),
    [("hard_silu", {}), ("hard_sigmoid", {}), ("smelu", {"beta": 0.75}), ("smelu", {"beta": 3.0})],
)
async def test_products_on_a_midpoint_round_to_even(
    client: httpx.AsyncClient, name: str, params: dict[str, float], fmt: str
) -> None:
    """g f'(x) exactly halfway between two numbers of the format rounds to the even one, and so
    does a sum of g dy/dbeta (it came out on either side when f' was rounded before the product)."""
    derivative = TIE_DERIVATIVES[name]
    ties = _ties(derivative, params, fmt, seed=len(name) + len(fmt), count=60)
    assert len(ties) >= 20, "the search finds ties"
    xs, gs = [t[0] for t in ties], [t[1] for t in ties]
    r = await client.post(
        "/derivative", json={"activation": name, "x": xs, "grad": gs, "params": params, "dtype": fmt}
    )
    assert r.status_code == 200, r.text
    p = {k: Fraction(v) for k, v in params.items()}
    want = [round_fraction(Fraction(g) * derivative(Fraction(x), p), fmt) for x, g in ties]
    # (16-bit results come back as the shortest decimals that round to them)
    got = [math.copysign(round_fraction(Fraction(v), fmt), v) for v in r.json()["grad_x"]]
    assert [_bits(v) for v in got] == [_bits(v) for v in want]
    if name != "smelu":
        return
    # A sum of g dy/dbeta: of one element, on a midpoint (the sum is that product).
    d_beta = PARAM_GRADS["smelu"]["beta"]
    sums = _ties(d_beta, params, fmt, seed=3, count=5)
    assert len(sums) >= 3, "the search finds ties"
    for x, g in sums:
        r = await client.post(
            "/derivative",
            json={"activation": name, "x": [x], "grad": [g], "params": params, "dtype": fmt, "wrt": "params"},
        )
        assert r.status_code == 200, r.text
        want_sum = round_fraction(Fraction(g) * d_beta(Fraction(x), p), fmt)
        total = r.json()["grad_params"]["beta"]
        assert _bits(math.copysign(round_fraction(Fraction(total), fmt), total)) == _bits(want_sum)
