"""``exact-pop``: the exact maximum of every POP by vertex enumeration (tiny networks only) — the
value the relaxation hierarchies converge to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import LipoptError
from ..floats import EPS, safe_sum
from ..registry import Context, Method, Suggestion, register
from ..results import BoundResult, Certificate, Size, Status
from ..solvers.base import Outcome
from .pop import PartBound, _finish, _unpack, run_pops


@dataclass(frozen=True)
class ExactPOPOptions:
    """Options of ``exact-pop``."""

    max_vars: int = field(default=22, metadata={"help": "most binary variables enumerated (2^n vertices)",
                                                 "min": 0})


def exact_pop_bound(pop, max_vars: int = 22) -> PartBound:
    """``max p`` by vertex enumeration plus its evaluation error ``(deg + terms + 2)·eps·Σ|coef|``
    and the rounding slack."""
    from ..exact import exact_pop_max

    poly, slack = _unpack(pop)
    t0 = time.perf_counter()
    v = exact_pop_max(poly, max_vars=max_vars) if poly.n_vars else poly.constant_term
    err = (poly.degree + poly.num_terms + 2) * EPS * poly.abs_coef_sum()
    cert = Certificate(safe_sum([v, err]), True, "enumeration", v, err)
    out = Outcome(Status.OPTIMAL, v, solve_time=time.perf_counter() - t0, solver="enumeration")
    return _finish(cert, slack, out, t0, 0.0, 0.0, Size(variables=poly.n_vars))


@register
class ExactPOP(Method):
    """The exact maximum of every POP by enumerating its ``2^n`` vertices (tiny networks)."""

    name = "exact-pop"
    summary = "exact POP maximum by vertex enumeration (tiny networks; the relaxations' limit)"
    Options = ExactPOPOptions

    def suggest(self, ctx: Context) -> Suggestion | str:
        if ctx.unstable_neurons > 16:  # every unstable neuron is a binary variable
            return f"{ctx.unstable_neurons} binary variables or more: too many vertices to enumerate"
        try:
            problem = ctx.problem()
        except LipoptError as exc:
            return str(exc)
        n = max((p.n_vars for p in problem.pops), default=0)
        if n > 16 or len(problem.pops) * 2**n > 2**18:
            return f"{n} binary variables: too many vertices to enumerate"
        return Suggestion((None,), 0.0, f"exact maximum of the polynomial ({n} binary variables)")

    #: the enumeration does not look at the clock: the chain runs it in a child process
    interruptible = False

    def estimate(self, ctx: Context, level: int | None, options: ExactPOPOptions) -> Size:
        n = max((p.n_vars for p in ctx.problem().pops), default=0)
        terms = max((p.polynomial.num_terms for p in ctx.problem().pops), default=0)
        memory = 8 * (1 << min(n, 20)) + 64 * terms  # one chunk of vertex values, the masks
        return Size(variables=n, pops=len(ctx.problem().pops), memory_bytes=memory)

    def run(self, ctx: Context, level: int | None, options: ExactPOPOptions) -> BoundResult:
        n = max((p.n_vars for p in ctx.problem().pops), default=0)
        if n > options.max_vars:
            raise LipoptError(
                f"exact-pop enumerates 2^{n} vertices, above the limit of 2^{options.max_vars}; "
                "use it on tiny networks only, or use --method lp"
            )
        return run_pops(self.name, None, ctx, lambda pop, _: exact_pop_bound(pop, options.max_vars))
