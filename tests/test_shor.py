"""Shor relaxation: mixing solver, float-safe certificates, ±1 homogenisation, conic back ends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt.certificates import certify_shor, certify_shor_dual
from lipopt.errors import LipoptError
from lipopt.hierarchy.shor import shor_from_binary_quadratic
from lipopt.solvers.base import Shape, ShorProgram, candidates
from lipopt.solvers.conic import available_sdp_solvers, solve_shor_cvxpy
from lipopt.solvers.mixing import default_rank, solve_shor_mixing


def choose_sdp_solver(blocks: int, largest: int) -> str:
    """The table's conic choice for a Shor program of this shape."""
    return candidates(Shape("shor", blocks, largest), family="cvxpy")[0][0].name


def solve_binary_quadratic_shor(Q, q, const, **kwargs):
    """Mixing on the ±1 form; ``(primal value, certificate)`` in the binary objective."""
    C, offset, err = shor_from_binary_quadratic(Q, q, const, return_error=True)
    out = solve_shor_mixing(C, **kwargs)
    return out.value + offset, certify_shor(ShorProgram(C, offset, err), out)


def _signs(n: int) -> np.ndarray:
    """All 2^n sign vectors as the rows of a matrix."""
    return np.array(list(itertools.product((-1.0, 1.0), repeat=n)))


def _brute_pm1(C: np.ndarray) -> float:
    X = _signs(C.shape[0])
    return float(np.max(np.einsum("ki,ij,kj->k", X, C, X)))


def _brute_binary(Q: np.ndarray, q: np.ndarray, const: float) -> float:
    U = (_signs(Q.shape[0]) + 1.0) / 2.0
    return float(np.max(np.einsum("ki,ij,kj->k", U, Q, U) + U @ q + const))


def _random_sym(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    return (A + A.T) / 2


@pytest.mark.parametrize("n,seed", [(n, s) for n in (2, 3, 5, 8, 10, 12) for s in range(3)])
def test_certified_bound_dominates_exact_max(n, seed):
    C = _random_sym(n, seed)
    exact = _brute_pm1(C)
    res = solve_shor_mixing(C, seed=seed)
    assert res.certificate.certified
    assert res.certificate.value >= exact
    # the SDP optimum is ≥ the ±1 maximum, and the mixing method reaches it
    assert res.value >= exact - 1e-7 * max(1.0, abs(exact))
    assert res.certificate.value >= res.value
    assert res.status == "optimal"
    assert res.certificate.value - res.value <= 1e-6 * max(1.0, abs(res.value))


@pytest.mark.parametrize("seed", range(4))
def test_early_stop_still_valid(seed):
    n = 12
    C = _random_sym(n, 100 + seed)
    exact = _brute_pm1(C)
    res = solve_shor_mixing(C, max_iter=2, seed=seed)
    assert res.certificate.certified and res.certificate.value >= exact
    assert res.certificate.value >= res.value
    assert res.iterations <= 3
    full = solve_shor_mixing(C, seed=seed)
    assert res.certificate.value >= full.value - 1e-9
    # a low-rank factor (rank 1 = local search on the sign vectors) still certifies validly
    low = solve_shor_mixing(C, rank=1, max_iter=5, seed=seed)
    assert low.certificate.value >= exact


def test_time_limit_status_and_validity():
    C = _random_sym(300, 7)
    res = solve_shor_mixing(C, time_limit=1e-9)
    assert res.status == "time_limit"
    assert res.certificate.certified and res.certificate.value >= res.value
    full = solve_shor_mixing(C)
    assert res.certificate.value >= full.value


def test_certified_at_least_primal_on_many_instances():
    rng = np.random.default_rng(3)
    for trial in range(10):
        n = int(rng.integers(5, 60))
        C = _random_sym(n, 1000 + trial) * rng.uniform(0.01, 100)
        res = solve_shor_mixing(C, seed=trial, max_iter=int(rng.integers(1, 200)))
        assert res.certificate.certified and res.certificate.value >= res.value


def test_certificate_for_known_optimum():
    # C = 11ᵀ: SDP value n² attained by X = 11ᵀ; y = n·1 makes Diag(y) − C = nI − 11ᵀ ⪰ 0
    n = 40
    C = np.ones((n, n))
    cert = certify_shor_dual(C, np.full(n, float(n)))
    bound, lam = cert.value, cert.details["lambda_min"]
    assert n * n <= bound <= n * n * (1 + 1e-11)
    assert abs(lam) < 1e-10
    # any y gives a valid bound, also a bad one
    bound0 = certify_shor_dual(C, np.zeros(n)).value
    assert bound0 >= n * n
    res = solve_shor_mixing(C)
    assert n * n <= res.certificate.value <= n * n * (1 + 1e-7)


def test_certificate_rejects_bad_input():
    with pytest.raises(LipoptError):
        certify_shor_dual(np.eye(3), np.ones(4))
    assert certify_shor_dual(np.eye(2), np.array([np.nan, 1.0])).value == np.inf


def test_sparse_and_nonsymmetric_inputs():
    rng = np.random.default_rng(5)
    n = 11
    A = rng.standard_normal((n, n)) * (rng.random((n, n)) < 0.3)
    exact = _brute_pm1((A + A.T) / 2)  # xᵀAx = xᵀ((A+Aᵀ)/2)x
    dense = solve_shor_mixing(A)
    sparse = solve_shor_mixing(sp.csr_matrix(A))
    assert dense.certificate.value >= exact and sparse.certificate.value >= exact
    assert abs(dense.value - sparse.value) <= 1e-6 * abs(dense.value)
    assert certify_shor_dual(sp.csr_matrix(A), dense.duals[0]).value >= exact


def test_mixing_speed_and_rank():
    assert default_rank(401) == 30
    C = _random_sym(400, 11)
    res = solve_shor_mixing(C)
    assert res.status == "optimal" and res.solve_time < 5.0
    assert res.state.shape == (400, default_rank(400))
    assert np.allclose(np.linalg.norm(res.state, axis=1), 1.0)


# ------------------------------------------------------------------ binary quadratic → ±1 form


@pytest.mark.parametrize("n,seed", [(n, s) for n in (1, 2, 4, 7, 10) for s in range(3)])
def test_binary_quadratic_homogenisation_exact(n, seed):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n, n))  # not symmetric, non-zero diagonal
    q = rng.standard_normal(n)
    const = float(rng.standard_normal())
    C, offset, err = shor_from_binary_quadratic(Q, q, const, return_error=True)
    assert C.shape == (n + 1, n + 1)
    assert np.array_equal(C, C.T) and np.all(np.diag(C) == 0)
    # pointwise identity: u ↔ (x, x0) = (2u − 1, +1), homogenising variable last
    U = (_signs(n) + 1) / 2
    X = np.hstack([2 * U - 1, np.ones((len(U), 1))])
    lhs = np.einsum("ki,ij,kj->k", U, Q, U) + U @ q + const
    rhs = np.einsum("ki,ij,kj->k", X, C, X) + offset
    assert np.max(np.abs(lhs - rhs)) <= err
    # and the maxima agree (x0 = −1 adds nothing new)
    assert abs(_brute_binary(Q, q, const) - (_brute_pm1(C) + offset)) <= err
    # sparse input gives the same form
    Cs, off_s = shor_from_binary_quadratic(sp.csr_matrix(Q), q, const)
    assert sp.issparse(Cs)
    assert np.allclose(Cs.toarray(), C, atol=1e-14) and abs(off_s - offset) <= 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_binary_quadratic_shor_bound(seed):
    rng = np.random.default_rng(seed)
    n = 10
    Q = rng.standard_normal((n, n))
    q = rng.standard_normal(n)
    exact = _brute_binary(Q, q, 0.3)
    primal, cert = solve_binary_quadratic_shor(Q, q, 0.3, seed=seed)
    assert cert.certified and cert.value >= exact
    assert primal >= exact - 1e-7
    _, short = solve_binary_quadratic_shor(Q, q, 0.3, max_iter=1)
    assert short.value >= exact


# ------------------------------------------------------------------ conic back ends


def test_available_and_choice():
    avail = available_sdp_solvers()
    assert set(avail) <= {"MOSEK", "CLARABEL", "SCS", "CVXOPT"}
    assert avail, "at least one SDP solver is expected in the test environment"
    for shape in [(1, 400), (200, 6), (100, 30), (3, 50)]:
        assert choose_sdp_solver(*shape) in avail
    if "MOSEK" not in avail:
        if "CLARABEL" in avail:
            assert choose_sdp_solver(200, 6) == "CLARABEL"
        if "CVXOPT" in avail:
            assert choose_sdp_solver(1, 400) == "CVXOPT"


def test_mixing_agrees_with_cvxpy_n50():
    C = _random_sym(50, 42)
    mix = solve_shor_mixing(C)
    solver = "CVXOPT" if "CVXOPT" in available_sdp_solvers() else choose_sdp_solver(1, 50)
    ref = solve_shor_cvxpy(C, solver)
    assert ref.certificate.certified and ref.status == "optimal"
    scale = abs(ref.certificate.value)
    assert abs(mix.value - ref.value) <= 1e-4 * scale
    assert abs(mix.certificate.value - ref.certificate.value) <= 1e-4 * scale
    # both certified values are upper bounds of the (common) optimum
    assert mix.certificate.value >= ref.value - 1e-6 * scale
    assert ref.certificate.value >= mix.value - 1e-9 * scale


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS", "CVXOPT"])
@pytest.mark.parametrize("formulation", ["primal", "dual"])
def test_cvxpy_solvers_certify_small(solver, formulation):
    if solver not in available_sdp_solvers():
        pytest.skip(f"{solver} not installed")
    C = _random_sym(9, 3)
    exact = _brute_pm1(C)
    res = solve_shor_cvxpy(C, solver, formulation=formulation)
    assert res.certificate.certified and res.certificate.value >= exact
    assert res.certificate.value >= res.value - 1e-6 * abs(res.value)


def test_cvxpy_time_limited_solve_is_still_valid():
    if "SCS" not in available_sdp_solvers():
        pytest.skip("SCS not installed")
    C = _random_sym(12, 8)
    exact = _brute_pm1(C)
    res = solve_shor_cvxpy(C, "SCS", max_iters=3)  # stopped far from optimal
    assert res.certificate.certified and res.certificate.value >= exact


def test_cvxpy_unknown_solver():
    with pytest.raises(LipoptError):
        solve_shor_cvxpy(np.eye(3), "NOPE")
