"""Jobs and their lifecycle.

A job is a gang: it gets all of its GPUs at once or none. Its lifecycle is an explicit
transition table; an illegal move raises :class:`IllegalTransitionError`, and every move
is recorded in the job's history with the (injected) time it happened.

``Job`` is a plain slotted class rather than a pydantic model on purpose: the twin holds
a million of them, and per-attribute validation would cost more than the simulation.
Input validation happens at the edges (trace importers, the REST API).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from mypy_extensions import mypyc_attr


class JobState(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    PREEMPTED = "preempted"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The states as constants: compiled, ``JobState.RUNNING`` is a class-attribute lookup
# through the interpreter at every use (a few per event in the twin), a Final module
# name is read from a C static. Hot paths compare states with ``is`` (enum members are
# singletons).
PENDING: Final = JobState.PENDING
RUNNING: Final = JobState.RUNNING
PREEMPTED: Final = JobState.PREEMPTED
COMPLETED: Final = JobState.COMPLETED
FAILED: Final = JobState.FAILED
CANCELLED: Final = JobState.CANCELLED

TERMINAL: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})

# Every legal move, with why it exists.
TRANSITIONS: Final[dict[tuple[JobState, JobState], str]] = {
    (JobState.PENDING, JobState.RUNNING): "admitted: quota and a placement were found",
    (JobState.PENDING, JobState.CANCELLED): "cancelled by its owner while waiting",
    (JobState.PENDING, JobState.FAILED): "rejected: it can never run on this fleet",
    (JobState.RUNNING, JobState.COMPLETED): "its work is done",
    (JobState.RUNNING, JobState.FAILED): "its command failed, or it hit its time limit",
    (JobState.RUNNING, JobState.CANCELLED): "cancelled by its owner while running",
    (JobState.RUNNING, JobState.PREEMPTED): "evicted for priority, quota reclaim or a failure",
    (JobState.PREEMPTED, JobState.PENDING): "requeued to resume from its last checkpoint",
    (JobState.PREEMPTED, JobState.CANCELLED): "cancelled by its owner after eviction",
}


# The same table by state: the states each may move to (one lookup, no tuple per move).
_NEXT: Final[dict[JobState, frozenset[JobState]]] = {
    state: frozenset(to for (at, to) in TRANSITIONS if at is state) for state in JobState
}

_NONE: Final[frozenset[str]] = frozenset()


@mypyc_attr(native_class=False)  # an exception: a plain Python class when compiled
class IllegalTransitionError(RuntimeError):
    """A lifecycle move that the transition table does not allow."""


class Job:
    """One gang job: what was asked, and what happened to it."""

    __slots__ = (
        "_h_more",
        "_h_n",
        "_h_s0",
        "_h_s1",
        "_h_s2",
        "_h_t0",
        "_h_t1",
        "_h_t2",
        "allow_cross_site",
        "attained",
        "checkpoint_s",
        "data_site",
        "dataset",
        "dataset_bytes",
        "duration_s",
        "end_s",
        "estimate_s",
        "failures",
        "first_start_s",
        "gpu_class",
        "gpu_classes",
        "gpus",
        "grad_bytes",
        "hardware_owner",
        "hbm_gb_per_gpu",
        "id",
        "kind",
        "last_ckpt_progress",
        "level",
        "lost_failure_gpu_s",
        "lost_preempt_gpu_s",
        "overhead_s",
        "placed_class",
        "placement",
        "preempt_grace_s",
        "preempted_for",
        "preemptible",
        "preemptions",
        "priority",
        "progress_s",
        "run_start_s",
        "service",
        "site",
        "slowdown",
        "span_from_site",
        "stage_hold",
        "staging_s",
        "state",
        "step_s",
        "submit_s",
        "tenant",
        "ticket",
    )

    def __init__(
        self,
        id: str,  # noqa: A002 (the natural name for a job's id)
        tenant: str,
        submit_s: float,
        gpus: int,
        duration_s: float,
        *,
        estimate_s: float | None = None,
        gpu_class: str | None = None,
        priority: int = 0,
        preemptible: bool = True,
        checkpoint_s: float | None = None,
        allow_cross_site: bool = False,
        kind: str = "",
        gpu_classes: tuple[str, ...] = (),
        hbm_gb_per_gpu: float | None = None,
        preempt_grace_s: float | None = None,
        service: bool = False,
        site: str | None = None,
        dataset: str = "",
        dataset_bytes: float = 0.0,
        data_site: str = "",
        stage_hold: bool = False,
        grad_bytes: float = 0.0,
        step_s: float = 0.0,
    ) -> None:
        if gpus <= 0:
            msg = f"job {id}: gpus: must be > 0"
            raise ValueError(msg)
        if duration_s <= 0:
            msg = f"job {id}: duration_s: must be > 0"
            raise ValueError(msg)
        self.id = id
        self.tenant = tenant
        self.submit_s = submit_s
        self.gpus = gpus
        self.duration_s = duration_s
        self.estimate_s = estimate_s if estimate_s is not None else duration_s
        # The GPU class asked for (None: any), or several acceptable ones (gpu_classes, with
        # gpu_class None); and the GPU memory each GPU must have (None: any).
        self.gpu_class = gpu_class
        self.gpu_classes = gpu_classes
        self.hbm_gb_per_gpu = hbm_gb_per_gpu
        self.priority = int(priority)
        self.preemptible = preemptible
        self.checkpoint_s = checkpoint_s
        # Seconds it may keep its GPUs to save when preempted (SIGTERM, then the kill at
        # the end of the grace: Slurm's GraceTime, Kubernetes' terminationGracePeriodSeconds);
        # None: the scheduler's default (SchedulerConfig.preempt_grace_s).
        self.preempt_grace_s = preempt_grace_s
        self.allow_cross_site = allow_cross_site
        self.kind = kind
        # A service (inference, AI-RAN) asks for its GPUs for a lifetime (``duration_s``),
        # not for a quantity of work: interrupted, it is down until it runs again and pays
        # its restart time, then serves the rest of its lifetime; it loses no work (its
        # progress is the time it served) and has no checkpoint.
        self.service = service
        # The site it must run at (None: any; one site, so a gang so pinned never spans
        # sites). The twin pins a job with a dataset to where its data is or is staged.
        self.site = site
        # The data it reads (issue #20 §1): a dataset's name ("" none), its size and the
        # site that holds it. Placed at another site, the job first has it copied there
        # over the inter-site links; ``stage_hold``: it takes its GPUs at placement and
        # holds them while the copy runs, else (the default) it waits for the copy without
        # GPUs and is placed once the data is there (aifactory.twin.staging).
        self.dataset = dataset
        self.dataset_bytes = dataset_bytes
        self.data_site = data_site
        self.stage_hold = stage_hold
        # What spanning sites costs it (aifactory.physics.comm): gradient bytes all-reduced
        # per training step and compute seconds per step (0: unknown; such a job may span
        # sites at no modelled cost only if it says nothing, see comm.span_slowdown).
        self.grad_bytes = grad_bytes
        self.step_s = step_s
        # What the twin measured: seconds it waited for its data (both modes) and how much
        # slower its run is for spanning sites (1.0: not at all; aifactory.physics.comm).
        self.staging_s = 0.0
        self.slowdown = 1.0
        # Pinned to ``site`` (its data's) as the home of a gang that may also take GPUs at
        # other sites: the twin's staging chose to span from the data rather than wait
        # there or copy it (aifactory.twin.staging; needs ``allow_cross_site``).
        self.span_from_site = False
        self.state = JobState.PENDING
        # Opaque to the job: where the scheduler that holds it finds its own record of it
        # (aifactory.scheduler.shortcuts, HANDLE); nothing else reads or writes it. (Set
        # next to ``state``: compiled, fields are laid out in the order they are first
        # set, and the two are read together when a job ends.)
        self.ticket: object | None = None
        # The history (see the ``history`` property): its first three entries in fields of
        # the job (time unboxed), the rest in a list made only for a job that has more.
        # (Most jobs move three times or fewer: their history makes no object at all.)
        self._h_n = 0
        self._h_t0 = self._h_t1 = self._h_t2 = 0.0
        self._h_s0 = self._h_s1 = self._h_s2 = JobState.PENDING
        self._h_more: list[tuple[float, JobState]] | None = None
        self._record(submit_s, JobState.PENDING)
        self.first_start_s: float | None = None
        self.run_start_s = 0.0  # start of the current run
        self.overhead_s = 0.0  # restart overhead paid at the start of the current run
        self.end_s: float | None = None
        self.progress_s = 0.0  # useful work done before the current run
        self.last_ckpt_progress = 0.0  # progress saved by the last checkpoint
        self.attained = 0.0  # GPU-seconds of service received (for LAS)
        self.placement: list[tuple[int, int]] = []  # (node, GPU mask) pairs while running
        self.placed_class = ""  # GPU class of the current/last placement ("" before any)
        # Owner of the hardware it ran on (DomainGroup.owner; "mixed": several owners'
        # over its runs or in one placement; "" before any start).
        self.hardware_owner = ""
        self.level = ""  # topology level of the current/last placement
        self.preemptions = 0
        self.failures = 0
        # Ids of jobs it was evicted for, or whose pass withdrew its start for them.
        self.preempted_for: set[str] | frozenset[str] = _NONE
        self.lost_preempt_gpu_s = 0.0
        self.lost_failure_gpu_s = 0.0

    def move(self, to: JobState, now: float) -> None:
        """Change state through the transition table; record it. Raises on an illegal move."""
        if to not in _NEXT[self.state]:
            msg = f"job {self.id}: illegal transition {self.state.value} -> {to.value}"
            raise IllegalTransitionError(msg)
        self.state = to
        self._record(now, to)

    def withdraw_start(self, now: float) -> None:
        """Take back a start made at ``now`` by a scheduling pass that has not ended: the
        job is pending again and its history loses that start. Not a move of the
        lifecycle: no one outside the pass saw the start (the pass reports the job in
        neither its starts nor its preemptions), so the record is as if it was never
        made. Raises unless the last thing that happened to the job is a start at ``now``."""
        n = self._h_n
        last: tuple[float, JobState] | None = None  # the newest history entry
        if self._h_more is not None:
            last = self._h_more[-1]
        elif n == 3:
            last = (self._h_t2, self._h_s2)
        elif n == 2:
            last = (self._h_t1, self._h_s1)
        if self.state is not RUNNING or last is None or last != (now, RUNNING):
            msg = f"job {self.id}: no start at {now} to withdraw"
            raise IllegalTransitionError(msg)
        if self._h_more is not None:
            self._h_more.pop()
            if not self._h_more:
                self._h_more = None
        self._h_n = n - 1
        self.state = PENDING  # a start is always from pending (TRANSITIONS)

    def _record(self, now: float, state: JobState) -> None:
        n = self._h_n
        if n == 0:
            self._h_t0, self._h_s0 = now, state
        elif n == 1:
            self._h_t1, self._h_s1 = now, state
        elif n == 2:
            self._h_t2, self._h_s2 = now, state
        elif self._h_more is None:
            self._h_more = [(now, state)]
        else:
            self._h_more.append((now, state))
        self._h_n = n + 1

    @property
    def history(self) -> list[tuple[float, JobState]]:
        """Every state the job entered, with when, oldest first (a new list each time)."""
        first = [(self._h_t0, self._h_s0), (self._h_t1, self._h_s1), (self._h_t2, self._h_s2)]
        out = first[: self._h_n]
        if self._h_more is not None:
            out.extend(self._h_more)
        return out

    @history.setter
    def history(self, entries: list[tuple[float, JobState]]) -> None:
        self._h_n = 0
        self._h_more = None
        for when, state in entries:
            self._record(when, state)

    @property
    def moves(self) -> int:
        """How many states the job has entered (the history's length): a run's end event
        made at its start is stale once this changes (the job moved on)."""
        return self._h_n

    @property
    def remaining_s(self) -> float:
        """True work left (twin only)."""
        return self.duration_s - self.progress_s

    @property
    def done(self) -> bool:
        """Whether the job is in a terminal state."""
        return self.state in TERMINAL

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.tenant}, gpus={self.gpus}, {self.state.value})"
