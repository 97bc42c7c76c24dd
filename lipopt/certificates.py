r"""Float-safe certificates: every routine turns *any* (possibly inexact) dual into a rigorous upper
bound and returns a :class:`~lipopt.results.Certificate`.

* :func:`certify_lp` — Sherali–Adams / Krivine LP duals (:mod:`lipopt.hierarchy.lp`);
* :func:`certify_shor_dual` — the Shor SDP ``max ⟨C, X⟩, diag X = 1, X ⪰ 0`` from any ``y``;
  :func:`certify_shor` applies it to a backend's outcome of a
  :class:`~lipopt.solvers.base.ShorProgram`;
* :func:`certify_moment_dual` — moment relaxations with Sherali–Adams rows
  (:mod:`lipopt.hierarchy.sdp`) from any dual blocks and multipliers;
* :func:`certify_ball_dual` — the ℓ2 ball SDP of one-hidden-layer networks
  (:mod:`lipopt.methods.ball`) from any ``(λ, y)``.

(LipSDP's LMI check, :func:`lipopt.lipsdp.certify_lipsdp`, lives with its matrix.) A solver that
stops early still yields a valid, looser bound; non-finite input gives ``Certificate.none``.
Floating-point error models: Higham, *Accuracy and Stability*, Lemma 3.1 and §4.2 (sums), and the
LAPACK backward-error model of the symmetric eigensolvers with constant
:data:`~lipopt.floats.EIG_ERROR_CONSTANT` (``‖E‖₂ ≤ 16·n·eps·‖M̂‖_F``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EIG_ERROR_CONSTANT, EPS, TINY, padded_fsum, round_up, safe_sum
from .results import Certificate

if TYPE_CHECKING:
    from .hierarchy.lp import LPRelaxation
    from .hierarchy.sdp import MomentRelaxation
    from .solvers.base import Outcome, ShorProgram

LP_DUAL = "LP dual (clipped multipliers, residual paid)"
SDP_DUAL = "SDP dual + eigenvalue shift"


# ---------------------------------------------------------------------------------------------
# LP
# ---------------------------------------------------------------------------------------------
def certify_lp(
    relax: LPRelaxation, multipliers: np.ndarray | None, solver_value: float = math.nan
) -> Certificate:
    """Certified upper bound on ``max p`` over ``{0,1}^n`` from any multipliers ``c``.

    Row ``r`` of the relaxation is the expansion of a product ``q_r(u) = Π_{S_r} u Π_{T_r}(1 − u)
    = a0_r + Σ_S A_{rS} u^S ≥ 0`` on the domain; the LP dual is ``λ − p ≡ Σ_r c_r q_r``, ``c ≥ 0``.
    For any ``c``: clip ``ĉ = max(c, 0)``, form ``res = p + Aᵀĉ``; for every ``u`` (``0 ≤ u^S ≤ 1``)

        p(u) = c0 + Σ_S res_S u^S − Σ_r ĉ_r (q_r(u) − a0_r) ≤ c0 + Σ_r ĉ_r a0_r + Σ_S max(res_S, 0) =: V.

    With optimal duals of the LP with ``0 ≤ y ≤ 1``, ``V`` is the LP optimum. ``None`` (no dual)
    uses ``c = 0``: the loose ``c0 + Σ max(p_S, 0)``.

    **Floating point.** ``A`` and ``a0`` hold small integers, so each ``A_{rS} ĉ_r`` carries one
    rounding; with ``N``/``M`` the most non-zeros in a column/row of ``A``, ``|fl(res_S) − res_S| ≤
    γ_{N+1}(|p_S| + (|A|ᵀĉ)_S)``, ``max(·, 0)`` is 1-Lipschitz, the final sum is ``math.fsum``
    (error ≤ ``u|V|``). So ``|fl(V) − V| ≤ γ_{N+2}·m`` with ``m = |c0| + Σ|ĉ_r a0_r| + Σ_S (|p_S|
    + (|A|ᵀĉ)_S)``; the margin ``(N + M + 4)·eps·m̂`` is at least twice that whenever
    ``(N + 2)u < 1/2`` (which also covers computing ``m̂``), and the result is rounded up once more.
    """
    m = relax.rows
    c = np.zeros(m) if multipliers is None else np.asarray(multipliers, dtype=float).ravel()
    if c.shape != (m,):
        raise LipoptError(f"{c.size} multipliers for an LP with {m} rows")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(relax.c)) and np.isfinite(relax.c0)):
        return Certificate.none(LP_DUAL, solver_value, "non-finite multipliers or objective")
    n_clipped = int(np.count_nonzero(c < 0))
    c = np.maximum(c, 0.0)
    A = relax.A.tocsr()
    p = np.asarray(relax.c, dtype=float)
    res, abs_at_c, max_col, max_row = p.copy(), np.zeros_like(p), 0, 0
    if m:
        res, abs_at_c = p + A.T @ c, abs(A).T @ c
        max_col = int(np.bincount(A.indices, minlength=A.shape[1]).max()) if A.nnz else 0
        max_row = int(np.diff(A.indptr).max())
    ca0 = c * np.asarray(relax.a0, dtype=float)
    ca0 = ca0[ca0 != 0.0].tolist()
    pos = res[res > 0.0].tolist()
    try:
        value = math.fsum([relax.c0] + ca0 + pos)
    except OverflowError:  # a partial sum beyond the float range: no finite bound
        return Certificate.none(LP_DUAL, solver_value, "the bound overflowed")
    # all terms below are ≥ 0: any summation has relative error ≤ γ_n, covered by the factor 2
    mass = abs(relax.c0) + float(np.abs(ca0).sum()) + float(np.abs(p).sum()) + float(abs_at_c.sum())
    margin = (max_col + max_row + 4) * EPS * mass
    bound = round_up(value + margin, steps=1)
    if not np.isfinite(bound):
        return Certificate.none(LP_DUAL, solver_value, "the bound overflowed")
    details = {"residual_l1": float(np.abs(res).sum()), "n_clipped": n_clipped,
               "dual_value": math.fsum([relax.c0, math.fsum(ca0)]), "positive_residual": math.fsum(pos)}
    return Certificate(bound, True, LP_DUAL, float(solver_value), float(margin), details)


# ---------------------------------------------------------------------------------------------
# Shor
# ---------------------------------------------------------------------------------------------
def _as_dense_symmetric(C) -> tuple[np.ndarray, float]:
    """``(Cs, err)``: a symmetric float64 copy of ``C`` and a bound on the change.

    ``<C, X> = <(C + Cᵀ)/2, X>`` for symmetric X. When ``C`` is not exactly symmetric the average
    is rounded; since ``|X_ij| ≤ 1`` for feasible X, ``|<Cs − (C+Cᵀ)/2, X>| ≤ eps·Σ|Cs_ij| = err``.
    """
    Cd = np.array(C.toarray() if sp.issparse(C) else C, dtype=np.float64, copy=True)
    if Cd.ndim != 2 or Cd.shape[0] != Cd.shape[1]:
        raise LipoptError(f"C must be a square matrix, got shape {Cd.shape}")
    if not np.all(np.isfinite(Cd)):
        raise LipoptError("C has non-finite entries")
    if np.array_equal(Cd, Cd.T):
        return Cd, 0.0
    Cs = 0.5 * (Cd + Cd.T)
    return Cs, EPS * float(np.abs(Cs).sum()) * (1.0 + 1e-6)


def certify_shor_dual(C, y: np.ndarray, solver_value: float | None = None) -> Certificate:
    r"""Float-safe upper bound on :math:`\max\{\langle C,X\rangle : \operatorname{diag}X=1,
    X\succeq0\}` from any dual vector ``y``.

    :math:`\langle C,X\rangle = \sum_i y_i - \langle M, X\rangle \le \sum_i y_i - n\,\lambda_{\min}(M)`
    with :math:`M = \operatorname{Diag}(y) - C` (weak duality, ``tr X = n``), valid for every ``y``.
    Floating point (``eps = 2^-52``): a non-symmetric ``C`` is symmetrised and the rounding bounded
    by ``eps·Σ|C_ij|`` (``|X_ij| ≤ 1``); ``M̂ = fl(Diag(y) − C)`` differs from the exact matrix on
    the diagonal only, by ``≤ eps·max|M̂_ii|`` (Weyl); ``eigvalsh`` is backward stable with
    ``‖E‖₂ ≤ 16·n·eps·‖M̂‖_F``; ``Σ y_i`` is ``math.fsum``-ed and padded by ``n·eps·Σ|y_i|``; the
    final additions are padded and rounded upwards (:func:`lipopt.floats.padded_fsum`).
    ``details``: ``lambda_min`` (computed, before the margin).
    """
    Cs, sym_err = _as_dense_symmetric(C)
    n = Cs.shape[0]
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape[0] != n:
        raise LipoptError(f"dual vector has length {y.shape[0]}, expected {n}")
    if n == 0:
        return Certificate(0.0, True, SDP_DUAL, solver_value, 0.0, {"lambda_min": 0.0})
    if not np.all(np.isfinite(y)):
        return Certificate.none(SDP_DUAL, solver_value, "non-finite dual")
    M = -Cs
    M[np.diag_indices(n)] += y
    try:
        lam = float(np.linalg.eigvalsh(M)[0])
    except np.linalg.LinAlgError:
        return Certificate.none(SDP_DUAL, solver_value, "eigensolver failed")
    fro = float(np.linalg.norm(M)) * (1.0 + 1e-6)
    margin = EIG_ERROR_CONSTANT * n * EPS * fro + 2.0 * EPS * float(np.max(np.abs(np.diag(M))))
    s = math.fsum(y.tolist())
    s_err = n * EPS * math.fsum(np.abs(y).tolist()) + EPS * abs(s)
    bound = padded_fsum((s, s_err, -n * (lam - margin), sym_err))
    if not math.isfinite(bound):
        return Certificate.none(SDP_DUAL, solver_value, "non-finite bound")
    return Certificate(bound, True, SDP_DUAL, solver_value, bound - (s - n * lam), {"lambda_min": lam})


def certify_shor(program: ShorProgram, outcome: Outcome) -> Certificate:
    """The certificate of a Shor outcome, in the program's objective (offset and construction
    error added): the backend's own certificate if it made one, else :func:`certify_shor_dual` of
    its ``y`` — or of the diagonally dominant ``y_i = Σ_j |C_ij|`` when it returned none."""
    cert = outcome.certificate
    if cert is None:
        y = outcome.duals[0] if outcome.duals else None
        if y is None or not np.all(np.isfinite(np.asarray(y, dtype=float))):
            y = np.asarray(abs(program.C).sum(axis=1)).ravel()
        cert = certify_shor_dual(program.C, y)
    sv = outcome.value + program.offset if math.isfinite(outcome.value) else None
    if not cert.certified:
        return Certificate.none(cert.kind, sv, cert.details.get("why", ""))
    if program.offset == 0.0 and program.error == 0.0:
        return Certificate(cert.value, True, cert.kind, sv, cert.margin, cert.details)
    value = padded_fsum((cert.value, program.offset, program.error))
    return Certificate(value, True, cert.kind, sv, cert.margin + program.error, cert.details)


# ---------------------------------------------------------------------------------------------
# Moment relaxations
# ---------------------------------------------------------------------------------------------
def _project_psd(Z: np.ndarray) -> tuple[np.ndarray, float]:
    """``(Ẑ, δ)``: symmetric PSD projection of ``Z`` in float and a rigorous ``δ ≥ 0`` with
    ``Ẑ + δI ⪰ 0`` (eigensolver error ``≤ 16·b·eps·‖Ẑ‖_F``)."""
    Z = np.asarray(Z, dtype=float)
    w, V = np.linalg.eigh(0.5 * (Z + Z.T))
    Zp = (V * np.maximum(w, 0.0)) @ V.T
    Zp = 0.5 * (Zp + Zp.T)  # exactly symmetric (fl(a + b) = fl(b + a))
    lam = float(np.linalg.eigvalsh(Zp)[0])
    margin = EIG_ERROR_CONSTANT * Z.shape[0] * EPS * float(np.linalg.norm(Zp)) * (1 + 1e-6)
    return Zp, max(0.0, -(lam - margin))


def certify_moment_dual(
    relaxation: MomentRelaxation, Z: list[np.ndarray | None], mu: np.ndarray | None = None,
    solver_value: float | None = None,
) -> Certificate:
    r"""Rigorous upper bound on ``max_{u∈{0,1}^n} cᵀy(u)`` from any dual blocks and multipliers.

    For any ``Z_C ⪰ 0``, ``μ ≥ 0`` and every ``u ∈ {0,1}^n`` (``y(u)_S = u^S``)

    .. math::  p(u) \le p(u) + \sum_C m_C(u)^\top Z_C m_C(u) + μ^\top G y(u) = \sum_S w_S u^S
               \le w_∅ + \sum_{S \ne ∅} \max(w_S, 0),

    ``w = c + Σ_C A_C^*(Z_C) + Gᵀμ`` (``A_C^*(Z)_S = Σ_{α∪β=S} Z_{αβ}``). ``Z[i]`` pairs with
    ``relaxation.blocks[i]`` (``None`` = zero), ``mu`` with the SA rows. Floating point: each
    ``Z_C`` is symmetrised and projected onto the PSD cone to ``Ẑ_C``; a rigorous
    ``δ_C ≥ 0`` with ``Ẑ_C + δ_C I ⪰ 0`` costs ``δ_C b_C`` (``‖m_C‖² ≤ b_C``); ``μ`` is clipped at
    0 (exact); each ``w_S`` (``n_S`` terms, SA coefficients ±1) carries an error
    ``≤ (n_S + 2)·eps·Σ|terms|``, added; the sum is ``math.fsum``-ed, padded and rounded upward.
    ``details``: ``w0``, ``residual_pos``, ``psd_shift``, ``float_margin``.
    """
    m = relaxation.n_moments
    w, absw, nterms = relaxation.c.copy(), np.abs(relaxation.c), np.ones(m)
    shift_terms: list[float] = []
    for block, Zb in zip(relaxation.blocks, Z, strict=True):
        if Zb is None:
            continue
        Zb = np.asarray(Zb, dtype=float)
        if Zb.shape != (block.size, block.size) or not np.all(np.isfinite(Zb)):
            return Certificate.none(SDP_DUAL, solver_value, "dual block missing or not finite")
        Zp, delta = _project_psd(Zb)
        ids = block.ids.ravel()
        w += np.bincount(ids, weights=Zp.ravel(), minlength=m)
        absw += np.bincount(ids, weights=np.abs(Zp).ravel(), minlength=m)
        nterms += np.bincount(ids, minlength=m)
        shift_terms.append(delta * block.size)
    if relaxation.G is not None and relaxation.n_lp_rows:
        mu = np.zeros(relaxation.n_lp_rows) if mu is None else mu
        mu = np.maximum(np.asarray(mu, dtype=float).ravel(), 0.0)
        if mu.shape != (relaxation.n_lp_rows,) or not np.all(np.isfinite(mu)):
            return Certificate.none(SDP_DUAL, solver_value, "LP multipliers missing or not finite")
        Gt = relaxation.G.T.tocsr()
        w += Gt @ mu
        absw += abs(Gt) @ mu
        nterms += np.diff(Gt.indptr)
    err = (nterms + 2.0) * EPS * absw  # exact-arithmetic w_S lies within err_S of the computed one
    pos = np.maximum(w[1:], 0.0)
    bound = safe_sum([float(w[0]), *pos.tolist(), *err.tolist(), *shift_terms])
    details = {"w0": float(w[0]), "residual_pos": float(pos.sum()), "psd_shift": float(sum(shift_terms)),
               "float_margin": float(err.sum())}
    if not math.isfinite(bound):
        return Certificate.none(SDP_DUAL, solver_value, "non-finite bound")
    margin = details["float_margin"] + details["psd_shift"]
    return Certificate(bound, True, SDP_DUAL, solver_value, margin, details)


# ---------------------------------------------------------------------------------------------
# The ℓ2 ball SDP
# ---------------------------------------------------------------------------------------------
def ball_dual_matrix(C: np.ndarray, lam: float, y: np.ndarray) -> np.ndarray:
    """``S(λ, y) = [[λI, −C/2], [−Cᵀ/2, Diag(y)]]``."""
    n0, N = C.shape
    S = np.zeros((n0 + N, n0 + N))
    S[np.arange(n0), np.arange(n0)] = lam
    S[:n0, n0:] = -0.5 * C
    S[n0:, :n0] = -0.5 * C.T
    S[n0:, n0:] = np.diag(y)
    return S


def certify_ball_dual(
    C: np.ndarray, lam: float, y: np.ndarray, err: float = 0.0, solver_value: float | None = None
) -> Certificate:
    r"""Rigorous upper bound on ``max tᵀCz`` over ``‖t‖₂ ≤ 1``, ``z ∈ {±1}^N`` from any ``(λ, y)``.

    For any feasible moment matrix ``M = [[T, Y], [Yᵀ, Z]]`` (``tr T ≤ 1``, ``diag Z = 1``, so
    ``tr M ≤ N + 1``): ``⟨C, Y⟩ = λ tr T + Σ yᵢ Zᵢᵢ − ⟨S, M⟩ ≤ λ₊ + Σ yᵢ + (N + 1)·δ`` with
    ``S = S(λ₊, y)`` (:func:`ball_dual_matrix`) and ``δ ≥ 0`` a rigorous bound with
    ``S + δI ⪰ 0``. ``S`` is formed exactly (``C/2`` exact barring underflow: a ``2^-1074`` term per
    row); ``λ̂_min`` is lowered by ``16·n·eps·‖S‖_F``; ``err`` (the objective's float error,
    :func:`lipopt.methods.ball.ball_objective`) is added; the sum is padded and rounded upward.
    ``details``: ``lambda_min``, ``psd_shift``, ``float_margin``.
    """
    C = np.asarray(C, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    n0, N = C.shape
    if y.shape != (N,):
        raise LipoptError(f"dual vector has length {y.size}, expected {N}")
    lam = max(float(lam), 0.0)
    if not (math.isfinite(lam) and np.all(np.isfinite(y)) and np.all(np.isfinite(C))):
        return Certificate.none(SDP_DUAL, solver_value, "non-finite dual or objective")
    S = ball_dual_matrix(C, lam, y)
    n = S.shape[0]
    lam_min = float(np.linalg.eigvalsh(S)[0])
    margin = EIG_ERROR_CONSTANT * n * EPS * float(np.linalg.norm(S)) * (1 + 1e-6) + n * TINY
    shift = round_up(max(0.0, -(lam_min - margin)) * (N + 1.0) * (1 + 2 * EPS))
    bound = safe_sum([lam, *y.tolist(), shift, float(err)])
    details = {"lambda_min": lam_min, "psd_shift": shift, "float_margin": float(err) + margin}
    return Certificate(bound, True, SDP_DUAL, solver_value, float(err) + shift, details)
