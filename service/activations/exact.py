"""Error-free transformations: a little double-double arithmetic on arrays.

Several activations evaluate exp, erfc or the logistic function at a product
such as ``beta * x``, ``1.702 * x`` or ``x / sqrt(2)``.  Rounding that product
costs half an ULP of the argument, and the function multiplies it by the size
of its logarithmic derivative: for exp(-z) with z ~ 700 that is 700 half-ULPs
of relative error.  Carrying the product as an unevaluated sum ``hi + lo``
(Dekker 1971, "A floating-point technique for extending the available
precision") and applying the first-order correction f(hi + lo) ~ f(hi) +
f'(hi) lo removes that amplification.

NumPy has no fused multiply-add, so products are split with Veltkamp's method.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Context, Decimal
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from .registry import Array

#: Set (by :func:`rationals`) where the caller takes a definition's rational result as it is.
RATIONAL: contextvars.ContextVar[bool] = contextvars.ContextVar("rational", default=False)


@contextmanager
def rationals() -> Iterator[None]:
    """Definitions whose result is a rational return it exactly (a gmpy2.mpq) within this block.

    A rational rounded to odd is the right thing to round once more to the format, but not to
    multiply first: g (2x + 3) / 6 is a midpoint of the format at some x and g, and g times
    (2x + 3) / 6 rounded to odd lies off it, on a side that changes with the precision (the
    vector-Jacobian products of hard_silu and smelu broke such ties either way)."""
    token = RATIONAL.set(True)
    try:
        yield
    finally:
        RATIONAL.reset(token)


#: Extended precision for brackets that cancel and for the vector functions'
#: derivatives: x87 80-bit (64-bit significand) on x86-64, IEEE binary128 on
#: aarch64 Linux.  Rounding a product or a sum of extended-precision values once
#: to float64 keeps a result within half an ULP plus a hair, where float64
#: throughout compounds the rounding errors of its operands.
EXTENDED = np.longdouble
Extended = NDArray[np.longdouble]

_SPLITTER = 134217729.0  # 2**27 + 1
#: Beyond this magnitude a partial product could overflow; such arguments
#: saturate every function that uses these helpers, so their error terms are
#: dropped (set to 0) rather than computed.
_SPLIT_LIMIT = 2.0**510


def dd_constant(value: str) -> tuple[float, float]:
    """A decimal constant (at least 34 significant digits) as hi + lo.

    The difference is taken in a context of its own (60 digits): the process's
    decimal context, which belongs to whoever imports the core, is left alone.
    """
    exact = Decimal(value)  # exact: the constructor does not round
    hi = float(exact)
    lo = float(Context(prec=60).subtract(exact, Decimal(hi)))
    return hi, lo


def rational_constant(value: str) -> tuple[float, float]:
    """An exact decimal or fraction such as '1.702' as hi + lo."""
    exact = Fraction(value)
    hi = float(exact)
    return hi, float(exact - Fraction(hi))


def split(a: Array) -> tuple[Array, Array]:
    """Veltkamp split: a = hi + lo with 26-bit halves whose products are exact."""
    a = np.clip(a, -_SPLIT_LIMIT, _SPLIT_LIMIT)
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """s + e = a + b exactly (Knuth's TwoSum), for finite a + b."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def two_prod(a: Array | float, b: Array | float) -> tuple[Array, Array]:
    """p + e = a * b exactly (Dekker); e = 0 where |a| or |b| exceeds 2**510."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    p = a * b
    inside = (np.abs(a) <= _SPLIT_LIMIT) & (np.abs(b) <= _SPLIT_LIMIT)
    a_hi, a_lo = split(a)
    b_hi, b_lo = split(b)
    pc = np.clip(p, -(2.0**1020), 2.0**1020)
    e = ((a_hi * b_hi - pc) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, np.where(inside, e, 0.0)


def is_power_of_two(c: float) -> bool:
    """True when multiplying by c is exact (c = +-2^k, or 0)."""
    return math.frexp(c)[0] in (0.5, -0.5, 0.0)


def scale(x: Array, c: tuple[float, float] | float) -> tuple[Array, Array]:
    """c * x as hi + lo, for a scalar c (or a constant c_hi + c_lo).

    The scalar is split once in Python, so this costs a dozen array passes
    rather than the two array splits of :func:`two_prod`; a power of two
    (beta = 1) costs one.  The error term is computed on x clipped to 2**510,
    where it stays finite; beyond, it is a harmless fraction of an ULP of hi.
    """
    c_hi, c_lo = c if isinstance(c, tuple) else (float(c), 0.0)
    hi = c_hi * x
    if c_lo == 0.0 and is_power_of_two(c_hi):
        return hi, np.zeros_like(x)
    xc = (
        x
        if x.size == 0 or float(np.max(np.abs(x))) <= _SPLIT_LIMIT
        else np.clip(x, -_SPLIT_LIMIT, _SPLIT_LIMIT)
    )
    p = c_hi * xc
    c1 = _SPLITTER * c_hi
    c_h = c1 - (c1 - c_hi)
    c_l = c_hi - c_h
    t = _SPLITTER * xc
    x_h = t - (t - xc)
    x_l = xc - x_h
    lo = ((c_h * x_h - p) + c_h * x_l + c_l * x_h) + c_l * x_l
    if c_lo:
        lo = lo + c_lo * xc
    return hi, lo


def square(x: Array) -> tuple[Array, Array]:
    """x * x as hi + lo."""
    return two_prod(x, x)


def logistic(z: Array) -> Array:
    """sigma(z) = 1 / (1 + e^-z): NumPy's vectorised exp makes this 3-4x faster
    than scipy's expit, and it is as accurate (no cancellation; exp(-z)
    overflows to inf for z < -709, giving the correct 0 without a warning).
    """
    out = np.negative(z, out=np.empty_like(z))  # (without out=, a 0-d input gives a scalar)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)  # in place: one array, not three


#: sigma(z) is exactly 0 or 1 in float64 beyond this |z|.
_EXPIT_SATURATED = 800.0


def expit(hi: Array, lo: Array) -> Array:
    """sigma(hi + lo), using d log sigma(z) / dz = sigma(-z)."""
    lo = np.where(np.abs(hi) < _EXPIT_SATURATED, lo, 0.0)
    return logistic(hi) * (1.0 + lo * logistic(-hi))


def exp_neg(hi: Array, lo: Array | float, factor: Array | float = 1.0) -> Array:
    """factor * exp(-(hi + lo)), in two halves so that no intermediate is subnormal.

    exp(-710) is already subnormal (13 bits lost) although factor * exp(-710)
    may be a normal float when |factor| > 1; each half, exp(-355), is normal.
    """
    half = np.exp(-0.5 * hi)
    return (factor * half) * half * (1.0 - lo)


def expit_times(hi: Array, lo: Array, factor: Array | float) -> Array:
    """factor * sigma(hi + lo) without a subnormal intermediate.

    For hi < -708, sigma(hi) is subnormal and has lost bits although
    factor * sigma(hi) may be normal (x sigma(x) at x = -710 is -3e-306).
    """
    neg = np.minimum(hi, 0.0)
    lo_neg = np.where(hi < 0, lo, 0.0)
    below = exp_neg(-neg, -lo_neg, factor) / (1.0 + np.exp(neg))
    return np.where(hi < 0, below, factor * expit(np.maximum(hi, 0.0), np.where(hi >= 0, lo, 0.0)))


def dexpit_times(hi: Array, lo: Array, factor: Array | float) -> Array:
    """factor * sigma'(hi + lo) = factor * sigma(z) sigma(-z), without a subnormal intermediate."""
    a = np.abs(hi)
    a_lo = np.where(hi < 0, -lo, lo)
    e = np.exp(-a)
    return exp_neg(a, a_lo, factor) / ((1.0 + e) * (1.0 + e))


def divide(x: Array, d: float) -> tuple[Array, Array]:
    """x / d as hi + lo: the quotient and its exact remainder divided by d.

    The remainder is worked out with x and d scaled to [1/2, 1) and scaled back: unscaled, the
    products of a tiny x or d lose their low bits to underflow, and dividing by a tiny d makes
    that loss large (x / 1e-310 at x = -5.9e-311 came out 2^-45 off instead of 2^-100)."""
    q = x / d
    xm, xe = np.frexp(x)
    dm, de = math.frexp(d)
    qm = xm / dm
    p, p_lo = two_prod(qm, dm)
    return q, np.ldexp(((xm - p) - p_lo) / dm, xe - de)
