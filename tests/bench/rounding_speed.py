"""What correct rounding costs: 1M elements of every function, float64 and float32.

Three columns per function and format, side by side in one run (medians of --repeat runs,
interleaved so that the machine's noise falls on all alike):

* ``rounded``: the service's core today, correctly rounded (the compiled first tier where it has
  the function, then bounded long double evaluation and the exact route for the elements they
  cannot decide), with every core (``set_threads``);
* ``numpy``: the previous NumPy core, the same functions in float64 without the rounding test
  (``Activation.forward``, in the same blocks and threads, then the check for non-finite results
  that the previous core's ``value`` made too; x given in float64, its conversion not timed),
  which is a few ULP off;
* ``torch``: PyTorch's CPU kernel on one thread (torch is used here only; install it with
  ``pip install torch==2.13.0``; without it the column is left out).

    python -m tests.bench.rounding_speed [--elements 1000000] [--repeat 3] [--only gelu,silu]

Vector functions take the elements as rows of --width (1000: a batch of 1000 vectors of 1000).

The last two columns: the share of elements the compiled first tier leaves undecided (of vectors,
for a vector function but a gated unit; 100% where it does not have the function), and the share
that goes on to MPFR; the last lines the ratio rounded / numpy (median over the functions, and the largest).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from service import activations
from service.activations import bounded, compiled, correct, registry, vector_rounded


def _torch_functions() -> dict[str, Callable[[Any], Any]]:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}
    torch.set_num_threads(1)
    return {
        "step": lambda t: (t > 0).to(t.dtype),
        "identity": lambda t: t.clone(),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
        "relu6": F.relu6,
        "hard_tanh": F.hardtanh,
        "hard_sigmoid": F.hardsigmoid,
        "hard_silu": F.hardswish,
        "softshrink": lambda t: F.softshrink(t, 0.5),
        "hardshrink": lambda t: F.hardshrink(t, 0.5),
        "threshold": lambda t: F.threshold(t, 0.0, 0.0),
        "prelu": lambda t: F.prelu(t, torch.tensor([0.25], dtype=t.dtype)),
        "rrelu": lambda t: F.rrelu(t, training=False),
        "relu_squared": lambda t: torch.square(F.relu(t)),
        "elu": F.elu,
        "selu": F.selu,
        "celu": F.celu,
        "gelu": F.gelu,
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "silu": F.silu,
        "quick_gelu": lambda t: t * torch.sigmoid(1.702 * t),
        "mish": F.mish,
        "softplus": F.softplus,
        "softsign": F.softsign,
        "log_sigmoid": F.logsigmoid,
        "tanhshrink": F.tanhshrink,
        "squareplus": lambda t: 0.5 * (t + torch.sqrt(t * t + 4.0)),
        "exponential": torch.exp,
        "softmax": lambda t: torch.softmax(t, -1),
        "log_softmax": lambda t: torch.log_softmax(t, -1),
        "softmin": lambda t: F.softmin(t, -1),
        "glu": lambda t: F.glu(t, -1),
    }


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _shares(entry: activations.Activation, x: np.ndarray[Any, Any], fmt: str) -> tuple[float, float]:
    """(the share of elements the compiled tier leaves undecided, the share that goes on to MPFR):
    for a vector function, shares of whole vectors."""
    params = entry.bind({})
    gate = getattr(entry.fast, "gate", None) if entry.kind == "vector" else None
    if gate is not None:
        # a gated unit's first tier finishes what it leaves element by element: shares of elements
        rows = x[:200]
        half = rows.shape[-1] // 2
        name, act = (
            ("leaky_relu", {"negative_slope": 0.0})
            if gate == "relu"
            else (gate, activations.get(gate).bind())
        )
        b, a = np.ascontiguousarray(rows[:, half:]), np.ascontiguousarray(rows[:, :half])
        first = compiled.values(name, "value", b, act, fmt, a)
        left = np.ones(b.shape, bool) if first is None else ~first[1]
        fn = correct.bounded_of(activations.get(name), "value")
        with np.errstate(all="ignore"):
            v = fn(bounded.B.exact(b[left], np.longdouble), **act) * bounded.B.exact(a[left], np.longdouble)
            _, sure = bounded.decide(v, correct.FORMATS[fmt].numpy)
        return float(np.mean(left)), float(np.sum(~np.asarray(sure)) / b.size)
    if entry.kind == "vector":
        rows = x[:200]
        first = entry.fast.first(rows, params, fmt) if entry.fast.first is not None else None
        left = np.ones(rows.shape[0], bool) if first is None else ~np.all(first[1], axis=-1)
        if not left.any():
            return 0.0, 0.0
        state = entry.fast.bounded(rows[left], params, np.longdouble)
        with np.errstate(all="ignore"):
            sure = [vector_rounded.decide_in(b, correct.FORMATS[fmt])[1] for _, b in state.value()]
        exact = ~np.all(np.concatenate(sure, axis=-1), axis=-1)
        return float(np.mean(left)), float(np.sum(exact) / rows.shape[0])
    xs = np.ascontiguousarray(x[:200_000])
    first = compiled.values(entry.name, "value", xs, params, fmt)
    left = np.ones(xs.size, bool) if first is None else ~first[1]
    fn = correct.bounded_of(entry, "value")
    with np.errstate(all="ignore"):
        b = fn(bounded.B.exact(xs[left], np.longdouble), **params)
        _, sure = bounded.decide(b, correct.FORMATS[fmt].numpy)
    return float(np.mean(left)), float(np.sum(~np.asarray(sure)) / xs.size)


def _timings(
    entry: activations.Activation,
    x: np.ndarray[Any, Any],
    params: dict[str, float],
    dtype: Any,
    torch_fn: Callable[[Any], Any] | None,
    repeat: int,
) -> tuple[list[float], list[float], list[float]]:
    """Seconds per run of the three, interleaved."""
    rounded_t, numpy_t, torch_t = [], [], []
    tensor = None
    if torch_fn is not None:
        import torch

        tensor = torch.from_numpy(x.copy())
    x64 = x.astype(np.float64)
    if entry.kind == "vector":

        def previous() -> Any:  # the NumPy core, rounded to the dtype
            return registry._finite(registry._call(entry.forward, x64, params), "y", dtype)

    else:

        def previous() -> Any:  # as the previous core's value(): blocks, then the finiteness check
            return registry._finite(
                registry._call_blocks(entry.forward, x64, params, entry.block, dtype), "y", dtype
            )

    for _ in range(repeat):
        rounded_t.append(_time(lambda: entry.value(x, params, -1, dtype)))
        numpy_t.append(_time(previous))
        if torch_fn is not None:
            torch_t.append(_time(lambda: torch_fn(tensor)))
    return rounded_t, numpy_t, torch_t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--width", type=int, default=1000, help="vector functions: the length of a row")
    args = parser.parse_args()
    torch_fns = _torch_functions()
    only = set(filter(None, args.only.split(",")))
    rng = np.random.default_rng(0)
    x64 = rng.normal(0.0, 3.0, args.elements)
    print(
        f"{args.elements:,} elements of N(0, 3^2); medians of {args.repeat}; threads: {registry.get_threads()}"
    )
    print(
        f"{'function':14s} {'dtype':8s} {'rounded':>9s} {'numpy':>9s} {'torch':>9s} {'r/numpy':>8s} {'r/torch':>8s} "
        f"{'left':>8s} {'exact':>8s}"
    )
    ratios: dict[str, list[float]] = {"float64": [], "float32": []}
    for entry in activations.entries():
        if entry.fast is None or (only and entry.name not in only):
            continue
        params = entry.bind({})
        for dtype in (np.float64, np.float32):
            name = np.dtype(dtype).name
            x = x64.astype(dtype)
            if entry.kind == "vector":
                x = x.reshape(-1, args.width)
            rounded_t, numpy_t, torch_t = _timings(
                entry, x, params, dtype, torch_fns.get(entry.name), args.repeat
            )
            r, n = statistics.median(rounded_t), statistics.median(numpy_t)
            t = statistics.median(torch_t) if torch_t else float("nan")
            ratios[name].append(r / n)
            left, exact = _shares(entry, x.astype(np.float64), name)
            print(
                f"{entry.name:14s} {name:8s} {r * 1e3:7.1f}ms {n * 1e3:7.1f}ms {t * 1e3:7.1f}ms "
                f"{r / n:8.2f} {r / t:8.2f} {left * 100:7.4f}% {exact * 100:7.4f}%"
            )
    for name, values in ratios.items():
        if values:
            print(
                f"{name}: rounded / numpy core: median {statistics.median(values):.2f}x, "
                f"largest {max(values):.2f}x over {len(values)} functions"
            )


if __name__ == "__main__":
    main()
