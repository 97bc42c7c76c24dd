r"""Node-level bounds for layer-wise methods: pre-activations under neuron splits, slopes, backward
(gradient) intervals, interval Jacobians, and exact values at verified points.

Everything here works on a **batch** of branch-and-bound nodes at once (a leading axis ``B``)
and on a plain chain ``z_l = W_l a_{l−1} + b_l τ``, ``a_l = σ_l(z_l)`` (:class:`Chain`), where
``τ`` is an extra input coordinate: ``τ ≡ 1`` for a local box, ``τ ∈ [0, 1]`` for the homogenized
global problem (see :mod:`lipopt.bab`). Inputs are boxes over ``(x, τ)`` with shape
``(B, n0 + 1)``; a split is an ``int8`` array per hidden layer (``+1`` active: ``z ≥ 0``,
``−1`` inactive: ``z ≤ 0``, ``0`` free).

Pre-activation bounds (:func:`split_bounds`) are CROWN bounds (Zhang et al. 2018) in which a
split neuron is replaced by its linear piece on the node (``a = z`` or ``a = αz``), intersected
with interval arithmetic, with the split itself (``z ≥ 0`` / ``z ≤ 0``) and with the parent's
bounds. **Float safety**: the bound of ``z_l`` is the value of a chain of inequalities that hold
in exact arithmetic for the float data used (relaxation lines are made valid by rounding their
intercepts up); the float error of evaluating it is bounded by ``(n_max + 8)·eps`` times the sum
of the magnitudes of every product that enters (``|Λ|·|W|·max|a|``, ``|Λ|·max|z|``, ``|Λ|·|β|``,
the constants — a running ``mag``), which covers ``γ_{n+2}`` per step with a factor 2 to spare
(Higham, Lemma 3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EIG_ERROR_CONSTANT, EPS, TINY
from .network import Dense, Network

PIECEWISE_LINEAR = ("relu", "leaky_relu", "identity")


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    """A feed-forward chain ``W_1 … W_{L+1}`` (dense arrays or CSR), biases, hidden activations.

    ``alpha[l]`` is the slope of layer l's activation below 0 (ReLU 0, leaky α, identity 1);
    ``absw`` caches ``|W_l|``.
    """

    weights: tuple
    biases: tuple
    acts: tuple
    absw: tuple

    @classmethod
    def from_network(cls, net: Network) -> Chain:
        if not net.is_chain:
            raise LipoptError(
                "layer-wise methods support plain feed-forward chains only, not residual blocks"
            )
        ws, bs = [], []
        for layer in net.layers:
            assert isinstance(layer, Dense)
            w = layer.weight
            if sp.issparse(w):
                w = sp.csr_matrix(w, dtype=float)
                if w.nnz > 0.25 * w.shape[0] * w.shape[1] and w.shape[0] * w.shape[1] < 4e6:
                    w = w.toarray()
            else:
                w = np.asarray(w, dtype=float)
            ws.append(w)
            bs.append(np.asarray(layer.bias, dtype=float))
        acts = tuple(layer.activation for layer in net.layers[:-1])
        return cls(tuple(ws), tuple(bs), acts, tuple(abs(w) for w in ws))

    @property
    def depth(self) -> int:
        return len(self.acts)

    @property
    def widths(self) -> list[int]:
        return [int(self.weights[0].shape[1])] + [int(w.shape[0]) for w in self.weights]

    @property
    def piecewise_linear(self) -> bool:
        return all(a.name in PIECEWISE_LINEAR for a in self.acts)

    def alpha(self, l: int) -> float:
        """Slope below 0 of hidden layer ``l`` (0-based)."""
        a = self.acts[l]
        return {"relu": 0.0, "identity": 1.0}.get(a.name, float(a.alpha))

    def has_kink(self, l: int) -> bool:
        return self.acts[l].name in ("relu", "leaky_relu")

    def nnz(self) -> int:
        return int(sum(w.nnz if sp.issparse(w) else np.count_nonzero(w) for w in self.weights))


def right_matmul(m: np.ndarray, w) -> np.ndarray:
    """``m @ w`` for a batch ``m`` (``(..., k)``) and a dense or sparse ``w`` (``k × n``)."""
    if not sp.issparse(w):
        return m @ w
    shape = m.shape
    out = (w.T @ m.reshape(-1, shape[-1]).T).T
    return np.asarray(out).reshape(*shape[:-1], w.shape[1])


def _bmv(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched matrix–vector product ``(B, i, j) × (B, j) → (B, i)``."""
    return (a @ v[..., None])[..., 0]


def _gamma(n: int) -> float:
    return (n + 8) * EPS


# ---------------------------------------------------------------------------------------------
# Relaxation lines and pre-activation bounds under splits
# ---------------------------------------------------------------------------------------------
def relaxation_lines(alpha: float, zl: np.ndarray, zu: np.ndarray, split: np.ndarray):
    """Lines ``aL z ≤ σ(z) ≤ aU z + bU`` valid for ``z ∈ [zl, zu]`` on the node (lower intercept 0).

    σ is the leaky ReLU of slope ``alpha`` (ReLU 0, identity 1). Active (``zl ≥ 0`` or split +1):
    ``σ(z) = z``; inactive: ``σ(z) = αz``; unstable: the chord above (intercept rounded up so it
    lies above σ at both ends in exact arithmetic, hence on the interval: σ is convex) and the
    tangent ``z`` or ``αz`` below, whichever leaves the smaller area.
    """
    active = (zl >= 0) | (split > 0)
    inactive = ~active & ((zu <= 0) | (split < 0))
    unstable = ~active & ~inactive
    width = np.where(unstable, zu - zl, 1.0)
    k = np.where(unstable, (zu - alpha * zl) / width, 0.0)
    t1 = alpha * zl - k * zl
    t2 = zu - k * zu
    pad = 4 * EPS * (np.abs(alpha * zl) + np.abs(k * zl) + np.abs(zu) + np.abs(k * zu)) + TINY
    b_up = np.where(unstable, np.maximum(t1, t2) + pad, 0.0)
    a_up = np.where(active, 1.0, np.where(inactive, alpha, k))
    a_lo = np.where(active, 1.0, np.where(inactive, alpha, np.where(zu > -zl, 1.0, alpha)))
    return a_lo, a_up, b_up


def _activation_bounds(alpha: float, zl: np.ndarray, zu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[σ(zl), σ(zu)]`` (σ monotone; the product ``α·z`` rounded outward)."""
    lo = np.where(zl >= 0, zl, alpha * zl)
    hi = np.where(zu >= 0, zu, alpha * zu)
    if alpha not in (0.0, 1.0):
        lo = np.nextafter(lo, -np.inf)
        hi = np.nextafter(hi, np.inf)
    return lo, hi


EXACT_FIRST_LAYER_MAX = 20_000  # B·n_1·(n_0 + 1) terms summed exactly below this


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a·b = p + e`` exactly (Dekker/Veltkamp splitting); valid without overflow or underflow,
    which the caller rules out (magnitudes below 1e150, non-zero factors above 1e-120)."""
    p = a * b
    split = 134217729.0  # 2^27 + 1
    ca, cb = split * a, split * b
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _exact_sum_up(terms: np.ndarray) -> float:
    """The exact sum of float terms rounded up (correctly rounded fsum, then one step if low)."""
    t = terms.tolist()
    s = math.fsum(t)
    return s if math.fsum([*t, -s]) <= 0 else math.nextafter(s, math.inf)


def _first_layer_exact(chain: Chain, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray) -> tuple:
    """``z_1``'s interval at the ``(batch, neuron)`` pairs ``rows``, with the end products summed
    exactly (so an exact 0 stays 0: a neuron that vanishes on a face of the box is stable)."""
    w = chain.weights[0]
    wd = w.toarray() if sp.issparse(w) else w
    wt = np.hstack([wd, chain.biases[0][:, None]])[rows[1]]  # over (x, τ)
    pl, el = _two_product(wt, lo[rows[0]])
    ph, eh = _two_product(wt, hi[rows[0]])
    pos = wt >= 0  # w·x is largest at hi when w ≥ 0 (lo ≤ hi)
    up = np.hstack([np.where(pos, ph, pl), np.where(pos, eh, el)]).tolist()
    dn = np.hstack([np.where(pos, pl, ph), np.where(pos, el, eh)]).tolist()
    zu = np.array([_exact_sum_up(np.asarray(t)) for t in up])
    zl = -np.array([_exact_sum_up(-np.asarray(t)) for t in dn])
    return zl, zu


def _first_layer(chain: Chain, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval of ``z_1 = W_1 x + b_1 τ`` over the box, rounded outward; where an end is
    within the rounding allowance of 0 it is recomputed by exact summation."""
    w, b = chain.weights[0], chain.biases[0]
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    c = right_matmul(mid[:, :-1], w.T) + mid[:, -1:] * b
    r = right_matmul(rad[:, :-1], chain.absw[0].T) + rad[:, -1:] * np.abs(b)
    scale = np.maximum(np.abs(lo), np.abs(hi))
    mag = right_matmul(scale[:, :-1], chain.absw[0].T) + scale[:, -1:] * np.abs(b) + r
    slack = _gamma(chain.widths[0]) * mag * 2
    zl, zu = c - r - slack, c + r + slack
    near = np.nonzero((np.abs(zl) <= 2 * slack) | (np.abs(zu) <= 2 * slack))
    ends = np.abs(np.concatenate([lo, hi], axis=1))
    w_abs = chain.absw[0].data if sp.issparse(chain.absw[0]) else chain.absw[0]
    tame = bool(np.all(mag < 1e150) and np.all((w_abs == 0) | (w_abs > 1e-120))
                and np.all((ends == 0) | (ends > 1e-120)))
    if near[0].size and tame and near[0].size * (w.shape[1] + 1) <= EXACT_FIRST_LAYER_MAX:
        zl[near], zu[near] = _first_layer_exact(chain, lo, hi, near)
    return zl, zu


def _crown_layer(chain: Chain, l: int, lines, lo, hi, amax, zmax) -> tuple[np.ndarray, np.ndarray]:
    """CROWN bounds of ``z_l`` (0-based hidden layer ``l ≥ 1``) through ``lines`` of layers < l."""
    B = lo.shape[0]
    w, b = chain.weights[l], chain.biases[l]
    wd = w.toarray() if sp.issparse(w) else w
    n = wd.shape[0]
    lam = np.ascontiguousarray(np.broadcast_to(np.concatenate([wd, -wd])[None], (B, 2 * n, wd.shape[1])))
    tau = np.broadcast_to(np.concatenate([b, -b])[None], (B, 2 * n)).copy()
    const = np.zeros((B, 2 * n))
    mag = np.zeros((B, 2 * n))
    tmax = np.maximum(np.abs(lo[:, -1]), np.abs(hi[:, -1]))
    for k in range(l - 1, -1, -1):
        a_lo, a_up, b_up = lines[k]
        pos = np.maximum(lam, 0.0)
        const = const + _bmv(pos, b_up)
        lam_z = pos * a_up[:, None, :] + np.minimum(lam, 0.0) * a_lo[:, None, :]
        abs_lz = np.abs(lam_z)
        wk, bk = chain.weights[k], chain.biases[k]
        tau = tau + lam_z @ bk
        prev_amax = amax[k - 1] if k > 0 else np.maximum(np.abs(lo[:, :-1]), np.abs(hi[:, :-1]))
        reach = right_matmul(prev_amax, chain.absw[k].T) + tmax[:, None] * np.abs(bk)
        mag = (mag + np.abs(const) + np.abs(tau) * tmax[:, None] + _bmv(abs_lz, zmax[k] + reach)
               + _bmv(pos, b_up))
        lam = right_matmul(lam_z, wk)
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    absl = np.abs(lam)
    val = (_bmv(lam, mid[:, :-1]) + _bmv(absl, rad[:, :-1])
           + tau * mid[:, -1:] + np.abs(tau) * rad[:, -1:] + const)
    scale = np.maximum(np.abs(lo[:, :-1]), np.abs(hi[:, :-1]))
    mag = mag + _bmv(absl, scale) + np.abs(tau) * tmax[:, None] + np.abs(const)
    width = max(chain.widths[: l + 1])
    upper = val + 2 * _gamma(width) * mag
    return -upper[:, n:], upper[:, :n]


def _affine_interval(chain: Chain, l: int, al, au, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Interval of ``z_l = W_l a + b_l τ`` for ``a ∈ [al, au]`` (rounded outward)."""
    w, b = chain.weights[l], chain.biases[l]
    mid, rad = 0.5 * (al + au), 0.5 * (au - al)
    tm, tr = 0.5 * (lo[:, -1:] + hi[:, -1:]), 0.5 * (hi[:, -1:] - lo[:, -1:])
    c = right_matmul(mid, w.T) + tm * b
    r = right_matmul(rad, chain.absw[l].T) + tr * np.abs(b)
    mag = right_matmul(np.maximum(np.abs(al), np.abs(au)), chain.absw[l].T) + (tm + tr) * np.abs(b) + r
    slack = 2 * _gamma(chain.widths[l]) * mag
    return c - r - slack, c + r + slack


def split_bounds(
    chain: Chain,
    lo: np.ndarray,
    hi: np.ndarray,
    split: list[np.ndarray],
    prev: list[tuple[np.ndarray, np.ndarray]] | None = None,
    crown: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds ``(zl, zu)`` of every hidden layer for a batch of nodes.

    ``lo``, ``hi``: ``(B, n0 + 1)`` boxes over ``(x, τ)``; ``split``: per layer ``(B, n_l)``;
    ``prev``: bounds of the parents (intersected). A node whose interval comes out empty
    (``zl > zu``) has no feasible point: callers test :func:`empty_nodes`.
    """
    out: list[tuple[np.ndarray, np.ndarray]] = []
    lines, amax, zmax = [], [], []
    for l in range(chain.depth):
        if l == 0:
            zl, zu = _first_layer(chain, lo, hi)
        else:
            al, au = _activation_bounds(chain.alpha(l - 1), *out[-1])
            zl, zu = _affine_interval(chain, l, al, au, lo, hi)
            if crown:
                cl, cu = _crown_layer(chain, l, lines, lo, hi, amax, zmax)
                zl, zu = np.maximum(zl, cl), np.minimum(zu, cu)
        if prev is not None:
            zl, zu = np.maximum(zl, prev[l][0]), np.minimum(zu, prev[l][1])
        s = split[l]
        zl = np.where(s > 0, np.maximum(zl, 0.0), zl)
        zu = np.where(s < 0, np.minimum(zu, 0.0), zu)
        out.append((zl, zu))
        alpha = chain.alpha(l)
        lines.append(relaxation_lines(alpha, zl, zu, s))
        zmax.append(np.maximum(np.abs(zl), np.abs(zu)))
        al, au = _activation_bounds(alpha, zl, zu)
        amax.append(np.maximum(np.abs(al), np.abs(au)))
    return out


def empty_nodes(bounds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``(B,)`` mask of nodes with an empty pre-activation interval (proven infeasible)."""
    bad = np.zeros(bounds[0][0].shape[0], dtype=bool)
    for zl, zu in bounds:
        bad |= np.any(zl > zu, axis=1)
    return bad


def tau_only_conflicts(chain: Chain, lo: np.ndarray, split, s_lo, s_hi) -> np.ndarray:
    """``(B,)`` mask of homogenized nodes with no point at ``τ > 0`` (see :mod:`lipopt.bab`).

    A neuron is *τ-only* on a node when every input it has a non-zero weight from is a dead
    ReLU (slope fixed at 0) or a τ-only neuron with a fixed slope: then ``z'_j = β_j τ`` on the
    whole node, with ``β_j`` computed here with a rigorous error bound. A split that asks for
    the sign opposite to a nonzero ``β_j`` can only hold at ``τ = 0``, which is no real input.
    (Inputs are never τ-only: ``x'`` is free or fixed at a non-zero face value.)"""
    B = lo.shape[0]
    bad = np.zeros(B, dtype=bool)
    tonly = beta = err = None
    for l in range(chain.depth):
        w, aw, b = chain.weights[l], chain.absw[l], chain.biases[l]
        if l == 0:
            t_l = np.broadcast_to(right_matmul(np.ones((1, w.shape[1])), aw.T) == 0, (B, w.shape[0]))
            beta_l = np.broadcast_to(b, (B, w.shape[0]))
            err_l = np.zeros((B, w.shape[0]))
        else:
            sl, su = s_lo[l - 1], s_hi[l - 1]
            dead = su == 0
            ok = dead | (tonly & (sl == su))
            t_l = right_matmul((~ok).astype(float), aw.T) == 0
            v = np.where(dead, 0.0, np.where(ok, sl * beta, 0.0))
            beta_l = right_matmul(v, w.T) + b
            err_l = (2 * _gamma(w.shape[1]) * (right_matmul(np.abs(v), aw.T) + np.abs(b))
                     + right_matmul(np.where(ok & ~dead, err * sl, 0.0), aw.T) + TINY)
        s = split[l]
        bad |= np.any(t_l & (((s < 0) & (beta_l > err_l)) | ((s > 0) & (beta_l < -err_l))), axis=1)
        tonly, beta, err = t_l, beta_l, err_l
    return bad


def slopes(chain: Chain, bounds, split) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Derivative ranges ``[sL, sU]`` per layer: fixed for stable or split neurons (at ``z = 0``
    on a node whose bounds meet there, the right derivative; see :mod:`lipopt.bab` for why
    that is sound), ``[α, 1]`` for unstable ones."""
    s_lo, s_hi = [], []
    for l, ((zl, zu), s) in enumerate(zip(bounds, split, strict=True)):
        alpha = chain.alpha(l)
        active = (s > 0) | ((s == 0) & (zl >= 0))
        inactive = (s < 0) | ((s == 0) & (zu <= 0) & (zl < 0))
        s_lo.append(np.where(active, 1.0, alpha))
        s_hi.append(np.where(inactive, alpha, 1.0))
    return s_lo, s_hi


# ---------------------------------------------------------------------------------------------
# Backward intervals (gradient states) and interval Jacobians
# ---------------------------------------------------------------------------------------------
def _product_interval(sl, su, gl, gu) -> tuple[np.ndarray, np.ndarray]:
    """``{s·g}`` for ``s ∈ [sl, su]`` (``sl ≥ 0``), ``g ∈ [gl, gu]``, rounded outward."""
    lo = np.minimum(sl * gl, su * gl)
    hi = np.maximum(sl * gu, su * gu)
    return np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)


def _transpose_interval(w, absw, hl, hu) -> tuple[np.ndarray, np.ndarray]:
    """``Wᵀ h`` for ``h ∈ [hl, hu]`` (batch rows), rounded outward."""
    mid, rad = 0.5 * (hl + hu), 0.5 * (hu - hl)
    c = right_matmul(mid, w)
    r = right_matmul(rad, absw)
    mag = right_matmul(np.maximum(np.abs(hl), np.abs(hu)), absw)
    slack = 2 * _gamma(w.shape[0]) * mag
    return c - r - slack, c + r + slack


def backward_intervals(chain: Chain, s_lo, s_hi, c_lo: np.ndarray, c_hi: np.ndarray):
    """Intervals of the backward states ``g_L = W_{L+1}ᵀ c`` (``c ∈ [c_lo, c_hi]``) and
    ``g_{l−1} = W_lᵀ (s_l ∘ g_l)``: a list indexed ``0 … L`` of ``(gl, gu)``, each ``(B, n_l)``."""
    B = s_lo[0].shape[0] if s_lo else 1
    c_lo = np.broadcast_to(np.atleast_2d(c_lo), (B, chain.widths[-1]))
    c_hi = np.broadcast_to(np.atleast_2d(c_hi), (B, chain.widths[-1]))
    g = _transpose_interval(chain.weights[-1], chain.absw[-1], c_lo, c_hi)
    out = [g]
    for l in range(chain.depth - 1, -1, -1):
        h = _product_interval(s_lo[l], s_hi[l], *g)
        g = _transpose_interval(chain.weights[l], chain.absw[l], *h)
        out.append(g)
    return out[::-1]


def _product_lines(sl, su, gl, gu):
    """Lines in g around ``{s·g : s ∈ [sl, su]}`` (``sl ≥ 0``) for ``g ∈ [gl, gu]``:
    ``a_lo g + b_lo ≤ s g ≤ a_up g + b_up``. ``max_s s g`` is convex in g (slope ``sl`` below 0,
    ``su`` above), so its chord lies above; ``min_s s g`` is concave, so its chord lies below.
    Intercepts are taken at both ends and rounded outward (valid in exact arithmetic)."""
    straddle = (gl < 0) & (gu > 0) & (su > sl)
    width = np.where(straddle, gu - gl, 1.0)
    up_l, up_u = np.minimum(sl * gl, su * gl), np.maximum(sl * gu, su * gu)  # max_s at the ends
    lo_l, lo_u = np.maximum(sl * gl, su * gl), np.minimum(sl * gu, su * gu)  # min_s at the ends
    a_up = np.where(straddle, (up_u - np.where(gl < 0, sl * gl, su * gl)) / width,
                    np.where(gl >= 0, su, sl))
    a_lo = np.where(straddle, (lo_u - np.where(gl < 0, su * gl, sl * gl)) / width,
                    np.where(gl >= 0, sl, su))
    a_up = np.where(su == sl, su, a_up)
    a_lo = np.where(su == sl, sl, a_lo)
    up_l = np.where(gl < 0, sl * gl, su * gl)
    lo_l = np.where(gl < 0, su * gl, sl * gl)
    pad_u = 4 * EPS * (np.abs(up_l) + np.abs(up_u) + np.abs(a_up * gl) + np.abs(a_up * gu)) + TINY
    pad_l = 4 * EPS * (np.abs(lo_l) + np.abs(lo_u) + np.abs(a_lo * gl) + np.abs(a_lo * gu)) + TINY
    b_up = np.maximum(up_l - a_up * gl, up_u - a_up * gu) + pad_u
    b_lo = np.minimum(lo_l - a_lo * gl, lo_u - a_lo * gu) - pad_l
    return a_lo, b_lo, a_up, b_up


def _backward_crown_state(chain: Chain, k: int, lines, gmax, c_lo, c_hi) -> tuple[np.ndarray, np.ndarray]:
    """CROWN bounds of the backward state ``out[k] = W_kᵀ (s_k ∘ out[k+1])`` through the product
    lines of layers ``k … L−1`` down to ``c ∈ [c_lo, c_hi]`` (see :func:`backward_bounds`)."""
    L = chain.depth
    B = c_lo.shape[0]
    w = chain.weights[k]
    wt = (w.toarray() if sp.issparse(w) else w).T
    n = wt.shape[0]
    lam = np.ascontiguousarray(np.broadcast_to(np.concatenate([wt, -wt])[None], (B, 2 * n, wt.shape[1])))
    const = np.zeros((B, 2 * n))
    mag = np.zeros((B, 2 * n))
    for j in range(k, L):
        a_lo, b_lo, a_up, b_up = lines[j]
        pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
        const = const + _bmv(pos, b_up) + _bmv(neg, b_lo)
        lam_g = pos * a_up[:, None, :] + neg * a_lo[:, None, :]
        nxt = chain.weights[j + 1]
        mag = (mag + np.abs(const) + _bmv(np.abs(lam_g), gmax[j] * 2)
               + _bmv(np.abs(lam), np.abs(b_up) + np.abs(b_lo)))
        lam = right_matmul(lam_g, nxt.T)  # coefficients on h_{j+1} (or on c after the last layer)
    mid, rad = 0.5 * (c_lo + c_hi), 0.5 * (c_hi - c_lo)
    absl = np.abs(lam)
    val = _bmv(lam, mid) + _bmv(absl, rad) + const
    scale = np.maximum(np.abs(c_lo), np.abs(c_hi))
    mag = mag + _bmv(absl, scale) + np.abs(const)
    upper = val + 2 * _gamma(max(chain.widths[k:])) * mag
    return -upper[:, n:], upper[:, :n]


def backward_bounds(chain: Chain, s_lo, s_hi, c_lo: np.ndarray, c_hi: np.ndarray, crown: bool = True,
                    inputs_only: bool = False):
    """Bounds on the backward states like :func:`backward_intervals`, tightened by linear
    relaxation (CROWN on the backward chain): each product ``h = s ∘ g`` is sandwiched between
    lines in g (:func:`_product_lines`) and a state is bounded through every layer above it down
    to ``c``; intersected with the intervals. Float safety as in :func:`split_bounds`.
    ``inputs_only``: CROWN for the state at the inputs only (the hidden ones keep intervals)."""
    out = backward_intervals(chain, s_lo, s_hi, c_lo, c_hi)
    if not crown or chain.depth < 2:
        return out
    B = s_lo[0].shape[0]
    c_lo = np.broadcast_to(np.atleast_2d(c_lo), (B, chain.widths[-1]))
    c_hi = np.broadcast_to(np.atleast_2d(c_hi), (B, chain.widths[-1]))
    L = chain.depth
    lines: list = [None] * L
    gmax: list = [None] * L
    for k in range(L - 1, -1, -1):
        gl, gu = out[k + 1]
        lines[k] = _product_lines(s_lo[k], s_hi[k], gl, gu)
        gmax[k] = np.maximum(np.abs(gl), np.abs(gu))
        if k == L - 1 or (inputs_only and k > 0):
            continue  # out[L−1] = W_{L−1}ᵀ(s ∘ W_Lᵀ c): the interval is already exact per entry
        cl, cu = _backward_crown_state(chain, k, lines, gmax, c_lo, c_hi)
        out[k] = (np.maximum(out[k][0], cl), np.minimum(out[k][1], cu))
    return out


def interval_jacobian(chain: Chain, s_lo, s_hi, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(G_lo, G_hi)`` with ``(C J)ᵀ ∈ [G_lo, G_hi]`` for every pattern with slopes in
    ``[s_lo, s_hi]``; shape ``(B, n0, r)`` for ``C`` of shape ``(r, m)``."""
    B = s_lo[0].shape[0] if s_lo else 1
    w = chain.weights[-1]
    g0 = np.asarray(w.T @ C.T) if not sp.issparse(w) else np.asarray(w.T @ C.T)
    mag0 = np.asarray(chain.absw[-1].T @ np.abs(C).T)
    slack = 2 * _gamma(w.shape[0]) * mag0
    gl = np.broadcast_to((g0 - slack)[None], (B, *g0.shape))
    gu = np.broadcast_to((g0 + slack)[None], (B, *g0.shape))
    for l in range(chain.depth - 1, -1, -1):
        hl, hu = _product_interval(s_lo[l][:, :, None], s_hi[l][:, :, None], gl, gu)
        mid, rad = 0.5 * (hl + hu), 0.5 * (hu - hl)
        wl, al = chain.weights[l], chain.absw[l]
        c = _left_t(wl, mid)
        r = _left_t(al, rad)
        mag = _left_t(al, np.maximum(np.abs(hl), np.abs(hu)))
        sl = 2 * _gamma(wl.shape[0]) * mag
        gl, gu = c - r - sl, c + r + sl
    return gl, gu


def _left_t(w, m: np.ndarray) -> np.ndarray:
    """``Wᵀ m`` for a batch ``m`` of shape ``(B, k, r)`` (``W``: ``k × n``) → ``(B, n, r)``."""
    return np.swapaxes(right_matmul(np.swapaxes(m, 1, 2), w), 1, 2)


# ---------------------------------------------------------------------------------------------
# Verified points and exact values
# ---------------------------------------------------------------------------------------------
def verified_patterns(chain: Chain, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Forward pass of real points ``X`` (``k × n0``) with a rigorous bound on the rounding error
    of every pre-activation: ``ok[i]`` when every kinked neuron has ``|ẑ| >`` its error bound,
    so the activation pattern (and the network's gradient) is constant around ``X[i]``.
    Returns ``ok`` and the slopes ``σ'(z)`` per layer."""
    a = np.asarray(X, dtype=float)
    err = np.zeros_like(a)
    ok = np.all(np.isfinite(a), axis=1)
    out = []
    for l in range(chain.depth):
        w, b, aw = chain.weights[l], chain.biases[l], chain.absw[l]
        z = right_matmul(a, w.T) + b
        e = (2 * _gamma(chain.widths[l]) * (right_matmul(np.abs(a), aw.T) + np.abs(b))
             + right_matmul(err, aw.T))
        e = e * (1 + 4 * EPS) + TINY
        alpha = chain.alpha(l)
        if chain.has_kink(l):
            ok &= np.all(np.abs(z) > e, axis=1)
        pos = z > 0
        out.append(np.where(pos, 1.0, alpha))
        a = np.where(pos, z, alpha * z)
        err = e + (2 * EPS * np.abs(a) if alpha not in (0.0, 1.0) else 0.0)
    return ok, out


def pattern_products(chain: Chain, slopes_: list[np.ndarray], C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C J)ᵀ`` at fixed slopes (one pattern per batch row), shape ``(B, n0, r)``, and an
    entrywise bound on its rounding error (``(n_max + 8)·eps`` times the absolute product)."""
    B = slopes_[0].shape[0] if slopes_ else 1
    w = chain.weights[-1]
    g = np.broadcast_to(np.asarray(w.T @ C.T)[None], (B, w.shape[1], C.shape[0]))
    ga = np.broadcast_to(np.asarray(chain.absw[-1].T @ np.abs(C).T)[None], g.shape)
    for l in range(chain.depth - 1, -1, -1):
        s = slopes_[l][:, :, None]
        g = _left_t(chain.weights[l], s * g)
        ga = _left_t(chain.absw[l], np.abs(s) * ga)
    width = max(chain.widths)
    err = 2 * (chain.depth + 2) * _gamma(width) * ga
    return g, err


def spectral_bounds(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds on ``‖M_b‖₂`` for a batch ``(B, p, q)``: computed singular value
    ``∓ 16·max(p, q)·eps·‖M‖_F`` (backward-stable SVD, Weyl; :mod:`lipopt.floats`)."""
    if M.shape[1] == 0 or M.shape[2] == 0:
        z = np.zeros(M.shape[0])
        return z, z
    sig = np.linalg.svd(M, compute_uv=False)[:, 0]
    fro = np.sqrt((M**2).sum(axis=(1, 2)))
    margin = EIG_ERROR_CONSTANT * max(M.shape[1:]) * EPS * fro * 2 + TINY
    return np.maximum(sig - margin, 0.0), sig + margin
