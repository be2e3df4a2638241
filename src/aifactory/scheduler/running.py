"""The running jobs and what they hold: the one place where quota, usage and the cluster
are charged and released.

Decides nothing: the cycle and preemption decide which job starts where and which stops;
:class:`Running` books it. It may touch the cluster's free GPUs, the quota book, the
decayed usage, a job's placement fields (``gpu_class``'s index ``klass``, ``placement``,
``pnode``/``pmask``, ``rpos``) and its own indices:

- per tenant and GPU class, the running jobs (a list with swap-remove: each job keeps its
  place in ``job.rpos``, so a start and an end hash nothing, and preemption lists
  candidates without walking a set's emptied slots);
- per tenant and class, and per tenant over all classes, counts of running preemptible
  jobs by priority (``min()`` of the keys is the lowest priority a job could evict);
- per class, the running jobs by estimated end (EASY's reservations read it): a
  :class:`~aifactory.heap.RowHeap` of (estimated end, job index, run epoch) rows, built
  the first time a class needs a reservation, with lazy deletion. Invariant: a row is
  live while its job runs the run of that epoch; ``ends_stale`` counts rows that are not
  (at least), and the heap is rebuilt once most of it is stale.
"""

from __future__ import annotations

from aifactory.heap import RowHeap
from aifactory.scheduler.cluster import ClusterState, Placement
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.shortcuts import Shortcuts
from aifactory.scheduler.usage import DecayedUsage
from aifactory.workload.job import Job


def _count(counts: dict[int, int], key: int, delta: int) -> None:
    """Add ``delta`` to a count, dropping keys that reach zero (so ``min(counts)`` is the
    smallest key with a positive count)."""
    left = counts.get(key, 0) + delta
    if left:
        counts[key] = left
    else:
        del counts[key]


class Running:
    """Running jobs per tenant and GPU class, their charges, and the index by end."""

    def __init__(
        self,
        cs: ClusterState,
        quota: QuotaBook,
        usage: DecayedUsage,
        n_tenants: int,
        shortcuts: Shortcuts,
    ) -> None:
        n_classes = len(cs.class_free)
        self.shortcuts = shortcuts
        self.cs = cs
        self.quota = quota
        self.usage = usage
        self.count = 0  # running jobs (by_tc holds them)
        self.by_tc: list[list[list[Job]]] = [
            [[] for _ in range(n_classes)] for _ in range(n_tenants)
        ]
        self.prio_tc: list[list[dict[int, int]]] = [
            [{} for _ in range(n_classes)] for _ in range(n_tenants)
        ]
        self.prio_t: list[dict[int, int]] = [{} for _ in range(n_tenants)]
        self.ends: list[RowHeap | None] = [None] * n_classes
        self.ends_stale = [0] * n_classes

    def attach(self, job: Job, gpu_class: int, placement: Placement, now: float) -> None:
        """Charge quota, usage and the indices for ``job`` holding ``placement`` (its GPUs
        are already taken from the cluster)."""
        job.klass = gpu_class
        job.placement = placement
        if len(placement) == 1 and self.shortcuts.on:  # ONE_NODE (see shortcuts)
            job.pnode, job.pmask = placement[0]
        else:
            job.pnode = -1
        t = job.tix
        self.quota.add(t, gpu_class, job.gpus)
        self.usage.change(t, gpu_class, job.gpus, now)
        self.count += 1
        bag = self.by_tc[t][gpu_class]
        job.rpos = len(bag)
        bag.append(job)
        if job.preemptible:
            _count(self.prio_tc[t][gpu_class], job.priority, 1)
            _count(self.prio_t[t], job.priority, 1)

    def detach(self, job: Job, now: float) -> None:
        """Free a running job's GPUs and quota (the inverse of :meth:`attach`; the job
        keeps its placement, so :meth:`reattach` can give it the same GPUs back). Raises,
        changing nothing, for a job that is not running here."""
        gpu_class = job.klass
        t = job.tix
        bag = self.by_tc[t][gpu_class]
        pos = job.rpos
        if pos < 0 or pos >= len(bag) or bag[pos] is not job:  # (checked before any change)
            msg = f"job {job.id} is not among its class's running jobs"
            raise AssertionError(msg)
        if job.pnode >= 0:
            self.shortcuts.one_node += 1
            self.cs.give(job.pnode, job.pmask)
        else:
            self.cs.release(job.placement)
        self.quota.add(t, gpu_class, -job.gpus)
        self.usage.change(t, gpu_class, -job.gpus, now)
        self.count -= 1
        last = bag.pop()
        if last is not job:
            bag[pos] = last
            last.rpos = pos
        job.rpos = -1
        if job.preemptible:
            _count(self.prio_tc[t][gpu_class], job.priority, -1)
            _count(self.prio_t[t], job.priority, -1)

    def reattach(self, job: Job, now: float) -> None:
        """Give a detached job exactly its GPUs back, and charge it again."""
        self.cs.reserve_exact(job.placement)
        self.attach(job, job.klass, job.placement, now)

    # ---------------------------------------------------------------- the index by end
    def ended_run(self, job: Job) -> None:
        """The run of ``job`` was recorded in the index by end and is over: its row goes
        stale (lazy deletion); the class's heap is rebuilt once most rows are stale."""
        gpu_class = job.klass
        ends = self.ends[gpu_class]
        if ends is not None:
            stale = self.ends_stale[gpu_class] + 1
            self.ends_stale[gpu_class] = stale
            if stale > 1024 and 2 * stale > len(ends):
                self.build_ends(gpu_class)

    def withdrawn_run(self, job: Job) -> None:
        """The run of ``job`` was taken back by the pass that started it: its row in the
        index by end (if any) goes stale; no rebuild (the pass that withdrew it is still
        reading the index's classes)."""
        if self.ends[job.klass] is not None:
            self.ends_stale[job.klass] += 1

    def index_end(self, job: Job) -> None:
        """Record the run ``job`` just started, by its estimated end (if the class's index
        exists yet)."""
        ends = self.ends[job.klass]
        if ends is not None:
            ends.push(job.est_end_s, float(job.index), job.run_epoch, job.index)

    def ends_of(self, gpu_class: int) -> RowHeap:
        """The class's heap of running jobs by estimated end; built on first use."""
        ends = self.ends[gpu_class]
        if ends is None:
            ends = self.build_ends(gpu_class)
        return ends

    def build_ends(self, gpu_class: int) -> RowHeap:
        """The class's index by end from its running jobs (rows ordered by end, then job)."""
        ends = RowHeap()
        for by_class in self.by_tc:
            for j in by_class[gpu_class]:
                ends.extend(j.est_end_s, float(j.index), j.run_epoch, j.index)
        ends.heapify()
        self.ends[gpu_class] = ends
        self.ends_stale[gpu_class] = 0
        return ends

    def jobs(self, jobs: list[Job]) -> list[Job]:
        """Every running job, by dense index (``jobs``: the scheduler's jobs by index)."""
        indices = [j.index for by_class in self.by_tc for bag in by_class for j in bag]
        indices.sort()
        return [jobs[i] for i in indices]
