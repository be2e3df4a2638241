"""`aifactory workload ...`: synthesise national workloads in the normalised trace schema."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aifactory.cli.common import err, fail, out, print_json, user_errors

app = typer.Typer(help="Workloads: synthesise job traces for a fleet.")


@app.command("synth")
def synth_cmd(  # keyword-only: Typer passes options by name
    *,
    fleet: Annotated[str, typer.Option(help="Bundled fleet name or path to a fleet YAML.")],
    days: Annotated[float, typer.Option(help="Length of the workload, days (> 0).")],
    load: Annotated[
        float, typer.Option(help="Offered load on every tenant's nominal quota (> 0), e.g. 0.9.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    seed: Annotated[int, typer.Option(help="Random seed (>= 0); same seed, same bytes.")] = 0,
    classes: Annotated[
        Path | None,
        typer.Option(help="Job-class catalogue YAML overriding the bundled classes.yaml."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
) -> None:
    """Synthesise a workload: per tenant, its job classes, at offered load L on its quota."""
    if not (math.isfinite(days) and days > 0):
        fail(f"--days: must be a finite number > 0 (got {days:g})")
    if not (math.isfinite(load) and load > 0):
        fail(f"--load: must be a finite number > 0 (got {load:g})")
    if seed < 0:
        fail(f"--seed: must be >= 0 (got {seed})")
    if not out_path.parent.is_dir():
        fail(f"--out: directory '{out_path.parent}' does not exist")
    import pyarrow.parquet as pq  # noqa: PLC0415 (keeps CLI startup light)

    from aifactory.fleet import load_fleet  # noqa: PLC0415
    from aifactory.workload.synth import (  # noqa: PLC0415
        load_catalogue,
        synth_report,
        synthesize,
    )

    with user_errors():
        spec = load_fleet(fleet)
        catalogue = load_catalogue(classes)
        with err.status(f"synthesising {days:g} days of {spec.name} at load {load:g} ..."):
            table = synthesize(spec, days, load, seed, catalogue)
    try:
        pq.write_table(table, out_path)
    except OSError as exc:
        fail(f"--out: cannot write '{out_path}' ({exc})")
    report = synth_report(table, spec, days, load, seed)
    if as_json:
        print_json({**report.to_dict(), "out": str(out_path)})
        return
    per_class = Table(title=f"{spec.name}: jobs per tenant and class")
    for col in ("tenant", "class", "jobs", "GPU-hours"):
        per_class.add_column(col, justify="right" if col in {"jobs", "GPU-hours"} else "left")
    for r in report.rows:
        per_class.add_row(r.tenant, r.kind, f"{r.jobs:,}", f"{r.gpu_hours:,.0f}")
    out.print(per_class)
    loads = Table(title="Offered GPU-hours against nominal quota (work clipped to the horizon)")
    for col in ("tenant", "nominal GPUs", "quota GPU-hours", "offered GPU-hours", "load"):
        loads.add_column(col, justify="left" if col == "tenant" else "right")
    for t in report.tenants:
        loads.add_row(
            t.tenant,
            f"{t.nominal_gpus:,}",
            f"{t.quota_gpu_hours:,.0f}",
            f"{t.offered_gpu_hours:,.0f}",
            f"{t.load:.3f}",
        )
    out.print(loads)
    out.print(f"[green]wrote[/] {out_path}: {report.jobs:,} jobs, seed {seed}")
