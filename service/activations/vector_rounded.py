"""Correctly rounded vector functions: softmax, log_softmax, softmin, glu and the gated units
(swiglu, geglu, geglu_tanh, reglu), and sparsemax.

Every value, Jacobian entry, vector-Jacobian product and temperature derivative
(and their sum, ``grad_params``) is the exact quantity at the given inputs,
rounded once to the requested format.  As for the elementwise functions
(:mod:`.correct`), the work is done twice over only where it must be:

* **Bounded evaluation** (:mod:`.bounded`): the quantities of a group of
  vectors in the working precision (long double) with running error bounds.
  Sums along the axis are pairwise with the exact rounding error of every
  addition carried beside them (:func:`tree_sum`), so their bound stays a few
  units of the working precision however long the vector.  The rounding test
  decides nearly every element.
* **Exact evaluation** of the rest, a vector at a time, with MPFR (:class:`Exact`
  below): the working precision raised until the rounded result settles
  (Ziv's strategy, :func:`.correct.ziv_many`).  The true zeros are decided
  exactly, not by a small result: sums of the form sum_i c_i e^(q_i) with
  rational c_i and distinct rational q_i vanish only when every c_i does
  (Lindemann-Weierstrass), so the softmax family's zeros are read off the
  coefficients grouped by equal inputs.  sparsemax is rational and is worked
  out exactly in fractions.

Nothing here depends on the other vectors of a request: each vector's results
are decided from its own bounds, or worked out from its own inputs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpfr, mpq

from . import compiled, correct
from .bounded import B, decide, exp, log1p, two_prod, unit
from .elementwise import rational_to_odd
from .registry import Activation, ActivationError, Array, checkpoint, get

#: Elements of a group of vectors evaluated at once (long vectors: elements of a column block).
GROUP = correct.FAST_CHUNK
#: The exact route works out a vector's sums (e^q over the whole vector) for each vector with an
#: element the bounded evaluation cannot decide: 5-10 us a term, against 20-100 us for an element
#: of an elementwise function; a vector of n is charged n / EXACT_SUMS elements of the budget.
EXACT_SUMS = 16
#: Precision at which differences and sums of float64 numbers are exact (2,098 bits span every
#: float64, and a hundred more carry the sums of up to 2^100 of them).
EXACT_BITS = 2200


# -- bounded pieces ----------------------------------------------------------------------------


def tree_sum(b: B) -> B:
    """The sum of ``b`` along its last axis (kept, of length 1), with its error bound.

    Pairwise, carrying every addition's exact rounding error (TwoSum) in a second sum that is
    added back at the end: the result is within a few units of the working precision of the
    true sum of the values, plus the sum of their bounds.
    """
    s = b.folded()
    v, e = np.broadcast_arrays(s.v, s.e)
    work = v.dtype
    comp = np.zeros((*v.shape[:-1], 1), work)
    moved = np.zeros((*v.shape[:-1], 1), work)  # sum of |errors|: bounds comp's own rounding
    levels = 0
    while v.shape[-1] > 1:
        if v.shape[-1] % 2:
            pad = np.zeros((*v.shape[:-1], 1), work)
            v = np.concatenate([v, pad], axis=-1)
            e = np.concatenate([e, pad], axis=-1)
        a, c = v[..., ::2], v[..., 1::2]
        t = a + c
        z = t - a
        r = (a - (t - z)) + (c - z)
        comp = comp + np.sum(r, axis=-1, keepdims=True)
        moved = moved + np.sum(np.abs(r), axis=-1, keepdims=True)
        e = e[..., ::2] + e[..., 1::2]
        v = t
        levels += 1
    total = v + comp
    u = unit(work)
    bound = e * (1 + 2 * u * (levels + 1)) + (levels + v.shape[-1] + 4) * u * moved + u * np.abs(total)
    bound = np.where(np.isfinite(total), bound, np.inf)
    return B(total, bound)


def wide(prec: int) -> Any:
    """A gmpy2 context of ``prec`` bits with MPFR's widest exponent range."""
    return gmpy2.context(
        gmpy2.get_context(), precision=prec, emin=gmpy2.get_emin_min(), emax=gmpy2.get_emax_max()
    )


def _lowest_exponent() -> int:
    """The smallest e with 2^e nonzero in :func:`wide`, as this gmpy2 has it: MPFR allows 1 - 2^62,
    but gmpy2 2.3 keeps results to its default range (2^-1073741824) whatever the context says."""
    low, high = -(2**62), 0  # 2^high is nonzero; 2^low is not (or is the limit)
    with wide(64):
        if gmpy2.mul_2exp(mpfr(1), low) != 0:
            return low
        while high - low > 1:
            middle = (low + high) // 2
            if gmpy2.mul_2exp(mpfr(1), middle) != 0:
                high = middle
            else:
                low = middle
    return high


#: exp(q) for q below this underflows (half of) the exponent range that wide() really has.
FAR = _lowest_exponent() // 2 * math.log(2)


def _columns(n: int) -> list[slice]:
    return [slice(c, min(c + GROUP, n)) for c in range(0, n, GROUP)] or [slice(0, 0)]


def groups(rows: int, n: int) -> Iterator[slice]:
    """Groups of whole vectors of about GROUP elements (a long vector alone)."""
    step = max(1, GROUP // max(1, n))
    for r in range(0, rows, step):
        yield slice(r, min(r + step, rows))


def _shifted(x: Array, m: Array, temperature: float, work: Any) -> B:
    """q = (x - m) / T as a working-precision value with its exact low part.

    The difference and its rounding error (TwoSum), then the quotient and its remainder
    (Dekker's product), all in the working precision: q = v + lo to about u^2 |q|.
    """
    xw = np.asarray(x, work)
    mw = np.asarray(m, work)
    d = xw - mw
    z = d - xw
    r = (xw - (d - z)) + (-mw - z)
    t = np.asarray(temperature, work)
    v = d / t
    p, p_err = two_prod(v, t)
    lo = (((d - p) - p_err) + r) / t
    u = unit(work)
    e = np.where(d == 0, 0, 16 * u * u * np.abs(v) + 4 * np.finfo(work).smallest_subnormal)
    bad = ~np.isfinite(lo) | ~np.isfinite(v)
    return B(v, np.where(bad, np.inf, e), np.where(bad, 0, lo))


def _at(shape: tuple[int, ...], cols: slice, index: Array) -> Array:
    """Mask of the columns ``cols`` equal to each row's ``index`` (rows, 1)."""
    return np.arange(cols.start, cols.stop)[None, :] == index


# -- definitions ---------------------------------------------------------------------------------


class Bounded:
    """The bounded quantities of one group of vectors: each method yields (columns, B) blocks
    (rows and columns of the Jacobian, for ``jacobian``)."""

    def value(self) -> Iterator[tuple[slice, B]]:
        raise NotImplementedError

    def jacobian(self, rows: slice) -> B:
        raise NotImplementedError

    def vjp(self, g: Array) -> Iterator[tuple[slice, B]]:
        raise NotImplementedError

    def param(self, name: str) -> Iterator[tuple[slice, B]]:
        raise NotImplementedError


class Exact:
    """One vector's quantities in exact arithmetic at the working precision of the current gmpy2
    context: ``at(prec)`` prepares them, then each method returns one element (an exact 0 where,
    and only where, the true value is 0; or None where cancellation left a 0 that this precision
    cannot tell from a true value: Ziv's strategy then tries the next)."""

    #: The precision from which a computed 0 is the answer (see _SoftmaxExact._zero_bits).
    zero_bits = 0

    def at(self, prec: int) -> None:
        raise NotImplementedError

    def value(self, i: int) -> Any:
        raise NotImplementedError

    def jacobian(self, i: int, j: int) -> Any:
        raise NotImplementedError

    def vjp(self, j: int) -> Any:
        raise NotImplementedError

    def param(self, name: str, i: int) -> Any:
        raise NotImplementedError

    def param_sum(self, name: str) -> Any:
        """sum_i g_i dy_i/dparam for this vector."""
        raise NotImplementedError


@dataclass(frozen=True)
class VectorRounding:
    """What the registry holds for a correctly rounded vector function."""

    #: (x group (rows, n) float64, params, working dtype, g group or None) -> Bounded
    bounded: Callable[..., Bounded]
    #: (x vector as floats, params, g vector as floats or None) -> Exact
    exact: Callable[..., Exact]
    #: sparsemax: exact in rationals (no Ziv): Exact methods return gmpy2.mpq numbers
    rational: bool = False
    #: (rows, columns) -> keys equal where two Jacobian entries are the same quantity (worked out
    #: once), or None
    jacobian_key: Callable[[Any, Any], Any] | None = None
    #: The compiled first tier of the values: (x (rows, n) float64, params, format name) ->
    #: (results, sure) or None (:mod:`.compiled`); rows it leaves undecided go the routes above
    first: Callable[..., tuple[Array, Array] | None] | None = None
    #: A gated unit's elementwise function (its first tier finishes the elements it leaves one
    #: by one, as elementwise products)
    gate: str | None = None

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        return compute(self, *args, **kwargs)

    def summed(self, *args: Any, **kwargs: Any) -> float:
        return summed(self, *args, **kwargs)


# -- the softmax family ------------------------------------------------------------------------


class _SoftmaxBounded(Bounded):
    def __init__(self, x: Array, temperature: float, work: Any, log: bool, negate: bool) -> None:
        self.x = -x if negate else x
        self.sign = -1.0 if negate else 1.0
        self.t = temperature
        self.work = work
        self.log = log
        self._jacobian_state: tuple[B, B] | None = None
        n = x.shape[-1]
        self.cols = _columns(n)
        self.m = np.max(self.x, axis=-1, keepdims=True)
        self.top = np.argmax(self.x, axis=-1)[:, None]
        rest: B | None = None
        for c in self.cols:
            e = exp(self.q(c))
            part = tree_sum(
                B(
                    np.where(_at(e.v.shape, c, self.top), 0, e.v),
                    np.where(_at(e.v.shape, c, self.top), 0, e.e),
                )
            )
            rest = part if rest is None else rest + part
        assert rest is not None
        self.rest = rest
        # The top component's term is e^0 = 1 exactly.
        self.z = rest + 1.0

    def q(self, c: slice) -> B:
        return _shifted(self.x[:, c], self.m, self.t, self.work)

    def s(self, c: slice) -> B:
        q = self.q(c)
        top = _at(q.v.shape, c, self.top)
        e = exp(q)
        e = B(np.where(top, 1, e.v), np.where(top, 0, e.e))
        return e / self.z

    def complement(self, c: slice, s: B) -> B:
        """1 - s_i, for the top component as the sum of the others over the total."""
        top = _at(s.v.shape, c, self.top)
        other = 1.0 - s
        mine = self.rest / self.z
        return B(np.where(top, mine.v, other.v), np.where(top, mine.e, other.e))

    def _out(self, b: B) -> B:
        """Divided by T, and negated for softmin's derivatives."""
        b = b / self.t
        return -b if self.sign < 0 else b

    def value(self) -> Iterator[tuple[slice, B]]:
        if not self.log:
            for c in self.cols:
                yield c, self.s(c)
            return
        lse = log1p(self.rest)
        for c in self.cols:
            yield c, self.q(c) - lse

    def jacobian(self, rows: slice) -> B:
        # One column block: the Jacobian is only built for vectors of modest length.
        c = slice(0, self.x.shape[-1])
        if self._jacobian_state is None:
            s = self.s(c)
            self._jacobian_state = (s, self.complement(c, s))
        s, comp = self._jacobian_state
        si = B(s.v[:, rows, None], s.e[:, rows, None])
        sj = B(s.v[:, None, :], s.e[:, None, :])
        diag = np.arange(rows.start, rows.stop)[:, None] == np.arange(c.stop)[None, :]
        if self.log:
            off = -sj
            on = B(comp.v[:, None, :], comp.e[:, None, :])
        else:
            off = -(si * sj)
            on = si * B(comp.v[:, None, :], comp.e[:, None, :])
        off = B(*np.broadcast_arrays(off.v, off.e))
        on = B(*np.broadcast_arrays(on.v, on.e))
        block = B(np.where(diag, on.v, off.v), np.where(diag, on.e, off.e))
        return self._out(block)

    def vjp(self, g: Array) -> Iterator[tuple[slice, B]]:
        gw = np.asarray(g, self.work)
        if self.log:
            total = tree_sum(B.exact(gw, self.work))
            for c in self.cols:
                s = self.s(c)
                yield c, self._out(B.exact(gw[:, c], self.work) - s * total)
            return
        # s_j (g_j - sum_i g_i s_i), g shifted by its value at the top component first (exact
        # algebra, as sum s = 1): the bracket then keeps its accuracy where s_top ~ 1.
        g_top = np.take_along_axis(gw, self.top, axis=-1)
        dg = B.exact(gw, self.work) - B.exact(g_top, self.work)
        inner: B | None = None
        for c in self.cols:
            part = tree_sum(self.s(c) * B(dg.v[:, c], dg.e[:, c]))
            inner = part if inner is None else inner + part
        assert inner is not None
        for c in self.cols:
            yield c, self._out(self.s(c) * (B(dg.v[:, c], dg.e[:, c]) - inner))

    def param(self, name: str) -> Iterator[tuple[slice, B]]:
        # dy_i/dT = -(s_i or 1) (q_i - sum_j s_j q_j) / T (the shift cancels: sum s = 1).
        mean: B | None = None
        for c in self.cols:
            part = tree_sum(self.s(c) * self.q(c))
            mean = part if mean is None else mean + part
        assert mean is not None
        for c in self.cols:
            centred = self.q(c) - mean
            b = centred if self.log else self.s(c) * centred
            yield c, -(b / self.t)


def _fsum(terms: Iterator[Any]) -> Any:
    """The sum of MPFR numbers, a chunk of SUM_CHUNK at a time (each chunk's sum correctly rounded,
    their sum too): the terms of a long vector are never all held at once."""
    parts = []
    chunk: list[Any] = []
    for term in terms:
        chunk.append(term)
        if len(chunk) == SUM_CHUNK:
            checkpoint()
            parts.append(gmpy2.fsum(chunk))
            chunk = []
    parts.append(gmpy2.fsum(chunk))
    return gmpy2.fsum(parts)


def _plus_tiny(r: Any, t: Any) -> Any:
    """r + t where t may lie far below r's last bit: never r itself for t != 0 (r, a rational rounded
    once, may be exactly a midpoint of a format, and the true value lies off it on t's side)."""
    total = r + t
    if total == r and not gmpy2.is_zero(t):
        return gmpy2.next_above(r) if t > 0 else gmpy2.next_below(r)
    return total


#: The exact route keeps the e^q of vectors up to this long (for the precision in use).
CACHED = 65536
#: Terms summed at once by :func:`_fsum`.
SUM_CHUNK = 4096


class _SoftmaxExact(Exact):
    """softmax, log_softmax or softmin of one vector in MPFR.  The vector is held as float64
    arrays; its sums (over e^q) are worked out once a precision, when first needed, streaming; the
    other quantities element by element: a long vector costs a few arrays, not a list of MPFR
    numbers an element."""

    def __init__(
        self,
        x: Sequence[float],
        params: Mapping[str, float],
        g: Sequence[float] | None,
        log: bool,
        negate: bool,
    ) -> None:
        xs = np.asarray(x, np.float64)
        self.x = -xs if negate else xs
        self.sign = -1 if negate else 1
        self.t = mpfr(params["temperature"], 53)
        self.g = None if g is None else np.asarray(g, np.float64)
        self.log = log
        self.n = self.x.size
        self.m = float(np.max(self.x))
        self.top = int(np.argmax(self.x))
        self.tops = np.flatnonzero(self.x == self.m)
        # x_i - max exactly, as two doubles (TwoSum); where the difference exceeds the float64
        # range, worked out in MPFR when needed.
        with np.errstate(over="ignore", invalid="ignore"):
            hi = self.x - self.m
            z = hi - self.x
            lo = (self.x - (hi - z)) + (-self.m - z)
        self.hi, self.lo = hi, lo
        self.distinct = int(np.unique(self.x).size)
        self._zeros: Any = None
        self._cache: dict[str, Any] = {}
        self.prec = 0
        self.sum_prec = 0
        self.far: Any = None
        self.zero_bits = self._zero_bits()

    def _zero_bits(self) -> int:
        """The working precision at which a computed 0 is taken for the truth: the derivatives'
        errors, relative to their terms (|g| up to max |g|, |q| up to the spread over T, n of
        them, divided by T), are then below 2^-1140, under half of every format's smallest
        subnormal.  Below it a 0 made by cancellation (inputs a hair apart: e^q rounds to 1) is
        not an answer: Ziv's strategy goes on to the next precision."""

        def bits(v: float) -> int:
            return max(0, math.frexp(v)[1]) if math.isfinite(v) else 1025

        spread = bits(float(np.max(self.x)) - float(np.min(self.x))) + bits(1 / float(self.t))
        scale = bits(float(np.max(np.abs(self.g)))) if self.g is not None and self.g.size else 0
        return 1140 + 32 + scale + spread + bits(1 / float(self.t)) + self.n.bit_length()

    def _nonzero(self, value: Any) -> Any:
        """``value``, or None for a computed 0 below zero_bits (the true value is not 0 here)."""
        return None if gmpy2.is_zero(value) and self.prec < self.zero_bits else value

    def at(self, prec: int) -> None:
        # The vector's sums are worked out when first needed, at twice this precision (plus guard
        # bits), and kept while they carry at least that much: Ziv's strategy takes a result that
        # two precisions agree on, and sums carrying no more than the second of them would make a
        # result that cancellation leaves to their rounding errors (a VJP of order d^2 for inputs
        # d apart) agree with itself.  Sums from a higher precision serve the next elements.
        self.prec = prec
        if self._cache and self.sum_prec >= 2 * prec + 32:
            return
        self._cache = {}
        self.sum_prec = 2 * prec + 32
        self.far = None
        with wide(prec + 32):
            # Where the next largest input is so far below that its e^q is beyond even MPFR's range
            # (a spread of some 3e18 T), every other e^q is held as sigma e^(q_i - q_2) for a sigma
            # below every format's range but not below MPFR's: what is made of them keeps its sign
            # (the true results there round to a signed 0).
            others = np.flatnonzero(self.x != self.m)
            if others.size:
                second = int(others[np.argmax(self.x[others])])
                if self.q(second) < FAR:
                    self.far = (second, (8192 + 4 * prec) * gmpy2.const_log2())

    def _difference(self, i: int) -> Any:
        """x_i - max, exactly."""
        if math.isfinite(self.hi[i]):
            with gmpy2.context(gmpy2.get_context(), precision=EXACT_BITS):
                return gmpy2.add(float(self.hi[i]), float(self.lo[i]))
        with gmpy2.context(gmpy2.get_context(), precision=EXACT_BITS):
            return mpfr(float(self.x[i]), 53) - mpfr(self.m, 53)

    def q(self, i: int) -> Any:
        if math.isfinite(self.hi[i]):
            return gmpy2.add(float(self.hi[i]), float(self.lo[i])) / self.t
        return self._difference(i) / self.t

    def e(self, i: int) -> Any:
        """e^q_i (1 for the largest inputs; scaled where far, see ``at``); those of a vector of up
        to CACHED elements are kept for the precision."""
        cached = self._cache.get("e")
        if cached is not None:
            return cached[i]
        if self.n <= CACHED and self.prec:
            with wide(self.sum_prec):
                self._cache["e"] = cached = self._every_e()
            return cached[i]
        return self._e(i)

    def _every_e(self) -> list[Any]:
        """e^q of every component at once: the common case (no difference beyond the float64
        range, nothing far) in one pass over plain Python numbers."""
        if self.far is not None or not np.isfinite(self.hi).all():
            return [self._e(k) for k in range(self.n)]
        exp, add, t = gmpy2.exp, gmpy2.add, self.t
        hi, lo = self.hi.tolist(), self.lo.tolist()
        e: list[Any] = []
        for start in range(0, self.n, SUM_CHUNK):
            checkpoint()  # thousands of bits an e^q at high precision: a stopped request stops here
            part = zip(hi[start : start + SUM_CHUNK], lo[start : start + SUM_CHUNK], strict=True)
            e += [exp(add(h, low) / t) for h, low in part]
        for k in self.tops.tolist():
            e[k] = mpfr(1)
        return e

    def _e(self, i: int) -> Any:
        if self.x[i] == self.m:
            return mpfr(1)
        if self.far is None:
            return gmpy2.exp(self.q(i))
        second, scale = self.far
        with gmpy2.context(gmpy2.get_context(), precision=EXACT_BITS):
            gap = self._difference(i) - self._difference(second)  # exact
        return gmpy2.exp(gap / self.t - scale)

    def _get(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._cache:
            with wide(self.sum_prec):
                self._cache[name] = make()
        return self._cache[name]

    def _others(self) -> Iterator[int]:
        return (int(i) for i in np.flatnonzero(self.x != self.m))

    @property
    def rest(self) -> Any:
        """The sum of e^q over the components below the largest."""
        return self._get("rest", lambda: _fsum(self.e(i) for i in self._others()))

    @property
    def z(self) -> Any:
        return self._get("z", lambda: self.rest + self.tops.size)

    def s(self, i: int) -> Any:
        with wide(self.prec + 32):
            return self.e(i) / self.z

    @property
    def lse(self) -> Any:
        """log sum e^q = log(k + rest) for k largest components, as log(k) + log1p(rest / k)."""
        k = self.tops.size
        return self._get(
            "lse", lambda: gmpy2.log(k) + gmpy2.log1p(self.rest / k) if k > 1 else gmpy2.log1p(self.rest)
        )

    @property
    def big_g(self) -> Any:
        assert self.g is not None
        gs = self.g

        def make() -> Any:
            with gmpy2.context(gmpy2.get_context(), precision=EXACT_BITS):
                return _fsum(mpfr(float(v), 53) for v in gs)  # exact

        return self._get("big_g", make)

    @property
    def inner(self) -> Any:
        """sum_i s_i (g_i - g_top): g shifted by g_top (exact algebra, as sum s = 1), so that the
        VJP's bracket keeps its accuracy where s_top ~ 1; the products e_i g_i and e_i g_top exact."""
        assert self.g is not None
        g, top = self.g, float(self.g[self.top])

        def terms() -> Iterator[Any]:
            for i in range(self.n):
                if g[i] == top:
                    continue
                e = self.e(i)
                with gmpy2.context(gmpy2.get_context(), precision=self.sum_prec + 64):
                    yield e * float(g[i])
                    yield -e * top

        return self._get("inner", lambda: _fsum(terms()) / self.z)

    @property
    def mean(self) -> Any:
        """sum_j s_j q_j (the temperature derivatives), with q shifted as it is: the shift cancels."""
        return self._get("mean", lambda: _fsum(self.e(i) * self.q(i) for i in self._others()) / self.z)

    def _out(self, value: Any) -> Any:
        return -value / self.t if self.sign < 0 else value / self.t

    def value(self, i: int) -> Any:
        if not self.log:
            return self.s(i)
        if self.n == 1:
            return mpfr(0)
        return _plus_tiny(self.q(i), -self.lse)

    def _complement(self, i: int) -> Any:
        """1 - s_i: the others' sum over the total."""
        if self.x[i] == self.m:
            return (self.rest + (self.tops.size - 1)) / self.z
        return (self.z - self.e(i)) / self.z

    def jacobian(self, i: int, j: int) -> Any:
        if self.n == 1:
            return mpfr(0)  # s = 1 (y = 0) whatever x
        if self.log:
            return self._out(self._complement(j) if i == j else -self.s(j))
        return self._out(self.s(i) * self._complement(i) if i == j else -self.s(i) * self.s(j))

    def _vjp_zero(self, j: int) -> bool:
        """Whether the VJP's element j is exactly 0: its bracket is sum_k e^(q_k) c_k over the
        distinct inputs, zero exactly where every coefficient c_k is."""
        assert self.g is not None
        if self._zeros is None:
            # The exact sum of g, and the common mean of g over every group of equal inputs (None
            # where the groups' means differ).
            total = sum((mpq(float(v)) for v in self.g), mpq(0))
            values, inverse = np.unique(self.x, return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(values.size + 1))
            common: Any = None
            for k in range(values.size):
                members = order[bounds[k] : bounds[k + 1]]
                mean = sum((mpq(float(self.g[i])) for i in members), mpq(0)) / members.size
                if common is None:
                    common = mean
                elif mean != common:
                    common = None
                    break
            self._zeros = (common, total)
        common, total = self._zeros
        gj = mpq(float(self.g[j]))
        if self.log:
            # (g_j Z - e_j G): c_k = |k| g_j - G [j in k]
            if self.distinct == 1:
                return bool(self.n * gj == total)
            return bool(gj == 0 and total == 0)
        # s_j sum_i s_i (g_i - g_j): c_k = sum over k of (g_i - g_j), 0 when every group's mean is g_j
        return bool(common is not None and common == gj)

    def _far_top_vjp(self, j: int) -> Any:
        """The VJP at one of k equal largest inputs when the others are far (see ``at``): Z = k + r
        rounds to k at any precision, and what is made of it is the rational the first-order terms
        in r step off; that rational can be a midpoint of a format (x = [2^54, 2^54, 3]: (g_1 - g_0)/4).
        Here it is formed exactly and the first-order terms (of the scaled e^q: their sign, far below
        the last bit, is what counts) added to it exactly, and the sum rounded to odd; None where
        those terms vanish (the second-order ones decide: the general route answers)."""
        assert self.g is not None
        k = mpq(int(self.tops.size))
        g, top = self.g, float(self.g[self.top])
        with gmpy2.context(gmpy2.get_context(), precision=self.sum_prec + EXACT_BITS):
            r = self.rest
            if self.log:
                # g_j - G / Z = g_j - G / k + G r / k^2
                main = mpq(float(g[j])) - mpq(self.big_g) / k
                tiny = self.big_g * r
            else:
                # (A - (B + E) / Z) / Z = A / k - B / k^2 + (r (2B / k - A) - E) / k^2, with
                # A = g_j - g_top, B the sum of g_t - g_top over the largest, E that of e_f (g_f - g_top)
                a = mpq(float(g[j])) - mpq(top)
                b = sum((mpq(float(g[t])) - mpq(top) for t in self.tops.tolist()), mpq(0))
                main = a / k - b / (k * k)
                e = _fsum(self.e(f) * (mpfr(float(g[f]), 53) - mpfr(top, 53)) for f in self._others())
                tiny = r * mpfr(2 * b / k - a) - e
        if gmpy2.is_zero(tiny):
            return None
        scale = mpq(self.t) * (k * k)
        total = main / mpq(self.t) + mpq(tiny) / scale
        return rational_to_odd(-total if self.sign < 0 else total)

    def vjp(self, j: int) -> Any:
        assert self.g is not None
        if self._vjp_zero(j):
            return mpfr(0)
        if self.far is not None and self.x[j] == self.m:
            result = self._far_top_vjp(j)
            if result is not None:
                return result
        if self.log:
            # (g_j Z - e_j G) / (Z T), both products exact
            gj = mpfr(float(self.g[j]), 53)
            e = self.e(j)
            # exact: Z and e^q carry sum_prec bits, g_j 53 and G (an exact sum) up to EXACT_BITS
            with gmpy2.context(gmpy2.get_context(), precision=self.sum_prec + EXACT_BITS + 64):
                products = [gj * self.z, -e * self.big_g]
            return self._nonzero(self._out(gmpy2.fsum(products) / self.z))
        # s_j (g_j - sum_i g_i s_i) = s_j ((g_j - g_top) - sum_i s_i (g_i - g_top))
        with gmpy2.context(gmpy2.get_context(), precision=EXACT_BITS):
            gap = mpfr(float(self.g[j]), 53) - mpfr(float(self.g[self.top]), 53)  # exact
        return self._nonzero(self._out(self.s(j) * (gap - self.inner)))

    def param(self, name: str, i: int) -> Any:
        if self.distinct == 1:
            return mpfr(0)  # every input equal: no dependence on T
        if self.log:
            # -q_i / T (one rounding of a rational) + mean / T
            rational = -gmpy2.add(float(self.hi[i]), float(self.lo[i])) / (self.t * self.t)
            if math.isfinite(self.hi[i]):
                return self._nonzero(_plus_tiny(rational, self.mean / self.t))
        centred = self.q(i) - self.mean
        return self._nonzero(-(centred if self.log else self.s(i) * centred) / self.t)

    def _param_sum_vanishes(self) -> bool:
        """Whether sum_i g_i dy_i/dT is exactly 0 (see the module's note on zeros)."""
        assert self.g is not None
        g = self.g
        equal = bool(np.all(g == g[0]))
        if self.distinct == 1 or (equal and (not self.log or g[0] == 0)):
            return True
        if self.log:
            # (1/Z) sum_j e_j sum_i g_i (q_i - q_j): per distinct input X, sum g_i x_i = G X.
            total = sum((mpq(float(v)) for v in g), mpq(0))
            moment = sum((mpq(float(gi)) * mpq(float(xi)) for gi, xi in zip(g, self.x, strict=True)), mpq(0))
            return all(moment == total * mpq(float(value)) for value in np.unique(self.x))
        if self.n > 256:
            return False  # (the pairwise test below is quadratic; Ziv's strategy decides the rest)
        # (1/Z^2) sum_{i<j} e^(q_i + q_j) (g_i - g_j)(q_i - q_j): per distinct x_i + x_j.
        coefficients: dict[Any, Any] = {}
        xs = [mpq(float(v)) for v in self.x]
        gs = [mpq(float(v)) for v in g]
        for i in range(self.n):
            for j in range(i + 1, self.n):
                key = xs[i] + xs[j]
                coefficients[key] = coefficients.get(key, mpq(0)) + (gs[i] - gs[j]) * (xs[i] - xs[j])
        return not any(coefficients.values())

    def param_sum(self, name: str) -> Any:
        assert self.g is not None
        if self._param_sum_vanishes():
            return mpfr(0)
        # sum_i g_i a_i (q_i - mean), a_i = s_i (softmax) or 1 (log_softmax).
        mean = self.mean
        g = self.g
        if self.log:
            # -(sum_i g_i d_i) / T^2 (a rational, rounded once) + G mean / T, d_i = x_i - max
            top = mpq(self.m)
            moment = sum(
                (mpq(float(gi)) * (mpq(float(xi)) - top) for gi, xi in zip(g, self.x, strict=True) if gi),
                mpq(0),
            )
            t = mpq(float(self.t))
            with wide(self.prec + 32):
                return self._nonzero(_plus_tiny(mpfr(-moment / (t * t)), self.big_g * mean / self.t))
        with wide(self.prec + 32):
            terms = (
                float(g[i]) * (self.q(i) - mean) * (1 if self.log else self.s(i))
                for i in range(self.n)
                if g[i]
            )
            return self._nonzero(-_fsum(terms) / self.t)


def _softmax_key(i: Any, j: Any) -> Any:
    """softmax's Jacobian is symmetric: (i, j) and (j, i) are one quantity."""
    return np.minimum(i, j) * (1 << 32) + np.maximum(i, j)


def _log_softmax_key(i: Any, j: Any) -> Any:
    """log_softmax's Jacobian is -s_j / T off the diagonal: one quantity a column."""
    return np.where(i == j, -1 - j, j)


def softmax_rounding(log: bool = False, negate: bool = False) -> VectorRounding:
    return VectorRounding(
        bounded=lambda x, params, work, g=None: _SoftmaxBounded(x, params["temperature"], work, log, negate),
        exact=lambda x, params, g=None: _SoftmaxExact(x, params, g, log, negate),
        jacobian_key=_log_softmax_key if log else _softmax_key,
        first=lambda x, params, fmt_name: compiled.softmax(x, params["temperature"], log, negate, fmt_name),
    )


# -- gated units: y = a * act(b) with an elementwise catalog function as the gate (glu: sigmoid) ---


def gate_columns(h: int, gate_half: float) -> tuple[slice, slice]:
    """(the linear half's columns, the gate's columns) of a vector of 2h along the axis."""
    first, second = slice(0, h), slice(h, 2 * h)
    return (second, first) if gate_half == 1.0 else (first, second)


class _GatedBounded(Bounded):
    """a * act(b), act's value and derivative from its own bounded definitions (:mod:`.bounded`)."""

    def __init__(self, act: Activation, x: Array, gate_half: float, work: Any) -> None:
        h = x.shape[-1] // 2
        self.h = h
        self.work = work
        self.lin, self.gate = gate_columns(h, gate_half)
        defaults = act.bind()
        b = B.exact(x[:, self.gate], work)
        self.a = B.exact(x[:, self.lin], work)
        self.act = act.fast.value(b, **defaults).folded()
        self.slope = act.fast.derivative(b, **defaults).folded()

    def value(self) -> Iterator[tuple[slice, B]]:
        yield slice(0, self.h), self.a * self.act

    def jacobian(self, rows: slice) -> B:
        r = self.a.v.shape[0]
        shape = (r, rows.stop - rows.start, 2 * self.h)
        v = np.zeros(shape, self.work)
        e = np.zeros(shape, self.work)
        at = np.arange(rows.stop - rows.start)
        i = np.arange(rows.start, rows.stop)
        da = B(*np.broadcast_arrays(self.act.v, self.act.e, self.a.v)[:2])
        db = self.a * self.slope
        db = B(*np.broadcast_arrays(db.v, db.e, self.a.v)[:2])
        v[:, at, self.lin.start + i], e[:, at, self.lin.start + i] = da.v[:, i], da.e[:, i]
        v[:, at, self.gate.start + i], e[:, at, self.gate.start + i] = db.v[:, i], db.e[:, i]
        return B(v, e)

    def vjp(self, g: Array) -> Iterator[tuple[slice, B]]:
        gb = B.exact(g, self.work)
        yield self.lin, gb * self.act
        yield self.gate, gb * (self.a * self.slope)


class _GatedExact(Exact):
    """One vector's a * act(b) from act's exact definition (:class:`.registry.Exact`); a product is
    0 exactly where a factor is (act's own zeros are exact there)."""

    def __init__(
        self, act: Activation, x: Sequence[float], gate_half: float, g: Sequence[float] | None
    ) -> None:
        self.h = len(x) // 2
        self.lin, self.gate = gate_columns(self.h, gate_half)
        self.x = x
        self.gs = g
        assert act.exact is not None
        self.fn = act.exact
        self.defaults = {k: mpfr(v, 53) for k, v in act.bind().items()}

    def at(self, prec: int) -> None:
        pass

    def _a(self, i: int) -> Any:
        return mpfr(self.x[self.lin.start + i], 53)

    def _act(self, i: int) -> Any:
        return self.fn.value(mpfr(self.x[self.gate.start + i], 53), **self.defaults)

    def _slope(self, i: int) -> Any:
        return self.fn.derivative(mpfr(self.x[self.gate.start + i], 53), **self.defaults)

    def value(self, i: int) -> Any:
        a = self._a(i)
        return _exact_product(a, self._act(i)) if a != 0 else mpfr(0)

    def jacobian(self, i: int, j: int) -> Any:
        if j == self.lin.start + i:
            return self._act(i)
        if j == self.gate.start + i and self._a(i) != 0:
            return _exact_product(self._a(i), self._slope(i))
        return mpfr(0)

    def vjp(self, j: int) -> Any:
        assert self.gs is not None
        i = j % self.h
        g, a = mpfr(self.gs[i], 53), self._a(i)
        on_gate = self.gate.start <= j < self.gate.stop
        if g == 0 or (on_gate and a == 0):
            return mpfr(0)
        if on_gate:
            return _exact_product(g, a, self._slope(i))
        return _exact_product(g, self._act(i))


def _exact_product(*factors: Any) -> Any:
    """The product of mpfr numbers without rounding (at the sum of their precisions).

    act(b) may be a float64 number b nudged by one unit of a working precision far above the
    context's (the elementwise definitions keep the side of a correction too small to change the
    rounding of act(b) itself: :func:`.smooth._plus_tiny`); a product rounded to the context
    would lose that nudge and land on a midpoint a * b of two floats, rounded then to even
    instead of to the side the true value is on.
    """
    bits = sum(max(int(f.precision), 53) for f in factors) + 64
    with gmpy2.context(gmpy2.get_context(), precision=bits):
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out


def gated(act_name: str) -> VectorRounding:
    """The correctly rounded a * act(b) for the elementwise catalog function ``act_name`` (looked up
    when first used: the vector module registers these after the elementwise functions)."""

    def bounded(x: Array, params: Mapping[str, float], work: Any, g: Array | None = None) -> Bounded:
        return _GatedBounded(get(act_name), x, params.get("gate_half", 2.0), work)

    def exact(x: Sequence[float], params: Mapping[str, float], g: Sequence[float] | None = None) -> Exact:
        return _GatedExact(get(act_name), x, params.get("gate_half", 2.0), g)

    def first(x: Array, params: Mapping[str, float], fmt_name: str) -> tuple[Array, Array] | None:
        # a * act(b) is act(b) times g = a, as an elementwise vector-Jacobian product is.
        lin, gate = gate_columns(x.shape[-1] // 2, params.get("gate_half", 2.0))
        name, act_params = (
            ("leaky_relu", {"negative_slope": 0.0})
            if act_name == "relu"
            else (act_name, get(act_name).bind())
        )
        b, a = x[:, gate], x[:, lin]
        decided = compiled.values(name, "value", b, act_params, fmt_name, a)
        if decided is None:
            return None
        # The elements it leaves are finished one by one, as the elementwise products they are
        # (bounded, then exact): not their whole vectors (geglu's 1M values sent 12% of their
        # vectors of 1000, for 0.02% of elements, through the slower routes whole).
        result, sure = decided
        todo = np.flatnonzero(~sure)
        if todo.size:
            entry = get(name)
            rest = correct.rounded(
                entry, "value", b.ravel()[todo], act_params, fmt_name, None, a.ravel()[todo]
            )
            np.put(result, todo, rest)
            np.put(sure, todo, True)
        return result, sure

    return VectorRounding(bounded=bounded, exact=exact, first=first, gate=act_name)


# -- sparsemax -------------------------------------------------------------------------------------


class _SparsemaxBounded(Bounded):
    """The support and threshold with bounds: tau = (sum of the k largest z - 1) / k, z = x - max,
    the support the k for which 1 + k z_(k) > sum of the k largest.  A vector whose support test
    or whose y = max(z - tau, 0) cannot be decided is left to the exact route whole."""

    def __init__(self, x: Array, work: Any) -> None:
        self.work = work
        z = B.exact(x, work) - B.exact(np.max(x, axis=-1, keepdims=True), work)
        z = B(*np.broadcast_arrays(z.v, z.e))
        order = np.argsort(-z.v, axis=-1, kind="stable")
        zs = np.take_along_axis(z.v, order, axis=-1)
        zs_e = np.take_along_axis(z.e, order, axis=-1)
        n = x.shape[-1]
        u = unit(work)
        k = np.arange(1, n + 1, dtype=work)
        cs = np.cumsum(zs, axis=-1)
        # A running sum's error: its terms' bounds and (k - 1) u times the sum of their magnitudes.
        cs_e = np.cumsum(zs_e, axis=-1) + (k - 1) * u * np.cumsum(np.abs(zs), axis=-1) * (1 + n * u)
        test = 1 + k * zs - cs
        test_e = k * zs_e + cs_e + 3 * u * (1 + np.abs(k * zs) + np.abs(cs))
        inside = test > 0
        inside[..., 0] = True  # 1 + z_(1) > z_(1), exactly
        sure = (np.abs(test) > test_e) | (np.arange(n) == 0)
        self.size = np.sum(inside, axis=-1, keepdims=True)
        top = np.take_along_axis(cs, self.size - 1, axis=-1)
        top_e = np.take_along_axis(cs_e, self.size - 1, axis=-1)
        tau = B(top, top_e) - 1.0
        tau = B(tau.v / self.size, tau.e / self.size + u * np.abs(tau.v / self.size))
        y = z - tau
        self.positive = y.v - y.e > 0
        self.zero = y.v + y.e < 0
        undecided = ~(self.positive | self.zero) | ~np.all(sure, axis=-1, keepdims=True)
        # Where undecided, e = inf: the element goes to the exact route.
        self.y = B(np.where(self.zero, 0, y.v), np.where(undecided, np.inf, np.where(self.zero, 0, y.e)))
        self.undecided = undecided
        self.known = ~np.any(undecided, axis=-1, keepdims=True)  # the vector's support is known

    def value(self) -> Iterator[tuple[slice, B]]:
        yield slice(0, self.y.v.shape[-1]), self.y

    def jacobian(self, rows: slice) -> B:
        # diag(s) - s s^T / k on the support s: exact rationals, rounded by the caller's exact
        # route only where unknown; the entries are (k - 1)/k, -1/k and 0.
        inside = self.positive.astype(self.work)
        si = inside[:, rows, None]
        sj = inside[:, None, :]
        k = self.size[:, :, None].astype(self.work)
        diag = (np.arange(rows.start, rows.stop)[:, None] == np.arange(inside.shape[-1])[None, :])[None]
        v = si * (diag - sj / k)
        u = unit(self.work)
        e = np.where((si * sj) != 0, 3 * u * np.abs(v), 0)  # 1/k and (1 - 1/k), rounded
        e = np.where(self.known[:, :, None], e, np.inf)
        return B(v, e)

    def vjp(self, g: Array) -> Iterator[tuple[slice, B]]:
        gb = B.exact(g, self.work)
        masked = B(np.where(self.positive, gb.v, 0), np.zeros_like(gb.v))
        mean = tree_sum(masked)
        mean = B(mean.v / self.size, mean.e / self.size + unit(self.work) * np.abs(mean.v / self.size))
        out = gb - mean
        v = np.where(self.positive, out.v, 0)
        e = np.where(self.known, np.where(self.positive, out.e, 0), np.inf)
        yield slice(0, g.shape[-1]), B(v, e)


class _SparsemaxExact(Exact):
    """sparsemax in rationals: the exact support, threshold and results."""

    def __init__(self, x: Sequence[float], params: Mapping[str, float], g: Sequence[float] | None) -> None:
        z = [mpq(v) for v in x]
        ordered = sorted(z, reverse=True)
        total, size, running = mpq(0), 0, mpq(0)
        for k, v in enumerate(ordered, start=1):
            running += v
            if 1 + k * v > running:
                size, total = k, running
        tau = (total - 1) / size
        self.y = [max(v - tau, mpq(0)) for v in z]
        self.inside = [v > 0 for v in self.y]
        self.size = sum(self.inside)
        self.g = None if g is None else [mpq(v) for v in g]

    def at(self, prec: int) -> None:
        pass

    def value(self, i: int) -> Any:
        return self.y[i]

    def jacobian(self, i: int, j: int) -> Any:
        if not (self.inside[i] and self.inside[j]):
            return mpq(0)
        return (1 if i == j else 0) - mpq(1, self.size)

    def vjp(self, j: int) -> Any:
        assert self.g is not None
        if not self.inside[j]:
            return mpq(0)
        mean = sum((gi for gi, s in zip(self.g, self.inside, strict=True) if s), mpq(0)) / self.size
        return self.g[j] - mean


SPARSEMAX = VectorRounding(
    bounded=lambda x, params, work, g=None: _SparsemaxBounded(x, work),
    exact=lambda x, params, g=None: _SparsemaxExact(x, params, g),
    rational=True,
)


# -- the driver ------------------------------------------------------------------------------------


def decide_in(b: B, fmt: correct.Format) -> tuple[Array, Array]:
    """(results as float64, sure) for any format: the rounding test of :func:`.bounded.decide` for
    float64 and float32; for the 16-bit formats, both ends of the interval (widened to float64
    outward) rounded to the format, monotone rounding deciding where they agree."""
    if fmt.precision >= 24:
        return decide(b, fmt.numpy)
    s = b.folded()
    v, e = np.broadcast_arrays(s.v, s.e)
    with np.errstate(all="ignore"):
        low = (v - e).astype(np.float64)
        high = (v + e).astype(np.float64)
        low = np.nextafter(low, -np.inf)
        high = np.nextafter(high, np.inf)
        r_low = correct.round_to(low, fmt)
        r_high = correct.round_to(high, fmt)
        mid = v.astype(np.float64)
        exact = (e == 0) & (mid.astype(v.dtype) == v)
        r = np.where(exact, correct.round_to(mid, fmt), r_low)
        sure = (exact | (r_low == r_high)) & ~np.isnan(r_low) & ~np.isnan(r_high)
        # A result that rounds to zero takes the sign of the true value, and exact zeros are +0.
        sure &= (r != 0) | (v - e > 0) | (v + e < 0) | (e == 0)
        r = np.where(exact & (mid == 0), 0.0, r)
        r = np.where((r == 0) & ~exact, np.where(v - e > 0, 0.0, -0.0), r)
        sure &= ~(np.isinf(r_low) != np.isinf(r_high))
    return np.asarray(r, np.float64), np.asarray(sure)


def _take_budget(count: int) -> None:
    budget = correct._budget.get()
    if budget is not None:
        budget.take(count)


def _exact_elements(
    rounding: VectorRounding,
    x: Sequence[float],
    params: Mapping[str, float],
    g: Sequence[float] | None,
    items: list[Any],
    get: Callable[[Exact, Any], Any],
    fmt: correct.Format,
) -> list[float]:
    """The listed elements of one vector, correctly rounded (``get(exact, item)`` at a precision),
    ITEMS_AT_ONCE at a time (the vector's sums, worked out once, serve them all)."""
    ex = rounding.exact(x, params, g)
    if rounding.rational:
        return [correct.round_rational(get(ex, item), fmt) for item in items]
    out: list[float] = []
    for start in range(0, len(items), ITEMS_AT_ONCE):
        part = items[start : start + ITEMS_AT_ONCE]

        def compute(prec: int, part: list[Any] = part) -> list[Any]:
            ex.at(prec)

            def element(item: Any) -> Any:
                with wide(prec + 32):
                    return get(ex, item)

            return [lambda item=item: element(item) for item in part]

        out += correct.ziv_many(compute, len(part), fmt)
    return out


#: Elements of one vector rounded by one run of Ziv's strategy (their state held at once).
ITEMS_AT_ONCE = 1024


def _same(rounding: VectorRounding, quantity: str, items: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Keys of the flagged elements of one vector: elements with the same key are equal (a
    Jacobian's entries that are one quantity), and are worked out once."""
    if quantity != "jacobian" or rounding.jacobian_key is None:
        return items if items.ndim == 1 else items[:, 0] * (1 << 32) + items[:, 1]
    return rounding.jacobian_key(items[:, 0], items[:, 1])


def compute(
    rounding: VectorRounding,
    quantity: str,
    x: Array,
    params: Mapping[str, float],
    fmt_name: str,
    g: Array | None = None,
    param: str | None = None,
    out: Array | None = None,
    output_length: int | None = None,
) -> Array:
    """``quantity`` ("value", "jacobian", "vjp" or "param") of the vectors along x's last axis,
    correctly rounded to ``fmt_name`` (held as float64, inf where a result exceeds the format).

    ``g`` (with the output's shape) for "vjp"; ``param`` for "param"; ``out`` (float64 or the
    format's own NumPy type) for the Jacobian, of shape x.shape[:-1] + (m, n).
    """
    fmt = correct.FORMATS[fmt_name]
    work = correct._WORKING.get(fmt_name, np.longdouble)
    n = x.shape[-1]
    m = output_length if output_length is not None else n
    flat = np.asarray(x, np.float64).reshape(-1, n)
    rows = flat.shape[0]
    if quantity == "value" and rounding.first is not None and rows:
        # The 16-bit formats from the correctly rounded float64 values (correct.from_double):
        # the same but where a float64 value is itself a midpoint of the format.
        through = fmt.precision < 24
        decided = rounding.first(flat, params, "float64" if through else fmt_name)
        if decided is not None:
            # The compiled tier decided these; a vector with an element it left goes the routes
            # below whole (its exact sums serve all its elements).
            result, sure = decided
            if through:
                rounded = correct.round_to(result, fmt)
                sure = sure & ~np.asarray(correct.midpoints(result, rounded, fmt), bool)
                result = rounded
            pending = np.flatnonzero(~np.all(sure, axis=-1))
            if pending.size:
                rest = dataclasses.replace(rounding, first=None)
                result[pending] = compute(rest, quantity, flat[pending], params, fmt_name, output_length=m)
            return result.reshape((*x.shape[:-1], result.shape[-1]))
    gflat = None if g is None else np.asarray(g, np.float64).reshape(rows, -1)
    if quantity == "jacobian":
        if out is None:
            out = np.empty((*x.shape[:-1], m, n))
        result = out.reshape(rows, m, n)
    else:
        result = np.empty((rows, n if quantity == "vjp" else m))
    getter = _getter(quantity, param)
    for group in groups(rows, n):
        checkpoint()
        with np.errstate(all="ignore"):
            state = rounding.bounded(flat[group], params, work, None if gflat is None else gflat[group])
        # The elements the bounded evaluation leaves undecided, as (vector, index...) rows,
        # charged to the budget as they are found (at most the budget's worth are ever held).
        found: list[np.ndarray[Any, Any]] = []
        for place, b in _blocks(state, quantity, m, n, group, gflat, param):
            with np.errstate(all="ignore"):
                r, sure = decide_in(b, fmt)
            result[(group, *place)] = r
            undecided = np.argwhere(np.logical_not(sure))
            if undecided.size:
                undecided[:, 1] += place[0].start
                _take_budget(len(undecided))
                found.append(undecided)
        if not found:
            continue
        flagged = np.concatenate(found)
        for v in np.unique(flagged[:, 0]):
            checkpoint()
            _take_budget(n // EXACT_SUMS)  # the vector's exact sums
            mine = flagged[flagged[:, 0] == v][:, 1:]
            items = mine[:, 0] if quantity != "jacobian" else mine
            _, first, back = np.unique(
                _same(rounding, quantity, items), return_index=True, return_inverse=True
            )
            todo = [tuple(int(k) for k in items[i]) if items.ndim > 1 else int(items[i]) for i in first]
            row = group.start + int(v)
            values = np.asarray(
                _exact_elements(
                    rounding,
                    flat[row].tolist(),
                    params,
                    None if gflat is None else gflat[row].tolist(),
                    todo,
                    getter,
                    fmt,
                )
            )[back.reshape(-1)]
            if quantity == "jacobian":
                result[row, mine[:, 0], mine[:, 1]] = values
            else:
                result[row, mine[:, 0]] = values
    if quantity == "jacobian":
        return out  # type: ignore[return-value]
    return result.reshape((*x.shape[:-1], result.shape[-1]))


def _blocks(
    state: Bounded,
    quantity: str,
    m: int,
    n: int,
    group: slice,
    gflat: Array | None,
    param: str | None,
) -> Iterator[tuple[tuple[slice, ...], B]]:
    """The bounded blocks of a group: (where in the group's result, B): columns, or for the
    Jacobian rows (of about GROUP entries a block)."""
    if quantity == "jacobian":
        step = max(1, GROUP // max(1, n * (group.stop - group.start)))
        for start in range(0, m, step):
            rows = slice(start, min(start + step, m))
            with np.errstate(all="ignore"):
                block = state.jacobian(rows)
            yield (rows,), block
        return
    with np.errstate(all="ignore"):
        if quantity == "value":
            blocks = state.value()
        elif quantity == "vjp":
            assert gflat is not None
            blocks = state.vjp(gflat[group])
        else:
            blocks = state.param(param or "")
        for cols, b in blocks:
            yield (cols,), b


def _getter(quantity: str, param: str | None) -> Callable[[Exact, Any], Any]:
    if quantity == "value":
        return lambda ex, i: ex.value(i)
    if quantity == "jacobian":
        return lambda ex, ij: ex.jacobian(*ij)
    if quantity == "vjp":
        return lambda ex, j: ex.vjp(j)
    assert param is not None
    return lambda ex, i: ex.param(param, i)


def summed(
    rounding: VectorRounding, param: str, x: Array, g: Array, params: Mapping[str, float], fmt_name: str
) -> float:
    """sum over every element of g * dy/dparam, correctly rounded: the bounded derivatives' exact
    products summed exactly and decided with their bounds; else the exact sum over the vectors."""
    fmt = correct.FORMATS[fmt_name]
    work = correct._WORKING.get(fmt_name, np.longdouble)
    n = x.shape[-1]
    flat = np.asarray(x, np.float64).reshape(-1, n)
    gflat = np.asarray(g, np.float64).reshape(-1, n)
    # Each group's products summed exactly (as s + r, s correctly rounded, r the rest rounded: its
    # error is added to the bound), the groups' sums added exactly at the end.
    heads: list[float] = []
    bound = 0.0
    finite = True
    with np.errstate(all="ignore"):
        for group in groups(flat.shape[0], n):
            state = rounding.bounded(flat[group], params, work, gflat[group])
            for cols, b in state.param(param):
                b = b.folded()
                v, e = np.broadcast_arrays(b.v, b.e)
                w = np.asarray(gflat[group, cols], work)
                try:
                    terms, loss = correct.product_terms(v, w, work)
                    head = math.fsum(terms)
                    terms.append(-head)
                    rest = math.fsum(terms)
                except OverflowError:
                    finite = False
                    break
                heads += (head, rest)
                bound += float(np.sum(e * np.abs(w), dtype=work)) + loss + abs(rest) * 2.0**-52
            if not finite:
                break
    finite = finite and math.isfinite(bound)
    if finite:
        try:
            head = math.fsum(heads)
        except OverflowError:
            finite = False
    if finite and math.isfinite(head):
        heads.append(-head)
        rest = math.fsum(heads)
        total = B(np.asarray([head], work) + np.asarray([rest], work), np.asarray([bound], work))
        tiny = float(np.finfo(work).smallest_subnormal)
        total.e = total.e * (1 + 2.0**-30) + abs(rest) * 2.0**-52 + 4 * tiny
        with np.errstate(all="ignore"):
            r, sure = decide_in(total, fmt)
        if bool(sure[0]) or flat.size > correct.EXACT_FLOOR:
            # Beyond EXACT_FLOOR terms, as for the elementwise functions (correct.rounded_sum): the
            # sum of the bounded products rounded once, within the sum of their bounds.
            return float(r[0])
    if flat.size > correct.EXACT_FLOOR:
        raise ActivationError(
            "grad",
            f"grad_params.{param}: some of the {flat.size:,} products could not be bounded in extended "
            f"precision, and exact sums are worked out for at most {correct.EXACT_FLOOR:,} elements: "
            "send the vectors in parts and add the sums",
        )
    exacts = [rounding.exact(flat[r].tolist(), params, gflat[r].tolist()) for r in range(flat.shape[0])]

    def total_at(prec: int) -> Any:
        parts = []
        for ex in exacts:
            checkpoint()  # every vector's sums at each precision: a stopped request stops here
            ex.at(prec)
            with wide(prec + 64):
                part = ex.param_sum(param)
            if part is None:
                return None  # (see Exact.param_sum)
            parts.append(part)
        with wide(prec + 128):
            total = gmpy2.fsum(parts)
        # The vectors' sums cancelling to a computed 0: decided where their errors cannot hide a
        # true value (as within one vector, see _SoftmaxExact.zero_bits).
        bits = max((ex.zero_bits for ex in exacts), default=0) + len(exacts).bit_length()
        if gmpy2.is_zero(total) and any(not gmpy2.is_zero(p) for p in parts) and prec < bits:
            return None
        return total

    return correct.ziv(total_at, fmt)
