r"""Branch and bound on activation patterns: certified upper and real lower bounds that meet at the
exact Lipschitz constant of a piecewise-linear network (DESIGN §4b).

**Nodes.** A node is an input box over ``(x, τ)`` and a split per hidden neuron (``+1``: ``z ≥ 0``,
``−1``: ``z ≤ 0``, ``0``: free). Its region is the set of pairs (point, pattern) that satisfy the
splits. Per node: pre-activation bounds under the splits (:func:`lipopt.reach.split_bounds`,
intersected with the parent's), slopes, backward intervals, a cheap interval bound, then the
lifted LP with reachability (:mod:`lipopt.hierarchy.lifted`), certified from its dual. A node all
of whose kinked neurons are fixed (a *leaf*) has a known Jacobian: its value is computed exactly
(rounded up) and a point in the interior of its region is searched (Chebyshev LP); a point
whose pattern is verified by a forward pass with rigorous error bounds gives the lower bound.
Best-first on the largest upper bound; a node is discarded when its bound is within the gap
tolerance of the best lower bound (its bound is remembered: the final upper bound is the max
over open, discarded and closed nodes), or when it is **proven** empty: an empty pre-activation
interval, or a Farkas ray of the LP verified in floating point with outward rounding
(:func:`lipopt.solvers.box_lp.proves_infeasible`) — a solver's "infeasible" alone never prunes.

**Which points count.** The constant is ``sup ‖∇f(x)‖`` over points where f is differentiable
(for a full-dimensional box this is the Lipschitz constant on it; for a degenerate box it is the
largest gradient norm at its points, as in :func:`lipopt.exact.exact_lipschitz`). Call x
*regular* if every pre-activation is either non-zero at x or identically zero near x; regular
points are open and dense, and the gradient at any differentiable point equals the gradient at
nearby regular points. At a regular point the *canonical* pattern (``s_j = 1`` iff ``z_j(x) ≥ 0``)
gives the true gradient (a neuron that is identically zero nearby contributes ``s_j·g_j·∇z_j =
0`` whatever ``s_j``). The canonical pattern follows exactly one path of the tree. Hence a node
may be discarded when (i) it is empty, or (ii) it has a neuron split *inactive* whose lower bound
is proven ``≥ 0`` (then ``z_j = 0`` on the node, so no canonical pattern of a regular point goes
there), and a neuron with ``zl ≥ 0`` may take slope 1, one with ``zu ≤ 0`` the low slope.

**Global constant (homogenization).** For positively homogeneous activations (ReLU, leaky ReLU,
identity), write ``x = x'/τ`` with ``τ > 0`` and scale every pre-activation by τ:
``z'_l = W_l a'_{l−1} + b_l τ`` with ``a'_0 = x'`` gives ``z'_l = τ z_l(x)`` and ``a'_l = τ a_l(x)``
by induction (``σ(τz) = τσ(z)``), so the pattern of ``(x', τ)`` is the pattern of x and the
Jacobian with respect to x is the same matrix. Every ``x ∈ ℝⁿ`` is reached with
``max(‖x'‖∞, τ) = 1``: ``τ = 1, x' = x`` if ``‖x‖∞ ≤ 1``, else ``x' = x/‖x‖∞, τ = 1/‖x‖∞``. So the
constant over ℝⁿ is at most the maximum over the box ``Q = [−1,1]ⁿ × [0,1]`` (the root), and at
most the maximum over the ``2n + 1`` faces ``{τ = 1}`` and ``{x'_i = ±1}`` of Q (the first branching;
a face is a box with one coordinate fixed). ``τ = 0`` only adds closure points (and patterns of
the bias-free network), which can only raise the bound. The root Q contains the origin, where
every pattern is "reachable", so reachability only bites on the faces. The faces may be split at any
depth (``faces_depth``): a neuron split leaves the node's box equal to Q, so the faces of a
split node are faces of Q restricted to its pattern; wide inputs defer them (2n + 1 children
each, while reachability barely bites on a face of a wide box). A real point for the
lower bound is ``x = x'/τ`` (or ``x'`` scaled up when ``τ = 0``), checked by a forward pass.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EPS, round_up
from .hierarchy.lifted import LiftedTemplate, NodeData
from .network import Network
from .progress import SILENT, Progress
from .quantity import Quantity
from .reach import (
    Chain,
    backward_bounds,
    empty_nodes,
    pattern_products,
    slopes,
    spectral_bounds,
    split_bounds,
    tau_only_conflicts,
    verified_patterns,
)
from .registry import Budget
from .results import Status
from .solvers._highs_box import HighsBox
from .solvers.box_lp import BoxLP, dual_bound, proves_infeasible

BRANCHING = ("score", "sequential")
SIGN_VECTORS_MAX_OUTPUTS = 5  # ℓ1 vector quantity: one subproblem per sign vector up to 2^4
BATCH = 32  # nodes bounded together (one CROWN pass)
POP = 8  # nodes taken from the queue together (best first)


@dataclass(frozen=True)
class BabSettings:
    """``gap``: relative tolerance; ``node_limit``: nodes bounded at most (``None``: no limit;
    0: the roots only); ``lp``: bound nodes by the lifted LP (else intervals only); ``faces``:
    split the global root into the faces of Q first; ``seed_lower``: start from sampled points;
    ``threads``: HiGHS threads; ``seed``: the sampling seed."""

    gap: float = 1e-6
    node_limit: int | None = None
    branching: str = "score"
    lp: bool = True
    faces: bool = True
    seed_lower: bool = True
    faces_depth: int = 0
    threads: int = 1
    seed: int = 0


@dataclass
class BabOutcome:
    """Certified ``upper``, ``lower`` from verified real points, how the search ended."""

    upper: float
    lower: float
    certified: bool
    status: Status
    nodes: int
    open_nodes: int
    lp_solves: int
    infeasible: int
    max_depth: int
    lp_size: dict
    lower_point: np.ndarray | None = field(default=None, repr=False)
    note: str = ""

    @property
    def gap(self) -> float:
        return max(0.0, (self.upper - self.lower) / self.upper) if self.upper > 0 else 0.0


@dataclass
class _Sub:
    """One subproblem: ``R`` backward copies with output weights ``c_r ∈ [c_lo[r], c_hi[r]]``
    (``(R, m)``), an objective kind, and how a leaf (fixed pattern) is valued."""

    label: str
    c_lo: np.ndarray
    c_hi: np.ndarray
    objective: str  # sum-abs | sum-square | max-abs | linear+ | spectral
    leaf: Quantity
    template: LiftedTemplate | None = None
    solver: HighsBox | None = None
    reach_template: LiftedTemplate | None = None  # the forward part alone: a cheap emptiness test
    reach_solver: HighsBox | None = None
    scale: float = 1.0  # spectral: bounds of ‖UᵀJ‖ times 1/σ_min(U) bound ‖J‖
    rotated: bool = False  # spectral: the copies are the rows of Uᵀ (top singular direction first)


@dataclass
class _Node:
    """A node: box over ``(x, τ)``, flat split over all hidden neurons; once bounded, flat
    pre-activation bounds ``z``, slope bounds ``s``, backward bounds ``g`` (at the hidden
    neurons) and ``g0`` (at the inputs). ``prev``: the parent's ``z`` (intersected)."""

    sub: int
    lo: np.ndarray
    hi: np.ndarray
    split: np.ndarray
    upper: float
    depth: int = 0
    prev: tuple | None = None
    z: tuple | None = None
    s: tuple | None = None
    g: tuple | None = None
    g0: tuple | None = None
    basis: object | None = None
    reach_basis: object | None = None
    duals: dict | None = None  # LP multipliers: the parent's until this node's LP is solved
    lp_done: bool = False
    faces_pending: bool = False


def _objective_kind(norm: str) -> str:
    return {"inf": "sum-abs", "2": "sum-square", "1": "max-abs"}[norm]


def make_subproblems(quantity: Quantity) -> list[_Sub]:
    """The scalar subproblems whose maximum is the quantity (see :class:`~lipopt.quantity.Quantity`).

    Scalar rows and ℓ∞→ℓ∞: one per row. ℓ1→ℓ1: ``‖J‖_{1→1} = max_i max_{c∈{±1}^m} (Jᵀc)_i``, one
    subproblem per sign vector (``c`` and ``−c`` give the same ``|·|``: ``c_0 = +1``) for few
    outputs, else ``c ∈ [−1, 1]^m`` with the objectives ``g_{0,i}``. ℓ2→ℓ2: all rows at once (the
    LP bounds the Frobenius norm) with the interval Jacobian's spectral bound; exact at leaves."""
    norm, C = quantity.norm, quantity.C
    m = C.shape[1]
    if not quantity.vector or norm == "inf":
        return [_Sub(f"row {k}", c[None], c[None].copy(), _objective_kind(norm),
                     Quantity(norm, c[None], False)) for k, c in enumerate(C)]
    if norm == "1" and m <= SIGN_VECTORS_MAX_OUTPUTS:
        grid = np.meshgrid(*[[1.0, -1.0]] * (m - 1), indexing="ij")
        signs = np.array(grid).reshape(m - 1, -1).T if m > 1 else np.zeros((1, 0))
        out = []
        for sv in signs:
            c = np.concatenate([[1.0], sv])
            label = "signs " + "".join("+" if v > 0 else "-" for v in c)
            out.append(_Sub(label, c[None], c[None].copy(), "max-abs", Quantity("1", c[None], False)))
        return out
    if norm == "1":
        return [_Sub("c in [-1,1]^m", -np.ones((1, m)), np.ones((1, m)), "linear+", quantity)]
    # ℓ2→ℓ2: one backward copy per output row (c_k = e_k); the LP bounds ‖J‖_F ≥ ‖J‖₂
    return [_Sub("spectral", np.eye(m), np.eye(m), "spectral", quantity)]


class BranchAndBound:
    """The search (see the module docstring). ``domain``: ``(lo, hi)`` or ``None`` (global);
    ``ranges``: derivative ranges for smooth activations (root bound only, no reachability)."""

    def __init__(
        self,
        net: Network,
        quantity: Quantity,
        domain: tuple[np.ndarray, np.ndarray] | None,
        settings: BabSettings = BabSettings(),
        budget: Budget | None = None,
        progress: Progress = SILENT,
        ranges: list | None = None,
    ) -> None:
        self.net, self.quantity, self.settings = net, quantity, settings
        self.chain = Chain.from_network(net)
        self.reach = self.chain.piecewise_linear
        if not self.reach and (settings.node_limit != 0 or ranges is None):
            raise LipoptError("branch and bound needs piecewise-linear activations (relu, leaky_relu)")
        self.domain, self.ranges = domain, ranges
        self.budget = budget or Budget(None, math.inf)
        self.progress = progress
        self.subs = make_subproblems(quantity)
        widths = self.chain.widths
        self.n0 = widths[0]
        self.offsets = np.concatenate([[0], np.cumsum(widths[1:-1])]).astype(int)
        self.kinked = np.concatenate([np.full(n, self.chain.has_kink(l), dtype=bool)
                                      for l, n in enumerate(widths[1:-1])] or [np.zeros(0, bool)])
        self._heap: list = []
        self._counter = 0
        self.lower, self.lower_point = 0.0, None
        self.pruned_max = self.closed_max = -math.inf
        self.stuck: list[_Node] = []
        self.explored = self.lp_solves = self.infeasible = self.max_depth = 0
        self._last_report = 0.0
        self._rng = np.random.default_rng(settings.seed)
        self._cheb: HighsBox | None = None
        self._candidates: list[np.ndarray] = []
        self._rotated_at: np.ndarray | None = None
        est = LiftedTemplate.estimate(self.chain, self.reach)
        self._node_bytes = 80 * int(self.offsets[-1] + self.n0) + 24 * (est["rows"] + est["cols"])

    # ---- setup ---------------------------------------------------------------------------
    def _template(self, sub: _Sub) -> None:
        if sub.template is not None or not self.settings.lp:
            return
        kind = {"sum-abs": "sum-abs", "sum-square": "sum-square", "spectral": "sum-square"}.get(
            sub.objective, "linear")
        R = sub.c_lo.shape[0]
        for other in self.subs:
            t = other.template
            if t is not None and t.objective == kind and t.copies == R:
                sub.template, sub.solver = t, other.solver
                return
        sub.template = LiftedTemplate(self.chain, kind, reach=self.reach, copies=R)
        sub.solver = HighsBox(threads=self.settings.threads)
        if sub.objective == "spectral" and self.reach:
            sub.reach_template = LiftedTemplate(self.chain, "linear", reach=True, copies=0)
            sub.reach_solver = HighsBox(threads=self.settings.threads)

    def lp_size(self) -> dict:
        est = LiftedTemplate.estimate(self.chain, self.reach)
        return {k: est[k] for k in ("rows", "cols", "nonzeros", "bytes")}

    def _roots(self) -> list[_Node]:
        if self.domain is None:
            lo, hi = np.r_[-np.ones(self.n0), 0.0], np.ones(self.n0 + 1)
        else:
            lo, hi = np.r_[self.domain[0], 1.0], np.r_[self.domain[1], 1.0]
        split = np.zeros(self.offsets[-1], dtype=np.int8)
        faces = self.domain is None and self.settings.faces
        return [_Node(k, lo.copy(), hi.copy(), split.copy(), math.inf, faces_pending=faces)
                for k in range(len(self.subs))]

    # ---- main loop -----------------------------------------------------------------------
    def run(self) -> BabOutcome:
        """Search until the gap closes or a limit is reached (``node_limit=0``: the roots only)."""
        if self.settings.seed_lower:
            self._seed_lower()
        self._rotate_spectral()
        for root in self._roots():
            self._template(self.subs[root.sub])
            self._evaluate([root])
        if self.settings.node_limit == 0:
            status = Status.TIME_LIMIT if self.budget.expired() else Status.OPTIMAL
            return self._outcome(status, closed_only=False)
        status = Status.OPTIMAL
        while self._heap:
            if -self._heap[0][0] <= self._prune_level():
                break
            stop = self._limit_reached()
            if stop is not None:
                status = stop
                break
            if self.lower_point is not None and self.lower_point is not self._rotated_at:
                self._rotate_spectral()
            ready = [n for n in self._pop_several() if self._solve_popped(n)]
            children = [kid for node in ready for kid in self._branch(node)]
            for k in sorted({kid.sub for kid in children}):
                group = [kid for kid in children if kid.sub == k]
                for i in range(0, len(group), BATCH):
                    self._evaluate(group[i: i + BATCH])
            self._report()
        self._report(force=True)
        return self._outcome(status)

    def _pop_several(self) -> list[_Node]:
        """The top node and up to ``POP - 1`` more above the prune level (their children are
        bounded in one batch: the vectorized bounds cost little more for several nodes)."""
        out = [heapq.heappop(self._heap)[2]]
        while self._heap and len(out) < POP and -self._heap[0][0] > self._prune_level():
            out.append(heapq.heappop(self._heap)[2])
        return out

    def _rotate_spectral(self) -> None:
        """ℓ2→ℓ2: bound ``UᵀJ`` row by row, ``U`` the left singular vectors of the Jacobian at the
        best point found so far (nearly rank one, so one row carries almost all of it and the
        interval boxes are far tighter than per output). ``‖J‖₂ ≤ ‖UᵀJ‖₂ / σ_min(U)`` and
        ``σ_min(U) ≥ 1 − ‖UᵀU − I‖_F`` (with its rounding), so nothing needs U exactly orthogonal."""
        sub = next((s for s in self.subs if s.objective == "spectral"), None)
        self._rotated_at = self.lower_point
        if sub is None or self.lower_point is None:
            return
        ok, pattern = verified_patterns(self.chain, self.lower_point[None])
        G, _ = pattern_products(self.chain, pattern, np.eye(self.chain.widths[-1]))
        U = np.linalg.svd(G[0].T)[0]
        m = U.shape[0]
        E = U.T @ U - np.eye(m)
        delta = float(np.sqrt((E * E).sum()) + 2 * (m + 2) * EPS * (np.abs(U).T @ np.abs(U)).sum())
        if not ok[0] or not delta < 0.5:
            return
        sub.c_lo, sub.c_hi = U.T.copy(), U.T.copy()
        sub.scale = float(np.nextafter(1.0 / (1.0 - delta), np.inf) * (1 + 2 * EPS))
        sub.rotated = True

    def _solve_popped(self, node: _Node) -> bool:
        """Lazy bounding: a node bounded with its parent's LP multipliers gets its own LP when it
        reaches the top; False when it is then discarded or goes back into the queue."""
        sub = self.subs[node.sub]
        if node.lp_done or sub.template is None:
            return True
        if not self._lp_bound(sub, node):
            self.infeasible += 1
            return False
        if self._discard_if_done(node):
            return False
        if self._heap and node.upper < -self._heap[0][0]:
            self._push(node)
            return False
        return True

    def _limit_reached(self) -> Status | None:
        s = self.settings
        if s.node_limit is not None and self.explored >= s.node_limit:
            return Status.NODE_LIMIT
        if self.budget.expired():
            return Status.TIME_LIMIT
        if len(self._heap) * self._node_bytes > self.budget.max_memory_bytes:
            return Status.MEMORY_LIMIT
        return None

    def _prune_level(self) -> float:
        return self.lower * (1.0 + self.settings.gap) if self.lower > 0 else 0.0

    def _push(self, node: _Node) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (-node.upper, self._counter, node))
        self.max_depth = max(self.max_depth, node.depth)

    def _discard_if_done(self, node: _Node) -> bool:
        if node.upper <= self._prune_level():
            self.pruned_max = max(self.pruned_max, node.upper)
            return True
        return False

    def current_upper(self) -> float:
        """The certified upper bound now: the max over open, discarded, closed and stuck nodes."""
        ups = [self.pruned_max, self.closed_max, self.lower] + [n.upper for n in self.stuck]
        if self._heap:
            ups.append(-self._heap[0][0])
        return max(ups)

    def offer_lower(self, value: float, point: np.ndarray | None = None) -> None:
        """A lower bound found elsewhere (a secant between real points, a verified gradient)."""
        if value > self.lower:
            self.lower = float(value)
            if point is not None:
                self.lower_point = np.asarray(point, dtype=float).copy()

    def root_data(self, k: int) -> tuple[_Sub, NodeData]:
        """Subproblem ``k`` and its root's data (bounds without any LP), for exact solvers."""
        root = self._roots()[k]
        sub = self.subs[k]
        z, dead, s, g, _ = self._bound_batch(sub, [root])
        if dead[0]:
            raise LipoptError("internal: the root node is empty")
        root.z = None if z is None else (z[0][0], z[1][0])
        root.s, root.g, root.g0 = (s[0][0], s[1][0]), (g[0][0], g[1][0]), (g[2][0], g[3][0])
        return sub, self._node_data(sub, root)

    def _outcome(self, status: Status, closed_only: bool = True) -> BabOutcome:
        upper = self.current_upper()
        if closed_only and status == Status.OPTIMAL and upper > self._prune_level() and self.lower > 0:
            status = Status.INACCURATE
        note = ""
        if self.stuck:
            note = (f"{len(self.stuck)} leaf region(s) could be neither verified nor proven empty "
                    "(degenerate); their values stay in the upper bound")
        return BabOutcome(upper, self.lower, bool(np.isfinite(upper)), status, self.explored,
                          len(self._heap), self.lp_solves, self.infeasible, self.max_depth,
                          self.lp_size(), self.lower_point, note)

    def _report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_report < 0.2:
            return
        self._last_report = now
        upper = self.current_upper()
        gap = (upper - self.lower) / upper if upper > 0 else 0.0
        self.progress.report(upper=upper, lower=self.lower, gap=gap, nodes=self.explored)

    # ---- bounding ------------------------------------------------------------------------
    def _evaluate(self, nodes: list[_Node]) -> None:
        """Bound a batch of nodes of one subproblem and push the ones still open."""
        sub = self.subs[nodes[0].sub]
        z, dead, s, g, quick = self._bound_batch(sub, nodes)
        for b, node in enumerate(nodes):
            self.explored += 1
            if dead[b]:
                self.infeasible += 1
                continue
            node.z = None if z is None else (z[0][b], z[1][b])
            node.s = (s[0][b], s[1][b])
            node.g = (g[0][b], g[1][b])
            node.g0 = (g[2][b], g[3][b])
            node.upper = min(node.upper, float(quick[b]))
            self._finish(sub, node)
        self._flush_points()

    def _layers(self, flat: np.ndarray) -> list[np.ndarray]:
        """Per-layer views of a flat ``(…, N)`` array."""
        return np.split(flat, self.offsets[1:-1], axis=-1)

    def _bound_batch(self, sub: _Sub, nodes: list[_Node]):
        """Flat pre-activation bounds, emptiness, slopes, backward intervals, interval bounds."""
        B = len(nodes)
        lo = np.stack([n.lo for n in nodes])
        hi = np.stack([n.hi for n in nodes])
        if self.reach:
            prev = None
            if nodes[0].prev is not None:
                prev = list(zip(self._layers(np.stack([n.prev[0] for n in nodes])),
                                self._layers(np.stack([n.prev[1] for n in nodes])), strict=True))
            splits = self._layers(np.stack([n.split for n in nodes]))
            bounds = split_bounds(self.chain, lo, hi, splits, prev)
            dead = empty_nodes(bounds) | self._forced_zero(bounds, splits)
            s_lo, s_hi = slopes(self.chain, bounds, splits)
            if self.domain is None:
                dead |= tau_only_conflicts(self.chain, lo, splits, s_lo, s_hi)
            z = tuple(np.concatenate([b[k] for b in bounds], axis=1) for k in (0, 1))
        else:
            z, dead = None, np.zeros(B, dtype=bool)
            s_lo = [np.broadcast_to(r[0], (B, len(r[0]))) for r in self.ranges]
            s_hi = [np.broadcast_to(r[1], (B, len(r[1]))) for r in self.ranges]
        # below the roots an ℓ2 node's LP is the reachability part alone: only g_0 needs CROWN
        g = self._backward(sub, s_lo, s_hi, inputs_only=sub.reach_template is not None and nodes[0].depth > 0)
        quick = self._interval_bound(sub, g[0])
        s = (np.concatenate(s_lo, axis=1), np.concatenate(s_hi, axis=1))
        gh = tuple(np.concatenate([x[k] for x in g[1:]], axis=2) for k in (0, 1))
        return z, dead, s, (*gh, *g[0]), quick

    def _backward(self, sub: _Sub, s_lo, s_hi, inputs_only: bool = False) -> list:
        """Backward bounds ``(B, R, n_l)`` per layer for the sub's ``R`` output rows (CROWN on the
        inputs' state only, intervals for the hidden ones, with ``inputs_only``)."""
        B, R = s_lo[0].shape[0], sub.c_lo.shape[0]
        rep = [np.repeat(x, R, axis=0) for x in s_lo], [np.repeat(x, R, axis=0) for x in s_hi]
        g = backward_bounds(self.chain, *rep, np.tile(sub.c_lo, (B, 1)), np.tile(sub.c_hi, (B, 1)),
                            inputs_only=inputs_only)
        return [(gl.reshape(B, R, -1), gu.reshape(B, R, -1)) for gl, gu in g]

    @staticmethod
    def _forced_zero(bounds, split) -> np.ndarray:
        """Nodes with a neuron split inactive whose lower bound is ≥ 0 (rule (ii) of the doc)."""
        bad = np.zeros(bounds[0][0].shape[0], dtype=bool)
        for (zl, _), s in zip(bounds, split, strict=True):
            bad |= np.any((s < 0) & (zl >= 0), axis=1)
        return bad

    def _finish(self, sub: _Sub, node: _Node) -> None:
        if self._discard_if_done(node):
            return
        if self.reach and self._is_leaf(node):
            self._leaf(sub, node)
            return
        if sub.template is not None:
            if node.duals:
                self._reuse_duals(sub, node)
            elif not self._lp_bound(sub, node):
                self.infeasible += 1
                return
            if self._discard_if_done(node):
                return
        self._push(node)

    def _is_leaf(self, node: _Node) -> bool:
        return bool(np.all((node.s[0] == node.s[1]) | ~self.kinked))

    def _interval_bound(self, sub: _Sub, g0) -> np.ndarray:
        """Bound from the backward bounds at the inputs (``(B, R, n0)``); spectral: of the
        interval Jacobian ``[G_lo, G_hi] ∋ Jᵀ``, ``min(‖mid‖₂ + ‖rad‖₂, ‖max(|lo|, |hi|)‖₂)``."""
        if sub.objective == "spectral":
            return self._spectral_interval(*(np.swapaxes(x, 1, 2) for x in g0)) * sub.scale
        gl, gu = g0[0][:, 0], g0[1][:, 0]
        top = np.maximum(np.abs(gl), np.abs(gu))
        pad = 1 + 2 * (top.shape[1] + 2) * EPS
        if sub.objective == "sum-abs":
            return top.sum(axis=1) * pad
        if sub.objective == "sum-square":
            return np.sqrt((top * top).sum(axis=1) * pad) * (1 + 4 * EPS)
        if sub.objective == "max-abs":
            return top.max(axis=1)
        return np.maximum(gu.max(axis=1), 0.0)  # linear+

    @staticmethod
    def _spectral_interval(Gl: np.ndarray, Gu: np.ndarray) -> np.ndarray:
        mid = 0.5 * (Gl + Gu)
        rad = np.nextafter(np.maximum(Gu - mid, mid - Gl), np.inf)
        b1 = spectral_bounds(mid)[1] + spectral_bounds(rad)[1]
        b2 = spectral_bounds(np.maximum(np.abs(Gl), np.abs(Gu)))[1]
        return np.minimum(b1, b2) * (1 + 4 * EPS)

    def _node_data(self, sub: _Sub, node: _Node) -> NodeData:
        z = node.z if node.z is not None else (np.zeros(0), np.zeros(0))
        return NodeData(*z, *node.s, *node.g, *node.g0, node.lo, node.hi, sub.c_lo, sub.c_hi)

    def _lp_bound(self, sub: _Sub, node: _Node) -> bool:
        """Tighten ``node.upper`` with the lifted LP; False when the node is proven empty."""
        tmpl, solver = sub.template, sub.solver
        node.lp_done = True
        if sub.objective not in ("sum-abs", "sum-square", "spectral"):
            return self._coordinate_lps(sub, node, solve=True)
        if sub.reach_template is not None and node.depth > 0:
            return self._reachable(sub, node)  # below the roots: cheaper than ‖J‖_F (measured)
        lp = tmpl.lp(self._node_data(sub, node))
        solver.load(lp, basis=node.basis)
        out = solver.run(time_limit=self._lp_time(), keep_basis=True)
        self.lp_solves += 1
        if out.status == "infeasible" and proves_infeasible(lp, out.ray):
            return False
        node.upper = min(node.upper, self._certified(sub, lp, out.w))
        node.basis = out.basis if out.basis is not None else node.basis
        node.duals = {"sum": out.w} if out.w is not None else None
        self._candidate(tmpl, out.x)
        return True

    def _reachable(self, sub: _Sub, node: _Node) -> bool:
        """The forward (reachability) part of the LP alone, zero objective: False when a Farkas
        ray proves the node empty."""
        tmpl, m, N = sub.reach_template, self.chain.widths[-1], int(self.offsets[-1])
        e = np.zeros((0, N))
        data = NodeData(*node.z, *node.s, e, e, np.zeros((0, self.n0)), np.zeros((0, self.n0)),
                        node.lo, node.hi, np.zeros((0, m)), np.zeros((0, m)))
        lp = tmpl.lp(data, objective=np.zeros(tmpl.cols))
        sub.reach_solver.load(lp, basis=node.reach_basis)
        out = sub.reach_solver.run(time_limit=self._lp_time(), keep_basis=True)
        self.lp_solves += 1
        node.reach_basis = out.basis if out.basis is not None else node.reach_basis
        self._candidate(tmpl, out.x)
        return not (out.status == "infeasible" and proves_infeasible(lp, out.ray))

    def _certified(self, sub: _Sub, lp: BoxLP, w: np.ndarray | None) -> float:
        bound = dual_bound(lp, w)
        if sub.objective in ("sum-square", "spectral"):  # ‖g‖₂ (spectral: ‖UᵀJ‖_F ≥ ‖UᵀJ‖₂)
            bound = round_up(math.sqrt(max(bound, 0.0)) * (1 + 2 * EPS) * sub.scale)
        return bound

    def _reuse_duals(self, sub: _Sub, node: _Node) -> None:
        """Bound a child with its parent's LP multipliers (valid for any multipliers; no solve)."""
        if sub.objective in ("sum-abs", "sum-square", "spectral"):
            lp = sub.template.lp(self._node_data(sub, node))
            node.upper = min(node.upper, self._certified(sub, lp, node.duals.get("sum")))
            return
        self._coordinate_lps(sub, node, solve=False)

    def _coordinate_lps(self, sub: _Sub, node: _Node, solve: bool) -> bool:
        """``max_i ±g_{0,i}``: one objective per coordinate and sign, largest interval bound first,
        until the next interval bound cannot raise the node's maximum. ``solve=False`` reuses the
        parent's multipliers instead of solving. False when the node is proven empty."""
        tmpl, solver = sub.template, sub.solver
        lp = tmpl.lp(self._node_data(sub, node), objective=np.zeros(tmpl.cols))
        gl, gu = node.g0[0][0], node.g0[1][0]
        cols = tmpl.column("g0")
        cands = [(gu[i], i, 1.0) for i in range(len(gu))]
        if sub.objective == "max-abs":
            cands += [(-gl[i], i, -1.0) for i in range(len(gl))]
        cands.sort(key=lambda t: -t[0])
        best, floor = 0.0, self._prune_level()
        parent, duals, loaded = node.duals or {}, {}, False
        for top, i, sign in cands:
            if top <= max(best, floor):
                best = max(best, top)  # every coordinate left is below this one
                break
            c = np.zeros(tmpl.cols)
            c[cols[i]] = sign
            lp_c = lp.with_objective(c)
            if not solve:
                w = parent.get((i, sign))
                best = max(best, min(top, dual_bound(lp_c, w)) if w is not None else top)
                continue
            if not loaded:
                solver.load(lp, basis=node.basis)
                loaded = True
            out = solver.run(c, time_limit=self._lp_time(), keep_basis=True)
            self.lp_solves += 1
            if out.status == "infeasible" and proves_infeasible(lp_c, out.ray):
                return False
            node.basis = out.basis if out.basis is not None else node.basis
            if out.w is not None:
                duals[(i, sign)] = out.w
            best = max(best, min(top, dual_bound(lp_c, out.w)))
            self._candidate(tmpl, out.x)
        node.upper = min(node.upper, best)
        if solve:
            node.duals = duals or None
        return True

    def _lp_time(self) -> float | None:
        r = self.budget.remaining()
        return None if not math.isfinite(r) else max(r, 1e-3)

    # ---- leaves and lower bounds -----------------------------------------------------------
    def _leaf(self, sub: _Sub, node: _Node) -> None:
        """Fixed pattern: exact value (rounded up) and a verified interior point if any."""
        G, err = pattern_products(self.chain, self._layers(node.s[0][None]), sub.leaf.C)
        node.upper = min(node.upper, float(sub.leaf.bounds_from(G, err)[1][0]))
        if self._discard_if_done(node):
            return
        M, err = self._affine_maps(node)
        if self._flat_region(node, M, err):
            self.infeasible += 1
            return
        x = self._interior_point(node, M)
        if x is not None:
            self._candidates.append(x)
            if self._flush_points(want=node.upper):
                self.closed_max = max(self.closed_max, node.upper)
                return
        if sub.template is not None and not self._lp_bound(sub, node):
            self.infeasible += 1
            return
        if self._exactly_flat(node):
            self.infeasible += 1
            return
        self.stuck.append(node)

    def _exactly_flat(self, node: _Node) -> bool:
        """Exact-arithmetic proof that the leaf's region has no interior (and, globally, no point
        with ``τ > 0``): :mod:`lipopt.exact_region`. For the few leaves floats cannot settle."""
        from .exact_region import exact_affine_maps, no_interior

        chain = self.chain
        kinked = [np.full(w.shape[0], chain.has_kink(l)) for l, w in enumerate(chain.weights[:-1])]
        rows = exact_affine_maps(chain.weights, chain.biases, self._layers(node.s[0]), kinked)
        if rows is None:
            return False
        signs = np.where(node.s[0][self.kinked] == 1.0, 1, -1)
        return no_interior(rows, signs, node.lo, node.hi, self.domain is None)

    def _candidate(self, tmpl: LiftedTemplate, x: np.ndarray | None) -> None:
        if x is None or not self.reach:
            return
        self._candidates.append(self._real_point(x[tmpl.column("x")], float(x[tmpl.column("tau")[0]])))

    def _real_point(self, xs: np.ndarray, tau: float) -> np.ndarray:
        if self.domain is not None:
            return np.clip(xs, *self.domain)
        return xs / tau if tau > 1e-12 else xs * 1e8

    def _flush_points(self, want: float | None = None) -> bool:
        """Evaluate the candidate points (and small perturbations of them); True when a
        verified point reaches ``want`` (within the gap tolerance)."""
        if not self._candidates:
            return False
        X = np.array(self._candidates)
        self._candidates = []
        scale = 1e-9 * (1.0 + np.abs(X))
        if self.domain is not None:
            scale = np.minimum(scale, 1e-9 * (self.domain[1] - self.domain[0]))
        pts = np.concatenate([X[None], X[None] + self._rng.standard_normal((3, *X.shape)) * scale])
        pts = pts.reshape(-1, X.shape[1])
        if self.domain is not None:
            pts = np.clip(pts, *self.domain)
        value, i = self._point_values(pts)
        if value > self.lower:
            self.lower, self.lower_point = value, pts[i].copy()
        return want is not None and value >= want / (1.0 + self.settings.gap)

    def _point_values(self, pts: np.ndarray) -> tuple[float, int]:
        """Best verified value of the quantity over ``pts`` (rigorous lower bounds)."""
        ok, pattern = verified_patterns(self.chain, pts)
        idx = np.flatnonzero(ok)
        best, arg = -math.inf, -1
        for k in range(0, len(idx), 256):
            sel = idx[k: k + 256]
            G, err = pattern_products(self.chain, [p[sel] for p in pattern], self.quantity.C)
            lo, _ = self.quantity.bounds_from(G, err)
            j = int(np.argmax(lo))
            if lo[j] > best:
                best, arg = float(lo[j]), int(sel[j])
        return best, arg

    def _seed_lower(self) -> None:
        """Random real points of the domain (global: several scales), verified."""
        n = self.n0
        if self.domain is None:
            pts = self._rng.standard_normal((512, n)) * np.geomspace(1e-2, 1e2, 512)[:, None]
        else:
            lo, hi = self.domain
            pts = lo + (hi - lo) * self._rng.random((512, n))
        value, i = self._point_values(pts)
        if value > self.lower:
            self.lower, self.lower_point = value, pts[i].copy()

    def _affine_maps(self, node: _Node) -> tuple[np.ndarray, np.ndarray]:
        """At a leaf, every pre-activation is affine in ``(x, τ)``: ``z = M (x, τ)``. Returns
        ``M`` (flat over the hidden neurons) and an entrywise bound on its rounding error."""
        pattern = self._layers(node.s[0])
        maps, errs = [], []
        M = Ma = None
        for l in range(self.chain.depth):
            w, b = self.chain.weights[l], self.chain.biases[l]
            wd = w.toarray() if hasattr(w, "toarray") else w
            if l == 0:
                M, Ma = np.hstack([wd, b[:, None]]), np.hstack([np.abs(wd), np.abs(b)[:, None]])
            else:
                M = wd @ (pattern[l - 1][:, None] * M)
                Ma = np.abs(wd) @ (np.abs(pattern[l - 1])[:, None] * Ma)
                M[:, -1] += b
                Ma[:, -1] += np.abs(b)
            maps.append(M)
            errs.append(2 * (l + 2) * (max(self.chain.widths) + 8) * EPS * Ma)
        return np.vstack(maps), np.vstack(errs)

    def _flat_region(self, node: _Node, M: np.ndarray, err: np.ndarray) -> bool:
        """True when the leaf's region has no interior: a neuron is proven to be 0 on it
        (``zl ≥ 0 ≥ zu``) while its affine map provably varies along the box. No regular point
        lies there (module docstring), so the leaf may be discarded."""
        zero = (node.z[0] >= 0) & (node.z[1] <= 0) & self.kinked
        if not np.any(zero):
            return False
        free = node.hi > node.lo
        varies = np.any((np.abs(M[:, free]) > err[:, free]), axis=1)
        return bool(np.any(zero & varies))

    def _interior_point(self, node: _Node, M: np.ndarray) -> np.ndarray | None:
        """A point of the leaf's region with the largest margin (Chebyshev LP over ``(x, τ)``:
        ``max δ`` s.t. ``sign_j z_j(x, τ) ≥ δ·‖∇z_j‖``, and ``τ ≥ δ`` globally); it is verified
        afterwards, so the LP's own rounding does not matter."""
        if not np.any(self.kinked):
            return self._real_point(0.5 * (node.lo[:-1] + node.hi[:-1]), 0.5 * (node.lo[-1] + node.hi[-1]))
        A = M[self.kinked] * np.where(node.s[0][self.kinked] == 1.0, 1.0, -1.0)[:, None]
        norms = np.sqrt((A[:, node.hi > node.lo] ** 2).sum(axis=1)) + 1e-300
        A = np.hstack([A, -norms[:, None]])
        if self.domain is None:
            A = np.vstack([A, np.r_[np.zeros(self.n0), 1.0, -1.0]])
        c = np.zeros(A.shape[1])
        c[-1] = 1.0
        lp = BoxLP(c, sp.csr_matrix(A), np.zeros(A.shape[0]), np.full(A.shape[0], np.inf),
                   np.r_[node.lo, -1.0], np.r_[node.hi, 1.0])
        if self._cheb is None:
            self._cheb = HighsBox(threads=self.settings.threads)
        out = self._cheb.solve(lp, time_limit=self._lp_time(), keep_basis=False)
        if out.x is None or out.status != "optimal" or out.x[-1] <= 0:
            return None
        return self._real_point(out.x[:-2], float(out.x[-2]))

    # ---- branching -------------------------------------------------------------------------
    def _branch(self, node: _Node) -> list[_Node]:
        if node.faces_pending and node.depth >= self.settings.faces_depth:
            return self._faces(node)
        j = self._choose(node)
        kids = []
        for sign in (1, -1):
            split = node.split.copy()
            split[j] = sign
            kids.append(_Node(node.sub, node.lo, node.hi, split, node.upper, node.depth + 1, node.z,
                              basis=node.basis, reach_basis=node.reach_basis, duals=node.duals,
                              faces_pending=node.faces_pending))
        return kids

    def _faces(self, node: _Node) -> list[_Node]:
        """The ``2n + 1`` faces of Q (module docstring): ``τ = 1``, then ``x'_i = ±1``."""
        boxes = []
        lo, hi = node.lo.copy(), node.hi.copy()
        lo[-1] = 1.0
        boxes.append((lo, hi))
        for i in range(self.n0):
            for v in (1.0, -1.0):
                lo, hi = node.lo.copy(), node.hi.copy()
                lo[i] = hi[i] = v
                boxes.append((lo, hi))
        return [_Node(node.sub, lo, hi, node.split, node.upper, node.depth + 1, node.z, basis=node.basis,
                      duals=node.duals) for lo, hi in boxes]

    def _choose(self, node: _Node) -> int:
        """The neuron to split (flat index): free, kinked, with a slope range, of largest score
        ``(sU − sL) · max|g| · u``, where ``u`` is the absolute-path weight from the neuron to
        the inputs (``|W_l| ⋯ |W_1| 1`` through the slope caps): an estimate of how much its
        slope's uncertainty moves the bound. ``sequential``: the first one in layer order."""
        sl, su = node.s
        idx = np.flatnonzero((node.split == 0) & (sl < su) & self.kinked)
        if not idx.size:
            raise LipoptError("internal: a non-leaf node has no neuron to split")
        if self.settings.branching == "sequential":
            return int(idx[0])
        u, us = np.ones(self.n0), []
        caps = self._layers(su)
        for l in range(self.chain.depth):
            u = self.chain.absw[l] @ u
            us.append(u)
            u = u * caps[l]
        top = np.maximum(np.abs(node.g[0]), np.abs(node.g[1]))
        sub = self.subs[node.sub]
        # rotated ℓ2 rows: the first (the top singular direction) carries the norm
        top = top[0] if sub.rotated else top.max(axis=0)
        score = (su - sl) * top * np.concatenate(us)
        return int(idx[np.argmax(score[idx])])
