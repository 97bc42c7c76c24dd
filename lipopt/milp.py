r"""Exact Lipschitz constants of small ReLU networks by mixed-integer programming (LipMIP-style).

The lifted formulation of :mod:`lipopt.hierarchy.lifted` with the derivative variables ``s`` of
the unstable neurons made **binary** is exact: the four activation rows are the big-M encoding of
``a = ReLU(z)``, ``s = 1[z ≥ 0]`` with the root's pre-activation bounds, and the McCormick rows of
``h = s·g`` are exact for binary ``s``. The dual norm of ``g_0`` gets binaries too:

* ℓ∞ input: ``max Σ p_i`` with ``p_i ≤ g_i + 2M_i(1 − σ_i)``, ``p_i ≤ −g_i + 2M_iσ_i`` (``σ_i``
  binary, ``M_i = max|g_i|``), i.e. ``p_i = |g_i|`` at the optimum;
* ℓ1 input: ``max v`` with ``v ≤ ±g_i + M(1 − δ_{i,±})``, ``Σ δ = 1`` (``M = 2 max_i M_i``);
* the ℓ1→ℓ1 norm of the Jacobian: ``c ∈ [−1, 1]^m`` and ``v ≤ g_i + M(1 − δ_i)``.

ℓ2 objectives are quadratic and are not supported. Global constants use the homogenized box of
:mod:`lipopt.bab` with one binary per face of Q (``Σ φ = 1``; ``φ_τ = 1 ⇒ τ = 1``,
``φ_{i±} = 1 ⇒ x'_i = ±1``).

**What is certified.** HiGHS's MIP dual bound is not recomputed in floating point, so the
``upper`` value is reported as *not certified*; ``lower`` is the value of the quantity at the
incumbent's input (or a nearby point), verified by a forward pass with rigorous error bounds —
a true lower bound. Use it as an independent cross-check (tests) on small networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .bab import BabSettings, BranchAndBound
from .errors import LipoptError
from .hierarchy.lifted import LiftedTemplate, NodeData
from .network import Network
from .quantity import Quantity
from .registry import Budget
from .solvers._highs_box import HighsBox
from .solvers.box_lp import BoxLP


@dataclass
class MilpOutcome:
    """``upper``: the MIP dual bound (not float-certified); ``lower``: verified real point."""

    upper: float
    lower: float
    status: str
    gap: float | None
    binaries: int
    point: np.ndarray | None = field(default=None, repr=False)


def _extend(lp: BoxLP, l: np.ndarray, u: np.ndarray, rows: sp.csr_matrix, rl, ru, c_new) -> BoxLP:
    """``lp`` with new columns (bounds ``l, u``, objective ``c_new``) and new rows over all columns."""
    A = sp.vstack([sp.hstack([lp.A, sp.csr_matrix((lp.rows, len(l)))]), rows]).tocsr()
    return BoxLP(np.r_[lp.c, c_new], A, np.r_[lp.rl, rl], np.r_[lp.ru, ru], np.r_[lp.l, l],
                 np.r_[lp.u, u], lp.c0)


def _rows(n_cols: int, entries: list[tuple[int, int, float]], n_rows: int) -> sp.csr_matrix:
    if not entries:
        return sp.csr_matrix((n_rows, n_cols))
    r, c, v = zip(*entries, strict=True)
    return sp.csr_matrix((v, (r, c)), shape=(n_rows, n_cols))


class LipMilp:
    """Build and solve the MILP of each subproblem of :class:`~lipopt.bab.BranchAndBound`."""

    def __init__(self, net: Network, quantity: Quantity, domain, budget: Budget | None = None) -> None:
        if quantity.norm == "2":
            raise LipoptError("the MILP bounds ℓ∞ and ℓ1 constants only (ℓ2 objectives are quadratic)")
        self.bb = BranchAndBound(net, quantity, domain, BabSettings(node_limit=0), budget=budget)
        chain = self.bb.chain
        if any(a.name not in ("relu", "identity") for a in chain.acts):
            raise LipoptError("the MILP supports ReLU networks only")
        self.budget = self.bb.budget

    def solve(self) -> MilpOutcome:
        bb = self.bb
        best_upper, best_lower, point, status, gap, n_bin = -math.inf, 0.0, None, "optimal", 0.0, 0
        for k in range(len(bb.subs)):
            sub, data = bb.root_data(k)
            lp, integrality = self._model(sub.objective, data)
            n_bin = max(n_bin, int(integrality.sum()))
            out = HighsBox().solve(lp, integrality=integrality, time_limit=self._time())
            if out.mip_dual_bound is None:
                return MilpOutcome(math.inf, best_lower, out.status, None, n_bin, point)
            best_upper = max(best_upper, out.mip_dual_bound)
            status = status if out.status == "optimal" else out.status
            gap = max(gap, out.mip_gap if out.mip_gap is not None and math.isfinite(out.mip_gap) else 0.0)
            if out.x is not None:
                self._verify_incumbent(k, out.x)
        if bb.lower > best_lower:
            best_lower, point = bb.lower, bb.lower_point
        return MilpOutcome(best_upper, best_lower, status, gap, n_bin, point)

    def _verify_incumbent(self, k: int, x: np.ndarray) -> None:
        """Lower bound from the incumbent: its input (perturbed) and its pattern's region (the
        pattern as a leaf of the branch and bound: exact value, Chebyshev point, verified)."""
        bb, tmpl = self.bb, self._tmpl
        bb._candidate(tmpl, x[: tmpl.cols])
        bb._flush_points()
        s = x[tmpl.column("s")]
        root = bb._roots()[k]
        root.faces_pending = False
        split = np.where(bb.kinked, np.where(s > 0.5, 1, -1), 0).astype(np.int8)
        if bb.domain is None:  # the incumbent's face
            xs, tau = x[tmpl.column("x")], x[tmpl.column("tau")[0]]
            if tau > 1 - 1e-9:
                root.lo[-1] = 1.0
            else:
                i = int(np.argmax(np.abs(xs)))
                root.lo[i] = root.hi[i] = 1.0 if xs[i] > 0 else -1.0
        root.split = split
        root.upper = math.inf
        bb._evaluate([root])

    def _time(self) -> float | None:
        r = self.budget.remaining()
        return None if not math.isfinite(r) else max(r, 1e-3)

    def _model(self, objective: str, data: NodeData) -> tuple[BoxLP, np.ndarray]:
        """The sub's MILP: the lifted LP (linear objective), binaries on unstable slopes, the
        objective's selection binaries and, globally, the face binaries."""
        bb = self.bb
        tmpl = LiftedTemplate(bb.chain, "linear", reach=True, copies=1)
        self._tmpl = tmpl
        lp = tmpl.lp(data, objective=np.zeros(tmpl.cols))
        integ = np.zeros(lp.cols, dtype=np.int32)
        scols = tmpl.column("s")
        integ[scols[(data.sl < data.su) & bb.kinked]] = 1
        if bb.domain is None:
            lp, integ = self._faces(lp, integ, tmpl)
        return self._objective(objective, lp, integ, tmpl, data)

    def _faces(self, lp: BoxLP, integ: np.ndarray, tmpl: LiftedTemplate) -> tuple[BoxLP, np.ndarray]:
        n0 = self.bb.n0
        x, tau = tmpl.column("x"), tmpl.column("tau")[0]
        k = 2 * n0 + 1
        N = lp.cols + k  # φ_τ, then φ_{i+}, φ_{i−}
        ent, rl, ru = [], [], []
        ent += [(0, lp.cols + j, 1.0) for j in range(k)]
        rl.append(1.0)
        ru.append(1.0)
        ent += [(1, tau, 1.0), (1, lp.cols, -1.0)]
        rl.append(0.0)
        ru.append(np.inf)
        for i in range(n0):
            r = 2 + 2 * i
            ent += [(r, x[i], 1.0), (r, lp.cols + 1 + 2 * i, -2.0)]
            ent += [(r + 1, x[i], 1.0), (r + 1, lp.cols + 2 + 2 * i, 2.0)]
            rl += [-1.0, -np.inf]
            ru += [np.inf, 1.0]
        rows = _rows(N, ent, len(rl))
        new = _extend(lp, np.zeros(k), np.ones(k), rows, np.array(rl), np.array(ru), np.zeros(k))
        return new, np.r_[integ, np.ones(k, dtype=np.int32)]

    def _objective(self, objective: str, lp: BoxLP, integ, tmpl, data: NodeData):
        g0 = tmpl.column("g0")
        gl, gu = data.g0l[0], data.g0u[0]
        M = np.maximum(np.abs(gl), np.abs(gu))
        n0 = len(g0)
        base = lp.cols
        if objective == "sum-abs":  # columns p_i, σ_i
            ent, rl, ru = [], [], []
            for i in range(n0):
                p, sg = base + i, base + n0 + i
                ent += [(2 * i, p, 1.0), (2 * i, g0[i], -1.0), (2 * i, sg, 2 * M[i])]
                ent += [(2 * i + 1, p, 1.0), (2 * i + 1, g0[i], 1.0), (2 * i + 1, sg, -2 * M[i])]
                rl += [-np.inf, -np.inf]
                ru += [2 * M[i], 0.0]
            rows = _rows(base + 2 * n0, ent, 2 * n0)
            c_new = np.r_[np.ones(n0), np.zeros(n0)]
            new = _extend(lp.with_objective(np.zeros(lp.cols)), np.zeros(2 * n0),
                          np.r_[M, np.ones(n0)], rows, np.array(rl), np.array(ru), c_new)
            return new, np.r_[integ, np.zeros(n0, np.int32), np.ones(n0, np.int32)]
        signs = (1.0, -1.0) if objective == "max-abs" else (1.0,)
        big = 2 * float(M.max()) if M.size else 0.0
        k = n0 * len(signs)
        ent, rl, ru = [(0, base + 1 + j, 1.0) for j in range(k)], [1.0], [1.0]
        for i in range(n0):
            for t, sgn in enumerate(signs):
                r = 1 + i * len(signs) + t
                ent += [(r, base, 1.0), (r, g0[i], -sgn), (r, base + 1 + i * len(signs) + t, big)]
                rl.append(-np.inf)
                ru.append(big)
        rows = _rows(base + 1 + k, ent, len(rl))
        c_new = np.r_[1.0, np.zeros(k)]
        new = _extend(lp.with_objective(np.zeros(lp.cols)), np.r_[-big, np.zeros(k)],
                      np.r_[big, np.ones(k)], rows, np.array(rl), np.array(ru), c_new)
        return new, np.r_[integ, 0, np.ones(k, np.int32)]
