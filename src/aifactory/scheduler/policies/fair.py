"""Fair share by dominant share of decayed usage (DRF over GPU classes, with a half-life).

A tenant's usage of a class is its decayed average of GPUs in use (usage decays with a
configurable half-life, as in Slurm's Fair Tree and Kueue's admission fair sharing)
plus what it holds right now. Its share of a class is that usage over the class's
capacity; its *dominant* share is the largest over classes (DRF, Ghodsi et al. NSDI'11).
Tenants are served in order of dominant share divided by their entitlement (their
fraction of the fleet's nominal quota), so an owner of 20% of the fleet is "even" at a
20% share. Within a tenant, jobs go FIFO.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from aifactory.scheduler.policies.base import Policy, PolicyName, TenantUsage

DEFAULT_HALF_LIFE_S = 7 * 86400.0  # Slurm's PriorityDecayHalfLife default is 7 days


@dataclass(frozen=True, slots=True)
class FairParams:
    """Fair share's parameters: how fast past usage is forgotten."""

    half_life_s: float = DEFAULT_HALF_LIFE_S

    def problem(self) -> str | None:
        """The first parameter out of bounds, as ``"<field>: <what is wrong>"``, or None."""
        if not (math.isfinite(self.half_life_s) and self.half_life_s > 0.0):
            return f"fair.half_life_s: must be > 0 (got {self.half_life_s!r})"
        return None


class FairPolicy(Policy):
    """Lowest weighted dominant share goes first; recomputed as jobs start."""

    name = PolicyName.FAIR
    uses_tenant_keys = True

    def tenant_key(
        self, tenant: str, usage: Mapping[str, TenantUsage], capacity: tuple[int, ...]
    ) -> float:
        """Weighted dominant share of decayed plus current usage."""
        u = usage[tenant]
        dominant = 0.0
        for c, cap in enumerate(capacity):
            if cap:
                share = (u.decayed_gpus[c] + u.running_gpus[c]) / (2.0 * cap)
                dominant = max(dominant, share)
        return dominant / u.weight
