"""Lower the graph IR (:mod:`lipopt.loading.ir`) to the blocks of a :class:`~lipopt.network.Network`.

Consecutive affine ops are composed into one matrix (sparse when both factors are: convolutions,
pooling and padding are unrolled by :mod:`lipopt.conv`); an activation closes the pending affine
map into a :class:`Dense` layer (after another activation it gets an identity map of its own),
and a model that ends in an activation gets a final identity layer.

Branches: a value ``x`` read by two chains that meet again in an ``add``. When both chains are
affine the add folds into one affine map. When one chain is affine (the skip ``x ↦ S x + s``)
and the other holds activations (``F``, then an affine tail ``x ↦ T x + t``), the add is the
residual block ``y = σ(A h + B F(h))`` of :class:`Residual` on the last block's output ``h``:
``A`` is the skip composed with the affine map ``P`` from ``h`` to ``x``, and ``F``'s first layer
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


def _csr(m: Any) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=float)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _compose(w: Matrix | None, pw: Matrix | None) -> Matrix | None:
    """``w @ pw`` (None is the identity): sparse when both factors are, else dense."""
    if w is None or pw is None:
        return pw if w is None else w
    if sp.issparse(w) and sp.issparse(pw):
        return _csr(w @ pw)
    if sp.issparse(pw):  # dense @ sparse, computed as (pwᵀ wᵀ)ᵀ to stay in scipy
        return np.asarray(pw.T @ np.asarray(w).T).T
    return np.asarray(w @ pw)


def _apply(m: Matrix | None, v: np.ndarray) -> np.ndarray:
    return v if m is None else np.asarray(m @ v).reshape(-1)


@dataclass
class _OpenResidual:
    """``r = skip·h + out·F(h) + shift`` with ``F`` the chain ``inner``, still open for affine ops."""

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
        self.source, self.branch = source, branch
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
    def sparse(self) -> bool:
        """Whether new structural maps (diagonals, identities) should be sparse."""
        if self.pending is not None:
            return sp.issparse(self.pending[0])
        if self.res is not None or (self.shape is not None and len(self.shape) > 1):
            return True
        return bool(self.layers) and isinstance(self.layers[-1], Dense) and self.layers[-1].is_sparse

    def identity(self, n: int) -> Matrix:
        return sp.identity(n, format="csr", dtype=float) if self.sparse else np.eye(n)

    # ---- affine ops ------------------------------------------------------------------------
    def affine(self, w: Matrix, b: np.ndarray | None, what: str, out_shape: Sequence[int] | None = None
               ) -> None:
        """Append ``x ↦ w x + b``; ``out_shape`` is the new sample shape (default: flat)."""
        w = _csr(w) if sp.issparse(w) else np.asarray(w, dtype=float)
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=float).reshape(-1)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise self.error(what, f"weight shape {w.shape} and bias shape {b.shape} do not form an affine "
                             "map")
        width = self.width
        if width is not None and w.shape[1] != width:
            if self.at_input and self.input_shape is not None:
                raise LipoptError(f"{self.source}: input_shape {self.input_shape} has {width} entries but "
                                  f"{what} expects {w.shape[1]} inputs")
            raise LipoptError(f"{self.source}: {what} expects {w.shape[1]} inputs but the previous layer has "
                              f"{width} outputs (shape mismatch)")
        if self.res is not None:
            r = self.res
            r.skip, r.out, r.shift = _compose(w, r.skip), _compose(w, r.out), _apply(w, r.shift) + b
        elif self.pending is not None:
            self.pending = (_compose(w, self.pending[0]), _apply(w, self.pending[1]) + b)
        else:
            self.pending = (w, b)
        self.shape = tuple(int(d) for d in out_shape) if out_shape is not None else (int(w.shape[0]),)

    def elementwise(self, scale: np.ndarray, shift: np.ndarray, what: str) -> None:
        """``x ↦ scale·x + shift`` entry by entry (size-1 constants broadcast to the width)."""
        scale, shift = np.asarray(scale, float).reshape(-1), np.asarray(shift, float).reshape(-1)
        width = self.width if self.width is not None else max(scale.size, shift.size)
        try:
            scale, shift = np.broadcast_to(scale, (width,)), np.broadcast_to(shift, (width,))
        except ValueError:
            raise self.error(what, f"constant of size {max(scale.size, shift.size)} does not broadcast to "
                             f"width {width} (shape mismatch)") from None
        shape = self.shape or (width,)
        if self.pending is not None:  # scale the pending map's rows
            pw, pb = self.pending
            pw = _csr(sp.diags(scale) @ pw) if sp.issparse(pw) else scale[:, None] * pw
            self.pending = (pw, scale * pb + shift)
        else:
            self.affine(_csr(sp.diags(scale)) if self.sparse else np.diag(scale), shift, what)
        self.shape = shape

    def broadcast(self, c: np.ndarray, what: str, per_channel: bool = False) -> np.ndarray:
        """A constant per channel (first sample axis), or broadcast as torch and ONNX do against
        ``(1, *shape)``, flattened to the current width."""
        c, shape = np.asarray(c, dtype=float), self.shape
        try:
            if per_channel:
                if shape is not None and shape[0] != c.size:
                    raise ValueError
                return channel_vector(c, shape) if shape is not None and len(shape) > 1 else c.reshape(-1)
            if shape is None or len(shape) == 1:
                if c.ndim > 1 and any(d != 1 for d in c.shape[:-1]):
                    raise ValueError
                return c.reshape(-1)
            if c.ndim > len(shape) + 1 or (c.ndim == len(shape) + 1 and c.shape[0] != 1):
                raise ValueError
            return np.broadcast_to(c, (1, *shape)).reshape(-1)
        except ValueError:
            kind = f"{c.size} per-channel values" if per_channel else f"constant of shape {c.shape}"
            raise self.error(what, f"{kind} do(es) not fit a tensor of shape {shape} (shape mismatch)"
                             ) from None

    def image_shape(self, what: str, channels: int | None = None) -> tuple[int, int, int]:
        """The current ``(C, H, W)`` shape, required by convolution and pooling."""
        shape = self.shape
        if shape is None or (len(shape) != 3 and self.at_input):
            got = "" if shape is None else f" (got input_shape {shape})"
            raise self.error(what, "a convolutional network needs --input-shape C H W (input_shape=(C, H, W) "
                             f"in Python){got}")
        if len(shape) != 3:
            raise LipoptError(f"{self.source}: {what} needs a C×H×W input but gets a tensor of shape "
                              f"{shape}; unflatten (reshape) it first")
        if channels is not None and shape[0] != channels:
            raise LipoptError(f"{self.source}: {what} expects {channels} input channels but the tensor has "
                              f"shape {shape} (shape mismatch)")
        return shape  # type: ignore[return-value]

    def image_op(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a :mod:`lipopt.conv` builder, prefixing its errors with the source and node."""
        try:
            return fn(*args)
        except LipoptError as err:
            raise self.error(what, str(err)) from None

    def reshape(self, shape: Sequence[int] | None, what: str) -> None:
        """A new sample shape for the flattened data (no-op on the data); None flattens."""
        width = self.width
        dims = None if shape is None else [int(d) for d in shape]
        if dims is None or (dims == [-1] and width is None):
            self.shape = None if width is None else (width,)
            return
        for i, d in enumerate(dims):
            if d == 0:  # copy the input's dimension (ONNX)
                if self.shape is None or i >= len(self.shape):
                    raise self.error(what, f"cannot resolve reshape target {dims}")
                dims[i] = self.shape[i]
        if dims.count(-1) > 1 or min(dims) < -1 or (-1 in dims and width is None):
            raise self.error(what, f"cannot infer the reshape target {dims}")
        if -1 in dims:
            dims[dims.index(-1)] = width // max(int(np.prod([d for d in dims if d != -1])), 1)
        if width is not None and int(np.prod(dims, dtype=np.int64)) != width:
            raise self.error(what, f"cannot reshape {width} features to {tuple(dims)} (shape mismatch)")
        self.shape = tuple(dims)

    # ---- activations, residual blocks --------------------------------------------------------
    def activation(self, act: Activation, what: str) -> None:
        if act.name == "identity":
            return
        if self.res is not None:
            return self._close_residual(act)
        if self.pending is None:
            if not self.layers and not self.branch:
                raise self.error(what, "comes before the first linear layer; a network must start with an "
                                 "affine map")
            if self.layers and act.name == "relu" and self.layers[-1].activation.name == "relu":
                return  # relu ∘ relu = relu
            if self.width is None:
                raise self.error(what, "comes before any layer of known width")
            self.pending = (self.identity(self.width), np.zeros(self.width))
        self.layers.append(Dense(*self.pending, act))
        self.pending = None

    def residual(self, skip: tuple[Matrix, np.ndarray] | None, inner: list[Dense],
                 tail: tuple[Matrix, np.ndarray] | None, scales: Sequence[float], shape: Any) -> None:
        """Open the block ``a·(S x + s) + b·(T F(x) + t)`` on the current value ``x`` (``skip``
        ``(S, s)`` and ``tail`` ``(T, t)``; None is the identity map)."""
        if self.res is not None:
            self._close_residual(IDENTITY)
        n_x = self.width if self.width is not None else inner[0].in_dim
        pw, pb = self.pending if self.pending is not None else (None, np.zeros(n_x))
        self.pending = None
        s_w, s_b = skip if skip is not None else (None, 0.0)
        t_w, t_b = tail if tail is not None else (None, 0.0)
        first = inner[0]
        first = Dense(_compose(first.weight, pw), first.bias + _apply(first.weight, pb), first.activation)
        inner = [first, *inner[1:]]
        shift = scales[0] * (_apply(s_w, pb) + s_b) + scales[1] * np.asarray(t_b)
        a_w, b_w = _compose(s_w, pw), t_w
        if scales[0] != 1.0:
            a_w = scales[0] * (self.identity(n_x) if a_w is None else a_w)
        if scales[1] != 1.0:
            b_w = scales[1] * (self.identity(inner[-1].out_dim) if b_w is None else b_w)
        n_out = a_w.shape[0] if a_w is not None else n_x
        self.res = _OpenResidual(inner, a_w, b_w, np.broadcast_to(shift, (n_out,)).astype(float))
        self.shape = shape

    def _close_residual(self, act: Activation) -> None:
        r, self.res = self.res, None
        if np.any(r.shift != 0) and act.name == "identity":  # the constant moves to the next layer
            self.layers.append(Residual(tuple(r.inner), r.skip, r.out, IDENTITY))
            self.pending = (self.identity(r.shift.size), r.shift)
            return
        if np.any(r.shift != 0):
            r.inner.append(Dense(r.out if r.out is not None else self.identity(r.inner[-1].out_dim), r.shift))
            r.out = None
        self.layers.append(Residual(tuple(r.inner), r.skip, r.out, act))

    def finish(self) -> list[Block]:
        if self.res is not None:
            self._close_residual(IDENTITY)
        if self.pending is not None:
            self.layers.append(Dense(*self.pending, IDENTITY))
            self.pending = None
        elif not self.layers:
            raise LipoptError(f"{self.source}: no linear layer found")
        last = self.layers[-1]
        if not isinstance(last, Dense) or last.activation.name != "identity":
            self.layers.append(Dense(self.identity(last.out_dim), np.zeros(last.out_dim), IDENTITY))
        return self.layers


# ---- one lowering per op -----------------------------------------------------------------------
def _padding(padding: Any, spatial: Sequence[int], kernel: Sequence[int], stride: Any, dilation: Any) -> Any:
    """ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER as explicit pads; other forms pass through."""
    if not isinstance(padding, str) or padding not in ("same_upper", "same_lower"):
        return padding
    s, d = np.broadcast_to(stride if np.size(stride) else kernel, (2,)), np.broadcast_to(dilation, (2,))
    return tuple(same_padding(int(spatial[i]), int(kernel[i]), int(s[i]), int(d[i]), padding == "same_lower")
                 for i in range(2))


def _linear(b: ChainBuilder, n: Node) -> None:
    w, shape = np.asarray(n.params["weight"], dtype=float), b.shape
    if shape is not None and len(shape) > 1 and w.shape[1] != int(np.prod(shape)) and w.shape[1] == shape[-1]:
        raise b.error(n.what, f"would act on the last axis of a tensor of shape {shape}; only Linear on "
                      "flattened features is supported (add nn.Flatten() before it)")
    b.affine(w, n.params.get("bias"), n.what)


def _conv2d(b: ChainBuilder, n: Node) -> None:
    p, w = n.params, np.asarray(n.params["weight"], dtype=float)
    if w.ndim != 4:
        raise b.error(n.what, f"only 2-D convolutions are supported (weight shape {w.shape})")
    shape = b.image_shape(n.what, int(w.shape[1]) * int(p["groups"]))
    pads = _padding(p["padding"], shape[1:], w.shape[2:], p["stride"], p["dilation"])
    m, out = b.image_op(n.what, conv2d_matrix, w, shape, p["stride"], pads, p["dilation"], int(p["groups"]))
    b.affine(m, b.image_op(n.what, conv2d_bias, p.get("bias"), out), n.what, out)


def _avgpool2d(b: ChainBuilder, n: Node) -> None:
    p, shape = n.params, b.image_shape(n.what)
    kernel = [int(k) for k in np.broadcast_to(p["kernel"], (2,))]
    pads = _padding(p["padding"], shape[1:], kernel, p["stride"], 1)
    m, out = b.image_op(n.what, avgpool2d_matrix, shape, kernel, p["stride"], pads,
                        bool(p["count_include_pad"]), bool(p["ceil_mode"]), p.get("divisor_override"))
    b.affine(m, None, n.what, out)


def _adaptive_avgpool2d(b: ChainBuilder, n: Node) -> None:
    m, out = b.image_op(n.what, adaptive_avgpool2d_matrix, b.image_shape(n.what), n.params["output_size"])
    b.affine(m, None, n.what, out)


def _pad2d(b: ChainBuilder, n: Node) -> None:
    p = n.params
    m, bias, out = b.image_op(n.what, pad2d_matrix, b.image_shape(n.what), p["pads"], float(p["value"]))
    b.affine(m, bias, n.what, out)


def _scale_shift(b: ChainBuilder, n: Node, per_channel: bool = False) -> None:
    scale, shift = (b.broadcast(n.params[k], n.what, per_channel) for k in ("scale", "shift"))
    b.elementwise(scale, shift, n.what)


_LOWER: dict[str, Callable[[ChainBuilder, Node], None]] = {
    "linear": _linear,
    "conv2d": _conv2d,
    "avgpool2d": _avgpool2d,
    "adaptive_avgpool2d": _adaptive_avgpool2d,
    "pad2d": _pad2d,
    "scale_shift": _scale_shift,
    "channel_affine": lambda b, n: _scale_shift(b, n, per_channel=True),
    "reshape": lambda b, n: b.reshape(n.params["shape"], n.what),
    "activation": lambda b, n: b.activation(n.params["activation"], n.what),
}


# ---- the graph walk ----------------------------------------------------------------------------
def _live_users(graph: Graph) -> list[list[int]]:
    """The readers of every node among the nodes the output depends on (with multiplicity)."""
    live = {graph.output}
    for i in range(graph.output, 0, -1):
        if i in live:
            live.update(graph.nodes[i].inputs)
    users: list[list[int]] = [[] for _ in graph.nodes]
    for i in sorted(live):
        for j in graph.nodes[i].inputs:
            users[j].append(i)
    return users


def _branch_error(graph: Graph, what: str) -> LipoptError:
    return graph.error(what, "the graph branches in a way lipopt cannot represent; supported: two chains "
                       "from one tensor joined by an add, one of them affine (a residual block)")


def _chain(graph: Graph, users: list[list[int]], fork: int, first: int) -> tuple[list[Node], int, int]:
    """The nodes from ``first`` up to the next ``add``: (nodes, id of the last value, id of the add)."""
    chain, prev, i = [], fork, first
    while graph.nodes[i].op != "add":
        if len(users[i]) != 1:
            raise _branch_error(graph, graph.nodes[i].what)
        chain.append(graph.nodes[i])
        prev, i = i, users[i][0]
    return chain, prev, i


def _join(b: ChainBuilder, graph: Graph, users: list[list[int]], fork: int) -> int:
    """Lower the two chains read from ``fork`` and the add that joins them; returns the add's id."""
    chains = [_chain(graph, users, fork, u) for u in users[fork]]
    if len(chains) != 2 or chains[0][2] != chains[1][2]:
        raise _branch_error(graph, graph.nodes[chains[-1][2] if chains else fork].what)
    add = graph.nodes[chains[0][2]]
    ends = [c[1] for c in chains]
    order = [0, 1] if ends[0] == ends[1] else [add.inputs.index(e) for e in ends]  # x + x: both empty
    scales = [float(add.params["scales"][k]) for k in order]
    subs = [ChainBuilder(b.source, b.shape, branch=True) for _ in chains]
    for sub, (nodes, _, _) in zip(subs, chains, strict=True):
        for node in nodes:
            _LOWER[node.op](sub, node)
    if subs[0].width != subs[1].width:
        raise graph.error(add.what, f"the two branches have {subs[0].width} and {subs[1].width} features")
    affine = [not s.layers for s in subs]
    if all(affine):  # a·(M₁x + c₁) + b·(M₂x + c₂)
        (m1, c1), (m2, c2) = (s.pending or (s.identity(s.width), np.zeros(s.width)) for s in subs)
        w = scales[0] * m1 + scales[1] * m2
        w = _csr(w) if sp.issparse(w) else np.asarray(w)
        b.affine(w, scales[0] * c1 + scales[1] * c2, add.what, subs[0].shape)
    elif any(affine):
        s, f = affine.index(True), affine.index(False)
        b.residual(subs[s].pending, subs[f].layers, subs[f].pending, (scales[s], scales[f]), subs[f].shape)
    else:
        raise graph.error(add.what, "both branches of the add hold activations; a residual block needs one "
                          "affine (skip) branch")
    return chains[0][2]


def lower(graph: Graph) -> list[Block]:
    """The blocks computing the graph's output from its input (see the module docstring)."""
    users = _live_users(graph)
    b = ChainBuilder(graph.source, graph.input_shape)
    current = 0
    while current != graph.output:
        if len(users[current]) == 1 and len(graph.nodes[users[current][0]].inputs) == 1:
            current = users[current][0]
            _LOWER[graph.nodes[current].op](b, graph.nodes[current])
        else:
            current = _join(b, graph, users, current)
    return b.finish()
