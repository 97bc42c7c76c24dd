r"""Certified LipSDP-Neuron bounds for chains in seconds: :func:`lipsdp_bound`.

Pipeline: weights and per-neuron slope intervals → exact simplifications → structured
interior-point solve (:mod:`lipopt.solvers.lipsdp_chain`) → float-safe block-Cholesky check of
the full LMI (:mod:`lipopt.lipsdp_certify`) → a :class:`~lipopt.results.Certificate`.

Exact simplifications (none changes the bound):

* **Dead neurons** (slope interval ``{0}``, e.g. stable inactive ReLUs of a local domain or a
  branch-and-bound node): ``Δx_j = 0``, so row ``j`` of ``W_l`` and column ``j`` of ``W_{l+1}``
  are removed. A layer with no live neuron makes the map constant: the bound is 0.
* **Scaling by powers of two.** With ``W_l = s_l Ŵ_l`` (``s_l = 2^{k_l} ≈ ‖W_l‖₂``), the
  substitution ``x̂_l = x_l / (s_1⋯s_l)`` maps the incremental quadratic constraints of every
  neuron to themselves (they are homogeneous of degree 2 in ``(Δz, Δx)``), so
  ``M(ρ, t) ⪯ 0`` for ``W`` iff ``M̂(ρ/P², t̂) ⪯ 0`` for ``Ŵ`` with ``P = Π s_l`` and
  ``t̂_l = t_l (s_1⋯s_l)²/P²``: the bound is ``P·√ρ̂``. Division by a power of two is exact,
  so the certificate for ``Ŵ`` is one for ``W`` (depth-64 chains with constants ≈1e-6 become
  well scaled).
* **Input reduction** (solver only, as in :mod:`lipopt.lipsdp`): when ``n_0 > n_1`` the input
  block meets the rest through ``W_1`` alone and ``W_1`` is replaced by the square ``Rᵀ`` of
  ``W_1ᵀ = QR``. The certificate is computed on the unreduced ``Ŵ_1``.

Fixed slopes ``α_j = β_j = s`` (stable active neurons) keep the neuron with the equality
constraint ``−(Δx_j − sΔz_j)² ≥ 0``; its multiplier grows along the central path (the LMI
restricted to ``Δx_j = sΔz_j`` is its limit), and the value is certified like any other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import round_up
from .lipsdp_certify import certificate_bytes, certify_chain
from .results import Certificate
from .solvers.lipsdp_chain import BlockRows, LMIData, solve_lmi
from .solvers.mixing import blas_threads

__all__ = ["ChainProblem", "lipsdp_bound", "prepare_chain"]

Matrix = np.ndarray | sp.spmatrix | sp.sparray
KIND = "LMI check (block Cholesky, a-posteriori error bound)"


@dataclass
class ChainProblem:
    """A chain ready for the solver: scaled weights ``Ŵ`` (live neurons only), per-layer slope
    arrays, and the exact power-of-two factor ``scale = P`` (bound = ``P·√ρ̂``)."""

    weights: list[Matrix]
    alpha: list[np.ndarray]
    beta: list[np.ndarray]
    scale: float
    constant: bool = False

    @property
    def hidden_sizes(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    def lmi_data(self, reduce_input: bool = True) -> LMIData:
        """The solver's data (block-bidiagonal ``A``, output map ``C``), input reduced if useful."""
        Ws = [w.toarray() if sp.issparse(w) else np.asarray(w, dtype=float) for w in self.weights]
        if reduce_input and len(Ws) > 1 and Ws[0].shape[1] > Ws[0].shape[0]:
            Ws[0] = np.ascontiguousarray(np.linalg.qr(Ws[0].T, mode="r").T)
        n0, hs = Ws[0].shape[1], self.hidden_sizes
        N, m = sum(hs), Ws[0].shape[1] + sum(hs)
        blocks, r, c = [], 0, 0
        for w in Ws[:-1]:
            blocks.append((r, c, w))
            r, c = r + w.shape[0], c + w.shape[1]
        C = np.zeros((Ws[-1].shape[0], m))
        C[:, m - hs[-1] :] = Ws[-1]
        return LMIData(
            BlockRows(blocks, N, m),
            C,
            n0,
            np.concatenate(self.alpha),
            np.concatenate(self.beta),
            np.arange(N),
            N,
            hs,
        )


def _as_matrix(w: Matrix, i: int) -> Matrix:
    if sp.issparse(w):
        w = sp.csr_matrix(w, dtype=float)
        data = w.data
    else:
        w = np.asarray(w, dtype=float)
        data = w
    if w.ndim != 2:
        raise LipoptError(f"weight {i} must be a matrix (out × in), got shape {w.shape}")
    if not np.all(np.isfinite(data)):
        raise LipoptError(f"weight {i} has non-finite entries")
    return w


def _slopes(value, sizes: list[int], default: float, what: str) -> list[np.ndarray]:
    if value is None or np.isscalar(value):
        v = default if value is None else float(value)
        return [np.full(n, v) for n in sizes]
    if len(value) != len(sizes):
        raise LipoptError(f"{what} has {len(value)} layers, the network has {len(sizes)} hidden layers")
    out = []
    for i, (x, n) in enumerate(zip(value, sizes, strict=True)):
        x = np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()
        if not np.all(np.isfinite(x)):
            raise LipoptError(f"{what}[{i}] has non-finite entries")
        out.append(x)
    return out


def _power_of_two_norm(w: Matrix) -> float:
    """``2^k`` near the Frobenius norm (any positive power of two keeps the bound exact)."""
    est = float(sp.linalg.norm(w)) if sp.issparse(w) else float(np.linalg.norm(w))
    if not math.isfinite(est) or est <= 0.0:
        return 1.0
    return 2.0 ** min(round(math.log2(est)), 1023)  # 2^1024 overflows (est near the float maximum)


def prepare_chain(
    weights: Sequence[Matrix], slope_lo=None, slope_hi=None, *, scale: bool = True
) -> ChainProblem:
    """Validate, drop dead neurons, scale by powers of two (module docstring)."""
    Ws = [_as_matrix(w, i) for i, w in enumerate(weights)]
    if len(Ws) < 2:
        raise LipoptError("lipsdp needs at least one hidden layer (two weight matrices)")
    for i in range(1, len(Ws)):
        if Ws[i].shape[1] != Ws[i - 1].shape[0]:
            raise LipoptError(
                f"weight {i} has {Ws[i].shape[1]} inputs but weight {i - 1} has {Ws[i - 1].shape[0]} "
                "outputs (weights must be out × in, PyTorch orientation)"
            )
    sizes = [w.shape[0] for w in Ws[:-1]]
    lo = _slopes(slope_lo, sizes, 0.0, "slope_lo")
    hi = _slopes(slope_hi, sizes, 1.0, "slope_hi")
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if np.any(a > b):
            raise LipoptError(f"slope_lo > slope_hi in hidden layer {i}")
    for i in range(len(sizes)):
        live = ~((lo[i] == 0.0) & (hi[i] == 0.0))
        if not np.all(live):
            if not np.any(live):
                return ChainProblem(Ws, lo, hi, 1.0, constant=True)
            Ws[i] = Ws[i][live]
            Ws[i + 1] = Ws[i + 1][:, live]
            lo[i], hi[i] = lo[i][live], hi[i][live]
    factors = [_power_of_two_norm(w) if scale else 1.0 for w in Ws]
    Ws = [w / f for w, f in zip(Ws, factors, strict=True)]
    return ChainProblem(Ws, lo, hi, float(np.prod(factors)))


def lipsdp_bound(
    weights: Sequence[Matrix],
    slope_lo=None,
    slope_hi=None,
    *,
    time_limit: float | None = None,
    rtol: float = 1e-9,
    max_memory_bytes: float = 8e9,
    blas_threads_limit: int | None = 1,
) -> Certificate:
    r"""Certified LipSDP-Neuron bound on the ℓ2→ℓ2 Lipschitz constant of
    ``x ↦ W_{L+1} σ(W_L ⋯ σ(W_1 x))`` with every hidden neuron's slope in
    ``[slope_lo, slope_hi]`` (scalars, or one array per hidden layer; default ``[0, 1]``).

    The node bound of a branch and bound: pass the slope intervals of the node (stable neurons:
    ``lo = hi``). Returns a :class:`~lipopt.results.Certificate` whose ``value`` is an upper
    bound iff ``certified``; ``solver_value`` is the interior-point value, ``details`` holds
    iterations, the estimated distance to the LMI optimum (``gap``), solve/certify times.
    A time limit stops the solver early; the last iterate is still certified (looser).
    """
    t0 = time.perf_counter()
    chain = prepare_chain(weights, slope_lo, slope_hi)
    if chain.constant:
        return Certificate(0.0, True, "no live neuron in a layer (constant map)", 0.0)
    data = chain.lmi_data()
    # the solver's data and the certificate's dense blocks (unreduced input block) coexist
    need = data.memory_bytes() + certificate_bytes([chain.weights[0].shape[1], *chain.hidden_sizes])
    if need > max_memory_bytes:
        raise LipoptError(
            f"lipsdp would need about {need / 1e9:.1f} GB (LMI order {data.m}, "
            f"{chain.weights[0].shape[1]} inputs), above the memory limit "
            f"of {max_memory_bytes / 1e9:.1f} GB; raise --max-memory"
        )
    with blas_threads(blas_threads_limit):
        remaining = None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - t0))
        rho, t, info = solve_lmi(data, rtol=rtol, time_limit=remaining)
        t_solve = time.perf_counter() - t0
        check, tried = None, 0
        candidates = [(rho, t)] + [h for h in reversed(info.history[:-1])][:4]
        for r, tt in candidates:
            tried += 1
            per_layer = np.split(np.asarray(tt, dtype=float), np.cumsum(chain.hidden_sizes)[:-1])
            check = certify_chain(chain.weights, chain.alpha, chain.beta, per_layer, r)
            if check.certified:
                break
    t_total = time.perf_counter() - t0
    solver_value = chain.scale * math.sqrt(max(rho, 0.0))
    details = {
        "iterations": float(info.iterations),
        "gap": float(info.gap_estimate),
        "lower": chain.scale * math.sqrt(max(info.lower, 0.0)) if info.residual <= 1e-6 else math.nan,
        "solve_time_s": t_solve,
        "certify_time_s": t_total - t_solve,
        "lmi_order": float(data.m),
        "candidates_tried": float(tried),
        "status": info.status,
    }
    if check is None or not check.certified:
        why = check.why if check is not None else "no iterate"
        return Certificate(math.inf, False, KIND, solver_value, math.inf, {**details, "why": why})
    value = round_up(chain.scale * round_up(math.sqrt(check.rho), 1), 1)
    return Certificate(value, True, KIND, solver_value, value - solver_value, details)
