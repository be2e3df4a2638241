"""A scheduler's own record of each job it holds: the bookkeeping that is not the job's.

Decides nothing. A :class:`~aifactory.workload.job.Job` says what a job is and what
happened to it (its request, state and history); which queue row is live, which class it
holds, its place in the running lists, its estimated end and the memos of the shortcuts
are one scheduler's business, and live here. One :class:`Seat` per job per scheduler,
made when the scheduler takes the job (submit, restore_running): the same job can be
held by a second scheduler (a forecast's snapshot) without either seeing the other's
bookkeeping.

Inside the scheduler a job is known by its seat (queue rows and end-index rows hold the
seat's dense ``index``; the running lists and preemption's candidates hold seats), and
the public methods, which take and return jobs, find a job's seat by the job's identity.

The request fields a pass reads for every job it tries (gang size, tenant index,
priority, preemptibility, whether it may cross sites, checkpoint interval) are copied at
submit: a job's request does not change once a scheduler holds it (nothing in aifactory
writes them after construction), and the copy saves a second object's read (a cache miss
on a big fleet) on the per-job path; so are the current run's start and overhead at each
start, which preemption reads for every candidate.
"""

from __future__ import annotations

from aifactory.scheduler.records import Waiting
from aifactory.workload.job import Job


class Seat:
    """One job's place in one scheduler: its queue, class, running-list and memo fields."""

    __slots__ = (
        "away_version",
        "checkpoint_s",
        "claim_class",
        "claim_gpus",
        "claim_s",
        "classes",
        "cross",
        "est_end_s",
        "gpus",
        "in_queue",
        "index",
        "job",
        "live",
        "overhead_s",
        "owner",
        "pend_work",
        "pmask",
        "pnode",
        "preemptible",
        "priority",
        "qseq",
        "reason",
        "reason_s",
        "resv_epoch",
        "resv_mask",
        "rpos",
        "run_class",
        "run_epoch",
        "run_start_s",
        "saving_until",
        "site",
        "site_key",
        "tix",
        "waited",
    )

    def __init__(self, job: Job, index: int, tix: int, owner: object = None) -> None:
        self.job = job
        self.owner = owner  # the scheduler this seat is in
        self.live = False  # whether that scheduler holds the job (pending or running)
        self.index = index  # dense index in the scheduler's seats (queue and end rows)
        self.tix = tix  # the scheduler's index of the job's tenant (-1: unknown)
        # The request, copied (see the module's docstring).
        self.gpus = job.gpus
        self.priority = job.priority
        self.preemptible = job.preemptible
        self.cross = job.allow_cross_site
        self.checkpoint_s = job.checkpoint_s
        # The site it is pinned to (-1: any), set by the scheduler at submit, and that
        # index shifted past the bits of (class, may cross) in the per-pass placement memo
        # keys, so a pinned job's memos are its site's alone (0 when not pinned).
        self.site = -1
        self.site_key = 0
        # The current run's start and restart overhead (copied from the job at each start:
        # preemption prices every candidate by them).
        self.run_start_s = 0.0
        self.overhead_s = 0.0
        self.pend_work = 0.0  # GPU-seconds of work it added to its tenant's backlog (pending)
        self.qseq = -1  # sequence of the job's live queue row (stale rows are skipped)
        self.in_queue = False  # whether that row is in its tenant's queue heap yet
        self.run_class = -1  # index of the GPU class it runs in (while running)
        self.classes: tuple[int, ...] | None = None  # classes it may ever run in (CLASSES)
        # Classes (bit mask) whose reservation turned the job away, and in which reservation
        # epoch (CLOSED): until the reservations change, those classes stay closed.
        self.resv_epoch = -1
        self.resv_mask = 0
        self.away_version = -1  # the turned-away version it was last turned away in
        self.rpos = -1  # its place in its running list (while running)
        self.run_epoch = 0  # bumps on every start: end-index rows of older runs are stale
        self.est_end_s = 0.0  # when the current run is expected to end (EASY)
        # The placement's node and GPU mask when it is one node (ONE_NODE; -1: none, or
        # several nodes): releasing a one-node job reads no list.
        self.pnode = -1
        self.pmask = 0
        # Why it waits (while pending), since when, and the seconds it waited for each
        # earlier reason (made only for a job that waited at all).
        self.reason: Waiting | None = None
        self.reason_s = 0.0
        self.waited: dict[str, float] | None = None
        # Save-on-preempt (aifactory.scheduler.grace): while the job is a victim still
        # saving, when its grace ends (-1: not saving); while it waits for the GPUs of
        # victims still saving, when the last of them ends and in which class (-1: none).
        self.saving_until = -1.0
        self.claim_s = -1.0
        self.claim_class = -1
        self.claim_gpus = 0  # of its tenant's quota charged for the claim meanwhile

    def __repr__(self) -> str:
        return f"Seat({self.job.id!r}, index={self.index})"


def dead_seat() -> Seat:
    """The seat a finished job's index names once its own seat is freed (a scheduler's
    ``_retire``): its queue sequence and running-list place are -1, so every queue row and
    end-index row the job left behind reads as stale, as the freed seat's would have."""
    return Seat(Job("(ended)", "", 0.0, 1, 1.0), -1, 0)
