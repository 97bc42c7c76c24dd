"""Binary polynomial optimization problems: ``max p(u)`` over ``u ∈ {0,1}^n``.

The norm-gradient polynomial ``P(t, s)`` lives on a box (``t ∈ [−1, 1]``, ``s ∈ [lo, hi]``);
:func:`binarize` substitutes ``v = lo + (hi − lo) u`` for every variable and renumbers, keeping a
bound on the floating-point error of the new coefficients (``rounding_slack``). The norms
(:mod:`lipopt.norms`) split ``P`` into such POPs with :func:`split_by_input` and
:func:`sum_of_squares`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .floats import EPS
from .polynomial import PAD, Polynomial


@dataclass(frozen=True)
class VariableTable:
    """Per variable of the norm-gradient polynomial: kind (``t`` input, ``s`` site, ``o`` output),
    layer, neuron, range."""

    kind: np.ndarray  # '<U1': "t", "s" or "o"
    layer: np.ndarray  # 0 for t, l ≥ 1 for s_l, L + 1 for o
    neuron: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return int(len(self.kind))

    def names(self) -> list[str]:
        return [
            f"{k}{j}" if k in ("t", "o") else f"s{l}_{j}"
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


def binarize(poly: Polynomial, variables: VariableTable, label: str, extra_error: float = 0.0) -> BinaryPOP:
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


def box_abs_value(P: Polynomial, table: VariableTable) -> float:
    """``2 Σ_k |c_k| Π_{i∈S_k} m_i`` with ``m_i = max(|lo_i|, |hi_i|)``: bounds ``Σ_k |c_k u^{S_k}|``
    on the box (the factor 2 covers this evaluation's own rounding). A relative coefficient error
    ``θ`` then moves ``P`` by at most ``θ`` times it anywhere on the box."""
    m = np.maximum(np.abs(table.lo), np.abs(table.hi))
    magnitude = Polynomial(P.supports, np.abs(P.coef), P.n_vars).evaluate(m[None, :])
    return 2.0 * float(magnitude[0])


def split_by_input(P: Polynomial, n0: int) -> list[Polynomial]:
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


def sum_of_squares(parts: list[BinaryPOP], table: VariableTable, label: str, path_err: float) -> BinaryPOP:
    """``Σ_i p_i(u)²`` over the union of the parts' binary variables (reduced by u² = u)."""
    # Put every part on the common variable numbering of the table first.
    union = np.unique(np.concatenate([table_index(table, p.variables) for p in parts]))
    total: Polynomial | None = None
    mass = 0.0
    slack_lin = 0.0
    for p in parts:
        glob = table_index(table, p.variables)
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


def table_index(table: VariableTable, sub: VariableTable) -> np.ndarray:
    """Global table positions of the variables in ``sub`` (matched by kind, layer, neuron)."""
    key = lambda t: np.where(t.kind == "t", 0, t.layer) * 10_000_000 + t.neuron  # noqa: E731
    full = key(table)
    order = np.argsort(full)
    return order[np.searchsorted(full[order], key(sub))]


def empty_pop(table: VariableTable, label: str) -> BinaryPOP:
    """The POP of the zero polynomial (no variables)."""
    return BinaryPOP(Polynomial.constant(0.0, 0), table.subset(np.arange(0)), label)
