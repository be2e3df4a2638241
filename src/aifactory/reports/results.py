"""Result schemas and writers: ``jobs.parquet``, ``timeseries.parquet``, ``summary.json``.

The simulator builds its result tables against the schemas here, so the files an operator
loads into their own tools (pandas, polars, DuckDB, Spark) keep one shape from run to run.
The report and comparison pages read the same files back, which is why the loaders accept a
``pyarrow.Table``, a ``polars.DataFrame`` or a path interchangeably.

``jobs.parquet``, one row per job (times in seconds from the start of the trace):
``job_id, tenant, kind, state, submit_s, start_s, end_s, queue_s, jct_s, run_s, gpus,
gpu_class, placement, preemptions, failures, gpu_hours, gpu_hours_lost_preemption,
gpu_hours_lost_failure``. ``start_s`` is the first start; ``queue_s = start_s - submit_s``;
``jct_s = end_s - submit_s``; nulls where the job never started or never ended.

``timeseries.parquet``, one row every :data:`TIMESERIES_STEP_S` simulated seconds, wide:
``t_s, busy_gpus, pending_jobs, pending_gpus, stranded_gpus, power_mw`` and one
``busy:<tenant>`` column per tenant (see :func:`timeseries_schema`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from aifactory.arrowkit import cast
from aifactory.fleet.errors import SpecError

JOBS_FILE = "jobs.parquet"
TIMESERIES_FILE = "timeseries.parquet"
SUMMARY_FILE = "summary.json"

TIMESERIES_STEP_S = 300.0
"""Sampling period of ``timeseries.parquet``: five simulated minutes (issue #4 §2)."""

TENANT_BUSY_PREFIX = "busy:"
"""Prefix of the per-tenant busy-GPU columns of the wide time series."""


class JobOutcome(StrEnum):
    """Values of the ``state`` column of ``jobs.parquet``."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PENDING = "pending"
    RUNNING = "running"
    REJECTED = "rejected"


class PlacementLevel(StrEnum):
    """Values of the ``placement`` column: the smallest topology level that held the job."""

    NODE = "node"
    DOMAIN = "domain"
    POD = "pod"
    SITE = "site"
    CROSS_SITE = "cross-site"
    NONE = ""


# The scheduler's reasons a pending job waits (aifactory.scheduler.records.Waiting, named
# here so that reading results imports no scheduler).
WAIT_REASONS = ("priority", "quota", "capacity", "reservation", "preempt_grace", "power_cap")

JOBS_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("submit_s", pa.float64(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=True),
        pa.field("end_s", pa.float64(), nullable=True),
        pa.field("queue_s", pa.float64(), nullable=True),
        pa.field("jct_s", pa.float64(), nullable=True),
        pa.field("run_s", pa.float64(), nullable=False),
        pa.field("gpus", pa.int32(), nullable=False),
        pa.field("gpu_class", pa.string(), nullable=True),
        pa.field("placement", pa.string(), nullable=False),
        # Owner of the hardware the job ran on ("mixed": several owners'); null: never ran.
        pa.field("hardware_owner", pa.string(), nullable=True),
        pa.field("preemptions", pa.int32(), nullable=False),
        pa.field("failures", pa.int32(), nullable=False),
        pa.field("gpu_hours", pa.float64(), nullable=False),
        pa.field("gpu_hours_lost_preemption", pa.float64(), nullable=False),
        pa.field("gpu_hours_lost_failure", pa.float64(), nullable=False),
        # Why each job waited (seconds per reason, as the scheduler saw it; see
        # aifactory.scheduler.records.Waiting), and why a job pending at the end waits.
        # Nullable: results written before these columns read as unknown.
        *(pa.field(f"wait_{r}_s", pa.float64(), nullable=True) for r in WAIT_REASONS),
        pa.field("pending_reason", pa.string(), nullable=True),
        # With an allocations file: the project the job was charged to and the seconds it
        # was held before reaching the scheduler (reason "allocation"); null without one.
        pa.field("project", pa.string(), nullable=True),
        pa.field("wait_allocation_s", pa.float64(), nullable=True),
        pa.field("charged_gpu_hours", pa.float64(), nullable=True),
        # Whether the job is a service (a lifetime, not work), and a service's seconds down
        # (waiting to be placed, first or again, and restarting) while it was wanted (null
        # for a batch job); both null in results written before these columns.
        pa.field("service", pa.bool_(), nullable=True),
        pa.field("downtime_s", pa.float64(), nullable=True),
        # Data and spanning (issue #20 §1): the site the job was pinned to (the twin pins a
        # job with a dataset where its data is or was copied; null: any), seconds it waited
        # for its data, and how much slower its last run was for spanning sites (1: not).
        # Null in results written before these columns.
        pa.field("site", pa.string(), nullable=True),
        pa.field("staging_s", pa.float64(), nullable=True),
        pa.field("slowdown", pa.float64(), nullable=True),
    ]
)

TIMESERIES_BASE_SCHEMA = pa.schema(
    [
        pa.field("t_s", pa.float64(), nullable=False),
        pa.field("busy_gpus", pa.int64(), nullable=False),
        pa.field("pending_jobs", pa.int64(), nullable=False),
        pa.field("pending_gpus", pa.int64(), nullable=False),
        pa.field("stranded_gpus", pa.int64(), nullable=False),
        pa.field("power_mw", pa.float64(), nullable=False),
    ]
)
"""The fixed columns of ``timeseries.parquet``; per-tenant columns follow them."""

SIZE_CLASSES: tuple[tuple[str, int, int | None], ...] = (
    ("1 GPU", 1, 1),
    ("2-8 GPUs", 2, 8),
    ("9-64 GPUs", 9, 64),
    ("65-512 GPUs", 65, 512),
    ("513+ GPUs", 513, None),
)
"""Job-size classes of the JCT CDF: one GPU, one node, a rack domain, a pod slice, beyond."""

Frame: TypeAlias = "pa.Table | pl.DataFrame"
FrameLike: TypeAlias = "pa.Table | pl.DataFrame | Path | str | None"


class ResultSchemaError(SpecError):
    """A result file or table does not fit its contract (the CLI reports it and exits 2)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__([problem], source=source)


def busy_column(tenant: str) -> str:
    """Name of the wide time-series column holding ``tenant``'s busy GPUs."""
    return f"{TENANT_BUSY_PREFIX}{tenant}"


SITE_POWER_PREFIX = "site_power_mw:"
LINK_UTIL_PREFIX = "link_util:"


def site_power_column(site: str) -> str:
    """Name of the wide time-series column holding ``site``'s facility power, MW."""
    return f"{SITE_POWER_PREFIX}{site}"


def timeseries_schema(
    tenants: Iterable[str], sites: Iterable[str] = (), links: Iterable[str] = ()
) -> pa.Schema:
    """The full ``timeseries.parquet`` schema for these tenants (order kept, duplicates
    dropped), then a power column per site (optional: older files have none), then a
    utilisation column per inter-site link (``a-b``; only runs that staged data have them)."""
    seen: dict[str, None] = dict.fromkeys(tenants)
    fields = list(TIMESERIES_BASE_SCHEMA) + [
        pa.field(busy_column(t), pa.int64(), nullable=False) for t in seen
    ]
    fields += [pa.field(site_power_column(s), pa.float64()) for s in dict.fromkeys(sites)]
    fields += [pa.field(link_util_column(k), pa.float64()) for k in dict.fromkeys(links)]
    return pa.schema(fields)


def link_util_column(link: str) -> str:
    """Name of the wide time-series column holding a link's utilisation (0..1: bytes/s
    that data copies carry over the bytes/s it has)."""
    return f"{LINK_UTIL_PREFIX}{link}"


def links_of_timeseries(columns: Sequence[str]) -> list[str]:
    """Links (``a-b``) with a utilisation column in a wide time series, in column order."""
    return [c[len(LINK_UTIL_PREFIX) :] for c in columns if c.startswith(LINK_UTIL_PREFIX)]


def sites_of_timeseries(columns: Sequence[str]) -> list[str]:
    """Site names with a power column in a wide time series, in column order."""
    return [c[len(SITE_POWER_PREFIX) :] for c in columns if c.startswith(SITE_POWER_PREFIX)]


def tenants_of_timeseries(columns: Sequence[str]) -> list[str]:
    """Tenant names present in a wide time series, in column order."""
    return [c[len(TENANT_BUSY_PREFIX) :] for c in columns if c.startswith(TENANT_BUSY_PREFIX)]


def empty_jobs_table() -> pa.Table:
    """A zero-row ``jobs`` table with the contract schema (for runs with no jobs)."""
    return JOBS_SCHEMA.empty_table()


def empty_timeseries_table(tenants: Iterable[str] = ()) -> pa.Table:
    """A zero-row time series with the contract schema."""
    return timeseries_schema(tenants).empty_table()


def _as_arrow(frame: Frame) -> pa.Table:
    return frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """Select and cast ``table`` to ``schema``; a clear error names what does not fit."""
    missing = [f.name for f in schema if f.name not in table.column_names and not f.nullable]
    if missing:
        raise ResultSchemaError(what, f"missing column(s) {', '.join(missing)}")
    columns = []
    for field in schema:
        if field.name not in table.column_names:  # a nullable column added since: unknown
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if pa.types.is_dictionary(col.type):
            col = cast(col, col.type.value_type)
        if not field.nullable and col.null_count:
            problem = f"{field.name}: {col.null_count} null(s) in a required column"
            raise ResultSchemaError(what, problem)
        try:
            columns.append(cast(col, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ResultSchemaError(
                what, f"{field.name}: type {col.type} can't be cast to {field.type} ({exc})"
            ) from exc
    return pa.Table.from_arrays(columns, schema=schema)


def conform_jobs(jobs: Frame) -> pa.Table:
    """The jobs table in exactly :data:`JOBS_SCHEMA` (extra columns dropped)."""
    return _conform(_as_arrow(jobs), JOBS_SCHEMA, JOBS_FILE)


def conform_timeseries(timeseries: Frame) -> pa.Table:
    """The time series in :func:`timeseries_schema` order, tenant columns kept."""
    table = _as_arrow(timeseries)
    names = table.column_names
    schema = timeseries_schema(
        tenants_of_timeseries(names), sites_of_timeseries(names), links_of_timeseries(names)
    )
    return _conform(table, schema, TIMESERIES_FILE)


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities by ``None`` and numpy scalars by Python ones, recursively.

    JSON has no NaN; a summary with no completed jobs has no mean JCT, and ``null`` says so
    in a way every JSON reader accepts.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(path: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``summary.json`` (indented, NaN as null, trailing newline) and return its path."""
    text = json.dumps(json_safe(summary), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def write_jobs(path: Path, jobs: Frame) -> Path:
    """Write ``jobs.parquet`` in the contract schema (zstd) and return its path."""
    pq.write_table(conform_jobs(jobs), path, compression="zstd")
    return path


def write_timeseries(path: Path, timeseries: Frame) -> Path:
    """Write ``timeseries.parquet`` in the contract schema (zstd) and return its path."""
    pq.write_table(conform_timeseries(timeseries), path, compression="zstd")
    return path


def write_results(
    out_dir: Path, summary: Mapping[str, Any], jobs: Frame, timeseries: Frame
) -> dict[str, Path]:
    """Write the three result files into ``out_dir`` (created if needed); paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "summary": write_summary(out_dir / SUMMARY_FILE, summary),
        "jobs": write_jobs(out_dir / JOBS_FILE, jobs),
        "timeseries": write_timeseries(out_dir / TIMESERIES_FILE, timeseries),
    }


def to_polars(frame: FrameLike) -> pl.DataFrame:
    """Any accepted input (table, frame, Parquet path, ``None``) as a polars DataFrame."""
    if frame is None:
        return pl.DataFrame()
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, str | Path):
        return pl.read_parquet(frame)
    out = pl.from_arrow(frame)
    assert isinstance(out, pl.DataFrame), "a pyarrow Table converts to a DataFrame"
    return out


def load_results(out_dir: Path) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    """Read ``summary.json`` and the two Parquet files back from a run directory."""
    summary_path = out_dir / SUMMARY_FILE
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultSchemaError(str(summary_path), "no such file") from exc
    except json.JSONDecodeError as exc:
        raise ResultSchemaError(str(summary_path), f"not valid JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise ResultSchemaError(str(summary_path), "expected a JSON object")
    jobs_path = out_dir / JOBS_FILE
    ts_path = out_dir / TIMESERIES_FILE
    jobs = pl.read_parquet(jobs_path) if jobs_path.exists() else pl.DataFrame()
    ts = pl.read_parquet(ts_path) if ts_path.exists() else pl.DataFrame()
    return summary, jobs, ts


def float_column(df: pl.DataFrame, name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A column as float64 numpy (nulls as NaN); an empty array when the column is absent."""
    if name not in df.columns or df.height == 0:
        return np.empty(0, dtype=np.float64)
    return df.get_column(name).cast(pl.Float64).fill_null(float("nan")).to_numpy()


def size_class_index(gpus: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Index into :data:`SIZE_CLASSES` for each gang size."""
    edges = np.array([lo for _, lo, _ in SIZE_CLASSES[1:]], dtype=np.int64)
    return np.searchsorted(edges, np.asarray(gpus, dtype=np.int64), side="right")


def cdf_points(
    values: np.ndarray[Any, Any], max_points: int = 2000
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    """Empirical CDF ``(x, F(x))`` of the finite values, thinned to at most ``max_points``.

    Thinning keeps evenly spaced ranks (always the minimum and the maximum), so the curve of
    a million jobs draws in constant time and still shows the tail to 1/``max_points``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = np.sort(v[np.isfinite(v)])
    n = v.size
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty
    if n <= max_points:
        idx = np.arange(n)
    else:
        idx = np.unique(np.linspace(0, n - 1, max(max_points, 2)).round().astype(np.int64))
    return v[idx], (idx + 1.0) / n


def downsample_mean(
    t: np.ndarray[Any, Any], columns: Sequence[np.ndarray[Any, Any]], max_points: int = 2000
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], list[np.ndarray[Any, np.dtype[np.float64]]]]:
    """Average consecutive samples into at most ``max_points`` bins (time and every column).

    Means, not picks: a year at five-minute steps is 105,000 rows, and a picked sample would
    alias daily cycles while the bin mean keeps the area (GPU-hours) under each curve.
    """
    n = len(t)
    t64 = np.asarray(t, dtype=np.float64)
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    if n <= max_points:
        return t64, cols
    starts = np.unique(np.linspace(0, n, max_points + 1).astype(np.int64)[:-1])
    counts = np.diff(np.append(starts, n)).astype(np.float64)
    return (
        np.add.reduceat(t64, starts) / counts,
        [np.add.reduceat(c, starts) / counts for c in cols],
    )
