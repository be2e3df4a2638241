"""What the inter-site network did in a run: the summary's ``network`` block and the
timeseries' link columns.

Per link (``a-b``, in the fleet file's order): its bandwidth, the terabytes copies moved
over it, and its utilisation (bytes/s carried over bytes/s it has) on average over the
observer's samples and at its peak (a copy over several links counts on each). Staging:
jobs that waited for a copy, the copies made and their terabytes,
and the hours jobs waited for data, in all and per tenant (``Job.staging_s``). Cross-site
gangs: jobs whose last run spanned sites, their GPU-hours, their mean slowdown (weighted
by GPU-hours), and the GPU-hours the slowdown cost (``gpu_hours x (1 - 1 / slowdown)``:
what they used beyond what the same work takes within one site). Only the gangs'
last runs are known per job (``Job.level``): a job that spanned sites once and then ran
in one site counts as not spanning. A run without datasets and without spanning gangs
has an all-zero block and no link columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aifactory.reports.results import link_util_column
from aifactory.twin.simulator import SimResult


def network_summary(result: SimResult, used_gpu_s: np.ndarray[Any, Any]) -> dict[str, Any]:
    """The summary's ``network`` block (``used_gpu_s``: each job's GPU-seconds)."""
    staging = result.staging
    links: dict[str, dict[str, float]] = {}
    by_tenant: dict[str, float] = {}
    jobs = result.jobs
    staged_h = 0.0
    if staging is not None:
        caps = [h.bytes_per_s for h in staging.net.hops]
        # (a fleet without links samples nothing: no columns to shape the samples into)
        util = (
            np.asarray(staging.samples, dtype=np.float64).reshape(-1, len(caps))
            if caps
            else np.zeros((0, 0))
        )
        for k, name in enumerate(staging.link_names()):
            col = util[:, k] / caps[k] if len(util) else np.zeros(0)
            links[name] = {
                "gbps": caps[k] * 8.0 / 1e9,
                "tb_moved": staging.transfers.link_bytes[k] / 1e12,
                "avg_utilization": float(col.mean()) if len(col) else 0.0,
                "peak_utilization": float(col.max()) if len(col) else 0.0,
            }
        for job in jobs:
            if job.staging_s > 0.0:
                by_tenant[job.tenant] = by_tenant.get(job.tenant, 0.0) + job.staging_s / 3600.0
        staged_h = sum(by_tenant.values())
    cross_jobs = 0
    cross_gpu_h = 0.0
    weighted = 0.0
    cost_h = 0.0
    for i, job in enumerate(jobs):
        if job.level == "cross-site":
            cross_jobs += 1
            h = float(used_gpu_s[i]) / 3600.0
            cross_gpu_h += h
            weighted += h * job.slowdown
            cost_h += h * (1.0 - 1.0 / job.slowdown) if job.slowdown > 0 else 0.0
    return {
        "links": links,
        "staging": {
            "jobs_staged": staging.staged_jobs if staging is not None else 0,
            "copies": staging.copies_made if staging is not None else 0,
            "tb_copied": staging.bytes_copied / 1e12 if staging is not None else 0.0,
            "staging_hours": staged_h,
            "staging_hours_by_tenant": dict(sorted(by_tenant.items())),
        },
        "cross_site": {
            "jobs": cross_jobs,
            "gpu_hours": cross_gpu_h,
            "avg_slowdown": weighted / cross_gpu_h if cross_gpu_h > 0 else 1.0,
            "gpu_hours_slowdown": cost_h,
        },
    }


def link_columns(result: SimResult, samples: int) -> dict[str, np.ndarray[Any, Any]]:
    """Each link's utilisation at each of the timeseries' ``samples`` rows (none without
    staging). The observer may close with one sample more than the links took: the last
    is repeated."""
    staging = result.staging
    if staging is None or not staging.net.hops:
        return {}
    caps = np.asarray([h.bytes_per_s for h in staging.net.hops], dtype=np.float64)
    rows = np.asarray(staging.samples, dtype=np.float64).reshape(-1, len(caps)) / caps
    if len(rows) < samples:
        pad = rows[-1:] if len(rows) else np.zeros((1, len(caps)))
        rows = np.vstack([rows, np.repeat(pad, samples - len(rows), axis=0)])
    rows = rows[:samples]
    return {link_util_column(name): rows[:, k] for k, name in enumerate(staging.link_names())}
