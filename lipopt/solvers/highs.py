"""The HiGHS backend (highspy) for :class:`~lipopt.solvers.base.LinearProgram`.

``max c0 + cᵀx`` s.t. ``row_lo ≤ A x ≤ row_hi``, ``col_lo ≤ x ≤ col_hi`` is passed in one call
(row-wise CSR arrays, no Python loop per row) as the minimization of ``−c0 − cᵀx`` (the
*primal* formulation); HiGHS then returns row duals ``λ ≥ 0`` for active lower row bounds.

The **dual formulation** (``formulation="dual"``, the default for interior point) applies to
programs ``max c0 + cᵀx`` s.t. ``A x ≥ lo``, ``0 ≤ x ≤ u`` (the relaxations' form) and passes
their LP dual instead:

    minimize  c0 − loᵀλ + uᵀw   s.t.   w − Aᵀλ ≥ c,   λ ≥ 0,  w ≥ 0,

whose column-wise matrix ``[−A | I]`` is the CSR arrays of ``A`` read column-wise. Its primal
values ``λ`` are the same multipliers (``duals[0]``), its row duals the primal ``x``. The
relaxations have far more rows than columns, and HiGHS's interior point (IPX) is faster on this
side (dense 40-40-1 level 3: 6.0 s vs 8.9 s; the dense 80-80-1 level-3 relaxation — 1.38 M rows,
9 720 columns after projection — solves in ≈ 50 s; the unprojected primal took 14 min).

Settings: ``algorithm`` (``simplex``: dual simplex; ``ipm``: IPX without crossover — the
multipliers are approximate, which the certificates tolerate; ``ipm-crossover``; ``pdlp``),
``formulation`` (``auto``/``primal``/``dual``), ``warm_start`` (a basis from an earlier
outcome's ``state``), ``keep_state`` (return the final basis as ``state``); any other key is a
HiGHS option passed through.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import LipoptError
from ..results import Status
from .base import Limits, LinearProgram, Outcome, register_backend, status_of

ALGORITHMS = ("auto", "simplex", "ipm", "ipm-crossover", "pdlp")
METHODS = ALGORITHMS  # the old name, read by cli and sweep until they use the registry
FORMULATIONS = ("auto", "primal", "dual")
#: relative duality gap at which IPX stops (the certified value is within about this of the LP)
IPM_TOLERANCE = 1e-7

_BANNER_SHOWN = False
_THREADS: int | None = None


@contextlib.contextmanager
def _quiet_stdout():
    """Silence the banner HiGHS prints when the first instance is created: at the C level
    (file descriptor 1 itself, which Jupyter kernels capture into cell outputs; ``sys.stdout``
    there is a Python stream whose ``fileno`` is not 1) and at the Python level."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        try:
            sys.__stdout__.flush()
            saved = os.dup(1)
        except (AttributeError, OSError, ValueError):  # pragma: no cover - no fd 1
            yield
            return
        try:
            os.dup2(devnull.fileno(), 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _highspy():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise LipoptError("the LP solver needs highspy: pip install highspy") from exc
    return highspy


def _new_highs(verbose: bool, threads: int | None):
    """A HiGHS instance (banner silenced once). HiGHS keeps one global thread pool, sized by the
    first solve; changing ``threads`` later makes the solve fail unless the pool is reset."""
    global _BANNER_SHOWN, _THREADS
    hs = _highspy()
    with contextlib.nullcontext() if verbose or _BANNER_SHOWN else _quiet_stdout():
        h = hs.Highs()
    _BANNER_SHOWN = True
    h.setOptionValue("output_flag", bool(verbose))
    want = 0 if threads is None else int(threads)
    if want < 0:
        raise LipoptError(f"threads must be >= 0 (0 = automatic), got {threads}")
    if _THREADS is not None and want != _THREADS:
        h.resetGlobalScheduler(True)
    h.setOptionValue("threads", want)
    _THREADS = want
    return h


def highs_version() -> str:
    hs = _highspy()
    try:
        return f"{hs.HIGHS_VERSION_MAJOR}.{hs.HIGHS_VERSION_MINOR}.{hs.HIGHS_VERSION_PATCH}"
    except AttributeError:  # pragma: no cover
        return "unknown"


def _set_algorithm(h, algorithm: str, formulation: str) -> None:
    if algorithm == "simplex":
        h.setOptionValue("solver", "simplex")
    elif algorithm in ("ipm", "ipm-crossover"):
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "on" if algorithm == "ipm-crossover" else "off")
        h.setOptionValue("ipm_optimality_tolerance", IPM_TOLERANCE)
    elif algorithm == "pdlp":
        h.setOptionValue("solver", "pdlp")
    if formulation == "dual":
        h.setOptionValue("presolve", "off")  # never reduces these LPs; saves seconds


def _pass_model(h, lp: LinearProgram, formulation: str) -> None:
    hs = _highspy()
    A = lp.A.tocsr()
    m, n = A.shape
    i32, f64 = np.int32, np.float64
    if formulation == "primal":
        args = (n, m, int(A.nnz), int(hs.MatrixFormat.kRowwise), int(hs.ObjSense.kMinimize),
                -float(lp.c0), np.ascontiguousarray(-lp.c, dtype=f64),
                np.ascontiguousarray(lp.col_lo, dtype=f64), np.ascontiguousarray(lp.col_hi, dtype=f64),
                np.ascontiguousarray(lp.row_lo, dtype=f64), np.ascontiguousarray(lp.row_hi, dtype=f64),
                np.ascontiguousarray(A.indptr[:-1], dtype=i32), np.ascontiguousarray(A.indices, dtype=i32),
                np.ascontiguousarray(A.data, dtype=f64), np.zeros(n, dtype=i32))
    else:
        if np.any(lp.row_hi < np.inf) or np.any(lp.col_lo != 0) or not np.all(np.isfinite(lp.col_hi)):
            raise LipoptError("the dual formulation needs rows A x ≥ lo and columns 0 ≤ x ≤ u (u finite)")
        # columns λ_1..λ_m (column r = −row r of A) then w_1..w_n (identity); rows = moments
        start = np.concatenate([A.indptr[:-1], A.nnz + np.arange(n)]).astype(i32)
        index = np.concatenate([A.indices, np.arange(n)]).astype(i32)
        value = np.concatenate([-A.data, np.ones(n)])
        args = (m + n, n, int(A.nnz) + n, int(hs.MatrixFormat.kColwise), int(hs.ObjSense.kMinimize),
                float(lp.c0), np.concatenate([-np.asarray(lp.row_lo, f64), np.asarray(lp.col_hi, f64)]),
                np.zeros(m + n), np.full(m + n, np.inf),
                np.ascontiguousarray(lp.c, dtype=f64), np.full(n, np.inf),
                start, index, value, np.zeros(m + n, dtype=i32))
    if h.passModel(*args) != hs.HighsStatus.kOk:
        raise LipoptError("HiGHS rejected the LP model")


def _run(h) -> tuple[str, Any]:
    h.run()
    ms = h.getModelStatus()
    name = getattr(ms, "name", str(ms)).split(".")[-1]
    if "Error" in name or name == "kNotset":
        # e.g. another module started HiGHS's global thread pool with a different size
        h.resetGlobalScheduler(True)
        h.run()
        ms = h.getModelStatus()
        name = getattr(ms, "name", str(ms)).split(".")[-1]
    return name, ms


def solve_lp(
    lp: LinearProgram, limits: Limits | None = None, settings: Mapping[str, Any] | None = None
) -> Outcome:
    """Solve ``lp`` with HiGHS (settings in the module docstring; ``algorithm`` ``auto`` is not
    resolved here, see :data:`lipopt.solvers.base.RULES`)."""
    limits, opts = limits or Limits(), dict(settings or {})
    algorithm = opts.pop("algorithm", "simplex")
    formulation = opts.pop("formulation", "auto")
    warm, keep = opts.pop("warm_start", None), opts.pop("keep_state", False)
    if algorithm not in ALGORITHMS[1:]:
        raise LipoptError(f"unknown LP algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")
    if formulation not in FORMULATIONS:
        raise LipoptError(f"unknown LP formulation {formulation!r}; choose one of: {', '.join(FORMULATIONS)}")
    if formulation == "auto":
        formulation = "primal" if algorithm == "simplex" else "dual"
    name = f"highs-{highs_version()} ({algorithm}/{formulation})"
    m, n = lp.A.shape
    if m == 0 or n == 0:  # nothing couples the columns: each goes to its better bound
        value = lp.c0 + float(np.maximum(lp.c * lp.col_lo, lp.c * lp.col_hi).sum()) if n else lp.c0
        return Outcome(Status.OPTIMAL, value, (np.zeros(m),), (None,), solver=name)
    if lp.A.nnz >= 2**31 - 1:
        raise LipoptError(f"the LP has {lp.A.nnz:,} non-zeros, above HiGHS's 32-bit index limit")
    h = _new_highs(limits.verbose, limits.threads)
    if limits.time_limit is not None:
        if not limits.time_limit > 0:
            raise LipoptError(f"time limit must be positive, got {limits.time_limit}")
        h.setOptionValue("time_limit", float(limits.time_limit))
    if limits.max_iter is not None:
        h.setOptionValue("simplex_iteration_limit", int(limits.max_iter))
        h.setOptionValue("ipm_iteration_limit", int(limits.max_iter))
    _set_algorithm(h, algorithm, formulation)
    for key, value in opts.items():
        h.setOptionValue(key, value)
    _pass_model(h, lp, formulation)
    if warm is not None:
        h.setBasis(warm)
    t0 = time.perf_counter()
    raw, _ = _run(h)
    elapsed = time.perf_counter() - t0
    if formulation == "dual":  # primal/dual roles swap
        raw = {"kInfeasible": "kUnbounded", "kUnbounded": "kInfeasible"}.get(raw, raw)
    status = status_of(raw)
    info, sol = h.getInfo(), h.getSolution()
    counts = ("simplex_iteration_count", "ipm_iteration_count", "crossover_iteration_count",
              "pdlp_iteration_count")
    its = sum(max(0, int(getattr(info, a, 0) or 0)) for a in counts)
    objective = float(info.objective_function_value)
    if formulation == "primal":
        mult = np.asarray(sol.row_dual, dtype=float) if len(sol.row_dual) == m else None
        x = np.asarray(sol.col_value, dtype=float) if len(sol.col_value) == n else None
        value = -objective if status == Status.OPTIMAL else float("nan")
    else:
        cv, rd = np.asarray(sol.col_value, dtype=float), np.asarray(sol.row_dual, dtype=float)
        mult = cv[:m] if len(cv) == m + n else None
        x = rd if len(rd) == n else None
        value = objective if status == Status.OPTIMAL else float("nan")
    state = h.getBasis() if keep else None
    h.clear()
    return Outcome(status, value, (mult,), (x,), its, 0.0, elapsed, name, raw, state=state)


class HighsBackend:
    """Registered as ``highs``: linear programs."""

    name = "highs"
    family = "highs"
    kinds = ("lp",)

    def available(self) -> bool:
        try:
            _highspy()
        except LipoptError:  # pragma: no cover - declared dependency
            return False
        return True

    def solve(self, program: LinearProgram, limits: Limits, settings: Mapping[str, Any]) -> Outcome:
        return solve_lp(program, limits, settings)


register_backend(HighsBackend())
