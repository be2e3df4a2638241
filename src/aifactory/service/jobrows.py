"""Job rows as the scheduler loop reads and writes them: the cycle's statements, a row as
the scheduler's :class:`Job` (and live rows as a scheduler), a cycle's decisions written
as rows, and the transitions (end, requeue) with their events and the freeing of GPU
allocation rows, each inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    RowMapping,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    select,
    update,
)

from aifactory.scheduler.scheduler import Scheduler
from aifactory.service import bulk_pg
from aifactory.service.executors.base import NodeSlice, RunState, Status, describe_nodes
from aifactory.service.schemas import PRIORITY_VALUE, PriorityClass
from aifactory.service.tables import allocations, cancel_requests, charges, job_events, jobs
from aifactory.workload.job import Job, JobState

PlacementList = list[tuple[str, tuple[int, ...]]]

#: The columns :func:`to_job` reads: what a job is admitted to a scheduler with.
TO_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.tenant,
    jobs.c.submitted_at,
    jobs.c.gpus,
    jobs.c.time_limit_s,
    jobs.c.gpu_class,
    jobs.c.priority_class,
    jobs.c.preemptible,
    jobs.c.checkpoint_interval_s,
    jobs.c.gpu_classes,
    jobs.c.hbm_gb_per_gpu,
    jobs.c.service,
    jobs.c.preempt_grace_s,
    jobs.c.data_ask,
)

# The statements of every cycle, built once (building a Core statement costs more than
# running a cached one).
# Only what a pending job is admitted with (``to_job`` and ``Tracked``): not its
# placement, log path or handle, which a pending job does not have.
PENDING_ABOVE = (
    select(*TO_JOB_COLUMNS, jobs.c.command, jobs.c.attempts, jobs.c.project_id, jobs.c.reason)
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
# The charge of a run interval that ends now (issue #19): one row per (job, attempt), from
# the row's recorded start to ``b_end``, written only while the row is still running and
# in the transaction that ends the interval, so that the charge and the end commit (or
# are lost to a crash) together; the NOT EXISTS and the unique key make a replay a no-op.
# Jobs of no project (or of no class) are not charged.
CHARGE_INTERVAL = insert(charges).from_select(
    ["job_id", "attempt", "project_id", "gpu_class", "gpus", "start_s", "end_s"],
    select(
        jobs.c.id,
        jobs.c.attempts,
        jobs.c.project_id,
        jobs.c.gpu_class,
        jobs.c.gpus,
        jobs.c.started_at,
        bindparam("b_end", type_=jobs.c.started_at.type),
    ).where(
        jobs.c.id == bindparam("b_id"),
        jobs.c.state == JobState.RUNNING.value,
        jobs.c.project_id.is_not(None),
        jobs.c.gpu_class.is_not(None),
        jobs.c.started_at.is_not(None),
        ~exists().where(and_(charges.c.job_id == jobs.c.id, charges.c.attempt == jobs.c.attempts)),
    ),
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


def to_job(row: Mapping[Any, Any]) -> Job:
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
        gpu_classes=_class_names(row["gpu_classes"]),
        hbm_gb_per_gpu=None if row["hbm_gb_per_gpu"] is None else float(row["hbm_gb_per_gpu"]),
        service=bool(row["service"]),
        preempt_grace_s=None if row["preempt_grace_s"] is None else float(row["preempt_grace_s"]),
        **_data_fields(row.get("data_ask")),
    )


def _data_fields(raw: Any) -> dict[str, Any]:
    """A row's ``data_ask`` (JSON) as the Job's keyword arguments; a value of the wrong
    shape (a row the API would refuse) raises, naming the field, so that job alone fails."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        msg = f"data_ask: must be an object (got {str(raw)[:80]!r})"
        raise ValueError(msg)
    out: dict[str, Any] = {}
    for name, kind in _DATA_KINDS.items():
        if name not in raw:
            continue
        value = raw[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number if kind is float else isinstance(value, kind)):
            msg = f"data_ask.{name}: must be a {kind.__name__} (got {str(value)[:80]!r})"
            raise ValueError(msg)
        out[name] = float(cast("float", value)) if kind is float else value
    return out


_DATA_KINDS: dict[str, type] = {
    "site": str,
    "allow_cross_site": bool,
    "dataset": str,
    "dataset_bytes": float,
    "data_site": str,
    "stage_hold": bool,
    "grad_bytes": float,
    "step_s": float,
}


def _class_names(raw: Any) -> tuple[str, ...]:
    """A row's ``gpu_classes`` (JSON) as the scheduler's tuple; a value that is not a list
    of names (a row the API would refuse) raises, naming the field, so that job alone
    fails (the loop isolates each row's admission)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        msg = f"gpu_classes: must be a list of GPU class names (got {str(raw)[:80]!r})"
        raise ValueError(msg)
    return tuple(raw)


def placement_from_row(raw: Any) -> PlacementList:
    """Placement as stored (JSON lists) back to the scheduler's tuples."""
    return [(str(p[0]), tuple(int(g) for g in p[1])) for p in (raw or [])]


def describe(placement: PlacementList) -> str:
    """A placement as the launch contract spells it (``AIFACTORY_PLACEMENT``)."""
    return describe_nodes(NodeSlice(node, gpus) for node, gpus in placement)


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
    if expect is JobState.RUNNING:
        conn.execute(CHARGE_INTERVAL, {"b_id": job_id, "b_end": now})
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
    """Running -> preempted -> pending (the transition table has no shortcut), GPUs freed;
    the run interval that ends is charged (time lost to preemption included, as Slurm does)."""
    conn.execute(CHARGE_INTERVAL, {"b_id": job_id, "b_end": now})
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


def scheduler_from_rows(
    sched: Scheduler, rows: Sequence[Mapping[Any, Any]], now: float, *, strict: bool = True
) -> tuple[Scheduler, list[tuple[int, Exception]]]:
    """``sched`` given the live ``rows``: running ones restored on their GPUs, then pending
    ones submitted in row order. ``strict``: a row the core refuses raises; otherwise it is
    left out and returned with its error (a view must not fail for one bad row)."""
    left_out: list[tuple[int, Exception]] = []
    for state in (JobState.RUNNING.value, JobState.PENDING.value):
        for row in rows:
            if row["state"] != state:
                continue
            try:
                if state == JobState.PENDING.value:
                    sched.submit(to_job(row), now)
                elif row["placement"]:
                    placement = sched.placement_from(placement_from_row(row["placement"]))
                    sched.restore_running(to_job(row), placement, row["started_at"] or now)
            except (ValueError, TypeError, KeyError) as exc:
                if strict:
                    raise
                left_out.append((int(row["id"]), exc))
    return sched, left_out


def commit_decisions(
    conn: Connection,
    started: list[Job],
    preempted: list[Job],
    placements: dict[str, PlacementList],
    now: float,
    *,
    sqlite: bool,
    executor: str,
    logs: Path,
) -> set[int]:
    """Write a cycle's preemptions and start intents in ``conn``; the ids of jobs that moved
    (a start whose job is no longer pending, cancelled meanwhile, is left out)."""
    for job in preempted:
        requeue_row(conn, int(job.id), now, "preempted by the scheduler", preempted=True)
    moved = _mark_started(
        conn, started, placements, now, sqlite=sqlite, executor=executor, logs=logs
    )
    events: list[dict[str, object]] = []
    allocs: list[dict[str, object]] = []
    for job in started:
        if int(job.id) not in moved:
            continue
        placement = placements[job.id]
        events.append(
            {
                "job_id": int(job.id),
                "at": now,
                "state": JobState.RUNNING.value,
                "detail": describe(placement),
            }
        )
        allocs.extend(
            {"node": node, "gpu": g, "job_id": int(job.id), "since": now}
            for node, gpus in placement
            for g in gpus
        )
    # One statement each for the whole cycle, in the same transaction.
    _insert_rows(conn, job_events, events, bulk_pg.insert_events, sqlite=sqlite)
    _insert_rows(conn, allocations, allocs, bulk_pg.insert_allocations, sqlite=sqlite)
    return moved


def _insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    bulk: Callable[[Connection, Sequence[dict[str, Any]]], None],
    *,
    sqlite: bool,
) -> None:
    """Insert rows in one statement: executemany on SQLite, ``bulk`` (unnest) on PostgreSQL."""
    if not rows:
        return
    if sqlite:
        conn.execute(insert(table), rows)
    else:
        bulk(conn, rows)


def _mark_started(
    conn: Connection,
    started: list[Job],
    placements: dict[str, PlacementList],
    now: float,
    *,
    sqlite: bool,
    executor: str,
    logs: Path,
) -> set[int]:
    """Move the cycle's starts from pending to running; the ids that were still pending.

    A job the API cancelled after this cycle read it is no longer pending and is left
    alone. On PostgreSQL one UPDATE over arrays does it (:mod:`.bulk_pg`); on SQLite the
    write transaction excludes other writers, so a read of which are pending and one
    executemany are as good.
    """
    if not started:
        return set()
    starts = [
        (
            int(job.id),
            [[n, list(g)] for n, g in placements[job.id]],
            str(logs / f"job-{job.id}.log"),
        )
        for job in started
    ]
    if not sqlite:
        return bulk_pg.start_jobs(conn, starts, now=now, executor=executor)
    ids = [s[0] for s in starts]
    pending = {int(r[0]) for r in conn.execute(STILL_PENDING, {"ids": ids})}
    rows = [
        {
            "b_id": job_id,
            "b_placement": placement,
            "b_log_path": log_path,
            "b_now": now,
            "b_executor": executor,
        }
        for job_id, placement, log_path in starts
        if job_id in pending
    ]
    if rows:
        conn.execute(START_ONE, rows)
    return pending
