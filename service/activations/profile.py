"""Signal-propagation profiles: an activation under Gaussian inputs, and deep random networks.

:func:`moments` integrates f and f' against the density of z ~ N(mean, std²)
(E[f], E[f²], E[f'], E[f'²], the probability that f' vanishes and that
|f'| < 0.01).  :func:`mean_field` follows Poole et al. 2016 and Schoenholz et
al. 2017: the length map q ↦ σ_w²·E[f(√q z)²] + σ_b², its fixed point q*,
χ₁ = σ_w²·E[f'(√q* z)²], and the σ_w where χ₁ = 1 (the edge of chaos).
:func:`simulate` runs an actual random network with the service's own
(correctly rounded) values and derivatives, to set beside those predictions.

The integrals are composite Gauss–Legendre rules in t = (z - mean)/std on
[-T, T] (T = 39, where the density is below every float64), in panels of
PANEL, split at the function's kinks, so every piece is smooth: on such
pieces the 20-point rule's error is below the float64 rounding of the sum
(measured against closed forms and an independent quadrature in
tests/test_profile.py).  The integrands are the NumPy core's f and f' (a few
units in the last place), not the correctly rounded route: an integral is
accurate to about 1e-15 relative either way, and this is 100-1000 times
cheaper.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize, special

from .registry import Activation, ActivationError, Array, NotSupported, ResultOverflow, _call, checkpoint

#: The Gauss–Legendre rule per panel, the panel width and the half-width of the range in t.
NODES = 20
PANEL = 1.0
T = 39.0
#: Adaptive refinement (Gaussian.of): agreement asked of the two rules on a panel, relative to the
#: integrand's total; the narrowest panel (relative to |t|); at most so many halvings and panels.
TOLERANCE = 1e-15
MIN_WIDTH = 2.0**-60
MAX_LEVELS = 80
MAX_PANELS = 1024
#: Disagreements below this are rounding noise of subnormal integrands (std ~1e-158: f² ~ 1e-316).
ABSOLUTE = 1e-290
#: |f'| below this counts as saturated.
SATURATED = 0.01
#: The grid (in z) on which the edges of {|f'| < SATURATED} are looked for, before bisection.
EDGE_STEP = 0.004
#: The q that stands for q* = 0 in χ₁: E[f'(√q z)²] as q -> 0+ (one-sided slopes at a kink at 0).
Q_ZERO = 1e-200
#: The σ_w searched for the edge of chaos.
SIGMA_W_RANGE = (1e-3, 1e3)
#: Where the length map's fixed point is looked for (by factors of SCAN from q0).
Q_MIN, Q_MAX, SCAN = 1e-30, 1e30, 4.0
#: |V(q0) - q0| below this times q0: the map leaves q0 where it is (every q is a fixed point).
MARGINAL = 1e-13
#: |χ₁ - 1| at an accepted edge of chaos (a jump of the fixed point is not one).
CHI_TOLERANCE = 1e-9
RTOL = 4 * float(np.finfo(np.float64).eps)  # the tightest brentq takes

#: What torch.nn.init.calculate_gain answers, by canonical name, and why the profile's gain differs.
TORCH_GAIN: dict[str, tuple[Callable[[Mapping[str, float]], float], str]] = {
    "identity": (lambda p: 1.0, "the same: E[z²] = 1 ('linear' in torch)."),
    "relu": (lambda p: math.sqrt(2.0), "the same: E[relu(z)²] = 1/2 (He et al. 2015)."),
    "leaky_relu": (
        lambda p: math.sqrt(2.0 / (1.0 + p["negative_slope"] ** 2)),
        "the same: E[f(z)²] = (1 + s²)/2 for slope s.",
    ),
    "tanh": (
        lambda p: 5.0 / 3.0,
        "torch's 5/3 is an empirical choice (it keeps tanh out of its linear region); "
        "1/sqrt(E[tanh(z)²]) keeps the second moment of the next pre-activation at 1.",
    ),
    "sigmoid": (
        lambda p: 1.0,
        "torch applies no correction; sigmoid's outputs have mean 1/2, which dominates E[f(z)²].",
    ),
    "selu": (
        lambda p: 0.75,
        "torch's 3/4 trades self-normalisation for steadier gradients (its documentation); "
        "SELU's own fixed point N(0, 1) -> mean 0, second moment 1 gives 1.",
    ),
}


@lru_cache(maxsize=4)
def _rule(nodes: int = NODES) -> tuple[Array, Array]:
    return np.polynomial.legendre.leggauss(nodes)


def _breakpoints(entry: Activation, params: Mapping[str, float]) -> list[float]:
    """The kinks of f (where f or f' jumps) at these parameters, in z."""
    out = []
    for kink in entry.kinks:
        at = kink.at
        if isinstance(at, str):
            at = -params[at[1:]] if at.startswith("-") else params[at]
        out.append(float(at))
    return sorted(set(out))


def _nodes(lo: Array, hi: Array, count: int) -> tuple[Array, Array]:
    """The Gauss–Legendre nodes (in t) of each panel and their weights times the normal density."""
    nodes, weights = _rule(count)
    half = (hi - lo)[:, None] / 2
    t = (lo + hi)[:, None] / 2 + half * nodes
    return t, half * weights * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class Gaussian:
    """Quadrature nodes and weights for E[h(z)], z ~ N(mean, std²), split at breakpoints."""

    z: Array
    w: Array

    @classmethod
    def of(
        cls, mean: float, std: float, breaks: list[float], integrands: Callable[[Array], list[Array]]
    ) -> Gaussian:
        """Panels of PANEL in t, split at the breakpoints, then halved wherever the 20-point rule
        and the 10-point one disagree on any of the integrands by more than TOLERANCE of its total
        (a transition sharper than a panel, such as softplus with a huge beta, which is relu in all
        but name); down to panels of MIN_WIDTH, at most MAX_PANELS of them."""
        if std == 0.0:
            return cls(np.array([mean]), np.array([1.0]))
        cuts = [(b - mean) / std for b in breaks]
        edges = np.union1d(np.arange(-T, T + PANEL / 2, PANEL), [c for c in cuts if -T < c < T])
        lo, hi = edges[:-1], edges[1:]
        zs: list[Array] = []
        ws: list[Array] = []
        scale: list[float] | None = None
        for _ in range(MAX_LEVELS):
            checkpoint()
            (tc, wc), (tf, wf) = _nodes(lo, hi, NODES // 2), _nodes(lo, hi, NODES)
            n_coarse = tc.size
            with np.errstate(over="ignore", invalid="ignore"):
                values = integrands(mean + std * np.concatenate((tc.ravel(), tf.ravel())))
                coarse = [np.sum(wc * v[:n_coarse].reshape(tc.shape), axis=1) for v in values]
                fine = [np.sum(wf * v[n_coarse:].reshape(tf.shape), axis=1) for v in values]
                if scale is None:
                    scale = [float(np.sum(np.abs(wf * v[n_coarse:].reshape(tf.shape)))) for v in values]
                done = np.ones(lo.size, dtype=bool)
                for c, f, total in zip(coarse, fine, scale, strict=True):
                    done &= ~(np.abs(c - f) > max(TOLERANCE * total, ABSOLUTE))  # NaN/inf: refused later
            done |= (hi - lo) <= MIN_WIDTH * np.maximum(1.0, np.abs(lo))
            if lo.size > MAX_PANELS:
                done[:] = True
            zs.append((mean + std * tf[done]).ravel())
            ws.append(wf[done].ravel())
            if done.all():
                break
            lo, hi = lo[~done], hi[~done]
            mid = 0.5 * (lo + hi)
            lo, hi = np.concatenate((lo, mid)), np.concatenate((mid, hi))
        return cls(np.concatenate(zs), np.concatenate(ws))

    def expect(self, values: Array, what: str) -> float:
        """Σ w·h(z): h's expectation, refused where it does not exist in float64."""
        keep = self.w > 0  # beyond the density's underflow nothing adds
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.sum(self.w[keep] * values[keep]))  # pairwise: ~1e-16 relative to Σ|terms|
        if not math.isfinite(total):
            raise ActivationError(what, "exceeds the float64 range at these mean and std")
        return total


class Profile:
    """f and f' of one activation at fixed parameters, integrated against Gaussians."""

    def __init__(self, entry: Activation, params: Mapping[str, float]) -> None:
        if entry.kind != "elementwise":
            raise NotSupported(
                "activation",
                f"{entry.name} is a vector function: its output mixes the elements, so it has no "
                "profile over one Gaussian input; profiles are for elementwise functions",
            )
        self.entry = entry
        self.params = dict(params)
        self.breaks = _breakpoints(entry, params)

    def f(self, z: Array) -> Array:
        # The NumPy core far outside its usual range (softplus with beta 1e300 at |z| ~ 1e10) may
        # give inf or NaN with a warning: the expectation refuses a non-finite sum instead.
        with np.errstate(all="ignore"):
            return np.asarray(_call(self.entry.forward, z, self.params))

    def df(self, z: Array) -> Array:
        with np.errstate(all="ignore"):
            return np.asarray(_call(self.entry.derivative, z, self.params))

    def _integrands(self, z: Array) -> list[Array]:
        y, dy = self.f(z), self.df(z)
        return [y, np.square(y), dy, np.square(dy)]

    def second_moment(self, q: float) -> float:
        """E[f(√q z)²], z ~ N(0, 1)."""
        g = Gaussian.of(0.0, math.sqrt(q), self.breaks, lambda z: [np.square(self.f(z))])
        with np.errstate(over="ignore"):
            return g.expect(np.square(self.f(g.z)), "sigma_w")

    def slope_moment(self, q: float) -> float:
        """E[f'(√q z)²], z ~ N(0, 1); at q = 0 its limit as q -> 0+."""
        g = Gaussian.of(0.0, math.sqrt(max(q, Q_ZERO)), self.breaks, lambda z: [np.square(self.df(z))])
        with np.errstate(over="ignore"):
            return g.expect(np.square(self.df(g.z)), "sigma_w")

    # -- moments --------------------------------------------------------------------------

    def moments(self, mean: float, std: float) -> dict[str, float]:
        g = Gaussian.of(mean, std, self.breaks, self._integrands)
        y, dy = self.f(g.z), self.df(g.z)
        with np.errstate(over="ignore"):
            m1 = g.expect(y, "moments.mean")
            m2 = g.expect(np.square(y), "moments.second_moment")
            d1 = g.expect(dy, "moments.derivative_mean")
            d2 = g.expect(np.square(dy), "moments.derivative_second_moment")
        return {
            "mean": m1,
            "second_moment": m2,
            # Var = E[(f - E f)²], integrated as such (m2 - m1² cancels where the mean dominates).
            "variance": g.expect(np.square(y - m1), "moments.variance") if std > 0 else 0.0,
            "derivative_mean": d1,
            "derivative_second_moment": d2,
            "dead": self._probability(mean, std, lambda d: d == 0.0),
            "saturated": self._probability(mean, std, lambda d: np.abs(d) < SATURATED),
        }

    def _pieces(self) -> list[tuple[float, float]]:
        edges = [-math.inf, *self.breaks, math.inf]
        return list(itertools.pairwise(edges))

    def _probability(self, mean: float, std: float, where: Callable[[Array], Any]) -> float:
        """P(where(f'(z))) for z ~ N(mean, std²): the set's edges found on a fine grid and bisected."""
        lo_z, hi_z = mean - T * std, mean + T * std
        if std == 0.0 or lo_z == hi_z:  # the whole mass at one float64: f' there decides
            return float(bool(where(self.df(np.array([mean])))[0]))
        total = 0.0
        for a, b in self._pieces():
            lo, hi = max(a, lo_z), min(b, hi_z)
            if not lo < hi:
                continue
            # A grid fine in z where the functions' features are, and in t elsewhere.
            span = np.linspace(lo, hi, 4097)
            local = np.arange(max(lo, -50.0), min(hi, 50.0), EDGE_STEP)
            grid = np.union1d(span, local)
            grid = grid[(grid > lo) & (grid < hi)] if grid.size > 2 else grid
            grid = np.concatenate(([lo], grid, [hi]))
            inside = np.asarray(where(self.df(grid[1:-1])))
            inside = np.concatenate(([inside[0]], inside, [inside[-1]]))  # the ends as their neighbours
            change = np.flatnonzero(inside[1:] != inside[:-1])
            edges = [lo]
            for k in change:
                edges.append(self._edge(grid[k], grid[k + 1], bool(inside[k]), where))
            edges.append(hi)
            state = bool(inside[0])
            for u, v in itertools.pairwise(edges):
                if state:
                    total += _mass((u - mean) / std, (v - mean) / std)
                state = not state
        return min(1.0, max(0.0, total))

    def _edge(self, u: float, v: float, left: bool, where: Callable[[Array], Any]) -> float:
        for _ in range(200):
            checkpoint()
            mid = 0.5 * (u + v)
            if not u < mid < v:
                break
            if bool(where(self.df(np.array([mid])))[0]) == left:
                u = mid
            else:
                v = mid
        return 0.5 * (u + v)

    # -- mean field ---------------------------------------------------------------------------

    def length_map(self, q: float, sigma_w: float, sigma_b: float) -> float:
        return sigma_w * sigma_w * self.second_moment(q) + sigma_b * sigma_b

    def fixed_point(self, sigma_w: float, sigma_b: float, q0: float = 1.0) -> float | None:
        """The fixed point of the length map that iterating it from q0 reaches; None if q grows past
        Q_MAX (or past float64) on the way."""

        def gap(q: float) -> float:
            return self.length_map(q, sigma_w, sigma_b) - q

        try:
            g0 = gap(q0)
            if abs(g0) <= MARGINAL * q0:
                return q0  # marginal (relu at σ_w = √2 rounded to float64): q stays where it starts
            q, step = q0, (SCAN if g0 > 0 else 1.0 / SCAN)
            while Q_MIN <= q <= Q_MAX:
                checkpoint()
                nxt = q * step
                g = gap(nxt)
                if (g <= 0) if g0 > 0 else (g >= 0):
                    lo, hi = sorted((q, nxt))
                    return float(optimize.brentq(gap, lo, hi, xtol=1e-300, rtol=RTOL, maxiter=500))
                q = nxt
            # Shrinking past Q_MIN: q -> 0, a fixed point where f(0) = 0 and sigma_b = 0.
            return 0.0 if g0 < 0 else None
        except ActivationError:
            return None  # the map overflows float64 on the way: no finite fixed point reached

    def chi1(self, sigma_w: float, q: float) -> float:
        return sigma_w * sigma_w * self.slope_moment(q)

    def critical_sigma_w(self, sigma_b: float) -> float | None:
        """The σ_w where χ₁ = 1 at the fixed point (the edge of chaos), if χ₁ reaches 1 continuously for
        σ_w in SIGMA_W_RANGE (where the fixed point jumps to another branch, or to none, χ₁ may jump
        past 1: that is no edge of chaos)."""

        def excess(log_w: float) -> float:
            w = math.exp(log_w)
            q = self.fixed_point(w, sigma_b)
            if q is None:
                return math.inf
            return self.chi1(w, q) - 1.0

        grid = np.linspace(math.log(SIGMA_W_RANGE[0]), math.log(SIGMA_W_RANGE[1]), 31)
        prev_x, prev = grid[0], excess(grid[0])
        for x in grid[1:]:
            checkpoint()
            cur = excess(x)
            if prev < 0 < cur or prev == 0:
                if prev == 0:
                    return math.exp(prev_x)
                hi = x
                if cur == math.inf:  # the fixed point ceases to exist in between: its last finite side
                    hi = _finite_end(excess, prev_x, x)
                    if abs(excess(hi)) <= CHI_TOLERANCE:
                        return math.exp(hi)  # χ₁ -> 1 where q* -> infinity (relu's σ_w = √2)
                    if not excess(hi) > 0:
                        prev_x, prev = x, cur
                        continue
                root = optimize.brentq(excess, prev_x, hi, xtol=1e-15, rtol=RTOL, maxiter=200)
                if abs(excess(root)) <= CHI_TOLERANCE:
                    return math.exp(root)
            prev_x, prev = x, cur
        return None


def _finite_end(fn: Callable[[float], float], lo: float, hi: float) -> float:
    while hi - lo > 1e-13:
        checkpoint()
        mid = 0.5 * (lo + hi)
        if math.isfinite(fn(mid)):
            lo = mid
        else:
            hi = mid
    return lo


def _mass(a: float, b: float) -> float:
    """P(a < t < b) for t ~ N(0, 1), accurate in either tail."""
    if a >= 0:
        return float(special.ndtr(-a) - special.ndtr(-b))
    if b <= 0:
        return float(special.ndtr(b) - special.ndtr(a))
    return float(1.0 - special.ndtr(a) - special.ndtr(-b))


def gain(profile: Profile) -> dict[str, Any]:
    """1/sqrt(E[f(z)²]) at z ~ N(0, 1), beside torch.nn.init.calculate_gain where it has an answer."""
    m2 = profile.second_moment(1.0)
    out: dict[str, Any] = {}
    if m2 > 0 and math.isfinite(1.0 / math.sqrt(m2)):
        out["value"] = 1.0 / math.sqrt(m2)
    torch = TORCH_GAIN.get(profile.entry.name)
    if torch is not None:
        out["torch"] = torch[0](profile.params)
        out["note"] = torch[1]
    else:
        out["note"] = "torch.nn.init.calculate_gain has no answer for this function."
    if "value" not in out:
        out["note"] = (
            f"E[f(z)^2] at N(0, 1) is {m2:g} in float64: no finite weight scale restores it. " + out["note"]
        )
    return out


def mean_field(profile: Profile, sigma_w: float, sigma_b: float, depth: int | None) -> dict[str, Any]:
    """The fixed point, χ₁, the critical σ_w at this σ_b and χ₁^depth."""
    out: dict[str, Any] = {"sigma_w": sigma_w, "sigma_b": sigma_b}
    q = profile.fixed_point(sigma_w, sigma_b)
    notes = []
    if q is None:
        notes.append("q grows without bound: no finite fixed point (and no χ₁) at this σ_w.")
    else:
        out["q_star"] = q
        chi = profile.chi1(sigma_w, q)
        out["chi1"] = chi
        if abs(chi - 1) <= CHI_TOLERANCE:
            phase = "critical (gradients keep their scale)"
        else:
            phase = "ordered (gradients vanish)" if chi < 1 else "chaotic (gradients explode)"
        notes.append(f"χ₁ = {chi:.6g}: {phase}.")
    critical = profile.critical_sigma_w(sigma_b)
    if critical is not None:
        out["critical_sigma_w"] = critical
    else:
        notes.append(f"χ₁ does not cross 1 for σ_w in [{SIGMA_W_RANGE[0]:g}, {SIGMA_W_RANGE[1]:g}].")
    if depth is not None:
        out["depth"] = depth
        if "chi1" in out:
            with np.errstate(over="ignore", under="ignore"):
                ratio = float(np.power(out["chi1"], depth))
            if math.isfinite(ratio):
                out["gradient_ratio"] = ratio
            else:
                notes.append("χ₁^depth exceeds float64.")
    out["note"] = " ".join(notes)
    return out


# -- a random network ---------------------------------------------------------------------------

INITS = {"he": 2.0, "lecun": 1.0, "xavier": 1.0}  # σ_w² for square layers (xavier: 2/(fan_in + fan_out))


@dataclass(frozen=True)
class Network:
    width: int
    depth: int
    batch: int
    sigma_w: float
    sigma_b: float
    seed: int


def simulate(
    profile: Profile,
    net: Network,
    value: Callable[[Array], Array],
    derivative: Callable[[Array], Array],
) -> dict[str, Any]:
    """Per-layer statistics of a random fully connected network and the mean-field predictions.

    x₀ ~ N(0, 1) (batch × width); h_l = x_{l-1} W_l + b_l with W ~ N(0, σ_w²/width), b ~ N(0, σ_b²);
    x_l = f(h_l).  Backwards from L = Σ g·x_L with g ~ N(0, 1): δ_l = ∂L/∂h_l = f'(h_l) ⊙ δ_{l+1} W_{l+1}ᵀ.
    ``value`` and ``derivative`` are the service's own f and f'.  Every layer draws from its own
    stream of the seed, so its weights are drawn again for the backward pass instead of kept.
    """
    streams = np.random.SeedSequence(net.seed).spawn(net.depth + 2)
    x = np.random.default_rng(streams[0]).standard_normal((net.batch, net.width))
    scale = net.sigma_w / math.sqrt(net.width)

    def layer(index: int) -> tuple[Array, Array]:
        rng = np.random.default_rng(streams[index + 1])
        return rng.standard_normal((net.width, net.width)) * scale, rng.standard_normal(
            net.width
        ) * net.sigma_b

    slopes, layers = [], []
    for index in range(net.depth):
        checkpoint()
        w, b = layer(index)
        h = x @ w + b
        if not np.all(np.isfinite(h)):
            raise ActivationError("depth", f"the pre-activations of layer {index + 1} exceed float64")
        try:
            x = value(h)
            d = derivative(h)
        except ResultOverflow:
            raise ActivationError("depth", f"the activations of layer {index + 1} exceed float64") from None
        except ActivationError as exc:
            raise ActivationError("depth", f"at layer {index + 1}: {exc.reason}") from None
        slopes.append(d)
        with np.errstate(all="ignore"):  # a variance beyond float64 is refused just below
            stats = {
                "preactivation_mean": float(h.mean()),
                "preactivation_variance": float(h.var()),
                "activation_mean": float(x.mean()),
                "activation_variance": float(x.var()),
            }
        if not all(math.isfinite(v) for v in stats.values()):
            raise ActivationError("depth", f"the variances of layer {index + 1} exceed float64")
        layers.append(
            {
                "layer": index + 1,
                **stats,
                "dead": float(np.count_nonzero(d == 0.0) / d.size),
                "saturated": float(np.count_nonzero(np.abs(d) < SATURATED) / d.size),
            }
        )
    grad = np.random.default_rng(streams[-1]).standard_normal((net.batch, net.width))
    with np.errstate(over="ignore", under="ignore"):
        for index in range(net.depth - 1, -1, -1):
            checkpoint()
            delta = grad * slopes[index]
            rms = float(np.sqrt(np.mean(np.square(delta))))
            if not math.isfinite(rms):
                raise ActivationError("depth", f"the gradient at layer {index + 1} exceeds float64")
            layers[index]["gradient_rms"] = rms
            slopes[index] = None  # type: ignore[call-overload]
            if index:
                grad = delta @ layer(index)[0].T
    return {"layers": layers, "mean_field": predicted(profile, net)}


def predicted(profile: Profile, net: Network) -> dict[str, list[float]]:
    """Mean-field theory's q_l, E[f(√q_l z)²] and RMS of ∂L/∂h_l for the network of :func:`simulate`."""
    q = net.sigma_w**2 + net.sigma_b**2  # E[x₀²] = 1
    qs: list[float] = []
    activation_moments: list[float] = []
    slope_moments: list[float] = []
    try:
        for _ in range(net.depth):
            checkpoint()
            m2 = profile.second_moment(q)
            qs.append(q)
            activation_moments.append(m2)
            slope_moments.append(profile.slope_moment(q))
            q = net.sigma_w**2 * m2 + net.sigma_b**2
    except ActivationError:
        raise ActivationError(
            "depth", f"the predicted second moment of layer {len(qs) + 1} exceeds float64"
        ) from None
    rms = [0.0] * net.depth
    g2 = 1.0  # E[g²] at the top
    for index in range(net.depth - 1, -1, -1):
        checkpoint()
        g2 *= slope_moments[index]
        rms[index] = math.sqrt(g2)
        if not math.isfinite(rms[index]):
            raise ActivationError(
                "depth",
                f"the predicted gradient at layer {index + 1} exceeds float64: fewer layers or a smaller sigma_w",
            )
        g2 *= net.sigma_w**2
    return {
        "preactivation_second_moment": qs,
        "activation_second_moment": activation_moments,
        "gradient_rms": rms,
    }
