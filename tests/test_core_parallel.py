"""The core on large inputs: threads give the same bits, Jacobians are built in blocks, memory is bounded."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from service import activations
from service.activations import ResultOverflow, compiled, correct, registry, vector
from service.activations.exact import EXTENDED
from tests import accuracy
from tests.bench.core_memory import inputs, mixed, peak_bytes

ENTRIES = list(activations.entries())
ELEMENTWISE = [e for e in ENTRIES if e.kind == "elementwise"]
VECTOR = [e for e in ENTRIES if e.kind == "vector"]

#: 1M elements of every magnitude, from subnormal to 1e300 (some results overflow).
BIG = mixed(1_000_000, seed=5)


@pytest.fixture(autouse=True)
def always_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """Share every large array between threads, however cheap its blocks (the worst case for memory)."""
    monkeypatch.setattr(registry, "PARALLEL_BLOCK_SECONDS", 0.0)


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """set_threads, restored afterwards."""
    before = activations.get_threads()
    yield activations.set_threads
    activations.set_threads(before)


def _outcome(call: Callable[[], object]) -> object:
    """A core call's result as bytes (a dict of them), or the overflow it reports."""
    try:
        result = call()
    except ResultOverflow as exc:
        return ("overflow", str(exc))
    if isinstance(result, dict):
        return {k: np.ascontiguousarray(v).tobytes() for k, v in result.items()}
    return np.ascontiguousarray(result).tobytes()


def _probe(forward: Callable[..., Any], blocked: bool = True) -> activations.Activation:
    """An elementwise entry outside the registry."""
    return activations.Activation(
        name="probe",
        kind="elementwise",
        forward=forward,
        derivative=forward,
        second=forward,
        formula="-",
        derivative_formula="-",
        range="-",
        typical_use=("hidden",),
        reference="-",
        blocked=blocked,
    )


# -- threads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_threads_give_the_bits_of_one_thread(entry: activations.Activation, threads: Any) -> None:
    params = entry.bind()
    # rational: ten parameter derivatives an element, many exact in rationals (nine minutes of CI
    # at 1M); 200k elements are still three blocks a thread
    x = BIG[:200_000] if entry.name == "rational" else BIG
    calls: list[tuple[str, Callable[[], object]]] = [
        ("value", lambda: entry.value(x, params)),
        ("derivative", lambda: entry.jacobian(x, params)),
        ("second", lambda: entry.second_derivative(x, params)),
        ("value float32", lambda: entry.value(x, params, dtype=np.float32)),
    ]
    if entry.params:
        calls.append(("parameters", lambda: entry.parameter_jacobian(x, params)))
    threads(1)
    sequential = {name: _outcome(call) for name, call in calls}
    threads(3)
    for name, call in calls:
        assert _outcome(call) == sequential[name], name
    # Blocks were introduced for the functions not marked blocked, and float32 results
    # are now written block by block: both give what the whole array gave before.  (The
    # correctly rounded functions are checked against the exact definitions instead, in
    # test_fast_rounding.py, which holds for blocks and threads alike.)
    if entry.fast is not None:
        return
    with np.errstate(over="ignore"):
        whole = registry._call(entry.forward, x, params)
        assert sequential["value float32"] == _outcome(lambda: registry._finite(whole, "y", np.float32))
        if not entry.blocked:
            assert sequential["value"] == _outcome(lambda: registry._finite(whole, "y"))
            d1 = registry._call(entry.derivative, x, params)
            assert sequential["derivative"] == _outcome(lambda: registry._finite(d1, "dydx"))


def test_products_with_a_gradient_do_not_depend_on_the_threads(threads: Any) -> None:
    # vjp and parameter_vjp of the correctly rounded functions: g times the exact derivative,
    # rounded once, and the exact sum of those products, rounded once: the same bits on any
    # number of threads (and, on a sample, the exact definitions' bits).
    g = np.cos(np.arange(BIG.size, dtype=np.float64))
    x = np.clip(BIG, -700.0, 700.0)
    for entry in (activations.get("silu"), activations.get("elu"), activations.get("tanh")):
        params = entry.bind()
        results = []
        for n in (1, 2):
            threads(n)
            grads = entry.parameter_vjp(x, g, params) if entry.params else {}
            results.append((entry.vector_jacobian_product(x, g, params).tobytes(), grads))
        assert results[0] == results[1], entry.name
        sample = slice(0, BIG.size, BIG.size // 200)
        exact = correct.scaled(entry, "derivative", x[sample], g[sample], params, correct.FORMATS["float64"])
        assert np.frombuffer(results[0][0])[sample].tobytes() == exact.tobytes(), entry.name


def test_a_call_from_a_pool_thread_runs_in_that_thread(threads: Any) -> None:
    threads(3)
    sigmoid = activations.get("sigmoid")
    inner = np.linspace(-5.0, 5.0, 300_000)
    expected = sigmoid.value(inner, {}).tobytes()
    seen: list[tuple[str, bool, bool]] = []

    def forward(x: np.ndarray) -> np.ndarray:
        name = threading.current_thread().name
        if not name.startswith("activations-"):
            time.sleep(0.002)  # leave blocks to the pool threads
        same = sigmoid.value(inner, {}).tobytes() == expected  # a parallel call inside a block
        seen.append((name, registry._workers() is None, same))
        return x * 2.0

    x = np.arange(600_000, dtype=np.float64)
    done: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: done.append(_probe(forward).value(x, {})), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert done, "the nested call did not finish (deadlock?)"
    assert done[0].tobytes() == (x * 2.0).tobytes()
    assert all(same for _, _, same in seen)
    in_pool = [sequential for name, sequential, _ in seen if name.startswith("activations-")]
    assert in_pool, "no block ran in a pool thread"
    assert all(in_pool)


def test_calls_from_several_threads_at_once(threads: Any) -> None:
    threads(2)
    entry = activations.get("gelu")
    xs = [mixed(400_000, seed) for seed in range(6)]
    threads(1)
    expected = [entry.value(x, {}).tobytes() for x in xs]
    threads(2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda x: entry.value(x, {}).tobytes(), xs))
    assert got == expected


def test_the_first_failing_block_is_reported(threads: Any) -> None:
    threads(3)

    def forward(x: np.ndarray) -> np.ndarray:
        bad = x[(x == 5 * registry.CHUNK + 7) | (x == 20 * registry.CHUNK + 3)]
        if bad.size:
            raise ValueError(f"bad element {int(bad[0])}")
        return x

    with pytest.raises(ValueError, match=f"bad element {5 * registry.CHUNK + 7}$"):
        _probe(forward).value(np.arange(600_000, dtype=np.float64), {})


def test_numpy_error_state_reaches_the_pool_threads(threads: Any) -> None:
    threads(3)
    names: set[str] = set()

    def forward(x: np.ndarray) -> np.ndarray:
        name = threading.current_thread().name
        names.add(name)
        if not name.startswith("activations-"):
            time.sleep(0.002)  # leave blocks to the pool threads
        return np.log(x)

    x = np.full(600_000, 2.0)
    x[registry.CHUNK :: registry.CHUNK] = -1.0  # log(-1) is "invalid": in every block but the first
    with pytest.raises(RuntimeWarning, match="invalid"):  # filterwarnings = error
        _probe(forward).value(x, {})
    names.clear()
    with np.errstate(invalid="ignore"), pytest.raises(ResultOverflow, match=rf"y\[{registry.CHUNK}\]"):
        _probe(forward).value(x, {})  # NaN everywhere, reported as a result that does not fit
    assert any(name.startswith("activations-") for name in names)


def test_cheap_blocks_stay_in_the_calling_thread(threads: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    threads(3)
    monkeypatch.setattr(registry, "PARALLEL_BLOCK_SECONDS", 3600.0)
    names: set[str] = set()

    def forward(x: np.ndarray) -> np.ndarray:
        names.add(threading.current_thread().name)
        return x + 1.0

    x = np.arange(600_000, dtype=np.float64)
    assert _probe(forward).value(x, {}).tobytes() == (x + 1.0).tobytes()
    assert names == {threading.current_thread().name}


def test_pool_threads_are_daemons(threads: Any) -> None:
    threads(2)
    activations.get("gelu").value(BIG[:400_000], {})
    pool = [t for t in threading.enumerate() if t.name.startswith("activations-")]
    assert pool
    assert all(t.daemon for t in pool)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_set_threads_wants_a_positive_integer(n: Any) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        activations.set_threads(n)


# -- Jacobians in blocks ----------------------------------------------------------------------


def _jacobian_cases() -> Iterator[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(17)
    for v in ([40.0, 0.0], [700.0, -700.0, 0.0, 1.0], [-1e308, 1e308], [1000.0, 1000.0]):
        yield np.array(v), -1
    for x in accuracy.vector_cases("softmax"):
        if x.shape[-1] % 2 == 0:
            yield x, -1
    # Rows in several blocks (n * n > JACOBIAN_BLOCK), batches in groups, other axes.
    yield rng.standard_normal(300) * 30, -1
    yield rng.standard_normal(1000) * 5, -1
    yield rng.standard_normal((3, 400)) * np.array([[1.0], [100.0], [1e-3]]), -1
    yield rng.standard_normal((5000, 4)) * 20, -1
    yield rng.standard_normal((6, 40)) * 10, 0
    yield rng.standard_normal((4, 6, 10)) * 10, 1
    # One vector in the batch spans more than the float64 range, the other reaches far below its maximum.
    wide = rng.standard_normal((2, 300)) * 10
    wide[0, :5] = [-1e308, 1e308, 0.0, 1.0, -5.0]
    wide[1, :3] = [0.0, -900.5, -850.25]
    yield wide, -1
    yield wide.T.copy(), 0


@pytest.mark.parametrize("entry", VECTOR, ids=[e.name for e in VECTOR])
def test_jacobian_blocks_give_the_bits_of_each_vector_alone(entry: activations.Activation) -> None:
    # The Jacobian is built a group of vectors and a block of rows at a time: each vector's
    # Jacobian has the bits it has when it is sent alone.
    settings = [entry.bind()]
    if entry.name in accuracy.ALT_PARAMS:
        settings.append(entry.bind(accuracy.ALT_PARAMS[entry.name]))
    for x, axis in _jacobian_cases():
        ax = entry.check_axis(x, axis)
        n = x.shape[ax]
        vectors = np.moveaxis(x, ax, -1).reshape(-1, n)
        sample = range(0, len(vectors), max(1, len(vectors) // 8))
        for params in settings:
            # gumbel_softmax: softmax at x + its noise, which is drawn for the whole x: each vector
            # alone is softmax's at its own noisy logits
            base, base_params, own = entry, params, vectors
            if entry.prepare is not None:
                base, base_params = activations.get("softmax"), {"temperature": params["temperature"]}
                own = np.moveaxis(entry.prepared(x, params), ax, -1).reshape(-1, n)
            for dtype in (np.float64, np.float32):
                try:
                    whole = np.moveaxis(entry.jacobian(x, params, axis, dtype), ax, -2)
                except ResultOverflow:
                    overflows = [_outcome(lambda v=v: base.jacobian(v, base_params, -1, dtype)) for v in own]  # noqa: B023
                    assert any(isinstance(o, tuple) for o in overflows), (entry.name, x.shape, axis)
                    continue
                rows = whole.reshape(len(vectors), -1, n)
                for k in sample:
                    alone = base.jacobian(own[k], base_params, -1, dtype)
                    assert rows[k].tobytes() == alone.tobytes(), (entry.name, x.shape, axis, params, k)


def test_jacobian_blocks_cover_the_result() -> None:
    for batch, m, n in [(1, 5000, 5000), (7, 300, 300), (5000, 4, 4), (3, 1, 2), (0, 3, 3), (2, 0, 0)]:
        seen = np.zeros((batch, m, n), dtype=np.int64)
        for vectors, rows in vector.jacobian_blocks(batch, m, n):
            for r in rows:
                block = seen[vectors, r]
                assert block.size <= max(registry.JACOBIAN_BLOCK, n)
                block += 1
        assert (seen == 1).all()


def test_a_2000_vector_jacobian_peaks_near_its_own_size() -> None:
    x = np.random.default_rng(2).standard_normal(2000) * 5
    for name in ("softmax", "log_softmax", "softmin"):
        entry = activations.get(name)
        for dtype in (np.float64, np.float32):
            size = 2000 * 2000 * np.dtype(dtype).itemsize
            peak = peak_bytes(lambda: entry.jacobian(x, entry.bind(), -1, dtype))  # noqa: B023
            # (the result, a block of rows in long double with bounds, the flagged entries)
            assert peak <= 1.75 * size, (name, np.dtype(dtype).name, peak / size)


def test_jacobian_intermediates_stay_in_extended_precision() -> None:
    # The blocks keep the one rounding: the diagonal of [40, 0] is the tiny s0 s1, not 0.
    jac = activations.get("softmax").jacobian(np.array([40.0, 0.0]), {"temperature": 1.0})
    s = np.exp(EXTENDED(-40.0)) / (1 + np.exp(EXTENDED(-40.0)))
    assert jac[0, 0] == np.float64(s * (1 - s))


def test_softmax_value_blocks_give_the_bits_of_each_row_alone() -> None:
    # Rows longer than a block (summed a column block at a time), T != 1, differences beyond the
    # float64 range: every row of the batch has the bits it has alone.
    rng = np.random.default_rng(23)
    wide = rng.standard_normal((4, 20000)) * 30
    wide[1, :2] = [-1e308, 1e308]
    cases = [
        (rng.standard_normal((3, 50000)) * 30, 0.7),  # rows longer than a block
        (rng.standard_normal((200, 300)) * 30, 3.0),
        (wide, 1.0),
        (wide, 0.5),
    ]
    for x, temperature in cases:
        for name in ("softmax", "softmin"):
            entry = activations.get(name)
            got = entry.value(x, {"temperature": temperature})
            for k in range(0, len(x), max(1, len(x) // 4)):
                alone = entry.value(x[k], {"temperature": temperature})
                assert got[k].tobytes() == alone.tobytes(), (name, x.shape, temperature, k)


# -- memory estimates -------------------------------------------------------------------------


def _estimate_cases() -> Iterator[tuple[activations.Activation, str, tuple[int, ...], int]]:
    for entry in ENTRIES:
        for quantity in registry.QUANTITIES:
            if quantity == ("jacobian" if entry.kind == "elementwise" else "derivative"):
                continue
            if quantity == "second_derivative" and entry.kind == "vector":
                continue
            if quantity.startswith("parameter") and not entry.learnable:
                continue
            if entry.kind == "elementwise":
                shapes = [((50_000,), -1), ((600, 1000), -1)]
                if entry.name == "rational" and quantity.startswith("parameter"):
                    # ten derivatives an element, many on the exact route in rationals: minutes under
                    # tracemalloc at 600k elements, its per-element figure the same at 50k, and its
                    # VJP's (three minutes at 50k) at 10k.  (The Jacobian's estimate is not an upper
                    # bound at 10k with the other parameters: 6.0 MB measured, 5.6 MB estimated.)
                    shapes = [((10_000 if quantity == "parameter_vjp" else 50_000,), -1)]
            elif quantity == "jacobian":
                shapes = [((2000,), -1), ((100, 100), -1), ((2, 30000), 0), ((3000, 8), -1)]
            else:
                # (Correctly rounded: mixed magnitudes send a vector in a hundred to the exact route,
                # which works out the whole vector's sums: these shapes keep the test to seconds.)
                shapes = [((300, 300), -1), ((200, 150), 0), ((20000,), -1)]
            for shape, axis in shapes:
                yield entry, quantity, shape, axis


def _peak(
    entry: activations.Activation,
    quantity: str,
    shape: tuple[int, ...],
    axis: int,
    dtype: Any,
    given: dict[str, float] | None = None,
) -> int:
    x, g = inputs(entry, shape, axis)
    if dtype is np.float32:
        x = np.clip(x, -80.0, 80.0)
    elif entry.name in {"exponential", "relu_squared", "star_relu", "selu", "xielu"}:
        x = np.clip(x, -700.0, 700.0)
    params = entry.bind(given)
    calls: dict[str, Callable[[], object]] = {
        "value": lambda: entry.value(x, params, axis, dtype),
        "derivative": lambda: entry.jacobian(x, params, axis, dtype),
        "jacobian": lambda: entry.jacobian(x, params, axis, dtype),
        "second_derivative": lambda: entry.second_derivative(x, params, dtype),
        "vjp": lambda: entry.vector_jacobian_product(x, g, params, axis, dtype),
        "parameter_jacobian": lambda: entry.parameter_jacobian(x, params, axis, dtype),
        "parameter_vjp": lambda: entry.parameter_vjp(x, g, params, axis, dtype),
    }
    return peak_bytes(calls[quantity])


KINDS_AND_QUANTITIES = [
    *[("elementwise", q) for q in ("value", "derivative", "second_derivative", "vjp")],
    *[("elementwise", q) for q in ("parameter_jacobian", "parameter_vjp")],
    *[("vector", q) for q in ("value", "jacobian", "vjp", "parameter_jacobian", "parameter_vjp")],
]


@pytest.mark.parametrize(
    ("kind", "quantity"), KINDS_AND_QUANTITIES, ids=[f"{k}-{q}" for k, q in KINDS_AND_QUANTITIES]
)
def test_workspace_estimate_bounds_the_peak(kind: str, quantity: str, threads: Any) -> None:
    threads(2)
    # The estimate is the worst case, every element left to the bounded route (inputs the
    # compiled tier cannot decide, or a machine without it): measured without the compiled tier,
    # which only ever takes less (a chunk's results and flags, and the leftovers' bounded route).
    kernel = compiled.use(False)
    try:
        _estimate_bounds_the_peak(kind, quantity)
    finally:
        compiled.use(kernel)


def _estimate_bounds_the_peak(kind: str, quantity: str) -> None:
    cases = [c for c in _estimate_cases() if c[0].kind == kind and c[1] == quantity]
    assert cases
    largest: dict[tuple[tuple[int, ...], int], int] = {}
    estimates: dict[tuple[tuple[int, ...], int], list[int]] = {}
    smallest: dict[str, int] = {}
    for entry, _, shape, _ in cases:
        smallest[entry.name] = min(smallest.get(entry.name, math.prod(shape)), math.prod(shape))
    for entry, _, shape, axis in cases:
        # One estimate for both dtypes: at least either peak, and compared with the larger.
        estimate = entry.workspace_bytes(quantity, shape, axis)
        # ... and for every parameter value: softmax with T != 1, for one, takes another path.
        runs = [(np.float64, None), (np.float32, None)]
        if entry.name in accuracy.ALT_PARAMS:
            runs.append((np.float64, dict(accuracy.ALT_PARAMS[entry.name])))
        if shape == (2000,):  # 4M-element Jacobians: float64 for all, float32 for one
            runs = runs if entry.name == "softmax" else runs[:1]
        elif math.prod(shape) > smallest[entry.name]:
            # The other dtype and parameters at the function's smallest shape only: each run takes
            # the bounded route under tracemalloc, and at every shape they were half an hour of CI.
            runs = runs[:1]
        peak = 0
        for dtype, given in runs:
            measured = _peak(entry, quantity, shape, axis, dtype, given)
            assert measured <= estimate, (
                entry.name,
                shape,
                axis,
                np.dtype(dtype).name,
                given,
                measured,
                estimate,
            )
            peak = max(peak, measured)
        # The estimate follows each function where its own figures enter it: vector
        # functions, and elementwise arrays large enough for the result to dominate.
        if kind == "vector" or shape == (600, 1000):
            assert estimate <= 4 * peak, (entry.name, shape, axis, peak, estimate)
        largest[shape, axis] = max(largest.get((shape, axis), 0), peak)
        estimates.setdefault((shape, axis), []).append(estimate)
    # Elsewhere the figures are those of the kind's heaviest function: not far above its peak.
    for key, values in estimates.items():
        assert max(values) <= 4 * largest[key], (key, max(values), largest[key])


def test_workspace_estimate_refuses_what_the_call_refuses() -> None:
    with pytest.raises(activations.NotSupported):
        activations.get("softmax").workspace_bytes("second_derivative", (3,), -1)
    with pytest.raises(activations.NotSupported):
        activations.get("relu").workspace_bytes("parameter_jacobian", (3,), -1)
    with pytest.raises(activations.ActivationError, match="odd"):
        activations.get("glu").workspace_bytes("jacobian", (3,), -1)
    with pytest.raises(activations.ActivationError, match="out of range"):
        activations.get("softmax").workspace_bytes("value", (3,), 1)
    with pytest.raises(ValueError, match="unknown quantity"):
        activations.get("relu").workspace_bytes("hessian", (3,), -1)
    # Elementwise functions ignore the axis; "derivative" and "jacobian" are one quantity.
    relu = activations.get("relu")
    assert relu.workspace_bytes("value", (), 5) > 0
    assert relu.workspace_bytes("derivative", (10, 10), 7) == relu.workspace_bytes("jacobian", (10, 10), -1)
    softmax = activations.get("softmax")
    assert softmax.workspace_bytes("jacobian", (4, 5), 0) == softmax.workspace_bytes("derivative", (4, 5), -2)
