"""``read_trace`` / ``write_trace``: one entry point over a registry of importers.

Adding a format is one module with an ``import_<fmt>`` function and one line in
``IMPORTERS``, keyed by :class:`TraceFormat`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aifactory.workload.schema import OPTIONAL_COLUMNS, TRACE_SCHEMA
from aifactory.workload.traces import itp, philly, sacct
from aifactory.workload.traces.common import ImportOptions, ImportResult, TraceError, TraceFormat
from aifactory.workload.traces.csvmap import import_csv
from aifactory.workload.traces.delimited import as_text, parse_header, read_bytes, split_header
from aifactory.workload.traces.parquet import import_parquet

Importer = Callable[[Path, ImportOptions], ImportResult]
_SNIFF_BYTES = 1 << 16
_PARQUET_MAGIC = b"PAR1"


def _text(fn: Callable[[bytes, ImportOptions], ImportResult]) -> Importer:
    """Adapt an importer of bytes to one of paths."""

    def run(path: Path, opts: ImportOptions) -> ImportResult:
        return fn(read_bytes(path, opts.source), opts)

    return run


def _registry(entries: list[tuple[TraceFormat, Importer]]) -> dict[TraceFormat, Importer]:
    out: dict[TraceFormat, Importer] = {}
    for key, fn in entries:
        if key in out:
            msg = f"two importers for {key}"
            raise ValueError(msg)
        out[key] = fn
    return out


IMPORTERS = _registry(
    [
        (TraceFormat.PHILLY, _text(philly.import_philly)),
        (TraceFormat.ITP, _text(itp.import_itp)),
        (TraceFormat.SACCT, _text(sacct.import_sacct)),
        (TraceFormat.CSV, _text(import_csv)),
        (TraceFormat.PARQUET, import_parquet),
    ]
)


def read_trace(
    path: str | Path,
    fmt: str | None = None,
    *,
    mapping: dict[str, str] | None = None,
    time_format: str | None = None,
    strict: bool = False,
    require_jobs: bool = False,
) -> ImportResult:
    """Read a trace in any supported format into the normalised schema.

    ``fmt`` is one of ``philly|itp|sacct|csv|parquet``; ``None`` infers it (``.parquet``
    by name or magic bytes, the others by their header; with a ``mapping``, ``csv``).
    Bad rows are skipped and counted in ``skipped``; with ``strict`` the first one is
    raised as a :class:`TraceError` naming its line and field. With ``require_jobs`` a
    trace that keeps no job is a :class:`TraceError` too: its first bad row and reason
    (from a strict read), else what its rows were (CPU jobs, jobs that never started).
    """
    result = _read(path, fmt, mapping=mapping, time_format=time_format, strict=strict)
    if require_jobs and result.rows_kept == 0:
        _read(path, fmt, mapping=mapping, time_format=time_format, strict=True)
        parts = [f"{result.cpu_jobs:,} CPU jobs"] if result.cpu_jobs else []
        parts += [f"{n:,} {why}" for why, n in sorted(result.skipped.items())]
        rows = f"{result.rows_read:,} rows" + (f" ({', '.join(parts)})" if parts else "")
        raise TraceError(f"no GPU jobs in {rows}", source=str(path))
    return result


def _read(
    path: str | Path,
    fmt: str | None,
    *,
    mapping: dict[str, str] | None,
    time_format: str | None,
    strict: bool,
) -> ImportResult:
    p = Path(path)
    source = str(path)
    if fmt is None:
        kind = TraceFormat.CSV if mapping else infer_format(p)
    else:
        try:
            kind = TraceFormat(fmt.strip().lower())
        except ValueError:
            known = "|".join(TraceFormat)
            raise TraceError(f"unknown format {fmt!r}; use one of {known}", source=source) from None
    opts = ImportOptions(source=source, mapping=mapping, time_format=time_format, strict=strict)
    return IMPORTERS[kind](p, opts)


def infer_format(path: Path) -> TraceFormat:
    """Guess the format from the file name, magic bytes or header line."""
    source = str(path)
    if path.suffix.lower() in {".parquet", ".pq"}:
        return TraceFormat.PARQUET
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise TraceError("no such file", source=source) from None
    except IsADirectoryError:
        raise TraceError("is a directory, not a trace file", source=source) from None
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror or exc}", source=source) from None
    if head.startswith(_PARQUET_MAGIC):
        return TraceFormat.PARQUET
    line, _, _ = split_header(as_text(head))
    if "|" in line and set(parse_header(line, "|", quoted=False)) >= sacct.HEADER:
        return TraceFormat.SACCT
    names = set(parse_header(line, ",", quoted=True))
    if names >= philly.HEADER:
        return TraceFormat.PHILLY
    if names >= itp.HEADER:
        return TraceFormat.ITP
    shown = line[:120] + ("..." if len(line) > 120 else "")
    msg = (
        f"cannot tell the trace format from the header {shown!r}; pass --format "
        f"({'|'.join(TraceFormat)}), and for any other CSV --map FIELD=COLUMN"
    )
    raise TraceError(msg, source=source)


def write_trace(table: pa.Table, path: str | Path) -> None:
    """Write a normalised trace as Parquet (checked against the schema first)."""
    missing = [f.name for f in TRACE_SCHEMA if f.name not in table.column_names]
    if missing:
        raise TraceError(f"not a normalised trace: no column {', '.join(missing)}", str(path))
    arrays = []
    fields = []
    extras = [c for c in OPTIONAL_COLUMNS if c in table.column_names]
    try:
        for f in TRACE_SCHEMA:
            arrays.append(table.column(f.name).cast(f.type))
            fields.append(f)
        for name in extras:
            arrays.append(table.column(name).cast(OPTIONAL_COLUMNS[name]))
            fields.append(pa.field(name, OPTIONAL_COLUMNS[name]))
        out = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise TraceError(f"table does not fit the trace schema: {exc}", str(path)) from None
    try:
        pq.write_table(out, Path(path))
    except (OSError, pa.ArrowException) as exc:
        raise TraceError(f"cannot write: {exc}", source=str(path)) from None


def parse_mapping(items: list[str] | None, source: str | None = None) -> dict[str, str] | None:
    """``["submit=ts", "gpus=n"]`` (the CLI's ``--map``) as a dict, checking the syntax."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        fld, sep, col = item.partition("=")
        if not sep or not fld.strip() or not col.strip():
            msg = f"--map {item!r}: expected FIELD=COLUMN"
            raise TraceError(msg, source=source)
        if fld.strip() in out:
            raise TraceError(f"--map gives {fld.strip()!r} twice", source=source)
        out[fld.strip()] = col.strip()
    return out
