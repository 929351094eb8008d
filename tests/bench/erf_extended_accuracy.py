"""Accuracy of the long double erf/erfc port against mpmath at 200 bits (a script, not a test).

    python -m tests.bench.erf_extended_accuracy              # about 20 s on one core
    python -m tests.bench.erf_extended_accuracy --scale 4    # four times the random points
    python -m tests.bench.erf_extended_accuracy --seed 7

Measures :func:`service.activations.erf_extended.erfc_ext` and ``erf_ext``
and prints, per set of points, the maximum error in units of the long double
ULP of the true value, 2^(floor(log2|f|) - 63) (2^-16445, the subnormal
spacing, where f is below the normal range), with the argument where it
occurs, and the share of points above 1 ULP:

- erfc: 200,000 random points, 120,000 uniform in [-6, 30] and 80,000 with
  magnitudes log-uniform in [1e-30, 100] of both signs; points around every
  interval boundary of the implementation (the 1, 2, ..., 64 ULP neighbours on
  both sides, relative offsets 10^-k, and 2,000 points within 1e-3 relative);
  the tail [30, x_min], where x_min ~ 106.56 is the argument at which erfc
  leaves the normal range; subnormal results from x_min to 106.77.
- erf: 100,000 uniform in [-6, 6]; 20,000 tiny |x| log-uniform in
  [1e-300, 1e-5] of both signs; subnormal and tiny normal x; boundary points.

Random arguments carry full 64-bit significands (not widened float64s).
Also checked: every result bit-identical whether the array is evaluated whole,
reversed, or element by element (a sample of 2,000 elements); no floating-point
warning under ``np.errstate(all="raise")`` for arguments out to 1e4000 and
+-inf; mpmath's erfc agrees with MPFR (gmpy2) on a sample, so the reference is
not the error being measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import gmpy2
import mpmath
import numpy as np

from service.activations.erf_extended import erf_ext, erfc_ext

L = np.longdouble
PREC = 200
MIN_NORMAL_EXP = -16382  # 2^-16382 is the smallest normal long double
MANT = 63  # a long double ULP is 2^(e - 63) for |f| in [2^e, 2^(e+1))

#: Boundaries of the implementation's intervals (|x|): where the formula changes.
ERFC_BOUNDS = ["2**-65", "0.25", "0.84375", "1.25", "2.85711669921875", "6.6666259765625", "107"]
ERF_BOUNDS = ["2**-16375", "2**-33", "0.84375", "1.25", "2.85711669921875", "6.6666259765625"]


def _ld(text: str) -> np.longdouble:
    if text.startswith("2**"):
        return np.ldexp(L(1), int(text[3:]))
    return L(text)


def to_parts(values: np.ndarray) -> list[tuple[int, int]]:
    """Long doubles as exact (signed integer significand, exponent) pairs."""
    m, e = np.frexp(np.abs(values))
    ints = np.ldexp(m, 64).astype(np.uint64).tolist()  # integers below 2^64: exact
    signs = np.signbit(values).tolist()
    return [(-n if s else n, int(k) - 64) for n, k, s in zip(ints, e.tolist(), signs, strict=True)]


def to_mpf(values: np.ndarray) -> list[mpmath.mpf]:
    """Long doubles as exact mpmath numbers."""
    return [mpmath.mpf(parts) for parts in to_parts(values)]


def ulp_errors(x: np.ndarray, got: np.ndarray, f: Callable[[mpmath.mpf], mpmath.mpf]) -> np.ndarray:
    errors = np.empty(len(x))
    for k, (xv, gv) in enumerate(zip(to_mpf(x), to_mpf(got), strict=True)):
        true = f(xv)
        if true == 0:
            errors[k] = 0.0 if gv == 0 else np.inf
            continue
        _, e = mpmath.frexp(true)  # |true| in [2^(e-1), 2^e)
        exponent = max(int(e) - 1, MIN_NORMAL_EXP) - MANT
        errors[k] = float(mpmath.ldexp(abs(gv - true), -exponent))
    return errors


def random_ld(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """n long doubles uniform in [lo, hi), with random low significand bits too."""
    u = np.ldexp(rng.integers(0, 2**63, n, dtype=np.uint64).astype(L), -63)
    return L(lo) + (L(hi) - L(lo)) * u


def log_uniform(rng: np.random.Generator, lo_exp10: float, hi_exp10: float, n: int) -> np.ndarray:
    magnitudes = np.power(L(10), random_ld(rng, lo_exp10, hi_exp10, n))
    return np.where(rng.random(n) < 0.5, -magnitudes, magnitudes)


def around(bounds: list[str], rng: np.random.Generator) -> np.ndarray:
    pts: list[np.ndarray] = []
    for text in bounds:
        t = _ld(text)
        up, down = np.full(64, t), np.full(64, t)
        for k in range(64):
            up[k] = t if k == 0 else np.nextafter(up[k - 1], L(np.inf))
            down[k] = t if k == 0 else np.nextafter(down[k - 1], L(0))
        rel = np.array([t * (1 + s * np.ldexp(L(1), -k)) for k in range(1, 64) for s in (-1, 1)])
        dense = random_ld(rng, float(t * L(1 - 1e-3)), float(t * L(1 + 1e-3)), 2000)
        pts += [up, down, rel, dense]
    one_side = np.concatenate(pts)
    return np.concatenate([one_side, -one_side])


def erfc_underflow_point() -> mpmath.mpf:
    """The x at which erfc(x) = 2^-16382, the smallest normal long double."""
    return mpmath.findroot(lambda t: mpmath.log(mpmath.erfc(t)) - MIN_NORMAL_EXP * mpmath.log(2), 106.5)


def report(name: str, x: np.ndarray, got: np.ndarray, f: Callable[[mpmath.mpf], mpmath.mpf]) -> float:
    t0 = time.perf_counter()
    errors = ulp_errors(x, got, f)
    k = int(np.argmax(errors))
    print(
        f"  {name:<44} n={len(x):>7}  max {errors[k]:6.3f} ULP at x = {x[k]!r:<40}"
        f" >1 ULP: {np.mean(errors > 1):7.3%}  ({time.perf_counter() - t0:4.1f} s)",
        flush=True,
    )
    return float(errors[k])


def check_independence(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rng: np.random.Generator
) -> bool:
    whole = fn(x)
    reversed_ = fn(x[::-1])[::-1]
    sample = rng.choice(len(x), size=min(2000, len(x)), replace=False)
    single = np.array([fn(x[k : k + 1])[0] for k in sample], dtype=L)
    scalar = np.array([fn(x[k])[()] for k in sample[:200]], dtype=L)
    return (
        bool(np.array_equal(whole, reversed_))
        and bool(np.array_equal(whole[sample], single))
        and bool(np.array_equal(whole[sample[:200]], scalar))
    )


def check_no_warnings() -> bool:
    extreme = np.array(
        [0.0, -0.0, 1e-4950, 1e-300, 1e300, -1e300, np.inf, -np.inf, 106.7, 106.9, 107.0, -107.0],
        dtype=L,
    )
    extreme = np.concatenate([extreme, np.array([L("1e4000"), L("-1e4000"), L("1.1e4932")])])
    try:
        with np.errstate(all="raise"):
            c, e = erfc_ext(extreme), erf_ext(extreme)
    except FloatingPointError as exc:
        print(f"  floating-point warning: {exc}")
        return False
    expected_c = np.array([1, 1, 1, 1, 0, 2, 0, 2], dtype=L)
    return (
        bool(np.all(np.isfinite(c)) and np.all(np.isfinite(e)))
        and bool(np.array_equal(c[:8], expected_c))
        and bool(np.array_equal(e[4:8], np.array([1, -1, 1, -1], dtype=L)))
    )


def check_reference(rng: np.random.Generator) -> float:
    """Largest relative difference between mpmath's and MPFR's erfc/erf at 200 bits on a sample."""
    x = np.concatenate(
        [random_ld(rng, -6, 30, 150), random_ld(rng, 30, 106.7, 150), log_uniform(rng, -30, 2, 100)]
    )
    worst = 0.0
    with gmpy2.context(gmpy2.get_context(), precision=PREC):
        for man, exp in to_parts(x):
            xv = mpmath.mpf((man, exp))
            g = gmpy2.mpfr(gmpy2.mpq(man) * gmpy2.mpq(2) ** exp)  # exact: 64-bit significand
            for mp_f, g_f in ((mpmath.erfc, gmpy2.erfc), (mpmath.erf, gmpy2.erf)):
                a = mp_f(xv)
                b = mpmath.mpf(tuple(int(v) for v in g_f(g).as_mantissa_exp()))
                if a != 0:
                    worst = max(worst, float(abs(a - b) / abs(a)))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the random point counts")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args(argv)
    mpmath.mp.prec = PREC
    rng = np.random.default_rng(args.seed)

    def n(count: int) -> int:
        return max(1, int(count * args.scale))

    t0 = time.perf_counter()
    x_min = erfc_underflow_point()
    x_min_ld = L(mpmath.nstr(x_min, 25))
    print(f"erfc(x) = 2^-16382 (smallest normal) at x = {mpmath.nstr(x_min, 20)}")
    print(
        f"mpmath erfc/erf vs MPFR at {PREC} bits, 400 points: max relative difference {check_reference(rng):.2e}"
    )

    worst: dict[str, float] = {}
    print("erfc_ext:")
    sets = {
        "uniform [-6, 30]": random_ld(rng, -6, 30, n(120_000)),
        "log-uniform |x| in [1e-30, 100], both signs": log_uniform(rng, -30, 2, n(80_000)),
        "interval boundaries (+-)": around(ERFC_BOUNDS, rng),
        "tail [30, x_min] (normal results)": np.concatenate(
            [random_ld(rng, 30, float(x_min_ld), n(20_000)), np.nextafter(x_min_ld, L(0)) - np.arange(200)]
        ),
        "x < -6 (results near 2)": random_ld(rng, -110, -6, n(2_000)),
    }
    for name, x in sets.items():
        worst[f"erfc {name}"] = report(name, x, erfc_ext(x), mpmath.erfc)
    sub = random_ld(rng, float(x_min_ld), 106.78, n(2_000))
    worst["erfc subnormal"] = report("subnormal results [x_min, 106.78]", sub, erfc_ext(sub), mpmath.erfc)

    print("erf_ext:")
    sets = {
        "uniform [-6, 6]": random_ld(rng, -6, 6, n(100_000)),
        "tiny |x| log-uniform in [1e-300, 1e-5]": log_uniform(rng, -300, -5, n(20_000)),
        "|x| log-uniform in [1e-4950, 1e-300]": log_uniform(rng, -4950, -300, n(2_000)),
        "interval boundaries (+-)": around(ERF_BOUNDS, rng),
    }
    for name, x in sets.items():
        worst[f"erf {name}"] = report(name, x, erf_ext(x), mpmath.erf)

    everything = np.concatenate([random_ld(rng, -120, 120, 20_000), log_uniform(rng, -4900, 4900, 5_000)])
    independent = all(check_independence(fn, everything, rng) for fn in (erfc_ext, erf_ext))
    quiet = check_no_warnings()
    normal = {k: v for k, v in worst.items() if k != "erfc subnormal"}
    print(f"bit-identical whole / reversed / element by element: {independent}")
    print(f"no floating-point warning (errstate raise), correct limits at +-1e300, +-inf: {quiet}")
    print(
        f"max error, normal results: {max(normal.values()):.3f} ULP ({max(normal, key=normal.__getitem__)})"
    )
    print(f"max error, subnormal erfc results: {worst['erfc subnormal']:.3f} ULP of 2^-16445")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0 if independent and quiet else 1


if __name__ == "__main__":
    sys.exit(main())
