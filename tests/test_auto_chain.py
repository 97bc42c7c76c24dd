"""The automatic chain (``methods="auto"``): what it chooses for a shape, norm and domain, that the
planning itself stays cheap, and that its best bound matches the best single method on small nets."""

from __future__ import annotations

import pytest
from conftest import random_net

from lipopt.chain import bound_chain, plan_automatic
from lipopt.methods.deep import BAB_CLOSES
from lipopt.problems import make_domain, make_target
from lipopt.registry import Context, methods


def _plan(net, norm, domain=None, output=None):
    ctx = Context(net, norm, make_target(net, output=output), domain)
    run, _, lines = plan_automatic(ctx)
    return ctx, [m.name for m in run], lines


def test_small_local_net_gets_the_branch_and_bound_not_the_lp_it_starts_from():
    net = random_net([4, 8, 8, 3], seed=0)
    _, names, lines = _plan(net, "inf", make_domain(net, box=(0.0, 0.1)))
    assert names[0] == "naive" and names[-1] == "lower"
    assert "bab" in names and "lifted" not in names
    assert any(line.startswith("skipped lifted") and "bab starts from this bound" in line for line in lines)


def test_wide_global_l2_net_gets_lipsdp_and_no_branch_and_bound():
    net = random_net([10, 2 * BAB_CLOSES, 2 * BAB_CLOSES, 4], seed=1)
    _, names, lines = _plan(net, "2")
    assert "lipsdp" in names and "bab" not in names
    assert any(line.startswith("skipped bab") and "unstable neurons" in line for line in lines)


def test_l2_network_constant_of_one_hidden_layer_prefers_the_native_vector_bound():
    """Per-output ℓ2 bounds combined by ‖(L_k)‖₂ are loose: LipSDP's vector bound is chosen, and
    ranking the fallbacks does not expand the ℓ2 polynomials."""
    net = random_net([30, 20, 6], seed=2)
    ctx, names, lines = _plan(net, "2")
    assert "lipsdp" in names and "lp" not in names and "sdp-ball" not in names
    assert ctx.built_problem is None
    chain = bound_chain(net, "2")
    assert chain.best.method == "lipsdp"


@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_auto_chain_is_as_tight_as_every_single_method_on_a_small_net(norm):
    net = random_net([3, 5, 5, 2], seed=3)
    domain = make_domain(net, box=(-0.5, 0.5))
    auto = bound_chain(net, norm, domain=domain, time_limit=60)
    singles = []
    for name, method in methods().items():
        if method.kind != "upper" or name == "exact-pop":
            continue
        chain = bound_chain(net, norm, methods=[name], domain=domain, time_limit=60,
                            raise_if_all_refused=False)
        if chain.best is not None:
            singles.append(chain.best.value)
    assert auto.best.value <= min(singles) * (1 + 1e-6)
    assert auto.lower is not None and auto.lower <= auto.best.value


def test_the_lower_bound_search_runs_once_per_request(monkeypatch):
    import lipopt.bounds as bounds

    calls = []
    real = bounds.lower_bound
    monkeypatch.setattr(bounds, "lower_bound", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = random_net([3, 6, 6, 2], seed=4)
    bound_chain(net, "inf", methods=["bab", "lower"], time_limit=30)  # global: bab starts from the search
    assert len(calls) == 1
