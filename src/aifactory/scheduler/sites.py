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

A job that may span sites has one more option when its data's site has some free GPUs
of a class but too few: *span from the data's site*, a gang over the data site's free
GPUs and the rest at other sites, ready now, whose run is stretched by the inter-site
all-reduce (:func:`aifactory.physics.comm.span_slowdown`; the caller prices it). It reads
its data from the data's site over the links (its part away from the data streams its
shards; nothing is copied first). Spanning must beat waiting: it is taken only when it
finishes strictly sooner than every single-site option (ties go to a single site).
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
    spans: bool = False  # a gang spanning from ``site`` (the data's) to others


def finish_at(option: SiteOption, now: float, *, hold: bool) -> float:
    """When the job would finish on the option."""
    return ready_at(option, now, hold=hold) + option.run_s


def ready_at(option: SiteOption, now: float, *, hold: bool) -> float:
    """When the job could start work at the option's site (see the module's doc)."""
    if hold:
        return option.gpus_at_s + option.stage_s
    return max(option.gpus_at_s, now + option.stage_s)


def choose(options: Sequence[SiteOption], now: float, *, hold: bool = False) -> SiteOption:
    """The option with the earliest expected finish (ties: a single site, then one with
    the data, then the lowest index); raises on no option."""
    if not options:
        msg = "choose_site: no candidate site"
        raise ValueError(msg)
    return min(
        options,
        key=lambda o: (finish_at(o, now, hold=hold), o.spans, o.stage_s > 0.0, o.site),
    )


def choose_site(options: Sequence[SiteOption], now: float, *, hold: bool = False) -> int:
    """The site of :func:`choose`'s option."""
    return choose(options, now, hold=hold).site
