"""Adversarial soundness audit: every *certified* upper bound is ≥ the exact value.

For tiny networks the references are computed independently of the relaxation code:

* ``exact_lipschitz`` — the true constant of a piecewise-linear network (region enumeration);
* ``vertex_max`` (here) — the maximum of the norm-gradient polynomial, by enumerating the
  vertices of the derivative ranges and pulling ``c`` back with :meth:`Network.backward` (no
  polynomial, no binarization);
* ``sampled_max`` (here) — ``‖∇f(x)‖_q`` at many real points of the domain (a lower bound).

Every upper-bound method of :func:`bound_chain` (each degree it accepts; a refusal is a
:class:`LipoptError`, any other exception fails the test) must be ≥ all of them, and the ``lower``
bound must be ≤ the exact constant. Covered: ℓ∞ / ℓ2 / ℓ1; global and local boxes (also boxes
with a degenerate coordinate, single points, boxes where every neuron is stable); scalar,
all-output, margin and vector targets; zero rows / columns, duplicate neurons, sparse and
integer weights, one-dimensional inputs, weight scales 1e-6 … 1e6, leaky ReLU, tanh, sigmoid,
ELU, softplus, residual blocks, early-stopped solvers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipopt.chain import bound_chain
from lipopt.errors import LipoptError
from lipopt.exact import exact_lipschitz, exact_pop_max
from lipopt.network import Activation, Dense, Network, Residual
from lipopt.problems import build_problem, derivative_ranges, make_domain, make_target, parse_norm

Q = {"inf": 1, "2": 2, "1": np.inf}
NORMS = ("inf", "2", "1")
UPPER = ("naive", "abs-product", "lp", "sdp", "sdp+lp", "sdp-ball", "lipsdp", "exact-pop")
REL, ABS = 1e-9, 1e-12
FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------
def induced_norm(J: np.ndarray, norm: str) -> float:
    """``‖J‖_{p→p}``: ℓ∞ largest row sum, ℓ1 largest column sum, ℓ2 largest singular value."""
    if norm == "2":
        return float(np.linalg.svd(J, compute_uv=False)[0])
    return float(np.abs(J).sum(axis=1 if norm == "inf" else 0).max())


def target_value(J: np.ndarray, target, norm: str) -> float:
    """The target's quantity at a Jacobian ``J``: ``‖J‖_{p→p}`` for the network (no output
    chosen), else ``max_k ‖Jᵀ c_k‖_q``."""
    if target.is_network:
        return induced_norm(J, norm)
    return max(float(np.linalg.norm(J.T @ np.asarray(c, float), Q[norm])) for c in target.vectors)


def vertex_max(net: Network, target, norm: str, domain=None) -> float:
    """``max_{s ∈ vertices}`` of the target's quantity at ``J(s)`` by enumeration (convex in
    each s_j): ``‖J(s)‖_{p→p}`` for the network, ``max_k ‖J(s)ᵀ c_k‖_q`` for scalar targets."""
    ranges = derivative_ranges(net, domain)
    sizes = [len(lo) for lo, _ in ranges]
    lo = np.concatenate([r[0] for r in ranges]) if ranges else np.zeros(0)
    hi = np.concatenate([r[1] for r in ranges]) if ranges else np.zeros(0)
    assert lo.size <= 14
    best = 0.0
    for bits in itertools.product((False, True), repeat=lo.size):
        s = np.where(np.array(bits, dtype=bool), hi, lo)
        slopes = [part[None, :] for part in np.split(s, np.cumsum(sizes)[:-1])] if sizes else []
        J = net.backward(np.eye(net.output_dim), slopes)
        best = max(best, target_value(J, target, norm))
    return best


def pop_reference(net: Network, target, norm: str, domain=None) -> float:
    """What the POP route computes exactly: the vertex maximum of the quantity where the norm
    has POPs for the network itself (ℓ1), else the rows' vertex maxima combined as the target
    combines per-row bounds (the max for scalar targets and ℓ∞)."""
    if target.is_network and parse_norm(norm).has_network_pops:
        return vertex_max(net, target, norm, domain)
    rows = [vertex_max(net, make_target(net, vector=c), norm, domain) for c in target.vectors]
    return target.combine(rows, norm)


def sampled_max(net: Network, target, norm: str, domain=None, n: int = 4000, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    d = net.input_dim
    if domain is None:
        x = rng.standard_normal((n, d)) * np.repeat([0.1, 1.0, 10.0, 100.0], n // 4)[:, None]
    else:
        x = domain.lo + (domain.hi - domain.lo) * rng.random((n, d))
    if target.is_network:
        J = np.stack([net.gradient(x, e) for e in np.eye(net.output_dim)], axis=1)
        return max(induced_norm(Jx, norm) for Jx in J)
    return max(
        float(np.linalg.norm(net.gradient(x, c), Q[norm], axis=1).max()) for c in target.vectors
    )


def exact_constant(net: Network, target, norm: str, domain=None) -> float:
    """The exact quantity: the scalar constant, or the network's ``sup ‖J‖_{p→p}``."""
    if target.is_network:
        return exact_lipschitz(net, None, norm, domain)
    return max(exact_lipschitz(net, c, norm, domain) for c in target.vectors)


def exact_pop(net: Network, target, norm: str, domain=None) -> float:
    prob = build_problem(net, norm, target, domain)
    vals = [
        (exact_pop_max(p.polynomial) if p.n_vars else p.polynomial.constant_term) + p.rounding_slack
        for p in prob.pops
    ]
    return prob.combine(vals)


def all_bounds(net, norm, target, domain=None, methods=UPPER, levels=None, options=None):
    """Run each method on its own (a refusal of one must not hide the others)."""
    levels = levels or {"lp": None, "sdp": [1], "sdp+lp": [2, 3]}
    out = []
    for m in methods:
        try:
            ch = bound_chain(net, norm, [m], levels={m: levels.get(m)} if m in levels else None,
                             target=target, domain=domain, options=options)
        except LipoptError:
            continue
        out.extend(b for b in ch.bounds if b.certified)
    return out


def assert_above(bounds, reference: float, what: str) -> None:
    for b in bounds:
        assert b.value >= reference * (1 - REL) - ABS, (
            f"{b.method} degree {b.level}: certified {b.value!r} < {what} {reference!r}"
        )


def lower_value(net, norm, target, domain=None) -> float:
    return bound_chain(net, norm, ["lower"], target=target, domain=domain).lower_bound.value


# ---------------------------------------------------------------------------------------------
# Network factories
# ---------------------------------------------------------------------------------------------
def chain_net(sizes, seed=0, activation="relu", scale=1.0, bias=True) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((b, a)) * scale for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [rng.standard_normal(b) * scale * bias for b in sizes[1:]]
    return Network.from_weights(ws, bs, activation=activation)


def pick_target(net: Network, kind: str, seed: int = 0):
    m = net.output_dim
    if kind == "margin" and m >= 2:
        return make_target(net, margin=(m - 1, 0))
    if kind == "vector":
        return make_target(net, vector=np.random.default_rng(seed).standard_normal(m) * 3.0)
    if kind == "all":
        return make_target(net)
    return make_target(net, output=m - 1)


net_strategy = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "sizes": st.sampled_from([[1, 3, 2], [2, 4, 2], [3, 5, 1], [2, 3, 3, 2], [3, 2, 3, 1],
                              [2, 2, 2, 2, 2], [4, 3, 2], [1, 2, 2, 1]]),
    "act": st.sampled_from(["relu", "leaky_relu:0.01", "leaky_relu:0.3"]),
    "norm": st.sampled_from(NORMS),
    "target": st.sampled_from(["output", "all", "margin", "vector"]),
    "local": st.sampled_from([None, 0.05, 0.5, 3.0]),
})


def _activation(spec: str) -> Activation:
    name, _, alpha = spec.partition(":")
    return Activation(name, float(alpha)) if alpha else Activation(name)


# ---------------------------------------------------------------------------------------------
# 1. Every method, every norm, every target kind, global and local: above the exact constant
# ---------------------------------------------------------------------------------------------
@FAST
@given(p=net_strategy)
def test_every_certified_bound_is_above_exact_constant_and_pop_max(p):
    net = chain_net(p["sizes"], p["seed"], _activation(p["act"]))
    target = pick_target(net, p["target"], p["seed"])
    rng = np.random.default_rng(p["seed"])
    domain = None if p["local"] is None else make_domain(
        net, center=rng.standard_normal(net.input_dim), eps=p["local"])
    norm = p["norm"]
    exact = exact_constant(net, target, norm, domain)
    vmax = vertex_max(net, target, norm, domain)
    assert vmax >= exact * (1 - REL) - ABS  # the POP relaxes the constant
    bounds = all_bounds(net, norm, target, domain)
    assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
    assert_above(bounds, vmax, "vertex max of the POP")
    assert_above(bounds, exact, "exact Lipschitz constant")
    low = lower_value(net, norm, target, domain)
    assert low <= exact * (1 + REL) + ABS
    assert_above(bounds, low, "lower bound")


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("kind", ["all", "margin", "vector"])
def test_exact_pop_matches_independent_vertex_enumeration(norm, kind):
    net = chain_net([3, 3, 2, 3], seed=7, activation=Activation("leaky_relu", 0.2))
    target = pick_target(net, kind, 7)
    for domain in (None, make_domain(net, center=np.array([0.3, -0.2, 0.1]), eps=0.4)):
        vmax = pop_reference(net, target, norm, domain)
        pop = exact_pop(net, target, norm, domain)
        assert pop >= vmax * (1 - REL) - ABS
        assert pop == pytest.approx(vmax, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# 2. Chains are monotone in the degree and reach the exact POP maximum at full level
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("sizes,local", [([2, 3, 2], False), ([2, 2, 2, 2], True), ([1, 3, 2, 1], False)])
def test_chains_are_monotone_and_sound(norm, sizes, local):
    net = chain_net(sizes, seed=sum(sizes), activation=Activation("leaky_relu", 0.1))
    target = make_target(net)
    domain = make_domain(net, center=np.full(net.input_dim, 0.2), eps=1.0) if local else None
    pop = exact_pop(net, target, norm, domain)
    deg = build_problem(net, norm, target, domain).pops[0].degree
    ch = bound_chain(net, norm, ["lp", "sdp+lp"], target=target, domain=domain,
                     levels={"lp": [deg, deg + 1, deg + 2], "sdp+lp": [2, 3, 4]})
    for method in ("lp", "sdp+lp"):
        vals = [b.value for b in ch.bounds if b.method == method]
        assert all(b.certified for b in ch.bounds if b.method == method)
        assert all(a >= b for a, b in itertools.pairwise(vals)), (method, vals)
        assert min(vals) >= pop * (1 - REL) - ABS
    n_vars = max(p.n_vars for p in build_problem(net, norm, target, domain).pops)
    full = bound_chain(net, norm, ["lp"], target=target, domain=domain, levels=[max(n_vars, deg)],
                       options={"lp": {"cliques": "dense"}})
    assert full.bounds[0].value >= pop * (1 - REL) - ABS
    assert full.bounds[0].value == pytest.approx(pop, rel=1e-6, abs=1e-9)


def test_sdp_chain_is_monotone_on_a_two_layer_net():
    net = chain_net([2, 3, 2, 1], seed=3)
    target = make_target(net, output=0)
    pop = exact_pop(net, target, "inf")
    ch = bound_chain(net, "inf", ["sdp"], target=target, levels=[1, 2, 3])
    vals = [b.value for b in ch.bounds]
    assert all(a >= b for a, b in itertools.pairwise(vals))
    assert min(vals) >= pop * (1 - REL) - ABS


# ---------------------------------------------------------------------------------------------
# 3. Adversarial weights
# ---------------------------------------------------------------------------------------------
def _adversarial(kind: str) -> Network:
    rng = np.random.default_rng(42)
    w1, w2, w3 = rng.standard_normal((4, 3)), rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    b1, b2, b3 = rng.standard_normal(4), rng.standard_normal(3), rng.standard_normal(2)
    if kind == "zero-row":
        w1[1] = 0.0
        w2[2] = 0.0
    elif kind == "zero-col":
        w1[:, 0] = 0.0
        w2[:, 3] = 0.0
    elif kind == "duplicate-neurons":
        w1[1], b1[1] = w1[0], b1[0]
        w2[:, 1] = w2[:, 0]
    elif kind == "opposite-neurons":  # relu(z) and relu(-z): a linear unit in disguise
        w1[1], b1[1] = -w1[0], -b1[0]
        w2[:, 1] = -w2[:, 0]
    elif kind == "dead-layer":
        w2[:] = 0.0
        b2[:] = -1.0
    elif kind == "sparse":
        w1 = sp.csr_matrix(w1 * (rng.random(w1.shape) < 0.4))
        w2 = sp.csr_matrix(w2 * (rng.random(w2.shape) < 0.4))
    elif kind == "integer":  # exact ties between paths
        w1, w2, w3 = np.round(w1), np.round(w2), np.round(w3)
        b1, b2 = np.zeros(4), np.zeros(3)
    return Network.from_weights([w1, w2, w3], [b1, b2, b3])


ADVERSARIAL = ["zero-row", "zero-col", "duplicate-neurons", "opposite-neurons", "dead-layer",
               "sparse", "integer"]


@pytest.mark.parametrize("kind", ADVERSARIAL)
def test_adversarial_weights(kind):
    net = _adversarial(kind)
    for norm, target, domain in [
        ("inf", make_target(net), None),
        ("2", make_target(net, margin=(0, 1)), make_domain(net, box=(-0.5, 0.5))),
        ("1", make_target(net, output=1), None),
    ]:
        exact = exact_constant(net, target, norm, domain)
        vmax = vertex_max(net, target, norm, domain)
        bounds = all_bounds(net, norm, target, domain,
                            methods=("naive", "abs-product", "lp", "sdp+lp", "lipsdp", "exact-pop"),
                            levels={"lp": None, "sdp+lp": [3]})
        assert bounds
        assert_above(bounds, max(exact, vmax), "exact value")
        assert lower_value(net, norm, target, domain) <= exact * (1 + REL) + ABS
    if kind == "dead-layer":
        assert exact == 0.0


@pytest.mark.parametrize("scales", [(1e-6,) * 3, (1e6,) * 3, (1e6, 1e-6, 1.0), (1e-3, 1e3, 1e-3)])
@pytest.mark.parametrize("norm", NORMS)
def test_extreme_weight_scales(scales, norm):
    rng = np.random.default_rng(5)
    sizes = [2, 3, 2, 2]
    pairs = zip(itertools.pairwise(sizes), scales, strict=True)
    ws = [rng.standard_normal((b, a)) * s for (a, b), s in pairs]
    bs = [rng.standard_normal(b) * s for b, s in zip(sizes[1:], scales, strict=True)]
    net = Network.from_weights(ws, bs, activation=Activation("leaky_relu", 0.05))
    target = make_target(net)
    for domain in (None, make_domain(net, center=np.array([0.5, -0.5]) * scales[0], eps=1.0 * scales[0])):
        vmax = vertex_max(net, target, norm, domain)
        ref = max(vmax, sampled_max(net, target, norm, domain))
        bounds = all_bounds(net, norm, target, domain,
                            methods=("naive", "abs-product", "lp", "sdp+lp", "lipsdp", "exact-pop"),
                            levels={"lp": [3, 4], "sdp+lp": [3]})
        assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
        assert_above(bounds, ref, "vertex max / sampled gradient")


# ---------------------------------------------------------------------------------------------
# 4. Boxes: stable neurons, degenerate coordinates, single points, one-dimensional inputs
# ---------------------------------------------------------------------------------------------
def test_box_where_every_neuron_is_stable_gives_the_exact_linear_constant():
    # first layer: neurons 0, 1 always active, neuron 2 always dead on [0, 1]^2
    w1 = np.array([[1.0, 2.0], [-1.0, 0.5], [1.0, 1.0]])
    b1 = np.array([0.5, 3.0, -5.0])
    w2 = np.array([[1.0, -1.0, 4.0], [-2.0, 1.0, 1.0]])
    b2 = np.array([10.0, 10.0])  # always active
    w3 = np.array([[1.0, 3.0]])
    net = Network.from_weights([w1, w2, w3], [b1, b2, np.zeros(1)])
    domain = make_domain(net, box=(0.0, 1.0))
    target = make_target(net, output=0)
    grad = net.gradient(np.array([0.5, 0.5]), target.vectors[0])
    for norm in NORMS:
        truth = float(np.linalg.norm(grad, Q[norm]))
        assert exact_constant(net, target, norm, domain) == pytest.approx(truth, rel=1e-12)
        bounds = all_bounds(net, norm, target, domain,
                            methods=("lp", "sdp", "sdp+lp", "exact-pop"))
        assert {b.method for b in bounds} >= {"lp", "sdp", "exact-pop"}
        for b in bounds:
            assert truth * (1 - REL) <= b.value <= truth * (1 + 1e-6) + 1e-9, (b.method, b.value, truth)


@pytest.mark.parametrize("norm", NORMS)
def test_partially_stable_box(norm):
    net = chain_net([3, 5, 4, 1], seed=11)
    target = make_target(net, output=0)
    domain = make_domain(net, center=np.array([1.0, -1.0, 0.5]), eps=0.3)
    ranges = derivative_ranges(net, domain)
    stable = sum(int(np.sum(lo == hi)) for lo, hi in ranges)
    assert 0 < stable < sum(net.hidden_sizes)
    exact = exact_constant(net, target, norm, domain)
    bounds = all_bounds(net, norm, target, domain)
    assert_above(bounds, max(exact, vertex_max(net, target, norm, domain)), "exact value")
    assert lower_value(net, norm, target, domain) <= exact * (1 + REL) + ABS


@pytest.mark.parametrize("norm", NORMS)
def test_degenerate_box_coordinates_and_single_points(norm):
    net = chain_net([3, 4, 3, 2], seed=19, activation=Activation("leaky_relu", 0.2))
    target = make_target(net)
    x0 = np.array([0.3, -0.7, 1.1])
    boxes = [
        make_domain(net, box=(x0 - [0.5, 0.0, 0.5], x0 + [0.5, 0.0, 0.5])),  # lo == hi in one coordinate
        make_domain(net, center=x0, eps=0.0),  # a single point
        make_domain(net, center=x0, eps=1e-9),
    ]
    for domain in boxes:
        ref = max(vertex_max(net, target, norm, domain), sampled_max(net, target, norm, domain, n=400))
        bounds = all_bounds(net, norm, target, domain)
        assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
        assert_above(bounds, ref, "vertex max / gradient at the point")
    # at a point where no neuron sits on a kink, every relaxation is the gradient norm itself
    point = boxes[1]
    # (rows combined as the POP route combines them for the network's ℓ2 constant)
    rows = [float(np.linalg.norm(net.gradient(x0, c), Q[norm])) for c in target.vectors]
    truth = target.combine(rows, norm)
    if parse_norm(norm).has_network_pops:
        truth = target_value(net.jacobian(x0)[0], target, norm)
    for b in all_bounds(net, norm, target, point, methods=("lp", "exact-pop")):
        assert truth * (1 - REL) <= b.value <= truth * (1 + 1e-6) + 1e-9


@pytest.mark.parametrize("norm", NORMS)
def test_one_dimensional_input(norm):
    net = chain_net([1, 4, 3, 2], seed=23)
    for target in (make_target(net), make_target(net, margin=(1, 0))):
        for domain in (None, make_domain(net, box=(-2.0, 0.5))):
            exact = exact_constant(net, target, norm, domain)
            bounds = all_bounds(net, norm, target, domain)
            assert_above(bounds, max(exact, vertex_max(net, target, norm, domain)), "exact value")
            assert lower_value(net, norm, target, domain) <= exact * (1 + REL) + ABS
            if norm != "2":  # in 1-D every q-norm is |f'|: ℓ∞ and ℓ1 give the same value
                # (for scalar targets; the network's constant is checked row by row)
                rows = [make_target(net, output=k) for k in range(2)] if target.is_network else [target]
                for row in rows:
                    exact = exact_constant(net, row, norm, domain)
                    assert exact == pytest.approx(exact_constant(net, row, "2", domain), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# 5. Smooth activations and residual blocks (references: vertex max, sampled gradients)
# ---------------------------------------------------------------------------------------------
SMOOTH = [Activation("tanh"), Activation("sigmoid"), Activation("elu", 0.5), Activation("elu", 1.0),
          Activation("softplus")]


@pytest.mark.parametrize("act", SMOOTH, ids=lambda a: f"{a.name}{a.alpha}")
@pytest.mark.parametrize("norm", NORMS)
def test_smooth_activations_moderate_preactivations(act, norm):
    # moderate weights: |z| stays well below the saturation range (see the audit notes)
    net = chain_net([2, 3, 3, 2], seed=31, activation=act, scale=0.8)
    for target, domain in [(make_target(net), None),
                           (make_target(net, margin=(0, 1)), make_domain(net, box=(-1.0, 0.5)))]:
        ref = max(vertex_max(net, target, norm, domain), sampled_max(net, target, norm, domain))
        bounds = all_bounds(net, norm, target, domain,
                            methods=("naive", "abs-product", "lp", "sdp+lp", "lipsdp", "exact-pop"),
                            levels={"lp": None, "sdp+lp": [3]})
        assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
        assert_above(bounds, ref, "vertex max / sampled gradient")
        assert lower_value(net, norm, target, domain) <= bounds[-1].value


@FAST
@given(
    seed=st.integers(0, 10_000),
    sizes=st.sampled_from([[2, 3, 2], [1, 3, 2, 1], [3, 2, 2, 2], [2, 4, 1]]),
    acts=st.lists(st.sampled_from(SMOOTH + [Activation("relu"), Activation("leaky_relu", 0.2)]),
                  min_size=2, max_size=2),
    norm=st.sampled_from(NORMS),
    eps=st.sampled_from([None, 0.1, 0.5]),
)
def test_mixed_activation_chains_property(seed, sizes, acts, norm, eps):
    """Different activations per layer (moderate pre-activations): bounds ≥ vertex max and
    sampled gradients; LipSDP uses the widest slope range of all layers."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        act = acts[i % 2] if i < len(sizes) - 2 else Activation("identity")
        layers.append(Dense(0.7 * rng.standard_normal((b, a)), 0.3 * rng.standard_normal(b), act))
    net = Network(tuple(layers))
    target = make_target(net)
    centre = 0.5 * rng.standard_normal(net.input_dim)
    domain = None if eps is None else make_domain(net, center=centre, eps=eps)
    ref = max(vertex_max(net, target, norm, domain), sampled_max(net, target, norm, domain, n=1000))
    bounds = all_bounds(net, norm, target, domain,
                        methods=("naive", "abs-product", "lp", "sdp", "sdp-ball", "lipsdp", "exact-pop"))
    assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
    assert_above(bounds, ref, "vertex max / sampled gradient")


@pytest.mark.parametrize("act", SMOOTH[:2], ids=lambda a: a.name)
def test_one_hidden_layer_smooth_l2_methods(act):
    net = chain_net([3, 4, 2], seed=37, activation=act)
    target = make_target(net)
    for domain in (None, make_domain(net, box=(0.0, 0.3))):
        ref = max(vertex_max(net, target, "2", domain), sampled_max(net, target, "2", domain))
        bounds = all_bounds(net, "2", target, domain, methods=("sdp", "sdp-ball", "lipsdp", "exact-pop"))
        assert {"sdp", "sdp-ball", "exact-pop"} <= {b.method for b in bounds}
        assert_above(bounds, ref, "vertex max / sampled gradient")


def _residual_net(seed: int, with_matrices: bool, act: Activation) -> Network:
    rng = np.random.default_rng(seed)
    pre = Dense(rng.standard_normal((2, 2)), rng.standard_normal(2), act)
    if with_matrices:  # y = σ(A x + B F(x)), F: 2 → 3
        inner = (Dense(rng.standard_normal((3, 2)), rng.standard_normal(3), act),)
        block = Residual(inner, rng.standard_normal((2, 2)), rng.standard_normal((2, 3)), act)
    else:  # y = σ(x + F(x)), F: 2 → 1 → 2
        inner = (Dense(rng.standard_normal((1, 2)), rng.standard_normal(1), act),
                 Dense(rng.standard_normal((2, 1)), rng.standard_normal(2), act))
        block = Residual(inner, activation=act)
    return Network((pre, block, Dense(rng.standard_normal((2, 2)), np.zeros(2))))


@pytest.mark.parametrize("with_matrices", [False, True])
@pytest.mark.parametrize("act", [Activation("relu"), Activation("leaky_relu", 0.1), Activation("tanh"),
                                 Activation("identity")], ids=lambda a: a.name)
def test_residual_blocks(with_matrices, act):
    net = _residual_net(3 if with_matrices else 4, with_matrices, act)
    for norm, target, domain in [
        ("inf", make_target(net), None),
        ("2", make_target(net, output=1), make_domain(net, box=(-0.3, 0.4))),
        ("1", make_target(net, margin=(0, 1)), make_domain(net, center=np.array([1.0, -1.0]), eps=0.2)),
    ]:
        ref = max(vertex_max(net, target, norm, domain), sampled_max(net, target, norm, domain))
        bounds = all_bounds(net, norm, target, domain,
                            methods=("naive", "abs-product", "lp", "sdp+lp", "exact-pop"),
                            levels={"lp": None, "sdp+lp": [2]})
        assert {b.method for b in bounds} >= {"naive", "abs-product", "lp", "exact-pop"}
        assert_above(bounds, ref, "vertex max / sampled gradient")
        assert lower_value(net, norm, target, domain) <= min(b.value for b in bounds) * (1 + REL) + ABS
    with pytest.raises(LipoptError):
        bound_chain(net, "2", ["lipsdp"])


# ---------------------------------------------------------------------------------------------
# 6. Early-stopped / loose solver settings still give valid certificates
# ---------------------------------------------------------------------------------------------
EARLY_STOP = [
    ("lp", {}, 1e-4),
    ("lp", {"lp": {"algorithm": "ipm"}}, None),
    ("lp", {"lp": {"basis": "krivine"}}, None),
    ("sdp", {"sdp": {"max_iter": 1}}, None),
    ("sdp", {"sdp": {"tol": 0.5}}, None),
    ("sdp", {"sdp": {"max_iter": 3, "solver": "conic"}}, None),
    ("sdp+lp", {"sdp": {"max_iter": 2}}, None),
    ("sdp+lp", {"sdp": {"sa_solver": "lagrangian", "lagrangian_rounds": 2}}, None),
    ("sdp-ball", {"sdp-ball": {"tol": 0.5}}, None),
    ("lipsdp", {"lipsdp": {"solver": "SCS",
                           "solver_options": {"max_iters": 30, "eps_abs": 1e-2, "eps_rel": 1e-2}}}, None),
]


@pytest.mark.parametrize("method,options,time_limit", EARLY_STOP, ids=lambda x: str(x))
def test_early_stopped_solvers_stay_sound(method, options, time_limit):
    certified = 0
    for seed, norm in [(1, "inf"), (2, "2"), (3, "1")]:
        net = chain_net([3, 5, 2], seed=seed)
        target = make_target(net)
        exact = exact_constant(net, target, norm)
        pop = exact_pop(net, target, norm)
        try:
            ch = bound_chain(net, norm, [method], target=target, options=options, time_limit=time_limit,
                             levels={method: [3]} if method in ("lp", "sdp+lp") else None)
        except LipoptError:
            continue
        for b in ch.bounds:
            if b.certified:
                certified += 1
                assert b.value >= max(exact, pop) * (1 - REL) - ABS, (method, options, b.value, pop)
    assert certified  # the settings must not make the test vacuous


# ---------------------------------------------------------------------------------------------
# 7. Methods that do not apply refuse with LipoptError (never another exception)
# ---------------------------------------------------------------------------------------------
def test_inapplicable_methods_refuse_cleanly():
    deep = chain_net([2, 3, 3, 1], seed=0)
    box = make_domain(deep, box=(0.0, 1.0))
    for norm, methods, domain in [("inf", ["sdp-ball"], None), ("2", ["sdp-ball"], None)]:
        with pytest.raises(LipoptError):
            bound_chain(deep, norm, methods, domain=domain)
    # a global ℓ2 method still bounds an ℓ1 constant (‖g‖∞ ≤ ‖g‖₂) and a local one (global ⊇ box):
    # the row is the converted value, says so, and stays above the exact constant
    target = make_target(deep)
    for norm, domain, words in [("1", None, "converted from an ℓ2 bound"), ("2", box, "ran globally")]:
        (row,) = bound_chain(deep, norm, ["lipsdp"], domain=domain).bounds
        assert row.certified and words in row.note
        assert row.value >= exact_constant(deep, target, norm, domain) * (1 - REL) - ABS
    tiny = Network.from_weights([np.ones((30, 1)), np.ones((1, 30))])
    with pytest.raises(LipoptError):
        bound_chain(tiny, "inf", ["exact-pop"], options={"exact-pop": {"max_vars": 10}})


# ---------------------------------------------------------------------------------------------
# Regressions found by the audit (each failed before its fix)
# ---------------------------------------------------------------------------------------------
def _true_local_constant(name: str, w1: float, b1: float, w2: float, box: tuple[float, float]) -> float:
    """sup |f'| of f = w2·σ(w1 x + b1) on the box, with 50-digit arithmetic (mpmath)."""
    import mpmath as mp

    mp.mp.dps = 50

    def deriv(z):
        if name == "tanh":
            return mp.sech(z) ** 2
        s = 1 / (1 + mp.exp(-z))
        return s * (1 - s) if name == "sigmoid" else s

    return float(max(abs(mp.mpf(w2) * w1) * deriv(mp.mpf(w1) * x + b1) for x in box))


@pytest.mark.parametrize(
    "name,b1,w2",
    [("tanh", 19.0, 1e16), ("sigmoid", -40.0, 1e17), ("softplus", -40.0, 1e17),
     ("tanh", 12.3, 1e10), ("sigmoid", -25.0, 1e10)],
)
def test_saturated_smooth_activations_are_not_pruned_or_rounded_down(name, b1, w2):
    """σ' in the tails (1 − tanh² cancels to 0 for |z| ≳ 19) used to make every method certify 0."""
    net = Network.from_weights([np.array([[1.0]]), np.array([[w2]])], [np.array([b1]), np.zeros(1)],
                               activation=name)
    box = (0.0, 0.01)
    truth = _true_local_constant(name, 1.0, b1, w2, box)
    chain = bound_chain(net, "inf", ["naive", "abs-product", "lp", "sdp", "exact-pop"],
                        target=make_target(net, output=0), domain=make_domain(net, box=box))
    for b in chain.bounds:
        assert b.certified and b.value >= truth, (b.method, b.level, b.value, truth)
        assert b.value <= truth * (1 + 1e-9)  # and tight: no slack blown up by the 1e16 weights


def test_lower_bound_is_a_secant_inside_the_box_at_a_kink():
    """f = −relu(x) + relu(x + 5) is constant on [0, 1]; the gradient formula at the edge x = 0
    belongs to the region outside the box and used to report 1."""
    net = Network.from_weights([np.array([[1.0], [1.0]]), np.array([[-1.0, 1.0]])],
                               [np.array([0.0, 5.0]), np.zeros(1)])
    dom = make_domain(net, box=(0.0, 1.0))
    for norm in ("inf", "2", "1"):
        low = bound_chain(net, norm, ["lower"], target=make_target(net, output=0), domain=dom).lower_bound
        assert low.value == 0.0


@pytest.mark.parametrize("act", [Activation("leaky_relu", 1.0), Activation("identity")])
def test_lipsdp_on_linear_activations(act):
    net = Network.from_weights([np.array([[1.0], [2.0], [-1.0]]), np.array([[1.0, 1.0, 1.0]])],
                               activation=act)
    (b,) = bound_chain(net, "2", ["lipsdp"], target=make_target(net, output=0)).bounds
    assert b.certified and 2.0 <= b.value <= 2.01


def test_exact_lipschitz_on_a_tiny_box_and_refusing_residual_nets():
    rng = np.random.default_rng(3)
    net = Network.from_weights([1e-6 * rng.standard_normal((5, 2)), 1e-6 * rng.standard_normal((2, 5))],
                               [1e-6 * rng.standard_normal(5), np.zeros(2)])
    x0 = 1e-6 * rng.standard_normal(2)
    dom = make_domain(net, center=x0, eps=1e-8)
    c = np.array([1.0, -1.0])
    z = net.pre_activations(np.vstack([dom.lo, dom.hi, x0]))[0]
    if np.all(np.sign(z) == np.sign(z[0])):  # every neuron stable on the box: one linear region
        grad = net.gradient(x0[None, :], c)[0]
        assert exact_lipschitz(net, c, "2", dom) == pytest.approx(np.linalg.norm(grad), rel=1e-9)
    res = Network((Residual((Dense(rng.standard_normal((3, 2)), rng.standard_normal(3), Activation("relu")),),
                            None, rng.standard_normal((2, 3)), Activation("relu")),
                   Dense(rng.standard_normal((1, 2)), np.zeros(1))))
    with pytest.raises(LipoptError, match="residual"):
        exact_lipschitz(res, np.ones(1), "inf")


def test_unknown_sdp_ball_option_is_a_clear_error():
    net = Network.from_weights([np.ones((3, 2)), np.ones((1, 3))])
    with pytest.raises(LipoptError, match="unknown sdp-ball option 'bogus'"):
        bound_chain(net, "2", ["sdp-ball"], options={"sdp-ball": {"bogus": 1}})
