"""alpha-entmax (Peters, Niculae and Martins 2019): entmax15 and entmax with its parameter alpha.

    y_i = max((alpha - 1) x_i - tau, 0)^(1 / (alpha - 1)),   tau such that sum_i y_i = 1,

along the axis; alpha = 1 is softmax (the limit), 2 is sparsemax, 1.5 is ``entmax15``.  With
z = (alpha - 1)(x - max x) and p = 1 / (alpha - 1), y_i = max(z_i - t, 0)^p where t is the
threshold in z's units (-1 <= t <= -(1/n)^(1/p): the largest z is 0).

* Jacobian: J = diag(s) - s s^T / sum(s), s_i = y_i^(2 - alpha) = (z_i - t)^(p - 1) on the support,
  0 off it (an element exactly on the support's edge counts as outside).
* dy/dalpha (Correia, Niculae and Martins 2019): with ytilde = s / sum(s) and S_i = y_i log y_i,
  dy_i/dalpha = (y_i - ytilde_i) / (alpha - 1)^2 - (S_i - ytilde_i sum_k S_k) / (alpha - 1); at
  alpha = 1 its limit, y_i (sum_k y_k l_k^2 - l_i^2) / 2 with l = log y.

Correctly rounded as the other vector functions (:mod:`.vector_rounded`): a bounded evaluation in
the working precision decides nearly every element, the threshold bracketed by two evaluations of
sum(y) - 1 whose bounds prove its sign on either side; the rest is worked out exactly.  For
alpha = 1.5 the exact route is exact algebra: on the support S (size k, a = x/2), t = mean(a) -
sqrt(D), D = (1 - sum_S (a - mean)^2) / k rational, so every value, Jacobian entry and VJP lies
in Q(sqrt D) and is decided (zeros and rationals included) without rounding (:class:`Surd`).  For
other alpha the threshold comes from Newton's method in MPFR at the working precision.  alpha = 1
and 2 are softmax's and sparsemax's own correctly rounded routes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpfr, mpq
from numpy.typing import NDArray

from . import correct, vector, vector_rounded
from .bounded import B, two_prod, unit
from .bounded import exp as b_exp
from .exact import EXTENDED, Extended
from .registry import Activation, Array, Example, Kink, Param, checkpoint, register
from .vector_rounded import Bounded, Exact, VectorRounding, tree_sum

#: The largest alpha taken.  Past 2 nothing changes in kind; 8 keeps the working precisions that
#: an element near the support's edge asks for (about alpha times its distance's bits) in bounds.
ALPHA_MAX = 8.0

ALPHA = Param(
    name="alpha",
    default=1.5,
    minimum=1.0,
    maximum=ALPHA_MAX,
    description=(
        "the entmax order, from 1 (softmax) through 1.5 (entmax15) and 2 (sparsemax) up to 8; larger "
        "alpha, sparser y (the Tsallis entropy's alpha; Correia et al. learn it per attention head in "
        "(1, 2]).  Above 2, y = u^(1/(alpha - 1)) rises steeply from the support's edge, so that an "
        "element a hair inside it has a visible y and Jacobian"
    ),
)

#: Newton steps (safeguarded by bisection) for the threshold in the working precision.
NEWTON_STEPS = 80


def _power(u: Any, p: float) -> Any:
    """u^p for u >= 0 (0^p = 0, also for p <= 0: off the support)."""
    if p == 1:
        return u
    if p == 2:
        return u * u
    with np.errstate(divide="ignore"):
        return np.where(u > 0, np.power(np.where(u > 0, u, 1), p), 0)


def _slopes(u: Any, p: Any) -> Any:
    """s = u^(p - 1) = y^(2 - alpha) for u >= 0: 1 on the support where p = 1, 0 off it."""
    return np.where(u > 0, _power(u, p - 1) if p != 1 else 1.0, 0.0)


def _powers(u: Any, p: Any) -> tuple[Any, Any]:
    """u^p and u^(p - 1) for u >= 0 (0 off the support, u = 0): squares and products for p = 1 and
    2, else one log and one exp an element."""
    if p == 1:
        return u, (u > 0).astype(u.dtype)
    if p == 2:
        return u * u, u
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = u > 0
        safe = np.where(inside, u, 1)
        up = np.exp(p * np.log(safe))
        return np.where(inside, up, 0), np.where(inside, up / safe, 0)


def _threshold(z: Any, p: Any) -> Any:
    """t with sum max(z - t, 0)^p = 1 along the last axis (max z = 0), kept as (..., 1): Newton's
    method from the middle of the bracket [-1, -(1/n)^(1/p)], bisection where a step leaves it;
    a row is done when the step is within two units of t or sum - 1 within four units of 1."""
    n = z.shape[-1]
    shape = (*z.shape[:-1], 1)
    lo = np.full(shape, -1.0, z.dtype)  # f(lo) >= 0: the largest term alone is 1
    hi = np.full(shape, -((1.0 / n) ** (1.0 / float(p))), z.dtype)  # f(hi) <= 0: every term <= 1/n
    t = (lo + hi) / 2
    eps = np.finfo(z.dtype).eps
    for _ in range(NEWTON_STEPS):
        up, slope_terms = _powers(np.maximum(z - t, 0), p)
        f = np.sum(up, axis=-1, keepdims=True) - 1
        slope = p * np.sum(slope_terms, axis=-1, keepdims=True)
        lo = np.where(f >= 0, t, lo)
        hi = np.where(f <= 0, t, hi)
        with np.errstate(all="ignore"):
            correction = f / slope
        step = t + correction
        done = (np.abs(correction) <= 2 * eps * np.abs(t)) | (hi - lo <= 2 * eps * np.abs(t))
        done |= np.abs(f) <= 4 * eps
        t = np.where(done, t, np.where((step >= lo) & (step <= hi), step, (lo + hi) / 2))
        if np.all(done):
            break
    return t


def _state(x: Array, alpha: float) -> tuple[Extended, Extended, Any]:
    """(u = max(z - t, 0), z - t unclipped, p) in extended precision."""
    p: Any = EXTENDED(1.0) / EXTENDED(alpha - 1.0)
    xe = x.astype(EXTENDED)
    z = (alpha - 1.0) * (xe - np.max(xe, axis=-1, keepdims=True))
    t = _threshold(z, p)
    return np.maximum(z - t, 0), z - t, p


def entmax(x: Array, alpha: float = 1.5) -> Array:
    if alpha == 1.0:
        return vector.softmax(x, 1.0)
    if alpha == 2.0:
        return vector.sparsemax(x)
    u, _, p = _state(x, alpha)
    return np.asarray(_power(u, p), np.float64)


def _s(x: Array, alpha: float) -> Extended:
    """s = y^(2 - alpha) on the support, 0 off it (softmax's y at alpha = 1)."""
    if alpha == 1.0:
        return vector.softmax(x, 1.0).astype(EXTENDED)
    u, _, p = _state(x, alpha)
    return _slopes(u, p)


def entmax_jacobian(x: Array, alpha: float = 1.5, out: NDArray[Any] | None = None) -> NDArray[Any]:
    def state(v: Array) -> tuple[Extended, Extended]:
        s = _s(v, alpha)
        return s, np.sum(s, axis=-1, keepdims=True)

    def fill(arrays: tuple[NDArray[Any], ...], rows: slice, dest: NDArray[Any]) -> None:
        s, total = arrays
        block = -s[:, rows, None] * s[:, None, :] / total[:, :, None]
        at, i = vector._diagonal(rows)
        block[:, at, i] += s[:, i]
        vector._store(dest, block)

    return vector._build(x, x.shape[-1], out, state, fill)


def entmax_vjp(x: Array, g: Array, alpha: float = 1.5) -> Array:
    s = _s(x, alpha)
    ge = g.astype(EXTENDED)
    inner = np.sum(s * ge, axis=-1, keepdims=True) / np.sum(s, axis=-1, keepdims=True)
    return np.asarray(s * (ge - inner), np.float64)


def entmax_alpha_grad(x: Array, alpha: float = 1.5) -> dict[str, Array]:
    if alpha == 1.0:
        y = vector.softmax(x, 1.0).astype(EXTENDED)
        with np.errstate(divide="ignore"):
            l2 = np.where(y > 0, np.log(y) ** 2, 0)
        d = y * (np.sum(y * l2, axis=-1, keepdims=True) - l2) / 2
        return {"alpha": np.asarray(d, np.float64)}
    u, _, p = _state(x, alpha)
    y = _power(u, p)
    s = _slopes(u, p)
    ytilde = s / np.sum(s, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        big_s = np.where(y > 0, y * p * np.log(np.where(u > 0, u, 1)), 0)
    ent = np.sum(big_s, axis=-1, keepdims=True)
    a1 = alpha - 1.0
    d = (y - ytilde) / (a1 * a1) - (big_s - ytilde * ent) / a1
    return {"alpha": np.asarray(d, np.float64)}


# -- correctly rounded: the bounded route ----------------------------------------------------------


def _b_power(u: B, p: float, work: Any, exponent: tuple[Any, bool] | None = None) -> B:
    """max(u, 0)^p with its bound; 0 where u <= 0 for sure, and where the interval straddles 0,
    [0, upper^p] (p > 0) or unbounded (p < 0).  ``exponent``: p in the working precision and
    whether it is p exactly (1 / (alpha - 1) is rarely a float: else it is within a unit of p).

    p = k + f with k = floor(p) (at most 64): u^k as B's products (binary powering), u^f as
    e^(f log u) with the C library's log and exp; the f part's bound grows with f |log u| only, so
    that y = u^5 (alpha = 1.2) is bounded within a few units rather than 5 |log u| times more."""
    s = u.folded()
    low, high = s.v - s.e, s.v + s.e
    positive = low > 0
    outside = high <= 0
    pw, exact = (np.asarray(p, work), True) if exponent is None else exponent
    uw = unit(work)
    with np.errstate(all="ignore"):
        k = int(np.floor(pw)) if 0 <= pw < 65 else 0
        frac = pw - k  # exact: k <= pw < k + 1
        power: B | None = None
        square = B(np.where(positive, s.v, 1), np.where(positive, s.e, 0))
        left = k
        while left:
            if left & 1:
                power = square if power is None else power * square
            left >>= 1
            if left:
                square = square * square
        if power is None:
            power = B(np.ones_like(s.v), np.zeros_like(s.v))
        inside = power
        if frac != 0 or not exact:
            lv = np.log(np.where(positive, s.v, 1))
            le = np.where(positive, s.e / np.where(positive, low, 1), np.inf)
            le = le + LIBM * uw * np.abs(lv) + np.finfo(work).smallest_subnormal
            # f's product with log u rounded; p itself within two units of the true exponent
            arg_e = np.abs(frac) * le + uw * np.abs(frac * lv) + (0 if exact else 2 * uw * np.abs(pw * lv))
            inside = power * b_exp(B(frac * lv, arg_e))
        top = np.maximum(high, 0)
        stretch = [np.power(top, pw * (1 + 4 * uw)), np.power(top, pw * (1 - 4 * uw))]
        upper = np.maximum(*stretch) * (1 + 16 * uw) if p > 0 else np.inf
    v = np.where(positive, inside.v, np.where(outside, 0, upper / 2))
    e = np.where(positive, inside.e, np.where(outside, 0, upper / 2))
    return B(v, e)


#: The C library's log (long double and double): as bounded.LIBM_UNITS for exp, in units of u.
LIBM = 8


def _exact_quotient(q: Any, d: Any, n: Any) -> bool:
    """Whether q = n / d exactly: q d - n is 0, q d formed exactly (Dekker's product)."""
    hi, lo = two_prod(np.asarray(q), np.asarray(d))
    return bool(hi == n and lo == 0)


class _EntmaxBounded(Bounded):
    """One group of vectors: z = (alpha - 1)(x - max) with its bound, the threshold t from Newton's
    method in the working precision, bracketed: sum(y) - 1 proved >= 0 at t - d and <= 0 at t + d
    (else the vector goes to the exact route whole), t then held as B(t, d)."""

    def __init__(self, x: Array, alpha: float, work: Any, g: Array | None) -> None:
        self.work = work
        self.p = 1.0 / (alpha - 1.0)
        self.alpha = alpha
        a1 = np.asarray(alpha - 1.0, work)
        one = np.asarray(1.0, work)
        # p = 1/(alpha - 1) and p - 1 = (2 - alpha)/(alpha - 1) in the working precision, and
        # whether each is exact (their products with alpha - 1, formed exactly, give 1 and 1 - a1)
        p, q = one / a1, (one - a1) / a1
        self.exponents = (
            (p, bool(_exact_quotient(p, a1, one))),
            (q, bool(_exact_quotient(q, a1, one - a1) and (one - a1) + a1 == one)),
        )
        xw = B.exact(x, work)
        diff = xw - B.exact(np.max(x, axis=-1, keepdims=True), work)
        self.z = diff * B.exact(np.asarray(alpha - 1.0), work) if alpha != 2.0 else diff
        t = _threshold(self.z.v, self.exponents[0][0])
        u = unit(work)
        # The bracket's half-width: a few units of t, and what the bound of sum(y) - 1 at t allows.
        f = self._excess(t)
        slope = self.p * np.sum(_slopes(np.maximum(self.z.v - t, 0), self.p), axis=-1, keepdims=True)
        with np.errstate(all="ignore"):
            tight = (np.abs(f.v) + f.e) / np.where(slope > 0, slope, 1)
        # The narrowest bracket that proves itself: 1.25 times what the bound at t allows, else 8
        # times (a bracket that proves neither sends its vector to the exact route whole).
        d = np.full_like(t, np.inf)
        ok = np.zeros(t.shape, bool)
        for widen in (1.25, 8.0):
            with np.errstate(all="ignore"):
                trial = widen * tight + 2 * widen * u * np.abs(t)
            low, high = self._excess(t - trial), self._excess(t + trial)
            proved = (low.v - low.e >= 0) & (high.v + high.e <= 0) & np.isfinite(trial) & (slope > 0)
            d = np.where(proved & ~ok, trial, d)
            ok |= proved
            if ok.all():
                break
        self.t = B(t, np.where(ok, d, np.inf))
        self.diff = self.z - self.t  # z - t, its bound holding the threshold's
        self.y = _b_power(self.diff, self.p, work, self.exponents[0])
        self.s = self._s()
        self.total = tree_sum(self.s)
        # Where every element is in or out of the support for sure: its exact zeros.  One element
        # alone (y = 1): every Jacobian entry and dy/dalpha is 0; g one number over the support:
        # the VJP is 0 (g^T J = g 1^T J, and J's columns sum to 0).
        folded = self.diff.folded()
        self.inside = folded.v - folded.e > 0
        known = np.all(self.inside | (folded.v + folded.e <= 0), axis=-1, keepdims=True)
        self.single = known & (np.sum(self.inside, axis=-1, keepdims=True) == 1)
        self.known = known

    def _excess(self, t: Any) -> B:
        """sum_i max(z_i - t, 0)^p - 1 with its bound, t exact."""
        diff = self.z - B(t, np.zeros_like(t))
        return tree_sum(_b_power(diff, self.p, self.work, self.exponents[0])) - 1.0

    def _s(self) -> B:
        if self.p == 1:  # sparsemax: the support's indicator (exact where the support is known)
            s = self.diff.folded()
            inside = (s.v - s.e > 0).astype(self.work)
            known = (s.v - s.e > 0) | (s.v + s.e <= 0)
            return B(inside, np.where(known, 0, np.inf))
        return _b_power(self.diff, self.p - 1, self.work, self.exponents[1])

    def value(self) -> Iterator[tuple[slice, B]]:
        yield slice(0, self.y.v.shape[-1]), self.y

    def jacobian(self, rows: slice) -> B:
        s = self.s.folded()
        si = B(s.v[:, rows, None], s.e[:, rows, None])
        sj = B(s.v[:, None, :], s.e[:, None, :])
        total = B(self.total.v[:, :, None], self.total.e[:, :, None])
        block = -(si * sj) / total
        diag = (np.arange(rows.start, rows.stop)[:, None] == np.arange(s.v.shape[-1])[None, :])[None]
        on = si - (si * sj) / total
        single = self.single[:, :, None]
        return B(
            np.where(single, 0, np.where(diag, on.v, block.v)),
            np.where(single, 0, np.where(diag, on.e, block.e)),
        )

    def vjp(self, g: Array) -> Iterator[tuple[slice, B]]:
        gb = B.exact(g, self.work)
        inner = tree_sum(self.s * gb) / self.total
        out = self.s * (gb - inner)
        top = np.max(np.where(self.inside, g, -np.inf), axis=-1, keepdims=True)
        bottom = np.min(np.where(self.inside, g, np.inf), axis=-1, keepdims=True)
        flat = self.known & (top == bottom)
        yield slice(0, g.shape[-1]), B(np.where(flat, 0, out.v), np.where(flat, 0, out.e))

    def param(self, name: str) -> Iterator[tuple[slice, B]]:
        # dy/dalpha = (y - ytilde)/(alpha-1)^2 - (S - ytilde ent)/(alpha-1), S = y log y.
        log_y = _b_log(self.diff, self.work) * B.exact(self.exponents[0][0], self.work)
        log_y = B(log_y.v, log_y.e + 2 * unit(self.work) * np.abs(log_y.v))  # p's rounding
        big_s = self.y * log_y
        zero = self.y.is_zero()
        big_s = B(np.where(zero, 0, big_s.v), np.where(zero, 0, big_s.e))
        ent = tree_sum(big_s)
        ytilde = self.s / self.total
        a1 = self.alpha - 1.0
        out = ((self.y - ytilde) / a1) / a1 - (big_s - ytilde * ent) / a1  # a1 exact
        yield (
            slice(0, self.y.v.shape[-1]),
            B(np.where(self.single, 0, out.v), np.where(self.single, 0, out.e)),
        )


def _b_log(u: B, work: Any) -> B:
    """log u for u > 0 with its bound; 0 with an unbounded error where u may be <= 0."""
    s = u.folded()
    low = s.v - s.e
    positive = low > 0
    with np.errstate(all="ignore"):
        lv = np.log(np.where(positive, s.v, 1))
        le = (
            s.e / np.where(positive, low, 1) + 8 * unit(work) * np.abs(lv) + np.finfo(work).smallest_subnormal
        )
    return B(lv, np.where(positive, le, np.inf))


class _Undecided(Bounded):
    """Every element to the exact route (entmax's alpha derivative at alpha = 1)."""

    def __init__(self, x: Array, work: Any) -> None:
        self.shape = x.shape

    def param(self, name: str) -> Iterator[tuple[slice, B]]:
        yield slice(0, self.shape[-1]), B(np.zeros(self.shape), np.full(self.shape, np.inf))


# -- correctly rounded: the exact route -------------------------------------------------------------

#: Bits at which (alpha - 1)(x - max x) of any float64 x and alpha is exact.
Z_BITS = vector_rounded.EXACT_BITS + 64


def _precision_floor(z: Sequence[Any]) -> int:
    """The working precision the exact route needs at the least for the vector z = (alpha - 1)
    (x - max): twice the bits between the largest |z| (or 1) and the smallest gap between distinct
    inputs, so that second-order effects of inputs a hair apart are resolved."""
    values = sorted(set(z))
    gaps = [b - a for a, b in itertools.pairwise(values)]
    if not gaps:
        return 0
    scale = max([abs(v) for v in values] + [mpfr(1)])
    return min(2 * int(gmpy2.ceil(gmpy2.log2(scale / min(gaps)))) + 64, correct.MAX_BITS // 2)


#: The precision up to which the threshold is refined to place the elements near its edge; those
#: still within 2^-SUPPORT_BITS |t| of it are placed exactly (:func:`_inside`).
SUPPORT_BITS = 1024


def _rational_power(r: Any, p: Any) -> Any:
    """r^p for rationals r > 0 and p where it is rational and at most 2^16 bits long, else None."""
    a, b = int(p.numerator), int(p.denominator)
    roots = []
    for n in (int(r.numerator), int(r.denominator)):
        if n == 1:
            roots.append(gmpy2.mpz(1))
            continue
        if b >= n.bit_length():  # 2^b > n > 1: not a b-th power
            return None
        root, exact = gmpy2.iroot(gmpy2.mpz(n), b)
        if not exact:
            return None
        roots.append(root)
    if abs(a) * max(int(v).bit_length() for v in roots) > 1 << 16:
        return None
    q = mpq(roots[0], roots[1])
    return q**a if a >= 0 else 1 / q ** (-a)


def _inside(z: Sequence[Any], j: int, p: Any) -> bool:
    """Whether z_j lies inside the support (z_j > t), decided exactly.  F(t) = sum_i max(z_i - t,
    0)^p falls as t rises and F(t) = 1, so z_j > t exactly where P_j = F(z_j), the sum over z_i > z_j
    of (z_i - z_j)^p, is below 1; P_j = 1 puts z_j on the edge (y_j = 0: outside).  Each term is a
    positive real radical (p is rational, as every z is).  Where all are rational the sum is
    compared in rationals; where one is not, P_j != 1 (real radicals that are not rational multiples
    of each other are linearly independent over Q: Siegel 1972), and evaluations at rising precision
    part it from 1.  (Only a P_j within 2^-MAX_BITS of 1 and not 1, which no known input comes near,
    is taken for the edge.)"""
    zj = mpq(z[j])
    gaps = [mpq(v) - zj for v in z if v > z[j]]
    if not gaps:
        return True
    if any(r > 1 for r in gaps) or (len(gaps) > 1 and any(r == 1 for r in gaps)):
        return False
    terms = [_rational_power(r, p) for r in gaps]
    if all(term is not None for term in terms):
        return bool(sum(terms, mpq(0)) < 1)
    prec = 128
    while prec <= correct.MAX_BITS:
        checkpoint()
        with gmpy2.context(gmpy2.get_context(), precision=prec):
            # p, r, their log and product each within 2^-prec of themselves: v within
            # (3 |v| + 2 p + 2) 2^-prec of p log r, e^v within that and 2^-prec more.
            logs = [mpfr(p) * gmpy2.log(mpfr(r)) for r in gaps]
            powers = [gmpy2.exp(v) for v in logs]
            total = gmpy2.fsum(powers)
            error = gmpy2.fsum(
                [w * (4 * abs(v) + 4 * mpfr(p) + 8) for w, v in zip(powers, logs, strict=True)]
            )
            error = (error + total) * gmpy2.exp2(1 - prec)
            if abs(total - 1) > error:
                return bool(total < 1)
        prec *= 2
    return False


def _log1pmx(x: Any) -> Any:
    """log(1 + x) - x without cancellation: its series where |x| < 2^-8 (so that a tiny x gives
    -x^2/2, never an exact 0), else the difference itself (at most 9 bits lost)."""
    if abs(x) >= 2.0**-8:
        return gmpy2.log1p(x) - x
    total, power, n = mpfr(0), x, 1
    limit = gmpy2.exp2(-(gmpy2.get_context().precision + 8))
    while True:
        n += 1
        power = -power * x
        term = power / n
        total += term
        if abs(term) <= limit * abs(total):
            return total


def _h_gap(gap: Any, a: Any, b: Any, log_a: Any) -> Any:
    """h(a) - h(b) for h(u) = u (1 - log u), a - b = gap exactly: -gap log a - b log1pmx(gap / b)."""
    if not gap:
        return mpfr(0)
    return -gap * log_a - b * _log1pmx(gap / b)


def _log_gap(a: Any, delta: Any) -> Any:
    """log(a - delta) for an exact a and a small delta: log a + log1p(-delta / a) where that
    cannot cancel, else the difference itself (a at most 2 delta: its error is delta's)."""
    if a > 0 and abs(delta) <= a / 2:
        return gmpy2.log(a) + gmpy2.log1p(-delta / a)
    return gmpy2.log(a - delta)


def _rational_entmax(x: Sequence[float], alpha: float) -> tuple[list[Any], list[Any] | None] | None:
    """(y, s) exactly for a support of equal inputs (k of them, the rest below its edge): y = 1/k,
    s = y^(2 - alpha) = k^(alpha - 2), rational where alpha - 2 = a/b and k is a perfect b-th
    power (s None where it is irrational: its products with rationals are never a midpoint); None
    for other supports."""
    top = mpq(max(x))
    a1 = mpq(alpha - 1.0)
    z = [a1 * (mpq(v) - top) for v in x]
    k = sum(1 for v in z if v == 0)
    below = [v for v in z if v != 0]
    y_flat = [mpq(1, k) if v == 0 else mpq(0) for v in z]
    # the others at or below the edge t = -(1/k)^(alpha - 1): decided at 256 bits with a margin
    with gmpy2.context(gmpy2.get_context(), precision=256):
        edge = -(mpfr(k) ** (-mpfr(a1)))
        gap = (mpfr(max(below)) - edge) / abs(edge) if below else mpfr(-1)
    if gap < -gmpy2.exp2(-200):
        return y_flat, _flat_s(k, alpha)
    return None


def _flat_s(k: int, alpha: float) -> list[Any] | None:
    """k^(alpha - 2) as a rational where it is one (alpha - 2 = a/b, k a perfect b-th power)."""
    power = mpq(alpha - 2.0)
    a, b = int(power.numerator), int(power.denominator)
    root, exact = gmpy2.iroot(gmpy2.mpz(k), b) if b < 1 << 20 else (gmpy2.mpz(1), k == 1)
    if not exact:
        return None
    value = mpq(root) ** a if a >= 0 else 1 / mpq(root) ** (-a)
    return [value]


def _spread(y: list[Any], s: list[Any]) -> list[Any]:
    """s over the support: one number for all (a flat support) or one an element."""
    return [s[0] if v else mpq(0) for v in y] if len(s) == 1 else s


def _rational_jacobian(y: list[Any], s: list[Any], i: int, j: int) -> Any:
    """diag(s) - s s^T / sum s, exactly."""
    s = _spread(y, s)
    if not (s[i] and s[j]):
        return mpq(0)
    return (s[i] if i == j else 0) - s[i] * s[j] / sum(s, mpq(0))


def _rational_vjp(y: list[Any], s: list[Any], g: list[Any], j: int) -> Any:
    s = _spread(y, s)
    if not s[j]:
        return mpq(0)
    inner = sum((si * mpq(gi) for si, gi in zip(s, g, strict=True) if si), mpq(0)) / sum(s, mpq(0))
    return s[j] * (mpq(g[j]) - inner)


class _EntmaxExact(Exact):
    """One vector at the working precision.  The threshold is t0 + delta: t0 the extended-precision
    one, held exactly, and delta found by Newton's method in MPFR; each z_i - t is a_i - delta with
    a_i = z_i - t0 exact, and log(z_i - t) = log a_i + log1p(-delta / a_i).  So nothing sticks to a
    nearby float at a working precision (t = -1 - 2e-94 is not -1 at two precisions in a row, which
    Ziv's strategy would take for settled), and y_i near 1 is never formed where it matters:
    dy/dalpha of the element above 1/2 is minus the sum of the others' (sum y = 1 for every alpha).
    Exact zeros: off the support (an element within the precision's resolution of its edge counts
    as on it), dy/dalpha where the support's inputs are all equal (y = 1/k, whatever alpha), the VJP
    and its alpha sum where g is one number over the support."""

    def __init__(self, x: Sequence[float], alpha: float, g: Sequence[float] | None) -> None:
        self.n = len(x)
        self.alpha = alpha
        self.a1 = mpfr(alpha - 1.0, 53)  # exact: alpha >= 1
        top = max(x)
        with gmpy2.context(gmpy2.get_context(), precision=Z_BITS):
            self.z = [(mpfr(v, 53) - mpfr(top, 53)) * self.a1 for v in x]
        self.g = None if g is None else [mpfr(v, 53) for v in g]
        zl = np.asarray([float(v) for v in self.z], EXTENDED)
        t0 = _threshold(zl[None, :], 1.0 / (alpha - 1.0))[0, 0] if np.all(np.isfinite(zl)) else EXTENDED(-0.5)
        high = float(t0)
        with gmpy2.context(gmpy2.get_context(), precision=Z_BITS + 64):
            self.t0 = mpfr(high, 53) + mpfr(float(t0 - EXTENDED(high)), 53)  # the long double, exactly
            self.a = [z - self.t0 for z in self.z]  # exact
        self.rational = _rational_entmax(x, alpha)
        self.floor = _precision_floor(self.z)
        # The support: decided once (see _decide_support).
        self.members: list[bool] | None = None
        self.undecided = False
        self.delta = mpfr(0)
        self._w = mpfr(0.5)  # y of the element nearest the edge (alpha > 2; see _solve_at_the_edge)
        self.prec = 0
        self._cache: dict[str, Any] = {}

    def _p(self) -> Any:
        return 1 / self.a1

    def _solve(self) -> None:
        """delta = t - t0 to about 2^-(prec + 32) of t: safeguarded Newton's method from the last."""
        p = self._p()
        if self.members is not None and p < 1 and self._solve_at_the_edge():
            return
        lo = mpfr(-1) - self.t0  # f(lo) >= 0
        hi = -((mpfr(1) / self.n) ** (1 / p)) - self.t0  # f(hi) <= 0
        # Once the support is known, the sum is over it alone, and t stays below its every input.
        members = self.members if self.members is not None else [True] * self.n
        if self.members is not None:
            hi = min([hi, *(a for a, member in zip(self.a, members, strict=True) if member)])
        d = self.delta if lo <= self.delta <= hi else (lo + hi) / 2
        tolerance = gmpy2.exp2(-(self.prec + 32)) * abs(self.t0)
        for _ in range(NEWTON_STEPS + 2 * self.prec.bit_length()):
            checkpoint()  # a long vector takes a while an iteration: a stopped request stops here
            f, slope = mpfr(-1), mpfr(0)
            for a, member in zip(self.a, members, strict=True):
                if member and a > d:
                    u = a - d
                    f += u**p
                    slope += p * u ** (p - 1)
            if f == 0:
                break
            if f > 0:
                lo = d
            else:
                hi = d
            correction = f / slope if slope > 0 else None
            if correction is not None and abs(correction) <= tolerance:
                d += correction
                break
            step = d + correction if correction is not None else (lo + hi) / 2
            d = step if lo <= step <= hi else (lo + hi) / 2
        else:
            # Newton's steps ran out (an element entering the support bends the sum sharply):
            # bisection of the bracket, which the steps kept, to the tolerance.
            while hi - lo > tolerance:
                checkpoint()
                d = (lo + hi) / 2
                f = gmpy2.fsum(
                    [(a - d) ** p for a, member in zip(self.a, members, strict=True) if member and a > d]
                )
                if f - 1 >= 0:
                    lo = d
                else:
                    hi = d
            d = (lo + hi) / 2
        self.delta = d

    def _solve_at_the_edge(self) -> bool:
        """For alpha > 2 over a known support: Newton's method in w = y_j, j the support's element
        nearest its edge, with u_j = w^(alpha - 1) and u_i = (z_i - z_j) + u_j, so that sum y - 1 =
        w - 1 + sum_(i != j) u_i^p is smooth in w.  In t its slope is infinite at that edge: an
        element a hair inside left Newton's steps in t to bisection (a hundred seconds at
        thousands of bits).  Sets delta = a_j - u_j; False where the steps do not settle."""
        assert self.members is not None
        support = [i for i, member in enumerate(self.members) if member]
        j = min(support, key=lambda i: self.a[i])
        with gmpy2.context(gmpy2.get_context(), precision=Z_BITS + 64):
            gaps = [self.z[i] - self.z[j] for i in support if i != j]  # exact
        p, e = self._p(), self.a1
        lo, hi = mpfr(0), mpfr(1)  # f(0) < 0: j is inside; f(1) >= 0
        w = self._w if 0 < self._w < 1 else mpfr(0.5)  # from the last precision
        # done when the step moves t = z_j - w^(alpha - 1) by 2^-(prec + 32) |t| at most, as in t
        tolerance = gmpy2.exp2(-(self.prec + 32)) * abs(self.t0)
        for _ in range(NEWTON_STEPS + 2 * self.prec.bit_length()):
            checkpoint()
            u = w**e
            f = gmpy2.fsum([w - 1, *((g + u) ** p for g in gaps)])
            if f == 0:
                break
            if f > 0:
                hi = w
            else:
                lo = w
            du = e * w ** (e - 1)  # du_j/dw
            slope = 1 + gmpy2.fsum([p * (g + u) ** (p - 1) for g in gaps]) * du
            correction = f / slope
            if abs(correction) * du <= tolerance:
                w -= correction
                break
            step = w - correction
            w = step if lo < step < hi else (lo + hi) / 2
        else:
            return False
        self._w = w
        self.delta = self.a[j] - w**e
        return True

    def at(self, prec: int) -> None:
        # Never below the floor: at a lower precision the pieces of inputs a hair apart come out
        # the same at two precisions in a row, which Ziv's strategy would take for settled.
        self.prec = max(prec, self.floor)
        self._cache = {}
        if self.members is None:
            self._decide_support()
            if self.rational is None:
                self.rational = self._rational_threshold()
        with vector_rounded.wide(self.prec + 64):
            self._solve()
            self._pieces()

    def _decide_support(self) -> None:
        """Which elements are on the support, once: t solved at rising precision until no element
        lies within 2^-prec |t| of the edge, up to SUPPORT_BITS; an element still that near is
        decided exactly (:func:`_inside`: one exactly on the edge, as at alpha = 3 with x = [0,
        -1/4, -9/32], is outside).  The values are then worked out at the precision Ziv's strategy
        asks for, over that support: an edge element never holds the whole vector at a high one."""
        asked = self.prec
        while True:
            with vector_rounded.wide(self.prec + 64):
                self._solve()
                edge = abs(self.t0) * gmpy2.exp2(-self.prec)
                gaps = [a - self.delta for a in self.a]
            near = [abs(gap) <= edge for gap in gaps]
            if self.prec >= SUPPORT_BITS or not any(near):
                p = 1 / mpq(self.alpha - 1.0)
                self.members = [
                    _inside(self.z, j, p) if close else bool(gap > 0)
                    for j, (gap, close) in enumerate(zip(gaps, near, strict=True))
                ]
                break
            self.prec *= 2
        self.prec = asked

    def _rational_threshold(self) -> tuple[list[Any], list[Any]] | None:
        """(y, s) exactly where a rational threshold t solves the vector (alpha = 3 and a support of
        two: u_top = ((1 - z_2) / 2)^2; values and VJPs can then be midpoints of a format), else
        None.  Tried for p = 1/(alpha - 1) of numerator and denominator at most 64: t is solved at
        four times the inputs' bits (and 256 more), read off as the nearest fraction of half that
        many bits, and kept where every y = (z - t)^p then comes out rational and sums to 1."""
        assert self.members is not None
        p = 1 / mpq(self.alpha - 1.0)
        if p.numerator > 64 or p.denominator > 64:
            return None
        support = [i for i, member in enumerate(self.members) if member]
        zq = [mpq(self.z[i]) for i in support]
        height = max(max(int(v.numerator).bit_length(), int(v.denominator).bit_length()) for v in zq)
        if height > 2048:
            return None
        asked = self.prec
        self.prec = 4 * height + 256
        with vector_rounded.wide(self.prec + 64):
            self._solve()
            t = mpq(self.t0) + mpq(self.delta)
        self.prec = asked
        guess = -mpq(Fraction(int(t.numerator), int(t.denominator)).limit_denominator(1 << (2 * height + 64)))
        y, s = [mpq(0)] * self.n, [mpq(0)] * self.n
        for i, z in zip(support, zq, strict=True):
            u = z + guess  # z - t
            value = _rational_power(u, p) if u > 0 else None
            if value is None:
                return None
            y[i], s[i] = value, value / u  # s = u^(p - 1)
        return (y, s) if sum(y, mpq(0)) == 1 else None

    def _pieces(self) -> None:
        """log u, y, s, their sums, from delta over the support.  An element of it that this
        precision cannot tell from its edge (u a hair above 0) leaves the vector undecided."""
        assert self.members is not None
        p = self._p()
        edge = abs(self.t0) * gmpy2.exp2(-self.prec)
        self.inside = self.members
        self.undecided = any(
            member and a - self.delta <= edge for a, member in zip(self.a, self.members, strict=True)
        )
        self.log_u = [
            _log_gap(a, self.delta) if inside else mpfr(0)
            for a, inside in zip(self.a, self.inside, strict=True)
        ]
        self.y = [
            gmpy2.exp(p * lu) if inside else mpfr(0)
            for lu, inside in zip(self.log_u, self.inside, strict=True)
        ]
        self.s = [
            (gmpy2.exp((p - 1) * lu) if p != 1 else mpfr(1)) if inside else mpfr(0)
            for lu, inside in zip(self.log_u, self.inside, strict=True)
        ]
        self.total = gmpy2.fsum(self.s)
        zs = {z for z, inside in zip(self.z, self.inside, strict=True) if inside}
        self.flat = len(zs) == 1  # every y on the support equal: no dependence on alpha

    def value(self, i: int) -> Any:
        if self.rational is not None:
            return self.rational[0][i]
        return None if self.undecided else self.y[i]

    def jacobian(self, i: int, j: int) -> Any:
        if self.rational is not None and self.rational[1] is not None:
            return _rational_jacobian(*self.rational, i, j)  # type: ignore[arg-type]
        if self.rational is not None and i == j and sum(1 for v in self.rational[0] if v) == 1:
            return mpq(0)  # one element alone
        if self.undecided:
            return None
        if not (self.inside[i] and self.inside[j]):
            return mpfr(0)
        with vector_rounded.wide(self.prec + 64):  # the vector's own precision (see at)
            if i != j:
                return -self.s[i] * self.s[j] / self.total
            # s_i (1 - s_i / sum s) as s_i (sum of the others) / sum s: no cancellation, and an
            # exact 0 where i is the support alone
            rest = gmpy2.fsum(s for k, s in enumerate(self.s) if k != i and s)
            return self.s[i] * rest / self.total

    def _get(self, name: str, make: Callable[[], Any]) -> Any:
        """A piece of the vector worked out once at the current precision."""
        if name not in self._cache:
            with vector_rounded.wide(self.prec + 64):
                self._cache[name] = make()
        return self._cache[name]

    def _g_flat(self, level: Any = None) -> bool:
        """Whether g has one mean (``level``, where given) over every group of equal inputs of the
        support: equal inputs have equal y, s and dy/dalpha, so that sum_i g_i dy_i/dalpha is that
        mean times sum_i dy_i/dalpha = 0, and the VJP of an element whose g is that mean is 0."""
        assert self.g is not None
        groups: dict[Any, list[Any]] = {}
        for z, g, inside in zip(self.z, self.g, self.inside, strict=True):
            if inside:
                groups.setdefault(z, []).append(mpq(g))
        means = {sum(gs, mpq(0)) / len(gs) for gs in groups.values()}
        return len(means) <= 1 and (level is None or not means or means == {mpq(level)})

    def vjp(self, j: int) -> Any:
        # s_j (g_j - sum_i s_i g_i / sum s) = s_j sum_i s_i (g_j - g_i) / sum s, the differences of
        # g exact: no cancellation against a rounded mean (which can round to g_j itself)
        assert self.g is not None
        if self.rational is not None and self.rational[1] is not None:
            return _rational_vjp(self.rational[0], self.rational[1], self.g, j)
        if self.undecided:
            return None
        if not self.inside[j] or self._g_flat(self.g[j]):
            return mpfr(0)
        with gmpy2.context(gmpy2.get_context(), precision=vector_rounded.EXACT_BITS):
            gaps = [self.g[j] - gi for gi in self.g]
        with vector_rounded.wide(self.prec + 64):
            total = gmpy2.fsum(s * gap for s, gap in zip(self.s, gaps, strict=True) if s and gap)
            return self.s[j] * total / self.total

    def _dalpha(self) -> list[Any]:
        return self._get("dalpha", self._dalpha_all)

    def _top(self) -> int | None:
        """The element with y above 1/2, if any."""
        k = max(range(self.n), key=lambda i: self.y[i])
        return k if self.y[k] > 0.5 else None

    def _dalpha_all(self) -> list[Any]:
        # (y_i - ytilde_i)/a1^2 - (S_i - ytilde_i ent)/a1 = s_i / (a1^2 sum s) sum_k s_k (h(u_i) - h(u_k))
        # with h(u) = u (1 - log u) (sum y = 1 turns both differences into pairs): the pairs come
        # from the exact differences z_i - z_k, so inputs a hair apart give their small true value,
        # not a difference of two rounded 1/3s that is exactly 0.
        a1 = self.a1
        u = [gmpy2.exp(lu) if inside else mpfr(0) for lu, inside in zip(self.log_u, self.inside, strict=True)]
        support = [k for k in range(self.n) if self.inside[k]]
        d = [mpfr(0)] * self.n
        for i in support:
            terms = (
                self.s[k] * _h_gap(self.z[i] - self.z[k], u[i], u[k], self.log_u[i])
                for k in support
                if k != i
            )
            d[i] = self.s[i] * gmpy2.fsum(terms) / (a1 * a1 * self.total)
        top = self._top()
        if top is not None:
            d[top] = -gmpy2.fsum(v for k, v in enumerate(d) if k != top)
        return d

    def param(self, name: str, i: int) -> Any:
        if self.undecided:
            return None
        if self.flat or not self.inside[i]:
            return mpfr(0)
        return self._dalpha()[i]

    def param_sum(self, name: str) -> Any:
        assert self.g is not None
        if self.undecided:
            return None
        if self.flat or self._g_flat():
            return mpfr(0)
        d = self._dalpha()
        top = self._top()
        with vector_rounded.wide(self.prec + 64):
            if top is None:
                return gmpy2.fsum(g * v for g, v in zip(self.g, d, strict=True) if g)
            # sum_k (g_k - g_top) d_k over the others (d_top = -their sum)
            with gmpy2.context(gmpy2.get_context(), precision=vector_rounded.EXACT_BITS):
                gaps = [gk - self.g[top] for gk in self.g]
            return gmpy2.fsum(
                gap * v for k, (gap, v) in enumerate(zip(gaps, d, strict=True)) if k != top and gap
            )


class Surd:
    """r + q sqrt(D) for rationals r, q and a rational D > 0 shared by a vector (exact)."""

    __slots__ = ("d", "q", "r")

    def __init__(self, r: Any, q: Any, d: Any) -> None:
        self.r, self.q, self.d = mpq(r), mpq(q), d

    def __add__(self, other: Surd) -> Surd:
        return Surd(self.r + other.r, self.q + other.q, self.d)

    def __sub__(self, other: Surd) -> Surd:
        return Surd(self.r - other.r, self.q - other.q, self.d)

    def __mul__(self, other: Surd) -> Surd:
        return Surd(self.r * other.r + self.q * other.q * self.d, self.r * other.q + self.q * other.r, self.d)

    def inverse(self) -> Surd:
        norm = self.r * self.r - self.q * self.q * self.d  # never 0 for a nonzero element: sqrt(D) irrational
        return Surd(self.r / norm, -self.q / norm, self.d)

    def number(self) -> Any:
        """An exact rational (a mpq, rounded exactly by the caller) or, where sqrt(D) enters, the
        value at the working precision without cancellation: r + q sqrt(D) with r and q of
        opposite signs as (r^2 - q^2 D) / (r - q sqrt(D))."""
        if self.q == 0:
            return self.r
        root = gmpy2.sqrt(mpfr(self.d))
        if self.r == 0 or (self.r > 0) == (self.q > 0):
            return mpfr(self.r) + mpfr(self.q) * root
        return mpfr(self.r * self.r - self.q * self.q * self.d) / (mpfr(self.r) - mpfr(self.q) * root)


def _perfect_square(d: Any) -> Any:
    """sqrt(d) for a rational d >= 0 whose root is rational, else None."""
    num, den = int(d.numerator), int(d.denominator)
    rn, rd = gmpy2.isqrt(num), gmpy2.isqrt(den)
    return mpq(rn, rd) if rn * rn == num and rd * rd == den else None


class _Entmax15Exact(_EntmaxExact):
    """alpha = 1.5 in exact algebra: a = (x - max)/2, on the support (size k) t = mean(a) - sqrt(D),
    D = (1 - sum (a - mean)^2) / k; the support found exactly from the sorted a (Peters et al.'s
    Algorithm 2: the k with t_k <= a_(k)).  Every value, Jacobian entry and VJP is a Surd; dy/dalpha,
    with its logarithms, as :class:`_EntmaxExact` from t."""

    def __init__(self, x: Sequence[float], g: Sequence[float] | None) -> None:
        top = mpq(max(x))
        a = [(mpq(v) - top) / 2 for v in x]
        ordered = sorted(a, reverse=True)
        s1 = s2 = mpq(0)
        size, mean, d = 1, ordered[0], mpq(1)
        for k, v in enumerate(ordered, start=1):
            s1 += v
            s2 += v * v
            m = s1 / k
            dk = (1 - (s2 - s1 * m)) / k
            gap = m - v  # t_k <= a_(k)  <=>  m - a_(k) <= sqrt(D_k)
            if gap <= 0 or (dk >= 0 and gap * gap <= dk):
                size, mean, d = k, m, dk
        self.k = size
        self.root = _perfect_square(d)
        # With a rational root every element is rational: D = 1 and q folded into r.
        self.dd = mpq(1) if self.root is not None else d
        sqrt_d = Surd(self.root, 0, self.dd) if self.root is not None else Surd(0, 1, self.dd)
        self.c = [Surd(v - mean, 0, self.dd) for v in a]
        self.exact_s: list[Surd | None] = []
        for ci in self.c:
            si = ci + sqrt_d
            # inside iff c + sqrt(D) > 0: c >= 0, or c^2 < D (exact)
            inside = si.q == 0 and si.r > 0 if self.root is not None else (ci.r >= 0 or ci.r * ci.r < d)
            self.exact_s.append(si if inside else None)
        self.exact_total = Surd(0, 0, self.dd)
        for member in self.exact_s:
            if member is not None:
                self.exact_total = self.exact_total + member
        self.exact_g = None if g is None else [Surd(mpq(v), 0, self.dd) for v in g]
        super().__init__(x, 1.5, g)
        self.members = [s is not None for s in self.exact_s]  # the support, exactly
        self.mean, self.d = mean, d

    def _rational_threshold(self) -> None:
        return None  # the Surds already decide every value, Jacobian entry and VJP exactly

    def _solve(self) -> None:
        root = mpfr(self.root) if self.root is not None else gmpy2.sqrt(mpfr(self.d))
        self.delta = mpfr(self.mean - mpq(self.t0)) - root  # t - t0, t = mean - sqrt(D)

    def _pieces(self) -> None:
        # u = z - t on the support is s, a Surd: its value without cancellation, the support exact
        self.inside = [s is not None for s in self.exact_s]
        u = [mpfr(s.number()) if s is not None else mpfr(0) for s in self.exact_s]
        self.log_u = [gmpy2.log(v) if v > 0 else mpfr(0) for v in u]
        self.y = [v * v for v in u]
        self.s = u
        self.total = gmpy2.fsum(self.s)
        zs = {z for z, inside in zip(self.z, self.inside, strict=True) if inside}
        self.flat = len(zs) == 1

    def value(self, i: int) -> Any:
        s = self.exact_s[i]
        return mpq(0) if s is None else (s * s).number()

    def jacobian(self, i: int, j: int) -> Any:
        si, sj = self.exact_s[i], self.exact_s[j]
        if si is None or sj is None:
            return mpq(0)
        off = si * sj * self.exact_total.inverse()
        return (si - off if i == j else Surd(0, 0, self.dd) - off).number()

    def vjp(self, j: int) -> Any:
        assert self.exact_g is not None
        sj = self.exact_s[j]
        if sj is None:
            return mpq(0)
        inner = self._get("exact_inner", self._exact_inner)
        return (sj * (self.exact_g[j] - inner)).number()

    def _exact_inner(self) -> Surd:
        assert self.exact_g is not None
        total = Surd(0, 0, self.dd)
        for si, gi in zip(self.exact_s, self.exact_g, strict=True):
            if si is not None and gi.r:
                total = total + si * gi
        return total * self.exact_total.inverse()


class _EntmaxOneExact(Exact):
    """dy/dalpha at alpha = 1 (softmax): y_i (sum_k y_k l_k^2 - l_i^2) / 2, l = log y; exactly 0
    for every element where every input is equal (y = 1/n), and its sum with g where g is one
    number throughout."""

    def __init__(self, x: Sequence[float], g: Sequence[float] | None) -> None:
        top = max(x)
        with gmpy2.context(gmpy2.get_context(), precision=Z_BITS):
            self.q = [mpfr(v, 53) - mpfr(top, 53) for v in x]
        self.flat = len(set(x)) == 1
        self.g = None if g is None else [mpfr(v, 53) for v in g]
        self.d: list[Any] = []
        self.floor = _precision_floor(self.q)
        self.prec = 0

    def at(self, prec: int) -> None:
        if self.flat:
            return
        self.prec = max(prec, self.floor)  # as _EntmaxExact.at
        with vector_rounded.wide(self.prec + 64):
            e = [gmpy2.exp(q) for q in self.q]
            total = gmpy2.fsum(e)
            log_total = gmpy2.log(total)
            y = [v / total for v in e]
            logs = [q - log_total for q in self.q]
            # y_i (sum_k y_k l_k^2 - l_i^2) / 2 = y_i / 2 sum_k y_k (x_k - x_i)(l_k + l_i): the
            # differences exact (inputs a hair apart: their small true value, not an exact 0)
            self.d = []
            for i in range(len(y)):
                with gmpy2.context(gmpy2.get_context(), precision=Z_BITS):
                    gaps = [q - self.q[i] for q in self.q]
                terms = (yk * gap * (lk + logs[i]) for yk, gap, lk in zip(y, gaps, logs, strict=True) if gap)
                self.d.append(y[i] * gmpy2.fsum(terms) / 2)

    def param(self, name: str, i: int) -> Any:
        return mpfr(0) if self.flat else self.d[i]

    def param_sum(self, name: str) -> Any:
        assert self.g is not None
        groups: dict[Any, list[Any]] = {}
        for q, g in zip(self.q, self.g, strict=True):
            groups.setdefault(q, []).append(mpq(g))
        # one mean of g over every group of equal inputs: g times sum dy/dalpha = 0
        if self.flat or len({sum(gs, mpq(0)) / len(gs) for gs in groups.values()}) == 1:
            return mpfr(0)
        with vector_rounded.wide(self.prec + 64):
            return gmpy2.fsum(g * d for g, d in zip(self.g, self.d, strict=True) if g)


def _bounded(x: Array, params: Mapping[str, float], work: Any, g: Array | None = None) -> Bounded:
    alpha = float(params.get("alpha", 1.5))
    if alpha == 1.0:
        return _Undecided(x, work)
    return _EntmaxBounded(x, alpha, work, g)


def _exact(x: Sequence[float], params: Mapping[str, float], g: Sequence[float] | None = None) -> Exact:
    alpha = float(params.get("alpha", 1.5))
    if alpha == 1.0:
        return _EntmaxOneExact(x, g)
    if alpha == 1.5:
        return _Entmax15Exact(x, g)
    return _EntmaxExact(x, alpha, g)


class _EntmaxRounding(VectorRounding):
    """entmax's values, Jacobians and VJPs at alpha = 1 and 2 are softmax's and sparsemax's own."""

    def compute(self, quantity: str, x: Array, params: Mapping[str, float], *args: Any, **kwargs: Any) -> Any:
        alpha = float(params.get("alpha", 1.5))
        if quantity != "param" and alpha == 1.0:
            return _SOFTMAX.compute(quantity, x, {"temperature": 1.0}, *args, **kwargs)
        if quantity != "param" and alpha == 2.0:
            return vector_rounded.SPARSEMAX.compute(quantity, x, {}, *args, **kwargs)
        return vector_rounded.compute(self, quantity, x, params, *args, **kwargs)


_SOFTMAX = vector_rounded.softmax_rounding()
ENTMAX = _EntmaxRounding(bounded=_bounded, exact=_exact)
ENTMAX15 = VectorRounding(
    bounded=lambda x, params, work, g=None: _EntmaxBounded(x, 1.5, work, g),
    exact=lambda x, params, g=None: _Entmax15Exact(x, g),
)


# -- the registry's entries --------------------------------------------------------------------

_EDGE = Kink(
    at="edge of the support",
    derivative=0.0,
    note="a component with y_i = 0 exactly on the edge of the support counts as outside it",
)

register(
    Activation(
        name="entmax15",
        kind="vector",
        fast=ENTMAX15,
        # (python -m tests.bench.core_memory --calibrate's figures, with a tenth more: the bounded
        # route's thresholds, brackets and powers hold a few more arrays than softmax's)
        workspace={"value": 400.0, "vjp": 430.0},
        forward=lambda x: entmax(x, 1.5),
        derivative=lambda x, out=None: entmax_jacobian(x, 1.5, out),
        vjp=lambda x, g: entmax_vjp(x, g, 1.5),
        formula=r"\operatorname{entmax15}(x)_i = \max\bigl(\tfrac{x_i}{2} - \tau(x), 0\bigr)^2, \; \textstyle\sum_i y_i = 1",
        derivative_formula=r"J = \operatorname{diag}(s) - \frac{s s^T}{\sum_k s_k}, \; s = \sqrt{y}",
        range="[0, 1], summing to 1 along the axis, with exact zeros",
        kinks=(_EDGE,),
        typical_use=("multiclass_output",),
        notes=(
            "Between softmax and sparsemax: sparse like sparsemax, smoother in between; "
            "entmax with alpha 1.5.",
            "Worked out exactly: the threshold is a square root of a rational, so every value, "
            "Jacobian entry and VJP is decided in exact arithmetic.",
        ),
        aliases=("Entmax15", "entmax_15", "1.5-entmax"),
        reference="Peters, Niculae and Martins, Sparse sequence-to-sequence models (2019)",
        examples=(
            Example(x=(1.0, 2.0, 3.0), y=(0.0, 0.1692810861169262, 0.8307189138830738)),
            Example(x=(2.0, 0.0), y=(1.0, 0.0)),
        ),
    )
)

register(
    Activation(
        name="entmax",
        kind="vector",
        fast=ENTMAX,
        # (as entmax15's; dy/dalpha also holds its logarithms, and its sums the exact route's pieces)
        workspace={"value": 450.0, "vjp": 715.0, "parameter_jacobian": 740.0, "parameter_vjp": 1610.0},
        forward=entmax,
        derivative=entmax_jacobian,
        vjp=entmax_vjp,
        param_grads=entmax_alpha_grad,
        params=(ALPHA,),
        formula=r"\operatorname{entmax}_\alpha(x)_i = \max\bigl((\alpha - 1) x_i - \tau(x), 0\bigr)^{1/(\alpha - 1)}, \; \textstyle\sum_i y_i = 1",
        derivative_formula=(
            r"J = \operatorname{diag}(s) - \frac{s s^T}{\sum_k s_k}, \; s = y^{2 - \alpha}; \;"
            r"\frac{\partial y}{\partial \alpha} = \frac{y - \tilde y}{(\alpha - 1)^2} - "
            r"\frac{y \log y - \tilde y \sum_k y_k \log y_k}{\alpha - 1}, \; \tilde y = \frac{s}{\sum_k s_k}"
        ),
        range="[0, 1], summing to 1 along the axis; exact zeros for alpha > 1",
        kinks=(_EDGE,),
        typical_use=("multiclass_output",),
        notes=(
            "alpha = 1 is softmax, 1.5 entmax15, 2 sparsemax; the threshold tau is found by "
            "Newton's method and every result is correctly rounded all the same.",
            "dy/dalpha lets alpha be learned (adaptively sparse attention); at alpha = 1 it is the "
            "limit y_i (sum_k y_k log^2 y_k - log^2 y_i) / 2.",
            "alpha runs up to 8.  Above 2, y = u^(1/(alpha - 1)) rises steeply from the support's "
            "edge: an element a hair inside it has a visible y and Jacobian, so the support is "
            "decided exactly (sum over z_i > z_j of (z_i - z_j)^p against 1).",
        ),
        aliases=("Entmax", "EntmaxAlpha", "entmax_bisect", "EntmaxBisect"),
        reference="Peters, Niculae and Martins (2019); Correia, Niculae and Martins, Adaptively sparse transformers (2019)",
        examples=(Example(x=(1.0, 2.0, 3.0), y=(0.0, 0.1692810861169262, 0.8307189138830738)),),
    )
)
