"""Benchmark: certified Shor bounds by the mixing method vs general conic solvers.

Problem: the ℓ∞ Lipschitz bound of a dense one-hidden-layer ReLU network ``n → n → 1`` (PyTorch
default initialisation ``U(−1/√fan_in, 1/√fan_in)`` for weights and biases, seed 0):

    max_{t ∈ {±1}^n, s ∈ [0,1]^n}  tᵀ W1ᵀ diag(s) w2.

The maximum over the box in ``s`` is at a vertex, so with ``t = 2u_t − 1`` and ``s = u_s ∈ {0,1}``
and ``A = W1ᵀ diag(w2)``: ``P = 2 u_tᵀ A u_s − 1ᵀ A u_s``, a {0,1} quadratic program in
``2n`` variables, homogenised by :func:`lipopt.hierarchy.shor.shor_from_binary_quadratic` into a
±1 problem with ``C`` of size ``2n + 1`` (161 for n = 80, 401 for n = 200). Every method's value is
certified with :func:`lipopt.certificates.certify_shor_dual` and shifted back by the offset (plus
the transformation's rounding bound), so the "certified" column is a rigorous upper bound on the
network's global ℓ∞ Lipschitz constant.

Conic solvers run in a separate process with a hard wall-clock limit (``--time-limit``, default
600 s; solvers that support one also get it natively); Clarabel is skipped when its dense
PSD-cone scaling (order ``b(b+1)/2``) cannot fit in memory.

``--blocks`` adds the measurements behind the Shor rows of :data:`lipopt.solvers.base.RULES`: a
chordal (banded) Shor relaxation with many overlapping PSD blocks.

Usage::

    .venv/bin/python benchmarks/shor_solvers.py [--sizes 80 200] [--time-limit 600] [--blocks]

Results go to ``benchmarks/results/shor_solvers.md``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lipopt.hierarchy.shor import shor_from_binary_quadratic  # noqa: E402
from lipopt.solvers.base import Outcome  # noqa: E402
from lipopt.solvers.conic import available_sdp_solvers, solve_shor_cvxpy  # noqa: E402
from lipopt.solvers.mixing import solve_shor_mixing  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "shor_solvers.md"
EPS = float(np.finfo(float).eps)
INTERIOR_POINT = {"CLARABEL", "CVXOPT", "MOSEK"}
LICENSE_FREE_IPM = {"CLARABEL", "CVXOPT"}


# --------------------------------------------------------------------------- problem


def make_network(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``W1`` (n×n) and ``w2`` (n,) of ``nn.Linear(n, n)``, ReLU, ``nn.Linear(n, 1)``.

    Uses PyTorch itself when installed (``np.random.seed(seed); torch.manual_seed(seed)``, as in
    the CertDNN regeneration recipe), otherwise numpy with the same uniform distributions.
    """
    try:
        import torch

        np.random.seed(seed)
        torch.manual_seed(seed)
        l1, l2 = torch.nn.Linear(n, n), torch.nn.Linear(n, 1)
        W1 = l1.weight.detach().double().numpy().copy()
        w2 = l2.weight.detach().double().numpy()[0].copy()
        return W1, w2, f"torch {torch.__version__} nn.Linear default init, seed {seed}"
    except ImportError:
        rng = np.random.default_rng(seed)
        b = 1.0 / math.sqrt(n)
        W1 = rng.uniform(-b, b, (n, n))
        rng.uniform(-b, b, n)  # bias 1 (irrelevant for the global constant)
        w2 = rng.uniform(-b, b, n)
        return W1, w2, f"numpy U(±1/√fan_in), default_rng({seed})"


def linf_binary_quadratic(W1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(Q, q, const)`` with ``max_u uᵀQu + qᵀu + const = max_{t,s} tᵀW1ᵀdiag(s)w2``,
    ``u = (u_t, u_s)``, ``t = 2u_t − 1``, ``s = u_s``."""
    n0, n1 = W1.shape[1], W1.shape[0]
    A = W1.T * w2[None, :]  # n0 × n1, A_ij = W1_ji w2_j
    Q = np.zeros((n0 + n1, n0 + n1))
    Q[:n0, n0:] = A
    Q[n0:, :n0] = A.T  # uᵀQu = 2 u_tᵀ A u_s
    q = np.concatenate([np.zeros(n0), -A.sum(axis=0)])
    return Q, q, 0.0


def _shift_up(cert: float, offset: float, err: float) -> float:
    if not math.isfinite(cert):
        return math.inf
    terms = (cert, offset, err)
    return math.nextafter(math.fsum(terms) + 4 * EPS * math.fsum(abs(t) for t in terms), math.inf)


# --------------------------------------------------------------------------- runners


def _conic_worker(C: np.ndarray, solver: str, time_limit: float, queue: mp.Queue) -> None:
    try:
        res = solve_shor_cvxpy(C, solver, time_limit=time_limit)
        queue.put(("ok", res))
    except Exception as exc:  # report, do not crash the benchmark
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _run_child(worker, args: tuple, time_limit: float):
    """Run ``worker(*args, queue)`` in a spawned child, killed after ``time_limit + 30`` s.

    Returns ``(message, wall, exitcode)``: the child's ``(kind, payload)`` message, or ``None``
    when it was killed (``exitcode`` None) or died without answering (its exit code).
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(*args, queue))
    t0 = time.perf_counter()
    proc.start()
    deadline = t0 + time_limit + 30.0
    msg = None
    while time.perf_counter() < deadline:
        try:
            msg = queue.get(timeout=1.0)
            break
        except Exception:
            if not proc.is_alive():
                break
    wall = time.perf_counter() - t0
    if msg is None and proc.is_alive():
        proc.terminate()
        proc.join(10)
        return None, wall, None
    proc.join(10)
    return msg, wall, proc.exitcode


def run_conic(C: np.ndarray, solver: str, time_limit: float) -> tuple[Outcome | None, str, float]:
    """Solve in a child process, killed after ``time_limit + 30`` s. Returns (result, note, wall)."""
    msg, wall, exitcode = _run_child(_conic_worker, (C, solver, time_limit), time_limit)
    if msg is None:
        if exitcode is None:
            return None, f"killed after {wall:.0f} s (> time limit)", wall
        return None, f"child exited with code {exitcode} (out of memory?)", wall
    kind, payload = msg
    if kind == "error":
        return None, payload, wall
    return payload, "", wall


def clarabel_memory_gb(n: int) -> float:
    """Rough memory of Clarabel's dense PSD scaling + its KKT factor for one n×n block."""
    s = n * (n + 1) / 2
    return 3 * s * s * 8 / 1e9


def available_memory_gb() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return 8.0


# --------------------------------------------------------------------------- blocks section


def _blocks_worker(n: int, w: int, solver: str, time_limit: float, queue: mp.Queue) -> None:
    import warnings

    import cvxpy as cp

    from lipopt.solvers.conic import solver_time_limit_options

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    C = rng.standard_normal((n, n))
    C = (C + C.T) / 2 * (np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= w)
    X = cp.Variable((n, n), symmetric=True)
    cliques = [list(range(i, i + w + 1)) for i in range(n - w)]
    cons = [cp.diag(X) == 1] + [X[np.ix_(c, c)] >> 0 for c in cliques]
    prob = cp.Problem(cp.Maximize(cp.sum(cp.multiply(C, X))), cons)
    t0 = time.perf_counter()
    try:
        prob.solve(solver=solver, **solver_time_limit_options(solver, time_limit))
        st = prob.solver_stats.solve_time
        queue.put(("ok", (prob.status, prob.value, time.perf_counter() - t0, st)))
    except Exception as exc:
        queue.put(("error", type(exc).__name__))


def run_blocks(n: int, w: int, solver: str, time_limit: float) -> str:
    msg, _, _ = _run_child(_blocks_worker, (n, w, solver, time_limit), time_limit)
    if msg is None:
        return f"> {time_limit:.0f} s (killed)"
    kind, payload = msg
    if kind == "error":
        return f"failed ({payload})"
    status, value, wall, st = payload
    st_txt = f"{st:.2f}" if st is not None else "–"
    return f"{wall:.2f} s total, {st_txt} s solver, {status}, value {value:.6f}"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[80, 200])
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--repeats", type=int, default=5, help="mixing runs (median time)")
    ap.add_argument("--solvers", nargs="*", default=None, help="conic solvers (default: all)")
    ap.add_argument("--blocks", action="store_true", help="also time many-block SDPs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for every method")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # inherited by the (spawned) conic solver processes

    solvers = args.solvers if args.solvers is not None else available_sdp_solvers()
    lines = [
        "# Certified Shor bounds: mixing method vs conic solvers",
        "",
        f"Generated by `benchmarks/shor_solvers.py` on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}. Time limit per conic solve: {args.time_limit:.0f} s.",
        "",
        "Problem: global ℓ∞ Lipschitz bound of a dense `n → n → 1` ReLU net, written as a {0,1}",
        "quadratic program in `(u_t, u_s)` and homogenised to a ±1 problem with `C` of size",
        "`2n + 1`. *SDP value* = the solver's objective + offset (not a bound); *certified* = a",
        "rigorous upper bound on the Lipschitz constant (dual certificate shifted by λ_min, float",
        "margins included). Excess = (certified − tightest certified) / tightest certified.",
        f"Every method runs with {args.threads} BLAS thread(s) (the mixing method through",
        "threadpoolctl, conic solvers through the OMP/OPENBLAS/MKL_NUM_THREADS environment of",
        "their child process): on this shared 2-core machine multi-threaded BLAS was measured",
        "10-100× slower on small products whenever another process was running.",
        "",
    ]
    summary: list[str] = []
    for n in args.sizes:
        W1, w2, how = make_network(n)
        Q, q, const = linf_binary_quadratic(W1, w2)
        C, offset, err = shor_from_binary_quadratic(Q, q, const, return_error=True)
        N = C.shape[0]
        print(f"n = {n}: C is {N}×{N} ({how})", flush=True)
        rows = []
        times, res = [], None
        for rep in range(args.repeats):
            res = solve_shor_mixing(C, seed=rep, blas_threads_limit=args.threads)
            times.append(res.solve_time)
        t_mix = statistics.median(times)
        rows.append(("mixing (this repo)", res, t_mix, ""))
        print(f"  mixing: {t_mix:.3f} s, certified {res.certificate.value + offset:.6f}", flush=True)
        for solver in solvers:
            if solver == "CLARABEL":
                need, have = clarabel_memory_gb(N), available_memory_gb()
                if need > 0.5 * have:
                    note = f"skipped: needs ≈{need:.0f} GB (dense PSD scaling), {have:.0f} GB free"
                    rows.append((solver, None, math.nan, note))
                    print(f"  {solver}: {note}", flush=True)
                    continue
            r, note, wall = run_conic(C, solver, args.time_limit)
            rows.append((solver, r, wall if r is None else r.setup_time + r.solve_time, note))
            print(f"  {solver}: {note or r.status} {wall:.1f} s", flush=True)

        best_cert = min(
            (_shift_up(r.certificate.value, offset, err) for _, r, _, _ in rows if r is not None),
            default=math.nan,
        )
        lines += [
            f"## n = {n} (C: {N}×{N}; network: {how})",
            "",
            "| method | form | status | time (s) | SDP value | certified bound | excess | "
            "time / mixing |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, r, t, note in rows:
            if r is None:
                t_txt = f"{t:.1f}" if math.isfinite(t) else "–"
                lines.append(f"| {name} | | {note} | {t_txt} | | | | |")
                continue
            cert = _shift_up(r.certificate.value, offset, err)
            val = r.value + offset
            gap = (cert - best_cert) / abs(best_cert) if math.isfinite(best_cert) else math.nan
            form = r.solver.split("/")[-1] if "/" in r.solver else "factor k=" + str(r.state.shape[1])
            ratio = t / t_mix
            lines.append(
                f"| {name} | {form} | {r.status} | {t:.3f} | {val:.8f} | {cert:.8f} | "
                f"{gap:.1e} | {ratio:.0f}× |"
            )
        ipm = [
            (t, name)
            for name, r, t, _ in rows
            if name in LICENSE_FREE_IPM and r is not None and r.status == "optimal"
        ]
        killed = [name for name, r, _, _ in rows if name in LICENSE_FREE_IPM and r is None]
        lines.append("")
        if ipm:
            t_best, who = min(ipm)
            msg = (
                f"n = {n}: mixing {t_mix:.2f} s (median of {args.repeats}); best license-free "
                f"interior-point solver {who} {t_best:.1f} s → {t_best / t_mix:.0f}× faster."
            )
        else:
            msg = (
                f"n = {n}: mixing {t_mix:.2f} s (median of {args.repeats}); no license-free "
                f"interior-point solver finished ({', '.join(killed) or 'none run'})."
            )
        summary.append(msg)
        lines += [msg, ""]

    if args.blocks:
        lines += [
            "## Many small blocks (measurements behind `choose_sdp_solver`)",
            "",
            "Chordal Shor relaxation of a banded 150×150 `C` (bandwidth w): one PSD constraint per",
            "clique `{i, …, i+w}` on a symmetric matrix variable, `diag = 1`.",
            "",
            "| clique size | blocks | " + " | ".join(solvers) + " |",
            "|---:|---:|" + "---|" * len(solvers),
        ]
        for w in (5, 15, 30):
            cells = []
            for solver in solvers:
                cell = run_blocks(150, w, solver, min(args.time_limit, 300.0))
                print(f"  blocks w={w} {solver}: {cell}", flush=True)
                cells.append(cell)
            lines.append(f"| {w + 1} | {150 - w} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += ["## Summary", ""] + [f"* {s}" for s in summary] + [""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
