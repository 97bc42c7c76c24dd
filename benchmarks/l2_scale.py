"""ℓ2 at scale: the structured LipSDP solver side by side with today's interior-point route,
ECLipsE, ECLipsE-Fast, the naive product, a lower bound and the published values.

Usage (from the repository root, 2 cores)::

    PYTHONPATH=$PWD python benchmarks/l2_scale.py [--ip-limit 300] [--quick]

Writes ``benchmarks/results/l2_scale.md`` (and ``.csv``). Every network is measured in one run:
ours (:func:`lipopt.lipsdp_chain.lipsdp_bound` through the ``lipsdp`` method), the cvxpy
interior-point route (:func:`lipopt.lipsdp.lipsdp_neuron`) in a child process killed after
``--ip-limit`` seconds, ECLipsE and ECLipsE-Fast (PyPI ``eclipse-nn``, benchmark-only extra
``bench``; their values are solver estimates, not certified) in a child process with the same
limit. The digits MLPs 64-128-128-10 and 64-256-256-256-10 are trained here with scikit-learn
(``load_digits``, inputs /16, ``random_state=0``) because ``scripts/train_digits.py`` trains a
fixed 64-32-32-10 shape.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipopt.bounds import lower_bound  # noqa: E402
from lipopt.loaders import load_network  # noqa: E402
from lipopt.network import Network  # noqa: E402
from lipopt.problems import make_target  # noqa: E402
from lipopt.registry import Context, get_method, parse_options  # noqa: E402

EXTERNAL = ROOT.parent / "shared" / "external"
OUT = ROOT / "benchmarks" / "results" / "l2_scale"


def _published() -> dict[tuple[str, str], float]:
    """(file stem, quantity) → published value (LipSDP where known)."""
    out: dict[tuple[str, str], float] = {}
    with open(EXTERNAL / "glipsdp_scalability_results.csv") as fh:
        for row in csv.DictReader(fh):
            if (
                row["family"] == "mlpchain"
                and row["width_or_channels"] == "64"
                and row["quantity"] == "LipSDP"
            ):
                out[(f"glipsdp_mlpchain_W64_d{row['depth']}", "LipSDP")] = float(row["value"])
    with open(EXTERNAL / "glipsdp_digits_results.csv") as fh:
        for row in csv.DictReader(fh):
            if row["quantity"] == "LipSDP-Neuron":
                model, seed = row["model"], row["seed"]
                stem = {
                    "fnn2": f"glipsdp_fnn2_seed{seed}_64-32-10",
                    "fnn3": f"glipsdp_fnn3_seed{seed}_64-32-32-10",
                    "cnn2": f"glipsdp_cnn2_seed{seed}_conv8-fc10_fcperm",
                    "cnn3": f"glipsdp_cnn3_seed{seed}_conv8-conv16-fc10_fcperm",
                }[model]
                out[(stem, "LipSDP")] = float(row["value"])
    out[("glipsdp_convchain_CH16_d2_14x14", "LipSDP")] = 8.026805
    out[("glipsdp_convchain_CH16_d8_14x14", "LipSDP")] = 177.6398
    out[("exlipbab_wine_11-12-12-1", "LipSDP")] = 1.846913
    out[("exlipbab_wine_11-12-12-1", "exact")] = 1.7433699967107172
    out[("lipsdp_random_2-10-30-20-2", "LipSDP")] = 36.482
    out[("eclipse_mnist_784-100-100-10", "ECLipsE-Fast")] = 18.7969
    out[("eclipse_mnist_784-200-200-10", "ECLipsE-Fast")] = 19.6642
    return out


def train_digits(hidden: tuple[int, ...], seed: int = 0) -> Network:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", random_state=seed, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x / 16.0, y)
    name = "digits_mlp_" + "-".join(map(str, (64, *hidden, 10)))
    return Network.from_weights([w.T for w in clf.coefs_], clf.intercepts_, activation="relu", name=name)


def _weights(net: Network, output: int | None) -> list[np.ndarray]:
    ws = [layer.dense_weight() for layer in net.layers]
    if output is not None:
        ws[-1] = ws[-1][output : output + 1]
    return ws


def _child_ip(ws, q):
    from lipopt.lipsdp import lipsdp_neuron

    t0 = time.perf_counter()
    r = lipsdp_neuron(ws)
    q.put((r.certified_value if r.certified else math.inf, time.perf_counter() - t0, r.solver))


def _child_eclipse(ws, fast, q):
    import torch
    from eclipse_nn import ECLipsE, ECLipsE_Fast

    tw = [torch.tensor(w, dtype=torch.float64) for w in ws]
    a, b = [0.0] * (len(ws) - 1), [1.0] * (len(ws) - 1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = ECLipsE_Fast(tw, a, b) if fast else ECLipsE(tw, a, b)
    if isinstance(v, tuple):
        v = v[0]
    q.put((math.nan if v is None else float(v), time.perf_counter() - t0, ""))


def _in_child(fn, args, limit: float) -> tuple[float, float, str]:
    """Run ``fn(*args, queue)`` in a child process; ``(nan, limit, 'timeout')`` if it is killed."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    t0 = time.perf_counter()
    p.start()
    p.join(limit)
    if p.is_alive():
        p.kill()
        p.join()
        return math.nan, time.perf_counter() - t0, "timeout"
    try:
        return q.get(timeout=5)
    except Exception:  # noqa: BLE001 - the child died (e.g. an exception)
        return math.nan, time.perf_counter() - t0, "failed"


def _ours(net: Network, output: int | None, time_limit: float) -> tuple[float, bool, float, str]:
    target = make_target(net, output=output) if output is not None else make_target(net)
    ctx = Context(net, "2", target, None, time_limit=time_limit)
    t0 = time.perf_counter()
    try:
        r = get_method("lipsdp").run(ctx, None, parse_options("lipsdp", {}))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return math.inf, False, time.perf_counter() - t0, f"refused: {str(exc)[:80]}"
    return r.value, r.certified, r.timings.total, r.status.value


def networks(quick: bool, only: str = ""):
    """The benchmark's networks, built lazily (the digits MLPs are trained when reached)."""
    if "digits" in only or not only:
        yield "digits 64-128-128-10", train_digits((128, 128)), None
        yield "digits 64-256-256-256-10", train_digits((256, 256, 256)), None
    out: list[tuple[str, Network, int | None]] = []
    for stem in [
        "lipsdp_mnist_784-50-10",
        "eclipse_mnist_784-100-100-10",
        "eclipse_mnist_784-200-200-10",
        "lipsdp_random_2-10-30-20-2",
    ]:
        out.append((stem, load_network(EXTERNAL / f"{stem}.npz"), None))
    for d in (2, 4, 8, 16):
        stem = f"glipsdp_mlpchain_W64_d{d}"
        out.append((stem, load_network(EXTERNAL / f"{stem}.npz"), None))
    for d in (2, 8):
        stem = f"glipsdp_convchain_CH16_d{d}_14x14"
        out.append((stem, load_network(EXTERNAL / f"{stem}.onnx"), None))
    out.append(("exlipbab_wine_11-12-12-1", load_network(EXTERNAL / "exlipbab_wine_11-12-12-1.npz"), None))
    seeds = range(1) if quick else range(5)
    for s in seeds:
        for stem in (f"glipsdp_fnn2_seed{s}_64-32-10", f"glipsdp_fnn3_seed{s}_64-32-32-10"):
            out.append((stem, load_network(EXTERNAL / f"{stem}.npz"), 7))
        for stem in (
            f"glipsdp_cnn2_seed{s}_conv8-fc10_fcperm",
            f"glipsdp_cnn3_seed{s}_conv8-conv16-fc10_fcperm",
        ):
            out.append((stem, load_network(EXTERNAL / f"{stem}.onnx"), 7))
    yield from out


#: above this LMI order the interior-point route and ECLipsE are not run (dense LMIs)
MAX_PEER_ORDER = 4000


def _eclipse_fast_dense(ws) -> float:
    """ECLipsE-Fast's closed form (same recursion as ``eclipse_nn.ECLipsE_Fast``), in numpy."""
    X = np.eye(ws[0].shape[1])
    for W in ws[:-1]:
        W = W.toarray() if hasattr(W, "toarray") else W
        mat = W @ np.linalg.solve(X, W.T)
        lam = 1.0 / (2.0 * 0.25 * np.max(np.linalg.eigvalsh(0.5 * (mat + mat.T))))
        X = lam * np.eye(W.shape[0]) - lam**2 * 0.25 * mat
    Wl = ws[-1].toarray() if hasattr(ws[-1], "toarray") else ws[-1]
    return float(np.sqrt(np.max(np.real(np.linalg.eigvals(Wl.T @ Wl @ np.linalg.inv(X))))))


def _jacobian_lower(net: Network, output: int | None, points: int = 10, iters: int = 40) -> float:
    """max over random inputs of a power-iteration estimate of ‖J(x)‖₂ (each estimate is below
    ‖J(x)‖₂, and x is a generic point of a linear region: a lower bound on the constant)."""
    rng = np.random.default_rng(0)
    best = 0.0
    for _ in range(points):
        x = rng.standard_normal(net.input_dim)
        slopes = [(z[0] > 0).astype(float) for z in net.pre_activations(x[None])]
        v = rng.standard_normal(net.input_dim)
        v /= np.linalg.norm(v)
        for _ in range(iters):
            h = v
            for layer, s in zip(net.layers[:-1], slopes, strict=True):
                h = (layer.weight @ h) * s
            jv = net.layers[-1].weight @ h
            if output is not None:
                jv = np.eye(len(jv))[output] * jv
            g = net.backward(jv[None], slopes)[0]
            norm = float(np.linalg.norm(g))
            if norm == 0.0:
                break
            v = g / norm
        best = max(best, float(np.sqrt(norm)) if norm > 0 else 0.0)
    return best * (1 - 1e-9)


def _product(net: Network, output: int | None) -> float:
    """``‖W_{L+1}‖₂ Π ‖W_l‖₂`` (``‖e_kᵀ W_{L+1}‖`` for one output): the naive ℓ2→ℓ2 reference
    (dense SVD for small layers, ARPACK's largest singular value for sparse convolutions)."""
    from scipy.sparse.linalg import svds

    out = 1.0
    for i, layer in enumerate(net.layers):
        w = layer.weight
        if i == len(net.layers) - 1 and output is not None:
            w = layer.dense_weight()[output : output + 1]
        if hasattr(w, "toarray") and min(w.shape) > 500:
            out *= float(svds(w, k=1, return_singular_vectors=False, tol=1e-10)[0])
        else:
            out *= float(np.linalg.norm(w.toarray() if hasattr(w, "toarray") else w, 2))
    return out


def _previous_rows() -> list[dict]:
    """Rows of an earlier run (a partial rerun with ``--only`` replaces its networks' rows)."""
    path = OUT.with_suffix(".csv")
    if not path.exists():
        return []
    out = []
    with open(path) as fh:
        for r in csv.DictReader(fh):
            for k, v in r.items():
                if k not in ("network", "output", "status", "ip_note", "eclipse_note", "certified"):
                    r[k] = float(v) if v not in ("", "None") else math.nan
            r["certified"] = r["certified"] == "True"
            out.append(r)
    return out


def _fmt(x: float, digits: int = 7) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ip-limit", type=float, default=300.0)
    ap.add_argument("--eclipse-limit", type=float, default=120.0)
    ap.add_argument("--ours-limit", type=float, default=600.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="substring filter on network names")
    ap.add_argument("--bab", action="store_true", help="run the below-LipSDP branch and bound table instead")
    ap.add_argument("--digits", action="store_true", help="GLipSDP digits nets, all seeds, vs published")
    ap.add_argument("--sweep", action="store_true", help="time against depth and width (random chains)")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the csv")
    ap.add_argument("--products-only", action="store_true", help="recompute the product column of old rows")
    args = ap.parse_args()
    if args.bab:
        below_lipsdp(60.0)
        return
    if args.digits:
        digits_table(20.0)
        return
    if args.sweep:
        scaling_sweep()
        return
    if args.render:
        _write(_previous_rows(), args)
        return
    import cvxpy  # noqa: F401  (imported before forking: the children's times exclude the import)
    import torch  # noqa: F401

    pub = _published()
    rows = _previous_rows() if (args.only or args.products_only) else []
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for name, net, output in networks(args.quick, args.only):
        if args.only and args.only not in name:
            continue
        ws = _weights(net, output)
        if args.products_only:
            if net.input_dim + sum(net.hidden_sizes) > MAX_PEER_ORDER:
                continue  # rows of large nets were written by this version (products already)
            for r in rows:
                if r["network"] == name:
                    r["naive"] = _product(net, output)
            _write(rows, args)
            continue
        # conv chains: the ≤ 60 s target is met by the anytime property (a certified, looser iterate)
        limit = min(args.ours_limit, 55.0) if "convchain" in name else args.ours_limit
        ours, cert, t_ours, status = _ours(net, output, limit)
        order = net.input_dim + sum(net.hidden_sizes)
        if order > MAX_PEER_ORDER:  # a dense cvxpy LMI of this order would exhaust the memory
            ip, t_ip, ip_note = math.nan, 0.0, f"not run (LMI order {order})"
            ec, t_ec, ec_note = math.nan, 0.0, f"not run (order {order})"
            ef = _eclipse_fast_dense(ws)
        else:
            ip, t_ip, ip_note = _in_child(_child_ip, (ws,), args.ip_limit)
            ef, _, _ = _in_child(_child_eclipse, (ws, True), args.eclipse_limit)
            ec, t_ec, ec_note = _in_child(_child_eclipse, (ws, False), args.eclipse_limit)
        target = make_target(net, output=output) if output is not None else make_target(net)
        naive = _product(net, output)
        if order > MAX_PEER_ORDER:
            low = _jacobian_lower(net, output)
        else:
            low = lower_bound(net, "2", target, None).value
        published = pub.get((name, "LipSDP"), math.nan)
        row = {
            "network": name,
            "output": "" if output is None else output,
            "ours": ours,
            "certified": cert,
            "ours_s": t_ours,
            "status": status,
            "ip": ip,
            "ip_s": t_ip,
            "ip_note": ip_note,
            "eclipse": ec,
            "eclipse_s": t_ec,
            "eclipse_note": ec_note,
            "eclipse_fast": ef,
            "naive": naive,
            "lower": low,
            "published_lipsdp": published,
            "exact": pub.get((name, "exact"), math.nan),
        }
        rows = [r for r in rows if r["network"] != name] + [row]
        print(" | ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in row.items()), flush=True)
        _write(rows, args)


NOTES = [
    "",
    "Columns: `ours s` / `ip s` wall time of the step (ip in a child process, `timeout` = killed at the "
    "limit, `failed` = the child died, e.g. out of memory); speed-up = ip s / ours s (a lower bound "
    "when ip timed out); `product` = Π‖W_l‖₂; `lower` = the secant search of `lipopt.bounds.lower_bound` "
    "(conv chains: power iteration on J(x) at random points). ECLipsE from `eclipse-nn` 0.1.7 returns "
    "no value (its numerical-issue exit) on most nets; ECLipsE-Fast is its closed form (ported to numpy "
    "for the conv chains). Conv chains: ours is the Fourier route (per-channel multipliers on the 15×15 "
    "torus, exact for the zero-padded 14×14 maps) under a 55 s limit (d8: stopped early, certified); "
    "the published GLipSDP-conv value bounds every map size.",
    "",
    "Companion tables: `l2_scale_digits.md` (GLipSDP digits nets, all seeds, vs published; with the "
    "slope branch and bound), `l2_scale_bab.md` (below LipSDP: wine and fnn3), `l2_scale_sweep.md` "
    "(time against depth and width).",
    "",
    "Solver choice (measured on random chains 6-12-9-3 … 64-256-256-256-10, iterations to rtol 1e-7): "
    "a dual barrier method with Newton steps on the rank-2 Hessian needed 64–270 Newton steps "
    "(1.8 s on 64-128-128-10); the same HKM primal–dual method with separate primal and dual step "
    "lengths stalled (43–100 iterations); one common step length: 10–17 iterations. Multi-threaded "
    "BLAS on the shared 2 cores was 10–80× slower than one thread (every solve runs single-threaded). "
    "Step lengths by Cholesky tests instead of eigenvalues (a factorisation is a fraction of an "
    "eigenvalue solve).",
]


def _write(rows: list[dict], args) -> None:
    with open(OUT.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# ℓ2 at scale: structured LipSDP vs interior point, ECLipsE, published values",
        "",
        "Generated by `benchmarks/l2_scale.py` (interior point and ECLipsE in child processes killed at "
        "their limits: `--ip-limit 150`, 600 s for digits 64-256-256-256-10, `--eclipse-limit` 60–90 s; "
        "2 shared cores, so compare the ratios measured in the same run). "
        "Quantity: the ℓ2→ℓ2 constant of the network (its Jacobian's spectral norm) unless an output is "
        "given (then the scalar output's ℓ2 constant, as in GLipSDP's digits comparison). "
        "`ours` is certified by the block-Cholesky check; `ip` is today's "
        "`lipopt.lipsdp.lipsdp_neuron` (cvxpy, certified by its eigenvalue check); "
        "ECLipsE/ECLipsE-Fast are `eclipse-nn` estimates (not certified).",
        "",
        "| network | out | ours | cert | ours s | ip | ip s | speed-up | ours/ip − 1 | ECLipsE-Fast "
        "| ECLipsE | ECLipsE s | product | lower | published LipSDP | ours/published − 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ip_ok = math.isfinite(r["ip"])
        if ip_ok:
            speed = f"{r['ip_s'] / r['ours_s']:.1f}×"
        elif r["ip_note"] == "timeout":
            speed = f"> {r['ip_s'] / r['ours_s']:.1f}× (ip timeout)"
        else:
            speed = f"— (ip {r['ip_note'] or 'not run'})"
        rel = f"{r['ours'] / r['ip'] - 1:+.2e}" if ip_ok else "—"
        relp = (
            f"{r['ours'] / r['published_lipsdp'] - 1:+.2e}" if math.isfinite(r["published_lipsdp"]) else "—"
        )
        note = f" ({r['eclipse_note']})" if r["eclipse_note"] else ""
        cells = [
            r["network"], r["output"], _fmt(r["ours"], 8), r["certified"], f"{r['ours_s']:.2f}",
            _fmt(r["ip"], 8), f"{r['ip_s']:.1f}", speed, rel, _fmt(r["eclipse_fast"]),
            _fmt(r["eclipse"]) + note, f"{r['eclipse_s']:.1f}", _fmt(r["naive"]), _fmt(r["lower"]),
            _fmt(r["published_lipsdp"], 8), relp,
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += NOTES
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


def below_lipsdp(time_limit: float) -> None:
    """Branch and bound over slopes (:mod:`lipopt.lipsdp_bab`) on wine and the fnn3 nets."""
    from lipopt.lipsdp_bab import lipsdp_branch_and_bound

    pub = _published()
    cases = [("exlipbab_wine_11-12-12-1", None)]
    cases += [(f"glipsdp_fnn3_seed{s}_64-32-32-10", 7) for s in range(5)]
    lines = [
        "# Below LipSDP: branch and bound over activation slopes (global ℓ2)",
        "",
        f"`benchmarks/l2_scale.py --bab` ({time_limit:.0f} s per net, 2 shared cores). `root` = LipSDP "
        "(certified), `bab` = certified maximum over the open leaves, `lower` = ‖J(x)‖₂ at sampled "
        "inputs (real points of the biased net, reached at large scalings of the samples).",
        "",
        "| network | out | root (LipSDP) | bab | bab/root − 1 | lower | exact | nodes | status | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, out in cases:
        net = load_network(EXTERNAL / f"{stem}.npz")
        r = lipsdp_branch_and_bound(_weights(net, out), time_limit=time_limit)
        exact = pub.get((stem, "exact"), math.nan)
        lines.append(
            f"| {stem} | {'' if out is None else out} | {r.root:.7g} | {r.value:.7g} | "
            f"{r.value / r.root - 1:+.2%} | {r.lower:.7g} | {_fmt(exact)} | {r.nodes} | {r.status} "
            f"| {r.time_s:.0f} |"
        )
        print(lines[-1], flush=True)
        (OUT.parent / "l2_scale_bab.md").write_text("\n".join(lines) + "\n")


def digits_table(time_limit: float) -> None:
    """GLipSDP digits nets, output 7, all seeds: LipSDP (structured) and the slope branch and bound
    against the published LipSDP-Neuron (Mosek) values."""
    from lipopt.lipsdp_bab import lipsdp_branch_and_bound
    from lipopt.lipsdp_chain import lipsdp_bound

    pub = _published()
    lines = [
        "# GLipSDP digits nets (output 7, global ℓ2): structured LipSDP and the slope branch and bound",
        "",
        f"`benchmarks/l2_scale.py --digits` (branch and bound {time_limit:.0f} s per net, 2 shared cores).",
        "",
        "| network | published LipSDP | ours LipSDP | ours/published − 1 | ours s | B&B | B&B/published − 1 "
        "| B&B s | nodes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in range(5):
        for stem, ext in [
            (f"glipsdp_fnn2_seed{s}_64-32-10", "npz"),
            (f"glipsdp_fnn3_seed{s}_64-32-32-10", "npz"),
            (f"glipsdp_cnn2_seed{s}_conv8-fc10_fcperm", "onnx"),
            (f"glipsdp_cnn3_seed{s}_conv8-conv16-fc10_fcperm", "onnx"),
        ]:
            net = load_network(EXTERNAL / f"{stem}.{ext}")
            ws = [layer.weight for layer in net.layers]
            ws[-1] = _weights(net, 7)[-1]  # e_7ᵀ W: a row of W, exact
            t0 = time.perf_counter()
            c = lipsdp_bound(ws, rtol=1e-11)
            t_ours = time.perf_counter() - t0
            p = pub.get((stem, "LipSDP"), math.nan)
            r = lipsdp_branch_and_bound(ws, time_limit=time_limit)
            lines.append(
                f"| {stem} | {p:.10g} | {c.value:.10g} | {c.value / p - 1:+.2e} | {t_ours:.2f} | "
                f"{r.value:.10g} | {r.value / p - 1:+.2e} | {r.time_s:.0f} | {r.nodes} |"
            )
            print(lines[-1], flush=True)
            (OUT.parent / "l2_scale_digits.md").write_text("\n".join(lines) + "\n")


SWEEP_NOTE = [
    "",
    "Known weakness: on He-initialised random chains of depth 32 (constants ~1e14) the solver hits "
    "its iteration limit (80) from the layer-wise greedy start (ρ₀ ~6 decades above the optimum at "
    "depth 16) and the certified value stays above ECLipsE-Fast; trained chains (GLipSDP depth 16) "
    "converge in ~25 iterations. A per-neuron (ECLipsE-style) start would fix it.",
]


def scaling_sweep() -> None:
    """Time against depth (width 64) and width (depth 4) on random chains (He init, seed 0):
    ours only, with ECLipsE-Fast's closed form and the product of norms for the value."""
    from lipopt.lipsdp_chain import lipsdp_bound

    lines = [
        "# Time against depth and width (random chains, vector ℓ2 constant)",
        "",
        "`benchmarks/l2_scale.py --sweep` (2 shared cores). `order` = LMI order solved (input reduced).",
        "",
        "| depth | width | order | ours | certified | iterations | ours s | ECLipsE-Fast | product |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cases = [(d, 64) for d in (2, 4, 8, 16, 32)] + [(4, w) for w in (32, 128, 256, 512)]
    for depth, width in cases:
        rng = np.random.default_rng(0)
        sizes = [width] * (depth + 1) + [10]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        ws = [rng.standard_normal((b, a)) * np.sqrt(2.0 / a) for a, b in pairs]
        t0 = time.perf_counter()
        c = lipsdp_bound(ws)
        dt = time.perf_counter() - t0
        prod = float(np.prod([np.linalg.norm(w, 2) for w in ws]))
        lines.append(
            f"| {depth} | {width} | {int(c.details['lmi_order'])} | {c.value:.7g} | {c.certified} | "
            f"{int(c.details['iterations'])} | {dt:.2f} | {_eclipse_fast_dense(ws):.7g} | {prod:.7g} |"
        )
        print(lines[-1], flush=True)
        (OUT.parent / "l2_scale_sweep.md").write_text("\n".join(lines + SWEEP_NOTE) + "\n")


if __name__ == "__main__":
    main()
