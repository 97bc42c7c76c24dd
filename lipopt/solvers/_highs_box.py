"""Private HiGHS adapter for :class:`~lipopt.solvers.box_lp.BoxLP` (LPs and MIPs of the deep-net
methods): quiet, time-limited, warm-started.

One :class:`HighsBox` holds one ``highspy.Highs`` instance that is reused for a sequence of
related LPs (the nodes of a branch and bound): :meth:`HighsBox.solve` passes the model in one
call (CSR arrays) and, when given the basis of a parent node with the same shape, starts the
dual simplex from it. The multipliers returned are for the **maximization** form of the
:class:`BoxLP`, ready for :func:`~lipopt.solvers.box_lp.dual_bound`; the solver's own objective
is never used as a bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import LipoptError
from .box_lp import BoxLP
from .highs import _highspy, _new_highs, _run

_STATUS = {"kOptimal": "optimal", "kInfeasible": "infeasible", "kTimeLimit": "time_limit",
           "kIterationLimit": "iteration_limit", "kUnbounded": "unbounded",
           "kUnboundedOrInfeasible": "unbounded_or_infeasible", "kObjectiveBound": "objective_bound",
           "kSolutionLimit": "solution_limit", "kInterrupt": "interrupted"}


@dataclass
class BoxOutcome:
    """One solve. ``w``: row multipliers for the max form (possibly inexact, or None); ``x``:
    column values (None when the solver has none); ``ray``: a dual ray when the solver claims
    infeasibility (to be checked by :func:`~lipopt.solvers.box_lp.proves_infeasible`)."""

    status: str
    solver_value: float
    w: np.ndarray | None = field(repr=False)
    x: np.ndarray | None = field(repr=False)
    basis: object | None = field(default=None, repr=False)
    ray: np.ndarray | None = field(default=None, repr=False)
    time_s: float = 0.0
    iterations: int = 0
    mip_gap: float | None = None
    mip_dual_bound: float | None = None


#: rows + columns from which a cold LP solve uses the interior-point method
COLD_IPM_MIN_SIZE = 2000


class HighsBox:
    """A reusable HiGHS instance for a sequence of :class:`BoxLP` solves (see module doc)."""

    def __init__(self, threads: int = 1, presolve: bool = False, simplex_strategy: int = 1) -> None:
        self._hs = _highspy()
        self.h = _new_highs(False, threads)
        self.h.setOptionValue("presolve", "on" if presolve else "off")
        self.h.setOptionValue("solver", "simplex")
        self.h.setOptionValue("simplex_strategy", simplex_strategy)  # 1: dual simplex
        self._cols = 0
        self._mip = False
        self._cold_ipm = False

    def load(self, lp: BoxLP, *, basis: object | None = None, integrality: np.ndarray | None = None) -> None:
        """Pass ``lp`` to HiGHS in one call (CSR arrays); start from ``basis`` when given."""
        hs, A = self._hs, lp.A
        i32 = np.int32
        status = self.h.passModel(
            lp.cols, lp.rows, int(A.nnz), int(hs.MatrixFormat.kRowwise), int(hs.ObjSense.kMinimize),
            -float(lp.c0), np.ascontiguousarray(-lp.c, dtype=np.float64),
            np.ascontiguousarray(lp.l, dtype=np.float64), np.ascontiguousarray(lp.u, dtype=np.float64),
            np.ascontiguousarray(lp.rl, dtype=np.float64), np.ascontiguousarray(lp.ru, dtype=np.float64),
            np.ascontiguousarray(A.indptr[:-1], dtype=i32), np.ascontiguousarray(A.indices, dtype=i32),
            np.ascontiguousarray(A.data, dtype=np.float64),
            np.zeros(lp.cols, dtype=i32) if integrality is None else integrality.astype(i32),
        )
        if status == hs.HighsStatus.kError:  # a warning (e.g. tiny entries ignored) is harmless:
            raise LipoptError(f"HiGHS rejected the LP model ({status})")  # the certificate uses our data
        self._cols = lp.cols
        self._mip = integrality is not None and bool(np.any(integrality))
        # a stalled simplex still leaves dual-feasible multipliers: cap it rather than wait
        self.h.setOptionValue("simplex_iteration_limit", int(10 * (lp.rows + lp.cols) + 10_000))
        if basis is not None and not self._mip:
            self.h.setBasis(basis)
        # a cold start of a large LP: interior point + crossover (10× faster than the dual
        # simplex on the lifted LPs, measured); the basis it leaves warm-starts the next solves
        self._cold_ipm = basis is None and not self._mip and lp.rows + lp.cols >= COLD_IPM_MIN_SIZE

    def run(
        self,
        c: np.ndarray | None = None,
        *,
        time_limit: float | None = None,
        keep_basis: bool = False,
        mip_rel_gap: float = 1e-9,
    ) -> BoxOutcome:
        """Solve the loaded model (with objective ``c`` for the max form when given; the
        previous basis is the start)."""
        h = self.h
        if c is not None:
            cols = np.arange(self._cols, dtype=np.int32)
            h.changeColsCost(self._cols, cols, np.ascontiguousarray(-np.asarray(c, dtype=float)))
        h.setOptionValue("time_limit", float(time_limit) if time_limit and time_limit > 0 else math.inf)
        if self._mip:
            h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        if self._cold_ipm:
            h.setOptionValue("solver", "ipm")
        t0 = time.perf_counter()
        try:
            name = _STATUS.get(_run(h)[0], "error")
        finally:
            if self._cold_ipm:
                h.setOptionValue("solver", "simplex")
                self._cold_ipm = False
        elapsed = time.perf_counter() - t0
        info = h.getInfo()
        sol = h.getSolution()
        x = np.asarray(sol.col_value, dtype=float) if sol.value_valid else None
        value = -float(info.objective_function_value) if name == "optimal" else math.nan
        its = int(max(0, getattr(info, "simplex_iteration_count", 0) or 0))
        if self._mip:
            bound = -float(info.mip_dual_bound)
            return BoxOutcome(name, value, None, x, None, None, elapsed, its,
                              float(info.mip_gap), bound if math.isfinite(bound) else None)
        w = -np.asarray(sol.row_dual, dtype=float) if sol.dual_valid else None
        ray = None
        if name == "infeasible":
            _, has_ray, r = h.getDualRay()
            ray = np.asarray(r, dtype=float) if has_ray else None
        basis = h.getBasis() if keep_basis and name == "optimal" else None
        return BoxOutcome(name, value, w, x, basis, ray, elapsed, its)

    def solve(
        self,
        lp: BoxLP,
        *,
        basis: object | None = None,
        time_limit: float | None = None,
        integrality: np.ndarray | None = None,
        mip_rel_gap: float = 1e-9,
        keep_basis: bool = True,
    ) -> BoxOutcome:
        """Load and solve ``lp`` (a MIP when ``integrality`` marks integer columns with 1)."""
        self.load(lp, basis=basis, integrality=integrality)
        return self.run(time_limit=time_limit, keep_basis=keep_basis, mip_rel_gap=mip_rel_gap)
