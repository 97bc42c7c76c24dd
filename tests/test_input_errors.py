"""Bad input to the loaders, the sweep and the plots: one LipoptError that names the problem.

Library-level companions of tests/test_cli_errors.py (which checks the CLI's one-line messages).
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt.errors import LipoptError
from lipopt.loaders import load_network
from lipopt.network import Dense, Network
from lipopt.sweep import COLUMNS, load_spec, read_results, run_sweep


def good_arrays() -> dict[str, np.ndarray]:
    return {"W0": np.ones((3, 2)), "b0": np.zeros(3), "W1": np.ones((1, 3)), "b1": np.zeros(1)}


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.npz"
    np.savez(path, **good_arrays())
    return path


# ---------------------------------------------------------------------------------------------
# npz files
# ---------------------------------------------------------------------------------------------
def test_text_file_renamed_npz_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "X.npz"
    path.write_text("W0 = [[1, 2], [3, 4]]\n")
    with pytest.raises(LipoptError, match=r"X\.npz.*not a numpy \.npz archive \(not a zip file; it "
                       r"holds text\); save weights with numpy\.savez") as exc:
        load_network(path)
    assert "pickle" not in str(exc.value)


def test_truncated_npz_is_a_damaged_zip(npz_file: Path) -> None:
    data = npz_file.read_bytes()
    npz_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(LipoptError, match="truncated or damaged zip archive"):
        load_network(npz_file)


def test_npz_member_with_bad_checksum(tmp_path: Path) -> None:
    path = tmp_path / "crc.npz"
    np.savez(path, W0=np.random.default_rng(0).random((30, 20)), W1=np.ones((1, 30)))
    data = bytearray(path.read_bytes())
    for i in range(200, 260):  # inside W0's data
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LipoptError, match=r"the zip archive is damaged \(member 'W0'"):
        load_network(path)


def test_npz_with_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, W0=np.array([{"a": 1}, None], dtype=object), W1=np.ones((1, 2)))
    with pytest.raises(LipoptError, match=r"array 'W0' contains pickled Python objects \(dtype=object\)"):
        load_network(path)


def test_empty_npz_file(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(LipoptError, match=r"empty\.npz is empty \(0 bytes\)"):
        load_network(tmp_path / "empty.npz")


def test_zip_that_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("W0.npy", "not numpy data")
    with pytest.raises(LipoptError, match="member 'W0' is not a numpy .npy array"):
        load_network(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(LipoptError, match="no weight arrays found .*the archive holds readme.txt"):
        load_network(path)


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".onnx", ""])
def test_directory_is_named_as_a_directory(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"models{suffix}"
    path.mkdir()
    with pytest.raises(LipoptError, match=r"is a directory, not a file") as exc:
        load_network(path)
    assert "no such file" not in str(exc.value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"W0": np.ones((0, 2)), "b0": np.zeros(0), "W1": np.ones((1, 0))},
         r"W0 has shape \(0, 2\): a 0-width layer"),
        ({"W0": np.ones((3, 0)), "W1": np.ones((1, 3))},
         r"W0 has shape \(3, 0\): the network would have 0 inputs"),
        ({"W0": np.ones((3, 2)), "W1": np.ones((0, 3))},
         r"W1 has shape \(0, 3\): the network would have 0 outputs"),
        ({"W0": np.ones((0, 0))}, r"W0 has shape \(0, 0\): the network would have 0 inputs"),
        ({"W0_data": np.zeros(0), "W0_indices": np.zeros(0, dtype=np.int64),
          "W0_indptr": np.zeros(1, dtype=np.int64), "W0_shape": np.array([0, 2]), "W1": np.ones((1, 0))},
         r"W0 has shape \(0, 2\): a 0-width layer"),
        ({**good_arrays(), "b0": np.array([0.0, np.nan, 0.0])}, "b0 contains NaN or inf"),
        ({**good_arrays(), "b1": np.array([np.inf])}, "b1 contains NaN or inf"),
        ({**good_arrays(), "W0": np.full((3, 2), np.nan)}, "W0 contains NaN or inf"),
        ({**good_arrays(), "W1": np.array([[1.0, -np.inf, 1.0]])}, "W1 contains NaN or inf"),
    ],
)
def test_degenerate_shapes_and_non_finite_values(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(LipoptError, match=message):
        load_network(path)


def test_in_memory_network_with_a_zero_width_layer() -> None:
    with pytest.raises(LipoptError, match=r"layer 0: weight has shape \(0, 2\); a layer with no neurons"):
        Network((Dense(np.ones((0, 2)), np.zeros(0)), Dense(sp.csr_matrix((1, 0)), np.zeros(1))))


# ---------------------------------------------------------------------------------------------
# PyTorch and ONNX files
# ---------------------------------------------------------------------------------------------
def test_torch_file_corruption(tmp_path: Path, npz_file: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    good = tmp_path / "good.pt"
    torch.save(model, good)
    data = good.read_bytes()
    cases = {
        "trunc.pt": (data[: len(data) // 2], "cannot be read by torch: a truncated or damaged zip"),
        "text.pt": (b"just some text\n", r"not a PyTorch file \(neither a torch.save zip archive "
                    r"nor a pickle; it holds text\)"),
        "empty.pt": (b"", r"is empty \(0 bytes\)"),
        "npz.pt": (npz_file.read_bytes(), "it is a numpy .npz archive; rename it to .npz"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(LipoptError, match=message):
            load_network(tmp_path / name)
    # a torch.save file renamed .npz
    (tmp_path / "torch.npz").write_bytes(data)
    with pytest.raises(LipoptError, match="PyTorch file written by torch.save; rename it to .pt"):
        load_network(tmp_path / "torch.npz")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_torch_module_with_degenerate_layers() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(LipoptError, match="0-width layer"):
        load_network(nn.Sequential(nn.Linear(2, 0), nn.ReLU(), nn.Linear(0, 1)))
    with pytest.raises(LipoptError, match="0 inputs"):
        load_network(nn.Sequential(nn.Linear(0, 3), nn.ReLU(), nn.Linear(3, 1)))
    model = nn.Sequential(nn.Linear(2, 3))
    with torch.no_grad():
        model[0].bias[1] = float("nan")
    with pytest.raises(LipoptError, match="bias contains NaN or inf"):
        load_network(model)


def _onnx_bytes() -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    return helper.make_model(graph).SerializeToString()


def test_onnx_file_corruption(tmp_path: Path, npz_file: Path) -> None:
    data = _onnx_bytes()
    (tmp_path / "good.onnx").write_bytes(data)
    assert load_network(tmp_path / "good.onnx").architecture() == "2-3-3"
    cases = {
        "trunc.onnx": (data[: len(data) // 2], "the protobuf cannot be parsed: the file is truncated"),
        "text.onnx": (b"ir_version: 8\ngraph {}\n", "it holds text, not ONNX protobuf"),
        "empty.onnx": (b"", r"is empty \(0 bytes\)"),
        "zip.onnx": (npz_file.read_bytes(), "it holds a zip archive, not ONNX protobuf"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(LipoptError, match=message):
            load_network(tmp_path / name)


# ---------------------------------------------------------------------------------------------
# Sweep specs
# ---------------------------------------------------------------------------------------------
def spec(**run: object) -> dict:
    base = {"networks": {"sizes": [[3, 3, 2]], "seeds": [0]},
            "run": {"norms": ["inf"], "methods": ["naive", "lower"]}}
    base["run"].update(run)
    return base


def test_non_utf8_spec(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_bytes(b"[networks]\nsizes = [[3, 3, 1]]\n# caf\xe9\n")
    with pytest.raises(LipoptError, match=r"spec\.toml: not a UTF-8 text file; a sweep spec is TOML"):
        load_spec(path)
    with pytest.raises(LipoptError, match="is a directory"):
        load_spec(tmp_path)


def test_margin_needs_two_different_outputs(tmp_path: Path) -> None:
    with pytest.raises(LipoptError, match=r"run\.margin needs two different outputs, got \[0, 0\]"):
        load_spec(spec(margin=[0, 0]), base_dir=tmp_path)
    assert load_spec(spec(margin=[1, 0]), base_dir=tmp_path).run.margin == (1, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"LP": {"algorithm": "ipm"}}, r"unknown options section \[run\.options\.LP\]; choose .*lp, sdp"),
        ({"naive": {}}, r"\[run\.options\.naive\]: naive has no options"),
        ({"lp": {"threds": 2}}, r"\[run\.options\.lp\]: unknown lp option 'threds'; allowed: .*threads"),
        ({"sdp": {"order": 2}}, r"\[run\.options\.sdp\]: unknown sdp option 'order'"),
        ({"lp": {"algorithm": "fast"}}, r"\[run\.options\.lp\]: lp option 'algorithm' must be one of auto"),
        ({"lp": {"basis": "bernstein"}}, r"'basis' must be one of sherali-adams, krivine, got 'bernstein'"),
        ({"lp": {"threads": -1}}, r"'threads' must be >= 0, got -1"),
        ({"lp": {"threads": 1.5}}, r"'threads' must be an integer, got 1\.5"),
        ({"lp": {"project": "yes"}}, r"'project' must be true or false, got 'yes'"),
        ({"lp": {"basis": "krivine", "project": True}}, "applies to the Sherali–Adams basis only"),
        ({"sdp": {"solver": "fast"}}, r"'solver' must be one of auto, mixing, conic, .*got 'fast'"),
        ({"sdp": {"max_iter": 0}}, r"'max_iter' must be >= 1"),
        ({"lipsdp": {"reduce_input": 1}}, r"\[run\.options\.lipsdp\]: lipsdp option 'reduce_input' must"),
        ({"lp": 3}, r"\[run\.options\.lp\] must be a table"),
    ],
)
def test_solver_options_are_validated_up_front(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(LipoptError, match=message):
        load_spec(spec(options=options), base_dir=tmp_path)


def test_valid_solver_options_pass(tmp_path: Path) -> None:
    options = {"lp": {"algorithm": "ipm", "threads": 1, "project": False},
               "sdp": {"solver": "conic", "tol": 1e-6}, "lipsdp": {"solver": "SCS"}}
    assert load_spec(spec(options=options), base_dir=tmp_path).run.options == options


# ---------------------------------------------------------------------------------------------
# run_sweep: no half-written files
# ---------------------------------------------------------------------------------------------
def test_failed_start_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lipopt.sweep as sweep

    def unreachable(*args: object, **kwargs: object) -> object:
        raise LipoptError("cannot reach the Dask scheduler tcp://h:1")

    out = tmp_path / "new" / "r.csv"
    monkeypatch.setattr(sweep, "_iter_serial", unreachable)
    with pytest.raises(LipoptError, match="cannot reach"):
        run_sweep(spec(), out, progress=False)
    assert not (tmp_path / "new").exists()

    # an existing table is left as it was (rerunning resumes)
    monkeypatch.undo()
    first = run_sweep(spec(), out, progress=False)
    assert first.rows_written == 2
    before = (out.read_bytes(), out.with_suffix(".jsonl").read_bytes())
    monkeypatch.setattr(sweep, "_iter_serial", unreachable)
    with pytest.raises(LipoptError, match="cannot reach"):
        run_sweep(spec(norms=["inf", "2"]), out, progress=False)
    assert (out.read_bytes(), out.with_suffix(".jsonl").read_bytes()) == before
    monkeypatch.undo()
    second = run_sweep(spec(norms=["inf", "2"]), out, progress=False)
    assert (second.rows_skipped, second.rows_written) == (2, 2)
    assert len(read_results(out)) == 4


def test_output_location_checked_before_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LipoptError, match="is a file, not a directory"):
        run_sweep(spec(), tmp_path / "file" / "r.csv", progress=False)
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(LipoptError, match="is a directory"):
        run_sweep(spec(), tmp_path / "d.csv", progress=False)


# ---------------------------------------------------------------------------------------------
# read_results: binary, malformed and truncated tables
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def table(tmp_path: Path) -> Path:
    out = tmp_path / "r.csv"
    run_sweep(spec(norms=["inf", "2"]), out, progress=False)
    return out


def test_binary_table(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00")
    with pytest.raises(LipoptError, match="is not a readable CSV table"):
        read_results(path)
    with pytest.raises(LipoptError, match="is not a readable CSV table"):
        run_sweep(spec(), path, progress=False)
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(LipoptError, match="is a directory"):
        read_results(tmp_path)


def test_truncated_last_row_is_refused_and_resume_recomputes_it(table: Path) -> None:
    text = table.read_text()
    assert len(read_results(table)) == 4
    table.write_text(text[: len(text) - 150])  # cut the last row in the middle
    with pytest.raises(LipoptError, match=r"last row \(line 5\) is truncated.*rerun the same lipopt sweep"):
        read_results(table)
    with pytest.warns(UserWarning, match="dropped the truncated last row"):
        summary = run_sweep(spec(norms=["inf", "2"]), table, progress=False)
    assert (summary.rows_skipped, summary.rows_written) == (3, 1)
    rows = read_results(table)
    assert len(rows) == 4 and len({(r["norm"], r["method"]) for r in rows}) == 4
    assert len(table.with_suffix(".jsonl").read_text().splitlines()) == 4


def test_truncated_timestamp_is_detected(table: Path) -> None:
    text = table.read_text()
    table.write_text(text.rstrip("\r\n")[:-4])  # all cells present, the last one cut short
    with pytest.raises(LipoptError, match="is truncated"):
        read_results(table)
    table.write_text(text.rstrip("\r\n"))  # a complete row without the final line break is fine
    assert len(read_results(table)) == 4
    summary = run_sweep(spec(norms=["inf", "2", "1"]), table, progress=False)
    assert (summary.rows_skipped, summary.rows_written) == (4, 2)  # appended on a new line
    assert len(read_results(table)) == 6


def test_malformed_middle_row(table: Path) -> None:
    lines = table.read_text().splitlines(keepends=True)
    lines[2] = "a,b,c\r\n"
    table.write_text("".join(lines))
    with pytest.raises(LipoptError, match="line 3 has 3 cells but the header has .* the table is damaged"):
        read_results(table)
    with pytest.raises(LipoptError, match="the table is damaged.*choose another --out"):
        run_sweep(spec(), table, progress=False)


# ---------------------------------------------------------------------------------------------
# plot_results: columns before rows
# ---------------------------------------------------------------------------------------------
def test_plot_checks_columns_before_rows(tmp_path: Path) -> None:
    from lipopt.plot import plot_results

    other = tmp_path / "other.csv"
    other.write_text("a,b\n")
    with pytest.raises(LipoptError, match=r"not a lipopt sweep table \(no column 'network'\)"):
        plot_results(other, tmp_path / "plots")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(LipoptError, match="the file is empty, not a lipopt sweep table"):
        plot_results(empty, tmp_path / "plots")
    header_only = tmp_path / "header.csv"
    with header_only.open("w", newline="") as fh:
        csv.writer(fh).writerow(COLUMNS)
    with pytest.raises(LipoptError, match="the results table has no rows"):
        plot_results(header_only, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()
