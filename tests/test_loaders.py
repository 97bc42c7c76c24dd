"""Tests for lipopt.loaders: npz (shared/external, round trips, errors), PyTorch and ONNX."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import lipopt
from lipopt.errors import LipoptError
from lipopt.loaders import from_npz, load_network, save_npz
from lipopt.network import Activation, Dense, Network

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = ROOT.parent / "shared" / "external"
EXTERNAL_FILES = sorted(EXTERNAL.glob("*.npz")) if EXTERNAL.is_dir() else []
DIGITS = ROOT / "data" / "digits_mlp_64-32-32-10.npz"


def _random_net(rng: np.random.Generator, widths: list[int], acts: list[Activation]) -> Network:
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        act = acts[i] if i < len(acts) else Activation("identity")
        layers.append(Dense(rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out), act))
    return Network(tuple(layers), name="rand")


def _assert_one_line_error(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


# ---- npz: published networks -------------------------------------------------------------------
@pytest.mark.skipif(not EXTERNAL_FILES, reason="shared/external not available")
@pytest.mark.parametrize("path", EXTERNAL_FILES, ids=lambda p: p.name)
def test_external_npz_loads(path: Path) -> None:
    net = load_network(path)
    arch = path.stem.rsplit("_", 1)[-1]
    chain = re.fullmatch(r".*_W(\d+)_d(\d+)", path.stem)  # mlpchain_W{w}_d{d}: d layers of width w
    if chain:
        arch = "-".join([chain.group(1)] * (int(chain.group(2)) + 1))
    assert net.architecture() == arch
    assert net.name == path.stem
    assert all(layer.activation.name == "relu" for layer in net.layers[:-1])
    with np.load(path) as raw:
        for i, layer in enumerate(net.layers):
            np.testing.assert_array_equal(layer.weight, raw[f"W{i}"])
            # a missing b{i} means zeros (shared/external README)
            bias = raw[f"b{i}"] if f"b{i}" in raw.files else np.zeros(layer.weight.shape[0])
            np.testing.assert_array_equal(layer.bias, bias)
        if "x0" in raw.files:
            np.testing.assert_array_equal(net.x0, raw["x0"])
    x = np.random.default_rng(0).standard_normal((3, net.input_dim))
    assert net.forward(x).shape == (3, net.output_dim)


@pytest.mark.skipif(not EXTERNAL_FILES, reason="shared/external not available")
def test_certdnn_npz_has_x0() -> None:
    net = load_network(EXTERNAL / "certdnn_sdpnn_784-500-1.npz")
    assert net.x0 is not None and net.x0.shape == (784,)


def test_lazy_package_attribute() -> None:
    assert lipopt.load_network is load_network
    assert lipopt.save_npz is save_npz


# ---- npz: round trips --------------------------------------------------------------------------
def test_npz_round_trip_mixed_activations(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    acts = [Activation("leaky_relu", 0.2), Activation("elu", 0.7), Activation("tanh")]
    net = _random_net(rng, [5, 6, 7, 4, 3], acts)
    net = Network(net.layers, name="mixed", x0=rng.standard_normal(5))
    path = save_npz(net, tmp_path / "mixed.npz")
    back = load_network(path)
    assert [layer.activation for layer in back.layers] == [layer.activation for layer in net.layers]
    np.testing.assert_array_equal(back.x0, net.x0)
    x = rng.standard_normal((10, 5))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softplus", "identity"])
def test_npz_round_trip_single_activation(tmp_path: Path, act: str) -> None:
    rng = np.random.default_rng(2)
    net = Network.from_weights([rng.standard_normal((4, 3)), rng.standard_normal((2, 4))], None, act)
    back = load_network(save_npz(net, tmp_path / "n.npz"))
    with np.load(tmp_path / "n.npz") as raw:
        assert raw["activation"].ndim == 0 and str(raw["activation"]) == act
    x = rng.standard_normal((6, 3))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


def test_npz_round_trip_sparse(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    w0 = sp.random(20, 12, density=0.2, random_state=3, format="csr")
    net = Network.from_weights([w0, rng.standard_normal((3, 20))], [rng.standard_normal(20), np.zeros(3)])
    path = save_npz(net, tmp_path / "sparse")  # suffix appended
    assert path.name == "sparse.npz"
    with np.load(path) as raw:
        assert "W0" not in raw.files and "W0_data" in raw.files and "W1" in raw.files
    back = load_network(path)
    assert back.layers[0].is_sparse and not back.layers[1].is_sparse
    assert back.layers[0].nnz() == net.layers[0].nnz()
    x = rng.standard_normal((5, 12))
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=0, atol=1e-14)


def test_npz_extra_keys_ignored_and_reserved(tmp_path: Path) -> None:
    net = Network.from_weights([np.eye(2), np.ones((1, 2))])
    path = save_npz(net, tmp_path / "e.npz", extra={"accuracy": 0.5, "note": "hello"})
    assert load_network(path).architecture() == "2-2-1"
    with pytest.raises(LipoptError, match="reserved"):
        save_npz(net, tmp_path / "f.npz", extra={"W3": np.eye(2)})


def test_npz_missing_bias_is_zero_and_activation_forms(tmp_path: Path) -> None:
    w = [np.ones((3, 2)), np.ones((3, 3)), np.ones((1, 3))]
    np.savez(tmp_path / "a.npz", W0=w[0], W1=w[1], W2=w[2], b1=np.arange(3.0))
    net = load_network(tmp_path / "a.npz")
    np.testing.assert_array_equal(net.layers[0].bias, 0.0)
    np.testing.assert_array_equal(net.layers[1].bias, [0.0, 1.0, 2.0])
    assert [layer.activation.name for layer in net.layers] == ["relu", "relu", "identity"]

    np.savez(tmp_path / "b.npz", W0=w[0], W1=w[1], W2=w[2], activation=np.array(["tanh", "elu"]))
    net = load_network(tmp_path / "b.npz")
    assert [layer.activation.name for layer in net.layers] == ["tanh", "elu", "identity"]
    assert net.layers[1].activation.alpha == 1.0  # torch's default ELU scale

    np.savez(
        tmp_path / "c.npz",
        W0=w[0],
        W1=w[1],
        W2=w[2],
        activation=np.array(["leaky_relu", "relu", "identity"]),
        alpha=np.array(0.1),
    )
    net = load_network(tmp_path / "c.npz")
    assert net.layers[0].activation == Activation("leaky_relu", 0.1)


# ---- npz: errors -------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "nope.npz")
    _assert_one_line_error(exc, "nope.npz", "no such file")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "net.h5").write_bytes(b"x")
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "net.h5")
    _assert_one_line_error(exc, "net.h5", "unsupported file type", ".npz")


def test_unsupported_object() -> None:
    with pytest.raises(LipoptError, match="cannot load a network from a dict"):
        load_network({"W0": np.eye(2)})


def test_corrupt_npz(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(LipoptError) as exc:
        load_network(path)
    _assert_one_line_error(exc, "bad.npz", "not a valid npz file")


def test_npy_disguised_as_npz(tmp_path: Path) -> None:
    path = tmp_path / "arr.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.eye(3))
    with pytest.raises(LipoptError) as exc:
        load_network(path)
    _assert_one_line_error(exc, "arr.npz", "not an npz archive")


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"W1": np.ones((1, 2)), "b1": np.ones(1)}, "missing W0"),
        ({"b0": np.ones(2)}, "no weight arrays"),
        ({"W0": np.full((2, 2), np.nan)}, "W0 contains NaN or inf"),
        ({"W0": np.eye(2), "b0": np.array([0.0, np.inf])}, "b0 contains NaN or inf"),
        ({"W0": np.ones((3, 2)), "W1": np.ones((1, 4))}, "shape mismatch"),
        ({"W0": np.ones((3, 2)), "b0": np.ones(2)}, "shape mismatch"),
        ({"W0": np.ones(3)}, "2-D"),
        ({"W0": np.array([["a", "b"]])}, "real numbers"),
        ({"W0": np.eye(2), "b3": np.ones(2)}, "b3 has no matching W3"),
        (
            {"W0": np.eye(2), "W1": np.eye(2), "activation": np.array("swish")},
            "unknown activation",
        ),
        (
            {"W0": np.eye(2), "W1": np.eye(2), "activation": np.array(["relu", "relu", "relu"])},
            "3 entries for 1 hidden",
        ),
        ({"W0": np.eye(2), "x0": np.ones(5)}, "x0 has 5 entries"),
        ({"W0_data": np.ones(2), "W0_shape": np.array([2, 2])}, "missing W0_indices"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], expected: str) -> None:
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    with pytest.raises(LipoptError) as exc:
        load_network(path)
    _assert_one_line_error(exc, "broken.npz", expected)


def test_input_shape_checked(tmp_path: Path) -> None:
    path = save_npz(Network.from_weights([np.ones((3, 4)), np.ones((1, 3))]), tmp_path / "s.npz")
    assert load_network(path, input_shape=(1, 2, 2)).input_dim == 4
    with pytest.raises(LipoptError, match="input_shape"):
        load_network(path, input_shape=(3, 3))


def test_name_override(tmp_path: Path) -> None:
    path = save_npz(Network.from_weights([np.ones((1, 4))]), tmp_path / "s.npz")
    assert load_network(path).name == "s"
    assert load_network(path, name="other").name == "other"
    assert from_npz(path, name="x").name == "x"


# ---- the trained digits network ----------------------------------------------------------------
def test_digits_npz() -> None:
    net = load_network(DIGITS)
    assert net.architecture() == "64-32-32-10"
    assert DIGITS.stat().st_size < 100_000
    assert net.x0 is not None and net.x0.min() >= 0 and net.x0.max() <= 1
    with np.load(DIGITS) as raw:
        test_acc = float(raw["test_accuracy"])
        y0 = int(raw["y0"])
    assert test_acc > 0.95
    assert int(np.argmax(net.forward(net.x0))) == y0


def test_digits_accuracy_reproduced() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_digits(return_X_y=True)
    _, x_te, _, y_te = selection.train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    net = load_network(DIGITS)
    with np.load(DIGITS) as raw:
        stored = float(raw["test_accuracy"])
    acc = float(np.mean(net.forward(x_te).argmax(axis=1) == y_te))
    assert acc == pytest.approx(stored, abs=1e-12)
    np.testing.assert_array_equal(net.x0, x_te[0])


# ---- optional dependencies ---------------------------------------------------------------------
def test_torch_missing_gives_extra_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(LipoptError) as exc:
        load_network(path)
    _assert_one_line_error(exc, "requires the 'torch' extra", "pip install lipopt[torch]")


def test_onnx_missing_gives_extra_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(LipoptError) as exc:
        load_network(path)
    _assert_one_line_error(exc, "requires the 'onnx' extra", "pip install lipopt[onnx]")


# ---- PyTorch -----------------------------------------------------------------------------------
def _torch_mlp(torch):  # type: ignore[no-untyped-def]
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Dropout(0.5)),
        nn.Linear(8, 7),
        nn.Identity(),
        nn.Linear(7, 5),  # merged with the previous Linear
        nn.ELU(alpha=0.5),
        nn.Linear(5, 5),
        nn.Tanh(),
        nn.Sigmoid(),  # two activations in a row: identity layer between
        nn.Linear(5, 4, bias=False),
        nn.Softplus(),
        nn.Linear(4, 3),
        nn.ReLU(),
        nn.ReLU(),
        nn.Linear(3, 2),
    ).double()


def test_torch_sequential_forward_matches() -> None:
    torch = pytest.importorskip("torch")
    model = _torch_mlp(torch)
    net = load_network(model)
    assert net.architecture() == "6-8-5-5-5-4-3-2"
    names = [layer.activation.name for layer in net.layers]
    assert names == ["leaky_relu", "elu", "tanh", "sigmoid", "softplus", "relu", "identity"]
    assert net.layers[0].activation.alpha == pytest.approx(0.2)
    assert net.layers[1].activation.alpha == pytest.approx(0.5)
    np.testing.assert_array_equal(net.layers[3].weight, np.eye(5))
    x = np.random.default_rng(0).standard_normal((20, 6))
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor(x)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-12)
    assert model.training is False  # we put it in eval ourselves; loader must restore flags
    model.train()
    load_network(model)
    assert all(m.training for m in model.modules())


def test_torch_softplus_beta_and_trailing_activation() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Softplus(beta=2.0), nn.Linear(4, 2), nn.Sigmoid())
    net = load_network(model.double())
    assert net.architecture() == "3-4-2-2"
    x = np.random.default_rng(1).standard_normal((10, 3))
    with torch.no_grad():
        ref = model(torch.tensor(x)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-12)


def test_torch_float32_model() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    net = load_network(model)
    np.testing.assert_array_equal(net.layers[0].weight, model[0].weight.detach().double().numpy())
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.tensor(x)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-5)


def test_torch_files_pickle_and_torchscript(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = _torch_mlp(torch).eval()
    x = np.random.default_rng(3).standard_normal((4, 6))
    with torch.no_grad():
        ref = model(torch.tensor(x)).numpy()
    torch.save(model, tmp_path / "model.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pth")
    torch.jit.save(torch.jit.trace(model, torch.tensor(x)), tmp_path / "traced.pt")
    for name in ("model.pt", "scripted.pth", "traced.pt"):
        net = load_network(tmp_path / name, trust_pickle=name == "model.pt")
        assert net.name == Path(name).stem
        np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-12)


def test_torch_image_input_shape() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.ReLU(), nn.Linear(3, 1))
    net = load_network(model, input_shape=(1, 4, 4))
    assert net.input_dim == 16
    with pytest.raises(LipoptError, match="input_shape"):
        load_network(model, input_shape=(1, 5, 5))


def test_torch_state_dict_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save(_torch_mlp(torch).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "sd.pt")
    _assert_one_line_error(exc, "sd.pt", "not a module")


def test_torch_corrupt_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "bad.pt")
    _assert_one_line_error(exc, "bad.pt", "cannot be read by torch")


def test_torch_conv2d_needs_input_shape() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)).double()
    with pytest.raises(LipoptError) as exc:
        load_network(model)
    _assert_one_line_error(exc, "Conv2d", "a convolutional network needs --input-shape C H W")
    net = load_network(model, input_shape=(1, 4, 4))  # 2 channels × 2 × 2 = 8 features
    assert net.architecture() == "16-8-1"
    assert net.layers[0].is_sparse
    x = np.random.default_rng(6).standard_normal((5, 16))
    with torch.no_grad():
        ref = model(torch.tensor(x).reshape(5, 1, 4, 4)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-12)


def test_torch_unknown_module() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(LipoptError) as exc:
        load_network(model)
    _assert_one_line_error(exc, "LayerNorm", "supported: Linear, ReLU")


def test_torch_activation_first_or_bad_slope() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(LipoptError, match="before the first linear layer"):
        load_network(nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
    with pytest.raises(LipoptError, match="leaky_relu needs"):
        load_network(nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(2.0), nn.Linear(3, 1)))


def test_torch_forward_order_verified() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Swapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.second = nn.Linear(4, 4)
            self.act = nn.ReLU()
            self.first = nn.Linear(4, 4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.second(self.act(self.first(x)))

    class Stateful(nn.Module):  # the traced graph differs from later calls of forward
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.calls = nn.Linear(4, 4), 0

        def forward(self, x):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self.lin(x) * self.calls

    # the forward is traced, so the children's registration order does not matter
    model = Swapped().double()
    x = np.random.default_rng(5).standard_normal((3, 4))
    with torch.no_grad():
        np.testing.assert_allclose(load_network(model).forward(x), model(torch.tensor(x)).numpy(), atol=1e-12)
    with pytest.raises(LipoptError, match="does not reproduce the module's forward"):
        load_network(Stateful())


# ---- ONNX --------------------------------------------------------------------------------------
def _export_onnx(torch, model, n_in: int) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    dtype = next(model.parameters()).dtype
    torch.onnx.export(
        model,
        (torch.zeros(1, n_in, dtype=dtype),),
        buf,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    return buf.getvalue()


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    nn = torch.nn
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, 10),
        nn.ReLU(),
        nn.Linear(10, 8),
        nn.LeakyReLU(0.1),
        nn.Linear(8, 8),
        nn.Tanh(),
        nn.Linear(8, 6),
        nn.ELU(),
        nn.Linear(6, 5),
        nn.Sigmoid(),
        nn.Linear(5, 4),
        nn.Softplus(),
        nn.Linear(4, 3),
    ).eval()
    x = np.random.default_rng(4).standard_normal((16, 6))
    for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 1e-5)):
        model = model.to(dtype)
        try:
            data = _export_onnx(torch, model, 6)
        except Exception as err:  # environment problem (exporter dependencies)
            pytest.skip(f"torch.onnx.export failed: {err}")
        path = tmp_path / "model.onnx"
        path.write_bytes(data)
        with torch.no_grad():
            ref = model(torch.tensor(x, dtype=dtype)).double().numpy()
        for source in (path, onnx.load_from_string(data)):
            net = load_network(source)
            assert net.architecture() == "6-10-8-8-6-5-4-3"
            assert [layer.activation.name for layer in net.layers] == [
                "relu",
                "leaky_relu",
                "tanh",
                "elu",
                "sigmoid",
                "softplus",
                "identity",
            ]
            np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=tol)
        # the same module converted directly agrees with the ONNX route
        np.testing.assert_allclose(
            load_network(path).forward(x), load_network(model).forward(x), rtol=0, atol=tol
        )


def _helper_graph(onnx, nodes, inits, n_in: int, n_out: int):  # type: ignore[no-untyped-def]
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "helper_net",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", n_out])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in inits.items()],
    )
    return helper.make_model(graph)


def test_onnx_helper_graph_gemm_matmul_add() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 5))  # Gemm with transB=0: B is in × out
    c = rng.standard_normal(5)
    m = rng.standard_normal((5, 3))  # MatMul weight: in × out
    d = rng.standard_normal(3)
    e = rng.standard_normal((2, 3))  # Gemm with transB=1: B is out × in
    mean = rng.standard_normal(4)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Sub", ["f", "mean"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["sc"]),
        helper.make_node("Gemm", ["sc", "A", "C"], ["g"], alpha=0.5, beta=2.0),
        helper.make_node("LeakyRelu", ["g"], ["r"], alpha=0.25),
        helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("MatMul", ["i", "M"], ["mm"]),
        helper.make_node("Add", ["D", "mm"], ["ad"]),
        helper.make_node("Elu", ["ad"], ["el"], alpha=0.75),
        helper.make_node("Dropout", ["el"], ["dr"]),
        helper.make_node("Gemm", ["dr", "E"], ["y"], transB=1),
    ]
    inits = {"A": a, "C": c, "M": m, "D": d, "E": e, "mean": mean, "scale": np.array(3.0)}
    net = load_network(_helper_graph(onnx, nodes, inits, 4, 2))
    assert net.architecture() == "4-5-3-2"

    def ref(x: np.ndarray) -> np.ndarray:
        g = 0.5 * (3.0 * (x - mean)) @ a + 2.0 * c
        r = np.where(g > 0, g, 0.25 * g)
        ad = r @ m + d
        el = np.where(ad > 0, ad, 0.75 * np.expm1(np.minimum(ad, 0)))
        return el @ e.T

    x = rng.standard_normal((7, 4))
    np.testing.assert_allclose(net.forward(x), ref(x), rtol=0, atol=1e-12)


def test_onnx_unknown_op() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"]),
    ]
    model = _helper_graph(onnx, nodes, {"W": np.eye(3)}, 3, 3)
    with pytest.raises(LipoptError) as exc:
        load_network(model)
    _assert_one_line_error(exc, "Softmax", "unsupported ONNX op")


def test_onnx_branching_rejected() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["g"], transB=1),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("Add", ["r", "x"], ["y"]),  # residual connection: now a residual block
    ]
    net = load_network(_helper_graph(onnx, nodes, {"W": np.eye(3)}, 3, 3))
    x = np.random.default_rng(6).standard_normal((4, 3))
    np.testing.assert_allclose(net.forward(x), np.maximum(x, 0) + x, rtol=0, atol=1e-15)
    nodes.append(helper.make_node("Add", ["y", "x"], ["z"]))  # x feeds three nodes
    model = _helper_graph(onnx, nodes, {"W": np.eye(3)}, 3, 3)
    model.graph.output[0].name = "z"
    with pytest.raises(LipoptError) as exc:
        load_network(model)
    _assert_one_line_error(exc, "the graph branches in a way lipopt cannot represent")


def test_onnx_corrupt_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\xff\xfe not protobuf \x00\x01")
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "bad.onnx")
    _assert_one_line_error(exc, "bad.onnx")
