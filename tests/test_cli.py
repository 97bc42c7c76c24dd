"""The command line: JSON schema, method/degree plans, and one-line errors with exit code 2."""

import json

import numpy as np
import pytest
from conftest import random_net

from lipopt.cli import main, plan_methods
from lipopt.errors import LipoptError
from lipopt.loaders import save_npz


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.npz"
    save_npz(random_net([3, 5, 4, 2], seed=0), path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bound_json_schema(net_file, capsys):
    code, out, err = run(
        capsys,
        "bound",
        net_file,
        "--norm",
        "inf",
        "--method",
        "naive",
        "--method",
        "lp",
        "--level",
        "3",
        "--method",
        "exact-pop",
        "--json",
    )
    assert code == 0, err
    d = json.loads(out)
    assert set(d) >= {"network", "norm", "target", "domain", "bounds", "lower_bound"}
    assert d["norm"] == "inf" and d["domain"] is None
    keys = {
        "method",
        "level",
        "value",
        "certified",
        "status",
        "time_s",
        "build_time_s",
        "solve_time_s",
        "size",
    }
    for b in d["bounds"]:
        assert keys <= set(b)
    by = {(b["method"], b["level"]): b for b in d["bounds"]}
    exact = by[("exact-pop", None)]["value"]
    assert by[("lp", 3)]["certified"] and by[("lp", 3)]["value"] >= exact * (1 - 1e-12)
    assert by[("naive", None)]["value"] >= by[("lp", 3)]["value"]
    assert d["lower_bound"]["value"] <= exact


def test_local_bound_with_center_file(net_file, tmp_path, capsys):
    center = tmp_path / "x.npy"
    np.save(center, np.zeros(3))
    code, out, _ = run(
        capsys,
        "bound",
        net_file,
        "--center",
        center,
        "--eps",
        "0.1",
        "--output",
        "1",
        "--method",
        "abs-product",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    assert d["domain"]["dim"] == 3 and d["target"]["labels"] == ["output 1"]


def test_plan_binds_levels_to_the_method_before_them():
    plan = [("lp", [("level", 2), ("level", 3)]), ("sdp", [("order", 1)]), ("naive", [])]
    assert plan_methods(plan) == (["lp", "sdp", "naive"], {"lp": [2, 3], "sdp": [1]})
    shared = [("*", [("level", 4)]), ("lp", []), ("sdp+lp", [])]
    assert plan_methods(shared)[1] == {"lp": [4], "sdp+lp": [4]}
    assert plan_methods(None) == (["auto"], {})  # no --method: the automatic chain
    with pytest.raises(LipoptError, match="takes --order"):
        plan_methods([("sdp", [("level", 2)])])
    with pytest.raises(LipoptError, match="has no level or order"):
        plan_methods([("naive", [("level", 2)])])


def test_info_and_text_output(net_file, capsys):
    code, out, _ = run(capsys, "info", net_file)
    assert code == 0 and "3-5-4-2" in out
    code, out, _ = run(capsys, "bound", net_file, "--method", "naive", "--method", "abs-product")
    assert code == 0 and "best certified" in out and "abs-product" in out


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p, t: ["bound", t / "missing.npz"], "no such file"),
        (lambda p, t: ["bound", _write(t / "bad.npz", b"not a zip file")], "bad.npz"),
        (lambda p, t: ["bound", p, "--output", "7"], "out of range"),
        (lambda p, t: ["bound", p, "--margin", "1", "1"], "different outputs"),
        (lambda p, t: ["bound", p, "--method", "magic"], "unknown method 'magic'"),
        (lambda p, t: ["bound", p, "--method", "lp", "--level", "1"], "below the polynomial degree"),
        (lambda p, t: ["bound", p, "--method", "lp", "--level", "0"], "positive integer"),
        (lambda p, t: ["bound", p, "--eps", "0.1"], "--eps needs --center"),
        (lambda p, t: ["bound", p, "--center", "x0", "--eps", "0.1"], "no 'x0'"),
        (lambda p, t: ["bound", p, "--box", "1", "0"], "LO <= HI"),
        (lambda p, t: ["bound", _nan_net(t)], "NaN"),
        (lambda p, t: ["bound", _mismatch_net(t)], "shape mismatch"),
        (lambda p, t: ["bound", p, "--method", "lp", "--level", "6", "--max-memory", "1e-6"], "memory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(net_file, tmp_path, capsys, make_args, message):
    code, out, err = run(capsys, *make_args(net_file, tmp_path))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_a_global_method_on_a_box_reports_its_global_bound(net_file, capsys):
    """A global bound holds on every box: lipsdp on --box runs globally, and its row says so."""
    out = _run_json(capsys, "bound", net_file, "--norm", "2", "--method", "lipsdp", "--box", "0", "1")
    (row,) = json.loads(out)["bounds"]
    assert row["certified"] and "global method" in row["note"] and "ran globally" in row["note"]
    glob = json.loads(_run_json(capsys, "bound", net_file, "--norm", "2", "--method", "lipsdp"))["bounds"][0]
    assert row["value"] == glob["value"]


def _run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return out


def test_bad_norm_is_an_argparse_error(net_file):
    with pytest.raises(SystemExit) as e:
        main(["bound", str(net_file), "--norm", "3"])
    assert e.value.code == 2


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "bound", str(tmp_path / "missing.npz")])


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _nan_net(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, W0=np.array([[np.nan, 1.0]]), b0=np.zeros(1), W1=np.ones((1, 1)), b1=np.zeros(1))
    return path


def _mismatch_net(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, W0=np.ones((3, 2)), b0=np.zeros(3), W1=np.ones((1, 4)), b1=np.zeros(1))
    return path
