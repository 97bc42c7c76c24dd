"""The built-in bound methods; importing this package registers them (see :mod:`lipopt.registry`).

One module per family: :mod:`.baselines` (norm products), :mod:`.pop` (the polynomial
relaxations ``lp``, ``sdp``, ``sdp+lp``), :mod:`.ball` (``sdp-ball``), :mod:`.exact` (``exact-pop``).
"""

from . import ball, baselines, exact, pop  # noqa: F401  (registration order = listing order)
