"""The registered relaxation methods (lp, sdp, sdp+lp, sdp-ball, exact-pop) against the old chain's
rows, their time and memory limits, and the backend table."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_net

from lipopt.chain import bound_chain
from lipopt.errors import LipoptError
from lipopt.exact import exact_lipschitz
from lipopt.problems import make_domain, make_target
from lipopt.registry import Context, get_method, option_groups, parse_options
from lipopt.results import Status
from lipopt.solvers.base import RULES, LinearProgram, Shape, backend, backends, candidates, solve

# (sizes, seed, norm, target, local box, method, level, options)
REQUESTS = [
    ([4, 6, 1], 0, "inf", {"output": 0}, None, "lp", 2, {}),
    ([4, 6, 1], 0, "1", {"output": 0}, None, "lp", 3, {"algorithm": "ipm"}),
    ([3, 4, 4, 1], 1, "inf", {"output": 0}, None, "lp", 4, {"basis": "krivine"}),
    ([5, 6, 2], 2, "inf", {"margin": (0, 1)}, (-0.2, 0.3), "lp", 2, {"cliques": "dense"}),
    ([4, 6, 1], 0, "2", {"output": 0}, None, "sdp", 1, {}),
    ([4, 6, 1], 0, "inf", {"output": 0}, None, "sdp", 2, {}),
    ([3, 4, 4, 1], 1, "inf", {"output": 0}, None, "sdp", 1, {}),
    ([5, 6, 1], 3, "inf", {"output": 0}, None, "sdp", 1, {"solver": "conic"}),
    ([4, 6, 1], 0, "1", {"output": 0}, None, "sdp+lp", 1, {}),
    ([5, 6, 1], 3, "inf", {"output": 0}, None, "sdp+lp", 1, {"sa_solver": "lagrangian"}),
    ([5, 7, 3], 5, "2", {}, None, "sdp-ball", None, {}),
    ([4, 6, 1], 0, "2", {"output": 0}, (-0.5, 0.5), "exact-pop", None, {}),
]


def _request(sizes, seed, norm, target, box):
    net = random_net(sizes, seed)
    domain = make_domain(net, box=box) if box else None
    return net, make_target(net, **target), domain


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r[5]}-{r[6]}-{r[2]}")
def test_registered_methods_are_sound_and_the_chain_runs_them_as_is(request_):
    """A step run directly equals the chain's row for it; certified values are ≥ the exact
    constant (ℓ2 vector constants: ≥ every scalar one). Before/after values of the rework against
    the pre-registry pipelines: ``benchmarks/relaxations_before_after.py``."""
    sizes, seed, norm, target, box, method, level, options = request_
    net, target, domain = _request(sizes, seed, norm, target, box)
    (chain_row,) = bound_chain(net, norm, [method], {method: [level]} if level else None, target, domain,
                               options={get_method(method).group(): options}).bounds
    m = get_method(method)
    row = m.run(Context(net, norm, target, domain), level, parse_options(m.group(), options))
    assert row.method == method and row.level == level and row.certified
    assert row.status == chain_row.status and row.value == pytest.approx(chain_row.value, rel=1e-12)
    assert row.timings.total >= row.timings.solve >= 0
    exact = max(exact_lipschitz(net, c, norm, domain) for c in target.vectors)
    assert row.value >= exact * (1 - 1e-12)


def test_the_time_limit_is_shared_and_left_over_pops_get_the_degree_zero_certificate():
    from lipopt.methods.pop import positive_part_bound

    net = random_net([4, 6, 5, 1], seed=7)
    ctx = Context(net, "1", make_target(net), None, time_limit=1e-9)
    degree_zero = ctx.problem().combine([positive_part_bound(p) for p in ctx.problem().pops])
    assert degree_zero >= exact_lipschitz(net, np.ones(1), "1")
    for method, level in (("lp", 3), ("sdp", 1), ("sdp+lp", 1), ("exact-pop", None)):
        m = get_method(method)
        row = m.run(ctx, level, m.Options())
        assert row.status == Status.TIME_LIMIT and row.certified and "positive coefficients" in row.note
        assert row.value == pytest.approx(degree_zero, rel=1e-12)


def test_estimates_come_before_building_and_the_memory_limit_refuses():
    net = random_net([4, 6, 1], seed=0)
    target = make_target(net, output=0)
    roomy, tight = Context(net, "inf", target, None), Context(net, "inf", target, None, max_memory_bytes=1e3)
    lp = get_method("lp")
    est = lp.estimate(roomy, 3, lp.Options())
    row = lp.run(roomy, 3, lp.Options())
    assert (est.constraints, est.variables, est.nonzeros) == (row.size.constraints, row.size.variables,
                                                              row.size.nonzeros)
    assert est.memory_bytes > 1e3
    for step in (lp.estimate, lp.run):  # refused before anything is built, with the LP's size
        with pytest.raises(LipoptError, match=r"level-3 LP .* rows.*memory budget"):
            step(tight, 3, lp.Options())
    sdp = get_method("sdp")
    assert sdp.estimate(roomy, 5, sdp.Options()).memory_bytes > 1e3
    for step in (sdp.estimate, sdp.run):
        with pytest.raises(LipoptError, match="order-5 moment relaxation would need"):
            step(tight, 5, sdp.Options())
    with pytest.raises(LipoptError, match="exact-pop enumerates"):
        get_method("exact-pop").run(tight, None, parse_options("exact-pop", {"max_vars": 3}))


def test_options_are_typed_and_keep_the_cli_flag_names():
    groups = option_groups()
    assert {"lp", "sdp", "sdp-ball", "exact-pop"} <= set(groups)
    assert get_method("sdp").group() == get_method("sdp+lp").group() == "sdp"
    assert {"algorithm", "threads", "basis", "project", "cliques"} <= set(groups["lp"].__dataclass_fields__)
    assert parse_options("lp", {"algorithm": "ipm", "cliques": "min-fill"}).cliques == "min-fill"
    with pytest.raises(LipoptError, match="must be one of"):
        parse_options("lp", {"algorithm": "barrier"})
    with pytest.raises(LipoptError, match="unknown sdp option 'shor_solver'"):
        parse_options("sdp", {"shor_solver": "conic"})
    with pytest.raises(LipoptError, match="'max_iter' must be >= 1"):
        parse_options("sdp", {"max_iter": 0})
    with pytest.raises(LipoptError, match="project = on applies to the Sherali–Adams basis only"):
        parse_options("lp", {"project": True, "basis": "krivine"})
    assert get_method("sdp-ball").applies(Context(random_net([2, 3, 3, 1], 0), "2", None, None))
    assert get_method("lp").hierarchy == "level" and get_method("sdp").hierarchy == "order"


def test_one_table_chooses_the_backend_by_shape():
    names = {b.name for b in backends().values()}
    assert {"highs", "mixing", "lagrangian"} <= names
    assert {r.kind for r in RULES} == {"lp", "shor", "shor+cuts", "moment", "lmi"}
    (highs, small), = candidates(Shape("lp", nonzeros=100))
    assert highs.name == "highs" and small == {"algorithm": "simplex"}
    assert candidates(Shape("lp", nonzeros=10**6))[0][1] == {"algorithm": "ipm"}
    assert candidates(Shape("shor", 1, 401))[0][0].name == "mixing"
    first_conic = candidates(Shape("moment", 3, 10, psd_entries=100))[0][0].name
    assert first_conic in ("MOSEK", "CLARABEL", "SCS", "CVXOPT")
    with pytest.raises(LipoptError, match="unknown solver"):
        backend("nope")
    no_rows = sp.csr_matrix((0, 1))
    empty = LinearProgram(np.ones(1), no_rows, np.zeros(0), np.zeros(0), np.zeros(1), np.ones(1))
    with pytest.raises(LipoptError, match="does not solve lp programs"):
        solve(empty, "mixing")
    assert solve(empty).value == 1.0  # max x over 0 ≤ x ≤ 1 without rows


def test_highs_backend_solves_general_lps_with_duals_and_warm_starts():
    """The LP backend beyond the relaxations' form (a branch and bound's repeated solves)."""
    from lipopt.solvers.base import Limits, status_of
    from lipopt.solvers.highs import solve_lp

    rng = np.random.default_rng(0)
    m, n = 60, 40
    A = sp.csr_matrix(rng.normal(size=(m, n)))
    lp = LinearProgram(rng.normal(size=n), A, np.full(m, -5.0), np.full(m, 4.0), -np.ones(n), np.ones(n), 0.5)
    first = solve_lp(lp, Limits(), {"algorithm": "simplex", "keep_state": True})
    again = solve_lp(lp, Limits(), {"algorithm": "simplex", "warm_start": first.state})
    assert first.status == again.status == Status.OPTIMAL and again.iterations == 0
    x, lam = first.primal[0], first.duals[0]
    assert first.value == pytest.approx(0.5 + lp.c @ x, abs=1e-9)
    assert np.all(A @ x >= -5 - 1e-9) and np.all(A @ x <= 4 + 1e-9)
    # the documented sign convention: c + Aᵀλ are the reduced costs, zero strictly inside the bounds
    reduced = lp.c + A.T @ lam
    inside = np.abs(x) < 1 - 1e-9
    assert np.allclose(reduced[inside], 0.0, atol=1e-8)
    assert status_of("user_limit", 9.0, 10.0) == Status.TIME_LIMIT
    assert status_of("user_limit", 1.0, 10.0) == Status.ITERATION_LIMIT
    assert status_of("kInfeasible") == Status.ERROR


def test_a_new_backend_plugs_in_with_its_registration_and_rule():
    """The seam for non-cvxpy solvers: a backend for moment relaxations that returns zero duals is
    chosen by its rule, and its (loose) outcome is still certified: with ``Z = 0``, ``μ = 0`` the
    certificate is the degree-0 bound ``p_∅ + Σ max(p_S, 0)``."""
    from lipopt.methods.pop import SDPOptions, positive_part_bound, sdp_bound
    from lipopt.problems import build_problem
    from lipopt.results import Status
    from lipopt.solvers import base

    class ZeroDuals:
        name, family, kinds = "zero-duals", "test", ("moment",)

        def available(self) -> bool:
            return True

        def solve(self, program, limits, settings):
            Z = tuple(np.zeros((b.size, b.size)) for b in program.blocks)
            return base.Outcome(Status.ITERATION_LIMIT, float("nan"), (*Z, None), solver="zero-duals")

    rule = base.Rule("moment", lambda s: True, ("zero-duals",))
    base.register_backend(ZeroDuals())
    base.add_rule(rule)
    try:
        net = random_net([3, 4, 1], 2)
        pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
        r = sdp_bound(pop, 1, SDPOptions(solver="conic"))
        assert r.solver == "zero-duals" and r.status == Status.ITERATION_LIMIT and r.certified
        assert r.value == pytest.approx(positive_part_bound(pop), rel=1e-9)
    finally:
        base.RULES.remove(rule)
        base._BACKENDS.pop("zero-duals")
