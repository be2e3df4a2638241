"""Preemption that saves work: victims that keep their GPUs while they save, and the
waiting jobs those GPUs are promised to.

Decides when a preempted job's GPUs come back and who gets them first: a victim whose
grace (``Job.preempt_grace_s``, else ``SchedulerConfig.preempt_grace_s``) is positive is
told to stop (SIGTERM, in the service) and keeps its GPUs and quota for the whole grace
while it saves; the job that preempted it waits (reason ``preempt_grace``) and starts on
those GPUs at the first pass once the last of its victims has given them back, before
any other job is tried. A grace at least as long as a checkpoint write
(``checkpoint_write_s``) saves everything done so far: the victim loses only the grace
itself and the restart overhead it paid, no work; a shorter grace is not enough to save,
and it loses the work since its last checkpoint as without a grace, plus the grace.
Without a grace (0, the default) nothing here acts, and preemption is as it always was
(:meth:`~aifactory.scheduler.state.SchedulerState._evict`).

The twin holds a victim's GPUs for the whole grace, the bound that Slurm's ``GraceTime``
and Kubernetes' ``terminationGracePeriodSeconds`` give: a trainer that exits sooner frees
them sooner in life, which the twin does not model (a conservative choice).

Invariants: a saving victim is in the running lists (its GPUs and quota are charged) but
is no preemption candidate (``seat.preemptible`` is False while it saves, and its counts
by priority are dropped); its job is PREEMPTED until its grace ends, then PENDING. A
waiting job with a claim (``seat.claim_s >= 0``) is in its queue, its quota charged in
its claim's class (``claim_gpus``: its GPUs less its own tenant's saving victims'), and
is not tried (it neither preempts again nor reserves) until its claim is settled.
``grace_due`` is the earliest end of a grace or claim (INF: none), and every pass result
made while one is open asks for a wake-up then.
"""

from __future__ import annotations

from aifactory.fleet.topology import Topology
from aifactory.scheduler.config import SchedulerConfig
from aifactory.scheduler.records import WAIT_GRACE, CycleResult
from aifactory.scheduler.seat import Seat
from aifactory.scheduler.state import INF, SchedulerState
from aifactory.workload.job import PENDING, PREEMPTED, RUNNING, Job
from aifactory.workload.progress import run_progress


class Grace(SchedulerState):
    """The saving victims and the claims on their GPUs (see the module's docstring)."""

    def __init__(self, topo: Topology, config: SchedulerConfig | None = None) -> None:
        super().__init__(topo, config)
        self.saving: dict[int, Seat] = {}  # victims still saving, by seat index
        self.claims: dict[int, Seat] = {}  # jobs waiting for victims' GPUs, by seat index
        self.grace_due = INF
        self.saved_preemptions = 0  # preemptions whose victim saved all its work

    def grace_of(self, seat: Seat) -> float:
        """Seconds the seat's job keeps its GPUs when preempted (its own grace, else the
        scheduler's default)."""
        job = seat.job
        if job.service:  # a service has nothing to save: it stops at once (state._evict)
            return 0.0
        grace = job.preempt_grace_s
        return self.cfg.preempt_grace_s if grace is None else grace

    def _begin_grace(self, seat: Seat, now: float, by: Job, grace: float) -> None:
        """The seat's running job is preempted for ``by`` with ``grace`` seconds to save:
        it is counted preempted now, keeps its GPUs until ``now + grace``, and is no
        preemption candidate meanwhile."""
        job = seat.job
        wall = now - job.run_start_s
        write_s = self.cfg.checkpoint_write_s
        gained, saved = run_progress(wall, job.overhead_s, job.checkpoint_s, write_s)
        if grace >= write_s:  # time enough to write a checkpoint of everything done
            saved = gained
            self.saved_preemptions += 1
        lost = (gained - saved) + min(wall, job.overhead_s) + grace
        job.progress_s += saved
        job.preemptions += 1
        self.preemptions += 1
        job.lost_preempt_gpu_s += lost * job.gpus
        job.preempted_for = job.preempted_for | {by.id}
        job.overhead_s = self.cfg.restart_overhead_s
        job.move(PREEMPTED, now)
        self.running.hold(seat)
        seat.saving_until = now + grace
        # Its GPUs come back at the end of the grace: what EASY's reservations read.
        self.running.ended_run(seat)
        seat.run_epoch += 1
        seat.est_end_s = now + grace
        self.running.index_end(seat)
        self.saving[seat.index] = seat
        self.grace_due = min(self.grace_due, seat.saving_until)

    def _claim(self, seat: Seat, gpu_class: int, until: float, now: float, own_saving: int) -> None:
        """The seat's pending job preempted victims that save until ``until``: it waits for
        their GPUs in ``gpu_class``. ``own_saving``: GPUs of its own tenant's victims among
        them (still charged to the tenant while they save)."""
        seat.claim_s = until
        seat.claim_class = gpu_class
        # Its quota is spoken for while it waits: charged now, so that the jobs behind it
        # do not find the room it will take and preempt again for it (reclaim saw the
        # room before any victim gave its GPUs back, and evicted twice the victims). Less
        # what its own tenant's saving victims still hold: that part is charged already,
        # and counting it twice made the tenant look like a borrower to be reclaimed from.
        seat.claim_gpus = max(0, seat.gpus - own_saving)
        self.quota.add(seat.tix, gpu_class, seat.claim_gpus)
        self.claims[seat.index] = seat
        self.grace_due = min(self.grace_due, until)
        self._waits(seat, WAIT_GRACE, now)

    def _end_saving(self, seat: Seat, now: float) -> None:
        """A saving victim gives its GPUs back (its grace ended, or it was interrupted or
        cancelled while saving): it waits again, for the next pass, unless cancelled."""
        del self.saving[seat.index]
        seat.saving_until = -1.0
        self._stop(seat, now)
        seat.preemptible = seat.job.preemptible
        seat.job.placement = []
        seat.pnode = -1

    def _drop_claim(self, seat: Seat) -> None:
        """The seat's job waits for victims' GPUs no more (it starts, is cancelled, or its
        claim could not be honoured): the quota charged for it comes back (the caller says
        a pass is due where nothing else does)."""
        if self.claims.pop(seat.index, None) is not None:
            self.quota.add(seat.tix, seat.claim_class, -seat.claim_gpus)
        seat.claim_gpus = 0
        seat.claim_s = -1.0
        seat.claim_class = -1

    def _settle_graces(self, now: float) -> list[Job]:
        """Phase 0 of a pass at ``now``: victims whose grace has ended give their GPUs back
        and wait again; then each job whose claim is due starts on the GPUs given back, in
        the order the claims were made (a claim that cannot be honoured now, as when a
        node failed meanwhile, is dropped: its job is tried by the pass as any other).
        Returns the jobs started."""
        for seat in [s for s in self.saving.values() if s.saving_until <= now]:
            self._end_saving(seat, now)
            seat.job.move(PENDING, now)
            self._enqueue(seat, now, push=False)
        started: list[Job] = []
        due = [s for s in self.claims.values() if s.claim_s <= now]
        if due:
            ctx = self._ctx.reset(self._reservations, preempt=False, track=False)
            for seat in due:
                c = seat.claim_class
                self._drop_claim(seat)
                if not seat.live or seat.job.state is not PENDING:
                    continue  # cancelled (or failed) while it waited
                found = self.preemption.startable(seat, c)
                if found is None:
                    continue
                self._start(seat, c, found[0], found[1], now, ctx)
                started.append(seat.job)
        self._next_due()
        return started

    def _next_due(self) -> None:
        """Recompute the earliest end of a grace or claim still open."""
        due = INF
        for s in self.saving.values():
            due = min(due, s.saving_until)
        for s in self.claims.values():
            due = min(due, s.claim_s)
        self.grace_due = due

    def _ask_wakeup(self, res: CycleResult) -> None:
        """Make sure the caller runs a pass when the next grace or claim is due."""
        if self.grace_due < INF:
            wake = res.wakeup_s
            res.wakeup_s = self.grace_due if wake is None else min(wake, self.grace_due)

    def _waiting_on_claim(self, seat: Seat, now: float) -> bool:
        """Whether the seat's job waits for victims' GPUs (then it is not tried)."""
        if seat.claim_s < 0:
            return False
        self._waits(seat, WAIT_GRACE, now)
        return True

    # -- a restart: the service rebuilds its scheduler from the database ---------------
    def claimant_of(self, victim: Job) -> Job | None:
        """The waiting job that a saving ``victim``'s GPUs are promised to (None: none, or
        the victim does not save here): what a service writes down so that a scheduler
        rebuilt after a restart can promise them again (:meth:`restore_saving`)."""
        seat = self._find(victim)
        if seat is None or seat.index not in self.saving:
            return None
        for claim in self.claims.values():
            if claim.job.id in victim.preempted_for:
                return claim.job
        return None

    def restore_saving(self, victim: Job, until: float, claimant: Job | None, now: float) -> None:
        """A job re-attached running (``restore_running``) that was saving when the service
        stopped: it keeps its GPUs until ``until`` and is no preemption candidate meanwhile,
        as :meth:`_begin_grace` left it (its preemption was counted before the restart);
        and ``claimant``, if it waits here, waits for those GPUs again as its claim did, so
        that it does not preempt a second victim for GPUs already coming back to it.
        Raises ValueError, changing nothing, for a victim that does not run here."""
        seat = self._find(victim)
        if seat is None or victim.state is not RUNNING or seat.index in self.saving:
            msg = f"job {victim.id}: not a running job of this scheduler"
            raise ValueError(msg)
        victim.move(PREEMPTED, now)
        self.running.hold(seat)
        seat.saving_until = until
        # Its GPUs come back at ``until``: what EASY's reservations read.
        self.running.ended_run(seat)
        seat.run_epoch += 1
        seat.est_end_s = until
        self.running.index_end(seat)
        self.saving[seat.index] = seat
        self.grace_due = min(self.grace_due, until)
        wants = self._find(claimant) if claimant is not None else None
        if wants is None or wants.job.state is not PENDING:
            return
        victim.preempted_for = victim.preempted_for | {wants.job.id}
        own = seat.gpus if seat.tix == wants.tix else 0
        if wants.index in self.claims:  # another victim of the same claimant, restored
            own += wants.gpus - wants.claim_gpus
            until = max(until, wants.claim_s)
            self._drop_claim(wants)
        self._claim(wants, seat.run_class, until, now, own)
