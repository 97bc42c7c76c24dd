"""Structured LipSDP (lipopt.lipsdp_chain): soundness against exact constants, agreement with the
interior-point route, the float-safe certificate, per-neuron slopes, scaling, the method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt.errors import LipoptError
from lipopt.exact import exact_lipschitz
from lipopt.lipsdp import lipsdp_neuron
from lipopt.lipsdp_certify import certify_chain
from lipopt.lipsdp_chain import lipsdp_bound, prepare_chain
from lipopt.network import Network
from lipopt.problems import make_target
from lipopt.registry import Context, get_method, parse_options
from lipopt.solvers.lipsdp_chain import solve_lmi


def _weights(sizes: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def _jacobian_lower(Ws: list[np.ndarray], seed: int, n: int = 300) -> float:
    """max over sampled inputs of ‖J(x)‖₂ (a lower bound on the ℓ2→ℓ2 constant)."""
    rng = np.random.default_rng(seed)
    best = 0.0
    for _ in range(n):
        h, J = rng.standard_normal(Ws[0].shape[1]), np.eye(Ws[0].shape[1])
        for W in Ws[:-1]:
            z = W @ h
            J = (W * (z > 0)[:, None]) @ J
            h = np.maximum(z, 0.0)
        best = max(best, float(np.linalg.norm(Ws[-1] @ J, 2)))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_certified_value_is_above_the_exact_constant(seed):
    sizes = [3, 5, 4, 1]
    Ws = _weights(sizes, seed)
    net = Network.from_weights(Ws, [0.3 * np.ones(n) for n in sizes[1:]], activation="relu")
    exact = exact_lipschitz(net, np.ones(1), norm="2")
    cert = lipsdp_bound(Ws)
    assert cert.certified
    assert cert.value >= exact * (1 - 1e-12)
    assert cert.value <= np.prod([np.linalg.norm(W, 2) for W in Ws]) * (1 + 1e-9)


@pytest.mark.parametrize("sizes", [[6, 12, 9, 3], [10, 8, 8, 8, 2], [30, 10, 4]])
def test_matches_the_interior_point_optimum(sizes):
    Ws = _weights(sizes, sum(sizes))
    cert = lipsdp_bound(Ws)
    ip = lipsdp_neuron(Ws)
    assert cert.certified and ip.certified
    # the same LMI optimum: ours within the IP's own accuracy, never below the sampled constant
    assert abs(cert.value - ip.solver_value) <= 1e-6 * ip.solver_value
    assert cert.value >= cert.solver_value
    assert cert.value >= _jacobian_lower(Ws, 0)


def test_infeasible_multipliers_are_not_certified():
    Ws = _weights([6, 10, 8, 3], 3)
    chain = prepare_chain(Ws)
    data = chain.lmi_data(reduce_input=False)
    rho, t, _ = solve_lmi(data)
    per_layer = np.split(t, np.cumsum(chain.hidden_sizes)[:-1])
    ok = certify_chain(chain.weights, chain.alpha, chain.beta, per_layer, rho)
    assert ok.certified and ok.rho >= rho * (1 - 1e-12)
    # last-layer multipliers far too small: S_LL = 2T − WᵀW is indefinite for every ρ
    bad = [x.copy() for x in per_layer]
    bad[-1] *= 1e-3
    check = certify_chain(chain.weights, chain.alpha, chain.beta, bad, rho)
    assert not check.certified and math.isinf(check.rho)
    # negative multipliers are clipped to 0, which is not feasible either
    neg = [x.copy() for x in per_layer]
    neg[0] = -neg[0]
    assert not certify_chain(chain.weights, chain.alpha, chain.beta, neg, rho).certified


def test_rho_below_the_optimum_is_raised_not_accepted():
    Ws = _weights([5, 7, 6, 2], 4)
    chain = prepare_chain(Ws)
    rho, t, _ = solve_lmi(chain.lmi_data())
    per_layer = np.split(t, np.cumsum(chain.hidden_sizes)[:-1])
    check = certify_chain(chain.weights, chain.alpha, chain.beta, per_layer, 0.5 * rho)
    assert check.certified and check.rho >= rho * (1 - 1e-6)


def test_power_of_two_scaling_is_exact():
    Ws = _weights([8, 10, 10, 10, 3], 5)
    base = lipsdp_bound(Ws).value
    scaled = lipsdp_bound([W * 2.0**-20 for W in Ws]).value
    assert scaled == pytest.approx(base * 2.0**-80, rel=1e-7)


def test_dead_neurons_are_removed_exactly():
    Ws = _weights([5, 8, 6, 2], 6)
    lo = [np.zeros(8), np.zeros(6)]
    hi = [np.ones(8), np.ones(6)]
    hi[0][[1, 4]] = 0.0  # two dead neurons in the first hidden layer
    with_dead = lipsdp_bound(Ws, lo, hi)
    dropped = [Ws[0][[0, 2, 3, 5, 6, 7]], Ws[1][:, [0, 2, 3, 5, 6, 7]], Ws[2]]
    assert with_dead.value == pytest.approx(lipsdp_bound(dropped).value, rel=1e-7)
    all_dead = lipsdp_bound(Ws, [np.zeros(8), np.zeros(6)], [np.zeros(8), np.ones(6)])
    assert all_dead.certified and all_dead.value == 0.0


def test_fixed_slopes_tighten_towards_the_linear_map():
    Ws = _weights([4, 6, 5, 2], 7)
    free = lipsdp_bound(Ws).value
    # every neuron active (slope exactly 1): the map is linear, its constant ‖W3 W2 W1‖₂
    linear = np.linalg.norm(Ws[2] @ Ws[1] @ Ws[0], 2)
    fixed = lipsdp_bound(Ws, 1.0, 1.0)
    assert fixed.certified
    assert linear * (1 - 1e-9) <= fixed.value <= linear * (1 + 1e-3)
    assert fixed.value <= free
    # a node of a branch and bound: one neuron fixed active, one dead
    lo = [np.zeros(6), np.zeros(5)]
    hi = [np.ones(6), np.ones(5)]
    lo[0][0] = 1.0
    hi[1][2] = 0.0
    node = lipsdp_bound(Ws, lo, hi)
    assert node.certified and node.value <= free * (1 + 1e-9)


def test_sparse_weights_give_the_dense_value():
    Ws = _weights([9, 7, 5, 2], 8)
    dense = lipsdp_bound(Ws).value
    sparse = lipsdp_bound([sp.csr_matrix(W) for W in Ws]).value
    assert sparse == pytest.approx(dense, rel=1e-7)


def test_bad_input_errors():
    Ws = _weights([4, 5, 2], 9)
    with pytest.raises(LipoptError, match="inputs"):
        lipsdp_bound([Ws[0], Ws[1].T])
    with pytest.raises(LipoptError, match="slope_lo > slope_hi"):
        lipsdp_bound(Ws, 1.0, 0.0)
    with pytest.raises(LipoptError, match="hidden layer"):
        lipsdp_bound([Ws[0]])
    with pytest.raises(LipoptError, match="memory"):
        lipsdp_bound(Ws, max_memory_bytes=10)


def test_time_limit_still_certifies_or_says_not():
    Ws = _weights([10, 20, 20, 20, 3], 10)
    cert = lipsdp_bound(Ws, time_limit=0.0)
    full = lipsdp_bound(Ws)
    assert cert.details["status"] == "time_limit"
    assert (cert.certified and cert.value >= full.value * (1 - 1e-9)) or not cert.certified


def test_registered_method_scalar_and_vector(external):
    from lipopt.loaders import load_network

    net = load_network(external / "glipsdp_fnn2_seed0_64-32-10.npz")
    method = get_method("lipsdp")
    row = method.run(Context(net, "2", make_target(net, output=7), None), None, parse_options("lipsdp", {}))
    assert row.certified and row.value == pytest.approx(5.1097148, rel=1e-6)  # published LipSDP-Neuron
    vec = method.run(Context(net, "2", make_target(net), None), None, parse_options("lipsdp", {}))
    assert vec.certified and vec.value >= row.value
    assert method.applies(Context(net, "inf", make_target(net), None)) is not None


def test_published_chain_value(external):
    from lipopt.loaders import load_network

    net = load_network(external / "glipsdp_mlpchain_W64_d4.npz")
    cert = lipsdp_bound([layer.weight for layer in net.layers])
    assert cert.certified
    assert cert.value == pytest.approx(0.5344682027, rel=1e-6)  # GLipSDP's LipSDP (Mosek)


# ---- residual blocks (lipopt.lipsdp_dag) ------------------------------------------------------
def _residual_net(seed: int) -> Network:
    from lipopt.network import IDENTITY, Activation, Dense, Residual

    rng = np.random.default_rng(seed)
    relu = Activation("relu")
    inner = (
        Dense(rng.standard_normal((7, 5)) / 2, 0.1 * rng.standard_normal(7), relu),
        Dense(rng.standard_normal((5, 7)) / 3, np.zeros(5), IDENTITY),
    )
    return Network(
        (
            Dense(rng.standard_normal((5, 3)), 0.2 * rng.standard_normal(5), relu),
            Residual(inner, activation=relu),
            Dense(rng.standard_normal((2, 5)), np.zeros(2)),
        )
    )


def _dag_lmi_cvxpy(data) -> float:
    """The same DAG LMI solved densely by cvxpy (the unrolled reference)."""
    import cvxpy as cp

    A, C, n0, m, N = data.A.dense()[0], data.C[0], data.n0, data.m, data.N
    rho, t = cp.Variable(), cp.Variable(N, nonneg=True)
    B = np.zeros((N, m))
    B[np.arange(N), n0 + np.arange(N)] = 1.0
    E0 = np.zeros((m, m))
    E0[np.arange(n0), np.arange(n0)] = 1.0
    T = cp.diag(t)
    S = rho * E0 - C.T @ C + A.T @ cp.diag(cp.multiply(data.qa, t)) @ A
    S = (
        S
        + A.T @ cp.diag(cp.multiply(data.qc, t)) @ B
        + B.T @ cp.diag(cp.multiply(data.qc, t)) @ A
        + 2 * B.T @ T @ B
    )
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (S + S.T) >> 0])
    prob.solve(solver="CLARABEL")
    return math.sqrt(rho.value)


@pytest.mark.parametrize("seed", range(3))
def test_residual_bound_matches_the_unrolled_lmi_and_is_sound(seed):
    from lipopt.lipsdp_dag import dag_lmi, lipsdp_dag_bound

    net = _residual_net(seed)
    ranges = [(np.zeros(s.size), np.ones(s.size)) for s in net.sites]
    ranges = [
        (lo + (s.activation.name == "identity"), hi) for (lo, hi), s in zip(ranges, net.sites, strict=True)
    ]
    cert = lipsdp_dag_bound(net, ranges)
    assert cert.certified
    data, _, _ = dag_lmi(net, ranges)
    assert cert.value == pytest.approx(_dag_lmi_cvxpy(data), rel=1e-5)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((400, 3))
    y = x + 1e-4 * rng.standard_normal((400, 3))
    secant = np.linalg.norm(net.forward(x) - net.forward(y), axis=1) / np.linalg.norm(x - y, axis=1)
    assert cert.value >= secant.max()
    # the registered method takes residual nets through the same route
    row = get_method("lipsdp").run(
        Context(net, "2", make_target(net), None), None, parse_options("lipsdp", {})
    )
    assert row.certified and row.value == pytest.approx(cert.value, rel=1e-7)


def test_chain_through_the_dag_route_equals_the_chain_route():
    from lipopt.lipsdp_dag import lipsdp_dag_bound

    Ws = _weights([5, 7, 6, 2], 11)
    net = Network.from_weights(Ws)
    ranges = [(np.zeros(s.size), np.ones(s.size)) for s in net.sites]
    assert lipsdp_dag_bound(net, ranges).value == pytest.approx(lipsdp_bound(Ws).value, rel=1e-7)


# ---- convolutions (lipopt.lipsdp_conv) --------------------------------------------------------
def _conv_chain(seed: int, channels: int = 2, side: int = 5, depth: int = 3):
    from lipopt.conv import conv2d_matrix

    rng = np.random.default_rng(seed)
    kernels = [rng.standard_normal((channels, channels, 3, 3)) / 3 for _ in range(depth)]
    return kernels, [conv2d_matrix(k, (channels, side, side), 1, 1)[0] for k in kernels]


def test_conv_structure_is_recovered_exactly():
    from lipopt.lipsdp_conv import recover_conv

    kernels, mats = _conv_chain(12)
    spec = recover_conv(mats[0])
    assert spec is not None and spec.padding == 1 and spec.height == 5
    np.testing.assert_array_equal(spec.kernel, kernels[0])
    assert recover_conv(sp.random(50, 50, density=0.1, random_state=0, format="csr")) is None


@pytest.mark.parametrize("seed", range(2))
def test_fourier_route_is_sound_and_above_the_unrolled_lmi(seed):
    from lipopt.lipsdp_conv import lipsdp_conv_bound

    _, mats = _conv_chain(seed)
    fourier = lipsdp_conv_bound(mats)
    assert fourier.certified
    # per-channel multipliers on the torus restrict the unrolled per-neuron LMI: never below it
    unrolled = lipsdp_bound(mats)
    assert fourier.value >= unrolled.value * (1 - 1e-7)
    net = Network.from_weights(mats)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, net.input_dim))
    y = x + 1e-4 * rng.standard_normal(x.shape)
    secant = np.linalg.norm(net.forward(x) - net.forward(y), axis=1) / np.linalg.norm(x - y, axis=1)
    assert fourier.value >= secant.max()


# ---- below LipSDP (lipopt.lipsdp_bab) ---------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_branch_and_bound_is_between_the_exact_constant_and_lipsdp(seed):
    from lipopt.lipsdp_bab import lipsdp_branch_and_bound

    sizes = [3, 5, 4, 1]
    Ws = _weights(sizes, 20 + seed)
    net = Network.from_weights(Ws, [0.3 * np.ones(n) for n in sizes[1:]], activation="relu")
    exact = exact_lipschitz(net, np.ones(1), norm="2")
    r = lipsdp_branch_and_bound(Ws, time_limit=20.0)
    assert r.certified
    assert exact * (1 - 1e-9) <= r.value <= r.root * (1 + 1e-9)
    assert r.lower <= exact * (1 + 1e-9)


def test_branch_and_bound_wine_goes_below_lipsdp(external):
    from lipopt.lipsdp_bab import lipsdp_branch_and_bound

    d = np.load(external / "exlipbab_wine_11-12-12-1.npz")
    r = lipsdp_branch_and_bound([d["W0"], d["W1"], d["W2"]], time_limit=30.0)
    assert r.certified and r.root == pytest.approx(1.846913, rel=1e-5)  # LipSDP
    assert 1.7433699967 <= r.value <= 1.78  # exact 1.74337 (ExLipBaB); all patterns 1.771901


def test_node_bound_substitutes_stable_neurons_exactly():
    from lipopt.lipsdp_dag import lipsdp_dag_bound

    Ws = _weights([6, 8, 7, 1], 30)
    net = Network.from_weights(Ws)
    lo, hi = [np.zeros(8), np.zeros(7)], [np.ones(8), np.ones(7)]
    lo[0][:3] = hi[0][:3] = 1.0
    hi[1][:2] = 0.0
    exact_node = lipsdp_dag_bound(net, list(zip(lo, hi, strict=True)))
    chain_node = lipsdp_bound(Ws, lo, hi)  # keeps the stable neurons with growing multipliers
    assert exact_node.certified and chain_node.certified
    assert exact_node.value <= chain_node.value * (1 + 1e-9)
    assert exact_node.value <= lipsdp_bound(Ws).value
