"""Decayed usage per tenant and class, for fair sharing.

Usage is integrated exactly between changes: with ``r`` GPUs held over ``dt`` seconds
and half-life ``h``, the decayed integral ``U`` becomes
``U * 2^(-dt/h) + r * (h / ln 2) * (1 - 2^(-dt/h))``. Dividing ``U`` by ``h / ln 2``
gives a decayed *average* number of GPUs, which is what the fair policy compares.
"""

from __future__ import annotations

import math


class DecayedUsage:
    """Per tenant x class decayed GPU usage, advanced lazily."""

    __slots__ = ("_scale", "decay", "half_life_s", "integral", "last", "running", "total")

    def __init__(
        self, tenants: list[str], n_classes: int, half_life_s: float, *, decay: bool = True
    ) -> None:
        if half_life_s <= 0:
            msg = "fair_half_life_s: must be > 0"
            raise ValueError(msg)
        self.half_life_s = half_life_s
        self._scale = half_life_s / math.log(2.0)
        self.integral = {t: [0.0] * n_classes for t in tenants}
        self.running = {t: [0] * n_classes for t in tenants}
        self.total = dict.fromkeys(tenants, 0)  # GPUs held now, all classes (for sampling)
        self.last = dict.fromkeys(tenants, 0.0)
        self.decay = decay  # False: only current holdings are tracked (no policy reads history)

    def advance(self, tenant: str, now: float) -> None:
        """Bring a tenant's integral up to ``now``."""
        dt = now - self.last[tenant]
        if dt <= 0:
            return
        decay = 2.0 ** (-dt / self.half_life_s)
        grow = self._scale * (1.0 - decay)
        integral = self.integral[tenant]
        running = self.running[tenant]
        for c, value in enumerate(integral):
            integral[c] = value * decay + running[c] * grow
        self.last[tenant] = now

    def change(self, tenant: str, klass: int, gpus: int, now: float) -> None:
        """Record that a tenant's holding of a class changed by ``gpus`` at ``now``."""
        if self.decay:
            self.advance(tenant, now)
        self.running[tenant][klass] += gpus
        self.total[tenant] += gpus

    def average_gpus(self, tenant: str) -> tuple[float, ...]:
        """Decayed average GPUs in use per class (call :meth:`advance` first)."""
        return tuple(v / self._scale for v in self.integral[tenant])
