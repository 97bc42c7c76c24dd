"""The lower-bound search (``lower``): secants between real points of the domain."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Context, Method, register
from ..results import LowerBound


@dataclass(frozen=True)
class LowerOptions:
    """Options of the lower-bound search (:func:`lipopt.bounds.lower_bound`)."""

    samples: int = field(default=2000, metadata={"help": "random points sampled per target (>= 1)"})
    starts: int = field(default=16, metadata={"help": "smoothed-ascent starts from the best samples (>= 1)"})
    steps: int = field(default=60, metadata={"help": "ascent steps per start (>= 0)"})


@register
class Lower(Method):
    """The largest secant ``‖N(b) − N(a)‖ / ‖b − a‖`` found between real points of the domain."""

    name = "lower"
    summary = "largest secant slope found between real points of the domain (a lower bound; always added)"
    kind = "lower"
    Options = LowerOptions

    def search(self, ctx: Context, options: LowerOptions) -> LowerBound:
        """The best secant found (memoized per request: a branch and bound that starts from it
        and the chain's lower-bound row share one search)."""
        key = (self.name, options)
        if key not in ctx.memo:
            ctx.memo[key] = self._search(ctx, options)
        return ctx.memo[key]

    def _search(self, ctx: Context, options: LowerOptions) -> LowerBound:
        from ..bounds import lower_bound

        return lower_bound(
            ctx.net,
            ctx.norm,
            ctx.target,
            ctx.domain,
            seed=ctx.seed,
            n_samples=options.samples,
            n_starts=options.starts,
            steps=options.steps,
        )
