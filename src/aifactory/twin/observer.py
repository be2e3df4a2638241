"""Metrics as an observer: fed by the simulator's events, never computed inside policies.

Samples every ``sample_interval_s``: busy GPUs per tenant, pending jobs and GPUs (and
per tenant the GPU-seconds of work waiting, for the stability verdict),
stranded GPUs (free GPUs in partly used NVLink domains) and free GPUs per class and site.
Power and energy are derived from those in one vectorised step at the end, from the
catalogue's busy/idle watts and each site's PUE; energy is integrated piecewise-constant
between samples (exact at the sample resolution).
"""

from __future__ import annotations

import numpy as np

from aifactory.scheduler.scheduler import Scheduler
from aifactory.workload.job import Job


class Observer:
    """Collects the time series and per-run counters of one simulation."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        topo = sched.topo
        self.tenants = sched.tenants
        self.t: list[float] = []
        self.busy: list[int] = []
        self.pending_jobs: list[int] = []
        self.pending_gpus: list[int] = []
        self.stranded: list[int] = []
        self.power_mw: list[float] = []
        self.busy_by_tenant: list[int] = []  # GPUs held per tenant, row after row
        self.backlog_by_tenant: list[float] = []  # pending GPU-seconds per tenant, rows
        self.site_power_mw: list[list[float]] = []
        self.preemptions = 0
        self.completed = 0
        n_classes = len(topo.classes)
        n_sites = len(topo.sites)
        pue = [s.pue for s in topo.fleet.sites]
        # capacity per class and site, and per-GPU busy / idle watts with PUE
        self._cap = np.zeros((n_classes, n_sites))
        for c in range(n_classes):
            for s, free in sched.free_by_class_site()[c].items():
                self._cap[c, s] = free
        self._busy_w = np.array([[m.busy_watts * p for p in pue] for m in topo.class_model])
        self._idle_w = np.array([[m.idle_watts * p for p in pue] for m in topo.class_model])
        # (class, site) cells in the order sample() flattens csite_free
        self._cells = np.array(
            [(c, s) for c, sites in enumerate(sched.free_by_class_site()) for s in sites],
            dtype=np.int64,
        ).reshape(-1, 2)
        self._free: list[int] = []  # free GPUs per (class, site) cell, row after row
        self.down: list[int] = []
        self.energy_mwh_by_site = np.zeros(n_sites)
        self.idle_energy_mwh = 0.0

    def sample(self, now: float) -> None:
        """Record one row of the time series (raw counts; power is derived in bulk later)."""
        sched = self.sched
        by_class_site = sched.free_by_class_site()
        self.t.append(now)
        # This runs every five simulated minutes, tens of thousands of times in a long
        # trace: appends to flat lists, no per-sample lists (compiled, a loop over a
        # dict's values and appends beat list.extend of a values view).
        free = self._free
        for sites in by_class_site:
            for f in sites.values():
                free.append(f)
        self.down.append(sched.down_gpus)
        self.pending_jobs.append(sched.pending_count)
        self.pending_gpus.append(sched.pending_gpus)
        self.stranded.append(sched.stranded_gpus)
        # (in the scheduler's tenant order, which is self.tenants)
        busy = self.busy_by_tenant
        for held in sched.gpus_by_tenant():
            busy.append(held)
        self.backlog_by_tenant.extend(sched.pending_work_by_tenant())

    def _derive(self) -> None:
        """Busy GPUs, power per site and energy from the raw samples, vectorised."""
        n = len(self.t)
        free = np.zeros((n, *self._cap.shape))
        flat = np.asarray(self._free, dtype=np.float64).reshape(n, len(self._cells))
        free[:, self._cells[:, 0], self._cells[:, 1]] = flat
        busy = self._cap[None, :, :] - free
        site_w = (busy * self._busy_w + free * self._idle_w).sum(axis=1)
        idle_w = (free * self._idle_w).sum(axis=(1, 2))
        down = np.asarray(self.down, dtype=np.int64)
        self.busy = (busy.sum(axis=(1, 2)).astype(np.int64) - down).tolist()
        self.power_mw = (site_w.sum(axis=1) / 1e6).tolist()
        self.site_power_mw = (site_w / 1e6).tolist()
        t = np.asarray(self.t)
        dt_h = np.diff(t, append=t[-1] if n else 0.0) / 3600.0
        self.energy_mwh_by_site = (site_w * dt_h[:, None]).sum(axis=0) / 1e6
        self.idle_energy_mwh = float((idle_w * dt_h).sum() / 1e6)

    def ended(self, job: Job, now: float) -> None:  # noqa: ARG002 (hook for future per-end metrics)
        """A job completed."""
        self.completed += 1

    def preempted(self, jobs: list[Job]) -> None:
        """Jobs were evicted by a scheduling decision."""
        self.preemptions += len(jobs)

    def close(self, now: float) -> None:
        """Final sample so the series covers the whole run, then derive power and energy."""
        if not self.t or self.t[-1] < now:
            self.sample(now)
        self._derive()
