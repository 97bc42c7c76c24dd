"""Sherali–Adams LP relaxations of ``max p(u), u ∈ {0,1}^n`` on the cliques of a chordal extension.

Level ``k`` (DESIGN §4). Pseudo-moments ``y_S`` for every ``S`` inside some clique with
``|S| ≤ k`` (``y_∅ = 1``) stand for ``E[u^S]``. For a clique ``C``, every ``U ⊆ C`` with
``|U| = min(k, |C|)`` and every split ``U = S ⊔ T``, the polynomial
``q_{S,T}(u) = Π_{i∈S} u_i Π_{j∈T} (1 − u_j) = Σ_{R⊆T} (−1)^{|R|} u^{S∪R}`` is ≥ 0 on
``{0,1}^n``, so a distribution would satisfy

    Σ_{R⊆T} (−1)^{|R|} y_{S∪R} ≥ 0                                           (row (U, S))

and the relaxation is ``max Σ_S p_S y_S + p_∅`` over these rows (``0 ≤ y ≤ 1`` is implied and
added as column bounds). Smaller ``U`` are implied (``q_{S,T} = q_{S+i,T} + q_{S,T+i}``), so only
``|U| = min(k, |C|)`` is enumerated. The data are stored as ``A y + a0 ≥ 0``: ``A`` over the
non-empty moments (the columns), ``a0`` the coefficient of ``y_∅`` (1 exactly for ``S = ∅``).

The LP dual is the certificate ``λ − p ≡ Σ c_r q_r (mod u² = u)``, ``c ≥ 0``; see
:func:`lipopt.certificates.certify_lp`, which turns *any* multipliers into a rigorous bound.

Sizes (computed before building, :func:`estimate_lp_size`): with a clique tree (running
intersection) a set ``U`` inside the separator ``C_i ∩ C_parent`` is also inside the parent, so
clique ``i`` contributes only the ``C(|C_i|, u) − C(|sep_i|, u)`` sets that are not; each gives
``2^u`` rows with ``3^u − 1`` non-zeros in all. Columns: ``Σ_i Σ_{1≤r≤u_i} C(|C_i|, r) −
C(|sep_i|, r)``. At ``k = max |C_i|`` the sparse LP is exact (local distributions on the cliques
that agree on separators glue along the tree).

**Eliminating the top moments** (``project=True``, default at levels 2 and 3). A moment ``y_U``
with ``|U| = k`` occurs only in the ``2^k`` rows of ``U`` itself (a row's moments are subsets of
its own set, and every other set of size ``k`` differs from ``U``). If ``y_U`` is not in the
objective it can be projected out exactly by Fourier–Motzkin: every row has ``y_U`` with sign
``(−1)^{|T|}``, so the projection consists of the sums ``q_P + q_N`` of a row with ``|T|`` even
and one with ``|T|`` odd. Pairs of splits that differ in one position give the Sherali–Adams
rows of the ``(k−1)``-subsets (i.e. level ``k − 1``); pairs that differ in ≥ 3 positions give
new rows (``k = 3``: the four triangle inequalities ``1 − y_a − y_b − y_c + y_ab + y_ac + y_bc ≥
0``, ``y_c − y_ac − y_bc + y_ab ≥ 0``, …). Same optimal value, every row still the expansion of
a polynomial ≥ 0 on ``{0,1}^n`` (so certification is unchanged), and at ``k = 3`` on a dense
80-80-1 problem 9 720 instead of 344 680 columns and half the rows. Per set the number of new
rows is ``2^{k−1} Σ_{d odd ≥ 3} C(k, d)`` (4, 32, 176 for k = 3, 4, 5), so higher levels keep
the plain form by default.

``basis="krivine"``: the box Krivine/Handelman basis used by LiPopt: every product of ``k``
factors ``u_i`` or ``(1 − u_i)`` (repetition allowed) of a clique's variables, on the box
``[0,1]^n`` *without* ``u² = u``: the moments are monomials with exponents (multisets of
variables, degree ≤ k). Products of degree ``< k`` are sums of degree-``k`` ones
(``u_i + (1 − u_i) = 1``). Reducing any Krivine certificate by ``u² = u`` gives a Sherali–Adams
one of the same level, so at a fixed level this basis is never tighter.

Construction is vectorized per clique (:mod:`lipopt.hierarchy.subsets`: the Sherali–Adams
generator and the moment-key codec shared with the moment hierarchy); columns come from one
global ``np.unique`` of the moment keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..graph import CliqueStructure, assign_monomials
from ..polynomial import Polynomial
from ..results import Size
from .subsets import Codec, comb, combinations, popcount, product_rows, sa_sets, sa_template, tile_rows

BASES = ("sherali-adams", "krivine")
#: memory model of :func:`estimate_lp_size` (bytes), calibrated on peak RSS of build + HiGHS IPM
#: (dense 80-80-1 level 3: 6.1 M non-zeros, 1.39 M rows + columns, 0.91 GB): CSR storage, the
#: solver's copies and factor work, build temporaries (int64 keys)
BYTES_PER_NNZ = 100
#: per row or column: bounds, costs, duals, primal values, solver work vectors
BYTES_PER_VECTOR_ENTRY = 250


def _multichoose(n: int, r: int) -> int:
    """Number of multisets of size ``r`` from ``n`` items."""
    if r == 0:
        return 1
    return comb(n + r - 1, r) if n > 0 else 0


def _multisets(m: int, r: int) -> np.ndarray:
    """All size-``r`` multisets of ``range(m)`` as non-decreasing rows."""
    if r == 0:
        return np.zeros((1, 0), dtype=np.int64)
    if m == 0:
        return np.zeros((0, r), dtype=np.int64)
    return combinations(m + r - 1, r) - np.arange(r, dtype=np.int64)


@dataclass
class LPRelaxation:
    """``max c0 + cᵀy`` s.t. ``A y + a0 ≥ 0``, ``0 ≤ y ≤ 1``; column ``j`` is the moment of the
    variables ``moments[j]`` (padded like :attr:`Polynomial.supports`; repeated indices are
    powers in the Krivine basis). Row ``r`` is the expansion of a product
    ``q_r(u) = Π_S u Π_T (1 − u) = a0[r] + Σ_j A[r, j] u^{moments[j]}``. ``structure`` is the
    clique structure the rows were generated on; ``projected``: the private top moments were
    eliminated.
    """

    A: sp.csr_matrix
    a0: np.ndarray
    c: np.ndarray
    c0: float
    moments: np.ndarray
    level: int
    basis: str
    n_vars: int
    structure: CliqueStructure
    projected: bool = False
    build_time_s: float = 0.0

    @property
    def rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def cols(self) -> int:
        return int(self.A.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.A.nnz)

    def program(self):
        """The LP as a :class:`~lipopt.solvers.base.LinearProgram` (``−a0 ≤ A y``, ``0 ≤ y ≤ 1``)."""
        from ..solvers.base import LinearProgram

        m, n = self.rows, self.cols
        return LinearProgram(self.c, self.A, -self.a0, np.full(m, np.inf), np.zeros(n), np.ones(n), self.c0)

    def size(self) -> Size:
        cs = self.structure
        return Size(variables=self.cols, constraints=self.rows, nonzeros=self.nnz,
                    cliques=cs.n_cliques, largest_clique=cs.max_clique)


# ---------------------------------------------------------------------------------------------
# Projection template and size estimate
# ---------------------------------------------------------------------------------------------
def _pair_template(u: int) -> np.ndarray:
    """Rows ``q_P + q_N`` for splits ``P`` (``|T|`` even) and ``N`` (``|T|`` odd) of ``U`` that
    differ in ≥ 3 positions: the Fourier–Motzkin combinations that eliminate ``y_U`` and are
    not Sherali–Adams rows of a smaller set (module docstring). Column ``2^u − 1`` is 0."""
    T = sa_template(u)
    odd_t = np.array([(u - popcount(s)) % 2 for s in range(1 << u)])
    P, N = np.flatnonzero(odd_t == 0), np.flatnonzero(odd_t == 1)
    pairs = [(a, b) for a in P for b in N if popcount(int(a) ^ int(b)) >= 3]
    if not pairs:
        return np.zeros((0, 1 << u))
    out = np.array([T[a] + T[b] for a, b in pairs])
    assert np.all(out[:, -1] == 0)
    return out


def _sa_counts(sizes: list[tuple[int, int]], k: int) -> tuple[int, int, int]:
    rows = cols = nnz = 0
    for m, s in sizes:
        u = min(k, m)
        n_sets = comb(m, u) - comb(s, u)
        rows += n_sets << u
        nnz += n_sets * (3**u - 1)
        cols += sum(comb(m, r) - comb(s, r) for r in range(1, u + 1))
    return rows, cols, nnz


def default_project(k: int, basis: str = "sherali-adams") -> bool:
    """Eliminate the private top-degree moments by default at levels 2 and 3 (fewer rows and far
    fewer columns); at level ≥ 4 the eliminated system has more rows than it saves."""
    return basis == "sherali-adams" and k in (2, 3)


def estimate_lp_size(
    cs: CliqueStructure,
    k: int,
    basis: str = "sherali-adams",
    *,
    project: bool | None = None,
    poly: Polynomial | None = None,
) -> Size:
    """Rows (``constraints``), columns (``variables``), non-zeros and estimated peak bytes of
    :func:`build_lp`, before building.

    Exact for Sherali–Adams on a clique tree (with ``project``, pass ``poly`` to count the
    degree-``k`` objective monomials whose moments stay); for the Krivine basis ``nonzeros``
    counts expansion terms before equal monomials of a row are merged (an upper bound).
    """
    if basis not in BASES:
        raise LipoptError(f"unknown LP basis {basis!r}; choose one of: {', '.join(BASES)}")
    project = default_project(k, basis) if project is None else bool(project)
    sizes = [(len(c), len(cs.separator(i))) for i, c in enumerate(cs.cliques)]
    rows = cols = nnz = 0
    if basis == "sherali-adams" and project and k >= 2:
        rows, cols, nnz = _sa_counts(sizes, k - 1)
        n_top = sum(comb(m, k) - comb(s, k) for m, s in sizes if m >= k)
        top = 0 if poly is None else int(np.count_nonzero(poly.reduce_binary().degrees == k))
        keep = min(top, n_top)
        pair = _pair_template(k)
        pr, pz = len(pair), int(np.count_nonzero(pair[:, 1:]))
        rows += (n_top - keep) * pr + keep * (1 << k)
        nnz += (n_top - keep) * pz + keep * (3**k - 1)
        cols += keep
    elif basis == "sherali-adams":
        rows, cols, nnz = _sa_counts(sizes, k)
    else:
        for m, s in sizes:
            rows += _multichoose(2 * m, k) - _multichoose(2 * s, k)
            # generators with j factors (1 − u) expand to 2^j terms, one of them constant if j = k
            for mm, sign in ((m, 1), (s, -1)):
                terms = sum(_multichoose(mm, k - j) * _multichoose(mm, j) << j for j in range(k + 1))
                nnz += sign * (terms - _multichoose(mm, k))
            cols += sum(_multichoose(m, r) - _multichoose(s, r) for r in range(1, k + 1))
    est_bytes = BYTES_PER_NNZ * nnz + BYTES_PER_VECTOR_ENTRY * (rows + cols)
    return Size(variables=int(cols), constraints=int(rows), nonzeros=int(nnz), cliques=cs.n_cliques,
                largest_clique=cs.max_clique, memory_bytes=int(est_bytes))


def check_lp_size(est: Size, k: int, basis: str, max_bytes: float) -> None:
    """Refuse (LipoptError) an LP whose estimate :func:`estimate_lp_size` exceeds ``max_bytes``."""
    if est.memory_bytes > max_bytes:
        raise LipoptError(
            f"the level-{k} LP ({basis}) would need about {est.memory_bytes / 1e9:.2f} GB "
            f"({est.constraints:,} rows, {est.variables:,} columns, {est.nonzeros:,} non-zeros; "
            f"largest clique {est.largest_clique}), above the memory budget of {max_bytes / 1e9:.2f} GB; "
            "lower the level, use a sparser clique method (min-degree or min-fill rather than "
            "dense), or raise --max-memory"
        )


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------
def _check_inputs(poly: Polynomial, cs: CliqueStructure, k: int, basis: str) -> None:
    if basis not in BASES:
        raise LipoptError(f"unknown LP basis {basis!r}; choose one of: {', '.join(BASES)}")
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise LipoptError(f"the LP level must be a positive integer, got {k!r}")
    if poly.degree > k:
        raise LipoptError(
            f"level k={k} is below the polynomial degree {poly.degree}: the relaxation could not "
            f"represent every monomial; use a level ≥ {poly.degree}"
        )
    if poly.n_vars != cs.n_vars:
        raise LipoptError(
            f"the polynomial has {poly.n_vars} variables but the clique structure has "
            f"{cs.n_vars}; build the cliques from this polynomial"
        )
    if not np.all(np.isfinite(poly.coef)):
        raise LipoptError("the polynomial has NaN or infinite coefficients")


def build_lp(
    pop_poly: Polynomial,
    cs: CliqueStructure,
    k: int,
    *,
    max_bytes: float = 4e9,
    basis: str = "sherali-adams",
    project: bool | None = None,
) -> LPRelaxation:
    """Level-``k`` LP relaxation of ``max pop_poly(u)`` over ``{0,1}^n`` on the cliques ``cs``.

    ``project`` (Sherali–Adams only; default :func:`default_project`) eliminates the private
    top-degree moments exactly (same optimal value, see the module docstring).
    Raises :class:`LipoptError` if ``k`` is below the degree, a monomial lies in no clique, or
    the estimated memory exceeds ``max_bytes``.
    """
    t0 = time.perf_counter()
    _check_inputs(pop_poly, cs, k, basis)
    k = int(k)
    poly = pop_poly.reduce_binary() if basis == "sherali-adams" else pop_poly
    assign_monomials(cs, poly)  # raises if a monomial is in no clique
    if project and basis != "sherali-adams":
        raise LipoptError(
            f"project=True eliminates Sherali–Adams moments; it does not apply to the {basis} basis"
        )
    project = default_project(k, basis) if project is None else bool(project)
    project = project and basis == "sherali-adams" and k >= 2
    check_lp_size(estimate_lp_size(cs, k, basis, project=project, poly=poly), k, basis, max_bytes)
    codec = Codec(cs.n_vars, k)
    nonconst = np.flatnonzero(poly.degrees > 0)
    mkeys = codec.rows(poly.supports[nonconst])
    if basis == "sherali-adams":
        A, a0, keys = _build_sa(cs, k, codec, project, mkeys)
    else:
        A, a0, keys = _build_krivine(cs, k, codec)
    # objective over the columns
    pos = np.clip(np.searchsorted(keys, mkeys), 0, max(len(keys) - 1, 0))
    if len(mkeys) and (len(keys) == 0 or np.any(keys[pos] != mkeys)):
        raise LipoptError("internal error: a monomial of the objective has no moment column")
    c = np.bincount(pos, weights=poly.coef[nonconst], minlength=len(keys)).astype(float)
    return LPRelaxation(A, a0, c, float(poly.constant_term), codec.decode(keys), k, basis, cs.n_vars,
                        cs, bool(project), time.perf_counter() - t0)


def _build_sa(
    cs: CliqueStructure, k: int, codec: Codec, project: bool, objective_keys: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Sherali–Adams rows on the clique tree (with the top moments projected out if asked)."""
    seps = [cs.separator(i) for i in range(cs.n_cliques)]
    if not project:
        sets = sa_sets(cs.cliques, seps, k, codec)
        return tile_rows([(U, sa_template(u)) for u, U in sets.items()], codec)
    blocks = [(U, sa_template(u)) for u, U in sa_sets(cs.cliques, seps, k - 1, codec).items()]
    top = sa_sets(cs.cliques, seps, k, codec).get(k)
    if top is not None and len(top):
        in_obj = np.isin(codec.encode([top[:, j] for j in range(k)], len(top)), objective_keys)
        blocks += [(top[~in_obj], _pair_template(k)), (top[in_obj], sa_template(k))]
    return tile_rows(blocks, codec)


def _build_krivine(
    cs: CliqueStructure, k: int, codec: Codec
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Krivine/Handelman rows: products of ``k`` factors ``u_i`` / ``(1 − u_i)`` per clique."""
    row_parts, key_parts, val_parts, const_rows = [], [], [], []
    n_rows = 0
    for i, clique in enumerate(cs.cliques):
        in_sep = np.isin(clique, cs.separator(i), assume_unique=True)
        # factor codes 2·pos + type (type 1 = (1 − u)); at least one factor outside the separator
        P = np.flatnonzero(np.repeat(~in_sep, 2))
        Q = np.flatnonzero(np.repeat(in_sep, 2))
        blocks = [
            product_rows(P[_multisets(len(P), j)], Q[_multisets(len(Q), k - j)])
            for j in range(1, k + 1)
            if len(P) and (k - j == 0 or len(Q))
        ]
        if not blocks or len(clique) == 0:
            continue
        G = np.sort(np.vstack(blocks), axis=1)
        typ = G & 1
        var = clique[G >> 1]
        zero_mask = (typ == 0).astype(np.int64) @ (1 << np.arange(k, dtype=np.int64))
        gid = np.arange(len(G), dtype=np.int64) + n_rows
        for rho in range(1 << k):
            ok = (zero_mask & rho) == 0
            if not ok.any():
                continue
            sel = (typ[ok] == 0) | (((rho >> np.arange(k)) & 1) == 1)[None, :]
            digits = np.sort(np.where(sel, var[ok] + 1, 0), axis=1)
            is_const = ~sel.any(axis=1)
            const_rows.append(gid[ok][is_const])
            keep = ~is_const
            row_parts.append(gid[ok][keep])
            key_parts.append(codec.encode_padded(digits[keep]))
            val_parts.append(np.full(int(keep.sum()), -1.0 if popcount(rho) % 2 else 1.0))
        n_rows += len(G)
    if not key_parts:
        return sp.csr_matrix((0, 0)), np.zeros(0), np.zeros(0, dtype=np.int64)
    keys, inverse = np.unique(np.concatenate(key_parts), return_inverse=True)
    A = sp.csr_matrix(
        (np.concatenate(val_parts), (np.concatenate(row_parts), inverse.ravel())),
        shape=(n_rows, len(keys)),
    )
    A.sum_duplicates()
    a0 = np.bincount(np.concatenate(const_rows), minlength=n_rows).astype(float)
    return A, a0, keys
