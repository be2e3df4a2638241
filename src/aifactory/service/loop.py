"""The scheduler loop: the twin's scheduler core on a wall clock, over the database.

One replica at a time leads (see :mod:`aifactory.service.lease`). The leader loads every
pending and running job from the database into an in-memory :class:`Scheduler`,
reconciles running jobs with the executor, then cycles on submit (woken by the API), on
finish and on a periodic tick:

1. ingest: new pending jobs and cancel requests written by any replica;
2. poll: ask the executor about running jobs; enforce time limits;
3. decide: ``Scheduler.schedule(now)``;
4. commit: every preemption and start of the cycle, with the jobs' state changes and GPU
   allocation rows, in one transaction; a start's row is its launch *intent* (job,
   placement, attempt number);
5. act: stop preempted jobs and start admitted ones on the executor, each attempt under the
   name ``aif-<job>-<attempt>``; record handles.

**One job's failure is that job's failure.** Every step above isolates jobs: an exception
while admitting, deciding, committing or launching one job fails that job (its reason and
history say why, ``aifactory_job_errors_total`` counts it) and the cycle goes on for the
others. If ``schedule()`` itself raises, the loop finds the job whose presence makes it
raise (a bisection over forks rebuilt from the database), fails it, and rebuilds its
scheduler from the database. Leadership is dropped only for a lost database or lease:
then the in-memory state may disagree with the database, so the next leader (maybe this
replica again) rebuilds it from the database, which is the truth.

**Launch is idempotent.** The intent is committed before the executor is called, so a
crash (or a step-down) between 4 and 5 leaves a running row without a handle. The next
leader does not guess: it asks the executor for the attempt by name (``find``). If it was
started, its handle is recorded and it is tracked as running; if it never was, the row is
requeued (it never ran) and a later cycle starts it as a new attempt. No attempt is ever
started twice. When the backend cannot be asked, the job keeps its GPUs and the question
is asked again on every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, select

from aifactory.allocations import B200_TFLOPS
from aifactory.fleet.topology import Topology
from aifactory.scheduler.records import Interruption
from aifactory.scheduler.scheduler import Scheduler
from aifactory.service import bulk_pg
from aifactory.service.allocgate import AllocationGate
from aifactory.service.db import Database
from aifactory.service.executors.base import (
    Executor,
    ExecutorError,
    Launch,
    NodeSlice,
    RunState,
    Status,
    attempt_name,
)
from aifactory.service.forks import fork_state, new_scheduler
from aifactory.service.isolation import (
    FaultHook,
    InjectedCrashError,
    RebuildNeededError,
    failing_set,
    is_outage,
    no_fault,
    schedule_raises,
    vet_starts,
    why,
)
from aifactory.service.jobrows import (
    CANCEL_REQUESTS,
    PENDING_ABOVE,
    SET_HANDLE,
    PlacementList,
    commit_decisions,
    end_row,
    live_jobs,
    placement_from_row,
    requeue_row,
    terminal,
    to_job,
)
from aifactory.service.lease import LeaderLock, leader_lock
from aifactory.service.metrics import CycleStats
from aifactory.service.preempt import Savers, saving_row
from aifactory.service.reconcile import requeue_lost, requeue_unstarted
from aifactory.service.samples import Sampler
from aifactory.service.settings import LostPolicy, ServiceSettings
from aifactory.service.tables import cancel_requests, jobs
from aifactory.service.tracked import Tracked, job_nonce
from aifactory.workload.job import Job, JobState

__all__ = [
    "FaultHook",
    "InjectedCrashError",
    "SchedulerLoop",
    "fork_state",
    "job_nonce",
    "new_scheduler",
]

log = logging.getLogger(__name__)

# How far back (in seconds of wall time) ingest re-reads ids: on PostgreSQL a lower id can
# commit after a higher one, so the high-water mark alone could skip a job forever.
PG_RESCAN_S = 2.0
TIME_LIMIT_GRACE_S = 1.0
MIN_CYCLE_GAP_S = 0.01


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
        fault: FaultHook = no_fault,
        sampler: Sampler | None = None,
    ) -> None:
        self.db = db
        self.topo = topo
        self.executor = executor
        self.settings = settings
        self.clock = clock
        self.stats = stats or CycleStats()
        self.lock = lock or leader_lock(db)
        self.fault = fault
        self.sampler = sampler  # the dashboard's metrics history, written while leading
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
        self._savers = Savers()  # preempted jobs that save, and starts held for their GPUs
        # Jobs of projects wait here until their allocation covers them (issue #19).
        self._gate = AllocationGate(
            db,
            {
                c: m.bf16_tflops / B200_TFLOPS
                for c, m in zip(topo.classes, topo.class_model, strict=True)
            },
        )

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
        """Try to lead; while leading, cycle; on a lost database or lease, step down, retry.

        Errors of single jobs never get here (each cycle step isolates them); what does is
        a database outage, or a bug outside any one job, and both mean the in-memory state
        can no longer be trusted.
        """
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
        """Rebuild the scheduler from the database, reconcile running jobs, run a cycle."""
        self._rebuild(self.clock())
        self.cycle()

    def _rebuild(self, now: float) -> None:
        """The scheduler and the tracked jobs, from the database and the executor."""
        self._sched = new_scheduler(self.topo, self.settings)
        self._known = {}
        self._savers.reset()
        self._gate.reset()
        self._marks.clear()
        with self.db.read() as conn:
            # The high-water mark first, then the live jobs: under PostgreSQL's READ
            # COMMITTED each statement sees its own snapshot, so a job committed between
            # the two must be above the mark (ingest takes it), never below it (lost).
            self._max_id = int(
                conn.execute(select(jobs.c.id).order_by(jobs.c.id.desc()).limit(1)).scalar() or 0
            )
            rows = live_jobs(conn)
        requeued: list[RowMapping] = []
        for row in rows:
            if row["state"] != JobState.RUNNING.value:
                continue
            try:
                back = self._reconcile(row, now)
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.exception("job %s: cannot be reconciled; failing it", row["id"])
                self._fail_job(int(row["id"]), f"internal error while reconciling: {why(exc)}")
                self.stats.job_error("reconcile")
                continue
            if back is not None:
                requeued.append(back)
        # Jobs that run on reserve their GPUs x time limit against their project again.
        self._gate.reserve(r for r in rows if str(r["id"]) in self._known)
        pending = [r for r in rows if r["state"] == JobState.PENDING.value]
        self._admit_rows(sorted([*pending, *requeued], key=lambda r: int(r["id"])), now)
        # Victims that were saving keep their GPUs for the jobs they were promised to.
        self._savers.promise_again(self._sched, {k: t.job for k, t in self._known.items()}, now)
        # A submit still in flight at load time may commit later with an id below the
        # mark: re-read every pending id for one rescan window before trusting it.
        self._marks.append((now, 0))
        self._mark(now)

    def _reconcile(self, row: RowMapping, now: float) -> RowMapping | None:
        """Take over one running row; the row again if it went back to pending."""
        assert self._sched is not None
        job_id, attempts = int(row["id"]), int(row["attempts"])
        handle: str | None = row["handle"]
        unresolved = False
        if not handle:
            # The intent was committed, the handle not recorded: ask the backend whether
            # this attempt started, by its name; never start it again on a guess.
            try:
                handle = self.executor.find(
                    attempt_name(str(job_id), attempts, job_nonce(row["submitted_at"]))
                )
            except ExecutorError as exc:
                log.warning("job %s: backend cannot say if it started: %s", job_id, exc)
                unresolved = True
            else:
                if handle is None:
                    return requeue_unstarted(self.db, self.settings, row, now)
                with self.db.write() as conn:
                    conn.execute(SET_HANDLE, [{"b_id": job_id, "b_handle": handle}])
        status = (
            Status(RunState.RUNNING, detail="not yet known whether it started")
            if handle is None
            else self._poll_one(handle)
        )
        job = to_job(row)
        if status.state is RunState.RUNNING:
            placement = self._sched.placement_from(placement_from_row(row["placement"]))
            self._sched.restore_running(job, placement, row["started_at"])
            self._known[job.id] = Tracked(
                job,
                row["command"],
                row["time_limit_s"],
                handle,
                row["started_at"],
                attempts=attempts,
                unresolved=unresolved,
            )
            if saving_row(row):  # preempted, and saving when the last leader stopped
                grace = self._sched.preempt_grace(job)
                self._savers.restore(
                    job, handle, placement_from_row(row["placement"]), now, grace, row["reason"]
                )
            return None
        if status.state is RunState.LOST and requeue_lost(self.db, self.settings, row, status, now):
            return row
        with self.db.write() as conn:
            end_row(conn, job_id, terminal(status), now, status)
        log.info("job %s ended while no scheduler watched: %s", job_id, status.state)
        return None

    # -- one job's failure -----------------------------------------------------------

    def _fail_job(self, job_id: int, reason: str, *, handle: str | None = None) -> None:
        """Fail one job in its own transaction (pending or running), free its GPUs, stop
        its backend attempt, and forget it; the scheduler's copy is released too."""
        now = self.clock()
        tracked = self._known.pop(str(job_id), None)
        self._savers.forget(str(job_id))
        with self.db.write() as conn:
            for expect in (JobState.RUNNING, JobState.PENDING):
                end_row(conn, job_id, JobState.FAILED, now, None, reason=reason, expect=expect)
        handle = handle or (tracked.handle if tracked is not None else None)
        if handle:
            self._stop_attempt(handle)
        if tracked is None:
            return
        if tracked.job.state is JobState.RUNNING:
            self._release(tracked.job, now, JobState.FAILED)
        elif tracked.job.state is JobState.PENDING:
            self._release(tracked.job, now, JobState.CANCELLED)

    def _release(self, job: Job, now: float, state: JobState) -> None:
        """Tell the scheduler a job ended (``CANCELLED``: cancel, else finish in ``state``).

        If the scheduler raises, its state is in doubt (the database already says how the
        job ended): :class:`RebuildNeededError` makes the cycle rebuild it.
        """
        assert self._sched is not None
        try:
            if state is JobState.CANCELLED:
                self._sched.cancel(job, now)
            else:
                self._sched.finish(job, now, state)
        except Exception as exc:
            log.exception("job %s: the scheduler could not release it; rebuilding", job.id)
            self.stats.job_error("release")
            raise RebuildNeededError(job.id) from exc

    def _stop_attempt(self, handle: str) -> None:
        """Cancel on the backend; a backend error is logged, never raised into the cycle."""
        try:
            self.executor.cancel(handle)
        except Exception:
            log.exception("cancelling %s on %s failed", handle, self.executor.name)

    # -- the cycle -------------------------------------------------------------------

    def cycle(self) -> None:
        """One scheduling cycle (public so tests can drive the loop without a thread)."""
        now = self.clock()
        try:
            self._cycle(now)
        except RebuildNeededError:
            self._rebuild(now)

    def _cycle(self, now: float) -> None:
        assert self._sched is not None
        self._ingest(now)
        if now - self._last_poll >= self.settings.tick_s * 0.5:
            self._poll(now)
            self._settle(now)
            self._last_poll = now
        t0 = time.perf_counter()
        try:
            res = self._sched.schedule(now)
        except Exception as exc:  # noqa: BLE001 (any error of the core: isolate its job)
            self._decision_failed(exc, now)
            return
        elapsed = time.perf_counter() - t0
        self.stats.observe(elapsed, len(res.started), len(res.preempted))
        # Starts held for a victim's GPUs (one the core preempted since was never launched:
        # Savers.split drops it).
        gone = {j.id for j in res.preempted}
        held = [j for j in self._savers.ready(self._known) if j.id not in gone]
        if res.started or res.preempted or held:
            self._apply([*held, *res.started], list(res.preempted), now)
        if self.sampler is not None:
            self.sampler.tick(now)

    def _decision_failed(self, exc: Exception, now: float) -> None:
        """``schedule()`` raised: fail the job that makes it raise, rebuild, go on.

        The core is pure, so the failure can be replayed on forks rebuilt from the
        database, and narrowed to a smallest set of jobs that make it raise (see
        :func:`_failing_set`): usually one job. Every job of that set is failed, each
        reason naming the others: when several jobs raise only together, the loop cannot
        tell which is at fault, and failing them beats stopping every tenant's scheduling.
        The core refuses bad fields at submit, so this is the net for the core's own bugs.
        If the failure cannot be replayed (it depended on in-memory history), the
        scheduler is rebuilt from the database and the next cycle tries again.
        """
        log.error("schedule() raised %s; looking for the job that causes it", why(exc))
        with self.db.read() as conn:
            rows = live_jobs(conn)

        def fresh() -> Scheduler:
            return new_scheduler(self.topo, self.settings)

        culprits = failing_set(rows, lambda part: schedule_raises(fresh, part, now))
        ids = [int(r["id"]) for r in culprits]
        for culprit in culprits:
            others = [i for i in ids if i != int(culprit["id"])]
            together = f" together with job(s) {', '.join(map(str, others))}" if others else ""
            self._fail_job(
                int(culprit["id"]),
                f"internal error while scheduling this job{together}: {why(exc)}",
                handle=culprit["handle"],
            )
            self.stats.job_error("decide")
        self._rebuild(now)

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
            rows = list(conn.execute(PENDING_ABOVE, {"floor": floor}).mappings())
            cancels = [int(r[0]) for r in conn.execute(CANCEL_REQUESTS)]
        fresh = [r for r in rows if str(r["id"]) not in self._known]
        if fresh:
            self._max_id = max(self._max_id, *(int(r["id"]) for r in fresh))
        if fresh or self._gate.held:
            self._admit_rows(fresh, now)
        self._mark(now)
        if cancels:
            self._cancel(cancels, now)

    def _admit_rows(self, rows: Iterable[Mapping[Any, Any]], now: float) -> None:
        """Hand pending rows to the scheduler; fail at once those that can never run or
        that the scheduler refuses (a bad field is that job's failure, not the cycle's).
        Rows of projects whose allocation cannot cover them are held back by the gate,
        which offers them again on every cycle (see :mod:`.allocgate`)."""
        assert self._sched is not None
        rejected: list[tuple[int, str]] = []
        for row in self._gate.admit(rows, self._known, now):
            try:
                job = to_job(row)
                reason = self._sched.submit(job, now)
            except Exception as exc:  # noqa: BLE001 (a job the core refuses fails alone)
                log.warning("job %s refused by the scheduler: %s", row["id"], why(exc))
                self.stats.job_error("admit")
                rejected.append((int(row["id"]), why(exc)))
                continue
            if reason is not None:
                rejected.append((int(row["id"]), reason))
                continue
            self._known[job.id] = Tracked(
                job, row["command"], row["time_limit_s"], attempts=int(row["attempts"] or 0)
            )
        if rejected:
            with self.db.write() as conn:
                for job_id, reason in rejected:
                    end_row(
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
                    # A saving victim's row is still running, whatever the core says of it.
                    saving = tracked.job.id in self._savers.saving
                    self._savers.forget(tracked.job.id)
                    was_running = tracked.job.state is JobState.RUNNING or saving
                    if tracked.job.state in (JobState.RUNNING, JobState.PENDING) or saving:
                        self._release(tracked.job, now, JobState.CANCELLED)
                    if was_running:
                        end_row(conn, job_id, JobState.CANCELLED, now, None, reason="cancelled")
                        if tracked.handle:
                            to_stop.append(tracked.handle)
                conn.execute(delete(cancel_requests).where(cancel_requests.c.job_id == job_id))
        for handle in to_stop:
            self._stop_attempt(handle)

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

    def _resolve(self, tracked: Tracked, now: float) -> None:
        """Ask again whether an unresolved attempt started (see ``Tracked.unresolved``)."""
        assert self._sched is not None
        job_id = int(tracked.job.id)
        try:
            handle = self.executor.find(
                attempt_name(tracked.job.id, tracked.attempts, job_nonce(tracked.job.submit_s))
            )
        except ExecutorError as exc:
            log.warning("job %s: backend still cannot say if it started: %s", job_id, exc)
            return
        tracked.unresolved = False
        if handle is not None:
            tracked.handle = handle
            with self.db.write() as conn:
                conn.execute(SET_HANDLE, [{"b_id": job_id, "b_handle": handle}])
            return
        why = f"attempt {tracked.attempts} was not started before a restart"
        with self.db.write() as conn:
            requeue_row(conn, job_id, now, why)
        tracked.started_at = None
        self._sched.interrupt(tracked.job, now, Interruption.NOT_STARTED)

    def _poll(self, now: float) -> None:
        """Ask the executor about every running job; record those that ended."""
        assert self._sched is not None
        ended: list[tuple[Tracked, JobState, Status, str | None]] = []
        for tracked in list(self._known.values()):
            if tracked.job.state is not JobState.RUNNING or tracked.job.id in self._savers.saving:
                continue
            try:
                if tracked.unresolved:
                    self._resolve(tracked, now)
                if tracked.handle is None:
                    continue
                outcome = self._check(tracked, now)
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.exception("job %s: polling failed", tracked.job.id)
                self.stats.job_error("poll")
                self._fail_job(int(tracked.job.id), f"internal error while polling: {why(exc)}")
                continue
            if outcome is not None:
                ended.append((tracked, *outcome))
        if not ended:
            return
        with self.db.write() as conn:
            for tracked, state, status, reason in ended:
                end_row(conn, int(tracked.job.id), state, now, status, reason=reason)
        for tracked, state, _status, _reason in ended:
            self._known.pop(tracked.job.id, None)
            self._release(tracked.job, now, state)

    def _settle(self, now: float) -> None:
        """Free the GPUs of saving victims whose attempt has ended (see :mod:`.preempt`)."""
        assert self._sched is not None
        for saver in self._savers.settle(self.db, self._poll_one, self._stop_attempt, now):
            tracked = self._known.get(saver.job.id)
            if tracked is None:
                continue
            tracked.handle = None
            tracked.started_at = None
            # Running in the core, and not a start held for these GPUs: a victim restored
            # at a rebuild, which the core took for running; it waits again.
            if tracked.job.state is JobState.RUNNING and saver.job.id not in self._savers.held:
                self._sched.interrupt(tracked.job, now, Interruption.NOT_STARTED)

    def _check(self, tracked: Tracked, now: float) -> tuple[JobState, Status, str | None] | None:
        """How a running job stands: None while it runs within its limit, else its end."""
        assert tracked.handle is not None
        status = self._poll_one(tracked.handle)
        if status.state is RunState.RUNNING:
            assert tracked.started_at is not None
            if now - tracked.started_at > tracked.time_limit_s + TIME_LIMIT_GRACE_S:
                self._stop_attempt(tracked.handle)
                limit = f"time limit of {tracked.time_limit_s:g} s exceeded"
                return JobState.FAILED, status, limit
            return None
        if status.state is RunState.LOST and self.settings.lost_policy is LostPolicy.REQUEUE:
            # At run time a vanished process is treated as failed: requeueing it could
            # run a command twice that did in fact run (its exit file may be lost).
            return JobState.FAILED, status, f"lost: {status.detail}"
        return terminal(status), status, None

    # -- commit and act ----------------------------------------------------------------

    def _apply(self, started: list[Job], preempted: list[Job], now: float) -> None:
        """Commit the cycle's decisions in one transaction, then act on the executor.

        If that transaction fails for a reason other than an outage (some job's row or
        value the database refuses), every decision is committed again on its own, so that
        the job it belongs to fails alone.
        """
        assert self._sched is not None
        started, placements, bad = vet_starts(
            self._sched, self._known, started, preempted, self.stats.job_error
        )
        for job, reason in bad:
            self.stats.job_error("decide")
            self._fail_job(int(job.id), reason)
        started = self._savers.hold(started, placements)
        preempted, saving = self._savers.split(self._sched, preempted)
        if saving:  # their rows keep their GPUs (a write of its own: nothing else to fail)
            with self.db.write() as conn:
                handles = {j.id: t.handle for j in saving if (t := self._known.get(j.id))}
                self._savers.begin(conn, self._sched, saving, handles, now)
        try:
            with self.db.write() as conn:
                moved = self._commit(conn, started, preempted, placements, now)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.exception("committing the cycle failed; committing job by job")
            moved = self._commit_each(started, preempted, placements, now)
        stop_handles = [h for j in saving if (h := self._savers.saving[j.id].handle)]
        for job in preempted:
            tracked = self._known.get(job.id)
            if tracked is None:
                continue
            if tracked.handle:
                stop_handles.append(tracked.handle)
            tracked.handle = None
            tracked.started_at = None
        launched: list[Job] = []
        for job in started:
            tracked = self._known.get(job.id)
            if tracked is None:
                continue
            if int(job.id) not in moved:  # cancelled through the API meanwhile
                self._known.pop(job.id, None)
                self._release(job, now, JobState.CANCELLED)
                continue
            tracked.started_at = now
            tracked.attempts += 1
            launched.append(job)
        for job in launched:
            self.fault("committed", job.id)
        for handle in stop_handles:
            self._stop_attempt(handle)
        self._launch(launched, placements, now)

    def _commit(
        self,
        conn: Connection,
        started: list[Job],
        preempted: list[Job],
        placements: dict[str, PlacementList],
        now: float,
    ) -> set[int]:
        """Write preemptions and start intents in ``conn``; the ids of jobs that moved."""
        return commit_decisions(
            conn,
            started,
            preempted,
            placements,
            now,
            sqlite=self.db.is_sqlite,
            executor=self.executor.name,
            logs=self._logs,
        )

    def _commit_each(
        self,
        started: list[Job],
        preempted: list[Job],
        placements: dict[str, PlacementList],
        now: float,
    ) -> set[int]:
        """``_commit`` one decision per transaction; a decision that fails fails its job."""
        moved: set[int] = set()
        for job in preempted:
            try:
                with self.db.write() as conn:
                    self._commit(conn, [], [job], placements, now)
            except Exception as exc:
                if is_outage(exc):
                    raise
                self.stats.job_error("commit")
                self._fail_job(int(job.id), f"internal error recording preemption: {why(exc)}")
        for job in started:
            try:
                with self.db.write() as conn:
                    moved |= self._commit(conn, [job], [], placements, now)
            except Exception as exc:
                if is_outage(exc):
                    raise
                self.stats.job_error("commit")
                self._fail_job(int(job.id), f"internal error recording the start: {why(exc)}")
        return moved

    def _launch(
        self, launched: list[Job], placements: dict[str, PlacementList], now: float
    ) -> None:
        """Start each committed attempt on the executor; one that cannot start fails alone."""
        assert self._sched is not None
        handles: list[tuple[int, str]] = []
        failed: list[tuple[Job, str]] = []
        for job in launched:
            tracked = self._known[job.id]
            placement = placements[job.id]
            try:
                launch = Launch(
                    job_id=job.id,
                    command=tracked.command,
                    gpus=job.gpus,
                    nodes=tuple(NodeSlice(node, gpus) for node, gpus in placement),
                    log_path=self._logs / f"job-{job.id}.log",
                    time_limit_s=tracked.time_limit_s,
                    attempt=tracked.attempts,
                    tenant=job.tenant,
                    nonce=job_nonce(job.submit_s),
                    stop_grace_s=self._sched.preempt_grace(job) or None,
                )
                self.fault("launching", job.id)
                handle = self.executor.start(launch)
            except ExecutorError as exc:
                failed.append((job, str(exc)))
                continue
            except Exception as exc:
                log.exception("job %s: the executor failed to start it", job.id)
                self.stats.job_error("launch")
                failed.append((job, f"internal error starting the job: {why(exc)}"))
                continue
            self.fault("launched", job.id)
            tracked.handle = handle
            handles.append((int(job.id), handle))
        if not handles and not failed:
            return
        try:
            with self.db.write() as conn:
                if handles and not self.db.is_sqlite:
                    bulk_pg.set_handles(conn, handles)
                elif handles:
                    conn.execute(
                        SET_HANDLE,
                        [{"b_id": job_id, "b_handle": handle} for job_id, handle in handles],
                    )
                for job, reason in failed:
                    end_row(conn, int(job.id), JobState.FAILED, now, None, reason=reason)
        except Exception as exc:
            if is_outage(exc):
                raise
            # The attempts run but their handles are not recorded: the rebuild finds them
            # by name, as after a crash.
            log.exception("recording handles failed; rebuilding")
            raise RebuildNeededError from exc
        for job_id, _handle in handles:
            self.fault("recorded", str(job_id))
        for job, _why_failed in failed:
            self._known.pop(job.id, None)
            self._release(job, now, JobState.FAILED)
