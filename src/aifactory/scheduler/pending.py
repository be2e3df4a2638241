"""The pending jobs: one queue per tenant, and counts of what waits.

Decides nothing: the cycle reads the queues' heads and decides which job starts. May
touch only its own queues and counts and a pending job's queue fields (``qseq``,
``in_queue``).

A tenant's queue is a :class:`~aifactory.heap.RowHeap` of rows (the policy's job key as
two floats, the job's queue sequence number, the job's index). Rows are deleted lazily:
a row is live while its job is pending and its ``qseq`` is the row's sequence number (a
job that starts, is cancelled or is queued again leaves a stale row, dropped when it
reaches the head: :meth:`Pending.clean`). A new submit is not pushed at once
(``in_queue`` False): the next pass tries it first and pushes it only if it waits (most
jobs on a lightly loaded fleet start at once, and would leave a stale row); until then it
is among :attr:`Pending.fresh`.
"""

from __future__ import annotations

from aifactory.heap import RowHeap
from aifactory.scheduler.policies import Policy
from aifactory.scheduler.queue import key_pair
from aifactory.scheduler.shortcuts import Shortcuts
from aifactory.workload.job import PENDING, Job


class Pending:
    """Tenant queues of pending jobs, and their counts by tenant and gang size."""

    def __init__(
        self, jobs: list[Job], policy: Policy, n_tenants: int, shortcuts: Shortcuts
    ) -> None:
        self.jobs = jobs  # the scheduler's jobs by index (shared, not copied)
        self.policy = policy
        self.shortcuts = shortcuts
        self.queues = [RowHeap() for _ in range(n_tenants)]
        self.seq = 0  # the last queue sequence number given out
        self.count = 0  # pending jobs
        self.gpus = 0  # GPUs they ask for
        # Per tenant, pending jobs by gang size (a size whose count reaches 0 is dropped).
        self.sizes: list[dict[int, int]] = [{} for _ in range(n_tenants)]
        # The smallest of each tenant's pending sizes, 0 when unknown (its last job of
        # that size left). Invariant: nonzero only when it is min(sizes[t]).
        self.smallest = [0] * n_tenants
        self.fresh: list[Job] = []  # jobs made pending since the last pass

    def add(self, job: Job, *, push: bool) -> None:
        """Make ``job`` pending with a new queue sequence number; ``push`` puts it on its
        tenant's queue now (else the next pass does, if it waits)."""
        self.seq += 1
        job.qseq = self.seq
        job.in_queue = push
        job.resv_epoch = -1
        if push:
            k0, k1 = key_pair(self.policy.job_key(job))
            self.queues[job.tix].push(k0, k1, self.seq, job.index)
        self.count += 1
        self.gpus += job.gpus
        sizes = self.sizes[job.tix]
        sizes[job.gpus] = sizes.get(job.gpus, 0) + 1
        smallest = self.smallest[job.tix]
        if smallest and job.gpus < smallest:
            self.smallest[job.tix] = job.gpus
        self.fresh.append(job)

    def remove(self, job: Job) -> None:
        """``job`` is pending no more (it starts or is cancelled); its row goes stale."""
        self.count -= 1
        self.gpus -= job.gpus
        sizes = self.sizes[job.tix]
        left = sizes[job.gpus] - 1
        if left:
            sizes[job.gpus] = left
        else:
            del sizes[job.gpus]
            if job.gpus == self.smallest[job.tix]:
                self.smallest[job.tix] = 0

    def take_fresh(self) -> list[Job]:
        """The jobs made pending since the last call (the list is handed over)."""
        fresh = self.fresh
        if fresh:
            self.fresh = []
        return fresh

    def push(self, job: Job) -> None:
        """Put a pending job on its tenant's queue."""
        k0, k1 = key_pair(self.policy.job_key(job))
        self.push_row(job, k0, k1)

    def push_row(self, job: Job, k0: float, k1: float) -> None:
        """Put a pending job on its tenant's queue under a key already computed."""
        job.in_queue = True
        self.queues[job.tix].push(k0, k1, job.qseq, job.index)

    def clean(self, q: RowHeap) -> bool:
        """Drop stale rows at the head of ``q``; True if a live job is at the head."""
        jobs = self.jobs
        while len(q):
            job = jobs[q.ref[0]]
            if job.state is PENDING and job.qseq == q.seq[0]:
                return True
            q.pop()
        return False

    def smallest_of(self, tenant: int) -> int:
        """The smallest gang ``tenant`` has pending; 0 when it has none (SMALLEST: kept
        while it can only shrink, see :mod:`~aifactory.scheduler.shortcuts`)."""
        sizes = self.sizes[tenant]
        if not sizes:
            return 0
        if not self.shortcuts.on:
            return min(sizes)
        smallest = self.smallest[tenant]
        if not smallest:
            smallest = self.smallest[tenant] = min(sizes)
        else:
            self.shortcuts.smallest += 1
        return smallest

    def waiting(self) -> list[Job]:
        """Every pending job, in no particular order (queued or submitted since the last
        pass)."""
        jobs = self.jobs
        seen = [
            jobs[q.ref[i]]
            for q in self.queues
            for i in range(len(q))
            if jobs[q.ref[i]].state is PENDING and jobs[q.ref[i]].qseq == q.seq[i]
        ]
        seen.extend(j for j in self.fresh if not j.in_queue and j.state is PENDING)
        return seen
