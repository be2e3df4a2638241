"""What the API shows of allocations: balances now, a project's burn rate and forecast, the
monthly statement and the platform report (issue #19), each from one read transaction.

GPU-hours of a run interval are its GPUs times its recorded length (charged whole, time
lost to preemption and failures included); a statement clips each interval to the month
and to each UTC day, so the days of a month add up to the month.
"""

from __future__ import annotations

import calendar
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from aifactory.allocations import Allocation, Ledger
from aifactory.allocations.model import SECONDS_PER_HOUR
from aifactory.service.alloc_schemas import (
    AllocationView,
    ChangeView,
    ChargeView,
    DayUse,
    JobUse,
    ReportRow,
    Statement,
    Waited,
)
from aifactory.service.alloc_store import allocation_rows, gpu_seconds, ledger_for
from aifactory.service.tables import charges, job_events, jobs, projects

BURN_WINDOW_S = 7 * 86_400.0  # the burn rate is the mean over this long
DAY_S = 86_400.0


def allocation_view(
    row: Mapping[Any, Any], model: Allocation, ledger: Ledger, tenant: str, now: float
) -> AllocationView:
    """One allocation as the API shows it, its state settled at ``now``."""
    aid = model.id
    return AllocationView(
        id=int(row["id"]),
        project=int(row["project_id"]),
        tenant=tenant,
        gpu_class=model.gpu_class,
        unit=f"GPU-hours of {model.gpu_class}" if model.gpu_class else "B200-equivalent hours",
        state=ledger.state(aid, now).value,
        requested_gpu_hours=float(row["requested_gpu_hours"]),
        gpu_hours=model.gpu_hours,
        used_gpu_hours=ledger.used(aid) / SECONDS_PER_HOUR,
        overrun_gpu_hours=ledger.overrun(aid) / SECONDS_PER_HOUR,
        balance_gpu_hours=ledger.balance(aid) / SECONDS_PER_HOUR,
        overdraft=model.overdraft,
        start_s=model.start_s,
        end_s=model.end_s,
        justification=model.justification,
        estimate_gpu_hours=model.estimate_gpu_hours,
        history=[ChangeView(**c.model_dump(mode="json")) for c in model.history],
    )


def views(
    conn: Connection, project_ids: Sequence[int], rates: Mapping[str, float], now: float
) -> tuple[list[AllocationView], Ledger, list[Any]]:
    """Every allocation of these projects as shown, the ledger, and the charge rows."""
    ledger, charge_rows = ledger_for(conn, project_ids, rates)
    tenants = {
        int(r[0]): str(r[1])
        for r in conn.execute(
            select(projects.c.id, projects.c.tenant).where(projects.c.id.in_(project_ids))
        )
    }
    out = [
        allocation_view(row, model, ledger, tenants[int(row["project_id"])], now)
        for row, model in allocation_rows(conn, project_ids=project_ids)
    ]
    return out, ledger, charge_rows


def burn_and_forecast(
    allocs: Sequence[AllocationView], charge_rows: Sequence[Mapping[Any, Any]], now: float
) -> tuple[float, float | None]:
    """GPU-hours per day over the last week, and when the active balance runs out at it."""
    lo = now - BURN_WINDOW_S
    used_s = math.fsum(
        c["gpus"] * max(0.0, min(c["end_s"], now) - max(c["start_s"], lo)) for c in charge_rows
    )
    per_day = used_s / SECONDS_PER_HOUR / (BURN_WINDOW_S / DAY_S)
    left = math.fsum(max(0.0, a.balance_gpu_hours) for a in allocs if a.state == "active")
    if per_day <= 0 or left <= 0:
        return per_day, None
    return per_day, now + left / per_day * DAY_S


def outlook(
    allocs: Sequence[AllocationView], burn_per_day: float, exhausted_at: float | None
) -> tuple[float, float | None, str]:
    """The active balance, the latest end of the active allocations, and what the forecast
    says in words: ``runs out`` (before that end), ``not before period end``, ``no usage``
    (nothing burnt in the window) or ``no active balance``.

    The end matters because a balance outlives its period only on paper: an allocation
    expires at its end whatever is left, so a run-out date past it is no run-out at all.
    """
    active = [a for a in allocs if a.state == "active"]
    left = math.fsum(max(0.0, a.balance_gpu_hours) for a in active)
    end = max((a.end_s for a in active), default=None)
    if left <= 0 or end is None:
        return left, end, "no active balance"
    if burn_per_day <= 0 or exhausted_at is None:
        return left, end, "no usage"
    return left, end, "runs out" if exhausted_at < end else "not before period end"


def recent(conn: Connection, project_id: int, limit: int) -> list[ChargeView]:
    """A project's last ``limit`` charged run intervals, latest end first."""
    c = charges.c
    rows = conn.execute(
        select(c.job_id, jobs.c.name, c.attempt, c.gpu_class, c.gpus, c.start_s, c.end_s)
        .join(jobs, jobs.c.id == c.job_id)
        .where(c.project_id == project_id)
        .order_by(c.end_s.desc(), c.id.desc())
        .limit(limit)
    ).all()
    return [
        ChargeView(
            job_id=int(r.job_id),
            name=str(r.name),
            attempt=int(r.attempt),
            gpu_class=str(r.gpu_class),
            gpus=int(r.gpus),
            start_s=float(r.start_s),
            end_s=float(r.end_s),
            gpu_hours=gpu_seconds(r._mapping) / SECONDS_PER_HOUR,
        )
        for r in rows
    ]


def month_bounds(month: str) -> tuple[float, float]:
    """[start, end) of a ``YYYY-MM`` month in UTC epoch seconds; ValueError if malformed."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=UTC)
    except ValueError as exc:
        msg = "must be YYYY-MM"
        raise ValueError(msg) from exc
    days = calendar.monthrange(year, mon)[1]
    return start.timestamp(), start.timestamp() + days * DAY_S


def statement(
    conn: Connection,
    project: Mapping[str, Any],
    month: str,
    rates: Mapping[str, float],
    now: float,
) -> Statement:
    """A project's statement for ``month``: GPU-hours by job, class and day, balances, and
    the jobs that waited on the allocation."""
    lo, hi = month_bounds(month)
    pid = int(project["id"])
    allocs, _, charge_rows = views(conn, [pid], rates, now)
    by_job: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    by_class: dict[str, float] = defaultdict(float)
    by_day: dict[tuple[str, str], float] = defaultdict(float)
    for c in charge_rows:
        a, b = max(c["start_s"], lo), min(c["end_s"], hi)
        if b <= a:
            continue
        part = c["gpus"] * (b - a)  # == gpu_seconds(c) for an interval inside the month
        by_job[int(c["job_id"])][0] += 1
        by_job[int(c["job_id"])][1] += part
        by_class[c["gpu_class"]] += part
        day = math.floor(a / DAY_S) * DAY_S
        while day < b:
            seg = min(b, day + DAY_S) - max(a, day)
            if seg > 0:
                label = datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")
                by_day[(label, c["gpu_class"])] += c["gpus"] * seg
            day += DAY_S
    names: dict[int, str] = {}
    classes: dict[int, str] = {}
    for r in conn.execute(
        select(jobs.c.id, jobs.c.name, jobs.c.gpu_class).where(jobs.c.project_id == pid)
    ):
        names[int(r[0])], classes[int(r[0])] = str(r[1]), str(r[2] or "")
    waits = conn.execute(
        select(job_events.c.job_id, job_events.c.at, job_events.c.detail)
        .join(jobs, jobs.c.id == job_events.c.job_id)
        .where(
            jobs.c.project_id == pid,
            job_events.c.detail.like("waiting: allocation%"),
            job_events.c.at >= lo,
            job_events.c.at < hi,
        )
        .order_by(job_events.c.id)
    ).all()
    return Statement(
        project=pid,
        name=project["name"],
        tenant=project["tenant"],
        month=month,
        from_s=lo,
        to_s=hi,
        gpu_hours=math.fsum(by_class.values()) / SECONDS_PER_HOUR,
        by_job=[
            JobUse(
                job_id=j,
                name=str(names.get(j, "")),
                gpu_class=str(classes.get(j) or ""),
                intervals=int(n),
                gpu_hours=s / SECONDS_PER_HOUR,
            )
            for j, (n, s) in sorted(by_job.items())
        ],
        by_class={k: v / SECONDS_PER_HOUR for k, v in sorted(by_class.items())},
        by_day=[
            DayUse(day=d, gpu_class=k, gpu_hours=v / SECONDS_PER_HOUR)
            for (d, k), v in sorted(by_day.items())
        ],
        allocations=allocs,
        waited=[
            Waited(
                job_id=int(w.job_id),
                name=str(names.get(int(w.job_id), "")),
                since=float(w.at),
                reason=str(w.detail).removeprefix("waiting: "),
            )
            for w in waits
        ],
    )


def report(conn: Connection, rates: Mapping[str, float], now: float) -> list[ReportRow]:
    """Every allocation of the platform: granted vs used, and whether it lies idle."""
    names = {int(r[0]): str(r[1]) for r in conn.execute(select(projects.c.id, projects.c.name))}
    if not names:
        return []
    allocs, _, _ = views(conn, list(names), rates, now)
    out = []
    for a in allocs:
        if a.state in ("requested", "endorsed", "rejected"):
            continue
        out.append(
            ReportRow(
                tenant=a.tenant,
                project=str(names[a.project]),
                allocation=a.id,
                gpu_class=a.gpu_class,
                state=a.state,
                granted_gpu_hours=a.gpu_hours,
                used_gpu_hours=a.used_gpu_hours,
                used_fraction=a.used_gpu_hours / a.gpu_hours if a.gpu_hours > 0 else 0.0,
                idle=a.used_gpu_hours == 0 and now >= a.start_s,
            )
        )
    return sorted(out, key=lambda r: (r.tenant, r.project, r.allocation))
