"""``lipopt.bound``: one call for a torch model, a file or a Network; the same object as the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import Recorder, random_net

import lipopt
from lipopt.cli import main
from lipopt.loaders import save_npz
from lipopt.problems import make_domain

torch = pytest.importorskip("torch")

STABLE = ("method", "level", "value", "certified", "status", "note", "derived_from")


def _stable(d: dict) -> dict:
    """The to_dict() fields that do not depend on timing."""
    return {
        "network": d["network"],
        "norm": d["norm"],
        "target": d["target"],
        "domain": d["domain"],
        "bounds": [{k: b[k] for k in STABLE} for b in d["bounds"]],
        "lower_bound": d["lower_bound"],
        "best": d["best"],
        "plan": d["plan"],
    }


def _torch_mlp(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    ).double()


@pytest.mark.parametrize(
    "norm, kwargs, argv",
    [
        (
            "inf",
            {"output": 1, "methods": ["naive", "lp"], "levels": [3]},
            ["--output", "1", "--method", "naive", "--method", "lp", "--level", "3"],
        ),
        ("2", {"methods": ["naive", "lipsdp"]}, ["--method", "naive", "--method", "lipsdp"]),
        ("1", {"domain": (0.0, 0.5)}, ["--box", "0", "0.5"]),  # the automatic chain
    ],
)
def test_bound_on_a_torch_model_equals_the_cli_on_its_file(norm, kwargs, argv, tmp_path, capsys):
    model = _torch_mlp()
    api = lipopt.bound(model, norm, time_limit=60, **kwargs)
    path = tmp_path / "Sequential.pt"
    torch.jit.trace(model, torch.zeros(1, 4, dtype=torch.float64)).save(str(path))
    assert main(["bound", str(path), "--norm", norm, "--json", "--time-limit", "60", *argv]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert _stable(cli) == _stable(json.loads(json.dumps(api.to_dict())))
    assert api.upper == cli["best"]["value"] and api.lower == cli["lower_bound"]["value"]
    assert api.lower <= api.upper


def test_bound_accepts_files_networks_and_domain_forms(tmp_path):
    net = random_net([3, 5, 2], seed=4)
    path = tmp_path / "n.npz"
    save_npz(net, path)
    a = lipopt.bound(net, "inf", methods=["abs-product"], domain={"center": np.zeros(3), "eps": 0.2})
    b = lipopt.bound(str(path), "inf", methods=["abs-product"], domain=(-0.2, 0.2))
    c = lipopt.bound(net, "inf", methods=["abs-product"], domain=make_domain(net, box=(-0.2, 0.2)))
    assert a.upper == b.upper == c.upper
    assert [r.method for r in a.rows] == ["abs-product"] and a.lower is not None
    with pytest.raises(lipopt.LipoptError, match="'center' and 'eps'"):
        lipopt.bound(net, domain={"centre": 0})
    with pytest.raises(lipopt.LipoptError, match="stores no x0"):
        lipopt.bound(net, domain={"center": "x0", "eps": 0.1})


def test_result_renders_as_text_and_html():
    res = lipopt.bound(random_net([3, 4, 2], seed=1), "2")
    html = res._repr_html_()
    assert "<table>" in html and "naive" in html and "automatic chain" in html
    text = str(res)
    assert "best certified" in text and "automatic chain:" in text
    assert res.plan and any(line.startswith("chose") for line in res.plan)


def test_bound_forwards_a_progress_object_for_convergence_plots():
    """A recording Progress gets the branch and bound's trajectory: uppers never rise, lowers
    never fall, every upper stays above every lower, and the last report is the row's value."""
    rec = Recorder()
    net = random_net([3, 8, 8, 8, 2], seed=3)
    res = lipopt.bound(net, "inf", output=0, domain=(-1.0, 1.0), methods=["bab"], progress=rec)
    seen = [n for step, n in rec.reports if step == "bab"]
    assert "bab" in rec.steps and seen
    uppers, lowers = [n["upper"] for n in seen], [n["lower"] for n in seen]
    assert all(a >= b for a, b in zip(uppers, uppers[1:], strict=False))
    assert all(a <= b for a, b in zip(lowers, lowers[1:], strict=False))
    assert min(uppers) >= max(lowers) * (1 - 1e-12)
    bab = next(r for r in res.rows if r.method == "bab")
    assert uppers[-1] == pytest.approx(bab.value, rel=1e-12)
