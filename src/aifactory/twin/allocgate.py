"""Allocations in the twin: hold jobs their project cannot cover, charge every run (issue #19 §4).

The twin enforces grants the way the service's loop does (``service/allocgate.py``), with
the same :class:`~aifactory.allocations.Ledger`:

- **Admission.** A job of a project reaches the scheduler (``Scheduler.submit``) only
  when the project's allocations active now cover its whole request, GPUs x time limit
  (the twin's time limit is the job's estimate), on top of what the project's jobs
  already given to the scheduler may still draw: each reserves its GPUs x time limit
  until it ends for good (Slurm's "safe" limits, so many jobs admitted at once cannot
  overrun a balance together). A job not covered is held here, waiting with reason
  ``allocation``, and offered again when its project's room can have grown: a grant's
  period starts, a top-up lands, or one of its jobs ends for good and frees its
  reservation. An allocation that allows overdraft lets it start anyway, at low priority
  (the service's ``low`` class, -100) and preemptible.
- **Charging.** Every run interval is charged whole when it ends, whatever ended it
  (completion, preemption, failure), as Slurm charges: GPUs x (end - start), the class
  it ran on, drawn only within each allocation's period (the ledger's rule); what no
  balance holds is the overrun, recorded, never refused. A run still going at the end of
  the twin is charged up to the end. So a job's charges add up to exactly the
  GPU-seconds it held (``attained`` plus its open run), in the same order of additions.

A job asking for no GPU class is covered for the dearest class its tenant has quota in
(B200-equivalent rate), a conservative guess made before placement; it is charged for
the class it ran on. Reservations are kept per project and class in GPU-seconds and
added to the request the ledger is asked about (converted at the B200-equivalent rates
when the project draws on normalised grants). For a project with one grant whose period
holds the reservations this is the service's answer; otherwise it is at least as strict
(the service's what-if charges draw a reservation only within each grant's period).

Held jobs never reach the scheduler, so the time they wait is counted here
(``waited``), a job held at the end reads ``pending`` with reason ``allocation``, and the
time series' pending jobs and GPUs (what the scheduler holds) leave them out.

The per-job figures (``project``, ``waited``, ``charged``) are kept for every job of a
project, unless the run streams its jobs (:meth:`TwinAllocations.stream`): then a job's
figures are handed over when it ends for good (:meth:`TwinAllocations.retire`) to be kept
with its results row, and the ledger keeps no record of each charge, so that the gate's
memory follows the jobs in flight, as the run's does.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aifactory.allocations import Allocation, AllocState, Cover, Ledger
from aifactory.allocations.model import GRANTED, SECONDS_PER_HOUR
from aifactory.twin.allocfile import AllocationsFile, TopupSpec, project_of, shares_by_tenant
from aifactory.workload.job import RUNNING, Job

REASON = "allocation"
LOW_PRIORITY = -100  # the service's PriorityClass.LOW (service/schemas.py)
WHO = "twin"


@dataclass(slots=True)
class ProjectBook:
    """What the gate knows of one project while the twin runs."""

    name: str
    reserved: dict[str, float] = field(default_factory=dict)  # class -> GPU-seconds
    reserving: dict[str, int] = field(default_factory=dict)  # class -> jobs reserving it
    given: dict[str, tuple[str, float]] = field(default_factory=dict)  # job -> (class, GPU-s)
    held: dict[str, tuple[Job, float]] = field(default_factory=dict)  # job -> (job, since)
    # the held jobs by the class they are covered for, each list sorted by (ask, arrival);
    # ask: GPUs x estimate in GPU-seconds, arrival: the gate's hold counter
    asks: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    jobs: int = 0
    overdraft_jobs: int = 0


class TwinAllocations:
    """The twin's allocation gate and ledger for one run (see the module docstring)."""

    def __init__(
        self,
        spec: AllocationsFile,
        rates: Mapping[str, float],
        tenant_classes: Mapping[str, Sequence[str]],
        *,
        seed: int,
    ) -> None:
        """``rates``: B200-equivalents per GPU of each class; ``tenant_classes``: the
        classes each tenant has quota in (for jobs that name none)."""
        self.spec = spec
        self.rates = dict(rates)
        self.ledger = Ledger(spec.allocations(), self.rates)
        self._shares = shares_by_tenant(spec)
        self._seed = seed
        self._dearest = {
            t: max(cs, key=lambda c: (self.rates.get(c, 0.0), c))
            for t, cs in tenant_classes.items()
            if cs
        }
        self._fallback = max(self.rates, key=lambda c: (self.rates[c], c)) if self.rates else ""
        self.books = {p.name: ProjectBook(p.name) for p in spec.projects}
        self._grant_ids: dict[str, list[str]] = {p.name: [] for p in spec.projects}
        for g in spec.grants:
            self._grant_ids[g.project].append(g.id)
        self.project: dict[str, str] = {}  # job id -> project, for jobs of a project
        self.waited: dict[str, float] = {}  # job id -> seconds held on its allocation
        self.charged: dict[str, float] = {}  # job id -> GPU-seconds charged
        self._runs: dict[str, int] = {}  # job id -> run intervals charged
        self._index = {p.name: i for i, p in enumerate(spec.projects)}
        self._dirty: set[str] = set()  # projects whose room may have grown
        self._holds = 0  # jobs held so far: the arrival order among held jobs
        self.topups_applied = 0

    def stream(self) -> None:
        """The run streams its jobs: keep no charge records (the twin's charge keys,
        ``job:run``, cannot repeat) and expect :meth:`retire` for each job that ends."""
        self.ledger.keep_charges = False

    def figures(self, job_id: str) -> tuple[int, float, float]:
        """A job's project (its place in the file, -1: none), seconds held on its
        allocation and GPU-seconds charged (zeros for a job of no project)."""
        name = self.project.get(job_id)
        if name is None:
            return -1, 0.0, 0.0
        return self._index[name], self.waited.get(job_id, 0.0), self.charged.get(job_id, 0.0)

    def retire(self, job_id: str) -> tuple[int, float, float]:
        """:meth:`figures` of a job that left for good, forgotten here (nothing is charged
        to a job or counted for it once it has ended)."""
        out = self.figures(job_id)
        if out[0] >= 0:
            del self.project[job_id]
            self.waited.pop(job_id, None)
            self.charged.pop(job_id, None)
            self._runs.pop(job_id, None)
        return out

    # -- the timeline of grants ------------------------------------------------------

    def timeline(self) -> list[tuple[float, int]]:
        """(time, index) of each moment that can let held jobs go: every grant's start
        (index -1 - grant) and every top-up (index >= 0), in time order."""
        out: list[tuple[float, int]] = [
            (g.start_h * SECONDS_PER_HOUR, -1 - i)
            for i, g in enumerate(self.spec.grants)
            if g.gpu_hours > 0
        ]
        out += [(t.at_h * SECONDS_PER_HOUR, i) for i, t in enumerate(self.spec.topups)]
        out.sort()
        return out

    def at(self, index: int, now: float) -> None:
        """Apply the timeline's entry ``index`` at ``now`` (see :meth:`timeline`)."""
        if index >= 0:
            top: TopupSpec = self.spec.topups[index]
            alloc = self.ledger.allocation(top.grant)
            alloc = alloc.settle(now, self.ledger.balance(top.grant))
            alloc = alloc.topup(top.gpu_hours, who=WHO, at=now, detail="top-up from the file")
            self.ledger.replace(alloc)  # then settled on the balance it now has
            self.ledger.replace(alloc.settle(now, self.ledger.balance(top.grant)))
            self.topups_applied += 1
            self._dirty.add(alloc.project)
        else:
            self._dirty.add(self.spec.grants[-1 - index].project)

    # -- admission -------------------------------------------------------------------

    def cover_class(self, job: Job) -> str:
        """The class a job is covered for before it is placed (see the module docstring)."""
        if job.gpu_class is not None:
            return job.gpu_class
        if job.gpu_classes:
            return max(job.gpu_classes, key=lambda c: (self.rates.get(c, 0.0), c))
        return self._dearest.get(job.tenant, self._fallback)

    def _need(self, book: ProjectBook, gpu_class: str, gpu_s: float) -> float:
        """The request plus the project's reservations, in GPU-seconds of ``gpu_class``."""
        if not book.reserved:
            return gpu_s
        normalised = any(a.gpu_class is None for a in self._grants_of(book.name))
        rate = self.rates.get(gpu_class, 0.0)
        if normalised and rate > 0:
            units = sum(s * self.rates.get(c, 0.0) for c, s in book.reserved.items())
            return gpu_s + units / rate
        return gpu_s + book.reserved.get(gpu_class, 0.0)

    def _grants_of(self, project: str) -> list[Allocation]:
        """The project's allocations as the ledger holds them now."""
        return [self.ledger.allocation(g) for g in self._grant_ids[project]]

    def _covers(self, book: ProjectBook, gpu_class: str, gpu_s: float, now: float) -> bool:
        """Whether the ledger would let a request of ``gpu_s`` in ``gpu_class`` go now."""
        need = self._need(book, gpu_class, gpu_s)
        return self.ledger.explain(book.name, gpu_class, need, now)[0] is not Cover.DENIED

    def _try(self, book: ProjectBook, job: Job, now: float) -> bool:
        """Give ``job`` to the scheduler if covered (reserving its request); else False."""
        gpu_class = self.cover_class(job)
        gpu_s = job.gpus * job.estimate_s
        cover, _why = self.ledger.explain(
            book.name, gpu_class, self._need(book, gpu_class, gpu_s), now
        )
        if cover is Cover.DENIED:
            return False
        if cover is Cover.OVERDRAFT:
            job.priority = LOW_PRIORITY
            job.preemptible = True
            book.overdraft_jobs += 1
        book.given[job.id] = (gpu_class, gpu_s)
        book.reserved[gpu_class] = book.reserved.get(gpu_class, 0.0) + gpu_s
        book.reserving[gpu_class] = book.reserving.get(gpu_class, 0) + 1
        return True

    def offer(self, job: Job, now: float) -> bool:
        """A job arrives: True if it goes to the scheduler now, False if it is held."""
        name = project_of(self._shares, self._seed, job.tenant, job.id)
        if name is None:
            return True
        self.project[job.id] = name
        book = self.books[name]
        book.jobs += 1
        if self._try(book, job, now):
            return True
        book.held[job.id] = (job, now)
        key = (job.gpus * job.estimate_s, self._holds, job.id)
        insort(book.asks.setdefault(self.cover_class(job), []), key)
        self._holds += 1
        return False

    def released(self, now: float) -> list[Job]:
        """The held jobs of every project whose room may have grown that are covered now
        (in arrival order within a project, projects by name).

        The rule is: offer each held job again in arrival order, each release reserving
        its request before the next is asked about. The ledger's answer is monotone in
        the request, and within one pass requests only grow (reservations are added,
        nothing is charged or freed), so a job whose ask is at least one already refused
        in its class is refused too. That lets the pass ask the ledger only about the
        jobs that can go: per class, the held jobs whose ask fits the room at the start
        (found by bisection on the asks), then, in arrival order, those still below the
        smallest ask refused so far. The cost follows what can be released, not what is
        held.
        """
        out: list[Job] = []
        for name in sorted(self._dirty):
            book = self.books[name]
            if not book.held or not self._any_active(name, now):
                continue
            for job_id in self._release_book(book, now):
                job, since = book.held.pop(job_id)
                self.waited[job_id] = self.waited.get(job_id, 0.0) + (now - since)
                out.append(job)
        self._dirty.clear()
        return out

    def _fitting(self, book: ProjectBook, gpu_class: str, now: float) -> int:
        """How many of the class's held jobs, smallest ask first, the room fits one at a
        time at the start of a pass (those beyond are refused for the whole pass)."""
        asks = book.asks[gpu_class]
        if not self._covers(book, gpu_class, asks[0][0], now):
            return 0
        lo, hi = 1, len(asks)  # asks[:lo] fit; asks[hi:] are not known to
        if self._covers(book, gpu_class, asks[-1][0], now):
            return hi
        hi -= 1  # the largest is refused
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._covers(book, gpu_class, asks[mid - 1][0], now):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _release_book(self, book: ProjectBook, now: float) -> list[str]:
        """The held jobs of ``book`` covered now under the arrival-order rule (see
        :meth:`released`), reserved and taken out of ``book.asks``."""
        candidates: list[tuple[int, float, str, str]] = []
        for gpu_class, asks in book.asks.items():
            k = self._fitting(book, gpu_class, now)
            candidates += [(seq, ask, job_id, gpu_class) for ask, seq, job_id in asks[:k]]
        if not candidates:
            return []
        candidates.sort()
        refused: dict[str, float] = {}  # class -> the smallest ask refused in this pass
        out: list[str] = []
        for seq, ask, job_id, gpu_class in candidates:
            if ask >= refused.get(gpu_class, float("inf")):
                continue
            job = book.held[job_id][0]
            if self._try(book, job, now):
                asks = book.asks[gpu_class]
                del asks[bisect_left(asks, (ask, seq, job_id))]
                if not asks:
                    del book.asks[gpu_class]
                out.append(job_id)
            else:
                refused[gpu_class] = ask
        return out

    def _any_active(self, project: str, now: float) -> bool:
        """Whether any grant of ``project`` is in its period now with a balance above zero."""
        return any(
            a.state in GRANTED and a.in_period(now) and self.ledger.balance(a.id) > 0
            for a in self._grants_of(project)
        )

    @property
    def pending_release(self) -> bool:
        """Whether some project's room may have grown since the last :meth:`released`."""
        return bool(self._dirty)

    # -- charging --------------------------------------------------------------------

    def ended(self, job: Job, now: float, *, final: bool) -> None:
        """A run interval of ``job`` ended at ``now``: charge it; ``final``: the job left
        the scheduler for good (its reservation is freed)."""
        name = self.project.get(job.id)
        if name is None:
            return
        self._charge(name, job, now, "")
        if final:
            self.dropped(job)

    def dropped(self, job: Job) -> None:
        """A given job left the scheduler for good (ended, or refused at submit)."""
        name = self.project.get(job.id)
        if name is None:
            return
        book = self.books[name]
        given = book.given.pop(job.id, None)
        if given is not None:
            gpu_class, gpu_s = given
            book.reserving[gpu_class] -= 1
            if book.reserving[gpu_class]:
                book.reserved[gpu_class] = max(book.reserved[gpu_class] - gpu_s, 0.0)
            else:  # the last of its class: no rounding left behind
                del book.reserved[gpu_class]
                del book.reserving[gpu_class]
            self._dirty.add(name)

    def _charge(self, name: str, job: Job, now: float, suffix: str) -> None:
        gpu_s = job.gpus * max(0.0, now - job.run_start_s)  # as Scheduler._stop counts it
        n = self._runs.get(job.id, 0) + 1
        self._runs[job.id] = n
        self.ledger.charge(
            name,
            job.placed_class,
            gpu_s,
            job.run_start_s,
            max(now, job.run_start_s),
            key=f"{job.id}:{n}{suffix}",
        )
        self.charged[job.id] = self.charged.get(job.id, 0.0) + gpu_s

    def close(self, now: float, jobs: Iterable[Job]) -> None:
        """The twin stops at ``now``: charge the runs still going up to ``now``, and count
        the held jobs' wait up to it."""
        for job in jobs:
            name = self.project.get(job.id)
            if name is not None and job.state is RUNNING:
                self._charge(name, job, now, ":open")
        for book in self.books.values():
            for job_id, (_job, since) in book.held.items():
                self.waited[job_id] = self.waited.get(job_id, 0.0) + max(0.0, now - since)

    def is_held(self, job: Job) -> bool:
        """Whether ``job`` waits on its allocation now (it never reached the scheduler)."""
        name = self.project.get(job.id)
        return name is not None and job.id in self.books[name].held

    def state_at(self, grant: str, now: float) -> AllocState:
        """A grant's state at ``now`` as the clock and its balance leave it."""
        return self.ledger.state(grant, now)
