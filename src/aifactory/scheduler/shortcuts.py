"""Every memo and skip of the scheduler, each with the invariant that makes it exact, under
one switch (``Tuning.shortcuts``).

A shortcut changes no decision: it only answers a question the scheduler would otherwise
compute again. With the switch off every question is computed in full, and that
scheduler is the reference: ``tests/test_scheduler_properties.py`` compares every
decision (each start's time and place, each preemption, each end) of the two over random
workloads and asserts that each shortcut below was taken in them (:meth:`Shortcuts.taken`), and
``tests/test_scheduler_scenarios.py`` replays the cases of commits a8a5868 and 4c20143
(two bugs the turned-away skips once had) both ways.

The shortcuts, where they live, and why each is exact:

``TURNED_AWAY`` (:meth:`Shortcuts.turned_away`, used by the pass between deep scans) - a
    head that cannot start in any class (a reservation that still holds turned it away
    there, or the class lacks the free GPUs and already has a reservation, or lacks the
    tenant's quota) is skipped without trying it. Exact where it says True: it only reads
    what :meth:`~aifactory.scheduler.cycle.Cycle._try_start` would find first.
``REMEMBERED`` (``seat.away_version``) - a head found turned away by reservations in every
    class stays so until :attr:`Shortcuts.away_version` changes, which it does whenever
    GPUs or quota come back or the reservations change other than by getting stricter
    (:meth:`Shortcuts.gave_back`, :meth:`Shortcuts.new_epoch`); between those, a pass only
    takes GPUs and quota and reservations only tighten. A class that turned the job away
    for quota alone (no reservation there) does not qualify: once its GPUs run short the
    job would make a reservation there. ``ALL_AWAY``: a pass whose every head is
    remembered does nothing, and is not run.
``CLOSED`` (``seat.resv_mask`` in reservation epoch ``seat.resv_epoch``) - a class whose
    reservation turned a job away stays closed to it for the rest of the epoch, as within
    one epoch reservations only get stricter (time moves on, spare GPUs are used).
``NO_FIT``, ``QUOTA_FAIL``, ``PREEMPT_FAILED`` (:class:`~aifactory.scheduler.records.
    PassContext`) - within a pass a gang that failed to fit in a class (with the same
    site scope: a gang that may cross sites can fit where one that may not cannot), to
    fit its tenant's quota, or to find victims, rules out every bigger gang of the same
    class and scope (tenant; tenant, priority, rank and scope, and no exclusions) for the
    rest of the pass: a pass only takes GPUs and quota. The exceptions, a preemption's
    victims and a start it withdraws, give GPUs and quota back, so a preemption clears
    these memos.
``CLASSES`` (``Scheduler._classes``) - the classes a job may ever run in depend only on
    its shape (tenant, class asked, GPUs, may cross sites) and the fleet, both fixed:
    cached per shape and on the job's seat.
``SMALLEST`` (``Pending.smallest``) - a tenant's smallest pending gang is kept while it
    can only shrink (a new job) and recomputed when a job of that size leaves.
``ONE_NODE`` (``seat.pnode``/``seat.pmask``) - a one-node placement is kept unboxed, so its
    release reads no list; it is the list's only entry.
``PRIORITIES`` (:meth:`Running.prios_tc <aifactory.scheduler.running.Running.prios_tc>`,
    ``prios_t``) - the running preemptible jobs' counts by priority are read by preemption
    alone: they are counted from the running lists on the first read and kept from then
    on, so a run that never preempts counts nothing per start and end. The first read
    finds the same counts as counting from the start would have, as a start, an end and
    a hold change the running lists and ``seat.preemptible`` as they change the counts.
``HANDLE`` (``job.ticket``, :meth:`SchedulerState._take
    <aifactory.scheduler.state.SchedulerState._take>`) - the scheduler finds the seat of a job
    it holds through the job's ticket instead of a dict by id (a big dict's lookups miss the
    cache: a fifth of a 600,000-job run's time went to them): a ticket is taken only when
    no scheduler holds the job through it (its seat is not live), and is the seat's only
    while the seat is live, so a job held by two schedulers (a forecast's fork) is found
    through the ticket by one and by id by the other. Changes no decision, only where a
    seat is looked up.

Not shortcuts (they decide, and are part of the reference): passes run only after a
change (``_dirty``) and a pass after arrivals alone tries only the new jobs (``_freed``),
as Slurm's event-driven main loop does; the backfill interval's deep scans; a tenant's
queue stopping once its smallest job cannot start (``_may_start_more``, which spends the
``backfill_depth`` budget); lazily deleted queue and end-index rows (``qseq``,
``run_epoch``: exact by construction and checked by the heap and queue tests).
"""

from __future__ import annotations

from typing import Final

from aifactory.scheduler.cluster import ClusterState
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.records import Reservation
from aifactory.scheduler.seat import Seat

INF: Final = float("inf")


# The shortcuts by name, as :meth:`Shortcuts.taken` reports how often each was taken.
NAMES: Final = (
    "turned_away",
    "remembered",
    "all_away",
    "closed",
    "no_fit",
    "quota_fail",
    "preempt_failed",
    "classes",
    "smallest",
    "one_node",
    "handle",
    "priorities",
)


class Shortcuts:
    """The switch, the versions the turned-away memos are valid in, and the skip itself."""

    __slots__ = (
        "all_away",
        "away_version",
        "classes",
        "closed",
        "cs",
        "handle",
        "no_fit",
        "on",
        "one_node",
        "preempt_failed",
        "priorities",
        "quota",
        "quota_fail",
        "remembered_n",
        "resv_epoch",
        "smallest",
        "turned_away_n",
    )

    def __init__(self, on: bool, cs: ClusterState, quota: QuotaBook) -> None:
        self.on = on
        self.cs = cs
        self.quota = quota
        # Bumped whenever a reservation is dropped or the set is rebuilt (CLOSED).
        self.resv_epoch = 0
        # Bumped whenever a job that was turned away might not be any more (REMEMBERED).
        self.away_version = 0
        # How often each shortcut was taken: plain int fields (unboxed when compiled), as
        # some are counted on every event.
        self.turned_away_n = self.remembered_n = self.all_away = self.closed = 0
        self.no_fit = self.quota_fail = self.preempt_failed = 0
        self.classes = self.smallest = self.one_node = self.handle = 0
        self.priorities = 0  # (counted once per scheduler, at the first read)

    def taken(self) -> dict[str, int]:
        """How often each shortcut was taken, by name (see :data:`NAMES`)."""
        counts = (
            self.turned_away_n,
            self.remembered_n,
            self.all_away,
            self.closed,
            self.no_fit,
            self.quota_fail,
            self.preempt_failed,
            self.classes,
            self.smallest,
            self.one_node,
            self.handle,
            self.priorities,
        )
        return dict(zip(NAMES, counts, strict=True))

    def new_epoch(self) -> None:
        """The reservations changed other than by getting stricter."""
        self.resv_epoch += 1
        self.away_version += 1

    def gave_back(self) -> None:
        """GPUs or quota came back: no job is remembered as turned away any more."""
        self.away_version += 1

    def remembered(self, seat: Seat) -> bool:
        """Whether the seat's job is remembered as turned away by reservations
        (REMEMBERED)."""
        if self.on and seat.away_version == self.away_version:
            self.remembered_n += 1
            return True
        return False

    def close(self, seat: Seat, gpu_class: int) -> None:
        """Record that the class's reservation turned the seat's job away in this epoch."""
        if seat.resv_epoch != self.resv_epoch:
            seat.resv_epoch = self.resv_epoch
            seat.resv_mask = 0
        seat.resv_mask |= 1 << gpu_class

    def turned_away(
        self,
        seat: Seat,
        classes: tuple[int, ...],
        reservations: dict[int, Reservation],
        no_fit: dict[int, float],
        *,
        remember: bool = False,
    ) -> bool:
        """Whether a start of the seat's job in any of ``classes`` would surely fail without
        changing any state, in a pass that may not preempt (TURNED_AWAY; always False
        with the switch off).

        With ``remember`` (and an empty ``no_fit``, whose answers hold beyond one pass),
        a job turned away in every class by a reservation, or with one there, is marked
        as turned away until :attr:`away_version` changes (REMEMBERED).
        """
        if not self.on:
            return False
        gpus = seat.gpus
        closed = seat.resv_mask if seat.resv_epoch == self.resv_epoch else 0
        class_free = self.cs.class_free
        for_good = remember and not no_fit
        cross = (1 if seat.cross else 0) + seat.site_key  # (the no_fit key's low bits)
        for c in classes:
            if closed >> c & 1:
                self.closed += 1
                continue
            if c in reservations:
                if (
                    class_free[c] >= gpus
                    and gpus < no_fit.get((c << 1) + cross, INF)
                    and self.quota.fits(seat.tix, c, gpus)
                ):
                    return False
                continue
            if class_free[c] < gpus or gpus >= no_fit.get((c << 1) + cross, INF):
                return False
            if self.quota.fits(seat.tix, c, gpus):
                return False
            for_good = False  # turned away for quota alone, no reservation there
        if for_good:
            seat.away_version = self.away_version
        self.turned_away_n += 1
        return True
