"""Layer-wise methods for deep networks: the lifted LP (``lifted``), the branch and bound on
activation patterns (``bab``) and the exact MILP cross-check (``milp``).

See :mod:`lipopt.hierarchy.lifted` (the relaxation), :mod:`lipopt.bab` (the search, the global
homogenization) and :mod:`lipopt.milp`. The LP's size grows with the number of non-zero weights,
never with the number of paths, so these methods run where the norm-gradient polynomial is
refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..bab import BATCH, BRANCHING, BabOutcome, BabSettings, BranchAndBound, make_subproblems
from ..errors import LipoptError
from ..hierarchy.lifted import LiftedTemplate
from ..milp import LipMilp
from ..quantity import Quantity
from ..reach import Chain
from ..registry import Context, Method, Suggestion, get_method, parse_options, register
from ..results import BoundResult, Size, Status, Timings
from ..solvers.highs import highs_version

PIECEWISE_LINEAR = ("relu", "leaky_relu", "identity")
FACES_FIRST_MAX_INPUTS = 16
FACES_DEFERRED_DEPTH = 12
#: unstable neurons up to which the automatic chain expects the branch and bound to close the gap
#: (measured: LipBaB's 10-30-30-30-3 on [0, 0.1]^10 has 21 and closes in 2–4 s for every norm;
#: ExLipBaB's wine net, 24 and global, closes in about a minute; 64 global do not close in 60 s)
BAB_CLOSES = 30
#: global ℓ2: the 2n + 1 faces of the homogenized box multiply the work and the ℓ2 node bounds are
#: weaker; expected to close when (inputs × unstable neurons) stays below this (wine: 11 × 24;
#: a random 30-20-6 net, 30 × 20, is still at a gap of 0.5 after 20 s)
BAB_CLOSES_GLOBAL_L2 = 300


def quantity_of(ctx: Context) -> Quantity:
    """The chain's quantity: the Jacobian's induced norm for the network target, else the
    scalar constant of the target's row."""
    return Quantity(str(ctx.norm), ctx.target.vectors, bool(ctx.target.is_network))


def _domain(ctx: Context):
    return None if ctx.domain is None else (ctx.domain.lo, ctx.domain.hi)


def _piecewise_linear(ctx: Context) -> bool:
    return all(site.activation.name in PIECEWISE_LINEAR for site in ctx.net.sites)


def _size(ctx: Context, lp: bool = True, batch: int = 1) -> Size:
    """LP size (the largest template) and the memory estimate: LP data + the CROWN arrays of a
    batch of ``batch`` nodes (the roots are bounded one at a time, the search's children in
    batches)."""
    chain = Chain.from_network(ctx.net)
    subs = make_subproblems(quantity_of(ctx))
    reach = chain.piecewise_linear
    copies = max(s.c_lo.shape[0] for s in subs)
    est = LiftedTemplate.estimate(chain, reach, copies)
    widths = chain.widths
    crown = batch * 2 * max(widths[1:]) * max(widths) * 8 * 4 * max(1, copies)
    memory = (est["bytes"] if lp else 0) + crown
    return Size(variables=est["cols"], constraints=est["rows"], nonzeros=est["nonzeros"],
                neurons=sum(widths[1:-1]), memory_bytes=int(memory))


def _row(name: str, out: BabOutcome, t0: float, size: Size, options, certificate: str) -> BoundResult:
    elapsed = time.perf_counter() - t0
    size = Size(**{**size.to_dict(), "nodes": out.nodes, "solves": out.lp_solves})
    note = out.note or None
    if out.lower > 0:
        extra = f"lower {out.lower:.6g}, gap {out.gap:.2e}, {out.nodes} nodes"
        note = extra if note is None else f"{extra}; {note}"
    return BoundResult(name, None, out.upper, out.certified, out.status, Timings(elapsed, solve=elapsed),
                       size, f"highs-{highs_version()}", None, note, out.lower if out.lower > 0 else None,
                       certificate)


class _LayerwiseMethod(Method):
    supports_residual = False
    batch: int = 1

    def estimate(self, ctx: Context, level, options) -> Size | None:
        try:
            return _size(ctx, getattr(options, "lp", True), self.batch)
        except LipoptError:
            return None

    def _refusal(self, ctx: Context, options) -> str | None:
        size = self.estimate(ctx, None, options)
        if size is not None and size.memory_bytes > ctx.max_memory_bytes:
            return (f"{self.name} would need about {size.memory_bytes / 1e9:.1f} GB, above the memory "
                    f"limit of {ctx.max_memory_bytes / 1e9:.1f} GB")
        return None


@dataclass(frozen=True)
class LiftedOptions:
    faces: bool = field(default=False, metadata={
        "help": "global: bound each of the 2n+1 faces of the homogenized input box (2n+1 LPs; "
                "reachability only bites there) instead of the whole box (one LP)"})
    threads: int = field(default=1, metadata={"help": "HiGHS threads"})


@register
class Lifted(_LayerwiseMethod):
    """One lifted LP per subproblem (module :mod:`lipopt.hierarchy.lifted`), certified from its dual."""

    name = "lifted"
    summary = "lifted layer-wise LP with reachability (size linear in the weights, certified dual)"
    Options = LiftedOptions

    def run(self, ctx: Context, level, options: LiftedOptions) -> BoundResult:
        t0 = time.perf_counter()
        why = self._refusal(ctx, options)
        if why:
            return BoundResult.refused(self.name, None, why)
        # faces: the roots and their 2n + 1 faces, no further branching
        n_subs = len(make_subproblems(quantity_of(ctx)))
        faces = options.faces and ctx.domain is None and _piecewise_linear(ctx)
        settings = BabSettings(node_limit=n_subs * (2 * ctx.net.input_dim + 2) if faces else 0,
                               faces=faces, threads=options.threads, seed=ctx.seed)
        try:
            bb = BranchAndBound(ctx.net, quantity_of(ctx), _domain(ctx), settings, ctx.budget(),
                                ctx.progress, ranges=ctx.ranges)
            out = bb.run()
        except LipoptError as exc:
            return BoundResult.refused(self.name, None, str(exc), time.perf_counter() - t0)
        if out.status == Status.NODE_LIMIT:
            out.status = Status.OPTIMAL  # the faces were all bounded
        return _row(self.name, out, t0, _size(ctx), options,
                    "LP dual (float-safe) per subproblem")

    def suggest(self, ctx: Context) -> Suggestion | str:
        if ctx.net.depth < 2:
            return "one hidden layer: the polynomial relaxations are exact at their degree"
        if ctx.norm == "2":  # measured 2–3× above LipSDP on trained nets (digits, fnn3, wine)
            return Suggestion((None,), 3.0, "the lifted LP of an ℓ2 constant (loose next to LipSDP)")
        return Suggestion((None,), 2.0, "one LP per output row, size linear in the weights")


@dataclass(frozen=True)
class BabOptions:
    gap: float = field(default=1e-6, metadata={"help": "relative gap (upper − lower)/upper to stop at"})
    node_limit: int = field(default=0, metadata={"help": "nodes to bound at most (0: no limit)"})
    branching: str = field(default="score", metadata={
        "help": "neuron choice: score (slope range × backward bound × path weight) or sequential",
        "choices": BRANCHING})
    lp: bool = field(default=True, metadata={"help": "bound nodes by the lifted LP (else intervals only)"})
    faces: bool = field(default=True, metadata={
        "help": "global: split the homogenized box into its 2n+1 faces first (needed to converge)"})
    faces_depth: int = field(default=-1, metadata={
        "help": "global: neuron splits above the 2n+1 faces (-1 auto: 0 for inputs of at most "
                f"{FACES_FIRST_MAX_INPUTS} coordinates, else {FACES_DEFERRED_DEPTH}: the faces multiply the "
                "open nodes by 2n+1 while reachability barely bites on them for wide inputs)"})
    lower_search: str = field(default="auto", metadata={
        "help": "start from the lower-bound search's best secant (method lower); auto: for global "
                "constants only (on a box the search's own points find it faster)",
        "choices": ("auto", "on", "off")})
    threads: int = field(default=1, metadata={"help": "HiGHS threads"})


@register
class Bab(_LayerwiseMethod):
    """Branch and bound on activation patterns (module :mod:`lipopt.bab`)."""

    name = "bab"
    subsumes = ("lifted",)  # its first nodes are bounded by the lifted LP
    summary = "branch and bound on activation patterns: certified upper, verified lower, exact when closed"
    Options = BabOptions
    batch = BATCH

    def applies(self, ctx: Context) -> str | None:
        why = super().applies(ctx)
        if why is None and not _piecewise_linear(ctx):
            why = "bab needs piecewise-linear activations (relu, leaky_relu)"
        return why

    def run(self, ctx: Context, level, options: BabOptions) -> BoundResult:
        t0 = time.perf_counter()
        why = self._refusal(ctx, options)
        if why:
            return BoundResult.refused(self.name, None, why)
        if not 0 <= options.gap < 1:
            raise LipoptError(f"bab gap must be in [0, 1), got {options.gap}")
        faces_depth = options.faces_depth
        if faces_depth < 0:
            faces_depth = 0 if ctx.net.input_dim <= FACES_FIRST_MAX_INPUTS else FACES_DEFERRED_DEPTH
        settings = BabSettings(gap=options.gap, node_limit=options.node_limit or None,
                               branching=options.branching, lp=options.lp, faces=options.faces,
                               faces_depth=faces_depth, threads=options.threads, seed=ctx.seed)
        try:
            bb = BranchAndBound(ctx.net, quantity_of(ctx), _domain(ctx), settings, ctx.budget(),
                                ctx.progress)
            if options.lower_search == "on" or (options.lower_search == "auto" and ctx.domain is None):
                found = get_method("lower").search(ctx, parse_options("lower", {}))
                bb.offer_lower(found.value, found.point)
            out = bb.run()
        except LipoptError as exc:
            return BoundResult.refused(self.name, None, str(exc), time.perf_counter() - t0)
        return _row(self.name, out, t0, _size(ctx, options.lp, BATCH), options,
                    "max over nodes: LP dual (float-safe) or exact Jacobian norm at fixed patterns")

    def suggest(self, ctx: Context) -> Suggestion | str:
        why = self.applies(ctx)
        if why is not None:
            return why
        unstable = ctx.unstable_neurons
        work = unstable * (ctx.net.input_dim if ctx.norm == "2" and not ctx.is_local else 1)
        if unstable <= BAB_CLOSES and (ctx.norm != "2" or ctx.is_local or work <= BAB_CLOSES_GLOBAL_L2):
            why = f"branch and bound on the patterns of {unstable} unstable neurons: exact if it closes"
            return Suggestion((None,), 0.5, why)
        if ctx.norm == "2":
            faces = "" if ctx.is_local else f" and {2 * ctx.net.input_dim + 1} input faces"
            return (f"{unstable} unstable neurons{faces}: the ℓ2 branch and bound would not close (LipSDP "
                    "is tighter at this size); ask for it by name")
        why = f"anytime branch and bound ({unstable} unstable neurons: may stop at the time limit, certified)"
        return Suggestion((None,), 1.5, why)


@register
class Milp(_LayerwiseMethod):
    """Exact MILP (module :mod:`lipopt.milp`); its MIP dual bound is not float-certified."""

    name = "milp"
    summary = "exact MILP on ReLU patterns (HiGHS MIP; not float-certified, lower bound verified)"
    norms = ("inf", "1")

    def applies(self, ctx: Context) -> str | None:
        why = super().applies(ctx)
        if why is None and any(s.activation.name not in ("relu", "identity") for s in ctx.net.sites):
            why = "milp supports ReLU networks only"
        return why

    def suggest(self, ctx: Context) -> str:
        return "milp is an exact cross-check for small networks (not float-certified); ask for it by name"

    def run(self, ctx: Context, level, options) -> BoundResult:
        t0 = time.perf_counter()
        why = self._refusal(ctx, options)
        if why:
            return BoundResult.refused(self.name, None, why)
        try:
            out = LipMilp(ctx.net, quantity_of(ctx), _domain(ctx), ctx.budget()).solve()
        except LipoptError as exc:
            return BoundResult.refused(self.name, None, str(exc), time.perf_counter() - t0)
        elapsed = time.perf_counter() - t0
        status = {"optimal": Status.OPTIMAL, "time_limit": Status.TIME_LIMIT}.get(out.status, Status.ERROR)
        size = Size(**{**_size(ctx).to_dict(), "variables": None})
        note = (f"MIP dual bound (not float-certified); {out.binaries} binaries; "
                f"verified lower bound {out.lower:.6g}")
        return BoundResult(self.name, None, out.upper, False, status, Timings(elapsed, solve=elapsed), size,
                           f"highs-{highs_version()} (MIP)", out.upper, note,
                           out.lower if out.lower > 0 else None, "none (MIP dual bound)")
