"""What the scheduler loop's leader keeps about each job it knows, and the per-job part of
its attempts' names (which decide whether a backend already runs an attempt)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aifactory.workload.job import Job


@dataclass(slots=True)
class Tracked:
    """What the leader keeps about a job it knows.

    ``attempts`` counts the job's starts so far (the database's ``attempts``); the running
    attempt, if any, is number ``attempts``. ``unresolved`` marks a running job whose launch
    intent was committed but whose handle was not recorded, and whose backend could not be
    asked yet whether that attempt started (see ``find``).
    """

    job: Job
    command: str
    time_limit_s: float
    handle: str | None = None
    started_at: float | None = None
    attempts: int = 0
    unresolved: bool = False


def job_nonce(submitted_at: float) -> str:
    """The per-job part of an attempt's name (see ``attempt_name``): a short digest of
    the job's submit time, which never changes and differs between two databases' job 1."""
    return hashlib.sha1(repr(float(submitted_at)).encode(), usedforsecurity=False).hexdigest()[:8]
