"""The solver-backend layer (see :mod:`lipopt.solvers.base`): HiGHS (:mod:`.highs`), the mixing
method (:mod:`.mixing`) and its Lagrangian Shor + SA variant (:mod:`.lagrangian`), and one cvxpy
adapter for every conic route (:mod:`.conic`), all returning :class:`~lipopt.solvers.base.Outcome`
and chosen from one table by the program's shape."""

from .base import Limits, LinearProgram, Outcome, Shape, ShorProgram, backends, register_backend, solve

__all__ = ["Limits", "LinearProgram", "Outcome", "Shape", "ShorProgram", "backends", "register_backend",
           "solve"]
