r"""Box-bounded LPs and their float-safe dual bounds (certificates that survive early stops).

A :class:`BoxLP` is ``max c0 + cᵀx  s.t.  rl ≤ A x ≤ ru,  l ≤ x ≤ u`` with **finite** column
bounds ``l ≤ u`` (row bounds may be infinite). For *any* multipliers ``w ∈ ℝ^m`` and every
feasible ``x``::

    cᵀx = (c − Aᵀw)ᵀx + wᵀ(Ax) ≤ Σ_j max(r_j l_j, r_j u_j) + Σ_r ρ_r(w_r),     r = c − Aᵀw,

with ``ρ_r(w) = w·ru_r`` for ``w > 0`` and ``w·rl_r`` for ``w < 0``. A multiplier whose row bound
on its side is infinite is set to 0 first (clipping keeps the bound valid). So the optimum of the
LP, hence every feasible point, is below :func:`dual_bound` — whatever ``w`` is: optimal duals,
the duals of a solve stopped by a time limit, or zeros (the plain box bound). Equality rows take
multipliers of either sign.

**Infeasibility (Farkas).** With ``c = 0`` the same inequality reads ``0 ≤ V(w)`` for every
feasible ``x``; a ray ``w`` with ``V(w) < 0`` (computed with outward rounding) therefore proves
that no ``x`` is feasible (:func:`proves_infeasible`). A solver's "infeasible" status alone is
never used to discard anything.

**Floating point.** ``r̂ = fl(c − Aᵀw)``: each entry is a sum of ``k_j + 1`` terms (``k_j`` the
non-zeros of column j), so ``|r̂_j − r_j| ≤ γ_{k_j+1}(|c_j| + (|A|ᵀ|w|)_j) =: e_j`` (Higham,
*Accuracy and Stability*, §3.1, §4.2; we use ``γ_n ≤ 2n·u = n·eps`` with a factor 2 to spare, see
:mod:`lipopt.floats`). ``max_{|r − r̂_j| ≤ e_j} max(r l_j, r u_j) ≤ max(r̂_j l_j, r̂_j u_j) + e_j m_j``
with ``m_j = max(|l_j|, |u_j|)``. The products ``r̂_j l_j``, ``w_r b_r`` carry one rounding each
(``≤ u`` relative) and the terms are summed with :func:`math.fsum` (correctly rounded); the
padding ``4·eps·Σ|terms|`` covers both, and the result is rounded up twice.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..floats import EPS, round_up


class BoxLP:
    """``max c0 + cᵀx  s.t.  rl ≤ A x ≤ ru,  l ≤ x ≤ u`` (finite ``l``, ``u``).

    ``A`` is held as CSR arrays (``indptr``, ``indices``, ``data``); the scipy matrix is built on
    first use of :attr:`A`. ``row_of`` (the row of every non-zero) and ``col_counts`` (non-zeros
    per column) may be passed when many LPs share one sparsity pattern.
    """

    __slots__ = ("c", "indptr", "indices", "data", "shape", "rl", "ru", "l", "u", "c0", "_A",
                 "_row_of", "_col_counts")

    def __init__(self, c, A, rl, ru, l, u, c0: float = 0.0) -> None:
        A = sp.csr_matrix(A)
        self._set(np.asarray(c, dtype=float), A.indptr, A.indices, A.data, A.shape, rl, ru, l, u, c0)
        self._A = A

    def _set(self, c, indptr, indices, data, shape, rl, ru, l, u, c0, row_of=None, col_counts=None):
        self.c, self.indptr, self.indices, self.data = c, indptr, indices, data
        self.shape = (int(shape[0]), int(shape[1]))
        self.rl, self.ru = np.asarray(rl, dtype=float), np.asarray(ru, dtype=float)
        self.l, self.u = np.asarray(l, dtype=float), np.asarray(u, dtype=float)
        self.c0 = float(c0)
        self._A = None
        self._row_of, self._col_counts = row_of, col_counts

    @classmethod
    def from_arrays(cls, c, indptr, indices, data, shape, rl, ru, l, u, c0: float = 0.0,
                    row_of=None, col_counts=None) -> BoxLP:
        lp = cls.__new__(cls)
        lp._set(np.asarray(c, dtype=float), indptr, indices, data, shape, rl, ru, l, u, c0, row_of,
                col_counts)
        return lp

    @property
    def A(self) -> sp.csr_matrix:
        if self._A is None:
            self._A = sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)
        return self._A

    @property
    def row_of(self) -> np.ndarray:
        if self._row_of is None:
            self._row_of = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        return self._row_of

    @property
    def col_counts(self) -> np.ndarray:
        if self._col_counts is None:
            self._col_counts = np.bincount(self.indices, minlength=self.shape[1])
        return self._col_counts

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @property
    def nnz(self) -> int:
        return int(len(self.data))

    @property
    def bytes(self) -> int:
        """Memory of the data (CSR arrays and vectors)."""
        return int(12 * self.nnz + 8 * (3 * self.cols + 2 * self.rows))

    def with_objective(self, c: np.ndarray, c0: float = 0.0) -> BoxLP:
        return BoxLP.from_arrays(c, self.indptr, self.indices, self.data, self.shape, self.rl, self.ru,
                                 self.l, self.u, c0, self._row_of, self._col_counts)


def _clip_multipliers(lp: BoxLP, w: np.ndarray) -> np.ndarray:
    w = np.where(np.isfinite(w), w, 0.0)
    w = np.where((w > 0) & ~np.isfinite(lp.ru), 0.0, w)
    return np.where((w < 0) & ~np.isfinite(lp.rl), 0.0, w)


def _bound_terms(lp: BoxLP, c: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """The terms of ``V(w)`` and the float allowance (see the module docstring)."""
    cols = lp.cols
    if lp.rows:
        wr = w[lp.row_of]
        r = c - np.bincount(lp.indices, weights=lp.data * wr, minlength=cols)
        mass_col = np.abs(c) + np.bincount(lp.indices, weights=np.abs(lp.data * wr), minlength=cols)
        k = lp.col_counts
    else:
        r, mass_col, k = c.astype(float), np.abs(c), np.zeros(cols, int)
    err = (k + 2) * EPS * mass_col
    m = np.maximum(np.abs(lp.l), np.abs(lp.u))
    col_terms = np.maximum(r * lp.l, r * lp.u) + err * m
    nz = w != 0
    row_terms = w[nz] * np.where(w[nz] > 0, lp.ru[nz], lp.rl[nz])
    terms = np.concatenate([[lp.c0], col_terms, row_terms])
    return terms, float(np.abs(terms).sum())


def dual_bound(lp: BoxLP, w: np.ndarray | None) -> float:
    """An upper bound on ``max c0 + cᵀx`` over the LP's feasible set, valid for **any**
    multipliers ``w`` (``None``: zeros, the box bound). ``inf`` when not finite."""
    if not (np.all(np.isfinite(lp.l)) and np.all(np.isfinite(lp.u))):
        return math.inf
    w = np.zeros(lp.rows) if w is None else _clip_multipliers(lp, np.asarray(w, dtype=float))
    if not np.all(np.isfinite(lp.c)):
        return math.inf
    terms, mass = _bound_terms(lp, np.asarray(lp.c, dtype=float), w)
    if not (np.all(np.isfinite(terms)) and math.isfinite(mass)):
        return math.inf
    return round_up(math.fsum(terms.tolist()) + 4 * EPS * mass)


def proves_infeasible(lp: BoxLP, ray: np.ndarray | None) -> bool:
    """True when ``ray`` (or its negative) is a Farkas certificate: the dual bound of the zero
    objective, rounded up, is ``< 0``, so the LP has no feasible point."""
    if ray is None or len(ray) != lp.rows or not np.all(np.isfinite(ray)):
        return False
    zero = lp.with_objective(np.zeros(lp.cols))
    for sign in (1.0, -1.0):
        w = _clip_multipliers(lp, sign * np.asarray(ray, dtype=float))
        if not np.any(w):
            continue
        scale = float(np.abs(w).max())
        if dual_bound(zero, w / scale) < 0.0:
            return True
    return False


def drop_tiny(lp: BoxLP, rel: float = 1e-9) -> BoxLP:
    """A relaxation of ``lp`` without tiny coefficients (which stall simplex codes): an entry
    ``a_rj`` with ``|a_rj| < rel · max_j |a_rj|`` is removed and its largest contribution over the
    column's box, ``|a_rj| · max(|l_j|, |u_j|)``, is added to both sides of the row (rounded
    outward), so every point feasible for ``lp`` stays feasible."""
    if not lp.rows or not lp.nnz:
        return lp
    absd = np.abs(lp.data)
    starts = np.minimum(lp.indptr[:-1], len(absd) - 1)
    row_max = np.where(np.diff(lp.indptr) == 0, 0.0, np.maximum.reduceat(absd, starts))
    tiny = (absd > 0) & (absd < rel * row_max[lp.row_of])
    if not np.any(tiny):
        return lp
    m = np.maximum(np.abs(lp.l), np.abs(lp.u))
    slack = np.bincount(lp.row_of[tiny], weights=absd[tiny] * m[lp.indices[tiny]], minlength=lp.rows)
    slack = np.nextafter(slack * (1 + 4 * EPS), np.inf)
    data = np.where(tiny, 0.0, lp.data)
    rl = np.where(slack > 0, np.nextafter(lp.rl - slack, -np.inf), lp.rl)
    ru = np.where(slack > 0, np.nextafter(lp.ru + slack, np.inf), lp.ru)
    return BoxLP.from_arrays(lp.c, lp.indptr, lp.indices, data, lp.shape, rl, ru, lp.l, lp.u, lp.c0,
                             lp._row_of, lp._col_counts)
