"""Bridge from the registry to the pre-registry LipSDP pipeline (``lipsdp``), until it gets its
own method module."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
