"""Exact reference values: vertex enumeration and linear-region enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipopt.exact as exact_mod
from lipopt.errors import LipoptError
from lipopt.exact import exact_lipschitz, exact_pop_max
from lipopt.network import Network
from lipopt.polynomial import Polynomial
from lipopt.problems import build_problem, make_domain, make_target


def random_poly(rng: np.random.Generator, n: int, m: int, deg: int) -> Polynomial:
    rows = []
    for _ in range(m):
        d = int(rng.integers(0, deg + 1))
        idx = np.sort(rng.choice(n, size=min(d, n), replace=False)) if d else np.array([], int)
        rows.append(np.concatenate([np.full(deg - len(idx), -1), idx]))
    return Polynomial.from_terms(np.array(rows), rng.standard_normal(m), n)


def brute_force_max(poly: Polynomial) -> float:
    pts = np.array(list(itertools.product([0.0, 1.0], repeat=poly.n_vars)))
    return float(poly.evaluate(pts).max())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9), m=st.integers(1, 25),
       deg=st.integers(1, 4))
def test_pop_max_matches_brute_force(seed, n, m, deg):
    poly = random_poly(np.random.default_rng(seed), n, m, deg)
    assert exact_pop_max(poly) == pytest.approx(brute_force_max(poly), abs=1e-9)


def test_pop_max_chunked(monkeypatch):
    monkeypatch.setattr(exact_mod, "CHUNK_BITS", 3)
    rng = np.random.default_rng(3)
    for _ in range(5):
        poly = random_poly(rng, 8, 30, 3)
        assert exact_pop_max(poly) == pytest.approx(brute_force_max(poly), abs=1e-9)


def test_pop_max_repeated_indices_use_binary_reduction():
    # u0^2 u1 - u0 = u0 u1 - u0 on {0,1}: max 0
    poly = Polynomial.from_terms(np.array([[0, 0, 1], [-1, -1, 0]]), np.array([1.0, -1.0]), 2)
    assert exact_pop_max(poly) == 0.0


def test_pop_max_refuses_large():
    poly = Polynomial.from_terms(np.array([[0]]), np.array([1.0]), 30)
    with pytest.raises(LipoptError, match="2\\^30"):
        exact_pop_max(poly, max_vars=24)


def test_pop_max_constant():
    assert exact_pop_max(Polynomial.constant(2.5, 3)) == 2.5


# ---------------------------------------------------------------------------------------------
def dual_norm(g: np.ndarray, norm: str) -> np.ndarray:
    return {"inf": np.abs(g).sum(-1), "2": np.linalg.norm(g, axis=-1), "1": np.abs(g).max(-1)}[norm]


def small_net(seed: int, widths: list[int], act: str = "relu") -> Network:
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    bs = [rng.standard_normal(b) for b in widths[1:]]
    return Network.from_weights(Ws, bs, activation=act)


def test_single_neuron_exact():
    w1, b1, w2 = np.array([[1.0, -2.0, 0.5]]), np.array([0.3]), np.array([[-3.0]])
    net = Network.from_weights([w1, w2], [b1, np.zeros(1)])
    c = np.ones(1)
    assert exact_lipschitz(net, c, "inf") == pytest.approx(3.0 * 3.5)
    assert exact_lipschitz(net, c, "2") == pytest.approx(3.0 * np.linalg.norm(w1))
    assert exact_lipschitz(net, c, "1") == pytest.approx(6.0)
    box = (np.full(3, -0.1), np.full(3, 0.1))  # |w1ᵀx| ≤ 0.35 on the box
    on = Network.from_weights([w1, w2], [np.array([1.0]), np.zeros(1)])
    off = Network.from_weights([w1, w2], [np.array([-1.0]), np.zeros(1)])
    assert exact_lipschitz(on, c, "inf", box=box) == pytest.approx(10.5)
    assert exact_lipschitz(off, c, "inf", box=box) == 0.0


def test_linear_network_is_matrix_norm():
    net = small_net(0, [3, 4, 2], act="identity")
    c = np.array([1.0, -1.0])
    g = net.layers[0].weight.T @ net.layers[1].weight.T @ c
    for norm in ("inf", "2", "1"):
        assert exact_lipschitz(net, c, norm) == pytest.approx(float(dual_norm(g, norm)))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), norm=st.sampled_from(["inf", "2", "1"]),
       act=st.sampled_from(["relu", "leaky_relu"]))
def test_exact_lipschitz_brackets(seed, norm, act):
    """sampled gradient norms ≤ exact Lipschitz ≤ exact POP max; box ≤ global."""
    net = small_net(seed, [3, 4, 3, 1], act)
    c = np.ones(1)
    L = exact_lipschitz(net, c, norm)
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((5000, 3)) * 3
    assert L >= dual_norm(net.gradient(xs, c), norm).max() - 1e-9
    prob = build_problem(net, norm, make_target(net, output=0))
    pop_max = prob.combine([exact_pop_max(p.polynomial) for p in prob.pops])
    assert pop_max >= L - 1e-9
    dom = make_domain(net, box=(-0.3, 0.3))
    Lb = exact_lipschitz(net, c, norm, box=dom)
    assert Lb <= L + 1e-9
    xb = rng.uniform(-0.3, 0.3, (5000, 3))
    assert Lb >= dual_norm(net.gradient(xb, c), norm).max() - 1e-9


def test_exact_lipschitz_refusals():
    net = small_net(1, [2, 8, 8, 1])
    with pytest.raises(LipoptError, match="2\\^16"):
        exact_lipschitz(net, np.ones(1), "inf", max_neurons=14)
    smooth = small_net(1, [2, 3, 1], act="tanh")
    with pytest.raises(LipoptError, match="piecewise-linear"):
        exact_lipschitz(smooth, np.ones(1), "inf")
