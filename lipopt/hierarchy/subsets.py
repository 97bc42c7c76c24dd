"""Subsets of variables: the moment-key codec and the Sherali–Adams row generator.

Shared by the LP (:mod:`lipopt.hierarchy.lp`) and moment (:mod:`lipopt.hierarchy.sdp`)
hierarchies, which both index pseudo-moments ``y_S`` by subsets ``S`` of a clique.

**Keys.** A subset ``{a_1 < … < a_r}`` of ``n`` variables is the base-``(n+1)`` number with digits
``a_i + 1`` (0 = padding, so a key does not depend on the padded width): one int64, or a
``(hi, lo)`` record of two int64 words when ``(n+1)^width ≥ 2^62`` (:class:`Codec`). Keys sort like
the subsets' index tuples (shorter first), so one ``np.unique`` numbers all the moments.

**Sherali–Adams rows.** For a clique ``C``, every ``U ⊆ C`` with ``|U| = min(k, |C|)`` and every
split ``U = S ⊔ T``, the product ``Π_S u Π_T (1 − u) = Σ_{R⊆T} (−1)^{|R|} u^{S∪R}`` is ≥ 0 on
``{0,1}^n`` (a pseudo-expectation row ``Σ_{R⊆T} (−1)^{|R|} y_{S∪R} ≥ 0``). Smaller ``U`` are
implied (``q_{S,T} = q_{S+i,T} + q_{S,T+i}``). With a clique tree, a set inside the separator
``C_i ∩ C_parent`` is also a set of the parent, so it is generated there only
(:func:`sa_sets`). A row family is a set array ``U`` (``nU × u``) with a template ``T`` over the
subset masks of ``U`` (:func:`sa_template`); :func:`tile_rows` turns families into a CSR matrix
without a loop over rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError
from ..polynomial import PAD

_INT_LIMIT = 1 << 62


def comb(n: int, r: int) -> int:
    return math.comb(n, r) if 0 <= r <= n else 0


def popcount(x: int) -> int:
    return bin(x).count("1")


def combinations(m: int, r: int) -> np.ndarray:
    """All ``r``-subsets of ``range(m)``, lexicographic, as an ``(C(m, r), r)`` int64 array."""
    if r == 0:
        return np.zeros((1, 0), dtype=np.int64)
    if r > m:
        return np.zeros((0, r), dtype=np.int64)
    cur = np.arange(m - r + 1, dtype=np.int64)[:, None]
    for j in range(1, r):
        last = cur[:, -1]
        counts = (m - r + j) - last  # next element ranges over last+1 … m−r+j
        rep = np.repeat(np.arange(len(cur)), counts)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        cur = np.column_stack([cur[rep], np.repeat(last + 1, counts) + within])
    return cur


def product_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Every row of ``a`` next to every row of ``b``."""
    return np.hstack([np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1))])


def subsets_up_to(clique: np.ndarray, d: int) -> np.ndarray:
    """All subsets of ``clique`` of size ≤ ``d`` as rows (ascending, ``PAD`` in front), ``∅`` first;
    ordered by size, then lexicographically. Shape ``(Σ_{r≤d} C(|clique|, r), max(d, 1))``."""
    clique = np.asarray(clique, dtype=np.int64)
    width = max(d, 1)
    rows = [np.full((1, width), PAD, dtype=np.int64)]
    for r in range(1, min(d, len(clique)) + 1):
        sel = clique[combinations(len(clique), r)]
        rows.append(np.hstack([np.full((len(sel), width - r), PAD, dtype=np.int64), sel]))
    return np.vstack(rows)


class Codec:
    """Sorted index tuples of length ≤ ``width`` over ``n_vars`` variables ↔ sortable keys."""

    WIDE = np.dtype([("h", np.int64), ("l", np.int64)])

    def __init__(self, n_vars: int, width: int):
        self.base = n_vars + 1
        self.width = width
        self.wide = self.base**width >= _INT_LIMIT
        self.split = width // 2
        if self.wide and self.base ** (width - self.split) >= _INT_LIMIT:
            raise LipoptError(
                f"subsets of up to {width} of {n_vars} variables are too many to index moments; use "
                "a lower level or order, or a local domain with fewer free neurons"
            )

    def encode(self, cols: Sequence[np.ndarray], n: int) -> np.ndarray:
        """Keys of the ``n`` tuples whose ascending entries are the arrays ``cols``."""
        digits = np.column_stack([c + 1 for c in cols]) if len(cols) else np.zeros((n, 0), np.int64)
        return self.encode_padded(digits)

    def encode_padded(self, digits: np.ndarray) -> np.ndarray:
        """Keys of left-padded digit rows (``(N, w ≤ width)``, 0 = padding, else index + 1)."""
        digits = np.asarray(digits, dtype=np.int64)
        if digits.shape[1] > self.width:  # leading padding columns
            digits = digits[:, digits.shape[1] - self.width :]
        if not self.wide:
            key = np.zeros(len(digits), dtype=np.int64)
            for j in range(digits.shape[1]):
                key = key * self.base + digits[:, j]
            return key
        full = np.zeros((len(digits), self.width), dtype=np.int64)
        full[:, self.width - digits.shape[1] :] = digits
        out = np.zeros(len(digits), dtype=self.WIDE)
        for name, cols in (("h", range(self.split)), ("l", range(self.split, self.width))):
            part = np.zeros(len(digits), dtype=np.int64)
            for j in cols:
                part = part * self.base + full[:, j]
            out[name] = part
        return out

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Keys of ``PAD``-padded ascending index rows (``Polynomial.supports`` style)."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.encode_padded(np.where(rows == PAD, 0, rows + 1))

    def decode(self, keys: np.ndarray) -> np.ndarray:
        """Padded int32 supports (``PAD`` on the left) of ``keys``."""
        out = np.zeros((len(keys), self.width), dtype=np.int64)
        if not self.wide:
            k = keys.astype(np.int64).copy()
            for j in range(self.width - 1, -1, -1):
                k, out[:, j] = np.divmod(k, self.base)
        else:
            h, lo = keys["h"].copy(), keys["l"].copy()
            for j in range(self.width - 1, self.split - 1, -1):
                lo, out[:, j] = np.divmod(lo, self.base)
            for j in range(self.split - 1, -1, -1):
                h, out[:, j] = np.divmod(h, self.base)
        return (out - 1).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Sherali–Adams rows
# ---------------------------------------------------------------------------------------------
def sa_template(u: int) -> np.ndarray:
    """``T[σ, μ]``: coefficient of ``u^{U[μ]}`` in ``q_{U[σ], U∖U[σ]}`` (masks over the ``u``
    positions of a set ``U``): ``(−1)^{|μ∖σ|}`` if ``σ ⊆ μ``, else 0. Column 0 is ``a0``."""
    mu = np.arange(1 << u)
    sig = mu[:, None]
    inside = (sig & mu[None, :]) == sig
    parity = np.array([popcount(x) for x in range(1 << u)])
    sign = np.where(parity[mu[None, :] & ~sig] % 2 == 1, -1.0, 1.0)
    return np.where(inside, sign, 0.0)


def _sets_outside(clique: np.ndarray, in_sep: np.ndarray, u: int) -> np.ndarray:
    """All ``u``-subsets of ``clique`` (ascending rows) with an element outside the separator."""
    P, Q = np.flatnonzero(~in_sep), np.flatnonzero(in_sep)
    blocks = [
        product_rows(P[combinations(len(P), j)], Q[combinations(len(Q), u - j)])
        for j in range(1, min(u, len(P)) + 1)
        if u - j <= len(Q)
    ]
    if not blocks:
        return np.zeros((0, u), dtype=np.int64)
    return clique[np.sort(np.vstack(blocks), axis=1)]


def sa_sets(
    cliques: Sequence[np.ndarray],
    separators: Sequence[np.ndarray] | None,
    k: int,
    codec: Codec,
    *,
    sort: bool = False,
) -> dict[int, np.ndarray]:
    """The sets ``U`` of level ``k`` (``|U| = min(k, |C|)`` per clique), grouped by size and
    deduplicated, in order of first occurrence (``sort``: in key order). ``separators[i]`` (a
    clique tree's ``C_i ∩ C_parent``) skips the sets that the parent generates."""
    groups: dict[int, list[np.ndarray]] = {}
    for i, clique in enumerate(cliques):
        clique = np.asarray(clique, dtype=np.int64)
        u = min(k, len(clique))
        if u > 0:
            sep = np.zeros(0, np.int64) if separators is None else separators[i]
            in_sep = np.isin(clique, sep, assume_unique=True)
            groups.setdefault(u, []).append(_sets_outside(clique, in_sep, u))
    out = {}
    for u, blocks in sorted(groups.items()):
        U = np.vstack(blocks)
        _, first = np.unique(codec.encode([U[:, j] for j in range(u)], len(U)), return_index=True)
        out[u] = U[first if sort else np.sort(first)]
    return out


def tile_rows(
    blocks: Sequence[tuple[np.ndarray, np.ndarray]], codec: Codec
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Rows ``a0 + A y ≥ 0`` of the families ``(U, T)``: row ``(U_i, σ)`` is
    ``T[σ, 0] + Σ_{μ≥1} T[σ, μ] y_{U_i[μ]}``. Returns ``A`` (CSR over the sorted moment keys of
    the masks used), ``a0`` and those keys."""
    blocks = [(U, T) for U, T in blocks if len(U) and len(T)]
    if not blocks:
        return sp.csr_matrix((0, 0)), np.zeros(0), np.zeros(0, dtype=np.int64)
    all_keys, used_masks = [], []
    for U, T in blocks:
        masks = np.flatnonzero(np.any(T[:, 1:] != 0, axis=0)) + 1
        used_masks.append(masks)
        K = [codec.encode([U[:, j] for j in range(U.shape[1]) if (mu >> j) & 1], len(U)) for mu in masks]
        all_keys.append(np.stack(K, axis=1).ravel())
    keys, inverse = np.unique(np.concatenate(all_keys), return_inverse=True)
    inverse = inverse.ravel().astype(np.int32 if len(keys) < 2**31 else np.int64)
    data, indices, counts, a0 = [], [], [], []
    offset = 0
    for (U, T), masks in zip(blocks, used_masks, strict=True):
        nU, nm = len(U), len(masks)
        colid = inverse[offset : offset + nU * nm].reshape(nU, nm)
        offset += nU * nm
        where = np.full(T.shape[1], -1)
        where[masks] = np.arange(nm)
        r, mu = np.nonzero(T[:, 1:])
        mu = mu + 1
        data.append(np.tile(T[r, mu], nU))
        indices.append(colid[:, where[mu]].ravel())
        counts.append(np.tile(np.bincount(r, minlength=T.shape[0]), nU))
        a0.append(np.tile(T[:, 0], nU))
    counts_all = np.concatenate(counts)
    indptr = np.zeros(len(counts_all) + 1, dtype=np.int64)
    np.cumsum(counts_all, out=indptr[1:])
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    A = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), indptr), shape=(len(counts_all), len(keys))
    )
    return A, np.concatenate(a0), keys
