"""What the fixed mmap threshold costs (service.budget.give_back_freed_memory): the core's time on
2000 x 1000 float64 elements with glibc's adjusting threshold and with the threshold the service
sets, each in processes of its own (mallopt cannot be undone), the two kinds interleaved.

    python -m tests.bench.mmap_threshold [--rounds 5] [--only sigmoid,relu]

Blocks of 1 MiB and more are then mapped afresh for every call and unmapped when freed, so each
call pays the page faults of its results (about 16 MiB here); with the adjusting threshold they are
reused from the heaps, and kept there once the request is over (see tests/test_hostile.py for the
memory). Prints the median time per function and setting, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

NAMES = ("relu", "sigmoid", "tanh", "gelu", "hard_silu", "softmax")


def _measure(names: list[str], fixed: bool, calls: int) -> dict[str, float]:
    """Median ms of ``calls`` calls per function, in this process."""
    import numpy as np

    from service import activations, budget

    if fixed:
        assert budget.give_back_freed_memory(), "glibc's mallopt, and MALLOC_MMAP_THRESHOLD_ unset"
    x = np.random.default_rng(0).normal(0, 3, (2000, 1000))
    out = {}
    for name in names:
        entry = activations.get(name)
        params = entry.bind({})
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            entry.value(x, params, -1, np.float64)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="processes of each kind (interleaved)")
    parser.add_argument("--calls", type=int, default=5, help="calls per function in each process")
    parser.add_argument("--only", default=",".join(NAMES))
    parser.add_argument("--child", choices=["adjusting", "fixed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.only.split(",")
    if args.child:
        result = _measure(names, args.child == "fixed", args.calls)
        print(" ".join(f"{result[n]!r}" for n in names))
        return
    runs: dict[str, list[list[float]]] = {"adjusting": [], "fixed": []}
    for _ in range(args.rounds):
        for kind in runs:
            line = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.mmap_threshold",
                    "--child",
                    kind,
                    "--only",
                    args.only,
                    "--calls",
                    str(args.calls),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            runs[kind].append([float(v) for v in line])
    print(f"2000 x 1000 float64; medians of {args.rounds} processes x {args.calls} calls each (ms)")
    print(f"{'function':<12} {'adjusting':>10} {'fixed 1 MiB':>12} {'ratio':>7}")
    ratios = []
    for i, name in enumerate(names):
        a = statistics.median(r[i] for r in runs["adjusting"])
        f = statistics.median(r[i] for r in runs["fixed"])
        ratios.append(f / a)
        print(f"{name:<12} {a:>10.1f} {f:>12.1f} {f / a:>7.2f}")
    print(f"fixed / adjusting: median {statistics.median(ratios):.2f}, largest {max(ratios):.2f}")


if __name__ == "__main__":
    main()
