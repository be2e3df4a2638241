"""Cross-site gangs in the twin: the links their all-reduce loads, and their GPU-hours.

Decides nothing; it counts, per run of a gang placed across sites (``Job.level`` is
``cross-site``), from its start to its end or interruption:

* **Traffic.** The ring all-reduce of :mod:`aifactory.physics.comm` has each of the
  ``n`` sites send ``2 (n - 1) / n x grad_bytes`` to the next site of the ring every
  step, over the path between them (:meth:`Network.path`; with two sites the one path
  carries both directions). A step takes ``step_s x slowdown`` of wall time, so each ring
  hop is a steady flow of that many bytes per step for the whole run (compute and
  communication averaged over the step) in the links' max-min fair share
  (:meth:`aifactory.physics.links.Transfers.add_flow`), next to the staging copies: a
  copy on a gang's links gets what the gang leaves (or its fair share), and the flow
  gets less than its demand where its fair share is less. The feedback is one way: a
  gang's slowdown is priced as if alone on the links (as ``comm`` states) and is not
  stretched when copies crowd it. Both directions count against a link's one bandwidth
  (as copies do: :class:`~aifactory.physics.links.Network`).
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

from aifactory.physics.links import Network, Transfers
from aifactory.workload.job import Job


@dataclass(slots=True)
class SpanRun:
    """One cross-site run under way: its start, GPUs, slowdown, and its flows' keys."""

    start_s: float
    gpus: int
    slowdown: float
    flows: list[tuple[str, int]]


def ring_hops(
    net: Network, sites: list[int], grad_bytes: float, wall_step_s: float
) -> list[tuple[tuple[int, ...], float]]:
    """(path, bytes/s) of each hop of the ring all-reduce (see the module's doc); empty
    for one site, no gradient size or step, or a hop without a path."""
    ring = sorted(set(sites))
    n = len(ring)
    if n <= 1 or grad_bytes <= 0.0 or wall_step_s <= 0.0:
        return []
    per_hop = 2.0 * (n - 1) / n * grad_bytes / wall_step_s
    out: list[tuple[tuple[int, ...], float]] = []
    for i, a in enumerate(ring):
        path = net.path(a, ring[(i + 1) % n])
        if not path:
            return []
        out.append((path, per_hop))
    return out


class Spans:
    """The cross-site runs under way and what all of them have used so far."""

    def __init__(self, net: Network, node_site: list[int], transfers: Transfers | None) -> None:
        self.net = net
        self.node_site = node_site
        # The links' shared state: the staging copies' where there are datasets (the
        # flows then count in their bytes and samples), else the gangs' own.
        self.own = transfers is None
        self.transfers = Transfers(net) if transfers is None else transfers
        self.runs: dict[str, SpanRun] = {}
        self.samples: list[list[float]] = []  # each link's bytes/s per sample (own only)
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
        keys: list[tuple[str, int]] = []
        for h, (path, rate) in enumerate(
            ring_hops(self.net, sites, job.grad_bytes, job.step_s * slowdown)
        ):
            key = (job.id, h)
            self.transfers.add_flow(key, path, rate, now)
            keys.append(key)
        gpus = sum(mask.bit_count() for _, mask in job.placement)
        self.runs[job.id] = SpanRun(now, gpus, slowdown, keys)
        self.job_ids.add(job.id)

    def stopped(self, job: Job, now: float) -> None:
        """A run of ``job`` ended or was interrupted now (nothing for a run not counted)."""
        run = self.runs.pop(job.id, None)
        if run is not None:
            self._count(run, now)
            for key in run.flows:
                self.transfers.drop_flow(key, now)

    def close(self, now: float) -> None:
        """Count the runs still under way up to ``now`` (the end of the twin's run)."""
        for run in self.runs.values():
            self._count(run, now)
            run.start_s = now
        self.transfers.advance(now)

    def _count(self, run: SpanRun, now: float) -> None:
        gpu_s = run.gpus * max(0.0, now - run.start_s)
        self.gpu_s += gpu_s
        self.slowed_gpu_s += gpu_s * run.slowdown
        self.cost_gpu_s += gpu_s * (1.0 - 1.0 / run.slowdown)

    @property
    def link_bytes(self) -> list[float]:
        """Bytes each link has carried (the copies' too when the links are shared)."""
        return self.transfers.link_bytes

    def sample(self) -> None:
        """Record each link's bytes/s now (at an observer sample; the staging's samples
        have them when the links are shared)."""
        if self.own:
            self.samples.append(self.transfers.busy_bytes_per_s())
