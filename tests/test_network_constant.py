"""One quantity per table: without an output, every method bounds the network's constant
``sup_x ‖J(x)‖_{p→p}`` (ℓ∞: max over rows; ℓ2: spectral norm; ℓ1: max column sum), and the
lower bound is a secant of the vector map. References: region enumeration with the full Jacobian
(:func:`lipopt.exact.exact_lipschitz` with ``c=None``) and LipBaB's exact values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import random_net

from lipopt.chain import bound_chain
from lipopt.cli import main
from lipopt.exact import exact_lipschitz
from lipopt.loaders import load_network, save_npz
from lipopt.problems import make_domain, make_target

ORD = {"inf": np.inf, "2": 2, "1": 1}
REL = 1e-9


def sampled_induced_norm(net, norm, domain, n=20_000, seed=0) -> float:
    rng = np.random.default_rng(seed)
    if domain is None:
        x = rng.normal(size=(n, net.input_dim)) * np.repeat([0.1, 1.0, 10.0, 100.0], n // 4)[:, None]
    else:
        x = domain.lo + (domain.hi - domain.lo) * rng.random((n, net.input_dim))
    return max(float(np.linalg.norm(J, ORD[norm])) for J in net.jacobian(x))


@pytest.mark.parametrize("sizes,seed", [([3, 4, 3, 3], 0), ([2, 3, 3, 3, 4], 1)])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_exact_network_constant_is_the_induced_norm_of_the_jacobian(sizes, seed, norm):
    net = random_net(sizes, seed=seed)
    for domain in (None, make_domain(net, center=np.full(net.input_dim, 0.2), eps=0.5)):
        exact = exact_lipschitz(net, None, norm, domain)
        rows = [exact_lipschitz(net, e, norm, domain) for e in np.eye(net.output_dim)]
        assert sampled_induced_norm(net, norm, domain) <= exact * (1 + REL)
        assert max(rows) <= exact * (1 + REL)
        if norm == "inf":
            assert exact == pytest.approx(max(rows), rel=1e-12)


@pytest.mark.parametrize("sizes,seed", [([3, 4, 3, 3], 0), ([2, 3, 3, 3, 4], 1), ([2, 6, 3], 2)])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_every_method_bounds_the_network_constant(sizes, seed, norm):
    net = random_net(sizes, seed=seed)
    methods = ["naive", "abs-product", "lp", "exact-pop"]
    if net.depth == 1:  # the conic routes are slow on deeper nets (higher orders)
        methods += ["sdp"] + (["sdp-ball"] if norm == "2" else [])
    methods += ["lipsdp"]  # ℓ∞/ℓ1: converted from its ℓ2 network bound (√n, √m)
    for domain in (None, make_domain(net, center=np.full(net.input_dim, -0.1), eps=0.7)):
        exact = exact_lipschitz(net, None, norm, domain)
        bounds = []
        for m in methods:
            try:
                bounds += bound_chain(net, norm, [m], levels={"sdp": [1]} if m == "sdp" else None,
                                      domain=domain, time_limit=20.0).bounds
            except Exception as exc:  # only "does not apply" refusals
                assert m in ("lipsdp", "sdp-ball"), (m, exc)
        if norm != "2" and domain is None:
            assert any(b.method == "lipsdp" and "converted" in (b.note or "") for b in bounds)
        assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
        for b in bounds:
            assert b.certified and b.value >= exact * (1 - REL), (b.method, b.value, exact)
            # ℓ2: the POP routes combine rows; ℓ1 has POPs for the network itself (output signs)
            combined = b.method in ("lp", "exact-pop", "sdp", "sdp-ball") and norm == "2"
            assert (b.note is not None and "per-output bounds" in b.note) == combined, (b.method, b.note)
        low = bound_chain(net, norm, ["lower"], domain=domain).lower_bound
        assert low.value <= exact * (1 + REL)
        assert low.value >= 0.5 * exact  # the vector search finds the quantity, not a row's


def test_quantity_is_named_in_words_and_in_json(tmp_path, capsys):
    net = random_net([3, 5, 4, 2], seed=0)
    chain = bound_chain(net, "2", ["naive"])
    assert chain.quantity == "network ℓ2→ℓ2 constant (spectral norm of the Jacobian)"
    assert chain.to_dict()["quantity"] == chain.quantity and chain.to_dict()["target"]["kind"] == "network"
    assert bound_chain(net, "1", ["naive"], target=make_target(net, output=1)).quantity == (
        "output 1 (scalar ℓ1 constant)")
    path = save_npz(net, tmp_path / "net.npz")
    assert main(["bound", str(path), "--norm", "2", "--method", "naive", "--method", "abs-product"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("network ℓ2→ℓ2 constant (spectral norm of the Jacobian)  global")
    assert main(["bound", str(path), "--norm", "1", "--method", "naive", "--output", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quantity"] == "output 1 (scalar ℓ1 constant)"


# LipBaB's exact local constants on [0, 0.1]^n (../shared/external/README.md), vector output
LIPBAB = {
    "lipbab_iris_4-5-5-3": {"1": 1.54491, "2": 1.67808},
    "lipbab_sd_10-15-10-3": {"1": 10.41287, "2": 9.53072},
    "lipbab_sd_10-20-15-10-3": {"1": 48.04897, "2": 40.05651},
}


@pytest.mark.parametrize("name", list(LIPBAB))
@pytest.mark.parametrize("norm", ["1", "2"])
def test_lipbab_nets_never_report_below_the_exact_vector_constant(external, name, norm):
    net = load_network(external / f"{name}.npz")
    domain = make_domain(net, box=(0.0, 0.1))
    exact = LIPBAB[name][norm]
    deep = net.depth > 2
    methods = ["naive", "abs-product", "lower"] + ([] if deep and norm == "2" else ["lp"])
    chain = bound_chain(net, norm, methods, levels={"lp": [net.depth + 1]} if norm == "1" else None,
                        domain=domain)
    assert chain.best.value >= exact * (1 - 1e-5)  # the README's 5 decimals
    assert all(b.value >= exact * (1 - 1e-5) for b in chain.bounds if b.certified)
    assert chain.lower_bound.value <= exact * (1 + 1e-5)


def test_lipsdp_mnist_l2_rows_are_above_the_true_constant(external):
    """LipSDP's MNIST net: the ℓ2 constant is ≥ 24.299 (a real secant); the old per-row max
    (20.17) must not come back (the lp row is checked by the CLI example in the report)."""
    net = load_network(external / "lipsdp_mnist_784-50-10.npz")
    chain = bound_chain(net, "2", ["naive", "abs-product", "lipsdp", "lower"])
    assert all(b.certified and b.value >= 24.299 for b in chain.bounds)
    assert 20.2 <= chain.lower_bound.value <= chain.best.value


@pytest.mark.parametrize("seed", range(3))
def test_l1_network_pops_native_and_by_rows(seed):
    """ℓ1: ``max_i max_{s,o} (J(s)ᵀo)_i`` (output signs as binary variables) is the vertex maximum
    of ``‖J(s)‖_{1→1}``; the per-row POPs summed are valid and never below it."""
    from lipopt.exact import exact_pop_max
    from lipopt.problems import build_problem

    net = random_net([3, 4, 3, 3], seed=seed)
    domain = make_domain(net, center=np.zeros(3), eps=1.0)

    def pop_max(form):
        prob = build_problem(net, "1", None, domain, network_form=form)
        vals = [exact_pop_max(p.polynomial) + p.rounding_slack if p.n_vars else p.polynomial.constant_term
                for p in prob.pops]
        return prob, prob.combine(vals)

    native, v_native = pop_max("native")
    rows, v_rows = pop_max("rows")
    assert native.native and native.combination_note is None and "Σ_k L_k" in rows.combination_note
    assert len(native.pops) == 3 and max(p.degree for p in native.pops) == net.depth + 1
    exact = exact_lipschitz(net, None, "1", domain)
    assert exact * (1 - REL) <= v_native <= v_rows * (1 + REL)
