"""Bridge from the registry to the pre-registry relaxation pipelines (``lp``, ``sdp``, ``sdp+lp``,
``sdp-ball``, ``exact-pop``, ``lipsdp``), until each family gets its own method module."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import LipoptError
from ..registry import Context, Method, Suggestion, register
from ..results import BoundResult, Size, Status, Timings

_SIZE_KEYS = {
    "cols": "variables",
    "rows": "constraints",
    "nnz": "nonzeros",
    "cliques": "cliques",
    "max_clique": "largest_clique",
    "n_cliques": "psd_blocks",
    "neurons": "neurons",
    "pops": "pops",
    "solves": "solves",
    "est_peak_bytes": "memory_bytes",
}


def _status(text: str, certified: bool) -> Status:
    try:
        return Status(text.split(":")[0])
    except ValueError:  # solver-specific words ("unknown", …)
        return Status.INACCURATE if certified else Status.ERROR


def _convert(old, level: int | None) -> BoundResult:
    size = {
        new: int(old.size[k]) for k, new in _SIZE_KEYS.items() if isinstance(old.size.get(k), int | float)
    }
    return BoundResult(
        old.method,
        level,
        old.value,
        old.certified,
        _status(str(old.status), bool(old.certified)),
        Timings(old.time_s, old.build_time_s or 0.0, old.solve_time_s or 0.0),
        Size(**size),
        old.solver,
        old.solver_value,
        old.note,
    )


def _kwargs(options: Any, rename: dict[str, str] | None = None) -> dict:
    rename = rename or {}
    return {rename.get(k, k): v for k, v in asdict(options).items() if v is not None}


@dataclass(frozen=True)
class LPOptions:
    algorithm: str | None = field(
        default=None,
        metadata={
            "help": "HiGHS algorithm (default auto: chosen from the LP's size)",
            "choices": ("auto", "simplex", "ipm", "ipm-crossover", "pdlp"),
        },
    )
    threads: int | None = field(default=None, metadata={"help": "HiGHS threads (0 = automatic)", "min": 0})
    basis: str | None = field(
        default=None,
        metadata={
            "help": "Sherali–Adams products (default) or LiPopt's Krivine/Handelman basis (never tighter)",
            "choices": ("sherali-adams", "krivine"),
        },
    )
    project: bool | None = field(
        default=None,
        metadata={"help": "eliminate the top-level moments (Sherali–Adams only; default: on at levels 2, 3)"},
    )
    cliques: str | None = field(
        default=None,
        metadata={
            "help": "chordal extension of the sparse LP (default min-degree; dense = one clique)",
            "choices": ("min-degree", "min-fill", "mcs-m", "dense"),
        },
    )

    def __post_init__(self) -> None:
        if self.project and self.basis == "krivine":
            raise LipoptError("project = on applies to the Sherali–Adams basis only, not the krivine basis")


class _POPMethod(Method):
    hierarchy = "level"

    def default_levels(self, ctx: Context) -> list[int | None]:
        from ..bounds import default_degrees

        return list(default_degrees(ctx.problem(), self.name))

    def _old_options(self, ctx: Context, options: Any) -> dict:
        raise NotImplementedError

    def run(self, ctx: Context, level: int | None, options: Any) -> BoundResult:
        from ..bounds import _relaxation_bound

        return _convert(
            _relaxation_bound(ctx.problem(), self.name, level, self._old_options(ctx, options)), level
        )


@register
class LP(_POPMethod):
    name = "lp"
    summary = "Sherali–Adams LP level k (LiPopt-k) on the sparse binary POP, certified from its dual (HiGHS)"
    Options = LPOptions

    def suggest(self, ctx: Context) -> Suggestion | str:
        try:
            problem = ctx.problem()
        except LipoptError as exc:
            return str(exc)
        degree = max((p.degree for p in problem.pops), default=1)
        if ctx.norm == "2" and degree > 4:
            return f"the ℓ2 polynomial has degree {degree}: its LP is large and loose"
        level = max(degree, 2)
        if ctx.net.depth == 1:
            return Suggestion(
                (level,), 1.5, f"Sherali–Adams level {level} = the polynomial degree (one hidden layer)"
            )
        return Suggestion((level,), 2.5, f"the polynomial has {problem.pops[0].polynomial.num_terms:,} terms")

    def _old_options(self, ctx: Context, options: LPOptions) -> dict:
        kw = _kwargs(options, {"algorithm": "method", "cliques": "clique_method"})
        return {"lp": {**kw, "time_limit": ctx.time_limit, "max_bytes": ctx.max_memory_bytes}}


@dataclass(frozen=True)
class SDPOptions:
    solver: str | None = field(default=None, metadata={"help": "conic solver of the moment route"})
    shor_solver: str = field(
        default="auto", metadata={"help": "order-1 route", "choices": ("auto", "mixing", "conic")}
    )
    lp_solver: str = field(
        default="auto",
        metadata={"help": "sdp+lp route at level 2", "choices": ("auto", "conic", "lagrangian")},
    )
    lagrangian_rounds: int = field(
        default=50, metadata={"help": "subgradient rounds of the Lagrangian route"}
    )
    clique_method: str = field(
        default="auto",
        metadata={"help": "cliques", "choices": ("auto", "dense", "min-degree", "min-fill", "mcs-m")},
    )
    lp_level: int | None = field(default=None, metadata={"help": "Sherali–Adams level of sdp+lp"})
    psd_order: int = field(default=1, metadata={"help": "moment order of the PSD blocks of sdp+lp"})
    max_block: int | None = field(default=None, metadata={"help": "largest moment matrix allowed"})
    max_iter: int | None = field(default=None, metadata={"help": "iteration cap", "min": 1})
    tol: float = field(default=1e-7, metadata={"help": "relative gap tolerance of the mixing method"})


@register
class SDP(_POPMethod):
    name = "sdp"
    summary = "Lasserre/Shor SDP of order d (d = 1: Shor, mixing method), certified from its dual"
    Options = SDPOptions
    hierarchy = "order"

    def _old_options(self, ctx: Context, options: SDPOptions) -> dict:
        return {"sdp": {**_kwargs(options), "time_limit": ctx.time_limit, "max_bytes": ctx.max_memory_bytes}}


@register
class SDPLP(SDP):
    name = "sdp+lp"
    summary = "Shor SDP strengthened with Sherali–Adams rows of level k, certified"
    options_group = "sdp"
    hierarchy = "level"

    def suggest(self, ctx: Context) -> Suggestion | str:
        if ctx.net.depth != 1 or ctx.norm == "2":
            return "Shor + Sherali–Adams is the tightest fast route on one-hidden-layer ℓ∞/ℓ1 problems only"
        try:
            ctx.problem()
        except LipoptError as exc:
            return str(exc)
        return Suggestion(
            (2,), 1.0, "Shor + Sherali–Adams rows: tighter than LP-3 on one hidden layer, in seconds"
        )


@dataclass(frozen=True)
class ExactOptions:
    max_vars: int = field(default=22, metadata={"help": "enumerate at most 2^max_vars vertices per POP"})


@register
class ExactPOP(Method):
    name = "exact-pop"
    summary = "exact maximum of the norm-gradient polynomial by vertex enumeration (tiny networks)"
    Options = ExactOptions

    def suggest(self, ctx: Context) -> Suggestion | str:
        try:
            problem = ctx.problem()
        except LipoptError as exc:
            return str(exc)
        n = max((p.n_vars for p in problem.pops), default=0)
        if n > 16 or len(problem.pops) * 2**n > 2**18:
            return f"{n} binary variables: too many vertices to enumerate"
        return Suggestion((None,), 0.0, f"exact maximum of the polynomial ({n} binary variables)")

    def run(self, ctx: Context, level: int | None, options: ExactOptions) -> BoundResult:
        from ..bounds import _exact_pop_bound

        return _convert(_exact_pop_bound(ctx.problem(), options.max_vars), None)


@dataclass(frozen=True)
class BallOptions:
    solver: str | None = field(default=None, metadata={"help": "mixing (default) or a conic solver"})
    reduce: bool = field(default=True, metadata={"help": "QR-reduce the LMI (conic route)"})
    tol: float = field(default=1e-7, metadata={"help": "relative gap tolerance of the mixing method"})


@register
class SDPBall(Method):
    name = "sdp-ball"
    summary = "ℓ2 Shor SDP keeping t in the unit ball (one hidden layer)"
    Options = BallOptions
    norms = ("2",)

    def suggest(self, ctx: Context) -> Suggestion | str:
        if ctx.net.depth != 1 or not ctx.net.is_chain:
            return "the ball SDP is for one-hidden-layer networks"
        return Suggestion((None,), 1.0, "ℓ2 Shor SDP with the input direction in the ball (one hidden layer)")

    def run(self, ctx: Context, level: int | None, options: BallOptions) -> BoundResult:
        from ..bounds import _ball_bound

        opts = {"sdp-ball": {**_kwargs(options), "time_limit": ctx.time_limit, "seed": ctx.seed}}
        return _convert(_ball_bound(ctx.net, ctx.norm, ctx.target, ctx.domain, opts), None)


@dataclass(frozen=True)
class LipSDPOptions:
    per_target: bool | None = field(
        default=None, metadata={"help": "fold one target into the last layer (default: when there is one)"}
    )
    solver: str | None = field(
        default=None, metadata={"help": "conic solver (default MOSEK if licensed, else CVXOPT)"}
    )
    reduce_input: bool = field(default=True, metadata={"help": "exact input-space reduction"})
    solver_options: dict | None = field(
        default=None, metadata={"help": "keyword arguments of the conic solver"}
    )


@register
class LipSDP(Method):
    name = "lipsdp"
    summary = "LipSDP-Neuron (ℓ2; vector output, or one folded target), certified by an LMI check"
    Options = LipSDPOptions
    norms = ("2",)
    supports_local = False
    supports_residual = False

    interruptible = False  # CVXOPT's interior point cannot be stopped from outside

    def suggest(self, ctx: Context) -> Suggestion | str:
        neurons = sum(ctx.net.hidden_sizes)
        if neurons > 2000:
            return f"{neurons} neurons: the interior-point LMI is too large"
        return Suggestion((None,), 1.2, f"LipSDP-Neuron ({neurons} neurons)")

    def run(self, ctx: Context, level: int | None, options: LipSDPOptions) -> BoundResult:
        from ..bounds import _lipsdp_bound

        kw = {k: v for k, v in asdict(options).items() if v is not None or k == "per_target"}
        kw.update(kw.pop("solver_options", None) or {})
        opts = {"lipsdp": kw}
        old = _lipsdp_bound(ctx.net, ctx.norm, ctx.target, ctx.domain, opts)
        row = _convert(old, None)
        if old.size.get("per_target"):
            return row.with_note("LipSDP of the scalar network cᵀN (the target folded into the last layer)")
        if ctx.target.is_network:
            return row  # the network's ℓ2 constant itself
        return row.with_note("LipSDP's vector-output constant times ‖c‖₂")
