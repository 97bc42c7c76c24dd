"""Activations σ: one class each, registered by name, declaring what soundness needs.

Every activation **declares** (class attributes, checked by :func:`register_activation`):

* ``monotone`` — σ non-decreasing; otherwise ``value_argmin`` (σ decreases before it and
  increases after) or an own :meth:`Activation.value_range`;
* ``curvature`` — ``"convex"``, ``"concave"`` or ``"neither"`` (chooses the linear relaxation);
* ``piecewise_linear`` — and then ``derivative_shape`` ``"constant"`` or ``"step"`` (with
  ``kink`` and ``step_slopes``), where every value and derivative is exact;
* ``derivative_shape`` — ``"non-decreasing"`` (σ' monotone), ``"unimodal"`` (one critical
  point of σ') or ``"general"`` (``derivative_critical_points``: the points where σ' changes
  direction), from which :meth:`Activation.derivative_range` follows.

and **provides** value, derivative (finite limits at ``±inf``), derivative range and value range
over an interval (rounded outward), the linear relaxation ``a_l z + b_l ≤ σ(z) ≤ a_u z + b_u``
on ``[l, u]`` (CROWN lines), global slope bounds and a smooth surrogate of σ' for the
lower-bound search. :func:`register_activation` refuses a class that lacks a declaration, or
whose declarations disagree with its own samples. Adding an activation is one class here and
its ``@register_activation``.

``Activation("gelu")`` (the factory call) returns an instance of the registered class; two
activations are equal iff they have the same class, name and ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import ndtr

from .errors import LipoptError
from .floats import EPS, TINY

CURVATURES = ("convex", "concave", "neither")
DERIVATIVE_SHAPES = ("constant", "step", "non-decreasing", "unimodal", "general")
#: relative error bound of the smooth formulas below (exp, a few adds, a square and a division:
#: < 8 roundings of ≤ eps/2 each, plus exp's ≤ 1 ulp), with a wide safety factor
SMOOTH_REL_ERROR = 64 * EPS
#: the same for formulas built on ``scipy.special.ndtr`` (Cephes: peak relative error 3.4e-14)
NDTR_REL_ERROR = 1024 * EPS


@dataclass(frozen=True)
class Activation:
    """A scalar activation σ; the base class of every registered activation and its factory.

    ``alpha`` is the parameter of the activations that have one (the negative slope of
    ``leaky_relu``, the scale of ``elu``); the others ignore it.
    """

    name: str = "relu"
    alpha: float = 0.01

    # ---- declarations ----------------------------------------------------------------------
    key: ClassVar[str]
    monotone: ClassVar[bool]
    curvature: ClassVar[str]
    piecewise_linear: ClassVar[bool]
    derivative_shape: ClassVar[str]
    #: points where σ' changes from increasing to decreasing or back (smooth shapes)
    derivative_critical_points: ClassVar[tuple[float, ...]] = ()
    #: exact global bounds on σ' (outward-rounded ranges are clipped to them)
    derivative_bounds: ClassVar[tuple[float, float]] = (-np.inf, np.inf)
    #: non-monotone σ: σ is non-increasing before this point and non-decreasing after it
    value_argmin: ClassVar[float | None] = None
    #: relative error of a computed value / derivative; absolute error of a computed derivative
    value_rel_error: ClassVar[float] = SMOOTH_REL_ERROR
    derivative_rel_error: ClassVar[float] = SMOOTH_REL_ERROR
    derivative_abs_error: ClassVar[float] = 0.0

    def __new__(cls, name: str = "relu", alpha: float = 0.01):
        if cls is Activation:
            cls = _lookup(name)
        return object.__new__(cls)

    def __post_init__(self) -> None:
        if self.name != self.key:  # a registered class constructed directly
            object.__setattr__(self, "name", self.key)
        self.check_parameters()

    def check_parameters(self) -> None:
        """Raise :class:`LipoptError` when ``alpha`` is outside the activation's valid range."""

    # ---- to implement ----------------------------------------------------------------------
    def __call__(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """σ'(z), with the limits at ``±inf``; at a kink the right derivative."""
        raise NotImplementedError

    # ---- derived ---------------------------------------------------------------------------
    @property
    def is_piecewise_linear(self) -> bool:
        return self.piecewise_linear

    @property
    def kink(self) -> float:
        return 0.0

    @property
    def step_slopes(self) -> tuple[float, float]:
        """``(σ' left of the kink, σ' right of it)`` for a ``"step"`` derivative."""
        raise NotImplementedError

    def derivative_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval ``[dlo, dhi] ⊇ {σ'(z) : lo ≤ z ≤ hi}`` (Clarke derivative at kinks).

        Step: the slopes on each side that the interval touches (a degenerate interval at the
        kink keeps both). Smooth: σ' is monotone between its critical points, so its extremes
        are at ``lo``, ``hi`` or a critical point inside (``clip(c, lo, hi)`` covers both
        cases); the computed values are rounded outward and clipped to ``derivative_bounds``.
        Infinite endpoints (global bounds) are allowed.
        """
        lo, hi = unbounded_if_nan(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
        if self.derivative_shape == "constant":
            d = self.derivative(np.zeros_like(lo))
            return d, d.copy()
        if self.derivative_shape == "step":
            left, right = self.step_slopes
            only_right = (lo >= self.kink) & (hi > self.kink)
            only_left = (hi <= self.kink) & (lo < self.kink)
            dlo = np.where(only_right, right, np.where(only_left, left, min(left, right)))
            dhi = np.where(only_right, right, np.where(only_left, left, max(left, right)))
            return dlo, dhi
        points = [lo, hi, *(np.clip(c, lo, hi) for c in self.derivative_critical_points)]
        values = np.stack([self.derivative(p) for p in points])
        return self._round_derivatives(values.min(axis=0), values.max(axis=0))

    def _round_derivatives(self, dlo: np.ndarray, dhi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outward rounding by the declared error model, clipped to ``derivative_bounds``."""
        lo_b, hi_b = self.derivative_bounds
        err_lo = self.derivative_rel_error * np.abs(dlo) + self.derivative_abs_error
        err_hi = self.derivative_rel_error * np.abs(dhi) + self.derivative_abs_error + 64 * TINY
        return np.maximum(dlo - err_lo, lo_b), np.minimum(dhi + err_hi, hi_b)

    def value_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval ``⊇ {σ(z) : lo ≤ z ≤ hi}``, rounded outward (exact for piecewise-linear σ
        with exact values): ``[σ(lo), σ(hi)]`` for monotone σ; ``[σ(clip(z*, lo, hi)),
        max(σ(lo), σ(hi))]`` for σ with a single minimum at ``z* = value_argmin``."""
        lo, hi = unbounded_if_nan(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
        with np.errstate(invalid="ignore", over="ignore"):
            if self.monotone:
                vlo, vhi = self(lo), self(hi)
            else:
                vlo = self(np.clip(self.value_argmin, lo, hi))
                vhi = np.maximum(self(lo), self(hi))
        return self._round_values(vlo, -1.0), self._round_values(vhi, 1.0)

    def _round_values(self, v: np.ndarray, direction: float) -> np.ndarray:
        """``v`` moved by its declared error bound towards ``direction`` (finite values only)."""
        if self.value_rel_error == 0.0:
            return v
        step = self.value_rel_error * np.abs(v) + 64 * TINY
        return np.where(np.isfinite(v), v + direction * step, v)

    def relaxation(
        self, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lines ``(a_l, b_l, a_u, b_u)`` with ``a_l z + b_l ≤ σ(z) ≤ a_u z + b_u`` on ``[lo, hi]``
        (finite ends).

        Convex σ: upper = chord, lower = tangent (step: the slope of the side that leaves the
        smaller area, through the kink; smooth: at the midpoint); concave σ: mirrored. Otherwise,
        by the mean value theorem with ``σ' ≥ d_lo`` on the interval:
        ``σ(l) + d_lo (z − l) ≤ σ(z) ≤ σ(u) + d_lo (z − u)``. The intercepts are widened by the
        rounding errors of the values, slopes and products involved.
        """
        lo = np.asarray(lo, dtype=float)
        hi = np.asarray(hi, dtype=float)
        dlo, dhi = self.derivative_range(lo, hi)
        f_lo, f_hi = self(lo), self(hi)
        if self.curvature == "neither":
            a_l, b_l, a_u, b_u = dlo, f_lo - dlo * lo, dlo, f_hi - dlo * hi
        else:
            width = hi - lo
            flat = width <= 1e-12 * (1 + np.abs(lo))
            with np.errstate(divide="ignore", invalid="ignore"):
                secant = (f_hi - f_lo) / np.where(flat, 1.0, width)
                chord = np.where(flat, dhi if self.curvature == "convex" else dlo, secant)
            b_chord = f_lo - chord * lo
            a_t, b_t = self._tangent(lo, hi)
            if self.curvature == "convex":
                a_l, b_l, a_u, b_u = a_t, b_t, chord, b_chord
            else:
                a_l, b_l, a_u, b_u = chord, b_chord, a_t, b_t
        scale = np.abs(lo) + np.abs(hi)
        rel = 8 * EPS + self.value_rel_error + self.derivative_rel_error
        values = np.abs(f_lo) + np.abs(f_hi) + (np.abs(a_l) + np.abs(a_u)) * scale
        margin = rel * values + self.derivative_abs_error * scale
        return a_l, b_l - margin, a_u, b_u + margin

    def _tangent(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A tangent line of convex/concave σ on ``[lo, hi]``."""
        if self.derivative_shape == "step":
            left, right = self.step_slopes
            k = self.kink
            a = np.where(hi - k > k - lo, right, left)
            a = np.where(lo >= k, right, np.where(hi <= k, left, a))
            return a, self(np.full_like(lo, k)) - a * k
        mid = 0.5 * (lo + hi)
        a = self.derivative(mid)
        return a, self(mid) - a * mid

    @property
    def slope_bounds(self) -> tuple[float, float]:
        """Global derivative range ``[inf σ', sup σ']``."""
        lo, hi = self.derivative_range(np.array([-np.inf]), np.array([np.inf]))
        return float(lo[0]), float(hi[0])

    def smooth_derivative(self, z: np.ndarray, beta: float) -> np.ndarray:
        """A smooth surrogate of σ' for gradient-based searches: a step becomes a sigmoid of
        sharpness ``beta``; smooth σ' is returned as is."""
        if self.derivative_shape != "step":
            return self.derivative(z)
        left, right = self.step_slopes
        return left + (right - left) * 0.5 * (1 + np.tanh(0.5 * beta * (np.asarray(z) - self.kink)))


def unbounded_if_nan(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An interval end that is NaN carries no information (``∞ − ∞`` or ``0·∞`` after an
    overflow, e.g. the centre of ``[−∞, ∞]``): it becomes ``−∞`` / ``+∞``, never a number."""
    return np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
#: registered activation classes by name
ACTIVATIONS: dict[str, type[Activation]] = {}


def _lookup(name: str) -> type[Activation]:
    cls = ACTIVATIONS.get(name)
    if cls is None:
        raise LipoptError(f"unknown activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return cls


def _refuse(key: str, why: str) -> LipoptError:
    return LipoptError(f"activation {key!r} cannot be registered: {why}")


def register_activation(cls: type[Activation]) -> type[Activation]:
    """Class decorator: add ``cls`` to :data:`ACTIVATIONS` under ``cls.key`` after checking that
    it declares what soundness needs (see the module doc) and that its default instance agrees
    with its declarations on dense samples."""
    key = getattr(cls, "key", None)
    if not isinstance(key, str) or not key:
        raise LipoptError(f"activation class {cls.__name__} cannot be registered: it declares no 'key'")
    for attr, kind, needed_for in (
        ("monotone", bool, "interval bounds"),
        ("piecewise_linear", bool, "exact enumeration and rounding"),
        ("curvature", str, "the linear relaxation"),
        ("derivative_shape", str, "the derivative range"),
    ):
        if not isinstance(getattr(cls, attr, None), kind):
            raise _refuse(key, f"it does not declare {attr!r} (needed for {needed_for})")
    if cls.curvature not in CURVATURES:
        raise _refuse(key, f"curvature must be one of {', '.join(CURVATURES)}, got {cls.curvature!r}")
    if cls.derivative_shape not in DERIVATIVE_SHAPES:
        raise _refuse(key, f"derivative_shape must be one of {', '.join(DERIVATIVE_SHAPES)}")
    for method in ("__call__", "derivative"):
        if getattr(cls, method) is getattr(Activation, method):
            raise _refuse(key, f"it does not implement {method}")
    _check_shape_declarations(cls, key)
    if not cls.monotone and cls.value_argmin is None and cls.value_range is Activation.value_range:
        raise _refuse(key, "it is not monotone and declares neither value_argmin nor its own value_range")
    if key in ACTIVATIONS and ACTIVATIONS[key] is not cls:
        raise _refuse(key, "the name is taken")
    _check_against_samples(cls(), key)
    ACTIVATIONS[key] = cls
    return cls


def _check_shape_declarations(cls: type[Activation], key: str) -> None:
    shape, n_crit = cls.derivative_shape, len(cls.derivative_critical_points)
    if cls.piecewise_linear != (shape in ("constant", "step")):
        raise _refuse(key, "piecewise_linear must go with a 'constant' or 'step' derivative_shape")
    if shape == "step" and cls.step_slopes is Activation.step_slopes:
        raise _refuse(key, "a 'step' derivative needs step_slopes")
    if shape == "non-decreasing" and n_crit:
        raise _refuse(key, "a 'non-decreasing' derivative has no critical points")
    if shape == "unimodal" and n_crit != 1:
        raise _refuse(key, "a 'unimodal' derivative declares exactly one critical point")
    if shape == "general" and not n_crit and cls.derivative_range is Activation.derivative_range:
        raise _refuse(key, "a 'general' derivative needs critical points or its own derivative_range")


def _check_against_samples(act: Activation, key: str) -> None:
    """Dense samples on [−20, 20] must agree with the declarations (a guard against a wrong
    declaration, not a proof)."""
    z = np.linspace(-20.0, 20.0, 8001)
    v, d = act(z), act.derivative(z)
    ends = act.derivative(np.array([-np.inf, np.inf]))
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(d)) and np.all(np.isfinite(ends))):
        raise _refuse(key, "its value or derivative is not finite on samples or at ±inf")
    tol = 1e-9 * (1 + np.abs(v))
    if act.monotone and np.any(np.diff(v) < -tol[1:]):
        raise _refuse(key, "it declares monotone but decreases on samples")
    if act.value_argmin is not None and np.any(act(np.array([act.value_argmin])) > v + tol):
        raise _refuse(key, "value_argmin is not its minimum on samples")
    second = v[:-2] - 2 * v[1:-1] + v[2:]
    if act.curvature == "convex" and np.any(second < -tol[1:-1]):
        raise _refuse(key, "it declares convex but is not on samples")
    if act.curvature == "concave" and np.any(second > tol[1:-1]):
        raise _refuse(key, "it declares concave but is not on samples")
    smooth = z[np.abs(z - act.kink) > 1e-9] if act.piecewise_linear else z
    dlo, dhi = act.slope_bounds
    ds = act.derivative(smooth)
    if np.any(ds < dlo) or np.any(ds > dhi):
        raise _refuse(key, "its derivative leaves its declared global derivative range on samples")
    for a, b in ((-3.0, -0.5), (-0.5, 0.7), (0.3, 4.0), (-8.0, 8.0)):
        zz = smooth[(smooth >= a) & (smooth <= b)]
        (lo,), (hi,) = act.derivative_range(np.array([a]), np.array([b]))
        (vl,), (vh,) = act.value_range(np.array([a]), np.array([b]))
        vv = act(zz)
        dd = act.derivative(zz)
        if np.any(dd < lo) or np.any(dd > hi) or np.any(vv < vl) or np.any(vv > vh):
            raise _refuse(key, f"its derivative or value range on [{a}, {b}] misses samples")


# ---------------------------------------------------------------------------------------------
# Piecewise-linear activations
# ---------------------------------------------------------------------------------------------
@register_activation
class Identity(Activation):
    key = "identity"
    monotone = True
    curvature = "convex"
    piecewise_linear = True
    derivative_shape = "constant"
    value_rel_error = 0.0
    derivative_rel_error = 0.0

    def __call__(self, z):
        return z

    def derivative(self, z):
        return np.ones_like(np.asarray(z, dtype=float))

    def _tangent(self, lo, hi):
        return np.ones_like(lo), np.zeros_like(lo)


def _check_unit_alpha(act: Activation) -> None:
    if not 0.0 <= act.alpha <= 1.0:
        raise LipoptError(f"{act.name} needs 0 <= alpha <= 1, got {act.alpha}")


@register_activation
class ReLU(Activation):
    key = "relu"
    monotone = True
    curvature = "convex"
    piecewise_linear = True
    derivative_shape = "step"
    value_rel_error = 0.0
    derivative_rel_error = 0.0
    step_slopes = (0.0, 1.0)

    def __call__(self, z):
        return np.maximum(z, 0.0)

    def derivative(self, z):
        return (np.asarray(z) > 0).astype(float)


@register_activation
class LeakyReLU(Activation):
    """``max(z, αz)`` with ``0 ≤ α ≤ 1``."""

    key = "leaky_relu"
    monotone = True
    curvature = "convex"
    piecewise_linear = True
    derivative_shape = "step"
    value_rel_error = EPS  # one rounding of α·z
    derivative_rel_error = 0.0

    def check_parameters(self) -> None:
        _check_unit_alpha(self)

    @property
    def step_slopes(self) -> tuple[float, float]:
        return (float(self.alpha), 1.0)

    def __call__(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def derivative(self, z):
        return np.where(np.asarray(z) > 0, 1.0, self.alpha)


# ---------------------------------------------------------------------------------------------
# Smooth monotone activations
# ---------------------------------------------------------------------------------------------
def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1/(1 + e^{−z})`` with a few ulps of *relative* error for every z (no ``1 − x`` cancellation
    in the tails, where ``0.5(1 + tanh(z/2))`` loses all digits and rounds to 0)."""
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


@register_activation
class ELU(Activation):
    """``z`` for ``z > 0``, ``α(eᶻ − 1)`` else, with ``0 ≤ α ≤ 1`` (convex, σ' non-decreasing)."""

    key = "elu"
    monotone = True
    curvature = "convex"
    piecewise_linear = False
    derivative_shape = "non-decreasing"
    derivative_bounds = (0.0, 1.0)

    def check_parameters(self) -> None:
        _check_unit_alpha(self)

    def __call__(self, z):
        return np.where(z > 0, z, self.alpha * np.expm1(np.minimum(z, 0.0)))

    def derivative(self, z):
        z = np.asarray(z, dtype=float)
        return np.where(z > 0, 1.0, self.alpha * np.exp(np.minimum(z, 0.0)))

    def derivative_range(self, lo, hi):
        dlo, dhi = super().derivative_range(lo, hi)
        return np.where(np.asarray(lo) > 0, 1.0, dlo), dhi  # σ' ≡ 1 exactly on z > 0


@register_activation
class Tanh(Activation):
    key = "tanh"
    monotone = True
    curvature = "neither"
    piecewise_linear = False
    derivative_shape = "unimodal"
    derivative_critical_points = (0.0,)
    derivative_bounds = (0.0, 1.0)

    def __call__(self, z):
        return np.tanh(z)

    def derivative(self, z):
        """``1 − tanh²(z) = 4e^{−2|z|}/(1 + e^{−2|z|})²`` (relative error a few ulps; ``1 − tanh²``
        cancels to 0 for ``|z| ≳ 19``)."""
        e = np.exp(-2.0 * np.abs(np.asarray(z, dtype=float)))
        return 4.0 * e / (1.0 + e) ** 2


@register_activation
class Sigmoid(Activation):
    key = "sigmoid"
    monotone = True
    curvature = "neither"
    piecewise_linear = False
    derivative_shape = "unimodal"
    derivative_critical_points = (0.0,)
    derivative_bounds = (0.0, 0.25)

    def __call__(self, z):
        return sigmoid(z)

    def derivative(self, z):
        """``σ(z)(1 − σ(z)) = e^{−|z|}/(1 + e^{−|z|})²`` (relative error a few ulps)."""
        e = np.exp(-np.abs(np.asarray(z, dtype=float)))
        return e / (1.0 + e) ** 2


@register_activation
class Softplus(Activation):
    key = "softplus"
    monotone = True
    curvature = "convex"
    piecewise_linear = False
    derivative_shape = "non-decreasing"
    derivative_bounds = (0.0, 1.0)

    def __call__(self, z):
        return np.logaddexp(0.0, z)

    def derivative(self, z):
        return sigmoid(z)


# ---------------------------------------------------------------------------------------------
# Smooth non-monotone activations
# ---------------------------------------------------------------------------------------------
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))


@register_activation
class GELU(Activation):
    """``z Φ(z)`` (exact, erf form). Not monotone: minimum ≈ −0.16997 at ``z* ≈ −0.75179``;
    σ' = Φ(z) + z φ(z) falls to ≈ −0.12890 at ``−√2``, rises to ≈ 1.12890 at ``√2``, then
    falls to 1 (``σ'' = φ(z)(2 − z²)``)."""

    key = "gelu"
    monotone = False
    curvature = "neither"
    piecewise_linear = False
    derivative_shape = "general"
    derivative_critical_points = (-float(np.sqrt(2.0)), float(np.sqrt(2.0)))
    value_argmin = -0.7517915246935645
    value_rel_error = NDTR_REL_ERROR
    derivative_rel_error = NDTR_REL_ERROR
    derivative_abs_error = 2 * NDTR_REL_ERROR  # the two terms cancel near the root (each ≤ 1)

    def __call__(self, z):
        z = np.asarray(z, dtype=float)
        with np.errstate(invalid="ignore"):
            return np.where(z == -np.inf, 0.0, z * ndtr(z))

    def derivative(self, z):
        z = np.asarray(z, dtype=float)
        finite = np.where(np.isfinite(z), z, 0.0)
        d = ndtr(finite) + finite * np.exp(-0.5 * finite * finite) / _SQRT_2PI
        return np.where(np.isinf(z), np.where(z > 0, 1.0, 0.0), np.where(np.isnan(z), np.nan, d))


@register_activation
class SiLU(Activation):
    """``z σ(z)`` (swish). Not monotone: minimum ≈ −0.27846 at ``z* ≈ −1.27846``; σ' falls to
    ≈ −0.09984 at ``−2.39936``, rises to ≈ 1.09984 at ``2.39936`` (roots of ``z tanh(z/2) = 2``),
    then falls to 1."""

    key = "silu"
    monotone = False
    curvature = "neither"
    piecewise_linear = False
    derivative_shape = "general"
    derivative_critical_points = (-2.3993572805154677, 2.3993572805154677)
    value_argmin = -1.2784645427610738
    derivative_abs_error = 2 * SMOOTH_REL_ERROR  # σ(z) + z σ(z) σ(−z): terms ≤ 1 that cancel

    def __call__(self, z):
        z = np.asarray(z, dtype=float)
        with np.errstate(invalid="ignore"):
            return np.where(z == -np.inf, 0.0, z * sigmoid(z))

    def derivative(self, z):
        z = np.asarray(z, dtype=float)
        finite = np.where(np.isfinite(z), z, 0.0)
        d = sigmoid(finite) * (1.0 + finite * sigmoid(-finite))
        return np.where(np.isinf(z), np.where(z > 0, 1.0, 0.0), np.where(np.isnan(z), np.nan, d))


IDENTITY = Activation("identity")
