"""The scheduler loop: restart reconciliation, leader exclusivity, two replicas on one database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import loop as loop_module
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.executors.base import RunState, Status
from aifactory.service.lease import FileLock, PgAdvisoryLock, leader_lock
from aifactory.service.loop import SchedulerLoop
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import LostPolicy, ServiceSettings
from aifactory.service.tables import allocations, jobs
from test_service_support import DB_PARAMS, FakeExecutor, migrated_database, wait_for

TOPO = compile_topology(load_fleet("demo"))


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


def submit(db: Database, gpus: int, gpu_class: str | None = "h100", tenant: str = "lab") -> int:
    req = JobSubmit(gpus=gpus, gpu_class=gpu_class, command="true")
    done = store.submit(db, req, tenant=tenant, token_id=1, now=time.time(), idempotency_key=None)
    return int(done.job["id"])


def state(db: Database, job_id: int) -> str:
    with db.read() as conn:
        return str(conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one())


def row(db: Database, job_id: int) -> sa.RowMapping:
    with db.read() as conn:
        return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()


def allocated(db: Database) -> dict[tuple[str, int], int]:
    with db.read() as conn:
        return {(r.node, r.gpu): r.job_id for r in conn.execute(sa.select(allocations))}


def settings(tmp_path: Path, url: str, **kw: object) -> ServiceSettings:
    return ServiceSettings(
        database_url=url,
        data_dir=tmp_path,
        tick_s=0.02,
        lock_retry_s=0.02,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("policy", [LostPolicy.REQUEUE, LostPolicy.FAIL])
def test_restart_reconciles_running_jobs_with_the_executor(
    db: Database, tmp_path: Path, policy: LostPolicy
) -> None:
    url = db.url.render_as_string(hide_password=False)
    before = FakeExecutor()
    first = SchedulerLoop(db, TOPO, before, settings(tmp_path, url, lost_policy=policy))
    keep, done, lost = submit(db, 8), submit(db, 8), submit(db, 8)
    first.load()
    assert before.running() == [str(keep), str(done), str(lost)]
    kept_gpus = {k for k, v in allocated(db).items() if v == keep}
    # "restart": a new executor view in which one job still runs, one finished, one vanished
    after = FakeExecutor()
    for handle, launch in before.launches.items():
        if launch.job_id == str(lost):
            continue
        after.launches[handle] = launch
        after.states[handle] = (
            Status(RunState.RUNNING)
            if launch.job_id == str(keep)
            else Status(RunState.COMPLETED, 0)
        )
        if launch.job_id == str(keep):
            after.held.update({(s.node, g): launch.job_id for s in launch.nodes for g in s.gpus})
    waiting = submit(db, 8)
    second = SchedulerLoop(db, TOPO, after, settings(tmp_path, url, lost_policy=policy))
    second.load()

    assert state(db, keep) == "running"
    assert row(db, keep)["attempts"] == 1
    assert {k for k, v in allocated(db).items() if v == keep} == kept_gpus
    assert state(db, done) == "completed"
    assert state(db, waiting) == "running"  # started on other GPUs than the kept job's
    assert after.violations == []
    if policy is LostPolicy.REQUEUE:
        assert state(db, lost) == "running"  # requeued and started again
        assert row(db, lost)["attempts"] == 2
    else:
        assert state(db, lost) == "failed"
        assert "lost" in (row(db, lost)["reason"] or "")
    with db.read() as conn:
        history = [
            r.state
            for r in conn.execute(
                sa.text(f"SELECT state FROM job_events WHERE job_id = {lost} ORDER BY id")
            )
        ]
    expected_tail = (
        ["preempted", "pending", "running"] if policy is LostPolicy.REQUEUE else ["failed"]
    )
    assert history[-len(expected_tail) :] == expected_tail


def test_a_job_that_can_never_run_fails_with_the_reason(db: Database, tmp_path: Path) -> None:
    loop = SchedulerLoop(db, TOPO, FakeExecutor(), settings(tmp_path, str(db.url)))
    loop.load()
    job = submit(db, 300, gpu_class="h100", tenant="public")  # public has no h100 at all
    loop.cycle()
    assert state(db, job) == "failed"
    assert (row(db, job)["reason"] or "").startswith("rejected:")


def test_a_job_committed_while_a_leader_loads_is_not_lost(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit that commits while a new leader reads its starting state (here: right after
    the live-jobs query) must still be ingested. On PostgreSQL each statement of the load
    sees its own snapshot; reading the id high-water mark after the live jobs lost such a
    job for good (it was below the mark and in neither read)."""
    real = loop_module.live_jobs
    late: list[int] = []

    def live_jobs_then_a_submit(conn: sa.Connection) -> list[sa.RowMapping]:
        rows = real(conn)
        late.append(submit(db, 1))  # another client's commit, between the load's statements
        return rows

    monkeypatch.setattr(loop_module, "live_jobs", live_jobs_then_a_submit)
    loop = SchedulerLoop(db, TOPO, FakeExecutor(), settings(tmp_path, str(db.url)))
    early = submit(db, 1)
    loop.load()
    monkeypatch.setattr(loop_module, "live_jobs", real)
    loop.cycle()
    assert state(db, early) == "running"
    assert state(db, late[0]) == "running"


def test_only_one_leader_per_database(db: Database) -> None:
    a, b = leader_lock(db), leader_lock(db)
    assert isinstance(a, FileLock if db.is_sqlite else PgAdvisoryLock)
    assert a.acquire()
    assert not b.acquire()
    assert a.held()
    a.release()
    assert b.acquire()
    assert not a.acquire()
    b.release()


def test_two_replicas_never_give_a_gpu_twice(db: Database, tmp_path: Path) -> None:
    """Two loops on one database, a shared backend, jobs ending at random, the leader stopped
    midway: the follower takes over, and no GPU is ever held by two jobs at once."""
    url = db.url.render_as_string(hide_password=False)
    backend = FakeExecutor()
    replicas = [
        SchedulerLoop(db, TOPO, backend, settings(tmp_path / f"r{i}", url)) for i in range(2)
    ]
    for r in replicas:
        r.start()
    rng = np.random.default_rng(20250601)
    ids: list[int] = []
    leaders_seen: set[int] = set()
    stopped = False
    try:
        for step in range(120):
            size = int(rng.choice([1, 2, 4, 8, 16]))
            ids.append(submit(db, size, gpu_class=str(rng.choice(["h100", "gb200"]))))
            running = backend.running()
            if running and rng.random() < 0.5:
                backend.end(str(rng.choice(running)))
            leaders_seen.update(i for i, r in enumerate(replicas) if r.leading)
            if step == 60 and not stopped:
                leader = next(r for r in replicas if r.leading)
                leader.stop()
                stopped = True
            time.sleep(0.005)
        wait_for(lambda: any(r.leading for r in replicas if not r._stop.is_set()))
        leaders_seen.update(i for i, r in enumerate(replicas) if r.leading)

        def drained() -> bool:
            for job_id in backend.running():
                backend.end(job_id)
            return all(state(db, j) in ("completed", "failed", "cancelled") for j in ids)

        wait_for(drained, timeout=30, every=0.05)
    finally:
        for r in replicas:
            r.stop()
    assert backend.violations == []
    assert leaders_seen == {0, 1}
    assert backend.starts >= 60
    # the database's own view agrees: every allocation row belongs to a running job
    with db.read() as conn:
        running_ids = {
            r.id for r in conn.execute(sa.select(jobs.c.id).where(jobs.c.state == "running"))
        }
    assert set(allocated(db).values()) <= running_ids


def test_a_job_cancelled_between_decision_and_commit_is_not_started(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API cancels a pending job after the scheduler chose to start it but before the
    cycle commits: that job stays cancelled (no GPUs, no launch); the others start."""
    executor = FakeExecutor()
    loop = SchedulerLoop(db, TOPO, executor, settings(tmp_path, str(db.url)))
    loop.load()
    keep, gone = submit(db, 8), submit(db, 8)
    sched = loop._sched
    assert sched is not None

    class DecideThenCancel:
        """The loop's scheduler, except that the API cancels right after a decision.
        (A wrapper, not a patched method: the compiled Scheduler's methods are fixed.)"""

        def __getattr__(self, name: str) -> Any:
            return getattr(sched, name)

        def schedule(self, now: float) -> object:
            res = sched.schedule(now)
            assert {j.id for j in res.started} == {str(keep), str(gone)}
            assert store.request_cancel(db, gone, time.time()) == "pending"
            return res

    monkeypatch.setattr(loop, "_sched", DecideThenCancel())
    loop.cycle()
    monkeypatch.undo()
    assert state(db, keep) == "running"
    assert state(db, gone) == "cancelled"
    assert set(allocated(db).values()) == {keep}
    assert executor.running() == [str(keep)]
    loop.cycle()  # the cancel request is consumed; nothing else changes
    assert state(db, gone) == "cancelled"
    assert set(allocated(db).values()) == {keep}
