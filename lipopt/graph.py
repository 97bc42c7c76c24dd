"""Correlative sparsity: sparsity graph, chordal extension, maximal cliques and a clique tree.

The **sparsity graph** of a polynomial ``p(u) = Σ_S p_S u^S`` has one node per variable and an
edge ``{i, j}`` whenever ``i`` and ``j`` occur together in a monomial. A sparse relaxation works
with pseudo-moments supported on the maximal cliques ``C_1 … C_m`` of a *chordal extension*
``H ⊇ G``; two facts make that sound and tight:

* every monomial's variable set is a clique of ``G ⊆ H``, hence lies inside some maximal clique
  (:func:`assign_monomials` finds it, and refuses rather than drop a monomial that lies in none);
* the maximal cliques of a chordal graph admit a **clique tree** with the *running intersection
  property* (RIP): for every variable, the cliques containing it form a subtree. Local
  distributions on the cliques that agree on the separators ``C_i ∩ C_parent(i)`` then glue into
  a global one (junction tree), which is why the sparse hierarchy is exact at level
  ``k = max |C_i|``.

Chordal extensions come from greedy **elimination orderings**: eliminating ``v`` makes its
current neighbourhood a clique (the *fill*); the bag ``B_v = {v} ∪ N⁺(v)`` (``v`` and its
neighbours eliminated after it) is a clique of the filled graph ``H`` and every maximal clique of
``H`` is such a bag. The *elimination tree* (parent of ``B_v`` = bag of the first-eliminated
vertex of ``N⁺(v)``) satisfies RIP; contracting the edges where a bag is contained in its child
(``|B_child| = |B_parent| + 1``) leaves exactly the maximal cliques, still a clique tree (every
clique tree of a chordal graph is a maximum-weight spanning tree of its clique intersection
graph, weighted by separator sizes).

Heuristics: ``min-degree`` and ``min-fill`` (greedy, implemented on numpy bitsets — networkx's
``treewidth_min_degree`` needs ~10 s on the complete bipartite ``K_{784,500}``, this ~0.1 s),
``mcs-m`` (minimal triangulation via :func:`networkx.complete_to_chordal_graph`; slow on graphs
with thousands of nodes) and ``dense`` (one clique with every variable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from .errors import LipoptError
from .polynomial import PAD, Polynomial

CLIQUE_METHODS = ("min-degree", "min-fill", "mcs-m", "dense")
#: graphs with more nodes than this use the (slower) set-based elimination instead of bitsets
BITSET_MAX_NODES = 20_000


# ---------------------------------------------------------------------------------------------
# Sparsity graph
# ---------------------------------------------------------------------------------------------
def _edge_array(poly: Polynomial) -> np.ndarray:
    """Unique edges ``(i, j)``, ``i < j``, of the sparsity graph as an ``(E, 2)`` int64 array."""
    s = np.asarray(poly.supports, dtype=np.int64)
    width = s.shape[1]
    pairs = []
    for a in range(width):
        for b in range(a + 1, width):
            i, j = s[:, a], s[:, b]
            ok = (i != PAD) & (j != PAD) & (i != j)
            if ok.any():
                lo, hi = np.minimum(i[ok], j[ok]), np.maximum(i[ok], j[ok])
                pairs.append(lo * max(poly.n_vars, 1) + hi)
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    keys = np.unique(np.concatenate(pairs))
    n = max(poly.n_vars, 1)
    return np.column_stack([keys // n, keys % n])


def sparsity_graph(poly: Polynomial) -> nx.Graph:
    """Node per variable ``0 … n−1`` (isolated ones included); edge when two share a monomial."""
    G = nx.Graph()
    G.add_nodes_from(range(poly.n_vars))
    G.add_edges_from(map(tuple, _edge_array(poly).tolist()))
    return G


def _graph_edges(G: nx.Graph) -> tuple[int, np.ndarray]:
    """``(n, edges)`` of a graph whose nodes are ``0 … n−1``."""
    n = G.number_of_nodes()
    if set(G.nodes) != set(range(n)):
        raise LipoptError("the sparsity graph's nodes must be the integers 0 … n−1")
    e = np.array([(min(a, b), max(a, b)) for a, b in G.edges if a != b], dtype=np.int64)
    return n, e.reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# Elimination engines
# ---------------------------------------------------------------------------------------------
_ONE = np.uint64(1)


def _bit(idx: np.ndarray) -> np.ndarray:
    return np.left_shift(_ONE, (np.asarray(idx) & 63).astype(np.uint64))


def _popcount_rows(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a).sum(axis=-1, dtype=np.int64)


def _bits_to_idx(row: np.ndarray, n: int) -> np.ndarray:
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")
    return np.flatnonzero(bits[:n])


def _eliminate_bitset(
    n: int, edges: np.ndarray, method: str, order: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Greedy elimination on a bitset adjacency matrix (``n × ⌈n/64⌉`` uint64).

    Returns the elimination order, the later-neighbour sets ``N⁺(v)`` (indexed by ``v``) and the
    number of fill edges. ``min-fill`` keeps ``fill(v) = C(d_v, 2) − e(N(v))`` up to date: a step
    that adds no fill changes only the neighbours ``a`` of ``v``, by ``(d_v − 1) − (d_a − 1)``;
    otherwise the neighbours and the vertices adjacent to ≥ 2 endpoints of new edges are
    recomputed exactly.
    """
    W = max(1, (n + 63) // 64)
    adj = np.zeros((n, W), dtype=np.uint64)
    if len(edges):
        rows = np.concatenate([edges[:, 0], edges[:, 1]])
        cols = np.concatenate([edges[:, 1], edges[:, 0]])
        np.bitwise_or.at(adj, (rows, cols >> 6), _bit(cols))
    deg = _popcount_rows(adj)
    alive = np.ones(n, dtype=bool)
    later: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
    elim = np.empty(n, dtype=np.int64)
    n_fill = 0
    big = np.iinfo(np.int64).max

    def edges_within(v: int) -> int:
        nb = _bits_to_idx(adj[v], n)
        if len(nb) < 2:
            return 0
        return int(_popcount_rows(adj[nb] & adj[v]).sum()) // 2

    fill = None
    if method == "min-fill" and order is None:
        fill = np.array([d * (d - 1) // 2 - edges_within(v) for v, d in enumerate(deg)], np.int64)

    for step in range(n):
        if order is not None:
            v = int(order[step])
        elif fill is not None:
            v = int(np.argmin(np.where(alive, fill * (n + 1) + deg, big)))
        else:
            v = int(np.argmin(np.where(alive, deg, big)))
        elim[step] = v
        row = adj[v].copy()
        nb = _bits_to_idx(row, n)
        later[v] = nb
        alive[v] = False
        adj[v] = 0
        d = len(nb)
        if d == 0:
            continue
        sub = adj[nb]
        new = row[None, :] & ~sub
        new[np.arange(d), nb >> 6] &= ~_bit(nb)
        new_deg = _popcount_rows(new)
        added = int(new_deg.sum()) // 2
        n_fill += added
        sub |= new
        sub[:, v >> 6] &= ~_bit(v)
        adj[nb] = sub
        old_deg = deg[nb].copy()
        deg[nb] = old_deg + new_deg - 1
        if fill is None:
            continue
        if added == 0:
            fill[nb] += (d - 1) - (old_deg - 1)
            continue
        ends = nb[new_deg > 0]
        emask = np.zeros(W, dtype=np.uint64)
        np.bitwise_or.at(emask, ends >> 6, _bit(ends))
        cand = np.flatnonzero(alive & (_popcount_rows(adj & emask) >= 2))
        for w in np.union1d(cand, nb):
            dw = int(deg[w])
            fill[w] = dw * (dw - 1) // 2 - edges_within(int(w))
    return elim, later, n_fill


def _eliminate_sets(
    n: int, edges: np.ndarray, method: str, order: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Set-based elimination with a lazy heap, for very large sparse graphs (same contract as
    the bitset engine; cost grows with the square of the degrees, not with ``n²``)."""
    import heapq

    adj: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges.tolist():
        adj[a].add(b)
        adj[b].add(a)
    alive = np.ones(n, dtype=bool)
    later: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
    elim = np.empty(n, dtype=np.int64)
    n_fill = 0
    min_fill = method == "min-fill" and order is None

    def score_of(v: int) -> int:
        nb = adj[v]
        if not min_fill:
            return len(nb)
        e = sum(len(adj[a] & nb) for a in nb) // 2
        return (len(nb) * (len(nb) - 1) // 2 - e) * (n + 1) + len(nb)

    score = [score_of(v) for v in range(n)]
    heap = [(sc, v) for v, sc in enumerate(score)]
    heapq.heapify(heap)
    for step in range(n):
        if order is not None:
            v = int(order[step])
        else:
            while True:
                sc, v = heapq.heappop(heap)
                if alive[v] and sc == score[v]:
                    break
        elim[step] = v
        nb = adj[v]
        later[v] = np.array(sorted(nb), dtype=np.int64)
        alive[v] = False
        for a in nb:
            before = len(adj[a])
            adj[a] |= nb
            adj[a].discard(a)
            adj[a].discard(v)
            n_fill += len(adj[a]) - before + 1
        adj[v] = set()
        if order is not None:
            continue
        touched = set(nb)
        if min_fill:
            for a in nb:
                touched |= adj[a]
        for w in touched:
            if alive[w]:
                sc = score_of(w)
                if sc != score[w]:
                    score[w] = sc
                    heapq.heappush(heap, (sc, w))
    # every fill edge was counted from both endpoints
    return elim, later, n_fill // 2


def _eliminate(n: int, edges: np.ndarray, method: str, order: np.ndarray | None = None):
    engine = _eliminate_bitset if n <= BITSET_MAX_NODES else _eliminate_sets
    return engine(n, edges, method, order)


# ---------------------------------------------------------------------------------------------
# Clique structure
# ---------------------------------------------------------------------------------------------
@dataclass
class CliqueStructure:
    """Maximal cliques of a chordal extension and a clique tree with running intersection.

    ``cliques[i]`` is a sorted int64 array of variables; ``parent[i]`` is the parent clique in
    the tree (−1 for a root; one root per connected component); cliques are listed so that a
    parent precedes its children. ``home[v]`` is a clique containing variable ``v`` and every
    monomial whose first-eliminated variable is ``v`` (see :func:`assign_monomials`).
    """

    cliques: list[np.ndarray]
    parent: np.ndarray
    n_vars: int
    n_edges: int
    n_fill: int
    method: str
    home: np.ndarray = field(repr=False)
    rank: np.ndarray = field(repr=False)  # elimination position of each variable

    @property
    def n_cliques(self) -> int:
        return len(self.cliques)

    @property
    def max_clique(self) -> int:
        return max((len(c) for c in self.cliques), default=0)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(c) for c in self.cliques], dtype=np.int64)

    def separator(self, i: int) -> np.ndarray:
        """``C_i ∩ C_parent(i)`` (empty for a root)."""
        p = int(self.parent[i])
        if p < 0:
            return np.zeros(0, dtype=np.int64)
        return np.intersect1d(self.cliques[i], self.cliques[p], assume_unique=True)

    def to_dict(self) -> dict:
        sizes = self.sizes
        return {
            "method": self.method,
            "n_vars": int(self.n_vars),
            "n_edges": int(self.n_edges),
            "n_fill": int(self.n_fill),
            "n_cliques": int(self.n_cliques),
            "max_clique": int(self.max_clique),
            "mean_clique": float(sizes.mean()) if len(sizes) else 0.0,
        }


def _structure_from_elimination(
    n: int, n_edges: int, elim: np.ndarray, later: list[np.ndarray], n_fill: int, method: str
) -> CliqueStructure:
    """Bags ``{v} ∪ N⁺(v)``, elimination tree, contraction of non-maximal bags (module doc)."""
    rank = np.empty(n, dtype=np.int64)
    rank[elim] = np.arange(n)
    size = np.array([len(later[v]) + 1 for v in range(n)], dtype=np.int64)
    par = np.full(n, -1, dtype=np.int64)
    for v in range(n):
        if len(later[v]):
            par[v] = later[v][np.argmin(rank[later[v]])]
    # absorb a bag into one child that contains it (|B_child| = |B_parent| + 1)
    rep = np.arange(n)
    for v in elim:  # children before parents
        p = par[v]
        if p >= 0 and rep[p] == p and size[v] == size[p] + 1:
            rep[p] = v

    def find(x: int) -> int:
        root = x
        while rep[root] != root:
            root = rep[root]
        while rep[x] != root:
            rep[x], x = root, rep[x]
        return root

    group = np.array([find(v) for v in range(n)], dtype=np.int64)
    keep = np.flatnonzero(group == np.arange(n))
    tree_par = {int(g): -1 for g in keep}
    for v in range(n):
        p = par[v]
        if p >= 0 and group[v] != group[p]:
            tree_par[int(group[v])] = int(group[p])
    # order parents before children: a group's last-eliminated member is eliminated after every
    # member of its descendant groups (elimination-tree ancestors are eliminated later)
    top = np.full(n, -1, dtype=np.int64)
    np.maximum.at(top, group, rank)
    keep = keep[np.argsort(-top[keep], kind="stable")]
    index = {int(g): i for i, g in enumerate(keep)}
    cliques = [np.sort(np.concatenate([[g], later[g]])).astype(np.int64) for g in keep]
    parent = np.array([index[tree_par[int(g)]] if tree_par[int(g)] >= 0 else -1 for g in keep],
                      dtype=np.int64)
    home = np.array([index[int(g)] for g in group], dtype=np.int64)
    return CliqueStructure(cliques, parent, n, n_edges, int(n_fill), method, home, rank)


def _dense_structure(n: int, n_edges: int) -> CliqueStructure:
    n_fill = n * (n - 1) // 2 - n_edges
    return CliqueStructure(
        [np.arange(n, dtype=np.int64)] if n else [], np.full(1 if n else 0, -1, dtype=np.int64),
        n, n_edges, n_fill, "dense", np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64),
    )


def _structure(n: int, edges: np.ndarray, method: str) -> CliqueStructure:
    if method not in CLIQUE_METHODS:
        raise LipoptError(
            f"unknown clique method {method!r}; choose one of: {', '.join(CLIQUE_METHODS)}"
        )
    n_edges = len(edges)
    if method == "dense":
        return _dense_structure(n, n_edges)
    if method == "mcs-m":
        G = nx.Graph()
        G.add_nodes_from(range(n))
        G.add_edges_from(map(tuple, edges.tolist()))
        H, _ = nx.complete_to_chordal_graph(G)
        _, h_edges = _graph_edges(H)
        # min-fill on a chordal graph always finds a simplicial vertex: a perfect elimination
        elim, later, extra = _eliminate(n, h_edges, "min-fill")
        if extra:
            raise LipoptError("internal error: MCS-M returned a graph that is not chordal")
        return _structure_from_elimination(
            n, n_edges, elim, later, len(h_edges) - n_edges, method
        )
    elim, later, n_fill = _eliminate(n, edges, method)
    return _structure_from_elimination(n, n_edges, elim, later, n_fill, method)


def clique_structure(poly: Polynomial, method: str = "min-degree") -> CliqueStructure:
    """Cliques and clique tree of a chordal extension of ``poly``'s sparsity graph."""
    return _structure(poly.n_vars, _edge_array(poly), method)


def chordal_extension(
    G: nx.Graph, method: str = "min-degree"
) -> tuple[nx.Graph, list[np.ndarray]]:
    """Chordal graph ``H ⊇ G`` (nodes ``0 … n−1``) and its maximal cliques (sorted arrays)."""
    n, edges = _graph_edges(G)
    cs = _structure(n, edges, method)
    H = nx.Graph()
    H.add_nodes_from(range(n))
    for c in cs.cliques:
        if len(c) > 1:
            i, j = np.triu_indices(len(c), 1)
            H.add_edges_from(zip(c[i].tolist(), c[j].tolist(), strict=True))
    return H, cs.cliques


def check_running_intersection(cs: CliqueStructure) -> bool:
    """True iff ``parent`` is a forest and, for every variable, its cliques form a subtree.

    In a forest the cliques containing ``v`` form a subtree iff exactly one of them has a parent
    that does not contain ``v`` (or no parent).
    """
    m = cs.n_cliques
    par = np.asarray(cs.parent)
    # forest: following parents never cycles
    for i in range(m):
        seen, j = set(), i
        while j >= 0:
            if j in seen:
                return False
            seen.add(j)
            j = int(par[j])
    tops = np.zeros(cs.n_vars, dtype=np.int64)
    count = np.zeros(cs.n_vars, dtype=np.int64)
    for i, c in enumerate(cs.cliques):
        count[c] += 1
        p = int(par[i])
        if p < 0:
            tops[c] += 1
        else:
            tops[np.setdiff1d(c, cs.cliques[p], assume_unique=True)] += 1
    return bool(np.all(tops[count > 0] == 1))


def _membership_keys(cs: CliqueStructure) -> np.ndarray:
    """Sorted keys ``clique · n + var`` of all (clique, variable) memberships."""
    n = max(cs.n_vars, 1)
    if not cs.cliques:
        return np.zeros(0, dtype=np.int64)
    ids = np.repeat(np.arange(cs.n_cliques, dtype=np.int64), cs.sizes)
    return np.sort(ids * n + np.concatenate(cs.cliques))


def assign_monomials(cs: CliqueStructure, poly: Polynomial) -> np.ndarray:
    """Index of a clique containing each monomial of ``poly`` (−1 for the constant monomial).

    Fast path: a monomial of the sparsity graph lies in the bag of its first-eliminated variable
    (``home``). Every assignment is verified; monomials that fail are searched among all cliques
    containing their variables, and a monomial contained in no clique raises
    :class:`LipoptError` — a relaxation that dropped it would not be a bound.
    """
    s = np.asarray(poly.supports, dtype=np.int64)
    if poly.n_vars > cs.n_vars:
        raise LipoptError(
            f"the polynomial has {poly.n_vars} variables but the clique structure {cs.n_vars}"
        )
    m = len(s)
    out = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return out
    used = s != PAD
    nonconst = used.any(axis=1)
    if not nonconst.any():
        return out
    big = np.iinfo(np.int64).max
    rk = np.where(used, cs.rank[np.where(used, s, 0)], big)
    first = s[np.arange(m), np.argmin(rk, axis=1)]
    out[nonconst] = cs.home[first[nonconst]]
    keys = _membership_keys(cs)
    n = max(cs.n_vars, 1)

    def contained(rows: np.ndarray, clique: np.ndarray) -> np.ndarray:
        q = clique[:, None] * n + np.where(used[rows], s[rows], 0)
        pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        return np.all((keys[pos] == q) | ~used[rows], axis=1)

    rows = np.flatnonzero(nonconst)
    bad = rows[~contained(rows, out[rows])]
    if len(bad):
        # slow path: try every clique holding the monomial's first variable
        var_cliques: dict[int, list[int]] = {}
        for i, c in enumerate(cs.cliques):
            for v in c.tolist():
                var_cliques.setdefault(v, []).append(i)
        for r in bad.tolist():
            found = -1
            for cand in var_cliques.get(int(first[r]), []):
                if contained(np.array([r]), np.array([cand]))[0]:
                    found = cand
                    break
            if found < 0:
                mono = [int(x) for x in s[r][s[r] != PAD]]
                raise LipoptError(
                    f"monomial {mono} (coefficient {poly.coef[r]:.6g}) is not covered by any "
                    "clique: the relaxation would drop it; build the cliques from this "
                    "polynomial (clique_structure) or use the dense method"
                )
            out[r] = found
    return out


# ---------------------------------------------------------------------------------------------
# Drawing (optional)
# ---------------------------------------------------------------------------------------------
def draw(obj: CliqueStructure | nx.Graph, path: str | Path, *, labels: list[str] | None = None):
    """Save a picture: a graph (nodes coloured by degree) or a clique tree (node = clique,
    size ∝ clique size, edges labelled with separator sizes). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise LipoptError("drawing needs matplotlib: pip install matplotlib") from exc
    fig, ax = plt.subplots(figsize=(7, 6))
    if isinstance(obj, CliqueStructure):
        T = nx.Graph()
        T.add_nodes_from(range(obj.n_cliques))
        elabels = {}
        for i, p in enumerate(obj.parent.tolist()):
            if p >= 0:
                T.add_edge(i, p)
                elabels[(i, p)] = len(obj.separator(i))
        pos = nx.spring_layout(T, seed=0)
        nx.draw_networkx(
            T, pos, ax=ax, node_size=[40 + 20 * len(c) for c in obj.cliques],
            labels={i: str(len(c)) for i, c in enumerate(obj.cliques)}, font_size=7,
        )
        nx.draw_networkx_edge_labels(T, pos, edge_labels=elabels, ax=ax, font_size=6)
        ax.set_title(f"clique tree ({obj.method}): {obj.n_cliques} cliques, max {obj.max_clique}")
    else:
        pos = nx.spring_layout(obj, seed=0)
        lab = {i: labels[i] for i in obj.nodes} if labels else None
        nx.draw_networkx(obj, pos, ax=ax, node_size=60, labels=lab, with_labels=bool(lab),
                         font_size=6, node_color=[obj.degree(v) for v in obj.nodes])
        ax.set_title(f"sparsity graph: {obj.number_of_nodes()} nodes, {obj.number_of_edges()} edges")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
