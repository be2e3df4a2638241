"""`aifactory scenario ...`: list, validate, show and describe what-if scenario files."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import out, print_json, user_errors

app = typer.Typer(help="What-if scenarios: a base run and named variations (see `sweep`).")

FileArg = Annotated[str, typer.Argument(help="Bundled scenario name or path to a YAML file.")]


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the bundled scenarios."""
    from aifactory.whatif.apply import bundled_scenarios, load_scenario  # noqa: PLC0415

    rows = []
    for name in bundled_scenarios():
        scenario, _ = load_scenario(name)
        rows.append(
            {
                "name": name,
                "variations": len(scenario.variations),
                "description": scenario.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title="Bundled scenarios")
    table.add_column("name")
    table.add_column("variations", justify="right")
    table.add_column("description")
    for r in rows:
        table.add_row(str(r["name"]), str(r["variations"]), str(r["description"]))
    out.print(table)


@app.command("validate")
def validate_cmd(scenario: FileArg) -> None:
    """Check a scenario: the file, its base fleet and every variation's edited fleet."""
    from aifactory.whatif.apply import check_scenario, load_scenario  # noqa: PLC0415

    with user_errors():
        spec, where = load_scenario(scenario)
        plans = check_scenario(spec, where)
    unmodelled = sorted({u for p in plans for u in p.unmodelled})
    out.print(f"[green]ok[/]: {spec.name}: base and {len(spec.variations)} variation(s) are valid")
    for why in unmodelled:
        out.print(f"note: {why}", markup=False)


@app.command("show")
def show_cmd(
    scenario: FileArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show a scenario: its base, and each variation's edits and resulting fleet."""
    from aifactory.whatif.apply import check_scenario, load_scenario  # noqa: PLC0415

    with user_errors():
        spec, where = load_scenario(scenario)
        plans = check_scenario(spec, where)
    rows = [_plan_row(spec, p) for p in plans]
    if as_json:
        print_json({"scenario": spec.model_dump(mode="json"), "runs": rows, "paired": spec.paired})
        return
    base = Table(title=f"Scenario {spec.name}: base")
    base.add_column("field")
    base.add_column("value")
    for k, v in spec.base.model_dump(mode="json").items():
        base.add_row(k, str(v))
    out.print(base)
    if spec.description:
        out.print(spec.description, markup=False)
    table = Table(title="Runs (each over every seed)")
    for col in ("name", "question", "edits", "GPUs", "policy", "failures x", "not modelled"):
        table.add_column(col, justify="right" if col in ("GPUs", "failures x") else "left")
    for r in rows:
        table.add_row(
            r["name"],
            r["question"],
            "\n".join(r["edits"]) or "-",
            f"{r['gpus']:,}",
            f"{r['policy']}/{r['backfill']}",
            f"{r['failure_multiplier']:g}",
            "\n".join(r["not_modelled"]) or "-",
        )
    out.print(table)


def _plan_row(spec: Any, plan: Any) -> dict[str, Any]:
    from aifactory.fleet import fleet_summary  # noqa: PLC0415

    var = spec.variation(plan.variation)
    edits = [] if var is None else [_edit_text(e) for e in var.edits]
    return {
        "name": plan.variation,
        "question": "" if var is None else var.question,
        "edits": edits,
        "gpus": fleet_summary(plan.fleet)["gpus_total"],
        "policy": plan.policy,
        "backfill": plan.backfill.value,
        "failure_multiplier": plan.failure_multiplier,
        "growth": plan.growth,
        "not_modelled": list(plan.unmodelled),
    }


def _edit_text(edit: Any) -> str:
    fields = edit.model_dump(mode="json", exclude_none=True)
    kind = fields.pop("edit")
    return f"{kind} " + json.dumps(fields, separators=(",", ":"))


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of scenario files (committed as whatif/scenario.schema.json)."""
    from aifactory.whatif.model import scenario_schema  # noqa: PLC0415

    print_json(scenario_schema())
