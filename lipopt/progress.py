"""Progress reporting: where a long step says what it is doing.

A :class:`Progress` receives ``step(description)`` when a step starts, ``report(**numbers)``
while it runs (a branch and bound: ``upper``, ``lower``, ``gap``, ``nodes``; an iterative solver
its ``iteration`` and a convergence figure) and ``done()`` at the end. The CLI shows a live bar on
stderr; the default, :data:`SILENT`, ignores everything.

Solvers deep in the pipeline do not take a progress argument: the chain makes the step's
:class:`Progress` *current* with :func:`reporting_to`, and a solver calls :func:`report`, which
forwards to the current one (a context variable, so threads and nested chains keep their own).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Progress:
    """Where a long step reports what it is doing (a live bar in the CLI, nothing by default).

    Implementations must be cheap: callers may report on every iteration.
    """

    def step(self, description: str) -> None:  # pragma: no cover - interface
        pass

    def report(self, **numbers: float) -> None:  # pragma: no cover - interface
        pass

    def done(self) -> None:  # pragma: no cover - interface
        pass


SILENT = Progress()

_CURRENT: ContextVar[Progress] = ContextVar("lipopt_progress", default=SILENT)


@contextmanager
def reporting_to(progress: Progress) -> Iterator[Progress]:
    """Make ``progress`` the target of :func:`report` inside the ``with`` block."""
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        _CURRENT.reset(token)


def report(**numbers: float) -> None:
    """Report figures of the running step to the current :class:`Progress` (none: ignored)."""
    _CURRENT.get().report(**numbers)
