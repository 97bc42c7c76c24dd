"""Command line: ``lipopt info | bound | graph | sweep | plot``.

Bad input prints one line ``lipopt: error: …`` on stderr and exits with code 2 (``--debug``
shows the traceback). Long steps show a progress bar on stderr; ``--json`` prints one object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import LipoptError

EXIT_BAD_INPUT = 2

BOUND_EPILOG = """\
methods:
  naive        product of layer operator norms
  abs-product  ‖ |W_1|ᵀ⋯|W_{L+1}ᵀc| ‖_q  (tighter for ℓ1/ℓ∞)
  lp           Sherali–Adams LP level k (LiPopt-k) on the sparse binary POP, certified
  sdp          Lasserre/Shor SDP of order d (d = 1: Shor), certified
  sdp+lp       Shor SDP strengthened with Sherali–Adams constraints
  sdp-ball     ℓ2 Shor SDP keeping t in the unit ball (one hidden layer)
  lipsdp       LipSDP-Neuron (ℓ2, vector output), certified
  exact-pop    exact maximum of the polynomial by vertex enumeration (tiny networks)
  lower        largest gradient norm found at real points (lower bound)

examples:
  lipopt bound net.npz --norm inf --method lp --degree 2 --degree 3
  lipopt bound net.npz --norm 2 --output 0 --method sdp --json
  lipopt bound net.npz --norm inf --center x0 --eps 0.1 --method lp
"""


class _MethodAction(argparse.Action):
    """Collects ``--method`` and ``--degree`` in order into ``[(method, [degrees]), …]``."""

    def __call__(self, parser, namespace, values, option_string=None):
        plan = list(getattr(namespace, self.dest, None) or [])
        plan.append((values, []))
        setattr(namespace, self.dest, plan)


class _DegreeAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        plan = list(getattr(namespace, self.dest, None) or [])
        if not plan or plan[-1][0] not in ("lp", "sdp", "sdp+lp"):
            plan.append(("*", []))  # degrees for every relaxation
        plan[-1][1].append(values)
        setattr(namespace, self.dest, plan)


def plan_methods(plan: list[tuple[str, list[int]]] | None) -> tuple[list[str], dict[str, list[int]]]:
    """Methods in order and per-relaxation degrees from the ``--method/--degree`` sequence."""
    methods: list[str] = []
    degrees: dict[str, list[int]] = {}
    shared = [d for m, ds in (plan or []) if m == "*" for d in ds]
    for m, ds in plan or []:
        if m == "*":
            continue
        if m not in methods:
            methods.append(m)
        degrees.setdefault(m, []).extend(ds)
    if not methods:
        methods = ["naive", "abs-product", "lp", "lower"]
    for m in methods:
        if not degrees.get(m) and shared:
            degrees[m] = list(shared)
    return methods, {m: d for m, d in degrees.items() if d}


def _add_target_and_domain(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--output", type=int, metavar="I", help="bound the output I (default: every output, max)")
    g.add_argument("--margin", type=int, nargs=2, metavar=("I", "J"), help="bound the margin f_I − f_J")
    d = p.add_argument_group("input domain (default: global)")
    d.add_argument("--box", type=float, nargs=2, metavar=("LO", "HI"), help="local bound on [LO, HI]^n")
    d.add_argument(
        "--center", metavar="x0|FILE.npy", help="centre: 'x0' (from the network file) or a .npy file"
    )
    d.add_argument("--eps", type=float, metavar="R", help="ℓ∞ radius around --center")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipopt",
        description="Certified upper bounds on Lipschitz constants of neural networks "
        "by sparse polynomial optimization.",
    )
    parser.add_argument("--version", action="version", version=f"lipopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="architecture, parameters and sparsity of a network")
    info.add_argument("network", help="network file (.npz, .pt/.pth, .onnx)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument(
        "--input-shape", type=int, nargs="+", metavar="D", help="input shape (C H W) for conv nets"
    )

    bound = sub.add_parser(
        "bound",
        help="bound the Lipschitz constant",
        epilog=BOUND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bound.add_argument("network", help="network file (.npz, .pt/.pth, .onnx)")
    bound.add_argument("--norm", default="inf", choices=["inf", "2", "1"], help="input norm ℓp (default inf)")
    bound.add_argument(
        "--method",
        action=_MethodAction,
        dest="plan",
        metavar="M",
        help="method (repeatable; default: naive abs-product lp lower)",
    )
    bound.add_argument(
        "--degree",
        action=_DegreeAction,
        dest="plan",
        type=int,
        metavar="K",
        help="relaxation degree/level (repeatable); binds to the --method before it, "
        "or to every relaxation when given first (default: per method)",
    )
    _add_target_and_domain(bound)
    bound.add_argument("--json", action="store_true", help="print one JSON object")
    bound.add_argument("--time-limit", type=float, metavar="S", help="time limit per solve (seconds)")
    bound.add_argument(
        "--max-memory",
        type=float,
        default=8.0,
        metavar="GB",
        help="refuse relaxations larger than this (default 8 GB)",
    )
    bound.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    bound.add_argument("--no-progress", action="store_true", help="no progress bar")
    bound.add_argument(
        "--input-shape", type=int, nargs="+", metavar="D", help="input shape (C H W) for conv nets"
    )

    graph = sub.add_parser("graph", help="correlative sparsity graph, chordal extension, cliques")
    graph.add_argument("network")
    graph.add_argument(
        "--input-shape", type=int, nargs="+", metavar="D", help="input shape (C H W) for conv nets"
    )
    graph.add_argument("--norm", default="inf", choices=["inf", "2", "1"])
    _add_target_and_domain(graph)
    graph.add_argument(
        "--extension",
        default="min-degree",
        choices=["min-degree", "min-fill", "mcs-m"],
        help="chordal extension heuristic",
    )
    graph.add_argument("--save", metavar="FILE.png", help="save a picture of the graph and cliques")
    graph.add_argument("--json", action="store_true")

    sweep = sub.add_parser("sweep", help="run a grid of networks × norms × methods × degrees")
    sweep.add_argument("spec", help="sweep specification (TOML)")
    sweep.add_argument("--out", required=True, metavar="RESULTS.csv", help="output table (resumable)")
    sweep.add_argument("--executor", default="serial", choices=["serial", "processes", "dask"])
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler (default: a LocalCluster)")
    sweep.add_argument("--workers", type=int, metavar="N", help="worker processes")
    sweep.add_argument("--no-progress", action="store_true")

    plot = sub.add_parser("plot", help="plots of a sweep's results table")
    plot.add_argument("results", help="RESULTS.csv written by lipopt sweep")
    plot.add_argument("--out-dir", default="plots", help="directory for the figures (default plots/)")
    plot.add_argument("--format", action="append", choices=["png", "pdf"], help="figure format (repeatable)")
    return parser


# ---------------------------------------------------------------------------------------------
def _load(args) -> object:
    from .loaders import load_network

    shape = tuple(args.input_shape) if getattr(args, "input_shape", None) else None
    return load_network(args.network, input_shape=shape)


def _target_domain(net, args):
    from .problems import make_domain, make_target

    target = make_target(net, output=args.output, margin=tuple(args.margin) if args.margin else None)
    center = None
    if args.center is not None:
        if args.center == "x0":
            if net.x0 is None:
                raise LipoptError(f"--center x0: the network file {args.network} has no 'x0' entry")
            center = net.x0
        else:
            try:
                center = np.load(args.center, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise LipoptError(f"--center: cannot read {args.center}: {e}") from None
    box = tuple(args.box) if args.box else None
    return target, make_domain(net, box=box, center=center, eps=args.eps)


def cmd_info(args) -> int:
    net = _load(args)
    layers = []
    for i, layer in enumerate(net.layers):
        layers.append(
            {
                "index": i,
                "in": layer.in_dim,
                "out": layer.out_dim,
                "activation": layer.activation.name,
                "nonzeros": layer.nnz(),
                "density": layer.nnz() / max(1, layer.in_dim * layer.out_dim),
                "sparse": layer.is_sparse,
            }
        )
    info = {
        "network": net.name,
        "architecture": net.architecture(),
        "inputs": net.input_dim,
        "outputs": net.output_dim,
        "hidden_layers": net.depth,
        "parameters": net.num_parameters(),
        "nonzeros": net.num_nonzeros(),
        "has_x0": net.x0 is not None,
        "layers": layers,
    }
    if args.json:
        print(json.dumps(info, indent=2, default=_jsonable))
        return 0
    print(f"{net.name}: {info['architecture']}  ({net.depth} hidden layers)")
    print(
        f"  parameters {info['parameters']:,}  non-zeros {info['nonzeros']:,}"
        + ("  (x0 stored)" if net.x0 is not None else "")
    )
    for layer in layers:
        print(
            f"  layer {layer['index']}: {layer['in']:>5} → {layer['out']:<5} {layer['activation']:<10}"
            f" density {layer['density']:.3f}" + ("  sparse" if layer["sparse"] else "")
        )
    return 0


def cmd_bound(args) -> int:
    from .bounds import METHODS, bound_chain

    net = _load(args)
    target, domain = _target_domain(net, args)
    methods, degrees = plan_methods(args.plan)
    for m in methods:
        if m not in METHODS:
            raise LipoptError(f"unknown method {m!r}; choose from: {', '.join(METHODS)}")
    if "lower" not in methods:
        methods = [*methods, "lower"]
    chain = bound_chain(
        net,
        args.norm,
        methods,
        degrees,
        target,
        domain,
        seed=args.seed,
        time_limit=args.time_limit,
        max_memory_bytes=args.max_memory * 1e9,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(chain.to_dict(), indent=2, default=_jsonable))
        return 0
    print(format_chain(chain))
    return 0


def format_chain(chain) -> str:
    where = "global" if chain.domain is None else chain.domain.description
    labels = chain.target.labels
    what = ", ".join(labels) if len(labels) <= 3 else "all outputs (max)"
    lines = [
        f"{chain.network}  ℓ{'∞' if chain.norm == 'inf' else chain.norm}  {what}  {where}",
        f"{'method':<12}{'degree':>7}{'upper bound':>16}  {'certified':<10}{'status':<12}"
        f"{'build s':>9}{'solve s':>9}",
    ]
    for b in chain.bounds:
        deg = "" if b.degree is None else str(b.degree)
        val = f"{b.value:.6g}" if np.isfinite(b.value) else "—"
        bt = "" if b.build_time_s is None else f"{b.build_time_s:.2f}"
        st = "" if b.solve_time_s is None else f"{b.solve_time_s:.2f}"
        cert = "yes" if b.certified else "NO"
        lines.append(f"{b.method:<12}{deg:>7}{val:>16}  {cert:<10}{b.status:<12}{bt:>9}{st:>9}")
    if chain.lower_bound is not None:
        lines.append(f"{'lower':<12}{'':>7}{chain.lower_bound.value:>16.6g}  ({chain.lower_bound.method})")
    best = chain.best
    if best is not None:
        ratio = chain.ratio
        lines.append(
            f"best certified: {best.value:.6g} ({best.method}"
            + (f" {best.degree}" if best.degree else "")
            + ")"
            + (f", {ratio:.3f}× the lower bound" if ratio else "")
        )
    return "\n".join(lines)


def cmd_graph(args) -> int:
    from .graph import clique_structure
    from .problems import build_problem

    net = _load(args)
    target, domain = _target_domain(net, args)
    problem = build_problem(net, args.norm, target, domain)
    stats = []
    for pop in problem.pops:
        cs = clique_structure(pop.polynomial, args.extension)
        stats.append({"pop": pop.label, **cs.to_dict()})
        if args.save and len(stats) == 1:
            from .graph import draw

            draw(cs, args.save, pop.polynomial)
    if args.json:
        print(json.dumps(stats if len(stats) > 1 else stats[0], indent=2, default=_jsonable))
        return 0
    for s in stats[:10]:
        print(
            f"{s['pop']}: variables {s['n_vars']}, edges {s['n_edges']}, fill-in {s['n_fill']}, "
            f"cliques {s['n_cliques']}, largest clique {s['max_clique']}"
        )
    if len(stats) > 10:
        print(f"... and {len(stats) - 10} more problems")
    if args.save:
        print(f"picture saved to {args.save}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import run_sweep

    run_sweep(
        args.spec,
        args.out,
        executor=args.executor,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.no_progress,
    )
    return 0


def cmd_plot(args) -> int:
    from .plot import plot_results

    for path in plot_results(args.results, args.out_dir, formats=args.format or ["png", "pdf"]):
        print(path)
    return 0


def _jsonable(o):
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


COMMANDS = {"info": cmd_info, "bound": cmd_bound, "graph": cmd_graph, "sweep": cmd_sweep, "plot": cmd_plot}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LipoptError as e:
        if args.debug:
            raise
        print(f"lipopt: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        if args.debug:
            raise
        print(
            "lipopt: error: out of memory; lower the degree, use a sparser method, or a smaller network",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lipopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
