"""The built-in bound methods; importing this package registers them (see :mod:`lipopt.registry`).

One module per family; the import order below is the order methods are listed in (``--help``,
tables, plots): closed-form baselines first, then relaxations, then the lower-bound search.
:mod:`.baselines` (norm products), :mod:`.pop` (``lp``, ``sdp``, ``sdp+lp``), :mod:`.ball`
(``sdp-ball``), :mod:`.exact` (``exact-pop``), :mod:`.lipsdp` (``lipsdp``), :mod:`.deep`
(``lifted``, ``bab``, ``milp``: layer-wise methods for deep networks), :mod:`.lower`.
"""
# isort: skip_file

from . import baselines  # noqa: F401
from . import pop  # noqa: F401
from . import ball  # noqa: F401
from . import exact  # noqa: F401
from . import _legacy  # noqa: F401
from . import lipsdp  # noqa: F401
from . import deep  # noqa: F401
from . import lower  # noqa: F401
