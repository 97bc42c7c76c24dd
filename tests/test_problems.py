import itertools

import numpy as np
import pytest
from conftest import random_net

from lipopt import LipoptError
from lipopt.problems import (
    build_problem,
    derivative_ranges,
    gradient_polynomial,
    make_domain,
    make_target,
    parse_norm,
)


def brute_force_vertices(net, c, norm, domain=None):
    """max over derivative-range vertices of ‖W_1ᵀ D_1 ⋯ W_{L+1}ᵀ c‖_q (the POP's maximum)."""
    ranges = derivative_ranges(net, domain)
    flat_lo = np.concatenate([r[0] for r in ranges])
    flat_hi = np.concatenate([r[1] for r in ranges])
    weights = [layer.dense_weight() for layer in net.layers]
    best = 0.0
    for bits in itertools.product([0, 1], repeat=len(flat_lo)):
        s = np.where(np.array(bits) == 1, flat_hi, flat_lo)
        g = weights[-1].T @ c
        pos = len(s)
        for w, r in zip(reversed(weights[:-1]), reversed(ranges), strict=True):
            k = len(r[0])
            g = w.T @ (s[pos - k : pos] * g)
            pos -= k
        q = {"inf": 1, "2": 2, "1": np.inf}[norm]
        best = max(best, np.linalg.norm(g, q))
    return best


@pytest.mark.parametrize("sizes", [[3, 4, 2], [3, 3, 3, 2], [2, 3, 2, 2, 1]])
def test_polynomial_equals_gradient_norm_at_random_points(sizes):
    net = random_net(sizes, seed=len(sizes))
    c = np.arange(1, net.output_dim + 1, dtype=float)
    P = gradient_polynomial(net, c)
    x = np.random.default_rng(0).normal(size=(50, net.input_dim))
    g = net.gradient(x, c)
    zs = net.pre_activations(x)
    pts = np.hstack([np.sign(g)] + [(z > 0).astype(float) for z in zs])
    np.testing.assert_allclose(P.evaluate(pts), np.abs(g).sum(axis=1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["inf", "1", "2"])
@pytest.mark.parametrize("local", [False, True])
def test_binary_pops_reach_the_vertex_maximum(norm, local):
    net = random_net([3, 4, 3, 1], seed=7)
    domain = make_domain(net, box=(-0.5, 0.5)) if local else None
    target = make_target(net, output=0)
    problem = build_problem(net, norm, target, domain)
    vals = []
    for pop in problem.pops:
        if pop.n_vars == 0:
            vals.append(pop.polynomial.constant_term)
            continue
        u = np.array(list(itertools.product([0.0, 1.0], repeat=pop.n_vars)))
        vals.append(pop.polynomial.evaluate(u).max())
    expected = brute_force_vertices(net, target.vectors[0], norm, domain)
    assert problem.combine(vals) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert all(p.rounding_slack >= 0 for p in problem.pops)


def test_stable_neurons_leave_the_polynomial():
    net = random_net([2, 6, 1], seed=2)
    local = build_problem(net, "inf", make_target(net, output=0), make_domain(net, box=(0.0, 1e-3)))
    glob = build_problem(net, "inf", make_target(net, output=0))
    assert local.pops[0].n_vars < glob.pops[0].n_vars


def test_target_and_norm_errors():
    net = random_net([2, 3, 2], seed=0)
    with pytest.raises(LipoptError, match="out of range"):
        make_target(net, output=5)
    with pytest.raises(LipoptError, match="unknown norm"):
        parse_norm("3")
    with pytest.raises(LipoptError, match="different outputs"):
        make_target(net, margin=(1, 1))
    with pytest.raises(LipoptError, match="radius"):
        make_domain(net, center=np.zeros(2))


def test_path_limit_is_a_clear_error():
    net = random_net([20, 20, 20, 1], seed=0)
    with pytest.raises(LipoptError, match="8,000 monomials"):  # refused before building
        gradient_polynomial(net, np.ones(1), max_paths=100)


def test_path_count_is_exact_for_chains():
    from lipopt.problems import count_paths

    for net in (random_net([5, 7, 6, 2], seed=1, band=1), random_net([4, 5, 5, 3], seed=2)):
        c = np.ones(net.output_dim)
        assert count_paths(net, c) == gradient_polynomial(net, c).num_terms


def test_local_l2_with_constant_coordinate_parts():
    """Regression: a coordinate whose gradient entry is constant on the domain (no free s)."""
    net = random_net([4, 6, 5, 1], seed=0, band=1)
    x0 = np.full(4, 0.3)
    domain = make_domain(net, center=x0, eps=1e-4)  # tiny ball: every neuron is stable
    problem = build_problem(net, "2", make_target(net, output=0), domain)
    g = net.gradient(x0, np.ones(1))
    vals = [p.polynomial.constant_term if p.n_vars == 0 else None for p in problem.pops]
    assert problem.combine(vals) == pytest.approx(np.linalg.norm(g), rel=1e-9)


def test_l2_square_expansion_limit_is_a_clear_error():
    net = random_net([6, 8, 8, 1], seed=3)
    with pytest.raises(LipoptError, match=r"ℓ2 norm-gradient POP .* products of monomials.*lipsdp"):
        build_problem(net, "2", max_square_products=1000)
    assert build_problem(net, "2").pops  # the default limit admits it


def test_shared_ranges_give_the_same_problem():
    net = random_net([3, 5, 4, 1], seed=4)
    dom = make_domain(net, center=np.zeros(3), eps=0.3)
    a = build_problem(net, "inf", domain=dom)
    b = build_problem(net, "inf", domain=dom, ranges=derivative_ranges(net, dom))
    for pa, pb in zip(a.pops, b.pops, strict=True):
        np.testing.assert_array_equal(pa.polynomial.supports, pb.polynomial.supports)
        np.testing.assert_array_equal(pa.polynomial.coef, pb.polynomial.coef)
