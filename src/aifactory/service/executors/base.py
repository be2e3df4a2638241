"""The one interface every executor (local processes, Slurm, Ray) implements.

The scheduler decides *where*; an executor makes it happen on a real backend and
reports back. Handles are strings so they can be stored in the database and used to
reconcile after a restart (a PID, a Slurm job id, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class RunState(StrEnum):
    """What a backend says about a job it was given."""

    RUNNING = "running"
    COMPLETED = "completed"  # exited 0
    FAILED = "failed"  # exited non-zero, or the backend says it failed
    CANCELLED = "cancelled"
    LOST = "lost"  # the backend has no trace of it (e.g. process gone after a reboot)


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything an executor needs to start one attempt of one job.

    ``attempt`` counts the job's starts (1 for the first). Together with the job id it names
    the attempt on the backend (:func:`attempt_name`), which is what makes a launch
    idempotent: the loop commits the intent (job, placement, attempt) before calling
    ``start``, and after a crash asks ``find(name)`` instead of starting it again.
    """

    job_id: str
    command: str
    gpus: int
    gpu_indices: tuple[int, ...]  # per-node local indices chosen by the scheduler
    node: str  # node name chosen by the scheduler (informational for some backends)
    log_path: Path
    time_limit_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    tenant: str = ""
    nonce: str = ""

    @property
    def name(self) -> str:
        """The attempt's name on the backend (see :func:`attempt_name`)."""
        return attempt_name(self.job_id, self.attempt, self.nonce)


def attempt_name(job_id: str, attempt: int, nonce: str = "") -> str:
    """``aif-<job id>-<attempt>[-<nonce>]``: the one name under which an attempt may start.

    The nonce is derived from the job's own immutable submit record (the loop uses its
    submit time), so that a job id reused by another database on the same backend (a
    re-created service, a test run) never matches an old attempt.
    """
    name = f"aif-{job_id}-{attempt}"
    return f"{name}-{nonce}" if nonce else name


@dataclass(frozen=True, slots=True)
class Status:
    """A backend's answer for one handle."""

    state: RunState
    exit_code: int | None = None
    detail: str = ""


class Executor(Protocol):
    """Runs jobs on a backend."""

    name: str

    def start(self, launch: Launch) -> str:
        """Start the attempt under ``launch.name``; return a durable handle.

        Raises ExecutorError on failure (never another exception for bad input: a command
        the backend cannot take is that job's failure).
        """
        ...

    def find(self, name: str) -> str | None:
        """The handle of an attempt already started under ``name``, or None if none was.

        Asked after a restart for every attempt whose intent was committed but whose
        handle was not recorded; None must mean that no process of that attempt runs or
        ever ran, so that starting it now runs it once. Raises ExecutorError when the
        backend cannot be asked (then the loop waits rather than guess).
        """
        ...

    def poll(self, handle: str) -> Status:
        """Current state of a started job (never raises for an unknown handle: LOST)."""
        ...

    def cancel(self, handle: str) -> None:
        """Stop the job if it still runs; idempotent."""
        ...


class ExecutorError(RuntimeError):
    """A backend refused or failed to start a job."""
