"""The graph-IR loader: residual models from every torch / ONNX route, safe loading, external data.

Residual models round-trip: module → (TorchScript trace / script, torch.export ``.pt2``, ONNX) →
load → the same forward pass as torch and the same bounds. Crafted pickles execute nothing
without the explicit opt-in.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_soundness_audit import Q, assert_above, vertex_max

from lipopt.bounds import abs_product_bound, naive_bound
from lipopt.chain import bound_chain
from lipopt.errors import LipoptError
from lipopt.loaders import load_network
from lipopt.network import Residual
from lipopt.problems import make_target

torch = pytest.importorskip("torch")
nn = torch.nn


def _one_line(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


class ResMLP(nn.Module):
    """``out(relu(h + f2(relu(f1(h)))))`` with ``h = relu(inp(x))``."""

    def __init__(self, n: int = 4, width: int = 6, hidden: int = 8) -> None:
        super().__init__()
        self.inp, self.f1 = nn.Linear(n, width), nn.Linear(width, hidden)
        self.f2, self.out = nn.Linear(hidden, width), nn.Linear(width, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = torch.relu(self.inp(x))
        return self.out(torch.relu(h + self.f2(torch.relu(self.f1(h)))))


class BasicBlock(nn.Module):
    """ResNet block: conv-bn-relu-conv-bn plus the skip (identity or 1×1 conv-bn), then relu."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.skip = nn.Sequential()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return torch.relu(self.skip(x) + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(4, 4, 1), BasicBlock(4, 6, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.blocks(self.stem(x)))


def _model(kind: str):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    if kind == "mlp":
        return ResMLP().double().eval(), (4,)
    model = ResNet().double()
    with torch.no_grad():  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval(), (1, 6, 6)


def _save_all(model, shape: tuple[int, ...], tmp_path: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """The model as TorchScript (traced, scripted), a torch.export program and ONNX."""
    x = torch.zeros((1, *shape), dtype=torch.float64)
    torch.jit.save(torch.jit.trace(model, x), tmp_path / "traced.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pth")
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "program.pt2")
    try:
        torch.onnx.export(
            model,
            (x,),
            str(tmp_path / "model.onnx"),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    except Exception as err:  # environment problem (exporter dependencies)
        pytest.skip(f"torch.onnx.export failed: {err}")
    return [tmp_path / name for name in ("traced.pt", "scripted.pth", "program.pt2", "model.onnx")]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_residual_models_round_trip(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    model, shape = _model(kind)
    net = load_network(model, input_shape=shape)
    blocks = [layer for layer in net.layers if isinstance(layer, Residual)]
    assert len(blocks) == (1 if kind == "mlp" else 2)
    assert all(b.activation.name == "relu" for b in blocks)  # the relu after the add
    if kind == "cnn":
        assert blocks[0].skip is None and blocks[1].skip.shape == (54, 144)  # identity / projection skip
    x = np.random.default_rng(1).standard_normal((7, net.input_dim))
    with torch.no_grad():
        ref = model(torch.tensor(x).reshape(7, *shape)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-12)
    program = torch.export.export(model, (torch.zeros((1, *shape), dtype=torch.float64),))
    for source in [program, *_save_all(model, shape, tmp_path)]:
        other = load_network(source, input_shape=shape)
        assert other.architecture() == net.architecture(), source
        np.testing.assert_allclose(other.forward(x), ref, rtol=0, atol=1e-12)
        for bound in (naive_bound, abs_product_bound):
            for norm in ("inf", "2", "1"):
                assert bound(other, norm) == pytest.approx(bound(net, norm), rel=1e-12), (source, norm)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_loaded_residual_bounds_are_sound() -> None:
    torch.manual_seed(3)
    model = ResMLP(n=3, width=3, hidden=2).double().eval()
    net = load_network(model)
    assert len(net.sites) <= 5 and sum(net.hidden_sizes) <= 14
    target = make_target(net, output=0)
    x = torch.randn((400, 3), dtype=torch.float64) * 3
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    for norm in ("inf", "2", "1"):
        sampled = float(grad.norm(p=Q[norm], dim=1).max())
        vertex = vertex_max(net, target, norm)
        assert sampled <= vertex * (1 + 1e-9)
        bounds = bound_chain(net, norm, ["naive", "abs-product", "lp"], target=target).bounds
        assert_above([b for b in bounds if b.certified], vertex, "vertex maximum")


def test_branch_shapes_in_forward() -> None:
    """Pre-activation branches, a residual at the input, a subtracting join, two joins in a row
    and an add of two affine branches (folded)."""

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c, self.d = (
                nn.Linear(3, 3),
                nn.Linear(3, 3),
                nn.Linear(3, 2),
                nn.Linear(3, 3),
            )

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = x - 0.5 * self.a(torch.tanh(x))
            y = y + self.b(torch.relu(self.d(y)))
            return self.c(torch.relu(2 * y + self.d(y)))

    torch.manual_seed(4)
    model = Mixed().double()
    net = load_network(model)  # verified against the module's forward pass
    assert [type(layer).__name__ for layer in net.layers] == ["Residual", "Residual", "Dense"]
    x = np.random.default_rng(2).standard_normal((9, 3))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x), model(torch.tensor(x)).numpy(), rtol=0, atol=1e-12)


def test_unsupported_branching_is_refused() -> None:
    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.relu(self.a(x)) + torch.tanh(self.b(x))

    class Product(Both):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.a(x) * self.b(x)

    with pytest.raises(LipoptError) as exc:
        load_network(Both())
    _one_line(exc, "both branches of the add hold activations")
    with pytest.raises(LipoptError) as exc:
        load_network(Product())
    _one_line(exc, "not affine")


def test_forward_is_traced_not_the_registration_order() -> None:
    class Swapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.second = nn.Linear(4, 2)
            self.act = nn.ReLU()
            self.first = nn.Linear(4, 4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.second(self.act(self.first(x)))

    torch.manual_seed(5)
    model = Swapped().double()
    net = load_network(model)
    np.testing.assert_array_equal(net.layers[0].weight, model.first.weight.detach().numpy())
    x = np.random.default_rng(3).standard_normal((5, 4))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x), model(torch.tensor(x)).numpy(), rtol=0, atol=1e-12)


def test_untraceable_forward_is_refused() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.a(x)
            return torch.relu(y) if y.sum() > 0 else y

    with pytest.raises(LipoptError) as exc:
        load_network(DataDependent())
    _one_line(exc, "data-dependent control flow", "torch.export cannot trace")


# ---- safe by default -----------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates the file ``marker`` (the kind of side effect a crafted file has)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_crafted_pickle_executes_nothing_without_opt_in(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from lipopt.cli import main

    marker = tmp_path / "marker"
    torch.save(_Payload(marker), tmp_path / "evil.pt")
    (tmp_path / "evil_legacy.pth").write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    for name in ("evil.pt", "evil_legacy.pth"):
        with pytest.raises(LipoptError) as exc:
            load_network(tmp_path / name)
        _one_line(exc, name, "pickled Python objects", "--trust-pickle", "trust_pickle=True")
        assert main(["bound", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--trust-pickle" in err
        assert not marker.exists()
    with pytest.raises(LipoptError, match="not a torch.nn.Module"):
        load_network(tmp_path / "evil.pt", trust_pickle=True)  # the opt-in is what runs it
    assert marker.exists()


def test_program_with_a_crafted_pickle_executes_nothing(tmp_path: Path) -> None:
    """torch.export.load falls back to an unrestricted unpickling of the sample inputs; the loader
    forces every torch.load in the archive to be weights-only."""
    marker = tmp_path / "marker"
    model = nn.Sequential(nn.Linear(3, 2)).double().eval()
    torch.export.save(
        torch.export.export(model, (torch.zeros(1, 3, dtype=torch.float64),)), tmp_path / "ok.pt2"
    )
    payload = io.BytesIO()
    torch.save(_Payload(marker), payload)
    with zipfile.ZipFile(tmp_path / "ok.pt2") as zin, zipfile.ZipFile(tmp_path / "evil.pt2", "w") as zout:
        for item in zin.infolist():
            swap = item.filename.endswith("sample_inputs/model.pt")
            zout.writestr(item, payload.getvalue() if swap else zin.read(item.filename))
    assert load_network(tmp_path / "ok.pt2").architecture() == "3-2"
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "evil.pt2")
    _one_line(exc, "pickled Python objects", "--trust-pickle")
    assert not marker.exists()


def test_weights_only_checkpoints(tmp_path: Path) -> None:
    torch.save(ResMLP().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(LipoptError) as exc:
        load_network(tmp_path / "sd.pt")
    _one_line(exc, "sd.pt", "not a module", "a state_dict alone has no architecture", "load_state_dict")


# ---- ONNX ------------------------------------------------------------------------------------------
def _onnx_residual_graph():  # type: ignore[no-untyped-def]
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    inits = {"W": rng.standard_normal((3, 3)), "V": rng.standard_normal((3, 3)), "b": rng.standard_normal(3)}
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["g"], transB=1),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("MatMul", ["r", "V"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["f"]),
        helper.make_node("Sub", ["x", "f"], ["y"]),  # a residual connection with a minus sign
    ]
    graph = helper.make_graph(
        nodes,
        "res",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in inits.items()],
    )
    return helper.make_model(graph), inits


def test_onnx_residual_graph_and_external_data(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model, w = _onnx_residual_graph()
    net = load_network(model)
    assert isinstance(net.layers[0], Residual)
    x = np.random.default_rng(7).standard_normal((6, 3))
    ref = x - (np.maximum(x @ w["W"].T, 0) @ w["V"] + w["b"])
    np.testing.assert_allclose(net.forward(x), ref, rtol=0, atol=1e-12)
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    assert (tmp_path / "ext.weights").stat().st_size >= (9 + 9 + 3) * 8 and path.stat().st_size < 1000
    np.testing.assert_array_equal(load_network(path).forward(x), net.forward(x))
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(LipoptError) as exc:
        load_network(path)
    _one_line(exc, "ext.onnx", "external data")
