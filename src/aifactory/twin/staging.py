"""Data staging in the twin: jobs that read a dataset kept at another site.

A job with a dataset (``Job.dataset``, ``dataset_bytes``, ``data_site``) runs where its
data is, or where it is copied first. On arrival the twin picks its site by the earliest
expected finish (:func:`aifactory.scheduler.sites.choose_site`): at each site that can
ever hold its gang, GPUs are expected free now if enough are free, else when enough
running jobs there reach their estimated ends (queued jobs and quota are not counted: a
lower bound, as a dispatcher's estimate is); its data is there now at the dataset's home
or where a copy was made, else after the copy's time on the path's bottleneck link alone
(:meth:`Network.alone_s`), or what is left of a copy already under way. The job is then
pinned to that site (``Job.site``) for the scheduler, which places it only there. A job
that names its site itself is staged there.

A job that may span sites also weighs *spanning from its data's site* (the chooser's
``spans`` option, priced by :func:`aifactory.physics.comm.span_slowdown` over the sites a
gang from there would take now): chosen only when it finishes strictly sooner than every
single site, it is pinned to the data's site with ``Job.span_from_site``, and the
scheduler places it there, or, when the site has too few free GPUs, over all of the
site's free GPUs and the rest at other sites (``Power.place``), where it spans only if
that still beats waiting for the data's site (``Spanning.pays``). Its gang reads the data
from the data's site over the links: nothing is copied first.

Copies move over the inter-site links as transfers sharing them max-min fairly
(:class:`aifactory.physics.links.Transfers`), from the copy of the dataset with the
quickest path. One transfer per (dataset, site): jobs that need the same data at the same
site wait for the same copy; a copy stays where it was made (storage is assumed ample).
The twin drives the transfers by events (``TRANSFER``, at the next completion under the
current rates; an event made under older rates is stale, see ``Transfers.epoch``).

A gang that no one site can ever hold (its quota's ceiling, or one owner's GPUs of a class
at a site, is smaller than it) is not pinned and stages nothing: it is placed as any job,
across sites if it may, and reads its data where it is.

The two ways to wait (``Job.stage_hold``):

* default: the job waits for its copy *before* it reaches the scheduler (it holds no GPUs
  and no quota meanwhile; ``Job.staging_s`` is that wait) and is submitted, pinned, when
  the copy is complete;
* ``stage_hold``: the job is submitted pinned at once, takes its GPUs when the scheduler
  places it, and the copy starts then if the data is not there yet; its GPUs are held and
  idle until the copy is complete (``Scheduler.hold_run`` tells the scheduler that the run
  does no work until then, so an eviction meanwhile loses no progress and the scheduler's
  preemption sees a run that is costly to interrupt). Its end is then scheduled.
  ``Job.staging_s`` is the time its runs held GPUs waiting for data (an evicted run's
  too; the copy goes on, and the next run waits only for what is left).

Nothing here runs for a workload without datasets (the simulator makes no ``Staging``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, cast

import numpy as np

from aifactory.fleet.topology import Topology
from aifactory.physics.comm import span_slowdown
from aifactory.physics.links import Network, Transfers
from aifactory.scheduler.scheduler import Scheduler
from aifactory.scheduler.sites import SiteOption, choose
from aifactory.workload.job import RUNNING, Job

INF: Final = float("inf")
REASON: Final = "staging"  # why a job waits for its copy (jobs.parquet pending_reason)
# The overhead a held run is given while its copy runs: longer than any run, so the run
# does no work until the copy is complete and the real overhead is set.
HOLD_S: Final = 1e12


@dataclass(slots=True)
class Copy:
    """One transfer under way: what it copies where, and the jobs waiting for it."""

    dataset: str
    site: int
    waiting: list[tuple[Job, float]] = field(default_factory=list)  # (job, since)
    held: list[tuple[Job, int, float]] = field(default_factory=list)  # (job, moves, overhead)


class Staging:
    """Copies of datasets, the transfers that make them, and the jobs waiting for them."""

    def __init__(self, topo: Topology, sched: Scheduler) -> None:
        self.topo = topo
        self.sched = sched
        self.net = Network.of_fleet(topo.fleet)
        self.transfers = Transfers(self.net)
        self.sites = topo.sites
        self.site_index = {name: i for i, name in enumerate(topo.sites)}
        dom_site = topo.pod_site[topo.domain_pod]
        self.node_site: list[int] = dom_site[topo.node_domain].tolist()
        self.node_class: list[int] = topo.domain_class[topo.node_domain].tolist()
        n_classes, n_sites = len(topo.classes), len(topo.sites)
        cap = np.zeros((n_classes, n_sites), dtype=np.int64)
        np.add.at(cap, (topo.domain_class, dom_site), topo.domain_gpus)
        self.capacity: list[list[int]] = cap.tolist()  # GPUs per fleet class and site
        self.copies: dict[str, set[int]] = {}  # dataset -> sites holding it
        self.size: dict[str, float] = {}  # dataset -> bytes (the first job's word)
        self.inflight: dict[tuple[str, int], Copy] = {}
        self._may: dict[tuple[object, ...], bool] = {}
        self.holding: dict[str, tuple[str, int]] = {}  # held runs waiting: job id -> copy
        self.waiting_ids: set[str] = set()  # jobs waiting for a copy before the scheduler
        self.scheduled_epoch = -1  # the transfers' epoch of the TRANSFER event scheduled
        self.staged_jobs = 0  # jobs that waited for a copy
        self.spanned_jobs = 0  # jobs pinned to span from their data's site
        self.copies_made = 0
        self.bytes_copied = 0.0  # the sizes of the copies started (each link's share apart)
        # Each link's bytes/s at each observer sample (the timeseries' link columns).
        self.samples: list[list[float]] = []

    # ------------------------------------------------------------------ arrivals
    def arrive(self, job: Job, now: float) -> bool:
        """A job with a dataset arrives: pick and pin its site. True: submit it now; False:
        it waits for its copy (default mode) and comes back from :meth:`completed`."""
        name = job.dataset or f"job:{job.id}"
        home = self.site_index.get(job.data_site, -1)
        if home < 0 or job.dataset_bytes <= 0.0:
            return True  # nothing to stage (the API refuses an unknown data site)
        self.size.setdefault(name, job.dataset_bytes)
        have = self.copies.setdefault(name, {home})
        pinned = self.site_index.get(job.site, -1) if job.site is not None else -1
        if job.site is not None and (pinned < 0 or self._stage_s(name, pinned, have, 0.0) is None):
            return True  # pinned where its data cannot go: the scheduler's to refuse or run
        if pinned >= 0:
            site = pinned
        else:
            option = self._choose(job, name, have, now)
            if option is None:
                return True  # no one site can ever hold its gang: not pinned, nothing staged
            site = option.site
            if option.spans:  # a gang from the data's site, reading it from there
                job.site = self.sites[site]
                job.span_from_site = True
                self.spanned_jobs += 1
                return True
        job.site = self.sites[site]
        if site in have or job.stage_hold:
            return True
        copy = self._copy(name, site, have, now)
        copy.waiting.append((job, now))
        self.waiting_ids.add(job.id)
        self.staged_jobs += 1
        return False

    def _classes(self, job: Job) -> list[int]:
        """Fleet class indices the job accepts."""
        names = self.topo.classes
        if job.gpu_class is not None:
            out = [names.index(job.gpu_class)] if job.gpu_class in names else []
        elif job.gpu_classes:
            out = [names.index(c) for c in job.gpu_classes if c in names]
        else:
            out = list(range(len(names)))
        hbm = job.hbm_gb_per_gpu
        if hbm is not None:
            out = [c for c in out if self.topo.class_model[c].hbm_gb >= hbm]
        return out

    def _choose(self, job: Job, name: str, have: set[int], now: float) -> SiteOption | None:
        """The option of earliest expected finish (see the module's doc); None when no
        one site can ever hold the gang."""
        classes = self._classes(job)
        free = self.sched.free_by_class_site()
        ends: dict[tuple[int, int], list[tuple[float, int]]] | None = None
        options: list[SiteOption] = []
        for s in range(len(self.sites)):
            fits = [c for c in classes if self.capacity[c][s] >= job.gpus]
            if not fits or not self._may_run_at(job, s):
                continue
            stage = self._stage_s(name, s, have, job.dataset_bytes)
            if stage is None:
                continue  # no path from any copy
            gpus_at = INF
            for c in fits:
                f = free[c].get(s, 0)
                if f >= job.gpus:
                    gpus_at = now
                    break
                if ends is None:
                    ends = self._ends()
                got = f
                for end, gpus in ends.get((c, s), []):
                    got += gpus
                    if got >= job.gpus:
                        gpus_at = min(gpus_at, max(end, now))
                        break
            options.append(SiteOption(s, gpus_at, stage, job.estimate_s))
        if not options:
            return None
        span = self._span_option(job, classes, free, now)
        if span is not None:
            options.append(span)
        return choose(options, now, hold=job.stage_hold)

    def _span_option(
        self, job: Job, classes: list[int], free: list[dict[int, int]], now: float
    ) -> SiteOption | None:
        """Spanning from the data's home site, for a job that may span: in the class
        where its gang runs least slowed, the home's free GPUs (some, too few for the
        gang) and then the other sites', the most free first (as the scheduler's
        :meth:`~aifactory.scheduler.power.Power.place` takes them from a home); None when
        no class has that many free now or no path joins the sites."""
        home = self.site_index.get(job.data_site, -1)
        if not job.allow_cross_site or home < 0 or not self._may_run_at(job, home, span=True):
            return None
        best: SiteOption | None = None
        for c in classes:
            here = free[c].get(home, 0)
            if here <= 0 or here >= job.gpus:
                continue  # none to span from, or the home alone holds it (no slowdown)
            others = sorted((s for s in free[c] if s != home), key=lambda s: (-free[c][s], s))
            sites = [home]
            got = here
            for s in others:
                if got >= job.gpus:
                    break
                if free[c][s] > 0:
                    sites.append(s)
                    got += free[c][s]
            if got < job.gpus:
                continue
            factor = span_slowdown(self.net, sites, job.grad_bytes, job.step_s)
            if factor == INF:
                continue
            option = SiteOption(home, now, 0.0, job.estimate_s * factor, spans=True)
            if best is None or option.run_s < best.run_s:
                best = option
        return best

    def _may_run_at(self, job: Job, site: int, *, span: bool = False) -> bool:
        """Whether the scheduler would ever run the job pinned to ``site`` (its quota's
        ceiling and the GPUs of one owner's class there hold its gang; with ``span``, as
        a gang spanning from there: the fleet's; cached per shape)."""
        key = (
            job.tenant,
            job.gpu_class,
            job.gpu_classes,
            job.hbm_gb_per_gpu,
            job.gpus,
            site,
            span,
        )
        ok = self._may.get(key)
        if ok is None:
            was, was_span = job.site, job.span_from_site
            job.site = self.sites[site]
            job.span_from_site = span
            ok = self.sched.refusal(job) is None
            job.site, job.span_from_site = was, was_span
            self._may[key] = ok
        return ok

    def _ends(self) -> dict[tuple[int, int], list[tuple[float, int]]]:
        """Running jobs' estimated ends and GPUs per (fleet class, site), soonest first."""
        out: dict[tuple[int, int], list[tuple[float, int]]] = {}
        sched = self.sched
        for job in sched.running_jobs():
            if not job.placement:
                continue
            by: dict[tuple[int, int], int] = {}
            for node, mask in job.placement:
                key = (self.node_class[node], self.node_site[node])
                by[key] = by.get(key, 0) + mask.bit_count()
            end = sched.expected_end(job)
            for key, gpus in by.items():
                out.setdefault(key, []).append((end, gpus))
        for rows in out.values():
            rows.sort()
        return out

    def _stage_s(self, name: str, site: int, have: set[int], size: float) -> float | None:
        """Seconds until the dataset could be at ``site`` if copied now (None: no path)."""
        if site in have:
            return 0.0
        if (name, site) in self.inflight:
            left = self.transfers.left((name, site))
            return left / self.transfers.rate((name, site))
        best: float | None = None
        for src in have:
            path = self.net.path(src, site)
            if path is None:
                continue
            t = self.net.alone_s(size, path)
            if best is None or t < best:
                best = t
        return best

    def _copy(self, name: str, site: int, have: set[int], now: float) -> Copy:
        """The copy of ``name`` to ``site`` under way, started now if none is."""
        key = (name, site)
        copy = self.inflight.get(key)
        if copy is not None:
            return copy
        size = self.size[name]
        best: tuple[float, int, tuple[int, ...]] | None = None
        for src in sorted(have):
            path = self.net.path(src, site)
            if path is not None:
                t = self.net.alone_s(size, path)
                if best is None or t < best[0]:
                    best = (t, src, path)
        if best is None:  # (_choose only picks sites with a path)
            msg = f"staging: no path for {name} to {self.sites[site]}"
            raise AssertionError(msg)
        copy = Copy(name, site)
        self.inflight[key] = copy
        self.transfers.start(key, size, best[2], now)
        self.copies_made += 1
        self.bytes_copied += size
        return copy

    # ------------------------------------------------------------------ held runs
    def started(self, job: Job, now: float) -> bool:
        """A job just started; True if it holds its GPUs waiting for its copy (its end is
        scheduled by :meth:`completed` instead)."""
        if not job.stage_hold or job.site is None or job.dataset_bytes <= 0.0:
            return False
        name = job.dataset or f"job:{job.id}"
        have = self.copies.get(name)
        site = self.site_index[job.site]
        if have is None or site in have:
            return False
        copy = self._copy(name, site, have, now)
        copy.held.append((job, job.moves, job.overhead_s))
        self.holding[job.id] = (name, site)
        self.sched.hold_run(job, job.overhead_s + HOLD_S)
        return True

    def interrupted(self, job: Job, now: float) -> None:
        """A job stopped before its end (preempted, failed): a held run waiting for its copy
        counts the time it held its GPUs for it, and waits for it no more."""
        key = self.holding.pop(job.id, None)
        if key is None:
            return
        copy = self.inflight.get(key)
        if copy is not None:
            copy.held = [h for h in copy.held if h[0] is not job]
        job.staging_s += now - job.run_start_s

    # ------------------------------------------------------------------ events
    def next_event(self) -> tuple[float, int] | None:
        """(time, epoch) of the TRANSFER event to schedule, or None when the one already
        scheduled still holds (or no transfer is under way)."""
        epoch = self.transfers.epoch
        if epoch == self.scheduled_epoch:
            return None
        when = self.transfers.next_done_s()
        if when is None:
            return None
        self.scheduled_epoch = epoch
        return when, epoch

    def completed(self, now: float, epoch: int) -> tuple[list[Job], list[Job]]:
        """A TRANSFER event: the copies complete now. Returns the jobs to submit now (they
        waited for a copy) and the held runs that start work now (their ends to be
        scheduled; their overhead is set). A stale event returns nothing."""
        if epoch != self.transfers.epoch:
            return [], []
        submit: list[Job] = []
        resume: list[Job] = []
        for key in self.transfers.done(now):
            copy = self.inflight.pop(cast("tuple[str, int]", key))
            self.copies[copy.dataset].add(copy.site)
            for job, since in copy.waiting:
                self.waiting_ids.discard(job.id)
                job.staging_s += now - since
                submit.append(job)
            for job, moves, overhead in copy.held:
                self.holding.pop(job.id, None)
                if job.state is RUNNING and job.moves == moves:
                    job.staging_s += now - job.run_start_s
                    self.sched.hold_run(job, (now - job.run_start_s) + overhead)
                    resume.append(job)
        return submit, resume

    def reason(self, job: Job) -> str | None:
        """``staging`` for a job waiting for its data (before the scheduler, or holding its
        GPUs), else None."""
        return REASON if job.id in self.waiting_ids or job.id in self.holding else None

    def sample(self) -> None:
        """Record what each link carries now (at an observer sample)."""
        self.samples.append(self.transfers.busy_bytes_per_s())

    def link_names(self) -> list[str]:
        """Each link as ``a-b`` (its ends' names, in the fleet file's order)."""
        return [f"{self.sites[h.a]}-{self.sites[h.b]}" for h in self.net.hops]
