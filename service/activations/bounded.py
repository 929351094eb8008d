"""Values with a running error bound: the fast path of correctly rounded results.

A :class:`B` holds an array of values ``v`` computed in a working precision and
an array ``e`` of bounds on their absolute error: the true value of each
element lies in ``[v - e, v + e]``.  Every operation adds its own rounding
error (``u |result|`` for the working precision's unit roundoff ``u``, plus the
error of the C library's function for exp, log1p, tanh...) to the errors it
inherits, propagated through the operation's derivative (Wilkinson's running
error analysis).  Where the whole interval rounds to one number of the target
format, that number is the correctly rounded result (:func:`decide`); the
other elements, a fraction of a percent, are worked out exactly by the caller
(:mod:`.correct`).

The working precision is ``np.longdouble`` for float64 results: on x86-64
the x87 80-bit format, 11 bits more than float64 and an exponent range so wide
that nothing computed here underflows or overflows where a float64 result is
finite (exp(-745) is a normal number).  For float32 results it is float64.
Where ``np.longdouble`` is float64 itself (Windows, macOS on ARM), float64
results are correct all the same: almost every element fails the test and is
worked out exactly (slowly); ``tests/test_fast_rounding.py`` forces that route.

Cancellation needs no special care: a difference of nearly equal terms keeps
the absolute errors of both, so the bound of a result near a root of f' is
large beside the result itself, and the element fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from . import exact as dd

#: Error bound of the C library's exp, expm1, log1p and tanh (and of erfc, :mod:`.erf_extended`),
#: in units of the working precision's unit roundoff u (an ULP is at most 2u |v|).  The largest
#: errors measured against MPFR on x86-64 glibc, 200,000 points each over their whole ranges, in
#: long double ULPs: exp 1.06, expm1 2.13, log1p 2.36, tanh 2.42 (4.84 u), erfc 1.68, sin 0.91 and
#: cos 0.95 (arguments to 1e300 and next to multiples of pi/2); in double, at most 1.13.  Eight units leave a margin of 1.65 over the worst of them.
LIBM_UNITS = 8
#: Double-double arithmetic in float64 loses its low part to underflow: a few of float64's
#: smallest subnormals of absolute error, besides its relative error.
DD_ABSOLUTE = 4 * 2.0**-1074
#: The bounds themselves are computed with rounding: they are enlarged by this factor at the end.
SLACK = 1.0 + 2.0**-40

Ext = Any  # an ndarray of the working dtype


def unit(dtype: Any) -> float:
    """The unit roundoff of a working dtype: 2^-64 for x87 long double, 2^-53 for float64."""
    return float(np.finfo(dtype).eps) / 2


def tiny(dtype: Any) -> Any:
    """The smallest positive subnormal of a working dtype: the absolute error of an underflow."""
    return np.finfo(dtype).smallest_subnormal


class B:
    """Values and bounds on their absolute errors; ``lo``, where present, is an exact low part
    (the value is v + lo exactly, up to e): functions that amplify the error of their argument
    (exp) use it, everything else folds it into e."""

    __slots__ = ("e", "lo", "v")

    def __init__(self, v: Ext, e: Ext, lo: Ext | None = None) -> None:
        self.v = v
        self.e = e
        self.lo = lo

    # -- construction ---------------------------------------------------------------------

    @staticmethod
    def exact(x: Any, dtype: Any) -> B:
        """Values exact in the working dtype (inputs, float64 parameters)."""
        v = np.asarray(x, dtype=dtype)
        return B(v, np.zeros_like(v))

    def like(self, c: float | B) -> B:
        if isinstance(c, B):
            return c.folded()
        # A 0-d value and error: they broadcast against arrays (no array of zeros to fill).
        return B(np.asarray(c, dtype=self.v.dtype), np.zeros((), self.v.dtype))

    def folded(self) -> B:
        if self.lo is None:
            return self
        return B(self.v, self.e + np.abs(self.lo))

    def _r(self, v: Ext, underflow: bool = True) -> Ext:
        """The rounding error of an operation that gave v: half an ULP (u |v|), and where the
        operation can underflow, the smallest subnormal (a sum cannot: it is exact there)."""
        return unit(v.dtype) * np.abs(v) + (tiny(v.dtype) if underflow else 0)

    def is_zero(self) -> Any:
        """Where the value is exactly 0."""
        return (self.v == 0) & (self.e == 0) & (True if self.lo is None else self.lo == 0)

    # -- arithmetic ----------------------------------------------------------------------

    def __neg__(self) -> B:
        return B(-self.v, self.e, None if self.lo is None else -self.lo)

    def __abs__(self) -> B:
        lo = None if self.lo is None else np.where(self.v < 0, -self.lo, self.lo)
        return B(np.abs(self.v), self.e, lo)

    def __add__(self, other: float | B) -> B:
        a, b = self.folded(), self.like(other)
        v = a.v + b.v
        # The rounding error itself (TwoSum, exact), not a bound: exact sums stay exact.
        t = v - a.v
        rounding = np.abs((a.v - (v - t)) + (b.v - t))
        return B(v, a.e + b.e + np.where(np.isfinite(rounding), rounding, np.inf))

    __radd__ = __add__

    def __sub__(self, other: float | B) -> B:
        return self + (-self.like(other))

    def __rsub__(self, other: float | B) -> B:
        return self.like(other) - self

    def __mul__(self, other: float | B) -> B:
        if isinstance(other, float | int) and float(other) == 0:
            return B(self.v * 0.0, np.zeros_like(self.v))  # exactly 0 (an exact 0 is +0 in decide)
        if isinstance(other, float | int) and dd.is_power_of_two(float(other)):
            # Exact (but for an underflow, which tiny() covers).
            c = float(other)
            lo = None if self.lo is None else self.lo * c
            v = self.v * c
            under = np.where(np.abs(v) < 2 * np.finfo(v.dtype).tiny, tiny(v.dtype), 0) if abs(c) < 1 else 0
            return B(v, np.where(self.is_zero(), 0, self.e * abs(c) + under), lo)
        a, b = self.folded(), self.like(other)
        v = a.v * b.v
        e = np.abs(a.v) * b.e + np.abs(b.v) * a.e + a.e * b.e + unit(v.dtype) * np.abs(v)
        e = _exact_product_error(a, b, v, e)
        # The underflow allowance, where the product is that small; none where an operand is an
        # exact 0 (the product is then an exact 0 too).
        small = np.abs(v) < 2 * np.finfo(v.dtype).tiny
        if small.any():
            e = e + np.where(small & ~(a.is_zero() | b.is_zero()), tiny(v.dtype), 0)
            # A product of numbers of known sign that underflows (as e^-FLOOR squared, see exp)
            # is held, like exp's results, as a number of that sign far below every format's range.
            signed = small & (np.abs(a.v) > a.e) & (np.abs(b.v) > b.e)
            if signed.any():
                proxy = np.sign(a.v) * np.sign(b.v) * _floor_value(v.dtype)
                v = np.where(signed, proxy, v)
                e = np.where(signed, np.abs(proxy) * (1 - 2.0**-20), e)
        return B(v, e)

    __rmul__ = __mul__

    def __truediv__(self, other: float | B) -> B:
        if isinstance(other, float | int):
            return self._by_constant(float(other))
        a, b = self.folded(), self.like(other)
        v = a.v / b.v
        margin = np.abs(b.v) - b.e
        e = np.where(margin > 0, (a.e + np.abs(v) * b.e) / np.where(margin > 0, margin, 1), np.inf)
        return B(v, np.where(a.is_zero() & (margin > 0), 0, e + self._r(v)))

    def _by_constant(self, d: float) -> B:
        """a / d for a float d: where a is exact and the quotient q is too (the remainder a - q d,
        formed exactly by Dekker's product, is 0), no error: an exact midpoint is then rounded
        to even, as it must be, rather than sent to the exact route."""
        a = self.folded()
        v = a.v / d
        e = np.abs(a.e / d) + self._r(v)
        p, rest = two_prod(v, np.asarray(d, v.dtype))
        exact = (a.e == 0) & (a.v - p == rest) & np.isfinite(v) & (np.abs(v) > 2 * np.finfo(v.dtype).tiny)
        return B(v, np.where(exact | a.is_zero(), 0, e))

    def __rtruediv__(self, other: float | B) -> B:
        return self.like(other) / self

    def square(self) -> B:
        return self * self


def _split(a: Ext) -> tuple[Ext, Ext]:
    """Veltkamp's split of the working dtype: a = hi + lo, halves whose products are exact."""
    bits = np.finfo(a.dtype).nmant + 1
    c = a * (2.0 ** ((bits + 1) // 2) + 1)
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: Ext, b: Ext) -> tuple[Ext, Ext]:
    """a b = p + err exactly in the working dtype (Dekker; barring overflow and underflow)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _exact_product_error(a: B, b: B, v: Ext, e: Ext) -> Ext:
    """Where both factors are exact, the product's error is the exact Dekker remainder, not half an
    ULP: 0 where the product did not round (1.5 x, a float64 times a short constant), which
    decide() then rounds once, ties to even, instead of sending a midpoint to the exact route."""
    both = (a.e == 0) & (b.e == 0)
    if not np.any(both):
        return e
    info = np.finfo(v.dtype)
    # Dekker's split and remainder are exact away from overflow and underflow.
    big = info.max / 2.0 ** (info.nmant // 2 + 3)
    small = info.tiny * 2.0 ** (info.nmant + 3)
    with np.errstate(all="ignore"):
        safe = both & (np.abs(a.v) < big) & (np.abs(b.v) < big) & (np.abs(v) > small)
        if not np.any(safe):
            return e
        _, err = two_prod(a.v, b.v)
        return np.where(safe & np.isfinite(err), np.abs(err), e)


def _argument(a: B) -> tuple[Ext, Ext | None]:
    """The error of an argument and the exact low part a function may correct for to first order:
    the low part only where it is small in absolute terms (|lo| < 2^-30); a larger one is added to
    the error like any."""
    if a.lo is None:
        return a.e, None
    small = np.abs(a.lo) < 2.0**-30
    return a.e + np.where(small, 0, np.abs(a.lo)), np.where(small, a.lo, 0)


# -- the C library's functions, with the error they add ----------------------------------------------


def _libm(v: Ext, a: B | None = None) -> Ext:
    """The error of a library function's result v; none where its argument ``a`` is an exact 0
    (tanh, expm1, log1p and sqrt give exactly 0 there)."""
    e = LIBM_UNITS * unit(v.dtype) * np.abs(v) + tiny(v.dtype)
    return e if a is None else np.where(a.is_zero(), 0, e)


#: exp(-x) below exp(-FLOOR[dtype]) is taken as this tiny positive number (see :func:`exp`).
FLOOR = {np.dtype(np.longdouble): 11000.0, np.dtype(np.float64): 700.0}


def _floor_value(dtype: Any) -> Any:
    """e^-FLOOR in ``dtype``: how exp holds a positive result below it."""
    return np.exp(-np.asarray(FLOOR.get(np.dtype(dtype), 700.0), dtype))


def exp(a: B) -> B:
    """e^a; an exact low part of the argument enters as the first-order correction e^v (1 + lo).

    Below e^-FLOOR (a normal number of the working dtype, far below half the smallest subnormal
    of the target format even multiplied by the square of its largest number) the result is
    held as v = e^-FLOOR, e = v (1 - 2^-20): a positive number that small.  It never underflows
    to 0, so the sign of what is built from it (x sigma(x) at x = -1e300 is -0) stays known.
    """
    floor = FLOOR.get(np.dtype(a.v.dtype), 700.0)
    arg_e, lo = _argument(a)
    deep = a.v + arg_e < -floor
    v = np.exp(np.maximum(a.v, -floor))
    e = np.where(deep, v * (1 - 2.0**-20), v * np.expm1(arg_e) + _libm(v))
    if lo is not None:
        # e^(v + lo) = e^v (1 + lo + lo^2/2 + ...), |lo| < 2^-30: the rest is below lo^2 e^v.
        lo = np.where(deep, 0, lo)
        e = e + v * lo * lo
        v = v + v * lo
        e = e + a._r(v, underflow=False)
    # Past the working range the result is +inf with no error: a true result that large exceeds
    # every target format (decide() takes it for an overflow only where nothing else is in doubt).
    e = np.where(a.v - arg_e > np.log(np.finfo(a.v.dtype).max), 0, e)
    return B(v, e)


def expm1(a: B) -> B:
    s = a.folded()
    v = np.expm1(s.v)
    # |expm1(t +- e) - expm1(t)| <= e^t expm1(e), and for e >= 1 below e^(t + e) (no 0 * inf).
    spread = np.where(s.e < 1, (v + 1) * np.expm1(np.minimum(s.e, 1)), np.exp(s.v + s.e))
    return B(v, spread + _libm(v, s))


def log1p(a: B) -> B:
    s = a.folded()
    v = np.log1p(s.v)
    margin = (1 + s.v - s.e) * (1 - 4 * unit(v.dtype))
    e = np.where(margin > 0, s.e / np.where(margin > 0, margin, 1), np.inf)
    return B(v, e + _libm(v, s))


def tanh(a: B) -> B:
    s = a.folded()
    v = np.tanh(s.v)
    # |tanh'(t)| = sech^2 t <= min(1, 4 e^(-2|t|)) over the interval.
    slope = np.minimum(1, 4 * np.exp(-2 * np.maximum(np.abs(s.v) - s.e, 0)))
    return B(v, s.e * slope + _libm(v, s))


def _periodic(a: B, fn: Any, slope: Any, zero_at_zero: bool) -> B:
    """sin or cos of a, with ``slope`` its derivative: an exact low part of the argument enters to
    first order (f(v + lo) = f(v) + lo f'(v), the rest below lo^2 / 2).  The result never leaves
    [-1, 1], so its error is at most 2 whatever the argument's (1e300 times a rounded factor)."""
    arg_e, lo = _argument(a)
    v = fn(a.v)
    e = arg_e + (_libm(v, a) if zero_at_zero else _libm(v))
    lost = ~np.isfinite(v)  # the argument overflowed the working dtype: anything in [-1, 1]
    if np.any(lost):
        v, e = np.where(lost, 0, v), np.where(lost, 1, e)
        lo = None if lo is None else np.where(lost, 0, lo)
    if lo is not None:
        d = np.where(lost, 0, slope(a.v)) if np.any(lost) else slope(a.v)
        e = e + lo * lo / 2 + np.abs(lo) * _libm(d)
        v = v + lo * d
        e = e + a._r(v, underflow=False)
    e = np.where(np.isfinite(e), np.minimum(e, 2), 2)
    return B(v, e)


def sin(a: B) -> B:
    return _periodic(a, np.sin, np.cos, zero_at_zero=True)


def cos(a: B) -> B:
    return _periodic(a, np.cos, lambda t: -np.sin(t), zero_at_zero=False)


def sqrt(a: B) -> B:
    s = a.folded()
    v = np.sqrt(np.maximum(s.v, 0))
    low = s.v - s.e
    e = np.where(low > 0, s.e / (v + np.sqrt(np.where(low > 0, low, 0))), np.sqrt(np.maximum(s.v + s.e, 0)))
    return B(v, np.where(s.is_zero(), 0, e * (1 + 8 * unit(v.dtype)) + a._r(v)))


def _digits(value: Any) -> str:
    """An MPFR constant to 60 significant digits (far beyond any working precision here)."""
    import gmpy2

    with gmpy2.context(precision=256):
        return f"{value():.60e}"


def _two_over_sqrt_pi() -> Any:
    import gmpy2

    return 2 / gmpy2.sqrt(gmpy2.const_pi())


TWO_OVER_SQRT_PI = _digits(_two_over_sqrt_pi)
#: erfc(x) is held as a tiny positive number (as exp's FLOOR) beyond this x: erfc(106) is ~1e-4881.
ERFC_FLOOR = 106.0


def erfc(a: B) -> B:
    """erfc(a) (:mod:`.erf_extended`), with an exact low part of the argument entering as the
    first-order correction -lo erfc'(v); |erfc'(t)| = 2/sqrt(pi) e^-t^2 bounds the rest."""
    from .erf_extended import erfc_ext

    dtype = a.v.dtype
    extended = np.finfo(dtype).nmant >= 63
    arg_e, lo = _argument(a)
    deep = a.v - arg_e > ERFC_FLOOR
    t = np.minimum(a.v, ERFC_FLOOR)
    v = np.asarray(erfc_ext(t.astype(np.longdouble)), dtype=dtype)
    k = np.asarray(np.longdouble(TWO_OVER_SQRT_PI), dtype=dtype)
    near = np.maximum(np.abs(a.v) - arg_e, 0)
    slope = k * np.exp(-near * near) * (1 + 2.0**-40)
    # The port's error (1.74 ULP measured) within LIBM_UNITS; without an extended long double
    # its accuracy is not measured, and a loose bound sends nearly everything to the exact route.
    own = LIBM_UNITS * unit(dtype) * np.abs(v) if extended else 2.0**-40 * np.abs(v)
    e = arg_e * slope + own + tiny(dtype)
    if lo is not None:
        density = k * np.exp(-t * t)
        e = (
            e
            + np.abs(lo) * density * (t * t * 8 * unit(dtype) + 8 * unit(dtype))
            + lo * lo * 2 * (np.abs(t) + 1) * density  # lo^2/2 |erfc"| = lo^2 |t| density, and more
        )
        v = v - lo * density
        e = e + unit(dtype) * np.abs(v)
    e = np.where(deep, v * (1 - 2.0**-20), e)
    return B(v, e)


def where(mask: Any, a: B, b: B) -> B:
    a, b = a.folded(), b.folded()
    return B(np.where(mask, a.v, b.v), np.where(mask, a.e, b.e))


def product(x: B, c: float) -> B:
    """x * c for an exact x and a float64 c, with the exact low part (for exp's argument)."""
    if dd.is_power_of_two(c):
        return B(x.v * c, x.e * abs(c))
    x64 = x.v.astype(np.float64)  # x is exact in float64 (an input)
    hi, lo = dd.scale(x64, c)
    b = _pair(hi, lo, x.v.dtype)
    # Exact but where the product is near float64's underflow (or beyond 2^510, see dd.scale).
    return B(b.v, np.where(np.abs(x64) <= 2.0**510, 0, np.abs(b.v) * 2.0**-52) + DD_ABSOLUTE, b.lo)


def times_constant(x: B, c: tuple[float, float]) -> B:
    """x * (c_hi + c_lo) for an exact x and a constant given to double-double precision (its
    error, below 2^-104 relative, is added to the bound)."""
    hi, lo = dd.scale(x.v.astype(np.float64), c)
    b = _pair(hi, lo, x.v.dtype)
    return B(b.v, b.e + np.abs(b.v) * 2.0**-100 + DD_ABSOLUTE, b.lo)


def quotient(x: B, d: float) -> B:
    """x / d for an exact x and a float64 d, with the low part (error below 2^-100 relative)."""
    if dd.is_power_of_two(d):
        return B(x.v / d, x.e / abs(d))
    hi, lo = dd.divide(x.v.astype(np.float64), d)
    b = _pair(hi, lo, x.v.dtype)
    return B(b.v, b.e + np.abs(b.v) * 2.0**-100 + DD_ABSOLUTE, b.lo)


def _pair(hi: Any, lo: Any, dtype: Any) -> B:
    """hi + lo (float64 arrays) as a value of the working dtype and its exact low part."""
    h = hi.astype(dtype)
    low = lo.astype(dtype)
    v = h + low
    rest = (h - v) + low  # exact: |h| >= |low| (Fast2Sum)
    return B(v, np.zeros_like(v), rest)


def dd_mul(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """(a_hi + a_lo)(b_hi + b_lo) as hi + lo in float64 (relative error below 2^-100 for finite
    products away from the underflow range)."""
    p, e = dd.two_prod(a[0], b[0])
    e = e + (a[0] * b[1] + a[1] * b[0])
    hi = p + e
    return hi, e - (hi - p)


def dd_add(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    s, e = dd.two_sum(a[0], b[0])
    e = e + (a[1] + b[1])
    hi = s + e
    return hi, e - (hi - s)


def from_dd(pair: tuple[Any, Any], like: B, relative: float = 2.0**-98) -> B:
    """A double-double value computed to ``relative`` accuracy, with its low part kept exact."""
    b = _pair(np.asarray(pair[0], np.float64), np.asarray(pair[1], np.float64), like.v.dtype)
    return B(b.v, np.abs(b.v) * relative + DD_ABSOLUTE, b.lo)


def constant(value: str | Fraction, like: B) -> B:
    """A published decimal constant (or an exact fraction) in the working dtype of ``like``, with
    the error of its rounding, broadcast to like's shape."""
    dtype = like.v.dtype
    exact = Fraction(value)
    v: Any
    if np.dtype(dtype) == np.dtype(np.longdouble) and isinstance(value, str):
        v = np.longdouble(value)  # strtold: rounded once from the decimal
    elif np.dtype(dtype) == np.dtype(np.longdouble):
        v = np.longdouble(exact.numerator) / np.longdouble(exact.denominator)
    else:
        v = np.asarray(float(exact), dtype=dtype)
    bound = 2 * unit(dtype) * abs(float(exact)) + float(tiny(dtype))
    return B(np.broadcast_to(np.asarray(v, dtype), like.v.shape), np.full(like.v.shape, bound, dtype))


# -- pieces shared by several functions ------------------------------------------------------


def zero(x: B) -> B:
    """An exact 0 (a flat piece, or a derivative there)."""
    return x.like(0.0)


def core(fn: Callable[..., Any]) -> Callable[..., B]:
    """A NumPy function whose float64 results are exact (no rounding: x itself, a parameter, 0,
    1), as a bounded one with no error."""

    def exact_result(x: B, **params: float) -> B:
        return B.exact(np.asarray(fn(x.v.astype(np.float64), **params), dtype=np.float64), x.v.dtype)

    exact_result.numpy = fn  # type: ignore[attr-defined]  # (correct.rounded calls it directly)
    return exact_result


def core_param(fn: Callable[..., Any], name: str) -> Callable[..., B]:
    """One parameter's derivative from a NumPy ``param_grads`` whose results are exact."""
    return core(lambda x, **params: fn(x, **params)[name])


def sigmoid_pair(z: B) -> tuple[B, B]:
    """(sigma(z), sigma(-z)), each with full relative accuracy: t = e^-|z|, 1/(1+t) and t/(1+t)."""
    t = exp(-abs(z))
    d = 1 + t
    big, small = 1 / d, t / d
    positive = z.v >= 0
    return where(positive, big, small), where(positive, small, big)


def dsig(z: B) -> B:
    """sigma'(z) = t / (1 + t)^2, t = e^-|z|."""
    t = exp(-abs(z))
    return t / (1 + t).square()


def log1p_exp_neg(z: B) -> B:
    """log1p(e^-|z|): softplus(z) - max(z, 0)."""
    return log1p(exp(-abs(z)))


# -- the rounding test ------------------------------------------------------------------------


def decide(b: B, target: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(results, sure): ``results`` holds v rounded once to ``target`` (float32 or float64),
    as float64; ``sure`` is True where every number within the error bound rounds alike, so
    that the result is the correctly rounded true value.

    A result whose bound is exactly 0 is exact (a sum or product of exact inputs that did not
    round): its zero is +0, as the exact definitions give it.
    """
    s = b.folded()
    v, e_in = np.broadcast_arrays(s.v, s.e)
    s = B(v, e_in)
    work = v.dtype
    info = np.finfo(target)
    with np.errstate(all="ignore"):
        e = s.e * SLACK
        r = v.astype(target)  # one rounding (x87: straight from the 64-bit significand)
        # How far v is from r, measured away from zero (exact: v and r are close).
        d = v - r.astype(work)
        d = np.where(r < 0, -d, d)
        # The gaps to the neighbours of r, away from zero and toward it: the same but below a
        # power of two (where the gap toward zero is half); at the largest number the gap away
        # is the one below (the overflow threshold is the midpoint to the next power of two).
        size = np.abs(r)
        away = np.where(size == info.max, info.max - np.nextafter(info.max, target(0)), np.spacing(size))
        bits = size.view(np.uint64 if info.bits == 64 else np.uint32)
        power = ((bits & ((1 << info.nmant) - 1)) == 0) & (size > info.smallest_normal)
        half_away = away.astype(work) / 2
        half_toward = np.where(power, half_away / 2, half_away)
        sure = (d + e < half_away) & (e - d < half_toward)
        sure &= np.isfinite(v) & np.isfinite(e) & np.isfinite(r)
        # An exact v (a midpoint included) is rounded by the conversion, to nearest, ties to even.
        sure |= (e == 0) & np.isfinite(v) & np.isfinite(r)
        limit = _overflow_threshold(target, work)
        if limit is not None:
            # Past the midpoint between the largest number and the next power of two: inf.
            sure |= np.isinf(r) & (np.abs(v) - e > limit)
        # A result that rounds to zero takes the sign of the true value, and the exact definitions
        # give an exact 0 as +0: an interval around 0 does not tell which.
        sure &= (r != 0) | (v - e > 0) | (v + e < 0) | (e == 0)
        zero = (s.e == 0) & (v == 0)
    result = np.where(zero, 0.0, r.astype(np.float64))
    return result, sure


def _overflow_threshold(target: Any, work: Any) -> Any:
    """max + half an ULP of ``target`` in the working dtype, or None where it does not fit."""
    info = np.finfo(target)
    one = np.asarray(1, dtype=work)
    limit = np.ldexp(one, info.maxexp) - np.ldexp(one, info.maxexp - info.nmant - 2)
    return limit if np.isfinite(limit) and np.finfo(work).maxexp > info.maxexp else None


# -- what the registry holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class Bounded:
    """An elementwise function's quantities with error bounds: each callable takes ``x`` as an
    exact :class:`B` and the parameters as floats and returns a :class:`B`.  A quantity left out
    (None) is worked out exactly for every element."""

    value: Callable[..., B] | None = None
    derivative: Callable[..., B] | None = None
    second: Callable[..., B] | None = None
    params: dict[str, Callable[..., B]] = field(default_factory=dict)
