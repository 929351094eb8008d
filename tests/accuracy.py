"""Accuracy of every activation against the 50-digit mpmath reference.

Used by the test suite, and runnable to print the table in the README:

    python -m tests.accuracy

Scores (a score <= 1 passes):
- float64: relative error / 1e-15 (about 4.5 eps) where the true result is a
  normal float; below the normal range the absolute error must stay below
  the smallest normal (flushing to zero is allowed).
- float32: error in units of the float32 spacing at the true value.
- Near a sign change of the quantity away from x = 0 (|true| < 0.05 and the
  sign differs 0.1 max(1, |x|) to either side) the absolute error may instead
  be up to 1e-16 max(1, |x|); decaying tails such as sigmoid'(40) keep the
  relative bound.
- Vector-Jacobian products: error relative to sum_i |g_i J_ij|, the size of
  the terms summed (the dominant softmax component also relative to itself).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import mpmath as mp
import numpy as np

from service import activations
from tests import reference

TINY = float(np.finfo(np.float64).tiny)
HUGE = float(np.finfo(np.float64).max)
TINY32 = float(np.finfo(np.float32).tiny)
HUGE32 = float(np.finfo(np.float32).max)
EPS = float(np.finfo(np.float64).eps)
#: The float64 target: about 4.5 units in the last place.
REL_TOL = 1e-15

#: A second parameter set per function, checked on the dense part of the grid.
ALT_PARAMS: Mapping[str, Mapping[str, float]] = {
    "leaky_relu": {"negative_slope": 0.2},
    "hard_tanh": {"min_val": -2.0, "max_val": 3.0},
    "softshrink": {"lambda": 1.5},
    "hardshrink": {"lambda": 1.5},
    "threshold": {"threshold": 1.0, "value": -2.0},
    "prelu": {"weight": -0.5},
    "rrelu": {"lower": 0.1, "upper": 0.9},
    "elu": {"alpha": 0.5},
    "celu": {"alpha": 2.5},
    "silu": {"beta": 1.7},
    "softplus": {"beta": 3.0},
    "squareplus": {"b": 0.5},
    "softmax": {"temperature": 0.7},
    "log_softmax": {"temperature": 3.0},
    "softmin": {"temperature": 0.5},
}
ABSOLUTE_NEAR_ZERO = {"sparsemax"}


def stress_grid(dtype: type = np.float64) -> np.ndarray:
    """The points every elementwise function is checked at."""
    info = np.finfo(dtype)
    named = [1e-300, 1e-8, 1.0, 20.0, 30.0, 40.0, 700.0, 1e4, 1e300]
    extremes = [float(info.smallest_subnormal), float(info.tiny), float(info.max), 0.5, 2.0]
    magnitudes = list(np.logspace(np.log10(float(info.tiny)), np.floor(np.log10(float(info.max))), 300))
    dense = list(np.linspace(-50.0, 50.0, 2001))
    positive = [v for v in named + extremes + magnitudes if v <= float(info.max)]
    grid = np.array(dense + positive + [-v for v in positive] + [0.0], dtype=np.float64)
    return np.unique(grid.astype(dtype)).astype(np.float64)


def dense_grid() -> np.ndarray:
    return np.linspace(-50.0, 50.0, 2001)


@dataclass
class Worst:
    score: float = 0.0
    at: object = None
    points: int = 0

    def update(self, score: float, at: object) -> None:
        self.points += 1
        if score > self.score or self.at is None:
            self.score, self.at = score, at


def spacing32(value: mp.mpf) -> float:
    """The gap between float32 numbers at ``value`` (2**-149 among subnormals)."""
    exponent = math.frexp(min(abs(float(value)), HUGE32))[1]
    return max(2.0 ** (exponent - 24), 2.0**-149)


def _near_sign_change(fn: Callable[[mp.mpf], mp.mpf], x: float) -> bool:
    delta = 0.1 * max(1.0, abs(x))
    if x - delta <= 0.0 <= x + delta:
        return False
    return bool(mp.sign(fn(mp.mpf(x - delta))) != mp.sign(fn(mp.mpf(x + delta))))


def score(
    computed: float,
    exact: mp.mpf,
    dtype: type,
    x: float = 0.0,
    sign_change: Callable[[], bool] = lambda: False,
) -> float:
    """Error of ``computed`` as a fraction of what the target allows (<= 1 passes)."""
    err = abs(mp.mpf(float(computed)) - exact)
    if dtype is np.float32:
        value = float(err / spacing32(exact))
    elif abs(exact) < TINY:
        value = 0.0 if err < TINY else float("inf")
    else:
        value = float(err / abs(exact)) / REL_TOL
    if value > 1.0 and abs(exact) < 0.05 and sign_change():
        value = min(value, float(err) / (1e-16 * max(1.0, abs(x))))
    return value


def elementwise_scores(
    name: str, xs: Iterable[float], params: Mapping[str, float] | None = None, dtype: type = np.float64
) -> dict[str, Worst]:
    """Worst score of the value, f' and f'' over ``xs`` (rounded to ``dtype`` first)."""
    entry = activations.get(name)
    ref = reference.ELEMENTWISE[name]
    bound = entry.bind(params)
    exact_fns = {"value": ref.value, "d1": ref.d1, "d2": ref.d2}
    limit = float(np.finfo(dtype).max)
    points, exact = [], []
    for xi in np.asarray(list(xs), dtype=dtype).astype(np.float64):
        true = {key: fn(mp.mpf(float(xi)), **bound) for key, fn in exact_fns.items()}
        # Results beyond the dtype's range are refused with a 422 (tested elsewhere).
        if all(abs(v) <= limit for v in true.values()):
            points.append(float(xi))
            exact.append(true)
    x = np.array(points)
    computed = {
        "value": entry.value(x, bound, dtype=dtype),
        "d1": entry.jacobian(x, bound, dtype=dtype),
        "d2": entry.second_derivative(x, bound, dtype=dtype),
    }
    worst = {key: Worst() for key in computed}
    for i, xf in enumerate(points):
        for key, values in computed.items():
            fn = exact_fns[key]
            s = score(
                values[i],
                exact[i][key],
                dtype,
                xf,
                lambda fn=fn, xf=xf: _near_sign_change(lambda t: fn(t, **bound), xf),  # type: ignore[misc]
            )
            worst[key].update(s, xf)
    return worst


def vector_cases(name: str) -> list[np.ndarray]:
    rng = np.random.default_rng(20261122)
    cases = [10.0 * rng.standard_normal(50) for _ in range(6)]
    cases += [100.0 * rng.standard_normal(8) for _ in range(4)]
    cases += [rng.standard_normal(6) for _ in range(4)]
    cases += [
        np.array(v, dtype=np.float64)
        for v in (
            [1.0, 2.0, 3.0, 0.5],
            [40.0, 0.0],
            [1000.0, 1000.0],
            [700.0, -700.0, 0.0, 1.0],
            [-1e308, 1e308],
            [1e-300, -1e-300, 0.0, 5e-324],
            [0.0] * 6,
            [5.0, 5.0, 5.0],
            [0.5, 0.25, 0.0],
        )
    ]
    if name == "glu":
        cases = [c for c in cases if c.size % 2 == 0]
    return cases


def vector_scores(
    name: str,
    cases: Sequence[np.ndarray],
    params: Mapping[str, float] | None = None,
    dtype: type = np.float64,
) -> dict[str, Worst]:
    """Worst scores of a vector function: value, Jacobian and vector-Jacobian product."""
    entry = activations.get(name)
    ref = reference.VECTOR[name]
    bound = entry.bind(params)
    rng = np.random.default_rng(7)
    worst = {key: Worst() for key in ("value", "jacobian", "vjp", "vjp_dominant")}
    limit = float(np.finfo(dtype).max)
    for x in cases:
        if np.max(np.abs(x)) > limit:
            continue
        x = x.astype(dtype).astype(np.float64)
        label = "[" + ", ".join(f"{v:.3g}" for v in x[:3]) + f", ...] (n={x.size})"
        big = max(1.0, float(np.max(np.abs(x))))
        near = (lambda: True) if name in ABSOLUTE_NEAR_ZERO else (lambda: False)
        y_true = ref.value(list(x), **bound)
        if any(abs(v) > limit for v in y_true):
            continue  # refused with a 422, tested elsewhere
        for got, true in zip(entry.value(x, bound, dtype=dtype), y_true, strict=True):
            worst["value"].update(score(got, true, dtype, big, near), label)
        jac_true = ref.jacobian(list(x), **bound)
        jac = entry.jacobian(x, bound, dtype=dtype)
        for row_got, row_true in zip(jac, jac_true, strict=True):
            for got, true in zip(row_got, row_true, strict=True):
                worst["jacobian"].update(score(got, true, dtype, big, near), label)
        if dtype is not np.float64:
            continue
        g = rng.standard_normal(len(y_true))
        got_vjp = entry.vector_jacobian_product(x, g, bound)
        true_vjp = reference.vjp(jac_true, g)
        for j, true in enumerate(true_vjp):
            size = mp.fsum(abs(mp.mpf(g[i]) * jac_true[i][j]) for i in range(len(g)))
            if size >= TINY:
                err = abs(mp.mpf(float(got_vjp[j])) - true)
                worst["vjp"].update(float(err / size) / REL_TOL, label)
        if name in ("softmax", "softmin"):
            k = int(np.argmax(entry.value(x, bound)))
            worst["vjp_dominant"].update(score(got_vjp[k], true_vjp[k], dtype), label)
    return {k: w for k, w in worst.items() if w.points}


@dataclass
class Row:
    name: str
    params: str
    dtype: str
    scores: dict[str, Worst] = field(default_factory=dict)


def table(dtypes: Sequence[type] = (np.float64, np.float32)) -> Iterator[Row]:
    for entry in activations.entries():
        for dtype in dtypes:
            settings: list[Mapping[str, float] | None] = [None]
            if entry.name in ALT_PARAMS and dtype is np.float64:
                settings.append(ALT_PARAMS[entry.name])
            for params in settings:
                if entry.kind == "elementwise":
                    xs = stress_grid(dtype) if params is None else dense_grid()
                    scores = elementwise_scores(entry.name, xs, params, dtype)
                else:
                    scores = vector_scores(entry.name, vector_cases(entry.name), params, dtype)
                label = "defaults" if params is None else ", ".join(f"{k}={v:g}" for k, v in params.items())
                yield Row(entry.name, label, np.dtype(dtype).name, scores)


def main() -> int:
    print("max error per quantity: float64 in units of eps = 2.2e-16 (target <= 4.5),")
    print("float32 in float32 ULPs (target <= 1); see the module docstring for the rules.")
    header = f"{'activation':<15} {'dtype':<8} {'params':<26} "
    print(header + "  ".join(f"{k:>9}" for k in ("value", "d1/jac", "d2/vjp")))
    failed = False
    for row in table():
        values = list(row.scores.values())
        cells = []
        for w in values[:3]:
            unit = w.score * (REL_TOL / EPS) if row.dtype == "float64" else w.score
            cells.append(f"{unit:9.2f}")
            failed |= w.score > 1.0
        print(f"{row.name:<15} {row.dtype:<8} {row.params:<26} " + "  ".join(cells), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
