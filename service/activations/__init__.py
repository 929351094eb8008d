"""The numeric core: activation functions and their derivatives in NumPy.

Importing this package registers every activation; the rest of the service
reaches them through :func:`get`, :func:`names` and :func:`entries`.
"""

# isort: off
from . import (  # noqa: F401  (registers the entries)
    correct,
    elementwise,
    piecewise,
    rational,
    smooth,
    vector,
)
from . import entmax  # noqa: F401  (after vector: it builds on softmax and sparsemax)

# isort: on
from .registry import (
    USES,
    Activation,
    ActivationError,
    Array,
    Cancelled,
    Exact,
    Example,
    Kink,
    NotSupported,
    Param,
    ResultOverflow,
    Stop,
    UnknownActivation,
    all_names,
    element,
    entries,
    first_non_finite,
    get,
    get_threads,
    names,
    set_threads,
    stoppable,
)

__all__ = [
    "USES",
    "Activation",
    "ActivationError",
    "Array",
    "Cancelled",
    "Exact",
    "Example",
    "Kink",
    "NotSupported",
    "Param",
    "ResultOverflow",
    "Stop",
    "UnknownActivation",
    "all_names",
    "element",
    "entries",
    "first_non_finite",
    "get",
    "get_threads",
    "names",
    "set_threads",
    "stoppable",
]
