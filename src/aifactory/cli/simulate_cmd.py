"""`aifactory simulate` and `aifactory compare`: the twin from the command line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifactory.arrowkit import use_system_pool
from aifactory.cli import pause_collector, skip_teardown
from aifactory.cli.common import check_out_dir, err, fail, out, print_json, user_errors
from aifactory.fleet.spec import Fleet
from aifactory.scheduler.config import MAX_GRACE_S, MAX_SCAN, BackfillMode
from aifactory.scheduler.policies import PolicyName
from aifactory.twin.inputs import CheckpointPolicy
from aifactory.twin.run import TwinRun, TwinSpec, run_twin

if TYPE_CHECKING:
    from rich.table import Table

# Rich's progress bar and tables are imported where they are drawn, not with this module:
# `simulate --json` on a run shorter than a second draws neither, and the two imports were
# a measurable part of its start (issue #21 §4).

FleetOpt = Annotated[str, typer.Option("--fleet", help="Bundled fleet name or YAML path.")]
TraceOpt = Annotated[
    str, typer.Option("--trace", help="Trace file: Parquet (normalised) or any import format.")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="philly|itp|sacct|csv|parquet (default: inferred)."),
]
BackfillOpt = Annotated[
    BackfillMode, typer.Option("--backfill", help="EASY backfill or strict order.")
]
ScaleOpt = Annotated[
    float,
    typer.Option("--time-scale", help="Multiply inter-arrival times (0.25 = 4x the load)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of this run's random generator.")]
ErrorOpt = Annotated[
    float,
    typer.Option("--estimate-error", help="Spread of a log-normal factor applied to estimates."),
]
FailuresOpt = Annotated[
    str, typer.Option("--failures", help="off | llama3 | path to a failure-model YAML.")
]
CkptOpt = Annotated[
    CheckpointPolicy,
    typer.Option("--checkpoint", help="Checkpoint interval: from the trace, or Young / Daly."),
]
CkptWriteOpt = Annotated[
    float, typer.Option("--checkpoint-write", help="Seconds to write one checkpoint.")
]
RestartOpt = Annotated[
    float, typer.Option("--restart-overhead", help="Seconds a (re)start costs after eviction.")
]
GraceOpt = Annotated[
    float,
    typer.Option(
        "--preempt-grace",
        help="Seconds a preempted job keeps its GPUs to save (jobs whose trace says "
        "nothing); 0: it loses the work since its last checkpoint.",
    ),
]
PowerOpt = Annotated[
    str,
    typer.Option(
        "--power-cap",
        help="on: a start that would take a site's power over its capacity waits "
        "(reason power_cap); off: capacities are only reported.",
    ),
]
QueueDepthOpt = Annotated[
    int,
    typer.Option(
        "--queue-depth",
        help="Most jobs a scheduling pass between deep backfill scans (and a pass after "
        "arrivals) tries, as Slurm's default_queue_depth; 0: no limit.",
    ),
]
MaxJobTestOpt = Annotated[
    int,
    typer.Option(
        "--max-job-test",
        help="Most jobs (started or not) a deep backfill scan tries, as Slurm's "
        "bf_max_job_test; 0: no limit.",
    ),
]
UntilOpt = Annotated[
    float | None, typer.Option("--until", help="Stop at this simulated time (seconds).")
]
AllocOpt = Annotated[
    str | None,
    typer.Option(
        "--allocations",
        help="Allocations file (YAML: projects, grants, top-ups) or a bundled name: hold "
        "and charge the jobs of projects (issue #19).",
    ),
]


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[float], None]]:
    """A progress callback that shows a bar on stderr once the run passes one second."""
    started = time.perf_counter()
    state: dict[str, Any] = {}

    def update(fraction: float) -> None:
        if "bar" not in state:
            if time.perf_counter() - started < 1.0:
                return
            from rich.progress import (  # noqa: PLC0415 (only a run past a second shows it)
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}% of jobs arrived"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task(label, total=1.0)
        state["bar"].update(state["task"], completed=fraction)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()


def _spec(**kwargs: Any) -> TwinSpec:
    for name in ("time_scale",):
        if kwargs[name] <= 0:
            fail(f"--time-scale: must be > 0 (got {kwargs[name]})")
    if kwargs["estimate_error"] < 0:
        fail(f"--estimate-error: must be >= 0 (got {kwargs['estimate_error']})")
    if kwargs["checkpoint_write_s"] < 0:
        fail("--checkpoint-write: must be >= 0")
    if kwargs["restart_overhead_s"] < 0:
        fail("--restart-overhead: must be >= 0")
    grace = kwargs["preempt_grace_s"]
    if not 0 <= grace <= MAX_GRACE_S:
        fail(f"--preempt-grace: must be from 0 to {MAX_GRACE_S:g} s (got {grace})")
    for name, flag in (("queue_depth", "--queue-depth"), ("max_job_test", "--max-job-test")):
        limit = kwargs.get(name, 0)
        if not 0 <= limit <= MAX_SCAN:
            fail(f"{flag}: must be from 0 (no limit) to {MAX_SCAN} (got {limit})")
    if kwargs["policy"] not in {p.value for p in PolicyName}:
        known = ", ".join(p.value for p in PolicyName)
        fail(f"--policy: unknown '{kwargs['policy']}' (known: {known})")
    if not Path(kwargs["trace"]).exists():
        fail(f"--trace: file not found: {kwargs['trace']}")
    if kwargs.get("allocations") is not None:
        from aifactory.twin.allocfile import load_allocations  # noqa: PLC0415

        with user_errors():
            load_allocations(kwargs["allocations"])  # a bad file fails before the run
    return TwinSpec(**kwargs)


def _run(spec: TwinSpec) -> TwinRun:
    with user_errors(), progress_bar(f"{spec.policy}/{spec.backfill.value}") as update:
        try:
            return run_twin(spec, progress=update)
        except (ValueError, KeyError) as exc:
            fail(str(exc).strip("'\""))


def _table(*args: Any, **kwargs: Any) -> Table:
    """A Rich table (rich.table imported on first use)."""
    from rich.table import Table  # noqa: PLC0415

    return Table(*args, **kwargs)


def _fmt_s(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    v = float(value)
    if v >= 86400:
        return f"{v / 86400:.2f} d"
    if v >= 3600:
        return f"{v / 3600:.2f} h"
    return f"{v:,.0f} s"


def write_outputs(run: TwinRun, out_dir: Path) -> Path:
    """summary.json, jobs.parquet, timeseries.parquet, report.html and summary.png."""
    from aifactory.reports.report import write_report  # noqa: PLC0415 (only --out writes reports)
    from aifactory.reports.results import write_results  # noqa: PLC0415
    from aifactory.twin.simulator import no_gc  # noqa: PLC0415

    # The run's jobs are still alive: a collection now would walk them all for nothing
    # (0.1-0.2 s of gen-1/2 passes while the tables and charts were made). The Parquet
    # files are written on a thread while the report is drawn: Arrow encodes and
    # compresses without the GIL, the report is Python, so the two overlap.
    with no_gc(), ThreadPoolExecutor(1, thread_name_prefix="aif-results") as pool:
        jobs = run.jobs_table()
        series = run.timeseries_table()
        results = pool.submit(write_results, out_dir, run.summary, jobs, series)
        path = write_report(out_dir, run.summary, jobs, series)
        results.result()
    projects = run.projects_table()
    if projects is not None:  # (after write_results: it makes the folder)
        import pyarrow.parquet as pq  # noqa: PLC0415

        from aifactory.twin.allocreport import PROJECTS_FILE  # noqa: PLC0415

        pq.write_table(projects, out_dir / PROJECTS_FILE)
    return path


def render_projects(s: dict[str, Any]) -> None:
    """The per-project allocation table of a run with allocations (B200-equivalent hours)."""
    projects = s.get("projects")
    if not projects:
        return
    per = _table(title=f"Per project (allocations: {s['allocations']['name']}; B200-eq hours)")
    cols = (
        "project",
        "tenant",
        "granted",
        "used",
        "wasted",
        "left",
        "denied job-h",
        "held",
        "avg queue",
    )
    for col in cols:
        per.add_column(col, justify="left" if col in ("project", "tenant") else "right")
    for name, v in projects.items():
        per.add_row(
            name,
            v["tenant"],
            f"{v['granted_b200h']:,.0f}",
            f"{v['used_b200h']:,.0f}",
            f"{v['wasted_b200h']:,.0f}",
            f"{v['left_b200h']:,.0f}",
            f"{v['denied_job_hours']:,.1f}",
            f"{v['jobs_held']:,}",
            _fmt_s(v["avg_queue_s"]),
        )
    out.print(per)


def _service_cells(v: dict[str, Any]) -> tuple[str, str]:
    """A tenant's service availability and its services' downtime (minutes, restarts)."""
    avail = v.get("service_availability")
    if not v.get("services") or avail is None:
        return "-", "-"
    return (
        f"{avail:.2%}",
        f"{v.get('service_downtime_min', 0.0):,.0f}m/{v.get('service_restarts', 0):,}",
    )


def power_switch(value: str) -> bool:
    """``--power-cap on|off`` as a bool (one line of error otherwise)."""
    if value not in ("on", "off"):
        fail(f"--power-cap: must be on or off (got {value!r})")
    return value == "on"


def _borrowed(v: dict[str, Any]) -> str:
    """A tenant's GPU-hours on others' hardware, with its share of its GPU-hours."""
    borrowed = float(v.get("gpu_hours_borrowed") or 0.0)
    if borrowed <= 0.0:
        return "-"
    return f"{borrowed:,.0f} ({borrowed / max(float(v['gpu_hours']), 1e-9):.1%})"


def tenant_rows(
    per_tenant: dict[str, dict[str, Any]], fleet: Fleet | None
) -> list[tuple[str, dict[str, Any], bool]]:
    """The per-tenant table's rows as (label, values, is a subtotal): with the fleet, its
    tenant tree in tree order, a leaf indented under each parent above it and each parent
    a subtotal of its leaves' jobs, GPU-hours, borrowed GPU-hours and energy (jobs run
    in leaves); without it, the leaves as the summary lists them."""
    if fleet is None:
        return [(t, v, False) for t, v in per_tenant.items()]
    depth: dict[str, int] = {}
    below: dict[str, list[str]] = {}
    order: list[str] = []
    path: dict[str, list[str]] = {}
    for tenant, parent, _cohort in fleet.iter_tenants():
        up = path[parent.name] if parent is not None else []
        path[tenant.name] = [*up, tenant.name]
        depth[tenant.name] = len(up)
        order.append(tenant.name)
        if tenant.name in per_tenant:
            for a in up:
                below.setdefault(a, []).append(tenant.name)
    rows: list[tuple[str, dict[str, Any], bool]] = []
    for name in order:
        label = "  " * depth[name] + name
        if name in per_tenant:
            rows.append((label, per_tenant[name], False))
        elif name in below:
            leaves = [per_tenant[x] for x in below[name]]
            total = {
                k: sum(float(v.get(k) or 0.0) for v in leaves)
                for k in ("jobs", "gpu_hours", "gpu_hours_borrowed", "energy_mwh")
            }
            rows.append((label, total, True))
    rows.extend((t, v, False) for t, v in per_tenant.items() if t not in depth)
    return rows


def render_summary(s: dict[str, Any], fleet: Fleet | None = None) -> None:
    """The Rich summary of one run (with the fleet, tenants as its tree: leaves under
    their parents, see :func:`tenant_rows`)."""
    head = _table(title=f"{s['fleet']} / {s['trace']} / {s['policy']} (backfill {s['backfill']})")
    head.add_column("metric")
    head.add_column("value", justify="right")
    rows = [
        ("jobs", f"{s['jobs']:,}"),
        ("completed", f"{s['completed']:,}"),
        ("unfinished", f"{s['unfinished']:,}"),
        ("rejected", f"{s['rejected']:,}"),
        (
            "avg / p50 / p99 JCT",
            " / ".join(_fmt_s(s[k]) for k in ("avg_jct_s", "p50_jct_s", "p99_jct_s")),
        ),
        (
            "avg / p50 / p99 queue",
            " / ".join(_fmt_s(s[k]) for k in ("avg_queue_s", "p50_queue_s", "p99_queue_s")),
        ),
        ("makespan", _fmt_s(s["makespan_s"])),
        ("utilisation", f"{s['utilization']:.1%}"),
        ("preemptions", f"{s['preemptions']:,}"),
        ("failures", f"{s.get('failures', 0):,}"),
        ("energy", f"{s['energy']['total_mwh']:,.1f} MWh"),
        ("events", f"{s['events']:,}"),
        ("wall", f"{s['wall_s']:.2f} s ({s['events'] / max(s['wall_s'], 1e-9):,.0f} events/s)"),
    ]
    for k, v in rows:
        head.add_row(k, v)
    out.print(head)
    stab = s.get("stability")
    if stab:
        out.print(f"stability: {stab['verdict']}")
        for line in stab.get("sentences", []):
            out.print(f"  {line}")
    from rich import box  # noqa: PLC0415

    per = _table(
        title="Per tenant (ETTR: training only; services: availability, downtime)",
        box=box.SIMPLE_HEAD,  # borderless: eleven columns and a tenant tree fit 120 columns
        padding=(0, 1, 0, 0),
    )
    cols = ("tenant", "jobs", "GPU-hours", "borrowed", "of quota", "avg queue", "avg JCT", "ETTR")
    for col in (*cols, "svc avail", "down, restarts", "MWh"):
        # (never wrapped: a cut name, 'sovereign-…', would hide which tenant a row is)
        per.add_column(
            col,
            justify="left" if col == "tenant" else "right",
            no_wrap=col in {"tenant", "jobs", "GPU-hours", "borrowed", "MWh"},
        )
    for t, tv, subtotal in tenant_rows(s["per_tenant"], fleet):
        if subtotal:
            per.add_row(
                f"[bold]{t}[/]",
                f"{tv['jobs']:,.0f}",
                f"{tv['gpu_hours']:,.0f}",
                _borrowed(tv),
                *([""] * 6),
                f"{tv['energy_mwh']:,.1f}",
            )
            continue
        uq = tv.get("utilization_of_quota")
        ettr = tv.get("ettr")
        per.add_row(
            t,
            f"{tv['jobs']:,}",
            f"{tv['gpu_hours']:,.0f}",
            _borrowed(tv),
            "-" if uq is None else f"{uq:.0%}",
            _fmt_s(tv["avg_queue_s"]),
            _fmt_s(tv["avg_jct_s"]),
            "-" if ettr is None else f"{ettr:.1%}",
            *_service_cells(tv),
            f"{tv.get('energy_mwh', 0.0):,.1f}",
        )
    out.print(per)
    lent = s.get("gpu_hours_lent_by_owner") or {}
    if lent:
        out.print(
            "GPU-hours lent out (others' jobs on an owner's hardware): "
            + ", ".join(f"{owner} {hours:,.0f}" for owner, hours in lent.items())
        )
    inputs = s.get("inputs", {})
    if inputs.get("remapped_jobs") or inputs.get("jobs_without_tenant"):
        out.print(
            f"{inputs.get('remapped_jobs', 0):,} job(s) of tenants without quota and "
            f"{inputs.get('jobs_without_tenant', 0):,} without a tenant went to "
            f"'{inputs.get('default_tenant')}'."
        )
    for reason, count in s.get("rejected_reasons", {}).items():
        out.print(f"rejected ({reason}): {count:,}")
    render_projects(s)


def simulate(
    fleet: FleetOpt,
    trace: TraceOpt,
    fmt: FormatOpt = None,
    policy: Annotated[str, typer.Option("--policy", help="fifo|sjf|las|fair|priority")] = "fifo",
    backfill: BackfillOpt = BackfillMode.EASY,
    time_scale: ScaleOpt = 1.0,
    seed: SeedOpt = 0,
    estimate_error: ErrorOpt = 0.0,
    failures: FailuresOpt = "off",
    checkpoint: CkptOpt = CheckpointPolicy.TRACE,
    checkpoint_write: CkptWriteOpt = 0.0,
    restart_overhead: RestartOpt = 60.0,
    preempt_grace: GraceOpt = 0.0,
    power_cap: PowerOpt = "on",
    until: UntilOpt = None,
    allocations: AllocOpt = None,
    queue_depth: QueueDepthOpt = 0,
    max_job_test: MaxJobTestOpt = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write results here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a trace on a fleet under one policy; print the summary, write results."""
    if out_dir is not None:
        check_out_dir(out_dir)
    use_system_pool()  # a one-shot command (aifactory/arrowkit.py says why)
    pause_collector()  # the process ends with the command (cli.pause_collector says why)
    spec = _spec(
        fleet=fleet,
        trace=trace,
        fmt=fmt,
        policy=policy,
        backfill=backfill,
        time_scale=time_scale,
        seed=seed,
        estimate_error=estimate_error,
        failures=failures,
        checkpoint=checkpoint,
        checkpoint_write_s=checkpoint_write,
        restart_overhead_s=restart_overhead,
        preempt_grace_s=preempt_grace,
        power_cap=power_switch(power_cap),
        until_s=until,
        allocations=allocations,
        queue_depth=queue_depth,
        max_job_test=max_job_test,
    )
    run = _run(spec)
    if out_dir is not None:
        with user_errors():
            write_outputs(run, out_dir)
    if as_json:
        print_json(run.summary)
    else:
        render_summary(run.summary, run.result.scheduler.topo.fleet)
        if out_dir is not None:
            out.print(f"results in {out_dir}/ (summary.json, jobs.parquet, report.html)")
    skip_teardown()  # every file is written and closed, the writer thread joined


def compare(
    fleet: FleetOpt,
    trace: TraceOpt,
    policy: Annotated[
        str, typer.Option("--policy", help="Comma-separated policies, first is the baseline.")
    ] = "fifo,sjf,las,fair",
    fmt: FormatOpt = None,
    backfill: BackfillOpt = BackfillMode.EASY,
    time_scale: ScaleOpt = 1.0,
    seed: SeedOpt = 0,
    estimate_error: ErrorOpt = 0.0,
    failures: FailuresOpt = "off",
    preempt_grace: GraceOpt = 0.0,
    power_cap: PowerOpt = "on",
    allocations: AllocOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write compare.json/html here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Run several policies on the same input and compare them side by side (with
    ``--allocations``, every run holds and charges the projects' jobs alike, and the
    projects' use of their grants is compared too)."""
    if out_dir is not None:
        check_out_dir(out_dir)
    use_system_pool()
    from aifactory.reports.compare import (  # noqa: PLC0415
        COMPARE_METRICS,
        comparison_rows,
        format_ratio,
        format_value,
        write_compare,
    )
    from aifactory.twin.run import load_table  # noqa: PLC0415

    policies = [p.strip() for p in policy.split(",") if p.strip()]
    if not policies:
        fail("--policy: give at least one policy")
    specs = [
        _spec(
            fleet=fleet,
            trace=trace,
            fmt=fmt,
            policy=p,
            backfill=backfill,
            time_scale=time_scale,
            seed=seed,
            estimate_error=estimate_error,
            failures=failures,
            checkpoint=CheckpointPolicy.TRACE,
            checkpoint_write_s=0.0,
            restart_overhead_s=60.0,
            preempt_grace_s=preempt_grace,
            power_cap=power_switch(power_cap),
            until_s=None,
            allocations=allocations,
        )
        for p in policies
    ]
    with user_errors():
        table, _ = load_table(trace, fmt)
    summaries: list[dict[str, Any]] = []
    tables: dict[str, Any] = {}
    for spec in specs:
        with user_errors(), progress_bar(spec.policy) as update:
            run = run_twin(spec, table=table, progress=update)
        summaries.append(run.summary)
        tables[spec.policy] = run.jobs_table()
    rows = comparison_rows(summaries)
    if out_dir is not None:
        with user_errors():
            out_dir.mkdir(parents=True, exist_ok=True)
            write_compare(out_dir, summaries, tables)
    if as_json:
        print_json(rows)
        return
    table_out = _table(
        title=f"{fleet} / {Path(trace).name}: policies compared (ratio to {policies[0]})"
    )
    table_out.add_column("policy")
    for _key, title, _kind in COMPARE_METRICS:
        table_out.add_column(title, justify="right")
    for row in rows:
        cells = [str(row["policy"])]
        for key, _title, kind in COMPARE_METRICS:
            value = format_value(kind, row.get(key))
            cells.append(f"{value} ({format_ratio(row.get(key + '_ratio'))})")
        table_out.add_row(*cells)
    out.print(table_out)
    render_projects_compared(summaries)
    if out_dir is not None:
        out.print(f"wrote {out_dir}/compare.json and compare.html")


def render_projects_compared(summaries: list[dict[str, Any]]) -> None:
    """Per project, what each policy's run used of its grants and how long its jobs
    waited (runs with allocations only; B200-equivalent hours)."""
    if not summaries or not summaries[0].get("projects"):
        return
    first = summaries[0]
    per = _table(
        title=f"Per project (allocations: {first['allocations']['name']}): used B200-eq hours, "
        "jobs held, avg queue"
    )
    per.add_column("project")
    per.add_column("granted", justify="right")
    for s in summaries:
        per.add_column(str(s["policy"]), justify="right")
    for name, v in first["projects"].items():
        cells = [name, f"{v['granted_b200h']:,.0f}"]
        for s in summaries:
            p = s["projects"].get(name)
            cells.append(
                "-"
                if p is None
                else f"{p['used_b200h']:,.0f} / {p['jobs_held']:,} / {_fmt_s(p['avg_queue_s'])}"
            )
        per.add_row(*cells)
    out.print(per)
