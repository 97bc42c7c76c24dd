"""Soundness audit, round 3: the structured LipSDP, relations, the network quantity, limits and
the smooth activations.

References (independent of the code under test; the shared oracles of
:mod:`test_soundness_audit`):

* ``exact_constant`` / ``exact_lipschitz`` — region enumeration (scalar targets and the vector
  ``ℓp→ℓp`` constant ``exact_lipschitz(net, None, p, box)``);
* ``vertex_max`` — ``max ‖J(s)‖`` over the vertices of the slope box (LipSDP is a relaxation of
  every network whose slopes lie in the box, so it is above this maximum too);
* ``sampled_max`` — real Jacobian norms at sampled points;
* the LipSDP LMI itself, in two ways: the matrix ``S(ρ, t)`` rebuilt and tested for positive
  semidefiniteness in 50-digit arithmetic (mpmath) from the very floats a certificate accepted,
  and the LMI optimum from cvxpy/Clarabel at tight tolerances;
* 50-digit values of the activations, their derivatives and lines (mpmath), and exact rational
  arithmetic (``fractions``) for norms.
"""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt.chain import bound_chain
from lipopt.errors import LipoptError
from lipopt.lipsdp_chain import lipsdp_bound
from lipopt.network import Activation, Network
from lipopt.norms import spectral_norm_upper
from lipopt.problems import derivative_ranges, make_domain, make_target

mp = pytest.importorskip("mpmath")


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------
def true_value(act: Activation, z: float, derivative: bool = False):
    """σ(z) or σ'(z) with 50 digits (mpmath), at the exact value of the float ``z``."""
    mp.mp.dps = 50
    x = mp.mpf(float(z))
    name, a = act.name, mp.mpf(float(act.alpha))
    if mp.isinf(x):
        limits = {"tanh": (0, 0), "sigmoid": (0, 0), "elu": (0, 1), "softplus": (0, 1), "gelu": (0, 1),
                  "silu": (0, 1), "relu": (0, 1), "leaky_relu": (a, 1), "identity": (1, 1)}
        if derivative:
            return mp.mpf(limits[name][1 if x > 0 else 0])
        if name in ("tanh", "sigmoid"):
            return mp.mpf(1 if x > 0 else (-1 if name == "tanh" else 0))
        return x if x > 0 else {"elu": -a, "gelu": 0, "silu": 0, "softplus": 0, "relu": 0}.get(name, x)
    sig = 1 / (1 + mp.exp(-x))
    phi, Phi = mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi), mp.ncdf(x)
    values = {
        "identity": (x, 1), "relu": (max(x, 0), 1 if x > 0 else 0),
        "leaky_relu": (x if x > 0 else a * x, 1 if x > 0 else a),
        "tanh": (mp.tanh(x), 1 / mp.cosh(x) ** 2), "sigmoid": (sig, sig * (1 - sig)),
        "softplus": (mp.log1p(mp.exp(x)), sig),
        "elu": (x if x > 0 else a * mp.expm1(x), 1 if x > 0 else a * mp.exp(x)),
        "gelu": (x * Phi, Phi + x * phi), "silu": (x * sig, sig * (1 + x * (1 - sig))),
    }
    return values[name][1 if derivative else 0]


def lmi_matrix_is_psd(weights, alpha, beta, t, rho: float, dps: int = 50) -> bool:
    """``S(ρ, t) ⪰ 0`` for the chain LMI of :mod:`lipopt.lipsdp_certify`, built from the exact
    values of the given floats in ``dps``-digit arithmetic (mpmath Cholesky of ``S + 10^{-40}
    ‖S‖ I``: a failure means an eigenvalue below that, i.e. a wrong certificate)."""
    mp.mp.dps = dps
    Ws = [np.asarray(w.toarray() if sp.issparse(w) else w, dtype=float) for w in weights]
    n0, hs = Ws[0].shape[1], [w.shape[0] for w in Ws[:-1]]
    m = n0 + sum(hs)
    A = mp.zeros(sum(hs), m)
    r = c = 0
    for w in Ws[:-1]:
        for i, j in itertools.product(range(w.shape[0]), range(w.shape[1])):
            A[r + i, c + j] = mp.mpf(float(w[i, j]))
        r, c = r + w.shape[0], c + w.shape[1]
    C = mp.zeros(Ws[-1].shape[0], m)
    for i, j in itertools.product(range(Ws[-1].shape[0]), range(hs[-1])):
        C[i, m - hs[-1] + j] = mp.mpf(float(Ws[-1][i, j]))
    a, b = np.concatenate(alpha), np.concatenate(beta)
    tt = np.maximum(np.concatenate([np.asarray(x, dtype=float) for x in t]), 0.0)
    S = -(C.T * C)
    for j in range(len(tt)):
        aj, k = A[j, :], n0 + j
        ta, tb, tj = mp.mpf(float(a[j])), mp.mpf(float(b[j])), mp.mpf(float(tt[j]))
        S += (2 * ta * tb * tj) * (aj.T * aj)
        for col in range(m):
            S[col, k] += -(ta + tb) * tj * aj[col]
            S[k, col] += -(ta + tb) * tj * aj[col]
        S[k, k] += 2 * tj
    for i in range(n0):
        S[i, i] += mp.mpf(float(rho))
    tiny = mp.mpf(10) ** -40 * max(mp.mpf(1), mp.mnorm(S, 1))
    try:
        mp.cholesky(S + tiny * mp.eye(m))
    except ValueError:
        return False
    return True


def lmi_optimum(weights, lo, hi) -> float:
    """``min ρ`` of the LipSDP-Neuron LMI with per-neuron slopes, by cvxpy/Clarabel at tight
    tolerances (slopes not fixed: the optimum is attained)."""
    cp = pytest.importorskip("cvxpy")
    n0, hs = weights[0].shape[1], [w.shape[0] for w in weights[:-1]]
    N, m = sum(hs), n0 + sum(hs)
    A = np.zeros((N, m))
    r = c = 0
    for w in weights[:-1]:
        A[r : r + w.shape[0], c : c + w.shape[1]] = w
        r, c = r + w.shape[0], c + w.shape[1]
    C = np.zeros((weights[-1].shape[0], m))
    C[:, m - hs[-1] :] = weights[-1]
    a, b = np.concatenate(lo), np.concatenate(hi)
    E = np.zeros((N, m))
    E[:, n0:] = np.eye(N)
    E0 = np.zeros((m, m))
    E0[:n0, :n0] = np.eye(n0)
    rho, t = cp.Variable(), cp.Variable(N, nonneg=True)
    V = cp.diag(cp.multiply(a + b, t))
    S = rho * E0 - C.T @ C + A.T @ cp.diag(cp.multiply(2 * a * b, t)) @ A - A.T @ V @ E - E.T @ V @ A
    S = S + 2 * E.T @ cp.diag(t) @ E
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (S + S.T) >> 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=400)
    return math.sqrt(max(float(rho.value), 0.0))


def rows_of(net, norm, methods, target=None, domain=None, options=None, time_limit=30.0):
    """Certified rows of each method run on its own (a refusal is skipped)."""
    out = []
    for m in methods:
        try:
            ch = bound_chain(net, norm, [m], target=target, domain=domain, options=options,
                             time_limit=time_limit)
        except LipoptError:
            continue
        out.extend(b for b in ch.bounds if b.certified)
    return out


# ---------------------------------------------------------------------------------------------
# Regressions found by this audit (each failed before its fix)
# ---------------------------------------------------------------------------------------------
def test_spectral_norm_upper_counts_the_long_inner_products():
    """The Gram margin used the short side: a 1×65536 row whose squares' low bits are lost by
    every partial sum came out 90 eps below ‖w‖₂, and the naive ℓ2 bound with it."""
    n = 2**16
    w = math.sqrt(1 + 2.0**-42.5)
    exact_sq = Fraction(w) ** 2 * n
    for W in (np.full((1, n), w), np.full((n, 1), w), np.full((3, n), w)):
        scale = 3 if W.shape[0] == 3 else 1
        assert Fraction(spectral_norm_upper(W)) ** 2 >= exact_sq * scale
    net = Network.from_weights([np.full((1, n), w), np.array([[1.0]])], [np.array([1.0]), np.zeros(1)])
    for b in rows_of(net, "2", ["naive", "abs-product"]):
        assert Fraction(b.value) ** 2 >= exact_sq, (b.method, b.value)


@pytest.mark.parametrize("act", ["gelu", "silu", "tanh", "relu"])
def test_overflowed_interval_bounds_are_unbounded_not_dead(act):
    """``[−∞, ∞]`` has a NaN centre: the next layer's bounds were NaN and GELU/SiLU turned
    σ'(NaN) into 0, so layers with slopes ≈ 1 were treated as dead and 1e284 was certified for a
    network whose gradient overflows (true constant above the float range)."""
    a = Activation(act)
    dlo, dhi = a.derivative_range(np.array([np.nan, np.nan, 0.0]), np.array([np.nan, 1.0, np.nan]))
    glo, ghi = a.slope_bounds
    assert dlo[0] <= glo and dhi[0] >= ghi  # NaN ends: nothing known
    for k, zs in ((1, np.linspace(-50.0, 1.0, 103)), (2, np.linspace(1e-9, 50.0, 103))):
        assert all(dlo[k] <= true_value(a, z, True) <= dhi[k] for z in zs)
    vlo, vhi = a.value_range(np.array([np.nan]), np.array([np.nan]))
    assert all(vlo[0] <= true_value(a, z) <= vhi[0] for z in np.linspace(-50.0, 50.0, 201))
    s = 1e308
    weights = [np.array([[s], [s]]), np.array([[1.0, 1.0]]), np.array([[1.0], [-1.0]]),
               np.array([[1.0, 1.0]])]
    net = Network.from_weights(weights, [np.zeros(2), np.zeros(1), np.zeros(2), np.zeros(1)], activation=act)
    dom = make_domain(net, box=(-1.0, 1.0))
    x = np.linspace(-1.0, 1.0, 401)[:, None]
    with np.errstate(all="ignore"):
        zs = net.pre_activations(x)
        for z, (lo, hi) in zip(zs, derivative_ranges(net, dom), strict=True):
            d = a.derivative(z)
            ok = np.isfinite(d)
            assert np.all((d >= lo) | ~ok) and np.all((d <= hi) | ~ok)
        grad = float(np.max(np.abs(net.gradient(x, np.ones(1)))))
    for norm in ("inf", "2"):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for b in rows_of(net, norm, ["naive", "abs-product", "lp", "exact-pop", "lipsdp"], domain=dom):
                assert b.value >= grad, (b.method, b.value, grad)


def test_lipsdp_memory_estimate_counts_the_certificates_input_block():
    """The solver reduces a wide input to ``n_1`` columns but the certificate factors the
    unreduced ``n_0 × n_0`` block: a 65536-input net was estimated at a few kB and then
    allocated 32 GiB (a numpy MemoryError instead of a refusal)."""
    from lipopt.methods.lipsdp import LipSDP
    from lipopt.registry import Context

    n = 2**16
    net = Network.from_weights([np.ones((1, n)), np.ones((1, 1))])
    ctx = Context(net, "2", make_target(net), None)
    assert LipSDP().estimate(ctx, None, LipSDP.Options()).memory_bytes >= 8 * n * n
    with pytest.raises(LipoptError, match="memory limit"):
        bound_chain(net, "2", ["lipsdp"], max_memory_bytes=8e9)
    with pytest.raises(LipoptError, match="memory limit"):
        lipsdp_bound([np.ones((1, n)), np.ones((1, 1))], max_memory_bytes=8e9)
