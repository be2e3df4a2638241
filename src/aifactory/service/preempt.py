"""Victims that save: a preempted job with a grace keeps its GPUs in the database until it
has actually exited, and no job is launched on them before (issue #18 §2).

The scheduler core holds a saving victim's GPUs for its whole grace and starts the job
that preempted it when the grace ends (:mod:`aifactory.scheduler.grace`). The executor
sends SIGTERM at once and SIGKILL when the grace ends, but a backend takes a moment more
to reap a killed job (Slurm's epilogue, Ray's supervisor). So here:

- the victim's row stays ``running`` with its ``allocations`` rows (what ``/v1/fleet`` and
  the dashboard count, and what a restarted leader rebuilds from), its reason saying it
  saves and which job its GPUs go to, and the loop keeps polling its attempt; a leader
  that rebuilds the scheduler then restores the victim as saving for that job
  (``Scheduler.restore_saving``), so the job waits for those GPUs rather than preempting
  a second victim;
- when the attempt has ended (or, if the backend never says so, ``KILL_MARGIN_S`` after its
  grace), the row goes back to pending and its GPUs are freed, charged up to then (time
  spent saving is charged, as Slurm charges a job's ``GraceTime``);
- a start the core decides on GPUs a victim still holds (or of a victim itself, restarted
  by the core before its old attempt has gone) is *held*: it is not committed or
  launched, and is offered again on every cycle until those GPUs are free. The core
  already counts it running there, so nothing else is placed on them meanwhile.

A victim without a grace is requeued at once, as before (nothing here acts).
Invariant: a GPU is in at most one job's ``allocations`` rows, which the table's primary
key enforces; a held start never reaches the backend while a victim holds one of its GPUs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, update

from aifactory.scheduler.scheduler import Scheduler
from aifactory.service.db import Database
from aifactory.service.executors.base import RunState, Status
from aifactory.service.jobrows import PlacementList, requeue_row
from aifactory.service.tables import jobs
from aifactory.workload.job import Job, JobState

log = logging.getLogger(__name__)

SAVING = "preempted: saving"  # the reason of a victim's row while it saves
# How the row's reason names the job its GPUs are promised to, so that a restarted leader
# promises them again (Scheduler.restore_saving) rather than letting that job preempt anew.
PROMISED = "its GPUs go to job"
_PROMISED_RE = re.compile(rf"{PROMISED} (\d+)$")
# How long after its grace a victim whose backend still says running keeps its GPUs: the
# executor killed it at the grace's end; past this its GPUs are freed anyway (never leaked).
KILL_MARGIN_S = 30.0


@dataclass(slots=True)
class Saver:
    """A victim that saves: its attempt, the GPUs its rows hold, when it was told to stop
    and when its grace ends."""

    job: Job
    handle: str | None
    gpus: frozenset[tuple[str, int]]
    since: float
    until: float
    claimant: str | None = None  # restored from the row: the job its GPUs go to


class Savers:
    """The saving victims and the starts held for their GPUs (see the module)."""

    def __init__(self) -> None:
        self.saving: dict[str, Saver] = {}
        self.held: dict[str, Job] = {}

    def reset(self) -> None:
        self.saving.clear()
        self.held.clear()

    def forget(self, job_id: str) -> None:
        """The job ended (cancelled or failed): it neither saves nor waits to launch."""
        self.saving.pop(job_id, None)
        self.held.pop(job_id, None)

    def split(self, sched: Scheduler, preempted: list[Job]) -> tuple[list[Job], list[Job]]:
        """The cycle's victims as (requeued at once, saving now); victims already saving or
        whose start was held (never launched) are in neither: nothing to write or stop."""
        until = {job.id: end for job, end in sched.saving_jobs()}
        plain: list[Job] = []
        saving: list[Job] = []
        for job in preempted:
            if job.id in self.saving:
                continue
            if self.held.pop(job.id, None) is not None:
                continue
            (saving if job.id in until else plain).append(job)
        return plain, saving

    def begin(
        self,
        conn: Connection,
        sched: Scheduler,
        victims: list[Job],
        handles: Mapping[str, str | None],
        now: float,
    ) -> None:
        """Record in ``conn`` that ``victims`` save: their rows keep running and holding
        their GPUs, their reason says until when."""
        until = {job.id: end for job, end in sched.saving_jobs()}
        for job in victims:
            end = until[job.id]
            gpus = frozenset((n, g) for n, part in sched.placement_of(job) for g in part)
            claimant = sched.claimant_of(job)
            promised = f"; {PROMISED} {claimant.id}" if claimant is not None else ""
            conn.execute(
                update(jobs)
                .where(jobs.c.id == int(job.id), jobs.c.state == JobState.RUNNING.value)
                .values(reason=f"{SAVING} for {end - now:g} s{promised}")
            )
            self.saving[job.id] = Saver(job, handles.get(job.id), gpus, now, end)

    def restore(
        self,
        job: Job,
        handle: str | None,
        placement: PlacementList,
        now: float,
        grace: float,
        reason: str,
    ) -> None:
        """A running row found saving at a rebuild (the grace it had left is not stored:
        it gets a whole grace again from ``now``, the conservative bound); ``reason`` is
        the row's, which names the job its GPUs were promised to."""
        gpus = frozenset((n, g) for n, part in placement for g in part)
        found = _PROMISED_RE.search(reason)
        claimant = found.group(1) if found else None
        self.saving[job.id] = Saver(job, handle, gpus, now, now + grace, claimant)

    def promise_again(self, sched: Scheduler, waiting: Mapping[str, Job], now: float) -> None:
        """After a rebuild, tell the scheduler which restored jobs save and whose their
        GPUs are (``waiting``: the rebuilt scheduler's jobs by id), so that it holds them
        for their claimant instead of letting it preempt again. A victim the scheduler
        cannot take as saving stays as restored (running), as before this existed."""
        for saver in self.saving.values():
            claimant = waiting.get(saver.claimant) if saver.claimant is not None else None
            try:
                sched.restore_saving(saver.job, saver.until, claimant, now)
            except ValueError as exc:
                log.warning("job %s: not restored as saving: %s", saver.job.id, exc)

    def hold(self, started: list[Job], placements: Mapping[str, PlacementList]) -> list[Job]:
        """The starts that may go now; the others are held until their GPUs are free.
        A start that goes is no longer held: offered again, the loop would take it for a
        start cancelled meanwhile and stop tracking the running job."""
        if not self.saving:
            for job in started:
                self.held.pop(job.id, None)
            return started
        busy: set[tuple[str, int]] = set()
        for saver in self.saving.values():
            busy |= saver.gpus
        go: list[Job] = []
        for job in started:
            mine = {(n, g) for n, part in placements[job.id] for g in part}
            if job.id in self.saving or not busy.isdisjoint(mine):
                self.held[job.id] = job
            else:
                self.held.pop(job.id, None)
                go.append(job)
        return go

    def ready(self, known: Iterable[str]) -> list[Job]:
        """Held starts to offer again (all of them: :meth:`hold` keeps back those whose
        GPUs are still held); those no longer tracked are dropped."""
        alive = set(known)
        for job_id in [j for j in self.held if j not in alive]:
            del self.held[job_id]
        return [job for job in self.held.values() if job.state is JobState.RUNNING]

    def settle(
        self,
        db: Database,
        poll: Callable[[str], Status],
        cancel: Callable[[str], None],
        now: float,
    ) -> list[Saver]:
        """Free the GPUs of victims whose attempt has ended, or whose grace ended more than
        ``KILL_MARGIN_S`` ago (cancelled again first); those victims, now pending."""
        done: list[Saver] = []
        for saver in list(self.saving.values()):
            status = Status(RunState.LOST) if saver.handle is None else poll(saver.handle)
            if status.state is RunState.RUNNING:
                if now < saver.until + KILL_MARGIN_S:
                    continue
                log.warning(
                    "job %s still runs %g s after its grace; freeing its GPUs",
                    saver.job.id,
                    now - saver.until,
                )
                if saver.handle is not None:
                    cancel(saver.handle)
            done.append(saver)
        if done:
            with db.write() as conn:
                for saver in done:
                    why = f"preempted by the scheduler; stopped {now - saver.since:.3g} s after"
                    requeue_row(conn, int(saver.job.id), now, why, preempted=True)
            for saver in done:
                del self.saving[saver.job.id]
        return done


def saving_row(row: Mapping[Any, Any]) -> bool:
    """Whether a running row is a victim that was saving when the leader stopped."""
    reason = row.get("reason")
    return isinstance(reason, str) and reason.startswith(SAVING)
