"""Limits bind every method: a solver that cannot be interrupted runs in a child process that is
stopped at the time limit and capped at the memory limit (``lipopt.limits``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import random_net

from lipopt.chain import bound_chain
from lipopt.registry import _REGISTRY, Method, register
from lipopt.results import BoundResult, Certificate, Status, Timings


def _stubborn_method(name: str, work) -> type[Method]:
    """A registered method whose solver ignores every limit and then certifies 1.0."""

    def run(self, ctx, level, options):
        work()
        return BoundResult.from_certificate(
            self.name, None, Certificate(1.0, True, "test"), Status.OPTIMAL, Timings()
        )

    attrs = {
        "name": name,
        "summary": "a solver that ignores every limit (a test method)",
        "interruptible": False,
        "run": run,
    }
    return register(type(f"Stubborn_{name}", (Method,), attrs))


@pytest.fixture
def stubborn():
    names = []

    def make(name, work):
        names.append(name)
        return _stubborn_method(name, work)

    yield make
    for n in names:
        _REGISTRY.pop(n, None)


def test_an_uninterruptible_step_is_stopped_at_the_time_limit(stubborn):
    stubborn("sleeper", lambda: time.sleep(60))
    net = random_net([3, 4, 1], seed=0)
    t0 = time.perf_counter()
    chain = bound_chain(net, "inf", ["naive", "sleeper"], time_limit=0.5)
    assert time.perf_counter() - t0 < 20
    row = chain.bounds[1]
    assert row.status is Status.TIME_LIMIT and not row.certified and "time limit" in row.note
    assert chain.best.method == "naive"


def test_an_uninterruptible_step_is_capped_at_the_memory_limit(stubborn):
    stubborn("hog", lambda: np.ones(int(6e9) // 8))  # 6 GB
    net = random_net([3, 4, 1], seed=0)
    chain = bound_chain(net, "inf", ["naive", "hog"], max_memory_bytes=1e9, time_limit=60)
    row = chain.bounds[1]
    assert row.status is Status.MEMORY_LIMIT and not row.certified and "memory limit" in row.note


def test_a_finished_child_returns_its_row(stubborn):
    stubborn("quick", lambda: None)
    chain = bound_chain(random_net([3, 4, 1], seed=0), "inf", ["quick"], time_limit=30)
    (row,) = chain.bounds
    assert row.status is Status.OPTIMAL and row.certified and row.value == 1.0


def test_a_childs_solvers_stop_before_the_child_is_killed():
    """A solver with a time limit of its own (SCS, Clarabel) gets a share of the step's limit in the
    child, so that it can stop and certify before the parent kills the child at the full limit."""
    from lipopt.chain import CHILD_SOLVER_SHARE

    def run(self, ctx, level, options):
        return BoundResult.from_certificate(
            self.name, None, Certificate(ctx.time_limit, True, "test"), Status.OPTIMAL, Timings()
        )

    register(type("Seer", (Method,), {"name": "seer", "summary": "reports its time limit",
                                      "interruptible": False, "run": run}))
    try:
        net = random_net([3, 4, 1], seed=0)
        (row,) = bound_chain(net, "inf", ["seer"], time_limit=30).bounds
        assert row.value == CHILD_SOLVER_SHARE * 30 < 30
        (again,) = bound_chain(net, "inf", ["seer"], time_limit=30).bounds
        assert again.value == row.value  # the parent's request is untouched
    finally:
        _REGISTRY.pop("seer", None)
