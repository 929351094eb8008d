"""The activation registry: the one place a function is defined.

Each :class:`Activation` entry pairs a forward function with its derivative and
carries everything the service says about it (parameters with bounds, formulas,
kink conventions, range, typical use, aliases, reference, examples).  Request
validation, the catalog endpoint, the OpenAPI enum and most tests are derived
from these entries, so adding a function means adding one entry.

Entry schema
------------
``forward(x, **params)``
    float64 array in, float64 array out.  Elementwise functions keep the shape;
    vector functions work along the *last* axis (the wrapper methods below move
    the requested axis there and back).
``derivative(x, **params)``
    Elementwise: f'(x) with x's shape.  Vector: the Jacobian along the last
    axis, shape ``y.shape + (n,)`` with ``J[..., i, j] = dy_i / dx_j``; vector
    derivatives also take ``out``, a C-contiguous float64 or float32 array of
    that shape, and write the Jacobian into it (rounded to float64 first, then
    to out's dtype) without forming any intermediate of its size.
``vjp(x, g, **params)``
    Vector functions only: the vector-Jacobian product ``g^T J`` along the last
    axis (elementwise functions use ``g * f'(x)``).
``second(x, **params)``
    Elementwise functions only: f''(x).
``param_grads(x, **params)``
    Functions with parameters: ``{name: dy/dtheta}``, each with y's shape.
``constraint(params)``
    Optional check across parameters (e.g. ``min_val < max_val``); raises
    :class:`ActivationError`.
``output_length(n)``
    Vector functions whose output is shorter than the input along the axis
    (glu halves it); raises :class:`ActivationError` for an unusable ``n``.

Every function must return finite values for every finite input whose true
result is representable, and must not emit a NumPy warning.  A true result
that overflows float64 comes back as ``inf`` and is turned into
:class:`ResultOverflow` by the wrapper methods.

Large elementwise arrays are evaluated in blocks whose boundaries do not
depend on the number of threads (:func:`set_threads`), so neither do the
results.  Functions not marked ``blocked`` are evaluated whole up to 2 * BLOCK
elements and in blocks beyond: their value at an element must depend on that
element only.

This module is pure NumPy: it never imports the web layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Kind = Literal["elementwise", "vector"]
#: Output dtypes: results are computed in float64 and rounded once to the dtype.
DType = type[np.float32] | type[np.float64]

#: Tags used in ``typical_use``; ``GET /activations?use=...`` filters by them.
USES: Mapping[str, str] = {
    "hidden": "hidden layers",
    "binary_output": "output layer of a binary classifier (probability of the positive class)",
    "multiclass_output": "output layer of a multi-class classifier (probabilities summing to 1)",
    "regression_output": "output layer of a regression model (unbounded real values)",
    "positive_output": "output layer for positive quantities (rates, variances, scales)",
    "gating": "gates that scale another signal between 0 and 1 (LSTM/GRU gates, GLU, squeeze-excite)",
    "sparse_coding": "shrinkage operators of sparse coding and denoising (exact zeros near 0)",
    "perceptron": "historical perceptron units; not trainable by gradient descent",
}


def _stacked(
    split: tuple[int, list[dict[str, Any]]], x: Array, fn: Callable[..., Array], *arrays: Array
) -> Array:
    """fn of each channel (x, and ``arrays``, taken along the split's axis, with that channel's
    parameters), stacked back along the axis."""
    ax, per = split
    parts = []
    with _ROUNDING.per_channel(int(np.size(x))):
        for c, pc in enumerate(per):
            try:
                parts.append(
                    np.asarray(fn(np.take(x, c, axis=ax), pc, *(np.take(a, c, axis=ax) for a in arrays)))
                )
            except ResultOverflow as exc:
                raise ResultOverflow(_in_channel(exc.field, ax, c), exc.reason) from None
    return np.stack(parts, axis=ax)


def _in_channel(field: str, ax: int, c: int) -> str:
    """A channel's element named in the whole of x: ``y[1]`` of channel 2 along axis 1 is ``y[1][2]``."""
    name, _, rest = field.partition("[")
    index = [int(i) for i in re.findall(r"\d+", rest)] if rest else []
    return element(name, [*index[:ax], c, *index[ax:]])


#: The most channels a per-channel parameter has (each is evaluated as a call of its own).
MAX_CHANNELS = 4096


class ActivationError(ValueError):
    """A request the core cannot serve.  ``field`` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownActivation(ActivationError):
    """The name is neither a canonical name nor an alias."""


class ResultOverflow(ActivationError):
    """The true result of a finite input is too large for the output dtype."""


class NotSupported(ActivationError):
    """The quantity asked for does not exist for this function (e.g. f'' of softmax)."""


class Cancelled(Exception):
    """A computation stopped at a checkpoint: whoever asked for it no longer waits (its client
    left, or it ran past its deadline).  ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stop:
    """Set from another thread to stop the computations that run under it (see :func:`stoppable`)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


_stop: contextvars.ContextVar[Stop | None] = contextvars.ContextVar("stop", default=None)


def checkpoint() -> None:
    """Raise :class:`Cancelled` when the computation this thread runs for has been stopped.

    Called between blocks, vectors, elements of the exact route and iterations of the profile,
    simulation and fit loops: a stopped request gives its thread back within one of those.
    """
    stop = _stop.get()
    if stop is not None and stop.reason is not None:
        raise Cancelled(stop.reason)


@contextlib.contextmanager
def stoppable(stop: Stop) -> Iterator[None]:
    """Run the body (and the worker threads it starts, which copy the context) under ``stop``."""
    token = _stop.set(stop)
    try:
        yield
    finally:
        _stop.reset(token)


@dataclass(frozen=True)
class Param:
    """A parameter of an activation, with its bounds: a number, or (``length`` given) an array of
    numbers, each within the bounds (rational's coefficients)."""

    name: str
    default: float | tuple[float, ...]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    #: True when ``minimum`` itself is not allowed (e.g. a temperature > 0).
    exclusive_minimum: bool = False
    #: The only values allowed, for a parameter that chooses between forms (glu's gate half);
    #: such a parameter has no derivative and is never fitted.
    choices: tuple[float, ...] = ()
    #: A whole number (a seed): no derivative, never fitted.
    integer: bool = False
    #: An array parameter: the fewest and most numbers it takes (None: a number).
    length: tuple[int, int] | None = None
    #: A number, or an array of one number per channel, applied along ``axis`` (prelu's weight, as
    #: PyTorch's ``nn.PReLU(num_parameters=C)``): each element takes its channel's number.
    channels: bool = False

    @property
    def differentiable(self) -> bool:
        """Whether y has a derivative with respect to this parameter (not a choice or a seed)."""
        return not self.choices and not self.integer

    def coerce(self, value: Any) -> float | tuple[float, ...]:
        """``value`` as this parameter holds it (a float, or a tuple of floats), checked."""
        where = f"params.{self.name}"
        if self.channels and isinstance(value, (list, tuple, np.ndarray)):
            return self._numbers(
                value, 1, MAX_CHANNELS, f"give one number per channel, at most {MAX_CHANNELS:,}"
            )
        if self.length is None:
            if isinstance(value, (list, tuple, np.ndarray)):
                raise ActivationError(where, "must be a number, not an array")
            number = float(value)
            self.check(number)
            return number
        if not isinstance(value, (list, tuple, np.ndarray)):
            if self.length[0] > 1:
                raise ActivationError(where, f"must be an array of {self._lengths()} numbers")
            value = [value]  # a number stands for an array of one (a query string's "denominator=0.5")
        return self._numbers(value, *self.length, f"it takes {self._lengths()}")

    def _numbers(self, value: Any, low: int, high: int, takes: str) -> tuple[float, ...]:
        """An array's numbers, between ``low`` and ``high`` of them, each within the bounds."""
        where = f"params.{self.name}"
        items = tuple(float(v) for v in value)
        if not low <= len(items) <= high:
            raise ActivationError(where, f"has {len(items)} numbers; {takes}")
        for k, v in enumerate(items):
            self.check(v, f"{where}[{k}]")
        return items

    def _lengths(self) -> str:
        assert self.length is not None
        low, high = self.length
        return f"{low}" if low == high else f"{low} to {high}"

    def components(self, value: float | tuple[float, ...]) -> list[str]:
        """The names its derivatives go by: the name, or name[k] for each number of an array."""
        if isinstance(value, tuple):
            return [f"{self.name}[{k}]" for k in range(len(value))]
        return [self.name]

    def check(self, value: float, where: str | None = None) -> None:
        """Raise :class:`ActivationError` when ``value`` is outside the bounds."""
        where = where or f"params.{self.name}"
        if not math.isfinite(value):
            raise ActivationError(where, "must be a finite number")
        if self.choices and value not in self.choices:
            allowed = " or ".join(f"{c:g}" for c in self.choices)
            raise ActivationError(where, f"must be {allowed}, got {value:g}")
        if self.integer and not float(value).is_integer():
            raise ActivationError(where, f"must be a whole number, got {value!r}")
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                raise ActivationError(where, f"must be greater than {self.minimum:g}, got {value:g}")
            if value < self.minimum:
                raise ActivationError(where, f"must be at least {self.minimum:g}, got {value:g}")
        if self.maximum is not None and value > self.maximum:
            raise ActivationError(where, f"must be at most {self.maximum:g}, got {value:g}")


@dataclass(frozen=True)
class Kink:
    """Where the derivative is not defined, and the value the service takes there.

    ``at`` and ``derivative`` are numbers, or the name of a parameter whose
    value they take (for example leaky_relu takes ``negative_slope`` at 0).
    """

    at: float | str
    derivative: float | str
    note: str
    #: The second derivative taken there, where f' itself has a jump or kink.
    second_derivative: float | str | None = None


@dataclass(frozen=True)
class Example:
    """An input and its output (rounded for display), shown in the catalog and docs."""

    x: float | tuple[float, ...]
    y: float | tuple[float, ...]
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Exact:
    """An elementwise function in exact arithmetic, for correctly rounded results (:mod:`.correct`).

    Each callable takes ``x`` and the parameters as ``gmpy2.mpfr`` (the float64
    values received, exactly) and returns the quantity computed with MPFR at the
    working precision of the current gmpy2 context (the caller raises it until
    the rounded result no longer changes); constants are built at that precision
    from their exact published values.  Kink conventions are the catalog's.
    """

    value: Callable[..., Any]
    derivative: Callable[..., Any]
    second: Callable[..., Any]
    #: dy/dtheta for each parameter, by name (functions with parameters).
    params: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Activation:
    """One activation function and everything the service says about it."""

    name: str
    kind: Kind
    forward: Callable[..., Array]
    derivative: Callable[..., Array]
    formula: str
    derivative_formula: str
    range: str
    typical_use: tuple[str, ...]
    reference: str
    params: tuple[Param, ...] = ()
    kinks: tuple[Kink, ...] = ()
    notes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    vjp: Callable[..., Array] | None = None
    second: Callable[..., Array] | None = None
    param_grads: Callable[..., dict[str, Array]] | None = None
    constraint: Callable[[Mapping[str, float]], None] | None = None
    output_length: Callable[[int], int] | None = None
    #: Bytes the intermediates of one element take at their peak, by quantity
    #: (see :meth:`workspace_bytes`; "jacobian_block": per element of a Jacobian
    #: block); quantities not listed take the defaults in WORKSPACE, the largest
    #: figures over the registry's functions of the same kind.  Measured by
    #: ``python -m tests.bench.core_memory --calibrate``.
    workspace: Mapping[str, float] = field(default_factory=dict)
    #: Evaluate in cache-sized blocks of CHUNK elements (pays off for compensated
    #: evaluations that make many passes).  Other functions are evaluated whole up
    #: to 2 * BLOCK elements and in blocks of BLOCK beyond, which bounds their
    #: temporaries and lets several threads share the work.  A vector function
    #: marked ``blocked`` computes its forward in blocks of CHUNK elements itself
    #: beyond 2 * CHUNK (softmax), which :meth:`workspace_bytes` counts on.
    blocked: bool = False
    #: The function in exact arithmetic (elementwise functions): the reference that
    #: results in float16 and bfloat16, /check and /reference are correctly rounded from.
    exact: Exact | None = None
    #: The quantities with running error bounds (:mod:`.bounded`): float64 and float32 results of
    #: those it defines are correctly rounded (bounded evaluation, the exact definition where the
    #: bound cannot decide); the others come from the NumPy functions above.
    fast: Any = None
    #: x -> the input the function is evaluated at, for the whole array in its own layout before
    #: any axis is moved (gumbel_softmax adds its seeded noise).  Derivatives are taken through it
    #: as through the identity (the noise is held fixed).
    prepare: Callable[[Array, Mapping[str, float]], Array] | None = None

    def __post_init__(self) -> None:
        if (self.kind == "vector") != (self.vjp is not None):
            raise TypeError(f"{self.name}: a vjp is required for vector functions and only for them")
        if (self.kind == "elementwise") != (self.second is not None):
            raise TypeError(f"{self.name}: a second derivative is required for elementwise functions")
        if bool(self.learnable) != (self.param_grads is not None):
            raise TypeError(
                f"{self.name}: param_grads is required exactly when there are differentiable parameters"
            )
        unknown = set(self.typical_use) - set(USES)
        if unknown:
            raise TypeError(f"{self.name}: unknown typical_use tags {sorted(unknown)}")

    # -- parameters ---------------------------------------------------------

    def derivative_count(self) -> int:
        """The most parameter derivatives an element can have: one a number, an array's longest."""
        return sum(p.length[1] if p.length else 1 for p in self.learnable)

    @property
    def learnable(self) -> tuple[Param, ...]:
        """The parameters y has derivatives with respect to (all but choices between forms)."""
        return tuple(p for p in self.params if p.differentiable)

    def bind(self, given: Mapping[str, Any] | None = None, per_channel: bool = True) -> dict[str, Any]:
        """Validate ``given`` against the declared parameters and fill in defaults.  With
        ``per_channel`` False (where x has no channels: /check, /profile, /fit...), a per-channel
        array is refused."""
        given = dict(given or {})
        declared = {p.name: p for p in self.params}
        for name in given:
            if name not in declared:
                expected = ", ".join(declared) if declared else "none"
                raise ActivationError(
                    f"params.{name}", f"unknown parameter for {self.name}; expected: {expected}"
                )
        bound: dict[str, Any] = {}
        for p in self.params:
            bound[p.name] = p.coerce(given.get(p.name, p.default))
            if p.channels and not per_channel and isinstance(bound[p.name], tuple):
                raise ActivationError(
                    f"params.{p.name}",
                    "must be a number here: one number per channel applies to /activate and /derivative",
                )
        if self.constraint is not None:
            self.constraint(bound)
        return bound

    # -- evaluation (the API of the core) -----------------------------------

    def prepared(self, x: Array, params: Mapping[str, float]) -> Array:
        """x as the function is evaluated at (see ``prepare``)."""
        return x if self.prepare is None else self.prepare(x, params)

    def value(
        self, x: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> Array:
        """y = f(x) for ``x`` of any shape (vector functions along ``axis``)."""
        x = self.prepared(x, params)
        if self.kind == "elementwise":
            split = self._channels(x, params, axis)
            if split is not None:
                return _stacked(split, x, lambda xc, pc: self.value(xc, pc, -1, dtype))
            return _finite(self._elementwise("value", self.forward, x, params, dtype), "y", dtype)
        ax = self.check_axis(x, axis)
        if self._vector_rounded():
            return _finite(self.rounded_vector("value", x, params, ax, _format(dtype)), "y", dtype)
        y = _call(self.forward, np.moveaxis(x, ax, -1), params)
        return _finite(np.moveaxis(y, -1, ax), "y", dtype)

    def jacobian(
        self, x: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> Array:
        """Elementwise: f'(x) with x's shape.  Vector: the Jacobian, shape ``y.shape + (n,)``.

        ``J[..., i, ..., j] = dy_i / dx_j`` where i indexes ``axis`` and j is the
        appended last axis.
        """
        x = self.prepared(x, params)
        if self.kind == "elementwise":
            split = self._channels(x, params, axis)
            if split is not None:
                return _stacked(split, x, lambda xc, pc: self.jacobian(xc, pc, -1, dtype))
            return _finite(self._elementwise("derivative", self.derivative, x, params, dtype), "dydx", dtype)
        ax = self.check_axis(x, axis)
        xm = np.moveaxis(x, ax, -1)
        n = xm.shape[-1]
        jac = np.empty((*xm.shape[:-1], self.output_length(n) if self.output_length else n, n), dtype)
        if self._vector_rounded():
            with _ROUNDING.exact_budget(int(jac.size)):
                self.fast.compute(
                    "jacobian", xm, params, _format(dtype), out=jac, output_length=jac.shape[-2]
                )
            return _finite(np.moveaxis(jac, -2, ax), "dydx", dtype)
        with np.errstate(over="ignore"):
            self.derivative(xm, out=jac, **params)
        return _finite(np.moveaxis(jac, -2, ax), "dydx", dtype)

    def second_derivative(
        self, x: Array, params: Mapping[str, float], dtype: DType = np.float64, axis: int = -1
    ) -> Array:
        """f''(x) with x's shape; elementwise functions only (``axis``: of per-channel parameters)."""
        if self.second is None:
            raise NotSupported(
                "order",
                f"second derivatives are available for elementwise functions; "
                f"{self.name} is a vector function (use order 1)",
            )
        split = self._channels(x, params, axis)
        if split is not None:
            return _stacked(split, x, lambda xc, pc: self.second_derivative(xc, pc, dtype))
        return _finite(self._elementwise("second_derivative", self.second, x, params, dtype), "d2ydx2", dtype)

    def vector_jacobian_product(
        self, x: Array, g: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> Array:
        """``g^T J``: the gradient with respect to x of ``sum(g * f(x))``."""
        x = self.prepared(x, params)
        if self.kind == "elementwise":
            split = self._channels(x, params, axis)
            if split is not None:
                return _stacked(
                    split, x, lambda xc, pc, gc: self.vector_jacobian_product(xc, gc, pc, -1, dtype), g
                )
            if self._rounded("derivative") is not None:
                return _finite(
                    self._elementwise("derivative", self.derivative, x, params, dtype, g), "grad_x", dtype
                )
            dydx = _call_blocks(self.derivative, x, params, self.block)
            with np.errstate(over="ignore"):
                return _finite(_times(g, dydx, x), "grad_x", dtype)
        assert self.vjp is not None
        ax = self.check_axis(x, axis)
        if self._vector_rounded():
            return _finite(self.rounded_vector("vjp", x, params, ax, _format(dtype), g), "grad_x", dtype)
        # The product is linear in g: scale g by a power of two (exact) so that
        # intermediate differences of huge gradients cannot overflow.
        scale = _power_of_two_scale(g)
        out = _call(self.vjp, np.moveaxis(x, ax, -1), params, np.moveaxis(g * scale, ax, -1))
        with np.errstate(over="ignore"):
            out = np.moveaxis(out, -1, ax) / scale
        return _finite(out, "grad_x", dtype)

    def parameter_jacobian(
        self, x: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> dict[str, Array]:
        """``{name: dy/dtheta}`` for every parameter, each with y's shape (an array parameter's
        with one more axis; a per-channel one's, x's shape: each element's own channel's)."""
        x = self.prepared(x, params)
        split = self._channels(x, params, axis) if self.kind == "elementwise" else None
        if split is not None:
            return {
                p.name: _stacked(
                    split, x, lambda xc, pc, name=p.name: self.parameter_jacobian(xc, pc, -1, dtype)[name]
                )
                for p in self.learnable
            }
        grads = self._param_grads(x, params, axis, dtype)
        return {name: _finite(g, f"dydparams.{name}", dtype) for name, g in grads.items()}

    def parameter_vjp(
        self, x: Array, g: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> dict[str, Any]:
        """``{name: sum(g * dy/dtheta)}``: the update a training loop applies to each parameter
        (a per-channel parameter's: one sum a channel)."""
        x = self.prepared(x, params)
        split = self._channels(x, params, axis) if self.kind == "elementwise" else None
        if split is not None:
            ax, per = split
            channels = []
            with _ROUNDING.per_channel(int(np.size(x))):
                for channel, pc in enumerate(per):
                    xc, gc = np.take(x, channel, axis=ax), np.take(g, channel, axis=ax)
                    try:
                        channels.append(self.parameter_vjp(xc, gc, pc, -1, dtype))
                    except ResultOverflow as exc:  # one sum a channel: name the channel's
                        raise ResultOverflow(f"{exc.field}[{channel}]", exc.reason) from None
            return {p.name: [part[p.name] for part in channels] for p in self.learnable}
        if self.kind == "elementwise" and any(self._rounded("value", p.name) for p in self.learnable):
            fmt = _format(dtype)
            sums: dict[str, Any] = {}
            for p in self.learnable:
                totals = []
                for c in p.components(params[p.name]):
                    if fmt in ("float16", "bfloat16"):
                        form = _ROUNDING.FORMATS[fmt]
                        x16, g16 = (_ROUNDING.round_to(np.asarray(a, np.float64), form) for a in (x, g))
                        total = _ROUNDING.summed_through_double(self, c, x16, g16, params, form)
                    else:
                        total = _ROUNDING.rounded_sum(self, c, x, g, params, fmt)
                    totals.append(float(_finite(np.asarray(total), f"grad_params.{c}", dtype)))
                # an array parameter's sums have its shape
                sums[p.name] = totals if isinstance(params[p.name], tuple) else totals[0]
            return sums
        if self._vector_rounded():
            ax = self.check_axis(x, axis)
            xm, gm = np.moveaxis(x, ax, -1), np.moveaxis(g, ax, -1)
            with _ROUNDING.exact_budget(int(x.size)):
                return {
                    p.name: float(
                        _finite(
                            np.asarray(self.fast.summed(p.name, xm, gm, params, _format(dtype))),
                            f"grad_params.{p.name}",
                            dtype,
                        )
                    )
                    for p in self.learnable
                }
        grads = self._param_grads(x, params, axis)
        out = {}
        for name, dy in grads.items():
            with np.errstate(over="ignore"):
                # In place where that sums the same products in the same order.
                same = self.kind == "elementwise" and g.flags.c_contiguous and dy.flags.c_contiguous
                total = np.sum(_times(g, dy, x) if same else g * dy, dtype=np.float64)
            out[name] = float(_finite(np.asarray(total), f"grad_params.{name}", dtype))
        return out

    def _param_grads(
        self, x: Array, params: Mapping[str, float], axis: int, dtype: DType = np.float64
    ) -> dict[str, Array]:
        if self.param_grads is None:
            raise NotSupported("wrt", f"{self.name} has no parameters to differentiate with respect to")
        if self.kind == "elementwise":
            fast = [p.name for p in self.learnable if self._rounded("value", p.name) is not None]
            grads: dict[str, Array] = (
                {}
                if len(fast) == len(self.learnable)
                else _call_blocks(self.param_grads, x, params, self.block, dtype)
            )
            for p in self.learnable:
                if p.name not in fast:
                    continue
                parts = [
                    self._elementwise("value", None, x, params, dtype, param=c)
                    for c in p.components(params[p.name])
                ]
                # an array parameter's derivatives: x's shape and one more axis, the parameter's
                grads[p.name] = np.stack(parts, axis=-1) if isinstance(params[p.name], tuple) else parts[0]
            return {p.name: grads[p.name] for p in self.learnable}
        ax = self.check_axis(x, axis)
        if self._vector_rounded():
            return {
                p.name: self.rounded_vector("param", x, params, ax, _format(dtype), param=p.name)
                for p in self.learnable
            }
        with np.errstate(over="ignore"):
            grads = self.param_grads(np.moveaxis(x, ax, -1), **params)
        return {k: np.moveaxis(np.asarray(v, np.float64), -1, ax) for k, v in grads.items()}

    def _vector_rounded(self) -> bool:
        """Whether the vector function's results are correctly rounded (``fast`` defines them)."""
        return self.kind == "vector" and self.fast is not None and _ROUNDING is not None

    def rounded_vector(
        self,
        quantity: str,
        x: Array,
        params: Mapping[str, float],
        axis: int,
        fmt: str,
        g: Array | None = None,
        param: str | None = None,
    ) -> Array:
        """A vector function's ``quantity`` ("value", "vjp" or "param"; the Jacobian through
        :meth:`jacobian`) along ``axis``, correctly rounded to the format named ``fmt`` (any of
        float64, float32, float16 and bfloat16), as float64 with x's layout (inf where a result
        exceeds the format)."""
        ax = self.check_axis(x, axis)
        xm = np.moveaxis(x, ax, -1)
        gm = None if g is None else np.moveaxis(g, ax, -1)
        length = self.output_length(xm.shape[-1]) if self.output_length else xm.shape[-1]
        with _ROUNDING.exact_budget(int(x.size)):
            y = self.fast.compute(quantity, xm, params, fmt, g=gm, param=param, output_length=length)
        return np.moveaxis(y, -1, ax)

    def _rounded(self, quantity: str, param: str | None = None) -> Callable[..., Array] | None:
        """The correctly rounded route of a quantity (see ``fast``), or None."""
        if self.fast is None or _ROUNDING is None:
            return None
        if _ROUNDING.bounded_of(self, quantity, param) is None:
            return None
        return _ROUNDING.rounded

    def _elementwise(
        self,
        quantity: str,
        fn: Callable[..., Any] | None,
        x: Array,
        params: Mapping[str, float],
        dtype: DType,
        g: Array | None = None,
        param: str | None = None,
    ) -> Any:
        """An elementwise quantity (times g), block by block: correctly rounded where the entry has
        a fast definition of it, else from the NumPy function ``fn``."""
        fmt = _format(dtype)
        route = self._rounded(quantity, param)
        if fmt in ("float16", "bfloat16") and _ROUNDING is not None:
            # x (and g) rounded to the format once, as the API does; the results from the correctly
            # rounded float64 ones where there are (see correct.from_double), else exactly.
            form = _ROUNDING.FORMATS[fmt]
            x16 = _ROUNDING.round_to(np.asarray(x, np.float64), form)
            g16 = None if g is None else _ROUNDING.round_to(np.asarray(g, np.float64), form)
            with _ROUNDING.exact_budget(int(x.size)):
                if route is not None:
                    r64 = self._elementwise(quantity, fn, x16, params, np.float64, g16, param)
                    return _ROUNDING.from_double(self, quantity, x16, g16, r64, params, form, param)
                if g16 is None:
                    return _ROUNDING.sixteen_bit(self, quantity, x16, params, form, param)
                return _ROUNDING.scaled(self, quantity, x16, g16, params, form)
        if route is None:
            assert fn is not None
            assert g is None
            return _call_blocks(fn, x, params, self.block, dtype)

        def block(xb: Array, *gb: Array, **p: float) -> Array:
            return route(self, quantity, xb, p, fmt, param, gb[0] if gb else None)

        with _ROUNDING.exact_budget(int(x.size)):
            return _call_blocks(block, x, params, self.block, dtype, *(() if g is None else (g,)))

    def workspace_bytes(self, quantity: str, shape: tuple[int, ...], axis: int) -> int:
        """A conservative upper estimate of the bytes the core allocates at peak for one call.

        ``quantity`` is one of QUANTITIES; ``shape`` is x's shape and ``axis``
        the axis of a vector function (ignored for elementwise ones).  The
        result arrays are included, the input ``x`` (and ``grad``) are not; it
        holds for float64 and float32 results and for the current
        :func:`set_threads`.  Raises what the call would raise before any work
        for a quantity the function does not have, ValueError for an unknown one.
        """
        fixed, elements = self._workspace_terms(quantity, shape, axis)
        if quantity in ("derivative", "jacobian"):  # one quantity, named after the kind
            quantity = "jacobian" if self.kind == "vector" else "derivative"
        return (
            math.ceil(WORKSPACE_MARGIN * (fixed + self._per_element(quantity) * elements)) + WORKSPACE_FLOOR
        )

    def _per_element(self, quantity: str) -> float:
        if self.kind == "vector" and self.fast is not None:
            return self.workspace.get(quantity, WORKSPACE["vector rounded"].get(quantity, 0.0))
        heavy = self._in_chunks and not self._exact_in_numpy(quantity)
        key = self.kind + (" blocked" if self.kind == "elementwise" and heavy else "")
        return self.workspace.get(quantity, WORKSPACE[key].get(quantity, 0.0))

    def _workspace_terms(self, quantity: str, shape: tuple[int, ...], axis: int) -> tuple[int, int]:
        """(bytes of the results and of copies of x, elements whose intermediates are alive at once)."""
        if quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {quantity!r}; expected one of {', '.join(QUANTITIES)}")
        if quantity == "second_derivative" and self.second is None:
            self.second_derivative(np.zeros(1), {})  # raises NotSupported
        if quantity.startswith("parameter_") and self.param_grads is None:
            self._param_grads(np.zeros(1), {}, -1)  # raises NotSupported
        size = math.prod(shape)
        k = self.derivative_count()
        # Results in float64; 4 bytes more where a float32 copy is made of a float64 result.
        results = {
            "value": 12,
            "derivative": 12,
            "jacobian": 12,
            "second_derivative": 12,
            "vjp": 12,
            "parameter_jacobian": 8 * k + 4,
            "parameter_vjp": 8 * k + 8,
        }[quantity]
        if quantity == "parameter_vjp" and self.fast is not None:
            results = 0  # summed chunk by chunk: no array of products (the figure covers the rest)
        if self.kind == "elementwise":
            if size <= 2 * self.block:
                return results * size, size  # evaluated whole
            # In blocks, written straight into results of the output dtype: no float32 copy
            # (but the product with a gradient is formed from a float64 derivative).
            results -= 0 if quantity in ("vjp", "parameter_vjp") else 4
            return results * size, min(size, self.block * (_threads if size > PARALLEL_MIN else 1))
        ax = self._normalise_axis(shape, axis)
        n = shape[ax]
        m = self.output_length(n) if self.output_length is not None else n
        out = size // n * m if n else 0
        if self.fast is not None:
            return self._rounded_vector_terms(quantity, size, n, m, ax != len(shape) - 1 and size > n)
        if quantity == "value" and self.blocked:
            # Blocks of about CHUNK elements of a contiguous copy of x, and a few numbers per row.
            copy = 8 * size if ax != len(shape) - 1 and size > n else 0
            return results * out + copy + 32 * (size // n if n else 0), size if size <= 2 * CHUNK else CHUNK
        if quantity in ("value", "parameter_jacobian", "parameter_vjp"):
            return results * out, size
        if quantity == "vjp":
            return results * size, size
        # The Jacobian: its float64 result, a few numbers per vector of the batch (such
        # as the row maxima and minima), one block's intermediates, and the per-vector
        # state of a group of vectors, or, for an axis other than the last, of the
        # whole batch (with a contiguous copy of x).
        block = self._per_element("jacobian_block") * min(JACOBIAN_BLOCK, out * n)
        fixed = 8 * out * n + 24 * (size // n if n else 0) + math.ceil(block)
        if ax != len(shape) - 1 and size > n:
            return fixed + 8 * size, size
        group = max(1, JACOBIAN_BLOCK // max(1, m * n)) if m * n <= JACOBIAN_BLOCK else 1
        return fixed, min(size, group * n)

    def _rounded_vector_terms(self, quantity: str, size: int, n: int, m: int, moved: bool) -> tuple[int, int]:
        """``_workspace_terms`` of a correctly rounded vector function: its results (float64 and a
        copy in the output dtype), contiguous copies of x and g for an axis other than the last,
        and the intermediates of one group of vectors of about CHUNK elements in long double (a
        longer vector: the whole of it), the exact route's included."""
        out = size // n * m if n else 0
        copies = 8 * size if moved else 0
        if self.prepare is not None:
            copies += 16 * size  # the prepared input and what it is formed from (gumbel_softmax's noise)
        live = min(size, max(n, CHUNK))
        if quantity in ("jacobian", "derivative"):
            # The result (float64 at most), its row blocks (CHUNK entries) beside a group's state.
            return 8 * out * n + copies, min(out * n, CHUNK) + live
        if quantity == "vjp":
            return 12 * size + 2 * copies, live
        if quantity == "parameter_vjp":
            return 2 * copies, live
        return 12 * out * max(
            1, self.derivative_count() if quantity == "parameter_jacobian" else 1
        ) + copies, live

    def _exact_in_numpy(self, quantity: str) -> bool:
        """Whether a correctly rounded quantity comes straight from NumPy (its float64 results are
        exact: x, 0, 1, a parameter), without the bounded evaluation's long double arrays."""
        if self.fast is None or self.blocked or self.kind == "vector":
            return False
        fast = self.fast
        defs = {
            "value": [fast.value],
            "derivative": [fast.derivative],
            "second_derivative": [fast.second],
            "vjp": [fast.derivative],
            "parameter_jacobian": list(fast.params.values()),
            "parameter_vjp": list(fast.params.values()),
        }.get(quantity, [None])
        return bool(defs) and all(getattr(d, "numpy", None) is not None for d in defs)

    @property
    def _in_chunks(self) -> bool:
        """Evaluated in blocks of CHUNK: marked ``blocked``, or correctly rounded (whose bounded
        evaluation works on CHUNK elements at a time, in long double)."""
        return self.blocked or self.fast is not None

    @property
    def block(self) -> int:
        """The elements of one block when an elementwise array is evaluated in blocks."""
        return CHUNK if self._in_chunks else BLOCK

    def output_shape(self, shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
        """The shape of y for an input of ``shape`` (``axis`` already normalised)."""
        if self.output_length is None:
            return shape
        out = list(shape)
        out[axis] = self.output_length(shape[axis])
        return tuple(out)

    def _channels(
        self, x: Array, params: Mapping[str, Any], axis: int
    ) -> tuple[int, list[dict[str, Any]]] | None:
        """Where a per-channel parameter is an array: the axis and each channel's parameters (its
        numbers), else None.  The array has one number for each channel, x's length along axis."""
        arrays = [p.name for p in self.params if p.channels and isinstance(params.get(p.name), tuple)]
        if not arrays:
            return None
        if np.ndim(x) == 0:
            raise ActivationError(
                "x", f"a per-channel {arrays[0]} needs channels: send an array, not a number"
            )
        ax = self._normalise_axis(np.shape(x), axis)
        n = np.shape(x)[ax]
        for name in arrays:
            if len(params[name]) != n:
                raise ActivationError(
                    f"params.{name}",
                    f"has {len(params[name])} numbers, one per channel, but x has {n} along axis {ax}: "
                    f"give {n} numbers, or a single number for every channel",
                )
        return ax, [{k: (v[c] if k in arrays else v) for k, v in params.items()} for c in range(n)]

    def check_axis(self, x: Array, axis: int) -> int:
        """Normalise ``axis`` for ``x``; vector functions need at least one dimension."""
        return self._normalise_axis(x.shape, axis)

    def _normalise_axis(self, shape: tuple[int, ...], axis: int) -> int:
        ndim = len(shape)
        if ndim == 0:
            raise ActivationError("x", f"{self.name} works along an axis; send a list, not a single number")
        if not -ndim <= axis < ndim:
            raise ActivationError("axis", f"axis {axis} is out of range for x with {ndim} dimension(s)")
        ax = axis % ndim
        if self.output_length is not None:
            self.output_length(shape[ax])
        return ax


#: The correctly rounded route (:mod:`.correct`, which installs itself with :func:`use_rounding`
#: when the package is imported: it imports this module, so this one cannot import it).
_ROUNDING: Any = None


def use_rounding(route: Any) -> None:
    """Install the correctly rounded route: an object with ``bounded_of``, ``rounded``,
    ``rounded_sum`` and ``exact_budget`` (the module :mod:`.correct`)."""
    global _ROUNDING
    _ROUNDING = route


#: Elementwise functions marked ``blocked`` run over blocks of this many elements:
#: a compensated evaluation makes a dozen passes over its intermediates, which
#: then stay in cache (128 kB a block) instead of streaming 8 MB arrays through memory.
CHUNK = 16384
#: The blocks of the other elementwise functions: large enough that the copy
#: and the Python overhead of a block cost little, small enough to bound their
#: temporaries (a few MB) and to share an array between threads.
BLOCK = 4 * CHUNK
#: Elementwise arrays of more elements than this are shared between threads,
PARALLEL_MIN = 262144
#: when a block takes at least this long (the first one is timed).  Threads hand
#: the GIL over between NumPy calls; for a cheap block (silu, softplus: a dozen
#: calls of ~10 us on 16k elements) the hand-offs cost more than the second core
#: gains, and the blocks run faster in the calling thread alone.
PARALLEL_BLOCK_SECONDS = 0.0005
#: A vector function's Jacobian is built in blocks of at most this many elements
#: (whole vectors, or rows of one); their extended-precision intermediates take
#: 16 bytes an element, a few at a time.
JACOBIAN_BLOCK = 65536

# -- memory estimates ---------------------------------------------------------------------

#: The quantities :meth:`Activation.workspace_bytes` estimates.
QUANTITIES = (
    "value",
    "derivative",
    "second_derivative",
    "jacobian",
    "vjp",
    "parameter_jacobian",
    "parameter_vjp",
)
#: Bytes of intermediates per element at the peak, for functions that declare
#: none of their own (``Activation.workspace``): elementwise per element of the
#: blocks in flight (marked ``blocked``: compensated evaluations in extended
#: precision; others), vector per element of x (for the Jacobian: of the vectors
#: whose state is formed at once; "jacobian_block": per element of a block).  The
#: largest figures that ``python -m tests.bench.core_memory --calibrate`` prints
#: over the registry, rounded up; f' is "derivative" for elementwise functions,
#: "jacobian" for vector ones.
WORKSPACE: Mapping[str, Mapping[str, float]] = {
    "elementwise blocked": {
        # Correctly rounded functions: a chunk's long double values and bounds (16 bytes each,
        # some 25 arrays of them at the peak); parameter_vjp also holds a chunk's terms as
        # Python numbers (and MPFR numbers, where its sum goes to the exact route).
        "value": 460.0,
        "derivative": 460.0,
        "second_derivative": 460.0,
        "vjp": 460.0,
        "parameter_jacobian": 300.0,
        "parameter_vjp": 560.0,
    },
    "elementwise": {
        # Quantities exact in NumPy (x, 0, 1, a parameter), in blocks of CHUNK, and the NumPy
        # functions of quantities without a bounded definition.
        "value": 120.0,
        "derivative": 120.0,
        "second_derivative": 120.0,
        "vjp": 160.0,
        "parameter_jacobian": 120.0,
        "parameter_vjp": 360.0,
    },
    "vector rounded": {
        # Correctly rounded vector functions, per element of a group of vectors of about CHUNK
        # elements (or of one longer vector): its long double values and bounds, and the exact
        # route's per-vector arrays.
        "value": 260.0,
        "jacobian": 400.0,
        "vjp": 340.0,
        "parameter_jacobian": 300.0,
        "parameter_vjp": 640.0,
    },
    "vector": {
        "value": 90.0,
        "jacobian": 70.0,
        "jacobian_block": 20.0,
        "vjp": 98.0,
        "parameter_jacobian": 80.0,
        "parameter_vjp": 76.0,
    },
}
#: The estimates' margin over the measured figures, and a floor for the small
#: allocations of any call (Python objects, NumPy scalars).
WORKSPACE_MARGIN = 1.25
WORKSPACE_FLOOR = 65536


def _call(fn: Callable[..., Any], x: Array, params: Mapping[str, float], *extra: Array) -> Any:
    # Overflow of a true result is reported as ResultOverflow by _finite; any
    # other floating-point warning (invalid, divide) stays a bug to be caught.
    with np.errstate(over="ignore"):
        out = fn(x, *extra, **params)
    if isinstance(out, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    return np.asarray(out, dtype=np.float64)


def _call_blocks(
    fn: Callable[..., Any],
    x: Array,
    params: Mapping[str, float],
    block: int,
    dtype: DType = np.float64,
    *extra: Array,
) -> Any:
    """An elementwise ``fn``: whole up to ``2 * block`` elements, else block by block (``extra``
    arrays of x's shape are sliced alongside x and passed after it).

    Returns what ``fn`` returns (an array or a dict of arrays).  The blocks of
    arrays over PARALLEL_MIN elements are shared between threads; the results
    of a blocked evaluation are written into arrays of ``dtype`` (rounded from
    float64 exactly as a conversion of the whole would round them).
    """
    if x.ndim == 0:
        # A bare number: the functions assign through masks, which NumPy scalars do not
        # support (and scalar arithmetic warns where array arithmetic does not): one element.
        out = _call(fn, x.reshape(1), params, *(a.reshape(1) for a in extra))
        if isinstance(out, dict):
            return {k: v.reshape(()) for k, v in out.items()}
        return out.reshape(())
    if x.size <= 2 * block:
        return _call(fn, x, params, *extra)
    flat = x.reshape(-1)
    flats = [a.reshape(-1) for a in extra]
    started = time.perf_counter()
    first = _call(fn, flat[:block], params, *(a[:block] for a in flats))
    cheap = time.perf_counter() - started < PARALLEL_BLOCK_SECONDS
    outs = {key: np.empty(flat.size, dtype) for key in (first if isinstance(first, dict) else {"": first})}

    def store(start: int, result: Any) -> None:
        with np.errstate(over="ignore"):  # float32: a true result beyond its range becomes inf
            for key, value in (result if isinstance(result, dict) else {"": result}).items():
                outs[key][start : start + block] = value

    def run(index: int) -> None:
        checkpoint()
        start = (index + 1) * block
        store(
            start, _call(fn, flat[start : start + block], params, *(a[start : start + block] for a in flats))
        )

    store(0, first)
    del first
    count = (flat.size - 1) // block  # the blocks after the first
    if flat.size > PARALLEL_MIN and not cheap:
        _for_each(count, run)
    else:
        for index in range(count):
            run(index)
    shaped = {k: v.reshape(x.shape) for k, v in outs.items()}
    return shaped.get("", shaped)


def _times(g: Array, values: Array, x: Array) -> Array:
    """``g * values``, in place in ``values`` when that gives the same numbers (a fresh float64 array)."""
    if (
        values.ndim
        and g.shape == values.shape
        and np.result_type(g, values) == np.float64
        and values.flags.writeable
        and not np.may_share_memory(values, x)
        and not np.may_share_memory(values, g)
    ):
        return np.multiply(g, values, out=values)
    return g * values


# -- threads --------------------------------------------------------------------------------

_threads = os.cpu_count() or 1
_pool: _Workers | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def set_threads(n: int) -> None:
    """Evaluate large elementwise arrays with ``n`` threads: the caller and ``n - 1`` pool threads.

    The default is ``os.cpu_count()``; 1 evaluates everything in the calling
    thread.  Results do not depend on ``n``.
    """
    global _threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    with _pool_lock:
        old, _pool, _threads = _pool, None, n
    if old is not None:
        old.close()


def get_threads() -> int:
    """The number of threads a large elementwise array is evaluated with (see :func:`set_threads`)."""
    return _threads


class _Workers:
    """Daemon threads that run submitted tasks.

    Daemon threads are not joined at exit, so a process told to stop is never
    held up by a computation in progress (a ``ThreadPoolExecutor``'s threads
    are joined, and would finish every queued block first).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._tasks: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._serve, name=f"activations-{i}", daemon=True).start()

    def submit(self, task: Callable[[], object]) -> None:
        self._tasks.put(task)

    def close(self) -> None:
        """Let the threads end once the tasks already submitted are done."""
        for _ in range(self.count):
            self._tasks.put(None)

    def _serve(self) -> None:
        _local.in_pool = True  # a core call made from here runs sequentially
        while (task := self._tasks.get()) is not None:
            task()  # a _Job's work, which never raises
            # (else the last task's closure, and the arrays it holds, would live on in this thread
            # until the next task arrives)
            del task


def _workers() -> _Workers | None:
    """The pool, started on first use; None when calls run in one thread."""
    global _pool
    if _threads == 1 or getattr(_local, "in_pool", False):
        return None
    with _pool_lock:
        if _pool is None and _threads > 1:
            _pool = _Workers(_threads - 1)
        return _pool


def _after_fork() -> None:
    # The child has none of the parent's threads: start a pool of its own when needed.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class _Job:
    """Blocks 0 .. count - 1 of one call, each run by whichever thread claims it first.

    The caller works too and then waits only for the blocks other threads have
    started: it never waits for a task still queued behind other calls' work,
    so calls from several threads at once, or from inside a block, cannot deadlock.
    """

    def __init__(self, count: int, run: Callable[[int], None]) -> None:
        self._count = count
        self._run = run
        self._next = 0
        self._busy = 0
        self._failed: dict[int, BaseException] = {}
        self._lock = threading.Condition(threading.Lock())

    def work(self) -> None:
        while True:
            with self._lock:
                if self._next >= self._count or self._failed:
                    return
                index = self._next
                self._next += 1
                self._busy += 1
            try:
                self._run(index)
            except BaseException as exc:  # handed to the caller by finish()
                with self._lock:
                    self._failed[index] = exc
            finally:
                with self._lock:
                    self._busy -= 1
                    if not self._busy:
                        self._lock.notify_all()

    def finish(self) -> None:
        """Wait for the blocks still running elsewhere; raise the first block's error, as a loop would."""
        with self._lock:
            self._lock.wait_for(lambda: not self._busy)
            if self._failed:
                raise self._failed[min(self._failed)]


def _for_each(count: int, run: Callable[[int], None]) -> None:
    """``run(0)``, ..., ``run(count - 1)``, shared with the pool threads when there are any.

    ``run`` must write its results where no other index does; the blocks run in
    copies of the caller's context (NumPy's error state included).
    """
    workers = _workers() if count > 1 else None
    if workers is None:
        for index in range(count):
            run(index)
        return
    job = _Job(count, run)
    for _ in range(min(workers.count, count - 1)):
        workers.submit(_in_context(contextvars.copy_context(), job.work))
    job.work()
    job.finish()


def _in_context(context: contextvars.Context, work: Callable[[], None]) -> Callable[[], object]:
    return lambda: context.run(work)


def _format(dtype: Any) -> str:
    """The name of a result format given as a NumPy type (float16, bfloat16 as ml_dtypes')."""
    name = np.dtype(dtype).name
    return name if name in ("float32", "float16", "bfloat16") else "float64"


def _finite(y: Array, name: str, dtype: DType = np.float64) -> Array:
    """``y`` in ``dtype``, or :class:`ResultOverflow` naming the first element that does not fit."""
    if dtype is not np.float64:
        with np.errstate(over="ignore"):
            y = y.astype(dtype, copy=False)
    index = first_non_finite(y)
    if index is None:
        return y
    raise ResultOverflow(element(name, index), f"the true result is too large for {np.dtype(dtype).name}")


def element(name: str, index: Iterable[Any]) -> str:
    """An element's name in an error: ``x[1][0]``."""
    return name + "".join(f"[{int(i)}]" for i in index)


_SMALL = 4096


def first_non_finite(a: Array) -> tuple[int, ...] | None:
    """The index of the first inf or NaN in ``a``, or None when every element is finite."""
    if a.size <= _SMALL:
        # A small array: one test (the sum below costs more than it saves here).
        if np.isfinite(a).all():
            return None
    else:
        # One pass and no temporary: the sum is inf or NaN whenever an element is; only
        # when it is (or when finite values sum past the range) are the elements inspected.
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.sum(a, dtype=np.float64)
        if np.isfinite(total) or np.isfinite(a).all():
            return None
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def _power_of_two_scale(g: Array) -> float:
    biggest = float(np.max(np.abs(g))) if g.size else 0.0
    if biggest <= 2.0**500:
        return 1.0
    return 2.0 ** -math.frexp(biggest)[1]


# -- the table ---------------------------------------------------------------

_BY_NAME: dict[str, Activation] = {}
_CANONICAL: dict[str, Activation] = {}


def register(entry: Activation) -> Activation:
    """Add ``entry`` to the registry under its name and aliases."""
    for key in (entry.name, *entry.aliases):
        if key in _BY_NAME:
            raise ValueError(f"activation name {key!r} registered twice")
        _BY_NAME[key] = entry
    _CANONICAL[entry.name] = entry
    return entry


def get(name: str) -> Activation:
    """Look an activation up by canonical name or alias."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownActivation(
            "activation", f"unknown activation {name[:100]!r}; expected one of: {', '.join(names())}"
        ) from None


def names() -> list[str]:
    """Canonical names, in registration order."""
    return list(_CANONICAL)


def all_names() -> list[str]:
    """Canonical names and aliases: every spelling a request may use."""
    return list(_BY_NAME)


def entries() -> Iterator[Activation]:
    """Every registered activation, in registration order."""
    return iter(_CANONICAL.values())
