r"""Moment (Lasserre) relaxations of binary POPs, as plain solver-neutral data.

Problem. ``max p(u)`` over ``u ∈ {0,1}^n`` with ``p(u) = Σ_S p_S u^S`` multilinear (``u^S =
Π_{i∈S} u_i``; on ``{0,1}`` every monomial is multilinear because ``u_i² = u_i``).

Pseudo-moments. One real variable ``y_S`` per subset ``S`` that occurs (``y_∅ = 1``); for a point
``u ∈ {0,1}^n`` the *true* moments are ``y_S(u) = u^S ∈ {0,1}``. The objective is linear:
``p(u) = Σ_S p_S y_S(u)``.

Order-d moment matrices (Lasserre on ``{0,1}``). For a clique ``C`` (a set of variables) let
``B_C = {α ⊆ C : |α| ≤ d}`` (``∅`` first) and ``m_C(u) = (u^α)_{α∈B_C}``. Because ``u² = u``,
``m_C(u) m_C(u)ᵀ`` has entry ``u^{α∪β}``, so

.. math::  M_C(y)_{αβ} = y_{α∪β}, \qquad M_C(y(u)) = m_C(u) m_C(u)^\top \succeq 0 .

The relaxation ``max Σ p_S y_S`` s.t. ``y_∅ = 1``, ``M_C(y) ⪰ 0`` for every clique is an upper
bound on ``max p``. ``d = 1`` is the Shor relaxation. *Dense*: one clique with all variables.
*Correlative sparse*: the maximal cliques of a chordal extension of the sparsity graph
(:mod:`lipopt.graph`); the blocks share the global variables ``y_S`` on their overlaps, so they
are consistent by construction. Every monomial of ``p`` must have ``|S| ≤ 2d`` and lie in a
clique, else :class:`~lipopt.errors.LipoptError` — a monomial is never dropped.

Sherali–Adams rows (``sdp+lp``). For a level ``k``, every clique ``C``, every ``U ⊆ C`` with
``|U| = min(k, |C|)`` and every split ``U = S ∪ T``:

.. math::  g_{S,T}(y) = \sum_{R ⊆ T} (-1)^{|R|} y_{S∪R} \;\ge 0,

the pseudo-expectation of ``Π_S u Π_T (1 − u) ≥ 0``. Combined with order-1 moment matrices on
the same ``y`` this is stronger than either alone.

Data. :class:`MomentRelaxation` holds the moment table (one row of variable indices per ``y``
id, id 0 = ``∅``), the objective vector ``c`` (``c_S = p_S``), the PSD blocks (:class:`PSDBlock`:
an ``ids`` matrix with ``M_C(y)_{ij} = y[ids[i, j]]``, i.e. a 0/1 linear map
``vec(M_C) = A_C y``) and the SA rows as a sparse matrix ``G`` (``G y ≥ 0``; constants enter
through ``y_∅``). The adjoint ``A_C^*(Z)_S = Σ_{ids[i,j] = S} Z_ij`` is what the certificate
(:mod:`lipopt.solvers.sdp_pipeline`) needs:

.. math::  p(u) \le p(u) + \sum_C m_C^\top Z_C m_C + μ^\top g(y(u))
           = \sum_S w_S\, u^S, \quad w = c + \sum_C A_C^*(Z_C) + G^\top μ,

valid for every ``Z_C ⪰ 0``, ``μ ≥ 0``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..polynomial import PAD, Polynomial

__all__ = [
    "DEFAULT_MAX_BLOCK",
    "MomentRelaxation",
    "PSDBlock",
    "basis_size",
    "build_moment_relaxation",
    "choose_cliques",
    "sherali_adams_rows",
    "subsets_up_to",
]

#: Largest moment matrix side built by default (a dense ``N × N`` SDP block with interior-point
#: methods costs ``O(N^4)``-ish memory/time in the Schur complement; 400 is minutes already).
DEFAULT_MAX_BLOCK = 400
#: Largest number of Sherali–Adams rows built by default.
DEFAULT_MAX_LP_ROWS = 2_000_000


# ---------------------------------------------------------------------------------------------
# Subsets as padded rows and integer keys
# ---------------------------------------------------------------------------------------------
def basis_size(k: int, d: int) -> int:
    """``|{α ⊆ C : |α| ≤ d}| = Σ_{r ≤ d} C(k, r)`` for a clique of size ``k``."""
    return sum(math.comb(k, r) for r in range(min(d, k) + 1))


def subsets_up_to(clique: np.ndarray, d: int) -> np.ndarray:
    """All subsets of ``clique`` of size ≤ ``d`` as rows (ascending, ``PAD`` in front), ``∅`` first.

    Shape ``(basis_size(len(clique), d), max(d, 1))``; ordered by size, then lexicographically.
    """
    clique = np.asarray(clique, dtype=np.int64)
    width = max(d, 1)
    rows = [np.full((1, width), PAD, dtype=np.int64)]
    for r in range(1, min(d, len(clique)) + 1):
        comb = np.array(list(itertools.combinations(range(len(clique)), r)), dtype=np.int64)
        pad = np.full((len(comb), width - r), PAD, dtype=np.int64)
        rows.append(np.hstack([pad, clique[comb]]))
    return np.vstack(rows)


def _canonical(rows: np.ndarray) -> np.ndarray:
    """Sort each row, replace repeated indices by ``PAD`` (``u² = u``), sort again."""
    s = np.sort(rows, axis=1)
    if s.shape[1] > 1:
        dup = np.zeros_like(s, dtype=bool)
        dup[:, 1:] = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] != PAD)
        if dup.any():
            s[dup] = PAD
            s = np.sort(s, axis=1)
    return s


def _pad_width(rows: np.ndarray, width: int) -> np.ndarray:
    """Left-pad (or trim all-``PAD`` leading columns) to ``width`` columns."""
    rows = np.asarray(rows, dtype=np.int64)
    w = rows.shape[1]
    if w == width:
        return rows
    if w < width:
        return np.hstack([np.full((rows.shape[0], width - w), PAD, dtype=np.int64), rows])
    if np.any(rows[:, : w - width] != PAD):
        raise ValueError("cannot trim: a row has more entries than the target width")
    return rows[:, w - width :]


class _Keys:
    """Injective integer keys of subsets: ``key = Σ_j (s_j + 1)·(n+1)^(w−1−j)``.

    Front padding (``PAD + 1 = 0``) contributes nothing, so keys do not depend on the width.
    """

    def __init__(self, n_vars: int, width: int):
        self.base = n_vars + 1
        self.width = width
        if width * math.log2(max(self.base, 2)) >= 62:
            raise LipoptError(
                f"subsets of up to {width} of {n_vars} variables do not fit 64-bit keys; "
                "the relaxation is far too large anyway: use a lower order or --method lp"
            )
        self.powers = self.base ** np.arange(width - 1, -1, -1, dtype=np.int64)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = _pad_width(rows, self.width)
        return (rows + 1) @ self.powers


# ---------------------------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PSDBlock:
    """``M_C(y)_{ij} = y[ids[i, j]]`` for the basis ``basis`` (subsets of ``clique``)."""

    clique: np.ndarray  # sorted global variable indices
    basis: np.ndarray  # (b, width) subsets, PAD in front, ∅ first
    ids: np.ndarray  # (b, b) int64 moment ids, symmetric

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    def linear_map(self, n_moments: int) -> sp.csr_matrix:
        """``A_C`` with ``vec(M_C(y)) = A_C y`` (row-major vectorisation), shape ``(b², m)``."""
        b2 = self.ids.size
        return sp.csr_matrix(
            (np.ones(b2), (np.arange(b2), self.ids.ravel())), shape=(b2, n_moments)
        )

    def adjoint(self, Z: np.ndarray, n_moments: int) -> np.ndarray:
        """``A_C^*(Z)_S = Σ_{ids[i,j] = S} Z_ij`` (length ``n_moments``)."""
        return np.bincount(self.ids.ravel(), weights=np.asarray(Z, float).ravel(), minlength=n_moments)

    def matrix(self, y: np.ndarray) -> np.ndarray:
        """``M_C(y)`` for a moment vector ``y``."""
        return np.asarray(y)[self.ids]


@dataclass(frozen=True)
class MomentRelaxation:
    """``max cᵀy`` s.t. ``y_0 = 1``, ``M_C(y) ⪰ 0`` (every block), ``G y ≥ 0`` (SA rows).

    ``moments[k]`` lists the variables of ``y_k`` (ascending, ``PAD`` in front); ``moments[0]`` is
    ``∅``. ``c`` equals the polynomial's coefficients on its monomials (exactly, no rounding).
    """

    n_vars: int
    order: int
    moments: np.ndarray
    c: np.ndarray
    blocks: list[PSDBlock]
    G: sp.csr_matrix | None = None
    lp_level: int | None = None
    clique_method: str = "dense"
    cliques: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def n_moments(self) -> int:
        return int(len(self.moments))

    @property
    def n_lp_rows(self) -> int:
        return 0 if self.G is None else int(self.G.shape[0])

    def true_moments(self, u: np.ndarray) -> np.ndarray:
        """``y(u)_S = u^S`` at a 0/1 point (or a batch ``(k, n)``)."""
        batch = np.ndim(u) == 2
        u2 = np.atleast_2d(np.asarray(u, dtype=float))
        up = np.hstack([u2, np.ones((u2.shape[0], 1))])
        idx = np.where(self.moments == PAD, self.n_vars, self.moments)
        out = up[:, idx].prod(axis=2)
        return out if batch else out[0]

    def evaluate(self, u: np.ndarray) -> np.ndarray:
        """``cᵀ y(u) = p(u)``."""
        return self.true_moments(u) @ self.c

    def size(self) -> dict:
        sizes = [b.size for b in self.blocks]
        return {
            "order": int(self.order),
            "n_moments": self.n_moments,
            "n_blocks": len(self.blocks),
            "max_block": max(sizes, default=0),
            "psd_entries": int(sum(s * (s + 1) // 2 for s in sizes)),
            "n_lp_rows": self.n_lp_rows,
            "n_constraints": int(sum(s * (s + 1) // 2 for s in sizes)) + self.n_lp_rows + 1,
        }


# ---------------------------------------------------------------------------------------------
# Cliques
# ---------------------------------------------------------------------------------------------
def _psd_cost(cliques: list[np.ndarray], order: int) -> int:
    return sum(basis_size(len(c), order) * (basis_size(len(c), order) + 1) // 2 for c in cliques)


def choose_cliques(poly: Polynomial, order: int, method: str = "auto") -> tuple[list[np.ndarray], str]:
    """Cliques for the moment matrices: ``"dense"``, a :mod:`lipopt.graph` heuristic
    (``"min-degree"``, ``"min-fill"``, ``"mcs-m"``), or ``"auto"``: min-degree cliques unless one
    dense block has fewer PSD entries (``Σ_C b_C(b_C+1)/2``, ``b_C`` the basis size).

    Only variables used by ``p`` are put in cliques (an unused variable has no effect on max p).
    """
    used = poly.variables_used()
    if method == "dense":
        return ([used.astype(np.int64)] if len(used) else []), "dense"
    from ..graph import clique_structure

    heuristic = "min-degree" if method == "auto" else method
    cs = clique_structure(poly, heuristic)
    # unused variables are isolated nodes (singleton cliques): drop them
    sparse = [np.intersect1d(c, used).astype(np.int64) for c in cs.cliques]
    sparse = [c for c in sparse if len(c)]
    if method == "auto" and len(used) and _psd_cost([used], order) <= _psd_cost(sparse, order):
        return [used.astype(np.int64)], "dense"
    return sparse, cs.method


def _check_coverage(poly: Polynomial, cliques: list[np.ndarray], max_size: int, what: str) -> None:
    """Every monomial has ``|S| ≤ max_size`` and lies inside some clique (else LipoptError)."""
    degs = poly.degrees
    if poly.num_terms and degs.max() > max_size:
        k = int(np.argmax(degs))
        mono = [int(v) for v in poly.supports[k] if v != PAD]
        raise LipoptError(
            f"monomial {mono} has degree {int(degs[k])} > {max_size}, which the {what} cannot "
            "represent; raise the order/level (every monomial must be covered, none is dropped)"
        )
    s = np.asarray(poly.supports, dtype=np.int64)
    nonconst = degs > 0
    if not nonconst.any():
        return
    member = np.zeros((len(cliques), poly.n_vars + 1), dtype=bool)
    for i, c in enumerate(cliques):
        member[i, c] = True
    member[:, poly.n_vars] = True  # padding column
    idx = np.where(s == PAD, poly.n_vars, s)[nonconst]
    covered = np.zeros(len(idx), dtype=bool)
    for i in range(len(cliques)):
        covered |= member[i][idx].all(axis=1)
        if covered.all():
            return
    k = int(np.flatnonzero(nonconst)[np.argmin(covered)])
    mono = [int(v) for v in poly.supports[k] if v != PAD]
    raise LipoptError(
        f"monomial {mono} (coefficient {poly.coef[k]:.6g}) lies in no clique: the {what} would "
        "drop it; use cliques of this polynomial's sparsity graph or the dense method"
    )


# ---------------------------------------------------------------------------------------------
# Sherali–Adams rows
# ---------------------------------------------------------------------------------------------
def sherali_adams_rows(
    cliques: list[np.ndarray], level: int, max_rows: int = DEFAULT_MAX_LP_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """SA rows ``Σ_{R⊆T} (−1)^{|R|} y_{S∪R} ≥ 0`` for ``U = S ∪ T`` as in the module docstring.

    Sets ``U`` are collected over all cliques (size ``min(level, |C|)``) and deduplicated.
    Returns ``(row, monomials, coef, n_rows)``: entry ``e`` adds ``coef[e]·y_{monomials[e]}`` to
    row ``row[e]`` (``monomials`` padded to width ``level``). Rows are indexed ``(U, S-mask)``.
    Each variable of ``U`` is in ``S``, in ``R`` or in ``T ∖ R``: ``3^{|U|}`` entries per ``U``.
    """
    groups: dict[int, list[np.ndarray]] = {}
    for c in cliques:
        k = min(level, len(c))
        if k == 0:
            continue
        comb = np.array(list(itertools.combinations(range(len(c)), k)), dtype=np.int64)
        groups.setdefault(k, []).append(np.asarray(c, dtype=np.int64)[comb])
    rows_out, mono_out, coef_out = [], [], []
    n_rows = 0
    for k in sorted(groups):
        U = np.unique(np.vstack(groups[k]), axis=0)  # (nU, k), each row sorted
        nU = len(U)
        if n_rows + nU * (1 << k) > max_rows:
            raise LipoptError(
                f"Sherali–Adams level {level} needs more than {max_rows:,} rows on these cliques; "
                "use a lower level or smaller cliques"
            )
        # state per position: 0 = in S, 1 = in R (⊆ T), 2 = in T ∖ R
        states = np.array(list(itertools.product((0, 1, 2), repeat=k)), dtype=np.int64)  # (3^k, k)
        smask = ((states == 0) * (1 << np.arange(k))).sum(axis=1)
        sign = np.where((states == 1).sum(axis=1) % 2 == 0, 1.0, -1.0)
        take = states <= 1  # variables present in the monomial S ∪ R
        mono = np.where(take[None, :, :], U[:, None, :], PAD)  # (nU, 3^k, k)
        mono = np.sort(mono.reshape(-1, k), axis=1)
        row = (np.arange(nU)[:, None] * (1 << k) + smask[None, :]).ravel() + n_rows
        rows_out.append(row)
        mono_out.append(_pad_width(mono, level))
        coef_out.append(np.tile(sign, nU))
        n_rows += nU * (1 << k)
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros((0, level), np.int64), np.zeros(0), 0
    return np.concatenate(rows_out), np.vstack(mono_out), np.concatenate(coef_out), n_rows


# ---------------------------------------------------------------------------------------------
# Size
# ---------------------------------------------------------------------------------------------
#: Bytes per PSD-block entry and per SA-row entry through the conic pipeline (moment map, cvxpy
#: canonicalisation, solver copy): a deliberately generous constant, so the estimate errs high.
BYTES_PER_PSD_ENTRY = 400
BYTES_PER_SA_ENTRY = 200


def estimate_bytes(
    cliques: list[np.ndarray], order: int, lp_cliques: list[np.ndarray] | None, lp_level: int | None
) -> tuple[float, int, int]:
    """``(bytes, psd_entries, sa_entries)``: ``Σ_C b_C²`` block entries (``b_C`` =
    :func:`basis_size`) and at most ``Σ_C binom(|C|, k)·3^k`` SA entries (``k = min(level, |C|)``,
    before deduplication), times the per-entry constants above."""
    psd = sum(basis_size(len(c), order) ** 2 for c in cliques)
    sa = 0
    for c in lp_cliques or []:
        k = min(lp_level or 0, len(c))
        sa += math.comb(len(c), k) * 3**k if k else 0
    return float(BYTES_PER_PSD_ENTRY * psd + BYTES_PER_SA_ENTRY * sa), psd, sa


def _check_memory(
    cliques: list[np.ndarray],
    order: int,
    lp_cliques: list[np.ndarray] | None,
    lp_level: int | None,
    max_bytes: float | None,
) -> None:
    if max_bytes is None:
        return
    est, psd, sa = estimate_bytes(cliques, order, lp_cliques, lp_level)
    if est > max_bytes:
        what = f"order-{order} moment relaxation" + (f" + level-{lp_level} SA rows" if lp_level else "")
        raise LipoptError(
            f"the {what} would need about {est / 1e9:.2f} GB ({psd:,} PSD entries in {len(cliques)} "
            f"blocks, {sa:,} SA entries), above the memory budget of {max_bytes / 1e9:.2f} GB; lower "
            "the degree, use --method lp, or raise --max-memory"
        )


# ---------------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------------
def build_moment_relaxation(
    poly: Polynomial,
    order: int,
    *,
    clique_method: str = "auto",
    cliques: list[np.ndarray] | None = None,
    lp_level: int | None = None,
    lp_cliques: list[np.ndarray] | None = None,
    max_block: int = DEFAULT_MAX_BLOCK,
    max_lp_rows: int = DEFAULT_MAX_LP_ROWS,
    max_bytes: float | None = None,
) -> MomentRelaxation:
    """The order-``order`` moment relaxation of ``max p`` over ``{0,1}^n`` (see module docstring).

    Args:
        poly: the polynomial ``p`` (multilinear in binary variables; reduced with ``u² = u``).
        order: moment order ``d ≥ 1`` (1 = Shor).
        clique_method: ``"dense"``, ``"auto"``, or a :mod:`lipopt.graph` heuristic.
        cliques: explicit cliques for the PSD blocks (overrides ``clique_method``).
        lp_level: add the Sherali–Adams rows of this level (``sdp+lp``); ``None`` for none.
        lp_cliques: cliques for the SA rows (default: the sparsity-graph cliques, min-degree).
        max_block: refuse (LipoptError) moment matrices larger than this.
        max_lp_rows: refuse more SA rows than this.
        max_bytes: refuse (LipoptError) when :func:`estimate_bytes` of the relaxation exceeds it.

    Without SA rows, every monomial must satisfy ``|S| ≤ 2d`` and lie in a PSD clique; with
    them, ``|S| ≤ max(2d, level)`` and lie in a PSD clique or an SA clique.
    """
    if int(order) != order or order < 1:
        raise LipoptError(f"the moment order must be a positive integer, got {order!r}")
    order = int(order)
    poly = poly.reduce_binary()
    n = poly.n_vars
    if cliques is None:
        cliques, method = choose_cliques(poly, order, clique_method)
    else:
        cliques = [np.unique(np.asarray(c, dtype=np.int64)) for c in cliques]
        method = "given"
    for c in cliques:
        b = basis_size(len(c), order)
        if b > max_block:
            raise LipoptError(
                f"order-{order} moment matrix of size {b:,} (clique of {len(c)} variables) exceeds "
                f"the limit of {max_block:,}; use --method lp, --method sdp+lp (Shor + Sherali–Adams "
                "rows), a lower order or a sparser network"
            )
    sa_rows = None
    if lp_level is not None:
        lp_level = int(lp_level)
        if lp_level < 1:
            raise LipoptError(f"the Sherali–Adams level must be ≥ 1, got {lp_level}")
        if lp_cliques is None:
            if len(poly.variables_used()) == 0:
                lp_cliques = []
            else:
                lp_cliques, _ = choose_cliques(poly, 1, "min-degree")
        lp_cliques = [np.unique(np.asarray(c, dtype=np.int64)) for c in lp_cliques]
        _check_coverage(poly, cliques + lp_cliques, max(2 * order, lp_level),
                        f"order-{order} moment + level-{lp_level} Sherali–Adams relaxation")
        _check_memory(cliques, order, lp_cliques, lp_level, max_bytes)
        sa_rows = sherali_adams_rows(lp_cliques, lp_level, max_lp_rows)
    else:
        _check_coverage(poly, cliques, 2 * order, f"order-{order} moment relaxation")
        _check_memory(cliques, order, None, None, max_bytes)

    width = max(2 * order, lp_level or 0, poly.supports.shape[1], 1)
    keys = _Keys(n, width)
    # moments of every block: α ∪ β
    block_rows, block_keys = [], []
    for c in cliques:
        basis = subsets_up_to(c, order)
        b = len(basis)
        ii, jj = np.indices((b, b))
        rows = _canonical(np.hstack([basis[ii.ravel()], basis[jj.ravel()]]))
        block_rows.append(basis)
        block_keys.append(keys(rows))
    poly_keys = keys(_pad_width(np.asarray(poly.supports, dtype=np.int64), width)) if poly.num_terms else \
        np.zeros(0, np.int64)
    sa_keys = keys(sa_rows[1]) if sa_rows is not None and len(sa_rows[0]) else np.zeros(0, np.int64)
    all_keys = np.unique(np.concatenate([np.zeros(1, np.int64), *block_keys, poly_keys, sa_keys]))
    # decode keys back to rows
    digits = (all_keys[:, None] // keys.powers[None, :]) % keys.base - 1
    moments = digits.astype(np.int64)

    c_vec = np.zeros(len(all_keys))
    if poly.num_terms:
        np.add.at(c_vec, np.searchsorted(all_keys, poly_keys), poly.coef)
    blocks = []
    for cl, basis, bk in zip(cliques, block_rows, block_keys, strict=True):
        b = len(basis)
        ids = np.searchsorted(all_keys, bk).reshape(b, b)
        blocks.append(PSDBlock(cl, basis, ids))
    G = None
    if sa_rows is not None:
        row, _, coef, n_rows = sa_rows
        col = np.searchsorted(all_keys, sa_keys)
        G = sp.csr_matrix((coef, (row, col)), shape=(n_rows, len(all_keys)))
        G.sum_duplicates()
    return MomentRelaxation(n, order, moments, c_vec, blocks, G, lp_level, method, list(cliques))
