"""Accuracy of every activation against the mpmath reference (tests/reference.py).

Run ``python -m tests.accuracy`` (``--quick`` for a subset, ``--only name,...`` for some functions,
``--help`` for the rest) to measure, for every function of the registry, every quantity (value, f',
f''; for vector functions value, Jacobian, vector-Jacobian product and, for the softmax family, the
derivative with respect to the temperature) in every output format the service serves (float64 and
float32; float16 and bfloat16 for elementwise functions with an exact definition and for the vector
functions):

- the largest error in ULPs: |computed - true| / ULP, where ULP is the unit in the last place of
  the correctly rounded true value in the format (the smallest subnormal where that is 0), so a
  correctly rounded result is within 0.5;
- the share of results that are correctly rounded: bit for bit the true value rounded to nearest
  (ties to even) in the format; the sign of a zero counts, except where the true value is exactly 0
  (for the vector functions it counts there too: an exact 0 must be +0).

The vector functions' true values come from ``reference.VECTOR_ITEMS``: exact zeros and exact
rationals decided by exact reasoning (sparsemax wholly in rational arithmetic), every other element
evaluated at rising precision until its rounding settles (:func:`reference.settled`).

The true value is the reference evaluated with mpmath and rounded to the format in integer
arithmetic (:func:`round_mp`, checked against tests/rounding.py at every run), never anything the
service computes.  It is evaluated at 60 digits, then at 120, 240, ... until two consecutive
precisions round to the same number, a value exactly halfway between two numbers of the format
never counting (see :func:`settle`).  The grids are described in tests/accuracy_grids.py.  The
output is Markdown: a table by function, quantity and format, one by grid, and the worst points.

Inputs are numbers of the output format, as the service rounds them (float32 requests are rounded
to float32, 16-bit ones to their format); a point whose true result is beyond the format is left
out (the service refuses it with a 422).  A point where the service raises, or takes longer than
the time limit, counts as not correctly rounded and is listed.

The test suite uses the older pass/fail scores below (:func:`elementwise_scores`,
:func:`vector_scores`), each score <= 1 passing:

- float64: relative error / 1e-15 (about 4.5 eps) where the true result is a
  normal float; below the normal range the absolute error must stay below
  the smallest normal (flushing to zero is allowed).
- float32: error in units of the float32 spacing at the true value.
- Near a sign change of the quantity away from x = 0 (|true| < 0.05 and the
  sign differs 0.1 max(1, |x|) to either side) the absolute error may instead
  be up to 1e-16 max(1, |x|); decaying tails such as sigmoid'(40) keep the
  relative bound.
- Vector-Jacobian products: error relative to sum_i |g_i J_ij|, the size of
  the terms summed (the dominant softmax component also relative to itself).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import json
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import mpmath as mp
import numpy as np

from service import activations
from service.activations import correct
from tests import reference, rounding
from tests.accuracy_grids import (
    dense_grid,
    find_zeros,
    random_points,
    root_points,
    sixteen_bit_inputs,
    stress_grid,
    to_format,
    vector_grid,
    window_points,
)

__all__ = ["dense_grid", "stress_grid"]  # (kept here for the tests that use them)

# -- the test suite's scores ---------------------------------------------------------------------------

TINY = float(np.finfo(np.float64).tiny)
HUGE = float(np.finfo(np.float64).max)
TINY32 = float(np.finfo(np.float32).tiny)
HUGE32 = float(np.finfo(np.float32).max)
EPS = float(np.finfo(np.float64).eps)
#: The float64 target: about 4.5 units in the last place.
REL_TOL = 1e-15

#: A second parameter set per function, checked on the dense part of the grid.
ALT_PARAMS: Mapping[str, Mapping[str, float]] = {
    "leaky_relu": {"negative_slope": 0.2},
    "hard_tanh": {"min_val": -2.0, "max_val": 3.0},
    "softshrink": {"lambda": 1.5},
    "hardshrink": {"lambda": 1.5},
    "threshold": {"threshold": 1.0, "value": -2.0},
    "prelu": {"weight": -0.5},
    "rrelu": {"lower": 0.1, "upper": 0.9},
    "elu": {"alpha": 0.5},
    "celu": {"alpha": 2.5},
    "silu": {"beta": 1.7},
    "softplus": {"beta": 3.0},
    "squareplus": {"b": 0.5},
    "snake": {"a": 25.0},
    "rational": {
        "numerator": (0.02, 0.5, 0.4, 0.07, -0.013, -0.0037),
        "denominator": (-3e-9, 0.147, 0.0, -0.0075),
    },
    "xielu": {"alpha_p": 0.3, "alpha_n": 1.7, "beta": -0.25, "eps": -1e-3},
    "softmax": {"temperature": 0.7},
    "log_softmax": {"temperature": 3.0},
    "softmin": {"temperature": 0.5},
    "swiglu": {"gate_half": 1.0},
    "geglu": {"gate_half": 1.0},
    "geglu_tanh": {"gate_half": 1.0},
    "reglu": {"gate_half": 1.0},
    "gumbel_softmax": {"temperature": 0.5, "seed": 12345.0},
    "entmax": {"alpha": 1.25},
}
#: Further parameter sets, each a row of its own.
MORE_PARAMS: Mapping[str, tuple[Mapping[str, float], ...]] = {}
ABSOLUTE_NEAR_ZERO = {"sparsemax"}


@dataclass
class Worst:
    score: float = 0.0
    at: object = None
    points: int = 0

    def update(self, score: float, at: object) -> None:
        self.points += 1
        if score > self.score or self.at is None:
            self.score, self.at = score, at


def spacing32(value: mp.mpf) -> float:
    """The gap between float32 numbers at ``value`` (2**-149 among subnormals)."""
    exponent = math.frexp(min(abs(float(value)), HUGE32))[1]
    return max(2.0 ** (exponent - 24), 2.0**-149)


def _near_sign_change(fn: Callable[[mp.mpf], mp.mpf], x: float) -> bool:
    delta = 0.1 * max(1.0, abs(x))
    if x - delta <= 0.0 <= x + delta:
        return False
    return bool(mp.sign(fn(mp.mpf(x - delta))) != mp.sign(fn(mp.mpf(x + delta))))


def score(
    computed: float,
    exact: mp.mpf,
    dtype: type,
    x: float = 0.0,
    sign_change: Callable[[], bool] = lambda: False,
) -> float:
    """Error of ``computed`` as a fraction of what the target allows (<= 1 passes)."""
    err = abs(mp.mpf(float(computed)) - exact)
    if dtype is np.float32:
        value = float(err / spacing32(exact))
    elif abs(exact) < TINY:
        value = 0.0 if err < TINY else float("inf")
    else:
        value = float(err / abs(exact)) / REL_TOL
    if value > 1.0 and abs(exact) < 0.05 and sign_change():
        value = min(value, float(err) / (1e-16 * max(1.0, abs(x))))
    return value


def elementwise_scores(
    name: str, xs: Iterable[float], params: Mapping[str, float] | None = None, dtype: type = np.float64
) -> dict[str, Worst]:
    """Worst score of the value, f' and f'' over ``xs`` (rounded to ``dtype`` first)."""
    entry = activations.get(name)
    ref = reference.ELEMENTWISE[name]
    bound = entry.bind(params)
    exact_fns = {"value": ref.value, "d1": ref.d1, "d2": ref.d2}
    limit = float(np.finfo(dtype).max)
    points, exact = [], []
    for xi in np.asarray(list(xs), dtype=dtype).astype(np.float64):
        true = {key: fn(mp.mpf(float(xi)), **bound) for key, fn in exact_fns.items()}
        # Results beyond the dtype's range are refused with a 422 (tested elsewhere).
        if all(abs(v) <= limit for v in true.values()):
            points.append(float(xi))
            exact.append(true)
    x = np.array(points)
    computed = {
        "value": entry.value(x, bound, dtype=dtype),
        "d1": entry.jacobian(x, bound, dtype=dtype),
        "d2": entry.second_derivative(x, bound, dtype=dtype),
    }
    worst = {key: Worst() for key in computed}
    for i, xf in enumerate(points):
        for key, values in computed.items():
            fn = exact_fns[key]
            s = score(
                values[i],
                exact[i][key],
                dtype,
                xf,
                lambda fn=fn, xf=xf: _near_sign_change(lambda t: fn(t, **bound), xf),  # type: ignore[misc]
            )
            worst[key].update(s, xf)
    return worst


def vector_cases(name: str) -> list[np.ndarray]:
    rng = np.random.default_rng(20261122)
    cases = [10.0 * rng.standard_normal(50) for _ in range(6)]
    cases += [100.0 * rng.standard_normal(8) for _ in range(4)]
    cases += [rng.standard_normal(6) for _ in range(4)]
    cases += [
        np.array(v, dtype=np.float64)
        for v in (
            [1.0, 2.0, 3.0, 0.5],
            [40.0, 0.0],
            [1000.0, 1000.0],
            [700.0, -700.0, 0.0, 1.0],
            [-1e308, 1e308],
            [1e-300, -1e-300, 0.0, 5e-324],
            [0.0] * 6,
            [5.0, 5.0, 5.0],
            [0.5, 0.25, 0.0],
        )
    ]
    if name in reference.HALVING:
        cases = [c for c in cases if c.size % 2 == 0]
    return cases


def vector_scores(
    name: str,
    cases: Sequence[np.ndarray],
    params: Mapping[str, float] | None = None,
    dtype: type = np.float64,
) -> dict[str, Worst]:
    """Worst scores of a vector function: value, Jacobian and vector-Jacobian product."""
    entry = activations.get(name)
    ref = reference.VECTOR[name]
    bound = entry.bind(params)
    rng = np.random.default_rng(7)
    worst = {key: Worst() for key in ("value", "jacobian", "vjp", "vjp_dominant")}
    limit = float(np.finfo(dtype).max)
    for x in cases:
        if np.max(np.abs(x)) > limit:
            continue
        x = x.astype(dtype).astype(np.float64)
        label = "[" + ", ".join(f"{v:.3g}" for v in x[:3]) + f", ...] (n={x.size})"
        big = max(1.0, float(np.max(np.abs(x))))
        near = (lambda: True) if name in ABSOLUTE_NEAR_ZERO else (lambda: False)
        y_true = ref.value(list(x), **bound)
        if any(abs(v) > limit for v in y_true):
            continue  # refused with a 422, tested elsewhere
        for got, true in zip(entry.value(x, bound, dtype=dtype), y_true, strict=True):
            worst["value"].update(score(got, true, dtype, big, near), label)
        jac_true = ref.jacobian(list(x), **bound)
        jac = entry.jacobian(x, bound, dtype=dtype)
        for row_got, row_true in zip(jac, jac_true, strict=True):
            for got, true in zip(row_got, row_true, strict=True):
                worst["jacobian"].update(score(got, true, dtype, big, near), label)
        if dtype is not np.float64:
            continue
        g = rng.standard_normal(len(y_true))
        got_vjp = entry.vector_jacobian_product(x, g, bound)
        true_vjp = reference.vjp(jac_true, g)
        for j, true in enumerate(true_vjp):
            size = mp.fsum(abs(mp.mpf(g[i]) * jac_true[i][j]) for i in range(len(g)))
            if size >= TINY:
                err = abs(mp.mpf(float(got_vjp[j])) - true)
                worst["vjp"].update(float(err / size) / REL_TOL, label)
        if name in ("softmax", "softmin"):
            k = int(np.argmax(entry.value(x, bound)))
            worst["vjp_dominant"].update(score(got_vjp[k], true_vjp[k], dtype), label)
    return {k: w for k, w in worst.items() if w.points}


# -- the true value, rounded to a format ------------------------------------------------------------------

FORMATS = ("float64", "float32", "float16", "bfloat16")
SIXTEEN = ("float16", "bfloat16")
SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
#: Elementwise quantities (named as in service.activations.correct) and vector ones.
ELEMENTWISE_QUANTITIES = ("value", "derivative", "second_derivative")
#: dydT: the derivative with respect to the temperature (softmax, log_softmax, softmin).
VECTOR_QUANTITIES = ("value", "jacobian", "vjp", "dydT")
LABELS = {
    "value": "f",
    "derivative": "f′",
    "second_derivative": "f″",
    "jacobian": "Jacobian",
    "vjp": "VJP",
    "dydT": "dy/dT",
}

START_DPS = 60
#: Digits at which a value that still moves is taken as it is (and counted as undecided).
MAX_DPS = START_DPS * 2**7


def round_mp(value: mp.mpf, fmt: str) -> tuple[float, bool]:
    """``value`` rounded to nearest, ties to even, in ``fmt`` (``inf`` beyond its range), and whether it
    lies exactly halfway between two numbers of the format."""
    precision, qmin, emax = rounding.FORMATS[fmt]
    sign, man, exp, bc = value._mpf_
    if not man:
        if value != 0:
            raise ValueError(f"not a finite number: {value}")
        return 0.0, False
    man, exp = int(man), int(exp)
    negative = bool(sign)
    top = exp + int(bc) - 1  # 2^top <= |value| < 2^(top + 1)
    if top > emax + 1:
        return (-math.inf if negative else math.inf), False
    if top < qmin - 2:  # below a quarter of the smallest subnormal
        return (-0.0 if negative else 0.0), False
    quantum = max(top - precision + 1, qmin)
    midpoint = False
    if exp >= quantum:
        whole = man << (exp - quantum)
    else:
        shift = quantum - exp
        whole = man >> shift
        rest = man - (whole << shift)
        half = 1 << (shift - 1)
        midpoint = rest == half
        if rest > half or (midpoint and whole & 1):
            whole += 1
    if quantum + whole.bit_length() - 1 > emax:
        return (-math.inf if negative else math.inf), False
    out = math.ldexp(float(whole), quantum)  # exact: whole has at most 53 bits
    return (-out if negative else out), midpoint


def check_rounding(samples: int = 3000) -> None:
    """round_mp agrees with tests/rounding.py (which rounds the exact rational) on random values,
    ties, subnormals and the edges of each format's range."""
    rng = random.Random(5)
    with mp.workdps(START_DPS):
        for fmt in FORMATS:
            precision, qmin, emax = rounding.FORMATS[fmt]
            for i in range(samples):
                top = rng.randint(qmin - 4, emax + 1)
                bits = rng.choice([precision, precision + 1, precision + 2, 200])
                man = rng.getrandbits(bits) | (1 << (bits - 1))
                if i % 5 == 0:  # a tie, or next to one
                    man = (man >> 3 << 3) | (1 << 2) | rng.choice([0, 1, 0])
                v = mp.mpf(man) * mp.mpf(2) ** (top - bits + 1) * rng.choice([-1, 1])
                got, _ = round_mp(v, fmt)
                want = rounding.round_to(rounding.exact(v), fmt)
                if not (got == want and math.copysign(1, got) == math.copysign(1, want)):
                    raise AssertionError(f"round_mp({v}, {fmt}) = {got!r}, tests/rounding.py: {want!r}")


def ulp_exponent(rounded: float, fmt: str) -> int:
    """e such that 2^e is the unit in the last place of a number of ``fmt``: its quantum (the smallest
    subnormal at 0)."""
    precision, qmin, _ = rounding.FORMATS[fmt]
    if rounded == 0:
        return qmin
    return max(math.frexp(rounded)[1] - precision, qmin)


def _same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


class Truth(NamedTuple):
    value: mp.mpf  # at the last precision evaluated
    rounded: float  # correctly rounded to the format
    #: False: at MAX_DPS digits it still moved, or still lay exactly halfway between two numbers of
    #: the format (then it is rounded to even: a true tie, or one the reference cannot break).
    decided: bool


def settle(compute: Callable[[], Sequence[mp.mpf]], fmt: str) -> list[Truth]:
    """Each number ``compute()`` returns, correctly rounded to ``fmt``: evaluated at START_DPS digits
    and at twice as many, and again at twice as many, until two consecutive precisions round to the
    same number.

    A value exactly halfway between two numbers of the format never counts: it may be a tie only at
    that precision (x - tanh x = -4085 - 2e-8172 at x = -4086 is -4085 to 3500 digits, x Phi(x) is x/2
    to 300 digits at x = 5e-324).  A number that rounds to 0 at both precisions but changes sign
    between them, or whose logarithm changes by more than 2^-20 of itself, is the reference's rounding
    error about an exact 0 (terms that cancel exactly, as sparsemax's 1 - 1/3 - 1/3 - 1/3): its true
    value is taken to be 0.  (A true value far below the format, e^-800 or e^-1e300, keeps its sign
    and its logarithm.)
    """
    dps = START_DPS
    with mp.workdps(dps):
        before = list(compute())
    rounded: list[float | None] = []
    for v in before:
        r, midpoint = round_mp(v, fmt)
        rounded.append(None if midpoint else r)
    out: list[Truth | None] = [None] * len(before)
    pending = set(range(len(before)))
    while pending:
        dps *= 2
        with mp.workdps(dps):
            values = list(compute())
        for i in sorted(pending):
            r, midpoint = round_mp(values[i], fmt)
            previous = rounded[i]
            stable = not midpoint and previous is not None and _same(r, previous)
            if stable or dps >= MAX_DPS:
                value = values[i]
                if r == 0 and value != 0 and _rounding_noise(value, before[i]):
                    value = mp.mpf(0)
                out[i] = Truth(value, r, stable)
                pending.discard(i)
            else:
                before[i], rounded[i] = values[i], None if midpoint else r
    return [t for t in out if t is not None]


def _rounding_noise(value: mp.mpf, before: mp.mpf) -> bool:
    """Whether two evaluations of a number at different precisions are rounding errors about 0."""
    if before == 0 or mp.sign(value) != mp.sign(before):
        return True
    log_value, log_before = mp.log(abs(value)), mp.log(abs(before))
    return bool(abs(log_value - log_before) > abs(log_value) * mp.mpf(2) ** -20)


def _picked(fn: Callable[..., Any]) -> tuple[Callable[..., Any], int] | None:
    """(g, i) when ``fn`` is ``lambda x, **p: g(x, **p)[i]`` (reference entries built from one
    function of all three quantities)."""
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    if set(names) != {"fn", "i"} or fn.__closure__ is None:
        return None
    cells = dict(zip(names, (c.cell_contents for c in fn.__closure__), strict=True))
    return cells["fn"], cells["i"]


def elementwise_reference(name: str) -> Callable[..., list[mp.mpf]]:
    """x, params -> [f, f', f''] from tests/reference.py (one call where the entry computes all three
    together)."""
    ref = reference.ELEMENTWISE[name]
    fns = (ref.value, ref.d1, ref.d2)
    picked = [_picked(f) for f in fns]
    if all(p is not None for p in picked):
        bases = {id(p[0]) for p in picked if p is not None}
        if len(bases) == 1 and [p[1] for p in picked if p is not None] == [0, 1, 2]:
            triple = picked[0][0]  # type: ignore[index]
            return lambda x, **params: list(triple(x, **params))
    return lambda x, **params: [f(x, **params) for f in fns]


# -- asking the service, with a time limit ------------------------------------------------------------


class TimeLimit(BaseException):
    """Raised in the middle of a call that takes too long (a BaseException: no `except Exception` in
    the code under test swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reason(exc: BaseException, seconds: float) -> str:
    if isinstance(exc, TimeLimit):
        return f"no result within {seconds:g} s"
    return f"{type(exc).__name__}: {str(exc)[:100]}"


#: (points per call, seconds per call and per point in it, seconds per point when a call fails): the
#: 16-bit formats are evaluated input by input with MPFR (about 0.1 ms each), float64 and float32 with
#: NumPy.
LIMITS = {"sixteen": (400, 0.5, 0.003, 0.5), "numpy": (1 << 20, 60.0, 0.0, 10.0)}


def guarded(
    call: Callable[[np.ndarray], np.ndarray], xs: np.ndarray, kind: str
) -> tuple[np.ndarray, list[str]]:
    """``call`` on ``xs`` (sorted) in chunks, each under a time limit, and point by point in a chunk
    that fails.  Returns the results (NaN where there is none) and for each point why there is none
    ("" where there is one).

    Where two inputs in a row exceed the limit, the inputs after them are probed at growing distances
    until one gets a result, and the end of the slow stretch is found by bisection; the inputs of the
    stretch not tried are given up ("skipped")."""
    chunk, per_call, per_element, per_point = LIMITS[kind]
    n = len(xs)
    got = np.full(n, np.nan)
    why = [""] * n

    def one(k: int) -> bool:
        """A result (or an exception) for xs[k] within the limit."""
        try:
            with time_limit(per_point):
                got[k] = float(np.asarray(call(xs[k : k + 1]), dtype=np.float64)[0])
            return True
        except (TimeLimit, Exception) as exc:
            why[k] = _reason(exc, per_point)
            return not isinstance(exc, TimeLimit)

    i = 0
    while i < n:
        j = min(n, i + chunk)
        try:
            with time_limit(per_call + per_element * (j - i)):
                got[i:j] = np.asarray(call(xs[i:j]), dtype=np.float64)
            i = j
            continue
        except (TimeLimit, Exception):
            pass
        k, late = i, 0
        while k < j and late < 2:
            late = 0 if one(k) else late + 1
            k += 1
        if late < 2:
            i = j
            continue
        first_slow, bad, step = k - 2, k - 1, 1
        good = bad + step
        while good < n and not one(good):
            bad, step = good, 2 * step
            good = bad + step
        good = min(good, n)
        while good - bad > 1:
            mid = (bad + good) // 2
            if one(mid):
                good = mid
            else:
                bad = mid
        for m in range(first_slow, good):
            if not why[m] and np.isnan(got[m]):
                why[m] = f"skipped: among inputs that take over {per_point:g} s"
        i = good
    return got, why


def elementwise_service(
    entry: activations.Activation, quantity: str, bound: Mapping[str, float], fmt: str
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    if fmt in SIXTEEN:
        spec = correct.FORMATS[fmt]
        return (lambda a: correct.sixteen_bit(entry, quantity, a, bound, spec)), "sixteen"
    dtype = np.float64 if fmt == "float64" else np.float32
    method = {
        "value": entry.value,
        "derivative": entry.jacobian,
        "second_derivative": entry.second_derivative,
    }[quantity]
    return (lambda a: method(a, bound, dtype=dtype)), "numpy"


# -- what is measured ---------------------------------------------------------------------------------------


class Point(NamedTuple):
    ulps: float
    where: str
    got: float
    want: float


WORST_KEPT = 5


@dataclass
class Stats:
    """Results of one quantity in one format on one grid."""

    points: int = 0
    correct: int = 0
    max_ulps: float = 0.0
    #: Equal to the correctly rounded value but for the sign of a zero.
    zero_sign: int = 0
    #: No result (an exception or the time limit): counted in ``points``, not correct.
    failed: int = 0
    #: True result beyond the format: refused by the service, not counted.
    refused: int = 0
    #: At MAX_DPS digits the reference still moved, or still lay halfway (see :class:`Truth`).
    undecided: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    worst: list[Point] = field(default_factory=list)

    def add(
        self,
        truth: Truth,
        got: float,
        fmt: str,
        where: str | Callable[[], str],
        reason: str = "",
        signed_zeros: bool = False,
    ) -> None:
        """One result; ``where`` (or what it returns) names the point.  ``signed_zeros``: an exact 0
        must be +0 (the vector functions' contract) to count as correctly rounded."""
        self.points += 1
        self.undecided += not truth.decided
        if reason:
            self.failed += 1
            self.reasons[reason] += 1
            return
        want = truth.rounded
        if got == want and (want != 0 or (truth.value == 0 and not signed_zeros) or _same(got, want)):
            self.correct += 1
        elif got == want:
            self.zero_sign += 1
        if math.isfinite(got):
            err = float(mp.ldexp(abs(mp.mpf(got) - truth.value), -ulp_exponent(want, fmt)))
            if err == 0.5 and got != want and truth.decided:  # above half an ULP by less than float64 shows
                err = math.nextafter(0.5, 1.0)
        else:
            err = math.inf
        self.max_ulps = max(self.max_ulps, err)
        if len(self.worst) < WORST_KEPT or err > self.worst[0].ulps:
            self._note(Point(err, where if isinstance(where, str) else where(), got, want))

    def _note(self, point: Point) -> None:
        if len(self.worst) < WORST_KEPT:
            heapq.heappush(self.worst, point)
        elif point.ulps > self.worst[0].ulps:
            heapq.heapreplace(self.worst, point)

    def merge(self, other: Stats) -> None:
        self.points += other.points
        self.correct += other.correct
        self.zero_sign += other.zero_sign
        self.failed += other.failed
        self.refused += other.refused
        self.undecided += other.undecided
        self.reasons.update(other.reasons)
        self.max_ulps = max(self.max_ulps, other.max_ulps)
        for p in other.worst:
            self._note(p)


# -- the work, in tasks ----------------------------------------------------------------------------------

GRIDS = {
    "stress": "(a) stress grid",
    "windows": "(b) exp windows",
    "roots": "(c) zeros of f′, f″",
    "random": "(d) random",
    "vectors": "(e) vectors",
    "all16": "(f) 16-bit inputs",
}


@dataclass(frozen=True)
class Row:
    """A function with its default parameters (``params`` empty) or with other ones."""

    name: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        shown = (
            f"{k}=({', '.join(f'{u:g}' for u in v)})" if isinstance(v, tuple) else f"{k}={v:g}"
            for k, v in self.params
        )
        return f"{self.name} ({', '.join(shown)})"


@dataclass
class Task:
    row: Row
    grid: str
    fmt: str
    xs: np.ndarray | None = None
    vectors: list[tuple[int, np.ndarray, np.ndarray]] | None = None
    cost: float = 0.0


Key = tuple[str, str, str, str]  # row label, grid, format, quantity


def run_task(task: Task) -> tuple[Task, dict[str, Stats], float]:
    start = time.perf_counter()
    entry = activations.get(task.row.name)
    bound = entry.bind(dict(task.row.params))
    if entry.kind == "elementwise":
        out = _elementwise_task(entry, bound, task)
    else:
        out = _vector_task(entry, bound, task)
    return task, out, time.perf_counter() - start


def _elementwise_task(
    entry: activations.Activation, bound: Mapping[str, float], task: Task
) -> dict[str, Stats]:
    assert task.xs is not None
    evaluate = elementwise_reference(entry.name)
    xs = task.xs
    truths = [
        settle(lambda x=float(x): evaluate(mp.mpf(x), **bound), task.fmt)  # type: ignore[misc]
        for x in xs
    ]
    out = {}
    for i, quantity in enumerate(ELEMENTWISE_QUANTITIES):
        stats = Stats()
        keep = [k for k, t in enumerate(truths) if math.isfinite(t[i].rounded)]
        stats.refused = len(xs) - len(keep)
        call, kind = elementwise_service(entry, quantity, bound, task.fmt)
        got, why = guarded(call, xs[keep], kind)
        for k, value, reason in zip(keep, got, why, strict=True):
            stats.add(truths[k][i], float(value), task.fmt, lambda k=k: f"x = {float(xs[k])!r}", reason)
        out[quantity] = stats
    return out


def _vector_label(index: int, x: np.ndarray) -> str:
    shown = ", ".join(repr(float(v)) for v in x[:4]) + (", …" if x.size > 4 else "")
    return f"(e) #{index}: x = [{shown}] (n = {x.size})" if index >= 0 else f"x = [{shown}]"


def _where(label: str, quantity: str, k: int, n: int, g: Sequence[float]) -> str:
    if quantity == "jacobian":
        return f"{label}, component [{k // n}, {k % n}]"
    if quantity == "vjp":
        shown = ", ".join(repr(v) for v in g[:4]) + (", …" if len(g) > 4 else "")
        return f"{label}, g = [{shown}], component [{k}]"
    return f"{label}, component [{k}]"


def _vector_call(
    entry: activations.Activation,
    bound: Mapping[str, float],
    fmt: str,
    quantity: str,
    x: np.ndarray,
    g: np.ndarray,
) -> np.ndarray:
    """The service's ``quantity`` at the vector x (and g, y's length): float64 and float32 through the
    core's API, float16 and bfloat16 through the operations layer that /activate and /derivative run."""
    if fmt in SIXTEEN:
        from service import operations
        from service.schemas import ActivateRequest, DerivativeRequest

        limits = operations.Limits(1 << 30, 1 << 24, 1 << 24)
        body: dict[str, Any] = {
            "activation": entry.name,
            "x": x.tolist(),
            "dtype": fmt,
            "params": dict(bound),
        }
        if quantity == "value":
            payload = operations.plan_activate(ActivateRequest.model_validate(body), limits).run()
            return np.asarray(payload["y"], dtype=np.float64)
        if quantity == "vjp":
            body["grad"] = g.tolist()
        if quantity == "dydT":
            body["wrt"] = "params"
        payload = operations.plan_derivative(DerivativeRequest.model_validate(body), limits).run()
        field = {"jacobian": "dydx", "vjp": "grad_x", "dydT": "dydparams"}[quantity]
        got = payload[field][_parameter(entry)] if quantity == "dydT" else payload[field]
        return np.asarray(got, dtype=np.float64)
    dtype = np.float64 if fmt == "float64" else np.float32
    xd, gd = x.astype(dtype), g.astype(dtype)
    if quantity == "value":
        return entry.value(xd, bound, -1, dtype)
    if quantity == "jacobian":
        return entry.jacobian(xd, bound, -1, dtype)
    if quantity == "vjp":
        return entry.vector_jacobian_product(xd, gd, bound, -1, dtype)
    return entry.parameter_jacobian(xd, bound, -1, dtype)[_parameter(entry)]


def _parameter(entry: activations.Activation) -> str:
    """The parameter whose derivative is the "dydT" quantity: the temperature, or entmax's alpha."""
    return entry.learnable[0].name


def _label(name: str, quantity: str) -> str:
    return "dy/dα" if quantity == "dydT" and name == "entmax" else LABELS[quantity]


def _vector_task(entry: activations.Activation, bound: Mapping[str, float], task: Task) -> dict[str, Stats]:
    """The vector functions against tests/reference.py's VECTOR_ITEMS: exact zeros and exact rationals
    decided exactly, every other element evaluated at rising precision until its rounding settles
    (:func:`reference.settled`).  An exact 0 counts as correctly rounded only as +0."""
    assert task.vectors is not None
    items = reference.VECTOR_ITEMS[entry.name]
    quantities = VECTOR_QUANTITIES if items.dydt is not None else VECTOR_QUANTITIES[:3]
    out = {q: Stats() for q in quantities}
    for index, x, g in task.vectors:
        xv, gv = [float(v) for v in x], [float(v) for v in g]
        parts: dict[str, list[reference.Item]] = {
            "value": items.value(xv, **bound),
            "jacobian": items.jacobian(xv, **bound),
            "vjp": items.vjp(xv, gv, **bound),
        }
        if items.dydt is not None:
            parts["dydT"] = items.dydt(xv, **bound)
        flat = [v for part in parts.values() for v in part]
        undecided: set[int] = set()
        values, rounded = reference.settled(flat, [task.fmt], undecided)
        truths = []
        with mp.workdps(START_DPS):
            for k, v in enumerate(values):
                value = mp.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v
                truths.append(Truth(value, rounded[task.fmt][k], k not in undecided))
        n = x.size
        label = _vector_label(index, x)
        start = 0
        for quantity, part in parts.items():
            want = truths[start : start + len(part)]
            start += len(part)
            stats = out[quantity]
            if not all(math.isfinite(t.rounded) for t in want):
                stats.refused += len(want)
                continue
            reason = ""
            try:
                with time_limit(LIMITS["numpy"][1]):
                    got = np.asarray(_vector_call(entry, bound, task.fmt, quantity, x, g), np.float64).ravel()
            except (TimeLimit, Exception) as exc:
                got, reason = np.full(len(want), np.nan), _reason(exc, LIMITS["numpy"][1])
            if got.size != len(want):
                got, reason = np.full(len(want), np.nan), f"{got.size} results, not {len(want)}"
            for k, (t, value) in enumerate(zip(want, got, strict=True)):
                where = functools.partial(_where, label, quantity, k, n, gv)
                stats.add(t, float(value), task.fmt, where, reason, signed_zeros=True)
    return out


# -- what to run --------------------------------------------------------------------------------------------

#: Relative cost of the reference, to hand out the largest tasks first.
HEAVY = {"gelu": 6, "gelu_tanh": 5, "mish": 5, "silu": 4, "quick_gelu": 4, "tanhshrink": 2}
POINTS_PER_TASK = 400


@dataclass
class Plan:
    quick: bool
    stride16: int
    vectors: int
    random: tuple[int, int]
    windows: int
    alternative_params: bool
    grids: tuple[str, ...]


def plan_for(quick: bool, stride16: int) -> Plan:
    if quick:
        return Plan(True, 0, 30, (200, 200), 150, False, ("windows", "roots", "random", "vectors"))
    return Plan(False, stride16, 200, (2000, 2000), 300, True, tuple(GRIDS))


def rows_for(names: Sequence[str], plan: Plan) -> list[Row]:
    rows = []
    for name in names:
        rows.append(Row(name))
        if plan.alternative_params and name in ALT_PARAMS:
            rows.append(Row(name, tuple(ALT_PARAMS[name].items())))
            rows += [Row(name, tuple(more.items())) for more in MORE_PARAMS.get(name, ())]
    return rows


def _formats(entry: activations.Activation) -> tuple[str, ...]:
    if entry.kind == "elementwise" and entry.exact is not None:
        return FORMATS
    return ("float64", "float32")


def _chunks(task: Task, xs: np.ndarray, weight: float) -> Iterator[Task]:
    for start in range(0, xs.size, POINTS_PER_TASK):
        part = xs[start : start + POINTS_PER_TASK]
        yield Task(task.row, task.grid, task.fmt, xs=part, cost=weight * part.size)


def elementwise_tasks(row: Row, plan: Plan, zeros: Mapping[str, Sequence[float]]) -> Iterator[Task]:
    entry = activations.get(row.name)
    bound = entry.bind(dict(row.params))
    weight = HEAVY.get(row.name, 1)
    default = not row.params  # the stress grid and the 16-bit inputs: default parameters only
    base: dict[str, np.ndarray] = {}
    if "windows" in plan.grids:
        base["windows"] = window_points(row.name, bound, plan.windows)
    if "roots" in plan.grids:
        base["roots"] = root_points(sorted({z for zs in zeros.values() for z in zs}))
    if "random" in plan.grids:
        base["random"] = random_points(*plan.random)
    for fmt in _formats(entry):
        grids = dict(base)
        if "stress" in plan.grids and default and fmt not in SIXTEEN:
            grids["stress"] = stress_grid(np.float64 if fmt == "float64" else np.float32)
        for grid, xs in grids.items():
            yield from _chunks(
                Task(row, grid, fmt), to_format(xs, fmt), weight * (3 if fmt in SIXTEEN else 1)
            )
        if "all16" in plan.grids and default and fmt in SIXTEEN:
            xs = sixteen_bit_inputs(fmt, plan.stride16)
            yield from _chunks(Task(row, "all16", fmt), xs, weight * 3)


def vector_tasks(row: Row, plan: Plan) -> Iterator[Task]:
    if "vectors" not in plan.grids:
        return
    cases = vector_grid(row.name, plan.vectors)
    count = len(cases)
    for fmt in FORMATS:
        batch: list[tuple[int, np.ndarray, np.ndarray]] = []
        cost = 0.0
        for i, (x, g) in enumerate(cases):
            index = i if i < plan.vectors else -1  # the audit's cases: shown in full
            if fmt != "float64":  # rounded once to the format, as the service rounds its inputs
                x, g = _rounded_to(x, fmt), _rounded_to(g, fmt)
            if np.isfinite(x).all() and np.isfinite(g).all():
                batch.append((index, x, g))
                cost += 0.1 * x.size * (x.size + 2) * (3 if fmt in SIXTEEN else 1)
            if batch and (cost > 4000 or i == count - 1):
                yield Task(row, "vectors", fmt, vectors=batch, cost=cost)
                batch, cost = [], 0.0


def _rounded_to(a: np.ndarray, fmt: str) -> np.ndarray:
    """Each element rounded once to ``fmt`` (inf beyond its range), by tests/rounding.py."""
    return np.array([rounding.round_to(Fraction(float(v)), fmt) for v in a], dtype=np.float64)


def zeros_of(row: Row) -> tuple[Row, dict[str, list[float]]]:
    entry = activations.get(row.name)
    return row, find_zeros(row.name, entry.bind(dict(row.params)))


# -- running -------------------------------------------------------------------------------------------------


def run(
    tasks: Sequence[Task], jobs: int, progress: Callable[[str], None]
) -> tuple[dict[Key, Stats], dict[str, float]]:
    results: dict[Key, Stats] = {}
    seconds: Counter[str] = Counter()
    ordered = sorted(tasks, key=lambda t: -t.cost)
    total = sum(t.cost for t in ordered) or 1.0
    done, shown, start = 0.0, 0, time.perf_counter()
    for task, out, spent in _map(run_task, ordered, jobs):
        seconds[task.grid] += spent
        for quantity, stats in out.items():
            results.setdefault((task.row.label, task.grid, task.fmt, quantity), Stats()).merge(stats)
        done += task.cost
        if done / total * 10 >= shown + 1:
            shown = int(done / total * 10)
            progress(f"{10 * shown}% of the work, {time.perf_counter() - start:.0f} s")
    return results, dict(seconds)


def _map(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int) -> Iterator[Any]:
    if jobs <= 1:
        yield from map(fn, items)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap_unordered(fn, items)


# -- the report ----------------------------------------------------------------------------------------------


def _ulps(u: float) -> str:
    if math.isinf(u):
        return "∞"
    if 0.5 < u < 0.505:
        return ">0.50"  # not correctly rounded, if only by a hair
    if u < 10:
        return f"{u:.2f}"
    if u < 1e5:
        return f"{u:.0f}"
    mantissa, exponent = f"{u:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _percent(stats: Stats) -> str:
    if stats.correct == stats.points:
        return "100"
    return f"{math.floor(10000 * stats.correct / stats.points) / 100:.2f}"


def _cell(stats: Stats | None) -> str:
    if stats is None or stats.points == 0:
        return "—"
    mark = "†" if stats.failed else ""
    return f"{_ulps(stats.max_ulps)} / {_percent(stats)}{mark}"


def _merged(
    results: Mapping[Key, Stats], by: Callable[[Key], tuple[str, ...]]
) -> dict[tuple[str, ...], Stats]:
    """The results merged into groups named by ``by``."""
    out: dict[tuple[str, ...], Stats] = {}
    for key, stats in results.items():
        out.setdefault(by(key), Stats()).merge(stats)
    return out


DIGITS = {"float64": 17, "float32": 9, "float16": 5, "bfloat16": 4}


def _number(v: float, fmt: str) -> str:
    if math.isnan(v):
        return "—"
    return repr(v) if fmt == "float64" else f"{v:.{DIGITS[fmt]}g}"


def report(
    results: Mapping[Key, Stats],
    rows: Sequence[Row],
    zeros: Mapping[Row, Mapping[str, Sequence[float]]],
    plan: Plan,
    meta: Mapping[str, Any],
) -> str:
    out: list[str] = []
    w = out.append
    elementwise = [r for r in rows if activations.get(r.name).kind == "elementwise"]
    vector = [r for r in rows if activations.get(r.name).kind == "vector"]
    grids = [g for g in GRIDS if any(k[1] == g for k in results)]
    overall = _merged(results, lambda k: (k[0], k[2], k[3]))  # row, format, quantity
    per_grid = _merged(results, lambda k: (k[0], k[1]))

    w("## Accuracy: largest error in ULPs / % correctly rounded")
    w("")
    w(
        f"`python -m tests.accuracy{' --quick' if plan.quick else ''}` on {meta['revision']}: "
        f"{meta['wall']:.0f} s wall time with {meta['jobs']} process{'es' if meta['jobs'] != 1 else ''} "
        f"({meta['cpu']:.0f} s of work). Each cell: the largest error in ULPs of the format (of the "
        "correctly rounded true value; a correctly rounded result is within 0.5) / the percentage of "
        "results bit-equal to the correctly rounded true value, over all grids. † some inputs got no "
        "result (listed below)."
    )
    w("")
    if elementwise:
        fmts = FORMATS
        head = [f"{LABELS[q]} {SHORT[f]}" for q in ELEMENTWISE_QUANTITIES for f in fmts]
        w("| function | " + " | ".join(head) + " |")
        w("|---" * (len(head) + 1) + "|")
        for row in elementwise:
            cells = [_cell(overall.get((row.label, f, q))) for q in ELEMENTWISE_QUANTITIES for f in fmts]
            w(f"| {row.label} | " + " | ".join(cells) + " |")
        w("")
    if vector:
        w(
            "Vector functions (grid e): each element of the value, the Jacobian, the vector-Jacobian "
            "product and the derivative with respect to the temperature (entmax: to alpha), against tests/reference.py's "
            "exact zeros and rationals and settled mpmath values; an exact 0 counts only as +0."
        )
        w("")
        w("| function | quantity | " + " | ".join(SHORT[f] for f in FORMATS) + " |")
        w("|---" * (len(FORMATS) + 2) + "|")
        for row in vector:
            for q in VECTOR_QUANTITIES:
                cells = [overall.get((row.label, f, q)) for f in FORMATS]
                if all(c is None or c.points == 0 for c in cells) and not any(
                    c is not None and c.refused for c in cells
                ):
                    continue
                w(f"| {row.label} | {_label(row.name, q)} | " + " | ".join(_cell(c) for c in cells) + " |")
        w("")
    missing = [r.name for r in elementwise if activations.get(r.name).exact is None and not r.params]
    if missing:
        w(f"float16 and bfloat16 not measured for {', '.join(missing)}: no exact definition in the registry.")
        w("")

    w("### By grid")
    w("")
    w(
        "Each cell: largest error in ULPs / % correctly rounded over all quantities and formats of the grid, "
        "and where the largest error is."
    )
    w("")
    w("| function | " + " | ".join(GRIDS[g] for g in grids) + " |")
    w("|---" * (len(grids) + 1) + "|")
    for row in rows:
        cells = []
        for grid in grids:
            stats = per_grid.get((row.label, grid))
            where = ""
            if stats is not None and stats.points and stats.max_ulps > 0.5:
                (_, _, f, q), _ = max(
                    ((k, s) for k, s in results.items() if k[0] == row.label and k[1] == grid),
                    key=lambda ks: ks[1].max_ulps,
                )
                where = f" ({LABELS[q]} {SHORT[f]})"
            cells.append(_cell(stats) + where)
        w(f"| {row.label} | " + " | ".join(cells) + " |")
    w("")
    w("Results compared per grid (points × quantities × formats) and the seconds of work they took:")
    w("")
    for grid in grids:
        n = sum(s.points for k, s in results.items() if k[1] == grid)
        w(f"- {GRIDS[grid]}: {n:,} results, {meta['seconds'].get(grid, 0):.0f} s. {GRID_NOTES[grid](plan)}")
    w("")

    if any(z for zs in zeros.values() for z in zs.values()):
        w("### Zeros of f′ and f″ away from 0 (grid c)")
        w("")
        w("| function | f′ = 0 | f″ = 0 |")
        w("|---|---|---|")
        for row, z in zeros.items():
            if any(z.values()):
                first = ", ".join(f"{v:.10g}" for v in z["derivative"]) or "—"
                second = ", ".join(f"{v:.10g}" for v in z["second_derivative"]) or "—"
                w(f"| {row.label} | {first} | {second} |")
        w("")

    worst: dict[tuple[str, str, str], tuple[Point, str]] = {}
    for (label, grid, fmt, quantity), stats in results.items():
        for p in stats.worst:
            key = (label, quantity, fmt)
            if p.ulps > 0.5 and (key not in worst or p.ulps > worst[key][0].ulps):
                worst[key] = (p, grid)
    w("### Worst cases")
    w("")
    if worst:
        w("The worst point of each function, quantity and format, the 15 largest errors:")
        w("")
        w("| function | quantity | format | grid | input | computed | correctly rounded | error (ULP) |")
        w("|---|---|---|---|---|---|---|---|")
        ranked = sorted(worst.items(), key=lambda kv: -kv[1][0].ulps)[:15]
        for (label, quantity, fmt), (p, grid) in ranked:
            w(
                f"| {label} | {LABELS[quantity]} | {fmt} | {GRIDS[grid][:3]} | {p.where} | "
                f"{_number(p.got, fmt)} | {_number(p.want, fmt)} | {_ulps(p.ulps)} |"
            )
    else:
        w("Every result is within 0.5 ULP of the true value.")
    w("")

    failures = {k: s for k, s in results.items() if s.failed}
    if failures:
        w("### Inputs without a result (†)")
        w("")
        for (label, grid, fmt, quantity), stats in sorted(failures.items()):
            reasons = "; ".join(f"{n} × {r}" for r, n in stats.reasons.most_common(3))
            where = f"{label} {LABELS[quantity]} {fmt}, {GRIDS[grid]}"
            w(f"- {where}: {stats.failed} of {stats.points}: {reasons}")
        w("")
    notes = []
    zero_sign = {k: s.zero_sign for k, s in results.items() if s.zero_sign}
    if zero_sign:
        parts = Counter[tuple[str, str, str]]()
        for (label, _, fmt, quantity), n in zero_sign.items():
            parts[(label, quantity, fmt)] += n
        listed = ", ".join(
            f"{label} {LABELS[q]} {SHORT[f]} ({n})" for (label, q, f), n in sorted(parts.items())
        )
        notes.append(f"Not correctly rounded only by the sign of a zero: {listed}.")
    undecided = _merged(results, lambda k: (k[0], k[3], k[2]))
    listed = ", ".join(
        f"{label} {LABELS[q]} {SHORT[f]} ({s.undecided})"
        for (label, q, f), s in sorted(undecided.items())
        if s.undecided
    )
    notes.append(
        f"True values exactly halfway between two numbers of the format at every precision up to {MAX_DPS} "
        "digits, taken as ties (rounded to even): the exact ties of the piecewise functions, and any the "
        f"reference cannot break (or still moving there): {listed}."
        if listed
        else f"Every true value settled, none exactly halfway (at most {MAX_DPS} digits)."
    )
    refused = sum(s.refused for s in results.values())
    notes.append(
        f"Left out because the true result is beyond the format (the service refuses them): {refused:,}."
    )
    w("### Notes")
    w("")
    w("\n".join(f"- {n}" for n in notes))
    return "\n".join(out) + "\n"


GRID_NOTES: dict[str, Callable[[Plan], str]] = {
    "stress": lambda p: "float64 and float32 only (the 16-bit formats have grid f); default parameters.",
    "windows": lambda p: (
        f"{p.windows} uniform random points in each interval t in [-745.2, -708], [708, 710], [710, 745.2], "
        "[-104, -87.3], [87.3, 89], mapped to x through each exponential the function takes (x = t / beta "
        "for silu, t / 1.702 for quick_gelu, t alpha for celu, t / 2 for tanh, ±sqrt(2|t|) for gelu, ...)."
    ),
    "roots": lambda p: (
        "around each zero r: 300 points uniform in [r - 0.5, r + 0.5] and 100 at a log-uniform distance "
        "from 1e-16 |r| to 0.5."
    ),
    "random": lambda p: (
        f"{p.random[0]} points with |x| log-uniform in [1e-300, 1e300] and a random sign, "
        f"{p.random[1]} uniform in [-50, 50]."
    ),
    "vectors": lambda p: (
        f"{p.vectors} random vectors of lengths 2 to 64 (even for the functions that halve x) and mixed scales, a random normal g "
        "each, and [700, -712.5], [0, 0, 0] with g = [1, 1, 1]; each rounded once to every format "
        "(float16 and bfloat16 results through the operations layer of /activate and /derivative)."
    ),
    "all16": lambda p: (
        (
            "every finite float16 and bfloat16 number"
            if p.stride16 == 1
            else f"every {_ordinal(p.stride16)} bit pattern of float16 and bfloat16 (the finite numbers "
            "among them): all of them take too long here"
        )
        + "; default parameters."
    ),
}


def _revision() -> str:
    """The commit measured, and whether the working tree differs from it."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty=+changes"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return f"`{out.stdout.strip()}`" if out.returncode == 0 and out.stdout.strip() else "this tree"
    except (OSError, subprocess.SubprocessError):
        return "this tree"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _json(results: Mapping[Key, Stats]) -> list[dict[str, Any]]:
    return [
        {
            "function": label,
            "grid": grid,
            "format": fmt,
            "quantity": quantity,
            "points": s.points,
            "correctly_rounded": s.correct,
            "max_ulps": None if math.isinf(s.max_ulps) else s.max_ulps,
            "zero_sign": s.zero_sign,
            "failed": s.failed,
            "refused": s.refused,
            "undecided": s.undecided,
            "worst": [p._asdict() for p in sorted(s.worst, reverse=True)],
        }
        for (label, grid, fmt, quantity), s in sorted(results.items())
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="grids b, c and a small d (and a few vectors)")
    parser.add_argument("--only", default="", help="comma-separated function names")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    parser.add_argument(
        "--stride16",
        type=int,
        default=3,
        help="grid f: every k-th bit pattern of the 16-bit formats (default 3)",
    )
    parser.add_argument("--json", help="also write every figure, with the worst points, to this file")
    parser.add_argument("--output", help="write the report to this file as well as to stdout")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"[accuracy] {message}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    check_rounding()
    names = [activations.get(n.strip()).name for n in args.only.split(",") if n.strip()] or [
        e.name for e in activations.entries()
    ]
    plan = plan_for(args.quick, max(1, args.stride16))
    rows = rows_for(names, plan)
    elementwise = [r for r in rows if activations.get(r.name).kind == "elementwise"]
    zeros: dict[Row, dict[str, list[float]]] = {}
    if "roots" in plan.grids:
        zeros = dict(_map(zeros_of, elementwise, args.jobs))
        zeros = {r: zeros[r] for r in elementwise}
        progress(f"zeros of f' and f'' found, {time.perf_counter() - start:.0f} s")
    tasks: list[Task] = []
    for row in rows:
        if activations.get(row.name).kind == "elementwise":
            tasks += elementwise_tasks(row, plan, zeros.get(row, {}))
        else:
            tasks += vector_tasks(row, plan)
    progress(f"{len(tasks)} tasks")
    results, seconds = run(tasks, args.jobs, progress)
    meta = {
        "revision": _revision(),
        "wall": time.perf_counter() - start,
        "jobs": args.jobs,
        "cpu": sum(seconds.values()),
        "seconds": seconds,
    }
    text = report(results, rows, zeros, plan, meta)
    print(text, end="")
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_json(results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
