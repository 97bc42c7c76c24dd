"""The command line's handling of bad input, its LP solver flags, strict JSON and atomic outputs.

Every user error is one line on stderr (``lipopt: error: …`` or, for usage errors,
``lipopt CMD: error: …; see 'lipopt CMD --help'``), exit code 2, no traceback, nothing on stdout
and no half-written file.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_net

from lipopt import cli
from lipopt.cli import main
from lipopt.errors import LipoptError
from lipopt.loaders import save_npz


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.npz"
    save_npz(random_net([3, 5, 4, 2], seed=0), path)
    return path


@pytest.fixture
def results_csv(tmp_path, net_file):
    """A small sweep table (naive + lower bound only: fast)."""
    spec = tmp_path / "spec.toml"
    spec.write_text('[networks]\nfiles = ["net.npz"]\n[run]\nnorms = ["inf"]\nmethods = ["naive", "lower"]\n')
    out = tmp_path / "res.csv"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, message, exit_code=2):
    assert code == exit_code, err
    assert message in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert out == ""


def strict_json(text: str):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


# --- usage errors: one line, exit 2 ----------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["bund"], "invalid choice: 'bund'"),
        (["bound"], "required: network"),
        (["bound", "NET", "--norm", "3"], "argument --norm: invalid choice: '3'"),
        (["bound", "NET", "--level", "2.5"], "invalid int value: '2.5'"),
        (["bound", "NET", "--degree", "3"], "--degree was renamed: use --level K"),
        (["bound", "NET", "--margin", "0"], "expected 2 arguments"),
        (["bound", "NET", "--output", "0", "--margin", "0", "1"], "not allowed with argument --output"),
        (["bound", "NET", "--lp-algorithm", "magic"], "argument --lp-algorithm: invalid choice"),
        (["graph", "NET", "--extension", "best"], "argument --extension: invalid choice"),
        (["sweep", "spec.toml"], "required: --out"),
        (["plot", "r.csv", "--format", "svg"], "argument --format: invalid choice"),
    ],
)
def test_usage_errors_are_one_line(net_file, capsys, argv, message):
    argv = [str(net_file) if a == "NET" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert message in err and "see 'lipopt" in err and "--help'" in err
    assert err.count("\n") == 1 and out == ""


def test_negative_numbers_in_any_notation_are_values(net_file, capsys):
    code, out, err = run(capsys, "bound", net_file, "--box", "-1e-3", "1", "--method", "naive", "--json")
    assert code == 0, err
    assert strict_json(out)["domain"]["dim"] == 3
    code, out, err = run(capsys, "bound", net_file, "--box", "-inf", "1", "--method", "naive")
    assert_one_line_error(code, out, err, "--box LO HI needs finite numbers")


@pytest.mark.parametrize("command", ["info", "bound", "graph", "sweep", "plot"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"lipopt {command} " in out


# --- bad input: one line, exit 2 -------------------------------------------------------------
def _bad_inputs(p: Path, t: Path):
    """(argv, message) pairs; p is a good network file, t a scratch directory."""
    (t / "text.npz").write_text("just some text\n")
    (t / "trunc.npz").write_bytes(p.read_bytes()[:200])
    (t / "dir.npz").mkdir()
    np.save(t / "c_nan.npy", np.array([np.nan, 0.0, 0.0]))
    np.save(t / "c_str.npy", np.array(["a", "b", "c"]))
    np.save(t / "c5.npy", np.zeros(5))
    np.save(t / "c3.npy", np.zeros(3))
    (t / "c_text.npy").write_text("0 0 0")
    return [
        (["info", t / "text.npz"], "text.npz: not a valid npz file"),
        (["info", t / "trunc.npz"], "trunc.npz: not a valid npz file"),
        (["info", t / "dir.npz"], "dir.npz is a directory"),
        (["info", t / "net.h5"], "unsupported file type '.h5'"),
        (["info", p, "--input-shape", "-1", "-3"], "--input-shape needs positive sizes"),
        (["bound", p, "--level", "100000"], "level/order 100000 is too large"),
        (["bound", p, "--method", "lp", "--level", "-2"], "must be a positive integer"),
        (["bound", p, "--method", "naive", "--level", "3"], "--level 3 follows --method naive, which has no"),
        (["bound", p, "--method", "sdp", "--level", "3"], "which takes --order"),
        (["bound", p, "--order", "1", "--method", "naive"], "--order applies to sdp"),
        (["bound", p, "--method", "LP"], "did you mean 'lp'?"),
        (["bound", p, "--margin", "1", "1"], "--margin I J needs two different outputs, got 1 1"),
        (["bound", p, "--eps", "-0.1", "--center", t / "c3.npy"], "--eps must be a finite radius >= 0"),
        (["bound", p, "--eps", "nan", "--center", t / "c3.npy"], "--eps must be a finite radius >= 0"),
        (["bound", p, "--center", t / "c3.npy"], "needs --eps R"),
        (["bound", p, "--box", "0", "1", "--eps", "0.1"], "does not apply to --box"),
        (["bound", p, "--box", "0", "1", "--center", "x0", "--eps", "0.1"], "not both"),
        (["bound", p, "--center", t / "c_nan.npy", "--eps", "0.1"], "contains NaN or inf"),
        (["bound", p, "--center", t / "c_str.npy", "--eps", "0.1"], "must hold real numbers"),
        (["bound", p, "--center", t / "c_text.npy", "--eps", "0.1"], "is not a readable .npy array"),
        (["bound", p, "--center", p, "--eps", "0.1"], "is an .npz archive"),
        (["bound", p, "--center", t / "c5.npy", "--eps", "0.1"], "has 5 entries but the network has 3"),
        (["bound", p, "--center", t / "none.npy", "--eps", "0.1"], "none.npy: no such file"),
        (["bound", p, "--max-memory", "nan"], "--max-memory must be a positive number"),
        (["bound", p, "--max-memory", "-1"], "--max-memory must be a positive number"),
        (["bound", p, "--time-limit", "0"], "--time-limit must be a positive number"),
        (["bound", p, "--time-limit", "nan"], "--time-limit must be a positive number"),
        (["bound", p, "--seed", "-1"], "--seed must be a non-negative integer"),
        (["bound", p, "--lp-threads", "-1"], "lp option 'threads' must be >= 0"),
        (["bound", p, "--method", "naive", "--lp-algorithm", "ipm"], "need --method lp"),
        (["bound", p, "--lp-basis", "krivine", "--lp-project", "on"], "Sherali–Adams basis only"),
        (["graph", p, "--save", t / "g.svg"], "use a .png or .pdf file name"),
        (["graph", p, "--save", t], "is a directory"),
        (["graph", p, "--save", p / "g.png"], "is a file"),
        (["graph", p, "--center", t / "c_str.npy", "--eps", "0.1"], "must hold real numbers"),
        (["graph", p, "--eps", "0.1"], "--eps needs --center"),
    ]


def test_bad_input_is_one_line_and_exit_2(net_file, tmp_path, capsys):
    for argv, message in _bad_inputs(net_file, tmp_path):
        code, out, err = run(capsys, *argv)
        assert_one_line_error(code, out, err, message)


def test_debug_after_the_command_shows_the_traceback(net_file):
    with pytest.raises(LipoptError, match="--seed must be"):
        main(["bound", str(net_file), "--seed", "-1", "--debug"])


def test_unexpected_errors_are_one_line_exit_1(net_file, capsys, monkeypatch):
    def broken(args):
        raise TypeError("boom\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    code, out, err = run(capsys, "info", net_file)
    assert_one_line_error(code, out, err, "lipopt: internal error: TypeError: boom second line", 1)
    assert "--debug" in err
    with pytest.raises(TypeError):
        main(["--debug", "info", str(net_file)])


# --- LP solver flags -------------------------------------------------------------------------
def test_lp_flags_reach_the_lp_method(net_file, capsys, monkeypatch):
    """The --lp-* flags are generated from the lp method's Options and reach its run."""
    import lipopt.api

    seen = {}
    real = lipopt.api.bound_chain

    def spy(*args, **kwargs):
        seen["options"] = copy.deepcopy(kwargs.get("options"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lipopt.api, "bound_chain", spy)
    argv = ["bound", net_file, "--method", "lp", "--level", "3", "--json"]
    code, out, err = run(
        capsys,
        *argv,
        "--lp-algorithm",
        "ipm",
        "--lp-threads",
        "1",
        "--lp-basis",
        "sherali-adams",
        "--lp-project",
        "off",
        "--lp-cliques",
        "min-fill",
    )
    assert code == 0, err
    assert seen["options"] == {
        "lp": {
            "algorithm": "ipm",
            "threads": 1,
            "basis": "sherali-adams",
            "project": False,
            "cliques": "min-fill",
        }
    }
    lp = [b for b in strict_json(out)["bounds"] if b["method"] == "lp"][0]
    assert "ipm" in lp["solver"] and lp["certified"]
    # defaults unchanged: no flag, no options
    code, out, err = run(capsys, *argv)
    assert code == 0 and seen["options"] is None
    # krivine basis: a different (larger) LP, still certified, never tighter
    code, out2, err = run(capsys, *argv, "--lp-basis", "krivine")
    assert code == 0, err
    kv = [b for b in strict_json(out2)["bounds"] if b["method"] == "lp"][0]
    base = [b for b in strict_json(out)["bounds"] if b["method"] == "lp"][0]
    assert kv["certified"] and kv["size"]["constraints"] > base["size"]["constraints"]
    assert kv["value"] >= base["value"] * (1 - 1e-9)


# --- JSON ------------------------------------------------------------------------------------
def test_json_is_strict(capsys):
    cli._print_json({"a": float("inf"), "b": [np.float64("nan"), 1.5], "c": np.arange(2)})
    assert strict_json(capsys.readouterr().out) == {"a": None, "b": [None, 1.5], "c": [0, 1]}


@pytest.mark.parametrize("command", ["info", "bound", "graph"])
def test_json_stdout_holds_only_json(net_file, capsys, command):
    extra = ["--method", "naive", "--method", "lp", "--level", "3"] if command == "bound" else []
    code, out, err = run(capsys, command, net_file, "--json", *extra)
    assert code == 0, err
    strict_json(out)


# --- nothing half-written --------------------------------------------------------------------
def test_graph_save_writes_the_picture_atomically(net_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "pics" / "g.png"
    code, stdout, err = run(capsys, "graph", net_file, "--output", "0", "--save", out)
    assert code == 0, err
    assert out.read_bytes()[:4] == b"\x89PNG" and f"picture saved to {out}" in stdout
    assert [p.name for p in out.parent.iterdir()] == ["g.png"]

    import lipopt.plot

    def half_written(cs, path, **kw):
        Path(path).write_bytes(b"\x89PNG partial")
        raise LipoptError("drawing failed")

    monkeypatch.setattr(lipopt.plot, "plot_cliques", half_written)
    failed = tmp_path / "new" / "g.png"
    code, stdout, err = run(capsys, "graph", net_file, "--save", failed)
    assert_one_line_error(code, stdout, err, "drawing failed")
    assert not (tmp_path / "new").exists()


def test_plot_writes_figures_only_when_complete(results_csv, tmp_path, capsys, monkeypatch):
    import lipopt.plot

    def fails(*a, **k):
        raise LipoptError("time figure failed")

    monkeypatch.setattr(lipopt.plot, "plot_times", fails)  # after plot_bounds wrote its figures
    out_dir = tmp_path / "figs"
    code, out, err = run(capsys, "plot", results_csv, "--out-dir", out_dir, "--format", "png")
    assert_one_line_error(code, out, err, "time figure failed")
    assert not out_dir.exists()
    monkeypatch.undo()
    code, out, err = run(capsys, "plot", results_csv, "--out-dir", out_dir, "--format", "png")
    assert code == 0, err
    written = sorted(p.name for p in out_dir.iterdir())
    assert written and all(n.endswith(".png") for n in written)  # no temporary directory left
    assert sorted(out.split()) == [str(out_dir / n) for n in written]


def test_plot_bad_input(results_csv, tmp_path, capsys):
    (tmp_path / "bin.csv").write_bytes(b"network,norm\n\xff\xfe\x00garbage\n")
    cases = [
        (["plot", tmp_path / "bin.csv", "--out-dir", tmp_path / "a"], "is not a readable CSV table"),
        (["plot", tmp_path / "net.npz", "--out-dir", tmp_path / "b"], "expected a .csv file"),
        (["plot", tmp_path / "none.csv", "--out-dir", tmp_path / "c"], "no such file"),
        (["plot", results_csv, "--out-dir", tmp_path / "net.npz"], "exists and is not a directory"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *argv)
        assert_one_line_error(code, out, err, message)
    assert not any((tmp_path / d).exists() for d in "abc")


SPEC = '[networks]\nfiles = ["net.npz"]\n[run]\nnorms = ["inf"]\nmethods = ["naive", "lp"]\nlevels = [3]\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (SPEC + "margin = [0, 0]\n", "run.margin needs two different outputs"),
        (SPEC + '[run.options.lp]\nalgorithm = "fast"\n', "'algorithm' must be one of auto, simplex"),
        (SPEC + "[run.options.lp]\nthreds = 2\n", "[run.options.lp]: unknown lp option 'threds'"),
        (SPEC + "[run.options.lp]\nthreads = -1\n", "'threads' must be >= 0"),
        (SPEC + '[run.options.LP]\nalgorithm = "ipm"\n', "unknown options section [run.options.LP]"),
        (SPEC.replace("levels", "degrees"), "run.degrees was renamed run.levels"),
        (b"\xff\xfe not text", "not a UTF-8 text file"),
    ],
)
def test_sweep_spec_errors_fail_before_writing(net_file, tmp_path, capsys, text, message):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out" / "r.csv"
    code, stdout, err = run(capsys, "sweep", spec, "--out", out, "--no-progress")
    assert_one_line_error(code, stdout, err, message)
    assert not (tmp_path / "out").exists()


def test_sweep_argument_errors(net_file, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "r.csv"
    cases = [
        (["sweep", net_file, "--out", out], "expected a .toml file"),
        (["sweep", tmp_path, "--out", out], "is a directory"),
        (["sweep", spec, "--out", tmp_path / "r.txt"], "must be a .csv file"),
        (["sweep", spec, "--out", out, "--workers", "0"], "--workers must be >= 1"),
        (["sweep", spec, "--out", out, "--workers", "2"], "--workers applies to --executor processes"),
        (["sweep", spec, "--out", out, "--scheduler", "tcp://h:1"], "--scheduler applies to --executor dask"),
    ]
    for argv, message in cases:
        code, stdout, err = run(capsys, *argv, "--no-progress")
        assert_one_line_error(code, stdout, err, message)
    assert not out.exists()


def test_sweep_options_are_used(net_file, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + '[run.options.lp]\nalgorithm = "ipm"\nthreads = 1\nproject = false\n')
    out = tmp_path / "r.csv"
    code, stdout, err = run(capsys, "sweep", spec, "--out", out, "--no-progress")
    assert code == 0, err
    from lipopt.sweep import read_results

    lp = [r for r in read_results(out) if r["method"] == "lp"]
    assert lp and "ipm" in lp[0]["solver"] and lp[0]["certified"]


def test_failed_sweep_leaves_no_empty_table(net_file, tmp_path, capsys, monkeypatch):
    import lipopt.sweep

    def unreachable(*a, **k):
        raise LipoptError("cannot reach the Dask scheduler tcp://h:1")

    monkeypatch.setattr(lipopt.sweep, "_iter_serial", unreachable)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "new" / "r.csv"
    code, stdout, err = run(capsys, "sweep", spec, "--out", out, "--no-progress")
    assert_one_line_error(code, stdout, err, "cannot reach the Dask scheduler")
    assert not (tmp_path / "new").exists()


# --- a real process --------------------------------------------------------------------------
def test_real_process_streams(net_file, tmp_path):
    exe = [sys.executable, "-m", "lipopt.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    np.save(tmp_path / "bad.npy", np.array(["a", "b", "c"]))
    r = subprocess.run(
        [*exe, "bound", str(net_file), "--center", str(tmp_path / "bad.npy"), "--eps", "0.1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run(
        [
            *exe,
            "bound",
            str(net_file),
            "--method",
            "lp",
            "--level",
            "3",
            "--lp-algorithm",
            "simplex",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert strict_json(r.stdout)["bounds"][0]["method"] == "lp"
