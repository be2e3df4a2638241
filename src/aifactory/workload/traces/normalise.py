"""From parsed columns to the one normalised trace table, vectorised.

Every importer parses its own columns with the helpers here, which record, per row, the
problems they find (missing value, unparsable number, ...). Problems are kept in the
order they were recorded, and a row is skipped for the *first* one, so the counts add up
to the rows read and ``strict`` reports the same problem the counts would. All work is
whole-column polars/numpy; nothing loops over rows, so a 100k-row trace takes
milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from aifactory.arrowkit import cast
from aifactory.workload.schema import OPTIONAL_COLUMNS, TRACE_COLUMNS, TRACE_SCHEMA
from aifactory.workload.traces.common import (
    BENIGN_REASONS,
    CPU_JOB,
    DUPLICATE_ID,
    FRACTIONAL_NUMBER,
    MISSING_FIELD,
    NEGATIVE_DURATION,
    NEGATIVE_ESTIMATE,
    NEGATIVE_GPUS,
    NEGATIVE_SUBMIT,
    OUT_OF_RANGE,
    START_BEFORE_SUBMIT,
    UNPARSABLE_NUMBER,
    UNPARSABLE_TIME,
    WRONG_FIELD_COUNT,
    ZERO_DURATION,
    ImportResult,
    TraceError,
)

INT32_MAX = 2**31 - 1
_MAX_SHOWN = 60


@dataclass(frozen=True)
class Problem:
    """One kind of bad value in one field, with the rows that have it."""

    reason: str
    field: str
    column: str
    mask: np.ndarray
    shown: pl.Series | None


class Frame:
    """The rows of one trace being normalised, and the problems found so far."""

    def __init__(self, n: int, source: str, where: Callable[[int], str]) -> None:
        self.n = n
        self.source = source
        self.where = where
        self.problems: list[Problem] = []

    def flag(
        self,
        reason: str,
        field: str,
        column: str,
        mask: pl.Series | np.ndarray,
        shown: pl.Series | None = None,
    ) -> None:
        """Record that the rows in ``mask`` have ``reason`` in ``field``."""
        m = _mask(mask)
        if m.any():
            self.problems.append(Problem(reason, field, column, m, shown))


def _mask(mask: pl.Series | np.ndarray) -> np.ndarray:
    if isinstance(mask, pl.Series):
        return mask.fill_null(value=False).to_numpy().astype(bool, copy=False)
    return np.asarray(mask, dtype=bool)


def blank(raw: pl.Series) -> pl.Series:
    """True where a raw value is null or only spaces."""
    if raw.dtype == pl.String:
        return raw.is_null() | (raw.str.strip_chars() == "")
    return raw.is_null()


def null_where(values: pl.Series, mask: pl.Series) -> pl.Series:
    """``values`` with nulls where ``mask`` is true (a typed null literal: a column of
    Python Nones would be built and scanned for its first non-null value, row by row)."""
    pick = pl.lit(mask.fill_null(value=False))
    nulls = pl.lit(None, dtype=values.dtype)
    out = pl.select(pl.when(pick).then(nulls).otherwise(pl.lit(values)))
    return out.to_series().alias(values.name)


def choose(mask: pl.Series, then: pl.Series, otherwise: pl.Series) -> pl.Series:
    """Element-wise ``then if mask else otherwise`` (a null mask counts as false)."""
    pick = pl.lit(mask.fill_null(value=False))
    out = pl.select(pl.when(pick).then(pl.lit(then)).otherwise(pl.lit(otherwise)))
    return out.to_series().alias(otherwise.name)


def number(
    frame: Frame,
    raw: pl.Series,
    *,
    field: str,
    column: str,
    required: bool,
    integer: bool = False,
    unparsable: str = UNPARSABLE_NUMBER,
) -> pl.Series:
    """Parse a column of numbers (Float64, null where empty or bad), flagging bad rows."""
    empty = blank(raw)
    if raw.dtype == pl.String:
        values = raw.str.strip_chars().cast(pl.Float64, strict=False)
    elif raw.dtype.is_numeric() or raw.dtype == pl.Boolean:
        values = raw.cast(pl.Float64, strict=False)
    else:
        values = pl.Series(raw.name, [None] * len(raw), dtype=pl.Float64)
    bad = ~empty & (values.is_null() | ~values.is_finite().fill_null(value=False))
    if required:
        frame.flag(MISSING_FIELD, field, column, empty, raw)
    frame.flag(unparsable, field, column, bad, raw)
    values = null_where(values, bad)
    if integer:
        frac = values != values.floor()
        frame.flag(FRACTIONAL_NUMBER, field, column, frac, raw)
        big = values.abs() > INT32_MAX
        frame.flag(OUT_OF_RANGE, field, column, big, raw)
        values = null_where(values, frac.fill_null(value=False) | big.fill_null(value=False))
    return values


def python_to_polars_format(fmt: str) -> str:
    """Python strptime's ``.%f`` (1-6 digits) is polars/chrono's ``%.f``."""
    return fmt.replace(".%f", "%.f")


def time(
    frame: Frame,
    raw: pl.Series,
    *,
    field: str,
    column: str,
    required: bool,
    time_format: str | None,
) -> pl.Series:
    """Parse times to seconds (Float64): epoch numbers, or datetimes in ``time_format``."""
    if time_format is None or raw.dtype != pl.String:
        return number(
            frame, raw, field=field, column=column, required=required, unparsable=UNPARSABLE_TIME
        )
    empty = blank(raw)
    text = raw.str.strip_chars()
    try:
        parsed = text.str.to_datetime(
            python_to_polars_format(time_format), strict=False, time_unit="us"
        )
        seconds = parsed.dt.epoch("us").cast(pl.Float64) / 1e6
    except (pl.exceptions.PolarsError, ValueError, TypeError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"time format {time_format!r} cannot be used: {first}"
        raise TraceError(msg, source=frame.source) from None
    bad = ~empty & seconds.is_null()
    if required:
        frame.flag(MISSING_FIELD, field, column, empty, raw)
    frame.flag(UNPARSABLE_TIME, field, column, bad, raw)
    return seconds


def text(frame: Frame, raw: pl.Series, *, field: str, column: str, required: bool) -> pl.Series:
    """Stripped strings, null where empty (flagged when ``required``)."""
    stripped = raw.cast(pl.String).str.strip_chars()
    empty = stripped.is_null() | (stripped == "")
    if required:
        frame.flag(MISSING_FIELD, field, column, empty, raw)
    return null_where(stripped, empty)


@dataclass(frozen=True)
class Columns:
    """Parsed columns of one trace, each aligned with the input rows.

    Times (``submit``, ``start``) are absolute seconds in the source's own clock;
    ``finish`` makes them relative. ``columns`` names the input column of each field for
    error messages.
    """

    job_id: pl.Series
    submit: pl.Series
    duration: pl.Series
    gpus: pl.Series
    columns: dict[str, str]
    tenant: pl.Series | None = None
    gpu_class: pl.Series | None = None
    estimate: pl.Series | None = None
    priority: pl.Series | None = None
    start: pl.Series | None = None
    status: pl.Series | None = None
    extra: dict[str, pl.Series] | None = None


def finish(
    frame: Frame,
    cols: Columns,
    *,
    fmt: str,
    strict: bool,
    rebase: bool = True,
    bad_lines: list[int] | None = None,
) -> ImportResult:
    """Apply the checks every format shares, then build the sorted, typed table."""
    name = cols.columns.get
    for fname, series in (
        ("id", cols.job_id),
        ("submit", cols.submit),
        ("duration", cols.duration),
        ("gpus", cols.gpus),
    ):
        # Importers flag these already; this keeps a null out of the table whatever they do.
        frame.flag(MISSING_FIELD, fname, name(fname, fname), series.is_null(), series)
    gpus = cols.gpus
    frame.flag(CPU_JOB, "gpus", name("gpus", "gpus"), gpus == 0, gpus)
    frame.flag(NEGATIVE_GPUS, "gpus", name("gpus", "gpus"), gpus < 0, gpus)
    dur = cols.duration
    frame.flag(NEGATIVE_DURATION, "duration", name("duration", "duration"), dur < 0, dur)
    frame.flag(ZERO_DURATION, "duration", name("duration", "duration"), dur == 0, dur)
    if cols.estimate is not None:
        est = cols.estimate
        frame.flag(NEGATIVE_ESTIMATE, "estimate", name("estimate", "estimate"), est < 0, est)
    if not rebase:
        sub = cols.submit
        frame.flag(NEGATIVE_SUBMIT, "submit", name("submit", "submit"), sub < 0, sub)
    if cols.start is not None:
        early = cols.start < cols.submit
        frame.flag(START_BEFORE_SUBMIT, "start", name("start", "start"), early, cols.start)

    reason = np.full(frame.n, -1, dtype=np.int64)
    for k, p in enumerate(frame.problems):
        reason[(reason == -1) & p.mask] = k
    _flag_duplicates(frame, cols, reason)

    bad_lines = bad_lines or []
    if strict:
        _raise_first(frame, reason, bad_lines)

    skipped: dict[str, int] = {}
    cpu = 0
    if bad_lines:
        skipped[WRONG_FIELD_COUNT] = len(bad_lines)
    for k, count in enumerate(np.bincount(reason + 1, minlength=len(frame.problems) + 1)[1:]):
        if count == 0:
            continue
        why = frame.problems[k].reason
        if why == CPU_JOB:
            cpu += int(count)
        else:
            skipped[why] = skipped.get(why, 0) + int(count)

    table = _build(cols, pl.Series(reason == -1), rebase=rebase)
    return ImportResult(
        table=table,
        rows_read=frame.n + len(bad_lines),
        skipped=skipped,
        cpu_jobs=cpu,
        format=fmt,
    )


def _flag_duplicates(frame: Frame, cols: Columns, reason: np.ndarray) -> None:
    """Later rows reusing a surviving row's id are skipped; the first one wins."""
    alive = np.flatnonzero(reason == -1)
    if alive.size == 0:
        return
    ids = cols.job_id.gather(alive)
    dup_local = (~ids.is_first_distinct()).to_numpy()
    if not dup_local.any():
        return
    mask = np.zeros(frame.n, dtype=bool)
    mask[alive[dup_local]] = True
    frame.flag(DUPLICATE_ID, "id", cols.columns.get("id", "id"), mask, cols.job_id)
    reason[mask] = len(frame.problems) - 1


def _raise_first(frame: Frame, reason: np.ndarray, bad_lines: list[int]) -> None:
    benign = {k for k, p in enumerate(frame.problems) if p.reason in BENIGN_REASONS}
    rows = np.flatnonzero((reason >= 0) & ~np.isin(reason, list(benign)))
    first_bad_line = min(bad_lines) if bad_lines else None
    if rows.size == 0 and first_bad_line is None:
        return
    if rows.size:
        row = int(rows[0])
        where = frame.where(row)
        line = _line_number(where)
        if first_bad_line is None or line is None or line < first_bad_line:
            p = frame.problems[int(reason[row])]
            value = "" if p.shown is None else f" ({_shown(p.shown, row)})"
            msg = f"{where}: field '{p.field}' (column '{p.column}'): {p.reason}{value}"
            raise TraceError(msg, source=frame.source)
    msg = f"line {first_bad_line}: {WRONG_FIELD_COUNT}"
    raise TraceError(msg, source=frame.source)


def _line_number(where: str) -> int | None:
    head, _, tail = where.partition(" ")
    return int(tail) if head == "line" and tail.isdigit() else None


def _shown(values: pl.Series, row: int) -> str:
    value = values[row]
    text = "empty" if value is None or (isinstance(value, str) and not value.strip()) else None
    if text is None:
        text = repr(value)
        if len(text) > _MAX_SHOWN:
            text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _build(cols: Columns, keep: pl.Series, *, rebase: bool) -> pa.Table:
    n_keep = int(keep.sum())

    def opt(
        series: pl.Series | None, dtype: pl.DataType, default: str | int | None = None
    ) -> pl.Series:
        if series is None:
            return pl.repeat(default, n_keep, dtype=dtype, eager=True)
        return series.filter(keep).cast(dtype)

    submit = cols.submit.filter(keep)
    low = submit.min()
    t0 = float(low) if rebase and isinstance(low, int | float) else 0.0
    start = opt(cols.start, pl.Float64())
    frame = pl.DataFrame(
        {
            "job_id": cols.job_id.filter(keep).cast(pl.String),
            "tenant": opt(cols.tenant, pl.String(), "").fill_null(""),
            "submit_s": submit - t0,
            "duration_s": cols.duration.filter(keep),
            "gpus": cols.gpus.filter(keep).cast(pl.Int32),
            "gpu_class": opt(cols.gpu_class, pl.String()),
            "estimate_s": opt(cols.estimate, pl.Float64()),
            "priority": opt(cols.priority, pl.Int32(), 0).fill_null(0),
            "observed_start_s": start - t0,
            "status": opt(cols.status, pl.String()),
        }
    )
    extras = {k: v.filter(keep) for k, v in (cols.extra or {}).items()}
    if extras:
        frame = frame.with_columns(**extras)
    # Ties keep the file's order: that is the order the source submitted them in (sacct
    # lists by job id as a number; sorting ids as strings would put "10" before "9").
    frame = frame.sort("submit_s", maintain_order=True)
    arrow = frame.to_arrow()
    arrays = [cast(arrow.column(c), TRACE_SCHEMA.field(c).type) for c in TRACE_COLUMNS]
    fields = list(TRACE_SCHEMA)
    for extra_name in extras:
        arrays.append(cast(arrow.column(extra_name), OPTIONAL_COLUMNS[extra_name]))
        fields.append(pa.field(extra_name, OPTIONAL_COLUMNS[extra_name]))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def empty_table() -> pa.Table:
    """A trace with no rows, in the normalised schema."""
    return TRACE_SCHEMA.empty_table()
