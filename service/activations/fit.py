"""Fitting an activation's parameters to samples: least squares with the exact parameter Jacobian.

:func:`fit` minimises Σ (f(xᵢ; θ) - yᵢ)² over the parameters θ named (the rest
held), within each parameter's bounds, by SciPy's trust-region reflective
``least_squares`` with the Jacobian ∂f/∂θ from the registry (never finite
differences).  The residuals and the Jacobian come from the NumPy core (a few
units in the last place): the solver needs them many times, and its answer is
limited by the data, not by the last bit of f.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from .registry import Activation, ActivationError, Array, NotSupported, _call, checkpoint

#: The tolerances handed to least_squares (ftol, xtol, gtol): as tight as float64 allows, so
#: that it stops where the data stop it, not where a default says.
TOLERANCE = 4 * float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Result:
    params: dict[str, Any]
    loss: float  # the mean squared error
    max_abs_error: float
    r2: float | None  # None when y is constant
    iterations: int
    evaluations: int
    converged: bool
    message: str

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "params": self.params,
            "loss": self.loss,
            "max_abs_error": self.max_abs_error,
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "converged": self.converged,
            "message": self.message,
        }
        if self.r2 is not None:
            out["r2"] = self.r2
        return out


def fittable(entry: Activation, names: Sequence[str] | None) -> list[str]:
    """The parameters to fit (all by default), refused for functions without any."""
    if entry.kind != "elementwise":
        raise NotSupported(
            "activation", f"{entry.name} is a vector function; fitting is for elementwise functions"
        )
    declared = [p.name for p in entry.learnable]
    if not declared:
        raise ActivationError("activation", f"{entry.name} has no parameters to fit")
    if names is None:
        return declared
    for k, name in enumerate(names):
        if name not in declared:
            raise ActivationError(
                f"fit[{k}]", f"{entry.name} has no parameter {name!r}; it has: {', '.join(declared)}"
            )
    if len(set(names)) != len(names):
        raise ActivationError("fit", "names a parameter twice")
    if not names:
        raise ActivationError("fit", "names no parameter")
    return list(names)


def _bounds(entry: Activation, names: list[str]) -> tuple[Array, Array]:
    lo, hi = [], []
    for name in names:
        p = next(p for p in entry.params if p.name == name)
        low = -math.inf if p.minimum is None else p.minimum
        if p.exclusive_minimum:
            low = math.nextafter(low, math.inf)
        lo.append(low)
        hi.append(math.inf if p.maximum is None else p.maximum)
    return np.array(lo), np.array(hi)


def fit(
    entry: Activation,
    start: Mapping[str, Any],
    names: list[str],
    x: Array,
    y: Array,
    max_iterations: int,
) -> Result:
    """Least squares from ``start`` (every parameter, bound) over ``names``."""
    # Array parameters (rational's coefficients) are fitted number by number: theta lays every
    # fitted parameter out flat, an array's numbers in order.
    sizes = [len(start[n]) if isinstance(start[n], tuple) else 0 for n in names]
    lo1, hi1 = _bounds(entry, names)
    lo = np.concatenate([np.full(max(k, 1), v) for k, v in zip(sizes, lo1, strict=True)])
    hi = np.concatenate([np.full(max(k, 1), v) for k, v in zip(sizes, hi1, strict=True)])
    flat0 = [v for n in names for v in (start[n] if isinstance(start[n], tuple) else (start[n],))]
    theta0 = np.clip(np.array(flat0, dtype=np.float64), lo, hi)

    def unflat(theta: Array) -> dict[str, Any]:
        out: dict[str, Any] = {}
        at = 0
        for n, k in zip(names, sizes, strict=True):
            out[n] = tuple(float(t) for t in theta[at : at + k]) if k else float(theta[at])
            at += max(k, 1)
        return out

    # The solver works in units of the data (residuals / scale): its tolerances are relative to
    # the cost, which would underflow for data of 1e-200 and overflow for data of 1e160.
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    scale = scale if scale > 0 else 1.0
    penalty = np.full(x.size, 1e10)  # where the parameters break a constraint between them

    def bound(theta: Array) -> dict[str, Any] | None:
        params = dict(start) | unflat(theta)
        try:
            return entry.bind(params)
        except ActivationError:
            return None

    def residuals(theta: Array) -> Array:
        checkpoint()
        params = bound(theta)
        if params is None:
            return penalty
        with np.errstate(all="ignore"):
            r = (np.asarray(_call(entry.forward, x, params)) - y) / scale
        return np.where(np.isfinite(r), r, penalty)

    def jacobian(theta: Array) -> Array:
        params = bound(theta)
        if params is None:
            return np.zeros((x.size, theta.size))
        assert entry.param_grads is not None
        with np.errstate(all="ignore"):
            grads = _call(entry.param_grads, x, params)
        columns = []
        for n, k in zip(names, sizes, strict=True):
            g = np.asarray(grads[n])
            columns += (
                [np.broadcast_to(g[..., j], x.shape) for j in range(k)]
                if k
                else [np.broadcast_to(g, x.shape)]
            )
        with np.errstate(all="ignore"):
            jac = np.stack(columns, axis=1) / scale
        return np.where(np.isfinite(jac), jac, 0.0)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # (a diverging fit overflows inside SciPy's linear algebra: it is reported below, not on stderr)
        warnings.simplefilter("ignore", RuntimeWarning)
        solution = optimize.least_squares(
            residuals,
            theta0,
            jac=jacobian,
            bounds=(lo, hi),
            method="trf",
            ftol=TOLERANCE,
            xtol=TOLERANCE,
            gtol=TOLERANCE,
            max_nfev=max_iterations,
            x_scale="jac",
        )
    params = bound(solution.x)
    if params is None and not np.all(np.isfinite(solution.x)):
        raise ActivationError(
            "params",
            "the fit diverged (a parameter left the float64 range); start nearer the data, or fit fewer "
            "parameters",
        )
    if params is None:  # least_squares keeps within the box; only a constraint can fail here
        raise ActivationError("params", "the fit ended where the parameters break a constraint between them")
    r = residuals(solution.x)  # in units of scale
    if np.any(r == penalty):
        raise ActivationError("y", "the fitted activation is not finite at every x")
    sse = float(np.dot(r, r))
    centred = y / scale - float(np.mean(y / scale))
    sst = float(np.dot(centred, centred))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else None)
    with np.errstate(over="ignore"):
        loss = sse / x.size * scale * scale
    if not math.isfinite(loss):
        raise ActivationError(
            "y", f"the mean squared error ({sse / x.size:.3g} x {scale:.3g}^2) exceeds float64"
        )
    return Result(
        params=params,
        loss=loss,
        max_abs_error=float(np.max(np.abs(r))) * scale,
        r2=r2,
        iterations=int(solution.njev or 0),
        evaluations=int(solution.nfev),
        converged=bool(solution.status > 0),
        message=str(solution.message),
    )
