"""PyTorch front end: ``nn.Module``, TorchScript and ``torch.export`` programs → the graph IR.

Every source becomes a ``torch.export.ExportedProgram`` first, whose graph holds ATen ops with
their hyper-parameters as arguments: an ``nn.Module`` is traced by ``torch.export.export`` (in
eval mode, on one sample of ``input_shape``), so a custom ``forward`` is converted as it runs,
not as its children are registered; a TorchScript module is converted by torch's TorchScript →
export converter; a ``.pt2`` program is used as it is. One table, :data:`ATEN_OPS`, maps the ATen
ops to IR nodes. Parameters, buffers and constants come from the program's graph signature;
ops on constants only (e.g. a transposed weight) are evaluated by torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..conv import MAXPOOL_UNSUPPORTED
from ..errors import LipoptError
from .ir import Graph, Ref

SUPPORTED_TORCH_MODULES = ("Linear", "ReLU", "Conv2d", "AvgPool2d", "AdaptiveAvgPool2d", "ZeroPad2d",
                           "ConstantPad2d", "BatchNorm1d", "BatchNorm2d", "LeakyReLU", "ELU", "Tanh",
                           "Sigmoid", "Softplus", "Flatten", "Unflatten", "Identity", "Dropout", "Sequential")

Args = dict[str, Any]
Handler = Callable[[Graph, Args, str], Ref]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence torch's warnings, log lines and stderr prints (deprecations, shape specializations,
    graph dumps of failed traces) meanwhile."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _np(t: Any) -> np.ndarray | None:
    if t is None or isinstance(t, Ref):
        return t
    return t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=float)


def _x(g: Graph, a: Args, what: str) -> Ref:
    """The data operand; weights and other operands must be constants (checked by ``_np`` users)."""
    if not isinstance(a.get("input"), Ref) or any(isinstance(v, Ref) for k, v in a.items() if k != "input"):
        raise g.error(what, "only ops of the data with constant weights are supported")
    return a["input"]


# ---- the ATen op table (arguments by schema name, ``self`` called ``input``) -----------------------
def _conv(g: Graph, a: Args, what: str) -> Ref:
    if a.get("transposed") or np.ndim(a["weight"]) != 4:
        raise g.error(what, "only Conv2d is supported (not Conv1d, Conv3d or transposed convolutions)")
    padding = a["padding"] if isinstance(a["padding"], str) else list(a["padding"])
    return g.add("conv2d", [_x(g, a, what)], what, weight=_np(a["weight"]), bias=_np(a["bias"]),
                 stride=list(a["stride"]), padding=padding, dilation=list(a["dilation"]),
                 groups=int(a["groups"]))


def _pad(g: Graph, a: Args, what: str) -> Ref:
    p, mode = [int(v) for v in a["pad"]], a.get("mode", "constant")
    if mode != "constant":
        raise g.error(what, f"padding mode {mode!r} is not supported: only zeros or a constant "
                      "(padding_mode='zeros')")
    if len(p) != 4:
        raise g.error(what, f"expected 4 paddings (left, right, top, bottom), got {p}")
    pads = ((p[2], p[3]), (p[0], p[1]))
    return g.add("pad2d", [_x(g, a, what)], what, pads=pads, value=float(a["value"] or 0))


def _batch_norm(g: Graph, a: Args, what: str) -> Ref:
    stats = (None, None) if a["training"] else (_np(a["running_mean"]), _np(a["running_var"]))
    return g.batch_norm(_x(g, a, what), what, _np(a["weight"]), _np(a["bias"]), *stats, a["eps"])


def _check(test: Callable[[Args], bool], problem: str, handler: Handler) -> Handler:
    """``handler`` for the arguments that pass ``test``; the others are refused with ``problem``."""

    def checked(g: Graph, a: Args, what: str) -> Ref:
        if not test(a):
            raise g.error(what, problem)
        return handler(g, a, what)

    return checked


def _act(name: str, alpha: str | None = None) -> Handler:
    return lambda g, a, what: g.activation(name, _x(g, a, what), what, a[alpha] if alpha else None)


def _arith(op: str) -> Handler:
    return lambda g, a, what: g.arith(op, _np(a["input"]), _np(a["other"]), what, float(a.get("alpha", 1.0)))


def _maxpool(g: Graph, a: Args, what: str) -> Ref:
    raise g.error(what, MAXPOOL_UNSUPPORTED)


def _reshape(g: Graph, a: Args, what: str) -> Ref:
    return g.batch_reshape(_x(g, a, what), a.get("size", a.get("shape")), (g.batch, -1), what)


#: ATen op name (overload dropped) → handler(graph, arguments, where) → value.
ATEN_OPS: dict[str, Handler] = {
    "linear": lambda g, a, what: g.add("linear", [_x(g, a, what)], what, weight=_np(a["weight"]),
                                       bias=_np(a["bias"])),
    **dict.fromkeys(("conv2d", "convolution", "_convolution", "_convolution_mode"), _conv),
    "avg_pool2d": lambda g, a, what: g.add(
        "avgpool2d", [_x(g, a, what)], what, kernel=list(a["kernel_size"]), stride=list(a["stride"]),
        padding=list(np.broadcast_to(a["padding"], (2,))), ceil_mode=a["ceil_mode"],
        count_include_pad=a["count_include_pad"], divisor_override=a["divisor_override"]),
    "adaptive_avg_pool2d": lambda g, a, what: g.add("adaptive_avgpool2d", [_x(g, a, what)], what,
                                                    output_size=list(a["output_size"])),
    "pad": _pad,
    "constant_pad_nd": _pad,
    "batch_norm": _batch_norm,
    "relu": _act("relu"),
    "leaky_relu": _act("leaky_relu", "negative_slope"),
    "elu": _check(lambda a: a["scale"] == 1 and a["input_scale"] == 1,
                  "only ELU with scale 1 and input_scale 1 is supported (not SELU or CELU)",
                  _act("elu", "alpha")),
    "tanh": _act("tanh"),
    "sigmoid": _act("sigmoid"),
    "softplus": lambda g, a, what: g.activation("softplus", _x(g, a, what), what, beta=float(a["beta"])),
    "flatten": _check(lambda a: a["start_dim"] == 1 and a["end_dim"] == -1,
                      "only Flatten(start_dim=1, end_dim=-1) is supported",
                      lambda g, a, what: g.add("reshape", [_x(g, a, what)], what, shape=None)),
    **dict.fromkeys(("view", "reshape", "_unsafe_view"), _reshape),
    "unflatten": _check(lambda a: a["dim"] == 1, "only Unflatten(dim=1, …) of flat features is supported",
                        lambda g, a, what: g.add("reshape", [_x(g, a, what)], what, shape=tuple(a["sizes"]))),
    **{op: _arith(op) for op in ("add", "sub", "mul", "div")},
    **dict.fromkeys(("dropout", "feature_dropout", "alpha_dropout", "alias", "clone", "contiguous", "detach",
                     "_to_copy", "lift_fresh_copy"), lambda g, a, what: _x(g, {"input": a["input"]}, what)),
    **dict.fromkeys(("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                     "adaptive_max_pool2d"), _maxpool),
}


# ---- ExportedProgram → IR ------------------------------------------------------------------------
def _where(node: Any, op: str) -> tuple[str, str]:
    """``("model.1 (Linear)", "Linear")`` from the node's module stack, else the op."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    if not stack or (len(stack) == 1 and op not in ("linear", "conv2d")):
        return f"node {node.name} (aten.{op})", f"aten.{op}"
    path, cls = stack[-1]
    kind = (cls if isinstance(cls, str) else cls.__name__).rsplit(".", 1)[-1]
    return f"model{'.' + path if path else ''} ({kind})", kind


def _bind(target: Any, args: Sequence[Any], kwargs: Args) -> Args:
    """The op's arguments by schema name, defaults filled in (``self`` is called ``input``)."""
    out = {}
    for i, arg in enumerate(target._schema.arguments):
        name = "input" if arg.name == "self" else arg.name
        if i < len(args):
            out[name] = args[i]
        elif arg.name in kwargs:
            out[name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[name] = arg.default_value
    return out


def _convert(g: Graph, node: Any, env: dict[str, Any]) -> Any:
    import torch

    args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: env[n.name])
    refs: list[Ref] = []
    torch.fx.node.map_aggregate((args, kwargs), lambda v: refs.append(v) if isinstance(v, Ref) else None)
    if not refs:
        with torch.no_grad():  # an op on constants only
            return node.target(*args, **kwargs)
    op = node.target._schema.name.split("::")[-1] if hasattr(node.target, "_schema") else str(node.target)
    what, kind = _where(node, op)
    if op not in ATEN_OPS:
        raise g.error(what, f"{kind} is not supported (op aten.{op}); supported: "
                      f"{', '.join(SUPPORTED_TORCH_MODULES)} (and their functional forms, add/sub/mul/div, "
                      "view/reshape)")
    return ATEN_OPS[op](g, _bind(node.target, args, kwargs), what)


def program_graph(ep: Any, source: str) -> Graph:
    """The IR of an ``ExportedProgram`` with one tensor input and one tensor output."""
    from torch.export.graph_signature import InputKind

    env: dict[str, Any] = {}
    for spec in ep.graph_signature.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            tensors = ep.state_dict if spec.target in ep.state_dict else ep.constants
            env[spec.arg.name] = tensors[spec.target]
    users = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name not in env]
    if len(users) != 1 or not hasattr(users[0].meta.get("val"), "shape"):
        raise LipoptError(f"{source}: the program must take one tensor input, got {len(users)} inputs")
    example = tuple(int(d) for d in users[0].meta["val"].shape)
    g, env[users[0].name] = Graph(source, example[1:], batch=example[0] if example else 1), Ref(0)
    live, todo = set(), [n for n in ep.graph.nodes if n.op == "output"]
    while todo:  # the nodes the output depends on
        node = todo.pop()
        live.add(node)
        todo.extend(n for n in node.all_input_nodes if n not in live)
    for node in (n for n in ep.graph.nodes if n in live and n.op in ("get_attr", "call_function")):
        attr = node.op == "get_attr"
        env[node.name] = getattr(ep.graph_module, node.target) if attr else _convert(g, node, env)
    outs = [env[n.name] if hasattr(n, "name") else n for n in ep.graph.output_node().args[0]]
    if len(outs) != 1 or not isinstance(outs[0], Ref):
        raise LipoptError(f"{source}: the program must return one tensor that depends on its input")
    g.output = outs[0].node
    return g


# ---- nn.Module / TorchScript → ExportedProgram ---------------------------------------------------
def _first_weight(module: Any) -> tuple[str, Any, Any] | None:
    """``(where, submodule, weight)`` of the first registered submodule with a weight tensor."""
    import torch

    for path, sub in module.named_modules():
        if isinstance(getattr(sub, "weight", None), torch.Tensor) and sub.weight.ndim >= 1:
            kind = getattr(sub, "original_name", None) or type(sub).__name__
            return f"model{'.' + path if path else ''} ({kind})", sub, sub.weight
    return None


#: torch's messages for modules that cannot run on the example input → what to tell the user
_TORCH_ERRORS = (
    (r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input of size: (\[.*?\])",
     "a Conv2d needs a C×H×W input but gets a tensor of shape {}; unflatten (reshape) it first"),
    (r"Could not guard on data-dependent expression",
     "its forward branches on the values of its input (data-dependent control flow), which torch.export "
     "cannot trace; make the forward traceable (no Python branch on tensor values)"),
    (r"Expected more than 1 value per channel when training",
     "batch norm without running statistics (track_running_stats=False) normalizes by batch statistics "
     "and is not an affine map"),
)


def _trace_error(module: Any, shape: tuple[int, ...], err: Exception, source: str) -> LipoptError:
    """A one-line reason why tracing failed: the input shape against a first Conv2d, else torch's."""
    first = _first_weight(module)
    if first is not None and first[2].ndim == 4:
        where, sub, w = first
        if len(shape) != 3:
            return LipoptError(f"{source}: {where}: a convolutional network needs --input-shape C H W "
                               f"(input_shape=(C, H, W) in Python) (got input_shape {shape})")
        channels = w.shape[1] * int(getattr(sub, "groups", 0) or 0)  # traced TorchScript keeps only tensors
        if channels and shape[0] != channels:
            return LipoptError(f"{source}: {where} expects {channels} input channels but the tensor has "
                               f"shape {shape} (shape mismatch)")
    text = " ".join(str(err).split())
    for pattern, problem in _TORCH_ERRORS:
        found = re.search(pattern, text)
        if found:
            return LipoptError(f"{source}: {problem.format(*found.groups())}")
    return LipoptError(f"{source}: torch.export cannot trace the module on one sample of shape {shape} "
                       f"(input_shape): {text[:300]}")


def export_module(module: Any, input_shape: Sequence[int] | None, source: str) -> tuple[Any, Any]:
    """``(ExportedProgram, example input)`` of an ``nn.Module`` or TorchScript module, traced in
    eval mode on one sample of ``input_shape`` (default: flat, the first weight's input size)."""
    import torch

    first = _first_weight(module)
    if input_shape is None and (first is None or first[2].ndim > 2):
        problem = ("a convolutional network needs --input-shape C H W (input_shape=(C, H, W) in Python)"
                   if first else "the module has no weights to tell its input size from; give input_shape")
        raise LipoptError(f"{source}: {first[0] + ': ' if first else ''}{problem}")
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else (int(first[2].shape[-1]),)
    dtypes = [p.dtype for p in module.parameters() if p.dtype.is_floating_point]
    example = torch.zeros((1, *shape), dtype=dtypes[0] if dtypes else torch.float64)
    try:
        with quiet(), eval_mode([module]):
            if isinstance(module, torch.jit.ScriptModule):
                from torch._export.converter import TS2EPConverter  # TorchScript → ExportedProgram

                return TS2EPConverter(module, (example,)).convert(), example
            return torch.export.export(module, (example,)), example
    except LipoptError:
        raise
    except Exception as err:  # torch raises many types when a module cannot be traced
        raise _trace_error(module, shape, err, source) from None


@contextlib.contextmanager
def eval_mode(modules: Sequence[Any]) -> Iterator[None]:
    """Every submodule in eval mode meanwhile; the training flags are restored after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for m, _ in modes:
            m.training = False
        yield
    finally:
        for m, training in modes:
            m.training = training


def runner(run: Callable[[Any], Any], modules: Sequence[Any], example: Any
           ) -> Callable[[np.ndarray], np.ndarray]:
    """``x (n, *shape) ↦ outputs (n, -1)`` of a torch callable, one sample at a time (traced programs
    are specialized to one sample), in eval mode, as float64 numpy."""
    import torch

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), quiet(), eval_mode(modules):
            ys = [run(torch.as_tensor(xi[None], dtype=example.dtype)) for xi in x]
        return np.vstack([_np(y).reshape(1, -1) for y in ys])

    return forward
