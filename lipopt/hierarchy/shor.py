r"""The Shor (order-1) relaxation of quadratic binary problems, as a ±1 program.

A binary POP of degree ≤ 2, ``p(u) = uᵀQu + qᵀu + const`` on ``{0,1}^n`` (:func:`quadratic_form`,
exact), is rewritten exactly as a homogeneous ±1 quadratic form of size ``n + 1``
(:func:`shor_from_binary_quadratic`), whose Shor SDP ``max ⟨C, X⟩, diag X = 1, X ⪰ 0`` is a
:class:`~lipopt.solvers.base.ShorProgram` (:func:`shor_program`). The order-1 Lasserre relaxation
on ``{0,1}`` and this ±1 Shor SDP are the same SDP (a linear bijection of the moment matrices).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..floats import EPS
from ..polynomial import Polynomial
from ..solvers.base import ShorProgram

#: dense ±1 Shor matrices up to this size; sparse CSR above
DENSE_SHOR_LIMIT = 3000

Matrix = np.ndarray | sp.spmatrix


def quadratic_form(poly: Polynomial, dense_limit: int = DENSE_SHOR_LIMIT):
    """``p(u) = uᵀQu + qᵀu + const`` for a binary polynomial of degree ≤ 2 (exact: no rounding).

    ``Q`` is strictly upper triangular (one entry per monomial ``u_i u_j``, ``i < j``), dense for
    ``n ≤ dense_limit`` and CSR above.
    """
    p = poly.reduce_binary()
    if p.degree > 2:
        raise LipoptError(f"quadratic_form needs degree ≤ 2, the polynomial has degree {p.degree}")
    n = p.n_vars
    deg = p.degrees
    s = np.asarray(p.supports, dtype=np.int64)
    if s.shape[1] < 2:  # linear or constant polynomial: pad to two columns
        s = np.hstack([np.full((s.shape[0], 2 - s.shape[1]), -1, dtype=np.int64), s])
    const = float(p.coef[deg == 0].sum())  # at most one constant monomial: exact
    q = np.zeros(n)
    one = deg == 1
    if one.any():
        np.add.at(q, s[one, -1], p.coef[one])
    two = deg == 2
    i, j = s[two, -2], s[two, -1]
    if n <= dense_limit:
        Q = np.zeros((n, n))
        Q[i, j] = p.coef[two]
    else:
        Q = sp.csr_matrix((p.coef[two], (i, j)), shape=(n, n))
    return Q, q, const


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


def shor_program(poly: Polynomial) -> ShorProgram:
    """The ±1 Shor program of a binary POP of degree ≤ 2 over the variables it uses (the others do
    not change ``max p``); its objective equals ``p`` up to ``error`` at every vertex."""
    sub, _ = poly.reduce_binary().restrict(poly.variables_used())
    C, offset, err = shor_from_binary_quadratic(*quadratic_form(sub), return_error=True)
    return ShorProgram(C, offset, err)
