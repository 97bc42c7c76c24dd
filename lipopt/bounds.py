"""Bounds on the target's Lipschitz constant: naive norm products, lower bounds, and the chain.

The quantity (:meth:`~lipopt.problems.Target.quantity`) is the scalar ``L_p(cᵀN) = sup ‖∇(cᵀN)‖_q``
for an output, a margin or a vector ``c``, and otherwise the network's constant
``sup_x ‖J(x)‖_{p→p}`` (DESIGN.md §1b). Upper bounds (all valid in floating point):

* ``naive``: ``Π_l ‖M_l W_l‖_{p→p}`` over the hidden blocks with ``M_l = diag(max |σ'|)`` per
  neuron, times ``‖W_{L+1}ᵀ c‖_q`` (scalar target) or ``‖W_{L+1}‖_{p→p}`` (the network).
* ``abs-product``: ``|J(x)| ≤ A = |W_{L+1}| M_L |W_L| ⋯ M_1 |W_1|`` entrywise, and the ℓ1, ℓ2, ℓ∞
  operator norms are monotone on nonnegative matrices, so the network's constant is
  ``≤ ‖A‖_{p→p}``; a scalar target gets ``‖Aᵀ|c|‖_q``. Never worse than ``naive`` for ℓ1, ℓ∞.
* relaxations (``lp``, ``sdp``, ``sdp+lp``, ``exact-pop``, ``sdp-ball``) of the POPs of
  :mod:`lipopt.problems` are registered methods (:mod:`lipopt.methods`), certified from their
  duals; for the network's ℓ2/ℓ1 constant their per-row bounds are combined
  (:meth:`~lipopt.norms.Norm.combine_rows`, stated in the row's note). ``lipsdp``
  (:func:`_lipsdp_bound`, bridged by :mod:`lipopt.methods._legacy`) bounds the ℓ2 network
  constant natively.

Lower bound (``lower``): the best secant between real points of the domain, found by sampling
and multi-start ascent on a smoothed surrogate; every secant is ≤ the true constant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import LipoptError
from .floats import EPS
from .lower import GLOBAL_SAMPLING_RADIUS, lower_bound  # noqa: F401 (re-exported)
from .network import Network
from .norms import spectral_norm_upper
from .problems import (
    Domain,
    Target,
    derivative_ranges,
    make_target,
    parse_norm,
)


@dataclass
class _LegacyRow:
    """The row type of the pre-registry pipelines below (converted by :mod:`lipopt.methods._legacy`)."""

    method: str
    degree: int | None
    value: float
    certified: bool
    status: str
    time_s: float
    build_time_s: float | None = None
    solve_time_s: float | None = None
    solver_value: float | None = None
    size: dict = field(default_factory=dict)
    solver: str | None = None
    note: str | None = None


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------
Ranges = list[tuple[np.ndarray, np.ndarray]]


def _slope_caps(net: Network, domain: Domain | None, ranges: Ranges | None = None) -> list[np.ndarray]:
    """``max |σ'|`` per hidden neuron over the domain (from ``ranges`` when given)."""
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    return [np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in ranges]


def naive_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """Product of operator norms (see the module doc); each hidden block contributes
    :meth:`~lipopt.network.Block.naive_norm` (a residual block ``σ(A x + B F(x))``:
    ``cap · (‖A‖ + ‖B‖ · Π ‖M_j W_j‖)``).
    ``ranges``: precomputed :func:`~lipopt.problems.derivative_ranges` of ``domain``.
    """
    norm = parse_norm(norm)
    target = target or make_target(net)
    inner = 1.0
    for layer, caps in list(net.per_block(_slope_caps(net, domain, ranges)))[:-1]:
        inner *= layer.naive_norm(norm, caps)
    if target.is_network:
        out = net.layers[-1].naive_norm(norm, [])
    else:
        w_last, _ = net.layers[-1].affine()
        out = max(norm.dual_norm(np.asarray(w_last.T @ c).ravel()) for c in target.vectors)
    depth = net.depth + 2
    return float(out * inner * (1 + 4 * depth * EPS))


def abs_product_vector(
    net: Network, c: np.ndarray, domain: Domain | None = None, ranges: Ranges | None = None
) -> np.ndarray:
    """``v = |W_1|ᵀ M_1 |W_2|ᵀ ⋯ M_L |W_{L+1}ᵀ|·|c|`` with ``|∇f(x)| ≤ v`` entrywise
    (residual blocks: ``|A|ᵀ + |J_F|ᵀ|B|ᵀ``)."""
    c = np.abs(np.asarray(c, dtype=float).ravel())[None, :]
    return abs_product_matrix(net, domain, ranges, rows=c)[0]


def abs_product_matrix(
    net: Network, domain: Domain | None = None, ranges: Ranges | None = None, rows: np.ndarray | None = None
) -> np.ndarray:
    """``A = |W_{L+1}| M_L |W_L| ⋯ M_1 |W_1|`` (``out × in``, ``|J(x)| ≤ A`` entrywise), or
    ``rows @ A`` for nonnegative ``rows``."""
    caps = [cap[None, :] for cap in _slope_caps(net, domain, ranges)]
    g = np.eye(net.output_dim) if rows is None else rows
    return net.backward(g, caps, absolute=True)


def abs_product_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """``‖A‖_{p→p}`` for the network, else the largest ``‖Aᵀ|c|‖_q`` over the target's rows
    (see :func:`abs_product_matrix`), padded for the rounding of ``A``."""
    norm = parse_norm(norm)
    target = target or make_target(net)
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    widest = max(net.widths)
    if target.is_network:
        value = norm.operator_norm(abs_product_matrix(net, domain, ranges))
    else:
        value = max(norm.dual_norm(abs_product_vector(net, c, domain, ranges)) for c in target.vectors)
    return float(value * (1 + 4 * (net.depth + 2) * widest * EPS))


# ---------------------------------------------------------------------------------------------
# LipSDP (pre-registry, bridged by methods._legacy)
# ---------------------------------------------------------------------------------------------
def _lipsdp_bound(
    net: Network, norm: str, target: Target, domain: Domain | None, options: dict
) -> _LegacyRow:
    """LipSDP-Neuron. A scalar target ``c`` (``--output``, ``--margin``): the scalar network
    ``cᵀN`` (last layer folded to ``cᵀW_{L+1}``). The network (several outputs): its ℓ2→ℓ2
    constant ``L`` natively (the published comparison). ``options["lipsdp"]["per_target"]``
    forces either: per row (the network's constant then combines the rows, see
    :meth:`~lipopt.problems.Target.combine`), or ``|cᵀ(N(x) − N(y))| ≤ ‖c‖₂ L ‖x − y‖₂``.
    """
    if norm != "2":
        raise LipoptError("lipsdp bounds the ℓ2 constant only: use it with --norm 2")
    if domain is not None:
        raise LipoptError("lipsdp is a global method; drop the domain or use --method lp/sdp")
    if not net.is_chain:
        raise LipoptError("lipsdp supports plain feed-forward chains only, not residual blocks")
    from .lipsdp import lipsdp_neuron

    acts = {site.activation for site in net.sites}
    slopes = [a.slope_bounds for a in acts] or [(1.0, 1.0)]
    alpha, beta = min(s[0] for s in slopes), max(s[1] for s in slopes)
    weights = [layer.dense_weight() for layer in net.layers]
    opts = dict(options.get("lipsdp", {}))
    per_target = opts.pop("per_target", None)
    if per_target is None:
        per_target = len(target.vectors) == 1
    t0 = time.perf_counter()
    if not per_target:
        r = lipsdp_neuron(weights, alpha=alpha, beta=beta, **opts)
        scale = float(max(np.linalg.norm(c) for c in target.vectors))
        runs = [(r, r.certified_value * scale, r.solver_value * scale)]
    else:
        # the hidden map x ↦ h(x) is Lipschitz with at most Π‖W_l‖₂ · max|slope|^L (ℓ2)
        slope = max(abs(alpha), abs(beta))
        inner = float(np.prod([spectral_norm_upper(w) for w in weights[:-1]])) * slope**net.depth
        runs = []
        for c in target.vectors:
            c = np.asarray(c, dtype=float)
            folded = (c @ weights[-1])[None, :]
            # |fl(cᵀW) − cᵀW| ≤ (m + 2)·eps·|c|ᵀ|W| entrywise (m = len(c)); that error row adds
            # at most its ℓ2 norm times the hidden map's Lipschitz constant
            err = (len(c) + 2) * EPS * (np.abs(c) @ np.abs(weights[-1]))
            r = lipsdp_neuron([*weights[:-1], folded], alpha=alpha, beta=beta, **opts)
            runs.append((r, r.certified_value + float(np.linalg.norm(err)) * inner, r.solver_value))
    dt = time.perf_counter() - t0
    worst = max(range(len(runs)), key=lambda i: runs[i][1])
    r = runs[worst][0]
    value = target.combine([x[1] for x in runs], norm)
    solver_value = target.combine([x[2] for x in runs], norm)
    result = _LegacyRow(
        "lipsdp",
        None,
        value * (1 + 4 * EPS),
        all(bool(x[0].certified) for x in runs),
        r.status,
        dt,
        sum(getattr(x[0], "build_time_s", 0.0) or 0.0 for x in runs),
        sum(getattr(x[0], "solve_time_s", 0.0) or 0.0 for x in runs),
        solver_value,
        {"neurons": sum(net.hidden_sizes), "per_target": bool(per_target), "solves": len(runs)},
        getattr(r, "solver", None),
    )
    return _add_note(result, target.combination_note(norm) if len(runs) > 1 else None)


def _add_note(result: _LegacyRow, note: str | None) -> _LegacyRow:
    if note:
        result.note = note if not result.note else f"{result.note}; {note}"
    return result
