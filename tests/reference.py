"""High-precision reference definitions, written independently of the service.

Each elementwise entry gives the value and the first and second derivatives
as mpmath functions of an ``mpf`` and the parameters; vector entries take a
list.  They follow the textbook formulas at 50 digits.  Where even 50 digits
cancel (x - tanh x at x = 1e-300, a winning log-probability of -1e-304), the
reference uses an exact rearrangement or more digits, never a float64 trick.
Conventions at kinks follow the catalog.  The analytic derivatives are checked
against mpmath's numerical differentiation in ``test_reference.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath as mp
import numpy as np

from tests import rounding

mp.mp.dps = 50

Fn = Callable[..., mp.mpf]
ZERO = mp.mpf(0)
ONE = mp.mpf(1)


@dataclass(frozen=True)
class Elementwise:
    value: Fn
    d1: Fn
    d2: Fn


def sig(z: mp.mpf) -> mp.mpf:
    return 1 / (1 + mp.exp(-z))


def dsig(z: mp.mpf) -> mp.mpf:
    return sig(z) * sig(-z)


def _ind(cond: bool, value: mp.mpf | float = 1) -> mp.mpf:
    return mp.mpf(value) if cond else ZERO


def _clip(x: mp.mpf, lo: float, hi: float) -> mp.mpf:
    return min(max(x, mp.mpf(lo)), mp.mpf(hi))


def _sp(z: mp.mpf) -> mp.mpf:
    """log(1 + e^z)."""
    return mp.log1p(mp.exp(z)) if z < 0 else z + mp.log1p(mp.exp(-z))


SELU_ALPHA = mp.mpf("1.6732632423543772848170429916717")
SELU_SCALE = mp.mpf("1.0507009873554804934193349852946")
GELU_A = mp.mpf("0.044715")
QUICK = mp.mpf("1.702")


def _gelu(x: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    if x < -1e5:  # every value underflows far below float64
        return ZERO, ZERO, ZERO
    if x > 1e5:
        return x, ONE, ZERO
    phi = mp.npdf(x)
    cdf = mp.ncdf(x)
    return x * cdf, cdf + x * phi, phi * (2 - x * x)


def _gelu_tanh(x: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    # (1 + tanh(u))/2 = sigma(2u) and sech^2(u) = 4 sigma(2u) sigma(-2u): exact
    # identities; 1 + tanh(u) itself cancels at 50 digits once u < -60.
    if abs(x) > 1e5:
        return (x, ONE, ZERO) if x > 0 else (ZERO, ZERO, ZERO)
    c = mp.sqrt(2 / mp.pi)
    u = c * (x + GELU_A * x**3)
    du = c * (1 + 3 * GELU_A * x * x)
    ddu = c * 6 * GELU_A * x
    half = sig(2 * u)  # (1 + tanh u) / 2
    sech2 = 4 * sig(2 * u) * sig(-2 * u)
    t = sig(2 * u) - sig(-2 * u)  # tanh u
    value = x * half
    d1 = half + x * sech2 * du / 2
    d2 = sech2 * du + x * (-2 * t * sech2 * du * du + sech2 * ddu) / 2
    return value, d1, d2


def _swish(x: mp.mpf, beta: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    z = beta * x
    s = sig(z)
    return x * s, s + z * dsig(z), beta * dsig(z) * (2 + z * (1 - 2 * s))


def _mish(x: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    sp = _sp(x)
    t = mp.tanh(sp)
    sech2 = mp.sech(sp) ** 2
    s = sig(x)
    d1 = t + x * sech2 * s
    # d/dx sech^2(sp) = -2 sech^2(sp) tanh(sp) s;  d/dx s = s (1 - s)
    d2 = 2 * sech2 * s + x * (-2 * sech2 * t * s * s + sech2 * s * (1 - s))
    return x * t, d1, d2


def _tanhshrink(x: mp.mpf) -> mp.mpf:
    # x - tanh x ~ x^3/3 loses 2 log10(1/|x|) digits: add them.
    extra = int(max(0, -2 * mp.log10(abs(x)))) + 10 if x != 0 else 0
    with mp.extradps(extra):
        return x - mp.tanh(x)


def _squareplus(x: mp.mpf, b: float) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    b = mp.mpf(b)
    s = mp.sqrt(x * x + b)
    # For x < 0, x + s cancels even at 50 digits; b / (s - x) is the same number.
    value = (x + s) / 2 if x >= 0 else b / (2 * (s - x))
    d1 = (1 + x / s) / 2 if x >= 0 else b / (2 * s * (s - x))
    return value, d1, b / (2 * s**3)


def _sparse_plus(x: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    if x <= -1:
        return ZERO, ZERO, ZERO
    if x >= 1:
        return x, ONE, ZERO
    return (x + 1) ** 2 / 4, (x + 1) / 2, mp.mpf(0.5)


def _smelu(x: mp.mpf, beta: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    if x <= -beta:
        return ZERO, ZERO, ZERO
    if x >= beta:
        return x, ONE, ZERO
    return (x + beta) ** 2 / (4 * beta), (x + beta) / (2 * beta), 1 / (2 * beta)


def _hard_silu(x: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    if x <= -3:
        return ZERO, ZERO, ZERO
    if x >= 3:
        return x, ONE, ZERO
    return x * (x + 3) / 6, (2 * x + 3) / 6, mp.mpf(1) / 3


def _leaky(x: mp.mpf, slope: mp.mpf) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    return (x if x > 0 else slope * x), (ONE if x > 0 else slope), ZERO


def _pick(fn: Callable[..., tuple[mp.mpf, mp.mpf, mp.mpf]], i: int) -> Fn:
    return lambda x, **p: fn(x, **p)[i]


def _triple(fn: Callable[..., tuple[mp.mpf, mp.mpf, mp.mpf]]) -> Elementwise:
    return Elementwise(_pick(fn, 0), _pick(fn, 1), _pick(fn, 2))


def _shrink(x: mp.mpf, lam: float, soft: bool) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    lam = mp.mpf(lam)
    if abs(x) <= lam:
        return ZERO, ZERO, ZERO
    if not soft:
        return x, ONE, ZERO
    return (x - lam if x > 0 else x + lam), ONE, ZERO


def _snake(x: mp.mpf, a: float) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    # sin of a x far from 0 (1e300) is reduced by mpmath at the precision the argument needs.
    a = mp.mpf(a)
    t = a * x
    return x + mp.sin(t) ** 2 / a, 1 + mp.sin(2 * t), 2 * a * mp.cos(2 * t)


def _xielu(
    x: mp.mpf, alpha_p: float, alpha_n: float, beta: float, eps: float
) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    # Huang and Schlag (2024) as written; at eps and at 0 the catalog's middle piece.
    ap, an, b, e = (mp.mpf(v) for v in (alpha_p, alpha_n, beta, eps))
    if x > 0:
        return ap * x * x + b * x, 2 * ap * x + b, 2 * ap
    if x >= e:
        return an * (mp.expm1(e) - x) + b * x, b - an, ZERO
    # expm1(x) - x cancels for small |x|: evaluated with the digits it loses. For large |x|, b x
    # and -an x cancel where b = an (to -an, 1e300 below each), and e^x sits up to 324 digits
    # below b - an (the derivative) before it underflows every format: those digits too.
    digits = abs(int(mp.log10(abs(x)))) + (int(-x / 2.3) if x > -800 else 0)
    with mp.extradps(digits + 10):
        value = an * (mp.expm1(x) - x) + b * x
        d1 = an * mp.expm1(x) + b
    return +value, +d1, an * mp.exp(x)


def rational_exact(
    x: float | Fraction, numerator: Sequence[float], denominator: Sequence[float]
) -> tuple[Fraction, Fraction, Fraction]:
    """P/Q with Q = 1 + |B|, B = b_1 x + ... + b_n x^n, and its x-derivatives, in exact rationals
    (sign(B) taken as 0 where B = 0)."""
    xq = Fraction(x)
    a = [Fraction(v) for v in numerator]
    b = [Fraction(0)] + [Fraction(v) for v in denominator]
    p = sum((c * xq**k for k, c in enumerate(a)), Fraction(0))
    dp = sum((k * c * xq ** (k - 1) for k, c in enumerate(a) if k), Fraction(0))
    d2p = sum((k * (k - 1) * c * xq ** (k - 2) for k, c in enumerate(a) if k > 1), Fraction(0))
    bb = sum((c * xq**k for k, c in enumerate(b)), Fraction(0))
    db = sum((k * c * xq ** (k - 1) for k, c in enumerate(b) if k), Fraction(0))
    d2b = sum((k * (k - 1) * c * xq ** (k - 2) for k, c in enumerate(b) if k > 1), Fraction(0))
    s = (bb > 0) - (bb < 0)
    q, dq, d2q = 1 + abs(bb), s * db, s * d2b
    d1 = (dp * q - p * dq) / (q * q)
    return p / q, d1, (d2p * q - p * d2q) / (q * q) - 2 * dq * d1 / q


def _rational(
    x: mp.mpf, numerator: Sequence[float], denominator: Sequence[float]
) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    # x is a float64 input here (an mpf of it): the exact rationals, to the working precision
    values = rational_exact(Fraction(float(x)), numerator, denominator)
    return tuple(mp.mpf(v.numerator) / v.denominator for v in values)  # type: ignore[return-value]


ELEMENTWISE: dict[str, Elementwise] = {
    "step": Elementwise(lambda x: _ind(x > 0), lambda x: ZERO, lambda x: ZERO),
    "identity": Elementwise(lambda x: x, lambda x: ONE, lambda x: ZERO),
    # 1 - 2 sigma(x) = -tanh(x/2) exactly; the left side cancels at 50 digits for |x| < 1e-50.
    "sigmoid": Elementwise(sig, dsig, lambda x: -dsig(x) * mp.tanh(x / 2)),
    "tanh": Elementwise(mp.tanh, lambda x: mp.sech(x) ** 2, lambda x: -2 * mp.tanh(x) * mp.sech(x) ** 2),
    "relu": Elementwise(lambda x: max(x, ZERO), lambda x: _ind(x > 0), lambda x: ZERO),
    "leaky_relu": _triple(lambda x, negative_slope: _leaky(x, mp.mpf(negative_slope))),
    "relu6": Elementwise(lambda x: _clip(x, 0, 6), lambda x: _ind(0 < x < 6), lambda x: ZERO),
    "hard_tanh": Elementwise(
        lambda x, min_val, max_val: _clip(x, min_val, max_val),
        lambda x, min_val, max_val: _ind(min_val < x < max_val),
        lambda x, min_val, max_val: ZERO,
    ),
    "hard_sigmoid": Elementwise(
        lambda x: _clip(x + 3, 0, 6) / 6, lambda x: _ind(-3 < x < 3, mp.mpf(1) / 6), lambda x: ZERO
    ),
    "hard_silu": _triple(_hard_silu),
    "softshrink": _triple(lambda x, **p: _shrink(x, p["lambda"], soft=True)),
    "hardshrink": _triple(lambda x, **p: _shrink(x, p["lambda"], soft=False)),
    "threshold": Elementwise(
        lambda x, threshold, value: x if x > threshold else mp.mpf(value),
        lambda x, threshold, value: _ind(x > threshold),
        lambda x, threshold, value: ZERO,
    ),
    "prelu": _triple(lambda x, weight: _leaky(x, mp.mpf(weight))),
    "rrelu": _triple(lambda x, lower, upper: _leaky(x, (mp.mpf(lower) + mp.mpf(upper)) / 2)),
    "sparse_plus": _triple(_sparse_plus),
    "sparse_sigmoid": Elementwise(
        lambda x: _clip(x + 1, 0, 2) / 2, lambda x: _ind(abs(x) < 1, 0.5), lambda x: ZERO
    ),
    "relu_squared": Elementwise(
        lambda x: max(x, ZERO) ** 2, lambda x: 2 * max(x, ZERO), lambda x: _ind(x > 0, 2)
    ),
    "snake": _triple(_snake),
    "rational": _triple(_rational),
    "xielu": _triple(_xielu),
    "star_relu": Elementwise(
        lambda x, scale, bias: mp.mpf(scale) * max(x, ZERO) ** 2 + mp.mpf(bias),
        lambda x, scale, bias: 2 * mp.mpf(scale) * max(x, ZERO),
        lambda x, scale, bias: _ind(x > 0, 2 * mp.mpf(scale)),
    ),
    "smelu": _triple(lambda x, beta: _smelu(x, mp.mpf(beta))),
    "elu": Elementwise(
        lambda x, alpha: x if x > 0 else alpha * mp.expm1(x),
        lambda x, alpha: ONE if x > 0 else alpha * mp.exp(x),
        lambda x, alpha: ZERO if x > 0 else alpha * mp.exp(x),
    ),
    "selu": Elementwise(
        lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * mp.expm1(x)),
        lambda x: SELU_SCALE * (ONE if x > 0 else SELU_ALPHA * mp.exp(x)),
        lambda x: ZERO if x > 0 else SELU_SCALE * SELU_ALPHA * mp.exp(x),
    ),
    "celu": Elementwise(
        lambda x, alpha: x if x > 0 else alpha * mp.expm1(x / alpha),
        lambda x, alpha: ONE if x > 0 else mp.exp(x / alpha),
        lambda x, alpha: ZERO if x > 0 else mp.exp(x / alpha) / alpha,
    ),
    "gelu": _triple(_gelu),
    "gelu_tanh": _triple(_gelu_tanh),
    "silu": _triple(lambda x, beta: _swish(x, mp.mpf(beta))),
    "quick_gelu": _triple(lambda x: _swish(x, QUICK)),
    "mish": _triple(_mish),
    "softplus": Elementwise(
        lambda x, beta: _sp(beta * x) / beta,
        lambda x, beta: sig(beta * x),
        lambda x, beta: beta * dsig(beta * x),
    ),
    "softsign": Elementwise(
        lambda x: x / (1 + abs(x)),
        lambda x: 1 / (1 + abs(x)) ** 2,
        lambda x: -2 * mp.sign(x) / (1 + abs(x)) ** 3,
    ),
    "log_sigmoid": Elementwise(lambda x: -_sp(-x), lambda x: sig(-x), lambda x: -dsig(x)),
    "tanhshrink": Elementwise(
        _tanhshrink, lambda x: mp.tanh(x) ** 2, lambda x: 2 * mp.tanh(x) * mp.sech(x) ** 2
    ),
    "squareplus": _triple(_squareplus),
    "exponential": Elementwise(mp.exp, mp.exp, mp.exp),
}


# -- vector functions -------------------------------------------------------------------------

Vec = list[mp.mpf]


def _mp(x: Sequence[float]) -> Vec:
    return [mp.mpf(float(v)) for v in x]


def softmax(x: Sequence[float], temperature: float = 1.0) -> Vec:
    z = [v / mp.mpf(temperature) for v in _mp(x)]
    top = max(z)
    e = [mp.exp(v - top) for v in z]
    total = mp.fsum(e)
    return [v / total for v in e]


def _softmax_jacobian(s: Vec, temperature: float) -> list[Vec]:
    # 1 - s_i as the sum of the others: at 50 digits 1 - s_i is 0 once s_i is
    # within 1e-50 of 1 (x = [700, -700, 0]).
    n = len(s)
    t = mp.mpf(temperature)
    rest = [mp.fsum(s[j] for j in range(n) if j != i) for i in range(n)]
    return [[(s[i] * rest[i] if i == j else -s[i] * s[j]) / t for j in range(n)] for i in range(n)]


def softmax_jacobian(x: Sequence[float], temperature: float = 1.0) -> list[Vec]:
    return _softmax_jacobian(softmax(x, temperature), temperature)


def log_softmax(x: Sequence[float], temperature: float = 1.0) -> Vec:
    z = [v / mp.mpf(temperature) for v in _mp(x)]
    k = max(range(len(z)), key=lambda i: z[i])
    # log sum e^(z - z_k) = log1p(sum over the others): exact, and no cancellation.
    lse = mp.log1p(mp.fsum(mp.exp(z[j] - z[k]) for j in range(len(z)) if j != k))
    return [(v - z[k]) - lse for v in z]


def log_softmax_jacobian(x: Sequence[float], temperature: float = 1.0) -> list[Vec]:
    s = softmax(x, temperature)
    n = len(s)
    t = mp.mpf(temperature)
    rest = [mp.fsum(s[j] for j in range(n) if j != i) for i in range(n)]
    return [[(rest[i] if i == j else -s[j]) / t for j in range(n)] for i in range(n)]


def softmin(x: Sequence[float], temperature: float = 1.0) -> Vec:
    return softmax([-v for v in x], temperature)


def softmin_jacobian(x: Sequence[float], temperature: float = 1.0) -> list[Vec]:
    return [[-v for v in row] for row in softmax_jacobian([-v for v in x], temperature)]


def glu(x: Sequence[float]) -> Vec:
    z = _mp(x)
    h = len(z) // 2
    return [z[i] * sig(z[h + i]) for i in range(h)]


def glu_jacobian(x: Sequence[float]) -> list[Vec]:
    z = _mp(x)
    h = len(z) // 2
    jac = [[ZERO] * len(z) for _ in range(h)]
    for i in range(h):
        jac[i][i] = sig(z[h + i])
        jac[i][h + i] = z[i] * dsig(z[h + i])
    return jac


def _gated_textbook(act: str) -> tuple[Callable[..., Vec], Callable[..., list[Vec]]]:
    """y_i = a_i act(b_i) from the elementwise references above (plain formulas)."""
    fn = ELEMENTWISE[act]
    params = {"beta": 1.0} if act == "silu" else {}

    def halves(x: Sequence[float], gate_half: float) -> tuple[Vec, Vec, int, int]:
        z = _mp(x)
        h = len(z) // 2
        return (z[h:], z[:h], h, 0) if gate_half == 1 else (z[:h], z[h:], 0, h)

    def value(x: Sequence[float], gate_half: float = 2.0) -> Vec:
        a, b, _, _ = halves(x, gate_half)
        return [ai * fn.value(bi, **params) for ai, bi in zip(a, b, strict=True)]

    def jacobian(x: Sequence[float], gate_half: float = 2.0) -> list[Vec]:
        a, b, at_a, at_b = halves(x, gate_half)
        jac = [[ZERO] * len(x) for _ in a]
        for i, (ai, bi) in enumerate(zip(a, b, strict=True)):
            jac[i][at_a + i] = fn.value(bi, **params)
            jac[i][at_b + i] = ai * fn.d1(bi, **params)
        return jac

    return value, jacobian


def sparsemax(x: Sequence[float]) -> Vec:
    # Exact rational arithmetic: 1 + k z > cumsum is decided without rounding
    # (at 50 digits 1 + 1e308 > 1e308 is false).
    z = [Fraction(float(v)) for v in x]
    zs = sorted(z, reverse=True)
    total, size, cum = Fraction(0), 0, Fraction(0)
    for k, v in enumerate(zs, start=1):
        cum += v
        if 1 + k * v > cum:
            size, total = k, cum
    tau = (total - 1) / size
    return [mp.mpf(max(v - tau, Fraction(0)).numerator) / max(v - tau, Fraction(0)).denominator for v in z]


def sparsemax_jacobian(x: Sequence[float]) -> list[Vec]:
    inside = [v > 0 for v in sparsemax(x)]
    size = sum(inside)
    n = len(inside)
    return [
        [(_ind(i == j and inside[i]) - _ind(inside[i] and inside[j]) / size) for j in range(n)]
        for i in range(n)
    ]


def _entmax_jacobian_of(y: Vec, alpha: mp.mpf) -> list[Vec]:
    # s_k = y_k^(2 - alpha) on the support (y_k > 0), 0 elsewhere; J = diag(s) - s s^T / sum s
    s = [v ** (2 - alpha) if v > 0 else ZERO for v in y]
    total = mp.fsum(s)
    n = len(s)
    return [[(s[i] if i == j else ZERO) - s[i] * s[j] / total for j in range(n)] for i in range(n)]


def entmax(x: Sequence[float], alpha: float = 1.5) -> Vec:
    """alpha-entmax from its definition, y_i = max((alpha - 1) x_i - tau, 0)^(1/(alpha - 1)) with
    sum y = 1: tau by bisection with 64 more bits than the working precision (alpha = 1: softmax)."""
    a = mp.mpf(alpha)
    if a == 1:
        return softmax(x)
    top = max(_frac(v) for v in x)
    with mp.extraprec(64):
        # z = (alpha - 1)(x - max x) <= 0, and theta = tau - (alpha - 1) max x lies in [-1, 0)
        z = [(a - 1) * _mpq(_frac(v) - top) for v in x]
        p = 1 / (a - 1)
        lo, hi = mp.mpf(-1), ZERO
        while hi == 0 or hi - lo > abs(hi) * mp.ldexp(ONE, 8 - mp.mp.prec):  # to 56 more bits
            mid = (lo + hi) / 2
            if mp.fsum(max(v - mid, ZERO) ** p for v in z) > 1:
                lo = mid
            else:
                hi = mid
        y = [max(v - hi, ZERO) ** p for v in z]
    return [+v for v in y]


def entmax_jacobian(x: Sequence[float], alpha: float = 1.5) -> list[Vec]:
    if mp.mpf(alpha) == 1:
        return softmax_jacobian(x)
    return _entmax_jacobian_of(entmax(x, alpha), mp.mpf(alpha))


def entmax15(x: Sequence[float]) -> Vec:
    """1.5-entmax by sorting (Peters, Niculae and Martins 2019): with a = x/2 sorted in decreasing order,
    tau = mean - sqrt((1 - ss)/k) over the top k (ss: their squared deviations from the mean), k the
    largest with tau <= a_(k); y = max(a - tau, 0)^2."""
    top = max(_frac(v) for v in x)
    a = [_mpq(_frac(v) - top) / 2 for v in x]
    ranked = sorted(a, reverse=True)
    tau = ranked[0] - 1
    for k in range(1, len(a) + 1):
        mean = mp.fsum(ranked[:k]) / k
        delta = (1 - mp.fsum((v - mean) ** 2 for v in ranked[:k])) / k
        if delta >= 0 and mean - mp.sqrt(delta) <= ranked[k - 1]:
            tau = mean - mp.sqrt(delta)
    return [max(v - tau, ZERO) ** 2 for v in a]


def entmax15_jacobian(x: Sequence[float]) -> list[Vec]:
    return _entmax_jacobian_of(entmax15(x), mp.mpf(1.5))


def vjp(jac: list[Vec], g: Sequence[float]) -> Vec:
    """sum_i g_i J_ij."""
    return [mp.fsum(mp.mpf(float(g[i])) * jac[i][j] for i in range(len(jac))) for j in range(len(jac[0]))]


@dataclass(frozen=True)
class Vector:
    value: Callable[..., Vec]
    jacobian: Callable[..., list[Vec]]


def gumbel_noise(shape: tuple[int, ...], seed: float) -> np.ndarray:
    """gumbel_softmax's noise as the catalog defines it (NumPy's PCG64 stream from the seed)."""
    return np.random.Generator(np.random.PCG64(int(seed))).gumbel(size=shape)


def gumbel_logits(x: Sequence[float], seed: float) -> list[float]:
    """x + g rounded to float64, the logits gumbel_softmax is softmax of (a vector alone)."""
    return (np.asarray(x, np.float64) + gumbel_noise((len(x),), seed)).tolist()


#: The vector functions that split x in halves along the axis (y has half its length there).
HALVING = ("glu", "swiglu", "geglu", "geglu_tanh", "reglu")

VECTOR: dict[str, Vector] = {
    "softmax": Vector(softmax, softmax_jacobian),
    "log_softmax": Vector(log_softmax, log_softmax_jacobian),
    "softmin": Vector(softmin, softmin_jacobian),
    "glu": Vector(glu, glu_jacobian),
    "swiglu": Vector(*_gated_textbook("silu")),
    "geglu": Vector(*_gated_textbook("gelu")),
    "geglu_tanh": Vector(*_gated_textbook("gelu_tanh")),
    "reglu": Vector(*_gated_textbook("relu")),
    "sparsemax": Vector(sparsemax, sparsemax_jacobian),
    "entmax15": Vector(entmax15, entmax15_jacobian),
    "entmax": Vector(entmax, entmax_jacobian),
    "gumbel_softmax": Vector(
        lambda x, temperature=1.0, seed=0.0: softmax(gumbel_logits(x, seed), temperature),
        lambda x, temperature=1.0, seed=0.0: softmax_jacobian(gumbel_logits(x, seed), temperature),
    ),
}


def softmax_vjp(x: Sequence[float], g: Sequence[float]) -> Vec:
    return vjp(softmax_jacobian(x), g)


# -- vector functions, correctly rounded: exact zeros and rationals decided exactly --------------------
#
# What follows gives every element of the value, the Jacobian, the vector-Jacobian product (VJP) and
# the temperature derivatives of the five vector functions as an *item*: a Fraction where the true
# value is rational (sparsemax throughout; exact zeros; a softmax of equal components), or else a
# function that evaluates it with mpmath at the working precision.  :func:`correctly_rounded` rounds
# the Fractions exactly and evaluates the others at rising precision until their rounding settles.
#
# The softmax family, with q_k = (x_k - max x) / T (rational: x and T are floats), is made of
# quantities  F * e^(a) * P / S^m  with F and a rational, S = sum_k e^(q_k) and P = sum_w c_w e^(w)
# an exponential polynomial: rational coefficients c_w on distinct rational exponents w (equal
# exponents merged exactly).  By the Lindemann–Weierstrass theorem the e^(w) of distinct algebraic
# w are linearly independent over the algebraic numbers, so
#   - P = 0 exactly iff every merged coefficient is 0 (e.g. the softmax VJP at component j is 0 iff
#     for every group G of equal x_i, sum_{i in G} (g_j - g_i) = 0);
#   - the quantity is a rational r iff e^(a) P = r S^m term by term (a softmax of n equal
#     components is 1/n; a log_softmax VJP with sum(g) = 0 is g_j / T);
#   - otherwise it is transcendental: never 0, never exactly halfway between two floats.
# No element is ever called 0 for being small.

Item = Fraction | Callable[[], mp.mpf]
Poly = dict[Fraction, Fraction]  # exponent w -> coefficient c: sum c e^w


def _frac(v: float) -> Fraction:
    return Fraction(float(v))


def _mpq(q: Fraction) -> mp.mpf:
    """A rational to the working precision (one rounding)."""
    if q.denominator == 1:
        return mp.mpf(q.numerator)
    return mp.mpf(q.numerator) / q.denominator


def _exp(w: Fraction) -> mp.mpf:
    """e^w to the working precision for an exact w of any size (e^(-2e311) too): the argument
    carries as many more bits as its integer part has."""
    bits = max(0, abs(w.numerator).bit_length() - w.denominator.bit_length()) + 16
    with mp.extraprec(bits):
        v = mp.exp(_mpq(w))
    return +v


def _merge(terms: Iterable[tuple[Fraction, Fraction]]) -> Poly:
    out: Poly = {}
    for w, c in terms:
        out[w] = out.get(w, Fraction(0)) + c
    return {w: c for w, c in out.items() if c}


def _product(p: Poly, r: Poly) -> Poly:
    return _merge((w1 + w2, c1 * c2) for w1, c1 in p.items() for w2, c2 in r.items())


def _negated(item: Item) -> Item:
    if isinstance(item, Fraction):
        return -item
    return lambda: -item()


class _Cache:
    """Values of one vector's pieces, kept per working precision."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, object], mp.mpf] = {}

    def get(self, key: object, compute: Callable[[], mp.mpf]) -> mp.mpf:
        k = (mp.mp.prec, key)
        if k not in self._values:
            self._values[k] = compute()
        return self._values[k]


class Family:
    """One vector of the softmax family at temperature T."""

    def __init__(self, x: Sequence[float], temperature: float) -> None:
        self.x = [_frac(v) for v in x]
        self.n = len(self.x)
        self.t = _frac(temperature)
        top = max(self.x)
        self.q = [(v - top) / self.t for v in self.x]  # <= 0
        self.s = _merge((w, Fraction(1)) for w in self.q)  # S, one term per group of equal x
        self._powers: dict[int, Poly] = {1: self.s}
        self.cache = _Cache()
        self.keys = list(self.s)  # the distinct exponents q (0 among them)
        self.index = {w: k for k, w in enumerate(self.keys)}
        self._state: tuple[int, list[mp.mpf], mp.mpf] | None = None

    def _at_precision(self) -> tuple[int, list[mp.mpf], mp.mpf]:
        """(precision, e^q for each distinct q, S) at the working precision."""
        if self._state is None or self._state[0] != mp.mp.prec:
            exps = [_exp(w) for w in self.keys]
            total = mp.fsum(_mpq(self.s[w]) * e for w, e in zip(self.keys, exps, strict=True))
            self._state = (mp.mp.prec, exps, total)
        return self._state

    def e(self, w: Fraction) -> mp.mpf:
        k = self.index.get(w)
        if k is not None:
            return self._at_precision()[1][k]
        return self.cache.get(("e", w), lambda: _exp(w))

    def total(self) -> mp.mpf:
        return self._at_precision()[2]

    def compiled(self, p: Poly) -> list[tuple[int | None, Fraction, Fraction]]:
        return [(self.index.get(w), w, c) for w, c in p.items()]

    def evaluate(self, p: Poly | list[tuple[int | None, Fraction, Fraction]]) -> mp.mpf:
        terms = self.compiled(p) if isinstance(p, dict) else p
        exps = self._at_precision()[1]
        return mp.fsum(
            (exps[k] if k is not None else self.e(w)) * (1 if c == 1 else _mpq(c)) for k, w, c in terms
        )

    def power(self, m: int) -> Poly:
        if m not in self._powers:
            self._powers[m] = _product(self.power(m - 1), self.s)
        return self._powers[m]

    def rational(self, shift: Fraction, p: Poly, m: int) -> Fraction | None:
        """r where e^shift * p = r S^m exactly, else None."""
        groups = len(self.s)
        if len(p) < m * (groups - 1) + 1:  # S^m has at least this many terms
            return None
        sm = self.power(m)
        if len(p) != len(sm):
            return None
        ratio = None
        for w, c in p.items():
            d = sm.get(w + shift)
            if d is None:
                return None
            if ratio is None:
                ratio = c / d
            elif c / d != ratio:
                return None
        return ratio

    def ratio(
        self,
        factor: Fraction,
        shift: Sequence[Fraction],
        p: Poly,
        m: int,
        numeric: Callable[[], mp.mpf] | None = None,
    ) -> Item:
        """factor * e^(sum shift) * p / S^m as an item (``numeric``: another way to evaluate p)."""
        if not p:
            return Fraction(0)
        r = self.rational(sum(shift, Fraction(0)), p, m)
        if r is not None:
            return factor * r

        terms = self.compiled(p)
        shifts = [(self.index.get(w), w) for w in shift]

        def value() -> mp.mpf:
            _, exps, total = self._at_precision()
            if numeric is not None:
                v = numeric()
            elif len(terms) == 1 and terms[0][0] is not None:
                k, _, c = terms[0]
                v = exps[k] if c == 1 else _mpq(c) * exps[k]  # type: ignore[index]
            else:
                v = self.evaluate(terms)
            if factor != 1:
                v *= _mpq(factor)
            for k, w in shifts:
                v *= exps[k] if k is not None else self.e(w)
            return v / total**m

        return value

    def without(self, i: int) -> Poly:
        """S - e^(q_i): the sum over the other components."""
        return _merge([*self.s.items(), (self.q[i], Fraction(-1))])


def _softmax_items(f: Family) -> list[Item]:
    return [f.ratio(Fraction(1), (f.q[i],), {Fraction(0): Fraction(1)}, 1) for i in range(f.n)]


def _softmax_jacobian_items(f: Family) -> list[Item]:
    # s_i (delta_ij - s_j) / T = e^(q_i) (delta_ij S - e^(q_j)) / (S^2 T)
    out: list[Item] = []
    for i in range(f.n):
        for j in range(f.n):
            if i == j:
                out.append(f.ratio(1 / f.t, (f.q[i],), f.without(i), 2))
            else:
                out.append(f.ratio(-1 / f.t, (f.q[i], f.q[j]), {Fraction(0): Fraction(1)}, 2))
    return out


def _softmax_vjp_items(f: Family, g: Sequence[Fraction]) -> list[Item]:
    # s_j (g_j - sum_i g_i s_i) / T = e^(q_j) sum_i e^(q_i) (g_j - g_i) / (S^2 T)
    return [
        f.ratio(1 / f.t, (f.q[j],), _merge((f.q[i], g[j] - g[i]) for i in range(f.n)), 2) for j in range(f.n)
    ]


def _softmax_dydt_items(f: Family) -> list[Item]:
    # ds_i/dT = -s_i sum_k s_k (x_i - x_k) / T^2
    return [
        f.ratio(-1 / f.t**2, (f.q[i],), _merge((f.q[k], f.x[i] - f.x[k]) for k in range(f.n)), 2)
        for i in range(f.n)
    ]


def _softmax_grad_t_item(f: Family, g: Sequence[Fraction]) -> Item:
    # sum_i g_i ds_i/dT = -sum_{i,k} g_i e^(q_i + q_k) (x_i - x_k) / (S^2 T^2)
    groups: dict[Fraction, list[Fraction]] = {}  # q -> [x, sum of g]
    for xi, qi, gi in zip(f.x, f.q, g, strict=True):
        groups.setdefault(qi, [xi, Fraction(0)])[1] += gi
    count = f.s
    p = _merge(
        (qa + qb, ga * count[qb] * (xa - xb))
        for qa, (xa, ga) in groups.items()
        for qb, (xb, _) in groups.items()
        if qa != qb
    )
    cached = [(qa, xa, ga) for qa, (xa, ga) in groups.items()]

    def numeric() -> mp.mpf:
        inner = [
            mp.fsum(_mpq(count[qb] * (xa - xb)) * f.e(qb) for qb, xb, _ in cached if qb != qa)
            for qa, xa, _ in cached
        ]
        return mp.fsum(_mpq(ga) * f.e(qa) * v for (qa, _, ga), v in zip(cached, inner, strict=True))

    return f.ratio(-1 / f.t**2, (), p, 2, numeric)


def _log_softmax_items(f: Family) -> list[Item]:
    # q_i - log S = q_i - log1p(S - 1): both terms <= 0, no cancellation; 0 only for n = 1.
    rest = _merge([*f.s.items(), (Fraction(0), Fraction(-1))])
    out: list[Item] = []
    for i in range(f.n):
        if not rest and f.q[i] == 0:
            out.append(Fraction(0))
        else:
            out.append(lambda i=i: _mpq(f.q[i]) - mp.log1p(f.cache.get("rest", lambda: f.evaluate(rest))))
    return out


def _log_softmax_jacobian_items(f: Family) -> list[Item]:
    # (delta_ij - s_j) / T = (delta_ij S - e^(q_j)) / (S T)
    out: list[Item] = []
    for i in range(f.n):
        for j in range(f.n):
            if i == j:
                out.append(f.ratio(1 / f.t, (), f.without(i), 1))
            else:
                out.append(f.ratio(-1 / f.t, (f.q[j],), {Fraction(0): Fraction(1)}, 1))
    return out


def _log_softmax_vjp_items(f: Family, g: Sequence[Fraction]) -> list[Item]:
    # (g_j - s_j sum_i g_i) / T = (g_j S - e^(q_j) sum_i g_i) / (S T)
    total = sum(g, Fraction(0))
    return [
        f.ratio(1 / f.t, (), _merge([*((w, c * g[j]) for w, c in f.s.items()), (f.q[j], -total)]), 1)
        for j in range(f.n)
    ]


def _log_softmax_dydt_items(f: Family) -> list[Item]:
    # dy_i/dT = -sum_k s_k (x_i - x_k) / T^2
    return [
        f.ratio(-1 / f.t**2, (), _merge((f.q[k], f.x[i] - f.x[k]) for k in range(f.n)), 1) for i in range(f.n)
    ]


def _log_softmax_grad_t_item(f: Family, g: Sequence[Fraction]) -> Item:
    # sum_i g_i dy_i/dT = -sum_k e^(q_k) (sum_i g_i x_i - x_k sum_i g_i) / (S T^2)
    a = sum((gi * xi for gi, xi in zip(g, f.x, strict=True)), Fraction(0))
    total = sum(g, Fraction(0))
    return f.ratio(-1 / f.t**2, (), _merge((f.q[k], a - f.x[k] * total) for k in range(f.n)), 1)


def _glu_parts(x: Sequence[float]) -> tuple[list[Fraction], list[Fraction], _Cache]:
    z = [_frac(v) for v in x]
    h = len(z) // 2
    return z[:h], z[h:], _Cache()


def _sigmoids(b: Fraction, cache: _Cache) -> tuple[mp.mpf, mp.mpf]:
    """sigma(b) and sigma(b) sigma(-b), from e^(-|b|) (no cancellation, any size of b)."""

    def compute() -> tuple[mp.mpf, mp.mpf]:
        e = _exp(-abs(b))
        sig_b = 1 / (1 + e) if b > 0 else e / (1 + e)
        return sig_b, e / (1 + e) ** 2

    return cache.get(("sig", b), compute)  # type: ignore[arg-type,return-value]


def _glu_items(x: Sequence[float]) -> list[Item]:
    a, b, cache = _glu_parts(x)
    out: list[Item] = []
    for ai, bi in zip(a, b, strict=True):
        if ai == 0 or bi == 0:
            out.append(ai / 2)
        else:
            out.append(lambda ai=ai, bi=bi: _mpq(ai) * _sigmoids(bi, cache)[0])
    return out


def _glu_jacobian_items(x: Sequence[float]) -> list[Item]:
    # dy_i/da_i = sigma(b_i), dy_i/db_i = a_i sigma(b_i) sigma(-b_i); every other element is 0.
    a, b, cache = _glu_parts(x)
    h, n = len(a), len(x)
    out: list[Item] = [Fraction(0)] * (h * n)
    for i, (ai, bi) in enumerate(zip(a, b, strict=True)):
        out[i * n + i] = Fraction(1, 2) if bi == 0 else (lambda bi=bi: _sigmoids(bi, cache)[0])
        if ai == 0 or bi == 0:
            out[i * n + h + i] = ai / 4
        else:
            out[i * n + h + i] = lambda ai=ai, bi=bi: _mpq(ai) * _sigmoids(bi, cache)[1]
    return out


def _glu_vjp_items(x: Sequence[float], g: Sequence[Fraction]) -> list[Item]:
    a, b, cache = _glu_parts(x)
    first: list[Item] = []
    second: list[Item] = []
    for ai, bi, gi in zip(a, b, g, strict=True):
        if gi == 0 or bi == 0:
            first.append(gi / 2)
        else:
            first.append(lambda gi=gi, bi=bi: _mpq(gi) * _sigmoids(bi, cache)[0])
        if gi == 0 or ai == 0 or bi == 0:
            second.append(gi * ai / 4)
        else:
            second.append(lambda gi=gi, ai=ai, bi=bi: _mpq(gi) * _mpq(ai) * _sigmoids(bi, cache)[1])
    return first + second


# -- gated units: y_i = a_i act(b_i), act in silu, gelu, gelu_tanh, relu ---------------------------
#
# act(b) = b c(b) with c the sigmoid of b (silu), the normal CDF (gelu) or the sigmoid of 2u,
# u = sqrt(2/pi) (b + 0.044715 b^3) (gelu_tanh); act'(b) = c(b) + b c'(b).  For b > 0 both are
# 1 minus or plus a tail that can lie far below any working precision, and a_i b_i (or g_i a_i)
# can be a midpoint of the format: the tail's side decides the rounding, so a tail too small to
# show is kept as a nudge of its sign at the working precision, and products are formed exactly.


def _bits_of(b: Fraction) -> int:
    """Extra bits that make e^(-b^2) and e^(-b^3) exact in their exponent."""
    return max(0, 3 * (abs(b.numerator).bit_length() - b.denominator.bit_length())) + 32


def _one_plus(c: mp.mpf) -> mp.mpf:
    """1 + c at the working precision, nudged off 1 to c's side where c is too small to show."""
    if c == 0:
        return ONE
    one = ONE + c
    if one == 1:
        nudge = mp.ldexp(ONE, -(mp.mp.prec + 16))
        with mp.extraprec(32):
            return ONE + mp.sign(c) * nudge
    return one


def _gate_tails(act: str, b: Fraction) -> tuple[mp.mpf, mp.mpf]:
    """(c(-|b|), |b| c'(|b|)) for b != 0: the small side of c and the density term of act'."""
    t = abs(b)
    with mp.extraprec(_bits_of(b)):
        tm = _mpq(t)
        if act == "silu":
            e = _exp(-t)
            small, dens = e / (1 + e), tm * e / (1 + e) ** 2
        elif act == "gelu":
            small = mp.erfc(tm / mp.sqrt(2)) / 2
            dens = tm * mp.npdf(tm)
        else:
            k = mp.sqrt(2 / mp.pi)
            u = k * (tm + GELU_A * tm**3)
            e = mp.exp(-2 * u)
            small = e / (1 + e)
            dens = tm * 2 * k * (1 + 3 * GELU_A * tm * tm) * e / (1 + e) ** 2
    return +small, +dens


def _gate_act(act: str, b: Fraction) -> Item:
    if act == "relu":
        return max(b, Fraction(0))
    if b == 0:
        return Fraction(0)

    def value() -> mp.mpf:
        small, _ = _gate_tails(act, b)
        factor = small if b < 0 else _one_plus(-small)
        with mp.extraprec(80):  # b (53 bits) times the factor, exactly: the nudge survives
            return _mpq(b) * factor

    return value


def _gate_slope(act: str, b: Fraction) -> Item:
    if act == "relu":
        return Fraction(int(b > 0))
    if b == 0:
        return Fraction(1, 2)

    def slope() -> mp.mpf:
        small, dens = _gate_tails(act, b)
        # c(b) + b c'(b): for b < 0 both terms are small (and cancel towards the root near -0.75);
        # for b > 0 it is 1 - c(-b) + b c'(b).
        return small - dens if b < 0 else _one_plus(dens - small)

    return slope


def _gate_product(*factors: Item) -> Item:
    """The product of items, exact: a Fraction where every factor is one (or one is 0)."""
    if any(isinstance(f, Fraction) and f == 0 for f in factors):
        return Fraction(0)
    if all(isinstance(f, Fraction) for f in factors):
        out = Fraction(1)
        for f in factors:
            out *= f  # type: ignore[operator]
        return out

    def product() -> mp.mpf:
        values = [_mpq(f) if isinstance(f, Fraction) else f() for f in factors]
        # The factors carry at most the working precision and 16 bits (a nudge): exact products.
        with mp.workprec(len(values) * (mp.mp.prec + 16) + 64):
            out = ONE
            for v in values:
                out = out * v
        return out

    return product


def _gate_split(x: Sequence[float], gate_half: float) -> tuple[list[Fraction], list[Fraction], int, int]:
    """(a, b, where a starts, where b starts) of a vector split in halves."""
    z = [_frac(v) for v in x]
    h = len(z) // 2
    return (z[h:], z[:h], h, 0) if gate_half == 1 else (z[:h], z[h:], 0, h)


def _gated_items(act: str) -> VectorItems:
    def value(x: Sequence[float], gate_half: float = 2.0) -> list[Item]:
        a, b, _, _ = _gate_split(x, gate_half)
        return [_gate_product(ai, _gate_act(act, bi)) for ai, bi in zip(a, b, strict=True)]

    def jacobian(x: Sequence[float], gate_half: float = 2.0) -> list[Item]:
        a, b, at_a, at_b = _gate_split(x, gate_half)
        h, n = len(a), len(x)
        out: list[Item] = [Fraction(0)] * (h * n)
        for i, (ai, bi) in enumerate(zip(a, b, strict=True)):
            out[i * n + at_a + i] = _gate_act(act, bi)
            out[i * n + at_b + i] = _gate_product(ai, _gate_slope(act, bi))
        return out

    def vjp(x: Sequence[float], g: Sequence[float], gate_half: float = 2.0) -> list[Item]:
        a, b, at_a, at_b = _gate_split(x, gate_half)
        out: list[Item] = [Fraction(0)] * len(x)
        for i, (ai, bi, gi) in enumerate(zip(a, b, [_frac(v) for v in g], strict=True)):
            out[at_a + i] = _gate_product(gi, _gate_act(act, bi))
            out[at_b + i] = _gate_product(gi, ai, _gate_slope(act, bi))
        return out

    return VectorItems(value, jacobian, vjp)


def sparsemax_exact(x: Sequence[float]) -> list[Fraction]:
    """sparsemax(x) exactly (Martins and Astudillo 2016, Alg. 1, in rational arithmetic)."""
    z = [_frac(v) for v in x]
    cum, size, total = Fraction(0), 0, Fraction(0)
    for k, v in enumerate(sorted(z, reverse=True), start=1):
        cum += v
        if 1 + k * v > cum:
            size, total = k, cum
    tau = (total - 1) / size
    return [max(v - tau, Fraction(0)) for v in z]


def _sparsemax_support(x: Sequence[float]) -> list[bool]:
    # An element exactly on the edge of the support (y_i = 0) counts as outside.
    return [v > 0 for v in sparsemax_exact(x)]


def _sparsemax_jacobian_items(x: Sequence[float]) -> list[Item]:
    inside = _sparsemax_support(x)
    size = sum(inside)
    n = len(inside)
    return [
        Fraction(int(i == j and inside[i])) - Fraction(int(inside[i] and inside[j]), size)
        for i in range(n)
        for j in range(n)
    ]


def _sparsemax_vjp_items(x: Sequence[float], g: Sequence[Fraction]) -> list[Item]:
    inside = _sparsemax_support(x)
    mean = sum((gi for gi, s in zip(g, inside, strict=True) if s), Fraction(0)) / sum(inside)
    return [gi - mean if s else Fraction(0) for gi, s in zip(g, inside, strict=True)]


# -- entmax: y_i = max((alpha - 1) x_i - tau, 0)^(1/(alpha - 1)) with sum y = 1 ----------------------
#
# alpha is a float: eps = alpha - 1 and p = 1/eps are rationals, and so are z_i = eps (x_i - max x) <= 0.
# With theta = tau - eps max x in [-1, 0), y_i = (z_i - theta)^p on the support z_i > theta.  The support
# is decided exactly: z_j lies inside iff P_j = sum over z_i > z_j of (z_i - z_j)^p is below 1, and it lies
# on the edge (y_j = 0 exactly, outside) iff P_j = 1.  Each term is a positive real radical (its power
# p's denominator is rational), and such radicals that are not rational multiples of each other are
# linearly independent over Q (Siegel 1972): P_j = 1 only if every term is rational, and then it is
# decided in rationals; otherwise P_j != 1 and close enough an evaluation decides.
#
# y is rational throughout (Fractions) where the support holds one value (y = 1/k), at alpha = 2 (the
# sparsemax), and where a rational theta solves it (alpha = 3 and two components, e.g.); at alpha = 1.5
# everything but dy/dalpha lies in Q(sqrt D), D = (1 - ss)/k: exact there too.  Elsewhere theta comes
# from Newton's method at the precision the smallest gap needs.  The Jacobian's elements are 0 only off
# the support (or for a support of one); a VJP or dy/dalpha is called 0 only where it is 0 identically
# (off the support; each group of equal components with the same mean of g; a support of equal
# components): any other exact 0 (an algebraic coincidence) is never taken for one and leaves
# :func:`settled` undecided.  alpha = 1 is softmax, whose items give y, J and the VJP.

Parts = tuple[list[mp.mpf], list[mp.mpf], list[mp.mpf]]


def _root(n: int, k: int) -> int | None:
    """The k-th root of an integer n >= 0 where it is an integer, else None."""
    if n < 2 or k == 1:
        return n
    if k >= n.bit_length():  # 2^k > n
        return None
    r = 1 << -(-n.bit_length() // k)  # above the root: Newton's steps fall to its floor
    while True:
        s = ((k - 1) * r + n // r ** (k - 1)) // k
        if s >= r:
            break
        r = s
    return r if r**k == n else None


def _rational_power(q: Fraction, e: Fraction) -> Fraction | None:
    """q^e (q > 0) where it is rational and takes at most 2^16 bits to write, else None."""
    u, v = _root(q.numerator, e.denominator), _root(q.denominator, e.denominator)
    if u is None or v is None or abs(e.numerator) * (max(u, v).bit_length() - 1) > 1 << 16:
        return None
    return Fraction(u, v) ** e.numerator


def _log2(q: Fraction) -> int:
    """About log2 |q| (q != 0)."""
    return abs(q.numerator).bit_length() - q.denominator.bit_length()


class Entmax:
    """One vector of alpha-entmax (alpha = 1: softmax): its support, and y rational where it is."""

    def __init__(self, x: Sequence[float], alpha: float) -> None:
        self.x = [_frac(v) for v in x]
        self.n = len(self.x)
        self.eps = _frac(alpha) - 1
        assert self.eps >= 0, alpha
        self.p = 1 / self.eps if self.eps else Fraction(0)
        self.p_bits = max(0, _log2(self.p) + 1) if self.p else 0
        top = max(self.x)
        self.z = [self.eps * (v - top) for v in self.x]
        self.support = list(range(self.n)) if not self.eps else self._support()
        self.k = len(self.support)
        self.at = {i: t for t, i in enumerate(self.support)}
        #: (each group's positions on the support): components equal to each other
        groups: dict[Fraction, list[int]] = {}
        for t, i in enumerate(self.support):
            groups.setdefault(self.x[i], []).append(t)
        self.groups = list(groups.values())
        self.exact: list[Fraction] | None = None  # y on the support, where every one is rational
        self.surd: tuple[Fraction, list[Fraction]] | None = None  # alpha = 1.5: y_t = (c_t + sqrt D)^2
        self._parts: dict[int, Parts] = {}
        zs = [self.z[i] for i in self.support]
        if not self.eps:
            return
        if len(self.groups) == 1:
            self.exact = [Fraction(1, self.k)] * self.k
        elif self.eps == 1:  # sparsemax
            theta = (sum(zs, Fraction(0)) - 1) / self.k
            self.exact = [v - theta for v in zs]
        elif self.eps == Fraction(1, 2):
            mean = sum(zs, Fraction(0)) / self.k
            c = [v - mean for v in zs]
            d = (1 - sum((v * v for v in c), Fraction(0))) / self.k
            r = _rational_power(d, Fraction(1, 2))
            if r is None:
                self.surd = (d, c)
            else:
                self.exact = [(v + r) ** 2 for v in c]
        else:
            self.exact = self._rational()

    def _below_one(self, gaps: list[Fraction]) -> bool:
        """Whether sum r^p < 1 over rationals r > 0 (= 1: False), decided exactly."""
        if any(r > 1 for r in gaps) or (len(gaps) > 1 and any(r == 1 for r in gaps)):
            return False
        terms = [_rational_power(r, self.p) for r in gaps]
        exact = [t for t in terms if t is not None]
        if len(exact) == len(terms):
            return sum(exact, Fraction(0)) < 1
        # A term is irrational, so the sum is not 1 (or all are rational but too large to form).
        prec = 64 + self.p_bits
        while prec <= 1 << 17:
            with mp.workprec(prec):
                logs = [_mpq(self.p) * mp.log(_mpq(r)) for r in gaps]
                total = mp.fsum(mp.exp(v) for v in logs)
                error = mp.fsum(mp.exp(v) * (abs(v) + 4) for v in logs) * mp.ldexp(ONE, 8 - prec)
                if abs(total - 1) > error:
                    return bool(total < 1)
            prec *= 2
        raise Undecided(f"entmax: sum of (z_i - z_j)^p does not part from 1 at {prec // 2} bits")

    def _support(self) -> list[int]:
        inside: set[Fraction] = set()
        for w in sorted(set(self.z), reverse=True):
            gaps = [v - w for v in self.z if v > w]
            if gaps and not self._below_one(gaps):
                break
            inside.add(w)
        return [i for i, v in enumerate(self.z) if v in inside]

    def _rational(self) -> list[Fraction] | None:
        """y where a rational theta solves it: the top y read off at high precision as a fraction,
        then checked in rationals (p's numerator and denominator at most 64)."""
        if self.p.numerator > 64 or self.p.denominator > 64:
            return None
        zs = [self.z[i] for i in self.support]
        height = max(max(abs(v.numerator).bit_length(), v.denominator.bit_length()) for v in zs)
        if height > 2048:
            return None
        top = self.support.index(self.z.index(Fraction(0)))
        y = self._solve(4 * height + 256)[0][top]
        guess = rounding.exact(y).limit_denominator(1 << (2 * height + 64))
        gap = _rational_power(guess, 1 / self.p) if guess > 0 else None
        if gap is None:
            return None
        out = []
        for v in zs:
            value = _rational_power(v + gap, self.p) if v + gap > 0 else None
            if value is None:
                return None
            out.append(value)
        return out if sum(out, Fraction(0)) == 1 else None

    def _solve(self, prec: int) -> Parts:
        """y, s = y^(2 - alpha) and log y on the support, from theta = -e^u: Newton's method (bisection
        where it strays) on F(u) = log sum y = 0, F increasing, with as many more bits as the smallest gap
        z_i - theta loses against theta (a gap below the precision leaves no root there: more bits)."""
        extra = 32 + self.p_bits
        while extra <= 1 << 20:
            need = 0
            with mp.workprec(prec + extra):
                z = [_mpq(self.z[i]) for i in self.support]
                p = _mpq(self.p)
                lo, hi, u = mp.log(-min(z)), ZERO, ZERO  # F(lo) < 0 <= F(0): theta = -1 at u = 0
                for _ in range(8 * (prec + extra)):
                    e = mp.exp(u)
                    gaps = [v + e for v in z if v + e > 0]
                    logs = [p * mp.log(g) for g in gaps]
                    big = max(logs)
                    w = [mp.exp(v - big) for v in logs]
                    total = mp.fsum(w)
                    f = big + mp.log(total)
                    if f > 0:
                        hi = u
                    else:
                        lo = u
                    slope = p * e * mp.fsum(wi / g for wi, g in zip(w, gaps, strict=True)) / total
                    new = u - f / slope if lo < u - f / slope < hi else (lo + hi) / 2
                    done = abs(new - u) * e <= min(gaps) * mp.ldexp(ONE, 8 - prec - extra)
                    u = new
                    if done:
                        e = mp.exp(u)
                        gaps = [v + e for v in z]
                        small = min(gaps)
                        if small > 0:
                            lost = int(max(ZERO, mp.log(e / small, 2)))
                            if extra >= lost + 24 + self.p_bits:
                                logs = [p * mp.log(g) for g in gaps]
                                y = [mp.exp(v) for v in logs]
                                s = [yi / g for yi, g in zip(y, gaps, strict=True)]
                                return [+v for v in y], [+v for v in s], [+v for v in logs]
                            need = lost + 48 + self.p_bits
                        break
            extra = max(2 * extra, need)
        raise Undecided("entmax: theta not found to the precision its smallest gap needs")

    def parts(self, prec: int) -> Parts:
        """(y, s, log y) on the support to about ``prec`` bits (s = y^(2 - alpha))."""
        if prec in self._parts:
            return self._parts[prec]
        with mp.workprec(prec + 16):
            if not self.eps:
                q = [self.x[i] - max(self.x) for i in self.support]
                e = [_exp(v) for v in q]
                m = sum(v == 0 for v in q)
                rest = mp.fsum(v for v, w in zip(e, q, strict=True) if w != 0)
                log_total = mp.log(m) + mp.log1p(rest / m)
                total = m + rest
                y = [v / total for v in e]
                logs = [_mpq(v) - log_total for v in q]
                out = (y, y, logs)
            elif self.exact is not None:
                y = [_mpq(v) for v in self.exact]
                logs = [mp.log(v) for v in y]
                out = (y, [mp.exp((1 - _mpq(self.eps)) * v) for v in logs], logs)
            elif self.surd is not None:
                d, c = self.surd
                s = [_surd_value(v, Fraction(1), d) for v in c]
                out = ([v * v for v in s], s, [2 * mp.log(v) for v in s])
            else:
                out = self._solve(prec + 16)
        with mp.workprec(prec):
            self._parts[prec] = ([+v for v in out[0]], [+v for v in out[1]], [+v for v in out[2]])
        return self._parts[prec]


def _surd_value(a: Fraction, b: Fraction, d: Fraction) -> mp.mpf:
    """a + b sqrt(d) at the working precision, without cancellation ((a^2 - b^2 d)/(a - b sqrt d) where
    the two terms' signs differ)."""
    r = mp.sqrt(_mpq(d))
    if a == 0 or b == 0 or (a > 0) == (b > 0):
        return _mpq(a) + _mpq(b) * r
    return _mpq(a * a - b * b * d) / (_mpq(a) - _mpq(b) * r)


def _surd_item(a: Fraction, b: Fraction, d: Fraction) -> Item:
    """a + b sqrt(d), d not a square: a Fraction where b = 0."""
    if b == 0:
        return a
    return lambda: +_surd_value(a, b, d)


def _entmax_item(e: Entmax, terms: Callable[[Parts], list[mp.mpf]]) -> Item:
    """The sum of ``terms`` of (y, s, log y) to the working precision: evaluated with as many more bits
    as it cancels (up to a limit, beyond which the sum is taken as it is: :func:`settled` finds it moving)."""

    def value() -> mp.mpf:
        prec = mp.mp.prec
        extra, limit = 32, 8 * prec + 4096
        while True:
            with mp.workprec(prec + extra):
                parts = terms(e.parts(prec + extra))
                total = mp.fsum(parts)
                size = mp.fsum(abs(v) for v in parts)
            if extra >= limit or (total != 0 and size <= abs(total) * mp.ldexp(ONE, extra - 24)):
                return +total
            lost = int(mp.log(size / abs(total), 2)) if total != 0 else extra
            extra = min(max(2 * extra, lost + 48), limit)

    return value


def _y_terms(t: int, parts: Parts) -> list[mp.mpf]:
    return [parts[0][t]]


def _jacobian_terms(a: int, b: int, parts: Parts) -> list[mp.mpf]:
    # s_a (sum of the others' s) / sum s on the diagonal: no cancellation
    s = parts[1]
    if a == b:
        return [s[a] * mp.fsum(v for t, v in enumerate(s) if t != a) / mp.fsum(s)]
    return [-s[a] * s[b] / mp.fsum(s)]


def _vjp_terms(b: int, g: Sequence[Fraction], parts: Parts) -> list[mp.mpf]:
    # s_b sum_i s_i (g_b - g_i) / sum s, g on the support
    s = parts[1]
    total = mp.fsum(s)
    return [s[b] * si * _mpq(g[b] - gi) / total for si, gi in zip(s, g, strict=True) if gi != g[b]]


def _pair_terms(eps: Fraction, xs: Sequence[Fraction], t: int, k: int, parts: Parts) -> list[mp.mpf]:
    """B_tk as a sum of terms, where dy_t/dalpha = sum_k B_tk and B_kt = -B_tk.

    With yt = s / sum s, sum y = sum yt = 1 turns y_t - yt_t into sum_k (y_t yt_k - yt_t y_k) and
    y_t log y_t - yt_t sum_k y_k log y_k into sum_k (yt_k y_t log y_t - yt_t y_k log y_k), so that
    B_tk = ((y_t s_k - s_t y_k)/eps - (s_k y_t log y_t - s_t y_k log y_k)) / (eps sum s): 0 for equal
    components, and no term cancels another identically (where y_k is far below y_t the plain form
    loses as many bits as y_k has exponent).  alpha = 1, the limit y_t (sum_k y_k log^2 y_k - log^2 y_t)/2:
    B_tk = y_t y_k (x_k - x_t)(log y_k + log y_t) / 2 (log y_k - log y_t = x_k - x_t)."""
    y, s, logs = parts
    if not eps:
        return [y[t] * y[k] * _mpq(xs[k] - xs[t]) * (logs[k] + logs[t]) / 2]
    e = _mpq(eps)
    c = 1 / (e * mp.fsum(s))
    return [y[t] * s[k] * c / e, -s[t] * y[k] * c / e, -s[k] * y[t] * logs[t] * c, s[t] * y[k] * logs[k] * c]


def _dydalpha_terms(eps: Fraction, xs: Sequence[Fraction], t: int, parts: Parts) -> list[mp.mpf]:
    # dy_t/dalpha = sum_k B_tk, xs on the support
    return [v for k in range(len(xs)) if xs[k] != xs[t] for v in _pair_terms(eps, xs, t, k, parts)]


def _grad_alpha_terms(
    eps: Fraction, xs: Sequence[Fraction], g: Sequence[Fraction], parts: Parts
) -> list[mp.mpf]:
    # sum_t g_t dy_t/dalpha = sum_{t < k} (g_t - g_k) B_tk, xs and g on the support
    n = len(xs)
    return [
        _mpq(g[t] - g[k]) * v
        for t in range(n)
        for k in range(t + 1, n)
        if xs[t] != xs[k] and g[t] != g[k]
        for v in _pair_terms(eps, xs, t, k, parts)
    ]


@functools.lru_cache(maxsize=64)
def _entmax_state(x: tuple[float, ...], alpha: float) -> Entmax:
    """One Entmax per vector and alpha, shared by its items."""
    return Entmax(x, alpha)


def _entmax_value_items(x: Sequence[float], alpha: float = 1.5) -> list[Item]:
    if alpha == 1:
        return _softmax_items(Family(x, 1.0))
    if alpha == 2:
        return list(sparsemax_exact(x))
    e = _entmax_state(tuple(map(float, x)), alpha)
    out: list[Item] = [Fraction(0)] * e.n
    for t, i in enumerate(e.support):
        if e.exact is not None:
            out[i] = e.exact[t]
        elif e.surd is not None:
            d, c = e.surd
            out[i] = _surd_item(c[t] * c[t] + d, 2 * c[t], d)
        else:
            out[i] = _entmax_item(e, functools.partial(_y_terms, t))
    return out


def _exact_s(e: Entmax) -> list[Fraction] | None:
    """s = y^(2 - alpha) on the support where y and every s are rational."""
    if e.exact is None:
        return None
    s = [_rational_power(v, 1 - e.eps) for v in e.exact]
    out = [v for v in s if v is not None]
    return out if len(out) == len(s) else None


def _entmax_jacobian_items(x: Sequence[float], alpha: float = 1.5) -> list[Item]:
    # J_ij = s_i delta_ij - s_i s_j / sum s on the support, 0 off it
    if alpha == 1:
        return _softmax_jacobian_items(Family(x, 1.0))
    if alpha == 2:
        return _sparsemax_jacobian_items(x)
    e = _entmax_state(tuple(map(float, x)), alpha)
    n = e.n
    out: list[Item] = [Fraction(0)] * (n * n)
    exact = _exact_s(e)
    total = sum(exact, Fraction(0)) if exact is not None else Fraction(0)
    for a, i in enumerate(e.support):
        for b, j in enumerate(e.support):
            if exact is not None:
                out[i * n + j] = (exact[a] if a == b else 0) - exact[a] * exact[b] / total
            elif e.surd is not None:
                # s_t = c_t + r, sum s = k r: s_a s_b / (k r) = (c_a + c_b)/k + (c_a c_b + D)/(k D) r
                d, c = e.surd
                first, second = (c[a] + c[b]) / e.k, (c[a] * c[b] + d) / (e.k * d)
                out[i * n + j] = (
                    _surd_item(c[a] - first, 1 - second, d) if a == b else _surd_item(-first, -second, d)
                )
            else:
                out[i * n + j] = _entmax_item(e, functools.partial(_jacobian_terms, a, b))
    return out


def _equal_means(e: Entmax, g: Sequence[Fraction], mean: Fraction | None = None) -> bool:
    """Whether every group of equal components on the support has the same mean of g (``mean``)."""
    means = {sum((g[e.support[t]] for t in group), Fraction(0)) / len(group) for group in e.groups}
    return len(means) == 1 and (mean is None or means == {mean})


def _entmax_vjp_items(x: Sequence[float], g: Sequence[Fraction], alpha: float = 1.5) -> list[Item]:
    # s_j (g_j - sum_i g_i s_i / sum s): 0 off the support, and where every group's mean of g is g_j
    if alpha == 1:
        return _softmax_vjp_items(Family(x, 1.0), g)
    if alpha == 2:
        return _sparsemax_vjp_items(x, g)
    e = _entmax_state(tuple(map(float, x)), alpha)
    out: list[Item] = [Fraction(0)] * e.n
    gs = [g[i] for i in e.support]
    exact = _exact_s(e)
    mean = Fraction(0)
    if exact is not None:
        mean = sum((gi * si for gi, si in zip(gs, exact, strict=True)), Fraction(0)) / sum(exact, Fraction(0))
    for b, j in enumerate(e.support):
        if exact is not None:
            out[j] = exact[b] * (g[j] - mean)
        elif e.surd is not None:
            # (c_j + r)(A - B r) with A = g_j - G0/k, B = G1/(k D): G0 = sum g, G1 = sum g c
            d, c = e.surd
            big_a = g[j] - sum(gs, Fraction(0)) / e.k
            big_b = sum((gi * ci for gi, ci in zip(gs, c, strict=True)), Fraction(0)) / (e.k * d)
            out[j] = _surd_item(c[b] * big_a - big_b * d, big_a - c[b] * big_b, d)
        elif _equal_means(e, g, g[j]):
            out[j] = Fraction(0)
        else:
            out[j] = _entmax_item(e, functools.partial(_vjp_terms, b, gs))
    return out


def _entmax_dydalpha_items(x: Sequence[float], alpha: float = 1.5) -> list[Item]:
    e = _entmax_state(tuple(map(float, x)), alpha)
    out: list[Item] = [Fraction(0)] * e.n
    if len(e.groups) == 1:  # y = 1/k on the support whatever alpha
        return out
    xs = [e.x[i] for i in e.support]
    for t, i in enumerate(e.support):
        out[i] = _entmax_item(e, functools.partial(_dydalpha_terms, e.eps, xs, t))
    return out


def _entmax_grad_alpha_item(x: Sequence[float], g: Sequence[Fraction], alpha: float = 1.5) -> Item:
    # sum_i g_i dy_i/dalpha: 0 where every group's mean of g is the same (sum_i dy_i/dalpha = 0)
    e = _entmax_state(tuple(map(float, x)), alpha)
    if _equal_means(e, g):
        return Fraction(0)
    xs, gs = [e.x[i] for i in e.support], [g[i] for i in e.support]
    return _entmax_item(e, functools.partial(_grad_alpha_terms, e.eps, xs, gs))


def _entmax_items() -> VectorItems:
    """alpha-entmax's items (``alpha`` where softmax has ``temperature``): dydt is dy/dalpha, grad_t
    sum_i g_i dy_i/dalpha."""
    return VectorItems(
        _entmax_value_items,
        _entmax_jacobian_items,
        lambda x, g, alpha=1.5: _entmax_vjp_items(x, [_frac(v) for v in g], alpha),
        _entmax_dydalpha_items,
        lambda x, g, alpha=1.5: _entmax_grad_alpha_item(x, [_frac(v) for v in g], alpha),
    )


def _family(x: Sequence[float], temperature: float, negate: bool) -> Family:
    return Family([-float(v) for v in x] if negate else x, temperature)


def _softmax_like(negate: bool, log: bool) -> dict[str, Callable[..., Any]]:
    """The items of softmax (softmin: of -x, the x-derivatives negated) or log_softmax."""
    sign = _negated if negate else (lambda item: item)
    value = _log_softmax_items if log else _softmax_items
    jac = _log_softmax_jacobian_items if log else _softmax_jacobian_items
    vjp = _log_softmax_vjp_items if log else _softmax_vjp_items
    dydt = _log_softmax_dydt_items if log else _softmax_dydt_items
    grad_t = _log_softmax_grad_t_item if log else _softmax_grad_t_item

    def fam(x: Sequence[float], temperature: float) -> Family:
        return _family(x, temperature, negate)

    return {
        "value": lambda x, temperature=1.0: value(fam(x, temperature)),
        "jacobian": lambda x, temperature=1.0: [sign(v) for v in jac(fam(x, temperature))],
        "vjp": lambda x, g, temperature=1.0: [
            sign(v) for v in vjp(fam(x, temperature), [_frac(v) for v in g])
        ],
        "dydt": lambda x, temperature=1.0: dydt(fam(x, temperature)),
        "grad_t": lambda x, g, temperature=1.0: grad_t(fam(x, temperature), [_frac(v) for v in g]),
    }


@dataclass(frozen=True)
class VectorItems:
    """Items of one vector (x 1-D, g with y's length; ``temperature`` where the function has it):
    ``value`` y, ``jacobian`` J row-major (J[i * n + j] = dy_i/dx_j), ``vjp`` sum_i g_i J_ij,
    ``dydt`` dy/dT and ``grad_t`` sum_i g_i dy_i/dT (None without a temperature)."""

    value: Callable[..., list[Item]]
    jacobian: Callable[..., list[Item]]
    vjp: Callable[..., list[Item]]
    dydt: Callable[..., list[Item]] | None = None
    grad_t: Callable[..., Item] | None = None


def _family_items(negate: bool, log: bool) -> VectorItems:
    parts = _softmax_like(negate, log)
    return VectorItems(parts["value"], parts["jacobian"], parts["vjp"], parts["dydt"], parts["grad_t"])


def _gumbel_items() -> VectorItems:
    """softmax's items at the logits x + g of a vector alone (a batch: see gumbel_noise)."""
    base = _family_items(negate=False, log=False)

    def at(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda x, *rest, temperature=1.0, seed=0.0: fn(
            gumbel_logits(x, seed), *rest, temperature=temperature
        )

    assert base.dydt is not None
    assert base.grad_t is not None
    return VectorItems(at(base.value), at(base.jacobian), at(base.vjp), at(base.dydt), at(base.grad_t))


VECTOR_ITEMS: dict[str, VectorItems] = {
    "softmax": _family_items(negate=False, log=False),
    "log_softmax": _family_items(negate=False, log=True),
    "softmin": _family_items(negate=True, log=False),
    "glu": VectorItems(
        _glu_items, _glu_jacobian_items, lambda x, g: _glu_vjp_items(x, [_frac(v) for v in g])
    ),
    "swiglu": _gated_items("silu"),
    "geglu": _gated_items("gelu"),
    "geglu_tanh": _gated_items("gelu_tanh"),
    "reglu": _gated_items("relu"),
    "gumbel_softmax": _gumbel_items(),
    "sparsemax": VectorItems(
        lambda x: list(sparsemax_exact(x)),
        _sparsemax_jacobian_items,
        lambda x, g: _sparsemax_vjp_items(x, [_frac(v) for v in g]),
    ),
    "entmax15": VectorItems(
        lambda x: _entmax_value_items(x, 1.5),
        lambda x: _entmax_jacobian_items(x, 1.5),
        lambda x, g: _entmax_vjp_items(x, [_frac(v) for v in g], 1.5),
    ),
    "entmax": _entmax_items(),
}


def add_items(items: Sequence[Item]) -> Item:
    """The sum of items (grad_params over a batch): a Fraction when every one is."""
    if all(isinstance(v, Fraction) for v in items):
        return sum(items, Fraction(0))  # type: ignore[arg-type]
    return lambda: mp.fsum(_mpq(v) if isinstance(v, Fraction) else v() for v in items)


#: Digits of the first evaluation, and the most :func:`correctly_rounded` goes to.
START_DIGITS = 40
MAX_DIGITS = START_DIGITS * 2**8


class Undecided(AssertionError):
    """A value whose rounding did not settle: the reference, not the service, needs looking at."""


def _midpoint(v: mp.mpf, fmt: str) -> bool:
    """Whether v lies exactly halfway between two numbers of ``fmt``."""
    precision, qmin, emax = rounding.FORMATS[fmt]
    _, man, exp, bc = v._mpf_
    if not man:
        return False
    top = int(exp) + int(bc) - 1
    if top > emax + 1 or top < qmin - 2:
        return False
    quantum = max(top - precision + 1, qmin)
    shift = quantum - int(exp)
    if shift <= 0:
        return False
    return int(man) & ((1 << shift) - 1) == 1 << (shift - 1)


def _bits(v: float) -> tuple[bool, float]:
    return (math.copysign(1.0, v) < 0, abs(v))


def _rounding_key(v: mp.mpf, fmt: str) -> tuple[object, ...]:
    """What v rounds to in ``fmt`` (sign, odd significand, exponent; or sign and 0 or inf), in integer
    arithmetic: a quick comparison between precisions (the result itself comes from tests/rounding.py)."""
    precision, qmin, emax = rounding.FORMATS[fmt]
    sign, man, exp, bc = v._mpf_
    man, exp = int(man), int(exp)
    top = exp + int(bc) - 1
    if top > emax + 1:
        return (sign, "inf")
    if top < qmin - 2:
        return (sign, 0)
    quantum = max(top - precision + 1, qmin)
    if exp >= quantum:
        whole = man << (exp - quantum)
    else:
        shift = quantum - exp
        whole, rest, half = man >> shift, man & ((1 << shift) - 1), 1 << (shift - 1)
        if rest > half or (rest == half and whole & 1):
            whole += 1
    if whole == 0:
        return (sign, 0)
    if quantum + whole.bit_length() - 1 > emax:
        return (sign, "inf")
    zeros = (whole & -whole).bit_length() - 1
    return (sign, whole >> zeros, quantum + zeros)


def correctly_rounded(items: Sequence[Item], fmts: Sequence[str]) -> dict[str, list[float]]:
    """Each item rounded to nearest (ties to even) in each format, +-inf beyond its range (see
    :func:`settled`)."""
    return settled(items, fmts)[1]


def settled(
    items: Sequence[Item], fmts: Sequence[str], undecided: set[int] | None = None
) -> tuple[list[Fraction | mp.mpf], dict[str, list[float]]]:
    """Each item's value (the Fraction, or the mpf at the precision where it settled) and its rounding
    to nearest (ties to even) in each format, +-inf beyond its range.

    Fractions are rounded exactly.  The others are evaluated at START_DIGITS digits and at twice
    as many, and so on, until two consecutive evaluations agree to half the digits of the first and
    round to the same number in every format, neither halfway between two numbers (a transcendental
    value never is; it may only look so at one precision).  One that never settles raises
    :class:`Undecided`: the reference never takes a value that keeps moving, or an exact 0, for the
    answer.  With ``undecided`` (a set), such an item is taken as it is at MAX_DIGITS instead, and its
    index added to the set.
    """
    out = {fmt: [math.nan] * len(items) for fmt in fmts}
    values: list[Fraction | mp.mpf] = [Fraction(0)] * len(items)
    pending: list[int] = []
    for k, item in enumerate(items):
        if isinstance(item, Fraction):
            values[k] = item
            for fmt in fmts:
                out[fmt][k] = rounding.round_to(item, fmt)
        else:
            pending.append(k)
    digits = START_DIGITS
    previous: dict[int, mp.mpf] = {}
    while pending:
        if digits > MAX_DIGITS:
            if undecided is None:
                raise Undecided(f"items {pending[:5]} still move at {MAX_DIGITS} digits")
            for k in pending:
                undecided.add(k)
                values[k] = previous[k]
                for fmt in fmts:
                    out[fmt][k] = rounding.round_mpf(previous[k], fmt)
            break
        with mp.workdps(digits):
            now = {k: items[k]() for k in pending}  # type: ignore[operator]
        still = []
        for k in pending:
            hi, lo = now[k], previous.get(k)
            ok = (
                lo is not None
                and hi != 0
                and lo != 0
                and mp.sign(hi) == mp.sign(lo)
                and abs(hi - lo) <= abs(hi) * mp.mpf(10) ** (-(digits // 4))
            )
            if ok:
                ok = all(
                    _rounding_key(hi, fmt) == _rounding_key(lo, fmt) and not _midpoint(hi, fmt)  # type: ignore[arg-type]
                    for fmt in fmts
                )
            if ok:
                got = {fmt: rounding.round_mpf(hi, fmt) for fmt in fmts}
                values[k] = hi
                for fmt in fmts:
                    out[fmt][k] = got[fmt]
            else:
                still.append(k)
        previous = now
        pending = still
        digits *= 2
    return values, out
