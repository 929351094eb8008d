"""Benchmark script (not a test): how much of entmax the rounding test decides, and its time.

    python -m tests.bench.entmax_rounding

For alpha in 1.2, 1.5, 1.7 and 1.9: the fraction of float64 and float32 values of 20,000
elements (vectors of 10, N(0, 9)) that the bounded evaluation decides (the rest go to the exact
route, a vector at a time), and the median of 3 timings of the core's value and VJP of 100,000
elements, side by side in one run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from service import activations
from service.activations import correct, entmax, vector_rounded

ALPHAS = (1.2, 1.5, 1.7, 1.9)


def decided(x: np.ndarray, alpha: float, fmt: str) -> float:
    work = correct._WORKING.get(fmt, np.longdouble)
    state = entmax._EntmaxBounded(x, alpha, work, None)
    _, sure = vector_rounded.decide_in(state.y, correct.FORMATS[fmt])
    return float(np.mean(sure))


def median_time(fn: object, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(20261201)
    small = rng.normal(size=(2000, 10)) * 3
    x = rng.normal(size=(10000, 10)) * 3
    g = rng.normal(size=(10000, 10))
    entry = activations.get("entmax")
    print("| alpha | decided f64 | decided f32 | value f64 | VJP f64 | value f32 | VJP f32 |")
    print("|---|---|---|---|---|---|---|")
    for alpha in ALPHAS:
        params = {"alpha": alpha}
        cells = [f"{100 * decided(small, alpha, fmt):.1f}%" for fmt in ("float64", "float32")]
        for dtype in (np.float64, np.float32):
            xd, gd = x.astype(dtype), g.astype(dtype)
            cells.append(f"{median_time(lambda: entry.value(xd, params, dtype=dtype)):.2f} s")  # noqa: B023
            cells.append(
                f"{median_time(lambda: entry.vector_jacobian_product(xd, gd, params, dtype=dtype)):.2f} s"  # noqa: B023
            )
        print(f"| {alpha} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
