r"""LipSDP-Neuron for networks with residual blocks ``y = σ(A x + B F(x))`` (a DAG of layers).

Formulation
-----------
The LipSDP argument never needs a chain: stack the input and every nonlinear activation site,
``ξ = (x_0, g_1, …, g_G)`` in topological order; each neuron ``j`` has a pre-activation
``z_j = a_j ξ`` that is linear in *earlier* groups (a residual block's output reads the block
input through ``A`` and the last inner layer through ``B``) and the incremental quadratic
constraint of its slope interval. The matrix ``S(ρ, t)`` of
:mod:`lipopt.solvers.lipsdp_chain` is then exactly the LipSDP-Neuron LMI of the DAG, and
``S ⪰ 0`` proves ``‖N(x) − N(x')‖ ≤ √ρ ‖x − x'‖`` by the same S-procedure argument (for any
pair of inputs, add ``t_j ×`` the valid quadratic inequality of every neuron).

Identity activation sites (``y = x + F(x)`` without an output σ, an inner layer without σ) are
not neurons: their value is a linear combination of earlier groups and is substituted into its
consumers, so no degenerate ``[1, 1]`` slope is needed. Each nonlinear site becomes one group
whose rows ``a_j`` are dense blocks over the groups it reads (:class:`BlockRows`).

Certificate: the same a-posteriori Cholesky test as chains (:func:`certify_blocks`) on two
blocks, the input (last) and all hidden groups in reverse topological order (one dense factor).
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from .errors import LipoptError
from .floats import EPS, round_up
from .lipsdp_certify import _gamma, certify_blocks
from .network import Dense, Network, Residual
from .results import Certificate
from .solvers.lipsdp_chain import BlockRows, LMIData, solve_lmi
from .solvers.mixing import blas_threads

__all__ = ["dag_lmi", "lipsdp_dag_bound"]

KIND = "LMI check (dense block Cholesky, a-posteriori error bound)"
Combo = dict[int, tuple[np.ndarray, np.ndarray]]  # group → (matrix, entrywise error bound)


def _gamma_n(n: int) -> float:
    return (n + 4) * EPS * (1 + (n + 4) * EPS)


class _Builder:
    """Linear combinations of earlier groups, ``{group: (M, E)}`` with ``E ≥ |M̂ − M|``
    entrywise (the rounding of the matrix products that substitution performs)."""

    def __init__(self, n0: int) -> None:
        self.sizes = [n0]
        self.rows: list[tuple[int, Combo]] = []
        self.alpha: list[np.ndarray] = []
        self.beta: list[np.ndarray] = []

    @staticmethod
    def apply(W, cur: Combo) -> Combo:
        if W is None:
            return dict(cur)
        absW = abs(W) if sp.issparse(W) else np.abs(W)
        g = _gamma_n(W.shape[1])
        out = {}
        for k, (M, E) in cur.items():
            Mn = np.asarray(W @ M)
            En = np.asarray(absW @ E) + g * np.asarray(absW @ np.abs(M))
            out[k] = (Mn, En * (1 + g))
        return out

    @staticmethod
    def add(a: Combo, b: Combo) -> Combo:
        out = dict(a)
        for k, (M, E) in b.items():
            if k in out:
                Ms = out[k][0] + M
                out[k] = (Ms, (out[k][1] + E + 2 * EPS * np.abs(Ms)) * (1 + 4 * EPS))
            else:
                out[k] = (M, E)
        return out

    def site(self, pre: Combo, lo: np.ndarray, hi: np.ndarray, identity: bool) -> Combo:
        """Activation site with slopes ``[lo, hi]``: neurons with ``lo = hi = s`` (identity sites,
        stable neurons) are linear, ``x_j = s z_j``, and substituted; the others form a group."""
        n = next(iter(pre.values()))[0].shape[0]
        lo = np.ones(n) if identity else np.broadcast_to(np.asarray(lo, float), (n,))
        hi = np.ones(n) if identity else np.broadcast_to(np.asarray(hi, float), (n,))
        fixed = lo == hi
        out: Combo = {}
        if np.any(fixed):
            place = np.eye(n)[:, fixed] * lo[fixed][None, :]
            for k, (M, E) in pre.items():
                Mn = place @ M[fixed]
                out[k] = (Mn, (np.abs(place) @ E[fixed] + 2 * EPS * np.abs(Mn)) * (1 + 4 * EPS))
        if np.all(fixed):
            return out
        free = ~fixed
        self.rows.append((len(self.sizes), {k: (M[free], E[free]) for k, (M, E) in pre.items()}))
        self.sizes.append(int(free.sum()))
        self.alpha.append(lo[free].copy())
        self.beta.append(hi[free].copy())
        out[len(self.sizes) - 1] = (np.eye(n)[:, free], np.zeros((n, int(free.sum()))))
        return out


def dag_lmi(
    net: Network, ranges: list[tuple[np.ndarray, np.ndarray]], last=None
) -> tuple[LMIData | None, list[int], tuple[np.ndarray, np.ndarray]]:
    """The LipSDP data of ``net`` (chains and residual blocks); ``ranges`` = slope interval per
    activation site (``net.sites`` order); ``last`` replaces the last layer's matrix (a folded
    scalar target). Returns the data (``None`` when no neuron is free: the map is linear), the
    hidden group sizes and entrywise error bounds ``(E_A, E_C)`` of the computed ``A`` and ``C``."""
    b = _Builder(net.input_dim)
    cur: Combo = {0: (np.eye(net.input_dim), np.zeros((net.input_dim, net.input_dim)))}
    k = 0
    for layer in net.layers[:-1]:
        if isinstance(layer, Residual):
            h = cur
            for d in layer.inner:
                lo, hi = ranges[k]
                h = b.site(b.apply(d.weight, h), lo, hi, d.activation.name == "identity")
                k += 1
            pre = b.add(b.apply(layer.skip, cur), b.apply(layer.out, h))
        elif isinstance(layer, Dense):
            pre = b.apply(layer.weight, cur)
        else:  # pragma: no cover - the network validates its blocks
            raise LipoptError(f"unknown layer type {type(layer).__name__}")
        lo, hi = ranges[k]
        cur = b.site(pre, lo, hi, layer.activation.name == "identity")
        k += 1
    out = b.apply(net.layers[-1].weight if last is None else last, cur)
    hidden = b.sizes[1:]
    offsets = np.cumsum([0, *b.sizes])
    n0, N = b.sizes[0], sum(hidden)
    m = n0 + N
    p = next(iter(out.values()))[0].shape[0]
    C, EC = np.zeros((p, m)), np.zeros((p, m))
    for s_, (M, E) in out.items():
        C[:, offsets[s_] : offsets[s_] + M.shape[1]] += M
        EC[:, offsets[s_] : offsets[s_] + M.shape[1]] += E
    if not hidden:
        return None, [], (np.zeros((0, m)), EC)
    blocks, EA = [], np.zeros((N, m))
    for g, combo in b.rows:
        r0 = int(offsets[g] - n0)
        for s_, (M, E) in sorted(combo.items()):
            blocks.append((r0, int(offsets[s_]), M))
            EA[r0 : r0 + M.shape[0], offsets[s_] : offsets[s_] + M.shape[1]] = E
    data = LMIData(
        BlockRows(blocks, N, m), C, n0, np.concatenate(b.alpha), np.concatenate(b.beta),
        np.arange(N), N, hidden,
    )  # fmt: skip
    return data, hidden, (EA, EC)


class _DenseBlocks:
    """Two blocks for :func:`certify_blocks`: the input and all hidden coordinates reversed."""

    def __init__(self, data: LMIData, t: np.ndarray, errors: tuple[np.ndarray, np.ndarray]) -> None:
        t = np.maximum(t, 0.0)
        n0 = data.n0
        S = data.assemble(0.0, t)[0]
        rev = np.arange(data.m - 1, n0 - 1, -1)
        self.L, self.complex = 1, False
        self.sizes = [n0, data.N]
        self.D = [S[:n0, :n0].copy(), S[np.ix_(rev, rev)]]
        self.O = [None, S[np.ix_(np.arange(n0), rev)]]
        self.rev = rev
        self.absA = np.abs(data.A.dense()[0])
        self.absC = np.abs(data.C[0])
        self.absA_up, self.absC_up = self.absA + errors[0], self.absC + errors[1]
        self.u, self.v, self.t = np.abs(data.qa * t), np.abs(data.qc * t), t
        self.n0 = n0
        self.gamma = _gamma(max(data.N, data.C.shape[1]) + data.m + 8)

    def form_error(self, w: list[np.ndarray], rho: float) -> list[np.ndarray]:
        """Rounding of the assembly, ``γ|S|_abs``, plus the growth of ``|S|_abs`` when ``|A|``,
        ``|C|`` are raised by the error bounds of their computed products."""
        full = np.concatenate([w[0], w[1][::-1]])
        base = self._abs(full, rho, self.absA, self.absC)
        up = self._abs(full, rho, self.absA_up, self.absC_up)
        y = (self.gamma + 4 * EPS) * up + np.maximum(up - base, 0.0)
        n0 = self.n0
        return [y[:n0], y[n0:][::-1]]

    def _abs(self, full: np.ndarray, rho: float, absA: np.ndarray, absC: np.ndarray) -> np.ndarray:
        n0 = self.n0
        Aw = absA @ full
        y = absC.T @ (absC @ full) + absA.T @ (self.u * Aw) + absA.T @ (self.v * full[n0:])
        y[n0:] += self.v * Aw + 2.0 * self.t * full[n0:]
        y[:n0] += abs(rho) * full[:n0]
        return y


def lipsdp_dag_bound(
    net: Network,
    ranges: list[tuple[np.ndarray, np.ndarray]],
    *,
    time_limit: float | None = None,
    rtol: float = 1e-9,
    max_memory_bytes: float = 8e9,
    last=None,
) -> Certificate:
    """Certified LipSDP-Neuron bound on the ℓ2→ℓ2 constant of a network with residual blocks
    (``last``: a replacement for the last layer's matrix, e.g. a folded target row)."""
    t0 = time.perf_counter()
    data, _, errors = dag_lmi(net, ranges, last)
    if data is None:
        raise LipoptError("lipsdp: every activation slope is fixed, the map is linear (use --method naive)")
    if data.memory_bytes() > max_memory_bytes:
        raise LipoptError(
            f"lipsdp would need about {data.memory_bytes() / 1e9:.1f} GB (LMI order {data.m}); "
            "raise --max-memory"
        )
    with blas_threads(1):
        rho, t, info = solve_lmi(data, rtol=rtol, time_limit=time_limit)
        t_solve = time.perf_counter() - t0
        check = None
        for r, tt in [(rho, t)] + list(reversed(info.history[:-1]))[:4]:
            check = certify_blocks(_DenseBlocks(data, np.asarray(tt), errors), r)
            if check.certified:
                break
    details = {
        "iterations": float(info.iterations),
        "gap": float(info.gap_estimate),
        "solve_time_s": t_solve,
        "certify_time_s": time.perf_counter() - t0 - t_solve,
        "lmi_order": float(data.m),
        "status": info.status,
    }
    solver_value = math.sqrt(max(rho, 0.0))
    if check is None or not check.certified:
        why = check.why if check is not None else "no iterate"
        return Certificate(math.inf, False, KIND, solver_value, math.inf, {**details, "why": why})
    value = round_up(math.sqrt(check.rho), 1) * (1 + 2 * EPS)
    return Certificate(round_up(value, 1), True, KIND, solver_value, value - solver_value, details)
