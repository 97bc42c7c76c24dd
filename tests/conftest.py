"""Shared fixtures: small random networks and the external networks directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipopt.network import Network
from lipopt.progress import Progress

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "external"


def random_net(sizes: list[int], seed: int = 0, band: int | None = None, activation: str = "relu") -> Network:
    """A small random network with biases; ``band`` keeps ``|row − col| ≤ band`` in hidden layers."""
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.normal(size=(b, a)) / np.sqrt(a)
        if band is not None and i < len(sizes) - 2:
            rows, cols = np.indices(w.shape)
            w = w * (np.abs(rows - cols) <= band)
        weights.append(w)
        biases.append(0.5 * rng.normal(size=b))
    return Network.from_weights(weights, biases, activation=activation, name=f"rand{sizes}")


@pytest.fixture
def external() -> Path:
    if not EXTERNAL.is_dir():
        pytest.skip("../shared/external is not present")
    return EXTERNAL


class Recorder(Progress):
    """Every ``step`` and ``report`` call, in order."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.reports: list[tuple[str, dict]] = []

    def step(self, description: str) -> None:
        self.steps.append(description)

    def report(self, **numbers: float) -> None:
        self.reports.append((self.steps[-1] if self.steps else "", numbers))
