"""What a new leader does with a running row whose attempt is not running: whether the job
waits again or fails (the attempt was never started, or the backend lost it)."""

from __future__ import annotations

import logging

from sqlalchemy import RowMapping

from aifactory.service.db import Database
from aifactory.service.executors.base import Status
from aifactory.service.jobrows import end_row, requeue_row
from aifactory.service.settings import LostPolicy, ServiceSettings
from aifactory.workload.job import JobState

log = logging.getLogger(__name__)


def requeue_unstarted(
    db: Database, settings: ServiceSettings, row: RowMapping, now: float
) -> RowMapping | None:
    """An attempt whose intent was committed and that the backend never started: it
    never ran, so it waits again (the row returned), or fails once it has had
    ``max_attempts`` intents (None)."""
    job_id, attempts = int(row["id"]), int(row["attempts"])
    with db.write() as conn:
        if attempts >= settings.max_attempts:
            end_row(
                conn,
                job_id,
                JobState.FAILED,
                now,
                None,
                reason=f"attempt {attempts} was never started; no attempts left",
            )
            return None
        requeue_row(conn, job_id, now, f"attempt {attempts} was not started before a restart")
    log.warning("job %s: attempt %d was never started; requeued", job_id, attempts)
    return row


def requeue_lost(
    db: Database, settings: ServiceSettings, row: RowMapping, status: Status, now: float
) -> bool:
    """Apply the lost policy to a running job the executor no longer knows; whether it
    waits again."""
    job_id = int(row["id"])
    attempts = int(row["attempts"])
    requeue = settings.lost_policy is LostPolicy.REQUEUE and attempts < settings.max_attempts
    with db.write() as conn:
        if requeue:
            requeue_row(conn, job_id, now, f"lost: {status.detail}; requeued")
        else:
            end_row(conn, job_id, JobState.FAILED, now, status, reason=f"lost: {status.detail}")
    log.warning("job %s lost (%s): %s", job_id, status.detail, "requeued" if requeue else "failed")
    return requeue
