"""The scheduler's records of a pass: what it decided, and its scratch state while it runs.

Decides nothing. A :class:`Reservation` is EASY backfill's record of one blocked job's
earliest start (made by :mod:`~aifactory.scheduler.backfill`, kept by the pass); a
:class:`CycleResult` is made by one pass and read by its caller (the
twin's simulator, the service loop, forecasts); the scheduler never reads one back. A
:class:`PassContext` lives for one pass only (one instance is kept and reset).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from aifactory.workload.job import Job


class Interruption(StrEnum):
    """Why a running job stops before its end and waits again
    (:meth:`Scheduler.interrupt <aifactory.scheduler.scheduler.Scheduler.interrupt>`)."""

    PREEMPTED = "preempted"  # evicted for another job (or by an operator): a preemption
    FAILED = "failed"  # its node or its process failed: a failure
    NOT_STARTED = "not-started"  # its attempt never ran (a lost launch): counted as neither


class Waiting(StrEnum):
    """Why a pending job waits, as of the last pass that looked at it (Slurm's squeue
    REASON column, Kueue's admission conditions)."""

    PRIORITY = "priority"  # not tried since it was queued: jobs ahead of it go first
    QUOTA = "quota"  # its tenant's quota (or a parent's, or its cohort's) has no room
    CAPACITY = "capacity"  # not enough free GPUs, or no placement for the gang
    RESERVATION = "reservation"  # it would delay the reservation of a job ahead of it
    # It preempted jobs that keep their GPUs while they save (their preempt grace): it
    # starts on those GPUs when the last of them is given back.
    GRACE = "preempt_grace"
    # GPUs were free for it, but starting there would take a site's power over its cap.
    POWER = "power_cap"


WAIT_PRIORITY: Final = Waiting.PRIORITY
WAIT_QUOTA: Final = Waiting.QUOTA
WAIT_CAPACITY: Final = Waiting.CAPACITY
WAIT_RESERVATION: Final = Waiting.RESERVATION
WAIT_GRACE: Final = Waiting.GRACE
WAIT_POWER: Final = Waiting.POWER

PREEMPTED_FOR: Final = Interruption.PREEMPTED
FAILED_RUN: Final = Interruption.FAILED
NOT_STARTED: Final = Interruption.NOT_STARTED


class Reservation:
    """EASY's reservation for the blocked head of a class: the earliest time (shadow) its
    gang can start, from running jobs' estimates, and the GPUs spare at that time."""

    __slots__ = ("holder", "shadow", "spare")

    def __init__(self, holder: int, shadow: float, spare: int) -> None:
        self.holder = holder  # seat index of the job it is held for
        self.shadow = shadow
        self.spare = spare


class CycleResult:
    """What one pass decided: jobs started and jobs preempted, in decision order; jobs
    refused at submit since the previous pass, each with its reason (``rejected``: they are
    failed already, :meth:`submit <aifactory.scheduler.scheduler.Scheduler.submit>` also
    returned the reason); and when the caller should run a pass even if nothing happens
    before (``wakeup_s``: a backfill scan or a preemption search is due then; None when
    this pass asks for no wake-up, and a wake-up an earlier pass asked for still stands)."""

    __slots__ = ("preempted", "rejected", "started", "wakeup_s")

    def __init__(self) -> None:
        self.started: list[Job] = []
        self.preempted: list[Job] = []
        self.rejected: list[tuple[Job, str]] = []
        self.wakeup_s: float | None = None


# What a pass that decided nothing returns: one shared instance (read-only by contract),
# since most passes on a lightly loaded fleet decide nothing.
NOTHING: Final = CycleResult()


class PassContext:
    """Scratch state of one pass: its per-pass memos (NO_FIT, QUOTA_FAIL, PREEMPT_FAILED of
    :mod:`~aifactory.scheduler.shortcuts`, written only when ``memo`` is on), the
    reservations it works with, and the starts it may still withdraw. Every memo holds for
    the rest of its pass only: within a pass GPUs and quota are only taken, so an answer
    "does not fit" stays true, except where a preemption evicts victims or withdraws a
    start, which gives some back and clears them (:meth:`forget`)."""

    __slots__ = (
        "memo",
        "no_fit",
        "preempt",
        "preempt_failed",
        "quota_fail",
        "reservations",
        "seen_tenants",
        "started",
        "track",
    )

    def __init__(
        self,
        reservations: dict[int, Reservation],
        *,
        memo: bool = True,
        preempt: bool = True,
        track: bool = True,
    ) -> None:
        self.memo = memo
        self.reservations = reservations
        # class * 2 + may cross sites -> smallest gang that failed to fit there
        self.no_fit: dict[int, float] = {}
        # The same for quota, keyed by tenant index * 256 + class (no tuple per lookup).
        self.quota_fail: dict[int, float] = {}
        # (tenant, class, priority, rank, may cross sites) -> smallest gang whose
        # preemption attempt failed: a bigger gang with the same candidates and quota
        # cannot succeed either.
        self.preempt_failed: dict[tuple[int, int, int, int, int], float] = {}
        self.preempt = preempt  # whether this pass may preempt at all
        self.seen_tenants: set[int] = set()
        # Jobs started in this pass, by seat index, with their fields before the start
        # (first start, level, placed class, hardware owner, run start, estimated end), so a
        # preemption later in the pass can withdraw the start (Scheduler._withdraw). Kept
        # only in passes that may preempt (``track``): elsewhere no start can be taken back.
        self.track = track
        self.started: dict[int, tuple[float | None, str, str, str, float, float]] = {}

    def reset(
        self, reservations: dict[int, Reservation], *, preempt: bool, track: bool
    ) -> PassContext:
        """Ready for a new pass (one context is kept and cleared, not made per pass:
        most passes write none of its tables)."""
        self.reservations = reservations
        self.preempt = preempt
        self.track = track
        if self.started:
            self.started.clear()
        self.forget()
        if self.seen_tenants:
            self.seen_tenants.clear()
        return self

    def forget(self) -> None:
        """Drop the memos (GPUs or quota came back within the pass)."""
        if self.no_fit:
            self.no_fit.clear()
        if self.quota_fail:
            self.quota_fail.clear()
        if self.preempt_failed:
            self.preempt_failed.clear()
