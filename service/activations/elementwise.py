"""Elementwise activations: one block per function, forward and derivative.

Numerical policy: derivatives are computed from the input x, never rebuilt from
the rounded output.  ``sigmoid'(x) = y(1 - y)`` and ``tanh'(x) = 1 - y**2`` are
exact algebra but return 0 for x > 36.7 and |x| > 19.1 in float64 although the
true values (4.2e-18 at 40, 1.7e-17 at 20) are ordinary floats; PyTorch and JAX
both do this.  The forms below keep full relative accuracy in the tails.
"""

from __future__ import annotations

import gmpy2
import numpy as np
from gmpy2 import mpfr, mpq

from . import bounded as bd
from .bounded import Bounded
from .exact import RATIONAL, logistic
from .registry import Activation, Array, Exact, Example, Kink, Param, register

# -- exact definitions: rounding to odd ----------------------------------------------
#
# A value rounded to nearest at the working precision can land exactly on a
# midpoint between two numbers of the format while the true value lies to one
# side of it: x - lambda with x = 1 + 3 * 2^-24 and lambda = 1e-300 rounds to
# the float32 midpoint 1 + 3 * 2^-24 at 88 bits and at 176, and the single
# rounding to float32 then breaks a tie that is not there (to even: up, where
# the true value lies below).  Doubling the precision does not tell: only past
# ~1000 bits does the difference show.  Rounded to odd instead (toward zero,
# then the last bit set when inexact), a value is a midpoint of a narrower
# format only when it is exact, so the rounding to any format at least 2 bits
# narrower than the working precision (the engine's is 64 bits wider) is the
# correct rounding of the true value (Boldo and Melquiond, Emulation of FMA and
# correctly rounded sums: proved algorithms using rounding to odd, 2008).
# Rational results are formed exactly (mpq) and rounded to odd once; so is tanh,
# which MPFR rounds toward zero correctly.


def to_odd(r: mpfr, inexact: bool) -> mpfr:
    """``r``, the true value rounded toward zero at the working precision, rounded to odd."""
    if not inexact:
        return r
    m, e = r.as_mantissa_exp()  # r = m 2^e, m with the working precision's bits
    if m % 2:
        return r
    return gmpy2.mul_2exp(mpfr(m + (1 if m > 0 else -1)), e)


def rational_to_odd(q: mpq) -> mpfr:
    """The rational ``q`` at the working precision, rounded to odd (exact when it fits)."""
    with gmpy2.context(gmpy2.get_context(), round=gmpy2.RoundToZero):
        r = mpfr(q)
    return to_odd(r, mpq(r) != q)


def exactly(q: mpq) -> mpfr:
    """The rational ``q`` at the working precision, rounded to odd (exact when it fits); ``q``
    itself within :func:`rationals`."""
    if RATIONAL.get():
        return q
    return rational_to_odd(q)


def exact_input(x: mpfr) -> mpfr:
    """A float64 input itself (exact: the working precision exceeds 53 bits)."""
    return exactly(mpq(x))


def exact_constant(numerator: int, denominator: int = 1) -> mpfr:
    return exactly(mpq(numerator, denominator))


def exact_zero(x: mpfr, **params: mpfr) -> mpfr:
    """The zero derivatives of piecewise-linear pieces, and at kinks (deltas are not represented)."""
    return mpfr(0)


# -- step ----------------------------------------------------------------------


def step(x: Array) -> Array:
    # y = 1 for x > 0 and 0 otherwise, as the classic perceptron tutorials define it.
    return (x > 0).astype(np.float64)


def step_derivative(x: Array) -> Array:
    # Zero everywhere; the Dirac delta at 0 is not representable and is not returned.
    return np.zeros_like(x)


def zero(x: Array, **params: float) -> Array:
    """The zero derivative of piecewise-linear pieces (deltas at kinks are not represented)."""
    return np.zeros_like(x)


def _step_exact(x: mpfr) -> mpfr:
    return exact_constant(1 if x > 0 else 0)


register(
    Activation(
        name="step",
        kind="elementwise",
        fast=Bounded(bd.core(step), bd.core(step_derivative), bd.core(zero)),
        forward=step,
        derivative=step_derivative,
        second=zero,
        exact=Exact(_step_exact, exact_zero, exact_zero),
        formula=r"f(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}",
        derivative_formula=r"f'(x) = 0 \quad (x \ne 0)",
        range="{0, 1}",
        kinks=(
            Kink(
                at=0.0,
                derivative=0.0,
                second_derivative=0.0,
                note="f(0) = 0; the derivative is 0 everywhere, the Dirac delta at 0 is not represented",
            ),
        ),
        typical_use=("perceptron",),
        notes=(
            "The derivative is zero almost everywhere, so gradient descent cannot train it; "
            "sigmoid is its smooth replacement.",
        ),
        aliases=("heaviside", "binary_step"),
        reference="Rosenblatt, The perceptron (1958)",
        examples=(Example(x=-1.0, y=0.0), Example(x=0.0, y=0.0), Example(x=2.0, y=1.0)),
    )
)

# -- identity --------------------------------------------------------------------


def identity(x: Array) -> Array:
    return x.copy()


def identity_derivative(x: Array) -> Array:
    return np.ones_like(x)


def _identity_exact_derivative(x: mpfr) -> mpfr:
    return exact_constant(1)


register(
    Activation(
        name="identity",
        kind="elementwise",
        fast=Bounded(bd.core(identity), bd.core(identity_derivative), bd.core(zero)),
        forward=identity,
        derivative=identity_derivative,
        second=zero,
        exact=Exact(exact_input, _identity_exact_derivative, exact_zero),
        formula=r"f(x) = x",
        derivative_formula=r"f'(x) = 1",
        range="(-inf, inf)",
        typical_use=("regression_output",),
        notes=("A stack of layers with identity activations is still one linear map.",),
        aliases=("linear",),
        reference="Goodfellow, Bengio and Courville, Deep Learning (2016), section 6.2.2.1",
        examples=(Example(x=-2.0, y=-2.0), Example(x=3.5, y=3.5)),
    )
)

# -- sigmoid ---------------------------------------------------------------------


def sigmoid(x: Array) -> Array:
    # 1/(1 + exp(-x)) is exact to ~1 ULP for every x: no cancellation, and
    # exp(-x) = inf below x = -709 gives the correct 0 (see exact.logistic).
    return logistic(x)


def sigmoid_derivative(x: Array) -> Array:
    # sigma(x) * sigma(-x): both factors carry full relative precision, so the
    # product does too, down to sigma'(745) ~ 5e-324 (y*(1-y) is 0 past 36.7).
    return logistic(x) * logistic(-x)


def sigmoid_second(x: Array) -> Array:
    # sigma'' = sigma' (1 - 2 sigma) and 1 - 2 sigma(x) = -tanh(x/2) without cancellation.
    return -sigmoid_derivative(x) * np.tanh(0.5 * x)


def _sigmoid_exact(x: mpfr) -> mpfr:
    return 1 / (1 + gmpy2.exp(-x))


def _sigmoid_exact_derivative(x: mpfr) -> mpfr:
    # sigma(x) sigma(-x): no cancellation in either tail.
    return _sigmoid_exact(x) * _sigmoid_exact(-x)


def _sigmoid_exact_second(x: mpfr) -> mpfr:
    # sigma'(x) (1 - 2 sigma(x)) = -sigma'(x) tanh(x/2): exactly 0 at x = 0.
    return -_sigmoid_exact_derivative(x) * gmpy2.tanh(x / 2)


def _sigmoid_fast(x: bd.B) -> bd.B:
    return bd.sigmoid_pair(x)[0]


def _sigmoid_fast_derivative(x: bd.B) -> bd.B:
    return bd.dsig(x)


def _sigmoid_fast_second(x: bd.B) -> bd.B:
    return -bd.dsig(x) * bd.tanh(x * 0.5)


register(
    Activation(
        name="sigmoid",
        kind="elementwise",
        fast=Bounded(_sigmoid_fast, _sigmoid_fast_derivative, _sigmoid_fast_second),
        forward=sigmoid,
        derivative=sigmoid_derivative,
        second=sigmoid_second,
        exact=Exact(_sigmoid_exact, _sigmoid_exact_derivative, _sigmoid_exact_second),
        formula=r"\sigma(x) = \frac{1}{1 + e^{-x}}",
        derivative_formula=r"\sigma'(x) = \sigma(x)\,\sigma(-x) = \sigma(x)\,(1 - \sigma(x))",
        range="(0, 1)",
        typical_use=("binary_output",),
        notes=(
            "sigma' <= 0.25: gradients shrink by at least 4x per layer and vanish through deep stacks.",
            "Outputs are not zero-centred.",
        ),
        aliases=("logistic", "expit"),
        reference="Rumelhart, Hinton and Williams, Learning representations by back-propagating errors (1986)",
        examples=(
            Example(x=0.0, y=0.5),
            Example(x=2.0, y=0.8807970779778824),
            Example(x=-2.0, y=0.11920292202211756),
        ),
    )
)

# -- tanh ------------------------------------------------------------------------


def tanh(x: Array) -> Array:
    return np.tanh(x)


def tanh_derivative(x: Array) -> Array:
    # sech^2(x) = 4e / (1 + e)^2 with e = exp(-2|x|): no cancellation, and full
    # relative precision in the tails where 1 - tanh(x)^2 is 0.  |x| is capped
    # at 400 before doubling (exp(-800) is already 0) so 2|x| cannot overflow.
    return sech2(x)


def sech2(x: Array) -> Array:
    """sech(x)^2 with full relative precision for every x."""
    e = np.exp(-2.0 * np.minimum(np.abs(x), 400.0))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def tanh_second(x: Array) -> Array:
    return -2.0 * np.tanh(x) * sech2(x)


def _tanh_exact(x: mpfr) -> mpfr:
    # Rounded to odd: at a tiny x, tanh x = x - x^3/3 rounds to x itself at any working
    # precision below ~2 log2(1/|x|) bits, and x can be a midpoint of a narrower format.
    with gmpy2.context(gmpy2.get_context(), round=gmpy2.RoundToZero):
        t = gmpy2.tanh(x)
    return to_odd(t, not gmpy2.is_zero(x))  # tanh of a nonzero rational is transcendental


#: Beyond this |x|, sech^2 x < 2^-5900 and tanh'' too: far below half the smallest subnormal
#: of every format (2^-1075), where they round to +-0.  They are evaluated at +-_TANH_FLAT:
#: exp(-2|x|) underflows MPFR's exponent range past |x| ~ 3.7e8 and an underflow to zero
#: would lose the sign of tanh'' (the engine takes a zero for an exact +0).
_TANH_FLAT = 2048


def _tanh_argument(x: mpfr) -> mpfr:
    return x if abs(x) <= _TANH_FLAT else gmpy2.copy_sign(mpfr(_TANH_FLAT), x)


def _tanh_exact_derivative(x: mpfr) -> mpfr:
    # sech^2 x: no cancellation (1 - tanh^2 x cancels in the tails).
    return gmpy2.sech(_tanh_argument(x)) ** 2


def _tanh_exact_second(x: mpfr) -> mpfr:
    # -2 tanh x sech^2 x, exactly 0 at x = 0.  With tanh rounded to odd, a tiny x gives
    # strictly less than 2|x| in magnitude, as the true value: never the midpoint -2x.
    c = _tanh_argument(x)
    return -2 * _tanh_exact(c) * _tanh_exact_derivative(c)


def _sech2_fast(x: bd.B) -> bd.B:
    """sech^2 x = 4e / (1 + e)^2, e = e^-2|x|."""
    e = bd.exp(abs(x) * -2.0)
    return 4.0 * e / (1 + e).square()


def _tanh_fast_second(x: bd.B) -> bd.B:
    return -2.0 * bd.tanh(x) * _sech2_fast(x)


register(
    Activation(
        name="tanh",
        kind="elementwise",
        fast=Bounded(bd.tanh, _sech2_fast, _tanh_fast_second),
        forward=tanh,
        derivative=tanh_derivative,
        second=tanh_second,
        exact=Exact(_tanh_exact, _tanh_exact_derivative, _tanh_exact_second),
        formula=r"\tanh(x) = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}",
        derivative_formula=r"\tanh'(x) = \operatorname{sech}^2(x) = 1 - \tanh^2(x)",
        range="(-1, 1)",
        typical_use=("hidden",),
        notes=(
            "Zero-centred, but saturates like sigmoid: tanh' -> 0 for |x| >> 1.",
            "Common in recurrent networks (LSTM/GRU gates use tanh and sigmoid).",
        ),
        reference="LeCun, Bottou, Orr and Mueller, Efficient BackProp (1998)",
        examples=(Example(x=0.0, y=0.0), Example(x=1.0, y=0.7615941559557649)),
    )
)

# -- relu ------------------------------------------------------------------------


def relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def relu_derivative(x: Array) -> Array:
    # relu'(0) = 0, as PyTorch and JAX both take it.
    return (x > 0).astype(np.float64)


def _relu_exact(x: mpfr) -> mpfr:
    return exact_input(x) if x > 0 else mpfr(0)


def _relu_exact_derivative(x: mpfr) -> mpfr:
    return _step_exact(x)  # relu'(0) = 0


register(
    Activation(
        name="relu",
        kind="elementwise",
        fast=Bounded(bd.core(relu), bd.core(relu_derivative), bd.core(zero)),
        forward=relu,
        derivative=relu_derivative,
        second=zero,
        exact=Exact(_relu_exact, _relu_exact_derivative, exact_zero),
        formula=r"f(x) = \max(0, x)",
        derivative_formula=r"f'(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}",
        range="[0, inf)",
        kinks=(
            Kink(at=0.0, derivative=0.0, second_derivative=0.0, note="relu'(0) = 0, as in PyTorch and JAX"),
        ),
        typical_use=("hidden",),
        notes=(
            "The default for hidden layers: cheap, and its gradient does not vanish for x > 0.",
            "Units can die: a unit whose input stays negative gets zero gradient and stops learning.",
        ),
        reference="Nair and Hinton, Rectified linear units improve restricted Boltzmann machines (2010)",
        examples=(Example(x=-1.0, y=0.0), Example(x=0.0, y=0.0), Example(x=2.0, y=2.0)),
    )
)

# -- leaky_relu --------------------------------------------------------------------


def leaky_relu(x: Array, negative_slope: float) -> Array:
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_derivative(x: Array, negative_slope: float) -> Array:
    # At 0 we take the negative slope, as PyTorch does (JAX's where(x >= 0)
    # takes 1).  This keeps leaky_relu'(0) -> relu'(0) = 0 as the slope -> 0.
    return np.where(x > 0, 1.0, negative_slope)


def leaky_relu_param_grads(x: Array, negative_slope: float) -> dict[str, Array]:
    return {"negative_slope": leaky_relu_param_grads_slope(x)}


def leaky_relu_param_grads_slope(x: Array, **params: float) -> Array:
    """d/dslope: x for x <= 0 (exact), 0 otherwise."""
    return np.where(x > 0, 0.0, x)


def leaky_exact(x: mpfr, slope: mpq) -> mpfr:
    """x for x > 0, slope x otherwise (``slope`` exact), rounded to odd."""
    return exact_input(x) if x > 0 else exactly(slope * mpq(x))


def leaky_exact_derivative(x: mpfr, slope: mpq) -> mpfr:
    """1 for x > 0, the slope otherwise (at 0 too)."""
    return exact_constant(1) if x > 0 else exactly(slope)


def leaky_exact_slope_grad(x: mpfr, scale: mpq) -> mpfr:
    """d/dslope of leaky_exact times ``scale``: 0 for x > 0, scale x otherwise."""
    return mpfr(0) if x > 0 else exactly(scale * mpq(x))


def _leaky_relu_exact(x: mpfr, negative_slope: mpfr) -> mpfr:
    return leaky_exact(x, mpq(negative_slope))


def _leaky_relu_exact_derivative(x: mpfr, negative_slope: mpfr) -> mpfr:
    return leaky_exact_derivative(x, mpq(negative_slope))


def _leaky_relu_exact_slope(x: mpfr, negative_slope: mpfr) -> mpfr:
    return leaky_exact_slope_grad(x, mpq(1))


def leaky_fast(x: bd.B, slope: float | bd.B) -> bd.B:
    """x for x > 0, slope x otherwise."""
    return bd.where(x.v > 0, x, x * slope)


def leaky_fast_derivative(x: bd.B, slope: float | bd.B) -> bd.B:
    return bd.where(x.v > 0, x.like(1.0), x.like(slope))


register(
    Activation(
        name="leaky_relu",
        kind="elementwise",
        fast=Bounded(
            lambda x, negative_slope: leaky_fast(x, negative_slope),
            lambda x, negative_slope: leaky_fast_derivative(x, negative_slope),
            bd.core(zero),
            {"negative_slope": bd.core(leaky_relu_param_grads_slope)},
        ),
        forward=leaky_relu,
        derivative=leaky_relu_derivative,
        second=zero,
        param_grads=leaky_relu_param_grads,
        exact=Exact(
            _leaky_relu_exact,
            _leaky_relu_exact_derivative,
            exact_zero,
            params={"negative_slope": _leaky_relu_exact_slope},
        ),
        params=(
            Param(
                name="negative_slope",
                default=0.01,
                minimum=0.0,
                maximum=1.0,
                description="slope for x < 0",
            ),
        ),
        formula=r"f(x) = \begin{cases} x & x > 0 \\ a x & x \le 0 \end{cases}",
        derivative_formula=r"f'(x) = \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}",
        range="(-inf, inf)",
        kinks=(
            Kink(
                at=0.0,
                derivative="negative_slope",
                second_derivative=0.0,
                note="takes the negative slope at 0, as PyTorch (JAX takes 1); "
                "it reduces to relu'(0) = 0 when the slope is 0",
            ),
        ),
        typical_use=("hidden",),
        notes=("The small negative slope keeps a gradient for x < 0, so units cannot die.",),
        aliases=("leakyrelu", "LeakyReLU"),
        reference="Maas, Hannun and Ng, Rectifier nonlinearities improve neural network acoustic models (2013)",
        examples=(
            Example(x=-2.0, y=-0.02),
            Example(x=3.0, y=3.0),
            Example(x=-2.0, y=-0.2, params={"negative_slope": 0.1}),
        ),
    )
)
