"""Future arrivals for the live what-if's ``workload_growth`` (issue #21 §1 with #20 §2): what
the tenants are expected to submit over the forecast's horizon, drawn from what they submitted
lately.

The model: each tenant submits as a stationary Poisson process at its rate over the last
``days`` (its submissions in ``[now - days, now)``, every state, counted from the database:
the live queue's own jobs submitted in that window are part of the rate), and each arrival is
one of those submissions drawn uniformly with replacement (its GPUs, class, time limit,
priority, data and the rest, as the row says), submitted at a time uniform over
``(now, now + horizon]``. A tenant grown by ``g`` submits at ``g`` times its rate. Only the
most recent :data:`HISTORY_ROWS` submissions are read; when the window holds more, the rate
is over the time those span instead.

The draws are seeded per (seed, sample, tenant) and made so that a variant's arrivals
contain the base's: at ``g >= 1`` the base's arrivals plus ``g - 1`` times the rate from a
second stream, at ``g < 1`` the base's arrivals each kept with probability ``g`` (thinning
a Poisson process gives one at the thinned rate). A tenant not grown draws exactly the same
arrivals in both forecasts, so a difference between them is the growth's, not the draw's.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, RowMapping, select

from aifactory.service.jobrows import TO_JOB_COLUMNS, to_job
from aifactory.service.tables import jobs
from aifactory.workload.job import Job

DAY = 86_400.0
HISTORY_ROWS = 50_000  # submissions read at most: the rate and the shapes drawn from
MAX_ARRIVALS = 200_000  # arrivals one forecast may draw, whatever the job limit says
ARRIVAL_PREFIX = "arrival-"  # drawn jobs' ids (a live job's id is a number)


class TooManyArrivalsError(Exception):
    """A draw past its bound (the what-if's job limit left, or :data:`MAX_ARRIVALS`)."""

    def __init__(self, drawn: int, bound: int) -> None:
        super().__init__(f"{drawn:,} arrivals drawn, more than {bound:,}")
        self.drawn = drawn
        self.bound = bound


@dataclass(frozen=True, slots=True)
class History:
    """Each tenant's recent submissions and the seconds their rate is over."""

    rows: dict[str, list[RowMapping]]
    span_s: float

    def rate_per_s(self, tenant: str) -> float:
        """The tenant's submissions per second over the window."""
        return len(self.rows.get(tenant, ())) / self.span_s


def read_history(conn: Connection, now: float, days: float) -> History:
    """The submissions of ``[now - days, now)``, the most recent :data:`HISTORY_ROWS`,
    by tenant."""
    start = now - days * DAY
    got = list(
        conn.execute(
            select(*TO_JOB_COLUMNS)
            .where(jobs.c.submitted_at >= start, jobs.c.submitted_at < now)
            .order_by(jobs.c.id.desc())
            .limit(HISTORY_ROWS)
        ).mappings()
    )
    span = days * DAY
    if len(got) == HISTORY_ROWS:  # the window holds more: the rate over what was read
        span = max(now - min(float(r["submitted_at"]) for r in got), 1.0)
    by: dict[str, list[RowMapping]] = {}
    for row in reversed(got):  # (oldest first: a draw's index is stable for a snapshot)
        by.setdefault(str(row["tenant"]), []).append(row)
    return History(by, span)


@dataclass(frozen=True, slots=True)
class Draw:
    """One forecast's arrivals in time order: when, and the submission each copies."""

    times: list[float]
    rows: list[RowMapping]

    def jobs(self) -> list[Job]:
        """The arrivals as jobs, made anew for each run (a run changes its jobs); a row
        ``to_job`` refuses (a shape the API would not take) is left out."""
        out: list[Job] = []
        for k, (t, row) in enumerate(zip(self.times, self.rows, strict=True)):
            try:
                out.append(to_job({**row, "id": f"{ARRIVAL_PREFIX}{k}", "submitted_at": t}))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def by_tenant(self) -> dict[str, int]:
        """Arrivals per tenant."""
        out: dict[str, int] = {}
        for row in self.rows:
            t = str(row["tenant"])
            out[t] = out.get(t, 0) + 1
        return out


def _rng(seed: int, sample: int, tenant: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, sample, zlib.crc32(tenant.encode()), stream])


def draw(
    history: History,
    now: float,
    horizon_s: float,
    growth: Mapping[str, float],
    seed: int,
    sample: int,
    bound: int,
) -> Draw:
    """The arrivals of one forecast (see the module's doc for the model); raises
    :class:`TooManyArrivalsError` once more than ``bound`` are drawn, before any is made."""
    plan: list[tuple[str, np.random.Generator, int, float]] = []
    total = 0
    for tenant in sorted(history.rows):
        mean = history.rate_per_s(tenant) * horizon_s
        g = growth.get(tenant, 1.0)
        base = _rng(seed, sample, tenant, 0)
        n = int(base.poisson(mean))
        plan.append((tenant, base, n, min(g, 1.0)))
        total += n
        if g > 1.0:
            more = _rng(seed, sample, tenant, 1)
            m = int(more.poisson(mean * (g - 1.0)))
            plan.append((tenant, more, m, 1.0))
            total += m
        if total > bound:
            raise TooManyArrivalsError(total, bound)
    times: list[float] = []
    picked: list[RowMapping] = []
    for tenant, rng, n, keep in plan:
        rows = history.rows[tenant]
        at = now + horizon_s * (1.0 - rng.random(n))  # (now, now + horizon]
        which = rng.integers(len(rows), size=n)
        kept = rng.random(n) < keep if keep < 1.0 else np.ones(n, dtype=bool)
        times.extend(float(t) for t in at[kept])
        picked.extend(rows[int(i)] for i in which[kept])
    order = sorted(range(len(times)), key=lambda i: (times[i], i))
    return Draw([times[i] for i in order], [picked[i] for i in order])
