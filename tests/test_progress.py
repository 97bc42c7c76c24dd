"""Progress: long steps report to the chain's Progress (branch and bound: upper, lower, gap,
nodes; iterative solvers: their iterations), solvers print nothing, and a step whose solver cannot
be interrupted runs where it can be stopped."""

from __future__ import annotations

import time

import pytest
from conftest import Recorder, random_net

from lipopt import limits
from lipopt.chain import bound_chain
from lipopt.loaders import save_npz
from lipopt.problems import make_domain, make_target
from lipopt.progress import SILENT, report, reporting_to
from lipopt.results import Status


def _reports(rec: Recorder, step: str) -> list[dict]:
    return [n for s, n in rec.reports if s.startswith(step)]


def test_report_goes_to_the_current_progress_only_inside_the_block():
    rec = Recorder()
    report(ignored=1.0)  # no current progress: nothing happens
    with reporting_to(rec):
        report(iteration=1)
        with reporting_to(SILENT):
            report(iteration=99)
        report(iteration=2)
    report(iteration=3)
    assert [n["iteration"] for _, n in rec.reports] == [1, 2]


def test_structured_lipsdp_reports_its_iterations_and_gap():
    rec = Recorder()
    net = random_net([6, 12, 12, 3], seed=1)
    chain = bound_chain(net, "2", methods=["lipsdp"], progress=rec)
    seen = _reports(rec, "lipsdp")
    assert chain.best.certified and len(seen) >= 3
    assert [n["iteration"] for n in seen] == list(range(1, len(seen) + 1))
    assert seen[-1]["gap"] < seen[0]["gap"]


def test_branch_and_bound_reports_upper_lower_gap_and_nodes():
    rec = Recorder()
    net = random_net([3, 6, 6, 6, 2], seed=4)
    chain = bound_chain(net, "inf", methods=["bab"], domain=make_domain(net, box=(-1.0, 1.0)), progress=rec)
    seen = _reports(rec, "bab")
    assert seen and {"upper", "lower", "gap", "nodes"} <= set(seen[-1])
    uppers = [n["upper"] for n in seen]
    assert all(a >= b for a, b in zip(uppers, uppers[1:], strict=False))  # anytime: never rises
    assert seen[-1]["upper"] >= chain.best.value * (1 - 1e-12)


def test_mixing_and_pop_loops_report(tmp_path):
    rec = Recorder()
    net = random_net([4, 20, 3], seed=2)
    bound_chain(net, "1", methods=["sdp"], levels=[1], progress=rec)
    seen = _reports(rec, "sdp")
    assert any("pop" in n for n in seen)  # ℓ1: one POP per input and sign
    assert any("iteration" in n for n in seen)  # the mixing method's sweeps


def test_a_conic_route_runs_in_a_child_process_stopped_at_the_time_limit(monkeypatch):
    """CVXOPT has no time limit: the chain runs the conic LipSDP where it can be stopped."""
    calls = []
    real = limits.run_bounded
    monkeypatch.setattr(limits, "run_bounded", lambda fn, t, m: calls.append(t) or real(fn, t, m))
    net = random_net([40, 120, 120, 120, 10], seed=0)
    t0 = time.perf_counter()
    chain = bound_chain(net, "2", methods=["lipsdp"], options={"lipsdp": {"solver": "CVXOPT"}},
                        time_limit=0.5, raise_if_all_refused=False)
    elapsed = time.perf_counter() - t0
    row = chain.rows[0]
    assert calls == [0.5]
    assert row.status == Status.TIME_LIMIT and not row.certified
    assert elapsed < 0.5 + limits.GRACE_S + 5.0


def test_structured_routes_run_in_process():
    net = random_net([5, 8, 8, 2], seed=3)
    from lipopt.registry import Context, get_method, parse_options

    ctx = Context(net, "2", make_target(net), None)
    lipsdp = get_method("lipsdp")
    assert lipsdp.stops_at_time_limit(ctx, None, parse_options("lipsdp", {}))
    assert not lipsdp.stops_at_time_limit(ctx, None, parse_options("lipsdp", {"solver": "CVXOPT"}))


@pytest.mark.parametrize("flag", [["--no-progress"], ["--json"]])
def test_cli_without_progress_writes_nothing_but_the_table_to_stderr(flag, tmp_path, capsys):
    from lipopt.cli import main

    path = tmp_path / "net.npz"
    save_npz(random_net([4, 6, 6, 2], seed=0), path)
    assert main(["bound", str(path), "--norm", "inf", "--method", "bab", *flag]) in (0, None)
    assert capsys.readouterr().err == ""
