"""`aifactory trace ...`: bring real job history in (import) and look at it (inspect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aifactory.cli.common import out, print_json, user_errors
from aifactory.workload.traces import (
    FIELDS,
    ImportResult,
    TraceFormat,
    parse_mapping,
    read_trace,
    write_trace,
)
from aifactory.workload.traces.inspect import trace_stats

app = typer.Typer(help="Import job traces (Philly, ITP, Slurm sacct, any CSV) and inspect them.")

_FORMATS = "|".join(TraceFormat)
_MAP_HELP = "FIELD=COLUMN for --format csv; fields: " + ", ".join(FIELDS)
_TOP_TENANTS = 20

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help=f"{_FORMATS} (default: from the name or header)."),
]
MapOpt = Annotated[list[str] | None, typer.Option("--map", "-m", help=_MAP_HELP)]
TimeFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--time-format",
        help="strptime format of datetime columns, e.g. '%Y-%m-%d %H:%M:%S' (csv default: "
        "epoch seconds).",
    ),
]


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file to read.")],
    *,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    time_format: TimeFormatOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first bad row instead of skipping it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Normalise a trace into the Parquet schema the twin reads; report what was skipped."""
    with user_errors():
        result = read_trace(
            file,
            fmt,
            mapping=parse_mapping(mapping, str(file)),
            time_format=time_format,
            strict=strict,
            require_jobs=True,  # nothing to write: the first bad line and why, exit 2
        )
        write_trace(result.table, out_path)
    if as_json:
        print_json(
            {
                "format": result.format,
                "rows_read": result.rows_read,
                "rows_kept": result.rows_kept,
                "cpu_jobs": result.cpu_jobs,
                "skipped": result.skipped,
                "out": str(out_path),
            }
        )
        return
    render_import(result, str(file))
    out.print(f"wrote {result.rows_kept:,} jobs to {escape(str(out_path))}")


def render_import(result: ImportResult, name: str) -> None:
    """Rows read, kept, skipped per reason and CPU jobs, as one table."""
    table = Table(title=f"{escape(name)} ({result.format})")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("read", f"{result.rows_read:,}")
    table.add_row("[green]kept (GPU jobs)[/]", f"{result.rows_kept:,}")
    table.add_row("CPU jobs (left out)", f"{result.cpu_jobs:,}")
    for reason, count in sorted(result.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"[yellow]skipped: {reason}[/]", f"{count:,}")
    out.print(table)


@app.command("inspect")
def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file (any import format, or Parquet).")],
    *,
    fmt: FormatOpt = None,
    fleet: Annotated[
        str | None,
        typer.Option("--fleet", help="Fleet (bundled name or YAML) to compute offered load."),
    ] = None,
    mapping: MapOpt = None,
    time_format: TimeFormatOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Jobs, span, GPU sizes, duration percentiles, GPU-hours, tenants, offered load."""
    with user_errors():
        result = read_trace(
            file, fmt, mapping=parse_mapping(mapping, str(file)), time_format=time_format
        )
        fleet_gpus = None
        if fleet is not None:
            from aifactory.fleet import fleet_summary, load_fleet  # noqa: PLC0415 (only with --fleet)

            fleet_gpus = int(fleet_summary(load_fleet(fleet))["gpus_total"])
    stats = trace_stats(result.table, fleet_gpus=fleet_gpus)
    stats["import"] = {
        "format": result.format,
        "rows_read": result.rows_read,
        "skipped": result.skipped,
        "cpu_jobs": result.cpu_jobs,
    }
    if fleet is not None:
        stats["fleet"] = fleet
    if as_json:
        print_json(stats)
        return
    render_stats(stats, str(file))


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:,.2f}"


def _secs(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:,.0f} s"
    if s < 7200:
        return f"{s / 60:,.1f} min"
    if s < 172800:
        return f"{s / 3600:,.1f} h"
    return f"{s / 86400:,.1f} d"


def render_stats(stats: dict[str, Any], name: str) -> None:
    """Rich tables for ``trace_stats``."""
    imp = stats["import"]
    skipped = sum(imp["skipped"].values())
    out.print(
        f"[bold]{escape(name)}[/] ({imp['format']}): {stats['jobs']:,} GPU jobs "
        f"(read {imp['rows_read']:,}, skipped {skipped:,}, CPU jobs {imp['cpu_jobs']:,})"
    )
    out.print(
        f"span {_secs(stats['span_s'])} (first to last submit), "
        f"GPU-hours {_hours(stats['gpu_hours'])}, largest job {stats['largest_job_gpus']} GPUs"
    )
    d = stats["duration_s"]
    out.print(
        f"duration p50 {_secs(d['p50'])}, p90 {_secs(d['p90'])}, p99 {_secs(d['p99'])}, "
        f"mean {_secs(d['mean'])}"
    )
    q = stats.get("observed_queue_s")
    if q:
        out.print(
            f"observed queue delay ({q['jobs']:,} jobs): p50 {_secs(q['p50'])}, "
            f"p90 {_secs(q['p90'])}, p99 {_secs(q['p99'])}"
        )
    if "fleet_gpus" in stats:
        load = stats["offered_load"]
        shown = "n/a (span is 0)" if load is None else f"{load:.3f}"
        out.print(
            f"offered load on {escape(stats['fleet'])} ({stats['fleet_gpus']:,} GPUs): {shown}"
        )

    sizes = Table(title="Job sizes")
    for col in ("GPUs", "jobs", "share", "GPU-hours"):
        sizes.add_column(col, justify="right")
    for row in stats["gpu_sizes"]:
        sizes.add_row(
            f"{row['gpus']:,}", f"{row['jobs']:,}", f"{row['share']:.1%}", _hours(row["gpu_hours"])
        )
    out.print(sizes)

    tenants = Table(title="Tenants (by GPU-hours)")
    tenants.add_column("tenant")
    for col in ("jobs", "GPU-hours", "share"):
        tenants.add_column(col, justify="right")
    rows = stats["tenants"]
    for row in rows[:_TOP_TENANTS]:
        tenants.add_row(
            escape(row["tenant"]) or "(none)",
            f"{row['jobs']:,}",
            _hours(row["gpu_hours"]),
            f"{row['share']:.1%}",
        )
    if len(rows) > _TOP_TENANTS:
        tenants.add_row(f"... {len(rows) - _TOP_TENANTS} more (see --json)", "", "", "")
    out.print(tenants)
    if "status" in stats:
        status = Table(title="Final status")
        status.add_column("status")
        status.add_column("jobs", justify="right")
        for k, v in stats["status"].items():
            status.add_row(escape(k), f"{v:,}")
        out.print(status)
