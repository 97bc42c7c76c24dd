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
from ..network import Network
from .ir import Graph, Ref

SUPPORTED_TORCH_MODULES = (
    "Linear",
    "ReLU",
    "Conv2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "ZeroPad2d",
    "ConstantPad2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LeakyReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Flatten",
    "Unflatten",
    "Identity",
    "Dropout",
    "Sequential",
)

Handler = Callable[[Graph, dict[str, Any], str], Ref]


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


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=float)


def _const(g: Graph, a: dict[str, Any], key: str, what: str) -> np.ndarray | None:
    value = a.get(key)
    if isinstance(value, Ref):
        raise g.error(what, f"its {key} depends on the input; only a constant {key} is supported")
    return None if value is None else _np(value)


def _data(g: Graph, a: dict[str, Any], what: str, key: str = "input") -> Ref:
    if not isinstance(a.get(key), Ref):
        raise g.error(what, f"its {key} is a constant; only ops on the network's data are supported")
    return a[key]


# ---- the ATen op table ---------------------------------------------------------------------------
def _linear(g: Graph, a: dict[str, Any], what: str) -> Ref:
    w = _const(g, a, "weight", what)
    return g.add("linear", [_data(g, a, what)], what, weight=w, bias=_const(g, a, "bias", what))


def _conv(g: Graph, a: dict[str, Any], what: str) -> Ref:
    w = _const(g, a, "weight", what)
    if a.get("transposed") or w is None or w.ndim != 4:
        raise g.error(what, "only Conv2d is supported (not Conv1d, Conv3d or transposed convolutions)")
    return g.add(
        "conv2d",
        [_data(g, a, what)],
        what,
        weight=w,
        bias=_const(g, a, "bias", what),
        stride=list(a["stride"]),
        padding=a["padding"] if isinstance(a["padding"], str) else list(a["padding"]),
        dilation=list(a["dilation"]),
        groups=int(a["groups"]),
    )


def _avgpool(g: Graph, a: dict[str, Any], what: str) -> Ref:
    return g.add(
        "avgpool2d",
        [_data(g, a, what)],
        what,
        kernel=list(a["kernel_size"]),
        stride=list(a["stride"]),
        padding=list(np.broadcast_to(a["padding"], (2,))),
        ceil_mode=bool(a["ceil_mode"]),
        count_include_pad=bool(a["count_include_pad"]),
        divisor_override=a["divisor_override"],
    )


def _pad(g: Graph, a: dict[str, Any], what: str) -> Ref:
    mode = a.get("mode", "constant")
    if mode != "constant":
        raise g.error(
            what,
            f"padding mode {mode!r} is not supported: only constant (zero) padding, padding_mode='zeros'",
        )
    p = [int(v) for v in a["pad"]]
    if len(p) != 4:
        raise g.error(what, f"expected 4 paddings (left, right, top, bottom), got {p}")
    value = float(a.get("value") or 0.0)
    return g.add("pad2d", [_data(g, a, what)], what, pads=((p[2], p[3]), (p[0], p[1])), value=value)


def _batch_norm(g: Graph, a: dict[str, Any], what: str) -> Ref:
    """Eval-mode batch norm ``γ (x − μ)/√(σ² + ε) + β`` as a per-channel affine map."""
    mean, var = _const(g, a, "running_mean", what), _const(g, a, "running_var", what)
    if a["training"] or mean is None or var is None:
        raise g.error(
            what,
            "batch norm without running statistics (track_running_stats=False) normalizes by batch "
            "statistics and is not an affine map",
        )
    gamma, beta = _const(g, a, "weight", what), _const(g, a, "bias", what)
    scale = (np.ones_like(mean) if gamma is None else gamma) / np.sqrt(var + float(a["eps"]))
    shift = (np.zeros_like(mean) if beta is None else beta) - mean * scale
    return g.add("channel_affine", [_data(g, a, what)], what, scale=scale, shift=shift)


def _elu(g: Graph, a: dict[str, Any], what: str) -> Ref:
    if float(a["scale"]) != 1.0 or float(a["input_scale"]) != 1.0:
        raise g.error(what, "only ELU with scale 1 and input_scale 1 is supported (not SELU or CELU)")
    return g.activation("elu", _data(g, a, what), what, float(a["alpha"]))


def _flatten(g: Graph, a: dict[str, Any], what: str) -> Ref:
    if int(a["start_dim"]) != 1 or int(a["end_dim"]) != -1:
        raise g.error(what, "only Flatten(start_dim=1, end_dim=-1) is supported")
    return g.add("reshape", [_data(g, a, what)], what, shape=None)


def _unflatten(g: Graph, a: dict[str, Any], what: str) -> Ref:
    if int(a["dim"]) != 1:
        raise g.error(what, "only Unflatten(dim=1, …) of flat features is supported")
    return g.add("reshape", [_data(g, a, what)], what, shape=tuple(int(d) for d in a["sizes"]))


def _arith(op: str) -> Handler:
    def handler(g: Graph, a: dict[str, Any], what: str) -> Ref:
        x, y = (v if isinstance(v, Ref) else _np(v) for v in (a["input"], a["other"]))
        return g.arith(op, x, y, what, float(a.get("alpha", 1.0)))

    return handler


def _activation(name: str, alpha: str | None = None) -> Handler:
    return lambda g, a, what: g.activation(name, _data(g, a, what), what, a[alpha] if alpha else None)


def _refuse(problem: str) -> Handler:
    def handler(g: Graph, a: dict[str, Any], what: str) -> Ref:
        raise g.error(what, problem)

    return handler


def _same(g: Graph, a: dict[str, Any], what: str) -> Ref:
    return _data(g, a, what)


_MAXPOOL = _refuse(MAXPOOL_UNSUPPORTED)

#: ATen op name (without overload) → handler(graph, arguments by schema name, where) → value.
ATEN_OPS: dict[str, Handler] = {
    "linear": _linear,
    **dict.fromkeys(("conv2d", "convolution", "_convolution", "_convolution_mode"), _conv),
    "avg_pool2d": _avgpool,
    "adaptive_avg_pool2d": lambda g, a, what: g.add(
        "adaptive_avgpool2d", [_data(g, a, what)], what, output_size=list(a["output_size"])
    ),
    "pad": _pad,
    "constant_pad_nd": _pad,
    "batch_norm": _batch_norm,
    "relu": _activation("relu"),
    "leaky_relu": _activation("leaky_relu", "negative_slope"),
    "elu": _elu,
    "tanh": _activation("tanh"),
    "sigmoid": _activation("sigmoid"),
    "softplus": lambda g, a, what: g.activation("softplus", _data(g, a, what), what, beta=float(a["beta"])),
    "flatten": _flatten,
    **dict.fromkeys(
        ("view", "reshape", "_unsafe_view"),
        lambda g, a, what: g.batch_reshape(
            _data(g, a, what), a.get("size", a.get("shape")), (g.batch, -1), what
        ),
    ),
    "unflatten": _unflatten,
    **{op: _arith(op) for op in ("add", "sub", "mul", "div")},
    **dict.fromkeys(
        (
            "dropout",
            "feature_dropout",
            "alpha_dropout",
            "alias",
            "clone",
            "contiguous",
            "detach",
            "_to_copy",
            "lift_fresh_copy",
        ),
        _same,
    ),
    **dict.fromkeys(
        ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "adaptive_max_pool2d"), _MAXPOOL
    ),
}


# ---- ExportedProgram → IR ------------------------------------------------------------------------
def _where(node: Any, op: str) -> tuple[str, str]:
    """``("model.1 (Linear)", "Linear")`` from the node's module stack, else the op's name."""
    stack = node.meta.get("nn_module_stack") or {}
    if len(stack) > 1 or (stack and op in ("linear", "conv2d")):
        path, cls = list(stack.values())[-1]
        kind = (cls if isinstance(cls, str) else cls.__name__).rsplit(".", 1)[-1]
        return f"model{'.' + path if path else ''} ({kind})", kind
    return f"node {node.name} (aten.{op})", f"aten.{op}"


def _bind(target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
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


def _convert_node(g: Graph, node: Any, env: dict[str, Any]) -> Any:
    import torch

    args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: env[n.name])
    if not any(isinstance(v, Ref) for v in torch.utils._pytree.tree_leaves((args, kwargs))):
        with torch.no_grad():  # an op on constants only
            return node.target(*args, **kwargs)
    op = node.target._schema.name.split("::")[-1] if hasattr(node.target, "_schema") else str(node.target)
    what, kind = _where(node, op)
    handler = ATEN_OPS.get(op)
    if handler is None:
        raise g.error(
            what,
            f"{kind} is not supported (op aten.{op}); supported: {', '.join(SUPPORTED_TORCH_MODULES)} "
            "(and their functional forms, tensor add/sub/mul/div, view/reshape)",
        )
    return handler(g, _bind(node.target, args, kwargs), what)


def _live_nodes(graph: Any) -> set[Any]:
    output = next(n for n in graph.nodes if n.op == "output")
    live, todo = set(), [output]
    while todo:
        node = todo.pop()
        if node not in live:
            live.add(node)
            todo.extend(node.all_input_nodes)
    return live


def program_graph(ep: Any, source: str) -> Graph:
    """The IR of an ``ExportedProgram`` with one tensor input and one tensor output."""
    from torch.export.graph_signature import InputKind

    env: dict[str, Any] = {}
    users = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            users.append(spec.arg.name)
        else:
            env[spec.arg.name] = (
                ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
            )
    nodes = {n.name: n for n in ep.graph.nodes}
    if len(users) != 1 or not hasattr(nodes[users[0]].meta.get("val"), "shape"):
        raise LipoptError(f"{source}: the program must take one tensor input, got {len(users)} inputs")
    example = tuple(int(d) for d in nodes[users[0]].meta["val"].shape)
    g = Graph(source, example[1:], batch=example[0] if example else 1)
    env[users[0]] = Ref(0)
    live = _live_nodes(ep.graph)
    for node in ep.graph.nodes:
        if node not in live or node.op == "placeholder":
            continue
        if node.op == "get_attr":
            env[node.name] = getattr(ep.graph_module, node.target)
        elif node.op == "call_function":
            env[node.name] = _convert_node(g, node, env)
        elif node.op == "output":
            outs = [env[n.name] if hasattr(n, "name") else n for n in node.args[0]]
            if len(outs) != 1 or not isinstance(outs[0], Ref):
                raise LipoptError(f"{source}: the program must return one tensor that depends on its input")
            g.output = outs[0].node
    return g


# ---- nn.Module / TorchScript → ExportedProgram ---------------------------------------------------
def first_weight(module: Any) -> tuple[str, Any, Any] | None:
    """``(where, submodule, weight)`` of the first registered submodule with a weight tensor."""
    import torch

    for path, sub in module.named_modules():
        w = getattr(sub, "weight", None)
        if isinstance(w, torch.Tensor) and w.ndim >= 1:
            kind = str(getattr(sub, "original_name", None) or type(sub).__name__)
            return f"model{'.' + path if path else ''} ({kind})", sub, w
    return None


def _example_shape(module: Any, input_shape: Sequence[int] | None, source: str) -> tuple[int, ...]:
    """The sample shape to trace with: ``input_shape``, else the first weight's input size."""
    if input_shape is not None:
        return tuple(int(d) for d in input_shape)
    first = first_weight(module)
    if first is None:
        raise LipoptError(
            f"{source}: the module has no weights to tell its input size from; give input_shape"
        )
    where, _, w = first
    if w.ndim > 2:
        raise LipoptError(
            f"{source}: {where}: a convolutional network needs --input-shape C H W (input_shape=(C, H, W) in Python)"
        )
    return (int(w.shape[-1]),)


#: torch's messages for modules that cannot run on the example input → what to tell the user
_TORCH_ERRORS = (
    (
        r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input of size: (\[.*?\])",
        "a Conv2d needs a C×H×W input but gets a tensor of shape {}; unflatten (reshape) it first",
    ),
    (
        r"Could not guard on data-dependent expression",
        "its forward branches on the values of its input (data-dependent control flow), which "
        "torch.export cannot trace; make the forward traceable (no Python branch on tensor values)",
    ),
    (
        r"Expected more than 1 value per channel when training",
        "batch norm without running statistics (track_running_stats=False) normalizes by batch statistics "
        "and is not an affine map",
    ),
)


def _trace_error(module: Any, shape: tuple[int, ...], err: Exception, source: str) -> LipoptError:
    """A one-line reason why tracing failed: the input shape against the first layer, else torch's."""
    first = first_weight(module)
    if first is not None and first[2].ndim == 4:
        where, sub, w = first
        groups = getattr(sub, "groups", None)  # traced TorchScript modules keep only tensors
        if len(shape) != 3:
            return LipoptError(
                f"{source}: {where}: a convolutional network needs --input-shape C H W (input_shape=(C, H, W) in "
                f"Python) (got input_shape {shape})"
            )
        if groups is not None and shape[0] != w.shape[1] * int(groups):
            return LipoptError(
                f"{source}: {where} expects {w.shape[1] * int(groups)} input channels but the tensor has shape {shape} "
                "(shape mismatch)"
            )
    text = " ".join(str(err).split())
    for pattern, problem in _TORCH_ERRORS:
        found = re.search(pattern, text)
        if found:
            return LipoptError(f"{source}: {problem.format(*found.groups())}")
    return LipoptError(
        f"{source}: torch.export cannot trace the module on one sample of shape {shape} (input_shape): "
        f"{text[:300]}"
    )


def export_module(module: Any, input_shape: Sequence[int] | None, source: str) -> tuple[Any, Any]:
    """``(ExportedProgram, example input)`` of an ``nn.Module`` or TorchScript module, traced in
    eval mode on one sample (training flags are restored)."""
    import torch

    shape = _example_shape(module, input_shape, source)
    dtypes = [p.dtype for p in module.parameters() if p.dtype.is_floating_point]
    example = torch.zeros((1, *shape), dtype=dtypes[0] if dtypes else torch.float64)
    modes = [(m, m.training) for m in module.modules()]
    try:
        for m, _ in modes:
            m.training = False
        with quiet():
            if isinstance(module, torch.jit.ScriptModule):
                from torch._export.converter import TS2EPConverter  # TorchScript → ExportedProgram

                return TS2EPConverter(module, (example,)).convert(), example
            return torch.export.export(module, (example,)), example
    except LipoptError:
        raise
    except Exception as err:  # torch raises many types when a module cannot be traced
        raise _trace_error(module, shape, err, source) from None
    finally:
        for m, training in modes:
            m.training = training


# ---- verification --------------------------------------------------------------------------------
def verify(run: Any, modules: Sequence[Any], net: Network, example: Any, source: str) -> None:
    """Compare ``net.forward`` with the source's forward pass ``run`` on random samples (one at a
    time: traced programs are specialized to one sample), in eval mode."""
    import torch

    x = np.random.default_rng(0).standard_normal((4, net.input_dim))
    shape = tuple(example.shape[1:])
    if int(np.prod(shape)) != net.input_dim:
        return  # reported by load_network's input_shape check
    modes = [(m, m.training) for mod in modules for m in mod.modules()]
    try:
        for m, _ in modes:
            m.training = False
        with torch.no_grad(), quiet():
            y = np.vstack(
                [
                    _np(run(torch.as_tensor(xi.reshape(1, *shape), dtype=example.dtype))).reshape(1, -1)
                    for xi in x
                ]
            )
    except Exception:  # the source cannot run on this input layout: nothing to compare
        return
    finally:
        for m, training in modes:
            m.training = training
    ref = net.forward(x)
    tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(example.dtype, 5e-2)
    if y.shape != ref.shape or float(np.abs(y - ref).max()) > tol * (1.0 + float(np.abs(ref).max())):
        diff = "shape " + str(y.shape) if y.shape != ref.shape else f"{np.abs(y - ref).max():.3g}"
        raise LipoptError(
            f"{source}: the converted network does not reproduce the module's forward pass (difference {diff})"
        )
