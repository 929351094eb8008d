"""Smooth activations: the exponential-linear, Gaussian-error and sigmoid-weighted families.

Where a function is evaluated at a scaled argument (beta*x, 1.702*x, x/sqrt(2))
the product is carried as hi + lo (see :mod:`.exact`), so that the tails, where
the rounding of the argument is amplified by exp, keep full relative accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpfr
from scipy import special

from . import bounded as bd
from . import exact
from .bounded import Bounded
from .elementwise import rational_to_odd, sech2
from .exact import EXTENDED
from .registry import Activation, Array, Exact, Example, Kink, Param, register

#: Klambauer, Unterthiner, Mayr and Hochreiter, Self-normalizing neural networks (2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SELU_SCALE_ALPHA = exact.dd_constant("1.7580993408473768599402175208123")[0]
INV_SQRT2 = exact.dd_constant("0.70710678118654752440084436210484903928483593768847")
INV_SQRT_2PI = 0.3989422804014327  # 1/sqrt(2 pi), correctly rounded
SQRT_HALF_PI = 1.2533141373155003  # sqrt(pi/2), correctly rounded
#: 2 sqrt(2/pi) and 0.044715 of the tanh approximation of GELU (Hendrycks and Gimpel 2016).
GELU_TANH_K = exact.dd_constant("1.5957691216057307117597842397375")
GELU_TANH_A = exact.rational_constant("0.044715")
QUICK_GELU_BETA = exact.rational_constant("1.702")

# -- exact definitions: shared pieces ------------------------------------------------------------
#
# The ``Exact`` definitions below evaluate each quantity with MPFR at the working precision P
# (the caller's precision, at least 128 bits so that the product of two float64 numbers is exact).
# Three things besides plain cancellation would defeat the caller's strategy of raising the
# precision until the rounded result stops changing:
#
# * A result m + d where m is a short binary number (x, x/2, alpha, beta/4, x^2, ...) and d is far
#   below its last place (x - x Phi(-x) at x = 40; x/2 + x^2 phi(0) at x = 1e-300).  Where m is a
#   midpoint of the target format, m itself rounds to even although the true value lies to one
#   side of it, at every precision the caller tries.  Such results are formed by ``_plus_tiny``,
#   which keeps the side of d; the small-argument ones from the first terms of their series once
#   d / m < 2^-(P/2 + 4) (the next term is then below 2^-P).
# * Exponentials beyond MPFR's exponent range: e^-y is taken at y <= _TAIL.  e^-65536 = 2^-94548 is
#   far below the last place of any result at any precision used here and, multiplied by any power
#   of a finite double that occurs here, far below every format's smallest subnormal; it keeps the
#   sign of a result that underflows (-0 rather than +0) and the time of exp small.
# * The irrational roots of f' and f'': no float64 input is a root, but a formula that cancels to
#   exactly 0 would be taken as exact; ``_nonzero`` evaluates it again with more bits.

_TAIL = 65536
_MIN_BITS = 128


def _at(extra: int = 0) -> Any:
    """The working context: the current precision (at least _MIN_BITS) plus ``extra`` bits."""
    context = gmpy2.get_context()
    return gmpy2.context(context, precision=max(context.precision, _MIN_BITS) + extra)


def _nonzero(formula: Callable[..., mpfr], *args: mpfr, extra: int = 0) -> mpfr:
    """formula(*args) in the working context (plus ``extra`` bits), again with more bits while it
    cancels to exactly 0 (used where the true value is never 0)."""
    while True:
        with _at(extra):
            result = formula(*args)
        if not gmpy2.is_zero(result) or extra >= 1 << 16:
            return result
        extra = 2 * extra + 64


def _exponent(v: mpfr) -> int:
    """e with 2^(e-1) <= |v| < 2^e (0 for v = 0)."""
    return int(gmpy2.get_exp(v))


def _boost(v: mpfr) -> int:
    """Bits that absorb the rounding of an argument v of exp: its relative error 2^-P becomes
    |v| 2^-P in the result (up to |v| = _TAIL, where the clamp takes over)."""
    return min(max(_exponent(v), 0), 17) + 4


def _tiny(d: mpfr) -> bool:
    """|d| < 2^-(P/2 + 4): a relative deviation whose square is negligible at the working precision."""
    return bool(gmpy2.is_zero(d)) or _exponent(d) < -(gmpy2.get_context().precision // 2) - 4


def _plus_tiny(main: mpfr, correction: mpfr) -> mpfr:
    """main + correction rounded to the working precision, but never to ``main`` itself when the
    correction is not 0: the neighbour on the correction's side (a faithful rounding, still within
    2^-P).  ``main`` is exact at the working precision wherever it can be a midpoint (a short
    binary number); where it is rounded, the result is still within 2^-P."""
    result = main + correction
    if result == main and not gmpy2.is_zero(correction):
        return gmpy2.next_above(result) if correction > 0 else gmpy2.next_below(result)
    return result


def _plus_tiny_rational(q: Any, correction: mpfr) -> mpfr:
    """q + correction at the working precision, rounded to odd, the rational ``q`` (a gmpy2.mpq)
    taken exactly.  Rounded on its own first, a rational of more bits than the working precision
    can land on a midpoint of a format that the correction then leaves on the wrong side: xielu's
    (beta - alpha_n) x - alpha_n at alpha_n = 2^-253 is -(1 + 2^-53 + 2^-253), which rounds to the
    float64 midpoint -(1 + 2^-53), and alpha_n e^x > 0 then moved it toward 0 (1 ULP off).  The
    only error left is the correction's own, within 2^-P of it."""
    return rational_to_odd(q if gmpy2.is_zero(correction) else q + gmpy2.mpq(correction))


def _exp_neg(y: mpfr) -> mpfr:
    """e^-y for y >= 0, with y clamped at _TAIL."""
    return gmpy2.exp(-y) if y < _TAIL else gmpy2.exp(-_TAIL)


def _sig(z: mpfr) -> mpfr:
    """sigma(z), with no cancellation in either tail."""
    if z >= 0:
        return 1 / (1 + _exp_neg(z))
    e = _exp_neg(-z)
    return e / (1 + e)


def _dsig(z: mpfr) -> mpfr:
    """sigma'(z) = sigma(z) sigma(-z) = e / (1 + e)^2, e = e^-|z|."""
    e = _exp_neg(abs(z))
    return e / ((1 + e) * (1 + e))


# -- elu / selu / celu -------------------------------------------------------------------------


def _negative(x: Array) -> Array:
    # The "double where": the branch not taken must not overflow (expm1(1000)).
    return np.minimum(x, 0.0)


def elu(x: Array, alpha: float) -> Array:
    return np.where(x > 0, x, alpha * np.expm1(_negative(x)))


def _scaled_exp(x: Array, factor: float) -> Array:
    # factor * e^x for x <= 0, in halves: e^-710 alone is subnormal.
    return exact.exp_neg(-_negative(x), 0.0, factor)


def elu_derivative(x: Array, alpha: float) -> Array:
    # At 0 the left piece: alpha, as PyTorch and JAX.
    return np.where(x > 0, 1.0, _scaled_exp(x, alpha))


def _expm1_exact(x: mpfr) -> mpfr:
    """e^x - 1 for x <= 0: x + x^2/2 where x^2/2 is below the last place of x."""
    if _tiny(x):
        return _plus_tiny(x, x * x / 2)
    return gmpy2.expm1(x)


def _elu_exact(x: mpfr, alpha: mpfr) -> mpfr:
    if x > 0:
        return x
    with _at():
        if x < -1:
            return _plus_tiny(-alpha, alpha * _exp_neg(-x))  # -alpha + alpha e^x
        if _tiny(x):
            return _plus_tiny(alpha * x, alpha * x * x / 2)
        return alpha * gmpy2.expm1(x)


def _elu_exact_derivative(x: mpfr, alpha: mpfr) -> mpfr:
    # At 0 the left piece, alpha (the catalog's kink convention).
    if x > 0:
        return mpfr(1)
    with _at():
        if _tiny(x):
            return _plus_tiny(alpha, alpha * x)
        return alpha * _exp_neg(-x)


def _elu_exact_second(x: mpfr, alpha: mpfr) -> mpfr:
    return mpfr(0) if x > 0 else _elu_exact_derivative(x, alpha)


def _elu_exact_alpha(x: mpfr, alpha: mpfr) -> mpfr:
    if x > 0:
        return mpfr(0)
    with _at():
        return _expm1_exact(x)


def _elu_fast(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, x, bd.expm1(x) * alpha)


def _elu_fast_derivative(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, x.like(1.0), bd.exp(x) * alpha)


def _elu_fast_second(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, bd.zero(x), bd.exp(x) * alpha)


def _elu_fast_alpha(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, bd.zero(x), bd.expm1(x))


register(
    Activation(
        name="elu",
        kind="elementwise",
        fast=Bounded(_elu_fast, _elu_fast_derivative, _elu_fast_second, {"alpha": _elu_fast_alpha}),
        forward=elu,
        derivative=elu_derivative,
        second=lambda x, alpha: np.where(x > 0, 0.0, _scaled_exp(x, alpha)),
        param_grads=lambda x, alpha: {"alpha": np.where(x > 0, 0.0, np.expm1(_negative(x)))},
        exact=Exact(_elu_exact, _elu_exact_derivative, _elu_exact_second, params={"alpha": _elu_exact_alpha}),
        params=(
            Param(
                name="alpha", default=1.0, minimum=0.0, description="saturation value -alpha for x -> -inf"
            ),
        ),
        formula=r"f(x) = x \; (x > 0), \; \alpha (e^x - 1) \; (x \le 0)",
        derivative_formula=r"f'(x) = 1 \; (x > 0), \; \alpha e^x \; (x \le 0)",
        range="(-alpha, inf)",
        kinks=(
            Kink(
                at=0.0,
                derivative="alpha",
                second_derivative="alpha",
                note="the left piece, as PyTorch and JAX (smooth when alpha = 1)",
            ),
        ),
        typical_use=("hidden",),
        notes=("Negative outputs push mean activations toward 0, which speeds up learning.",),
        aliases=("ELU",),
        reference="Clevert, Unterthiner and Hochreiter, Fast and accurate deep network learning by ELUs (2016)",
        examples=(Example(x=-1.0, y=-0.6321205588285577), Example(x=2.0, y=2.0)),
    )
)

#: The published constants, exactly (Klambauer et al. 2017): built at the working precision.
SELU_ALPHA_DIGITS = "1.6732632423543772848170429916717"
SELU_SCALE_DIGITS = "1.0507009873554804934193349852946"


def _selu_scale_alpha() -> mpfr:
    return mpfr(SELU_SCALE_DIGITS) * mpfr(SELU_ALPHA_DIGITS)


def _selu_exact(x: mpfr) -> mpfr:
    # lambda alpha is not a short binary number: no result lies structurally close to a midpoint.
    with _at():
        if x > 0:
            return mpfr(SELU_SCALE_DIGITS) * x
        return _selu_scale_alpha() * gmpy2.expm1(x)


def _selu_exact_derivative(x: mpfr) -> mpfr:
    with _at():
        if x > 0:
            return mpfr(SELU_SCALE_DIGITS)
        return _selu_scale_alpha() * _exp_neg(-x)


def _selu_exact_second(x: mpfr) -> mpfr:
    if x > 0:
        return mpfr(0)
    with _at():
        return _selu_scale_alpha() * _exp_neg(-x)


def _selu_fast_constants(x: bd.B) -> tuple[bd.B, bd.B]:
    scale = bd.constant(SELU_SCALE_DIGITS, x)
    return scale, scale * bd.constant(SELU_ALPHA_DIGITS, x)


def _selu_fast(x: bd.B) -> bd.B:
    scale, scale_alpha = _selu_fast_constants(x)
    return bd.where(x.v > 0, scale * x, scale_alpha * bd.expm1(x))


def _selu_fast_derivative(x: bd.B) -> bd.B:
    scale, scale_alpha = _selu_fast_constants(x)
    return bd.where(x.v > 0, scale, scale_alpha * bd.exp(x))


def _selu_fast_second(x: bd.B) -> bd.B:
    return bd.where(x.v > 0, bd.zero(x), _selu_fast_constants(x)[1] * bd.exp(x))


register(
    Activation(
        name="selu",
        kind="elementwise",
        fast=Bounded(_selu_fast, _selu_fast_derivative, _selu_fast_second),
        forward=lambda x: np.where(x > 0, SELU_SCALE * x, SELU_SCALE_ALPHA * np.expm1(_negative(x))),
        derivative=lambda x: np.where(x > 0, SELU_SCALE, _scaled_exp(x, SELU_SCALE_ALPHA)),
        second=lambda x: np.where(x > 0, 0.0, _scaled_exp(x, SELU_SCALE_ALPHA)),
        exact=Exact(_selu_exact, _selu_exact_derivative, _selu_exact_second),
        formula=r"f(x) = \lambda x \; (x > 0), \; \lambda \alpha (e^x - 1) \; (x \le 0), \; \lambda \approx 1.0507, \alpha \approx 1.6733",
        derivative_formula=r"f'(x) = \lambda \; (x > 0), \; \lambda \alpha e^x \; (x \le 0)",
        range="(-1.7581, inf)",
        kinks=(
            Kink(
                at=0.0,
                derivative=SELU_SCALE_ALPHA,
                second_derivative=SELU_SCALE_ALPHA,
                note="the left piece, scale*alpha = 1.7581, as PyTorch and JAX",
            ),
        ),
        typical_use=("hidden",),
        notes=("Self-normalizing with LeCun-normal initialisation and alpha-dropout.",),
        aliases=("SELU",),
        reference="Klambauer et al., Self-normalizing neural networks (2017)",
        examples=(Example(x=-1.0, y=-1.1113307378125628), Example(x=1.0, y=1.0507009873554805)),
    )
)


def _celu_alpha_grad(t: Array) -> Array:
    # d/dalpha [alpha expm1(x/alpha)] = expm1(t) - t e^t with t = x/alpha <= 0.
    # The two terms cancel to -t^2/2 for small t: sum the series there.
    small = np.abs(t) < 0.5
    out = np.expm1(t) - t * np.exp(t)
    ts = t[small]  # only there: elsewhere the terms overflow and inf - inf is NaN
    series = np.zeros_like(ts)
    term = ts.copy()  # t^n / n! for n = 1
    for n in range(2, 20):
        term = term * ts / n
        series = series + (1 - n) * term
    out[small] = series
    return out


def _celu_exp(x: Array, alpha: float) -> Array:
    # exp(x/alpha) with the quotient carried as hi + lo: its rounding would
    # otherwise be amplified |x/alpha|-fold (10 ULP at x = -50, alpha = 2.5).
    hi, lo = exact.divide(_negative(x), alpha)
    # (where x / alpha is beyond float64, lo is not small, or not a number: e^hi is 0 there)
    return np.exp(hi) * (1.0 + np.where(np.abs(lo) < 1.0, lo, 0.0))


def _celu_at(x: mpfr, alpha: mpfr) -> Any:
    """The working context for t = x / alpha, whose rounding exp(t) amplifies |t|-fold."""
    return _at(min(max(_exponent(x) - _exponent(alpha) + 1, 0), 17) + 4)


def _celu_exact(x: mpfr, alpha: mpfr) -> mpfr:
    if x > 0:
        return x
    with _celu_at(x, alpha):
        t = x / alpha
        if t < -1:
            return _plus_tiny(-alpha, alpha * _exp_neg(-t))  # -alpha + alpha e^t
        if _tiny(t):
            return _plus_tiny(x, x * t / 2)  # alpha (t + t^2/2)
        return alpha * gmpy2.expm1(t)


def _celu_exact_derivative(x: mpfr, alpha: mpfr) -> mpfr:
    if x > 0:
        return mpfr(1)
    with _celu_at(x, alpha):
        return _exp_neg(-x / alpha)


def _celu_exact_second(x: mpfr, alpha: mpfr) -> mpfr:
    # At 0 the left piece, 1/alpha.
    if x > 0:
        return mpfr(0)
    with _celu_at(x, alpha):
        return _exp_neg(-x / alpha) / alpha


def _celu_exact_alpha(x: mpfr, alpha: mpfr) -> mpfr:
    # d/dalpha [alpha expm1(x/alpha)] = expm1(t) - t e^t = -t^2/2 - t^3/3 - ..., t = x/alpha <= 0.
    if x > 0:
        return mpfr(0)
    with _celu_at(x, alpha):
        t = x / alpha
        if t < -1:
            e = _exp_neg(-t)
            return e * (1 - t) - 1
        if _tiny(t):
            return _plus_tiny(-t * t / 2, -t * t * t / 3)
    # The two terms cancel to -t^2/2: |t|'s exponent in bits more.
    with _celu_at(x, alpha), _at(-_exponent(t) + 4):
        t = x / alpha
        return gmpy2.expm1(t) - t * gmpy2.exp(t)


def _celu_fast(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, x, bd.expm1(bd.quotient(x, alpha)) * alpha)


def _celu_fast_derivative(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, x.like(1.0), bd.exp(bd.quotient(x, alpha)))


def _celu_fast_second(x: bd.B, alpha: float) -> bd.B:
    return bd.where(x.v > 0, bd.zero(x), bd.exp(bd.quotient(x, alpha)) / alpha)


def _celu_fast_alpha(x: bd.B, alpha: float) -> bd.B:
    # expm1(t) - t e^t, t = x / alpha: cancels near 0, where the bound sends it to the exact route.
    t = bd.quotient(x, alpha)
    return bd.where(x.v > 0, bd.zero(x), bd.expm1(t) - t * bd.exp(t))


register(
    Activation(
        name="celu",
        kind="elementwise",
        fast=Bounded(_celu_fast, _celu_fast_derivative, _celu_fast_second, {"alpha": _celu_fast_alpha}),
        forward=lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(_negative(x) / alpha)),
        derivative=lambda x, alpha: np.where(x > 0, 1.0, _celu_exp(x, alpha)),
        second=lambda x, alpha: np.where(x > 0, 0.0, _celu_exp(x, alpha) / alpha),
        param_grads=lambda x, alpha: {"alpha": np.where(x > 0, 0.0, _celu_alpha_grad(_negative(x) / alpha))},
        exact=Exact(
            _celu_exact, _celu_exact_derivative, _celu_exact_second, params={"alpha": _celu_exact_alpha}
        ),
        params=(
            Param(
                name="alpha",
                default=1.0,
                minimum=0.0,
                exclusive_minimum=True,
                description="scale of the negative part",
            ),
        ),
        formula=r"f(x) = \max(0, x) + \min(0, \alpha (e^{x/\alpha} - 1))",
        derivative_formula=r"f'(x) = 1 \; (x > 0), \; e^{x/\alpha} \; (x \le 0)",
        range="(-alpha, inf)",
        kinks=(
            Kink(
                at=0.0,
                derivative=1.0,
                second_derivative="1/alpha",
                note="f' is continuous (1); f'' takes the left piece 1/alpha",
            ),
        ),
        typical_use=("hidden",),
        notes=("ELU made continuously differentiable for every alpha.",),
        aliases=("CELU",),
        reference="Barron, Continuously differentiable exponential linear units (2017)",
        examples=(Example(x=-1.0, y=-0.6321205588285577), Example(x=2.0, y=2.0)),
    )
)

# -- gelu ------------------------------------------------------------------------------------


def _phi(x: Array, factor: Array | float = 1.0) -> Array:
    """factor times the standard normal density, with x^2 carried exactly."""
    p_hi, p_lo = exact.square(x)
    return exact.exp_neg(0.5 * p_hi, 0.5 * p_lo, INV_SQRT_2PI * factor)


def _ndtr(x: Array, factor: Array | float = 1.0) -> Array:
    """factor * Phi(x) to full relative precision, also deep in the lower tail.

    scipy's ndtr loses up to 900 ULP below -30 and erfc 230 ULP above 20, and
    rounding x/sqrt(2) alone costs 2 t^2 half-ULPs (1e-13 at x = -37).  For
    x < -1: Phi(x) = erfcx(t) exp(-t^2) / 2 with t = -x/sqrt(2) and t^2 carried
    as hi + lo; erfcx itself is accurate to ~3 ULP.  The factor enters before
    the last exponential, so x Phi(x) is normal where Phi(x) alone is not.
    """
    tail_mask = x < -1.0
    out = np.empty_like(x)
    factor = np.broadcast_to(np.asarray(factor, dtype=np.float64), x.shape)
    if tail_mask.any():
        out[tail_mask] = _ndtr_tail(x[tail_mask], factor[tail_mask])
    body_mask = ~tail_mask
    if body_mask.any():
        xb = x[body_mask]
        # 1 + erf(x/sqrt 2) for x >= 0; erfc(-x/sqrt 2), which does not cancel, on [-1, 0).
        t = xb * INV_SQRT2[0]
        out[body_mask] = factor[body_mask] * np.where(
            xb >= 0, 0.5 * (1.0 + special.erf(t)), 0.5 * special.erfc(-t)
        )
    return out


def _ndtr_tail(x: Array, factor: Array) -> Array:
    """factor * Phi(x) for x < -1 (see _ndtr)."""
    t_hi, t_lo = exact.scale(-np.maximum(x, -1e10), INV_SQRT2)
    s_hi, s_lo = exact.square(t_hi)
    s_lo = s_lo + 2.0 * t_hi * t_lo
    e = special.erfcx(t_hi)
    # erfcx(t + dt) ~ erfcx(t) (1 + dt (2t - 2/(sqrt(pi) erfcx(t))))
    e = e * (1.0 + t_lo * (2.0 * t_hi - 1.1283791670955126 / e))
    return exact.exp_neg(s_hi, s_lo, 0.5 * e * factor)


def gelu(x: Array) -> Array:
    return _ndtr(x, x)


def gelu_derivative(x: Array) -> Array:
    return _ndtr(x) + _phi(x, np.clip(x, -1e10, 1e10))


def gelu_second(x: Array) -> Array:
    # phi(x) (2 - x^2) with x^2 exact: no cancellation at x = +-sqrt(2).
    p_hi, p_lo = exact.square(np.clip(x, -1e150, 1e150))
    return _phi(x, (2.0 - p_hi) - p_lo)


#: |x| beyond which phi(x) and Phi(-|x|) are taken at this |x| (x^2/2 = _TAIL there).
_GELU_TAIL = 362


def _normal_tail(y: mpfr, absolute: bool = False) -> mpfr:
    """Phi(-y) = erfc(y / sqrt 2) / 2 for y >= 0, to the relative accuracy of the working precision
    (``absolute``: to its absolute accuracy, enough where Phi(-y) is added to 1 or y times it to y).

    MPFR's erfc takes up to a millisecond for 3 < y/sqrt(2) < 16 (it forms 1 - erf at a precision
    raised by y^2 log2(e) / 2 bits, and the terms of erf's series run to ~y^2).  Here: erfc itself
    for y^2/2 < 4; 1 - erf at the raised precision up to y^2/2 = 36; beyond, Laplace's continued
    fraction (its even part, in y^2, which is exact), Phi(-y) = y phi(y) / F with
    F = y^2 + 1 - 1*2 / (y^2 + 5 - 3*4 / (y^2 + 9 - ...)), which needs ~ (P ln2 / 4u)^2 + P/10 terms.
    """
    if y > _GELU_TAIL:
        y = mpfr(_GELU_TAIL)
    half_square = float(y) ** 2 / 2
    precision = gmpy2.get_context().precision
    if absolute:  # Phi(-y) < e^(-y^2/2): its leading bits are zeros of the absolute error
        precision = max(precision - int(half_square * 1.4426), 32)
    if half_square < 4:
        with gmpy2.context(gmpy2.get_context(), precision=precision):
            return gmpy2.erfc(y * gmpy2.rec_sqrt(2)) / 2
    if half_square < 36:
        with gmpy2.context(gmpy2.get_context(), precision=precision + int(half_square * 1.4427) + 8):
            return (1 - gmpy2.erf(y * gmpy2.rec_sqrt(2))) / 2
    terms = (0.1733 * precision) ** 2 / half_square + precision / 10
    with gmpy2.context(gmpy2.get_context(), precision=precision + 12):
        t = y * y + 1
        tolerance = mpfr(2) ** (-precision - 4)
        f = c = t
        d = mpfr(0)
        for n in range(1, 4 * int(terms) + 100):
            a = -(2 * n - 1) * (2 * n)
            b = t + 4 * n
            d = 1 / (b + a * d)
            c = b + a / c
            delta = c * d
            f *= delta
            if abs(delta - 1) < tolerance:
                return y * _normal_density(y) / f
    with gmpy2.context(gmpy2.get_context(), precision=precision):  # a safeguard: not reached
        return gmpy2.erfc(y * gmpy2.rec_sqrt(2)) / 2


def _normal_density(x: mpfr) -> mpfr:
    """phi(x) = e^(-x^2/2) / sqrt(2 pi)."""
    return _exp_neg(x * x / 2) * gmpy2.rec_sqrt(2 * gmpy2.const_pi())


def _gelu_exact(x: mpfr) -> mpfr:
    with _at(4):
        if _tiny(x):
            return _plus_tiny(x / 2, x * x * gmpy2.rec_sqrt(2 * gmpy2.const_pi()))
        if abs(x) < 1:
            return x * (1 + gmpy2.erf(x * gmpy2.rec_sqrt(2))) / 2
        if x > 0:
            return _plus_tiny(x, -x * _normal_tail(x, absolute=True))  # x - x Phi(-x)
        return x * _normal_tail(-x)


def _gelu_derivative_formula(x: mpfr) -> mpfr:
    if abs(x) < 1:  # Phi(x) + x phi(x): cancels towards its root at -0.7518
        return (1 + gmpy2.erf(x * gmpy2.rec_sqrt(2))) / 2 + x * _normal_density(x)
    if x > 0:
        # 1 + (x phi(x) - Phi(-x)), the bracket > 0: kept on its side of 1 however small (a product
        # g a gelu'(b) of the gated units can be a midpoint).  Past the clamp only its side counts.
        density = x * _normal_density(x)
        if x > _GELU_TAIL:
            return _plus_tiny(mpfr(1), density)
        return _plus_tiny(mpfr(1), density - _normal_tail(x))
    if x < -_GELU_TAIL:  # both terms at the clamp, which keeps the sign of their sum
        x = mpfr(-_GELU_TAIL)
    return _normal_tail(-x) + x * _normal_density(x)


def _gelu_exact_derivative(x: mpfr) -> mpfr:
    return _nonzero(_gelu_derivative_formula, x, extra=4)


def _gelu_exact_second(x: mpfr) -> mpfr:
    # phi(x) (2 - x^2); x^2 is exact, so 2 - x^2 is too.
    with _at():
        return _normal_density(x) * (2 - x * x)


INV_SQRT_2PI_DIGITS = bd._digits(lambda: 1 / gmpy2.sqrt(2 * gmpy2.const_pi()))


def _gelu_fast_parts(x: bd.B) -> tuple[bd.B, bd.B]:
    """Phi(x) = erfc(-x/sqrt 2)/2 and phi(x) = e^(-x^2/2)/sqrt(2 pi), their arguments carried in
    double-double (erfc and exp amplify an argument's error by up to its square)."""
    z = bd.times_constant(-x, INV_SQRT2)
    x64 = np.clip(x.v.astype(np.float64), -1e150, 1e150)  # (beyond, phi is far below any format)
    square_hi, square_lo = exact.two_prod(x64, x64)
    half_square = bd.from_dd((-0.5 * square_hi, -0.5 * square_lo), x)
    density = bd.exp(half_square) * bd.constant(INV_SQRT_2PI_DIGITS, x)
    return bd.erfc(z) * 0.5, density


def _gelu_fast(x: bd.B) -> bd.B:
    return x * _gelu_fast_parts(x)[0]


def _gelu_fast_derivative(x: bd.B) -> bd.B:
    cdf, density = _gelu_fast_parts(x)
    return cdf + x * density


def _gelu_fast_second(x: bd.B) -> bd.B:
    return _gelu_fast_parts(x)[1] * (2.0 - x.square())


register(
    Activation(
        name="gelu",
        kind="elementwise",
        fast=Bounded(_gelu_fast, _gelu_fast_derivative, _gelu_fast_second),
        blocked=True,
        forward=gelu,
        derivative=gelu_derivative,
        second=gelu_second,
        exact=Exact(_gelu_exact, _gelu_exact_derivative, _gelu_exact_second),
        formula=r"f(x) = x \, \Phi(x) = \tfrac{x}{2} \left(1 + \operatorname{erf}(x / \sqrt{2})\right)",
        derivative_formula=r"f'(x) = \Phi(x) + x \, \varphi(x)",
        range="[-0.17, inf)",
        typical_use=("hidden",),
        notes=(
            "The exact (erf) form, PyTorch's default. JAX's jax.nn.gelu defaults to the tanh "
            "approximation: that is gelu_tanh here.",
            "Accurate in the lower tail, where PyTorch returns 0 below x = -8.3 for the derivative.",
        ),
        aliases=("GELU", "gelu_exact"),
        reference="Hendrycks and Gimpel, Gaussian error linear units (2016)",
        examples=(Example(x=-1.0, y=-0.15865525393145705), Example(x=1.0, y=0.8413447460685429)),
    )
)


def _gelu_tanh_arg(x: Array) -> tuple[Array, Array]:
    """v = 2 sqrt(2/pi) (x + 0.044715 x^3) as hi + lo; 1 + tanh(v/2) = 2 sigma(v)."""
    xc = np.clip(x, -1e4, 1e4)  # beyond, sigma(v) is exactly 0 or 1
    p_hi, p_lo = exact.square(xc)
    c_hi, c_lo = exact.two_prod(xc, p_hi)
    c_lo = c_lo + xc * p_lo
    a_hi, a_lo = exact.two_prod(c_hi, GELU_TANH_A[0])
    a_lo = a_lo + c_hi * GELU_TANH_A[1] + c_lo * GELU_TANH_A[0]
    w_hi, w_lo = exact.two_sum(xc, a_hi)
    w_lo = w_lo + a_lo
    v_hi, v_lo = exact.two_prod(w_hi, GELU_TANH_K[0])
    return v_hi, v_lo + w_hi * GELU_TANH_K[1] + w_lo * GELU_TANH_K[0]


def gelu_tanh(x: Array) -> Array:
    return exact.expit_times(*_gelu_tanh_arg(x), x)


def gelu_tanh_derivative(x: Array) -> Array:
    # sigma(v) (1 + x v' sigma(-v)); for x < 0 the bracket is (1 + x v') - x v' sigma(v),
    # which cancels half as much near its zero at x = -0.75.
    v_hi, v_lo = _gelu_tanh_arg(x)
    xc = np.clip(x, -1e4, 1e4)
    xdv = xc * GELU_TANH_K[0] * (1.0 + 3.0 * GELU_TANH_A[0] * xc * xc)
    bracket = np.where(
        x > 0, 1.0 + xdv * exact.expit(-v_hi, -v_lo), (1.0 + xdv) - xdv * exact.expit(v_hi, v_lo)
    )
    return exact.expit_times(v_hi, v_lo, bracket)


def gelu_tanh_second(x: Array) -> Array:
    # sigma'(v) (2 v' - x tanh(v/2) v'^2 + x v''); the bracket cancels near its zeros
    # (x ~ +-1.4) by up to 10x, so it is formed in extended precision.
    v_hi, v_lo = _gelu_tanh_arg(x)
    xe = np.clip(x, -1e4, 1e4).astype(EXTENDED)
    k, a = (
        EXTENDED(GELU_TANH_K[0]) + EXTENDED(GELU_TANH_K[1]),
        EXTENDED(GELU_TANH_A[0]) + EXTENDED(GELU_TANH_A[1]),
    )
    v = v_hi.astype(EXTENDED) + v_lo.astype(EXTENDED)
    dv = k * (1 + 3 * a * xe * xe)
    bracket = 2 * dv - xe * np.tanh(v / 2) * dv * dv + xe * 6 * k * a * xe
    return exact.dexpit_times(v_hi, v_lo, bracket.astype(np.float64))


def _gelu_tanh_at(x: mpfr) -> Any:
    # v ~ 0.07 x^3: exp(-|v|) amplifies the rounding of v |v|-fold (up to the clamp at _TAIL).
    return _at(min(3 * max(_exponent(x), 0), 17) + 6)


def _gelu_tanh_v(x: mpfr) -> tuple[mpfr, mpfr, mpfr]:
    """v = 2 sqrt(2/pi) (x + 0.044715 x^3), with v' and v'': x/2 (1 + tanh(v/2)) = x sigma(v)."""
    k = gmpy2.sqrt(8 / gmpy2.const_pi())
    a = mpfr("0.044715")
    x2 = x * x
    return k * (x + a * x2 * x), k * (1 + 3 * a * x2), 6 * k * a * x


def _gelu_tanh_exact(x: mpfr) -> mpfr:
    with _gelu_tanh_at(x):
        if _tiny(x):  # x sigma(v) = x/2 + x v/4 - ..., v = k x + O(x^3)
            return _plus_tiny(x / 2, x * x * gmpy2.sqrt(8 / gmpy2.const_pi()) / 4)
        v = _gelu_tanh_v(x)[0]
        if x >= 1:
            return _plus_tiny(x, -x * _sig(-v))
        return x * _sig(v)


def _gelu_tanh_derivative_formula(x: mpfr) -> mpfr:
    # sigma(v) (1 + x v' sigma(-v)): the bracket cancels towards its root at -0.7525.
    v, dv, _ = _gelu_tanh_v(x)
    s, s_neg = _sigmoid_pair(v)
    if x >= 1:  # 1 + sigma(-v) (x v' sigma(v) - 1), the bracket > 0: kept on its side of 1
        return _plus_tiny(mpfr(1), s_neg * (x * dv * s - 1))
    return s * (1 + x * dv * s_neg)


def _gelu_tanh_exact_derivative(x: mpfr) -> mpfr:
    with _gelu_tanh_at(x):
        return _nonzero(_gelu_tanh_derivative_formula, x)


def _gelu_tanh_second_formula(x: mpfr) -> mpfr:
    # sigma'(v) (2 v' - x tanh(v/2) v'^2 + x v''): roots at +-1.4185.
    v, dv, ddv = _gelu_tanh_v(x)
    return _dsig(v) * (2 * dv - x * gmpy2.tanh(v / 2) * dv * dv + x * ddv)


def _gelu_tanh_exact_second(x: mpfr) -> mpfr:
    with _gelu_tanh_at(x):
        return _nonzero(_gelu_tanh_second_formula, x)


#: Beyond this |x| gelu_tanh's v is formed at it (v ~ 1e300: sigma(v) is 0 or 1 at any such v).
_GELU_TANH_CLAMP = 1e100


def _gelu_tanh_fast_v(x: bd.B) -> tuple[bd.B, bd.B, bd.B]:
    """v = 2 sqrt(2/pi) (x + 0.044715 x^3) in double-double (e^-v amplifies an error of v by |v|),
    v' and v''."""
    x64 = np.clip(x.v.astype(np.float64), -_GELU_TANH_CLAMP, _GELU_TANH_CLAMP)
    zero = np.zeros_like(x64)
    cube = bd.dd_mul((x64, zero), bd.dd_mul((x64, zero), (x64, zero)))
    inner = bd.dd_add((x64, zero), bd.dd_mul(GELU_TANH_A, cube))
    v = bd.from_dd(bd.dd_mul(GELU_TANH_K, inner), x)
    k = bd.constant("1.5957691216057307117597842397375", x)
    a = bd.constant("0.044715", x)
    x2 = x.square()
    return v, k * (1.0 + 3.0 * a * x2), 6.0 * k * a * x


def _gelu_tanh_fast(x: bd.B) -> bd.B:
    v = _gelu_tanh_fast_v(x)[0]
    return x * bd.sigmoid_pair(v)[0]


def _gelu_tanh_fast_derivative(x: bd.B) -> bd.B:
    v, dv, _ = _gelu_tanh_fast_v(x)
    return bd.sigmoid_pair(v)[0] + x * bd.dsig(v) * dv


def _gelu_tanh_fast_second(x: bd.B) -> bd.B:
    # 2 sigma'(v) v' + x (sigma''(v) v'^2 + sigma'(v) v''), sigma'' = -sigma' tanh(v/2).
    v, dv, d2v = _gelu_tanh_fast_v(x)
    ds = bd.dsig(v)
    return 2.0 * ds * dv + x * ds * (d2v - bd.tanh(v * 0.5) * dv.square())


register(
    Activation(
        name="gelu_tanh",
        kind="elementwise",
        fast=Bounded(_gelu_tanh_fast, _gelu_tanh_fast_derivative, _gelu_tanh_fast_second),
        blocked=True,
        forward=gelu_tanh,
        derivative=gelu_tanh_derivative,
        second=gelu_tanh_second,
        exact=Exact(_gelu_tanh_exact, _gelu_tanh_exact_derivative, _gelu_tanh_exact_second),
        formula=r"f(x) = \tfrac{x}{2} \left(1 + \tanh\!\left(\sqrt{2/\pi}\,(x + 0.044715 x^3)\right)\right)",
        derivative_formula=r"f'(x) = \sigma(v) \left(1 + x \, \sigma(-v) \, v'\right), \; v = 2\sqrt{2/\pi}(x + 0.044715x^3)",
        range="[-0.17, inf)",
        typical_use=("hidden",),
        notes=("PyTorch gelu(approximate='tanh'), JAX's default gelu, used by BERT and GPT-2.",),
        aliases=("gelu_approximate", "gelu_new", "approximate_gelu"),
        reference="Hendrycks and Gimpel, Gaussian error linear units (2016)",
        examples=(Example(x=-1.0, y=-0.1588080093917233), Example(x=1.0, y=0.8411919906082767)),
    )
)

# -- silu family: x * sigma(beta x) ----------------------------------------------------------------


def _swish(x: Array, z_hi: Array, z_lo: Array) -> Array:
    # x sigma(z) (1 + lo sigma(-z)); where sigma(z) is subnormal (z < -708) the
    # product x sigma(z) may still be normal, so those elements are redone in halves.
    s = exact.logistic(z_hi)
    y = x * (s + s * (z_lo * (1.0 - s)))
    deep = z_hi < -700.0
    if deep.any():
        y[deep] = exact.expit_times(z_hi[deep], z_lo[deep], x[deep])
    return y


def _swish_bracket(z: Array, z_lo: Array) -> Array:
    # 1 + z sigma(-z).  For z < 0 it is written (1 + z) - z sigma(z), which
    # cancels half as much near its zero at z = -1.28.
    return np.where(z > 0, 1.0 + z * exact.expit(-z, -z_lo), (1.0 + z) - z * exact.expit(z, z_lo))


def _swish_derivative(x: Array, z_hi: Array, z_lo: Array) -> Array:
    z = np.clip(z_hi, -1e4, 1e4)  # beyond, sigma(z) is exactly 0 or 1
    return exact.expit_times(z_hi, z_lo, _swish_bracket(z, z_lo))


def _swish_second(x: Array, z_hi: Array, z_lo: Array, beta: float) -> Array:
    # beta sigma'(z) (2 - z tanh(z/2)); the bracket cancels by up to 11x near
    # its zeros at |z| = 2.4, so it is formed in extended precision.
    z = np.clip(z_hi, -1e4, 1e4).astype(EXTENDED) + np.where(np.abs(z_hi) < 1e4, z_lo, 0.0)
    bracket = 2 - z * np.tanh(z / 2)
    return exact.dexpit_times(z_hi, z_lo, beta * bracket.astype(np.float64))


def _swish_exact(x: mpfr, z: mpfr) -> mpfr:
    """x sigma(z), z = beta x."""
    if _tiny(z):  # x/2 + x z/4 - x z^3/48 + ...
        return _plus_tiny(x / 2, x * z / 4)
    if z >= 1:
        return _plus_tiny(x, -x * _sig(-z))
    return x * _sig(z)


def _sigmoid_pair(z: mpfr) -> tuple[mpfr, mpfr]:
    """sigma(z) and sigma(-z), from one exponential."""
    e = _exp_neg(abs(z))
    near, far = 1 / (1 + e), e / (1 + e)
    return (near, far) if z >= 0 else (far, near)


def _swish_exact_derivative(z: mpfr) -> mpfr:
    # sigma(z) (1 + z sigma(-z)): the bracket cancels towards its root at z = -1.2785.
    if z >= 1:
        # 1 + sigma(-z) (z sigma(z) - 1), kept on its side of 1 however small the correction (a
        # product g a silu'(b) of the gated units can be a midpoint); the bracket changes sign
        # at z = 1.2785 (never a float), where it is evaluated again with more bits.
        def correction() -> mpfr:
            s, s_neg = _sigmoid_pair(z)
            return s_neg * (z * s - 1)

        return _plus_tiny(mpfr(1), _nonzero(correction))
    s, s_neg = _sigmoid_pair(z)
    return s * (1 + z * s_neg)


def _swish_exact_second(z: mpfr, beta: mpfr) -> mpfr:
    # beta sigma'(z) (2 - z tanh(z/2)), roots at |z| = 2.3994; beta/2 - beta z^2/4 + ... near 0.
    if _tiny(z * z):
        return _plus_tiny(beta / 2, -beta * z * z / 4)
    return beta * _dsig(z) * (2 - z * gmpy2.tanh(z / 2))


def _swish_exact_beta(x: mpfr, z: mpfr) -> mpfr:
    # d/dbeta x sigma(beta x) = x^2 sigma'(z) = x^2/4 - x^2 z^2/16 + ...
    if _tiny(z * z):
        return _plus_tiny(x * x / 4, -x * x * z * z / 16)
    return x * x * _dsig(z)


def _silu_exact(x: mpfr, beta: mpfr) -> mpfr:
    with _at():
        return _swish_exact(x, beta * x)  # beta x: exact at >= 106 bits


def _silu_exact_derivative(x: mpfr, beta: mpfr) -> mpfr:
    with _at():
        return _nonzero(lambda: _swish_exact_derivative(beta * x))


def _silu_exact_second(x: mpfr, beta: mpfr) -> mpfr:
    with _at():
        # Exactly 0 for beta = 0 (x/2 is linear); never 0 otherwise.
        return _nonzero(lambda: _swish_exact_second(beta * x, beta)) if beta else mpfr(0)


def _silu_exact_beta(x: mpfr, beta: mpfr) -> mpfr:
    with _at():
        return _swish_exact_beta(x, beta * x)


def _quick_gelu_at(x: mpfr) -> Any:
    # z = 1.702 x is rounded, and exp amplifies that |z|-fold.
    return _at(_boost(x))


def _quick_gelu_z(x: mpfr) -> mpfr:
    return mpfr("1.702") * x


def _quick_gelu_exact(x: mpfr) -> mpfr:
    with _quick_gelu_at(x):
        return _swish_exact(x, _quick_gelu_z(x))


def _quick_gelu_exact_derivative(x: mpfr) -> mpfr:
    with _quick_gelu_at(x):
        return _nonzero(lambda: _swish_exact_derivative(_quick_gelu_z(x)))


def _quick_gelu_exact_second(x: mpfr) -> mpfr:
    with _quick_gelu_at(x):
        return _nonzero(lambda: _swish_exact_second(_quick_gelu_z(x), mpfr("1.702")))


def swish_fast(x: bd.B, z: bd.B) -> bd.B:
    """x sigma(z)."""
    return x * bd.sigmoid_pair(z)[0]


def swish_fast_derivative(z: bd.B) -> bd.B:
    """sigma(z) (1 + z sigma(-z))."""
    s, s_neg = bd.sigmoid_pair(z)
    return s * (1.0 + z * s_neg)


def swish_fast_second(z: bd.B, beta: float | bd.B) -> bd.B:
    """beta sigma'(z) (2 - z tanh(z/2))."""
    return bd.dsig(z) * (2.0 - z * bd.tanh(z * 0.5)) * beta


register(
    Activation(
        name="silu",
        kind="elementwise",
        fast=Bounded(
            lambda x, beta: swish_fast(x, bd.product(x, beta)),
            lambda x, beta: swish_fast_derivative(bd.product(x, beta)),
            lambda x, beta: swish_fast_second(bd.product(x, beta), beta),
            {"beta": lambda x, beta: x.square() * bd.dsig(bd.product(x, beta))},
        ),
        blocked=True,
        forward=lambda x, beta: _swish(x, *exact.scale(x, beta)),
        derivative=lambda x, beta: _swish_derivative(x, *exact.scale(x, beta)),
        second=lambda x, beta: _swish_second(x, *exact.scale(x, beta), beta),
        param_grads=lambda x, beta: {"beta": x * exact.dexpit_times(*exact.scale(x, beta), x)},
        exact=Exact(
            _silu_exact, _silu_exact_derivative, _silu_exact_second, params={"beta": _silu_exact_beta}
        ),
        params=(
            Param(
                name="beta",
                default=1.0,
                minimum=0.0,
                maximum=1000.0,
                description="Swish-beta slope; 1 gives silu",
            ),
        ),
        formula=r"f(x) = x \, \sigma(\beta x)",
        derivative_formula=r"f'(x) = \sigma(\beta x) \left(1 + \beta x \, \sigma(-\beta x)\right)",
        range="[-0.28/beta, inf)",
        typical_use=("hidden",),
        notes=("Self-gated and smooth; beta -> inf approaches relu, beta = 0 gives x/2.",),
        aliases=("swish", "SiLU"),
        reference="Ramachandran, Zoph and Le, Searching for activation functions (2017)",
        examples=(Example(x=-1.0, y=-0.2689414213699951), Example(x=2.0, y=1.7615941559557649)),
    )
)


def _quick_gelu_fast_z(x: bd.B) -> bd.B:
    return bd.times_constant(x, QUICK_GELU_BETA)


register(
    Activation(
        name="quick_gelu",
        kind="elementwise",
        fast=Bounded(
            lambda x: swish_fast(x, _quick_gelu_fast_z(x)),
            lambda x: swish_fast_derivative(_quick_gelu_fast_z(x)),
            lambda x: swish_fast_second(_quick_gelu_fast_z(x), bd.constant("1.702", x)),
        ),
        blocked=True,
        forward=lambda x: _swish(x, *exact.scale(x, QUICK_GELU_BETA)),
        derivative=lambda x: _swish_derivative(x, *exact.scale(x, QUICK_GELU_BETA)),
        second=lambda x: _swish_second(x, *exact.scale(x, QUICK_GELU_BETA), QUICK_GELU_BETA[0]),
        exact=Exact(_quick_gelu_exact, _quick_gelu_exact_derivative, _quick_gelu_exact_second),
        formula=r"f(x) = x \, \sigma(1.702 x)",
        derivative_formula=r"f'(x) = \sigma(1.702x) \left(1 + 1.702x \, \sigma(-1.702x)\right)",
        range="[-0.16, inf)",
        typical_use=("hidden",),
        notes=("The sigmoid approximation of GELU used by CLIP.",),
        aliases=("QuickGELU",),
        reference="Hendrycks and Gimpel, Gaussian error linear units (2016), section 2",
        examples=(Example(x=-1.0, y=-0.1542042340671787), Example(x=1.0, y=0.8457957659328212)),
    )
)

# -- mish -----------------------------------------------------------------------------------------


def _softplus(x: Array) -> Array:
    # max(x, 0) + log1p(exp(-|x|)): no overflow, no threshold switch.
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def mish(x: Array) -> Array:
    return x * np.tanh(_softplus(x))


def _sech2_softplus(x: Array) -> Array:
    """sech^2(softplus(x)) = 4e / (1 + e)^2 with e = exp(-2 softplus(x)).

    For x > 0, softplus(x) = x + d with d = log1p(exp(-x)); exp(-2x) exp(-2d)
    avoids the rounding of x + d, which exp(-2 (x + d)) would amplify 2x-fold.
    """
    xp = np.minimum(np.maximum(x, 0.0), 400.0)
    e = np.where(
        x > 0,
        np.exp(-2.0 * xp) * np.exp(-2.0 * np.log1p(np.exp(-xp))),
        np.exp(-2.0 * _softplus(np.minimum(x, 0.0))),
    )
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def mish_derivative(x: Array) -> Array:
    return np.tanh(_softplus(x)) + x * _sech2_softplus(x) * exact.logistic(x)


def mish_second(x: Array) -> Array:
    # sech^2(sp) sigma(x) (2 - 2x tanh(sp) sigma(x) + x sigma(-x)): the bracket
    # cancels by up to 10x near x = 1.7, so the whole product is formed in
    # extended precision (sech^2 as in _sech2_softplus) and rounded once.
    xe = np.clip(x, -1e4, 1e4).astype(EXTENDED)
    xp = np.minimum(np.maximum(xe, 0), 400)
    d = np.log1p(np.exp(-np.abs(xe)))
    sp = np.maximum(xe, 0) + d
    e = np.where(xe > 0, np.exp(-2 * xp) * np.exp(-2 * d), np.exp(-2 * sp))
    sech2_sp = 4 * e / ((1 + e) * (1 + e))
    s = 1 / (1 + np.exp(-xe))
    s_neg = 1 / (1 + np.exp(xe))
    bracket = 2 - 2 * xe * np.tanh(sp) * s + xe * s_neg
    return (sech2_sp * s * bracket).astype(np.float64)


# With w = e^x, e^softplus(x) = 1 + w exactly, so tanh(softplus(x)) = N / D with N = w (w + 2),
# D = N + 2, sech^2(softplus(x)) = 4 (1 + w)^2 / D^2 and sigma(x) = w / (1 + w): mish and its
# derivatives are rational functions of w and x.  For x > 0 the same fractions are written in
# e = e^-x = 1/w (numerator and denominator multiplied by a power of e), with D_e = 1 + 2e + 2e^2.


def _mish_exact(x: mpfr) -> mpfr:
    with _at():
        if x > 0:
            e = _exp_neg(x)
            return _plus_tiny(x, -2 * x * e * e / (1 + 2 * e + 2 * e * e))  # x (1 - 2e^2 / D_e)
        w = _exp_neg(-x)
        n = w * (w + 2)
        return x * n / (n + 2)


def _mish_derivative_formula(x: mpfr) -> mpfr:
    # w ((w + 2) D + 4x (1 + w)) / D^2; the bracket cancels towards its root at x = -1.1924.
    if x > 0:
        e = _exp_neg(x)
        d = 1 + 2 * e + 2 * e * e
        return ((1 + 2 * e) * d + 4 * x * e * e * (1 + e)) / (d * d)
    w = _exp_neg(-x)
    d = w * (w + 2) + 2
    return w * ((w + 2) * d + 4 * x * (1 + w)) / (d * d)


def _mish_second_formula(x: mpfr) -> mpfr:
    # 4w (2 (1 + w) D + x (2 + 2w - 3w^2 - 2w^3)) / D^3; the bracket has roots at -2.2564 and 1.4906.
    if x > 0:
        e = _exp_neg(x)
        d = 1 + 2 * e + 2 * e * e
        return 4 * e * e * (2 * (1 + e) * d + x * (((2 * e + 2) * e - 3) * e - 2)) / (d * d * d)
    w = _exp_neg(-x)
    d = w * (w + 2) + 2
    return 4 * w * (2 * (1 + w) * d + x * (2 + (2 - (3 + 2 * w) * w) * w)) / (d * d * d)


def _mish_exact_derivative(x: mpfr) -> mpfr:
    return _nonzero(_mish_derivative_formula, x)


def _mish_exact_second(x: mpfr) -> mpfr:
    return _nonzero(_mish_second_formula, x)


def _mish_fast_parts(x: bd.B) -> tuple[bd.B, bd.B, bd.B, bd.B]:
    """tanh(softplus(x)), sech^2(softplus(x)), sigma(x) and sigma(-x), without cancellation:
    with w = e^-|x|, for x > 0 T = (1 + 2w) / (1 + 2w + 2w^2), S = 4 w^2 (1 + w)^2 / D^2;
    for x <= 0 T = N / (N + 2) with N = w (w + 2), S = 4 (1 + w)^2 / (N + 2)^2."""
    w = bd.exp(-abs(x))
    positive = x.v > 0
    d_pos = 1.0 + 2.0 * w + 2.0 * w.square()
    n = w * (w + 2.0)
    one_w = (1.0 + w).square()
    t = bd.where(positive, (1.0 + 2.0 * w) / d_pos, n / (n + 2.0))
    s = bd.where(positive, 4.0 * w.square() * one_w / d_pos.square(), 4.0 * one_w / (n + 2.0).square())
    sig, sig_neg = bd.sigmoid_pair(x)
    return t, s, sig, sig_neg


def _mish_fast(x: bd.B) -> bd.B:
    return x * _mish_fast_parts(x)[0]


def _mish_fast_derivative(x: bd.B) -> bd.B:
    t, s, sig, _ = _mish_fast_parts(x)
    return t + x * s * sig


def _mish_fast_second(x: bd.B) -> bd.B:
    # sech^2 sigma (2 + x (sigma(-x) - 2 T sigma))
    t, s, sig, sig_neg = _mish_fast_parts(x)
    return s * sig * (2.0 + x * (sig_neg - 2.0 * t * sig))


register(
    Activation(
        name="mish",
        kind="elementwise",
        fast=Bounded(_mish_fast, _mish_fast_derivative, _mish_fast_second),
        blocked=True,
        forward=mish,
        derivative=mish_derivative,
        second=mish_second,
        exact=Exact(_mish_exact, _mish_exact_derivative, _mish_exact_second),
        formula=r"f(x) = x \tanh(\operatorname{softplus}(x))",
        derivative_formula=r"f'(x) = \tanh(\operatorname{sp}(x)) + x \operatorname{sech}^2(\operatorname{sp}(x)) \, \sigma(x)",
        range="[-0.31, inf)",
        typical_use=("hidden",),
        notes=("Smooth and non-monotone like silu; used in YOLOv4.",),
        aliases=("Mish",),
        reference="Misra, Mish: a self regularized non-monotonic activation function (2019)",
        examples=(Example(x=-1.0, y=-0.3034014613741089), Example(x=1.0, y=0.8650983882673103)),
    )
)

# -- softplus -------------------------------------------------------------------------------------


def _softplus_beta(x: Array, beta: float) -> tuple[Array, Array]:
    """softplus(beta x) and sigma(beta x), with beta x carried as hi + lo.

    log(1 + e^(hi + lo)) ~ log(1 + e^hi) + lo sigma(hi); both from one exp(-|hi|).
    """
    z_hi, z_lo = exact.scale(x, beta)
    if exact.is_power_of_two(beta):  # beta x is exact: no correction to carry
        e = np.exp(-np.abs(z_hi))
        return np.maximum(z_hi, 0.0) + np.log1p(e), np.where(z_hi >= 0, 1.0, e) / (1.0 + e)
    e = np.exp(-np.abs(z_hi))
    s = np.where(z_hi >= 0, 1.0, e) / (1.0 + e)
    sig = s + s * (z_lo * (1.0 - s))  # sigma(hi + lo) = sigma(hi) (1 + lo sigma(-hi))
    return (np.maximum(z_hi, 0.0) + np.log1p(e)) + z_lo * s, sig


def softplus_beta_grad(x: Array, beta: float) -> Array:
    # d/dbeta [softplus(beta x) / beta] = (z sigma(z) - softplus(z)) / beta^2, z = beta x;
    # the bracket is -(|z| sigma(-|z|) + log1p(e^-|z|)): a sum of like signs.
    z = np.abs(beta * x)
    return -(z * exact.logistic(-z) + np.log1p(np.exp(-z))) / beta / beta


def _softplus_exact(x: mpfr, beta: mpfr) -> mpfr:
    # log(1 + e^z) / beta, z = beta x exact; for z > 0 that is x + log1p(e^-z) / beta.
    with _at():
        z = beta * x
        if z > 0:
            return _plus_tiny(x, gmpy2.log1p(_exp_neg(z)) / beta)
        return gmpy2.log1p(_exp_neg(-z)) / beta


def _softplus_exact_derivative(x: mpfr, beta: mpfr) -> mpfr:
    with _at():
        return _sig(beta * x)


def _softplus_exact_second(x: mpfr, beta: mpfr) -> mpfr:
    # beta sigma'(z) = beta/4 - beta z^2/16 + ...
    with _at():
        z = beta * x
        if _tiny(z * z):
            return _plus_tiny(beta / 4, -beta * z * z / 16)
        return beta * _dsig(z)


def _softplus_exact_beta(x: mpfr, beta: mpfr) -> mpfr:
    # (z sigma(z) - softplus(z)) / beta^2 = -(|z| sigma(-|z|) + log1p(e^-|z|)) / beta^2: like signs.
    with _at():
        a = abs(beta * x)
        e = _exp_neg(a)
        return -(a * e / (1 + e) + gmpy2.log1p(e)) / (beta * beta)


def _softplus_fast(x: bd.B, beta: float) -> bd.B:
    z = bd.product(x, beta)
    tail = bd.log1p_exp_neg(z) / beta
    return bd.where(z.v > 0, x + tail, tail)


def _softplus_fast_derivative(x: bd.B, beta: float) -> bd.B:
    return bd.sigmoid_pair(bd.product(x, beta))[0]


def _softplus_fast_second(x: bd.B, beta: float) -> bd.B:
    return bd.dsig(bd.product(x, beta)) * beta


def _softplus_fast_beta(x: bd.B, beta: float) -> bd.B:
    # -(|z| sigma(-|z|) + log1p(e^-|z|)) / beta^2
    a = abs(bd.product(x, beta))
    return -(a * bd.sigmoid_pair(-a)[0] + bd.log1p_exp_neg(a)) / (x.like(beta) * beta)


register(
    Activation(
        name="softplus",
        kind="elementwise",
        fast=Bounded(
            _softplus_fast, _softplus_fast_derivative, _softplus_fast_second, {"beta": _softplus_fast_beta}
        ),
        blocked=True,
        forward=lambda x, beta: _softplus(x) if beta == 1.0 else _softplus_beta(x, beta)[0] / beta,
        derivative=lambda x, beta: _softplus_beta(x, beta)[1],
        second=lambda x, beta: exact.dexpit_times(*exact.scale(x, beta), beta),
        param_grads=lambda x, beta: {"beta": softplus_beta_grad(x, beta)},
        exact=Exact(
            _softplus_exact,
            _softplus_exact_derivative,
            _softplus_exact_second,
            params={"beta": _softplus_exact_beta},
        ),
        params=(
            Param(name="beta", default=1.0, minimum=0.0, exclusive_minimum=True, description="sharpness"),
        ),
        formula=r"f(x) = \tfrac{1}{\beta} \log(1 + e^{\beta x})",
        derivative_formula=r"f'(x) = \sigma(\beta x)",
        range="(0, inf)",
        typical_use=("hidden", "positive_output"),
        notes=(
            "Computed exactly for every x: PyTorch switches to x above beta*x = 20, an error of 1e-10 relative.",
            "A smooth relu; its derivative is the sigmoid.",
        ),
        aliases=("Softplus",),
        reference="Dugas et al., Incorporating second-order functional knowledge for better option pricing (2001)",
        examples=(Example(x=0.0, y=0.6931471805599453), Example(x=-20.0, y=2.061153620314381e-09)),
    )
)

# -- softsign / log_sigmoid / tanhshrink ---------------------------------------------------------------


def _inv_one_plus_abs(x: Array) -> Array:
    return 1.0 / (1.0 + np.abs(x))


def _softsign_exact(x: mpfr) -> mpfr:
    with _at():
        if _tiny(x):  # x - x|x| + ...
            return _plus_tiny(x, -x * abs(x))
        return x / (1 + abs(x))


def _softsign_exact_derivative(x: mpfr) -> mpfr:
    with _at():
        d = 1 + abs(x)
        return 1 / (d * d)


def _softsign_exact_second(x: mpfr) -> mpfr:
    # 0 at x = 0, the mean of the one-sided values -+2 (the catalog's convention).
    if gmpy2.is_zero(x):
        return mpfr(0)
    with _at():
        d = 1 + abs(x)
        return (-2 if x > 0 else 2) / (d * d * d)


def _softsign_fast(x: bd.B) -> bd.B:
    return x / (1.0 + abs(x))


def _softsign_fast_derivative(x: bd.B) -> bd.B:
    return 1.0 / (1.0 + abs(x)).square()


def _softsign_fast_second(x: bd.B) -> bd.B:
    d = 1.0 + abs(x)
    cube = d.square() * d
    return bd.where(x.v > 0, -2.0 / cube, bd.where(x.v < 0, 2.0 / cube, bd.zero(x)))


register(
    Activation(
        name="softsign",
        kind="elementwise",
        fast=Bounded(_softsign_fast, _softsign_fast_derivative, _softsign_fast_second),
        forward=lambda x: x / (1.0 + np.abs(x)),
        derivative=lambda x: np.square(_inv_one_plus_abs(x)),
        second=lambda x: -2.0 * np.sign(x) * _inv_one_plus_abs(x) ** 3,
        exact=Exact(_softsign_exact, _softsign_exact_derivative, _softsign_exact_second),
        formula=r"f(x) = \frac{x}{1 + |x|}",
        derivative_formula=r"f'(x) = \frac{1}{(1 + |x|)^2}",
        range="(-1, 1)",
        kinks=(
            Kink(
                at=0.0,
                derivative=1.0,
                second_derivative=0.0,
                note="f' is continuous; f'' jumps from 2 to -2 and is taken as 0 (the mean)",
            ),
        ),
        typical_use=("hidden",),
        notes=("Like tanh, but approaches its asymptotes polynomially, so it saturates more slowly.",),
        aliases=("soft_sign", "Softsign"),
        reference="Bergstra et al., Quadratic polynomials learn better image features (2009)",
        examples=(Example(x=-3.0, y=-0.75), Example(x=1.0, y=0.5)),
    )
)


def _log_sigmoid_exact(x: mpfr) -> mpfr:
    # min(x, 0) - log1p(e^-|x|)
    with _at():
        if x < 0:
            return _plus_tiny(x, -gmpy2.log1p(_exp_neg(-x)))
        return -gmpy2.log1p(_exp_neg(x))


def _log_sigmoid_exact_derivative(x: mpfr) -> mpfr:
    with _at():
        return _sig(-x)


def _log_sigmoid_exact_second(x: mpfr) -> mpfr:
    with _at():
        return -_dsig(x)


def _log_sigmoid_fast(x: bd.B) -> bd.B:
    tail = bd.log1p_exp_neg(x)
    return bd.where(x.v < 0, x - tail, -tail)


def _log_sigmoid_fast_derivative(x: bd.B) -> bd.B:
    return bd.sigmoid_pair(x)[1]


def _log_sigmoid_fast_second(x: bd.B) -> bd.B:
    return -bd.dsig(x)


register(
    Activation(
        name="log_sigmoid",
        kind="elementwise",
        fast=Bounded(_log_sigmoid_fast, _log_sigmoid_fast_derivative, _log_sigmoid_fast_second),
        # min(x, 0) - log1p(exp(-|x|)): both terms <= 0, so nothing cancels.
        forward=lambda x: np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x))),
        derivative=lambda x: exact.logistic(-x),
        second=lambda x: -exact.logistic(x) * exact.logistic(-x),
        exact=Exact(_log_sigmoid_exact, _log_sigmoid_exact_derivative, _log_sigmoid_exact_second),
        formula=r"f(x) = \log \sigma(x) = -\log(1 + e^{-x})",
        derivative_formula=r"f'(x) = \sigma(-x)",
        range="(-inf, 0)",
        typical_use=("binary_output",),
        notes=("The log-probability of a binary classifier, without the underflow of log(sigmoid(x)).",),
        aliases=("logsigmoid", "LogSigmoid"),
        reference="Goodfellow, Bengio and Courville, Deep Learning (2016), section 6.2.2.2",
        examples=(Example(x=0.0, y=-0.6931471805599453), Example(x=-40.0, y=-40.0)),
    )
)

#: Taylor coefficients of x - tanh(x) = sum_n c_n x^(2n+1), n >= 1: the tanh series
#: (Abramowitz and Stegun 4.5.64) with its first term removed and the signs flipped.
_TANHSHRINK_SERIES = (
    1 / 3,
    -2 / 15,
    17 / 315,
    -62 / 2835,
    1382 / 155925,
    -21844 / 6081075,
    929569 / 638512875,
    -6404582 / 10854718875,
)


def tanhshrink(x: Array) -> Array:
    shape = x.shape
    # x - tanh(x) cancels for small |x|.  Below 0.1: the Taylor series (8 terms
    # reach 1e-20).  Up to 3: extended precision, which absorbs the at most 8
    # bits the subtraction loses there.  Beyond: the subtraction is benign.
    x = np.atleast_1d(x)
    a = np.abs(x)
    out = x - np.tanh(x)
    mid = (a >= 0.1) & (a < 3.0)
    if mid.any():
        xm = x[mid].astype(EXTENDED)
        out[mid] = (xm - np.tanh(xm)).astype(np.float64)
    small = a < 0.1
    if small.any():
        xs = x[small]
        x2 = xs * xs
        acc = np.zeros_like(xs)
        for c in reversed(_TANHSHRINK_SERIES):
            acc = acc * x2 + c
        out[small] = acc * x2 * xs
    return out.reshape(shape)


def _tanhshrink_exact(x: mpfr) -> mpfr:
    with _at():
        a = abs(x)
        if a >= 1:
            # x - tanh x = (x - s) + s 2e / (1 + e), s = sign(x), e = e^-2|x|; x - s is exact
            # below 2^(P-1), and beyond it rounds to x or next to it.
            s = 1 if x > 0 else -1
            e = _exp_neg(2 * a)
            if _exponent(x) < gmpy2.get_context().precision:
                return _plus_tiny(x - s, s * 2 * e / (1 + e))
            return _plus_tiny(x, -s * (1 - e) / (1 + e))
        if _tiny(x * x):  # x^3/3 - 2x^5/15 + 17x^7/315 - ...
            return x * x * x * (5 - 2 * x * x) / 15
    # x^3/3 is 2 log2(1/|x|) bits below x: as many bits more.
    with _at(-2 * _exponent(x) + 6):
        return x - gmpy2.tanh(x)


def _tanhshrink_exact_derivative(x: mpfr) -> mpfr:
    # tanh^2 x = x^2 - 2x^4/3 + ...
    with _at():
        if _tiny(x * x):
            return _plus_tiny(x * x, -2 * x**4 / 3)
        t = gmpy2.tanh(x)
        return t * t


def _tanhshrink_exact_second(x: mpfr) -> mpfr:
    # 2 tanh(x) sech^2(x) = 8 s e (1 - e) / (1 + e)^3, e = e^-2|x|; 2x - 8x^3/3 + ... near 0.
    with _at():
        if _tiny(x * x):
            return _plus_tiny(2 * x, -8 * x**3 / 3)
        a = 2 * abs(x)
        e = _exp_neg(a)
        value = -8 * e * gmpy2.expm1(-a) / ((1 + e) * (1 + e) * (1 + e))
        return value if x > 0 else -value


def _bernoulli(n: int) -> Fraction:
    """The Bernoulli number B_n (B_1 = +1/2), exactly (Akiyama and Tanigawa's algorithm)."""
    a = [Fraction(0)] * (n + 1)
    for m in range(n + 1):
        a[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
    return a[0]


#: x - tanh x = sum over n >= 2 of -c_n x^(2n-1), c_n the Taylor coefficients of tanh
#: (2^2n (2^2n - 1) B_2n / (2n)!): 24 terms reach 2^-80 relative for |x| <= 1/2.
_TANHSHRINK_EXACT_SERIES: tuple[Fraction, ...] = tuple(
    -Fraction(2 ** (2 * n) * (2 ** (2 * n) - 1)) * _bernoulli(2 * n) / math.factorial(2 * n)
    for n in range(2, 26)
)
_TANHSHRINK_EXACT_UP_TO = 0.5


def _tanhshrink_fast(x: bd.B) -> bd.B:
    small = np.abs(x.v) <= _TANHSHRINK_EXACT_UP_TO
    x_small = bd.where(small, x, bd.zero(x))
    x2 = x_small.square()
    total = bd.constant(_TANHSHRINK_EXACT_SERIES[-1], x)
    for c in reversed(_TANHSHRINK_EXACT_SERIES[:-1]):
        total = total * x2 + bd.constant(c, x)
    series = total * x2 * x_small
    return bd.where(small, series, x - bd.tanh(x))


def _tanhshrink_fast_derivative(x: bd.B) -> bd.B:
    return bd.tanh(x).square()


def _tanhshrink_fast_second(x: bd.B) -> bd.B:
    e = bd.exp(abs(x) * -2.0)
    return 2.0 * bd.tanh(x) * 4.0 * e / (1.0 + e).square()


register(
    Activation(
        name="tanhshrink",
        kind="elementwise",
        fast=Bounded(_tanhshrink_fast, _tanhshrink_fast_derivative, _tanhshrink_fast_second),
        blocked=True,
        forward=tanhshrink,
        derivative=lambda x: np.square(np.tanh(x)),
        second=lambda x: 2.0 * np.tanh(x) * sech2(x),
        exact=Exact(_tanhshrink_exact, _tanhshrink_exact_derivative, _tanhshrink_exact_second),
        formula=r"f(x) = x - \tanh(x)",
        derivative_formula=r"f'(x) = \tanh^2(x)",
        range="(-inf, inf)",
        typical_use=("sparse_coding",),
        notes=("Computed without the cancellation of x - tanh(x) near 0, where it is x^3/3.",),
        aliases=("tanh_shrink", "Tanhshrink"),
        reference="PyTorch torch.nn.Tanhshrink; Keras keras.activations.tanh_shrink",
        examples=(Example(x=1.0, y=0.23840584404423512), Example(x=0.001, y=3.33333200000054e-10)),
    )
)

# -- squareplus / exponential ----------------------------------------------------------------------


def _squareplus_root(x: Array, b: float) -> Array:
    """sqrt(x^2 + b); hypot only when x^2 could overflow."""
    if x.size and float(np.max(np.abs(x))) > 1e150:
        return np.hypot(x, np.sqrt(b))
    return np.sqrt(x * x + b)


def squareplus(x: Array, b: float) -> Array:
    # For x < 0, (x + s)/2 cancels; b / (2 (s + |x|)) is the same number and its
    # denominator is at least sqrt(b) > 0.
    s = _squareplus_root(x, b)
    return np.where(x >= 0, 0.5 * x + 0.5 * s, b / (2.0 * (s + np.abs(x))))


def squareplus_derivative(x: Array, b: float) -> Array:
    s = _squareplus_root(x, b)
    return np.where(x >= 0, 0.5 + 0.5 * (x / s), b / (2.0 * s * (s + np.abs(x))))


# With u = b / x^2: for u small, f = x + b/(4x) - ... (x > 0) or m (1 - u/4 + ...) with
# m = b / (4|x|) (x < 0), f' = 1 - u/4 or m' (1 - 3u/4) with m' = b / (4x^2), f'' = m'' (1 - 3u/2)
# with m'' = b / (2|x|^3), df/db = m_b (1 - u/2) with m_b = 1 / (4|x|).  For x^2/b small,
# f = sqrt(b)/2 + x/2 + x^2 / (4 sqrt b) - ....  The leading terms may be short binary numbers
# (x; b/4|x| where x is a power of two; sqrt(b)/2 where b is a square).


def _squareplus_exact(x: mpfr, b: mpfr) -> mpfr:
    with _at():
        x2 = x * x
        if gmpy2.is_zero(x):
            return gmpy2.sqrt(b) / 2
        u = b / x2
        if _tiny(u):
            if x > 0:
                return _plus_tiny(x, b / (4 * x))
            m = b / (-4 * x)
            return _plus_tiny(m, -m * u / 4)
        if _tiny(1 / u):
            r = gmpy2.sqrt(b)
            return _plus_tiny(r / 2, x / 2 + x2 / (4 * r))
        s = gmpy2.sqrt(x2 + b)
        return (x + s) / 2 if x >= 0 else b / (2 * (s - x))


def _squareplus_exact_derivative(x: mpfr, b: mpfr) -> mpfr:
    with _at():
        x2 = x * x
        if x < 0 and _tiny(u := b / x2):
            m = b / (4 * x2)
            return _plus_tiny(m, -3 * m * u / 4)
        s = gmpy2.sqrt(x2 + b)
        return (1 + x / s) / 2 if x >= 0 else b / (2 * s * (s - x))


def _squareplus_exact_second(x: mpfr, b: mpfr) -> mpfr:
    with _at():
        x2 = x * x
        if not gmpy2.is_zero(x) and _tiny(u := b / x2):
            m = b / (2 * x2 * abs(x))
            return _plus_tiny(m, -3 * m * u / 2)
        s = gmpy2.sqrt(x2 + b)
        return b / (2 * s * s * s)


def _squareplus_exact_b(x: mpfr, b: mpfr) -> mpfr:
    with _at():
        x2 = x * x
        if not gmpy2.is_zero(x) and _tiny(u := b / x2):
            m = 1 / (4 * abs(x))
            return _plus_tiny(m, -m * u / 2)
        return 1 / (4 * gmpy2.sqrt(x2 + b))


def _squareplus_fast_root(x: bd.B, b: float) -> bd.B:
    return bd.sqrt(x.square() + b)


def _squareplus_fast(x: bd.B, b: float) -> bd.B:
    s = _squareplus_fast_root(x, b)
    return bd.where(x.v >= 0, (x + s) * 0.5, x.like(b) / ((s - x) * 2.0))


def _squareplus_fast_derivative(x: bd.B, b: float) -> bd.B:
    s = _squareplus_fast_root(x, b)
    return bd.where(x.v >= 0, (1.0 + x / s) * 0.5, x.like(b) / (s * (s - x) * 2.0))


def _squareplus_fast_second(x: bd.B, b: float) -> bd.B:
    s = _squareplus_fast_root(x, b)
    return x.like(b) / (s.square() * s * 2.0)


def _squareplus_fast_b(x: bd.B, b: float) -> bd.B:
    return 0.25 / _squareplus_fast_root(x, b)


register(
    Activation(
        name="squareplus",
        kind="elementwise",
        fast=Bounded(
            _squareplus_fast, _squareplus_fast_derivative, _squareplus_fast_second, {"b": _squareplus_fast_b}
        ),
        blocked=True,
        forward=squareplus,
        derivative=squareplus_derivative,
        second=lambda x, b: (
            0.5 * b / _squareplus_root(x, b) / _squareplus_root(x, b) / _squareplus_root(x, b)
        ),
        param_grads=lambda x, b: {"b": 0.25 / _squareplus_root(x, b)},
        exact=Exact(
            _squareplus_exact,
            _squareplus_exact_derivative,
            _squareplus_exact_second,
            params={"b": _squareplus_exact_b},
        ),
        params=(
            Param(name="b", default=4.0, minimum=0.0, exclusive_minimum=True, description="curvature at 0"),
        ),
        formula=r"f(x) = \frac{x + \sqrt{x^2 + b}}{2}",
        derivative_formula=r"f'(x) = \frac{1}{2}\left(1 + \frac{x}{\sqrt{x^2 + b}}\right)",
        range="(0, inf)",
        typical_use=("hidden",),
        notes=("A softplus built from algebraic operations only.",),
        reference="Barron, Squareplus: a softplus-like algebraic rectifier (2021)",
        examples=(Example(x=0.0, y=1.0), Example(x=-3.0, y=0.3027756377319947)),
    )
)


def _exponential_exact(x: mpfr) -> mpfr:
    # Clamped at +-_TAIL: e^65536 exceeds, and e^-65536 is below, every format.
    with _at():
        return gmpy2.exp(x) if abs(x) < _TAIL else gmpy2.exp(_TAIL if x > 0 else -_TAIL)


register(
    Activation(
        name="exponential",
        kind="elementwise",
        fast=Bounded(bd.exp, bd.exp, bd.exp),
        forward=np.exp,
        derivative=np.exp,
        second=np.exp,
        exact=Exact(_exponential_exact, _exponential_exact, _exponential_exact),
        formula=r"f(x) = e^x",
        derivative_formula=r"f'(x) = e^x",
        range="(0, inf)",
        typical_use=("positive_output",),
        notes=("Overflows float64 above x = 709.78: such inputs are refused with a 422 naming the element.",),
        aliases=("exp",),
        reference="Keras keras.activations.exponential",
        examples=(Example(x=0.0, y=1.0), Example(x=1.0, y=2.718281828459045)),
    )
)


# -- snake ------------------------------------------------------------------------------------------


def _snake_parts(x: Array, a: float, value: bool = False) -> tuple[Any, Any, Any, Any]:
    """(x, a, sin ax, cos ax), in float64 where that is accurate, else (element by element) in
    extended precision (no overflow of ax, and sin gets its argument's low bits).

    float64 is accurate for a moderate a and |ax| < 2^20 (the rounding of ax moves sin by less
    than 2^-33); for the value at any |ax| too, as sin^2(ax)/a <= 1/a <= |x| / |ax| is then below
    an ULP of x where ax's rounding could show.  The long double loop is 30x slower, and profiles
    call this thousands of times."""
    xs = np.asarray(x, np.float64)
    if not 1e-150 < a < 1e150:
        xe, ae = xs.astype(EXTENDED), EXTENDED(a)
        return xe, ae, np.sin(xe * ae), np.cos(xe * ae)
    with np.errstate(over="ignore"):
        t = xs * a
    wide = ~(np.abs(t) < (np.inf if value else 2.0**20)) | ((np.abs(t) < 1e-150) & (t != 0))
    s = np.sin(np.where(wide, 0.0, t))
    c = None if value else np.cos(np.where(wide, 0.0, t))  # (the value needs no cosine)
    if np.any(wide):
        te = xs[wide].astype(EXTENDED) * EXTENDED(a)
        s = s.astype(EXTENDED)
        s[wide] = np.sin(te)
        if c is not None:
            c = c.astype(EXTENDED)
            c[wide] = np.cos(te)
        return xs.astype(EXTENDED), EXTENDED(a), s, c
    return xs, a, s, c


def _snake(x: Array, a: float) -> Array:
    xs, ae, s, _ = _snake_parts(x, a, value=True)
    return np.asarray(xs + s * (s / ae), np.float64)


def _snake_derivative(x: Array, a: float) -> Array:
    _, _, s, c = _snake_parts(x, a)
    return np.asarray(1 + 2 * s * c, np.float64)


def _snake_second(x: Array, a: float) -> Array:
    _, ae, s, c = _snake_parts(x, a)
    return np.asarray((c - s) * (c + s) * 2 * ae, np.float64)


def _snake_a(x: Array, a: float) -> Array:
    # x sin(2ax)/a - sin^2(ax)/a^2 = (s/a)(2 x c - s/a): no overflow of 2a or a^2.
    xs, ae, s, c = _snake_parts(x, a)
    q = s / ae
    return np.asarray(q * (2 * xs * c - q), np.float64)


def _snake_fast_parts(x: bd.B, a: float) -> tuple[bd.B, bd.B]:
    t = bd.product(x, a)
    return bd.sin(t), bd.cos(t)


def _snake_fast(x: bd.B, a: float) -> bd.B:
    s, _ = _snake_fast_parts(x, a)
    return x + s.square() / a


def _snake_fast_derivative(x: bd.B, a: float) -> bd.B:
    s, c = _snake_fast_parts(x, a)
    return 1.0 + (s * c) * 2.0


def _snake_fast_second(x: bd.B, a: float) -> bd.B:
    s, c = _snake_fast_parts(x, a)
    return (c - s) * (c + s) * 2.0 * a


def _snake_fast_a(x: bd.B, a: float) -> bd.B:
    s, c = _snake_fast_parts(x, a)
    q = s / a
    return q * (x * c * 2.0 - q)


def _snake_exact_t(x: mpfr, a: mpfr) -> mpfr:
    return a * x  # exact: 106 bits at a working precision of at least 128


def _snake_exact(x: mpfr, a: mpfr) -> mpfr:
    with _at():
        s = gmpy2.sin(_snake_exact_t(x, a))
        return x + s * s / a


def _snake_exact_derivative(x: mpfr, a: mpfr) -> mpfr:
    # 1 + sin(2ax) touches 0 (never at a float) where 2ax = -pi/2 + 2k pi: it cancels there.
    return _nonzero(lambda: 1 + gmpy2.sin(2 * _snake_exact_t(x, a)), extra=8)


def _snake_exact_second(x: mpfr, a: mpfr) -> mpfr:
    return _nonzero(lambda: 2 * a * gmpy2.cos(2 * _snake_exact_t(x, a)))


def _snake_exact_a(x: mpfr, a: mpfr) -> mpfr:
    if gmpy2.is_zero(x):
        return mpfr(0)

    def formula() -> mpfr:
        t = _snake_exact_t(x, a)
        q = gmpy2.sin(t) / a
        return q * (2 * x * gmpy2.cos(t) - q)

    return _nonzero(formula, extra=8)


register(
    Activation(
        name="snake",
        kind="elementwise",
        fast=Bounded(
            _snake_fast,
            _snake_fast_derivative,
            _snake_fast_second,
            {"a": _snake_fast_a},
        ),
        forward=_snake,
        derivative=_snake_derivative,
        second=_snake_second,
        param_grads=lambda x, a: {"a": _snake_a(x, a)},
        exact=Exact(_snake_exact, _snake_exact_derivative, _snake_exact_second, params={"a": _snake_exact_a}),
        params=(
            Param(
                name="a",
                default=1.0,
                minimum=0.0,
                exclusive_minimum=True,
                description="frequency: sin^2(a x)/a; small a approaches x + a x^2, large a approaches x",
            ),
        ),
        formula=r"f(x) = x + \frac{\sin^2(a x)}{a}",
        derivative_formula=r"f'(x) = 1 + \sin(2 a x)",
        range="(-inf, inf), non-decreasing",
        typical_use=("hidden",),
        notes=(
            "A periodic bias for data that repeats (audio, time series): f' = 1 + sin(2ax) >= 0 "
            "touches 0 where ax = -pi/4 + k pi, so f is monotone and never saturates.",
            "a is learned per channel in BigVGAN and DAC; the scalar here is one channel's.",
        ),
        aliases=("Snake",),
        reference=(
            "Ziyin, Hartwig and Ueda, Neural networks fail to learn periodic functions and how to fix it (2020)"
        ),
        examples=(Example(x=1.0, y=1.7080734182735712), Example(x=-1.0, y=-0.2919265817264288)),
    )
)


# -- xielu ------------------------------------------------------------------------------------------
#
# alpha_p x^2 + beta x (x > 0); alpha_n (expm1(min(x, eps)) - x) + beta x (x <= 0).  Between eps and 0
# it is linear: alpha_n expm1(eps) + (beta - alpha_n) x.  f jumps at 0 by alpha_n expm1(eps) (-8e-7
# with the defaults) and f' jumps at eps and at 0; at both the service takes the middle piece,
# f' = beta - alpha_n, f'' = 0 (at 0 that is the definition's x <= 0; at eps the piece min(x, eps)
# = eps, which is the one the parameter eps acts on).


def _xielu_pieces(x: Any, eps: float) -> tuple[Any, Any, Any]:
    """Masks: x > 0, eps <= x <= 0, x < eps."""
    positive = x > 0
    below = x < eps
    return positive, ~positive & ~below, below


def _xielu(x: Array, alpha_p: float, alpha_n: float, beta: float, eps: float) -> Array:
    m = np.minimum(x, eps)
    negative = alpha_n * (np.expm1(m) - np.minimum(x, 0.0)) + beta * np.minimum(x, 0.0)
    positive = np.maximum(x, 0.0)
    return np.where(x > 0, alpha_p * positive * positive + beta * positive, negative)


def _xielu_derivative(x: Array, alpha_p: float, alpha_n: float, beta: float, eps: float) -> Array:
    positive, middle, _ = _xielu_pieces(x, eps)
    below = alpha_n * np.expm1(np.minimum(x, eps)) + beta
    return np.where(
        positive, 2 * alpha_p * np.maximum(x, 0.0) + beta, np.where(middle, beta - alpha_n, below)
    )


def _xielu_second(x: Array, alpha_p: float, alpha_n: float, beta: float, eps: float) -> Array:
    positive, middle, _ = _xielu_pieces(x, eps)
    return np.where(positive, 2 * alpha_p, np.where(middle, 0.0, _scaled_exp(np.minimum(x, eps), alpha_n)))


def _xielu_grads(x: Array, alpha_p: float, alpha_n: float, beta: float, eps: float) -> dict[str, Array]:
    positive, middle, _ = _xielu_pieces(x, eps)
    xn = np.minimum(x, 0.0)
    return {
        "alpha_p": np.where(positive, np.maximum(x, 0.0) ** 2, 0.0),
        "alpha_n": np.where(positive, 0.0, np.expm1(np.minimum(x, eps)) - xn),
        "beta": np.asarray(x, np.float64) + 0.0,
        "eps": np.where(middle, alpha_n * math.exp(eps), 0.0),
    }


def _xielu_fast(x: bd.B, alpha_p: float, alpha_n: float, beta: float, eps: float) -> bd.B:
    positive, middle, _ = _xielu_pieces(x.v, eps)
    right = x * (x * alpha_p + beta)
    flat = bd.expm1(B_exact(eps, x)) * alpha_n + x * (B_exact(beta, x) - alpha_n)
    left = (bd.expm1(x) - x) * alpha_n + x * beta
    return bd.where(positive, right, bd.where(middle, flat, left))


def B_exact(value: float, like: bd.B) -> bd.B:
    """A float64 number as an exact bounded value in like's working dtype."""
    return bd.B.exact(value, like.v.dtype)


def _xielu_fast_derivative(x: bd.B, alpha_p: float, alpha_n: float, beta: float, eps: float) -> bd.B:
    positive, middle, _ = _xielu_pieces(x.v, eps)
    right = x * (2.0 * alpha_p) + beta if math.isfinite(2.0 * alpha_p) else x * alpha_p * 2.0 + beta
    flat = B_exact(beta, x) - alpha_n
    left = bd.expm1(x) * alpha_n + beta
    flat = bd.B(*np.broadcast_arrays(flat.v, flat.e, x.v)[:2])
    return bd.where(positive, right, bd.where(middle, flat, left))


def _xielu_fast_second(x: bd.B, alpha_p: float, alpha_n: float, beta: float, eps: float) -> bd.B:
    positive, middle, _ = _xielu_pieces(x.v, eps)
    right = B_exact(alpha_p, x) * 2.0
    right = bd.B(*np.broadcast_arrays(right.v, right.e, x.v)[:2])
    return bd.where(positive, right, bd.where(middle, bd.zero(x), bd.exp(x) * alpha_n))


def _xielu_fast_alpha_n(x: bd.B, alpha_p: float, alpha_n: float, beta: float, eps: float) -> bd.B:
    positive, middle, _ = _xielu_pieces(x.v, eps)
    flat = bd.expm1(B_exact(eps, x)) - x
    return bd.where(positive, bd.zero(x), bd.where(middle, flat, bd.expm1(x) - x))


def _xielu_fast_eps(x: bd.B, alpha_p: float, alpha_n: float, beta: float, eps: float) -> bd.B:
    _, middle, _ = _xielu_pieces(x.v, eps)
    at = bd.exp(B_exact(eps, x)) * alpha_n
    at = bd.B(*np.broadcast_arrays(at.v, at.e, x.v)[:2])
    return bd.where(middle, at, bd.zero(x))


def _q(v: mpfr) -> Any:
    return gmpy2.mpq(v)


def _rational(q: Any) -> mpfr:
    """An exact rational at the working precision (rounded once: a midpoint of a format stays one)."""
    return gmpy2.mpfr(q)


def _expm1_minus(x: mpfr) -> mpfr:
    """e^x - 1 - x for x < 0 (x^2/2 near 0, -1 - x + e^x far out), without cancellation."""
    if x < -1:
        return _plus_tiny_rational(-1 - _q(x), _exp_neg(-x))
    if _tiny(x):
        return _plus_tiny(x * x / 2, x * x * x / 6)
    # e^x - 1 and x agree to log2(1/|x|) bits: carried as extra precision.
    with _at(max(-_exponent(x), 0) + 8):
        return gmpy2.expm1(x) - x


def _xielu_exact(x: mpfr, alpha_p: mpfr, alpha_n: mpfr, beta: mpfr, eps: mpfr) -> mpfr:
    with _at():
        if x > 0:
            return _rational(_q(x) * (_q(alpha_p) * _q(x) + _q(beta)))
        if x >= eps:  # alpha_n expm1(eps) + (beta - alpha_n) x = (beta - alpha_n) x + alpha_n eps, exactly,
            # plus alpha_n (e^eps - 1 - eps): the rounding error of alpha_n expm1(eps) would lie far
            # above beta x where beta << alpha_n and x is near eps, and that can decide the rounding
            main = (_q(beta) - _q(alpha_n)) * _q(x) + _q(alpha_n) * _q(eps)
            return _plus_tiny_rational(main, alpha_n * _expm1_minus(eps) if alpha_n and eps else mpfr(0))
        if not alpha_n:
            return beta * x
        if x < -1:  # (beta - alpha_n) x - alpha_n + alpha_n e^x: the rational part in one piece, as
            # beta x and alpha_n (-1 - x) cancel where beta = alpha_n (to 0 at x = -1e300, not -alpha_n)
            rational = (_q(beta) - _q(alpha_n)) * _q(x) - _q(alpha_n)
            return _plus_tiny_rational(rational, alpha_n * _exp_neg(-x))
        return _plus_tiny_rational(_q(beta) * _q(x), alpha_n * _expm1_minus(x))


def _xielu_exact_derivative(x: mpfr, alpha_p: mpfr, alpha_n: mpfr, beta: mpfr, eps: mpfr) -> mpfr:
    with _at():
        if x > 0:
            return _rational(2 * _q(alpha_p) * _q(x) + _q(beta))
        if x >= eps or not alpha_n:
            return _rational(_q(beta) - _q(alpha_n)) if x >= eps else _rational(_q(beta))
        if x < -1:  # beta - alpha_n + alpha_n e^x
            return _plus_tiny_rational(_q(beta) - _q(alpha_n), alpha_n * _exp_neg(-x))
        # beta + alpha_n x + alpha_n (e^x - 1 - x); the sum crosses 0 at log1p(-beta/alpha_n), never a float
        return _nonzero(
            lambda: _plus_tiny_rational(_q(beta) + _q(alpha_n) * _q(x), alpha_n * _expm1_minus(x))
        )


def _xielu_exact_second(x: mpfr, alpha_p: mpfr, alpha_n: mpfr, beta: mpfr, eps: mpfr) -> mpfr:
    if x > 0:
        return 2 * alpha_p
    if x >= eps:
        return mpfr(0)
    with _at():
        return alpha_n * _exp_neg(-x)


def _xielu_exact_alpha_p(x: mpfr, **_: mpfr) -> mpfr:
    with _at():
        return x * x if x > 0 else mpfr(0)


def _xielu_exact_alpha_n(x: mpfr, alpha_p: mpfr, alpha_n: mpfr, beta: mpfr, eps: mpfr) -> mpfr:
    if x > 0:
        return mpfr(0)
    with _at():
        if x >= eps:  # expm1(eps) - x = (eps - x) + (e^eps - 1 - eps): the rational part exactly
            return _plus_tiny_rational(_q(eps) - _q(x), _expm1_minus(eps) if eps else mpfr(0))
        return _expm1_minus(x)


def _xielu_exact_beta(x: mpfr, **_: mpfr) -> mpfr:
    return x


def _xielu_exact_eps(x: mpfr, alpha_p: mpfr, alpha_n: mpfr, beta: mpfr, eps: mpfr) -> mpfr:
    if x > 0 or x < eps or not alpha_n:
        return mpfr(0)
    with _at():
        return alpha_n * _exp_neg(-eps)


register(
    Activation(
        name="xielu",
        kind="elementwise",
        fast=Bounded(
            _xielu_fast,
            _xielu_fast_derivative,
            _xielu_fast_second,
            {
                "alpha_p": lambda x, alpha_p, alpha_n, beta, eps: bd.where(x.v > 0, x.square(), bd.zero(x)),
                "alpha_n": _xielu_fast_alpha_n,
                "beta": bd.core(lambda x, **_: np.asarray(x, np.float64) + 0.0),
                "eps": _xielu_fast_eps,
            },
        ),
        forward=_xielu,
        derivative=_xielu_derivative,
        second=_xielu_second,
        param_grads=_xielu_grads,
        exact=Exact(
            _xielu_exact,
            _xielu_exact_derivative,
            _xielu_exact_second,
            params={
                "alpha_p": _xielu_exact_alpha_p,
                "alpha_n": _xielu_exact_alpha_n,
                "beta": _xielu_exact_beta,
                "eps": _xielu_exact_eps,
            },
        ),
        params=(
            Param(name="alpha_p", default=0.8, minimum=0.0, description="curvature of the positive side"),
            Param(
                name="alpha_n",
                default=0.8,
                minimum=0.0,
                description="weight of the negative side's exponential",
            ),
            Param(name="beta", default=0.5, description="slope of the linear term on both sides"),
            Param(
                name="eps",
                default=-1e-6,
                maximum=0.0,
                description="where the negative side's exponential stops (expm1(min(x, eps))): at most 0",
            ),
        ),
        formula=(
            r"f(x) = \alpha_p x^2 + \beta x \; (x > 0), \;"
            r" \alpha_n \left(\operatorname{expm1}(\min(x, \varepsilon)) - x\right) + \beta x \; (x \le 0)"
        ),
        derivative_formula=(
            r"f'(x) = 2 \alpha_p x + \beta \; (x > 0), \; \beta - \alpha_n \; (\varepsilon \le x \le 0),"
            r" \; \alpha_n (e^x - 1) + \beta \; (x < \varepsilon)"
        ),
        range="[-0.2057, inf) with the defaults: unbounded on both sides when beta < alpha_n",
        kinks=(
            Kink(
                at="eps",
                derivative="beta - alpha_n",
                second_derivative=0.0,
                note="f' jumps from alpha_n expm1(eps) + beta to beta - alpha_n; the service takes the right piece",
            ),
            Kink(
                at=0.0,
                derivative="beta - alpha_n",
                second_derivative=0.0,
                note=(
                    "f itself jumps by -alpha_n expm1(eps) (8e-7 with the defaults) and f' from beta - alpha_n "
                    "to beta: the service takes the definition's x <= 0 piece"
                ),
            ),
        ),
        typical_use=("hidden",),
        notes=(
            "Quadratic for x > 0 and an integrated ELU for x <= 0, with trainable alpha_p, alpha_n, beta "
            "(Apertus: alpha_p = softplus(a_p), alpha_n = beta + softplus(a_n); here the values themselves).",
        ),
        aliases=("xIELU", "XIELU"),
        reference="Huang and Schlag, Deriving activation functions using integration (2024); Apertus (2025)",
        examples=(Example(x=-1.0, y=-0.20569644706284613), Example(x=2.0, y=4.2)),
    )
)
