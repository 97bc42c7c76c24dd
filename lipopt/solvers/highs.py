"""Solve an :class:`~lipopt.hierarchy.lp.LPRelaxation` with HiGHS (highspy).

The relaxation ``max c0 + cᵀy  s.t.  A y + a0 ≥ 0,  0 ≤ y ≤ 1`` is passed to HiGHS as

    minimize  −c0 − cᵀy   s.t.   −a0 ≤ A y ≤ +∞,   0 ≤ y ≤ 1

in one call (row-wise CSR arrays, no Python loop per row). In this minimization form HiGHS
returns row duals ``λ ≥ 0`` for the active ``≥`` rows and column duals ``z = −c − Aᵀλ``: the
multipliers ``c_r = λ_r`` of the positivity certificate (see :mod:`lipopt.solvers.certify`).

The **dual formulation** (``formulation="dual"``, the default for interior point) passes the LP
dual instead:

    minimize  c0 + a0ᵀλ + 1ᵀw   s.t.   w − Aᵀλ ≥ c,   λ ≥ 0,  w ≥ 0

whose column-wise matrix ``[−A | I]`` is the CSR arrays of ``A`` read column-wise (column ``r``
of the dual = row ``r`` of ``A``); its primal values ``λ`` are the certificate multipliers and its
objective is exactly the certified value of :mod:`lipopt.solvers.certify` (``w = max(res, 0)``).
The relaxations have far more rows than columns, and HiGHS's interior point (IPX) is faster on
this side (dense 40-40-1 level 3: 6.0 s vs 8.9 s; the dense 80-80-1 level-3 relaxation — 1.38 M
rows, 9 720 columns after projection — solves in ≈ 50 s; the unprojected primal took 14 min).

Methods: ``simplex`` (dual simplex on the primal), ``ipm`` (IPX without crossover on the dual:
the multipliers are approximate, which the certificate tolerates), ``ipm-crossover``, ``pdlp``,
or ``auto`` (see :func:`choose_method`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import LipoptError
from ..hierarchy.lp import LPRelaxation

METHODS = ("auto", "simplex", "ipm", "ipm-crossover", "pdlp")
FORMULATIONS = ("auto", "primal", "dual")
#: relative duality gap at which IPX stops (the certified value is within about this of the LP)
IPM_TOLERANCE = 1e-7

_BANNER_SHOWN = False


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level stdout (HiGHS prints a banner when the first instance is created)."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # pragma: no cover - unusual stdout
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _highspy():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise LipoptError("the LP solver needs highspy: pip install highspy") from exc
    return highspy


def _new_highs(verbose: bool):
    global _BANNER_SHOWN
    hs = _highspy()
    if verbose or _BANNER_SHOWN:
        h = hs.Highs()
    else:
        with _quiet_stdout():
            h = hs.Highs()
    _BANNER_SHOWN = True
    h.setOptionValue("output_flag", bool(verbose))
    return h


_THREADS: int | None = None


def _set_threads(h, threads: int | None) -> None:
    """HiGHS keeps one global thread pool, sized by the first solve; changing ``threads`` later
    makes the solve fail unless the pool is reset first."""
    global _THREADS
    want = 0 if threads is None else int(threads)
    if want < 0:
        raise LipoptError(f"threads must be >= 0 (0 = automatic), got {threads}")
    if _THREADS is not None and want != _THREADS:
        h.resetGlobalScheduler(True)
    h.setOptionValue("threads", want)
    _THREADS = want


def highs_version() -> str:
    hs = _highspy()
    try:
        return f"{hs.HIGHS_VERSION_MAJOR}.{hs.HIGHS_VERSION_MINOR}.{hs.HIGHS_VERSION_PATCH}"
    except AttributeError:  # pragma: no cover
        return "unknown"


@dataclass
class LPSolution:
    """Outcome of one LP solve. ``row_dual`` are the certificate multipliers (may be inexact,
    or None when the solver produced none); ``solver_value`` is nan unless ``optimal``."""

    status: str
    solver_value: float
    row_dual: np.ndarray | None = field(repr=False)
    time_s: float
    iterations: int
    solver: str
    method: str
    model_status: str = ""
    col_value: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "solver_value": self.solver_value,
            "time_s": self.time_s,
            "iterations": self.iterations,
            "solver": self.solver,
            "method": self.method,
            "model_status": self.model_status,
        }


_STATUS = {
    "kOptimal": "optimal",
    "kTimeLimit": "time_limit",
    "kIterationLimit": "iteration_limit",
    "kInfeasible": "infeasible",
    "kUnbounded": "unbounded",
    "kUnboundedOrInfeasible": "unbounded_or_infeasible",
    "kInterrupt": "interrupted",
    "kObjectiveBound": "objective_bound",
    "kObjectiveTarget": "objective_target",
    "kSolutionLimit": "solution_limit",
    "kMemoryLimit": "memory_limit",
    "kUnknown": "unknown",
}


def _status_name(model_status) -> str:
    name = getattr(model_status, "name", str(model_status)).split(".")[-1]
    return _STATUS.get(name, "error")


def choose_method(relax: LPRelaxation) -> str:
    """``auto``: dual simplex for small LPs (≤ 20 000 non-zeros), else interior point.

    Measured (2 cores, projected Sherali–Adams): dense 80-80-1 level 2 (52 k non-zeros) simplex
    0.66 s, IPM 0.15 s; dense 20-20-1 level 3 (22 k rows) 1.97 s vs 0.23 s; banded 40-40-1
    (s = 20) level 3 12.4 s vs 0.58 s. Tiny LPs are a tie and simplex returns exact vertex duals.
    """
    return "simplex" if relax.nnz <= 20_000 else "ipm"


def choose_formulation(method: str) -> str:
    """Interior point on the dual (IPX is faster on the short-and-wide side), simplex on the
    primal (HiGHS's dual simplex is built for many rows)."""
    return "dual" if method in ("ipm", "ipm-crossover", "pdlp") else "primal"


def solve_lp(
    relax: LPRelaxation,
    *,
    time_limit: float | None = None,
    threads: int | None = None,
    method: str = "auto",
    verbose: bool = False,
    formulation: str = "auto",
    options: dict | None = None,
) -> LPSolution:
    """Solve ``relax`` with HiGHS; any extra HiGHS ``options`` are passed through.

    ``row_dual`` of the result holds the certificate multipliers (one per row of ``relax``)
    whichever ``formulation`` was solved.
    """
    if method not in METHODS:
        raise LipoptError(f"unknown LP method {method!r}; choose one of: {', '.join(METHODS)}")
    if formulation not in FORMULATIONS:
        raise LipoptError(
            f"unknown LP formulation {formulation!r}; choose one of: {', '.join(FORMULATIONS)}"
        )
    version = f"highs-{highs_version()}"
    if method == "auto":
        method = choose_method(relax)
    if formulation == "auto":
        formulation = choose_formulation(method)
    m, n = relax.rows, relax.cols
    if m == 0 or n == 0:
        # nothing to optimize over: max c0 + cᵀy with 0 ≤ y ≤ 1 and no rows
        val = relax.c0 + float(np.maximum(relax.c, 0.0).sum())
        return LPSolution("optimal", val, np.zeros(m), 0.0, 0, version, method, "kOptimal")
    A = relax.A.tocsr()
    if A.nnz >= 2**31 - 1:
        raise LipoptError(f"the LP has {A.nnz:,} non-zeros, above HiGHS's 32-bit index limit")
    hs = _highspy()
    h = _new_highs(verbose)
    _set_threads(h, threads)
    if time_limit is not None:
        if not time_limit > 0:
            raise LipoptError(f"time limit must be positive, got {time_limit}")
        h.setOptionValue("time_limit", float(time_limit))
    if method == "simplex":
        h.setOptionValue("solver", "simplex")
    elif method in ("ipm", "ipm-crossover"):
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "on" if method == "ipm-crossover" else "off")
        h.setOptionValue("ipm_optimality_tolerance", IPM_TOLERANCE)
    elif method == "pdlp":
        h.setOptionValue("solver", "pdlp")
    if formulation == "dual":
        h.setOptionValue("presolve", "off")  # never reduces these LPs; saves seconds
    for key, value in (options or {}).items():
        h.setOptionValue(key, value)
    i32 = np.int32
    if formulation == "primal":
        status = h.passModel(
            n, m, int(A.nnz), int(hs.MatrixFormat.kRowwise), int(hs.ObjSense.kMinimize),
            -float(relax.c0),
            np.ascontiguousarray(-relax.c, dtype=np.float64),
            np.zeros(n), np.ones(n),
            np.ascontiguousarray(-relax.a0, dtype=np.float64), np.full(m, np.inf),
            np.ascontiguousarray(A.indptr[:-1], dtype=i32),
            np.ascontiguousarray(A.indices, dtype=i32),
            np.ascontiguousarray(A.data, dtype=np.float64),
            np.zeros(n, dtype=i32),
        )
    else:
        # columns λ_1..λ_m (column r = −row r of A) then w_1..w_n (identity); rows = moments
        start = np.concatenate([A.indptr[:-1], A.nnz + np.arange(n)]).astype(i32)
        index = np.concatenate([A.indices, np.arange(n)]).astype(i32)
        value = np.concatenate([-A.data, np.ones(n)])
        status = h.passModel(
            m + n, n, int(A.nnz) + n, int(hs.MatrixFormat.kColwise), int(hs.ObjSense.kMinimize),
            float(relax.c0),
            np.concatenate([np.asarray(relax.a0, dtype=np.float64), np.ones(n)]),
            np.zeros(m + n), np.full(m + n, np.inf),
            np.ascontiguousarray(relax.c, dtype=np.float64), np.full(n, np.inf),
            start, index, value, np.zeros(m + n, dtype=i32),
        )
    if status != hs.HighsStatus.kOk:
        raise LipoptError(f"HiGHS rejected the LP model ({status})")
    t0 = time.perf_counter()
    h.run()
    ms = h.getModelStatus()
    name = _status_name(ms)
    if name == "error":
        # e.g. another module started HiGHS's global thread pool with a different size
        h.resetGlobalScheduler(True)
        h.run()
        ms = h.getModelStatus()
        name = _status_name(ms)
    elapsed = time.perf_counter() - t0
    if formulation == "dual":  # primal/dual roles swap
        name = {"infeasible": "unbounded", "unbounded": "infeasible"}.get(name, name)
    info = h.getInfo()
    its = sum(max(0, int(getattr(info, a, 0) or 0)) for a in
              ("simplex_iteration_count", "ipm_iteration_count", "crossover_iteration_count",
               "pdlp_iteration_count"))
    sol = h.getSolution()
    if formulation == "primal":
        mult = np.asarray(sol.row_dual, dtype=float) if len(sol.row_dual) == m else None
        col_value = np.asarray(sol.col_value, dtype=float) if len(sol.col_value) == n else None
        value = -float(info.objective_function_value) if name == "optimal" else float("nan")
    else:
        cv = np.asarray(sol.col_value, dtype=float)
        mult = cv[:m] if len(cv) == m + n else None
        rd = np.asarray(sol.row_dual, dtype=float)
        col_value = rd if len(rd) == n else None
        value = float(info.objective_function_value) if name == "optimal" else float("nan")
    ms_name = getattr(ms, "name", str(ms))
    h.clear()
    return LPSolution(name, value, mult, elapsed, its, version, f"{method}/{formulation}",
                      ms_name, col_value)
