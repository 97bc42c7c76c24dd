"""ONNX front end: an ``onnx.ModelProto`` graph → the graph IR, through one table of op handlers.

Initializers and ``Constant`` nodes are constants; a node whose inputs are all constants (shape
arithmetic such as the pads torch exports for ``ZeroPad2d``) is evaluated by
``onnx.reference``; ``Shape`` of a data tensor is read from ONNX shape inference run on the
sample shape (batch axis 1). The sample shape is the graph input's static shape without the
batch axis, else ``input_shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..conv import MAXPOOL_UNSUPPORTED
from ..errors import LipoptError
from .ir import Graph, Ref

SUPPORTED_ONNX_OPS = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Elu", "Tanh",
                      "Sigmoid", "Softplus", "Conv", "AveragePool", "GlobalAveragePool", "BatchNormalization",
                      "Pad", "Flatten", "Reshape", "Identity", "Dropout", "Constant", "Shape")


@dataclass
class _Node:
    """One ONNX node during the walk: its inputs as data references or constants, its attributes."""

    g: Graph
    proto: Any
    attrs: dict[str, Any]
    values: list[Ref | np.ndarray | None]  # None: an omitted optional input
    what: str

    def x(self, i: int = 0) -> Ref:
        if not isinstance(self.values[i] if i < len(self.values) else None, Ref):
            raise self.g.error(self.what, f"input {i} must be the data, not a constant")
        return self.values[i]  # type: ignore[return-value]

    def const(self, i: int, required: bool = True) -> np.ndarray | None:
        value = self.values[i] if i < len(self.values) else None
        if isinstance(value, Ref) or (value is None and required):
            raise self.g.error(self.what, f"input {i} must be a constant (initializer)")
        return None if value is None else np.asarray(value, dtype=float)

    def ints(self, key: str, default: Sequence[int] = (1, 1)) -> list[int]:
        values = [int(v) for v in self.attrs.get(key, default)]
        if len(values) != 2:
            raise self.g.error(self.what, f"only 2-D ops are supported ({key} = {values})")
        return values

    def pads(self) -> Any:
        """IR padding from ``auto_pad`` or ``pads = [top, left, bottom, right]``."""
        auto = str(self.attrs.get("auto_pad", "NOTSET"))
        if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            return 0 if auto == "VALID" else auto.lower()
        pads = [int(p) for p in self.attrs.get("pads", [0, 0, 0, 0])]
        if auto != "NOTSET" or len(pads) != 4:
            raise self.g.error(self.what, f"unsupported padding (auto_pad {auto}, pads {pads})")
        return ((pads[0], pads[2]), (pads[1], pads[3]))


# ---- the op table --------------------------------------------------------------------------------
def _gemm(n: _Node) -> Ref:
    if int(n.attrs.get("transA", 0)):
        raise n.g.error(n.what, "only Gemm(data, constant weight) with transA=0 is supported")
    b, bias = n.const(1), n.const(2, required=False)
    w = (b if int(n.attrs.get("transB", 0)) else b.T) * float(n.attrs.get("alpha", 1.0))
    if bias is not None:
        if bias.size not in (1, w.shape[0]):
            raise n.g.error(n.what, f"bias of shape {bias.shape} does not match {w.shape[0]} outputs (shape "
                            "mismatch)")
        bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)) * float(n.attrs.get("beta", 1.0))
    return n.g.add("linear", [n.x()], n.what, weight=w, bias=bias)


def _matmul(n: _Node) -> Ref:
    w = n.const(1)
    if w.ndim != 2:
        raise n.g.error(n.what, f"only MatMul(data, constant 2-D weight) is supported, got shape {w.shape}")
    return n.g.add("linear", [n.x()], n.what, weight=w.T, bias=None)


def _conv(n: _Node) -> Ref:
    w = n.const(1)
    if "kernel_shape" in n.attrs and tuple(int(k) for k in n.attrs["kernel_shape"]) != w.shape[2:]:
        raise n.g.error(n.what, f"kernel_shape {n.attrs['kernel_shape']} differs from the weight")
    return n.g.add("conv2d", [n.x()], n.what, weight=w, bias=n.const(2, False), stride=n.ints("strides"),
                   padding=n.pads(), dilation=n.ints("dilations"), groups=int(n.attrs.get("group", 1)))


def _average_pool(n: _Node) -> Ref:
    if n.ints("dilations") != [1, 1]:
        raise n.g.error(n.what, "dilated pooling is not supported")
    return n.g.add("avgpool2d", [n.x()], n.what, kernel=n.ints("kernel_shape", ()), stride=n.ints("strides"),
                   padding=n.pads(), ceil_mode=bool(n.attrs.get("ceil_mode", 0)),
                   count_include_pad=bool(n.attrs.get("count_include_pad", 0)), divisor_override=None)


def _batch_norm(n: _Node) -> Ref:
    if int(n.attrs.get("training_mode", 0)):
        raise n.g.error(n.what, "training_mode=1 normalizes by batch statistics (not affine)")
    return n.g.batch_norm(n.x(), n.what, *(n.const(i) for i in range(1, 5)), n.attrs.get("epsilon", 1e-5))


def _pad(n: _Node) -> Ref:
    pads = [int(p) for p in (n.const(1) if len(n.values) > 1 else n.attrs.get("pads", []))]
    value, axes = n.const(2, False), n.const(3, False)
    axes = [0, 1, 2, 3] if axes is None else [int(a) % 4 for a in axes]
    full = dict.fromkeys(range(4), (0, 0)) | {a: (pads[i], pads[i + len(axes)]) for i, a in enumerate(axes)}
    constant = str(n.attrs.get("mode", "constant")) == "constant"
    if not constant or len(pads) != 2 * len(axes) or (full[0], full[1]) != ((0, 0), (0, 0)):
        raise n.g.error(n.what, "only constant padding of the spatial axes is supported")
    value = 0.0 if value is None else value.flat[0]
    return n.g.add("pad2d", [n.x()], n.what, pads=(full[2], full[3]), value=value)


def _reshape(n: _Node) -> Ref:
    target = n.const(1).astype(int).ravel()
    if int(n.attrs.get("allowzero", 0)) and 0 in target:
        raise n.g.error(n.what, f"cannot resolve reshape target {target.tolist()} (allowzero)")
    return n.g.batch_reshape(n.x(), target, (-1, 0, 1), n.what)


def _flatten(n: _Node) -> Ref:
    if int(n.attrs.get("axis", 1)) != 1:
        raise n.g.error(n.what, "only Flatten with axis=1 is supported")
    return n.g.add("reshape", [n.x()], n.what, shape=None)


def _act(name: str, alpha: str | None = None) -> Callable[[_Node], Ref]:
    return lambda n: n.g.activation(name, n.x(), n.what, n.attrs.get(alpha) if alpha else None)


def _maxpool(n: _Node) -> Ref:
    raise n.g.error(n.what, MAXPOOL_UNSUPPORTED)


#: ONNX op type → handler(node) → value.
ONNX_OPS: dict[str, Callable[[_Node], Ref]] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    **dict.fromkeys(("Add", "Sub", "Mul", "Div"),
                    lambda n: n.g.arith(n.proto.op_type.lower(), *n.values[:2], n.what)),
    "Relu": _act("relu"),
    "LeakyRelu": _act("leaky_relu", "alpha"),
    "Elu": _act("elu", "alpha"),
    "Tanh": _act("tanh"),
    "Sigmoid": _act("sigmoid"),
    "Softplus": _act("softplus"),
    "Conv": _conv,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda n: n.g.add("adaptive_avgpool2d", [n.x()], n.what, output_size=1),
    "MaxPool": _maxpool,
    "GlobalMaxPool": _maxpool,
    "BatchNormalization": _batch_norm,
    "Pad": _pad,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": lambda n: n.x(),
    "Dropout": lambda n: n.x(),
}


# ---- the graph walk ----------------------------------------------------------------------------
def _dims(value_info: Any) -> list[int | None] | None:
    """Dimensions of a graph value (``None`` for symbolic ones), or None without a shape."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tensor_type.shape.dim]


def _sample_shape(value_info: Any, input_shape: Sequence[int] | None, src: str) -> tuple[int, ...] | None:
    """The shape of one sample: the static graph shape without the batch axis, else ``input_shape``."""
    dims = _dims(value_info)
    static = tuple(dims[1:]) if dims is not None and len(dims) >= 2 and None not in dims[1:] else None
    given = tuple(int(d) for d in input_shape) if input_shape is not None else None
    if static is not None and given is not None and np.prod(static) != np.prod(given):
        raise LipoptError(f"{src}: input_shape {given} has {int(np.prod(given))} entries but the graph input "
                          f"{value_info.name} has shape {static} ({int(np.prod(static))} entries)")
    return static if static is not None else given  # type: ignore[return-value]


def _inferred_shapes(model: Any, data: str, sample: tuple[int, ...] | None) -> dict[str, list[int | None]]:
    """Every value's shape by ONNX shape inference, the data input set to ``(1, *sample)``."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    if sample is not None:
        shape = next(i for i in model.graph.input if i.name == data).type.tensor_type.shape
        shape.Clear()
        for d in (1, *sample):
            shape.dim.add().dim_value = d
    graph = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: _dims(v) or [] for v in (*graph.value_info, *graph.input, *graph.output)}


def _constant(node: Any, attrs: Mapping[str, Any], consts: dict[str, Any], shape: Callable[[str], list]
              ) -> Any:
    """The value of a node computed without the data: Constant, Shape, or all inputs constant."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant":
        return numpy_helper.to_array(attrs["value"])
    if node.op_type == "Shape":  # of a data tensor; the batch axis is taken as 1
        dims = [1, *shape(node.input[0])[1:]]
        if None in dims or len(dims) < 2:
            raise ValueError(f"the shape of {node.input[0]} is not static; give --input-shape")
        end = attrs.get("end")
        return np.array(dims[int(attrs.get("start", 0)) : None if end is None else int(end)], dtype=np.int64)
    return ReferenceEvaluator(node).run(None, {name: consts[name] for name in node.input if name})[0]


def onnx_graph(model: Any, input_shape: Sequence[int] | None, src: str) -> Graph:
    """The IR of an ONNX model with one data input and one output."""
    from onnx import helper, numpy_helper

    graph = model.graph
    consts: dict[str, Any] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    data = [i for i in graph.input if i.name not in consts]
    if len(data) != 1 or len(graph.output) != 1:
        names = ", ".join(i.name for i in data) or "none"
        raise LipoptError(f"{src}: the graph must have exactly one data input and one output, got "
                          f"{len(data)} ({names}) and {len(graph.output)}")
    g = Graph(src, _sample_shape(data[0], input_shape, src))
    values: dict[str, Ref] = {data[0].name: Ref(0)}
    inferred: dict[str, list[int | None]] = {}

    def shape(name: str) -> list[int | None]:
        if not inferred:  # on the first Shape node
            inferred.update(_inferred_shapes(model, data[0].name, g.input_shape), _filled=[])
        return inferred.get(name) or [None]

    for node in graph.node:
        what = f"node {node.name or '(unnamed)'} ({node.op_type})"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        if node.op_type in ("Constant", "Shape") or all(i in consts for i in node.input if i):
            try:
                consts[node.output[0]] = _constant(node, attrs, consts, shape)
            except Exception as err:  # unknown op or evaluation failure
                detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise g.error(what, f"unsupported ONNX op {node.op_type} (constant evaluation failed: "
                              f"{detail}); supported: {', '.join(SUPPORTED_ONNX_OPS)}") from None
            continue
        if node.op_type not in ONNX_OPS:
            raise g.error(what, f"unsupported ONNX op {node.op_type}; supported: "
                          f"{', '.join(SUPPORTED_ONNX_OPS)}")
        ins = [values.get(i, consts.get(i)) if i else None for i in node.input]
        if any(v is None for i, v in zip(node.input, ins, strict=True) if i):
            raise g.error(what, "reads a value that is neither the data nor a constant")
        values[node.output[0]] = ONNX_OPS[node.op_type](_Node(g, node, attrs, ins, what))
    if graph.output[0].name not in values:
        raise LipoptError(f"{src}: the graph output {graph.output[0].name} does not depend on the input")
    g.output = values[graph.output[0].name].node
    return g


def runner(model: Any) -> tuple[Callable[[np.ndarray], np.ndarray], np.dtype]:
    """``x (n, *shape) ↦ outputs (n, -1)`` by ``onnx.reference``, and the input's element type."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inits = {init.name for init in model.graph.initializer}
    data = next(i for i in model.graph.input if i.name not in inits)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data.type.tensor_type.elem_type))
    dims = _dims(data)
    batch = dims[0] if dims and dims[0] is not None else None  # a static batch size must be fed as is

    def forward(x: np.ndarray) -> np.ndarray:
        size = batch or len(x)
        x_full = np.concatenate([x, np.repeat(x[:1], -len(x) % size, axis=0)])  # whole batches
        evaluator = ReferenceEvaluator(model)
        outs = [evaluator.run(None, {data.name: x_full[i : i + size].astype(dtype)})[0]
                for i in range(0, len(x_full), size)]
        return np.vstack([np.asarray(o, dtype=float).reshape(size, -1) for o in outs])[: len(x)]

    return forward, dtype
