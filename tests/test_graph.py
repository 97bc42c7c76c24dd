"""Sparsity graph, chordal extensions, clique trees and monomial assignment."""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipopt.graph as graph_mod
from lipopt.errors import LipoptError
from lipopt.graph import (
    CLIQUE_METHODS,
    CliqueStructure,
    assign_monomials,
    check_running_intersection,
    chordal_extension,
    clique_structure,
    sparsity_graph,
)
from lipopt.network import Network
from lipopt.polynomial import PAD, Polynomial
from lipopt.problems import build_problem, make_target


def random_poly(rng: np.random.Generator, n: int, m: int, deg: int) -> Polynomial:
    rows = []
    for _ in range(m):
        d = int(rng.integers(1, deg + 1))
        idx = np.sort(rng.choice(n, size=min(d, n), replace=False))
        rows.append(np.concatenate([np.full(deg - len(idx), PAD), idx]))
    return Polynomial.from_terms(np.array(rows), rng.standard_normal(m), n)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 15), m=st.integers(1, 20),
       deg=st.integers(1, 4))
def test_sparsity_graph_matches_definition(seed, n, m, deg):
    poly = random_poly(np.random.default_rng(seed), n, m, deg)
    G = sparsity_graph(poly)
    assert set(G.nodes) == set(range(n))  # isolated variables included
    expected = set()
    for row in poly.supports:
        v = sorted(set(row[row != PAD].tolist()))
        expected |= {(a, b) for i, a in enumerate(v) for b in v[i + 1:]}
    assert {tuple(sorted(e)) for e in G.edges} == expected


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 18), p=st.floats(0.05, 0.7),
       method=st.sampled_from(CLIQUE_METHODS))
def test_chordal_extension_properties(seed, n, p, method):
    G = nx.gnp_random_graph(n, p, seed=seed)
    H, cliques = chordal_extension(G, method)
    assert nx.is_chordal(H)
    assert all(H.has_edge(a, b) for a, b in G.edges)
    maximal = sorted(tuple(sorted(c)) for c in nx.chordal_graph_cliques(H))
    assert sorted(tuple(c.tolist()) for c in cliques) == maximal
    if method == "dense":
        assert len(cliques) == 1 and len(cliques[0]) == n


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 14), m=st.integers(1, 20),
       deg=st.integers(1, 3), method=st.sampled_from(CLIQUE_METHODS))
def test_clique_structure_tree_and_coverage(seed, n, m, deg, method):
    poly = random_poly(np.random.default_rng(seed), n, m, deg)
    cs = clique_structure(poly, method)
    assert check_running_intersection(cs)
    assert all(p < i for i, p in enumerate(cs.parent))  # parents listed first
    assert cs.n_vars == n and cs.n_cliques == len(cs.cliques)
    H, _ = chordal_extension(sparsity_graph(poly), method)
    assert cs.n_fill == H.number_of_edges() - sparsity_graph(poly).number_of_edges()
    where = assign_monomials(cs, poly)
    for row, ci in zip(poly.supports, where, strict=True):
        v = row[row != PAD]
        if len(v):
            assert set(v.tolist()) <= set(cs.cliques[ci].tolist())
        else:
            assert ci == -1
    d = cs.to_dict()
    assert {"n_vars", "n_edges", "n_fill", "n_cliques", "max_clique"} <= set(d)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 16), p=st.floats(0.1, 0.6),
       method=st.sampled_from(["min-degree", "min-fill", "mcs-m"]))
def test_clique_tree_is_maximum_weight_spanning_tree(seed, n, p, method):
    """Clique trees of a chordal graph are exactly its maximum-weight spanning trees of the
    clique intersection graph (weights = separator sizes)."""
    G = nx.gnp_random_graph(n, p, seed=seed)
    n_, e = graph_mod._graph_edges(G)
    cs = graph_mod._structure(n_, e, method)
    weight = sum(len(cs.separator(i)) for i in range(cs.n_cliques))
    K = nx.Graph()
    K.add_nodes_from(range(cs.n_cliques))
    for i in range(cs.n_cliques):
        for j in range(i + 1, cs.n_cliques):
            K.add_edge(i, j, weight=len(np.intersect1d(cs.cliques[i], cs.cliques[j])))
    best = sum(d["weight"] for *_, d in nx.maximum_spanning_tree(K).edges(data=True))
    assert weight == best


def test_set_engine_agrees_with_bitsets(monkeypatch):
    rng = np.random.default_rng(0)
    for trial in range(30):
        G = nx.gnp_random_graph(int(rng.integers(2, 20)), float(rng.uniform(0.1, 0.6)), seed=trial)
        n, e = graph_mod._graph_edges(G)
        for method in ("min-degree", "min-fill"):
            monkeypatch.setattr(graph_mod, "BITSET_MAX_NODES", 10**9)
            a = graph_mod._structure(n, e, method)
            monkeypatch.setattr(graph_mod, "BITSET_MAX_NODES", 0)
            b = graph_mod._structure(n, e, method)
            assert check_running_intersection(b)
            if method == "min-degree":
                assert a.n_fill == b.n_fill
                assert sorted(map(tuple, a.cliques)) == sorted(map(tuple, b.cliques))


def test_running_intersection_detects_violation():
    good = CliqueStructure(
        [np.array([0, 1]), np.array([1, 2]), np.array([2, 3])], np.array([-1, 0, 1]),
        4, 3, 0, "manual", np.array([0, 0, 1, 2]), np.arange(4),
    )
    assert check_running_intersection(good)
    bad = CliqueStructure(
        [np.array([0, 1]), np.array([1, 2]), np.array([2, 0])], np.array([-1, 0, 1]),
        3, 3, 0, "manual", np.array([0, 0, 1]), np.arange(3),
    )
    assert not check_running_intersection(bad)


def test_uncovered_monomial_raises():
    # cliques of a path 0-1-2 cannot hold the monomial u0 u2
    path = Polynomial.from_terms(np.array([[0, 1], [1, 2]]), np.array([1.0, 1.0]), 3)
    cs = clique_structure(path)
    tri = Polynomial.from_terms(np.array([[0, 2], [0, 1]]), np.array([1.0, 2.0]), 3)
    with pytest.raises(LipoptError, match="not covered by any clique"):
        assign_monomials(cs, tri)


def test_unknown_method():
    poly = Polynomial.from_terms(np.array([[0, 1]]), np.array([1.0]), 2)
    with pytest.raises(LipoptError, match="unknown clique method"):
        clique_structure(poly, "magic")


def test_one_hidden_layer_structure_and_speed():
    """Dense 80-80-1 ℓ∞: complete bipartite graph; min-degree gives 80 cliques {t_i} ∪ S."""
    rng = np.random.default_rng(0)
    net = Network.from_weights([rng.standard_normal((80, 80)), rng.standard_normal((1, 80))])
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    t0 = time.perf_counter()
    cs = clique_structure(pop.polynomial, "min-degree")
    assert time.perf_counter() - t0 < 2.0
    assert cs.n_cliques == 80 and cs.max_clique == 81 and cs.n_edges == 6400
    assert cs.n_fill == 80 * 79 // 2
    assert check_running_intersection(cs)
    cs2 = clique_structure(pop.polynomial, "min-fill")
    assert cs2.max_clique == 81


def test_large_complete_bipartite_is_fast():
    """K_{784,500} (the CertDNN 784-500-1 graph): networkx's treewidth heuristics need 10-20 s,
    the bitset elimination well under a second."""
    a, b = 784, 500
    i, j = np.meshgrid(np.arange(a), np.arange(a, a + b), indexing="ij")
    edges = np.column_stack([i.ravel(), j.ravel()]).astype(np.int64)
    for method in ("min-degree", "min-fill"):
        t0 = time.perf_counter()
        cs = graph_mod._structure(a + b, edges, method)
        assert time.perf_counter() - t0 < 5.0
        assert cs.n_cliques == a and cs.max_clique == b + 1
        assert cs.n_fill == b * (b - 1) // 2


def test_banded_network_small_cliques():
    rng = np.random.default_rng(1)
    n = 60
    i, j = np.indices((n, n))
    W1 = rng.standard_normal((n, n)) * (np.abs(i - j) <= 2)
    net = Network.from_weights([W1, rng.standard_normal((1, n))])
    pop = build_problem(net, "inf", make_target(net, output=0)).pops[0]
    for method in ("min-degree", "min-fill", "mcs-m"):
        cs = clique_structure(pop.polynomial, method)
        assert check_running_intersection(cs)
        assert cs.max_clique <= 12
        assign_monomials(cs, pop.polynomial)


def test_draw(tmp_path):
    pytest.importorskip("matplotlib")
    poly = random_poly(np.random.default_rng(0), 8, 10, 2)
    cs = clique_structure(poly)
    graph_mod.draw(cs, tmp_path / "tree.png")
    graph_mod.draw(sparsity_graph(poly), tmp_path / "graph.png")
    assert (tmp_path / "tree.png").stat().st_size > 0
    assert (tmp_path / "graph.png").stat().st_size > 0
