"""Exactly-once launches on a real Slurm: the scheduler loop "crashes" at each step between
committing a start and recording its handle, a new leader takes over, and Slurm's own
accounting shows one Slurm job per attempt name (counted with ``squeue``/``sacct``, not with
the loop's view).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.executors.base import attempt_name
from aifactory.service.executors.slurm import SlurmExecutor, job_name
from aifactory.service.loop import InjectedCrashError, SchedulerLoop, job_nonce
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from test_service_support import migrated_database
from test_slurm import slurm  # noqa: F401 (the session fixture that starts Slurm)

pytestmark = pytest.mark.slurm

TOPO = compile_topology(load_fleet("demo"))
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database("sqlite", tmp_path)


def slurm_jobs_named(name: str) -> int:
    """Slurm jobs submitted under an attempt's name, by Slurm's own records."""
    ids: set[str] = set()
    for argv in (
        ["squeue", "-h", "-t", "all", f"--name={job_name(name)}", "-o", "%i"],
        [
            "sacct",
            "-n",
            "-P",
            "-X",
            f"--name={job_name(name)}",
            "-S",
            "2000-01-01",
            "-o",
            "JobIDRaw",
        ],
    ):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        ids.update(line.strip() for line in out.stdout.splitlines() if line.strip())
    return len(ids)


@pytest.mark.parametrize("point", ["committed", "launching", "launched", "recorded"])
def test_a_crash_at_any_launch_step_submits_each_attempt_to_slurm_once(
    slurm: SlurmExecutor,  # noqa: F811 (the fixture imported above)
    db: Database,
    tmp_path: Path,
    point: str,
) -> None:
    settings = ServiceSettings(database_url=str(db.url), data_dir=tmp_path, tick_s=0.05)
    ids = []
    for _ in range(2):
        req = JobSubmit(gpus=1, gpu_class="h100", command="sleep 0.2", time_limit_s=120)
        done = store.submit(
            db, req, tenant="lab", token_id=1, now=time.time(), idempotency_key=None
        )
        ids.append(int(done.job["id"]))

    def crash(at: str, job_id: str) -> None:
        if at == point and job_id == str(ids[-1]):
            raise InjectedCrashError(at)

    with pytest.raises(InjectedCrashError):
        SchedulerLoop(db, TOPO, slurm, settings, fault=crash).load()
    second = SchedulerLoop(db, TOPO, slurm, settings)
    second.load()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        second._last_poll = 0.0
        second.cycle()
        with db.read() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(jobs))}
        if all(rows[j].state in TERMINAL for j in ids):
            break
        time.sleep(0.3)
    assert {rows[j].state for j in ids} == {"completed"}, {j: rows[j].reason for j in ids}
    for j in ids:
        row = rows[j]
        names = [
            attempt_name(str(j), a, job_nonce(row.submitted_at)) for a in range(1, row.attempts + 1)
        ]
        counts = [slurm_jobs_named(n) for n in names]
        assert all(c <= 1 for c in counts), (j, counts)
        assert sum(counts) == 1, (j, counts)  # ran exactly once in all
