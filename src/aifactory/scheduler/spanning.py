"""Gangs across sites: whether spanning sites finishes a job sooner than waiting for one.

Decides, for a job that may span sites (``Job.allow_cross_site``) and has just been
offered a placement across sites, whether to take it: spanning runs the job slower by the
inter-site all-reduce model of :mod:`aifactory.physics.comm`, so it is taken only when
``now + overhead + work x slowdown`` is earlier than the finish of waiting for one site:
the earliest time enough GPUs of the class are free at one site (at its data's site, for
a gang pinned to span from there: ``Job.span_from_site``) if running jobs end at their
estimates (pending jobs are not counted: an optimistic estimate of waiting, so the
rule errs towards waiting), plus the work at full speed. A job that gives no gradient
size or step time has no modelled cost and always spans when it must (as before this
rule). Placements found by preemption are not priced (victims are chosen first).

Reads the cluster's free GPUs and the running jobs' estimated ends; changes nothing.
"""

from __future__ import annotations

from typing import Final

from aifactory.fleet.topology import Topology
from aifactory.physics.comm import span_slowdown
from aifactory.physics.links import Network
from aifactory.scheduler.backfill import Backfill
from aifactory.scheduler.cluster import ClusterState
from aifactory.scheduler.running import Running
from aifactory.scheduler.seat import Seat
from aifactory.workload.job import Job

INF: Final = float("inf")


class Spanning:
    """The inter-site network as the scheduler sees it, and the spanning rule."""

    __slots__ = ("backfill", "cs", "net", "node_site", "refused", "running")

    def __init__(
        self, topo: Topology, cs: ClusterState, running: Running, backfill: Backfill
    ) -> None:
        self.net = Network.of_fleet(topo.fleet)
        self.cs = cs
        self.running = running
        self.backfill = backfill
        self.node_site: list[int] = [cs.pod_site[cs.dom_pod[d]] for d in cs.node_dom]
        self.refused = 0  # spanning placements turned down because waiting finishes sooner

    def sites_of(self, plan: list[tuple[int, int]]) -> list[int]:
        """The sites a plan or placement's nodes are in, ascending."""
        return sorted({self.node_site[node] for node, _ in plan})

    def slowdown(self, job: Job, plan: list[tuple[int, int]]) -> float:
        """How many times longer the job's work takes on ``plan`` (1.0 within one site)."""
        return span_slowdown(self.net, self.sites_of(plan), job.grad_bytes, job.step_s)

    def pays(self, seat: Seat, gpu_class: int, plan: list[tuple[int, int]], now: float) -> bool:
        """Whether taking the cross-site ``plan`` finishes the job sooner than waiting."""
        job = seat.job
        factor = self.slowdown(job, plan)
        if factor == 1.0:
            return True
        work = self.backfill.expected_run(job) - job.overhead_s
        wait = self.one_site_at(seat.gpus, gpu_class, now, only=seat.site)
        if now + work * factor < wait + work:
            return True
        self.refused += 1
        return False

    def one_site_at(self, gpus: int, gpu_class: int, now: float, only: int = -1) -> float:
        """The earliest time ``gpus`` GPUs of the class are free at one site (``only``,
        when >= 0: at that one, a gang pinned to span from its data's site), if running
        jobs end at their estimates (inf: no site ever has that many)."""
        free = {s: f for s, f in self.cs.csite_free[gpu_class].items() if only < 0 or s == only}
        if any(f >= gpus for f in free.values()):
            return now
        ends: list[tuple[float, int, int]] = []  # (estimated end, site, GPUs)
        for seat in self.running.seats():
            if seat.run_class != gpu_class:
                continue
            by: dict[int, int] = {}
            for node, mask in seat.job.placement:
                s = self.node_site[node]
                by[s] = by.get(s, 0) + mask.bit_count()
            for s, n in by.items():
                if only < 0 or s == only:
                    ends.append((seat.est_end_s, s, n))
        ends.sort()
        for end, s, n in ends:
            free[s] = free.get(s, 0) + n
            if free[s] >= gpus:
                return max(end, now)
        return INF
