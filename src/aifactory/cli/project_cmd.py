"""`aifactory project ...`: projects on a running control plane, and their monthly usage
statements (issue #19). Configured like `aifactory job` (``AIFACTORY_URL``/``TOKEN``)."""

from __future__ import annotations

import csv
import io
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.common import fail, out, print_json
from aifactory.cli.job_cmd import Json, client

app = typer.Typer(
    help="Projects that apply for GPU-hours, and their statements.", no_args_is_help=True
)

Csv = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]


def epoch(day: str, option: str) -> float:
    """A ``YYYY-MM-DD`` date (UTC midnight) as epoch seconds; a clean error naming the option."""
    try:
        return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        fail(f"{option}: '{day}' is not a date YYYY-MM-DD")


def day(ts: float | None) -> str:
    """Epoch seconds as a UTC date."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _projects_table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "name", "tenant", "title", "pi", "from", "to", "members")
    for p in items:
        table.add_row(
            str(p["id"]),
            p["name"],
            p["tenant"],
            p["title"],
            p["pi"],
            day(p["start_s"]),
            day(p["end_s"]),
            ",".join(map(str, p["members"])),
        )
    return table


def allocations_table(items: list[dict[str, Any]]) -> Table:
    """Allocations with their balances."""
    table = Table("id", "project", "class", "state", "granted h", "used h", "balance h", "to")
    for a in items:
        table.add_row(
            str(a["id"]),
            str(a["project"]),
            a["gpu_class"] or "B200-eq",
            a["state"],
            f"{a['gpu_hours']:.2f}",
            f"{a['used_gpu_hours']:.2f}",
            f"{a['balance_gpu_hours']:.2f}",
            day(a["end_s"]),
        )
    return table


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique short name.")],
    *,
    start: Annotated[str, typer.Option("--start", help="First day, YYYY-MM-DD (UTC).")],
    end: Annotated[str, typer.Option("--end", help="Day after the last, YYYY-MM-DD (UTC).")],
    title: Annotated[str, typer.Option("--title")] = "",
    pi: Annotated[str, typer.Option("--pi", help="Principal investigator.")] = "",
    member: Annotated[
        list[int] | None, typer.Option("--member", help="Member token id (repeatable).")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant (admins).")] = None,
    as_json: Json = False,
) -> None:
    """Create a project (tenant-admins; admins naming --tenant)."""
    body = {
        "name": name,
        "tenant": tenant,
        "title": title,
        "pi": pi,
        "start_s": epoch(start, "--start"),
        "end_s": epoch(end, "--end"),
        "members": member or [],
    }
    with client() as api:
        got = api.request("POST", "/v1/projects", body=body)
    if as_json:
        print_json(got)
        return
    out.print(f"project {got['id']} ({got['name']}) created")


@app.command("list")
def list_cmd(*, as_json: Json = False) -> None:
    """Projects the token may see."""
    with client() as api:
        got = api.request("GET", "/v1/projects")
    if as_json:
        print_json(got)
        return
    out.print(_projects_table(got))


@app.command("show")
def show(
    project_id: Annotated[int, typer.Argument(help="Project id.", min=1)], *, as_json: Json = False
) -> None:
    """A project: its allocations' balances, burn rate and forecast of exhaustion."""
    with client() as api:
        got = api.request("GET", f"/v1/projects/{project_id}")
    if as_json:
        print_json(got)
        return
    out.print(_projects_table([got]))
    out.print(allocations_table(got["allocations"]))
    when, end = got["exhausted_at"], got.get("period_end_s")
    words = got.get("outlook", "runs out" if when is not None else "no usage")
    runs_out = {
        "runs out": time.strftime("%Y-%m-%d", time.gmtime(when or 0)),
        "not before period end": "not before period end"
        + (time.strftime(" (%Y-%m-%d)", time.gmtime(end)) if end is not None else ""),
        "no usage": "never at this rate",
    }.get(words, "no active allocation")
    out.print(
        f"burn: {got['burn_gpu_hours_per_day']:.2f} GPU-h/day (last 7 days); runs out: {runs_out}"
    )


@app.command("members")
def members(
    project_id: Annotated[int, typer.Argument(help="Project id.", min=1)],
    *,
    add: Annotated[list[int] | None, typer.Option("--add", help="Token id to add.")] = None,
    remove: Annotated[
        list[int] | None, typer.Option("--remove", help="Token id to remove.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Add or remove member tokens (tenant-admins, admins)."""
    with client() as api:
        got = api.request(
            "POST",
            f"/v1/projects/{project_id}/members",
            body={"add": add or [], "remove": remove or []},
        )
    if as_json:
        print_json(got)
        return
    out.print(_projects_table([got]))


@app.command("statement")
def statement(
    project_id: Annotated[int, typer.Argument(help="Project id.", min=1)],
    *,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM (UTC).")],
    as_json: Json = False,
    as_csv: Csv = False,
) -> None:
    """GPU-hours by job, class and day in a month; balances; jobs that waited."""
    with client() as api:
        got = api.request("GET", f"/v1/projects/{project_id}/statement", params={"month": month})
    if as_json:
        print_json(got)
        return
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["section", "key", "gpu_class", "gpu_hours"])
        for j in got["by_job"]:
            w.writerow(["job", j["job_id"], j["gpu_class"], repr(j["gpu_hours"])])
        for d in got["by_day"]:
            w.writerow(["day", d["day"], d["gpu_class"], repr(d["gpu_hours"])])
        for cls, hours in got["by_class"].items():
            w.writerow(["class", cls, cls, repr(hours)])
        for a in got["allocations"]:
            w.writerow(["balance", a["id"], a["gpu_class"] or "", repr(a["balance_gpu_hours"])])
        for x in got["waited"]:
            w.writerow(["waited", x["job_id"], "", ""])
        sys.stdout.write(buf.getvalue())
        return
    out.print(
        f"project {got['name']} ({got['tenant']}), {got['month']}: {got['gpu_hours']:.2f} GPU-h"
    )
    jobs = Table("job", "name", "class", "intervals", "GPU-h", title="by job")
    for j in got["by_job"]:
        jobs.add_row(
            str(j["job_id"]),
            j["name"],
            j["gpu_class"],
            str(j["intervals"]),
            f"{j['gpu_hours']:.3f}",
        )
    out.print(jobs)
    days = Table("day", "class", "GPU-h", title="by day")
    for d in got["by_day"]:
        days.add_row(d["day"], d["gpu_class"], f"{d['gpu_hours']:.3f}")
    out.print(days)
    out.print(allocations_table(got["allocations"]))
    if got["waited"]:
        waited = Table("job", "name", "since", "reason", title="waited on the allocation")
        for x in got["waited"]:
            waited.add_row(str(x["job_id"]), x["name"], day(x["since"]), x["reason"])
        out.print(waited)
