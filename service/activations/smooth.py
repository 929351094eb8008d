"""Smooth activations: the exponential-linear, Gaussian-error and sigmoid-weighted families.

Where a function is evaluated at a scaled argument (beta*x, 1.702*x, x/sqrt(2))
the product is carried as hi + lo (see :mod:`.exact`), so that the tails, where
the rounding of the argument is amplified by exp, keep full relative accuracy.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import exact
from .elementwise import sech2
from .exact import EXTENDED
from .registry import Activation, Array, Example, Kink, Param, register

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


register(
    Activation(
        name="elu",
        kind="elementwise",
        forward=elu,
        derivative=elu_derivative,
        second=lambda x, alpha: np.where(x > 0, 0.0, _scaled_exp(x, alpha)),
        param_grads=lambda x, alpha: {"alpha": np.where(x > 0, 0.0, np.expm1(_negative(x)))},
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

register(
    Activation(
        name="selu",
        kind="elementwise",
        forward=lambda x: np.where(x > 0, SELU_SCALE * x, SELU_SCALE_ALPHA * np.expm1(_negative(x))),
        derivative=lambda x: np.where(x > 0, SELU_SCALE, _scaled_exp(x, SELU_SCALE_ALPHA)),
        second=lambda x: np.where(x > 0, 0.0, _scaled_exp(x, SELU_SCALE_ALPHA)),
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
    return np.exp(hi) * (1.0 + lo)


register(
    Activation(
        name="celu",
        kind="elementwise",
        forward=lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(_negative(x) / alpha)),
        derivative=lambda x, alpha: np.where(x > 0, 1.0, _celu_exp(x, alpha)),
        second=lambda x, alpha: np.where(x > 0, 0.0, _celu_exp(x, alpha) / alpha),
        param_grads=lambda x, alpha: {"alpha": np.where(x > 0, 0.0, _celu_alpha_grad(_negative(x) / alpha))},
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


register(
    Activation(
        name="gelu",
        kind="elementwise",
        blocked=True,
        forward=gelu,
        derivative=gelu_derivative,
        second=gelu_second,
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


register(
    Activation(
        name="gelu_tanh",
        kind="elementwise",
        blocked=True,
        forward=gelu_tanh,
        derivative=gelu_tanh_derivative,
        second=gelu_tanh_second,
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


register(
    Activation(
        name="silu",
        kind="elementwise",
        blocked=True,
        forward=lambda x, beta: _swish(x, *exact.scale(x, beta)),
        derivative=lambda x, beta: _swish_derivative(x, *exact.scale(x, beta)),
        second=lambda x, beta: _swish_second(x, *exact.scale(x, beta), beta),
        param_grads=lambda x, beta: {"beta": x * exact.dexpit_times(*exact.scale(x, beta), x)},
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

register(
    Activation(
        name="quick_gelu",
        kind="elementwise",
        blocked=True,
        forward=lambda x: _swish(x, *exact.scale(x, QUICK_GELU_BETA)),
        derivative=lambda x: _swish_derivative(x, *exact.scale(x, QUICK_GELU_BETA)),
        second=lambda x: _swish_second(x, *exact.scale(x, QUICK_GELU_BETA), QUICK_GELU_BETA[0]),
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


register(
    Activation(
        name="mish",
        kind="elementwise",
        blocked=True,
        forward=mish,
        derivative=mish_derivative,
        second=mish_second,
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


register(
    Activation(
        name="softplus",
        kind="elementwise",
        blocked=True,
        forward=lambda x, beta: _softplus(x) if beta == 1.0 else _softplus_beta(x, beta)[0] / beta,
        derivative=lambda x, beta: _softplus_beta(x, beta)[1],
        second=lambda x, beta: exact.dexpit_times(*exact.scale(x, beta), beta),
        param_grads=lambda x, beta: {"beta": softplus_beta_grad(x, beta)},
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


register(
    Activation(
        name="softsign",
        kind="elementwise",
        forward=lambda x: x / (1.0 + np.abs(x)),
        derivative=lambda x: np.square(_inv_one_plus_abs(x)),
        second=lambda x: -2.0 * np.sign(x) * _inv_one_plus_abs(x) ** 3,
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

register(
    Activation(
        name="log_sigmoid",
        kind="elementwise",
        # min(x, 0) - log1p(exp(-|x|)): both terms <= 0, so nothing cancels.
        forward=lambda x: np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x))),
        derivative=lambda x: exact.logistic(-x),
        second=lambda x: -exact.logistic(x) * exact.logistic(-x),
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


register(
    Activation(
        name="tanhshrink",
        kind="elementwise",
        blocked=True,
        forward=tanhshrink,
        derivative=lambda x: np.square(np.tanh(x)),
        second=lambda x: 2.0 * np.tanh(x) * sech2(x),
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


register(
    Activation(
        name="squareplus",
        kind="elementwise",
        blocked=True,
        forward=squareplus,
        derivative=squareplus_derivative,
        second=lambda x, b: (
            0.5 * b / _squareplus_root(x, b) / _squareplus_root(x, b) / _squareplus_root(x, b)
        ),
        param_grads=lambda x, b: {"b": 0.25 / _squareplus_root(x, b)},
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

register(
    Activation(
        name="exponential",
        kind="elementwise",
        forward=np.exp,
        derivative=np.exp,
        second=np.exp,
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
