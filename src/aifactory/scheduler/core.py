"""The scheduler core: one pure, deterministic, clock-injected decision maker.

The same object runs inside the twin (simulated time) and the control plane (wall
time): every method takes ``now`` from its caller and nothing here reads a clock, does
I/O or touches global state. A scheduling pass is written as numbered phases:

1. heads     - the head of every tenant queue, ordered by (tenant key, job key);
2. admit     - quota check, then topology-aware gang placement;
3. reserve   - EASY: the first job of a class that does not fit gets a reservation at
               the earliest time enough GPUs free up (from running jobs' estimates);
               later jobs of that class start only if they don't delay it;
4. preempt   - priority, quota reclaim (and the policy's own rank, for LAS), choosing
               victims that lose the least work, never one the job was preempted for;
5. requeue   - jobs that could not start go back to their queues.

With ``backfill=none`` the pass is strict: a tenant queue stops at its first job that
cannot start, as Slurm does without backfill.

A pass never reports a job both started and preempted. A victim waits for the next pass:
the pass that evicted it does not restart it elsewhere at the same instant (its caller
would have to kill and relaunch it at once; evicted work is requeued, as Kueue and Slurm
requeue it). And phase 4 may pick as a victim a job that phase 2 started earlier in the
same pass (jobs are tried in the policy's order, and a later one may outrank an earlier
one, or reclaim quota it borrowed): that start is withdrawn instead
(:meth:`Scheduler._withdraw`). The job is pending again as if it had not been tried: it
loses no work, pays no restart, counts no preemption, and the caller sees it in neither
``started`` nor ``preempted``. Its GPUs were free when the pass began, so such a victim
costs nothing, and the outcome is the one the pass would have reached had it tried the
preempting job first. (Kueue gets there by ordering a cycle's heads by priority; here the
policy's order stays the only order.)

Every job's fields are checked at submit (:func:`job_problem`): a field out of bounds
fails that job, with a reason naming the field, and never reaches a pass's arithmetic.

This module is the façade and the pass itself (heads, admit, requeue, and the skips
between deep scans); the state it decides over is owned by components, each in its own
module: :mod:`~aifactory.scheduler.pending` (tenant queues), :mod:`~aifactory.scheduler.
running` (running jobs and their charges on quota, usage and cluster),
:mod:`~aifactory.scheduler.backfill` (EASY reservations), :mod:`~aifactory.scheduler.
preemption` (candidate rules and victim choice); :mod:`~aifactory.scheduler.config` is what
the scheduler accepts, :mod:`~aifactory.scheduler.records` what a pass decided.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Final, final

from aifactory.fleet.topology import Topology
from aifactory.heap import Keyed, RowHeap, before
from aifactory.heap import pop as head_pop
from aifactory.heap import push as head_push
from aifactory.scheduler.backfill import Backfill, Reservation
from aifactory.scheduler.cluster import ClusterState, Placement
from aifactory.scheduler.config import BackfillMode, SchedulerConfig, job_problem
from aifactory.scheduler.pending import Pending
from aifactory.scheduler.placement import Level, find_placement
from aifactory.scheduler.policies import Policy, TenantUsage, make_policy
from aifactory.scheduler.policies.las import LasPolicy
from aifactory.scheduler.preemption import PACK, Preemption
from aifactory.scheduler.queue import key_pair, row_first
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.records import NOTHING, CycleResult
from aifactory.scheduler.running import Running
from aifactory.scheduler.usage import DecayedUsage
from aifactory.workload.job import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    PREEMPTED,
    RUNNING,
    Job,
    JobState,
)
from aifactory.workload.progress import run_progress

# Module constants are Final: compiled, a Final is a C static, a plain global a dict lookup.
INF: Final = float("inf")
_LEVEL_NAME: Final[dict[Level, str]] = {level: level.value for level in Level}


class _PassContext:
    """Scratch state of one pass: its per-pass memos, the reservations it works with, and
    the starts it may still withdraw. Every memo holds for the rest of its pass only: within
    a pass GPUs and quota are only taken (a withdrawal gives some back, and its job is not
    tried again in that pass), so an answer "does not fit" stays true."""

    __slots__ = (
        "no_fit",
        "preempt",
        "preempt_failed",
        "quota_fail",
        "reservations",
        "seen_tenants",
        "started",
        "track",
    )

    def __init__(
        self, reservations: dict[int, Reservation], *, preempt: bool = True, track: bool = True
    ) -> None:
        self.reservations = reservations
        self.no_fit: dict[int, float] = {}  # class -> smallest gang that failed to fit
        # The same for quota, keyed by tenant index * 256 + class (no tuple per lookup).
        self.quota_fail: dict[int, float] = {}
        # (tenant, class, priority, rank) -> smallest gang whose preemption attempt failed:
        # a bigger gang with the same candidates and quota cannot succeed either.
        self.preempt_failed: dict[tuple[int, int, int, int], float] = {}
        self.preempt = preempt  # whether this pass may preempt at all
        self.seen_tenants: set[int] = set()
        # Jobs started in this pass, by index, with their fields before the start (first
        # start, level, run start, estimated end), so that a preemption later in the pass
        # can withdraw the start (Scheduler._withdraw). Kept only in passes that may
        # preempt (``track``): elsewhere no start can be taken back.
        self.track = track
        self.started: dict[int, tuple[float | None, str, float, float]] = {}

    def reset(
        self, reservations: dict[int, Reservation], *, preempt: bool, track: bool
    ) -> _PassContext:
        """Ready for a new pass (one context is kept and cleared, not made per pass:
        most passes write none of its tables)."""
        self.reservations = reservations
        self.preempt = preempt
        self.track = track
        if self.started:
            self.started.clear()
        if self.no_fit:
            self.no_fit.clear()
        if self.quota_fail:
            self.quota_fail.clear()
        if self.preempt_failed:
            self.preempt_failed.clear()
        if self.seen_tenants:
            self.seen_tenants.clear()
        return self


@final
class Head(Keyed):
    """A tenant queue's head in a pass, ordered by (tenant key, the row's order).

    A :class:`~aifactory.heap.Keyed` item, so the merge of heads compares unboxed
    fields when compiled. Policies
    without tenant keys order heads by the row's own key; ``fair`` puts the tenant key
    first and shifts the row's key one place along (the same lexicographic order).
    """

    __slots__ = ("tix",)

    def __init__(self, k0: float, k1: float, seq: int, tix: int, tenant_key: float | None) -> None:
        if tenant_key is None:
            super().__init__(k0, k1, (), seq)
        else:
            super().__init__(tenant_key, k0, (k1,), seq)
        self.tix = tix


class Scheduler:
    """Queues, quota and cluster state for one fleet, and the pass that decides."""

    def __init__(self, topo: Topology, config: SchedulerConfig | None = None) -> None:
        self.cfg = config or SchedulerConfig()
        self.topo = topo
        self.cs = ClusterState(topo)
        self.policy: Policy = (
            LasPolicy(self.cfg.las_thresholds)
            if self.cfg.policy == "las"
            else make_policy(self.cfg.policy)
        )
        self.quota = QuotaBook(topo.fleet, topo.classes)
        # Tenants by name, and the dense index (job.tix) that every per-tenant table on
        # the per-job path is a list over: no name is hashed after submit.
        self.tenants = list(self.quota.tenants)
        self.tenant_index = dict(self.quota.index)
        n_tenants = len(self.tenants)
        n_classes = len(topo.classes)
        fleet_gpus = sum(topo.class_capacity().values())
        if fleet_gpus >= PACK:  # preemption packs GPU counts (Victim)
            msg = f"fleet: {fleet_gpus} GPUs, fewer than {PACK} are supported"
            raise ValueError(msg)
        if n_classes > 256:  # per-pass memos pack (tenant, class) into one int
            msg = f"fleet: {n_classes} GPU classes, at most 256 are supported"
            raise ValueError(msg)
        self.capacity = tuple(topo.class_capacity()[c] for c in topo.classes)
        self.site_capacity = [
            max(self.cs.csite_free[c].values(), default=0) for c in range(n_classes)
        ]
        self.pod_capacity = [
            max(self.cs.cpod_free[c].values(), default=0) for c in range(n_classes)
        ]
        self.usage = DecayedUsage(
            n_tenants,
            n_classes,
            self.cfg.fair_half_life_s,
            decay=self.policy.uses_tenant_keys,
        )
        nominal_total = [sum(cell.nominal for cell in row) for row in self.quota.cells]
        fleet_nominal = max(1, sum(nominal_total))
        self.weight = [max(n / fleet_nominal, 1e-3) for n in nominal_total]
        self.jobs: list[Job] = []
        self.pending = Pending(self.jobs, self.policy, n_tenants)
        self.by_id: dict[str, Job] = {}
        # The running jobs, their charges and the index by estimated end.
        self.running = Running(self.cs, self.quota, self.usage, n_tenants)
        self.backfill = Backfill(self.running, self.cfg.checkpoint_write_s)
        self.preemption = Preemption(
            self.running,
            self.policy,
            self.cfg.checkpoint_write_s,
            self.pod_capacity,
            self.site_capacity,
        )
        self.rejected: Counter[str] = Counter()
        self.preemptions = 0
        self.withdrawn = 0  # starts taken back by their own pass (_withdraw)
        self.down_gpus = 0  # GPUs out of service (take_out_of_service)
        self.passes = 0
        self._dirty = False
        self._freed = False  # capacity came back since the last pass: a full pass is due
        self._reservations: dict[int, Reservation] = {}
        # Bumped whenever a reservation is dropped or the set is rebuilt. Within one epoch
        # reservations only get stricter (time moves on, spare GPUs are used, new classes
        # get one), so a class whose reservation turned a job away stays closed to it
        # (job.resv_mask); passes between deep scans skip a job with every class closed,
        # or lacking GPUs or quota (_turned_away), instead of retrying it.
        self._resv_epoch = 0
        # Bumped whenever a job that was turned away (_turned_away) might not be any more:
        # GPUs or quota came back, or the reservations changed (an epoch bump). Until
        # then a head that _open_heads found turned away in every class by a
        # reservation stays so (job.away_version), and is not checked again on every event.
        self._away_version = 0
        self._ctx = _PassContext(self._reservations)  # scratch of the pass running now
        self._last_deep = -INF
        self._classes_cache: dict[int, tuple[int, ...]] = {}  # by a job's shape (_classes)
        self._class_index = {name: c for c, name in enumerate(topo.classes)}
        # Config and policy flags as plain attributes, read a few times per event (compiled,
        # an enum member or a policy's class variable is an interpreted lookup).
        self._easy = self.cfg.backfill == BackfillMode.EASY
        self._keyed = self.policy.uses_tenant_keys
        self._preemptive = self.policy.preemptive
        # Deep work (backfill scans and preemption) runs every ``backfill_interval_s``.
        self._periodic = self._easy and self.cfg.backfill_interval_s > 0
        self._index_ids = self.cfg.index_ids

    # ================================================================ submit
    def submit(self, job: Job, now: float) -> str | None:
        """Queue a job; returns why it can never run (and fails it), or None. A field out
        of bounds is such a reason (``"invalid field: <field>: ..."``, see
        :func:`job_problem`)."""
        if self._index_ids:
            known = len(self.by_id)
            self.by_id.setdefault(job.id, job)  # one lookup in a big dict, not two
            if len(self.by_id) == known:
                msg = f"job {job.id}: id already submitted"
                raise ValueError(msg)
        job.index = len(self.jobs)
        self.jobs.append(job)
        job.tix = self.tenant_index.get(job.tenant, -1)
        job.classes = None  # this scheduler's class indices are filled in by _classes
        problem = job_problem(job)
        reason = f"invalid field: {problem}" if problem is not None else self._never_runs(job)
        if reason is not None:
            job.move(FAILED, now)
            job.end_s = now
            self.rejected[reason.split(":", 1)[0]] += 1
            return reason
        self._enqueue(job, push=False)
        return None

    def _never_runs(self, job: Job) -> str | None:
        """Why ``job`` can never run on this fleet (unknown tenant or GPU class, a gang
        bigger than any quota ceiling or site allows), or None."""
        if job.tix < 0:
            return f"unknown tenant: '{job.tenant}' has no quota in this fleet"
        if job.gpu_class is not None and job.gpu_class not in self._class_index:
            return f"unknown GPU class: '{job.gpu_class}'"
        if not self._classes(job):
            biggest = max(
                (
                    min(
                        self.quota.ceiling(job.tix, c),
                        self.capacity[c] if job.allow_cross_site else self.site_capacity[c],
                    )
                    for c in self._allowed_classes(job)
                ),
                default=0,
            )
            return (
                f"too big: {job.gpus} GPUs asked, at most {biggest} can ever be "
                f"given to tenant '{job.tenant}'"
            )
        return None

    def _allowed_classes(self, job: Job) -> list[int]:
        if job.gpu_class is not None:
            return [self.topo.classes.index(job.gpu_class)]
        return list(range(len(self.topo.classes)))

    def _classes(self, job: Job) -> tuple[int, ...]:
        """Classes a job could ever run in (cached per shape, and on the job)."""
        if job.classes is not None:
            return job.classes
        # The job's shape (tenant, class or none, GPUs, may cross sites) packed into one
        # int key, exact (the class index + 1 < 257).
        gpu_class = -1 if job.gpu_class is None else self._class_index[job.gpu_class]
        shape = (job.gpus * 257 + gpu_class + 1) * len(self.tenants) + job.tix
        key = 2 * shape + (1 if job.allow_cross_site else 0)
        got = self._classes_cache.get(key)
        if got is None:
            got = tuple(
                c
                for c in self._allowed_classes(job)
                if job.gpus <= self.quota.ceiling(job.tix, c)
                and job.gpus
                <= (self.capacity[c] if job.allow_cross_site else self.site_capacity[c])
            )
            self._classes_cache[key] = got
        job.classes = got
        return got

    def _enqueue(self, job: Job, *, push: bool = True) -> None:
        """Make a job pending; the next pass is due. A new submit is not pushed on its
        tenant's queue yet (see :mod:`aifactory.scheduler.pending`)."""
        self.pending.add(job, push=push)
        self._dirty = True

    # ================================================================ the pass
    def schedule(self, now: float) -> CycleResult:
        """Run one scheduling pass at ``now``; start and preempt jobs.

        A pass after capacity was freed considers every queue (up to ``backfill_depth``
        jobs that cannot start). A pass after arrivals only considers the new jobs:
        nothing else changed, so the jobs that could not start before still cannot,
        and the reservations of the last full pass still hold.
        """
        if not self._dirty:
            return NOTHING
        self._dirty = False
        self.passes += 1
        fresh = self.pending.take_fresh()
        if self._freed and not self.pending.count:
            # Capacity came back but nothing waits: no pass to run (the common case on a
            # lightly loaded fleet). Reservations are stale now; the next pass rebuilds them.
            self._freed = False
            if self._reservations:
                self._reservations = {}
                self._new_epoch()
            return NOTHING
        res = CycleResult()
        if self._freed:
            for job in fresh:  # a full pass reads the queues: new submits join them first
                if not job.in_queue and job.state is PENDING:
                    self.pending.push(job)
            interval = self.cfg.backfill_interval_s
            deep = self._easy and (interval <= 0 or now >= self._last_deep + interval)
            self._freed = False
            if deep:
                self._last_deep = now
                self._full_pass(now, res, deep=True)
            else:
                # Between backfill scans only queue heads are tried (Slurm's main loop);
                # the deep scan is due at the wake-up time.
                self._full_pass(now, res, deep=False)
                if self._easy:
                    self._freed = True
                    self._dirty = True
                    res.wakeup_s = self._last_deep + interval
        else:
            self._arrivals_pass(fresh, now, res)
        return res

    def _heads(self, now: float) -> list[Head]:
        """Phase 1: the merge of every tenant queue's live head."""
        heads: list[Head] = []
        pending = self.pending
        for t, q in enumerate(pending.queues):
            if pending.clean(q):
                head_push(heads, self._head(q, t, now))
        return heads

    def _head(self, q: RowHeap, t: int, now: float) -> Head:
        """The head of queue ``q`` (tenant ``t``), at the top of the (cleaned) queue."""
        tenant_key = self._tenant_key(t, now) if self._keyed else None
        return Head(q.k0[0], q.k1[0], q.seq[0], t, tenant_key)

    def _full_pass(self, now: float, res: CycleResult, *, deep: bool) -> None:
        """A pass over every tenant queue, in the merge order of their heads.

        ``deep`` (EASY): the reservations are rebuilt, preemption may act, and a job that
        cannot start is set aside so the next one of its queue is tried (up to
        ``backfill_depth`` of them), as long as its tenant could still start something.
        Otherwise (strict order, or between deep scans) a tenant's queue stops at its
        first job that cannot start, and between deep scans heads known to be turned away
        are skipped (the shortcuts, which change no decision).
        """
        easy = deep
        if deep:
            reservations: dict[int, Reservation] = {}
            self._reservations = reservations
            self._new_epoch()
        else:
            reservations = self._reservations
        # Phase 1: heads. Between deep scans (no preemption), heads remembered as turned
        # away by reservations (job.away_version) wait aside (``away``) instead of going
        # through the merge: each would be popped only to stop its queue. If every head
        # is turned away, the pass has nothing to do (on a busy fleet most passes end
        # here). A reservation holder that starts in the pass bumps the turned-away
        # version; the heads aside that come after it in the merge order join then, as
        # they would have been tried after the bump.
        away: list[Head] = []
        if not deep and self._periodic and self.cfg.shortcuts:
            heads = self._open_heads(now, reservations, away)
            if not heads:
                return
        else:
            heads = self._heads(now)
        version = self._away_version
        # Preemption searches are the costliest step of a pass; with a backfill interval
        # they run in the periodic deep scans only (Slurm's preemption also acts from its
        # scheduling cycles, not on every event).
        preempt = deep or not self._periodic
        ctx = self._ctx.reset(reservations, preempt=preempt, track=preempt and self.cfg.preemption)
        held: RowHeap | None = None  # rows a deep scan took off their queues (as a list)
        tested = 0
        pending = self.pending
        queues = pending.queues
        while heads:
            top = head_pop(heads)
            t = top.tix
            q = queues[t]
            # Peek, not pop: most heads tried between deep scans cannot start, and a pop
            # and push back costs a sift on a queue of thousands. A job that starts leaves
            # a stale row that Pending.clean drops.
            job = self.jobs[q.ref[0]]
            head = t not in ctx.seen_tenants
            ctx.seen_tenants.add(t)
            if (
                not easy
                and not ctx.preempt
                and self.cfg.shortcuts
                and (
                    job.away_version == self._away_version  # (checked now: a start may bump it)
                    or self._turned_away(job, reservations, ctx.no_fit)
                )
            ):
                continue  # strict pass: this tenant's queue stops here
            # Phases 2-4.
            if self._try_start(job, now, ctx, res, head=head):
                if away and self._away_version != version:
                    for h in away:
                        if before(top, h):
                            head_push(heads, h)
                    away = []
                if pending.clean(q):
                    head_push(heads, self._head(q, t, now))
                continue
            if not easy:
                continue  # strict: this tenant's queue stops here for this pass
            # A job that cannot start changes no queue, so its row is still the head.
            if held is None:
                held = RowHeap()
            held.extend(q.k0[0], q.k1[0], q.seq[0], q.ref[0])
            q.pop()
            tested += 1
            if tested >= self.cfg.backfill_depth:
                break
            if not self._may_start_more(t, ctx):
                continue  # nothing this tenant could start now: stop its queue
            if pending.clean(q):
                head_push(heads, self._head(q, t, now))
        # Phase 5: requeue.
        if held is None:
            return
        jobs = self.jobs
        for i in range(len(held)):
            index = held.ref[i]
            queues[jobs[index].tix].push(held.k0[i], held.k1[i], held.seq[i], index)

    def _open_heads(
        self, now: float, reservations: dict[int, Reservation], away: list[Head]
    ) -> list[Head]:
        """The merge of heads for a pass between deep scans, leaving the heads remembered
        as turned away (job.away_version: turned away by reservations, which stays so until
        the turned-away version changes, as within a pass reservations only tighten and
        GPUs and quota are only taken) in ``away``, in queue order. Empty, and no head
        built, when :meth:`_turned_away` turns every head away."""
        no_fit: dict[int, float] = {}  # (stays empty: the answers hold beyond this pass)
        version = self._away_version
        open_: list[int] = []
        all_away = True
        pending = self.pending
        for t, q in enumerate(pending.queues):
            if not pending.clean(q):
                continue
            job = self.jobs[q.ref[0]]
            if job.away_version == version:
                continue  # remembered as turned away: nothing came back since
            if not self._turned_away(job, reservations, no_fit, remember=True):
                all_away = False
            if job.away_version != version:
                # Not remembered: it may start, or it was turned away for quota alone
                # somewhere, where an allocation in this pass can leave the class short of
                # GPUs and the job would then make a reservation; it goes through the merge.
                open_.append(t)
        if all_away:
            return []
        heads: list[Head] = []
        i = 0
        for t, q in enumerate(pending.queues):
            if not len(q):
                continue  # (cleaned above: a non-empty queue has a live head)
            head = self._head(q, t, now)  # every head's key now, as a full merge has it
            if i < len(open_) and open_[i] == t:
                head_push(heads, head)
                i += 1
            else:
                away.append(head)
        return heads

    def _new_epoch(self) -> None:
        """The reservations changed other than by getting stricter."""
        self._resv_epoch += 1
        self._away_version += 1

    def smallest_pending(self, tenant: int) -> int | None:
        """The remembered smallest pending gang of tenant index ``tenant`` (None while
        unknown; for the invariant checks)."""
        return self.pending.smallest[tenant] or None

    def _may_start_more(self, tenant: int, ctx: _PassContext) -> bool:
        """Whether the smallest waiting job of ``tenant`` could still start in this pass.

        A necessary condition only (placement and reservations are not checked), so a
        False here never skips a job that could start.
        """
        smallest = self.pending.smallest_of(tenant)
        if not smallest:
            return False
        for c, cell in enumerate(self.quota.cells[tenant]):
            if (
                cell.nominal + cell.borrow_limit > 0
                and self.cs.class_free[c] >= smallest
                and ctx.no_fit.get(c, INF) > smallest
                and self.quota.fits(tenant, c, smallest)
            ):
                return True
        return False

    def _arrivals_pass(self, fresh: list[Job], now: float, res: CycleResult) -> None:
        """A pass after arrivals alone: only the new jobs can start (nothing else changed
        since the last pass), tried in the policy's order (merged by tenant key for fair
        share); a new job that waits joins its queue. With a backfill interval, a waiting
        job's chance to preempt comes at the next deep scan, whose time goes in ``res``."""
        easy = self._easy
        preempt = not self._periodic
        ctx = self._ctx.reset(
            self._reservations, preempt=preempt, track=preempt and self.cfg.preemption
        )
        key = self.policy.job_key
        if len(fresh) > 1:
            fresh.sort(key=lambda j: (key(j), j.qseq))
        if self._keyed and len({j.tix for j in fresh}) > 1:
            # Merge the tenants' new jobs by tenant key (re-keyed after each start), as
            # the full pass merges queue heads: same-instant arrivals get the fair order.
            by_tenant: dict[int, list[Job]] = {}
            for j in reversed(fresh):
                by_tenant.setdefault(j.tix, []).append(j)
            heads = [
                (self._tenant_key(t, now), key(js[-1]), js[-1].qseq, t)
                for t, js in by_tenant.items()
            ]
            heapq.heapify(heads)
            while heads:
                t = heapq.heappop(heads)[3]
                js = by_tenant[t]
                self._arrival(js.pop(), now, ctx, res, easy=easy)
                if js:
                    heapq.heappush(heads, (self._tenant_key(t, now), key(js[-1]), js[-1].qseq, t))
        else:
            for job in fresh:
                self._arrival(job, now, ctx, res, easy=easy)
        if self.cfg.preemption and self._periodic and self.pending.count:
            # Preemption for the new jobs waits for the next deep scan; make sure one comes.
            self._freed = True
            self._dirty = True
            res.wakeup_s = max(now, self._last_deep + self.cfg.backfill_interval_s)

    def _arrival(
        self, job: Job, now: float, ctx: _PassContext, res: CycleResult, *, easy: bool
    ) -> None:
        """Try one new job: it may start if it heads its tenant's queue, or (EASY) around
        earlier jobs of its tenant; else it waits in its queue."""
        if job.state is not PENDING:
            return
        pending = self.pending
        q = pending.queues[job.tix]
        if job.in_queue:
            head = pending.clean(q) and q.ref[0] == job.index
            if (head or easy) and self._try_start(job, now, ctx, res, head=head):
                job.qseq = -1  # its queue row is now stale
            return
        # Not pushed yet: at the head unless a waiting job of its tenant goes first (its
        # key is only needed then, or when it waits).
        k0 = k1 = 0.0
        keyed = pending.clean(q)
        if keyed:
            k0, k1 = key_pair(self.policy.job_key(job))
        head = not keyed or row_first(k0, k1, job.qseq, q)
        if (head or easy) and self._try_start(job, now, ctx, res, head=head):
            job.qseq = -1
        elif not job.in_queue:
            if not keyed:
                k0, k1 = key_pair(self.policy.job_key(job))
            pending.push_row(job, k0, k1)  # it waits (strict order: behind an earlier job)

    def waiting(self) -> list[Job]:
        """Every pending job, in no particular order (queued or submitted since the last
        pass)."""
        return self.pending.waiting()

    def _tenant_key(self, t: int, now: float) -> float:
        """The policy's key of tenant ``t`` now (fair share: its decayed usage by weight)."""
        self.usage.advance(t, now)
        name = self.tenants[t]
        usage = {
            name: TenantUsage(
                decayed_gpus=self.usage.average_gpus(t),
                running_gpus=tuple(self.usage.running[t]),
                weight=self.weight[t],
            )
        }
        return self.policy.tenant_key(name, usage, self.capacity)

    def _class_order(self, classes: tuple[int, ...], tenant: int) -> tuple[int, ...]:
        """Classes in the order to try: where the tenant has most unused nominal quota first."""
        cells = self.quota.cells[tenant]
        if len(classes) == 2:  # the common mixed fleet: one comparison, no sort
            a, b = classes
            ka, kb = cells[a].used - cells[a].nominal, cells[b].used - cells[b].nominal
            return classes if ka < kb or (ka == kb and a <= b) else (b, a)
        return tuple(sorted(classes, key=lambda c: (cells[c].used - cells[c].nominal, c)))

    def _try_start(
        self, job: Job, now: float, ctx: _PassContext, res: CycleResult, *, head: bool
    ) -> bool:
        """Phases 2-4 for one job: start it in the first class (most unused nominal quota
        first) where its quota fits, no reservation it would delay stands, and a placement
        exists; else let it preempt (a queue head, or any job that outranks running ones);
        else, blocked for GPUs, it may take the class's EASY reservation. True if it
        started. ``head``: the job heads its tenant's queue in this pass.
        """
        all_classes = self._classes(job)
        blocked: int | None = None
        gpus = job.gpus
        tenant = job.tix
        class_free = self.cs.class_free
        no_fit = ctx.no_fit
        # Cheap, monotone rejections first: a bigger gang than one that already failed to
        # fit in this class this pass cannot fit either. (A plain loop, and the job's own
        # tuple kept when no class is ruled out: this runs for every job tried.)
        ruled_out = False
        for c in all_classes:
            if not (gpus <= class_free[c] and gpus < no_fit.get(c, INF)):
                ruled_out = True
                if blocked is None:
                    blocked = c
        classes = all_classes
        if ruled_out:
            classes = tuple(
                [c for c in all_classes if gpus <= class_free[c] and gpus < no_fit.get(c, INF)]
            )
        if len(classes) > 1:
            classes = self._class_order(classes, tenant)
        for c in classes:
            memo = (tenant << 8) | c
            if gpus >= ctx.quota_fail.get(memo, INF):
                continue
            if not self.quota.fits(tenant, c, gpus):
                ctx.quota_fail[memo] = gpus
                continue
            resv = ctx.reservations.get(c)
            if resv is not None and not self.backfill.fits(job, resv, now, commit=False):
                self._close(job, c)
                continue
            found = find_placement(self.cs, c, gpus, cross_site=job.allow_cross_site)
            if found is None:
                no_fit[c] = min(gpus, no_fit.get(c, INF))
                if blocked is None:
                    blocked = c
                continue
            if resv is not None:
                if resv.holder == job.index:
                    del ctx.reservations[c]  # the job it was held for starts: it is spent
                    self._new_epoch()
                else:
                    self.backfill.fits(job, resv, now, commit=True)
            self._start(job, c, found[0], found[1], now, ctx)
            res.started.append(job)
            return True
        if (
            self.cfg.preemption
            and ctx.preempt
            and (head or self.preemption.may_preempt_behind_head(job))
        ):
            rank = self.policy.rank(job, now) if self._preemptive else 0
            for c in all_classes:
                failed = (tenant, c, job.priority, rank)
                if gpus >= ctx.preempt_failed.get(failed, INF):
                    continue
                if self._try_preempt(job, c, now, res, ctx):
                    return True
                ctx.preempt_failed[failed] = gpus
        if (
            blocked is not None
            and self._easy
            and blocked not in ctx.reservations
            and self.quota.fits_when_idle(tenant, blocked, gpus)
        ):
            # Blocked for GPUs, not by others' quota: as GPUs free up (the tenant's own
            # running jobs included) the job can start, so it holds the reservation.
            ctx.reservations[blocked] = self.backfill.reserve(job, blocked, self.jobs, now)
        return False

    def _close(self, job: Job, gpu_class: int) -> None:
        """Record that the class's reservation turned ``job`` away in this epoch."""
        if job.resv_epoch != self._resv_epoch:
            job.resv_epoch = self._resv_epoch
            job.resv_mask = 0
        job.resv_mask |= 1 << gpu_class

    def _turned_away(
        self,
        job: Job,
        reservations: dict[int, Reservation],
        no_fit: dict[int, float],
        *,
        remember: bool = False,
    ) -> bool:
        """Whether :meth:`_try_start` would surely fail for ``job`` without changing any
        state, in a pass that may not preempt: every class is closed by a reservation
        that still holds, or lacks the free GPUs (and already has a reservation, so the
        job would not make one), or lacks the tenant's quota. Cheap, and exact where it
        says True; passes between deep scans use it to skip jobs, or the whole pass.

        With ``remember`` (and an empty ``no_fit``, whose answers hold beyond one pass),
        a job turned away in every class by a reservation, or with one there, is marked
        (job.away_version) as turned away until GPUs or quota come back or the reservations
        change. A class without a reservation that turned it away for quota alone does
        not qualify: once its GPUs run short the job would make a reservation there, so
        an allocation alone can change the answer.
        """
        gpus = job.gpus
        mask = job.resv_mask if job.resv_epoch == self._resv_epoch else 0
        class_free = self.cs.class_free
        for_good = remember and not no_fit
        for c in self._classes(job):
            if mask >> c & 1:
                continue
            if c in reservations:
                if (
                    class_free[c] >= gpus
                    and gpus < no_fit.get(c, INF)
                    and self.quota.fits(job.tix, c, gpus)
                ):
                    return False
                continue
            if class_free[c] < gpus or gpus >= no_fit.get(c, INF):
                return False
            if self.quota.fits(job.tix, c, gpus):
                return False
            for_good = False  # turned away for quota alone, no reservation there
        if for_good:
            job.away_version = self._away_version
        return True

    # ================================================================ start / stop
    def _start(
        self,
        job: Job,
        gpu_class: int,
        level: Level,
        plan: list[tuple[int, int]],
        now: float,
        ctx: _PassContext,
    ) -> None:
        """Start ``job`` on the GPUs of ``plan``: charge it (Running), record the start
        (withdrawable later in a pass that may preempt), and index its estimated end."""
        if ctx.track:
            ctx.started[job.index] = (job.first_start_s, job.level, job.run_start_s, job.est_end_s)
        self.running.attach(job, gpu_class, self.cs.allocate(plan), now)
        job.level = _LEVEL_NAME[level]  # the level's value, one shared str per level
        job.move(RUNNING, now)
        if job.first_start_s is None:
            job.first_start_s = now
        job.run_start_s = now
        job.run_epoch += 1
        job.est_end_s = now + self.backfill.expected_run(job)
        self.running.index_end(job)
        self.pending.remove(job)

    def _stop(self, job: Job, now: float) -> None:
        """A running job stops (ends, is evicted or cancelled): its GPUs and quota come
        back, its service is counted, and a full pass is due."""
        self.running.detach(job, now)
        self.running.ended_run(job)
        job.attained += job.gpus * max(0.0, now - job.run_start_s)
        self._dirty = True
        self._freed = True
        self._away_version += 1  # GPUs and quota came back

    def finish(self, job: Job, now: float, state: JobState = JobState.COMPLETED) -> None:
        """A running job ended (completed or failed for good): free its GPUs."""
        self._stop(job, now)
        job.progress_s = job.duration_s if state is COMPLETED else job.progress_s
        job.move(state, now)
        job.end_s = now

    def cancel(self, job: Job, now: float) -> None:
        """Cancel a pending or running job."""
        if job.state is RUNNING:
            self._stop(job, now)
        elif job.state is PENDING:
            self.pending.remove(job)
        job.move(CANCELLED, now)
        job.end_s = now

    def interrupt(
        self, job: Job, now: float, *, by: Job | None = None, failure: bool = False
    ) -> None:
        """Evict a running job (preemption or failure): it loses work since its last
        checkpoint, pays the restart overhead on its next start, and waits again."""
        self._evict(job, now, by, failure=failure, push=True)

    def _evict(self, job: Job, now: float, by: Job | None, *, failure: bool, push: bool) -> None:
        """:meth:`interrupt`; without ``push`` the job waits for the next pass (a victim of
        the pass running now is not tried again by it: see the module's docstring)."""
        self._stop(job, now)
        gained, saved = run_progress(
            now - job.run_start_s, job.overhead_s, job.checkpoint_s, self.cfg.checkpoint_write_s
        )
        base = job.progress_s
        lost = (gained - saved) + min(now - job.run_start_s, job.overhead_s)
        job.progress_s = base + saved
        if failure:
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
        job.pnode = -1
        job.move(PREEMPTED, now)
        job.move(PENDING, now)
        self._enqueue(job, push=push)

    def restore_running(self, job: Job, placement: Placement, start_s: float) -> None:
        """Re-attach a job that was running before a restart to exactly its GPUs. Raises
        ValueError, changing nothing, for a field out of bounds (:func:`job_problem`):
        such a job cannot be failed here, as it already runs."""
        problem = job_problem(job)
        if problem is not None:
            msg = f"job {job.id}: {problem}"
            raise ValueError(msg)
        known = (
            job.id in self.by_id
            if self._index_ids
            else 0 <= job.index < len(self.jobs) and self.jobs[job.index] is job
        )
        if not known:
            job.index = len(self.jobs)
            self.jobs.append(job)
            if self._index_ids:
                self.by_id[job.id] = job
        job.classes = None
        job.tix = self.tenant_index.get(job.tenant, -1)
        if job.tix < 0:
            msg = f"job {job.id}: tenant '{job.tenant}' has no quota in this fleet"
            raise ValueError(msg)
        self.cs.reserve_exact(placement)
        node = placement[0][0]
        gpu_class = self.cs.dom_class[self.cs.node_dom[node]]
        self.running.attach(job, gpu_class, placement, start_s)
        job.move(RUNNING, start_s)
        job.first_start_s = job.first_start_s if job.first_start_s is not None else start_s
        job.run_start_s = start_s
        job.est_end_s = start_s + self.backfill.expected_run(job)
        self.running.index_end(job)

    # ================================================================ preemption
    def _try_preempt(
        self, job: Job, gpu_class: int, now: float, res: CycleResult, ctx: _PassContext
    ) -> bool:
        """Start ``job`` in class ``gpu_class`` by evicting the victims preemption chooses (a
        victim started earlier in this pass has its start withdrawn instead); False,
        changing nothing, when no set of victims lets it start."""
        chosen = self.preemption.search(job, gpu_class, now, ctx.started)
        if chosen is None:
            return False
        this_pass = ctx.started
        for v in chosen:
            if this_pass and v.job.index in this_pass:
                self._withdraw(v.job, now, job, ctx, res)  # (still detached)
                continue
            self.running.reattach(v.job, now)
            self._evict(v.job, now, job, failure=False, push=False)
            res.preempted.append(v.job)
        found = self.preemption.startable(job, gpu_class)
        if found is None:  # cannot happen: the victims' GPUs were just freed
            msg = f"preemption for {job.id} freed GPUs that no longer fit it"
            raise AssertionError(msg)
        self._start(job, gpu_class, found[0], found[1], now, ctx)
        res.started.append(job)
        return True

    def _withdraw(self, job: Job, now: float, by: Job, ctx: _PassContext, res: CycleResult) -> None:
        """Take back the start of ``job`` made earlier in this pass, for ``by``: a pass
        never reports a job both started and preempted (see the module's docstring).

        ``job`` is already detached (its GPUs, quota and usage are back as before its
        start: usage changed twice at the same ``now``, which adds nothing). What else
        the start did is undone: its fields and history are as before, and it is pending
        again, queued for the next pass (not this one: it is not tried twice in a pass).
        Like an eviction it never takes the GPUs back from ``by`` (``preempted_for``).
        Decisions the pass made while the job held its GPUs stand; they were made with
        fewer GPUs free, and the next pass, a full one, sees the GPUs it left.
        """
        first, level, run_start, est_end = ctx.started.pop(job.index)
        self.running.withdrawn_run(job)
        job.withdraw_start(now)
        job.first_start_s = first
        job.level = level
        job.run_start_s = run_start
        job.est_end_s = est_end
        job.placement = []
        job.pnode = -1
        job.preempted_for = job.preempted_for | {by.id}
        res.started.remove(job)
        self.withdrawn += 1
        self._freed = True
        self._away_version += 1  # its GPUs and quota came back
        # Not pushed on its queue: this pass took its list of fresh jobs when it began,
        # so the job is tried by the next pass only.
        self._enqueue(job, push=False)

    def capacity_changed(self) -> None:
        """Capacity came back outside the scheduler's own decisions (e.g. a repaired node)."""
        self._dirty = True
        self._freed = True
        self._away_version += 1

    # ================================================================ out of service
    def take_out_of_service(self, node: int) -> int:
        """Take a node's free GPUs out of service (a failed node): no start may use them
        until :meth:`return_to_service`. Its busy GPUs are the running jobs' to release
        (the caller interrupts those first). Returns the mask of GPUs taken."""
        mask = self.cs.take(node, self.cs.node_free[node])
        self.down_gpus += mask.bit_count()
        return mask

    def return_to_service(self, node: int, mask: int) -> None:
        """Give back GPUs taken by :meth:`take_out_of_service` (a repaired node)."""
        self.cs.give(node, mask)
        self.down_gpus -= mask.bit_count()
        self.capacity_changed()

    def node_gpus(self) -> list[int]:
        """GPUs per node, by node index (what a failure model draws nodes by)."""
        return list(self.cs.node_cap)

    def free_by_class_site(self) -> list[dict[int, int]]:
        """Free GPUs per GPU class and site (site index -> GPUs), read-only: the live
        counts, so an observer sampling often copies nothing."""
        return self.cs.csite_free

    @property
    def stranded_gpus(self) -> int:
        """Free GPUs in partly used NVLink domains (what fragmentation leaves)."""
        return self.cs.stranded

    # ================================================================ views
    def running_jobs(self) -> list[Job]:
        """Every running job, by dense index (from the per-tenant, per-class lists: the
        per-job path keeps no dict of running jobs besides them)."""
        return self.running.jobs(self.jobs)

    def placement_of(self, job: Job) -> list[tuple[str, tuple[int, ...]]]:
        """(node name, local GPU indices) for each node a running job holds."""
        return [
            (self.cs.node_name(node), tuple(i for i in range(mask.bit_length()) if mask >> i & 1))
            for node, mask in job.placement
        ]

    def placement_from(self, nodes: list[tuple[str, tuple[int, ...]]]) -> Placement:
        """Inverse of :meth:`placement_of` (node names end in ``/n<index>``)."""
        out: Placement = []
        for name, gpus in nodes:
            node = int(name.rsplit("/n", 1)[1])
            out.append((node, sum(1 << i for i in gpus)))
        return out

    @property
    def pending_count(self) -> int:
        """Pending jobs."""
        return self.pending.count

    @property
    def pending_gpus(self) -> int:
        """GPUs asked for by pending jobs."""
        return self.pending.gpus

    @property
    def running_count(self) -> int:
        """Running jobs."""
        return self.running.count

    @property
    def busy_gpus(self) -> int:
        """GPUs held by running jobs."""
        return self.topo.gpus_total - sum(self.cs.class_free)

    def quota_table(self) -> list[dict[str, object]]:
        """Nominal, limits and live usage per tenant and class (for the API and reports)."""
        rows: list[dict[str, object]] = []
        for t, name in enumerate(self.tenants):
            for c, cell in enumerate(self.quota.cells[t]):
                if cell.nominal == 0 and cell.used == 0 and cell.borrow_limit == 0:
                    continue
                rows.append(
                    {
                        "tenant": name,
                        "gpu_class": self.topo.classes[c],
                        "cohort": self.quota.cohort_name(t),
                        "nominal": cell.nominal,
                        "borrowing_limit": None
                        if cell.borrow_limit >= 1 << 59
                        else cell.borrow_limit,
                        "lending_limit": cell.lendable,
                        "used": cell.used,
                        "borrowed": self.quota.borrowed(t, c),
                        "lent": self.quota.lent(t, c),
                    }
                )
        return rows
