import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_net
from hypothesis import given, settings
from hypothesis import strategies as st

from lipopt import Activation, LipoptError, Network
from lipopt.network import Dense


def test_gradient_matches_finite_differences():
    net = random_net([4, 6, 5, 3], seed=1, activation="tanh")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    c = np.array([1.0, -2.0, 0.5])
    g = net.gradient(x, c)
    h = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        fd = ((net.forward(x + e) - net.forward(x - e)) @ c) / (2 * h)
        np.testing.assert_allclose(g[:, i], fd, rtol=1e-5, atol=1e-7)


def test_sparse_weights_behave_like_dense():
    net = random_net([5, 7, 2], seed=3, band=1)
    sparse = Network(
        tuple(Dense(sp.csr_matrix(layer.weight), layer.bias, layer.activation) for layer in net.layers)
    )
    x = np.random.default_rng(1).normal(size=(4, 5))
    np.testing.assert_allclose(sparse.forward(x), net.forward(x))
    np.testing.assert_allclose(sparse.gradient(x, np.ones(2)), net.gradient(x, np.ones(2)))


@pytest.mark.parametrize(
    "weights, biases, message",
    [
        ([np.ones((3, 2)), np.ones((1, 4))], None, "shape mismatch"),
        ([np.array([[np.nan, 1.0]]), np.ones((1, 1))], None, "NaN or inf"),
        ([np.ones((3, 2)), np.ones((1, 3))], [np.ones(3), np.ones(2)], "bias has shape"),
        ([np.ones((3, 2))], [np.array([1.0, np.inf, 0.0])], "bias contains NaN"),
    ],
)
def test_validation_names_the_layer(weights, biases, message):
    with pytest.raises(LipoptError, match=message):
        Network.from_weights(weights, biases)


def test_empty_network_and_unknown_activation():
    with pytest.raises(LipoptError, match="empty network"):
        Network(())
    with pytest.raises(LipoptError, match="unknown activation 'swish'"):
        Activation("swish")


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus", "identity"]),
    a=st.floats(-6, 6),
    b=st.floats(-6, 6),
)
def test_derivative_range_contains_sampled_derivatives(name, a, b):
    lo, hi = min(a, b), max(a, b)
    act = Activation(name, alpha=0.1)
    dlo, dhi = act.derivative_range(np.array([lo]), np.array([hi]))
    z = np.linspace(lo, hi, 257)
    if act.is_piecewise_linear:
        z = z[z != 0.0]  # the kink: any value in the Clarke range [α, 1] is admissible there
    d = act.derivative(z)
    assert np.all(d >= dlo[0] - 1e-12) and np.all(d <= dhi[0] + 1e-12)


def test_interval_bounds_contain_samples():
    net = random_net([3, 8, 6, 2], seed=4)
    lo, hi = -np.ones(3), np.ones(3)
    bounds = net.interval_bounds(lo, hi)
    x = np.random.default_rng(0).uniform(-1, 1, size=(2000, 3))
    for z, (zl, zu) in zip(net.pre_activations(x), bounds, strict=True):
        assert np.all(z >= zl) and np.all(z <= zu)
