"""Vector activations: functions of a whole vector along one axis.

Every function here works along the last axis; :class:`Activation` moves the
requested axis there and back.  The derivative is the Jacobian along that axis
and ``vjp`` the vector-Jacobian product ``g^T J`` that backpropagation needs.

The derivatives and the VJP of the softmax family are formed in extended
precision (:data:`.exact.EXTENDED`) and rounded once: float64 throughout would
compound the ~3 ULP error of each probability into ~6 ULP for s_i * s_j.

A Jacobian, n times larger than its input, is written block by block into its
result (:data:`.registry.JACOBIAN_BLOCK` elements a block), so that no
extended-precision intermediate spans the whole of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import exact, vector_rounded
from .exact import EXTENDED, Extended
from .registry import (
    CHUNK,
    JACOBIAN_BLOCK,
    Activation,
    ActivationError,
    Array,
    Example,
    Kink,
    Param,
    get,
    register,
)
from .vector_rounded import gate_columns

# -- softmax -----------------------------------------------------------------------


_TEMPERATURE = Param(
    name="temperature",
    default=1.0,
    minimum=0.0,
    exclusive_minimum=True,
    description="divides x: above 1 flattens the distribution, below 1 sharpens it",
)


def _wide(x: Array, temperature: float, m: Array | None = None) -> bool:
    """Whether :func:`_shift` takes its general path for the batch ``x`` (``m``: its row maxima).

    Decided once for a whole batch: a Jacobian built a few vectors at a time
    passes it down, so that every vector gets what the whole batch would.
    """
    if m is None:
        m = np.max(x, axis=-1, keepdims=True)
    return not (temperature == 1.0 and float(np.max(m - np.min(x, axis=-1, keepdims=True))) < 1e308)


def _shift(
    x: Array, temperature: float, wide: bool | None = None, m: Array | None = None
) -> tuple[Array, Array]:
    """q = (x - max(x)) / T along the last axis, as hi + lo.

    Max-shifting keeps exp from overflowing, but x - max is rounded by up to
    half an ULP of a difference as large as ~700, and exp turns that absolute
    error into a relative one (3e-15 on 10*randn(50)).  TwoSum (Knuth, TAOCP
    vol. 2, 4.2.2) recovers the exact error r of d = fl(x - max); the quotient
    by T gets its remainder from an exact product (Dekker), so q = hi + lo to
    about 2^-106 relative, and exp(hi + lo) = exp(hi) (1 + lo).
    ``wide`` is :func:`_wide` of the batch ``x`` belongs to (of ``x`` when None);
    ``m``, the maxima of x's rows (when x is a block of columns of longer rows).
    """
    if m is None:
        m = np.max(x, axis=-1, keepdims=True)
    if not (_wide(x, temperature, m) if wide is None else wide):
        # The common case, with no difference beyond the float64 range: TwoSum only.
        return exact.two_sum(x, -m)
    # Differences beyond 1.8e308 overflow to -inf, and quotients by a small T may;
    # exp of those is 0 whatever their error term, which is then dropped.
    with np.errstate(over="ignore", invalid="ignore"):
        d, r = exact.two_sum(x, -m)
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


def _exp_shifted_blocked(x: Array, temperature: float, negate: bool = False) -> tuple[Array, Array]:
    """exp((x - max)/T) and its row sums, computed block by block in cache.

    ``negate``: of -x (softmin), negated a block at a time rather than copied.
    The common case (T = 1, no difference beyond the float64 range) sums the
    rows block by block; the others sum whole rows, as they always did.
    """
    flat = x.reshape(-1, x.shape[-1])
    if flat.size <= 2 * CHUNK:
        e = _exp_shifted(-flat if negate else flat, temperature)
        return e.reshape(x.shape), np.sum(e, axis=-1, keepdims=True).reshape((*x.shape[:-1], 1))
    top = np.max(flat, axis=-1, keepdims=True)
    bottom = np.min(flat, axis=-1, keepdims=True)
    m = -bottom if negate else top  # the row maxima of -x or x; the range of -x is that of x, to the bit
    wide = temperature != 1.0 or float(np.max(top - bottom)) >= 1e308
    e = np.empty_like(flat)
    sums = np.zeros((flat.shape[0], 1))
    for rows, cols in _blocks(flat):
        xb = -flat[rows, cols] if negate else flat[rows, cols]
        if wide:
            hi, lo = _shift(xb, temperature, True, m[rows])
            eb = np.exp(hi)
            eb += eb * lo
        else:
            d, r = exact.two_sum(xb, -m[rows])
            eb = np.exp(d)
            eb += eb * r
            sums[rows] += np.sum(eb, axis=-1, keepdims=True)
        e[rows, cols] = eb
    if wide:
        sums = np.sum(e, axis=-1, keepdims=True)
    return e.reshape(x.shape), sums.reshape((*x.shape[:-1], 1))


def _extended(x: Array, temperature: float, wide: bool | None = None) -> tuple[Extended, Extended]:
    """(q, s): the shifted logits and the probabilities in extended precision."""
    hi, lo = _shift(x, temperature, wide)
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


# -- Jacobians, block by block ---------------------------------------------------------------


def jacobian_blocks(batch: int, m: int, n: int) -> Iterator[tuple[slice, list[slice]]]:
    """(vectors, [rows, ...]): the blocks a (batch, m, n) Jacobian is built in.

    Each block holds at most JACOBIAN_BLOCK elements (or one row of a longer
    vector): whole vectors, as many as fit, or the rows of one vector in groups.
    """
    if m * n <= JACOBIAN_BLOCK:
        step = max(1, JACOBIAN_BLOCK // max(1, m * n))
        for b in range(0, batch, step):
            yield slice(b, min(b + step, batch)), [slice(0, m)]
        return
    rows = max(1, JACOBIAN_BLOCK // n)
    for b in range(batch):
        yield slice(b, b + 1), [slice(r, min(r + rows, m)) for r in range(0, m, rows)]


def _build(
    x: Array,
    m: int,
    out: NDArray[Any] | None,
    state: Callable[[Array], tuple[NDArray[Any], ...]],
    fill: Callable[[tuple[NDArray[Any], ...], slice, NDArray[Any]], None],
    any_layout: bool = False,
) -> NDArray[Any]:
    """The Jacobian of ``x`` (batch dims + (n,)), block by block, into ``out``.

    ``out``: a C-contiguous float64 or float32 array of shape ``x.shape[:-1] +
    (m, n)`` (allocated as float64 when None).  ``state(v)`` gives per-vector
    arrays, (g, n) for the g vectors ``v``; ``fill(state, rows, dest)`` writes
    those vectors' Jacobian rows into ``dest``, a (g, len(rows), n) view of out.

    The state is formed a group of vectors at a time, except when ``x`` is a
    non-contiguous view (an axis other than the last) and the state involves
    sums (``any_layout`` False): NumPy sums along a strided axis in another
    order than along a contiguous one, so the state is then formed once for the
    whole batch in x's own layout, as it always was.
    """
    n = x.shape[-1]
    batch = math.prod(x.shape[:-1])
    if out is None:
        out = np.empty((*x.shape[:-1], m, n))
    if out.shape != (*x.shape[:-1], m, n) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous array of shape {(*x.shape[:-1], m, n)}")
    jac = out.reshape(batch, m, n)
    if any_layout or x.ndim <= 1 or x.flags.c_contiguous:
        flat = x.reshape(batch, n)
        for vectors, row_blocks in jacobian_blocks(batch, m, n):
            arrays = state(flat[vectors])
            for rows in row_blocks:
                fill(arrays, rows, jac[vectors, rows])
        return out
    whole = tuple(a.reshape(batch, n) for a in state(x))
    for vectors, row_blocks in jacobian_blocks(batch, m, n):
        for rows in row_blocks:
            fill(tuple(a[vectors] for a in whole), rows, jac[vectors, rows])
    return out


def _store(dest: NDArray[Any], block: NDArray[Any]) -> None:
    """Write a block into the result, rounded as the whole Jacobian was: to float64, then to dest's dtype."""
    if block.dtype != np.float64 and dest.dtype != np.float64:
        block = block.astype(np.float64)
    dest[...] = block


def _diagonal(rows: slice) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(i - rows.start, i) for the rows i of a block: where its diagonal elements lie."""
    i = np.arange(rows.start, rows.stop)
    return i - rows.start, i


# -- softmax -----------------------------------------------------------------------------


def softmax(x: Array, temperature: float, negate: bool = False) -> Array:
    e, total = _exp_shifted_blocked(x, temperature, negate)
    # The maximum contributes exp(0) = 1, so the sum is at least 1: no 0/0.
    e /= total
    return e


def softmax_jacobian(
    x: Array, temperature: float, out: NDArray[Any] | None = None, softmin: bool = False
) -> NDArray[Any]:
    # J = (diag(s) - s s^T) / T.  On the diagonal s_i (1 - s_i) cancels for the
    # one component that may exceed 1/2; there 1 - s_k is the sum of the others.
    # Each element is formed in extended precision and rounded once.  softmin(x)
    # is softmax(-x) and its Jacobian -J(-x): x is negated a group at a time and
    # the sign flipped before rounding, which rounds symmetrically.  (The range of
    # -x, which _wide looks at, is that of x, to the bit.)
    wide = _wide(x, temperature)

    def state(v: Array) -> tuple[Extended, Extended]:
        _, s = _extended(-v if softmin else v, temperature, wide)
        return s, s * _complement(s, _dominant(s))

    def fill(arrays: tuple[NDArray[Any], ...], rows: slice, dest: NDArray[Any]) -> None:
        s, diagonal = arrays
        block = -s[:, rows, None] * s[:, None, :]
        at, i = _diagonal(rows)
        block[:, at, i] = diagonal[:, i]
        block /= temperature
        if softmin:
            np.negative(block, out=block)
        _store(dest, block)

    return _build(x, x.shape[-1], out, state, fill)


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
        fast=vector_rounded.softmax_rounding(),
        blocked=True,
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


def log_softmax_jacobian(x: Array, temperature: float, out: NDArray[Any] | None = None) -> NDArray[Any]:
    # d y_i / d x_j = (delta_ij - s_j) / T
    wide = _wide(x, temperature)

    def state(v: Array) -> tuple[Extended, Extended]:
        _, s = _extended(v, temperature, wide)
        return s, _complement(s, _dominant(s))

    def fill(arrays: tuple[NDArray[Any], ...], rows: slice, dest: NDArray[Any]) -> None:
        s, complement = arrays
        block = np.empty(dest.shape, dtype=EXTENDED)
        block[...] = -s[:, None, :]
        at, i = _diagonal(rows)
        block[:, at, i] = complement[:, i]
        block /= temperature
        _store(dest, block)

    return _build(x, x.shape[-1], out, state, fill)


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
        fast=vector_rounded.softmax_rounding(log=True),
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
        fast=vector_rounded.softmax_rounding(negate=True),
        blocked=True,
        forward=lambda x, temperature: softmax(x, temperature, negate=True),
        derivative=lambda x, temperature, out=None: softmax_jacobian(x, temperature, out, softmin=True),
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

# -- gumbel_softmax ---------------------------------------------------------------------------------

#: A seed is a whole number from 0 to 2^53 (every one of them exact in a JSON number).
_SEED = Param(
    name="seed",
    default=0.0,
    minimum=0.0,
    maximum=float(2**53),
    integer=True,
    description=(
        "the Gumbel noise g = NumPy's Generator(PCG64(seed)).gumbel(size=x.shape), drawn for the "
        "whole x in its own layout (C order): the same request gives the same noise"
    ),
)


def gumbel_noise(shape: tuple[int, ...], seed: float) -> Array:
    """The noise gumbel_softmax adds to x: standard Gumbel, from the integer seed."""
    return np.random.Generator(np.random.PCG64(int(seed))).gumbel(size=shape)


def _gumbel_logits(x: Array, params: Mapping[str, float]) -> Array:
    """x + g, rounded to float64 (as a framework forms it).  -3.6 < g < 36.8 (-log(-log u) for a
    double u in (0, 1)): far below half a unit of the largest float64, so x + g never overflows."""
    return np.asarray(x, np.float64) + gumbel_noise(np.shape(x), params["seed"])


register(
    Activation(
        name="gumbel_softmax",
        kind="vector",
        fast=vector_rounded.softmax_rounding(),
        blocked=True,
        prepare=_gumbel_logits,
        forward=lambda x, temperature, seed: softmax(x, temperature),
        derivative=lambda x, temperature, seed, out=None: softmax_jacobian(x, temperature, out),
        vjp=lambda x, g, temperature, seed: softmax_vjp(x, g, temperature),
        param_grads=lambda x, temperature, seed: softmax_temperature_grad(x, temperature),
        params=(_TEMPERATURE, _SEED),
        formula=r"y = \operatorname{softmax}\!\left(\frac{x + g}{\tau}\right), \; g_i = -\log(-\log u_i)",
        derivative_formula=r"\frac{\partial y_i}{\partial x_j} = \frac{y_i (\delta_{ij} - y_j)}{\tau} \; (g \text{ held fixed})",
        range="(0, 1), summing to 1 along the axis",
        typical_use=("multiclass_output",),
        notes=(
            "A differentiable sample from the categorical distribution softmax(x): as tau -> 0 it "
            "approaches a one-hot vector at the argmax of x + g.",
            "The noisy logits x + g are rounded to float64 once, as a framework forms them; y, its "
            "Jacobian, VJP and dy/dtau are then those of softmax at those logits (the noise held "
            "fixed), correctly rounded.  The straight-through 'hard' one-hot is not offered.",
        ),
        aliases=("GumbelSoftmax",),
        reference=(
            "Jang, Gu and Poole, Categorical reparameterization with Gumbel-softmax (2017); "
            "Maddison, Mnih and Teh, The concrete distribution (2017)"
        ),
        examples=(
            Example(
                x=(1.0, 2.0, 3.0),
                y=(0.005298950254974262, 0.04641852763542165, 0.9482825221096041),  # seed 0
            ),
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


def glu_jacobian(x: Array, out: NDArray[Any] | None = None) -> NDArray[Any]:
    # y_i = a_i sigma(b_i): dy_i/da_i = sigma(b_i), dy_i/db_i = a_i sigma(b_i) sigma(-b_i).
    h = x.shape[-1] // 2

    def state(v: Array) -> tuple[Array, Array]:
        a, b = _halves(v)
        return exact.logistic(b), a * exact.logistic(b) * exact.logistic(-b)

    def fill(arrays: tuple[NDArray[Any], ...], rows: slice, dest: NDArray[Any]) -> None:
        da, db = arrays
        dest[...] = 0.0
        at, i = _diagonal(rows)
        dest[:, at, i] = da[:, i]
        dest[:, at, h + i] = db[:, i]

    return _build(x, h, out, state, fill, any_layout=True)


def glu_vjp(x: Array, g: Array) -> Array:
    a, b = _halves(x)
    return np.concatenate([g * exact.logistic(b), g * a * exact.logistic(b) * exact.logistic(-b)], axis=-1)


register(
    Activation(
        name="glu",
        kind="vector",
        fast=vector_rounded.gated("sigmoid"),  # (glu has the second half as gate, no choice)
        workspace={"jacobian": 190.0},  # (no exact sums: below the family's figure)
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

# -- gated linear units with other gates: swiglu, geglu, geglu_tanh, reglu -----------------------

GATE = Param(
    name="gate_half",
    default=2.0,
    choices=(1.0, 2.0),
    description=(
        "which half of x along the axis is the gate passed through the activation: 2, the second "
        "(as glu, PyTorch's F.glu and Keras' glu take it), or 1, the first (as Megatron-LM's "
        "swiglu takes it); the other half is the linear one"
    ),
)


def _halving(name: str) -> Callable[[int], int]:
    def length(n: int) -> int:
        if n % 2:
            raise ActivationError(
                "x", f"{name} splits x in halves along the axis; its length there is {n}, which is odd"
            )
        return n // 2

    return length


def _gated(name: str) -> tuple[Callable[..., Array], Callable[..., NDArray[Any]], Callable[..., Array]]:
    """forward, Jacobian and VJP of y = a * act(b) (a the linear half, b the gate), act the
    elementwise catalog function ``name`` at its default parameters."""
    act = get(name)
    defaults = act.bind()

    def split(x: Array, gate_half: float) -> tuple[Array, Array]:
        lin, gate = gate_columns(x.shape[-1] // 2, gate_half)
        return x[..., lin], x[..., gate]

    def forward(x: Array, gate_half: float = 2.0) -> Array:
        a, b = split(x, gate_half)
        return a * act.forward(b, **defaults)

    def jacobian(x: Array, out: NDArray[Any] | None = None, gate_half: float = 2.0) -> NDArray[Any]:
        # dy_i/da_i = act(b_i), dy_i/db_i = a_i act'(b_i); every other entry is 0.
        h = x.shape[-1] // 2
        lin, gate = gate_columns(h, gate_half)

        def state(v: Array) -> tuple[Array, Array]:
            a, b = split(v, gate_half)
            return act.forward(b, **defaults), a * act.derivative(b, **defaults)

        def fill(arrays: tuple[NDArray[Any], ...], rows: slice, dest: NDArray[Any]) -> None:
            da, db = arrays
            dest[...] = 0.0
            at, i = _diagonal(rows)
            dest[:, at, lin.start + i] = da[:, i]
            dest[:, at, gate.start + i] = db[:, i]

        return _build(x, h, out, state, fill, any_layout=True)

    def vjp(x: Array, g: Array, gate_half: float = 2.0) -> Array:
        a, b = split(x, gate_half)
        parts = g * act.forward(b, **defaults), g * a * act.derivative(b, **defaults)
        return np.concatenate(parts if gate_half == 2.0 else parts[::-1], axis=-1)

    return forward, jacobian, vjp


_GATED = (
    (
        "swiglu",
        "silu",
        r"\operatorname{swiglu}(a \,\|\, b) = a \odot \operatorname{silu}(b) = a \odot b\,\sigma(b)",
        r"\frac{\partial y_i}{\partial a_i} = b_i \sigma(b_i), \; \frac{\partial y_i}{\partial b_i} = a_i \sigma(b_i)\bigl(1 + b_i \sigma(-b_i)\bigr)",
        ("SwiGLU",),
        "Shazeer, GLU variants improve transformer (2020); the feed-forward layers of LLaMA, Mistral and Qwen",
        (),
    ),
    (
        "geglu",
        "gelu",
        r"\operatorname{geglu}(a \,\|\, b) = a \odot \operatorname{gelu}(b) = a \odot b\,\Phi(b)",
        r"\frac{\partial y_i}{\partial a_i} = b_i \Phi(b_i), \; \frac{\partial y_i}{\partial b_i} = a_i \bigl(\Phi(b_i) + b_i \varphi(b_i)\bigr)",
        ("GeGLU", "GEGLU"),
        "Shazeer, GLU variants improve transformer (2020); exact erf GELU as in T5 v1.1 and Gemma's reference",
        (),
    ),
    (
        "geglu_tanh",
        "gelu_tanh",
        r"\operatorname{geglu\_tanh}(a \,\|\, b) = a \odot \operatorname{gelu\_tanh}(b)",
        r"\frac{\partial y_i}{\partial a_i} = \operatorname{gelu\_tanh}(b_i), \; \frac{\partial y_i}{\partial b_i} = a_i \operatorname{gelu\_tanh}'(b_i)",
        ("GeGLUTanh",),
        "Shazeer, GLU variants improve transformer (2020), with the tanh approximation of GELU (Gemma)",
        (),
    ),
    (
        "reglu",
        "relu",
        r"\operatorname{reglu}(a \,\|\, b) = a \odot \max(b, 0)",
        r"\frac{\partial y_i}{\partial a_i} = \max(b_i, 0), \; \frac{\partial y_i}{\partial b_i} = a_i [b_i > 0]",
        ("ReGLU",),
        "Shazeer, GLU variants improve transformer (2020)",
        (
            Kink(
                at="b_i = 0",
                derivative=0.0,
                note="dy_i/db_i at b_i = 0 is taken as 0, relu's convention",
            ),
        ),
    ),
)

#: y at x = (1, -2, 0.5, 2): a = (1, -2), b = (0.5, 2).
_EXAMPLES = {
    "swiglu": (0.3112296656009273, -3.5231883119115297),
    "geglu": (0.34573123063700656, -3.908999472207283),
    "geglu_tanh": (0.34571400982514394, -3.90919538817555),
    "reglu": (0.5, -4.0),
}

for _name, _act, _formula, _derivative, _aliases, _reference, _kinks in _GATED:
    _forward, _jacobian, _vjp = _gated(_act)
    register(
        Activation(
            name=_name,
            kind="vector",
            fast=vector_rounded.gated(_act),
            workspace={"jacobian": 190.0},  # glu's: two diagonals, no exact sums (measured alike)
            forward=_forward,
            derivative=_jacobian,
            vjp=_vjp,
            output_length=_halving(_name),
            params=(GATE,),
            formula=_formula,
            derivative_formula=_derivative,
            range="(-inf, inf); half the length of x along the axis",
            kinks=_kinks,
            typical_use=("gating", "hidden"),
            notes=(
                f"x is split in two halves along the axis: a, the linear half, and b, the gate "
                f"passed through {_act}; y = a * {_act}(b) has half x's length there.",
                "The gate is the second half by default (as in glu); gate_half 1 takes the first.",
                "grad (for the vector-Jacobian product) has the output's shape.",
            ),
            aliases=_aliases,
            reference=_reference,
            examples=(Example(x=(1.0, -2.0, 0.5, 2.0), y=_EXAMPLES[_name]),),
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


def sparsemax_jacobian(x: Array, out: NDArray[Any] | None = None) -> NDArray[Any]:
    # J = diag(S) - 1_S 1_S^T / |S| on the support S = {i : y_i > 0}; elements
    # exactly on its edge (y_i = 0) count as outside.
    # Sorts, cumulative sums and counts of ones: exact or in a fixed order, whatever the layout.

    def state(v: Array) -> tuple[Array]:
        return ((_sparsemax_extended(v) > 0).astype(np.float64),)

    def fill(arrays: tuple[NDArray[Any], ...], rows: slice, dest: NDArray[Any]) -> None:
        (inside,) = arrays
        size = np.sum(inside, axis=-1, keepdims=True)
        block = -inside[:, rows, None] * inside[:, None, :] / size[:, None]
        at, i = _diagonal(rows)
        block[:, at, i] += inside[:, i]
        _store(dest, block)

    return _build(x, x.shape[-1], out, state, fill, any_layout=True)


def sparsemax_vjp(x: Array, g: Array) -> Array:
    inside = _sparsemax_extended(x) > 0
    mean = np.sum(np.where(inside, g, 0.0), axis=-1, keepdims=True) / np.sum(inside, axis=-1, keepdims=True)
    return np.where(inside, g - mean, 0.0)


register(
    Activation(
        name="sparsemax",
        kind="vector",
        fast=vector_rounded.SPARSEMAX,
        workspace={"jacobian": 200.0},
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
