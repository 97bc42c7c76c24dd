"""Deep-network methods (lifted LP, branch and bound, MILP) against exact region enumeration.

The reference values come from :func:`lipopt.exact.exact_lipschitz` /
``c=None``, the network's constant (enumeration of the full-dimensional linear regions),
which shares no code with the branch and bound. Properties checked: every certified upper bound
is ≥ the exact constant, every lower bound ≤ it, and both meet when the search closes its gap.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_net

from lipopt.bab import BabSettings, BranchAndBound
from lipopt.errors import LipoptError
from lipopt.exact import exact_lipschitz
from lipopt.hierarchy.lifted import LiftedTemplate
from lipopt.milp import LipMilp
from lipopt.network import Network
from lipopt.problems import make_domain, make_target
from lipopt.quantity import Quantity
from lipopt.reach import Chain
from lipopt.registry import Budget, Context, get_method, parse_options
from lipopt.results import Status
from lipopt.solvers import _highs_box
from lipopt.solvers._highs_box import HighsBox
from lipopt.solvers.box_lp import BoxLP, dual_bound, proves_infeasible

REL = 1e-9  # rounding slack for comparisons with the float enumeration
CLOSE = 1e-5  # a closed gap: upper and lower within this of the exact value

# (sizes, seed): 2 to 5 hidden layers, ≤ 12 kinked neurons so that enumeration stays fast
NETS = [([2, 3, 3, 1], 0), ([3, 4, 4, 2], 1), ([2, 3, 3, 3, 2], 2), ([2, 3, 3, 3, 3, 1], 3),
        ([3, 2, 2, 2, 2, 2, 2], 4)]


def _box(net: Network, lo: float = -0.5, hi: float = 1.0):
    n = net.input_dim
    return np.full(n, lo), np.full(n, hi)


def _exact(net: Network, norm: str, box, vector: bool, c=None) -> float:
    if vector:
        return exact_lipschitz(net, None, norm, box, max_neurons=16)
    return exact_lipschitz(net, c, norm, box, max_neurons=16)


def _bab(net, norm, box, vector, c=None, **settings):
    C = np.eye(net.output_dim) if vector else np.asarray(c, float)[None]
    return BranchAndBound(net, Quantity(norm, C, vector), box, BabSettings(**settings)).run()


def _assert_sound(out, exact: float, closes: bool = True) -> None:
    assert out.certified
    assert out.upper >= exact * (1 - REL) - 1e-12
    assert out.lower <= exact * (1 + REL) + 1e-12
    if closes and out.status == Status.OPTIMAL:
        assert out.upper <= exact * (1 + CLOSE) + 1e-12
        assert out.lower >= exact * (1 - CLOSE) - 1e-12


@pytest.mark.parametrize("sizes,seed", NETS)
@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_bab_local_matches_enumeration(sizes, seed, norm):
    net = random_net(sizes, seed=seed)
    box = _box(net)
    for vector in (False, True):
        exact = _exact(net, norm, box, vector, c=np.eye(net.output_dim)[0])
        out = _bab(net, norm, box, vector, c=np.eye(net.output_dim)[0])
        _assert_sound(out, exact)
        assert out.status == Status.OPTIMAL, (out.status, out.note)


@pytest.mark.parametrize("sizes,seed", NETS[:4])
@pytest.mark.parametrize("norm", ["inf", "1", "2"])
def test_bab_global_is_sound_and_usually_exact(sizes, seed, norm):
    net = random_net(sizes, seed=seed)
    c = np.eye(net.output_dim)[0]
    exact = _exact(net, norm, None, False, c)
    out = _bab(net, norm, None, False, c)
    _assert_sound(out, exact)
    # leaf regions without interior (e.g. only at τ = 0, at infinity) are discarded by an exact
    # rational proof; one that neither verifies nor proves would keep the gap open, and say so
    assert out.status == Status.OPTIMAL, out.note


@pytest.mark.parametrize("sizes,seed,norm", [([3, 5, 5, 5, 1], 0, "inf"), ([2, 4, 4, 4, 4, 1], 5, "2"),
                                             ([4, 5, 5, 1], 3, "1")])
def test_bab_global_closes(sizes, seed, norm):
    """Cases with leaf regions only at τ = 0 (points at infinity) or in a hyperplane."""
    net = random_net(sizes, seed=seed)
    exact = exact_lipschitz(net, [1.0], norm, None, max_neurons=16)
    out = _bab(net, norm, None, False, [1.0])
    assert out.status == Status.OPTIMAL
    _assert_sound(out, exact)


@pytest.mark.parametrize("faces_depth", [3, 100])
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_deferred_faces_stay_sound_and_close(faces_depth, norm):
    """Neuron splits above the faces (deferred, or never for depth 100): the node's box is still
    the homogenized box Q, whose maximum bounds the global constant; the faces below a split
    node restore reachability, so the search still closes at the exact value."""
    sizes, seed = NETS[3] if norm == "inf" else NETS[2]
    net = random_net(sizes, seed=seed)
    c = np.eye(net.output_dim)[0]
    exact = _exact(net, norm, None, False, c)
    out = _bab(net, norm, None, False, c, faces_depth=faces_depth)
    _assert_sound(out, exact)
    assert out.status == Status.OPTIMAL, out.note


def test_leaky_relu_local_and_global():
    net = random_net([2, 4, 4, 1], seed=5, activation="leaky_relu")
    for box in (None, _box(net)):
        exact = exact_lipschitz(net, [1.0], "inf", box, max_neurons=16)
        _assert_sound(_bab(net, "inf", box, False, [1.0]), exact, closes=box is not None)


def test_margin_target_and_vector_targets():
    net = random_net([3, 4, 4, 3], seed=7)
    box = _box(net)
    c = np.array([1.0, -1.0, 0.0])
    _assert_sound(_bab(net, "1", box, False, c), exact_lipschitz(net, c, "1", box, max_neurons=16))
    for norm in ("inf", "1", "2"):  # three outputs: ℓ1 by sign vectors, ℓ2 by the Frobenius LP
        _assert_sound(_bab(net, norm, box, True), exact_lipschitz(net, None, norm, box, max_neurons=16))


def test_vector_l1_with_many_outputs_uses_the_output_box():
    net = random_net([2, 3, 3, 6], seed=8)  # 6 outputs: c ∈ [−1, 1]^6 with one objective per input
    box = _box(net)
    out = _bab(net, "1", box, True)
    _assert_sound(out, exact_lipschitz(net, None, "1", box, max_neurons=16))


def test_degenerate_box_is_a_point():
    net = random_net([3, 4, 4, 2], seed=1)
    x0 = np.array([0.2, -0.1, 0.4])
    for norm in ("inf", "2"):
        for vector in (False, True):
            exact = _exact(net, norm, (x0, x0), vector, c=np.eye(2)[1])
            out = _bab(net, norm, (x0, x0), vector, c=np.eye(2)[1])
            _assert_sound(out, exact)
            assert out.status == Status.OPTIMAL


def test_neurons_zero_on_the_box_boundary():
    # z_1 = x_1 and z_2 = −x_1 vanish on the face x_1 = 0 of the box [0, 1] × [−1, 1]
    w1 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.5, 1.0]])
    b1 = np.zeros(3)
    w2 = np.array([[2.0, 3.0, -1.0], [1.0, -1.0, 1.0]])
    net = Network.from_weights([w1, w2, np.array([[1.0, -2.0]])], [b1, np.array([0.0, 0.1]), [0.0]])
    box = (np.array([0.0, -1.0]), np.array([1.0, 1.0]))
    for norm in ("inf", "1", "2"):
        exact = exact_lipschitz(net, [1.0], norm, box, max_neurons=16)
        out = _bab(net, norm, box, False, [1.0])
        _assert_sound(out, exact)
        assert out.status == Status.OPTIMAL


@pytest.mark.parametrize("limit", [{"node_limit": 2}, {"node_limit": 5}])
def test_early_stop_is_still_certified(limit):
    net = random_net([3, 5, 5, 5, 1], seed=4)
    box = _box(net)
    exact = exact_lipschitz(net, [1.0], "inf", box, max_neurons=16)
    out = _bab(net, "inf", box, False, [1.0], **limit)
    assert out.status == Status.NODE_LIMIT
    _assert_sound(out, exact, closes=False)


def test_time_limit_is_honoured_and_certified():
    net = random_net([3, 5, 5, 5, 1], seed=4)
    exact = exact_lipschitz(net, [1.0], "2", None, max_neurons=16)
    out = BranchAndBound(net, Quantity("2", np.ones((1, 1)), False), None, BabSettings(),
                         budget=Budget(0.05, 1e10)).run()
    assert out.status in (Status.TIME_LIMIT, Status.OPTIMAL)
    _assert_sound(out, exact, closes=False)


def test_a_wrong_infeasible_claim_never_prunes(monkeypatch):
    """A solver that claims every LP is infeasible (with a useless ray) must not shrink the bound:
    only a Farkas ray verified in floating point may discard a node."""
    net = random_net([2, 3, 3, 3, 2], seed=2)
    box = _box(net)
    exact = exact_lipschitz(net, [1.0, 0.0], "inf", box, max_neurons=16)
    real_run = _highs_box.HighsBox.run

    def lying_run(self, *args, **kwargs):
        out = real_run(self, *args, **kwargs)
        if out.w is not None:
            out.status, out.ray = "infeasible", np.ones_like(out.w)
        return out

    monkeypatch.setattr(_highs_box.HighsBox, "run", lying_run)
    _assert_sound(_bab(net, "inf", box, False, [1.0, 0.0]), exact, closes=False)


def test_dual_bound_is_valid_for_any_multipliers():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m, n = 12, 8
        A = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.5)
        x0 = rng.random(n)
        ax = A @ x0
        rl = np.where(rng.random(m) < 0.5, ax - rng.random(m), -np.inf)
        ru = np.where(rng.random(m) < 0.5, ax + rng.random(m), np.inf)
        lp = BoxLP(rng.normal(size=n), A, rl, ru, np.zeros(n), np.ones(n))
        out = HighsBox().solve(lp)
        assert out.status == "optimal"
        opt = out.solver_value
        assert dual_bound(lp, out.w) == pytest.approx(opt, rel=1e-9, abs=1e-9)
        assert dual_bound(lp, out.w) >= opt - 1e-12
        for w in (rng.normal(size=m), np.zeros(m), None):
            assert dual_bound(lp, w) >= opt - 1e-12


def test_farkas_check_accepts_true_rays_only():
    A = np.array([[1.0, 1.0]])
    infeasible = BoxLP(np.zeros(2), A, np.array([3.0]), np.array([np.inf]), np.zeros(2), np.ones(2))
    out = HighsBox().solve(infeasible)
    assert out.status == "infeasible"
    assert proves_infeasible(infeasible, out.ray)
    feasible = BoxLP(np.zeros(2), A, np.array([1.5]), np.array([np.inf]), np.zeros(2), np.ones(2))
    assert not proves_infeasible(feasible, out.ray)
    assert not proves_infeasible(feasible, np.array([1.0]))
    # x1 + x2 ≥ 2 on [0, 1]²: feasible only at (1, 1); the ray "1" nearly proves emptiness
    tight = BoxLP(np.zeros(2), A, np.array([2.0]), np.array([np.inf]), np.zeros(2), np.ones(2))
    assert not proves_infeasible(tight, np.array([1.0]))


@pytest.mark.parametrize("sizes,seed", NETS[:3])
def test_milp_is_an_exact_oracle(sizes, seed):
    net = random_net(sizes, seed=seed)
    c = np.eye(net.output_dim)[0]
    for box in (_box(net), None):
        for norm in ("inf", "1"):
            exact = exact_lipschitz(net, c, norm, box, max_neurons=16)
            out = LipMilp(net, Quantity(norm, c[None], False), box).solve()
            assert out.upper == pytest.approx(exact, rel=1e-6, abs=1e-9) or out.upper >= exact
            assert out.lower <= exact * (1 + REL) + 1e-12
    with pytest.raises(LipoptError, match="ℓ2"):
        LipMilp(net, Quantity("2", c[None], False), None)


def test_lifted_lp_size_is_linear_in_the_weights():
    sizes = []
    for width in (8, 16, 32):
        chain = Chain.from_network(random_net([10, width, width, width, 3], seed=0))
        est = LiftedTemplate.estimate(chain)
        tmpl = LiftedTemplate(chain, "sum-abs")
        assert (tmpl.rows, tmpl.cols) == (est["rows"], est["cols"])
        assert tmpl.nnz <= est["nonzeros"]
        neurons = 3 * width
        # forward and backward copies of every weight, a constant number of entries per neuron
        assert tmpl.nnz <= 2 * chain.nnz() + 25 * neurons + 4 * 10
        sizes.append(tmpl.nnz / chain.nnz())
    assert sizes[0] > sizes[1] > sizes[2] > 2.0  # → 2 entries per weight as layers widen


def test_registered_methods_end_to_end():
    net = random_net([3, 4, 4, 2], seed=1)
    exact = exact_lipschitz(net, None, "inf", _box(net), max_neurons=16)
    ctx = Context(net, "inf", make_target(net), make_domain(net, box=(-0.5, 1.0)), time_limit=60)
    abs_product = get_method("abs-product").run(ctx, None, None).value
    lifted = get_method("lifted").run(ctx, None, parse_options("lifted", {}))
    assert lifted.certified and exact * (1 - REL) <= lifted.value <= abs_product
    bab = get_method("bab").run(ctx, None, parse_options("bab", {"gap": 1e-6}))
    assert bab.certified and bab.status == Status.OPTIMAL
    assert bab.lower <= exact * (1 + REL) <= bab.value * (1 + 2 * REL)
    assert bab.value <= exact * (1 + CLOSE)
    assert bab.size.nodes >= 1 and bab.size.nonzeros > 0
    milp = get_method("milp").run(ctx, None, None)
    assert not milp.certified and milp.value == pytest.approx(exact, rel=1e-6)
    assert milp.lower <= exact * (1 + REL)


def test_methods_refuse_with_one_line():
    net = random_net([3, 4, 4, 2], seed=1)
    tiny = Context(net, "inf", make_target(net), None, max_memory_bytes=1e3)
    row = get_method("bab").run(tiny, None, parse_options("bab", {}))
    assert row.status == Status.REFUSED and "memory" in row.note and "\n" not in row.note
    tanh = random_net([3, 4, 2], seed=1, activation="tanh")
    assert "piecewise-linear" in get_method("bab").applies(Context(tanh, "inf", make_target(tanh), None))
    assert "ℓ" in get_method("milp").applies(Context(net, "2", make_target(net), None))
    with pytest.raises(LipoptError, match="branching"):
        parse_options("bab", {"branching": "random"})


def test_lifted_bounds_smooth_networks_without_reachability():
    net = random_net([3, 5, 5, 1], seed=3, activation="tanh")
    domain = make_domain(net, box=(-1.0, 1.0))
    ctx = Context(net, "inf", make_target(net), domain)
    row = get_method("lifted").run(ctx, None, parse_options("lifted", {}))
    xs = np.random.default_rng(0).uniform(-1, 1, size=(2000, 3))
    sampled = np.abs(net.gradient(xs, [1.0])).sum(axis=1).max()
    assert row.certified and row.value >= sampled
    global_row = get_method("lifted").run(Context(net, "inf", make_target(net), None), None,
                                          parse_options("lifted", {}))
    assert global_row.certified and global_row.value >= row.value * (1 - 1e-12)


def test_lipbab_networks_exact(external):
    from lipopt.loaders import load_network

    published = {"lipbab_iris_4-5-5-3.npz": (2.78682, 1.54491, 1.67808),
                 "lipbab_sd_10-15-10-3.npz": (16.27481, 10.41287, 9.53072)}
    for name, values in published.items():
        net = load_network(external / name)
        box = (np.zeros(net.input_dim), np.full(net.input_dim, 0.1))
        for norm, value in zip(("inf", "1", "2"), values, strict=True):
            out = _bab(net, norm, box, True)
            assert out.status == Status.OPTIMAL
            assert out.lower <= out.upper <= out.lower * (1 + 2e-6)
            assert out.upper == pytest.approx(value, abs=6e-6)


def test_exact_no_interior_proofs():
    from fractions import Fraction as F

    from lipopt.exact_region import no_interior

    lo, hi = np.array([-1.0, -1.0, 1.0]), np.array([1.0, 1.0, 1.0])  # (x1, x2, τ = 1)
    # x1 ≥ 0 and −x1 ≥ 0: the segment x1 = 0 has no interior
    assert no_interior([[F(1), F(0), F(0)], [F(-1), F(0), F(0)]], np.array([1, 1]), lo, hi, False)
    # x1 ≥ 0 and x1 + x2 ≥ 0: a full quadrant
    assert not no_interior([[F(1), F(0), F(0)], [F(1), F(1), F(0)]], np.array([1, 1]), lo, hi, False)
    # x1 − 1/3 ≥ 0 and 1/3 − x1 ≥ 0 with an inexact float constant: exact rationals still decide
    third = F(1, 3)
    assert no_interior([[F(1), F(0), -third], [F(-1), F(0), third]], np.array([1, 1]), lo, hi, False)
    # homogenized face x1 = 1, τ ∈ [0, 1]: z = τ·(−1) + 0·x2 ≥ 0 forces τ = 0 (no real point)
    face_lo, face_hi = np.array([1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0])
    assert no_interior([[F(0), F(0), F(-1)]], np.array([1]), face_lo, face_hi, True)
    assert not no_interior([[F(0), F(0), F(1)]], np.array([1]), face_lo, face_hi, True)


def test_lifted_faces_tighten_the_global_bound():
    net = random_net([3, 5, 5, 2], seed=6)
    exact = exact_lipschitz(net, None, "inf", None, max_neurons=16)
    ctx = Context(net, "inf", make_target(net), None)
    whole = get_method("lifted").run(ctx, None, parse_options("lifted", {}))
    faces = get_method("lifted").run(ctx, None, parse_options("lifted", {"faces": True}))
    assert faces.status == Status.OPTIMAL and whole.status == Status.OPTIMAL
    assert exact * (1 - REL) <= faces.value <= whole.value * (1 + REL)


def test_cold_interior_point_start_matches_the_simplex(monkeypatch):
    """A large cold LP goes to the interior-point method (with crossover): same optimum, a
    certified dual bound at least the optimum, and a basis that warm-starts the simplex."""
    net = random_net([6, 48, 48, 48, 1], seed=7)
    bb = BranchAndBound(net, Quantity("inf", np.ones((1, 1)), False), None, BabSettings(node_limit=0))
    sub, data = bb.root_data(0)
    lp = LiftedTemplate(bb.chain, "sum-abs").lp(data)
    assert lp.rows + lp.cols >= _highs_box.COLD_IPM_MIN_SIZE
    ipm = HighsBox().solve(lp, keep_basis=True)
    monkeypatch.setattr(_highs_box, "COLD_IPM_MIN_SIZE", 10**9)
    simplex = HighsBox().solve(lp, keep_basis=True)
    assert ipm.status == simplex.status == "optimal"
    assert ipm.solver_value == pytest.approx(simplex.solver_value, rel=1e-7)
    assert dual_bound(lp, ipm.w) >= simplex.solver_value * (1 - 1e-9)
    warm = HighsBox().solve(lp, basis=ipm.basis)
    assert warm.status == "optimal" and warm.iterations <= 5
