"""A small graph IR between the model front ends (PyTorch, ONNX) and :class:`~lipopt.network.Network`.

A :class:`Graph` is a list of :class:`Node` in topological order. Node 0 is the network input;
every other node applies one op to the values of earlier nodes (``inputs`` are node indices),
and ``output`` names the result. Values are one sample (the batch axis is implicit), stored
flattened in row-major (C×H×W) order; every op but ``activation`` is affine.

=====================  ==============================================================================
op                     params (numpy arrays or plain numbers)
=====================  ==============================================================================
``input``              –
``linear``             ``weight`` (out × in), ``bias`` (or None): ``W x + b`` on flat features
``conv2d``             ``weight`` (C_out, C_in/g, kh, kw), ``bias``, ``stride``, ``padding``,
                       ``dilation``, ``groups``; padding as :func:`lipopt.conv.resolve_padding`
                       takes it, or ``"same_upper"``/``"same_lower"`` (ONNX ``auto_pad``)
``avgpool2d``          ``kernel``, ``stride``, ``padding`` (as conv2d), ``ceil_mode``,
                       ``count_include_pad``, ``divisor_override``
``adaptive_avgpool2d`` ``output_size``
``pad2d``              ``pads`` ((top, bottom), (left, right)), ``value``
``scale_shift``        ``scale``, ``shift``: ``x·scale + shift`` elementwise, the constants broadcast
                       against ``(1, *shape)`` as in torch and ONNX (batch axis first)
``channel_affine``     ``scale``, ``shift``: one value per channel (the sample's first axis), e.g. a
                       batch norm with its running statistics folded in
``reshape``            ``shape``: the new sample shape (``-1`` inferred, ``0`` copies the input's
                       dimension), or None to flatten
``activation``         ``activation``: a :class:`~lipopt.network.Activation`
``add``                ``scales`` (a, b): ``a·x + b·y`` of the node's two inputs
=====================  ==============================================================================

Identity ops (dropout, aliases) are not nodes: a front end maps their output to their input.
The constructors below hold what both front ends share (activation names and parameters,
batch-norm folding, arithmetic with constants, batch-axis reshapes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LipoptError
from ..network import Activation

OPS = frozenset({"input", "linear", "conv2d", "avgpool2d", "adaptive_avgpool2d", "pad2d", "scale_shift",
                 "channel_affine", "reshape", "activation", "add"})
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


@dataclass(frozen=True)
class Ref:
    """A data value of the graph under construction (the index of the node computing it)."""

    node: int


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[int, ...]
    params: dict[str, Any]
    what: str  # where the node comes from, for messages: "model.1 (Linear)", "node fc (Gemm)"


@dataclass
class Graph:
    """Nodes in topological order; ``nodes[0]`` is the input and ``output`` the result."""

    source: str
    input_shape: tuple[int, ...] | None
    nodes: list[Node] = field(default_factory=lambda: [Node("input", (), {}, "the input")])
    output: int = 0
    batch: int = 1  # the batch size of the traced example (reshape targets start with it)

    def error(self, what: str, problem: str) -> LipoptError:
        return LipoptError(f"{self.source}: {what}: {problem}")

    def add(self, op: str, inputs: Sequence[Ref], what: str, **params: Any) -> Ref:
        """Append a node; returns the reference to its value."""
        if op not in OPS:
            raise ValueError(f"unknown IR op {op!r}")
        self.nodes.append(Node(op, tuple(r.node for r in inputs), params, what))
        return Ref(len(self.nodes) - 1)

    def activation(self, name: str, x: Ref, what: str, alpha: float | None = None, beta: float = 1.0) -> Ref:
        """``σ(x)``; ``softplus`` with ``β ≠ 1`` is ``softplus(β x)/β`` (exact rescaling around σ)."""
        try:
            act = Activation(name, DEFAULT_ALPHA.get(name, 0.01) if alpha is None else float(alpha))
        except LipoptError as err:
            raise self.error(what, str(err)) from None
        if not beta > 0:
            raise self.error(what, f"beta must be positive, got {beta}")
        if beta != 1.0:
            x = self.add("scale_shift", [x], what, scale=np.array(float(beta)), shift=np.zeros(1))
        x = self.add("activation", [x], what, activation=act)
        if beta != 1.0:
            x = self.add("scale_shift", [x], what, scale=np.array(1.0 / beta), shift=np.zeros(1))
        return x

    def batch_norm(self, x: Ref, what: str, gamma: Any, beta: Any, mean: Any, var: Any, eps: float) -> Ref:
        """Eval-mode batch norm ``γ (x − μ)/√(σ² + ε) + β`` as a per-channel affine map."""
        if mean is None or var is None:
            raise self.error(what, "batch norm without running statistics (track_running_stats=False) "
                             "normalizes by batch statistics and is not an affine map")
        mean, var = np.asarray(mean, float), np.asarray(var, float)
        scale = (1.0 if gamma is None else np.asarray(gamma, float)) / np.sqrt(var + float(eps))
        shift = (0.0 if beta is None else np.asarray(beta, float)) - mean * scale
        return self.add("channel_affine", [x], what, scale=scale, shift=shift)

    def arith(self, op: str, x: Ref | np.ndarray, y: Ref | np.ndarray, what: str, alpha: float = 1.0) -> Ref:
        """``x + α·y``, ``x − α·y``, ``x·y`` or ``x / y`` (``op``: add, sub, mul, div), at least one
        operand a data value: a two-branch ``add``, or an elementwise ``scale_shift``."""
        if op == "sub":
            op, alpha = "add", -alpha
        if op == "add" and isinstance(x, Ref) and isinstance(y, Ref):
            return self.add("add", [x, y], what, scales=(1.0, float(alpha)))
        if isinstance(x, Ref) and isinstance(y, Ref):
            raise self.error(what, "the product or quotient of two values that depend on the input is not "
                             "affine")
        if op == "add":
            data, scale, shift = (x, 1.0, alpha * np.asarray(y)) if isinstance(x, Ref) else (y, alpha, x)
        elif op == "mul":
            data, scale, shift = (x, y, 0.0) if isinstance(x, Ref) else (y, x, 0.0)
        elif not isinstance(x, Ref):
            raise self.error(what, "a constant divided by a value that depends on the input is not affine")
        elif np.any(np.asarray(y) == 0):
            raise self.error(what, "division by zero")
        else:
            data, scale, shift = x, 1.0 / np.asarray(y, float), 0.0
        scale, shift = np.asarray(scale, float), np.asarray(shift, float)
        return self.add("scale_shift", [data], what, scale=scale, shift=shift)

    def batch_reshape(self, x: Ref, target: Sequence[int], batch: Sequence[int], what: str) -> Ref:
        """A reshape of the whole tensor that keeps the batch axis first (``target[0]`` in ``batch``)."""
        target = [int(d) for d in target]
        if len(target) < 2 or target[0] not in batch:
            raise self.error(what, "only reshapes that keep the batch axis, to (batch, features) or "
                             f"(batch, C, H, W), are supported, got {target}")
        return self.add("reshape", [x], what, shape=tuple(target[1:]))
