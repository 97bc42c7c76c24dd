"""One binary POP → certified LP bound: graph → hierarchy → HiGHS → certificate.

Kept in :mod:`lipopt.solvers` so data flows one way (problem → graph → hierarchy → solvers).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import LipoptError
from ..graph import clique_structure
from ..hierarchy.lp import build_lp, estimate_lp_size
from ..problems import BinaryPOP
from .certify import certify_lp
from .highs import solve_lp


@dataclass
class LPBoundResult:
    """``value`` (certified bound + the POP's rounding slack) is an upper bound on ``max p``
    over ``{0,1}^n`` when ``certified``; ``solver_value`` is HiGHS's objective (not a bound)."""

    value: float
    solver_value: float | None
    certified: bool
    status: str
    build_time_s: float
    solve_time_s: float
    size: dict = field(default_factory=dict)
    solver: str = ""
    level: int = 0
    basis: str = "sherali-adams"
    certificate: dict = field(default_factory=dict)
    graph_time_s: float = 0.0
    certify_time_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def lp_bound(
    pop: BinaryPOP,
    level: int,
    *,
    clique_method: str = "min-degree",
    sparse: bool = True,
    basis: str = "sherali-adams",
    time_limit: float | None = None,
    max_bytes: float = 4e9,
    method: str = "auto",
    threads: int | None = None,
    verbose: bool = False,
    project: bool | None = None,
) -> LPBoundResult:
    """Certified level-``level`` LP bound on ``max pop.polynomial`` over ``{0,1}^n``.

    ``sparse=False`` (or ``clique_method="dense"``) uses one clique with all variables. A solve
    that hits ``time_limit`` still returns a valid certified (looser) value from its dual.
    ``method`` (``auto``/``simplex``/``ipm``/``ipm-crossover``/``pdlp``) and ``threads`` go to
    :func:`~lipopt.solvers.highs.solve_lp`; ``project`` to :func:`~lipopt.hierarchy.lp.build_lp`.
    """
    poly = pop.polynomial
    t0 = time.perf_counter()
    if poly.n_vars == 0 or poly.degree == 0:
        v = poly.constant_term
        return LPBoundResult(v + pop.rounding_slack, v, True, "optimal", 0.0, 0.0,
                             {"rows": 0, "cols": 0, "nnz": 0, "cliques": 0, "max_clique": 0},
                             "", int(level), basis)
    cs = clique_structure(poly, clique_method if sparse else "dense")
    t_graph = time.perf_counter() - t0
    relax = build_lp(poly, cs, level, max_bytes=max_bytes, basis=basis, project=project)
    t_build = time.perf_counter() - t0
    sol = solve_lp(relax, time_limit=time_limit, threads=threads, method=method,
                   verbose=verbose)
    t1 = time.perf_counter()
    cert = certify_lp(relax, sol.row_dual, sol.solver_value)
    t_cert = time.perf_counter() - t1
    value = cert.value + pop.rounding_slack if cert.certified else float("inf")
    est = estimate_lp_size(cs, relax.level, basis, project=relax.cliques.get("projected"),
                           poly=poly)
    size = {
        "rows": relax.rows, "cols": relax.cols, "nnz": relax.nnz, "bytes": relax.bytes,
        "est_peak_bytes": est["bytes"], "cliques": cs.n_cliques, "max_clique": cs.max_clique,
        "n_fill": cs.n_fill,
    }
    sv = sol.solver_value if np.isfinite(sol.solver_value) else None
    return LPBoundResult(
        float(value), sv, bool(cert.certified), sol.status, t_build, sol.time_s, size,
        f"{sol.solver} ({sol.method})", int(level), basis, cert.to_dict(), t_graph, t_cert,
    )


def lp_size(pop: BinaryPOP, level: int, *, clique_method: str = "min-degree",
            sparse: bool = True, basis: str = "sherali-adams") -> dict:
    """Size of the LP :func:`lp_bound` would build (rows, cols, nnz, bytes), without building."""
    if pop.polynomial.n_vars == 0:
        return {"rows": 0, "cols": 0, "nnz": 0, "bytes": 0}
    cs = clique_structure(pop.polynomial, clique_method if sparse else "dense")
    if level < pop.polynomial.degree:
        raise LipoptError(
            f"level k={level} is below the polynomial degree {pop.polynomial.degree}"
        )
    return {**estimate_lp_size(cs, level, basis, poly=pop.polynomial), "cliques": cs.n_cliques,
            "max_clique": cs.max_clique}
