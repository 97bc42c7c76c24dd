"""Lipschitz-by-construction layers: defining properties, and verification with lipopt's bounds."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lipopt import LipoptError
from lipopt.models.lipschitz import (
    STACKS,
    GershgorinBlock,
    SLLLayer,
    aol_layer,
    aol_stack,
    cpl_layer,
    exact_pop_value,
    gershgorin_block,
    gershgorin_stack,
    gradient_step_layer,
    jacobian,
    jacobian_witness,
    negative_control,
    sll_layer,
    sll_stack,
    spectral_linear,
    stack,
    unit_targets,
    verify_stack,
)
from lipopt.problems import build_problem, make_target

HAS_LP = importlib.util.find_spec("lipopt.methods.pop") is not None
needs_lp = pytest.mark.skipif(not HAS_LP, reason="lipopt.methods.pop is not available")
KINDS = sorted(STACKS)


def _relu(z):
    return np.maximum(z, 0.0)


def _random_pattern_jacobians(net, rng, k=200):
    """``J(s)`` for ``k`` random relaxed patterns ``s ∈ [0, 1]`` (hidden sites) via backward."""
    sizes = net.hidden_sizes
    out = []
    for _ in range(k):
        slopes = []
        for site, size in zip(net.sites, sizes, strict=True):
            s = np.ones(size) if site.activation.name == "identity" else rng.random(size)
            s[rng.random(size) < 0.3] = 0.0 if site.activation.name != "identity" else 1.0
            slopes.append(np.tile(s, (net.output_dim, 1)))
        out.append(net.backward(np.eye(net.output_dim), slopes))
    return out


# ---- defining properties ------------------------------------------------------------------------
def test_sll_forward_is_the_formula_and_t_dominates_the_gram():
    layer = sll_layer(5, 3, seed=4, q=np.array([1.0, 2.0, 0.5]))
    W, b, q = layer.weight, layer.bias, layer.q
    t = np.array([sum(abs(W.T @ W)[i, j] * q[j] / q[i] for j in range(3)) for i in range(3)])
    x = np.random.default_rng(0).normal(size=(20, 5))
    expected = np.array([xi - 2 * W @ np.diag(1 / t) @ _relu(W.T @ xi + b) for xi in x])
    np.testing.assert_allclose(layer.forward(x), expected, atol=1e-13)
    np.testing.assert_allclose(stack([layer]).network().forward(x), expected, atol=1e-13)
    assert np.linalg.eigvalsh(np.diag(t) - W.T @ W)[0] >= -1e-12
    assert layer.satisfies_constraints()
    assert not sll_layer(5, 3, seed=4, t_scale=0.5).satisfies_constraints()


def test_aol_rescaling_is_a_contraction_and_column_normalisation_is_not():
    worst_column = 0.0
    for seed in range(10):
        for n_in, n_out in ((4, 4), (6, 3), (3, 7)):
            layer = aol_layer(n_in, n_out, seed)
            P, d = layer.param, layer.d
            np.testing.assert_allclose(d, np.abs(P.T @ P).sum(axis=1) ** -0.5)
            assert np.linalg.norm(layer.weight, 2) <= 1 + 1e-12
            x = np.random.default_rng(seed).normal(size=(6, n_in))
            np.testing.assert_allclose(layer.forward(x), _relu(x @ (P @ np.diag(d)).T + layer.bias))
            column = aol_layer(n_in, n_out, seed, rescaling="column")
            worst_column = max(worst_column, np.linalg.norm(column.weight, 2))
    assert worst_column > 1.5


def test_cpl_and_gradient_step_forward_and_step_range():
    layer = cpl_layer(4, 6, seed=2)
    W, b = layer.weight, layer.bias
    x = np.random.default_rng(1).normal(size=(10, 4))
    expected = x - (2 / np.linalg.norm(W, 2) ** 2) * _relu(x @ W.T + b) @ W
    np.testing.assert_allclose(layer.forward(x), expected, atol=1e-13)
    np.testing.assert_allclose(stack([layer]).network().forward(x), expected, atol=1e-13)
    assert layer.step == pytest.approx(2.0)
    for seed in range(5):
        g = gradient_step_layer(4, seed=seed)
        assert 1.0 <= g.step <= 2.0 and g.satisfies_constraints()
    assert not cpl_layer(4, seed=0, step=2.05).satisfies_constraints()
    a = spectral_linear(5, 3, seed=1)
    assert np.linalg.norm(a.weight, 2) == pytest.approx(1.0, abs=1e-12) and a.satisfies_constraints()


@pytest.mark.parametrize(
    "L,kw",
    [
        (1.0, {}),
        (1.5, {}),
        (3.0, {"m": 6}),
        (0.7, {}),
        (1.2, {"orthogonal_skip": True}),
        (2.0, {"q": np.array([1.0, 3.0, 0.2, 1.5]), "skip_scale": 0.5}),
    ],
)
def test_gershgorin_constraints_imply_the_lmi(L, kw):
    m = kw.pop("m", None)
    for seed in range(4):
        blk = gershgorin_block(4, m, L, seed, **kw)
        g1, g2 = blk.gershgorin_margins()
        assert np.all(g1 >= -1e-12) and np.all(g2 >= -1e-12)
        M = blk.lmi()
        assert np.allclose(M, M.T)
        assert np.linalg.eigvalsh(M)[0] >= -1e-10 * np.abs(M).max()
        # the block is Residual(skip=H, out=G) and its forward pass is the formula
        x = np.random.default_rng(seed).normal(size=(8, 4))
        expected = x @ blk.skip.T + _relu(x @ blk.weight.T + blk.bias) @ blk.out_matrix.T
        np.testing.assert_allclose(blk.forward(x), expected, atol=1e-13)
        np.testing.assert_allclose(stack([blk]).network().forward(x), expected, atol=1e-12)
        # M ⪰ 0 ⇒ ‖H + G D W‖₂ ≤ L for every D ∈ [0, 1]
        net = stack([blk]).network()
        for J in _random_pattern_jacobians(net, np.random.default_rng(seed), 100):
            assert np.linalg.norm(J, 2) <= L * (1 + 1e-9)
        # the negative control breaks (G2) and the LMI
        bad = negative_control(stack([blk])).layers[0]
        assert not bad.satisfies_constraints()
        assert np.linalg.eigvalsh(bad.lmi())[0] < 0


def test_gershgorin_at_l_equal_h_equal_one_is_sll():
    blk = gershgorin_block(4, 3, 1.0, seed=5, q=np.array([1.0, 2.0, 0.5]))
    assert np.allclose(blk.v, blk.weight.T)  # F = 0
    sll = SLLLayer(blk.weight.T, blk.bias, np.array([1.0, 2.0, 0.5]))
    x = np.random.default_rng(0).normal(size=(10, 4))
    np.testing.assert_allclose(blk.forward(x), sll.forward(x), atol=1e-12)


def test_gershgorin_rejects_bad_parameters():
    with pytest.raises(LipoptError):
        gershgorin_block(3, lipschitz=1.0, skip_scale=1.5)
    with pytest.raises(LipoptError):
        gershgorin_block(3, lipschitz=-1.0)
    with pytest.raises(LipoptError):
        stack([sll_layer(3), sll_layer(4)])


@pytest.mark.parametrize("kind", KINDS)
def test_relaxed_jacobians_respect_the_claim(kind):
    """The constructions hold for every relaxed pattern s ∈ [0, 1], not only reachable ones."""
    st = STACKS[kind](seed=3)
    net = st.network()
    assert st.satisfies_constraints()
    x = np.random.default_rng(0).normal(size=(12, st.in_dim))
    np.testing.assert_allclose(net.forward(x), st.forward(x), atol=1e-12)
    for J in _random_pattern_jacobians(net, np.random.default_rng(1)):
        assert np.linalg.norm(J, 2) <= st.claimed * (1 + 1e-9)
    J = jacobian(net, x[0])
    np.testing.assert_allclose(J, np.stack([net.gradient(x[0], e) for e in np.eye(net.output_dim)]))


def test_exact_pop_value_matches_the_pop_maximum():
    st = gershgorin_stack(3, 2, 1.4, seed=2)
    net = st.network()
    c = unit_targets(net.output_dim, 2, seed=1)[1]
    for norm in ("2", "inf"):
        problem = build_problem(net, norm, make_target(net, vector=c))
        vals = []
        for pop in problem.pops:
            bits = np.array(np.meshgrid(*[[0.0, 1.0]] * pop.n_vars, indexing="ij")).reshape(pop.n_vars, -1).T
            vals.append(pop.polynomial.evaluate(bits).max())
        assert exact_pop_value(net, c, norm) == pytest.approx(problem.combine(vals), rel=1e-9)


# ---- verification with the engine ---------------------------------------------------------------
@needs_lp
@pytest.mark.parametrize("kind", KINDS)
def test_certified_l2_bounds_are_within_the_claim_and_sound(kind):
    st = STACKS[kind](seed=1)
    rows = verify_stack(
        st, "2", unit_targets(st.out_dim, 2, seed=7), ("naive", "lp", "exact-pop", "lower"), seed=0
    )
    for r in rows:
        assert r.within_claim, r
        assert r.sound, r
        assert r.lower <= r.exact * (1 + 1e-9)
        assert r.certified <= r.naive
        assert "lp-4" in r.bounds
    if kind != "aol":  # residual layers: the naive product 1 + ‖B‖‖W‖ is far above 1
        assert all(r.naive > 1.5 * r.claim for r in rows)


@needs_lp
@pytest.mark.parametrize("kind", KINDS)
def test_negative_controls_exceed_the_claim(kind):
    st = negative_control(STACKS[kind](seed=1))
    assert not st.satisfies_constraints()
    net = st.network()
    w = jacobian_witness(net, seed=0)
    assert w.value > st.claimed * 1.02
    assert np.linalg.norm(net.gradient(w.x, w.c)) == pytest.approx(w.value, rel=1e-9)
    (row,) = verify_stack(st, "2", [], ("naive", "lp", "exact-pop", "lower"), witness=w, variant="control")
    assert row.exceeds_claim and not row.within_claim and row.sound
    assert row.certified >= row.lower


@needs_lp
@pytest.mark.parametrize("kind", ["sll", "aol"])
def test_linf_certified_bounds_below_sqrt_n_claim(kind):
    st = sll_stack(3, 2, seed=2) if kind == "sll" else aol_stack((3, 4, 4, 2), seed=2)
    (row,) = verify_stack(st, "inf", unit_targets(st.out_dim, 1), ("naive", "lp", "exact-pop", "lower"))
    assert row.claim == pytest.approx(np.sqrt(3) * st.claimed)
    assert row.within_claim and row.sound
    assert row.certified < row.naive


# ---- torch modules ------------------------------------------------------------------------------
def test_torch_modules_match_numpy_and_keep_constraints_under_training():
    torch = pytest.importorskip("torch")
    from lipopt.models.lipschitz_torch import (
        SLL,
        AOLLinear,
        GershgorinResidual,
        GradientStep,
        SpectralLinear,
        to_network,
    )

    x = np.random.default_rng(0).normal(size=(7, 4))
    mods = [
        SLL(4, seed=1),
        GradientStep(4, seed=2, step=None),
        SpectralLinear(4, seed=3),
        GershgorinResidual(4, lipschitz=1.3, seed=4),
        AOLLinear(4, 3, seed=5, activation="identity"),
    ]
    y = torch.as_tensor(x)
    for mod in mods:
        y = mod(y)
    net = to_network(mods)
    np.testing.assert_allclose(y.detach().numpy(), net.forward(x), atol=1e-12)
    ref = gershgorin_block(4, None, 1.3, 4)
    np.testing.assert_allclose(mods[3].to_numpy().lam, ref.lam, rtol=1e-12)
    opt = torch.optim.SGD([p for m in mods for p in m.parameters()], lr=0.3)
    for _ in range(5):
        out = torch.as_tensor(x)
        for mod in mods:
            out = mod(out)
        loss = -(out**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for mod in mods:
        layer = mod.to_numpy()
        assert layer.satisfies_constraints(1e-7), type(mod).__name__
        if isinstance(layer, GershgorinBlock):
            assert np.linalg.eigvalsh(layer.lmi())[0] >= -1e-9
