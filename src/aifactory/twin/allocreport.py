"""What a twin run with allocations reports per project and per grant (issue #19 §4).

Per project: **granted** (top-ups included, grants whose period began by the end of the
run; later ones are **future**), **used** (charged within and past the
balance), **overrun** (charged past it), **wasted** (granted but unused when the grant
expired before the end of the run), **left** (unused on grants still open at the end),
**denied** (job-hours and GPU-hours its jobs spent held on the allocation) and the queue
delay of its jobs (first start - submit, hold included). Amounts are B200-equivalent
hours: a grant of one GPU class counts at that class's rate, so projects compare on one
scale; ``charged_gpu_hours`` is the raw GPU-hours of its jobs' runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from aifactory.allocations.model import SECONDS_PER_HOUR
from aifactory.twin.allocgate import TwinAllocations
from aifactory.twin.results import py_sum

if TYPE_CHECKING:
    from aifactory.twin.results import FloatArray, JobColumns

PROJECTS_FILE = "projects.parquet"

PROJECTS_SCHEMA = pa.schema(
    [
        pa.field("project", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("grants", pa.int32(), nullable=False),
        pa.field("requested_b200h", pa.float64(), nullable=False),
        pa.field("granted_b200h", pa.float64(), nullable=False),
        pa.field("future_b200h", pa.float64(), nullable=False),
        pa.field("used_b200h", pa.float64(), nullable=False),
        pa.field("overrun_b200h", pa.float64(), nullable=False),
        pa.field("wasted_b200h", pa.float64(), nullable=False),
        pa.field("left_b200h", pa.float64(), nullable=False),
        pa.field("charged_gpu_hours", pa.float64(), nullable=False),
        pa.field("unallocated_gpu_hours", pa.float64(), nullable=False),
        pa.field("denied_job_hours", pa.float64(), nullable=False),
        pa.field("denied_gpu_hours", pa.float64(), nullable=False),
        pa.field("jobs", pa.int64(), nullable=False),
        pa.field("jobs_held", pa.int64(), nullable=False),
        pa.field("jobs_held_at_end", pa.int64(), nullable=False),
        pa.field("jobs_overdraft", pa.int64(), nullable=False),
        pa.field("avg_queue_s", pa.float64(), nullable=True),
        pa.field("p50_queue_s", pa.float64(), nullable=True),
        pa.field("p99_queue_s", pa.float64(), nullable=True),
    ]
)


def _b200(gate: TwinAllocations, gpu_class: str | None) -> float:
    """B200-equivalents of one unit of a grant of ``gpu_class`` (None: already B200-eq)."""
    return 1.0 if gpu_class is None else gate.rates.get(gpu_class, 0.0)


def grant_rows(gate: TwinAllocations, end_s: float) -> list[dict[str, Any]]:
    """One row per grant: its amounts (in its own unit-hours) and its state at the end."""
    ledger = gate.ledger
    rows = []
    for g in gate.spec.grants:
        alloc = ledger.allocation(g.id)
        balance = ledger.balance(g.id) / SECONDS_PER_HOUR
        expired = alloc.end_s <= end_s
        rows.append(
            {
                "grant": g.id,
                "project": g.project,
                "gpu_class": g.gpu_class,
                "requested_hours": g.requested_gpu_hours
                if g.requested_gpu_hours is not None
                else g.gpu_hours,
                "granted_hours": alloc.gpu_hours,
                "used_hours": ledger.used(g.id) / SECONDS_PER_HOUR,
                "overrun_hours": ledger.overrun(g.id) / SECONDS_PER_HOUR,
                "balance_hours": balance,
                "wasted_hours": max(balance, 0.0) if expired and alloc.gpu_hours > 0 else 0.0,
                "start_s": alloc.start_s,
                "end_s": alloc.end_s,
                "state": ledger.state(g.id, end_s).value,
                "overdraft": g.overdraft,
            }
        )
    return rows


def _queue(values: FloatArray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def project_rows(
    gate: TwinAllocations, cols: JobColumns, end_s: float
) -> dict[str, dict[str, Any]]:
    """One row per project (see the module docstring), by project name in file order,
    from the run's results columns (``cols.project``, ``held_s``, ``charged``: the gate's
    figures by row). Sums over a project's jobs are Python's, in job order."""
    grants = grant_rows(gate, end_s)
    assert cols.project is not None
    assert cols.held_s is not None
    assert cols.charged is not None
    _count, unallocated = gate.ledger.tally()
    out: dict[str, dict[str, Any]] = {}
    for k, p in enumerate(gate.spec.projects):
        mine = [g for g in grants if g["project"] == p.name]
        sel = np.flatnonzero(cols.project == k)
        book = gate.books[p.name]

        def total(key: str, rows: list[dict[str, Any]] = mine) -> float:
            return float(sum(r[key] * _b200(gate, r["gpu_class"]) for r in rows))

        begun = [r for r in mine if r["start_s"] <= end_s]
        open_left = sum(
            max(r["balance_hours"], 0.0) * _b200(gate, r["gpu_class"])
            for r in begun
            if r["end_s"] > end_s and r["granted_hours"] > 0
        )
        start = cols.start[sel]
        started = ~np.isnan(start)
        queue = start[started] - cols.submit[sel][started]
        held_s = cols.held_s[sel]
        # A job held at the end may have waited no time yet (held at the run's last instant).
        held_now = sum(1 for job_id in book.held if gate.waited.get(job_id, 0.0) <= 0)
        out[p.name] = {
            "project": p.name,
            "tenant": p.tenant,
            "title": p.title,
            "grants": len(mine),
            "requested_b200h": total("requested_hours", begun),
            "granted_b200h": total("granted_hours", begun),
            "future_b200h": total("granted_hours") - total("granted_hours", begun),
            "used_b200h": total("used_hours"),
            "overrun_b200h": total("overrun_hours"),
            "wasted_b200h": total("wasted_hours"),
            "left_b200h": float(open_left),
            "charged_gpu_hours": py_sum(cols.charged[sel]) / SECONDS_PER_HOUR,
            "unallocated_gpu_hours": unallocated.get(p.name, 0.0) / SECONDS_PER_HOUR,
            "denied_job_hours": py_sum(held_s) / SECONDS_PER_HOUR,
            "denied_gpu_hours": py_sum(held_s * cols.gpus[sel]) / SECONDS_PER_HOUR,
            "jobs": len(sel),
            "jobs_held": int(np.count_nonzero(held_s > 0)) + held_now,
            "jobs_held_at_end": len(book.held),
            "jobs_overdraft": book.overdraft_jobs,
            "avg_queue_s": float(np.mean(queue)) if queue.size else None,
            "p50_queue_s": _queue(queue, 50),
            "p99_queue_s": _queue(queue, 99),
        }
    return out


def summarize_allocations(
    gate: TwinAllocations, cols: JobColumns, end_s: float, source: str | None
) -> dict[str, Any]:
    """The summary's ``projects`` and ``allocations`` keys (``cols``: the run's results)."""
    grants = grant_rows(gate, end_s)
    projects = project_rows(gate, cols, end_s)
    keys = (
        "granted_b200h",
        "future_b200h",
        "used_b200h",
        "wasted_b200h",
        "left_b200h",
        "overrun_b200h",
    )
    totals = {k: float(sum(p[k] for p in projects.values())) for k in keys}
    totals["denied_job_hours"] = float(sum(p["denied_job_hours"] for p in projects.values()))
    return {
        "projects": projects,
        "allocations": {
            "file": Path(source).name if source else "",
            "name": gate.spec.name,
            "projects": len(projects),
            "grants": grants,
            "topups_applied": gate.topups_applied,
            "charges": gate.ledger.tally()[0],
            "totals": totals,
        },
    }


def projects_table(projects: Mapping[str, Mapping[str, Any]]) -> pa.Table:
    """The per-project rows as ``projects.parquet``."""
    cols: dict[str, list[Any]] = {f.name: [] for f in PROJECTS_SCHEMA}
    for row in projects.values():
        for name, col in cols.items():
            col.append(row[name])
    return pa.table(cols, schema=PROJECTS_SCHEMA)
