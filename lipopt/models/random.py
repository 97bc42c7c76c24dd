"""Random networks: PyTorch-identical default initialisation, numpy initialisations, band masks.

:func:`certdnn_network` regenerates the one-hidden-layer networks of CertDNN (Chen et al.,
"Semialgebraic optimization for Lipschitz constants of ReLU networks", NeurIPS 2020) whose
published bounds are in ``shared/external/certdnn_1hidden_results.csv``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import LipoptError
from ..network import Activation, Network

__all__ = ["INITS", "band_mask", "certdnn_network", "random_network"]

INITS = ("torch", "uniform", "normal")


def band_mask(rows: int, cols: int, band: int) -> np.ndarray:
    """0/1 mask of a band matrix: entry ``(i, j)`` is kept iff ``|i − j| ≤ (band − 1) / 2``.

    ``band`` is CertDNN's ``sparsity`` parameter. With integer ``|i − j|`` the condition equals
    ``|i − j| ≤ (band − 1) // 2``, so an even ``band`` keeps as many diagonals as ``band − 1``
    (``band = 4``: the main diagonal and one on each side).
    """
    if int(band) != band or band < 1:
        raise LipoptError(f"band must be a positive integer, got {band}")
    i, j = np.indices((rows, cols))
    return (np.abs(i - j) <= (band - 1) / 2).astype(float)


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = [int(n) for n in sizes]
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise LipoptError(f"sizes must list at least two positive layer widths [n0, n1, …, out], got {sizes}")
    return sizes


def _torch_weights(
    sizes: list[int], seed: int, bias: bool
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Weights of ``nn.Linear`` layers created in order after seeding numpy and torch."""
    try:
        import torch
    except ImportError:
        return None
    np_state = np.random.get_state()
    weights, biases = [], []
    try:  # seed as the recipe says, but leave the caller's global random state untouched
        with torch.random.fork_rng(devices=[]):
            np.random.seed(seed)
            torch.manual_seed(seed)
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
                lin = torch.nn.Linear(n_in, n_out, bias=bias, dtype=torch.float32)
                weights.append(lin.weight.detach().double().numpy().copy())
                biases.append(lin.bias.detach().double().numpy().copy() if bias else np.zeros(n_out))
    finally:
        np.random.set_state(np_state)
    return weights, biases


def random_network(
    sizes: Sequence[int],
    *,
    band: int | None = None,
    seed: int = 0,
    init: str = "torch",
    activation: str | Activation = "relu",
    bias: bool = True,
) -> Network:
    """A random fully connected network with widths ``sizes = [n0, n1, …, out]``.

    Args:
        sizes: layer widths, input first, output last.
        band: if given, every hidden layer's weight (all layers but the last, which must then be
            square) is multiplied by :func:`band_mask` ``(n, n, band)`` after initialisation, so
            the random stream is the same as without the mask.
        seed: random seed.
        init: ``"torch"`` — PyTorch's default ``nn.Linear`` initialisation, bit for bit:
            ``np.random.seed(seed); torch.manual_seed(seed)``, then the ``nn.Linear`` layers are
            created in order (weights and biases ``U(−1/√fan_in, 1/√fan_in)``); the global
            numpy and torch random states are restored afterwards. Without torch it
            falls back to ``"uniform"`` (same distribution, different numbers) with a warning.
            ``"uniform"`` — that distribution with numpy's ``default_rng(seed)``, no torch.
            ``"normal"`` — He initialisation, weights and biases ``N(0, 2/fan_in)``.
        activation: hidden activation (name or :class:`Activation`).
        bias: draw biases (``False``: zero biases; with ``init="torch"`` the layers are created
            with ``bias=False``, which changes the random stream).
    """
    sizes = _check_sizes(sizes)
    if init not in INITS:
        raise LipoptError(f"unknown init {init!r}; supported: {', '.join(INITS)}")
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    if band is not None:
        for l, (n_in, n_out) in enumerate(pairs[:-1]):
            if n_in != n_out:
                raise LipoptError(f"band needs square hidden weights, but layer {l} is {n_out} × {n_in}")
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    drawn = _torch_weights(sizes, seed, bias) if init == "torch" else None
    if init == "torch" and drawn is None:
        warnings.warn(
            "torch is not installed: init='torch' falls back to init='uniform' (same "
            "distribution, different numbers)",
            RuntimeWarning,
            stacklevel=2,
        )
    if drawn is not None:
        weights, biases = drawn
    else:
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for n_in, n_out in pairs:
            if init == "normal":
                std = np.sqrt(2.0 / n_in)
                weights.append(rng.normal(0.0, std, size=(n_out, n_in)))
                biases.append(rng.normal(0.0, std, size=n_out) if bias else np.zeros(n_out))
            else:
                lim = 1.0 / np.sqrt(n_in)
                weights.append(rng.uniform(-lim, lim, size=(n_out, n_in)))
                biases.append(rng.uniform(-lim, lim, size=n_out) if bias else np.zeros(n_out))
    if band is not None:
        for l in range(len(weights) - 1):
            weights[l] = weights[l] * band_mask(*weights[l].shape, band)
    name = f"random_{'-'.join(map(str, sizes))}_{init}_seed{seed}"
    if band is not None:
        name += f"_band{band}"
    return Network.from_weights(weights, biases, activation=activation, name=name)


def certdnn_network(n: int, sparsity: int, seed: int) -> Network:
    """CertDNN's one-hidden-layer network ``n-n-1`` for a ``sparsity`` (band) and ``seed``.

    The recipe of ``shared/external/README.md``: ``np.random.seed(seed);
    torch.manual_seed(seed)``, then ``nn.Linear(n, n)``, ReLU, ``nn.Linear(n, 1)`` with PyTorch's
    default initialisation and biases, and the first weight multiplied by the band mask
    ``|row − col| ≤ (sparsity − 1) / 2``. Requires torch.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise LipoptError("certdnn_network requires the 'torch' extra: pip install lipopt[torch]") from None
    net = random_network([n, n, 1], band=sparsity, seed=seed, init="torch")
    return Network(net.layers, name=f"certdnn_{n}-{n}-1_s{sparsity}_seed{seed}")
