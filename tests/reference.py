"""High-precision reference definitions, written independently of the service.

Each elementwise entry gives the value and the first derivative as mpmath
functions of an ``mpf`` and the parameters; vector entries take a list.  They
follow the textbook formulas directly: at 50 digits, cancellation and overflow
in float64 are not a concern.  Conventions at kinks follow the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mpmath as mp

mp.mp.dps = 50

Fn = Callable[..., mp.mpf]


@dataclass(frozen=True)
class Elementwise:
    value: Fn
    d1: Fn


def _sigmoid(x: mp.mpf) -> mp.mpf:
    return 1 / (1 + mp.exp(-x))


ELEMENTWISE: dict[str, Elementwise] = {
    "step": Elementwise(
        value=lambda x: mp.mpf(1) if x > 0 else mp.mpf(0),
        d1=lambda x: mp.mpf(0),
    ),
    "identity": Elementwise(value=lambda x: x, d1=lambda x: mp.mpf(1)),
    "sigmoid": Elementwise(
        value=_sigmoid,
        d1=lambda x: mp.exp(-x) / (1 + mp.exp(-x)) ** 2,
    ),
    "tanh": Elementwise(value=mp.tanh, d1=lambda x: mp.sech(x) ** 2),
    "relu": Elementwise(
        value=lambda x: x if x > 0 else mp.mpf(0),
        d1=lambda x: mp.mpf(1) if x > 0 else mp.mpf(0),
    ),
    "leaky_relu": Elementwise(
        value=lambda x, negative_slope: x if x > 0 else negative_slope * x,
        d1=lambda x, negative_slope: mp.mpf(1) if x > 0 else mp.mpf(negative_slope),
    ),
}


def softmax(x: Sequence[float]) -> list[mp.mpf]:
    e = [mp.exp(mp.mpf(v)) for v in x]
    total = mp.fsum(e)
    return [v / total for v in e]


def softmax_jacobian(x: Sequence[float]) -> list[list[mp.mpf]]:
    # 1 - s_i is written as the sum of the other components: at 50 digits,
    # 1 - s_i itself is 0 once s_i is within 1e-50 of 1 (x = [700, -700, 0]).
    s = softmax(x)
    n = len(s)

    def rest(i: int) -> mp.mpf:
        return mp.fsum(s[j] for j in range(n) if j != i)

    return [[s[i] * rest(i) if i == j else -s[i] * s[j] for j in range(n)] for i in range(n)]


def softmax_vjp(x: Sequence[float], g: Sequence[float]) -> list[mp.mpf]:
    # sum_i g_i J_ij, with J_ij = J_ji for softmax.
    jac = softmax_jacobian(x)
    n = len(jac)
    return [mp.fsum(mp.mpf(g[i]) * jac[i][j] for i in range(n)) for j in range(n)]


VECTOR = {"softmax": (softmax, softmax_jacobian, softmax_vjp)}
