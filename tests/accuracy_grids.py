"""The inputs ``python -m tests.accuracy`` measures on, and the zeros of f' and f'' they gather around.

Grids (every random grid is seeded, so a run is repeatable; none is aligned to anything but its
own interval):

(a) ``stress``: the stress grid the test suite has always used (:func:`stress_grid`).
(b) ``windows``: where exp underflows or overflows: x in [-745.2, -708], [708, 710] and [710, 745.2]
    (and the float32 windows [-104, -87.3], [87.3, 89]), mapped through the argument each function
    takes the exponential of (beta x for silu, 1.702 x for quick_gelu, x / alpha for celu, 2x for
    the sech^2 of tanh, x^2 / 2 for gelu, ...).
(c) ``roots``: +-0.5 around every zero of f' and f'' away from 0, found with the mpmath reference.
(d) ``random``: |x| log-uniform in [1e-300, 1e300] with a random sign, and x uniform in [-50, 50].
(e) ``vectors``: random vectors of mixed scales, lengths 2 to 64, each with a random g.
(f) ``all16``: the finite numbers of a 16-bit format (every one, or every k-th bit pattern).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import mpmath as mp
import numpy as np

from tests import reference, rounding

#: One seed per grid: a grid does not change when another one does.
SEEDS = {"windows": 101, "roots": 202, "random": 303, "vectors": 404}

#: Arguments t of exp(t) where float64 results underflow into the subnormals or overflow
#: (e^-708 is about the smallest normal, e^-745.13 half the smallest subnormal, e^709.78 the
#: largest float64), and the same for float32.
EXP_WINDOWS: tuple[tuple[float, float], ...] = (
    (-745.2, -708.0),
    (708.0, 710.0),
    (710.0, 745.2),
    (-104.0, -87.3),
    (87.3, 89.0),
)


# -- (a) the stress grid ------------------------------------------------------------------


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


# -- (b) the exp under/overflow windows ---------------------------------------------------------

GELU_A = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh_argument(x: float) -> float:
    """2u(x): gelu_tanh takes tanh(u) = 2 sigma(2u) - 1."""
    return 2.0 * SQRT_2_OVER_PI * (x + GELU_A * x**3)


def _invert_increasing(fn: Callable[[float], float], t: float) -> float:
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fn(mid) < t else (lo, mid)
    return (lo + hi) / 2


def exp_arguments(name: str, params: Mapping[str, float]) -> list[Callable[[float], float]]:
    """For each exponential a function evaluates, the x at which its argument is t (t -> x)."""
    maps: list[Callable[[float], float]] = [lambda t: t]
    scales = {
        "silu": [params.get("beta", 1.0)],
        "softplus": [params.get("beta", 1.0)],
        "celu": [1.0 / params.get("alpha", 1.0)],
        "quick_gelu": [1.702],
        "tanh": [2.0],  # tanh' = sech^2 x ~ 4 e^-2|x|
        "tanhshrink": [2.0],
        "mish": [2.0],  # tanh(softplus x) for large x: sech^2 ~ 4 e^-2x
    }.get(name, [])
    maps += [lambda t, s=s: t / s for s in scales if s != 1.0]
    if name == "gelu":  # phi(x) ~ e^(-x^2 / 2), on both sides
        maps.append(lambda t: math.copysign(math.sqrt(2.0 * abs(t)), t))
    if name == "gelu_tanh":
        maps.append(lambda t: _invert_increasing(_gelu_tanh_argument, t))
    return maps


def window_intervals(name: str, params: Mapping[str, float]) -> list[tuple[float, float]]:
    out = []
    for fn in exp_arguments(name, params):
        for lo, hi in EXP_WINDOWS:
            a, b = sorted((fn(lo), fn(hi)))
            out.append((a, b))
    return sorted(set(out))


def window_points(name: str, params: Mapping[str, float], per_interval: int = 300) -> np.ndarray:
    rng = np.random.default_rng(SEEDS["windows"])
    parts = [rng.uniform(a, b, per_interval) for a, b in window_intervals(name, params)]
    return np.unique(np.concatenate(parts))


# -- (c) zeros of f' and f'' --------------------------------------------------------------------

#: Where the zeros are looked for: steps of 0.05 on [-12, 12], then log-spaced out to +-1000.
_OUTER = np.logspace(np.log10(12.0), 3.0, 40)[1:]
SCAN = np.concatenate([-_OUTER[::-1], np.linspace(-12.0, 12.0, 481), _OUTER])
#: A zero closer to 0 than this is "at 0" and left out.
AT_ZERO = 1e-6


def _bisect(fn: Callable[[mp.mpf], mp.mpf], a: float, b: float) -> mp.mpf | None:
    """The zero of fn in [a, b] (signs differ at the ends), or None where the sign change is a jump."""
    with mp.workdps(40):
        lo, hi = mp.mpf(a), mp.mpf(b)
        f_lo = fn(lo)
        scale = max(abs(f_lo), abs(fn(hi)))
        for _ in range(200):
            mid = (lo + hi) / 2
            f_mid = fn(mid)
            if f_mid == 0:
                lo = hi = mid
                break
            if mp.sign(f_mid) == mp.sign(f_lo):
                lo, f_lo = mid, f_mid
            else:
                hi = mid
            if hi - lo <= mp.mpf(2) ** -120 * max(1, abs(lo)):
                break
        mid = (lo + hi) / 2
        return mid if abs(fn(mid)) <= mp.mpf(10) ** -20 * scale else None


def _zeros(fn: Callable[[mp.mpf], mp.mpf]) -> list[float]:
    with mp.workdps(20):
        signs = [int(mp.sign(fn(mp.mpf(float(x))))) for x in SCAN]
    found: list[float] = []
    nonzero = [i for i, s in enumerate(signs) if s != 0]
    for i, j in itertools.pairwise(nonzero):
        if signs[i] == signs[j]:
            continue
        if j - i == 2:  # exactly one scan point on the zero
            root: mp.mpf | None = mp.mpf(float(SCAN[i + 1]))
        elif j - i == 1:
            root = _bisect(fn, float(SCAN[i]), float(SCAN[j]))
        else:
            continue  # f vanishes on a whole interval between the signs: no isolated zero
        if root is not None and abs(root) > AT_ZERO:
            found.append(float(root))
    return found


def find_zeros(name: str, params: Mapping[str, float]) -> dict[str, list[float]]:
    """The zeros of f' ("derivative") and f'' ("second_derivative") away from 0, where they change sign."""
    ref = reference.ELEMENTWISE[name]
    return {
        "derivative": _zeros(lambda x: ref.d1(x, **params)),
        "second_derivative": _zeros(lambda x: ref.d2(x, **params)),
    }


def root_points(zeros: Sequence[float], uniform: int = 300, close: int = 100) -> np.ndarray:
    """Around each zero r: ``uniform`` points uniform in [r - 0.5, r + 0.5] and ``close`` points at a
    log-uniform distance from 1e-16 |r| to 0.5 (on either side), which reach the floats next to r."""
    rng = np.random.default_rng(SEEDS["roots"])
    parts = [np.empty(0)]
    for r in zeros:
        near = 10.0 ** rng.uniform(np.log10(1e-16 * max(1.0, abs(r))), np.log10(0.5), close)
        parts += [rng.uniform(r - 0.5, r + 0.5, uniform), r + rng.choice([-1.0, 1.0], close) * near]
    return np.unique(np.concatenate(parts))


# -- (d) random points of mixed magnitude ------------------------------------------------------------


def random_points(log_uniform: int = 2000, uniform: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(SEEDS["random"])
    magnitudes = 10.0 ** rng.uniform(-300.0, 300.0, log_uniform)
    signs = rng.choice([-1.0, 1.0], log_uniform)
    return np.unique(np.concatenate([signs * magnitudes, rng.uniform(-50.0, 50.0, uniform)]))


# -- (e) vectors -----------------------------------------------------------------------------------


def vector_grid(name: str, count: int = 200) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` random vectors (x, g) of lengths 2 to 64 (even for the functions that halve x) and mixed scales, then the
    cases the audit named: [700, -712.5], and [0, 0, 0] with g = [1, 1, 1]."""
    rng = np.random.default_rng(SEEDS["vectors"])
    out = []
    for i in range(count):
        n = 2 * int(rng.integers(1, 33)) if name in reference.HALVING else int(rng.integers(2, 65))
        style = i % 4
        if style == 0:  # one scale per vector, from 1e-3 to 1e3
            x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3.0, 3.0)
        elif style == 1:  # magnitudes from 1e-6 to 1e3 within the vector
            x = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-6.0, 3.0, n)
        elif style == 2:  # moderate values and a few far out
            x = 5.0 * rng.standard_normal(n)
            far = rng.random(n) < 0.15
            x[far] = rng.choice([-1.0, 1.0], int(far.sum())) * rng.uniform(100.0, 800.0, int(far.sum()))
        else:  # across the exp windows
            x = rng.uniform(-760.0, 760.0, n)
        out.append((x, rng.standard_normal(n // 2 if name in reference.HALVING else n)))
    out.append((np.array([700.0, -712.5]), rng.standard_normal(1 if name in reference.HALVING else 2)))
    if name not in reference.HALVING:
        out.append((np.zeros(3), np.ones(3)))
    return out


# -- formats -----------------------------------------------------------------------------------------------


def to_format(x: Sequence[float] | np.ndarray, fmt: str) -> np.ndarray:
    """The distinct finite values of ``x`` rounded to ``fmt`` (by the tests' own rounding), as float64."""
    x = np.asarray(x, dtype=np.float64)
    return _to_format(x.tobytes(), fmt).copy()


@functools.lru_cache(maxsize=256)
def _to_format(data: bytes, fmt: str) -> np.ndarray:
    x = np.frombuffer(data, dtype=np.float64)
    out = set(x.tolist()) if fmt == "float64" else {rounding.round_to(Fraction(v), fmt) for v in x.tolist()}
    return np.array(sorted(v for v in out if math.isfinite(v)), dtype=np.float64)


def sixteen_bit_inputs(fmt: str, stride: int = 1) -> np.ndarray:
    """Every finite number of a 16-bit format (every ``stride``-th bit pattern), as float64."""
    import ml_dtypes

    numpy_type = np.float16 if fmt == "float16" else ml_dtypes.bfloat16
    bits = np.arange(0, 1 << 16, stride, dtype=np.uint32).astype(np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(numpy_type).astype(np.float64)
    return np.unique(values[np.isfinite(values)])
