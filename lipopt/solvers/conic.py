r"""The one cvxpy adapter: every conic route (Shor, moment relaxations, the ball SDP, LipSDP).

Each of MOSEK (only when importable *and* licensed), Clarabel, SCS and CVXOPT is registered as a
backend (family ``cvxpy``) for the kinds ``shor``, ``moment`` and ``lmi``. A program becomes a
:class:`CvxpyModel` through :func:`to_cvxpy` (one registration per program type: the ±1 Shor
program in its primal or LMI form, the moment relaxation with one moment vector, or a model the
caller built), and :meth:`CvxpyBackend.solve` runs it with the solver's own time-limit and
iteration keywords, maps the status (:func:`~lipopt.solvers.base.status_of`) and reads the duals
back. A failed solve is an ``ERROR`` outcome with the solver's message, never an exception: the
certificate of any dual (or of none) still applies. CVXOPT has no time limit of its own.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..hierarchy.sdp import MomentRelaxation
from ..results import Status
from .base import Limits, Outcome, Shape, ShorProgram, register_backend, solve, status_of

__all__ = ["SDP_SOLVERS", "CvxpyModel", "available_sdp_solvers", "solve_shor_cvxpy", "to_cvxpy"]

#: conic solvers known to lipopt
SDP_SOLVERS: tuple[str, ...] = ("MOSEK", "CLARABEL", "SCS", "CVXOPT")
#: the solvers' keywords for a wall-clock limit and an iteration cap
_TIME_KEY = {"CLARABEL": "time_limit", "SCS": "time_limit_secs"}
_ITER_KEY = {"CLARABEL": "max_iter", "SCS": "max_iters", "CVXOPT": "max_iters"}


@functools.lru_cache(maxsize=1)
def _available() -> tuple[str, ...]:
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a hard dependency
        return ()
    installed = set(cp.installed_solvers())
    return tuple(s for s in SDP_SOLVERS if s in installed and (s != "MOSEK" or _mosek_works()))


def _mosek_works() -> bool:
    """MOSEK counts only if a tiny SDP actually solves (i.e. a license is found)."""
    try:
        import cvxpy as cp

        X = cp.Variable((2, 2), PSD=True)
        prob = cp.Problem(cp.Maximize(X[0, 1]), [cp.diag(X) == 1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob.solve(solver="MOSEK")
        return prob.status == "optimal" and abs(prob.value - 1.0) < 1e-5
    except Exception:
        return False


def available_sdp_solvers() -> list[str]:
    """Conic solvers usable here (cached after the first call)."""
    return list(_available())


def stops_itself(solver: str) -> bool:
    """Whether the conic solver ``solver`` honours a time limit of its own (CVXOPT does not; a
    step that uses it runs in a child process, :mod:`lipopt.limits`). Clarabel must never run in
    a forked child: its thread pool does not survive a fork."""
    return solver.upper() in ("MOSEK", *_TIME_KEY)


def solver_time_limit_options(solver: str, time_limit: float | None) -> dict:
    """cvxpy ``solve`` keywords imposing a wall-clock limit (CVXOPT has none)."""
    if time_limit is None:
        return {}
    if solver == "MOSEK":
        return {"mosek_params": {"MSK_DPAR_OPTIMIZER_MAX_TIME": float(time_limit)}}
    key = _TIME_KEY.get(solver)
    return {key: float(time_limit)} if key else {}


@dataclass
class CvxpyModel:
    """A cvxpy problem and how to read its answer: ``read()`` → ``(duals, primal)`` tuples;
    ``form`` names the formulation when there are several (appended to the solver's name)."""

    kind: ClassVar[str] = "lmi"
    problem: Any
    read: Callable[[], tuple[tuple, tuple]]
    size: Shape | None = None
    form: str = ""

    def shape(self) -> Shape:
        return self.size or Shape("lmi")


@functools.singledispatch
def to_cvxpy(program: Any, solver: str, formulation: str | None = None) -> CvxpyModel:
    """The cvxpy model of ``program`` for ``solver`` (one registration per program type)."""
    raise LipoptError(f"cvxpy cannot solve a {type(program).__name__}")


@to_cvxpy.register
def _(program: CvxpyModel, solver: str, formulation: str | None = None) -> CvxpyModel:
    return program


@to_cvxpy.register
def _(program: ShorProgram, solver: str, formulation: str | None = None) -> CvxpyModel:
    r"""Primal form ``max ⟨C, X⟩, diag X = 1, X ⪰ 0`` (duals: the multipliers of ``diag X = 1``)
    or the LMI form ``min Σ y s.t. Diag(y) − C ⪰ 0`` (duals: ``y``). CVXOPT gets the LMI form by
    default: cvxpy hands it its native ``sdp`` shape in ``n`` variables (the primal form carries
    ``n²`` and took > 600 s at n = 161)."""
    import cvxpy as cp

    form = formulation or ("dual" if solver == "CVXOPT" else "primal")
    if form not in ("primal", "dual"):
        raise LipoptError(f"formulation must be 'primal' or 'dual', got {formulation!r}")
    C = program.C.toarray() if sp.issparse(program.C) else np.asarray(program.C, dtype=np.float64)
    n = C.shape[0]
    if C.ndim != 2 or C.shape[1] != n:
        raise LipoptError(f"C must be a square matrix, got shape {C.shape}")
    if not np.array_equal(C, C.T):
        C = 0.5 * (C + C.T)
    if form == "primal":
        X = cp.Variable((n, n), PSD=True)
        con = cp.diag(X) == 1
        prob = cp.Problem(cp.Maximize(cp.sum(cp.multiply(C, X))), [con])
        return CvxpyModel(prob, lambda: ((con.dual_value,), (X.value,)), form="primal")
    y = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum(y)), [cp.diag(y) - C >> 0])
    return CvxpyModel(prob, lambda: ((y.value,), (None,)), form="dual")


@to_cvxpy.register
def _(program: MomentRelaxation, solver: str, formulation: str | None = None) -> CvxpyModel:
    """One vector ``z`` of the moments after ``y_∅ = 1``: every block is the affine map
    ``reshape(A_C[:, 1:] z + A_C[:, 0], (b, b)) ⪰ 0``, the SA rows ``G[:, 1:] z + G[:, 0] ≥ 0``."""
    import cvxpy as cp

    m = program.n_moments
    z = cp.Variable(m - 1) if m > 1 else None

    def affine(A: sp.csr_matrix):
        a0 = np.asarray(A[:, 0].todense()).ravel()
        return cp.Constant(a0) if z is None else A[:, 1:] @ z + a0

    cons = [cp.reshape(affine(b.linear_map(m)), (b.size, b.size), order="C") >> 0 for b in program.blocks]
    n_psd = len(cons)
    if program.G is not None and program.n_lp_rows:
        cons.append(affine(program.G) >= 0)
    obj = program.c[0] + (program.c[1:] @ z if z is not None else 0.0)
    prob = cp.Problem(cp.Maximize(obj), cons)

    def read() -> tuple[tuple, tuple]:
        Z = [None if c.dual_value is None else np.asarray(c.dual_value, float) for c in cons[:n_psd]]
        mu = cons[n_psd].dual_value if len(cons) > n_psd else None
        return (*Z, None if mu is None else np.asarray(mu, float).ravel()), (None if z is None else z.value,)

    return CvxpyModel(prob, read)


class CvxpyBackend:
    """One conic solver through cvxpy. Settings: ``formulation`` (Shor programs); every other key
    goes to ``cvxpy.Problem.solve`` (e.g. SCS's ``eps_abs``)."""

    family = "cvxpy"
    kinds = ("shor", "moment", "lmi")

    def __init__(self, name: str):
        self.name = name

    def available(self) -> bool:
        return self.name in _available()

    def solve(self, program: Any, limits: Limits, settings: Mapping[str, Any]) -> Outcome:
        import cvxpy as cp

        opts = dict(settings)
        t0 = time.perf_counter()
        model = to_cvxpy(program, self.name, opts.pop("formulation", None))
        opts = {"verbose": limits.verbose, **solver_time_limit_options(self.name, limits.time_limit), **opts}
        if limits.max_iter is not None and self.name in _ITER_KEY:
            opts.setdefault(_ITER_KEY[self.name], int(limits.max_iter))
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        message = ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "solution may be inaccurate": see the status
                model.problem.solve(solver=self.name, **opts)
            raw = str(model.problem.status)
        except (cp.error.SolverError, ArithmeticError) as exc:  # e.g. CVXOPT's ZeroDivisionError
            raw, message = "error", (str(exc).splitlines() or [type(exc).__name__])[0]
        wall = time.perf_counter() - t1
        compile_t = float(getattr(model.problem, "compilation_time", 0.0) or 0.0)
        status = status_of(raw, wall, limits.time_limit)
        duals, primal = model.read()
        stats = model.problem.solver_stats if raw != "error" else None
        iters = int(stats.num_iters) if stats is not None and stats.num_iters is not None else 0
        value = model.problem.value if raw != "error" else None
        value = float(value) if value is not None and np.isfinite(value) else math.nan
        name = f"cvxpy/{self.name}" + (f"/{model.form}" if model.form else "")
        return Outcome(status, value, duals, primal, iters, setup + compile_t, max(wall - compile_t, 0.0),
                       name, message or (raw if status == Status.ERROR else ""))


for _name in SDP_SOLVERS:
    register_backend(CvxpyBackend(_name))


def solve_shor_cvxpy(
    C, solver: str | None = None, time_limit: float | None = None, *, formulation: str | None = None,
    verbose: bool = False, **solver_options,
) -> Outcome:
    r"""The Shor SDP of ``C`` with a conic solver (default: the table's first cvxpy choice),
    certified by :func:`lipopt.certificates.certify_shor`: ``outcome.certificate`` is a valid
    upper bound however inaccurate the solve (extra keywords go to ``cvxpy.Problem.solve``)."""
    from dataclasses import replace

    from ..certificates import certify_shor

    program = ShorProgram(C)
    settings = {**solver_options, **({"formulation": formulation} if formulation else {})}
    out = solve(program, solver.upper() if solver else "auto", Limits(time_limit, None, verbose), settings,
                family="cvxpy")
    return replace(out, certificate=certify_shor(program, out))
