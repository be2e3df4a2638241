"""The twin: drives the scheduler core on simulated time over a stream of jobs.

The simulator owns what only the twin may know (true run times, failures) and the
clock; the scheduler core decides exactly as it would in the live service. Arrivals
are the kernel's feed (merged with the heap, never pushed), so the heap holds
O(running jobs) events even for a million-job trace. One scheduling pass runs per
instant at which something changed, after all completions and arrivals of that instant.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np

from aifactory.fleet.topology import Topology
from aifactory.physics.links import Network
from aifactory.scheduler.cluster import Placement
from aifactory.scheduler.config import SchedulerConfig, job_problem
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.allocgate import TwinAllocations
from aifactory.twin.failures import FailureInjector
from aifactory.twin.finished import FinishedJobs
from aifactory.twin.inputs import JobSource
from aifactory.twin.kernel import EventClass, Kernel
from aifactory.twin.observer import Observer
from aifactory.twin.spans import Spans
from aifactory.twin.staging import Staging
from aifactory.workload.job import RUNNING, Job
from aifactory.workload.progress import wall_for

# Event kinds (FAIL = 1 and REPAIR = 2 belong to failures.py). Final, so the compiled
# loop reads constants instead of looking names up in the module's dict per event.
FINISH: Final = 0
ARRIVE: Final = 3
DECIDE: Final = 4
SAMPLE: Final = 5
GRANT: Final = 6  # a grant's period starts or a top-up lands (runs with allocations only)
TRANSFER: Final = 7  # data copies complete (runs with datasets only: twin.staging)
# Event classes as constants (an IntEnum member is an interpreted lookup when compiled).
END_CLS: Final = EventClass.END
DECIDE_CLS: Final = EventClass.DECIDE

Progress = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class TwinConfig:
    """Simulation settings that are not the scheduler's."""

    sample_interval_s: float = 300.0  # timeseries resolution: 5 simulated minutes
    until_s: float | None = None  # stop at this simulated time (None: run until drained)
    seed: int = 0

    def __post_init__(self) -> None:
        # The sampler advances its clock by the interval: one below a second is no
        # resolution the twin's inputs have, and one below a float's step at the run's
        # times would never advance it (a run that hangs).
        if not (math.isfinite(self.sample_interval_s) and self.sample_interval_s >= 1.0):
            msg = f"sample_interval_s: must be at least 1 s, got {self.sample_interval_s!r}"
            raise ValueError(msg)


@dataclass(slots=True)
class SimResult:
    """Everything a run produced: final jobs, the observer's series, and counters.

    ``jobs``: every job, in submit order, for a run over a ready-made list. A run that
    streamed its jobs from a :class:`~aifactory.twin.inputs.JobSource` keeps only the
    jobs still in flight at its end here (pending, running, or held by the allocations
    gate or for their data), at ``rows`` (their places in submit order); every other
    job's results row is in ``finished`` (:mod:`aifactory.twin.finished`), and
    :func:`aifactory.twin.results.job_columns` reads the two together."""

    jobs: list[Job]
    scheduler: Scheduler
    observer: Observer
    events: int
    wall_s: float
    end_s: float
    rejected: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    allocations: TwinAllocations | None = None  # the gate and ledger, with an allocations file
    staging: Staging | None = None  # data copies and links, with jobs that read datasets
    spans: Spans | None = None  # cross-site runs' link traffic and GPU-hours, where any may
    finished: FinishedJobs | None = None  # a streamed run's rows of the jobs that ended
    rows: list[int] = field(default_factory=list)  # (streamed) the row of each of ``jobs``


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while a run goes on; restore it after.

    A run allocates millions of small objects that live long (heap entries, histories,
    placements), and the collector walks the growing set of survivors again and again
    to find cycles that the twin never makes: 12% of the instructions of a 15,000-job
    Philly slice (callgrind), and 10% of a busy korea-2025 run even when it collected
    only every 50,000 allocations. Reference counting still frees everything acyclic at
    once, so memory is unchanged; a test runs a twin with failures and preemptions and
    checks that a collection afterwards finds no garbage at all.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check_fields(jobs: Iterable[Job]) -> None:
    """Refuse a job list with a field out of the scheduler's bounds before anything runs,
    naming the first such job and field (``scheduler.config.job_problem``). The scheduler
    would fail such a job at its submit; for a trace or a synthesised workload that is a
    bad input, and a run that quietly counted it as rejected would hide it."""
    for job in jobs:
        problem = job_problem(job)
        if problem is not None:
            msg = f"job {job.id}: {problem}"
            raise ValueError(msg)


def check_unique_ids(ids: Iterable[str]) -> None:
    """Raise a clear error if an id appears twice (a job list for one run)."""
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            msg = f"job id '{job_id}' appears more than once"
            raise ValueError(msg)
        seen.add(job_id)


def _without_id_index(cfg: SchedulerConfig) -> SchedulerConfig:
    """The twin checks a run's ids once up front (:func:`check_unique_ids`): its scheduler
    keeps no index by id."""
    return replace(cfg, tuning=replace(cfg.tuning, index_ids=False))


def _reads_data(jobs: list[Job]) -> bool:
    """Whether some job reads a dataset."""
    return any(j.dataset_bytes > 0.0 for j in jobs)


def _may_span(jobs: list[Job]) -> bool:
    """Whether some job may span sites."""
    return any(j.allow_cross_site for j in jobs)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a run starts when it goes on from a snapshot (a forecast): the time, the
    jobs running then as (job, placement, run start, end), each ending at its end, and
    jobs that arrive later (``arrivals``: drawn future submissions, sorted by
    ``submit_s``, none before ``now``), each at its submit time after the queue."""

    now: float
    running: Sequence[tuple[Job, Placement, float, float]] = ()
    arrivals: Sequence[Job] = ()


class Simulation:
    """One run of the twin over a fixed list of jobs (sorted by submit time), from an empty
    fleet or from a snapshot of a scheduler (``resume``), or over the jobs of a
    :class:`~aifactory.twin.inputs.JobSource` (``source``), made as arrivals reach them
    and let go when they end (see :class:`SimResult` for what the result then holds)."""

    def __init__(
        self,
        topo: Topology,
        jobs: Sequence[Job],
        scheduler_config: SchedulerConfig | None = None,
        config: TwinConfig | None = None,
        failures: FailureInjector | None = None,
        *,
        ids_checked: bool = False,
        resume: Resume | None = None,
        allocations: TwinAllocations | None = None,
        source: JobSource | None = None,
    ) -> None:
        """``ids_checked``: the caller has made sure no two jobs share an id (else it is
        checked here); the scheduler then keeps no index by id (see
        ``SchedulerConfig.index_ids``). ``resume``: start from a snapshot of a scheduler
        instead of an empty fleet (see :class:`Resume`); ``jobs`` are then its queue, in
        queue order, all arriving at the snapshot's time. ``allocations``: hold and charge
        the jobs of projects (:mod:`aifactory.twin.allocgate`); not with ``resume``.
        ``source``: stream the jobs from it instead (``jobs`` empty; the source has checked
        its rows and ids; not with ``resume``)."""
        if allocations is not None and resume is not None:
            msg = "allocations: a run resumed from a snapshot cannot replay allocations"
            raise ValueError(msg)
        if source is not None and (resume is not None or len(jobs)):
            msg = "source: a streamed run takes no job list and no snapshot"
            raise ValueError(msg)
        self.allocations = allocations
        self.topo = topo
        self.source = source
        # A streamed run's jobs made and not yet arrived, the row of the first, and the
        # chunk to make next; the row of each arrived job not yet ended, by id; the rows of
        # the jobs that ended.
        self._ahead: list[Job] = []
        self._ahead_row = 0
        self._next_chunk = 0
        self._row: dict[str, int] = {}
        self._live: dict[int, Job] = {}
        self.finished: FinishedJobs | None = None
        self.resume = resume
        if source is not None:
            self.jobs: list[Job] = []
            # The gate's figures of each job that ends go with its row too.
            self.finished = FinishedJobs(source.n, allocations)
            if allocations is not None:
                allocations.stream()
        else:
            check_fields(jobs)
            if resume is not None:
                check_fields(resume.arrivals)
                self.jobs = [*jobs, *resume.arrivals]
            else:
                self.jobs = sorted(jobs, key=lambda j: j.submit_s)
            if not ids_checked:
                check_unique_ids(j.id for j in self.jobs)
        self.cfg = config or TwinConfig()
        self.sched = Scheduler(topo, _without_id_index(scheduler_config or SchedulerConfig()))
        self.kernel = Kernel(resume.now if resume is not None else 0.0)
        self.observer = Observer(self.sched)
        self.failures = failures
        self.rng = np.random.default_rng(self.cfg.seed)
        self._woken_at = -1.0  # the wake-up time already scheduled (one DECIDE each)
        # Data staging, only for a workload where some job reads a dataset (inert else).
        self.staging: Staging | None = None
        if source.has_datasets if source is not None else _reads_data(self.jobs):
            self.staging = Staging(topo, self.sched)
        # Cross-site runs, only for a workload where some job may span sites (inert else).
        self.spans: Spans | None = None
        if source.may_span if source is not None else _may_span(self.jobs):
            dom_site = topo.pod_site[topo.domain_pod]
            net = self.staging.net if self.staging is not None else Network.of_fleet(topo.fleet)
            shared = self.staging.transfers if self.staging is not None else None
            self.spans = Spans(net, dom_site[topo.node_domain].tolist(), shared)

    def run(self, progress: Progress | None = None) -> SimResult:
        """Simulate until every job has ended (or ``until_s``); returns the result."""
        with no_gc():
            return self._run(progress)

    def _decide(self, now: float) -> None:
        """Run the scheduling pass of this instant and schedule what it decided: an end
        event per started job, and the wake-up the scheduler asked for. (A method, not a
        closure in the loop: compiled, a closure is called through the Python-level
        wrapper and keeps its state in a heap-allocated environment.)"""
        sched = self.sched
        kernel = self.kernel
        if self.allocations is not None:
            self._release(now)
        res = sched.schedule(now)
        staging = self.staging
        spans = self.spans
        if res.started:
            write_s = sched.cfg.checkpoint_write_s
            failures = self.failures
            for job in res.started:
                if staging is not None and staging.started(job, now):
                    # It holds its GPUs for its copy: its end is scheduled when that ends.
                    if failures is not None:
                        failures.started(job)
                    continue
                work = job.duration_s - job.progress_s
                if job.allow_cross_site and job.level == "cross-site":
                    # Spanning sites: its work runs slower (physics.comm, scheduler.spanning).
                    job.slowdown = sched.spanning.slowdown(job, job.placement)
                    work *= job.slowdown
                if spans is not None:
                    spans.started(job, now)
                run = wall_for(work, job.overhead_s, job.checkpoint_s, write_s)
                kernel.at(now + run, END_CLS, FINISH, job, job.moves)
                if failures is not None:
                    failures.started(job)
            if staging is not None:
                self._next_transfer()
        wake = res.wakeup_s
        if wake is not None and wake > now and wake != self._woken_at:
            self._woken_at = wake
            kernel.at(wake, DECIDE_CLS, DECIDE)
        if res.preempted:
            self.observer.preempted(res.preempted)
            if staging is not None:
                for job in res.preempted:
                    staging.interrupted(job, now)
            if spans is not None:
                for job in res.preempted:
                    spans.stopped(job, now)
                self._next_transfer()  # (the gangs' flows changed the copies' rates)
            gate = self.allocations
            if gate is not None:
                for job in res.preempted:
                    gate.ended(job, now, final=False)

    def _next_transfer(self) -> None:
        """Schedule the event of the next copy to complete, if the rates changed."""
        staging = self.staging
        if staging is not None:
            nxt = staging.next_event()
            if nxt is not None:
                self.kernel.at(nxt[0], END_CLS, TRANSFER, None, nxt[1])

    def _admit(self, job: Job, now: float) -> None:
        """An arrived job goes on to the scheduler (through the allocations gate, if any)."""
        gate = self.allocations
        if gate is None:
            if self.sched.submit(job, now) is not None:
                self._ended(job)
        elif gate.offer(job, now):
            self._submit(job, now)

    def _transfers_done(self, now: float, epoch: int) -> None:
        """Copies complete: the jobs that waited for them go on; held runs start work."""
        staging = self.staging
        if staging is None:
            return
        submit, resume = staging.completed(now, epoch)
        for job in submit:
            self._admit(job, now)
        write_s = self.sched.cfg.checkpoint_write_s
        for job in resume:
            run = wall_for(
                job.duration_s - job.progress_s, job.overhead_s, job.checkpoint_s, write_s
            )
            self.kernel.at(job.run_start_s + run, END_CLS, FINISH, job, job.moves)
        self._next_transfer()

    def _submit(self, job: Job, now: float) -> None:
        """Give a job to the scheduler (with allocations: one the gate let through)."""
        if self.sched.submit(job, now) is not None:
            if self.allocations is not None:
                self.allocations.dropped(job)  # refused: it never runs, its reservation goes
            self._ended(job)

    def _release(self, now: float) -> None:
        """Give the scheduler the held jobs whose project can cover them now (before the
        pass of this instant, so that they are in it)."""
        gate = self.allocations
        if gate is not None and gate.pending_release:
            for job in gate.released(now):
                self._submit(job, now)

    def _arrival(self, i: int) -> Job:
        """A streamed run's job at row ``i`` (the next to arrive), made with its chunk."""
        if not self._ahead:
            source = self.source
            assert source is not None
            self._ahead = source.chunk(self._next_chunk)
            self._next_chunk += 1
            self._ahead.reverse()  # (taken from the end, in row order)
        job = self._ahead.pop()
        self._row[job.id] = i
        self._live[i] = job
        return job

    def _ended(self, job: Job) -> None:
        """A job reached its final state: a streamed run stores its row and lets it go,
        with the scheduler's wait record of it."""
        finished = self.finished
        if finished is None:
            return
        sched = self.sched
        if sched.retired:
            sched.retired = finished.take_waits(sched.retired, self._row)
        row = self._row.pop(job.id)
        del self._live[row]
        finished.add(job, row)

    def _in_flight(self, arrived: int) -> tuple[list[Job], list[int]]:
        """A streamed run's jobs not ended at its end, arrived or not (a run cut at its
        horizon), and their rows, in row order (``arrived``: how many arrived)."""
        source = self.source
        assert source is not None
        rows = sorted(self._live)
        jobs = [self._live[i] for i in rows]
        ahead = self._ahead[::-1]
        for c in range(self._next_chunk, source.chunks):
            ahead.extend(source.chunk(c))
        return jobs + ahead, rows + list(range(arrived, arrived + len(ahead)))

    def _arrivals(self, n: int, start: float) -> list[float]:
        """Every job's arrival time, in the run's order, for the kernel's feed (which
        copies them): made in a call of its own so that no variable of the run's loop
        holds a national run's millions of floats while it goes."""
        if self.source is not None:
            return self.source.submit_times()
        if self.resume is not None:  # the snapshot's queue at once, then its arrivals
            later = [j.submit_s for j in self.resume.arrivals]
            return [start] * (n - len(later)) + later
        return [j.submit_s for j in self.jobs]

    def _run(self, progress: Progress | None) -> SimResult:
        t0 = time.perf_counter()
        kernel = self.kernel
        sched = self.sched
        jobs = self.jobs
        source = self.source
        n = source.n if source is not None else len(jobs)
        until = self.cfg.until_s if self.cfg.until_s is not None else float("inf")
        interval = self.cfg.sample_interval_s
        observer = self.observer
        start = 0.0
        resume = self.resume
        if resume is not None:
            start = resume.now
            for job, placement, run_start_s, end_s in resume.running:
                sched.restore_running(job, placement, run_start_s)
                kernel.at(max(end_s, start), END_CLS, FINISH, job, job.moves)
        if n:
            kernel.feed(self._arrivals(n, start), EventClass.ARRIVAL, ARRIVE)
        if n or resume is not None:
            kernel.at(start, EventClass.OBSERVE, SAMPLE)
        if self.failures is not None:
            self.failures.start(kernel, self.rng)
            self.failures.bind(sched)
            # A resumed run's restored jobs hold nodes a failure may hit, and its first
            # failure comes after the snapshot's time (a run from empty starts at 0).
            if resume is not None:
                for job, _, _, _ in resume.running:
                    self.failures.started(job)
            self.failures.schedule_next(start)
        gate = self.allocations
        if gate is not None:
            for when, index in gate.timeline():
                if when >= start:
                    kernel.at(when, END_CLS, GRANT, index)
        self._woken_at = -1.0
        arrived = 0
        next_report = 0.0
        failures = self.failures
        due = False  # something changed at this instant: its pass is still to run
        while True:
            ev = kernel.pop()
            if ev is None:
                break
            now = ev.time
            kind = ev.kind
            payload = ev.payload
            if now > until:
                kernel.now = until
                break
            if kind == FINISH:
                job = payload  # (the event's tag: the job's moves when the run started)
                if job.moves == ev.tag and job.state is RUNNING:
                    sched.finish(job, now)
                    observer.ended(job, now)
                    if self.spans is not None:
                        self.spans.stopped(job, now)
                        self._next_transfer()
                    due = True
                    if gate is not None:
                        gate.ended(job, now, final=True)
                    self._ended(job)
                # else stale: the job moved on since (evicted, and maybe running again)
            elif kind == ARRIVE:
                i = ev.tag  # the feed's position
                job = jobs[i] if source is None else self._arrival(i)
                arrived = i + 1
                if self.staging is not None and job.dataset_bytes > 0.0:
                    if self.staging.arrive(job, now):
                        self._admit(job, now)
                    else:
                        self._next_transfer()
                else:
                    self._admit(job, now)
                due = True
                if progress is not None and i >= next_report:
                    progress(i / n)
                    next_report = i + n / 200
            elif kind == DECIDE:
                self._decide(now)
                continue
            elif kind == SAMPLE:
                observer.sample(now)
                if self.staging is not None:
                    self.staging.sample()
                if self.spans is not None:
                    self.spans.sample()
                if len(kernel):
                    kernel.at(now + interval, EventClass.OBSERVE, SAMPLE)
                continue
            elif kind == TRANSFER:
                self._transfers_done(now, ev.tag)
                due = True
            elif kind == GRANT:
                if gate is not None:
                    gate.at(int(payload), now)
                due = True
            elif failures is not None:
                # Failures stop once there is no work left, so the run can drain.
                busy = arrived < n or sched.running_count > 0 or sched.pending_count > 0
                busy = busy or (self.staging is not None and len(self.staging.transfers) > 0)
                failures.handle(kind, payload, now, sched, kernel, keep_going=busy)
                due = True
                if gate is not None:
                    for job in failures.interrupted:
                        gate.ended(job, now, final=False)
                if self.staging is not None:
                    for job in failures.interrupted:
                        self.staging.interrupted(job, now)
                if self.spans is not None:
                    for job in failures.interrupted:
                        self.spans.stopped(job, now)
                    self._next_transfer()
            # The pass of this instant runs once every completion, failure and arrival of
            # the instant has been handled: the DECIDE event, handled at once instead of
            # going through the heap (same order, one heap push and pop fewer per pass).
            if due and kernel.next_is_later(now, DECIDE_CLS):
                due = False
                kernel.handled_inline()
                self._decide(now)
        if progress is not None:
            progress(1.0)
        if gate is not None:
            gate.close(kernel.now, sched.running_jobs())
        observer.close(kernel.now)
        if self.staging is not None:
            self.staging.transfers.advance(kernel.now)  # bytes moved up to the end
        if self.spans is not None:
            self.spans.close(kernel.now)
        rows: list[int] = []
        finished = self.finished
        if finished is not None:
            finished.flush()
            jobs, rows = self._in_flight(arrived)
            self._live = {}
            self._row = {}
            # Every job is made: the source's columns are not needed past here (the
            # summary is made while a caller may still hold this simulation).
            self.source = None
        return SimResult(
            jobs=jobs,
            rows=rows,
            finished=finished,
            scheduler=sched,
            observer=observer,
            events=kernel.processed,
            wall_s=time.perf_counter() - t0,
            end_s=kernel.now,
            rejected=dict(sched.rejected),
            failures=self.failures.count if self.failures is not None else 0,
            allocations=gate,
            staging=self.staging,
            spans=self.spans,
        )
