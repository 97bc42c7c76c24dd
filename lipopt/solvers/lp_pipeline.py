"""Legacy keyword API of the LP pipeline for the old chain (``bounds.bound_chain``), the CLI and the
sweep until they run on the method registry — delete with them. New code:
:func:`lipopt.methods.pop.lp_bound` with :class:`~lipopt.methods.pop.LPOptions`."""

from __future__ import annotations

from ..methods.pop import LPOptions, PartBound
from ..methods.pop import lp_bound as _lp_bound


def lp_bound(
    pop, level: int, *, clique_method: str = "min-degree", sparse: bool = True, basis: str = "sherali-adams",
    time_limit: float | None = None, max_bytes: float = 4e9, method: str = "auto", threads: int | None = None,
    verbose: bool = False, project: bool | None = None,
) -> PartBound:
    """``method`` is the HiGHS algorithm; ``sparse=False`` means ``clique_method="dense"``."""
    options = LPOptions(method, threads, basis, project, clique_method if sparse else "dense", verbose)
    return _lp_bound(pop, level, options, time_limit=time_limit, max_bytes=max_bytes)
