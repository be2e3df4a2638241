"""Service settings: where the database is, which fleet, which executor, and the loop's pace.

Defaults can come from the environment (``AIFACTORY_DATABASE_URL``, ``AIFACTORY_FLEET``,
``AIFACTORY_RAY_ADDRESS``) so ``aifactory serve``, ``aifactory db upgrade`` and
``aifactory admin`` agree without flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from aifactory.service.db import DEFAULT_DATA_DIR, DEFAULT_URL

DEFAULT_FLEET = "demo"


class ExecutorKind(StrEnum):
    """Backends a service can drive."""

    LOCAL = "local"  # subprocesses on this host
    SLURM = "slurm"  # sbatch / squeue / sacct / scancel
    RAY = "ray"  # Ray jobs through the Job Submission API, one actor per node rank
    NOOP = "noop"  # runs nothing, jobs stay running until cancelled (benchmarks, dry runs)


class LostPolicy(StrEnum):
    """What to do with a job the backend has no trace of after a restart."""

    REQUEUE = "requeue"
    FAIL = "fail"


def default_database_url() -> str:
    """``$AIFACTORY_DATABASE_URL`` or a SQLite file under ./aifactory-data/."""
    return os.environ.get("AIFACTORY_DATABASE_URL") or DEFAULT_URL


def default_fleet() -> str:
    """``$AIFACTORY_FLEET`` or the bundled demo fleet."""
    return os.environ.get("AIFACTORY_FLEET") or DEFAULT_FLEET


def default_ray_address() -> str | None:
    """``$AIFACTORY_RAY_ADDRESS`` (a Ray dashboard URL) or None: a local Ray head."""
    return os.environ.get("AIFACTORY_RAY_ADDRESS") or None


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything one service replica needs."""

    database_url: str = field(default_factory=default_database_url)
    fleet: str = field(default_factory=default_fleet)
    executor: ExecutorKind = ExecutorKind.LOCAL
    data_dir: Path = DEFAULT_DATA_DIR  # job logs and local-executor state live here
    run_as: str | None = None  # local jobs' user; None: aifactory-job as root, else our own
    # The Ray executor's Ray dashboard URL (http://HEAD:8265); None: join or start a local head
    ray_address: str | None = field(default_factory=default_ray_address)
    policy: str = "fifo"
    backfill: str = "easy"
    # Seconds a preempted job keeps its GPUs to save, SIGTERM to SIGKILL (scheduler.grace);
    # 0: stopped at once, as before.
    preempt_grace_s: float = 0.0
    tick_s: float = 1.0  # periodic scheduling cycle, and executor polling
    lock_retry_s: float = 2.0  # how often a follower tries to become the scheduler
    lost_policy: LostPolicy = LostPolicy.REQUEUE
    max_attempts: int = 3  # lost-and-requeued this many times: failed
    max_body_bytes: int = 64 * 1024
    run_scheduler: bool = True  # False: an API-only replica
    migrate: bool = True  # apply migrations on start
    # Limits at the API's edge (issue #14; see aifactory.service.limits). 0: no limit.
    max_time_limit_s: float = 30 * 86_400.0  # the longest time_limit_s a submit may ask
    max_pending_per_tenant: int = 100_000  # pending jobs per tenant, then submits are 429
    submit_rate_per_s: float = 1_000.0  # sustained submits/s per tenant on each replica
    submit_burst: int = 20_000  # submits a tenant may make at once before the rate applies
    auth_failures_per_window: int = 100  # bad tokens per client address, then 429 ...
    auth_failure_window_s: float = 60.0  # ... until this window (from the first) ends
    # The dashboard's metrics history (aifactory.service.samples): rows older than this
    # many seconds are deleted; 0: kept for ever.
    samples_retention_s: float = 14 * 86_400.0
    # Twin reports the dashboard's Twin page lists: one folder per run, as written by
    # ``aifactory simulate|run --out DIR`` or ``aifactory sweep --out DIR``. None: the
    # "reports" folder of data_dir.
    reports_dir: Path | None = None
    # A what-if (POST /v1/twin/whatif) forecasts the live jobs twice and its cost grows
    # faster than their number (about 2 s for 500 pending jobs, 29 s for 2,000 on a loaded
    # machine, pure Python): past this many live jobs it is refused (409) rather than left
    # to hold a core for minutes. 0: no limit.
    whatif_max_jobs: int = 2000

    def reports_path(self) -> Path:
        """The folder of stored twin reports."""
        return self.reports_dir if self.reports_dir is not None else self.data_dir / "reports"
