"""Legacy keyword API of the SDP pipeline for the old chain (``bounds.bound_chain``) and the sweep
until they run on the method registry — delete with them. New code:
:func:`lipopt.methods.pop.sdp_bound` with :class:`~lipopt.methods.pop.SDPOptions`."""

from __future__ import annotations

import math
from dataclasses import replace

from ..errors import LipoptError
from ..hierarchy.sdp import DEFAULT_MAX_BLOCK
from ..methods.pop import PartBound, SDPOptions, _route, _unpack
from ..methods.pop import sdp_bound as _sdp_bound


def sdp_bound(
    pop, degree: int = 1, *, with_lp: bool = False, time_limit: float | None = None,
    solver: str | None = None, shor_solver: str = "auto", lp_solver: str = "auto",
    lagrangian_rounds: int = 50, clique_method: str = "auto",
    lp_level: int | None = None, psd_order: int = 1, max_block: int = DEFAULT_MAX_BLOCK,
    max_bytes: float | None = None, max_iter: int | None = None, tol: float = 1e-7, seed: int = 0,
    verbose: bool = False,
) -> PartBound:
    """``degree``: the moment order, or with ``with_lp`` the SA level ``max(degree, 2, deg p)``
    (``lp_level`` overrides it); ``solver`` names the conic solver of the moment route, which
    ``shor_solver="conic"`` forces for order-1 quadratic POPs; ``lp_solver`` is ``sa_solver``."""
    if shor_solver not in ("auto", "mixing", "conic"):
        raise LipoptError(f"unknown shor_solver {shor_solver!r}; choose auto, mixing or conic")
    if lp_solver not in ("auto", "conic", "lagrangian"):
        raise LipoptError(f"unknown lp_solver {lp_solver!r}; choose auto, conic or lagrangian")
    if int(degree) != degree or degree < 1:
        raise LipoptError(f"the SDP order must be a positive integer, got {degree!r}")
    poly = _unpack(pop)[0].reduce_binary()
    level = (int(lp_level) if lp_level is not None else max(2, poly.degree, int(degree))) if with_lp else None
    order = int(psd_order) if with_lp else max(int(degree), math.ceil(poly.degree / 2))
    options = SDPOptions("auto", clique_method, psd_order, lp_solver, lagrangian_rounds, max_block, max_iter,
                         tol, verbose)
    if shor_solver == "conic" or (solver and _route(poly, order, level, options) != "shor"):
        options = replace(options, solver=solver or "conic")
    return _sdp_bound(pop, order if with_lp else degree, options, sa_level=level, time_limit=time_limit,
                      max_bytes=max_bytes, seed=seed)
