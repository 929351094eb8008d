"""The compiled first tier of the correctly rounded core (``_kernel.c``).

For the functions it knows, the kernel evaluates each element in double-double arithmetic with a
running error bound (for float32, first in plain double with its bound, about 2^-50 of the value:
the double-double build takes only what that leaves) and decides, element by element, whether the
bound proves the correctly rounded float64 or float32 result: elementwise values and first derivatives, and their products
with g (:func:`values`, called by :func:`correct.rounded`), and the values of the softmax family
row by row (:func:`softmax`, called by :mod:`.vector_rounded`, which also takes the gated units'
a * act(b) from :func:`values`).  The callers send the rest (a few in a million) down the bounded
long double route and then to MPFR, as they do without the kernel.  Results are therefore the
same with or without it: only the time differs.

The kernel is built when the package is installed (``pyproject.toml``, optional: without a C
compiler the package installs without it).  Its tables are computed here, once, with MPFR:
2^(j/256) and ln 2 / 256 to about 106 bits, and the published constants exactly as the exact
definitions use them.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import gmpy2
import numpy as np


def _load() -> Any:
    try:
        return importlib.import_module("._kernel", __package__)
    except ImportError:  # not built (no C compiler where the package was installed)
        return None


_kernel = _load()

#: Function name -> (the kernel's number, its parameters in the kernel's order).
_FUNCTIONS: dict[str, tuple[int, tuple[str, ...]]] = {
    "exponential": (0, ()),
    "sigmoid": (1, ()),
    "tanh": (2, ()),
    "silu": (3, ("beta",)),
    "quick_gelu": (4, ()),
    "softplus": (5, ("beta",)),
    "log_sigmoid": (6, ()),
    "elu": (7, ("alpha",)),
    "selu": (8, ()),
    "celu": (9, ("alpha",)),
    "mish": (10, ()),
    "gelu_tanh": (11, ()),
    "tanhshrink": (12, ()),
    "softsign": (13, ()),
    "leaky_relu": (14, ("negative_slope",)),
    "prelu": (14, ("weight",)),
    "rrelu": (15, ("lower", "upper")),
    "softshrink": (16, ("lambda",)),
    "relu_squared": (17, ()),
    "hard_sigmoid": (18, ()),
    "hard_silu": (19, ()),
    "squareplus": (20, ("b",)),
    "sparse_plus": (21, ()),
    "sparse_sigmoid": (22, ()),
    "star_relu": (23, ("scale", "bias")),
    "smelu": (24, ("beta",)),
    "xielu": (25, ("alpha_p", "alpha_n", "beta", "eps")),
    "rational": (26, ("numerator", "denominator")),
    "gelu": (27, ()),
    "snake": (28, ("a",)),
}

#: The functions whose derivative the kernel has too (the others' derivatives are exact in NumPy,
#: or left to the bounded route).
_DERIVATIVES = frozenset(_FUNCTIONS) - {
    "rational",
    "leaky_relu",
    "prelu",
    "rrelu",
    "softshrink",
    "relu_squared",
    "hard_sigmoid",
    "sparse_sigmoid",
}
_QUANTITIES = {"value": 0, "derivative": 1}
_BITS = {"float64": 53, "float32": 24}
_enabled = _kernel is not None


def _split(value: Any) -> tuple[float, float]:
    """An MPFR number or a Fraction as hi + lo, each rounded to nearest."""
    hi = float(value)
    return hi, float(value - (Fraction(hi) if isinstance(value, Fraction) else gmpy2.mpfr(hi)))


def _tables() -> np.ndarray[Any, Any]:
    # (Imported here: importing the function modules from the package's own import would change
    # the order in which they register, which is the catalog's order.)
    from . import smooth

    with gmpy2.context(gmpy2.get_context(), precision=320):
        parts: list[float] = []
        for j in range(256):
            parts.extend(_split(gmpy2.exp2(gmpy2.mpfr(j) / 256)))
        step = gmpy2.log(2) / 256
        # ln 2 / 256 = L1 + L2 + L3: L1 has 33 significant bits, so n L1 is exact for |n| < 2^20.
        l1 = float(gmpy2.rint(step * 2**41)) / 2**41
        rest = step - l1
        l2 = float(rest)
        l3 = float(rest - l2)
        inv = float(256 / gmpy2.log(2))
        k = gmpy2.sqrt(8 / gmpy2.const_pi())  # 2 sqrt(2/pi), as the exact gelu_tanh takes it
    scale, alpha = Fraction(smooth.SELU_SCALE_DIGITS), Fraction(smooth.SELU_ALPHA_DIGITS)
    constants = [
        l1,
        l2,
        l3,
        inv,
        *smooth.QUICK_GELU_BETA,
        *_split(scale),
        *_split(scale * alpha),
        *_split(k),
        *smooth.GELU_TANH_A,
        *_split(Fraction(1, 6)),
        2.0**-95,  # a margin on exp's own bound (the bound is worked out in the kernel)
    ]
    # erf's Taylor coefficients (-1)^n / (n! (2n+1)), exactly, rounded to double-double.
    coefficients = [Fraction((-1) ** n, math.factorial(n) * (2 * n + 1)) for n in range(_ERF_TERMS + 1)]
    for c in coefficients[:_ERF_DD]:
        constants.extend(_split(c))
    constants.extend(float(c) for c in coefficients[:_ERF_TERMS])
    constants.append(float(coefficients[_ERF_TERMS]))
    with gmpy2.context(gmpy2.get_context(), precision=320):
        pi = gmpy2.const_pi()
        for value in (gmpy2.rec_sqrt(2), 2 / gmpy2.sqrt(pi), 1 / gmpy2.sqrt(pi), 1 / gmpy2.sqrt(2 * pi)):
            constants.extend(_split(value))
        # pi/2 = P1 + P2 + P3 + (below 2^-138): P1 has 33 significant bits, so k P1 is exact for
        # |k| < 2^20 (snake's argument reduction); then 2/pi, and sin, cos of j/128.
        half_pi = pi / 2
        p1 = float(gmpy2.rint(half_pi * 2**32)) / 2**32
        p2 = float(half_pi - p1)
        p3 = float(half_pi - p1 - p2)
        assert abs(half_pi - p1 - p2 - p3) < 2.0**-138
        constants.extend([p1, p2, p3, float(2 / pi)])
        for j in range(_TRIG_N):
            constants.extend(_split(gmpy2.sin(gmpy2.mpfr(j) / 128)))
            constants.extend(_split(gmpy2.cos(gmpy2.mpfr(j) / 128)))
    return np.array(parts + constants, dtype=np.float64)


#: The terms of erf's Taylor series the kernel takes, and those in double-double (ERF_TERMS and
#: ERF_DD in _kernel.h).
_ERF_TERMS, _ERF_DD = 72, 36
#: sin and cos of j/128 for j < _TRIG_N (TRIG_N in _kernel.h): |r| <= pi/4 after the reduction.
_TRIG_N = 104


_initialised = False


def _ready() -> Any:
    """The kernel, its tables set (once, at first use), or None."""
    global _initialised
    if _kernel is not None and not _initialised:
        _kernel.init(_tables().tobytes())
        _initialised = True
    return _kernel


def available() -> bool:
    return _kernel is not None


def use(enabled: bool) -> bool:
    """Turn the compiled tier on or off (for tests and benchmarks); returns the previous state."""
    global _enabled
    previous = _enabled
    _enabled = enabled and _kernel is not None
    return previous


def values(
    name: str,
    quantity: str,
    x: np.ndarray[Any, Any],
    params: Mapping[str, Any],
    fmt_name: str,
    g: np.ndarray[Any, Any] | None = None,
    out: np.ndarray[Any, Any] | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """(results, sure) for a float64 array ``x`` (times ``g``, elementwise, where given), or None
    where the kernel does not have the function, the quantity or these parameters.  The results
    are written into ``out`` where given (a contiguous float64 array of x's size)."""
    known = _FUNCTIONS.get(name)
    if not _enabled or known is None or quantity not in _QUANTITIES or fmt_name not in _BITS:
        return None
    if quantity == "derivative" and name not in _DERIVATIVES:
        return None
    number, names = known
    p = _packed(name, [params[p] for p in names])
    if p is None:
        return None
    xs = np.ascontiguousarray(x, dtype=np.float64)
    gs = None if g is None else np.ascontiguousarray(np.broadcast_to(g, xs.shape), dtype=np.float64)
    if out is None:
        out = np.empty_like(xs)
    sure = np.empty(xs.shape, dtype=np.uint8)
    _ready().evaluate(number, _QUANTITIES[quantity], _BITS[fmt_name], xs, gs, p, out, sure)
    return out, sure.view(bool)


def _packed(name: str, given: list[Any]) -> np.ndarray[Any, Any] | None:
    """The parameters as the kernel takes them: numbers in order (at least 4); rational's two
    coefficient arrays as (their lengths, the numerator's, the denominator's)."""
    if name == "rational":
        numerator, denominator = (tuple(float(v) for v in c) for c in given)
        numbers = [*numerator, *denominator]
        packed = np.array([len(numerator), len(denominator), *numbers], dtype=np.float64)
    else:
        if not all(isinstance(p, float | int) and not isinstance(p, bool) for p in given):
            return None  # an array-valued parameter (prelu's weight per channel)
        numbers = [float(p) for p in given]
        packed = np.zeros(4)
        packed[: len(given)] = numbers
    # Parameters of extreme magnitude (2^-500, 2^500) make the kernel's products and quotients
    # underflow where its bounds do not follow them (an independent oracle found smelu at
    # beta = 1e-300 and squareplus at b = 1e-310 one unit off): the slower routes take them.
    if any(v != 0 and not 2.0**-500 < abs(v) < 2.0**500 for v in numbers):
        return None
    return packed


def softmax(
    x: np.ndarray[Any, Any], temperature: float, log: bool, negate: bool, fmt_name: str
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """(results, sure) of softmax (log_softmax where ``log``; of -x where ``negate``: softmin)
    along the last axis of a 2-d float64 array, or None where the kernel cannot."""
    if not _enabled or fmt_name not in _BITS or x.ndim != 2 or x.shape[1] == 0:
        return None
    xs = np.ascontiguousarray(-x if negate else x, dtype=np.float64)
    out = np.empty_like(xs)
    sure = np.empty(xs.shape, dtype=np.uint8)
    _ready().softmax(log, _BITS[fmt_name], xs, xs.shape[1], float(temperature), out, sure)
    return out, sure.view(bool)


#: The kernel's builds: Dekker's products in two lanes (any CPU), AVX2 and fused multiply-adds in
#: four, AVX-512 in eight.
BUILDS = {"dekker": 0, "avx2": 1, "avx512": 2}


def build(name: str) -> str:
    """Use that build of the kernel, or the best the CPU has below it; returns the one in use.
    (For the tests, which compare them: the process starts with the best.)"""
    assert _kernel is not None
    level = int(_ready().variant(BUILDS[name]))
    return next(k for k, v in BUILDS.items() if v == level)


def float32_builds(on: bool) -> bool:
    """float32 results from the float32 builds (one double and its bound a value, then the
    double-double build for the elements they leave: ``on``, the default) or from the
    double-double builds alone; returns the previous setting.  (For the tests, which compare
    them.)"""
    assert _kernel is not None
    return bool(_ready().light(on))


def exp_dd(hi: float, lo: float = 0.0, build: str = "dekker") -> tuple[float, float, float]:
    """The kernel's double-double e^(hi + lo) and its error bound (for the tests)."""
    assert _kernel is not None
    h, low, e = _ready().exp_dd(hi, lo, BUILDS[build])
    return float(h), float(low), float(e)


def sincos_dd(
    hi: float, lo: float = 0.0, build: str = "dekker"
) -> tuple[float, float, float, float, float, float]:
    """The kernel's double-double sin and cos of hi + lo (|hi| <= 2^19, lo its exact low part)
    and their error bounds, as (sin h, l, e, cos h, l, e) (for the tests)."""
    assert _kernel is not None
    h, low, e, ch, cl, ce = _ready().sincos_dd(hi, lo, BUILDS[build])
    return float(h), float(low), float(e), float(ch), float(cl), float(ce)
