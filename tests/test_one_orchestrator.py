"""One orchestrator: ``lipopt bound``, :func:`lipopt.chain.bound_chain` and a sweep task give the
same rows for the same request; the registry is the one list every front end reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import random_net

from lipopt.chain import bound_chain
from lipopt.cli import main
from lipopt.loaders import save_npz
from lipopt.problems import make_domain, make_target
from lipopt.registry import _REGISTRY, Method, method_names, methods, register
from lipopt.results import BoundResult, Certificate, Status, Timings
from lipopt.sweep import read_results, run_sweep

#: (norm, methods, levels, output or None, radius or None, options)
REQUESTS = [
    ("inf", ["naive", "lp"], {"lp": [3]}, 0, None, {}),
    ("1", ["naive", "abs-product"], {}, None, 0.3, {}),
    ("inf", ["naive", "exact-pop"], {}, 1, None, {"exact-pop": {"max_vars": 2}}),
    ("2", ["naive", "sdp", "lipsdp"], {"sdp": [1]}, 0, None, {}),
]
COMPARED = ("method", "level", "value", "certified", "status", "note")


def _rows(bounds) -> dict:
    return {(b["method"], b["level"]): {k: b[k] for k in COMPARED} for b in bounds}


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: "-".join(r[1]) + f"-l{r[0]}")
def test_cli_api_and_sweep_give_identical_rows(request_, tmp_path, capsys):
    norm, names, levels, output, radius, options = request_
    net = random_net([3, 5, 4, 2], seed=11)
    path = tmp_path / "net.npz"
    save_npz(net, path)
    np.save(tmp_path / "c.npy", np.zeros(3))

    # the Python API
    target = make_target(net, output=output)
    domain = None if radius is None else make_domain(net, center=np.zeros(3), eps=radius)
    api = bound_chain(net, norm, [*names, "lower"], levels, target, domain, options=options, seed=0)
    api_rows = _rows(b.to_dict() for b in api.bounds)

    # the CLI
    argv = ["bound", str(path), "--norm", norm, "--json", "--no-progress"]
    for m in names:
        argv += ["--method", m]
        hierarchy = methods()[m].hierarchy
        argv += [x for k in levels.get(m, []) for x in (f"--{hierarchy}", str(k))]
    argv += ["--output", str(output)] if output is not None else []
    argv += ["--center", str(tmp_path / "c.npy"), "--eps", str(radius)] if radius is not None else []
    for group, values in options.items():
        argv += [x for k, v in values.items() for x in (f"--{group}-{k.replace('_', '-')}", str(v))]
    assert main(argv) == 0
    cli = json.loads(capsys.readouterr().out)
    assert _rows(cli["bounds"]) == api_rows
    assert cli["lower_bound"]["value"] == api.lower_bound.value

    # a sweep task (radius around 0, as --center 0 --eps r)
    spec = {
        "networks": {"files": [str(path)]},
        "run": {
            "norms": [norm],
            "methods": names,
            "levels": sorted({k for v in levels.values() for k in v}) or [1],
            "radii": ["global" if radius is None else radius],
            "options": options,
            **({"output": output} if output is not None else {}),
        },
    }
    if not levels:
        spec["run"].pop("levels")
    run_sweep(spec, tmp_path / "r.csv", progress=False)
    rows = [r for r in read_results(tmp_path / "r.csv") if r["method"] != "lower"]
    sweep_rows = {
        (r["method"], r["level"]): {
            "method": r["method"],
            "level": r["level"],
            "value": r["value"],
            "certified": r["certified"],
            "status": r["status"],
            "note": r["note"] or None,
        }
        for r in rows
    }
    assert sweep_rows == api_rows
    assert {r["lower_bound"] for r in rows} == {api.lower_bound.value}


@dataclass(frozen=True)
class _ScaledOptions:
    factor: float = field(default=2.0, metadata={"help": "multiple of the naive bound", "min": 1.0})


def test_a_new_method_is_one_registration(tmp_path, capsys):
    """Registering a method is all it takes for the chain, the CLI (choices, help, flags) and
    sweep validation to know it."""

    @register
    class Scaled(Method):
        name = "scaled-naive"
        summary = "the naive bound times a factor (a test method)"
        Options = _ScaledOptions

        def run(self, ctx, level, options):
            from lipopt.bounds import naive_bound

            v = naive_bound(ctx.net, ctx.norm, ctx.target, ctx.domain, ctx.ranges) * options.factor
            return BoundResult.from_certificate(
                self.name, None, Certificate(v, True, "closed form"), Status.OPTIMAL, Timings()
            )

    try:
        assert "scaled-naive" in method_names()
        net = random_net([3, 4, 1], seed=2)
        path = tmp_path / "net.npz"
        save_npz(net, path)
        assert (
            main(["bound", str(path), "--method", "scaled-naive", "--scaled-naive-factor", "3", "--json"])
            == 0
        )
        (row,) = json.loads(capsys.readouterr().out)["bounds"]
        chain = bound_chain(net, "inf", ["naive", "scaled-naive"], options={"scaled-naive": {"factor": 3.0}})
        assert row["value"] == pytest.approx(3 * chain.bounds[0].value) == chain.bounds[1].value
        with pytest.raises(SystemExit):
            main(["bound", "--help"])
        assert "scaled-naive" in capsys.readouterr().out
        assert main(["bound", str(path), "--method", "scaled-naive", "--scaled-naive-factor", "0.5"]) == 2
        assert "'factor' must be >= 1.0" in capsys.readouterr().err
        spec = {"networks": {"files": [str(path)]}, "run": {"norms": ["inf"], "methods": ["scaled-naive"]}}
        run_sweep(
            {**spec, "run": {**spec["run"], "options": {"scaled-naive": {"factor": 3}}}},
            tmp_path / "r.csv",
            progress=False,
        )
        assert {r["method"] for r in read_results(tmp_path / "r.csv")} == {"scaled-naive"}
    finally:
        _REGISTRY.pop("scaled-naive", None)


def test_refusals_are_rows_unless_everything_is_refused():
    net = random_net([3, 5, 4, 2], seed=1)
    chain = bound_chain(net, "inf", ["naive", "exact-pop"], options={"exact-pop": {"max_vars": 2}})
    refused = chain.bounds[1]
    assert refused.status is Status.REFUSED and not refused.certified and "2^2" in refused.note
    with pytest.raises(Exception, match="2\\^2"):
        bound_chain(net, "inf", ["exact-pop"], options={"exact-pop": {"max_vars": 2}})
    rows = bound_chain(
        net, "inf", ["exact-pop"], options={"exact-pop": {"max_vars": 2}}, raise_if_all_refused=False
    ).bounds
    assert [r.status for r in rows] == [Status.REFUSED]
