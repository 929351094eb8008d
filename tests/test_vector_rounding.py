"""The vector functions (softmax, log_softmax, softmin, glu, the gated units swiglu, geglu, geglu_tanh
and reglu, sparsemax) return correctly rounded results:
the value, the Jacobian, the vector-Jacobian product (VJP), the temperature derivatives dy/dT and their
sum grad_params, bit for bit (the sign of a zero included) the exact value rounded once, to nearest
with ties to even, in float64 and float32 (through the core's public API) and in float16 and bfloat16
(through HTTP).

The expected numbers come from tests/reference.py (``VECTOR_ITEMS``: mpmath at rising precision,
exact zeros and exact rationals decided by exact reasoning, never by smallness) rounded by
tests/rounding.py, both written independently of the service.  An exact 0 is +0; a negative true
value below the format's smallest subnormal is -0; a true value beyond the format is refused (a
ResultOverflow, or a 422) naming an element where it is.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import httpx
import mpmath as mp
import numpy as np
import pytest

from service import activations
from service.activations.registry import ResultOverflow
from service.app import create_app
from service.settings import Settings
from tests import reference, rounding
from tests.conftest import asgi_client

GATED = ("swiglu", "geglu", "geglu_tanh", "reglu")  # a gate_half choice
NAMES = ("softmax", "log_softmax", "softmin", "glu", *GATED, "sparsemax", "gumbel_softmax")
FAMILY = ("softmax", "log_softmax", "softmin")  # with a temperature
TEMPERED = (*FAMILY, "gumbel_softmax")  # also with a temperature (and gumbel_softmax a seed)
HALVING = reference.HALVING  # y has half x's length along the axis
CORE = {"float64": np.float64, "float32": np.float32}
SIXTEEN = ("float16", "bfloat16")
FORMATS = (*CORE, *SIXTEEN)
QUANTITIES = ("value", "jacobian", "vjp", "dydT", "grad_params")
TEMPERATURES = (1.0, 0.7, 3.0, 1e-3, 1e3)
#: The largest finite number and the smallest subnormal of each format.
LARGEST = {
    f: float((2 - Fraction(2) ** (1 - p)) * Fraction(2) ** e) for f, (p, _, e) in rounding.FORMATS.items()
}
SMALLEST = {f: 2.0**q for f, (_, q, _) in rounding.FORMATS.items()}
#: A range of x / T that crosses exp's underflow in each format.
WINDOW = {"float64": 760.0, "float32": 110.0, "float16": 20.0, "bfloat16": 110.0}

#: Where each quantity is in a /derivative or /activate response, and the name the core's refusal uses.
FIELDS = {
    "value": "y",
    "jacobian": "dydx",
    "vjp": "grad_x",
    "dydT": "dydparams.temperature",
    "grad_params": "grad_params.temperature",
}


def quantities(name: str) -> tuple[str, ...]:
    return QUANTITIES if name in TEMPERED else QUANTITIES[:3]


# -- numbers of a format ---------------------------------------------------------------------------


def to_format(a: Any, fmt: str) -> np.ndarray:
    """a rounded once to fmt by the tests' own rounding; beyond the range, the largest finite number."""
    flat = np.asarray(a, dtype=np.float64).ravel()
    out = np.array([rounding.round_to(Fraction(float(v)), fmt) for v in flat])
    out = np.where(np.isinf(out), np.copysign(LARGEST[fmt], out), out)
    return out.reshape(np.shape(a))


def bits(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def read_back(values: Any, fmt: str) -> np.ndarray:
    """JSON numbers of a 16-bit format (bfloat16 travels as float32): the number of the format each
    names, with the sign of a zero kept."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    out = np.array([math.copysign(rounding.round_to(Fraction(float(v)), fmt), v) for v in flat])
    return out.reshape(np.shape(values))


# -- the cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    x: np.ndarray  # numbers of the format, 1-D or 2-D
    axis: int
    temperature: float | None  # None: the function has none
    g: np.ndarray  # y's shape, numbers of the format
    jacobian: bool  # short enough to compare the whole Jacobian
    gate_half: float | None = None  # the gated units' choice (None: the function has none)
    seed: float | None = None  # gumbel_softmax's

    def params(self) -> dict[str, float]:
        out = {} if self.temperature is None else {"temperature": self.temperature}
        if self.gate_half is not None:
            out["gate_half"] = self.gate_half
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def describe(self) -> str:
        t = "" if self.temperature is None else f" T={self.temperature!r}"
        t += "" if self.gate_half is None else f" gate_half={self.gate_half:g}"
        t += "" if self.seed is None else f" seed={self.seed:g}"
        axis = f" axis={self.axis}" if self.x.ndim > 1 else ""
        return f"x={self.x.tolist()}{t}{axis}"


def _length(rng: np.random.Generator, name: str, short: bool) -> int:
    n = int(rng.integers(1, 9) if short else rng.integers(9, 41))
    if name in HALVING:
        n = max(2, n + n % 2)
    return n


def _vector(rng: np.random.Generator, n: int, style: int, fmt: str) -> np.ndarray:
    big, tiny, window = LARGEST[fmt], SMALLEST[fmt], WINDOW[fmt]
    sign = rng.choice([-1.0, 1.0], n)
    if style == 0:  # one scale per vector, 1e-3 to 1e3
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3.0, 3.0)
    elif style == 1:  # magnitudes from 1e-3 to 1e3 within the vector
        x = sign * 10.0 ** rng.uniform(-3.0, 3.0, n)
    elif style == 2:  # moderate values, a few far out
        x = 5.0 * rng.standard_normal(n)
        far = rng.random(n) < 0.2
        x[far] = sign[far] * rng.uniform(0.1, 1.0, int(far.sum())) * min(800.0, big)
    elif style == 3:  # across exp's underflow
        x = rng.uniform(-window, window, n)
    else:  # the edges of the format: huge, tiny, differences beyond its range
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3.0, 3.0)
        specials = [big, -big, tiny, -tiny, big / 3, -big / 2, 0.0]
        for i in rng.choice(n, size=min(n, int(rng.integers(1, 4))), replace=False):
            x[i] = specials[int(rng.integers(len(specials)))]
    return x


def _gradient(rng: np.random.Generator, m: int, fmt: str, k: int) -> np.ndarray:
    top = 2.0 if fmt in CORE else 1.0
    g = rng.standard_normal(m) * 10.0 ** rng.uniform(-2.0, top)
    g[rng.random(m) < 0.1] = 0.0
    if k % 6 == 0:
        g[:] = g[0]  # equal gradients: exact zeros of the softmax VJP where x ties
    return g


@functools.cache
def cases(name: str, fmt: str) -> tuple[Case, ...]:
    """Seeded vectors: lengths 1 to 40 (the short ones with their Jacobians), mixed scales, the
    format's edges, ties, every temperature, and 2-D inputs along axis 0 and in batches."""
    rng = np.random.default_rng(zlib.crc32(f"{name}/{fmt}".encode()))
    count = 20 if fmt in CORE else 14
    out = []
    for k in range(count):
        short = k % 2 == 0
        n = _length(rng, name, short)
        x = _vector(rng, n, k % 5, fmt)
        if k % 7 == 3 and n > 2:  # ties
            x[: n // 2] = x[n // 2 : 2 * (n // 2)]
        if k % 9 == 4:
            x[:] = x[0]  # all equal
        t = TEMPERATURES[(k // 2) % len(TEMPERATURES)] if name in TEMPERED else None
        m = n // 2 if name in HALVING else n
        half = (1.0 if k % 3 == 1 else 2.0) if name in GATED else None
        seed = float(k * 7919) if name == "gumbel_softmax" else None
        g = to_format(_gradient(rng, m, fmt, k), fmt)
        out.append(Case(to_format(x, fmt), -1, t, g, short, half, seed))
    # Along axis 0 of a 2-D input, and a batch along the last axis with a row of the format's edges.
    n = 4 if name in HALVING else 5
    x = to_format(rng.standard_normal((n, 3)) * 3.0, fmt)
    x[1, 2] = x[0, 2]
    m = n // 2 if name in HALVING else n
    t = 0.7 if name in TEMPERED else None
    half = 1.0 if name in GATED else None
    seed = 2.0**53 if name == "gumbel_softmax" else None
    out.append(Case(x, 0, t, to_format(rng.standard_normal((m, 3)), fmt), True, half, seed))
    n = 10
    x = np.stack([_vector(rng, n, s, fmt) for s in (0, 4, 3, 1)])
    x[1, :2] = [LARGEST[fmt], -LARGEST[fmt]]
    m = n // 2 if name in HALVING else n
    t = 3.0 if name in TEMPERED else None
    half = 2.0 if name in GATED else None
    seed = 1.0 if name == "gumbel_softmax" else None
    out.append(Case(to_format(x, fmt), -1, t, to_format(rng.standard_normal((4, m)), fmt), False, half, seed))
    return tuple(out)


# -- the expected results --------------------------------------------------------------------------


def expected(name: str, fmt: str, case: Case) -> dict[str, np.ndarray]:
    """Each quantity correctly rounded to fmt, in the layout the service returns it in (+-inf where
    the true value is beyond the format)."""
    items = reference.VECTOR_ITEMS[name]
    params = case.params()
    x = case.x
    if name == "gumbel_softmax":  # softmax of x + g, the noise drawn for the whole x in its layout
        x = case.x + reference.gumbel_noise(case.x.shape, params.pop("seed", 0.0))
        items = reference.VECTOR_ITEMS["softmax"]
    xm = np.moveaxis(x, case.axis, -1)
    gm = np.moveaxis(case.g, case.axis, -1)
    batch, n = xm.shape[:-1], xm.shape[-1]
    rows = [list(map(float, r)) for r in xm.reshape(-1, n)]
    grads = [list(map(float, r)) for r in gm.reshape(-1, gm.shape[-1])]
    parts: dict[str, list[reference.Item]] = {"value": [], "jacobian": [], "vjp": [], "dydT": []}
    per_row_t: list[reference.Item] = []
    for r, gr in zip(rows, grads, strict=True):
        parts["value"] += items.value(r, **params)
        if case.jacobian:
            parts["jacobian"] += items.jacobian(r, **params)
        parts["vjp"] += items.vjp(r, gr, **params)
        if items.dydt is not None and items.grad_t is not None:
            parts["dydT"] += items.dydt(r, **params)
            per_row_t.append(items.grad_t(r, gr, **params))
    flat: list[reference.Item] = [v for q in parts.values() for v in q]
    if per_row_t:
        flat.append(reference.add_items(per_row_t))
    rounded = np.array(reference.correctly_rounded(flat, [fmt])[fmt])
    out: dict[str, np.ndarray] = {}
    ax = case.axis % case.x.ndim  # where i is in J's layout, y.shape + (n,)
    start = 0
    m = len(parts["value"]) // max(1, len(rows))
    for q, values in parts.items():
        if not values:
            continue
        a = rounded[start : start + len(values)]
        start += len(values)
        if q == "jacobian":
            out[q] = np.moveaxis(a.reshape(*batch, m, n), -2, ax)
        elif q == "vjp":
            out[q] = np.moveaxis(a.reshape(*batch, n), -1, case.axis)
        else:
            out[q] = np.moveaxis(a.reshape(*batch, m), -1, case.axis)
    if per_row_t:
        out["grad_params"] = rounded[start : start + 1].reshape(())
    return out


@functools.cache
def expected_all(name: str, fmt: str) -> tuple[dict[str, np.ndarray], ...]:
    return tuple(expected(name, fmt, c) for c in cases(name, fmt))


# -- asking the service ----------------------------------------------------------------------------


@dataclass
class Answer:
    value: np.ndarray | None = None
    refused: str | None = None  # the field a refusal names
    error: str | None = None  # anything else that went wrong


def core_answer(name: str, quantity: str, case: Case, dtype: Any) -> Answer:
    entry = activations.get(name)
    p = entry.bind(case.params())
    x, g = case.x.astype(dtype), case.g.astype(dtype)
    calls: dict[str, Callable[[], Any]] = {
        "value": lambda: entry.value(x, p, case.axis, dtype),
        "jacobian": lambda: entry.jacobian(x, p, case.axis, dtype),
        "vjp": lambda: entry.vector_jacobian_product(x, g, p, case.axis, dtype),
        "dydT": lambda: entry.parameter_jacobian(x, p, case.axis, dtype)["temperature"],
        "grad_params": lambda: entry.parameter_vjp(x, g, p, case.axis, dtype)["temperature"],
    }
    try:
        with np.errstate(all="ignore"):
            got = calls[quantity]()
    except ResultOverflow as exc:
        return Answer(refused=exc.field)
    except Exception as exc:
        return Answer(error=f"{type(exc).__name__}: {str(exc)[:200]}")
    if quantity != "grad_params" and np.asarray(got).dtype != np.dtype(dtype):
        return Answer(error=f"dtype {np.asarray(got).dtype}, not {np.dtype(dtype).name}")
    return Answer(np.asarray(got, dtype=np.float64))


async def http_answer(client: httpx.AsyncClient, name: str, quantity: str, case: Case, fmt: str) -> Answer:
    body: dict[str, Any] = {
        "activation": name,
        "x": case.x.tolist(),
        "dtype": fmt,
        "axis": case.axis,
        "params": case.params(),
    }
    if quantity in ("vjp", "grad_params"):
        body["grad"] = case.g.tolist()
    if quantity in ("dydT", "grad_params"):
        body["wrt"] = "params"
    r = await client.post("/activate" if quantity == "value" else "/derivative", json=body)
    if r.status_code == 422 and r.json().get("errors"):
        field = r.json()["errors"][0]["field"]
        if field.split("[")[0].split(".")[0] in ("y", "dydx", "grad_x", "dydparams", "grad_params"):
            return Answer(refused=field)
        return Answer(error=f"422 at {field!r}: {r.json()['errors'][0]['reason'][:80]}")
    if r.status_code != 200:
        return Answer(error=f"{r.status_code}: {r.text[:200]}")
    data = r.json()
    if data.get("dtype") != fmt:
        return Answer(error=f"dtype {data.get('dtype')}, not {fmt}")
    raw = {
        "value": lambda: data["y"],
        "jacobian": lambda: data["dydx"],
        "vjp": lambda: data["grad_x"],
        "dydT": lambda: data["dydparams"]["temperature"],
        "grad_params": lambda: data["grad_params"]["temperature"],
    }[quantity]()
    return Answer(read_back(raw, fmt))


def _index(field: str) -> str:
    return field[field.index("[") :] if "[" in field else ""


def compare(name: str, quantity: str, fmt: str, case: Case, want: np.ndarray, got: Answer) -> list[str]:
    """What is wrong with the answer (at most 3 elements), as readable lines."""
    head = f"{name} {quantity} {fmt} {case.describe()}"
    if quantity in ("vjp", "grad_params"):
        head += f" g={case.g.tolist()}"
    if got.error is not None:
        return [f"{head}: {got.error}"]
    beyond = np.argwhere(np.isinf(want))
    if beyond.size or (quantity == "grad_params" and np.isinf(want)):
        allowed = {"".join(f"[{int(i)}]" for i in idx) for idx in beyond}
        if got.refused is None:
            return [f"{head}: expected a refusal (true result beyond {fmt} at {sorted(allowed)[:3]})"]
        stem = FIELDS[quantity].split(".")[0]
        if not got.refused.startswith(stem) or (
            quantity != "grad_params" and _index(got.refused) not in allowed
        ):
            return [f"{head}: refusal names {got.refused!r}; beyond {fmt} at {sorted(allowed)[:3]}"]
        return []
    if got.refused is not None:
        return [f"{head}: refused at {got.refused!r}; expected {want.ravel()[:6].tolist()}"]
    assert got.value is not None
    if got.value.shape != want.shape:
        return [f"{head}: shape {got.value.shape}, expected {want.shape}"]
    wrong = np.argwhere(bits(got.value) != bits(want))
    return [
        f"{head} at {tuple(int(i) for i in idx)}: expected {want[tuple(idx)]!r}, got {got.value[tuple(idx)]!r}"
        for idx in wrong[:3]
    ]


def report(problems: Sequence[str], total: int) -> str:
    return f"{len(problems)} of {total} results wrong, the first:\n" + "\n".join(problems[:8])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(Settings.model_construct())) as c:
        yield c


# -- 1. seeded random vectors ------------------------------------------------------------------------

CORE_PARAMS = [(n, f, q) for n in NAMES for f in CORE for q in quantities(n)]
HTTP_PARAMS = [(n, f, q) for n in NAMES for f in SIXTEEN for q in quantities(n)]


def _wanted(name: str, fmt: str, quantity: str) -> list[tuple[Case, np.ndarray]]:
    return [
        (c, e[quantity])
        for c, e in zip(cases(name, fmt), expected_all(name, fmt), strict=True)
        if quantity in e
    ]


@pytest.mark.parametrize(("name", "fmt", "quantity"), CORE_PARAMS)
def test_core_results_are_correctly_rounded(name: str, fmt: str, quantity: str) -> None:
    problems: list[str] = []
    wanted = _wanted(name, fmt, quantity)
    for case, want in wanted:
        problems += compare(name, quantity, fmt, case, want, core_answer(name, quantity, case, CORE[fmt]))
    assert not problems, report(problems, len(wanted))


@pytest.mark.parametrize(("name", "fmt", "quantity"), HTTP_PARAMS)
async def test_16_bit_results_are_correctly_rounded(
    client: httpx.AsyncClient, name: str, fmt: str, quantity: str
) -> None:
    problems: list[str] = []
    wanted = _wanted(name, fmt, quantity)
    for case, want in wanted:
        problems += compare(
            name, quantity, fmt, case, want, await http_answer(client, name, quantity, case, fmt)
        )
    assert not problems, report(problems, len(wanted))


def test_the_cases_reach_what_they_should() -> None:
    """The grid holds exact zeros, exact rationals, underflows to -0, refusals, every temperature,
    lengths 1 to 40 and both layouts: a check that the tests above are not easier than intended."""
    seen: dict[str, int] = {"+0": 0, "-0": 0, "refused": 0, "subnormal": 0}
    lengths, temperatures, axes = set(), set(), set()
    for name in NAMES:
        for fmt in FORMATS:
            for case, want in zip(cases(name, fmt), expected_all(name, fmt), strict=True):
                lengths.add(case.x.shape[case.axis])
                temperatures.add(case.temperature)
                axes.add((case.x.ndim, case.axis))
                for a in want.values():
                    seen["+0"] += int(np.sum((a == 0) & ~np.signbit(a)))
                    seen["-0"] += int(np.sum((a == 0) & np.signbit(a)))
                    seen["refused"] += int(np.isinf(a).any())
                    seen["subnormal"] += int(
                        np.sum((a != 0) & (np.abs(a) < SMALLEST[fmt] * 2.0 ** rounding.FORMATS[fmt][0]))
                    )
    assert min(seen.values()) > 5, seen
    assert min(lengths) == 1, sorted(lengths)
    assert max(lengths) >= 36, sorted(lengths)
    assert set(TEMPERATURES) <= temperatures
    assert {(1, -1), (2, 0), (2, -1)} <= axes


def test_the_reference_agrees_with_the_textbook_formulas() -> None:
    """VECTOR_ITEMS (exact zeros, rearranged sums) against the plain formulas of reference.VECTOR at
    60 digits, and its temperature derivatives against mpmath's numerical differentiation."""
    rng = np.random.default_rng(3)
    for k in range(12):
        n = 2 * int(rng.integers(1, 5))
        x = (rng.standard_normal(n) * 3.0).tolist()
        if k % 3 == 0:
            x[1] = x[0]
        g = rng.standard_normal(n).tolist()
        t = (1.0, 0.7, 3.0)[k % 3]
        for name in NAMES:
            items = reference.VECTOR_ITEMS[name]
            params: dict[str, float] = {"temperature": t} if name in TEMPERED else {}
            if name in GATED:
                params["gate_half"] = 1.0 if k % 2 else 2.0
            if name == "gumbel_softmax":
                params["seed"] = float(k)
            gy = g[: n // 2] if name in HALVING else g
            with mp.workdps(60):
                old = reference.VECTOR[name]
                jac = old.jacobian(x, **params)
                textbook = [
                    *old.value(x, **params),
                    *(v for row in jac for v in row),
                    *reference.vjp(jac, gy),
                ]
                ours = [*items.value(x, **params), *items.jacobian(x, **params), *items.vjp(x, gy, **params)]
                if items.dydt is not None and items.grad_t is not None:
                    rest = {key: v for key, v in params.items() if key != "temperature"}
                    d = [
                        mp.diff(lambda s, i=i, f=old.value, x=x, rest=rest: f(x, s, **rest)[i], mp.mpf(t))
                        for i in range(n)
                    ]
                    textbook += [*d, mp.fsum(mp.mpf(gi) * di for gi, di in zip(g, d, strict=True))]
                    ours += [*items.dydt(x, **params), items.grad_t(x, g, **params)]
                for k2, (a, b) in enumerate(zip(ours, textbook, strict=True)):
                    v = mp.mpf(a.numerator) / a.denominator if isinstance(a, Fraction) else a()
                    assert abs(v - b) <= mp.mpf(10) ** -25 * max(1, abs(b)), (name, x, g, t, k2, v, b)


# -- 2. the audit's cases ------------------------------------------------------------------------------


async def answers(
    client: httpx.AsyncClient, name: str, quantity: str, case_of: Callable[[str], Case | None]
) -> dict[str, tuple[Case, np.ndarray, Answer]]:
    """For each format where ``case_of`` gives a case: (case, expected, the service's answer)."""
    out = {}
    for fmt in FORMATS:
        case = case_of(fmt)
        if case is None:
            continue
        want = expected(name, fmt, case)[quantity]
        got = (
            core_answer(name, quantity, case, CORE[fmt])
            if fmt in CORE
            else await http_answer(client, name, quantity, case, fmt)
        )
        out[fmt] = (case, want, got)
    return out


def every_format(
    x: Sequence[float],
    g: Sequence[float] | None = None,
    temperature: float | None = None,
    jacobian: bool = True,
    rounded: bool = False,
) -> Callable[[str], Case | None]:
    """The same numbers in every format where they are numbers of it (``rounded``: in every format,
    rounded to it, beyond its range its largest number)."""

    def case_of(fmt: str) -> Case | None:
        xs, gs = np.array(x, dtype=np.float64), np.array(g if g is not None else x, dtype=np.float64)
        if rounded:
            xs, gs = to_format(xs, fmt), to_format(gs, fmt)
        if not (np.array_equal(to_format(xs, fmt), xs) and np.array_equal(to_format(gs, fmt), gs)):
            return None
        return Case(xs, -1, temperature, gs, jacobian)

    return case_of


def assert_all_right(name: str, quantity: str, results: dict[str, tuple[Case, np.ndarray, Answer]]) -> None:
    problems = [p for fmt, (c, w, a) in results.items() for p in compare(name, quantity, fmt, c, w, a)]
    assert not problems, "\n".join(problems)


async def test_log_softmax_vjp_of_equal_components_and_gradients_is_exactly_zero(
    client: httpx.AsyncClient,
) -> None:
    # (g_j - s_j sum g) / T = 1 - (1/3) 3 = 0 exactly; the audit found 5.4e-20.
    results = await answers(client, "log_softmax", "vjp", every_format([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]))
    assert len(results) == 4
    for _, want, _ in results.values():
        assert bits(want).tolist() == [0, 0, 0]  # +0, not -0
    assert_all_right("log_softmax", "vjp", results)


async def test_softmax_vjp_is_exactly_zero_where_the_gradient_is_the_mean(client: httpx.AsyncClient) -> None:
    # s_j (g_j - sum s_i g_i) = (1/3)(g_j - 2): -1/3, exactly 0 (+0), 1/3.
    results = await answers(client, "softmax", "vjp", every_format([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]))
    assert len(results) == 4
    assert results["float64"][1].tolist() == [-1 / 3, 0.0, 1 / 3]
    for _, want, _ in results.values():
        assert bits(want)[1] == 0
    assert_all_right("softmax", "vjp", results)


async def test_softmax_family_vjp_zeros_with_tied_components(client: httpx.AsyncClient) -> None:
    # x ties in groups {0, 2} and {1}: at j = 0 the group sums of g_j - g_i are 0 + (2 - 2) = 0 and 0;
    # softmin's VJP is that of softmax at -x with the sign flipped, still +0.
    for name in ("softmax", "softmin"):
        for t in (1.0, 0.7):
            results = await answers(client, name, "vjp", every_format([1.5, -2.0, 1.5], [2.0, 2.0, 2.0], t))
            for _, want, _ in results.values():
                assert bits(want).tolist() == [0, 0, 0]
            assert_all_right(name, "vjp", results)


async def test_temperature_derivatives_are_zero_only_for_equal_components(client: httpx.AsyncClient) -> None:
    for name in FAMILY:
        for quantity in ("dydT", "grad_params"):
            results = await answers(
                client, name, quantity, every_format([0.25] * 4, [1.0, -2.0, 3.0, 0.5], 0.7)
            )
            for _, want, _ in results.values():
                assert not bits(want).any()
            assert_all_right(name, quantity, results)
            # one component apart: no zero
            results = await answers(
                client, name, quantity, every_format([0.25, 0.25, 0.25, 0.5], [1.0] * 4, 3.0)
            )
            assert_all_right(name, quantity, results)


async def test_glu_of_a_tiny_gate_is_a_normal_number(client: httpx.AsyncClient) -> None:
    results = await answers(client, "glu", "value", every_format([700.0, -712.5], [1.0]))
    assert results["float64"][1].tolist() == [2.5720516407230413e-307]  # 700 sigmoid(-712.5), not 0
    assert_all_right("glu", "value", results)


async def test_glu_vjp_at_the_largest_magnitudes_is_not_refused(client: httpx.AsyncClient) -> None:
    case = Case(np.array([-1e308, 0.0]), -1, None, np.array([2.5]), True)
    want = expected("glu", "float64", case)["vjp"]
    assert want.tolist() == [1.25, -6.25e307]
    assert_all_right("glu", "vjp", {"float64": (case, want, core_answer("glu", "vjp", case, np.float64))})
    # the same at each format's largest number
    results = await answers(
        client,
        "glu",
        "vjp",
        lambda fmt: Case(np.array([-LARGEST[fmt], 0.0]), -1, None, np.array([2.5]), True),
    )
    assert_all_right("glu", "vjp", results)


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("gate_half", [1.0, 2.0])
async def test_gated_products_on_a_midpoint_round_to_the_side_of_the_tail(
    client: httpx.AsyncClient, name: str, gate_half: float
) -> None:
    """a * act(b) and g * a * act'(b) where a * b (or g * a) is a midpoint of the format and act(b)
    or act'(b) differs from b or 1 by far less than any working precision (e^-63000 for gelu_tanh
    at 96; e^-24576 for silu at 24576, beyond the exact route's widest precision): the tail's side
    decides, not ties to even."""
    a = 1.0 + 2.0**-52  # a * 96 = 96 + 1.5 units, a midpoint whose even neighbour is above it
    g = 1.0 + 3 * 2.0**-52  # g * 96 = 96 + 4.5 units, a midpoint whose even neighbour is below it
    # (linear half, gate, g): y's midpoints with act(b) just below b, the VJP's with act'(b) just above 1
    cases = [(a, 96.0, 1.0), (a, 1536.0, 1.0), (a, 24576.0, 1.0), (96.0, 1000.0, g), (96.0, 24576.0, g)]
    for linear, gate, grad in cases:
        x = [linear, gate] if gate_half == 2.0 else [gate, linear]
        case = Case(np.array(x), -1, None, np.array([grad]), True, gate_half)
        for quantity in ("value", "jacobian", "vjp"):
            want = expected(name, "float64", case)[quantity]
            got = core_answer(name, quantity, case, np.float64)
            assert not compare(name, quantity, "float64", case, want, got)
    # y = a * act(96) lies below the midpoint a * 96 for every smooth gate: one unit above 96
    if name != "reglu":
        x = [a, 96.0] if gate_half == 2.0 else [96.0, a]
        y = core_answer(
            name, "value", Case(np.array(x), -1, None, np.array([1.0]), True, gate_half), np.float64
        )
        assert y.value is not None
        assert y.value.tolist() == [96.0 + 2.0**-46]
    # float16: g * a = 0.9375 * -129.5 = -121.40625, a midpoint; gelu'(362.25) = 1 + 2^-94660
    x16 = [-129.5, 362.25] if gate_half == 2.0 else [362.25, -129.5]
    results = await answers(
        client,
        name,
        "vjp",
        lambda fmt: (
            Case(np.array(x16), -1, None, np.array([0.9375]), True, gate_half) if fmt == "float16" else None
        ),
    )
    assert_all_right(name, "vjp", results)
    if name != "reglu":
        gate_grad = results["float16"][2].value
        assert gate_grad is not None
        assert gate_grad[1 if gate_half == 2.0 else 0] == -121.4375  # away from the even -121.375


@pytest.mark.parametrize("name", GATED)
async def test_gated_units_refuse_what_they_cannot_take(client: httpx.AsyncClient, name: str) -> None:
    r = await client.post("/activate", json={"activation": name, "x": [1.0, 2.0], "params": {"gate_half": 3}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "params.gate_half"
    assert "must be 1 or 2" in r.json()["errors"][0]["reason"]
    r = await client.post("/activate", json={"activation": name, "x": [1.0, 2.0, 3.0]})
    assert r.status_code == 422
    assert f"{name} splits x in halves" in r.json()["errors"][0]["reason"]
    r = await client.post("/derivative", json={"activation": name, "x": [1.0, 2.0], "wrt": "params"})
    assert r.status_code == 422
    assert "no parameters to differentiate" in r.json()["errors"][0]["reason"]


async def test_gumbel_softmax_is_reproducible_from_its_seed(client: httpx.AsyncClient) -> None:
    x = [[1.0, 2.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0]]

    async def draw(params: dict[str, Any], axis: int = -1) -> list[list[float]]:
        r = await client.post(
            "/activate", json={"activation": "gumbel_softmax", "x": x, "params": params, "axis": axis}
        )
        assert r.status_code == 200, r.text
        return list(r.json()["y"])

    first = await draw({"seed": 42})
    assert first == await draw({"seed": 42})
    assert first != await draw({"seed": 43})
    assert await draw({}) == await draw({"seed": 0})
    # the noise is NumPy's PCG64 stream for x's shape, added in x's layout; y is softmax there
    z = np.array(x) + np.random.Generator(np.random.PCG64(42)).gumbel(size=(2, 4))
    r = await client.post("/activate", json={"activation": "softmax", "x": z.tolist()})
    assert r.json()["y"] == first
    r = await client.post("/activate", json={"activation": "softmax", "x": z.tolist(), "axis": 0})
    assert r.json()["y"] == await draw({"seed": 42}, axis=0)
    # sharper with a lower temperature: the argmax of x + g takes almost everything
    cold = await draw({"seed": 42, "temperature": 0.01})
    assert max(cold[0]) > 0.999
    assert int(np.argmax(cold[0])) == int(np.argmax(z[0]))


async def test_gumbel_softmax_refuses_a_seed_that_is_not_a_whole_number(client: httpx.AsyncClient) -> None:
    for seed, reason in ((1.5, "whole number"), (-1, "at least 0"), (2.0**53 + 2, "at most")):
        r = await client.post(
            "/activate", json={"activation": "gumbel_softmax", "x": [1.0, 2.0], "params": {"seed": seed}}
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "params.seed"
        assert reason in r.json()["errors"][0]["reason"]
    r = await client.post(
        "/derivative",
        json={"activation": "gumbel_softmax", "x": [1.0, 2.0], "wrt": "params", "grad": [1.0, 0.0]},
    )
    assert r.status_code == 200, r.text
    assert list(r.json()["grad_params"]) == ["temperature"]  # no derivative with respect to a seed


async def test_sparsemax_vjp_where_the_mean_cancels(client: httpx.AsyncClient) -> None:
    third = 1 / 3
    for x, g in [
        ([third, third, third], [0.1, 0.2, 0.3]),  # g_1 - mean(g) is 2.8e-17 exactly, not 0
        ([third, third, third, -5.0], [0.1, 0.2, 0.3, 7.0]),
        ([0.5, 0.25, 0.0], [1.0, 1.0 + 2.0**-52, 1.0 - 2.0**-53]),
        ([1e308, 1e308, -1e308], [1e-300, 2.0, -3.0]),  # a support of two beside a huge gap
        ([1e308, 1e308 * (1 - 2.0**-52)], [1.0, 5.0]),  # one apart by 2e292: a support of one
        ([1.0, 0.0], [3.0, 4.0]),  # y_1 = 0 on the edge of the support: outside it
        ([5e-324, -5e-324, 0.0], [0.1, -0.1, 0.3]),
    ]:
        results = await answers(client, "sparsemax", "vjp", every_format(x, g, rounded=True))
        assert len(results) == 4
        assert_all_right("sparsemax", "vjp", results)
        results = await answers(client, "sparsemax", "jacobian", every_format(x, g, rounded=True))
        assert_all_right("sparsemax", "jacobian", results)
    case = Case(np.array([third, third, third]), -1, None, np.array([0.1, 0.2, 0.3]), True)
    assert expected("sparsemax", "float64", case)["vjp"][1] == float(
        Fraction(0.2) - (Fraction(0.1) + Fraction(0.2) + Fraction(0.3)) / 3
    )


async def test_log_softmax_of_the_winning_class_is_not_rounded_to_zero(client: httpx.AsyncClient) -> None:
    results = await answers(client, "log_softmax", "value", every_format([40.0, 0.0]))
    assert results["float64"][1].tolist() == [-4.248354255291589e-18, -40.0]
    assert_all_right("log_softmax", "value", results)


async def test_a_true_result_beyond_the_format_is_refused_at_its_element(client: httpx.AsyncClient) -> None:
    case = Case(np.array([-1e308, 1e308]), -1, 1e-3, np.array([1.0, 1.0]), True)
    assert core_answer("log_softmax", "value", case, np.float64).refused == "y[0]"
    case = Case(np.array([1e308, 0.0]), -1, None, np.array([1e308]), True)
    assert core_answer("glu", "vjp", case, np.float64).refused == "grad_x[1]"
    for fmt in FORMATS:
        big = LARGEST[fmt]
        for name, quantity, case in [
            ("log_softmax", "value", Case(np.array([big, 1.0, -big]), -1, 1e-3, np.zeros(3), True)),
            ("softmax", "vjp", Case(np.array([0.0, 1e-3]), -1, 1e-3, np.array([big, -big]), True)),
            ("glu", "vjp", Case(np.array([1.0, big, 0.0, 1.0]), -1, None, np.array([1.0, big]), True)),
        ]:
            want = expected(name, fmt, case)[quantity]
            assert np.isinf(want).any()
            got = (
                core_answer(name, quantity, case, CORE[fmt])
                if fmt in CORE
                else await http_answer(client, name, quantity, case, fmt)
            )
            assert got.refused is not None, (name, quantity, fmt, got)
            assert not compare(name, quantity, fmt, case, want, got)


# -- 3. a result does not depend on the rest of the request ------------------------------------------


def _batch_cases(name: str, fmt: str, t: float | None) -> tuple[Case, Case, Case]:
    n = 6
    v = to_format([0.5, -2.0, 3.0, 1e-3, 2.0, 0.5], fmt)
    g = to_format([1.0, -0.5, 0.25, 2.0, 0.0, 3.0][: n // 2 if name in HALVING else n], fmt)
    big, tiny = LARGEST[fmt], SMALLEST[fmt]
    # ranges up to the largest number: huge, and still within reach of log_softmax at T >= 1
    others = to_format([[big, big / 2, 0.0, tiny, 1.0, 0.5], [-big, -big, -big / 2, -tiny, 0.0, -1.0]], fmt)
    x = np.vstack([others[:1], v, others[1:]])
    gb = np.vstack([g, g, g])
    return (
        Case(v, -1, t, g, True),
        Case(x, -1, t, gb, True),
        Case(np.ascontiguousarray(x.T), 0, t, np.ascontiguousarray(gb.T), True),
    )


@pytest.mark.parametrize("name", [n for n in NAMES if n != "gumbel_softmax"])  # (its noise is the batch's)
async def test_a_vector_alone_and_in_a_batch_with_huge_values_gives_the_same_bits(
    client: httpx.AsyncClient, name: str
) -> None:
    problems = []
    for fmt in FORMATS:
        for t in (1.0, 3.0) if name in FAMILY else (None,):
            alone, batch, transposed = _batch_cases(name, fmt, t)
            for quantity in quantities(name)[:4]:  # grad_params sums over the whole batch
                got = []
                for case in (alone, batch, transposed):
                    if fmt in CORE:
                        a = core_answer(name, quantity, case, CORE[fmt])
                    else:
                        a = await http_answer(client, name, quantity, case, fmt)
                    if a.value is None:
                        problems.append(f"{name} {quantity} {fmt} T={t} {case.describe()}: no result: {a}")
                        break
                    got.append(a.value)
                if len(got) < 3:
                    continue
                one = got[0]
                if quantity == "jacobian":
                    rows = [got[1][1], np.moveaxis(got[2], 1, 0)[1]]
                else:
                    rows = [got[1][1], np.moveaxis(got[2], 0, -1)[1]]
                for k, row in enumerate(rows):
                    if not np.array_equal(bits(row), bits(one)):
                        where = "in a batch" if k == 0 else "along axis 0"
                        problems.append(
                            f"{name} {quantity} {fmt} T={t} {where}: {row.tolist()} != {one.tolist()}"
                        )
    assert not problems, "\n".join(problems[:8])


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize(
    ("x", "g"),
    [
        # First order in the gap: s_1 - s_2 ~ 2d/3 (an exact 0 came back for d = 1e-100 ... 1e-300,
        # found by an independent oracle: e^q rounded to 1 at two working precisions in a row).
        ([1e-100, -1e-100, 0.0], [0.0, 0.5, -0.5]),
        ([1e-300, -1e-300, 0.0], [0.0, 0.5, -0.5]),
        ([5e-324, 0.0, 0.0], [1.0, 0.0, 0.0]),
        # Second and third order: sum g_i e^(x_i) ~ d^2 and d^3, still normal numbers.
        ([1e-100, 0.0, -1e-100], [1.0, -2.0, 1.0]),
        ([3e-90, 2e-90, 1e-90, 0.0], [1.0, -3.0, 3.0, -1.0]),
        # Float32's own scale: a few of its ulps apart near 1.
        ([1.0, 1.0000001192092896, 1.0000002384185791], [1.0, -2.0, 1.0]),
    ],
)
@pytest.mark.parametrize("quantity", ["vjp", "dydT", "grad_params"])
async def test_inputs_a_hair_apart_give_small_results_not_zeros(
    client: httpx.AsyncClient, name: str, x: list[float], g: list[float], quantity: str
) -> None:
    for t in (1.0, 0.7):
        results = await answers(client, name, quantity, every_format(x, g, t))
        assert "float64" in results
        want = results["float64"][1]
        if quantity == "vjp" and x[0] != 1.0:
            assert np.count_nonzero(want) >= 2, want  # the case's point: results of order d^k, not 0
        assert_all_right(name, quantity, results)


@pytest.mark.parametrize(
    ("name", "x", "g", "t", "quantity"),
    [
        # Found by an independent oracle.  Second- and third-order cancellation: the exact route's
        # sums, shared by two working precisions, made a VJP of 8.3e-102 come back as 9.5e-82 (the
        # same rounding error at both, so they agreed).
        ("softmax", [0.0, 1e-50, 2e-50, 1.0], [-1.0, 2.0, -1.0, 0.0], 1.0, "vjp"),
        ("log_softmax", [1e-50, -1e-50, 0.0], [1.0, 1.0, 1.0], 3.0, "vjp"),
        ("softmin", [0.0, 1e-50, 2e-50, 0.0], [-1.0, 2.0, -1.0, 0.0], 3.0, "vjp"),
        ("softmax", [1e-70, -1e-70, 0.0], [1.0, 1.0, 1.0], 1.0, "dydT"),
        ("log_softmax", [1e-70, -1e-70, 0.0], [1.0, 1.0, 1.0], 1.0, "dydT"),
        # 2^-1075 (a midpoint of float64's subnormals) and e^-2500 more: the products were formed at
        # fewer bits than Z carries, and the VJP came back 0.
        ("log_softmax", [0.0, -5000.0], [1.5e-323, -5e-324], 2.0, "vjp"),
    ],
)  # fmt: skip
async def test_cancellation_and_midpoints_the_oracle_found(
    client: httpx.AsyncClient, name: str, x: list[float], g: list[float], t: float, quantity: str
) -> None:
    results = await answers(client, name, quantity, every_format(x, g, t, jacobian=False))
    assert "float64" in results
    assert_all_right(name, quantity, results)


@pytest.mark.parametrize(
    ("x", "g", "t", "quantity"),
    [
        ([1.8189894035458565e-12, -25000.0], None, 1.0, "value"),
        ([1.8189894035458565e-12, -25000.0], None, 1.0, "dydT"),
        ([9.094947017729282e-13, -12000.0, -12000.000000000004], [0.0, 1.0, 1.0], 0.5, "grad_params"),
        # e^q_1 = e^(3 - 2^54) lies below 2^-1073741824, where gmpy2 2.3 stops whatever exponent
        # range its context is given: it was taken as 0, and q_1 rounded to even
        ([2.0**54, 3.0], None, 1.0, "value"),
        ([2.0**54, 7.0], None, 1.0, "value"),
        ([2.0**54, 3.0], None, 1.0, "dydT"),
        ([2.0**54, 3.0], [0.0, 1.0], 1.0, "grad_params"),
    ],
)
async def test_log_softmax_just_off_a_midpoint_rounds_to_its_side(
    client: httpx.AsyncClient, x: list[float], g: list[float] | None, t: float, quantity: str
) -> None:
    # Found by an independent oracle: y_1 = q_1 - log(1 + e^q_1) with q_1 = -25000 - 2^-39 exactly
    # halfway between two floats, and below it by e^-25000 (too little for any working precision):
    # it was rounded to even, as if it were the midpoint.  Each quantity here is a rational r (the
    # midpoint) plus a part of known sign far below r's last bit, so its rounding is r's neighbour
    # on that side.
    fx = [Fraction(v) for v in x]
    top, tt = max(fx), Fraction(t)
    if quantity == "value":
        r, side = (fx[1] - top) / tt, -1  # minus log(1 + e^q) > 0
    elif quantity == "dydT":
        r, side = -(fx[1] - top) / tt**2, -1  # dy/dT = -(q_1 - mean) / T, and mean < 0
    else:
        assert g is not None
        moment = sum((Fraction(gi) * (xi - top) for gi, xi in zip(g, fx, strict=True)), Fraction(0))
        r, side = -moment / tt**2, -1  # plus G mean / T < 0
    tiny = Fraction(1, 2**2000)
    below, above = rounding.round_to(r - tiny, "float64"), rounding.round_to(r + tiny, "float64")
    assert below != above  # r is a midpoint: the case's point
    body: dict[str, Any] = {"activation": "log_softmax", "x": x, "params": {"temperature": t}}
    if quantity == "value":
        r_ = await client.post("/activate", json=body)
        got = r_.json()["y"][1]
    elif quantity == "dydT":
        r_ = await client.post("/derivative", json=body | {"wrt": "params"})
        got = r_.json()["dydparams"]["temperature"][1]
    else:
        r_ = await client.post("/derivative", json=body | {"wrt": "params", "grad": g})
        got = r_.json()["grad_params"]["temperature"]
    assert r_.status_code == 200, r_.text
    assert got == (below if side < 0 else above)


@pytest.mark.parametrize(
    ("name", "x", "g", "t", "j", "fmt"),
    [
        ("softmax", [2.0**54, 2.0**54, 3.0], [-0.06448288782689197, -0.30187914508096503, 0.2814131031772033], 1.0, 1, "float64"),
        ("softmax", [2.0**54, 2.0**54, 3.0], [-1.1040034254930997, -0.023990378385183597, 0.18718413178953427], 3.0, 1, "float32"),
        ("softmax", [1.0, 1.0, -1e300], [5e-324, 1e-323, 1.5e-323], 0.5, 0, "float64"),
        # k = 4: r = 3 (1 + 2^-52) / 16, a midpoint; the far input's g puts the truth on either side
        ("softmax", [5.0, 5.0, -1e300, 5.0, 5.0], [1.0000000000000002, 0.0, -2.0, 0.0, 0.0], 1.0, 0, "float64"),
        ("softmax", [5.0, 5.0, -1e300, 5.0, 5.0], [1.0000000000000002, 0.0, 0.0, 0.0, 0.0], 1.0, 0, "float64"),
        ("log_softmax", [-1e300, 1e300, 1e300, 0.0], [-0.6759957523318395, 0.534899955605962, 1.4759085901813076, -1.1119346494295137], 1.0, 2, "float64"),
        ("log_softmax", [2.0**54, 2.0**54, 3.0], [1e30, -1e30, 1e30], 1.0, 1, "float32"),
    ],
)  # fmt: skip
async def test_vjp_at_tied_maxima_beside_a_far_input(
    client: httpx.AsyncClient, name: str, x: list[float], g: list[float], t: float, j: int, fmt: str
) -> None:
    # Found by an independent oracle. With k equal largest inputs and the others so far below that
    # e^q lies beyond MPFR's range, the VJP at a largest input is a rational r (softmax:
    # (g_j / k - S / k^2) / T, S the sum of g over the largest; log_softmax: (g_j - G / k) / T)
    # plus first-order terms in the far e^q: r was a midpoint here and came back rounded to even.
    # The side: softmax's terms are e_f (2S / k - g_j - g_f) / (k^2 T) (one far input f here, or one
    # far above the rest), log_softmax's G r / (k^2 T) with G the sum of g.
    dtype = np.float32 if fmt == "float32" else np.float64
    gq = [Fraction(float(dtype(v))) for v in g]
    top = max(x)
    tops = [i for i, v in enumerate(x) if v == top]
    k, tt = len(tops), Fraction(t)
    s = sum((gq[i] for i in tops), Fraction(0))
    if name == "softmax":
        f = max((i for i in range(len(x)) if x[i] != top), key=lambda i: x[i])
        r = (gq[j] / k - s / k**2) / tt
        side = 2 * s / k - gq[j] - gq[f]
    else:
        r = (gq[j] - sum(gq, Fraction(0)) / k) / tt
        side = sum(gq, Fraction(0))
    assert side != 0
    tiny = abs(r) / 2**1000 if r else Fraction(1, 2**3000)
    below, above = rounding.round_to(r - tiny, fmt), rounding.round_to(r + tiny, fmt)
    assert below != above  # r is a midpoint: the case's point
    body = {"activation": name, "x": x, "grad": g, "params": {"temperature": t}, "dtype": fmt}
    response = await client.post("/derivative", json=body)
    assert response.status_code == 200, response.text
    got = response.json()["grad_x"][j]
    want = below if side < 0 else above
    assert float(dtype(got)) == want, (got, want)
