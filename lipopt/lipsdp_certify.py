r"""Float-safe check of the LipSDP-Neuron LMI of a chain by a block Cholesky (no eigen-decomposition).

Setting
-------
For a chain ``x ↦ W_{L+1} σ(W_L ⋯ σ(W_1 x))`` with per-neuron slopes ``[α_j, β_j]`` and
multipliers ``t ≥ 0``, ``S = −M(ρ, t)`` is block tridiagonal over ``(x_0, x_1, …, x_L)``:

.. math::

    S_{00} = \rho I + W_1^\top U_1 W_1,\quad
    S_{ll} = 2T_l + W_{l+1}^\top U_{l+1} W_{l+1}\ (l<L),\quad
    S_{LL} = 2T_L - W_{L+1}^\top W_{L+1},\quad
    S_{l-1,l} = -W_l^\top V_l,

``U_l = diag(2αβ t)``, ``V_l = diag((α+β) t)``. ``M ⪯ 0`` (hence ``L_2 ≤ √ρ``) iff ``S ⪰ 0``.

The test
--------
1. ``Ŝ = fl(S)`` is formed blockwise; every computed entry is a sum of at most ``K`` products of
   exact floats, so ``|Ŝ − S| ≤ γ_K |S|_abs`` entrywise (``|S|_abs`` the same assembly with
   absolute values; ``γ_K = K·eps/(1 − K·eps)`` with ``eps = 2^-52``, twice the unit roundoff,
   Higham Lemma 3.4/§3.5), applied as an operator ``w ↦ F(w)``.
2. A diagonal shift ``c > 0`` is subtracted and ``Â = fl(Ŝ − diag(c))`` (with ``ρ'`` on the
   input block; that rounding, ``≤ eps·(|Ŝ_ii| + c_i + ρ')``, is added to the requirement below) is
   factored by a **block Cholesky in reverse layer order** (hidden layers from the
   output back, the input block last): ``R_L = chol(Â_LL)``, ``X_l = R_l^{-T} Â_{l, l-1}``,
   ``R_{l-1} = chol(Â_{l-1,l-1} − X_lᵀ X_l)``. It never fills outside the band, and every entry
   of ``R`` is an inner product of at most ``k = max_l(n_l + n_{l-1}) + 4`` terms, so
   (Higham, Thm 10.3, any summation order) ``RᵀR = Â + Δ`` with ``|Δ| ≤ γ_k |R|ᵀ|R|``.
3. Then ``S = RᵀR − Δ + diag(c) + (S − Ŝ)``, and ``S ⪰ 0`` follows when ``diag(c) − Δ + (S − Ŝ)``
   is diagonally dominant after the similarity ``diag(w)`` (``w > 0``; Gershgorin on
   ``diag(w)^{-1} (·) diag(w)``), i.e. when

   .. math:: c_i \ge \big(\gamma_k (|R|^\top |R| w)_i + F(w)_i\big) / w_i \quad\text{for all } i,

   checked **a posteriori** with the computed ``R`` (the matrix–vector products of nonnegative
   terms are inflated by ``1 + (m + 4)·eps`` for their own rounding). ``w_i = √Ŝ_ii`` makes the
   test invariant under diagonal scaling, like Cholesky itself (Demmel).

``ρ'`` is the only free number: the input block comes last, so the hidden factors do not depend
on it; ``ρ'`` is set from the smallest eigenvalue of the ``n_0 × n_0`` Schur complement (a
guide, not part of the argument) and raised until the last block factors. The argument uses
only Cholesky factorisations and matrix–vector products: ``O(Σ n_l³ + n_0³)`` flops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .floats import EPS, TINY, round_up

__all__ = ["ChainCheck", "certificate_bytes", "certify_blocks", "certify_chain"]

Matrix = np.ndarray | sp.spmatrix | sp.sparray


@dataclass
class ChainCheck:
    """Result of :func:`certify_chain`: ``rho`` passes iff ``certified``."""

    certified: bool
    rho: float
    shift_ratio: float = math.nan
    attempts: int = 0
    why: str = ""
    details: dict[str, float] = field(default_factory=dict)


def certificate_bytes(sizes: Sequence[int]) -> int:
    """Peak working memory of :func:`certify_chain` for block sizes ``[n_0, n_1, …, n_L]``: each
    dense diagonal block with its copies and factor (8 per block), each coupling with its solve
    (4). The input block is the *unreduced* ``n_0 × n_0`` one (the solver's reduction is not
    used here), so a wide input dominates."""
    n = np.asarray(list(sizes), dtype=float)
    return int(8 * (8 * float(np.sum(n * n)) + 4 * float(np.sum(n[:-1] * n[1:]))))


def _gamma(k: int) -> float:
    return k * EPS / (1.0 - k * EPS)


def _dense(w: Matrix) -> np.ndarray:
    out = w.toarray() if sp.issparse(w) else np.asarray(w)
    return out if np.iscomplexobj(out) else out.astype(float, copy=False)


class _Blocks:
    """The float blocks of ``Ŝ`` (without ``ρ``) and the absolute-value operator ``|S|_abs``."""

    def __init__(self, weights: Sequence[Matrix], alpha, beta, t, weight_error=None) -> None:
        self.W = list(weights)
        self.L = len(self.W) - 1
        self.sizes = [self.W[0].shape[1]] + [w.shape[0] for w in self.W[:-1]]
        self.t = [np.maximum(np.asarray(x, dtype=float), 0.0) for x in t]
        self.u = [
            2.0 * np.asarray(a) * np.asarray(b) * x for a, b, x in zip(alpha, beta, self.t, strict=True)
        ]
        self.v = [(np.asarray(a) + np.asarray(b)) * x for a, b, x in zip(alpha, beta, self.t, strict=True)]
        self.absW = [abs(w) if sp.issparse(w) else np.abs(w) for w in self.W]
        # |W_exact| ≤ |Ŵ| + E entrywise when the weights themselves carry an error bound E
        self.absW_up = (
            self.absW
            if weight_error is None
            else [a + np.asarray(e, dtype=float) for a, e in zip(self.absW, weight_error, strict=True)]
        )
        self.complex = any(np.iscomplexobj(w.data if sp.issparse(w) else w) for w in self.W)
        self.D = [self._diag_block(l) for l in range(self.L + 1)]
        # O[l] = S_{l-1, l} (n_{l-1} × n_l), l = 1..L
        self.O = [None] + [
            -(_dense(self.W[l - 1]).conj().T * self.v[l - 1][None, :]) for l in range(1, self.L + 1)
        ]
        longest = max([self.sizes[0], *[w.shape[0] for w in self.W]])
        # complex products and sums: a few real roundings each (Higham §3.6); budget 4× the count
        self.gamma_form = _gamma((4 if self.complex else 1) * (longest + 8))

    def _diag_block(self, l: int) -> np.ndarray:
        n = self.sizes[l]
        out = np.zeros((n, n), dtype=complex if self.complex else float)
        if l < self.L:
            u = self.u[l]
            if np.any(u != 0.0):
                Wd = _dense(self.W[l])
                out = out + Wd.conj().T @ (u[:, None] * Wd)
        else:
            Wd = _dense(self.W[self.L])
            out = out - Wd.conj().T @ Wd
        if l > 0:
            out[np.diag_indices(n)] += 2.0 * self.t[l - 1]
        return 0.5 * (out + out.conj().T)

    def form_error(self, w: list[np.ndarray], rho: float) -> list[np.ndarray]:
        """``F(w) ≥ |S_exact − Ŝ| w``: rounding ``γ|S|_abs`` plus, with weight errors ``E``, the
        growth ``|S|_abs(|Ŵ|+E) − |S|_abs(|Ŵ|)`` (the assembly is monotone in ``|W|``)."""
        base = self.abs_apply(w, rho, self.absW)
        if self.absW_up is self.absW:
            return [self.gamma_form * b for b in base]
        up = self.abs_apply(w, rho, self.absW_up)
        return [
            (self.gamma_form + 4 * EPS) * u + np.maximum(u - b, 0.0) for u, b in zip(up, base, strict=True)
        ]

    def abs_apply(self, w: list[np.ndarray], rho: float, absW: list | None = None) -> list[np.ndarray]:
        """``|S|_abs w`` blockwise (an entrywise upper bound on ``|S|`` applied to ``w ≥ 0``)."""
        absW = self.absW if absW is None else absW
        out = []
        for l in range(self.L + 1):
            y = np.zeros(self.sizes[l])
            if l < self.L and np.any(self.u[l] != 0.0):
                y += absW[l].T @ (np.abs(self.u[l]) * (absW[l] @ w[l]))
            if l == self.L:
                y += absW[l].T @ (absW[l] @ w[l])
            if l > 0:
                y += 2.0 * self.t[l - 1] * w[l] + np.abs(self.v[l - 1]) * (absW[l - 1] @ w[l - 1])
            if l < self.L:
                y += absW[l].T @ (np.abs(self.v[l]) * w[l + 1])
            if l == 0:
                y += abs(rho) * w[0]
            out.append(np.asarray(y).ravel())
        return out


def _factor(blocks: _Blocks, c: list[np.ndarray], rho_guess: float) -> tuple[list, list, float, str]:
    """Reverse-order block Cholesky of ``Ŝ − diag(c)`` with ``ρ'`` on the input block."""
    L = blocks.L
    R: list = [None] * (L + 1)
    X: list = [None] * (L + 1)  # X[l] = R_l^{-T} Â_{l, l-1}
    carry = None
    for l in range(L, -1, -1):
        A = blocks.D[l].copy()
        A[np.diag_indices(A.shape[0])] -= c[l]
        if carry is not None:
            A -= carry
        if l == 0:
            return R, X, *_factor_input(A, rho_guess, R)
        try:
            R[l] = sla.cholesky(A, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            return R, X, math.nan, f"hidden layer {l} is not strictly feasible for these multipliers"
        X[l] = sla.solve_triangular(R[l], blocks.O[l].conj().T, trans="C", check_finite=False)
        carry = X[l].conj().T @ X[l]
    raise AssertionError("unreachable")


def _factor_input(A: np.ndarray, rho_guess: float, R: list) -> tuple[float, str]:
    """Factor ``A + ρ'I`` with ``ρ' = ρ_guess`` if it passes, else from ``λ_min(A)`` (a guide)."""
    A = 0.5 * (A + A.conj().T)
    n = A.shape[0]
    try:
        R[0] = sla.cholesky(A + rho_guess * np.eye(n), lower=False, check_finite=False)
        return rho_guess, ""
    except np.linalg.LinAlgError:
        pass
    lam = float(sla.eigh(A, eigvals_only=True, subset_by_index=[0, 0], check_finite=False)[0])
    rho = max(rho_guess, -lam + 1e-12 * abs(lam) + TINY)
    for _ in range(60):
        try:
            R[0] = sla.cholesky(A + rho * np.eye(n), lower=False, check_finite=False)
            return rho, ""
        except np.linalg.LinAlgError:
            rho = round_up(rho * (1.0 + 1e-9) + 1e-12 * abs(lam) + 4 * TINY, 4)
    return math.nan, "the input block did not factor"


def _abs_R_apply(R: list, X: list, w: list[np.ndarray]) -> list[np.ndarray]:
    """``|R|ᵀ(|R| w)`` for the block factor (block row ``l`` holds ``R_l`` and ``X_l``)."""
    L = len(R) - 1
    y = [np.abs(R[l]) @ w[l] + (np.abs(X[l]) @ w[l - 1] if l > 0 else 0.0) for l in range(L + 1)]
    return [np.abs(R[l]).T @ y[l] + (np.abs(X[l + 1]).T @ y[l + 1] if l < L else 0.0) for l in range(L + 1)]


def certify_chain(
    weights: Sequence[Matrix],
    alpha: Sequence[np.ndarray],
    beta: Sequence[np.ndarray],
    t: Sequence[np.ndarray],
    rho: float,
    *,
    attempts: int = 4,
    weight_error: Sequence[np.ndarray] | None = None,
) -> ChainCheck:
    """Smallest ``ρ' ≥ ρ`` (up to rounding steps) with ``S(ρ', t) ⪰ 0`` proved in floating point.

    ``weights = [W_1, …, W_{L+1}]`` (dense or sparse, out × in), per-hidden-layer ``alpha``,
    ``beta`` (slope bounds) and multipliers ``t`` (clipped at 0). Complex (Hermitian) blocks
    are accepted; ``weight_error`` (entrywise bounds ``|W_exact − W|``, one array per matrix)
    covers weights that are themselves computed (the Fourier blocks of a convolution).
    See the module docstring.
    """
    return certify_blocks(_Blocks(weights, alpha, beta, t, weight_error), rho, attempts=attempts)


def certify_blocks(blocks, rho: float, *, attempts: int = 4, shift: list | None = None) -> ChainCheck:
    """The test of the module docstring on any block-tridiagonal ``Ŝ``: ``blocks`` provides
    ``L``, ``sizes``, the float diagonal blocks ``D`` (``D[0]`` = input block without ``ρ``), the
    couplings ``O[l] = Ŝ_{l-1,l}``, ``complex`` and ``form_error(w, ρ) ≥ |S_exact − Ŝ| w``."""
    L = blocks.L
    sizes = blocks.sizes
    k = max(sizes[l] + (sizes[l + 1] if l < L else 0) for l in range(L + 1)) + 4
    g_chol = _gamma((4 if blocks.complex else 1) * k)
    m = sum(sizes)
    inflate = 1.0 + (m + 8) * EPS
    diag = [np.real(np.diag(D)).copy() for D in blocks.D]
    diag[0] = diag[0] + max(rho, 0.0)
    if any(np.any(d <= 0) for d in diag[1:]):
        return ChainCheck(False, math.inf, why="a hidden diagonal entry of S is not positive")
    w = [np.sqrt(np.maximum(d, TINY)) for d in diag]
    form = blocks.form_error(w, max(rho, 0.0))
    band = [
        float(np.sum(diag[l])) + sum(float(np.sum(diag[j])) for j in (l - 1, l + 1) if 0 <= j <= L)
        for l in range(L + 1)
    ]
    c = [2.0 * (g_chol * band[l] + form[l] / w[l]) * inflate + TINY for l in range(L + 1)]
    if shift is not None:
        c = [np.asarray(x, dtype=float) for x in shift]
    why = ""
    for attempt in range(1, attempts + 1):
        R, X, rho_c, why = _factor(blocks, c, max(rho, 0.0))
        if why:
            return ChainCheck(False, math.inf, attempts=attempt, why=why)
        w0 = np.sqrt(np.maximum(np.real(np.diag(blocks.D[0])) + rho_c, TINY))
        ww = [w0, *w[1:]]
        form = blocks.form_error(ww, rho_c)
        rr = _abs_R_apply(R, X, ww)
        # + the rounding of forming the factored diagonal fl(Ŝ_ii − c_i) (and + ρ' on the input)
        diag_abs = [
            np.abs(np.real(np.diag(blocks.D[l]))) + c[l] + (rho_c if l == 0 else 0.0) for l in range(L + 1)
        ]
        need = [
            (g_chol * rr[l] + form[l]) * inflate / ww[l] + 2 * EPS * diag_abs[l] + TINY for l in range(L + 1)
        ]
        ratio = max(float(np.max(need[l] / c[l])) for l in range(L + 1))
        if ratio <= 1.0:
            best = ChainCheck(
                True, rho_c, ratio, attempt, details={"shift_max": max(float(x.max()) for x in c)}
            )
            if ratio >= 0.25 or attempt == attempts:
                return best
            # the a-priori shift was generous: one more factorisation with a shift near the
            # requirement measured on this factor (accepted only if it passes its own check)
            refined = certify_blocks(blocks, rho, attempts=1, shift=[1.5 * x for x in need])
            return refined if refined.certified and refined.rho < best.rho else best
        c = [np.maximum(c[l], 2.0 * need[l]) for l in range(L + 1)]
    return ChainCheck(False, math.inf, attempts=attempts, why="the a-posteriori Cholesky error bound failed")
