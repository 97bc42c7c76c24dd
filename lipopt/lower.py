"""Lower bounds on the target's Lipschitz constant from real points (secants).

Any secant between two points ``a, b`` of the domain is ≤ the constant:
``|cᵀ(N(b) − N(a))| ≤ L_p(cᵀN) ‖b − a‖_p`` for a scalar target, and
``‖N(b) − N(a)‖_p ≤ L_p(N) ‖b − a‖_p`` for the network's constant ``sup ‖J‖_{p→p}``.
The search looks for points of large local slope, then measures secants there:

* an **objective** gives the real slope at a batch of points (``‖∇(cᵀN)(x)‖_q``, or
  ``‖J(x)‖_{p→p}``), an ascent direction on a smoothed surrogate (every (leaky) ReLU derivative
  replaced by a sigmoid of sharpness β, :meth:`~lipopt.activations.Activation.smooth_derivative`),
  and a secant around a point along its best direction (the dual direction of the gradient; for
  ``J``: the maximizing input direction of :meth:`~lipopt.norms.Norm.matrix_norm`, i.e. the top
  right-singular vector for ℓ2, the best column's coordinate for ℓ1);
* :func:`lower_bound` samples the domain, climbs from the best samples, and reports the best
  secant among the best points found. Only secant values are reported.
"""

from __future__ import annotations

import numpy as np

from .errors import LipoptError
from .network import Network
from .norms import Norm
from .problems import Domain, Target, make_target, parse_norm
from .results import LowerBound

GLOBAL_SAMPLING_RADIUS = 10.0
#: a secant's difference is reduced by this fraction of the values' size (float margin)
SECANT_MARGIN = 1e-12
#: floats of Jacobian (batch × outputs × widest layer) evaluated at once
_JACOBIAN_CHUNK = 4_000_000


def _steps(width: float) -> np.ndarray:
    return width * np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])


def _secant_ratio(num: np.ndarray, dist: np.ndarray) -> float:
    ok = dist > 0
    if not np.any(ok):
        return 0.0
    return float(max(0.0, np.max(num[ok] / dist[ok])))


class ScalarObjective:
    """The slope of ``f = cᵀN``: ``‖∇f(x)‖_q``; secants ``|f(b) − f(a)| / ‖b − a‖_p``."""

    def __init__(self, net: Network, norm: Norm, c: np.ndarray) -> None:
        self.net, self.norm, self.c = net, norm, np.asarray(c, dtype=float).ravel()

    def values(self, x: np.ndarray) -> np.ndarray:
        return self.norm.dual_norm(self.net.gradient(x, self.c))

    def _smoothed_gradient(self, x: np.ndarray, beta: float) -> np.ndarray:
        return self.net.backward(np.tile(self.c, (len(x), 1)), self.net.slopes(x, beta))

    def ascent(self, x: np.ndarray, beta: float, h: float) -> np.ndarray:
        """``∇ₓ ⟨v, ∇f_β(x)⟩ = H_β v`` for ``v`` the dual direction of ``∇f_β(x)`` (H symmetric):
        a central difference of ``∇f_β`` along ``v``."""
        v = self.norm.dual_direction(self._smoothed_gradient(x, beta))
        return (self._smoothed_gradient(x + h * v, beta) - self._smoothed_gradient(x - h * v, beta)) / (2 * h)

    def secant(self, x: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None, width: float) -> float:
        """``max_h |f(b) − f(a)| / ‖b − a‖_p`` for ``a, b = x ∓ h d`` (clipped to the box), ``d``
        the dual direction of ``∇f(x)``, ``h`` from ``10⁻²`` to ``10⁻⁶`` of the domain's width;
        the difference is reduced by ``10⁻¹²·(|f(a)| + |f(b)|)`` so it never gains from rounding."""
        d = self.norm.dual_direction(self.net.gradient(x[None, :], self.c))[0]
        if not np.any(d):
            return 0.0
        a, b = _secant_points(x, d, box, width)
        fa, fb = self.net.forward(a) @ self.c, self.net.forward(b) @ self.c
        diff = np.abs(fb - fa) - SECANT_MARGIN * (np.abs(fa) + np.abs(fb))
        return _secant_ratio(diff, self.norm.of(b - a))


class NetworkObjective:
    """The slope of the network in the induced norm: ``‖J(x)‖_{p→p}``; secants
    ``‖N(b) − N(a)‖_p / ‖b − a‖_p``."""

    def __init__(self, net: Network, norm: Norm) -> None:
        self.net, self.norm = net, norm

    def _jacobians(self, x: np.ndarray, beta: float | None = None) -> np.ndarray:
        per_point = self.net.output_dim * max(self.net.widths)
        chunk = max(1, _JACOBIAN_CHUNK // per_point)
        parts = [
            self.net.jacobian(x[i : i + chunk], self.net.slopes(x[i : i + chunk], beta))
            for i in range(0, len(x), chunk)
        ]
        return np.concatenate(parts)

    def values(self, x: np.ndarray) -> np.ndarray:
        return self.norm.matrix_norm(self._jacobians(x))[0]

    def ascent(self, x: np.ndarray, beta: float, h: float) -> np.ndarray:
        """With ``(u, d)`` maximizing ``uᵀ J_β(x) d``, the ascent direction of that value in
        ``x`` is ``H_β(uᵀN) d``: a central difference of ``∇(uᵀN_β)`` along ``d``."""
        _, u, d = self.norm.matrix_norm(self._jacobians(x, beta))

        def grad(y: np.ndarray) -> np.ndarray:
            return self.net.backward(u, self.net.slopes(y, beta))

        return (grad(x + h * d) - grad(x - h * d)) / (2 * h)

    def secant(self, x: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None, width: float) -> float:
        """``max_h ‖N(b) − N(a)‖_p / ‖b − a‖_p`` along the maximizing input direction of
        ``J(x)``; the difference is reduced by ``10⁻¹²·(‖N(a)‖_p + ‖N(b)‖_p)``."""
        _, _, d = self.norm.matrix_norm(self._jacobians(x[None, :]))
        if not np.any(d[0]):
            return 0.0
        a, b = _secant_points(x, d[0], box, width)
        na, nb = self.net.forward(a), self.net.forward(b)
        diff = self.norm.of(nb - na) - SECANT_MARGIN * (self.norm.of(na) + self.norm.of(nb))
        return _secant_ratio(diff, self.norm.of(b - a))


def _secant_points(
    x: np.ndarray, d: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None, width: float
) -> tuple[np.ndarray, np.ndarray]:
    hs = _steps(width)
    a = x[None, :] - hs[:, None] * d[None, :]
    b = x[None, :] + hs[:, None] * d[None, :]
    if box is not None:
        a, b = np.clip(a, *box), np.clip(b, *box)
    return a, b


Objective = ScalarObjective | NetworkObjective


def objectives(net: Network, norm: Norm, target: Target) -> list[tuple[str, Objective]]:
    """What to search for the target's quantity: one scalar objective per row when the quantity
    is a scalar constant or the max over rows (ℓ∞), else the network's Jacobian norm."""
    if target.is_network and not norm.rows_exact and net.output_dim > 1:
        return [("network", NetworkObjective(net, norm))]
    rows = zip(target.vectors, target.labels, strict=True)
    return [(label, ScalarObjective(net, norm, c)) for c, label in rows]


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
    """A lower bound on the target's quantity: the best secant around the points of largest
    slope (see the module doc).

    Search: sampling, then gradient steps on the smoothed surrogate (β increasing, Hessian–vector
    products by central differences); every iterate is a real point. Global bounds sample
    ``[−10, 10]^n`` in shells around the origin (or ``x0`` if the network carries one).
    Verification: a gradient formula can be wrong at a kink on the domain's edge (it may belong
    to a region outside the domain), so the ``n_verify`` best points are re-measured by secants;
    only secant values are reported, and every secant between two points of the domain is ≤ the
    constant.
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
    box = None if domain is None else (domain.lo, domain.hi)
    best = LowerBound(0.0, "sampling", None, None)
    for label, objective in objectives(net, norm, target):
        pts = lo + (hi - lo) * rng.random((n_samples, n))
        if domain is None:
            # narrower shells find the many regions near the origin and the data
            scale = np.geomspace(1e-2, 1.0, n_samples)[:, None]
            centre = net.x0 if net.x0 is not None else np.zeros(n)
            pts = np.clip(centre + scale * (pts - 0.5 * (lo + hi)), lo, hi)
        found = _search(objective, pts, lo, hi, width, n_starts, steps, n_verify)
        for _, point, how in found[-n_verify:]:
            value = objective.secant(point, box, width)
            if value > best.value:
                best = LowerBound(value, how, point.copy(), label)
    return best


def _search(objective, pts, lo, hi, width, n_starts, steps, n_verify) -> list[tuple[float, np.ndarray, str]]:
    """Points of large real slope (sorted ascending): the best samples, then multi-start
    smoothed ascent from them."""
    vals = objective.values(pts)
    order = np.argsort(vals)
    found = [(float(vals[i]), pts[i], "sampling") for i in order[-n_verify:]]
    x = pts[order[-n_starts:]].copy()
    step, h = 0.05 * width, 1e-5 * max(width, 1e-3)
    for k in range(steps):
        beta = 10.0 ** (1 + 3 * k / max(1, steps - 1)) / max(width, 1e-6)
        direction = objective.ascent(x, beta, h)
        nrm = np.linalg.norm(direction, axis=1, keepdims=True)
        x = np.clip(x + step * direction / np.maximum(nrm, 1e-300), lo, hi)
        vals = objective.values(x)
        i = int(np.argmax(vals))
        found.append((float(vals[i]), x[i].copy(), "sampling+ascent"))
        step *= 0.97
    found.sort(key=lambda f: f[0])
    return found
