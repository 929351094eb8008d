"""Accuracy of every activation against the 50-digit mpmath reference.

Used by the test suite, and runnable to print the table in the README:

    python -m tests.accuracy

Error measure: relative error where the true result is a normal float64;
where it is subnormal or zero, the absolute error must stay below the smallest
normal float (a result that underflows may flush to zero).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import mpmath as mp
import numpy as np

from service import activations
from tests import reference

TINY = float(np.finfo(np.float64).tiny)
HUGE = float(np.finfo(np.float64).max)
#: The target of the service: about 4.5 units in the last place.
REL_TOL = 1e-15


def stress_grid() -> np.ndarray:
    """The points every elementwise function is checked at."""
    named = [1e-300, 1e-8, 1.0, 20.0, 30.0, 40.0, 700.0, 1e4, 1e300]
    extremes = [5e-324, TINY, HUGE, 0.5, 2.0]
    magnitudes = list(np.logspace(-307, 308, 300))
    dense = np.linspace(-50.0, 50.0, 2001)
    positive = named + extremes + magnitudes
    grid = np.concatenate([dense, positive, [-v for v in positive], [0.0]])
    return np.unique(grid)


def relative_error(computed: float, exact: mp.mpf) -> float:
    """Relative error; 0 when both are below the normal range (flush allowed)."""
    if abs(exact) < TINY:
        return 0.0 if abs(mp.mpf(computed) - exact) < TINY else float("inf")
    return float(abs((mp.mpf(computed) - exact) / exact))


@dataclass
class Worst:
    error: float = 0.0
    at: object = None

    def update(self, error: float, at: object) -> None:
        if error > self.error or self.at is None:
            self.error, self.at = error, at


def elementwise_errors(name: str, xs: Iterable[float]) -> dict[str, Worst]:
    """Worst relative error of the value and the derivative over ``xs``."""
    entry = activations.get(name)
    ref = reference.ELEMENTWISE[name]
    params = entry.bind()
    x = np.asarray(list(xs), dtype=np.float64)
    computed = {"value": entry.value(x, params), "d1": entry.jacobian(x, params)}
    exact: dict[str, Callable[..., mp.mpf]] = {"value": ref.value, "d1": ref.d1}
    worst = {key: Worst() for key in computed}
    for i, xi in enumerate(x):
        for key, values in computed.items():
            true = exact[key](mp.mpf(float(xi)), **params)
            worst[key].update(relative_error(float(values[i]), true), float(xi))
    return worst


def softmax_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(20261122)
    cases = [10.0 * rng.standard_normal(50) for _ in range(12)]
    cases += [100.0 * rng.standard_normal(8) for _ in range(4)]
    cases += [
        np.array(v, dtype=np.float64)
        for v in (
            [1.0, 2.0, 3.0],
            [40.0, 0.0],
            [1000.0, 1000.0],
            [700.0, -700.0, 0.0],
            [-1e308, 1e308],
            [1e-300, -1e-300, 0.0],
            [0.0] * 5,
            [5.0],
        )
    ]
    return cases


def vector_errors(name: str, cases: Sequence[np.ndarray]) -> dict[str, Worst]:
    """Worst errors of a vector function: value, Jacobian, and the VJP.

    The VJP's component j is a sum of terms s_j s_i (g_j - g_i) of both signs;
    its error is measured relative to the sum of their magnitudes, except for
    the dominant component, which must keep full relative accuracy.
    """
    entry = activations.get(name)
    value_ref, jac_ref, vjp_ref = reference.VECTOR[name]
    params = entry.bind()
    rng = np.random.default_rng(7)
    worst = {key: Worst() for key in ("value", "jacobian", "vjp", "vjp_dominant")}
    for x in cases:
        label = f"{x[:3].tolist()}... (n={x.size})"
        s_true = value_ref(x)
        for got, true in zip(entry.value(x, params), s_true, strict=True):
            worst["value"].update(relative_error(float(got), true), label)
        jac = entry.jacobian(x, params)
        for row_got, row_true in zip(jac, jac_ref(x), strict=True):
            for got, true in zip(row_got, row_true, strict=True):
                worst["jacobian"].update(relative_error(float(got), true), label)
        g = rng.standard_normal(x.size)
        vjp = entry.vector_jacobian_product(x, g, params)
        k = int(np.argmax(entry.value(x, params)))
        for j, true in enumerate(vjp_ref(x, g)):
            scale = s_true[j] * mp.fsum(
                s * abs(mp.mpf(g[j]) - mp.mpf(gi)) for s, gi in zip(s_true, g, strict=True)
            )
            if scale >= TINY:
                worst["vjp"].update(float(abs(mp.mpf(vjp[j]) - true) / scale), label)
            if j == k:
                worst["vjp_dominant"].update(relative_error(float(vjp[j]), true), label)
    return worst


def table() -> list[tuple[str, str, float, object]]:
    rows = []
    grid = stress_grid()
    for entry in activations.entries():
        if entry.kind == "elementwise":
            worst = elementwise_errors(entry.name, grid)
        else:
            worst = vector_errors(entry.name, softmax_cases())
        for key, w in worst.items():
            rows.append((entry.name, key, w.error, w.at))
    return rows


def main() -> int:
    print(f"{'activation':<12} {'quantity':<13} {'max rel. error':>15} {'ULP':>6}  worst at")
    failed = False
    for name, key, error, at in table():
        flag = "" if error <= REL_TOL else "  > 1e-15"
        failed |= bool(flag)
        print(f"{name:<12} {key:<13} {error:15.2e} {error / 2.220446049250313e-16:6.2f}  {at}{flag}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
