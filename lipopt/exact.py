"""Exact reference values for tiny problems (tests and sanity checks only).

* :func:`exact_pop_max` — ``max p(u)`` over ``u ∈ {0,1}^n`` by evaluating ``p`` at every vertex.
  A multilinear ``p = Σ_S p_S u^S`` has ``p(1_X) = Σ_{S⊆X} p_S``: the values at all ``2^n``
  vertices are the *zeta (subset-sum) transform* of the coefficient vector, computed in
  ``O(n 2^n)`` by ``n`` vectorized passes, in chunks of ``2^20`` vertices.
* :func:`exact_lipschitz` — the Lipschitz constant of a piecewise-linear network (ReLU, leaky
  ReLU, identity): the maximum of ``‖∇f‖_q`` (scalar target ``f = cᵀN``) or of ``‖J‖_{p→p}``
  (the network's constant; at a fixed pattern the Jacobian is a constant matrix) over the
  full-dimensional linear regions. Activation
  patterns are enumerated depth-first, neuron by neuron; a partial pattern is kept if it was
  observed at a sampled interior point or the LP ``max δ s.t. s_j (M_j x + m_j) ≥ δ ‖M_j‖``,
  ``δ ≤ 1``, ``x`` in the box (free for a global constant) has ``δ > 0``.
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import LipoptError
from .network import Network
from .polynomial import PAD, Polynomial
from .problems import Domain, parse_norm

CHUNK_BITS = 20


def _zeta(values: np.ndarray, bits: int) -> np.ndarray:
    """In place: ``values[X] ← Σ_{S ⊆ X} values[S]`` over ``bits``-bit masks."""
    for i in range(bits):
        v = values.reshape(-1, 2, 1 << i)
        v[:, 1, :] += v[:, 0, :]
    return values


def exact_pop_max(poly: Polynomial, max_vars: int = 24) -> float:
    """``max_{u ∈ {0,1}^n} p(u)`` by vertex enumeration (``u² = u`` is applied first)."""
    n = poly.n_vars
    if n > min(max_vars, 40):
        raise LipoptError(
            f"exact enumeration over 2^{n} vertices is above the limit 2^{min(max_vars, 40)}; "
            "use it on tiny problems only"
        )
    p = poly.reduce_binary()
    if n == 0 or p.num_terms == 0:
        return float(p.constant_term)
    s = np.asarray(p.supports, dtype=np.int64)
    used = s != PAD
    weights = np.where(used, np.left_shift(np.int64(1), np.where(used, s, 0)), 0)
    masks = np.zeros(len(s), dtype=np.int64)
    for j in range(s.shape[1]):  # distinct variables per row after reduce_binary
        masks |= weights[:, j]
    low = min(n, CHUNK_BITS)
    high = n - low
    low_mask = masks & ((1 << low) - 1)
    high_mask = masks >> low
    best = -np.inf
    for h in range(1 << high):
        sel = (high_mask & ~h) == 0
        vals = np.bincount(low_mask[sel], weights=p.coef[sel], minlength=1 << low)
        best = max(best, float(_zeta(vals, low).max()))
    return best


# ---------------------------------------------------------------------------------------------
# Exact Lipschitz constants of piecewise-linear networks
# ---------------------------------------------------------------------------------------------
def _interior_lp(G: np.ndarray, g: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None,
                 tol: float) -> bool:
    """Is ``{x : G x + g > 0}`` (∩ box) full-dimensional? Chebyshev-type LP ``max δ``.

    With a box the problem is first mapped to ``[−1, 1]^n`` (``x = centre + half·y``) and every
    row normalised, so ``δ`` is a radius relative to the box and ``tol`` compares with the LP
    solver's tolerances on a well-scaled problem (a box of width 1e-8 is as reliable as one of
    width 1)."""
    from scipy.optimize import linprog

    if lo is not None:
        centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        g = G @ centre + g
        G = G * half[None, :]
    norms = np.linalg.norm(G, axis=1)
    flat = norms <= 1e-300
    if np.any(flat & (g <= 0)):
        return False  # a constant row that is not > 0
    G, g, norms = G[~flat], g[~flat], norms[~flat]
    n = G.shape[1]
    if len(G) == 0:
        return True
    A_ub = np.hstack([-G / norms[:, None], np.ones((len(G), 1))])
    b_ub = g / norms
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    if lo is None:
        bounds = [(None, None)] * n + [(None, 1.0)]
    else:
        bounds = [(-1.0, 1.0)] * n + [(None, 1.0)]
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    return bool(res.status == 0 and -res.fun > tol)


def exact_lipschitz(
    net: Network,
    c: np.ndarray | None,
    norm: str = "inf",
    box: Domain | tuple[np.ndarray, np.ndarray] | None = None,
    max_neurons: int = 14,
    n_samples: int = 4096,
    seed: int = 0,
) -> float:
    """``sup_x ‖∇(cᵀN)(x)‖_q`` over ℝⁿ (``box=None``) or a box, for piecewise-linear nets;
    with ``c=None`` the network's constant ``sup_x ‖J(x)‖_{p→p}``.

    ``norm`` is the input norm p (``"inf"``, ``"2"``, ``"1"``); ``q`` is its dual.
    """
    norm = parse_norm(norm)
    if not net.is_chain:
        raise LipoptError("exact_lipschitz enumerates plain feed-forward chains only, not residual blocks")
    acts = [layer.activation for layer in net.layers[:-1]]
    if any(not a.is_piecewise_linear for a in acts):
        raise LipoptError("exact_lipschitz needs piecewise-linear activations (relu, leaky_relu)")
    branches = [a.derivative_shape == "step" for a in acts]
    n_branch = sum(layer.out_dim for layer, b in zip(net.layers[:-1], branches, strict=True) if b)
    if n_branch > max_neurons:
        raise LipoptError(
            f"exact_lipschitz enumerates 2^{n_branch} activation patterns, above the limit of "
            f"2^{max_neurons} (max_neurons); use it on tiny networks only"
        )
    n0 = net.input_dim
    weights = [layer.dense_weight() for layer in net.layers]
    value = functools.partial(_pattern_value, weights[-1], c, norm)
    lo, hi = _box_arrays(box, n0)
    seen = _sampled_patterns(net, acts, branches, lo, hi, n_samples, seed)
    biases = [np.asarray(layer.bias, dtype=float) for layer in net.layers]
    tol = 1e-9 if lo is None else 1e-7  # Chebyshev radius; relative to the box (see _interior_lp)
    best = -np.inf

    def rec(l: int, j: int, M: np.ndarray, m: np.ndarray, slopes: list[float],
            G: list[np.ndarray], g: list[float], prefix: tuple[int, ...]) -> None:
        nonlocal best
        L = len(acts)
        if l == L:
            best = max(best, value(M))
            return
        act = acts[l]
        if j == M.shape[0]:  # layer l done: propagate to the next layer's pre-activations
            D = np.asarray(slopes)
            if l + 1 < L:
                W = weights[l + 1]
                M2 = W @ (D[:, None] * M)
                m2 = W @ (D * m) + biases[l + 1]
                rec(l + 1, 0, M2, m2, [], G, g, prefix)
            else:
                rec(L, 0, D[:, None] * M, D * m, [], G, g, prefix)
            return
        if act.derivative_shape != "step":  # constant σ' (identity)
            rec(l, j + 1, M, m, slopes + [float(act.derivative(np.zeros(1))[0])], G, g, prefix)
            return
        low_slope, high_slope = act.step_slopes
        row, off = M[j], m[j] - act.kink
        for s in (1, 0):
            sign = 1.0 if s else -1.0
            slope = high_slope if s else low_slope
            pre = prefix + (s,)
            if not np.any(row):  # constant pre-activation
                if off == 0.0 or sign * off > 0:
                    rec(l, j + 1, M, m, slopes + [slope], G, g, pre)
                continue
            G2, g2 = G + [sign * row], g + [sign * off]
            if pre in seen or _interior_lp(np.array(G2), np.array(g2), lo, hi, tol):
                rec(l, j + 1, M, m, slopes + [slope], G2, g2, pre)

    if not acts:
        return value(np.eye(n0))
    rec(0, 0, weights[0], biases[0], [], [], [], ())
    return float(best)


def _pattern_value(w_last: np.ndarray, c: np.ndarray | None, norm, J: np.ndarray) -> float:
    """The quantity at a pattern, from the Jacobian ``J`` of the last hidden output (or the
    identity): ``‖W J‖_{p→p}`` for the network (``c`` None), else ``‖(W J)ᵀ c‖_q``."""
    full = w_last @ J
    if c is None:
        return float(norm.matrix_norm(full[None])[0][0])
    return float(norm.dual_norm(np.asarray(c, dtype=float).ravel() @ full))


def _box_arrays(box, n0: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if isinstance(box, Domain):
        return box.lo, box.hi
    if box is not None:
        lo = np.broadcast_to(np.asarray(box[0], float), (n0,)).copy()
        hi = np.broadcast_to(np.asarray(box[1], float), (n0,)).copy()
        return lo, hi
    return None, None


def _sampled_patterns(net, acts, branches, lo, hi, n_samples: int, seed: int) -> set[tuple[int, ...]]:
    """Every prefix of the activation patterns observed at sampled interior points (they are
    full-dimensional without an LP)."""
    rng = np.random.default_rng(seed)
    n0 = net.input_dim
    if lo is None:
        scales = np.repeat([0.1, 1.0, 10.0, 100.0, 1000.0], n_samples // 5 + 1)[:n_samples]
        xs = rng.standard_normal((n_samples, n0)) * scales[:, None]
    else:
        xs = lo + (hi - lo) * rng.random((n_samples, n0))
    zs = [z - a.kink for z, a in zip(net.pre_activations(xs), acts, strict=True)]
    seen: set[tuple[int, ...]] = set()
    if not zs:
        return seen
    interior = np.all(np.hstack([np.abs(z) for z in zs]) > 1e-9, axis=1)
    branch = np.concatenate([np.full(z.shape[1], b) for z, b in zip(zs, branches, strict=True)])
    pats = np.hstack([z > 0 for z in zs])[interior][:, branch].astype(np.int8)
    for row in np.unique(pats, axis=0):
        for j in range(1, len(row) + 1):
            seen.add(tuple(row[:j].tolist()))
    return seen
