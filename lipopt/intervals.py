"""Pre-activation bounds on an input box and the derivative ranges they imply.

Two passes, both sound in floating point (outward rounding margins):

* **interval arithmetic** (:meth:`Network.interval_bounds`): ``z ∈ W m + b ± |W| r``, then
  each activation's :meth:`~lipopt.activations.Activation.value_range`;
* **linear relaxation** (CROWN-style, Zhang et al. 2018): every activation is sandwiched
  between two lines on its pre-activation interval, ``α_l z + β_l ≤ σ(z) ≤ α_u z + β_u``
  (:meth:`~lipopt.activations.Activation.relaxation`: chord and tangent for convex σ, mean-value
  lines otherwise), and the bound on ``z_l`` is propagated backwards to the input as a linear
  function ``Λ x + ν`` whose extremes over the box are exact: ``Λ m + ν ± |Λ| r``.

Blocks that are not one affine map (residual blocks) fall back to interval arithmetic for the
block and every later layer. The result is intersected with interval arithmetic, so it is never
looser.
"""

from __future__ import annotations

import numpy as np

from .activations import unbounded_if_nan
from .floats import EPS
from .network import Network


def crown_bounds(net: Network, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds of every site by backward linear relaxation (see module doc)."""
    lo = np.asarray(lo, dtype=float).ravel()
    hi = np.asarray(hi, dtype=float).ravel()
    ibp = net.interval_bounds(lo, hi)
    n = len(net.layers)
    residual_at = next((i for i, layer in enumerate(net.layers) if layer.affine() is None), n)
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    scale_x = np.maximum(np.abs(lo), np.abs(hi))
    out: list[tuple[np.ndarray, np.ndarray]] = []
    relax: list[tuple[np.ndarray, ...]] = []
    for l, layer in enumerate(net.layers[:-1]):
        if l >= residual_at:
            return out + ibp[len(out) :]
        zl, zu = _backward_bound(net, l, relax, mid, rad, scale_x)
        il, iu = ibp[l]
        # fmax/fmin: a NaN (overflowed) CROWN bound yields to the interval one, never the reverse
        zl, zu = unbounded_if_nan(np.fmax(zl, il), np.fmin(zu, iu))
        out.append((zl, zu))
        relax.append(layer.activation.relaxation(zl, zu))
    return out


def _backward_bound(net: Network, l: int, relax, mid, rad, scale_x):
    """Lower and upper bounds of ``z_l`` via the relaxations of layers ``< l``."""
    w, bias = net.layers[l].affine()
    dense = w.toarray() if hasattr(w, "toarray") else np.asarray(w)
    bounds = []
    for sign in (-1.0, 1.0):  # -1: lower bound (as −max(−z)), +1: upper bound
        lam = sign * dense
        nu = sign * bias.copy()
        mag = np.abs(nu)
        for k in range(l - 1, -1, -1):
            a_l, b_l, a_u, b_u = relax[k]
            pos, neg = np.maximum(lam, 0.0), np.minimum(lam, 0.0)
            # maximize λ·σ(z): positive coefficients take the upper line, negative the lower
            shift = pos @ b_u + neg @ b_l
            nu = nu + shift
            mag = mag + np.abs(pos) @ np.abs(b_u) + np.abs(neg) @ np.abs(b_l)
            lam = pos * a_u + neg * a_l
            prev_w, prev_b = net.layers[k].affine()
            wk = prev_w.toarray() if hasattr(prev_w, "toarray") else np.asarray(prev_w)
            nu = nu + lam @ prev_b
            mag = mag + np.abs(lam) @ np.abs(prev_b)
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
