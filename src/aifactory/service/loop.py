"""The scheduler loop: the twin's scheduler core on a wall clock, over the database.

One replica at a time leads (see :mod:`aifactory.service.lease`). The leader loads every
pending and running job from the database into an in-memory :class:`Scheduler`,
reconciles running jobs with the executor, then cycles on submit (woken by the API), on
finish and on a periodic tick:

1. ingest: new pending jobs and cancel requests written by any replica;
2. poll: ask the executor about running jobs; enforce time limits;
3. decide: ``Scheduler.schedule(now)``;
4. commit: every preemption and start of the cycle, with the jobs' state changes and GPU
   allocation rows, in one transaction;
5. act: stop preempted jobs and start admitted ones on the executor; record handles.

A crash between 4 and 5 leaves a running job without a handle; the next leader finds it
lost and applies the lost policy (requeue or fail). Any database error drops leadership:
the in-memory state may then disagree with the database, so the next leader (maybe this
replica again) rebuilds it from the database, which is the truth.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from aifactory.fleet.topology import Topology
from aifactory.scheduler.core import BackfillMode, Scheduler, SchedulerConfig
from aifactory.service import bulk_pg
from aifactory.service.db import Database
from aifactory.service.executors.base import Executor, ExecutorError, Launch, RunState, Status
from aifactory.service.lease import LeaderLock, leader_lock
from aifactory.service.schemas import PRIORITY_VALUE, PriorityClass
from aifactory.service.settings import LostPolicy, ServiceSettings
from aifactory.service.tables import allocations, cancel_requests, job_events, jobs
from aifactory.workload.job import Job, JobState

log = logging.getLogger(__name__)

PlacementList = list[tuple[str, tuple[int, ...]]]
# How far back (in seconds of wall time) ingest re-reads ids: on PostgreSQL a lower id can
# commit after a higher one, so the high-water mark alone could skip a job forever.
PG_RESCAN_S = 2.0
TIME_LIMIT_GRACE_S = 1.0
MIN_CYCLE_GAP_S = 0.01
# The statements of every cycle, built once (building a Core statement costs more than
# running a cached one).
# Only what a pending job is admitted with (``to_job`` and ``Tracked``): not its
# placement, log path or handle, which a pending job does not have.
_PENDING_ABOVE = (
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
    )
    .where(jobs.c.state == JobState.PENDING.value, jobs.c.id > bindparam("floor"))
    .order_by(jobs.c.id)
)
_CANCEL_REQUESTS = select(cancel_requests.c.job_id)
_STILL_PENDING = select(jobs.c.id).where(
    jobs.c.id.in_(bindparam("ids", expanding=True)), jobs.c.state == JobState.PENDING.value
)
_START_ONE = (
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
_SET_HANDLE = (
    update(jobs).where(jobs.c.id == bindparam("b_id")).values(handle=bindparam("b_handle"))
)
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _live_jobs(conn: Connection) -> list[RowMapping]:
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


def new_scheduler(topo: Topology, settings: ServiceSettings) -> Scheduler:
    """A fresh scheduler configured as the service is."""
    return Scheduler(
        topo, SchedulerConfig(policy=settings.policy, backfill=BackfillMode(settings.backfill))
    )


def fork_state(db: Database, topo: Topology, settings: ServiceSettings, now: float) -> Scheduler:
    """A scheduler rebuilt from the database alone, for forecasts and quota views.

    Any replica can answer these without touching the leader's live scheduler (which is
    mutated by its own thread); the database is one transaction's consistent snapshot.
    """
    sched = new_scheduler(topo, settings)
    with db.read() as conn:
        rows = _live_jobs(conn)
    for row in rows:
        if row["state"] == JobState.RUNNING.value and row["placement"]:
            sched.restore_running(
                to_job(row),
                sched.placement_from(placement_from_row(row["placement"])),
                row["started_at"] or now,
            )
    for row in rows:
        if row["state"] == JobState.PENDING.value:
            sched.submit(to_job(row), now)
    return sched


class CycleStats:
    """Scheduling-cycle latency histogram and counters, for ``/metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.buckets = [0] * len(LATENCY_BUCKETS_S)
        self.count = 0
        self.sum_s = 0.0
        self.started = 0
        self.preempted = 0
        self.recent: deque[float] = deque(maxlen=1000)

    def observe(self, seconds: float, started: int, preempted: int) -> None:
        """Record one cycle."""
        with self._lock:
            i = bisect_left(LATENCY_BUCKETS_S, seconds)
            if i < len(self.buckets):
                self.buckets[i] += 1
            self.count += 1
            self.sum_s += seconds
            self.started += started
            self.preempted += preempted
            self.recent.append(seconds)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy (cumulative buckets, as Prometheus wants)."""
        with self._lock:
            cum, acc = [], 0
            for b in self.buckets:
                acc += b
                cum.append(acc)
            return {
                "buckets": list(zip(LATENCY_BUCKETS_S, cum, strict=True)),
                "count": self.count,
                "sum": self.sum_s,
                "started": self.started,
                "preempted": self.preempted,
            }


@dataclass(slots=True)
class Tracked:
    """What the leader keeps about a job it knows."""

    job: Job
    command: str
    time_limit_s: float
    handle: str | None = None
    started_at: float | None = None


class SchedulerLoop:
    """Leader election plus the cycle described in the module docstring."""

    def __init__(
        self,
        db: Database,
        topo: Topology,
        executor: Executor,
        settings: ServiceSettings,
        *,
        clock: Callable[[], float] = time.time,
        stats: CycleStats | None = None,
        lock: LeaderLock | None = None,
    ) -> None:
        self.db = db
        self.topo = topo
        self.executor = executor
        self.settings = settings
        self.clock = clock
        self.stats = stats or CycleStats()
        self.lock = lock or leader_lock(db)
        self.leading = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sched: Scheduler | None = None
        self._known: dict[str, Tracked] = {}
        self._marks: deque[tuple[float, int]] = deque()
        self._max_id = 0
        self._last_poll = 0.0
        self._logs = Path(settings.data_dir) / "logs"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="scheduler-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and give up leadership."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Ask for a cycle soon (called by the API after a submit or cancel)."""
        self._wake.set()

    def run(self) -> None:
        """Try to lead; while leading, cycle; on any error, step down and retry."""
        while not self._stop.is_set():
            try:
                if self.lock.acquire():
                    try:
                        self.leading = True
                        log.info("leading the scheduler")
                        self.lead()
                    finally:
                        self.leading = False
                        self.lock.release()
            except Exception:  # a leader must never die silently: log, step down, retry
                log.exception("scheduler loop failed; stepping down")
            self._stop.wait(self.settings.lock_retry_s)

    def lead(self) -> None:
        """Load, reconcile, then cycle until stopped or the lock is lost."""
        self.load()
        while not self._stop.is_set():
            self._wake.wait(self.settings.tick_s)
            # Under a burst of submits, wait a moment so one cycle (and one transaction)
            # takes many jobs instead of one cycle per job.
            self._stop.wait(MIN_CYCLE_GAP_S)
            self._wake.clear()
            if self._stop.is_set() or not self.lock.held():
                return
            self.cycle()

    # -- load and reconcile ------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the scheduler from the database and reconcile running jobs."""
        now = self.clock()
        self._sched = sched = new_scheduler(self.topo, self.settings)
        self._known = {}
        self._marks.clear()
        with self.db.read() as conn:
            # The high-water mark first, then the live jobs: under PostgreSQL's READ
            # COMMITTED each statement sees its own snapshot, so a job committed between
            # the two must be above the mark (ingest takes it), never below it (lost).
            self._max_id = int(
                conn.execute(select(jobs.c.id).order_by(jobs.c.id.desc()).limit(1)).scalar() or 0
            )
            rows = _live_jobs(conn)
        requeued: list[RowMapping] = []
        for row in rows:
            if row["state"] != JobState.RUNNING.value:
                continue
            status = (
                self._poll_one(row["handle"])
                if row["handle"]
                else Status(RunState.LOST, detail="no executor handle was recorded")
            )
            job = to_job(row)
            if status.state is RunState.RUNNING:
                placement = sched.placement_from(placement_from_row(row["placement"]))
                sched.restore_running(job, placement, row["started_at"])
                self._known[job.id] = Tracked(
                    job, row["command"], row["time_limit_s"], row["handle"], row["started_at"]
                )
                continue
            if status.state is RunState.LOST and self._requeue_lost(row, status, now):
                requeued.append(row)
                continue
            with self.db.write() as conn:
                _end_row(conn, int(row["id"]), _terminal(status), now, status)
            log.info("job %s ended while no scheduler watched: %s", row["id"], status.state)
        pending = [r for r in rows if r["state"] == JobState.PENDING.value]
        self._admit_rows(sorted([*pending, *requeued], key=lambda r: int(r["id"])), now)
        # A submit still in flight at load time may commit later with an id below the
        # mark: re-read every pending id for one rescan window before trusting it.
        self._marks.append((now, 0))
        self._mark(now)
        self.cycle()

    def _requeue_lost(self, row: RowMapping, status: Status, now: float) -> bool:
        """Apply the lost policy to a running job the executor no longer knows."""
        job_id = int(row["id"])
        attempts = int(row["attempts"])
        requeue = (
            self.settings.lost_policy is LostPolicy.REQUEUE
            and attempts < self.settings.max_attempts
        )
        with self.db.write() as conn:
            if requeue:
                _requeue_row(conn, job_id, now, f"lost: {status.detail}; requeued")
            else:
                _end_row(
                    conn, job_id, JobState.FAILED, now, status, reason=f"lost: {status.detail}"
                )
        log.warning(
            "job %s lost (%s): %s", job_id, status.detail, "requeued" if requeue else "failed"
        )
        return requeue

    # -- the cycle -------------------------------------------------------------------

    def cycle(self) -> None:
        """One scheduling cycle (public so tests can drive the loop without a thread)."""
        assert self._sched is not None
        now = self.clock()
        self._ingest(now)
        if now - self._last_poll >= self.settings.tick_s * 0.5:
            self._poll(now)
            self._last_poll = now
        t0 = time.perf_counter()
        res = self._sched.schedule(now)
        elapsed = time.perf_counter() - t0
        self.stats.observe(elapsed, len(res.started), len(res.preempted))
        if res.started or res.preempted:
            self._apply(list(res.started), list(res.preempted), now)

    def _mark(self, now: float) -> None:
        self._marks.append((now, self._max_id))

    def _floor(self, now: float) -> int:
        """Lowest id to re-read: everything older than the rescan window is settled."""
        if self.db.is_sqlite:  # writes are serialised: ids become visible in order
            return self._max_id
        while len(self._marks) > 1 and now - self._marks[1][0] >= PG_RESCAN_S:
            self._marks.popleft()
        return self._marks[0][1] if self._marks else 0

    def _ingest(self, now: float) -> None:
        floor = self._floor(now)
        with self.db.read() as conn:
            rows = list(conn.execute(_PENDING_ABOVE, {"floor": floor}).mappings())
            cancels = [int(r[0]) for r in conn.execute(_CANCEL_REQUESTS)]
        fresh = [r for r in rows if str(r["id"]) not in self._known]
        if fresh:
            self._max_id = max(self._max_id, *(int(r["id"]) for r in fresh))
            self._admit_rows(fresh, now)
        self._mark(now)
        if cancels:
            self._cancel(cancels, now)

    def _admit_rows(self, rows: Iterable[RowMapping], now: float) -> None:
        """Hand pending rows to the scheduler; fail at once those that can never run."""
        assert self._sched is not None
        rejected: list[tuple[int, str]] = []
        for row in rows:
            job = to_job(row)
            reason = self._sched.submit(job, now)
            if reason is not None:
                rejected.append((int(row["id"]), reason))
                continue
            self._known[job.id] = Tracked(job, row["command"], row["time_limit_s"])
        if rejected:
            with self.db.write() as conn:
                for job_id, reason in rejected:
                    _end_row(
                        conn,
                        job_id,
                        JobState.FAILED,
                        now,
                        None,
                        reason=f"rejected: {reason}",
                        expect=JobState.PENDING,
                    )

    def _cancel(self, job_ids: list[int], now: float) -> None:
        """Carry out cancel requests: pending ones are already cancelled in the database."""
        assert self._sched is not None
        to_stop: list[str] = []
        with self.db.write() as conn:
            for job_id in job_ids:
                tracked = self._known.pop(str(job_id), None)
                if tracked is not None:
                    was_running = tracked.job.state is JobState.RUNNING
                    self._sched.cancel(tracked.job, now)
                    if was_running:
                        _end_row(conn, job_id, JobState.CANCELLED, now, None, reason="cancelled")
                        if tracked.handle:
                            to_stop.append(tracked.handle)
                conn.execute(delete(cancel_requests).where(cancel_requests.c.job_id == job_id))
        for handle in to_stop:
            self.executor.cancel(handle)

    def _poll_one(self, handle: str) -> Status:
        """Ask the backend about one job; a backend outage is not a verdict on the job.

        If the backend cannot be reached (e.g. slurmctld is down) the job is taken to be
        still running, so an outage never requeues or fails work that may be running.
        """
        try:
            return self.executor.poll(handle)
        except ExecutorError as exc:
            log.warning("executor %s unreachable polling %s: %s", self.executor.name, handle, exc)
            return Status(RunState.RUNNING, detail=f"backend unreachable: {exc}")

    def _poll(self, now: float) -> None:
        """Ask the executor about every running job; record those that ended."""
        assert self._sched is not None
        ended: list[tuple[Tracked, JobState, Status, str | None]] = []
        for tracked in list(self._known.values()):
            if tracked.job.state is not JobState.RUNNING or tracked.handle is None:
                continue
            status = self._poll_one(tracked.handle)
            if status.state is RunState.RUNNING:
                assert tracked.started_at is not None
                if now - tracked.started_at > tracked.time_limit_s + TIME_LIMIT_GRACE_S:
                    self.executor.cancel(tracked.handle)
                    limit = f"time limit of {tracked.time_limit_s:g} s exceeded"
                    ended.append((tracked, JobState.FAILED, status, limit))
                continue
            if status.state is RunState.LOST and self.settings.lost_policy is LostPolicy.REQUEUE:
                # At run time a vanished process is treated as failed: requeueing it could
                # run a command twice that did in fact run (its exit file may be lost).
                ended.append((tracked, JobState.FAILED, status, f"lost: {status.detail}"))
                continue
            ended.append((tracked, _terminal(status), status, None))
        if not ended:
            return
        with self.db.write() as conn:
            for tracked, state, status, reason in ended:
                _end_row(conn, int(tracked.job.id), state, now, status, reason=reason)
        for tracked, state, _status, _reason in ended:
            self._known.pop(tracked.job.id, None)
            if state is JobState.CANCELLED:
                self._sched.cancel(tracked.job, now)
            else:
                self._sched.finish(tracked.job, now, state)

    def _apply(self, started: list[Job], preempted: list[Job], now: float) -> None:
        """Commit the cycle's decisions in one transaction, then act on the executor."""
        assert self._sched is not None
        placements: dict[str, PlacementList] = {
            job.id: list(self._sched.placement_of(job)) for job in started
        }
        lost_race: list[Job] = []
        launched: list[Job] = []
        stop_handles: list[str] = []
        events: list[dict[str, object]] = []
        allocs: list[dict[str, object]] = []
        with self.db.write() as conn:
            for job in preempted:
                tracked = self._known.get(job.id)
                if tracked is not None and tracked.handle:
                    stop_handles.append(tracked.handle)
                _requeue_row(conn, int(job.id), now, "preempted by the scheduler", preempted=True)
                if tracked is not None:
                    tracked.handle = None
                    tracked.started_at = None
            moved = self._mark_started(conn, started, placements, now)
            for job in started:
                tracked = self._known[job.id]
                placement = placements[job.id]
                if int(job.id) not in moved:  # cancelled through the API meanwhile
                    lost_race.append(job)
                    continue
                events.append(
                    {
                        "job_id": int(job.id),
                        "at": now,
                        "state": JobState.RUNNING.value,
                        "detail": _describe(placement),
                    }
                )
                allocs.extend(
                    {"node": node, "gpu": g, "job_id": int(job.id), "since": now}
                    for node, gpus in placement
                    for g in gpus
                )
                tracked.started_at = now
                launched.append(job)
            # One statement each for the whole cycle, in the same transaction.
            self._insert_rows(conn, job_events, events, bulk_pg.insert_events)
            self._insert_rows(conn, allocations, allocs, bulk_pg.insert_allocations)
        for job in lost_race:
            self._known.pop(job.id, None)
            self._sched.cancel(job, now)
        for handle in stop_handles:
            self.executor.cancel(handle)
        self._launch(launched, placements, now)

    def _insert_rows(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[dict[str, Any]],
        bulk: Callable[[Connection, Sequence[dict[str, Any]]], None],
    ) -> None:
        """Insert rows in one statement: executemany on SQLite, ``bulk`` (unnest) on
        PostgreSQL."""
        if not rows:
            return
        if self.db.is_sqlite:
            conn.execute(insert(table), rows)
        else:
            bulk(conn, rows)

    def _mark_started(
        self,
        conn: Connection,
        started: list[Job],
        placements: dict[str, PlacementList],
        now: float,
    ) -> set[int]:
        """Move the cycle's starts from pending to running; the ids that were still pending.

        A job the API cancelled after this cycle read it is no longer pending and is left
        alone. On PostgreSQL one UPDATE over arrays does it (:mod:`.bulk_pg`); on SQLite
        the write transaction excludes other writers, so a read of which are pending and
        one executemany are as good.
        """
        if not started:
            return set()
        starts = [
            (
                int(job.id),
                [[n, list(g)] for n, g in placements[job.id]],
                str(self._logs / f"job-{job.id}.log"),
            )
            for job in started
        ]
        if not self.db.is_sqlite:
            return bulk_pg.start_jobs(conn, starts, now=now, executor=self.executor.name)
        ids = [s[0] for s in starts]
        pending = {int(r[0]) for r in conn.execute(_STILL_PENDING, {"ids": ids})}
        rows = [
            {
                "b_id": job_id,
                "b_placement": placement,
                "b_log_path": log_path,
                "b_now": now,
                "b_executor": self.executor.name,
            }
            for job_id, placement, log_path in starts
            if job_id in pending
        ]
        if rows:
            conn.execute(_START_ONE, rows)
        return pending

    def _launch(
        self, launched: list[Job], placements: dict[str, PlacementList], now: float
    ) -> None:
        assert self._sched is not None
        handles: list[tuple[int, str]] = []
        failed: list[tuple[Job, str]] = []
        for job in launched:
            tracked = self._known[job.id]
            placement = placements[job.id]
            node, gpus = placement[0]
            launch = Launch(
                job_id=job.id,
                command=tracked.command,
                gpus=job.gpus,
                gpu_indices=gpus,
                node=node,
                log_path=self._logs / f"job-{job.id}.log",
                time_limit_s=tracked.time_limit_s,
                env={"AIFACTORY_PLACEMENT": _describe(placement), "AIFACTORY_TENANT": job.tenant},
            )
            try:
                handle = self.executor.start(launch)
            except ExecutorError as exc:
                failed.append((job, str(exc)))
                continue
            tracked.handle = handle
            handles.append((int(job.id), handle))
        if not handles and not failed:
            return
        with self.db.write() as conn:
            if handles and not self.db.is_sqlite:
                bulk_pg.set_handles(conn, handles)
            elif handles:
                conn.execute(
                    _SET_HANDLE,
                    [{"b_id": job_id, "b_handle": handle} for job_id, handle in handles],
                )
            for job, why in failed:
                _end_row(conn, int(job.id), JobState.FAILED, now, None, reason=why)
        for job, _why in failed:
            self._known.pop(job.id, None)
            self._sched.finish(job, now, JobState.FAILED)


def _describe(placement: PlacementList) -> str:
    return ";".join(f"{node}:{','.join(str(g) for g in gpus)}" for node, gpus in placement)


def _terminal(status: Status) -> JobState:
    if status.state is RunState.COMPLETED:
        return JobState.COMPLETED
    if status.state is RunState.CANCELLED:
        return JobState.CANCELLED
    return JobState.FAILED


def _end_row(
    conn: Connection,
    job_id: int,
    state: JobState,
    now: float,
    status: Status | None,
    *,
    reason: str | None = None,
    expect: JobState = JobState.RUNNING,
) -> None:
    """Move a job to a terminal state, free its GPUs, record the event."""
    detail = reason or (status.detail if status is not None else "") or state.value
    done = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == expect.value)
        .values(
            state=state.value,
            ended_at=now,
            exit_code=status.exit_code if status is not None else None,
            reason=reason or (status.detail if status is not None and status.detail else None),
        )
    ).rowcount
    if done:
        conn.execute(
            insert(job_events).values(job_id=job_id, at=now, state=state.value, detail=detail)
        )
    conn.execute(delete(allocations).where(allocations.c.job_id == job_id))


def _requeue_row(
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
