"""Correctly rounded results: the exact value of a quantity, rounded once to a format.

Formats are IEEE binary64 (float64), binary32 (float32), binary16 (float16)
and bfloat16 (8 significant bits, float32's exponent range), each with its
subnormals, rounded to nearest, ties to even.  The exact value comes from the
registry's :class:`~.registry.Exact` definitions, evaluated with MPFR (gmpy2)
at a working precision that is raised until the rounded result stops changing
(Ziv's strategy): first the format's precision plus 64 bits, then twice as many,
and so on; the result is taken when two consecutive precisions round to the same
number, so a value near a rounding boundary, or a result that cancels, is simply
worked out to more bits.

Two uses:

* **16-bit formats**: every input is one of at most 65,536 values, so an array
  is evaluated once per distinct input (:func:`elementwise`), and the whole
  table of a function (:func:`table`) is what ``GET /reference`` serves.
* **Any format, element by element**: ``POST /check`` compares someone else's
  results with the correctly rounded ones.

Nothing here rounds through another format: inputs are rounded to a format by
:func:`round_to` from float64 directly (ml_dtypes' float64 -> bfloat16 cast
rounds twice, through float32), results from the MPFR value directly.
"""

from __future__ import annotations

import contextvars
import functools
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import gmpy2
import ml_dtypes
import numpy as np
from gmpy2 import mpfr

from . import compiled, registry
from .bounded import B, decide, two_prod
from .exact import rationals
from .registry import (
    Activation,
    ActivationError,
    Array,
    NotSupported,
    ResultOverflow,
    checkpoint,
    element,
    entries,
    first_non_finite,
)


@dataclass(frozen=True)
class Format:
    name: str
    #: Significant bits, and MPFR's exponent range with subnormals (a value is m * 2^e, m in [1/2, 1)).
    precision: int
    emin: int
    emax: int
    #: How results of this format are held in NumPy.
    numpy: Any

    @property
    def context(self) -> Any:
        return gmpy2.context(precision=self.precision, emin=self.emin, emax=self.emax, subnormalize=True)

    @property
    def max(self) -> float:
        return math.ldexp(1.0 - math.ldexp(1.0, -self.precision), self.emax)

    @property
    def smallest(self) -> float:
        """The smallest positive subnormal."""
        return math.ldexp(1.0, self.emin - 1)

    @property
    def bits(self) -> int:
        return int(np.dtype(self.numpy).itemsize * 8)


FORMATS: dict[str, Format] = {
    "float64": Format("float64", 53, -1073, 1024, np.float64),
    "float32": Format("float32", 24, -148, 128, np.float32),
    "float16": Format("float16", 11, -23, 16, np.float16),
    "bfloat16": Format("bfloat16", 8, -132, 128, ml_dtypes.bfloat16),
}
#: Formats whose every input is evaluated through the exact definitions.
SIXTEEN_BIT = ("float16", "bfloat16")
QUANTITIES = ("value", "derivative", "second_derivative")
#: Ziv's strategy stops raising the precision here (never reached but by an exact tie, which
#: every precision rounds alike).
MAX_BITS = 1 << 14
MPQ = type(gmpy2.mpq())


def round_to(x: Array, fmt: Format) -> Array:
    """float64 values rounded once to ``fmt`` (to nearest, ties to even, with subnormals), as float64.

    ``inf`` where the rounded value exceeds the format.  Exact: x * 2^-q has at most
    53 significant bits, so np.rint rounds it exactly once.
    """
    x = np.asarray(x, dtype=np.float64)
    if fmt.precision == 53:
        return x.copy()
    _, e = np.frexp(x)
    # The quantum of x in fmt: 2^(e - precision), but never finer than the subnormals'.
    q = np.maximum(e, fmt.emin + fmt.precision - 1) - fmt.precision
    with np.errstate(over="ignore"):
        out = np.ldexp(np.rint(np.ldexp(x, -q)), q)
    return np.asarray(np.where(np.abs(out) > fmt.max, np.copysign(np.inf, x), out), dtype=np.float64)


def as_format(x: Array, fmt: Format) -> np.ndarray[Any, Any]:
    """float64 values already representable in ``fmt``, in fmt's NumPy type (an exact conversion)."""
    return np.asarray(x, dtype=np.float64).astype(fmt.numpy)


def _signature(r: Any) -> tuple[float, bool]:
    return float(r), bool(gmpy2.is_signed(r))


def _midpoint(value: Any, fmt: Format) -> bool:
    """Whether ``value`` lies exactly halfway between two neighbouring numbers of ``fmt``."""
    finer = gmpy2.context(precision=fmt.precision + 1, emin=fmt.emin - 1, emax=fmt.emax, subnormalize=True)
    return bool(finer.plus(value) == value and fmt.context.plus(value) != value)


def ziv(compute: Callable[[int], Any], fmt: Format) -> float:
    """``compute(precision)`` rounded once to ``fmt``, by Ziv's strategy.

    The working precision doubles from the format's precision plus 64 bits until two consecutive
    precisions round to the same number.  A result that lands exactly on a midpoint of the format
    never counts (rounded to nearest at the working precision, it says nothing about which side the
    true value is on), until MAX_BITS, where only a true midpoint, an exact rational result, still
    lands there and is rounded to even.  An exact zero is +0 (the real number 0, whatever the sign
    of the input); a negative result too small for the format, or even for MPFR, is -0.
    ``compute`` returns None for a 0 made by cancellation that its precision cannot tell from a
    small true value: the next precision is tried.
    """
    target = fmt.context
    prec = fmt.precision + 64
    previous: tuple[float, bool] | None = None
    while True:
        checkpoint()
        with gmpy2.context(gmpy2.get_context(), precision=prec) as context:
            context.clear_flags()
            value = compute(prec)
            underflow = bool(context.underflow)
        if isinstance(value, MPQ):  # an exact rational: rounded exactly
            return round_rational(value, fmt)
        if value is None:  # a computed 0 that this precision cannot tell from a small true value
            if prec >= MAX_BITS:
                return 0.0
            prec *= 2
            continue
        if gmpy2.is_zero(value) and not underflow:
            return 0.0  # definitions return 0 exactly where, and only where, the true value is 0
        if prec >= MAX_BITS:
            return _signature(target.plus(value))[0]
        rounded = None if _midpoint(value, fmt) else _signature(target.plus(value))
        if rounded is not None and rounded == previous:
            return rounded[0]
        previous = rounded
        prec *= 2


def round_rational(value: Any, fmt: Format) -> float:
    """A rational rounded once to ``fmt`` (to nearest, ties to even, with subnormals; +0 for an exact
    0, inf beyond the format), in integer arithmetic."""
    if value == 0:
        return 0.0
    a = abs(value)
    num, den = int(a.numerator), int(a.denominator)
    e = num.bit_length() - den.bit_length()  # 2^e <= a < 2^(e + 2)
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    quantum = max(e - fmt.precision + 1, fmt.emin - 1)
    big_n, big_d = (num, den << quantum) if quantum >= 0 else (num << -quantum, den)
    k, rest = divmod(big_n, big_d)
    if 2 * rest > big_d or (2 * rest == big_d and k % 2):
        k += 1
    # (fmt.emax is MPFR's: every finite number of the format lies below 2^emax)
    r = math.inf if k.bit_length() + quantum > fmt.emax else math.ldexp(k, quantum) if k else 0.0
    return -r if value < 0 else r


def ziv_many(compute: Callable[[int], list[Callable[[], Any]]], count: int, fmt: Format) -> list[float]:
    """Several results of one computation (the elements of a vector) rounded once to ``fmt``, by
    Ziv's strategy as :func:`ziv`: ``compute(precision)`` prepares the computation at a working
    precision and returns one callable an element; an element is taken when two consecutive
    precisions round it alike.  A zero is taken as it comes: the vector definitions return +0
    for exact zeros, and a signed 0 only from an underflow (a true value beyond MPFR's range);
    ``None`` for a zero that cancellation made at this precision (the next precision decides)."""
    target = fmt.context
    prec = fmt.precision + 64
    previous: list[tuple[float, bool] | None] = [None] * count
    done: dict[int, float] = {}
    while len(done) < count:
        with gmpy2.context(gmpy2.get_context(), precision=prec):
            elements = compute(prec)
            for k in range(count):
                if k in done:
                    continue
                checkpoint()  # a long vector's elements take a while: a stopped request stops here
                value = elements[k]()
                if value is None:  # see ziv: undecided at this precision
                    if prec >= MAX_BITS:
                        done[k] = 0.0
                    previous[k] = None
                    continue
                if isinstance(value, MPQ):  # an exact rational (entmax15's): rounded exactly
                    done[k] = round_rational(value, fmt)
                    continue
                if gmpy2.is_zero(value) or prec >= MAX_BITS:
                    done[k] = _signature(target.plus(value))[0]
                    continue
                rounded = None if _midpoint(value, fmt) else _signature(target.plus(value))
                if rounded is not None and rounded == previous[k]:
                    done[k] = rounded[0]
                previous[k] = rounded
        prec *= 2
    return [done[k] for k in range(count)]


def correctly_rounded(fn: Callable[..., Any], x: float, params: Mapping[str, float], fmt: Format) -> float:
    """fn(x, **params) rounded once to ``fmt`` (see :func:`ziv`): ``inf`` where it exceeds the format."""
    checkpoint()
    arg = mpfr(x, 53)
    args = exact_args(params)
    return ziv(lambda _: fn(arg, **args), fmt)


def _component(table: Mapping[str, Callable[..., Any]], param: str) -> Callable[..., Any] | None:
    """The derivative named ``param``: a parameter's, or for name[k] that of the k-th number of an
    array parameter (the definition takes ``index=k``)."""
    if "[" not in param:
        return table.get(param)
    name, index = param[:-1].split("[")
    fn = table.get(name)
    return None if fn is None else functools.partial(fn, index=int(index))


def exact_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as the exact definitions take them: each float64 exactly (an array: a tuple)."""
    return {
        name: tuple(mpfr(v, 53) for v in value) if isinstance(value, tuple) else mpfr(value, 53)
        for name, value in params.items()
    }


def function_of(entry: Activation, quantity: str, param: str | None = None) -> Callable[..., Any]:
    """The exact definition of ``quantity`` ("value", "derivative", "second_derivative", or with
    ``param`` the derivative with respect to that parameter)."""
    exact = entry.exact
    if exact is None:
        why = "is a vector function" if entry.kind == "vector" else "has no exact definition yet"
        raise NotSupported(
            "dtype",
            f"{entry.name} {why}: /check and /reference take a function of one variable: "
            f"{', '.join(e.name for e in entries() if e.exact is not None)}",
        )
    if param is not None:
        found = _component(exact.params, param)
        if found is None:
            raise KeyError(param)
        return found
    if quantity not in QUANTITIES:
        raise ValueError(quantity)
    return {"value": exact.value, "derivative": exact.derivative, "second_derivative": exact.second}[quantity]


def elementwise(
    entry: Activation,
    quantity: str,
    x: Array,
    params: Mapping[str, float],
    fmt: Format,
    param: str | None = None,
) -> Array:
    """The correctly rounded ``quantity`` at every element of ``x`` (values of ``fmt``, as float64),
    evaluated once per distinct input; ``inf`` where a result exceeds the format."""
    fn = function_of(entry, quantity, param)
    unique, inverse = np.unique(np.asarray(x, dtype=np.float64), return_inverse=True)
    _take_channel_budget(unique.size, fmt)
    results = np.array([correctly_rounded(fn, float(v), params, fmt) for v in unique], dtype=np.float64)
    return results[inverse].reshape(np.shape(x))


def every_value(fmt: Format) -> Array:
    """The value of every bit pattern of a 16-bit format, in their order, as float64 (NaN for NaNs)."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):  # the NaN patterns
        return bits.view(fmt.numpy).astype(np.float64)


def finite_inputs(fmt: Format) -> Array:
    """Every finite value of a 16-bit format, in the order of their bit patterns, as float64."""
    values = every_value(fmt)
    return values[np.isfinite(values)]


def table(entry: Activation, quantity: str, params: Mapping[str, float], fmt: Format) -> tuple[Array, Array]:
    """Every finite input of a 16-bit format and its correctly rounded ``quantity`` (``inf`` where it
    exceeds the format), both as float64: the table arrays are looked up in (:func:`sixteen_bit`)."""
    if fmt.name not in SIXTEEN_BIT:
        raise ValueError(fmt.name)
    values = every_value(fmt)
    finite = np.isfinite(values)
    y = _lookup(entry.name, quantity, None, tuple(sorted(params.items())), fmt.name)
    return values[finite], y[finite]


def check_finite(y: Array, field: str, fmt: Format) -> None:
    """Refuse a result that exceeds the format, naming its first element."""
    index = first_non_finite(np.asarray(y))
    if index is not None:
        raise ResultOverflow(
            element(field, index), f"the true result exceeds the {fmt.name} range (+-{fmt.max:.4g})"
        )


# -- errors in ULPs, for /check ------------------------------------------------------------


def ulp(x: Array, fmt: Format) -> Array:
    """The unit in the last place of each (representable, finite) value of ``fmt``: the gap to the next
    larger magnitude."""
    x = np.asarray(x, dtype=np.float64)
    _, e = np.frexp(x)
    spacing = np.ldexp(1.0, np.maximum(e, fmt.emin + fmt.precision - 1) - fmt.precision)
    return np.where(x == 0, fmt.smallest, spacing)  # (frexp gives 0 an exponent of 0)


def ulp_error(given: Array, correct: Array, fmt: Format) -> Array:
    """|given - correct| in units of the last place of the correctly rounded value (exact in float64
    for the 16-bit formats and float32; for float64, the difference is taken in long double)."""
    given = np.asarray(given, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    difference = np.abs(given.astype(np.longdouble) - correct.astype(np.longdouble))
    ratio = difference / ulp(correct, fmt).astype(np.longdouble)
    # Against a correct 0 (spacing: the smallest subnormal), an error can exceed the float64 range:
    # it is reported as the largest float64 (JSON has no infinity).
    return np.asarray(np.minimum(ratio, np.finfo(np.float64).max), dtype=np.float64)


# -- arrays in the 16-bit formats -------------------------------------------------------------


@lru_cache(maxsize=16)  # 16 tables of 65,536 float64: 8 MiB at most
def _lookup(
    name: str, quantity: str, param: str | None, params: tuple[tuple[str, float], ...], fmt_name: str
) -> Array:
    """The correctly rounded quantity at every bit pattern of a 16-bit format (NaN where the input is not
    finite), computed once per function, quantity, parameters and format."""
    from . import get

    fmt = FORMATS[fmt_name]
    x = every_value(fmt)
    out = np.full(x.shape, np.nan)
    finite = np.isfinite(x)
    out[finite] = elementwise(get(name), quantity, x[finite], dict(params), fmt, param)
    return out


#: Above this many distinct inputs, a whole table is computed (and kept) instead.
TABLE_FROM = 4096

#: What is left of a per-channel request's exact evaluations in the 16-bit formats (see per_channel).
_channel_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "channel_budget", default=None
)


@contextmanager
def per_channel(elements: int) -> Iterator[None]:
    """A per-channel request of ``elements``: each channel's 16-bit results are worked out for its
    own distinct inputs (a table of every input for each channel's own weight is 1.2 s of work that
    no other request shares), and all of them together within EXACT_FLOOR + EXACT_SHARE of the
    elements: 64 fresh weights over 4,200 distinct float16 inputs each was 83 s of a worker."""
    token = _channel_budget.set([EXACT_FLOOR + int(EXACT_SHARE * elements)])
    try:
        yield
    finally:
        _channel_budget.reset(token)


def _take_channel_budget(count: int, fmt: Format) -> None:
    left = _channel_budget.get()
    if left is None:
        return
    left[0] -= count
    if left[0] < 0:
        limit = f"{EXACT_FLOOR:,} + {EXACT_SHARE:.0%} of the elements"
        raise ActivationError(
            "params",
            f"a per-channel parameter in {fmt.name} takes each channel's distinct inputs one by one, "
            f"at most {limit} a request in all: send fewer channels or distinct values a request",
        )


def sixteen_bit(
    entry: Activation,
    quantity: str,
    x: Array,
    params: Mapping[str, float],
    fmt: Format,
    param: str | None = None,
) -> Array:
    """``quantity`` at every element of ``x`` (values of a 16-bit format, as float64), correctly rounded:
    from the function's table when the array has many distinct inputs, else input by input."""
    function_of(entry, quantity, param)  # refuses vector functions
    if np.unique(x).size <= TABLE_FROM or _channel_budget.get() is not None:
        # (a channel of a per-channel request: its own inputs only, never a table an own weight)
        return elementwise(entry, quantity, x, params, fmt, param)
    bits = np.asarray(x, dtype=np.float64).astype(fmt.numpy).view(np.uint16)
    return _lookup(entry.name, quantity, param, tuple(sorted(params.items())), fmt.name)[bits]


def from_double(
    entry: Activation,
    quantity: str,
    x: Array,
    g: Array | None,
    r64: Array,
    params: Mapping[str, float],
    fmt: Format,
    param: str | None = None,
) -> Array:
    """16-bit results from the correctly rounded float64 ones ``r64`` of the same x (and g): a
    midpoint of ``fmt`` is a float64 number, so none lies strictly between a true value v and
    RN64(v), and RN(RN64(v)) = RN(v) unless RN64(v) is itself a midpoint; those few (exact ties
    among them) from the exact definitions.  A table or an evaluation a distinct input otherwise."""
    r = round_to(r64, fmt)
    ties = np.flatnonzero(midpoints(r64, r, fmt))
    if ties.size:
        flat = r.reshape(-1)
        xs = np.ravel(x)[ties]
        if g is None:
            flat[ties] = elementwise(entry, quantity, xs, params, fmt, param)
        else:
            flat[ties] = scaled(entry, quantity, xs, np.ravel(g)[ties], params, fmt)
    return r


def summed_through_double(
    entry: Activation, param: str, x: Array, g: Array, params: Mapping[str, float], fmt: Format
) -> float:
    """sum(g * dy/dparam) rounded once to a 16-bit format, from its correctly rounded float64 value
    (see from_double), exactly where that is a midpoint of ``fmt``."""
    if np.size(x) > EXACT_FLOOR:  # (float64's sum is rounded from its bound beyond: exactly here)
        return summed(entry, param, x, g, params, fmt)
    total = np.asarray(rounded_sum(entry, param, x, g, params, "float64"))
    r = round_to(total, fmt)
    if midpoints(total, r, fmt):
        return summed(entry, param, x, g, params, fmt)
    return float(r)


def midpoints(r64: Array, r: Array, fmt: Format) -> Array:
    """Where float64 values ``r64`` (rounded to ``fmt``: ``r``) are exactly midpoints of ``fmt``:
    their float64 neighbours round to different numbers of it."""
    with np.errstate(invalid="ignore"):
        below = round_to(np.nextafter(r64, -np.inf), fmt)
        above = round_to(np.nextafter(r64, np.inf), fmt)
        return np.asarray((below != above) & (r != r64) & np.isfinite(r64))


def scaled(
    entry: Activation, quantity: str, x: Array, g: Array, params: Mapping[str, float], fmt: Format
) -> Array:
    """g * quantity(x) at every element, correctly rounded (the vector-Jacobian product of an
    elementwise function: one rounding of the exact product, not of a rounded derivative)."""
    fn = function_of(entry, quantity)
    pairs, inverse = np.unique(np.stack([np.ravel(x), np.ravel(g)], axis=1), axis=0, return_inverse=True)
    _take_channel_budget(len(pairs), fmt)
    out = np.empty(len(pairs))
    for i, (xi, gi) in enumerate(pairs):
        checkpoint()
        out[i] = correctly_rounded(_times(float(gi), fn), float(xi), params, fmt)
    return out[np.ravel(inverse)].reshape(np.shape(x))


def _times(factor: float, fn: Callable[..., Any]) -> Callable[..., Any]:
    """factor * fn, the product exact (a double times a working-precision number)."""
    exact = mpfr(factor, 53)

    def product(v: Any, **p: Any) -> Any:
        if exact == 0:
            return mpfr(0)  # exactly 0, whatever fn(v) is (and without its underflow: +0)
        with rationals():
            value = fn(v, **p)
        if isinstance(value, MPQ):
            return gmpy2.mpq(factor) * value  # exact: the caller rounds it once
        with gmpy2.context(gmpy2.get_context(), precision=gmpy2.get_context().precision + 64):
            return exact * value

    return product


def summed(
    entry: Activation, param: str, x: Array, g: Array, params: Mapping[str, float], fmt: Format
) -> float:
    """sum(g * dy/dparam), correctly rounded: the exact sum of the exact products, rounded once."""
    fn = function_of(entry, "value", param)
    unique, inverse = np.unique(np.ravel(x), return_inverse=True)
    _take_channel_budget(unique.size, fmt)
    weights = np.ravel(g)
    index = np.ravel(inverse)
    args = exact_args(params)

    def total(prec: int) -> Any:
        # Exact products (each of a double and a prec-bit number), summed a chunk at a time (the
        # terms of one chunk at once in memory), the chunks' sums added at 64 bits more still.
        # Rational derivatives (the piecewise-quadratic functions') are summed exactly, as
        # rationals: a sum of them can be a midpoint of the format (see exact.rationals).
        context = gmpy2.get_context()
        acc: Any = gmpy2.mpq(0)
        for start in range(0, len(weights), FAST_CHUNK):
            checkpoint()
            chunk = range(start, min(start + FAST_CHUNK, len(weights)))
            with rationals():
                derivatives = {
                    k: fn(mpfr(float(unique[k]), 53), **args) for k in set(index[chunk.start : chunk.stop])
                }
            if isinstance(acc, MPQ) and all(isinstance(d, MPQ) for d in derivatives.values()):
                acc = acc + sum(
                    (gmpy2.mpq(float(weights[i])) * derivatives[index[i]] for i in chunk), gmpy2.mpq(0)
                )
                continue
            with gmpy2.context(context, precision=prec + 64):
                part = gmpy2.fsum([mpfr(float(weights[i]), 53) * derivatives[index[i]] for i in chunk])
            with gmpy2.context(context, precision=prec + 128):
                acc = acc + part
        return acc

    return ziv(total, fmt)


# -- float64 and float32: the fast path and its exact fallback ---------------------------------

#: The working precision of the fast path, by result format: long double for both (float64 would
#: do for float32 results, but its exponent range does not: products of e^-|x| underflow where
#: long double keeps them).  ``force_working`` changes it (tests force float64 for float64
#: results: the route a machine without an extended long double takes).
_WORKING: dict[str, Any] = {"float64": np.longdouble, "float32": np.longdouble}
#: Elements the fast path evaluates at a time: its intermediates stay in cache.
FAST_CHUNK = 16384


#: Elements of one call that may go to the exact route: this many, plus EXACT_SHARE of the call's
#: elements.  Ordinary inputs send 0.1-2% there; inputs chosen to sit on rounding boundaries (or
#: on the zeros of f') could send every element, at 20-100 us each, holding the interpreter: such a
#: request is refused (422) rather than allowed to take minutes of a worker.
EXACT_FLOOR = 65536
EXACT_SHARE = 0.05


class _ExactBudget:
    def __init__(self, elements: int) -> None:
        self.left = EXACT_FLOOR + int(EXACT_SHARE * elements)
        self.lock = threading.Lock()

    def take(self, count: int) -> None:
        with self.lock:
            self.left -= count
            if self.left < 0:
                limit = f"{EXACT_FLOOR:,} + {EXACT_SHARE:.0%} of the elements"
                raise ActivationError(
                    "x",
                    f"too many elements lie too close to a rounding boundary to be decided quickly "
                    f"(the limit is {limit} a request): send them in smaller requests",
                )


_budget: contextvars.ContextVar[_ExactBudget | None] = contextvars.ContextVar("exact_budget", default=None)


@contextmanager
def exact_budget(elements: int) -> Iterator[None]:
    """Bound the elements that calls made inside (blocks in pool threads included: they run in
    copies of this context) send to the exact route, for an array of ``elements``."""
    token = _budget.set(_ExactBudget(elements))
    try:
        yield
    finally:
        _budget.reset(token)


def force_working(fmt_name: str, dtype: Any) -> Any:
    """Use ``dtype`` as the fast path's working precision for results in ``fmt_name``; returns
    the previous one (for tests)."""
    previous = _WORKING[fmt_name]
    _WORKING[fmt_name] = dtype
    return previous


def bounded_of(entry: Activation, quantity: str, param: str | None = None) -> Callable[..., B] | None:
    """The fast definition of a quantity of an elementwise function, or None."""
    fast = entry.fast
    if fast is None:
        return None
    if param is not None:
        return _component(fast.params, param)
    return {"value": fast.value, "derivative": fast.derivative, "second_derivative": fast.second}[quantity]


def rounded(
    entry: Activation,
    quantity: str,
    x: Array,
    params: Mapping[str, float],
    fmt_name: str,
    param: str | None = None,
    g: Array | None = None,
) -> Array:
    """``quantity`` (times ``g`` where given) at every element of ``x``, correctly rounded to
    float64 or float32 (held as float64): bounded evaluation, and the exact definition for the
    elements it cannot decide.  A result beyond the format is ``inf``; the elements after the
    first such one in ``x`` may be left NaN (the caller refuses the request at the first)."""
    fn = bounded_of(entry, quantity, param)
    assert fn is not None
    exact_numpy = getattr(fn, "numpy", None)
    if exact_numpy is not None:
        # Results exact in float64 (x, 0, 1, a parameter): rounded once, by the caller's conversion.
        y = np.asarray(exact_numpy(np.asarray(x, np.float64), **params), np.float64)
        y = y + 0.0  # an exact 0 is +0 (-0 + 0 = +0)
        return y if g is None else _exact_products(y, g, entry, quantity, x, params, fmt_name, param)
    flat = np.ravel(x)
    gflat = None if g is None else np.ravel(g)
    out = np.empty(flat.size)
    for start in range(0, flat.size, FAST_CHUNK):
        checkpoint()
        xs = flat[start : start + FAST_CHUNK]
        gs = None if gflat is None else gflat[start : start + FAST_CHUNK]
        # The compiled tier first, where it has the function: it decides nearly every element;
        # the bounded long double route takes the rest, and MPFR what that leaves.
        # (The compiled tier writes straight into out: no copy of its results.)
        r = out[start : start + xs.size]
        first = (
            None
            if param is not None
            else compiled.values(entry.name, quantity, xs, params, fmt_name, gs, out=r)
        )
        if first is None:
            r[:] = _bounded(fn, entry, quantity, xs, gflat, start, None, params, fmt_name, param)
        elif not first[1].all():
            todo = np.flatnonzero(~first[1])
            r[todo] = _bounded(fn, entry, quantity, xs, gflat, start, todo, params, fmt_name, param)
    return out.reshape(np.shape(x))


def _bounded(
    fn: Callable[..., B],
    entry: Activation,
    quantity: str,
    xs: Array,
    gflat: Array | None,
    start: int,
    at: np.ndarray[Any, Any] | None,
    params: Mapping[str, float],
    fmt_name: str,
    param: str | None,
) -> Array:
    """The results at xs[at] (all of xs where at is None; g from gflat[start:]): the bounded
    evaluation in the working precision, and the exact definitions where it cannot decide."""
    fmt, work = FORMATS[fmt_name], _WORKING[fmt_name]
    sub = xs if at is None else xs[at]
    with np.errstate(all="ignore"):
        b = fn(B.exact(sub, work), **params)
        if gflat is not None:
            gs = gflat[start : start + xs.size]
            b = b * B.exact(gs if at is None else gs[at], work)
        b = b.folded()
        b = B(*np.broadcast_arrays(b.v, b.e, np.empty(sub.shape, work))[:2])
        r, sure = decide(b, fmt.numpy)
    unsure = np.flatnonzero(~sure)
    if unsure.size:
        budget = _budget.get()
        if budget is not None:
            budget.take(int(unsure.size))
        where = unsure if at is None else at[unsure]
        r[unsure] = _exact_in_order(entry, quantity, xs, gflat, start, where, params, fmt, param)
    return r


def _exact_products(
    y: Array,
    g: Array,
    entry: Activation,
    quantity: str,
    x: Array,
    params: Mapping[str, float],
    fmt_name: str,
    param: str | None,
) -> Array:
    """g * y for a y exact in float64, correctly rounded: where y is 0 or +-1 (or a power of two)
    the product is exact; otherwise it goes through the bounded route."""
    gy = np.asarray(g, np.float64) * y
    # y is 0 or a normal power of two (0 and +-1 for the functions that take this route): the
    # product is exact but where it underflows.
    simple = (y.view(np.uint64) & np.uint64((1 << 52) - 1)) == 0
    if fmt_name == "float32":
        simple &= np.abs(gy) >= np.finfo(np.float32).smallest_normal  # (no float32 underflow)
    if simple.all():
        return gy + 0.0  # exact; an exact 0 (g or y is 0) is +0
    with np.errstate(all="ignore"):
        b = B.exact(y, _WORKING[fmt_name]) * B.exact(g, _WORKING[fmt_name])
        r, sure = decide(b, FORMATS[fmt_name].numpy)
    unsure = np.flatnonzero(~np.ravel(sure))
    if unsure.size:
        flat_r = np.ravel(r)
        flat_r[unsure] = _exact_in_order(
            entry, quantity, np.ravel(x), np.ravel(g), 0, unsure, params, FORMATS[fmt_name], param
        )
    return r


def _at_point(fn: Callable[..., Any], arg: Any, args: Mapping[str, Any]) -> Callable[[int], Any]:
    """fn(arg, **args) as Ziv's strategy calls it (with the working precision, unused here)."""

    def compute(_: int) -> Any:
        return fn(arg, **args)

    return compute


def _exact_in_order(
    entry: Activation,
    quantity: str,
    xs: Array,
    gflat: Array | None,
    start: int,
    unsure: np.ndarray[Any, Any],
    params: Mapping[str, float],
    fmt: Format,
    param: str | None,
) -> Array:
    """The exact results at ``unsure`` (indices into xs), in order, up to the first that exceeds the
    format (NaN after it: the request is refused there, and the work it would take is not done)."""
    fn = function_of(entry, quantity, param)
    args = exact_args(params)
    fill = np.full(unsure.size, np.nan)
    seen: dict[tuple[float, float], float] = {}
    for k, i in enumerate(unsure):
        checkpoint()
        xi = float(xs[i])
        gi = 1.0 if gflat is None else float(gflat[start + i])
        key = (xi, gi)
        if key not in seen:
            seen[key] = ziv(_at_point(fn if gflat is None else _times(gi, fn), mpfr(xi, 53), args), fmt)
        fill[k] = seen[key]
        if math.isinf(fill[k]):
            break
    return fill


def _as_doubles(value: Any, work: Any) -> tuple[Any, ...]:
    """A working-precision array as float64 arrays that add up to it exactly (two for x87 long
    double: 64 bits = 53 + 11; the second is exact in float64)."""
    hi = value.astype(np.float64)
    if np.dtype(work) == np.float64:
        return (hi,)
    return hi, (value - hi.astype(work)).astype(np.float64)


def product_terms(v: Any, w: Any, work: Any) -> tuple[list[float], float]:
    """The products v w (working precision) as float64 numbers whose sum is theirs, and a bound on
    what that misses: the exact products (Dekker), each split into float64 parts, which lose what
    lies below float64's smallest subnormal (less than one of it a part).  OverflowError where a
    part is not finite."""
    p, p_err = two_prod(v, w)
    terms: list[float] = []
    loss = 0.0
    for value in (p, p_err):
        parts = _as_doubles(value, work)
        if not all(np.isfinite(part).all() for part in parts):
            raise OverflowError
        rebuilt = sum((part.astype(work) for part in parts), np.zeros_like(value))
        loss += float(np.count_nonzero(rebuilt != value)) * 2.0**-1074
        terms += [t for part in parts for t in part.ravel().tolist()]
    return terms, loss


def rounded_sum(
    entry: Activation, param: str, x: Array, g: Array, params: Mapping[str, float], fmt_name: str
) -> float:
    """sum(g * dy/dparam), correctly rounded to float64 or float32: the bounded products are summed
    exactly (each long double split into two float64 parts, added by ``math.fsum``), and the sum is
    decided with the sum of their bounds; the exact sum of the exact products where that fails, up
    to EXACT_FLOOR terms (beyond, the bounded sum rounded once: see below)."""
    fn = bounded_of(entry, "value", param)
    assert fn is not None
    fmt = FORMATS[fmt_name]
    work = _WORKING[fmt_name]
    flat, gflat = np.ravel(x), np.ravel(g)
    # Each chunk's products, summed exactly: their sum as s + r (s correctly rounded, r the rest,
    # itself rounded: its error, at most half an ULP of r, is added to the bound).
    heads: list[float] = []
    bound = 0.0
    try:
        with np.errstate(all="ignore"):
            for start in range(0, flat.size, FAST_CHUNK):
                checkpoint()
                b = fn(B.exact(flat[start : start + FAST_CHUNK], work), **params).folded()
                w = np.asarray(gflat[start : start + FAST_CHUNK], work)
                v, e = np.broadcast_arrays(b.v, b.e)
                # The products and their rounding errors, exactly (Dekker): an exact derivative
                # (0, +-1, x) makes an exact term, and a sum of exact terms is decided.
                terms, loss = product_terms(v, w, work)
                head = math.fsum(terms)
                terms.append(-head)
                rest = math.fsum(terms)
                heads += (head, rest)
                bound += float(np.sum(e * np.abs(w), dtype=work)) + abs(rest) * 2.0**-52 + loss
            first = math.fsum(heads)
            heads.append(-first)
            second = math.fsum(heads)
    except OverflowError:
        first = math.inf
    if math.isfinite(first) and math.isfinite(bound):
        total = B(np.asarray([first], work) + np.asarray([second], work), np.asarray([bound], work))
        with np.errstate(all="ignore"):
            tiny = float(np.finfo(work).smallest_subnormal)
            total.e = total.e * (1 + 2.0**-30) + abs(second) * 2.0**-52 + (len(heads) + 2) * tiny
            r, sure = decide(total, fmt.numpy)
        if bool(sure[0]) or flat.size > EXACT_FLOOR:
            # Beyond EXACT_FLOOR terms the exact sum (every term held at a working precision,
            # 20-100 us a term) is not attempted: the sum of the bounded products, rounded once,
            # within the sum of their bounds (about 2^-61 of the sum of the terms' magnitudes).
            return float(r[0])
    if flat.size > EXACT_FLOOR:
        raise ActivationError(
            "grad",
            f"grad_params.{param}: some of the {flat.size:,} products could not be bounded in extended "
            f"precision, and exact sums are worked out for at most {EXACT_FLOOR:,} elements: send the "
            "elements in parts and add the sums",
        )
    return summed(entry, param, x, g, params, fmt)


registry.use_rounding(sys.modules[__name__])
