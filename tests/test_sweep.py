"""Sweeps: spec validation, the results table, resume, executors (serial, processes, Dask)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt import LipoptError
from lipopt.cli import main as cli_main
from lipopt.network import Network
from lipopt.sweep import (
    COLUMNS,
    KEY_COLUMNS,
    load_spec,
    network_hash,
    read_results,
    row_key,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[1]
HAS_LP = importlib.util.find_spec("lipopt.methods.pop") is not None


def small_spec(**run: object) -> dict:
    """Two banded 6-6-6-1 networks; ℓ∞ and ℓ2; global and local. ``lp`` rows are errors until
    the LP pipeline exists, which the table must record rather than crash on."""
    spec = {
        "networks": {"sizes": [[6, 6, 6, 1]], "band": [3], "seeds": [0, 1], "init": "uniform"},
        "run": {"norms": ["inf", "2"], "methods": ["naive", "abs-product", "lp", "lower"],
                "levels": [3], "radii": ["global", 0.1], "time_limit": 60},
    }
    spec["run"].update(run)
    return spec


def n_rows(spec: dict) -> int:
    nets = len(spec["networks"]["seeds"]) * len(spec["networks"].get("band", [0]))
    r = spec["run"]
    per_task = sum(len(r["levels"]) if m in ("lp", "sdp", "sdp+lp") else 1 for m in r["methods"])
    return nets * len(r["norms"]) * len(r.get("radii", ["global"])) * per_task


def csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(extra=1), "unknown key 'extra'"),
        (lambda s: s.pop("run"), r"no \[run\] section"),
        (lambda s: s.pop("networks"), r"no \[networks\] section"),
        (lambda s: s["run"].update(norm=["inf"]), r"unknown key 'norm' in \[run\]"),
        (lambda s: s["networks"].update(seed=[1]), r"unknown key 'seed' in \[networks\]"),
        (lambda s: s["run"].pop("norms"), "needs 'norms'"),
        (lambda s: s["run"].update(methods=["lp", "magic"]), "unknown method 'magic'"),
        (lambda s: s["run"].update(levels=[]), "levels is required"),
        (lambda s: s["run"].update(degrees=[3]), "run.degrees was renamed run.levels"),
        (lambda s: s["run"].update(levels=[0]), "run.levels must be >= 1"),
        (lambda s: s["run"].update(norms=["3"]), "unknown norm"),
        (lambda s: s["run"].update(radii=["local"]), "neither \"global\" nor a number"),
        (lambda s: s["run"].update(radii=[-1.0]), "non-negative"),
        (lambda s: s["run"].update(output=5), "out of range"),
        (lambda s: s["networks"].update(init="xavier"), "unknown init 'xavier'"),
        (lambda s: s["networks"].update(sizes=[[6]]), "at least two widths"),
        (lambda s: s["networks"].update(sizes=[[6, 4, 6, 1]]), "band needs square"),
        (lambda s: s["networks"].update(files=["missing.npz"]), "does not exist"),
        (lambda s: s["networks"].pop("sizes"), "applies to generated networks"),
    ],
)
def test_spec_errors_are_clear(mutate, message, tmp_path):
    spec = small_spec()
    mutate(spec)
    with pytest.raises(LipoptError, match=message):
        load_spec(spec, base_dir=tmp_path)


def test_toml_spec_and_example_specs_parse(tmp_path):
    for path in sorted((REPO / "examples").glob("*.toml")):
        spec = load_spec(path)
        assert spec.networks and spec.norms and spec.methods, path
    bad = tmp_path / "bad.toml"
    bad.write_text("[networks]\nsizes = [[3, 3, 1]]\n[run]\nnorms = ['inf']\nmethods = ['naive']\n"
                   "typo = 1\n")
    with pytest.raises(LipoptError, match=r"bad.toml: unknown key 'typo' in \[run\]"):
        load_spec(bad)
    (tmp_path / "broken.toml").write_text("[networks\n")
    with pytest.raises(LipoptError, match="invalid TOML"):
        load_spec(tmp_path / "broken.toml")
    with pytest.raises(LipoptError, match="no such file"):
        load_spec(tmp_path / "absent.toml")


def test_network_hash_identifies_the_weights():
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(4, 3)), rng.normal(size=(1, 4))]
    a = Network.from_weights(w, name="a")
    b = Network.from_weights([x.copy() for x in w], name="b")
    assert network_hash(a) == network_hash(b)
    assert len(network_hash(a)) == 64
    w2 = [w[0].copy(), w[1].copy()]
    w2[0][0, 0] += 1e-12
    assert network_hash(Network.from_weights(w2)) != network_hash(a)
    assert network_hash(Network.from_weights(w, activation="tanh")) != network_hash(a)
    s = Network.from_weights([sp.csr_matrix(w[0]), w[1]])
    assert network_hash(s) == network_hash(Network.from_weights([sp.csr_matrix(w[0]), w[1]]))


# ---------------------------------------------------------------------------------------------
# The table and resume
# ---------------------------------------------------------------------------------------------
def test_sweep_table_columns_values_and_resume(tmp_path):
    from lipopt.models import random_network

    spec = small_spec()
    out = tmp_path / "res" / "results.csv"
    summary = run_sweep(spec, out, progress=False)
    header, rows = csv_rows(out)
    assert header == list(COLUMNS)
    assert len(rows) == n_rows(spec) == summary.rows_written
    keys = {row_key(*(r[c] for c in KEY_COLUMNS)) for r in rows}
    assert len(keys) == len(rows)  # one row per network × norm × radius × method × level

    typed = read_results(out)
    for r in typed:
        assert r["lipopt_version"] and r["numpy_version"] and r["highspy_version"]
        assert len(r["network_hash"]) == 64 and r["seed"] in (0, 1) and r["band"] == 3
        assert r["lower_bound"] > 0 and r["naive_bound"] >= r["lower_bound"]
        if r["method"] in ("naive", "abs-product"):
            assert r["certified"] and r["status"] == "optimal" and r["level"] is None
            assert r["value"] >= r["lower_bound"] * (1 - 1e-12)
            assert r["ratio_to_lower"] == pytest.approx(r["value"] / r["lower_bound"])
            assert r["ratio_to_naive"] == pytest.approx(r["value"] / r["naive_bound"])
        elif r["method"] == "lower":
            assert not r["certified"] and r["bound_type"] == "lower"
            assert r["value"] == r["lower_bound"]
        else:
            assert r["method"] == "lp" and r["level"] == 3
            if r["status"].startswith("error"):
                assert not r["certified"] and r["value"] is None
            elif r["certified"]:
                assert r["value"] >= r["lower_bound"] * (1 - 1e-9)
                assert r["build_time_s"] is not None and r["solve_time_s"] is not None
        assert r["radius"] in ("global", "0.1")
        assert r["center"] == (None if r["radius"] == "global" else "0")
    if HAS_LP:
        lp = [r for r in typed if r["method"] == "lp"]
        assert any(r["certified"] for r in lp), [r["status"] for r in lp]
        assert all(isinstance(r["size"], dict) and r["size"] for r in lp if r["certified"])
        assert any(r["relax_rows"] and r["max_clique"] for r in lp)
    net = random_network([6, 6, 6, 1], band=3, seed=1, init="uniform")
    assert {r["network_hash"] for r in typed if r["network"] == net.name} == {network_hash(net)}

    # JSON lines: the same rows, typed
    jl = jsonl_rows(out)
    assert len(jl) == len(rows) and set(jl[0]) == set(COLUMNS)
    assert isinstance(jl[0]["certified"], bool)

    # resume: a second run adds nothing
    again = run_sweep(spec, out, progress=False)
    assert again.rows_written == 0 and again.rows_skipped == len(rows)
    assert csv_rows(out)[1] == rows

    # delete some rows (as after an interruption): the rerun fills exactly those
    dropped = rows[3:11]
    kept = rows[:3] + rows[11:]
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(kept)
    filled = run_sweep(spec, out, progress=False)
    assert filled.rows_written == len(dropped)
    _, rows3 = csv_rows(out)
    assert len(rows3) == len(rows)
    assert {row_key(*(r[c] for c in KEY_COLUMNS)) for r in rows3} == keys
    for r in rows3[len(kept):]:  # recomputed deterministically
        old = next(o for o in dropped if all(o[c] == r[c] for c in KEY_COLUMNS))
        assert r["value"] == old["value"] and r["lower_bound"] == old["lower_bound"]
    jl = jsonl_rows(out)
    assert len(jl) == len(rows3)
    assert {row_key(*(r[c] for c in KEY_COLUMNS)) for r in jl} == keys


def test_failures_become_rows_and_the_sweep_goes_on(tmp_path):
    spec = {
        "networks": {"sizes": [[5, 5, 1]], "seeds": [0]},
        "run": {"norms": ["inf"], "methods": ["exact-pop", "naive", "sdp", "lower"],
                "levels": [1], "output": 0, "options": {"exact-pop": {"max_vars": 2}}},
    }
    out = tmp_path / "r.csv"
    summary = run_sweep(spec, out, progress=False)
    rows = read_results(out)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"exact-pop", "naive", "sdp", "lower"}
    ex = by_method["exact-pop"]
    # the same row as `lipopt bound` gives for this request: refused, with the reason
    assert ex["status"] == "refused" and not ex["certified"] and ex["value"] is None
    assert "exact-pop" in ex["note"] and "2^2" in ex["note"]
    assert by_method["naive"]["certified"] and by_method["naive"]["value"] > 0
    assert summary.errors >= 1
    assert by_method["naive"]["target"] == "output 0"


def test_file_networks_local_radius_around_x0_and_cli(tmp_path):
    rng = np.random.default_rng(3)
    x0 = rng.uniform(size=4)
    np.savez(tmp_path / "tiny.npz", W0=rng.normal(size=(5, 4)), b0=rng.normal(size=5),
             W1=rng.normal(size=(2, 5)), b1=rng.normal(size=2), x0=x0)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        'description = "file network"\n'
        "[networks]\nfiles = [\"tiny.npz\"]\n"
        "[run]\nnorms = [\"1\"]\nmethods = [\"naive\", \"abs-product\", \"lower\"]\n"
        "radii = [0.05, \"global\"]\nmargin = [0, 1]\n"
    )
    out = tmp_path / "out.csv"
    assert cli_main(["sweep", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    rows = read_results(out)
    assert len(rows) == 6
    assert {r["network"] for r in rows} == {"tiny"}
    assert {r["center"] for r in rows if r["radius"] == "0.05"} == {"x0"}
    assert {r["target"] for r in rows} == {"margin 0-1"}
    assert all(r["seed"] is None and r["source"].endswith("tiny.npz") for r in rows)
    loc = {r["method"]: r["value"] for r in rows if r["radius"] == "0.05"}
    glob_ = {r["method"]: r["value"] for r in rows if r["radius"] == "global"}
    assert loc["abs-product"] <= glob_["abs-product"] * (1 + 1e-12)
    assert cli_main(["sweep", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    assert len(read_results(out)) == 6
    # a spec error is one line on stderr and exit code 2
    spec_path.write_text("[run]\nnorms = ['inf']\nmethods = ['naive']\n")
    assert cli_main(["sweep", str(spec_path), "--out", str(out), "--no-progress"]) == 2


def test_interrupted_sweep_keeps_finished_tasks_and_resumes(tmp_path, monkeypatch):
    import lipopt.sweep as sweep

    spec = small_spec(methods=["naive", "lower"], levels=[])
    out = tmp_path / "r.csv"
    real, calls = sweep.run_task, []

    def interrupted(task):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(sweep, "run_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, progress=False)
    assert len(read_results(out)) == 2 * 2  # two finished tasks, flushed
    monkeypatch.setattr(sweep, "run_task", real)
    summary = run_sweep(spec, out, progress=False)
    assert summary.rows_skipped == 4 and summary.tasks == 6
    assert len(read_results(out)) == n_rows(spec) == len(jsonl_rows(out))


def test_a_crashed_task_is_recorded_as_error_rows(tmp_path, monkeypatch):
    import lipopt.sweep as sweep

    def crash(task):
        raise RuntimeError("worker died")

    monkeypatch.setattr(sweep, "run_task", crash)
    spec = small_spec(methods=["naive", "lower"], levels=[], norms=["inf"], radii=["global"])
    summary = run_sweep(spec, tmp_path / "r.csv", progress=False)
    rows = read_results(tmp_path / "r.csv")
    assert len(rows) == 4 and summary.errors == 4
    assert all(r["status"] == "error: RuntimeError: worker died" and not r["certified"]
               for r in rows)
    assert all(r["network_hash"] and r["lipopt_version"] for r in rows)


def test_output_must_be_a_lipopt_table(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(LipoptError, match="not a lipopt sweep table"):
        run_sweep(small_spec(), other, progress=False)
    with pytest.raises(LipoptError, match="unknown executor"):
        run_sweep(small_spec(), tmp_path / "x.csv", executor="threads", progress=False)


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------
def _compare_to_serial(tmp_path: Path, executor: str, **kw: object) -> None:
    spec = small_spec(methods=["naive", "abs-product", "lower"], levels=[])
    serial, other = tmp_path / "serial.csv", tmp_path / f"{executor}.csv"
    run_sweep(spec, serial, progress=False)
    summary = run_sweep(spec, other, executor=executor, progress=False, **kw)
    assert summary.tasks == 8
    key = lambda r: tuple(r[c] for c in KEY_COLUMNS)  # noqa: E731
    a = sorted(csv_rows(serial)[1], key=key)
    b = sorted(csv_rows(other)[1], key=key)
    assert [key(r) for r in a] == [key(r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["value"] == rb["value"] and ra["network_hash"] == rb["network_hash"]
    assert run_sweep(spec, other, executor=executor, progress=False, **kw).rows_written == 0


def test_process_pool_executor(tmp_path):
    _compare_to_serial(tmp_path, "processes", workers=2)


def test_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    _compare_to_serial(tmp_path, "dask", workers=2)


def test_dask_scheduler_address(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        _compare_to_serial(tmp_path, "dask", scheduler=cluster.scheduler_address)
        # the cluster is not ours to close: it still serves clients
        with distributed.Client(cluster.scheduler_address) as client:
            assert client.submit(sum, [1, 2]).result() == 3
