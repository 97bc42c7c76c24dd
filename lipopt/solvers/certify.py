"""Rigorous upper bounds from (possibly inexact) LP duals.

Row ``r`` of an :class:`~lipopt.hierarchy.lp.LPRelaxation` is the expansion of a product
``q_r(u) = Π_{S_r} u Π_{T_r} (1 − u) = a0_r + Σ_S A_{rS} u^S`` that is ≥ 0 on ``{0,1}^n``
(Sherali–Adams) or on the box ``[0,1]^n`` (Krivine). The LP dual is the certificate
``λ − p ≡ Σ_r c_r q_r``, ``c ≥ 0``. Given **any** vector ``c`` (the solver's row duals, optimal
or not):

1. clip: ``ĉ = max(c, 0)`` (a negative multiplier would not keep the certificate valid);
2. residual over the moments: ``res = p + Aᵀĉ`` (``p`` = the objective over the columns);
3. for every ``u`` in the domain, with ``0 ≤ u^S ≤ 1`` and ``q_r(u) ≥ 0``::

       p(u) = c0 + Σ_S p_S u^S = c0 + Σ_S res_S u^S − Σ_r ĉ_r (q_r(u) − a0_r)
            ≤ c0 + Σ_r ĉ_r a0_r + Σ_S max(res_S, 0)  =: V.

With optimal duals of the LP with column bounds ``0 ≤ y ≤ 1``, ``V`` equals the LP optimum
(``max(res, 0)`` are exactly the duals of the upper bounds ``y ≤ 1``).

**Floating point.** Let ``u = eps/2`` be the unit roundoff, ``N`` the largest number of
non-zeros in a column of ``A`` and ``M`` in a row. The entries of ``A`` and ``a0`` are small
integers, so each product ``A_{rS} ĉ_r`` carries at most one rounding, and the computed
``res_S = fl(p_S + Σ_r A_{rS} ĉ_r)`` (``N + 1`` terms, any summation order) satisfies
``|fl(res_S) − res_S| ≤ γ_{N+1} (|p_S| + (|A|ᵀĉ)_S)`` with ``γ_n = nu/(1 − nu)`` (Higham, *Accuracy
and Stability*, Lemma 3.1 and §4.2); ``max(·, 0)`` is 1-Lipschitz. The final sum of all the terms
of ``V`` is taken with :func:`math.fsum` (correctly rounded: error ≤ ``u |V|``), products
``ĉ_r a0_r`` with one rounding each. Altogether

    |fl(V) − V| ≤ γ_{N+2} · (|c0| + Σ_r |ĉ_r a0_r| + Σ_S (|p_S| + (|A|ᵀĉ)_S)) =: γ_{N+2} · m.

The margin added is ``γ · m̂`` with ``γ = (N + M + 4) · eps = 2 (N + M + 4) u``: at least twice
``γ_{N+2}`` whenever ``(N + 2)u < 1/2``, which also absorbs the relative error (≤ ``γ_{N+2}``) of
computing the non-negative sum ``m̂`` itself. The result is rounded up once more
(:func:`lipopt.floats.round_up`, one step).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import LipoptError
from ..floats import EPS, round_up
from ..hierarchy.lp import LPRelaxation


@dataclass
class Certificate:
    """``value`` is a certified upper bound on ``max p`` over ``{0,1}^n`` when ``certified``.

    ``dual_value = c0 + Σ ĉ_r a0_r``; ``positive_residual = Σ max(res_S, 0)``; ``margin`` is the
    floating-point allowance; ``n_clipped`` multipliers were negative (set to 0).
    """

    value: float
    solver_value: float
    residual_l1: float
    n_clipped: int
    certified: bool
    dual_value: float = float("nan")
    positive_residual: float = float("nan")
    margin: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def certify_lp(
    relax: LPRelaxation, row_dual: np.ndarray | None, solver_value: float = float("nan")
) -> Certificate:
    """Certified upper bound from multipliers ``row_dual`` (see the module docstring).

    ``row_dual=None`` (no dual from the solver) uses ``c = 0``: still a valid, loose bound
    ``c0 + Σ max(p_S, 0)``.
    """
    m = relax.rows
    if row_dual is None:
        c = np.zeros(m)
    else:
        c = np.asarray(row_dual, dtype=float).ravel()
        if c.shape != (m,):
            raise LipoptError(f"{c.size} multipliers for an LP with {m} rows")
    if not np.all(np.isfinite(c)) or not np.all(np.isfinite(relax.c)) or not np.isfinite(relax.c0):
        return Certificate(float("inf"), solver_value, float("nan"), 0, False)
    n_clipped = int(np.count_nonzero(c < 0))
    c = np.maximum(c, 0.0)
    A = relax.A.tocsr()
    p = np.asarray(relax.c, dtype=float)
    if m:
        res = p + A.T @ c
        abs_at_c = abs(A).T @ c
        max_col = int(np.bincount(A.indices, minlength=A.shape[1]).max()) if A.nnz else 0
        max_row = int(np.diff(A.indptr).max())
    else:
        res = p.copy()
        abs_at_c = np.zeros_like(p)
        max_col = max_row = 0
    ca0 = c * np.asarray(relax.a0, dtype=float)
    ca0 = ca0[ca0 != 0.0].tolist()
    pos = res[res > 0.0].tolist()
    s_ca0 = math.fsum(ca0)
    dual_value = math.fsum([relax.c0, s_ca0])
    positive = math.fsum(pos)
    value = math.fsum([relax.c0] + ca0 + pos)
    # all terms below are ≥ 0: any summation has relative error ≤ γ_n, covered by the factor 2
    mass = abs(relax.c0) + float(np.abs(ca0).sum()) + float(np.abs(p).sum()) + float(abs_at_c.sum())
    gamma = (max_col + max_row + 4) * EPS
    margin = gamma * mass
    bound = round_up(value + margin, steps=1)
    ok = bool(np.isfinite(bound))
    return Certificate(
        bound if ok else float("inf"), float(solver_value), float(np.abs(res).sum()), n_clipped,
        ok, float(dual_value), float(positive), float(margin),
    )
