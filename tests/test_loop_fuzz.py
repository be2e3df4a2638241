"""A random API fuzz of the scheduler loop: submit, cancel, finish and preempt (by priority)
with random sizes, priorities and classes on the demo fleet, plus rows with fields the API
refuses (as if written by an older replica). Whatever the sequence: the loop never raises
out of a cycle (in the service that is a step-down), no GPU is given twice, the database's
allocations match its running jobs, and once the backend lets every job end, every job is
in a terminal state, each failure with its reason.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.loop import SchedulerLoop
from aifactory.service.schemas import JobSubmit, PriorityClass
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import allocations, jobs
from test_service_support import FakeExecutor

TOPO = compile_topology(load_fleet("demo"))
TERMINAL = {"completed", "failed", "cancelled"}
SIZES = [1, 2, 4, 8, 16, 64, 72, 144, 200, 250, 288, 432]
CLASSES = ["h100", "gb200", "b200", None]
TENANTS = ["lab", "startup", "public"]
# Fields the API refuses; a row holding one must fail its own job, nothing else.
HOSTILE: list[dict[str, Any]] = [
    {"command": "echo a\0b"},
    {"checkpoint_interval_s": 5e-324},
    {"checkpoint_interval_s": 1e-300},
    {"time_limit_s": 1e308},
    {"gpus": 10**9},
    {"gpus": 0},
    {"gpus": -8},
]


def _template() -> Path:
    """A migrated SQLite file, made once and copied per example (migrating is the slow part)."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="loop-fuzz-template-")) / "aifactory.db"
        database = Database(f"sqlite:///{path}")
        database.upgrade()
        database.dispose()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


_TEMPLATE: list[Path] = []


class LoopMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="loop-fuzz-"))
        shutil.copy(_template(), self.dir / "aifactory.db")
        self.db = Database(f"sqlite:///{self.dir}/aifactory.db")
        self.executor = FakeExecutor()
        self.loop = SchedulerLoop(
            self.db,
            TOPO,
            self.executor,
            ServiceSettings(database_url=str(self.db.url), data_dir=self.dir, tick_s=0.02),
        )
        self.loop.load()
        self.ids: list[int] = []

    def _submit(self, req: JobSubmit, tenant: str) -> None:
        done = store.submit(
            self.db, req, tenant=tenant, token_id=1, now=time.time(), idempotency_key=None
        )
        self.ids.append(int(done.job["id"]))

    @rule(
        gpus=st.sampled_from(SIZES),
        gpu_class=st.sampled_from(CLASSES),
        priority=st.sampled_from(list(PriorityClass)),
        preemptible=st.booleans(),
        tenant=st.sampled_from(TENANTS),
        checkpoint=st.sampled_from([None, 60.0, 3600.0]),
    )
    def submit(
        self,
        gpus: int,
        gpu_class: str | None,
        priority: PriorityClass,
        preemptible: bool,
        tenant: str,
        checkpoint: float | None,
    ) -> None:
        req = JobSubmit(
            gpus=gpus,
            gpu_class=gpu_class,
            command="true",
            priority_class=priority,
            preemptible=preemptible,
            checkpoint_interval_s=checkpoint,
        )
        self._submit(req, tenant)

    @rule(bad=st.sampled_from(HOSTILE), tenant=st.sampled_from(TENANTS))
    def submit_hostile_row(self, bad: dict[str, Any], tenant: str) -> None:
        fields = {**JobSubmit(gpus=8, command="true", gpu_class="h100").model_dump(), **bad}
        self._submit(JobSubmit.model_construct(**fields), tenant)

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        store.request_cancel(self.db, job_id, time.time())

    @precondition(lambda self: bool(self.executor.running()))
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1]))
    def finish(self, data: st.DataObject, code: int) -> None:
        self.executor.end(data.draw(st.sampled_from(sorted(self.executor.running()))), code)

    @rule()
    def cycle(self) -> None:
        self.loop._last_poll = 0.0  # poll every cycle
        self.loop.cycle()

    @invariant()
    def no_gpu_given_twice(self) -> None:
        assert self.executor.violations == []

    @invariant()
    def allocations_match_running_jobs(self) -> None:
        with self.db.read() as conn:
            held: dict[int, int] = {}
            for r in conn.execute(sa.select(allocations.c.job_id)):
                held[r.job_id] = held.get(r.job_id, 0) + 1
            running = {
                r.id: r.gpus
                for r in conn.execute(
                    sa.select(jobs.c.id, jobs.c.gpus).where(jobs.c.state == "running")
                )
            }
        assert held == running

    def teardown(self) -> None:
        try:
            for _ in range(60):
                for job_id in self.executor.running():
                    self.executor.end(job_id)
                self.cycle()
                if self._states() <= TERMINAL:
                    break
            with self.db.read() as conn:
                rows = list(conn.execute(sa.select(jobs.c.id, jobs.c.state, jobs.c.reason)))
            assert {r.state for r in rows} <= TERMINAL, [tuple(r) for r in rows]
            assert all(r.reason for r in rows if r.state == "failed")
            assert self.loop.stats.snapshot()["count"] > 0
        finally:
            self.db.dispose()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _states(self) -> set[str]:
        with self.db.read() as conn:
            return {str(r[0]) for r in conn.execute(sa.select(jobs.c.state).distinct())}


LoopMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_loop_fuzz = LoopMachine.TestCase
