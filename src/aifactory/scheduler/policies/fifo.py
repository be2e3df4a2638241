"""First in, first out: by submit time, across all tenants."""

from __future__ import annotations

from aifactory.scheduler.policies.base import Policy, PolicyName


class FifoPolicy(Policy):
    """Jobs start in the order they were submitted."""

    name = PolicyName.FIFO
