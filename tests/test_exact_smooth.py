"""Correctly rounded results of the functions in smooth.py.

The engine (``correct.correctly_rounded``) evaluates each registry entry's exact
definitions with MPFR; here its results are compared, in float64, float32,
float16 and bfloat16, with the independent mpmath reference (``tests/reference.py``;
the parameter derivatives are written out below) rounded to each format by integer
arithmetic in this file: the reference value as an exact fraction, rounded to
nearest, ties to even, to p significant bits with the format's subnormals, or to
inf beyond its largest number.

The reference is evaluated at 60 digits, and again at 200, 600 and 1600 where its
value lies within 10^-(digits/2) (relative) of a rounding boundary of some format
(a midpoint between two neighbours): the reference itself is then decided by
digits it does not have.  A few results lie closer to a boundary than any of
these (x Phi(x) at x = 1000 is x - 10^-217000 and x may be a midpoint of
float32); for those the side of the boundary is given from the function's shape
(x Phi(x) < x).

Points: the audit's hard cases and the roots of f' and f'' (on a grid of +-0.3
around each), kinks, +-0, the exp overflow and underflow windows, tiny and huge
magnitudes, seeded random inputs over every scale, every SWEEP_STRIDE-th finite
float16 and bfloat16 input, and inputs built so that a result lies a vanishing
correction away from a midpoint.  Last, the correctly rounded float64 results are
compared with the NumPy core (a check of the semantics, not an oracle).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest

from service import activations
from service.activations import correct
from tests import reference
from tests.test_exact_piecewise import _bits, round_fraction

FORMATS = ("float64", "float32", "float16", "bfloat16")
#: significant bits, exponent of the smallest subnormal, exponent of the largest binade.
SPEC: dict[str, tuple[int, int, int]] = {
    "float64": (53, -1074, 1023),
    "float32": (24, -149, 127),
    "float16": (11, -24, 15),
    "bfloat16": (8, -133, 127),
}
DIGITS = (60, 200, 600, 1600)

#: The functions of smooth.py and the parameter sets they are checked at (the defaults first).
CASES: dict[str, list[dict[str, float]]] = {
    "elu": [{"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 0.0}],
    "selu": [{}],
    "celu": [{"alpha": 1.0}, {"alpha": 2.5}, {"alpha": 0.3}],
    "gelu": [{}],
    "gelu_tanh": [{}],
    "silu": [{"beta": 1.0}, {"beta": 1.7}, {"beta": 0.0}],
    "quick_gelu": [{}],
    "mish": [{}],
    "softplus": [{"beta": 1.0}, {"beta": 2.0}, {"beta": 0.3}],
    "softsign": [{}],
    "log_sigmoid": [{}],
    "tanhshrink": [{}],
    "squareplus": [{"b": 4.0}, {"b": 0.5}, {"b": 1e-6}],
    "exponential": [{}],
    "snake": [{"a": 1.0}, {"a": 0.37}, {"a": 25.0}],
    "xielu": [
        {"alpha_p": 0.8, "alpha_n": 0.8, "beta": 0.5, "eps": -1e-6},
        {"alpha_p": 0.3, "alpha_n": 1.7, "beta": -0.25, "eps": -1e-3},
        {"alpha_p": 2.5, "alpha_n": 0.6, "beta": 1.1, "eps": 0.0},
        # beta = alpha_n: beta x and alpha_n (-1 - x) cancel, and far out f = -alpha_n
        {"alpha_p": 0.8, "alpha_n": 0.8, "beta": 0.8, "eps": -1e-6},
        {"alpha_p": 0.8, "alpha_n": 1e-300, "beta": 1e-300, "eps": -1e-6},
    ],
}
NAMES = list(CASES)

# -- exact rounding ------------------------------------------------------------------------------


#: Magnitudes beyond every format: an mpf below 2^-1200 rounds to +-0, above 2^1200 to +-inf, in
#: each of them, and stands for itself as +-2^-1200 or +-2^1200 (mpmath's exponents are unbounded).
FAR = 1200


def fraction(v: mp.mpf) -> Fraction:
    """A finite mpf as the exact rational it is (see FAR)."""
    sign, man, exp, _ = v._mpf_
    if not man:
        return Fraction(0)
    man, exp = (-int(man) if sign else int(man)), int(exp)
    top = exp + abs(man).bit_length()
    if top < -FAR or top > FAR:
        magnitude = Fraction(1, 1 << FAR) if top < -FAR else Fraction(1 << FAR)
        return magnitude if man > 0 else -magnitude
    return Fraction(man << exp) if exp >= 0 else Fraction(man, 1 << -exp)


@dataclass(frozen=True)
class Rounded:
    value: float
    #: Distance from q to the nearest rounding boundary (a midpoint), relative to |q|.
    margin: Fraction


def round_to(q: Fraction, fmt: str, side: int = 0) -> Rounded:
    """q rounded to nearest, ties to even, to ``fmt``; -0.0 for a negative q that rounds to 0.

    ``side`` (+1 or -1) says that the true value lies infinitesimally above or below q: it decides
    an exact tie.
    """
    precision, qmin, emax = SPEC[fmt]
    if q == 0:
        return Rounded(0.0, Fraction(1))
    negative = q < 0
    a = -q if negative else q
    side = -side if negative else side  # now the side of |q|
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2^e <= a < 2^(e+1)
    if (a.numerator << max(-e, 0)) < (a.denominator << max(e, 0)):
        e -= 1
    quantum = max(e - precision + 1, qmin)
    num = a.numerator << max(-quantum, 0)
    den = a.denominator << max(quantum, 0)
    whole, rest = divmod(num, den)
    twice = 2 * rest
    if twice > den or (twice == den and (side > 0 or (side == 0 and whole % 2 == 1))):
        whole += 1
    margin = Fraction(abs(twice - den), 2 * num)  # (|rest - 1/2| quantum) / |q|
    # Beyond the largest number, (2^p - 1) 2^(emax - p + 1): inf.
    too_large = (
        whole > (1 << precision) - 1 if quantum == emax - precision + 1 else quantum > emax - precision + 1
    )
    out = math.inf if too_large else math.ldexp(whole, quantum)  # exact: whole has <= p + 1 bits
    return Rounded(-out if negative else out, margin)


def test_round_to_itself() -> None:
    """The rounding used as the oracle, on numbers whose roundings are known."""
    tiny64 = Fraction(1, 1 << 1074)
    assert round_to(tiny64, "float64").value == 5e-324
    assert round_to(tiny64 / 2, "float64").value == 0.0  # a tie: to even, 0
    assert round_to(tiny64 / 2, "float64", side=1).value == 5e-324
    assert math.copysign(1.0, round_to(-tiny64 / 3, "float64").value) == -1.0
    assert round_to(3 * tiny64 / 2, "float64").value == 2 * 5e-324  # a tie: to even, 2
    assert round_to(Fraction(1) + Fraction(1, 1 << 24), "float32").value == 1.0
    assert round_to(Fraction(1) + Fraction(3, 1 << 24), "float32").value == 1.0 + 2.0**-22
    assert round_to(Fraction(1) + Fraction(3, 1 << 24), "float32", side=-1).value == 1.0 + 2.0**-23
    assert round_to(Fraction(-1) - Fraction(3, 1 << 24), "float32", side=1).value == -1.0 - 2.0**-23
    assert round_to(Fraction(65520), "float16").value == math.inf  # the overflow threshold: a tie
    assert round_to(Fraction(65519), "float16").value == 65504.0
    assert round_to(Fraction(1, 1 << 25), "float16").value == 0.0
    assert round_to(Fraction(3, 1 << 26), "float16").value == 2.0**-24
    assert round_to(Fraction(1) + Fraction(1, 1 << 8), "bfloat16").value == 1.0
    for v in (0.1, -1e-310, 3.0e38, 1e-45, 6e-8, 2.5, -70000.0):
        assert round_to(Fraction(v), "float64").value == v
        assert round_to(Fraction(v), "float32").value == float(np.float32(v))
        with np.errstate(over="ignore"):
            assert round_to(Fraction(v), "float16").value == float(np.float16(v))
    assert round_to(Fraction(1, 3), "float64").margin > Fraction(1, 10**17)
    assert fraction(mp.mpf(-0.75)) == Fraction(-3, 4)
    assert fraction(mp.mpf(2) ** -5000) == Fraction(1, 1 << FAR)
    assert fraction(-(mp.mpf(2) ** 5000)) == -Fraction(1 << FAR)
    assert round_to(Fraction(1) + Fraction(1, 1 << 53), "float64").margin == 0


# -- the reference, rounded ---------------------------------------------------------------------


def expected(
    ref: Callable[[], mp.mpf], formats: Iterable[str], side: int = 0, digits: tuple[int, ...] = DIGITS
) -> tuple[dict[str, float], bool]:
    """The reference rounded to each format, and whether the reference value is exactly 0.

    Evaluated at more digits while its value lies within 10^-(digits/2) of a rounding boundary;
    still exactly on a boundary at the last (an exact tie, or a side given): ``side`` decides.
    """
    formats = list(formats)
    for d in digits:
        with mp.workdps(d):
            q = fraction(mp.mpf(ref()))
        rounded = {fmt: round_to(q, fmt) for fmt in formats}
        close = Fraction(1, 10 ** (d // 2))
        if all(r.margin > close for r in rounded.values()):
            return {fmt: r.value for fmt, r in rounded.items()}, q == 0
    # At the last digits: a margin above 10^-(digits - 200) is the reference's (its formulas lose
    # far fewer digits than that); an exact tie is a tie, unless a side is given.
    close = Fraction(1, 10 ** (digits[-1] - 200))
    undecided = [fmt for fmt, r in rounded.items() if 0 < r.margin <= close]
    assert not undecided, f"the reference cannot decide {undecided} (value {float(q)!r})"
    return {fmt: round_to(q, fmt, side).value for fmt in formats}, q == 0


def same(got: float, want: float, check_sign: bool = True) -> bool:
    if got != want:
        return False
    return not check_sign or math.copysign(1.0, got) == math.copysign(1.0, want)


# -- parameter derivatives (closed forms, mpmath) -----------------------------------------------


def _celu_alpha(x: mp.mpf, alpha: float) -> mp.mpf:
    if x > 0:
        return mp.mpf(0)
    t = x / alpha
    if t == 0:
        return mp.mpf(0)
    # expm1(t) - t e^t ~ -t^2/2: the terms agree to log10(1/|t|) digits.
    with mp.extradps(int(max(0, -mp.log10(abs(t)))) + 10):
        t = mp.mpf(x) / alpha
        return mp.expm1(t) - t * mp.exp(t)


def _softplus_beta(x: mp.mpf, beta: float) -> mp.mpf:
    # d/dbeta log(1 + e^(beta x)) / beta = (z sigma(z) - softplus(z)) / beta^2, z = beta x.
    z = beta * x
    if z > 2000:
        # The two terms agree to z / ln 10 digits: the difference, -(z sigma(-z) + log1p(e^-z)).
        return -(z * reference.sig(-z) + mp.log1p(mp.exp(-z))) / beta**2
    with mp.extradps(int(max(z, 0) / 2.3) + 10):
        z = beta * mp.mpf(x)
        return (z * reference.sig(z) - mp.log1p(mp.exp(z))) / mp.mpf(beta) ** 2


PARAM_REFERENCE: dict[str, dict[str, Callable[..., mp.mpf]]] = {
    "elu": {"alpha": lambda x, alpha: mp.mpf(0) if x > 0 else mp.expm1(x)},
    "celu": {"alpha": _celu_alpha},
    "silu": {"beta": lambda x, beta: x * x * reference.dsig(beta * x)},
    "softplus": {"beta": _softplus_beta},
    "squareplus": {"b": lambda x, b: 1 / (4 * mp.sqrt(x * x + b))},
    "snake": {"a": lambda x, a: x * mp.sin(2 * a * x) / a - mp.sin(a * x) ** 2 / mp.mpf(a) ** 2},
    "xielu": {
        "alpha_p": lambda x, alpha_p, alpha_n, beta, eps: x * x if x > 0 else mp.mpf(0),
        "alpha_n": lambda x, alpha_p, alpha_n, beta, eps: _xielu_alpha_n(x, eps),
        "beta": lambda x, alpha_p, alpha_n, beta, eps: x,
        "eps": lambda x, alpha_p, alpha_n, beta, eps: alpha_n * mp.exp(eps) if eps <= x <= 0 else mp.mpf(0),
    },
}


def _xielu_alpha_n(x: mp.mpf, eps: float) -> mp.mpf:
    if x > 0:
        return mp.mpf(0)
    m = x if x < eps else mp.mpf(eps)
    with mp.extradps(int(max(0, -mp.log10(abs(x)))) + 10 if x else 10):
        return mp.expm1(m) - x


def _numerical_parameter_derivative(name: str, x: mp.mpf, params: Mapping[str, float], p: str) -> mp.mpf:
    value = reference.ELEMENTWISE[name].value
    rest = {k: v for k, v in params.items() if k != p}
    return mp.diff(lambda theta: value(x, **rest, **{p: theta}), mp.mpf(params[p]))


def test_parameter_derivatives_match_numerical_differentiation() -> None:
    """The closed forms above against mpmath's numerical derivative of the reference value."""
    points = [-30.0, -3.0, -0.7, -1e-3, 0.4, 2.0, 25.0]
    with mp.workdps(40):
        for name, grads in PARAM_REFERENCE.items():
            for params in CASES[name]:
                for p, grad in grads.items():
                    if params[p] == 0.0:
                        continue
                    for x in points:
                        if x in params.values():
                            continue  # a kink (xielu's eps): the difference quotient straddles it
                        numeric = _numerical_parameter_derivative(name, mp.mpf(x), params, p)
                        exact = grad(mp.mpf(x), **params)
                        assert abs(numeric - exact) <= mp.mpf(10) ** -25 * (1 + abs(exact)), (name, p, x)


# -- the engine against the reference -----------------------------------------------------------

Quantity = tuple[str, str | None, Callable[..., mp.mpf]]


def quantities(name: str) -> list[Quantity]:
    """(quantity, parameter, reference) for every exact definition of the entry."""
    ref = reference.ELEMENTWISE[name]
    out: list[Quantity] = [
        ("value", None, ref.value),
        ("derivative", None, ref.d1),
        ("second_derivative", None, ref.d2),
    ]
    out += [("value", p, grad) for p, grad in PARAM_REFERENCE.get(name, {}).items()]
    return out


def tail_side(name: str, quantity: str, param: str | None, x: float, params: Mapping[str, float]) -> int:
    """Where a value is a short binary number m (x, x - 1, -alpha) plus a transcendental correction
    too small for the reference's digits (e^-x^2/2 at x = 710), the side of m it lies on, from the
    shape of the function: f(x) < x, f(x) > x, f(x) > -alpha."""
    if quantity != "value" or param is not None:
        return 0
    if name in ("gelu", "gelu_tanh", "quick_gelu", "mish") or (name == "silu" and params["beta"] > 0):
        return -1 if x > 0 else 0  # x sigma(...) < x
    if name == "softplus":
        return 1 if x > 0 else 0  # log(1 + e^(beta x)) / beta > x
    if name == "log_sigmoid":
        return -1 if x < 0 else 0  # -log(1 + e^-x) < min(x, 0)
    if name == "tanhshrink":
        return 0 if abs(x) < 1 else (1 if x > 0 else -1)  # x - tanh x against x -+ 1
    if name in ("elu", "celu") and params["alpha"] > 0:
        return 1 if x < 0 else 0  # alpha (e^... - 1) > -alpha
    return 0


def failures(
    name: str,
    params: Mapping[str, float],
    xs: Iterable[float],
    formats: Iterable[str] = FORMATS,
) -> list[str]:
    """Every (quantity, x, format) where the engine and the rounded reference differ."""
    entry = activations.get(name)
    formats = list(formats)
    bad: list[str] = []
    for quantity, param, ref in quantities(name):
        fn = correct.function_of(entry, quantity, param)
        for x in xs:
            side = tail_side(name, quantity, param, x, params)
            want, zero = expected(lambda ref=ref, x=x: ref(mp.mpf(x), **params), formats, side)
            for fmt in formats:
                got = correct.correctly_rounded(fn, x, params, correct.FORMATS[fmt])
                # An exact 0 from the reference is checked by value only where the reference
                # takes a tail as 0 (gelu beyond |x| = 1e5); the signs there: test_underflow_signs.
                if not same(got, want[fmt], check_sign=not zero):
                    bad.append(
                        f"{name}{dict(params)} {param or quantity} x={x!r} {fmt}: {got!r} != {want[fmt]!r}"
                    )
    return bad


def _assert_none(bad: list[str]) -> None:
    assert not bad, f"{len(bad)} mismatches, e.g.\n" + "\n".join(bad[:20])


# -- points --------------------------------------------------------------------------------------

#: The roots of f' and f'' (defaults), around which the engine's cancellation is hardest.
ROOTS: dict[str, list[float]] = {
    "gelu": [-0.7517915246935645, -1.4142135623730951, 1.4142135623730951],
    "gelu_tanh": [-0.7524614220710163, -1.4185040087908284, 1.4185040087908284],
    "silu": [-1.2784645427610738, -2.3993572805154677, 2.3993572805154677],
    "quick_gelu": [-0.751154255441289, -1.4097281319127307, 1.4097281319127307],
    "mish": [-1.1924312145154952, -2.256376396360793, 1.4905711794854285],
    # f' = 1 + sin 2x touches 0 at -pi/4 + k pi (a double root: the worst cancellation); f'' at pi/4 + k pi/2
    "snake": [-0.7853981633974483, 2.356194490192345, -3.9269908169872414, 0.7853981633974483, 1e6 * math.pi],
}

#: Inputs the audit names, per function.
AUDIT: dict[str, list[float]] = {
    "gelu": [-0.747, -0.7518, -0.75179152469356, -8.3, -37.5, -38.5, 5.0, 8.0, 40.0],
    "quick_gelu": [-0.7505, -0.7511542554412889],
    "silu": [-1.2806, -1.2784645427610738],
    "mish": [-713.6186278758374, -714.8, -709.9, -712.0, -745.0, -745.13],
    "softplus": [1e308, -745.0, 37.0],
    "squareplus": [-4.5e307, -1e308, -6.8e153, -1e200, -4.49e307],
    "tanhshrink": [1e-300, -1e-300, 1e-8, 0.1, 2.9, 3.0],
    # both kinks and their neighbours; where the rational part -alpha_n + (beta - alpha_n) x is 0
    "xielu": [
        -1e-6,
        -1.0000000000000002e-06,
        -9.999999999999997e-07,
        -1e-3,
        -0.0010000000000000002,
        -8 / 3,
        -4 / 3,
    ],
}


def hard_points(name: str) -> list[float]:
    points = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 5e-324, -5e-324, 2.2250738585072014e-308]
    points += [1e-300, -1e-300, 1e-160, -1e-160, 1e-20, -1e-20, 3e-9, -3e-9]
    points += [20.0, -20.0, 36.5, -36.5, 709.78, -709.78, 710.0, -710.0, 745.2, -745.2, 800.0, -800.0]
    points += [1e5, -1e5, 3.7e8, -3.7e8, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308]
    points += list(np.linspace(-745.13, -709.78, 9))
    points += AUDIT.get(name, [])
    for root in ROOTS.get(name, []):
        points += list(root + np.linspace(-0.3, 0.3, 41))
        points += [float(np.nextafter(root, -np.inf)), root, float(np.nextafter(root, np.inf))]
    return [float(v) for v in points]


def random_points(seed: int, count: int) -> list[float]:
    """Random inputs over every scale: random bit patterns, and log-uniform and uniform draws."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 1 << 63, size=count // 3, dtype=np.uint64) | (
        rng.integers(0, 2, size=count // 3, dtype=np.uint64) << np.uint64(63)
    )
    patterns = [struct.unpack("<d", struct.pack("<Q", int(b)))[0] for b in bits]
    logs = list(np.sign(rng.uniform(-1, 1, count // 3)) * 10.0 ** rng.uniform(-12, 4, count // 3))
    near = list(rng.uniform(-40, 40, count - 2 * (count // 3)))
    return [float(v) for v in patterns + logs + near if math.isfinite(v)]


@pytest.mark.parametrize("name", NAMES)
def test_hard_cases(name: str) -> None:
    bad: list[str] = []
    for params in CASES[name]:
        bad += failures(name, params, hard_points(name))
    _assert_none(bad)


@pytest.mark.parametrize("name", NAMES)
def test_random_points(name: str) -> None:
    bad: list[str] = []
    for i, params in enumerate(CASES[name]):
        bad += failures(name, params, random_points(1000 * NAMES.index(name) + i, 150 if i else 450))
    _assert_none(bad)


# -- every 16-bit input, sampled ----------------------------------------------------------------

SWEEP_STRIDE = 10


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_sixteen_bit_inputs(name: str, fmt: str) -> None:
    """Value and derivative at every SWEEP_STRIDE-th finite input (offset per function, so that the
    functions together see every residue), through correct.elementwise as the service calls it."""
    entry = activations.get(name)
    params = CASES[name][0]
    inputs = correct.finite_inputs(correct.FORMATS[fmt])
    xs = inputs[NAMES.index(name) % SWEEP_STRIDE :: SWEEP_STRIDE]
    ref = reference.ELEMENTWISE[name]
    bad: list[str] = []
    for quantity, fn in (("value", ref.value), ("derivative", ref.d1)):
        got = correct.elementwise(entry, quantity, xs, params, correct.FORMATS[fmt])
        for x, g in zip(xs, got, strict=True):
            side = tail_side(name, quantity, None, float(x), params)
            want, zero = expected(lambda fn=fn, x=x: fn(mp.mpf(float(x)), **params), [fmt], side)
            if not same(float(g), want[fmt], check_sign=not zero):
                bad.append(f"{name} {quantity} x={float(x)!r} {fmt}: {float(g)!r} != {want[fmt]!r}")
    _assert_none(bad)


# -- results next to a midpoint -------------------------------------------------------------------


def midpoints(fmt: str, exponent: int) -> list[float]:
    """Two midpoints of ``fmt`` in [2^exponent, 2^(exponent + 1)): between an odd and an even
    neighbour (a tie rounds up) and between an even and an odd one (a tie rounds down)."""
    precision = SPEC[fmt][0]
    return [math.ldexp((1 << precision) + k, exponent - precision) for k in (3, 5)]


@dataclass(frozen=True)
class Near:
    """A quantity whose value is a midpoint m(M) plus a correction of sign ``side`` that may fall
    below every precision the engine tries, for inputs built from a midpoint M."""

    name: str
    quantity: str
    x: Callable[[float], float]
    side: int
    exponents: tuple[int, ...]
    params: Callable[[float], dict[str, float]] = lambda m: {}
    param: str | None = None


NEAR: list[Near] = [
    # f(x) = x - (exponentially small) for x > 0: the midpoint is x itself.
    *(Near(n, "value", lambda m: m, -1, (3, 5, 9, 40)) for n in ("gelu", "gelu_tanh", "quick_gelu", "mish")),
    Near("silu", "value", lambda m: m, -1, (3, 5, 9, 40), lambda m: {"beta": 1.0}),
    Near("softplus", "value", lambda m: m, 1, (3, 5, 9, 40), lambda m: {"beta": 1.0}),
    Near("softplus", "value", lambda m: m, 1, (5, 40, 1000), lambda m: {"beta": 2.0}),
    Near("log_sigmoid", "value", lambda m: -m, -1, (3, 5, 9, 40)),
    Near("tanhshrink", "value", lambda m: m + 1, 1, (3, 5, 9, 40)),
    Near("tanhshrink", "value", lambda m: -m - 1, -1, (3, 5, 9, 40)),
    Near("tanhshrink", "value", lambda m: m, -1, (200,)),  # x - 1 + ...: x itself at 128 bits
    Near("elu", "value", lambda m: -50.0, 1, (0, 3), lambda m: {"alpha": m}),  # -alpha + alpha e^x
    Near("elu", "value", lambda m: -1e5, 1, (0, 3), lambda m: {"alpha": m}),
    Near("celu", "value", lambda m: -50.0 * m, 1, (0, 3), lambda m: {"alpha": m}),
    # f(x) = x/2 + (x^2 times a constant) for tiny x.
    *(Near(n, "value", lambda m: 2 * m, 1, (-60, -100)) for n in ("gelu", "gelu_tanh", "quick_gelu")),
    Near("silu", "value", lambda m: 2 * m, 1, (-60, -100), lambda m: {"beta": 1.0}),
    Near("gelu", "value", lambda m: -2 * m, 1, (-60, -100)),
    # Other short binary numbers: x, alpha, beta/2, beta/4, sqrt(b)/2, b/4|x|, 2x.
    Near("softsign", "value", lambda m: m, -1, (-60, -100)),
    Near("softsign", "value", lambda m: -m, 1, (-60, -100)),
    Near("elu", "value", lambda m: -m, 1, (-60, -100), lambda m: {"alpha": 1.0}),
    Near("elu", "derivative", lambda m: -(2.0**-80), -1, (0, 2), lambda m: {"alpha": m}),
    Near("elu", "second_derivative", lambda m: -(2.0**-80), -1, (0, 2), lambda m: {"alpha": m}),
    Near("elu", "value", lambda m: -m, 1, (-60, -100), lambda m: {"alpha": 1.0}, "alpha"),
    Near("celu", "value", lambda m: -m, 1, (-60, -100), lambda m: {"alpha": 1.0}),
    Near("celu", "value", lambda m: -m, 1, (-60,), lambda m: {"alpha": 3.0}),
    Near("silu", "second_derivative", lambda m: 2.0**-80, -1, (0, 3), lambda m: {"beta": 2 * m}),
    Near("softplus", "second_derivative", lambda m: 2.0**-80, -1, (0, 3), lambda m: {"beta": 4 * m}),
    Near("squareplus", "value", lambda m: m, 1, (40, 200), lambda m: {"b": 4.0}),
    Near("squareplus", "value", lambda m: -(2.0**40), -1, (0, 5), lambda m: {"b": 2.0**42 * m}),
    Near("squareplus", "derivative", lambda m: -(2.0**40), -1, (0, 5), lambda m: {"b": 2.0**82 * m}),
    Near("squareplus", "second_derivative", lambda m: -(2.0**30), -1, (0, 5), lambda m: {"b": 2.0**91 * m}),
    Near("squareplus", "value", lambda m: 2.0**-80, 1, (0, 5), lambda m: {"b": 4 * m * m}),
    Near("squareplus", "value", lambda m: -(2.0**-80), -1, (0, 5), lambda m: {"b": 4 * m * m}),
    Near("tanhshrink", "second_derivative", lambda m: m / 2, -1, (-60, -100)),
]


def test_results_next_to_a_midpoint() -> None:
    """Results a correction away from a midpoint of the format, where a correction that vanished
    at the working precision would leave a tie (rounded to even: the wrong way for one of the two
    midpoints of each binade)."""
    bad: list[str] = []
    against_the_tie = 0
    for case in NEAR:
        entry = activations.get(case.name)
        fn = correct.function_of(entry, case.quantity, case.param)
        ref = reference.ELEMENTWISE[case.name]
        refs = {"value": ref.value, "derivative": ref.d1, "second_derivative": ref.d2}
        reference_fn = PARAM_REFERENCE[case.name][case.param] if case.param else refs[case.quantity]
        for fmt in ("float32", "float16", "bfloat16"):
            for exponent in case.exponents:
                for m in midpoints(fmt, exponent):
                    x, params = case.x(m), case.params(m)
                    if not (math.isfinite(x) and all(map(math.isfinite, params.values()))):
                        continue
                    want, _ = expected(
                        lambda x=x, params=params, f=reference_fn: f(mp.mpf(x), **params), [fmt], case.side
                    )
                    with mp.workdps(60):
                        tie = round_to(fraction(mp.mpf(reference_fn(mp.mpf(x), **params))), fmt)
                    against_the_tie += tie.margin == 0 and tie.value != want[fmt]
                    got = correct.correctly_rounded(fn, x, params, correct.FORMATS[fmt])
                    if not same(got, want[fmt]):
                        bad.append(
                            f"{case.name}{params} {case.param or case.quantity} x={x!r} {fmt}: {got!r} != {want[fmt]!r}"
                        )
    _assert_none(bad)
    assert against_the_tie >= 50  # the cases do exercise the side of the tie


def test_float64_subnormal_midpoints() -> None:
    """x/2 for the smallest subnormals lies on a float64 midpoint (2^-1075, 3 2^-1075)."""
    for name, params in (("gelu", {}), ("gelu_tanh", {}), ("quick_gelu", {}), ("silu", {"beta": 1.0})):
        fn = correct.function_of(activations.get(name), "value")
        for k in (1, 3, 5):
            x = math.ldexp(k, -1074)
            want, _ = expected(
                lambda x=x, f=reference.ELEMENTWISE[name].value, p=params: f(mp.mpf(x), **p), ["float64"], 1
            )
            assert same(correct.correctly_rounded(fn, x, params, correct.FORMATS["float64"]), want["float64"])
            assert want["float64"] == math.ldexp(k + 1, -1075)  # (k + 1)/2 2^-1074: above the tie
        assert correct.correctly_rounded(fn, 5e-324, params, correct.FORMATS["float64"]) == 5e-324


# -- signs of results below every format ----------------------------------------------------------

#: (function, quantity or parameter, params, x, sign): results far below the smallest subnormal,
#: rounded to -0.0 or +0.0 by their sign (the reference takes gelu beyond |x| = 1e5 as 0).
UNDERFLOW: list[tuple[str, str, dict[str, float], float, int]] = [
    *(
        ("gelu", q, {}, x, -1)
        for q in ("value", "derivative", "second_derivative")
        for x in (-40.0, -1e5, -1e308)
    ),
    ("gelu", "second_derivative", {}, 1e308, -1),
    *(
        ("gelu_tanh", q, {}, x, -1)
        for q in ("value", "derivative", "second_derivative")
        for x in (-100.0, -1e308)
    ),
    ("gelu_tanh", "second_derivative", {}, 1e308, -1),
    *(("silu", q, {"beta": 1.0}, -1e308, -1) for q in ("value", "derivative", "second_derivative")),
    ("silu", "second_derivative", {"beta": 1.0}, 1e308, -1),
    ("silu", "beta", {"beta": 1.0}, 1e308, 1),
    *(("quick_gelu", q, {}, -1e308, -1) for q in ("value", "derivative", "second_derivative")),
    *(("mish", q, {}, -1e308, -1) for q in ("value", "derivative", "second_derivative")),
    ("mish", "second_derivative", {}, 1e308, -1),
    ("softplus", "beta", {"beta": 1.0}, 1e308, -1),
    ("softplus", "beta", {"beta": 1.0}, -1e308, -1),
    ("softplus", "value", {"beta": 1.0}, -1e308, 1),
    ("softplus", "second_derivative", {"beta": 2.0}, 1e308, 1),
    ("log_sigmoid", "value", {}, 1e308, -1),
    ("log_sigmoid", "second_derivative", {}, 1e308, -1),
    ("log_sigmoid", "second_derivative", {}, -1e308, -1),
    ("tanhshrink", "second_derivative", {}, -1e308, -1),
    ("tanhshrink", "second_derivative", {}, 1e308, 1),
    ("softsign", "second_derivative", {}, 1e308, -1),
    ("elu", "derivative", {"alpha": 1.0}, -1e308, 1),
    ("celu", "second_derivative", {"alpha": 0.3}, -1e308, 1),
    ("selu", "second_derivative", {}, -1e308, 1),
    ("exponential", "value", {}, -1e308, 1),
]


@pytest.mark.parametrize(("name", "quantity", "params", "x", "sign"), UNDERFLOW)
def test_underflow_signs(name: str, quantity: str, params: dict[str, float], x: float, sign: int) -> None:
    entry = activations.get(name)
    param = quantity if quantity in params else None
    fn = correct.function_of(entry, "value" if param else quantity, param)
    for fmt in FORMATS:
        got = correct.correctly_rounded(fn, x, params, correct.FORMATS[fmt])
        assert got == 0.0
        assert math.copysign(1.0, got) == sign, (fmt, got)
    # The sign is the function's in that tail: the reference's at a point where it is still large.
    ref = dict(zip(("value", "derivative", "second_derivative"), quantities(name)[:3], strict=True))
    reference_fn = PARAM_REFERENCE[name][param] if param else ref[quantity][2]
    with mp.workdps(60):
        assert mp.sign(reference_fn(mp.mpf(math.copysign(20.0, x)), **params)) == sign


# -- agreement with the NumPy core -----------------------------------------------------------------

TINY = 2.2250738585072014e-308


def root_distance(name: str, quantity: str, params: Mapping[str, float], x: np.ndarray) -> np.ndarray:
    """|x - r| / max(1, |r|) to the nearest root of the quantity (inf where it has none)."""
    roots: list[float] = []
    if quantity == "derivative":
        roots = ROOTS.get(name, [])[:1]
    elif quantity == "second_derivative":
        roots = ROOTS.get(name, [])[1:]
    if name == "silu":
        roots = [r / params["beta"] for r in roots] if params["beta"] else []
    out = np.full(x.shape, np.inf)
    for r in roots:
        out = np.minimum(out, np.abs(x - r) / max(1.0, abs(r)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_the_numpy_core(name: str) -> None:
    """The correctly rounded float64 results against entry.value / jacobian / second_derivative /
    parameter_jacobian: within 8 ULP where the result is a normal number and away from the roots
    of f' and f'' (where the core's own cancellation is larger), within the smallest normal below
    (the core's accuracy policy allows subnormal results to lose bits)."""
    entry = activations.get(name)
    f64 = correct.FORMATS["float64"]
    magnitudes = np.logspace(-300, 300, 121)
    grid = np.unique(
        np.concatenate([np.linspace(-50, 50, 401), magnitudes, -magnitudes, [0.0, -745.0, 745.0]])
    )
    bad: list[str] = []
    for params in CASES[name]:
        xs = grid
        # Known: the core refuses x where beta x (softplus) or x / alpha (celu) overflows float64.
        if name == "softplus":
            xs = xs[np.abs(xs * params["beta"]) < 1e300]
        if name == "celu":
            xs = xs[np.abs(xs / params["alpha"]) < 1e300]
        if name == "xielu":
            xs = xs[np.abs(xs) < 1e150]  # dy/dalpha_p = x^2 (computed with the others) beyond float64
        calls: list[tuple[str, str | None, Callable[[np.ndarray], np.ndarray]]] = [
            ("value", None, lambda x, params=params: entry.value(x, params)),
            ("derivative", None, lambda x, params=params: entry.jacobian(x, params)),
            ("second_derivative", None, lambda x, params=params: entry.second_derivative(x, params)),
        ]
        for p in entry.exact.params if entry.exact else {}:
            calls.append(("value", p, lambda x, params=params, p=p: entry.parameter_jacobian(x, params)[p]))
        for quantity, param, call in calls:
            want = correct.elementwise(entry, quantity, xs, params, f64, param)
            keep = np.isfinite(want)
            if name == "mish" and quantity == "derivative":
                keep &= xs > -709.78  # known: the core's mish' underflows with the wrong sign below
            x, want = xs[keep], want[keep]
            got = call(x)
            normal = np.abs(want) >= TINY
            tolerance = np.full(x.shape, 8.0)
            if name == "softplus" and param == "beta" and math.frexp(params["beta"])[0] != 0.5:
                tolerance += np.abs(params["beta"] * x) / 2  # known: beta x is rounded in the core
            far = root_distance(name, quantity, params, x) > 0.25
            wrong = normal & far & (correct.ulp_error(got, want, f64) > tolerance)
            wrong |= ~normal & (np.abs(got - want) >= TINY)
            bad += [
                f"{name}{params} {param or quantity} x={v!r}: core {g!r}, exact {w!r}"
                for v, g, w in zip(x[wrong], got[wrong], want[wrong], strict=True)
            ]
    _assert_none(bad)


# -- xielu: a rational part on a midpoint, and the small term that decides it ----------------------


def _tiny_term(value: mp.mpf) -> tuple[Fraction, Fraction]:
    """An enclosure of a small positive mpmath value, as fractions: [v (1 - 2^-1900), v (1 + 2^-1900)],
    or (2^-5001, 2^-5000) below 2^-5000 (far below the last bit of every rational part here,
    whose denominators are at most 2^2300: only its sign matters then)."""
    assert value > 0
    if value < mp.mpf(2) ** -5000:
        return Fraction(1, 2**5001), Fraction(1, 2**5000)
    man, exp = mp.mpf(value).man_exp
    v = Fraction(int(man)) * Fraction(2) ** int(exp)
    return v * (1 - Fraction(1, 2**1900)), v * (1 + Fraction(1, 2**1900))


def _xielu_split(x: float, p: dict[str, float], quantity: str) -> tuple[Fraction, mp.mpf, int]:
    """xielu's value or f' below 0 as R + s T: R an exact rational, T > 0 (alpha_n e^x, or alpha_n
    (e^eps - 1 - eps) at eps <= x <= 0), s its sign."""
    xq, an, b, e = (Fraction(v) for v in (x, p["alpha_n"], p["beta"], p["eps"]))
    if quantity == "derivative":
        assert x < p["eps"]
        return b - an, mp.mpf(p["alpha_n"]) * mp.exp(mp.mpf(x)), 1
    if x >= p["eps"]:  # (b - an) x + an eps + an (e^eps - 1 - eps), the last > 0
        return (b - an) * xq + an * e, mp.mpf(p["alpha_n"]) * (mp.expm1(mp.mpf(p["eps"])) - p["eps"]), 1
    assert x < -1
    return (b - an) * xq - an, mp.mpf(p["alpha_n"]) * mp.exp(mp.mpf(x)), 1


@pytest.mark.parametrize(
    ("x", "params", "quantity", "dtype"),
    [
        # (beta - alpha_n) x - alpha_n = -(1 + 2^-53 + 2^-253) at alpha_n = 2^-253: a float64 midpoint
        # and 2^-253 beyond, which alpha_n e^x (> 0, far smaller) must not undo
        (-(2.0**200), {"alpha_n": 2.0**-253, "beta": 6.223015277861143e-61}, "value", "float64"),
        (-(2.0**200), {"alpha_n": 2.0**-253, "beta": 6.223015277861144e-61}, "value", "float64"),
        (-(2.0**600), {"alpha_n": 2.0**-653, "beta": 2.0**-600 * (1 + 2.0**-53)}, "value", "float64"),
        # beta - alpha_n + alpha_n e^x: just below the float32 midpoint 1 + 2^-24
        (-2.0, {"alpha_n": 2.0**-200, "beta": 1 + 2.0**-24}, "derivative", "float32"),
        (-60000.0, {"alpha_n": 2.0**-200, "beta": 1 + 2.0**-24}, "derivative", "float32"),
        (-3.5, {"alpha_n": 2.0**-300, "beta": 1 + 2.0**-53}, "derivative", "float64"),
        # the middle piece: beta x (1e-126 of an ULP) decides a midpoint; and a true value of
        # -1.4e-559, whose float64 rounding is -0
        (
            -5.560078235157591e-230,
            {
                "alpha_n": 2.6207768056743234e-25,
                "beta": 9.851634853114118e-182,
                "eps": -5.560078235157594e-230,
            },
            "value",
            "float64",
        ),
        (
            -1e-300,
            {
                "alpha_p": 7.208588322676363e-09,
                "alpha_n": 1.1733732897200166e-113,
                "beta": 1.419983069410355e-259,
                "eps": -1e-300,
            },
            "value",
            "float64",
        ),
    ],
)
def test_xielu_rational_part_on_a_midpoint(
    x: float, params: dict[str, float], quantity: str, dtype: str
) -> None:
    entry = activations.get("xielu")
    p = entry.bind(params)
    with mp.workprec(2000):
        rational, tail, sign = _xielu_split(x, p, quantity)
        low, high = _tiny_term(tail)
    want_low = round_fraction(rational + sign * low, dtype)
    want = round_fraction(rational + sign * high, dtype)
    assert _bits(want_low) == _bits(want), "the enclosure decides the rounding"
    xs = np.array([x])
    fn = entry.value if quantity == "value" else entry.jacobian
    got = float(fn(xs, p, -1, np.float32 if dtype == "float32" else np.float64)[0])
    assert _bits(got) == _bits(want), (got, want)
