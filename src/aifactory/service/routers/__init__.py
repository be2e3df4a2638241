"""The API's routers for projects and allocations (issue #19), one module per resource;
:func:`aifactory.service.api.create_app` includes them. What they share is here: the
service the app runs, the fleet's B200-equivalent rates, and who may see a project."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Connection

from aifactory.allocations import b200_rates
from aifactory.service import alloc_store
from aifactory.service.alloc_store import NotFoundError, project_row
from aifactory.service.auth import Principal, Role

if TYPE_CHECKING:
    from aifactory.service.api import Service


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated["Service", Depends(_service)]


def rates(service: Service) -> dict[str, float]:
    """B200-equivalents per GPU of each class of the service's fleet."""
    topo = service.topo
    return b200_rates(
        {c: m.bf16_tflops for c, m in zip(topo.classes, topo.class_model, strict=True)}
    )


def visible_project(
    conn: Connection,
    who: Principal,
    project_id: int,
    descendants: Mapping[str, Collection[str]],
) -> dict[str, Any]:
    """The project if the caller may see it; 404 otherwise (its existence is not told).
    ``descendants``: the tenant tree (a tenant-admin sees its subtree's projects)."""
    try:
        row = project_row(conn, project_id)
    except NotFoundError:
        row = None
    if row is None or not who.can_see_project(row["tenant"], row["members"], descendants):
        raise HTTPException(404, f"project {project_id}: not found")
    return row


def visible_projects(service: Service, who: Principal) -> list[dict[str, Any]]:
    """Every project the caller may see: all (admins); those of its tenant and every
    tenant below it (tenant-admins); those naming it (members)."""
    if who.role is Role.ADMIN:
        return alloc_store.list_projects(service.db)
    if who.role is Role.TENANT_ADMIN:
        reach = who.reach(service.descendants)
        return alloc_store.list_projects(service.db, tenants=reach)
    return alloc_store.list_projects(service.db, tenants=[who.tenant or ""], member=who.token_id)
