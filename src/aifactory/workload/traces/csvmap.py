"""Any CSV, given which column holds which field (``--map FIELD=COLUMN``).

The Philly and ITP importers are this one with a fixed mapping: one code path parses,
checks and counts every CSV-shaped trace, so a fix here fixes all of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from aifactory.workload.traces.common import ImportOptions, ImportResult, TraceError
from aifactory.workload.traces.delimited import Source, find_column, read_delimited, where_line
from aifactory.workload.traces.normalise import Columns, Frame, finish, number, text, time

# The fields a mapping may name, and what each means.
FIELDS: dict[str, str] = {
    "submit": "submit time (epoch seconds, or a datetime with --time-format)",
    "duration": "run time in seconds (or give start and end)",
    "start": "observed start time (same clock as submit)",
    "end": "observed end time (duration = end - start)",
    "gpus": "GPUs of the job (0 = CPU job, kept out and counted)",
    "tenant": "who submitted it (default: empty)",
    "estimate": "time limit or user estimate in seconds",
    "status": "final status on the real system",
    "id": "job id (default: job-<row index>)",
    "gpu_class": "requested GPU class (default: any)",
    "priority": "integer priority class, larger is more important (default: 0)",
}


def check_mapping(mapping: Mapping[str, str] | None, source: str) -> dict[str, str]:
    """Validate a FIELD -> COLUMN mapping: known fields, and enough of them."""
    if not mapping:
        msg = "--format csv needs a column mapping (--map FIELD=COLUMN) for submit, duration, gpus"
        raise TraceError(msg, source=source)
    clean = {k.strip().lower(): v.strip() for k, v in mapping.items()}
    unknown = sorted(set(clean) - set(FIELDS))
    if unknown:
        msg = f"unknown field(s) in mapping: {', '.join(unknown)}; known: {', '.join(FIELDS)}"
        raise TraceError(msg, source=source)
    empty = sorted(k for k, v in clean.items() if not v)
    if empty:
        raise TraceError(f"mapping for {', '.join(empty)} names no column", source=source)
    missing = [f for f in ("submit", "gpus") if f not in clean]
    if "duration" not in clean and not {"start", "end"} <= set(clean):
        missing.append("duration (or start and end)")
    if missing:
        raise TraceError(f"mapping lacks {', '.join(missing)}", source=source)
    if "end" in clean and "start" not in clean:
        raise TraceError("mapping gives end without start", source=source)
    return clean


def import_csv(data: bytes, opts: ImportOptions) -> ImportResult:
    """``--format csv``: parse with the caller's mapping."""
    mapping = check_mapping(opts.mapping, opts.source)
    return import_mapped(data, opts, mapping, fmt="csv", time_format=opts.time_format)


def import_mapped(
    data: bytes,
    opts: ImportOptions,
    mapping: dict[str, str],
    *,
    fmt: str,
    time_format: str | None,
    id_prefix: str = "job-",
) -> ImportResult:
    """Read a comma-separated file and normalise it through ``mapping``."""
    positions: dict[str, int] = {}

    def wanted(header: list[str]) -> list[int]:
        absent: list[str] = []
        for fld, col in mapping.items():
            at = find_column(header, col)
            if at is None:
                absent.append(f"{col!r} (for {fld})")
            else:
                positions[fld] = at
        if absent:
            shown = ", ".join(repr(h) for h in header[:20])
            more = f" and {len(header) - 20} more" if len(header) > 20 else ""
            msg = f"no column {', '.join(absent)} in the header; columns are {shown}{more}"
            raise TraceError(msg, source=opts.source)
        return list(positions.values())

    source = read_delimited(data, opts.source, delimiter=",", quoted=True, wanted=wanted)
    cols = _columns(source, positions, time_format, id_prefix)
    return finish(cols[0], cols[1], fmt=fmt, strict=opts.strict, bad_lines=source.bad_lines)


def _columns(
    source: Source,
    positions: dict[str, int],
    time_format: str | None,
    id_prefix: str,
) -> tuple[Frame, Columns]:
    frame = Frame(source.n_rows, source.name, where_line(source))
    names = {f: source.header[i] for f, i in positions.items()}

    def raw(fld: str) -> pl.Series:
        return source.raw(positions[fld])

    def opt_text(fld: str) -> pl.Series | None:
        if fld not in positions:
            return None
        return text(frame, raw(fld), field=fld, column=names[fld], required=False)

    if "id" in positions:
        job_id = text(frame, raw("id"), field="id", column=names["id"], required=True)
    else:
        ordinal = pl.Series("id", source.ordinal).cast(pl.String)
        job_id = pl.select(pl.lit(id_prefix) + pl.lit(ordinal)).to_series()
        names["id"] = "(row index)"
    submit = time(
        frame,
        raw("submit"),
        field="submit",
        column=names["submit"],
        required=True,
        time_format=time_format,
    )
    start = None
    if "start" in positions:
        start = time(
            frame,
            raw("start"),
            field="start",
            column=names["start"],
            required=True,
            time_format=time_format,
        )
    if "duration" in positions:
        duration = number(
            frame, raw("duration"), field="duration", column=names["duration"], required=True
        )
    else:
        end = time(
            frame,
            raw("end"),
            field="end",
            column=names["end"],
            required=True,
            time_format=time_format,
        )
        assert start is not None  # check_mapping: end needs start
        duration = end - start
        names["duration"] = f"{names['end']} - {names['start']}"
    gpus = number(
        frame, raw("gpus"), field="gpus", column=names["gpus"], required=True, integer=True
    )
    estimate = None
    if "estimate" in positions:
        estimate = number(
            frame, raw("estimate"), field="estimate", column=names["estimate"], required=False
        )
    priority = None
    if "priority" in positions:
        priority = number(
            frame,
            raw("priority"),
            field="priority",
            column=names["priority"],
            required=False,
            integer=True,
        )
    cols = Columns(
        job_id=job_id,
        submit=submit,
        duration=duration,
        gpus=gpus,
        columns=names,
        tenant=opt_text("tenant"),
        gpu_class=opt_text("gpu_class"),
        estimate=estimate,
        priority=priority,
        start=start,
        status=opt_text("status"),
    )
    return frame, cols
