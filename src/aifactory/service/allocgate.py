"""The allocation gate of the service's scheduler loop (issue #19).

A pending job of a project is given to the scheduler only when the project's allocations,
active now, can cover its whole request (GPUs x time limit) on top of what the project's
jobs already given to the scheduler may still draw (each reserved at its GPUs x time
limit until its charge is written: Slurm's "safe" limit enforcement, so that many jobs
admitted together cannot overrun a balance together). A job not covered is held here,
its row's reason set to ``allocation: ...`` (shown by ``GET /v1/jobs/{id}``), and offered
again every cycle, so a top-up or an extension lets it start. An allocation that allows
overdraft admits it anyway, at low priority and preemptible.

This gate lives in the loop, outside the scheduler core, for now: it moves into the core's
admission, with a pending reason ``allocation``, once the core has pending reasons (#17).
Running jobs are never stopped for a balance: charges are never refused.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from aifactory.allocations import Cover, Ledger
from aifactory.service.alloc_store import grants_version, ledger_for, replay
from aifactory.service.db import Database
from aifactory.service.tables import job_events, jobs
from aifactory.workload.job import JobState

log = logging.getLogger(__name__)

REASON = "allocation"
_STILL_PENDING = select(jobs.c.id).where(
    jobs.c.id.in_(bindparam("ids", expanding=True)), jobs.c.state == JobState.PENDING.value
)

Row = Mapping[Any, Any]


class AllocationGate:
    """Pending rows of projects in, the rows the scheduler may have out (see module)."""

    def __init__(self, db: Database, rates: Mapping[str, float]) -> None:
        self._db = db
        self._rates = dict(rates)
        self._held: dict[int, Row] = {}  # job id -> row, waiting on its allocation
        self._why: dict[int, str] = {}  # job id -> the reason last written to its row
        self._given: dict[int, tuple[str, str, float, float]] = {}  # id -> reservation
        # (projects, their grants' version, last charge id replayed, ledger): see _ledger
        self._cache: tuple[tuple[int, ...], tuple[Any, ...], int, Ledger] | None = None

    def reset(self) -> None:
        """Forget everything (the loop rebuilds from the database)."""
        self._held.clear()
        self._why.clear()
        self._given.clear()
        self._cache = None

    @property
    def held(self) -> list[int]:
        """Ids of the jobs held back now."""
        return sorted(self._held)

    def reserve(self, rows: Iterable[Row]) -> None:
        """Count running jobs taken over after a restart as given to the scheduler: each
        of a project reserves its GPUs x time limit until its charge is written."""
        for row in rows:
            if row["project_id"] is not None and row["gpu_class"] is not None:
                limit = float(row["time_limit_s"])
                self._given[int(row["id"])] = (
                    str(row["project_id"]),
                    str(row["gpu_class"]),
                    float(row["gpus"]) * limit,
                    limit,
                )

    def admit(self, rows: Iterable[Row], known: Collection[str], now: float) -> list[Row]:
        """The rows to give the scheduler now: every row without a project, and each row of
        a project that is covered; the others (and the held ones still not covered) stay
        held. ``known``: ids the scheduler tracks (their reservations count)."""
        for job_id in [j for j in self._given if str(j) not in known]:
            del self._given[job_id]
        offered: dict[int, Row] = dict(self._held)
        out: list[Row] = []
        for row in rows:
            if row["project_id"] is None:
                out.append(row)
            else:
                offered[int(row["id"])] = row
        if not offered:
            return out
        with self._db.read() as conn:
            pending = {int(r[0]) for r in conn.execute(_STILL_PENDING, {"ids": list(offered)})}
            projects = sorted({int(r["project_id"]) for r in offered.values()})
            ledger = self._ledger(conn, projects)
        for job_id in [j for j in offered if j not in pending]:  # cancelled meanwhile
            offered.pop(job_id)
            self._held.pop(job_id, None)
            self._why.pop(job_id, None)
        for key, (project, gpu_class, gpu_s, limit) in self._given.items():
            ledger.charge(project, gpu_class, gpu_s, now, now + limit, key=f"r{key}")
        held_now: dict[int, str] = {}
        overdraft: list[int] = []
        for job_id in sorted(offered):
            row = offered[job_id]
            project, gpu_class = str(row["project_id"]), row["gpu_class"] or ""
            limit = float(row["time_limit_s"])
            need = float(row["gpus"]) * limit
            cover, why = ledger.explain(project, gpu_class, need, now)
            if cover is Cover.DENIED:
                held_now[job_id] = f"{REASON}: {why}"
                continue
            ledger.charge(project, gpu_class, need, now, now + limit, key=f"r{job_id}")
            self._given[job_id] = (project, gpu_class, need, limit)
            if cover is Cover.OVERDRAFT:
                overdraft.append(job_id)
                row = dict(row) | {"priority_class": "low", "preemptible": True}
            out.append(row)
        self._record(offered, held_now, overdraft, now)
        return sorted(out, key=lambda r: int(r["id"]))

    def _ledger(self, conn: Connection, projects: list[int]) -> Ledger:
        """A what-if copy of the projects' ledger, kept up to date incrementally.

        Invariant: the cached ledger holds the projects' allocations as ``version`` reads
        them and every charge row of id <= ``last``; charge rows are only ever appended,
        by the leader's one thread as intervals end (so ids commit in order), and the rows
        above ``last`` are all it lacks. A change of any allocation, or of the set of
        projects, rebuilds it. (A full replay orders charges by end time; an incremental
        one by arrival. The two can attribute a charge to a different one of several
        eligible allocations, never a different total; a rebuild restores the order.)
        """
        version = grants_version(conn, projects)
        cached = self._cache
        if cached is None or cached[0] != tuple(projects) or cached[1] != version:
            ledger, rows = ledger_for(conn, projects, self._rates)
        else:
            ledger = cached[3]
            rows = replay(conn, ledger, projects, after_id=cached[2])
        last = max([cached[2] if cached else 0, *(int(r["id"]) for r in rows)])
        self._cache = (tuple(projects), version, last, ledger)
        return ledger.copy()

    def _record(
        self,
        offered: Mapping[int, Row],
        held_now: Mapping[int, str],
        overdraft: list[int],
        now: float,
    ) -> None:
        """Write the reasons that changed (held, released, overdraft) on the rows."""
        for job_id, row in offered.items():  # a reason written before a restart
            if str(row.get("reason") or "").startswith(REASON):
                self._why.setdefault(job_id, str(row["reason"]))
        released = [j for j in offered if j not in held_now and j in self._why]
        changed = {j: w for j, w in held_now.items() if self._why.get(j) != w}
        for job_id in released:
            self._why.pop(job_id, None)
        self._held = {j: offered[j] for j in held_now}
        if not (changed or released or overdraft):
            return
        with self._db.write() as conn:
            pending = jobs.c.state == JobState.PENDING.value
            for job_id, why in changed.items():
                conn.execute(update(jobs).where(jobs.c.id == job_id, pending).values(reason=why))
                if job_id not in self._why:
                    conn.execute(
                        insert(job_events).values(
                            job_id=job_id,
                            at=now,
                            state=JobState.PENDING.value,
                            detail=f"waiting: {why}",
                        )
                    )
                self._why[job_id] = why
            for job_id in released:
                conn.execute(update(jobs).where(jobs.c.id == job_id, pending).values(reason=None))
            for job_id in overdraft:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, pending)
                    .values(priority_class="low", preemptible=True)
                )
                conn.execute(
                    insert(job_events).values(
                        job_id=job_id,
                        at=now,
                        state=JobState.PENDING.value,
                        detail="allocation overdraft: runs at low priority, preemptible",
                    )
                )
