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
from test_soundness_audit import assert_above, exact_constant, sampled_max

from lipopt.chain import bound_chain
from lipopt.errors import LipoptError
from lipopt.lipsdp_certify import certify_chain
from lipopt.lipsdp_chain import lipsdp_bound, prepare_chain
from lipopt.network import Activation, Network
from lipopt.norms import spectral_norm_upper
from lipopt.problems import derivative_ranges, make_domain, make_target
from lipopt.solvers.lipsdp_chain import solve_lmi

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


def _mp_matrix(w):
    return mp.matrix(np.asarray(w.toarray() if sp.issparse(w) else w).tolist())


def lmi_matrix_is_psd(weights, alpha, beta, t, rho: float, dps: int = 50) -> bool:
    """``S(ρ, t) ⪰ 0`` for the chain LMI of :mod:`lipopt.lipsdp_certify` (Hermitian for complex
    weights), built from the exact values of the given numbers in ``dps``-digit arithmetic
    (``weights`` may hold mpmath matrices: exact Fourier blocks). mpmath Cholesky of
    ``S + 10^{-40}‖S‖ I``: a failure means an eigenvalue below that, i.e. a wrong certificate."""
    mp.mp.dps = dps
    Ws = [w if isinstance(w, mp.matrix) else _mp_matrix(w)
          for w in weights]
    n0, hs = Ws[0].cols, [w.rows for w in Ws[:-1]]
    m = n0 + sum(hs)
    A = mp.zeros(sum(hs), m)
    r = c = 0
    for w in Ws[:-1]:
        for i, j in itertools.product(range(w.rows), range(w.cols)):
            A[r + i, c + j] = w[i, j]
        r, c = r + w.rows, c + w.cols
    C = mp.zeros(Ws[-1].rows, m)
    for i, j in itertools.product(range(Ws[-1].rows), range(hs[-1])):
        C[i, m - hs[-1] + j] = Ws[-1][i, j]
    a, b = np.concatenate(alpha), np.concatenate(beta)
    tt = np.maximum(np.concatenate([np.asarray(x, dtype=float) for x in t]), 0.0)
    S = -(C.H * C)
    for j in range(len(tt)):
        aj, k = A[j, :], n0 + j
        ta, tb, tj = mp.mpf(float(a[j])), mp.mpf(float(b[j])), mp.mpf(float(tt[j]))
        S += (2 * ta * tb * tj) * (aj.H * aj)
        for col in range(m):
            S[col, k] += -(ta + tb) * tj * mp.conj(aj[col])
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


# ---------------------------------------------------------------------------------------------
# 1. Structured LipSDP: the certificate proves exactly what it claims
# ---------------------------------------------------------------------------------------------
def _slope_chain(seed: int, kind: str):
    """A small chain (weights, slope_lo, slope_hi) of one adversarial kind."""
    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(1, 6, size=4)]
    Ws = [rng.standard_normal((b, a)) for a, b in itertools.pairwise(sizes)]
    hs = sizes[1:-1]
    lo, hi = [np.zeros(n) for n in hs], [np.ones(n) for n in hs]
    if kind == "row-col-scales":  # rows and columns scaled over 12 decades
        Ws = [w * 10.0 ** rng.uniform(-3, 3, (w.shape[0], 1)) * 10.0 ** rng.uniform(-3, 3, (1, w.shape[1]))
              for w in Ws]
    elif kind == "rank-one":
        Ws = [np.outer(w[:, 0], w[0]) for w in Ws]
    elif kind == "gelu-slopes":  # negative lower slopes (GELU's global range)
        lo, hi = [np.full(n, -0.1289) for n in hs], [np.full(n, 1.1289) for n in hs]
    elif kind == "mixed-fixed":  # dead, fixed and interval neurons, negative slopes too
        lo = [rng.choice([0.0, 0.01, -0.13, 0.25, 1.0], n) for n in hs]
        hi = [np.maximum(x, rng.choice([0.0, 1.0, 1.13, 0.25], len(x))) for x in lo]
    elif kind == "tiny":
        Ws = [w * 1e-7 for w in Ws]
    return Ws, lo, hi


KINDS = ["relu", "row-col-scales", "rank-one", "gelu-slopes", "mixed-fixed", "tiny"]


@pytest.mark.parametrize("kind", KINDS)
def test_certificate_accepts_only_psd_lmis_even_from_perturbed_multipliers(kind):
    """Multipliers from the solver, perturbed by 50 % or by 1e-6, or random over six decades,
    with ρ below the optimum: whatever ``certify_chain`` accepts is a ρ' with ``S(ρ', t) ⪰ 0``
    in exact arithmetic (it raises ρ until that holds; it never certifies below the LMI)."""
    checked = 0
    for seed in range(2):
        Ws, lo, hi = _slope_chain(10 * seed + KINDS.index(kind), kind)
        ch = prepare_chain(Ws, lo, hi)
        if ch.constant:
            continue
        rho, t, _ = solve_lmi(ch.lmi_data(reduce_input=False), rtol=1e-9)
        ts = np.split(t, np.cumsum(ch.hidden_sizes)[:-1])
        rng = np.random.default_rng(seed)
        trials = [[x * np.exp(0.5 * rng.standard_normal(x.shape)) for x in ts],
                  [x * (1 + 1e-6 * rng.standard_normal(x.shape)) for x in ts],
                  [np.abs(rng.standard_normal(x.shape)) * 10.0 ** rng.uniform(-3, 3) for x in ts], ts]
        for tt, r0 in itertools.product(trials, (0.5 * rho, 0.999999 * rho)):
            check = certify_chain(ch.weights, ch.alpha, ch.beta, tt, r0)
            if check.certified:
                checked += 1
                assert check.rho >= r0
                assert lmi_matrix_is_psd(ch.weights, ch.alpha, ch.beta, tt, check.rho), (kind, seed)
                if tt is ts:  # the optimum's multipliers: certified at (nearly) the optimum
                    assert check.rho <= rho * (1 + 1e-2)
    assert checked >= 6


@pytest.mark.parametrize("kind", ["relu", "rank-one", "gelu-slopes", "tiny", "row-col-scales"])
def test_lipsdp_value_is_never_below_the_lmi_optimum(kind, monkeypatch):
    """``lipsdp_bound`` (solved to tolerance, or stopped after one iteration by a time limit) is
    ≥ the LMI optimum computed by Clarabel, and the multipliers it certified pass the exact test."""
    import lipopt.lipsdp_chain as chain_module

    accepted = []

    def spy(weights, alpha, beta, t, rho, **kw):
        out = certify_chain(weights, alpha, beta, t, rho, **kw)
        if out.certified:
            accepted.append((weights, alpha, beta, t, out.rho))
        return out

    monkeypatch.setattr(chain_module, "certify_chain", spy)
    for seed in range(2):
        Ws, lo, hi = _slope_chain(100 + seed, kind)
        ch = prepare_chain(Ws, lo, hi)
        opt = lmi_optimum(ch.weights, ch.alpha, ch.beta) * ch.scale
        for limit in (None, 1e-9):
            accepted.clear()
            cert = lipsdp_bound(Ws, lo, hi, time_limit=limit)
            assert cert.certified and accepted
            # Clarabel's own accuracy: 1e-7, but only ~1e-5 with rows/columns over 12 decades
            # (condition 5e7; there the exact test below is the reference)
            tol = 1e-5 if kind == "row-col-scales" else 1e-7
            assert cert.value >= opt * (1 - tol), (kind, seed, limit, cert.value, opt)
            assert lmi_matrix_is_psd(*accepted[-1])
            if limit is None and kind != "row-col-scales":
                assert cert.value <= opt * (1 + 1e-6)


def sampled_pattern_max(net: Network, domain=None, n: int = 400, seed: int = 0) -> float:
    """``max ‖J(s)‖₂`` over the all-``hi`` vertex and random vertices ``s`` of the slope box
    (reachable or not): LipSDP relaxes every one of these linear maps, so it is above them."""
    ranges = derivative_ranges(net, domain)
    rng = np.random.default_rng(seed)
    best = 0.0
    for k in range(n):
        p = 1.0 if k == 0 else 0.7
        slopes = [np.where(rng.random(len(lo)) < p, hi, lo)[None, :] for lo, hi in ranges]
        J = net.backward(np.eye(net.output_dim), slopes)
        best = max(best, float(np.linalg.norm(J, 2)))
    return best


@pytest.mark.parametrize("scale", [1e-8, 1e-4, 1e4, 1e8])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu", "silu"])
def test_lipsdp_on_extreme_weight_scales_and_deep_chains(scale, act):
    """Weights scaled by 1e-8 … 1e8 (a depth-16 chain with a constant ≈ 1e-6, or 1e-128 at the
    smallest scale): every lipsdp row (ℓ2, and converted to ℓ∞/ℓ1) is above the vertex maxima
    and the sampled Jacobians; shallow ones above the exact constant (piecewise-linear σ)."""
    rng = np.random.default_rng(int(-math.log10(scale)) + 40)
    shallow = Network.from_weights(
        [rng.standard_normal((3, 2)) * scale, rng.standard_normal((3, 3)) * scale,
         rng.standard_normal((2, 3))],
        [rng.standard_normal(3) * scale, rng.standard_normal(3) * scale**2, np.zeros(2)], activation=act)
    deep = Network.from_weights(
        [0.42 * rng.standard_normal((3, 3)) * (scale if i == 0 else 1.0) for i in range(16)],
        [0.1 * rng.standard_normal(3) * (scale if i == 0 else 1.0) for i in range(16)], activation=act)
    for net in (shallow, deep):
        box = make_domain(net, center=rng.standard_normal(net.input_dim) / scale, eps=0.3 / scale)
        for domain in (None, box):
            target = make_target(net)
            ref = max(sampled_pattern_max(net, domain), sampled_max(net, target, "2", domain, n=400))
            pl = net is shallow and Activation(act).is_piecewise_linear
            exact = {n: exact_constant(net, target, n, domain) for n in ("2", "inf", "1")} if pl else {}
            for norm in ("2", "inf", "1"):
                rows = rows_of(net, norm, ["lipsdp"], domain=domain)
                # smooth σ on a box: deep layers get slope intervals of width ~1e-13 (nearly
                # fixed), where the solver may refuse; everything else must certify
                assert rows or (domain is not None and act in ("gelu", "silu")), (norm, domain is None)
                if norm == "2":
                    assert_above(rows, ref, "vertex / sampled Jacobian norm")
                if pl:
                    assert_above(rows, exact[norm], f"exact ℓ{norm} constant")



# ---------------------------------------------------------------------------------------------
# 2. The Fourier route for convolution chains
# ---------------------------------------------------------------------------------------------
def _exact_fourier_block(kernel: np.ndarray, padding: int, freq, T: int, f: float):
    """``K̂(ω)/f`` with exact phases ``e^{2πi q/T}`` (mpmath), from the exact taps."""
    mp.mp.dps = 50
    M = mp.zeros(kernel.shape[0], kernel.shape[1])
    for o, c, a, b in itertools.product(*(range(x) for x in kernel.shape)):
        q = int(freq[0]) * (a - padding) + int(freq[1]) * (b - padding)
        M[o, c] += mp.mpf(float(kernel[o, c, a, b] / f)) * mp.expjpi(2 * mp.mpf(q) / T)
    return M


def test_fourier_route_certifies_the_exact_blocks_and_stays_above_the_unrolled_lmi(monkeypatch):
    """Every frequency block certified by the conv route is PSD when rebuilt with exact phases,
    and the value is above the per-neuron LMI of the unrolled chain (the torus with
    per-channel multipliers is a restriction of it) and every pattern's ‖J(s)‖₂."""
    import lipopt.lipsdp_conv as conv_module
    from lipopt.conv import conv2d_matrix
    from lipopt.lipsdp_conv import conv_chain_specs, lipsdp_conv_bound

    seen = []

    def spy(weights, alpha, beta, t, rho, **kw):
        out = certify_chain(weights, alpha, beta, t, rho, **kw)
        seen.append((alpha, beta, t, out))
        return out

    monkeypatch.setattr(conv_module, "certify_chain", spy)
    rng = np.random.default_rng(3)
    for H, channels, ks in [(3, [1, 2, 2, 1], [3, 1, 3]), (4, [2, 1, 2], [3, 3])]:
        pairs = zip(channels[:-1], channels[1:], ks, strict=True)
        kernels = [rng.standard_normal((co, ci, k, k)) for ci, co, k in pairs]
        Ws = [conv2d_matrix(K, (K.shape[1], H, H), 1, (K.shape[2] - 1) // 2)[0] for K in kernels]
        specs = conv_chain_specs(Ws)
        assert specs is not None
        seen.clear()
        cert = lipsdp_conv_bound(Ws)
        assert cert.certified
        T = H + max(s.padding for s in specs)
        freqs = conv_module._frequencies(T)
        assert len(seen) == len(freqs)
        for (alpha, beta, t, out), freq in zip(seen, freqs, strict=True):
            blocks = []
            for s in specs:
                kh, _ = conv_module._fourier(s.kernel, s.padding, freqs, T)
                norm = max(float(np.max(np.linalg.norm(kh, ord=2, axis=(1, 2)))), 1e-300)
                f = 2.0 ** round(math.log2(norm))
                blocks.append(_exact_fourier_block(s.kernel, s.padding, freq, T, f))
            assert out.certified and lmi_matrix_is_psd(blocks, alpha, beta, t, out.rho), freq
        net = Network.from_weights(Ws)
        unrolled = lipsdp_bound(Ws)
        assert cert.value >= unrolled.value * (1 - 1e-6)
        assert cert.value >= sampled_pattern_max(net, None, n=200)



CONV_ATTACKS = [  # (kernel shape, input shape, stride, padding, dilation, groups)
    ((2, 2, 3, 3), (2, 4, 4), 2, 1, 1, 1),  # stride 2
    ((2, 1, 3, 3), (2, 4, 4), 1, 1, 1, 2),  # groups (a full conv with zero taps)
    ((1, 1, 3, 3), (1, 5, 5), 1, 2, 2, 1),  # dilation 2 ("same")
    ((1, 1, 2, 2), (1, 4, 4), 1, "same", 1, 1),  # even kernel, asymmetric "same"
    ((1, 1, 3, 3), (1, 4, 4), 1, 0, 1, 1),  # valid: the map shrinks
    ((1, 1, 3, 3), (1, 4, 4), 1, ((1, 0), (0, 1)), 1, 1),  # asymmetric padding
    ((1, 1, 3, 3), (1, 4, 4), 1, 2, 1, 1),  # over-padding: the map grows
    ((1, 1, 3, 3), (1, 3, 5), 1, 1, 1, 1),  # non-square maps
    ((1, 1, 3, 1), (1, 4, 4), 1, (1, 0), 1, 1),  # non-square kernel
    ((4, 1, 2, 2), (1, 4, 4), 2, 0, 1, 1),  # space-to-depth: a polyphase stride-1 conv
]


@pytest.mark.parametrize("case", range(len(CONV_ATTACKS)))
def test_fourier_route_only_takes_convolutions_it_rebuilt_exactly(case, monkeypatch):
    """Convolutions the route must refuse or rebuild exactly, as the last layer after a 3×3 conv:
    when the kernel is recovered the rebuilt matrix is the layer itself, and the Fourier value
    through the registered method is above every pattern's ‖J(s)‖₂ and the unrolled LMI."""
    import lipopt.methods.lipsdp as method_module
    from lipopt.conv import conv2d_matrix
    from lipopt.lipsdp_conv import conv_chain_specs, recover_conv

    shape, inp, stride, padding, dilation, groups = CONV_ATTACKS[case]
    rng = np.random.default_rng(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w, _ = conv2d_matrix(rng.standard_normal(shape), inp, stride, padding, dilation, groups)
    spec = recover_conv(w)
    if spec is not None:
        rebuilt, _ = conv2d_matrix(spec.kernel, (w.shape[1] // (spec.height * spec.width), spec.height,
                                                 spec.width), 1, spec.padding)
        assert (rebuilt != w).nnz == 0
    first, _ = conv2d_matrix(rng.standard_normal((inp[0], inp[0], 3, 3)), inp, 1, 1)
    net = Network.from_weights([first, w])
    monkeypatch.setattr(method_module, "FOURIER_ORDER", 0)
    (row,) = bound_chain(net, "2", ["lipsdp"]).bounds
    fourier = conv_chain_specs([first, w]) is not None
    assert ("Fourier" in (row.certificate or "")) == fourier
    assert row.certified
    assert row.value >= sampled_pattern_max(net, None, n=200)
    assert row.value >= lipsdp_bound([first, w]).value * (1 - 1e-6)
    if case in (0, 4, 6, 7):  # the map changes size or is not square: never the Fourier route
        assert not fourier


def test_fourier_route_gating_and_exact_constant(monkeypatch):
    """Through the registered method (Fourier forced for any size): a 9-neuron conv chain's
    network constant is above the exact ℓ2 constant, globally and on boxes; leaky ReLU, a box
    with stable neurons or a scalar target take the unrolled LMI (the Fourier route is for
    [0, 1] slopes and the vector output only; a box where every neuron is unstable may use it,
    a global bound being valid locally)."""
    import lipopt.methods.lipsdp as method_module
    from lipopt.conv import conv2d_matrix

    monkeypatch.setattr(method_module, "FOURIER_ORDER", 0)
    rng = np.random.default_rng(11)
    k1, k2 = rng.standard_normal((1, 1, 3, 3)), rng.standard_normal((1, 1, 3, 3))
    ws = [conv2d_matrix(k, (1, 3, 3), 1, 1)[0] for k in (k1, k2)]
    bs = [0.3 * rng.standard_normal(9), np.zeros(9)]
    for act, target, domain, fourier in [
        ("relu", None, None, True),
        ("leaky_relu", None, None, False),
        ("relu", None, (-0.5, 0.5), True),
        ("relu", None, (0.2, 0.3), False),
        ("relu", "output", None, False),
    ]:
        net = Network.from_weights(ws, bs, activation=act)
        tgt = make_target(net) if target is None else make_target(net, output=4)
        dom = None if domain is None else make_domain(net, box=domain)
        if dom is not None:
            relu_like = all(np.all(lo == 0) and np.all(hi == 1) for lo, hi in derivative_ranges(net, dom))
            assert relu_like == fourier
        (row,) = bound_chain(net, "2", ["lipsdp"], target=tgt, domain=dom).bounds
        assert row.certified and ("Fourier" in row.certificate) == fourier, (act, target, domain)
        assert_above([row], exact_constant(net, tgt, "2", dom), "exact ℓ2 constant")
