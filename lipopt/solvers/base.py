"""The backend layer: programs, one outcome type, one status mapping, one table of backends.

A relaxation hands a backend a **program** of one *kind*:

* ``"lp"`` — :class:`LinearProgram` ``max c0 + cᵀx`` s.t. ``row_lo ≤ A x ≤ row_hi``,
  ``col_lo ≤ x ≤ col_hi``. ``Outcome.duals = (λ,)``: the row multipliers in the sign convention of
  HiGHS for ``min −cᵀx`` (``λ ≥ 0`` at an active lower row bound, ``c + Aᵀλ`` the reduced costs of
  the column bounds); ``Outcome.primal = (x,)``.
* ``"shor"`` — :class:`ShorProgram` ``max ⟨C, X⟩ + offset`` s.t. ``diag X = 1``, ``X ⪰ 0``.
  ``duals = (y,)``, the multipliers of ``diag X = 1``; ``primal = (V,)``, a factor ``X ≈ VVᵀ``
  when the backend has one.
* ``"moment"`` — :class:`~lipopt.hierarchy.sdp.MomentRelaxation`. ``duals = (Z_1, …, Z_B, μ)``:
  one dual matrix per PSD block, then the Sherali–Adams multipliers (``None`` where missing).
* ``"lmi"`` — a :class:`~lipopt.solvers.conic.CvxpyModel` built by the caller (LipSDP, the ball
  SDP's dual); duals and primal values are the ones its ``read`` returns.

A **backend** (:class:`Backend`) declares its ``name``, ``family`` and the ``kinds`` it accepts and
solves a program under :class:`Limits` into an :class:`Outcome`. :func:`register_backend` adds
one and :func:`add_rule` the shapes it should win (the seam for native first-order or GPU
solvers: one new module, its registration and its rule); :func:`solve` picks the backend from
:data:`RULES` by the program's :class:`Shape` unless one is named. Certificates are made from
the outcome afterwards (:mod:`lipopt.certificates`); a backend that certifies while it iterates
(the mixing method) attaches its :class:`Certificate`.

Measurements behind the rules (2-core machine, one BLAS thread, cvxpy 1.9, Clarabel 0.11,
SCS 3.3, CVXOPT 1.3, HiGHS 1.x; ``benchmarks/shor_solvers.py``):

* **LP** (projected Sherali–Adams): dense 80-80-1 level 2 (52 k non-zeros) simplex 0.66 s, IPM
  0.15 s; dense 20-20-1 level 3 (22 k rows) 1.97 s vs 0.23 s; banded 40-40-1 level 3 12.4 s vs
  0.58 s. Tiny LPs are a tie and simplex returns exact vertex duals: simplex up to 20 000
  non-zeros, interior point (on the dual, see :mod:`lipopt.solvers.highs`) above.
* **Shor** (one ±1 block): mixing method 0.06 s at 161×161 and 0.2 s at 401×401; CVXOPT in the
  LMI form 1.9 s / 81 s (> 600 s in the primal form), SCS 18 s / 414 s (accuracy ~1e-5),
  Clarabel 349 s at 161 (its PSD-cone scaling is dense of order ``b(b+1)/2``: ≈156 GB at 401).
  Overlapping blocks (chordal Shor of a banded 150×150 C): cliques of 6 (145 blocks) Clarabel
  0.14 s, SCS 2.0 s; cliques of 16 Clarabel 14 s ("optimal_inaccurate"), SCS 7 s; cliques of 31
  Clarabel > 300 s, SCS 13 s; CVXOPT failed on all three (singular KKT system through cvxpy).
  Hence Clarabel for blocks ≤ 12, CVXOPT for a few large blocks, SCS for many.
* **Moment relaxations** (one variable per moment, ≈ b²/2 per block: CVXOPT's m×m Schur
  complement is slow, Clarabel's KKT system is dense in the svec entries): 56×56 order-2 block
  Clarabel / SCS / CVXOPT 2.2 / 0.2 / 0.5 s; 121×121 block 205 / 4.3 / 50 s; 40×40 Shor block
  2.1 / 0.3 s. Hence Clarabel up to 500 PSD (svec) entries, SCS above.
* **LMIs with few variables** (LipSDP, the ball SDP's dual): 2-10-30-20-2 LipSDP (62×62) CVXOPT
  0.2–0.4 s, Clarabel ≈5 s, SCS ≈34 s at eps 1e-9 (at its default accuracy SCS's answer cannot be
  certified); MNIST 784-50-10 (reduced 100×100) CVXOPT 0.4–0.8 s, Clarabel ≈25 s; ball SDP of the
  MNIST net (order 102) CVXOPT 0.8 s, Clarabel 13 s, SCS 15 s.

MOSEK, when importable and licensed, comes first for every conic kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..results import Certificate, Status

__all__ = [
    "Backend", "Limits", "LinearProgram", "Outcome", "RULES", "Rule", "Shape", "ShorProgram", "add_rule",
    "backend", "backends", "candidates", "register_backend", "solve", "status_of",
]


# ---------------------------------------------------------------------------------------------
# Programs and outcomes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """What the table looks at: the program's ``kind`` and its sizes."""

    kind: str
    blocks: int = 0
    largest_block: int = 0
    psd_entries: int = 0
    nonzeros: int = 0


@dataclass(frozen=True)
class LinearProgram:
    """``max c0 + cᵀx`` s.t. ``row_lo ≤ A x ≤ row_hi``, ``col_lo ≤ x ≤ col_hi`` (``±inf`` allowed)."""

    kind: ClassVar[str] = "lp"
    c: np.ndarray
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    c0: float = 0.0

    def shape(self) -> Shape:
        return Shape("lp", nonzeros=int(self.A.nnz))


@dataclass(frozen=True)
class ShorProgram:
    """``max ⟨C, X⟩ + offset`` s.t. ``diag X = 1``, ``X ⪰ 0`` (``C`` symmetric, dense or sparse).

    ``error`` bounds, uniformly over feasible ``X``, how far ``⟨C, X⟩ + offset`` may be from the
    exact objective it stands for (rounding when ``C`` was formed), so the certificate adds it.
    """

    kind: ClassVar[str] = "shor"
    C: Any
    offset: float = 0.0
    error: float = 0.0

    def shape(self) -> Shape:
        return Shape("shor", blocks=1, largest_block=int(self.C.shape[0]))


@dataclass(frozen=True)
class Limits:
    """What every backend honours: a wall-clock limit, an iteration cap, output, threads."""

    time_limit: float | None = None
    max_iter: int | None = None
    verbose: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What every backend returns.

    ``value`` is the solver's objective in the program's sense (``nan`` when it has none; not a
    bound), ``duals``/``primal`` as documented per kind (module docstring), ``setup_time`` the
    model construction (cvxpy compilation), ``solve_time`` the solver's run, ``solver`` its name,
    ``message`` why it failed (or the solver's own status word). ``certificate``: set by backends
    that certify as they iterate. ``state`` warm-starts the next solve of a similar program (the
    HiGHS basis, the mixing factor).
    """

    status: Status
    value: float = math.nan
    duals: tuple = ()
    primal: tuple = ()
    iterations: int = 0
    setup_time: float = 0.0
    solve_time: float = 0.0
    solver: str = ""
    message: str = ""
    certificate: Certificate | None = field(default=None, repr=False)
    state: Any = field(default=None, repr=False)


#: raw status words of the backends (HiGHS model status names, cvxpy statuses, the mixing
#: method's) → :class:`Status`; anything else is an error
_STATUS = {
    "kOptimal": Status.OPTIMAL, "optimal": Status.OPTIMAL,
    "kTimeLimit": Status.TIME_LIMIT, "time_limit": Status.TIME_LIMIT,
    "kIterationLimit": Status.ITERATION_LIMIT, "iteration_limit": Status.ITERATION_LIMIT,
    "kMemoryLimit": Status.MEMORY_LIMIT, "optimal_inaccurate": Status.INACCURATE,
}  # fmt: skip


def status_of(raw: str, wall: float = 0.0, time_limit: float | None = None) -> Status:
    """The one status mapping. cvxpy's ``user_limit`` is a time limit when the solve used ≥ 80%
    of ``time_limit``, else an iteration limit."""
    if raw == "user_limit":
        hit = time_limit is not None and wall >= 0.8 * time_limit
        return Status.TIME_LIMIT if hit else Status.ITERATION_LIMIT
    return _STATUS.get(raw, Status.ERROR)


# ---------------------------------------------------------------------------------------------
# Backends and the table
# ---------------------------------------------------------------------------------------------
class Backend(Protocol):
    """A numerical solver. ``settings`` are backend-specific (HiGHS algorithm, SCS accuracy …)."""

    name: str
    family: str
    kinds: tuple[str, ...]

    def available(self) -> bool: ...

    def solve(self, program: Any, limits: Limits, settings: Mapping[str, Any]) -> Outcome: ...


_BACKENDS: dict[str, Backend] = {}


def register_backend(b: Backend) -> Backend:
    """Make ``b`` available by name (case-insensitive) and to the rules that list it."""
    _BACKENDS[b.name.lower()] = b
    return b


def _load() -> None:
    from . import conic, highs, lagrangian, mixing  # noqa: F401  (importing registers them)


def backends() -> dict[str, Backend]:
    """Every registered backend by lower-case name."""
    _load()
    return dict(_BACKENDS)


def backend(name: str) -> Backend:
    found = backends().get(name.lower())
    if found is None:
        names = ", ".join(b.name for b in _BACKENDS.values())
        raise LipoptError(f"unknown solver {name!r}; choose from: {names}")
    return found


@dataclass(frozen=True)
class Rule:
    """For programs of ``kind`` whose shape satisfies ``when``: the backends in order of
    preference, and settings that go with that choice."""

    kind: str
    when: Callable[[Shape], bool]
    prefer: tuple[str, ...]
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _always(_: Shape) -> bool:
    return True


#: the one table (measurements in the module docstring); the first rule that matches wins
RULES: list[Rule] = [
    Rule("lp", lambda s: s.nonzeros <= 20_000, ("highs",), {"highs": {"algorithm": "simplex"}}),
    Rule("lp", _always, ("highs",), {"highs": {"algorithm": "ipm"}}),
    Rule("shor", lambda s: s.largest_block <= 12, ("mixing", "MOSEK", "CLARABEL", "SCS", "CVXOPT")),
    Rule("shor", lambda s: s.blocks <= 4, ("mixing", "MOSEK", "CVXOPT", "SCS", "CLARABEL")),
    Rule("shor", _always, ("mixing", "MOSEK", "SCS", "CLARABEL", "CVXOPT")),
    Rule("shor+cuts", _always, ("lagrangian",)),
    Rule("moment", lambda s: s.psd_entries <= 500, ("MOSEK", "CLARABEL", "SCS", "CVXOPT")),
    Rule("moment", _always, ("MOSEK", "SCS", "CLARABEL", "CVXOPT")),
    Rule("lmi", _always, ("MOSEK", "CVXOPT", "CLARABEL", "SCS")),
]


def add_rule(rule: Rule) -> None:
    """Put ``rule`` first in the table (a new backend's module registers where it should win,
    e.g. ``Rule("moment", lambda s: s.psd_entries > 10**5, ("my-gpu-solver", "SCS"))``)."""
    RULES.insert(0, rule)

#: settings a backend always gets for a kind (the SCS accuracies that make its answers certifiable)
DEFAULT_SETTINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("moment", "scs"): {"eps_abs": 1e-7, "eps_rel": 1e-7},
    ("lmi", "scs"): {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
}


def _rule(shape: Shape) -> Rule:
    rule = next((r for r in RULES if r.kind == shape.kind and r.when(shape)), None)
    if rule is None:
        raise LipoptError(f"no rule for programs of kind {shape.kind!r}")
    return rule


def _available(shape: Shape, family: str | None) -> Iterator[tuple[Backend, Mapping[str, Any]]]:
    """Lazily, the available backends for ``shape`` in the table's order, with their rule's settings
    (availability is probed only as far as the caller looks: the mixing method never imports cvxpy)."""
    rule, table = _rule(shape), backends()
    for name in rule.prefer:
        b = table.get(name.lower())
        if b is not None and (family is None or b.family == family) and b.available():
            yield b, rule.settings.get(name, {})


def candidates(shape: Shape, family: str | None = None) -> list[tuple[Backend, Mapping[str, Any]]]:
    """Available backends for ``shape`` in the table's order (optionally one ``family`` only),
    each with the settings of its rule."""
    out = list(_available(shape, family))
    if not out:
        raise LipoptError(
            f"no solver for {shape.kind} programs is installed: pip install clarabel (or scs, cvxopt)"
        )
    return out


def solve(
    program: Any,
    solver: str = "auto",
    limits: Limits = Limits(),
    settings: Mapping[str, Any] | None = None,
    *,
    family: str | None = None,
    fallback: bool = False,
) -> Outcome:
    """Solve ``program`` with the named backend, or the table's choice for ``solver="auto"``.

    ``settings`` override the rule's and the defaults. With ``fallback`` the next candidate is
    tried when a backend ends in an error (LipSDP's policy).
    """
    shape = program.shape()
    if solver == "auto":
        chosen = _available(shape, family)
    else:
        b = backend(solver)
        if shape.kind not in b.kinds:
            raise LipoptError(f"solver {b.name} does not solve {shape.kind} programs")
        if not b.available():
            avail = [c.name for c, _ in candidates(shape)]
            raise LipoptError(f"solver {b.name} is not available here; available: {', '.join(avail)}")
        by_name = {name.lower(): value for name, value in _rule(shape).settings.items()}
        chosen = iter([(b, by_name.get(b.name.lower(), {}))])
    failures: list[str] = []
    out = None
    for b, rule_settings in chosen:
        defaults = DEFAULT_SETTINGS.get((shape.kind, b.name.lower()), {})
        out = b.solve(program, limits, {**defaults, **rule_settings, **(settings or {})})
        if out.status != Status.ERROR or not fallback:
            return out
        failures.append(f"{b.name}: {out.message}")
    if out is None:
        candidates(shape, family)  # raises: nothing is installed
    return replace(out, message="; ".join(failures))
