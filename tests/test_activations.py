"""Activations declare their properties; ranges and relaxations enclose dense samples; GELU and
SiLU (non-monotone, non-convex) are handled soundly end to end; bad declarations are refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lipopt import Activation, LipoptError, Network
from lipopt.activations import ACTIVATIONS, register_activation
from lipopt.chain import bound_chain
from lipopt.problems import make_domain, make_target

NAMES = sorted(ACTIVATIONS)


def random_intervals(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of every scale around the interesting points (kinks, critical points)."""
    rng = np.random.default_rng(seed)
    centre = rng.choice([-2.4, -1.41, -1.28, -0.75, 0.0, 1.41, 2.4], n) + rng.normal(0, 1.5, n)
    half = 10.0 ** rng.uniform(-6, 1.2, n)
    lo, hi = centre - half * rng.random(n), centre + half * rng.random(n)
    return lo, hi


def samples(lo: float, hi: float) -> np.ndarray:
    return np.concatenate([np.linspace(lo, hi, 401), [lo, hi]])


@pytest.mark.parametrize("name", NAMES)
def test_ranges_and_relaxation_enclose_dense_samples(name):
    act = Activation(name, alpha=0.2)
    lo, hi = random_intervals(sum(map(ord, name)))
    dlo, dhi = act.derivative_range(lo, hi)
    vlo, vhi = act.value_range(lo, hi)
    a_l, b_l, a_u, b_u = act.relaxation(lo, hi)
    for k in range(len(lo)):
        z = samples(lo[k], hi[k])
        if act.piecewise_linear:
            z = z[z != act.kink]  # at the kink any Clarke value is admissible
        d, v = act.derivative(z), act(z)
        assert np.all(dlo[k] <= d) and np.all(d <= dhi[k]), (name, lo[k], hi[k])
        assert np.all(vlo[k] <= v) and np.all(v <= vhi[k]), (name, lo[k], hi[k])
        assert np.all(a_l[k] * z + b_l[k] <= v) and np.all(v <= a_u[k] * z + b_u[k]), (name, lo[k], hi[k])


@pytest.mark.parametrize("name", NAMES)
def test_global_slope_bounds_enclose_the_derivative(name):
    act = Activation(name, alpha=0.3)
    z = np.linspace(-40, 40, 200_001)
    d = act.derivative(z)
    lo, hi = act.slope_bounds
    assert lo <= d.min() and d.max() <= hi
    assert hi - d.max() < 1e-6 and d.min() - lo < 1e-6  # and are tight (up to the grid)


def test_gelu_and_silu_are_declared_non_monotone_and_their_extremes_are_covered():
    for name, argmin, low_slope, high_slope in [
        ("gelu", -0.75179, -0.128904, 1.128904),
        ("silu", -1.27846, -0.099839, 1.099839),
    ]:
        act = Activation(name)
        assert not act.monotone and act.curvature == "neither" and not act.piecewise_linear
        lo, hi = act.slope_bounds
        assert lo == pytest.approx(low_slope, abs=1e-6) and hi == pytest.approx(high_slope, abs=1e-6)
        # the value's minimum lies inside [-2, 0.5] but at neither end: [σ(l), σ(u)] would miss it
        (vlo,), (vhi,) = act.value_range(np.array([-2.0]), np.array([0.5]))
        assert vlo <= float(act(np.array([argmin]))[0]) < min(act(np.array([-2.0, 0.5])))
        assert vhi >= float(act(np.array([0.5]))[0])


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_interval_bounds_of_a_non_monotone_net_contain_samples(name):
    rng = np.random.default_rng(3)
    ws = [rng.normal(size=(6, 3)), rng.normal(size=(5, 6)), rng.normal(size=(2, 5))]
    bs = [rng.normal(size=6), rng.normal(size=5), np.zeros(2)]
    net = Network.from_weights(ws, bs, activation=name)
    lo, hi = -np.ones(3), np.ones(3)
    x = rng.uniform(-1, 1, size=(20_000, 3))
    for z, (zl, zu) in zip(net.pre_activations(x), net.interval_bounds(lo, hi), strict=True):
        assert np.all(z >= zl) and np.all(z <= zu)


@pytest.mark.parametrize("name", ["gelu", "silu"])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_gelu_silu_end_to_end_bounds_sandwich_sampled_values(name, norm):
    rng = np.random.default_rng(7)
    ws = [rng.normal(size=(4, 2)), rng.normal(size=(3, 4)), rng.normal(size=(2, 3))]
    bs = [rng.normal(size=4), rng.normal(size=3), rng.normal(size=2)]
    net = Network.from_weights(ws, bs, activation=name)
    for domain in (None, make_domain(net, center=np.array([0.3, -0.4]), eps=0.5)):
        for target in (make_target(net), make_target(net, output=1)):
            chain = bound_chain(net, norm, ["naive", "abs-product", "lp", "lower"], target=target,
                                domain=domain, time_limit=20.0)
            assert {b.method for b in chain.bounds if b.certified} == {"naive", "abs-product", "lp"}
            if domain is None:
                x = rng.normal(size=(20_000, 2)) * np.repeat([0.3, 1.0, 3.0, 10.0], 5000)[:, None]
            else:
                x = domain.lo + (domain.hi - domain.lo) * rng.random((20_000, 2))
            J = net.jacobian(x)
            sampled = float(target_values(J, target, norm).max())
            low = chain.lower_bound.value
            assert 0 < low
            for b in chain.bounds:
                assert b.value >= max(sampled, low) * (1 - 1e-9), (b.method, b.value, sampled, low)


def target_values(J: np.ndarray, target, norm: str) -> np.ndarray:
    if target.is_network:
        if norm == "2":
            return np.linalg.svd(J, compute_uv=False)[:, 0]
        return np.abs(J).sum(axis=2 if norm == "inf" else 1).max(axis=1)
    q = {"inf": 1, "2": 2, "1": np.inf}[norm]
    return np.linalg.norm(np.einsum("bmn,m->bn", J, target.vectors[0]), ord=q, axis=1)


def test_factory_equality_hash_pickle_and_parameters():
    a, b = Activation("leaky_relu", alpha=0.1), Activation("leaky_relu", 0.1)
    assert a == b and hash(a) == hash(b) and a.name == "leaky_relu" and a.alpha == 0.1
    assert Activation("relu") != Activation("leaky_relu") and isinstance(a, Activation)
    assert {Activation("gelu"), Activation("gelu")} == {Activation("gelu")}
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(LipoptError, match="unknown activation 'swish'; supported: .*gelu"):
        Activation("swish")
    with pytest.raises(LipoptError, match="leaky_relu needs 0 <= alpha <= 1"):
        Activation("leaky_relu", alpha=2.0)


def _declared(**attrs) -> type:
    base = {"key": "test_act", "monotone": True, "curvature": "neither", "piecewise_linear": False,
            "derivative_shape": "unimodal", "derivative_critical_points": (0.0,),
            "__call__": lambda self, z: np.tanh(z),
            "derivative": lambda self, z: 1.0 / np.cosh(np.asarray(z, dtype=float)) ** 2}
    base.update(attrs)
    return type("TestAct", (Activation,), {k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("attrs, message", [
    ({"monotone": None}, "does not declare 'monotone'"),
    ({"curvature": "wavy"}, "curvature must be one of"),
    ({"derivative_shape": "general", "derivative_critical_points": None}, "needs critical points"),
    ({"derivative_critical_points": (0.0, 1.0)}, "exactly one critical point"),
    ({"monotone": False}, "neither value_argmin nor its own value_range"),
    ({"curvature": "convex"}, "declares convex but is not"),
    ({"derivative_critical_points": (3.0,)}, "misses samples|leaves its declared global derivative range"),
    ({"__call__": lambda self, z: np.sin(z),
      "derivative": lambda self, z: np.cos(np.where(np.isfinite(z), z, 0.0))},
     "declares monotone but decreases"),
    ({"key": "relu"}, "the name is taken"),
])
def test_registration_refuses_what_soundness_cannot_use(attrs, message):
    with pytest.raises(LipoptError, match=message):
        register_activation(_declared(**attrs))
    assert "test_act" not in ACTIVATIONS


def test_registering_a_new_activation_is_one_class():
    cls = register_activation(_declared(key="test_tanh_copy"))
    try:
        act = Activation("test_tanh_copy")
        assert isinstance(act, cls) and act.slope_bounds[1] >= 1.0
        net = Network.from_weights([np.eye(2), np.ones((1, 2))], activation="test_tanh_copy")
        assert bound_chain(net, "inf", ["naive"]).best.value >= 2.0
    finally:
        del ACTIVATIONS["test_tanh_copy"]
