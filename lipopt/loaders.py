"""Load networks from npz archives, PyTorch modules and ONNX graphs; save them as npz.

Entry point: :func:`load_network`, which dispatches on the file suffix (``.npz``, ``.pt`` /
``.pth``, ``.onnx``) or on the type of an in-memory object (``torch.nn.Module``,
``onnx.ModelProto``, :class:`~lipopt.network.Network`). Every failure is a
:class:`~lipopt.errors.LipoptError` with a one-line message naming the source and the problem.

npz format
----------
The format of the networks in ``shared/external`` (see its README):

* ``W0, b0, W1, b1, …`` — weight matrices in PyTorch orientation (``out × in``) and bias
  vectors. A missing ``b{i}`` means zeros. Layer indices must run 0 … L without gaps.
* ``activation`` (optional, default ``"relu"``) — a string applied after every layer but the
  last, or a 1-D string array with one entry per hidden layer (or per layer, the last being
  ``"identity"``). Names: ``relu, leaky_relu, elu, tanh, sigmoid, softplus, identity``.
* ``alpha`` (optional) — the negative slope of ``leaky_relu`` (default 0.01) or the scale of
  ``elu`` (default 1.0); a scalar, or one value per hidden layer.
* ``x0`` (optional) — a centre point for local bounds.
* Sparse weights (written by :func:`save_npz` for scipy.sparse layers): instead of ``W{i}``,
  the CSR arrays ``W{i}_data``, ``W{i}_indices``, ``W{i}_indptr`` and ``W{i}_shape``.
* Any other key is ignored by the loader (e.g. ``accuracy`` metadata).

PyTorch and ONNX
----------------
Modules (or graphs) must be a chain of affine maps and supported activations. Consecutive
affine maps are merged by matrix product; two activations in a row get an identity affine
layer between them; a model that ends in an activation gets a final identity layer (so the
network computes exactly the model's function). ``torch`` and ``onnx`` are optional and only
imported when needed.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .network import ACTIVATIONS, IDENTITY, Activation, Dense, Matrix, Network

__all__ = [
    "SUPPORTED_ONNX_OPS",
    "SUPPORTED_SUFFIXES",
    "SUPPORTED_TORCH_MODULES",
    "from_npz",
    "from_onnx",
    "from_torch",
    "load_network",
    "save_npz",
]

SUPPORTED_SUFFIXES = (".npz", ".pt", ".pth", ".onnx")

SUPPORTED_TORCH_MODULES = (
    "Linear",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Flatten",
    "Identity",
    "Dropout",
    "Sequential",
)

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
    "Flatten",
    "Reshape",
    "Identity",
    "Dropout",
    "Constant",
)

_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
_ALIASES = {"linear": "identity", "none": "identity", "leakyrelu": "leaky_relu"}
_LAYER_KEY = re.compile(r"^([Wb])(\d+)(?:_(data|indices|indptr|shape))?$")
_RESERVED = ("activation", "alpha", "x0")

PathLike = str | os.PathLike


# ---- public entry point ----------------------------------------------------------------------
def load_network(
    path_or_module: PathLike | Any,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
) -> Network:
    """Load a network from a file or an in-memory model.

    Args:
        path_or_module: a path to a ``.npz``, ``.pt``/``.pth`` (a pickled ``torch.nn.Module``
            saved with ``torch.save(model)``, or a TorchScript file) or ``.onnx`` file; or a
            ``torch.nn.Module``, an ``onnx.ModelProto`` or a :class:`Network` (returned as is,
            renamed if ``name`` is given).
        input_shape: the shape of one input sample without the batch dimension (e.g.
            ``(1, 8, 8)``); optional, checked against the network's input size and used to feed
            PyTorch modules that flatten image-shaped inputs.
        name: the network's name (default: the file stem or the model's class name).

    Raises:
        LipoptError: for a missing, unreadable or malformed file, an unsupported suffix, layer
            or op, or when an optional dependency (torch / onnx) is not installed.
    """
    if isinstance(path_or_module, Network):
        net = path_or_module
        source = f"network {net.name}"
        if name is not None and name != net.name:
            net = Network(net.layers, name=name, x0=net.x0)
    elif isinstance(path_or_module, (str, os.PathLike)):
        path = Path(path_or_module)
        source = str(path)
        suffix = path.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise LipoptError(
                f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
            )
        if not path.is_file():
            raise LipoptError(f"{path}: no such file")
        if suffix == ".npz":
            net = from_npz(path, name=name)
        elif suffix == ".onnx":
            net = from_onnx(path, name=name)
        else:
            net = _load_torch_file(path, input_shape=input_shape, name=name)
    elif _is_torch_module(path_or_module):
        source = f"torch module {_torch_kind(path_or_module)}"
        net = from_torch(path_or_module, input_shape=input_shape, name=name)
    elif _is_onnx_model(path_or_module):
        source = f"onnx model {path_or_module.graph.name or '(unnamed)'}"
        net = from_onnx(path_or_module, name=name)
    else:
        raise LipoptError(
            f"cannot load a network from a {type(path_or_module).__name__}: expected a path "
            f"({', '.join(SUPPORTED_SUFFIXES)}), a torch.nn.Module or an onnx.ModelProto"
        )
    if input_shape is not None:
        _check_input_shape(net, input_shape, source)
    return net


def _check_input_shape(net: Network, input_shape: Sequence[int], source: str) -> None:
    size = int(np.prod(tuple(int(d) for d in input_shape)))
    if size != net.input_dim:
        raise LipoptError(
            f"{source}: input_shape {tuple(input_shape)} has {size} entries but the network "
            f"has {net.input_dim} inputs"
        )


def _make_network(layers: Sequence[Dense], name: str, x0: np.ndarray | None, source: str) -> Network:
    """Build the :class:`Network`, prefixing its validation errors with the source."""
    try:
        return Network(tuple(layers), name=name, x0=x0)
    except LipoptError as err:
        raise LipoptError(f"{source}: {err}") from None


# ---- npz -------------------------------------------------------------------------------------
def from_npz(path: PathLike, *, name: str | None = None) -> Network:
    """Read a network from an npz archive in the format described in the module docstring."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise LipoptError(f"{src}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise LipoptError(f"{src}: not a valid npz file ({_first_line(err)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LipoptError(f"{src}: holds a single .npy array, not an npz archive of W0, b0, …")
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise LipoptError(f"{src}: not a valid npz file ({_first_line(err)})") from None
    return _network_from_arrays(arrays, src, name or path.stem)


def _network_from_arrays(arrays: Mapping[str, np.ndarray], src: str, name: str) -> Network:
    weights: dict[int, Matrix] = {}
    biases: dict[int, np.ndarray] = {}
    sparse_parts: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            continue  # activation, alpha, x0 and unknown metadata keys
        kind, idx, part = m.group(1), int(m.group(2)), m.group(3)
        if kind == "b":
            if part is not None:
                continue
            biases[idx] = _real_array(value, key, src)
        elif part is None:
            weights[idx] = _real_array(value, key, src)
        else:
            sparse_parts.setdefault(idx, {})[part] = value
    for idx, parts in sparse_parts.items():
        if idx in weights:
            raise LipoptError(f"{src}: layer {idx} has both W{idx} and sparse W{idx}_* arrays")
        weights[idx] = _csr_from_parts(idx, parts, src)
    if not weights:
        raise LipoptError(f"{src}: no weight arrays found (expected keys W0, b0, W1, b1, …)")
    n_layers = max(weights) + 1
    missing = [f"W{i}" for i in range(n_layers) if i not in weights]
    if missing:
        raise LipoptError(f"{src}: missing {', '.join(missing)} (layer keys must run W0 … W{n_layers - 1})")
    orphans = sorted(i for i in biases if i not in weights)
    if orphans:
        raise LipoptError(f"{src}: b{orphans[0]} has no matching W{orphans[0]}")

    layers_w: list[Matrix] = []
    layers_b: list[np.ndarray] = []
    for i in range(n_layers):
        w = weights[i]
        if w.ndim != 2:
            raise LipoptError(f"{src}: W{i} must be a 2-D matrix, got shape {w.shape}")
        if not np.all(np.isfinite(w.data if sp.issparse(w) else w)):
            raise LipoptError(f"{src}: W{i} contains NaN or inf values")
        b = biases.get(i)
        if b is None:
            b = np.zeros(w.shape[0])
        elif b.size != w.shape[0] or (b.ndim > 1 and max(b.shape) != b.size):
            raise LipoptError(
                f"{src}: b{i} has shape {b.shape} but W{i} has {w.shape[0]} outputs (shape mismatch)"
            )
        b = b.reshape(-1)
        if not np.all(np.isfinite(b)):
            raise LipoptError(f"{src}: b{i} contains NaN or inf values")
        if i > 0 and layers_w[-1].shape[0] != w.shape[1]:
            raise LipoptError(
                f"{src}: W{i} has {w.shape[1]} columns but W{i - 1} has "
                f"{layers_w[-1].shape[0]} rows (shape mismatch)"
            )
        layers_w.append(w)
        layers_b.append(b)

    acts = _parse_activations(arrays, n_layers - 1, src)
    layers = [
        Dense(w, b, acts[i] if i < n_layers - 1 else IDENTITY)
        for i, (w, b) in enumerate(zip(layers_w, layers_b, strict=True))
    ]
    x0 = None
    if "x0" in arrays:
        x0 = _real_array(arrays["x0"], "x0", src).ravel()
        if not np.all(np.isfinite(x0)):
            raise LipoptError(f"{src}: x0 contains NaN or inf values")
    return _make_network(layers, name, x0, src)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _real_array(value: np.ndarray, key: str, src: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise LipoptError(f"{src}: {key} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(float)


def _csr_from_parts(idx: int, parts: Mapping[str, np.ndarray], src: str) -> sp.csr_matrix:
    need = ("data", "indices", "indptr", "shape")
    absent = [f"W{idx}_{p}" for p in need if p not in parts]
    if absent:
        raise LipoptError(f"{src}: sparse layer {idx} is missing {', '.join(absent)}")
    try:
        shape = tuple(int(d) for d in np.asarray(parts["shape"]).ravel())
        if len(shape) != 2:
            raise ValueError(f"shape must have 2 entries, got {shape}")
        data = _real_array(parts["data"], f"W{idx}_data", src)
        w = sp.csr_matrix((data, np.asarray(parts["indices"]), np.asarray(parts["indptr"])), shape=shape)
        w.check_format(full_check=True)
    except (ValueError, TypeError, IndexError) as err:
        raise LipoptError(f"{src}: sparse W{idx} is malformed ({_first_line(err)})") from None
    return w


def _activation_names(value: np.ndarray, src: str) -> list[str]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "US":
        raise LipoptError(f"{src}: activation must be a string array, got dtype {arr.dtype}")
    names = []
    for item in arr.ravel().tolist():
        text = item.decode() if isinstance(item, bytes) else str(item)
        key = text.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key not in ACTIVATIONS:
            raise LipoptError(f"{src}: unknown activation {text!r}; supported: {', '.join(ACTIVATIONS)}")
        names.append(key)
    return names


def _parse_activations(arrays: Mapping[str, np.ndarray], n_hidden: int, src: str) -> list[Activation]:
    """One :class:`Activation` per hidden layer from the optional ``activation``/``alpha`` keys."""
    if "activation" in arrays:
        raw = np.asarray(arrays["activation"])
        names = _activation_names(raw, src)
        if raw.ndim == 0 or (len(names) == 1 and n_hidden != 1):
            names = names * n_hidden
        elif len(names) == n_hidden + 1:
            if names[-1] != "identity":
                raise LipoptError(f"{src}: the last layer's activation must be 'identity', got {names[-1]!r}")
            names = names[:-1]
        elif len(names) != n_hidden:
            raise LipoptError(f"{src}: activation has {len(names)} entries for {n_hidden} hidden layers")
    else:
        names = ["relu"] * n_hidden
    alphas: list[float | None] = [None] * n_hidden
    if "alpha" in arrays:
        raw_alpha = _real_array(arrays["alpha"], "alpha", src).ravel()
        if raw_alpha.size == 1:
            alphas = [float(raw_alpha[0])] * n_hidden
        elif raw_alpha.size == n_hidden:
            alphas = [float(a) for a in raw_alpha]
        else:
            raise LipoptError(f"{src}: alpha has {raw_alpha.size} entries for {n_hidden} hidden layers")
    acts = []
    for act_name, alpha in zip(names, alphas, strict=True):
        a = _DEFAULT_ALPHA.get(act_name, 0.01) if alpha is None else alpha
        try:
            acts.append(Activation(act_name, a))
        except LipoptError as err:
            raise LipoptError(f"{src}: {err}") from None
    return acts


def save_npz(
    net: Network,
    path: PathLike,
    *,
    extra: Mapping[str, Any] | None = None,
    compressed: bool = True,
) -> Path:
    """Write ``net`` in the npz format read by :func:`load_network`; returns the path written.

    Dense layers are stored as ``W{i}``; scipy.sparse layers in CSR form as ``W{i}_data``,
    ``W{i}_indices``, ``W{i}_indptr``, ``W{i}_shape`` (so sparsity survives the round trip).
    ``activation`` is a single string when all hidden layers share it, else one per hidden
    layer; ``alpha`` is written when a hidden layer is ``leaky_relu`` or ``elu``. ``extra``
    adds metadata arrays (ignored by the loader); they must not clash with reserved keys.
    A ``.npz`` suffix is appended to ``path`` if missing.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(net.layers):
        w = layer.weight
        if sp.issparse(w):
            csr = sp.csr_matrix(w)
            csr.sort_indices()
            arrays[f"W{i}_data"] = np.asarray(csr.data, dtype=float)
            arrays[f"W{i}_indices"] = np.asarray(csr.indices, dtype=np.int64)
            arrays[f"W{i}_indptr"] = np.asarray(csr.indptr, dtype=np.int64)
            arrays[f"W{i}_shape"] = np.asarray(csr.shape, dtype=np.int64)
        else:
            arrays[f"W{i}"] = np.asarray(w, dtype=float)
        arrays[f"b{i}"] = np.asarray(layer.bias, dtype=float)
    hidden = [layer.activation for layer in net.layers[:-1]]
    if hidden:
        names = [a.name for a in hidden]
        arrays["activation"] = np.array(names[0]) if len(set(names)) == 1 else np.array(names)
        if any(n in _DEFAULT_ALPHA for n in names):
            alphas = [float(a.alpha) for a in hidden]
            arrays["alpha"] = np.array(alphas[0]) if len(set(alphas)) == 1 else np.array(alphas)
    if net.x0 is not None:
        arrays["x0"] = np.asarray(net.x0, dtype=float)
    for key, value in (extra or {}).items():
        if key in _RESERVED or _LAYER_KEY.match(key) or key in arrays:
            raise LipoptError(f"{path}: extra key {key!r} clashes with a reserved npz key")
        arrays[key] = np.asarray(value)
    writer = np.savez_compressed if compressed else np.savez
    try:
        with open(path, "wb") as fh:
            writer(fh, **arrays)
    except OSError as err:
        raise LipoptError(f"{path}: cannot write ({_first_line(err)})") from None
    return path


# ---- shared chain builder ----------------------------------------------------------------------
class _ChainBuilder:
    """Accumulates affine maps and activations into :class:`Dense` layers.

    Consecutive affine maps are composed; an activation closes the pending affine map into a
    layer (or, after another activation, gets an identity affine map of its own).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.layers: list[Dense] = []
        self.pending: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def width(self) -> int | None:
        """Current feature dimension, if known (None before the first affine map)."""
        if self.pending is not None:
            return int(self.pending[0].shape[0])
        if self.layers:
            return self.layers[-1].out_dim
        return None

    def affine(self, w: np.ndarray, b: np.ndarray | None, what: str) -> None:
        w = np.asarray(w, dtype=float)
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=float).reshape(-1)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise LipoptError(
                f"{self.source}: {what}: weight shape {w.shape} and bias shape {b.shape} "
                "do not form an affine map"
            )
        width = self.width
        if width is not None and w.shape[1] != width:
            raise LipoptError(
                f"{self.source}: {what} expects {w.shape[1]} inputs but the previous layer has "
                f"{width} outputs (shape mismatch)"
            )
        if self.pending is not None:
            pw, pb = self.pending
            self.pending = (w @ pw, w @ pb + b)
        else:
            self.pending = (w, b)

    def diagonal(self, scale: np.ndarray, shift: np.ndarray, what: str) -> None:
        """Elementwise ``x ↦ scale·x + shift`` (scalars broadcast to the current width)."""
        scale = np.asarray(scale, dtype=float).reshape(-1)
        shift = np.asarray(shift, dtype=float).reshape(-1)
        width = self.width
        if width is None:
            sizes = {scale.size, shift.size} - {1}
            if len(sizes) != 1:
                raise LipoptError(
                    f"{self.source}: {what} before the first linear layer has an unknown or "
                    "inconsistent width"
                )
            width = sizes.pop()
        try:
            scale = np.broadcast_to(scale, (width,))
            shift = np.broadcast_to(shift, (width,))
        except ValueError:
            raise LipoptError(
                f"{self.source}: {what}: constant of size {max(scale.size, shift.size)} "
                f"does not broadcast to width {width} (shape mismatch)"
            ) from None
        self.affine(np.diag(scale), shift, what)

    def activation(self, act: Activation, what: str) -> None:
        if act.name == "identity":
            return
        if self.pending is None:
            if not self.layers:
                raise LipoptError(
                    f"{self.source}: {what} comes before the first linear layer; a network "
                    "must start with an affine map"
                )
            if act.name == "relu" and self.layers[-1].activation.name == "relu":
                return  # relu ∘ relu = relu
            n = self.layers[-1].out_dim
            self.pending = (np.eye(n), np.zeros(n))
        w, b = self.pending
        self.layers.append(Dense(w, b, act))
        self.pending = None

    def finish(self) -> list[Dense]:
        if self.pending is not None:
            w, b = self.pending
            self.layers.append(Dense(w, b, IDENTITY))
            self.pending = None
        elif not self.layers:
            raise LipoptError(f"{self.source}: no linear layer found")
        elif self.layers[-1].activation.name != "identity":
            n = self.layers[-1].out_dim  # the model ends in an activation
            self.layers.append(Dense(np.eye(n), np.zeros(n), IDENTITY))
        return self.layers


def _make_activation(name: str, alpha: float | None, source: str, what: str) -> Activation:
    try:
        return Activation(name, _DEFAULT_ALPHA.get(name, 0.01) if alpha is None else alpha)
    except LipoptError as err:
        raise LipoptError(f"{source}: {what}: {err}") from None


# ---- PyTorch -----------------------------------------------------------------------------------
def _import_torch(what: str) -> Any:
    try:
        import torch
    except ImportError:
        raise LipoptError(f"{what} requires the 'torch' extra: pip install lipopt[torch]") from None
    return torch


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _load_torch_file(path: Path, *, input_shape: Sequence[int] | None, name: str | None) -> Network:
    torch = _import_torch(f"loading {path}")
    src = str(path)
    try:
        if _is_torchscript_archive(path):
            obj = torch.jit.load(str(path), map_location="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for corrupt files
        raise LipoptError(f"{src}: cannot be read by torch ({_first_line(err)})") from None
    if isinstance(obj, torch.nn.Module):
        return from_torch(obj, input_shape=input_shape, name=name or path.stem, source=src)
    if isinstance(obj, Mapping):
        raise LipoptError(
            f"{src}: holds a {type(obj).__name__} (a state_dict?), not a module; save the "
            "whole model with torch.save(model, path) or pass the nn.Module itself"
        )
    raise LipoptError(f"{src}: holds a {type(obj).__name__}, not a torch.nn.Module")


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _torch_kind(module: Any) -> str:
    """Class name of a module (the original one for TorchScript modules)."""
    return str(getattr(module, "original_name", None) or type(module).__name__)


def _module_const(module: Any, attr: str, op: str, index: int, src: str, what: str) -> float:
    """A hyper-parameter such as ``negative_slope``, also from traced TorchScript modules.

    Traced modules drop these attributes; the value is then read from the constant argument
    ``index`` of the ``aten::{op}`` call in the module's graph.
    """
    if hasattr(module, attr):
        return float(getattr(module, attr))
    graph = getattr(module, "graph", None)
    if graph is not None:
        for node in graph.nodes():
            if node.kind() == f"aten::{op}":
                inputs = list(node.inputs())
                value = inputs[index].toIValue() if index < len(inputs) else None
                if value is not None:
                    return float(value)
    raise LipoptError(f"{src}: {what}: cannot read its {attr}")


def _tensor(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def from_torch(
    module: Any,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    source: str | None = None,
    verify: bool = True,
) -> Network:
    """Convert a PyTorch module (``nn.Sequential`` or nested children, or TorchScript).

    Supported: ``nn.Linear``, ``ReLU``, ``LeakyReLU`` (slope → alpha), ``ELU``, ``Tanh``,
    ``Sigmoid``, ``Softplus`` (``beta ≠ 1`` via exact rescaling of the neighbouring affine maps),
    ``Flatten``, ``Identity``, ``Dropout`` (ignored); containers are walked child by child in
    registration order. With ``verify`` (default) the result is checked against the module's
    own forward pass on random inputs (when it can be run), so a custom ``forward`` that does
    not apply its children in order is reported instead of silently mis-converted.
    """
    torch = _import_torch("converting a PyTorch module")
    if not isinstance(module, torch.nn.Module):
        raise LipoptError(f"expected a torch.nn.Module, got {type(module).__name__}")
    src = source or f"torch module {_torch_kind(module)}"
    builder = _ChainBuilder(src)
    _walk_torch(module, builder, "model")
    layers = builder.finish()
    net = _make_network(layers, name or _torch_kind(module), None, src)
    if verify:
        _verify_torch(module, net, input_shape, src, torch)
    return net


def _walk_torch(module: Any, builder: _ChainBuilder, where: str) -> None:
    kind = _torch_kind(module)
    what = f"{where} ({kind})"
    src = builder.source
    if kind == "Linear":
        w = _tensor(module.weight)
        b = _tensor(module.bias) if getattr(module, "bias", None) is not None else None
        builder.affine(w, b, what)
    elif kind == "ReLU":
        builder.activation(Activation("relu"), what)
    elif kind == "LeakyReLU":
        slope = _module_const(module, "negative_slope", "leaky_relu", 1, src, what)
        builder.activation(_make_activation("leaky_relu", slope, src, what), what)
    elif kind == "ELU":
        alpha = _module_const(module, "alpha", "elu", 1, src, what)
        builder.activation(_make_activation("elu", alpha, src, what), what)
    elif kind == "Tanh":
        builder.activation(Activation("tanh"), what)
    elif kind == "Sigmoid":
        builder.activation(Activation("sigmoid"), what)
    elif kind == "Softplus":
        beta = _module_const(module, "beta", "softplus", 1, src, what)
        if beta <= 0:
            raise LipoptError(f"{src}: {what}: beta must be positive, got {beta}")
        if beta != 1.0:  # softplus_β(z) = softplus(β z) / β
            width = builder.width
            if width is None:
                raise LipoptError(f"{src}: {what} comes before the first linear layer")
            builder.diagonal(np.full(width, beta), np.zeros(width), what)
            builder.activation(Activation("softplus"), what)
            builder.diagonal(np.full(width, 1.0 / beta), np.zeros(width), what)
        else:
            builder.activation(Activation("softplus"), what)
    elif kind == "Flatten":
        start = _module_const(module, "start_dim", "flatten", 1, src, what)
        end = _module_const(module, "end_dim", "flatten", 2, src, what)
        if start != 1 or end != -1:
            raise LipoptError(f"{src}: {what}: only Flatten(start_dim=1, end_dim=-1) is supported")
    elif kind in ("Identity", "Dropout", "Dropout1d", "AlphaDropout"):
        pass
    elif kind in ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d"):
        raise LipoptError(
            f"{src}: {what}: {kind} is not yet supported (convolutions will be unrolled to "
            "sparse layers in a later version)"
        )
    else:
        children = list(module.named_children())
        if not children:
            raise LipoptError(
                f"{src}: {what}: unsupported module type {kind}; supported: "
                f"{', '.join(SUPPORTED_TORCH_MODULES)} (and containers of them)"
            )
        for child_name, child in children:
            _walk_torch(child, builder, f"{where}.{child_name}")


def _verify_torch(module: Any, net: Network, input_shape: Sequence[int] | None, src: str, torch: Any) -> None:
    """Compare ``net.forward`` with the module on a few random inputs (skipped if it can't run)."""
    params = list(module.parameters())
    dtype = params[0].dtype if params else torch.float64
    if not dtype.is_floating_point:
        return
    x = np.random.default_rng(0).standard_normal((4, net.input_dim))
    shape = (4, *tuple(int(d) for d in input_shape)) if input_shape else (4, net.input_dim)
    if int(np.prod(shape)) != x.size:
        return  # reported by load_network's input_shape check
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            y = module(torch.as_tensor(x.reshape(shape), dtype=dtype))
        y = y.detach().cpu().double().numpy().reshape(4, -1)
    except Exception:  # the module cannot run on this input layout: nothing to compare
        return
    finally:
        for m, training in modes:
            m.training = training
    ref = net.forward(x)
    tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 5e-2)
    scale = 1.0 + float(np.abs(ref).max())
    if y.shape != ref.shape or float(np.abs(y - ref).max()) > tol * scale:
        diff = "shape " + str(y.shape) if y.shape != ref.shape else f"{np.abs(y - ref).max():.3g}"
        raise LipoptError(
            f"{src}: the converted network does not reproduce the module's forward pass "
            f"(difference {diff}); its forward() must apply the children in registration order"
        )


# ---- ONNX --------------------------------------------------------------------------------------
def _import_onnx(what: str) -> Any:
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise LipoptError(f"{what} requires the 'onnx' extra: pip install lipopt[onnx]") from None
    return onnx


def _is_onnx_model(obj: Any) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(obj, onnx.ModelProto)


def from_onnx(model: Any, *, name: str | None = None) -> Network:
    """Convert an ONNX model (a ``ModelProto`` or a path to a ``.onnx`` file).

    The graph must be a linear chain from its single input to its single output. Supported
    ops: Gemm (``alpha``, ``beta``, ``transB``; ``transA`` only on a constant operand is not
    supported), MatMul with a constant right operand, Add/Sub/Mul/Div with a constant,
    Relu, LeakyRelu, Elu, Tanh, Sigmoid, Softplus, Flatten/Reshape to ``(batch, features)``,
    Identity, Dropout (ignored) and Constant. Initializers are read with ``onnx.numpy_helper``.
    """
    onnx = _import_onnx("loading an ONNX model")
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        src = str(path)
        if not path.is_file():
            raise LipoptError(f"{src}: no such file")
        try:
            model = onnx.load(str(path))
        except Exception as err:  # protobuf DecodeError and friends
            raise LipoptError(f"{src}: not a valid ONNX file ({_first_line(err)})") from None
        default_name = path.stem
    elif isinstance(model, onnx.ModelProto):
        src = f"onnx model {model.graph.name or '(unnamed)'}"
        default_name = model.graph.name or "onnx"
    else:
        raise LipoptError(f"expected an onnx.ModelProto or a path, got {type(model).__name__}")
    layers = _walk_onnx(model.graph, src, onnx)
    return _make_network(layers, name or default_name, None, src)


def _onnx_attrs(node: Any, onnx: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _walk_onnx(graph: Any, src: str, onnx: Any) -> list[Dense]:
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        consts[init.name] = numpy_helper.to_array(init)
    data_inputs = [i.name for i in graph.input if i.name not in consts]
    if len(data_inputs) != 1:
        raise LipoptError(
            f"{src}: the graph must have exactly one data input, got {len(data_inputs)} "
            f"({', '.join(data_inputs) or 'none'})"
        )
    if len(graph.output) != 1:
        raise LipoptError(f"{src}: the graph must have exactly one output, got {len(graph.output)}")
    current = data_inputs[0]
    builder = _ChainBuilder(src)
    handlers: dict[str, Callable[[Any, str, list[str], dict[str, Any]], None]] = {}

    def const(node: Any, idx: int) -> np.ndarray:
        if idx >= len(node.input) or not node.input[idx]:
            return np.array([])
        name = node.input[idx]
        if name not in consts:
            raise LipoptError(
                f"{src}: node {node.name or node.op_type} ({node.op_type}): input {name!r} "
                "must be a constant (initializer)"
            )
        return np.asarray(consts[name], dtype=float)

    def gemm(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        if node.input[0] != ins[0] or int(attrs.get("transA", 0)):
            raise LipoptError(f"{src}: {what}: only Gemm(data, constant weight) with transA=0 is supported")
        b = const(node, 1)
        w = (b if int(attrs.get("transB", 0)) else b.T) * float(attrs.get("alpha", 1.0))
        c = const(node, 2)
        bias = None
        if c.size:
            try:
                bias = np.broadcast_to(c, (1, w.shape[0])).reshape(-1) * float(attrs.get("beta", 1.0))
            except ValueError:
                raise LipoptError(
                    f"{src}: {what}: bias of shape {c.shape} does not match {w.shape[0]} "
                    "outputs (shape mismatch)"
                ) from None
        builder.affine(w, bias, what)

    def matmul(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        if node.input[0] != ins[0]:
            raise LipoptError(f"{src}: {what}: only MatMul(data, constant weight) is supported")
        w = const(node, 1)
        if w.ndim != 2:
            raise LipoptError(f"{src}: {what}: weight must be 2-D, got shape {w.shape}")
        builder.affine(w.T, None, what)

    def elementwise(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        k = 1 if node.input[0] == ins[0] else 0
        c = const(node, k)
        if c.ndim > 1 and any(d != 1 for d in c.shape[:-1]):
            raise LipoptError(f"{src}: {what}: constant of shape {c.shape} is not per-feature")
        op = node.op_type
        one = np.ones(1)
        if op == "Add":
            builder.diagonal(one, c, what)
        elif op == "Sub":
            builder.diagonal(one if k == 1 else -one, -c if k == 1 else c, what)
        elif op == "Mul":
            builder.diagonal(c, np.zeros(1), what)
        elif k == 1:  # Div(data, c)
            if np.any(c == 0):
                raise LipoptError(f"{src}: {what}: division by zero")
            builder.diagonal(1.0 / c, np.zeros(1), what)
        else:
            raise LipoptError(f"{src}: {what}: Div(constant, data) is not affine")

    def act(name: str, alpha_attr: str | None = None) -> Callable[..., None]:
        def handler(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
            alpha = float(attrs[alpha_attr]) if alpha_attr and alpha_attr in attrs else None
            builder.activation(_make_activation(name, alpha, src, what), what)

        return handler

    def flatten(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        if int(attrs.get("axis", 1)) != 1:
            raise LipoptError(f"{src}: {what}: only Flatten with axis=1 is supported")

    def reshape(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        shape = const(node, 1).astype(int).ravel()
        if shape.size != 2:
            raise LipoptError(f"{src}: {what}: only reshapes to (batch, features) are supported, got {shape}")

    def passthrough(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        return None

    handlers.update(
        Gemm=gemm,
        MatMul=matmul,
        Add=elementwise,
        Sub=elementwise,
        Mul=elementwise,
        Div=elementwise,
        Relu=act("relu"),
        LeakyRelu=act("leaky_relu", "alpha"),
        Elu=act("elu", "alpha"),
        Tanh=act("tanh"),
        Sigmoid=act("sigmoid"),
        Softplus=act("softplus"),
        Flatten=flatten,
        Reshape=reshape,
        Identity=passthrough,
        Dropout=passthrough,
    )
    for node in graph.node:
        what = f"node {node.name or '(unnamed)'} ({node.op_type})"
        attrs = _onnx_attrs(node, onnx)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise LipoptError(f"{src}: {what}: only Constant nodes with a tensor 'value'")
            consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        handler = handlers.get(node.op_type)
        if handler is None:
            raise LipoptError(
                f"{src}: {what}: unsupported ONNX op {node.op_type}; supported: "
                f"{', '.join(SUPPORTED_ONNX_OPS)}"
            )
        ins = [i for i in node.input if i and i not in consts]
        if ins != [current]:
            raise LipoptError(
                f"{src}: {what}: the graph is not a linear chain (the node reads "
                f"{', '.join(ins) or 'only constants'} instead of the previous output "
                f"{current}); branching graphs are not supported"
            )
        handler(node, what, ins, attrs)
        current = node.output[0]
    if current != graph.output[0].name:
        raise LipoptError(
            f"{src}: the graph output {graph.output[0].name} is not the end of the chain "
            f"({current}); branching graphs are not supported"
        )
    return builder.finish()
