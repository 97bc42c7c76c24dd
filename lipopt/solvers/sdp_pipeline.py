r"""SDP bounds for binary POPs: graph → moment hierarchy → solver → float-safe certificate.

Entry point: :func:`sdp_bound` ``(pop, degree, with_lp=…, time_limit=…)`` → :class:`SDPResult`,
whose ``value`` is a certified upper bound on ``max p(u)`` over ``u ∈ {0,1}^n`` **including**
``pop.rounding_slack``.

Routes
------
* **Shor fast path** (``degree = 1``, ``deg p ≤ 2``, no LP rows; the default for one-hidden-layer
  networks — ℓ∞: ``p`` bilinear in ``(t, s)``; ℓ2: ``p = ‖G(s)‖²`` quadratic in ``s``):
  ``p = uᵀQu + qᵀu + const`` (:func:`quadratic_form`) →
  :func:`~lipopt.solvers.shor.shor_from_binary_quadratic` (±1 form of size ``n+1``) →
  :func:`~lipopt.solvers.shor.solve_shor_mixing` (Burer–Monteiro mixing method), certified by
  the eigenvalue shift of the dual ``Diag(y) − C``. The order-1 Lasserre relaxation on ``{0,1}``
  and the ±1 Shor SDP are the same SDP (a linear bijection of the moment matrices).
* **Moment route** (any order, dense or correlative-sparse, optional Sherali–Adams rows):
  :func:`lipopt.hierarchy.sdp.build_moment_relaxation` → cvxpy (one vector variable ``y``; each
  block ``M_C = reshape(A_C y)`` with a sparse 0/1 map ``A_C``) → conic solver → certificate
  from the dual blocks ``Z_C`` and LP multipliers ``μ`` (:func:`certify_moment_dual`).

Multi-layer networks (``deg p = L + 1 ≥ 3`` for ℓ∞, ``2L`` for ℓ2): the order is raised to the
smallest valid ``d = ⌈deg p / 2⌉`` (so ``sdp`` degree 1 on a two-hidden-layer net runs order 2;
``size["order"]`` reports the order used), on the cliques of the sparsity graph or one dense
clique (whichever has fewer PSD entries). Order-2 moment matrices have ``1 + k + k(k−1)/2`` rows
for a clique of ``k`` variables, so this is for small cliques only: above ``max_block`` the
builder refuses with a :class:`~lipopt.errors.LipoptError` naming the size and pointing at
``--method lp``. With ``with_lp=True`` (``sdp+lp``) ``degree`` is the Sherali–Adams level
``k = max(degree, 2, deg p)`` and the PSD part stays at order 1 (Shor; ``psd_order`` changes it):
the SA rows cover the high-degree monomials, which keeps multi-layer problems at order-1 PSD
sizes, and the values are non-increasing in ``degree`` like the LP chain's.

Why not the quadratic lifting. Intermediate gradient variables ``p = s_l ∘ g_l``,
``g_{l−1} = W_lᵀ p`` make every constraint quadratic, so Shor would apply at any depth. But the
lifted Shor SDP sees the products ``t_k p_i`` that the objective needs only through the PSD
coupling, interval bounds ``|p_i| ≤ B_i`` and the *averaged* constraint ``E[p_i] = E[s_i g_i]``;
the products ``t_k · (p_i − s_i g_i) = 0`` that tie them to the network are cubic and absent.
Adding them is the order-2 (or SA level-3) relaxation again. So the order is raised (or SA rows
added): that keeps the tightness that makes an SDP worth solving, and ``sdp+lp`` keeps the PSD
part at Shor size. Measured (``benchmarks/shor_lifting.py``, eight random 4-6-6-1 nets, with the
lifting given every valid quadratic constraint incl. RLT products of the bounds of ``p``): lifted
Shor 1.04–1.97× the exact maximum and above LP-3 on 8/8; order 2 equal to the exact maximum on 8/8.

Certificate (moment route)
--------------------------
For any ``Z_C ⪰ 0`` and ``μ ≥ 0`` and every ``u ∈ {0,1}^n`` (``y(u)_S = u^S``):

.. math::

    p(u) \le p(u) + \sum_C m_C(u)^\top Z_C m_C(u) + μ^\top G y(u) = \sum_S w_S u^S
    \le w_∅ + \sum_{S \ne ∅} \max(w_S, 0),

with ``w = c + Σ_C A_C^*(Z_C) + Gᵀμ`` (``A_C^*(Z)_S = Σ_{α∪β=S} Z_{αβ}``), since ``u^S ∈ {0,1}``.
At an exact dual optimum ``w_S = 0`` for ``S ≠ ∅`` and ``w_∅`` is the SDP value; for a
solver's approximate duals the positive parts of the residual ``w_S`` are paid in full.
Floating point: the solver's ``Z_C`` is symmetrised and projected onto the PSD cone
(eigendecomposition, negative eigenvalues clipped) to ``Ẑ_C``; a rigorous lower bound
``λ̂_min(Ẑ_C) − 16·b·eps·‖Ẑ_C‖_F`` gives ``δ_C ≥ 0`` with ``Ẑ_C + δ_C I ⪰ 0``, so
``m_Cᵀ Ẑ_C m_C ≥ −δ_C ‖m_C‖² ≥ −δ_C b_C`` and ``Σ_C δ_C b_C`` is added. ``μ`` is clipped to
``μ ≥ 0`` (exact). Each ``w_S`` is a sum of ``n_S`` terms (SA coefficients are ±1, exact
products), computed with error ``≤ (n_S + 2)·eps·Σ|terms|``; these bounds are added, the final
sum is correctly rounded (``math.fsum``), padded and rounded upward. Any ``Z``, ``μ`` give a valid
bound, so an early stop (time or iteration limit) still yields a certified, looser value.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..floats import EIG_ERROR_CONSTANT, EPS, safe_sum
from ..hierarchy.sdp import DEFAULT_MAX_BLOCK, MomentRelaxation, build_moment_relaxation
from ..polynomial import Polynomial
from .conic import cvxpy_status, solver_time_limit_options

__all__ = [
    "SDPResult",
    "certify_moment_dual",
    "quadratic_form",
    "sdp_bound",
    "solve_moment_relaxation",
]

#: dense ±1 Shor matrices up to this size; sparse CSR above
DENSE_SHOR_LIMIT = 3000
#: the default conic solver is Clarabel up to this many PSD (svec) entries, SCS above
CLARABEL_MAX_PSD_ENTRIES = 500


@dataclass
class SDPResult:
    """Outcome of :func:`sdp_bound`. ``value`` is an upper bound on ``max p`` iff ``certified``."""

    value: float
    solver_value: float
    certified: bool
    status: str
    build_time_s: float
    solve_time_s: float
    size: dict = field(default_factory=dict)
    solver: str = ""
    route: str = ""
    certify_time_s: float = 0.0


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _unpack(pop) -> tuple[Polynomial, float]:
    if isinstance(pop, Polynomial):
        return pop, 0.0
    return pop.polynomial, float(getattr(pop, "rounding_slack", 0.0))


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


def _conic_solver(name: str | None, relaxation: MomentRelaxation) -> str:
    """The cvxpy solver name: ``name`` if given; MOSEK when ``conic.choose_sdp_solver`` picks it
    (installed and licensed); else Clarabel for small PSD parts, SCS for large ones."""
    import cvxpy as cp

    installed = set(cp.installed_solvers())
    if name is not None:
        name = name.upper()
        if name not in installed:
            avail = ", ".join(sorted(installed))
            raise LipoptError(f"SDP solver {name} is not installed; available: {avail}")
        return name
    size = relaxation.size()
    try:
        from .conic import choose_sdp_solver

        if choose_sdp_solver(size["n_blocks"], size["max_block"]) == "MOSEK":
            return "MOSEK"
    except ImportError:
        pass
    except LipoptError:
        raise LipoptError("no SDP solver is installed: pip install clarabel (or scs)") from None
    # conic.choose_sdp_solver is tuned for the Shor problem (n variables, CVXOPT's Schur
    # complement is cheap there). Moment relaxations have one variable per moment (≈ b²/2 per
    # block), so CVXOPT's m×m Schur complement is slow, and Clarabel factorises a KKT system that
    # is dense in the PSD cone's svec entries. Measured (Clarabel / SCS / CVXOPT): 56×56 order-2
    # block 2.2 / 0.2 / 0.5 s; 121×121 block 205 / 4.3 / 50 s; 40×40 Shor block 2.1 / 0.3 s.
    small = size["psd_entries"] <= CLARABEL_MAX_PSD_ENTRIES
    order = ("CLARABEL", "SCS", "CVXOPT") if small else ("SCS", "CLARABEL", "CVXOPT")
    for cand in order:
        if cand in installed:
            return cand
    raise LipoptError("no SDP solver is installed: pip install clarabel (or scs)")


def _solver_options(solver: str, time_limit: float | None, max_iter: int | None, verbose: bool) -> dict:
    opts: dict = {"verbose": verbose, **solver_time_limit_options(solver, time_limit)}
    if max_iter is not None:
        key = {"CLARABEL": "max_iter", "SCS": "max_iters", "CVXOPT": "max_iters"}.get(solver)
        if key is not None:
            opts[key] = int(max_iter)
    if solver == "SCS":
        opts.update(eps_abs=1e-7, eps_rel=1e-7)
    return opts


# ---------------------------------------------------------------------------------------------
# certificate
# ---------------------------------------------------------------------------------------------
def _project_psd(Z: np.ndarray) -> tuple[np.ndarray, float]:
    """``(Ẑ, δ)``: symmetric PSD projection of ``Z`` in float and a rigorous ``δ ≥ 0`` with
    ``Ẑ + δI ⪰ 0`` (eigensolver error ``≤ 16·b·eps·‖Ẑ‖_F``, as in :mod:`lipopt.solvers.shor`)."""
    Z = np.asarray(Z, dtype=float)
    b = Z.shape[0]
    Zs = 0.5 * (Z + Z.T)
    w, V = np.linalg.eigh(Zs)
    Zp = (V * np.maximum(w, 0.0)) @ V.T
    Zp = 0.5 * (Zp + Zp.T)  # exactly symmetric (fl(a + b) = fl(b + a))
    lam = float(np.linalg.eigvalsh(Zp)[0])
    margin = EIG_ERROR_CONSTANT * b * EPS * float(np.linalg.norm(Zp)) * (1 + 1e-6)
    return Zp, max(0.0, -(lam - margin))


def certify_moment_dual(
    relaxation: MomentRelaxation,
    Z: list[np.ndarray | None],
    mu: np.ndarray | None = None,
) -> tuple[float, dict]:
    """Rigorous upper bound on ``max_{u∈{0,1}^n} cᵀy(u)`` from any dual blocks and multipliers.

    ``Z[i]`` pairs with ``relaxation.blocks[i]`` (``None`` = zero), ``mu`` with the SA rows. See
    the module docstring for the identity and the float error terms. Returns ``(bound, info)``
    with ``info``: ``residual_pos`` (``Σ_{S≠∅} max(w_S, 0)``), ``psd_shift`` (``Σ δ_C b_C``),
    ``float_margin`` and ``w0``.
    """
    m = relaxation.n_moments
    c = relaxation.c
    w = c.copy()
    absw = np.abs(c)
    nterms = np.ones(m)
    shift_terms: list[float] = []
    for block, Zb in zip(relaxation.blocks, Z, strict=True):
        if Zb is None:
            continue
        Zb = np.asarray(Zb, dtype=float)
        if Zb.shape != (block.size, block.size) or not np.all(np.isfinite(Zb)):
            return math.inf, {"reason": "dual block missing or not finite"}
        Zp, delta = _project_psd(Zb)
        ids = block.ids.ravel()
        w += np.bincount(ids, weights=Zp.ravel(), minlength=m)
        absw += np.bincount(ids, weights=np.abs(Zp).ravel(), minlength=m)
        nterms += np.bincount(ids, minlength=m)
        shift_terms.append(delta * block.size)
    if relaxation.G is not None and relaxation.n_lp_rows:
        if mu is None:
            mu = np.zeros(relaxation.n_lp_rows)
        mu = np.maximum(np.asarray(mu, dtype=float).ravel(), 0.0)
        if mu.shape != (relaxation.n_lp_rows,) or not np.all(np.isfinite(mu)):
            return math.inf, {"reason": "LP multipliers missing or not finite"}
        Gt = relaxation.G.T.tocsr()
        w += Gt @ mu
        absw += abs(Gt) @ mu
        nterms += np.diff(Gt.indptr)
    # exact-arithmetic w_S lies within err_S of the computed one
    err = (nterms + 2.0) * EPS * absw
    pos = np.maximum(w[1:], 0.0)
    terms = [float(w[0]), *pos.tolist(), *err.tolist(), *shift_terms]
    bound = safe_sum(terms)
    info = {
        "w0": float(w[0]),
        "residual_pos": float(pos.sum()),
        "psd_shift": float(sum(shift_terms)),
        "float_margin": float(err.sum()),
    }
    return bound, info


# ---------------------------------------------------------------------------------------------
# conic solve
# ---------------------------------------------------------------------------------------------
@dataclass
class _ConicOutcome:
    status: str
    solver_value: float
    Z: list[np.ndarray | None]
    mu: np.ndarray | None
    solver: str
    compile_time_s: float
    solve_time_s: float


def solve_moment_relaxation(
    relaxation: MomentRelaxation,
    *,
    solver: str | None = None,
    time_limit: float | None = None,
    max_iter: int | None = None,
    verbose: bool = False,
    solver_options: dict | None = None,
) -> _ConicOutcome:
    """Solve the moment relaxation with cvxpy; returns status, value and the dual ``Z_C``, ``μ``.

    ``y_∅ = 1`` is substituted: ``y = (1, z)``, every block is the affine map
    ``reshape(A_C[:, 1:] z + A_C[:, 0], (b, b))`` and the SA rows ``G[:, 1:] z + G[:, 0] ≥ 0``.
    """
    import cvxpy as cp

    name = _conic_solver(solver, relaxation)
    m = relaxation.n_moments
    t0 = time.perf_counter()
    z = cp.Variable(m - 1) if m > 1 else None

    def affine(A: sp.csr_matrix):
        a0 = np.asarray(A[:, 0].todense()).ravel()
        if z is None:
            return cp.Constant(a0)
        return A[:, 1:] @ z + a0

    cons = []
    for block in relaxation.blocks:
        b = block.size
        M = cp.reshape(affine(block.linear_map(m)), (b, b), order="C")
        cons.append(M >> 0)
    n_psd = len(cons)
    if relaxation.G is not None and relaxation.n_lp_rows:
        cons.append(affine(relaxation.G) >= 0)
    obj = relaxation.c[0] + (relaxation.c[1:] @ z if z is not None else 0.0)
    prob = cp.Problem(cp.Maximize(obj), cons)
    opts = _solver_options(name, time_limit, max_iter, verbose)
    opts.update(solver_options or {})
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "solution may be inaccurate": see status
            prob.solve(solver=name, **opts)
    except cp.error.SolverError as exc:
        wall = time.perf_counter() - t1
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _ConicOutcome(f"error: {msg}", math.nan, [None] * n_psd, None, f"cvxpy/{name}", build, wall)
    wall = time.perf_counter() - t1
    compile_t = float(getattr(prob, "compilation_time", 0.0) or 0.0)
    status = cvxpy_status(prob.status, wall, time_limit)
    Z = [None if con.dual_value is None else np.asarray(con.dual_value, float) for con in cons[:n_psd]]
    mu = None
    if len(cons) > n_psd and cons[n_psd].dual_value is not None:
        mu = np.asarray(cons[n_psd].dual_value, float).ravel()
    val = prob.value if prob.value is not None and np.isfinite(prob.value) else math.nan
    return _ConicOutcome(
        status, float(val), Z, mu, f"cvxpy/{name}", build + compile_t, max(wall - compile_t, 0.0)
    )


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def sdp_bound(
    pop,
    degree: int = 1,
    *,
    with_lp: bool = False,
    time_limit: float | None = None,
    solver: str | None = None,
    shor_solver: str = "auto",
    lp_solver: str = "auto",
    lagrangian_rounds: int = 50,
    clique_method: str = "auto",
    lp_level: int | None = None,
    psd_order: int = 1,
    max_block: int = DEFAULT_MAX_BLOCK,
    max_bytes: float | None = None,
    max_iter: int | None = None,
    tol: float = 1e-7,
    seed: int = 0,
    verbose: bool = False,
    solver_options: dict | None = None,
) -> SDPResult:
    """Certified SDP upper bound on ``max p(u)``, ``u ∈ {0,1}^n`` (plus ``pop.rounding_slack``).

    Args:
        pop: a :class:`~lipopt.problems.BinaryPOP` (or a bare :class:`Polynomial`, slack 0).
        degree: without LP rows the moment order ``d`` (1 = Shor), raised to ``⌈deg p/2⌉``; with
            ``with_lp`` the Sherali–Adams level ``k = max(degree, 2, deg p)``.
        with_lp: ``sdp+lp``: order-``psd_order`` moment matrices plus the Sherali–Adams rows of
            level ``k`` (``lp_level`` overrides it) on the sparsity-graph (min-degree) cliques.
        time_limit: seconds for the solver (mixing method or conic solver); an early stop still
            gives a certified (looser) value.
        solver: cvxpy solver name for the conic route (default: ``conic.choose_sdp_solver`` or
            Clarabel).
        shor_solver: ``"auto"``/``"mixing"`` (low-rank mixing method for quadratic POPs at order 1)
            or ``"conic"`` (always the moment route).
        psd_order: moment order of the PSD blocks with ``with_lp`` (default 1 = Shor).
        lp_solver: for ``with_lp`` on quadratic POPs at level 2: ``"conic"`` (exact optimum of
            Shor + SA rows on the clique pairs), ``"lagrangian"`` (SA rows of the monomial pairs
            dualised, multipliers by projected subgradient over warm-started mixing solves; every
            round certified, the best is kept), ``"auto"``: conic while the moment matrix has at
            most ``CLARABEL_MAX_PSD_ENTRIES`` entries, Lagrangian above.
        lagrangian_rounds: subgradient rounds of the Lagrangian route.
        clique_method: ``"auto"`` (sparse cliques unless one dense block is smaller), ``"dense"``,
            or a :mod:`lipopt.graph` heuristic.
        max_block: largest moment matrix allowed (else LipoptError).
        max_bytes: memory budget of the moment route (estimated before building; else LipoptError).
        max_iter: iteration cap (mixing sweeps or conic iterations).
        tol: relative gap tolerance of the mixing method.
        seed, verbose, solver_options: passed to the solver.
    """
    poly, slack = _unpack(pop)
    poly = poly.reduce_binary()
    if int(degree) != degree or degree < 1:
        raise LipoptError(f"the SDP order must be a positive integer, got {degree!r}")
    degree = int(degree)
    deg = poly.degree
    t0 = time.perf_counter()
    if len(poly.variables_used()) == 0:
        const = poly.constant_term
        return SDPResult(safe_sum([const, slack]), const, True, "optimal", 0.0, 0.0,
                         {"order": degree, "n_vars": 0}, "none", "constant")

    if shor_solver not in ("auto", "mixing", "conic"):
        raise LipoptError(f"unknown shor_solver {shor_solver!r}; choose auto, mixing or conic")
    if not with_lp and degree == 1 and deg <= 2 and shor_solver != "conic":
        return _shor_mixing(poly, slack, time_limit, max_iter, tol, seed, t0)
    if lp_solver not in ("auto", "conic", "lagrangian"):
        raise LipoptError(f"unknown lp_solver {lp_solver!r}; choose auto, conic or lagrangian")
    level = None
    if with_lp:
        level = int(lp_level) if lp_level is not None else max(2, deg, degree)
    if with_lp and psd_order == 1 and deg <= 2 and level == 2:
        n_used = len(poly.variables_used())
        big = (n_used + 1) * (n_used + 2) // 2 > CLARABEL_MAX_PSD_ENTRIES
        if lp_solver == "lagrangian" or (lp_solver == "auto" and big and n_used <= DENSE_SHOR_LIMIT):
            return _shor_sa_lagrangian(
                poly, slack, time_limit=time_limit, rounds=lagrangian_rounds, tol=tol, seed=seed, t0=t0
            )

    order = int(psd_order) if with_lp else max(degree, math.ceil(deg / 2))
    rel = build_moment_relaxation(
        poly, order, clique_method=clique_method, lp_level=level, max_block=max_block, max_bytes=max_bytes
    )
    build = time.perf_counter() - t0
    remaining = None if time_limit is None else max(time_limit - build, 1e-3)  # the limit covers the build
    out = solve_moment_relaxation(
        rel, solver=solver, time_limit=remaining, max_iter=max_iter, verbose=verbose,
        solver_options=solver_options,
    )
    t2 = time.perf_counter()
    bound, info = certify_moment_dual(rel, out.Z, out.mu) if any(z is not None for z in out.Z) or (
        out.mu is not None) else (math.inf, {})
    cert_t = time.perf_counter() - t2
    value = safe_sum([bound, slack]) if math.isfinite(bound) else math.inf
    size = rel.size()
    size.update({"n_vars": int(len(poly.variables_used())), "n_cliques": len(rel.blocks)})
    return SDPResult(
        value=value,
        solver_value=out.solver_value,
        certified=math.isfinite(value),
        status=out.status,
        build_time_s=build + out.compile_time_s,
        solve_time_s=out.solve_time_s + cert_t,
        size=size,
        solver=out.solver,
        route="moment+sa" if with_lp else "moment",
        certify_time_s=cert_t,
    )


def _shor_mixing(
    poly: Polynomial, slack: float, time_limit: float | None, max_iter: int | None, tol: float, seed: int,
    t0: float,
) -> SDPResult:
    """Order-1 (Shor) bound of a quadratic binary POP by the mixing method, certified."""
    from .shor import solve_binary_quadratic_shor

    used = poly.variables_used()
    sub, _ = poly.restrict(used)  # drop variables that do not occur (they do not change max p)
    Q, q, const = quadratic_form(sub)
    build = time.perf_counter() - t0
    kwargs: dict = {"tol": tol, "seed": seed, "time_limit": time_limit}
    if max_iter is not None:
        kwargs["max_iter"] = int(max_iter)
    t1 = time.perf_counter()
    res = solve_binary_quadratic_shor(Q, q, const, **kwargs)
    solve = time.perf_counter() - t1
    value = safe_sum([res.certified_value, slack]) if res.certified else math.inf
    n = len(used)
    size = {
        "order": 1,
        "n_vars": int(n),
        "n_blocks": 1,
        "max_block": int(n + 1),
        "n_constraints": int(n + 1),
        "iterations": int(res.iterations),
    }
    return SDPResult(
        value=value,
        solver_value=float(res.primal_value),
        certified=bool(res.certified) and math.isfinite(value),
        status=res.status,
        build_time_s=build,
        solve_time_s=solve,
        size=size,
        solver=res.solver,
        route="shor",
    )



def _sa_pair_cuts(Q: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Level-2 SA rows on the supports ``{i, j}`` of the degree-2 monomials, in ±1 variables.

    With ``u_i = (1 + x_z x_i)/2`` (``x_z`` the homogenising variable), the four products
    ``u_i u_j``, ``u_i(1 − u_j)``, ``(1 − u_i)u_j``, ``(1 − u_i)(1 − u_j)`` are
    ``(1 + a x_z x_i)(1 + b x_z x_j)/4`` for ``a, b = ±1``; each is ≥ 0 on ``{±1}``, and in Shor
    variables the row reads ``T_{ij,ab}(X) = 1 + a X_zi + b X_zj + ab X_ij ≥ 0``.
    Returns ``(i, j, a, b)`` per cut.
    """
    I, J = np.nonzero(Q)
    signs = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    P = len(I)
    return np.repeat(I, 4), np.repeat(J, 4), np.tile(signs[:, 0], P), np.tile(signs[:, 1], P)


def _shor_sa_lagrangian(
    poly: Polynomial,
    slack: float,
    *,
    time_limit: float | None,
    rounds: int,
    tol: float,
    seed: int,
    t0: float,
    inner_sweeps: int | None = None,
) -> SDPResult:
    r"""Shor + level-2 SA rows (``sdp+lp``) for quadratic POPs, by Lagrangian relaxation of the rows.

    For multipliers ``μ ≥ 0`` of the rows ``T_k(X) = 1 + ⟨B_k, X⟩ ≥ 0`` (:func:`_sa_pair_cuts`)
    and every ``x ∈ {±1}^N`` (``X = xxᵀ``):

    .. math::  xᵀCx \le xᵀCx + Σ_k μ_k T_k(xxᵀ) \le \mathrm{SDP}(C + Σ_k μ_k B_k) + Σ_k μ_k,

    with the Shor value SDP(·) over ``diag X = 1, X ⪰ 0``, certified by the mixing method's
    eigenvalue shift. ``g(μ) = SDP(C + Σ μ_k B_k) + Σ μ_k`` is convex with subgradient
    ``T(X*)``; it is decreased by projected subgradient steps (Polyak step towards the best
    rounding lower bound, halved after two rounds without progress, restarting from the best
    multipliers after four; stop after 10 rounds without relative progress ``tol``), each inner
    Shor problem warm-started from the previous factor and solved to a gap well below the room
    between the bound and the lower bound (at most ``inner_sweeps`` sweeps, default
    ``max(25, 4000/N)``). Every round's value is a certified
    bound (any ``μ ≥ 0`` is valid); the best is returned. Float rigour: the error of forming
    ``C + Σ μ_k B_k`` (``B_k`` entries ``±1/2``, exact products) is bounded entrywise by
    ``(count + 1)·eps·Σ|terms|`` and summed (``|X_ij| ≤ 1``); ``Σ μ_k`` and the offset are summed
    with ``math.fsum`` and padded (:func:`lipopt.floats.safe_sum`).
    """
    from .shor import shor_from_binary_quadratic, solve_shor_mixing

    used = poly.variables_used()
    sub, _ = poly.restrict(used)
    Q, q, const = quadratic_form(sub)
    C, offset, err = shor_from_binary_quadratic(Q, q, const, return_error=True)
    C = np.asarray(C, dtype=float)
    N = C.shape[0]
    z = N - 1
    ci, cj, ca, cb = _sa_pair_cuts(np.asarray(Q), z)
    K = len(ci)
    zc = np.full(K, z)
    flat = np.concatenate([ci * N + zc, zc * N + ci, cj * N + zc, zc * N + cj, ci * N + cj, cj * N + ci])
    half = np.concatenate([ca, ca, cb, cb, ca * cb, ca * cb]) * 0.5
    count = np.bincount(flat, minlength=N * N)
    absC = np.abs(C).ravel()
    rng = np.random.default_rng(seed)
    if inner_sweeps is None:  # ≈ 4000 row updates per round (the sweep cost is a loop over rows)
        inner_sweeps = max(25, 4000 // N)
    build = time.perf_counter() - t0

    def lagrangian(mu: np.ndarray) -> tuple[np.ndarray, float]:
        w = np.tile(mu, 6) * half  # exact: μ·(±1/2)
        add = np.bincount(flat, weights=w, minlength=N * N)
        mass = np.bincount(flat, weights=np.abs(w), minlength=N * N)
        Cm = C + add.reshape(N, N)
        ebound = float(((count + 2.0) * EPS * (mass + absC)).sum())
        return Cm, ebound

    def cut_values(V: np.ndarray) -> np.ndarray:
        x0 = V[z]
        return 1.0 + ca * (V[ci] @ x0) + cb * (V[cj] @ x0) + ca * cb * np.einsum("ij,ij->i", V[ci], V[cj])

    def rounding_lower(V: np.ndarray) -> float:
        X = np.sign(V @ rng.standard_normal((V.shape[1], 16)))
        X[X == 0] = 1.0
        U = 0.5 * (1.0 + X[z] * X[:z])
        return float(np.max(np.einsum("ik,ij,jk->k", U, Q, U) + q @ U + const))

    def certified(res, mu: np.ndarray, ebound: float) -> float:
        if not res.certified:
            return math.inf
        return safe_sum([res.certified_value, offset, err, math.fsum(mu.tolist()), ebound, slack])

    t1 = time.perf_counter()
    mu = np.zeros(K)
    # Under a budget the plain Shor start gets at most 40% of it: the rows, not a tighter Shor
    # certificate, are what lower the bound (every round is certified on its own).
    first_limit = None if time_limit is None else 0.4 * time_limit
    res = solve_shor_mixing(C, tol=max(tol, 1e-6), seed=seed, time_limit=first_limit)
    V = res.factor
    best = certified(res, mu, 0.0)
    best_solver = res.primal_value + offset
    status = res.status  # of the plain Shor solve (used when there are no cuts)
    lower = rounding_lower(V)
    theta, fails, done = 0.5, 0, 0
    history = [best]
    stop = "iteration_limit" if K else status
    val = best
    best_mu, best_V = mu, V
    last_round = 0.0
    for _ in range(rounds if K else 0):
        t_round = time.perf_counter()
        if time_limit is not None and t_round - t1 + last_round > time_limit:
            stop = "time_limit"  # the next round would not finish in time
            break
        T = cut_values(V)
        d = np.where((mu <= 0.0) & (T > 0.0), 0.0, T)  # projected subgradient of g at μ
        nd = float(d @ d)
        if nd == 0.0:
            stop = "optimal"  # no violated row and no slack multiplier: μ is optimal for X
            break
        gap = max(val - lower, 1e-12 * max(1.0, abs(val))) if math.isfinite(val) else abs(best - lower)
        mu = np.maximum(mu - theta * gap / nd * d, 0.0)
        Cm, ebound = lagrangian(mu)
        remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - t1), 1e-3)
        # inner accuracy well below the room left between the bound and the best lower bound
        inner_tol = min(1e-4, max(0.02 * (best - lower) / max(abs(best), 1e-300), 1e-9))
        res = solve_shor_mixing(
            Cm, tol=inner_tol, seed=seed, V0=V, max_iter=inner_sweeps, time_limit=remaining
        )
        V = res.factor
        val = certified(res, mu, ebound)
        lower = max(lower, rounding_lower(V))
        done += 1
        if val < best - 1e-9 * abs(best):
            best, fails, best_mu, best_V = val, 0, mu, V
            best_solver = res.primal_value + offset + float(mu.sum())
        else:
            fails += 1
            if fails % 2 == 0:
                theta *= 0.5
            if fails >= 4:  # lost: restart from the best multipliers with the shorter step
                mu, V, val, fails = best_mu, best_V, best, 0
        history.append(best)
        last_round = time.perf_counter() - t_round
        # stop when the last 10 rounds improved the bound by less than tol (relative)
        if done >= 15 and history[-11] - best <= max(tol, 1e-6) * abs(best):
            stop = "optimal"
            break
    solve = time.perf_counter() - t1
    n = len(used)
    size = {
        "order": 1,
        "n_vars": int(n),
        "n_blocks": 1,
        "max_block": int(n + 1),
        "n_lp_rows": int(K),
        "n_constraints": int(n + 1 + K),
        "rounds": int(done),
    }
    return SDPResult(
        value=best,
        solver_value=float(best_solver),
        certified=math.isfinite(best),
        status=stop,
        build_time_s=build,
        solve_time_s=solve,
        size=size,
        solver="mixing+lagrangian",
        route="shor+sa-lagrangian",
    )
