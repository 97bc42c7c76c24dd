"""Relaxation hierarchies as plain, solver-neutral sparse data.

* :mod:`lipopt.hierarchy.lp` — Sherali–Adams (and box Krivine/Handelman) LP relaxations of a
  binary polynomial optimization problem on the cliques of a chordal extension.

Data flows one way: :mod:`lipopt.graph` (cliques) → here → :mod:`lipopt.solvers`.
"""

from .lp import BASES, LPRelaxation, build_lp, default_project, estimate_lp_size

__all__ = ["BASES", "LPRelaxation", "build_lp", "default_project", "estimate_lp_size"]
