"""Convolution / pooling unrolled to sparse matrices, and convolutional networks in the loaders."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt.conv import (
    MAXPOOL_UNSUPPORTED,
    adaptive_avgpool2d_matrix,
    avgpool2d_matrix,
    channel_vector,
    conv2d_bias,
    conv2d_matrix,
    flat_index,
    maxpool2d_matrix,
    pad2d_matrix,
    same_padding,
)
from lipopt.errors import LipoptError
from lipopt.loaders import from_torch, load_network, save_npz
from lipopt.network import Network

TOL = 1e-10


def _apply(m: sp.spmatrix, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``M · flatten(x)`` for a batch of tensors ``x`` (batch axis first)."""
    out = np.asarray(m @ x.reshape(len(x), -1).T).T
    return out if bias is None else out + bias


def _one_line(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


# ---- the matrices against torch.nn.functional ---------------------------------------------------
CONV_CASES = [
    # (C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
    (1, 8, 8, 3, 3, 1, 1, 1, 1),
    (3, 8, 8, 4, 3, 2, 0, 1, 1),
    (2, 7, 9, 4, (3, 2), (2, 1), (1, 2), 1, 1),
    (4, 8, 8, 6, 3, 1, "same", 1, 2),
    (4, 9, 8, 6, 3, 1, "same", 2, 2),
    (2, 6, 6, 4, 4, 1, "same", 1, 1),  # even kernel: asymmetric 'same' padding
    (3, 10, 7, 3, (2, 3), (2, 3), (1, 2), (2, 1), 3),  # depthwise
    (2, 6, 7, 4, 3, 3, "valid", 1, 1),
    (1, 5, 5, 2, 5, 1, 0, 1, 1),  # kernel covers the whole image
    (6, 5, 6, 4, (1, 3), 1, (0, 1), 1, 2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matrix_matches_torch(case: tuple) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    C, H, W, cout, k, stride, padding, dilation, groups = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(hash(str(case)) % 2**32)
    w = rng.standard_normal((cout, C // groups, kh, kw))
    b = rng.standard_normal(cout)
    m, out_shape = conv2d_matrix(w, (C, H, W), stride, padding, dilation, groups)
    assert sp.isspmatrix_csr(m)
    x = rng.standard_normal((4, C, H, W))
    with warnings.catch_warnings():  # torch warns about even kernels with padding="same"
        warnings.simplefilter("ignore", UserWarning)
        ref = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride, padding, dilation, groups)
    ref = ref.numpy()
    assert out_shape == ref.shape[1:]
    assert m.shape == (int(np.prod(out_shape)), C * H * W)
    np.testing.assert_allclose(_apply(m, x, conv2d_bias(b, out_shape)), ref.reshape(4, -1), rtol=0, atol=TOL)
    # every stored entry is a kernel weight: nnz ≤ C_out · (C_in/g) · kh · kw · H_out · W_out
    assert m.nnz <= cout * (C // groups) * kh * kw * out_shape[1] * out_shape[2]


def test_conv2d_asymmetric_explicit_padding() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 2))
    x = rng.standard_normal((3, 2, 6, 7))
    m, shape = conv2d_matrix(w, (2, 6, 7), stride=(2, 1), padding=((0, 2), (3, 1)), dilation=(1, 2))
    # F.pad takes (left, right, top, bottom)
    padded = F.pad(torch.tensor(x), (3, 1, 0, 2))
    ref = F.conv2d(padded, torch.tensor(w), stride=(2, 1), dilation=(1, 2)).numpy()
    assert shape == ref.shape[1:]
    np.testing.assert_allclose(_apply(m, x), ref.reshape(3, -1), rtol=0, atol=TOL)


def test_flat_index_and_bias_layout() -> None:
    shape = (2, 3, 4)
    x = np.arange(24.0).reshape(shape)
    c, h, w = np.meshgrid(*(np.arange(d) for d in shape), indexing="ij")
    np.testing.assert_array_equal(x.ravel()[flat_index(c, h, w, shape)], x)
    np.testing.assert_array_equal(conv2d_bias(np.array([1.0, 2.0]), (2, 1, 3)), [1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(conv2d_bias(None, (2, 1, 3)), np.zeros(6))
    np.testing.assert_array_equal(channel_vector(np.array([5.0, 7.0]), (2, 2)), [5, 5, 7, 7])
    assert same_padding(6, 4) == (1, 2) and same_padding(6, 4, lower=True) == (2, 1)
    assert same_padding(7, 3, stride=2) == (1, 1)


@pytest.mark.parametrize("shape", [(2, 7, 5), (1, 8, 8)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avgpool2d_matrix_matches_torch(shape: tuple[int, int, int], ceil_mode: bool) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(2).standard_normal((3, *shape))
    xt = torch.tensor(x)
    for k, stride, padding, include in itertools.product(
        [2, 3, (3, 2)], [None, 1, 2, (2, 1)], [0, 1], [True, False]  # padding ≤ kernel / 2
    ):
        m, out_shape = avgpool2d_matrix(shape, k, stride, padding, include, ceil_mode)
        ref = F.avg_pool2d(xt, k, stride, padding, ceil_mode, include).numpy()
        assert out_shape == ref.shape[1:], (k, stride, padding, include)
        np.testing.assert_allclose(_apply(m, x), ref.reshape(3, -1), rtol=0, atol=TOL)


def test_avgpool2d_divisor_override() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6))
    m, shape = avgpool2d_matrix((3, 6, 6), 3, 2, 1, divisor_override=4)
    ref = F.avg_pool2d(torch.tensor(x), 3, 2, 1, divisor_override=4).numpy()
    assert shape == ref.shape[1:]
    np.testing.assert_allclose(_apply(m, x), ref.reshape(2, -1), rtol=0, atol=TOL)


@pytest.mark.parametrize("size", [1, 2, 3, (2, 4), (None, 3), (7, 5)])
def test_adaptive_avgpool2d_matches_torch(size: Any) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(4).standard_normal((3, 2, 7, 5))
    m, shape = adaptive_avgpool2d_matrix((2, 7, 5), size)
    ref = F.adaptive_avg_pool2d(torch.tensor(x), size).numpy()
    assert shape == ref.shape[1:]
    np.testing.assert_allclose(_apply(m, x), ref.reshape(3, -1), rtol=0, atol=TOL)


def test_pad2d_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(5).standard_normal((3, 2, 4, 5))
    m, bias, shape = pad2d_matrix((2, 4, 5), ((1, 2), (-1, 3)), 0.5)  # a negative pad crops
    ref = F.pad(torch.tensor(x), (-1, 3, 1, 2), value=0.5).numpy()
    assert shape == ref.shape[1:]
    np.testing.assert_allclose(_apply(m, x, bias), ref.reshape(3, -1), rtol=0, atol=TOL)


def test_image_op_errors() -> None:
    w = np.ones((4, 1, 3, 3))
    with pytest.raises(LipoptError, match="groups=3 must divide"):
        conv2d_matrix(w, (3, 5, 5), groups=3)
    with pytest.raises(LipoptError, match="expects 2 input channels"):
        conv2d_matrix(w, (4, 5, 5), groups=2)
    with pytest.raises(LipoptError, match="strided"):
        conv2d_matrix(w, (1, 5, 5), stride=2, padding="same")
    with pytest.raises(LipoptError, match="does not fit"):
        conv2d_matrix(w, (1, 2, 5))
    with pytest.raises(LipoptError, match="non-negative"):
        conv2d_matrix(w, (1, 5, 5), padding=-1)
    with pytest.raises(LipoptError, match=r"\(C, H, W\)"):
        conv2d_matrix(w, (5, 5))
    with pytest.raises(LipoptError, match="C_out, C_in/groups"):
        conv2d_matrix(np.ones((3, 3)), (1, 5, 5))
    with pytest.raises(LipoptError, match="does not fit"):
        avgpool2d_matrix((1, 2, 2), 3)
    with pytest.raises(LipoptError) as exc:
        maxpool2d_matrix((1, 4, 4), 2)
    _one_line(exc, MAXPOOL_UNSUPPORTED)


# ---- convolutional networks ---------------------------------------------------------------------
def _small_cnn(torch):  # type: ignore[no-untyped-def]
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, stride=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 1),
    ).double()


def _torch_gradient(torch, model, x: np.ndarray, c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:  # type: ignore[no-untyped-def]
    xt = torch.tensor(x.reshape(len(x), *shape), requires_grad=True)
    out = model(xt)
    (out @ torch.tensor(c)).sum().backward()
    return xt.grad.numpy().reshape(len(x), -1)


def _check_network(  # type: ignore[no-untyped-def]
    torch, model, net: Network, shape: tuple[int, ...], atol: float = 1e-8, polynomial: bool = True
) -> None:
    """Forward outputs, gradients and (optionally) the norm-gradient polynomial against torch."""
    from lipopt.problems import gradient_polynomial

    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, net.input_dim))
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor(x.reshape(6, *shape))).numpy().reshape(6, -1)
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=atol)
    c = rng.standard_normal(net.output_dim)
    grad = net.gradient(x, c)
    np.testing.assert_allclose(grad, _torch_gradient(torch, model, x, c, shape), rtol=0, atol=atol)
    if not polynomial:
        return
    # P(t, s) at t = sign(∇f), s = σ'(z) per site (variable order: t, then the sites) is ‖∇f‖₁
    P = gradient_polynomial(net, c)
    assert P.n_vars == net.input_dim + sum(net.hidden_sizes)
    zs = net.pre_activations(x)
    slopes = [site.activation.derivative(z) for site, z in zip(net.sites, zs, strict=True)]
    points = np.hstack([np.sign(grad), *slopes])
    np.testing.assert_allclose(P.evaluate(points), np.abs(grad).sum(axis=1), rtol=1e-10, atol=1e-12)


def test_small_cnn_from_torch() -> None:
    torch = pytest.importorskip("torch")
    model = _small_cnn(torch)
    with pytest.raises(LipoptError) as exc:
        from_torch(model)
    _one_line(exc, "Conv2d", "a convolutional network needs --input-shape C H W")
    net = from_torch(model, input_shape=(1, 8, 8))
    assert net.architecture() == "64-192-36-1"
    assert [layer.activation.name for layer in net.layers] == ["relu", "relu", "identity"]
    assert net.layers[0].is_sparse and net.layers[1].is_sparse
    assert net.layers[0].nnz() < 9 * 192  # border taps dropped
    assert net.layers[1].nnz() == 36 * 27
    _check_network(torch, model, net, (1, 8, 8))


def test_small_cnn_via_onnx(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    model = _small_cnn(torch).eval()
    path = tmp_path / "cnn.onnx"
    _export(torch, model, (1, 8, 8), path)
    net = load_network(path)  # the sample shape comes from the graph's static input type
    assert net.architecture() == "64-192-36-1"
    assert net.layers[0].is_sparse
    _check_network(torch, model, net, (1, 8, 8))
    direct = from_torch(model, input_shape=(1, 8, 8))
    for a, b in zip(net.layers, direct.layers, strict=True):
        assert abs(sp.csr_matrix(a.weight) - sp.csr_matrix(b.weight)).max() < 1e-12
    with pytest.raises(LipoptError, match="input_shape"):
        load_network(path, input_shape=(1, 9, 9))


def _export(torch, model, shape: tuple[int, ...], path: Path) -> None:  # type: ignore[no-untyped-def]
    dtype = next(model.parameters()).dtype
    try:
        torch.onnx.export(
            model,
            (torch.zeros(1, *shape, dtype=dtype),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    except Exception as err:  # environment problem (exporter dependencies)
        pytest.skip(f"torch.onnx.export failed: {err}")


def _rich_cnn(torch):  # type: ignore[no-untyped-def]
    nn = torch.nn
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding="same", groups=2),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.1),
        nn.ZeroPad2d((1, 0, 2, 1)),
        nn.Conv2d(4, 3, 3, stride=2, dilation=(2, 1), bias=False),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),  # ONNX export supports only the global case with a dynamic batch
        nn.Flatten(),
        nn.Linear(3, 5),
        nn.BatchNorm1d(5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).double()
    with torch.no_grad():  # non-trivial running statistics
        for bn in (model[1], model[10]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_rich_cnn_torch_torchscript_and_onnx(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = _rich_cnn(torch)
    shape = (2, 6, 5)
    net = load_network(model, input_shape=shape)
    # BatchNorm folded: conv1+bn | pad+conv2+pool | adaptive pool+linear+bn | linear
    assert net.architecture() == "60-120-36-5-3"
    assert [layer.activation.name for layer in net.layers] == ["leaky_relu", "tanh", "relu", "identity"]
    assert net.layers[0].is_sparse and net.layers[1].is_sparse and not net.layers[2].is_sparse
    _check_network(torch, model, net, shape)
    x = torch.zeros(1, *shape, dtype=torch.float64)
    torch.save(model, tmp_path / "model.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    torch.jit.save(torch.jit.trace(model, x, check_trace=False), tmp_path / "traced.pth")
    for name in ("model.pt", "scripted.pt", "traced.pth"):
        other = load_network(tmp_path / name, input_shape=shape, trust_pickle=name == "model.pt")
        assert other.architecture() == net.architecture()
        _check_network(torch, model, other, shape, polynomial=False)
    if pytest.importorskip("onnx"):
        _export(torch, model, shape, tmp_path / "rich.onnx")
        onnx_net = load_network(tmp_path / "rich.onnx")
        _check_network(torch, model, onnx_net, shape, polynomial=False)


def test_unflatten_then_conv() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Linear(6, 32),
        nn.Unflatten(1, (2, 4, 4)),
        nn.Conv2d(2, 2, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 2),
    ).double()
    net = load_network(model)  # the input is flat: no input shape needed
    assert net.architecture() == "6-8-2"
    _check_network(torch, model, net, (6,))


def test_torch_conv_errors() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    cases = [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 1)), (1, 6, 6),
         ["MaxPool2d is not supported", "AvgPool2d or a strided convolution"]),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(4, 1)), (1, 6, 6),
         ["last axis", "nn.Flatten()"]),
        (nn.Sequential(nn.Linear(4, 4), nn.Conv2d(1, 2, 3)), (4,), ["needs a C×H×W input"]),
        (nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 6, 6), ["expects 3 input channels"]),
        (nn.Sequential(nn.Conv2d(1, 2, 3)), (36,), ["needs --input-shape C H W", "(36,)"]),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 6, 6), ["padding_mode"]),
        (nn.Sequential(nn.Conv1d(1, 2, 3)), (1, 6), ["Conv1d is not supported"]),
        (nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False), nn.Linear(3, 1)), None,
         ["running statistics"]),
    ]
    for model, shape, parts in cases:
        with pytest.raises(LipoptError) as exc:
            load_network(model.double(), input_shape=shape)
        _one_line(exc, *parts)


# ---- ONNX graphs with image ops -----------------------------------------------------------------
def _image_graph(onnx, nodes, inits, in_dims, out_dims):  # type: ignore[no-untyped-def]
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "image_net",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, in_dims)],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, out_dims)],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_onnx_helper_graph_image_ops() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(8)
    inits = {
        "mean": rng.standard_normal((1, 2, 1, 1)),
        "std": rng.uniform(0.5, 2.0, (2, 1, 1)),
        "W1": rng.standard_normal((4, 2, 3, 3)),
        "B1": rng.standard_normal(4),
        "gamma": rng.uniform(0.5, 1.5, 4),
        "beta": rng.standard_normal(4),
        "mu": rng.standard_normal(4),
        "var": rng.uniform(0.5, 2.0, 4),
        "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64),
        "W2": rng.standard_normal((4, 1, 2, 2)),
        "shape": np.array([-1, 4], dtype=np.int64),
        "G": rng.standard_normal((3, 4)),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]),
        helper.make_node("Div", ["a", "std"], ["b"]),
        helper.make_node("Conv", ["b", "W1", "B1"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mu", "var"], ["d"], epsilon=1e-3),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("Pad", ["e", "pads"], ["f"]),
        helper.make_node("Conv", ["f", "W2"], ["g"], group=4, pads=[1, 0, 0, 1]),
        helper.make_node("AveragePool", ["g"], ["h"], kernel_shape=[2, 3], pads=[1, 1, 0, 1]),
        helper.make_node("Elu", ["h"], ["i"], alpha=0.5),
        helper.make_node("GlobalAveragePool", ["i"], ["j"]),
        helper.make_node("Reshape", ["j", "shape"], ["k"]),
        helper.make_node("Gemm", ["k", "G"], ["y"], transB=1),
    ]
    model = _image_graph(onnx, nodes, inits, ["N", 2, 7, 6], ["N", 3])
    net = load_network(model)
    assert net.input_dim == 84 and net.output_dim == 3
    assert net.layers[0].is_sparse and net.layers[1].is_sparse
    x = rng.standard_normal((5, 84))
    ref = ReferenceEvaluator(model).run(None, {"x": x.reshape(5, 2, 7, 6)})[0]
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-10)


def test_onnx_symbolic_image_shape_needs_input_shape() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    rng = np.random.default_rng(9)
    inits = {"W": rng.standard_normal((2, 1, 3, 3)), "shape": np.array([0, -1], dtype=np.int64),
             "G": rng.standard_normal((1, 18))}
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "G"], ["y"], transB=1),
    ]
    model = _image_graph(onnx, nodes, inits, ["N", 1, "H", "W"], ["N", 1])
    with pytest.raises(LipoptError) as exc:
        load_network(model)
    _one_line(exc, "(Conv)", "a convolutional network needs --input-shape C H W")
    net = load_network(model, input_shape=(1, 5, 5))
    assert net.architecture() == "25-18-1"
    with pytest.raises(LipoptError, match="expects 18 inputs"):
        load_network(model, input_shape=(1, 6, 6))


def test_onnx_maxpool_rejected() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2]),
    ]
    model = _image_graph(onnx, nodes, {"W": np.ones((1, 1, 3, 3))}, ["N", 1, 6, 6], ["N", 1, 2, 2])
    with pytest.raises(LipoptError) as exc:
        load_network(model)
    _one_line(exc, "(MaxPool)", MAXPOOL_UNSUPPORTED)


# ---- downstream: npz round trip, CLI info, sparsity graph ---------------------------------------
def test_save_npz_round_trip_keeps_conv_layers_sparse(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = from_torch(_small_cnn(torch), input_shape=(1, 8, 8))
    path = save_npz(net, tmp_path / "cnn.npz")
    with np.load(path) as raw:
        assert "W0_data" in raw.files and "W0" not in raw.files
    back = load_network(path)
    assert [layer.is_sparse for layer in back.layers] == [layer.is_sparse for layer in net.layers]
    x = np.random.default_rng(10).standard_normal((4, 64))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


def test_cli_info_reports_sparse_conv_layers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch = pytest.importorskip("torch")
    import json

    from lipopt.cli import main

    torch.save(_small_cnn(torch), tmp_path / "cnn.pt")
    args = ["info", str(tmp_path / "cnn.pt"), "--input-shape", "1", "8", "8", "--json", "--trust-pickle"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "64-192-36-1"
    assert info["layers"][0]["sparse"] and info["layers"][0]["density"] < 0.15
    assert main(["info", str(tmp_path / "cnn.pt"), "--trust-pickle"]) == 2
    assert "needs --input-shape C H W" in capsys.readouterr().err


def _conv_chain(torch, width: int, depth: int):  # type: ignore[no-untyped-def]
    """A 1-D-like conv chain on 1×1×width inputs: every layer mixes ±1 neighbouring pixels."""
    nn = torch.nn
    torch.manual_seed(5)
    mods: list[Any] = []
    channels = [1] + [2] * depth
    for cin, cout in zip(channels[:-1], channels[1:], strict=True):
        mods += [nn.Conv2d(cin, cout, (1, 3), padding=(0, 1)), nn.ReLU()]
    mods += [nn.Conv2d(channels[-1], 1, (1, 3), padding=(0, 1)), nn.Flatten()]
    return nn.Sequential(*mods).double()


def test_conv_chain_polynomial_graph_is_banded() -> None:
    torch = pytest.importorskip("torch")
    graph = pytest.importorskip("lipopt.graph")
    from lipopt.problems import gradient_polynomial

    width, depth = 40, 3
    model = _conv_chain(torch, width, depth)
    net = from_torch(model, input_shape=(1, 1, width))
    assert net.architecture() == f"{width}-{2 * width}-{2 * width}-{2 * width}-{width}"
    c = np.zeros(width)
    c[width // 2] = 1.0  # one output pixel: its receptive field is local
    local = gradient_polynomial(net, c)
    cs_local = graph.clique_structure(local, method="min-degree")
    assert cs_local.n_vars == width + 6 * width
    used = local.variables_used()
    assert len(used) < 60  # receptive field ±(depth+1) pixels
    assert cs_local.max_clique <= len(used)
    # all outputs (sum): the sparsity graph is a band along the pixel axis
    P = gradient_polynomial(net, np.ones(width))
    cs = graph.clique_structure(P, method="min-degree")
    assert cs.n_vars == 7 * width
    assert cs.max_clique <= cs.n_vars // 6, (cs.max_clique, cs.n_vars)
    _check_network(torch, model, net, (1, 1, width))
