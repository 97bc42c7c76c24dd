"""Honouring time and memory limits for steps whose solver cannot be interrupted.

Most methods stop themselves (HiGHS, the mixing method, SCS and Clarabel take a time limit, and
an early stop still certifies a looser value). Some back ends cannot be stopped from outside
(CVXOPT's interior point, a dense eigen-decomposition …). A method that declares
``interruptible = False`` is run by :func:`run_bounded` in a forked child process:

* the child's address space is capped at the memory limit (``RLIMIT_AS``), so a step that would
  exceed ``--max-memory`` fails with a ``MemoryError`` in the child instead of swapping the host;
* the parent waits at most the time limit (plus a small grace for the certificate), then kills the
  child: the row is ``time_limit`` with no value (nothing was certified before the stop).

Without ``fork`` (Windows, macOS spawn-only setups) the step runs in-process and the limits are
only those the method enforces itself.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable
from typing import Any

from .errors import LipoptError

#: seconds granted beyond the time limit before the child is killed (result transfer, exit)
GRACE_S = 2.0


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _child(conn: Any, fn: Callable[[], Any], max_bytes: float | None) -> None:
    """Run ``fn`` under the memory cap and send ``("ok", result)`` or ``("error", exc)`` back."""
    try:
        if max_bytes is not None and math.isfinite(max_bytes):
            limit = int(max_bytes)
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        result = fn()
        conn.send(("ok", result))
    except MemoryError:
        conn.send(("memory", None))
    except LipoptError as exc:
        conn.send(("lipopt", str(exc)))
    except BaseException as exc:  # re-raised in the parent with the child's traceback text
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


class StepTimeout(Exception):
    """The child was killed at the time limit."""


class StepOutOfMemory(Exception):
    """The child ran out of its memory cap."""


def run_bounded(fn: Callable[[], Any], time_limit: float | None, max_bytes: float | None) -> Any:
    """``fn()`` in a forked child limited to ``time_limit`` seconds and ``max_bytes`` of address
    space. Raises :class:`StepTimeout`, :class:`StepOutOfMemory`, :class:`LipoptError` (from the
    child), or ``RuntimeError`` with the child's traceback for any other failure.

    The memory cap counts the child's whole address space (the interpreter and the libraries
    already loaded, about a few hundred MB), so it is raised to at least the parent's current
    virtual size plus 256 MB.
    """
    if not fork_available():  # pragma: no cover - Linux CI always has fork
        return fn()
    if multiprocessing.current_process().daemon:  # already in a bounded child: its limits apply
        return fn()
    ctx = multiprocessing.get_context("fork")
    if max_bytes is not None:
        max_bytes = max(float(max_bytes), _current_vm_bytes() + 256e6)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, max_bytes), daemon=True)
    proc.start()
    child.close()
    deadline = None if time_limit is None else time.monotonic() + time_limit + GRACE_S
    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not parent.poll(remaining):
            raise StepTimeout
        kind, payload = parent.recv()
    except EOFError:  # the child died without a word (killed by the OS, a segfault …)
        proc.join(1.0)
        raise RuntimeError(f"the solver process ended unexpectedly (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        parent.close()
    if kind == "ok":
        return payload
    if kind == "memory":
        raise StepOutOfMemory
    if kind == "lipopt":
        raise LipoptError(payload)
    raise RuntimeError(payload)


def _current_vm_bytes() -> float:
    """This process's virtual memory size (Linux ``/proc``; 0 where unknown)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            pages = int(fh.read().split()[0])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return 0.0
