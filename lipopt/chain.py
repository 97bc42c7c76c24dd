"""The one orchestrator: a chain of registered bound methods on one request.

``bound_chain`` runs, for one network, norm, target and domain, every requested method (at every
requested level/order for hierarchies) through the method registry (:mod:`lipopt.registry`),
and the lower-bound search. The CLI (``lipopt bound``), the Python API and a sweep task all call
it, so they produce the same rows for the same request.

Rules applied to the rows:

* **limits** — each step gets the time limit (``time_limit`` seconds, the whole step) and the
  memory limit; a step whose size estimate exceeds the memory limit is refused before building.
* **refusals** — a method that does not apply, or a step too large for the limits, becomes a
  ``refused`` row with its reason in the note; only when *every* upper-bound step is refused is
  the first refusal raised (there is nothing else to report).
* **monotone hierarchies** — levels are nested, so a lower level's certificate is valid for every
  higher one: a higher level that certifies a worse value reports the lower level's, with a note.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import LipoptError
from .network import Network
from .registry import SILENT, Context, Method, Progress, get_method, parse_options
from .results import BoundResult, LowerBound, Status

DEFAULT_METHODS = ("naive", "abs-product", "lp", "lower")


@dataclass
class ChainResult:
    """The rows of one chain and its lower bound."""

    network: str
    norm: str
    target: Any
    domain: Any
    bounds: list[BoundResult]
    lower_bound: LowerBound | None
    #: the norm-gradient POPs when a step built them (for statistics), else None
    problem: Any = field(default=None, repr=False, compare=False)

    @property
    def quantity(self) -> str:
        """What every row bounds, in words (:meth:`~lipopt.problems.Target.quantity`)."""
        return self.target.quantity(self.norm)

    @property
    def best(self) -> BoundResult | None:
        """The smallest certified upper bound."""
        cert = [b for b in self.bounds if b.certified and np.isfinite(b.value)]
        return min(cert, key=lambda b: b.value) if cert else None

    @property
    def upper(self) -> float | None:
        best = self.best
        return None if best is None else best.value

    @property
    def lower(self) -> float | None:
        return None if self.lower_bound is None else self.lower_bound.value

    @property
    def ratio(self) -> float | None:
        best, low = self.best, self.lower_bound
        if best is None or low is None or low.value <= 0:
            return None
        return best.value / low.value

    def to_dict(self) -> dict:
        best = self.best
        return {
            "network": self.network,
            "norm": self.norm,
            "target": self.target.to_dict(),
            "quantity": self.quantity,
            "domain": None if self.domain is None else self.domain.to_dict(),
            "bounds": [b.to_dict() for b in self.bounds],
            "lower_bound": None if self.lower_bound is None else self.lower_bound.to_dict(),
            "best": None
            if best is None
            else {"method": best.method, "level": best.level, "value": best.value},
            "ratio_to_lower": self.ratio,
        }


def _levels_by_method(
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None, methods: Sequence[Method]
) -> dict[str, list[int]]:
    """Requested levels per method: one list for every hierarchy method, or a mapping."""
    if levels is None:
        return {}
    if isinstance(levels, Mapping):
        table = {str(m): list(v or []) for m, v in levels.items()}
        for name in table:
            get_method(name)
    else:
        table = {"*": list(levels)}
    for name, values in table.items():
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                where = "" if name == "*" else f"{name}: "
                raise LipoptError(f"{where}a level/order must be a positive integer, got {v!r}")
    if "*" in table:
        table = {m.name: table["*"] for m in methods if m.hierarchy is not None}
    return table


def _options_by_group(options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(group): parse_options(str(group), given) for group, given in (options or {}).items()}


def bound_chain(
    net: Network,
    norm: str = "inf",
    methods: Sequence[str] = DEFAULT_METHODS,
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    target=None,
    domain=None,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    max_memory_bytes: float = 8e9,
    progress: bool | Progress = False,
    options: Mapping[str, Any] | None = None,
    raise_if_all_refused: bool = True,
) -> ChainResult:
    """Run ``methods`` on one request and return their rows and the lower bound.

    Args:
        net: the network.
        norm: input norm ``"inf"``, ``"2"`` or ``"1"``.
        methods: registered method names (:func:`lipopt.registry.method_names`); ``"lower"`` adds
            the lower-bound search.
        levels: hierarchy indices — one list for every method with a hierarchy (``lp``: level k,
            ``sdp``: order d), or ``{method: [levels]}``; default: each method's own.
        target: a :class:`~lipopt.problems.Target` (default: every output).
        domain: a :class:`~lipopt.problems.Domain` (default ``None``: global).
        seed: seed of every randomized step (the lower-bound search, solvers' starts).
        time_limit: seconds per step (a method at one level, all of its sub-problems).
        max_memory_bytes: steps estimated above this are refused before building.
        progress: ``True`` for a bar on stderr, or a :class:`~lipopt.registry.Progress`.
        options: per options group (``"lp"``, ``"sdp"`` …) an ``Options`` instance or a mapping
            of its fields.
        raise_if_all_refused: raise the first refusal when every upper-bound step was refused
            (the CLI and the API); a sweep passes ``False`` to keep the rows.
    """
    from .problems import make_target, parse_norm

    norm = parse_norm(norm)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise LipoptError(f"the seed must be a non-negative integer, got {seed!r}")
    if time_limit is not None and not time_limit > 0:
        raise LipoptError(f"the time limit must be a positive number of seconds, got {time_limit!r}")
    chosen = [get_method(m) for m in dict.fromkeys(methods)]
    requested = _levels_by_method(levels, chosen)
    opts = _options_by_group(options)
    target = target if target is not None else make_target(net)
    bar = _make_progress(progress)
    ctx = Context(
        net,
        norm,
        target,
        domain,
        seed=int(seed),
        time_limit=time_limit,
        max_memory_bytes=max_memory_bytes,
        progress=bar,
    )
    rows: list[BoundResult] = []
    refusals: list[str] = []
    lower: LowerBound | None = None
    try:
        for method in chosen:
            options_m = opts.get(method.group()) or parse_options(method.group(), None)
            if method.kind == "lower":
                bar.step("lower bound")
                lower = _better_lower(lower, method.search(ctx, options_m))
                continue
            for row in _run_method(ctx, method, requested.get(method.name), options_m, rows):
                if row.status is Status.REFUSED:
                    refusals.append(row.note or f"{row.label} refused")
                rows.append(row)
    finally:
        bar.done()
    if raise_if_all_refused and rows and len(refusals) == len(rows):
        raise LipoptError(refusals[0])
    for row in rows:  # a method that found real points (a branch and bound) improves the lower bound
        if row.lower is not None and np.isfinite(row.lower):
            lower = _better_lower(lower, LowerBound(float(row.lower), f"{row.label} (real point)"))
    return ChainResult(net.name, norm, target, domain, rows, lower, ctx.built_problem)


def _better_lower(a: LowerBound | None, b: LowerBound | None) -> LowerBound | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.value > a.value else a


def _run_method(
    ctx: Context, method: Method, requested: list[int] | None, options: Any, earlier: list[BoundResult]
) -> list[BoundResult]:
    """The rows of one method: refused, or one per level."""
    why = method.applies(ctx)
    if why is not None:
        return [BoundResult.refused(method.name, None, why)]
    try:
        levels = method.levels(ctx, requested)
    except LipoptError as exc:
        return [BoundResult.refused(method.name, None, str(exc))]
    rows: list[BoundResult] = []
    for level in levels:
        ctx.progress.step(method.name if level is None else f"{method.name} {method.hierarchy} {level}")
        row = _run_step(ctx, method, level, options)
        if method.hierarchy is not None and row.status.ran:
            row = _keep_monotone([*earlier, *rows], row, method.hierarchy)
        rows.append(row)
    return rows


def _run_step(ctx: Context, method: Method, level: int | None, options: Any) -> BoundResult:
    """One step under the memory limit (estimate first); refusals become rows."""
    t0 = time.perf_counter()
    try:
        size = method.estimate(ctx, level, options)
        if size is not None and size.memory_bytes is not None:
            ctx.budget().check_memory(
                f"{method.name}" + ("" if level is None else f" {method.hierarchy} {level}"),
                size.memory_bytes,
            )
        return method.run(ctx, level, options)
    except LipoptError as exc:
        return BoundResult.refused(method.name, level, str(exc), time.perf_counter() - t0)


def _keep_monotone(previous: list[BoundResult], new: BoundResult, word: str | None) -> BoundResult:
    """A lower level's certificate is valid for every higher level: never report worse."""
    earlier = [
        b
        for b in previous
        if b.method == new.method and b.certified and b.level is not None and b.level < (new.level or 0)
    ]
    if not earlier:
        return new
    best = min(earlier, key=lambda b: b.value)
    if new.certified and new.value <= best.value:
        return new
    note = (
        f"{word} {new.level} certified {new.value:.10g}"
        + ("" if new.certified else " (not certified)")
        + f"; kept the {word}-{best.level} certificate, valid for every higher {word}"
    )
    return replace(new, value=best.value, certified=True).with_note(note)


# ---------------------------------------------------------------------------------------------
# Progress on stderr
# ---------------------------------------------------------------------------------------------
class _Bar(Progress):
    """A tqdm bar on stderr: one tick per step, the step's figures as its postfix."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=None, file=sys.stderr, leave=False, unit="step", dynamic_ncols=True)
        self._last = 0.0

    def step(self, description: str) -> None:
        self._bar.set_description(description)
        self._bar.set_postfix_str("")
        self._bar.update(1)

    def report(self, **numbers: float) -> None:
        now = time.perf_counter()
        if now - self._last < 0.2:
            return
        self._last = now
        self._bar.set_postfix_str(
            ", ".join(
                f"{k} {v:.6g}" if isinstance(v, float) and math.isfinite(v) else f"{k} {v}"
                for k, v in numbers.items()
            )
        )

    def done(self) -> None:
        self._bar.close()


def _make_progress(progress: bool | Progress) -> Progress:
    if isinstance(progress, Progress):
        return progress
    return _Bar() if progress else SILENT
