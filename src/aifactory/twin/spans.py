"""Cross-site gangs in the twin: the links their all-reduce loads, and their GPU-hours.

Decides nothing; it counts, per run of a gang placed across sites (``Job.level`` is
``cross-site``), from its start to its end or interruption:

* **Traffic.** The ring all-reduce of :mod:`aifactory.physics.comm` has each of the
  ``n`` sites send ``2 (n - 1) / n x grad_bytes`` to the next site of the ring every
  step, over the path between them (:meth:`Network.path`; with two sites the one path
  carries both directions). A step takes ``step_s x slowdown`` of wall time, so each link
  on a ring hop's path carries that many bytes per step as a steady flow for the whole
  run (compute and communication averaged over the step). The flows are counted in each
  link's bytes and in its samples of bytes/s, next to the staging copies'
  (:class:`aifactory.physics.links.Transfers`), but **without feedback**: they take no
  part in the copies' max-min fair share, and a gang's slowdown does not grow with the
  copies on its links (the comm model prices a gang as if alone on the links, as
  ``comm`` states). Both directions count against a link's one bandwidth (as copies do:
  :class:`~aifactory.physics.links.Network`), while the comm model lets each direction
  run at the full bandwidth, so a link all-reducing flat out reads up to 200%.
* **GPU-hours.** Every cross-site run's GPU-seconds (its GPUs x its wall time), their
  mean slowdown weighted by GPU-seconds, and what the slowdown cost
  (``gpu_s x (1 - 1 / slowdown)``), over all runs: a job that spanned once and then ran
  in one site counts its spanning run.

A run restored from a checkpoint of the twin (``Resume``) is not counted: its start is
before this twin's. A job without gradient size or step time moves no modelled bytes
(its run is counted in GPU-hours).
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.physics.links import Network
from aifactory.workload.job import Job


@dataclass(slots=True)
class SpanRun:
    """One cross-site run under way: its start, GPUs, slowdown, and bytes/s per link."""

    start_s: float
    gpus: int
    slowdown: float
    flows: dict[int, float]


def ring_flows(
    net: Network, sites: list[int], grad_bytes: float, wall_step_s: float
) -> dict[int, float]:
    """Bytes/s the ring all-reduce puts on each link (see the module's doc); empty for
    one site, no gradient size or step, or a hop without a path."""
    ring = sorted(set(sites))
    n = len(ring)
    if n <= 1 or grad_bytes <= 0.0 or wall_step_s <= 0.0:
        return {}
    per_hop = 2.0 * (n - 1) / n * grad_bytes / wall_step_s
    out: dict[int, float] = {}
    for i, a in enumerate(ring):
        path = net.path(a, ring[(i + 1) % n])
        if path is None:
            return {}
        for k in path:
            out[k] = out.get(k, 0.0) + per_hop
    return out


class Spans:
    """The cross-site runs under way and what all of them have used so far."""

    def __init__(self, net: Network, node_site: list[int]) -> None:
        self.net = net
        self.node_site = node_site
        self.runs: dict[str, SpanRun] = {}
        self.link_bytes = [0.0] * len(net.hops)  # all-reduce bytes each link has carried
        self.samples: list[list[float]] = []  # each link's all-reduce bytes/s per sample
        self.job_ids: set[str] = set()  # jobs with a cross-site run
        self.gpu_s = 0.0
        self.slowed_gpu_s = 0.0  # sum of gpu_s x slowdown (for the weighted mean)
        self.cost_gpu_s = 0.0

    def started(self, job: Job, now: float) -> None:
        """A run of ``job`` starts now; counted if it spans sites."""
        if job.level != "cross-site" or not job.placement:
            return
        sites = sorted({self.node_site[node] for node, _ in job.placement})
        slowdown = job.slowdown if job.slowdown > 0.0 else 1.0
        flows = ring_flows(self.net, sites, job.grad_bytes, job.step_s * slowdown)
        gpus = sum(mask.bit_count() for _, mask in job.placement)
        self.runs[job.id] = SpanRun(now, gpus, slowdown, flows)
        self.job_ids.add(job.id)

    def stopped(self, job: Job, now: float) -> None:
        """A run of ``job`` ended or was interrupted now (nothing for a run not counted)."""
        run = self.runs.pop(job.id, None)
        if run is not None:
            self._count(run, now)

    def close(self, now: float) -> None:
        """Count the runs still under way up to ``now`` (the end of the twin's run)."""
        for run in self.runs.values():
            self._count(run, now)
            run.start_s = now

    def _count(self, run: SpanRun, now: float) -> None:
        wall = max(0.0, now - run.start_s)
        gpu_s = run.gpus * wall
        self.gpu_s += gpu_s
        self.slowed_gpu_s += gpu_s * run.slowdown
        self.cost_gpu_s += gpu_s * (1.0 - 1.0 / run.slowdown)
        for k, rate in run.flows.items():
            self.link_bytes[k] += rate * wall

    def busy_bytes_per_s(self) -> list[float]:
        """Bytes/s the runs under way put on each link."""
        out = [0.0] * len(self.net.hops)
        for run in self.runs.values():
            for k, rate in run.flows.items():
                out[k] += rate
        return out

    def sample(self) -> None:
        """Record each link's all-reduce bytes/s now (at an observer sample)."""
        self.samples.append(self.busy_bytes_per_s())
