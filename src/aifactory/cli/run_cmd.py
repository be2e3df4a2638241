"""`aifactory run` (what `make run` runs): the national scenario, end to end.

Synthesise two weeks of the korea-2025 workload at 85% offered load, replay it in the
twin with failures (Llama 3's rate and cause mix) and checkpoints, with the five
sovereign consortia's GPU-hour allocations enforced (the fleet's bundled allocations
file), print per-owner GPU-hours, quota use, queueing, ETTR, energy and per-project
allocation use, and write the full report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from aifactory.arrowkit import use_system_pool
from aifactory.cli.common import check_out_dir, err, fail, out, print_json, user_errors
from aifactory.cli.simulate_cmd import (
    GraceOpt,
    MaxJobTestOpt,
    PowerOpt,
    QueueDepthOpt,
    power_switch,
    progress_bar,
    render_summary,
    write_outputs,
)
from aifactory.scheduler.config import MAX_GRACE_S, MAX_SCAN
from aifactory.scheduler.policies import PolicyName
from aifactory.twin.run import (
    NATIONAL_MAX_JOB_TEST,
    NATIONAL_QUEUE_DEPTH,
    national_spec,
    run_twin,
)


def run_cmd(
    fleet: Annotated[str, typer.Option("--fleet", help="Fleet to run.")] = "korea-2025",
    days: Annotated[float, typer.Option("--days", help="Simulated days of workload.")] = 14.0,
    load: Annotated[float, typer.Option("--load", help="Offered load on each quota.")] = 0.85,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the workload and the run.")] = 2025,
    policy: Annotated[PolicyName, typer.Option("--policy", help="Ordering policy.")] = (
        PolicyName.FIFO
    ),
    failures: Annotated[str, typer.Option("--failures", help="off | llama3 | FILE")] = "llama3",
    preempt_grace: GraceOpt = 0.0,
    power_cap: PowerOpt = "on",
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the results.")] = Path(
        "out/korea-2025"
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (progress on stderr).")
    ] = False,
    queue_depth: QueueDepthOpt = NATIONAL_QUEUE_DEPTH,
    max_job_test: MaxJobTestOpt = NATIONAL_MAX_JOB_TEST,
    allocations: Annotated[
        str,
        typer.Option(
            "--allocations",
            help="auto (the bundled allocations of the fleet, if any: korea-2025's five "
            "consortia) | none | a file or bundled name.",
        ),
    ] = "auto",
) -> None:
    """The main job: a national workload on the korea-2025 fleet, with failures."""
    from aifactory.fleet import load_fleet  # noqa: PLC0415 (keeps `--help` fast)
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    if days <= 0 or load <= 0:
        fail("--days and --load: must be > 0")
    for flag, limit in (("--queue-depth", queue_depth), ("--max-job-test", max_job_test)):
        if not 0 <= limit <= MAX_SCAN:
            fail(f"{flag}: must be from 0 (no limit) to {MAX_SCAN} (got {limit})")
    if not 0 <= preempt_grace <= MAX_GRACE_S:
        fail(f"--preempt-grace: must be from 0 to {MAX_GRACE_S:g} s (got {preempt_grace})")
    check_out_dir(out_dir)
    use_system_pool()  # a one-shot command (aifactory/arrowkit.py says why)
    t0 = time.perf_counter()
    say = err.print if as_json else out.print  # stdout is the JSON alone with --json
    grants: str | None = allocations
    if allocations == "auto":
        from aifactory.twin.allocfile import bundled_allocations  # noqa: PLC0415

        grants = fleet if fleet in bundled_allocations() else None
    elif allocations == "none":
        grants = None
    with user_errors():
        spec_fleet = load_fleet(fleet)
        say(f"[bold]aifactory[/]: {days:g} days of {fleet} at load {load:g}, seed {seed}")
        table = synthesize(spec_fleet, days, load, seed)
    say(f"synthesised {table.num_rows:,} jobs in {time.perf_counter() - t0:.1f} s")
    spec = national_spec(
        fleet,
        days,
        load,
        seed,
        policy=policy.value,
        failures=failures,
        preempt_grace_s=preempt_grace,
        power_cap=power_switch(power_cap),
        allocations=grants,
        queue_depth=queue_depth,
        max_job_test=max_job_test,
    )
    with user_errors(), progress_bar("twin") as update:
        run = run_twin(spec, table=table, fleet=spec_fleet, progress=update)
    if not as_json:
        render_summary(run.summary, spec_fleet)
        _what_lending_buys(run.summary)
        _what_caps_cost(run.summary)
    with user_errors():
        report = write_outputs(run, out_dir)
    if as_json:
        print_json(run.summary)
        return
    out.print(f"report: {report}  (total {time.perf_counter() - t0:.0f} s)")


def _what_lending_buys(summary: dict[str, Any]) -> None:
    """What owners' lending of idle GPUs bought the tenants that borrowed them (in the
    korea-2025 fleet: Samsung, SK and Hyundai lend to the consortia and the national pool)."""
    rows = [
        (t, v["gpu_hours_borrowed"], v["gpu_hours"], v["gpu_hours_borrowed_by_lender"])
        for t, v in summary["per_tenant"].items()
        if v.get("gpu_hours_borrowed")
    ]
    if not rows:
        return
    total = sum(r[1] for r in rows)
    out.print(f"[bold]what lending buys[/]: {total:,.0f} GPU-hours on lenders' idle hardware")
    for tenant, borrowed, hours, lenders in sorted(rows, key=lambda r: -r[1]):
        named = ", ".join(f"{owner} {h:,.0f}" for owner, h in lenders.items())
        out.print(
            f"  {tenant}: {borrowed:,.0f} "
            f"({borrowed / max(hours, 1e-9):.1%} of its GPU-hours: {named})"
        )


def _what_caps_cost(summary: dict[str, Any]) -> None:
    """What the sites' power caps cost the run (GPU-hours of jobs they held back)."""
    power = summary.get("power_cap") or {}
    if not power.get("on"):
        out.print("power caps: off (capacities only reported)")
        return
    capped = power.get("capped_sites") or []
    if not capped:
        out.print(
            "power caps: on; no site's peak draw (every GPU busy) exceeds its capacity, "
            "so the caps cost nothing here"
        )
        return
    out.print(
        f"power caps: on at {', '.join(capped)}; they held jobs back for "
        f"{power['gpu_hours_held']:,.0f} GPU-hours ({power['refused_starts']:,} starts refused)"
    )
