r"""``sdp-ball``: ℓ2 bounds of one-hidden-layer networks by the ball-constrained SDP (formulation (b)).

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

Certificate (:func:`lipopt.certificates.certify_ball_dual`)
-----------------------------------------------------------
For *any* ``λ ≥ 0``, ``y`` and any feasible ``M`` (so ``tr M = tr T + N ≤ 1 + N = n₁ + 2``):
``⟨C, Y⟩ = λ tr T + Σ yᵢ Zᵢᵢ − ⟨S, M⟩ ≤ λ + Σ yᵢ + (n₁ + 2)·max(0, −λ_min(S))``.
Floating point: ``S`` is formed exactly (``C/2`` is exact barring underflow, covered by a
``2^-1074`` term per row); the computed ``λ̂_min`` is lowered by ``16·n·eps·‖S‖_F`` (the backward
error model of :func:`lipopt.certificates.certify_shor_dual`); the sum is taken with
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
  (backend ``mixing``), its dual ``y'`` shifted to
  ``Diag(y') ⪰ ĈᵀĈ`` and mapped to ``(λ, y)`` as above, then certified on the full ``S``.
* conic (``"conic"``: the table's choice for LMIs; or ``"CLARABEL"``, ``"SCS"``, ``"CVXOPT"``,
  ``"MOSEK"``): (D) through the cvxpy adapter with ``C``
  replaced by the triangular factor ``R`` of ``C = QR`` (``k = min(n₀, N)`` rows; ``S`` is
  congruent to ``diag(S_R, λI)``), an LMI of order ``k + N ≤ 2N`` in ``N + 1`` variables instead of
  ``n₀ + N``; ``reduce=False`` keeps the full order. Certified on the full ``S`` either way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from ..certificates import certify_ball_dual
from ..errors import LipoptError
from ..floats import EPS, round_up, round_up_array, safe_sum
from ..network import Dense, Network
from ..problems import Domain, derivative_ranges
from ..registry import Context, Method, Suggestion, register
from ..results import BoundResult, Certificate, Size, Status, Timings
from ..solvers.base import Limits, Outcome, Shape, ShorProgram, solve
from .pop import PartBound

__all__ = ["BALL_SOLVERS", "BallOptions", "ball_objective", "ball_sdp_bound"]

#: the solvers of the ball SDP: the mixing method on formulation (a), or the LMI (D)
BALL_SOLVERS = ("mixing", "conic", "CLARABEL", "SCS", "CVXOPT", "MOSEK")


@dataclass(frozen=True)
class BallOptions:
    """Options of ``sdp-ball`` (CLI ``--sdp-ball-*``)."""

    solver: str = field(default="mixing", metadata={
        "help": "mixing (fastest: 0.6 s on MNIST 784-50-10 vs 0.8 s CVXOPT, 13 s Clarabel), conic (the "
                "table's LMI solver) or a conic solver by name", "choices": BALL_SOLVERS})
    reduce: bool = field(default=True, metadata={"help": "conic: QR-reduce C to min(n₀, N) rows"})
    tol: float = field(default=1e-7, metadata={"help": "relative gap tolerance of the mixing method",
                                                "min": 0})


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


Solved = tuple[float, np.ndarray, Outcome, float]  # (λ, y, the backend's outcome, its value)


def _solve_mixing(C: np.ndarray, limits: Limits, tol: float, seed: int) -> Solved:
    """Mixing method on the Shor problem of ``CᵀC``; ``(λ, y, outcome, value)``."""
    Q = C.T @ C
    Q = 0.5 * (Q + Q.T)
    out = solve(ShorProgram(Q), "mixing", limits, {"tol": tol, "seed": seed})
    yp = np.asarray(out.duals[0], dtype=float)
    # shift so that Diag(y') ⪰ Q (up to rounding): the certificate then needs no large shift
    yp = yp - min(float(np.linalg.eigvalsh(np.diag(yp) - Q)[0]), 0.0)
    lam, y = _from_shor_dual(yp)
    return lam, y, out, math.sqrt(max(out.value, 0.0)) if math.isfinite(out.value) else math.nan


def _solve_conic(C: np.ndarray, solver: str, limits: Limits, reduce: bool) -> Solved:
    """(D) with ``C`` QR-reduced, through the cvxpy adapter (the trivial feasible dual when the
    solver returns none)."""
    import cvxpy as cp

    from ..solvers.conic import CvxpyModel

    n0, N = C.shape
    R = np.linalg.qr(C, mode="r") if reduce and n0 > N else C  # C = QR, R is N×N: S ≅ diag(S_R, λI)
    k = R.shape[0]
    lam, y = cp.Variable(nonneg=True), cp.Variable(N)
    S = cp.bmat([[lam * np.eye(k), -0.5 * R], [-0.5 * R.T, cp.diag(y)]])
    prob = cp.Problem(cp.Minimize(lam + cp.sum(y)), [0.5 * (S + S.T) >> 0])
    model = CvxpyModel(prob, lambda: ((), (lam.value, y.value)), Shape("lmi", 1, k + N))
    out = solve(model, "auto" if solver.lower() == "conic" else solver.upper(), limits)
    lv, yv = out.primal if out.primal else (None, None)
    if lv is None or yv is None or not np.all(np.isfinite(yv)) or not math.isfinite(float(lv)):
        lv, yv = _trivial_dual(C)
        out = out if out.status == Status.ERROR else Outcome(Status.ERROR, out.value, solver=out.solver,
                                                             message="no dual values")
    return float(lv), np.asarray(yv, dtype=float).ravel(), out, out.value


def ball_sdp_bound(
    net: Network, c: np.ndarray, domain: Domain | None = None, options: BallOptions = BallOptions(), *,
    time_limit: float | None = None, seed: int = 0,
) -> PartBound:
    """Certified upper bound on ``L₂(cᵀN)`` of a plain one-hidden-layer network by the ball SDP
    (b): the Lipschitz constant itself (no square root to take). ``domain`` restricts the
    derivative ranges to an input box (local constant); ``None`` is global. An early stop
    (``time_limit``) is still certified. ``size``: ``variables`` the neurons with a
    non-degenerate range, ``largest_block`` the moment matrix of (P) (``n₀ + n_free + 1``),
    ``constraints`` the order of the LMI actually solved.
    """
    t0 = time.perf_counter()
    if options.solver not in BALL_SOLVERS and options.solver.upper() not in BALL_SOLVERS:
        choices = ", ".join(BALL_SOLVERS)
        raise LipoptError(f"unknown solver {options.solver!r} for sdp-ball; choose from {choices}")
    C, err, info = ball_objective(net, c, domain)
    n0, N = C.shape
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    size = Size(variables=info["n_free"], psd_blocks=1, largest_block=n0 + N)
    if not np.any(C):
        cert = Certificate(safe_sum([err]), True, "closed form (zero objective)", 0.0)
        elapsed = Timings(time.perf_counter() - t0, build)
        return PartBound(cert.value, cert, Status.OPTIMAL, elapsed, size, "none")
    limits = Limits(time_limit)
    if options.solver.lower() == "mixing":
        lam, y, out, val = _solve_mixing(C, limits, options.tol, seed)
        lmi = N
    else:
        lam, y, out, val = _solve_conic(C, options.solver, limits, options.reduce)
        lmi = (min(n0, N) if options.reduce else n0) + N
    t2 = time.perf_counter()
    cert = certify_ball_dual(C, lam, y, err, val if math.isfinite(val) else None)
    return PartBound(cert.value if cert.certified else math.inf, cert, out.status,
                     Timings(time.perf_counter() - t0, build, t2 - t1, time.perf_counter() - t2),
                     replace(size, constraints=lmi), out.solver)


@register
class SdpBall(Method):
    """The ℓ2 ball-constrained SDP of one-hidden-layer networks, max over the target's rows."""

    name = "sdp-ball"
    summary = "ℓ2 Shor SDP keeping t in the unit ball (one hidden layer), certified"
    Options = BallOptions
    norms = ("2",)
    supports_residual = False

    def applies(self, ctx: Context) -> str | None:
        why = super().applies(ctx)
        if why is None and len(ctx.net.layers) != 2:
            return f"{self.name} handles one-hidden-layer networks only (this one has {ctx.net.depth})"
        return why

    def suggest(self, ctx: Context) -> Suggestion | str:
        if ctx.net.depth != 1 or not ctx.net.is_chain:
            return "the ball SDP is for one-hidden-layer networks"
        if ctx.target.is_network and ctx.net.output_dim > 1:
            why = "ℓ2 Shor SDP in the ball per output, combined into the network's constant (‖(L_k)‖₂, loose)"
            return Suggestion((None,), 3.0, why)
        return Suggestion((None,), 1.0, "ℓ2 Shor SDP with the input direction in the ball (one hidden layer)")

    def stops_at_time_limit(self, ctx: Context, level: int | None, options: BallOptions) -> bool:
        """The mixing method checks the clock; the LMI route's default (``conic``) is CVXOPT."""
        from ..solvers.conic import stops_itself

        return options.solver.lower() == "mixing" or stops_itself(options.solver)

    def estimate(self, ctx: Context, level: int | None, options: BallOptions) -> Size:
        n0, n1 = ctx.net.input_dim, sum(ctx.net.hidden_sizes)
        return Size(psd_blocks=1, largest_block=n0 + n1 + 1, neurons=n1, memory_bytes=48 * (n0 + n1 + 1) ** 2)

    def run(self, ctx: Context, level: int | None, options: BallOptions) -> BoundResult:
        """Every target row under one budget; rows left when it is spent get the trivial feasible
        dual's certificate (valid, loose)."""
        budget = ctx.budget()
        parts, over_time = [], 0
        for c in ctx.target.vectors:
            if ctx.time_limit is not None and budget.expired():
                C, err, _ = ball_objective(ctx.net, c, ctx.domain)
                cert = certify_ball_dual(C, *_trivial_dual(C), err)
                parts.append(PartBound(cert.value, cert, Status.TIME_LIMIT))
                over_time += 1
                continue
            left = None if ctx.time_limit is None else budget.remaining()
            parts.append(ball_sdp_bound(ctx.net, c, ctx.domain, options, time_limit=left, seed=ctx.seed))
        worst = max(parts, key=lambda p: p.value)
        timings = Timings(budget.elapsed(), sum(p.timings.build for p in parts),
                          sum(p.timings.solve for p in parts), sum(p.timings.certify for p in parts))
        svs = [p.solver_value for p in parts]
        combine = ctx.target.combine  # the largest row, or the network's constant from the rows
        value = combine([p.value for p in parts], ctx.norm)
        solver_value = combine(svs, ctx.norm) if None not in svs else None
        row = BoundResult(self.name, None, value, all(p.certified for p in parts), worst.status, timings,
                          replace(worst.size, solves=len(parts)), worst.solver, solver_value,
                          ctx.target.combination_note(ctx.norm), certificate=worst.certificate.kind)
        if over_time:
            row = row.with_note(f"time limit reached: {over_time} of {len(parts)} targets bounded by a "
                                "trivial feasible dual (valid, loose)")
        return row
