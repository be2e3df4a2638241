"""Job rows: what the API reads and writes. The scheduler loop's writes live in ``loop.py``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from aifactory.fleet.hostlist import compress_nodes
from aifactory.fleet.topology import Topology
from aifactory.service.db import Database
from aifactory.service.schemas import JobEvent, JobSubmit, JobView, PlacementPart
from aifactory.service.tables import allocations, cancel_requests, job_events, jobs
from aifactory.workload.job import TERMINAL, JobState

LOG_TAIL_BYTES = 8192


class IdempotencyConflictError(ValueError):
    """An Idempotency-Key reused with a different request body."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """Outcome of a submit: the job row, and whether this call created it."""

    job: Mapping[Any, Any]  # a RowMapping, or the dict of the values just inserted
    created: bool


def request_hash(req: JobSubmit, tenant: str) -> str:
    """Fingerprint of a request, to tell a retry from a reused key."""
    body = req.model_dump(mode="json") | {"tenant": tenant}
    # Fields added after keys were first hashed count only when given, so a retry sent
    # before they existed still matches its job (revisions 0004, 0006, 0007).
    for late, unset in (
        ("gpu_classes", None),
        ("hbm_gb_per_gpu", None),
        ("preempt_grace_s", None),
        ("service", False),
        *((name, None) for name in DATA_ASK_NULLS),
    ):
        if body[late] is unset:
            del body[late]
    for late, default in DATA_ASK_FLAGS.items():  # (revision 0007: absent when default)
        if body[late] is default:
            del body[late]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def job_values(
    req: JobSubmit, *, tenant: str, token_id: int, now: float, idempotency_key: str | None
) -> dict[str, Any]:
    """The ``jobs`` row a submit inserts (every column the API shows is set here)."""
    return {
        "tenant": tenant,
        "name": req.name,
        "gpus": req.gpus,
        "gpu_class": req.gpu_class,
        "command": req.command,
        "time_limit_s": req.time_limit_s,
        "priority_class": req.priority_class.value,
        "preemptible": req.preemptible,
        "checkpoint_interval_s": req.checkpoint_interval_s,
        "state": JobState.PENDING.value,
        "submitted_at": now,
        "attempts": 0,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash(req, tenant),
        "token_id": token_id,
        "project_id": req.project,
        "gpu_classes": req.gpu_classes,
        "hbm_gb_per_gpu": req.hbm_gb_per_gpu,
        "service": req.service,
        "preempt_grace_s": req.preempt_grace_s,
        "data_ask": data_ask(req),
    }


# The data and site fields of a submit (issue #20 §1), stored together as ``data_ask``:
# those that may be null, and the flags with their defaults.
DATA_ASK_NULLS = ("site", "dataset", "dataset_bytes", "data_site", "grad_bytes", "step_s")
DATA_ASK_FLAGS = {"allow_cross_site": False, "stage_hold": False}


def data_ask(req: JobSubmit) -> dict[str, Any] | None:
    """The fields of ``data_ask`` the request gives (not null, not default); None if none."""
    out: dict[str, Any] = {}
    for name in DATA_ASK_NULLS:
        value = getattr(req, name)
        if value is not None:
            out[name] = value
    for name, default in DATA_ASK_FLAGS.items():
        if getattr(req, name) is not default:
            out[name] = getattr(req, name)
    return out or None


def submit(
    db: Database,
    req: JobSubmit,
    *,
    tenant: str,
    token_id: int,
    now: float,
    idempotency_key: str | None,
) -> Submitted:
    """Insert a pending job and its first event in one transaction (idempotent per key).

    One job, one transaction: the API batches submits through :mod:`.batcher` instead, and
    falls back to this when a batch fails, so one bad request cannot fail the others.
    """
    values = job_values(
        req, tenant=tenant, token_id=token_id, now=now, idempotency_key=idempotency_key
    )
    digest = values["request_hash"]
    if idempotency_key is not None:
        existing = _by_key(db, tenant, idempotency_key)
        if existing is not None:
            return replay(existing, digest)
    try:
        with db.write() as conn:
            # RETURNING the whole row: two statements under the write lock, not three.
            row = conn.execute(insert(jobs).values(**values).returning(*jobs.c)).mappings().one()
            conn.execute(
                insert(job_events).values(
                    job_id=row["id"], at=now, state=JobState.PENDING.value, detail="submitted"
                )
            )
    except IntegrityError:
        # A concurrent retry with the same key won the race: return its job.
        if idempotency_key is None:
            raise
        existing = _by_key(db, tenant, idempotency_key)
        if existing is None:
            raise
        return replay(existing, digest)
    return Submitted(row, created=True)


def _by_key(db: Database, tenant: str, key: str) -> RowMapping | None:
    with db.read() as conn:
        return (
            conn.execute(select(jobs).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key))
            .mappings()
            .one_or_none()
        )


def replay(existing: Mapping[Any, Any], digest: str) -> Submitted:
    """A retry's answer: the job its key made, or a conflict if the body differs."""
    if existing["request_hash"] != digest:
        msg = "Idempotency-Key: already used for a different request"
        raise IdempotencyConflictError(msg)
    return Submitted(existing, created=False)


def get_job(conn: Connection, job_id: int) -> RowMapping | None:
    """One job row."""
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one_or_none()


def history(conn: Connection, job_id: int) -> list[JobEvent]:
    """A job's state changes, oldest first."""
    rows = conn.execute(
        select(job_events.c.at, job_events.c.state, job_events.c.detail)
        .where(job_events.c.job_id == job_id)
        .order_by(job_events.c.id)
    )
    return [JobEvent(at=r.at, state=r.state, detail=r.detail) for r in rows]


def cancel_pending(conn: Connection, job_id: int) -> bool:
    """Whether ``job_id`` is flagged for cancellation by the scheduler loop."""
    return (
        conn.execute(
            select(cancel_requests.c.job_id).where(cancel_requests.c.job_id == job_id)
        ).first()
        is not None
    )


def list_jobs(
    db: Database,
    *,
    tenants: Sequence[str] | None,
    states: Sequence[str] | None,
    name: str | None,
    limit: int,
    cursor: int | None,
    token_id: int | None = None,
) -> tuple[list[RowMapping], int | None]:
    """A page of jobs, newest first (only those ``token_id`` submitted, if given); the next
    cursor is None on the last page."""
    stmt = select(jobs).order_by(jobs.c.id.desc()).limit(limit + 1)
    if token_id is not None:
        stmt = stmt.where(jobs.c.token_id == token_id)
    if tenants is not None:
        stmt = stmt.where(jobs.c.tenant.in_(tenants))
    if states:
        stmt = stmt.where(jobs.c.state.in_(states))
    if name:
        stmt = stmt.where(jobs.c.name == name)
    if cursor is not None:
        stmt = stmt.where(jobs.c.id < cursor)
    with db.read() as conn:
        rows = list(conn.execute(stmt).mappings())
    if len(rows) > limit:
        return rows[:limit], int(rows[limit - 1]["id"])
    return rows, None


def request_cancel(db: Database, job_id: int, now: float) -> str:
    """Cancel a job: pending ones at once, running ones by flagging the scheduler loop.

    Returns the state the job was found in. A pending job is cancelled with a conditional
    UPDATE, so a concurrent start by the scheduler either wins (the job is then running and
    flagged) or loses (its own conditional UPDATE finds the job no longer pending).
    """
    with db.write() as conn:
        row = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            msg = f"job {job_id}: not found"
            raise KeyError(msg)
        state = JobState(row.state)
        if state in TERMINAL:
            return state.value
        if state is JobState.PENDING:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == JobState.PENDING.value)
                .values(state=JobState.CANCELLED.value, ended_at=now, reason="cancelled")
            )
            conn.execute(
                insert(job_events).values(
                    job_id=job_id, at=now, state=JobState.CANCELLED.value, detail="cancelled"
                )
            )
        if not cancel_pending(conn, job_id):
            conn.execute(insert(cancel_requests).values(job_id=job_id, requested_at=now))
        return state.value


def to_view(row: Mapping[Any, Any], *, cancel_requested: bool = False) -> JobView:
    """API view of a job row."""
    placement = [PlacementPart(node=p[0], gpus=list(p[1])) for p in (row["placement"] or [])]
    return JobView(
        id=int(row["id"]),
        tenant=row["tenant"],
        name=row["name"],
        gpus=row["gpus"],
        gpu_class=row["gpu_class"],
        command=row["command"],
        time_limit_s=row["time_limit_s"],
        priority_class=row["priority_class"],
        preemptible=bool(row["preemptible"]),
        checkpoint_interval_s=row["checkpoint_interval_s"],
        state=row["state"],
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        exit_code=row["exit_code"],
        reason=row["reason"],
        placement=placement,
        attempts=row["attempts"],
        project=row.get("project_id"),
        cancel_requested=cancel_requested,
        gpu_classes=row.get("gpu_classes"),
        hbm_gb_per_gpu=row.get("hbm_gb_per_gpu"),
        service=bool(row.get("service") or False),
        preempt_grace_s=row.get("preempt_grace_s"),
        data_ask=row.get("data_ask"),
        nodelist=compress_nodes(p.node for p in placement),
    )


def log_tail(path: str | None, max_lines: int, *, root: Path | None = None) -> str | None:
    """The last ``max_lines`` lines of a job's log (None if there is no log, or no safe one).

    A log is read only as a regular file beneath ``root`` (the service's logs directory;
    the log's own directory when not given), opened one component at a time with
    ``O_NOFOLLOW``: a log replaced by a symlink (or a FIFO, or a path outside the root) is
    never followed, so the API cannot be made to serve another file.
    """
    if not path or max_lines <= 0:
        return None
    import os  # noqa: PLC0415 (only this function opens files by hand)
    import stat  # noqa: PLC0415

    target = Path(os.path.abspath(path))  # noqa: PTH100 (lexical: a link must not resolve)
    base = Path(os.path.abspath(root)) if root is not None else target.parent  # noqa: PTH100
    try:
        parts = target.relative_to(base).parts
    except ValueError:
        return None
    if not parts or ".." in parts:
        return None
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        inner = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=fd)  # a FIFO never blocks
        os.close(fd)
        fd = inner
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # the file object owns it now
            size = fh.seek(0, 2)
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            data = fh.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-max_lines:])


def pending_by_tenant(db: Database) -> dict[str, tuple[int, int]]:
    """Pending jobs and GPUs per tenant."""
    with db.read() as conn:
        rows = conn.execute(
            select(jobs.c.tenant, func.count(), func.coalesce(func.sum(jobs.c.gpus), 0))
            .where(jobs.c.state == JobState.PENDING.value)
            .group_by(jobs.c.tenant)
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def busy_gpus(db: Database) -> int:
    """GPUs given to running jobs (rows of the allocation table)."""
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(allocations)).scalar_one())


def running_by_tenant(db: Database) -> dict[str, tuple[int, int]]:
    """Running jobs and GPUs per tenant."""
    with db.read() as conn:
        rows = conn.execute(
            select(jobs.c.tenant, func.count(), func.coalesce(func.sum(jobs.c.gpus), 0))
            .where(jobs.c.state == JobState.RUNNING.value)
            .group_by(jobs.c.tenant)
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def busy_by_class(db: Database, topo: Topology) -> dict[str, int]:
    """GPUs in use per fleet class, from the allocation rows (one per GPU in use).

    Counted where the GPUs are, not by the class a job asked for: a job that accepts any
    class, or several (issue #17 §3), runs in one the request does not name. A replica
    that does not lead has only the database; a node's name ends in ``/n<index>``
    (``Scheduler.placement_from``) and the topology knows that node's class. A row naming
    no node of this fleet (written under another fleet spec) is not counted.
    """
    with db.read() as conn:
        rows = list(
            conn.execute(select(allocations.c.node, func.count()).group_by(allocations.c.node))
        )
    busy: dict[str, int] = {}
    for node, count in rows:
        _, _, index = str(node).rpartition("/n")
        if not index.isdigit() or int(index) >= topo.n_nodes:
            continue
        cls = topo.classes[int(topo.domain_class[int(topo.node_domain[int(index)])])]
        busy[cls] = busy.get(cls, 0) + int(count)
    return busy
