"""The automatic chain against every single method, side by side (issue 13's target).

For each request (network, norm, target, domain), every registered upper-bound method that applies
is run alone (its default levels, the same time limit), then the automatic chain
(``lipopt bound NET --norm p`` without ``--method``). Reported: the best single method and its
time, the automatic chain's best bound and its total time, and the two ratios the target names:

* tightness: auto best / best single (target ≤ 1.01),
* time: auto total / the best single method's time (target ≤ 2).

Usage: ``python benchmarks/auto_chain.py [--time-limit 120] [--quick]``
→ ``benchmarks/results/auto_chain.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EXTERNAL = REPO.parent / "shared" / "external"

from lipopt.api import bound  # noqa: E402
from lipopt.registry import methods  # noqa: E402

#: (label, file, norm, output, domain)
REQUESTS = [
    (
        "bundled digits, x0 ± 0.02, output 0",
        REPO / "data/digits_mlp_64-32-32-10.npz",
        "inf",
        0,
        {"center": "x0", "eps": 0.02},
    ),
    ("bundled digits, global", REPO / "data/digits_mlp_64-32-32-10.npz", "inf", None, None),
    ("bundled digits, global", REPO / "data/digits_mlp_64-32-32-10.npz", "2", None, None),
    ("bundled digits, box [0, 1]", REPO / "data/digits_mlp_64-32-32-10.npz", "1", None, (0.0, 1.0)),
    ("GLipSDP fnn3 seed 0, output 7", EXTERNAL / "glipsdp_fnn3_seed0_64-32-32-10.npz", "2", 7, None),
    ("GLipSDP fnn3 seed 0, output 7", EXTERNAL / "glipsdp_fnn3_seed0_64-32-32-10.npz", "inf", 7, None),
    ("GLipSDP chain W64 d4", EXTERNAL / "glipsdp_mlpchain_W64_d4.npz", "2", None, None),
    ("ECLipsE MNIST 784-100-100-10", EXTERNAL / "eclipse_mnist_784-100-100-10.npz", "2", None, None),
    ("LipBaB 10-30-30-30-3, box [0, 0.1]", EXTERNAL / "lipbab_sd_10-30-30-30-3.npz", "inf", None, (0.0, 0.1)),
    ("LipBaB 10-30-30-30-3, box [0, 0.1]", EXTERNAL / "lipbab_sd_10-30-30-30-3.npz", "2", None, (0.0, 0.1)),
    ("ExLipBaB wine 11-12-12-1", EXTERNAL / "exlipbab_wine_11-12-12-1.npz", "2", None, None),
]
QUICK = {0, 2, 4, 8}


def _best(result) -> tuple[float, float, str]:
    best = result.best
    if best is None:
        return float("inf"), 0.0, "—"
    return best.value, best.timings.total, best.label


def run(request, time_limit: float) -> dict:
    label, path, norm, output, domain = request
    singles = []
    for name, method in methods().items():
        if method.kind != "upper" or name == "exact-pop":
            continue
        t0 = time.perf_counter()
        try:
            res = bound(str(path), norm, output=output, domain=domain, methods=[name], time_limit=time_limit)
        except Exception as exc:  # refused alone: not a candidate
            print(f"  {name}: {str(exc)[:80]}", file=sys.stderr)
            continue
        value, _, row = _best(res)
        singles.append((value, time.perf_counter() - t0, row))
        print(f"  {name}: {value:.6g} ({singles[-1][1]:.1f} s)", file=sys.stderr)
    t0 = time.perf_counter()
    auto = bound(str(path), norm, output=output, domain=domain, time_limit=time_limit)
    auto_time = time.perf_counter() - t0
    best_single = min(singles, key=lambda s: (s[0], s[1]))
    auto_value, _, auto_row = _best(auto)
    return {
        "request": f"{label}, ℓ{'∞' if norm == 'inf' else norm}",
        "best single": best_single[2],
        "single value": best_single[0],
        "single s": best_single[1],
        "auto value": auto_value,
        "auto row": auto_row,
        "auto s": auto_time,
        "tightness": auto_value / best_single[0] if np.isfinite(best_single[0]) else float("nan"),
        "time ratio": auto_time / max(best_single[1], 1e-3),
        "chosen": "; ".join(
            line.split(":")[0].removeprefix("chose ") for line in auto.plan if line.startswith("chose")
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="four requests only")
    args = parser.parse_args()
    rows = []
    for i, request in enumerate(REQUESTS):
        if (args.quick and i not in QUICK) or not request[1].exists():
            continue
        print(f"{request[0]} ℓ{request[2]}", file=sys.stderr)
        rows.append(run(request, args.time_limit))
    cols = [
        "request",
        "best single",
        "single value",
        "single s",
        "auto row",
        "auto value",
        "auto s",
        "tightness",
        "time ratio",
        "chosen",
    ]
    lines = [
        "# The automatic chain against every single method",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on 2 shared cores, `python benchmarks/auto_chain.py "
        f"--time-limit {args.time_limit:g}`. Each method alone with its default levels; the automatic chain "
        "is `lipopt bound NET --norm p` without `--method`. Targets: tightness (auto best / best single) "
        "≤ 1.01, time ratio (auto total / best single method's time) ≤ 2.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = [f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    met_t = sum(r["tightness"] <= 1.01 for r in rows)
    met_s = sum(r["time ratio"] <= 2.0 for r in rows)
    lines += [
        "",
        f"Tightness target met on {met_t}/{len(rows)} requests, time target on {met_s}/{len(rows)}.",
    ]
    out = REPO / "benchmarks" / "results" / "auto_chain.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
