"""The built-in bound methods; importing this package registers them (see :mod:`lipopt.registry`).

One module per family: :mod:`.baselines` (norm products, the lower-bound search), :mod:`.deep`
(the lifted LP, the branch and bound and the exact MILP for deep networks).
"""

from . import baselines, deep  # noqa: F401
