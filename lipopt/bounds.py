"""Bounds on ``L_p(f)``: naive norm products, lower bounds, and the chain of certified relaxations.

Upper bounds (all valid in floating point):

* ``naive``: ``‖W_{L+1}ᵀ c‖_q · Π_l ‖M_l W_l‖_{p→p}`` with ``M_l = diag(max |σ'|)`` per neuron
  (operator norms: ℓ∞ max row sum, ℓ1 max column sum, ℓ2 largest singular value).
* ``abs-product``: ``|∇f| ≤ v = |W_1|ᵀ M_1 ⋯ |W_L|ᵀ M_L |W_{L+1}ᵀ c|`` entrywise, so
  ``L_p(f) ≤ ‖v‖_q``; never worse than ``naive`` for ℓ1 and ℓ∞.
* relaxations (``lp``, ``sdp``, ``sdp+lp``, ``exact-pop``, ``lipsdp``) of the POPs of
  :mod:`lipopt.problems`, each certified from its dual.

Lower bound (``lower``): the largest ``‖∇f(x)‖_q`` found at real points of the domain, from random
samples and multi-start ascent on a smoothed surrogate. Any such value is ≤ the true constant.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EPS, safe_sum
from .network import Network, Residual
from .problems import (
    BinaryPOP,
    Domain,
    LipschitzProblem,
    Target,
    build_problem,
    derivative_ranges,
    make_target,
    parse_norm,
)

UPPER_METHODS = ("naive", "abs-product", "lp", "sdp", "sdp+lp", "sdp-ball", "exact-pop", "lipsdp")
METHODS = UPPER_METHODS + ("lower",)
RELAXATIONS = ("lp", "sdp", "sdp+lp")
GLOBAL_SAMPLING_RADIUS = 10.0


@dataclass
class BoundResult:
    """One row of the chain. ``value`` is an upper bound on ``L`` iff ``certified``."""

    method: str
    degree: int | None
    value: float
    certified: bool
    status: str
    time_s: float
    build_time_s: float | None = None
    solve_time_s: float | None = None
    solver_value: float | None = None
    size: dict = field(default_factory=dict)
    solver: str | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("value", "solver_value"):
            if d[k] is not None and not np.isfinite(d[k]):
                d[k] = None
        return d


@dataclass
class LowerBound:
    value: float
    method: str
    point: np.ndarray | None = None
    target: str | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "method": self.method}


@dataclass
class ChainResult:
    network: str
    norm: str
    target: Target
    domain: Domain | None
    bounds: list[BoundResult]
    lower_bound: LowerBound | None

    @property
    def best(self) -> BoundResult | None:
        """The smallest certified upper bound."""
        cert = [b for b in self.bounds if b.certified and np.isfinite(b.value)]
        return min(cert, key=lambda b: b.value) if cert else None

    @property
    def ratio(self) -> float | None:
        best, low = self.best, self.lower_bound
        if best is None or low is None or low.value <= 0:
            return None
        return best.value / low.value

    def to_dict(self) -> dict:
        best = self.best
        return {
            "network": self.network,
            "norm": self.norm,
            "target": self.target.to_dict(),
            "domain": None if self.domain is None else self.domain.to_dict(),
            "bounds": [b.to_dict() for b in self.bounds],
            "lower_bound": None if self.lower_bound is None else self.lower_bound.to_dict(),
            "best": None
            if best is None
            else {"method": best.method, "degree": best.degree, "value": best.value},
            "ratio_to_lower": self.ratio,
        }


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------
Ranges = list[tuple[np.ndarray, np.ndarray]]


def _slope_caps(net: Network, domain: Domain | None, ranges: Ranges | None = None) -> list[np.ndarray]:
    """``max |σ'|`` per hidden neuron over the domain (from ``ranges`` when given)."""
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    return [np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in ranges]


def _spectral_norm_upper(w) -> float:
    """A guaranteed upper bound on ``‖W‖₂`` (largest singular value)."""
    if sp.issparse(w) and min(w.shape) > 3000:
        a = abs(w)
        # ‖W‖₂ ≤ sqrt(‖W‖₁ ‖W‖∞): valid without an eigensolver for huge sparse layers
        return float(np.sqrt(a.sum(axis=0).max() * a.sum(axis=1).max()) * (1 + 8 * EPS * max(w.shape)))
    wd = w.toarray() if sp.issparse(w) else np.asarray(w)
    gram = wd @ wd.T if wd.shape[0] <= wd.shape[1] else wd.T @ wd
    lam = float(np.linalg.eigvalsh(gram)[-1])
    # eigvalsh backward error ≤ c·n·eps·‖G‖; ‖G‖ ≤ ‖G‖_F. Rounding of the Gram product too.
    margin = 8 * gram.shape[0] * EPS * float(np.linalg.norm(gram)) + 4 * min(wd.shape) * EPS * float(
        (wd**2).sum()
    )
    return float(np.sqrt(max(lam + margin, 0.0)))


def _operator_norm(w, norm: str) -> float:
    if norm == "2":
        return _spectral_norm_upper(w)
    a = abs(w)
    axis = 1 if norm == "inf" else 0  # ℓ∞: max row sum; ℓ1: max column sum
    sums = np.asarray(a.sum(axis=axis)).ravel()
    return float(sums.max() * (1 + 2 * a.shape[axis] * EPS)) if sums.size else 0.0


def _dual_norm(v: np.ndarray, norm: str) -> float:
    """``‖v‖_q`` with q dual to the input norm p."""
    if norm == "inf":
        return float(np.abs(v).sum(axis=-1)) if v.ndim == 1 else np.abs(v).sum(axis=-1)
    if norm == "1":
        return float(np.abs(v).max(axis=-1)) if v.ndim == 1 else np.abs(v).max(axis=-1)
    return float(np.linalg.norm(v, axis=-1)) if v.ndim == 1 else np.linalg.norm(v, axis=-1)


def _scaled(cap: np.ndarray, w):
    """``diag(cap) W``."""
    return sp.diags(cap) @ w if sp.issparse(w) else cap[:, None] * np.asarray(w)


def naive_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """Product of operator norms (see module docstring); max over the target's rows.

    A residual block ``σ(A x + B F(x))`` contributes ``cap · (‖A‖ + ‖B‖ · Π ‖M_j W_j‖)``.
    ``ranges``: precomputed :func:`~lipopt.problems.derivative_ranges` of ``domain``.
    """
    norm = parse_norm(norm)
    target = target or make_target(net)
    caps = iter(_slope_caps(net, domain, ranges))
    inner = 1.0
    for layer in net.layers[:-1]:
        if isinstance(layer, Residual):
            f_norm = 1.0
            for d in layer.inner:
                f_norm *= _operator_norm(_scaled(next(caps), d.weight), norm)
            a = 1.0 if layer.skip is None else _operator_norm(layer.skip, norm)
            b = 1.0 if layer.out is None else _operator_norm(layer.out, norm)
            inner *= float(np.max(next(caps))) * (a + b * f_norm) * (1 + 4 * EPS)
        else:
            inner *= _operator_norm(_scaled(next(caps), layer.weight), norm)
    w_last = net.layers[-1].weight
    outs = [_dual_norm(np.asarray(w_last.T @ c).ravel(), norm) for c in target.vectors]
    depth = net.depth + 2
    return float(max(outs) * inner * (1 + 4 * depth * EPS))


def abs_product_vector(
    net: Network, c: np.ndarray, domain: Domain | None = None, ranges: Ranges | None = None
) -> np.ndarray:
    """``v = |W_1|ᵀ M_1 |W_2|ᵀ ⋯ M_L |W_{L+1}ᵀ|·|c|`` with ``|∇f(x)| ≤ v`` entrywise
    (residual blocks: ``|A|ᵀ + |J_F|ᵀ|B|ᵀ``)."""
    caps = [cap[None, :] for cap in _slope_caps(net, domain, ranges)]
    g = np.abs(np.asarray(c, dtype=float).ravel())[None, :]
    return net.backward(g, caps, absolute=True)[0]


def abs_product_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """Dual norm of :func:`abs_product_vector`, max over the target's rows."""
    norm = parse_norm(norm)
    target = target or make_target(net)
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    widest = max(net.widths)
    vals = [_dual_norm(abs_product_vector(net, c, domain, ranges), norm) for c in target.vectors]
    return float(max(vals) * (1 + 4 * (net.depth + 2) * widest * EPS))


# ---------------------------------------------------------------------------------------------
# Lower bound
# ---------------------------------------------------------------------------------------------
def _smoothed_gradient(net: Network, x: np.ndarray, c: np.ndarray, beta: float) -> np.ndarray:
    """Gradient of the network with every (leaky) ReLU derivative replaced by ``sigmoid(βz)``."""
    slopes = []
    for site, z in zip(net.sites, net.pre_activations(x), strict=True):
        act = site.activation
        if act.name in ("relu", "leaky_relu"):
            lo = 0.0 if act.name == "relu" else act.alpha
            slopes.append(lo + (1 - lo) * 0.5 * (1 + np.tanh(0.5 * beta * z)))
        else:
            slopes.append(act.derivative(z))
    return net.backward(np.tile(np.asarray(c, dtype=float), (x.shape[0], 1)), slopes)


def _dual_direction(g: np.ndarray, norm: str) -> np.ndarray:
    """A subgradient of ``‖g‖_q`` with respect to g (row-wise)."""
    if norm == "inf":
        return np.sign(g)
    if norm == "1":
        out = np.zeros_like(g)
        idx = np.abs(g).argmax(axis=1)
        out[np.arange(len(g)), idx] = np.sign(g[np.arange(len(g)), idx])
        return out
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)


def lower_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    *,
    n_samples: int = 2000,
    n_starts: int = 16,
    steps: int = 60,
    seed: int = 0,
    n_verify: int = 8,
) -> LowerBound:
    """A lower bound on the Lipschitz constant: the best *secant* ``|cᵀ(f(b) − f(a))| / ‖b − a‖_p``
    with ``a, b`` in the domain, around the points of largest ``‖∇f(x)‖_q``.

    Search: sampling, then gradient steps on the smoothed surrogate ``‖∇f_β(x)‖_q`` (ReLU' ≈
    sigmoid(βz), β increasing, Hessian–vector products by central differences); every iterate is
    a real point. Global bounds sample ``[−10, 10]^n`` (and around ``x0`` if the network carries
    one). Verification: a gradient formula can be wrong at a kink on the domain's edge (it may
    belong to a region outside the domain), so the ``n_verify`` best points are re-measured by
    secants along the dual direction of the gradient (:func:`_secant_lower`); only secant values
    are reported, and every secant between two points of the domain is ≤ the constant.
    """
    norm = parse_norm(norm)
    target = target or make_target(net)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise LipoptError(f"the seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    n = net.input_dim
    if domain is None:
        lo, hi = np.full(n, -GLOBAL_SAMPLING_RADIUS), np.full(n, GLOBAL_SAMPLING_RADIUS)
    else:
        lo, hi = domain.lo, domain.hi
    width = float(np.max(hi - lo)) if np.all(np.isfinite(hi - lo)) else 1.0
    best = LowerBound(0.0, "sampling", None, None)
    for c, label in zip(target.vectors, target.labels, strict=True):
        found: list[tuple[float, np.ndarray, str]] = []  # (gradient norm, point, how found)
        pts = lo + (hi - lo) * rng.random((n_samples, n))
        if domain is None:
            # narrower shells find the many regions near the origin and the data
            scale = np.geomspace(1e-2, 1.0, n_samples)[:, None]
            centre = net.x0 if net.x0 is not None else np.zeros(n)
            pts = np.clip(centre + scale * (pts - 0.5 * (lo + hi)), lo, hi)
        vals = _dual_norm(net.gradient(pts, c), norm)
        order = np.argsort(vals)
        found += [(float(vals[i]), pts[i], "sampling") for i in order[-n_verify:]]
        # multi-start smoothed ascent from the best samples
        x = pts[order[-n_starts:]].copy()
        step, h = 0.05 * width, 1e-5 * max(width, 1e-3)
        for k in range(steps):
            beta = 10.0 ** (1 + 3 * k / max(1, steps - 1)) / max(width, 1e-6)
            g = _smoothed_gradient(net, x, c, beta)
            v = _dual_direction(g, norm)
            # ∇ₓ ⟨v, ∇f_β(x)⟩ = H_β v (H symmetric): a central difference of ∇f_β along v
            direction = (
                _smoothed_gradient(net, x + h * v, c, beta) - _smoothed_gradient(net, x - h * v, c, beta)
            ) / (2 * h)
            nrm = np.linalg.norm(direction, axis=1, keepdims=True)
            x = np.clip(x + step * direction / np.maximum(nrm, 1e-300), lo, hi)
            vals = _dual_norm(net.gradient(x, c), norm)
            i = int(np.argmax(vals))
            found.append((float(vals[i]), x[i].copy(), "sampling+ascent"))
            step *= 0.97
        found.sort(key=lambda f: f[0])
        box = None if domain is None else (domain.lo, domain.hi)
        for _, point, how in found[-n_verify:]:
            value = _secant_lower(net, c, point, norm, box, width)
            if value > best.value:
                best = LowerBound(value, how, point.copy(), label)
    return best


def _secant_lower(
    net: Network,
    c: np.ndarray,
    x: np.ndarray,
    norm: str,
    box: tuple[np.ndarray, np.ndarray] | None,
    width: float,
) -> float:
    """``max_h |cᵀ(f(b) − f(a))| / ‖b − a‖_p`` for ``a, b = x ∓ h d`` (clipped to the box), ``d``
    the dual direction of ``∇f(x)``, ``h`` from ``10⁻²`` to ``10⁻⁶`` of the domain's width; the
    difference is reduced by a float margin ``10⁻¹²·(|f(a)| + |f(b)|)`` so it never gains from
    rounding."""
    g = net.gradient(x[None, :], c)
    d = _dual_direction(g, norm)[0]
    if not np.any(d):
        return 0.0
    q = {"inf": np.inf, "2": 2, "1": 1}[norm]
    hs = width * np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    a = x[None, :] - hs[:, None] * d[None, :]
    b = x[None, :] + hs[:, None] * d[None, :]
    if box is not None:
        a, b = np.clip(a, *box), np.clip(b, *box)
    fa = net.forward(a) @ c
    fb = net.forward(b) @ c
    dist = np.linalg.norm(b - a, ord=q, axis=1)
    diff = np.abs(fb - fa) - 1e-12 * (np.abs(fa) + np.abs(fb))
    ok = dist > 0
    if not np.any(ok):
        return 0.0
    return float(max(0.0, np.max(diff[ok] / dist[ok])))


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------
def _relaxation_bound(
    problem: LipschitzProblem,
    method: str,
    degree: int,
    options: dict,
) -> BoundResult:
    """Run one relaxation on every POP of the problem and combine (max, then transform)."""
    runner = _relaxation_runner(method)
    key = "lp" if method == "lp" else "sdp"
    budget = options.get(key, {}).get("time_limit")
    values, solver_values, statuses = [], [], []
    build = solve = 0.0
    size: dict = {}
    certified = True
    solver_name = None
    over_time = 0
    t0 = time.perf_counter()
    for pop in problem.pops:
        if pop.n_vars == 0:  # constant polynomial: exact
            values.append(pop.polynomial.constant_term + pop.rounding_slack)
            solver_values.append(pop.polynomial.constant_term)
            statuses.append("optimal")
            continue
        pop_options = options
        if budget is not None:  # the time limit covers the whole step, shared by its POPs
            remaining = budget - (time.perf_counter() - t0)
            if remaining <= 0.0:
                values.append(positive_part_bound(pop))
                solver_values.append(None)
                statuses.append("time_limit")
                over_time += 1
                continue
            pop_options = {**options, key: {**options.get(key, {}), "time_limit": remaining}}
        r = runner(pop, degree, pop_options)
        values.append(r.value)
        solver_values.append(r.solver_value)
        statuses.append(str(r.status))
        certified &= bool(r.certified)
        build += r.timings.build
        solve += r.timings.solve
        solver_name = r.solver or solver_name
        for k, v in r.size.to_dict().items():
            k = _LEGACY_SIZE_KEYS.get(k, k)
            maxed = k.startswith("max") or k == "memory_bytes"
            size[k] = max(size.get(k, 0), v) if maxed else size.get(k, 0) + v
    status = next((s for s in statuses if s != "optimal"), "optimal")
    value = problem.combine(values) if all(np.isfinite(values)) else float("inf")
    solver_value = (
        problem.combine(solver_values)
        if all(v is not None and np.isfinite(v) for v in solver_values)
        else None
    )
    size["pops"] = len(problem.pops)
    result = BoundResult(
        method,
        degree,
        value,
        bool(certified and np.isfinite(value)),
        status,
        time.perf_counter() - t0,
        build,
        solve,
        solver_value,
        size,
        solver_name,
    )
    if over_time:
        result.note = (
            f"time limit reached: {over_time} of {len(problem.pops)} POPs bounded by their "
            "positive coefficients only (valid, loose)"
        )
    return result


#: typed :class:`~lipopt.results.Size` fields → the size keys of the old rows (the sweep's columns)
_LEGACY_SIZE_KEYS = {"constraints": "rows", "variables": "cols", "nonzeros": "nnz",
                     "largest_clique": "max_clique", "psd_blocks": "n_blocks", "largest_block": "max_block"}


def positive_part_bound(pop: BinaryPOP) -> float:
    """The degree-0 certificate ``max p ≤ p_∅ + Σ_{S≠∅} max(p_S, 0)`` on ``{0,1}^n`` (each
    ``u^S ∈ {0,1}``), plus the POP's rounding slack; summed with :func:`~lipopt.floats.safe_sum`."""
    coef = pop.polynomial.coef
    const = pop.polynomial.constant_term
    positive = coef[(coef > 0) & (pop.polynomial.degrees > 0)]
    return safe_sum([const, *positive.tolist(), pop.rounding_slack])


def _relaxation_runner(method: str) -> Callable:
    """``(pop, degree, options) -> result`` with value/solver_value/certified/status/times/size."""
    if method == "lp":
        from .solvers.lp_pipeline import lp_bound

        return lambda pop, k, o: lp_bound(pop, k, **o.get("lp", {}))
    if method in ("sdp", "sdp+lp"):
        from .solvers.sdp_pipeline import sdp_bound

        return lambda pop, k, o: sdp_bound(pop, k, with_lp=(method == "sdp+lp"), **o.get("sdp", {}))
    raise LipoptError(f"unknown relaxation {method!r}")


def _exact_pop_bound(problem: LipschitzProblem, max_vars: int) -> BoundResult:
    from .exact import exact_pop_max

    t0 = time.perf_counter()
    vals = []
    for pop in problem.pops:
        if pop.n_vars > max_vars:
            raise LipoptError(
                f"exact-pop enumerates 2^{pop.n_vars} vertices, above the limit of 2^{max_vars}; "
                "use it on tiny networks only, or use --method lp"
            )
        v = exact_pop_max(pop.polynomial, max_vars=max_vars) if pop.n_vars else pop.polynomial.constant_term
        # evaluation error of a sum of products: ≤ (degree + terms)·eps·Σ|coef|
        err = (pop.degree + pop.polynomial.num_terms + 2) * EPS * pop.polynomial.abs_coef_sum()
        vals.append(v + err + pop.rounding_slack)
    dt = time.perf_counter() - t0
    value = problem.combine(vals)
    return BoundResult(
        "exact-pop",
        None,
        value,
        True,
        "optimal",
        dt,
        0.0,
        dt,
        value,
        {"max_vars": max(p.n_vars for p in problem.pops)},
    )


def _lipsdp_bound(
    net: Network, norm: str, target: Target, domain: Domain | None, options: dict
) -> BoundResult:
    """LipSDP-Neuron. One target vector ``c`` (``--output``, ``--margin``): the scalar network
    ``cᵀN`` (last layer folded to ``cᵀW_{L+1}``), which bounds exactly the chain's quantity.
    Several: the vector-output constant ``L`` of ``N`` (the published comparison), and
    ``|cᵀ(N(x) − N(y))| ≤ ‖c‖₂ L ‖x − y‖₂``. ``options["lipsdp"]["per_target"]`` forces either.
    """
    if norm != "2":
        raise LipoptError("lipsdp bounds the ℓ2 constant only: use it with --norm 2")
    if domain is not None:
        raise LipoptError("lipsdp is a global method; drop the domain or use --method lp/sdp")
    if not net.is_chain:
        raise LipoptError("lipsdp supports plain feed-forward chains only, not residual blocks")
    from .lipsdp import lipsdp_neuron

    acts = {site.activation for site in net.sites}
    slopes = [a.slope_bounds for a in acts] or [(1.0, 1.0)]
    alpha, beta = min(s[0] for s in slopes), max(s[1] for s in slopes)
    weights = [layer.dense_weight() for layer in net.layers]
    opts = dict(options.get("lipsdp", {}))
    per_target = opts.pop("per_target", None)
    if per_target is None:
        per_target = len(target.vectors) == 1
    t0 = time.perf_counter()
    if not per_target:
        r = lipsdp_neuron(weights, alpha=alpha, beta=beta, **opts)
        scale = float(max(np.linalg.norm(c) for c in target.vectors))
        runs = [(r, r.certified_value * scale, r.solver_value * scale)]
    else:
        # the hidden map x ↦ h(x) is Lipschitz with at most Π‖W_l‖₂ · max|slope|^L (ℓ2)
        slope = max(abs(alpha), abs(beta))
        inner = float(np.prod([_spectral_norm_upper(w) for w in weights[:-1]])) * slope**net.depth
        runs = []
        for c in target.vectors:
            c = np.asarray(c, dtype=float)
            folded = (c @ weights[-1])[None, :]
            # |fl(cᵀW) − cᵀW| ≤ (m + 2)·eps·|c|ᵀ|W| entrywise (m = len(c)); that error row adds
            # at most its ℓ2 norm times the hidden map's Lipschitz constant
            err = (len(c) + 2) * EPS * (np.abs(c) @ np.abs(weights[-1]))
            r = lipsdp_neuron([*weights[:-1], folded], alpha=alpha, beta=beta, **opts)
            runs.append((r, r.certified_value + float(np.linalg.norm(err)) * inner, r.solver_value))
    dt = time.perf_counter() - t0
    worst = max(range(len(runs)), key=lambda i: runs[i][1])
    r, value, solver_value = runs[worst]
    result = BoundResult(
        "lipsdp",
        None,
        value * (1 + 4 * EPS),
        all(bool(x[0].certified) for x in runs),
        r.status,
        dt,
        sum(getattr(x[0], "build_time_s", 0.0) or 0.0 for x in runs),
        sum(getattr(x[0], "solve_time_s", 0.0) or 0.0 for x in runs),
        solver_value,
        {"neurons": sum(net.hidden_sizes), "per_target": bool(per_target), "solves": len(runs)},
        getattr(r, "solver", None),
    )
    return result


def _ball_bound(net: Network, norm: str, target: Target, domain: Domain | None, options: dict) -> BoundResult:
    """``sdp-ball``: the registered method (:mod:`lipopt.methods.ball`) as an old-style row."""
    if norm != "2":
        raise LipoptError("sdp-ball bounds the ℓ2 constant only: use it with --norm 2, or --method sdp")
    from .registry import Context, get_method, parse_options

    opts = dict(options.get("sdp-ball", {}))
    time_limit, seed = opts.pop("time_limit", None), opts.pop("seed", 0)
    ctx = Context(net, norm, target, domain, seed=seed, time_limit=time_limit)
    r = get_method("sdp-ball").run(ctx, None, parse_options("sdp-ball", opts))
    t = r.timings
    return BoundResult("sdp-ball", None, r.value, r.certified, str(r.status), t.total, t.build, t.solve,
                       r.solver_value, r.size.to_dict(), r.solver)


def _keep_monotone(previous: list[BoundResult], new: BoundResult) -> BoundResult:
    """Levels are nested, so a lower level's certificate is valid for a higher one: if the new
    level's certified value came out above it (solver tolerance), report the tighter one."""
    earlier = [
        b
        for b in previous
        if b.method == new.method and b.certified and b.degree is not None and b.degree < new.degree
    ]
    if not earlier:
        return new
    best = min(earlier, key=lambda b: b.value)
    if new.certified and new.value <= best.value:
        return new
    new.note = (
        f"degree {new.degree} certified {new.value:.10g}"
        + ("" if new.certified else " (not certified)")
        + f"; kept the degree-{best.degree} certificate, valid for every higher degree"
    )
    new.value, new.certified = best.value, True
    return new


def default_degrees(problem: LipschitzProblem, method: str) -> list[int]:
    deg = max((p.degree for p in problem.pops), default=1)
    if method == "lp":
        return [max(deg, 2), max(deg, 2) + 1]
    return [1]


def bound_chain(
    net: Network,
    norm: str = "inf",
    methods: Sequence[str] = ("naive", "abs-product", "lp", "lower"),
    degrees: Sequence[int] | dict[str, Sequence[int]] | None = None,
    target: Target | None = None,
    domain: Domain | None = None,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_memory_bytes: float = 8e9,
    exact_max_vars: int = 22,
    progress: bool = False,
    options: dict | None = None,
) -> ChainResult:
    """Naive products, relaxations of each requested degree, and a lower bound.

    ``degrees`` applies to the relaxations — one list for all, or ``{method: [degrees]}`` —
    (``lp``: Sherali–Adams level k ≥ polynomial degree;
    ``sdp``: moment order d, 1 = Shor). Relaxation values are non-increasing in the degree.
    """
    norm = parse_norm(norm)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LipoptError(f"unknown method {unknown[0]!r}; choose from: {', '.join(METHODS)}")
    per_method = degrees if isinstance(degrees, dict) else {m: degrees for m in RELAXATIONS}
    for degs in per_method.values():
        bad = [d for d in (degs or []) if not isinstance(d, int | np.integer) or d < 1]
        if bad:
            raise LipoptError(f"degree must be a positive integer, got {bad[0]!r}")
    target = target or make_target(net)
    opts = {key: dict(value) for key, value in (options or {}).items()}  # never mutate the caller's
    opts.setdefault("lp", {}).setdefault("time_limit", time_limit)
    opts["lp"].setdefault("max_bytes", max_memory_bytes)
    opts.setdefault("sdp", {}).setdefault("time_limit", time_limit)
    opts["sdp"].setdefault("max_bytes", max_memory_bytes)
    opts.setdefault("sdp-ball", {}).setdefault("time_limit", time_limit)

    steps: list[tuple[str, int | None]] = []
    problem: LipschitzProblem | None = None
    needs_problem = any(m in RELAXATIONS or m == "exact-pop" for m in methods)
    ranges = None  # one interval (CROWN) pass shared by the baselines and the POP
    if needs_problem or any(m in ("naive", "abs-product") for m in methods):
        ranges = derivative_ranges(net, domain)
    if needs_problem:
        problem = build_problem(net, norm, target, domain, ranges=ranges)
    for m in methods:
        if m in RELAXATIONS:
            assert problem is not None
            given = per_method.get(m)
            degs = sorted(set(given)) if given else default_degrees(problem, m)
            steps.extend((m, int(d)) for d in degs)
        elif m != "lower":
            steps.append((m, None))

    bar = _progress(len(steps) + ("lower" in methods), progress)
    results: list[BoundResult] = []
    refusals: list[LipoptError] = []
    for m, d in steps:
        bar.set_description(f"{m}" + (f" degree {d}" if d else ""))
        t0 = time.perf_counter()
        if m == "naive":
            v = naive_bound(net, norm, target, domain, ranges)
            results.append(BoundResult(m, None, v, True, "optimal", time.perf_counter() - t0))
        elif m == "abs-product":
            v = abs_product_bound(net, norm, target, domain, ranges)
            results.append(BoundResult(m, None, v, True, "optimal", time.perf_counter() - t0))
        elif m == "exact-pop":
            assert problem is not None
            results.append(_exact_pop_bound(problem, exact_max_vars))
        elif m == "lipsdp":
            results.append(_lipsdp_bound(net, norm, target, domain, opts))
        elif m == "sdp-ball":
            results.append(_ball_bound(net, norm, target, domain, opts))
        else:
            assert problem is not None and d is not None
            try:
                results.append(_keep_monotone(results, _relaxation_bound(problem, m, d, opts)))
            except LipoptError as exc:
                # too large / unsupported: one step alone ends with its error; in a chain it
                # becomes a "refused" row and the other bounds are kept
                if len(steps) == 1:
                    raise
                refusals.append(exc)
                results.append(_refused(m, d, exc, time.perf_counter() - t0))
        bar.update(1)
    if refusals and len(refusals) == len(results):
        bar.close()
        raise refusals[0]  # nothing but refusals: the first one is the answer
    low = None
    if "lower" in methods:
        bar.set_description("lower bound")
        low = lower_bound(net, norm, target, domain, seed=seed)
        bar.update(1)
    bar.close()
    return ChainResult(net.name, norm, target, domain, results, low)


def _refused(method: str, degree: int, exc: LipoptError, elapsed: float) -> BoundResult:
    r = BoundResult(method, degree, float("inf"), False, "refused", elapsed)
    r.note = str(exc)
    return r


class _NoBar:
    def set_description(self, *_a) -> None: ...
    def update(self, *_a) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, leave=False, unit="step")
