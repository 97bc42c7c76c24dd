"""Bounds on the published networks of ``../shared/external``, global and on their local domains.

For each network: the ℓ∞ constant (max over outputs; output 0 for scalar nets) globally and on
the published local domain (LipBaB: the box ``[0, 0.1]^n``; CertDNN SDP-NN: ``x0 ± 0.1``), with
naive, abs-product, the first valid LP level, the SDP route and the lower bound; the ℓ2
LipSDP-Neuron value on the LipSDP networks. Relaxations too large for the memory budget or the
time limit are reported as such (never as a number they are not). Writes
``benchmarks/results/external_nets.{csv,md}``.

Usage: ``python benchmarks/external_nets.py [--time-limit 120] [--max-memory 4]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from lipopt.chain import bound_chain
from lipopt.errors import LipoptError
from lipopt.loaders import load_network
from lipopt.problems import build_problem, make_domain, make_target

HERE = Path(__file__).resolve().parent
EXTERNAL = HERE.parent.parent / "shared" / "external"
OUT = HERE / "results"

CASES = [
    # file, local domain, norms
    ("lipbab_iris_4-5-5-3.npz", ("box", 0.0, 0.1), ["inf"]),
    ("lipbab_sd_10-15-10-3.npz", ("box", 0.0, 0.1), ["inf"]),
    ("lipbab_sd_10-20-15-10-3.npz", ("box", 0.0, 0.1), ["inf"]),
    ("lipbab_sd_10-30-30-30-3.npz", ("box", 0.0, 0.1), ["inf"]),
    ("lipsdp_random_2-10-30-20-2.npz", None, ["inf", "2"]),
    ("lipsdp_mnist_784-50-10.npz", None, ["2"]),
    ("certdnn_sdpnn_784-500-1.npz", ("center", 0.1), ["inf"]),
]


def relaxation_methods(problem, norm: str) -> list[tuple[str, int]]:
    deg = max(p.degree for p in problem.pops)
    out = [("lp", max(deg, 2))]
    if deg <= 2:
        out.append(("sdp", 1))
    if norm == "2":
        out = [("sdp", 1)] if deg <= 2 else [("lp", max(deg, 2))]
    return out


def run_case(net, norm, domain, where, time_limit, max_memory) -> list[dict]:
    target = make_target(net, output=0) if net.output_dim == 1 else make_target(net)
    rows = []
    base = bound_chain(net, norm, ["naive", "abs-product", "lower"], target=target, domain=domain)
    lower = base.lower_bound.value
    for b in base.bounds:
        status, total = b.status.value, b.timings.total
        rows.append(_row(net, norm, where, b.method, None, b.value, b.certified, status, total, lower))
    try:
        problem = build_problem(net, norm, target, domain)
        plan = relaxation_methods(problem, norm)
        n_vars = max(p.n_vars for p in problem.pops)
    except LipoptError as e:  # the POP itself is refused; the network-level methods still run
        rows.append(_row(net, norm, where, "lp", None, None, False, f"refused: {e}", 0.0, lower))
        plan, n_vars = [], None
    if norm == "2" and domain is None and net.is_chain:
        plan.append(("lipsdp", None))
    for method, degree in plan:
        t0 = time.perf_counter()
        try:
            chain = bound_chain(
                net,
                norm,
                [method],
                {method: [degree]} if degree else None,
                target,
                domain,
                time_limit=time_limit,
                max_memory_bytes=max_memory * 1e9,
            )
            b = chain.bounds[0]
            rows.append(
                _row(
                    net,
                    norm,
                    where,
                    method,
                    degree,
                    b.value,
                    b.certified,
                    b.status.value,
                    b.timings.total,
                    lower,
                    b.timings.build,
                    b.timings.solve,
                    n_vars,
                )
            )
        except (LipoptError, MemoryError) as e:
            rows.append(
                _row(
                    net,
                    norm,
                    where,
                    method,
                    degree,
                    None,
                    False,
                    f"refused: {str(e)[:120]}",
                    time.perf_counter() - t0,
                    lower,
                    n_vars=n_vars,
                )
            )
        print(
            f"  {net.name} ℓ{norm} {where} {method} {degree}: {rows[-1]['value']} "
            f"({rows[-1]['status']}, {rows[-1]['time_s']:.1f}s)",
            file=sys.stderr,
        )
    return rows


def _row(
    net,
    norm,
    where,
    method,
    degree,
    value,
    certified,
    status,
    time_s,
    lower,
    build=None,
    solve=None,
    n_vars=None,
) -> dict:
    return {
        "network": net.name,
        "architecture": net.architecture(),
        "norm": norm,
        "domain": where,
        "method": method,
        "degree": degree,
        "value": value,
        "certified": certified,
        "status": status,
        "time_s": round(time_s, 3),
        "build_time_s": build,
        "solve_time_s": solve,
        "pop_vars": n_vars,
        "lower": lower,
        "ratio_to_lower": (value / lower) if value and lower else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--max-memory", type=float, default=4.0, help="GB")
    ap.add_argument("--only", nargs="*", help="substrings of file names to run")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    for fname, local, norms in CASES:
        if args.only and not any(s in fname for s in args.only):
            continue
        net = load_network(EXTERNAL / fname)
        for norm in norms:
            for where in ("global", "local"):
                if where == "local":
                    if local is None:
                        continue
                    if local[0] == "box":
                        domain = make_domain(net, box=(local[1], local[2]))
                        label = f"box [{local[1]}, {local[2]}]^n"
                    else:
                        domain = make_domain(net, center=net.x0, eps=local[1])
                        label = f"x0 ± {local[1]}"
                else:
                    domain, label = None, "global"
                print(f"{fname} ℓ{norm} {label}", file=sys.stderr)
                rows.extend(run_case(net, norm, domain, label, args.time_limit, args.max_memory))
    OUT.mkdir(exist_ok=True)
    with open(OUT / "external_nets.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Published networks: certified bounds (ℓ∞ max over outputs unless scalar; ℓ2 where noted)",
        "",
        f"2 cores; time limit {args.time_limit:g} s per relaxation, memory budget {args.max_memory:g} GB. "
        "`refused` = the relaxation's size estimate exceeded the budget (nothing was solved); "
        "`lower` = best secant |f(b) − f(a)| / ‖b − a‖ between points of the domain (a true lower bound).",
        "",
        "| network | norm | domain | method | degree | bound | certified | status | time s | lower | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        val = f"{r['value']:.6g}" if r["value"] is not None else "—"
        ratio = f"{r['ratio_to_lower']:.3f}" if r["ratio_to_lower"] else "—"
        lines.append(
            f"| {r['architecture']} | {r['norm']} | {r['domain']} | {r['method']} | {r['degree'] or ''} | "
            f"{val} | {'yes' if r['certified'] else 'no'} | {r['status'][:60]} | {r['time_s']:.2f} | "
            f"{r['lower']:.6g} | {ratio} |"
        )
    (OUT / "external_nets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
