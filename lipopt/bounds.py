"""Bounds on the target's Lipschitz constant: naive norm products, lower bounds, and the chain.

The quantity (:meth:`~lipopt.problems.Target.quantity`) is the scalar ``L_p(cᵀN) = sup ‖∇(cᵀN)‖_q``
for an output, a margin or a vector ``c``, and otherwise the network's constant
``sup_x ‖J(x)‖_{p→p}`` (DESIGN.md §1b). Upper bounds (all valid in floating point):

* ``naive``: ``Π_l ‖M_l W_l‖_{p→p}`` over the hidden blocks with ``M_l = diag(max |σ'|)`` per
  neuron, times ``‖W_{L+1}ᵀ c‖_q`` (scalar target) or ``‖W_{L+1}‖_{p→p}`` (the network).
* ``abs-product``: ``|J(x)| ≤ A = |W_{L+1}| M_L |W_L| ⋯ M_1 |W_1|`` entrywise, and the ℓ1, ℓ2, ℓ∞
  operator norms are monotone on nonnegative matrices, so the network's constant is
  ``≤ ‖A‖_{p→p}``; a scalar target gets ``‖Aᵀ|c|‖_q``. Never worse than ``naive`` for ℓ1, ℓ∞.
* relaxations (``lp``, ``sdp``, ``sdp+lp``, ``exact-pop``, ``sdp-ball``) of the POPs of
  :mod:`lipopt.problems`, certified from their duals; for the network's ℓ2/ℓ1 constant their
  per-row bounds are combined (:meth:`~lipopt.norms.Norm.combine_rows`, stated in the row's
  note). ``lipsdp`` bounds the ℓ2 network constant natively.

Lower bound (``lower``): the best secant between real points of the domain, found by sampling
and multi-start ascent on a smoothed surrogate; every secant is ≤ the true constant.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import LipoptError
from .floats import EPS, safe_sum
from .lower import GLOBAL_SAMPLING_RADIUS, LowerBound, lower_bound  # noqa: F401 (re-exported)
from .network import Network
from .norms import spectral_norm_upper
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
class ChainResult:
    network: str
    norm: str
    target: Target
    domain: Domain | None
    bounds: list[BoundResult]
    lower_bound: LowerBound | None

    @property
    def quantity(self) -> str:
        """What every row bounds, in words (:meth:`~lipopt.problems.Target.quantity`)."""
        return self.target.quantity(self.norm)

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
            "quantity": self.quantity,
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


def naive_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """Product of operator norms (see the module doc); each hidden block contributes
    :meth:`~lipopt.network.Block.naive_norm` (a residual block ``σ(A x + B F(x))``:
    ``cap · (‖A‖ + ‖B‖ · Π ‖M_j W_j‖)``).
    ``ranges``: precomputed :func:`~lipopt.problems.derivative_ranges` of ``domain``.
    """
    norm = parse_norm(norm)
    target = target or make_target(net)
    inner = 1.0
    for layer, caps in list(net.per_block(_slope_caps(net, domain, ranges)))[:-1]:
        inner *= layer.naive_norm(norm, caps)
    if target.is_network:
        out = net.layers[-1].naive_norm(norm, [])
    else:
        w_last, _ = net.layers[-1].affine()
        out = max(norm.dual_norm(np.asarray(w_last.T @ c).ravel()) for c in target.vectors)
    depth = net.depth + 2
    return float(out * inner * (1 + 4 * depth * EPS))


def abs_product_vector(
    net: Network, c: np.ndarray, domain: Domain | None = None, ranges: Ranges | None = None
) -> np.ndarray:
    """``v = |W_1|ᵀ M_1 |W_2|ᵀ ⋯ M_L |W_{L+1}ᵀ|·|c|`` with ``|∇f(x)| ≤ v`` entrywise
    (residual blocks: ``|A|ᵀ + |J_F|ᵀ|B|ᵀ``)."""
    c = np.abs(np.asarray(c, dtype=float).ravel())[None, :]
    return abs_product_matrix(net, domain, ranges, rows=c)[0]


def abs_product_matrix(
    net: Network, domain: Domain | None = None, ranges: Ranges | None = None, rows: np.ndarray | None = None
) -> np.ndarray:
    """``A = |W_{L+1}| M_L |W_L| ⋯ M_1 |W_1|`` (``out × in``, ``|J(x)| ≤ A`` entrywise), or
    ``rows @ A`` for nonnegative ``rows``."""
    caps = [cap[None, :] for cap in _slope_caps(net, domain, ranges)]
    g = np.eye(net.output_dim) if rows is None else rows
    return net.backward(g, caps, absolute=True)


def abs_product_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """``‖A‖_{p→p}`` for the network, else the largest ``‖Aᵀ|c|‖_q`` over the target's rows
    (see :func:`abs_product_matrix`), padded for the rounding of ``A``."""
    norm = parse_norm(norm)
    target = target or make_target(net)
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    widest = max(net.widths)
    if target.is_network:
        value = norm.operator_norm(abs_product_matrix(net, domain, ranges))
    else:
        value = max(norm.dual_norm(abs_product_vector(net, c, domain, ranges)) for c in target.vectors)
    return float(value * (1 + 4 * (net.depth + 2) * widest * EPS))


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------
def _relaxation_bound(
    problem: LipschitzProblem,
    method: str,
    degree: int,
    options: dict,
) -> BoundResult:
    """Run one relaxation on every POP of the problem and combine (:meth:`LipschitzProblem.combine`)."""
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
        statuses.append(r.status)
        certified &= bool(r.certified)
        build += r.build_time_s or 0.0
        solve += r.solve_time_s or 0.0
        solver_name = getattr(r, "solver", None) or solver_name
        for k, v in (r.size or {}).items():
            if isinstance(v, int | float):
                size[k] = max(size.get(k, 0), v) if k.startswith("max") else size.get(k, 0) + v
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
    _add_note(result, problem.combination_note)
    if over_time:
        _add_note(
            result,
            f"time limit reached: {over_time} of {len(problem.pops)} POPs bounded by their "
            "positive coefficients only (valid, loose)",
        )
    return result


def _add_note(result: BoundResult, note: str | None) -> BoundResult:
    if note:
        result.note = note if not result.note else f"{result.note}; {note}"
    return result


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
        note=problem.combination_note,
    )


def _lipsdp_bound(
    net: Network, norm: str, target: Target, domain: Domain | None, options: dict
) -> BoundResult:
    """LipSDP-Neuron. A scalar target ``c`` (``--output``, ``--margin``): the scalar network
    ``cᵀN`` (last layer folded to ``cᵀW_{L+1}``). The network (several outputs): its ℓ2→ℓ2
    constant ``L`` natively (the published comparison). ``options["lipsdp"]["per_target"]``
    forces either: per row (the network's constant then combines the rows, see
    :meth:`~lipopt.problems.Target.combine`), or ``|cᵀ(N(x) − N(y))| ≤ ‖c‖₂ L ‖x − y‖₂``.
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
        inner = float(np.prod([spectral_norm_upper(w) for w in weights[:-1]])) * slope**net.depth
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
    r = runs[worst][0]
    value = target.combine([x[1] for x in runs], norm)
    solver_value = target.combine([x[2] for x in runs], norm)
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
    return _add_note(result, target.combination_note(norm) if len(runs) > 1 else None)


def _ball_bound(net: Network, norm: str, target: Target, domain: Domain | None, options: dict) -> BoundResult:
    """``sdp-ball``: the ℓ2 ball-constrained SDP (b) of one-hidden-layer nets, per target row
    (rows combined by :meth:`~lipopt.problems.Target.combine`)."""
    if norm != "2":
        raise LipoptError("sdp-ball bounds the ℓ2 constant only: use it with --norm 2, or --method sdp")
    from .solvers.ball_sdp import ball_sdp_bound, ball_sdp_target_bound

    opts = options.get("sdp-ball", {})
    allowed = [k for k in inspect.signature(ball_sdp_bound).parameters if k not in ("net", "c", "domain")]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise LipoptError(f"unknown sdp-ball option {unknown[0]!r}; allowed: {', '.join(allowed)}")
    t0 = time.perf_counter()
    r = ball_sdp_target_bound(net, target, domain, combine=lambda vs: target.combine(vs, norm), **opts)
    result = BoundResult(
        "sdp-ball",
        None,
        r.value,
        r.certified,
        r.status,
        time.perf_counter() - t0,
        r.build_time_s,
        r.solve_time_s,
        r.solver_value,
        r.size,
        r.solver,
    )
    return _add_note(result, target.combination_note(norm))


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
    _add_note(
        new,
        f"degree {new.degree} certified {new.value:.10g}"
        + ("" if new.certified else " (not certified)")
        + f"; kept the degree-{best.degree} certificate, valid for every higher degree",
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
