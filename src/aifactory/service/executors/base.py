"""The one interface every executor (local processes, Slurm, Ray) implements.

The scheduler decides *where*; an executor makes it happen on a real backend and
reports back. Handles are strings so they can be stored in the database and used to
reconcile after a restart (a PID, a Slurm job id, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol


class RunState(StrEnum):
    """What a backend says about a job it was given."""

    RUNNING = "running"
    COMPLETED = "completed"  # exited 0
    FAILED = "failed"  # exited non-zero, or the backend says it failed
    CANCELLED = "cancelled"
    LOST = "lost"  # the backend has no trace of it (e.g. process gone after a reboot)


@dataclass(frozen=True, slots=True)
class NodeSlice:
    """One node of a placement: the node's name and the local GPU indices the job holds there."""

    node: str
    gpus: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything an executor needs to start one attempt of one job.

    ``nodes`` is the whole placement in rank order: node rank *r* runs on ``nodes[r]`` with
    that node's GPUs. Every backend starts one process (group) per node and gives it the
    variables of :func:`rank_env`; the job is one unit for ``poll`` and ``cancel``: it
    succeeds when every rank exits 0 and fails (the other ranks stopped) when any fails.

    ``attempt`` counts the job's starts (1 for the first). Together with the job id it names
    the attempt on the backend (:func:`attempt_name`), which is what makes a launch
    idempotent: the loop commits the intent (job, placement, attempt) before calling
    ``start``, and after a crash asks ``find(name)`` instead of starting it again.
    """

    job_id: str
    command: str
    gpus: int  # the job's total; the sum of the nodes' GPUs when it holds any
    nodes: tuple[NodeSlice, ...]  # rank order; node rank 0 hosts the rendezvous
    log_path: Path
    time_limit_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    tenant: str = ""
    nonce: str = ""
    # Seconds the job gets between SIGTERM and SIGKILL when it is stopped (preempted or
    # cancelled): its preempt grace, to save a checkpoint (scheduler.grace). None: the
    # executor's own default.
    stop_grace_s: float | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("a launch needs at least one node")

    @property
    def name(self) -> str:
        """The attempt's name on the backend (see :func:`attempt_name`)."""
        return attempt_name(self.job_id, self.attempt, self.nonce)

    @property
    def world_size(self) -> int:
        """How many nodes (ranks) the job spans."""
        return len(self.nodes)

    @property
    def placement(self) -> str:
        """``AIFACTORY_PLACEMENT``: ``node:g,g;node:g,g`` in rank order."""
        return describe_nodes(self.nodes)


# A name safe on every backend and as a file name (an attempt's, a handle, a log file).
SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_ENV_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_STOP_GRACE_S: Final = 86400.0  # as the scheduler's MAX_GRACE_S


def stop_grace(launch: Launch, default_s: float) -> float:
    """Seconds from SIGTERM to SIGKILL for the launch's job: its own grace when it has
    one (> 0), else the executor's default."""
    grace = launch.stop_grace_s
    return grace if grace is not None and grace > 0 else default_s


def check_launch(launch: Launch) -> None:
    """Refuse, as that job's failure (ExecutorError), what no backend can run or name
    safely: an attempt name outside :data:`SAFE_NAME`, a NUL byte in the command, an
    environment variable whose name is not a shell name or whose value holds a NUL."""
    if not SAFE_NAME.match(launch.name):
        msg = f"job {launch.job_id!r}: not a valid attempt name {launch.name!r}"
        raise ExecutorError(msg)
    grace = launch.stop_grace_s
    if grace is not None and not 0.0 <= grace <= MAX_STOP_GRACE_S:
        msg = f"job {launch.job_id}: stop_grace_s: must be from 0 to {MAX_STOP_GRACE_S:g} s"
        raise ExecutorError(msg)
    if "\0" in launch.command:
        msg = f"job {launch.job_id}: the command contains a NUL byte"
        raise ExecutorError(msg)
    for key, value in launch.env.items():
        if not _ENV_KEY.match(key) or "\0" in value:
            msg = f"job {launch.job_id}: invalid environment variable {key!r}"
            raise ExecutorError(msg)


def describe_nodes(nodes: Iterable[NodeSlice]) -> str:
    """A placement as one string, ``node:g,g;node:g,g`` in rank order (rank 0 first)."""
    return ";".join(f"{s.node}:{','.join(str(g) for g in s.gpus)}" for s in nodes)


# The variables of the launch contract, set by the backend for each rank (a job's own
# ``Launch.env`` cannot override them).
CONTRACT_ENV = frozenset(
    {
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "NODE_RANK",
        "LOCAL_WORLD_SIZE",
        "CUDA_VISIBLE_DEVICES",
        "AIFACTORY_JOB_ID",
        "AIFACTORY_PLACEMENT",
        "AIFACTORY_TENANT",
    }
)


def rank_env(launch: Launch, rank: int, master_addr: str, master_port: int) -> dict[str, str]:
    """The launch contract: what node rank ``rank``'s process is given by every backend.

    These are the variables ``torchrun`` and ``torch.distributed``'s ``env://`` rendezvous
    read, at node granularity: ``WORLD_SIZE`` counts nodes (one launcher per node, as
    ``torchrun --nnodes``), ``LOCAL_WORLD_SIZE`` the GPUs on this node (as
    ``--nproc_per_node``), and ``CUDA_VISIBLE_DEVICES`` lists exactly this node's GPUs.
    ``MASTER_ADDR:MASTER_PORT`` is where rank 0 listens; the backend picks a port free on
    that host for this job.
    """
    if not 0 <= rank < launch.world_size:
        raise ValueError(f"rank {rank} is outside the job's {launch.world_size} nodes")
    mine = launch.nodes[rank]
    return {
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "WORLD_SIZE": str(launch.world_size),
        "NODE_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(len(mine.gpus)),
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in mine.gpus),
        "AIFACTORY_JOB_ID": launch.job_id,
        "AIFACTORY_PLACEMENT": launch.placement,
        "AIFACTORY_TENANT": launch.tenant,
    }


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
