"""Input norms as objects: ℓ∞, ℓ2 and ℓ1, one class each, registered by name.

A norm ℓp (dual ℓq, ``1/p + 1/q = 1``) owns everything the pipeline asks of it:

* :meth:`Norm.of` ``‖v‖_p`` and :meth:`Norm.dual_norm` ``‖v‖_q`` (rowwise), the subgradient
  :meth:`Norm.dual_direction` of ``‖g‖_q`` (the input direction of steepest ascent of ``gᵀx``);
* :meth:`Norm.operator_norm` — a guaranteed upper bound on ``‖W‖_{p→p}`` in floating point,
  sparse-aware;
* :meth:`Norm.matrix_norm` — ``‖J‖_{p→p}`` of a batch of Jacobians with maximizing directions
  ``u`` (output, ``‖u‖_q = 1``) and ``d`` (input, ``‖d‖_p = 1``), ``uᵀ J d = ‖J‖_{p→p}``;
* :meth:`Norm.split_pops` — the binary POPs whose maxima bound ``L_p(cᵀN) = sup ‖∇(cᵀN)‖_q``,
  and :meth:`Norm.pop_bound`, which maps their maximum to the bound;
* :meth:`Norm.combine_rows` — a bound on the network's constant ``sup ‖J‖_{p→p}`` from bounds
  ``L_k`` on the scalar constants of the output rows (:attr:`Norm.quantity` names it in words).

A norm compares equal to, and hashes like, its canonical name (``"inf"``, ``"2"``, ``"1"``), so it
can be stored, printed and serialised as that string. A new norm is one subclass here plus its
:func:`register_norm` line.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .binary_pop import BinaryPOP, VariableTable, binarize, empty_pop, split_by_input, sum_of_squares
from .errors import LipoptError
from .floats import EIG_ERROR_CONSTANT, EPS, round_up, safe_sum
from .polynomial import Polynomial

# ℓ2: Σ_i p_i(u)² expands Σ_i |p_i|² products of monomials before merging (≈160 bytes and
# ≈0.6 µs each when measured), so this caps the build at about 1.6 GB and a few seconds.
DEFAULT_MAX_SQUARE_PRODUCTS = 10_000_000


class Norm(str):
    """An input norm ℓp. Subclasses set the class attributes and implement the methods."""

    #: ``p`` as a number (``math.inf`` for ℓ∞); also the ``ord`` of :func:`numpy.linalg.norm`
    p: float
    #: canonical name of the dual norm ℓq
    dual_name: str
    #: display symbol, e.g. ``"ℓ∞"``
    symbol: str
    #: the network's constant ``sup_x ‖J(x)‖_{p→p}`` in words
    quantity: str
    #: True when that constant is exactly the maximum over output rows of the scalar constants
    rows_exact: bool = False
    #: True when :meth:`network_pops` bounds the network's constant without combining rows
    has_network_pops: bool = False

    def __reduce__(self):
        return parse_norm, (str(self),)

    @property
    def dual(self) -> Norm:
        return NORMS[self.dual_name]

    # ---- vectors ---------------------------------------------------------------------------
    def of(self, v: np.ndarray) -> float | np.ndarray:
        """``‖v‖_p`` over the last axis (a float for a vector)."""
        out = np.linalg.norm(np.asarray(v, dtype=float), ord=self.p, axis=-1)
        return float(out) if np.ndim(out) == 0 else out

    def dual_norm(self, v: np.ndarray) -> float | np.ndarray:
        """``‖v‖_q`` over the last axis."""
        return self.dual.of(v)

    def subgradient(self, v: np.ndarray) -> np.ndarray:
        """Rowwise ``d`` with ``‖d‖_q ≤ 1`` and ``dᵀv = ‖v‖_p`` (a subgradient of ``‖·‖_p``)."""
        raise NotImplementedError

    def dual_direction(self, g: np.ndarray) -> np.ndarray:
        """Rowwise input direction ``d`` (``‖d‖_p ≤ 1``) with ``dᵀg = ‖g‖_q``."""
        return self.dual.subgradient(g)

    # ---- matrices --------------------------------------------------------------------------
    def operator_norm(self, w) -> float:
        """A guaranteed upper bound on ``‖W‖_{p→p}`` (dense or scipy.sparse ``W``)."""
        raise NotImplementedError

    def matrix_norm(self, J: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(‖J_b‖_{p→p}, u_b, d_b)`` for a batch ``J`` of shape ``(B, m, n)`` (floating point,
        for lower-bound searches: not a certified value)."""
        raise NotImplementedError

    # ---- POPs and rows ---------------------------------------------------------------------
    def split_pops(
        self,
        P: Polynomial,
        table: VariableTable,
        n0: int,
        label: str,
        path_err: float,
        max_square_products: int = DEFAULT_MAX_SQUARE_PRODUCTS,
    ) -> list[BinaryPOP]:
        """Binary POPs whose largest maximum ``v`` gives ``L_p(cᵀN) ≤`` :meth:`pop_bound` ``(v)``,
        from the norm-gradient polynomial ``P(t, s) = tᵀ∇(cᵀN)`` (``t`` = the first ``n0``
        variables of ``table``)."""
        raise NotImplementedError

    def network_pops(
        self,
        P: Polynomial,
        table: VariableTable,
        n0: int,
        label: str,
        path_err: float,
        max_square_products: int = DEFAULT_MAX_SQUARE_PRODUCTS,
    ) -> list[BinaryPOP]:
        """Binary POPs bounding the network's constant directly, from ``P(t, s, o) = tᵀ J(s)ᵀ o``
        with output variables ``o ∈ [−1, 1]^m`` (only where :attr:`has_network_pops`)."""
        raise NotImplementedError

    def pop_bound(self, value: float) -> float:
        """The Lipschitz bound implied by an upper bound on the POPs' maximum."""
        return float(value)

    def combine_rows(self, values: list[float]) -> float:
        """An upper bound on ``‖J‖_{p→p}`` given upper bounds ``L_k ≥ ‖J_k‖_q`` on its rows."""
        raise NotImplementedError

    def combination_note(self, rows: int) -> str | None:
        """How :meth:`combine_rows` bounds the network constant, for a row's note (None: exact)."""
        return None


class LInf(Norm):
    """ℓ∞ input (dual ℓ1). ``‖J‖_{∞→∞}`` is the largest row sum: the max over output rows."""

    p = math.inf
    dual_name = "1"
    symbol = "ℓ∞"
    quantity = "network ℓ∞→ℓ∞ constant (max over outputs of the scalar ℓ∞ constants)"
    rows_exact = True

    def subgradient(self, v):
        v = np.atleast_2d(v)
        out = np.zeros_like(v, dtype=float)
        idx = np.abs(v).argmax(axis=1)
        rows = np.arange(len(v))
        out[rows, idx] = np.sign(v[rows, idx])
        return out

    def operator_norm(self, w) -> float:
        return _abs_sum_norm(w, axis=1)

    def matrix_norm(self, J):
        rows = np.abs(J).sum(axis=2)
        k = rows.argmax(axis=1)
        b = np.arange(len(J))
        u = np.zeros(J.shape[:2])
        u[b, k] = 1.0
        return rows[b, k], u, np.sign(J[b, k, :])

    def split_pops(self, P, table, n0, label, path_err, max_square_products=DEFAULT_MAX_SQUARE_PRODUCTS):
        return [binarize(P, table, label, path_err)]

    def combine_rows(self, values):
        return float(max(values))


class L1(Norm):
    """ℓ1 input (dual ℓ∞): ``max_i |∂f/∂x_i|``; ``‖J‖_{1→1}`` is the largest column sum."""

    p = 1.0
    dual_name = "inf"
    symbol = "ℓ1"
    quantity = "network ℓ1→ℓ1 constant (max column sum of the Jacobian)"

    def subgradient(self, v):
        return np.sign(np.atleast_2d(v)).astype(float)

    def operator_norm(self, w) -> float:
        return _abs_sum_norm(w, axis=0)

    def matrix_norm(self, J):
        cols = np.abs(J).sum(axis=1)
        i = cols.argmax(axis=1)
        b = np.arange(len(J))
        d = np.zeros((len(J), J.shape[2]))
        d[b, i] = 1.0
        return cols[b, i], np.sign(J[b, :, i]), d

    def split_pops(self, P, table, n0, label, path_err, max_square_products=DEFAULT_MAX_SQUARE_PRODUCTS):
        """One POP per input coordinate ``i`` and sign: ``±P_i(s)`` with ``P = Σ_i t_i P_i(s)``."""
        pops = []
        for i, Pi in enumerate(split_by_input(P, n0)):
            if Pi.num_terms:
                pops.append(binarize(Pi, table, f"{label}, input {i}, +", path_err))
                pops.append(binarize(-Pi, table, f"{label}, input {i}, −", path_err))
        return pops or [empty_pop(table, label)]

    has_network_pops = True

    def network_pops(self, P, table, n0, label, path_err, max_square_products=DEFAULT_MAX_SQUARE_PRODUCTS):
        """``‖J‖_{1→1} = max_i max_{o ∈ [−1,1]^m} (J(s)ᵀ o)_i``: one POP per input coordinate ``i``
        (the output signs are variables, so no ± copies)."""
        pops = [
            binarize(Pi, table, f"{label}, input {i}", path_err)
            for i, Pi in enumerate(split_by_input(P, n0))
            if Pi.num_terms
        ]
        return pops or [empty_pop(table, label)]

    def combine_rows(self, values):
        # ‖J‖_{1→1} = max_i Σ_k |J_ki| ≤ Σ_k max_i |J_ki| = Σ_k L_k
        return safe_sum(float(v) for v in values)

    def combination_note(self, rows: int) -> str:
        return f"ℓ1→ℓ1 ≤ Σ_k L_k over the {rows} per-output bounds (combined, no native vector form)"


class L2(Norm):
    """ℓ2 input (self-dual). ``‖J‖_{2→2}`` is the spectral norm (not a function of the rows)."""

    p = 2.0
    dual_name = "2"
    symbol = "ℓ2"
    quantity = "network ℓ2→ℓ2 constant (spectral norm of the Jacobian)"

    def subgradient(self, v):
        v = np.atleast_2d(v).astype(float)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)

    def operator_norm(self, w) -> float:
        return spectral_norm_upper(w)

    def matrix_norm(self, J):
        U, s, Vt = np.linalg.svd(J, full_matrices=False)
        return s[:, 0], U[:, :, 0], Vt[:, 0, :]

    def split_pops(self, P, table, n0, label, path_err, max_square_products=DEFAULT_MAX_SQUARE_PRODUCTS):
        """``max_s ‖G(s)‖² = Σ_i P_i(s)²`` after binarization (``u² = u``): one POP, bound √·."""
        binary = [binarize(Pi, table, label) for Pi in split_by_input(P, n0) if Pi.num_terms]
        if not binary:
            return [empty_pop(table, label)]
        n_products = sum(p.polynomial.num_terms**2 for p in binary)
        if n_products > max_square_products:
            raise LipoptError(
                f"the ℓ2 norm-gradient POP ({label}) would expand {n_products:,} products of monomials "
                f"(limit {max_square_products:,}, about {160 * n_products / 1e9:.1f} GB); for ℓ2 use "
                "--method lipsdp or sdp-ball, a local domain (--box, or --center with --eps), or "
                "a smaller network"
            )
        return [sum_of_squares(binary, table, label, path_err)]

    def pop_bound(self, value: float) -> float:
        return float(np.sqrt(max(value, 0.0)) * (1 + 4 * EPS))

    def combine_rows(self, values):
        # ‖J‖₂ ≤ ‖J‖_F = ‖(‖J_k‖₂)_k‖₂ ≤ ‖(L_k)_k‖₂
        squares = safe_sum(round_up(float(v) * float(v)) for v in values)
        return round_up(math.sqrt(squares)) if math.isfinite(squares) else math.inf

    def combination_note(self, rows: int) -> str:
        return f"ℓ2→ℓ2 ≤ ‖(L_k)_k‖₂ over the {rows} per-output bounds (combined, no native vector form)"


def _abs_sum_norm(w, axis: int) -> float:
    """``max`` over rows (``axis=1``: ‖W‖_{∞→∞}) or columns (``axis=0``: ‖W‖_{1→1}) of ``Σ|w|``,
    padded for the summation's rounding."""
    a = abs(w)
    sums = np.asarray(a.sum(axis=axis)).ravel()
    return float(sums.max() * (1 + 2 * a.shape[axis] * EPS)) if sums.size else 0.0


def spectral_norm_upper(w) -> float:
    """A guaranteed upper bound on ``‖W‖₂`` (largest singular value)."""
    if sp.issparse(w) and min(w.shape) > 3000:
        a = abs(w)
        # ‖W‖₂ ≤ sqrt(‖W‖₁ ‖W‖∞): valid without an eigensolver for huge sparse layers
        return float(np.sqrt(a.sum(axis=0).max() * a.sum(axis=1).max()) * (1 + 8 * EPS * max(w.shape)))
    wd = w.toarray() if sp.issparse(w) else np.asarray(w)
    gram = wd @ wd.T if wd.shape[0] <= wd.shape[1] else wd.T @ wd
    if not np.all(np.isfinite(gram)):  # overflow: no finite bound from the Gram matrix
        return math.inf
    lam = float(np.linalg.eigvalsh(gram)[-1])
    # eigvalsh: every eigenvalue of the computed Ĝ moves by ≤ c·n·eps·‖Ĝ‖_F (floats.py). The
    # Gram entries are inner products of length k = max(shape) (the long side), so
    # |Ĝ − G| ≤ γ_k |W||W|ᵀ and ‖Ĝ − G‖₂ ≤ γ_k ‖W‖_F² (the short side undercounts it: a 1×65536
    # row was 90 eps low); the Frobenius sum is padded twice for its own rounding.
    k = max(wd.shape)
    margin = EIG_ERROR_CONSTANT * gram.shape[0] * EPS * float(np.linalg.norm(gram)) + 2 * (
        k + 2
    ) * EPS * float((wd**2).sum())
    return round_up(float(np.sqrt(max(round_up(lam + margin), 0.0))))


#: the registered norms by canonical name, in the order the CLI offers them
NORMS: dict[str, Norm] = {}
_ALIASES = {"infinity": "inf", "∞": "inf", "oo": "inf", "1.0": "1", "2.0": "2"}


def register_norm(norm: Norm) -> Norm:
    """Add ``norm`` to :data:`NORMS` (its dual must be registered by the time it is used)."""
    for attr in ("p", "dual_name", "symbol", "quantity"):
        if not hasattr(norm, attr):
            raise LipoptError(f"norm {str(norm)!r} does not declare {attr!r}")
    NORMS[str(norm)] = norm
    return norm


for _norm in (LInf("inf"), L2("2"), L1("1")):
    register_norm(_norm)


def parse_norm(norm: str | float | int) -> Norm:
    """The registered norm for ``"inf"``/``"∞"``/``"l2"``/``2``/``"ℓ1"``/…; a :class:`Norm`
    compares equal to its canonical name."""
    if isinstance(norm, Norm):
        return norm
    key = str(norm).strip().lower().replace("l", "").replace("ℓ", "")
    key = _ALIASES.get(key, key)
    if key not in NORMS:
        raise LipoptError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
    return NORMS[key]
