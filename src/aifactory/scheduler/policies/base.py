"""What an ordering policy is: a pure function of typed records, no I/O, no clock reads.

The scheduler keeps one pending queue per tenant, ordered by the policy's *job key*
(fixed while the job waits, so queues are heaps, never re-sorted). Queues are merged in
a pass by ``(tenant key, job key)``: the tenant key is 0 for policies that order jobs
globally (fifo, sjf, ...) and a live fair-share value for ``fair``. A policy that is
*preemptive* also ranks running jobs, and a waiting job may evict running jobs of a
strictly worse rank (Tiresias' LAS does this).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from mypy_extensions import mypyc_attr

from aifactory.workload.job import Job


class PolicyName(StrEnum):
    """Registry keys of the ordering policies."""

    FIFO = "fifo"
    SJF = "sjf"
    LAS = "las"
    FAIR = "fair"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """What the fair-share policy may know about a tenant at the start of a pass."""

    decayed_gpus: tuple[float, ...]  # decayed average GPUs in use, per class
    running_gpus: tuple[int, ...]  # GPUs in use now, per class
    weight: float  # entitlement: share of the fleet's nominal quota (> 0)


@mypyc_attr(allow_interpreted_subclasses=True)  # a new policy file works uncompiled
class Policy:
    """Base class: FIFO merge of tenants, no preemption. Subclasses set ``name``."""

    name: ClassVar[PolicyName]
    preemptive: ClassVar[bool] = False
    uses_tenant_keys: ClassVar[bool] = False

    def job_key(self, job: Job) -> tuple[float, ...]:
        """Order inside a tenant queue (and across tenants when tenant keys tie): one or
        two floats, of the same length for every job (queues order by at most two)."""
        return (job.submit_s,)

    def tenant_key(
        self,
        tenant: str,  # noqa: ARG002 (part of the interface; fair share uses it)
        usage: Mapping[str, TenantUsage],  # noqa: ARG002
        capacity: tuple[int, ...],  # noqa: ARG002
    ) -> float:
        """Order of tenants in a pass; lower goes first. Default: all equal."""
        return 0.0

    def rank(self, job: Job, now: float) -> int:  # noqa: ARG002 (non-preemptive default)
        """Preemption rank of a job at ``now``: lower is more important."""
        return 0
