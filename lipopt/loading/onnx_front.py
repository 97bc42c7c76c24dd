"""ONNX front end: an ``onnx.ModelProto`` graph → the graph IR, through one table of op handlers.

Initializers and ``Constant`` nodes are constants; a node whose inputs are all constants (shape
arithmetic such as the pads torch exports for ``ZeroPad2d``) is evaluated by
``onnx.reference``; ``Shape`` of a data tensor is read from ONNX shape inference run on the
sample shape (batch axis 1). The sample shape is the graph input's static shape without the
batch axis, else ``input_shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..conv import MAXPOOL_UNSUPPORTED
from ..errors import LipoptError
from ..network import Network
from .ir import Graph, Ref

SUPPORTED_ONNX_OPS = (
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Conv",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Pad",
    "Flatten",
    "Reshape",
    "Identity",
    "Dropout",
    "Constant",
    "Shape",
)


@dataclass
class _Context:
    g: Graph
    model: Any
    consts: dict[str, np.ndarray]
    values: dict[str, Ref]
    shapes: dict[str, list[int | None]] | None = field(default=None)

    def value(self, node: Any, i: int) -> Ref | np.ndarray:
        name = node.input[i] if i < len(node.input) else ""
        return self.values[name] if name in self.values else self.const(node, i)

    def data(self, node: Any, i: int, what: str) -> Ref:
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.values:
            raise self.g.error(what, f"input {i} must be the data, not a constant")
        return self.values[name]

    def const(self, node: Any, i: int, what: str = "", required: bool = True) -> np.ndarray:
        if i >= len(node.input) or not node.input[i]:
            if required:
                raise self.g.error(what, f"input {i} is missing")
            return np.array([])
        name = node.input[i]
        if name not in self.consts:
            raise self.g.error(
                what or f"node {node.name or node.op_type} ({node.op_type})",
                f"input {name!r} must be a constant (initializer)",
            )
        return np.asarray(self.consts[name], dtype=float)


def _pair(attrs: Mapping[str, Any], key: str, g: Graph, what: str) -> list[int]:
    values = [int(v) for v in attrs.get(key, [1, 1])]
    if len(values) != 2:
        raise g.error(what, f"only 2-D ops are supported ({key} = {values})")
    return values


def _pads(attrs: Mapping[str, Any], g: Graph, what: str) -> Any:
    """IR padding from ``auto_pad`` or ``pads = [top, left, bottom, right]``."""
    auto = str(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        return auto.lower() if auto != "VALID" else 0
    if auto != "NOTSET":
        raise g.error(what, f"unknown auto_pad {auto!r}")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise g.error(what, f"expected 4 pads for a 2-D op, got {pads}")
    return ((pads[0], pads[2]), (pads[1], pads[3]))


# ---- the op table --------------------------------------------------------------------------------
def _gemm(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    if node.input[0] not in c.values or int(attrs.get("transA", 0)):
        raise c.g.error(what, "only Gemm(data, constant weight) with transA=0 is supported")
    b = c.const(node, 1, what)
    w = (b if int(attrs.get("transB", 0)) else b.T) * float(attrs.get("alpha", 1.0))
    bias = c.const(node, 2, what, required=False)
    if bias.size:
        try:
            bias = np.broadcast_to(bias, (1, w.shape[0])).reshape(-1) * float(attrs.get("beta", 1.0))
        except ValueError:
            raise c.g.error(
                what, f"bias of shape {bias.shape} does not match {w.shape[0]} outputs (shape mismatch)"
            ) from None
    return c.g.add("linear", [c.data(node, 0, what)], what, weight=w, bias=bias if bias.size else None)


def _matmul(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    if node.input[0] not in c.values:
        raise c.g.error(what, "only MatMul(data, constant weight) is supported")
    w = c.const(node, 1, what)
    if w.ndim != 2:
        raise c.g.error(what, f"weight must be 2-D, got shape {w.shape}")
    return c.g.add("linear", [c.data(node, 0, what)], what, weight=w.T, bias=None)


def _conv(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    x, w, b = c.data(node, 0, what), c.const(node, 1, what), c.const(node, 2, what, required=False)
    if w.ndim != 4:
        raise c.g.error(what, f"only 2-D convolutions are supported (weight shape {w.shape})")
    if "kernel_shape" in attrs and tuple(int(k) for k in attrs["kernel_shape"]) != w.shape[2:]:
        raise c.g.error(what, f"kernel_shape {attrs['kernel_shape']} differs from the weight")
    return c.g.add(
        "conv2d",
        [x],
        what,
        weight=w,
        bias=b if b.size else None,
        stride=_pair(attrs, "strides", c.g, what),
        padding=_pads(attrs, c.g, what),
        dilation=_pair(attrs, "dilations", c.g, what),
        groups=int(attrs.get("group", 1)),
    )


def _average_pool(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    kernel = [int(k) for k in attrs.get("kernel_shape", [])]
    if len(kernel) != 2:
        raise c.g.error(what, f"only 2-D pooling is supported (kernel_shape {kernel})")
    if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
        raise c.g.error(what, "dilated pooling is not supported")
    return c.g.add(
        "avgpool2d",
        [c.data(node, 0, what)],
        what,
        kernel=kernel,
        stride=_pair(attrs, "strides", c.g, what),
        padding=_pads(attrs, c.g, what),
        ceil_mode=bool(int(attrs.get("ceil_mode", 0))),
        count_include_pad=bool(int(attrs.get("count_include_pad", 0))),
        divisor_override=None,
    )


def _batch_norm(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    if int(attrs.get("training_mode", 0)):
        raise c.g.error(what, "training_mode=1 normalizes by batch statistics (not affine)")
    gamma, beta, mean, var = (c.const(node, i, what) for i in range(1, 5))
    scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    return c.g.add("channel_affine", [c.data(node, 0, what)], what, scale=scale, shift=beta - mean * scale)


def _pad(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    if str(attrs.get("mode", "constant")) != "constant":
        raise c.g.error(what, "only constant padding is supported")
    x = c.data(node, 0, what)
    pads = [int(p) for p in (c.const(node, 1, what) if len(node.input) > 1 else attrs.get("pads", []))]
    value = c.const(node, 2, what, required=False)
    axes = [int(a) % 4 for a in c.const(node, 3, what, required=False)] or [0, 1, 2, 3]
    if len(pads) != 2 * len(axes):
        raise c.g.error(what, f"{len(pads)} pads for {len(axes)} axes")
    full = dict.fromkeys(range(4), (0, 0))
    for i, axis in enumerate(axes):
        full[axis] = (pads[i], pads[i + len(axes)])
    if full[0] != (0, 0) or full[1] != (0, 0):
        raise c.g.error(what, "only padding of the spatial axes is supported")
    return c.g.add(
        "pad2d", [x], what, pads=(full[2], full[3]), value=float(value.ravel()[0]) if value.size else 0.0
    )


def _flatten(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    if int(attrs.get("axis", 1)) != 1:
        raise c.g.error(what, "only Flatten with axis=1 is supported")
    return c.g.add("reshape", [c.data(node, 0, what)], what, shape=None)


def _reshape(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    target = c.const(node, 1, what).astype(int).ravel()
    if int(attrs.get("allowzero", 0)) and 0 in target[1:]:
        raise c.g.error(what, f"cannot resolve reshape target {target.tolist()} (allowzero)")
    return c.g.batch_reshape(c.data(node, 0, what), target, (-1, 0, 1), what)


def _arith(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    return c.g.arith(node.op_type.lower(), c.value(node, 0), c.value(node, 1), what)


def _activation(name: str, alpha: str | None = None) -> Callable[..., Ref]:
    def handler(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
        value = float(attrs[alpha]) if alpha and alpha in attrs else None
        return c.g.activation(name, c.data(node, 0, what), what, value)

    return handler


def _max_pool(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> Ref:
    raise c.g.error(what, MAXPOOL_UNSUPPORTED)


#: ONNX op type → handler(context, node, attributes, where) → value.
ONNX_OPS: dict[str, Callable[[_Context, Any, dict[str, Any], str], Ref]] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    **dict.fromkeys(("Add", "Sub", "Mul", "Div"), _arith),
    "Relu": _activation("relu"),
    "LeakyRelu": _activation("leaky_relu", "alpha"),
    "Elu": _activation("elu", "alpha"),
    "Tanh": _activation("tanh"),
    "Sigmoid": _activation("sigmoid"),
    "Softplus": _activation("softplus"),
    "Conv": _conv,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda c, node, attrs, what: c.g.add(
        "adaptive_avgpool2d", [c.data(node, 0, what)], what, output_size=1
    ),
    "MaxPool": _max_pool,
    "GlobalMaxPool": _max_pool,
    "BatchNormalization": _batch_norm,
    "Pad": _pad,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": lambda c, node, attrs, what: c.data(node, 0, what),
    "Dropout": lambda c, node, attrs, what: c.data(node, 0, what),
}


# ---- the graph walk ----------------------------------------------------------------------------
def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}


def _dims(value_info: Any) -> list[int | None] | None:
    """Dimensions of a graph value (``None`` for symbolic ones), or None without a shape."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim
    ]


def _sample_shape(value_info: Any, input_shape: Sequence[int] | None, src: str) -> tuple[int, ...] | None:
    """The shape of one sample: the static graph shape without the batch axis, else ``input_shape``."""
    dims = _dims(value_info)
    static = tuple(dims[1:]) if dims is not None and len(dims) >= 2 and None not in dims[1:] else None
    given = tuple(int(d) for d in input_shape) if input_shape is not None else None
    if static is not None and given is not None and np.prod(static) != np.prod(given):
        raise LipoptError(
            f"{src}: input_shape {given} has {int(np.prod(given))} entries but the graph input "
            f"{value_info.name} has shape {static} ({int(np.prod(static))} entries)"
        )
    return static if static is not None else given  # type: ignore[return-value]


def _shape_of(c: _Context, node: Any, attrs: dict[str, Any], what: str) -> np.ndarray:
    """``Shape`` of a data tensor from shape inference on the sample shape (batch axis 1)."""
    if c.shapes is None:
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(c.model)
        data = next(i for i in model.graph.input if i.name not in c.consts)
        if c.g.input_shape is not None:
            data.type.tensor_type.shape.Clear()
            for d in (1, *c.g.input_shape):
                data.type.tensor_type.shape.dim.add().dim_value = d
        inferred = onnx.shape_inference.infer_shapes(model).graph
        c.shapes = {v.name: _dims(v) or [] for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    dims = c.shapes.get(node.input[0]) or [None]
    if None in dims[1:] or not dims[1:]:
        raise c.g.error(what, f"the shape of {node.input[0]} is not static; give --input-shape")
    full = np.array([1, *dims[1:]], dtype=np.int64)
    end = attrs.get("end")
    return full[int(attrs.get("start", 0)) : None if end is None else int(end)]


def _fold(c: _Context, node: Any, what: str) -> None:
    """Evaluate a node whose inputs are all constants with ``onnx.reference`` (constant folding)."""
    try:
        from onnx.reference import ReferenceEvaluator

        outputs = ReferenceEvaluator(node).run(None, {name: c.consts[name] for name in node.input if name})
    except Exception as err:  # unknown op or evaluation failure
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise c.g.error(
            what,
            f"unsupported ONNX op {node.op_type} (constant folding failed: {detail}); supported: "
            f"{', '.join(SUPPORTED_ONNX_OPS)}",
        ) from None
    for name, value in zip(node.output, outputs, strict=False):
        c.consts[name] = np.asarray(value)


def onnx_graph(model: Any, input_shape: Sequence[int] | None, src: str) -> Graph:
    """The IR of an ONNX model with one data input and one output."""
    from onnx import numpy_helper

    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    data = [i for i in graph.input if i.name not in consts]
    if len(data) != 1:
        raise LipoptError(
            f"{src}: the graph must have exactly one data input, got {len(data)} "
            f"({', '.join(i.name for i in data) or 'none'})"
        )
    if len(graph.output) != 1:
        raise LipoptError(f"{src}: the graph must have exactly one output, got {len(graph.output)}")
    c = _Context(Graph(src, _sample_shape(data[0], input_shape, src)), model, consts, {data[0].name: Ref(0)})
    for node in graph.node:
        what = f"node {node.name or '(unnamed)'} ({node.op_type})"
        attrs = _attrs(node)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise c.g.error(what, "only Constant nodes with a tensor 'value' are supported")
            c.consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif node.op_type == "Shape" and node.input[0] in c.values:
            c.consts[node.output[0]] = _shape_of(c, node, attrs, what)
        elif all(i in c.consts for i in node.input if i):
            _fold(c, node, what)
        elif node.op_type in ONNX_OPS:
            c.values[node.output[0]] = ONNX_OPS[node.op_type](c, node, attrs, what)
        else:
            raise c.g.error(
                what, f"unsupported ONNX op {node.op_type}; supported: {', '.join(SUPPORTED_ONNX_OPS)}"
            )
    if graph.output[0].name not in c.values:
        raise LipoptError(f"{src}: the graph output {graph.output[0].name} does not depend on the input")
    c.g.output = c.values[graph.output[0].name].node
    return c.g


def verify(model: Any, net: Network, shape: tuple[int, ...] | None, src: str) -> None:
    """Compare ``net.forward`` with ONNX's reference evaluator (skipped if it cannot run)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    inits = {init.name for init in graph.initializer}
    data = next(i for i in graph.input if i.name not in inits)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data.type.tensor_type.elem_type))
    except Exception:  # unknown or missing element type
        return
    if dtype.kind != "f":
        return
    dims = _dims(data)
    batch = dims[0] if dims and dims[0] is not None else 3
    x = np.random.default_rng(0).standard_normal((batch, net.input_dim))
    feed = x.reshape((batch, *shape)) if shape is not None else x
    try:
        y = ReferenceEvaluator(model).run(None, {data.name: feed.astype(dtype)})[0]
        y = np.asarray(y, dtype=float).reshape(batch, -1)
    except Exception:  # the evaluator cannot run this graph: nothing to compare
        return
    ref = net.forward(x)
    tol = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}.get(dtype, 5e-2)
    if y.shape != ref.shape or float(np.abs(y - ref).max()) > tol * (1.0 + float(np.abs(ref).max())):
        diff = "shape " + str(y.shape) if y.shape != ref.shape else f"{np.abs(y - ref).max():.3g}"
        raise LipoptError(
            f"{src}: the converted network does not reproduce the ONNX graph's output "
            f"(difference {diff} against onnx.reference)"
        )
