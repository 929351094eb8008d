"""The compute operations, free of HTTP: a validated request in, a plan of the work out.

``plan_activate`` and ``plan_derivative`` check what is cheap to check (the
activation, its parameters, the arrays, the axis, the element limits, the
Jacobian limit) and return a :class:`Plan`: the computation still to run and
what it will cost, so that the caller can admit it against the memory budget
and decide whether it runs on the event loop or in a worker thread.  The
dispatch of ``order``, ``wrt`` and ``grad`` lives here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import activations, codec
from .activations import Activation, ActivationError, Array, correct, element, fit, profile
from .problems import RequestError
from .schemas import (
    ActivateRequest,
    CheckRequest,
    DerivativeRequest,
    FitRequest,
    ProfileRequest,
    SimulateRequest,
)

Payload = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the ACTIVATION_MAX_* settings)."""

    max_body_bytes: int
    max_elements: int
    max_jacobian_elements: int


@dataclass(frozen=True)
class Plan:
    """A computation still to run, and its cost."""

    run: Callable[[], Payload]
    #: Elements the core reads and writes: small work runs inline, the rest in a worker thread.
    work: int
    #: Bytes the core holds at its peak, the result included.
    workspace: int
    #: Elements of the result(s), to estimate the encoded reply.
    result_elements: int
    #: The dtype of the result ("float64", "float32").
    dtype: str = "float64"
    #: The cheaper form of the same request, for a 413 that says what to send instead.
    cheaper: str = ""


_DTYPES: dict[str, type[np.float32] | type[np.float64]] = {"float32": np.float32, "float64": np.float64}


def _envelope(
    entry: Activation, params: dict[str, float], axis: int, dtype: str, shape: tuple[int, ...]
) -> Payload:
    payload: Payload = {"activation": entry.name, "params": params, "dtype": dtype, "shape": list(shape)}
    if entry.kind == "vector":
        payload["axis"] = axis
    return payload


def _inputs(
    req: ActivateRequest, limits: Limits, info: dict[str, Any] | None
) -> tuple[Activation, dict[str, float], Array, int, type]:
    """The activation, its bound parameters, x as float64, the axis and the dtype of a request.

    ``info`` (the access log's record of the request) gets the activation and the element count.
    """
    entry = activations.get(req.activation)
    if info is not None:
        info["activation"] = entry.name
    params = entry.bind(req.params)
    if req.dtype in correct.SIXTEEN_BIT:
        # (vector functions: the elementwise ones take _plan_sixteen_bit)
        fmt = correct.FORMATS[req.dtype]
        dtype = fmt.numpy
        x = _rounded_input(req.x, "x", fmt, limits)
    else:
        dtype = _DTYPES[req.dtype]
        x = codec.to_array(req.x, "x", dtype)
    if x.size > limits.max_elements:
        raise codec.too_many("x", x.size, limits.max_elements)
    if info is not None:
        info["elements"] = int(x.size)
    axis = entry.check_axis(x, req.axis) if entry.kind == "vector" else req.axis
    return entry, params, x, axis, dtype


def _workspace(entry: Activation, quantity: str, shape: tuple[int, ...], axis: int) -> int:
    return int(entry.workspace_bytes(quantity, shape, axis))


def _rounded_input(value: Any, field: str, fmt: correct.Format, limits: Limits) -> Array:
    """x or grad rounded to a 16-bit format (as float64 values), refused beyond its range."""
    arr = codec.to_array(value, field, np.float64)
    if arr.size > limits.max_elements:
        raise codec.too_many(field, arr.size, limits.max_elements)
    rounded = correct.round_to(arr, fmt)
    index = activations.first_non_finite(rounded)
    if index is not None:
        raise ActivationError(element(field, index), f"is beyond the {fmt.name} range (+-{fmt.max:.4g})")
    return rounded


def _plan_sixteen_bit(
    req: ActivateRequest, limits: Limits, info: dict[str, Any] | None, derivative: bool
) -> Plan:
    """A request in float16 or bfloat16: every result correctly rounded from the exact definitions
    (:mod:`service.activations.correct`), elementwise functions only."""
    entry = activations.get(req.activation)
    if info is not None:
        info["activation"] = entry.name
    params = entry.bind(req.params)
    fmt = correct.FORMATS[req.dtype]
    correct.function_of(entry, "value")  # vector functions: 422 before any work
    x = _rounded_input(req.x, "x", fmt, limits)
    if info is not None:
        info["elements"] = int(x.size)

    def wire(y: Array, field: str) -> Array:
        # float16 as itself; bfloat16 as float32 (exactly the same numbers: JSON and .npy know float32).
        correct.check_finite(y, field, fmt)
        return y.astype(np.float16 if fmt.name == "float16" else np.float32)

    def head(shape: tuple[int, ...]) -> Payload:
        return _envelope(entry, params, req.axis, req.dtype, shape)

    if not derivative:

        def value() -> Payload:
            return head(x.shape) | {"y": wire(correct.sixteen_bit(entry, "value", x, params, fmt), "y")}

        return _exact_plan(value, x.size, x.size, req.dtype)
    assert isinstance(req, DerivativeRequest)
    if req.order == 2 and (req.grad is not None or req.wrt == "params"):
        what = "grad" if req.grad is not None else "order"
        raise ActivationError(what, "order 2 is the second derivative with respect to x, without grad")
    if req.wrt == "params" and not entry.learnable:
        entry.parameter_jacobian(x, params, -1)  # the core's refusal, worded as for other dtypes
    g = _rounded_input(req.grad, "grad", fmt, limits) if req.grad is not None else None
    if g is not None and g.shape != x.shape:
        raise ActivationError("grad", f"has shape {list(g.shape)}; it must have x's shape {list(x.shape)}")
    if req.order == 2:

        def second() -> Payload:
            d2 = correct.sixteen_bit(entry, "second_derivative", x, params, fmt)
            return head(x.shape) | {"d2ydx2": wire(d2, "d2ydx2")}

        return _exact_plan(second, x.size, x.size, req.dtype)
    if req.wrt == "params":
        if g is None:

            def parameter_jacobian() -> Payload:
                grads = {}
                for p in entry.learnable:
                    parts = [
                        correct.sixteen_bit(entry, "value", x, params, fmt, c)
                        for c in p.components(params[p.name])
                    ]
                    # an array parameter: x's shape and one more axis, the parameter's
                    both = np.stack(parts, axis=-1) if isinstance(params[p.name], tuple) else parts[0]
                    grads[p.name] = wire(both, "dydparams")
                return head(x.shape) | {"dydparams": grads}

            return _exact_plan(parameter_jacobian, x.size * entry.derivative_count(), x.size, req.dtype)
        gx = g

        def parameter_vjp() -> Payload:
            sums: dict[str, Any] = {}
            for p in entry.learnable:
                totals = []
                for c in p.components(params[p.name]):
                    total = correct.summed(entry, c, x, gx, params, fmt)
                    if not np.isfinite(total):
                        raise activations.ResultOverflow(f"grad_params.{c}", f"exceeds the {fmt.name} range")
                    totals.append(total)
                sums[p.name] = totals if isinstance(params[p.name], tuple) else totals[0]
            return head(()) | {"grad_params": sums}

        return _exact_plan(parameter_vjp, entry.derivative_count(), 2 * x.size, req.dtype)
    if g is None:

        def first() -> Payload:
            return head(x.shape) | {
                "dydx": wire(correct.sixteen_bit(entry, "derivative", x, params, fmt), "dydx")
            }

        return _exact_plan(first, x.size, x.size, req.dtype)
    gy = g

    def vjp() -> Payload:
        return head(x.shape) | {
            "grad_x": wire(correct.scaled(entry, "derivative", x, gy, params, fmt), "grad_x")
        }

    return _exact_plan(vjp, x.size, 2 * x.size, req.dtype)


#: Bytes an element of the exact route holds: its input, the distinct inputs and the map back, the result.
_EXACT_BYTES_PER_ELEMENT = 48


def _exact_plan(run: Callable[[], Payload], result_elements: int, elements: int, dtype: str) -> Plan:
    # Far more work an element than the NumPy core: never on the event loop.
    return Plan(run, 1 << 30, _EXACT_BYTES_PER_ELEMENT * elements, result_elements, dtype)


#: The correctly rounded route costs this many times the work of a plain NumPy pass an element
#: (bounded long double evaluation, and the exact route for a few elements): a plan is weighed
#: accordingly, so that only small ones (up to a few hundred elements) run on the event loop.
FAST_WORK_FACTOR = 64


def _weighed(plan: Plan, req: ActivateRequest) -> Plan:
    entry = activations.get(req.activation)
    if entry.fast is None or _sixteen_bit_elementwise(req):
        return plan
    plan = replace(plan, work=plan.work * FAST_WORK_FACTOR)
    if req.dtype != "bfloat16":
        return plan
    run = plan.run

    def wire() -> Payload:
        # bfloat16 results travel as the same numbers in float32 (which JSON and .npy know).
        return {k: _as_float32(v) for k, v in run().items()}

    return replace(plan, run=wire)


def _as_float32(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_float32(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype == correct.FORMATS["bfloat16"].numpy:
        return value.astype(np.float32)
    return value


def plan_activate(req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    return _weighed(_plan_activate(req, limits, info), req)


def plan_derivative(req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    return _weighed(_plan_derivative(req, limits, info), req)


def _sixteen_bit_elementwise(req: ActivateRequest) -> bool:
    """Whether a request takes :func:`_plan_sixteen_bit`: an elementwise function in a 16-bit format,
    without per-channel parameters (those go the core's way, channel by channel)."""
    if req.dtype not in correct.SIXTEEN_BIT:
        return False
    entry = activations.get(req.activation)
    if entry.kind != "elementwise":
        return False
    given = req.params or {}
    return not any(p.channels and isinstance(given.get(p.name), list | tuple) for p in entry.params)


def _plan_activate(req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    if _sixteen_bit_elementwise(req):
        return _plan_sixteen_bit(req, limits, info, derivative=False)
    entry, params, x, axis, dtype = _inputs(req, limits, info)
    out = math.prod(entry.output_shape(x.shape, axis))

    def run() -> Payload:
        y = entry.value(x, params, axis, dtype)
        return _envelope(entry, params, axis, req.dtype, y.shape) | {"y": y}

    return Plan(run, x.size + out, _workspace(entry, "value", x.shape, axis), out, req.dtype)


def _plan_derivative(req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    assert isinstance(req, DerivativeRequest)
    if _sixteen_bit_elementwise(req):
        return _plan_sixteen_bit(req, limits, info, derivative=True)
    entry, params, x, axis, dtype = _inputs(req, limits, info)
    shape = x.shape

    def head(result_shape: tuple[int, ...]) -> Payload:
        return _envelope(entry, params, axis, req.dtype, result_shape)

    if req.order == 2:
        if req.grad is not None:
            raise ActivationError("grad", "applies to first derivatives; leave it out with order 2")
        if req.wrt == "params":
            raise ActivationError(
                "order", "second derivatives are taken with respect to x; use order 1 with wrt=params"
            )
        if entry.second is None:
            entry.second_derivative(x, params, dtype)  # refuses it before any work

        def second() -> Payload:
            d2 = entry.second_derivative(x, params, dtype, axis)
            return head(d2.shape) | {"d2ydx2": d2}

        return Plan(
            second, 2 * x.size, _workspace(entry, "second_derivative", shape, axis), x.size, req.dtype
        )
    out_shape = entry.output_shape(shape, axis)
    out = math.prod(out_shape)
    if req.grad is None:
        if req.wrt == "params":
            if entry.param_grads is None:
                entry.parameter_jacobian(x, params, axis, dtype)  # refuses it before any work
            count = out * entry.derivative_count()

            def parameter_jacobian() -> Payload:
                grads = entry.parameter_jacobian(x, params, axis, dtype)
                return head(out_shape) | {"dydparams": grads}

            return Plan(
                parameter_jacobian,
                x.size + count,
                _workspace(entry, "parameter_jacobian", shape, axis),
                count,
                req.dtype,
                "send grad to get the summed gradients grad_params instead",
            )
        size = out * shape[axis] if entry.kind == "vector" else out
        if entry.kind == "vector" and size > limits.max_jacobian_elements:
            raise RequestError.one(
                413,
                "x",
                f"the Jacobian would have {size} elements; the limit is {limits.max_jacobian_elements} "
                "(ACTIVATION_MAX_JACOBIAN_ELEMENTS): send grad to get the vector-Jacobian product instead",
            )
        quantity = "jacobian" if entry.kind == "vector" else "derivative"

        def jacobian() -> Payload:
            dydx = entry.jacobian(x, params, axis, dtype)
            return head(dydx.shape) | {"dydx": dydx}

        cheaper = "send grad to get the vector-Jacobian product instead" if entry.kind == "vector" else ""
        return Plan(
            jacobian, x.size + size, _workspace(entry, quantity, shape, axis), size, req.dtype, cheaper
        )
    if req.dtype in correct.SIXTEEN_BIT:
        g = _rounded_input(req.grad, "grad", correct.FORMATS[req.dtype], limits)
    else:
        g = codec.to_array(req.grad, "grad", dtype)
    if g.shape != out_shape:
        whose = "x's shape" if out_shape == shape else "the shape of y"
        raise ActivationError("grad", f"has shape {list(g.shape)}; it must have {whose} {list(out_shape)}")
    if req.wrt == "params":
        if entry.param_grads is None:
            entry.parameter_vjp(x, g, params, axis, dtype)  # refuses it before any work

        def parameter_vjp() -> Payload:
            return head(()) | {"grad_params": entry.parameter_vjp(x, g, params, axis, dtype)}

        return Plan(
            parameter_vjp,
            x.size + g.size,
            _workspace(entry, "parameter_vjp", shape, axis),
            entry.derivative_count(),
            req.dtype,
        )

    def vjp() -> Payload:
        grad_x = entry.vector_jacobian_product(x, g, params, axis, dtype)
        return head(grad_x.shape) | {"grad_x": grad_x}

    return Plan(vjp, 2 * x.size + g.size, _workspace(entry, "vjp", shape, axis), x.size, req.dtype)


# -- checking another implementation ----------------------------------------------------------

#: Elements a float64 or float32 check may hold: each is worked out on its own (a 16-bit check is
#: bounded by its distinct inputs instead, at most 65,536).
CHECK_MAX_ELEMENTS = 100_000
#: Upper bounds of the histogram's bins, in ULPs; the last two bins are "larger" and "non_finite".
CHECK_BINS = (0.0, 0.5, 1.0, 2.0, 4.0, 16.0, 256.0)
CHECK_WORST = 20


def _values_of(value: Any, field: str, fmt: correct.Format, limit: int, results: bool = False) -> Array:
    """x or y of a check: numbers of the format (not rounded to it: they are what was computed).

    ``results``: the numbers under test, which may be non-finite in an .npz body (they are
    counted as such, not refused).
    """
    if results and isinstance(value, np.ndarray):
        arr = value.astype(np.float64, copy=False)
    else:
        arr = codec.to_array(value, field, np.float64)
    if arr.size > limit:
        reason = f"holds {arr.size} numbers; a {fmt.name} check takes at most {limit}"
        raise RequestError.one(413, field, reason + " (send it in parts)")
    with np.errstate(invalid="ignore"):
        off = np.flatnonzero(np.isfinite(arr) & (correct.round_to(arr, fmt) != arr))
    if off.size:
        where = element(field, np.unravel_index(int(off[0]), arr.shape))
        raise ActivationError(where, f"{float(arr.flat[off[0]])!r} is not a {fmt.name} number")
    return arr


def _mean(errors: Array) -> float:
    """The mean of errors that may each be as large as float64 allows (summed in long double)."""
    if not errors.size:
        return 0.0
    return float(min(np.mean(errors.astype(np.longdouble)), np.finfo(np.float64).max))


def plan_check(req: Any, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    """Compare y, another implementation's results at x, with the correctly rounded ones."""
    assert isinstance(req, CheckRequest)
    entry = activations.get(req.activation)
    if info is not None:
        info["activation"] = entry.name
    params = entry.bind(req.params, per_channel=False)
    fmt = correct.FORMATS[req.dtype]
    correct.function_of(entry, req.quantity)  # vector functions: 422 before any work
    limit = (
        limits.max_elements
        if fmt.name in correct.SIXTEEN_BIT
        else min(CHECK_MAX_ELEMENTS, limits.max_elements)
    )
    x = _values_of(req.x, "x", fmt, limit)
    y = _values_of(req.y, "y", fmt, limit, results=True)
    if y.shape != x.shape:
        raise ActivationError("y", f"has shape {list(y.shape)}; it must have x's shape {list(x.shape)}")
    if info is not None:
        info["elements"] = int(x.size)

    def run() -> Payload:
        if fmt.name in correct.SIXTEEN_BIT:
            right = correct.sixteen_bit(entry, req.quantity, x, params, fmt)
        else:
            right = correct.elementwise(entry, req.quantity, x, params, fmt)
        over = activations.first_non_finite(right)
        if over is not None:
            raise ActivationError(
                element("x", over),
                f"the true result exceeds the {fmt.name} range: no finite y is right there; leave it out",
            )
        given = np.isfinite(y)
        with np.errstate(invalid="ignore"):
            errors = np.where(given, correct.ulp_error(np.where(given, y, 0.0), right, fmt), 0.0)
        finite_errors = errors[given]
        bins = np.searchsorted(np.array(CHECK_BINS), finite_errors, side="left")
        counts = np.bincount(bins, minlength=len(CHECK_BINS) + 1)
        labels = [f"{b:g}" for b in CHECK_BINS] + ["larger"]
        histogram = {label: int(n) for label, n in zip(labels, counts, strict=True)}
        histogram["non_finite"] = int(y.size - finite_errors.size)
        order = np.argsort(-errors.ravel(), kind="stable")[:CHECK_WORST]
        worst = [
            {
                "index": [int(i) for i in np.unravel_index(int(k), x.shape)],
                "x": float(x.flat[k]),
                "y": float(y.flat[k]),
                "correct": float(right.flat[k]),
                "ulp": float(errors.flat[k]),
            }
            for k in order
            if errors.flat[k] > 0
        ]
        return {
            "activation": entry.name,
            "params": params,
            "quantity": req.quantity,
            "dtype": req.dtype,
            "count": int(x.size),
            "correctly_rounded": int(np.count_nonzero(finite_errors == 0)),
            # Over the finite results (the non-finite ones are counted in the histogram).
            "max_ulp": float(finite_errors.max()) if finite_errors.size else 0.0,
            "mean_ulp": _mean(finite_errors),
            "histogram": histogram,
            "worst": worst,
        }

    return _exact_plan(run, CHECK_WORST * 5, 4 * x.size, req.dtype)


# -- profiles and simulated networks (service.activations.profile) ----------------------------------

#: A profile integrates on at most 4096 adaptive panels and scans a grid for the dead and saturated
#: sets: 13 MiB at most over the catalog's functions at extreme means and widths (tracemalloc).
PROFILE_WORKSPACE = 32 << 20
#: width * batch * depth (values and derivatives through the correctly rounded core), and
#: width^2 * batch * depth (the products with the weights): the bounds of one simulation's time.
SIMULATE_MAX_UNITS = 1 << 20
SIMULATE_MAX_PRODUCTS = 1 << 31
#: width^2 * depth: the weights drawn (twice: forward, and again for the backward pass).
SIMULATE_MAX_WEIGHTS = 1 << 25


def _profiled(req: Any, info: dict[str, Any] | None) -> tuple[Activation, dict[str, float], profile.Profile]:
    entry = activations.get(req.activation)
    if info is not None:
        info["activation"] = entry.name
    params = entry.bind(req.params, per_channel=False)
    return entry, params, profile.Profile(entry, params)


def plan_profile(req: Any, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    """Moments of f and f' under a Gaussian, the gain, and with sigma_w the mean-field quantities."""
    assert isinstance(req, ProfileRequest)
    entry, params, prof = _profiled(req, info)
    if req.depth is not None and req.sigma_w is None:
        raise ActivationError("depth", "is the depth of a network: it needs sigma_w (and sigma_b)")

    def run() -> Payload:
        out: Payload = {
            "activation": entry.name,
            "params": params,
            "mean": req.mean,
            "std": req.std,
            "moments": prof.moments(req.mean, req.std),
            "gain": profile.gain(prof),
        }
        if req.sigma_w is not None:
            out["mean_field"] = profile.mean_field(prof, req.sigma_w, req.sigma_b, req.depth)
        return out

    return Plan(run, 1 << 30, PROFILE_WORKSPACE, 32)  # never on the event loop


def plan_simulate(req: Any, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    """A random network run forward and backward with the service's own f and f'."""
    assert isinstance(req, SimulateRequest)
    entry, params, prof = _profiled(req, info)
    units = req.width * req.batch * req.depth
    if units > SIMULATE_MAX_UNITS:
        raise RequestError.one(
            413,
            "width",
            f"width * batch * depth = {units} units; the limit is {SIMULATE_MAX_UNITS}: "
            "fewer layers, a smaller batch or narrower layers",
        )
    if units * req.width > SIMULATE_MAX_PRODUCTS:
        raise RequestError.one(
            413,
            "width",
            f"width^2 * batch * depth = {units * req.width} multiply-adds; the limit is "
            f"{SIMULATE_MAX_PRODUCTS}: fewer layers, a smaller batch or narrower layers",
        )
    weights = req.width * req.width * req.depth
    if weights > SIMULATE_MAX_WEIGHTS:
        raise RequestError.one(
            413,
            "width",
            f"width^2 * depth = {weights} weights; the limit is {SIMULATE_MAX_WEIGHTS}: fewer or narrower layers",
        )
    if (req.init == "explicit") != (req.sigma_w is not None):
        raise ActivationError(
            "sigma_w",
            "is required with init 'explicit'"
            if req.sigma_w is None
            else f"is set by init {req.init!r}; send init 'explicit' to give it",
        )
    if info is not None:
        info["elements"] = units

    def run() -> Payload:
        if req.sigma_w is not None:
            sigma_w = req.sigma_w
        elif req.init == "critical":
            critical = prof.critical_sigma_w(req.sigma_b)
            if critical is None:
                raise ActivationError(
                    "init",
                    f"{entry.name} has no edge of chaos at sigma_b = {req.sigma_b:g} (chi1 does not reach 1): "
                    "choose another init",
                )
            sigma_w = critical
        else:
            sigma_w = math.sqrt(profile.INITS[req.init])
        net = profile.Network(req.width, req.depth, req.batch, sigma_w, req.sigma_b, req.seed)
        result = profile.simulate(
            prof,
            net,
            value=lambda h: entry.value(h, params),
            derivative=lambda h: entry.jacobian(h, params),
        )
        return {
            "activation": entry.name,
            "params": params,
            "width": req.width,
            "depth": req.depth,
            "batch": req.batch,
            "init": req.init,
            "sigma_w": sigma_w,
            "sigma_b": req.sigma_b,
            "seed": req.seed,
            **result,
        }

    # The slopes of every layer are kept for the backward pass; one weight matrix at a time.
    workspace = 8 * (2 * units + 3 * req.width * req.width + 6 * req.batch * req.width)
    return Plan(run, 1 << 30, workspace + _EXACT_BYTES_PER_ELEMENT * req.batch * req.width, 8 * req.depth)


# -- fitting (service.activations.fit) ---------------------------------------------------------------

#: Sample points of one fit, and points * max_iterations (each evaluation is a pass of the
#: NumPy core over the points, with the parameter Jacobian on about one in two).
FIT_MAX_POINTS = 100_000
FIT_MAX_WORK = 50_000_000


def plan_fit(req: Any, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    """Least squares for an activation's parameters, from samples or a target activation."""
    assert isinstance(req, FitRequest)
    entry = activations.get(req.activation)
    if info is not None:
        info["activation"] = entry.name
    names = fit.fittable(entry, req.fit)
    start = entry.bind(req.params, per_channel=False)
    limit = min(FIT_MAX_POINTS, limits.max_elements)
    x = codec.to_array(req.x, "x", np.float64).ravel()
    if x.size > limit:
        raise RequestError.one(413, "x", f"has {x.size} points; a fit takes at most {limit}")
    if (req.y is None) == (req.target is None):
        raise ActivationError(
            "y",
            "send either y (the target values) or target (an activation), not both"
            if req.y is not None
            else "send y (the target values at x) or target (an activation)",
        )
    if x.size * req.max_iterations > FIT_MAX_WORK:
        raise RequestError.one(
            413,
            "max_iterations",
            f"points * max_iterations = {x.size * req.max_iterations}; the limit is {FIT_MAX_WORK}: "
            "fewer points or iterations",
        )
    if req.y is not None:
        y = codec.to_array(req.y, "y", np.float64)
        if y.size != x.size:
            raise ActivationError("y", f"has {y.size} values; x has {x.size} points")
        y = y.ravel()
    if info is not None:
        info["elements"] = int(x.size)

    if req.target is not None:
        target = activations.get(req.target.activation)
        if target.kind != "elementwise":
            raise activations.NotSupported(
                "target.activation", f"{target.name} is a vector function; targets are elementwise"
            )
        try:
            target_params = target.bind(req.target.params, per_channel=False)
        except ActivationError as exc:
            raise ActivationError(f"target.{exc.field}", exc.reason) from None

    def run() -> Payload:
        if req.target is not None:
            try:
                values = target.value(x, target_params)
            except ActivationError as exc:
                raise ActivationError(f"target: {exc.field}", exc.reason) from None
        else:
            values = y
        result = fit.fit(entry, start, names, x, values, req.max_iterations)
        return {
            "activation": entry.name,
            "initial_params": start,
            "fitted": names,
            "points": int(x.size),
            **result.payload(),
        }

    return Plan(run, 1 << 30, 8 * x.size * (6 + 2 * len(names)), 16 + len(names))
