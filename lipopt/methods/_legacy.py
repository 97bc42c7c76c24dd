"""Conversion of the pre-registry result rows (:func:`lipopt.bounds._lipsdp_bound`, used by the
``conic`` route of :mod:`lipopt.methods.lipsdp`) to :class:`~lipopt.results.BoundResult`."""

from __future__ import annotations

from ..results import BoundResult, Size, Status, Timings

_SIZE_KEYS = {
    "cols": "variables",
    "rows": "constraints",
    "nnz": "nonzeros",
    "cliques": "cliques",
    "max_clique": "largest_clique",
    "n_cliques": "psd_blocks",
    "neurons": "neurons",
    "pops": "pops",
    "solves": "solves",
    "est_peak_bytes": "memory_bytes",
}


def _status(text: str, certified: bool) -> Status:
    try:
        return Status(text.split(":")[0])
    except ValueError:  # solver-specific words ("unknown", …)
        return Status.INACCURATE if certified else Status.ERROR


def _convert(old, level: int | None) -> BoundResult:
    size = {
        new: int(old.size[k]) for k, new in _SIZE_KEYS.items() if isinstance(old.size.get(k), int | float)
    }
    return BoundResult(
        old.method,
        level,
        old.value,
        old.certified,
        _status(str(old.status), bool(old.certified)),
        Timings(old.time_s, old.build_time_s or 0.0, old.solve_time_s or 0.0),
        Size(**size),
        old.solver,
        old.solver_value,
        old.note,
    )
