r"""LipSDP-Neuron (Fazlyab, Robey, Hassani, Morari & Pappas, NeurIPS 2019), with a float-safe check.

A comparison method: an SDP upper bound on the ℓ2→ℓ2 Lipschitz constant of the *vector-valued*
feedforward network :math:`x \mapsto W_{L+1}\sigma(W_L \cdots \sigma(W_1 x))` (biases do not
matter), :math:`\sigma` slope-restricted in :math:`[\alpha, \beta]` (ReLU: ``[0, 1]``).

With hidden sizes :math:`n_1..n_L`, :math:`N = \sum_l n_l`, the stacked vector
:math:`\xi = (x_0, x_1, \dots, x_L) \in \mathbb R^{n_0 + N}` and

.. math::

    A = \begin{bmatrix} W_1 & & & 0\\ & \ddots & & \vdots\\ & & W_L & 0\end{bmatrix},\quad
    B = \begin{bmatrix} 0 & I_N\end{bmatrix},\quad
    T = \operatorname{diag}(t),\ t \ge 0 \text{ (one multiplier per hidden neuron)},

LipSDP-Neuron solves :math:`\min \rho` subject to

.. math::

    M(\rho, t) = \begin{bmatrix}A\\B\end{bmatrix}^{\!\top}
    \begin{bmatrix}-2\alpha\beta T & (\alpha+\beta)T\\ (\alpha+\beta)T & -2T\end{bmatrix}
    \begin{bmatrix}A\\B\end{bmatrix}
    + \begin{bmatrix}-\rho I_{n_0} & & \\ & 0 & \\ & & W_{L+1}^\top W_{L+1}\end{bmatrix}
    \preceq 0,

and :math:`L_2 \le \sqrt{\rho}`.

Input-space reduction (exact). The input block only meets the rest through :math:`W_1`. When
:math:`n_0 > n_1` write :math:`W_1^\top = QR` (thin QR, :math:`Q^\top Q = I_{n_1}`); in the
coordinates :math:`x_0 = Qz + x_\perp`, :math:`W_1 x_0 = R^\top z` and the quadratic form of
:math:`M` splits into :math:`-\rho\lVert x_\perp\rVert^2` plus the same LMI with :math:`W_1`
replaced by the square :math:`R^\top`. So :math:`M \preceq 0 \iff M_{\mathrm{red}} \preceq 0` and
:math:`\rho \ge 0`: for the MNIST 784-50-10 net the LMI shrinks from 834×834 to 100×100.

Certification (:func:`certify_lipsdp`). The solver's :math:`(\rho, t)` are only approximately
feasible, and the reduction is done in floating point, so the check is redone on the *full*
:math:`M`: :math:`t` is clipped to :math:`t \ge 0`, :math:`\hat M = \mathrm{fl}(M(\rho, t))` is built
in numpy, and :math:`\rho` is accepted iff

.. math::

    \hat\lambda_{\max}(\hat M) + \delta_{\text{form}} + \delta_{\text{eig}} \le 0,

with :math:`\delta_{\text{form}} = K\,\varepsilon\,\lVert |A|^\top\!\cdot\!\text{(abs. terms)}\rVert_F`
bounding the rounding of the matrix products (:math:`K` = longest inner dimension + 8, standard
:math:`|fl(XY) - XY| \le \gamma_K |X||Y|`) and
:math:`\delta_{\text{eig}} = 16\,m\,\varepsilon\,\lVert \hat M\rVert_F` the backward error of the
symmetric eigensolver (LAPACK ``syevr`` for the top eigenvalue only: Householder tridiagonalisation,
backward stable like ``syevd``; same generous error model as
:func:`lipopt.certificates.certify_shor_dual`). By Weyl's inequality
the exact :math:`M(\rho, t)` is then negative semidefinite. If the solver's :math:`\rho` fails, a nearly
smallest passing :math:`\rho' \ge \rho` is searched by Newton-type increments from the top
eigenpair; :math:`\rho` enters only as :math:`-\rho I` on the input block, so the check is
monotone in :math:`\rho`. The certified value is :math:`\sqrt{\rho'}` rounded upwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EIG_ERROR_CONSTANT, EPS, round_up
from .results import Certificate
from .solvers.base import Limits, Shape, solve
from .solvers.conic import CvxpyModel
from .solvers.mixing import blas_threads

LMI_CHECK = "LMI check (float-safe top eigenvalue)"

__all__ = ["LipSDPResult", "certify_lipsdp", "lipsdp_matrix", "lipsdp_neuron"]


@dataclass
class LipSDPResult:
    """Result of :func:`lipsdp_neuron`.

    Attributes
    ----------
    solver_value:
        ``sqrt(ρ)`` for the solver's ρ (not a certified bound).
    certified_value:
        ``sqrt(ρ')`` rounded up, ρ' ≥ ρ the smallest ρ found for which the full LMI passes the
        float-safe check with the clipped multipliers; ``inf`` when ``certified`` is False.
    certified:
        True iff that check passed.
    rho, rho_certified:
        The solver's ρ and the certified ρ'.
    t:
        Multipliers (clipped at 0), one per hidden neuron, layer by layer.
    lambda_max:
        Computed largest eigenvalue of the full LMI matrix at ``rho_certified``.
    margin:
        ``δ_form + δ_eig`` used in the check at ``rho_certified``.
    solver, status:
        Back end used and cvxpy's status string.
    solve_time_s, certify_time_s:
        Wall-clock times of the SDP solve (including cvxpy's compilation) and of the check.
    lmi_size:
        Order of the LMI actually solved (after the input-space reduction).
    """

    solver_value: float
    certified_value: float
    certified: bool
    rho: float
    rho_certified: float
    t: np.ndarray = field(repr=False)
    lambda_max: float
    margin: float
    solver: str
    status: str
    solve_time_s: float
    certify_time_s: float
    lmi_size: int

    @property
    def time_s(self) -> float:
        """Total wall-clock time."""
        return self.solve_time_s + self.certify_time_s


def _check_weights(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    Ws = [np.asarray(W, dtype=np.float64) for W in weights]
    if not Ws:
        raise LipoptError("lipsdp_neuron needs at least one weight matrix")
    for i, W in enumerate(Ws):
        if W.ndim != 2:
            raise LipoptError(f"weight {i} must be a matrix (out × in), got shape {W.shape}")
        if not np.all(np.isfinite(W)):
            raise LipoptError(f"weight {i} has non-finite entries")
    for i in range(1, len(Ws)):
        if Ws[i].shape[1] != Ws[i - 1].shape[0]:
            raise LipoptError(
                f"weight {i} has {Ws[i].shape[1]} inputs but weight {i - 1} has "
                f"{Ws[i - 1].shape[0]} outputs (weights must be out × in, PyTorch orientation)"
            )
    return Ws


def _stack_A(Ws: list[np.ndarray]) -> tuple[np.ndarray, int, int]:
    """Block matrix ``A`` (N × (n0+N)); returns (A, n0, N)."""
    hidden = Ws[:-1]
    n0 = Ws[0].shape[1]
    N = sum(W.shape[0] for W in hidden)
    A = np.zeros((N, n0 + N))
    r = c = 0
    for W in hidden:
        A[r : r + W.shape[0], c : c + W.shape[1]] = W
        r += W.shape[0]
        c += W.shape[1]
    return A, n0, N


def lipsdp_matrix(
    weights: Sequence[np.ndarray], rho: float, t: np.ndarray, alpha: float = 0.0, beta: float = 1.0
) -> tuple[np.ndarray, float]:
    r"""The LipSDP-Neuron matrix :math:`M(\rho, t)` in floating point, and a bound on its rounding.

    Returns ``(M̂, δ_form)`` with ``‖M̂ − M(ρ, t)‖₂ ≤ δ_form`` for the exact matrix built from the
    given floats (``t`` as passed; clip it first for a valid certificate).
    """
    Ws = _check_weights(weights)
    A, n0, N = _stack_A(Ws)
    m = n0 + N
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if t.shape[0] != N:
        raise LipoptError(f"t has length {t.shape[0]}, expected {N} (one per hidden neuron)")
    Wl = Ws[-1]
    nl = Wl.shape[1]
    ab, apb = alpha * beta, alpha + beta
    At = A * t[:, None]  # T A
    M = np.zeros((m, m))
    absM = np.zeros((m, m))
    if ab != 0.0:
        M -= 2.0 * ab * (A.T @ At)
        absM += 2.0 * abs(ab) * (np.abs(A).T @ np.abs(At))
    # (α+β)(Aᵀ T B + Bᵀ T A): B selects the last N coordinates
    M[:, n0:] += apb * At.T
    M[n0:, :] += apb * At
    absM[:, n0:] += abs(apb) * np.abs(At.T)
    absM[n0:, :] += abs(apb) * np.abs(At)
    idx = np.arange(n0, m)
    M[idx, idx] -= 2.0 * t
    absM[idx, idx] += 2.0 * np.abs(t)
    M[:n0, :n0] -= rho * np.eye(n0)
    absM[:n0, :n0] += abs(rho) * np.eye(n0)
    M[m - nl :, m - nl :] += Wl.T @ Wl
    absM[m - nl :, m - nl :] += np.abs(Wl).T @ np.abs(Wl)
    M = 0.5 * (M + M.T)  # exact symmetry (all terms are symmetric up to rounding)
    K = max(N, Wl.shape[0], 1) + 8
    delta = K * EPS * float(np.linalg.norm(absM)) * 1.01
    return M, delta


def certify_lipsdp(
    weights: Sequence[np.ndarray],
    rho: float,
    t: np.ndarray,
    alpha: float = 0.0,
    beta: float = 1.0,
    *,
    max_increase: float = 1e3,
    max_steps: int = 60,
) -> Certificate:
    """Smallest (up to a factor ~1.5 in the increment) ``ρ' ≥ ρ`` passing the float-safe LMI check.

    ``t`` is clipped at 0. While the check fails, ρ is raised by a Newton-type step: with
    ``(λ, v)`` the computed top eigenpair, ``λ_max(M(ρ + δ)) ≈ λ − δ‖v_in‖²`` (``v_in`` = the input
    block of ``v``), so ``δ = 1.5·(λ + margin)/‖v_in‖²``; the check itself is always the rigorous
    one. Returns a :class:`~lipopt.results.Certificate` of ``√ρ'`` rounded up (``details``: ``rho``
    = ρ', ``lambda_max`` and the ``margin`` of the check); not certified when ρ would exceed
    ``ρ·(1 + max_increase) + 1`` or after ``max_steps`` failed checks (e.g. the hidden-neuron block
    is not negative definite for these multipliers).
    """
    t = np.maximum(np.asarray(t, dtype=np.float64).reshape(-1), 0.0)
    Ws = _check_weights(weights)
    n0 = Ws[0].shape[1]

    def check(r: float) -> tuple[bool, float, float, np.ndarray]:
        M, d_form = lipsdp_matrix(Ws, r, t, alpha, beta)
        m = M.shape[0]
        w, v = sla.eigh(M, subset_by_index=[m - 1, m - 1])
        lam = float(w[0])
        margin = d_form + EIG_ERROR_CONSTANT * m * EPS * float(np.linalg.norm(M)) * 1.01
        return math.isfinite(lam) and lam + margin <= 0.0, lam, margin, v[:, 0]

    rho = max(float(rho), 0.0)
    limit = rho * (1.0 + max_increase) + 1.0
    r = rho
    for _ in range(max(1, max_steps)):
        ok, lam, margin, v = check(r)
        if ok:
            details = {"rho": r, "lambda_max": lam, "margin": margin}
            value = round_up(math.sqrt(r), steps=1)
            return Certificate(value, True, LMI_CHECK, math.sqrt(rho), margin, details)
        if not math.isfinite(lam):
            break
        w_in = float(v[:n0] @ v[:n0])
        step = 1.5 * (lam + margin) / max(w_in, 1e-6)
        r_new = r + max(step, abs(r) * 4 * EPS, 1e-300)
        if r_new > limit:
            break
        r = r_new
    details = {"rho": rho, "lambda_max": lam, "margin": margin, "why": "no ρ' passed the check"}
    return Certificate(math.inf, False, LMI_CHECK, math.sqrt(rho), margin, details)


def _reduce_input(Ws: list[np.ndarray]) -> list[np.ndarray]:
    """Replace ``W_1`` (n1×n0, n0 > n1) by the square ``Rᵀ`` of ``W_1ᵀ = QR`` (exact reduction)."""
    W1 = Ws[0]
    if len(Ws) < 2 or W1.shape[1] <= W1.shape[0]:
        return Ws
    R = np.linalg.qr(W1.T, mode="r")
    return [np.ascontiguousarray(R.T)] + Ws[1:]


def _neuron_columns(A: np.ndarray, n0: int, alpha: float, beta: float) -> sp.csc_matrix:
    """Sparse ``m² × N`` matrix whose column j is ``vec(G_j)`` (column-major), with
    ``G_j = −2αβ a_j a_jᵀ + (α+β)(a_j e_jᵀ + e_j a_jᵀ) − 2 e_j e_jᵀ``."""
    N, m = A.shape
    ab, apb = alpha * beta, alpha + beta
    rows_j, ks = np.nonzero(A)
    vals = A[rows_j, ks]
    hid = n0 + np.arange(N)
    r_list = [hid + hid * m]  # (n0+j, n0+j)
    c_list = [np.arange(N)]
    v_list = [np.full(N, -2.0)]
    if apb != 0.0:
        h = hid[rows_j]
        r_list += [ks + h * m, h + ks * m]  # (k, n0+j) and (n0+j, k)
        c_list += [rows_j, rows_j]
        v_list += [apb * vals, apb * vals]
    if ab != 0.0:
        for j in range(N):
            nz = np.nonzero(A[j])[0]
            kk, ll = np.meshgrid(nz, nz, indexing="ij")
            r_list.append((kk + ll * m).ravel())
            c_list.append(np.full(kk.size, j))
            v_list.append((-2.0 * ab) * np.outer(A[j, nz], A[j, nz]).ravel())
    G = sp.coo_matrix(
        (np.concatenate(v_list), (np.concatenate(r_list), np.concatenate(c_list))),
        shape=(m * m, N),
    )
    return G.tocsc()


def lipsdp_neuron(
    weights: list[np.ndarray],
    *,
    alpha: float = 0.0,
    beta: float = 1.0,
    solver: str | None = None,
    reduce_input: bool = True,
    verbose: bool = False,
    blas_threads_limit: int | None = 1,
    **solver_options,
) -> LipSDPResult:
    r"""LipSDP-Neuron bound on the ℓ2 Lipschitz constant of ``x → W_{L+1} σ(… σ(W_1 x))``.

    Parameters
    ----------
    weights:
        ``[W_1, …, W_{L+1}]``, each ``out × in`` (PyTorch orientation); biases are irrelevant.
    alpha, beta:
        Slope bounds of the activation (ReLU, leaky ReLU with slope ≤ 1, tanh, sigmoid …).
    solver:
        ``"CVXOPT"``, ``"CLARABEL"``, ``"SCS"`` or ``"MOSEK"``; default MOSEK if licensed, else
        CVXOPT (measured fastest and accurate here: on the 2-10-30-20-2 net (62×62 LMI) 0.2–0.4 s
        with CVXOPT, ≈5 s with Clarabel, ≈34 s with SCS at eps 1e-9 (at its default accuracy SCS's
        answer cannot be certified); on MNIST 784-50-10 (reduced 100×100 LMI) 0.4–0.8 s with
        CVXOPT, ≈25 s with Clarabel; unreduced 834×834 with CVXOPT: 150 s). If the solve fails the
        next available back end is tried.
    reduce_input:
        Apply the exact input-space reduction of the module docstring (834 → 100 for MNIST).
    blas_threads_limit:
        BLAS threads during solve and check (default 1: on the loaded 2-core test machine the
        834×834 eigenvalue check took 0.05 s single-threaded and 1–5 s multi-threaded; see
        :func:`lipopt.solvers.mixing.blas_threads`). ``None`` keeps the library default.
    **solver_options:
        Passed to ``cvxpy.Problem.solve``.

    The LMI is assembled as ``E − ρF + Σ_j t_j G_j`` with one sparse column per neuron
    (``G_j = −2αβ a_j a_jᵀ + (α+β)(a_j e_jᵀ + e_j a_jᵀ) − 2 e_j e_jᵀ``, ``a_j`` the j-th row of
    ``A``, ``e_j`` the j-th hidden coordinate), which keeps cvxpy's compilation cheap. The
    solution is then certified on the full, unreduced matrix by :func:`certify_lipsdp`.
    """
    with blas_threads(blas_threads_limit):
        return _lipsdp_neuron(weights, alpha, beta, solver, reduce_input, verbose, solver_options)


def _lipsdp_neuron(
    weights: list[np.ndarray],
    alpha: float,
    beta: float,
    solver: str | None,
    reduce_input: bool,
    verbose: bool,
    solver_options: dict,
) -> LipSDPResult:
    import cvxpy as cp

    if not (math.isfinite(alpha) and math.isfinite(beta)) or alpha > beta:
        raise LipoptError(f"need finite alpha ≤ beta, got alpha={alpha}, beta={beta}")
    Ws = _check_weights(weights)
    t0 = time.perf_counter()
    Wr = _reduce_input(Ws) if reduce_input else Ws
    A, n0, N = _stack_A(Wr)
    m = n0 + N
    Wl = Wr[-1]
    nl = Wl.shape[1]
    E = np.zeros((m, m))
    E[m - nl :, m - nl :] = Wl.T @ Wl
    E = 0.5 * (E + E.T)
    F = np.zeros((m, m))
    F[np.arange(n0), np.arange(n0)] = 1.0

    rho = cp.Variable(nonneg=True)
    cons = []
    expr = E - rho * F
    if N > 0:
        t = cp.Variable(N, nonneg=True)
        Gmat = _neuron_columns(A, n0, alpha, beta)
        expr = expr + cp.reshape(Gmat @ t, (m, m), order="F")
    # ``expr`` is symmetric by construction (a symmetric auxiliary variable with an equality
    # would make CVXOPT's KKT system singular).
    cons.append(expr << 0)
    prob = cp.Problem(cp.Minimize(rho), cons)
    model = CvxpyModel(prob, lambda: ((), (rho.value, t.value if N > 0 else None)), Shape("lmi", 1, m))
    # the table's LMI solvers in turn until one solves (SCS gets the accuracy that makes its answer
    # certifiable: at its default 1e-4 the LMI stays violated by ~1e-1 on the LipSDP examples)
    out = solve(model, solver.upper() if solver else "auto", Limits(verbose=verbose), solver_options,
                fallback=solver is None)
    if rho.value is None:
        raise LipoptError("LipSDP solve failed: " + (out.message or f"no solution (status {out.status})"))
    name = out.solver.split("/")[1]
    solve_time = time.perf_counter() - t0
    rho_val = float(rho.value)
    t_val = np.maximum(np.asarray(t.value).reshape(-1), 0.0) if N > 0 else np.zeros(0)

    t1 = time.perf_counter()
    cert = certify_lipsdp(Ws, rho_val, t_val, alpha, beta)
    cert_time = time.perf_counter() - t1
    return LipSDPResult(
        solver_value=math.sqrt(max(rho_val, 0.0)),
        certified_value=cert.value,
        certified=cert.certified,
        rho=rho_val,
        rho_certified=cert.details["rho"],
        t=t_val,
        lambda_max=cert.details["lambda_max"],
        margin=cert.details["margin"],
        solver=name,
        status=out.status,
        solve_time_s=solve_time,
        certify_time_s=cert_time,
        lmi_size=m,
    )
