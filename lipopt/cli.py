"""Command line: ``lipopt info | bound | graph | sweep | plot``.

Bad input prints one line ``lipopt: error: …`` on stderr and exits with code 2 (``--debug``
shows the traceback); so do argparse usage errors (``lipopt bound: error: …``). An unexpected
failure prints one ``lipopt: internal error: …`` line and exits with code 1. Long steps show a
progress bar on stderr; ``--json`` prints one (strict, NaN-free) JSON object on stdout. Files
written by ``graph --save`` and ``plot`` appear only when complete; a failed ``sweep`` leaves
no empty results table behind (rows already written are kept: rerunning resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import __version__
from .chain import AUTO, DEFAULT_TIME_LIMIT
from .errors import LipoptError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1

#: largest ``--level``/``--order``: relaxations are exact once the level reaches the largest
#: clique, and their size grows exponentially with it (moment keys overflow 64 bits before 64)
MAX_LEVEL = 20

MAIN_EPILOG = """\
examples:
  lipopt info data/digits_mlp_64-32-32-10.npz
  lipopt bound net.npz --norm inf --output 0 --method lp --level 3
  lipopt graph net.npz --norm inf --extension min-fill --save graph.png
  lipopt sweep examples/sweep_small.toml --out results.csv
  lipopt plot results.csv --out-dir plots

Run 'lipopt COMMAND --help' for the options of a command. Bad input gives one line
'lipopt: error: …' and exit code 2; add --debug for the traceback.
"""

INFO_EPILOG = """\
examples:
  lipopt info data/digits_mlp_64-32-32-10.npz
  lipopt info model.onnx --json
  lipopt info cnn.pt --input-shape 1 28 28
"""

BOUND_EXAMPLES = """\
examples:
  lipopt bound net.npz --norm inf --method lp --level 2 --level 3
  lipopt bound net.npz --norm 2 --output 0 --method sdp --order 1 --json
  lipopt bound net.npz --norm inf --center x0 --eps 0.1 --method lp
  lipopt bound net.npz --norm inf --box 0 1 --margin 3 5 --method lp
  lipopt bound net.npz --method lp --level 3 --lp-algorithm ipm --lp-threads 2
"""


def _bound_epilog() -> str:
    """The method table of ``lipopt bound --help``, generated from the registry."""
    from .registry import methods

    lines = ["methods (--method M, repeatable; without --method the automatic chain chooses):"]
    for name, m in methods().items():
        index = {"level": " (--level K)", "order": " (--order D)"}.get(m.hierarchy or "", "")
        lines.append(f"  {name:<12} {m.summary}{index}")
    return "\n".join(lines) + "\n\n" + BOUND_EXAMPLES


GRAPH_EPILOG = """\
examples:
  lipopt graph net.npz --norm inf --output 0
  lipopt graph net.npz --norm 2 --extension min-fill --save graph.png
  lipopt graph net.npz --center x0 --eps 0.05 --json
"""

SWEEP_EPILOG = """\
The spec lists [networks] (files and/or generated sizes) and [run] (norms, methods, degrees,
radii, …); LP solver options go in a [run.options.lp] table (keys of --lp-* in 'lipopt bound':
method, threads, basis, project, clique_method). Rerunning the same command resumes: rows
already in RESULTS.csv are skipped (use a new --out after changing solver options).

examples:
  lipopt sweep examples/sweep_small.toml --out results/small.csv
  lipopt sweep examples/sweep_certdnn.toml --out certdnn.csv --executor processes --workers 2
  lipopt sweep examples/sweep_cluster.toml --out cluster.csv --executor dask \\
               --scheduler tcp://HOST:8786
"""

PLOT_EPILOG = """\
examples:
  lipopt plot results/small.csv --out-dir results/plots
  lipopt plot results.csv --format pdf
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``lipopt bound: error: …; see 'lipopt bound --help'``), exit 2;
    negative numbers in any notation (``--box -1e-3 1``, ``--box -inf 0``) are values."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf(inity)?$", re.IGNORECASE
        )

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _MethodAction(argparse.Action):
    """Collects ``--method``, ``--level`` and ``--order`` in order into ``[(method, [(kind, k)]), …]``."""

    def __call__(self, parser, namespace, values, option_string=None):
        plan = list(getattr(namespace, self.dest, None) or [])
        plan.append((values, []))
        setattr(namespace, self.dest, plan)


class _IndexAction(argparse.Action):
    """``--level K`` / ``--order D``: binds to the ``--method`` before it (or to every method
    with that kind of hierarchy when given before any ``--method``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        plan = list(getattr(namespace, self.dest, None) or [])
        if not plan:
            plan.append(("*", []))
        plan[-1][1].append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, plan)


class _RenamedAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(
            f"{option_string} was renamed: use --level K for lp and sdp+lp (the Sherali–Adams level) "
            "or --order D for sdp (the moment order), after the --method it applies to"
        )


def plan_methods(
    plan: list[tuple[str, list[tuple[str, int]]]] | None,
) -> tuple[list[str], dict[str, list[int]]]:
    """Methods in order and their levels/orders from the ``--method/--level/--order`` sequence.

    A ``--level`` or ``--order`` given before any ``--method`` applies to every method whose
    hierarchy has that kind. Raises when an index does not fit the method it binds to.
    """
    from .registry import get_method, methods

    names: list[str] = []
    levels: dict[str, list[int]] = {}
    for _, items in plan or []:
        for _, k in items:
            _check_level(k)
    shared = [item for m, items in (plan or []) if m == "*" for item in items]
    for m, items in plan or []:
        if m == "*":
            continue
        method = _known_method(m)
        if m not in names:
            names.append(m)
        for kind, k in items:
            if method.hierarchy != kind:
                has = f"takes --{method.hierarchy}" if method.hierarchy else "has no level or order"
                raise LipoptError(f"--{kind} {k} follows --method {m}, which {has}")
            levels.setdefault(m, []).append(k)
    if not names:
        if shared:
            kind = shared[0][0]
            raise LipoptError(
                f"--{kind} needs a --method before it (the automatic chain picks its own levels)"
            )
        return [AUTO], {}
    explicit = {m for m, v in levels.items() if v}
    for kind, k in shared:
        targets = [n for n in names if get_method(n).hierarchy == kind]
        if not targets:
            using = [n for n, m in methods().items() if m.hierarchy == kind]
            raise LipoptError(
                f"--{kind} applies to {', '.join(using)}; add e.g. --method {using[0]}, or drop --{kind}"
            )
        for n in targets:
            if n not in explicit:
                levels.setdefault(n, []).append(k)
    return names, {m: v for m, v in levels.items() if v}


def _known_method(name: str):
    from .registry import methods

    table = methods()
    if name not in table:
        hint = f"; did you mean {name.lower()!r}?" if name.lower() in table else ""
        raise LipoptError(f"unknown method {name!r}; choose from: {', '.join(table)}{hint}")
    return table[name]


def _add_common(p: argparse.ArgumentParser, *, input_shape: bool = True) -> None:
    """``--debug`` also after the command (``lipopt bound net.npz --debug``), ``--input-shape`` and
    ``--trust-pickle``."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    if input_shape:
        p.add_argument(
            "--input-shape",
            type=int,
            nargs="+",
            metavar="D",
            help="shape of one input sample, e.g. C H W for conv nets (needed by .pt/.onnx "
            "convolutions without a static input shape)",
        )
        p.add_argument(
            "--trust-pickle",
            action="store_true",
            help="unpickle Python objects in a torch.save .pt file (e.g. a whole nn.Module); this can "
            "run arbitrary code: only for files you trust",
        )


def _add_target_and_domain(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--output", type=int, metavar="I", help="bound the output I (default: every output, max)")
    g.add_argument(
        "--margin", type=int, nargs=2, metavar=("I", "J"), help="bound the margin f_I − f_J (I ≠ J)"
    )
    d = p.add_argument_group("input domain (default: global)")
    d.add_argument(
        "--box", type=float, nargs=2, metavar=("LO", "HI"), help="local bound on [LO, HI]^n (LO <= HI)"
    )
    d.add_argument(
        "--center",
        metavar="x0|FILE.npy",
        help="centre of an ℓ∞ ball (with --eps): 'x0' (stored in the network file) or a .npy "
        "vector saved with numpy.save",
    )
    d.add_argument("--eps", type=float, metavar="R", help="ℓ∞ radius around --center (finite, >= 0)")


_SWITCH = {"on": True, "off": False, "auto": None}


def _option_flag(group: str, name: str) -> str:
    return f"--{group}-{name}".replace("_", "-").replace("+", "")


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """One flag ``--{group}-{field}`` per field of every method's Options (see the registry)."""
    import dataclasses

    from .registry import option_groups

    for group, cls in option_groups().items():
        fields = dataclasses.fields(cls)
        if not fields:
            continue
        g = p.add_argument_group(f"{group} options")
        for f in fields:
            hint = str(f.type)
            if hint.startswith(("dict", "list", "tuple")):
                continue  # structured options: Python API and sweep specs only
            kwargs: dict = {
                "dest": f"opt:{group}:{f.name}",
                "default": None,
                "help": f.metadata.get("help", ""),
            }
            if hint.startswith("bool"):
                kwargs["choices"] = ["on", "off", "auto"] if "None" in hint else ["on", "off"]
            elif f.metadata.get("choices"):
                kwargs["choices"] = list(f.metadata["choices"])
            elif hint.startswith("int"):
                kwargs.update(type=int, metavar="N")
            elif hint.startswith("float"):
                kwargs.update(type=float, metavar="X")
            else:
                kwargs["metavar"] = "NAME"
            if f.default is not dataclasses.MISSING and f.default is not None:
                shown = (
                    {True: "on", False: "off"}.get(f.default, f.default)
                    if isinstance(f.default, bool)
                    else f.default
                )
                kwargs["help"] += f" (default {shown})"
            g.add_argument(_option_flag(group, f.name), **kwargs)


def _method_options(args, methods: list[str]) -> dict:
    """``{group: {field: value}}`` of the option flags given, checked against the methods run."""
    from .registry import get_method, parse_options

    given: dict[str, dict] = {}
    for dest, value in vars(args).items():
        if dest.startswith("opt:") and value is not None:
            _, group, name = dest.split(":")
            given.setdefault(group, {})[name] = _SWITCH.get(value, value) if isinstance(value, str) else value
    groups = {get_method(m).group() for m in methods}
    for group, values in given.items():
        if group not in groups:
            flags = ", ".join(_option_flag(group, k) for k in values)
            users = [m for m in methods if get_method(m).group() == group] or [group]
            raise LipoptError(
                f"{flags}: options of {users[0]} need --method {users[0]}, which is not requested; add it"
            )
        parse_options(group, values)  # one-line errors for bad values
    return given


def _add_info_command(sub, raw) -> None:
    """``lipopt info``: architecture and sparsity."""
    info = sub.add_parser(
        "info",
        help="architecture, parameters and sparsity of a network",
        description="Architecture, parameters and sparsity of a network.",
        epilog=INFO_EPILOG,
        formatter_class=raw,
    )
    info.add_argument("network", help="network file (.npz, .pt/.pth, .onnx)")
    info.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_common(info)


def _add_bound_command(sub, raw) -> None:
    """``lipopt bound``: methods, levels, target, domain, limits and the generated method options."""
    bound = sub.add_parser(
        "bound",
        help="bound the Lipschitz constant",
        description="Certified upper bounds (and a lower bound) on the Lipschitz constant.",
        epilog=_bound_epilog(),
        formatter_class=raw,
    )
    bound.add_argument("network", help="network file (.npz, .pt/.pth, .onnx)")
    bound.add_argument("--norm", default="inf", choices=["inf", "2", "1"], help="input norm ℓp (default inf)")
    bound.add_argument(
        "--method",
        action=_MethodAction,
        dest="plan",
        metavar="M",
        help="method (repeatable; see below; default: an automatic chain chosen for the network, "
        "norm and domain, explained under the table)",
    )
    for kind, letter, what in (("level", "K", "Sherali–Adams level"), ("order", "D", "moment order")):
        bound.add_argument(
            f"--{kind}",
            action=_IndexAction,
            dest="plan",
            type=int,
            metavar=letter,
            help=f"{what} 1..{MAX_LEVEL} of the --method before it (repeatable; given before any "
            f"--method: of every method with a {kind}; default: per method)",
        )
    bound.add_argument("--degree", action=_RenamedAction, type=int, help=argparse.SUPPRESS)
    _add_target_and_domain(bound)
    bound.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bound.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT,
        metavar="S",
        help="time limit per step (a method at one level, all its sub-problems) in seconds (> 0; "
        f"default {DEFAULT_TIME_LIMIT:g}); a step stopped early still reports a certified, looser bound",
    )
    bound.add_argument(
        "--max-memory",
        type=float,
        default=8.0,
        metavar="GB",
        help="refuse steps estimated larger than this (> 0; default 8 GB)",
    )
    bound.add_argument(
        "--seed", type=int, default=0, help="seed (>= 0) for sampling the lower bound (default 0)"
    )
    bound.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")
    _add_common(bound)
    _add_method_options(bound)


def _add_graph_command(sub, raw) -> None:
    """``lipopt graph``: sparsity graph and cliques."""
    graph = sub.add_parser(
        "graph",
        help="correlative sparsity graph, chordal extension, cliques",
        description="Sparsity graph, chordal extension and cliques of the polynomial problems "
        "that the relaxations solve.",
        epilog=GRAPH_EPILOG,
        formatter_class=raw,
    )
    graph.add_argument("network", help="network file (.npz, .pt/.pth, .onnx)")
    graph.add_argument("--norm", default="inf", choices=["inf", "2", "1"], help="input norm ℓp (default inf)")
    _add_target_and_domain(graph)
    graph.add_argument(
        "--extension",
        default="min-degree",
        choices=["min-degree", "min-fill", "mcs-m"],
        help="chordal extension heuristic (default min-degree)",
    )
    graph.add_argument(
        "--save",
        metavar="FILE.png|FILE.pdf",
        help="save a picture of the sparsity pattern and clique sizes (first problem)",
    )
    graph.add_argument("--json", action="store_true", help="print JSON on stdout")
    _add_common(graph)


def _add_sweep_command(sub, raw) -> None:
    """``lipopt sweep``: a grid of requests into one table."""
    sweep = sub.add_parser(
        "sweep",
        help="run a grid of networks × norms × methods × degrees",
        description="Run a grid of networks × norms × radii × methods × degrees into one table.",
        epilog=SWEEP_EPILOG,
        formatter_class=raw,
    )
    sweep.add_argument("spec", help="sweep specification (a .toml file)")
    sweep.add_argument(
        "--out",
        required=True,
        metavar="RESULTS.csv",
        help="output table (.csv, plus .jsonl beside it; resumable)",
    )
    sweep.add_argument(
        "--executor",
        default="serial",
        choices=["serial", "processes", "dask"],
        help="where tasks run (default serial)",
    )
    sweep.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://HOST:8786 (default: a LocalCluster)",
    )
    sweep.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (>= 1; processes and dask executors)"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")
    _add_common(sweep, input_shape=False)


def _add_plot_command(sub, raw) -> None:
    """``lipopt plot``: figures of a results table."""
    plot = sub.add_parser(
        "plot",
        help="plots of a sweep's results table",
        description="Figures (bounds, times, tightness) of a results table written by lipopt sweep.",
        epilog=PLOT_EPILOG,
        formatter_class=raw,
    )
    plot.add_argument("results", help="RESULTS.csv written by lipopt sweep")
    plot.add_argument(
        "--out-dir", default="plots", metavar="DIR", help="directory for the figures (default plots/)"
    )
    plot.add_argument(
        "--format", action="append", choices=["png", "pdf"], help="figure format (repeatable; default both)"
    )
    _add_common(plot, input_shape=False)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="lipopt",
        description="Certified upper bounds on Lipschitz constants of neural networks "
        "by sparse polynomial optimization.",
        epilog=MAIN_EPILOG,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"lipopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for add in (
        _add_info_command,
        _add_bound_command,
        _add_graph_command,
        _add_sweep_command,
        _add_plot_command,
    ):
        add(sub, raw)
    return parser


# ---------------------------------------------------------------------------------------------
# Checks of the arguments (before any work) and of files
# ---------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{x:g}"


def _check_input_file(path: Path, what: str, suffixes: tuple[str, ...], hint: str) -> None:
    if path.is_dir():
        raise LipoptError(f"{what} {path} is a directory, not a file; {hint}")
    if path.suffix.lower() not in suffixes:
        raise LipoptError(
            f"{what} {path}: expected a {' or '.join(suffixes)} file, got "
            f"{path.suffix or '(no suffix)'!r}; {hint}"
        )
    if not path.exists():
        raise LipoptError(f"{what} {path}: no such file; {hint}")


def _load(args) -> object:
    from .loaders import load_network

    shape = None
    if getattr(args, "input_shape", None):
        if any(d <= 0 for d in args.input_shape):
            raise LipoptError(
                "--input-shape needs positive sizes (e.g. C H W = 1 28 28), got "
                + " ".join(map(str, args.input_shape))
            )
        shape = tuple(args.input_shape)
    trust = bool(getattr(args, "trust_pickle", False))  # the loader refuses directories
    return load_network(args.network, input_shape=shape, trust_pickle=trust)


def _check_target_domain_args(args) -> None:
    """Checks that need no network: margin indices, box, radius, centre/radius pairing."""
    if args.margin is not None and args.margin[0] == args.margin[1]:
        raise LipoptError(f"--margin I J needs two different outputs, got {args.margin[0]} {args.margin[1]}")
    if args.box is not None:
        lo, hi = args.box
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise LipoptError(f"--box LO HI needs finite numbers with LO <= HI, got {_num(lo)} {_num(hi)}")
        if args.center is not None:
            raise LipoptError("give either --box LO HI or --center with --eps, not both")
        if args.eps is not None:
            raise LipoptError("--eps is the radius around --center and does not apply to --box; drop it")
    if args.eps is not None:
        if not math.isfinite(args.eps) or args.eps < 0:
            raise LipoptError(f"--eps must be a finite radius >= 0, got {_num(args.eps)}")
        if args.center is None:
            raise LipoptError("--eps needs --center x0|FILE.npy (the centre of the ℓ∞ ball)")
    if args.center is not None and args.eps is None:
        raise LipoptError(f"--center {args.center} needs --eps R, the radius of the ℓ∞ ball around it")


def _read_center(text: str, n_inputs: int) -> np.ndarray:
    path = Path(text)
    hint = "give 'x0' (stored in the network file) or a .npy vector saved with numpy.save"
    if path.is_dir():
        raise LipoptError(f"--center {path} is a directory; {hint}")
    if not path.exists():
        raise LipoptError(f"--center {path}: no such file; {hint}")
    try:
        obj = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise LipoptError(f"--center {path} is not a readable .npy array; {hint}") from None
    if hasattr(obj, "files"):  # an .npz archive
        obj.close()
        raise LipoptError(f"--center {path} is an .npz archive, not one array; {hint}")
    arr = np.asarray(obj)
    if arr.dtype.kind not in "biuf":
        raise LipoptError(f"--center {path} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(float).ravel()
    if arr.size != n_inputs:
        raise LipoptError(
            f"--center {path} has {arr.size} entries but the network has {n_inputs} inputs; "
            f"save a vector of {n_inputs} numbers"
        )
    if not np.all(np.isfinite(arr)):
        raise LipoptError(f"--center {path} contains NaN or inf values")
    return arr


def _target_domain(net, args):
    from .problems import make_domain, make_target

    target = make_target(net, output=args.output, margin=tuple(args.margin) if args.margin else None)
    center = None
    if args.center is not None:
        if args.center == "x0":
            if net.x0 is None:
                raise LipoptError(
                    f"--center x0: the network file {args.network} has no 'x0' entry; "
                    "give a .npy file or --box"
                )
            center = net.x0
        else:
            center = _read_center(args.center, net.input_dim)
    box = tuple(args.box) if args.box else None
    return target, make_domain(net, box=box, center=center, eps=args.eps)


def _check_level(k: int) -> None:
    if k < 1:
        raise LipoptError(f"a level or order must be a positive integer (such as 3), got {k}")
    if k > MAX_LEVEL:
        raise LipoptError(
            f"level/order {k} is too large (at most {MAX_LEVEL}): relaxations grow exponentially "
            "with it and are exact once it reaches the largest clique; use e.g. 2-6"
        )


def _check_bound_args(args, methods: list[str]) -> dict:
    """Checks of ``lipopt bound``'s options; returns the method options per group."""
    if args.time_limit is not None and not (args.time_limit > 0):  # also rejects NaN
        raise LipoptError(f"--time-limit must be a positive number of seconds, got {_num(args.time_limit)}")
    if not (args.max_memory > 0):
        raise LipoptError(f"--max-memory must be a positive number of GB, got {_num(args.max_memory)}")
    if args.seed < 0:
        raise LipoptError(f"--seed must be a non-negative integer, got {args.seed}")
    if methods == [AUTO]:
        from .registry import method_names

        methods = list(method_names())  # the automatic chain may pick any method
    return _method_options(args, methods)


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------
def _jsonable(o):
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _strict(o):
    """``o`` with NaN/±inf floats replaced by None (JSON has no such numbers)."""
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_strict(v) for v in o]
    if isinstance(o, np.ndarray):
        return _strict(o.tolist())
    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(o) else None
    return o


def _print_json(obj) -> None:
    print(json.dumps(_strict(obj), indent=2, default=_jsonable, allow_nan=False))


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; the directories created, deepest first."""
    created = []
    p = path
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    if p.exists() and not p.is_dir():
        raise LipoptError(f"cannot create the directory {path}: {p} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LipoptError(f"cannot create the directory {path}: {e.strerror or e}") from None
    return created


def _remove_empty_dirs(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def _atomic_file(out: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``out`` (same suffix), renamed to ``out`` on success."""
    created = _make_dirs(out.parent)
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    try:
        try:
            yield tmp
            os.replace(tmp, out)
        except OSError as e:
            raise LipoptError(
                f"cannot write {out}: {e.strerror or e}; check the path and its permissions"
            ) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _remove_empty_dirs(created)
        raise


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
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
        _print_json(info)
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
    from .api import bound

    methods, levels = plan_methods(args.plan)
    options = _check_bound_args(args, methods)
    _check_target_domain_args(args)
    net = _load(args)
    target, domain = _target_domain(net, args)
    chain = bound(
        net,
        args.norm,
        output=args.output,
        margin=None if args.margin is None else tuple(args.margin),
        domain=domain,
        methods=AUTO if methods == [AUTO] else methods,
        levels=levels,
        seed=args.seed,
        time_limit=args.time_limit,
        max_memory_gb=args.max_memory,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
        options=options or None,
    )
    if args.json:
        _print_json(chain.to_dict())
        return 0
    print(chain.table())
    return 0


def format_chain(chain) -> str:
    """The text table of ``lipopt bound`` (see :meth:`lipopt.chain.ChainResult.table`)."""
    return chain.table()


def _check_picture_path(text: str) -> Path:
    out = Path(text)
    if out.is_dir():
        raise LipoptError(f"--save {out} is a directory; give a file name such as {out / 'graph.png'}")
    if out.suffix.lower() not in (".png", ".pdf"):
        raise LipoptError(
            f"--save {out}: unsupported picture format {out.suffix or '(no suffix)'!r}; "
            "use a .png or .pdf file name"
        )
    return out


def cmd_graph(args) -> int:
    from .graph import clique_structure
    from .problems import build_problem

    picture = _check_picture_path(args.save) if args.save else None
    _check_target_domain_args(args)
    net = _load(args)
    target, domain = _target_domain(net, args)
    problem = build_problem(net, args.norm, target, domain)
    stats = []
    for pop in problem.pops:
        cs = clique_structure(pop.polynomial, args.extension)
        stats.append({"pop": pop.label, **cs.to_dict()})
        if picture is not None and len(stats) == 1:
            from .plot import plot_cliques

            with _atomic_file(picture) as tmp:
                plot_cliques(cs, tmp, polynomial=pop.polynomial, title=f"{net.name}: {pop.label}")
    if args.json:
        _print_json(stats if len(stats) > 1 else stats[0])
        return 0
    for s in stats[:10]:
        print(
            f"{s['pop']}: variables {s['n_vars']}, edges {s['n_edges']}, fill-in {s['n_fill']}, "
            f"cliques {s['n_cliques']}, largest clique {s['max_clique']}"
        )
    if len(stats) > 10:
        print(f"... and {len(stats) - 10} more problems")
    if picture is not None:
        print(f"picture saved to {picture}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import load_spec, run_sweep

    spec = Path(args.spec)
    _check_input_file(spec, "sweep spec", (".toml",), "see examples/sweep_small.toml")
    out = Path(args.out)
    if out.is_dir() or out.suffix.lower() != ".csv":
        raise LipoptError(f"--out {out}: the results table must be a .csv file, e.g. --out results.csv")
    if args.workers is not None:
        if args.workers < 1:
            raise LipoptError(f"--workers must be >= 1, got {args.workers}")
        if args.executor == "serial":
            raise LipoptError("--workers applies to --executor processes or dask")
    if args.scheduler and args.executor != "dask":
        raise LipoptError("--scheduler applies to --executor dask only; add --executor dask")
    parsed = load_spec(spec)  # validates the spec, incl. [run.options] (sweep.check_solver_options)
    try:
        run_sweep(
            parsed,
            out,
            executor=args.executor,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        if out.exists():
            msg = f"lipopt: interrupted; the rows so far are in {out}: rerun the same command to resume"
            print(msg, file=sys.stderr)
            return 130
        raise
    return 0


def cmd_plot(args) -> int:
    from .plot import plot_results

    results = Path(args.results)
    _check_input_file(results, "results table", (".csv",), "give the RESULTS.csv written by lipopt sweep")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LipoptError(f"--out-dir {out_dir} exists and is not a directory; choose another --out-dir")
    created = _make_dirs(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".lipopt-plot-", dir=out_dir))
    try:
        paths = plot_results(results, tmp, formats=args.format or ["png", "pdf"])
        final = []
        for p in paths:
            dest = out_dir / Path(p).relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            final.append(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty_dirs(created)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    for path in final:
        print(path)
    return 0


COMMANDS = {"info": cmd_info, "bound": cmd_bound, "graph": cmd_graph, "sweep": cmd_sweep, "plot": cmd_plot}


def _fail(message: str, code: int = EXIT_BAD_INPUT, prefix: str = "lipopt: error: ") -> int:
    print(prefix + _one_line(message), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    previous = warnings.formatwarning
    if not debug:  # warnings as one line each, like the errors (restored on return)
        warnings.formatwarning = lambda message, *_a, **_k: f"lipopt: warning: {message}\n"
    try:
        return _run(args, debug)
    finally:
        warnings.formatwarning = previous


def _run(args, debug: bool) -> int:
    """Run the subcommand; every failure becomes one line on stderr and an exit code."""
    try:
        return COMMANDS[args.command](args)
    except LipoptError as e:
        if debug:
            raise
        return _fail(str(e))
    except MemoryError:
        if debug:
            raise
        return _fail("out of memory; lower the level or order, lower --max-memory, or use a smaller network")
    except KeyboardInterrupt:
        print("lipopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (e.g. '| head'): stop quietly
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_INTERNAL
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"{where}{e.strerror or e}; check the path and its permissions")
    except Exception as e:  # a bug: one line, the traceback with --debug
        if debug:
            raise
        return _fail(
            f"{type(e).__name__}: {e}. This is a bug in lipopt: rerun with --debug for the "
            "traceback and report it",
            EXIT_INTERNAL,
            "lipopt: internal error: ",
        )


if __name__ == "__main__":
    sys.exit(main())
