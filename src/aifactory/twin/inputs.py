"""From a normalised trace table to the twin's jobs, with every adaptation counted.

Replaying a trace on a fleet needs a few decisions, each reported rather than hidden:
tenants the fleet does not know go to its default tenant; a trace without estimates
uses the true run time as the estimate (as the published simulators' SJF does), and
``estimate_error`` multiplies estimates by a seeded log-normal factor; ``time_scale``
multiplies inter-arrival times (0.25 = four times the offered load); checkpoint
intervals come from the trace or from Young's / Daly's formula at the job's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa

from aifactory.fleet.spec import Fleet
from aifactory.physics.checkpoint import daly_interval_s, young_interval_s
from aifactory.physics.failures import job_mttf_s
from aifactory.twin.fields import make_jobs
from aifactory.workload.job import Job


class CheckpointPolicy(StrEnum):
    """Where a job's checkpoint interval comes from."""

    TRACE = "trace"  # the trace's checkpoint_s column (none: no checkpoints)
    YOUNG = "young"  # sqrt(2 d M) at the job's size
    DALY = "daly"  # Daly's higher-order optimum at the job's size


@dataclass(frozen=True, slots=True)
class InputOptions:
    """How a trace is adapted to a fleet."""

    time_scale: float = 1.0
    estimate_error: float = 0.0
    checkpoint: CheckpointPolicy = CheckpointPolicy.TRACE
    checkpoint_write_s: float = 60.0
    failure_rate: float = 2e-5
    seed: int = 0


@dataclass(slots=True)
class InputReport:
    """What was changed to fit the trace to the fleet."""

    jobs: int = 0
    remapped: dict[str, int] = field(default_factory=dict)  # unknown tenant -> jobs
    no_tenant: int = 0
    default_tenant: str = ""
    estimates_from_runtime: int = 0


def quota_tenants(fleet: Fleet) -> list[str]:
    """Tenants that hold any quota (the ones jobs can be charged to)."""
    return [
        t.name
        for t, _, _ in fleet.iter_tenants()
        if any(q.nominal or q.borrowing_limit for q in t.quotas)
    ]


def default_tenant(fleet: Fleet) -> str:
    """The fleet's default tenant, else the first tenant with quota."""
    if fleet.default_tenant is not None:
        return fleet.default_tenant
    holders = quota_tenants(fleet)
    return holders[0] if holders else fleet.tenants[0].name


def _check_unique_ids(ids: pa.ChunkedArray, as_list: list[str]) -> None:
    """Refuse a trace where two jobs share an id, naming one, before anything runs (the
    simulation then keeps no index by id). A set of the ids as Python strings is the fast
    test (pyarrow's count_distinct over 82,247 strings took 0.09 s, a set 0.005 s)."""
    if len(set(as_list)) == len(as_list):
        return
    import pyarrow.compute as pc  # noqa: PLC0415 (its import costs more than the whole check)

    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    first = repeated[0]["values"].as_py()
    msg = f"job_id: {len(repeated)} ids appear more than once (e.g. '{first}')"
    raise ValueError(msg)


def jobs_from_table(
    table: pa.Table, fleet: Fleet, opts: InputOptions
) -> tuple[list[Job], InputReport]:
    """Build :class:`Job` objects from a trace table (TRACE_SCHEMA plus optional columns)."""
    if opts.time_scale <= 0:
        msg = "time_scale: must be > 0"
        raise ValueError(msg)
    if opts.estimate_error < 0:
        msg = "estimate_error: must be >= 0"
        raise ValueError(msg)
    rng = np.random.default_rng(opts.seed)
    n = table.num_rows
    report = InputReport(jobs=n, default_tenant=default_tenant(fleet))
    known = {t.name for t, _, _ in fleet.iter_tenants()}
    cols = table.column_names
    ids = table.column("job_id").to_pylist()
    _check_unique_ids(table.column("job_id"), ids)
    tenants = table.column("tenant").to_pylist()
    submit = table.column("submit_s").to_numpy(zero_copy_only=False).astype(np.float64)
    duration = table.column("duration_s").to_numpy(zero_copy_only=False).astype(np.float64)
    gpus = table.column("gpus").to_numpy(zero_copy_only=False).astype(np.int64)
    classes = table.column("gpu_class").to_pylist()
    prio = table.column("priority").to_numpy(zero_copy_only=False)
    est_col = table.column("estimate_s")
    est = est_col.to_numpy(zero_copy_only=False).astype(np.float64)
    missing_est = np.isnan(est)
    report.estimates_from_runtime = int(missing_est.sum())
    est = np.where(missing_est, duration, est)
    if opts.estimate_error > 0:
        est = est * rng.lognormal(0.0, opts.estimate_error, size=n)
    if n:
        first = float(submit.min())
        submit = first + (submit - first) * opts.time_scale - first
    # An optional column the trace lacks is its default for every job, as a list made at
    # once (not a per-row conversion of a list of defaults: 82,247 rows each).
    preemptible: list[bool | None] = (
        [None if p is None else bool(p) for p in table.column("preemptible").to_pylist()]
        if "preemptible" in cols
        else [True] * n
    )
    ckpt: list[Any] = (
        table.column("checkpoint_s").to_pylist() if "checkpoint_s" in cols else [None] * n
    )
    kinds = table.column("kind").to_pylist() if "kind" in cols else [""] * n
    hbm: list[float | None] = (
        [None if h is None else float(h) for h in table.column("hbm_gb_per_gpu").to_pylist()]
        if "hbm_gb_per_gpu" in cols
        else [None] * n
    )
    grace: list[float | None] = (
        [None if g is None else float(g) for g in table.column("preempt_grace_s").to_pylist()]
        if "preempt_grace_s" in cols
        else [None] * n
    )
    service: list[bool] = (
        [bool(v) for v in table.column("service").to_pylist()] if "service" in cols else [False] * n
    )
    if opts.checkpoint != CheckpointPolicy.TRACE:
        formula = young_interval_s if opts.checkpoint == CheckpointPolicy.YOUNG else daly_interval_s
        cache: dict[int, float] = {}
        for i, g in enumerate(gpus.tolist()):
            if g not in cache:
                cache[g] = float(formula(opts.checkpoint_write_s, job_mttf_s(g, opts.failure_rate)))
            ckpt[i] = cache[g]
    intervals: list[float | None] = (
        [float(c) if c is not None and c > 0 else None for c in ckpt]
        if "checkpoint_s" in cols or opts.checkpoint != CheckpointPolicy.TRACE
        else ckpt
    )
    # Python lists of exactly the types make_jobs declares (tolist and to_pylist are C).
    jobs, report.no_tenant, report.remapped = make_jobs(
        ids,
        tenants,
        submit.tolist(),
        gpus.tolist(),
        duration.tolist(),
        est.astype(np.float64).tolist(),
        classes,
        hbm,
        prio.astype(np.int64).tolist(),
        preemptible,
        intervals,
        kinds,
        known,
        report.default_tenant,
        grace,
        service,
    )
    if "dataset_bytes" in cols or "allow_cross_site" in cols:
        _data_fields(jobs, table)
    return jobs, report


def _data_fields(jobs: list[Job], table: pa.Table) -> None:
    """Datasets and spanning from the trace's optional columns (schema.py), where given."""
    cols = table.column_names
    n = table.num_rows

    def col(name: str) -> list[Any]:
        return table.column(name).to_pylist() if name in cols else [None] * n

    for job, name, size, site, hold, cross, grad, step in zip(
        jobs,
        col("dataset"),
        col("dataset_bytes"),
        col("data_site"),
        col("stage_hold"),
        col("allow_cross_site"),
        col("grad_bytes"),
        col("step_s"),
        strict=True,
    ):
        if size is not None and size > 0 and site:
            job.dataset = name or ""
            job.dataset_bytes = float(size)
            job.data_site = str(site)
            job.stage_hold = bool(hold)
        if cross:
            job.allow_cross_site = True
        if grad is not None:
            job.grad_bytes = float(grad)
        if step is not None:
            job.step_s = float(step)
