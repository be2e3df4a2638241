"""Slurm accounting: the output of ``sacct --parsable2 --allocations --format=...``.

Expected columns (order free, extra columns ignored)::

    JobID,User,Account,Partition,Submit,Start,End,Elapsed,State,AllocTRES,ReqTRES,Timelimit

- GPUs come from ``gres/gpu=N`` in AllocTRES (what the job got), else ReqTRES (what it
  asked for); typed entries ``gres/gpu:a100=N`` are summed when no plain total is shown.
  GRES type names are site-specific and need not match the fleet's GPU classes, so
  ``gpu_class`` stays null (map a class column through ``--format csv`` if you have one).
- The tenant is the Account; the time limit (``[D-]HH:MM:SS``, ``MM:SS``, ``UNLIMITED``,
  ``Partition_Limit``) is the estimate the scheduler may see.
- The observed start is kept, so the twin can be held against what really happened;
  the run time is End - Start, or Elapsed while End is unknown.
- Jobs that never started (Start ``Unknown``/``None``) and job steps (``123.batch``,
  present when ``--allocations`` was left out) are skipped with their own reasons.

Times are Slurm's default ``YYYY-MM-DDTHH:MM:SS`` in the cluster's local time (pass
``time_format`` if ``SLURM_TIME_FORMAT`` was set); a DST change inside the trace shifts
the jobs on one side of it by an hour.
"""

from __future__ import annotations

import polars as pl

from aifactory.workload.traces.common import (
    JOB_STEP,
    NEVER_STARTED,
    UNPARSABLE_TIME,
    ImportOptions,
    ImportResult,
    TraceError,
)
from aifactory.workload.traces.delimited import find_column, read_delimited, where_line
from aifactory.workload.traces.normalise import (
    Columns,
    Frame,
    blank,
    choose,
    finish,
    null_where,
    number,
    text,
    time,
)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
COLUMNS = (
    "JobID",
    "Account",
    "Submit",
    "Start",
    "End",
    "Elapsed",
    "State",
    "AllocTRES",
    "ReqTRES",
    "Timelimit",
)
HEADER = frozenset({"JobID", "Submit", "Start"})
_NOT_A_TIME = ["UNKNOWN", "NONE"]
_NO_LIMIT = ["UNLIMITED", "PARTITION_LIMIT", "INVALID", "NONE"]
_CLOCK = r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+(?:\.\d+)?))?$"
_PLAIN_GPU = r"(?:^|,)gres/gpu=([^,]*)"
_TYPED_GPU = r"(?:^|,)gres/gpu:[^=,]*=[^,]*"


def import_sacct(data: bytes, opts: ImportOptions) -> ImportResult:
    """``--format sacct``."""
    if opts.mapping:
        raise TraceError("--map is only for --format csv", source=opts.source)
    at: dict[str, int] = {}

    def wanted(header: list[str]) -> list[int]:
        for name in COLUMNS:
            pos = find_column(header, name)
            if pos is not None:
                at[name] = pos
        need = [c for c in ("JobID", "Submit", "Start") if c not in at]
        if "AllocTRES" not in at and "ReqTRES" not in at:
            need.append("AllocTRES or ReqTRES")
        if "End" not in at and "Elapsed" not in at:
            need.append("End or Elapsed")
        if need:
            msg = (
                f"not a sacct --parsable2 dump: no column {', '.join(need)} "
                f"(header: {'|'.join(header[:16])})"
            )
            raise TraceError(msg, source=opts.source)
        return list(at.values())

    source = read_delimited(data, opts.source, delimiter="|", quoted=False, wanted=wanted)
    frame = Frame(source.n_rows, source.name, where_line(source))

    def raw(name: str) -> pl.Series | None:
        return source.raw(at[name]) if name in at else None

    job = text(frame, source.raw(at["JobID"]), field="id", column="JobID", required=True)
    frame.flag(JOB_STEP, "id", "JobID", job.str.contains(".", literal=True), job)
    start_raw = source.raw(at["Start"])
    not_started = start_raw.str.strip_chars().str.to_uppercase().is_in(_NOT_A_TIME)
    frame.flag(NEVER_STARTED, "start", "Start", not_started, start_raw)

    fmt = opts.time_format or TIME_FORMAT
    submit = time(
        frame,
        source.raw(at["Submit"]),
        field="submit",
        column="Submit",
        required=True,
        time_format=fmt,
    )
    start = time(frame, start_raw, field="start", column="Start", required=True, time_format=fmt)
    duration = _duration(frame, raw("End"), raw("Elapsed"), start, fmt)
    gpus = _gpus(frame, raw("AllocTRES"), raw("ReqTRES"))
    estimate = None
    limit = raw("Timelimit")
    if limit is not None:
        estimate = clock(frame, limit, field="estimate", column="Timelimit", none=_NO_LIMIT)
    tenant = None
    account = raw("Account")
    if account is not None:
        tenant = text(frame, account, field="tenant", column="Account", required=False)
    status = None
    state = raw("State")
    if state is not None:
        first_word = state.str.strip_chars().str.extract(r"^(\S+)", 1).str.to_uppercase()
        status = text(frame, first_word, field="status", column="State", required=False)
    columns = {"id": "JobID", "submit": "Submit", "start": "Start", "estimate": "Timelimit"}
    columns["duration"] = "End - Start" if "End" in at else "Elapsed"
    columns["gpus"] = "AllocTRES" if "AllocTRES" in at else "ReqTRES"
    cols = Columns(
        job_id=job,
        submit=submit,
        duration=duration,
        gpus=gpus,
        columns=columns,
        tenant=tenant,
        estimate=estimate,
        start=start,
        status=status,
    )
    return finish(frame, cols, fmt="sacct", strict=opts.strict, bad_lines=source.bad_lines)


def _duration(
    frame: Frame,
    end_raw: pl.Series | None,
    elapsed_raw: pl.Series | None,
    start: pl.Series,
    fmt: str,
) -> pl.Series:
    """End - Start where End is known, else Elapsed (a running job's time so far)."""
    n = frame.n
    by_end = pl.Series("d", [None] * n, dtype=pl.Float64)
    if end_raw is not None:
        unknown = end_raw.str.strip_chars().str.to_uppercase().is_in(_NOT_A_TIME)
        known = _blank_where(end_raw, unknown)
        end = time(frame, known, field="duration", column="End", required=False, time_format=fmt)
        by_end = end - start
    if elapsed_raw is None:
        return by_end
    elapsed = clock(frame, elapsed_raw, field="duration", column="Elapsed", none=_NOT_A_TIME)
    return by_end.fill_null(elapsed)


def _blank_where(raw: pl.Series, mask: pl.Series) -> pl.Series:
    return choose(mask, pl.Series([""] * len(raw), dtype=pl.String), raw)


def clock(frame: Frame, raw: pl.Series, *, field: str, column: str, none: list[str]) -> pl.Series:
    """Slurm durations (``[D-]HH:MM:SS``, ``MM:SS``, ``M``, ``D-HH``) to seconds.

    Values in ``none`` (``UNLIMITED``, ...) and empty cells are null, not errors.
    """
    s = raw.str.strip_chars()
    empty = blank(raw) | s.str.to_uppercase().is_in(none).fill_null(value=False)
    parts = s.str.extract_groups(_CLOCK).struct.unnest()
    secs = parts.select(
        d=pl.col("d").cast(pl.Float64, strict=False),
        a=pl.col("a").cast(pl.Float64, strict=False),
        b=pl.col("b").cast(pl.Float64, strict=False),
        c=pl.col("c").cast(pl.Float64, strict=False),
    ).select(
        pl.when(pl.col("d").is_not_null())
        .then(
            pl.col("d") * 86400
            + pl.col("a") * 3600
            + pl.col("b").fill_null(0) * 60
            + pl.col("c").fill_null(0)
        )
        .when(pl.col("c").is_not_null())
        .then(pl.col("a") * 3600 + pl.col("b") * 60 + pl.col("c"))
        .when(pl.col("b").is_not_null())
        .then(pl.col("a") * 60 + pl.col("b"))
        .otherwise(pl.col("a") * 60)
        .alias(field)
    )
    seconds = secs.to_series()
    bad = ~empty & (seconds.is_null() | ~seconds.is_finite().fill_null(value=False))
    frame.flag(UNPARSABLE_TIME, field, column, bad, raw)
    return null_where(seconds, empty | bad)


def _gpus(frame: Frame, alloc: pl.Series | None, req: pl.Series | None) -> pl.Series:
    """GPU count as text per row (AllocTRES, else ReqTRES), then parsed like any number."""
    chosen = pl.Series("gpus", [None] * frame.n, dtype=pl.String)
    present = [name for name, s in (("AllocTRES", alloc), ("ReqTRES", req)) if s is not None]
    for tres in (alloc, req):
        if tres is not None:
            chosen = choose(chosen.is_null() & ~blank(tres), _gpu_text(tres), chosen)
    shown_col = " or ".join(present)
    return number(frame, chosen, field="gpus", column=shown_col, required=True, integer=True)


def _gpu_text(tres: pl.Series) -> pl.Series:
    """``gres/gpu=N`` if shown, else the sum of typed entries, else ``0`` (a CPU job)."""
    plain = tres.str.extract(_PLAIN_GPU, 1)
    typed = tres.str.extract_all(_TYPED_GPU)
    values = typed.list.eval(
        pl.element().str.extract(r"=([^,]*)$", 1).str.strip_chars().cast(pl.Float64, strict=False)
    )
    df = pl.DataFrame(
        {
            "plain": plain,
            "n": typed.list.len(),
            "sum": values.list.sum(),
            "bad": values.list.eval(pl.element().is_null()).list.any(),
            "raw": tres,
        }
    )
    out = df.select(
        pl.when(pl.col("plain").is_not_null())
        .then(pl.col("plain"))
        .when(pl.col("n") == 0)
        .then(pl.lit("0"))
        .when(pl.col("bad"))
        .then(pl.col("raw"))
        .otherwise(pl.col("sum").cast(pl.String))
    )
    return out.to_series()
