import itertools

import numpy as np
import pytest

from lipopt import LipoptError
from lipopt.bounds import abs_product_bound, lower_bound, naive_bound
from lipopt.network import IDENTITY, Activation, Dense, Network, Residual
from lipopt.problems import build_problem, derivative_ranges, gradient_polynomial, make_domain, make_target


def residual_net(seed: int = 0, width: int = 3, with_matrices: bool = False) -> Network:
    rng = np.random.default_rng(seed)
    relu = Activation("relu")
    n = width
    first = Dense(rng.normal(size=(n, 2)), rng.normal(size=n), relu)
    inner = (
        Dense(rng.normal(size=(2, n)), rng.normal(size=2), relu),
        Dense(rng.normal(size=(n, 2)), rng.normal(size=n), IDENTITY),
    )
    skip = rng.normal(size=(n, n)) if with_matrices else None
    out = rng.normal(size=(n, n)) if with_matrices else None
    block = Residual(inner, skip, out, relu)
    last = Dense(rng.normal(size=(1, n)), np.zeros(1))
    return Network((first, block, last), name="res")


def vertex_max(net, c, norm, domain=None):
    """Brute force: max over derivative-range vertices of ‖J(s)ᵀc‖_q via Network.backward."""
    ranges = derivative_ranges(net, domain)
    sizes = [len(lo) for lo, _ in ranges]
    lo = np.concatenate([r[0] for r in ranges])
    hi = np.concatenate([r[1] for r in ranges])
    q = {"inf": 1, "2": 2, "1": np.inf}[norm]
    best = 0.0
    for bits in itertools.product([0, 1], repeat=len(lo)):
        s = np.where(np.array(bits) == 1, hi, lo)
        slopes = np.split(s, np.cumsum(sizes)[:-1])
        g = net.backward(c[None, :], [v[None, :] for v in slopes])[0]
        best = max(best, np.linalg.norm(g, q))
    return best


@pytest.mark.parametrize("with_matrices", [False, True])
def test_residual_gradient_and_polynomial(with_matrices):
    net = residual_net(1, with_matrices=with_matrices)
    c = np.ones(1)
    x = np.random.default_rng(0).normal(size=(40, 2))
    g = net.gradient(x, c)
    h = 1e-6
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        fd = (net.forward(x + e) - net.forward(x - e))[:, 0] / (2 * h)
        np.testing.assert_allclose(g[:, i], fd, rtol=1e-5, atol=1e-6)
    P = gradient_polynomial(net, c)
    assert np.any(P.degrees < P.degree)
    slopes = [
        site.activation.derivative(z) for site, z in zip(net.sites, net.pre_activations(x), strict=True)
    ]
    pts = np.hstack([np.sign(g), *slopes])
    np.testing.assert_allclose(P.evaluate(pts), np.abs(g).sum(axis=1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_residual_pops_and_baselines_bracket_the_vertex_maximum(norm):
    net = residual_net(2, with_matrices=True)
    target = make_target(net, output=0)
    for domain in (None, make_domain(net, box=(-0.3, 0.3))):
        problem = build_problem(net, norm, target, domain)
        vals = []
        for pop in problem.pops:
            u = np.array(list(itertools.product([0.0, 1.0], repeat=pop.n_vars)))
            vals.append(pop.polynomial.evaluate(u).max() if pop.n_vars else pop.polynomial.constant_term)
        exact = vertex_max(net, target.vectors[0], norm, domain)
        assert problem.combine(vals) == pytest.approx(exact, rel=1e-9, abs=1e-12)
        assert abs_product_bound(net, norm, target, domain) >= exact * (1 - 1e-12)
        assert naive_bound(net, norm, target, domain) >= exact * (1 - 1e-12)
        assert lower_bound(net, norm, target, domain).value <= exact * (1 + 1e-9)


def test_residual_shape_errors():
    relu = Activation("relu")
    inner = (Dense(np.ones((2, 3)), np.zeros(2), relu), Dense(np.ones((4, 2)), np.zeros(4)))
    with pytest.raises(LipoptError, match="residual shapes do not chain"):
        Network((Residual(inner), Dense(np.ones((1, 4)), np.zeros(1))))


@pytest.mark.parametrize("sparse", [False, True])
def test_residual_npz_round_trip_and_hash(tmp_path, sparse):
    import scipy.sparse as sp

    from lipopt.loaders import load_network, save_npz
    from lipopt.sweep import network_hash

    net = residual_net(4, with_matrices=True)
    if sparse:  # sparse skip/out matrices and a leaky inner activation survive too
        block = net.layers[1]
        inner = (Dense(block.inner[0].weight, block.inner[0].bias, Activation("leaky_relu", 0.2)),
                 *block.inner[1:])
        net = Network((net.layers[0], Residual(inner, sp.csr_matrix(block.skip), sp.csr_matrix(block.out),
                                               block.activation), net.layers[2]), name="res")
    path = save_npz(net, tmp_path / "res.npz")
    back = load_network(path)
    x = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    assert back.architecture() == net.architecture() == "2-3-res(3)-1"
    assert network_hash(back) == network_hash(net)
    assert [s.activation for s in back.sites] == [s.activation for s in net.sites]
    # the hash covers the residual block: change one skip entry, or drop the skip matrix
    block = net.layers[1]
    skip = block.skip.toarray() if sparse else np.array(block.skip)
    skip[0, 0] += 1.0
    changed = Network((net.layers[0], Residual(block.inner, skip, block.out, block.activation),
                       net.layers[2]))
    identity_skip = Network((net.layers[0], Residual(block.inner, None, block.out, block.activation),
                             net.layers[2]))
    assert len({network_hash(net), network_hash(changed), network_hash(identity_skip)}) == 3


def test_dense_hash_is_unchanged_by_the_block_protocol():
    """The sweep's resume keys: a plain chain hashes exactly as before (weights, bias, activation)."""
    import hashlib

    from lipopt.sweep import network_hash

    net = Network.from_weights([np.arange(6.0).reshape(2, 3), np.ones((1, 2))], [np.ones(2), np.zeros(1)])
    h = hashlib.sha256()
    for layer in net.layers:
        a = np.ascontiguousarray(layer.weight, dtype="<f8")
        h.update(b"dense" + np.asarray(a.shape, dtype="<i8").tobytes() + a.tobytes())
        h.update(np.ascontiguousarray(layer.bias, dtype="<f8").tobytes())
        h.update(f"{layer.activation.name}:{layer.activation.alpha!r};".encode())
    assert network_hash(net) == h.hexdigest()
