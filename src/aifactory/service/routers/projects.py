"""``/v1/projects``: create, list, show (balance, burn rate, forecast of exhaustion),
members, the recent charges and the monthly usage statement (issue #19).

Tenant-admins create projects of their tenant and manage their members; admins, of any
tenant. A member token sees only the projects that name it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool

from aifactory.service import alloc_store
from aifactory.service.alloc_schemas import (
    ChargeView,
    MembersChange,
    ProjectCreate,
    ProjectDetail,
    ProjectView,
    Statement,
)
from aifactory.service.alloc_views import (
    burn_and_forecast,
    month_bounds,
    outlook,
    recent,
    statement,
    views,
)
from aifactory.service.api import Caller
from aifactory.service.auth import Role
from aifactory.service.errors import AUTHENTICATED, FieldError, responses
from aifactory.service.routers import ServiceDep, rates, visible_project, visible_projects
from aifactory.service.schemas import INT64_MAX

router = APIRouter(prefix="/v1/projects", tags=["projects"])
MAX_CHARGES = 1000
ProjectId = Annotated[int, Path(ge=1, le=INT64_MAX, description="Project id.")]


@router.post(
    "",
    status_code=201,
    response_model=ProjectView,
    responses=responses(*AUTHENTICATED, 403, 413, 422),
)
def create_project(body: ProjectCreate, who: Caller, service: ServiceDep) -> ProjectView:
    """Create a project (tenant-admins: of their tenant or one below it; admins: any)."""
    if who.role is Role.MEMBER:
        raise HTTPException(403, "projects: members may not create projects")
    tenant = body.tenant or who.tenant
    if tenant is None:
        raise FieldError("tenant", "required: this admin token has no tenant")
    if not who.can_act_on(tenant, service.descendants):
        raise HTTPException(403, f"tenant: this token may not create projects of '{tenant}'")
    if tenant not in service.tenants:
        raise FieldError("tenant", f"unknown tenant '{tenant}'")
    if body.end_s <= body.start_s:
        raise FieldError("end_s", "must be after start_s")
    try:
        row = alloc_store.create_project(
            service.db,
            name=body.name,
            tenant=tenant,
            title=body.title,
            pi=body.pi,
            start_s=body.start_s,
            end_s=body.end_s,
            members=body.members,
            now=service.clock(),
            by=who.token_id,
        )
    except ValueError as exc:
        field, _, why = str(exc).partition(": ")
        raise FieldError(field, why) from None
    return ProjectView.model_validate(row)


@router.get("", response_model=list[ProjectView], responses=responses(*AUTHENTICATED, 422))
def list_projects(who: Caller, service: ServiceDep) -> list[ProjectView]:
    """Projects the caller may see (admins: all; tenant-admins: their tenant's and those
    of every tenant below it; members: those naming them)."""
    rows = visible_projects(service, who)
    return [ProjectView.model_validate(r) for r in rows]


@router.get(
    "/{project_id}", response_model=ProjectDetail, responses=responses(*AUTHENTICATED, 404, 422)
)
def show_project(project_id: ProjectId, who: Caller, service: ServiceDep) -> ProjectDetail:
    """A project with its allocations' balances, its burn rate and when it runs out."""
    now = service.clock()
    with service.db.read() as conn:
        row = visible_project(conn, who, project_id, service.descendants)
        allocs, _, charge_rows = views(conn, [project_id], rates(service), now)
    burn, out_at = burn_and_forecast(allocs, charge_rows, now)
    left, end, words = outlook(allocs, burn, out_at)
    return ProjectDetail.model_validate(
        row
        | {
            "allocations": allocs,
            "burn_gpu_hours_per_day": burn,
            "exhausted_at": out_at,
            "balance_gpu_hours": left,
            "period_end_s": end,
            "outlook": words,
        }
    )


@router.get(
    "/{project_id}/charges",
    response_model=list[ChargeView],
    responses=responses(*AUTHENTICATED, 404, 422),
)
def recent_charges(
    project_id: ProjectId,
    who: Caller,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_CHARGES, description="Most rows returned.")] = 50,
) -> list[ChargeView]:
    """The project's most recent charged run intervals, latest end first."""
    with service.db.read() as conn:
        visible_project(conn, who, project_id, service.descendants)
        return recent(conn, project_id, limit)


@router.post(
    "/{project_id}/members",
    response_model=ProjectView,
    responses=responses(*AUTHENTICATED, 403, 404, 413, 422),
)
def change_members(
    project_id: ProjectId, body: MembersChange, who: Caller, service: ServiceDep
) -> ProjectView:
    """Add or remove member tokens (tenant-admins of its tenant; admins)."""
    with service.db.read() as conn:
        row = visible_project(conn, who, project_id, service.descendants)
    if who.role is Role.MEMBER:
        raise HTTPException(403, "projects: members may not change members")
    try:
        alloc_store.set_members(service.db, project_id, body.add, body.remove)
    except ValueError as exc:
        field, _, why = str(exc).partition(": ")
        raise FieldError(field, why) from None
    with service.db.read() as conn:
        row = alloc_store.project_row(conn, project_id)
    return ProjectView.model_validate(row)


@router.get(
    "/{project_id}/statement",
    response_model=Statement,
    responses=responses(*AUTHENTICATED, 404, 422),
)
async def project_statement(
    project_id: ProjectId,
    who: Caller,
    service: ServiceDep,
    month: Annotated[
        str, Query(min_length=7, max_length=7, pattern=r"^[!-~]{7}$", description="YYYY-MM (UTC).")
    ],
) -> Statement:
    """GPU-hours by job, class and day in a month, the balances, and the jobs that waited."""
    try:
        month_bounds(month)
    except ValueError as exc:
        raise FieldError("query.month", str(exc)) from None

    def build() -> Statement:
        with service.db.read() as conn:
            row = visible_project(conn, who, project_id, service.descendants)
            return statement(conn, row, month, rates(service), service.clock())

    return await run_in_threadpool(build)
