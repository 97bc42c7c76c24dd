"""Pre-activation bounds on an input box and the derivative ranges they imply.

Two passes, both sound in floating point (outward rounding margins):

* **interval arithmetic** (:meth:`Network.interval_bounds`): ``z ∈ W m + b ± |W| r``;
* **linear relaxation** (CROWN-style, Zhang et al. 2018): every activation is sandwiched
  between two lines on its pre-activation interval, ``α_l z + β_l ≤ σ(z) ≤ α_u z + β_u``, and
  the bound on ``z_l`` is propagated backwards to the input as a linear function
  ``Λ x + ν`` whose extremes over the box are exact: ``Λ m + ν ± |Λ| r``.

The relaxation lines, for ``z ∈ [l, u]`` with derivative range ``[d_lo, d_hi]``:
convex σ (ReLU family, softplus, ELU with α ≤ 1): upper = chord through ``(l, σ(l))`` and
``(u, σ(u))``, lower = tangent of slope ``d`` at the end where it is tighter (ReLU: slope 0 or
1, whichever leaves the smaller area); other monotone σ (tanh, sigmoid), by the mean value
theorem: ``σ(l) + d_lo (z − l) ≤ σ(z) ≤ σ(u) + d_lo (z − u)``.
Residual blocks fall back to interval arithmetic for the block and every later layer.
The result is intersected with interval arithmetic, so it is never looser.
"""

from __future__ import annotations

import numpy as np

from .floats import EPS
from .network import Dense, Network

CONVEX = ("relu", "leaky_relu", "softplus", "elu", "identity")


def _relaxation(act, lo: np.ndarray, hi: np.ndarray):
    """Slopes and intercepts ``(a_l, b_l, a_u, b_u)`` with ``a_l z + b_l ≤ σ(z) ≤ a_u z + b_u``."""
    dlo, dhi = act.derivative_range(lo, hi)
    f_lo, f_hi = act(lo), act(hi)
    width = hi - lo
    flat = width <= 1e-12 * (1 + np.abs(lo))
    if act.name in CONVEX:
        with np.errstate(divide="ignore", invalid="ignore"):
            chord = np.where(flat, dhi, (f_hi - f_lo) / np.where(flat, 1.0, width))
        a_u = chord
        b_u = f_lo - chord * lo
        # lower: a tangent line; for (leaky) ReLU pick slope low or 1 by the adaptive rule
        if act.name in ("relu", "leaky_relu"):
            low_slope = 0.0 if act.name == "relu" else act.alpha
            a_l = np.where(hi > -lo, 1.0, low_slope)
            a_l = np.where(lo >= 0, 1.0, np.where(hi <= 0, low_slope, a_l))
            b_l = np.zeros_like(lo)
        else:
            mid = 0.5 * (lo + hi)
            a_l = act.derivative(mid)
            b_l = act(mid) - a_l * mid
    else:
        a_l, b_l = dlo, f_lo - dlo * lo
        a_u, b_u = dlo, f_hi - dlo * hi
    return a_l, b_l, a_u, b_u


def crown_bounds(net: Network, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds of every site by backward linear relaxation (see module doc)."""
    lo = np.asarray(lo, dtype=float).ravel()
    hi = np.asarray(hi, dtype=float).ravel()
    ibp = net.interval_bounds(lo, hi)
    if not all(isinstance(layer, Dense) for layer in net.layers):
        residual_at = next(i for i, layer in enumerate(net.layers) if not isinstance(layer, Dense))
    else:
        residual_at = len(net.layers)
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    scale_x = np.maximum(np.abs(lo), np.abs(hi))
    out: list[tuple[np.ndarray, np.ndarray]] = []
    relax: list[tuple[np.ndarray, ...]] = []
    for l, layer in enumerate(net.layers[:-1]):
        if l >= residual_at:
            return out + ibp[len(out) :]
        zl, zu = _backward_bound(net, l, relax, mid, rad, scale_x)
        il, iu = ibp[l]
        zl, zu = np.maximum(zl, il), np.minimum(zu, iu)
        out.append((zl, zu))
        relax.append(_relaxation(layer.activation, zl, zu))
    return out


def _backward_bound(net: Network, l: int, relax, mid, rad, scale_x):
    """Lower and upper bounds of ``z_l`` via the relaxations of layers ``< l``."""
    w = net.layers[l]
    dense = w.weight.toarray() if hasattr(w.weight, "toarray") else np.asarray(w.weight)
    bounds = []
    for sign in (-1.0, 1.0):  # -1: lower bound (as −max(−z)), +1: upper bound
        lam = sign * dense
        nu = sign * w.bias.copy()
        mag = np.abs(nu)
        for k in range(l - 1, -1, -1):
            a_l, b_l, a_u, b_u = relax[k]
            pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
            # maximize λ·σ(z): positive coefficients take the upper line, negative the lower
            shift = pos @ b_u + neg @ b_l
            nu = nu + shift
            mag = mag + np.abs(pos) @ np.abs(b_u) + np.abs(neg) @ np.abs(b_l)
            lam = pos * a_u + neg * a_l
            prev = net.layers[k]
            wk = prev.weight.toarray() if hasattr(prev.weight, "toarray") else np.asarray(prev.weight)
            nu = nu + lam @ prev.bias
            mag = mag + np.abs(lam) @ np.abs(prev.bias)
            lam = lam @ wk
        value = lam @ mid + np.abs(lam) @ rad + nu
        mag = mag + np.abs(lam) @ scale_x
        slack = 4 * (4 * (l + 2) + sum(net.widths[: l + 2])) * EPS * mag
        bound = value + slack
        bounds.append(-bound if sign < 0 else bound)
    return bounds[0], bounds[1]


def hidden_derivative_ranges(
    net: Network, box: tuple[np.ndarray, np.ndarray] | None = None, method: str = "crown"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per activation site, an interval containing ``σ'(z)`` over the domain.

    Global (``box`` None): the activation's full derivative range. Local: from pre-activation
    bounds by ``method`` ``"crown"`` (default, tighter) or ``"interval"``.
    """
    if box is None:
        return [
            site.activation.derivative_range(np.full(site.size, -np.inf), np.full(site.size, np.inf))
            for site in net.sites
        ]
    if method == "crown":
        bounds = crown_bounds(net, *box)
    elif method == "interval":
        bounds = net.interval_bounds(*box)
    else:
        raise ValueError(f"unknown bound propagation method {method!r} (crown or interval)")
    return [
        site.activation.derivative_range(zl, zu) for site, (zl, zu) in zip(net.sites, bounds, strict=True)
    ]
