"""LipSDP-Neuron: published values, validity against sampled Jacobians, float-safe certificate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from lipopt.errors import LipoptError
from lipopt.lipsdp import _neuron_columns, _stack_A, certify_lipsdp, lipsdp_matrix, lipsdp_neuron
from lipopt.solvers.conic import available_sdp_solvers

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "external"


def _weights(name: str) -> list[np.ndarray]:
    path = EXTERNAL / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    d = np.load(path)
    n = len([k for k in d.files if k.startswith("W")])
    return [d[f"W{i}"] for i in range(n)]


def _random_weights(sizes: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def _sampled_lower_bound(Ws: list[np.ndarray], n_samples: int, seed: int) -> float:
    """max over sampled inputs of ‖J(x)‖₂ for the ReLU net (a lower bound on the ℓ2 constant)."""
    rng = np.random.default_rng(seed)
    best = 0.0
    for _ in range(n_samples):
        x = rng.standard_normal(Ws[0].shape[1])
        J = np.eye(Ws[0].shape[1])
        h = x
        for W in Ws[:-1]:
            z = W @ h
            d = (z > 0).astype(float)
            J = (W * d[:, None]) @ J
            h = np.maximum(z, 0)
        J = Ws[-1] @ J
        best = max(best, float(np.linalg.norm(J, 2)))
    return best


def test_lipsdp_random_net_published_value():
    Ws = _weights("lipsdp_random_2-10-30-20-2.npz")
    r = lipsdp_neuron(Ws)  # ReLU: alpha=0, beta=1
    assert r.certified
    assert r.certified_value >= 36.4  # the exact constant is 36.482 (all weights positive)
    assert abs(r.certified_value - 36.482) <= 1e-3 * 36.482
    assert r.certified_value >= r.solver_value - 1e-9
    assert r.rho_certified >= r.rho
    assert r.lambda_max + r.margin <= 0.0
    # the all-active pattern is reachable (positive weights): ‖W4 W3 W2 W1‖₂ is attained
    prod = Ws[3] @ Ws[2] @ Ws[1] @ Ws[0]
    assert r.certified_value >= np.linalg.norm(prod, 2)


def test_lipsdp_mnist_value_and_time():
    Ws = _weights("lipsdp_mnist_784-50-10.npz")
    t0 = time.perf_counter()
    r = lipsdp_neuron(Ws)
    elapsed = time.perf_counter() - t0
    assert r.certified
    assert abs(r.certified_value - 24.32) <= 0.005 * 24.32
    assert elapsed <= 60.0
    assert r.lmi_size == 100  # 784 + 50 reduced to 50 + 50 (exact input-space reduction)


@pytest.mark.parametrize("seed", range(3))
def test_lipsdp_is_valid_and_below_naive_product(seed):
    sizes = [6, 12, 9, 3]
    Ws = _random_weights(sizes, seed)
    r = lipsdp_neuron(Ws)
    assert r.certified
    lower = _sampled_lower_bound(Ws, 3000, seed)
    assert r.certified_value >= lower
    naive = float(np.prod([np.linalg.norm(W, 2) for W in Ws]))
    assert r.certified_value <= naive * (1 + 1e-6)


def test_input_reduction_is_exact():
    Ws = _random_weights([20, 5, 4, 3], 7)
    full = lipsdp_neuron(Ws, reduce_input=False)
    red = lipsdp_neuron(Ws, reduce_input=True)
    assert red.lmi_size == 5 + 5 + 4 and full.lmi_size == 20 + 9
    assert full.certified and red.certified
    assert abs(full.certified_value - red.certified_value) <= 1e-5 * full.certified_value


def test_single_linear_layer_gives_spectral_norm():
    W = np.random.default_rng(2).standard_normal((4, 7))
    r = lipsdp_neuron([W])
    s = np.linalg.norm(W, 2)
    assert r.certified and s <= r.certified_value <= s * (1 + 1e-5)


def test_slope_bounds_general_activation():
    # leaky ReLU with slope 0.2: σ' ∈ {0.2, 1}, slope-restricted in [0.2, 1]
    Ws = _random_weights([5, 8, 6, 3], 4)
    r = lipsdp_neuron(Ws, alpha=0.2, beta=1.0)
    assert r.certified
    rng = np.random.default_rng(0)
    lower = 0.0
    for _ in range(2000):
        h = rng.standard_normal(5)
        J = np.eye(5)
        for W in Ws[:-1]:
            z = W @ h
            d = np.where(z > 0, 1.0, 0.2)
            J, h = (W * d[:, None]) @ J, d * z
        lower = max(lower, float(np.linalg.norm(Ws[-1] @ J, 2)))
    assert r.certified_value >= lower
    relu = lipsdp_neuron(Ws)
    assert relu.certified_value <= float(np.prod([np.linalg.norm(W, 2) for W in Ws])) * (1 + 1e-6)
    with pytest.raises(LipoptError):
        lipsdp_neuron(Ws, alpha=1.0, beta=0.0)


def test_certificate_check_is_rigorous():
    Ws = _random_weights([4, 6, 2], 1)
    r = lipsdp_neuron(Ws)
    # the certified point passes; a smaller ρ does not
    cert = certify_lipsdp(Ws, r.rho_certified, r.t)
    ok, rho_c = cert.certified, cert.details["rho"]
    lam, margin = cert.details["lambda_max"], cert.details["margin"]
    assert ok and rho_c == r.rho_certified and lam + margin <= 0
    M, _ = lipsdp_matrix(Ws, 0.99 * r.rho_certified, np.maximum(r.t, 0))
    assert np.linalg.eigvalsh(M)[-1] > 0
    # without multipliers the hidden block cannot be negative semidefinite: not certifiable
    assert not certify_lipsdp(Ws, 10 * r.rho, np.zeros_like(r.t)).certified


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS", "CVXOPT"])
def test_each_solver_certifies(solver):
    if solver not in available_sdp_solvers():
        pytest.skip(f"{solver} not installed")
    Ws = _random_weights([3, 7, 5, 2], 11)
    r = lipsdp_neuron(Ws, solver=solver)
    ref = lipsdp_neuron(Ws)
    assert r.certified and r.solver == solver
    assert abs(r.certified_value - ref.certified_value) <= 1e-3 * ref.certified_value
    assert r.certified_value >= _sampled_lower_bound(Ws, 2000, 0)


@pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (0.3, 1.0), (-1.0, 2.0)])
def test_cvxpy_lmi_data_matches_numpy_matrix(alpha, beta):
    # the sparse per-neuron columns handed to cvxpy and the numpy matrix used by the certificate
    # describe the same M(ρ, t)
    Ws = _random_weights([4, 5, 3, 2], 9)
    A, n0, N = _stack_A(Ws)
    m = n0 + N
    rng = np.random.default_rng(0)
    t, rho = rng.random(N), 2.5
    G = _neuron_columns(A, n0, alpha, beta)
    M_cvx = (G @ t).reshape((m, m), order="F")
    M_cvx[:n0, :n0] -= rho * np.eye(n0)
    M_cvx[m - 3 :, m - 3 :] += Ws[-1].T @ Ws[-1]
    M_np, delta = lipsdp_matrix(Ws, rho, t, alpha, beta)
    assert np.max(np.abs(M_cvx - M_np)) <= 1e-12
    assert 0 < delta < 1e-12


def test_bad_shapes():
    with pytest.raises(LipoptError):
        lipsdp_neuron([np.ones((3, 4)), np.ones((2, 5))])
    with pytest.raises(LipoptError):
        lipsdp_neuron([])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chain_lipsdp_per_target_is_exact_sound_and_tighter(seed):
    """One target (output or margin): LipSDP of the folded scalar network cᵀN, ≥ the exact ℓ2
    constant (region enumeration) and ≤ ‖c‖ times the vector-output bound."""
    from conftest import random_net

    from lipopt.chain import bound_chain
    from lipopt.exact import exact_lipschitz
    from lipopt.problems import make_target

    net = random_net([3, 6, 5, 3], seed=seed)
    for target in (make_target(net, output=1), make_target(net, margin=(0, 2))):
        c = target.vectors[0]
        exact = exact_lipschitz(net, c, "2")
        per = bound_chain(net, "2", ["lipsdp"], target=target).bounds[0]
        vec = bound_chain(net, "2", ["lipsdp"], target=target,
                          options={"lipsdp": {"per_target": False}}).bounds[0]
        assert per.certified and vec.certified
        assert "folded" in per.note and "vector-output" in vec.note
        assert exact <= per.value <= vec.value * (1 + 1e-9)
