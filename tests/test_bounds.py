import numpy as np
import pytest
from conftest import random_net
from test_problems import brute_force_vertices

from lipopt import LipoptError
from lipopt.bounds import abs_product_bound, lower_bound, naive_bound
from lipopt.chain import bound_chain
from lipopt.network import Network
from lipopt.problems import make_domain, make_target


def independent_naive(weights, c, norm):
    q = {"inf": 1, "2": 2, "1": np.inf}[norm]
    op = {
        "inf": lambda w: np.abs(w).sum(1).max(),
        "1": lambda w: np.abs(w).sum(0).max(),
        "2": lambda w: np.linalg.svd(w, compute_uv=False)[0],
    }[norm]
    return np.linalg.norm(weights[-1].T @ c, q) * np.prod([op(w) for w in weights[:-1]])


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_naive_matches_independent_computation(norm):
    net = random_net([5, 7, 6, 3], seed=11)
    weights = [layer.dense_weight() for layer in net.layers]
    target = make_target(net)
    expected = max(independent_naive(weights, c, norm) for c in target.vectors)
    # the largest of the per-output (scalar) bounds; without a target naive bounds the network
    value = max(naive_bound(net, norm, make_target(net, output=k)) for k in range(net.output_dim))
    assert value >= expected
    assert value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_naive_bounds_the_network_constant_by_operator_norms(norm):
    """Without a target: ``‖W_{L+1}‖_{p→p} Π ‖W_l‖_{p→p}`` (ReLU caps are 1 globally)."""
    net = random_net([5, 7, 6, 3], seed=11)
    weights = [layer.dense_weight() for layer in net.layers]
    op = {
        "inf": lambda w: np.abs(w).sum(1).max(),
        "1": lambda w: np.abs(w).sum(0).max(),
        "2": lambda w: np.linalg.svd(w, compute_uv=False)[0],
    }[norm]
    expected = float(np.prod([op(w) for w in weights]))
    value = naive_bound(net, norm)
    assert value >= expected and value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
@pytest.mark.parametrize("seed", range(4))
def test_baselines_sandwich_the_vertex_maximum(norm, seed):
    net = random_net([3, 4, 4, 1], seed=seed)
    target = make_target(net, output=0)
    pop_max = brute_force_vertices(net, target.vectors[0], norm)
    low = lower_bound(net, norm, target, seed=seed).value
    assert low <= pop_max * (1 + 1e-12)
    assert abs_product_bound(net, norm, target) >= pop_max * (1 - 1e-12)
    assert naive_bound(net, norm, target) >= pop_max * (1 - 1e-12)
    if norm != "2":
        assert abs_product_bound(net, norm, target) <= naive_bound(net, norm, target) * (1 + 1e-12)


def test_local_bounds_are_tighter_and_lower_bound_stays_in_the_box():
    net = random_net([4, 8, 1], seed=5)
    target = make_target(net, output=0)
    dom = make_domain(net, box=(0.0, 0.1))
    assert abs_product_bound(net, "inf", target, dom) <= abs_product_bound(net, "inf", target)
    low = lower_bound(net, "inf", target, dom)
    assert np.all(low.point >= 0.0) and np.all(low.point <= 0.1)
    g = net.gradient(low.point, target.vectors[0])
    assert np.abs(g).sum() == pytest.approx(low.value)


def test_lower_bound_is_reproducible():
    net = random_net([4, 8, 8, 2], seed=1)
    a = lower_bound(net, "2", seed=3).value
    assert a == lower_bound(net, "2", seed=3).value


def test_chain_reports_naive_and_lower_on_external_network(external):
    d = np.load(external / "lipbab_sd_10-20-15-10-3.npz")
    weights = [d[f"W{i}"] for i in range(4)]
    net = Network.from_weights(weights, [d[f"b{i}"] for i in range(4)])
    chain = bound_chain(net, "inf", ["naive", "abs-product", "lower"])
    expected = max(independent_naive(weights, c, "inf") for c in np.eye(3))
    assert chain.bounds[0].value == pytest.approx(expected, rel=1e-9)
    assert chain.lower_bound.value <= chain.best.value
    assert chain.best.method == "abs-product"


def test_chain_rejects_unknown_method_and_bad_degree():
    net = random_net([2, 3, 1], seed=0)
    with pytest.raises(LipoptError, match="unknown method 'magic'"):
        bound_chain(net, "inf", ["magic"])
    with pytest.raises(LipoptError, match="positive integer"):
        bound_chain(net, "inf", ["naive"], levels=[0])


def test_chain_is_monotone_even_when_a_higher_level_certifies_worse():
    from lipopt.chain import _keep_monotone
    from lipopt.results import BoundResult

    lo = BoundResult("lp", 2, 1.0, True, "optimal")
    hi = BoundResult("lp", 3, 1.0000001, True, "optimal")
    kept = _keep_monotone([lo], hi, "level")
    assert kept.value == 1.0 and kept.certified and "level-2" in kept.note
    failed = BoundResult("lp", 4, float("inf"), False, "time_limit")
    assert _keep_monotone([lo, kept], failed, "level").value == 1.0


def test_time_limit_covers_all_pops_and_falls_back_to_a_valid_bound():
    """ℓ1 has one POP per input and sign; a spent budget leaves the rest with the degree-0
    certificate p_∅ + Σ max(p_S, 0), still ≥ the vertex maximum."""
    from lipopt.methods.pop import positive_part_bound
    from lipopt.problems import build_problem

    net = random_net([4, 6, 5, 1], seed=7)
    c = np.ones(1)
    exact = brute_force_vertices(net, c, "1")
    chain = bound_chain(net, "1", ["lp"], {"lp": [2]}, time_limit=1e-9)
    (b,) = chain.bounds
    assert b.certified and b.status == "time_limit" and "time limit" in b.note
    assert b.value >= exact
    problem = build_problem(net, "1")
    assert b.value == pytest.approx(max(positive_part_bound(p) for p in problem.pops))
    full = bound_chain(net, "1", ["lp"], {"lp": [2]}).bounds[0]
    assert exact <= full.value <= b.value


def test_a_refused_step_in_a_chain_becomes_a_row_and_alone_it_is_the_error():
    net = random_net([3, 5, 2], seed=5)
    chain = bound_chain(net, "inf", ["naive", "sdp"], {"sdp": [1, 5]}, max_memory_bytes=1e3)
    naive, sdp1, sdp5 = chain.bounds
    assert sdp1.certified and sdp5.status == "refused" and not sdp5.certified
    assert "memory budget" in sdp5.note and "--max-memory" in sdp5.note
    assert chain.best is not None and chain.best.value == sdp1.value
    with pytest.raises(LipoptError, match="order-5 moment relaxation would need"):
        bound_chain(net, "inf", ["sdp"], {"sdp": [5]}, max_memory_bytes=1e3)


def test_chain_does_not_mutate_the_callers_options_and_checks_the_seed():
    net = random_net([3, 4, 1], seed=6)
    options = {"lp": {"algorithm": "ipm"}}
    bound_chain(net, "inf", ["lp"], {"lp": [2]}, options=options, time_limit=5.0)
    assert options == {"lp": {"algorithm": "ipm"}}
    with pytest.raises(LipoptError, match="seed must be a non-negative integer"):
        lower_bound(net, "inf", seed=-1)
    with pytest.raises(LipoptError, match="center contains NaN"):
        make_domain(net, center=np.array([0.0, np.nan, 0.0]), eps=0.1)
