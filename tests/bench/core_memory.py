"""The numeric core alone: threads and memory (a script that prints figures, not a test).

    python -m tests.bench.core_memory               # about a minute and a half on 2 cores
    python -m tests.bench.core_memory --quick       # fewer runs, smaller Jacobians
    python -m tests.bench.core_memory --detail      # every function's memory figures
    python -m tests.bench.core_memory --calibrate   # the figures behind workspace_bytes

1. Time: 1M float64 elements of mixed magnitudes, value, f' and f'' of
   sigmoid, gelu, silu, mish, softplus and tanhshrink, evaluated sequentially
   (``set_threads(1)``) and with ``os.cpu_count()`` threads, median of 7 runs,
   with the ratio; also with every array shared between the threads however
   cheap its blocks (``PARALLEL_BLOCK_SECONDS = 0``), which is what the
   adaptive choice avoids.
2. Memory: the peak bytes the core allocates during one call (tracemalloc,
   which sees NumPy's allocations; the input and the gradient are allocated
   before), per element of the result, for every quantity, float64 and
   float32: the largest figure over the functions of each kind, and the range
   of ``Activation.workspace_bytes``' estimate over the peak.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from service import activations
from service.activations import registry
from tests.accuracy import ALT_PARAMS

#: Every quantity the core computes, as ``Activation.workspace_bytes`` names them.
QUANTITIES = registry.QUANTITIES
TIMED = ("sigmoid", "gelu", "silu", "mish", "softplus", "tanhshrink")


def supports(entry: activations.Activation, quantity: str) -> bool:
    if quantity == "second_derivative":
        return entry.kind == "elementwise"
    if quantity.startswith("parameter"):
        return bool(entry.params)
    return True


def mixed(size: int, seed: int = 0) -> np.ndarray:
    """Values of every magnitude: mostly ordinary, some tiny, some near the float64 limits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size) * np.exp(rng.uniform(-3.0, 4.0, size))
    picks = rng.integers(0, size, size // 100)
    x[picks] = rng.choice([-1e300, -750.0, -40.0, -1e-300, 0.0, 5e-324, 40.0, 700.0, 1e300], picks.size)
    return x


def call(
    entry: activations.Activation,
    quantity: str,
    x: np.ndarray,
    g: np.ndarray,
    axis: int = -1,
    dtype: registry.DType = np.float64,
    given: Mapping[str, float] | None = None,
) -> object:
    """One core call; ``g`` has the output's shape (used by the two products)."""
    params = entry.bind(given)
    if quantity == "value":
        return entry.value(x, params, axis, dtype)
    if quantity in ("derivative", "jacobian"):
        return entry.jacobian(x, params, axis, dtype)
    if quantity == "second_derivative":
        return entry.second_derivative(x, params, dtype)
    if quantity == "vjp":
        return entry.vector_jacobian_product(x, g, params, axis, dtype)
    if quantity == "parameter_jacobian":
        return entry.parameter_jacobian(x, params, axis, dtype)
    if quantity == "parameter_vjp":
        return entry.parameter_vjp(x, g, params, axis, dtype)
    raise ValueError(quantity)


def result_elements(entry: activations.Activation, quantity: str, shape: tuple[int, ...], axis: int) -> int:
    """Elements of the result arrays (of the input for parameter_vjp, whose result is scalars)."""
    ax = axis % len(shape) if shape else 0
    out = int(np.prod(entry.output_shape(shape, ax))) if shape else 1
    if quantity in ("derivative", "jacobian") and entry.kind == "vector":
        return out * shape[ax]
    if quantity == "vjp":
        return int(np.prod(shape))
    if quantity == "parameter_jacobian":
        return out * len(entry.params)
    if quantity == "parameter_vjp":
        return int(np.prod(shape))
    return out


def peak_bytes(fn: Callable[[], object]) -> int:
    """The peak of traced allocations while ``fn`` runs, above what was allocated before."""
    gc.collect()
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
        del result
    finally:
        if not started:
            tracemalloc.stop()
    return peak


def inputs(
    entry: activations.Activation, shape: tuple[int, ...], axis: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    x = mixed(int(np.prod(shape))).reshape(shape)
    if entry.kind == "vector":
        x = np.clip(x, -700.0, 700.0)  # keep every quantity finite (no ResultOverflow)
    out = entry.output_shape(shape, axis % len(shape)) if shape else ()
    g = np.cos(np.arange(int(np.prod(out)), dtype=np.float64)).reshape(out)
    return x, g


def finite_inputs(entry: activations.Activation, x: np.ndarray, dtype: registry.DType) -> np.ndarray:
    """``x`` limited to where every result fits ``dtype`` (no ResultOverflow)."""
    if dtype is np.float32:
        return np.clip(x, -80.0, 80.0)
    if entry.name in {"exponential", "relu_squared", "selu"}:
        return np.clip(x, -700.0, 700.0)
    return x


@dataclass
class Measured:
    name: str
    kind: str
    quantity: str
    dtype: str
    shape: tuple[int, ...]
    peak: int
    elements: int
    estimate: int


def measure(
    entry: activations.Activation,
    quantity: str,
    shape: tuple[int, ...],
    dtype: registry.DType = np.float64,
    axis: int = -1,
    params: Mapping[str, float] | None = None,
) -> Measured:
    x, g = inputs(entry, shape, axis)
    x = finite_inputs(entry, x, dtype)
    peak = peak_bytes(lambda: call(entry, quantity, x, g, axis, dtype, params))
    return Measured(
        entry.name,
        entry.kind,
        quantity,
        np.dtype(dtype).name,
        shape,
        peak,
        result_elements(entry, quantity, shape, axis),
        entry.workspace_bytes(quantity, shape, axis),
    )


def memory_cases(quick: bool) -> Iterator[tuple[activations.Activation, str, tuple[int, ...]]]:
    n = 1000 if quick else 2000
    for entry in activations.entries():
        for quantity in QUANTITIES:
            if not supports(entry, quantity) or (entry.kind == "vector" and quantity == "derivative"):
                continue
            if entry.kind == "elementwise":
                if quantity == "jacobian":
                    continue
                yield entry, quantity, (1_000_000,)
            elif quantity == "jacobian":
                yield entry, quantity, (n,)
                yield entry, quantity, (100, 100)
                if entry.name == "softmax" and not quick:
                    yield entry, quantity, (5000,)
            else:
                yield entry, quantity, (1000, 1000)


def memory_table(quick: bool, detail: bool = False) -> list[Measured]:
    rows = []
    for entry, quantity, shape in memory_cases(quick):
        for dtype in (np.float64, np.float32):
            rows.append(measure(entry, quantity, shape, dtype))
            if detail:
                r = rows[-1]
                estimate = f"{r.estimate / r.peak:6.2f}" if r.peak else "-"
                print(
                    f"{r.name:<13} {r.quantity:<19} {r.dtype:<8} {'x'.join(map(str, r.shape)):<10} "
                    f"{r.peak / r.elements:7.1f} {estimate}",
                    flush=True,
                )
    print("\npeak bytes allocated per result element (tracemalloc), the largest over the functions:")
    print(
        f"{'kind':<12} {'quantity':<19} {'dtype':<8} {'B/elem':>7} {'function':<13} {'shape':<12} {'estimate/peak':>13}"
    )
    groups: dict[tuple[str, str, str], list[Measured]] = {}
    for r in rows:
        groups.setdefault((r.kind, r.quantity, r.dtype), []).append(r)
    for (kind, quantity, dtype), group in groups.items():
        worst = max(group, key=lambda r: r.peak / r.elements)
        ratios = [r.estimate / r.peak for r in group if r.peak]
        span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        print(
            f"{kind:<12} {quantity:<19} {dtype:<8} {worst.peak / worst.elements:7.1f} "
            f"{worst.name:<13} {'x'.join(map(str, worst.shape)):<12} {span:>13}"
        )
    for r in rows:
        if r.shape == (5000,):
            size = r.elements * np.dtype(r.dtype).itemsize
            print(
                f"{r.name} Jacobian of a 5000-vector, {r.dtype}: peak {r.peak / 2**20:.0f} MiB "
                f"= {r.peak / size:.2f} x its result; estimate {r.estimate / 2**20:.0f} MiB"
            )
    return rows


def calibration_cases(entry: activations.Activation, quantity: str) -> Iterator[tuple[tuple[int, ...], int]]:
    """(shape, axis): the shapes whose peaks set the per-element figures of ``quantity``."""
    if entry.kind == "elementwise":
        b = entry.block
        for shape in [(2 * b,), (8 * b,), (1_000_000,), (300, 1000)]:
            yield shape, -1
    elif quantity == "jacobian":
        for shape, axis in [
            ((2000,), -1),
            ((100, 100), -1),
            ((100, 100), 0),
            ((30000, 2), -1),
            ((2, 30000), 0),
            ((3000, 8), -1),
            ((200000, 4), -1),
            ((4, 200000), 0),
            ((10, 20, 30), 1),
        ]:
            yield shape, axis
    else:
        for shape, axis in [
            ((1000, 1000), -1),
            ((1000, 1000), 0),
            ((20, 50000), -1),
            ((100000, 10), -1),
            ((30000,), -1),
            ((100, 300), -1),
            ((10, 200, 300), 1),
        ]:
            yield shape, axis


def calibrate() -> dict[tuple[str, str], float]:
    """The bytes per element each function's intermediates need (``Activation.workspace``'s unit).

    ``(peak - fixed) / elements`` with fixed and elements as ``workspace_bytes``
    counts them, the largest over float64, float32, the default and the other
    parameters of tests.accuracy.ALT_PARAMS (the estimate does not know the
    parameters: softmax with T != 1 takes another path) and the shapes of
    :func:`calibration_cases`; next to the figure in use.
    """
    needed: dict[tuple[str, str], float] = {}
    registry.PARALLEL_BLOCK_SECONDS = 0.0  # every large array shared between threads: the most memory
    print(f"\nbytes per element of intermediates ({registry.get_threads()} threads): needed, in use")
    for entry in activations.entries():
        for quantity in QUANTITIES:
            if not supports(entry, quantity) or quantity == (
                "jacobian" if entry.kind == "elementwise" else "derivative"
            ):
                continue
            worst = 0.0
            for shape, axis in calibration_cases(entry, quantity):
                for dtype in (np.float64, np.float32):
                    for params in [None, *([ALT_PARAMS[entry.name]] if entry.name in ALT_PARAMS else [])]:
                        m = measure(entry, quantity, shape, dtype, axis, params)
                        fixed, elements = entry._workspace_terms(quantity, shape, axis)
                        worst = max(worst, (m.peak - fixed) / max(1, elements))
            needed[entry.name, quantity] = worst
            in_use = entry._per_element(quantity)
            flag = "  <-- too low" if worst > in_use else ""
            print(f"{entry.name:<14} {quantity:<19} {worst:7.1f} {in_use:7.1f}{flag}", flush=True)
            if quantity == "jacobian":
                # Per element of a block: from single long vectors, whose state is small.
                block = 0.0
                for n in (2000, 5000):
                    m = entry.output_shape((n,), 0)[0]
                    for dtype in (np.float64, np.float32):
                        peak = measure(entry, quantity, (n,), dtype).peak
                        state = entry._per_element("jacobian") * n
                        block = max(block, (peak - 8 * m * n - state) / min(registry.JACOBIAN_BLOCK, m * n))
                in_use = entry._per_element("jacobian_block")
                flag = "  <-- too low" if block > in_use else ""
                print(f"{entry.name:<14} {'jacobian_block':<19} {block:7.1f} {in_use:7.1f}{flag}", flush=True)
    return needed


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm up (and start the pool)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def timing_table(runs: int) -> None:
    cores = os.cpu_count() or 1
    before, seconds = activations.get_threads(), registry.PARALLEL_BLOCK_SECONDS
    x = mixed(1_000_000)
    print(f"\n1M float64, median of {runs} runs, sequential vs {cores} threads (ms; ratio = speed-up):")
    print(
        f"{'function':<12} {'quantity':<18} {'sequential':>10} {'threads':>8} {'ratio':>6}"
        f" {'always shared':>14} {'ratio':>6}"
    )
    try:
        for name in TIMED:
            entry = activations.get(name)
            for quantity in ("value", "derivative", "second_derivative"):
                times = []
                for threads, share in ((1, seconds), (cores, seconds), (cores, 0.0)):
                    activations.set_threads(threads)
                    registry.PARALLEL_BLOCK_SECONDS = share
                    times.append(median_ms(lambda: call(entry, quantity, x, x), runs))  # noqa: B023
                print(
                    f"{name:<12} {quantity:<18} {times[0]:10.1f} {times[1]:8.1f} {times[0] / times[1]:6.2f}"
                    f" {times[2]:14.1f} {times[0] / times[2]:6.2f}"
                )
    finally:
        activations.set_threads(before)
        registry.PARALLEL_BLOCK_SECONDS = seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.core_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="3 runs and smaller Jacobians")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--detail", action="store_true", help="print every function's figures")
    parser.add_argument(
        "--calibrate", action="store_true", help="only the per-element figures of Activation.workspace"
    )
    args = parser.parse_args(argv)
    if args.calibrate:
        calibrate()
        return 0
    if not args.skip_time:
        timing_table(3 if args.quick else 7)
    if not args.skip_memory:
        memory_table(args.quick, args.detail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
