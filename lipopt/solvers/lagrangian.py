r"""Shor + level-2 Sherali–Adams rows by Lagrangian relaxation over mixing solves (backend
``lagrangian``, programs of kind ``shor+cuts``).

For ``max uᵀQu + qᵀu + const`` on ``{0,1}^n`` the ±1 form ``xᵀCx + offset``
(:func:`~lipopt.hierarchy.shor.shor_from_binary_quadratic`, ``x_z`` the homogenising variable)
gets, for every monomial pair ``{i, j}`` of ``Q``, the four SA rows ``u_i u_j``,
``u_i(1 − u_j)``, ``(1 − u_i)u_j``, ``(1 − u_i)(1 − u_j) ≥ 0``, i.e.
``T_k(X) = 1 + a X_zi + b X_zj + ab X_ij ≥ 0`` (``a, b = ±1``). For multipliers ``μ ≥ 0`` and every
``x ∈ {±1}^N``

.. math::  xᵀCx \le xᵀCx + Σ_k μ_k T_k(xxᵀ) \le \mathrm{SDP}(C + Σ_k μ_k B_k) + Σ_k μ_k,

with the Shor value certified by the mixing method's eigenvalue shift. ``g(μ)`` is convex with
subgradient ``T(X*)``; it is decreased by projected subgradient steps (Polyak step towards the best
rounding lower bound, halved after two rounds without progress, restarting from the best
multipliers after four; stop after 10 rounds without relative progress ``tol``), each inner Shor
problem warm-started from the previous factor and solved to a gap well below the room between the
bound and the lower bound (at most ``inner_sweeps`` sweeps, default ``max(25, 4000/N)``). Every
round's value is a certified bound (any ``μ ≥ 0`` is valid); the best is returned. Float rigour:
the error of forming ``C + Σ μ_k B_k`` (``B_k`` entries ``±1/2``, exact products) is bounded
entrywise by ``(count + 1)·eps·Σ|terms|`` and summed (``|X_ij| ≤ 1``); ``Σ μ_k``, the offset and
the construction error are summed with ``math.fsum`` and padded (:func:`lipopt.floats.safe_sum`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..floats import EPS, safe_sum
from ..progress import report
from ..results import Certificate, Status
from .base import Limits, Outcome, Shape, register_backend
from .mixing import solve_shor_mixing


@dataclass(frozen=True)
class ShorCutsProgram:
    """``max uᵀQu + qᵀu + const`` on ``{0,1}^n`` (``Q`` strictly upper triangular, dense), relaxed by
    Shor plus the level-2 SA rows of the monomial pairs. ``extra`` (e.g. a POP's rounding slack)
    is added to every certified value inside the same padded sum."""

    kind: ClassVar[str] = "shor+cuts"
    Q: np.ndarray
    q: np.ndarray
    const: float
    extra: float = 0.0

    def shape(self) -> Shape:
        return Shape("shor+cuts", 1, self.Q.shape[0] + 1)

    @property
    def n_cuts(self) -> int:
        return 4 * int(np.count_nonzero(self.Q))


class _Lagrangian:
    def __init__(self, program: ShorCutsProgram, seed: int):
        from ..hierarchy.shor import shor_from_binary_quadratic

        self.Q, self.q, self.const = np.asarray(program.Q), program.q, program.const
        self.extra = program.extra
        C, self.offset, self.err = shor_from_binary_quadratic(self.Q, self.q, self.const, return_error=True)
        self.C = np.asarray(C, dtype=float)
        N = self.N = self.C.shape[0]
        z = self.z = N - 1
        I, J = np.nonzero(self.Q)
        signs = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
        self.ci, self.cj = np.repeat(I, 4), np.repeat(J, 4)
        self.ca, self.cb = np.tile(signs[:, 0], len(I)), np.tile(signs[:, 1], len(I))
        ci, cj, zc = self.ci, self.cj, np.full(len(self.ci), z)
        ca, cb = self.ca, self.cb
        self.flat = np.concatenate([ci * N + zc, zc * N + ci, cj * N + zc, zc * N + cj, ci * N + cj,
                                    cj * N + ci])
        self.half = np.concatenate([ca, ca, cb, cb, ca * cb, ca * cb]) * 0.5
        self.count = np.bincount(self.flat, minlength=N * N)
        self.absC = np.abs(self.C).ravel()
        self.rng = np.random.default_rng(seed)

    def lagrangian(self, mu: np.ndarray) -> tuple[np.ndarray, float]:
        """``C + Σ μ_k B_k`` and the bound on its rounding error."""
        w = np.tile(mu, 6) * self.half  # exact: μ·(±1/2)
        add = np.bincount(self.flat, weights=w, minlength=self.N * self.N)
        mass = np.bincount(self.flat, weights=np.abs(w), minlength=self.N * self.N)
        ebound = float(((self.count + 2.0) * EPS * (mass + self.absC)).sum())
        return self.C + add.reshape(self.N, self.N), ebound

    def cut_values(self, V: np.ndarray) -> np.ndarray:
        x0 = V[self.z]
        return (1.0 + self.ca * (V[self.ci] @ x0) + self.cb * (V[self.cj] @ x0)
                + self.ca * self.cb * np.einsum("ij,ij->i", V[self.ci], V[self.cj]))

    def rounding_lower(self, V: np.ndarray) -> float:
        X = np.sign(V @ self.rng.standard_normal((V.shape[1], 16)))
        X[X == 0] = 1.0
        U = 0.5 * (1.0 + X[self.z] * X[: self.z])
        return float(np.max(np.einsum("ik,ij,jk->k", U, self.Q, U) + self.q @ U + self.const))

    def certified(self, res: Outcome, mu: np.ndarray, ebound: float) -> float:
        if res.certificate is None or not res.certificate.certified:
            return math.inf
        terms = [res.certificate.value, self.offset, self.err, math.fsum(mu.tolist()), ebound, self.extra]
        return safe_sum(terms)

    def run(self, rounds: int, tol: float, seed: int, time_limit: float | None, inner_sweeps: int) -> Outcome:
        t1 = time.perf_counter()
        K = len(self.ci)
        mu = np.zeros(K)
        # Under a budget the plain Shor start gets at most 40% of it: the rows, not a tighter Shor
        # certificate, are what lower the bound (every round is certified on its own).
        res = solve_shor_mixing(self.C, tol=max(tol, 1e-6), seed=seed,
                                time_limit=None if time_limit is None else 0.4 * time_limit)
        V = res.state
        best = val = self.certified(res, mu, 0.0)
        best_solver, lower = res.value + self.offset, self.rounding_lower(V)
        stop = "iteration_limit" if K else res.status.value  # the plain Shor solve's without cuts
        theta, fails, done, history, best_mu, best_V, last_round = 0.5, 0, 0, [best], mu, V, 0.0
        for _ in range(rounds if K else 0):
            t_round = time.perf_counter()
            if time_limit is not None and t_round - t1 + last_round > time_limit:
                stop = "time_limit"  # the next round would not finish in time
                break
            T = self.cut_values(V)
            d = np.where((mu <= 0.0) & (T > 0.0), 0.0, T)  # projected subgradient of g at μ
            nd = float(d @ d)
            if nd == 0.0:
                stop = "optimal"  # no violated row and no slack multiplier: μ is optimal for X
                break
            gap = max(val - lower, 1e-12 * max(1.0, abs(val))) if math.isfinite(val) else abs(best - lower)
            mu = np.maximum(mu - theta * gap / nd * d, 0.0)
            Cm, ebound = self.lagrangian(mu)
            remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - t1), 1e-3)
            # inner accuracy well below the room left between the bound and the best lower bound
            inner_tol = min(1e-4, max(0.02 * (best - lower) / max(abs(best), 1e-300), 1e-9))
            res = solve_shor_mixing(Cm, tol=inner_tol, seed=seed, V0=V, max_iter=inner_sweeps,
                                    time_limit=remaining)
            V = res.state
            val = self.certified(res, mu, ebound)
            lower = max(lower, self.rounding_lower(V))
            done += 1
            if val < best - 1e-9 * abs(best):
                best, fails, best_mu, best_V = val, 0, mu, V
                best_solver = res.value + self.offset + float(mu.sum())
            else:
                fails += 1
                theta *= 0.5 if fails % 2 == 0 else 1.0
                if fails >= 4:  # lost: restart from the best multipliers with the shorter step
                    mu, V, val, fails = best_mu, best_V, best, 0
            history.append(best)
            report(round=done, upper=best, lower=lower)
            last_round = time.perf_counter() - t_round
            # stop when the last 10 rounds improved the bound by less than tol (relative)
            if done >= 15 and history[-11] - best <= max(tol, 1e-6) * abs(best):
                stop = "optimal"
                break
        kind = "SDP dual + eigenvalue shift (Lagrangian SA rows)"
        cert = Certificate(best, True, kind, float(best_solver))
        if not math.isfinite(best):
            cert = Certificate.none(kind, float(best_solver))
        return Outcome(Status(stop), float(best_solver), (best_mu,), (best_V,), done, 0.0,
                       time.perf_counter() - t1, "mixing+lagrangian", certificate=cert, state=best_V)


class LagrangianBackend:
    """Registered as ``lagrangian``. Settings: ``rounds`` (50), ``tol`` (1e-7), ``seed``,
    ``inner_sweeps``. The outcome's certificate is in the program's objective (``duals = (μ,)``)."""

    name = "lagrangian"
    family = "mixing"
    kinds = ("shor+cuts",)

    def available(self) -> bool:
        return True

    def solve(self, program: ShorCutsProgram, limits: Limits, settings: Mapping[str, Any]) -> Outcome:
        seed = int(settings.get("seed", 0))
        n = program.Q.shape[0] + 1
        sweeps = settings.get("inner_sweeps") or max(25, 4000 // n)  # ≈ 4000 row updates per round
        rounds, tol = int(settings.get("rounds", 50)), float(settings.get("tol", 1e-7))
        sweeps = int(limits.max_iter or sweeps)
        return _Lagrangian(program, seed).run(rounds, tol, seed, limits.time_limit, sweeps)


register_backend(LagrangianBackend())
