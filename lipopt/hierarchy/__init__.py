"""Relaxation hierarchies as plain, solver-neutral sparse data.

* :mod:`lipopt.hierarchy.subsets` — the moment-key codec and the Sherali–Adams row generator;
* :mod:`lipopt.hierarchy.lp` — Sherali–Adams (and box Krivine/Handelman) LP relaxations of a
  binary polynomial optimization problem on the cliques of a chordal extension;
* :mod:`lipopt.hierarchy.sdp` — moment (Lasserre) relaxations, optionally with Sherali–Adams rows;
* :mod:`lipopt.hierarchy.shor` — the ±1 Shor form of quadratic binary problems.

Data flows one way: :mod:`lipopt.graph` (cliques) → here → :mod:`lipopt.solvers` (backends).
"""

from .lp import BASES, LPRelaxation, build_lp, default_project, estimate_lp_size

__all__ = ["BASES", "LPRelaxation", "build_lp", "default_project", "estimate_lp_size"]
