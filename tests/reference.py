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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import mpmath as mp

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


def vjp(jac: list[Vec], g: Sequence[float]) -> Vec:
    """sum_i g_i J_ij."""
    return [mp.fsum(mp.mpf(float(g[i])) * jac[i][j] for i in range(len(jac))) for j in range(len(jac[0]))]


@dataclass(frozen=True)
class Vector:
    value: Callable[..., Vec]
    jacobian: Callable[..., list[Vec]]


VECTOR: dict[str, Vector] = {
    "softmax": Vector(softmax, softmax_jacobian),
    "log_softmax": Vector(log_softmax, log_softmax_jacobian),
    "softmin": Vector(softmin, softmin_jacobian),
    "glu": Vector(glu, glu_jacobian),
    "sparsemax": Vector(sparsemax, sparsemax_jacobian),
}


def softmax_vjp(x: Sequence[float], g: Sequence[float]) -> Vec:
    return vjp(softmax_jacobian(x), g)
