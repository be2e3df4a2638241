"""``/v1/queue``: every pending job the caller may see with why it waits and when it is
expected to start (issue #21 §1, the dashboard's queues page; like squeue's REASON and
``--start``), a page at a time. The reasons and the forecast come from the service's
outlook (:mod:`aifactory.service.outlook`): computed off the request path at most once
per state change and refresh interval, never once per call or per job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from aifactory.service.api import Caller
from aifactory.service.errors import AUTHENTICATED, FieldError, responses
from aifactory.service.routers import ServiceDep
from aifactory.service.schemas import INT64_MAX, NO_NUL
from aifactory.service.tables import jobs
from aifactory.workload.job import JobState

router = APIRouter(tags=["jobs"])

MAX_PAGE = 5_000  # the most rows one call returns
DEFAULT_PAGE = 1_000


class QueuedJob(BaseModel):
    """A pending job, its reason and its forecast."""

    id: int
    tenant: str
    name: str
    gpus: int
    gpu_class: str | None
    priority_class: str
    submitted_at: float
    time_limit_s: float
    reason: str | None = Field(description="Why it waits (null: the next pass starts it).")
    estimated_start: float | None = Field(
        description="From the twin run on a fork; null beyond the first jobs in queue order "
        "that the forecast simulates (as squeue --start's N/A)."
    )


class Queue(BaseModel):
    """One page of the pending jobs, oldest first, and when their forecast was made; pass
    ``next_cursor`` as ``cursor`` for the next page."""

    forecast_at: float
    total: int = Field(description="Pending jobs the caller may see (on every page).")
    items: list[QueuedJob]
    next_cursor: int | None = None


@router.get("/v1/queue", response_model=Queue, responses=responses(*AUTHENTICATED, 403, 422))
def queue(
    who: Caller,
    service: ServiceDep,
    tenant: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = DEFAULT_PAGE,
    cursor: Annotated[
        int | None, Query(ge=0, le=INT64_MAX, description="next_cursor of the last page.")
    ] = None,
) -> Queue:
    """Pending jobs (oldest first) with reason and expected start, a page at a time."""
    where = [jobs.c.state == JobState.PENDING.value]
    if tenant is not None:
        if tenant not in service.tenants:
            raise FieldError("query.tenant", f"unknown tenant '{tenant}'")
        if not who.can_act_on(tenant, service.descendants):
            raise HTTPException(403, f"tenant: this token may not see '{tenant}'")
        where.append(jobs.c.tenant == tenant)
    else:
        reach = who.reach(service.descendants)
        if reach is not None:
            where.append(jobs.c.tenant.in_(sorted(reach)))
    query = select(
        jobs.c.id,
        jobs.c.tenant,
        jobs.c.name,
        jobs.c.gpus,
        jobs.c.gpu_class,
        jobs.c.priority_class,
        jobs.c.submitted_at,
        jobs.c.time_limit_s,
        jobs.c.reason,
    ).where(*where)
    if cursor is not None:
        query = query.where(jobs.c.id > cursor)
    with service.db.read() as conn:
        total = int(conn.execute(select(func.count()).select_from(jobs).where(*where)).scalar_one())
        rows: list[Any] = list(conn.execute(query.order_by(jobs.c.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    outlook = service.outlook.get()
    forecasts, reasons = outlook.starts, outlook.reasons
    items = []
    for r in rows:
        key = str(r.id)
        got = forecasts.get(key)
        items.append(
            QueuedJob(
                id=r.id,
                tenant=r.tenant,
                name=r.name,
                gpus=r.gpus,
                gpu_class=r.gpu_class,
                priority_class=r.priority_class,
                submitted_at=r.submitted_at,
                time_limit_s=r.time_limit_s,
                reason=r.reason if r.reason is not None else reasons.get(key),
                estimated_start=None if got is None else got[0],
            )
        )
    return Queue(
        forecast_at=outlook.at,
        total=total,
        items=items,
        next_cursor=int(rows[-1].id) if more else None,
    )
