"""The scheduling pass: which pending jobs start, where, and which running jobs they evict.

A pass is written as numbered phases:

1. heads     - the head of every tenant queue, ordered by (tenant key, job key);
2. admit     - quota check, then topology-aware gang placement;
3. reserve   - EASY: the first job of a class that does not fit gets a reservation at
               the earliest time enough GPUs free up (from running jobs' estimates);
               later jobs of that class start only if they don't delay it;
4. preempt   - priority, quota reclaim (and the policy's own rank, for LAS), choosing
               victims that lose the least work, never one the job was preempted for;
5. requeue   - jobs that could not start go back to their queues.

Two kinds of pass run these phases: a full pass over every tenant queue
(:meth:`Cycle._full_pass`, after capacity came back) and an arrivals pass over the new
jobs only (:meth:`Cycle._arrivals_pass`: nothing else changed). Every job tried goes
through :meth:`Cycle._try_start` (phases 2-4). The pass decides; the moves it decides are
carried out by :class:`~aifactory.scheduler.state.SchedulerState`'s methods, and the skips
that change no decision are those of :mod:`~aifactory.scheduler.shortcuts`. The scan limits
(``queue_depth``, ``max_job_test``) bound the jobs a pass tries, whatever the backlog.
"""

from __future__ import annotations

import heapq

from aifactory.heap import RowHeap, before
from aifactory.heap import pop as head_pop
from aifactory.heap import push as head_push
from aifactory.scheduler.grace import Grace
from aifactory.scheduler.owners import fold_by_class, home_then_most_idle
from aifactory.scheduler.placement import CROSS_SITE
from aifactory.scheduler.policies import TenantUsage
from aifactory.scheduler.queue import Head, key_pair, row_first
from aifactory.scheduler.records import (
    PREEMPTED_FOR,
    WAIT_CAPACITY,
    WAIT_POWER,
    WAIT_QUOTA,
    WAIT_RESERVATION,
    CycleResult,
    PassContext,
    Reservation,
)
from aifactory.scheduler.seat import Seat
from aifactory.scheduler.state import INF


class Cycle(Grace):
    """The pass over a scheduler's state (see the module's docstring)."""

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
            self.shortcuts.new_epoch()
        else:
            reservations = self._reservations
        # Phase 1: heads. Between deep scans (no preemption), heads remembered as turned
        # away by reservations (seat.away_version) wait aside (``away``) instead of going
        # through the merge: each would be popped only to stop its queue. If every head is
        # turned away, the pass has nothing to do (on a busy fleet most passes end here).
        # A reservation holder that starts in the pass bumps the turned-away version; the
        # heads aside after it in the merge order join then, as tried after the bump.
        away: list[Head] = []
        if not deep and self._periodic and self.shortcuts.on:
            heads = self._open_heads(now, reservations, away)
            if not heads:
                self.shortcuts.all_away += 1
                return
        else:
            heads = self._heads(now)
        version = self.shortcuts.away_version
        # Preemption searches are the costliest step of a pass; with a backfill interval
        # they run in the periodic deep scans only (Slurm's preemption also acts from its
        # scheduling cycles, not on every event).
        preempt = deep or not self._periodic
        ctx = self._ctx.reset(reservations, preempt=preempt, track=preempt and self.cfg.preemption)
        held: RowHeap | None = None  # rows a deep scan took off their queues (as a list)
        tested = tried = 0  # jobs that could not start; jobs tried (the scan limit's count)
        limit = self.cfg.max_job_test if deep else self.cfg.queue_depth
        pending = self.pending
        queues = pending.queues
        while heads:
            top = head_pop(heads)
            t = top.tix
            q = queues[t]
            # Peek, not pop: most heads tried between deep scans cannot start, and a pop
            # and push back costs a sift on a queue of thousands. A job that starts leaves
            # a stale row that Pending.clean drops.
            seat = self.seats[q.ref[0]]
            head = t not in ctx.seen_tenants
            ctx.seen_tenants.add(t)
            if (
                not easy
                and not ctx.preempt
                and (
                    self.shortcuts.remembered(seat)  # (asked now: a start may bump the version)
                    or self.shortcuts.turned_away(
                        seat, self._classes(seat), reservations, ctx.no_fit
                    )
                )
            ):
                continue  # strict pass: this tenant's queue stops here
            if limit and tried >= limit:
                break  # the rest keep their places (rows still queued) for a later pass
            tried += 1
            # Phases 2-4.
            if self._try_start(seat, now, ctx, res, head=head):
                if away and self.shortcuts.away_version != version:
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
            if not self._may_start_more(t):
                continue  # nothing this tenant could start now: stop its queue
            if pending.clean(q):
                head_push(heads, self._head(q, t, now))
        # Phase 5: requeue.
        if held is None:
            return
        seats = self.seats
        for i in range(len(held)):
            index = held.ref[i]
            queues[seats[index].tix].push(held.k0[i], held.k1[i], held.seq[i], index)

    def _open_heads(
        self, now: float, reservations: dict[int, Reservation], away: list[Head]
    ) -> list[Head]:
        """The merge of heads for a pass between deep scans, leaving the heads remembered
        as turned away (seat.away_version: turned away by reservations, which stays so until
        the turned-away version changes, as within a pass reservations only tighten and
        GPUs and quota are only taken) in ``away``, in queue order. Empty, and no head
        built, when the shortcuts' ``turned_away`` turns every head away."""
        no_fit: dict[int, float] = {}  # (stays empty: the answers hold beyond this pass)
        shortcuts = self.shortcuts  # (on: this runs only with the shortcuts)
        version = shortcuts.away_version
        open_: list[int] = []
        all_away = True
        pending = self.pending
        for t, q in enumerate(pending.queues):
            if not pending.clean(q):
                continue
            seat = self.seats[q.ref[0]]
            if seat.away_version == version:  # REMEMBERED: nothing came back since
                shortcuts.remembered_n += 1
                continue
            if not shortcuts.turned_away(
                seat, self._classes(seat), reservations, no_fit, remember=True
            ):
                all_away = False
            if seat.away_version != version:
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

    def _may_start_more(self, tenant: int) -> bool:
        """Whether the smallest waiting job of ``tenant`` could still start in this pass.

        A necessary condition only (placement and reservations are not checked), so a
        False here never skips a job that could start. It reads free GPUs and quota, never
        a memo: whether the queue goes on decides which jobs are tried (and may reserve).
        """
        smallest = self.pending.smallest_of(tenant)
        if not smallest:
            return False
        for c, cell in enumerate(self.quota.cells[tenant]):
            if (
                cell.nominal + cell.borrow_limit > 0
                and self.cs.class_free[c] >= smallest
                and self.quota.fits(tenant, c, smallest)
            ):
                return True
        return False

    def _arrivals_pass(self, fresh: list[Seat], now: float, res: CycleResult) -> None:
        """A pass after arrivals alone: only the new jobs can start (nothing else changed
        since the last pass), tried in the policy's order (merged by tenant key for fair
        share); a new job that waits joins its queue. With a backfill interval, a waiting
        job's chance to preempt comes at the next deep scan, whose time goes in ``res``."""
        easy = self._easy
        preempt = not self._periodic
        # (starts are kept to withdraw only if a later job may preempt: one new job has none)
        track = preempt and self.cfg.preemption and len(fresh) > 1
        ctx = self._ctx.reset(self._reservations, preempt=preempt, track=track)
        key = self.policy.job_key
        if len(fresh) > 1:
            fresh.sort(key=lambda s: (key(s.job), s.qseq))
        limit = self.cfg.queue_depth
        tried = 0  # beyond ``limit`` new jobs join their queues untried
        if self._keyed and len({s.tix for s in fresh}) > 1:
            # Merge the tenants' new jobs by tenant key (re-keyed after each start), as
            # the full pass merges queue heads: same-instant arrivals get the fair order.
            by_tenant: dict[int, list[Seat]] = {}
            for s in reversed(fresh):
                by_tenant.setdefault(s.tix, []).append(s)
            heads = [
                (self._tenant_key(t, now), key(ss[-1].job), ss[-1].qseq, t)
                for t, ss in by_tenant.items()
            ]
            heapq.heapify(heads)
            while heads:
                t = heapq.heappop(heads)[3]
                ss = by_tenant[t]
                tried = self._arrival(ss.pop(), now, ctx, res, easy=easy, tried=tried)
                if ss:
                    heapq.heappush(
                        heads, (self._tenant_key(t, now), key(ss[-1].job), ss[-1].qseq, t)
                    )
        else:
            for seat in fresh:
                tried = self._arrival(seat, now, ctx, res, easy=easy, tried=tried)
        if limit and tried >= limit and self.pending.count:
            self._freed = self._dirty = True  # a full pass tries the jobs left untried
        if self.cfg.preemption and self._periodic and self.pending.count:
            # Preemption for the new jobs waits for the next deep scan; make sure one comes.
            self._freed = True
            self._dirty = True
            res.wakeup_s = max(now, self._last_deep + self.cfg.backfill_interval_s)

    def _arrival(
        self, seat: Seat, now: float, ctx: PassContext, res: CycleResult, *, easy: bool, tried: int
    ) -> int:
        """Try one new job: it may start if it heads its tenant's queue, or (EASY) around
        earlier jobs of its tenant; else it waits in its queue. ``tried``: jobs tried in
        this pass so far; at the queue depth the job joins its queue untried. Returns the
        new count."""
        if seat.qseq < 0:  # pending no more (qseq >= 0 while pending)
            return tried
        pending = self.pending
        if self.cfg.queue_depth and tried >= self.cfg.queue_depth:
            if not seat.in_queue:
                pending.push(seat)
            return tried
        tried += 1
        q = pending.queues[seat.tix]
        if seat.in_queue:
            head = pending.clean(q) and q.ref[0] == seat.index
            if (head or easy) and self._try_start(seat, now, ctx, res, head=head):
                seat.qseq = -1  # its queue row is now stale
            return tried
        # Not pushed yet: at the head unless a waiting job of its tenant goes first (its
        # key is only needed then, or when it waits).
        k0 = k1 = 0.0
        keyed = pending.clean(q)
        if keyed:
            k0, k1 = key_pair(self.policy.job_key(seat.job))
        head = not keyed or row_first(k0, k1, seat.qseq, q)
        if (head or easy) and self._try_start(seat, now, ctx, res, head=head):
            seat.qseq = -1
        elif not seat.in_queue:
            if not keyed:
                k0, k1 = key_pair(self.policy.job_key(seat.job))
            pending.push_row(seat, k0, k1)  # it waits (strict order: behind an earlier job)
        return tried

    def _tenant_key(self, t: int, now: float) -> float:
        """The policy's key of tenant ``t`` now (fair share: its decayed usage by weight)."""
        self.usage.advance(t, now)
        name = self.tenants[t]
        decayed = self.usage.average_gpus(t)
        running = tuple(self.usage.running[t])
        capacity = self.capacity
        fold = self._fold
        if fold is not None:  # shares of the fleet's classes, whoever owns the GPUs
            capacity = self._fleet_capacity
            decayed, running = fold_by_class(fold, len(capacity), decayed, running)
        usage = {
            name: TenantUsage(decayed_gpus=decayed, running_gpus=running, weight=self.weight[t])
        }
        return self.policy.tenant_key(name, usage, capacity)

    def _class_order(self, classes: tuple[int, ...], tenant: int) -> tuple[int, ...]:
        """Classes in the order to try: where the tenant has most unused nominal quota first.
        With owner classes (owners.py): classes where it has nominal quota (its home
        hardware) so, then other owners' hardware, the most idle first (where it borrows)."""
        cells = self.quota.cells[tenant]
        if self._fold is not None:
            return home_then_most_idle(classes, cells, self.cs.class_free)
        if len(classes) == 2:  # the common mixed fleet: one comparison, no sort
            a, b = classes
            ka, kb = cells[a].used - cells[a].nominal, cells[b].used - cells[b].nominal
            return classes if ka < kb or (ka == kb and a <= b) else (b, a)
        return tuple(sorted(classes, key=lambda c: (cells[c].used - cells[c].nominal, c)))

    def _try_start(
        self, seat: Seat, now: float, ctx: PassContext, res: CycleResult, *, head: bool
    ) -> bool:
        """Phases 2-4 for one job: start it in the first class (most unused nominal quota
        first) where its quota fits, no reservation it would delay stands, and a placement
        exists; else let it preempt (a queue head, or any job that outranks running ones);
        else, blocked for GPUs, it may take the class's EASY reservation. True if it
        started. ``head``: the job heads its tenant's queue in this pass.
        """
        if seat.claim_s >= 0 and self._waiting_on_claim(seat, now):
            return False  # it waits for the GPUs of victims still saving (grace)
        all_classes = self._classes(seat)
        blocked: int | None = None
        gpus = seat.gpus
        tenant = seat.tix
        class_free = self.cs.class_free
        no_fit = ctx.no_fit
        # Classes without enough free GPUs first (a plain loop; the job's tuple kept if none is).
        ruled_out = False
        refused = self.power.refused  # (grows if a cap refuses it a placement)
        turned = False  # a reservation turned it away in some class
        short = False  # its quota fits in some class that lacks a placement for it
        for c in all_classes:
            if gpus > class_free[c]:
                ruled_out = True
                if blocked is None:
                    blocked = c
        classes = all_classes
        if ruled_out:
            classes = tuple([c for c in all_classes if gpus <= class_free[c]])
        if len(classes) > 1:
            classes = self._class_order(classes, tenant)
        for c in classes:
            memo = (tenant << 8) | c
            if gpus >= ctx.quota_fail.get(memo, INF):
                self.shortcuts.quota_fail += 1
                continue
            if not self.quota.fits(tenant, c, gpus):
                if ctx.memo:
                    ctx.quota_fail[memo] = gpus
                continue
            resv = ctx.reservations.get(c)
            if resv is not None and not self.backfill.fits(seat, resv, now, commit=False):
                self.shortcuts.close(seat, c)
                turned = True
                continue
            fit_key = (c << 1 | (1 if seat.cross else 0)) + seat.site_key
            if gpus >= no_fit.get(fit_key, INF):
                self.shortcuts.no_fit += 1
                found = None  # a smaller gang found no placement here in this pass
            else:
                found = self.power.place(c, gpus, cross_site=seat.cross, site=seat.site)
                if found is not None and found[0] is CROSS_SITE:  # (spanning.py: or wait)
                    found = found if self.spanning.pays(seat, c, found[1], now) else None
            if found is None:
                if ctx.memo and not seat.cross:
                    no_fit[fit_key] = min(gpus, no_fit.get(fit_key, INF))
                if blocked is None or c < blocked:
                    blocked = c  # the first class short of GPUs, whatever order they were tried in
                short = True
                continue
            if resv is not None:
                if resv.holder == seat.index:
                    del ctx.reservations[c]  # the job it was held for starts: it is spent
                    self.shortcuts.new_epoch()
                else:
                    self.backfill.fits(seat, resv, now, commit=True)
            self._start(seat, c, found[0], found[1], now, ctx)
            res.started.append(seat.job)
            return True
        if (
            self.cfg.preemption
            and ctx.preempt
            and (head or self.preemption.may_preempt_behind_head(seat))
        ):
            rank = self.policy.rank(seat.job, now) if self._preemptive else 0
            # PREEMPT_FAILED holds for jobs that may evict the same candidates: the same
            # tenant, priority, rank and site scope, and none excluded (preempted_for).
            remember = ctx.memo and not seat.job.preempted_for
            cross = 1 if seat.cross else 0
            for c in all_classes:
                failed = (tenant, c, seat.priority, rank, cross + seat.site_key)
                if remember and gpus >= ctx.preempt_failed.get(failed, INF):
                    self.shortcuts.preempt_failed += 1
                    continue
                if self._try_preempt(seat, c, now, res, ctx):
                    return True
                if seat.claim_s >= 0:
                    return False  # its victims save first: it waits for them (grace)
                if remember:
                    ctx.preempt_failed[failed] = gpus
        if (
            blocked is not None
            and self._easy
            and blocked not in ctx.reservations
            and self.quota.fits_when_idle(tenant, blocked, gpus)
        ):
            # Blocked for GPUs, not by others' quota: as GPUs free up (the tenant's own
            # running jobs included) the job can start, so it holds the reservation.
            ctx.reservations[blocked] = self.backfill.reserve(seat, blocked, self.seats, now)
        # Why it waits: GPUs were there but a site's power cap refused them, before short
        # of GPUs where its quota fits (it starts once they free up), before turned away
        # by a reservation, before its quota.
        if self.power.refused != refused:
            self._waits(seat, WAIT_POWER, now)
        elif short or (ruled_out and self._quota_fits_where_short(seat)):
            self._waits(seat, WAIT_CAPACITY, now)
        elif turned:
            self._waits(seat, WAIT_RESERVATION, now)
        else:
            self._waits(seat, WAIT_QUOTA, now)
        return False

    # ================================================================ preemption
    def _try_preempt(
        self, seat: Seat, gpu_class: int, now: float, res: CycleResult, ctx: PassContext
    ) -> bool:
        """Start the seat's job in class ``gpu_class`` by evicting the victims preemption chooses (a
        victim started earlier in this pass has its start withdrawn instead); False,
        changing nothing, when no set of victims lets it start. Also False, with a claim
        on their GPUs (``seat.claim_s``), when some victims keep their GPUs to save
        (:mod:`~aifactory.scheduler.grace`): the job starts once they give them back."""
        chosen = self.preemption.search(seat, gpu_class, now, ctx.started)
        if chosen is None:
            return False
        this_pass = ctx.started
        job = seat.job
        saving_until = -1.0  # when the last victim that keeps its GPUs to save gives them back
        own_saving = 0  # GPUs of the job's own tenant among those victims
        for v in chosen:
            victim = v.seat
            if this_pass and victim.index in this_pass:
                self._withdraw(victim, now, job, ctx, res)  # (still detached)
                continue
            self.running.reattach(victim, now)
            grace = self.grace_of(victim)
            if grace > 0:
                self._begin_grace(victim, now, job, grace)  # (keeps its GPUs meanwhile)
                saving_until = max(saving_until, now + grace)
                if victim.tix == seat.tix:
                    own_saving += victim.gpus
            else:
                self._evict(victim, now, job, reason=PREEMPTED_FOR, push=False)
            res.preempted.append(victim.job)
        # The victims' GPUs and quota came back (those beyond the need stay free, and
        # their tenants' quota is freed): "does not fit" may no longer hold.
        ctx.forget()
        if saving_until >= 0:
            # Some victims save first: the job waits for their GPUs (grace), and is not
            # tried again until then. (Reported as not started: it stays in its queue.)
            # (the pass asks for its wake-up)
            self._claim(seat, gpu_class, saving_until, now, own_saving)
            return False
        found = self.preemption.startable(seat, gpu_class)
        if found is None:  # cannot happen: the victims' GPUs were just freed
            msg = f"preemption for {job.id} freed GPUs that no longer fit it"
            raise AssertionError(msg)
        self._start(seat, gpu_class, found[0], found[1], now, ctx)
        res.started.append(job)
        return True
