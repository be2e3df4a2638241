"""How much useful work a run has done, given restart overhead and checkpoint writes.

Shared by the scheduler core (to choose victims that lose the least work) and the twin
(to know when a run really ends), so both count the same way. A run first pays its
restart overhead; then progress advances, pausing ``write_s`` after every
``interval_s`` of progress to write a checkpoint. A checkpoint counts once written.
"""

from __future__ import annotations


def run_progress(
    wall_s: float, overhead_s: float, interval_s: float | None, write_s: float
) -> tuple[float, float]:
    """(progress made, progress safely checkpointed) after ``wall_s`` seconds of a run."""
    useful = wall_s - overhead_s
    if useful <= 0:
        return 0.0, 0.0
    if not interval_s:
        return useful, 0.0
    period = interval_s + write_s
    cycles = int(useful // period)
    rest = useful - cycles * period
    return cycles * interval_s + min(rest, interval_s), cycles * interval_s


def unsaved_progress(
    wall_s: float, overhead_s: float, interval_s: float | None, write_s: float
) -> float:
    """Progress made since the last checkpoint after ``wall_s`` seconds of a run: what an
    eviction now would lose (``run_progress``'s difference, without building a tuple:
    preemption asks it for every candidate victim)."""
    useful = wall_s - overhead_s
    if useful <= 0:
        return 0.0
    if not interval_s:
        return useful
    period = interval_s + write_s
    cycles = int(useful // period)
    rest = useful - cycles * period
    saved = cycles * interval_s
    return (saved + min(rest, interval_s)) - saved  # as run_progress's gained - saved


def wall_for(work_s: float, overhead_s: float, interval_s: float | None, write_s: float) -> float:
    """Wall seconds a run needs to do ``work_s`` of progress (inverse of :func:`run_progress`).

    No checkpoint is written at the very end: the job completes instead.
    """
    if work_s <= 0:
        return overhead_s
    if not interval_s or write_s <= 0:
        return overhead_s + work_s
    writes = int(work_s // interval_s)
    if writes and writes * interval_s == work_s:
        writes -= 1
    return overhead_s + work_s + writes * write_s
