"""`aifactory plan ...`: plan an LLM training run (compute, failures, checkpoints, energy)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import fail, out, print_json
from aifactory.fleet import SpecError, catalogue
from aifactory.physics import DEFAULT_PUE, Plan, plan_training
from aifactory.physics.failures import LLAMA3_RATE_PER_GPU_HOUR

if TYPE_CHECKING:
    from aifactory.twin.campaign import CampaignResult

app = typer.Typer(help="Plan LLM training runs: time, interruptions, checkpoints and energy.")

#: Planner field -> the CLI option a user typed, so errors name what the user can change.
_OPTIONS = {
    "params": "--params",
    "tokens": "--tokens",
    "gpus": "--gpus",
    "days": "--days",
    "mfu": "--mfu",
    "ckpt_write_s": "--ckpt-write",
    "restart_s": "--restart",
    "failure_rate": "--failure-rate",
    "pue": "--pue",
}
_FIELD = re.compile(r"^(\w+): ")


@app.command("train")
def train_cmd(  # keyword-only: Typer passes options by name
    *,
    params: Annotated[float, typer.Option(help="Model parameters, e.g. 405e9.")],
    tokens: Annotated[float, typer.Option(help="Training tokens, e.g. 15.6e12.")],
    gpu: Annotated[str, typer.Option(help="GPU model id from the catalogue, e.g. h100.")],
    gpus: Annotated[
        int | None, typer.Option(help="GPUs of the job (or give --days to solve for them).")
    ] = None,
    days: Annotated[
        float | None, typer.Option(help="Deadline in days: solve for the GPUs needed.")
    ] = None,
    mfu: Annotated[float, typer.Option(help="Model FLOPs utilisation, 0-1.")] = 0.4,
    ckpt_write: Annotated[
        float, typer.Option("--ckpt-write", help="Checkpoint write cost, seconds.")
    ] = 60.0,
    restart: Annotated[float, typer.Option(help="Restart cost per failure, seconds.")] = 600.0,
    failure_rate: Annotated[
        float, typer.Option(help="Unexpected interruptions per GPU-hour (Llama 3: 2e-5).")
    ] = LLAMA3_RATE_PER_GPU_HOUR,
    pue: Annotated[
        float, typer.Option(help="Site power usage effectiveness (assumed 1.2).")
    ] = DEFAULT_PUE,
    simulate: Annotated[
        int | None,
        typer.Option(help="Also run the campaign through the twin with failures, N seeds."),
    ] = None,
    request: Annotated[
        int | None,
        typer.Option(
            "--request",
            min=1,
            help="Also ask the control plane for the plan's GPU-hours for this project (id).",
        ),
    ] = None,
    request_class: Annotated[
        str | None,
        typer.Option("--request-class", help="GPU class of the request; default --gpu."),
    ] = None,
    justification: Annotated[
        str, typer.Option("--justification", help="Why, for the request.")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Plan a pre-training run: time, interruptions, checkpoints, ETTR and energy.

    Give --gpus for a fixed size, or --days to solve for the fewest GPUs (whole NVLink
    domains) that finish in time; failures make ETTR fall as the job grows.
    """
    if (gpus is None) == (days is None):
        fail("give exactly one of --gpus and --days")
    if simulate is not None and simulate < 1:
        fail(f"--simulate: must be >= 1 (got {simulate})")
    models = catalogue()
    model = models.get(gpu)
    if model is None:
        fail(f"--gpu: unknown GPU model '{gpu}' (known: {', '.join(sorted(models))})")
    try:
        plan = plan_training(
            params,
            tokens,
            model,
            gpus,
            days,
            mfu=mfu,
            ckpt_write_s=ckpt_write,
            restart_s=restart,
            failure_rate=failure_rate,
            pue=pue,
        )
    except SpecError as exc:
        fail("; ".join(_option_named(p) for p in exc.problems))
    campaign = None
    if simulate is not None:
        from aifactory.twin.campaign import simulate_training  # noqa: PLC0415 (loads the twin only when asked)

        campaign = simulate_training(plan, model, simulate)
    asked = None
    if request is not None:
        why = (
            f"plan train: {params:g} params, {tokens:g} tokens on {plan.gpus} x {gpu}, "
            f"{plan.gpu_hours:.6g} GPU-h" + (f"; {justification}" if justification else "")
        )
        asked = request_allocation(request, request_class or gpu, plan.gpu_hours, why)
    if as_json:
        data = plan.model_dump(mode="json")
        if campaign is not None:
            data["simulation"] = campaign.model_dump(mode="json")
        if asked is not None:
            data["request"] = asked
        print_json(data)
        return
    render_plan(plan)
    if campaign is not None:
        render_campaign(campaign)
    if asked is not None:
        out.print(
            f"allocation {asked['id']} requested: {asked['gpu_hours']:.6g} GPU-h ({asked['state']})"
        )


def request_allocation(
    project: int, gpu_class: str, gpu_hours: float, justification: str
) -> dict[str, Any]:
    """Ask the control plane for ``gpu_hours`` for ``project``, the planner's estimate."""
    from aifactory.cli.alloc_cmd import request_body  # noqa: PLC0415 (only with --request)
    from aifactory.cli.job_cmd import client  # noqa: PLC0415

    body = request_body(
        project,
        gpu_hours,
        gpu_class=gpu_class,
        start=None,
        end=None,
        justification=justification[:2000],
        estimate=gpu_hours,
        overdraft=False,
    )
    with client() as api:
        got: dict[str, Any] = api.request("POST", "/v1/allocations", body=body)
    return got


def _option_named(problem: str) -> str:
    m = _FIELD.match(problem)
    if m and m.group(1) in _OPTIONS:
        return _OPTIONS[m.group(1)] + problem[len(m.group(1)) :]
    return problem


def render_plan(plan: Plan) -> None:
    """A Rich table of a plan, with units."""

    def opt(value: float | None, fmt: str, unit: str) -> str:
        return "none (no failures)" if value is None else f"{value:{fmt}} {unit}"

    solved = f" (solved for {plan.days_target:g} days)" if plan.days_target is not None else ""
    table = Table(title="Training plan")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("training compute", f"{plan.flops:.3g} FLOPs"),
        ("GPUs", f"{plan.gpus:,} {plan.gpu}{solved}"),
        ("ideal time (no failures)", f"{plan.ideal_days:,.1f} days"),
        ("job MTTF", opt(plan.mttf_h, ",.2f", "h")),
        ("interruptions per day", f"{plan.interruptions_per_day:,.2f}"),
        ("expected interruptions", f"{plan.expected_interruptions:,.0f}"),
        ("checkpoint interval, Young", opt(plan.ckpt_interval_young_s, ",.0f", "s")),
        ("checkpoint interval, Daly", opt(plan.ckpt_interval_daly_s, ",.0f", "s")),
        ("ETTR (useful / wall)", f"{plan.ettr:.1%}"),
        ("expected wall time", f"{plan.wall_days:,.1f} days"),
        ("GPU-hours", f"{plan.gpu_hours:,.0f}"),
        ("energy (with PUE)", f"{plan.energy_mwh:,.0f} MWh"),
        ("peak power (with PUE)", f"{plan.power_mw:,.2f} MW"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    out.print(
        f"[dim]MFU {plan.mfu:g}, checkpoint write {plan.ckpt_write_s:g} s, restart "
        f"{plan.restart_s:g} s, {plan.failure_rate:g} interruptions per GPU-hour, "
        f"PUE {plan.pue:g}[/]"
    )


def render_campaign(result: CampaignResult) -> None:
    """A Rich table of the simulated finish times."""

    def days(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f} days"

    table = Table(title=f"Through the twin with failures: {result.seeds} seed(s)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("finish, mean", days(result.mean_days))
    table.add_row("finish, median", days(result.p50_days))
    table.add_row("finish, p90", days(result.p90_days))
    table.add_row("finish, min - max", f"{days(result.min_days)} - {days(result.max_days)}")
    table.add_row("interruptions per run", f"{result.mean_interruptions:,.1f}")
    table.add_row("not done by the horizon", f"{result.unfinished} of {result.seeds}")
    table.add_row("spare GPUs beside the job", f"{result.spare_gpus:,}")
    out.print(table)
