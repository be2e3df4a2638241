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
    """Everything an executor needs to start one job."""

    job_id: str
    command: str
    gpus: int
    gpu_indices: tuple[int, ...]  # per-node local indices chosen by the scheduler
    node: str  # node name chosen by the scheduler (informational for some backends)
    log_path: Path
    time_limit_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)


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
        """Start the job; return a durable handle. Raises ExecutorError on failure."""
        ...

    def poll(self, handle: str) -> Status:
        """Current state of a started job (never raises for an unknown handle: LOST)."""
        ...

    def cancel(self, handle: str) -> None:
        """Stop the job if it still runs; idempotent."""
        ...


class ExecutorError(RuntimeError):
    """A backend refused or failed to start a job."""
