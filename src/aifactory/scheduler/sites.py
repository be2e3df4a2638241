"""Global dispatch: which site a job that is not pinned to one should run at.

Decides the site by the earliest expected finish, as a global dispatcher in front of
several clusters does (Kueue's MultiKueue dispatches a workload to a worker cluster that
can admit it; Meta's MAST places a training job, and its data, on the region that
finishes it soonest): for each candidate site, the job could start when it has GPUs there
and its data is there, and finishes its estimated run (stretched by any slowdown) after.
Pure: the caller (the twin's staging, :mod:`aifactory.twin.staging`) says, per site, when
GPUs are expected to be free and when the data would be there.

Two ways to wait for data (``Job.stage_hold``): by default a job waits for its copy
without GPUs and is placed when the data is there, so a site is ready at
``max(gpus free, data there)``; a job that holds its GPUs from placement takes them when
they are free and then waits for a copy that starts only then, so it is ready at
``gpus free + staging time``. Ties go to the site that already has the data (no bytes to
move), then to the lowest site index (the fleet file's order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SiteOption:
    """One candidate site: when GPUs for the whole gang are expected to be free there
    (``gpus_at_s``), seconds its data needs to get there from when the copy starts
    (``stage_s``, 0 where it is), and the run there (``run_s``, slowdown included)."""

    site: int
    gpus_at_s: float
    stage_s: float
    run_s: float


def ready_at(option: SiteOption, now: float, *, hold: bool) -> float:
    """When the job could start work at the option's site (see the module's doc)."""
    if hold:
        return option.gpus_at_s + option.stage_s
    return max(option.gpus_at_s, now + option.stage_s)


def choose_site(options: Sequence[SiteOption], now: float, *, hold: bool = False) -> int:
    """The site of the option with the earliest expected finish; raises on no option."""
    if not options:
        msg = "choose_site: no candidate site"
        raise ValueError(msg)
    best = min(
        options,
        key=lambda o: (ready_at(o, now, hold=hold) + o.run_s, o.stage_s > 0.0, o.site),
    )
    return best.site
