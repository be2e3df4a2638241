"""What-if removal (``aifactory.scheduler.snapshot``): undone unless kept, even when an
exception interrupts it midway, and preemption's search leaves nothing changed when it
fails or raises (issue #15 §2)."""

from __future__ import annotations

from typing import Any

import pytest

import aifactory
from aifactory.scheduler import power
from aifactory.scheduler.scheduler import Scheduler
from aifactory.scheduler.seat import Seat
from aifactory.scheduler.snapshot import WhatIf
from builders import check_invariants, hgx_topo, make_job, tenant


def state_of(sched: Scheduler) -> dict[str, Any]:
    """Everything a removal touches: free GPUs per node and class, quota per cell, usage,
    the running lists (by identity and place) and each running job's placement."""
    cs, running = sched.cs, sched.running
    return {
        "node_free": list(cs.node_free),
        "class_free": list(cs.class_free),
        "quota": [[cell.used for cell in row] for row in sched.quota.cells],
        "usage": [list(row) for row in sched.usage.running],
        "count": running.count,
        # (the lists' order is not state: every order read from them is total)
        "by_tc": [[sorted(s.job.id for s in bag) for bag in row] for row in running.by_tc],
        "rpos_ok": all(bag[s.rpos] is s for row in running.by_tc for bag in row for s in bag),
        "placement": {j.id: list(j.placement) for j in sched.running_jobs()},
        # (read through the accessor: the counts are built on a first read, PRIORITIES)
        "prio": [
            [dict(running.prios_tc(t, c)) for c in range(len(row))]
            for t, row in enumerate(running.prio_tc)
        ],
    }


def busy() -> tuple[Scheduler, list[Seat]]:
    """Three one-node jobs and a two-node gang filling five HGX nodes (their seats)."""
    topo = hgx_topo(5, [tenant("a", {"h100": 40})])
    sched = Scheduler(topo)
    jobs = [make_job(f"j{i}", gpus=8) for i in range(3)] + [make_job("gang", gpus=16)]
    for job in jobs:
        assert sched.submit(job, 0.0) is None
    res = sched.schedule(0.0)
    assert len(res.started) == 4
    seats = [sched.seat_of(job) for job in jobs]
    return sched, [s for s in seats if s is not None]


def test_removals_are_undone_at_the_end_of_the_block() -> None:
    sched, jobs = busy()
    before = state_of(sched)
    with WhatIf(sched.running, 5.0) as what_if:
        what_if.remove(jobs[0])
        what_if.remove(jobs[3])
        assert sched.cs.class_free[0] == 8 + 16  # their GPUs are free for real meanwhile
    assert state_of(sched) == before
    check_invariants(sched)


def test_an_exception_midway_leaves_the_state_unchanged() -> None:
    sched, jobs = busy()
    before = state_of(sched)
    not_running = Seat(make_job("never-started", gpus=8), len(sched.seats), 0)
    what_if = WhatIf(sched.running, 5.0)
    with (  # noqa: PT012 (the block is the what-if under test)
        pytest.raises(AssertionError, match="not among its class's running jobs"),
        what_if,
    ):
        what_if.remove(jobs[1])
        what_if.remove(jobs[3])
        what_if.remove(not_running)  # raises inside Running.detach
    assert state_of(sched) == before
    check_invariants(sched)


def test_kept_removals_stay_detached_and_put_back_undoes_one() -> None:
    sched, jobs = busy()
    with WhatIf(sched.running, 5.0) as what_if:
        what_if.remove(jobs[0])
        what_if.remove(jobs[1])
        what_if.put_back(jobs[0])
        kept = what_if.keep()
    assert kept == [jobs[1]]
    assert sched.running.count == 3
    assert jobs[1].rpos == -1
    assert jobs[0].rpos >= 0
    assert sched.cs.class_free[0] == 8  # the fleet was full: the kept job's node is free


def _preempting_scheduler() -> tuple[Scheduler, Seat]:
    """A fleet full of low-priority work and a high-priority gang that needs victims."""
    topo = hgx_topo(3, [tenant("a", {"h100": 24})])
    sched = Scheduler(topo)
    for i in range(3):
        assert sched.submit(make_job(f"low{i}", gpus=8, priority=-100), 0.0) is None
    assert len(sched.schedule(0.0).started) == 3
    high = make_job("high", submit=10.0, gpus=16, priority=100)
    assert sched.submit(high, 10.0) is None
    seat = sched.seat_of(high)
    assert seat is not None
    return sched, seat


@pytest.mark.skipif(
    aifactory.BUILD == "compiled",
    reason="the fault is planted by replacing a module global, which compiled code binds at "
    "build time; the pure-Python pass of `make test` runs it",
)
def test_a_preemption_search_that_raises_midway_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sched, high = _preempting_scheduler()
    before = state_of(sched)
    real = power.find_placement  # (preemption places through scheduler/power.py)
    running_at_fault: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        running_at_fault.append(sched.running.count)
        raise RuntimeError("planted fault in the placement search")

    monkeypatch.setattr(power, "find_placement", failing)
    with pytest.raises(RuntimeError, match="planted fault"):
        sched.preemption.search(high, 0, 10.0, {})
    assert running_at_fault
    assert running_at_fault[0] < 3  # it raised with victims removed
    assert state_of(sched) == before
    check_invariants(sched)
    monkeypatch.setattr(power, "find_placement", real)
    # And the same search, unfaulted, succeeds with the victims left detached.
    chosen = sched.preemption.search(high, 0, 10.0, {})
    assert chosen is not None
    assert len(chosen) == 2


def test_a_failed_preemption_search_changes_nothing() -> None:
    sched, _high = _preempting_scheduler()
    before = state_of(sched)
    job = make_job("too-big", submit=10.0, gpus=24, priority=100)
    too_big = Seat(job, len(sched.seats), 0)
    # Enough GPUs by count, but one of the low jobs is the one too_big was evicted for.
    job.preempted_for = frozenset({"low0"})
    assert sched.preemption.search(too_big, 0, 10.0, {}) is None
    assert state_of(sched) == before
