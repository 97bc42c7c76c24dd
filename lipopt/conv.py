"""Convolution and pooling layers unrolled to sparse matrices on flattened tensors.

A single sample (no batch axis) of shape ``C × H × W`` is flattened in PyTorch's row-major
order, so entry ``(c, h, w)`` is coordinate

    flat(c, h, w) = (c·H + h)·W + w.

Every linear image operation below becomes a scipy.sparse CSR matrix ``M`` with
``flatten(op(x)) = M · flatten(x)`` (plus a bias vector for affine ones), so a convolutional
network is an ordinary chain of (sparse) :class:`~lipopt.network.Dense` layers and everything
downstream — forward passes, interval bounds, the norm-gradient polynomial, the sparsity graph
— works unchanged. ``Flatten`` is the identity on this representation.

Index arithmetic (cross-correlation, as in PyTorch). For a kernel ``K`` of shape
``(C_out, C_in/g, k_h, k_w)``, stride ``s``, dilation ``d``, padding ``p_top, p_left`` and ``g``
groups, output ``(o, i, j)`` reads input

    y[o, i, j] = b[o] + Σ_{c', a, b'} K[o, c', a, b'] · x[γ(o)·C_in/g + c',  i·s_h − p_top + a·d_h,
                                                         j·s_w − p_left + b'·d_w]

with ``γ(o) = ⌊o / (C_out/g)⌋`` the group of output channel ``o``; taps that land in the zero
padding are dropped. The matrix is assembled with one vectorized step per kernel tap
``(a, b')``: the valid output rows ``i`` (resp. columns ``j``) of that tap are the 1-D sets with
``0 ≤ i·s_h − p_top + a·d_h < H``, their outer product gives the spatial (row, column) pairs, and
broadcasting against all ``(o, c')`` channel pairs gives the non-zeros
``M[flat(o, i, j), flat(c, h, w)] = K[o, c', a, b']`` — no Python loop over pixels or channels.
The output size per axis is ``⌊(H + p_top + p_bottom − d_h(k_h − 1) − 1) / s_h⌋ + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError

__all__ = [
    "MAXPOOL_UNSUPPORTED",
    "adaptive_avgpool2d_matrix",
    "avgpool2d_matrix",
    "channel_vector",
    "conv2d_bias",
    "conv2d_matrix",
    "flat_index",
    "maxpool2d_matrix",
    "pad2d_matrix",
    "resolve_padding",
    "same_padding",
]

MAXPOOL_UNSUPPORTED = (
    "MaxPool2d is not supported: its derivative is not a per-neuron diagonal; replace it by "
    "AvgPool2d or a strided convolution"
)

Shape3 = tuple[int, int, int]
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
IntPair = int | Sequence[int]
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]


# ---- small helpers -----------------------------------------------------------------------------
def _pair(value: IntPair, name: str, minimum: int = 1) -> tuple[int, int]:
    """``k`` → ``(k, k)``; a 1- or 2-sequence → a pair; entries must be ``≥ minimum``."""
    if isinstance(value, (int, np.integer)):
        out = (int(value), int(value))
    else:
        seq = tuple(int(v) for v in value)
        if len(seq) == 1:
            out = (seq[0], seq[0])
        elif len(seq) == 2:
            out = (seq[0], seq[1])
        else:
            raise LipoptError(f"{name} must be an int or a pair of ints, got {tuple(value)}")
    if min(out) < minimum:
        raise LipoptError(f"{name} must be >= {minimum}, got {out}")
    return out


def _check_shape(input_shape: Sequence[int], what: str) -> Shape3:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise LipoptError(f"{what} needs a positive input shape (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def flat_index(c: np.ndarray, h: np.ndarray, w: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Row-major position ``(c·H + h)·W + w`` of entry ``(c, h, w)`` in a ``C × H × W`` tensor."""
    _, H, W = shape
    return (np.asarray(c, dtype=np.int64) * H + h) * W + w


def channel_vector(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Expand one value per channel to the flattened tensor (channel axis first).

    For ``shape = (C, *rest)`` entry ``c`` is repeated ``∏ rest`` times, matching the row-major
    layout; for a flat ``shape = (C,)`` the values are returned as they are.
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    shape = tuple(int(d) for d in shape)
    if v.size != shape[0]:
        raise LipoptError(f"{v.size} per-channel values for a tensor with {shape[0]} channels {shape}")
    return np.repeat(v, int(np.prod(shape[1:], dtype=np.int64)))


def same_padding(
    size: int, kernel: int, stride: int = 1, dilation: int = 1, lower: bool = False
) -> tuple[int, int]:
    """``(before, after)`` zero padding that gives ``⌈size / stride⌉`` outputs.

    The total is ``max((⌈n/s⌉ − 1)·s + d(k − 1) + 1 − n, 0)``; an odd total puts the extra row
    after (PyTorch ``padding="same"``, ONNX ``SAME_UPPER``) or before (``lower``, ONNX
    ``SAME_LOWER``).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def resolve_padding(
    padding: Padding,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    spatial: tuple[int, int],
) -> Pads:
    """Explicit ``((top, bottom), (left, right))`` padding from the forms PyTorch accepts.

    ``p`` (all sides), ``(p_h, p_w)`` (symmetric per axis), ``"valid"`` (none), ``"same"``
    (stride 1 only, as in PyTorch), or already explicit ``((top, bottom), (left, right))``
    (asymmetric, e.g. from ONNX ``pads``).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode == "same":
            if stride != (1, 1):
                raise LipoptError("padding='same' is not supported for strided convolutions (as in PyTorch)")
            return (
                same_padding(spatial[0], kernel[0], 1, dilation[0]),
                same_padding(spatial[1], kernel[1], 1, dilation[1]),
            )
        raise LipoptError(f"unknown padding mode {padding!r}; use an int, a pair, 'same' or 'valid'")
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        pads: Pads = ((p, p), (p, p))
    else:
        items = list(padding)
        if len(items) == 2 and all(isinstance(v, (int, np.integer)) for v in items):
            pads = ((int(items[0]), int(items[0])), (int(items[1]), int(items[1])))
        elif len(items) == 2 and all(not isinstance(v, (int, np.integer)) and len(v) == 2 for v in items):
            pads = ((int(items[0][0]), int(items[0][1])), (int(items[1][0]), int(items[1][1])))
        elif len(items) == 1 and isinstance(items[0], (int, np.integer)):
            pads = ((int(items[0]),) * 2, (int(items[0]),) * 2)
        else:
            raise LipoptError(
                "padding must be an int, a pair, ((top, bottom), (left, right)), 'same' or 'valid'; "
                f"got {padding}"
            )
    if min(min(pads[0]), min(pads[1])) < 0:
        raise LipoptError(f"padding must be non-negative, got {pads}")
    return pads


def _coo_to_csr(
    rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray], shape: tuple[int, int]
) -> sp.csr_matrix:
    if rows:
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r = c = np.zeros(0, dtype=np.int64)
        v = np.zeros(0)
    m = sp.coo_matrix((v, (r, c)), shape=shape).tocsr()
    m.eliminate_zeros()
    m.sort_indices()
    return m


# ---- convolution ------------------------------------------------------------------------------
def conv2d_matrix(
    weight: np.ndarray,
    input_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[sp.csr_matrix, Shape3]:
    """Unroll ``torch.nn.functional.conv2d`` (without bias) to a sparse matrix.

    Args:
        weight: ``(C_out, C_in/groups, k_h, k_w)``, as ``Conv2d.weight``.
        input_shape: ``(C_in, H, W)`` of one sample.
        stride, dilation: an int or a pair.
        padding: an int, a pair, ``"same"``/``"valid"``, or ``((top, bottom), (left, right))``.
        groups: channel groups (``C_in`` and ``C_out`` must be divisible by it).

    Returns:
        ``(M, (C_out, H_out, W_out))`` with ``M`` of shape ``(C_out·H_out·W_out) × (C_in·H·W)``
        in CSR form, so that ``flatten(conv2d(x)) = M · flatten(x)`` (module docstring).
    """
    w = np.asarray(weight, dtype=float)
    if w.ndim != 4:
        raise LipoptError(f"conv2d weight must have shape (C_out, C_in/groups, kh, kw), got {w.shape}")
    C, H, W = _check_shape(input_shape, "conv2d")
    cout, cin_g, kh, kw = w.shape
    groups = int(groups)
    if groups < 1 or C % groups or cout % groups:
        raise LipoptError(f"conv2d: groups={groups} must divide both {C} input and {cout} output channels")
    if cin_g != C // groups:
        raise LipoptError(
            f"conv2d: the weight expects {cin_g * groups} input channels ({cin_g} per group × {groups} "
            f"groups) but the input has {C} (shape mismatch)"
        )
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    (pt, pb), (pl, pr) = resolve_padding(padding, (kh, kw), (sh, sw), (dh, dw), (H, W))
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise LipoptError(
            f"conv2d: the {kh}×{kw} kernel (dilation {dh}×{dw}) does not fit the padded "
            f"{H + pt + pb}×{W + pl + pr} input"
        )
    # channel pairs (o, c'): output channel o reads input channel γ(o)·C_in/g + c'
    co = np.arange(cout, dtype=np.int64)
    ci = (co // (cout // groups))[:, None] * cin_g + np.arange(cin_g, dtype=np.int64)[None, :]
    row_ch = np.broadcast_to(co[:, None] * (Ho * Wo), (cout, cin_g))[..., None]
    col_ch = (ci * (H * W))[..., None]
    oh, ow = np.arange(Ho, dtype=np.int64), np.arange(Wo, dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for a in range(kh):
        ih = oh * sh - pt + a * dh
        okh = (ih >= 0) & (ih < H)
        for b in range(kw):
            iw = ow * sw - pl + b * dw
            okw = (iw >= 0) & (iw < W)
            r_sp = (oh[okh][:, None] * Wo + ow[okw][None, :]).ravel()
            c_sp = (ih[okh][:, None] * W + iw[okw][None, :]).ravel()
            if not r_sp.size:
                continue
            rows.append((row_ch + r_sp).ravel())
            cols.append((col_ch + c_sp).ravel())
            vals.append(np.repeat(w[:, :, a, b].ravel(), r_sp.size))
    m = _coo_to_csr(rows, cols, vals, (cout * Ho * Wo, C * H * W))
    return m, (cout, Ho, Wo)


def conv2d_bias(bias: np.ndarray | None, output_shape: Sequence[int]) -> np.ndarray:
    """Bias of the unrolled convolution: ``b[o]`` repeated over the ``H_out·W_out`` pixels."""
    cout = int(output_shape[0])
    if bias is None:
        return np.zeros(int(np.prod(output_shape, dtype=np.int64)))
    b = np.asarray(bias, dtype=float).reshape(-1)
    if b.size != cout:
        raise LipoptError(f"conv2d bias has {b.size} entries for {cout} output channels")
    return channel_vector(b, output_shape)


# ---- pooling ----------------------------------------------------------------------------------
def _pool_out(n: int, k: int, s: int, lo: int, hi: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``: in ceil mode the last window must start inside the
    input or its leading padding."""
    out = (n + lo + hi - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _spatial_window_matrix(
    starts_h: np.ndarray,
    starts_w: np.ndarray,
    taps: tuple[int, int],
    ends_h: np.ndarray,
    ends_w: np.ndarray,
    weight: np.ndarray,
    in_hw: tuple[int, int],
) -> sp.csr_matrix:
    """``S[(i, j), (h, w)] = weight[i, j]`` for ``starts ≤ (h, w) < ends`` inside the image.

    One vectorized step per window tap ``(a, b)``: rows with ``h = start_h[i] + a`` in range.
    """
    H, W = in_hw
    Ho, Wo = len(starts_h), len(starts_w)
    oh, ow = np.arange(Ho, dtype=np.int64), np.arange(Wo, dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for a in range(taps[0]):
        ih = starts_h + a
        okh = (ih >= 0) & (ih < H) & (ih < ends_h)
        for b in range(taps[1]):
            iw = starts_w + b
            okw = (iw >= 0) & (iw < W) & (iw < ends_w)
            if not (okh.any() and okw.any()):
                continue
            rows.append((oh[okh][:, None] * Wo + ow[okw][None, :]).ravel())
            cols.append((ih[okh][:, None] * W + iw[okw][None, :]).ravel())
            vals.append(weight[np.ix_(okh, okw)].ravel())
    return _coo_to_csr(rows, cols, vals, (Ho * Wo, H * W))


def _per_channel(spatial: sp.csr_matrix, channels: int) -> sp.csr_matrix:
    """Pooling acts on every channel alike: ``I_C ⊗ S`` (block diagonal in C×H×W order)."""
    return sp.kron(sp.identity(channels, format="csr"), spatial, format="csr")


def avgpool2d_matrix(
    input_shape: Sequence[int],
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    count_include_pad: bool = True,
    ceil_mode: bool = False,
    divisor_override: int | None = None,
) -> tuple[sp.csr_matrix, Shape3]:
    """Unroll ``torch.nn.functional.avg_pool2d`` to a sparse matrix (block diagonal per channel).

    Window ``(i, j)`` starts at ``(i·s_h − p_top, j·s_w − p_left)``; it is cut at
    ``H + p_bottom`` (resp. ``W + p_right``), which gives the divisor with
    ``count_include_pad``, and at the image border, which gives the summed entries and the
    divisor without it (PyTorch's ``AvgPool2d`` kernel). ``stride`` defaults to ``kernel``;
    ``padding`` may be explicit ``((top, bottom), (left, right))`` (ONNX).

    Returns ``(M, (C, H_out, W_out))`` with ``flatten(avg_pool2d(x)) = M · flatten(x)``.
    """
    C, H, W = _check_shape(input_shape, "avg_pool2d")
    kh, kw = _pair(kernel, "kernel_size")
    if stride is None or (not isinstance(stride, (int, np.integer)) and len(stride) == 0):
        stride = kernel  # PyTorch's default
    sh, sw = _pair(stride, "stride")
    if isinstance(padding, str):
        raise LipoptError("avg_pool2d padding must be an int, a pair or ((top, bottom), (left, right))")
    (pt, pb), (pl, pr) = resolve_padding(padding, (kh, kw), (sh, sw), (1, 1), (H, W))
    Ho = _pool_out(H, kh, sh, pt, pb, ceil_mode)
    Wo = _pool_out(W, kw, sw, pl, pr, ceil_mode)
    if Ho < 1 or Wo < 1:
        raise LipoptError(f"avg_pool2d: the {kh}×{kw} window does not fit the padded {H}×{W} input")
    start_h = np.arange(Ho, dtype=np.int64) * sh - pt
    start_w = np.arange(Wo, dtype=np.int64) * sw - pl
    end_h = np.minimum(start_h + kh, H + pb)
    end_w = np.minimum(start_w + kw, W + pr)
    if divisor_override:
        div = np.full((Ho, Wo), float(divisor_override))
    elif count_include_pad:
        div = np.outer(end_h - start_h, end_w - start_w).astype(float)
    else:
        inside_h = np.minimum(end_h, H) - np.maximum(start_h, 0)
        inside_w = np.minimum(end_w, W) - np.maximum(start_w, 0)
        div = np.outer(inside_h, inside_w).astype(float)
    weight = 1.0 / np.maximum(div, 1.0)
    spatial = _spatial_window_matrix(start_h, start_w, (kh, kw), end_h, end_w, weight, (H, W))
    return _per_channel(spatial, C), (C, Ho, Wo)


def adaptive_avgpool2d_matrix(
    input_shape: Sequence[int], output_size: int | Sequence[int | None]
) -> tuple[sp.csr_matrix, Shape3]:
    """Unroll ``adaptive_avg_pool2d``: output ``i`` averages rows ``⌊iH/H_o⌋ … ⌈(i+1)H/H_o⌉ − 1``.

    ``output_size`` is an int or a pair (``None`` keeps that input size). ``(1, 1)`` is global
    average pooling (ONNX ``GlobalAveragePool``).
    """
    C, H, W = _check_shape(input_shape, "adaptive_avg_pool2d")
    if isinstance(output_size, (int, np.integer)):
        size: list[int | None] = [int(output_size), int(output_size)]
    else:
        size = [None if s is None else int(s) for s in output_size]
        if len(size) == 1:
            size = size * 2
    if len(size) != 2:
        raise LipoptError(f"adaptive_avg_pool2d output_size must be an int or a pair, got {output_size}")
    Ho = H if size[0] is None else size[0]
    Wo = W if size[1] is None else size[1]
    if Ho < 1 or Wo < 1:
        raise LipoptError(f"adaptive_avg_pool2d output_size must be positive, got {(Ho, Wo)}")
    oh, ow = np.arange(Ho, dtype=np.int64), np.arange(Wo, dtype=np.int64)
    start_h, end_h = (oh * H) // Ho, -((-(oh + 1) * H) // Ho)
    start_w, end_w = (ow * W) // Wo, -((-(ow + 1) * W) // Wo)
    weight = 1.0 / np.outer(end_h - start_h, end_w - start_w).astype(float)
    taps = (int((end_h - start_h).max()), int((end_w - start_w).max()))
    spatial = _spatial_window_matrix(start_h, start_w, taps, end_h, end_w, weight, (H, W))
    return _per_channel(spatial, C), (C, Ho, Wo)


def maxpool2d_matrix(*args: object, **kwargs: object) -> NoReturn:
    """Always raises: max pooling has no per-neuron diagonal derivative (see
    :data:`MAXPOOL_UNSUPPORTED`)."""
    raise LipoptError(MAXPOOL_UNSUPPORTED)


# ---- padding ----------------------------------------------------------------------------------
def pad2d_matrix(
    input_shape: Sequence[int], pads: Pads, value: float = 0.0
) -> tuple[sp.csr_matrix, np.ndarray, Shape3]:
    """Constant padding ``((top, bottom), (left, right))`` as an affine map ``x ↦ M x + v``.

    Output ``(c, i, j)`` copies input ``(c, i − top, j − left)`` when that lies in the image, else
    holds ``value`` (carried by the bias ``v``). Negative pads crop.
    Returns ``(M, v, (C, H_out, W_out))``.
    """
    C, H, W = _check_shape(input_shape, "pad2d")
    (pt, pb), (pl, pr) = ((int(pads[0][0]), int(pads[0][1])), (int(pads[1][0]), int(pads[1][1])))
    Ho, Wo = H + pt + pb, W + pl + pr
    if Ho < 1 or Wo < 1:
        raise LipoptError(f"pad2d: pads {pads} leave nothing of the {H}×{W} input")
    ih = np.arange(Ho, dtype=np.int64) - pt
    iw = np.arange(Wo, dtype=np.int64) - pl
    okh, okw = (ih >= 0) & (ih < H), (iw >= 0) & (iw < W)
    rows = (np.flatnonzero(okh)[:, None] * Wo + np.flatnonzero(okw)[None, :]).ravel()
    cols = (ih[okh][:, None] * W + iw[okw][None, :]).ravel()
    spatial = _coo_to_csr([rows], [cols], [np.ones(rows.size)], (Ho * Wo, H * W))
    inside = np.outer(okh, okw).ravel()
    bias = np.tile(np.where(inside, 0.0, float(value)), C)
    return _per_channel(spatial, C), bias, (C, Ho, Wo)
