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
:mod:`lipopt.solvers.certify`, which turns *any* multipliers into a rigorous bound.

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

Construction is vectorized per clique (numpy combinations, bitmask splits, inclusion–exclusion
templates); a moment ``{a_1 < … < a_r}`` is encoded as the base-``(n+1)`` integer
``Σ (a_i + 1)(n+1)^{r−i}`` (two int64 words when that overflows) and columns come from one
global ``np.unique``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..graph import CliqueStructure, assign_monomials
from ..polynomial import PAD, Polynomial

BASES = ("sherali-adams", "krivine")
#: memory model of :func:`estimate_lp_size` (bytes), calibrated on peak RSS of build + HiGHS IPM
#: (dense 80-80-1 level 3: 6.1 M non-zeros, 1.39 M rows + columns, 0.91 GB): CSR storage, the
#: solver's copies and factor work, build temporaries (int64 keys)
BYTES_PER_NNZ = 100
#: per row or column: bounds, costs, duals, primal values, solver work vectors
BYTES_PER_VECTOR_ENTRY = 250
_INT_LIMIT = 1 << 62


# ---------------------------------------------------------------------------------------------
# Combinatorics
# ---------------------------------------------------------------------------------------------
def _comb(n: int, r: int) -> int:
    return math.comb(n, r) if 0 <= r <= n else 0


def _multichoose(n: int, r: int) -> int:
    """Number of multisets of size ``r`` from ``n`` items."""
    if r == 0:
        return 1
    return math.comb(n + r - 1, r) if n > 0 else 0


def _combinations(m: int, r: int) -> np.ndarray:
    """All ``r``-subsets of ``range(m)``, lexicographic, as an ``(C(m, r), r)`` int64 array."""
    if r == 0:
        return np.zeros((1, 0), dtype=np.int64)
    if r > m:
        return np.zeros((0, r), dtype=np.int64)
    cur = np.arange(m - r + 1, dtype=np.int64)[:, None]
    for j in range(1, r):
        last = cur[:, -1]
        counts = (m - r + j) - last  # next element ranges over last+1 … m−r+j
        rep = np.repeat(np.arange(len(cur)), counts)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        cur = np.column_stack([cur[rep], np.repeat(last + 1, counts) + within])
    return cur


def _multisets(m: int, r: int) -> np.ndarray:
    """All size-``r`` multisets of ``range(m)`` as non-decreasing rows."""
    if r == 0:
        return np.zeros((1, 0), dtype=np.int64)
    if m == 0:
        return np.zeros((0, r), dtype=np.int64)
    return _combinations(m + r - 1, r) - np.arange(r, dtype=np.int64)


def _product_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Every row of ``a`` next to every row of ``b``."""
    return np.hstack([np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1))])


def _popcount(x: int) -> int:
    return bin(x).count("1")


# ---------------------------------------------------------------------------------------------
# Moment keys
# ---------------------------------------------------------------------------------------------
class _Codec:
    """Sorted index tuples of length ≤ ``width`` over ``n`` variables ↔ sortable keys.

    Digits are ``index + 1`` (0 = padding); the key is the base-``(n+1)`` number of the
    left-padded digit row: one int64, or a ``(hi, lo)`` record when ``(n+1)^width ≥ 2^62``.
    """

    WIDE = np.dtype([("h", np.int64), ("l", np.int64)])

    def __init__(self, n_vars: int, width: int):
        self.base = n_vars + 1
        self.width = width
        self.wide = self.base**width >= _INT_LIMIT
        self.split = width // 2
        if self.wide and self.base ** (width - self.split) >= _INT_LIMIT:
            raise LipoptError(
                f"level {width} over {n_vars} variables is too large to index moments; use a "
                "lower level (2–4 are the useful ones) or a local domain with fewer free neurons"
            )

    def encode(self, cols: list[np.ndarray], n: int) -> np.ndarray:
        """Keys of the tuples whose ascending entries are the arrays ``cols`` (all length n)."""
        if not self.wide:
            key = np.zeros(n, dtype=np.int64)
            for c in cols:
                key = key * self.base + (c + 1)
            return key
        digits = [np.zeros(n, dtype=np.int64)] * (self.width - len(cols)) + [c + 1 for c in cols]
        out = np.zeros(n, dtype=self.WIDE)
        h = np.zeros(n, dtype=np.int64)
        for d in digits[: self.split]:
            h = h * self.base + d
        lo = np.zeros(n, dtype=np.int64)
        for d in digits[self.split :]:
            lo = lo * self.base + d
        out["h"], out["l"] = h, lo
        return out

    def encode_padded(self, digits: np.ndarray) -> np.ndarray:
        """Keys of left-padded digit rows (``(N, width)``, 0 = padding, else index + 1)."""
        cols = [digits[:, j] - 1 for j in range(digits.shape[1])]
        if not self.wide:
            key = np.zeros(len(digits), dtype=np.int64)
            for d in cols:
                key = key * self.base + (d + 1)
            return key
        pad = self.width - digits.shape[1]
        full = np.hstack([np.zeros((len(digits), pad), dtype=np.int64), digits])
        out = np.zeros(len(digits), dtype=self.WIDE)
        h = np.zeros(len(digits), dtype=np.int64)
        for j in range(self.split):
            h = h * self.base + full[:, j]
        lo = np.zeros(len(digits), dtype=np.int64)
        for j in range(self.split, self.width):
            lo = lo * self.base + full[:, j]
        out["h"], out["l"] = h, lo
        return out

    def decode(self, keys: np.ndarray) -> np.ndarray:
        """Padded int32 supports (``PAD`` = −1 on the left) of ``keys``."""
        out = np.zeros((len(keys), self.width), dtype=np.int64)
        if not self.wide:
            k = keys.astype(np.int64).copy()
            for j in range(self.width - 1, -1, -1):
                k, out[:, j] = np.divmod(k, self.base)
        else:
            h, lo = keys["h"].copy(), keys["l"].copy()
            for j in range(self.width - 1, self.split - 1, -1):
                lo, out[:, j] = np.divmod(lo, self.base)
            for j in range(self.split - 1, -1, -1):
                h, out[:, j] = np.divmod(h, self.base)
        return (out - 1).astype(np.int32)


def _monomial_keys(poly: Polynomial, codec: _Codec) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the non-constant monomials of ``poly`` and their row indices."""
    s = np.asarray(poly.supports, dtype=np.int64)
    nonconst = np.flatnonzero((s != PAD).any(axis=1))
    digits = np.where(s[nonconst] == PAD, 0, s[nonconst] + 1)
    return codec.encode_padded(digits), nonconst


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
@dataclass
class LPRelaxation:
    """``max c0 + cᵀy`` s.t. ``A y + a0 ≥ 0``, ``0 ≤ y ≤ 1``; column ``j`` is the moment of the
    variables ``moments[j]`` (padded like :attr:`Polynomial.supports`; repeated indices are
    powers in the Krivine basis). Row ``r`` is the expansion of a product
    ``q_r(u) = Π_S u Π_T (1 − u) = a0[r] + Σ_j A[r, j] u^{moments[j]}``.
    """

    A: sp.csr_matrix
    a0: np.ndarray
    c: np.ndarray
    c0: float
    moments: np.ndarray
    level: int
    basis: str
    n_vars: int
    cliques: dict = field(default_factory=dict)
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

    @property
    def bytes(self) -> int:
        """Memory of the stored arrays (the solver needs a few times more, see the estimate)."""
        A = self.A
        return int(
            A.data.nbytes + A.indices.nbytes + A.indptr.nbytes + self.a0.nbytes + self.c.nbytes
            + self.moments.nbytes
        )

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "basis": self.basis,
            "projected": bool(self.cliques.get("projected", False)),
            "n_vars": self.n_vars,
            "rows": self.rows,
            "cols": self.cols,
            "nnz": self.nnz,
            "bytes": self.bytes,
            "build_time_s": self.build_time_s,
            "n_cliques": self.cliques.get("n_cliques"),
            "max_clique": self.cliques.get("max_clique"),
            "clique_method": self.cliques.get("method"),
        }


# ---------------------------------------------------------------------------------------------
# Row templates
# ---------------------------------------------------------------------------------------------
def _sa_template(u: int) -> np.ndarray:
    """``T[σ, μ]``: coefficient of ``u^{U[μ]}`` in ``q_{U[σ], U∖U[σ]}`` (masks over the ``u``
    positions of a set ``U``): ``(−1)^{|μ∖σ|}`` if ``σ ⊆ μ``, else 0. Column 0 is ``a0``."""
    mu = np.arange(1 << u)
    sig = mu[:, None]
    inside = (sig & mu[None, :]) == sig
    parity = np.array([_popcount(x) for x in range(1 << u)])
    sign = np.where(parity[mu[None, :] & ~sig] % 2 == 1, -1.0, 1.0)
    return np.where(inside, sign, 0.0)


def _pair_template(u: int) -> np.ndarray:
    """Rows ``q_P + q_N`` for splits ``P`` (``|T|`` even) and ``N`` (``|T|`` odd) of ``U`` that
    differ in ≥ 3 positions: the Fourier–Motzkin combinations that eliminate ``y_U`` and are
    not Sherali–Adams rows of a smaller set (module docstring). Column ``2^u − 1`` is 0."""
    T = _sa_template(u)
    odd_t = np.array([(u - _popcount(s)) % 2 for s in range(1 << u)])
    P, N = np.flatnonzero(odd_t == 0), np.flatnonzero(odd_t == 1)
    pairs = [(a, b) for a in P for b in N if _popcount(int(a) ^ int(b)) >= 3]
    if not pairs:
        return np.zeros((0, 1 << u))
    out = np.array([T[a] + T[b] for a, b in pairs])
    assert np.all(out[:, -1] == 0)
    return out


def _template_counts(T: np.ndarray) -> tuple[int, int]:
    """(rows, non-zeros over the moment columns μ ≥ 1) of a template."""
    return int(T.shape[0]), int(np.count_nonzero(T[:, 1:]))


# ---------------------------------------------------------------------------------------------
# Size estimate
# ---------------------------------------------------------------------------------------------
def _clique_sizes(cs: CliqueStructure) -> list[tuple[int, int]]:
    """``(|C_i|, |C_i ∩ C_parent(i)|)`` per clique."""
    return [(len(c), len(cs.separator(i))) for i, c in enumerate(cs.cliques)]


def _sa_counts(sizes: list[tuple[int, int]], k: int) -> tuple[int, int, int]:
    rows = cols = nnz = 0
    for m, s in sizes:
        u = min(k, m)
        n_sets = _comb(m, u) - _comb(s, u)
        rows += n_sets << u
        nnz += n_sets * (3**u - 1)
        cols += sum(_comb(m, r) - _comb(s, r) for r in range(1, u + 1))
    return rows, cols, nnz


def _top_monomials(poly: Polynomial | None, k: int) -> int:
    if poly is None:
        return 0
    return int(np.count_nonzero(poly.reduce_binary().degrees == k))


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
) -> dict:
    """Rows, columns, non-zeros and estimated peak bytes of :func:`build_lp`, before building.

    Exact for Sherali–Adams on a clique tree (with ``project``, pass ``poly`` to count the
    degree-``k`` objective monomials whose moments stay); for the Krivine basis ``nnz`` counts
    expansion terms before equal monomials of a row are merged (an upper bound).
    """
    if basis not in BASES:
        raise LipoptError(f"unknown LP basis {basis!r}; choose one of: {', '.join(BASES)}")
    project = default_project(k, basis) if project is None else bool(project)
    sizes = _clique_sizes(cs)
    rows = cols = nnz = 0
    if basis == "sherali-adams" and project and k >= 2:
        rows, cols, nnz = _sa_counts(sizes, k - 1)
        n_top = sum(_comb(m, k) - _comb(s, k) for m, s in sizes if m >= k)
        keep = min(_top_monomials(poly, k), n_top)
        pr, pz = _template_counts(_pair_template(k))
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
    return {"rows": int(rows), "cols": int(cols), "nnz": int(nnz), "bytes": int(est_bytes)}


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------
def _sa_sets(clique: np.ndarray, in_sep: np.ndarray, u: int) -> np.ndarray:
    """All ``u``-subsets of ``clique`` (rows of variables, ascending) not inside the separator."""
    P, Q = np.flatnonzero(~in_sep), np.flatnonzero(in_sep)
    blocks = []
    for j in range(1, min(u, len(P)) + 1):
        if u - j > len(Q):
            continue
        blocks.append(_product_rows(P[_combinations(len(P), j)], Q[_combinations(len(Q), u - j)]))
    if not blocks:
        return np.zeros((0, u), dtype=np.int64)
    pos = np.sort(np.vstack(blocks), axis=1)
    return clique[pos]


def _all_sets(cs: CliqueStructure, k: int, codec: _Codec) -> dict[int, np.ndarray]:
    """The sets ``U`` of level ``k`` grouped by size, deduplicated (safety net for inputs whose
    ``parent`` is not a clique tree)."""
    groups: dict[int, list[np.ndarray]] = {}
    for clique, in_sep in zip(cs.cliques, _separator_masks(cs), strict=True):
        u = min(k, len(clique))
        if u > 0:
            groups.setdefault(u, []).append(_sa_sets(clique, in_sep, u))
    out = {}
    for u, blocks in sorted(groups.items()):
        U = np.vstack(blocks)
        _, first = np.unique(_set_keys(U, codec), return_index=True)
        out[u] = U[np.sort(first)]
    return out


def _set_keys(U: np.ndarray, codec: _Codec) -> np.ndarray:
    return codec.encode([U[:, j] for j in range(U.shape[1])], len(U))


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


def _separator_masks(cs: CliqueStructure) -> list[np.ndarray]:
    return [np.isin(c, cs.separator(i), assume_unique=True) for i, c in enumerate(cs.cliques)]


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
    import time

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
    est = estimate_lp_size(cs, k, basis, project=project, poly=poly)
    if est["bytes"] > max_bytes:
        raise LipoptError(
            f"the level-{k} LP ({basis}) would need about {est['bytes'] / 1e9:.2f} GB "
            f"({est['rows']:,} rows, {est['cols']:,} columns, {est['nnz']:,} non-zeros; largest "
            f"clique {cs.max_clique}), above the memory budget of {max_bytes / 1e9:.2f} GB; "
            "lower the degree, use a sparser clique method (min-degree or min-fill rather than "
            "dense), or raise --max-memory"
        )
    codec = _Codec(cs.n_vars, k)
    mkeys, mrows = _monomial_keys(poly, codec)
    if basis == "sherali-adams":
        A, a0, keys = _build_sa(cs, k, codec, project, mkeys)
    else:
        A, a0, keys = _build_krivine(cs, k, codec)
    # objective over the columns
    pos = np.clip(np.searchsorted(keys, mkeys), 0, max(len(keys) - 1, 0))
    if len(mkeys) and (len(keys) == 0 or np.any(keys[pos] != mkeys)):
        raise LipoptError("internal error: a monomial of the objective has no moment column")
    c = np.bincount(pos, weights=poly.coef[mrows], minlength=len(keys)).astype(float)
    c0 = float(poly.constant_term)
    moments = codec.decode(keys)
    sizes = cs.sizes
    info = {"n_cliques": int(cs.n_cliques), "max_clique": int(cs.max_clique),
            "method": cs.method, "mean_size": float(sizes.mean()) if len(sizes) else 0.0,
            "projected": bool(project)}
    return LPRelaxation(
        A, a0, c, c0, moments, k, basis, cs.n_vars, info, time.perf_counter() - t0
    )


def _build_sa(
    cs: CliqueStructure, k: int, codec: _Codec, project: bool, objective_keys: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Sherali–Adams rows for all cliques; returns ``A`` (CSR), ``a0`` and sorted column keys.

    Every block is a set family ``U`` (``nU × u``) with a row template ``T`` over the subset
    masks of ``U``; moments of the masks are keyed, one global ``np.unique`` gives the columns,
    and the CSR arrays are tiled from the template (no loop over rows).
    """
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    if project:
        for u, U in _all_sets(cs, k - 1, codec).items():
            blocks.append((U, _sa_template(u)))
        top = _all_sets(cs, k, codec).get(k)
        if top is not None and len(top):
            in_obj = np.isin(_set_keys(top, codec), objective_keys)
            blocks.append((top[~in_obj], _pair_template(k)))
            blocks.append((top[in_obj], _sa_template(k)))
    else:
        for u, U in _all_sets(cs, k, codec).items():
            blocks.append((U, _sa_template(u)))
    blocks = [(U, T) for U, T in blocks if len(U) and len(T)]
    if not blocks:
        return sp.csr_matrix((0, 0)), np.zeros(0), np.zeros(0, dtype=np.int64)
    # moment keys of the masks each template uses
    all_keys, used_masks = [], []
    for U, T in blocks:
        u = U.shape[1]
        masks = np.flatnonzero(np.any(T[:, 1:] != 0, axis=0)) + 1
        used_masks.append(masks)
        K = [codec.encode([U[:, j] for j in range(u) if (mu >> j) & 1], len(U)) for mu in masks]
        all_keys.append(np.stack(K, axis=1).ravel())
    keys, inverse = np.unique(np.concatenate(all_keys), return_inverse=True)
    inverse = inverse.ravel().astype(np.int32 if len(keys) < 2**31 else np.int64)
    data, indices, counts, a0 = [], [], [], []
    offset = 0
    for (U, T), masks in zip(blocks, used_masks, strict=True):
        nU, nm = len(U), len(masks)
        colid = inverse[offset : offset + nU * nm].reshape(nU, nm)
        offset += nU * nm
        where = np.full(T.shape[1], -1)
        where[masks] = np.arange(nm)
        r, mu = np.nonzero(T[:, 1:])
        mu = mu + 1
        data.append(np.tile(T[r, mu], nU))
        indices.append(colid[:, where[mu]].ravel())
        counts.append(np.tile(np.bincount(r, minlength=T.shape[0]), nU))
        a0.append(np.tile(T[:, 0], nU))
    counts_all = np.concatenate(counts)
    indptr = np.zeros(len(counts_all) + 1, dtype=np.int64)
    np.cumsum(counts_all, out=indptr[1:])
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    A = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), indptr),
        shape=(len(counts_all), len(keys)),
    )
    return A, np.concatenate(a0), keys


def _build_krivine(
    cs: CliqueStructure, k: int, codec: _Codec
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Krivine/Handelman rows: products of ``k`` factors ``u_i`` / ``(1 − u_i)`` per clique."""
    row_parts, key_parts, val_parts, const_rows = [], [], [], []
    n_rows = 0
    for clique, in_sep in zip(cs.cliques, _separator_masks(cs), strict=True):
        m = len(clique)
        # factor codes 2·pos + type (type 1 = (1 − u)); at least one factor outside the separator
        P = np.flatnonzero(np.repeat(~in_sep, 2))
        Q = np.flatnonzero(np.repeat(in_sep, 2))
        blocks = [
            _product_rows(P[_multisets(len(P), j)], Q[_multisets(len(Q), k - j)])
            for j in range(1, k + 1)
            if len(P) and (k - j == 0 or len(Q))
        ]
        if not blocks or m == 0:
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
            sign = -1.0 if _popcount(rho) % 2 else 1.0
            is_const = ~sel.any(axis=1)
            const_rows.append(gid[ok][is_const])
            keep = ~is_const
            row_parts.append(gid[ok][keep])
            key_parts.append(codec.encode_padded(digits[keep]))
            val_parts.append(np.full(int(keep.sum()), sign))
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
