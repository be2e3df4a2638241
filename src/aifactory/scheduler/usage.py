"""Decayed usage per tenant and class, for fair sharing.

Usage is integrated exactly between changes: with ``r`` GPUs held over ``dt`` seconds
and half-life ``h``, the decayed integral ``U`` becomes
``U * 2^(-dt/h) + r * (h / ln 2) * (1 - 2^(-dt/h))``. Dividing ``U`` by ``h / ln 2``
gives a decayed *average* number of GPUs, which is what the fair policy compares.
"""

from __future__ import annotations

import math


class DecayedUsage:
    """Per tenant x class decayed GPU usage, advanced lazily (tenants by index)."""

    __slots__ = ("_scale", "decay", "half_life_s", "integral", "last", "running", "total")

    def __init__(
        self, n_tenants: int, n_classes: int, half_life_s: float, *, decay: bool = True
    ) -> None:
        if half_life_s <= 0:
            msg = "fair.half_life_s: must be > 0"
            raise ValueError(msg)
        self.half_life_s = half_life_s
        self._scale = half_life_s / math.log(2.0)
        self.integral = [[0.0] * n_classes for _ in range(n_tenants)]
        self.running = [[0] * n_classes for _ in range(n_tenants)]
        self.total = [0] * n_tenants  # GPUs held now, all classes (for sampling)
        self.last = [0.0] * n_tenants
        self.decay = decay  # False: only current holdings are tracked (no policy reads history)

    def advance(self, t: int, now: float) -> None:
        """Bring tenant ``t``'s integral up to ``now``."""
        dt = now - self.last[t]
        if dt <= 0:
            return
        decay = 2.0 ** (-dt / self.half_life_s)
        grow = self._scale * (1.0 - decay)
        integral = self.integral[t]
        running = self.running[t]
        for c, value in enumerate(integral):
            integral[c] = value * decay + running[c] * grow
        self.last[t] = now

    def change(self, t: int, gpu_class: int, gpus: int, now: float) -> None:
        """Record that tenant ``t``'s holding of a class changed by ``gpus`` at ``now``."""
        if self.decay:
            self.advance(t, now)
        # (x[i] = x[i] + d, not x[i] += d: compiled, an augmented item assignment is a generic
        # PyNumber_InPlaceAdd on boxed objects; spelled out, the add is typed)
        row = self.running[t]
        row[gpu_class] = row[gpu_class] + gpus
        self.total[t] = self.total[t] + gpus

    def average_gpus(self, t: int) -> tuple[float, ...]:
        """Decayed average GPUs in use per class (call :meth:`advance` first)."""
        return tuple(v / self._scale for v in self.integral[t])
