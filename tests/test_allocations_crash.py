"""Issue #19: charges survive ``kill -9`` exactly. Jobs of a project run on the local
executor; the server is killed with SIGKILL midway and restarted. Afterwards there is one
charge per recorded run interval, and the sum of the charges' GPU-seconds equals the sum
of the GPU-seconds of the run intervals the job events record: nothing lost, nothing
doubled (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from aifactory.allocations import AllocState
from aifactory.service import alloc_store
from aifactory.service.alloc_store import gpu_seconds
from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from aifactory.service.tables import charges, job_events, jobs
from local_sandbox_support import reachable_dir, require_job_user
from test_service_crash import Server, free_port
from test_service_support import DB_PARAMS, database_url, wait_for

JOBS = 40
GPUS = 2
ENDS = ("completed", "failed", "cancelled", "preempted")


@pytest.fixture
def place() -> Iterator[Path]:
    """A data directory the local executor's job user can reach (as root: aifactory-job)."""
    require_job_user()
    with reachable_dir() as path:
        yield path


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, place: Path) -> Iterator[str]:
    yield from database_url(request.param, place)


def granted_project(db: Database, member: int, now: float) -> int:
    project = alloc_store.create_project(
        db,
        name="crash",
        tenant="lab",
        title="",
        pi="",
        start_s=now - 60,
        end_s=now + 86_400,
        members=[member],
        now=now,
        by=member,
    )
    pid = int(project["id"])
    alloc = alloc_store.request_allocation(
        db,
        project_id=pid,
        gpu_class="h100",
        gpu_hours=1000.0,
        start_s=now - 60,
        end_s=now + 86_400,
        justification="",
        estimate_gpu_hours=None,
        overdraft=False,
        now=now,
        by=member,
    )
    for to in (AllocState.ENDORSED, AllocState.APPROVED):
        alloc_store.change_allocation(
            db, alloc, lambda m, _l, to=to: m.move(to, who="test", at=now), now=now, rates={}
        )
    return pid


def recorded_intervals(events: list[sa.Row[tuple[int, float, str]]]) -> dict[int, list[float]]:
    """Per job, the lengths of the run intervals its events record."""
    started: dict[int, float] = {}
    out: dict[int, list[float]] = {}
    for job_id, at, state in events:
        if state == "running":
            started[job_id] = at
        elif state in ENDS and job_id in started:
            out.setdefault(job_id, []).append(at - started.pop(job_id))
    return out


def test_charges_survive_kill9_exactly(db_url: str, place: Path) -> None:
    db = Database(db_url)
    db.upgrade()
    now = time.time()
    member, token = create_token(db, tenant="lab", role=Role.MEMBER, now=now)
    pid = granted_project(db, member, now)
    server = Server(db_url, free_port(), place)
    server.start()
    accepted = threading.Semaphore(0)

    def client(n: int) -> None:
        http = httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        for i in range(JOBS // 4):
            key = f"c{n}-{i}"
            body = {
                "name": key,
                "gpus": GPUS,
                "gpu_class": "h100",
                "command": "sleep 0.5",
                "time_limit_s": 60.0,
                "project": pid,
            }
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    resp = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    time.sleep(0.1)
                    continue
                if resp.status_code in (200, 201):
                    accepted.release()
                    break
                time.sleep(0.1)
        http.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(JOBS // 2):
            assert accepted.acquire(timeout=60)

        def some_running() -> bool:
            with db.read() as conn:
                return bool(
                    conn.execute(sa.select(jobs.c.id).where(jobs.c.state == "running")).first()
                )

        wait_for(some_running, timeout=30)
        server.kill9()
        with db.read() as conn:
            running_at_kill = conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == "running")
            ).scalar_one()
        time.sleep(0.5)
        server.start()
        for t in threads:
            t.join(90)

        def settled() -> bool:
            with db.read() as conn:
                return not conn.execute(
                    sa.select(jobs.c.id).where(jobs.c.state.in_(["pending", "running"]))
                ).first()

        wait_for(settled, timeout=90, every=0.25)
    finally:
        server.stop()

    assert running_at_kill > 0  # the kill did cut run intervals short
    with db.read() as conn:
        rows = list(conn.execute(sa.select(charges)).mappings())
        events = list(
            conn.execute(
                sa.select(job_events.c.job_id, job_events.c.at, job_events.c.state).order_by(
                    job_events.c.id
                )
            )
        )
        n_jobs = conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
    assert n_jobs == JOBS
    intervals = recorded_intervals(events)
    assert sum(len(v) for v in intervals.values()) == len(rows)  # one charge per interval
    assert len({(r["job_id"], r["attempt"]) for r in rows}) == len(rows)
    for r in rows:
        assert r["gpus"] == GPUS
    charged = math.fsum(gpu_seconds(r) for r in rows)
    recorded = math.fsum(GPUS * s for v in intervals.values() for s in v)
    assert charged == recorded  # exactly: the same floats, nothing lost or doubled
    assert charged > 0
    db.dispose()
