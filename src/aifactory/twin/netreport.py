"""What the inter-site network did in a run: the summary's ``network`` block and the
timeseries' link columns.

Per link (``a-b``, in the fleet file's order): its bandwidth, the terabytes copies moved
over it, and its utilisation (bytes/s carried over bytes/s it has) on average over the
observer's samples and at its peak (a copy over several links counts on each), the
copies' and the cross-site gangs' all-reduce traffic together (:mod:`aifactory.twin.spans`;
the latter a steady flow outside the copies' fair share). Staging:
jobs that waited for a copy, the copies made and their terabytes,
and the hours jobs waited for data, in all and per tenant (``Job.staging_s``). Cross-site
gangs: jobs with a run that spanned sites, the GPU-hours of every such run, their mean
slowdown (weighted by GPU-hours), and the GPU-hours the slowdown cost
(``gpu_hours x (1 - 1 / slowdown)``: what they used beyond what the same work takes
within one site). A run without datasets and without jobs that may span has an all-zero
block and no link columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from aifactory.reports.results import link_util_column
from aifactory.twin.simulator import SimResult


def _links(result: SimResult) -> tuple[list[str], np.ndarray[Any, Any], list[float], Any]:
    """(names, bytes/s each link has, bytes each carried, bytes/s per sample and link):
    the staging copies' and the cross-site gangs' flows together (one Transfers where
    there are datasets, else the gangs' own: twin/spans.py)."""
    staging, spans = result.staging, result.spans
    if staging is not None:
        net, moved, samples = staging.net, staging.transfers.link_bytes, staging.samples
    elif spans is not None:
        net, moved, samples = spans.net, spans.link_bytes, spans.samples
    else:
        return [], np.zeros(0), [], np.zeros((0, 0))
    if not net.hops:
        return [], np.zeros(0), [], np.zeros((0, 0))
    names = [f"{net.names[h.a]}-{net.names[h.b]}" for h in net.hops]
    caps = np.asarray([h.bytes_per_s for h in net.hops], dtype=np.float64)
    rows = np.asarray(samples, dtype=np.float64).reshape(-1, len(caps))
    return names, caps, list(moved), rows


def network_summary(
    result: SimResult,
    tenants: Iterable[str] | None = None,
    staging_s: np.ndarray[Any, Any] | None = None,
) -> dict[str, Any]:
    """The summary's ``network`` block (``tenants``, ``staging_s``: each job's tenant and
    seconds spent staging its data, in job order, as results.JobColumns has them; read
    from ``result.jobs`` where not given, which only a run over a job list holds all of)."""
    staging = result.staging
    if tenants is None or staging_s is None:
        tenants = [j.tenant for j in result.jobs]
        staging_s = np.array([j.staging_s for j in result.jobs], dtype=np.float64)
    links: dict[str, dict[str, float]] = {}
    by_tenant: dict[str, float] = {}
    staged_h = 0.0
    names, caps, moved, util = _links(result)
    for k, name in enumerate(names):
        col = util[:, k] / caps[k] if len(util) else np.zeros(0)
        links[name] = {
            "gbps": caps[k] * 8.0 / 1e9,
            "tb_moved": moved[k] / 1e12,
            "avg_utilization": float(col.mean()) if len(col) else 0.0,
            "peak_utilization": float(col.max()) if len(col) else 0.0,
        }
    if staging is not None:
        for tenant, staged in zip(tenants, staging_s.tolist(), strict=True):
            if staged > 0.0:
                by_tenant[tenant] = by_tenant.get(tenant, 0.0) + staged / 3600.0
        staged_h = sum(by_tenant.values())
    spans = result.spans
    cross_jobs = len(spans.job_ids) if spans is not None else 0
    cross_gpu_h = spans.gpu_s / 3600.0 if spans is not None else 0.0
    weighted = spans.slowed_gpu_s / 3600.0 if spans is not None else 0.0
    cost_h = spans.cost_gpu_s / 3600.0 if spans is not None else 0.0
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
    staging or cross-site gangs). The observer may close with one sample more than the
    links took: the last is repeated."""
    names, caps, _, rows = _links(result)
    if not names:
        return {}
    rows = rows / caps
    if len(rows) < samples:
        pad = rows[-1:] if len(rows) else np.zeros((1, len(caps)))
        rows = np.vstack([rows, np.repeat(pad, samples - len(rows), axis=0)])
    rows = rows[:samples]
    return {link_util_column(name): rows[:, k] for k, name in enumerate(names)}
