r"""Exact-arithmetic proof that a fixed activation pattern's region has no interior.

At a leaf of the branch and bound (every neuron's slope fixed) each pre-activation is an affine
function ``z_j = A_j p`` of ``p = (x, τ)``, and the leaf's region is ``{p ∈ box : A_j p ≥ 0}``
(rows signed by the pattern). A region that is not empty but has no interior (it lies in a
hyperplane, or only at ``τ = 0`` — points at infinity of the homogenized global problem) holds
no *regular* point, so the leaf may be discarded (:mod:`lipopt.bab`); but floating point can
never show that such an LP's optimum is exactly 0. Here:

1. ``A`` is computed **exactly**, in rationals (:class:`fractions.Fraction`; float weights are
   rationals), rows that are identically zero are dropped (those neurons vanish on the whole
   box, and their slope does not enter the gradient);
2. the LP ``max δ  s.t.  A_j p ≥ δ (every row),  τ ≥ δ (global),  p ∈ box,  δ ≤ 1`` is solved in
   floating point (HiGHS) for a basis;
3. its multipliers are *repaired* in rationals — the reduced costs of the columns strictly
   inside their bounds are solved to exactly 0 on the rows the solver marked active — and the
   dual bound ``δ ≤ Σ_j max(r_j l_j, r_j u_j)`` (``r = e_δ + Σ μ_i a_i``, ``μ ≥ 0``) is evaluated
   exactly. ``≤ 0`` proves that no point of the box has every row strictly positive (and
   ``τ > 0``): the region has no interior.

Anything that does not verify returns ``False`` (no proof; the caller keeps the leaf). Sizes are
capped (rationals are slow): this is for the few leaves that float certificates cannot settle.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from .solvers._highs_box import HighsBox
from .solvers.box_lp import BoxLP

MAX_ENTRIES = 20_000  # exact affine maps larger than this are not attempted


def exact_affine_maps(weights, biases, slopes, kinked) -> list[list[Fraction]] | None:
    """Rows ``A_j`` (over ``(x, τ)``, exact) of the kinked neurons' pre-activations under fixed
    slopes; ``None`` when too large."""
    n0 = weights[0].shape[1]
    if sum(w.shape[0] for w in weights[:-1]) * (n0 + 1) > MAX_ENTRIES:
        return None
    F = Fraction
    rows_out: list[list[Fraction]] = []
    M = None
    for l, (w, b) in enumerate(zip(weights[:-1], biases[:-1], strict=True)):
        wd = w.toarray() if sp.issparse(w) else np.asarray(w)
        Wf = [[F(float(v)) for v in row] for row in wd]
        if l == 0:
            M = [row + [F(float(bi))] for row, bi in zip(Wf, b, strict=True)]
        else:
            s = [F(float(v)) for v in slopes[l - 1]]
            scaled = [[s[i] * v for v in M[i]] for i in range(len(M))]
            M = [[sum((Wf[j][i] * scaled[i][k] for i in range(len(scaled)) if Wf[j][i]), F(0))
                  for k in range(n0 + 1)] for j in range(len(Wf))]
            for j, bj in enumerate(b):
                M[j][-1] += F(float(bj))
        rows_out += [M[j] for j in range(len(M)) if kinked[l][j]]
    return rows_out


def no_interior(rows: list[list[Fraction]], signs: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                global_tau: bool) -> bool:
    """True when ``{p ∈ [lo, hi] : sign_j A_j p > 0 ∀j (and τ > 0)}`` is proven empty, exactly."""
    free = hi > lo
    A = []
    signed = [[s * v for v in row] for row, s in zip(rows, signs, strict=True)]
    if global_tau:
        signed.append([Fraction(0)] * (len(lo) - 1) + [Fraction(1)])
    for row in signed:
        if any(row[k] != 0 for k in range(len(row)) if free[k]):
            A.append(row)
        elif _const(row, lo, free) < 0:
            return True  # negative on the whole box: the region is empty
        # a positive constant is no constraint; an identically zero neuron has no say (bab.py)
    if not A:
        return False
    k = len(lo)
    dense = np.array([[float(v) for v in row] for row in A])
    lp = BoxLP(np.r_[np.zeros(k), 1.0], sp.csr_matrix(np.hstack([dense, -np.ones((len(A), 1))])),
               np.zeros(len(A)), np.full(len(A), np.inf), np.r_[lo, -1.0], np.r_[hi, 1.0])
    out = HighsBox().solve(lp, keep_basis=True)
    if out.status != "optimal" or out.w is None or out.x is None or out.solver_value > 1e-9:
        return False
    if out.basis is not None and _verify_basis(A, lo, hi, out.basis):
        return True
    return _verify(A, lo, hi, -np.minimum(out.w, 0.0), out.x)


def _verify_basis(A, lo, hi, basis) -> bool:
    """The solver's final basis solved exactly: the multipliers of the non-basic rows make the
    reduced costs of the basic columns exactly 0; then the dual bound is checked exactly."""
    F = Fraction
    k = len(lo)
    a = [row + [F(-1)] for row in A]
    basic = [j for j, st in enumerate(basis.col_status) if "Basic" in str(st)]
    rows = [i for i, st in enumerate(basis.row_status) if "Basic" not in str(st)]
    if len(basic) != len(rows):
        return False
    eqs = [[a[i][j] for i in rows] + [F(-1) if j == k else F(0)] for j in basic]
    pivots = _gauss_jordan(eqs, len(rows))
    if pivots is None or len(pivots) != len(rows):
        return False
    mu = {rows[c]: eqs[r][-1] for r, c in pivots}
    return _bound_nonpositive(a, lo, hi, mu)


def _bound_nonpositive(a, lo, hi, mu: dict) -> bool:
    """``μ ≥ 0`` and ``Σ_j max(r_j l_j, r_j u_j) ≤ 0`` for ``r = e_δ + Σ μ_i a_i``, exactly."""
    F = Fraction
    k = len(lo)
    if any(v < 0 for v in mu.values()):
        return False
    lo_f = [F(float(v)) for v in lo] + [F(-1)]
    hi_f = [F(float(v)) for v in hi] + [F(1)]
    r = [(F(1) if j == k else F(0)) + sum((v * a[i][j] for i, v in mu.items()), F(0)) for j in range(k + 1)]
    return sum((max(r[j] * lo_f[j], r[j] * hi_f[j]) for j in range(k + 1)), F(0)) <= 0


def _const(row, lo, free) -> Fraction:
    """The value of a row that is constant on the box (its free coefficients are 0)."""
    return sum((row[k] * Fraction(float(lo[k])) for k in range(len(row)) if not free[k]), Fraction(0))


def _verify(A, lo, hi, mu_float: np.ndarray, x: np.ndarray) -> bool:
    """Repair the multipliers in rationals and check the dual bound ``≤ 0`` exactly."""
    F = Fraction
    k = len(lo)
    cols = list(range(k)) + [k]  # (p, δ); δ's coefficient in every row is −1
    lo_f = [F(float(v)) for v in lo] + [F(-1)]
    hi_f = [F(float(v)) for v in hi] + [F(1)]
    a = [row + [F(-1)] for row in A]
    active = [i for i in range(len(a)) if mu_float[i] > 1e-12]
    inside = [j for j in cols if lo_f[j] < hi_f[j]
              and float(lo_f[j]) + 1e-9 < x[j] < float(hi_f[j]) - 1e-9]
    mu = {i: F(float(mu_float[i])) for i in active}
    # solve Σ_i μ_i a_ij = −c_j (c = e_δ) for j inside, over the active rows (Gauss–Jordan)
    eqs = [[a[i][j] for i in active] + [F(-1) if j == k else F(0)] for j in inside]
    pivots = _gauss_jordan(eqs, len(active))
    if pivots is None:
        return False
    for row, col in pivots:
        rest = sum((eqs[row][c] * mu[active[c]] for c in range(len(active)) if c != col), F(0))
        mu[active[col]] = eqs[row][-1] - rest
    return _bound_nonpositive(a, lo, hi, mu)


def _gauss_jordan(eqs: list[list[Fraction]], n: int) -> list[tuple[int, int]] | None:
    """Reduce ``eqs`` (rows ``[coefficients…, rhs]``) in place; the pivot ``(row, column)`` pairs,
    or ``None`` when the system is inconsistent."""
    pivots, r = [], 0
    for c in range(n):
        p = next((i for i in range(r, len(eqs)) if eqs[i][c] != 0), None)
        if p is None:
            continue
        eqs[r], eqs[p] = eqs[p], eqs[r]
        piv = eqs[r][c]
        eqs[r] = [v / piv for v in eqs[r]]
        for i in range(len(eqs)):
            if i != r and eqs[i][c] != 0:
                f = eqs[i][c]
                eqs[i] = [vi - f * vr for vi, vr in zip(eqs[i], eqs[r], strict=True)]
        pivots.append((r, c))
        r += 1
    if any(all(v == 0 for v in row[:-1]) and row[-1] != 0 for row in eqs[r:]):
        return None
    return pivots
