"""Schedulers the service builds: the leader's, configured as the service is, and forks of
the database's state that answer forecasts, quota views and pending reasons.

Decides nothing itself: a fork is the same scheduler core run on a consistent snapshot,
so any replica can answer without touching the leader's live scheduler (which its own
thread mutates).
"""

from __future__ import annotations

import logging

from aifactory.fleet.topology import Topology
from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.scheduler.scheduler import Scheduler
from aifactory.service.db import Database
from aifactory.service.isolation import why
from aifactory.service.jobrows import live_jobs, scheduler_from_rows
from aifactory.service.settings import ServiceSettings

log = logging.getLogger(__name__)


def new_scheduler(
    topo: Topology, settings: ServiceSettings, *, power_cap: bool = True
) -> Scheduler:
    """A fresh scheduler configured as the service is (``power_cap``: whether sites are held
    under their power caps; the service's own scheduler always is, a what-if may not)."""
    return Scheduler(
        topo,
        SchedulerConfig(
            policy=settings.policy,
            backfill=BackfillMode(settings.backfill),
            preempt_grace_s=settings.preempt_grace_s,
            power_cap=power_cap,
        ),
    )


def fork_state(db: Database, topo: Topology, settings: ServiceSettings, now: float) -> Scheduler:
    """A scheduler rebuilt from the database alone, for forecasts and quota views.

    Any replica can answer these without touching the leader's live scheduler (which is
    mutated by its own thread); the database is one transaction's consistent snapshot.
    """
    with db.read() as conn:
        rows = live_jobs(conn)
    # A row the core refuses is left out of the view (the leader fails that job on its
    # next cycle); it must not make every tenant's forecast or quota view fail.
    sched, left_out = scheduler_from_rows(new_scheduler(topo, settings), rows, now, strict=False)
    for row_id, exc in left_out:
        log.warning("job %s left out of a forked view: %s", row_id, why(exc))
    return sched
