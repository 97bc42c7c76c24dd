r"""The polynomial-relaxation methods ``lp``, ``sdp``, ``sdp+lp`` and ``exact-pop``.

A step bounds every binary POP of the request (``ctx.problem().pops``) and combines the values
(``problem.combine``: the maximum, or its square root for ℓ2 squares). Per POP a pipeline composes
the stages — POP → graph (:func:`lipopt.graph.clique_structure`) → relaxation
(:mod:`lipopt.hierarchy`) → backend (:func:`lipopt.solvers.base.solve`) → certificate
(:mod:`lipopt.certificates`) — into a :class:`PartBound`: :func:`lp_bound`, :func:`sdp_bound`.

Limits. The step's time limit is shared by its POPs: each gets what is left, and the POPs left
when it is spent get the degree-0 certificate :func:`positive_part_bound` (valid, loose). Memory:
:meth:`estimate` sizes the step before anything is built, and every builder refuses
(:class:`~lipopt.errors.LipoptError`) above ``ctx.max_memory_bytes``.

* ``lp`` — Sherali–Adams level ``k ≥ deg p`` (LiPopt-k) on {0,1} (or the Krivine box basis),
  HiGHS, certified from the LP dual.
* ``sdp`` — moment order ``d`` (1 = Shor), raised to ``⌈deg p / 2⌉`` when lower (noted on the
  row); order 1 on a quadratic POP is the ±1 Shor program solved by the mixing method, anything
  else the moment relaxation through the cvxpy adapter (the table picks the solver).
* ``sdp+lp`` — order-``psd_order`` moment matrices (default Shor) plus the Sherali–Adams rows of
  level ``k = max(level, 2, deg p)`` on the same cliques (noted when raised); on a quadratic POP
  at level 2 with a large moment matrix the rows are dualised over mixing solves (Lagrangian).
* ``exact-pop`` — vertex enumeration of every POP (tiny problems), with its evaluation error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..certificates import certify_lp, certify_moment_dual, certify_shor
from ..errors import LipoptError
from ..floats import safe_sum
from ..graph import CLIQUE_METHODS, clique_structure
from ..hierarchy.lp import BASES, build_lp, check_lp_size, default_project, estimate_lp_size
from ..hierarchy.sdp import DEFAULT_MAX_BLOCK, build_moment_relaxation, check_moment_size, psd_cliques
from ..hierarchy.shor import DENSE_SHOR_LIMIT, quadratic_form, shor_program
from ..norms import parse_norm
from ..polynomial import Polynomial
from ..progress import report
from ..registry import Context, Method, Suggestion, register
from ..results import BoundResult, Certificate, Size, Status, Timings
from ..solvers.base import Limits, Outcome, solve
from ..solvers.highs import ALGORITHMS
from ..solvers.lagrangian import ShorCutsProgram

__all__ = ["LPOptions", "PartBound", "SDPOptions", "lp_bound", "positive_part_bound", "sdp_bound"]

#: the moment route's default solver is Clarabel up to this many PSD (svec) entries (the table);
#: above it, a quadratic sdp+lp level-2 step dualises its rows instead (Lagrangian route)
LAGRANGIAN_MIN_PSD_ENTRIES = 500
#: bytes per entry of the dense ±1 matrix ``C`` the mixing routes store (the Lagrangian route keeps
#: two); the factor is ``O(N√N)`` and the certificate's eigenproblem briefly needs about two more
#: ``N × N`` arrays, which the estimate leaves out
BYTES_PER_SHOR_ENTRY = 8


@dataclass(frozen=True)
class PartBound:
    """A certified bound on one part of a step (one POP, or one target direction):
    ``value = certificate.value + rounding slack`` (``inf`` when not certified); ``note`` says what
    the pipeline changed (a raised order or level)."""

    value: float
    certificate: Certificate
    status: Status
    timings: Timings = Timings()
    size: Size = Size()
    solver: str = ""
    note: str = ""
    iterations: int = 0

    @property
    def certified(self) -> bool:
        return self.certificate.certified and math.isfinite(self.value)

    @property
    def solver_value(self) -> float | None:
        sv = self.certificate.solver_value
        return sv if sv is not None and math.isfinite(sv) else None


def _unpack(pop) -> tuple[Polynomial, float]:
    if isinstance(pop, Polynomial):
        return pop, 0.0
    return pop.polynomial, float(pop.rounding_slack)


def _finish(
    cert: Certificate, slack: float, out: Outcome, t0: float, build: float, certify: float, size: Size,
    note: str = "",
) -> PartBound:
    """The part's bound from its certificate and the backend's outcome (status, time, solver)."""
    value = (safe_sum([cert.value, slack]) if slack else cert.value) if cert.certified else math.inf
    timings = Timings(time.perf_counter() - t0, build, out.solve_time, certify)
    return PartBound(value, cert, out.status, timings, size, out.solver, note, out.iterations)


def _constant(poly: Polynomial, slack: float) -> PartBound:
    """A POP without free variables: its constant, exactly."""
    v = poly.constant_term
    value = safe_sum([v, slack]) if slack else v
    return PartBound(value, Certificate(v, True, "closed form", v), Status.OPTIMAL)


def positive_part_bound(pop) -> float:
    """The degree-0 certificate ``max p ≤ p_∅ + Σ_{S≠∅} max(p_S, 0)`` on ``{0,1}^n`` (each
    ``u^S ∈ {0,1}``), plus the POP's rounding slack; summed with :func:`~lipopt.floats.safe_sum`."""
    poly, slack = _unpack(pop)
    coef = poly.coef
    positive = coef[(coef > 0) & (poly.degrees > 0)]
    return safe_sum([poly.constant_term, *positive.tolist(), slack])


# ---------------------------------------------------------------------------------------------
# lp
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LPOptions:
    """Options of ``lp`` (CLI ``--lp-*``)."""

    algorithm: str = field(default="auto", metadata={
        "help": "HiGHS algorithm (auto: dual simplex up to 20 000 non-zeros, interior point above)",
        "choices": ALGORITHMS})
    threads: int | None = field(default=None, metadata={"help": "HiGHS threads (0 or unset: automatic)",
                                                         "min": 0})
    basis: str = field(default="sherali-adams", metadata={
        "help": "sherali-adams ({0,1}, u² = u) or krivine (LiPopt's box basis, never tighter)",
        "choices": BASES})
    project: bool | None = field(default=None, metadata={
        "help": "eliminate the private top-level moments exactly (unset: at levels 2 and 3)"})
    cliques: str = field(default="min-degree", metadata={
        "help": "chordal extension of the sparsity graph (dense: one clique)", "choices": CLIQUE_METHODS})
    verbose: bool = field(default=False, metadata={"help": "print HiGHS's log"})

    def __post_init__(self) -> None:
        if self.project and self.basis == "krivine":
            raise LipoptError("project = on applies to the Sherali–Adams basis only, not the krivine basis")


def lp_bound(
    pop, level: int, options: LPOptions = LPOptions(), *, time_limit: float | None = None,
    max_bytes: float = 4e9,
) -> PartBound:
    """Certified level-``level`` Sherali–Adams (or Krivine) bound on ``max p`` over ``{0,1}^n``
    (plus the POP's rounding slack). A solve stopped by ``time_limit`` is still certified (looser)."""
    poly, slack = _unpack(pop)
    t0 = time.perf_counter()
    if poly.n_vars == 0 or poly.degree == 0:
        return _constant(poly, slack)
    cs = clique_structure(poly, options.cliques)
    relax = build_lp(poly, cs, level, max_bytes=max_bytes, basis=options.basis, project=options.project)
    build = time.perf_counter() - t0
    settings = {} if options.algorithm == "auto" else {"algorithm": options.algorithm}
    out = solve(relax.program(), "auto", Limits(time_limit, None, options.verbose, options.threads), settings)
    t1 = time.perf_counter()
    cert = certify_lp(relax, out.duals[0], out.value)
    est = estimate_lp_size(cs, relax.level, relax.basis, project=relax.projected, poly=poly)
    return _finish(cert, slack, out, t0, build, time.perf_counter() - t1,
                   replace(relax.size(), memory_bytes=est.memory_bytes))


def _lp_estimate(pop, level: int, options: LPOptions, max_bytes: float) -> Size:
    """The LP's size before building; refuses (with its rows, columns …) above ``max_bytes``."""
    poly, _ = _unpack(pop)
    if poly.n_vars == 0 or poly.degree == 0:
        return Size()
    if level < poly.degree:
        raise LipoptError(f"level k={level} is below the polynomial degree {poly.degree}")
    project = options.project if options.project is not None else default_project(level, options.basis)
    cs = clique_structure(poly, options.cliques)
    est = estimate_lp_size(cs, level, options.basis, project=project, poly=poly)
    check_lp_size(est, level, options.basis, max_bytes)
    return est


# ---------------------------------------------------------------------------------------------
# sdp, sdp+lp
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SDPOptions:
    """Options of ``sdp`` and ``sdp+lp`` (CLI ``--sdp-*``)."""

    solver: str = field(default="auto", metadata={
        "help": "auto (the table: mixing method for order-1 quadratic POPs, else a conic solver), mixing, "
                "conic, or a conic solver by name",
        "choices": ("auto", "mixing", "conic", "MOSEK", "CLARABEL", "SCS", "CVXOPT")})
    cliques: str = field(default="auto", metadata={
        "help": "PSD blocks on the sparsity graph's cliques (auto: or one dense block when smaller)",
        "choices": ("auto", *CLIQUE_METHODS)})
    psd_order: int = field(default=1, metadata={"help": "sdp+lp: moment order of the PSD blocks", "min": 1})
    sa_solver: str = field(default="auto", metadata={
        "help": "sdp+lp at level 2 on quadratic POPs: conic, lagrangian (rows dualised over mixing solves), "
                "or auto (lagrangian above 500 PSD entries)", "choices": ("auto", "conic", "lagrangian")})
    lagrangian_rounds: int = field(default=50, metadata={"help": "subgradient rounds (Lagrangian route)",
                                                          "min": 0})
    max_block: int = field(default=DEFAULT_MAX_BLOCK, metadata={"help": "largest moment matrix built",
                                                                 "min": 1})
    max_iter: int | None = field(default=None, metadata={"help": "iteration cap (sweeps, conic iterations)",
                                                         "min": 1})
    tol: float = field(default=1e-7, metadata={"help": "relative gap tolerance of the mixing method",
                                                "min": 0})
    verbose: bool = field(default=False, metadata={"help": "print the conic solver's log"})


def _route(poly: Polynomial, order: int, sa_level: int | None, options: SDPOptions) -> str:
    """``shor`` (mixing on the ±1 program), ``lagrangian`` (Shor + SA pair rows) or ``moment``."""
    deg, n = poly.degree, len(poly.variables_used())
    if sa_level is None and order == 1 and deg <= 2 and options.solver in ("auto", "mixing"):
        return "shor"
    big = (n + 1) * (n + 2) // 2 > LAGRANGIAN_MIN_PSD_ENTRIES and n <= DENSE_SHOR_LIMIT
    if sa_level == 2 and order == 1 and deg <= 2 and (
        options.sa_solver == "lagrangian" or (options.sa_solver == "auto" and big)
    ):
        return "lagrangian"
    return "moment"


def _used_order(poly: Polynomial, order: int, sa_level: int | None) -> int:
    """Without Sherali–Adams rows the moment order is raised to ``⌈deg p/2⌉``."""
    return int(order) if sa_level is not None else max(int(order), math.ceil(poly.degree / 2))


def sdp_route(pop, order: int, options: SDPOptions, sa_level: int | None = None) -> str:
    """The route :func:`sdp_bound` takes for ``pop`` (see :func:`_route`)."""
    poly = _unpack(pop)[0].reduce_binary()
    return _route(poly, _used_order(poly, order, sa_level), sa_level, options)


def _moment_cliques(poly: Polynomial, choice: str):
    """The clique structure (shared with the LP path) and the dense-PSD choice of ``cliques``."""
    heuristic = choice if choice in CLIQUE_METHODS and choice != "dense" else "min-degree"
    dense = {"dense": True, "auto": None}.get(choice, False)
    return clique_structure(poly, heuristic), dense


def _check_shor_memory(n: int, factor: int, max_bytes: float | None) -> None:
    need = factor * BYTES_PER_SHOR_ENTRY * (n + 1) ** 2
    if max_bytes is not None and need > max_bytes:
        raise LipoptError(
            f"the Shor SDP of {n} variables would need about {need / 1e9:.2f} GB, above the memory budget "
            f"of {max_bytes / 1e9:.2f} GB; use --method lp, or raise --max-memory"
        )


def sdp_bound(
    pop, order: int = 1, options: SDPOptions = SDPOptions(), *, sa_level: int | None = None,
    time_limit: float | None = None, max_bytes: float | None = None, seed: int = 0,
) -> PartBound:
    """Certified moment-order-``order`` bound on ``max p`` over ``{0,1}^n`` (plus the rounding slack),
    with the Sherali–Adams rows of level ``sa_level`` if given. Without SA rows the order is raised
    to ``⌈deg p/2⌉`` (``note`` says so). An early stop (time or iteration limit) is still certified."""
    poly, slack = _unpack(pop)
    poly = poly.reduce_binary()
    if int(order) != order or order < 1:
        raise LipoptError(f"the SDP order must be a positive integer, got {order!r}")
    t0 = time.perf_counter()
    if len(poly.variables_used()) == 0:
        return _constant(poly, slack)
    used_order = _used_order(poly, order, sa_level)
    note = f"moment order raised to {used_order} (⌈degree/2⌉)" if used_order > order else ""
    route = _route(poly, used_order, sa_level, options)
    limits = Limits(time_limit, options.max_iter, options.verbose)
    n = len(poly.variables_used())
    if route == "shor":
        _check_shor_memory(n, 1, max_bytes)
        program = shor_program(poly)
        build = time.perf_counter() - t0
        out = solve(program, options.solver, limits, {"tol": options.tol, "seed": seed})
        t1 = time.perf_counter()
        cert, size = certify_shor(program, out), Size(constraints=n + 1, psd_blocks=1, largest_block=n + 1)
    elif route == "lagrangian":
        _check_shor_memory(n, 2, max_bytes)
        sub, _ = poly.restrict(poly.variables_used())
        program = ShorCutsProgram(*quadratic_form(sub), extra=slack)  # one padded sum, slack included
        slack = 0.0
        build = time.perf_counter() - t0
        settings = {"rounds": options.lagrangian_rounds, "tol": options.tol, "seed": seed}
        out = solve(program, "lagrangian", limits, settings)
        t1 = time.perf_counter()
        cert = out.certificate
        size = Size(constraints=n + 1 + program.n_cuts, nonzeros=4 * program.n_cuts, psd_blocks=1,
                    largest_block=n + 1)
    else:
        cs, dense = _moment_cliques(poly, options.cliques)
        rel = build_moment_relaxation(poly, used_order, cs, dense=dense, sa_level=sa_level,
                                      max_block=options.max_block, max_bytes=max_bytes)
        build = time.perf_counter() - t0
        # the time limit covers the build
        remaining = None if time_limit is None else max(time_limit - build, 1e-3)
        solver = "auto" if options.solver in ("auto", "conic") else options.solver
        out = solve(rel, solver, Limits(remaining, options.max_iter, options.verbose))
        t1 = time.perf_counter()
        Z, mu = list(out.duals[: len(rel.blocks)]), (out.duals[len(rel.blocks):] or (None,))[0]
        sv = out.value if math.isfinite(out.value) else None
        cert = Certificate.none("SDP dual", sv, "no dual")
        if any(z is not None for z in Z) or mu is not None:
            cert = certify_moment_dual(rel, Z or [None] * len(rel.blocks), mu, sv)
        size = rel.size()
        build += out.setup_time
    return _finish(cert, slack, out, t0, build, time.perf_counter() - t1, size, note)


def _sdp_estimate(pop, order: int, sa_level: int | None, options: SDPOptions, max_bytes: float) -> Size:
    """The step's size before building; refuses (with its block sizes …) above the limits."""
    poly, _ = _unpack(pop)
    poly = poly.reduce_binary()
    n = len(poly.variables_used())
    if n == 0:
        return Size()
    used_order = order if sa_level is not None else max(order, math.ceil(poly.degree / 2))
    route = _route(poly, used_order, sa_level, options)
    if route != "moment":
        copies = 1 if route == "shor" else 2
        _check_shor_memory(n, copies, max_bytes)
        memory = copies * BYTES_PER_SHOR_ENTRY * (n + 1) ** 2
        return Size(psd_blocks=1, largest_block=n + 1, memory_bytes=memory)
    cs, dense = _moment_cliques(poly, options.cliques)
    sa = [c for c in cs.cliques if len(c)] if sa_level is not None else None
    cliques = psd_cliques(poly, cs, used_order, dense)
    return check_moment_size(cliques, used_order, sa, sa_level, options.max_block, max_bytes)


# ---------------------------------------------------------------------------------------------
# Steps: every POP under one budget
# ---------------------------------------------------------------------------------------------
def _merge_sizes(sizes: list[Size], pops: int) -> Size:
    out = Size()
    for s in sizes:
        out = out.merge(s)
    return out.merge(Size(pops=pops))


def _combine(name: str, level: int | None, problem, parts: list[PartBound], elapsed: float) -> BoundResult:
    """One row from the POPs' bounds (``problem.combine`` of the values; certified iff all are)."""
    values = [p.value for p in parts]
    value = problem.combine(values) if all(np.isfinite(values)) else math.inf
    svs = [p.solver_value for p in parts]
    status = next((p.status for p in parts if p.status != Status.OPTIMAL), Status.OPTIMAL)
    timings = Timings(elapsed, sum(p.timings.build for p in parts), sum(p.timings.solve for p in parts),
                      sum(p.timings.certify for p in parts))
    notes = list(dict.fromkeys(p.note for p in parts if p.note))
    kinds = [p.certificate.kind for p in parts if p.certificate.kind != "closed form"]
    return BoundResult(
        name, level, value, all(p.certified for p in parts), status, timings,
        _merge_sizes([p.size for p in parts], len(parts)),
        next((p.solver for p in reversed(parts) if p.solver), None),
        problem.combine(svs) if all(v is not None for v in svs) else None,
        "; ".join(notes) or None, certificate=kinds[0] if kinds else "closed form",
    )


def run_pops(
    name: str, level: int | None, ctx: Context, bound_one: Callable[[object, float | None], PartBound]
) -> BoundResult:
    """Bound every POP of ``ctx.problem()`` with ``bound_one(pop, time_left)`` under the step's
    budget (module docstring) and combine them into one row."""
    problem = ctx.problem()
    budget = ctx.budget()
    parts: list[PartBound] = []
    over_time = 0
    for i, pop in enumerate(problem.pops):
        if len(problem.pops) > 1:
            report(pop=f"{i + 1}/{len(problem.pops)}")
        if pop.n_vars == 0:  # constant polynomial: exact
            parts.append(_constant(pop.polynomial, pop.rounding_slack))
        elif ctx.time_limit is not None and budget.expired():
            cert = Certificate(positive_part_bound(pop), True, "degree-0 (positive coefficients)")
            parts.append(PartBound(cert.value, cert, Status.TIME_LIMIT))
            over_time += 1
        else:
            parts.append(bound_one(pop, None if ctx.time_limit is None else budget.remaining()))
    row = _combine(name, level, problem, parts, budget.elapsed())
    if problem.combination_note:  # the network's ℓ2/ℓ1 constant from per-row bounds
        row = row.with_note(problem.combination_note)
    if over_time:
        row = row.with_note(f"time limit reached: {over_time} of {len(problem.pops)} POPs bounded by their "
                            "positive coefficients only (valid, loose)")
    return row


def _combines_rows(ctx: Context) -> bool:
    """Whether the POPs bound each output and combine them (no native form of the network's
    constant in this norm), known without building them."""
    return ctx.target.combination_note(ctx.norm) is not None and not parse_norm(ctx.norm).has_network_pops


def _estimate_pops(ctx: Context, estimate_one: Callable[[object], Size]) -> Size:
    pops = ctx.problem().pops
    return _merge_sizes([estimate_one(p) for p in pops], len(pops))


@register
class LP(Method):
    """Sherali–Adams LP hierarchy (LiPopt-k) on the binary POPs, certified from the dual."""

    name = "lp"
    summary = "Sherali–Adams LP level k (LiPopt-k) on the sparse binary POP, certified"
    Options = LPOptions
    hierarchy = "level"

    def default_levels(self, ctx: Context) -> list[int | None]:
        deg = max(2, max((p.degree for p in ctx.problem().pops), default=1))
        return [deg, deg + 1]

    def suggest(self, ctx: Context) -> Suggestion | str:
        if _combines_rows(ctx) and ctx.norm == "2":
            # a fallback: not worth expanding the per-output ℓ2 polynomials just to rank it
            return Suggestion((2,), 3.5, "per-output ℓ2 bounds combined into the network's constant (loose)")
        try:
            problem = ctx.problem()
        except LipoptError as exc:
            return str(exc)
        degree = max((p.degree for p in problem.pops), default=1)
        if ctx.norm == "2" and degree > 4:
            return f"the ℓ2 polynomial has degree {degree}: its LP is large and loose"
        level = max(degree, 2)
        # per-output bounds combined into the network's constant (ℓ2: ‖(L_k)‖₂) are loose
        combined = 2.0 if problem.combination_note else 0.0
        also = ", per-output bounds combined" if combined else ""
        if ctx.net.depth == 1:
            why = f"Sherali–Adams level {level} = the polynomial degree (one hidden layer){also}"
            return Suggestion((level,), 1.5 + combined, why)
        # several hidden layers: s is free of the input, so the hierarchy tends to the maximum over
        # all activation patterns; the layer-wise methods with reachability (lifted, bab) are tighter
        terms = problem.pops[0].polynomial.num_terms
        return Suggestion((level,), 3.0 + combined, f"the polynomial has {terms:,} terms{also}")

    def estimate(self, ctx: Context, level: int | None, options: LPOptions) -> Size:
        return _estimate_pops(ctx, lambda pop: _lp_estimate(pop, int(level), options, ctx.max_memory_bytes))

    def run(self, ctx: Context, level: int | None, options: LPOptions) -> BoundResult:
        def one(pop, time_left):
            return lp_bound(pop, int(level), options, time_limit=time_left, max_bytes=ctx.max_memory_bytes)

        return run_pops(self.name, level, ctx, one)


@register
class SDP(Method):
    """Lasserre moment hierarchy (order d; d = 1 is Shor), certified from the dual."""

    name = "sdp"
    summary = "Lasserre/Shor SDP of order d (d = 1: Shor), certified"
    Options = SDPOptions
    options_group = "sdp"
    hierarchy = "order"

    def _sa_level(self, pop, level: int) -> int | None:
        return None

    def _order(self, level: int, options: SDPOptions) -> int:
        return int(level)

    def stops_at_time_limit(self, ctx: Context, level: int | None, options: SDPOptions) -> bool:
        """The mixing and Lagrangian routes check the clock; the table sends moment POPs to Clarabel
        or SCS, which do too; a step that sends a moment POP to CVXOPT runs in a child process."""
        from ..solvers.conic import stops_itself

        if options.solver in ("auto", "mixing", "conic") or stops_itself(options.solver):
            return True
        return all(
            sdp_route(pop, self._order(level, options), options, self._sa_level(pop, int(level))) != "moment"
            for pop in ctx.problem().pops if pop.n_vars
        )

    def estimate(self, ctx: Context, level: int | None, options: SDPOptions) -> Size:
        return _estimate_pops(ctx, lambda pop: _sdp_estimate(
            pop, self._order(level, options), self._sa_level(pop, int(level)), options, ctx.max_memory_bytes))

    def run(self, ctx: Context, level: int | None, options: SDPOptions) -> BoundResult:
        def one(pop, time_left):
            k = self._sa_level(pop, int(level))
            r = sdp_bound(pop, self._order(level, options), options, sa_level=k, time_limit=time_left,
                          max_bytes=ctx.max_memory_bytes, seed=ctx.seed)
            raised = k is not None and k > level
            return replace(r, note=f"Sherali–Adams level raised to {k} (≥ 2 and ≥ degree)") if raised else r

        return run_pops(self.name, level, ctx, one)


@register
class SDPPlusLP(SDP):
    """Moment matrices of order ``psd_order`` plus the Sherali–Adams rows of level k."""

    name = "sdp+lp"
    summary = "Shor SDP strengthened with Sherali–Adams rows of level k, certified"
    hierarchy = "level"

    def _sa_level(self, pop, level: int) -> int | None:
        return max(int(level), 2, pop.polynomial.reduce_binary().degree)

    def suggest(self, ctx: Context) -> Suggestion | str:
        if ctx.net.depth != 1 or ctx.norm == "2":
            return "Shor + Sherali–Adams is the tightest fast route on one-hidden-layer ℓ∞/ℓ1 problems only"
        try:
            ctx.problem()
        except LipoptError as exc:
            return str(exc)
        why = "Shor + Sherali–Adams rows: tighter than LP-3 on one hidden layer, in seconds"
        return Suggestion((2,), 1.0, why)

    def _order(self, level: int, options: SDPOptions) -> int:
        return int(options.psd_order)
