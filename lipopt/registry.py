"""The method registry: every bound method is one registered :class:`Method` object.

A method (``naive``, ``lp``, ``sdp``, ``lipsdp``, a branch and bound …) declares

* ``name``, a one-line ``summary`` and which requests it accepts (:meth:`Method.applies`);
* ``hierarchy``: ``"level"`` (Sherali–Adams level k) or ``"order"`` (moment order d) when its
  steps are indexed by a hierarchy, else ``None`` (:meth:`Method.levels` gives the defaults);
* typed ``Options`` (a frozen dataclass; each field's ``metadata["help"]`` documents it,
  ``metadata["choices"]`` / ``metadata["min"]`` restrict it, and ``__post_init__`` may check
  combinations, raising :class:`~lipopt.errors.LipoptError`). The CLI flags ``--{group}-{field}``, the sweep
  spec's ``[options.{group}]`` tables and :func:`parse_options` are all generated from them;
* :meth:`Method.estimate` — the memory a step would take, checked against the memory limit
  *before* anything is built — and :meth:`Method.run`, which builds, solves through a backend
  and certifies, and returns one :class:`~lipopt.results.BoundResult`.

Everything that lists methods — the chain, the CLI's choices and flags, sweep validation, plots,
:func:`lipopt.models.lipschitz.verify_stack` — reads :func:`methods`. Adding a method is one new
module in :mod:`lipopt.methods` with a ``@register`` class (and its import in that package).
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, ClassVar

from .errors import LipoptError
from .progress import SILENT, Progress  # noqa: F401  (re-exported: lipopt.registry.Progress)
from .results import BoundResult, Size

if typing.TYPE_CHECKING:
    from .network import Network
    from .problems import Domain, LipschitzProblem, Target


@dataclass(frozen=True)
class NoOptions:
    """A method without options."""


@dataclass
class Budget:
    """The limits of one step: ``time_limit`` seconds from ``start`` and ``max_memory_bytes``."""

    time_limit: float | None
    max_memory_bytes: float
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        """Seconds left (``inf`` without a time limit, never below 0)."""
        if self.time_limit is None:
            return math.inf
        return max(0.0, self.time_limit - self.elapsed())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def check_memory(self, what: str, estimate_bytes: float) -> None:
        """Refuse (raise) when ``estimate_bytes`` exceeds the memory limit."""
        if estimate_bytes > self.max_memory_bytes:
            raise LipoptError(
                f"{what} would need about {estimate_bytes / 1e9:.1f} GB, above the memory limit of "
                f"{self.max_memory_bytes / 1e9:.1f} GB; raise --max-memory or choose a smaller step"
            )


class Context:
    """One chain's request and what its steps share (computed once, on first use).

    ``net``, ``norm`` (``"inf"``, ``"2"``, ``"1"``), ``target``, ``domain`` (``None``: global),
    ``seed``, ``time_limit`` (per step), ``max_memory_bytes``, ``progress``.
    """

    def __init__(
        self,
        net: Network,
        norm: str,
        target: Target,
        domain: Domain | None,
        *,
        seed: int = 0,
        time_limit: float | None = None,
        max_memory_bytes: float = 8e9,
        progress: Progress = SILENT,
    ) -> None:
        self.net, self.norm, self.target, self.domain = net, norm, target, domain
        self.seed, self.time_limit, self.max_memory_bytes = seed, time_limit, max_memory_bytes
        self.progress = progress
        self._problem: LipschitzProblem | LipoptError | None = None
        #: results several steps share, keyed by what computed them (e.g. the lower-bound search)
        self.memo: dict[Any, Any] = {}

    @property
    def is_local(self) -> bool:
        return self.domain is not None

    @cached_property
    def ranges(self) -> list:
        """Per activation site, the derivative range ``[σ'_lo, σ'_hi]`` over the domain
        (one interval/CROWN pass shared by every step)."""
        from .problems import derivative_ranges

        return derivative_ranges(self.net, self.domain)

    @cached_property
    def unstable_neurons(self) -> int:
        """Hidden neurons whose derivative range over the domain is not a single value (the binary
        variables of the POPs, the neurons a branch and bound splits)."""
        import numpy as np

        return sum(int(np.count_nonzero(np.asarray(lo) < np.asarray(hi))) for lo, hi in self.ranges)

    def problem(self) -> LipschitzProblem:
        """The norm-gradient POPs of the request, built once; a build that was refused (too many
        paths, too large a square expansion) raises the same error for every step that asks."""
        if self._problem is None:
            from .problems import build_problem

            try:
                self._problem = build_problem(
                    self.net, self.norm, self.target, self.domain, ranges=self.ranges
                )
            except LipoptError as exc:
                self._problem = exc
        if isinstance(self._problem, LipoptError):
            raise self._problem
        return self._problem

    @property
    def built_problem(self) -> LipschitzProblem | None:
        """The POPs if a step built them (``None`` if none did or the build was refused)."""
        return None if isinstance(self._problem, LipoptError) else self._problem

    def adapted(self, norm: str | None = None, domain: Any = ...) -> Context:
        """The same request with another norm and/or domain (``None``: global), sharing the
        limits, seed and progress (a global or other-norm bound turned into this one's)."""
        return Context(
            self.net,
            self.norm if norm is None else norm,
            self.target,
            self.domain if domain is ... else domain,
            seed=self.seed,
            time_limit=self.time_limit,
            max_memory_bytes=self.max_memory_bytes,
            progress=self.progress,
        )

    @property
    def network_quantity(self) -> bool:
        """True when the chain bounds the network's ℓp→ℓp constant (no scalar target asked for)."""
        return self.target.is_network and len(self.target.vectors) > 1

    def budget(self) -> Budget:
        """A fresh budget for a step that starts now."""
        return Budget(self.time_limit, self.max_memory_bytes)


@dataclass(frozen=True)
class Suggestion:
    """What a method proposes for the automatic chain: the levels to run, a ``rank`` (lower runs
    first and is expected tighter: 0 exact, 1 tight, 2 good, 3 loose) and one line of why."""

    levels: tuple[int | None, ...]
    rank: float
    reason: str
    cheap: bool = False  # a closed form or a few milliseconds: always worth running beside the rest


class Method:
    """Base class of a registered bound method (see the module docstring)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    #: prefix of the CLI flags and key of the options table; methods may share one
    options_group: ClassVar[str | None] = None
    #: "level" (lp) or "order" (sdp) when steps are indexed by a hierarchy, else None
    hierarchy: ClassVar[str | None] = None
    #: "upper" for upper bounds, "lower" for the lower-bound search
    kind: ClassVar[str] = "upper"
    #: the input norms the method bounds
    norms: ClassVar[tuple[str, ...]] = ("inf", "2", "1")
    #: whether it bounds global constants, local ones (an input box), residual networks
    supports_global: ClassVar[bool] = True
    supports_local: ClassVar[bool] = True
    supports_residual: ClassVar[bool] = True
    #: False when the solver cannot be stopped from outside: the chain then runs each step in a
    #: child process under the time and memory limits (:mod:`lipopt.limits`)
    interruptible: ClassVar[bool] = True
    #: methods whose bound this one's first step already gives: the automatic chain does not run
    #: them beside this one
    subsumes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def group(cls) -> str:
        return cls.options_group or cls.name

    def applies(self, ctx: Context) -> str | None:
        """``None`` when the method can bound this request, else one line saying why not."""
        if ctx.norm not in self.norms:
            pretty = ", ".join(f"ℓ{n.replace('inf', '∞')}" for n in self.norms)
            return f"{self.name} bounds {pretty} constants only"
        if ctx.is_local and not self.supports_local:
            return f"{self.name} is a global method (drop the input domain)"
        if not ctx.is_local and not self.supports_global:
            return f"{self.name} needs an input domain (--box, or --center with --eps)"
        if not self.supports_residual and not ctx.net.is_chain:
            return f"{self.name} supports plain feed-forward chains only, not residual blocks"
        return None

    def levels(self, ctx: Context, requested: Sequence[int] | None) -> list[int | None]:
        """The hierarchy indices to run (``requested`` if given, else the defaults)."""
        if self.hierarchy is None:
            if requested:
                raise LipoptError(f"{self.name} has no hierarchy: drop the level/order for it")
            return [None]
        return sorted({int(k) for k in requested}) if requested else self.default_levels(ctx)

    def default_levels(self, ctx: Context) -> list[int | None]:
        return [1]

    def suggest(self, ctx: Context) -> Suggestion | str:
        """For the automatic chain: a :class:`Suggestion` when the method fits this request, else
        one line saying why not (default: not part of the automatic chain)."""
        return f"{self.name} runs only when asked for"

    def stops_at_time_limit(self, ctx: Context, level: int | None, options: Any) -> bool:
        """Whether this step's solvers stop at the time limit by themselves (default:
        :attr:`interruptible`). ``False`` for a route through a solver that cannot be stopped from
        outside (cvxpy's compilation, CVXOPT): the chain runs such a step in a child process that
        it kills at the limit."""
        return self.interruptible

    def estimate(self, ctx: Context, level: int | None, options: Any) -> Size | None:
        """The size of the step before building it (``memory_bytes`` is checked by the chain)."""
        return None

    def run(self, ctx: Context, level: int | None, options: Any) -> BoundResult:  # pragma: no cover
        raise NotImplementedError


_REGISTRY: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    if not dataclasses.is_dataclass(cls.Options):
        raise LipoptError(f"method {cls.name!r}: Options must be a dataclass")
    if cls.hierarchy not in (None, "level", "order"):
        raise LipoptError(f"method {cls.name!r}: hierarchy must be 'level', 'order' or None")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise LipoptError(f"method {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def methods() -> dict[str, Method]:
    """Every registered method by name, in registration order."""
    from . import methods as _package  # noqa: F401  (importing registers the built-in methods)

    return dict(_REGISTRY)


def method_names(kind: str | None = None) -> tuple[str, ...]:
    return tuple(n for n, m in methods().items() if kind is None or m.kind == kind)


def get_method(name: str) -> Method:
    table = methods()
    if name not in table:
        raise LipoptError(f"unknown method {name!r}; choose from: {', '.join(table)}")
    return table[name]


def option_groups() -> dict[str, type]:
    """Options dataclass per options group (methods that share a group share one class)."""
    out: dict[str, type] = {}
    for m in methods().values():
        group = m.group()
        if out.setdefault(group, m.Options) is not m.Options:
            raise LipoptError(f"options group {group!r} has two different Options classes")
    return out


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check (and convert ints to floats for) one option value against its type annotation."""
    hint = annotation if isinstance(annotation, type) else None
    if isinstance(annotation, str):
        hint = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation.split("|")[0].strip())
    if value is None or hint is None:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise LipoptError(f"{where} must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise LipoptError(f"{where} must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise LipoptError(f"{where} must be a {hint.__name__}, got {value!r}")
    return value


def parse_options(group: str, given: Mapping[str, Any] | Any | None) -> Any:
    """The ``Options`` instance of ``group`` from a mapping of field values (or an instance).

    Unknown keys, wrong types and values outside a field's ``choices`` raise one-line errors.
    """
    cls = option_groups().get(group)
    if cls is None:
        raise LipoptError(
            f"no method has options named {group!r}; options exist for: {', '.join(option_groups())}"
        )
    if given is None:
        return cls()
    if isinstance(given, cls):
        return given
    if not isinstance(given, Mapping):
        raise LipoptError(f"options for {group} must be a table of values, got {type(given).__name__}")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in given.items():
        name = str(key).replace("-", "_")
        if name not in known:
            allowed = ", ".join(known) or "(none)"
            raise LipoptError(f"unknown {group} option {key!r}; allowed: {allowed}")
        f = known[name]
        value = _coerce(value, f.type, f"{group} option {key!r}")
        choices = f.metadata.get("choices")
        if choices is not None and value is not None and value not in choices:
            raise LipoptError(
                f"{group} option {key!r} must be one of {', '.join(map(str, choices))}, got {value!r}"
            )
        low = f.metadata.get("min")
        if low is not None and value is not None and not value >= low:
            raise LipoptError(f"{group} option {key!r} must be >= {low}, got {value!r}")
        values[name] = value
    return cls(**values)
