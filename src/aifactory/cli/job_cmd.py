"""`aifactory job ...` and `aifactory quota`: the control plane's command-line client.

Configured by ``AIFACTORY_URL`` and ``AIFACTORY_TOKEN`` (or ``~/.config/aifactory/
client.toml``); every command prints a Rich table, or JSON with ``--json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import fail, out, print_json

if TYPE_CHECKING:
    from aifactory.service.client import ApiClient

app = typer.Typer(help="Submit and track jobs on a running control plane.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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


def _jobs_table(items: list[dict[str, Any]]) -> Table:
    table = Table(
        "id", "tenant", "name", "gpus", "class", "state", "reason", "submitted", "started"
    )
    for j in items:
        # (pending: why it waits; failed: why it failed; as squeue's REASON column)
        reason = j.get("reason") if j["state"] in {"pending", "failed"} else None
        table.add_row(
            str(j["id"]),
            j["tenant"],
            j["name"],
            str(j["gpus"]),
            _classes(j),
            j["state"],
            reason or "",
            _when(j["submitted_at"]),
            _when(j["started_at"]),
        )
    return table


def _classes(job: dict[str, Any]) -> str:
    """The class column: the one class, the acceptable ones, or any; and memory asked."""
    named = job["gpu_class"] or ",".join(job.get("gpu_classes") or []) or "any"
    hbm = job.get("hbm_gb_per_gpu")
    return named if hbm is None else f"{named} (>= {hbm:g} GB)"


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


@app.command("submit")
def submit(
    command: Annotated[str, typer.Argument(help="Shell command to run, quoted.")],
    *,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs (all at once).")] = 1,
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
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "job",
    time_limit: Annotated[
        float, typer.Option("--time-limit", help="Wall-clock limit, seconds.")
    ] = 3600.0,
    priority: Annotated[str, typer.Option("--priority", help="low, normal or high.")] = "normal",
    preemptible: Annotated[
        bool, typer.Option("--preemptible/--no-preemptible", help="May be preempted.")
    ] = True,
    checkpoint_interval: Annotated[
        float | None, typer.Option("--checkpoint-interval", help="Seconds between checkpoints.")
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
    as_json: Json = False,
) -> None:
    """Submit a job."""
    body: dict[str, Any] = {
        "name": name,
        "gpus": gpus,
        **_class_fields(gpu_class),
        "command": command,
        "time_limit_s": time_limit,
        "priority_class": priority,
        "preemptible": preemptible,
        "checkpoint_interval_s": checkpoint_interval,
        "tenant": tenant,
        "project": project,
    }
    if hbm_gb is not None:
        body["hbm_gb_per_gpu"] = hbm_gb
    with client() as api:
        job = api.submit(body, idempotency_key)
    if as_json:
        print_json(job)
        return
    out.print(f"job {job['id']} submitted ({job['state']})")


@app.command("list")
def list_cmd(
    *,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only this state (repeatable).")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only jobs with this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Page size.")] = 50,
    cursor: Annotated[int | None, typer.Option("--cursor", help="next_cursor of a page.")] = None,
    as_json: Json = False,
) -> None:
    """List jobs, newest first."""
    with client() as api:
        page = api.list_jobs(state=state, tenant=tenant, name=name, limit=limit, cursor=cursor)
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
    job_id: Annotated[int, typer.Argument(help="Job id.")], *, as_json: Json = False
) -> None:
    """Cancel a job."""
    with client() as api:
        job = api.cancel(job_id)
    if as_json:
        print_json(job)
        return
    pending = " (stopping)" if job.get("cancel_requested") and job["state"] == "running" else ""
    out.print(f"job {job['id']}: {job['state']}{pending}")


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
    table = Table(
        "tenant", "class", "nominal", "borrow limit", "lend limit", "used", "borrowed", "lent"
    )
    for r in rows:
        table.add_row(
            r["tenant"],
            r["gpu_class"],
            str(r["nominal"]),
            "-" if r["borrowing_limit"] is None else str(r["borrowing_limit"]),
            "-" if r["lending_limit"] is None else str(r["lending_limit"]),
            str(r["used"]),
            str(r["borrowed"]),
            str(r["lent"]),
        )
    out.print(table)
