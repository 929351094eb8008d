"""Exact rounding of a rational number to a binary format, in integer arithmetic: the tests' own,
written independently of service.activations.correct (which rounds through MPFR)."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath as mp

#: precision (significant bits), exponent of the smallest quantum (the smallest subnormal), the
#: exponent of the largest binade.
FORMATS: dict[str, tuple[int, int, int]] = {
    "float64": (53, -1074, 1023),
    "float32": (24, -149, 127),
    "float16": (11, -24, 15),
    "bfloat16": (8, -133, 127),
}


def round_mpf(value: mp.mpf, fmt: str) -> float:
    """An mpf rounded to ``fmt``; values far outside the format's range never become huge fractions."""
    sign, man, exp, bc = value._mpf_
    if man:
        _, qmin, emax = FORMATS[fmt]
        top = int(exp) + int(bc) - 1  # 2^top <= |value| < 2^(top+1)
        if top < qmin - 2:  # below half the smallest subnormal
            return -0.0 if sign else 0.0
        if top > emax + 1:
            return -math.inf if sign else math.inf
    return round_to(exact(value), fmt)


def exact(value: mp.mpf) -> Fraction:
    """An mpf as the exact rational it is."""
    sign, man, exp, _ = value._mpf_
    if not man:
        return Fraction(0)
    q = Fraction(int(man)) * (Fraction(2) ** int(exp))  # (man may be a gmpy2 integer)
    return -q if sign else q


def round_to(q: Fraction, fmt: str) -> float:
    """q rounded to nearest, ties to even, to ``fmt`` (with its subnormals); inf beyond its range."""
    precision, qmin, emax = FORMATS[fmt]
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    a = abs(q)
    # e with 2^e <= a < 2^(e+1)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    quantum = max(e - precision + 1, qmin)
    n = a / Fraction(2) ** quantum
    whole = n.numerator // n.denominator
    rest = n - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    largest = (2 - Fraction(2) ** (1 - precision)) * Fraction(2) ** emax
    value = Fraction(whole) * Fraction(2) ** quantum
    if value > largest:
        return sign * math.inf
    return sign * float(value)  # exact: value is a number of the format (and of float64)
