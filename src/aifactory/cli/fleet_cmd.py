"""`aifactory fleet ...`: list, show, validate and describe fleets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from aifactory.cli.common import out, print_json, user_errors
from aifactory.fleet import Fleet, bundled_fleets, fleet_summary, load_fleet
from aifactory.fleet.summary import root_owner_map

app = typer.Typer(help="Describe GPU fleets: sites, pods, NVLink domains, owners and quotas.")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """List the bundled fleets with their size."""
    rows = []
    for name in bundled_fleets():
        fleet = load_fleet(name)
        s = fleet_summary(fleet)
        rows.append(
            {
                "name": name,
                "gpus": int(str(s["gpus_total"])),
                "sites": len(fleet.sites),
                "description": fleet.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title="Bundled fleets")
    table.add_column("name")
    table.add_column("GPUs", justify="right")
    table.add_column("sites", justify="right")
    table.add_column("description")
    for r in rows:
        table.add_row(str(r["name"]), f"{r['gpus']:,}", str(r["sites"]), str(r["description"]))
    out.print(table)


@app.command("show")
def show_cmd(
    fleet: Annotated[str, typer.Argument(help="Bundled fleet name or path to a YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the stable JSON summary.")] = False,
) -> None:
    """Show a fleet: GPUs by owner x site x model, NVLink domains, peak power and quotas."""
    with user_errors():
        spec = load_fleet(fleet)
    summary = fleet_summary(spec)
    if as_json:
        print_json(summary)
        return
    render_fleet(spec, summary)


def render_fleet(spec: Fleet, summary: dict[str, object]) -> None:
    """Rich tables for a fleet summary (shared with the main job)."""
    out.print(f"[bold]{spec.name}[/]: {spec.description}")
    cells = summary["gpus_by_owner_site_model"]
    assert isinstance(cells, list)
    table = Table(title="GPUs by owner, site and model")
    for col in ("owner", "site", "model"):
        table.add_column(col)
    table.add_column("GPUs", justify="right")
    for row in sorted(cells, key=lambda r: (r["owner"], r["site"], r["model"])):
        table.add_row(row["owner"], row["site"], row["model"], f"{row['gpus']:,}")
    table.add_section()
    table.add_row("[bold]total[/]", "", "", f"[bold]{summary['gpus_total']:,}[/]")
    out.print(table)

    sites = Table(title="Sites")
    for col in ("site", "region", "GPUs", "peak MW (with PUE)", "capacity MW", "PUE"):
        sites.add_column(col, justify="right" if col not in {"site", "region"} else "left")
    by_site = summary["gpus_by_site"]
    power = summary["power_mw_by_site"]
    assert isinstance(by_site, dict)
    assert isinstance(power, dict)
    for s in spec.sites:
        sites.add_row(
            s.name,
            s.region,
            f"{by_site.get(s.name, 0):,}",
            f"{power.get(s.name, 0.0):.1f}",
            f"{s.power_mw:.1f}",
            f"{s.pue:.2f}",
        )
    out.print(sites)
    out.print(
        f"NVLink domains: {summary['nvlink_domains']:,}   "
        f"peak power: {summary['power_mw']:,.1f} MW   links: {len(spec.links)}"
    )

    roots = root_owner_map(spec)
    quotas = Table(
        title="Quotas (GPUs): nominal / borrowing limit / lending limit",
        box=box.SIMPLE_HEAD,  # borderless: seven columns of full names fit 80 columns
        padding=(0, 1, 0, 0),
    )
    for col in ("tenant", "owner", "cohort", "class", "nominal", "borrow", "lend"):
        quotas.add_column(
            col,
            justify="right" if col in {"nominal", "borrow", "lend"} else "left",
            no_wrap=True,  # a truncated name ('sovereign-…') would hide which tenant a row is
        )
    depth: dict[str, int] = {}
    for tenant, parent, cohort in spec.iter_tenants():
        # A tenant is indented under its parent (a parent's quota holds its children's).
        depth[tenant.name] = depth[parent.name] + 1 if parent is not None else 0
        for q in tenant.quotas:
            # Without a cohort there is no one to borrow from or lend to: show '-', not 'any'.
            borrow = "any" if q.borrowing_limit is None else f"{q.borrowing_limit:,}"
            lend = "all" if q.lending_limit is None else f"{q.lending_limit:,}"
            quotas.add_row(
                "  " * depth[tenant.name] + tenant.name,
                roots[tenant.name],
                cohort or "-",
                q.gpu_class,
                f"{q.nominal:,}",
                borrow if cohort else "-",
                lend if cohort else "-",
            )
    out.print(quotas)


@app.command("status")
def status_cmd(as_json: JsonOpt = False) -> None:
    """The live fleet of a running control plane, as sinfo: nodes per site, pod, GPU class
    and state (idle, mix, alloc), node lists compressed."""
    from aifactory.cli.job_cmd import client  # noqa: PLC0415 (only this command is a client)

    with client() as api:
        rows: list[dict[str, object]] = api.request("GET", "/v1/fleet/status")
    if as_json:
        print_json(rows)
        return
    table = Table("SITE", "POD", "CLASS", "STATE", box=box.SIMPLE)
    for col in ("NODES", "GPUS", "USED"):
        table.add_column(col, justify="right")
    table.add_column("NODELIST")
    for r in rows:
        table.add_row(
            str(r["site"]),
            str(r["pod"]),
            str(r["gpu_class"]),
            str(r["state"]),
            f"{r['nodes']:,}",
            f"{r['gpus']:,}",
            f"{r['gpus_used']:,}",
            str(r["nodelist"]),
        )
    out.print(table)


@app.command("validate")
def validate_cmd(
    path: Annotated[Path, typer.Argument(help="Fleet YAML file to check.")],
) -> None:
    """Check a fleet file; exit 2 with every problem as `path: problem` if it is invalid."""
    with user_errors():
        spec = load_fleet(path)
    s = fleet_summary(spec)
    out.print(f"[green]ok[/]: {spec.name}, {s['gpus_total']:,} GPUs in {len(spec.sites)} site(s)")


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of the fleet spec (for editors and other tools)."""
    out.print_json(json.dumps(Fleet.model_json_schema()))
