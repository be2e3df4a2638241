"""What the scheduler accepts: its validated configuration and the bounds of a job's fields.

Decides nothing and touches no state. :class:`SchedulerConfig` is checked when it is made
(a bad value raises ``ValueError`` naming the field), so a scheduler never starts with a
setting its arithmetic cannot take; :func:`job_problem` is the one check of a job's fields,
applied by :meth:`Scheduler.submit <aifactory.scheduler.scheduler.Scheduler.submit>` to tenants'
requests and by the twin to a whole trace up front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aifactory.scheduler.policies import REGISTRY
from aifactory.scheduler.policies.fair import FairParams
from aifactory.scheduler.policies.las import LasParams
from aifactory.workload.job import Job

# Bounds of a job's fields (:func:`job_problem`), all inclusive.
MAX_GPUS: Final = 2**31 - 1  # the trace schema's int32
# About 31,700 years: beyond any real job or clock, and small enough that sums of a few
# such times (a start, a run and its checkpoint writes) stay far from overflowing.
MAX_SECONDS: Final = 1e12
# Progress math counts checkpoint cycles as int(useful // (interval + write)) (preemption
# prices every candidate so): with an interval of at least a second the count is finite
# for any finite run time, while a subnormal interval (5e-324) would make it infinite and
# int() raise in every pass. No real system checkpoints more often; the control plane
# asks for at least a minute.
MIN_CHECKPOINT_S: Final = 1.0
MAX_PRIORITY: Final = 2**31 - 1  # int32, as Kubernetes priority values
MAX_HBM_GB: Final = 100_000.0  # GPU memory per GPU: far beyond any GPU (B300: 288 GB)
MAX_CLASSES: Final = 16  # acceptable GPU classes a job may list
# A preempted job's grace to save (its GPUs stay held that long): a day is far beyond any
# trainer's save (Slurm's GraceTime and Kubernetes' termination grace are seconds to
# minutes), and a bound keeps a tenant from holding GPUs for ever by asking for more.
MAX_GRACE_S: Final = 86400.0
# A dataset or a step's gradients: up to an exabyte (the largest corpora are petabytes).
MAX_DATA_BYTES: Final = 1e18
MAX_STEP_S: Final = 3600.0  # compute seconds of one training step
MAX_NAME: Final = 256  # characters of a dataset or site name
# A scan limit (SchedulerConfig.queue_depth, max_job_test, preempt_candidates): an int32
# count; 0 is no limit.
MAX_SCAN: Final = 2**31 - 1


class BackfillMode(StrEnum):
    """Whether later jobs may start around a blocked one."""

    NONE = "none"
    EASY = "easy"


@dataclass(frozen=True, slots=True)
class Tuning:
    """Switches that change how fast the scheduler decides, never what it decides."""

    # Every memo and skip of :mod:`~aifactory.scheduler.shortcuts`. False computes every
    # answer in full: the reference the differential property test compares against.
    shortcuts: bool = True
    # Index jobs by id (by_id) and refuse an id submitted twice. The control plane needs
    # it: jobs come one at a time. The twin knows its whole job list before a run and
    # checks the ids once up front, so it turns this off (a million-entry dict costs a
    # tenth of the submits' time of a korea-2025 run).
    index_ids: bool = True


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Knobs of the scheduler core (all have defaults a user can override); checked on
    construction."""

    policy: str = "fifo"  # a registered policy's name: the order of jobs and tenants
    backfill: BackfillMode = BackfillMode.EASY
    preemption: bool = True  # whether a waiting job may evict running ones
    restart_overhead_s: float = 60.0  # Tiresias measured ~62 s per restart (facts.md §3)
    checkpoint_write_s: float = 0.0  # progress pause per checkpoint written
    # Seconds a preempted job keeps its GPUs to save, for jobs that do not say
    # (Job.preempt_grace_s); 0: none, it loses the work since its last checkpoint.
    preempt_grace_s: float = 0.0
    # Each policy's own parameters, defined and checked by the policy's module (a policy
    # that is not chosen ignores its parameters).
    las: LasParams = field(default_factory=LasParams)
    fair: FairParams = field(default_factory=FairParams)
    backfill_depth: int = 500  # jobs tested per pass beyond the head (Slurm bf_max_job_test)
    # Seconds between deep backfill scans (Slurm's bf_interval, default 30 s there); 0 scans
    # on every pass. Between scans a pass tries queue heads only, as Slurm's main loop does.
    backfill_interval_s: float = 0.0
    # Scan limits: what one pass may cost, whatever the backlog (0: no limit, the default,
    # so that a trace replays as it always did). ``queue_depth`` bounds the jobs tried in a
    # pass between deep scans and in a pass after arrivals, as Slurm's default_queue_depth
    # bounds its main scheduling loop (100 there); ``max_job_test`` bounds the jobs tried,
    # started or not, in a deep backfill scan, as Slurm's bf_max_job_test does (500
    # there). Jobs beyond a limit keep their place in their queues for the next pass; a
    # limit at least the number of pending jobs changes no decision.
    queue_depth: int = 0
    max_job_test: int = 0
    # ``preempt_candidates`` bounds the running jobs one preemption search considers (the
    # first the candidate rules meet), as kube-scheduler's DefaultPreemption bounds the
    # candidates it dry-runs (minCandidateNodesAbsolute, 100 there). Off in every run:
    # on korea-2025 a search prices 30 to 160 candidates on average, a bound of 256 binds
    # too rarely to matter, and one of 32 makes searches fail that would have found victims,
    # so the jobs search again in every deep scan (6x the searches, 5x the candidates
    # priced per event at day 10).
    preempt_candidates: int = 0
    # Owners run on their own hardware and lend it by name: each GPU class of several
    # owners is scheduled as one class per owner (see aifactory/scheduler/owners.py).
    # Off: a tenant's quota is served from any owner's GPUs of the class.
    owner_hardware: bool = True
    # Sites under their power caps: a start that would take a site's IT power over
    # power_mw / PUE waits (reason "power cap"; see aifactory/scheduler/power.py).
    power_cap: bool = True
    tuning: Tuning = Tuning()

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            msg = f"scheduler config: {problem}"
            raise ValueError(msg)

    def problem(self) -> str | None:
        """The first field out of bounds, as ``"<field>: <what is wrong>"``, or None."""
        if self.policy not in REGISTRY:
            known = ", ".join(p.value for p in REGISTRY)
            return f"policy: unknown '{self.policy}' (known: {known})"
        for name, value in (
            ("restart_overhead_s", self.restart_overhead_s),
            ("checkpoint_write_s", self.checkpoint_write_s),
            ("backfill_interval_s", self.backfill_interval_s),
        ):
            if not (math.isfinite(value) and 0.0 <= value <= MAX_SECONDS):
                return f"{name}: must be from 0 to {MAX_SECONDS:g} s (got {value!r})"
        grace = self.preempt_grace_s
        if not (math.isfinite(grace) and 0.0 <= grace <= MAX_GRACE_S):
            return f"preempt_grace_s: must be from 0 to {MAX_GRACE_S:g} s (got {grace!r})"
        for params in (self.las.problem(), self.fair.problem()):
            if params is not None:
                return params
        if self.backfill_depth < 1:
            return f"backfill_depth: must be at least 1 (got {self.backfill_depth!r})"
        for name, limit in (
            ("queue_depth", self.queue_depth),
            ("max_job_test", self.max_job_test),
            ("preempt_candidates", self.preempt_candidates),
        ):
            if type(limit) is not int or not 0 <= limit <= MAX_SCAN:
                return f"{name}: must be an integer from 0 (no limit) to {MAX_SCAN} (got {limit!r})"
        return None


def job_problem(job: Job) -> str | None:
    """The first field of ``job`` out of bounds, as ``"<field>: <what is wrong>"``; None
    when every field is in bounds. The one check of both the control plane (tenants'
    requests: :meth:`Scheduler.submit` fails the job with it) and the twin (which refuses
    a run up front, naming the job). ``Job`` itself checks little: the twin builds a
    million. ``bool`` is not an integer here; NaN and infinities fail every range."""
    gpus = job.gpus
    if type(gpus) is not int or not 1 <= gpus <= MAX_GPUS:
        return f"gpus: must be an integer from 1 to {MAX_GPUS} (got {gpus!r})"
    try:
        if not 0.0 < job.duration_s <= MAX_SECONDS:
            return f"duration_s: must be > 0 and <= {MAX_SECONDS:g} s (got {job.duration_s!r})"
        if not 0.0 < job.estimate_s <= MAX_SECONDS:
            return f"estimate_s: must be > 0 and <= {MAX_SECONDS:g} s (got {job.estimate_s!r})"
        if not -MAX_SECONDS <= job.submit_s <= MAX_SECONDS:
            return f"submit_s: must be finite, within +-{MAX_SECONDS:g} s (got {job.submit_s!r})"
        interval = job.checkpoint_s
        if interval is not None and not MIN_CHECKPOINT_S <= interval <= MAX_SECONDS:
            return (
                f"checkpoint_s: must be none or from {MIN_CHECKPOINT_S:g} to "
                f"{MAX_SECONDS:g} s (got {interval!r})"
            )
        grace = job.preempt_grace_s
        if grace is not None and not 0.0 <= grace <= MAX_GRACE_S:
            return f"preempt_grace_s: must be none or from 0 to {MAX_GRACE_S:g} s (got {grace!r})"
    except TypeError:  # (pure Python only: compiled, the fields are typed floats)
        return "duration_s, estimate_s, submit_s, checkpoint_s, preempt_grace_s: must be numbers"
    priority = job.priority
    if type(priority) is not int or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        return f"priority: must be an integer within +-{MAX_PRIORITY} (got {priority!r})"
    hbm = job.hbm_gb_per_gpu
    if hbm is not None and not (type(hbm) is float and 0.0 < hbm <= MAX_HBM_GB):
        return f"hbm_gb_per_gpu: must be none or > 0 and <= {MAX_HBM_GB:g} GB (got {hbm!r})"
    classes = job.gpu_classes
    if classes:
        if job.gpu_class is not None:
            return "gpu_classes: give either one gpu_class or several gpu_classes, not both"
        if not 2 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
            return f"gpu_classes: must be 2 to {MAX_CLASSES} different classes (got {classes!r})"
    if job.dataset_bytes != 0.0 or job.grad_bytes != 0.0 or job.step_s != 0.0:
        return _data_problem(job)
    return None


def _data_problem(job: Job) -> str | None:
    """The first of a job's data and spanning fields out of bounds (issue #20 §1)."""
    for name, value, most in (
        ("dataset_bytes", job.dataset_bytes, MAX_DATA_BYTES),
        ("grad_bytes", job.grad_bytes, MAX_DATA_BYTES),
        ("step_s", job.step_s, MAX_STEP_S),
    ):
        if not (type(value) is float and 0.0 <= value <= most):
            return f"{name}: must be a number from 0 to {most:g} (got {value!r})"
    if job.dataset_bytes > 0.0 and not 0 < len(job.data_site) <= MAX_NAME:
        return f"data_site: a job with a dataset names its site (1 to {MAX_NAME} characters)"
    if len(job.dataset) > MAX_NAME:
        return f"dataset: at most {MAX_NAME} characters"
    return None
