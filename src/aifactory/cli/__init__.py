"""The `aifactory` command line: one Typer app, one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from aifactory import __version__
from aifactory.cli import (
    admin_cmd,
    alloc_cmd,
    db_cmd,
    export_cmd,
    fleet_cmd,
    import_cmd,
    job_cmd,
    plan_cmd,
    project_cmd,
    run_cmd,
    scenario_cmd,
    serve_cmd,
    simulate_cmd,
    sweep_cmd,
    trace_cmd,
    workload_cmd,
)

app = typer.Typer(
    name="aifactory",
    help="Control plane and digital twin for national-scale GPU AI factories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(fleet_cmd.app, name="fleet")
app.command("run")(run_cmd.run_cmd)
app.command("simulate")(simulate_cmd.simulate)
app.command("compare")(simulate_cmd.compare)
app.add_typer(plan_cmd.app, name="plan")
app.add_typer(scenario_cmd.app, name="scenario")
app.command("sweep")(sweep_cmd.sweep)
app.add_typer(workload_cmd.app, name="workload")
app.add_typer(trace_cmd.app, name="trace")
app.add_typer(job_cmd.app, name="job")
app.command("quota")(job_cmd.quota)
app.add_typer(project_cmd.app, name="project")
app.add_typer(alloc_cmd.app, name="alloc")
app.command("serve")(serve_cmd.serve)
app.add_typer(admin_cmd.app, name="admin")
app.add_typer(db_cmd.app, name="db")
app.add_typer(export_cmd.app, name="export")
app.add_typer(import_cmd.app, name="import")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aifactory {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Control plane and digital twin for national-scale GPU AI factories."""


def main() -> None:
    """Console-script entry point."""
    app()
