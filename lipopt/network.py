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
from .floats import EPS, TINY

Matrix = np.ndarray | sp.spmatrix | sp.sparray

ACTIVATIONS = ("identity", "relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1/(1 + e^{−z})`` with a few ulps of *relative* error for every z (no ``1 − x`` cancellation
    in the tails, where ``0.5(1 + tanh(z/2))`` loses all digits and rounds to 0)."""
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def _sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    """``σ(z)(1 − σ(z)) = e^{−|z|}/(1 + e^{−|z|})²`` (relative error a few ulps)."""
    e = np.exp(-np.abs(np.asarray(z, dtype=float)))
    return e / (1.0 + e) ** 2


def _tanh_derivative(z: np.ndarray) -> np.ndarray:
    """``1 − tanh²(z) = 4e^{−2|z|}/(1 + e^{−2|z|})²`` (relative error a few ulps; ``1 − tanh²``
    cancels to 0 for ``|z| ≳ 19``)."""
    e = np.exp(-2.0 * np.abs(np.asarray(z, dtype=float)))
    return 4.0 * e / (1.0 + e) ** 2


#: Relative error bound of the smooth derivative formulas above (exp, one add, a square and a
#: division: < 8 roundings of ≤ eps/2 each, plus exp's ≤ 1 ulp), with a wide safety factor.
_DERIVATIVE_REL_ERROR = 64 * EPS


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
            return _tanh_derivative(z)
        if n == "sigmoid":
            return _sigmoid_derivative(z)
        return _sigmoid(z)  # softplus

    def derivative_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval ``[dlo, dhi] ⊇ {σ'(z) : lo ≤ z ≤ hi}`` (Clarke derivative at kinks).

        (Leaky) ReLU: ``[α, 1]`` if ``lo < 0 < hi``; ``1`` if ``lo ≥ 0``; ``α`` if ``hi ≤ 0``
        (and ``[α, 1]`` for the degenerate interval ``{0}``).
        tanh/sigmoid: σ' is unimodal with its peak at 0. elu/softplus: σ' is non-decreasing.
        Infinite endpoints (global bounds) are allowed. The smooth σ' values are computed with a
        few ulps of relative error and rounded outward (``× (1 ∓ 64·eps)``, and ``+ 64·2⁻¹⁰⁷⁴`` on
        the upper end), so an underflowing tail never reads as a dead neuron (upper end 0).
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
            return _outward(np.minimum(d_lo, d_hi), peak, hi_exact=(lo <= 0) & (hi >= 0))  # σ'(0): 1, 1/4
        # elu, softplus: non-decreasing derivative
        d_lo = self.derivative(np.where(np.isfinite(lo), lo, -np.inf))
        d_hi = self.derivative(np.where(np.isfinite(hi), hi, np.inf))
        if n == "elu":  # the 1 on z > 0 is exact
            return _outward(d_lo, d_hi, lo_exact=d_lo == 1.0, hi_exact=d_hi == 1.0)
        return _outward(d_lo, d_hi)

    @property
    def slope_bounds(self) -> tuple[float, float]:
        """Global derivative range ``[inf σ', sup σ']``."""
        lo, hi = self.derivative_range(np.array([-np.inf]), np.array([np.inf]))
        return float(lo[0]), float(hi[0])


def _outward(
    lo: np.ndarray,
    hi: np.ndarray,
    lo_exact: np.ndarray | bool = False,
    hi_exact: np.ndarray | bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Round a computed derivative range outward (see :meth:`Activation.derivative_range`);
    ends flagged exact are kept."""
    lo_out = np.maximum(lo * (1.0 - _DERIVATIVE_REL_ERROR), 0.0)
    hi_out = hi * (1.0 + _DERIVATIVE_REL_ERROR) + 64 * TINY
    return np.where(lo_exact, lo, lo_out), np.where(hi_exact, hi, hi_out)


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
class Residual:
    """Residual block ``y = σ(A x + B F(x))`` with ``F`` a chain of :class:`Dense` layers.

    ``skip`` (A) and ``out`` (B) default to the identity; ``activation`` (σ) to the identity, so
    ``Residual(inner)`` is the plain ``y = x + F(x)``. The Jacobian is
    ``J = diag(σ'(y)) (A + B J_F(x))``: the norm-gradient polynomial gets lower-degree terms.
    """

    inner: tuple[Dense, ...]
    skip: Matrix | None = None
    out: Matrix | None = None
    activation: Activation = field(default=IDENTITY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner", tuple(self.inner))

    @property
    def in_dim(self) -> int:
        return int(self.skip.shape[1]) if self.skip is not None else self.inner[0].in_dim

    @property
    def out_dim(self) -> int:
        if self.skip is not None:
            return int(self.skip.shape[0])
        if self.out is not None:
            return int(self.out.shape[0])
        return self.inner[-1].out_dim

    def matrices(self) -> list[Matrix]:
        return [m for m in (self.skip, self.out) if m is not None] + [d.weight for d in self.inner]

    def nnz(self) -> int:
        extra = sum(
            int(m.count_nonzero()) if sp.issparse(m) else int(np.count_nonzero(m))
            for m in (self.skip, self.out)
            if m is not None
        )
        return extra + sum(d.nnz() for d in self.inner)


Block = Dense | Residual


def _matvec(m: Matrix | None, a: np.ndarray) -> np.ndarray:
    """``a @ mᵀ`` for a batch ``a`` (rows); ``None`` is the identity."""
    return a if m is None else np.asarray(m @ a.T).T


def _rmatvec(m: Matrix | None, g: np.ndarray, absolute: bool = False) -> np.ndarray:
    """``g @ m`` (i.e. ``mᵀ g`` per row); with ``absolute`` uses ``|m|``."""
    if m is None:
        return g
    mm = abs(m) if absolute else m
    return np.asarray(mm.T @ g.T).T


def _validate_dense(layer: Dense, where: str) -> None:
    w = layer.weight
    if w.ndim != 2:
        raise LipoptError(f"{where}: weight must be a 2-D matrix, got shape {w.shape}")
    if 0 in w.shape:
        raise LipoptError(
            f"{where}: weight has shape {w.shape}; a layer with no neurons or no inputs cuts the "
            "output off from the input: give it at least one of each, or remove it"
        )
    data = w.data if sp.issparse(w) else np.asarray(w)
    if not np.all(np.isfinite(data)):
        raise LipoptError(f"{where}: weight contains NaN or inf values")
    b = np.asarray(layer.bias)
    if b.shape != (w.shape[0],):
        raise LipoptError(
            f"{where}: bias has shape {b.shape}, expected ({w.shape[0]},) "
            f"to match the weight's {w.shape[0]} outputs"
        )
    if not np.all(np.isfinite(b)):
        raise LipoptError(f"{where}: bias contains NaN or inf values")


def _validate_residual(block: Residual, where: str) -> None:
    if not block.inner:
        raise LipoptError(f"{where}: residual block has an empty inner chain F")
    for j, layer in enumerate(block.inner):
        _validate_dense(layer, f"{where}, inner layer {j}")
        if j > 0 and block.inner[j - 1].out_dim != layer.in_dim:
            raise LipoptError(
                f"{where}, inner layer {j}: expects {layer.in_dim} inputs, gets {block.inner[j - 1].out_dim}"
            )
    n_in, n_f = block.inner[0].in_dim, block.inner[-1].out_dim
    for name, m in (("skip", block.skip), ("out", block.out)):
        if m is not None:
            data = m.data if sp.issparse(m) else np.asarray(m)
            if not np.all(np.isfinite(data)):
                raise LipoptError(f"{where}: {name} matrix contains NaN or inf values")
    a_shape = block.skip.shape if block.skip is not None else (n_in, n_in)
    b_shape = block.out.shape if block.out is not None else (n_f, n_f)
    if a_shape[1] != n_in or b_shape[1] != n_f or a_shape[0] != b_shape[0]:
        raise LipoptError(
            f"{where}: residual shapes do not chain: A is {a_shape[0]}×{a_shape[1]}, "
            f"B is {b_shape[0]}×{b_shape[1]}, F maps {n_in} → {n_f} (need A: m×{n_in}, B: m×{n_f})"
        )


@dataclass(frozen=True)
class Site:
    """An activation site: ``size`` neurons whose derivative ``σ'(z)`` enters the gradient."""

    activation: Activation
    size: int


@dataclass(frozen=True)
class Network:
    """An ordered chain of blocks ``x ↦ W_{L+1} σ(… σ(W_1 x + b_1) …) + b_{L+1}``.

    Blocks are :class:`Dense` layers or :class:`Residual` blocks. Every block but the last
    contributes activation *sites* (a Dense layer one, a residual block one per inner layer
    plus its output activation); the polynomial has one ``s`` variable per site neuron.
    Validated on construction: at least one layer, shapes chain, weights and biases finite,
    and the last block is a Dense layer with the identity activation.
    """

    layers: tuple[Block, ...]
    name: str = "network"
    x0: np.ndarray | None = None

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise LipoptError("empty network: it has no layers")
        for i, layer in enumerate(layers):
            if isinstance(layer, Residual):
                _validate_residual(layer, f"layer {i}")
            elif isinstance(layer, Dense):
                _validate_dense(layer, f"layer {i}")
            else:
                raise LipoptError(f"layer {i}: unknown layer type {type(layer).__name__}")
            if i > 0 and layers[i - 1].out_dim != layer.in_dim:
                raise LipoptError(
                    f"layer {i}: expects {layer.in_dim} inputs but layer {i - 1} "
                    f"has {layers[i - 1].out_dim} outputs (shape mismatch)"
                )
        last = layers[-1]
        if not isinstance(last, Dense) or last.activation.name != "identity":
            raise LipoptError(
                "the last layer must be affine (a Dense layer with identity activation); append "
                "a Dense layer with an identity weight to bound a network that ends otherwise"
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
    def is_chain(self) -> bool:
        """True when every block is a Dense layer (no residual blocks)."""
        return all(isinstance(layer, Dense) for layer in self.layers)

    @property
    def sites(self) -> list[Site]:
        """Activation sites in forward order (inner layers of a residual block, then its output)."""
        out: list[Site] = []
        for layer in self.layers[:-1]:
            if isinstance(layer, Residual):
                out.extend(Site(d.activation, d.out_dim) for d in layer.inner)
            out.append(Site(layer.activation, layer.out_dim))
        return out

    @property
    def input_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def output_dim(self) -> int:
        return self.layers[-1].out_dim

    @property
    def hidden_sizes(self) -> list[int]:
        return [site.size for site in self.sites]

    @property
    def depth(self) -> int:
        """Number of activation sites L (the polynomial has degree ≤ L + 1)."""
        return len(self.sites)

    @property
    def widths(self) -> list[int]:
        return [self.input_dim, *self.hidden_sizes, self.output_dim]

    def matrices(self) -> list[Matrix]:
        return [
            m
            for layer in self.layers
            for m in (layer.matrices() if isinstance(layer, Residual) else [layer.weight])
        ]

    def num_parameters(self) -> int:
        weights = sum(m.shape[0] * m.shape[1] for m in self.matrices())
        biases = sum(
            d.out_dim
            for layer in self.layers
            for d in (layer.inner if isinstance(layer, Residual) else [layer])
        )
        return int(weights + biases)

    def num_nonzeros(self) -> int:
        return sum(layer.nnz() for layer in self.layers)

    def architecture(self) -> str:
        parts = [str(self.input_dim)]
        for layer in self.layers:
            parts.append(f"res({layer.out_dim})" if isinstance(layer, Residual) else str(layer.out_dim))
        return "-".join(parts)

    # ---- evaluation ------------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Forward pass of a batch; returns the output and the pre-activation of every site."""
        a = np.atleast_2d(np.asarray(x, dtype=float))
        zs: list[np.ndarray] = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Residual):
                h = a
                for d in layer.inner:
                    z = _matvec(d.weight, h) + d.bias
                    zs.append(z)
                    h = d.activation(z)
                y = _matvec(layer.skip, a) + _matvec(layer.out, h)
            else:
                y = _matvec(layer.weight, a) + layer.bias
            if i < last:
                zs.append(y)
            a = layer.activation(y)
        return a, zs

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Network output for one input (shape ``(n,)``) or a batch (shape ``(m, n)``)."""
        out, _ = self._run(x)
        return out if np.ndim(x) == 2 else out[0]

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations ``z`` of every site (see :attr:`sites`) for a batch ``x`` (``m × n``)."""
        return self._run(x)[1]

    def backward(self, g: np.ndarray, slopes: Sequence[np.ndarray], absolute: bool = False) -> np.ndarray:
        """Vector–Jacobian product through the network with given site slopes ``D``.

        ``g`` (``m × out``) is pulled back as ``g ← Wᵀ (D g)`` layer by layer (residual blocks:
        ``g ← Aᵀ D g + J_Fᵀ Bᵀ D g``). With ``absolute=True`` every matrix is replaced by its
        entrywise absolute value (for entrywise upper bounds on ``|∇f|``).
        """
        k = len(slopes)
        for layer in reversed(self.layers):
            if layer is not self.layers[-1]:
                k -= 1
                g = g * slopes[k]
            if isinstance(layer, Residual):
                g_skip = _rmatvec(layer.skip, g, absolute)
                h = _rmatvec(layer.out, g, absolute)
                for d in reversed(layer.inner):
                    k -= 1
                    h = _rmatvec(d.weight, h * slopes[k], absolute)
                g = g_skip + h
            else:
                g = _rmatvec(layer.weight, g, absolute)
        return g

    def gradient(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``∇ₓ (cᵀ N(x))`` for a batch ``x`` (``m × n``), returned as ``m × n``.

        ``∇f = W_1ᵀ D_1 W_2ᵀ D_2 ⋯ W_Lᵀ D_L W_{L+1}ᵀ c`` with ``D_l = diag(σ'(z_l))``.
        """
        x2 = np.atleast_2d(np.asarray(x, dtype=float))
        zs = self.pre_activations(x2)
        slopes = [site.activation.derivative(z) for site, z in zip(self.sites, zs, strict=True)]
        g = np.tile(np.asarray(c, dtype=float).ravel(), (x2.shape[0], 1))
        g = self.backward(g, slopes)
        return g if np.ndim(x) == 2 else g[0]

    # ---- interval bounds -------------------------------------------------------------------
    def interval_bounds(self, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pre-activation intervals ``[l, u]`` of every site for ``x ∈ [lo, hi]``.

        Interval arithmetic: with centre ``m`` and radius ``r`` of the previous activation box,
        ``z ∈ W m + b ± |W| r`` (widened outward by a rounding margin). Activations are
        monotone, so the next box is ``[σ(l), σ(u)]``.
        """
        lo = np.asarray(lo, dtype=float).ravel()
        hi = np.asarray(hi, dtype=float).ravel()
        if lo.shape != (self.input_dim,) or hi.shape != (self.input_dim,):
            raise LipoptError(
                f"input box has {lo.size} and {hi.size} entries; the network has {self.input_dim} inputs"
            )
        if np.any(lo > hi):
            raise LipoptError("input box has lower bounds above upper bounds")
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for layer in self.layers[:-1]:
            if isinstance(layer, Residual):
                hl, hh = lo, hi
                for d in layer.inner:
                    zl, zu = _affine_interval(d.weight, d.bias, hl, hh)
                    out.append((zl, zu))
                    hl, hh = d.activation(zl), d.activation(zu)
                al, au = _affine_interval(layer.skip, None, lo, hi)
                bl, bu = _affine_interval(layer.out, None, hl, hh)
                zl, zu = al + bl, au + bu
                rnd = 4 * EPS * (np.abs(zl) + np.abs(zu))
                zl, zu = zl - rnd, zu + rnd
            else:
                zl, zu = _affine_interval(layer.weight, layer.bias, lo, hi)
            out.append((zl, zu))
            lo, hi = layer.activation(zl), layer.activation(zu)
        return out




def _affine_interval(
    w: Matrix | None, b: np.ndarray | None, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``{W x + b : lo ≤ x ≤ hi}`` enclosed by centre/radius arithmetic, rounded outward."""
    if w is None:
        return lo.copy(), hi.copy()
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    w_abs = abs(w)
    bias = np.zeros(w.shape[0]) if b is None else b
    zc = np.asarray(w @ mid).ravel() + bias
    zr = np.asarray(w_abs @ rad).ravel()
    n = w.shape[1]
    slack = (n + 4) * EPS * (np.asarray(w_abs @ np.abs(mid)).ravel() + np.abs(bias) + zr)
    return zc - zr - slack, zc + zr + slack
