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

Convolutional networks: ``Conv2d`` / ``Conv``, average pooling, constant padding and
``Flatten`` are unrolled by :mod:`lipopt.conv` to scipy.sparse layers acting on inputs
flattened in PyTorch's C×H×W row-major order (so a network input is ``x.reshape(n, -1)``).
Eval-mode batch norm is folded into the neighbouring affine map. The sample shape
``(C, H, W)`` is needed to unroll a convolution: PyTorch modules take it from ``input_shape``
(``--input-shape C H W`` on the command line); ONNX graphs from their static input type, else
from ``input_shape``. Max pooling is rejected: its derivative is not a per-neuron diagonal.
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

from .conv import (
    MAXPOOL_UNSUPPORTED,
    adaptive_avgpool2d_matrix,
    avgpool2d_matrix,
    channel_vector,
    conv2d_bias,
    conv2d_matrix,
    pad2d_matrix,
    same_padding,
)
from .errors import LipoptError
from .network import ACTIVATIONS, IDENTITY, Activation, Dense, Matrix, Network, Residual

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
)

_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
_ALIASES = {"linear": "identity", "none": "identity", "leakyrelu": "leaky_relu"}
_LAYER_KEY = re.compile(r"^([Wb])(\d+)(?:_(data|indices|indptr|shape))?$")
_RESIDUAL_KEY = re.compile(r"^R(\d+)_(.+)$")  # a residual block's arrays (Residual.to_arrays)
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
            ``(1, 8, 8)``); checked against the network's input size and used to feed PyTorch
            modules that flatten image-shaped inputs. Required, as ``(C, H, W)``, to unroll
            the convolutions of a PyTorch module or of an ONNX graph without a static input
            shape.
        name: the network's name (default: the file stem or the model's class name).

    Raises:
        LipoptError: for a missing, unreadable or malformed file, an unsupported suffix, layer
            or op, or when an optional dependency (torch / onnx) is not installed.
    """
    if isinstance(path_or_module, Network):
        net = path_or_module
        source = f"network {net.name}"
        _check_no_empty_layers(net.layers, source)
        if name is not None and name != net.name:
            net = Network(net.layers, name=name, x0=net.x0)
    elif isinstance(path_or_module, (str, os.PathLike)):
        path = Path(path_or_module)
        source = str(path)
        suffix = path.suffix.lower()
        if path.is_dir():
            raise LipoptError(
                f"{path} is a directory, not a file; give a network file "
                f"({', '.join(SUPPORTED_SUFFIXES)})"
            )
        if suffix not in SUPPORTED_SUFFIXES:
            raise LipoptError(
                f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
            )
        if not path.exists():
            raise LipoptError(f"{path}: no such file")
        if suffix == ".npz":
            net = from_npz(path, name=name)
        elif suffix == ".onnx":
            net = from_onnx(path, input_shape=input_shape, name=name)
        else:
            net = _load_torch_file(path, input_shape=input_shape, name=name)
    elif _is_torch_module(path_or_module):
        source = f"torch module {_torch_kind(path_or_module)}"
        net = from_torch(path_or_module, input_shape=input_shape, name=name)
    elif _is_onnx_model(path_or_module):
        source = f"onnx model {path_or_module.graph.name or '(unnamed)'}"
        net = from_onnx(path_or_module, input_shape=input_shape, name=name)
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
    _check_no_empty_layers(layers, source)
    try:
        return Network(tuple(layers), name=name, x0=x0)
    except LipoptError as err:
        raise LipoptError(f"{source}: {err}") from None


def _empty_layer_problem(shape: tuple[int, ...], first: bool, last: bool) -> str | None:
    """Why a weight of ``shape`` (``out × in``) cannot be bounded, or None (``first``/``last``:
    the network's first/last weight)."""
    rows, cols = int(shape[0]), int(shape[1])
    if rows and cols:
        return None
    if cols == 0 and first:
        return "the network would have 0 inputs; the first weight needs at least one column"
    if rows == 0 and last:
        return "the network would have 0 outputs; the last weight needs at least one row"
    return (
        "a 0-width layer (no neurons) cuts the output off from the input; give the layer at "
        "least one neuron or remove it"
    )


def _check_no_empty_layers(layers: Sequence[Any], source: str) -> None:
    """Refuse weights with a 0 dimension (0 inputs, 0 outputs, 0-width hidden layers).

    ``Network`` accepts them, and every bound of such a network is 0, which is meaningless.
    """
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            shape = tuple(layer.weight.shape)
            why = _empty_layer_problem(shape, i == 0, i == last) if len(shape) == 2 else None
            if why is not None:
                raise LipoptError(f"{source}: layer {i} has a weight of shape {shape}: {why}")
            continue
        # a residual block: its own map (in_dim → out_dim), then the maps of its inner chain F
        inner = getattr(layer, "inner", ())
        shapes = [(layer.out_dim, layer.in_dim)] + [(d.out_dim, d.in_dim) for d in inner]
        for j, shape in enumerate(shapes):
            why = _empty_layer_problem(shape, i == 0 and j == 0, i == last and j == 0)
            if why is not None:
                raise LipoptError(
                    f"{source}: layer {i} (a residual block) has a {shape[1]} → {shape[0]} map: {why}"
                )


# ---- file sniffing -----------------------------------------------------------------------------
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header / an empty zip
_NPY_MAGIC = b"\x93NUMPY"
_NPZ_HINT = "save weights with numpy.savez(path, W0=..., b0=..., W1=..., ...)"
_TORCH_HINT = "save the model with torch.save(model, path)"
_ONNX_HINT = "export the model with torch.onnx.export or onnx.save"


def _read_head(path: Path, hint: str) -> bytes:
    """The first bytes of a network file, after checking that it is a readable, non-empty file."""
    src = str(path)
    if path.is_dir():
        raise LipoptError(f"{src} is a directory, not a file; {hint}")
    if not path.exists():
        raise LipoptError(f"{src}: no such file")
    if not path.is_file():
        raise LipoptError(f"{src} is not a regular file; {hint}")
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as err:
        raise LipoptError(f"{src}: cannot be read ({err.strerror or err}); check its permissions") from None
    if not head:
        raise LipoptError(f"{src} is empty (0 bytes); {hint}")
    return head


def _content_kind(head: bytes) -> str:
    """A short guess of what a file that is not the expected format holds (for messages)."""
    if head.startswith(_ZIP_MAGIC):
        return "a zip archive"
    if head.startswith(_NPY_MAGIC):
        return "a single numpy .npy array"
    if head[:1] == b"\x80":
        return "a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character may be cut at the end of the sample
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "binary data"
    if all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text):
        return "text"  # protobuf (ONNX) and pickles always hold control bytes
    return "binary data"


# ---- npz -------------------------------------------------------------------------------------
def from_npz(path: PathLike, *, name: str | None = None) -> Network:
    """Read a network from an npz archive in the format described in the module docstring."""
    path = Path(path)
    src = str(path)
    head = _read_head(path, _NPZ_HINT)
    if head.startswith(_NPY_MAGIC):
        raise LipoptError(f"{src}: holds a single .npy array, not an npz archive of W0, b0, …; {_NPZ_HINT}")
    if not head.startswith(_ZIP_MAGIC):
        raise LipoptError(
            f"{src}: not a valid npz file: not a numpy .npz archive (not a zip file; it holds "
            f"{_content_kind(head)}); {_NPZ_HINT}"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as err:
        raise LipoptError(f"{src}: cannot be read ({_first_line(err)})") from None
    except Exception:  # zipfile.BadZipFile and friends: the zip's central directory is unreadable
        raise LipoptError(
            f"{src}: not a valid npz file: a truncated or damaged zip archive (its table of "
            f"contents is missing or unreadable); copy the file again or {_NPZ_HINT}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LipoptError(f"{src}: holds a single .npy array, not an npz archive of W0, b0, …")
    with archive:
        names = list(archive.files)
        if not any(_LAYER_KEY.match(k) for k in names) and any(n.endswith("data.pkl") for n in names):
            raise LipoptError(
                f"{src}: not a valid npz file: it is a PyTorch file written by torch.save; "
                "rename it to .pt"
            )
        arrays = {}
        for key in names:
            try:
                value = archive[key]
            except ValueError as err:
                if "allow_pickle" in str(err) or "pickle" in str(err).lower():
                    raise LipoptError(
                        f"{src}: not a valid npz file: array {key!r} contains pickled Python objects "
                        f"(dtype=object), which lipopt does not load (unpickling can run code); save "
                        f"numeric arrays, e.g. numpy.savez(path, {key}=np.asarray(value, dtype=float))"
                    ) from None
                raise LipoptError(
                    f"{src}: not a valid npz file: array {key!r} is damaged ({_first_line(err)}); "
                    f"{_NPZ_HINT}"
                ) from None
            except Exception as err:  # BadZipFile (bad CRC), zlib.error, EOFError, a mangled header
                detail = f": {_first_line(err)}" if isinstance(err, zipfile.BadZipFile) else " cannot be read"
                raise LipoptError(
                    f"{src}: not a valid npz file: the zip archive is damaged (member {key!r}{detail}); "
                    f"copy the file again or {_NPZ_HINT}"
                ) from None
            if isinstance(value, bytes) and _LAYER_KEY.match(key):
                raise LipoptError(
                    f"{src}: not a valid npz file: member {key!r} is not a numpy .npy array (not "
                    f"written by numpy.savez); {_NPZ_HINT}"
                )
            arrays[key] = value
    if not any(_LAYER_KEY.match(k) for k in arrays):
        held = ", ".join(names[:5]) + (", …" if len(names) > 5 else "") if names else "nothing"
        raise LipoptError(
            f"{src}: no weight arrays found (expected keys W0, b0, W1, b1, …; the archive holds "
            f"{held}); {_NPZ_HINT}"
        )
    return _network_from_arrays(arrays, src, name or path.stem)


def _network_from_arrays(arrays: Mapping[str, np.ndarray], src: str, name: str) -> Network:
    weights: dict[int, Matrix] = {}
    biases: dict[int, np.ndarray] = {}
    sparse_parts: dict[int, dict[str, np.ndarray]] = {}
    residual_parts: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        r = _RESIDUAL_KEY.match(key)
        if r is not None:
            residual_parts.setdefault(int(r.group(1)), {})[r.group(2)] = value
            continue
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
    both = sorted(set(weights) & set(residual_parts))
    if both:
        raise LipoptError(f"{src}: layer {both[0]} has both W{both[0]} and residual R{both[0]}_* arrays")
    n_layers = max(set(weights) | set(residual_parts)) + 1
    missing = [f"W{i}" for i in range(n_layers) if i not in weights and i not in residual_parts]
    if missing:
        raise LipoptError(f"{src}: missing {', '.join(missing)} (layer keys must run W0 … W{n_layers - 1})")
    orphans = sorted(i for i in biases if i not in weights)
    if orphans:
        raise LipoptError(f"{src}: b{orphans[0]} has no matching W{orphans[0]}")

    layers_w: list[Matrix | None] = []
    layers_b: list[np.ndarray | None] = []
    for i in range(n_layers):
        if i in residual_parts:  # built below; its shapes are checked by Network
            layers_w.append(None)
            layers_b.append(None)
            continue
        w = weights[i]
        if w.ndim != 2:
            raise LipoptError(f"{src}: W{i} must be a 2-D matrix, got shape {w.shape}")
        why = _empty_layer_problem(w.shape, i == 0, i == n_layers - 1)
        if why is not None:
            raise LipoptError(f"{src}: W{i} has shape {tuple(w.shape)}: {why}")
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
        if i > 0 and layers_w[-1] is not None and layers_w[-1].shape[0] != w.shape[1]:
            raise LipoptError(
                f"{src}: W{i} has {w.shape[1]} columns but W{i - 1} has "
                f"{layers_w[-1].shape[0]} rows (shape mismatch)"
            )
        layers_w.append(w)
        layers_b.append(b)

    acts = _parse_activations(arrays, n_layers - 1, src)
    layers = []
    for i, (w, b) in enumerate(zip(layers_w, layers_b, strict=True)):
        act = acts[i] if i < n_layers - 1 else IDENTITY
        if w is not None:
            layers.append(Dense(w, b, act))
            continue
        try:
            layers.append(Residual.from_arrays(residual_parts[i], act, f"residual layer {i}"))
        except LipoptError as err:
            raise LipoptError(f"{src}: {err}") from None
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
    ``W{i}_indices``, ``W{i}_indptr``, ``W{i}_shape`` (so sparsity survives the round trip);
    a residual block ``i`` as ``R{i}_*`` arrays (:meth:`~lipopt.network.Residual.to_arrays`).
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
        arrays.update(layer.to_arrays(i))
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
        if key in _RESERVED or _LAYER_KEY.match(key) or _RESIDUAL_KEY.match(key) or key in arrays:
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
def _compose(w: Matrix, pw: Matrix) -> Matrix:
    """``w ∘ pw`` (``w @ pw``): sparse when both factors are, else a dense array."""
    if sp.issparse(w) and sp.issparse(pw):
        return _csr(w @ pw)
    if sp.issparse(pw):  # dense @ sparse, computed as (pwᵀ wᵀ)ᵀ to stay in scipy
        return np.asarray(pw.T @ np.asarray(w).T).T
    if sp.issparse(w):
        return np.asarray(w @ pw)
    return w @ pw


def _csr(m: Any) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=float)
    out.eliminate_zeros()
    out.sort_indices()
    return out


class _ChainBuilder:
    """Accumulates affine maps and activations into :class:`Dense` layers.

    Consecutive affine maps are composed; an activation closes the pending affine map into a
    layer (or, after another activation, gets an identity affine map of its own). Affine maps
    may be dense arrays or scipy.sparse matrices (unrolled convolutions and pooling); a product
    stays sparse when both factors are.

    ``shape`` tracks the shape of one sample of the current tensor (``(C, H, W)`` for images,
    ``(n,)`` for features, ``None`` while unknown); it starts as ``input_shape``. Image layers
    read it; ``Flatten`` makes it flat, which on the row-major flattened representation is
    the identity.
    """

    def __init__(self, source: str, input_shape: Sequence[int] | None = None) -> None:
        self.source = source
        self.layers: list[Dense] = []
        self.pending: tuple[Matrix, np.ndarray] | None = None
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        self.shape: tuple[int, ...] | None = self.input_shape

    @property
    def at_input(self) -> bool:
        """True before the first affine map (the current tensor is the network input)."""
        return self.pending is None and not self.layers

    @property
    def width(self) -> int | None:
        """Current feature dimension, if known (None before the first affine map)."""
        if self.pending is not None:
            return int(self.pending[0].shape[0])
        if self.layers:
            return self.layers[-1].out_dim
        if self.shape is not None:
            return int(np.prod(self.shape, dtype=np.int64))
        return None

    @property
    def sparse_mode(self) -> bool:
        """Whether new structural maps (diagonals, identities) should be sparse."""
        if self.pending is not None:
            return sp.issparse(self.pending[0])
        if self.layers:
            return self.layers[-1].is_sparse
        return self.shape is not None and len(self.shape) > 1

    def affine(
        self, w: Matrix, b: np.ndarray | None, what: str, out_shape: Sequence[int] | None = None
    ) -> None:
        """Append ``x ↦ w x + b``; ``out_shape`` is the new sample shape (default: flat)."""
        w = _csr(w) if sp.issparse(w) else np.asarray(w, dtype=float)
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=float).reshape(-1)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise LipoptError(
                f"{self.source}: {what}: weight shape {w.shape} and bias shape {b.shape} "
                "do not form an affine map"
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
        if self.pending is not None:
            pw, pb = self.pending
            self.pending = (_compose(w, pw), np.asarray(w @ pb).reshape(-1) + b)
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
        shape = self.shape if self.shape is not None else (width,)
        if self.pending is not None:  # fold into the pending affine map
            pw, pb = self.pending
            pw = _csr(sp.diags(scale) @ pw) if sp.issparse(pw) else scale[:, None] * pw
            self.pending = (pw, scale * pb + shift)
        else:
            w = _csr(sp.diags(scale)) if self.sparse_mode else np.diag(scale)
            self.pending = (w, shift.copy())
        self.shape = shape

    def channel_affine(self, scale: np.ndarray, shift: np.ndarray, what: str) -> None:
        """Per-channel ``x ↦ scale[c]·x + shift[c]`` (channel axis first; e.g. batch norm)."""
        shape = self.shape
        if shape is not None and len(shape) > 1:
            try:
                scale, shift = channel_vector(scale, shape), channel_vector(shift, shape)
            except LipoptError as err:
                raise LipoptError(f"{self.source}: {what}: {err}") from None
        self.diagonal(scale, shift, what)

    def image_shape(self, what: str, channels: int | None = None) -> tuple[int, int, int]:
        """The current ``(C, H, W)`` shape, required by convolution and pooling layers."""
        shape = self.shape
        if shape is None or (len(shape) != 3 and self.at_input):
            got = "" if shape is None else f" (got input_shape {shape})"
            raise LipoptError(
                f"{self.source}: {what}: a convolutional network needs --input-shape C H W "
                f"(input_shape=(C, H, W) in Python){got}"
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

    def reshape(self, shape: Sequence[int] | None, what: str) -> None:
        """Reinterpret the flattened tensor with a new sample shape (a no-op on the data)."""
        if shape is None:
            width = self.width
            self.shape = None if width is None else (width,)
            return
        shape = tuple(int(d) for d in shape)
        width = self.width
        if width is not None and int(np.prod(shape, dtype=np.int64)) != width:
            raise LipoptError(
                f"{self.source}: {what}: cannot reshape {width} features to {shape} (shape mismatch)"
            )
        self.shape = shape

    def _identity(self, n: int) -> Matrix:
        return sp.identity(n, format="csr", dtype=float) if self.sparse_mode else np.eye(n)

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
            self.pending = (self._identity(n), np.zeros(n))
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
            self.layers.append(Dense(self._identity(n), np.zeros(n), IDENTITY))
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
    src = str(path)
    torch = _import_torch(f"loading {path}")
    _check_torch_file(path)
    try:
        if _is_torchscript_archive(path):
            obj = torch.jit.load(str(path), map_location="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for corrupt files
        raise LipoptError(
            f"{src}: cannot be read by torch ({_short(_first_line(err))}); the file may be damaged: "
            f"{_TORCH_HINT}"
        ) from None
    if isinstance(obj, torch.nn.Module):
        return from_torch(obj, input_shape=input_shape, name=name or path.stem, source=src)
    if isinstance(obj, Mapping):
        raise LipoptError(
            f"{src}: holds a {type(obj).__name__} (a state_dict?), not a module; save the "
            "whole model with torch.save(model, path) or pass the nn.Module itself"
        )
    raise LipoptError(f"{src}: holds a {type(obj).__name__}, not a torch.nn.Module")


def _check_torch_file(path: Path) -> None:
    """Recognize files that are not ``torch.save`` / TorchScript output before unpickling them."""
    src = str(path)
    head = _read_head(path, _TORCH_HINT)
    if head.startswith(_ZIP_MAGIC):  # torch.save and TorchScript write zip archives
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (OSError, zipfile.BadZipFile, ValueError):
            raise LipoptError(
                f"{src}: cannot be read by torch: a truncated or damaged zip archive (its table of "
                f"contents is missing or unreadable); copy the file again or {_TORCH_HINT}"
            ) from None
        if names and all(n.endswith(".npy") for n in names):
            raise LipoptError(
                f"{src}: cannot be read by torch: it is a numpy .npz archive; rename it to .npz"
            )
        return
    if head[257:262] == b"ustar":  # the pre-0.4 tar format, left to torch.load
        return
    if head[:1] != b"\x80":  # legacy torch.save files are pickles (protocol ≥ 2)
        raise LipoptError(
            f"{src}: cannot be read by torch: not a PyTorch file (neither a torch.save zip archive "
            f"nor a pickle; it holds {_content_kind(head)}); {_TORCH_HINT}"
        )


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


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


_MISSING: Any = object()

# traced modules keep only tensors; hyper-parameters are read from these aten calls:
# {call: argument index}
_CONV_CALLS = {
    "stride": {"aten::_convolution": 3, "aten::_convolution_mode": 3, "aten::conv2d": 3},
    "padding": {"aten::_convolution": 4, "aten::_convolution_mode": 4, "aten::conv2d": 4},
    "dilation": {"aten::_convolution": 5, "aten::_convolution_mode": 5, "aten::conv2d": 5},
    "groups": {"aten::_convolution": 8, "aten::_convolution_mode": 6, "aten::conv2d": 6},
}
_AVGPOOL_CALLS = {
    name: {"aten::avg_pool2d": i}
    for i, name in enumerate(
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"), start=1
    )
}
_PAD_CALLS = {
    "padding": {"aten::constant_pad_nd": 1, "aten::pad": 1},
    "value": {"aten::constant_pad_nd": 2, "aten::pad": 3},
}


def _ivalue(value: Any) -> Any:
    """Python value of a TorchScript graph value (lists built by ``prim::ListConstruct``)."""
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_ivalue(v) for v in node.inputs()]
    return value.toIValue()


def _module_value(
    module: Any, attr: str, calls: Mapping[str, int], src: str, what: str, default: Any = _MISSING
) -> Any:
    """A (possibly tuple-valued) hyper-parameter, from the module or its traced graph.

    Traced TorchScript modules drop attributes such as ``stride``; the value is then argument
    ``calls[kind]`` of the first ``kind`` call in the module's graph.
    """
    if hasattr(module, attr):
        return getattr(module, attr)
    graph = getattr(module, "graph", None)
    if graph is not None and calls:
        for node in graph.nodes():
            index = calls.get(node.kind())
            if index is not None:
                inputs = list(node.inputs())
                if index < len(inputs):
                    return _ivalue(inputs[index])
    if default is not _MISSING:
        return default
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
    ``Conv2d`` (zero padding, any stride/dilation/groups, ``padding="same"``), ``AvgPool2d``,
    ``AdaptiveAvgPool2d``, ``ZeroPad2d``/``ConstantPad2d`` (all unrolled to sparse matrices by
    :mod:`lipopt.conv`), ``BatchNorm1d``/``BatchNorm2d`` (folded with their running statistics,
    i.e. eval-mode behaviour, into the neighbouring affine map), ``Flatten``, ``Unflatten``,
    ``Identity``, ``Dropout`` (ignored); containers are walked child by child in registration
    order. ``MaxPool2d`` is rejected (its derivative is not a per-neuron diagonal).

    ``input_shape`` (one sample, e.g. ``(C, H, W)``) is required by convolutional networks.
    With ``verify`` (default) the result is checked against the module's own forward pass on
    random inputs (when it can be run), so a custom ``forward`` that does not apply its children
    in order is reported instead of silently mis-converted.
    """
    torch = _import_torch("converting a PyTorch module")
    if not isinstance(module, torch.nn.Module):
        raise LipoptError(f"expected a torch.nn.Module, got {type(module).__name__}")
    src = source or f"torch module {_torch_kind(module)}"
    builder = _ChainBuilder(src, input_shape)
    _walk_torch(module, builder, "model")
    layers = builder.finish()
    net = _make_network(layers, name or _torch_kind(module), None, src)
    if verify:
        _verify_torch(module, net, input_shape, src, torch)
    return net


def _image_op(src: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a :mod:`lipopt.conv` builder, prefixing its errors with the source and layer."""
    try:
        return fn(*args, **kwargs)
    except LipoptError as err:
        raise LipoptError(f"{src}: {what}: {err}") from None


def _torch_conv2d(module: Any, builder: _ChainBuilder, what: str) -> None:
    src = builder.source
    w = _tensor(module.weight)
    b = _tensor(module.bias) if getattr(module, "bias", None) is not None else None
    mode = _module_value(module, "padding_mode", {}, src, what, default="zeros")
    if mode != "zeros":
        raise LipoptError(f"{src}: {what}: padding_mode={mode!r} is not supported (only 'zeros')")
    params = {key: _module_value(module, key, calls, src, what) for key, calls in _CONV_CALLS.items()}
    groups = int(params["groups"])
    shape = builder.image_shape(what, w.shape[1] * groups)
    m, out = _image_op(src, what, conv2d_matrix, w, shape, params["stride"], params["padding"],
                       params["dilation"], groups)
    builder.affine(m, conv2d_bias(b, out), what, out)


def _torch_avgpool2d(module: Any, builder: _ChainBuilder, what: str) -> None:
    src = builder.source
    p = {key: _module_value(module, key, calls, src, what) for key, calls in _AVGPOOL_CALLS.items()}
    shape = builder.image_shape(what)
    m, out = _image_op(
        src, what, avgpool2d_matrix, shape, p["kernel_size"], p["stride"], p["padding"],
        bool(p["count_include_pad"]), bool(p["ceil_mode"]), p["divisor_override"],
    )
    builder.affine(m, None, what, out)


def _torch_batchnorm(module: Any, builder: _ChainBuilder, what: str, kind: str) -> None:
    """Eval-mode batch norm ``γ (x − μ)/√(σ² + ε) + β`` as a per-channel affine map."""
    src = builder.source
    mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if mean is None or var is None:
        raise LipoptError(
            f"{src}: {what}: batch norm without running statistics (track_running_stats=False) "
            "normalizes by batch statistics and is not an affine map"
        )
    eps = float(_module_value(module, "eps", {"aten::batch_norm": 7}, src, what))
    mean, var = _tensor(mean), _tensor(var)
    gamma = _tensor(module.weight) if getattr(module, "weight", None) is not None else np.ones_like(mean)
    beta = _tensor(module.bias) if getattr(module, "bias", None) is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + eps)
    shape = builder.shape
    if kind == "BatchNorm2d":
        builder.image_shape(what, mean.size)
    elif shape is not None and shape[0] != mean.size:
        raise LipoptError(
            f"{src}: {what} has {mean.size} features but the tensor has shape {shape} (shape mismatch)"
        )
    builder.channel_affine(scale, beta - mean * scale, what)


def _torch_pad(module: Any, builder: _ChainBuilder, what: str) -> None:
    src = builder.source
    pad = [int(v) for v in _module_value(module, "padding", _PAD_CALLS["padding"], src, what)]
    value = float(_module_value(module, "value", _PAD_CALLS["value"], src, what, default=0.0) or 0.0)
    if len(pad) != 4:
        raise LipoptError(f"{src}: {what}: expected 4 paddings (left, right, top, bottom), got {pad}")
    shape = builder.image_shape(what)
    m, bias, out = _image_op(src, what, pad2d_matrix, shape, ((pad[2], pad[3]), (pad[0], pad[1])), value)
    builder.affine(m, bias, what, out)


def _walk_torch(module: Any, builder: _ChainBuilder, where: str) -> None:
    kind = _torch_kind(module)
    what = f"{where} ({kind})"
    src = builder.source
    if kind == "Linear":
        w = _tensor(module.weight)
        b = _tensor(module.bias) if getattr(module, "bias", None) is not None else None
        shape = builder.shape
        n_in = w.shape[1]
        if shape is not None and len(shape) > 1 and n_in != int(np.prod(shape)) and n_in == shape[-1]:
            raise LipoptError(
                f"{src}: {what} would act on the last axis of a tensor of shape {shape}; "
                "only Linear on flattened features is supported (add nn.Flatten() before it)"
            )
        builder.affine(w, b, what)
    elif kind == "Conv2d":
        _torch_conv2d(module, builder, what)
    elif kind == "AvgPool2d":
        _torch_avgpool2d(module, builder, what)
    elif kind == "AdaptiveAvgPool2d":
        size = _module_value(module, "output_size", {"aten::adaptive_avg_pool2d": 1}, src, what)
        m, out = _image_op(src, what, adaptive_avgpool2d_matrix, builder.image_shape(what), size)
        builder.affine(m, None, what, out)
    elif kind in ("ZeroPad2d", "ConstantPad2d"):
        _torch_pad(module, builder, what)
    elif kind in ("BatchNorm1d", "BatchNorm2d"):
        _torch_batchnorm(module, builder, what, kind)
    elif kind in ("MaxPool1d", "MaxPool2d", "MaxPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d"):
        raise LipoptError(f"{src}: {what}: {MAXPOOL_UNSUPPORTED.replace('MaxPool2d', kind)}")
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
        builder.reshape(None, what)
    elif kind == "Unflatten":
        dim = int(_module_value(module, "dim", {"aten::unflatten": 1}, src, what))
        size = _module_value(module, "unflattened_size", {"aten::unflatten": 2}, src, what)
        if dim != 1:
            raise LipoptError(f"{src}: {what}: only Unflatten(dim=1, …) of flat features is supported")
        builder.reshape(tuple(int(d) for d in size), what)
    elif kind in ("Identity", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout"):
        pass
    elif kind in ("Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"):
        raise LipoptError(f"{src}: {what}: {kind} is not supported (Conv2d is)")
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


def from_onnx(
    model: Any,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    verify: bool = True,
) -> Network:
    """Convert an ONNX model (a ``ModelProto`` or a path to a ``.onnx`` file).

    The graph must be a linear chain from its single input to its single output. Supported
    ops: Gemm (``alpha``, ``beta``, ``transB``; ``transA`` only on a constant operand is not
    supported), MatMul with a constant right operand, Add/Sub/Mul/Div with a constant (per
    feature, or per channel / pixel on images), Relu, LeakyRelu, Elu, Tanh, Sigmoid, Softplus,
    Conv (2-D; ``strides``, ``pads``, ``dilations``, ``group``, ``auto_pad``), AveragePool,
    GlobalAveragePool, BatchNormalization (inference), Pad (constant mode), Flatten, Reshape
    (to ``(batch, features)`` or ``(batch, C, H, W)``), Identity, Dropout (ignored) and
    Constant. Nodes whose inputs are all constants (shape arithmetic such as the pads that
    torch exports for ``ZeroPad2d``) are folded with ``onnx.reference``; ``Shape`` of the data
    is known from the sample shape (batch axis taken as 1). Convolution and pooling are
    unrolled to sparse layers by :mod:`lipopt.conv`; MaxPool is rejected. Initializers are
    read with ``onnx.numpy_helper``.

    The sample shape ``(C, H, W)`` is read from the graph input's type when it is static, else
    taken from ``input_shape`` (required for convolutional graphs with a symbolic shape). With
    ``verify`` (default) the result is compared with ``onnx.reference.ReferenceEvaluator`` on
    random inputs (skipped when the evaluator cannot run the graph).
    """
    onnx = _import_onnx("loading an ONNX model")
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        src = str(path)
        head = _read_head(path, _ONNX_HINT)
        kind = _content_kind(head)
        if kind in ("a zip archive", "a single numpy .npy array", "a Python pickle", "text"):
            raise LipoptError(
                f"{src}: not a valid ONNX file: it holds {kind}, not ONNX protobuf; {_ONNX_HINT}"
            )
        try:
            model = onnx.load(str(path))
        except OSError as err:  # e.g. missing external data files
            raise LipoptError(
                f"{src}: cannot read the model or its external data ({_first_line(err)})"
            ) from None
        except Exception:  # protobuf DecodeError and friends
            raise LipoptError(
                f"{src}: not a valid ONNX file (the protobuf cannot be parsed: the file is truncated, "
                f"damaged or not ONNX); {_ONNX_HINT}"
            ) from None
        if not model.HasField("graph") or not model.graph.node:
            raise LipoptError(
                f"{src}: not a valid ONNX file: it parses but holds no graph nodes; {_ONNX_HINT}"
            )
        default_name = path.stem
    elif isinstance(model, onnx.ModelProto):
        src = f"onnx model {model.graph.name or '(unnamed)'}"
        default_name = model.graph.name or "onnx"
    else:
        raise LipoptError(f"expected an onnx.ModelProto or a path, got {type(model).__name__}")
    layers, shape = _walk_onnx(model.graph, src, onnx, input_shape)
    net = _make_network(layers, name or default_name, None, src)
    if verify:
        _verify_onnx(model, net, shape, src)
    return net


def _onnx_attrs(node: Any, onnx: Any) -> dict[str, Any]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}


def _onnx_dims(value_info: Any) -> list[int | None] | None:
    """Dimensions of a graph input (``None`` for symbolic ones), or None without a shape."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim
    ]


def _onnx_sample_shape(
    value_info: Any, input_shape: Sequence[int] | None, src: str
) -> tuple[int, ...] | None:
    """The shape of one sample: static graph shape (without the batch axis), else ``input_shape``."""
    dims = _onnx_dims(value_info)
    static = tuple(dims[1:]) if dims is not None and len(dims) >= 2 and None not in dims[1:] else None
    given = tuple(int(d) for d in input_shape) if input_shape is not None else None
    if static is not None and given is not None and np.prod(static) != np.prod(given):
        raise LipoptError(
            f"{src}: input_shape {given} has {int(np.prod(given))} entries but the graph input "
            f"{value_info.name} has shape {static} ({int(np.prod(static))} entries)"
        )
    return static if static is not None else given  # type: ignore[return-value]


def _onnx_pads(
    attrs: Mapping[str, Any],
    spatial: tuple[int, int],
    kernel: tuple[int, int],
    strides: Sequence[int],
    dilations: Sequence[int],
    src: str,
    what: str,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` from ONNX ``pads = [top, left, bottom, right]`` or
    ``auto_pad``."""
    auto = str(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        lower = auto == "SAME_LOWER"
        return (
            same_padding(spatial[0], kernel[0], int(strides[0]), int(dilations[0]), lower),
            same_padding(spatial[1], kernel[1], int(strides[1]), int(dilations[1]), lower),
        )
    if auto == "VALID":
        return ((0, 0), (0, 0))
    if auto != "NOTSET":
        raise LipoptError(f"{src}: {what}: unknown auto_pad {auto!r}")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise LipoptError(f"{src}: {what}: expected 4 pads for a 2-D op, got {pads}")
    return ((pads[0], pads[2]), (pads[1], pads[3]))


def _onnx_pair(attrs: Mapping[str, Any], key: str, src: str, what: str) -> tuple[int, int]:
    values = [int(v) for v in attrs.get(key, [1, 1])]
    if len(values) != 2:
        raise LipoptError(f"{src}: {what}: only 2-D ops are supported ({key} = {values})")
    return values[0], values[1]


def _walk_onnx(
    graph: Any, src: str, onnx: Any, input_shape: Sequence[int] | None = None
) -> tuple[list[Dense], tuple[int, ...] | None]:
    """The chain of layers and the sample shape of the graph input (if known)."""
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        consts[init.name] = numpy_helper.to_array(init)
    data_inputs = [i for i in graph.input if i.name not in consts]
    if len(data_inputs) != 1:
        raise LipoptError(
            f"{src}: the graph must have exactly one data input, got {len(data_inputs)} "
            f"({', '.join(i.name for i in data_inputs) or 'none'})"
        )
    if len(graph.output) != 1:
        raise LipoptError(f"{src}: the graph must have exactly one output, got {len(graph.output)}")
    current = data_inputs[0].name
    sample_shape = _onnx_sample_shape(data_inputs[0], input_shape, src)
    builder = _ChainBuilder(src, sample_shape)
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

    def data_first(node: Any, what: str, ins: list[str]) -> None:
        if node.input[0] != ins[0]:
            raise LipoptError(f"{src}: {what}: the data must be the first input")

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

    def per_entry(c: np.ndarray, what: str) -> np.ndarray:
        """A constant broadcast against the current tensor (with its batch axis), flattened."""
        shape = builder.shape
        if shape is None or len(shape) == 1:
            if c.ndim > 1 and any(d != 1 for d in c.shape[:-1]):
                raise LipoptError(f"{src}: {what}: constant of shape {c.shape} is not per-feature")
            return c.reshape(-1)
        if c.ndim > len(shape) + 1 or (c.ndim == len(shape) + 1 and c.shape[0] != 1):
            raise LipoptError(f"{src}: {what}: constant of shape {c.shape} does not broadcast to {shape}")
        try:
            return np.broadcast_to(c, (1, *shape)).reshape(-1)
        except ValueError:
            raise LipoptError(
                f"{src}: {what}: constant of shape {c.shape} does not broadcast to {shape} (shape mismatch)"
            ) from None

    def elementwise(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        k = 1 if node.input[0] == ins[0] else 0
        c = per_entry(const(node, k), what)
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

    def conv(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        data_first(node, what, ins)
        w = const(node, 1)
        b = const(node, 2)
        if w.ndim != 4:
            raise LipoptError(f"{src}: {what}: only 2-D convolutions are supported (weight shape {w.shape})")
        kernel = (int(w.shape[2]), int(w.shape[3]))
        if "kernel_shape" in attrs and tuple(int(k) for k in attrs["kernel_shape"]) != kernel:
            raise LipoptError(f"{src}: {what}: kernel_shape {attrs['kernel_shape']} differs from the weight")
        group = int(attrs.get("group", 1))
        shape = builder.image_shape(what, int(w.shape[1]) * group)
        strides = _onnx_pair(attrs, "strides", src, what)
        dilations = _onnx_pair(attrs, "dilations", src, what)
        pads = _onnx_pads(attrs, shape[1:], kernel, strides, dilations, src, what)
        m, out = _image_op(src, what, conv2d_matrix, w, shape, strides, pads, dilations, group)
        builder.affine(m, conv2d_bias(b if b.size else None, out), what, out)

    def average_pool(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        shape = builder.image_shape(what)
        kernel = tuple(int(k) for k in attrs.get("kernel_shape", []))
        if len(kernel) != 2:
            raise LipoptError(f"{src}: {what}: only 2-D pooling is supported (kernel_shape {kernel})")
        if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
            raise LipoptError(f"{src}: {what}: dilated pooling is not supported")
        strides = _onnx_pair(attrs, "strides", src, what)
        pads = _onnx_pads(attrs, shape[1:], kernel, strides, (1, 1), src, what)  # type: ignore[arg-type]
        m, out = _image_op(
            src, what, avgpool2d_matrix, shape, kernel, strides, pads,
            bool(int(attrs.get("count_include_pad", 0))), bool(int(attrs.get("ceil_mode", 0))),
        )
        builder.affine(m, None, what, out)

    def global_average_pool(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        m, out = _image_op(src, what, adaptive_avgpool2d_matrix, builder.image_shape(what), 1)
        builder.affine(m, None, what, out)

    def max_pool(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        raise LipoptError(f"{src}: {what}: {MAXPOOL_UNSUPPORTED}")

    def batch_norm(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        data_first(node, what, ins)
        if int(attrs.get("training_mode", 0)):
            raise LipoptError(f"{src}: {what}: training_mode=1 normalizes by batch statistics (not affine)")
        gamma, beta, mean, var = (const(node, i) for i in range(1, 5))
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        builder.channel_affine(scale, beta - mean * scale, what)

    def pad(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        data_first(node, what, ins)
        if str(attrs.get("mode", "constant")) != "constant":
            raise LipoptError(f"{src}: {what}: only constant padding is supported")
        shape = builder.image_shape(what)
        pads = [int(p) for p in (const(node, 1) if len(node.input) > 1 else attrs.get("pads", []))]
        value = const(node, 2)
        axes = [int(a) % 4 for a in const(node, 3)] if len(node.input) > 3 and node.input[3] else [0, 1, 2, 3]
        if len(pads) != 2 * len(axes):
            raise LipoptError(f"{src}: {what}: {len(pads)} pads for {len(axes)} axes")
        full = dict.fromkeys(range(4), (0, 0))
        for i, axis in enumerate(axes):
            full[axis] = (pads[i], pads[i + len(axes)])
        if full[0] != (0, 0) or full[1] != (0, 0):
            raise LipoptError(f"{src}: {what}: only padding of the spatial axes is supported")
        m, bias, out = _image_op(
            src, what, pad2d_matrix, shape, (full[2], full[3]), float(value.ravel()[0]) if value.size else 0.0
        )
        builder.affine(m, bias, what, out)

    def flatten(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        if int(attrs.get("axis", 1)) != 1:
            raise LipoptError(f"{src}: {what}: only Flatten with axis=1 is supported")
        builder.reshape(None, what)

    def reshape(node: Any, what: str, ins: list[str], attrs: dict[str, Any]) -> None:
        target = const(node, 1).astype(int).ravel()
        if target.size < 2 or target[0] not in (-1, 0, 1):
            raise LipoptError(
                f"{src}: {what}: only reshapes that keep the batch axis, to (batch, features) or "
                f"(batch, C, H, W), are supported, got {target.tolist()}"
            )
        rest = [int(d) for d in target[1:]]
        shape = builder.shape
        for i, d in enumerate(rest):
            if d == 0:  # copy the input dimension
                if shape is None or i >= len(shape) or int(attrs.get("allowzero", 0)):
                    raise LipoptError(f"{src}: {what}: cannot resolve reshape target {target.tolist()}")
                rest[i] = shape[i]
        width = builder.width
        if rest.count(-1) > 1 or min(rest) < -1:
            raise LipoptError(f"{src}: {what}: invalid reshape target {target.tolist()}")
        if -1 in rest:
            if width is None:
                if len(rest) == 1:
                    builder.reshape(None, what)
                    return
                raise LipoptError(
                    f"{src}: {what}: cannot infer -1 in {target.tolist()} (unknown input shape)"
                )
            known = int(np.prod([d for d in rest if d != -1]))
            rest[rest.index(-1)] = width // max(known, 1)
        builder.reshape(rest, what)

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
        Conv=conv,
        AveragePool=average_pool,
        GlobalAveragePool=global_average_pool,
        MaxPool=max_pool,
        GlobalMaxPool=max_pool,
        BatchNormalization=batch_norm,
        Pad=pad,
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
        if node.op_type == "Shape" and list(node.input) == [current] and builder.shape is not None:
            # shape arithmetic (e.g. x.view(x.size(0), -1)); the batch axis is taken as 1
            full = np.array([1, *builder.shape], dtype=np.int64)
            start, end = int(attrs.get("start", 0)), attrs.get("end")
            consts[node.output[0]] = full[start : None if end is None else int(end)]
            continue
        if all(i in consts for i in node.input if i):
            _fold_constant(node, consts, src, what)  # e.g. the pads computation of torch's Pad
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
    return builder.finish(), sample_shape


def _fold_constant(node: Any, consts: dict[str, np.ndarray], src: str, what: str) -> None:
    """Evaluate a node whose inputs are all constants with ``onnx.reference`` (constant folding)."""
    try:
        from onnx.reference import ReferenceEvaluator

        feeds = {name: consts[name] for name in node.input if name}
        outputs = ReferenceEvaluator(node).run(None, feeds)
    except Exception as err:  # unknown op or evaluation failure
        raise LipoptError(
            f"{src}: {what}: unsupported ONNX op {node.op_type} (constant folding failed: "
            f"{_first_line(err)}); supported: {', '.join(SUPPORTED_ONNX_OPS)}"
        ) from None
    for name, value in zip(node.output, outputs, strict=False):
        consts[name] = np.asarray(value)


def _verify_onnx(model: Any, net: Network, shape: tuple[int, ...] | None, src: str) -> None:
    """Compare ``net.forward`` with ONNX's reference evaluator (skipped if it cannot run)."""
    try:
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return
    graph = model.graph
    consts = {init.name for init in graph.initializer}
    data = next(i for i in graph.input if i.name not in consts)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data.type.tensor_type.elem_type))
    except Exception:  # unknown or missing element type
        return
    if dtype.kind != "f":
        return
    dims = _onnx_dims(data)
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
    scale = 1.0 + float(np.abs(ref).max())
    if y.shape != ref.shape or float(np.abs(y - ref).max()) > tol * scale:
        diff = "shape " + str(y.shape) if y.shape != ref.shape else f"{np.abs(y - ref).max():.3g}"
        raise LipoptError(
            f"{src}: the converted network does not reproduce the ONNX graph's output "
            f"(difference {diff} against onnx.reference)"
        )
