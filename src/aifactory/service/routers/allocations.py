"""``/v1/allocations``: request, endorse, approve, reject, top up, extend, list, show, and
the platform report (issue #19).

Who may do what: a member of the project (or its tenant-admin) requests; the tenant-admin
of the project's tenant, or of a tenant above it, endorses, or declines (rejects) before
endorsement; a platform admin approves or rejects an endorsed request, tops up and extends.
Each move is made on the pure model, whose transition table refuses what it does not have
(a 409 here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from aifactory.allocations import Allocation, AllocState, IllegalTransitionError, Ledger
from aifactory.service import alloc_store
from aifactory.service.alloc_schemas import (
    AllocationRequest,
    AllocationView,
    Decision,
    Extension,
    ReportRow,
    TopUp,
)
from aifactory.service.alloc_views import report, views
from aifactory.service.api import Caller
from aifactory.service.auth import Principal, Role
from aifactory.service.errors import AUTHENTICATED, FieldError, responses
from aifactory.service.routers import ServiceDep, rates, visible_project, visible_projects
from aifactory.service.schemas import INT64_MAX

router = APIRouter(prefix="/v1/allocations", tags=["allocations"])
AllocId = Annotated[int, Path(ge=1, le=INT64_MAX, description="Allocation id.")]
Act = Callable[[Allocation, Ledger], Allocation]


def _who(who: Principal) -> str:
    return f"token:{who.token_id}"


@router.get(
    "/report", response_model=list[ReportRow], responses=responses(*AUTHENTICATED, 403, 422)
)
def platform_report(who: Caller, service: ServiceDep) -> list[ReportRow]:
    """Every granted allocation of the platform: granted vs used, idle grants (admins)."""
    if who.role is not Role.ADMIN:
        raise HTTPException(403, "report: admin only")
    with service.db.read() as conn:
        return report(conn, rates(service), service.clock())


@router.post(
    "",
    status_code=201,
    response_model=AllocationView,
    responses=responses(*AUTHENTICATED, 404, 413, 422),
)
def request_allocation(body: AllocationRequest, who: Caller, service: ServiceDep) -> AllocationView:
    """Ask for GPU-hours for a project the caller may see (state ``requested``)."""
    with service.db.read() as conn:
        project = visible_project(conn, who, body.project, service.descendants)
    if body.gpu_class is not None and body.gpu_class not in service.capacity:
        known = ", ".join(service.capacity)
        raise FieldError("gpu_class", f"unknown GPU class '{body.gpu_class}' (fleet has: {known})")
    start = project["start_s"] if body.start_s is None else body.start_s
    end = project["end_s"] if body.end_s is None else body.end_s
    if end <= start:
        raise FieldError("end_s", "must be after start_s")
    alloc_id = alloc_store.request_allocation(
        service.db,
        project_id=body.project,
        gpu_class=body.gpu_class,
        gpu_hours=body.gpu_hours,
        start_s=start,
        end_s=end,
        justification=body.justification,
        estimate_gpu_hours=body.estimate_gpu_hours,
        overdraft=body.overdraft,
        now=service.clock(),
        by=who.token_id,
    )
    return _view(service, who, alloc_id)


@router.get("", response_model=list[AllocationView], responses=responses(*AUTHENTICATED, 404, 422))
def list_allocations(
    who: Caller,
    service: ServiceDep,
    project: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="Only this project.")
    ] = None,
) -> list[AllocationView]:
    """Allocations of the projects the caller may see."""
    if project is not None:
        with service.db.read() as conn:
            visible_project(conn, who, project, service.descendants)
        ids = [project]
    else:
        rows = visible_projects(service, who)
        ids = [int(r["id"]) for r in rows]
    if not ids:
        return []
    with service.db.read() as conn:
        return views(conn, ids, rates(service), service.clock())[0]


def _view(service: ServiceDep, who: Principal, alloc_id: int) -> AllocationView:
    with service.db.read() as conn:
        found = alloc_store.allocation_rows(conn, alloc_id=alloc_id)
        if not found:
            raise HTTPException(404, f"allocation {alloc_id}: not found")
        pid = int(found[0][0]["project_id"])
        visible_project(conn, who, pid, service.descendants)
        for view in views(conn, [pid], rates(service), service.clock())[0]:
            if view.id == alloc_id:
                return view
    raise HTTPException(404, f"allocation {alloc_id}: not found")


@router.get(
    "/{alloc_id}", response_model=AllocationView, responses=responses(*AUTHENTICATED, 404, 422)
)
def show_allocation(alloc_id: AllocId, who: Caller, service: ServiceDep) -> AllocationView:
    """One allocation: state, balance, history."""
    return _view(service, who, alloc_id)


def _change(service: ServiceDep, who: Principal, alloc_id: int, act: Act) -> AllocationView:
    _view(service, who, alloc_id)  # 404 unless visible
    try:
        alloc_store.change_allocation(
            service.db, alloc_id, act, now=service.clock(), rates=rates(service)
        )
    except IllegalTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        field, _, why = str(exc).partition(": ")
        raise FieldError(field, why) from None
    if service.loop is not None:
        service.loop.wake()  # a job waiting on this allocation may start now
    return _view(service, who, alloc_id)


_DECIDED = responses(*AUTHENTICATED, 403, 404, 409, 413, 422)


def _move(
    service: ServiceDep, who: Principal, alloc_id: int, to: AllocState, note: str
) -> AllocationView:
    """A decision on a request: the allocation moves to ``to``, recorded with who and when."""
    return _change(
        service,
        who,
        alloc_id,
        lambda m, _l: m.move(to, who=_who(who), at=service.clock(), detail=note),
    )


@router.post("/{alloc_id}/endorse", response_model=AllocationView, responses=_DECIDED)
def endorse(alloc_id: AllocId, body: Decision, who: Caller, service: ServiceDep) -> AllocationView:
    """The project's tenant-admin vouches for a request (admins may too)."""
    _view(service, who, alloc_id)
    if who.role is Role.MEMBER:
        raise HTTPException(403, "endorse: tenant-admins of the project's tenant only")
    return _move(service, who, alloc_id, AllocState.ENDORSED, body.note)


@router.post("/{alloc_id}/approve", response_model=AllocationView, responses=_DECIDED)
def approve(alloc_id: AllocId, body: Decision, who: Caller, service: ServiceDep) -> AllocationView:
    """A platform admin grants an endorsed request."""
    _view(service, who, alloc_id)
    if who.role is not Role.ADMIN:
        raise HTTPException(403, "approve: platform admins only")
    return _move(service, who, alloc_id, AllocState.APPROVED, body.note)


@router.post("/{alloc_id}/reject", response_model=AllocationView, responses=_DECIDED)
def reject(alloc_id: AllocId, body: Decision, who: Caller, service: ServiceDep) -> AllocationView:
    """Refuse a request: its tenant-admin before endorsement, a platform admin after."""
    view = _view(service, who, alloc_id)
    if who.role is Role.MEMBER:
        raise HTTPException(403, "reject: tenant-admins and platform admins only")
    if who.role is Role.TENANT_ADMIN and view.state != AllocState.REQUESTED.value:
        raise HTTPException(403, "reject: once endorsed, only a platform admin may reject")
    return _move(service, who, alloc_id, AllocState.REJECTED, body.note)


@router.post("/{alloc_id}/topup", response_model=AllocationView, responses=_DECIDED)
def topup(alloc_id: AllocId, body: TopUp, who: Caller, service: ServiceDep) -> AllocationView:
    """More GPU-hours on a granted allocation (platform admins)."""
    _view(service, who, alloc_id)
    if who.role is not Role.ADMIN:
        raise HTTPException(403, "topup: platform admins only")
    return _change(
        service,
        who,
        alloc_id,
        lambda m, _l: m.topup(body.gpu_hours, who=_who(who), at=service.clock(), detail=body.note),
    )


@router.post("/{alloc_id}/extend", response_model=AllocationView, responses=_DECIDED)
def extend(alloc_id: AllocId, body: Extension, who: Caller, service: ServiceDep) -> AllocationView:
    """A later end for a granted allocation (platform admins)."""
    _view(service, who, alloc_id)
    if who.role is not Role.ADMIN:
        raise HTTPException(403, "extend: platform admins only")
    return _change(
        service,
        who,
        alloc_id,
        lambda m, _l: m.extend(body.end_s, who=_who(who), at=service.clock(), detail=body.note),
    )
