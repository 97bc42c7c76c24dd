"""Plots of a results table and of clique structures."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lipopt import LipoptError
from lipopt.cli import main as cli_main
from lipopt.plot import plot_cliques, plot_results
from lipopt.sweep import COLUMNS, run_sweep


def synthetic_table(path: Path) -> None:
    """A table like a sweep's: 2 bands × 2 seeds, ℓ∞ global and local, lp and sdp at several
    degrees (one uncertified, one failed), and the reference methods."""
    rows = []
    rng = np.random.default_rng(0)
    for band in (3, 5):
        for seed in (0, 1):
            net = f"random_8-8-8-1_torch_seed{seed}_band{band}"
            for radius in ("global", "0.1"):
                low = 1.0 + rng.uniform()
                naive = low * (8 + band)
                base = dict(network=net, norm="inf", radius=radius, lower_bound=low,
                            naive_bound=naive, family=f"8-8-8-1_band{band}", band=band,
                            seed=seed, architecture="8-8-8-1", target="output 0",
                            source="generated", init="torch")
                rows.append({**base, "method": "naive", "value": naive, "certified": "true",
                             "status": "optimal"})
                rows.append({**base, "method": "abs-product", "value": low * 3,
                             "certified": "true", "status": "optimal"})
                rows.append({**base, "method": "lower", "value": low, "certified": "false",
                             "bound_type": "lower", "status": "lower bound"})
                for method, degrees in (("lp", (3, 4, 5)), ("sdp", (1, 2))):
                    for d in degrees:
                        v = low * (1 + 2.0 / d + 0.1 * band)
                        cert = not (method == "lp" and d == 5)
                        status = "optimal" if cert else "time limit"
                        row = {**base, "method": method, "level": d, "value": v,
                               "certified": "true" if cert else "false", "status": status,
                               "build_time_s": 0.01 * d**2 * band, "solve_time_s": 0.05 * d**3,
                               "bound_type": "upper"}
                        if method == "sdp" and d == 2 and seed == 1:
                            row.update(value="", certified="false", status="error: boom",
                                       build_time_s="", solve_time_s="")
                        rows.append(row)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            r.setdefault("bound_type", "upper")
            w.writerow({c: r.get(c, "") for c in COLUMNS})


def assert_image(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 5000, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_results_writes_every_figure(tmp_path):
    table = tmp_path / "results.csv"
    synthetic_table(table)
    paths = plot_results(table, tmp_path / "plots", formats=["png", "pdf"])
    names = {p.name for p in paths}
    for stem in ("bounds_linf_global", "bounds_linf_r0.1", "time_linf_global", "time_linf_r0.1",
                 "tightness_linf_global", "tightness_linf_r0.1"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names
    for p in paths:
        if p.suffix == ".png":
            assert_image(p)
        else:
            assert p.read_bytes()[:5] == b"%PDF-"


def test_plot_cli_and_real_sweep_without_bands(tmp_path):
    spec = {"networks": {"sizes": [[4, 6, 1]], "seeds": [0], "init": "uniform"},
            "run": {"norms": ["2"], "methods": ["naive", "abs-product", "lp", "lower"],
                    "levels": [2, 3]}}
    table = tmp_path / "r.csv"
    run_sweep(spec, table, progress=False)
    out = tmp_path / "figs"
    assert cli_main(["plot", str(table), "--out-dir", str(out), "--format", "png"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs][0] == "bounds_l2_global.png"
    assert not list(out.glob("tightness*"))  # a single (dense) band: no tightness figure
    for p in pngs:
        assert_image(p)


def test_plot_errors(tmp_path):
    table = tmp_path / "results.csv"
    synthetic_table(table)
    with pytest.raises(LipoptError, match="format"):
        plot_results(table, tmp_path, formats=["gif"])
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(LipoptError, match="no rows"):
        plot_results(empty, tmp_path)
    with pytest.raises(LipoptError, match="no such file"):
        plot_results(tmp_path / "absent.csv", tmp_path)


def test_plot_cliques(tmp_path):
    from lipopt.models import random_network
    from lipopt.problems import build_problem, make_target

    net = random_network([10, 10, 10, 1], band=3, seed=0, init="uniform")
    pop = build_problem(net, "inf", make_target(net)).pops[0]
    if importlib.util.find_spec("lipopt.graph") is not None:
        from lipopt.graph import clique_structure

        cs = clique_structure(pop.polynomial, "min-degree")
    else:  # the graph module is not there yet: any object with .cliques
        from types import SimpleNamespace

        cs = SimpleNamespace(cliques=[np.arange(i, i + 4) for i in range(0, pop.n_vars - 3, 2)])
    p = plot_cliques(cs, tmp_path / "cliques.png", polynomial=pop.polynomial)
    assert p == tmp_path / "cliques.png"
    assert_image(p)
    q = plot_cliques(cs, tmp_path / "cliques_plain", title="cliques")
    assert q.name == "cliques_plain.png"
    assert_image(q)
    pdf = plot_cliques(cs, tmp_path / "c.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
