r"""General conic back ends (through cvxpy) for SDPs, and certified Shor bounds with them.

The Shor SDP :math:`\max \langle C, X\rangle` s.t. :math:`\operatorname{diag}X = \mathbf 1`,
:math:`X\succeq 0` can be handed to any interior-point or first-order SDP code; the result is made
rigorous exactly as for the mixing method, by :func:`lipopt.solvers.shor.certify_shor_dual` applied
to the solver's multipliers ``y`` of ``diag X = 1`` (valid for any ``y``, so an inaccurate or
time-limited solve still gives a valid, looser bound).

Solver choice (:func:`choose_sdp_solver`) — measured on this project's shared 2-core machine, one
BLAS thread, cvxpy 1.9, Clarabel 0.11, SCS 3.3, CVXOPT 1.3 (``benchmarks/shor_solvers.py``,
results in ``benchmarks/results/shor_solvers.md``):

* One dense Shor block from the ℓ∞ problem of an ``n-n-1`` network. 161×161: Clarabel 349 s (its
  PSD-cone scaling is a dense matrix of order ``b(b+1)/2``; ≈156 GB for a 401 block — out of
  reach), CVXOPT 1.9 s in the LMI (dual) form (> 600 s in the primal form), SCS 18 s (relative
  accuracy ~1e-5), mixing method 0.06 s. 401×401: CVXOPT 81 s, SCS 414 s (~1e-4), mixing 0.2 s.
* Overlapping blocks (chordal Shor relaxation of a banded 150×150 C, one PSD block per clique):
  cliques of 6 (145 blocks): Clarabel 0.14 s solve (1.2 s with cvxpy), SCS 2.0 s; cliques of 16
  (135 blocks): Clarabel 14 s and only "optimal_inaccurate", SCS 7 s; cliques of 31 (120 blocks):
  Clarabel > 300 s, SCS 13 s. CVXOPT failed on all three (singular KKT system through cvxpy).

Hence: MOSEK whenever it is importable and licensed; otherwise Clarabel for small blocks
(≤ :data:`CLARABEL_MAX_BLOCK`), CVXOPT for a few large blocks, SCS for many medium or large blocks
and as the fallback (first-order, low accuracy, but the certificates keep every bound valid).
"""

from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from .shor import Matrix, ShorResult, certify_shor_dual

__all__ = [
    "SDP_SOLVERS",
    "available_sdp_solvers",
    "choose_sdp_solver",
    "solve_shor_cvxpy",
    "solver_time_limit_options",
]

#: Conic back ends known to lipopt, in order of preference when all else is equal.
SDP_SOLVERS: tuple[str, ...] = ("MOSEK", "CLARABEL", "SCS", "CVXOPT")

#: Largest PSD block for which Clarabel is preferred (measured, see the module docstring).
CLARABEL_MAX_BLOCK = 12
#: At most this many large blocks count as "few" (CVXOPT's dense Schur complement is then fine).
CVXOPT_MAX_BLOCKS = 4


@functools.lru_cache(maxsize=1)
def _available() -> tuple[str, ...]:
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a hard dependency
        return ()
    installed = set(cp.installed_solvers())
    out = []
    for name in SDP_SOLVERS:
        if name not in installed:
            continue
        if name == "MOSEK" and not _mosek_works():
            continue
        out.append(name)
    return tuple(out)


def _mosek_works() -> bool:
    """MOSEK counts only if a tiny SDP actually solves (i.e. a license is found)."""
    try:
        import cvxpy as cp

        X = cp.Variable((2, 2), PSD=True)
        prob = cp.Problem(cp.Maximize(X[0, 1]), [cp.diag(X) == 1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob.solve(solver="MOSEK")
        return prob.status == "optimal" and abs(prob.value - 1.0) < 1e-5
    except Exception:
        return False


def available_sdp_solvers() -> list[str]:
    """SDP-capable solvers usable here, among ``"MOSEK"`` (only if licensed), ``"CLARABEL"``,
    ``"SCS"``, ``"CVXOPT"`` (cached after the first call)."""
    return list(_available())


def choose_sdp_solver(n_blocks: int, largest_block: int) -> str:
    """Pick an SDP back end for ``n_blocks`` PSD blocks, the largest of order ``largest_block``.

    MOSEK if available; otherwise Clarabel when every block has order ≤
    :data:`CLARABEL_MAX_BLOCK`, CVXOPT for at most :data:`CVXOPT_MAX_BLOCKS` larger blocks, SCS for
    many larger blocks; each choice falls back to the others when not installed. The module
    docstring lists the measurements behind the thresholds.
    Raises :class:`~lipopt.errors.LipoptError` when no SDP solver is installed.
    """
    avail = _available()
    if not avail:
        raise LipoptError("no SDP solver available: install clarabel, scs or cvxopt")
    if "MOSEK" in avail:
        return "MOSEK"
    if largest_block <= CLARABEL_MAX_BLOCK:
        order = ("CLARABEL", "SCS", "CVXOPT")
    elif n_blocks <= CVXOPT_MAX_BLOCKS:
        # Clarabel last: its dense cone scaling has order (b(b+1)/2)^2 memory
        order = ("CVXOPT", "SCS", "CLARABEL")
    else:
        order = ("SCS", "CLARABEL", "CVXOPT")
    for name in order:
        if name in avail:
            return name
    return avail[0]


def solver_time_limit_options(solver: str, time_limit: float | None) -> dict:
    """cvxpy ``solve`` keyword arguments imposing a wall-clock limit (CVXOPT has none)."""
    if time_limit is None:
        return {}
    t = float(time_limit)
    if solver == "MOSEK":
        return {"mosek_params": {"MSK_DPAR_OPTIMIZER_MAX_TIME": t}}
    if solver == "CLARABEL":
        return {"time_limit": t}
    if solver == "SCS":
        return {"time_limit_secs": t}
    return {}


def cvxpy_status(status: str, wall: float, time_limit: float | None) -> str:
    """lipopt's status for a cvxpy status: ``optimal``, ``inaccurate``, ``time_limit`` (a user
    limit hit after ≥ 80% of ``time_limit``), ``iteration_limit`` or ``error: …``."""
    import cvxpy as cp

    if status == cp.OPTIMAL:
        return "optimal"
    if status == cp.OPTIMAL_INACCURATE:
        return "inaccurate"
    if status == cp.USER_LIMIT:
        return "time_limit" if time_limit is not None and wall >= 0.8 * time_limit else "iteration_limit"
    return f"error: solver status {status}"


def _default_formulation(solver: str) -> str:
    # cvxpy hands CVXOPT the LMI form "Diag(y) − C ⪰ 0" with only n variables (its native 'sdp'
    # shape, O(n^4) per iteration); the primal form there carries n² variables (> 600 s at n=161).
    return "dual" if solver == "CVXOPT" else "primal"


def solve_shor_cvxpy(
    C: Matrix,
    solver: str | None = None,
    time_limit: float | None = None,
    *,
    formulation: str | None = None,
    verbose: bool = False,
    **solver_options,
) -> ShorResult:
    r"""Solve the Shor SDP with a general conic solver via cvxpy and certify the result.

    Primal form (default except for CVXOPT): :math:`\max\langle C, X\rangle` s.t.
    ``diag(X) == 1``, ``X`` PSD; the certificate uses the multipliers ``y`` of ``diag(X) == 1``.
    Dual (LMI) form: :math:`\min \sum_i y_i` s.t. :math:`\operatorname{Diag}(y) - C \succeq 0`;
    the certificate uses the optimal ``y``. Either way ``certified_value`` comes from
    :func:`~lipopt.solvers.shor.certify_shor_dual`, so it is a valid upper bound however inaccurate
    the solve was. If the solver returns no multipliers at all, the diagonally dominant choice
    :math:`y_i = \sum_j |C_{ij}|` still gives a valid (poor) certificate.

    ``solver`` defaults to :func:`choose_sdp_solver` ``(1, n)``; ``time_limit`` is passed to the
    solvers that support one (MOSEK, Clarabel, SCS; not CVXOPT). Extra keyword arguments go to
    ``cvxpy.Problem.solve``.
    """
    import cvxpy as cp

    t0 = time.perf_counter()
    n = C.shape[0]
    if len(C.shape) != 2 or C.shape[1] != n:
        raise LipoptError(f"C must be a square matrix, got shape {C.shape}")
    Cd = C.toarray() if sp.issparse(C) else np.asarray(C, dtype=np.float64)
    Cd = np.asarray(Cd, dtype=np.float64)
    if not np.array_equal(Cd, Cd.T):
        Cd = 0.5 * (Cd + Cd.T)
    name = (solver or choose_sdp_solver(1, n)).upper()
    if name not in SDP_SOLVERS:
        raise LipoptError(f"unknown SDP solver {solver!r}; choose from {', '.join(SDP_SOLVERS)}")
    if name not in _available():
        raise LipoptError(
            f"SDP solver {name} is not available here; available: {available_sdp_solvers()}"
        )
    form = formulation or _default_formulation(name)
    if form not in ("primal", "dual"):
        raise LipoptError(f"formulation must be 'primal' or 'dual', got {formulation!r}")

    if form == "primal":
        X = cp.Variable((n, n), PSD=True)
        con = cp.diag(X) == 1
        prob = cp.Problem(cp.Maximize(cp.sum(cp.multiply(Cd, X))), [con])
    else:
        yv = cp.Variable(n)
        prob = cp.Problem(cp.Minimize(cp.sum(yv)), [cp.diag(yv) - Cd >> 0])
    opts = solver_time_limit_options(name, time_limit)
    opts.update(solver_options)
    err: str | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob.solve(solver=name, verbose=verbose, **opts)
    except cp.error.SolverError as exc:  # failed solves still get a (poor) certificate
        err = str(exc)
    elapsed = time.perf_counter() - t0

    y = con.dual_value if form == "primal" else yv.value
    if y is None or not np.all(np.isfinite(np.asarray(y, dtype=float))):
        y = np.abs(Cd).sum(axis=1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    cert, lam = certify_shor_dual(C, y)  # the original C: symmetrising rounds

    value = prob.value if err is None else None
    primal = float(value) if value is not None and np.isfinite(value) else math.nan
    cvx_status = prob.status if err is None else "error"
    if cvx_status == "optimal":
        status = "optimal"
    elif time_limit is not None and elapsed >= 0.95 * time_limit:
        status = "time_limit"
    elif cvx_status in ("optimal_inaccurate", "user_limit"):
        status = "inaccurate" if cvx_status == "optimal_inaccurate" else "iteration_limit"
    else:
        status = "error"
    iters = 0
    if err is None and prob.solver_stats is not None and prob.solver_stats.num_iters is not None:
        iters = int(prob.solver_stats.num_iters)
    return ShorResult(
        primal_value=primal,
        certified_value=cert,
        dual_y=y,
        lambda_min=lam,
        iterations=iters,
        time_s=time.perf_counter() - t0,
        status=status,
        certified=math.isfinite(cert),
        solver=f"{name}/{form}",
        factor=None,
    )
