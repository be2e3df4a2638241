"""Priority classes: higher class first, FIFO within a class."""

from __future__ import annotations

from aifactory.scheduler.policies.base import Policy, PolicyName
from aifactory.workload.job import Job


class PriorityPolicy(Policy):
    """Strict priority classes (e.g. inference 1000 > training 100 > research 0)."""

    name = PolicyName.PRIORITY

    def job_key(self, job: Job) -> tuple[float, ...]:
        """Negated priority, then submit time."""
        return (-float(job.priority), job.submit_s)
