"""The façade's results and interruptions (issue #15 §2): refusals reported in the cycle
result with their reasons, and ``interrupt(reason)`` counting what each reason is."""

from __future__ import annotations

import pytest

from aifactory.scheduler.records import Interruption
from aifactory.scheduler.scheduler import Scheduler
from aifactory.scheduler.seat import Seat
from aifactory.workload.job import JobState
from builders import hgx_topo, make_job


def test_refusals_come_with_the_next_result_and_their_reasons() -> None:
    sched = Scheduler(hgx_topo(1))
    ghost = make_job("ghost", tenant="nobody", gpus=1)
    huge = make_job("huge", gpus=64)
    ok = make_job("ok", gpus=8)
    assert sched.submit(ghost, 0.0) is not None
    assert sched.submit(huge, 0.0) is not None
    assert sched.submit(ok, 0.0) is None
    res = sched.schedule(0.0)
    assert res.started == [ok]
    assert [(j.id, why.split(":", 1)[0]) for j, why in res.rejected] == [
        ("ghost", "unknown tenant"),
        ("huge", "too big"),
    ]
    assert ghost.state is JobState.FAILED
    assert sched.schedule(1.0).rejected == []  # reported once


def test_a_refusal_alone_is_reported_without_running_a_pass() -> None:
    sched = Scheduler(hgx_topo(1))
    bad = make_job("bad", gpus=1)
    bad.priority = 2**40  # out of int32: refused at submit
    why = sched.submit(bad, 0.0)
    assert why is not None
    assert why.startswith("invalid field: priority")
    passes = sched.passes
    res = sched.schedule(0.0)
    assert res.rejected == [(bad, why)]
    assert sched.passes == passes  # nothing was due but the report


@pytest.mark.parametrize(
    ("reason", "preemptions", "failures"),
    [(Interruption.PREEMPTED, 1, 0), (Interruption.FAILED, 0, 1), (Interruption.NOT_STARTED, 0, 0)],
)
def test_interrupt_counts_what_its_reason_is(
    reason: Interruption, preemptions: int, failures: int
) -> None:
    sched = Scheduler(hgx_topo(1))
    job = make_job("j", gpus=8, run=1000.0, checkpoint_s=100.0)
    assert sched.submit(job, 0.0) is None
    assert sched.schedule(0.0).started == [job]
    overhead = job.overhead_s
    sched.interrupt(job, 250.0, reason)
    assert job.state is JobState.PENDING
    assert (job.preemptions, job.failures, sched.preemptions) == (
        preemptions,
        failures,
        preemptions,
    )
    assert sched.running_count == 0
    assert sched.busy_gpus == 0
    if reason is Interruption.NOT_STARTED:
        # never ran: no work done or lost, the same overhead on its next start
        assert job.progress_s == 0.0
        assert job.lost_preempt_gpu_s == job.lost_failure_gpu_s == 0.0
        assert job.overhead_s == overhead
    else:
        assert job.progress_s == 200.0  # the checkpoints at 100 and 200 s were kept
        assert job.lost_preempt_gpu_s + job.lost_failure_gpu_s == 50.0 * 8
    assert sched.schedule(250.0).started == [job]  # and it runs again


def test_job_carries_no_scheduler_bookkeeping() -> None:
    """A job says what it is and what happened to it; each scheduler keeps its own part
    in a Seat (issue #15): none of a Seat's fields but the request it copies is on Job,
    and a job that ended is held by its scheduler no more."""
    sched = Scheduler(hgx_topo(1))
    job = make_job("a", gpus=8)
    # The scheduler's fields that Job carried before (issue #15's list) are the seat's.
    owned = ("index", "tix", "qseq", "in_queue", "classes", "resv_epoch", "resv_mask")
    owned += ("away_version", "rpos", "run_epoch", "est_end_s", "pnode", "pmask")
    seat = Seat(job, 0, 0)
    for name in owned:
        assert hasattr(seat, name), name
        assert not hasattr(job, name), name
    assert not hasattr(job, "klass")
    assert sched.submit(job, 0.0) is None
    assert sched.schedule(0.0).started == [job]
    seat = sched.seat_of(job)
    assert seat is not None
    assert seat.job is job
    sched.finish(job, 10.0)
    assert sched.seat_of(job) is None
    with pytest.raises(AssertionError, match="not held by this scheduler"):
        sched.finish(job, 11.0)


def test_a_job_held_by_two_schedulers_is_found_by_each() -> None:
    """A job's ticket (HANDLE) serves the first scheduler that holds it; a second one
    finds its own record by id, and each frees only its own."""
    first, second = Scheduler(hgx_topo(1)), Scheduler(hgx_topo(1))
    job = make_job("shared", gpus=8)
    assert first.submit(job, 0.0) is None
    assert second.submit(job, 0.0) is None
    one, two = first.seat_of(job), second.seat_of(job)
    assert one is not None
    assert two is not None
    assert one is not two
    assert job.ticket is one
    assert second.held == {"shared": two}
    first.cancel(job, 1.0)
    assert first.seat_of(job) is None
    assert second.seat_of(job) is two  # (still held there)
