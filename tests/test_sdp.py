"""Moment (Lasserre / Shor) relaxations and their certificates: validity against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lipopt import LipoptError
from lipopt.certificates import certify_moment_dual
from lipopt.graph import clique_structure
from lipopt.hierarchy.sdp import build_moment_relaxation
from lipopt.hierarchy.shor import quadratic_form
from lipopt.hierarchy.subsets import Codec, sa_sets, sa_template, subsets_up_to, tile_rows
from lipopt.methods.pop import SDPOptions, lp_bound, sdp_bound
from lipopt.network import Network
from lipopt.polynomial import PAD, Polynomial
from lipopt.problems import build_problem, make_target

TOL = 1e-6  # solver tolerance used when comparing two relaxations' values


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def vertices(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def brute_max(poly: Polynomial) -> float:
    return float(poly.evaluate(vertices(poly.n_vars)).max()) if poly.n_vars else poly.constant_term


def random_poly(n: int, degree: int, n_terms: int, seed: int) -> Polynomial:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_terms):
        k = int(rng.integers(0, degree + 1))
        idx = np.sort(rng.choice(n, size=k, replace=False))
        rows.append(np.concatenate([np.full(degree - k, PAD), idx]))
    return Polynomial.from_terms(np.array(rows), rng.normal(size=n_terms), n)


def net_from_rng(sizes: list[int], seed: int) -> Network:
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [0.5 * rng.normal(size=b) for b in sizes[1:]]
    return Network.from_weights(weights, biases, name=f"net{sizes}")


def sdp_lp(pop, level: int = 1, time_limit: float | None = None, **options):
    """``sdp+lp`` on one POP: order-1 moment matrices and SA rows of level ``max(level, 2, deg)``."""
    poly = pop if isinstance(pop, Polynomial) else pop.polynomial
    k = max(level, 2, poly.degree)
    return sdp_bound(pop, 1, SDPOptions(**options), sa_level=k, time_limit=time_limit)


def pop_values(pop) -> float:
    """Exact ``max p`` plus the POP's rounding slack (what a certified value must exceed)."""
    return brute_max(pop.polynomial) - 1e-12 * max(1.0, pop.polynomial.abs_coef_sum())


# ---------------------------------------------------------------------------------------------
# the relaxation as data
# ---------------------------------------------------------------------------------------------
def test_subsets_and_true_moments_make_psd_rank_one_blocks():
    assert subsets_up_to(np.array([3, 5, 9]), 2).tolist() == [
        [PAD, PAD], [PAD, 3], [PAD, 5], [PAD, 9], [3, 5], [3, 9], [5, 9]
    ]
    poly = random_poly(6, 3, 14, seed=1)
    rel = build_moment_relaxation(poly, 2, clique_structure(poly, "min-degree"), dense=False, sa_level=3)
    U = vertices(6)
    np.testing.assert_allclose(rel.evaluate(U), poly.evaluate(U), atol=1e-12)
    for u in U[::7]:
        y = rel.true_moments(u)
        assert y[0] == 1.0
        for block in rel.blocks:
            m = np.prod(np.where(block.basis == PAD, 1.0, np.append(u, 1.0)[block.basis]), axis=1)
            np.testing.assert_array_equal(block.matrix(y), np.outer(m, m))
        assert np.all(rel.G @ y >= 0)  # SA rows hold at true moments


def test_sherali_adams_rows_are_products_of_u_and_one_minus_u():
    codec = Codec(3, 2)
    sets = sa_sets([np.array([0, 1, 2])], None, 2, codec)
    A, a0, keys = tile_rows([(U, sa_template(u)) for u, U in sets.items()], codec)
    n_rows = A.shape[0]
    assert n_rows == 3 * 4
    mono = codec.decode(keys)
    U = vertices(3)
    for u in U:
        term = np.prod(np.where(mono == PAD, 1.0, u[np.where(mono == PAD, 0, mono)]), axis=1)
        vals = a0 + A @ term
        assert set(np.unique(vals)) <= {0.0, 1.0}
        # per U, exactly one split is 1 (the partition of {0,1}^U)
        assert np.all(vals.reshape(3, 4).sum(axis=1) == 1.0)


def test_uncovered_or_too_high_degree_monomials_are_refused():
    poly = Polynomial.from_terms(np.array([[0, 1, 2], [PAD, PAD, 3]]), np.array([1.0, -2.0]), 4)
    with pytest.raises(LipoptError, match="degree 3"):
        build_moment_relaxation(poly, 1, clique_structure(poly))
    path = Polynomial.from_terms(np.array([[0, 1], [2, 3]]), np.array([1.0, 1.0]), 4)
    with pytest.raises(LipoptError, match="lies in no clique"):
        build_moment_relaxation(poly, 2, clique_structure(path), dense=False)
    with pytest.raises(LipoptError, match=r"exceeds the limit.*--method lp"):
        build_moment_relaxation(poly, 2, clique_structure(poly), dense=True, max_block=5)


def test_quadratic_form_is_exact():
    poly = random_poly(7, 2, 20, seed=4)
    Q, q, c = quadratic_form(poly)
    U = vertices(7)
    vals = np.einsum("ki,ij,kj->k", U, Q, U) + U @ q + c
    np.testing.assert_allclose(vals, poly.evaluate(U), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------------------------
def test_certificate_is_valid_for_arbitrary_duals():
    """Any Z (projected to PSD) and any μ give an upper bound: the identity, not optimality."""
    rng = np.random.default_rng(0)
    for seed in range(5):
        poly = random_poly(6, 2, 12, seed=seed)
        rel = build_moment_relaxation(poly, 1, clique_structure(poly), dense=True, sa_level=2)
        Z = [rng.normal(size=(b.size, b.size)) for b in rel.blocks]
        mu = rng.normal(size=rel.n_lp_rows)
        assert certify_moment_dual(rel, Z, mu).value >= brute_max(poly)


@pytest.mark.parametrize("seed", range(6))
def test_moment_certificates_on_random_polynomials(seed):
    n = 6 + seed % 2
    deg = 2 + seed % 3  # 2, 3, 4
    poly = random_poly(n, deg, 16, seed=10 + seed)
    exact = brute_max(poly)
    order = int(np.ceil(deg / 2))
    r = sdp_bound(poly, order, SDPOptions(cliques="min-degree"))
    assert r.certified and r.value >= exact
    assert r.value - r.solver_value < 1e-4 * max(1.0, abs(exact))
    r_lp = sdp_lp(poly)  # Shor + SA level deg (covers degree-3/4 terms)
    assert r_lp.certified and r_lp.value >= exact
    if deg <= 2:
        shor = sdp_bound(poly, 1)
        assert shor.solver == "mixing" and shor.value >= exact
        assert r_lp.value <= shor.value + TOL


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------
NETS = [[3, 4, 1], [4, 5, 1], [2, 3, 3, 1], [3, 2, 3, 1]]


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("sizes", NETS)
def test_network_bounds_are_certified_and_ordered(sizes, norm):
    net = net_from_rng(sizes, seed=sum(sizes))
    target = make_target(net, output=0)
    problem = build_problem(net, norm, target)
    sdp_vals, mix_vals = [], []
    for pop in problem.pops:
        exact = pop_values(pop)
        sdp = sdp_bound(pop, 1)
        both = sdp_lp(pop)
        assert sdp.certified and both.certified
        assert sdp.value >= exact and both.value >= exact
        assert both.value <= sdp.value + TOL  # SA rows only tighten
        assert None not in (sdp.size.psd_blocks, sdp.size.largest_block, sdp.size.constraints)
        sdp_vals.append(sdp.value)
        mix_vals.append(both.value)
    try:
        from lipopt.exact import exact_lipschitz
    except ImportError:
        return
    L = exact_lipschitz(net, target.vectors[0], norm)
    assert problem.combine(sdp_vals) >= L * (1 - 1e-12)
    assert problem.combine(mix_vals) >= L * (1 - 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_sdp_plus_lp_is_below_both_lp2_and_shor(seed):
    net = net_from_rng([5, 5, 1], seed=100 + seed)
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    lp2 = lp_bound(pop, 2).value
    shor = sdp_bound(pop, 1).value
    both = sdp_lp(pop)  # SA rows on the same (min-degree) cliques as the LP
    assert both.size.nonzeros > 0
    assert both.value <= min(shor, lp2) + TOL


@pytest.mark.parametrize("seed", range(3))
def test_shor_beats_lp2_on_dense_one_hidden_layer_nets(seed):
    """Not a theorem (on 5-wide nets LP-2 sometimes wins), but the rule on dense layers of
    moderate width: the level-2 cliques {all t, s_j} only see pairs."""
    net = net_from_rng([12, 12, 1], seed=100 + seed)
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    assert sdp_bound(pop, 1).value <= lp_bound(pop, 2).value + TOL


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_lagrangian_shor_plus_sa_route_is_certified_and_tighter_than_shor(norm):
    net = net_from_rng([7, 7, 1], seed=21)
    pop = build_problem(net, norm, make_target(net, output=0)).pops[0]
    exact = pop_values(pop)
    shor = sdp_bound(pop, 1)
    lag = sdp_lp(pop, sa_solver="lagrangian")
    assert lag.solver == "mixing+lagrangian" and lag.size.nonzeros > 0
    assert lag.certified and exact <= lag.value <= shor.value
    conic = sdp_lp(pop, sa_solver="conic")
    assert conic.value >= exact
    short = sdp_lp(pop, sa_solver="lagrangian", time_limit=1e-9)
    assert short.certified and short.value >= exact and short.status == "time_limit"


def test_sdp_plus_lp_degree_is_the_sa_level_and_tightens():
    net = net_from_rng([3, 3, 1], seed=13)
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    exact = pop_values(pop)
    two = sdp_lp(pop, 2, sa_solver="conic")
    three = sdp_lp(pop, 3)
    assert two.size.largest_block == three.size.largest_block <= pop.n_vars + 1  # order-1 blocks
    assert three.size.nonzeros > two.size.nonzeros
    assert exact <= three.value <= two.value + TOL


def test_order_two_is_at_least_as_tight_as_order_one():
    net = net_from_rng([3, 4, 1], seed=3)
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    exact = pop_values(pop)
    one = sdp_bound(pop, 1)
    two = sdp_bound(pop, 2)
    assert two.size.largest_block > one.size.largest_block and two.value >= exact
    assert two.value <= one.value + TOL


def test_multilayer_order_is_raised_and_refused_when_too_large():
    net = net_from_rng([3, 3, 3, 1], seed=8)
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    assert pop.degree == 3
    r = sdp_bound(pop, 1)
    assert "order raised to 2" in r.note and r.value >= pop_values(pop)
    with pytest.raises(LipoptError, match="order-2 moment matrix of size"):
        sdp_bound(pop, 1, SDPOptions(max_block=10))


def test_early_stop_still_gives_valid_bounds():
    net = net_from_rng([5, 5, 1], seed=2)
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    exact = pop_values(pop)
    full = sdp_bound(pop, 1)
    short = sdp_bound(pop, 1, SDPOptions(max_iter=1))  # one mixing sweep
    assert short.certified and short.value >= exact and short.value >= full.value - TOL
    assert short.status != "optimal" or short.value <= full.value + TOL
    timed = sdp_bound(pop, 1, time_limit=1e-9)
    assert timed.certified and timed.value >= exact
    for solver in ("SCS", "CLARABEL"):
        r = sdp_lp(pop, solver=solver, max_iter=3)
        assert r.status != "optimal"
        assert (not r.certified) or r.value >= exact


def test_bound_chain_runs_the_sdp_methods():
    from lipopt.chain import bound_chain

    net = net_from_rng([3, 4, 2], seed=5)
    chain = bound_chain(net, "inf", methods=("sdp", "sdp+lp"), levels=[1], target=make_target(net, output=1))
    vals = {b.method: b for b in chain.bounds}
    assert vals["sdp"].certified and vals["sdp+lp"].certified
    assert vals["sdp+lp"].value <= vals["sdp"].value + TOL


def test_shor_on_a_linear_pop():
    """Regression: local domains can leave a degree-1 POP (width-1 supports)."""
    poly = Polynomial.from_terms(np.array([[0], [1], [-1]]), np.array([2.0, -1.0, 0.5]), 2)
    r = sdp_bound(poly, 1)
    assert r.certified and r.value >= 2.5 - 1e-12 and r.value <= 2.5 + 1e-6
