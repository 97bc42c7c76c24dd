import numpy as np
import pytest
from conftest import random_net

from lipopt.intervals import crown_bounds, hidden_derivative_ranges


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid", "softplus", "elu"])
@pytest.mark.parametrize("seed", range(3))
def test_crown_is_sound_and_no_looser_than_intervals(activation, seed):
    net = random_net([4, 10, 8, 6, 2], seed=seed, activation=activation)
    lo, hi = -0.5 * np.ones(4), 0.3 * np.ones(4)
    crown = crown_bounds(net, lo, hi)
    ibp = net.interval_bounds(lo, hi)
    x = np.random.default_rng(seed).uniform(lo, hi, size=(4000, 4))
    corners = np.array(np.meshgrid(*[[a, b] for a, b in zip(lo, hi, strict=True)])).reshape(4, -1).T
    x = np.vstack([x, corners])
    for z, (cl, cu), (il, iu) in zip(net.pre_activations(x), crown, ibp, strict=True):
        assert np.all(z >= cl) and np.all(z <= cu)
        assert np.all(cl >= il) and np.all(cu <= iu)


def test_crown_is_tighter_on_deep_relu_nets():
    net = random_net([4, 16, 16, 16, 1], seed=3)
    lo, hi = -np.ones(4), np.ones(4)
    crown = crown_bounds(net, lo, hi)
    ibp = net.interval_bounds(lo, hi)
    width_crown = sum((u - l).sum() for l, u in crown[1:])
    width_ibp = sum((u - l).sum() for l, u in ibp[1:])
    assert width_crown < 0.9 * width_ibp


def test_local_ranges_fix_stable_relus():
    net = random_net([3, 12, 1], seed=0)
    x0 = np.array([0.2, -0.1, 0.4])
    ranges = hidden_derivative_ranges(net, (x0 - 1e-4, x0 + 1e-4))
    lo, hi = ranges[0]
    assert np.all(lo == hi)  # a tiny box decides every neuron
    z = net.pre_activations(x0[None, :])[0][0]
    np.testing.assert_array_equal(hi, (z > 0).astype(float))
