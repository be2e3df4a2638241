"""The running jobs and what they hold: the one place where quota, usage and the cluster
are charged and released.

Decides nothing: the cycle and preemption decide which job starts where and which stops;
:class:`Running` books it. It may touch the cluster's free GPUs, the quota book, the
decayed usage, a job's ``placement`` and ``placed_class``, its seat's placement fields
(``run_class``, ``pnode``/``pmask``, ``rpos``) and its own indices:

- per tenant and GPU class, the running jobs' seats (a list with swap-remove: each seat
  keeps its place in ``seat.rpos``, so a start and an end hash nothing, and preemption lists
  candidates without walking a set's emptied slots);
- per tenant and class, and per tenant over all classes, counts of running preemptible
  jobs by priority (``min()`` of the keys is the lowest priority a job could evict), read
  through :meth:`Running.prios_tc` and :meth:`Running.prios_t`. Only preemption reads
  them, so with the shortcuts on they are counted from the running lists the first time
  it asks, and kept from then on (PRIORITIES, see :mod:`~aifactory.scheduler.shortcuts`):
  a fleet that never preempts pays no count per start and end;
- per class, the running jobs by estimated end (EASY's reservations read it): a
  :class:`~aifactory.heap.RowHeap` of (estimated end, seat index, run epoch) rows, built
  the first time a class needs a reservation, with lazy deletion. Invariant: a row is
  live while its job runs the run of that epoch; ``ends_stale`` counts rows that are not
  (at least), and the heap is rebuilt once most of it is stale.
"""

from __future__ import annotations

from aifactory.heap import RowHeap
from aifactory.scheduler.cluster import ClusterState, Placement
from aifactory.scheduler.owners import MIXED, SchedClasses
from aifactory.scheduler.power import Power
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.seat import Seat
from aifactory.scheduler.shortcuts import Shortcuts
from aifactory.scheduler.usage import DecayedUsage


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
        sclasses: SchedClasses,
        power: Power,
    ) -> None:
        n_classes = len(cs.class_free)
        # Per scheduling class: the fleet class a job placed there records, and the owner
        # of its hardware (None where a class has several owners: read off the placement).
        self.class_names = tuple(sclasses.fleet_classes[f] for f in sclasses.flavor)
        self.class_owner = sclasses.owner
        self.domain_owner = [sclasses.topo.owners[o] for o in sclasses.topo.domain_owner.tolist()]
        self.shortcuts = shortcuts
        self.power = power  # per-site draw under the caps (scheduler/power.py)
        self.cs = cs
        self.quota = quota
        self.usage = usage
        self.count = 0  # running jobs (by_tc holds them)
        self.by_tc: list[list[list[Seat]]] = [
            [[] for _ in range(n_classes)] for _ in range(n_tenants)
        ]
        self.prio_tc: list[list[dict[int, int]]] = [
            [{} for _ in range(n_classes)] for _ in range(n_tenants)
        ]
        self.prio_t: list[dict[int, int]] = [{} for _ in range(n_tenants)]
        # Whether prio_tc and prio_t are kept (PRIORITIES: from the first read on).
        self.prio_counted = not shortcuts.on
        self.ends: list[RowHeap | None] = [None] * n_classes
        self.ends_stale = [0] * n_classes
        # GPU-seconds served per tenant and scheduling class by runs that ended (the
        # state's stop counts them): whose hardware each tenant's work ran on.
        self.served: list[list[float]] = [[0.0] * n_classes for _ in range(n_tenants)]

    def attach(self, seat: Seat, gpu_class: int, placement: Placement, now: float) -> None:
        """Charge quota, usage and the indices for the seat's job holding ``placement``
        (its GPUs are already taken from the cluster)."""
        seat.run_class = gpu_class
        job = seat.job
        job.placement = placement
        job.placed_class = self.class_names[gpu_class]
        owner = self.class_owner[gpu_class]
        if owner is None:
            owner = self._owner_of(placement)
        if job.hardware_owner != owner:
            job.hardware_owner = owner if not job.hardware_owner else MIXED
        if len(placement) == 1 and self.shortcuts.on:  # ONE_NODE (see shortcuts)
            seat.pnode, seat.pmask = placement[0]
        else:
            seat.pnode = -1
        t = seat.tix
        gpus = seat.gpus
        self.quota.add(t, gpu_class, gpus)
        self.usage.change(t, gpu_class, gpus, now)
        if self.power.active:
            self.power.charge(gpu_class, placement, 1)
        self.count += 1
        bag = self.by_tc[t][gpu_class]
        seat.rpos = len(bag)
        bag.append(seat)
        if seat.preemptible and self.prio_counted:
            _count(self.prio_tc[t][gpu_class], seat.priority, 1)
            _count(self.prio_t[t], seat.priority, 1)

    def detach(self, seat: Seat, now: float) -> None:
        """Free a running job's GPUs and quota (the inverse of :meth:`attach`; the job
        keeps its placement, so :meth:`reattach` can give it the same GPUs back). Raises,
        changing nothing, for a job that is not running here."""
        gpu_class = seat.run_class
        t = seat.tix
        bag = self.by_tc[t][gpu_class]
        pos = seat.rpos
        if pos < 0 or pos >= len(bag) or bag[pos] is not seat:  # (checked before any change)
            msg = f"job {seat.job.id} is not among its class's running jobs"
            raise AssertionError(msg)
        if seat.pnode >= 0:
            self.shortcuts.one_node += 1
            self.cs.give(seat.pnode, seat.pmask)
        else:
            self.cs.release(seat.job.placement)
        gpus = seat.gpus
        self.quota.add(t, gpu_class, -gpus)
        self.usage.change(t, gpu_class, -gpus, now)
        if self.power.active:
            self.power.charge(gpu_class, seat.job.placement, -1)
        self.count -= 1
        last = bag.pop()
        if last is not seat:
            bag[pos] = last
            last.rpos = pos
        seat.rpos = -1
        if seat.preemptible and self.prio_counted:
            _count(self.prio_tc[t][gpu_class], seat.priority, -1)
            _count(self.prio_t[t], seat.priority, -1)

    def _owner_of(self, placement: Placement) -> str:
        """The owner of a placement's hardware (``mixed``: several owners')."""
        node_dom = self.cs.node_dom
        owners = {self.domain_owner[node_dom[node]] for node, _mask in placement}
        return owners.pop() if len(owners) == 1 else MIXED

    def hold(self, seat: Seat) -> None:
        """The seat's running job was preempted and keeps its GPUs while it saves
        (aifactory.scheduler.grace): it is no preemption candidate any more (not
        preemptible, and out of the counts by priority) until :meth:`detach`, after which
        the caller restores ``seat.preemptible``."""
        if seat.preemptible:
            if self.prio_counted:
                t = seat.tix
                _count(self.prio_tc[t][seat.run_class], seat.priority, -1)
                _count(self.prio_t[t], seat.priority, -1)
            seat.preemptible = False

    # ------------------------------------------------------------ the counts by priority
    def prios_tc(self, tix: int, gpu_class: int) -> dict[int, int]:
        """The tenant's running preemptible jobs of the class, counted by priority."""
        if not self.prio_counted:
            self._count_priorities()
        return self.prio_tc[tix][gpu_class]

    def prios_t(self, tix: int) -> dict[int, int]:
        """The tenant's running preemptible jobs of every class, counted by priority."""
        if not self.prio_counted:
            self._count_priorities()
        return self.prio_t[tix]

    def _count_priorities(self) -> None:
        """Count the running preemptible jobs by priority (PRIORITIES' first read: the
        counts were empty and not kept until now)."""
        self.shortcuts.priorities += 1
        for t, by_class in enumerate(self.by_tc):
            for c, bag in enumerate(by_class):
                for s in bag:
                    if s.preemptible:
                        _count(self.prio_tc[t][c], s.priority, 1)
                        _count(self.prio_t[t], s.priority, 1)
        self.prio_counted = True

    def reattach(self, seat: Seat, now: float) -> None:
        """Give a detached job exactly its GPUs back, and charge it again."""
        placement = seat.job.placement
        self.cs.reserve_exact(placement)
        self.attach(seat, seat.run_class, placement, now)

    # ---------------------------------------------------------------- the index by end
    def ended_run(self, seat: Seat) -> None:
        """The seat's run was recorded in the index by end and is over: its row goes
        stale (lazy deletion); the class's heap is rebuilt once most rows are stale."""
        gpu_class = seat.run_class
        ends = self.ends[gpu_class]
        if ends is not None:
            stale = self.ends_stale[gpu_class] + 1
            self.ends_stale[gpu_class] = stale
            if stale > 1024 and 2 * stale > len(ends):
                self.build_ends(gpu_class)

    def withdrawn_run(self, seat: Seat) -> None:
        """The seat's run was taken back by the pass that started it: its row in the
        index by end (if any) goes stale; no rebuild (the pass that withdrew it is still
        reading the index's classes)."""
        if self.ends[seat.run_class] is not None:
            self.ends_stale[seat.run_class] += 1

    def index_end(self, seat: Seat) -> None:
        """Record the run the seat's job just started, by its estimated end (if the
        class's index exists yet)."""
        ends = self.ends[seat.run_class]
        if ends is not None:
            ends.push(seat.est_end_s, float(seat.index), seat.run_epoch, seat.index)

    def ends_of(self, gpu_class: int) -> RowHeap:
        """The class's heap of running jobs by estimated end; built on first use."""
        ends = self.ends[gpu_class]
        if ends is None:
            ends = self.build_ends(gpu_class)
        return ends

    def build_ends(self, gpu_class: int) -> RowHeap:
        """The class's index by end from its running jobs (rows ordered by end, then seat)."""
        ends = RowHeap()
        for by_class in self.by_tc:
            for s in by_class[gpu_class]:
                ends.extend(s.est_end_s, float(s.index), s.run_epoch, s.index)
        ends.heapify()
        self.ends[gpu_class] = ends
        self.ends_stale[gpu_class] = 0
        return ends

    def seats(self) -> list[Seat]:
        """Every running job's seat, by dense index."""
        out = [s for by_class in self.by_tc for bag in by_class for s in bag]
        out.sort(key=_index)
        return out


def _index(seat: Seat) -> int:
    return seat.index
