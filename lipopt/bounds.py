"""Bounds on ``L_p(f)``: naive norm products, lower bounds, and LipSDP's pre-registry pipeline.

Upper bounds (all valid in floating point):

* ``naive``: ``‖W_{L+1}ᵀ c‖_q · Π_l ‖M_l W_l‖_{p→p}`` with ``M_l = diag(max |σ'|)`` per neuron
  (operator norms: ℓ∞ max row sum, ℓ1 max column sum, ℓ2 largest singular value).
* ``abs-product``: ``|∇f| ≤ v = |W_1|ᵀ M_1 ⋯ |W_L|ᵀ M_L |W_{L+1}ᵀ c|`` entrywise, so
  ``L_p(f) ≤ ‖v‖_q``; never worse than ``naive`` for ℓ1 and ℓ∞.
* ``lipsdp`` (:func:`_lipsdp_bound`, bridged by :mod:`lipopt.methods._legacy`); the relaxations
  of the POPs (``lp``, ``sdp``, ``sdp+lp``, ``sdp-ball``, ``exact-pop``) are registered methods
  (:mod:`lipopt.methods`).

Lower bound (``lower``): the largest ``‖∇f(x)‖_q`` found at real points of the domain, from random
samples and multi-start ascent on a smoothed surrogate. Any such value is ≤ the true constant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EPS
from .network import Network, Residual
from .problems import (
    Domain,
    Target,
    derivative_ranges,
    make_target,
    parse_norm,
)
from .results import LowerBound

GLOBAL_SAMPLING_RADIUS = 10.0


@dataclass
class _LegacyRow:
    """The row type of the pre-registry LipSDP pipeline below (converted by :mod:`lipopt.methods._legacy`)."""

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


def _spectral_norm_upper(w) -> float:
    """A guaranteed upper bound on ``‖W‖₂`` (largest singular value)."""
    if sp.issparse(w) and min(w.shape) > 3000:
        a = abs(w)
        # ‖W‖₂ ≤ sqrt(‖W‖₁ ‖W‖∞): valid without an eigensolver for huge sparse layers
        return float(np.sqrt(a.sum(axis=0).max() * a.sum(axis=1).max()) * (1 + 8 * EPS * max(w.shape)))
    wd = w.toarray() if sp.issparse(w) else np.asarray(w)
    gram = wd @ wd.T if wd.shape[0] <= wd.shape[1] else wd.T @ wd
    lam = float(np.linalg.eigvalsh(gram)[-1])
    # eigvalsh backward error ≤ c·n·eps·‖G‖; ‖G‖ ≤ ‖G‖_F. Rounding of the Gram product too.
    margin = 8 * gram.shape[0] * EPS * float(np.linalg.norm(gram)) + 4 * min(wd.shape) * EPS * float(
        (wd**2).sum()
    )
    return float(np.sqrt(max(lam + margin, 0.0)))


def _operator_norm(w, norm: str) -> float:
    if norm == "2":
        return _spectral_norm_upper(w)
    a = abs(w)
    axis = 1 if norm == "inf" else 0  # ℓ∞: max row sum; ℓ1: max column sum
    sums = np.asarray(a.sum(axis=axis)).ravel()
    return float(sums.max() * (1 + 2 * a.shape[axis] * EPS)) if sums.size else 0.0


def _dual_norm(v: np.ndarray, norm: str) -> float:
    """``‖v‖_q`` with q dual to the input norm p."""
    if norm == "inf":
        return float(np.abs(v).sum(axis=-1)) if v.ndim == 1 else np.abs(v).sum(axis=-1)
    if norm == "1":
        return float(np.abs(v).max(axis=-1)) if v.ndim == 1 else np.abs(v).max(axis=-1)
    return float(np.linalg.norm(v, axis=-1)) if v.ndim == 1 else np.linalg.norm(v, axis=-1)


def _scaled(cap: np.ndarray, w):
    """``diag(cap) W``."""
    return sp.diags(cap) @ w if sp.issparse(w) else cap[:, None] * np.asarray(w)


def naive_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """Product of operator norms (see module docstring); max over the target's rows.

    A residual block ``σ(A x + B F(x))`` contributes ``cap · (‖A‖ + ‖B‖ · Π ‖M_j W_j‖)``.
    ``ranges``: precomputed :func:`~lipopt.problems.derivative_ranges` of ``domain``.
    """
    norm = parse_norm(norm)
    target = target or make_target(net)
    caps = iter(_slope_caps(net, domain, ranges))
    inner = 1.0
    for layer in net.layers[:-1]:
        if isinstance(layer, Residual):
            f_norm = 1.0
            for d in layer.inner:
                f_norm *= _operator_norm(_scaled(next(caps), d.weight), norm)
            a = 1.0 if layer.skip is None else _operator_norm(layer.skip, norm)
            b = 1.0 if layer.out is None else _operator_norm(layer.out, norm)
            inner *= float(np.max(next(caps))) * (a + b * f_norm) * (1 + 4 * EPS)
        else:
            inner *= _operator_norm(_scaled(next(caps), layer.weight), norm)
    w_last = net.layers[-1].weight
    outs = [_dual_norm(np.asarray(w_last.T @ c).ravel(), norm) for c in target.vectors]
    depth = net.depth + 2
    return float(max(outs) * inner * (1 + 4 * depth * EPS))


def abs_product_vector(
    net: Network, c: np.ndarray, domain: Domain | None = None, ranges: Ranges | None = None
) -> np.ndarray:
    """``v = |W_1|ᵀ M_1 |W_2|ᵀ ⋯ M_L |W_{L+1}ᵀ|·|c|`` with ``|∇f(x)| ≤ v`` entrywise
    (residual blocks: ``|A|ᵀ + |J_F|ᵀ|B|ᵀ``)."""
    caps = [cap[None, :] for cap in _slope_caps(net, domain, ranges)]
    g = np.abs(np.asarray(c, dtype=float).ravel())[None, :]
    return net.backward(g, caps, absolute=True)[0]


def abs_product_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    ranges: Ranges | None = None,
) -> float:
    """Dual norm of :func:`abs_product_vector`, max over the target's rows."""
    norm = parse_norm(norm)
    target = target or make_target(net)
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    widest = max(net.widths)
    vals = [_dual_norm(abs_product_vector(net, c, domain, ranges), norm) for c in target.vectors]
    return float(max(vals) * (1 + 4 * (net.depth + 2) * widest * EPS))


# ---------------------------------------------------------------------------------------------
# Lower bound
# ---------------------------------------------------------------------------------------------
def _smoothed_gradient(net: Network, x: np.ndarray, c: np.ndarray, beta: float) -> np.ndarray:
    """Gradient of the network with every (leaky) ReLU derivative replaced by ``sigmoid(βz)``."""
    slopes = []
    for site, z in zip(net.sites, net.pre_activations(x), strict=True):
        act = site.activation
        if act.name in ("relu", "leaky_relu"):
            lo = 0.0 if act.name == "relu" else act.alpha
            slopes.append(lo + (1 - lo) * 0.5 * (1 + np.tanh(0.5 * beta * z)))
        else:
            slopes.append(act.derivative(z))
    return net.backward(np.tile(np.asarray(c, dtype=float), (x.shape[0], 1)), slopes)


def _dual_direction(g: np.ndarray, norm: str) -> np.ndarray:
    """A subgradient of ``‖g‖_q`` with respect to g (row-wise)."""
    if norm == "inf":
        return np.sign(g)
    if norm == "1":
        out = np.zeros_like(g)
        idx = np.abs(g).argmax(axis=1)
        out[np.arange(len(g)), idx] = np.sign(g[np.arange(len(g)), idx])
        return out
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)


def lower_bound(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    *,
    n_samples: int = 2000,
    n_starts: int = 16,
    steps: int = 60,
    seed: int = 0,
    n_verify: int = 8,
) -> LowerBound:
    """A lower bound on the Lipschitz constant: the best *secant* ``|cᵀ(f(b) − f(a))| / ‖b − a‖_p``
    with ``a, b`` in the domain, around the points of largest ``‖∇f(x)‖_q``.

    Search: sampling, then gradient steps on the smoothed surrogate ``‖∇f_β(x)‖_q`` (ReLU' ≈
    sigmoid(βz), β increasing, Hessian–vector products by central differences); every iterate is
    a real point. Global bounds sample ``[−10, 10]^n`` (and around ``x0`` if the network carries
    one). Verification: a gradient formula can be wrong at a kink on the domain's edge (it may
    belong to a region outside the domain), so the ``n_verify`` best points are re-measured by
    secants along the dual direction of the gradient (:func:`_secant_lower`); only secant values
    are reported, and every secant between two points of the domain is ≤ the constant.
    """
    norm = parse_norm(norm)
    target = target or make_target(net)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise LipoptError(f"the seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    n = net.input_dim
    if domain is None:
        lo, hi = np.full(n, -GLOBAL_SAMPLING_RADIUS), np.full(n, GLOBAL_SAMPLING_RADIUS)
    else:
        lo, hi = domain.lo, domain.hi
    width = float(np.max(hi - lo)) if np.all(np.isfinite(hi - lo)) else 1.0
    best = LowerBound(0.0, "sampling", None, None)
    for c, label in zip(target.vectors, target.labels, strict=True):
        found: list[tuple[float, np.ndarray, str]] = []  # (gradient norm, point, how found)
        pts = lo + (hi - lo) * rng.random((n_samples, n))
        if domain is None:
            # narrower shells find the many regions near the origin and the data
            scale = np.geomspace(1e-2, 1.0, n_samples)[:, None]
            centre = net.x0 if net.x0 is not None else np.zeros(n)
            pts = np.clip(centre + scale * (pts - 0.5 * (lo + hi)), lo, hi)
        vals = _dual_norm(net.gradient(pts, c), norm)
        order = np.argsort(vals)
        found += [(float(vals[i]), pts[i], "sampling") for i in order[-n_verify:]]
        # multi-start smoothed ascent from the best samples
        x = pts[order[-n_starts:]].copy()
        step, h = 0.05 * width, 1e-5 * max(width, 1e-3)
        for k in range(steps):
            beta = 10.0 ** (1 + 3 * k / max(1, steps - 1)) / max(width, 1e-6)
            g = _smoothed_gradient(net, x, c, beta)
            v = _dual_direction(g, norm)
            # ∇ₓ ⟨v, ∇f_β(x)⟩ = H_β v (H symmetric): a central difference of ∇f_β along v
            direction = (
                _smoothed_gradient(net, x + h * v, c, beta) - _smoothed_gradient(net, x - h * v, c, beta)
            ) / (2 * h)
            nrm = np.linalg.norm(direction, axis=1, keepdims=True)
            x = np.clip(x + step * direction / np.maximum(nrm, 1e-300), lo, hi)
            vals = _dual_norm(net.gradient(x, c), norm)
            i = int(np.argmax(vals))
            found.append((float(vals[i]), x[i].copy(), "sampling+ascent"))
            step *= 0.97
        found.sort(key=lambda f: f[0])
        box = None if domain is None else (domain.lo, domain.hi)
        for _, point, how in found[-n_verify:]:
            value = _secant_lower(net, c, point, norm, box, width)
            if value > best.value:
                best = LowerBound(value, how, point.copy(), label)
    return best


def _secant_lower(
    net: Network,
    c: np.ndarray,
    x: np.ndarray,
    norm: str,
    box: tuple[np.ndarray, np.ndarray] | None,
    width: float,
) -> float:
    """``max_h |cᵀ(f(b) − f(a))| / ‖b − a‖_p`` for ``a, b = x ∓ h d`` (clipped to the box), ``d``
    the dual direction of ``∇f(x)``, ``h`` from ``10⁻²`` to ``10⁻⁶`` of the domain's width; the
    difference is reduced by a float margin ``10⁻¹²·(|f(a)| + |f(b)|)`` so it never gains from
    rounding."""
    g = net.gradient(x[None, :], c)
    d = _dual_direction(g, norm)[0]
    if not np.any(d):
        return 0.0
    q = {"inf": np.inf, "2": 2, "1": 1}[norm]
    hs = width * np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    a = x[None, :] - hs[:, None] * d[None, :]
    b = x[None, :] + hs[:, None] * d[None, :]
    if box is not None:
        a, b = np.clip(a, *box), np.clip(b, *box)
    fa = net.forward(a) @ c
    fb = net.forward(b) @ c
    dist = np.linalg.norm(b - a, ord=q, axis=1)
    diff = np.abs(fb - fa) - 1e-12 * (np.abs(fa) + np.abs(fb))
    ok = dist > 0
    if not np.any(ok):
        return 0.0
    return float(max(0.0, np.max(diff[ok] / dist[ok])))


# ---------------------------------------------------------------------------------------------
# LipSDP (pre-registry)
# ---------------------------------------------------------------------------------------------
def _lipsdp_bound(
    net: Network, norm: str, target: Target, domain: Domain | None, options: dict
) -> _LegacyRow:
    """LipSDP-Neuron. One target vector ``c`` (``--output``, ``--margin``): the scalar network
    ``cᵀN`` (last layer folded to ``cᵀW_{L+1}``), which bounds exactly the chain's quantity.
    Several: the vector-output constant ``L`` of ``N`` (the published comparison), and
    ``|cᵀ(N(x) − N(y))| ≤ ‖c‖₂ L ‖x − y‖₂``. ``options["lipsdp"]["per_target"]`` forces either.
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
        inner = float(np.prod([_spectral_norm_upper(w) for w in weights[:-1]])) * slope**net.depth
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
    r, value, solver_value = runs[worst]
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
    return result
