"""The scheduler loop's allocation gate across a restart (issue #19): a running job of a
project keeps its reservation when a new leader takes it over, so a pending job that the
balance cannot cover beside it stays held (with its reason) instead of being admitted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.allocations import AllocState
from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import alloc_store, store
from aifactory.service.db import Database
from aifactory.service.loop import SchedulerLoop
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from test_service_support import DB_PARAMS, FakeExecutor, migrated_database

TOPO = compile_topology(load_fleet("demo"))
H = 3600.0


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


def project_with_grant(db: Database, hours: float, now: float) -> int:
    pid = int(
        alloc_store.create_project(
            db,
            name="p",
            tenant="lab",
            title="",
            pi="",
            start_s=now - 60,
            end_s=now + 86_400,
            members=[],
            now=now,
            by=1,
        )["id"]
    )
    alloc = alloc_store.request_allocation(
        db,
        project_id=pid,
        gpu_class="h100",
        gpu_hours=hours,
        start_s=now - 60,
        end_s=now + 86_400,
        justification="",
        estimate_gpu_hours=None,
        overdraft=False,
        now=now,
        by=1,
    )
    for to in (AllocState.ENDORSED, AllocState.APPROVED):
        alloc_store.change_allocation(
            db, alloc, lambda m, _l, to=to: m.move(to, who="t", at=now), now=now, rates={}
        )
    return pid


def submit(db: Database, project: int, limit_s: float) -> int:
    req = JobSubmit(gpus=1, gpu_class="h100", command="true", time_limit_s=limit_s, project=project)
    done = store.submit(db, req, tenant="lab", token_id=1, now=time.time(), idempotency_key=None)
    return int(done.job["id"])


def job(db: Database, job_id: int) -> sa.RowMapping:
    with db.read() as conn:
        return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()


def test_a_restart_keeps_running_jobs_reservations(db: Database, tmp_path: Path) -> None:
    url = db.url.render_as_string(hide_password=False)
    config = ServiceSettings(database_url=url, data_dir=tmp_path, tick_s=0.02)
    pid = project_with_grant(db, 1.5, time.time())
    running = submit(db, pid, H)
    executor = FakeExecutor()
    first = SchedulerLoop(db, TOPO, executor, config)
    first.load()
    assert job(db, running)["state"] == "running"
    waiting = submit(db, pid, H)  # 1 GPU-h more than the 0.5 left beside the running one
    first.cycle()
    assert job(db, waiting)["state"] == "pending"
    assert str(job(db, waiting)["reason"]).startswith("allocation")
    # a new leader takes over the running job: the waiting one must stay held
    second = SchedulerLoop(db, TOPO, executor, config)
    second.load()
    second.cycle()
    assert job(db, running)["state"] == "running"
    assert job(db, waiting)["state"] == "pending"
    assert str(job(db, waiting)["reason"]).startswith("allocation")
    # once the running job ends early and is charged, the balance covers the waiting one
    executor.end(str(running))
    time.sleep(0.05)
    second.cycle()
    second.cycle()
    assert job(db, running)["state"] == "completed"
    assert job(db, waiting)["state"] == "running"
    assert job(db, waiting)["reason"] is None
