"""Model zoo: random and reference networks."""

from .random import INITS, band_mask, certdnn_network, random_network

__all__ = ["INITS", "band_mask", "certdnn_network", "random_network"]
