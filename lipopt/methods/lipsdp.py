"""``lipsdp``: LipSDP-Neuron, by default through the structured solver (:mod:`lipopt.lipsdp_chain`).

Quantity: without a target, the network's ℓ2→ℓ2 constant (LipSDP's vector constant is exactly
the spectral norm of the Jacobian); with one or several scalar targets ``cᵀN``, each target's
constant, bounded on the folded chain ``cᵀW_{L+1}`` with the folding's rounding bounded
(``per_target=False``: the vector constant times ``‖c‖₂`` instead).

Chains of stride-1 convolutions whose unrolled LMI is large go through the Fourier route
(:mod:`lipopt.lipsdp_conv`, per-channel multipliers).

``solver``: ``auto``/``structured`` (the rank-2 primal–dual solver and the block-Cholesky
certificate), ``conic`` or a conic solver's name (``CVXOPT``, ``CLARABEL``, ``SCS``, ``MOSEK``:
the cvxpy interior-point route of :mod:`lipopt.lipsdp`, run in a child process under the limits
since CVXOPT cannot be interrupted).

Local domains use per-neuron slope ranges over the box (:func:`lipopt.lipsdp_chain.lipsdp_bound`:
stable neurons have slope exactly 0 or 1, a tighter LMI than the global one); residual blocks go
through :func:`lipopt.lipsdp_dag.lipsdp_dag_bound`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..floats import EPS, round_up
from ..registry import Context, Method, Suggestion, register
from ..results import BoundResult, Certificate, Size, Status, Timings

CONIC = ("CVXOPT", "CLARABEL", "SCS", "MOSEK")
SOLVERS = ("auto", "structured", "conic", *CONIC)


@dataclass(frozen=True)
class LipSDPOptions:
    solver: str = field(
        default="auto",
        metadata={
            "help": "auto/structured (rank-2 primal-dual, block Cholesky), conic or a conic solver (cvxpy)",
            "choices": SOLVERS,
        },
    )
    rtol: float = field(
        default=1e-9, metadata={"help": "relative optimality tolerance of the structured solver"}
    )
    per_target: bool | None = field(
        default=None,
        metadata={"help": "fold each target into the last layer (default: when targets are given)"},
    )
    reduce_input: bool = field(default=True, metadata={"help": "exact input-space reduction (conic route)"})
    solver_options: dict | None = field(
        default=None, metadata={"help": "keyword arguments of the conic solver"}
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

    def suggest(self, ctx: Context) -> Suggestion | str:
        neurons = sum(ctx.net.hidden_sizes)
        if neurons > 20000:
            return f"{neurons} neurons: the LMI is too large"
        return Suggestion((None,), 1.2, f"LipSDP-Neuron ({neurons} neurons, structured solver)")

    def stops_at_time_limit(self, ctx: Context, level: int | None, options: LipSDPOptions) -> bool:
        """The structured solver checks the clock; the conic route's default (``conic``) is CVXOPT."""
        from ..solvers.conic import stops_itself

        return self.solver_for(ctx, options) == "structured" or stops_itself(options.solver)

    @staticmethod
    def solver_for(ctx: Context, options: LipSDPOptions) -> str:
        return "structured" if options.solver in ("auto", "structured") else "conic"

    def estimate(self, ctx: Context, level, options) -> Size:
        sizes = ctx.net.hidden_sizes
        n0 = min(ctx.net.input_dim, sizes[0]) if sizes else ctx.net.input_dim
        m, N = n0 + sum(sizes), sum(sizes)
        from ..lipsdp_certify import certificate_bytes

        # the solver's working set plus the certificate's dense blocks (unreduced input block)
        memory = 8 * (8 * m * m + 12 * N * N + 2 * N * m) + certificate_bytes([ctx.net.input_dim, *sizes])
        return Size(neurons=N, psd_blocks=1, largest_block=m, memory_bytes=memory)

    def run(self, ctx: Context, level, options: LipSDPOptions) -> BoundResult:
        if self.solver_for(ctx, options) == "conic":
            return _conic_row(ctx, options)
        t0 = time.perf_counter()
        solver = "structured"
        weights = _weights(ctx) if ctx.net.is_chain else []
        lo, hi = _slopes(ctx)
        per_target = options.per_target
        if per_target is None:
            per_target = not ctx.target.is_network
        targets = list(ctx.target.vectors) if per_target else [None]
        budget = ctx.budget()
        certs = []
        for c in targets:
            if not ctx.net.is_chain:
                certs.append(self._residual(ctx, lo, hi, c, options, budget))
                continue
            certs.append(self._one(weights, lo, hi, c, solver, options, budget, ctx.max_memory_bytes))
        worst = max(certs, key=lambda x: x.value)
        certified = all(x.certified for x in certs)
        status = (
            Status.TIME_LIMIT
            if any(x.details.get("status") == "time_limit" for x in certs)
            else Status.OPTIMAL
        )
        elapsed = time.perf_counter() - t0
        value = worst.value
        if per_target and ctx.target.is_network and len(certs) > 1:
            # per-row scalar constants combine into a bound on the network's ℓ2→ℓ2 constant
            value = round_up(ctx.target.combine([x.value for x in certs], "2") * (1 + 8 * EPS), 2)
        elif not per_target and not ctx.target.is_network:
            # |cᵀ(N(x) − N(y))| ≤ ‖c‖₂ L ‖x − y‖₂
            value = round_up(
                value * max(float(np.linalg.norm(c)) for c in ctx.target.vectors) * (1 + 4 * EPS), 1
            )
        cert = Certificate(
            value if certified else math.inf,
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
            solver="structured primal-dual (rank-2 HKM)",
            note=_note(ctx, per_target),
        )

    def _residual(self, ctx: Context, lo, hi, c, options, budget) -> Certificate:
        """Residual blocks: the DAG LMI (:mod:`lipopt.lipsdp_dag`); a target row is folded, its
        rounding bounded through the naive ℓ2 bound of the hidden map."""
        from ..lipsdp_dag import lipsdp_dag_bound

        remaining = budget.remaining()
        last = ctx.net.layers[-1].weight
        last = last.toarray() if sp.issparse(last) else np.asarray(last, dtype=float)
        row = None if c is None else (np.asarray(c, dtype=float) @ last)[None, :]
        cert = lipsdp_dag_bound(
            ctx.net, list(zip(lo, hi, strict=True)),
            time_limit=None if math.isinf(remaining) else remaining,
            rtol=options.rtol, max_memory_bytes=ctx.max_memory_bytes, last=row,
        )  # fmt: skip
        if c is None or not cert.certified:
            return cert
        err = (len(c) + 2) * EPS * (np.abs(c) @ np.abs(last))
        extra = round_up(float(np.linalg.norm(err)) * _hidden_upper(ctx.net, lo, hi) * (1 + 8 * EPS), 2)
        value = round_up(cert.value + extra, 1)
        return Certificate(
            value, True, cert.kind, cert.solver_value, value - (cert.solver_value or 0.0), cert.details
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
        if c is None and _fourier_applies(ws, lo, hi):
            from ..lipsdp_conv import lipsdp_conv_bound

            remaining = budget.remaining()
            cert = lipsdp_conv_bound(
                ws, time_limit=None if math.isinf(remaining) else remaining, rtol=options.rtol,
                max_memory_bytes=max_memory,
            )  # fmt: skip
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


#: above this LMI order a chain of convolutions goes through the Fourier route (per-channel
#: multipliers, exact for its zero-padded maps); below, the unrolled per-neuron LMI is tighter
FOURIER_ORDER = 3000


def _fourier_applies(weights, lo, hi) -> bool:
    from ..lipsdp_conv import conv_chain_specs

    order = weights[0].shape[1] + sum(w.shape[0] for w in weights[:-1])
    relu = all(np.all(a == 0.0) for a in lo) and all(np.all(b == 1.0) for b in hi)
    return (
        order > FOURIER_ORDER
        and relu
        and all(sp.issparse(w) for w in weights)
        and (conv_chain_specs(weights) is not None)
    )


def _note(ctx: Context, per_target: bool) -> str:
    if per_target:
        return "LipSDP of the scalar network cᵀN (the target folded into the last layer)"
    if ctx.target.is_network:
        return "LipSDP's vector-output constant (the Jacobian's ℓ2→ℓ2 norm)"
    return "LipSDP's vector-output constant times ‖c‖₂"


def _conic_row(ctx: Context, options: LipSDPOptions) -> BoundResult:
    """The cvxpy interior-point route (:func:`lipopt.bounds._lipsdp_bound`). CVXOPT cannot be
    interrupted: :meth:`LipSDP.stops_at_time_limit` says so, and the chain runs this step in a
    child process stopped at the time and memory limits."""
    from ..bounds import _lipsdp_bound
    from ._legacy import _convert

    kw = {"per_target": options.per_target, "reduce_input": options.reduce_input}
    if options.solver in CONIC:
        kw["solver"] = options.solver
    kw.update(options.solver_options or {})
    old = _lipsdp_bound(ctx.net, ctx.norm, ctx.target, ctx.domain, {"lipsdp": kw})
    row = _convert(old, None)
    if old.size.get("per_target"):
        return row.with_note("LipSDP of the scalar network cᵀN (the target folded into the last layer)")
    return row.with_note("LipSDP's vector-output constant times ‖c‖₂")


def _hidden_upper(net, lo, hi) -> float:
    """An upper bound on the ℓ2 Lipschitz constant of the map to the last hidden vector:
    products of Frobenius norms (≥ spectral) and slope magnitudes; a residual block contributes
    ``s·(‖A‖ + ‖B‖·Π‖W_d‖ s_d)`` (``‖I‖`` counted as 1)."""
    from ..network import Residual

    slopes = [max(float(np.max(np.abs(a))), float(np.max(np.abs(b)))) for a, b in zip(lo, hi, strict=True)]
    k, total = 0, 1.0
    for layer in net.layers[:-1]:
        if isinstance(layer, Residual):
            inner = 1.0
            for d in layer.inner:
                inner *= _spectral_upper(d.weight) * slopes[k]
                k += 1
            a = 1.0 if layer.skip is None else _spectral_upper(layer.skip)
            b = 1.0 if layer.out is None else _spectral_upper(layer.out)
            total *= (a + b * inner) * slopes[k]
        else:
            total *= _spectral_upper(layer.weight) * slopes[k]
        k += 1
    return round_up(total * (1 + 16 * EPS * (k + 1)), 2)
