"""A preempted job with a grace keeps its GPUs in the service until it has exited (issue
#18 §2): its rows stay running and hold its GPUs while it saves, the job that preempted it
is launched on them only once the victim's attempt has ended, and a victim the backend
never reports ended has its GPUs freed a bounded time after its grace. Runs on SQLite and
PostgreSQL, with a fake backend whose jobs end when the test says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.fleet import Fleet, compile_topology, load_fleet
from aifactory.fleet.loader import parse_fleet
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.executors.local import LocalExecutor
from aifactory.service.loop import SchedulerLoop
from aifactory.service.preempt import KILL_MARGIN_S
from aifactory.service.schemas import JobSubmit, PriorityClass
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import allocations, job_events, jobs
from local_sandbox_support import reachable_dir, require_job_user
from test_service_support import DB_PARAMS, FakeExecutor, migrated_database, wait_for

TOPO = compile_topology(load_fleet("demo"))
H100_JOBS = 36  # the demo fleet's 288 h100, 8 GPUs a job
GRACE_S = 60.0


class SavingExecutor(FakeExecutor):
    """A backend whose cancelled jobs keep running (saving) until the test ends them."""

    def cancel(self, handle: str) -> None:
        with self.lock:
            self.cancelled.append(handle)


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


class World:
    def __init__(self, db: Database, tmp_path: Path) -> None:
        self.db = db
        self.now = 1_000.0
        self.ex = SavingExecutor()
        url = db.url.render_as_string(hide_password=False)
        config = ServiceSettings(
            database_url=url, data_dir=tmp_path, tick_s=0.02, preempt_grace_s=GRACE_S
        )
        self.loop = SchedulerLoop(db, TOPO, self.ex, config, clock=lambda: self.now)

    def submit(self, priority: PriorityClass, grace_s: float | None = None) -> int:
        req = JobSubmit(
            gpus=8,
            gpu_class="h100",
            command="true",
            priority_class=priority,
            preempt_grace_s=grace_s,
        )
        made = store.submit(
            self.db, req, tenant="lab", token_id=1, now=self.now, idempotency_key=None
        )
        return int(made.job["id"])

    def at(self, t: float) -> None:
        self.now = t
        self.loop.cycle()

    def state(self, job_id: int) -> str:
        with self.db.read() as conn:
            return str(
                conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one()
            )

    def holders(self) -> dict[tuple[str, int], int]:
        with self.db.read() as conn:
            return {(r.node, r.gpu): r.job_id for r in conn.execute(sa.select(allocations))}

    def gpus_of(self, job_id: int) -> set[tuple[str, int]]:
        return {k for k, v in self.holders().items() if v == job_id}

    def preempt_one(self) -> tuple[int, int, set[tuple[str, int]]]:
        """Fill the h100 with low-priority jobs, submit a high one: (victim, preemptor,
        the victim's GPUs)."""
        for _ in range(H100_JOBS):
            self.submit(PriorityClass.LOW)
        self.loop.load()
        assert len(self.ex.running()) == H100_JOBS
        high = self.submit(PriorityClass.HIGH)
        self.at(self.now + 1)
        assert len(self.ex.cancelled) == 1, self.ex.cancelled
        victim = int(self.ex.launches[self.ex.cancelled[0]].job_id)
        gpus = self.gpus_of(victim)
        assert len(gpus) == 8
        return victim, high, gpus


def test_the_preemptor_starts_only_once_the_victim_has_exited(db: Database, tmp_path: Path) -> None:
    w = World(db, tmp_path)
    t0 = w.now + 1
    victim, high, gpus = w.preempt_one()
    # Saving: still running in the database, on its GPUs; the preemptor waits.
    assert w.state(victim) == "running"
    assert w.state(high) == "pending"
    with db.read() as conn:
        reason = conn.execute(sa.select(jobs.c.reason).where(jobs.c.id == victim)).scalar_one()
    assert reason.startswith("preempted: saving")
    # The grace is over in the scheduler, but the backend still runs the victim: the
    # preemptor's start is held, its GPUs stay the victim's.
    w.at(t0 + GRACE_S + 1)
    assert w.state(high) == "pending"
    assert str(high) not in w.ex.running()
    assert w.gpus_of(victim) == gpus
    # The victim exits: its GPUs are freed and the preemptor launched there, in one cycle.
    w.ex.end(str(victim), 143)
    w.at(t0 + GRACE_S + 2)
    assert w.state(victim) == "pending"
    assert w.state(high) == "running"
    assert w.gpus_of(high) == gpus
    assert w.ex.violations == []


def test_a_launched_preemptor_stays_tracked_and_keeps_its_gpus(
    db: Database, tmp_path: Path
) -> None:
    """After the held start is launched, later cycles must neither offer it again (the
    loop took the second offer for a start cancelled meanwhile, stopped tracking the
    running job and let the core give its GPUs away) nor start anything on its GPUs."""
    w = World(db, tmp_path)
    t0 = w.now + 1
    victim, high, gpus = w.preempt_one()
    w.at(t0 + GRACE_S + 1)
    w.ex.end(str(victim), 143)
    w.at(t0 + GRACE_S + 2)
    assert w.state(high) == "running"
    other = next(j for j in sorted(w.ex.running()) if j != str(high))
    w.ex.end(other, 0)  # another job ends: room for one more start
    for k in range(3, 8):
        w.at(t0 + GRACE_S + k)
    assert w.state(high) == "running"
    assert w.gpus_of(high) == gpus
    assert w.state(victim) != "failed"
    assert str(high) in w.ex.running()
    assert w.ex.violations == []
    w.ex.end(str(high), 0)  # still polled: its end is seen and its GPUs freed
    w.at(t0 + GRACE_S + 9)
    assert w.state(high) == "completed"
    assert gpus.isdisjoint({k for k, v in w.holders().items() if v == high})


def test_a_victim_that_exits_early_frees_its_rows_then(db: Database, tmp_path: Path) -> None:
    w = World(db, tmp_path)
    t0 = w.now + 1
    victim, high, gpus = w.preempt_one()
    w.ex.end(str(victim), 0)
    w.at(t0 + 5)
    assert w.state(victim) == "pending"
    assert gpus.isdisjoint(w.holders())
    # The scheduler holds the GPUs for the whole grace (its conservative bound) ...
    assert w.state(high) == "pending"
    w.at(t0 + GRACE_S + 1)
    # ... then the preemptor starts on them at once.
    assert w.state(high) == "running"
    assert w.gpus_of(high) == gpus
    assert w.ex.violations == []


def test_a_victim_never_reported_ended_is_freed_a_bounded_time_after_its_grace(
    db: Database, tmp_path: Path
) -> None:
    w = World(db, tmp_path)
    t0 = w.now + 1
    victim, high, gpus = w.preempt_one()
    w.at(t0 + GRACE_S + KILL_MARGIN_S - 1)
    assert w.state(high) == "pending"
    assert w.gpus_of(victim) == gpus
    w.at(t0 + GRACE_S + KILL_MARGIN_S + 1)
    assert w.state(victim) == "pending"  # not leaked
    assert w.state(high) == "running"
    assert w.gpus_of(high) == gpus
    assert len(w.ex.cancelled) == 2  # told to stop again before its GPUs were freed


def test_a_restarted_leader_keeps_a_saving_victims_gpus_for_its_claimant(
    db: Database, tmp_path: Path
) -> None:
    """A new leader during the grace keeps the victim's GPUs until it exits, and keeps
    them for the job they were promised to (the victim's row names it): that job waits
    for them and starts there, and no second victim is preempted for it. The second
    victim there would be: a low job started during the grace on GPUs another job freed,
    without a grace of its own (nothing to save: the cheapest to preempt), to a scheduler
    that took the saving victim for a running job like any other."""
    w = World(db, tmp_path)
    t0 = w.now + 1
    victim, high, gpus = w.preempt_one()
    with db.read() as conn:
        reason = conn.execute(sa.select(jobs.c.reason).where(jobs.c.id == victim)).scalar_one()
    assert reason.endswith(f"its GPUs go to job {high}")
    other = next(h for h in w.ex.running() if h != str(victim))
    w.ex.end(other, 0)
    late = w.submit(PriorityClass.LOW, grace_s=0.0)
    w.at(t0 + 5)
    assert w.state(late) == "running", "a low job starts on the GPUs the other one freed"
    again = World(db, tmp_path)
    again.ex = w.ex
    again.loop.executor = w.ex
    again.now = t0 + 10
    again.loop.load()
    assert again.state(victim) == "running"
    assert again.gpus_of(victim) == gpus
    assert again.state(high) == "pending"
    again.at(t0 + 11)
    assert len(w.ex.cancelled) == 1, "the claimant preempted a second victim"
    assert again.state(late) == "running"
    w.ex.end(str(victim), 143)
    again.at(t0 + 12)
    assert again.state(victim) == "pending"
    assert not again.gpus_of(victim)
    # The rebuilt scheduler gives the victim a whole grace again from the restart (the
    # grace it had left is not stored): the claimant starts when that ends, on its GPUs.
    again.at(t0 + 10 + GRACE_S + 1)
    assert again.state(high) == "running"
    assert again.gpus_of(high) == gpus
    assert len(w.ex.cancelled) == 1
    assert w.ex.violations == []


def test_cancelling_a_saving_victim_ends_it(db: Database, tmp_path: Path) -> None:
    w = World(db, tmp_path)
    victim, _high, gpus = w.preempt_one()
    store.request_cancel(db, victim, now=w.now)
    w.at(w.now + 1)
    assert w.state(victim) == "cancelled"
    assert gpus.isdisjoint(w.holders())


def test_a_held_start_cancelled_meanwhile_is_never_launched_and_frees_its_gpus(
    db: Database, tmp_path: Path
) -> None:
    w = World(db, tmp_path)
    t0 = w.now + 1
    victim, high, gpus = w.preempt_one()
    w.at(t0 + GRACE_S + 1)  # the preemptor's start is held: the victim still runs
    store.request_cancel(db, high, now=w.now)
    w.at(t0 + GRACE_S + 2)
    w.ex.end(str(victim), 143)
    w.at(t0 + GRACE_S + 3)
    assert w.state(high) == "cancelled"
    assert str(high) not in {ln.job_id for ln in w.ex.launches.values()}
    # Its GPUs were not kept for it: the victim, pending again, gets them back.
    w.at(t0 + GRACE_S + 4)
    assert w.state(victim) == "running"
    assert w.gpus_of(victim) == gpus
    assert w.ex.violations == []


def one_node_fleet() -> Fleet:
    """Eight h100 in one server, all lab's: one 8-GPU job fills the fleet."""
    site = {"name": "s1", "region": "R1", "power_mw": 1.0, "pue": 1.2}
    group = {"model": "h100", "domains": 1, "owner": "lab"}
    return parse_fleet(
        {
            "name": "one",
            "default_tenant": "lab",
            "sites": [{**site, "pods": [{"name": "hgx", "groups": [group]}]}],
            "tenants": [{"name": "lab", "quotas": [{"gpu_class": "h100", "nominal": 8}]}],
        },
        "one",
    )


def test_on_the_local_executor_the_preemptor_starts_after_the_victim_was_killed(
    tmp_path: Path,
) -> None:
    """Real processes: a victim that ignores SIGTERM is SIGKILLed at the end of its 2 s
    grace by its supervisor; the job that preempted it runs only after the loop saw the
    victim's attempt end and freed its GPUs."""
    require_job_user()
    db = next(migrated_database("sqlite", tmp_path))
    with reachable_dir() as base:
        data = base / "data"
        ex = LocalExecutor(data, grace_s=0.5)
        config = ServiceSettings(database_url=db.url.render_as_string(), data_dir=data, tick_s=0.05)
        loop = SchedulerLoop(db, compile_topology(one_node_fleet()), ex, config)
        stubborn = "trap '' TERM; while :; do sleep 0.1; done"
        low = JobSubmit(
            gpus=8,
            gpu_class="h100",
            command=stubborn,
            priority_class=PriorityClass.LOW,
            preempt_grace_s=2.0,
        )
        high = JobSubmit(
            gpus=8, gpu_class="h100", command="true", priority_class=PriorityClass.HIGH
        )

        def put(req: JobSubmit) -> int:
            made = store.submit(
                db, req, tenant="lab", token_id=1, now=time.time(), idempotency_key=None
            )
            return int(made.job["id"])

        def events(job_id: int) -> list[tuple[float, str, str]]:
            with db.read() as conn:
                q = sa.select(job_events.c.at, job_events.c.state, job_events.c.detail)
                return [tuple(r) for r in conn.execute(q.where(job_events.c.job_id == job_id))]

        loop.start()
        try:
            victim = put(low)
            wait_for(lambda: any(s == "running" for _, s, _ in events(victim)), timeout=20)
            preemptor = put(high)
            loop.wake()
            wait_for(lambda: any(s == "running" for _, s, _ in events(preemptor)), timeout=30)
        finally:
            loop.stop()
    requeued = [at for at, s, detail in events(victim) if s == "pending" and detail == "requeued"]
    started = [at for at, s, _ in events(preemptor) if s == "running"]
    assert len(requeued) == 1, events(victim)
    assert started[0] >= requeued[0], (events(victim), events(preemptor))
    # The victim held its GPUs for its whole grace (killed at its end, not before).
    asked = events(preemptor)[0][0]  # submitted
    assert requeued[0] - asked >= 2.0, (events(victim), events(preemptor))
    db.dispose()
