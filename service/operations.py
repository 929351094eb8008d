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
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import activations, codec
from .activations import Activation, ActivationError, Array
from .problems import RequestError
from .schemas import ActivateRequest, DerivativeRequest

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


def plan_activate(req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    entry, params, x, axis, dtype = _inputs(req, limits, info)
    out = math.prod(entry.output_shape(x.shape, axis))

    def run() -> Payload:
        y = entry.value(x, params, axis, dtype)
        return _envelope(entry, params, axis, req.dtype, y.shape) | {"y": y}

    return Plan(run, x.size + out, _workspace(entry, "value", x.shape, axis), out, req.dtype)


def plan_derivative(req: ActivateRequest, limits: Limits, info: dict[str, Any] | None = None) -> Plan:
    assert isinstance(req, DerivativeRequest)
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
            d2 = entry.second_derivative(x, params, dtype)
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
            count = out * len(entry.params)

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
            len(entry.params),
            req.dtype,
        )

    def vjp() -> Payload:
        grad_x = entry.vector_jacobian_product(x, g, params, axis, dtype)
        return head(grad_x.shape) | {"grad_x": grad_x}

    return Plan(vjp, 2 * x.size + g.size, _workspace(entry, "vjp", shape, axis), x.size, req.dtype)
