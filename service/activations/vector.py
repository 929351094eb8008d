"""Vector activations: functions of a whole vector along one axis.

Every function here works along the last axis; :class:`Activation` moves the
requested axis there and back.  The derivative is the Jacobian along that axis
and ``vjp`` the vector-Jacobian product ``g^T J`` that backpropagation needs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from . import exact
from .registry import CHUNK, Activation, ActivationError, Array, Example, Kink, Param, register

# -- softmax -----------------------------------------------------------------------


#: Extended precision for the derivatives: x87 80-bit (64-bit significand) on
#: x86-64, IEEE binary128 on aarch64 Linux.  Rounding a product or a sum of
#: extended-precision probabilities once to float64 keeps the Jacobian and the
#: VJP within half an ULP plus a hair, where float64 throughout compounds the
#: ~3 ULP error of each probability into ~6 ULP for s_i * s_j.
EXTENDED = np.longdouble
Extended = NDArray[np.longdouble]

_TEMPERATURE = Param(
    name="temperature",
    default=1.0,
    minimum=0.0,
    exclusive_minimum=True,
    description="divides x: above 1 flattens the distribution, below 1 sharpens it",
)


def _shift(x: Array, temperature: float) -> tuple[Array, Array]:
    """q = (x - max(x)) / T along the last axis, as hi + lo.

    Max-shifting keeps exp from overflowing, but x - max is rounded by up to
    half an ULP of a difference as large as ~700, and exp turns that absolute
    error into a relative one (3e-15 on 10*randn(50)).  TwoSum (Knuth, TAOCP
    vol. 2, 4.2.2) recovers the exact error r of d = fl(x - max); the quotient
    by T gets its remainder from an exact product (Dekker), so q = hi + lo to
    about 2^-106 relative, and exp(hi + lo) = exp(hi) (1 + lo).
    """
    m = np.max(x, axis=-1, keepdims=True)
    if temperature == 1.0 and float(np.max(m - np.min(x, axis=-1, keepdims=True))) < 1e308:
        # The common case, with no difference beyond the float64 range: TwoSum only.
        d = x - m
        v = d - x
        return d, (x - (d - v)) + (-m - v)
    # Differences beyond 1.8e308 overflow to -inf, and quotients by a small T may;
    # exp of those is 0 whatever their error term, which is then dropped.
    with np.errstate(over="ignore", invalid="ignore"):
        d = x - m
        v = d - x
        r = (x - (d - v)) + (-m - v)
        # A difference beyond the float64 range may still fit once divided by T > 1.
        hi = np.where(np.isfinite(d), d / temperature, (0.5 * x - 0.5 * m) / (0.5 * temperature))
        p, p_lo = exact.two_prod(hi, temperature)
        lo = (((d - p) - p_lo) + r) / temperature
    return hi, np.where(hi > -800.0, lo, 0.0)


def _exp_shifted(x: Array, temperature: float) -> Array:
    hi, lo = _shift(x, temperature)
    e = np.exp(hi)
    e += e * lo
    return e


def _blocks(x: Array) -> list[tuple[slice, slice]]:
    """(rows, columns) blocks of about CHUNK elements over a 2-D array."""
    rows, n = x.shape
    if n >= CHUNK:
        return [(slice(r, r + 1), slice(c, c + CHUNK)) for r in range(rows) for c in range(0, n, CHUNK)]
    step = max(1, CHUNK // n)
    return [(slice(r, r + step), slice(None)) for r in range(0, rows, step)]


def _exp_shifted_blocked(x: Array, temperature: float) -> tuple[Array, Array]:
    """exp((x - max)/T) and its row sums, computed block by block in cache."""
    flat = x.reshape(-1, x.shape[-1])
    if temperature != 1.0 or flat.size <= 2 * CHUNK:
        e = _exp_shifted(flat, temperature)
        return e.reshape(x.shape), np.sum(e, axis=-1, keepdims=True).reshape((*x.shape[:-1], 1))
    m = np.max(flat, axis=-1, keepdims=True)
    if float(np.max(m - np.min(flat, axis=-1, keepdims=True))) >= 1e308:
        e = _exp_shifted(flat, temperature)
        return e.reshape(x.shape), np.sum(e, axis=-1, keepdims=True).reshape((*x.shape[:-1], 1))
    e = np.empty_like(flat)
    sums = np.zeros((flat.shape[0], 1))
    for rows, cols in _blocks(flat):
        xb = flat[rows, cols]
        mb = m[rows]
        d = xb - mb
        v = d - xb
        r = (xb - (d - v)) + (-mb - v)
        eb = np.exp(d)
        eb += eb * r
        e[rows, cols] = eb
        sums[rows] += np.sum(eb, axis=-1, keepdims=True)
    return e.reshape(x.shape), sums.reshape((*x.shape[:-1], 1))


def _extended(x: Array, temperature: float) -> tuple[Extended, Extended]:
    """(q, s): the shifted logits and the probabilities in extended precision."""
    hi, lo = _shift(x, temperature)
    q = hi.astype(EXTENDED) + lo.astype(EXTENDED)
    e = np.exp(q)
    return q, e / np.sum(e, axis=-1, keepdims=True)


def _dominant(s: Extended) -> NDArray[np.bool_]:
    """One-hot mask of the largest probability along the last axis."""
    return np.arange(s.shape[-1]) == np.argmax(s, axis=-1, keepdims=True)


def _complement(s: Extended, mask: NDArray[np.bool_]) -> Extended:
    """1 - s, with the dominant component's complement summed from the others."""
    rest = np.sum(np.where(mask, 0.0, s), axis=-1, keepdims=True)
    return np.where(mask, rest, 1.0 - s)


def _centred(s: Extended, g: Extended) -> Extended:
    """s * (g - sum(s g)), with g shifted by its value at the dominant component.

    When s_k ~ 1 the bracket cancels for j = k; shifting first (exact algebra,
    since sum s = 1) turns it into s_k * sum_{i != k} s_i (g_k - g_i), a sum
    over the other components that keeps full relative accuracy.
    """
    mask = _dominant(s)
    dg = g - np.sum(np.where(mask, g, 0.0), axis=-1, keepdims=True)
    return s * (dg - np.sum(s * dg, axis=-1, keepdims=True))


# -- softmax -----------------------------------------------------------------------------


def softmax(x: Array, temperature: float) -> Array:
    e, total = _exp_shifted_blocked(x, temperature)
    # The maximum contributes exp(0) = 1, so the sum is at least 1: no 0/0.
    e /= total
    return e


def softmax_jacobian(x: Array, temperature: float) -> Array:
    # J = (diag(s) - s s^T) / T.  On the diagonal s_i (1 - s_i) cancels for the
    # one component that may exceed 1/2; there 1 - s_k is the sum of the others.
    _, s = _extended(x, temperature)
    jac = -s[..., :, None] * s[..., None, :]
    n = s.shape[-1]
    jac[..., np.arange(n), np.arange(n)] = s * _complement(s, _dominant(s))
    return (jac / temperature).astype(np.float64)


def softmax_vjp(x: Array, g: Array, temperature: float) -> Array:
    _, s = _extended(x, temperature)
    return (_centred(s, g.astype(EXTENDED)) / temperature).astype(np.float64)


def softmax_temperature_grad(x: Array, temperature: float) -> dict[str, Array]:
    # ds/dT = -J0 (x/T) / T with J0 = diag(s) - s s^T, which is _centred with g = q.
    q, s = _extended(x, temperature)
    return {"temperature": (-_centred(s, q) / temperature).astype(np.float64)}


register(
    Activation(
        name="softmax",
        kind="vector",
        forward=softmax,
        derivative=softmax_jacobian,
        vjp=softmax_vjp,
        param_grads=softmax_temperature_grad,
        params=(_TEMPERATURE,),
        formula=r"\operatorname{softmax}(x)_i = \frac{e^{x_i / T}}{\sum_j e^{x_j / T}}",
        derivative_formula=r"\frac{\partial s_i}{\partial x_j} = \frac{s_i (\delta_{ij} - s_j)}{T}",
        range="(0, 1), summing to 1 along the axis",
        typical_use=("multiclass_output",),
        notes=(
            "Invariant to adding a constant to every component; computed max-shifted so it never overflows.",
            "Pair it with a cross-entropy loss: the gradient of the pair is simply s - onehot(target).",
        ),
        aliases=("Softmax",),
        reference="Bridle, Probabilistic interpretation of feedforward classification network outputs (1990)",
        examples=(
            Example(x=(1.0, 2.0, 3.0), y=(0.09003057317038046, 0.24472847105479764, 0.6652409557748219)),
            Example(x=(1000.0, 1000.0), y=(0.5, 0.5)),
        ),
    )
)

# -- log_softmax -----------------------------------------------------------------------------


def log_softmax(x: Array, temperature: float) -> Array:
    # q - log(sum e^q) with q = (x - max)/T <= 0 and the log as log1p of the sum
    # over the non-maximal components: the winning class gets -log1p(rest), not
    # a rounded 0 (-4.2e-18 for [40, 0]), and q - L never cancels (q <= 0 <= L).
    hi, lo = _shift(x, temperature)
    e = np.exp(hi) * (1.0 + lo)
    top = np.arange(x.shape[-1]) == np.argmax(x, axis=-1, keepdims=True)
    rest = np.sum(np.where(top, 0.0, e), axis=-1, keepdims=True)
    return (hi - np.log1p(rest)) + lo


def log_softmax_jacobian(x: Array, temperature: float) -> Array:
    # d y_i / d x_j = (delta_ij - s_j) / T
    _, s = _extended(x, temperature)
    n = s.shape[-1]
    jac = np.broadcast_to(-s[..., None, :], (*s.shape, n)).copy()
    jac[..., np.arange(n), np.arange(n)] = _complement(s, _dominant(s))
    return (jac / temperature).astype(np.float64)


def log_softmax_vjp(x: Array, g: Array, temperature: float) -> Array:
    # (g_j - s_j sum_i g_i) / T, as g_j (1 - s_j) - s_j sum_{i != j} g_i.
    _, s = _extended(x, temperature)
    ge = g.astype(EXTENDED)
    total = np.sum(ge, axis=-1, keepdims=True)
    out = ge * _complement(s, _dominant(s)) - s * (total - ge)
    return (out / temperature).astype(np.float64)


def log_softmax_temperature_grad(x: Array, temperature: float) -> dict[str, Array]:
    # d y_i / dT = -(q_i - sum_j s_j q_j) / T
    q, s = _extended(x, temperature)
    return {"temperature": (-(q - np.sum(s * q, axis=-1, keepdims=True)) / temperature).astype(np.float64)}


register(
    Activation(
        name="log_softmax",
        kind="vector",
        forward=log_softmax,
        derivative=log_softmax_jacobian,
        vjp=log_softmax_vjp,
        param_grads=log_softmax_temperature_grad,
        params=(_TEMPERATURE,),
        formula=r"\operatorname{log\_softmax}(x)_i = \frac{x_i}{T} - \log \sum_j e^{x_j / T}",
        derivative_formula=r"\frac{\partial y_i}{\partial x_j} = \frac{\delta_{ij} - s_j}{T}",
        range="(-inf, 0)",
        typical_use=("multiclass_output",),
        notes=(
            "Log-probabilities for a negative log-likelihood loss.",
            "The winning class keeps its tiny negative value (-4.2e-18 for [40, 0]) where "
            "PyTorch, JAX and Keras round it to 0.",
        ),
        aliases=("LogSoftmax", "logsoftmax"),
        reference="Bridle (1990); Goodfellow, Bengio and Courville, Deep Learning (2016), section 6.2.2.3",
        examples=(
            Example(x=(1.0, 2.0, 3.0), y=(-2.40760596444438, -1.4076059644443804, -0.4076059644443803)),
            Example(x=(40.0, 0.0), y=(-4.248354255291589e-18, -40.0)),
        ),
    )
)

# -- softmin ---------------------------------------------------------------------------------------

register(
    Activation(
        name="softmin",
        kind="vector",
        forward=lambda x, temperature: softmax(-x, temperature),
        derivative=lambda x, temperature: -softmax_jacobian(-x, temperature),
        vjp=lambda x, g, temperature: -softmax_vjp(-x, g, temperature),
        param_grads=lambda x, temperature: softmax_temperature_grad(-x, temperature),
        params=(_TEMPERATURE,),
        formula=r"\operatorname{softmin}(x) = \operatorname{softmax}(-x)",
        derivative_formula=r"\frac{\partial y_i}{\partial x_j} = -\frac{y_i (\delta_{ij} - y_j)}{T}",
        range="(0, 1), summing to 1 along the axis",
        typical_use=("multiclass_output",),
        notes=("Probabilities that favour the smallest components (distances, costs).",),
        aliases=("Softmin",),
        reference="PyTorch torch.nn.Softmin",
        examples=(
            Example(x=(1.0, 2.0, 3.0), y=(0.6652409557748219, 0.24472847105479764, 0.09003057317038046)),
        ),
    )
)

# -- glu ------------------------------------------------------------------------------------------


def _glu_length(n: int) -> int:
    if n % 2:
        raise ActivationError(
            "x", f"glu splits x in halves along the axis; its length there is {n}, which is odd"
        )
    return n // 2


def _halves(x: Array) -> tuple[Array, Array]:
    h = x.shape[-1] // 2
    return x[..., :h], x[..., h:]


def glu(x: Array) -> Array:
    a, b = _halves(x)
    return a * exact.logistic(b)


def glu_jacobian(x: Array) -> Array:
    # y_i = a_i sigma(b_i): dy_i/da_i = sigma(b_i), dy_i/db_i = a_i sigma(b_i) sigma(-b_i).
    a, b = _halves(x)
    h = a.shape[-1]
    jac = np.zeros((*a.shape, 2 * h))
    idx = np.arange(h)
    jac[..., idx, idx] = exact.logistic(b)
    jac[..., idx, h + idx] = a * exact.logistic(b) * exact.logistic(-b)
    return jac


def glu_vjp(x: Array, g: Array) -> Array:
    a, b = _halves(x)
    return np.concatenate([g * exact.logistic(b), g * a * exact.logistic(b) * exact.logistic(-b)], axis=-1)


register(
    Activation(
        name="glu",
        kind="vector",
        forward=glu,
        derivative=glu_jacobian,
        vjp=glu_vjp,
        output_length=_glu_length,
        formula=r"\operatorname{glu}(a \,\|\, b) = a \odot \sigma(b)",
        derivative_formula=r"\frac{\partial y_i}{\partial a_i} = \sigma(b_i), \; \frac{\partial y_i}{\partial b_i} = a_i \sigma(b_i) \sigma(-b_i)",
        range="(-inf, inf); half the length of x along the axis",
        typical_use=("gating",),
        notes=(
            "x is split in two halves a and b along the axis; the output has half its length there.",
            "grad (for the vector-Jacobian product) has the output's shape.",
        ),
        aliases=("GLU",),
        reference="Dauphin et al., Language modeling with gated convolutional networks (2017)",
        examples=(Example(x=(1.0, -2.0, 0.0, 2.0), y=(0.5, -1.7615941559557649)),),
    )
)

# -- sparsemax ------------------------------------------------------------------------------------


def _sparsemax_extended(x: Array) -> Extended:
    """Euclidean projection of x onto the simplex (Martins and Astudillo 2016, Alg. 1).

    The threshold tau comes from a cumulative sum, formed in extended precision
    so that the outputs z_i - tau, which cancel near the edge of the support,
    keep an absolute error of a few units of 2^-64 |x|.
    """
    # Shifted so that the largest component is 0 (sparsemax is shift-invariant):
    # 1 + z > z must not be lost to rounding when z is huge.  The extended
    # format also has the range for differences beyond 1.8e308.
    z = x.astype(EXTENDED)
    z = z - np.max(z, axis=-1, keepdims=True)
    zs = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1, dtype=EXTENDED)
    cs = np.cumsum(zs, axis=-1)
    support = 1.0 + k * zs > cs
    support[..., 0] = True  # 1 + z_(1) > z_(1) always
    size = np.sum(support, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cs, size - 1, axis=-1) - 1.0) / size
    return np.maximum(z - tau, 0.0)


def sparsemax(x: Array) -> Array:
    return _sparsemax_extended(x).astype(np.float64)


def sparsemax_jacobian(x: Array) -> Array:
    # J = diag(S) - 1_S 1_S^T / |S| on the support S = {i : y_i > 0}; elements
    # exactly on its edge (y_i = 0) count as outside.
    inside = (_sparsemax_extended(x) > 0).astype(np.float64)
    size = np.sum(inside, axis=-1, keepdims=True)
    n = x.shape[-1]
    jac = -inside[..., :, None] * inside[..., None, :] / size[..., None]
    jac[..., np.arange(n), np.arange(n)] += inside
    return jac


def sparsemax_vjp(x: Array, g: Array) -> Array:
    inside = _sparsemax_extended(x) > 0
    mean = np.sum(np.where(inside, g, 0.0), axis=-1, keepdims=True) / np.sum(inside, axis=-1, keepdims=True)
    return np.where(inside, g - mean, 0.0)


register(
    Activation(
        name="sparsemax",
        kind="vector",
        forward=sparsemax,
        derivative=sparsemax_jacobian,
        vjp=sparsemax_vjp,
        formula=r"\operatorname{sparsemax}(x) = \arg\min_{p \in \Delta} \|p - x\|^2 = \max(x - \tau(x), 0)",
        derivative_formula=r"J = \operatorname{diag}(s) - \frac{s s^T}{|S|}, \; s = 1[y > 0]",
        range="[0, 1], summing to 1 along the axis, with exact zeros",
        kinks=(
            Kink(
                at="edge of the support",
                derivative=0.0,
                note="a component with y_i = 0 exactly on the edge of the support counts as outside it",
            ),
        ),
        typical_use=("multiclass_output",),
        notes=("Like softmax, but assigns exactly zero probability to low-scoring classes.",),
        aliases=("Sparsemax",),
        reference="Martins and Astudillo, From softmax to sparsemax (2016)",
        examples=(
            Example(x=(1.0, 2.0, 3.0), y=(0.0, 0.0, 1.0)),
            Example(x=(0.5, 0.25, 0.0), y=(0.5833333333333334, 0.3333333333333333, 0.08333333333333333)),
        ),
    )
)
