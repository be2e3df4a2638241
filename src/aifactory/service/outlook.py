"""The pending jobs' outlook (why each waits, when it is expected to start), kept in memory
and recomputed off the request path (issue #21 §1: a queue page of 30,000 pending jobs in
under a second).

One computation is one fork of the database's state (:func:`~.forks.fork_state`): the
twin run forward on it for the expected starts (:func:`~aifactory.twin.forecast.forecast`),
then one scheduling pass on it for the reasons. It is redone only when the state has
changed (its *version*: the newest ``job_events`` id, which every submit, start, end,
preemption and cancel moves) and the last one is at least ``refresh_s`` old, or when the
last one is ``max_age_s`` old (time moves estimates even when nothing happens). So an
outlook served is at most ``refresh_s`` plus one computation behind the database.

Who waits for it: the very first caller, and every caller while a computation is cheap
(under ``sync_s``: a small fleet's state, answered fresh as before); when it is not, the
caller gets the last outlook at once and one background thread computes the next.
``refresh_s`` grows with the cost (five times the last computation), so a big queue is
not forked back to back.

Only the first ``FORECAST_JOBS`` pending jobs in queue order get an expected start; the
rest have none (null), as Slurm's ``squeue --start`` shows N/A for jobs beyond the
backfill scheduler's ``bf_max_job_test`` (Slurm's slurm.conf documentation; default
500): simulating every one of 30,000 jobs forward is a pass per job, seconds per
thousand jobs in pure Python. Reasons are given for every pending job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from aifactory.fleet.topology import Topology
from aifactory.service.db import Database
from aifactory.service.forks import fork_state
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import job_events

log = logging.getLogger(__name__)

FORECAST_JOBS = 1000  # pending jobs, in queue order, that get an expected start
REFRESH_S = 1.0  # the least time between two computations (raised for costly ones)
MAX_AGE_S = 60.0  # an outlook of an unchanged state is redone after this
SYNC_S = 0.25  # a computation cheaper than this is waited for (the answer is fresh)
VERSION_CHECK_S = 0.2  # the version is read at most this often


@dataclass(frozen=True, slots=True)
class Outlook:
    """The pending jobs' reasons and every forecast job's (start, end), as of ``at``."""

    version: int
    at: float
    starts: dict[str, tuple[float, float]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    cost_s: float = 0.0


def compute(db: Database, topo: Topology, settings: ServiceSettings, now: float) -> Outlook:
    """One outlook, from one fork of the database (see the module)."""
    # The twin is imported on the first forecast, not when the API starts.
    from aifactory.twin.forecast import forecast  # noqa: PLC0415

    t0 = time.perf_counter()
    version = state_version(db)
    sched = fork_state(db, topo, settings, now)
    starts = dict(forecast(sched, now, max_jobs=FORECAST_JOBS))  # reads the fork, no change
    sched.schedule(now)
    reasons: dict[str, str] = {}
    for job in sched.waiting():
        reason = sched.pending_reason(job)
        if reason is not None:
            reasons[job.id] = reason
    return Outlook(version, now, starts, reasons, time.perf_counter() - t0)


def state_version(db: Database) -> int:
    """The newest job event's id: it changes whenever a job's state does."""
    with db.read() as conn:
        return int(conn.execute(select(func.max(job_events.c.id))).scalar() or 0)


class OutlookCache:
    """The last outlook, and at most one computation of the next (see the module)."""

    def __init__(
        self,
        make: Callable[[float], Outlook],
        version: Callable[[], int],
        clock: Callable[[], float],
        *,
        refresh_s: float = REFRESH_S,
        max_age_s: float = MAX_AGE_S,
        sync_s: float = SYNC_S,
    ) -> None:
        self._make = make
        self._version = version
        self._clock = clock
        self.refresh_s = refresh_s
        self.max_age_s = max_age_s
        self.sync_s = sync_s
        self._lock = threading.Lock()  # guards the fields below
        self._compute_lock = threading.Lock()  # one computation at a time
        self._current: Outlook | None = None
        self._seen = 0  # the version last read
        self._seen_at = -1e18
        self._busy = False
        self._closed = False

    def get(self) -> Outlook:
        """The outlook to answer with now (see the module for when it is recomputed)."""
        now = self._clock()
        with self._lock:
            current = self._current
            if current is not None and not self._due(current, now):
                return current
            if current is not None and (self._busy or current.cost_s >= self.sync_s):
                self._start_background()
                return current
        return self._refresh()

    def _due(self, current: Outlook, now: float) -> bool:
        """Whether ``current`` should be redone (the caller holds the lock)."""
        age = now - current.at
        if age >= self.max_age_s:
            return True
        if age < max(self.refresh_s, 5.0 * current.cost_s):
            return False
        if now - self._seen_at >= VERSION_CHECK_S:
            self._seen, self._seen_at = self._version(), now
        return self._seen != current.version

    def _refresh(self) -> Outlook:
        """Compute the next outlook here (one caller computes; the others wait for it)."""
        with self._compute_lock:
            with self._lock:
                current = self._current
                if current is not None and not self._due(current, self._clock()):
                    return current  # computed by the caller this one waited for
            made = self._make(self._clock())
            with self._lock:
                self._current = made
                self._seen, self._seen_at = made.version, made.at
            return made

    def close(self, timeout: float = 10.0) -> None:
        """Start no more background computations and wait for the one in flight, so a
        stopped service has no thread left reading its database."""
        with self._lock:
            self._closed = True
        if self._compute_lock.acquire(timeout=timeout):
            self._compute_lock.release()

    def _start_background(self) -> None:
        """A thread of its own computes the next outlook (the caller holds the lock)."""
        if self._busy or self._closed:
            return
        self._busy = True
        threading.Thread(target=self._background, name="outlook", daemon=True).start()

    def _background(self) -> None:
        try:
            self._refresh()
        except Exception:  # the last outlook stays; the next call tries again
            log.exception("computing the queue's outlook failed")
        finally:
            with self._lock:
                self._busy = False
