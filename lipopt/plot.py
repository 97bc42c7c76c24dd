"""Figures of a sweep's results table (``lipopt plot RESULTS.csv``) and of clique structures.

:func:`plot_results` writes, for every norm × radius of the table:

* ``bounds_<norm>_<radius>[_pK]`` — bound vs level for each method with a hierarchy (lp level k,
  sdp order d), one panel per network (small multiples, 12 per page), with the lower bound (the
  grey area below it is impossible for the true constant), the naive norm product and the other
  level-free bounds as reference lines; hollow markers are values that are not certified, and
  rows stopped by a time, node or memory limit are marked "limit" (a valid but looser value);
* ``time_<norm>_<radius>`` — build and solve time vs level (log scale) per network family and
  method: median over seeds, bars from min to max;
* ``tightness_<norm>_<radius>`` — only when the sweep has several band widths: bound / lower
  bound vs band, per architecture, for every method (and the best certified bound per network).

:func:`plot_cliques` draws a clique structure (from :func:`lipopt.graph.clique_structure`): the
sparsity pattern of the chordal extension and the clique sizes.

Matplotlib runs with the non-interactive Agg backend; every figure is saved in each requested
format (PNG at 150 dpi, PDF) and closed.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LipoptError

__all__ = ["plot_bounds", "plot_cliques", "plot_results", "plot_tightness", "plot_times"]

FORMATS = ("png", "pdf")
PANELS_PER_PAGE = 12
LOWER_STYLE = dict(color="black", linestyle="--", linewidth=1.4)
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan", "tab:gray")
_LINESTYLES = (":", "-.", "--", (0, (3, 1, 1, 1)))


def _registry() -> dict[str, Any]:
    from .registry import methods

    return methods()


def hierarchy_methods() -> tuple[str, ...]:
    """Methods drawn against their level (lp, sdp, …): those with a hierarchy in the registry."""
    return tuple(n for n, m in _registry().items() if m.hierarchy is not None)


def method_colors() -> dict[str, str]:
    """One colour per registered method (registry order; naive grey, the lower bound black)."""
    names = [n for n in _registry() if n not in ("naive", "lower")]
    colors = {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}
    return {"naive": "0.35", **colors, "lower": "black"}


def reference_styles() -> dict[str, dict]:
    """Level-free upper bounds, drawn as horizontal reference lines."""
    colors = method_colors()
    names = [n for n, m in _registry().items() if m.hierarchy is None and m.kind == "upper"]
    return {n: dict(color=colors[n], linestyle=_LINESTYLES[i % len(_LINESTYLES)], linewidth=1.4)
            for i, n in enumerate(names)}
MARKERS = "osD^v<>ph*"
RC = {
    "figure.dpi": 100, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 9,
    "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
}


class _MPL:
    """Figures without pyplot: the Agg canvas is used, the global backend is never touched."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
                 **kwargs: Any) -> tuple[Any, Any]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, layout=kwargs.pop("layout", "constrained"))
        FigureCanvasAgg(fig)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @staticmethod
    def get_cmap(name: str) -> Any:
        import matplotlib

        return matplotlib.colormaps[name]

    @staticmethod
    def rc_context(rc: Mapping[str, Any]) -> Any:
        import matplotlib

        return matplotlib.rc_context(rc)

    @staticmethod
    def close(fig: Any) -> None:
        fig.clear()


def _pyplot() -> type[_MPL]:
    return _MPL


def _check_formats(formats: Iterable[str]) -> list[str]:
    fmts = list(dict.fromkeys(f.lower().lstrip(".") for f in formats))
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise LipoptError(f"unsupported figure format {bad[0] if bad else '(none)'!r}; "
                          f"choose from {', '.join(FORMATS)}")
    return fmts


def _save(fig: Any, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    plt = _pyplot()
    paths = []
    for fmt in formats:
        p = out_dir / f"{stem}.{fmt}"
        fig.savefig(p, bbox_inches="tight", metadata=None if fmt != "png" else {"Software": None})
        paths.append(p)
    plt.close(fig)
    return paths


def _norm_text(norm: str) -> str:
    return {"inf": "ℓ∞", "2": "ℓ2", "1": "ℓ1"}.get(str(norm), f"ℓ{norm}")


def _radius_text(radius: str) -> str:
    return "global" if radius in ("global", "", None) else f"local, radius {float(radius):g}"


def _stem(prefix: str, norm: str, radius: str) -> str:
    r = "global" if radius in ("global", "", None) else f"r{float(radius):g}"
    return f"{prefix}_l{norm}_{r}"


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v) and v > 0


def _group(rows: Iterable[Mapping], *keys: str) -> dict[tuple, list[Mapping]]:
    out: dict[tuple, list[Mapping]] = defaultdict(list)
    for r in rows:
        out[tuple(r.get(k) for k in keys)].append(r)
    return dict(out)


def _radius_order(radius: str) -> float:
    return -1.0 if radius in ("global", "", None) else float(radius)


def _grid(n: int, plt: Any, width: float = 4.0, height: float = 3.0) -> tuple[Any, np.ndarray]:
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.6),
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes


def _plain_log(ax: Any, axis: str = "y") -> None:
    """Log scale with plain tick labels (0.3, 1, 2 …) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    lo, hi = (ax.get_ylim() if axis == "y" else ax.get_xlim())
    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}")
    a.set_major_formatter(fmt)
    if 0 < lo and hi / lo < 100:  # few decades: label 2×, 5× as well
        a.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        a.set_minor_formatter(fmt)
    else:
        a.set_minor_formatter(NullFormatter())


def _figure_legend(fig: Any, axes: Iterable[Any], ncol: int = 6) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=min(ncol, len(handles)), frameon=False)


# ---------------------------------------------------------------------------------------------
# Bound vs level
# ---------------------------------------------------------------------------------------------
def _bounds_panel(ax: Any, rows: Sequence[Mapping], title: str) -> None:
    hierarchies = hierarchy_methods()
    colors = method_colors()
    relax = [r for r in rows if r.get("method") in hierarchies and r.get("level") is not None]
    levels = sorted({int(r["level"]) for r in relax})
    values: list[float] = []
    for i, method in enumerate(m for m in hierarchies if any(r["method"] == m for r in relax)):
        mr = sorted((r for r in relax if r["method"] == method), key=lambda r: r["level"])
        color, marker = colors[method], MARKERS[i % len(MARKERS)]
        good = [r for r in mr if _ok(r.get("value"))]
        xs = np.array([r["level"] for r in good], dtype=float)
        ys = np.array([r["value"] for r in good], dtype=float)
        cert = np.array([bool(r.get("certified")) for r in good], dtype=bool)
        limited = np.array([bool(r.get("time_limited")) for r in good], dtype=bool)
        if xs.size:
            ax.plot(xs, ys, color=color, linewidth=1.5, label=method)
            ax.plot(xs[cert], ys[cert], linestyle="none", marker=marker, color=color, ms=6)
            if (~cert).any():
                ax.plot(xs[~cert], ys[~cert], linestyle="none", marker=marker, ms=7,
                        markerfacecolor="white", markeredgecolor=color,
                        label="not certified")
            if limited.any():  # stopped by a limit: valid, but not the level's converged value
                ax.plot(xs[limited], ys[limited], linestyle="none", marker="s", ms=11,
                        markerfacecolor="none", markeredgecolor="red", label="limit (not converged)")
            values.extend(ys.tolist())
        failed = [r for r in mr if not _ok(r.get("value"))]
        for r in failed:  # a failed or refused level: a small cross on the axis
            ax.plot([r["level"]], [0], marker="x", color=color, ms=6, clip_on=False,
                    transform=ax.get_xaxis_transform(), label="failed / no bound")
    for method, style in reference_styles().items():
        v = next((r["value"] for r in rows if r.get("method") == method and r.get("certified")
                  and _ok(r.get("value"))), None)
        if v is None and method == "naive":
            v = next((r["naive_bound"] for r in rows if _ok(r.get("naive_bound"))), None)
        if v is not None:
            ax.axhline(v, label=method, **style)
            values.append(v)
    low = next((r["lower_bound"] for r in rows if _ok(r.get("lower_bound"))), None)
    if low is not None:
        ax.axhline(low, label="lower bound", **LOWER_STYLE)
        values.append(low)
    if values:
        lo, hi = min(values), max(values)
        if hi / lo > 3:
            pad = (hi / lo) ** 0.08
            ax.set_ylim(lo / pad, hi * pad)
            _plain_log(ax)
        else:
            span = max(hi - lo, 1e-12 * max(abs(hi), 1.0))
            ax.set_ylim(max(0.0, lo - 0.08 * span), hi + 0.08 * span)
        if low is not None:
            ax.axhspan(ax.get_ylim()[0], low, color="0.5", alpha=0.12, linewidth=0)
    if levels:
        ax.set_xticks(levels)
        ax.set_xlim(levels[0] - 0.5, levels[-1] + 0.5)
        ax.set_xlabel("level (lp: k, sdp: order d)")
    else:
        ax.set_xticks([])
        ax.set_xlabel("(no hierarchy levels in the table)")
    ax.set_ylabel("Lipschitz bound")
    ax.set_title(title)


def plot_bounds(rows: Sequence[Mapping], out_dir: str | os.PathLike,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Bound vs level, one page per norm × radius with a panel per network (see module doc)."""
    plt = _pyplot()
    fmts = _check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    by_nr = _group(rows, "norm", "radius")
    with plt.rc_context(RC):
        for (norm, radius) in sorted(by_nr, key=lambda k: (str(k[0]), _radius_order(k[1]))):
            by_net = _group(by_nr[(norm, radius)], "network")
            nets = sorted(by_net, key=lambda k: str(k[0]))
            pages = [nets[i:i + PANELS_PER_PAGE] for i in range(0, len(nets), PANELS_PER_PAGE)]
            for p, page in enumerate(pages):
                fig, axes = _grid(len(page), plt)
                for ax, key in zip(axes.ravel(), page, strict=False):
                    net_rows = by_net[key]
                    target = next((r.get("target") for r in net_rows if r.get("target")), "")
                    _bounds_panel(ax, net_rows, f"{key[0]}" + (f"\n{target}" if target else ""))
                fig.suptitle(f"Bound vs level — {_norm_text(norm)} input norm, "
                             f"{_radius_text(radius)}")
                _figure_legend(fig, axes.ravel())
                stem = _stem("bounds", norm, radius) + (f"_p{p + 1}" if len(pages) > 1 else "")
                paths += _save(fig, out, stem, fmts)
    return paths


# ---------------------------------------------------------------------------------------------
# Time vs level
# ---------------------------------------------------------------------------------------------
def _median_range(values: Sequence[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(a.min()), float(a.max())


def plot_times(rows: Sequence[Mapping], out_dir: str | os.PathLike,
               formats: Sequence[str] = FORMATS) -> list[Path]:
    """Build and solve time vs level (log scale), one figure per norm × radius."""
    plt = _pyplot()
    fmts = _check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    relax = [r for r in rows if r.get("method") in hierarchy_methods() and r.get("level") is not None]
    paths: list[Path] = []
    by_nr = _group(relax, "norm", "radius")
    with plt.rc_context(RC):
        for (norm, radius) in sorted(by_nr, key=lambda k: (str(k[0]), _radius_order(k[1]))):
            sel = by_nr[(norm, radius)]
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
            series = _group(sel, "family", "method")
            any_data = False
            for i, ((family, method), srows) in enumerate(sorted(series.items(),
                                                                  key=lambda kv: str(kv[0]))):
                color = plt.get_cmap("tab10")(i % 10)
                marker = MARKERS[i % len(MARKERS)]
                for ax, col in zip(axes, ("build_time_s", "solve_time_s"), strict=True):
                    by_level = _group(srows, "level")
                    pts = []
                    for (level,), lrows in sorted(by_level.items()):
                        vals = [r[col] for r in lrows if _ok(r.get(col))]
                        if vals:
                            pts.append((level, *_median_range(vals)))
                    if not pts:
                        continue
                    any_data = True
                    d, med, lo, hi = (np.array(x, dtype=float) for x in zip(*pts, strict=True))
                    ax.errorbar(d, med, yerr=[med - lo, hi - med], color=color, marker=marker,
                                capsize=3, linewidth=1.4, label=f"{method} — {family}")
            if not any_data:
                plt.close(fig)
                continue
            levels = sorted({int(r["level"]) for r in sel})
            for ax, what in zip(axes, ("build (relaxation data)", "solve"), strict=True):
                _plain_log(ax)
                ax.set_xticks(levels)
                ax.set_xlim(levels[0] - 0.5, levels[-1] + 0.5)
                ax.set_xlabel("level (lp: k, sdp: order d)")
                ax.set_title(f"{what} time")
            axes[0].set_ylabel("seconds (median over seeds, min–max bars)")
            fig.suptitle(f"Time vs level — {_norm_text(norm)} input norm, "
                         f"{_radius_text(radius)}")
            _figure_legend(fig, axes[:1], ncol=3)
            paths += _save(fig, out, _stem("time", norm, radius), fmts)
    return paths


# ---------------------------------------------------------------------------------------------
# Tightness vs band
# ---------------------------------------------------------------------------------------------
def _series_label(method: str, level: Any) -> str:
    return method if level is None else f"{method} {int(level)}"


def plot_tightness(rows: Sequence[Mapping], out_dir: str | os.PathLike,
                   formats: Sequence[str] = FORMATS) -> list[Path]:
    """Bound / lower bound vs band width (only when the table has several bands)."""
    plt = _pyplot()
    fmts = _check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    banded = [r for r in rows if r.get("band") is not None and r.get("bound_type") != "lower"]
    if len({r["band"] for r in banded}) < 2:
        return []
    paths: list[Path] = []
    by_nr = _group(banded, "norm", "radius")
    with plt.rc_context(RC):
        for (norm, radius) in sorted(by_nr, key=lambda k: (str(k[0]), _radius_order(k[1]))):
            by_arch = _group(by_nr[(norm, radius)], "architecture")
            archs = sorted(by_arch, key=lambda k: str(k[0]))
            fig, axes = _grid(len(archs), plt, width=5.6 if len(archs) == 1 else 4.6, height=3.6)
            for ax, arch in zip(axes.ravel(), archs, strict=False):
                arows = [r for r in by_arch[arch] if r.get("certified") and _ok(r.get("value"))
                         and _ok(r.get("lower_bound"))]
                series = _group(arows, "method", "level")
                # best certified bound per network
                best: dict[tuple, tuple[int, float]] = {}
                for r in arows:
                    k = (r["network"],)
                    ratio = r["value"] / r["lower_bound"]
                    if k not in best or ratio < best[k][1]:
                        best[k] = (r["band"], ratio)
                rank = list(method_colors())
                refs = reference_styles()
                order = sorted(series, key=lambda k: (rank.index(k[0]) if k[0] in rank else 99,
                                                      k[1] if k[1] is not None else -1))
                for i, (method, level) in enumerate(order):
                    srows = series[(method, level)]
                    bands = sorted({r["band"] for r in srows})
                    med = [float(np.median([r["value"] / r["lower_bound"] for r in srows
                                            if r["band"] == b])) for b in bands]
                    style = refs.get(method, {})
                    color = style.get("color", plt.get_cmap("tab10")(i % 10))
                    ax.plot(bands, med, color=color, linestyle=style.get("linestyle", "-"),
                            marker=MARKERS[i % len(MARKERS)], ms=4, linewidth=1.3,
                            label=_series_label(method, level))
                    ax.scatter([r["band"] for r in srows],
                               [r["value"] / r["lower_bound"] for r in srows],
                               color=color, s=8, alpha=0.35, linewidths=0)
                if best:
                    bb = _group([{"band": b, "ratio": v} for b, v in best.values()], "band")
                    xs = sorted(k[0] for k in bb)
                    ax.plot(xs, [float(np.median([r["ratio"] for r in bb[(x,)]])) for x in xs],
                            color="black", linewidth=6, alpha=0.18, zorder=1,
                            solid_capstyle="round", label="best certified")
                ax.axhline(1.0, color="black", linewidth=0.8)
                _plain_log(ax)
                ax.set_xticks(sorted({r["band"] for r in by_arch[arch]}))
                ax.set_xlabel("band width (sparsity)")
                ax.set_ylabel("bound / lower bound (median over seeds)")
                ax.set_title(f"{arch[0]}")
            fig.suptitle(f"Tightness vs sparsity — {_norm_text(norm)} input norm, "
                         f"{_radius_text(radius)}\n(lines: median over seeds; dots: seeds)")
            _figure_legend(fig, axes.ravel())
            paths += _save(fig, out, _stem("tightness", norm, radius), fmts)
    return paths


def plot_results(results_csv: str | os.PathLike, out_dir: str | os.PathLike = "plots",
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """Every figure of a results table written by :func:`lipopt.sweep.run_sweep`.

    Returns the paths written (see the module docstring for the list of figures).
    """
    from .sweep import read_table

    fmts = _check_formats(formats)
    header, rows = read_table(results_csv)
    if not header:
        raise LipoptError(
            f"{results_csv}: the file is empty, not a lipopt sweep table; give the RESULTS.csv "
            "written by lipopt sweep"
        )
    # the columns first: a foreign CSV is "not a sweep table" even when it has no rows
    missing = [c for c in ("network", "norm", "radius", "method", "value") if c not in header]
    if missing:
        raise LipoptError(
            f"{results_csv}: not a lipopt sweep table (no column {missing[0]!r}); give the "
            "RESULTS.csv written by lipopt sweep"
        )
    if not rows:
        raise LipoptError(
            f"{results_csv}: the results table has no rows; run (or resume) the sweep first"
        )
    paths = plot_bounds(rows, out_dir, fmts)
    paths += plot_times(rows, out_dir, fmts)
    paths += plot_tightness(rows, out_dir, fmts)
    return paths


# ---------------------------------------------------------------------------------------------
# Cliques
# ---------------------------------------------------------------------------------------------
def _support_edges(polynomial: Any) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(i, j)`` of the sparsity graph: variables that share a monomial (vectorized)."""
    sup = np.asarray(polynomial.supports)
    if sup.ndim != 2 or sup.shape[1] < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ii, jj = [], []
    for a in range(sup.shape[1]):
        for b in range(a + 1, sup.shape[1]):
            ok = (sup[:, a] >= 0) & (sup[:, b] >= 0) & (sup[:, a] != sup[:, b])
            ii.append(sup[ok, a])
            jj.append(sup[ok, b])
    i, j = np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)
    return np.concatenate([i, j]), np.concatenate([j, i])


def _pattern_panel(ax: Any, chordal: Any, n_vars: int, polynomial: Any) -> None:
    """The variables × variables pattern of the chordal extension (COO ``chordal``); with the
    POP's ``polynomial``, its sparsity-graph edges dark and the fill-in light."""
    ms = max(0.3, min(5.0, 260.0 / max(n_vars, 1)))
    diag = np.arange(n_vars)
    ax.plot(diag, diag, linestyle="none", marker="s", ms=ms, color="0.6")
    if polynomial is not None:
        ei, ej = _support_edges(polynomial)
        ax.plot(chordal.col, chordal.row, linestyle="none", marker="s", ms=ms,
                color="tab:orange", alpha=0.55, label="fill-in (chordal extension)")
        ax.plot(ej, ei, linestyle="none", marker="s", ms=ms, color="tab:blue",
                label="sparsity graph edges")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False,
                  markerscale=max(1.0, 4.0 / ms))
        what = "sparsity graph and chordal fill"
    else:
        ax.plot(chordal.col, chordal.row, linestyle="none", marker="s", ms=ms, color="tab:blue")
        what = "chordal extension"
    ax.set_xlim(-0.5, n_vars - 0.5)
    ax.set_ylim(n_vars - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("variable")
    ax.set_ylabel("variable")
    ax.grid(False)
    ax.set_title(f"{what}: {n_vars} variables")


def plot_cliques(clique_structure: Any, path: str | os.PathLike, *, polynomial: Any = None,
                 title: str | None = None) -> Path:
    """Picture of a clique structure: sparsity pattern with its chordal fill, and clique sizes.

    ``clique_structure`` is a :class:`lipopt.graph.CliqueStructure` (anything with ``.cliques``,
    a list of integer arrays of variable indices; ``.n_vars`` and ``.to_dict()`` are used when
    present). Left: the variables × variables pattern of the chordal extension (two variables
    are adjacent iff they share a clique); with ``polynomial`` (the POP's
    :class:`~lipopt.polynomial.Polynomial`) the edges of the sparsity graph itself are drawn
    dark and the fill-in light. Right: the size of every clique. The format follows the suffix
    of ``path`` (``.png`` or ``.pdf``; ``.png`` is appended otherwise). Returns the path written.
    """
    import scipy.sparse as sp

    plt = _pyplot()
    cliques = [np.asarray(c, dtype=np.int64).ravel() for c in clique_structure.cliques]
    if not cliques:
        raise LipoptError("the clique structure has no cliques")
    n_vars = int(getattr(clique_structure, "n_vars", 0) or 0)
    n_vars = max(n_vars, max(int(c.max()) + 1 if c.size else 0 for c in cliques))
    sizes = np.array([c.size for c in cliques])
    stats: dict = {}
    if hasattr(clique_structure, "to_dict"):
        try:
            stats = dict(clique_structure.to_dict())
        except Exception:  # a drawing must not fail on the summary
            stats = {}
    out = Path(path)
    if out.suffix.lower().lstrip(".") not in FORMATS:
        out = out.with_name(out.name + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)

    member = sp.csr_matrix(
        (np.ones(int(sizes.sum())), (np.repeat(np.arange(len(cliques)), sizes),
                                     np.concatenate(cliques))),
        shape=(len(cliques), n_vars),
    )
    chordal = (member.T @ member).tocsr()
    chordal.setdiag(0)
    chordal.eliminate_zeros()
    with plt.rc_context(RC):
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10.5, 4.6),
                                       gridspec_kw={"width_ratios": [1, 1.25]})
        _pattern_panel(ax0, chordal.tocoo(), n_vars, polynomial)
        cmap = plt.get_cmap("viridis")
        span = max(1, sizes.max() - sizes.min())
        ax1.bar(np.arange(len(cliques)), sizes,
                color=[cmap(0.15 + 0.7 * (z - sizes.min()) / span) for z in sizes], width=0.85)
        ax1.axhline(sizes.max(), color="black", linestyle="--", linewidth=1,
                    label=f"largest clique: {sizes.max()}")
        ax1.set_xlabel("clique (clique-tree order)")
        ax1.set_ylabel("size (variables)")
        ax1.set_ylim(0, sizes.max() * 1.15)
        ax1.set_title(f"{len(cliques)} cliques, sizes {sizes.min()}–{sizes.max()}, "
                      f"mean {sizes.mean():.1f}")
        ax1.legend(loc="upper right")
        if len(cliques) <= 30:
            ax1.set_xticks(np.arange(len(cliques)))
        extra = ", ".join(f"{k.replace('n_', '')} {stats[k]}" for k in
                          ("n_edges", "n_fill") if k in stats)
        fig.suptitle(title or ("Correlative sparsity and cliques" + (f" ({extra})" if extra
                                                                      else "")))
        fig.savefig(out, bbox_inches="tight")
        plt.close(fig)
    return out
