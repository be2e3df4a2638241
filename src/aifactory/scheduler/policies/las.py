"""Tiresias-style discretised two-dimensional least attained service (2D-LAS).

Attained service is GPUs x executed seconds. Jobs fall into K priority queues by
attained service, with thresholds between them; lower queues go first, FIFO within a
queue (Gu et al., "Tiresias", NSDI'19, §3.2: discretised 2D-LAS with K queues, FIFO in
each, which the paper shows needs only K = 2 queues). The policy is preemptive: a
waiting job may evict running jobs that have sunk to a strictly lower queue, which is
how Tiresias keeps short jobs from waiting behind long ones.

Default threshold: one, at 3,600 GPU-seconds (assumption: the paper tunes thresholds
per trace; one GPU-hour separates Philly's many short jobs from its long ones).
Not modelled: Tiresias' starvation knob that promotes long-waiting jobs back to Q0.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from aifactory.scheduler.policies.base import Policy, PolicyName
from aifactory.workload.job import Job

DEFAULT_THRESHOLDS: tuple[float, ...] = (3600.0,)


@dataclass(frozen=True, slots=True)
class LasParams:
    """LAS's parameters: the queue bounds, in GPU-seconds of attained service."""

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS

    def problem(self) -> str | None:
        """The first parameter out of bounds, as ``"<field>: <what is wrong>"``, or None."""
        t = self.thresholds
        if not all(math.isfinite(x) and x > 0 for x in t) or list(t) != sorted(t):
            return f"las.thresholds: must be positive, finite and increasing (got {t!r})"
        return None


class LasPolicy(Policy):
    """Least attained service first, in discrete queues."""

    name = PolicyName.LAS
    preemptive = True

    def __init__(self, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS) -> None:
        if any(t <= 0 for t in thresholds) or list(thresholds) != sorted(thresholds):
            msg = "las thresholds: must be positive and increasing"
            raise ValueError(msg)
        self.thresholds = thresholds

    def queue_of(self, attained_gpu_s: float) -> int:
        """Queue index for an amount of attained service."""
        return bisect_right(self.thresholds, attained_gpu_s)

    def job_key(self, job: Job) -> tuple[float, ...]:
        """Queue index by attained service, then submit time (FIFO in a queue)."""
        return (float(self.queue_of(job.attained)), job.submit_s)

    def rank(self, job: Job, now: float) -> int:
        """Queue index including service attained in the current run (if running)."""
        attained = job.attained
        if job.state == "running":
            attained += job.gpus * max(0.0, now - job.run_start_s)
        return self.queue_of(attained)
