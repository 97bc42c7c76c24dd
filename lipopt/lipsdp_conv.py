r"""LipSDP for chains of convolutions without unrolling: per-channel multipliers, Fourier blocks.

Structure recovery
------------------
Convolutions reach lipopt unrolled to CSR matrices (:mod:`lipopt.conv`). :func:`recover_conv`
finds the kernel back: for each square map size ``H`` that divides the matrix (``C = n/H²``), it
reads the taps from the rows of the centre pixel and **rebuilds** the matrix with
:func:`lipopt.conv.conv2d_matrix` (stride 1, symmetric padding ``p = (k−1)/2``); a size is
accepted only if the rebuilt matrix is identical. Nothing is assumed that is not checked.

Why the torus is exact for zero padding
---------------------------------------
Embed the ``H × W`` maps in a torus ``T_h × T_w`` with ``T ≥ H + p``: the extra ``p`` rows and
columns are a border. The zero-padded chain equals the circular chain on the torus in which every
border neuron's activation is the zero function (its value is 0, as zero padding reads) and the
input is zero on the border; the output of the real chain is the window of the torus output
(a projection, which does not increase norms). The zero function has slope 0 ∈ [0, 1], so the
incremental quadratic constraints with slopes ``[0, 1]`` hold for every torus neuron (ReLU). With
**one multiplier per channel** (the same for all positions, border included) the LipSDP matrix
of the torus chain commutes with translations, and the unitary 2-D DFT block-diagonalises it:
``M ⪯ 0`` iff for every frequency ``ω`` the ``(Σ C_l)``-order Hermitian LMI built from the
channel matrices ``K̂_l(ω)[o, c] = Σ_{a,b} K_l[o, c, a, b] e^{i(ω_1(a−p) + ω_2(b−p))}`` holds
(frequencies ``ω`` and ``−ω`` give conjugate blocks; one of each pair is kept). So the bound
holds for the ``H × W`` zero-padded chain exactly as stored; GLipSDP-conv's LMI instead bounds
every map size (all ``ω`` of the unit torus), so it can only be higher.

Each frequency block is an MLP-like LipSDP with complex weights and per-channel "neurons"; the
batch shares the multipliers (:class:`lipopt.solvers.lipsdp_chain.LMIData` with ``F``
frequencies). Certification: every block by :func:`lipopt.lipsdp_certify.certify_chain`, with
the entrywise error of the computed DFT (``|Δe^{iθ}| ≤ 32 eps`` for ``θ = 2π q/T`` from integer
``q``, plus the summation over the ``k²`` taps) passed as a weight error; the certified ``ρ`` is
the largest over the blocks (the LMI is monotone in ``ρ``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .conv import conv2d_matrix
from .errors import LipoptError
from .floats import EPS, round_up
from .lipsdp_certify import certify_chain
from .results import Certificate
from .solvers.lipsdp_chain import BlockRows, LMIData, solve_lmi
from .solvers.mixing import blas_threads

__all__ = ["ConvSpec", "conv_chain_specs", "lipsdp_conv_bound", "recover_conv"]

KIND = "LMI check per Fourier block (block Cholesky, a-posteriori error bound)"


@dataclass(frozen=True)
class ConvSpec:
    """A stride-1 convolution ``(C_out, C_in, k, k)`` on ``H × W`` maps with padding ``p``."""

    kernel: np.ndarray
    height: int
    width: int
    padding: int


def recover_conv(w) -> ConvSpec | None:
    """The stride-1, same-padding, square-map convolution whose unrolled matrix is ``w``, or
    ``None`` (module docstring; the match is verified by rebuilding the matrix)."""
    if not sp.issparse(w):
        return None
    w = sp.csr_matrix(w)
    n_out, n_in = w.shape
    g = math.gcd(n_out, n_in)
    for side in range(int(math.isqrt(g)), 1, -1):
        hw = side * side
        if g % hw:
            continue
        spec = _try_side(w, side, n_in // hw, n_out // hw)
        if spec is not None:
            return spec
    return None


def _try_side(w: sp.csr_matrix, side: int, c_in: int, c_out: int) -> ConvSpec | None:
    H = W = side
    centre = (H // 2) * W + W // 2
    rows = np.arange(c_out) * H * W + centre
    sub = w[rows].tocoo()
    if sub.nnz == 0:
        return None
    c, rem = np.divmod(sub.col, H * W)
    dh, dw = rem // W - H // 2, rem % W - W // 2
    p = int(max(np.abs(dh).max(), np.abs(dw).max()))
    k = 2 * p + 1
    if k > side:
        return None
    kernel = np.zeros((c_out, c_in, k, k))
    kernel[sub.row, c, dh + p, dw + p] = sub.data
    rebuilt, _ = conv2d_matrix(kernel, (c_in, H, W), 1, p)
    diff = rebuilt - w
    if diff.nnz and np.max(np.abs(diff.data)) != 0.0:
        return None
    return ConvSpec(kernel, H, W, p)


def conv_chain_specs(weights: Sequence) -> list[ConvSpec] | None:
    """Specs of a chain whose every matrix is such a convolution on one map size, else ``None``."""
    specs = []
    for w in weights:
        s = recover_conv(w)
        if s is None:
            return None
        specs.append(s)
    if len({(s.height, s.width) for s in specs}) != 1:
        return None
    return specs


def _frequencies(T: int) -> np.ndarray:
    """One frequency index ``(u, v)`` per conjugate pair on a ``T × T`` torus."""
    u, v = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    u, v = u.ravel(), v.ravel()
    keep = (u * T + v) <= ((-u) % T) * T + (-v) % T
    return np.stack([u[keep], v[keep]], axis=1)


def _fourier(kernel: np.ndarray, p: int, freqs: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """``K̂(ω)`` for every frequency, shape ``(F, C_out, C_in)``, and its entrywise error bound."""
    k = kernel.shape[2]
    off = np.arange(k) - p
    q = (freqs[:, 0, None, None] * off[None, :, None] + freqs[:, 1, None, None] * off[None, None, :]) % T
    phase = np.exp(1j * (2.0 * np.pi / T) * q)  # (F, k, k)
    Khat = np.einsum("ocab,fab->foc", kernel, phase)
    err = (32 + 2 * (k * k + 4)) * EPS * np.sum(np.abs(kernel), axis=(2, 3))
    return Khat, np.broadcast_to(err, Khat.shape)


def lipsdp_conv_bound(
    weights: Sequence,
    *,
    time_limit: float | None = None,
    rtol: float = 1e-7,
    max_memory_bytes: float = 8e9,
    specs: list[ConvSpec] | None = None,
) -> Certificate:
    """Certified LipSDP bound (per-channel multipliers) on the ℓ2→ℓ2 constant of a ReLU chain of
    stride-1 same-padding convolutions ``x ↦ K_{L+1} σ(⋯ σ(K_1 x))`` stored as sparse matrices."""
    t0 = time.perf_counter()
    specs = specs if specs is not None else conv_chain_specs(weights)
    if specs is None:
        raise LipoptError("lipsdp (Fourier route): every layer must be a stride-1 same-padding convolution")
    T = specs[0].height + max(s.padding for s in specs)
    Tw = specs[0].width + max(s.padding for s in specs)
    if T != Tw:
        raise LipoptError("lipsdp (Fourier route) supports square maps only")
    freqs = _frequencies(T)
    scales, hats, errs = [], [], []
    for s in specs:
        kh, _ = _fourier(s.kernel, s.padding, freqs, T)
        norm = max(float(np.max(np.linalg.norm(kh, ord=2, axis=(1, 2)))), 1e-300)
        f = 2.0 ** round(math.log2(norm))
        kh, er = _fourier(s.kernel / f, s.padding, freqs, T)
        scales.append(f)
        hats.append(kh)
        errs.append(er)
    sizes = [k.shape[1] for k in hats[:-1]]
    n0, N = hats[0].shape[2], sum(sizes)
    m = n0 + N
    blocks, r, c = [], 0, 0
    for k in hats[:-1]:
        blocks.append((r, c, k))
        r, c = r + k.shape[1], c + k.shape[2]
    C = np.zeros((len(freqs), hats[-1].shape[1], m), dtype=complex)
    C[:, :, m - sizes[-1] :] = hats[-1]
    data = LMIData(BlockRows(blocks, N, m), C, n0, np.zeros(N), np.ones(N), np.arange(N), N, sizes)
    if data.memory_bytes() > max_memory_bytes:
        raise LipoptError(
            f"lipsdp (Fourier route) would need about {data.memory_bytes() / 1e9:.1f} GB; raise --max-memory"
        )
    with blas_threads(1):
        rho, t, info = solve_lmi(data, rtol=rtol, time_limit=time_limit)
        t_solve = time.perf_counter() - t0
        per_layer = np.split(t, np.cumsum(sizes)[:-1])
        lo = [np.zeros(n) for n in sizes]
        hi = [np.ones(n) for n in sizes]
        rho_c, why = rho, ""
        for f in range(len(freqs)):
            check = certify_chain(
                [h[f] for h in hats], lo, hi, per_layer, rho_c, weight_error=[e[f] for e in errs]
            )
            if not check.certified:
                why = f"frequency {tuple(freqs[f])}: {check.why}"
                break
            rho_c = max(rho_c, check.rho)
    scale = float(np.prod(scales))
    solver_value = scale * math.sqrt(max(rho, 0.0))
    details = {
        "iterations": float(info.iterations),
        "frequencies": float(len(freqs)),
        "torus": float(T),
        "gap": float(info.gap_estimate),
        "solve_time_s": t_solve,
        "certify_time_s": time.perf_counter() - t0 - t_solve,
        "status": info.status,
    }
    if why:
        return Certificate(math.inf, False, KIND, solver_value, math.inf, {**details, "why": why})
    value = round_up(scale * round_up(math.sqrt(rho_c), 1), 1)
    return Certificate(value, True, KIND, solver_value, value - solver_value, details)
