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

from .errors import LipoptError
from .floats import EPS, round_up
from .lipsdp_certify import _gamma, certify_blocks
from .network import Dense, Network, Residual
from .results import Certificate
from .solvers.lipsdp_chain import BlockRows, LMIData, solve_lmi
from .solvers.shor import blas_threads

__all__ = ["dag_lmi", "lipsdp_dag_bound"]

KIND = "LMI check (dense block Cholesky, a-posteriori error bound)"
Combo = dict[int, np.ndarray]  # group → matrix (rows of the current vector over that group)


class _Builder:
    def __init__(self, n0: int) -> None:
        self.sizes = [n0]
        self.rows: list[tuple[int, Combo]] = []
        self.alpha: list[np.ndarray] = []
        self.beta: list[np.ndarray] = []

    @staticmethod
    def apply(W, cur: Combo) -> Combo:
        if W is None:
            return dict(cur)
        return {g: np.asarray(W @ M) for g, M in cur.items()}

    @staticmethod
    def add(a: Combo, b: Combo) -> Combo:
        out = dict(a)
        for g, M in b.items():
            out[g] = out[g] + M if g in out else M
        return out

    def site(self, pre: Combo, lo: np.ndarray, hi: np.ndarray, identity: bool) -> Combo:
        if identity:
            return pre
        n = next(iter(pre.values())).shape[0]
        self.rows.append((len(self.sizes), pre))
        self.sizes.append(n)
        self.alpha.append(np.asarray(lo, float))
        self.beta.append(np.asarray(hi, float))
        return {len(self.sizes) - 1: np.eye(n)}


def dag_lmi(
    net: Network, ranges: list[tuple[np.ndarray, np.ndarray]], last=None
) -> tuple[LMIData, list[int]]:
    """The LipSDP data of ``net`` (chains and residual blocks); ``ranges`` = slope interval per
    activation site (``net.sites`` order); ``last`` replaces the last layer's matrix (a folded
    scalar target). Returns the data and the hidden group sizes."""
    b = _Builder(net.input_dim)
    cur: Combo = {0: np.eye(net.input_dim)}
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
    if not hidden:
        raise LipoptError("lipsdp needs at least one nonlinear activation site")
    offsets = np.cumsum([0, *b.sizes])
    n0, N = b.sizes[0], sum(hidden)
    m = n0 + N
    blocks = []
    for g, combo in b.rows:
        r0 = int(offsets[g] - n0)
        blocks += [(r0, int(offsets[s]), M) for s, M in sorted(combo.items())]
    C = np.zeros((next(iter(out.values())).shape[0], m))
    for s, M in out.items():
        C[:, offsets[s] : offsets[s] + M.shape[1]] += M
    data = LMIData(
        BlockRows(blocks, N, m), C, n0, np.concatenate(b.alpha), np.concatenate(b.beta),
        np.arange(N), N, hidden,
    )  # fmt: skip
    return data, hidden


class _DenseBlocks:
    """Two blocks for :func:`certify_blocks`: the input and all hidden coordinates reversed."""

    def __init__(self, data: LMIData, t: np.ndarray) -> None:
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
        self.u, self.v, self.t = np.abs(data.qa * t), np.abs(data.qc * t), t
        self.n0 = n0
        self.gamma = _gamma(max(data.N, data.C.shape[1]) + data.m + 8)

    def form_error(self, w: list[np.ndarray], rho: float) -> list[np.ndarray]:
        n0 = self.n0
        full = np.concatenate([w[0], w[1][::-1]])
        Aw = self.absA @ full
        y = (
            self.absC.T @ (self.absC @ full)
            + self.absA.T @ (self.u * Aw)
            + self.absA.T @ (self.v * full[n0:])
        )
        y[n0:] += self.v * Aw + 2.0 * self.t * full[n0:]
        y[:n0] += abs(rho) * full[:n0]
        y *= self.gamma
        return [y[:n0], y[n0:][::-1]]


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
    data, _ = dag_lmi(net, ranges, last)
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
            check = certify_blocks(_DenseBlocks(data, np.asarray(tt)), r)
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
