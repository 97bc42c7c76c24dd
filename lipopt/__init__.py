"""lipopt: certified upper bounds on Lipschitz constants of neural networks.

Pipeline (data flows one way): network → problem → graph → hierarchy → solvers (backends) →
certificates → methods (registered) → bounds.
"""

__version__ = "0.1.0"

from .errors import LipoptError
from .network import Activation, Dense, Network

__all__ = [
    "Activation",
    "Dense",
    "LipoptError",
    "Network",
    "bound",
    "bound_chain",
    "load_network",
    "__version__",
]


def __getattr__(name: str):
    # Heavier entry points are imported lazily so `import lipopt` stays fast.
    if name == "bound":
        from .api import bound

        return bound
    if name == "bound_chain":
        from .chain import bound_chain

        return bound_chain
    if name in ("naive_bound", "abs_product_bound", "lower_bound"):
        from . import bounds

        return getattr(bounds, name)
    if name in ("load_network", "save_npz"):
        from . import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'lipopt' has no attribute {name!r}")
