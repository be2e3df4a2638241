"""`aifactory job ...` and `aifactory quota`: the control plane's command-line client.

Configured by ``AIFACTORY_URL`` and ``AIFACTORY_TOKEN`` (or ``~/.config/aifactory/
client.toml``); every command prints a Rich table, or JSON with ``--json``.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import fail, out, print_json
from aifactory.cli.slurm_fmt import (
    MAX_SCRIPT_BYTES,
    compress_nodes,
    format_duration,
    parse_time_limit,
    script_directives,
)

if TYPE_CHECKING:
    from typer._click.core import Context

    from aifactory.service.client import ApiClient

app = typer.Typer(help="Submit and track jobs on a running control plane.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# The API's bound (aifactory.service.schemas.MAX_JOB_GRACE_S), here so that the client
# starts without importing pydantic.
MAX_JOB_GRACE_S = 3600.0


@contextmanager
def client() -> Iterator[ApiClient]:
    """A configured client; service refusals become clean errors (exit 2, or 1 if unreachable)."""
    from aifactory.service.client import ApiClient, ClientError, load_config  # noqa: PLC0415

    try:
        api = ApiClient(load_config())
    except ClientError as exc:
        fail(str(exc))
    try:
        yield api
    except ClientError as exc:
        fail(str(exc), code=1 if exc.status is None or exc.status >= 500 else 2)
    finally:
        api.close()


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


# squeue's state codes, accepted by --state beside the names
STATE_CODES = {
    "PD": "pending",
    "R": "running",
    "PR": "preempted",
    "CD": "completed",
    "F": "failed",
    "CA": "cancelled",
}
STATES = tuple(STATE_CODES.values())


def parse_states(given: list[str] | None) -> list[str] | None:
    """``--state`` values (repeatable, comma lists, names or squeue codes) as state names."""
    if not given:
        return None
    names: list[str] = []
    for item in given:
        for part in item.split(","):
            word = part.strip()
            name = STATE_CODES.get(word.upper(), word.lower())
            if name not in STATES:
                known = ", ".join(f"{n} ({c})" for c, n in STATE_CODES.items())
                fail(f"--state: unknown state '{word}' (known: {known})")
            names.append(name)
    return sorted(set(names))


def elapsed_s(job: dict[str, Any], now: float) -> float | None:
    """squeue's TIME: how long the job has run (its last run, to its end if it ended)."""
    if job["started_at"] is None:
        return None
    end = job["ended_at"] if job["ended_at"] is not None else now
    return max(0.0, float(end) - float(job["started_at"]))


def nodes_or_reason(job: dict[str, Any]) -> str:
    """squeue's NODELIST(REASON): the compressed nodes of a running job, else why it waits
    (or why it failed)."""
    if job["placement"]:
        return compress_nodes(p["node"] for p in job["placement"])
    if job["state"] in {"pending", "failed"} and job.get("reason"):
        return f"({job['reason']})"
    return ""


def _classes(job: dict[str, Any]) -> str:
    """The CLASS column: the one class, the acceptable ones, or any; and memory asked."""
    named = job["gpu_class"] or ",".join(job.get("gpu_classes") or []) or "any"
    hbm = job.get("hbm_gb_per_gpu")
    return named if hbm is None else f"{named} (>= {hbm:g} GB)"


def _data_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The submit's data and site fields that were given (the API bounds them)."""
    out: dict[str, Any] = {}
    for key in ("site", "dataset", "data_site"):
        if values[key] is not None:
            out[key] = values[key]
    if values["dataset_tb"] is not None:
        out["dataset_bytes"] = float(values["dataset_tb"]) * 1e12
    if values["cross_site"]:
        out["allow_cross_site"] = True
    if values["stage_hold"]:
        out["stage_hold"] = True
    return out


def _class_fields(gpu_class: str | None) -> dict[str, Any]:
    """``--gpu-class a`` is one class; ``--gpu-class a,b`` the acceptable ones."""
    if gpu_class is None:
        return {"gpu_class": None}
    names = [n.strip() for n in gpu_class.split(",")]
    if any(not n for n in names):
        fail(f"--gpu-class: an empty class name in {gpu_class!r}")
    if len(names) == 1:
        return {"gpu_class": names[0]}
    return {"gpu_class": None, "gpu_classes": names}


def _jobs_table(items: list[dict[str, Any]]) -> Table:
    now = time.time()
    table = Table()
    for col in ("JOBID", "TENANT", "NAME", "STATE", "TIME", "TIME_LIMIT", "GPUS", "CLASS"):
        right = col in ("JOBID", "TIME", "TIME_LIMIT", "GPUS")  # numbers right-aligned
        table.add_column(col, justify="right" if right else "left")
    table.add_column("NODELIST(REASON)")
    for j in items:
        table.add_row(
            str(j["id"]),
            j["tenant"],
            j["name"],
            j["state"].upper(),
            format_duration(elapsed_s(j, now)),
            format_duration(j["time_limit_s"]),
            f"{j['gpus']:,}",
            _classes(j),
            nodes_or_reason(j),
        )
    return table


def _script_command(path: Path) -> tuple[str, list[str]]:
    """A batch script: the command that runs it (its text, under its #! interpreter) and
    the options of its #AIF lines."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"--script: cannot read {path} ({exc.strerror or exc})")
    if len(raw) > MAX_SCRIPT_BYTES:
        fail(f"--script: {path} is {len(raw):,} bytes, more than {MAX_SCRIPT_BYTES:,}")
    try:
        text = raw.decode("utf-8")
        options = script_directives(text)
    except (UnicodeDecodeError, ValueError) as exc:
        fail(f"--script: {path}: {exc}")
    first = text.split("\n", 1)[0]
    if first.startswith("#!") and first[2:].strip() not in ("/bin/sh", "/usr/bin/env sh"):
        return f"exec {first[2:].strip()} -c {shlex.quote(text)}", options
    return text, options


def _given(ctx: Context, key: str) -> bool:
    """Whether option ``key`` was typed (not its default)."""
    from typer._click.core import ParameterSource  # noqa: PLC0415

    return ctx.get_parameter_source(key) is ParameterSource.COMMANDLINE


def _merge_directives(ctx: typer.Context, options: list[str], values: dict[str, Any]) -> set[str]:
    """Fill ``values`` from a script's #AIF options where the command line said nothing
    (as sbatch: the command line wins over the script); the keys taken from the script.
    The options are parsed by this very command, so they mean what they mean here."""
    from typer._click.exceptions import ClickException  # noqa: PLC0415

    try:
        parsed = ctx.command.make_context(ctx.info_name, [*options], parent=ctx.parent)
    except ClickException as exc:
        fail(f"--script: #AIF {exc.format_message()}")
    # A word that is no option would be read as the command and then dropped (the
    # script is the command): refuse it, as sbatch refuses a directive it cannot read.
    for param in ctx.command.params:
        if param.param_type_name == "argument" and param.name and _given(parsed, param.name):
            word = parsed.params[param.name]
            fail(f"--script: #AIF lines take options only, not the word {str(word)!r}")
    taken = {k for k in values if not _given(ctx, k) and _given(parsed, k)}
    for key in taken:
        values[key] = parsed.params[key]
    return taken


@app.command("submit")
def submit(
    ctx: typer.Context,
    command: Annotated[
        str | None, typer.Argument(help="Shell command to run, quoted (or give --script).")
    ] = None,
    *,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script", help="Batch script to run; its #AIF lines are options, as #SBATCH."
        ),
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", "-G", min=1, help="GPUs (all at once).")] = 1,
    gpu_class: Annotated[
        str | None,
        typer.Option(
            "--gpu-class", help="GPU class, or acceptable classes separated by commas (a,b)."
        ),
    ] = None,
    hbm_gb: Annotated[
        float | None,
        typer.Option("--hbm-gb", help="GPU memory each GPU must have, GB (default: any)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", "-J", help="Display name.")] = "job",
    time_limit: Annotated[
        str,
        typer.Option(
            "--time-limit",
            "--time",
            "-t",
            help="Wall-clock limit as Slurm's: minutes, H:M:S or D-H:M:S.",
        ),
    ] = "60",
    priority: Annotated[str, typer.Option("--priority", help="low, normal or high.")] = "normal",
    preemptible: Annotated[
        bool, typer.Option("--preemptible/--no-preemptible", help="May be preempted.")
    ] = True,
    checkpoint_interval: Annotated[
        float | None, typer.Option("--checkpoint-interval", help="Seconds between checkpoints.")
    ] = None,
    service: Annotated[
        bool,
        typer.Option(
            "--service/--no-service",
            help="A long-running service: the time limit is its lifetime, nothing to save.",
        ),
    ] = False,
    preempt_grace: Annotated[
        float | None,
        typer.Option(
            "--preempt-grace",
            min=0,
            max=MAX_JOB_GRACE_S,
            help="Seconds it keeps its GPUs to save when preempted (default: the service's).",
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant (admins); default the token's.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Retry-safe key; default random.")
    ] = None,
    project: Annotated[
        int | None,
        typer.Option("--project", min=1, help="Project id to charge (needs --gpu-class)."),
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Run only at this site (default: any).")
    ] = None,
    cross_site: Annotated[
        bool,
        typer.Option("--cross-site/--one-site", help="The gang may span sites if that is sooner."),
    ] = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Name of the data the job reads.")
    ] = None,
    dataset_tb: Annotated[
        float | None, typer.Option("--dataset-tb", help="Its size, TB (1e12 bytes).")
    ] = None,
    data_site: Annotated[
        str | None, typer.Option("--data-site", help="The site that holds the data.")
    ] = None,
    stage_hold: Annotated[
        bool, typer.Option("--stage-hold", help="Hold the GPUs while the data is copied.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Submit a job: a command, or a batch script (like sbatch)."""
    values: dict[str, Any] = {
        "gpus": gpus,
        "gpu_class": gpu_class,
        "hbm_gb": hbm_gb,
        "name": name,
        "time_limit": time_limit,
        "priority": priority,
        "preemptible": preemptible,
        "checkpoint_interval": checkpoint_interval,
        "service": service,
        "preempt_grace": preempt_grace,
        "tenant": tenant,
        "project": project,
        "site": site,
        "cross_site": cross_site,
        "dataset": dataset,
        "dataset_tb": dataset_tb,
        "data_site": data_site,
        "stage_hold": stage_hold,
    }
    if (command is None) == (script is None):
        fail("give a command or --script FILE (one of them)")
    if script is not None:
        command, options = _script_command(script)
        taken = _merge_directives(ctx, options, values)
        if "name" not in taken and not _given(ctx, "name"):
            values["name"] = script.name[:128]  # as sbatch: the script's name
    try:
        limit_s = parse_time_limit(str(values["time_limit"]))
    except ValueError as exc:
        fail(f"--time-limit: {exc}")
    body: dict[str, Any] = {
        "name": values["name"],
        "gpus": values["gpus"],
        **_class_fields(values["gpu_class"]),
        "command": command,
        "time_limit_s": limit_s,
        "priority_class": values["priority"],
        "preemptible": values["preemptible"],
        "checkpoint_interval_s": values["checkpoint_interval"],
        "tenant": values["tenant"],
        "project": values["project"],
    }
    if values["hbm_gb"] is not None:
        body["hbm_gb_per_gpu"] = values["hbm_gb"]
    if values["service"]:
        body["service"] = True
    if values["preempt_grace"] is not None:
        body["preempt_grace_s"] = values["preempt_grace"]
    body.update(_data_fields(values))
    with client() as api:
        job = api.submit(body, idempotency_key)
    if as_json:
        print_json(job)
        return
    out.print(f"job {job['id']} submitted ({job['state']})")


MeOpt = Annotated[bool, typer.Option("--me", help="Only jobs this token submitted.")]
StateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--state", "-t", help="Only these states: names or squeue codes (PD,R,CD,F,CA), repeatable."
    ),
]
TenantOpt = Annotated[str | None, typer.Option("--tenant", "-A", help="Only this tenant.")]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="Only jobs with this name.")]


@app.command("list")
def list_cmd(
    *,
    state: StateOpt = None,
    tenant: TenantOpt = None,
    name: NameOpt = None,
    me: MeOpt = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Page size.")] = 50,
    cursor: Annotated[int | None, typer.Option("--cursor", help="next_cursor of a page.")] = None,
    as_json: Json = False,
) -> None:
    """List jobs, newest first, as squeue does (TIME, TIME_LIMIT, NODELIST(REASON))."""
    states = parse_states(state)
    with client() as api:
        page = api.list_jobs(
            state=states, tenant=tenant, name=name, mine=me or None, limit=limit, cursor=cursor
        )
    if as_json:
        print_json(page)
        return
    out.print(_jobs_table(page["items"]))
    if page["next_cursor"] is not None:
        out.print(f"more: --cursor {page['next_cursor']}")


@app.command("show")
def show(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    *,
    log_lines: Annotated[int, typer.Option("--log-lines", min=0, max=1000)] = 20,
    as_json: Json = False,
) -> None:
    """A job's state, placement, history and log tail."""
    with client() as api:
        job = api.show(job_id, log_lines)
    if as_json:
        print_json(job)
        return
    out.print(_jobs_table([job]))
    if job["placement"]:
        out.print(f"nodes: {compress_nodes(p['node'] for p in job['placement'])}", markup=False)
        where = ", ".join(f"{p['node']}:{','.join(map(str, p['gpus']))}" for p in job["placement"])
        out.print(f"placement: {where}", markup=False)
    if job["reason"]:
        out.print(f"reason: {job['reason']}", markup=False)
    history = Table("at", "state", "detail", title="history")
    for e in job["history"]:
        history.add_row(_when(e["at"]), e["state"], e["detail"])
    out.print(history)
    if job["log_tail"]:
        out.print("log tail:")
        out.print(job["log_tail"], markup=False, highlight=False)


@app.command("cancel")
def cancel(
    job_ids: Annotated[list[int] | None, typer.Argument(help="Job ids.")] = None,
    *,
    state: StateOpt = None,
    tenant: TenantOpt = None,
    name: NameOpt = None,
    me: MeOpt = False,
    as_json: Json = False,
) -> None:
    """Cancel jobs: by id, or every job the filters match (as scancel -n / -t / -u).

    With --json: the job for one id, else a list of the jobs cancelled."""
    states = parse_states(state)
    filtered = bool(states or tenant or name or me)
    if not job_ids and not filtered:
        fail("give job ids, or --name, --state, --tenant or --me to pick the jobs")
    if job_ids and filtered:
        fail("give job ids or filters, not both")
    done: list[dict[str, Any]] = []
    with client() as api:
        ids = list(job_ids or [])
        if filtered:
            live = [s for s in states or ["pending", "running"] if s in ("pending", "running")]
            ids = _matching(api, live, tenant, name, me)
        done.extend(api.cancel(job_id) for job_id in ids)
    if as_json:
        # one id: that job, as before several could be given; else the list of them
        print_json(done[0] if job_ids and len(job_ids) == 1 else done)
        return
    if not done:
        out.print("no job matched")
    for job in done:
        pending = " (stopping)" if job.get("cancel_requested") and job["state"] == "running" else ""
        out.print(f"job {job['id']}: {job['state']}{pending}")


def _matching(
    api: ApiClient, states: list[str], tenant: str | None, name: str | None, me: bool
) -> list[int]:
    """Ids of every job the filters match (every page), oldest first."""
    if not states:
        return []
    ids: list[int] = []
    cursor: int | None = None
    while True:
        page = api.list_jobs(
            state=states, tenant=tenant, name=name, mine=me or None, limit=1000, cursor=cursor
        )
        ids.extend(int(j["id"]) for j in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return sorted(ids)


@app.command("forecast")
def forecast(
    job_id: Annotated[int, typer.Argument(help="Job id.")], *, as_json: Json = False
) -> None:
    """Estimated start and end of a job (a twin forked off the live state)."""
    with client() as api:
        got = api.forecast(job_id)
    if as_json:
        print_json(got)
        return
    table = Table("job", "state", "estimated start", "estimated end", "note")
    table.add_row(
        str(got["job_id"]),
        got["state"],
        _when(got["estimated_start"]),
        _when(got["estimated_end"]),
        got["note"],
    )
    out.print(table)


def quota(*, as_json: Json = False) -> None:
    """Quotas and use per tenant and GPU class."""
    with client() as api:
        rows = api.quotas()
    if as_json:
        print_json(rows)
        return
    # A class several owners own has a row per owner's hardware (class@owner); the
    # borrowing limit caps the class's borrowing summed over lenders ("borrowed, all").
    table = Table("tenant", "class")
    for col in (
        "nominal",
        "borrow limit",
        "lend limit",
        "used",
        "borrowed",
        "borrowed, all",
        "lent",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        owner = r.get("hardware_owner")
        table.add_row(
            r["tenant"],
            r["gpu_class"] if owner is None else f"{r['gpu_class']}@{owner}",
            f"{r['nominal']:,}",
            "-" if r["borrowing_limit"] is None else f"{r['borrowing_limit']:,}",
            "-" if r["lending_limit"] is None else f"{r['lending_limit']:,}",
            f"{r['used']:,}",
            f"{r['borrowed']:,}",
            f"{r.get('borrowed_total', r['borrowed']):,}",
            f"{r['lent']:,}",
        )
    out.print(table)


def share(*, as_json: Json = False) -> None:
    """Fair share per tenant, as sshare: shares, decayed usage, fair-share factor."""
    with client() as api:
        rows: list[dict[str, Any]] = api.request("GET", "/v1/share")
    if as_json:
        print_json(rows)
        return
    table = Table("TENANT")
    for col in ("SHARES", "NORM_SHARES", "USAGE_GPU_H", "EFFECTV_USAGE", "FAIRSHARE", "GPUS_RUN"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["tenant"],
            f"{r['shares']:,}",
            f"{r['norm_shares']:.6f}",
            f"{r['usage_gpu_h']:,.1f}",
            f"{r['effective_usage']:.6f}",
            f"{r['fairshare']:.6f}",
            f"{r['running_gpus']:,}",
        )
    out.print(table)
