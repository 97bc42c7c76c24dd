"""``lipsdp``: LipSDP-Neuron, by default through the structured solver (:mod:`lipopt.lipsdp_chain`).

Quantity: without a target, the network's ℓ2→ℓ2 constant (LipSDP's vector constant is exactly
the spectral norm of the Jacobian); with one or several scalar targets ``cᵀN``, each target's
constant, bounded on the folded chain ``cᵀW_{L+1}`` with the folding's rounding bounded. On a
local domain the per-neuron slope ranges over the box are used (stable neurons fixed).

``solver``: ``structured`` (the rank-2 primal–dual solver and the block-Cholesky certificate),
``conic`` (the cvxpy interior-point route of :mod:`lipopt.lipsdp`, global only), ``auto``
(structured).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..floats import EPS, round_up
from ..registry import Context, Method, register
from ..results import BoundResult, Certificate, Size, Status, Timings

SOLVERS = ("auto", "structured", "conic")


@dataclass(frozen=True)
class LipSDPOptions:
    solver: str = field(
        default="auto",
        metadata={
            "help": "structured (rank-2 primal-dual + block Cholesky), conic (cvxpy), auto",
            "choices": SOLVERS,
        },
    )
    rtol: float = field(
        default=1e-7, metadata={"help": "relative optimality tolerance of the structured solver"}
    )


def _weights(ctx: Context) -> list:
    return [
        layer.weight if sp.issparse(layer.weight) else np.asarray(layer.weight, float)
        for layer in ctx.net.layers
    ]


def _slopes(ctx: Context) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if ctx.is_local:
        ranges = ctx.ranges
        return [np.asarray(lo, float) for lo, _ in ranges], [np.asarray(hi, float) for _, hi in ranges]
    lo, hi = [], []
    for site in ctx.net.sites:
        a, b = site.activation.slope_bounds
        lo.append(np.full(site.size, a))
        hi.append(np.full(site.size, b))
    return lo, hi


def _spectral_upper(w) -> float:
    """An upper bound on ‖w‖₂ (Frobenius norm, rounded up)."""
    fro = sp.linalg.norm(w) if sp.issparse(w) else np.linalg.norm(w)
    return round_up(float(fro) * (1 + 4 * EPS * max(w.shape)), 2)


@register
class LipSDP(Method):
    """LipSDP-Neuron (Fazlyab et al. 2019), certified by a float-safe check of the full LMI."""

    name = "lipsdp"
    summary = "LipSDP-Neuron SDP (ℓ2), structured interior point, certified by block Cholesky"
    Options = LipSDPOptions
    norms = ("2",)
    supports_residual = False

    def applies(self, ctx: Context) -> str | None:
        why = super().applies(ctx)
        if why is None and self.solver_for(ctx, LipSDPOptions()) == "conic" and ctx.is_local:
            return "lipsdp with solver=conic is global only"
        return why

    @staticmethod
    def solver_for(ctx: Context, options: LipSDPOptions) -> str:
        return "structured" if options.solver == "auto" else options.solver

    def estimate(self, ctx: Context, level, options) -> Size:
        sizes = ctx.net.hidden_sizes
        n0 = min(ctx.net.input_dim, sizes[0]) if sizes else ctx.net.input_dim
        m, N = n0 + sum(sizes), sum(sizes)
        return Size(
            neurons=N, psd_blocks=1, largest_block=m, memory_bytes=8 * (8 * m * m + 12 * N * N + 2 * N * m)
        )

    def run(self, ctx: Context, level, options: LipSDPOptions) -> BoundResult:
        t0 = time.perf_counter()
        solver = self.solver_for(ctx, options)
        weights = _weights(ctx)
        lo, hi = _slopes(ctx)
        vector = ctx.target.kind == "all-outputs"
        targets = [None] if vector else list(ctx.target.vectors)
        budget = ctx.budget()
        certs = []
        for c in targets:
            certs.append(self._one(weights, lo, hi, c, solver, options, budget, ctx.max_memory_bytes))
        worst = max(certs, key=lambda x: x.value)
        certified = all(x.certified for x in certs)
        status = (
            Status.TIME_LIMIT
            if any(x.details.get("status") == "time_limit" for x in certs)
            else Status.OPTIMAL
        )
        elapsed = time.perf_counter() - t0
        cert = Certificate(
            worst.value if certified else math.inf,
            certified,
            worst.kind,
            worst.solver_value,
            worst.margin,
            worst.details,
        )
        return BoundResult.from_certificate(
            self.name,
            None,
            cert,
            status,
            Timings(
                elapsed,
                solve=sum(float(x.details.get("solve_time_s", 0.0)) for x in certs),
                certify=sum(float(x.details.get("certify_time_s", 0.0)) for x in certs),
            ),
            Size(neurons=sum(ctx.net.hidden_sizes), solves=len(certs)),
            solver="structured primal-dual (rank-2 HKM)" if solver == "structured" else "cvxpy conic",
        )

    def _one(self, weights, lo, hi, c, solver, options, budget, max_memory) -> Certificate:
        ws = list(weights)
        err_row = None
        if c is not None:
            last = weights[-1].toarray() if sp.issparse(weights[-1]) else weights[-1]
            c = np.asarray(c, dtype=float)
            ws[-1] = (c @ last)[None, :]
            # |fl(cᵀW) − cᵀW| ≤ (len(c) + 2)·eps·|c|ᵀ|W| entrywise
            err_row = (len(c) + 2) * EPS * (np.abs(c) @ np.abs(last))
        if solver == "conic":
            cert = _conic(ws, lo, hi)
        else:
            from ..lipsdp_chain import lipsdp_bound

            remaining = budget.remaining()
            cert = lipsdp_bound(
                ws,
                lo,
                hi,
                time_limit=None if math.isinf(remaining) else remaining,
                rtol=options.rtol,
                max_memory_bytes=max_memory,
            )
        if err_row is not None and cert.certified:
            # the folding error row adds ‖err‖₂ · Lip(hidden map) ≤ ‖err‖₂ · Π ‖W_l‖₂ · max|slope|^L
            slope = max(max(float(np.max(np.abs(x))) for x in lo), max(float(np.max(np.abs(x))) for x in hi))
            inner = float(np.prod([_spectral_upper(w) for w in weights[:-1]])) * slope ** (len(weights) - 1)
            extra = round_up(float(np.linalg.norm(err_row)) * inner * (1 + 8 * EPS), 2)
            value = round_up(cert.value + extra, 1)
            cert = Certificate(
                value, True, cert.kind, cert.solver_value, value - (cert.solver_value or 0.0), cert.details
            )
        return cert


def _conic(weights, lo, hi) -> Certificate:
    """The cvxpy interior-point route of :mod:`lipopt.lipsdp` (uniform slopes only)."""
    from ..lipsdp import lipsdp_neuron

    alpha = min(float(np.min(x)) for x in lo)
    beta = max(float(np.max(x)) for x in hi)
    if not (all(np.all(x == alpha) for x in lo) and all(np.all(x == beta) for x in hi)):
        raise LipoptError("lipsdp with solver=conic supports one slope interval for all neurons")
    dense = [w.toarray() if sp.issparse(w) else w for w in weights]
    t0 = time.perf_counter()
    r = lipsdp_neuron(dense, alpha=alpha, beta=beta)
    return Certificate(
        r.certified_value,
        r.certified,
        "LMI check (dense eigenvalue, lipopt.lipsdp)",
        r.solver_value,
        r.certified_value - r.solver_value,
        {
            "solve_time_s": r.solve_time_s,
            "certify_time_s": r.certify_time_s,
            "time_s": time.perf_counter() - t0,
        },
    )
