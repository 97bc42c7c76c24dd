r"""ℓ2 Lipschitz bounds of one-hidden-layer networks by the ball-constrained SDP (formulation (b)).

Problem
-------
For ``f(x) = cᵀ(W₂ σ(W₁x + b₁) + b₂)`` the gradient is ``∇f(x) = W₁ᵀ diag(σ'(z)) w`` with
``w = W₂ᵀc``, so with ``s ∈ [lo, hi]^{n₁}`` (:func:`lipopt.problems.derivative_ranges`; global
ReLU: ``[0, 1]``)

.. math::

    L_2(f) = \sup_x \lVert\nabla f(x)\rVert_2
    \le \max\{\, t^\top W_1^\top \operatorname{diag}(s)\, w : \lVert t\rVert_2 \le 1,\;
    s \in [lo, hi]^{n_1} \,\}.

The objective is linear in each ``s_j``, so the maximum is at a vertex. Write
``s = m + r∘x`` with ``x ∈ {±1}^{n₁}`` (``m = (lo+hi)/2``, ``r = (hi−lo)/2``; equivalent to the
``{0,1}`` form ``s = lo + (hi−lo)∘u``, ``x = 2u − 1``) and homogenise with ``x₀ ∈ {±1}``:
``z = (x₀, x) ∈ {±1}^N``, ``N = n₁ + 1``, ``C = [W₁ᵀ(w∘m), W₁ᵀ diag(w∘r)] ∈ ℝ^{n₀×N}``. Then the
POP is ``max tᵀCz`` over ``‖t‖ ≤ 1``, ``z ∈ {±1}^N`` (``(t, z) ↦ (−t, −z)`` leaves ``tᵀCz``
unchanged and maps ``x₀ = −1`` to ``x₀ = 1``). Because of this symmetry the first-order moments
vanish and the order-1 Lasserre/Putinar relaxation with the ball constraint ``1 − ‖t‖² ≥ 0`` is
the SDP in the moment matrix of ``(t, z)``, of order ``n₀ + n₁ + 1``:

.. math::

    \mathrm{(P)}\quad \max \langle C, Y\rangle \;\text{s.t.}\;
    M = \begin{pmatrix} T & Y \\ Y^\top & Z\end{pmatrix} \succeq 0,\;
    \operatorname{tr} T \le 1,\; \operatorname{diag} Z = \mathbf 1,

(the same SDP as the ``{0,1}`` moment matrix ``[[1, tᵀ, uᵀ], [t, T, X], [u, Xᵀ, U]]`` with
``diag U = u``, by the linear bijection ``x = 2u − 1``), with dual

.. math::

    \mathrm{(D)}\quad \min_{\lambda \ge 0,\, y}\; \lambda + \textstyle\sum_i y_i \;\text{s.t.}\;
    S(\lambda, y) = \begin{pmatrix} \lambda I & -C/2 \\ -C^\top/2 & \operatorname{Diag}(y)
    \end{pmatrix} \succeq 0.

Certificate (:func:`certify_ball_dual`)
---------------------------------------
For *any* ``λ ≥ 0``, ``y`` and any feasible ``M`` (so ``tr M = tr T + N ≤ 1 + N = n₁ + 2``):
``⟨C, Y⟩ = λ tr T + Σ yᵢ Zᵢᵢ − ⟨S, M⟩ ≤ λ + Σ yᵢ + (n₁ + 2)·max(0, −λ_min(S))``.
Floating point: ``S`` is formed exactly (``C/2`` is exact barring underflow, covered by a
``2^-1074`` term per row); the computed ``λ̂_min`` is lowered by ``16·n·eps·‖S‖_F`` (the backward
error model of :func:`lipopt.solvers.shor.certify_shor_dual`); the sum is taken with
``math.fsum``, padded and rounded upward. ``C`` itself is computed in floating point from the
weights: :func:`ball_objective` bounds ``|Ĉ − C|`` entrywise by ``E`` (standard ``γ_k`` bounds,
doubled), and ``|⟨E, Y⟩| ≤ Σ_{ij} E_ij √(T_ii Z_jj) ≤ ‖E𝟙‖₂ √(tr T) ≤ ‖E𝟙‖₂`` is added. The
derivative range is covered outward: ``m̂ = fl((lo+hi)/2)``, ``r̂ ≥ max(hi − m̂, m̂ − lo)``.
Any ``(λ, y)`` gives a valid bound, so an inaccurate or time-limited solve is still certified.

Relation to formulation (a)
---------------------------
(D) reduces by a Schur complement: for ``λ > 0``, ``S ⪰ 0 ⟺ Diag(y) ⪰ CᵀC/(4λ)``; with
``y = y'/(4λ)`` and the optimal ``λ = √(Σy')/2`` the value is ``√(Σ y')`` where
``Diag(y') ⪰ CᵀC`` is the dual of the ±1 Shor relaxation of ``max_z ‖Cz‖² = max_s ‖G(s)‖²``.
So **the order-1 value of (b) equals the square root of the order-1 (Shor) value of (a)** in exact
arithmetic; (b) is the same bound with a certificate that needs no square root. The solvers here
exploit this:

* ``"mixing"``: the Burer–Monteiro mixing method on the ``N×N`` Shor problem of ``ĈᵀĈ``
  (:func:`lipopt.solvers.shor.solve_shor_mixing`), its dual ``y'`` shifted to
  ``Diag(y') ⪰ ĈᵀĈ`` and mapped to ``(λ, y)`` as above, then certified on the full ``S``.
* conic (``"CLARABEL"``, ``"SCS"``, ``"CVXOPT"``, ``"MOSEK"``): (D) through cvxpy with ``C``
  replaced by the triangular factor ``R`` of ``C = QR`` (``k = min(n₀, N)`` rows; ``S`` is
  congruent to ``diag(S_R, λI)``), an LMI of order ``k + N ≤ 2N`` in ``N + 1`` variables instead of
  ``n₀ + N``; ``reduce=False`` keeps the full order. Certified on the full ``S`` either way.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..floats import EIG_ERROR_CONSTANT, EPS, TINY, round_up, round_up_array, safe_sum
from ..network import Dense, Network
from ..problems import Domain, Target, derivative_ranges, make_target
from .conic import cvxpy_status
from .sdp_pipeline import SDPResult

__all__ = [
    "BALL_SOLVERS",
    "ball_objective",
    "ball_sdp_bound",
    "ball_sdp_target_bound",
    "certify_ball_dual",
]

#: solver names accepted by :func:`ball_sdp_bound` (besides ``None`` = automatic)
BALL_SOLVERS = ("mixing", "conic", "CLARABEL", "SCS", "CVXOPT", "MOSEK")
#: the conic route prefers Clarabel up to this LMI order and CVXOPT above. Measured on the
#: 784-50-10 MNIST net (reduced LMI of order 102): mixing 0.6 s (0.4 s of it the 835×835
#: certificate), CVXOPT 0.8 s, Clarabel 13 s, SCS 15 s (and 1e-4 looser).
CLARABEL_MAX_ORDER = 60


# ---------------------------------------------------------------------------------------------
# the objective matrix C
# ---------------------------------------------------------------------------------------------
def _layers(net: Network) -> tuple[Dense, Dense]:
    """``(hidden, output)`` of a plain one-hidden-layer network; LipoptError otherwise."""
    if not net.is_chain:
        raise LipoptError(
            "sdp-ball (the ℓ2 ball-constrained SDP) handles plain one-hidden-layer networks only; "
            "this network has residual blocks: use --method sdp (or lp) instead"
        )
    if len(net.layers) != 2:
        raise LipoptError(
            f"sdp-ball (the ℓ2 ball-constrained SDP) handles one-hidden-layer networks only; this "
            f"network has {net.depth} hidden layers ({net.architecture()}): use --method sdp "
            "(or lp) instead"
        )
    hidden, out = net.layers
    assert isinstance(hidden, Dense) and isinstance(out, Dense)
    return hidden, out


def ball_objective(
    net: Network, c: np.ndarray, domain: Domain | None = None
) -> tuple[np.ndarray, float, dict]:
    r"""``(Ĉ, err, info)``: the float objective matrix of the homogenised POP and its error bound.

    ``Ĉ ∈ ℝ^{n₀×N}``: column 0 is ``W₁ᵀ(ŵ∘m̂)``, the others ``W₁[j,:]ᵀ ŵ_j r̂_j`` for the neurons
    with ``r̂_j ŵ_j W₁[j,:] ≠ 0`` (the rest contribute nothing and are dropped, so
    ``N ≤ n₁ + 1``). ``err ≥ ‖E𝟙‖₂`` where ``|Ĉ − C| ≤ E`` entrywise against the exact ``C`` of
    the weights (see the module docstring). ``info``: ``n0``, ``n1``, ``n_free``.
    """
    hidden, out = _layers(net)
    W1 = hidden.dense_weight().astype(float)  # n1 × n0
    W2 = out.weight.toarray() if sp.issparse(out.weight) else np.asarray(out.weight, dtype=float)
    c = np.asarray(c, dtype=float).ravel()
    if c.shape != (net.output_dim,) or not np.all(np.isfinite(c)):
        raise LipoptError(f"the target vector needs {net.output_dim} finite entries, got shape {c.shape}")
    n1, n0 = W1.shape
    n2 = W2.shape[0]
    (lo, hi), = derivative_ranges(net, domain)
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    # s ∈ [lo, hi] ⊆ [m̂ − r̂, m̂ + r̂] exactly
    m = 0.5 * (lo + hi)
    r = np.maximum(hi - m, m - lo)
    r = np.where(r > 0, round_up_array(r, steps=2), 0.0)
    w = W2.T @ c
    # |ŵ − w| ≤ γ_{n2} |W2|ᵀ|c|, and the two products ŵ·r̂, ·W₁ add ≤ 3·eps relative
    ew = (n2 + 2) * EPS * (np.abs(W2).T @ np.abs(c)) + 3 * EPS * np.abs(w)
    absW1 = np.abs(W1)
    v = w * m
    col0 = W1.T @ v
    wr = w * r
    keep = np.flatnonzero((r > 0) & (np.any(W1 != 0, axis=1)) & ((wr != 0) | (ew > 0)))
    C = np.empty((n0, 1 + keep.size))
    C[:, 0] = col0
    C[:, 1:] = W1[keep].T * wr[keep]
    # row sums of E: column 0 (sum of n1 products) + the kept columns
    e0 = absW1.T @ (ew * np.abs(m)) + (n1 + 3) * EPS * (absW1.T @ np.abs(v))
    erows = e0 + absW1[keep].T @ (r[keep] * ew[keep])
    err = round_up(2.0 * float(np.linalg.norm(erows)) * (1 + 1e-6))
    return C, err, {"n0": int(n0), "n1": int(n1), "n_free": int(keep.size)}


# ---------------------------------------------------------------------------------------------
# certificate
# ---------------------------------------------------------------------------------------------
def _dual_matrix(C: np.ndarray, lam: float, y: np.ndarray) -> np.ndarray:
    n0, N = C.shape
    S = np.empty((n0 + N, n0 + N))
    S[:n0, :n0] = 0.0
    S[:n0, :n0][np.diag_indices(n0)] = lam
    S[:n0, n0:] = -0.5 * C
    S[n0:, :n0] = -0.5 * C.T
    S[n0:, n0:] = np.diag(y)
    return S


def certify_ball_dual(C: np.ndarray, lam: float, y: np.ndarray, err: float = 0.0) -> tuple[float, dict]:
    r"""Rigorous upper bound on the value of (P) (hence on ``max tᵀCz``) from any ``(λ, y)``.

    ``bound = λ₊ + Σ yᵢ + (N + 1)·δ + err`` with ``λ₊ = max(λ, 0)``, ``δ ≥ 0`` a rigorous bound
    with ``S(λ₊, y) + δI ⪰ 0`` and ``N + 1 ≥ tr M`` (``N = C.shape[1] ≤ n₁ + 1``); ``err`` is
    the objective's float error bound from :func:`ball_objective`. Returns ``(bound, info)``;
    ``bound = inf`` if anything is non-finite.
    """
    C = np.asarray(C, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    n0, N = C.shape
    if y.shape != (N,):
        raise LipoptError(f"dual vector has length {y.size}, expected {N}")
    lam = max(float(lam), 0.0)
    if not (math.isfinite(lam) and np.all(np.isfinite(y)) and np.all(np.isfinite(C))):
        return math.inf, {"reason": "non-finite dual or objective"}
    S = _dual_matrix(C, lam, y)
    n = S.shape[0]
    lam_min = float(np.linalg.eigvalsh(S)[0])
    margin = EIG_ERROR_CONSTANT * n * EPS * float(np.linalg.norm(S)) * (1 + 1e-6) + n * TINY
    delta = max(0.0, -(lam_min - margin))
    trace_bound = N + 1.0  # tr T ≤ 1, Z_ii = 1
    shift = round_up(delta * trace_bound * (1 + 2 * EPS))
    bound = safe_sum([lam, *y.tolist(), shift, float(err)])
    return bound, {"lambda_min": lam_min, "psd_shift": shift, "float_margin": float(err) + margin}


# ---------------------------------------------------------------------------------------------
# solvers
# ---------------------------------------------------------------------------------------------
def _from_shor_dual(yp: np.ndarray) -> tuple[float, np.ndarray]:
    """``(λ, y)`` of (D) from a dual ``y'`` with ``Diag(y') ⪰ CᵀC`` (value ``√Σy'``)."""
    total = float(np.sum(yp))
    if total <= 0:
        return 0.0, np.zeros_like(yp)
    lam = 0.5 * math.sqrt(total)
    return lam, yp / (4.0 * lam)


def _trivial_dual(C: np.ndarray) -> tuple[float, np.ndarray]:
    """A feasible ``(λ, y)`` of value ``√N‖C‖₂`` (fallback when a solver returns nothing)."""
    N = C.shape[1]
    sigma = float(np.linalg.norm(C, 2)) * (1 + 1e-12)
    return 0.5 * math.sqrt(N) * sigma, np.full(N, 0.5 * sigma / math.sqrt(N))


def _solve_mixing(
    C: np.ndarray, time_limit: float | None, tol: float, seed: int
) -> tuple[float, np.ndarray, str, float, int]:
    """Mixing method on the Shor problem of ``CᵀC``; returns ``(λ, y, status, value, sweeps)``."""
    from .shor import solve_shor_mixing

    Q = C.T @ C
    Q = 0.5 * (Q + Q.T)
    res = solve_shor_mixing(Q, tol=tol, seed=seed, time_limit=time_limit)
    yp = np.asarray(res.dual_y, dtype=float)
    # shift so that Diag(y') ⪰ Q (up to rounding): the certificate then needs no large shift
    lam_min = float(np.linalg.eigvalsh(np.diag(yp) - Q)[0])
    yp = yp - min(lam_min, 0.0)
    lam, y = _from_shor_dual(yp)
    val = math.sqrt(max(res.primal_value, 0.0)) if math.isfinite(res.primal_value) else math.nan
    return lam, y, res.status, val, int(res.iterations)


def _solve_conic(
    C: np.ndarray, solver: str | None, time_limit: float | None, reduce: bool
) -> tuple[float, np.ndarray, str, float, int, int, str]:
    """(D) with ``C`` QR-reduced, by cvxpy; returns ``(λ, y, status, value, iterations, order,
    solver)`` (the trivial feasible dual when the solver returns none)."""
    import cvxpy as cp

    from .conic import available_sdp_solvers, solver_time_limit_options

    n0, N = C.shape
    if reduce and n0 > N:
        R = np.linalg.qr(C, mode="r")  # C = QR, R is N×N: S ≅ diag(S_R, λI)
    else:
        R = C
    k = R.shape[0]
    avail = available_sdp_solvers()
    if solver is None or solver.lower() == "conic":
        order = ("MOSEK", "CLARABEL", "CVXOPT", "SCS") if k + N <= CLARABEL_MAX_ORDER else (
            "MOSEK", "CVXOPT", "SCS", "CLARABEL")
        name = next((s for s in order if s in avail), None)
        if name is None:
            raise LipoptError("no SDP solver is installed: pip install clarabel (or scs)")
    else:
        name = solver.upper()
        if name not in avail:
            raise LipoptError(f"SDP solver {name} is not available here; available: {avail}")
    lam = cp.Variable(nonneg=True)
    y = cp.Variable(N)
    S = cp.bmat([[lam * np.eye(k), -0.5 * R], [-0.5 * R.T, cp.diag(y)]])
    prob = cp.Problem(cp.Minimize(lam + cp.sum(y)), [0.5 * (S + S.T) >> 0])
    opts = solver_time_limit_options(name, time_limit)
    t0 = time.perf_counter()
    status = "error"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob.solve(solver=name, **opts)
        status = cvxpy_status(prob.status, time.perf_counter() - t0, time_limit)
    except cp.error.SolverError as exc:
        status = f"error: {exc}"
    lv, yv = lam.value, y.value
    if lv is None or yv is None or not np.all(np.isfinite(yv)) or not math.isfinite(float(lv)):
        lv, yv = _trivial_dual(C)
        status = status if status.startswith("error") else "error: no dual values"
    iters = 0
    if prob.solver_stats is not None and prob.solver_stats.num_iters is not None:
        iters = int(prob.solver_stats.num_iters)
    val = float(prob.value) if prob.value is not None and np.isfinite(prob.value) else math.nan
    return float(lv), np.asarray(yv, dtype=float).ravel(), status, val, iters, k + N, f"cvxpy/{name}"


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------
def ball_sdp_bound(
    net: Network,
    c: np.ndarray,
    domain: Domain | None = None,
    *,
    solver: str | None = None,
    time_limit: float | None = None,
    reduce: bool = True,
    tol: float = 1e-7,
    seed: int = 0,
) -> SDPResult:
    r"""Certified upper bound on ``L₂(cᵀN)`` of a one-hidden-layer network by the ball SDP (b).

    ``value`` bounds the Lipschitz constant itself (no square root to take). ``domain`` restricts
    the derivative ranges to an input box (local constant); ``None`` is global.

    Args:
        net: a plain one-hidden-layer network (:class:`~lipopt.network.Dense` layers); deeper or
            residual networks raise :class:`~lipopt.errors.LipoptError` naming ``--method sdp``.
        c: output direction (length ``net.output_dim``).
        solver: ``"mixing"`` (mixing method on the equivalent ``N×N`` Shor problem), a conic solver
            (``"CLARABEL"``, ``"SCS"``, ``"CVXOPT"``, ``"MOSEK"``) for the (reduced) LMI (D), or
            ``"conic"`` (MOSEK if licensed, else Clarabel up to LMI order
            :data:`CLARABEL_MAX_ORDER`, CVXOPT above). ``None`` = ``"mixing"``, the fastest
            (measured, see :data:`CLARABEL_MAX_ORDER`).
        time_limit: seconds for the solver; an early stop still gives a certified (looser) value.
        reduce: conic route only: QR-reduce ``C`` to ``min(n₀, N)`` rows (default) or keep the
            full LMI of order ``n₀ + N``.
        tol, seed: mixing method's relative gap tolerance and seed.

    Returns an :class:`~lipopt.solvers.sdp_pipeline.SDPResult` (``route = "ball"``); ``size``
    has ``n0``, ``n1``, ``n_free`` (neurons with a non-degenerate range), ``psd_dim``
    (``n₀ + n_free + 1``, the moment matrix of (P)), ``lmi_dim`` (the order actually solved),
    ``order`` (1) and ``iterations``.
    """
    t0 = time.perf_counter()
    if solver is None:
        solver = "mixing"
    if solver not in BALL_SOLVERS and solver.upper() not in BALL_SOLVERS:
        raise LipoptError(f"unknown solver {solver!r} for sdp-ball; choose from {', '.join(BALL_SOLVERS)}")
    C, err, info = ball_objective(net, c, domain)
    n0, N = C.shape
    size = dict(info, psd_dim=int(n0 + N), order=1)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    if not np.any(C):
        bound = safe_sum([err])
        size.update(lmi_dim=0, iterations=0)
        return SDPResult(bound, 0.0, True, "optimal", build, time.perf_counter() - t1, size, "none", "ball")
    if solver.lower() == "mixing":
        lam, y, status, val, iters = _solve_mixing(C, time_limit, tol, seed)
        name, lmi = "mixing", N
    else:
        lam, y, status, val, iters, lmi, name = _solve_conic(C, solver, time_limit, reduce)
    bound, cinfo = certify_ball_dual(C, lam, y, err)
    size.update(lmi_dim=int(lmi), iterations=int(iters))
    solve = time.perf_counter() - t1
    return SDPResult(
        value=bound,
        solver_value=val,
        certified=math.isfinite(bound),
        status=status,
        build_time_s=build,
        solve_time_s=solve,
        size=size,
        solver=name,
        route="ball",
    )


def ball_sdp_target_bound(
    net: Network,
    target: Target | None = None,
    domain: Domain | None = None,
    combine: Callable[[list[float]], float] = max,
    **options,
) -> SDPResult:
    """:func:`ball_sdp_bound` for every row of ``target`` (default: every output); the result
    carries ``combine`` of the rows' values (default the largest; certified iff all are) and the
    summed times."""
    target = target if target is not None else make_target(net)
    results = [ball_sdp_bound(net, c, domain, **options) for c in target.vectors]
    worst = max(results, key=lambda r: r.value)
    return SDPResult(
        value=combine([r.value for r in results]),
        solver_value=combine([r.solver_value for r in results]),
        certified=all(r.certified for r in results),
        status=worst.status,
        build_time_s=sum(r.build_time_s for r in results),
        solve_time_s=sum(r.solve_time_s for r in results),
        size=dict(worst.size, n_targets=len(results)),
        solver=worst.solver,
        route="ball",
    )
