"""Job rows as the scheduler loop reads and writes them: the cycle's statements, a row as
the scheduler's :class:`Job`, and the transitions (end, requeue) with their events and the
freeing of GPU allocation rows, each inside the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, delete, insert, select, update

from aifactory.service.executors.base import RunState, Status
from aifactory.service.schemas import PRIORITY_VALUE, PriorityClass
from aifactory.service.tables import allocations, cancel_requests, job_events, jobs
from aifactory.workload.job import Job, JobState

PlacementList = list[tuple[str, tuple[int, ...]]]

# The statements of every cycle, built once (building a Core statement costs more than
# running a cached one).
# Only what a pending job is admitted with (``to_job`` and ``Tracked``): not its
# placement, log path or handle, which a pending job does not have.
PENDING_ABOVE = (
    select(
        jobs.c.id,
        jobs.c.tenant,
        jobs.c.submitted_at,
        jobs.c.gpus,
        jobs.c.time_limit_s,
        jobs.c.gpu_class,
        jobs.c.priority_class,
        jobs.c.preemptible,
        jobs.c.checkpoint_interval_s,
        jobs.c.command,
        jobs.c.attempts,
    )
    .where(jobs.c.state == JobState.PENDING.value, jobs.c.id > bindparam("floor"))
    .order_by(jobs.c.id)
)
CANCEL_REQUESTS = select(cancel_requests.c.job_id)
STILL_PENDING = select(jobs.c.id).where(
    jobs.c.id.in_(bindparam("ids", expanding=True)), jobs.c.state == JobState.PENDING.value
)
START_ONE = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_id"), jobs.c.state == JobState.PENDING.value)
    .values(
        state=JobState.RUNNING.value,
        started_at=bindparam("b_now"),
        placement=bindparam("b_placement"),
        executor=bindparam("b_executor"),
        handle=None,
        log_path=bindparam("b_log_path"),
        attempts=jobs.c.attempts + 1,
    )
)
SET_HANDLE = update(jobs).where(jobs.c.id == bindparam("b_id")).values(handle=bindparam("b_handle"))


def live_jobs(conn: Connection) -> list[RowMapping]:
    """Pending and running jobs, oldest first: what a scheduler is rebuilt from."""
    return list(
        conn.execute(
            select(jobs)
            .where(jobs.c.state.in_([JobState.PENDING.value, JobState.RUNNING.value]))
            .order_by(jobs.c.id)
        ).mappings()
    )


def to_job(row: RowMapping) -> Job:
    """The scheduler's view of a job row; the time limit is also the runtime estimate."""
    return Job(
        str(row["id"]),
        row["tenant"],
        submit_s=row["submitted_at"],
        gpus=row["gpus"],
        duration_s=row["time_limit_s"],
        estimate_s=row["time_limit_s"],
        gpu_class=row["gpu_class"],
        priority=PRIORITY_VALUE[PriorityClass(row["priority_class"])],
        preemptible=bool(row["preemptible"]),
        checkpoint_s=row["checkpoint_interval_s"],
    )


def placement_from_row(raw: Any) -> PlacementList:
    """Placement as stored (JSON lists) back to the scheduler's tuples."""
    return [(str(p[0]), tuple(int(g) for g in p[1])) for p in (raw or [])]


def describe(placement: PlacementList) -> str:
    return ";".join(f"{node}:{','.join(str(g) for g in gpus)}" for node, gpus in placement)


def terminal(status: Status) -> JobState:
    if status.state is RunState.COMPLETED:
        return JobState.COMPLETED
    if status.state is RunState.CANCELLED:
        return JobState.CANCELLED
    return JobState.FAILED


def end_row(
    conn: Connection,
    job_id: int,
    state: JobState,
    now: float,
    status: Status | None,
    *,
    reason: str | None = None,
    expect: JobState = JobState.RUNNING,
) -> None:
    """Move a job to a terminal state, free its GPUs, record the event.

    A failure always says why: the given reason, the backend's detail, or its exit code.
    """
    if reason is None and status is not None and status.detail:
        reason = status.detail
    if reason is None and state is JobState.FAILED:
        code = status.exit_code if status is not None else None
        reason = f"exited with status {code}" if code is not None else "failed"
    detail = reason or state.value
    done = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == expect.value)
        .values(
            state=state.value,
            ended_at=now,
            exit_code=status.exit_code if status is not None else None,
            reason=reason,
        )
    ).rowcount
    if done:
        conn.execute(
            insert(job_events).values(job_id=job_id, at=now, state=state.value, detail=detail)
        )
    conn.execute(delete(allocations).where(allocations.c.job_id == job_id))


def requeue_row(
    conn: Connection, job_id: int, now: float, why: str, *, preempted: bool = False
) -> None:
    """Running -> preempted -> pending (the transition table has no shortcut), GPUs freed."""
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            state=JobState.PENDING.value,
            handle=None,
            placement=None,
            started_at=None,
            reason=why,
        )
    )
    conn.execute(
        insert(job_events),
        [
            {"job_id": job_id, "at": now, "state": JobState.PREEMPTED.value, "detail": why},
            {
                "job_id": job_id,
                "at": now,
                "state": JobState.PENDING.value,
                "detail": "requeued" if preempted else "requeued after restart",
            },
        ],
    )
    conn.execute(delete(allocations).where(allocations.c.job_id == job_id))
