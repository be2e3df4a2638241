"""A run's progress with restart overhead and checkpoint writes (workload.progress)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from aifactory.scheduler.config import MAX_SECONDS, MIN_CHECKPOINT_S
from aifactory.workload.progress import run_progress, unsaved_progress, wall_for


def test_run_progress_by_hand() -> None:
    # 60 s overhead, then cycles of 600 s work + 30 s write: after 1,500 s, 1,440 s
    # useful = 2 cycles (1,260 s, 1,200 s saved) + 180 s unsaved.
    assert run_progress(1500.0, 60.0, 600.0, 30.0) == (1380.0, 1200.0)
    assert unsaved_progress(1500.0, 60.0, 600.0, 30.0) == 180.0
    # Still paying the overhead: nothing done, nothing to lose.
    assert run_progress(30.0, 60.0, 600.0, 30.0) == (0.0, 0.0)
    assert unsaved_progress(30.0, 60.0, 600.0, 30.0) == 0.0
    # No checkpoints: everything after the overhead is unsaved.
    assert unsaved_progress(1500.0, 60.0, None, 30.0) == 1440.0
    # Writing a checkpoint: the cycle's work is done but not saved yet.
    assert unsaved_progress(60.0 + 610.0, 60.0, 600.0, 30.0) == 600.0


SECONDS = st.floats(0, 600, allow_nan=False)  # restart overheads and checkpoint writes
INTERVALS = st.one_of(st.none(), st.floats(10, 1e5, allow_nan=False))


@given(st.floats(0, 1e7, allow_nan=False), SECONDS, INTERVALS, SECONDS)
def test_unsaved_progress_is_exactly_gained_minus_saved(
    wall: float, overhead: float, interval: float | None, write: float
) -> None:
    # Exactly, not approximately: preemption orders victims by it, and a different
    # rounding could reorder ties.
    gained, saved = run_progress(wall, overhead, interval, write)
    assert unsaved_progress(wall, overhead, interval, write) == gained - saved


@given(st.floats(1, 1e6, allow_nan=False), SECONDS, INTERVALS, SECONDS)
def test_wall_for_inverts_run_progress(
    work: float, overhead: float, interval: float | None, write: float
) -> None:
    wall = wall_for(work, overhead, interval, write)
    gained, _ = run_progress(wall, overhead, interval, write)
    assert abs(gained - work) <= 1e-6 * max(1.0, work)


ACCEPTED_INTERVALS = st.floats(MIN_CHECKPOINT_S, MAX_SECONDS)  # what the core lets in


@given(st.floats(0, 1e300), SECONDS, ACCEPTED_INTERVALS, SECONDS)
def test_progress_math_is_finite_for_every_accepted_interval(
    wall: float, overhead: float, interval: float, write: float
) -> None:
    """The scheduler refuses checkpoint intervals below a second (a subnormal one made
    the cycle count infinite and int() raise in every pass): for every interval it
    accepts, any finite run time gives finite results, with nothing raised. (Only
    finiteness: past 2**53 s a float cannot hold a run time to the second anyway.)"""
    gained, saved = run_progress(wall, overhead, interval, write)
    unsaved = unsaved_progress(wall, overhead, interval, write)
    assert all(math.isfinite(x) for x in (gained, saved, unsaved))
    assert math.isfinite(wall_for(min(wall, MAX_SECONDS), overhead, interval, write))
