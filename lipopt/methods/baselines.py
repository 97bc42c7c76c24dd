"""Closed-form baselines (``naive``, ``abs-product``) and the lower-bound search (``lower``)."""

from __future__ import annotations

import time

from ..registry import Context, Method, Suggestion, register
from ..results import BoundResult, Certificate, Size, Status, Timings


def _closed_form_row(name: str, value: float, started: float, ctx: Context) -> BoundResult:
    cert = Certificate(value, True, "closed form (rounded up)", value)
    elapsed = time.perf_counter() - started
    return BoundResult.from_certificate(
        name,
        None,
        cert,
        Status.OPTIMAL,
        Timings(elapsed, solve=elapsed),
        Size(neurons=sum(ctx.net.hidden_sizes)),
    )


@register
class Naive(Method):
    """``Π_l ‖M_l W_l‖_{p→p}``, ``M_l = diag(max |σ'|)`` over the domain, times ``‖W_{L+1}ᵀ c‖_q``
    (a scalar target) or ``‖W_{L+1}‖_{p→p}`` (the network)."""

    name = "naive"
    summary = "product of the layers' operator norms (slopes capped over the domain)"

    def run(self, ctx: Context, level: int | None, options) -> BoundResult:
        from ..bounds import naive_bound

        t0 = time.perf_counter()
        return _closed_form_row(
            self.name, naive_bound(ctx.net, ctx.norm, ctx.target, ctx.domain, ctx.ranges), t0, ctx
        )


@register
class AbsProduct(Method):
    """``|J| ≤ A = |W_{L+1}| M_L ⋯ M_1 |W_1|`` entrywise, so the network's constant is
    ``≤ ‖A‖_{p→p}`` and a scalar target's ``≤ ‖Aᵀ|c|‖_q``."""

    name = "abs-product"
    summary = "norm of the product of the layers' absolute values (never above naive for ℓ1, ℓ∞)"

    def suggest(self, ctx: Context) -> Suggestion:
        return Suggestion((None,), 3.0, "closed form, never above naive for ℓ1/ℓ∞", cheap=True)

    def run(self, ctx: Context, level: int | None, options) -> BoundResult:
        from ..bounds import abs_product_bound

        t0 = time.perf_counter()
        value = abs_product_bound(ctx.net, ctx.norm, ctx.target, ctx.domain, ctx.ranges)
        return _closed_form_row(self.name, value, t0, ctx)
