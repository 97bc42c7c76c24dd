"""Parameter sweeps: a grid of networks × norms × radii × methods × levels → one tidy table.

A sweep is described by a TOML file (or the equivalent dict)::

    description = "banded random networks"   # optional

    [networks]
    files = ["../data/digits_mlp_64-32-32-10.npz"]  # relative to the spec file; globs allowed
    sizes = [[8, 8, 8, 1], [10, 10, 1]]  # generated: widths n0, n1, …, out
    band  = [3, 5]                       # band widths (hidden layers); 0 or "dense" = dense
    seeds = [0, 1, 2]                    # one generated network per sizes × band × seed × init
    init  = "torch"                      # "torch" | "uniform" | "normal" (or a list)
    activation = "relu"                  # hidden activation of generated networks

    [run]
    norms   = ["inf", "2"]               # input norms ℓp: "inf", "2", "1"
    methods = ["naive", "abs-product", "lp", "lower"]
    levels = [3, 4]                      # hierarchy indices: lp / sdp+lp level k, sdp order d
    radii   = ["global", 0.05]           # optional, default ["global"]
    output  = 0                          # optional: bound output 0 only (default: all, max)
    margin  = [0, 1]                     # optional instead of output: the margin f_0 − f_1
    time_limit = 60                      # seconds per step (optional, default 300)
    seed = 0                             # seed of the lower-bound sampling (default 0)
    max_memory_gb = 8                    # refuse larger relaxations (default 8)
    [run.options.lp]                     # optional: the options of a method's group
    # key = value                        # (the fields of its Options, as the --lp-* flags)

**Radii.** ``"global"`` bounds the Lipschitz constant over all of ``R^n``. A number ``r`` bounds
it over the ℓ∞ ball of radius ``r`` around the network's ``x0`` when its file stores one (column
``center = "x0"``), otherwise around the origin (``center = "0"``; generated networks never
carry an ``x0``).

**Tasks.** One task is one network × norm × radius and is **one** :func:`lipopt.chain.bound_chain`
call (the same as ``lipopt bound`` with these methods and levels), with ``naive`` and ``lower``
always added for the ratio columns; its rows are the chain's rows. ``levels`` apply to the
methods with a hierarchy (``lp``, ``sdp+lp``: Sherali–Adams level; ``sdp``: moment order); other
methods get one row with an empty level. A refused step is a ``refused`` row with the reason in
``note``, as in the CLI; an unexpected failure becomes a row with ``status = "error: …"``; the
sweep goes on.

**Output.** ``RESULTS.csv`` plus ``RESULTS.jsonl`` beside it (same rows, typed, ``size`` as an
object); one row per network × norm × radius × method × level, with the columns of
:data:`COLUMNS`. Rows are appended as tasks finish (and flushed), so an interrupted sweep is
resumed by running it again: rows whose key (:data:`KEY_COLUMNS`: network id, norm, radius,
method, level) is already in the CSV are skipped. To redo rows (e.g. errors), delete them from
the CSV. The key does not include the target: use a new output file when changing ``output``.
The files (and their directory) are created with the first finished task, so a sweep that fails
before any result leaves nothing behind. A last row cut off by a killed sweep (fewer cells than
the header, or no final line break and an incomplete ``timestamp``) is dropped with a warning on
resume and recomputed; :func:`read_results` refuses such a table (run the sweep again first).

**Columns.** ``value`` is the bound (a certified upper bound iff ``certified``; for the
``lower`` method the lower bound, ``bound_type = "lower"``); ``lower_bound`` and ``naive_bound``
are the task's lower bound and naive product, ``ratio_to_lower`` / ``ratio_to_naive`` the value
divided by them; ``time_s`` (total), ``build_time_s`` and ``solve_time_s`` (relaxation data and
solver); ``relax_rows``, ``relax_cols``, ``relax_nnz``, ``max_clique`` and ``size`` (JSON, all
size figures the method reported) describe the relaxation, ``n_pops``, ``pop_vars``,
``pop_terms``, ``pop_degree`` the polynomial problems (when a method built them); ``status`` is
the step's status (:class:`lipopt.results.Status`) or ``"error: …"``, ``note`` its note.
Then what was bounded (``target``, ``center``, ``family``, ``source``,
``architecture``, ``band``, ``init``, ``seed``, ``network_hash``) and the environment.

**Executors.** ``serial``; ``processes`` (:class:`concurrent.futures.ProcessPoolExecutor`);
``dask`` (a ``distributed`` client on ``scheduler``, or a ``LocalCluster`` created and closed
here), so the same sweep runs on a cluster unchanged. Networks travel with their tasks (files
are read once, by the client), so workers need lipopt installed but not the network files.

**Reproducibility.** Every row carries the lipopt, Python, numpy, scipy, highspy, clarabel, scs
and cvxpy versions of the worker that computed it, the generation seed, the sampling seed, and
:func:`network_hash` (sha256 of the weights, biases and activations).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import glob
import importlib.metadata
import io
import json
import math
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .chain import DEFAULT_TIME_LIMIT
from .errors import LipoptError
from .network import Network

__all__ = [
    "COLUMNS",
    "KEY_COLUMNS",
    "NetworkEntry",
    "RunSettings",
    "SweepSpec",
    "SweepSummary",
    "Task",
    "check_solver_options",
    "environment_info",
    "load_spec",
    "network_hash",
    "parse_spec",
    "read_results",
    "read_table",
    "row_key",
    "run_sweep",
    "run_task",
]

EXECUTORS = ("serial", "processes", "dask")
KEY_COLUMNS = ("network", "norm", "radius", "method", "level")

#: Columns of the results table, in order.
COLUMNS: tuple[str, ...] = (
    # key
    "network", "norm", "radius", "method", "level",
    # the bound
    "value", "certified", "bound_type", "lower_bound", "naive_bound",
    "ratio_to_lower", "ratio_to_naive", "status", "time_limited", "note",
    # cost
    "time_s", "build_time_s", "solve_time_s", "solver_value", "solver",
    "relax_rows", "relax_cols", "relax_nnz", "max_clique", "size",
    "n_pops", "pop_vars", "pop_terms", "pop_degree",
    # what was bounded
    "target", "center", "family", "source", "architecture", "band", "init", "seed",
    "sample_seed", "network_hash", "time_limit",
    # environment
    "lipopt_version", "python_version", "numpy_version", "scipy_version", "highspy_version",
    "clarabel_version", "scs_version", "cvxpy_version", "host", "timestamp",
)

FLOAT_COLUMNS = frozenset({
    "value", "lower_bound", "naive_bound", "ratio_to_lower", "ratio_to_naive", "time_s",
    "build_time_s", "solve_time_s", "solver_value", "time_limit",
})
INT_COLUMNS = frozenset({"level", "n_pops", "pop_vars", "pop_terms", "pop_degree", "band", "seed",
                         "sample_seed", "relax_rows", "relax_cols", "relax_nnz", "max_clique"})
#: relaxation-size columns taken from ``BoundResult.size`` (all of it is kept in ``size``)
SIZE_COLUMNS = {"relax_rows": "constraints", "relax_cols": "variables", "relax_nnz": "nonzeros",
                "max_clique": "largest_clique"}
BOOL_COLUMNS = frozenset({"certified", "time_limited"})

_VERSIONED = ("numpy", "scipy", "highspy", "clarabel", "scs", "cvxpy")
_TOP_KEYS = {"networks", "run", "description"}
_NETWORK_KEYS = {"files", "sizes", "band", "seeds", "init", "activation"}
_RUN_KEYS = {"norms", "methods", "levels", "radii", "output", "margin", "time_limit", "seed",
             "max_memory_gb", "options"}


# ---------------------------------------------------------------------------------------------
# Reproducibility helpers
# ---------------------------------------------------------------------------------------------
def network_hash(net: Network) -> str:
    """sha256 (hex) of a network's weights, biases and activations (:meth:`Network.content_hash`).

    Dense weights are hashed as little-endian float64 bytes in C order together with their
    shape; sparse weights as their canonical CSR arrays (data, indices, indptr, shape); residual
    blocks with their skip/out matrices and inner layers. Two networks with the same hash compute
    the same function (the name and ``x0`` are not hashed).
    """
    return net.content_hash()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


@functools.lru_cache(maxsize=1)
def environment_info() -> dict[str, str]:
    """Versions of lipopt, Python and the numerical/solver packages (``""`` when missing)."""
    info = {"lipopt_version": __version__, "python_version": platform.python_version()}
    for name in _VERSIONED:
        info[f"{name}_version"] = _package_version(name)
    info["host"] = socket.gethostname()
    return info


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkEntry:
    """One network of the sweep with the metadata that goes into every row."""

    id: str
    network: Network = field(repr=False)
    source: str  # file path or "generated"
    family: str  # network id without the seed: seeds of one family are aggregated in plots
    band: int | None = None
    init: str | None = None
    seed: int | None = None
    hash: str = ""

    @property
    def architecture(self) -> str:
        return self.network.architecture()


@dataclass(frozen=True)
class RunSettings:
    """The ``[run]`` settings every task needs (small: shipped to the workers with each task)."""

    output: int | None = None
    margin: tuple[int, int] | None = None
    time_limit: float | None = DEFAULT_TIME_LIMIT
    seed: int = 0
    max_memory_gb: float = 8.0
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep specification (see the module docstring for the format)."""

    networks: tuple[NetworkEntry, ...]
    norms: tuple[str, ...]
    methods: tuple[str, ...]
    levels: tuple[int, ...] = ()
    radii: tuple[float | None, ...] = (None,)  # None = global
    run: RunSettings = field(default_factory=RunSettings)
    description: str = ""

    def pairs(self) -> list[tuple[str, int | None]]:
        """The (method, level) pairs of one task, in order."""
        from .registry import get_method

        out: list[tuple[str, int | None]] = []
        for m in self.methods:
            if get_method(m).hierarchy is not None:
                out.extend((m, k) for k in self.levels)
            else:
                out.append((m, None))
        return out

    def tasks(self) -> list[Task]:
        """Every network × norm × radius task with all its (method, level) pairs."""
        pairs = tuple(self.pairs())
        return [
            Task(entry, norm, radius, pairs, self.run)
            for entry in self.networks
            for norm in self.norms
            for radius in self.radii
        ]


@dataclass(frozen=True)
class Task:
    """One network × norm × radius, and the (method, level) pairs still to compute."""

    entry: NetworkEntry
    norm: str
    radius: float | None
    pairs: tuple[tuple[str, int | None], ...]
    run: RunSettings = field(default_factory=RunSettings)

    def keys(self) -> list[tuple[str, str, str, str, str]]:
        return [row_key(self.entry.id, self.norm, self.radius, m, d) for m, d in self.pairs]

    def with_pairs(self, pairs: Iterable[tuple[str, int | None]]) -> Task:
        return Task(self.entry, self.norm, self.radius, tuple(pairs), self.run)


def radius_label(radius: float | None) -> str:
    """Canonical text of a radius: ``"global"`` or ``repr(float(radius))``."""
    return "global" if radius is None else repr(float(radius))


def row_key(
    network: str, norm: str, radius: float | str | None, method: str, level: int | str | None
) -> tuple[str, str, str, str, str]:
    """The resume key of a row: (network id, norm, radius, method, level) as strings."""
    r = radius if isinstance(radius, str) else radius_label(radius)
    d = "" if level is None or level == "" else str(int(level))
    return (str(network), str(norm), r, str(method), d)


def _read_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as tomllib
        except ImportError:
            raise LipoptError("reading TOML on Python < 3.11 needs 'tomli': pip install tomli") from None
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        raise LipoptError(f"cannot read the sweep spec {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise LipoptError(
            f"{path}: not a UTF-8 text file; a sweep spec is TOML text (save it as UTF-8), see "
            "examples/sweep_small.toml"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise LipoptError(f"{path}: invalid TOML: {e}") from None


def load_spec(spec: str | os.PathLike | Mapping[str, Any], base_dir: str | os.PathLike | None = None
              ) -> SweepSpec:
    """Read and validate a sweep spec from a TOML file or a dict.

    Relative network files are resolved against the spec file's directory (for a dict:
    ``base_dir``, default the current directory).
    """
    if isinstance(spec, Mapping):
        return parse_spec(spec, Path(base_dir) if base_dir is not None else Path.cwd())
    path = Path(spec)
    if path.is_dir():
        raise LipoptError(f"sweep spec {path} is a directory, not a file; give a .toml file")
    if not path.is_file():
        raise LipoptError(f"sweep spec {path}: no such file")
    data = _read_toml(path)
    where = str(path)
    try:
        return parse_spec(data, Path(base_dir) if base_dir is not None else path.parent)
    except LipoptError as e:
        raise LipoptError(f"{where}: {e}") from None


def _check_keys(table: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise LipoptError(
            f"unknown key {unknown[0]!r} in {where}; allowed keys: {', '.join(sorted(allowed))}"
        )


def _as_list(value: Any) -> list:
    """``value`` as a list (a scalar becomes a one-element list)."""
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise LipoptError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise LipoptError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _number(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise LipoptError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0) or v < 0:
        raise LipoptError(f"{name} must be a finite {'positive' if positive else 'non-negative'} "
                          f"number, got {value!r}")
    return v


def _str_list(value: Any, name: str) -> list[str]:
    items = _as_list(value)
    if not items or not all(isinstance(x, str | int | float) and not isinstance(x, bool)
                            for x in items):
        raise LipoptError(f"{name} must be a non-empty list of strings, got {value!r}")
    return [str(x) for x in items]


def _resolve_files(patterns: list, base: Path) -> list[Path]:
    files: list[Path] = []
    for pat in patterns:
        if not isinstance(pat, str) or not pat:
            raise LipoptError(f"networks.files must list file paths, got {pat!r}")
        p = Path(pat).expanduser()
        p = p if p.is_absolute() else base / p
        if any(ch in pat for ch in "*?["):
            found = sorted(Path(x) for x in glob.glob(str(p)))
            if not found:
                raise LipoptError(f"networks.files: no file matches {pat!r} (in {base})")
            files.extend(found)
        else:
            if not p.is_file():
                raise LipoptError(f"networks.files: {pat!r} does not exist (looked at {p})")
            files.append(p)
    return files


def _file_entries(paths: list[Path]) -> list[NetworkEntry]:
    from .loaders import load_network

    stems = [p.stem for p in paths]
    entries = []
    for p in paths:
        net_id = p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}/{p.stem}"
        net = load_network(p)
        entries.append(NetworkEntry(net_id, net, str(p), net_id, hash=network_hash(net)))
    return entries


def _band_values(value: Any) -> list[int | None]:
    out: list[int | None] = []
    for b in _as_list(value):
        if isinstance(b, str) and b.strip().lower() in ("dense", "none", "full"):
            out.append(None)
            continue
        bi = _int(b, "networks.band", minimum=0)
        out.append(None if bi == 0 else bi)
    if not out:
        raise LipoptError("networks.band must not be empty (omit it for dense networks)")
    return out


def _generated_entries(table: Mapping) -> list[NetworkEntry]:
    from .models import INITS, random_network

    raw = table["sizes"]
    if not isinstance(raw, list) or not raw:
        raise LipoptError("networks.sizes must be a non-empty list of layer-width lists "
                          "such as [[8, 8, 1]]")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raw = [raw]  # a single architecture
    sizes_list: list[list[int]] = []
    for s in raw:
        if not isinstance(s, list) or len(s) < 2:
            raise LipoptError(f"networks.sizes: each entry must list at least two widths "
                              f"[n0, …, out], got {s!r}")
        sizes_list.append([_int(n, "networks.sizes entry", minimum=1) for n in s])
    bands = _band_values(table["band"]) if "band" in table else [None]
    seeds = [_int(s, "networks.seeds", minimum=0) for s in _as_list(table.get("seeds", [0]))]
    if not seeds:
        raise LipoptError("networks.seeds must not be empty")
    inits = _str_list(table.get("init", "torch"), "networks.init")
    for init in inits:
        if init not in INITS:
            raise LipoptError(f"networks.init: unknown init {init!r}; choose from {', '.join(INITS)}")
    activation = table.get("activation", "relu")
    if not isinstance(activation, str):
        raise LipoptError(f"networks.activation must be a string, got {activation!r}")
    entries = []
    for sizes in sizes_list:
        for band in bands:
            for init in inits:
                family = "-".join(map(str, sizes)) + (f"_band{band}" if band else "") + (
                    f"_{init}" if len(inits) > 1 else "")
                for seed in seeds:
                    try:
                        net = random_network(sizes, band=band, seed=seed, init=init,
                                             activation=activation)
                    except LipoptError as e:
                        raise LipoptError(f"networks: sizes {sizes} band {band}: {e}") from None
                    entries.append(NetworkEntry(net.name, net, "generated", family, band, init,
                                                seed, network_hash(net)))
    return entries


def check_solver_options(options: Mapping[str, Any]) -> None:
    """Validate ``[run.options]``: one table per options group of the registry (the fields of the
    group's ``Options``, the same as the CLI's ``--{group}-*`` flags), so that a typo fails at
    once instead of turning every row of the sweep into an error row.

    Raises:
        LipoptError: naming the section, the key and the allowed values.
    """
    from .registry import option_groups, parse_options

    groups = option_groups()
    for section, table in options.items():
        if section not in groups:
            raise LipoptError(
                f"unknown options section [run.options.{section}]; choose from "
                f"{', '.join(g for g, cls in groups.items() if dataclasses.fields(cls))} "
                "(sections are named after the methods)"
            )
        if not isinstance(table, Mapping):
            raise LipoptError(f"[run.options.{section}] must be a table of key = value, got {table!r}")
        if not dataclasses.fields(groups[section]):
            raise LipoptError(f"[run.options.{section}]: {section} has no options; remove the section")
        try:
            parse_options(section, table)
        except LipoptError as e:
            raise LipoptError(f"[run.options.{section}]: {e}") from None


def parse_spec(data: Mapping[str, Any], base_dir: Path | None = None) -> SweepSpec:
    """Validate a spec mapping (the parsed TOML) and build its networks.

    Raises:
        LipoptError: for an unknown key, a missing section, or an invalid value, with a message
            naming the key.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not isinstance(data, Mapping):
        raise LipoptError("a sweep spec must be a table with [networks] and [run] sections")
    _check_keys(data, _TOP_KEYS, "the sweep spec")
    for section in ("networks", "run"):
        if section not in data:
            raise LipoptError(f"the sweep spec has no [{section}] section")
        if not isinstance(data[section], Mapping):
            raise LipoptError(f"[{section}] must be a table")
    nets_t, run_t = data["networks"], data["run"]
    _check_keys(nets_t, _NETWORK_KEYS, "[networks]")
    if "degrees" in run_t:
        raise LipoptError("run.degrees was renamed run.levels (lp, sdp+lp: the Sherali–Adams level; "
                          "sdp: the moment order)")
    _check_keys(run_t, _RUN_KEYS, "[run]")
    entries = _parse_networks(nets_t, base)
    norms, methods, levels = _parse_methods(run_t)
    output, margin = _parse_target(run_t, entries)
    time_limit = run_t.get("time_limit", DEFAULT_TIME_LIMIT)
    time_limit = _number(time_limit, "run.time_limit", positive=True)
    options = run_t.get("options", {})
    if not isinstance(options, Mapping):
        raise LipoptError("[run.options] must be a table, e.g. [run.options.lp]")
    check_solver_options(options)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise LipoptError("description must be a string")
    return SweepSpec(
        networks=tuple(entries),
        norms=norms,
        methods=methods,
        levels=levels,
        radii=_parse_radii(run_t),
        run=RunSettings(
            output=output,
            margin=margin,
            time_limit=time_limit,
            seed=_int(run_t.get("seed", 0), "run.seed", minimum=0),
            max_memory_gb=_number(run_t.get("max_memory_gb", 8.0), "run.max_memory_gb",
                                  positive=True),
            options=copy.deepcopy(dict(options)),
        ),
        description=description,
    )


def _parse_networks(nets_t: Mapping[str, Any], base: Path) -> list[NetworkEntry]:
    """``[networks]``: files (globs, relative to ``base``) and generated sizes; ids unique."""
    if "sizes" not in nets_t:
        extra = sorted(set(nets_t) & {"band", "seeds", "init", "activation"})
        if extra:
            raise LipoptError(f"[networks] {extra[0]!r} applies to generated networks: add 'sizes'")
    if "files" not in nets_t and "sizes" not in nets_t:
        raise LipoptError("[networks] needs 'files' and/or generated 'sizes'")
    entries: list[NetworkEntry] = []
    if "files" in nets_t:
        entries += _file_entries(_resolve_files(_as_list(nets_t["files"]), base))
    if "sizes" in nets_t:
        entries += _generated_entries(nets_t)
    ids = [e.id for e in entries]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise LipoptError(f"[networks] lists the network {dup!r} twice")
    return entries


def _parse_methods(run_t: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """``norms``, ``methods`` (registered names) and ``levels`` of ``[run]``."""
    from .problems import parse_norm
    from .registry import method_names

    for key in ("norms", "methods"):
        if key not in run_t:
            raise LipoptError(f"[run] needs '{key}'")
    norms = tuple(dict.fromkeys(parse_norm(n) for n in _str_list(run_t["norms"], "run.norms")))
    methods = tuple(dict.fromkeys(_str_list(run_t["methods"], "run.methods")))
    known = method_names()
    for m in methods:
        if m not in known:
            raise LipoptError(f"run.methods: unknown method {m!r}; choose from {', '.join(known)}")
    levels = tuple(sorted({_int(d, "run.levels", minimum=1)
                           for d in _as_list(run_t.get("levels", []))}))
    with_levels = [m for m in methods if m in _hierarchy_methods()]
    if with_levels and not levels:
        raise LipoptError(f"run.levels is required for {', '.join(with_levels)} (lp, sdp+lp: the "
                          "Sherali–Adams level; sdp: the moment order), e.g. levels = [3, 4]")
    return norms, methods, levels


def _parse_radii(run_t: Mapping[str, Any]) -> tuple[float | None, ...]:
    radii: list[float | None] = []
    for r in _as_list(run_t.get("radii", ["global"])):
        if isinstance(r, str):
            if r.strip().lower() != "global":
                raise LipoptError(f"run.radii: {r!r} is neither \"global\" nor a number")
            radii.append(None)
        else:
            radii.append(_number(r, "run.radii entry"))
    if not radii:
        raise LipoptError("run.radii must not be empty (omit it for global bounds)")
    return tuple(dict.fromkeys(radii))


def _parse_target(run_t: Mapping[str, Any], entries: list[NetworkEntry]
                  ) -> tuple[int | None, tuple[int, int] | None]:
    """``output`` or ``margin`` of ``[run]``, checked against every network's outputs."""
    output = run_t.get("output")
    margin = run_t.get("margin")
    if output is not None and margin is not None:
        raise LipoptError("[run] give either 'output' or 'margin', not both")
    if output is not None:
        output = _int(output, "run.output", minimum=0)
    if margin is not None:
        if not isinstance(margin, list) or len(margin) != 2:
            raise LipoptError(f"run.margin must be two output indices [i, j], got {margin!r}")
        margin = (_int(margin[0], "run.margin", 0), _int(margin[1], "run.margin", 0))
        if margin[0] == margin[1]:
            raise LipoptError(
                f"run.margin needs two different outputs, got {list(margin)} (the margin "
                "f_i − f_i is 0); e.g. margin = [0, 1]"
            )
    for e in entries:
        m = e.network.output_dim
        for i in ([output] if output is not None else list(margin or [])):
            if i >= m:
                raise LipoptError(f"[run] output index {i} is out of range for {e.id} "
                                  f"({m} outputs)")
    return output, margin


# ---------------------------------------------------------------------------------------------
# One task (runs in a worker)
# ---------------------------------------------------------------------------------------------
def _error_status(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"error: {type(err).__name__}" + (f": {msg}" if msg else "")
    return text[:300]


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _hierarchy_methods() -> set[str]:
    from .registry import methods

    return {n for n, m in methods().items() if m.hierarchy is not None}


def run_task(task: Task) -> list[dict[str, Any]]:
    """The rows of one task: one :func:`~lipopt.chain.bound_chain` call (plus ``naive`` and
    ``lower`` for the ratio columns); rows only for the task's (method, level) pairs.

    Never raises: a task that fails as a whole gives every pair a ``status = "error: …"`` row.
    """
    from .chain import bound_chain
    from .problems import make_domain, make_target

    cfg, entry, net = task.run, task.entry, task.entry.network
    common: dict[str, Any] = {
        "network": entry.id, "norm": task.norm, "radius": radius_label(task.radius),
        "family": entry.family, "source": entry.source, "architecture": entry.architecture,
        "band": entry.band, "init": entry.init, "seed": entry.seed, "sample_seed": cfg.seed,
        "network_hash": entry.hash, "time_limit": cfg.time_limit, **environment_info(),
    }
    methods = list(dict.fromkeys([*(m for m, _ in task.pairs), "naive", "lower"]))
    levels: dict[str, list[int]] = {}
    for m, k in task.pairs:
        if k is not None:
            levels.setdefault(m, []).append(int(k))
    try:
        target = make_target(net, output=cfg.output, margin=cfg.margin)
        domain, center = None, None
        if task.radius is not None:
            has_x0 = net.x0 is not None
            centre = net.x0 if has_x0 else np.zeros(net.input_dim)
            domain, center = make_domain(net, center=centre, eps=task.radius), ("x0" if has_x0 else "0")
        chain = bound_chain(
            net, task.norm, methods, levels, target, domain, seed=cfg.seed, time_limit=cfg.time_limit,
            max_memory_bytes=cfg.max_memory_gb * 1e9, options=copy.deepcopy(cfg.options),
            raise_if_all_refused=False,
        )
    except Exception as e:
        return [_stamp({**common, "method": m, "level": k, "certified": False, "bound_type": "upper",
                        "status": _error_status(e)}) for m, k in task.pairs]
    common["target"] = target.labels[0] if len(target.labels) == 1 else "network"
    common["center"] = center
    naive = next((_finite(b.value) for b in chain.bounds if b.method == "naive"), None)
    lower = None if chain.lower_bound is None else _finite(chain.lower_bound.value)
    common.update(lower_bound=lower, naive_bound=naive, **_problem_columns(chain))
    rows = []
    for m, k in task.pairs:
        if m == "lower":
            rows.append(_stamp({**common, "method": m, "level": None, "value": lower, "certified": False,
                                "bound_type": "lower", "ratio_to_lower": 1.0 if lower else None,
                                "ratio_to_naive": _ratio(lower, naive), "status": "lower bound"}))
            continue
        b = next((b for b in chain.bounds if b.method == m and b.level in (k, None)), None)
        rows.append(_stamp({**common, **_row_columns(b, m, k, lower, naive)}))
    return rows


def _stamp(row: dict[str, Any]) -> dict[str, Any]:
    row["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def _problem_columns(chain: Any) -> dict[str, Any]:
    problem = getattr(chain, "problem", None)
    if problem is None:
        return {}
    return {
        "n_pops": len(problem.pops),
        "pop_vars": max((p.n_vars for p in problem.pops), default=0),
        "pop_terms": sum(p.polynomial.num_terms for p in problem.pops),
        "pop_degree": max((p.degree for p in problem.pops), default=0),
    }


def _row_columns(b: Any, method: str, level: int | None, lower: float | None, naive: float | None
                 ) -> dict[str, Any]:
    """The columns of one chain row (``b``; ``None`` when the chain made none for the pair)."""
    if b is None:
        return {"method": method, "level": level, "certified": False, "bound_type": "upper",
                "status": "error: no row"}
    value = _finite(b.value)
    size = b.size.to_dict()
    t = b.timings
    return {
        "method": method, "level": level, "value": value, "certified": b.certified and value is not None,
        "bound_type": "upper", "ratio_to_lower": _ratio(value, lower), "ratio_to_naive": _ratio(value, naive),
        "status": b.status.value, "time_limited": b.status.limited, "note": b.note, "time_s": t.total,
        "build_time_s": t.build, "solve_time_s": t.solve, "solver_value": _finite(b.solver_value),
        "solver": b.solver, "size": size, **{col: size.get(key) for col, key in SIZE_COLUMNS.items()},
    }


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return repr(float(value)) if math.isfinite(value) else ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=_json_default)
    return str(value)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for c in COLUMNS:
        v = row.get(c)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[c] = v
    return out


def _parse_cell(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in BOOL_COLUMNS:
        return text.strip().lower() in ("true", "1", "yes")
    if column in FLOAT_COLUMNS:
        try:
            return float(text)
        except ValueError:
            return None
    if column in INT_COLUMNS:
        try:
            return int(float(text))
        except ValueError:
            return None
    if column == "size":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


_TABLE_HINT = "give the RESULTS.csv written by lipopt sweep"


@dataclass
class _RawTable:
    """A CSV file as read: header, rows (lists of cells), their line numbers, and whether the
    file ends with a line break (the writer ends every row with one)."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    terminated: bool

    def malformed_row(self) -> int | None:
        """Index of the first row (other than the last) whose cell count differs from the
        header's, or of a last row with too many cells."""
        n = len(self.header)
        for i, row in enumerate(self.rows):
            if len(row) != n and (i < len(self.rows) - 1 or len(row) > n):
                return i
        return None

    def last_row_truncated(self) -> bool:
        """Whether the last row was cut off (e.g. a sweep killed while writing it): fewer cells
        than the header, or no final line break and an incomplete ``timestamp`` (the last
        column lipopt writes, always with a time zone)."""
        if not self.rows:
            return False
        last = self.rows[-1]
        if len(last) < len(self.header):
            return True
        if self.terminated or "timestamp" not in self.header:
            return False
        stamp = last[self.header.index("timestamp")]
        try:
            return datetime.fromisoformat(stamp).tzinfo is None
        except ValueError:
            return True

    def check(self) -> None:
        """Refuse a damaged table (a malformed row, or a truncated last row)."""
        bad = self.malformed_row()
        if bad is not None:
            raise LipoptError(
                f"{self.path}: line {self.lines[bad]} has {len(self.rows[bad])} cells but the header "
                f"has {len(self.header)} columns; the table is damaged: fix or delete that line"
            )
        if self.last_row_truncated():
            raise LipoptError(
                f"{self.path}: the last row (line {self.lines[-1]}) is truncated (the sweep was "
                "probably stopped while writing it); rerun the same lipopt sweep command to "
                "recompute it (resuming drops the incomplete row), or delete that line"
            )

    def dicts(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, row, strict=False)) for row in self.rows]


def _scan_table(p: Path) -> _RawTable:
    """Read a CSV file without interpreting it (blank lines are skipped, as by csv.DictReader)."""
    if p.is_dir():
        raise LipoptError(f"results table {p} is a directory, not a file; {_TABLE_HINT}")
    if not p.is_file():
        raise LipoptError(f"results table {p}: no such file")
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise LipoptError(f"{p} is not a readable CSV table (not UTF-8 text); {_TABLE_HINT}") from None
    except OSError as e:
        raise LipoptError(f"results table {p}: cannot be read ({e.strerror or e})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as e:
        raise LipoptError(
            f"{p} is not a readable CSV table (line {reader.line_num}: {e}); {_TABLE_HINT}"
        ) from None
    header = rows.pop(0) if rows else []
    if lines:
        lines.pop(0)
    return _RawTable(p, header, rows, lines, text.endswith(("\n", "\r")))


def read_table(path: str | os.PathLike, raw: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and the rows of a results CSV (see :func:`read_results`)."""
    table = _scan_table(Path(path))
    table.check()
    rows = table.dicts()
    if raw:
        return table.header, rows
    return table.header, [{k: _parse_cell(k, v or "") for k, v in r.items()} for r in rows]


def read_results(path: str | os.PathLike, raw: bool = False) -> list[dict[str, Any]]:
    """Rows of a results CSV; typed (floats, ints, bools, ``size`` dict, ``None`` for empty)
    unless ``raw``.

    Raises:
        LipoptError: for a missing or unreadable file (not UTF-8, bad CSV), a row whose cell
            count differs from the header's, or a truncated last row (a sweep stopped while
            writing it: rerunning the sweep drops and recomputes it, see :func:`run_sweep`).
    """
    return read_table(path, raw)[1]


def _jsonl_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".jsonl")


def _check_output_location(csv_path: Path) -> None:
    """Fail before any work if the table cannot be created (nothing is created here)."""
    if csv_path.is_dir():
        raise LipoptError(f"the output table {csv_path} is a directory; give a .csv file path")
    parent = csv_path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise LipoptError(f"cannot create {csv_path}: {parent} is a file, not a directory; "
                          "choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK) and not csv_path.exists():
        raise LipoptError(f"cannot create {csv_path}: no write permission in {parent}")
    if csv_path.exists() and not os.access(csv_path, os.W_OK):
        raise LipoptError(f"cannot append to {csv_path}: the file is not writable")


def _replace_text(path: Path, write: Callable[[Any], None]) -> None:
    """Rewrite ``path`` atomically (a temporary file beside it, then ``os.replace``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _prepare_output(csv_path: Path) -> set[tuple[str, ...]]:
    """Keys already in the CSV; rewrites an old-header CSV and prunes the JSON lines so both
    hold the same rows.

    A truncated last row (a sweep killed while writing it) is dropped with a warning, so that
    it is recomputed; any other malformed row is refused. Creates nothing: a missing or empty
    CSV gives no keys (the writer creates the files with the first row).
    """
    done: set[tuple[str, ...]] = set()
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return done
    try:
        table = _scan_table(csv_path)
    except LipoptError as e:
        raise LipoptError(f"{e}; or choose another --out") from None
    if not table.header:  # only blank lines
        return done
    header = table.header
    missing = [c for c in KEY_COLUMNS if c not in header]
    if missing:
        raise LipoptError(f"{csv_path} is not a lipopt sweep table (no column {missing[0]!r}); "
                          "choose another --out")
    bad = table.malformed_row()
    if bad is not None:
        raise LipoptError(
            f"{csv_path}: line {table.lines[bad]} has {len(table.rows[bad])} cells but the header "
            f"has {len(header)} columns; the table is damaged: fix or delete that line, or "
            "choose another --out"
        )
    dropped = table.last_row_truncated()
    if dropped:
        warnings.warn(
            f"{csv_path}: dropped the truncated last row (line {table.lines[-1]}, left by an "
            "interrupted sweep); it is recomputed",
            stacklevel=3,
        )
        table.rows.pop()
        table.lines.pop()
    rows = table.dicts()
    for r in rows:
        done.add(row_key(r["network"], r["norm"], r["radius"], r["method"], r["level"]))
    if header != list(COLUMNS) or dropped or not table.terminated:
        # another version's columns, a dropped row, or no final line break (a row appended
        # now would be glued to the last one): rewrite with today's columns
        extra = [c for c in header if c not in COLUMNS]

        def write(fh: Any) -> None:
            w = csv.DictWriter(fh, fieldnames=[*COLUMNS, *extra], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

        _replace_text(csv_path, write)
    jl = _jsonl_path(csv_path)
    if jl.exists():
        kept: dict[tuple[str, ...], str] = {}
        with jl.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                    k = row_key(r["network"], r["norm"], r["radius"], r["method"], r["level"])
                except (ValueError, KeyError, TypeError):
                    continue
                if k in done:
                    kept[k] = line if line.endswith("\n") else line + "\n"
        _replace_text(jl, lambda fh: fh.writelines(kept.values()))
    return done


class _Writer:
    """Appends rows to the CSV and the JSON lines file, flushing after every task.

    The files (and the output directory) are created with the first row, so a sweep that
    fails before any result leaves nothing behind; an existing table is appended to.
    """

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path
        self._csv: Any = None
        self._jsonl: Any = None
        self._writer: csv.DictWriter | None = None
        self.rows = 0

    def _open(self) -> csv.DictWriter:
        path = self.path
        header: list[str] = []
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                header = next((row for row in csv.reader(fh) if row), [])
        new = not header  # missing, empty or blank: start the table
        header = header or list(COLUMNS)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a new table starts a new JSON lines file (a stale one is overwritten)
        self._csv = path.open("w" if new else "a", newline="", encoding="utf-8")
        self._jsonl = _jsonl_path(path).open("w" if new else "a", encoding="utf-8")
        self._writer = csv.DictWriter(self._csv, fieldnames=header, extrasaction="ignore")
        if new:
            self._writer.writeheader()
        return self._writer

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._open()
        assert self._writer is not None
        for r in rows:
            self._writer.writerow({c: _csv_cell(r.get(c)) for c in COLUMNS})
            self._jsonl.write(json.dumps(_json_row(r), default=_json_default) + "\n")
        self._csv.flush()
        self._jsonl.flush()
        self.rows += len(rows)

    def close(self) -> None:
        for fh in (self._csv, self._jsonl):
            if fh is not None:
                fh.close()


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepSummary:
    """What :func:`run_sweep` did."""

    csv: Path
    jsonl: Path
    tasks: int  # tasks run
    rows_written: int
    rows_skipped: int  # already in the table
    errors: int  # rows written without a bound (status "error: …" or "refused")
    seconds: float

    def __str__(self) -> str:
        return (f"{self.rows_written} rows written ({self.errors} errors), {self.rows_skipped} "
                f"already present, {self.tasks} tasks in {self.seconds:.1f} s → {self.csv}")


def _failed_rows(task: Task, err: BaseException) -> list[dict[str, Any]]:
    """Rows for a task whose worker failed as a whole (e.g. a killed process)."""
    env = environment_info()
    e = task.entry
    return [{
        "network": e.id, "norm": task.norm, "radius": radius_label(task.radius), "method": m,
        "level": d, "certified": False, "status": _error_status(err), "family": e.family,
        "source": e.source, "architecture": e.architecture, "band": e.band, "init": e.init,
        "seed": e.seed, "sample_seed": task.run.seed, "network_hash": e.hash, **env,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    } for m, d in task.pairs]


def _iter_serial(tasks: Sequence[Task]) -> Iterator[tuple[Task, list[dict] | BaseException]]:
    for t in tasks:
        try:
            yield t, run_task(t)
        except Exception as e:  # run_task guards each method; this is a last resort
            yield t, e


def _iter_processes(tasks: Sequence[Task], workers: int | None
                    ) -> Iterator[tuple[Task, list[dict] | BaseException]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: no fork of a process that may hold threads (progress bar, BLAS, dask)
    ctx = multiprocessing.get_context("spawn")
    n = workers or min(len(tasks), os.cpu_count() or 1)
    pool = ProcessPoolExecutor(max_workers=max(1, n), mp_context=ctx)
    try:
        futures = {pool.submit(run_task, t): t for t in tasks}
        for fut in as_completed(futures):
            try:
                yield futures[fut], fut.result()
            except Exception as e:
                yield futures[fut], e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _iter_dask(tasks: Sequence[Task], scheduler: str | None, workers: int | None
               ) -> Iterator[tuple[Task, list[dict] | BaseException]]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise LipoptError("the dask executor needs 'distributed': pip install lipopt[dask]") from None
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise LipoptError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {e}") from None
    try:
        futures = {}
        for i, t in enumerate(tasks):
            key = f"lipopt-{i}-{t.entry.id}-{t.norm}-{radius_label(t.radius)}"
            futures[client.submit(run_task, t, key=key, pure=False)] = t
        for fut in as_completed(list(futures)):
            try:
                yield futures[fut], fut.result()
            except Exception as e:
                yield futures[fut], e
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(
    spec: str | os.PathLike | Mapping[str, Any] | SweepSpec,
    out: str | os.PathLike,
    *,
    executor: str = "serial",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    base_dir: str | os.PathLike | None = None,
) -> SweepSummary:
    """Run a sweep, appending rows to ``out`` (CSV) and ``out`` with suffix ``.jsonl``.

    Args:
        spec: a TOML path, a spec dict (see the module docstring) or a :class:`SweepSpec`.
        out: the results CSV; rows already in it are skipped (resume).
        executor: ``"serial"``, ``"processes"`` or ``"dask"``.
        scheduler: Dask scheduler address (``"tcp://host:8786"``); default a ``LocalCluster``
            of ``workers or 2`` single-threaded worker processes, created and closed here.
        workers: worker processes (``processes``: default the number of tasks, at most the
            number of CPUs; ``dask`` local cluster: default 2).
        progress: show a tqdm progress bar (and a summary line) on stderr.
        base_dir: directory for relative network files of a dict spec.
    """
    t_start = time.perf_counter()
    if executor not in EXECUTORS:
        raise LipoptError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise LipoptError(f"workers must be >= 1, got {workers}")
    parsed = spec if isinstance(spec, SweepSpec) else load_spec(spec, base_dir)
    csv_path = Path(out)
    if csv_path.suffix.lower() != ".csv":
        raise LipoptError(f"the output table must be a .csv file, got {csv_path}")
    _check_output_location(csv_path)
    done = _prepare_output(csv_path)

    todo: list[Task] = []
    skipped = 0
    for task in parsed.tasks():
        pairs = [p for p, k in zip(task.pairs, task.keys(), strict=True) if k not in done]
        skipped += len(task.pairs) - len(pairs)
        if pairs:
            todo.append(task.with_pairs(pairs))

    writer = _Writer(csv_path)
    errors = 0
    bar = _progress_bar(len(todo), progress)
    iterate: Callable[[], Iterator[tuple[Task, list[dict] | BaseException]]]
    if not todo:
        iterate = lambda: iter(())  # noqa: E731
    elif executor == "serial":
        iterate = functools.partial(_iter_serial, todo)
    elif executor == "processes":
        iterate = functools.partial(_iter_processes, todo, workers)
    else:
        iterate = functools.partial(_iter_dask, todo, scheduler, workers)
    try:
        for task, result in iterate():
            rows = _failed_rows(task, result) if isinstance(result, BaseException) else result
            writer.write(rows)
            errors += sum(str(r.get("status", "")).startswith(("error", "refused")) for r in rows)
            if bar is not None:
                norm = {"inf": "∞"}.get(task.norm, task.norm)
                bar.set_postfix_str(f"{task.entry.id} ℓ{norm} {radius_label(task.radius)}",
                                    refresh=False)
                bar.update(1)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    summary = SweepSummary(csv_path, _jsonl_path(csv_path), len(todo), writer.rows, skipped,
                           errors, time.perf_counter() - t_start)
    if progress:
        print(f"lipopt sweep: {summary}", file=sys.stderr)
    return summary


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="task", desc="sweep", dynamic_ncols=True)
