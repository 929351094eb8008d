"""Piecewise activations: clipped, shrunk, thresholded and rectified variants.

Kink conventions.  Unless a comment says otherwise, at a kink the derivative
takes the value of the *outer* piece (the one that does not pass x through),
which is what PyTorch's backward kernels do: relu6'(0) = relu6'(6) = 0,
hard_tanh'(+-1) = 0, softshrink'(+-lambda) = 0.  Second derivatives are 0
(the Dirac deltas at kinks are not represented).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
from gmpy2 import mpfr, mpq

from . import bounded as bd
from .bounded import Bounded
from .elementwise import (
    exact_constant,
    exact_input,
    exact_zero,
    exactly,
    leaky_exact,
    leaky_exact_derivative,
    leaky_exact_slope_grad,
    leaky_fast,
    leaky_fast_derivative,
    leaky_relu,
    leaky_relu_derivative,
    zero,
)
from .registry import Activation, ActivationError, Array, Exact, Example, Kink, Param, register

# The exact definitions (for correctly rounded results) follow each function's NumPy one,
# kink conventions included; their values are rational, formed exactly and rounded to odd
# at the working precision (see elementwise.to_odd).

# -- relu6 -------------------------------------------------------------------------------


def relu6(x: Array) -> Array:
    return np.clip(x, 0.0, 6.0)


def relu6_derivative(x: Array) -> Array:
    return ((x > 0) & (x < 6)).astype(np.float64)


def _relu6_exact(x: mpfr) -> mpfr:
    return mpfr(0) if x <= 0 else exact_constant(6) if x >= 6 else exact_input(x)


def _relu6_exact_derivative(x: mpfr) -> mpfr:
    return exact_constant(1 if 0 < x < 6 else 0)


register(
    Activation(
        name="relu6",
        kind="elementwise",
        fast=Bounded(bd.core(relu6), bd.core(relu6_derivative), bd.core(zero)),
        forward=relu6,
        derivative=relu6_derivative,
        second=zero,
        exact=Exact(_relu6_exact, _relu6_exact_derivative, exact_zero),
        formula=r"f(x) = \min(\max(0, x), 6)",
        derivative_formula=r"f'(x) = 1 \text{ for } 0 < x < 6, \; 0 \text{ otherwise}",
        range="[0, 6]",
        kinks=(
            Kink(at=0.0, derivative=0.0, second_derivative=0.0, note="0, as PyTorch and JAX"),
            Kink(at=6.0, derivative=0.0, second_derivative=0.0, note="0, as PyTorch and JAX"),
        ),
        typical_use=("hidden",),
        notes=("Bounded output suits low-precision (quantized) inference, as in MobileNet.",),
        aliases=("ReLU6",),
        reference="Krizhevsky, Convolutional deep belief networks on CIFAR-10 (2010)",
        examples=(Example(x=-1.0, y=0.0), Example(x=3.5, y=3.5), Example(x=8.0, y=6.0)),
    )
)

# -- hard_tanh -------------------------------------------------------------------------------


def hard_tanh(x: Array, min_val: float, max_val: float) -> Array:
    return np.clip(x, min_val, max_val)


def hard_tanh_derivative(x: Array, min_val: float, max_val: float) -> Array:
    # 0 at both kinks, as PyTorch; JAX's hard_tanh takes 1 there.
    return ((x > min_val) & (x < max_val)).astype(np.float64)


def hard_tanh_param_grads(x: Array, min_val: float, max_val: float) -> dict[str, Array]:
    # At a kink the derivative with respect to x is 0, so the one with respect to
    # the bound is 1: the three always sum to 1, as clip(x + c, a + c, b + c) = clip(x, a, b) + c.
    return {
        "min_val": (x <= min_val).astype(np.float64),
        "max_val": (x >= max_val).astype(np.float64),
    }


def _ordered(low: str, high: str, strict: bool) -> object:
    def check(params: Mapping[str, float]) -> None:
        bad = params[low] >= params[high] if strict else params[low] > params[high]
        if bad:
            relation = "less than" if strict else "at most"
            raise ActivationError(
                f"params.{low}",
                f"must be {relation} {high} ({params[high]:g}), got {params[low]:g}",
            )

    return check


def _hard_tanh_exact(x: mpfr, min_val: mpfr, max_val: mpfr) -> mpfr:
    return exact_input(min_val if x <= min_val else max_val if x >= max_val else x)


def _hard_tanh_exact_derivative(x: mpfr, min_val: mpfr, max_val: mpfr) -> mpfr:
    return exact_constant(1 if min_val < x < max_val else 0)


def _hard_tanh_exact_min_val(x: mpfr, min_val: mpfr, max_val: mpfr) -> mpfr:
    return exact_constant(1 if x <= min_val else 0)


def _hard_tanh_exact_max_val(x: mpfr, min_val: mpfr, max_val: mpfr) -> mpfr:
    return exact_constant(1 if x >= max_val else 0)


register(
    Activation(
        name="hard_tanh",
        kind="elementwise",
        fast=Bounded(
            bd.core(hard_tanh),
            bd.core(hard_tanh_derivative),
            bd.core(zero),
            {
                "min_val": bd.core_param(hard_tanh_param_grads, "min_val"),
                "max_val": bd.core_param(hard_tanh_param_grads, "max_val"),
            },
        ),
        forward=hard_tanh,
        derivative=hard_tanh_derivative,
        second=zero,
        param_grads=hard_tanh_param_grads,
        exact=Exact(
            _hard_tanh_exact,
            _hard_tanh_exact_derivative,
            exact_zero,
            params={"min_val": _hard_tanh_exact_min_val, "max_val": _hard_tanh_exact_max_val},
        ),
        constraint=_ordered("min_val", "max_val", strict=True),  # type: ignore[arg-type]
        params=(
            Param(name="min_val", default=-1.0, description="lower clipping value (less than max_val)"),
            Param(name="max_val", default=1.0, description="upper clipping value"),
        ),
        formula=r"f(x) = \min(\max(x, a), b), \; a = \text{min\_val}, b = \text{max\_val}",
        derivative_formula=r"f'(x) = 1 \text{ for } a < x < b, \; 0 \text{ otherwise}",
        range="[min_val, max_val]",
        kinks=(
            Kink(at="min_val", derivative=0.0, second_derivative=0.0, note="0, as PyTorch (JAX: 1)"),
            Kink(at="max_val", derivative=0.0, second_derivative=0.0, note="0, as PyTorch (JAX: 1)"),
        ),
        typical_use=("hidden",),
        notes=("A cheap piecewise-linear tanh.",),
        aliases=("hardtanh", "Hardtanh"),
        reference="Collobert, Large scale machine learning (PhD thesis, 2004)",
        examples=(Example(x=-3.0, y=-1.0), Example(x=0.25, y=0.25), Example(x=2.0, y=1.0)),
    )
)

# -- hard_sigmoid -------------------------------------------------------------------------------


def hard_sigmoid(x: Array) -> Array:
    # relu6(x + 3) / 6, the PyTorch, JAX and Keras 3 definition.
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def hard_sigmoid_derivative(x: Array) -> Array:
    return np.where((x > -3) & (x < 3), 1.0 / 6.0, 0.0)


def _hard_sigmoid_exact(x: mpfr) -> mpfr:
    return mpfr(0) if x <= -3 else exact_constant(1) if x >= 3 else exactly((mpq(x) + 3) / 6)


def _hard_sigmoid_exact_derivative(x: mpfr) -> mpfr:
    return exact_constant(1, 6) if -3 < x < 3 else mpfr(0)


def _hard_sigmoid_fast(x: bd.B) -> bd.B:
    return bd.where(x.v <= -3, bd.zero(x), bd.where(x.v >= 3, x.like(1.0), (x + 3.0) / 6.0))


def _hard_sigmoid_fast_derivative(x: bd.B) -> bd.B:
    return bd.where((x.v > -3) & (x.v < 3), bd.constant(Fraction(1, 6), x), bd.zero(x))


register(
    Activation(
        name="hard_sigmoid",
        kind="elementwise",
        fast=Bounded(_hard_sigmoid_fast, _hard_sigmoid_fast_derivative, bd.core(zero)),
        forward=hard_sigmoid,
        derivative=hard_sigmoid_derivative,
        second=zero,
        exact=Exact(_hard_sigmoid_exact, _hard_sigmoid_exact_derivative, exact_zero),
        formula=r"f(x) = \frac{\operatorname{relu6}(x + 3)}{6}",
        derivative_formula=r"f'(x) = \tfrac{1}{6} \text{ for } -3 < x < 3, \; 0 \text{ otherwise}",
        range="[0, 1]",
        kinks=(
            Kink(at=-3.0, derivative=0.0, second_derivative=0.0, note="0, as PyTorch and JAX"),
            Kink(at=3.0, derivative=0.0, second_derivative=0.0, note="0, as PyTorch and JAX"),
        ),
        typical_use=("gating",),
        notes=("Keras 2 defined it as clip(0.2x + 0.5, 0, 1); this is the current definition.",),
        aliases=("hardsigmoid", "Hardsigmoid"),
        reference="Howard et al., Searching for MobileNetV3 (2019)",
        examples=(Example(x=-4.0, y=0.0), Example(x=0.0, y=0.5), Example(x=1.5, y=0.75)),
    )
)

# -- hard_silu -------------------------------------------------------------------------------


def hard_silu(x: Array) -> Array:
    # x * hard_sigmoid(x): dividing before multiplying keeps x = 1e308 finite.
    return x * hard_sigmoid(x)


def hard_silu_derivative(x: Array) -> Array:
    # At -3 and 3 we take the outer pieces (0 and 1), as JAX's autodiff of
    # x * hard_sigmoid(x) does and as hard_sigmoid's convention implies;
    # PyTorch's kernel takes the inner piece (2x + 3)/6 there (-0.5 and 1.5).
    return np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, (2.0 * x + 3.0) / 6.0))


def hard_silu_second(x: Array) -> Array:
    return np.where((x > -3) & (x < 3), 1.0 / 3.0, 0.0)


def _hard_silu_exact(x: mpfr) -> mpfr:
    # x (x + 3) / 6 = x/2 + x^2/6: at a subnormal x, x/2 alone is a midpoint of the format.
    if x <= -3:
        return mpfr(0)
    if x >= 3:
        return exact_input(x)
    q = mpq(x)
    return exactly(q * (q + 3) / 6)


def _hard_silu_exact_derivative(x: mpfr) -> mpfr:
    # The outer pieces at -3 and 3, as the NumPy derivative (and JAX).
    if x <= -3:
        return mpfr(0)
    if x >= 3:
        return exact_constant(1)
    return exactly((2 * mpq(x) + 3) / 6)


def _hard_silu_exact_second(x: mpfr) -> mpfr:
    return exact_constant(1, 3) if -3 < x < 3 else mpfr(0)


def _hard_silu_fast(x: bd.B) -> bd.B:
    return bd.where(x.v <= -3, bd.zero(x), bd.where(x.v >= 3, x, x * (x + 3.0) / 6.0))


def _hard_silu_fast_derivative(x: bd.B) -> bd.B:
    return bd.where(x.v <= -3, bd.zero(x), bd.where(x.v >= 3, x.like(1.0), (x * 2.0 + 3.0) / 6.0))


def _hard_silu_fast_second(x: bd.B) -> bd.B:
    return bd.where((x.v > -3) & (x.v < 3), bd.constant(Fraction(1, 3), x), bd.zero(x))


register(
    Activation(
        name="hard_silu",
        kind="elementwise",
        fast=Bounded(_hard_silu_fast, _hard_silu_fast_derivative, _hard_silu_fast_second),
        forward=hard_silu,
        derivative=hard_silu_derivative,
        second=hard_silu_second,
        exact=Exact(_hard_silu_exact, _hard_silu_exact_derivative, _hard_silu_exact_second),
        formula=r"f(x) = x \, \frac{\operatorname{relu6}(x + 3)}{6}",
        derivative_formula=r"f'(x) = 0 \; (x \le -3), \; \frac{2x + 3}{6} \; (-3 < x < 3), \; 1 \; (x \ge 3)",
        range="[-0.375, inf)",
        kinks=(
            Kink(at=-3.0, derivative=0.0, second_derivative=0.0, note="outer piece, as JAX (PyTorch: -0.5)"),
            Kink(at=3.0, derivative=1.0, second_derivative=0.0, note="outer piece, as JAX (PyTorch: 1.5)"),
        ),
        typical_use=("hidden",),
        notes=("A piecewise-polynomial silu for mobile networks.",),
        aliases=("hardswish", "hard_swish", "Hardswish"),
        reference="Howard et al., Searching for MobileNetV3 (2019)",
        examples=(Example(x=-4.0, y=0.0), Example(x=1.0, y=0.6666666666666666), Example(x=4.0, y=4.0)),
    )
)

# -- softshrink / hardshrink ----------------------------------------------------------------------

_LAMBDA = Param(name="lambda", default=0.5, minimum=0.0, description="half-width of the zero band")


def softshrink(x: Array, **p: float) -> Array:
    lam = p["lambda"]
    return np.where(x > lam, x - lam, np.where(x < -lam, x + lam, 0.0))


def shrink_derivative(x: Array, **p: float) -> Array:
    # 0 at x = +-lambda, as PyTorch's kernels.
    return (np.abs(x) > p["lambda"]).astype(np.float64)


def softshrink_param_grads(x: Array, **p: float) -> dict[str, Array]:
    lam = p["lambda"]
    return {"lambda": np.where(x > lam, -1.0, np.where(x < -lam, 1.0, 0.0))}


def _softshrink_exact(x: mpfr, **p: mpfr) -> mpfr:
    # x - lambda, x + lambda exactly: lambda = 1e-300 next to x = 1 must not vanish.
    lam = p["lambda"]
    if x > lam:
        return exactly(mpq(x) - mpq(lam))
    if x < -lam:
        return exactly(mpq(x) + mpq(lam))
    return mpfr(0)


def _shrink_exact_derivative(x: mpfr, **p: mpfr) -> mpfr:
    return exact_constant(1 if abs(x) > p["lambda"] else 0)  # 0 at x = +-lambda


def _softshrink_exact_lambda(x: mpfr, **p: mpfr) -> mpfr:
    lam = p["lambda"]
    return exact_constant(-1 if x > lam else 1 if x < -lam else 0)


_SHRINK_KINKS = (
    Kink(at="lambda", derivative=0.0, second_derivative=0.0, note="0, as PyTorch"),
    Kink(at="-lambda", derivative=0.0, second_derivative=0.0, note="0, as PyTorch"),
)


def _softshrink_fast(x: bd.B, **p: float) -> bd.B:
    lam = p["lambda"]
    return bd.where(x.v > lam, x - lam, bd.where(x.v < -lam, x + lam, bd.zero(x)))


register(
    Activation(
        name="softshrink",
        kind="elementwise",
        fast=Bounded(
            _softshrink_fast,
            bd.core(shrink_derivative),
            bd.core(zero),
            {"lambda": bd.core_param(softshrink_param_grads, "lambda")},
        ),
        forward=softshrink,
        derivative=shrink_derivative,
        second=zero,
        param_grads=softshrink_param_grads,
        exact=Exact(
            _softshrink_exact,
            _shrink_exact_derivative,
            exact_zero,
            params={"lambda": _softshrink_exact_lambda},
        ),
        params=(_LAMBDA,),
        formula=r"f(x) = \operatorname{sign}(x) \max(|x| - \lambda, 0)",
        derivative_formula=r"f'(x) = 1 \text{ for } |x| > \lambda, \; 0 \text{ otherwise}",
        range="(-inf, inf)",
        kinks=_SHRINK_KINKS,
        typical_use=("sparse_coding",),
        notes=("The soft-thresholding (proximal) operator of the L1 norm.",),
        aliases=("soft_shrink", "Softshrink"),
        reference="Donoho, De-noising by soft-thresholding (1995)",
        examples=(Example(x=-2.0, y=-1.5), Example(x=0.3, y=0.0), Example(x=1.0, y=0.5)),
    )
)


def hardshrink(x: Array, **p: float) -> Array:
    return np.where(np.abs(x) > p["lambda"], x, 0.0)


def _hardshrink_exact(x: mpfr, **p: mpfr) -> mpfr:
    return exact_input(x) if abs(x) > p["lambda"] else mpfr(0)


register(
    Activation(
        name="hardshrink",
        kind="elementwise",
        fast=Bounded(
            bd.core(hardshrink), bd.core(shrink_derivative), bd.core(zero), {"lambda": bd.core(zero)}
        ),
        forward=hardshrink,
        derivative=shrink_derivative,
        second=zero,
        # y jumps at +-lambda; elsewhere it does not depend on lambda.
        param_grads=lambda x, **p: {"lambda": np.zeros_like(x)},
        exact=Exact(_hardshrink_exact, _shrink_exact_derivative, exact_zero, params={"lambda": exact_zero}),
        params=(_LAMBDA,),
        formula=r"f(x) = x \text{ for } |x| > \lambda, \; 0 \text{ otherwise}",
        derivative_formula=r"f'(x) = 1 \text{ for } |x| > \lambda, \; 0 \text{ otherwise}",
        range="(-inf, inf)",
        kinks=_SHRINK_KINKS,
        typical_use=("sparse_coding",),
        notes=("f jumps at +-lambda; the derivative with respect to lambda is 0 away from the jumps.",),
        aliases=("hard_shrink", "Hardshrink"),
        reference="Donoho and Johnstone, Ideal spatial adaptation by wavelet shrinkage (1994)",
        examples=(Example(x=-2.0, y=-2.0), Example(x=0.3, y=0.0), Example(x=1.0, y=1.0)),
    )
)

# -- threshold -------------------------------------------------------------------------------


def threshold(x: Array, threshold: float, value: float) -> Array:
    return np.where(x > threshold, x, value)


def threshold_derivative(x: Array, threshold: float, value: float) -> Array:
    return (x > threshold).astype(np.float64)


def threshold_param_grads(x: Array, threshold: float, value: float) -> dict[str, Array]:
    return {"threshold": np.zeros_like(x), "value": (x <= threshold).astype(np.float64)}


def _threshold_exact(x: mpfr, threshold: mpfr, value: mpfr) -> mpfr:
    return exact_input(x if x > threshold else value)


def _threshold_exact_derivative(x: mpfr, threshold: mpfr, value: mpfr) -> mpfr:
    return exact_constant(1 if x > threshold else 0)


def _threshold_exact_value(x: mpfr, threshold: mpfr, value: mpfr) -> mpfr:
    return exact_constant(1 if x <= threshold else 0)


register(
    Activation(
        name="threshold",
        kind="elementwise",
        fast=Bounded(
            bd.core(threshold),
            bd.core(threshold_derivative),
            bd.core(zero),
            {"threshold": bd.core(zero), "value": bd.core_param(threshold_param_grads, "value")},
        ),
        forward=threshold,
        derivative=threshold_derivative,
        second=zero,
        param_grads=threshold_param_grads,
        # y jumps at the threshold; elsewhere it does not depend on it.
        exact=Exact(
            _threshold_exact,
            _threshold_exact_derivative,
            exact_zero,
            params={"threshold": exact_zero, "value": _threshold_exact_value},
        ),
        params=(
            Param(name="threshold", default=0.0, description="inputs at or below it are replaced"),
            Param(name="value", default=0.0, description="the replacement"),
        ),
        formula=r"f(x) = x \text{ for } x > \theta, \; v \text{ otherwise}",
        derivative_formula=r"f'(x) = 1 \text{ for } x > \theta, \; 0 \text{ otherwise}",
        range="(-inf, inf)",
        kinks=(Kink(at="threshold", derivative=0.0, second_derivative=0.0, note="0, as PyTorch"),),
        typical_use=("hidden",),
        notes=("With threshold = value = 0 it is relu.",),
        aliases=("Threshold",),
        reference="PyTorch torch.nn.Threshold",
        examples=(
            Example(x=-1.0, y=0.0),
            Example(x=2.0, y=2.0),
            Example(x=0.5, y=-1.0, params={"threshold": 1.0, "value": -1.0}),
        ),
    )
)

# -- prelu / rrelu -------------------------------------------------------------------------------


def _prelu_exact(x: mpfr, weight: mpfr) -> mpfr:
    return leaky_exact(x, mpq(weight))


def _prelu_exact_derivative(x: mpfr, weight: mpfr) -> mpfr:
    return leaky_exact_derivative(x, mpq(weight))


def _prelu_exact_weight(x: mpfr, weight: mpfr) -> mpfr:
    return leaky_exact_slope_grad(x, mpq(1))


register(
    Activation(
        name="prelu",
        kind="elementwise",
        fast=Bounded(
            lambda x, weight: leaky_fast(x, weight),
            lambda x, weight: leaky_fast_derivative(x, weight),
            bd.core(zero),
            {"weight": bd.core(lambda x, weight: np.where(x > 0, 0.0, x))},
        ),
        forward=lambda x, weight: leaky_relu(x, weight),
        derivative=lambda x, weight: leaky_relu_derivative(x, weight),
        second=zero,
        param_grads=lambda x, weight: {"weight": np.where(x > 0, 0.0, x)},
        exact=Exact(
            _prelu_exact, _prelu_exact_derivative, exact_zero, params={"weight": _prelu_exact_weight}
        ),
        params=(
            Param(
                name="weight",
                default=0.25,
                channels=True,
                description=(
                    "learned slope for x < 0: a number, or one per channel along axis (as PyTorch's "
                    "nn.PReLU(num_parameters=C) with axis 1)"
                ),
            ),
        ),
        formula=r"f(x) = x \text{ for } x > 0, \; a x \text{ otherwise}",
        derivative_formula=r"f'(x) = 1 \text{ for } x > 0, \; a \text{ otherwise}",
        range="(-inf, inf)",
        kinks=(Kink(at=0.0, derivative="weight", second_derivative=0.0, note="the weight, as PyTorch"),),
        typical_use=("hidden",),
        notes=(
            "Leaky relu whose slope is learned: use wrt=params to get its gradient.",
            "With one weight per channel (an array as long as x along axis), each element takes its "
            "channel's weight; dydparams.weight then has x's shape (each element's derivative with "
            "respect to its own channel's weight) and grad_params.weight one sum per channel.",
        ),
        aliases=("PReLU",),
        reference="He et al., Delving deep into rectifiers (2015)",
        examples=(Example(x=-2.0, y=-0.5), Example(x=3.0, y=3.0)),
    )
)


def _rrelu_slope(lower: float, upper: float) -> float:
    return (lower + upper) / 2.0


def _rrelu_exact(x: mpfr, lower: mpfr, upper: mpfr) -> mpfr:
    # The slope (lower + upper)/2 exactly (NumPy rounds it to float64 first).
    return leaky_exact(x, (mpq(lower) + mpq(upper)) / 2)


def _rrelu_exact_derivative(x: mpfr, lower: mpfr, upper: mpfr) -> mpfr:
    return leaky_exact_derivative(x, (mpq(lower) + mpq(upper)) / 2)


def _rrelu_exact_bound(x: mpfr, lower: mpfr, upper: mpfr) -> mpfr:
    # d/dlower = d/dupper = x/2 for x <= 0.
    return leaky_exact_slope_grad(x, mpq(1, 2))


def _rrelu_fast_slope(x: bd.B, lower: float, upper: float) -> bd.B:
    return (x.like(lower) + upper) * 0.5


def _rrelu_fast_bound(x: bd.B, lower: float, upper: float) -> bd.B:
    return bd.where(x.v > 0, bd.zero(x), x * 0.5)


register(
    Activation(
        name="rrelu",
        kind="elementwise",
        fast=Bounded(
            lambda x, lower, upper: leaky_fast(x, _rrelu_fast_slope(x, lower, upper)),
            lambda x, lower, upper: leaky_fast_derivative(x, _rrelu_fast_slope(x, lower, upper)),
            bd.core(zero),
            {"lower": _rrelu_fast_bound, "upper": _rrelu_fast_bound},
        ),
        forward=lambda x, lower, upper: leaky_relu(x, _rrelu_slope(lower, upper)),
        derivative=lambda x, lower, upper: leaky_relu_derivative(x, _rrelu_slope(lower, upper)),
        second=zero,
        param_grads=lambda x, lower, upper: {
            "lower": np.where(x > 0, 0.0, 0.5 * x),
            "upper": np.where(x > 0, 0.0, 0.5 * x),
        },
        exact=Exact(
            _rrelu_exact,
            _rrelu_exact_derivative,
            exact_zero,
            params={"lower": _rrelu_exact_bound, "upper": _rrelu_exact_bound},
        ),
        constraint=_ordered("lower", "upper", strict=False),  # type: ignore[arg-type]
        params=(
            Param(
                name="lower",
                default=1 / 8,
                minimum=0.0,
                maximum=1.0,
                description="lower bound of the random slope",
            ),
            Param(
                name="upper",
                default=1 / 3,
                minimum=0.0,
                maximum=1.0,
                description="upper bound of the random slope",
            ),
        ),
        formula=r"f(x) = x \text{ for } x > 0, \; \tfrac{l + u}{2} x \text{ otherwise (evaluation mode)}",
        derivative_formula=r"f'(x) = 1 \text{ for } x > 0, \; \tfrac{l + u}{2} \text{ otherwise}",
        range="(-inf, inf)",
        kinks=(
            Kink(
                at=0.0,
                derivative=_rrelu_slope(1 / 8, 1 / 3),
                second_derivative=0.0,
                note="the slope (lower + upper)/2 (0.2291... with the defaults), as PyTorch",
            ),
        ),
        typical_use=("hidden",),
        notes=(
            "Evaluation mode: the slope is fixed at the mean of [lower, upper]; "
            "training draws it at random per element, which a stateless service does not do.",
        ),
        aliases=("RReLU",),
        reference="Xu et al., Empirical evaluation of rectified activations in convolutional network (2015)",
        examples=(Example(x=-2.4, y=-0.5499999999999999), Example(x=1.0, y=1.0)),
    )
)

# -- sparse_plus / sparse_sigmoid ----------------------------------------------------------------


def sparse_plus(x: Array) -> Array:
    return np.where(x <= -1, 0.0, np.where(x >= 1, x, 0.25 * (x + 1.0) ** 2))


def sparse_plus_derivative(x: Array) -> Array:
    return np.where(x <= -1, 0.0, np.where(x >= 1, 1.0, 0.5 * (x + 1.0)))


def _inside_unit(x: Array, value: float) -> Array:
    return np.where(np.abs(x) < 1, value, 0.0)


def _sparse_plus_exact(x: mpfr) -> mpfr:
    if x <= -1:
        return mpfr(0)
    if x >= 1:
        return exact_input(x)
    return exactly((mpq(x) + 1) ** 2 / 4)


def _sparse_plus_exact_derivative(x: mpfr) -> mpfr:
    return _sparse_sigmoid_exact(x)  # f' is continuous: 0 at -1, 1 at 1


def _inside_unit_exact(x: mpfr) -> mpfr:
    """1/2 for |x| < 1, 0 otherwise (the outer pieces at +-1)."""
    return exact_constant(1, 2) if abs(x) < 1 else mpfr(0)


def _sparse_sigmoid_exact(x: mpfr) -> mpfr:
    return mpfr(0) if x <= -1 else exact_constant(1) if x >= 1 else exactly((mpq(x) + 1) / 2)


def _sparse_plus_fast(x: bd.B) -> bd.B:
    return bd.where(x.v <= -1, bd.zero(x), bd.where(x.v >= 1, x, (x + 1.0).square() * 0.25))


def _sparse_sigmoid_fast(x: bd.B) -> bd.B:
    return bd.where(x.v <= -1, bd.zero(x), bd.where(x.v >= 1, x.like(1.0), (x + 1.0) * 0.5))


register(
    Activation(
        name="sparse_plus",
        kind="elementwise",
        fast=Bounded(
            _sparse_plus_fast, _sparse_sigmoid_fast, bd.core(lambda x: np.where(np.abs(x) < 1, 0.5, 0.0))
        ),
        forward=sparse_plus,
        derivative=sparse_plus_derivative,
        second=lambda x: _inside_unit(x, 0.5),
        exact=Exact(_sparse_plus_exact, _sparse_plus_exact_derivative, _inside_unit_exact),
        formula=r"f(x) = 0 \; (x \le -1), \; \tfrac{(x + 1)^2}{4} \; (-1 < x < 1), \; x \; (x \ge 1)",
        derivative_formula=r"f'(x) = 0 \; (x \le -1), \; \tfrac{x + 1}{2} \; (-1 < x < 1), \; 1 \; (x \ge 1)",
        range="[0, inf)",
        kinks=(
            Kink(
                at=-1.0,
                derivative=0.0,
                second_derivative=0.0,
                note="f' is continuous; f'' takes the outer piece, as JAX",
            ),
            Kink(
                at=1.0,
                derivative=1.0,
                second_derivative=0.0,
                note="f' is continuous; f'' takes the outer piece, as JAX",
            ),
        ),
        typical_use=("hidden",),
        notes=("A softplus that is exactly 0 below -1 and exactly x above 1.",),
        reference="Blondel et al., Learning with Fenchel-Young losses (2020); jax.nn.sparse_plus",
        examples=(Example(x=-2.0, y=0.0), Example(x=0.0, y=0.25), Example(x=2.0, y=2.0)),
    )
)

register(
    Activation(
        name="sparse_sigmoid",
        kind="elementwise",
        fast=Bounded(
            _sparse_sigmoid_fast, bd.core(lambda x: np.where(np.abs(x) < 1, 0.5, 0.0)), bd.core(zero)
        ),
        forward=lambda x: 0.5 * np.clip(x + 1.0, 0.0, 2.0),
        derivative=lambda x: _inside_unit(x, 0.5),
        second=zero,
        exact=Exact(_sparse_sigmoid_exact, _inside_unit_exact, exact_zero),
        formula=r"f(x) = \tfrac{1}{2} \operatorname{clip}(x + 1, 0, 2)",
        derivative_formula=r"f'(x) = \tfrac{1}{2} \text{ for } |x| < 1, \; 0 \text{ otherwise}",
        range="[0, 1]",
        kinks=(
            Kink(at=-1.0, derivative=0.0, second_derivative=0.0, note="outer piece, as hard_sigmoid"),
            Kink(at=1.0, derivative=0.0, second_derivative=0.0, note="outer piece, as hard_sigmoid"),
        ),
        typical_use=("binary_output",),
        notes=("The derivative of sparse_plus: probabilities that reach exactly 0 and 1.",),
        reference="Blondel et al., Learning with Fenchel-Young losses (2020); jax.nn.sparse_sigmoid",
        examples=(Example(x=-2.0, y=0.0), Example(x=0.5, y=0.75), Example(x=3.0, y=1.0)),
    )
)

# -- relu_squared -------------------------------------------------------------------------------


def _relu_squared_exact(x: mpfr) -> mpfr:
    return exactly(mpq(x) ** 2) if x > 0 else mpfr(0)


def _relu_squared_exact_derivative(x: mpfr) -> mpfr:
    return exactly(2 * mpq(x)) if x > 0 else mpfr(0)


def _relu_squared_exact_second(x: mpfr) -> mpfr:
    return exact_constant(2) if x > 0 else mpfr(0)


def _relu_squared_fast(x: bd.B) -> bd.B:
    return bd.where(x.v > 0, x.square(), bd.zero(x))


def _relu_squared_fast_derivative(x: bd.B) -> bd.B:
    return bd.where(x.v > 0, x * 2.0, bd.zero(x))


register(
    Activation(
        name="relu_squared",
        kind="elementwise",
        fast=Bounded(
            _relu_squared_fast, _relu_squared_fast_derivative, bd.core(lambda x: np.where(x > 0, 2.0, 0.0))
        ),
        forward=lambda x: np.square(np.maximum(x, 0.0)),
        derivative=lambda x: 2.0 * np.maximum(x, 0.0),
        second=lambda x: np.where(x > 0, 2.0, 0.0),
        exact=Exact(_relu_squared_exact, _relu_squared_exact_derivative, _relu_squared_exact_second),
        formula=r"f(x) = \max(0, x)^2",
        derivative_formula=r"f'(x) = 2 \max(0, x)",
        range="[0, inf)",
        kinks=(Kink(at=0.0, derivative=0.0, second_derivative=0.0, note="f' is continuous; f''(0) = 0"),),
        typical_use=("hidden",),
        notes=("Overflows float64 above 1.34e154: such inputs are refused with a 422.",),
        aliases=("squared_relu", "relu2"),
        reference="So et al., Primer: searching for efficient transformers for language modeling (2021)",
        examples=(Example(x=-1.0, y=0.0), Example(x=3.0, y=9.0)),
    )
)

# -- star_relu ----------------------------------------------------------------------------------

#: MetaFormer's defaults, exactly as published (s = 1/sqrt(1.25) and b = -0.5/sqrt(1.25), to 4 digits).
STAR_SCALE, STAR_BIAS = 0.8944, -0.4472


def star_relu(x: Array, scale: float, bias: float) -> Array:
    return scale * np.square(np.maximum(x, 0.0)) + bias


def _star_relu_exact(x: mpfr, scale: mpfr, bias: mpfr) -> mpfr:
    return exactly(mpq(scale) * mpq(x) ** 2 + mpq(bias)) if x > 0 else exact_input(bias)


def _star_relu_exact_derivative(x: mpfr, scale: mpfr, bias: mpfr) -> mpfr:
    return exactly(2 * mpq(scale) * mpq(x)) if x > 0 else mpfr(0)


def _star_relu_exact_second(x: mpfr, scale: mpfr, bias: mpfr) -> mpfr:
    return exactly(2 * mpq(scale)) if x > 0 else mpfr(0)


def _star_relu_exact_scale(x: mpfr, scale: mpfr, bias: mpfr) -> mpfr:
    return exactly(mpq(x) ** 2) if x > 0 else mpfr(0)


def _star_relu_fast(x: bd.B, scale: float, bias: float) -> bd.B:
    return bd.where(x.v > 0, x.square() * scale + bias, x.like(bias))


def _star_relu_fast_derivative(x: bd.B, scale: float, bias: float) -> bd.B:
    return bd.where(x.v > 0, (x * scale) * 2.0, bd.zero(x))


def _star_relu_fast_scale(x: bd.B, scale: float, bias: float) -> bd.B:
    return bd.where(x.v > 0, x.square(), bd.zero(x))


def star_relu_param_grads(x: Array, scale: float, bias: float) -> dict[str, Array]:
    return {"scale": np.square(np.maximum(x, 0.0)), "bias": np.ones_like(x)}


register(
    Activation(
        name="star_relu",
        kind="elementwise",
        fast=Bounded(
            _star_relu_fast,
            _star_relu_fast_derivative,
            bd.core(lambda x, scale, bias: np.where(x > 0, 2.0 * scale, 0.0)),
            {"scale": _star_relu_fast_scale, "bias": bd.core(lambda x, scale, bias: np.ones_like(x))},
        ),
        forward=star_relu,
        derivative=lambda x, scale, bias: 2.0 * scale * np.maximum(x, 0.0),
        second=lambda x, scale, bias: np.where(x > 0, 2.0 * scale, 0.0),
        param_grads=star_relu_param_grads,
        exact=Exact(
            _star_relu_exact,
            _star_relu_exact_derivative,
            _star_relu_exact_second,
            params={"scale": _star_relu_exact_scale, "bias": lambda x, scale, bias: exact_constant(1)},
        ),
        params=(
            Param(name="scale", default=STAR_SCALE, description="s, the scale of relu(x)^2 (learnable)"),
            Param(name="bias", default=STAR_BIAS, description="b, the shift (learnable)"),
        ),
        formula=r"f(x) = s \, \max(0, x)^2 + b",
        derivative_formula=r"f'(x) = 2 s \max(0, x)",
        range="[b, inf) for s > 0",
        kinks=(Kink(at=0.0, derivative=0.0, second_derivative=0.0, note="f' is continuous; f''(0) = 0"),),
        typical_use=("hidden",),
        notes=(
            "relu squared, scaled and shifted so that its output has mean 0 and variance 1 for "
            "N(0, 1) inputs (s = 1/sqrt(1.25), b = -0.5/sqrt(1.25), published as 0.8944 and -0.4472).",
        ),
        aliases=("StarReLU", "starrelu"),
        reference="Yu et al., MetaFormer baselines for vision (2022)",
        examples=(Example(x=-1.0, y=-0.4472), Example(x=1.0, y=0.4472), Example(x=2.0, y=3.1304)),
    )
)

# -- smelu --------------------------------------------------------------------------------------


def _smelu_middle(x: Array, beta: float) -> Array:
    u = x + beta  # in (0, 2 beta): u * (u / 4 beta) cannot overflow where the result does not
    return u * ((u / beta) * 0.25)


def smelu(x: Array, beta: float) -> Array:
    with np.errstate(over="ignore", invalid="ignore"):
        middle = _smelu_middle(x, beta)
    return np.where(x <= -beta, 0.0, np.where(x >= beta, x, middle))


def smelu_derivative(x: Array, beta: float) -> Array:
    with np.errstate(over="ignore", invalid="ignore"):
        middle = ((x + beta) / beta) * 0.5
    return np.where(x <= -beta, 0.0, np.where(x >= beta, 1.0, middle))


def smelu_param_grads(x: Array, beta: float) -> dict[str, Array]:
    # d/dbeta (x + beta)^2 / (4 beta) = (x + beta)(beta - x) / (4 beta^2); 0 on the outer pieces.
    with np.errstate(over="ignore", invalid="ignore"):
        middle = ((x + beta) / beta) * ((beta - x) / beta) * 0.25
    return {"beta": np.where(np.abs(x) < beta, middle, 0.0)}


def _smelu_exact(x: mpfr, beta: mpfr) -> mpfr:
    if x <= -beta:
        return mpfr(0)
    if x >= beta:
        return exact_input(x)
    return exactly((mpq(x) + mpq(beta)) ** 2 / (4 * mpq(beta)))


def _smelu_exact_derivative(x: mpfr, beta: mpfr) -> mpfr:
    if x <= -beta:
        return mpfr(0)
    if x >= beta:
        return exact_constant(1)
    return exactly((mpq(x) + mpq(beta)) / (2 * mpq(beta)))


def _smelu_exact_second(x: mpfr, beta: mpfr) -> mpfr:
    return exactly(1 / (2 * mpq(beta))) if -beta < x < beta else mpfr(0)


def _smelu_exact_beta(x: mpfr, beta: mpfr) -> mpfr:
    if not -beta < x < beta:
        return mpfr(0)
    b = mpq(beta)
    return exactly((mpq(x) + b) * (b - mpq(x)) / (4 * b * b))


def _smelu_fast(x: bd.B, beta: float) -> bd.B:
    u = x + beta
    return bd.where(x.v <= -beta, bd.zero(x), bd.where(x.v >= beta, x, u * ((u / beta) * 0.25)))


def _smelu_fast_derivative(x: bd.B, beta: float) -> bd.B:
    return bd.where(x.v <= -beta, bd.zero(x), bd.where(x.v >= beta, x.like(1.0), ((x + beta) / beta) * 0.5))


def _smelu_fast_second(x: bd.B, beta: float) -> bd.B:
    return bd.where(abs(x.v) < beta, x.like(0.5) / beta, bd.zero(x))


def _smelu_fast_beta(x: bd.B, beta: float) -> bd.B:
    middle = ((x + beta) / beta) * ((beta - x) / beta) * 0.25
    return bd.where(abs(x.v) < beta, middle, bd.zero(x))


register(
    Activation(
        name="smelu",
        kind="elementwise",
        fast=Bounded(_smelu_fast, _smelu_fast_derivative, _smelu_fast_second, {"beta": _smelu_fast_beta}),
        forward=smelu,
        derivative=smelu_derivative,
        second=lambda x, beta: np.where(np.abs(x) < beta, 0.5 / beta, 0.0),
        param_grads=smelu_param_grads,
        exact=Exact(
            _smelu_exact, _smelu_exact_derivative, _smelu_exact_second, params={"beta": _smelu_exact_beta}
        ),
        params=(
            Param(
                name="beta",
                default=2.0,
                minimum=0.0,
                exclusive_minimum=True,
                description="half-width of the quadratic piece",
            ),
        ),
        formula=r"f(x) = 0 \; (x \le -\beta), \; \tfrac{(x + \beta)^2}{4\beta} \; (|x| < \beta), \; x \; (x \ge \beta)",
        derivative_formula=r"f'(x) = 0 \; (x \le -\beta), \; \tfrac{x + \beta}{2\beta} \; (|x| < \beta), \; 1 \; (x \ge \beta)",
        range="[0, inf)",
        kinks=(
            Kink(
                at="-beta",
                derivative=0.0,
                second_derivative=0.0,
                note="f' is continuous; f'' takes the outer piece, as sparse_plus",
            ),
            Kink(
                at="beta",
                derivative=1.0,
                second_derivative=0.0,
                note="f' is continuous; f'' takes the outer piece, as sparse_plus",
            ),
        ),
        typical_use=("hidden",),
        notes=(
            "Smooth relu: a quadratic joins 0 and x with a continuous derivative; with beta = 1 it is "
            "sparse_plus.",
        ),
        aliases=("SmeLU",),
        reference="Shamir, Lin and Coviello, Smooth activations and reproducibility in deep networks (2020)",
        examples=(
            Example(x=-3.0, y=0.0),
            Example(x=0.0, y=0.5),
            Example(x=1.0, y=1.125),
            Example(x=3.0, y=3.0),
        ),
    )
)
