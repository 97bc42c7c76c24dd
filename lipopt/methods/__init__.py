"""The built-in bound methods; importing this package registers them (see :mod:`lipopt.registry`).

One module per family: :mod:`.baselines` (norm products, the lower-bound search).
"""

from . import baselines, lipsdp  # noqa: F401
