"""The scheduler core's façade: one pure, deterministic, clock-injected decision maker.

The same object runs inside the twin (simulated time) and the control plane (wall
time): every method takes ``now`` from its caller and nothing here reads a clock, does
I/O or touches global state. A scheduling pass runs the numbered phases of
:mod:`~aifactory.scheduler.cycle` (heads, admit, reserve, preempt, requeue).

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

This module is the façade (submit, schedule, finish, cancel, interrupt, restore_running,
and the views the twin and the service read); the pass is :mod:`~aifactory.scheduler.
cycle`, the moves it makes :mod:`~aifactory.scheduler.state`; the state it decides over is
owned by components, each in its own module: :mod:`~aifactory.scheduler.pending` (tenant
queues), :mod:`~aifactory.scheduler.running` (running jobs and their charges on quota,
usage and cluster), :mod:`~aifactory.scheduler.backfill` (EASY reservations),
:mod:`~aifactory.scheduler.preemption` (candidate rules and victim choice);
:mod:`~aifactory.scheduler.config` is what the scheduler accepts,
:mod:`~aifactory.scheduler.records` what a pass decided.
"""

from __future__ import annotations

from operator import itemgetter

from aifactory.scheduler.cluster import Placement
from aifactory.scheduler.config import job_problem
from aifactory.scheduler.cycle import Cycle
from aifactory.scheduler.owners import MIXED
from aifactory.scheduler.queue import Head
from aifactory.scheduler.records import NOTHING, CycleResult, Interruption
from aifactory.scheduler.seat import Seat
from aifactory.workload.job import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Job, JobState

__all__ = ["CycleResult", "Head", "Scheduler"]


class Scheduler(Cycle):
    """Queues, quota and cluster state for one fleet, and the pass that decides."""

    # ================================================================ submit
    def submit(self, job: Job, now: float) -> str | None:
        """Queue a job; returns why it can never run (and fails it), or None. A field out
        of bounds is such a reason (``"invalid field: <field>: ..."``, see
        :func:`job_problem`). Raises ValueError for an id this scheduler already holds
        (or, with ``index_ids``, ever took)."""
        seat = Seat(job, len(self.seats), self.tenant_index.get(job.tenant, -1), self)
        if self._index_ids:
            known = len(self.by_id)
            self.by_id.setdefault(job.id, seat)  # one lookup in a big dict, not two
            if len(self.by_id) == known:
                msg = f"job {job.id}: id already submitted"
                raise ValueError(msg)
        problem = job_problem(job)
        if problem is not None:
            reason: str | None = f"invalid field: {problem}"
        elif job.site is not None:
            reason = self.pin(seat) or self._never_runs(seat)
        else:
            reason = self._never_runs(seat)
        if reason is None:
            self._take(seat)
        self.seats.append(seat)
        if reason is not None:
            job.move(FAILED, now)
            job.end_s = now
            self.rejected[reason.split(":", 1)[0]] += 1
            self._refused.append((job, reason))
            return reason
        self._enqueue(seat, now, push=False)
        return None

    def refusal(self, job: Job) -> str | None:
        """Why :meth:`submit` would refuse ``job`` (a field out of bounds, or it can never
        run here: a gang bigger than its tenant's quota ceiling), or None. Changes no state,
        so a service can answer a submit with the reason before queueing the job."""
        problem = job_problem(job)
        if problem is not None:
            return f"invalid field: {problem}"
        seat = Seat(job, -1, self.tenant_index.get(job.tenant, -1), self)
        return self.pin(seat) or self._never_runs(seat)

    def _never_runs(self, seat: Seat) -> str | None:
        """Why the seat's job can never run on this fleet (unknown tenant or GPU class, a
        gang bigger than any quota ceiling or site allows), or None."""
        job = seat.job
        if seat.tix < 0:
            return f"unknown tenant: '{job.tenant}' has no quota in this fleet"
        if not self.quota.is_leaf(seat.tix):
            return (
                f"not a leaf: tenant '{job.tenant}' groups other tenants; jobs run in its "
                "children (projects)"
            )
        if job.gpu_class is not None and job.gpu_class not in self._class_index:
            return f"unknown GPU class: '{job.gpu_class}'"
        for name in job.gpu_classes:
            if name not in self._class_index:
                return f"unknown GPU class: '{name}'"
        # The classes it could ever run in are among those it accepts: only a job with
        # none of the former is asked which check it fails (most jobs have some).
        if self._classes(seat):
            return None
        if not self._allowed_classes(job):
            most = max(m.hbm_gb for m in self.topo.class_model)
            asked = "the classes it accepts" if job.gpu_class or job.gpu_classes else "this fleet"
            return (
                f"not enough GPU memory: {job.hbm_gb_per_gpu:g} GB per GPU asked, no GPU of "
                f"{asked} has that much (the most here: {most:g} GB)"
            )
        biggest = max(
            (
                min(self.quota.ceiling(seat.tix, c), self._room_for(seat, c))
                for c in self._allowed_classes(job)
            ),
            default=0,
        )
        return (
            f"too big: {job.gpus} GPUs asked, at most {biggest} can ever be "
            f"given to tenant '{job.tenant}'"
        )

    # ================================================================ the pass
    def schedule(self, now: float) -> CycleResult:
        """Run one scheduling pass at ``now``; start and preempt jobs.

        A pass after capacity was freed considers every queue (up to ``backfill_depth``
        jobs that cannot start). A pass after arrivals only considers the new jobs:
        nothing else changed, so the jobs that could not start before still cannot,
        and the reservations of the last full pass still hold.
        """
        refused = self._refused  # jobs refused at submit since the last result
        if refused:
            self._refused = []
        # Phase 0: victims whose grace ended give their GPUs back, and the jobs that
        # preempted them start there (scheduler.grace; nothing to do without a grace).
        settled = self._settle_graces(now) if self.grace_due <= now else []
        if not self._dirty:
            return self._only_refusals(refused, settled)
        self._dirty = False
        self.passes += 1
        fresh = self.pending.take_fresh()
        if self._freed and not self.pending.count:
            # Capacity came back but nothing waits: no pass to run (the common case on a
            # lightly loaded fleet). Reservations are stale now; the next pass rebuilds them.
            self._freed = False
            if self._reservations:
                self._reservations = {}
                self.shortcuts.new_epoch()
            return self._only_refusals(refused, settled)
        res = CycleResult()
        res.rejected = refused
        res.started = settled
        if self._freed:
            for seat in fresh:  # a full pass reads the queues: new submits join them first
                if not seat.in_queue and seat.qseq >= 0:  # (qseq >= 0: still pending)
                    self.pending.push(seat)
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
        self._ask_wakeup(res)
        return res

    def _only_refusals(self, refused: list[tuple[Job, str]], settled: list[Job]) -> CycleResult:
        """The result of a pass that did not run: the refusals since the last one and the
        jobs started as graces ended (phase 0), if any."""
        if not refused and not settled:
            return NOTHING
        res = CycleResult()
        res.rejected = refused
        res.started = settled
        self._ask_wakeup(res)
        return res

    def waiting(self) -> list[Job]:
        """Every pending job (queued or submitted since the last pass), in the order they
        became pending."""
        return self.pending.waiting()

    def finish(self, job: Job, now: float, state: JobState = JobState.COMPLETED) -> None:
        """A running job ended (completed or failed for good): free its GPUs."""
        seat = self._seat(job)
        self._stop(seat, now)
        job.progress_s = job.duration_s if state is COMPLETED else job.progress_s
        job.move(state, now)
        job.end_s = now
        self._release(seat)

    def cancel(self, job: Job, now: float) -> None:
        """Cancel a pending or running job."""
        seat = self._find(job)
        if seat is not None and seat.saving_until >= 0:
            self._end_saving(seat, now)  # preempted, and cancelled while it saves
            self._next_due()
        elif job.state is RUNNING:
            self._stop(self._seat(job), now)
        elif job.state is PENDING:
            seat = self._seat(job)
            self.pending.remove(seat)
            self._stop_waiting(seat, now)
            if seat.claim_s >= 0:
                self._drop_claim(seat)
                self._next_due()
                self.capacity_changed()  # the quota held for its claim came back
        job.move(CANCELLED, now)
        job.end_s = now
        if seat is not None:
            self._release(seat)

    def interrupt(
        self,
        job: Job,
        now: float,
        reason: Interruption = Interruption.PREEMPTED,
        *,
        by: Job | None = None,
    ) -> None:
        """A running job stops before its end and waits again, for ``reason``: preempted
        (for ``by``, or by an operator) or failed, it loses the work since its last
        checkpoint, pays the restart overhead on its next start and counts a preemption or
        a failure; an attempt that never started (a lost launch) counts neither. A job
        preempted earlier that is still saving (its grace) stops saving now: its GPUs
        come back at once, and it waits again with the work it had saved."""
        seat = self._seat(job)
        if seat.saving_until >= 0:
            self._end_saving(seat, now)
            self._next_due()
            job.move(PENDING, now)
            self._enqueue(seat, now)
            return
        self._evict(seat, now, by, reason=reason, push=True)

    def hold_run(self, job: Job, overhead_s: float) -> None:
        """The current run of a running job does no work for its first ``overhead_s``
        seconds (from its start): the twin learnt that its data is still being staged
        (aifactory.twin.staging). Its progress, if evicted, and what evicting it would
        lose are counted from there."""
        seat = self._seat(job)
        job.overhead_s = overhead_s
        seat.overhead_s = overhead_s

    def restore_running(self, job: Job, placement: Placement, start_s: float) -> None:
        """Re-attach a job that was running before a restart to exactly its GPUs. Raises
        ValueError, changing nothing, for a field out of bounds (:func:`job_problem`):
        such a job cannot be failed here, as it already runs."""
        problem = job_problem(job)
        if problem is not None:
            msg = f"job {job.id}: {problem}"
            raise ValueError(msg)
        tix = self.tenant_index.get(job.tenant, -1)
        if tix < 0:
            msg = f"job {job.id}: tenant '{job.tenant}' has no quota in this fleet"
            raise ValueError(msg)
        seat = self._find(job)
        if seat is None:
            seat = Seat(job, len(self.seats), tix, self)
            self.seats.append(seat)
            self._take(seat)
            if self._index_ids:
                self.by_id[job.id] = seat
        seat.classes = None
        seat.tix = tix
        self.cs.reserve_exact(placement)
        node = placement[0][0]
        gpu_class = self.cs.dom_class[self.cs.node_dom[node]]
        self.running.attach(seat, gpu_class, placement, start_s)
        job.move(RUNNING, start_s)
        job.first_start_s = job.first_start_s if job.first_start_s is not None else start_s
        job.run_start_s = start_s
        seat.run_start_s = start_s
        seat.overhead_s = job.overhead_s
        # A gang that spanned sites keeps its slowdown (Job.level, Job.slowdown: the run's).
        factor = job.slowdown if job.level == "cross-site" else 1.0
        seat.est_end_s = start_s + self.backfill.expected_run(job, factor)
        self.running.index_end(seat)

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
        fold = self._fold
        if fold is None:
            return self.cs.csite_free
        out: list[dict[int, int]] = [{} for _ in self._fleet_capacity]
        for c, sites in enumerate(self.cs.csite_free):
            into = out[fold[c]]
            for site, free in sites.items():
                into[site] = into.get(site, 0) + free
        return out

    @property
    def stranded_gpus(self) -> int:
        """Free GPUs in partly used NVLink domains (what fragmentation leaves)."""
        return self.cs.stranded

    # ================================================================ views
    def running_jobs(self) -> list[Job]:
        """Every running job, in the order this scheduler took them (not the preempted
        ones that still hold GPUs while they save: :meth:`saving_jobs`)."""
        return [seat.job for seat in self.running.seats() if seat.saving_until < 0]

    def preempt_grace(self, job: Job) -> float:
        """Seconds ``job`` keeps its GPUs to save when preempted (its own grace, else this
        scheduler's default): what the service gives it from SIGTERM to SIGKILL. A
        service has nothing to save (as ``Grace.grace_of``): none."""
        if job.service:
            return 0.0
        grace = job.preempt_grace_s
        return self.cfg.preempt_grace_s if grace is None else grace

    def saving_jobs(self) -> list[tuple[Job, float]]:
        """Preempted jobs that still hold their GPUs while they save, each with when its
        grace ends (the service kills one still running then), in the order preempted."""
        return [(seat.job, seat.saving_until) for seat in self.saving.values()]

    def pending_reason(self, job: Job) -> str | None:
        """Why a pending job waits, as of the last pass that looked at it (``priority``,
        ``quota``, ``capacity``, ``reservation``; see
        :class:`~aifactory.scheduler.records.Waiting`); None for a job not pending here."""
        seat = self._find(job)
        if seat is None or seat.reason is None:
            return None
        return seat.reason.value

    def wait_times(self, now: float) -> dict[str, dict[str, float]]:
        """Seconds each job waited for each reason, by job id (jobs that never waited are
        left out; a job pending now counts its current reason up to ``now``)."""
        out: dict[str, dict[str, float]] = {}
        rows = [(s.index, s.job.id, s.waited, s.reason, s.reason_s) for s in self.seats]
        rows = sorted([r for r in rows if r[0] >= 0] + self.retired, key=itemgetter(0))
        for _index, job_id, was, reason, since in rows:
            waited = dict(was) if was is not None else {}
            if reason is not None and now > since:
                waited[reason.value] = waited.get(reason.value, 0.0) + (now - since)
            if waited:
                out[job_id] = {str(k): v for k, v in waited.items()}
        return out

    def expected_end(self, job: Job) -> float:
        """When the current run of a running job is expected to end (from its estimate:
        what EASY's reservations read)."""
        return self._seat(job).est_end_s

    def placement_of(self, job: Job) -> list[tuple[str, tuple[int, ...]]]:
        """(node name, local GPU indices) for each node a running job holds."""
        return [
            (self.cs.node_name(node), tuple(i for i in range(mask.bit_length()) if mask >> i & 1))
            for node, mask in job.placement
        ]

    def placement_from(self, nodes: list[tuple[str, tuple[int, ...]]]) -> Placement:
        """Inverse of :meth:`placement_of` (node names end in ``/n<index>``); ValueError
        names a node that does not."""
        out: Placement = []
        for name, gpus in nodes:
            head, sep, index = name.rpartition("/n")
            if not (sep and head and index.isdigit()):
                msg = f"placement: node {name!r} is not a node of this fleet"
                raise ValueError(msg)
            out.append((int(index), sum(1 << i for i in gpus)))
        return out

    @property
    def pending_count(self) -> int:
        """Pending jobs."""
        return self.pending.count

    @property
    def pending_gpus(self) -> int:
        """GPUs asked for by pending jobs."""
        return self.pending.gpus

    def pending_work_by_tenant(self) -> list[float]:
        """GPU-seconds of work left in each tenant's pending jobs, in the order of
        :attr:`tenants` (read-only live counts, as :meth:`gpus_by_tenant`)."""
        return self.pending.work_by_tenant

    @property
    def running_count(self) -> int:
        """Running jobs."""
        return self.running.count

    def gpus_by_tenant(self) -> list[int]:
        """GPUs each tenant holds now, in the order of :attr:`tenants` (read-only: the live
        counts, so an observer sampling often copies nothing)."""
        return self.usage.total

    def nominal_by_tenant(self) -> dict[str, int]:
        """Each tenant's nominal quota, over all GPU classes."""
        return {
            name: sum(cell.nominal for cell in cells)
            for name, cells in zip(self.tenants, self.quota.cells, strict=True)
        }

    def served_by_owner(self, now: float) -> dict[str, dict[str, float]]:
        """GPU-seconds each tenant was served until ``now`` (running jobs' runs so far
        included), by the owner of the hardware it ran on (``mixed``: a class of several
        owners that is not split, see owners.py)."""
        served = [list(row) for row in self.running.served]
        for seat in self.running.seats():
            served[seat.tix][seat.run_class] += seat.gpus * max(0.0, now - seat.run_start_s)
        out: dict[str, dict[str, float]] = {}
        for t, row in enumerate(served):
            mine: dict[str, float] = {}
            for c, gpu_s in enumerate(row):
                if gpu_s > 0.0:
                    owner = self.sclasses.owner[c] or MIXED
                    mine[owner] = mine.get(owner, 0.0) + gpu_s
            if mine:
                out[self.tenants[t]] = mine
        return out

    def home_owner(self, tenant: str) -> str | None:
        """The owner of the tenant's own hardware: itself or its nearest ancestor that owns
        GPUs (a consortium's is its platform's), None if none does."""
        t = self.tenant_index.get(tenant, -1)
        owners = self.topo.owners
        while t >= 0:
            if self.tenants[t] in owners:
                return self.tenants[t]
            t = self.quota.parent_of[t]
        return None

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
                        "gpu_class": self.topo.classes[self.sclasses.flavor[c]],
                        "hardware_owner": self.sclasses.owner[c],
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
