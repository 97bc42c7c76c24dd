"""Lower the graph IR (:mod:`lipopt.loading.ir`) to the blocks of a :class:`~lipopt.network.Network`.

Consecutive affine ops are composed into one matrix (sparse when both factors are: convolutions,
pooling and padding are unrolled by :mod:`lipopt.conv`); an activation closes the pending affine
map into a :class:`Dense` layer (after another activation it gets an identity map of its own),
and a model that ends in an activation gets a final identity layer.

Branches: a tensor ``x`` used by two chains that meet again in an ``add``. When both chains are
affine the add folds into one affine map. When one chain is affine (the skip, ``x ↦ S x + s``)
and the other holds activations (``F``, then an affine tail ``x ↦ T x + t``) the add is the
residual block ``y = σ(A h + B F(h))`` of :class:`Residual` on the last block's output ``h``:
``A`` is the skip composed with the affine map ``P`` from ``h`` to ``x`` and ``F``'s first layer
absorbs ``P``. Affine ops after the add are folded into ``A`` and ``B``; the next activation
becomes the block's σ. ``Residual`` has no bias, so a nonzero constant ``c`` of the block
(``s``, ``t``, ``P``'s bias through the skip) is carried by one more inner layer
``Dense(B, c, identity)`` (then ``B = I``), or by the next layer when σ is the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..conv import (
    adaptive_avgpool2d_matrix,
    avgpool2d_matrix,
    channel_vector,
    conv2d_bias,
    conv2d_matrix,
    pad2d_matrix,
    same_padding,
)
from ..errors import LipoptError
from ..network import IDENTITY, Activation, Block, Dense, Matrix, Residual
from .ir import Graph, Node

__all__ = ["ChainBuilder", "lower"]


def _csr(m: Any) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=float)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _compose(w: Matrix | None, pw: Matrix | None) -> Matrix | None:
    """``w ∘ pw`` (``w @ pw``, None is the identity): sparse when both factors are, else dense."""
    if w is None or pw is None:
        return pw if w is None else w
    if sp.issparse(w) and sp.issparse(pw):
        return _csr(w @ pw)
    if sp.issparse(pw):  # dense @ sparse, computed as (pwᵀ wᵀ)ᵀ to stay in scipy
        return np.asarray(pw.T @ np.asarray(w).T).T
    return np.asarray(w @ pw)


def _apply(m: Matrix | None, v: np.ndarray) -> np.ndarray:
    return v if m is None else np.asarray(m @ v).reshape(-1)


def _scaled(m: Matrix | None, a: float, n: int, sparse: bool) -> Matrix | None:
    """``a·m`` with None as the n×n identity (kept None when ``a = 1``)."""
    if a == 1.0:
        return m
    if m is None:
        return _csr(a * sp.identity(n)) if sparse else a * np.eye(n)
    return _csr(a * m) if sp.issparse(m) else a * m


@dataclass
class _OpenResidual:
    """``r = skip·h + out·F(h) + shift`` with ``F`` the chain ``inner``; still open for affine ops."""

    inner: list[Dense]
    skip: Matrix | None
    out: Matrix | None
    shift: np.ndarray


class ChainBuilder:
    """Accumulates affine maps, activations and residual joins into network blocks.

    ``shape`` is the shape of one sample of the current value (``(C, H, W)`` for images, ``(n,)``
    for features, None while unknown), starting at ``input_shape``. A ``branch`` builder (one
    chain of a residual block) may start with an activation.
    """

    def __init__(self, source: str, input_shape: Sequence[int] | None = None, branch: bool = False) -> None:
        self.source = source
        self.branch = branch
        self.layers: list[Block] = []
        self.pending: tuple[Matrix, np.ndarray] | None = None
        self.res: _OpenResidual | None = None
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        self.shape: tuple[int, ...] | None = self.input_shape

    def error(self, what: str, problem: str) -> LipoptError:
        return LipoptError(f"{self.source}: {what}: {problem}")

    @property
    def at_input(self) -> bool:
        return self.pending is None and self.res is None and not self.layers

    @property
    def width(self) -> int | None:
        """The current feature dimension, if known."""
        if self.pending is not None:
            return int(self.pending[0].shape[0])
        if self.res is not None:
            return int(self.res.shift.size)
        if self.layers:
            return self.layers[-1].out_dim
        return None if self.shape is None else int(np.prod(self.shape, dtype=np.int64))

    @property
    def sparse_mode(self) -> bool:
        """Whether new structural maps (diagonals, identities) should be sparse."""
        if self.pending is not None:
            return sp.issparse(self.pending[0])
        if self.shape is not None and len(self.shape) > 1:
            return True
        return bool(self.layers) and isinstance(self.layers[-1], Dense) and self.layers[-1].is_sparse

    def identity(self, n: int) -> Matrix:
        return sp.identity(n, format="csr", dtype=float) if self.sparse_mode else np.eye(n)

    # ---- affine ops ------------------------------------------------------------------------
    def affine(
        self, w: Matrix, b: np.ndarray | None, what: str, out_shape: Sequence[int] | None = None
    ) -> None:
        """Append ``x ↦ w x + b``; ``out_shape`` is the new sample shape (default: flat)."""
        w = _csr(w) if sp.issparse(w) else np.asarray(w, dtype=float)
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=float).reshape(-1)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise self.error(
                what, f"weight shape {w.shape} and bias shape {b.shape} do not form an affine map"
            )
        width = self.width
        if width is not None and w.shape[1] != width:
            if self.at_input and self.input_shape is not None:
                raise LipoptError(
                    f"{self.source}: input_shape {self.input_shape} has {width} entries but {what} "
                    f"expects {w.shape[1]} inputs"
                )
            raise LipoptError(
                f"{self.source}: {what} expects {w.shape[1]} inputs but the previous layer has "
                f"{width} outputs (shape mismatch)"
            )
        if self.res is not None:
            r = self.res
            r.skip, r.out, r.shift = _compose(w, r.skip), _compose(w, r.out), _apply(w, r.shift) + b
        elif self.pending is not None:
            pw, pb = self.pending
            self.pending = (_compose(w, pw), _apply(w, pb) + b)
        else:
            self.pending = (w, b)
        self.shape = tuple(int(d) for d in out_shape) if out_shape is not None else (int(w.shape[0]),)

    def diagonal(self, scale: np.ndarray, shift: np.ndarray, what: str) -> None:
        """Elementwise ``x ↦ scale·x + shift`` (scalars broadcast to the current width)."""
        scale = np.asarray(scale, dtype=float).reshape(-1)
        shift = np.asarray(shift, dtype=float).reshape(-1)
        width = self.width
        if width is None:
            sizes = {scale.size, shift.size} - {1}
            if len(sizes) != 1:
                raise self.error(what, "comes before the first linear layer and its width is unknown")
            width = sizes.pop()
        try:
            scale, shift = np.broadcast_to(scale, (width,)), np.broadcast_to(shift, (width,))
        except ValueError:
            raise self.error(
                what,
                f"constant of size {max(scale.size, shift.size)} does not broadcast to width {width} "
                "(shape mismatch)",
            ) from None
        shape = self.shape if self.shape is not None else (width,)
        if self.pending is not None:  # fold into the pending map row by row
            pw, pb = self.pending
            pw = _csr(sp.diags(scale) @ pw) if sp.issparse(pw) else scale[:, None] * pw
            self.pending = (pw, scale * pb + shift)
        else:
            sparse = self.sparse_mode or self.res is not None
            self.affine(_csr(sp.diags(scale)) if sparse else np.diag(scale), shift, what, shape)
        self.shape = shape

    def per_entry(self, c: np.ndarray, what: str) -> np.ndarray:
        """A constant broadcast as torch / ONNX do against ``(1, *shape)``, flattened."""
        c = np.asarray(c, dtype=float)
        shape = self.shape
        if shape is None or len(shape) == 1:
            if c.ndim > 1 and any(d != 1 for d in c.shape[:-1]):
                raise self.error(what, f"constant of shape {c.shape} is not per-feature")
            return c.reshape(-1)
        if c.ndim > len(shape) + 1 or (c.ndim == len(shape) + 1 and c.shape[0] != 1):
            raise self.error(what, f"constant of shape {c.shape} does not broadcast to {shape}")
        try:
            return np.broadcast_to(c, (1, *shape)).reshape(-1)
        except ValueError:
            raise self.error(
                what, f"constant of shape {c.shape} does not broadcast to {shape} (shape mismatch)"
            ) from None

    def channel_affine(self, scale: np.ndarray, shift: np.ndarray, what: str) -> None:
        """Per-channel ``x ↦ scale[c]·x + shift[c]`` (channel axis first; a folded batch norm)."""
        shape, n = self.shape, np.asarray(scale).size
        if shape is not None and shape[0] != n:
            raise self.error(what, f"has {n} channels but the tensor has shape {shape} (shape mismatch)")
        if shape is not None and len(shape) > 1:
            scale, shift = channel_vector(scale, shape), channel_vector(shift, shape)
        self.diagonal(scale, shift, what)

    def image_shape(self, what: str, channels: int | None = None) -> tuple[int, int, int]:
        """The current ``(C, H, W)`` shape, required by convolution and pooling."""
        shape = self.shape
        if shape is None or (len(shape) != 3 and self.at_input):
            got = "" if shape is None else f" (got input_shape {shape})"
            raise self.error(
                what,
                f"a convolutional network needs --input-shape C H W (input_shape=(C, H, W) in Python){got}",
            )
        if len(shape) != 3:
            raise LipoptError(
                f"{self.source}: {what} needs a C×H×W input but gets a tensor of shape {shape}; "
                "unflatten (reshape) it first"
            )
        if channels is not None and shape[0] != channels:
            raise LipoptError(
                f"{self.source}: {what} expects {channels} input channels but the tensor has shape "
                f"{shape} (shape mismatch)"
            )
        return shape  # type: ignore[return-value]

    def image_op(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a :mod:`lipopt.conv` builder, prefixing its errors with the source and node."""
        try:
            return fn(*args)
        except LipoptError as err:
            raise self.error(what, str(err)) from None

    def reshape(self, shape: Sequence[int] | None, what: str) -> None:
        """New sample shape of the flattened data (no-op on the data); None flattens."""
        width = self.width
        if shape is None:
            self.shape = None if width is None else (width,)
            return
        dims = [int(d) for d in shape]
        for i, d in enumerate(dims):
            if d == 0:  # copy the input's dimension (ONNX)
                if self.shape is None or i >= len(self.shape):
                    raise self.error(what, f"cannot resolve reshape target {dims}")
                dims[i] = self.shape[i]
        if dims.count(-1) > 1 or min(dims) < -1:
            raise self.error(what, f"invalid reshape target {dims}")
        if -1 in dims:
            if width is None:
                if len(dims) == 1:
                    self.shape = None
                    return
                raise self.error(what, f"cannot infer -1 in {dims} (unknown input shape)")
            dims[dims.index(-1)] = width // max(int(np.prod([d for d in dims if d != -1])), 1)
        if width is not None and int(np.prod(dims, dtype=np.int64)) != width:
            raise self.error(what, f"cannot reshape {width} features to {tuple(dims)} (shape mismatch)")
        self.shape = tuple(dims)

    # ---- activations, residual blocks --------------------------------------------------------
    def activation(self, act: Activation, what: str) -> None:
        if act.name == "identity":
            return
        if self.res is not None:
            self._close_residual(act)
            return
        if self.pending is None:
            if not self.layers and not self.branch:
                raise self.error(
                    what, "comes before the first linear layer; a network must start with an affine map"
                )
            if self.layers and act.name == "relu" and self.layers[-1].activation.name == "relu":
                return  # relu ∘ relu = relu
            n = self.width
            if n is None:
                raise self.error(what, "comes before any layer of known width")
            self.pending = (self.identity(n), np.zeros(n))
        w, b = self.pending
        self.layers.append(Dense(w, b, act))
        self.pending = None

    def residual(
        self,
        skip: tuple[Matrix, np.ndarray] | None,
        inner: list[Dense],
        tail: tuple[Matrix, np.ndarray] | None,
        scales: tuple[float, float],
        shape: tuple[int, ...] | None,
    ) -> None:
        """Open the block ``a·(S x + s) + b·(T F(x) + t)`` on the current value ``x`` (``skip``
        ``(S, s)``, ``tail`` ``(T, t)``; None is the identity map)."""
        if self.res is not None:
            self._close_residual(IDENTITY)
        pw, pb = self.pending if self.pending is not None else (None, np.zeros(0))
        self.pending = None
        s_w, s_b = skip if skip is not None else (None, None)
        first = inner[0]
        inner = [
            Dense(
                _compose(first.weight, pw),
                first.bias + _apply(first.weight, pb) if pb.size else first.bias,
                first.activation,
            ),
            *inner[1:],
        ]
        n_f = inner[-1].out_dim
        shift = scales[0] * (_apply(s_w, pb) if pb.size else 0.0) + scales[1] * (tail[1] if tail else 0.0)
        shift = shift + (scales[0] * s_b if s_b is not None else 0.0)
        shift = np.broadcast_to(np.asarray(shift, dtype=float), (n_f if tail is None else tail[0].shape[0],))
        sparse = self.sparse_mode
        a_w = _scaled(_compose(s_w, pw), scales[0], self.layers[-1].out_dim if self.layers else n_f, sparse)
        b_w = _scaled(tail[0] if tail else None, scales[1], n_f, sparse)
        self.res = _OpenResidual(inner, a_w, b_w, np.array(shift))
        self.shape = shape

    def _close_residual(self, act: Activation) -> None:
        r, self.res = self.res, None
        assert r is not None
        out = r.out
        if np.any(r.shift != 0):
            if act.name == "identity":  # the constant moves to the next layer
                self.layers.append(Residual(tuple(r.inner), r.skip, out, IDENTITY))
                n = r.shift.size
                self.pending = (self.identity(n), r.shift)
                return
            n_f = r.inner[-1].out_dim
            r.inner.append(Dense(out if out is not None else self.identity(n_f), r.shift, IDENTITY))
            out = None
        self.layers.append(Residual(tuple(r.inner), r.skip, out, act))

    def finish(self) -> list[Block]:
        if self.res is not None:
            self._close_residual(IDENTITY)
        if self.pending is not None:
            w, b = self.pending
            self.layers.append(Dense(w, b, IDENTITY))
            self.pending = None
        elif not self.layers:
            raise LipoptError(f"{self.source}: no linear layer found")
        last = self.layers[-1]
        if not isinstance(last, Dense) or last.activation.name != "identity":
            n = last.out_dim  # the model ends in an activation or a residual block
            self.layers.append(Dense(self.identity(n), np.zeros(n), IDENTITY))
        return self.layers


# ---- one lowering per op -----------------------------------------------------------------------
def _padding(padding: Any, spatial: Sequence[int], kernel: Sequence[int], stride: Any, dilation: Any) -> Any:
    """ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER as explicit pads; other forms pass through."""
    if not isinstance(padding, str) or padding not in ("same_upper", "same_lower"):
        return padding
    s = [int(v) for v in np.broadcast_to(np.asarray(stride if np.size(stride) else kernel), (2,))]
    d = [int(v) for v in np.broadcast_to(np.asarray(dilation), (2,))]
    lower = padding == "same_lower"
    return tuple(same_padding(int(spatial[i]), int(kernel[i]), s[i], d[i], lower) for i in range(2))


def _linear(b: ChainBuilder, node: Node) -> None:
    w, shape = np.asarray(node.params["weight"], dtype=float), b.shape
    if shape is not None and len(shape) > 1 and w.shape[1] != int(np.prod(shape)) and w.shape[1] == shape[-1]:
        raise b.error(
            node.what,
            f"would act on the last axis of a tensor of shape {shape}; only Linear on flattened "
            "features is supported (add nn.Flatten() before it)",
        )
    b.affine(w, node.params.get("bias"), node.what)


def _conv2d(b: ChainBuilder, node: Node) -> None:
    p, what = node.params, node.what
    w = np.asarray(p["weight"], dtype=float)
    if w.ndim != 4:
        raise b.error(what, f"only 2-D convolutions are supported (weight shape {w.shape})")
    shape = b.image_shape(what, int(w.shape[1]) * int(p["groups"]))
    pads = _padding(p["padding"], shape[1:], w.shape[2:], p["stride"], p["dilation"])
    m, out = b.image_op(what, conv2d_matrix, w, shape, p["stride"], pads, p["dilation"], int(p["groups"]))
    b.affine(m, b.image_op(what, conv2d_bias, p.get("bias"), out), what, out)


def _avgpool2d(b: ChainBuilder, node: Node) -> None:
    p, what = node.params, node.what
    shape = b.image_shape(what)
    kernel = [int(v) for v in np.broadcast_to(np.asarray(p["kernel"]), (2,))]
    pads = _padding(p["padding"], shape[1:], kernel, p["stride"], 1)
    m, out = b.image_op(
        what,
        avgpool2d_matrix,
        shape,
        kernel,
        p["stride"],
        pads,
        bool(p["count_include_pad"]),
        bool(p["ceil_mode"]),
        p.get("divisor_override"),
    )
    b.affine(m, None, what, out)


def _adaptive_avgpool2d(b: ChainBuilder, node: Node) -> None:
    m, out = b.image_op(
        node.what, adaptive_avgpool2d_matrix, b.image_shape(node.what), node.params["output_size"]
    )
    b.affine(m, None, node.what, out)


def _pad2d(b: ChainBuilder, node: Node) -> None:
    shape = b.image_shape(node.what)
    m, bias, out = b.image_op(
        node.what, pad2d_matrix, shape, node.params["pads"], float(node.params["value"])
    )
    b.affine(m, bias, node.what, out)


_LOWER: dict[str, Callable[[ChainBuilder, Node], None]] = {
    "linear": _linear,
    "conv2d": _conv2d,
    "avgpool2d": _avgpool2d,
    "adaptive_avgpool2d": _adaptive_avgpool2d,
    "pad2d": _pad2d,
    "scale_shift": lambda b, n: b.diagonal(
        b.per_entry(n.params["scale"], n.what), b.per_entry(n.params["shift"], n.what), n.what
    ),
    "channel_affine": lambda b, n: b.channel_affine(n.params["scale"], n.params["shift"], n.what),
    "reshape": lambda b, n: b.reshape(n.params["shape"], n.what),
    "activation": lambda b, n: b.activation(n.params["activation"], n.what),
}


# ---- the graph walk ----------------------------------------------------------------------------
def _live_users(graph: Graph) -> list[list[int]]:
    """The consumers of every node among the nodes the output depends on (with multiplicity)."""
    live = {graph.output}
    for i in range(graph.output, 0, -1):
        if i in live:
            live.update(graph.nodes[i].inputs)
    users: list[list[int]] = [[] for _ in graph.nodes]
    for i in sorted(live):
        for j in graph.nodes[i].inputs:
            users[j].append(i)
    return users


def _unsupported_branch(graph: Graph, what: str) -> LipoptError:
    return graph.error(
        what,
        "the graph branches in a way lipopt cannot represent; supported: two chains from one tensor "
        "joined by an add, one of them affine (a residual block)",
    )


def _chain_to_join(
    graph: Graph, users: list[list[int]], fork: int, first: int
) -> tuple[list[Node], int, int]:
    """The nodes from ``first`` up to the next ``add``: (chain, id of its last value, id of the add)."""
    chain, prev, i = [], fork, first
    while graph.nodes[i].op != "add":
        if len(users[i]) != 1:
            raise _unsupported_branch(graph, graph.nodes[i].what)
        chain.append(graph.nodes[i])
        prev, i = i, users[i][0]
    return chain, prev, i


def _join(b: ChainBuilder, graph: Graph, users: list[list[int]], fork: int) -> int:
    """Lower the two chains from ``fork`` and the add that joins them; returns the add's id."""
    what = graph.nodes[fork].what
    if len(users[fork]) != 2:
        raise _unsupported_branch(graph, what)
    chains = [_chain_to_join(graph, users, fork, u) for u in users[fork]]
    if chains[0][2] != chains[1][2]:
        raise _unsupported_branch(graph, graph.nodes[chains[0][2]].what)
    add = graph.nodes[chains[0][2]]
    ends = [c[1] for c in chains]
    order = [0, 1] if ends[0] == ends[1] else [add.inputs.index(e) for e in ends]
    scales = [float(add.params["scales"][k]) for k in order]
    subs = []
    for chain, _, _ in chains:
        sub = ChainBuilder(b.source, b.shape, branch=True)
        for node in chain:
            _LOWER[node.op](sub, node)
        subs.append(sub)
    if [s.width for s in subs] != [subs[0].width] * 2:
        raise graph.error(add.what, f"the two branches have {subs[0].width} and {subs[1].width} features")
    linear = [not s.layers for s in subs]
    if all(linear):
        n = b.width or subs[0].width or 0
        maps = [s.pending or (s.identity(n), np.zeros(n)) for s in subs]
        w = scales[0] * maps[0][0] + scales[1] * maps[1][0]
        b.affine(
            _csr(w) if sp.issparse(w) else np.asarray(w),
            scales[0] * maps[0][1] + scales[1] * maps[1][1],
            add.what,
            subs[0].shape,
        )
    elif any(linear):
        k = linear.index(False)
        skip, f_chain = subs[1 - k], subs[k]
        b.residual(skip.pending, f_chain.layers, f_chain.pending, (scales[1 - k], scales[k]), f_chain.shape)
    else:
        raise graph.error(
            add.what,
            "both branches of the add hold activations; a residual block needs one affine (skip) branch",
        )
    return chains[0][2]


def lower(graph: Graph) -> list[Block]:
    """The blocks computing the graph's output from its input (see the module docstring)."""
    users = _live_users(graph)
    b = ChainBuilder(graph.source, graph.input_shape)
    current = 0
    while current != graph.output:
        nxt = users[current]
        if len(nxt) == 1 and len(graph.nodes[nxt[0]].inputs) == 1:
            current = nxt[0]
            _LOWER[graph.nodes[current].op](b, graph.nodes[current])
        else:
            current = _join(b, graph, users, current)
    return b.finish()
