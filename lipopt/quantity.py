r"""The quantity a layer-wise method bounds, and its exact value at a known Jacobian.

* **scalar rows** (``vector=False``): ``max_k ‖∇(c_kᵀN)‖_q`` over the target's rows ``c_k`` (one
  row for ``--output``/``--margin``/a vector), q dual to the input norm p;
* **vector** (the "all-outputs" target, DESIGN §1b): the induced norm ``‖J‖_{p→p}`` of the
  Jacobian: ℓ∞ the largest row sum of ``|J|``, ℓ1 the largest column sum, ℓ2 the largest singular
  value. (ℓ∞→ℓ∞ equals the max over rows of the scalar ℓ∞ constants.)

:meth:`Quantity.bounds_from` turns a computed ``(C J)ᵀ`` and an entrywise bound on its rounding
error into rigorous lower and upper bounds on the quantity at that Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .floats import EPS, TINY
from .reach import spectral_bounds

NORMS = ("inf", "2", "1")


def _sum_bounds(v_lo: np.ndarray, v_hi: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of non-negative terms, rounded outward (relative error ≤ n·eps, doubled)."""
    n = v_lo.shape[axis]
    f = 2 * (n + 2) * EPS
    return v_lo.sum(axis=axis) * (1 - f), v_hi.sum(axis=axis) * (1 + f) + TINY


def row_norm_bounds(G: np.ndarray, err: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on ``‖G[..., :, k]‖_q`` (q dual to ``norm``) for every column k: ``(..., r)``."""
    lo = np.maximum(np.abs(G) - err, 0.0)
    hi = np.abs(G) + err
    if norm == "inf":
        return _sum_bounds(lo, hi, axis=-2)
    if norm == "1":
        return lo.max(axis=-2), hi.max(axis=-2)
    s_lo, s_hi = _sum_bounds(lo * lo, hi * hi, axis=-2)
    f = 4 * EPS
    return np.sqrt(s_lo) * (1 - f), np.sqrt(s_hi) * (1 + f) + TINY


@dataclass(frozen=True)
class Quantity:
    """``norm`` (input ℓp), target rows ``C`` (``r × m``), ``vector`` (induced norm of ``J``)."""

    norm: str
    C: np.ndarray
    vector: bool

    @property
    def label(self) -> str:
        p = {"inf": "∞", "2": "2", "1": "1"}[self.norm]
        return f"ℓ{p}→ℓ{p} norm of the Jacobian" if self.vector else f"ℓ{p} constant of the target"

    def bounds_from(self, G: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower/upper bounds of the quantity for ``G = (C J)ᵀ`` (``(B, n0, r)``) ± ``err``."""
        if not self.vector or self.norm == "inf":
            lo, hi = row_norm_bounds(G, err, self.norm)
            return lo.max(axis=-1), hi.max(axis=-1)
        if self.norm == "1":  # largest column sum of |J| = largest row sum of |G|
            lo = np.maximum(np.abs(G) - err, 0.0)
            hi = np.abs(G) + err
            s_lo, s_hi = _sum_bounds(lo, hi, axis=-1)
            return s_lo.max(axis=-1), s_hi.max(axis=-1)
        s_lo, s_hi = spectral_bounds(G)
        e = np.sqrt((err * err).sum(axis=(1, 2))) * (1 + 4 * EPS * G.shape[1] * G.shape[2]) + TINY
        return np.maximum(s_lo - e, 0.0), s_hi + e
