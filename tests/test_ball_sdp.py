"""The ℓ2 ball-constrained SDP (formulation (b)) for one-hidden-layer networks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import random_net

from lipopt.bounds import naive_bound
from lipopt.certificates import SDP_DUAL, certify_ball_dual
from lipopt.errors import LipoptError
from lipopt.methods.ball import BallOptions, ball_objective, ball_sdp_bound
from lipopt.methods.pop import sdp_bound
from lipopt.network import Dense, Network, Residual
from lipopt.norms import parse_norm
from lipopt.problems import build_problem, derivative_ranges, make_domain, make_target
from lipopt.registry import Context, get_method


def pop_max(net: Network, c: np.ndarray, domain=None) -> float:
    """``max_s ‖W₁ᵀ diag(s) w‖₂`` over the vertices of the derivative box (≥ the exact L₂)."""
    W1 = net.layers[0].dense_weight()
    w = net.layers[1].dense_weight().T @ c
    (lo, hi), = derivative_ranges(net, domain)
    return max(
        float(np.linalg.norm(W1.T @ (np.where(np.array(v, bool), hi, lo) * w)))
        for v in itertools.product((0, 1), repeat=W1.shape[0])
    )


@pytest.mark.parametrize("solver", ["mixing", "CLARABEL", "CVXOPT"])
@pytest.mark.parametrize(("sizes", "seed"), [([4, 7, 2], 0), ([6, 9, 3], 1), ([3, 10, 1], 2)])
def test_bound_between_exact_and_naive(sizes: list[int], seed: int, solver: str) -> None:
    net = random_net(sizes, seed)
    c = np.eye(sizes[-1])[0]
    r = ball_sdp_bound(net, c, options=BallOptions(solver=solver))
    assert r.certified and r.certificate.kind == SDP_DUAL
    assert r.size.largest_block == sizes[0] + sizes[1] + 1
    exact = pop_max(net, c)
    assert r.value >= exact
    assert r.value <= naive_bound(net, "2", make_target(net, output=0))
    assert r.value <= exact * 1.5  # far from the naive product on these nets
    assert r.solver_value <= r.value + 1e-9


def test_equals_sqrt_of_formulation_a() -> None:
    """Order-1 (b) = √(order-1 (a)) in exact arithmetic (Schur complement of the dual)."""
    net = random_net([5, 12, 2], 3)
    t = make_target(net, output=1)
    b = ball_sdp_bound(net, t.vectors[0])
    a = sdp_bound(build_problem(net, "2", t).pops[0], 1)
    assert b.value == pytest.approx(math.sqrt(a.value), rel=1e-6)


def test_local_domain_not_above_global() -> None:
    net = random_net([4, 10, 2], 4)
    c = np.array([1.0, -1.0])
    dom = make_domain(net, center=np.zeros(4), eps=0.2)
    glob = ball_sdp_bound(net, c)
    loc = ball_sdp_bound(net, c, dom)
    assert loc.certified and glob.certified
    assert loc.size.variables < glob.size.variables  # some neurons are fixed near the center
    assert pop_max(net, c, dom) <= loc.value <= glob.value * (1 + 1e-9)


def test_leaky_relu_and_target_max() -> None:
    net = random_net([3, 8, 3], 5, activation="leaky_relu")
    r = get_method("sdp-ball").run(Context(net, "2", make_target(net), None), None, BallOptions())
    per = [ball_sdp_bound(net, c).value for c in np.eye(3)]
    # the network's ℓ2 constant from the rows' bounds (the rows themselves: one solve each)
    assert r.value == parse_norm("2").combine_rows(per) >= max(per) and r.size.solves == 3
    assert r.value >= max(pop_max(net, c) for c in np.eye(3))


def test_certificate_valid_for_any_dual() -> None:
    """A poor dual still certifies (eigenvalue shift): never below the POP maximum."""
    net = random_net([4, 6, 1], 6)
    c = np.ones(1)
    C, err, _ = ball_objective(net, c)
    exact = pop_max(net, c)
    rng = np.random.default_rng(0)
    for _ in range(5):
        cert = certify_ball_dual(C, rng.random(), rng.normal(size=C.shape[1]), err)
        assert cert.value >= exact and cert.details["psd_shift"] >= 0
    assert certify_ball_dual(C, math.nan, np.zeros(C.shape[1])).value == math.inf


def test_time_limited_solve_is_still_certified() -> None:
    net = random_net([6, 12, 2], 7)
    c = np.eye(2)[0]
    r = ball_sdp_bound(net, c, options=BallOptions(solver="SCS"), time_limit=1e-3)
    assert r.certified and r.value >= pop_max(net, c)


def test_refuses_deep_and_residual_networks() -> None:
    deep = random_net([3, 4, 4, 1], 0)
    with pytest.raises(LipoptError, match="one-hidden-layer.*--method sdp"):
        ball_sdp_bound(deep, np.ones(1))
    rng = np.random.default_rng(0)
    inner = (Dense(rng.normal(size=(3, 3)), np.zeros(3)),)
    res = Network((Residual(inner), Dense(rng.normal(size=(1, 3)), np.zeros(1))))
    with pytest.raises(LipoptError, match="residual.*--method sdp"):
        ball_sdp_bound(res, np.ones(1))
    with pytest.raises(LipoptError, match="unknown solver"):
        ball_sdp_bound(random_net([2, 3, 1], 0), np.ones(1), options=BallOptions(solver="nope"))
