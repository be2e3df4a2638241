"""The state a scheduler decides over, and the only methods that change a job's part in it.

Decides nothing by itself: :mod:`~aifactory.scheduler.cycle` decides which job starts
where and which is evicted, and calls the methods here to carry it out. They may touch
the job's record of what happened to it, its seat (:mod:`~aifactory.scheduler.seat`),
the pending queues (:mod:`~aifactory.scheduler.pending`) and, through
:mod:`~aifactory.scheduler.running`, quota, usage and cluster; each keeps the
flags that say a pass is due (``_dirty``, ``_freed``) and the versions the shortcuts
read (:class:`~aifactory.scheduler.shortcuts.Shortcuts`' versions) true:

- :meth:`SchedulerState._start` - a job starts on a placement (withdrawable later in a
  pass that may preempt);
- :meth:`SchedulerState._stop` - a running job's GPUs and quota come back;
- :meth:`SchedulerState._evict` - a running job loses its unsaved work and waits again;
- :meth:`SchedulerState._withdraw` - a start made earlier in the running pass is taken
  back (a pass never reports a job both started and preempted);
- :meth:`SchedulerState._enqueue` - a job becomes pending.

The class is the base of :class:`~aifactory.scheduler.cycle.Cycle` (the pass) and of the
façade :class:`~aifactory.scheduler.scheduler.Scheduler`, so that the three share one
object's fields without an indirection on the per-event path.
"""

from __future__ import annotations

from collections import Counter
from typing import Final, cast

from aifactory.fleet.topology import Topology
from aifactory.scheduler.backfill import Backfill
from aifactory.scheduler.cluster import ClusterState
from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.scheduler.owners import sched_classes
from aifactory.scheduler.pending import Pending
from aifactory.scheduler.placement import CROSS_SITE, Level
from aifactory.scheduler.policies import Policy, make_policy
from aifactory.scheduler.policies.las import LasPolicy
from aifactory.scheduler.power import Power
from aifactory.scheduler.preemption import PACK, Preemption
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.records import (
    FAILED_RUN,
    NOT_STARTED,
    WAIT_PRIORITY,
    CycleResult,
    Interruption,
    PassContext,
    Reservation,
    Waiting,
)
from aifactory.scheduler.running import Running
from aifactory.scheduler.seat import Seat, dead_seat
from aifactory.scheduler.shortcuts import Shortcuts
from aifactory.scheduler.spanning import Spanning
from aifactory.scheduler.usage import DecayedUsage
from aifactory.workload.job import (
    PENDING,
    PREEMPTED,
    RUNNING,
    Job,
)
from aifactory.workload.progress import run_progress

# Module constants are Final: compiled, a Final is a C static, a plain global a dict lookup.
INF: Final = float("inf")
_LEVEL_NAME: Final[dict[Level, str]] = {level: level.value for level in Level}


class SchedulerState:
    """Queues, quota and cluster state for one fleet, and the moves of a job through them."""

    def __init__(self, topo: Topology, config: SchedulerConfig | None = None) -> None:
        self.cfg = config or SchedulerConfig()
        self.topo = topo  # the fleet's own (public views speak of its classes)
        # What the scheduler decides over: the scheduling classes (a class of several owners
        # is one class per owner, see owners.py), and the topology that has them.
        self.sclasses = sched_classes(topo, by_owner=self.cfg.owner_hardware)
        view = self.sclasses.topo
        self.cs = ClusterState(view)
        self.policy: Policy = (
            LasPolicy(self.cfg.las.thresholds)
            if self.cfg.policy == "las"
            else make_policy(self.cfg.policy)
        )
        self.quota = QuotaBook(topo.fleet, view.classes, self.sclasses)
        self.shortcuts = Shortcuts(self.cfg.tuning.shortcuts, self.cs, self.quota)
        # Tenants by name, and the dense index (seat.tix) that every per-tenant table on
        # the per-job path is a list over: no name is hashed after submit.
        self.tenants = list(self.quota.tenants)
        self.tenant_index = dict(self.quota.index)
        n_tenants = len(self.tenants)
        n_classes = len(view.classes)
        fleet_gpus = sum(view.class_capacity().values())
        if fleet_gpus >= PACK:  # preemption packs GPU counts (Victim)
            msg = f"fleet: {fleet_gpus} GPUs, fewer than {PACK} are supported"
            raise ValueError(msg)
        if n_classes > 256:  # per-pass memos pack (tenant, class) into one int
            msg = f"fleet: {n_classes} GPU classes, at most 256 are supported"
            raise ValueError(msg)
        self.capacity = tuple(view.class_capacity()[c] for c in view.classes)
        self.site_capacity = [
            max(self.cs.csite_free[c].values(), default=0) for c in range(n_classes)
        ]
        # GPUs of each class at each site (site index -> GPUs): what a pinned gang may get.
        self.site_caps = [dict(sites) for sites in self.cs.csite_free]
        self.site_names = {name: i for i, name in enumerate(topo.sites)}
        self.pod_capacity = [
            max(self.cs.cpod_free[c].values(), default=0) for c in range(n_classes)
        ]
        self.usage = DecayedUsage(
            n_tenants,
            n_classes,
            self.cfg.fair.half_life_s,
            decay=self.policy.uses_tenant_keys,
        )
        nominal_total = [sum(cell.nominal for cell in row) for row in self.quota.cells]
        # (over leaves: a parent's nominal is shared by its children, not added to them)
        fleet_nominal = max(1, sum(n for t, n in enumerate(nominal_total) if self.quota.is_leaf(t)))
        self.weight = [max(n / fleet_nominal, 1e-3) for n in nominal_total]
        # Every job this scheduler took, by its seat's dense index (queue and end-index rows
        # hold it); the seats of the jobs it still holds (pending or running) that it does
        # not find through their tickets (see _take), by job id; and with ``index_ids``,
        # every job id it ever took (a second submit of one is refused).
        self.seats: list[Seat] = []
        self._dead = dead_seat()  # at the index of each job that ended (_retire)
        # What wait_times reports of each ended job that waited: (index, id, waited,
        # reason, since), in the order they ended.
        self.retired: list[tuple[int, str, dict[str, float] | None, Waiting | None, float]] = []
        self.held: dict[str, Seat] = {}
        self.by_id: dict[str, Seat] = {}
        self.pending = Pending(self.seats, self.policy, n_tenants, self.shortcuts)
        # The running jobs, their charges and the index by estimated end.
        self.power = Power(view, self.cs, enabled=self.cfg.power_cap)
        self.running = Running(
            self.cs, self.quota, self.usage, n_tenants, self.shortcuts, self.sclasses, self.power
        )
        self.backfill = Backfill(self.running, self.cfg.checkpoint_write_s)
        self.spanning = Spanning(topo, self.cs, self.running, self.backfill)
        self.preemption = Preemption(
            self.running,
            self.policy,
            self.cfg.checkpoint_write_s,
            self.pod_capacity,
            self.site_capacity,
            self.cfg.preempt_grace_s,
            self.cfg.preempt_candidates,
        )
        self.rejected: Counter[str] = Counter()
        self._refused: list[tuple[Job, str]] = []  # refused at submit, for the next result
        self.preemptions = 0
        self.withdrawn = 0  # starts taken back by their own pass (_withdraw)
        self.down_gpus = 0  # GPUs out of service (take_out_of_service)
        self.passes = 0
        self._dirty = False
        self._freed = False  # capacity came back since the last pass: a full pass is due
        self._reservations: dict[int, Reservation] = {}
        self._ctx = PassContext(self._reservations, memo=self.shortcuts.on)
        self._last_deep = -INF
        self._classes_cache: dict[int, tuple[int, ...]] = {}  # by a job's shape (_classes)
        # A fleet class's name -> its scheduling classes, and -> its own index.
        self._class_index = {
            name: self.sclasses.of_flavor[f] for f, name in enumerate(topo.classes)
        }
        self._flavor_index = {name: f for f, name in enumerate(topo.classes)}
        # Fair shares are per fleet class (a tenant's share of gb200, whoever owns it):
        # per scheduling class, its fleet class where classes are split, else None.
        self._fold = self.sclasses.flavor if self.sclasses.split else None
        self._fleet_capacity = tuple(topo.class_capacity()[c] for c in topo.classes)
        # Config and policy flags as plain attributes, read a few times per event (compiled,
        # an enum member or a policy's class variable is an interpreted lookup).
        self._easy = self.cfg.backfill == BackfillMode.EASY
        self._keyed = self.policy.uses_tenant_keys
        self._preemptive = self.policy.preemptive
        # Deep work (backfill scans and preemption) runs every ``backfill_interval_s``.
        self._periodic = self._easy and self.cfg.backfill_interval_s > 0
        self._index_ids = self.cfg.tuning.index_ids

    def _take(self, seat: Seat) -> None:
        """Hold the seat's job (it is pending or running here) until :meth:`_release`: its
        seat is found from the job from now on, through the job's ticket where no other
        scheduler holds the job (HANDLE), else through ``held``. Raises ValueError for a
        job whose id this scheduler holds already (in ``held``)."""
        job = seat.job
        ticket = job.ticket
        if self.shortcuts.on and (ticket is None or not cast("Seat", ticket).live):
            self.shortcuts.handle += 1
            job.ticket = seat
        elif self.held.setdefault(job.id, seat) is not seat:
            msg = f"job {job.id}: id already held"
            raise ValueError(msg)
        seat.live = True

    def _release(self, seat: Seat) -> None:
        """The seat's job is held here no more (it ended or was cancelled)."""
        seat.live = False
        job = seat.job
        if job.ticket is seat:
            job.ticket = None
        else:
            self.held.pop(job.id, None)
        self._retire(seat)

    def _retire(self, seat: Seat) -> None:
        """Free the seat of a job that ended, so a long run's memory follows the jobs held
        rather than every job taken: its index names the dead seat from now on (the rows it
        left read as stale through it) and only what ``wait_times`` reports of it stays."""
        if seat.waited is not None or seat.reason is not None:
            self.retired.append((seat.index, seat.job.id, seat.waited, seat.reason, seat.reason_s))
        self.seats[seat.index] = self._dead

    def _find(self, job: Job) -> Seat | None:
        """The seat of a job this scheduler holds (pending or running), or None."""
        ticket = job.ticket
        # (a ticket names one of this scheduler's seats only while it is live: _release)
        if ticket is not None and cast("Seat", ticket).owner is self:
            return cast("Seat", ticket)
        found = self.held.get(job.id)
        return found if found is not None and found.job is job and found.live else None

    def _seat(self, job: Job) -> Seat:
        """The seat of a job this scheduler holds (pending or running); raises for another."""
        seat = self._find(job)
        if seat is None:
            msg = f"job {job.id} is not held by this scheduler"
            raise AssertionError(msg)
        return seat

    def seat_of(self, job: Job) -> Seat | None:
        """This scheduler's record of a job it holds (pending or running), or None: for
        tests and invariant checks; the scheduler's callers never need it."""
        return self._find(job)

    def _allowed_classes(self, job: Job) -> list[int]:
        """The classes a job accepts (the one it names, those it lists, else all) whose
        GPUs have the memory it asks for."""
        index = self._class_index
        if job.gpu_class is not None:
            classes = list(index[job.gpu_class])
        elif job.gpu_classes:
            classes = [c for name in job.gpu_classes for c in index[name]]
        else:
            classes = list(range(len(self.capacity)))
        hbm = job.hbm_gb_per_gpu
        if hbm is not None:
            models = self.sclasses.topo.class_model
            classes = [c for c in classes if models[c].hbm_gb >= hbm]
        return classes

    def _classes(self, seat: Seat) -> tuple[int, ...]:
        """Classes a job could ever run in (CLASSES: cached per shape, and on its seat)."""
        if seat.classes is not None:
            return seat.classes
        job = seat.job
        # The job's shape (tenant, class or none, GPUs, may cross sites) packed into one
        # int key, exact (the class index + 1 < 257). A job that lists classes or asks
        # for memory has a shape of its own (not cached by shape: few jobs do).
        gpu_class = -1 if job.gpu_class is None else self._flavor_index[job.gpu_class]
        shape = (seat.gpus * 257 + gpu_class + 1) * len(self.tenants) + seat.tix
        key = 2 * shape + (1 if seat.cross else 0)
        plain = not job.gpu_classes and job.hbm_gb_per_gpu is None and seat.site < 0
        got = self._classes_cache.get(key) if self.shortcuts.on and plain else None
        if got is not None:
            self.shortcuts.classes += 1
        else:
            got = tuple(
                c
                for c in self._allowed_classes(job)
                if seat.gpus <= self.quota.ceiling(seat.tix, c)
                and seat.gpus <= self._room_for(seat, c)
            )
            if plain:
                self._classes_cache[key] = got
        seat.classes = got
        return got

    def _room_for(self, seat: Seat, c: int) -> int:
        """The most GPUs of class ``c`` a gang like the seat's can ever get: its site's
        when pinned to one site, the fleet's when it may span sites (pinned or not),
        else the largest site's."""
        if seat.site >= 0 and not seat.cross:
            return self.site_caps[c].get(seat.site, 0)
        return self.capacity[c] if seat.cross else self.site_capacity[c]

    def _quota_fits_where_short(self, seat: Seat) -> bool:
        """Whether the job's quota fits in a class that has too few free GPUs for it."""
        class_free = self.cs.class_free
        for c in self._classes(seat):
            if seat.gpus > class_free[c] and self.quota.fits(seat.tix, c, seat.gpus):
                return True
        return False

    def _enqueue(self, seat: Seat, now: float, *, push: bool = True) -> None:
        """Make a job pending; the next pass is due. A new submit is not pushed on its
        tenant's queue yet (see :mod:`aifactory.scheduler.pending`). Until a pass tries
        it, it waits for the jobs ahead of it (``priority``)."""
        self.pending.add(seat, push=push)
        self._waits(seat, WAIT_PRIORITY, now)
        self._dirty = True

    def _waits(self, seat: Seat, reason: Waiting, now: float) -> None:
        """A pending job waits for ``reason`` from ``now`` (the time it waited for the
        previous reason is counted)."""
        old = seat.reason
        if old is reason:
            return
        if old is not None and now > seat.reason_s:
            waited = seat.waited
            if waited is None:
                waited = seat.waited = {}
            waited[old] = waited.get(old, 0.0) + (now - seat.reason_s)
        seat.reason = reason
        seat.reason_s = now

    def _stop_waiting(self, seat: Seat, now: float) -> None:
        """A pending job starts or is cancelled: the time it waited for its last reason
        is counted."""
        old = seat.reason
        if old is not None:
            if now > seat.reason_s:
                waited = seat.waited
                if waited is None:
                    waited = seat.waited = {}
                waited[old] = waited.get(old, 0.0) + (now - seat.reason_s)
            seat.reason = None

    def smallest_pending(self, tenant: int) -> int | None:
        """The remembered smallest pending gang of tenant index ``tenant`` (None while
        unknown; for the invariant checks)."""
        return self.pending.smallest[tenant] or None

    # ================================================================ start / stop
    def _start(
        self,
        seat: Seat,
        gpu_class: int,
        level: Level,
        plan: list[tuple[int, int]],
        now: float,
        ctx: PassContext,
    ) -> None:
        """Start the seat's job on the GPUs of ``plan``: charge it (Running), record the
        start (withdrawable later in a pass that may preempt), and index its estimated end."""
        job = seat.job
        if ctx.track:
            ctx.started[seat.index] = (
                job.first_start_s,
                job.level,
                job.placed_class,
                job.hardware_owner,
                job.run_start_s,
                seat.est_end_s,
            )
        self.running.attach(seat, gpu_class, self.cs.allocate(plan), now)
        job.level = _LEVEL_NAME[level]  # the level's value, one shared str per level
        job.move(RUNNING, now)
        if job.first_start_s is None:
            job.first_start_s = now
        job.run_start_s = now
        seat.run_start_s = now
        seat.overhead_s = job.overhead_s
        seat.run_epoch += 1
        factor = 1.0
        if job.allow_cross_site:
            # Spanning sites, its work runs slower (scheduler.spanning): its expected end,
            # which reservations and the forecast read, is the slowed run's. (Job.slowdown
            # is this run's: 1.0 within one site.)
            if level is CROSS_SITE:
                factor = self.spanning.slowdown(job, plan)
            job.slowdown = factor
        seat.est_end_s = now + self.backfill.expected_run(job, factor)
        self.running.index_end(seat)
        self.pending.remove(seat)
        self._stop_waiting(seat, now)

    def _stop(self, seat: Seat, now: float) -> None:
        """A running job stops (ends, is evicted or cancelled): its GPUs and quota come
        back, its service is counted, and a full pass is due."""
        self.running.detach(seat, now)
        self.running.ended_run(seat)
        served = seat.gpus * max(0.0, now - seat.run_start_s)
        seat.job.attained += served
        # (spelled out, not +=: compiled, an augmented item assignment is a generic add)
        row = self.running.served[seat.tix]
        row[seat.run_class] = row[seat.run_class] + served
        self._dirty = True
        self._freed = True
        self.shortcuts.gave_back()  # GPUs and quota came back

    def _evict(
        self, seat: Seat, now: float, by: Job | None, *, reason: Interruption, push: bool
    ) -> None:
        """A running job stops for ``reason`` and waits again (see
        :meth:`~aifactory.scheduler.scheduler.Scheduler.interrupt`); without ``push`` it
        waits for the next pass (a victim of the pass running now is not tried again by
        it: see the module's docstring)."""
        self._stop(seat, now)
        job = seat.job
        if reason is NOT_STARTED:
            # The attempt never ran: no work was done or lost, and its next start pays the
            # same overhead as this one would have.
            job.placement = []
            seat.pnode = -1
            job.move(PREEMPTED, now)
            job.move(PENDING, now)
            self._enqueue(seat, now, push=push)
            return
        gained, saved = run_progress(
            now - job.run_start_s, job.overhead_s, job.checkpoint_s, self.cfg.checkpoint_write_s
        )
        if job.slowdown != 1.0 and job.level == "cross-site":  # its work ran slower
            gained, saved = gained / job.slowdown, saved / job.slowdown
        base = job.progress_s
        lost = (gained - saved) + min(now - job.run_start_s, job.overhead_s)
        if job.service:  # it served until now: nothing to redo (its downtime is not work)
            saved = gained
            lost = 0.0
        job.progress_s = base + saved
        if reason is FAILED_RUN:
            job.failures += 1
            job.lost_failure_gpu_s += lost * job.gpus
        else:
            job.preemptions += 1
            self.preemptions += 1
            job.lost_preempt_gpu_s += lost * job.gpus
            if by is not None:
                job.preempted_for = job.preempted_for | {by.id}
        job.overhead_s = self.cfg.restart_overhead_s
        job.placement = []
        seat.pnode = -1
        job.move(PREEMPTED, now)
        job.move(PENDING, now)
        self._enqueue(seat, now, push=push)

    def _withdraw(
        self, seat: Seat, now: float, by: Job, ctx: PassContext, res: CycleResult
    ) -> None:
        """Take back the start of the seat's job made earlier in this pass, for ``by``: a pass
        never reports a job both started and preempted (see the module's docstring).

        ``job`` is already detached (its GPUs, quota and usage are back as before its
        start: usage changed twice at the same ``now``, which adds nothing). What else
        the start did is undone: its fields and history are as before, and it is pending
        again, queued for the next pass (not this one: it is not tried twice in a pass).
        Like an eviction it never takes the GPUs back from ``by`` (``preempted_for``).
        Decisions the pass made while the job held its GPUs stand; they were made with
        fewer GPUs free, and the next pass, a full one, sees the GPUs it left.
        """
        first, level, placed_class, owner, run_start, est_end = ctx.started.pop(seat.index)
        self.running.withdrawn_run(seat)
        job = seat.job
        job.withdraw_start(now)
        job.first_start_s = first
        job.level = level
        job.placed_class = placed_class
        job.hardware_owner = owner
        job.run_start_s = run_start
        seat.est_end_s = est_end
        job.placement = []
        seat.pnode = -1
        job.preempted_for = job.preempted_for | {by.id}
        res.started.remove(job)
        ctx.forget()  # its GPUs came back: "does not fit" may no longer hold
        self.withdrawn += 1
        self._freed = True
        self.shortcuts.gave_back()  # its GPUs and quota came back
        # Not pushed on its queue: this pass took its list of fresh jobs when it began,
        # so the job is tried by the next pass only.
        self._enqueue(seat, now, push=False)

    def pin(self, seat: Seat) -> str | None:
        """Pin the seat to its job's site (``Job.site``); returns why it cannot be (an
        unknown site), or None."""
        site = seat.job.site
        if site is None:
            return None
        index = self.site_names.get(site, -1)
        if index < 0:
            return f"unknown site: '{site}'"
        seat.site = index
        seat.site_key = (index + 1) << 10  # past (class << 1 | cross): classes < 257
        # One site, unless the twin pinned it to its data's site as the home of a gang
        # that may span others (Job.span_from_site): then it spans from there.
        seat.cross = seat.job.allow_cross_site and seat.job.span_from_site
        return None

    def capacity_changed(self) -> None:
        """Capacity came back outside the scheduler's own decisions (e.g. a repaired node)."""
        self._dirty = True
        self._freed = True
        self.shortcuts.gave_back()
