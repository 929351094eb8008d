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
    axis, shape ``x.shape + (n,)`` with ``J[..., i, j] = dy_i / dx_j``.
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

This module is pure NumPy: it never imports the web layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
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


@dataclass(frozen=True)
class Param:
    """A scalar parameter of an activation, with its bounds."""

    name: str
    default: float
    description: str
    minimum: float | None = None
    maximum: float | None = None
    #: True when ``minimum`` itself is not allowed (e.g. a temperature > 0).
    exclusive_minimum: bool = False

    def check(self, value: float) -> None:
        """Raise :class:`ActivationError` when ``value`` is outside the bounds."""
        where = f"params.{self.name}"
        if not math.isfinite(value):
            raise ActivationError(where, "must be a finite number")
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
    #: Evaluate in cache-sized blocks (pays off for compensated evaluations that
    #: make many passes; costs a copy for one-pass functions such as relu).
    blocked: bool = False

    def __post_init__(self) -> None:
        if (self.kind == "vector") != (self.vjp is not None):
            raise TypeError(f"{self.name}: a vjp is required for vector functions and only for them")
        if (self.kind == "elementwise") != (self.second is not None):
            raise TypeError(f"{self.name}: a second derivative is required for elementwise functions")
        if bool(self.params) != (self.param_grads is not None):
            raise TypeError(f"{self.name}: param_grads is required exactly when there are parameters")
        unknown = set(self.typical_use) - set(USES)
        if unknown:
            raise TypeError(f"{self.name}: unknown typical_use tags {sorted(unknown)}")

    # -- parameters ---------------------------------------------------------

    def bind(self, given: Mapping[str, float] | None = None) -> dict[str, float]:
        """Validate ``given`` against the declared parameters and fill in defaults."""
        given = dict(given or {})
        declared = {p.name: p for p in self.params}
        for name in given:
            if name not in declared:
                expected = ", ".join(declared) if declared else "none"
                raise ActivationError(
                    f"params.{name}", f"unknown parameter for {self.name}; expected: {expected}"
                )
        bound: dict[str, float] = {}
        for p in self.params:
            value = float(given.get(p.name, p.default))
            p.check(value)
            bound[p.name] = value
        if self.constraint is not None:
            self.constraint(bound)
        return bound

    # -- evaluation (the API of the core) -----------------------------------

    def value(
        self, x: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> Array:
        """y = f(x) for ``x`` of any shape (vector functions along ``axis``)."""
        if self.kind == "elementwise":
            return _finite(_call_blocks(self.forward, x, params, self.blocked), "y", dtype)
        ax = self.check_axis(x, axis)
        y = _call(self.forward, np.moveaxis(x, ax, -1), params)
        return _finite(np.moveaxis(y, -1, ax), "y", dtype)

    def jacobian(
        self, x: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> Array:
        """Elementwise: f'(x) with x's shape.  Vector: the Jacobian, shape ``y.shape + (n,)``.

        ``J[..., i, ..., j] = dy_i / dx_j`` where i indexes ``axis`` and j is the
        appended last axis.
        """
        if self.kind == "elementwise":
            return _finite(_call_blocks(self.derivative, x, params, self.blocked), "dydx", dtype)
        ax = self.check_axis(x, axis)
        jac = _call(self.derivative, np.moveaxis(x, ax, -1), params)
        return _finite(np.moveaxis(jac, -2, ax), "dydx", dtype)

    def second_derivative(self, x: Array, params: Mapping[str, float], dtype: DType = np.float64) -> Array:
        """f''(x) with x's shape; elementwise functions only."""
        if self.second is None:
            raise NotSupported(
                "order",
                f"second derivatives are available for elementwise functions; "
                f"{self.name} is a vector function (use order 1)",
            )
        return _finite(_call_blocks(self.second, x, params, self.blocked), "d2ydx2", dtype)

    def vector_jacobian_product(
        self, x: Array, g: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> Array:
        """``g^T J``: the gradient with respect to x of ``sum(g * f(x))``."""
        if self.kind == "elementwise":
            dydx = _call_blocks(self.derivative, x, params, self.blocked)
            with np.errstate(over="ignore"):
                return _finite(g * dydx, "grad_x", dtype)
        assert self.vjp is not None
        ax = self.check_axis(x, axis)
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
        """``{name: dy/dtheta}`` for every parameter, each with y's shape."""
        grads = self._param_grads(x, params, axis)
        return {name: _finite(g, f"dydparams.{name}", dtype) for name, g in grads.items()}

    def parameter_vjp(
        self, x: Array, g: Array, params: Mapping[str, float], axis: int = -1, dtype: DType = np.float64
    ) -> dict[str, float]:
        """``{name: sum(g * dy/dtheta)}``: the update a training loop applies to each parameter."""
        grads = self._param_grads(x, params, axis)
        out = {}
        for name, dy in grads.items():
            with np.errstate(over="ignore"):
                total = np.sum(g * dy, dtype=np.float64)
            out[name] = float(_finite(np.asarray(total), f"grad_params.{name}", dtype))
        return out

    def _param_grads(self, x: Array, params: Mapping[str, float], axis: int) -> dict[str, Array]:
        if self.param_grads is None:
            raise NotSupported("wrt", f"{self.name} has no parameters to differentiate with respect to")
        if self.kind == "elementwise":
            grads: dict[str, Array] = _call_blocks(self.param_grads, x, params, self.blocked)
            return grads
        ax = self.check_axis(x, axis)
        with np.errstate(over="ignore"):
            grads = self.param_grads(np.moveaxis(x, ax, -1), **params)
        return {k: np.moveaxis(np.asarray(v, np.float64), -1, ax) for k, v in grads.items()}

    def output_shape(self, shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
        """The shape of y for an input of ``shape`` (``axis`` already normalised)."""
        if self.output_length is None:
            return shape
        out = list(shape)
        out[axis] = self.output_length(shape[axis])
        return tuple(out)

    def check_axis(self, x: Array, axis: int) -> int:
        """Normalise ``axis`` for ``x``; vector functions need at least one dimension."""
        if x.ndim == 0:
            raise ActivationError("x", f"{self.name} works along an axis; send a list, not a single number")
        if not -x.ndim <= axis < x.ndim:
            raise ActivationError("axis", f"axis {axis} is out of range for x with {x.ndim} dimension(s)")
        ax = axis % x.ndim
        if self.output_length is not None:
            self.output_length(x.shape[ax])
        return ax


#: Elementwise functions run over blocks of this many elements: a compensated
#: evaluation makes a dozen passes over its intermediates, which then stay in
#: cache (128 kB a block) instead of streaming 8 MB arrays through memory.
CHUNK = 16384


def _call(fn: Callable[..., Any], x: Array, params: Mapping[str, float], *extra: Array) -> Any:
    # Overflow of a true result is reported as ResultOverflow by _finite; any
    # other floating-point warning (invalid, divide) stays a bug to be caught.
    with np.errstate(over="ignore"):
        out = fn(x, *extra, **params)
    if isinstance(out, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    return np.asarray(out, dtype=np.float64)


def _call_blocks(fn: Callable[..., Any], x: Array, params: Mapping[str, float], blocked: bool) -> Any:
    """An elementwise ``fn``, block by block when ``blocked``; returns what ``fn`` returns."""
    if x.ndim == 0:
        # A bare number: the functions assign through masks, which NumPy scalars do not
        # support (and scalar arithmetic warns where array arithmetic does not): one element.
        out = _call(fn, x.reshape(1), params)
        if isinstance(out, dict):
            return {k: v.reshape(()) for k, v in out.items()}
        return out.reshape(())
    if not blocked or x.size <= 2 * CHUNK:
        return _call(fn, x, params)
    flat = x.reshape(-1)
    outs: dict[str, Array] = {}
    for start in range(0, flat.size, CHUNK):
        block = _call(fn, flat[start : start + CHUNK], params)
        for key, value in (block if isinstance(block, dict) else {"": block}).items():
            outs.setdefault(key, np.empty(flat.size))[start : start + CHUNK] = value
    shaped = {k: v.reshape(x.shape) for k, v in outs.items()}
    return shaped.get("", shaped)


def _finite(y: Array, name: str, dtype: DType = np.float64) -> Array:
    """``y`` in ``dtype``, or :class:`ResultOverflow` naming the first element that does not fit."""
    if dtype is not np.float64:
        with np.errstate(over="ignore"):
            y = y.astype(dtype)
    index = first_non_finite(y)
    if index is None:
        return y
    where = name + "".join(f"[{i}]" for i in index)
    raise ResultOverflow(where, f"the true result is too large for {np.dtype(dtype).name}")


def first_non_finite(a: Array) -> tuple[int, ...] | None:
    """The index of the first inf or NaN in ``a``, or None when every element is finite."""
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
            "activation", f"unknown activation {name!r}; expected one of: {', '.join(names())}"
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
