"""Sherali–Adams / Krivine LP relaxations, HiGHS solves and certificates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipopt.certificates import certify_lp
from lipopt.errors import LipoptError
from lipopt.exact import exact_lipschitz, exact_pop_max
from lipopt.graph import clique_structure
from lipopt.hierarchy.lp import build_lp, estimate_lp_size
from lipopt.hierarchy.subsets import Codec
from lipopt.methods.pop import LPOptions, lp_bound
from lipopt.network import Network
from lipopt.polynomial import PAD, Polynomial
from lipopt.problems import build_problem, make_domain, make_target
from lipopt.solvers.highs import solve_lp

TOL = 1e-6


def random_net(seed: int, depth: int = 1, n_in: int = 3, width: int = 5,
               banded: bool = False) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [n_in] + [width] * depth + [1]
    Ws, bs = [], []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        W = rng.standard_normal((b, a))
        if banded and b > 1:
            i, j = np.indices((b, a))
            W = W * (np.abs(i * (a / b) - j) <= 1.0)
        Ws.append(W)
        bs.append(rng.standard_normal(b))
    return Network.from_weights(Ws, bs)


def pops_of(net: Network, norm: str = "inf", domain=None):
    return build_problem(net, norm, make_target(net, output=0), domain)


def exact_value(problem) -> float:
    vals = [exact_pop_max(p.polynomial) + p.rounding_slack if p.n_vars else
            p.polynomial.constant_term for p in problem.pops]
    return problem.combine(vals)


def lp_size(pop, level: int):
    return estimate_lp_size(clique_structure(pop.polynomial), level, poly=pop.polynomial)


def lp_value(problem, level: int, **kw) -> float:
    vals = []
    for p in problem.pops:
        r = lp_bound(p, max(level, p.degree), LPOptions(**kw))
        assert r.certified
        vals.append(r.value)
    return problem.combine(vals)


net_params = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "depth": st.integers(1, 3),
    "n_in": st.integers(1, 4),
    "width": st.integers(1, 4),
    "banded": st.booleans(),
})


# ---------------------------------------------------------------------------------------------
# Soundness: certified LP ≥ exact POP max ≥ exact Lipschitz constant
# ---------------------------------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(params=net_params, norm=st.sampled_from(["inf", "2", "1"]))
def test_lp_bounds_exact_values(params, norm):
    net = random_net(**params)
    problem = pops_of(net, norm)
    if any(lp_size(p, max(2, p.degree)).nonzeros > 100_000 for p in problem.pops if p.n_vars):
        return  # keep the suite fast (ℓ2 squares double the degree)
    ex = exact_value(problem)
    lp = lp_value(problem, 2)
    assert lp >= ex - 1e-9
    if sum(net.hidden_sizes) <= 10:
        L = exact_lipschitz(net, np.ones(1), norm)
        assert ex >= L - 1e-9


@settings(max_examples=8, deadline=None)
@given(params=net_params)
def test_local_box(params):
    net = random_net(**params)
    dom = make_domain(net, box=(-0.2, 0.3))
    loc, glob = pops_of(net, "inf", dom), pops_of(net, "inf")
    ex_loc, ex_glob = exact_value(loc), exact_value(glob)
    assert ex_loc <= ex_glob + 1e-9
    lp_loc = lp_value(loc, 3)
    assert lp_loc >= ex_loc - 1e-9
    if sum(net.hidden_sizes) <= 10:
        assert ex_loc >= exact_lipschitz(net, np.ones(1), "inf", box=dom) - 1e-9


# ---------------------------------------------------------------------------------------------
# Hierarchy properties
# ---------------------------------------------------------------------------------------------
@settings(max_examples=10, deadline=None)
@given(params=net_params)
def test_chain_monotone_and_exact_at_max_clique(params):
    net = random_net(**params)
    pop = pops_of(net).pops[0]
    if pop.n_vars == 0:
        return
    ex = exact_pop_max(pop.polynomial)
    cs = clique_structure(pop.polynomial)
    top = pop.degree  # keep the LPs small
    while top < cs.max_clique and lp_size(pop, top + 1).nonzeros <= 30_000:
        top += 1
    values = [lp_bound(pop, k).value for k in range(pop.degree, top + 1)]
    assert all(v >= ex - 1e-9 for v in values)
    assert all(b <= a + TOL * max(1.0, abs(a)) for a, b in zip(values[:-1], values[1:],
                                                               strict=True))
    if top == cs.max_clique:
        assert values[-1] == pytest.approx(ex, abs=TOL * max(1.0, abs(ex)))


@pytest.mark.parametrize("seed,depth,banded", [(0, 1, False), (1, 2, False), (2, 2, True),
                                               (3, 2, True), (4, 1, True)])
def test_exact_at_max_clique(seed, depth, banded):
    net = random_net(seed, depth=depth, n_in=3, width=3, banded=banded)
    pop = pops_of(net).pops[0]
    ex = exact_pop_max(pop.polynomial)
    cs = clique_structure(pop.polynomial)
    assert cs.max_clique <= 7
    r = lp_bound(pop, max(cs.max_clique, pop.degree), LPOptions(algorithm="simplex"))
    assert r.value == pytest.approx(ex, abs=TOL * max(1.0, abs(ex)))
    assert r.value >= ex


def test_lp_is_not_trivially_exact():
    """A dense 10-10-1 net: LP-2 is strictly above the POP maximum, LP-3 closes the gap."""
    rng = np.random.default_rng(0)
    net = Network.from_weights([rng.uniform(-0.3, 0.3, (10, 10)), rng.uniform(-0.3, 0.3, (1, 10))],
                               [rng.uniform(-0.3, 0.3, 10), rng.uniform(-0.3, 0.3, 1)])
    pop = pops_of(net).pops[0]
    ex = exact_pop_max(pop.polynomial)
    v2, v3 = lp_bound(pop, 2).value, lp_bound(pop, 3).value
    assert v2 > ex + 1e-3
    assert v3 == pytest.approx(ex, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_tighter_than_sparse(seed):
    net = random_net(seed, depth=2, n_in=3, width=4)
    pop = pops_of(net).pops[0]
    ex = exact_pop_max(pop.polynomial)
    tol = TOL * max(1.0, abs(ex))
    for k in (pop.degree, pop.degree + 1):
        sparse = lp_bound(pop, k).value
        dense = lp_bound(pop, k, LPOptions(cliques="dense")).value
        assert ex - 1e-9 <= dense <= sparse + tol
    small = pops_of(random_net(seed, depth=2, n_in=2, width=2)).pops[0]
    ex_small = exact_pop_max(small.polynomial)
    assert lp_bound(small, small.n_vars, LPOptions(cliques="dense")).value == pytest.approx(ex_small, abs=TOL)


@pytest.mark.parametrize("seed", [0, 3])
def test_krivine_never_tighter(seed):
    net = random_net(seed, depth=2, n_in=2, width=3)
    pop = pops_of(net).pops[0]
    ex = exact_pop_max(pop.polynomial)
    for k in (3, 4):
        sa = lp_bound(pop, k, LPOptions(basis="sherali-adams")).value
        kr = lp_bound(pop, k, LPOptions(basis="krivine")).value
        assert kr >= sa - TOL
        assert kr >= ex - 1e-9


@pytest.mark.parametrize("k", [2, 3, 4])
def test_projection_is_exact_reformulation(k):
    rng = np.random.default_rng(5)
    net = Network.from_weights([rng.uniform(-0.3, 0.3, (8, 8)), rng.uniform(-0.3, 0.3, (1, 8))],
                               [rng.uniform(-0.3, 0.3, 8), rng.uniform(-0.3, 0.3, 1)])
    pop = pops_of(net).pops[0]
    cs = clique_structure(pop.polynomial)
    vals = []
    for project in (False, True):
        relax = build_lp(pop.polynomial, cs, k, project=project)
        est = estimate_lp_size(cs, k, project=project, poly=pop.polynomial)
        assert (est.constraints, est.variables, est.nonzeros) == (relax.rows, relax.cols, relax.nnz)
        sol = solve_lp(relax.program(), settings={"algorithm": "simplex"})
        assert sol.status == "optimal"
        vals.append(certify_lp(relax, sol.duals[0]).value)
    assert vals[0] == pytest.approx(vals[1], abs=TOL)


@settings(max_examples=15, deadline=None)
@given(params=net_params, k=st.integers(1, 4), method=st.sampled_from(["min-degree", "dense"]))
def test_size_estimate_is_exact(params, k, method):
    pop = pops_of(random_net(**params)).pops[0]
    if pop.n_vars == 0 or k < pop.degree:
        return
    cs = clique_structure(pop.polynomial, method)
    for basis in ("sherali-adams", "krivine"):
        relax = build_lp(pop.polynomial, cs, k, basis=basis)
        est = estimate_lp_size(cs, k, basis, poly=pop.polynomial)
        assert (est.constraints, est.variables) == (relax.rows, relax.cols)
        if basis == "sherali-adams":
            assert est.nonzeros == relax.nnz
        else:
            assert est.nonzeros >= relax.nnz
        # every row is the expansion of a product that is ≥ 0 on {0,1}^n
        pts = np.random.default_rng(0).integers(0, 2, (64, pop.n_vars)).astype(float)
        mono = relax.moments
        vals = np.ones((len(pts), relax.cols))
        for j in range(mono.shape[1]):
            idx = mono[:, j]
            vals *= np.where(idx == PAD, 1.0, pts[:, np.where(idx == PAD, 0, idx)])
        q = vals @ relax.A.T.toarray() + relax.a0
        assert q.min() >= -1e-12


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 10.0),
       basis=st.sampled_from(["sherali-adams", "krivine"]))
def test_any_multipliers_give_valid_bound(seed, scale, basis):
    """The certificate is sound for arbitrary (even negative or garbage) multipliers."""
    pop = pops_of(random_net(seed % 50, depth=2, n_in=2, width=3)).pops[0]
    cs = clique_structure(pop.polynomial)
    relax = build_lp(pop.polynomial, cs, 3, basis=basis)
    rng = np.random.default_rng(seed)
    c = rng.standard_normal(relax.rows) * scale
    cert = certify_lp(relax, c)
    assert cert.certified
    assert cert.value >= exact_pop_max(pop.polynomial)
    assert cert.details["n_clipped"] == int(np.count_nonzero(c < 0))


def test_certificate_edge_cases():
    pop = pops_of(random_net(0)).pops[0]
    relax = build_lp(pop.polynomial, clique_structure(pop.polynomial), 2)
    trivial = certify_lp(relax, None)
    assert trivial.certified
    p = pop.polynomial
    assert trivial.value >= p.constant_term + np.maximum(relax.c, 0).sum()
    bad = np.zeros(relax.rows)
    bad[0] = np.nan
    assert not certify_lp(relax, bad).certified
    with pytest.raises(LipoptError, match="multipliers"):
        certify_lp(relax, np.zeros(relax.rows + 1))


def test_optimal_certificate_matches_solver():
    pop = pops_of(random_net(2, depth=2, width=4)).pops[0]
    relax = build_lp(pop.polynomial, clique_structure(pop.polynomial), 3)
    for method in ("simplex", "ipm", "ipm-crossover"):
        for formulation in ("primal", "dual"):
            sol = solve_lp(relax.program(), settings={"algorithm": method, "formulation": formulation})
            assert sol.status == "optimal"
            cert = certify_lp(relax, sol.duals[0], sol.value)
            if method != "ipm":  # a vertex solution: the certificate is the exact LP value
                assert cert.value >= sol.value - 1e-9
            assert cert.value == pytest.approx(sol.value, abs=1e-6)
            assert cert.margin < 1e-9


def test_thread_count_can_change_between_solves():
    pop = pops_of(random_net(4, depth=1, width=4)).pops[0]
    ref = lp_bound(pop, 2).value
    for threads in (2, 1, None, 1):
        r = lp_bound(pop, 2, LPOptions(threads=threads, algorithm="ipm"))
        assert r.status == "optimal" and r.value == pytest.approx(ref, abs=1e-6)


def test_time_limited_solve_still_certified():
    rng = np.random.default_rng(0)
    n = 11
    net = Network.from_weights([rng.uniform(-0.3, 0.3, (n, n)), rng.uniform(-0.3, 0.3, (1, n))])
    pop = pops_of(net).pops[0]
    ex = exact_pop_max(pop.polynomial)
    r = lp_bound(pop, 3, LPOptions(algorithm="ipm"), time_limit=0.02)
    assert r.certified and np.isfinite(r.value)
    assert r.value >= ex


# ---------------------------------------------------------------------------------------------
# Refusals and the pipeline
# ---------------------------------------------------------------------------------------------
def test_level_below_degree_refused():
    pop = pops_of(random_net(0, depth=2)).pops[0]
    cs = clique_structure(pop.polynomial)
    with pytest.raises(LipoptError, match="level k=2 is below the polynomial degree 3"):
        build_lp(pop.polynomial, cs, 2)
    with pytest.raises(LipoptError, match="below the polynomial degree"):
        lp_bound(pop, 1)
    with pytest.raises(LipoptError, match="positive integer"):
        build_lp(pop.polynomial, cs, 0)


def test_memory_budget_refused():
    pop = pops_of(random_net(0, depth=2)).pops[0]
    cs = clique_structure(pop.polynomial)
    with pytest.raises(LipoptError, match="memory budget") as info:
        build_lp(pop.polynomial, cs, 3, max_bytes=1e3)
    msg = str(info.value)
    assert "lower the level" in msg and "--max-memory" in msg and "GB" in msg
    with pytest.raises(LipoptError, match="unknown LP basis"):
        build_lp(pop.polynomial, cs, 3, basis="bernstein")
    with pytest.raises(LipoptError, match="unknown LP algorithm"):
        solve_lp(build_lp(pop.polynomial, cs, 3).program(), settings={"algorithm": "barrier"})


def test_uncovered_monomial_refused():
    path = Polynomial.from_terms(np.array([[0, 1], [1, 2]]), np.array([1.0, 1.0]), 3)
    tri = Polynomial.from_terms(np.array([[0, 2], [0, 1]]), np.array([1.0, 2.0]), 3)
    with pytest.raises(LipoptError, match="not covered by any clique"):
        build_lp(tri, clique_structure(path), 2)


def test_lp_bound_result_fields():
    net = random_net(1, depth=1, n_in=3, width=4)
    pop = pops_of(net).pops[0]
    r = lp_bound(pop, 2)
    assert r.certified and r.status == "optimal"
    assert r.value >= r.solver_value
    assert r.value - r.certificate.value == pytest.approx(pop.rounding_slack)
    size = r.size
    assert None not in (size.constraints, size.variables, size.nonzeros, size.cliques, size.largest_clique)
    assert r.timings.build >= 0 and r.timings.solve >= 0
    assert r.solver.startswith("highs-")
    est = lp_size(pop, 2)
    assert (est.constraints, est.variables, est.nonzeros) == (size.constraints, size.variables,
                                                              size.nonzeros)
    const = pops_of(Network.from_weights([np.zeros((2, 2)), np.ones((1, 2))])).pops[0]
    rc = lp_bound(const, 2)
    assert rc.certified and rc.value >= 0.0


def test_codec_roundtrip_wide():
    for n_vars, width in ((10, 3), (10**6, 4)):
        codec = Codec(n_vars, width)
        assert codec.wide == (n_vars == 10**6)
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(n_vars, size=(50, width)), axis=1)
        rows[:10, :1] = PAD
        digits = np.where(rows == PAD, 0, rows + 1)
        keys = codec.encode_padded(digits)
        assert np.array_equal(codec.decode(keys), rows)


# ---------------------------------------------------------------------------------------------
# The CertDNN fact (published lp4 values below the exact constant)
# ---------------------------------------------------------------------------------------------
def certdnn_net(seed: int, n: int = 10, s: int = 4) -> Network:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    np.random.seed(seed)
    torch.manual_seed(seed)
    l1, l2 = nn.Linear(n, n), nn.Linear(n, 1)
    W1 = l1.weight.detach().numpy().astype(float)
    i, j = np.indices(W1.shape)
    W1 = W1 * (np.abs(i - j) <= (s - 1) / 2)
    return Network.from_weights(
        [W1, l2.weight.detach().numpy().astype(float)],
        [l1.bias.detach().numpy().astype(float), l2.bias.detach().numpy().astype(float)],
    )


def test_certdnn_seed0_lp_bounds_are_valid():
    net = certdnn_net(0)
    L = exact_lipschitz(net, np.ones(1), "inf")
    assert L == pytest.approx(0.6099, abs=5e-5)
    published_lp4 = 0.5700
    assert published_lp4 < L
    pop = pops_of(net).pops[0]
    assert exact_pop_max(pop.polynomial) == pytest.approx(L, abs=1e-9)
    for k in (2, 3, 4):
        for basis in ("sherali-adams", "krivine"):
            r = lp_bound(pop, k, LPOptions(basis=basis))
            assert r.certified and r.value >= L
