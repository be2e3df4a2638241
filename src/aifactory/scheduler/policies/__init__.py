"""Ordering policies, one file each; adding one is one file and one registry line."""

from __future__ import annotations

from collections.abc import Callable

from aifactory.scheduler.policies.base import Policy, PolicyName, TenantUsage
from aifactory.scheduler.policies.fair import FairPolicy
from aifactory.scheduler.policies.fifo import FifoPolicy
from aifactory.scheduler.policies.las import LasPolicy
from aifactory.scheduler.policies.priority import PriorityPolicy
from aifactory.scheduler.policies.sjf import SjfPolicy

REGISTRY: dict[PolicyName, Callable[[], Policy]] = {}


def register(name: PolicyName, factory: Callable[[], Policy]) -> None:
    """Add a policy; a duplicate key is a programming error."""
    if name in REGISTRY:
        msg = f"policy '{name}' registered twice"
        raise ValueError(msg)
    REGISTRY[name] = factory


register(PolicyName.FIFO, FifoPolicy)
register(PolicyName.SJF, SjfPolicy)
register(PolicyName.LAS, LasPolicy)
register(PolicyName.FAIR, FairPolicy)
register(PolicyName.PRIORITY, PriorityPolicy)


def make_policy(name: str) -> Policy:
    """Instantiate a registered policy by name; ValueError lists the known names."""
    try:
        key = PolicyName(name)
    except ValueError:
        known = ", ".join(p.value for p in REGISTRY)
        msg = f"policy: unknown '{name}' (known: {known})"
        raise ValueError(msg) from None
    return REGISTRY[key]()


__all__ = ["REGISTRY", "Policy", "PolicyName", "TenantUsage", "make_policy", "register"]
