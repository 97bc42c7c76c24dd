"""Load networks from npz archives, PyTorch modules and ONNX graphs; save them as npz.

Entry point: :func:`load_network`, which dispatches on the file suffix (``.npz``, ``.pt`` /
``.pth`` / ``.pt2``, ``.onnx``) or on the type of an in-memory object (``torch.nn.Module``,
``torch.export.ExportedProgram``, ``onnx.ModelProto``, :class:`~lipopt.network.Network`). Every failure is a
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
Models are converted to the graph IR of :mod:`lipopt.loading` (one front end per format, each a
table of op handlers) and lowered to blocks: consecutive affine maps are merged by matrix
product; two activations in a row get an identity affine layer between them; a model that ends
in an activation gets a final identity layer (so the network computes exactly the model's
function); two branches joined by an add (one of them affine) become a
:class:`~lipopt.network.Residual` block. Every conversion is checked against the source
model's forward pass. ``torch`` and ``onnx`` are optional and only imported when needed.

Convolutional networks: ``Conv2d`` / ``Conv``, average pooling, constant padding and
``Flatten`` are unrolled by :mod:`lipopt.conv` to scipy.sparse layers acting on inputs
flattened in PyTorch's C×H×W row-major order (so a network input is ``x.reshape(n, -1)``).
Eval-mode batch norm is folded into the neighbouring affine map. The sample shape
``(C, H, W)`` is needed to unroll a convolution: PyTorch modules take it from ``input_shape``
(``--input-shape C H W`` on the command line); ONNX graphs from their static input type, else
from ``input_shape``. Max pooling is rejected: its derivative is not a per-neuron diagonal.

Safe by default: nothing in a file is unpickled as code. TorchScript archives (``torch.jit.save``),
``torch.export`` programs (``.pt2``), ONNX, npz and weights-only checkpoints load; a pickled
Python object (e.g. ``torch.save(model)``) is refused unless ``trust_pickle=True``
(``--trust-pickle`` on the command line).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .loading.lower import lower
from .loading.onnx_front import SUPPORTED_ONNX_OPS
from .loading.torch_front import SUPPORTED_TORCH_MODULES
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

SUPPORTED_SUFFIXES = (".npz", ".pt", ".pth", ".pt2", ".onnx")

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
    trust_pickle: bool = False,
) -> Network:
    """Load a network from a file or an in-memory model.

    Args:
        path_or_module: a path to a ``.npz``, ``.pt``/``.pth`` (TorchScript from
            ``torch.jit.save``, or ``torch.save`` output), ``.pt2`` (``torch.export.save``) or
            ``.onnx`` file (external data beside it is read); or a ``torch.nn.Module``, a
            ``torch.export.ExportedProgram``, an ``onnx.ModelProto`` or a :class:`Network`
            (returned as is, renamed if ``name`` is given).
        input_shape: the shape of one input sample without the batch dimension (e.g.
            ``(1, 8, 8)``); checked against the network's input size and used to feed PyTorch
            modules that flatten image-shaped inputs. Required, as ``(C, H, W)``, to unroll
            the convolutions of a PyTorch module or of an ONNX graph without a static input
            shape.
        name: the network's name (default: the file stem or the model's class name).
        trust_pickle: unpickle Python objects in a ``torch.save`` file (e.g. a whole
            ``nn.Module``), which can run arbitrary code; only for files you trust. Without it
            such a file is refused (weights-only checkpoints, TorchScript and programs load).

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
            net = _load_torch_file(path, input_shape=input_shape, name=name, trust_pickle=trust_pickle)
    elif _is_torch_model(path_or_module):
        source = f"torch module {_torch_kind(path_or_module)}"
        net = from_torch(path_or_module, input_shape=input_shape, name=name)
    elif _is_onnx_model(path_or_module):
        source = f"onnx model {path_or_module.graph.name or '(unnamed)'}"
        net = from_onnx(path_or_module, input_shape=input_shape, name=name)
    else:
        raise LipoptError(
            f"cannot load a network from a {type(path_or_module).__name__}: expected a path "
            f"({', '.join(SUPPORTED_SUFFIXES)}), a torch.nn.Module, a torch.export.ExportedProgram or an "
            "onnx.ModelProto"
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
_TORCH_HINT = "save the model with torch.export.save or torch.jit.save"
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
    weights, biases, residual_parts = _layer_arrays(arrays, src)
    n_layers = max(set(weights) | set(residual_parts)) + 1
    missing = [f"W{i}" for i in range(n_layers) if i not in weights and i not in residual_parts]
    if missing:
        raise LipoptError(f"{src}: missing {', '.join(missing)} (layer keys must run W0 … W{n_layers - 1})")
    orphans = sorted(i for i in biases if i not in weights)
    if orphans:
        raise LipoptError(f"{src}: b{orphans[0]} has no matching W{orphans[0]}")
    acts = _parse_activations(arrays, n_layers - 1, src)
    layers: list = []
    previous: Matrix | None = None
    for i in range(n_layers):
        act = acts[i] if i < n_layers - 1 else IDENTITY
        if i in residual_parts:  # its shapes are checked by Network
            try:
                layers.append(Residual.from_arrays(residual_parts[i], act, f"residual layer {i}"))
            except LipoptError as err:
                raise LipoptError(f"{src}: {err}") from None
            previous = None
            continue
        w, b = _checked_dense(i, weights[i], biases.get(i), previous, n_layers, src)
        layers.append(Dense(w, b, act))
        previous = w
    x0 = None
    if "x0" in arrays:
        x0 = _real_array(arrays["x0"], "x0", src).ravel()
        if not np.all(np.isfinite(x0)):
            raise LipoptError(f"{src}: x0 contains NaN or inf values")
    return _make_network(layers, name, x0, src)


def _layer_arrays(
    arrays: Mapping[str, np.ndarray], src: str
) -> tuple[dict[int, Matrix], dict[int, np.ndarray], dict[int, dict[str, np.ndarray]]]:
    """Weights (dense ``W{i}`` or sparse ``W{i}_*``), biases ``b{i}`` and residual ``R{i}_*`` parts
    by layer index."""
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
            if part is None:
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
    return weights, biases, residual_parts


def _checked_dense(
    i: int, w: Matrix, b: np.ndarray | None, previous: Matrix | None, n_layers: int, src: str
) -> tuple[Matrix, np.ndarray]:
    """Layer ``i``'s weight and bias (zeros when missing), checked: 2-D, non-empty, finite, shapes
    that chain with the previous dense layer."""
    if w.ndim != 2:
        raise LipoptError(f"{src}: W{i} must be a 2-D matrix, got shape {w.shape}")
    why = _empty_layer_problem(w.shape, i == 0, i == n_layers - 1)
    if why is not None:
        raise LipoptError(f"{src}: W{i} has shape {tuple(w.shape)}: {why}")
    if not np.all(np.isfinite(w.data if sp.issparse(w) else w)):
        raise LipoptError(f"{src}: W{i} contains NaN or inf values")
    if b is None:
        b = np.zeros(w.shape[0])
    elif b.size != w.shape[0] or (b.ndim > 1 and max(b.shape) != b.size):
        raise LipoptError(
            f"{src}: b{i} has shape {b.shape} but W{i} has {w.shape[0]} outputs (shape mismatch)"
        )
    b = b.reshape(-1)
    if not np.all(np.isfinite(b)):
        raise LipoptError(f"{src}: b{i} contains NaN or inf values")
    if previous is not None and previous.shape[0] != w.shape[1]:
        raise LipoptError(
            f"{src}: W{i} has {w.shape[1]} columns but W{i - 1} has {previous.shape[0]} rows (shape mismatch)"
        )
    return w, b


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


# ---- PyTorch -----------------------------------------------------------------------------------
_PICKLE_HINT = (
    "unpickling can run arbitrary code, so lipopt does not do it by default: pass --trust-pickle "
    "(trust_pickle=True in Python) only for a file you trust, or save the model without pickled code "
    "(torch.export.save or torch.jit.save)"
)


def _import_torch(what: str) -> Any:
    try:
        import torch
    except ImportError:
        raise LipoptError(f"{what} requires the 'torch' extra: pip install lipopt[torch]") from None
    return torch


def _is_torch_model(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, (torch.nn.Module, torch.export.ExportedProgram))


def _torch_kind(module: Any) -> str:
    """Class name of a module (the original one for TorchScript modules)."""
    return str(getattr(module, "original_name", None) or type(module).__name__)


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _torch_file_kind(path: Path, trust_pickle: bool) -> str:
    """``torchscript``, ``program`` (torch.export.save) or ``pickle`` (torch.save), after
    recognizing files that are none of them."""
    src = str(path)
    head = _read_head(path, _TORCH_HINT)
    if head[257:262] == b"ustar" or head[:1] == b"\x80":  # the pre-0.4 tar format, legacy pickles
        return "pickle"
    if not head.startswith(_ZIP_MAGIC):  # torch.save, torch.jit.save and torch.export.save write zips
        raise LipoptError(f"{src}: cannot be read by torch: not a PyTorch file (neither a torch.save zip "
                          f"archive nor a pickle; it holds {_content_kind(head)}); {_TORCH_HINT}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        raise LipoptError(f"{src}: cannot be read by torch: a truncated or damaged zip archive (its table "
                          f"of contents is missing or unreadable); copy the file again or {_TORCH_HINT}"
                          ) from None
    if names and all(n.endswith(".npy") for n in names):
        raise LipoptError(f"{src}: cannot be read by torch: it is a numpy .npz archive; rename it to .npz")
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if not any(n.rsplit("/", 1)[-1] == "archive_format" for n in names) and path.suffix.lower() != ".pt2":
        return "pickle"
    if not trust_pickle and any("custom_obj_" in n or "opaque_obj_" in n for n in names):
        raise LipoptError(f"{src}: the program holds pickled Python objects; {_PICKLE_HINT}")
    return "program"


@contextlib.contextmanager
def _weights_only(force: bool) -> Iterator[None]:
    """Every ``torch.load`` meanwhile loads weights only (tensors and plain containers), also the
    ones inside ``torch.export.load`` that ask for unrestricted unpickling."""
    key, previous = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    if force:
        os.environ[key] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def _load_torch_file(
    path: Path, *, input_shape: Sequence[int] | None, name: str | None, trust_pickle: bool
) -> Network:
    """TorchScript code is compiled and plain tensors are read raw; a pickle of Python objects (e.g.
    a whole ``nn.Module`` saved with ``torch.save``) is refused unless ``trust_pickle``."""
    from .loading.torch_front import quiet

    src = str(path)
    torch = _import_torch(f"loading {path}")
    kind = _torch_file_kind(path, trust_pickle)
    try:
        with quiet(), _weights_only(not trust_pickle):
            if kind == "torchscript":
                obj = torch.jit.load(str(path), map_location="cpu")
            elif kind == "program":
                obj = torch.export.load(str(path))
            else:
                obj = torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        held = f" ({found.group(1)}, …)" if found else ""
        raise LipoptError(f"{src}: holds pickled Python objects{held}, as torch.save(model) writes for a "
                          f"whole nn.Module; {_PICKLE_HINT}") from None
    except Exception as err:  # torch raises many types for corrupt files
        raise LipoptError(f"{src}: cannot be read by torch ({_short(_first_line(err))}); the file may be "
                          f"damaged: {_TORCH_HINT}") from None
    if _is_torch_model(obj):
        return from_torch(obj, input_shape=input_shape, name=name or path.stem, source=src)
    if isinstance(obj, Mapping):
        raise LipoptError(f"{src}: holds a {type(obj).__name__} (a state_dict?), not a module: a state_dict "
                          "alone has no architecture; load it into its nn.Module (model.load_state_dict) and "
                          "pass the module, or save the model with torch.export.save or torch.jit.save")
    raise LipoptError(f"{src}: holds a {type(obj).__name__}, not a torch.nn.Module")


def from_torch(
    module: Any,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    source: str | None = None,
    verify: bool = True,
) -> Network:
    """Convert a PyTorch model: an ``nn.Module``, a TorchScript module or a ``torch.export``
    program (see :mod:`lipopt.loading.torch_front` for how, and the module docstring for what).

    ``input_shape`` (one sample, e.g. ``(C, H, W)``) is the shape the module is traced with;
    without it an ``nn.Module`` is traced on flat features of its first weight's input size
    (convolutional networks need it). With ``verify`` (default) the result is checked against
    the model's own forward pass on random inputs (when it can be run).
    """
    torch = _import_torch("converting a PyTorch module")
    from .loading import torch_front

    if not _is_torch_model(module):
        raise LipoptError(f"expected a torch.nn.Module or an ExportedProgram, got {type(module).__name__}")
    src = source or f"torch module {_torch_kind(module)}"
    if isinstance(module, torch.export.ExportedProgram):
        program, run, modules = module, module.module(), []
        inputs = program.graph_signature.user_inputs
        example = next(n for n in program.graph.nodes if n.name in inputs).meta["val"]
    else:
        program, example = torch_front.export_module(module, input_shape, src)
        run, modules = module, [module]
    graph = torch_front.program_graph(program, src)
    net = _make_network(lower(graph), name or _torch_kind(module), None, src)
    if verify:
        tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(example.dtype, 5e-2)
        run = torch_front.runner(run, modules, example)
        _verify(net, run, example.shape[1:], tol, src, "the module's forward pass")
    return net


def _verify(net: Network, run: Any, shape: Sequence[int], tol: float, src: str, against: str) -> None:
    """Compare ``net.forward`` with the source model's ``run`` on random inputs, up to ``tol``
    relative to the output's size (skipped when the source cannot run on this input layout)."""
    x = np.random.default_rng(0).standard_normal((4, net.input_dim))
    if int(np.prod(tuple(shape))) != net.input_dim:
        return  # reported by load_network's input_shape check
    try:
        y = run(x.reshape(4, *shape))
    except Exception:  # the source cannot run on this input layout: nothing to compare
        return
    ref = net.forward(x)
    if y.shape != ref.shape or float(np.abs(y - ref).max()) > tol * (1.0 + float(np.abs(ref).max())):
        diff = f"shape {y.shape}" if y.shape != ref.shape else f"{np.abs(y - ref).max():.3g}"
        raise LipoptError(f"{src}: the converted network does not reproduce {against} (difference {diff})")


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


def _read_onnx(path: Path, onnx: Any) -> Any:
    """The model of an ``.onnx`` file, with its external data (files beside it) loaded."""
    src = str(path)
    kind = _content_kind(_read_head(path, _ONNX_HINT))
    if kind in ("a zip archive", "a single numpy .npy array", "a Python pickle", "text"):
        raise LipoptError(f"{src}: not a valid ONNX file: it holds {kind}, not ONNX protobuf; {_ONNX_HINT}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf DecodeError and friends
        raise LipoptError(
            f"{src}: not a valid ONNX file (the protobuf cannot be parsed: the file is truncated, "
            f"damaged or not ONNX); {_ONNX_HINT}"
        ) from None
    try:  # tensors stored in files beside the model (onnx.save_model(..., save_as_external_data=True))
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(path.parent))
    except Exception as err:  # a missing or unreadable data file (OSError, onnx's ValidationError)
        raise LipoptError(f"{src}: cannot read the model's external data ({_first_line(err)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise LipoptError(f"{src}: not a valid ONNX file: it parses but holds no graph nodes; {_ONNX_HINT}")
    return model


def from_onnx(
    model: Any,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    verify: bool = True,
) -> Network:
    """Convert an ONNX model (a ``ModelProto`` or a path to a ``.onnx`` file, external data
    included); see :mod:`lipopt.loading.onnx_front` for the supported ops.

    The sample shape ``(C, H, W)`` is read from the graph input's type when it is static, else
    taken from ``input_shape`` (required for convolutional graphs with a symbolic shape). With
    ``verify`` (default) the result is compared with ``onnx.reference.ReferenceEvaluator`` on
    random inputs (skipped when the evaluator cannot run the graph).
    """
    onnx = _import_onnx("loading an ONNX model")
    from .loading import onnx_front

    if isinstance(model, (str, os.PathLike)):
        src, default_name = str(model), Path(model).stem
        model = _read_onnx(Path(model), onnx)
    elif isinstance(model, onnx.ModelProto):
        src = f"onnx model {model.graph.name or '(unnamed)'}"
        default_name = model.graph.name or "onnx"
    else:
        raise LipoptError(f"expected an onnx.ModelProto or a path, got {type(model).__name__}")
    graph = onnx_front.onnx_graph(model, input_shape, src)
    net = _make_network(lower(graph), name or default_name, None, src)
    run, dtype = onnx_front.runner(model)
    if verify and dtype.kind == "f":
        tol = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}.get(dtype, 5e-2)
        shape = graph.input_shape or (net.input_dim,)
        _verify(net, run, shape, tol, src, "the ONNX graph's output (onnx.reference)")
    return net
