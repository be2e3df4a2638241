"""Every pending job says why it waits (issue #17 §4), the way Slurm's squeue REASON and
Kueue's admission conditions do: ``capacity`` (too few free GPUs, or no placement),
``quota`` (its tenant's quota has no room, though GPUs are free), ``reservation`` (it
would delay the EASY reservation of a job ahead of it), ``priority`` (not tried yet: jobs
ahead of it in its tenant's queue go first); and the twin counts how long each job
waited for each reason.

One HGX site of two 8-GPU servers unless a case says otherwise.
"""

from __future__ import annotations

import pytest

from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.simulator import Simulation
from builders import hgx_topo, make_job, tenant


def test_capacity_and_reservation() -> None:
    """Three servers, a's nominal 24; a runs 8 GPUs on server 0 until 100 and server 2 is
    out of service. a's 16-GPU gang fits its quota but not the 8 free GPUs ('capacity')
    and holds the reservation at 100; a's 8-GPU job that would run past 100 on the free
    server waits for that 'reservation'."""
    topo = hgx_topo(3, [tenant("a", {"h100": 24})])
    sched = Scheduler(topo)
    running = make_job("running", "a", 0.0, 8, 100.0)
    assert sched.submit(running, 0.0) is None
    assert sched.schedule(0.0).started == [running]
    down = sched.take_out_of_service(2)
    gang = make_job("gang", "a", 1.0, 16, 50.0)
    long = make_job("long", "a", 1.0, 8, 1000.0)
    for job in (gang, long):
        assert sched.submit(job, 1.0) is None
        assert sched.pending_reason(job) == "priority"  # not tried yet
    assert sched.schedule(1.0).started == []
    assert sched.pending_reason(gang) == "capacity"
    assert sched.pending_reason(long) == "reservation"
    assert sched.pending_reason(running) is None  # running: no reason
    sched.finish(running, 100.0)
    assert sched.schedule(100.0).started == [gang]
    assert sched.pending_reason(gang) is None
    waits = sched.wait_times(120.0)
    assert waits["gang"] == {"capacity": 99.0}  # 1..100 ('priority' for 0 s)
    assert "running" not in waits  # it never waited
    sched.return_to_service(2, down)


def test_quota_while_gpus_are_free() -> None:
    topo = hgx_topo(2, [tenant("a", {"h100": 8}), tenant("b", {"h100": 8})])
    sched = Scheduler(topo)
    first, second = make_job("first", "a", 0.0, 8, 100.0), make_job("second", "a", 0.0, 8, 1.0)
    sched.submit(first, 0.0)
    sched.submit(second, 0.0)
    assert sched.schedule(0.0).started == [first]
    assert sched.pending_reason(second) == "quota"  # b's 8 GPUs are idle
    assert sched.wait_times(40.0)["second"] == {"quota": 40.0}


def test_a_job_behind_a_blocked_head_waits_for_priority_in_strict_order() -> None:
    topo = hgx_topo(2)
    sched = Scheduler(topo, SchedulerConfig(backfill=BackfillMode.NONE))
    first = make_job("first", "a", 0.0, 16, 100.0)
    assert sched.submit(first, 0.0) is None
    sched.schedule(0.0)
    head = make_job("head", "a", 1.0, 16, 10.0)
    behind = make_job("behind", "a", 2.0, 8, 10.0)
    sched.submit(head, 1.0)
    sched.schedule(1.0)
    sched.submit(behind, 2.0)
    sched.schedule(2.0)
    assert sched.pending_reason(head) == "quota"  # (first holds all of a's 16)
    assert sched.pending_reason(behind) == "priority"
    assert sched.wait_times(10.0)["behind"] == {"priority": 8.0}


def test_cancelling_a_pending_job_closes_its_wait() -> None:
    topo = hgx_topo(1)
    sched = Scheduler(topo)
    hog = make_job("hog", "a", 0.0, 8, 100.0)
    sched.submit(hog, 0.0)
    sched.schedule(0.0)
    waiter = make_job("waiter", "a", 0.0, 8, 10.0)
    sched.submit(waiter, 0.0)
    sched.schedule(0.0)
    sched.cancel(waiter, 30.0)
    assert sched.pending_reason(waiter) is None
    # (a's quota is the fleet: with both full, the quota binds first)
    assert sched.wait_times(500.0)["waiter"] == {"quota": 30.0}


def test_an_ended_jobs_seat_is_freed_and_its_waits_still_count() -> None:
    """A job's seat is freed when it ends (cancelled, or finished); the queue row a
    cancelled job leaves names the dead seat and is skipped, and what each waited is still
    reported, in the order the scheduler took them."""
    sched = Scheduler(hgx_topo(1))
    hog = make_job("hog", "a", 0.0, 8, 100.0)
    waiter = make_job("waiter", "a", 0.0, 8, 10.0)
    later = make_job("later", "a", 0.0, 8, 10.0)
    for job in (hog, waiter, later):
        sched.submit(job, 0.0)
    assert sched.schedule(0.0).started == [hog]
    sched.cancel(waiter, 30.0)  # its row stays queued, stale
    sched.finish(hog, 100.0)
    assert sched.schedule(100.0).started == [later]
    sched.finish(later, 110.0)
    assert [seat.index for seat in sched.seats] == [-1, -1, -1]
    waits = sched.wait_times(500.0)
    assert list(waits) == ["waiter", "later"]
    assert waits["waiter"] == {"quota": 30.0}
    assert sum(waits["later"].values()) == 100.0


def test_the_twin_reports_time_per_reason_per_job_and_tenant() -> None:
    """Four 8-GPU jobs of 100 s on one server, all at 0: each waits in turn (0, 100, 200,
    300 s), for a's quota (its nominal is the server), and the jobs table and summary
    say so."""
    topo = hgx_topo(1)
    jobs = [make_job(f"j{i}", "a", 0.0, 8, 100.0) for i in range(4)]
    result = Simulation(topo, jobs).run()
    from aifactory.twin.results import jobs_table, summarize  # noqa: PLC0415

    table = jobs_table(result).to_pydict()
    assert table["wait_quota_s"] == pytest.approx([0.0, 100.0, 200.0, 300.0])
    assert table["wait_capacity_s"] == [0.0] * 4
    assert table["pending_reason"] == [None] * 4
    summary = summarize(result, fleet="tiny", trace="t", policy="fifo", backfill="easy", seed=0)
    waits = summary["per_tenant"]["a"]["wait_hours_by_reason"]
    assert waits["quota"] == pytest.approx(600.0 / 3600.0)
    assert waits["priority"] == 0.0
