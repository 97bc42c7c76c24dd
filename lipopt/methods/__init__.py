"""The built-in bound methods; importing this package registers them (see :mod:`lipopt.registry`).

One module per family; the import order below is the order methods are listed in (``--help``,
tables, plots): closed-form baselines first, then relaxations, then the lower-bound search.
"""
# isort: skip_file

from . import baselines  # noqa: F401
from . import _legacy  # noqa: F401
from . import lower  # noqa: F401
