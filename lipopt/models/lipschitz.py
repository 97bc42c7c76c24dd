"""Lipschitz-by-construction layers as lipopt networks, and their verification with the engine.

Every layer below is built from raw parameters (with a seed), has a numpy forward pass that
implements its defining formula, and exports itself as lipopt blocks (:class:`Dense` /
:class:`Residual`), so that stacks of layers become a :class:`Network` the engine can bound.
Each construction *claims* an ℓ2 Lipschitz constant (1, or ``L`` for the Gershgorin block):

* **SLL** (Araujo et al., ICLR 2023): ``h(x) = x − 2 W T⁻¹ σ(Wᵀx + b)`` with ``T = diag(t)``,
  ``t_i = Σ_j |(WᵀW)_ij| q_j / q_i`` (``q > 0``). Since ``T ⪰ WᵀW`` (Gershgorin on
  ``Q⁻¹(T − WᵀW)Q``), ``J = I − 2 W T⁻¹ D Wᵀ`` has eigenvalues in ``[−1, 1]`` for every diagonal
  ``0 ⪯ D ⪯ I``: 1-Lipschitz in ℓ2.
* **AOL** (Prach & Lampert, ECCV 2022): ``x ↦ P D x + b`` with
  ``D_ii = (Σ_j |(PᵀP)_ij|)^(−1/2)``, so ``‖PD‖₂ ≤ 1``; ReLU between layers.
* **CPL** (Meunier et al., ICML 2022): ``x ↦ x − (2/‖W‖₂²) Wᵀ σ(Wx + b)``.
* **Gradient-step blocks** (Murari et al. 2025): ``x ↦ x − τ Wᵀ σ(Wx + b)`` with
  ``τ ∈ [0, 2/‖W‖₂²]``, between norm-constrained linear maps ``‖A‖₂ ≤ 1``.
* **Gershgorin residual block** (after Juston et al. 2025; derivation in
  ``docs/gershgorin_resnet.md``): ``y = hQx − (1/h) Q V Λ σ(Wx + b)`` with ``Q`` orthogonal,
  ``F = Wᵀ − V``, ``Σ_j |F_ij| q_j ≤ L² − h²`` and
  ``λ_j = 2 q_j / (Σ_i |F_ij| + h⁻² Σ_l |(VᵀV)_jl| q_l)``: L-Lipschitz in ℓ2.

Verification (:func:`verify_stack`): for several unit vectors ``c``, the scalar target ``cᵀN``
of a 1-Lipschitz map has ℓ2 constant ≤ 1 (``|cᵀ(N(x) − N(y))| ≤ ‖N(x) − N(y)‖₂``), so every
certified bound of the engine must be ≤ claim + tolerance *if the relaxation is tight enough*,
and ≥ the exact value of the norm-gradient POP (the maximum over all derivative patterns,
computed here by vertex enumeration) — which in turn is ≥ every real gradient norm. For ℓ∞
inputs the claim implies ``L_∞(cᵀN) ≤ √n · L``. Negative controls (a perturbed construction)
come with a *witness*: a real point whose Jacobian has spectral norm above the claim.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

import numpy as np

from ..errors import LipoptError
from ..floats import EPS
from ..network import IDENTITY, Activation, Block, Dense, Network, Residual
from ..problems import derivative_ranges, make_target, parse_norm

__all__ = [
    "AOLLayer",
    "GershgorinBlock",
    "GradientStepLayer",
    "LayerStack",
    "LinearLayer",
    "LipschitzLayer",
    "SLLLayer",
    "STACKS",
    "VerificationRow",
    "Witness",
    "aol_layer",
    "aol_stack",
    "cpl_layer",
    "cpl_stack",
    "exact_pop_value",
    "gershgorin_block",
    "gershgorin_stack",
    "gradient_step_layer",
    "gradient_step_stack",
    "jacobian",
    "jacobian_witness",
    "negative_control",
    "sll_layer",
    "sll_stack",
    "spectral_linear",
    "stack",
    "unit_targets",
    "verify_stack",
]

RELU = Activation("relu")


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def _rows(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``x`` as a batch of rows, and whether the input was a single vector."""
    x = np.asarray(x, dtype=float)
    return np.atleast_2d(x), x.ndim == 1


def _spectral_norm(w: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(w, dtype=float), 2)) if np.size(w) else 0.0


class LipschitzLayer(Protocol):
    """A layer with a claimed ℓ2 Lipschitz constant, a numpy forward pass and lipopt blocks."""

    kind: str

    @property
    def in_dim(self) -> int: ...

    @property
    def out_dim(self) -> int: ...

    @property
    def claimed(self) -> float: ...

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def blocks(self) -> tuple[Block, ...]: ...

    def satisfies_constraints(self, tol: float = 1e-9) -> bool: ...


class _LayerShape:
    """The ``in_dim`` / ``out_dim`` / ``claimed`` properties of the layer dataclasses, once.

    Configured per class by keywords: ``matrix`` names the attribute whose shape gives the sizes,
    its axis ``in_axis`` is ``in_dim`` (the other one ``out_dim``, or ``in_dim`` again for a
    ``square`` map); ``claim`` names the attribute holding the claimed ℓ2 constant (``None``: 1).
    """

    _matrix: ClassVar[str] = "weight"
    _in_axis: ClassVar[int] = 1
    _square: ClassVar[bool] = False
    _claim: ClassVar[str | None] = None

    def __init_subclass__(
        cls,
        *,
        matrix: str = "weight",
        in_axis: int = 1,
        square: bool = False,
        claim: str | None = None,
        **kw,
    ) -> None:
        super().__init_subclass__(**kw)
        cls._matrix, cls._in_axis, cls._square, cls._claim = matrix, in_axis, square, claim

    @property
    def in_dim(self) -> int:
        return int(getattr(self, self._matrix).shape[self._in_axis])

    @property
    def out_dim(self) -> int:
        return self.in_dim if self._square else int(getattr(self, self._matrix).shape[1 - self._in_axis])

    @property
    def claimed(self) -> float:
        return 1.0 if self._claim is None else float(getattr(self, self._claim))


# ---------------------------------------------------------------------------------------------
# SLL
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SLLLayer(_LayerShape, in_axis=0, square=True):
    """SDP-based Lipschitz Layer ``h(x) = x − 2 W T⁻¹ σ(Wᵀx + b)`` (``W`` is ``n × m``).

    ``T = diag(t)``, ``t_i = Σ_j |(WᵀW)_ij| q_j / q_i``: then ``T − WᵀW ⪰ 0`` (every Gershgorin
    disc of ``Q⁻¹(T − WᵀW)Q``, ``Q = diag(q)``, lies in ``[0, ∞)``), so
    ``‖T^{−1/2} WᵀW T^{−1/2}‖₂ ≤ 1`` and ``J = I − 2 W T⁻¹ D Wᵀ`` (symmetric, ``0 ⪯ D ⪯ I``)
    has eigenvalues in ``[−1, 1]``. ``t_scale`` multiplies ``T`` (the claim needs
    ``t_scale ≥ 1``; a smaller value is a negative control).
    """

    weight: np.ndarray
    bias: np.ndarray
    q: np.ndarray
    t_scale: float = 1.0
    kind: str = "sll"

    @property
    def t(self) -> np.ndarray:
        """``t_i = t_scale · Σ_j |(WᵀW)_ij| q_j / q_i`` (zero columns of W get ``t_i = 1``)."""
        gram = np.abs(self.weight.T @ self.weight)
        t = gram @ self.q / self.q
        return self.t_scale * np.where(t > 0, t, 1.0)

    @property
    def out_matrix(self) -> np.ndarray:
        """``B = −2 W T⁻¹`` (``n × m``)."""
        return -2.0 * self.weight / self.t[None, :]

    def forward(self, x: np.ndarray) -> np.ndarray:
        xs, single = _rows(x)
        y = xs - 2.0 * (_relu(xs @ self.weight + self.bias) / self.t) @ self.weight.T
        return y[0] if single else y

    def blocks(self) -> tuple[Block, ...]:
        inner = (Dense(self.weight.T.copy(), self.bias.copy(), RELU),)
        return (Residual(inner, None, self.out_matrix, IDENTITY),)

    def satisfies_constraints(self, tol: float = 1e-9) -> bool:
        """``T − WᵀW ⪰ 0`` numerically (eigvalsh, relative tolerance)."""
        m = np.diag(self.t) - self.weight.T @ self.weight
        return bool(np.linalg.eigvalsh(m)[0] >= -tol * max(1.0, float(np.abs(m).max())))


def sll_layer(
    n: int,
    m: int | None = None,
    seed: int = 0,
    *,
    scale: float = 1.0,
    bias_scale: float = 0.5,
    q: np.ndarray | None = None,
    t_scale: float = 1.0,
) -> SLLLayer:
    """Random SLL layer: ``W ~ scale·N(0, 1/n)`` (``n × m``, ``m = n`` by default), ``b ~ N(0, bias_scale²)``,
    ``q = 1`` unless given."""
    m = n if m is None else m
    rng = np.random.default_rng(seed)
    w = scale * rng.normal(size=(n, m)) / np.sqrt(n)
    b = bias_scale * rng.normal(size=m)
    q = np.ones(m) if q is None else np.asarray(q, dtype=float)
    if q.shape != (m,) or np.any(q <= 0):
        raise LipoptError(f"q must be a positive vector of length {m}")
    return SLLLayer(w, b, q, float(t_scale))


# ---------------------------------------------------------------------------------------------
# AOL
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AOLLayer(_LayerShape, matrix="param"):
    """Almost-Orthogonal Layer ``x ↦ σ(P D x + b)`` (``P`` is ``out × in``).

    ``rescaling="aol"``: ``D_ii = (Σ_j |(PᵀP)_ij|)^(−1/2)``. Then ``‖PD‖₂² = λ_max(D PᵀP D)``,
    and ``D PᵀP D`` is similar to ``D² PᵀP`` whose Gershgorin discs lie in
    ``[−1, D_ii² Σ_j |(PᵀP)_ij|] = [−1, 1]``: ``‖PD‖₂ ≤ 1``.
    ``rescaling="column"`` (negative control) normalises columns, ``D_ii = ‖P_{:,i}‖₂⁻¹``, which
    only gives ``‖PD‖₂ ≤ √in``.
    """

    param: np.ndarray
    bias: np.ndarray
    activation: Activation = field(default=RELU)
    rescaling: str = "aol"
    kind: str = "aol"

    @property
    def d(self) -> np.ndarray:
        if self.rescaling == "aol":
            s = np.abs(self.param.T @ self.param).sum(axis=1)
        elif self.rescaling == "column":
            s = (self.param**2).sum(axis=0)
        else:
            raise LipoptError(f"unknown AOL rescaling {self.rescaling!r}: use 'aol' or 'column'")
        return np.where(s > 0, 1.0 / np.sqrt(np.where(s > 0, s, 1.0)), 0.0)

    @property
    def weight(self) -> np.ndarray:
        """``P D``."""
        return self.param * self.d[None, :]

    def forward(self, x: np.ndarray) -> np.ndarray:
        xs, single = _rows(x)
        y = self.activation(xs @ self.weight.T + self.bias)
        return y[0] if single else y

    def blocks(self) -> tuple[Block, ...]:
        return (Dense(self.weight, self.bias.copy(), self.activation),)

    def satisfies_constraints(self, tol: float = 1e-9) -> bool:
        return _spectral_norm(self.weight) <= 1.0 + tol


def aol_layer(
    n_in: int,
    n_out: int,
    seed: int = 0,
    *,
    activation: Activation | str = "relu",
    bias_scale: float = 0.5,
    rescaling: str = "aol",
) -> AOLLayer:
    """Random AOL layer: ``P ~ N(0, 1)`` (``n_out × n_in``), ``b ~ N(0, bias_scale²)``."""
    rng = np.random.default_rng(seed)
    act = activation if isinstance(activation, Activation) else Activation(activation)
    p = rng.normal(size=(n_out, n_in))
    return AOLLayer(p, bias_scale * rng.normal(size=n_out), act, rescaling)


# ---------------------------------------------------------------------------------------------
# CPL and gradient-step blocks, norm-constrained linear maps
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradientStepLayer(_LayerShape, square=True):
    """``x ↦ x − τ Wᵀ σ(Wx + b)`` (``W`` is ``m × n``): an explicit gradient step on the convex
    potential ``Σ_j ψ(w_jᵀx + b_j)`` with ``ψ' = σ``.

    ``J = I − τ Wᵀ D W`` is symmetric with eigenvalues in ``[1 − τ‖W‖₂², 1]``, so the layer is
    1-Lipschitz in ℓ2 iff (for the all-active pattern) ``τ ≤ 2/‖W‖₂²``. CPL is ``τ = 2/‖W‖₂²``.
    """

    weight: np.ndarray
    bias: np.ndarray
    tau: float
    kind: str = "gradient-step"

    @property
    def step(self) -> float:
        """``τ ‖W‖₂²`` (the claim needs ``0 ≤ step ≤ 2``)."""
        return self.tau * _spectral_norm(self.weight) ** 2

    def forward(self, x: np.ndarray) -> np.ndarray:
        xs, single = _rows(x)
        y = xs - self.tau * _relu(xs @ self.weight.T + self.bias) @ self.weight
        return y[0] if single else y

    def blocks(self) -> tuple[Block, ...]:
        inner = (Dense(self.weight.copy(), self.bias.copy(), RELU),)
        return (Residual(inner, None, -self.tau * self.weight.T, IDENTITY),)

    def satisfies_constraints(self, tol: float = 1e-9) -> bool:
        return bool(0.0 <= self.step <= 2.0 * (1 + tol))


def _gs_weights(n: int, m: int | None, seed: int, scale: float, bias_scale: float):
    m = n if m is None else m
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(m, n)) / np.sqrt(n), bias_scale * rng.normal(size=m), rng


def cpl_layer(
    n: int,
    m: int | None = None,
    seed: int = 0,
    *,
    step: float = 2.0,
    scale: float = 1.0,
    bias_scale: float = 0.5,
) -> GradientStepLayer:
    """Convex Potential Layer ``x − (step/‖W‖₂²) Wᵀσ(Wx + b)``; ``step = 2`` is CPL (``> 2``: negative
    control)."""
    w, b, _ = _gs_weights(n, m, seed, scale, bias_scale)
    return GradientStepLayer(w, b, step / _spectral_norm(w) ** 2, kind="cpl")


def gradient_step_layer(
    n: int,
    m: int | None = None,
    seed: int = 0,
    *,
    step: float | None = None,
    scale: float = 1.0,
    bias_scale: float = 0.5,
) -> GradientStepLayer:
    """Gradient-step block with ``τ = step/‖W‖₂²``; ``step`` defaults to a random value in ``[1, 2]``."""
    w, b, rng = _gs_weights(n, m, seed, scale, bias_scale)
    step = float(rng.uniform(1.0, 2.0)) if step is None else float(step)
    return GradientStepLayer(w, b, step / _spectral_norm(w) ** 2, kind="gradient-step")


@dataclass(frozen=True)
class LinearLayer(_LayerShape, claim="norm_bound"):
    """Affine map ``x ↦ A x + b`` with the claim ``‖A‖₂ ≤ norm_bound`` (spectral normalisation)."""

    weight: np.ndarray
    bias: np.ndarray
    norm_bound: float = 1.0
    kind: str = "linear"

    def forward(self, x: np.ndarray) -> np.ndarray:
        xs, single = _rows(x)
        y = xs @ self.weight.T + self.bias
        return y[0] if single else y

    def blocks(self) -> tuple[Block, ...]:
        return (Dense(self.weight.copy(), self.bias.copy(), IDENTITY),)

    def satisfies_constraints(self, tol: float = 1e-9) -> bool:
        return _spectral_norm(self.weight) <= self.norm_bound * (1 + tol)


def spectral_linear(
    n_in: int,
    n_out: int | None = None,
    seed: int = 0,
    *,
    norm: float = 1.0,
    bias_scale: float = 0.0,
    claim: float = 1.0,
) -> LinearLayer:
    """``A = norm · M / ‖M‖₂`` for ``M ~ N(0, 1)``; claims ``‖A‖₂ ≤ claim`` (``norm > claim``: negative
    control)."""
    n_out = n_in if n_out is None else n_out
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n_out, n_in))
    return LinearLayer(norm * m / _spectral_norm(m), bias_scale * rng.normal(size=n_out), claim)


# ---------------------------------------------------------------------------------------------
# Gershgorin residual block
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GershgorinBlock(_LayerShape, square=True, claim="lipschitz"):
    """``y = H x + G σ(W x + b)`` with ``H = hQ`` (``Q`` orthogonal) and ``G = −(1/h) Q V Λ``.

    With ``F = Wᵀ − V`` the LipSDP-type LMI of the block (slope restriction ``σ' ∈ [0, 1]``,
    multiplier ``Λ = diag(λ) ⪰ 0``)::

        M = [[L² I − HᵀH,  −(HᵀG + WᵀΛ)],      =  [[(L² − h²) I,  −F Λ           ],
             [ ·,           2Λ − GᵀG    ]]          [ ·,            2Λ − Λ VᵀV Λ/h²]]  ⪰ 0

    is congruent (``diag(I, Λ⁻¹)``) to ``[[(L² − h²)I, −F], [−Fᵀ, 2Λ⁻¹ − VᵀV/h²]]``, whose
    Gershgorin discs (row weights ``1`` on x, ``q`` on the hidden units) lie in ``[0, ∞)`` iff

    * (G1) ``Σ_j |F_ij| q_j ≤ L² − h²`` for every input ``i``;
    * (G2) ``2/λ_j ≥ (Σ_i |F_ij| + h⁻² Σ_l |(VᵀV)_jl| q_l) / q_j`` for every hidden unit ``j``.

    ``M ⪰ 0`` ⇒ ``‖y(x) − y(x')‖₂ ≤ L ‖x − x'‖₂``. ``lam_scale`` multiplies ``Λ`` after the fact
    (``> 1`` breaks (G2): negative control). See ``docs/gershgorin_resnet.md``.
    """

    weight: np.ndarray  # W, m × n
    bias: np.ndarray  # b, m
    v: np.ndarray  # V, n × m
    lam: np.ndarray  # λ, m
    lipschitz: float  # L (claimed)
    skip_scale: float = 1.0  # h
    rotation: np.ndarray | None = None  # Q, n × n orthogonal (None = I)
    q: np.ndarray | None = None  # Gershgorin weights on the hidden units (None = 1)
    lam_scale: float = 1.0
    kind: str = "gershgorin"

    @property
    def _q(self) -> np.ndarray:
        return np.ones(self.weight.shape[0]) if self.q is None else self.q

    @property
    def _rot(self) -> np.ndarray:
        return np.eye(self.in_dim) if self.rotation is None else self.rotation

    @property
    def lam_effective(self) -> np.ndarray:
        return self.lam_scale * self.lam

    @property
    def skip(self) -> np.ndarray:
        """``H = hQ``."""
        return self.skip_scale * self._rot

    @property
    def out_matrix(self) -> np.ndarray:
        """``G = −(1/h) Q V Λ``."""
        return -(self._rot @ self.v) * self.lam_effective[None, :] / self.skip_scale

    @property
    def f(self) -> np.ndarray:
        """``F = Wᵀ − V``: the cross term of the LMI is ``F Λ``."""
        return self.weight.T - self.v

    def forward(self, x: np.ndarray) -> np.ndarray:
        xs, single = _rows(x)
        h = _relu(xs @ self.weight.T + self.bias)
        y = xs @ self.skip.T + h @ self.out_matrix.T
        return y[0] if single else y

    def blocks(self) -> tuple[Block, ...]:
        inner = (Dense(self.weight.copy(), self.bias.copy(), RELU),)
        return (Residual(inner, self.skip, self.out_matrix, IDENTITY),)

    def lmi(self, lipschitz: float | None = None) -> np.ndarray:
        """The LMI matrix ``M(L)`` of the class docstring (from ``H``, ``G``, ``W``, ``Λ`` directly)."""
        L = self.lipschitz if lipschitz is None else float(lipschitz)
        H, G, W = self.skip, self.out_matrix, self.weight
        lam = np.diag(self.lam_effective)
        top = np.hstack([L**2 * np.eye(self.in_dim) - H.T @ H, -(H.T @ G + W.T @ lam)])
        bottom = np.hstack([-(G.T @ H + lam @ W), 2 * lam - G.T @ G])
        return np.vstack([top, bottom])

    def gershgorin_margins(self) -> tuple[np.ndarray, np.ndarray]:
        """Slack of (G1) per input and of (G2) per hidden unit (both ≥ 0 when the claim is proved)."""
        L, h, q = self.lipschitz, self.skip_scale, self._q
        af = np.abs(self.f)
        g1 = (L**2 - h**2) - af @ q
        lam = self.lam_effective
        rhs = (af.sum(axis=0) + np.abs(self.v.T @ self.v) @ q / h**2) / q
        with np.errstate(divide="ignore"):
            g2 = np.where(lam > 0, 2.0 / np.where(lam > 0, lam, 1.0), np.inf) - rhs
        return g1, g2

    def satisfies_constraints(self, tol: float = 1e-9) -> bool:
        g1, g2 = self.gershgorin_margins()
        scale = max(1.0, self.lipschitz**2)
        return bool(np.all(g1 >= -tol * scale) and np.all(g2 >= -tol * np.maximum(1.0, np.abs(g2))))


def gershgorin_block(
    n: int,
    m: int | None = None,
    lipschitz: float = 1.0,
    seed: int = 0,
    *,
    skip_scale: float | None = None,
    orthogonal_skip: bool = False,
    q: np.ndarray | None = None,
    scale: float = 1.0,
    bias_scale: float = 0.5,
    lam_scale: float = 1.0,
) -> GershgorinBlock:
    """Closed-form parameterisation of an L-Lipschitz residual block (see :class:`GershgorinBlock`).

    Raw parameters: ``W ~ scale·N(0, 1/n)`` (``m × n``), ``V₀ ~ scale·N(0, 1/n)`` (``n × m``),
    ``b``, optionally a random orthogonal ``Q``. Then, with ``h = min(1, L)`` unless given:

    1. ``F₀ = Wᵀ − V₀``; ``F = κ F₀`` with ``κ = min(1, (L² − h²) / max_i Σ_j |F₀_ij| q_j)``
       (so (G1) holds; ``L = h`` forces ``F = 0``, i.e. ``V = Wᵀ``: an SLL layer scaled by ``hQ``);
    2. ``V = Wᵀ − F``;
    3. ``λ_j = 2 q_j / (Σ_i |F_ij| + h⁻² Σ_l |(VᵀV)_jl| q_l)`` (so (G2) holds with equality).
    """
    m = n if m is None else m
    L = float(lipschitz)
    if not L > 0:
        raise LipoptError(f"the Lipschitz constant L must be positive, got {lipschitz}")
    h = min(1.0, L) if skip_scale is None else float(skip_scale)
    if not 0 < h <= L:
        raise LipoptError(f"the skip scale h must satisfy 0 < h <= L = {L}, got {h}")
    qv = np.ones(m) if q is None else np.asarray(q, dtype=float)
    if qv.shape != (m,) or np.any(qv <= 0):
        raise LipoptError(f"q must be a positive vector of length {m}")
    rng = np.random.default_rng(seed)
    w = scale * rng.normal(size=(m, n)) / np.sqrt(n)
    v0 = scale * rng.normal(size=(n, m)) / np.sqrt(n)
    b = bias_scale * rng.normal(size=m)
    rot = None
    if orthogonal_skip:
        qr, r = np.linalg.qr(rng.normal(size=(n, n)))
        rot = qr * np.sign(np.diag(r))[None, :]
    f0 = w.T - v0
    rho = float(np.max(np.abs(f0) @ qv)) if f0.size else 0.0
    budget = L**2 - h**2
    kappa = 0.0 if rho == 0 else min(1.0, budget / rho) * (1 - 4 * EPS)
    f = kappa * f0
    v = w.T - f
    denom = np.abs(f).sum(axis=0) + np.abs(v.T @ v) @ qv / h**2
    lam = np.where(denom > 0, 2.0 * qv / np.where(denom > 0, denom, 1.0), 0.0) * (1 - 8 * EPS)
    return GershgorinBlock(w, b, v, lam, L, h, rot, None if q is None else qv, float(lam_scale))


# ---------------------------------------------------------------------------------------------
# Stacks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerStack:
    """A composition of Lipschitz layers; the claimed constant is the product of the claims."""

    layers: tuple
    name: str = "stack"

    @property
    def claimed(self) -> float:
        return float(np.prod([layer.claimed for layer in self.layers]))

    @property
    def in_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def out_dim(self) -> int:
        return self.layers[-1].out_dim

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def satisfies_constraints(self, tol: float = 1e-9) -> bool:
        return all(layer.satisfies_constraints(tol) for layer in self.layers)

    def network(self) -> Network:
        """The lipopt network; an identity output layer is appended when the stack does not end
        with an affine layer (it changes neither the map nor the constant)."""
        blocks: list[Block] = [b for layer in self.layers for b in layer.blocks()]
        last = blocks[-1]
        if last.affine() is None or last.activation.name != "identity":
            blocks.append(Dense(np.eye(last.out_dim), np.zeros(last.out_dim), IDENTITY))
        return Network(tuple(blocks), name=self.name)


def stack(layers: Sequence[LipschitzLayer], name: str = "stack") -> LayerStack:
    """Compose layers (shapes must chain)."""
    layers = tuple(layers)
    if not layers:
        raise LipoptError("a stack needs at least one layer")
    for i in range(1, len(layers)):
        if layers[i - 1].out_dim != layers[i].in_dim:
            raise LipoptError(
                f"layer {i} expects {layers[i].in_dim} inputs, layer {i - 1} gives {layers[i - 1].out_dim}"
            )
    return LayerStack(layers, name)


def sll_stack(n: int = 4, depth: int = 2, seed: int = 0, *, m: int | None = None, **kw) -> LayerStack:
    """``depth`` SLL layers of width ``n`` (hidden width ``m``)."""
    return stack([sll_layer(n, m, seed + 101 * k, **kw) for k in range(depth)], f"sll-{n}x{depth}")


def aol_stack(widths: Sequence[int] = (4, 5, 5, 3), seed: int = 0, **kw) -> LayerStack:
    """AOL layers ``widths[0] → … → widths[-1]`` with ReLU between them (none after the last)."""
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    layers = [
        aol_layer(a, b, seed + 101 * k, activation="relu" if k < len(pairs) - 1 else "identity", **kw)
        for k, (a, b) in enumerate(pairs)
    ]
    return stack(layers, "aol-" + "-".join(map(str, widths)))


def cpl_stack(n: int = 4, depth: int = 2, seed: int = 0, *, m: int | None = None, **kw) -> LayerStack:
    """``depth`` CPL layers of width ``n`` (hidden width ``m``)."""
    return stack([cpl_layer(n, m, seed + 101 * k, **kw) for k in range(depth)], f"cpl-{n}x{depth}")


def gradient_step_stack(
    n: int = 4,
    depth: int = 2,
    seed: int = 0,
    *,
    m: int | None = None,
    out_dim: int | None = None,
    step: float | None = None,
    linear_norm: float = 1.0,
) -> LayerStack:
    """``[gradient step, A]`` × depth with spectrally normalised ``A`` (the last maps to ``out_dim``)."""
    layers: list[LipschitzLayer] = []
    for k in range(depth):
        layers.append(gradient_step_layer(n, m, seed + 101 * k, step=step))
        n_out = n if k < depth - 1 or out_dim is None else out_dim
        layers.append(spectral_linear(n, n_out, seed + 101 * k + 7, norm=linear_norm))
    return stack(layers, f"gradient-step-{n}x{depth}")


def gershgorin_stack(
    n: int = 4, depth: int = 2, lipschitz: float = 1.5, seed: int = 0, *, m: int | None = None, **kw
) -> LayerStack:
    """``depth`` Gershgorin blocks of width ``n``, each ``L^(1/depth)``-Lipschitz (claim: ``L``)."""
    per = float(lipschitz) ** (1.0 / depth)
    layers = [gershgorin_block(n, m, per, seed + 101 * k, **kw) for k in range(depth)]
    return stack(layers, f"gershgorin-{n}x{depth}-L{lipschitz:g}")


STACKS: dict[str, Callable[..., LayerStack]] = {
    "sll": sll_stack,
    "aol": aol_stack,
    "cpl": cpl_stack,
    "gradient-step": gradient_step_stack,
    "gershgorin": gershgorin_stack,
}


def negative_control(st: LayerStack, factor: float | None = None) -> LayerStack:
    """The same stack with the construction's safeguard broken (the claim is kept):

    * SLL: ``T ← factor · T`` (default ``0.7``);
    * AOL: column normalisation instead of the AOL rescaling;
    * CPL / gradient step: ``τ ← factor · 2/‖W‖₂²`` (default ``2.05/2``; exceeding the claim
      needs the all-active pattern reachable, which random square ``W`` with ``b`` of either sign
      gives);
    * linear maps: ``‖A‖₂ ← factor`` (default 1.5);
    * Gershgorin blocks: ``Λ ← factor · Λ`` (default 2).
    """
    out = []
    for layer in st.layers:
        if isinstance(layer, SLLLayer):
            out.append(replace(layer, t_scale=0.7 if factor is None else factor))
        elif isinstance(layer, AOLLayer):
            out.append(replace(layer, rescaling="column"))
        elif isinstance(layer, GradientStepLayer):
            step = 2.05 if factor is None else 2.0 * factor
            out.append(replace(layer, tau=step / _spectral_norm(layer.weight) ** 2))
        elif isinstance(layer, LinearLayer):
            norm = 1.5 if factor is None else factor
            out.append(replace(layer, weight=norm * layer.weight / _spectral_norm(layer.weight)))
        elif isinstance(layer, GershgorinBlock):
            out.append(replace(layer, lam_scale=2.0 if factor is None else factor))
        else:
            raise LipoptError(f"no negative control for layer {type(layer).__name__}")
    return LayerStack(tuple(out), st.name + "-control")


# ---------------------------------------------------------------------------------------------
# Verification helpers
# ---------------------------------------------------------------------------------------------
def jacobian(net: Network, x: np.ndarray) -> np.ndarray:
    """The ``out × in`` Jacobian of the network at one point ``x`` (rows: ``∇N_k(x)``)."""
    x = np.asarray(x, dtype=float).ravel()
    return np.stack([net.gradient(x, e) for e in np.eye(net.output_dim)])


@dataclass(frozen=True)
class Witness:
    """A real point ``x`` with ``‖J(x)‖₂ = value``; ``c`` is the top left singular vector, so the
    scalar target ``cᵀN`` has ``‖∇(cᵀN)(x)‖₂ = value`` (a valid lower bound on its ℓ2 constant)."""

    x: np.ndarray
    value: float
    c: np.ndarray


def jacobian_witness(net: Network, seed: int = 0, n_samples: int = 3000, radius: float = 3.0) -> Witness:
    """The largest Jacobian spectral norm over random points of ``[−radius, radius]^n`` (and
    narrower shells around 0), refined by a few local restarts around the best point."""
    rng = np.random.default_rng(seed)
    n = net.input_dim
    scales = np.geomspace(0.02, 1.0, n_samples)[:, None]
    pts = radius * scales * rng.uniform(-1.0, 1.0, size=(n_samples, n))
    best = Witness(np.zeros(n), -1.0, np.zeros(net.output_dim))

    def consider(points: np.ndarray) -> None:
        nonlocal best
        grads = np.stack([net.gradient(points, e) for e in np.eye(net.output_dim)], axis=1)
        norms = np.linalg.norm(grads, ord=2, axis=(1, 2))
        i = int(np.argmax(norms))
        if norms[i] > best.value:
            u, _, _ = np.linalg.svd(grads[i])
            c = u[:, 0] * (1 if u[np.argmax(np.abs(u[:, 0])), 0] >= 0 else -1)
            best = Witness(points[i].copy(), float(norms[i]), c)

    consider(pts)
    for width in (0.5, 0.1, 0.02):
        consider(best.x + width * radius * rng.uniform(-1.0, 1.0, size=(500, n)))
    return best


def exact_pop_value(net: Network, c: np.ndarray, norm: str = "2", max_vars: int = 22) -> float:
    """``max_s ‖J(s)ᵀ c‖_q`` over all vertices ``s`` of the derivative ranges (global domain).

    This is the exact maximum of the norm-gradient POP (every relaxation's target); it is ≥ the
    true Lipschitz constant of ``cᵀN`` (patterns need not be reachable). Vectorised enumeration
    of the ``2^k`` patterns of the ``k`` free activation neurons via :meth:`Network.backward`.
    """
    norm = parse_norm(norm)
    q = {"inf": 1, "2": 2, "1": np.inf}[norm]
    ranges = derivative_ranges(net, None)
    sizes = [len(lo) for lo, _ in ranges]
    lo = np.concatenate([r[0] for r in ranges]) if ranges else np.zeros(0)
    hi = np.concatenate([r[1] for r in ranges]) if ranges else np.zeros(0)
    free = np.flatnonzero(hi > lo)
    if len(free) > max_vars:
        raise LipoptError(f"vertex enumeration over 2^{len(free)} patterns exceeds 2^{max_vars}")
    c = np.asarray(c, dtype=float).ravel()
    best = 0.0
    total = 1 << len(free)
    chunk = 1 << 14
    for start in range(0, total, chunk):
        idx = np.arange(start, min(total, start + chunk))
        bits = (idx[:, None] >> np.arange(len(free))[None, :]) & 1
        s = np.tile(lo, (len(idx), 1))
        s[:, free] = np.where(bits == 1, hi[free], lo[free])
        slopes = np.split(s, np.cumsum(sizes)[:-1], axis=1)
        g = net.backward(np.tile(c, (len(idx), 1)), slopes)
        best = max(best, float(np.linalg.norm(g, ord=q, axis=1).max()))
    return best


def unit_targets(
    out_dim: int, k: int = 3, seed: int = 0, extra: Sequence[np.ndarray] = ()
) -> list[np.ndarray]:
    """``e_0`` and ``k − 1`` random unit vectors (plus normalised ``extra`` directions)."""
    rng = np.random.default_rng(seed)
    cs = [np.eye(out_dim)[0]]
    for _ in range(max(0, k - 1)):
        v = rng.normal(size=out_dim)
        cs.append(v / np.linalg.norm(v))
    cs.extend(np.asarray(e, dtype=float) / np.linalg.norm(e) for e in extra)
    return cs


@dataclass
class VerificationRow:
    """One (stack, norm, target) verification: claim vs the engine's bounds and exact values.

    ``claim`` is the claimed constant of ``cᵀN`` in this norm (ℓ2: the stack's claim; ℓ∞:
    ``√n`` times it). ``bounds`` maps ``method`` (``method-degree`` for relaxations) to its
    certified value. ``certified`` is the smallest of them apart from ``exact-pop`` (the best the
    products and relaxations give), ``lower`` the engine's lower bound (a real gradient norm;
    max with the witness gradient when one is given), ``exact`` the exact POP maximum (vertex
    enumeration) and ``true`` the exact Lipschitz constant of ``cᵀN`` where lipopt can compute
    it (chains of Dense layers, :func:`lipopt.exact.exact_lipschitz`). ``failed`` lists the
    relaxations whose back end raised (with the message); they are absent from ``bounds``.
    """

    stack: str
    variant: str
    norm: str
    target: str
    claim: float
    naive: float
    certified: float
    certified_method: str
    lower: float
    exact: float | None
    true: float | None
    bounds: dict[str, float]
    time_s: float
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def within_claim(self) -> bool:
        """Certified ≤ claim up to the float-safety slack of the certificates (relative 1e-6)."""
        return self.certified <= self.claim * (1 + 1e-6) + 1e-9

    @property
    def exceeds_claim(self) -> bool:
        """The negative-control criterion: a real gradient norm above the claim."""
        return self.lower > self.claim * (1 + 1e-6)

    @property
    def sound(self) -> bool:
        """Every certified bound ≥ the exact POP value ≥ the true value ≥ the lower bound."""
        refs = [self.lower] + [v for v in (self.exact, self.true) if v is not None]
        ref = max(refs)
        return all(v >= ref * (1 - 1e-9) - 1e-12 for v in self.bounds.values())

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(within_claim=self.within_claim, exceeds_claim=self.exceeds_claim, sound=self.sound)
        return d


DUAL_ORDER = {"2": 2, "inf": 1, "1": np.inf}


def _true_constant(net: Network, c: np.ndarray, norm: str) -> float | None:
    """The exact Lipschitz constant of ``cᵀN`` for small Dense chains (else None)."""
    if not net.is_chain or importlib.util.find_spec("lipopt.exact") is None:
        return None
    from ..exact import exact_lipschitz

    try:
        return float(exact_lipschitz(net, c, norm))
    except LipoptError:
        return None


def verify_stack(
    st: LayerStack,
    norm: str = "2",
    targets: Sequence[np.ndarray] | None = None,
    methods: Sequence[str] = ("naive", "abs-product", "lp", "exact-pop", "lower"),
    levels: dict[str, Sequence[int]] | None = None,
    *,
    variant: str = "constructed",
    seed: int = 0,
    exact: bool = True,
    witness: Witness | None = None,
    options: dict | None = None,
    time_limit: float | None = 60.0,
) -> list[VerificationRow]:
    """Run :func:`lipopt.chain.bound_chain` on ``cᵀN`` for each unit target ``c`` (one chain per
    target, the same rows as ``lipopt bound``).

    ``levels`` maps a method with a hierarchy to its levels (default: ``lp`` at the POP degree,
    the lowest valid Sherali–Adams level; other methods their own defaults). A refused or failing
    step is recorded in ``failed`` (and warned about) and does not hide the other bounds.
    ``exact`` adds the vertex-enumeration value of the POP (:func:`exact_pop_value`) and, for
    Dense chains, the true constant. A ``witness`` (a real point and its top singular direction)
    adds its direction to the targets and its gradient norm to the lower bound of that target.
    """
    import time

    from ..chain import bound_chain
    from ..problems import build_problem

    norm = parse_norm(norm)
    net = st.network()
    cs = (
        [np.asarray(c, dtype=float) for c in targets]
        if targets is not None
        else unit_targets(net.output_dim, 3, seed)
    )
    if witness is not None:
        cs.append(np.asarray(witness.c, dtype=float))
    claim = st.claimed * (np.sqrt(net.input_dim) if norm == "inf" else 1.0)
    rows: list[VerificationRow] = []
    for k, c in enumerate(cs):
        t0 = time.perf_counter()
        target = make_target(net, vector=c)
        chosen = dict(levels or {})
        if "lp" in methods and "lp" not in chosen:
            chosen["lp"] = [max(2, max(p.degree for p in build_problem(net, norm, target).pops))]
        chain = bound_chain(
            net, norm, methods, chosen, target, seed=seed, time_limit=time_limit, options=options,
            raise_if_all_refused=False,
        )
        failed = {b.label: b.note or b.status.value for b in chain.bounds if not b.status.ran}
        for label, why in failed.items():
            warnings.warn(f"{label} failed on {st.name}: {why}", RuntimeWarning, stacklevel=2)
        bounds = {b.label: float(b.value) for b in chain.bounds if b.certified and np.isfinite(b.value)}
        lower = chain.lower_bound.value if chain.lower_bound is not None else 0.0
        is_witness = witness is not None and k == len(cs) - 1
        if is_witness:
            lower = max(lower, float(np.linalg.norm(net.gradient(witness.x, c), ord=DUAL_ORDER[norm])))
        others = {m: v for m, v in bounds.items() if m != "exact-pop"} or bounds
        best = min(others.items(), key=lambda kv: kv[1]) if others else ("none", float("inf"))
        label = "witness c" if is_witness else ("e_0" if k == 0 and targets is None else f"c_{k}")
        rows.append(
            VerificationRow(
                stack=st.name,
                variant=variant,
                norm=norm,
                target=label,
                claim=float(claim),
                naive=bounds.get("naive", float("nan")),
                certified=best[1],
                certified_method=best[0],
                lower=float(lower),
                exact=exact_pop_value(net, c, norm) if exact else None,
                true=_true_constant(net, c, norm) if exact else None,
                bounds=bounds,
                time_s=time.perf_counter() - t0,
                failed=failed,
            )
        )
    return rows
