"""The scheduler's records of what it decided: a pass's result.

Decides nothing. A :class:`CycleResult` is made by one pass and read by its caller (the
twin's simulator, the service loop, forecasts); the scheduler never reads one back.
"""

from __future__ import annotations

from typing import Final

from aifactory.workload.job import Job


class CycleResult:
    """What one pass decided: jobs started and jobs preempted, in decision order, and
    when the caller should run a pass even if nothing happens before (``wakeup_s``: a
    backfill scan or a preemption search is due then; None when this pass asks for no
    wake-up, and a wake-up an earlier pass asked for still stands)."""

    __slots__ = ("preempted", "started", "wakeup_s")

    def __init__(self) -> None:
        self.started: list[Job] = []
        self.preempted: list[Job] = []
        self.wakeup_s: float | None = None


# What a pass that decided nothing returns: one shared instance (read-only by contract),
# since most passes on a lightly loaded fleet decide nothing.
NOTHING: Final = CycleResult()
