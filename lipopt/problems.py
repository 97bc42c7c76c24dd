"""Network → polynomial optimization problems (POPs) whose maximum bounds the Lipschitz constant.

For a scalar target ``f = cᵀN`` and input norm ℓp (dual ℓq), ``L_p(f) = sup_x ‖∇f(x)‖_q`` with
``∇f = W_1ᵀ D_1 ⋯ W_Lᵀ D_L W_{L+1}ᵀ c``. Relaxing ``σ'(z_{l,j})`` to ``s_{l,j} ∈ [lo, hi]`` gives

* ℓ∞ input: ``P(t, s) = tᵀ W_1ᵀ diag(s_1) ⋯ diag(s_L) W_{L+1}ᵀ c`` over ``t ∈ [−1,1]^n``;
  multilinear on a box, so the max is at a vertex: ``t = 2u − 1``, ``s = lo + (hi − lo)u``,
  ``u ∈ {0,1}`` (one binary POP per scalar target).
* ℓ1 input: ``max_i |∂f/∂x_i|``: for each coordinate i and sign ±, the POP ``±P_i(s)``.
* ℓ2 input: ``max_s ‖G(s)‖²`` with ``G(s) = W_1ᵀ diag(s_1) ⋯ W_{L+1}ᵀ c``; convex in each
  ``s_j`` separately, so again a vertex maximum; the bound is the square root.

Each POP is over binary ``u`` and carries ``rounding_slack``: a bound on the floating-point
error of its coefficients, added to any certified value downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EPS
from .intervals import hidden_derivative_ranges
from .network import Dense, Network, Residual
from .polynomial import PAD, Polynomial

NORMS = ("inf", "2", "1")
DEFAULT_MAX_PATHS = 20_000_000
# ℓ2: Σ_i p_i(u)² expands Σ_i |p_i|² products of monomials before merging (≈160 bytes and
# ≈0.6 µs each when measured), so this caps the build at about 1.6 GB and a few seconds.
DEFAULT_MAX_SQUARE_PRODUCTS = 10_000_000


def parse_norm(norm: str | float | int) -> str:
    """Canonical norm name: ``"inf"``, ``"2"`` or ``"1"``."""
    key = str(norm).strip().lower().replace("l", "").replace("ℓ", "")
    key = {"infinity": "inf", "∞": "inf", "1.0": "1", "2.0": "2", "oo": "inf"}.get(key, key)
    if key not in NORMS:
        raise LipoptError(f"unknown norm {norm!r}; choose one of: inf, 2, 1")
    return key


# ---------------------------------------------------------------------------------------------
# Target and domain
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Scalar targets ``f_k = c_kᵀ N``; the reported constant is the max over ``k``."""

    vectors: np.ndarray  # (k, out_dim)
    labels: tuple[str, ...]
    kind: str  # "output" | "margin" | "vector" | "all-outputs"

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
    """``--output i`` → ``e_i``; ``--margin i j`` → ``e_i − e_j``; a vector; else every output."""
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
    return Target(np.eye(m), tuple(f"output {i}" for i in range(m)), "all-outputs")


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
class VariableTable:
    """Per variable of the norm-gradient polynomial: kind (``t``/``s``), layer, neuron, range."""

    kind: np.ndarray  # '<U1': "t" or "s"
    layer: np.ndarray  # 0 for t, l ≥ 1 for s_l
    neuron: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return int(len(self.kind))

    def names(self) -> list[str]:
        return [
            f"t{j}" if k == "t" else f"s{l}_{j}"
            for k, l, j in zip(self.kind, self.layer, self.neuron, strict=True)
        ]

    def subset(self, idx: np.ndarray) -> VariableTable:
        return VariableTable(self.kind[idx], self.layer[idx], self.neuron[idx], self.lo[idx], self.hi[idx])


@dataclass(frozen=True)
class BinaryPOP:
    """``max p(u)`` over ``u ∈ {0,1}^n``; ``variables[i]`` says which t/s variable ``u_i`` encodes.

    The true maximum is ≤ any upper bound of ``max p`` plus ``rounding_slack``.
    """

    polynomial: Polynomial
    variables: VariableTable
    label: str
    rounding_slack: float = 0.0

    @property
    def n_vars(self) -> int:
        return self.polynomial.n_vars

    @property
    def degree(self) -> int:
        return self.polynomial.degree


@dataclass(frozen=True)
class LipschitzProblem:
    """``L ≤ transform(max_k max pop_k)``, with ``transform`` ``identity`` or ``sqrt``."""

    norm: str
    target: Target
    domain: Domain | None
    pops: tuple[BinaryPOP, ...]
    transform: str = "identity"
    gradient_polynomials: tuple[Polynomial, ...] = field(default=(), repr=False)
    variables: VariableTable | None = field(default=None, repr=False)

    def combine(self, values: list[float]) -> float:
        """Lipschitz bound from per-POP upper bounds (each already including its slack)."""
        v = max(values)
        if self.transform == "sqrt":
            return float(np.sqrt(max(v, 0.0)) * (1 + 4 * EPS))
        return float(v)


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


def _backward_terms(net: Network, c: np.ndarray, dead: list[np.ndarray] | None, max_paths: int) -> _Terms:
    """Expand ``∇f = J(s)ᵀ c`` symbolically: rows = input coordinates, one term per path."""
    offsets = _site_offsets(net)
    c = np.asarray(c, dtype=float).ravel()
    start = np.flatnonzero(c)
    terms = _Terms(start, [], c[start])
    k = net.depth
    last = net.layers[-1]

    def check(t: _Terms) -> _Terms:
        if len(t.rows) > max_paths:
            raise LipoptError(
                f"the norm-gradient polynomial has more than {max_paths:,} monomials (paths); use "
                "a smaller network, a local domain, or raise max_paths"
            )
        return t

    def site(t: _Terms) -> _Terms:
        nonlocal k
        k -= 1
        return t.times_site(int(offsets[k]), None if dead is None else dead[k])

    for layer in reversed(net.layers):
        if layer is not last:
            terms = site(terms)
        if isinstance(layer, Residual):
            skip = terms.pull(layer.skip)
            inner = check(terms.pull(layer.out))
            for d in reversed(layer.inner):
                inner = check(site(inner).pull(d.weight))
            terms = check(skip.plus(inner).merged())
        else:
            terms = check(terms.pull(layer.weight))
    return terms


def count_paths(net: Network, c: np.ndarray) -> int:
    """Number of non-zero input→output paths of ``P`` before merging (exact for chains; an upper
    bound with residual blocks, whose branches may merge)."""
    w_out = np.asarray(net.layers[-1].weight.T @ np.asarray(c, dtype=float)).ravel()
    last = Dense(sp.csr_matrix((w_out != 0).astype(float)[None, :]), np.zeros(1))
    # same structure, weights replaced by their 0/1 patterns, output layer by the pattern of Wᵀc
    pattern = Network((*(_pattern_block(layer) for layer in net.layers[:-1]), last), name=net.name)
    ones = [np.ones((1, size)) for size in net.hidden_sizes]
    return int(round(float(pattern.backward(np.ones((1, 1)), ones).sum())))


def _pattern(m):
    if m is None:
        return None
    p = _as_csr(m)
    return sp.csr_matrix((np.ones_like(p.data), p.indices, p.indptr), p.shape)


def _pattern_block(layer):
    if isinstance(layer, Residual):
        return Residual(
            tuple(Dense(_pattern(d.weight), d.bias, d.activation) for d in layer.inner),
            _pattern(layer.skip),
            _pattern(layer.out),
            layer.activation,
        )
    return Dense(_pattern(layer.weight), layer.bias, layer.activation)


def variable_table(net: Network, ranges: list[tuple[np.ndarray, np.ndarray]]) -> VariableTable:
    """Variables ``t_0 … t_{n0−1}``, then the ``s`` variables of every site, in that order."""
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
    return VariableTable(
        np.concatenate(kinds),
        np.concatenate(layers),
        np.concatenate(neurons),
        np.concatenate(los),
        np.concatenate(his),
    )


def gradient_polynomial(
    net: Network,
    c: np.ndarray,
    max_paths: int = DEFAULT_MAX_PATHS,
    ranges: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Polynomial:
    """``P(t, s) = tᵀ J(s)ᵀ c`` over the variables of :func:`variable_table`.

    For a chain ``J(s)ᵀ c = W_1ᵀ diag(s_1) ⋯ diag(s_L) W_{L+1}ᵀ c``: one monomial per non-zero
    path, built backwards from the output by vectorized CSR expansion (every partial path at
    neuron ``i`` is repeated once per non-zero ``W[i, j]``). Residual blocks add the skip branch
    ``Aᵀ`` beside the inner chain, giving lower-degree monomials. With ``ranges``, neurons whose
    derivative is identically 0 are pruned.
    """
    n_paths = count_paths(net, c)  # refuse before allocating anything (an upper bound with residuals)
    if n_paths > max_paths:
        raise LipoptError(
            f"the norm-gradient polynomial has {n_paths:,} monomials (paths), above the limit of "
            f"{max_paths:,}; use a smaller network, a local domain, or raise max_paths"
        )
    n_vars = net.input_dim + sum(net.hidden_sizes)
    dead = None if ranges is None else [(lo == 0) & (hi == 0) for lo, hi in ranges]
    terms = _backward_terms(net, c, dead, max_paths)
    supports = np.stack([*terms.cols, terms.rows], axis=1).astype(np.int32)  # rows are the t's
    return Polynomial.from_terms(supports, terms.coef, n_vars)


def derivative_ranges(net: Network, domain: Domain | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[σ'_lo, σ'_hi]`` per hidden neuron over the domain: CROWN pre-activation bounds, then
    :meth:`~lipopt.network.Activation.derivative_range` (rounded outward for smooth σ)."""
    box = None if domain is None else (domain.lo, domain.hi)
    return hidden_derivative_ranges(net, box)


def _binarize(poly: Polynomial, variables: VariableTable, label: str, extra_error: float = 0.0) -> BinaryPOP:
    """Substitute ``v = lo + (hi − lo) u`` for every variable, drop fixed ones, renumber."""
    poly_u, abs_mass = poly.substitute_affine(variables.lo, variables.hi - variables.lo)
    used = poly_u.variables_used()
    free = used[variables.hi[used] > variables.lo[used]]
    poly_u, keep = poly_u.restrict(free)
    # Each expanded term is a product of ≤ 2(D+1) rounded factors, then merged by naive
    # summation: error ≤ (2(D+1) + summands) · eps · Σ|terms| (Higham, §3.1 and §4.2).
    width = poly.supports.shape[1]
    n_expanded = poly.num_terms << width  # upper bound on summands merged into one coefficient
    slack = (4 * (width + 2) + n_expanded) * EPS * abs_mass
    slack += 16 * EPS * poly_u.abs_coef_sum() + extra_error
    return BinaryPOP(poly_u, variables.subset(keep), label, float(slack))


def build_problem(
    net: Network,
    norm: str = "inf",
    target: Target | None = None,
    domain: Domain | None = None,
    max_paths: int = DEFAULT_MAX_PATHS,
    ranges: list[tuple[np.ndarray, np.ndarray]] | None = None,
    max_square_products: int = DEFAULT_MAX_SQUARE_PRODUCTS,
) -> LipschitzProblem:
    """The binary POPs whose maxima bound ``L_norm(f)`` for every scalar target in ``target``.

    ``ranges``: the hidden derivative ranges of :func:`derivative_ranges` for this ``domain``
    (computed when ``None``; pass them to share one interval pass between several consumers).
    ``max_square_products``: ℓ2 refuses to expand ``Σ_i p_i²`` beyond this many monomial products.
    """
    norm = parse_norm(norm)
    target = target if target is not None else make_target(net)
    if ranges is None:
        ranges = derivative_ranges(net, domain)
    table = variable_table(net, ranges)
    n0 = net.input_dim
    grads: list[Polynomial] = []
    pops: list[BinaryPOP] = []
    for c, label in zip(target.vectors, target.labels, strict=True):
        P = gradient_polynomial(net, c, max_paths, ranges)
        grads.append(P)
        # a path coefficient is a product of L+1 rounded weights: relative error (L+1)·eps
        path_err = (net.depth + 2) * EPS * _box_abs_value(P, table)
        if norm == "inf":
            pops.append(_binarize(P, table, label, path_err))
        else:
            pops.extend(
                _coordinate_pops(P, table, n0, label, norm, path_err, max_square_products)
            )
    return LipschitzProblem(
        norm,
        target,
        domain,
        tuple(pops),
        "sqrt" if norm == "2" else "identity",
        tuple(grads),
        table,
    )


def _box_abs_value(P: Polynomial, table: VariableTable) -> float:
    """``2 Σ_k |c_k| Π_{i∈S_k} m_i`` with ``m_i = max(|lo_i|, |hi_i|)``: bounds ``Σ_k |c_k u^{S_k}|``
    on the box (the factor 2 covers this evaluation's own rounding). A relative coefficient error
    ``θ`` then moves ``P`` by at most ``θ`` times it anywhere on the box."""
    m = np.maximum(np.abs(table.lo), np.abs(table.hi))
    magnitude = Polynomial(P.supports, np.abs(P.coef), P.n_vars).evaluate(m[None, :])
    return 2.0 * float(magnitude[0])


def _split_by_input(P: Polynomial, n0: int) -> list[Polynomial]:
    """``P = Σ_i t_i P_i(s)``: return ``P_i`` (over the same variable numbering, no t)."""
    width = P.supports.shape[1]
    first = width - P.degrees  # rows are sorted with padding first: t is the first variable
    rows = np.arange(P.num_terms)
    t_idx = P.supports[rows, first]
    rest = P.supports.copy()
    rest[rows, first] = PAD
    order = np.argsort(t_idx, kind="stable")
    bounds = np.searchsorted(t_idx[order], np.arange(n0 + 1))
    return [
        Polynomial.from_terms(rest[order[a:b]], P.coef[order[a:b]], P.n_vars)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _coordinate_pops(
    P: Polynomial,
    table: VariableTable,
    n0: int,
    label: str,
    norm: str,
    path_err: float,
    max_square_products: int = DEFAULT_MAX_SQUARE_PRODUCTS,
) -> list[BinaryPOP]:
    parts = _split_by_input(P, n0)
    if norm == "1":
        pops = []
        for i, Pi in enumerate(parts):
            if Pi.num_terms == 0:
                continue
            pops.append(_binarize(Pi, table, f"{label}, input {i}, +", path_err))
            pops.append(_binarize(-Pi, table, f"{label}, input {i}, −", path_err))
        return pops or [BinaryPOP(Polynomial.constant(0.0, 0), table.subset(np.arange(0)), label)]
    # ℓ2: ‖G(s)‖² = Σ_i P_i(s)² after binarization (u² = u on the binary variables).
    binary = [_binarize(Pi, table, label) for Pi in parts if Pi.num_terms]
    if not binary:
        return [BinaryPOP(Polynomial.constant(0.0, 0), table.subset(np.arange(0)), label)]
    n_products = sum(p.polynomial.num_terms**2 for p in binary)
    if n_products > max_square_products:
        raise LipoptError(
            f"the ℓ2 norm-gradient POP ({label}) would expand {n_products:,} products of monomials "
            f"(limit {max_square_products:,}, about {160 * n_products / 1e9:.1f} GB); for ℓ2 use "
            "--method lipsdp or sdp-ball, a local domain (--box, or --center with --eps), or "
            "a smaller network"
        )
    return [_sum_of_squares(binary, table, label, path_err)]


def _sum_of_squares(parts: list[BinaryPOP], table: VariableTable, label: str, path_err: float) -> BinaryPOP:
    """``Σ_i p_i(u)²`` over the union of the parts' binary variables (reduced by u² = u)."""
    # Put every part on the common variable numbering of the table first.
    union = np.unique(np.concatenate([_table_index(table, p.variables) for p in parts]))
    total: Polynomial | None = None
    mass = 0.0
    slack_lin = 0.0
    for p in parts:
        glob = _table_index(table, p.variables)
        local = np.searchsorted(union, glob)
        s = p.polynomial.supports
        lookup = np.append(local, PAD)  # padding (and constant parts) map to PAD
        remapped = lookup[np.where(s == PAD, len(local), s)].astype(np.int32)
        q = Polynomial.from_terms(remapped, p.polynomial.coef, len(union))
        sq = q.multiply(q, binary=True)
        mass += q.abs_coef_sum() ** 2
        slack_lin += p.rounding_slack * (2 * q.abs_coef_sum() + p.rounding_slack)
        total = sq if total is None else total + sq
    assert total is not None
    n_products = sum(p.polynomial.num_terms**2 for p in parts)
    slack = (8 + n_products) * EPS * mass + slack_lin + 2 * path_err * np.sqrt(mass) + path_err**2
    return BinaryPOP(total, table.subset(union), label, float(slack))


def _table_index(table: VariableTable, sub: VariableTable) -> np.ndarray:
    """Global table positions of the variables in ``sub`` (matched by kind, layer, neuron)."""
    key = lambda t: np.where(t.kind == "t", 0, t.layer) * 10_000_000 + t.neuron  # noqa: E731
    full = key(table)
    order = np.argsort(full)
    return order[np.searchsorted(full[order], key(sub))]
