"""Trainable PyTorch versions of the Lipschitz-by-construction layers of :mod:`.lipschitz`.

Optional: this module imports ``torch`` (``lipopt.models.lipschitz`` itself never does). Each
module keeps *raw* parameters and recomputes the constrained ones in every forward pass with the
same closed-form maps as the numpy constructors, so any gradient step keeps the Lipschitz claim.
With the same ``seed`` a module starts from exactly the raw parameters of its numpy twin, and
:meth:`to_numpy` exports the current parameters as a :mod:`.lipschitz` layer, from which
:func:`~lipopt.models.lipschitz.stack` builds a lipopt :class:`~lipopt.network.Network` the
engine can bound. Parameters are float64 by default (call ``.float()`` for float32).

* :class:`SLL` — ``x − 2 W T⁻¹ relu(Wᵀx + b)``, ``t_i = Σ_j |(WᵀW)_ij| q_j/q_i`` (``q = e^{log_q}``).
* :class:`AOLLinear` — ``act(P D x + b)``, ``D_ii = (Σ_j |(PᵀP)_ij|)^{−1/2}``.
* :class:`GradientStep` — ``x − τ Wᵀ relu(Wx + b)``, ``τ = step/‖W‖₂²``; ``step = 2`` is CPL, a
  learnable ``step = 2·sigmoid(θ)`` keeps ``τ ∈ (0, 2/‖W‖₂²)``.
* :class:`SpectralLinear` — ``A x + b`` with ``A = M/‖M‖₂``.
* :class:`GershgorinResidual` — ``hQx − (1/h) Q V Λ relu(Wx + b)`` with ``F = κ(Wᵀ − V₀)``,
  ``V = Wᵀ − F``, ``λ_j = 2q_j/(Σ_i|F_ij| + h⁻²Σ_l|(VᵀV)_jl|q_l)`` (``docs/gershgorin_resnet.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("lipopt.models.lipschitz_torch needs PyTorch (pip install torch)") from exc

from ..floats import EPS
from ..network import Activation, Network
from . import lipschitz as lz

__all__ = ["AOLLinear", "GershgorinResidual", "GradientStep", "SLL", "SpectralLinear", "to_network"]

DTYPE = torch.float64


def _param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.asarray(a, dtype=float), dtype=DTYPE).clone())


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _spectral_norm(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(w, ord=2)


class SLL(nn.Module):
    """SDP-based Lipschitz Layer (Araujo et al. 2023), 1-Lipschitz in ℓ2 for any raw parameters."""

    def __init__(self, n: int, m: int | None = None, seed: int = 0, **kw) -> None:
        super().__init__()
        ref = lz.sll_layer(n, m, seed, **kw)
        self.weight = _param(ref.weight)  # n × m
        self.bias = _param(ref.bias)
        self.log_q = _param(np.log(ref.q))

    def t(self) -> torch.Tensor:
        q = self.log_q.exp()
        return (torch.abs(self.weight.T @ self.weight) @ q) / q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 2.0 * (torch.relu(x @ self.weight + self.bias) / self.t()) @ self.weight.T

    def to_numpy(self) -> lz.SLLLayer:
        return lz.SLLLayer(_np(self.weight), _np(self.bias), _np(self.log_q.exp()))


class AOLLinear(nn.Module):
    """Almost-Orthogonal Layer (Prach & Lampert 2022): ``act(P D x + b)`` with ``‖PD‖₂ ≤ 1``."""

    def __init__(self, n_in: int, n_out: int, seed: int = 0, activation: str = "relu", **kw) -> None:
        super().__init__()
        ref = lz.aol_layer(n_in, n_out, seed, activation=activation, **kw)
        self.param = _param(ref.param)
        self.bias = _param(ref.bias)
        self.activation = ref.activation

    def d(self) -> torch.Tensor:
        return torch.abs(self.param.T @ self.param).sum(dim=1).clamp_min(1e-300).rsqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ (self.param * self.d()).T + self.bias
        return torch.relu(z) if self.activation.name == "relu" else z

    def to_numpy(self) -> lz.AOLLayer:
        return lz.AOLLayer(_np(self.param), _np(self.bias), Activation(self.activation.name))


class GradientStep(nn.Module):
    """``x − τ Wᵀ relu(Wx + b)`` with ``τ = step/‖W‖₂²``: CPL for ``step = 2``; ``step=None`` makes
    the step learnable as ``2·sigmoid(θ)`` (Murari et al. 2025 allow ``τ ∈ [0, 2/‖W‖₂²]``)."""

    def __init__(self, n: int, m: int | None = None, seed: int = 0, step: float | None = 2.0, **kw) -> None:
        super().__init__()
        ref = lz.gradient_step_layer(n, m, seed, step=1.0 if step is None else step, **kw)
        self.weight = _param(ref.weight)  # m × n
        self.bias = _param(ref.bias)
        self.fixed_step = step
        self.theta = nn.Parameter(torch.zeros((), dtype=DTYPE)) if step is None else None

    def step(self) -> torch.Tensor:
        if self.theta is not None:
            return 2.0 * torch.sigmoid(self.theta)
        return torch.tensor(float(self.fixed_step), dtype=DTYPE)

    def tau(self) -> torch.Tensor:
        return self.step() / _spectral_norm(self.weight) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.tau() * torch.relu(x @ self.weight.T + self.bias) @ self.weight

    def to_numpy(self) -> lz.GradientStepLayer:
        kind = "cpl" if self.theta is None and self.fixed_step == 2.0 else "gradient-step"
        return lz.GradientStepLayer(_np(self.weight), _np(self.bias), float(self.tau().detach()), kind)


class SpectralLinear(nn.Module):
    """``A x + b`` with ``A = M/‖M‖₂`` (spectral normalisation by an exact SVD norm)."""

    def __init__(self, n_in: int, n_out: int | None = None, seed: int = 0, bias_scale: float = 0.0) -> None:
        super().__init__()
        ref = lz.spectral_linear(n_in, n_out, seed, bias_scale=bias_scale)
        self.raw = _param(ref.weight)
        self.bias = _param(ref.bias)

    def weight(self) -> torch.Tensor:
        return self.raw / _spectral_norm(self.raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight().T + self.bias

    def to_numpy(self) -> lz.LinearLayer:
        return lz.LinearLayer(_np(self.weight()), _np(self.bias))


class GershgorinResidual(nn.Module):
    """L-Lipschitz residual block from the Gershgorin conditions (G1)/(G2) (see
    ``docs/gershgorin_resnet.md``); the skip is ``hI`` (``h = min(1, L)``)."""

    def __init__(
        self,
        n: int,
        m: int | None = None,
        lipschitz: float = 1.0,
        seed: int = 0,
        skip_scale: float | None = None,
        **kw,
    ) -> None:
        super().__init__()
        ref = lz.gershgorin_block(n, m, lipschitz, seed, skip_scale=skip_scale, **kw)
        if ref.rotation is not None:
            raise ValueError("GershgorinResidual supports the identity rotation Q = I only")
        self.weight = _param(ref.weight)  # W, m × n
        self.bias = _param(ref.bias)
        # raw read-out V₀ = Wᵀ − F₀; with κ < 1 the constructor's F is a rescaled F₀, and the
        # scale is recomputed below, so starting from the constructed V is equivalent.
        self.v_raw = _param(ref.v)
        self.lipschitz = float(lipschitz)
        self.h = float(ref.skip_scale)
        self.register_buffer("q", torch.as_tensor(ref._q, dtype=DTYPE).clone())

    def parameters_constrained(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V, λ)`` satisfying (G1) and (G2)."""
        f0 = self.weight.T - self.v_raw
        rho = (torch.abs(f0) @ self.q).max()
        budget = self.lipschitz**2 - self.h**2
        kappa = torch.clamp(budget / rho.clamp_min(1e-300), max=1.0) * (1 - 4 * EPS)
        f = kappa * f0
        v = self.weight.T - f
        denom = torch.abs(f).sum(dim=0) + torch.abs(v.T @ v) @ self.q / self.h**2
        lam = 2.0 * self.q / denom.clamp_min(1e-300) * (1 - 8 * EPS)
        return v, lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, lam = self.parameters_constrained()
        g = -(v * lam) / self.h
        return self.h * x + torch.relu(x @ self.weight.T + self.bias) @ g.T

    def to_numpy(self) -> lz.GershgorinBlock:
        v, lam = self.parameters_constrained()
        q = _np(self.q)
        return lz.GershgorinBlock(
            _np(self.weight), _np(self.bias), _np(v), _np(lam), self.lipschitz, self.h, None,
            None if np.all(q == 1) else q,
        )  # fmt: skip


def to_network(modules: Sequence[nn.Module], name: str = "torch-stack") -> Network:
    """Export a sequence of the modules above as a lipopt network (via their numpy twins)."""
    return lz.stack([m.to_numpy() for m in modules], name).network()
