"""The built-in bound methods; importing this package registers them (see :mod:`lipopt.registry`).

One module per family: :mod:`.baselines` (norm products), :mod:`.pop` (the polynomial
relaxations ``lp``, ``sdp``, ``sdp+lp``), :mod:`.ball` (``sdp-ball``), :mod:`.exact` (``exact-pop``).
"""

# the registration order is the listing order (CLI choices, plots)
# isort: off
from . import baselines  # noqa: F401
from . import pop  # noqa: F401
from . import ball  # noqa: F401
from . import exact  # noqa: F401
# isort: on
