"""Feed-forward network model: blocks sharing one protocol, activation sites, interval bounds.

A :class:`Network` is an ordered chain of blocks: :class:`Dense` layers (``z = W a + b`` then
``σ(z)``) and :class:`Residual` blocks (``σ(A x + B F(x))``). Weights follow the PyTorch
orientation (``out × in``) and may be numpy arrays or scipy.sparse matrices (convolutions are
unrolled to sparse matrices by the loaders); the last block is affine.

Every block implements :class:`Block`: forward (with the pre-activations of its sites), the
transposed linear map through a :class:`PullbackOps` (a VJP with given slopes, absolute values,
or symbolic path terms), interval bounds, matrices, sites, nnz, its contribution to the naive
norm product, a 0/1 pattern copy, its npz arrays and its hash. The network composes them and
never asks which kind of block it holds.

Activations live in :mod:`lipopt.activations` (re-exported here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from .activations import ACTIVATIONS, IDENTITY, Activation, unbounded_if_nan
from .errors import LipoptError
from .floats import EPS

__all__ = [
    "ACTIVATIONS",
    "IDENTITY",
    "Activation",
    "Block",
    "Dense",
    "Network",
    "PullbackOps",
    "Residual",
    "Site",
]

Matrix = np.ndarray | sp.spmatrix | sp.sparray


@dataclass(frozen=True)
class Site:
    """An activation site: ``size`` neurons whose derivative ``σ'(z)`` enters the gradient."""

    activation: Activation
    size: int


class PullbackOps(Protocol):
    """What a transposed pass does with a backward quantity ``g`` (numbers, or path terms)."""

    def pull(self, g: Any, m: Matrix | None) -> Any:
        """``g ← mᵀ g`` (``m`` None: the identity)."""

    def site(self, g: Any) -> Any:
        """``g ← diag(s) g`` for the next activation site, in backward order."""

    def add(self, g: Any, h: Any) -> Any:
        """``g + h`` (two branches meeting)."""


@runtime_checkable
class Block(Protocol):
    """The protocol of a network block ``x ↦ σ(affine-ish(x))`` (see the module doc)."""

    activation: Activation

    @property
    def in_dim(self) -> int: ...
    @property
    def out_dim(self) -> int: ...
    def validate(self, where: str) -> None: ...
    def sites(self) -> list[Site]: ...
    def forward(self, a: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]: ...
    def pullback(self, g: Any, ops: PullbackOps) -> Any: ...
    def interval_bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]: ...
    def affine(self) -> tuple[Matrix, np.ndarray] | None: ...
    def matrices(self) -> list[Matrix]: ...
    def nnz(self) -> int: ...
    def num_parameters(self) -> int: ...
    def naive_norm(self, norm, caps: Sequence[np.ndarray]) -> float: ...
    def pattern(self) -> Block: ...
    def to_arrays(self, index: int) -> dict[str, np.ndarray]: ...
    def update_hash(self, h) -> None: ...
    def label(self) -> str: ...


# ---------------------------------------------------------------------------------------------
# Matrix helpers
# ---------------------------------------------------------------------------------------------
def _matvec(m: Matrix | None, a: np.ndarray) -> np.ndarray:
    """``a @ mᵀ`` for a batch ``a`` (rows); ``None`` is the identity."""
    return a if m is None else np.asarray(m @ a.T).T


def _rmatvec(m: Matrix | None, g: np.ndarray, absolute: bool = False) -> np.ndarray:
    """``g @ m`` (i.e. ``mᵀ g`` per row); with ``absolute`` uses ``|m|``."""
    if m is None:
        return g
    mm = abs(m) if absolute else m
    return np.asarray(mm.T @ g.T).T


def _count_nonzero(m: Matrix | None) -> int:
    if m is None:
        return 0
    return int(m.count_nonzero()) if sp.issparse(m) else int(np.count_nonzero(m))


def _pattern(m: Matrix | None) -> sp.csr_matrix | None:
    """The 0/1 pattern of ``m`` (explicit zeros dropped)."""
    if m is None:
        return None
    p = m.tocsr() if sp.issparse(m) else sp.csr_matrix(np.asarray(m, dtype=float))
    p.eliminate_zeros()
    return sp.csr_matrix((np.ones_like(p.data), p.indices, p.indptr), p.shape)


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


def matrix_arrays(key: str, m: Matrix) -> dict[str, np.ndarray]:
    """npz arrays of a matrix: ``key`` (dense) or ``key_data/_indices/_indptr/_shape`` (CSR)."""
    if sp.issparse(m):
        csr = sp.csr_matrix(m)
        csr.sort_indices()
        return {
            f"{key}_data": np.asarray(csr.data, dtype=float),
            f"{key}_indices": np.asarray(csr.indices, dtype=np.int64),
            f"{key}_indptr": np.asarray(csr.indptr, dtype=np.int64),
            f"{key}_shape": np.asarray(csr.shape, dtype=np.int64),
        }
    return {key: np.asarray(m, dtype=float)}


def matrix_from_arrays(arrays: Mapping[str, np.ndarray], key: str) -> Matrix | None:
    """Inverse of :func:`matrix_arrays` (None when neither form is present)."""
    if key in arrays:
        return np.asarray(arrays[key], dtype=float)
    if f"{key}_data" not in arrays:
        return None
    try:
        shape = tuple(int(d) for d in np.asarray(arrays[f"{key}_shape"]).ravel())
        data = np.asarray(arrays[f"{key}_data"], dtype=float)
        m = sp.csr_matrix((data, arrays[f"{key}_indices"], arrays[f"{key}_indptr"]), shape=shape)
        m.check_format(full_check=True)
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise LipoptError(f"sparse matrix {key} is malformed or incomplete ({err})") from None
    return m


def _hash_matrix(h, m: Matrix | None) -> None:
    """Dense: ``dense`` + shape + little-endian float64 bytes; sparse: canonical CSR arrays."""
    if m is None:
        h.update(b"none")
    elif sp.issparse(m):
        csr = sp.csr_matrix(m, dtype=np.float64, copy=True)
        csr.sum_duplicates()
        csr.sort_indices()
        h.update(b"csr" + np.asarray(csr.shape, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(csr.data, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(csr.indices, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(csr.indptr, dtype="<i8").tobytes())
    else:
        a = np.ascontiguousarray(m, dtype="<f8")
        h.update(b"dense" + np.asarray(a.shape, dtype="<i8").tobytes())
        h.update(a.tobytes())


def _check_finite(m: Matrix, what: str) -> None:
    data = m.data if sp.issparse(m) else np.asarray(m)
    if not np.all(np.isfinite(data)):
        raise LipoptError(f"{what} contains NaN or inf values")


def _scaled(cap: np.ndarray, w: Matrix) -> Matrix:
    """``diag(cap) W``."""
    return sp.diags(cap) @ w if sp.issparse(w) else cap[:, None] * np.asarray(w)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
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

    def validate(self, where: str) -> None:
        w = self.weight
        if w.ndim != 2:
            raise LipoptError(f"{where}: weight must be a 2-D matrix, got shape {w.shape}")
        if 0 in w.shape:
            raise LipoptError(
                f"{where}: weight has shape {w.shape}; a layer with no neurons or no inputs cuts the "
                "output off from the input: give it at least one of each, or remove it"
            )
        _check_finite(w, f"{where}: weight")
        b = np.asarray(self.bias)
        if b.shape != (w.shape[0],):
            raise LipoptError(
                f"{where}: bias has shape {b.shape}, expected ({w.shape[0]},) "
                f"to match the weight's {w.shape[0]} outputs"
            )
        if not np.all(np.isfinite(b)):
            raise LipoptError(f"{where}: bias contains NaN or inf values")

    def sites(self) -> list[Site]:
        return [Site(self.activation, self.out_dim)]

    def forward(self, a: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return _matvec(self.weight, a) + self.bias, []

    def pullback(self, g: Any, ops: PullbackOps) -> Any:
        return ops.pull(g, self.weight)

    def interval_bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        return (*_affine_interval(self.weight, self.bias, lo, hi), [])

    def affine(self) -> tuple[Matrix, np.ndarray]:
        return self.weight, self.bias

    def matrices(self) -> list[Matrix]:
        return [self.weight]

    def nnz(self) -> int:
        return _count_nonzero(self.weight)

    def num_parameters(self) -> int:
        return int(self.weight.shape[0] * self.weight.shape[1] + self.out_dim)

    def naive_norm(self, norm, caps: Sequence[np.ndarray]) -> float:
        """``‖diag(cap) W‖_{p→p}`` (``caps``: the output site's ``max |σ'|``; none: ``‖W‖``)."""
        return norm.operator_norm(_scaled(caps[0], self.weight) if caps else self.weight)

    def pattern(self) -> Dense:
        return Dense(_pattern(self.weight), self.bias, self.activation)

    def to_arrays(self, index: int) -> dict[str, np.ndarray]:
        """``W{index}`` (or its CSR parts) and ``b{index}``; the activation is stored by the caller."""
        return {**matrix_arrays(f"W{index}", self.weight), f"b{index}": np.asarray(self.bias, dtype=float)}

    def update_hash(self, h) -> None:
        _hash_matrix(h, self.weight)
        h.update(np.ascontiguousarray(self.bias, dtype="<f8").tobytes())
        h.update(f"{self.activation.name}:{self.activation.alpha!r};".encode())

    def label(self) -> str:
        return str(self.out_dim)


@dataclass(frozen=True)
class Residual:
    """Residual block ``y = σ(A x + B F(x))`` with ``F`` a chain of :class:`Dense` layers.

    ``skip`` (A) and ``out`` (B) default to the identity; ``activation`` (σ) to the identity, so
    ``Residual(inner)`` is the plain ``y = x + F(x)``. The Jacobian is
    ``J = diag(σ'(y)) (A + B J_F(x))``: the norm-gradient polynomial gets lower-degree terms.
    Sites: one per inner layer, then the block's output.
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

    def validate(self, where: str) -> None:
        if not self.inner:
            raise LipoptError(f"{where}: residual block has an empty inner chain F")
        for j, layer in enumerate(self.inner):
            layer.validate(f"{where}, inner layer {j}")
            if j > 0 and self.inner[j - 1].out_dim != layer.in_dim:
                raise LipoptError(
                    f"{where}, inner layer {j}: expects {layer.in_dim} inputs, "
                    f"gets {self.inner[j - 1].out_dim}"
                )
        n_in, n_f = self.inner[0].in_dim, self.inner[-1].out_dim
        for name, m in (("skip", self.skip), ("out", self.out)):
            if m is not None:
                _check_finite(m, f"{where}: {name} matrix")
        a_shape = self.skip.shape if self.skip is not None else (n_in, n_in)
        b_shape = self.out.shape if self.out is not None else (n_f, n_f)
        if a_shape[1] != n_in or b_shape[1] != n_f or a_shape[0] != b_shape[0]:
            raise LipoptError(
                f"{where}: residual shapes do not chain: A is {a_shape[0]}×{a_shape[1]}, "
                f"B is {b_shape[0]}×{b_shape[1]}, F maps {n_in} → {n_f} (need A: m×{n_in}, B: m×{n_f})"
            )

    def sites(self) -> list[Site]:
        return [s for d in self.inner for s in d.sites()] + [Site(self.activation, self.out_dim)]

    def forward(self, a: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        h, zs = a, []
        for d in self.inner:
            z, _ = d.forward(h)
            zs.append(z)
            h = d.activation(z)
        return _matvec(self.skip, a) + _matvec(self.out, h), zs

    def pullback(self, g: Any, ops: PullbackOps) -> Any:
        """``g ← Aᵀ g + J_F(s)ᵀ Bᵀ g`` with the inner sites taken through ``ops.site``."""
        skip = ops.pull(g, self.skip)
        h = ops.pull(g, self.out)
        for d in reversed(self.inner):
            h = d.pullback(ops.site(h), ops)
        return ops.add(skip, h)

    def interval_bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
        inner: list[tuple[np.ndarray, np.ndarray]] = []
        hl, hh = lo, hi
        for d in self.inner:
            zl, zu, _ = d.interval_bounds(hl, hh)
            inner.append((zl, zu))
            hl, hh = d.activation.value_range(zl, zu)
        al, au = _affine_interval(self.skip, None, lo, hi)
        bl, bu = _affine_interval(self.out, None, hl, hh)
        zl, zu = al + bl, au + bu
        rnd = 4 * EPS * (np.abs(zl) + np.abs(zu))
        return zl - rnd, zu + rnd, inner

    def affine(self) -> None:
        return None

    def matrices(self) -> list[Matrix]:
        return [m for m in (self.skip, self.out) if m is not None] + [d.weight for d in self.inner]

    def nnz(self) -> int:
        return _count_nonzero(self.skip) + _count_nonzero(self.out) + sum(d.nnz() for d in self.inner)

    def num_parameters(self) -> int:
        extra = sum(m.shape[0] * m.shape[1] for m in (self.skip, self.out) if m is not None)
        return int(extra + sum(d.num_parameters() for d in self.inner))

    def naive_norm(self, norm, caps: Sequence[np.ndarray]) -> float:
        """``max cap_out · (‖A‖ + ‖B‖ · Π_j ‖diag(cap_j) W_j‖)`` (caps in site order)."""
        f_norm = 1.0
        for d, cap in zip(self.inner, caps[:-1], strict=True):
            f_norm *= d.naive_norm(norm, [cap])
        a = 1.0 if self.skip is None else norm.operator_norm(self.skip)
        b = 1.0 if self.out is None else norm.operator_norm(self.out)
        return float(np.max(caps[-1])) * (a + b * f_norm) * (1 + 4 * EPS)

    def pattern(self) -> Residual:
        inner = tuple(d.pattern() for d in self.inner)
        return Residual(inner, _pattern(self.skip), _pattern(self.out), self.activation)

    def to_arrays(self, index: int) -> dict[str, np.ndarray]:
        """``R{index}_W{j}``/``R{index}_b{j}`` (inner layers), ``R{index}_skip``, ``R{index}_out``
        (when not the identity) and ``R{index}_activation``/``R{index}_alpha`` (inner
        activations); the block's own activation is stored by the caller."""
        p = f"R{index}_"
        out: dict[str, np.ndarray] = {}
        for j, d in enumerate(self.inner):
            out.update({p + k: v for k, v in d.to_arrays(j).items()})
        for name, m in (("skip", self.skip), ("out", self.out)):
            if m is not None:
                out.update(matrix_arrays(p + name, m))
        out[p + "activation"] = np.array([d.activation.name for d in self.inner])
        out[p + "alpha"] = np.array([float(d.activation.alpha) for d in self.inner])
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], activation: Activation, where: str) -> Residual:
        """Inverse of :meth:`to_arrays` (``arrays`` without the ``R{index}_`` prefix)."""
        names = [str(n) for n in np.asarray(arrays.get("activation", np.array([]))).ravel()]
        alphas = np.asarray(arrays.get("alpha", np.full(len(names), 0.01)), dtype=float).ravel()
        if len(alphas) != len(names):
            raise LipoptError(f"{where}: {len(names)} inner activations but {len(alphas)} alphas")
        inner = []
        for j, (name, alpha) in enumerate(zip(names, alphas, strict=True)):
            w = matrix_from_arrays(arrays, f"W{j}")
            if w is None:
                raise LipoptError(f"{where}: inner layer {j} has no weight W{j}")
            b = np.asarray(arrays.get(f"b{j}", np.zeros(w.shape[0])), dtype=float).ravel()
            inner.append(Dense(w, b, Activation(name, float(alpha))))
        skip, out = matrix_from_arrays(arrays, "skip"), matrix_from_arrays(arrays, "out")
        block = cls(tuple(inner), skip, out, activation)
        block.validate(where)
        return block

    def update_hash(self, h) -> None:
        h.update(b"residual")
        _hash_matrix(h, self.skip)
        _hash_matrix(h, self.out)
        for d in self.inner:
            d.update_hash(h)
        h.update(f"end:{self.activation.name}:{self.activation.alpha!r};".encode())

    def label(self) -> str:
        return f"res({self.out_dim})"


# ---------------------------------------------------------------------------------------------
# Pullback operations
# ---------------------------------------------------------------------------------------------
class _SlopeOps:
    """Numeric VJP: ``g`` is a batch (rows); sites multiply by the given slopes (consumed from
    the last site backwards); ``absolute`` replaces every matrix by ``|m|``."""

    def __init__(self, slopes: Sequence[np.ndarray], absolute: bool) -> None:
        self.slopes, self.k, self.absolute = slopes, len(slopes), absolute

    def pull(self, g: np.ndarray, m: Matrix | None) -> np.ndarray:
        return _rmatvec(m, g, self.absolute)

    def site(self, g: np.ndarray) -> np.ndarray:
        self.k -= 1
        return g * self.slopes[self.k]

    def add(self, g: np.ndarray, h: np.ndarray) -> np.ndarray:
        return g + h


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Network:
    """An ordered chain of blocks ``x ↦ W_{L+1} σ(… σ(W_1 x + b_1) …) + b_{L+1}``.

    Every block but the last contributes its activation *sites* (:meth:`Block.sites`); the
    polynomial has one ``s`` variable per site neuron. Validated on construction: at least one
    layer, shapes chain, weights and biases finite, and the last block is affine with the
    identity activation.
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
            if not isinstance(layer, Block):
                raise LipoptError(f"layer {i}: unknown layer type {type(layer).__name__}")
            layer.validate(f"layer {i}")
            if i > 0 and layers[i - 1].out_dim != layer.in_dim:
                raise LipoptError(
                    f"layer {i}: expects {layer.in_dim} inputs but layer {i - 1} "
                    f"has {layers[i - 1].out_dim} outputs (shape mismatch)"
                )
        last = layers[-1]
        if last.affine() is None or last.activation.name != "identity":
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
        """True when every block is one affine map followed by σ (no residual blocks)."""
        return all(layer.affine() is not None for layer in self.layers)

    @property
    def sites(self) -> list[Site]:
        """Activation sites in forward order (inner layers of a residual block, then its output)."""
        return [s for layer in self.layers[:-1] for s in layer.sites()]

    def per_block(self, per_site: Sequence[Any]) -> Iterator[tuple[Block, list[Any]]]:
        """Each block with its slice of a per-site list (the last block gets ``[]``)."""
        k = 0
        for layer in self.layers[:-1]:
            n = len(layer.sites())
            yield layer, list(per_site[k : k + n])
            k += n
        yield self.layers[-1], []

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
        return [m for layer in self.layers for m in layer.matrices()]

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for layer in self.layers)

    def num_nonzeros(self) -> int:
        return sum(layer.nnz() for layer in self.layers)

    def architecture(self) -> str:
        return "-".join([str(self.input_dim), *(layer.label() for layer in self.layers)])

    def pattern(self) -> Network:
        """The same structure with every matrix replaced by its 0/1 pattern."""
        return Network(tuple(layer.pattern() for layer in self.layers), name=self.name)

    def content_hash(self) -> str:
        """sha256 (hex) of the weights, biases and activations of every block (not the name or
        ``x0``): equal hashes mean the same function."""
        h = hashlib.sha256()
        for layer in self.layers:
            layer.update_hash(h)
        return h.hexdigest()

    # ---- evaluation ------------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Forward pass of a batch; returns the output and the pre-activation of every site."""
        a = np.atleast_2d(np.asarray(x, dtype=float))
        zs: list[np.ndarray] = []
        for layer in self.layers:
            y, inner = layer.forward(a)
            zs.extend(inner)
            if layer is not self.layers[-1]:
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

    def pullback(self, g: Any, ops: PullbackOps) -> Any:
        """``J(s)ᵀ g`` through every block, output to input, sites through ``ops.site``."""
        for layer in reversed(self.layers):
            if layer is not self.layers[-1]:
                g = ops.site(g)
            g = layer.pullback(g, ops)
        return g

    def backward(self, g: np.ndarray, slopes: Sequence[np.ndarray], absolute: bool = False) -> np.ndarray:
        """Vector–Jacobian product through the network with given site slopes ``D``.

        ``g`` (``m × out``) is pulled back as ``g ← Wᵀ (D g)`` layer by layer (residual blocks:
        ``g ← Aᵀ D g + J_Fᵀ Bᵀ D g``). With ``absolute=True`` every matrix is replaced by its
        entrywise absolute value (for entrywise upper bounds on ``|∇f|``).
        """
        return self.pullback(g, _SlopeOps(slopes, absolute))

    def slopes(self, x: np.ndarray, beta: float | None = None) -> list[np.ndarray]:
        """``σ'(z)`` of every site at a batch ``x``; with ``beta`` the smooth surrogates."""
        pairs = zip(self.sites, self.pre_activations(x), strict=True)
        if beta is None:
            return [site.activation.derivative(z) for site, z in pairs]
        return [site.activation.smooth_derivative(z, beta) for site, z in pairs]

    def gradient(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``∇ₓ (cᵀ N(x))`` for a batch ``x`` (``m × n``), returned as ``m × n``.

        ``∇f = W_1ᵀ D_1 W_2ᵀ D_2 ⋯ W_Lᵀ D_L W_{L+1}ᵀ c`` with ``D_l = diag(σ'(z_l))``.
        """
        x2 = np.atleast_2d(np.asarray(x, dtype=float))
        g = np.tile(np.asarray(c, dtype=float).ravel(), (x2.shape[0], 1))
        g = self.backward(g, self.slopes(x2))
        return g if np.ndim(x) == 2 else g[0]

    def jacobian(self, x: np.ndarray, slopes: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """The Jacobians ``J(x)`` (``B × out × in``) of a batch ``x`` (``B × in``), from the site
        slopes at ``x`` (or the given ``slopes``, e.g. smooth surrogates)."""
        x2 = np.atleast_2d(np.asarray(x, dtype=float))
        m, b = self.output_dim, x2.shape[0]
        slopes = self.slopes(x2) if slopes is None else slopes
        rows = [np.repeat(s, m, axis=0) for s in slopes]
        eye = np.tile(np.eye(m), (b, 1))
        return self.backward(eye, rows).reshape(b, m, self.input_dim)

    # ---- interval bounds -------------------------------------------------------------------
    def interval_bounds(self, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pre-activation intervals ``[l, u]`` of every site for ``x ∈ [lo, hi]``.

        Interval arithmetic: with centre ``m`` and radius ``r`` of the previous activation box,
        ``z ∈ W m + b ± |W| r`` (widened outward by a rounding margin); the next box is
        :meth:`~lipopt.activations.Activation.value_range` (no monotonicity assumed).
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
            zl, zu, inner = layer.interval_bounds(lo, hi)
            zl, zu = unbounded_if_nan(zl, zu)
            out.extend(unbounded_if_nan(*b) for b in inner)
            out.append((zl, zu))
            lo, hi = layer.activation.value_range(zl, zu)
        return out
