r"""The lifted (layer-wise) LP relaxation of the norm-gradient problem, with reachability.

Instead of the path polynomial (one monomial per input→output path), keep the backward states
of the gradient as variables (DESIGN §4b)::

    g_L = W_{L+1}ᵀ c,     h_l = s_l ∘ g_l,     g_{l−1} = W_lᵀ h_l   (l = L … 1),

with the derivative variables ``s_l ∈ [sL_l, sU_l]`` and interval bounds ``g_l ∈ [gL_l, gU_l]``
(:func:`lipopt.reach.backward_intervals`). Every product ``h = s·g`` gets its four McCormick rows
(Sherali–Adams level 1 on the box): ``(s − sL)(g − gL) ≥ 0``, ``(sU − s)(gU − g) ≥ 0``,
``(sU − s)(g − gL) ≥ 0``, ``(s − sL)(gU − g) ≥ 0``. The dual norm of ``g_0`` is relaxed
coordinate-wise by the concave envelope of ``|g|`` (ℓ∞ input: ``max Σ p_i``, ``p_i ≤`` chord of
``|g_{0,i}|`` on ``[gL, gU]``, the tightest convex relaxation of ``max_{t∈[−1,1]} t·g``) or of
``g²`` (ℓ2 input: ``max Σ q_i``, bound ``√value``); ℓ1 input (``max_i |g_{0,i}|``) uses one linear
objective ``±g_{0,i}`` per coordinate. ``c`` is a column block with bounds ``[c_lo, c_hi]``
(fixed for a scalar target; a box for a vector quantity).

**Reachability.** For piecewise-linear activations (ReLU, leaky ReLU of slope α, identity) the
derivative variable is tied to the forward pass over the node's input box::

    z_l = W_l a_{l−1} + b_l τ,     a_0 = x,
    a ≥ z,  a ≥ αz,  a ≤ z − l(1 − s),  a ≤ αz + u(s − α),

with ``z ∈ [l, u]`` the node's pre-activation bounds. With ``s ∈ {α, 1}`` these four rows are
exactly ``a = σ(z)`` with ``s = σ'(z)`` (``s = 1 ⇒ z ≥ 0``, ``s = α ⇒ z ≤ 0``; at ``z = 0`` both);
the LP keeps ``s ∈ [α, 1]``. ``s`` is the *same* column as the derivative variable of the
backward pass, so patterns that no input reaches are cut off. ``τ`` scales the biases (``τ ≡ 1``
on a local box; the homogenized global problem of :mod:`lipopt.bab`).

**Validity in floating point.** Every row is an inequality that holds in exact arithmetic for
the float data it is built from: the McCormick right-hand sides ``−sL·gL`` … and ``−α·u`` are
rounded outward, chord intercepts are computed at both ends of the interval and rounded up, and
the equality rows use the float weights themselves. The certificate is then the float-safe dual
bound of :mod:`lipopt.solvers.box_lp`, valid for any multipliers.

**Size.** Columns: ``x, τ, c, g_0, p`` and ``z, a, s, h, g`` per hidden neuron; rows: ``nnz(W)``
twice (forward and backward equalities) plus 8 per hidden neuron and one per input — linear in
the number of non-zero weights. :class:`LiftedTemplate` builds the sparsity pattern once; a node
only refills the numeric values (:meth:`LiftedTemplate.lp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..floats import EPS, TINY
from ..reach import Chain
from ..solvers.box_lp import BoxLP, drop_tiny

OBJECTIVES = ("sum-abs", "sum-square", "linear")


def _down(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, -np.inf)


def _up(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, np.inf)


def chord_above(kind: str, gl: np.ndarray, gu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(α, β)`` with ``α g + β ≥ φ(g)`` on ``[gl, gu]`` for ``φ = |·|`` (``"sum-abs"``) or
    ``φ = (·)²`` (``"sum-square"``): the chord, with β the larger of the two end gaps plus a
    rounding allowance (φ convex, so a line above φ at both ends is above it in between)."""
    if kind == "sum-abs":
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(gl >= 0, 1.0, np.where(gu <= 0, -1.0, (gu + gl) / np.where(gu > gl, gu - gl, 1.0)))
        fl, fu = np.abs(gl), np.abs(gu)
    else:
        a = gl + gu
        fl, fu = gl * gl, gu * gu
    t1, t2 = fl - a * gl, fu - a * gu
    pad = 4 * EPS * (fl + fu + np.abs(a * gl) + np.abs(a * gu)) + TINY
    return a, np.maximum(t1, t2) + pad


@dataclass
class NodeData:
    """What one node contributes to the LP, as flat arrays over all hidden neurons (layer by
    layer): pre-activation bounds ``zl, zu``, slope bounds ``sl, su``, backward-state bounds
    ``gl, gu`` (``(R, N)``: the state at each hidden neuron, per copy) and ``g0l, g0u``
    (``(R, n0)``, at the inputs), the box ``lo, hi`` over ``(x, τ)`` and the output weights'
    box ``c_lo, c_hi`` (``(R, m)``)."""

    zl: np.ndarray
    zu: np.ndarray
    sl: np.ndarray
    su: np.ndarray
    gl: np.ndarray
    gu: np.ndarray
    g0l: np.ndarray
    g0u: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    c_lo: np.ndarray
    c_hi: np.ndarray


class _Builder:
    """Columns by block name, rows by block name, COO entries; tagged entries (whose values a
    node sets) get their CSR positions recorded in the order they were added."""

    def __init__(self) -> None:
        self.col_blocks: dict[str, tuple[int, int]] = {}
        self.row_blocks: dict[str, np.ndarray] = {}
        self.n_cols = self.n_rows = 0
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
        self.tags: list[str] = []

    def cols(self, name: str, k: int) -> np.ndarray:
        self.col_blocks[name] = (self.n_cols, self.n_cols + k)
        self.n_cols += k
        return np.arange(self.n_cols - k, self.n_cols)

    def rows(self, name: str, k: int) -> np.ndarray:
        r = np.arange(self.n_rows, self.n_rows + k)
        self.row_blocks[name] = r
        self.n_rows += k
        return r

    def add(self, rows, cols, vals, tag: str | None = None) -> None:
        rows = np.asarray(rows).ravel()
        cols = np.asarray(cols).ravel()
        vals = np.array(np.broadcast_to(np.asarray(vals, dtype=float), rows.shape)).ravel()
        t = -1
        if tag is not None:
            self.tags.append(tag)
            t = len(self.tags) - 1
        self.parts.append((rows, cols, vals, t))

    def add_matrix(self, row_ids, col_ids, w, sign: float, transpose: bool = False, tag=None) -> None:
        """Entries ``sign·W[i, j]`` at ``(row_ids[i], col_ids[j])`` (``Wᵀ`` when ``transpose``)."""
        coo = sp.coo_matrix(w)
        r, c = (coo.col, coo.row) if transpose else (coo.row, coo.col)
        keep = coo.data != 0
        self.add(row_ids[r[keep]], col_ids[c[keep]], sign * coo.data[keep], tag)

    def finish(self) -> tuple[sp.csr_matrix, dict[str, np.ndarray]]:
        rows = np.concatenate([p[0] for p in self.parts])
        cols = np.concatenate([p[1] for p in self.parts])
        vals = np.concatenate([p[2] for p in self.parts])
        tags = np.concatenate([np.full(len(p[0]), p[3]) for p in self.parts])
        order = np.lexsort((cols, rows))
        A = sp.csr_matrix((vals[order], cols[order].astype(np.int32),
                           np.searchsorted(rows[order], np.arange(self.n_rows + 1)).astype(np.int64)),
                          shape=(self.n_rows, self.n_cols))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        positions = {name: inverse[np.flatnonzero(tags == k)] for k, name in enumerate(self.tags)}
        return A, positions


class LiftedTemplate:
    """The sparsity pattern of the lifted LP for one chain and objective kind (see module doc);
    :meth:`lp` fills in a node's numbers. ``reach=False`` drops the forward part (smooth
    activations: slopes from ranges only)."""

    def __init__(self, chain: Chain, objective: str, reach: bool = True, copies: int = 1) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        self.chain, self.objective, self.reach, self.copies = chain, objective, reach, int(copies)
        widths = chain.widths
        n0, m, hidden = widths[0], widths[-1], widths[1:-1]
        N = int(sum(hidden))
        R = self.copies
        self.offsets = np.concatenate([[0], np.cumsum(hidden)]).astype(int)
        alphas = [np.full(n, chain.alpha(l)) for l, n in enumerate(hidden)]
        self.alpha = np.concatenate(alphas or [np.zeros(0)])
        b = _Builder()
        x = b.cols("x", n0) if reach else None
        tau = b.cols("tau", 1) if reach else None
        c = b.cols("c", R * m).reshape(R, m)
        g0 = b.cols("g0", R * n0).reshape(R, n0)
        p = b.cols("p", R * n0) if objective != "linear" else None
        Z = b.cols("z", N) if reach else None
        Aa = b.cols("a", N) if reach else None
        S = b.cols("s", N)
        H, G = b.cols("h", R * N).reshape(R, N), b.cols("g", R * N).reshape(R, N)
        if reach:
            self._forward(b, x, tau, Z, Aa, S)
        last = G[:, self.offsets[-2]:] if N else g0
        r = b.rows("out", last.size).reshape(R, last.shape[1])
        b.add(r, last, 1.0)
        for k in range(R):
            b.add_matrix(r[k], c[k], chain.weights[-1], -1.0, transpose=True)
        for k in range(4):  # McCormick rows, all neurons and copies at once
            r = b.rows(f"mc{k}", R * N)
            b.add(r, H, 1.0)
            b.add(r, G, 0.0, tag=f"mc{k}g")
            b.add(r, np.tile(S, R), 0.0, tag=f"mc{k}s")
        for l in range(chain.depth):
            sl = slice(self.offsets[l], self.offsets[l + 1])
            prev = g0 if l == 0 else G[:, self.offsets[l - 1]:self.offsets[l]]
            r = b.rows(f"bwd{l}", prev.size).reshape(R, prev.shape[1])
            b.add(r, prev, 1.0)
            for k in range(R):
                b.add_matrix(r[k], H[k, sl], chain.weights[l], -1.0, transpose=True)
        if p is not None:
            r = b.rows("obj", R * n0)
            b.add(r, p, 1.0)
            b.add(r, g0, 0.0, tag="objg")
        self.A, self._pos = b.finish()
        self._cols, self._rows = b.col_blocks, b.row_blocks
        self._base = self.A.data.copy()
        self._row_of = np.repeat(np.arange(self.A.shape[0]), np.diff(self.A.indptr))
        self._col_counts = np.bincount(self.A.indices, minlength=self.A.shape[1])
        self._rl0, self._ru0 = self._static_row_bounds()

    def _forward(self, b: _Builder, x, tau, Z, Aa, S) -> None:
        """``z_l = W_l a_{l−1} + b_l τ`` and the four activation rows (module doc)."""
        chain = self.chain
        r = b.rows("fwd", len(Z))
        b.add(r, Z, 1.0)
        for l in range(chain.depth):
            sl = slice(self.offsets[l], self.offsets[l + 1])
            prev = x if l == 0 else Aa[self.offsets[l - 1]:self.offsets[l]]
            b.add_matrix(r[sl], prev, chain.weights[l], -1.0)
            bias = chain.biases[l]
            nz = np.flatnonzero(bias)
            b.add(r[sl][nz], np.full(nz.size, tau[0]), -bias[nz])
        leaky = np.flatnonzero(self.alpha != 0.0)
        r1 = b.rows("r1", len(Z))  # a − z ≥ 0
        b.add(r1, Aa, 1.0)
        b.add(r1, Z, -1.0)
        r2 = b.rows("r2", len(leaky))  # a − αz ≥ 0 (a column bound for ReLU)
        b.add(r2, Aa[leaky], 1.0)
        b.add(r2, Z[leaky], -self.alpha[leaky])
        r3 = b.rows("r3", len(Z))  # a − z − l s ≤ −l
        b.add(r3, Aa, 1.0)
        b.add(r3, Z, -1.0)
        b.add(r3, S, 0.0, tag="r3s")
        r4 = b.rows("r4", len(Z))  # a − αz − u s ≤ −αu
        b.add(r4, Aa, 1.0)
        b.add(r4[leaky], Z[leaky], -self.alpha[leaky])
        b.add(r4, S, 0.0, tag="r4s")

    def _static_row_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        rl, ru = np.zeros(self.rows), np.zeros(self.rows)
        R = self._rows
        for name in ("r1", "r2", "mc0", "mc1"):
            if name in R:
                ru[R[name]] = np.inf
        for name in ("r3", "r4", "mc2", "mc3", "obj"):
            if name in R:
                rl[R[name]] = -np.inf
        return rl, ru

    @property
    def rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def cols(self) -> int:
        return int(self.A.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.A.nnz)

    @staticmethod
    def estimate(chain: Chain, reach: bool = True, copies: int = 1) -> dict[str, int]:
        """Rows, columns, non-zeros and bytes of the LP without building it."""
        widths = chain.widths
        n0, m, N = widths[0], widths[-1], int(sum(widths[1:-1]))
        nnz_w = chain.nnz()
        last = chain.weights[-1]
        nnz_hidden = nnz_w - (last.nnz if sp.issparse(last) else int(np.count_nonzero(last)))
        R = copies
        cols = (n0 + 1 + 2 * N if reach else 0) + N + R * (m + 2 * n0 + 2 * N)
        rows = (4 * N if reach else 0) + R * (5 * N + 2 * n0)
        nnz = (nnz_hidden + N * 11 if reach else 0) + R * (nnz_w + N * 12 + 2 * n0)
        # the LP data, HiGHS's copies (≈ 3× the matrix) and the per-node dense work arrays
        return {"rows": rows, "cols": cols, "nonzeros": nnz, "bytes": 60 * nnz + 200 * (rows + cols)}

    def column(self, name: str) -> np.ndarray:
        """Column indices of a block: ``x``, ``tau``, ``z``, ``a``, ``s`` (over all hidden
        neurons, layer by layer), and per copy (copy-major) ``c``, ``g0``, ``p``, ``h``, ``g``."""
        a, b = self._cols[name]
        return np.arange(a, b)

    def lp(self, node: NodeData, objective: np.ndarray | None = None) -> BoxLP:
        """The node's LP (``objective``: the linear objective over the columns, for ``"linear"``)."""
        data = self._base.copy()
        lo, hi = np.zeros(self.cols), np.zeros(self.cols)
        rl, ru = self._rl0.copy(), self._ru0.copy()
        C = self._cols

        def put(name: str, a: np.ndarray, b: np.ndarray) -> None:
            i, j = C[name]
            lo[i:j], hi[i:j] = a, b

        R = self.copies
        put("c", node.c_lo.ravel(), node.c_hi.ravel())
        put("g0", node.g0l.ravel(), node.g0u.ravel())
        sl, su = np.tile(node.sl, R), np.tile(node.su, R)
        gl, gu = node.gl.ravel(), node.gu.ravel()
        put("s", node.sl, node.su)
        put("g", gl, gu)
        put("h", _down(np.minimum(sl * gl, su * gl)), _up(np.maximum(sl * gu, su * gu)))
        Rw, P = self._rows, self._pos
        # (s − sL)(g − gL) ≥ 0, (sU − s)(gU − g) ≥ 0, (sU − s)(g − gL) ≥ 0, (s − sL)(gU − g) ≥ 0
        for k, (sv, gv) in enumerate(((sl, gl), (su, gu), (su, gl), (sl, gu))):
            data[P[f"mc{k}g"]] = -sv
            data[P[f"mc{k}s"]] = -gv
            if k < 2:
                rl[Rw[f"mc{k}"]] = _down(-(sv * gv))
            else:
                ru[Rw[f"mc{k}"]] = _up(-(sv * gv))
        if self.reach:
            self._fill_forward(node, data, ru, put)
        c = np.zeros(self.cols)
        if self.objective == "linear":
            c = np.asarray(objective, dtype=float)
        else:
            g0l, g0u = node.g0l.ravel(), node.g0u.ravel()
            a, beta = chord_above(self.objective, g0l, g0u)
            data[P["objg"]] = -a
            ru[Rw["obj"]] = beta
            top = np.maximum(np.abs(g0l), np.abs(g0u))
            put("p", np.zeros_like(top), top if self.objective == "sum-abs" else _up(top * top))
            c[C["p"][0]:C["p"][1]] = 1.0
        lp = BoxLP.from_arrays(c, self.A.indptr, self.A.indices, data, self.A.shape, rl, ru, lo, hi,
                               row_of=self._row_of, col_counts=self._col_counts)
        return drop_tiny(lp)

    def _fill_forward(self, node: NodeData, data, ru, put) -> None:
        zl, zu, alpha = node.zl, node.zu, self.alpha
        put("x", node.lo[:-1], node.hi[:-1])
        put("tau", node.lo[-1:], node.hi[-1:])
        put("z", zl, zu)
        al = np.where(zl >= 0, zl, alpha * zl)
        au = np.where(zu >= 0, zu, alpha * zu)
        inexact = (alpha != 0.0) & (alpha != 1.0)
        put("a", np.where(inexact, _down(al), al), np.where(inexact, _up(au), au))
        data[self._pos["r3s"]] = -zl
        data[self._pos["r4s"]] = -zu
        ru[self._rows["r3"]] = -zl
        rhs4 = -alpha * zu
        ru[self._rows["r4"]] = np.where(inexact, _up(rhs4), rhs4)
