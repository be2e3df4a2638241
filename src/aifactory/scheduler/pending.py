"""The pending jobs: one queue per tenant, and counts of what waits.

Decides nothing: the cycle reads the queues' heads and decides which job starts. May
touch only its own queues and counts and a pending job's queue fields on its seat
(``qseq``, ``in_queue``, and the CLOSED memo it resets).

A tenant's queue is a :class:`~aifactory.heap.RowHeap` of rows (the policy's job key as
two floats, the job's queue sequence number, its seat's index). Rows are deleted lazily:
a row is live while its seat's ``qseq`` is the row's sequence number, which is -1 unless
the job is pending (a job that starts, is cancelled or is queued again leaves a stale
row, dropped when it reaches the head: :meth:`Pending.clean`). A new submit is not pushed at once
(``in_queue`` False): the next pass tries it first and pushes it only if it waits (most
jobs on a lightly loaded fleet start at once, and would leave a stale row); until then it
is among :attr:`Pending.fresh`.
"""

from __future__ import annotations

from aifactory.heap import RowHeap
from aifactory.scheduler.policies import Policy
from aifactory.scheduler.queue import key_pair
from aifactory.scheduler.seat import Seat
from aifactory.scheduler.shortcuts import Shortcuts
from aifactory.workload.job import PENDING, Job


class Pending:
    """Tenant queues of pending jobs, and their counts by tenant and gang size."""

    def __init__(
        self, seats: list[Seat], policy: Policy, n_tenants: int, shortcuts: Shortcuts
    ) -> None:
        self.seats = seats  # the scheduler's seats by index (shared, not copied)
        self.policy = policy
        self.shortcuts = shortcuts
        self.queues = [RowHeap() for _ in range(n_tenants)]
        self.seq = 0  # the last queue sequence number given out
        self.count = 0  # pending jobs
        self.gpus = 0  # GPUs they ask for
        # Per tenant, GPU-seconds of work left in its pending jobs (the backlog an observer
        # samples for the stability verdict; read by nothing here).
        self.work_by_tenant = [0.0] * n_tenants
        # Per tenant, pending jobs by gang size (a size whose count reaches 0 is dropped).
        self.sizes: list[dict[int, int]] = [{} for _ in range(n_tenants)]
        # The smallest of each tenant's pending sizes, 0 when unknown (its last job of
        # that size left). Invariant: nonzero only when it is min(sizes[t]).
        self.smallest = [0] * n_tenants
        self.fresh: list[Seat] = []  # seats of jobs made pending since the last pass

    def add(self, seat: Seat, *, push: bool) -> None:
        """Make the seat's job pending with a new queue sequence number; ``push`` puts it
        on its tenant's queue now (else the next pass does, if it waits)."""
        self.seq += 1
        seat.qseq = self.seq
        seat.in_queue = push
        seat.resv_epoch = -1
        t = seat.tix
        gpus = seat.gpus
        if push:
            k0, k1 = key_pair(self.policy.job_key(seat.job))
            self.queues[t].push(k0, k1, self.seq, seat.index)
        self.count += 1
        self.gpus += gpus
        work = gpus * seat.job.remaining_s
        seat.pend_work = work
        # (x[i] = x[i] + d, not x[i] += d: compiled, an augmented item assignment is a generic
        # PyNumber_InPlaceAdd on boxed objects; spelled out, the add is typed)
        self.work_by_tenant[t] = self.work_by_tenant[t] + work
        sizes = self.sizes[t]
        sizes[gpus] = sizes.get(gpus, 0) + 1
        smallest = self.smallest[t]
        if smallest and gpus < smallest:
            self.smallest[t] = gpus
        self.fresh.append(seat)

    def remove(self, seat: Seat) -> None:
        """The seat's job is pending no more (it starts or is cancelled); its row goes
        stale (``qseq`` is -1 unless the job is pending: a row is live exactly when its
        sequence number is its seat's)."""
        seat.qseq = -1
        gpus = seat.gpus
        t = seat.tix
        self.count -= 1
        self.gpus -= gpus
        self.work_by_tenant[t] = self.work_by_tenant[t] - seat.pend_work
        sizes = self.sizes[t]
        left = sizes[gpus] - 1
        if left:
            sizes[gpus] = left
        else:
            del sizes[gpus]
            if gpus == self.smallest[t]:
                self.smallest[t] = 0

    def take_fresh(self) -> list[Seat]:
        """The jobs made pending since the last call (the list is handed over)."""
        fresh = self.fresh
        if fresh:
            self.fresh = []
        return fresh

    def push(self, seat: Seat) -> None:
        """Put a pending job on its tenant's queue."""
        k0, k1 = key_pair(self.policy.job_key(seat.job))
        self.push_row(seat, k0, k1)

    def push_row(self, seat: Seat, k0: float, k1: float) -> None:
        """Put a pending job on its tenant's queue under a key already computed."""
        seat.in_queue = True
        self.queues[seat.tix].push(k0, k1, seat.qseq, seat.index)

    def clean(self, q: RowHeap) -> bool:
        """Drop stale rows at the head of ``q``; True if a live job is at the head."""
        seats = self.seats
        while len(q):
            if seats[q.ref[0]].qseq == q.seq[0]:
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
        """Every pending job (queued or submitted since the last pass), in the order they
        became pending (their queue sequence numbers)."""
        seats = self.seats
        seen = [
            seats[q.ref[i]]
            for q in self.queues
            for i in range(len(q))
            if seats[q.ref[i]].qseq == q.seq[i]
        ]
        seen.extend(s for s in self.fresh if not s.in_queue and s.job.state is PENDING)
        seen.sort(key=_qseq)
        return [s.job for s in seen]


def _qseq(seat: Seat) -> int:
    return seat.qseq
