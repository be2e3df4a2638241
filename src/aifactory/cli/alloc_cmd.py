"""`aifactory alloc ...`: requests for GPU-hours and their decisions, and the platform report
(issue #19). A member requests, the tenant-admin endorses, a platform admin approves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import fail, out, print_json
from aifactory.cli.job_cmd import Json, client
from aifactory.cli.project_cmd import allocations_table, day, epoch

app = typer.Typer(
    help="GPU-hour allocations: request, decide, top up, report.", no_args_is_help=True
)

AllocId = Annotated[int, typer.Argument(help="Allocation id.", min=1)]
Note = Annotated[str, typer.Option("--note", help="Why (kept in the history).")]


def request_body(
    project: int,
    gpu_hours: float,
    *,
    gpu_class: str | None,
    start: str | None,
    end: str | None,
    justification: str,
    estimate: float | None,
    overdraft: bool,
) -> dict[str, Any]:
    """The body of ``POST /v1/allocations``."""
    return {
        "project": project,
        "gpu_class": gpu_class,
        "gpu_hours": gpu_hours,
        "start_s": None if start is None else epoch(start, "--start"),
        "end_s": None if end is None else epoch(end, "--end"),
        "justification": justification,
        "estimate_gpu_hours": estimate,
        "overdraft": overdraft,
    }


def show_one(got: dict[str, Any], as_json: bool) -> None:
    """An allocation with its history."""
    if as_json:
        print_json(got)
        return
    out.print(allocations_table([got]))
    history = Table("at", "who", "change", "detail", title="history")
    for c in got["history"]:
        what = c["to_state"] if c["kind"] == "move" else c["kind"]
        if c["kind"] == "topup":
            what += f" +{c['delta_gpu_hours']:g} h"
        if c["kind"] == "extend":
            what += f" to {day(c['end_s'])}"
        history.add_row(day(c["at"]), c["who"], what, c["detail"])
    out.print(history)


@app.command("request")
def request(
    project: Annotated[int, typer.Option("--project", min=1, help="Project id.")],
    gpu_hours: Annotated[float, typer.Option("--gpu-hours", min=0.0, help="GPU-hours asked.")],
    *,
    gpu_class: Annotated[
        str | None, typer.Option("--gpu-class", help="GPU class; none: B200-equivalent hours.")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="YYYY-MM-DD; default the project's.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="YYYY-MM-DD; default the project's.")
    ] = None,
    justification: Annotated[str, typer.Option("--justification")] = "",
    overdraft: Annotated[
        bool, typer.Option("--overdraft", help="Ask to run past the balance.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Ask for GPU-hours for a project."""
    body = request_body(
        project,
        gpu_hours,
        gpu_class=gpu_class,
        start=start,
        end=end,
        justification=justification,
        estimate=None,
        overdraft=overdraft,
    )
    with client() as api:
        got = api.request("POST", "/v1/allocations", body=body)
    show_one(got, as_json)


def _decide(alloc_id: int, action: str, body: dict[str, Any], as_json: bool) -> None:
    with client() as api:
        got = api.request("POST", f"/v1/allocations/{alloc_id}/{action}", body=body)
    show_one(got, as_json)


@app.command("endorse")
def endorse(alloc_id: AllocId, *, note: Note = "", as_json: Json = False) -> None:
    """Vouch for a request (the project's tenant-admin)."""
    _decide(alloc_id, "endorse", {"note": note}, as_json)


@app.command("approve")
def approve(alloc_id: AllocId, *, note: Note = "", as_json: Json = False) -> None:
    """Grant an endorsed request (platform admins)."""
    _decide(alloc_id, "approve", {"note": note}, as_json)


@app.command("reject")
def reject(alloc_id: AllocId, *, note: Note = "", as_json: Json = False) -> None:
    """Refuse a request."""
    _decide(alloc_id, "reject", {"note": note}, as_json)


@app.command("topup")
def topup(
    alloc_id: AllocId,
    gpu_hours: Annotated[float, typer.Option("--gpu-hours", help="GPU-hours to add.")],
    *,
    note: Note = "",
    as_json: Json = False,
) -> None:
    """Add GPU-hours to a granted allocation (platform admins)."""
    _decide(alloc_id, "topup", {"gpu_hours": gpu_hours, "note": note}, as_json)


@app.command("extend")
def extend(
    alloc_id: AllocId,
    end: Annotated[str, typer.Option("--end", help="New end, YYYY-MM-DD (UTC).")],
    *,
    note: Note = "",
    as_json: Json = False,
) -> None:
    """Move a granted allocation's end later (platform admins)."""
    _decide(alloc_id, "extend", {"end_s": epoch(end, "--end"), "note": note}, as_json)


@app.command("list")
def list_cmd(
    *,
    project: Annotated[
        int | None, typer.Option("--project", min=1, help="Only this project.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Allocations of the projects the token may see."""
    with client() as api:
        got = api.request("GET", "/v1/allocations", params={"project": project})
    if as_json:
        print_json(got)
        return
    out.print(allocations_table(got))


@app.command("show")
def show(alloc_id: AllocId, *, as_json: Json = False) -> None:
    """One allocation: state, balance, history."""
    with client() as api:
        got = api.request("GET", f"/v1/allocations/{alloc_id}")
    show_one(got, as_json)


@app.command("report")
def report(
    *,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write CSV here.")] = None,
    parquet_path: Annotated[
        Path | None, typer.Option("--parquet", help="Write Parquet here.")
    ] = None,
    as_json: Json = False,
) -> None:
    """The platform report (admins): granted vs used per allocation, idle grants; exported
    as CSV or Parquet (pandas, Polars and DuckDB read both)."""
    with client() as api:
        rows: list[dict[str, Any]] = api.request("GET", "/v1/allocations/report")
    if csv_path is not None or parquet_path is not None:
        import polars as pl  # noqa: PLC0415 (heavy; only the export needs it)

        # A fixed schema, so that an empty report still has its columns and types.
        schema = {
            "tenant": pl.String,
            "project": pl.String,
            "allocation": pl.Int64,
            "gpu_class": pl.String,
            "state": pl.String,
            "granted_gpu_hours": pl.Float64,
            "used_gpu_hours": pl.Float64,
            "used_fraction": pl.Float64,
            "idle": pl.Boolean,
        }
        frame = pl.DataFrame(rows, schema=schema)
        try:
            if csv_path is not None:
                frame.write_csv(csv_path)
            if parquet_path is not None:
                frame.write_parquet(parquet_path)
        except OSError as exc:
            fail(f"cannot write the report: {exc}")
    if as_json:
        print_json(rows)
        return
    table = Table(
        "tenant", "project", "alloc", "class", "state", "granted h", "used h", "used", "idle"
    )
    for r in rows:
        table.add_row(
            r["tenant"],
            r["project"],
            str(r["allocation"]),
            r["gpu_class"] or "B200-eq",
            r["state"],
            f"{r['granted_gpu_hours']:.1f}",
            f"{r['used_gpu_hours']:.1f}",
            f"{100 * r['used_fraction']:.0f}%",
            "yes" if r["idle"] else "",
        )
    out.print(table)
    out.print(tenant_totals(rows))


def tenant_totals(rows: list[dict[str, Any]]) -> Table:
    """Granted and used GPU-hours per tenant (consortium or applicant), idle grants."""
    totals: dict[str, list[float]] = {}
    for r in rows:
        t = totals.setdefault(r["tenant"], [0.0, 0.0, 0.0])
        t[0] += r["granted_gpu_hours"]
        t[1] += r["used_gpu_hours"]
        t[2] += 1.0 if r["idle"] else 0.0
    table = Table("tenant", "granted h", "used h", "used", "idle grants", title="by tenant")
    for tenant, (granted, used, idle) in sorted(totals.items()):
        share = f"{100 * used / granted:.0f}%" if granted > 0 else "-"
        table.add_row(tenant, f"{granted:.1f}", f"{used:.1f}", share, str(int(idle)))
    return table


@app.command("synth")
def synth(
    applicants: Annotated[
        int, typer.Option("--applicants", help="How many applicants ask for GPU-hours.", min=1)
    ],
    out_file: Annotated[Path, typer.Option("--out", help="Allocations file to write (YAML).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the round's draws.")] = 0,
    fleet: Annotated[str, typer.Option("--fleet", help="Bundled fleet name or YAML.")] = (
        "korea-2025"
    ),
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help="Tenant whose jobs the applicants run (default: the fleet's default tenant).",
        ),
    ] = None,
    days: Annotated[float, typer.Option("--days", help="Length of the grants' period.")] = 14.0,
    budget: Annotated[
        float, typer.Option("--budget", help="The round's budget, x the tenant's capacity.")
    ] = 1.0,
    ask: Annotated[
        float, typer.Option("--ask", help="Median ask, x what an applicant's share is.")
    ] = 1.5,
    overdraft: Annotated[
        bool, typer.Option("--overdraft", help="Let granted projects run past the balance.")
    ] = False,
) -> None:
    """Draw a funding round (requested vs granted, seeded) as an allocations file for the
    twin (``simulate --allocations FILE``); see aifactory/twin/funding.py for the model."""
    from aifactory.cli.common import user_errors  # noqa: PLC0415
    from aifactory.fleet import load_fleet  # noqa: PLC0415
    from aifactory.twin.funding import funding_round  # noqa: PLC0415

    with user_errors():
        spec_fleet = load_fleet(fleet)
        try:
            drawn = funding_round(
                spec_fleet,
                applicants,
                seed,
                tenant=tenant,
                days=days,
                budget=budget,
                ask=ask,
                overdraft=overdraft,
            )
        except ValueError as exc:
            fail(str(exc))
        try:
            out_file.write_text(drawn.to_yaml(), encoding="utf-8")
        except OSError as exc:
            fail(f"--out: cannot write {out_file} ({exc})")
    asked = sum(g.requested_gpu_hours or 0.0 for g in drawn.grants)
    given = sum(g.gpu_hours for g in drawn.grants)
    refused = sum(1 for g in drawn.grants if g.gpu_hours == 0)
    out.print(
        f"{applicants} applicants asked {asked:,.0f} B200-eq hours; granted {given:,.0f} "
        f"to {applicants - refused}, rejected {refused}; wrote {out_file}"
    )
