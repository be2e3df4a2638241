"""What a trace holds, at a glance: size, span, job shapes, tenants and offered load.

Offered load is the GPU-hours the trace asks for divided by what the fleet could give
over the submit span (first to last submit): 1.0 means the fleet would need to be busy
all the time just to keep up, so queues grow without bound above it. It ignores
placement and fragmentation, so a real scheduler saturates below 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

PERCENTILES = (50, 90, 99)


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        empty: dict[str, float | None] = {f"p{q}": None for q in PERCENTILES}
        return empty | {"mean": None, "max": None}
    out: dict[str, float | None] = {
        f"p{q}": float(v)
        for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)
    }
    out["mean"] = float(values.mean())
    out["max"] = float(values.max())
    return out


def trace_stats(table: pa.Table, *, fleet_gpus: int | None = None) -> dict[str, Any]:
    """Summary statistics of a normalised trace (JSON-ready: plain ints, floats, strings)."""
    n = int(table.num_rows)
    submit = table.column("submit_s").to_numpy().astype(np.float64)
    duration = table.column("duration_s").to_numpy().astype(np.float64)
    gpus = table.column("gpus").to_numpy().astype(np.int64)
    tenants = np.asarray(table.column("tenant").to_pylist(), dtype=object)
    gpu_s = duration * gpus
    first = float(submit.min()) if n else 0.0
    last = float(submit.max()) if n else 0.0
    span_s = last - first
    gpu_hours = float(gpu_s.sum() / 3600.0)

    sizes: list[dict[str, Any]] = []
    for g in np.unique(gpus):
        sel = gpus == g
        sizes.append(
            {
                "gpus": int(g),
                "jobs": int(sel.sum()),
                "share": float(sel.sum() / n),
                "gpu_hours": float(gpu_s[sel].sum() / 3600.0),
            }
        )

    by_tenant: list[dict[str, Any]] = []
    if n:
        names, inverse = np.unique(tenants.astype(str), return_inverse=True)
        jobs_per = np.bincount(inverse, minlength=len(names))
        hours_per = np.bincount(inverse, weights=gpu_s, minlength=len(names)) / 3600.0
        by_tenant = [
            {
                "tenant": str(names[k]),
                "jobs": int(jobs_per[k]),
                "gpu_hours": float(hours_per[k]),
                "share": float(hours_per[k] / gpu_hours) if gpu_hours else 0.0,
            }
            for k in np.argsort(-hours_per, kind="stable")
        ]

    stats: dict[str, Any] = {
        "jobs": n,
        "first_submit_s": first,
        "last_submit_s": last,
        "span_s": span_s,
        "span_days": span_s / 86400.0,
        "last_end_s": float((submit + duration).max()) if n else 0.0,
        "gpu_hours": gpu_hours,
        "largest_job_gpus": int(gpus.max()) if n else 0,
        "gpu_sizes": sizes,
        "duration_s": _percentiles(duration),
        "tenants": by_tenant,
    }

    status = table.column("status").to_pylist()
    counts: dict[str, int] = {}
    for s in status:
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
    if counts:
        stats["status"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    observed = table.column("observed_start_s").to_numpy(zero_copy_only=False)
    observed = np.asarray(observed, dtype=np.float64)
    seen = ~np.isnan(observed)
    if seen.any():
        stats["observed_queue_s"] = _percentiles(observed[seen] - submit[seen])
        stats["observed_queue_s"]["jobs"] = int(seen.sum())

    if fleet_gpus is not None:
        capacity_hours = fleet_gpus * span_s / 3600.0
        stats["fleet_gpus"] = int(fleet_gpus)
        stats["offered_load"] = gpu_hours / capacity_hours if capacity_hours > 0 else None
    return stats
