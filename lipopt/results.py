"""The one result, certificate and status types that every bound method returns.

A chain of bound methods produces :class:`BoundResult` rows. Each row states

* ``value`` — an upper bound on the chain's quantity **iff** ``certified`` (a promise: it holds in
  floating point, every residual and rounding error is accounted for);
* ``status`` — how the solve ended (:class:`Status`): a row stopped by a limit can still be
  certified, only looser;
* typed ``timings`` (:class:`Timings`) and ``size`` (:class:`Size`).

Certificate routines (LP dual, SDP dual with an eigenvalue shift, LMI checks, enumeration …) all
return a :class:`Certificate`, which a method turns into its row with :meth:`BoundResult.from_certificate`.
Lower bounds (values at real points of the domain) are :class:`LowerBound`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

import numpy as np


class Status(str, Enum):
    """How a step ended. A ``str`` enum: compares equal to, and serializes as, its value."""

    OPTIMAL = "optimal"  # converged (a branch and bound: closed to its gap tolerance)
    TIME_LIMIT = "time_limit"  # stopped by the time limit; the value is still certified if so marked
    ITERATION_LIMIT = "iteration_limit"
    NODE_LIMIT = "node_limit"
    MEMORY_LIMIT = "memory_limit"
    INACCURATE = "inaccurate"  # the solver finished with reduced accuracy
    REFUSED = "refused"  # not run: too large for the limits, or the method does not apply
    SKIPPED = "skipped"  # left out by the automatic chain (does not fit this request)
    ERROR = "error"  # the solver failed; no bound

    def __str__(self) -> str:
        return self.value

    @property
    def limited(self) -> bool:
        """True when a limit stopped the step early (its bound is valid but may be loose)."""
        return self in (Status.TIME_LIMIT, Status.ITERATION_LIMIT, Status.NODE_LIMIT, Status.MEMORY_LIMIT)

    @property
    def ran(self) -> bool:
        """True when the step produced a number (possibly uncertified)."""
        return self not in (Status.REFUSED, Status.SKIPPED, Status.ERROR)

    @classmethod
    def parse(cls, value: str | Status) -> Status:
        """The status named ``value`` (also accepts a :class:`Status`)."""
        return value if isinstance(value, Status) else cls(str(value))


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds: ``total`` ⊇ ``build`` (relaxation data) + ``solve`` + ``certify``."""

    total: float = 0.0
    build: float = 0.0
    solve: float = 0.0
    certify: float = 0.0

    def __add__(self, other: Timings) -> Timings:
        return Timings(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[float, float, float, float]:
        return (self.total, self.build, self.solve, self.certify)


@dataclass(frozen=True)
class Size:
    """Size of what a step built; ``None`` where it does not apply.

    Counts add up over the POPs of a step (:meth:`merge`); ``largest_*`` and ``memory_bytes``
    take the maximum (``memory_bytes`` is the estimate checked against the memory limit).
    """

    variables: int | None = None
    constraints: int | None = None
    nonzeros: int | None = None
    cliques: int | None = None
    largest_clique: int | None = None
    psd_blocks: int | None = None
    largest_block: int | None = None
    neurons: int | None = None
    pops: int | None = None
    nodes: int | None = None
    solves: int | None = None
    memory_bytes: int | None = None

    _MAXED = ("largest_clique", "largest_block", "memory_bytes")

    def merge(self, other: Size) -> Size:
        """Combine the sizes of two parts of one step (sums; maxima for ``largest_*``/memory)."""
        out = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a is None or b is None:
                out[f.name] = a if b is None else b
            else:
                out[f.name] = max(a, b) if f.name in self._MAXED else a + b
        return Size(**out)

    def to_dict(self) -> dict[str, int]:
        return {f.name: int(v) for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class Certificate:
    """What every certificate routine returns.

    ``value`` is an upper bound on the certified quantity iff ``certified`` (``inf`` when no
    certificate could be made). ``solver_value`` is the solver's own objective (not a bound).
    ``kind`` names the argument (``"LP dual"``, ``"SDP dual + eigenvalue shift"``,
    ``"LMI check (block LDLᵀ)"``, ``"enumeration"``, ``"closed form"`` …); ``margin`` is the total
    allowance added to the solver's number for residuals and rounding; ``details`` holds the
    numbers the argument used (residual norms, clipped multipliers, smallest eigenvalue …).
    """

    value: float
    certified: bool
    kind: str
    solver_value: float | None = None
    margin: float = 0.0
    details: dict[str, float] = field(default_factory=dict)

    @classmethod
    def none(cls, kind: str, solver_value: float | None = None, why: str = "") -> Certificate:
        """No certificate: the value is ``inf``."""
        return cls(math.inf, False, kind, solver_value, math.inf, {"why": why} if why else {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _finite_or_none(self.value),
            "certified": self.certified,
            "kind": self.kind,
            "solver_value": _finite_or_none(self.solver_value),
            "margin": _finite_or_none(self.margin),
            **{k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in self.details.items()},
        }


def _finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class BoundResult:
    """One row of a chain: an upper bound from one method at one level (or none).

    ``level`` is the method's hierarchy index: the Sherali–Adams level k for ``lp``, the moment
    order d for ``sdp``; ``None`` for methods without a hierarchy. ``lower`` is a lower bound the
    method found itself (a branch and bound), from real points. ``derived_from`` lists the rows a
    combined row was computed from (norm conversions, a global bound used locally).
    """

    method: str
    level: int | None
    value: float
    certified: bool
    status: Status
    timings: Timings = field(default_factory=Timings)
    size: Size = field(default_factory=Size)
    solver: str | None = None
    solver_value: float | None = None
    note: str | None = None
    lower: float | None = None
    certificate: str | None = None
    derived_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.status = Status.parse(self.status)
        self.value = float(self.value)
        self.certified = bool(self.certified and np.isfinite(self.value))

    @classmethod
    def from_certificate(
        cls,
        method: str,
        level: int | None,
        cert: Certificate,
        status: Status | str,
        timings: Timings,
        size: Size = Size(),
        solver: str | None = None,
        note: str | None = None,
    ) -> BoundResult:
        return cls(
            method,
            level,
            cert.value,
            cert.certified,
            Status.parse(status),
            timings,
            size,
            solver,
            cert.solver_value,
            note,
            certificate=cert.kind,
        )

    @classmethod
    def refused(cls, method: str, level: int | None, why: str, elapsed: float = 0.0) -> BoundResult:
        """A step that was not run (too large, or the method does not apply): ``why`` says so."""
        return cls(method, level, math.inf, False, Status.REFUSED, Timings(elapsed), note=why)

    @classmethod
    def skipped(cls, method: str, why: str) -> BoundResult:
        return cls(method, None, math.inf, False, Status.SKIPPED, note=why)

    @property
    def label(self) -> str:
        """``method`` or ``method-level`` (e.g. ``lp-3``)."""
        return self.method if self.level is None else f"{self.method}-{self.level}"

    @property
    def gap(self) -> float | None:
        """Relative gap ``(value − lower)/value`` of a method that reports both."""
        if self.lower is None or not np.isfinite(self.value) or self.value <= 0:
            return None
        return max(0.0, (self.value - self.lower) / self.value)

    def with_note(self, note: str) -> BoundResult:
        return replace(self, note=note if not self.note else f"{self.note}; {note}")

    def to_dict(self) -> dict[str, Any]:
        """A flat, strict-JSON-ready dict (non-finite numbers become ``None``)."""
        t = self.timings
        return {
            "method": self.method,
            "level": self.level,
            "value": _finite_or_none(self.value),
            "certified": self.certified,
            "status": self.status.value,
            "time_limited": self.status.limited,
            "time_s": t.total,
            "build_time_s": t.build,
            "solve_time_s": t.solve,
            "certify_time_s": t.certify,
            "solver": self.solver,
            "solver_value": _finite_or_none(self.solver_value),
            "certificate": self.certificate,
            "size": self.size.to_dict(),
            "lower": _finite_or_none(self.lower),
            "gap": self.gap,
            "derived_from": list(self.derived_from),
            "note": self.note,
        }


@dataclass(frozen=True)
class LowerBound:
    """A lower bound on the chain's quantity: a value attained between real points of the domain
    (a secant ``‖N(b) − N(a)‖ / ‖b − a‖``), with the point it was found at."""

    value: float
    method: str
    point: np.ndarray | None = field(default=None, repr=False, compare=False)
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "method": self.method}
