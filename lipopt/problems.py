"""Network → polynomial optimization problems (POPs) whose maximum bounds the Lipschitz constant.

For a scalar target ``f = cᵀN`` and input norm ℓp (dual ℓq), ``L_p(f) = sup_x ‖∇f(x)‖_q`` with
``∇f = W_1ᵀ D_1 ⋯ W_Lᵀ D_L W_{L+1}ᵀ c``. Relaxing ``σ'(z_{l,j})`` to ``s_{l,j} ∈ [lo, hi]`` gives
the norm-gradient polynomial ``P(t, s) = tᵀ W_1ᵀ diag(s_1) ⋯ diag(s_L) W_{L+1}ᵀ c``, which the
norm splits into binary POPs (:meth:`lipopt.norms.Norm.split_pops`):

* ℓ∞ input: ``P`` over ``t ∈ [−1,1]^n``; multilinear on a box, so the max is at a vertex:
  ``t = 2u − 1``, ``s = lo + (hi − lo)u``, ``u ∈ {0,1}`` (one binary POP per scalar target).
* ℓ1 input: ``max_i |∂f/∂x_i|``: for each coordinate i and sign ±, the POP ``±P_i(s)``.
* ℓ2 input: ``max_s ‖G(s)‖²`` with ``G(s) = W_1ᵀ diag(s_1) ⋯ W_{L+1}ᵀ c``; convex in each
  ``s_j`` separately, so again a vertex maximum; the bound is the square root.

Without a chosen output the target is the network itself (:class:`Target` kind ``"network"``):
its constant ``sup ‖J(x)‖_{p→p}`` is bounded from the rows' scalar bounds by
:meth:`Target.combine` (ℓ∞: their maximum, exact; ℓ2: ``‖(L_k)_k‖₂``; ℓ1: ``Σ_k L_k``).

Each POP is over binary ``u`` and carries ``rounding_slack``: a bound on the floating-point
error of its coefficients, added to any certified value downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .binary_pop import BinaryPOP, VariableTable, box_abs_value
from .errors import LipoptError
from .floats import EPS
from .intervals import hidden_derivative_ranges
from .network import Dense, Network
from .norms import DEFAULT_MAX_SQUARE_PRODUCTS, NORMS, Norm, parse_norm
from .polynomial import PAD, Polynomial

__all__ = [
    "DEFAULT_MAX_PATHS",
    "DEFAULT_MAX_SQUARE_PRODUCTS",
    "NORMS",
    "BinaryPOP",
    "Domain",
    "LipschitzProblem",
    "Target",
    "VariableTable",
    "build_problem",
    "count_paths",
    "derivative_ranges",
    "gradient_polynomial",
    "make_domain",
    "make_target",
    "parse_norm",
    "variable_table",
]

DEFAULT_MAX_PATHS = 20_000_000


# ---------------------------------------------------------------------------------------------
# Target and domain
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What is bounded: a scalar ``f = cᵀN`` (one row of ``vectors``), or the network itself.

    ``kind`` ``"network"`` (no output chosen): the network's constant ``sup_x ‖J(x)‖_{p→p}``,
    with one row ``e_k`` per output; per-row bounds ``L_k`` on the scalar constants of ``N_k``
    combine into a bound on it by :meth:`combine` (ℓ∞: the max, exact; ℓ2, ℓ1: see
    :meth:`~lipopt.norms.Norm.combine_rows`). Otherwise ``"output"``, ``"margin"`` or
    ``"vector"``: one scalar target.
    """

    vectors: np.ndarray  # (k, out_dim)
    labels: tuple[str, ...]
    kind: str  # "output" | "margin" | "vector" | "network"

    @property
    def is_network(self) -> bool:
        return self.kind == "network"

    def quantity(self, norm: str | Norm) -> str:
        """The bounded quantity in words, e.g. "network ℓ2→ℓ2 constant (spectral norm of the
        Jacobian)" or "output 3 (scalar ℓ2 constant)"."""
        norm = parse_norm(norm)
        if self.is_network:
            return norm.quantity
        return f"{self.labels[0]} (scalar {norm.symbol} constant)"

    def combine(self, values: list[float], norm: str | Norm) -> float:
        """A bound on :meth:`quantity` from upper bounds on the rows' scalar constants."""
        if len(values) == 1:
            return float(values[0])
        if not self.is_network:
            raise ValueError("only a network target has several rows")
        return parse_norm(norm).combine_rows(values)

    def combination_note(self, norm: str | Norm) -> str | None:
        """The row note of a bound obtained by :meth:`combine` (None when exact or one row)."""
        if not self.is_network or len(self.vectors) == 1:
            return None
        return parse_norm(norm).combination_note(len(self.vectors))

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind, "labels": list(self.labels)}
        if self.kind == "vector":
            d["c"] = self.vectors[0].tolist()
        return d


def make_target(
    net: Network,
    output: int | None = None,
    margin: tuple[int, int] | None = None,
    vector: np.ndarray | None = None,
) -> Target:
    """``--output i`` → ``e_i``; ``--margin i j`` → ``e_i − e_j``; a vector; else the network."""
    m = net.output_dim
    given = sum(x is not None for x in (output, margin, vector))
    if given > 1:
        raise LipoptError("choose at most one of output, margin and vector")

    def check(i: int) -> int:
        if not isinstance(i, int | np.integer) or not 0 <= int(i) < m:
            raise LipoptError(f"output index {i} is out of range: the network has {m} outputs (0..{m - 1})")
        return int(i)

    if output is not None:
        i = check(output)
        return Target(np.eye(m)[[i]], (f"output {i}",), "output")
    if margin is not None:
        i, j = check(margin[0]), check(margin[1])
        if i == j:
            raise LipoptError("a margin needs two different outputs")
        c = np.zeros((1, m))
        c[0, i], c[0, j] = 1.0, -1.0
        return Target(c, (f"margin {i}-{j}",), "margin")
    if vector is not None:
        c = np.asarray(vector, dtype=float).ravel()
        if c.shape != (m,) or not np.all(np.isfinite(c)):
            raise LipoptError(f"target vector must have {m} finite entries, got shape {c.shape}")
        return Target(c[None, :], ("vector",), "vector")
    return Target(np.eye(m), tuple(f"output {i}" for i in range(m)), "network")


@dataclass(frozen=True)
class Domain:
    """Input box ``[lo, hi]`` for local bounds; ``None`` everywhere means global."""

    lo: np.ndarray
    hi: np.ndarray
    description: str = "box"

    def to_dict(self) -> dict:
        return {
            "description": self.description,
            "lo_min": float(self.lo.min()),
            "hi_max": float(self.hi.max()),
            "dim": int(self.lo.size),
        }


def make_domain(
    net: Network,
    box: tuple[float, float] | tuple[np.ndarray, np.ndarray] | None = None,
    center: np.ndarray | None = None,
    eps: float | None = None,
) -> Domain | None:
    """A box ``[lo, hi]`` (scalars broadcast) or an ℓ∞ ball ``center ± eps``; None = global."""
    n = net.input_dim
    if box is not None and center is not None:
        raise LipoptError("give either a box or a center with a radius, not both")
    if box is not None:
        lo = np.broadcast_to(np.asarray(box[0], dtype=float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(box[1], dtype=float), (n,)).copy()
        if np.any(lo > hi) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise LipoptError("the box needs finite bounds with LO <= HI")
        return Domain(lo, hi, f"box [{lo.min():g}, {hi.max():g}]^{n}")
    if center is not None:
        if eps is None or not np.isfinite(eps) or eps < 0:
            raise LipoptError("a center needs a finite radius --eps >= 0")
        x0 = np.asarray(center, dtype=float).ravel()
        if not np.all(np.isfinite(x0)):
            raise LipoptError("the center contains NaN or inf values; give finite coordinates")
        if x0.shape != (n,):
            raise LipoptError(f"the center has {x0.size} entries but the network has {n} inputs")
        return Domain(x0 - eps, x0 + eps, f"center ± {eps:g} (ℓ∞ ball)")
    if eps is not None:
        raise LipoptError("--eps needs --center")
    return None


# ---------------------------------------------------------------------------------------------
# Variables and problems
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LipschitzProblem:
    """POPs whose maxima bound the target's quantity: ``pops[i]`` belongs to target row
    ``pop_rows[i]``; a row's bound is ``norm.pop_bound(max of its POPs)``, and the rows combine
    by :meth:`Target.combine`."""

    norm: Norm
    target: Target
    domain: Domain | None
    pops: tuple[BinaryPOP, ...]
    pop_rows: tuple[int, ...] = ()
    gradient_polynomials: tuple[Polynomial, ...] = field(default=(), repr=False)
    variables: VariableTable | None = field(default=None, repr=False)
    #: the POPs bound the network's constant directly (:meth:`Norm.network_pops`), no row combination
    native: bool = False

    def combine(self, values: list[float]) -> float:
        """Bound on the quantity from per-POP upper bounds (each already including its slack)."""
        rows = self.pop_rows or (0,) * len(values)
        best: dict[int, float] = {}
        for row, v in zip(rows, values, strict=True):
            best[row] = max(best.get(row, -np.inf), float(v))
        return self.target.combine([self.norm.pop_bound(v) for v in best.values()], self.norm)

    @property
    def combination_note(self) -> str | None:
        return None if self.native else self.target.combination_note(self.norm)


# ---------------------------------------------------------------------------------------------
# Path enumeration: the norm-gradient polynomial
# ---------------------------------------------------------------------------------------------
def _as_csr(w) -> sp.csr_matrix:
    m = w.tocsr() if sp.issparse(w) else sp.csr_matrix(np.asarray(w, dtype=float))
    m.eliminate_zeros()
    return m


@dataclass
class _Terms:
    """A vector of polynomials ``g_r = Σ coef · Π vars`` in expanded form (one term per path).

    ``rows[k]`` is the entry ``r`` that term ``k`` belongs to; ``cols`` lists, per step, the
    variable index each term picked up (``PAD`` for none).
    """

    rows: np.ndarray
    cols: list[np.ndarray]
    coef: np.ndarray

    def pull(self, m) -> _Terms:
        """``g ← mᵀ g``: term at row i becomes one term per non-zero ``m[i, j]``, at row j."""
        if m is None:
            return self
        w = _as_csr(m)
        counts = np.diff(w.indptr)[self.rows]
        rep = np.repeat(np.arange(len(self.rows)), counts)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        nz = np.repeat(w.indptr[self.rows], counts) + within
        return _Terms(w.indices[nz], [c[rep] for c in self.cols], self.coef[rep] * w.data[nz])

    def times_site(self, offset: int, dead: np.ndarray | None) -> _Terms:
        """``g ← diag(s) g`` for the site whose variables start at ``offset``; ``s ≡ 0`` neurons
        (``dead``) remove their terms."""
        keep = slice(None) if dead is None else ~dead[self.rows]
        t = _Terms(self.rows[keep], [c[keep] for c in self.cols], self.coef[keep])
        t.cols.append(t.rows + offset)
        return t

    def plus(self, other: _Terms) -> _Terms:
        width = max(len(self.cols), len(other.cols))

        def padded(t: _Terms) -> list[np.ndarray]:
            fill = [np.full(len(t.rows), PAD, dtype=np.int64)] * (width - len(t.cols))
            return fill + t.cols

        cols = [np.concatenate(pair) for pair in zip(padded(self), padded(other), strict=True)]
        return _Terms(np.concatenate([self.rows, other.rows]), cols, np.concatenate([self.coef, other.coef]))

    def merged(self) -> _Terms:
        """Combine equal (row, monomial) terms (needed after residual sums)."""
        if not len(self.rows):
            return self
        key = np.sort(np.stack(self.cols, axis=1), axis=1) if self.cols else np.zeros((len(self.rows), 0))
        table = np.column_stack([self.rows, key]).astype(np.int64)
        uniq, inv = np.unique(table, axis=0, return_inverse=True)
        coef = np.bincount(inv.ravel(), weights=self.coef, minlength=len(uniq))
        keep = coef != 0
        uniq = uniq[keep]
        return _Terms(uniq[:, 0], [uniq[:, j] for j in range(1, uniq.shape[1])], coef[keep])


def _site_offsets(net: Network) -> np.ndarray:
    """Start index of each site's variables (after the ``n0`` input variables ``t``)."""
    return net.input_dim + np.concatenate([[0], np.cumsum(net.hidden_sizes)]).astype(np.int64)


class _TermOps:
    """:class:`~lipopt.network.PullbackOps` on path terms: sites append their ``s`` variable
    (dropping dead neurons); every intermediate expansion is checked against ``max_paths``."""

    def __init__(self, net: Network, dead: list[np.ndarray] | None, max_paths: int) -> None:
        self.offsets, self.dead, self.max_paths, self.k = _site_offsets(net), dead, max_paths, net.depth

    def check(self, t: _Terms) -> _Terms:
        if len(t.rows) > self.max_paths:
            raise LipoptError(
                f"the norm-gradient polynomial has more than {self.max_paths:,} monomials (paths); "
                "use a smaller network, a local domain, or raise max_paths"
            )
        return t

    def pull(self, t: _Terms, m) -> _Terms:
        return self.check(t.pull(m))

    def site(self, t: _Terms) -> _Terms:
        self.k -= 1
        return t.times_site(int(self.offsets[self.k]), None if self.dead is None else self.dead[self.k])

    def add(self, t: _Terms, u: _Terms) -> _Terms:
        return self.check(t.plus(u).merged())


def _backward_terms(
    net: Network, c: np.ndarray, dead: list[np.ndarray] | None, max_paths: int, output_vars: int | None = None
) -> _Terms:
    """Expand ``∇f = J(s)ᵀ c`` symbolically: rows = input coordinates, one term per path. With
    ``output_vars`` (the index of ``o_0``), ``c`` is the variable vector ``o`` instead."""
    c = np.asarray(c, dtype=float).ravel()
    start = np.flatnonzero(c)
    cols = [] if output_vars is None else [start + output_vars]
    return net.pullback(_Terms(start, cols, c[start]), _TermOps(net, dead, max_paths))


def count_paths(net: Network, c: np.ndarray) -> int:
    """Number of non-zero input→output paths of ``P`` before merging (exact for chains; an upper
    bound with residual blocks, whose branches may merge)."""
    w_last, _ = net.layers[-1].affine()
    w_out = np.asarray(w_last.T @ np.asarray(c, dtype=float)).ravel()
    last = Dense(sp.csr_matrix((w_out != 0).astype(float)[None, :]), np.zeros(1))
    # same structure, weights replaced by their 0/1 patterns, output layer by the pattern of Wᵀc
    pattern = Network((*(layer.pattern() for layer in net.layers[:-1]), last), name=net.name)
    ones = [np.ones((1, size)) for size in net.hidden_sizes]
    return int(round(float(pattern.backward(np.ones((1, 1)), ones).sum())))


def variable_table(
    net: Network, ranges: list[tuple[np.ndarray, np.ndarray]], outputs: bool = False
) -> VariableTable:
    """Variables ``t_0 … t_{n0−1}``, then the ``s`` variables of every site, in that order; with
    ``outputs``, then one sign variable ``o_k ∈ [−1, 1]`` per output."""
    n0 = net.input_dim
    kinds = [np.full(n0, "t")]
    layers = [np.zeros(n0, dtype=int)]
    neurons = [np.arange(n0)]
    los, his = [np.full(n0, -1.0)], [np.full(n0, 1.0)]
    for l, (lo, hi) in enumerate(ranges, start=1):
        k = len(lo)
        kinds.append(np.full(k, "s"))
        layers.append(np.full(k, l))
        neurons.append(np.arange(k))
        los.append(np.asarray(lo, dtype=float))
        his.append(np.asarray(hi, dtype=float))
    if outputs:
        m = net.output_dim
        kinds.append(np.full(m, "o"))
        layers.append(np.full(m, len(ranges) + 1))
        neurons.append(np.arange(m))
        los.append(np.full(m, -1.0))
        his.append(np.full(m, 1.0))
    return VariableTable(
        np.concatenate(kinds),
        np.concatenate(layers),
        np.concatenate(neurons),
        np.concatenate(los),
        np.concatenate(his),
    )


def gradient_polynomial(
    net: Network,
    c: np.ndarray | None,
    max_paths: int = DEFAULT_MAX_PATHS,
    ranges: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Polynomial:
    """``P(t, s) = tᵀ J(s)ᵀ c`` over the variables of :func:`variable_table`; with ``c=None``,
    ``P(t, s, o) = tᵀ J(s)ᵀ o`` with output variables ``o`` (``variable_table(…, outputs=True)``).

    For a chain ``J(s)ᵀ c = W_1ᵀ diag(s_1) ⋯ diag(s_L) W_{L+1}ᵀ c``: one monomial per non-zero
    path, built backwards from the output by vectorized CSR expansion (every partial path at
    neuron ``i`` is repeated once per non-zero ``W[i, j]``). Residual blocks add the skip branch
    ``Aᵀ`` beside the inner chain, giving lower-degree monomials. With ``ranges``, neurons whose
    derivative is identically 0 are pruned.
    """
    symbolic = c is None
    c = np.ones(net.output_dim) if symbolic else c
    n_paths = count_paths(net, c)  # refuse before allocating anything (an upper bound with residuals)
    if n_paths > max_paths:
        raise LipoptError(
            f"the norm-gradient polynomial has {n_paths:,} monomials (paths), above the limit of "
            f"{max_paths:,}; use a smaller network, a local domain, or raise max_paths"
        )
    n_vars = net.input_dim + sum(net.hidden_sizes)
    dead = None if ranges is None else [(lo == 0) & (hi == 0) for lo, hi in ranges]
    terms = _backward_terms(net, c, dead, max_paths, n_vars if symbolic else None)
    n_vars += net.output_dim if symbolic else 0
    supports = np.stack([*terms.cols, terms.rows], axis=1).astype(np.int32)  # rows are the t's
    return Polynomial.from_terms(supports, terms.coef, n_vars)


def derivative_ranges(net: Network, domain: Domain | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[σ'_lo, σ'_hi]`` per hidden neuron over the domain: CROWN pre-activation bounds, then
    :meth:`~lipopt.network.Activation.derivative_range` (rounded outward for smooth σ)."""
    box = None if domain is None else (domain.lo, domain.hi)
    return hidden_derivative_ranges(net, box)


def build_problem(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    max_paths: int = DEFAULT_MAX_PATHS,
    ranges: list[tuple[np.ndarray, np.ndarray]] | None = None,
    max_square_products: int = DEFAULT_MAX_SQUARE_PRODUCTS,
    network_form: str = "native",
) -> LipschitzProblem:
    """The binary POPs whose maxima bound the target's quantity (:meth:`Target.quantity`): one
    norm-gradient polynomial per target row, split into POPs by :meth:`Norm.split_pops`; for
    the network's constant in a norm with :meth:`Norm.network_pops` (ℓ1) and ``network_form``
    ``"native"``, one polynomial with the output signs as variables instead (tighter, one degree
    higher; ``"rows"`` combines per-row POPs, cheaper on wide deep nets).

    ``ranges``: the hidden derivative ranges of :func:`derivative_ranges` for this ``domain``
    (computed when ``None``; pass them to share one interval pass between several consumers).
    ``max_square_products``: ℓ2 refuses to expand ``Σ_i p_i²`` beyond this many monomial products.
    """
    norm = parse_norm(norm)
    target = target if target is not None else make_target(net)
    if network_form not in ("native", "rows"):
        raise LipoptError(f"network_form must be 'native' or 'rows', got {network_form!r}")
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    if target.is_network and net.output_dim > 1 and norm.has_network_pops and network_form == "native":
        return _network_problem(net, norm, target, domain, max_paths, ranges, max_square_products)
    table = variable_table(net, ranges)
    grads: list[Polynomial] = []
    pops: list[BinaryPOP] = []
    rows: list[int] = []
    for row, (c, label) in enumerate(zip(target.vectors, target.labels, strict=True)):
        P = gradient_polynomial(net, c, max_paths, ranges)
        grads.append(P)
        # a path coefficient is a product of L+1 rounded weights: relative error (L+1)·eps
        path_err = (net.depth + 2) * EPS * box_abs_value(P, table)
        row_pops = norm.split_pops(P, table, net.input_dim, label, path_err, max_square_products)
        pops.extend(row_pops)
        rows.extend([row] * len(row_pops))
    return LipschitzProblem(norm, target, domain, tuple(pops), tuple(rows), tuple(grads), table)


def _network_problem(net, norm, target, domain, max_paths, ranges, max_square_products) -> LipschitzProblem:
    """The network's constant from one polynomial with output variables: ``P(t, s, o) =
    tᵀ J(s)ᵀ o``, split by :meth:`Norm.network_pops` (e.g. ℓ1: ``max_i max_{s,o} (J(s)ᵀ o)_i``)."""
    table = variable_table(net, ranges, outputs=True)
    P = gradient_polynomial(net, None, max_paths, ranges)
    path_err = (net.depth + 3) * EPS * box_abs_value(P, table)
    pops = norm.network_pops(P, table, net.input_dim, "network", path_err, max_square_products)
    return LipschitzProblem(norm, target, domain, tuple(pops), (0,) * len(pops), (P,), table, native=True)
