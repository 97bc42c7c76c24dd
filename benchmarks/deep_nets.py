"""Deep networks: the layer-wise methods (``lifted``, ``bab``) against LipBaB, the polynomial
relaxations and the baselines. Writes ``benchmarks/results/deep_nets.md``.

Sections (every time in the same run, on the same machine; CPU seconds are process time, which
the other jobs on a shared machine disturb less than wall time):

1. **LipBaB's four networks** on the box ``[0, 0.1]^n``, the network's ℓ∞/ℓ1/ℓ2 constant (the
   induced norm of the Jacobian), ``bab`` and LipBaB side by side against the exact values of
   ``../shared/external/README.md``. LipBaB (github.com/pyrobits/LipBaB, CVXOPT + GLPK) runs with
   its own code from a directory outside the repository (``--lipbab``, fetched there, never
   copied): its script is executed unchanged except for the three configuration lines (the
   network file, ``pnorm``), in a child process whose CPU time is measured.
2. **ExLipBaB's wine net**, global ℓ2 (exact 1.74337).
3. **Digits-trained MLPs** of depth 2–6 and width 32–256 (``scripts/train_digits.py``,
   deterministic, trained here in seconds), output 0, global and on the ℓ∞ ball of radius 0.1
   around the first test image: ``bab``, ``lifted``, the LP relaxation ``lp``, ``abs-product``,
   ``naive`` and the lower-bound search.
4. **Size, time and memory** of the lifted LP against depth and width (random networks).
5. **A random-init 784-256-256-10** (PyTorch's default uniform initialisation, seed 0): the global
   ℓ∞ constant of output 0 by ``lifted`` against ``abs-product`` and ``naive``.

Usage: ``python benchmarks/deep_nets.py [--time-limit 120] [--lipbab /work/peers/LipBaB]
[--sections 1,2,3,4,5] [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from lipopt.errors import LipoptError  # noqa: E402
from lipopt.hierarchy.lifted import LiftedTemplate  # noqa: E402
from lipopt.loaders import load_network  # noqa: E402
from lipopt.network import Network  # noqa: E402
from lipopt.problems import make_domain, make_target  # noqa: E402
from lipopt.reach import Chain  # noqa: E402
from lipopt.registry import Context, get_method, parse_options  # noqa: E402

EXTERNAL = ROOT.parent / "shared" / "external"
OUT = HERE / "results" / "deep_nets.md"
NORMS = ("inf", "1", "2")
SYMBOL = {"inf": "ℓ∞", "1": "ℓ1", "2": "ℓ2"}

LIPBAB_NETS = [  # file, LipBaB's saved-network stem, exact ℓ∞, ℓ1, ℓ2 (../shared/external/README.md)
    ("lipbab_iris_4-5-5-3.npz", "iris_net_(4,5,5,3)", (2.78682, 1.54491, 1.67808)),
    ("lipbab_sd_10-15-10-3.npz", "SDnet_(10,15,10,3)", (16.27481, 10.41287, 9.53072)),
    ("lipbab_sd_10-20-15-10-3.npz", "SDnet_(10,20,15,10,3)", (72.28570, 48.04897, 40.05651)),
    ("lipbab_sd_10-30-30-30-3.npz", "SDnet_(10,30,30,30,3)", (39.11036, 19.36931, 19.46280)),
]
DIGITS = [(32, 32), (64, 64), (128, 128), (256, 256, 256), (32,) * 6]
TARGETS = DIGITS[1:]  # issue 11: global ℓ∞, bab ≤ 1.5 × lower within the time limit


# ---------------------------------------------------------------------------------------------
# running methods
# ---------------------------------------------------------------------------------------------
def run_method(name: str, ctx: Context, options: dict | None = None, level=None) -> dict:
    """One registered method: value, certified, lower, status, wall and CPU seconds, size."""
    method = get_method(name)
    why = method.applies(ctx)
    if why:
        return {"method": name, "value": None, "note": why, "status": "refused"}
    opts = parse_options(method.group(), options or {})
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        if level is None and method.hierarchy is not None:
            level = method.levels(ctx, None)[0]
        if method.kind == "lower":
            lb = method.search(ctx, opts)
            row = {"value": lb.value, "certified": None, "status": "done", "lower": None, "size": {}}
        else:
            size = method.estimate(ctx, level, opts)
            if size is not None and size.memory_bytes and size.memory_bytes > ctx.max_memory_bytes:
                return {"method": name, "value": None, "status": "refused",
                        "note": f"memory estimate {size.memory_bytes / 1e9:.1f} GB"}
            r = method.run(ctx, level, opts)
            row = {"value": r.value if r.status.ran else None, "certified": r.certified,
                   "status": r.status.value, "lower": r.lower, "size": r.size.to_dict(), "note": r.note}
    except LipoptError as exc:
        return {"method": name, "value": None, "status": "refused", "note": str(exc)}
    row.update(method=name if level is None else f"{name}-{level}", wall=time.perf_counter() - t0,
               cpu=time.process_time() - c0)
    return row


def run_lipbab(lipbab: Path, stem: str, norm: str, timeout: float) -> dict:
    """LipBaB's own script, configuration lines changed only (network, norm); child CPU time."""
    src = (lipbab / "LipBaB.py").read_text()
    src = src.replace("SDnet_(10,20,15,10,3)", stem)
    src = re.sub(r"^pnorm=2", f"pnorm={'np.inf' if norm == 'inf' else norm}", src, flags=re.M)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-"], input=src, text=True, capture_output=True,
                              cwd=lipbab, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"value": None, "wall": timeout, "cpu": None, "note": f"no result within {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = re.search(r"Final Lipschitz estimation:\s*([0-9.eE+-]+)", proc.stdout)
    t = re.search(r"Execution time in seconds:\s*([0-9.eE+-]+)", proc.stdout)
    if m is None:
        return {"value": None, "wall": wall, "cpu": cpu, "note": proc.stderr.strip()[-200:]}
    own = float(t.group(1)) if t else None
    return {"value": float(m.group(1)), "wall": wall, "cpu": cpu, "own_time": own}


def fmt(v, digits: int = 6) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------
def section_lipbab(args) -> list[str]:
    lines = ["## 1. LipBaB's networks, box [0, 0.1]^n, the network's constant",
             "",
             "`bab` (gap 1e-6) and LipBaB (approximation factor 1) in the same run. `vs exact`: relative",
             "difference to the README's exact value (rounded there to 5 decimals); `vs LipBaB`: to the",
             "value LipBaB prints in the same run (the exact value at full precision). Ratio = LipBaB",
             "time / bab time.",
             "",
             "| network | norm | exact | bab upper | bab lower | vs exact | vs LipBaB | nodes | bab wall s "
             "| bab CPU s | LipBaB value | LipBaB wall s | LipBaB CPU s | ratio (wall) | ratio (CPU) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lipbab = Path(args.lipbab)
    have = (lipbab / "LipBaB.py").is_file()
    for file, stem, exact in LIPBAB_NETS:
        net = load_network(EXTERNAL / file)
        domain = make_domain(net, box=(0.0, 0.1))
        for norm, value in zip(NORMS, exact, strict=True):
            ctx = Context(net, norm, make_target(net), domain, time_limit=args.time_limit)
            ours = run_method("bab", ctx, {"gap": 1e-6})
            err = abs(ours["value"] - value) / value if ours["value"] else None
            peer = run_lipbab(lipbab, stem, norm, args.lipbab_timeout) if have else {"value": None}
            rw = peer.get("wall") / ours["wall"] if peer.get("value") else None
            dev = abs(ours["value"] - peer["value"]) / peer["value"] if peer.get("value") else None
            rc = peer.get("cpu") / ours["cpu"] if peer.get("value") and peer.get("cpu") else None
            lines.append(
                f"| {file} | {SYMBOL[norm]} | {value:.5f} | {fmt(ours['value'], 9)} "
                f"| {fmt(ours['lower'], 9)} "
                f"| {fmt(err, 2)} | {fmt(dev, 2)} | {ours['size'].get('nodes')} | {ours['wall']:.2f} "
                f"| {ours['cpu']:.2f} "
                f"| {fmt(peer.get('value'), 9)} | {fmt(peer.get('wall'), 3)} | {fmt(peer.get('cpu'), 3)} "
                f"| {fmt(rw, 3)} | {fmt(rc, 3)} |")
            print(lines[-1], flush=True)
    if not have:
        lines.append(f"\nLipBaB not found at {lipbab}: its columns are empty.")
    return lines


def section_wine(args) -> list[str]:
    net = load_network(EXTERNAL / "exlipbab_wine_11-12-12-1.npz")
    ctx = Context(net, "2", make_target(net), None, time_limit=args.time_limit)
    r = run_method("bab", ctx)
    line = (f"| exlipbab_wine_11-12-12-1 | global ℓ2 | 1.74337 | {fmt(r['value'], 7)} | {fmt(r['lower'], 7)} "
            f"| {r['status']} | {r['size'].get('nodes')} | {r['wall']:.1f} |")
    print(line, flush=True)
    return ["## 2. ExLipBaB's wine net, global ℓ2 (target: certified ≤ 1.78)", "",
            "| network | quantity | exact | bab upper | bab lower | status | nodes | wall s |",
            "|---|---|---|---|---|---|---|---|", line, "", f"Note: {r.get('note')}"]


def digits_net(hidden: tuple[int, ...]) -> Network:
    from train_digits import train

    net, _ = train(1000, 0, hidden)
    return net


def section_digits(args) -> list[str]:
    lines = ["## 3. Digits-trained MLPs, output 0, ℓ∞", "",
             "Trained by `scripts/train_digits.py --hidden …` (sklearn digits, seed 0). Local: the ℓ∞",
             f"ball of radius 0.1 around the first test image. Every method under a {args.time_limit:.0f} s",
             "time limit. `bab/lower` is the certified bound over the best lower bound (target ≤ 1.5",
             "globally).",
             "",
             "| network | domain | lower | bab | bab/lower | target | bab nodes | lifted | lp | abs-product "
             "| naive | bab s | lifted s | lp s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for hidden in DIGITS[: 2 if args.quick else None]:
        net = digits_net(hidden)
        arch = "-".join(str(w) for w in (64, *hidden, 10))
        for where in ("global", "local"):
            domain = None if where == "global" else make_domain(net, center=net.x0, eps=0.1)
            ctx = Context(net, "inf", make_target(net, output=0), domain, time_limit=args.time_limit,
                          max_memory_bytes=args.max_memory * 1e9)
            rows = {m: run_method(m, ctx) for m in ("lower", "bab", "lifted", "lp", "abs-product", "naive")}
            lower = max(v for v in (rows["lower"]["value"], rows["bab"].get("lower")) if v is not None)
            b = rows["bab"]
            ratio = b["value"] / lower if b["value"] and lower else None
            lp = rows["lp"]
            target = "—"
            if where == "global" and hidden in TARGETS:
                met = ratio is not None and ratio <= 1.5 and b.get("wall", math.inf) <= args.time_limit * 1.05
                target = "met" if met else "**missed**"
            lines.append(
                f"| {arch} | {where} | {fmt(lower)} | {fmt(b['value'])} | {fmt(ratio, 3)} | {target} "
                f"| {b.get('size', {}).get('nodes')} | {fmt(rows['lifted']['value'])} "
                f"| {fmt(lp['value']) if lp['value'] is not None else lp['status']} ({lp.get('method')}) "
                f"| {fmt(rows['abs-product']['value'])} | {fmt(rows['naive']['value'])} "
                f"| {fmt(b.get('wall'), 3)} | {fmt(rows['lifted'].get('wall'), 3)} "
                f"| {fmt(lp.get('wall'), 3)} |")
            print(lines[-1], flush=True)
    return lines


def random_net(sizes: list[int], seed: int = 0) -> Network:
    """PyTorch's default initialisation: weights and biases uniform in ±1/√fan_in."""
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        k = 1.0 / np.sqrt(a)
        ws.append(rng.uniform(-k, k, (b, a)))
        bs.append(rng.uniform(-k, k, b))
    return Network.from_weights(ws, bs, name="random" + "-".join(map(str, sizes)))


def section_sizes(args) -> list[str]:
    lines = ["## 4. The lifted LP against depth and width (random nets 64-w-…-w-10, global ℓ∞, output 0)",
             "", "Non-zeros of the LP per non-zero weight tend to 2 (forward and backward copy of every",
             "weight) plus a constant per neuron: the size grows with the weights, never with the paths.",
             "",
             "| depth | width | weights (nnz) | paths | LP rows | LP cols | LP nnz | nnz / weight "
             "| memory estimate MB | root LP s | value | abs-product |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    widths = (32, 64) if args.quick else (32, 64, 128, 256)
    for depth in (2, 4, 6):
        for width in widths:
            net = random_net([64, *([width] * depth), 10])
            chain = Chain.from_network(net)
            est = LiftedTemplate.estimate(chain)
            tmpl = LiftedTemplate(chain, "sum-abs")
            paths = 64 * width**depth
            ctx = Context(net, "inf", make_target(net, output=0), None, time_limit=args.time_limit)
            r = run_method("lifted", ctx)
            ap = run_method("abs-product", ctx)
            lines.append(
                f"| {depth} | {width} | {chain.nnz():,} | {paths:.2e} | {tmpl.rows:,} | {tmpl.cols:,} "
                f"| {tmpl.nnz:,} | {tmpl.nnz / chain.nnz():.2f} | {est['bytes'] / 1e6:.1f} "
                f"| {r['wall']:.2f} | {fmt(r['value'])} ({r['status']}) | {fmt(ap['value'])} |")
            print(lines[-1], flush=True)
    return lines


def section_mnist(args) -> list[str]:
    net = random_net([784, 256, 256, 10])
    ctx = Context(net, "inf", make_target(net, output=0), None, time_limit=max(args.time_limit, 600))
    rows = [run_method(m, ctx) for m in ("lifted", "abs-product", "naive")]
    lines = ["## 5. Random-init 784-256-256-10 (PyTorch default init, seed 0), global ℓ∞, output 0", "",
             "| method | certified bound | status | LP rows | LP cols | LP nnz | wall s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.get("size", {})
        lines.append(f"| {r['method']} | {fmt(r['value'])} | {r['status']} | {s.get('constraints', '—')} "
                     f"| {s.get('variables', '—')} | {s.get('nonzeros', '—')} | {r['wall']:.1f} |")
        print(lines[-1], flush=True)
    return lines


TITLE = "# Deep networks: layer-wise LP, branch and bound, LipBaB"


def read_sections(path: Path) -> dict[str, list[str]]:
    """The sections already in the results file (``## N. …`` up to the next one), by number, so a
    run of some sections keeps the others' tables."""
    if not path.is_file():
        return {}
    out: dict[str, list[str]] = {}
    key = None
    for line in path.read_text().splitlines():
        m = re.match(r"^## (\d+)\.", line)
        if m:
            key = m.group(1)
            out[key] = []
        if key is not None:
            out[key].append(line)
    for lines in out.values():
        while lines and not lines[-1].strip():
            lines.pop()
    return out


def write_sections(path: Path, sections: dict[str, list[str]]) -> None:
    lines = [TITLE, "", "Each section says when and how it was run (sections are rerun separately).", ""]
    for key in sorted(sections, key=int):
        lines += sections[key] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


SECTIONS = {"1": section_lipbab, "2": section_wine, "3": section_digits, "4": section_sizes,
            "5": section_mnist}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per method and case")
    p.add_argument("--max-memory", type=float, default=8.0, help="GB per method")
    p.add_argument("--lipbab", default=os.environ.get("LIPBAB_DIR", "/work/peers/LipBaB"),
                   help="directory holding LipBaB.py and its saved_networks/")
    p.add_argument("--lipbab-timeout", type=float, default=1200.0)
    p.add_argument("--sections", default="1,2,3,4,5")
    p.add_argument("--quick", action="store_true", help="fewer networks (a smoke test)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    stamp = (f"_Run {started} on {os.cpu_count()} cores (shared machine), `python benchmarks/deep_nets.py "
             f"--sections {{key}} --time-limit {args.time_limit:g}`._")
    sections = read_sections(args.out)
    for key in args.sections.split(","):
        key = key.strip()
        body = SECTIONS[key](args)
        sections[key] = body[:1] + ["", stamp.format(key=key)] + body[1:]
        write_sections(args.out, sections)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
