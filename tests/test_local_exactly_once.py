"""Exactly-once launches on the local executor: the scheduler loop "crashes" at each step
between committing a start and recording its handle, a new leader with a new executor
instance (as after a restart of the service) takes over, and each job's command ran exactly
once: every run appends a line to the job's log, which the supervisor writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.executors.local import LocalExecutor
from aifactory.service.loop import InjectedCrashError, SchedulerLoop
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from local_sandbox_support import reachable_dir, require_job_user

TOPO = compile_topology(load_fleet("demo"))
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def place() -> Iterator[Path]:
    require_job_user()
    with reachable_dir() as path:
        yield path


@pytest.mark.parametrize("point", ["committed", "launching", "launched", "recorded"])
def test_a_crash_at_any_launch_step_runs_each_local_job_once(place: Path, point: str) -> None:
    database = Database(f"sqlite:///{place}/aifactory.db")
    database.upgrade()
    data = place / "data"
    settings = ServiceSettings(database_url=str(database.url), data_dir=data, tick_s=0.05)
    ids = []
    for _ in range(3):
        req = JobSubmit(gpus=1, gpu_class="h100", command='echo "ran $AIFACTORY_JOB_ID"')
        done = store.submit(
            database, req, tenant="lab", token_id=1, now=time.time(), idempotency_key=None
        )
        ids.append(int(done.job["id"]))

    def crash(at: str, job_id: str) -> None:
        if at == point and job_id == str(ids[1]):
            raise InjectedCrashError(at)

    protect = [place / "aifactory.db"]
    with pytest.raises(InjectedCrashError):
        SchedulerLoop(
            database, TOPO, LocalExecutor(data, protect=protect), settings, fault=crash
        ).load()
    second = SchedulerLoop(database, TOPO, LocalExecutor(data, protect=protect), settings)
    second.load()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        second._last_poll = 0.0
        second.cycle()
        with database.read() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(jobs))}
        if all(rows[j].state in TERMINAL for j in ids):
            break
        time.sleep(0.1)
    try:
        assert {rows[j].state for j in ids} == {"completed"}, {j: rows[j].reason for j in ids}
        for j in ids:
            log = Path(rows[j].log_path).read_text()
            assert log.count(f"ran {j}") == 1, (j, log)
    finally:
        database.dispose()
