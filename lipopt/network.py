"""Feed-forward network model: affine layers, activations with derivative ranges, interval bounds.

A :class:`Network` is an ordered chain of :class:`Dense` layers. Layer ``l`` computes
``z_l = W_l a_{l-1} + b_l`` and ``a_l = σ_l(z_l)``; the last layer's activation is the identity.
Weights follow the PyTorch orientation (``out × in``) and may be numpy arrays or scipy.sparse
matrices (convolutions are unrolled to sparse matrices by the loaders).

Everything downstream (the norm-gradient polynomial, local bounds) only needs, per hidden
neuron, the range ``[lo, hi]`` of ``σ'(z)`` over the input domain; :meth:`Activation.derivative_range`
provides it from a pre-activation interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError

Matrix = np.ndarray | sp.spmatrix | sp.sparray

ACTIVATIONS = ("identity", "relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Activation:
    """A scalar activation σ with its derivative σ' and the range of σ' over an interval.

    ``alpha`` is the negative slope of ``leaky_relu`` and the scale of ``elu``
    (``elu(z) = α(eᶻ − 1)`` for ``z ≤ 0``; its derivative range assumes ``0 ≤ α ≤ 1``).
    """

    name: str = "relu"
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.name not in ACTIVATIONS:
            raise LipoptError(f"unknown activation {self.name!r}; supported: {', '.join(ACTIVATIONS)}")
        if self.name == "elu" and not 0.0 <= self.alpha <= 1.0:
            raise LipoptError(f"elu needs 0 <= alpha <= 1, got {self.alpha}")
        if self.name == "leaky_relu" and not 0.0 <= self.alpha <= 1.0:
            raise LipoptError(f"leaky_relu needs 0 <= alpha <= 1, got {self.alpha}")

    @property
    def is_piecewise_linear(self) -> bool:
        return self.name in ("identity", "relu", "leaky_relu")

    def __call__(self, z: np.ndarray) -> np.ndarray:
        n, a = self.name, self.alpha
        if n == "identity":
            return z
        if n == "relu":
            return np.maximum(z, 0.0)
        if n == "leaky_relu":
            return np.where(z > 0, z, a * z)
        if n == "elu":
            return np.where(z > 0, z, a * np.expm1(np.minimum(z, 0.0)))
        if n == "tanh":
            return np.tanh(z)
        if n == "sigmoid":
            return _sigmoid(z)
        return np.logaddexp(0.0, z)  # softplus

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """σ'(z); at the kink of (leaky) ReLU the right derivative (1) is used."""
        n, a = self.name, self.alpha
        if n == "identity":
            return np.ones_like(z)
        if n == "relu":
            return (z > 0).astype(float)
        if n == "leaky_relu":
            return np.where(z > 0, 1.0, a)
        if n == "elu":
            return np.where(z > 0, 1.0, a * np.exp(np.minimum(z, 0.0)))
        if n == "tanh":
            return 1.0 - np.tanh(z) ** 2
        if n == "sigmoid":
            s = _sigmoid(z)
            return s * (1.0 - s)
        return _sigmoid(z)  # softplus

    def derivative_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval ``[dlo, dhi] ⊇ {σ'(z) : lo ≤ z ≤ hi}`` (Clarke derivative at kinks).

        (Leaky) ReLU: ``[α, 1]`` if ``lo < 0 < hi``; ``1`` if ``lo ≥ 0``; ``α`` if ``hi ≤ 0``
        (and ``[α, 1]`` for the degenerate interval ``{0}``).
        tanh/sigmoid: σ' is unimodal with its peak at 0. elu/softplus: σ' is non-decreasing.
        Infinite endpoints (global bounds) are allowed.
        """
        lo = np.asarray(lo, dtype=float)
        hi = np.asarray(hi, dtype=float)
        n, a = self.name, self.alpha
        if n == "identity":
            return np.ones_like(lo), np.ones_like(lo)
        if n in ("relu", "leaky_relu"):
            low_slope = 0.0 if n == "relu" else a
            # a degenerate interval {0} keeps the whole Clarke range [α, 1]
            dlo = np.where((lo >= 0) & (hi > 0), 1.0, low_slope)
            dhi = np.where((hi <= 0) & (lo < 0), low_slope, 1.0)
            return dlo, dhi
        if n in ("tanh", "sigmoid"):
            with np.errstate(invalid="ignore"):
                d_lo = np.nan_to_num(self.derivative(lo), nan=0.0)
                d_hi = np.nan_to_num(self.derivative(hi), nan=0.0)
            peak = self.derivative(np.clip(0.0, lo, hi))
            return np.minimum(d_lo, d_hi), peak
        # elu, softplus: non-decreasing derivative
        d_lo = self.derivative(np.where(np.isfinite(lo), lo, -np.inf))
        d_hi = self.derivative(np.where(np.isfinite(hi), hi, np.inf))
        return d_lo, d_hi

    @property
    def slope_bounds(self) -> tuple[float, float]:
        """Global derivative range ``[inf σ', sup σ']``."""
        lo, hi = self.derivative_range(np.array([-np.inf]), np.array([np.inf]))
        return float(lo[0]), float(hi[0])


IDENTITY = Activation("identity")


@dataclass(frozen=True)
class Dense:
    """Affine map ``z = W a + b`` followed by ``activation`` (``W`` is ``out × in``)."""

    weight: Matrix
    bias: np.ndarray
    activation: Activation = field(default=IDENTITY)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.weight)

    def dense_weight(self) -> np.ndarray:
        return self.weight.toarray() if sp.issparse(self.weight) else np.asarray(self.weight)

    def nnz(self) -> int:
        if sp.issparse(self.weight):
            return int(self.weight.count_nonzero())
        return int(np.count_nonzero(self.weight))


@dataclass(frozen=True)
class Network:
    """An ordered chain of dense layers ``x ↦ W_{L+1} σ(… σ(W_1 x + b_1) …) + b_{L+1}``.

    Validated on construction: at least one layer, shapes chain, weights and biases finite,
    and the last layer has the identity activation.
    """

    layers: tuple[Dense, ...]
    name: str = "network"
    x0: np.ndarray | None = None

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise LipoptError("empty network: it has no layers")
        for i, layer in enumerate(layers):
            w = layer.weight
            if w.ndim != 2:
                raise LipoptError(f"layer {i}: weight must be a 2-D matrix, got shape {w.shape}")
            data = w.data if sp.issparse(w) else np.asarray(w)
            if not np.all(np.isfinite(data)):
                raise LipoptError(f"layer {i}: weight contains NaN or inf values")
            b = np.asarray(layer.bias)
            if b.shape != (w.shape[0],):
                raise LipoptError(
                    f"layer {i}: bias has shape {b.shape}, expected ({w.shape[0]},) "
                    f"to match the weight's {w.shape[0]} outputs"
                )
            if not np.all(np.isfinite(b)):
                raise LipoptError(f"layer {i}: bias contains NaN or inf values")
            if i > 0 and layers[i - 1].out_dim != layer.in_dim:
                raise LipoptError(
                    f"layer {i}: expects {layer.in_dim} inputs but layer {i - 1} "
                    f"has {layers[i - 1].out_dim} outputs (shape mismatch)"
                )
        if layers[-1].activation.name != "identity":
            raise LipoptError(
                "the last layer must be affine (identity activation); append a Dense layer "
                "with an identity weight to bound a network that ends in an activation"
            )
        if self.x0 is not None:
            x0 = np.asarray(self.x0, dtype=float).ravel()
            if x0.shape != (self.input_dim,):
                raise LipoptError(f"x0 has {x0.size} entries but the network has {self.input_dim} inputs")
            object.__setattr__(self, "x0", x0)

    # ---- structure -------------------------------------------------------------------------
    @classmethod
    def from_weights(
        cls,
        weights: Sequence[Matrix],
        biases: Sequence[np.ndarray] | None = None,
        activation: Activation | str = "relu",
        name: str = "network",
        x0: np.ndarray | None = None,
    ) -> Network:
        """Chain ``W_1 … W_{L+1}`` with ``activation`` after every layer but the last."""
        act = activation if isinstance(activation, Activation) else Activation(activation)
        if biases is None:
            biases = [np.zeros(w.shape[0]) for w in weights]
        if len(biases) != len(weights):
            raise LipoptError(f"{len(weights)} weight matrices but {len(biases)} bias vectors")
        layers = []
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            w = w.tocsr().astype(float) if sp.issparse(w) else np.asarray(w, dtype=float)
            layers.append(
                Dense(w, np.asarray(b, dtype=float).ravel(), act if i < len(weights) - 1 else IDENTITY)
            )
        return cls(tuple(layers), name=name, x0=x0)

    @property
    def input_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def output_dim(self) -> int:
        return self.layers[-1].out_dim

    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.out_dim for layer in self.layers[:-1]]

    @property
    def depth(self) -> int:
        """Number of hidden (activation) layers L."""
        return len(self.layers) - 1

    @property
    def widths(self) -> list[int]:
        return [self.input_dim] + [layer.out_dim for layer in self.layers]

    def num_parameters(self) -> int:
        return sum(layer.weight.shape[0] * layer.weight.shape[1] + layer.out_dim for layer in self.layers)

    def num_nonzeros(self) -> int:
        return sum(layer.nnz() + int(np.count_nonzero(layer.bias)) for layer in self.layers)

    def architecture(self) -> str:
        return "-".join(str(w) for w in self.widths)

    # ---- evaluation ------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Network output for one input (shape ``(n,)``) or a batch (shape ``(m, n)``)."""
        a = np.atleast_2d(np.asarray(x, dtype=float))
        for layer in self.layers:
            a = layer.activation(np.asarray(layer.weight @ a.T).T + layer.bias)
        return a if np.ndim(x) == 2 else a[0]

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations ``z_1 … z_L`` of the hidden layers for a batch ``x`` (``m × n``)."""
        a = np.atleast_2d(np.asarray(x, dtype=float))
        zs = []
        for layer in self.layers[:-1]:
            z = np.asarray(layer.weight @ a.T).T + layer.bias
            zs.append(z)
            a = layer.activation(z)
        return zs

    def gradient(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``∇ₓ (cᵀ N(x))`` for a batch ``x`` (``m × n``), returned as ``m × n``.

        ``∇f = W_1ᵀ D_1 W_2ᵀ D_2 ⋯ W_Lᵀ D_L W_{L+1}ᵀ c`` with ``D_l = diag(σ'(z_l))``.
        """
        x2 = np.atleast_2d(np.asarray(x, dtype=float))
        zs = self.pre_activations(x2)
        g = np.tile(np.asarray(self.layers[-1].weight.T @ c).ravel(), (x2.shape[0], 1))
        for layer, z in zip(reversed(self.layers[:-1]), reversed(zs), strict=True):
            g = g * layer.activation.derivative(z)
            g = np.asarray(layer.weight.T @ g.T).T
        return g if np.ndim(x) == 2 else g[0]

    # ---- interval bounds -------------------------------------------------------------------
    def interval_bounds(self, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pre-activation intervals ``[l_l, u_l]`` of every hidden layer for ``x ∈ [lo, hi]``.

        Interval arithmetic: with centre ``m`` and radius ``r`` of the previous activation box,
        ``z ∈ W m + b ± |W| r``. Activations are monotone, so the next box is ``[σ(l), σ(u)]``.
        """
        lo = np.asarray(lo, dtype=float).ravel()
        hi = np.asarray(hi, dtype=float).ravel()
        if lo.shape != (self.input_dim,) or hi.shape != (self.input_dim,):
            raise LipoptError(
                f"input box has {lo.size} and {hi.size} entries; the network has {self.input_dim} inputs"
            )
        if np.any(lo > hi):
            raise LipoptError("input box has lower bounds above upper bounds")
        out = []
        for layer in self.layers[:-1]:
            mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
            w_abs = abs(layer.weight)
            zc = np.asarray(layer.weight @ mid).ravel() + layer.bias
            zr = np.asarray(w_abs @ rad).ravel()
            # outward rounding margin so the interval is valid in floating point
            slack = (
                4 * np.finfo(float).eps * (np.asarray(w_abs @ np.abs(mid)).ravel() + np.abs(layer.bias) + zr)
            )
            zl, zu = zc - zr - slack, zc + zr + slack
            out.append((zl, zu))
            lo, hi = layer.activation(zl), layer.activation(zu)
        return out


def hidden_derivative_ranges(
    net: Network, box: tuple[np.ndarray, np.ndarray] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per hidden layer, the interval of ``σ'(z)`` over the domain (global when ``box`` is None)."""
    if box is None:
        return [
            layer.activation.derivative_range(np.full(layer.out_dim, -np.inf), np.full(layer.out_dim, np.inf))
            for layer in net.layers[:-1]
        ]
    bounds = net.interval_bounds(*box)
    return [
        layer.activation.derivative_range(zl, zu)
        for layer, (zl, zu) in zip(net.layers[:-1], bounds, strict=True)
    ]
