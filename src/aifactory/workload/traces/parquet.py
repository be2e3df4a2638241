"""The normalised schema itself, in Parquet: what ``trace import`` and the synthesiser write.

A Parquet trace is re-checked row by row like any other input (it may have been written
by another tool), but its times are taken as they are: a synthesised workload may start
at t > 0 on purpose, so submit times are not shifted, and a negative one is a bad row.
Optional synthesiser columns (``preemptible``, ``checkpoint_s``, ``kind``) are kept.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from aifactory.workload.schema import OPTIONAL_COLUMNS, TRACE_SCHEMA
from aifactory.workload.traces.common import ImportOptions, ImportResult, TraceError
from aifactory.workload.traces.normalise import Columns, Frame, finish, number, text

REQUIRED = ("job_id", "submit_s", "duration_s", "gpus")


def import_parquet(path: Path, opts: ImportOptions) -> ImportResult:
    """``--format parquet``: a file in the normalised schema."""
    if opts.mapping:
        raise TraceError("--map is only for --format csv", source=opts.source)
    table = _read(path, opts.source)
    names = set(table.column_names)
    absent = [c for c in REQUIRED if c not in names]
    if absent:
        msg = f"not a normalised trace: no column {', '.join(absent)}"
        raise TraceError(msg, source=opts.source)
    wanted = [f.name for f in TRACE_SCHEMA if f.name in names]
    wanted += [c for c in OPTIONAL_COLUMNS if c in names]
    columns: dict[str, pl.Series] = {}
    for name in wanted:
        target = (
            TRACE_SCHEMA.field(name).type if name in TRACE_SCHEMA.names else OPTIONAL_COLUMNS[name]
        )
        if pa.types.is_integer(target):
            target = pa.float64()  # out-of-range values become a counted bad row, not a failure
        columns[name] = _column(table.column(name), name, target, opts.source)
    frame = Frame(table.num_rows, opts.source, lambda row: f"row {row + 1}")

    def num(name: str, *, required: bool, integer: bool = False) -> pl.Series | None:
        if name not in columns:
            return None
        return number(
            frame, columns[name], field=name, column=name, required=required, integer=integer
        )

    def txt(name: str, *, required: bool) -> pl.Series | None:
        if name not in columns:
            return None
        return text(frame, columns[name], field=name, column=name, required=required)

    job_id = txt("job_id", required=True)
    submit = num("submit_s", required=True)
    duration = num("duration_s", required=True)
    gpus = num("gpus", required=True, integer=True)
    assert job_id is not None
    assert submit is not None
    assert duration is not None
    assert gpus is not None
    tenant = columns.get("tenant")
    status = txt("status", required=False)
    cols = Columns(
        job_id=job_id,
        submit=submit,
        duration=duration,
        gpus=gpus,
        columns={
            "id": "job_id",
            "submit": "submit_s",
            "duration": "duration_s",
            "gpus": "gpus",
            "estimate": "estimate_s",
            "start": "observed_start_s",
        },
        tenant=None if tenant is None else tenant.fill_null(""),
        gpu_class=txt("gpu_class", required=False),
        estimate=num("estimate_s", required=False),
        priority=num("priority", required=False, integer=True),
        start=num("observed_start_s", required=False),
        status=status,
        extra={c: columns[c] for c in OPTIONAL_COLUMNS if c in columns},
    )
    return finish(frame, cols, fmt="parquet", strict=opts.strict, rebase=False)


def _read(path: Path, source: str) -> pa.Table:
    if path.is_dir():  # pyarrow would read it as a dataset; one trace is one file here
        raise TraceError("is a directory, not a trace file", source=source)
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise TraceError("no such file", source=source) from None
    except IsADirectoryError:
        raise TraceError("is a directory, not a trace file", source=source) from None
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(f"not a readable Parquet file: {first}", source=source) from None


def _column(col: pa.ChunkedArray, name: str, target: pa.DataType, source: str) -> pl.Series:
    """The column as a polars Series of the schema's type, or a clear error."""
    is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
    if is_text and pa.types.is_floating(target):
        target = pa.string()  # parsed (and bad values counted) by ``number``
    try:
        cast = col.cast(target) if col.type != target else col
        return pl.Series(name, cast.combine_chunks())
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        msg = f"column {name!r} is {col.type}, which cannot be read as {target}"
        raise TraceError(msg, source=source) from None
