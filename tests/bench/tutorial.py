"""The plain one-line NumPy formula of each activation, as the tutorials write it.

The benchmark times the service's accurate core against these.  They lose
digits in the tails and some overflow with warnings; that is the point of the
comparison, so warnings are silenced where they are called.
"""

from collections.abc import Callable

import numpy as np
from scipy.special import erf

FORMULAS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "step": lambda x: np.where(x > 0, 1.0, 0.0),
    "identity": lambda x: np.array(x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(0, x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "relu6": lambda x: np.minimum(np.maximum(0, x), 6),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "hard_silu": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "softshrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)),
    "hardshrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "threshold": lambda x: np.where(x > 0, x, 0.0),
    "prelu": lambda x: np.where(x > 0, x, 0.25 * x),
    "rrelu": lambda x: np.where(x > 0, x, (1 / 8 + 1 / 3) / 2 * x),
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: 0.5 * np.clip(x + 1, 0, 2),
    "relu_squared": lambda x: np.maximum(0, x) ** 2,
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "selu": lambda x: 1.0507 * np.where(x > 0, x, 1.6733 * (np.exp(x) - 1)),
    "celu": lambda x: np.maximum(0, x) + np.minimum(0, np.exp(x) - 1),
    "gelu": lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "quick_gelu": lambda x: x / (1 + np.exp(-1.702 * x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
    "tanhshrink": lambda x: x - np.tanh(x),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
    "exponential": np.exp,
    "softmax": lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum(),
    "log_softmax": lambda x: x - x.max() - np.log(np.exp(x - x.max()).sum()),
    "softmin": lambda x: np.exp(x.min() - x) / np.exp(x.min() - x).sum(),
    "glu": lambda x: x[: x.size // 2] / (1 + np.exp(-x[x.size // 2 :])),
    "sparsemax": lambda x: np.maximum(
        x
        - (
            np.cumsum(np.sort(x)[::-1])[
                (k := np.sum(1 + np.arange(1, x.size + 1) * np.sort(x)[::-1] > np.cumsum(np.sort(x)[::-1])))
                - 1
            ]
            - 1
        )
        / k,
        0,
    ),
}
