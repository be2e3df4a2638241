"""From a normalised trace table to the twin's jobs, with every adaptation counted.

Replaying a trace on a fleet needs a few decisions, each reported rather than hidden:
tenants the fleet does not know go to its default tenant; a trace without estimates
uses the true run time as the estimate (as the published simulators' SJF does), and
``estimate_error`` multiplies estimates by a seeded log-normal factor; ``time_scale``
multiplies inter-arrival times (0.25 = four times the offered load); checkpoint
intervals come from the trace or from Young's / Daly's formula at the job's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

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
    """Build :class:`Job` objects from a trace table (TRACE_SCHEMA plus optional columns),
    one per row in table order."""
    prep = _Prepared(table, fleet, opts)
    return prep.make(None), prep.report


CHUNK_ROWS: Final = 50_000
"""Rows a :class:`JobSource` makes into jobs at a time: big enough that a chunk's column
conversions run at C speed, small enough that the jobs made ahead of their arrival are a
small part of a national run's jobs in flight."""


class JobSource:
    """A trace's jobs made in submit order, a chunk at a time, as a run's arrivals reach
    them (:class:`~aifactory.twin.simulator.Simulation` with ``source``).

    Why: a national run of months has millions of jobs, and a list of all of them made up
    front holds every job's object, finished or not, until the end. The run needs only
    the submit times ahead (:meth:`submit_times`, the kernel's arrival feed); a job's
    object is made when the arrivals come near it. The jobs are those of
    :func:`jobs_from_table` (the same rows, fields and adaptations), in the order a
    :class:`Simulation` sorts a ready-made list (by submit time, stable). Every row is
    checked up front (:func:`~aifactory.twin.simulator.check_fields`, a chunk at a time,
    each made, checked and dropped), so a bad row still fails the run before it starts
    (naming the first bad row in table order, where a job list names the first in submit
    order).
    """

    def __init__(
        self, table: pa.Table, fleet: Fleet, opts: InputOptions, chunk_rows: int | None = None
    ) -> None:
        """``chunk_rows``: rows made into jobs at a time (None: :data:`CHUNK_ROWS`)."""
        from aifactory.twin.simulator import check_fields  # noqa: PLC0415 (a cycle)

        if chunk_rows is None:
            chunk_rows = CHUNK_ROWS
        if chunk_rows < 1:
            msg = "chunk_rows: must be >= 1"
            raise ValueError(msg)
        self._prep = _Prepared(table, fleet, opts)
        self.report = self._prep.report
        self.n = table.num_rows
        self.chunk_rows = chunk_rows
        submit = self._prep.submit
        order = np.argsort(submit, kind="stable")
        self._order: np.ndarray[Any, np.dtype[np.intp]] | None = (
            None if bool(np.all(order == np.arange(self.n))) else order
        )
        cols = table.column_names
        self.has_datasets = "dataset_bytes" in cols and _any_dataset(table)
        self.may_span = "allow_cross_site" in cols and any(
            table.column("allow_cross_site").to_pylist()
        )
        # Every row checked, in table order (the report counts the rows here, once, in the
        # order jobs_from_table does).
        for lo in range(0, self.n, chunk_rows):
            rows = np.arange(lo, min(lo + chunk_rows, self.n))
            check_fields(self._prep.make(rows, count=True))

    @property
    def chunks(self) -> int:
        """How many chunks the rows make."""
        return int(-(-self.n // self.chunk_rows))

    def submit_times(self) -> list[float]:
        """Every job's submit time, in the run's order (ascending); made at each call (a
        list of millions of floats, which the kernel's feed copies into a vector)."""
        submit = self._prep.submit
        times: list[float] = (submit if self._order is None else submit[self._order]).tolist()
        return times

    def chunk(self, k: int) -> list[Job]:
        """The jobs of chunk ``k``: rows ``k * chunk_rows`` onwards in the run's order."""
        return self._prep.make(self._rows(k), count=False)

    def _rows(self, k: int) -> np.ndarray[Any, np.dtype[np.intp]]:
        """The table rows of chunk ``k``."""
        lo = k * self.chunk_rows
        hi = min(lo + self.chunk_rows, self.n)
        return np.arange(lo, hi) if self._order is None else self._order[lo:hi]


def _any_dataset(table: pa.Table) -> bool:
    """Whether some row reads a dataset (a size > 0 at a site: :func:`_data_fields`)."""
    size = table.column("dataset_bytes").to_numpy(zero_copy_only=False).astype(np.float64)
    if "data_site" not in table.column_names:
        return False
    sites = table.column("data_site").to_pylist()
    return any(s > 0 and site for s, site in zip(size.tolist(), sites, strict=True))


class _Prepared:
    """A table's columns checked and adapted once (ids, estimates, time scale), from which
    jobs are made for any set of rows (:meth:`make`)."""

    def __init__(self, table: pa.Table, fleet: Fleet, opts: InputOptions) -> None:
        if opts.time_scale <= 0:
            msg = "time_scale: must be > 0"
            raise ValueError(msg)
        if opts.estimate_error < 0:
            msg = "estimate_error: must be >= 0"
            raise ValueError(msg)
        rng = np.random.default_rng(opts.seed)
        n = table.num_rows
        self.table = table
        self.opts = opts
        self.report = InputReport(jobs=n, default_tenant=default_tenant(fleet))
        self.known = {t.name for t, _, _ in fleet.iter_tenants()}
        _check_unique_ids(table.column("job_id"), table.column("job_id").to_pylist())
        submit = table.column("submit_s").to_numpy(zero_copy_only=False).astype(np.float64)
        duration = table.column("duration_s").to_numpy(zero_copy_only=False).astype(np.float64)
        self.duration = duration
        self.gpus = table.column("gpus").to_numpy(zero_copy_only=False).astype(np.int64)
        self.prio = table.column("priority").to_numpy(zero_copy_only=False).astype(np.int64)
        est = table.column("estimate_s").to_numpy(zero_copy_only=False).astype(np.float64)
        missing_est = np.isnan(est)
        self.report.estimates_from_runtime = int(missing_est.sum())
        est = np.where(missing_est, duration, est)
        if opts.estimate_error > 0:
            est = est * rng.lognormal(0.0, opts.estimate_error, size=n)
        self.est = est.astype(np.float64)
        if n:
            first = float(submit.min())
            submit = first + (submit - first) * opts.time_scale - first
        self.submit = submit
        self._intervals: dict[int, float] = {}  # gpus -> Young's or Daly's interval

    def _column(
        self,
        name: str,
        rows: np.ndarray[Any, Any] | None,
        default: Any = None,
        convert: Callable[[Any], Any] | None = None,
    ) -> list[Any]:
        """A column's values at ``rows`` (all rows for None), each through ``convert``
        (None kept as None); ``default`` for every row if the column is absent, as a list
        made at once (not a per-row conversion of a list of defaults)."""
        if name not in self.table.column_names:
            return [default] * (self.table.num_rows if rows is None else len(rows))
        col = self.table.column(name)
        values: list[Any] = (col if rows is None else col.take(rows)).to_pylist()
        if convert is not None:
            return [None if v is None else convert(v) for v in values]
        return values

    def _checkpoints(self, gpus: list[int], rows: np.ndarray[Any, Any] | None) -> list[Any]:
        opts = self.opts
        if opts.checkpoint == CheckpointPolicy.TRACE:
            return self._column("checkpoint_s", rows, None)
        formula = young_interval_s if opts.checkpoint == CheckpointPolicy.YOUNG else daly_interval_s
        cache = self._intervals
        for g in gpus:
            if g not in cache:
                cache[g] = float(formula(opts.checkpoint_write_s, job_mttf_s(g, opts.failure_rate)))
        return [cache[g] for g in gpus]

    def make(self, rows: np.ndarray[Any, Any] | None, *, count: bool = True) -> list[Job]:
        """The jobs of ``rows`` (None: every row, in table order); with ``count``, the
        report counts their rows without a tenant and the remapped ones."""

        def pick(values: np.ndarray[Any, Any]) -> list[Any]:
            out: list[Any] = (values if rows is None else values[rows]).tolist()
            return out

        gpus: list[int] = pick(self.gpus)
        ckpt = self._checkpoints(gpus, rows)
        given = "checkpoint_s" in self.table.column_names
        intervals: list[float | None] = (
            [float(c) if c is not None and c > 0 else None for c in ckpt]
            if given or self.opts.checkpoint != CheckpointPolicy.TRACE
            else ckpt  # (every one None)
        )
        preemptible = self._column("preemptible", rows, default=True, convert=bool)
        hbm = self._column("hbm_gb_per_gpu", rows, None, float)
        grace = self._column("preempt_grace_s", rows, None, float)
        service = self._column("service", rows, default=False)
        # Python lists of exactly the types make_jobs declares (tolist and to_pylist are C).
        report = self.report
        jobs, no_tenant, remapped = make_jobs(
            self._column("job_id", rows, None),
            self._column("tenant", rows, None),
            pick(self.submit),
            gpus,
            pick(self.duration),
            pick(self.est),
            self._column("gpu_class", rows, None),
            hbm,
            pick(self.prio),
            preemptible,
            intervals,
            self._column("kind", rows, ""),
            self.known,
            report.default_tenant,
            grace,
            [bool(v) for v in service] if "service" in self.table.column_names else service,
        )
        if count:
            report.no_tenant += no_tenant
            for tenant, rows_of in remapped.items():
                report.remapped[tenant] = report.remapped.get(tenant, 0) + rows_of
        cols = self.table.column_names
        if "dataset_bytes" in cols or "allow_cross_site" in cols:
            _data_fields(jobs, self.table if rows is None else self.table.take(rows))
        return jobs


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
