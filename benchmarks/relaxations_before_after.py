"""Before/after check of the solver-backend rework: the pre-registry relaxation pipelines against
the registered methods, on the same requests.

The old side runs ``lipopt.bounds.bound_chain`` of a checkout of the code before the rework (commit
61b9f11, e.g. ``git archive 61b9f11 | tar -x -C /tmp/lipopt_before``) in a child process, with
its rule that keeps a lower level's certificate disabled, so that raw rows are compared; the new
side runs the registered methods (:mod:`lipopt.methods`) of this checkout. Every row: value,
solver value, certified, status; the table reports the relative difference of the certified
values next to the certificate's own margin ``(value − solver value)/value``. Every request names a
scalar target: without one the quantity is now the network's constant (rows combined by the norm),
which the old code did not bound.

Usage: ``python benchmarks/relaxations_before_after.py --old /tmp/lipopt_before``; writes
``benchmarks/results/relaxations_before_after.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "relaxations_before_after.md"

# (name, sizes, seed, norm, target, domain, method, levels, old options, new options)
REQUESTS = [
    *[(n, [4, 6, 1], 0, norm, {"output": 0}, None, m, lv, {}, {})
      for n, norm in (("a", "inf"), ("a", "2"), ("a", "1"))
      for m, lv in (("lp", [2, 3]), ("sdp", [1, 2]), ("sdp+lp", [1, 2]), ("exact-pop", None))],
    ("b", [3, 4, 4, 1], 1, "inf", {"output": 0}, None, "lp", [3, 4], {}, {}),
    ("b", [3, 4, 4, 1], 1, "inf", {"output": 0}, None, "sdp", [1], {}, {}),
    ("b", [3, 4, 4, 1], 1, "inf", {"output": 0}, None, "sdp+lp", [1, 3], {}, {}),
    ("c", [5, 8, 2], 2, "inf", {"margin": (0, 1)}, {"box": (-0.2, 0.3)}, "lp", [2, 3], {}, {}),
    ("c", [5, 8, 2], 2, "inf", {"margin": (0, 1)}, {"box": (-0.2, 0.3)}, "sdp", [1], {}, {}),
    ("d", [6, 10, 1], 3, "inf", {"output": 0}, None, "lp", [2, 3], {"lp": {"method": "ipm"}},
     {"algorithm": "ipm"}),
    ("d", [6, 10, 1], 3, "inf", {"output": 0}, None, "lp", [2, 3], {"lp": {"basis": "krivine"}},
     {"basis": "krivine"}),
    ("d", [6, 10, 1], 3, "inf", {"output": 0}, None, "lp", [2], {"lp": {"clique_method": "dense"}},
     {"cliques": "dense"}),
    ("d", [6, 10, 1], 3, "inf", {"output": 0}, None, "sdp", [1], {"sdp": {"shor_solver": "conic"}},
     {"solver": "conic"}),
    ("d", [6, 10, 1], 3, "inf", {"output": 0}, None, "sdp+lp", [1], {"sdp": {"lp_solver": "lagrangian"}},
     {"sa_solver": "lagrangian"}),
    ("e", [12, 14, 1], 4, "inf", {"output": 0}, None, "sdp+lp", [1], {}, {}),  # auto: Lagrangian route
    ("f", [5, 9, 3], 5, "2", {"output": 1}, None, "sdp-ball", None, {}, {}),
    ("f", [5, 9, 3], 5, "2", {"output": 1}, None, "sdp-ball", None, {"sdp-ball": {"solver": "CVXOPT"}},
     {"solver": "CVXOPT"}),
    ("f", [5, 9, 3], 5, "2", {"output": 1}, {"center": 0.0, "eps": 0.3}, "sdp-ball", None, {}, {}),
    ("g", [4, 6, 2], 6, "2", {"output": 1}, None, "sdp", [1, 2], {}, {}),
]


def _net(sizes: list[int], seed: int):
    from lipopt.network import Network

    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return Network.from_weights(weights, [0.3 * rng.normal(size=b) for b in sizes[1:]])


def _rows(side: str) -> dict[str, list]:
    from lipopt.problems import make_domain, make_target

    out: dict[str, list] = {}
    for name, sizes, seed, norm, tkw, dkw, m, levels, old, new in REQUESTS:
        net = _net(sizes, seed)
        target = make_target(net, **tkw)
        domain = None
        if dkw:
            dkw = dict(dkw, **({"center": np.full(net.input_dim, dkw["center"])} if "center" in dkw else {}))
            domain = make_domain(net, **dkw)
        key = f"{name}{sizes} ℓ{norm} {m} {json.dumps(new)}" + (" local" if domain is not None else "")
        if side == "old":
            import lipopt.bounds as old_bounds

            old_bounds._keep_monotone = lambda previous, row: row  # raw rows
            chain = old_bounds.bound_chain(net, norm, [m], {m: levels} if levels else None, target, domain,
                                           options=old)
            for b in chain.bounds:
                out[f"{key} {b.degree}"] = [b.value, b.solver_value, b.certified, str(b.status)]
        else:
            from lipopt.registry import Context, get_method, parse_options

            method = get_method(m)
            for level in levels or [None]:
                r = method.run(Context(net, norm, target, domain), level, parse_options(method.group(), new))
                out[f"{key} {level}"] = [r.value, r.solver_value, r.certified, str(r.status)]
    return out


def _report(old: dict, new: dict) -> list[str]:
    lines = ["| request | level | before | after | rel. difference | certificate margin | status |",
             "|---|---|---:|---:|---:|---:|---|"]
    worst = 0.0
    for key, (va, sva, ca, sa) in old.items():
        vb, _, cb, sb = new[key]
        diff = abs(va - vb) / abs(va) if math.isfinite(va) and math.isfinite(vb) else math.nan
        margin = (va - sva) / abs(va) if sva is not None and va else math.nan
        worst = max(worst, diff) if diff == diff else worst
        status = sa if (ca, sa) == (cb, sb) else f"{sa}/{ca} → {sb}/{cb}"
        request, level = key.rsplit(" ", 1)
        lines.append(f"| {request} | {level} | {va!r} | {vb!r} | {diff:.1e} | {margin:.1e} | {status} |")
    return [f"Largest relative difference: {worst:.1e}.", "", *lines]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="checkout of the code before the rework")
    ap.add_argument("--side", choices=("old", "new"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.side:
        json.dump(_rows(args.side), sys.stdout)
        return 0
    sides = {}
    for side, path in (("old", args.old), ("new", HERE.parent)):
        env = dict(os.environ, PYTHONPATH=str(path), OPENBLAS_NUM_THREADS="1")
        run = subprocess.run([sys.executable, __file__, "--side", side], env=env, capture_output=True,
                             text=True, check=True)
        sides[side] = json.loads(run.stdout)
    lines = ["# Relaxations before/after the solver-backend rework", "",
             f"Generated by `benchmarks/relaxations_before_after.py --old {args.old}` (before: commit "
             "61b9f11, `bounds.bound_chain` without its monotone-level rule; after: the registered "
             "methods). Random `Network.from_weights` nets, global unless marked local.", "",
             *_report(sides["old"], sides["new"])]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
