"""PostgreSQL bulk statements for the two hot write paths: a batch of submits and a
scheduling cycle's starts.

Why hand-written SQL here, and only for PostgreSQL: each round trip to the server costs
the writing thread a release and re-acquisition of the GIL, which under load (the event
loop thread busy serving HTTP) is the dominant cost, more than the server's own work. A
batch through SQLAlchemy's executemany was five round trips (ids, jobs, "which were
inserted", events, commit), and a cycle's starts one statement per job in a pipeline.
With the rows passed as arrays and ``unnest``, each is one statement of fixed text (so
psycopg prepares it once). SQLite keeps the executemany path: it is in-process, its
executemany is a C loop, and it has no arrays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from aifactory.workload.job import JobState

# One statement: take ids from the table's sequence, insert the jobs (a row whose
# (tenant, idempotency key) is taken is skipped by the unique index), insert the first
# event of each job inserted, and say, per input row, its id and whether it went in.
_SUBMIT = text(
    """
WITH src AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('jobs', 'id')) AS id, u.*
    FROM unnest(
        CAST(:ord AS int[]), CAST(:tenant AS text[]), CAST(:name AS text[]),
        CAST(:gpus AS int[]), CAST(:gpu_class AS text[]), CAST(:command AS text[]),
        CAST(:time_limit_s AS float8[]), CAST(:priority_class AS text[]),
        CAST(:preemptible AS bool[]), CAST(:checkpoint_interval_s AS float8[]),
        CAST(:submitted_at AS float8[]), CAST(:idempotency_key AS text[]),
        CAST(:request_hash AS text[]), CAST(:token_id AS bigint[]),
        CAST(:project_id AS bigint[]), CAST(:gpu_classes AS text[]),
        CAST(:hbm_gb_per_gpu AS float8[]), CAST(:service AS bool[]),
        CAST(:preempt_grace_s AS float8[]), CAST(:data_ask AS text[])
    ) AS u(ord, tenant, name, gpus, gpu_class, command, time_limit_s, priority_class,
           preemptible, checkpoint_interval_s, submitted_at, idempotency_key,
           request_hash, token_id, project_id, gpu_classes, hbm_gb_per_gpu, service,
           preempt_grace_s, data_ask)
),
ins AS (
    INSERT INTO jobs (id, tenant, name, gpus, gpu_class, command, time_limit_s,
                      priority_class, preemptible, checkpoint_interval_s, state,
                      submitted_at, attempts, idempotency_key, request_hash, token_id,
                      project_id, gpu_classes, hbm_gb_per_gpu, service, preempt_grace_s,
                      data_ask)
    SELECT id, tenant, name, gpus, gpu_class, command, time_limit_s, priority_class,
           preemptible, checkpoint_interval_s, :pending, submitted_at, 0,
           idempotency_key, request_hash, token_id, project_id,
           CAST(gpu_classes AS json), hbm_gb_per_gpu, service, preempt_grace_s,
           CAST(data_ask AS json)
    FROM src ORDER BY ord
    ON CONFLICT (tenant, idempotency_key) DO NOTHING
    RETURNING id, submitted_at
),
ev AS (
    INSERT INTO job_events (job_id, at, state, detail)
    SELECT id, submitted_at, :pending, 'submitted' FROM ins
)
SELECT src.ord, src.id, ins.id IS NOT NULL AS inserted
FROM src LEFT JOIN ins ON ins.id = src.id
"""
)

_SUBMIT_COLUMNS = (
    "tenant",
    "name",
    "gpus",
    "gpu_class",
    "command",
    "time_limit_s",
    "priority_class",
    "preemptible",
    "checkpoint_interval_s",
    "submitted_at",
    "idempotency_key",
    "request_hash",
    "token_id",
    "project_id",
    "gpu_classes",  # a list, sent as its JSON text (an array of arrays is not text[])
    "hbm_gb_per_gpu",
    "service",
    "preempt_grace_s",
    "data_ask",  # an object, sent as its JSON text
)
_JSON_COLUMNS = frozenset({"gpu_classes", "data_ask"})


def insert_submits(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[int]:
    """Insert new jobs and their first events; set each row's ``id``; return those inserted.

    ``rows`` are :func:`aifactory.service.store.job_values` dicts. A row whose key is
    already taken gets an id too (from the sequence, unused), but is not in the result.
    """
    params: dict[str, Any] = {
        c: [_json_or_none(row[c]) for row in rows]
        if c in _JSON_COLUMNS
        else [row[c] for row in rows]
        for c in _SUBMIT_COLUMNS
    }
    params["ord"] = list(range(len(rows)))
    params["pending"] = JobState.PENDING.value
    inserted: set[int] = set()
    for ord_, job_id, went_in in conn.execute(_SUBMIT, params):
        rows[int(ord_)]["id"] = int(job_id)
        if went_in:
            inserted.add(int(job_id))
    return inserted


def _json_or_none(value: Any) -> str | None:
    """A JSON column's value as the text the statement casts (None stays SQL NULL)."""
    return None if value is None else json.dumps(value)


# The starts of one cycle: only jobs still pending move (a job the API cancelled since
# the cycle read it is not matched: under READ COMMITTED the UPDATE re-checks the row
# after any concurrent writer commits); the ids returned are the jobs that started.
_START = text(
    """
UPDATE jobs SET state = :running, started_at = :now, placement = CAST(v.placement AS json),
    executor = :executor, handle = NULL, log_path = v.log_path, attempts = jobs.attempts + 1
FROM unnest(CAST(:ids AS bigint[]), CAST(:placements AS text[]), CAST(:log_paths AS text[]))
    AS v(id, placement, log_path)
WHERE jobs.id = v.id AND jobs.state = :pending
RETURNING jobs.id
"""
)


def start_jobs(
    conn: Connection,
    starts: Sequence[tuple[int, list[list[Any]], str]],
    *,
    now: float,
    executor: str,
) -> set[int]:
    """Mark pending jobs running (id, placement, log path each); the ids that moved."""
    params = {
        "ids": [s[0] for s in starts],
        "placements": [json.dumps(s[1]) for s in starts],
        "log_paths": [s[2] for s in starts],
        "now": now,
        "executor": executor,
        "running": JobState.RUNNING.value,
        "pending": JobState.PENDING.value,
    }
    return {int(r[0]) for r in conn.execute(_START, params)}


_EVENTS = text(
    """
INSERT INTO job_events (job_id, at, state, detail)
SELECT * FROM unnest(CAST(:job_id AS bigint[]), CAST(:at AS float8[]),
                     CAST(:state AS text[]), CAST(:detail AS text[]))
"""
)

_ALLOCATIONS = text(
    """
INSERT INTO allocations (node, gpu, job_id, since)
SELECT * FROM unnest(CAST(:node AS text[]), CAST(:gpu AS int[]),
                     CAST(:job_id AS bigint[]), CAST(:since AS float8[]))
"""
)

_HANDLES = text(
    """
UPDATE jobs SET handle = v.handle
FROM unnest(CAST(:ids AS bigint[]), CAST(:handles AS text[])) AS v(id, handle)
WHERE jobs.id = v.id
"""
)


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    return {n: [row[n] for row in rows] for n in names}


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``job_events`` rows (job_id, at, state, detail) in one statement."""
    conn.execute(_EVENTS, _columns(rows, ("job_id", "at", "state", "detail")))


def insert_allocations(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``allocations`` rows (node, gpu, job_id, since) in one statement."""
    conn.execute(_ALLOCATIONS, _columns(rows, ("node", "gpu", "job_id", "since")))


def set_handles(conn: Connection, handles: Sequence[tuple[int, str]]) -> None:
    """Record executor handles (job id, handle) in one statement."""
    conn.execute(_HANDLES, {"ids": [h[0] for h in handles], "handles": [h[1] for h in handles]})
