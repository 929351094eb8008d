"""rational: the Padé Activation Unit (Molina, Schramowski and Kersting 2020), "safe" form.

f(x) = P(x) / Q(x), P(x) = a_0 + a_1 x + ... + a_m x^m, Q(x) = 1 + |b_1 x + ... + b_n x^n|.

The coefficients are array-valued parameters: ``numerator`` (a_0 .. a_m) and ``denominator``
(b_1 .. b_n).  Every quantity is a rational function of x and the coefficients, so the exact
definitions work in exact rationals (gmpy2's mpq) and round once; the bounded ones evaluate the
polynomials by Horner's rule with running error bounds.  Where B(x) = b_1 x + ... + b_n x^n is 0
(at x = 0, and at any real root of B) |B| has a corner: the service takes sign(B) = 0 there, the
mean of the one-sided slopes, as autograd's |.| does.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpfr, mpq

from . import bounded as bd
from .bounded import Bounded
from .exact import EXTENDED
from .registry import Activation, Array, Exact, Example, Kink, Param, register

#: The defaults: coefficients POST /fit gives for leaky_relu (slope 0.01) on [-3, 3] (2,001 evenly
#: spaced points, from a_1 = 0.5, a_2 = 0.3 and b_2 = 0.1), degrees 5 and 4 as in the paper;
#: tests/test_rational.py fits them again.
NUMERATOR = (
    0.03357210295354804,
    0.504999999448284,
    1.652675073018662,
    2.0081227080653794,
    0.930575476137639,
    0.15213275896860054,
)
DENOMINATOR = (-8.527234356008457e-09, 3.9764806252349842, -9.4001933067156e-09, 0.3012529897882081)
#: Where the fit of the defaults starts.
FIT_START = {"numerator": (0.0, 0.5, 0.3, 0.0, 0.0, 0.0), "denominator": (0.0, 0.1, 0.0, 0.0)}


def _horner(coefficients: tuple[float, ...], x: Any) -> tuple[Any, Any, Any]:
    """sum_k c_k x^k, its first and second derivatives (x an extended-precision array)."""
    value = np.zeros_like(x)
    d1 = np.zeros_like(x)
    d2 = np.zeros_like(x)
    for c in reversed(coefficients):
        d2 = d2 * x + 2 * d1
        d1 = d1 * x + value
        value = value * x + EXTENDED(c)
    return value, d1, d2


def _parts(x: Array, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> tuple[Any, ...]:
    xe = np.asarray(x, EXTENDED)
    p, dp, d2p = _horner(numerator, xe)
    b, db, d2b = _horner((0.0, *denominator), xe)
    s = np.sign(b)
    return p, dp, d2p, 1 + np.abs(b), s * db, s * d2b, s, xe


def _value(x: Array, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> Array:
    p, _, _, q, *_ = _parts(x, numerator, denominator)
    return np.asarray(p / q, np.float64)


def _derivative(x: Array, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> Array:
    p, dp, _, q, dq, *_ = _parts(x, numerator, denominator)
    return np.asarray((dp * q - p * dq) / (q * q), np.float64)


def _second(x: Array, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> Array:
    p, dp, d2p, q, dq, d2q, *_ = _parts(x, numerator, denominator)
    return np.asarray((d2p * q - p * d2q) / (q * q) - 2 * dq * (dp * q - p * dq) / (q * q * q), np.float64)


def _grads(x: Array, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> dict[str, Array]:
    p, _, _, q, _, _, s, xe = _parts(x, numerator, denominator)
    powers = [np.ones_like(xe)]
    for _ in range(max(len(numerator), len(denominator) + 1)):
        powers.append(powers[-1] * xe)
    da = [powers[k] / q for k in range(len(numerator))]
    db = [-p * s * powers[k + 1] / (q * q) for k in range(len(denominator))]
    return {
        "numerator": np.stack(da, axis=-1).astype(np.float64),
        "denominator": np.stack(db, axis=-1).astype(np.float64),
    }


# -- bounded ------------------------------------------------------------------------------------------


def _poly_fast(coefficients: tuple[float, ...], x: bd.B) -> tuple[bd.B, bd.B, bd.B]:
    """The polynomial, its first and second derivatives, with their error bounds."""
    zero = bd.zero(x)
    value, d1, d2 = zero, zero, zero
    for c in reversed(coefficients):
        d2 = d2 * x + d1 * 2.0
        d1 = d1 * x + value
        value = value * x + c
    return value, d1, d2


# The derivatives' numerators as polynomials of their own, their coefficients worked out exactly from
# the parameters (once a request) and rounded once: P'Q - PQ' is nearly 0.01 Q^2 where f is nearly
# leaky_relu's 0.01 x, and evaluating it as a difference at x would lose what the bound must keep.


def _mul(a: list[Fraction], b: list[Fraction]) -> list[Fraction]:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            out[i + j] += u * v
    return out


def _add(a: list[Fraction], b: list[Fraction], scale: int = 1) -> list[Fraction]:
    n = max(len(a), len(b))
    return [
        (a[k] if k < len(a) else Fraction(0)) + scale * (b[k] if k < len(b) else Fraction(0))
        for k in range(n)
    ]


def _d(a: list[Fraction]) -> list[Fraction]:
    return [k * c for k, c in enumerate(a)][1:] or [Fraction(0)]


@functools.lru_cache(maxsize=64)
def _numerators(
    numerator: tuple[float, ...], denominator: tuple[float, ...], sign: int
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    """For sign(B) = ``sign``: the coefficients of N = P'Q - PQ' (f' = N/Q^2) and of
    M = (P''Q - PQ'')Q - 2Q'N (f'' = M/Q^3), exactly."""
    p = [Fraction(v) for v in numerator]
    q = _add([Fraction(1)], [Fraction(0)] + [Fraction(v) for v in denominator], sign)
    dp, dq = _d(p), _d(q)
    n = _add(_mul(dp, q), _mul(p, dq), -1)
    m = _add(_mul(_add(_mul(_d(dp), q), _mul(p, _d(dq)), -1), q), _mul(dq, n), -2)
    return tuple(n), tuple(m)


def _poly_exact_fast(coefficients: tuple[Fraction, ...], x: bd.B) -> bd.B:
    """A polynomial with exact rational coefficients, each rounded once to the working precision
    (its error in the bound), by Horner's rule."""
    if any(abs(c) >= 2**1000 for c in coefficients):  # beyond what the bound handles: the exact way
        v = np.zeros_like(x.v)
        return bd.B(v, np.full_like(v, np.inf))
    value = bd.zero(x)
    for c in reversed(coefficients):
        value = value * x + bd.constant(c, x)
    return value


def _parts_fast(x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> tuple[Any, ...]:
    p, dp, d2p = _poly_fast(numerator, x)
    b, db, d2b = _poly_fast((0.0, *denominator), x)
    b = b.folded()
    s = np.sign(b.v)
    # Where the bound straddles 0 the sign of B, and with it Q's slope, is unknown: the
    # derivatives there are left to the exact definitions (an infinite bound).
    unknown = (np.abs(b.v) <= b.e) & (b.e > 0)
    return p, dp, d2p, abs(b) + 1.0, db * s, d2b * s, unknown


def _unknown(result: bd.B, unknown: Any) -> bd.B:
    result = result.folded()
    return bd.B(result.v, np.where(unknown, np.inf, result.e))


def _value_fast(x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> bd.B:
    p, _, _, q, *_ = _parts_fast(x, numerator, denominator)
    return p / q


def _by_sign(
    x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...], which: int
) -> tuple[bd.B, bd.B, Any]:
    """N (which 0) or M (which 1) at x for the sign B has there, with Q and the unknown-sign mask."""
    _, _, _, q, _, _, unknown = _parts_fast(x, numerator, denominator)
    b, _, _ = _poly_fast((0.0, *denominator), x)
    s = np.sign(b.folded().v)
    plus = _poly_exact_fast(_numerators(numerator, denominator, 1)[which], x)
    minus = _poly_exact_fast(_numerators(numerator, denominator, -1)[which], x)
    # sign(B) = 0 (at x = 0): Q' = 0, N = P', M = P''; the +1 polynomials' Q-terms vanish there
    # only with B, so the exact definitions take those points (a bound of inf).
    return bd.where(s >= 0, plus, minus), q, unknown | (s == 0)


def _derivative_fast(x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> bd.B:
    n, q, unknown = _by_sign(x, numerator, denominator, 0)
    return _unknown(n / q.square(), unknown)


def _second_fast(x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> bd.B:
    m, q, unknown = _by_sign(x, numerator, denominator, 1)
    return _unknown(m / (q.square() * q), unknown)


def _power(x: bd.B, k: int) -> bd.B:
    out = x.like(1.0)
    for _ in range(k):
        out = out * x
    return out


def _numerator_fast(
    x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...], index: int
) -> bd.B:
    _, _, _, q, *_ = _parts_fast(x, numerator, denominator)
    return _power(x, index) / q


def _denominator_fast(
    x: bd.B, numerator: tuple[float, ...], denominator: tuple[float, ...], index: int
) -> bd.B:
    p, _, _, q, _, _, unknown = _parts_fast(x, numerator, denominator)
    b, _, _ = _poly_fast((0.0, *denominator), x)
    s = np.sign(b.folded().v)
    return _unknown(-(p * _power(x, index + 1) * s) / q.square(), unknown)


# -- exact --------------------------------------------------------------------------------------------


def _q(v: Any) -> mpq:
    return mpq(v)


def _exact_parts(x: mpfr, numerator: tuple[mpfr, ...], denominator: tuple[mpfr, ...]) -> tuple[Any, ...]:
    xq = _q(x)
    p = dp = d2p = mpq(0)
    for c in reversed(numerator):
        d2p = d2p * xq + 2 * dp
        dp = dp * xq + p
        p = p * xq + _q(c)
    b = db = d2b = mpq(0)
    for c in reversed((mpfr(0), *denominator)):
        d2b = d2b * xq + 2 * db
        db = db * xq + b
        b = b * xq + _q(c)
    s = (b > 0) - (b < 0)
    return p, dp, d2p, 1 + abs(b), s * db, s * d2b, s, xq


def _rounded(q: mpq) -> mpfr:
    """An exact rational at the working precision (rounded once; 0 stays exactly 0)."""
    return gmpy2.mpfr(q)


def _value_exact(x: mpfr, numerator: tuple[mpfr, ...], denominator: tuple[mpfr, ...]) -> mpfr:
    p, _, _, q, *_ = _exact_parts(x, numerator, denominator)
    return _rounded(p / q)


def _derivative_exact(x: mpfr, numerator: tuple[mpfr, ...], denominator: tuple[mpfr, ...]) -> mpfr:
    p, dp, _, q, dq, *_ = _exact_parts(x, numerator, denominator)
    return _rounded((dp * q - p * dq) / (q * q))


def _second_exact(x: mpfr, numerator: tuple[mpfr, ...], denominator: tuple[mpfr, ...]) -> mpfr:
    p, dp, d2p, q, dq, d2q, *_ = _exact_parts(x, numerator, denominator)
    return _rounded((d2p * q - p * d2q) / (q * q) - 2 * dq * (dp * q - p * dq) / (q * q * q))


def _numerator_exact(x: mpfr, numerator: tuple[mpfr, ...], denominator: tuple[mpfr, ...], index: int) -> mpfr:
    _, _, _, q, _, _, _, xq = _exact_parts(x, numerator, denominator)
    return _rounded(xq**index / q)


def _denominator_exact(
    x: mpfr, numerator: tuple[mpfr, ...], denominator: tuple[mpfr, ...], index: int
) -> mpfr:
    p, _, _, q, _, _, s, xq = _exact_parts(x, numerator, denominator)
    return _rounded(-p * s * xq ** (index + 1) / (q * q))


register(
    Activation(
        name="rational",
        kind="elementwise",
        fast=Bounded(
            _value_fast,
            _derivative_fast,
            _second_fast,
            {"numerator": _numerator_fast, "denominator": _denominator_fast},
        ),
        forward=_value,
        derivative=_derivative,
        second=_second,
        param_grads=_grads,
        exact=Exact(
            _value_exact,
            _derivative_exact,
            _second_exact,
            params={"numerator": _numerator_exact, "denominator": _denominator_exact},
        ),
        params=(
            Param(
                name="numerator",
                default=NUMERATOR,
                length=(1, 9),
                description="a_0 .. a_m of P(x) = a_0 + a_1 x + ... + a_m x^m (degree m <= 8)",
            ),
            Param(
                name="denominator",
                default=DENOMINATOR,
                length=(1, 8),
                description="b_1 .. b_n of Q(x) = 1 + |b_1 x + ... + b_n x^n| (degree n <= 8)",
            ),
        ),
        formula=r"f(x) = \frac{a_0 + a_1 x + \dots + a_m x^m}{1 + \left|b_1 x + \dots + b_n x^n\right|}",
        derivative_formula=r"f'(x) = \frac{P'(x) Q(x) - P(x) \operatorname{sign}(B(x)) B'(x)}{Q(x)^2}, \; B = Q - 1",
        range="(-inf, inf): bounded or not by the degrees and coefficients",
        kinks=(
            Kink(
                at=0.0,
                derivative="numerator[1]",
                second_derivative="2*numerator[2]",
                note="|B| has a corner where B(x) = 0 (at 0, and at any real root of B): sign(B) is taken "
                "as 0 there, the mean of the one-sided slopes",
            ),
        ),
        typical_use=("hidden",),
        notes=(
            "Learnable: both coefficient arrays are trained with the network (PAU); the defaults "
            "approximate leaky_relu on [-3, 3].",
            "numerator and denominator are arrays: dydparams has x's shape and one more axis, "
            "grad_params each array's shape.",
        ),
        aliases=("PAU", "Rational"),
        reference="Molina, Schramowski and Kersting, Padé activation units (ICLR 2020)",
        examples=(Example(x=1.0, y=1.0008231793849427), Example(x=-1.0, y=-0.009176820533350349)),
    )
)
