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
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import LipoptError
from .network import Network
from .progress import reporting_to
from .registry import SILENT, Context, Method, Progress, Suggestion, get_method, methods, parse_options
from .relations import conversion_factor, describe_conversion
from .results import BoundResult, LowerBound, Status, Timings

#: what runs when no method is named: the automatic chain (:func:`plan_automatic`)
AUTO = "auto"
#: seconds per step unless told otherwise: no command runs unbounded
DEFAULT_TIME_LIMIT = 300.0


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
    #: what the automatic chain chose and skipped, and why (one line each)
    plan: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[BoundResult]:
        return self.bounds

    def table(self) -> str:
        """The rows as the text table ``lipopt bound`` prints (notes and the plan below it)."""
        where = "global" if self.domain is None else self.domain.description
        lines = [
            f"{self.network}  {self.quantity}  {where}",
            f"{'method':<14}{'level':>6}{'upper bound':>16}  {'certified':<10}{'status':<12}"
            f"{'build s':>9}{'solve s':>9}",
        ]
        notes: list[str] = []
        for b in self.bounds:
            level = "" if b.level is None else str(b.level)
            val = f"{b.value:.6g}" if np.isfinite(b.value) else "—"
            ran = b.status.ran
            bt = f"{b.timings.build:.2f}" if ran else ""
            st = f"{b.timings.solve:.2f}" if ran else ""
            mark = ""
            if b.note:
                notes.append(b.note)
                mark = f"  [{len(notes)}]"
            cert = "yes" if b.certified else "NO"
            lines.append(
                f"{b.method:<14}{level:>6}{val:>16}  {cert:<10}{b.status.value:<12}{bt:>9}{st:>9}{mark}"
            )
        if self.lower_bound is not None:
            lines.append(f"{'lower':<14}{'':>6}{self.lower_bound.value:>16.6g}  ({self.lower_bound.method})")
        best = self.best
        if best is not None:
            ratio = self.ratio
            lines.append(
                f"best certified: {best.value:.6g} ({best.label})"
                + (f", {ratio:.3f}× the lower bound" if ratio else "")
            )
        lines += [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
        if self.plan:
            lines += ["automatic chain:", *(f"  {line}" for line in self.plan)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        """A table for notebooks: one row per method, the lower bound and the best bound."""
        from html import escape

        head = "".join(
            f"<th>{h}</th>"
            for h in ("method", "level", "upper bound", "certified", "status", "time s", "note")
        )
        body = []
        best = self.best
        for b in self.bounds:
            val = f"{b.value:.6g}" if np.isfinite(b.value) else "—"
            style = ' style="font-weight:bold"' if b is best else ""
            cells = (
                b.method,
                "" if b.level is None else b.level,
                val,
                "yes" if b.certified else "NO",
                b.status.value,
                f"{b.timings.total:.2f}",
                b.note or "",
            )
            body.append(f"<tr{style}>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        if self.lower_bound is not None:
            low = self.lower_bound
            body.append(
                f"<tr><td>lower</td><td></td><td>{low.value:.6g}</td><td>(real points)</td>"
                f"<td></td><td></td><td>{escape(low.method)}</td></tr>"
            )
        where = "global" if self.domain is None else self.domain.description
        caption = escape(
            f"{self.network} — ℓ{'∞' if self.norm == 'inf' else self.norm}, "
            f"{', '.join(self.target.labels[:3])}{'…' if len(self.target.labels) > 3 else ''}, {where}"
        )
        plan = "".join(f"<li>{escape(line)}</li>" for line in self.plan)
        return (
            f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
            f"</tbody></table>"
            + (f"<details><summary>automatic chain</summary><ul>{plan}</ul></details>" if plan else "")
        )

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
            "plan": list(self.plan),
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
    methods: Sequence[str] | str = AUTO,
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    target=None,
    domain=None,
    *,
    seed: int = 0,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    max_memory_bytes: float = 8e9,
    progress: bool | Progress = False,
    options: Mapping[str, Any] | None = None,
    raise_if_all_refused: bool = True,
) -> ChainResult:
    """Run ``methods`` on one request and return their rows and the lower bound.

    Args:
        net: the network.
        norm: input norm ``"inf"``, ``"2"`` or ``"1"``.
        methods: registered method names (:func:`lipopt.registry.method_names`; ``"lower"`` adds
            the lower-bound search), or ``"auto"``: the automatic chain (:func:`plan_automatic`).
        levels: hierarchy indices — one list for every method with a hierarchy (``lp``: level k,
            ``sdp``: order d), or ``{method: [levels]}``; default: each method's own.
        target: a :class:`~lipopt.problems.Target` (default: every output).
        domain: a :class:`~lipopt.problems.Domain` (default ``None``: global).
        seed: seed of every randomized step (the lower-bound search, solvers' starts).
        time_limit: seconds per step (a method at one level, all of its sub-problems); ``None``
            for no limit (default :data:`DEFAULT_TIME_LIMIT`).
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
    automatic = isinstance(methods, str) and methods == AUTO
    chosen = (
        []
        if automatic
        else [get_method(m) for m in dict.fromkeys([methods] if isinstance(methods, str) else methods)]
    )
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
    plan: list[str] = []
    if automatic:
        chosen, requested, plan = plan_automatic(ctx)
    rows, lower = _run_chain(ctx, chosen, requested, opts)
    refusals = [r.note or f"{r.label} refused" for r in rows if r.status is Status.REFUSED]
    if raise_if_all_refused and rows and len(refusals) == len(rows):
        raise LipoptError(refusals[0])
    for row in rows:  # a method that found real points (a branch and bound) improves the lower bound
        if row.lower is not None and np.isfinite(row.lower):
            lower = _better_lower(lower, LowerBound(float(row.lower), f"{row.label} (real point)"))
    return ChainResult(net.name, norm, target, domain, rows, lower, ctx.built_problem, plan)


def _run_chain(
    ctx: Context, chosen: list[Method], requested: dict[str, list[int]], opts: dict[str, Any]
) -> tuple[list[BoundResult], LowerBound | None]:
    """Every step of the chosen methods in order; the lower-bound search where it is listed."""
    rows: list[BoundResult] = []
    lower: LowerBound | None = None
    try:
        for method in chosen:
            options = opts.get(method.group()) or parse_options(method.group(), None)
            if method.kind == "lower":
                ctx.progress.step("lower bound")
                lower = _better_lower(lower, method.search(ctx, options))
            else:
                rows.extend(_run_method(ctx, method, requested.get(method.name), options, rows))
    finally:
        ctx.progress.done()
    return rows, lower


def _better_lower(a: LowerBound | None, b: LowerBound | None) -> LowerBound | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b.value > a.value else a


def _run_method(
    ctx: Context, method: Method, requested: list[int] | None, options: Any, earlier: list[BoundResult]
) -> list[BoundResult]:
    """The rows of one method: refused, or one per level. A method that bounds another norm, or
    only global constants, runs there and its rows are converted (see :mod:`lipopt.relations`)."""
    why = method.applies(ctx)
    run_ctx, factor, derived = ctx, 1.0, None
    if why is not None:
        adapted = _adapt(ctx, method)
        if adapted is None:
            return [BoundResult.refused(method.name, None, why)]
        run_ctx, factor, derived = adapted
        derived = f"{why}; {derived}"
    try:
        levels = method.levels(run_ctx, requested)
    except LipoptError as exc:
        return [BoundResult.refused(method.name, None, str(exc))]
    rows: list[BoundResult] = []
    for level in levels:
        ctx.progress.step(method.name if level is None else f"{method.name} {method.hierarchy} {level}")
        row = _run_step(run_ctx, method, level, options)
        if derived is not None and row.status.ran:
            row = replace(
                row,
                value=row.value * factor,
                solver_value=None,
                derived_from=(f"{row.label} ({_where(run_ctx)})",),
            ).with_note(derived)
        if method.hierarchy is not None and row.status.ran:
            row = _keep_monotone([*earlier, *rows], row, method.hierarchy)
        rows.append(row)
    return rows


def _where(ctx: Context) -> str:
    norm = {"inf": "∞"}.get(ctx.norm, ctx.norm)
    return f"ℓ{norm}, " + ("global" if ctx.domain is None else "local")


def _adapt(ctx: Context, method: Method) -> tuple[Context, float, str] | None:
    """Another request the method can bound whose value converts into this one's: another norm
    (by :func:`~lipopt.relations.conversion_factor`) and/or the global constant (valid locally)."""
    domains = [ctx.domain] if method.supports_local or ctx.domain is None else []
    if ctx.domain is not None and method.supports_global:
        domains.append(None)
    for norm in sorted(method.norms, key=lambda q: q != ctx.norm):
        factor = conversion_factor(
            norm, ctx.norm, ctx.net.input_dim, ctx.net.output_dim, ctx.network_quantity
        )
        if factor is None:
            continue
        for domain in domains:
            other = ctx.adapted(norm, domain)
            if (norm, domain is None) == (ctx.norm, ctx.domain is None) or method.applies(other) is not None:
                continue
            notes = []
            if domain is None and ctx.domain is not None:
                notes.append("ran globally (a global bound holds on every input box)")
            if norm != ctx.norm:
                notes.append(describe_conversion(norm, ctx.norm, factor, ctx.network_quantity))
            return other, factor, "; ".join(notes)
    return None


def _run_step(ctx: Context, method: Method, level: int | None, options: Any) -> BoundResult:
    """One step under the memory limit (estimate first); refusals become rows. A method that
    cannot be interrupted runs in a child process stopped at the limits (:mod:`lipopt.limits`)."""
    from .limits import StepOutOfMemory, StepTimeout, run_bounded

    t0 = time.perf_counter()
    label = method.name + ("" if level is None else f" {method.hierarchy} {level}")
    try:
        size = method.estimate(ctx, level, options)
        if size is not None and size.memory_bytes is not None:
            ctx.budget().check_memory(label, size.memory_bytes)
        with reporting_to(ctx.progress):
            if method.stops_at_time_limit(ctx, level, options):
                return method.run(ctx, level, options)
            return run_bounded(_in_child(ctx, method, level, options), ctx.time_limit, ctx.max_memory_bytes)
    except LipoptError as exc:
        return BoundResult.refused(method.name, level, str(exc), time.perf_counter() - t0)
    except StepTimeout:
        why = (
            f"stopped at the time limit ({ctx.time_limit:g} s) before a certificate "
            "(its solver cannot be interrupted)"
        )
        return _stopped(method, level, Status.TIME_LIMIT, why, t0)
    except StepOutOfMemory:
        why = f"ran out of the memory limit ({ctx.max_memory_bytes / 1e9:.1f} GB); raise --max-memory"
        return _stopped(method, level, Status.MEMORY_LIMIT, why, t0)


#: share of the step's time limit given to the solvers of a step run in a child process, so that a
#: solver with a limit of its own (SCS, Clarabel) stops and certifies before the child is killed
CHILD_SOLVER_SHARE = 0.85


def _in_child(ctx: Context, method: Method, level: int | None, options: Any):
    """The step as run in the (forked) child: its solvers get :data:`CHILD_SOLVER_SHARE` of the
    limit; the parent kills the child at the full limit."""
    parent = os.getpid()

    def run() -> BoundResult:
        if os.getpid() != parent and ctx.time_limit is not None:  # the child's own copy of ctx
            ctx.time_limit = CHILD_SOLVER_SHARE * ctx.time_limit
        return method.run(ctx, level, options)

    return run


def _stopped(method: Method, level: int | None, status: Status, why: str, t0: float) -> BoundResult:
    """A step stopped by a limit before it certified anything."""
    return BoundResult(
        method.name, level, math.inf, False, status, Timings(time.perf_counter() - t0), note=why
    )


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
# The automatic chain
# ---------------------------------------------------------------------------------------------
#: at most this many non-cheap methods run in the automatic chain (the best-ranked ones)
AUTO_MAX_METHODS = 2
#: suggestions ranked at or above this are fallbacks, run only when nothing better was chosen
AUTO_FALLBACK_RANK = 3.0


def plan_automatic(ctx: Context) -> tuple[list[Method], dict[str, list[int]], list[str]]:
    """The automatic chain for this request: ``naive`` and the lower bound always; every method's
    :meth:`~lipopt.registry.Method.suggest` is asked, the cheap suggestions all run, and of the
    others the :data:`AUTO_MAX_METHODS` best-ranked (expected tightest) run. Returns the methods,
    their levels, and one line per method saying what was chosen or skipped and why."""
    chosen: list[tuple[Method, Suggestion]] = []
    lines: list[str] = []
    for name, method in methods().items():
        if name in ("naive", "lower"):
            continue
        if method.kind != "upper":
            continue
        why = method.applies(ctx)
        suggestion = method.suggest(ctx) if why is None else why
        if why is not None and (adapted := _adapt(ctx, method)) is not None:
            other = method.suggest(adapted[0])  # e.g. ℓ2 LipSDP for an ℓ∞ request, or globally
            if isinstance(other, Suggestion):
                suggestion = replace(other, rank=other.rank + 1.5, reason=f"{other.reason}, {adapted[2]}")
        if isinstance(suggestion, Suggestion):
            chosen.append((method, suggestion))
        else:
            lines.append(f"skipped {name}: {suggestion}")
    cheap = [(m, s) for m, s in chosen if s.cheap]
    keep: list[tuple[Method, Suggestion]] = []
    for m, s in sorted((ms for ms in chosen if not ms[1].cheap), key=lambda ms: ms[1].rank):
        by = next((k.name for k, _ in [*cheap, *keep] if m.name in k.subsumes), None)
        if by is not None:
            lines.append(f"skipped {m.name}: {s.reason} ({by} starts from this bound)")
        elif len(keep) < AUTO_MAX_METHODS and not (keep and s.rank >= AUTO_FALLBACK_RANK):
            keep.append((m, s))
        else:
            lines.append(f"skipped {m.name}: {s.reason} (a tighter method was chosen)")
    run = [get_method("naive"), *(m for m, _ in cheap), *(m for m, _ in keep), get_method("lower")]
    levels = {m.name: [k for k in s.levels if k is not None] for m, s in [*cheap, *keep] if m.hierarchy}
    picked = [
        f"chose {m.name}"
        + (f" {m.hierarchy} {', '.join(map(str, levels[m.name]))}" if m.name in levels else "")
        + f": {s.reason}"
        for m, s in [*cheap, *keep]
    ]
    return run, levels, [*picked, *lines]


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
