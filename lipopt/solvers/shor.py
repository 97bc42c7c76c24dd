r"""Shor relaxation of ±1 quadratic programs: a fast low-rank solver and float-safe certificates.

The problem solved here is the semidefinite program

.. math::

    \mathrm{SDP}(C) \;=\; \max_X \; \langle C, X\rangle
    \quad\text{s.t.}\quad \operatorname{diag}(X) = \mathbf 1,\; X \succeq 0,

the first-order (Shor) relaxation of :math:`\max_{x\in\{\pm1\}^n} x^\top C x`
(take :math:`X = xx^\top`). Its dual is :math:`\min_y \sum_i y_i` s.t.
:math:`\operatorname{Diag}(y) - C \succeq 0`.

Certificates (:func:`certify_shor_dual`)
    For *any* :math:`y \in \mathbb R^n` and any feasible :math:`X` (so
    :math:`\operatorname{tr} X = n`, :math:`X \succeq 0`), with
    :math:`M = \operatorname{Diag}(y) - C`,

    .. math::

        \langle C, X\rangle = \sum_i y_i - \langle M, X\rangle
        \le \sum_i y_i - n\,\lambda_{\min}(M),

    because :math:`\langle M, X\rangle \ge \lambda_{\min}(M)\operatorname{tr}X`. This is weak
    duality with :math:`y` shifted by :math:`\lambda_{\min}` so that the slack becomes PSD; it is
    valid for every :math:`y`, so a solver that stops early still yields a valid (looser) bound.
    It is never looser than :math:`\sum_i y_i + n\max(0, -\lambda_{\min}(M))`. The
    floating-point evaluation is made rigorous as described in :func:`certify_shor_dual`.

Solver (:func:`solve_shor_mixing`)
    Burer–Monteiro factorisation :math:`X = VV^\top`, :math:`V \in \mathbb R^{n\times k}` with unit
    rows and :math:`k = \lceil\sqrt{2n}\rceil + 1` (enough for every second-order stationary point
    to be optimal for generic :math:`C`, Boumal–Voroninski–Bandeira 2016), optimised by the *mixing
    method* (Wang, Chang & Kolter 2017): block coordinate ascent

    .. math::

        v_i \leftarrow g_i / \lVert g_i\rVert, \qquad g_i = \sum_{j\ne i} C_{ij} v_j,

    accelerated by successive over-relaxation (:math:`v_i \leftarrow \operatorname{normalize}(
    \omega\, g_i/\lVert g_i\rVert + (1-\omega) v_i)`, :math:`\omega = 1.8` after ten plain
    sweeps, damped whenever a sweep decreases the objective), which on the ill-conditioned
    instances coming from networks cuts the number of sweeps 5–10×. The dual
    multipliers are read off the first-order conditions :math:`CV = \operatorname{Diag}(y)V`, i.e.
    :math:`y = \operatorname{diag}(CVV^\top)`, and certified as above.

Binary problems (:func:`shor_from_binary_quadratic`)
    :math:`\max_{u\in\{0,1\}^n} u^\top Q u + q^\top u + c` is rewritten exactly as a homogeneous ±1
    quadratic form of size :math:`n+1`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..floats import EIG_ERROR_CONSTANT, EPS, padded_fsum

__all__ = [
    "ShorResult",
    "blas_threads",
    "certify_shor_dual",
    "default_rank",
    "shor_from_binary_quadratic",
    "solve_binary_quadratic_shor",
    "solve_shor_mixing",
]

#: Over-relaxation factor used after the plain warm-up sweeps. Measured (sweeps to a 1e-7 gap):
#: ω = 1, 1.6, 1.7, 1.8, 1.9 → 991, 306, 224, 134, 113 on the 401×401 network instance, 232, 64,
#: 43, 70, 118 on a 300×300 Gaussian C, 315, 91, 66, 65, 104 on a 400-node max-cut; only on an
#: easy rank-3 PSD C is ω = 1 better (20 vs 57 sweeps).
_DEFAULT_OMEGA = 1.8

Matrix = np.ndarray | sp.spmatrix | sp.sparray


@dataclass
class ShorResult:
    """Outcome of a Shor-SDP solve, with a float-safe upper bound.

    Attributes
    ----------
    primal_value:
        The solver's objective value :math:`\\langle C, X\\rangle` at its final iterate (not a
        bound: an approximately feasible point's value; a lower bound on SDP(C) for the mixing
        method, whose iterates are feasible up to rounding).
    certified_value:
        A rigorous upper bound on SDP(C) (hence on :math:`\\max_{x\\in\\{\\pm1\\}^n} x^\\top C x`),
        computed from ``dual_y`` by :func:`certify_shor_dual`; ``inf`` when no certificate exists.
    dual_y:
        The dual vector that was certified.
    lambda_min:
        Computed smallest eigenvalue of ``Diag(dual_y) − C`` (before the rigour margin).
    iterations:
        Sweeps (mixing) or solver iterations (conic back ends).
    time_s:
        Wall-clock time including certification.
    status:
        ``"optimal"`` (gap ``certified − primal`` within tolerance), ``"iteration_limit"``,
        ``"time_limit"``; the conic back ends may also report ``"inaccurate"`` or ``"error"``.
    certified:
        True when ``certified_value`` is a finite certified bound. It is valid whatever the
        status; an early stop only makes it looser.
    solver:
        Name of the method that produced the result.
    factor:
        The low-rank factor ``V`` (``X = V Vᵀ``) when available (mixing method), for rounding.
    """

    primal_value: float
    certified_value: float
    dual_y: np.ndarray
    lambda_min: float
    iterations: int
    time_s: float
    status: str
    certified: bool
    solver: str = "mixing"
    factor: np.ndarray | None = field(default=None, repr=False)

    @property
    def gap(self) -> float:
        """``certified_value − primal_value`` (≥ 0 up to the solver's accuracy)."""
        return self.certified_value - self.primal_value


# --------------------------------------------------------------------------------------------
# certificates
# --------------------------------------------------------------------------------------------


def _as_dense_symmetric(C: Matrix) -> tuple[np.ndarray, float]:
    """Return ``(Cs, err)``: a symmetric float64 copy of ``C`` and a bound on the change.

    ``<C, X> = <(C + Cᵀ)/2, X>`` for symmetric X. When ``C`` is not exactly symmetric the average
    is rounded; since ``|X_ij| ≤ 1`` for feasible X, ``|<Cs − (C+Cᵀ)/2, X>| ≤ eps·Σ|Cs_ij| = err``.
    """
    Cd = C.toarray() if sp.issparse(C) else np.asarray(C)
    Cd = np.array(Cd, dtype=np.float64, copy=True)
    if Cd.ndim != 2 or Cd.shape[0] != Cd.shape[1]:
        raise LipoptError(f"C must be a square matrix, got shape {Cd.shape}")
    if not np.all(np.isfinite(Cd)):
        raise LipoptError("C has non-finite entries")
    if np.array_equal(Cd, Cd.T):
        return Cd, 0.0
    Cs = 0.5 * (Cd + Cd.T)
    return Cs, EPS * float(np.abs(Cs).sum()) * (1.0 + 1e-6)


def certify_shor_dual(C: Matrix, y: np.ndarray) -> tuple[float, float]:
    r"""Float-safe upper bound on :math:`\max\{\langle C,X\rangle : \operatorname{diag}X=1,
    X\succeq0\}` from any dual vector ``y``.

    :math:`\langle C,X\rangle \le \sum_i y_i - n\,\lambda_{\min}(\operatorname{Diag}(y)-C)`
    (weak duality, ``tr X = n``). Floating-point rigour, with ``eps = 2^-52``:

    * ``C`` is taken exactly as stored (a non-symmetric ``C`` is symmetrised and the rounding of
      the average bounded by ``eps·Σ|C_ij|``, using ``|X_ij| ≤ 1``).
    * ``M̂ = fl(Diag(y) − C)`` differs from the exact matrix only on the diagonal, by at most
      ``eps·max_i |M̂_ii|`` in spectral norm (Weyl).
    * ``numpy.linalg.eigvalsh`` (LAPACK ``syevd``) is backward stable: the computed eigenvalues are
      exact for ``M̂ + E`` with ``‖E‖₂ ≤ p(n)·eps·‖M̂‖₂`` (LAPACK Users' Guide §4.7, "p(n) a modestly
      growing function of n"). We take ``p(n) = 16·n``
      (:data:`lipopt.floats.EIG_ERROR_CONSTANT`), far above the observed errors, and
      ``‖M̂‖₂ ≤ ‖M̂‖_F``.
    * ``Σ y_i`` is summed with ``math.fsum`` (correctly rounded) and padded by ``n·eps·Σ|y_i|``;
      the final additions are padded by ``4·eps`` relative to the sum of magnitudes and rounded
      upwards (:func:`lipopt.floats.padded_fsum`).

    Returns ``(bound, lambda_min_computed)``; ``bound = inf`` if anything is non-finite.
    """
    bound, lam, _ = _certify(C, y)
    return bound, lam


def _certify(C: Matrix, y: np.ndarray) -> tuple[float, float, float]:
    """:func:`certify_shor_dual` plus the rigour padding ``bound − (Σy − n·λ̂)`` it added."""
    Cs, sym_err = _as_dense_symmetric(C)
    n = Cs.shape[0]
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != n:
        raise LipoptError(f"dual vector has length {y.shape[0]}, expected {n}")
    if n == 0:
        return 0.0, 0.0, 0.0
    if not np.all(np.isfinite(y)):
        return math.inf, math.nan, math.inf
    M = -Cs
    M[np.diag_indices(n)] += y
    try:
        lam = float(np.linalg.eigvalsh(M)[0])
    except np.linalg.LinAlgError:
        return math.inf, math.nan, math.inf
    if not math.isfinite(lam):
        return math.inf, lam, math.inf
    fro = float(np.linalg.norm(M)) * (1.0 + 1e-6)
    diag_err = 2.0 * EPS * float(np.max(np.abs(np.diag(M))))
    margin = EIG_ERROR_CONSTANT * n * EPS * fro + diag_err
    lam_low = lam - margin  # rigorous lower bound on λmin(Diag(y) − Cs)
    s = math.fsum(y.tolist())
    s_err = n * EPS * math.fsum(np.abs(y).tolist()) + EPS * abs(s)
    shift = -n * lam_low
    bound = padded_fsum((s, s_err, shift, sym_err))
    if not math.isfinite(bound):
        return math.inf, lam, math.inf
    return bound, lam, bound - (s - n * lam)


# --------------------------------------------------------------------------------------------
# binary quadratic → ±1 homogeneous form
# --------------------------------------------------------------------------------------------


def shor_from_binary_quadratic(
    Q: Matrix, q: np.ndarray | None = None, const: float = 0.0, *, return_error: bool = False
) -> tuple[Matrix, float] | tuple[Matrix, float, float]:
    r"""Homogeneous ±1 form of a {0,1} quadratic program.

    Given :math:`\max_{u\in\{0,1\}^n} u^\top Q u + q^\top u + c`, let :math:`Q_s = (Q+Q^\top)/2`,
    fold its diagonal into the linear term (:math:`u_i^2 = u_i`):
    :math:`q' = q + \operatorname{diag}(Q_s)`, :math:`Q' = Q_s - \operatorname{Diag}(Q_s)`, and
    substitute :math:`u_i = (1 + x_0 x_i)/2` with :math:`x \in\{\pm1\}^{n}`, :math:`x_0 = \pm1`
    (``(x_0, x)`` and ``(−x_0, −x)`` give the same ``u``, so nothing is lost). With row sums
    :math:`r = Q'\mathbf 1`:

    .. math::

        u^\top Q' u + q'^\top u + c = x^\top C x + \text{offset}, \qquad
        C_{ij} = \tfrac14 Q'_{ij}\ (i\ne j \le n),\quad
        C_{i,0} = C_{0,i} = \tfrac14 (r_i + q'_i),\quad C_{ii} = 0,

    :math:`\text{offset} = c + \tfrac14 \mathbf 1^\top Q'\mathbf 1 + \tfrac12 \mathbf 1^\top q'`.
    The homogenising variable :math:`x_0` is stored **last** (index ``n``) so that index ``i < n``
    keeps meaning ``u_i``.

    Returns ``(C, offset)``, ``C`` of size ``(n+1)×(n+1)`` (dense if ``Q`` is dense, CSR if sparse).
    With ``return_error=True`` returns ``(C, offset, err)``: ``err`` bounds the floating-point error
    of the construction, uniformly over ``u ∈ {0,1}^n`` and over feasible Shor matrices ``X``
    (``|X_ij| ≤ 1``): the exact objective and ``<C, X> + offset`` built from the stored numbers
    differ by at most ``err = 4(n+4)·eps·(Σ|Q_ij| + Σ|q_i| + |c|)``, ``eps = 2^-52``. (Symmetrising
    and folding the diagonal round each entry once; each row sum ``r_i`` has error
    ``≤ (n−1)·eps/2·Σ_j|Q'_ij|``; the offset uses correctly rounded ``math.fsum``; the factors 1/2
    and 1/4 are exact. The total is below ``(n+5)·eps·(…)``, padded ×4.)
    """
    sparse_in = sp.issparse(Q)
    if sparse_in:
        Qm = sp.csr_matrix(Q, dtype=np.float64)
    else:
        Qm = np.asarray(Q, dtype=np.float64)
    if Qm.ndim != 2 or Qm.shape[0] != Qm.shape[1]:
        raise LipoptError(f"Q must be square, got shape {Qm.shape}")
    n = Qm.shape[0]
    qv = np.zeros(n) if q is None else np.asarray(q, dtype=np.float64).reshape(-1)
    if qv.shape[0] != n:
        raise LipoptError(f"q has length {qv.shape[0]}, expected {n}")
    const = float(const)

    if sparse_in:
        Qs = ((Qm + Qm.T) * 0.5).tocsr()
        d = Qs.diagonal()
        Qo = (Qs - sp.diags(d)).tocsr()
        Qo.eliminate_zeros()
        r = np.asarray(Qo.sum(axis=1)).reshape(-1)
        total_q = math.fsum(Qo.data.tolist())
        abs_q = float(abs(Qm).sum())
    else:
        Qs = 0.5 * (Qm + Qm.T)
        d = np.diag(Qs).copy()
        Qo = Qs.copy()
        np.fill_diagonal(Qo, 0.0)
        r = Qo.sum(axis=1)
        total_q = math.fsum(Qo.ravel().tolist())
        abs_q = float(np.abs(Qm).sum())
    qp = qv + d
    edge = 0.25 * (r + qp)
    offset = math.fsum([const, 0.25 * total_q, 0.5 * math.fsum(qp.tolist())])

    if sparse_in:
        col = sp.csr_matrix(edge.reshape(-1, 1))
        C = sp.bmat([[0.25 * Qo, col], [col.T, None]], format="csr")
    else:
        C = np.zeros((n + 1, n + 1))
        C[:n, :n] = 0.25 * Qo
        C[:n, n] = edge
        C[n, :n] = edge
    if return_error:
        err = 4.0 * (n + 4) * EPS * (abs_q + float(np.abs(qv).sum()) + abs(const))
        return C, offset, err
    return C, offset


def solve_binary_quadratic_shor(
    Q: Matrix, q: np.ndarray | None = None, const: float = 0.0, **kwargs
) -> ShorResult:
    """Shor bound on ``max_{u∈{0,1}^n} uᵀQu + qᵀu + const`` (mixing method, certified).

    Builds the ±1 form with :func:`shor_from_binary_quadratic`, solves it with
    :func:`solve_shor_mixing` (``kwargs`` are passed on) and shifts both values by the offset;
    the certified value also absorbs the transformation's rounding bound and is rounded upwards.
    """
    C, offset, err = shor_from_binary_quadratic(Q, q, const, return_error=True)
    res = solve_shor_mixing(C, **kwargs)
    res.primal_value = res.primal_value + offset
    if res.certified:
        res.certified_value = padded_fsum((res.certified_value, offset, err))
    return res


# --------------------------------------------------------------------------------------------
# mixing method
# --------------------------------------------------------------------------------------------


def default_rank(n: int) -> int:
    """Burer–Monteiro rank ``k = ⌈√(2n)⌉ + 1`` (at most ``n``)."""
    return max(1, min(n, math.ceil(math.sqrt(2 * n)) + 1))


class _Rows:
    """Row access ``g_i = Σ_{j≠i} C_ij v_j`` for dense or CSR matrices with zero diagonal."""

    def __init__(self, C: Matrix):
        n = C.shape[0]
        self.n = n
        if sp.issparse(C) and (C.nnz < 0.15 * n * n):
            Cc = sp.csr_matrix(C, dtype=np.float64, copy=True)
            Cc.setdiag(0.0)
            Cc.eliminate_zeros()
            self.sparse = True
            self.C = Cc
            ptr, idx, dat = Cc.indptr, Cc.indices, Cc.data
            self.rows = [(idx[ptr[i] : ptr[i + 1]], dat[ptr[i] : ptr[i + 1]]) for i in range(n)]
        else:
            Cd = C.toarray() if sp.issparse(C) else np.array(C, dtype=np.float64, copy=True)
            np.fill_diagonal(Cd, 0.0)
            self.sparse = False
            self.C = Cd
            self.rows = list(Cd)

    def matmul(self, V: np.ndarray) -> np.ndarray:
        return np.asarray(self.C @ V)

    def sweep(self, V: np.ndarray, omega: float) -> None:
        """One Gauss–Seidel pass of (over-relaxed) mixing updates, in place."""
        Vr = list(V)  # row views
        sqrt = math.sqrt
        if self.sparse:
            for i, (idx, dat) in enumerate(self.rows):
                if idx.size == 0:
                    continue
                g = dat @ V[idx]
                self._update(Vr[i], g, omega, sqrt)
        else:
            for i, row in enumerate(self.rows):
                g = row @ V
                self._update(Vr[i], g, omega, sqrt)

    @staticmethod
    def _update(vi: np.ndarray, g: np.ndarray, omega: float, sqrt) -> None:
        nr = sqrt(g @ g)
        if nr == 0.0:
            return
        if omega == 1.0:
            np.multiply(g, 1.0 / nr, out=vi)
            return
        g *= omega / nr
        vi *= 1.0 - omega
        vi += g
        vi *= 1.0 / sqrt(vi @ vi)


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit the BLAS thread pool (via threadpoolctl, when installed) inside the block.

    The mixing method issues thousands of small BLAS calls (``401×30`` products, norms); with a
    multi-threaded OpenBLAS on a loaded 2-core machine these were measured 10–300× slower than
    single-threaded (a full n=401 solve: 0.2 s with 1 thread, 2.7–4.9 s with 2 threads while
    another process ran). ``limit=None`` leaves the pool alone.
    """
    if limit is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional dependency
        yield
        return
    with threadpool_limits(limits=int(limit), user_api="blas"):
        yield


def _normalize_rows(V: np.ndarray) -> np.ndarray:
    nr = np.linalg.norm(V, axis=1, keepdims=True)
    nr[nr == 0.0] = 1.0
    return V / nr


def solve_shor_mixing(
    C: Matrix,
    *,
    rank: int | None = None,
    tol: float = 1e-7,
    max_iter: int = 5000,
    seed: int = 0,
    time_limit: float | None = None,
    omega: float | None = None,
    V0: np.ndarray | None = None,
    blas_threads_limit: int | None = 1,
) -> ShorResult:
    r"""Solve :math:`\max\langle C,X\rangle` s.t. ``diag X = 1``, ``X ⪰ 0`` by the mixing method.

    Parameters
    ----------
    C:
        Symmetric ``n×n`` matrix (dense or scipy.sparse; non-symmetric input is symmetrised).
    rank:
        Factor width ``k``; default :func:`default_rank` ``= ⌈√(2n)⌉ + 1``.
    tol:
        Stop when the certified gap ``certified − primal ≤ tol·max(|primal|, |certified|)`` (or
        when it is down to the rounding margin of the certificate).
    max_iter:
        Maximum number of sweeps (one sweep updates every row once).
    seed:
        Seed of the random unit-row initial factor.
    time_limit:
        Wall-clock limit in seconds (checked after each sweep; certification runs afterwards).
    omega:
        Fixed over-relaxation factor in ``(0, 2)``; default: plain mixing (ω = 1) for ten sweeps,
        then ω = 1.8, shrunk towards 1 whenever a sweep decreases the objective.
    V0:
        Optional initial factor (``n×k``), e.g. for warm starts.
    blas_threads_limit:
        BLAS threads during the solve (default 1, see :func:`blas_threads`); ``None`` keeps the
        library default.

    Algorithm
    ---------
    Sweeps of :math:`v_i \leftarrow \mathrm{normalize}(\omega \hat g_i + (1-\omega) v_i)`,
    :math:`\hat g_i = g_i/\lVert g_i\rVert`, :math:`g_i = \sum_{j\ne i} C_{ij}v_j`. After each sweep
    the Riemannian gradient :math:`G = CV - \operatorname{Diag}(y)V`,
    :math:`y = \operatorname{diag}(CVV^\top)`, is formed with one matrix product; once
    :math:`\lVert G\rVert_F` is small relative to the objective the dual ``y`` is certified with
    :func:`certify_shor_dual` (one dense symmetric eigenvalue problem) and the run stops if the gap
    is within ``tol``; otherwise the gradient threshold is lowered. If the iteration stalls at a
    point whose certificate is not tight (a saddle of the factorised problem), the factor is
    widened by one column along the eigenvector of :math:`\lambda_{\min}(\operatorname{Diag}(y)-C)`
    (an ascent direction), at most three times. A final plain (monotone) mixing sweep polishes the
    iterate before the last certificate. The returned certified value is the best (smallest) of
    the certificates computed; each one is valid.

    Cost per sweep: ``O(nnz(C)·k)`` flops in a Python loop over rows (≈2 ms for ``n = 401``);
    certification: one ``eigvalsh`` of size ``n`` (≈8 ms for ``n = 401``).
    """
    with blas_threads(blas_threads_limit):
        return _solve_shor_mixing(C, rank, tol, max_iter, seed, time_limit, omega, V0)


def _solve_shor_mixing(
    C: Matrix,
    rank: int | None,
    tol: float,
    max_iter: int,
    seed: int,
    time_limit: float | None,
    omega: float | None,
    V0: np.ndarray | None,
) -> ShorResult:
    t0 = time.perf_counter()
    shape = C.shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise LipoptError(f"C must be a square matrix, got shape {shape}")
    n = shape[0]
    if n == 0:
        return ShorResult(0.0, 0.0, np.zeros(0), 0.0, 0, 0.0, "optimal", True, "mixing", None)
    if sp.issparse(C):
        Csym = sp.csr_matrix(C, dtype=np.float64)
        if (abs(Csym - Csym.T)).max() != 0:
            Csym = ((Csym + Csym.T) * 0.5).tocsr()
        diagC = Csym.diagonal()
    else:
        Csym = np.asarray(C, dtype=np.float64)
        if not np.array_equal(Csym, Csym.T):
            Csym = 0.5 * (Csym + Csym.T)
        diagC = np.diag(Csym).copy()
    if not np.all(np.isfinite(diagC)):
        raise LipoptError("C has non-finite entries")
    ops = _Rows(Csym)
    trace_c = float(diagC.sum())

    k = default_rank(n) if rank is None else int(rank)
    if k < 1:
        raise LipoptError(f"rank must be ≥ 1, got {rank}")
    if V0 is not None:
        V = _normalize_rows(np.array(V0, dtype=np.float64, copy=True))
        if V.shape[0] != n:
            raise LipoptError(f"V0 has {V.shape[0]} rows, expected {n}")
    else:
        rng = np.random.default_rng(seed)
        V = _normalize_rows(rng.standard_normal((n, k)))
    V = np.ascontiguousarray(V)

    best_cert, best_y, best_lam = math.inf, np.zeros(n), math.nan
    status = "iteration_limit"
    adaptive = omega is None
    w = 1.0 if adaptive else float(omega)
    if not 0.0 < w < 2.0:
        raise LipoptError(f"omega must be in (0, 2), got {omega}")
    warmup = 10
    f_prev = -math.inf
    grad_thr = max(tol, 1e-14)  # relative gradient norm that triggers a certificate
    escapes = 0
    stalls = 0
    it = 0
    primal = math.nan

    def certify(Vc: np.ndarray) -> tuple[bool, float]:
        """Certify the dual read off ``Vc``; keep the best bound; return (converged, gap)."""
        nonlocal best_cert, best_y, best_lam, primal
        CVc = ops.matmul(Vc)
        y0c = np.einsum("ij,ij->i", CVc, Vc)
        y = y0c + diagC
        cert, lam, slack = _certify(C, y)  # the original C: symmetrising rounds
        primal = float(y0c.sum() + trace_c)
        if cert < best_cert:
            best_cert, best_y, best_lam = cert, y, lam
        gap = best_cert - primal
        return gap <= tol * max(abs(primal), abs(best_cert)) + 2.0 * slack, gap

    while it < max_iter:
        V_old = V.copy()
        ops.sweep(V, w)
        it += 1
        CV = ops.matmul(V)
        y0 = np.einsum("ij,ij->i", CV, V)
        f = float(y0.sum())
        scale = max(abs(f + trace_c), float(np.abs(y0).sum()), 1e-300)
        gnorm = float(np.linalg.norm(CV - y0[:, None] * V)) / scale
        step = float(np.linalg.norm(V - V_old))
        if adaptive:
            if it == warmup:
                w = _DEFAULT_OMEGA
            elif it > warmup and f < f_prev - 1e-10 * scale and w > 1.0:
                w = 1.0 + 0.8 * (w - 1.0)  # over-relaxation overshot: damp it
        f_prev = f
        if gnorm <= grad_thr or step == 0.0:
            converged, gap = certify(V)
            if converged:
                status = "optimal"
                break
            # not tight yet: ask for a smaller gradient before the next certificate
            grad_thr = gnorm * min(0.1, max(1e-3, tol * abs(best_cert) / max(gap, 1e-300)))
            if gnorm < 1e-13 or step == 0.0:
                stalls += 1
            if stalls >= 2 and escapes < 3 and best_lam < 0:
                V = _escape_saddle(Csym, best_y, V)
                escapes, stalls, grad_thr = escapes + 1, 0, max(tol, 1e-14)
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            status = "time_limit"
            break

    if status != "optimal":
        # final polish: one plain (monotone) mixing sweep, then certify the final iterate
        ops.sweep(V, 1.0)
        it += 1
        converged, _ = certify(V)
        if converged and status == "iteration_limit":
            status = "optimal"
    return ShorResult(
        primal_value=primal,
        certified_value=best_cert,
        dual_y=best_y,
        lambda_min=best_lam,
        iterations=it,
        time_s=time.perf_counter() - t0,
        status=status,
        certified=math.isfinite(best_cert),
        solver="mixing",
        factor=V,
    )


def _escape_saddle(C: Matrix, y: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Widen ``V`` by one column along the bottom eigenvector ``u`` of ``Diag(y) − C``.

    ``f([V, εu]) − f(V) ≈ −ε²·uᵀ(Diag(y) − C)u > 0`` after renormalising rows, so this leaves a
    saddle point of the factorised problem (Boumal et al. 2016, rank-increment strategy).
    """
    Cd = C.toarray() if sp.issparse(C) else np.asarray(C)
    M = -Cd.copy()
    M[np.diag_indices_from(M)] += y
    _, vecs = np.linalg.eigh(M)
    u = vecs[:, 0]
    eps = 1e-2
    return np.ascontiguousarray(_normalize_rows(np.hstack([V, eps * u[:, None]])))
