"""Vector activations: functions of a whole vector along one axis.

Every function here works along the last axis; :class:`Activation` moves the
requested axis there and back.  The derivative is the Jacobian along that axis
and ``vjp`` the vector-Jacobian product ``g^T J`` that backpropagation needs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .registry import Activation, Array, Example, register

# -- softmax -----------------------------------------------------------------------


#: Extended precision for the derivatives: x87 80-bit (64-bit significand) on
#: x86-64, IEEE binary128 on aarch64 Linux.  Rounding a product or a sum of
#: extended-precision probabilities once to float64 keeps the Jacobian and the
#: VJP within half an ULP plus a hair, where float64 throughout compounds the
#: ~3 ULP error of each probability into ~6 ULP for s_i * s_j.
EXTENDED = np.longdouble


def _shift(x: Array) -> tuple[Array, Array]:
    """d = fl(x - max(x)) along the last axis and its exact rounding error r.

    Max-shifting keeps exp from overflowing, but x - max is rounded by up to
    half an ULP of a difference as large as ~700, and exp turns that absolute
    error into a relative one (3e-15 on 10*randn(50)).  TwoSum (Knuth, TAOCP
    vol. 2, 4.2.2) recovers the exact error r, so x - max = d + r exactly.
    """
    m = np.max(x, axis=-1, keepdims=True)
    # x - m overflows to -inf only for differences beyond 1.8e308, where exp is 0
    # anyway; the error term of such an element is meaningless and is dropped.
    with np.errstate(over="ignore", invalid="ignore"):
        d = x - m
        v = d - x
        r = (x - (d - v)) + (-m - v)
    return d, np.where(np.isfinite(r), r, 0.0)


def softmax(x: Array) -> Array:
    d, r = _shift(x)
    e = np.exp(d)
    e = e + e * r  # exp(d + r) = exp(d) (1 + r) to within r^2 ~ 1e-27
    # The maximum contributes exp(0) = 1, so the sum is at least 1: no 0/0.
    return e / np.sum(e, axis=-1, keepdims=True)


def _softmax_extended(x: Array) -> NDArray[np.longdouble]:
    d, r = _shift(x)
    e = np.exp(d.astype(EXTENDED) + r.astype(EXTENDED))
    return e / np.sum(e, axis=-1, keepdims=True)


def _dominant_mask(s: NDArray[np.longdouble]) -> NDArray[np.bool_]:
    """One-hot mask of the largest probability along the last axis."""
    return np.arange(s.shape[-1]) == np.argmax(s, axis=-1, keepdims=True)


def softmax_jacobian(x: Array) -> Array:
    # J = diag(s) - s s^T.  On the diagonal s_i (1 - s_i) cancels for the one
    # component that may exceed 1/2; there 1 - s_k is computed as the sum of
    # the other components, which carries no cancellation.
    s = _softmax_extended(x)
    mask = _dominant_mask(s)
    rest = np.sum(np.where(mask, 0.0, s), axis=-1, keepdims=True)
    diag = np.where(mask, s * rest, s * (1.0 - s))
    jac = -s[..., :, None] * s[..., None, :]
    n = s.shape[-1]
    jac[..., np.arange(n), np.arange(n)] = diag
    return jac.astype(np.float64)


def softmax_vjp(x: Array, g: Array) -> Array:
    # (g^T J)_j = s_j (g_j - sum_i s_i g_i).  When s_k ~ 1 the bracket cancels
    # for j = k; shifting g by g_k first (exact algebra, since sum_i s_i = 1)
    # turns it into s_k * sum_{i != k} s_i (g_k - g_i): a sum over the other
    # components that keeps the dominant component's full relative accuracy.
    s = _softmax_extended(x)
    mask = _dominant_mask(s)
    gk = np.sum(np.where(mask, g, 0.0), axis=-1, keepdims=True)
    dg = g.astype(EXTENDED) - gk
    t = np.sum(s * dg, axis=-1, keepdims=True)
    return (s * (dg - t)).astype(np.float64)


register(
    Activation(
        name="softmax",
        kind="vector",
        forward=softmax,
        derivative=softmax_jacobian,
        vjp=softmax_vjp,
        formula=r"\operatorname{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}}",
        derivative_formula=r"\frac{\partial s_i}{\partial x_j} = s_i (\delta_{ij} - s_j)",
        range="(0, 1), summing to 1 along the axis",
        typical_use=("multiclass_output",),
        notes=(
            "Invariant to adding a constant to every component; computed max-shifted so it never overflows.",
            "Pair it with a cross-entropy loss: the gradient of the pair is simply s - onehot(target).",
        ),
        reference="Bridle, Probabilistic interpretation of feedforward classification network outputs (1990)",
        examples=(
            Example(x=(1.0, 2.0, 3.0), y=(0.09003057317038046, 0.24472847105479764, 0.6652409557748218)),
            Example(x=(1000.0, 1000.0), y=(0.5, 0.5)),
        ),
    )
)
