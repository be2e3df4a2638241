"""Projects, allocations and charges as the service stores them (issue #19).

The rows are the truth; the decisions are :mod:`aifactory.allocations`' pure model: an
allocation row and its change rows become an :class:`Allocation`, a move or top-up is made
on that model (which refuses what its transition table does not allow), and the new state
and the new history entries are written back in one transaction. Balances are never
stored: a :class:`Ledger` replays the project's charges (one row per run interval, in the
order they ended), so a balance cannot drift from the charges it is made of.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from aifactory.allocations import Allocation, AllocState, Change, ChangeKind, Ledger
from aifactory.service.db import Database
from aifactory.service.tables import (
    allocation_changes,
    charges,
    project_allocations,
    project_members,
    projects,
    tokens,
)


class NotFoundError(KeyError):
    """No such project or allocation (or none the caller may see)."""


# -- projects ------------------------------------------------------------------------------


def create_project(
    db: Database,
    *,
    name: str,
    tenant: str,
    title: str,
    pi: str,
    start_s: float,
    end_s: float,
    members: Sequence[int],
    now: float,
    by: int,
) -> dict[str, Any]:
    """Insert a project and its members; ValueError naming the field if a member token is
    not of the project's tenant or the name is taken."""
    with db.write() as conn:
        if conn.execute(select(projects.c.id).where(projects.c.name == name)).first():
            msg = f"name: project '{name}' exists already"
            raise ValueError(msg)
        wanted = sorted(set(members))
        if wanted:
            found = {
                int(r.id)
                for r in conn.execute(
                    select(tokens.c.id).where(
                        tokens.c.id.in_(wanted),
                        tokens.c.tenant == tenant,
                        tokens.c.revoked_at.is_(None),
                    )
                )
            }
            missing = [m for m in wanted if m not in found]
            if missing:
                msg = f"members: token {missing[0]} is not a live token of tenant '{tenant}'"
                raise ValueError(msg)
        pid = conn.execute(
            insert(projects)
            .values(
                name=name,
                tenant=tenant,
                title=title,
                pi=pi,
                start_s=start_s,
                end_s=end_s,
                created_at=now,
                created_by=by,
            )
            .returning(projects.c.id)
        ).scalar_one()
        if wanted:
            conn.execute(
                insert(project_members), [{"project_id": pid, "token_id": m} for m in wanted]
            )
        return project_row(conn, int(pid))


def project_row(conn: Connection, project_id: int) -> dict[str, Any]:
    """A project with its member token ids; NotFoundError if there is none."""
    row = conn.execute(select(projects).where(projects.c.id == project_id)).mappings().first()
    if row is None:
        raise NotFoundError(project_id)
    members = [
        int(r[0])
        for r in conn.execute(
            select(project_members.c.token_id)
            .where(project_members.c.project_id == project_id)
            .order_by(project_members.c.token_id)
        )
    ]
    return dict(row) | {"members": members}


def list_projects(
    db: Database, *, tenants: Collection[str] | None = None, member: int | None = None
) -> list[dict[str, Any]]:
    """Projects, optionally of some tenants and/or with ``member`` among their tokens."""
    stmt = select(projects.c.id).order_by(projects.c.id)
    if tenants is not None:
        stmt = stmt.where(projects.c.tenant.in_(sorted(tenants)))
    if member is not None:
        stmt = stmt.where(
            projects.c.id.in_(
                select(project_members.c.project_id).where(project_members.c.token_id == member)
            )
        )
    with db.read() as conn:
        return [project_row(conn, int(r[0])) for r in conn.execute(stmt)]


def set_members(db: Database, project_id: int, add: Sequence[int], remove: Sequence[int]) -> None:
    """Add and remove member tokens (added ones must be live tokens of its tenant)."""
    with db.write() as conn:
        tenant = project_row(conn, project_id)["tenant"]
        for token_id in sorted(set(add)):
            ok = conn.execute(
                select(tokens.c.id).where(
                    tokens.c.id == token_id,
                    tokens.c.tenant == tenant,
                    tokens.c.revoked_at.is_(None),
                )
            ).first()
            if ok is None:
                msg = f"add: token {token_id} is not a live token of tenant '{tenant}'"
                raise ValueError(msg)
            conn.execute(
                delete(project_members).where(
                    project_members.c.project_id == project_id,
                    project_members.c.token_id == token_id,
                )
            )
            conn.execute(insert(project_members).values(project_id=project_id, token_id=token_id))
        for token_id in set(remove):
            conn.execute(
                delete(project_members).where(
                    project_members.c.project_id == project_id,
                    project_members.c.token_id == token_id,
                )
            )


def is_member(conn: Connection, project_id: int, token_id: int) -> bool:
    """Whether the token is one of the project's members."""
    return (
        conn.execute(
            select(project_members.c.token_id).where(
                project_members.c.project_id == project_id,
                project_members.c.token_id == token_id,
            )
        ).first()
        is not None
    )


# -- allocations ---------------------------------------------------------------------------


def _model(row: Mapping[Any, Any], changes: Iterable[Mapping[Any, Any]]) -> Allocation:
    history = tuple(
        Change(
            at=c["at"],
            who=c["who"],
            kind=ChangeKind(c["kind"]),
            from_state=AllocState(c["from_state"]),
            to_state=AllocState(c["to_state"]),
            detail=c["detail"],
            delta_gpu_hours=c["delta_gpu_hours"],
            end_s=c["end_s"],
        )
        for c in changes
    )
    return Allocation(
        id=str(row["id"]),
        project=str(row["project_id"]),
        gpu_class=row["gpu_class"],
        gpu_hours=row["gpu_hours"],
        start_s=row["start_s"],
        end_s=row["end_s"],
        state=AllocState(row["state"]),
        overdraft=bool(row["overdraft"]),
        justification=row["justification"],
        estimate_gpu_hours=row["estimate_gpu_hours"],
        history=history,
    )


def allocation_rows(
    conn: Connection, *, project_ids: Sequence[int] | None = None, alloc_id: int | None = None
) -> list[tuple[RowMapping, Allocation]]:
    """Allocation rows (of some projects, or one) with their models, by id."""
    stmt = select(project_allocations).order_by(project_allocations.c.id)
    if project_ids is not None:
        stmt = stmt.where(project_allocations.c.project_id.in_(list(project_ids)))
    if alloc_id is not None:
        stmt = stmt.where(project_allocations.c.id == alloc_id)
    rows = list(conn.execute(stmt).mappings())
    if not rows:
        return []
    by_alloc: dict[int, list[RowMapping]] = {}
    for c in conn.execute(
        select(allocation_changes)
        .where(allocation_changes.c.allocation_id.in_([int(r["id"]) for r in rows]))
        .order_by(allocation_changes.c.id)
    ).mappings():
        by_alloc.setdefault(int(c["allocation_id"]), []).append(c)
    return [(r, _model(r, by_alloc.get(int(r["id"]), []))) for r in rows]


def request_allocation(
    db: Database,
    *,
    project_id: int,
    gpu_class: str | None,
    gpu_hours: float,
    start_s: float,
    end_s: float,
    justification: str,
    estimate_gpu_hours: float | None,
    overdraft: bool,
    now: float,
    by: int,
) -> int:
    """A new request (state ``requested``); its id."""
    model = Allocation(
        id="new",
        project=str(project_id),
        gpu_class=gpu_class,
        gpu_hours=gpu_hours,
        start_s=start_s,
        end_s=end_s,
        overdraft=overdraft,
        justification=justification,
        estimate_gpu_hours=estimate_gpu_hours,
    )
    with db.write() as conn:
        alloc_id = conn.execute(
            insert(project_allocations)
            .values(
                project_id=project_id,
                gpu_class=model.gpu_class,
                gpu_hours=model.gpu_hours,
                requested_gpu_hours=model.gpu_hours,
                estimate_gpu_hours=model.estimate_gpu_hours,
                state=model.state.value,
                overdraft=model.overdraft,
                start_s=model.start_s,
                end_s=model.end_s,
                justification=model.justification,
                created_at=now,
                requested_by=by,
            )
            .returning(project_allocations.c.id)
        ).scalar_one()
        conn.execute(
            insert(allocation_changes).values(
                allocation_id=alloc_id,
                at=now,
                who=f"token:{by}",
                kind=ChangeKind.MOVE.value,
                from_state=AllocState.REQUESTED.value,
                to_state=AllocState.REQUESTED.value,
                detail="requested" + (f": {justification}" if justification else ""),
                delta_gpu_hours=0.0,
                end_s=None,
            )
        )
    return int(alloc_id)


def ledger_for(
    conn: Connection, project_ids: Sequence[int], rates: Mapping[str, float]
) -> tuple[Ledger, list[RowMapping]]:
    """The ledger of some projects (their allocations, every charge replayed in the order
    the run intervals ended) and the charge rows."""
    ledger = Ledger([m for _, m in allocation_rows(conn, project_ids=project_ids)], rates)
    return ledger, replay(conn, ledger, project_ids)


def replay(
    conn: Connection, ledger: Ledger, project_ids: Sequence[int], *, after_id: int = 0
) -> list[RowMapping]:
    """Charge ``ledger`` with the projects' charge rows of id above ``after_id``, in the
    order their run intervals ended; the rows."""
    rows = list(
        conn.execute(
            select(charges)
            .where(charges.c.project_id.in_(list(project_ids)), charges.c.id > after_id)
            .order_by(charges.c.end_s, charges.c.id)
        ).mappings()
    )
    for c in rows:
        ledger.charge(
            str(c["project_id"]),
            c["gpu_class"],
            gpu_seconds(c),
            c["start_s"],
            c["end_s"],
            key=f"{c['job_id']}:{c['attempt']}",
        )
    return rows


def grants_version(conn: Connection, project_ids: Sequence[int]) -> tuple[Any, ...]:
    """What a cached ledger of these projects depends on besides their charges: every
    allocation's id, state, amount, period and overdraft switch."""
    c = project_allocations.c
    return tuple(
        tuple(r)
        for r in conn.execute(
            select(c.id, c.state, c.gpu_hours, c.start_s, c.end_s, c.overdraft, c.gpu_class)
            .where(c.project_id.in_(list(project_ids)))
            .order_by(c.id)
        )
    )


def gpu_seconds(charge: Mapping[Any, Any]) -> float:
    """The GPU-seconds of one charge row: its GPUs times its recorded run interval."""
    return float(charge["gpus"] * (charge["end_s"] - charge["start_s"]))


def change_allocation(
    db: Database,
    alloc_id: int,
    act: Any,
    *,
    now: float,
    rates: Mapping[str, float],
) -> Allocation:
    """Apply ``act(model, ledger) -> model`` to one allocation and settle it at ``now``;
    write its new state, amount, end and history in the same transaction."""
    with db.write() as conn:
        found = allocation_rows(conn, alloc_id=alloc_id)
        if not found:
            raise NotFoundError(alloc_id)
        row, model = found[0]
        ledger, _ = ledger_for(conn, [int(row["project_id"])], rates)
        # First the moves the clock and the balance have made since the row was written
        # (exhausted, expired), so the change is recorded from the state it was made in.
        current = model.settle(now, ledger.balance(model.id)) if _granted(model) else model
        changed: Allocation = act(current, ledger)
        ledger.replace(changed)
        if _granted(changed):
            changed = changed.settle(now, ledger.balance(changed.id))
        _write_back(conn, int(row["id"]), model, changed)
        return changed


def _granted(model: Allocation) -> bool:
    return model.state in (
        AllocState.APPROVED,
        AllocState.ACTIVE,
        AllocState.EXHAUSTED,
        AllocState.EXPIRED,
    )


def _write_back(conn: Connection, alloc_id: int, old: Allocation, new: Allocation) -> None:
    if new == old:
        return
    conn.execute(
        update(project_allocations)
        .where(project_allocations.c.id == alloc_id)
        .values(state=new.state.value, gpu_hours=new.gpu_hours, end_s=new.end_s)
    )
    fresh = new.history[len(old.history) :]
    if fresh:
        conn.execute(
            insert(allocation_changes),
            [
                {
                    "allocation_id": alloc_id,
                    "at": c.at,
                    "who": c.who,
                    "kind": c.kind.value,
                    "from_state": c.from_state.value,
                    "to_state": c.to_state.value,
                    "detail": c.detail,
                    "delta_gpu_hours": c.delta_gpu_hours,
                    "end_s": c.end_s,
                }
                for c in fresh
            ],
        )
