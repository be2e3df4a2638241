"""Group commit for submits: many concurrent ``POST /v1/jobs`` in one transaction.

Each submit used to be its own transaction, so the submit rate was bounded by commits
per second (and, on SQLite, by one process-wide write lock). Here the API hands a
validated request to :class:`SubmitBatcher` and waits; one writer thread takes whatever
requests have queued up, inserts them all in one transaction, commits, and only then
completes each request. So the rule "a job is committed before its 201 is sent" holds
per request, and a ``kill -9`` can only lose requests that had no answer yet.

There is no timer: while one batch commits, the next one queues. Under light load a
batch is one request and adds no wait; under heavy load batches grow (up to
``max_batch``) and the cost of a commit is shared.

Failure isolation: if a batch fails as a whole because of one of its rows (a constraint
the database enforces, bad data), each of its requests is retried on its own through
:func:`aifactory.service.store.submit`, so one bad request fails alone and the others
are committed exactly once (a failed transaction commits nothing, so none is doubled).
If the database itself is failing (:data:`aifactory.service.errors.OUTAGE_ERRORS`: down,
unreachable, locked, a dropped connection), every request of the batch gets that error at
once (the API answers 503). A value the database refuses (``DataError``, which the API's
bounds should have caught first) fails its own request alone, as a 422.

Idempotency within a batch: a key repeated inside one batch is inserted once and the
repeats answer as retries of it (200, or 409 for a different body), as they would have
if they had come one after the other. A key already in the database is caught by the
unique index during the INSERT (``ON CONFLICT DO NOTHING``); only then is the existing
row read, to answer the retry with it. (Reading keys first was slower, and on PostgreSQL
the planner, with stale statistics, served that read by scanning a tenant's every job.)

The INSERTs themselves: :func:`_insert_sqlite` (executemany) on SQLite,
:func:`aifactory.service.bulk_pg.insert_submits` (one statement) on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from aifactory.service import bulk_pg, store
from aifactory.service.db import Database
from aifactory.service.errors import OUTAGE_ERRORS
from aifactory.service.schemas import JobSubmit
from aifactory.service.tables import job_events, jobs
from aifactory.workload.job import JobState

log = logging.getLogger(__name__)

MAX_BATCH = 256

Outcome = store.Submitted | Exception  # an exception goes to its request alone


@dataclass(slots=True)
class SubmitRequest:
    """One validated submit, as the API hands it over."""

    req: JobSubmit
    tenant: str
    token_id: int
    now: float
    idempotency_key: str | None
    # Where the outcome goes: a thread's future, or an event loop's (see _deliver).
    future: Future[store.Submitted] | None = None
    waiter: asyncio.Future[store.Submitted] | None = None

    def values(self) -> dict[str, Any]:
        """The row this request inserts."""
        return store.job_values(
            self.req,
            tenant=self.tenant,
            token_id=self.token_id,
            now=self.now,
            idempotency_key=self.idempotency_key,
        )


# Built once: constructing a Core statement costs more than executing a cached one.
_MAX_ID = select(func.coalesce(func.max(jobs.c.id), 0))
_IDS_PRESENT = select(jobs.c.id).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_JOBS = insert(jobs)
_INSERT_JOBS_NEW_KEYS = sqlite_insert(jobs).on_conflict_do_nothing(
    index_elements=[jobs.c.tenant, jobs.c.idempotency_key]
)
_INSERT_EVENTS = insert(job_events)


def _insert_sqlite(conn: Connection, rows: list[dict[str, Any]], *, keyed: bool) -> set[int]:
    """Insert new jobs and their first events; set each row's ``id``; return those inserted.

    Ids are chosen before the INSERT, so one executemany needs no RETURNING to tell which
    id went to which request: the write transaction (``BEGIN IMMEDIATE``) excludes every
    other writer, so the ids above the current maximum are free, and they stay in commit
    order as the scheduler loop's ingest expects. Rows with an Idempotency-Key go in with
    ``ON CONFLICT (tenant, idempotency_key) DO NOTHING``: the unique index answers "is
    this key new?" with no read before the write; only a row so skipped is looked up.
    """
    top = int(conn.execute(_MAX_ID).scalar_one())
    for n, row in enumerate(rows, start=top + 1):
        row["id"] = n
    tried = {int(row["id"]) for row in rows}
    if not keyed:
        conn.execute(_INSERT_JOBS, rows)
        inserted = tried
    elif conn.execute(_INSERT_JOBS_NEW_KEYS, rows).rowcount == len(rows):
        inserted = tried  # no key was taken: the common case needs no read-back
    else:
        got = conn.execute(_IDS_PRESENT, {"ids": sorted(tried)})
        inserted = {int(r[0]) for r in got}
    events = [
        {
            "job_id": row["id"],
            "at": row["submitted_at"],
            "state": JobState.PENDING.value,
            "detail": "submitted",
        }
        for row in rows
        if row["id"] in inserted
    ]
    if events:
        conn.execute(_INSERT_EVENTS, events)
    return inserted


def _existing_keys(
    conn: Connection, keyed: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Mapping[Any, Any]]:
    """Rows already holding any of these (tenant, idempotency key) pairs."""
    if not keyed:
        return {}
    tenants = sorted({t for t, _ in keyed})
    keys = sorted({k for _, k in keyed})
    rows = conn.execute(
        select(jobs).where(and_(jobs.c.tenant.in_(tenants), jobs.c.idempotency_key.in_(keys)))
    ).mappings()
    wanted = set(keyed)
    found: dict[tuple[str, str], Mapping[Any, Any]] = {}
    for row in rows:
        pair = (str(row["tenant"]), str(row["idempotency_key"]))
        if pair in wanted:
            found[pair] = row
    return found


def submit_batch(db: Database, batch: Sequence[SubmitRequest]) -> list[Outcome]:
    """Insert a batch of submits in one transaction; outcomes in the batch's order.

    Raises (and commits nothing) if the transaction fails; the caller then retries the
    requests one by one.
    """
    values = [item.values() for item in batch]
    first: dict[tuple[str, str], int] = {}  # (tenant, key) -> its first position in the batch
    fresh: list[int] = []  # positions that try to insert a row
    repeats: list[tuple[int, int]] = []  # (position, position of the first with its key)
    for i, item in enumerate(batch):
        if item.idempotency_key is None:
            fresh.append(i)
            continue
        pair = (item.tenant, item.idempotency_key)
        if pair in first:
            repeats.append((i, first[pair]))
        else:
            first[pair] = i
            fresh.append(i)
    with db.write() as conn:
        rows = [values[i] for i in fresh]
        if db.is_sqlite:
            inserted = _insert_sqlite(conn, rows, keyed=bool(first))
        else:
            inserted = bulk_pg.insert_submits(conn, rows)
        made = [i for i in fresh if values[i]["id"] in inserted]
        taken = {i for i in fresh if values[i]["id"] not in inserted}  # retries of old keys
        taken_pairs = [pair for pair, i in first.items() if i in taken]
        existing = _existing_keys(conn, taken_pairs)
        if len(existing) != len(taken_pairs):  # skipped, yet not found: roll back, retry alone
            msg = "Idempotency-Key: a conflicting row could not be read back"
            raise RuntimeError(msg)
    blank = dict.fromkeys(jobs.c.keys())
    made_set = set(made)
    outcomes: dict[int, Outcome] = {
        i: store.Submitted(blank | values[i], created=True) for i in made
    }

    def replay(i: int, source: int) -> Outcome:
        item = batch[source]
        if source in made_set:
            row: Mapping[Any, Any] = blank | values[source]
        else:
            assert item.idempotency_key is not None
            row = blank | dict(existing[(item.tenant, item.idempotency_key)])
        try:
            return store.replay(row, values[i]["request_hash"])
        except store.IdempotencyConflictError as exc:
            return exc

    # Past the commit: nothing below may raise, or the fallback would insert twice.
    for i in sorted(taken):
        outcomes[i] = replay(i, i)
    for i, source in repeats:
        outcomes[i] = replay(i, source)
    return [outcomes[i] for i in range(len(batch))]


class SubmitBatcher:
    """The writer thread that group-commits submits (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[SubmitRequest | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        with self._lock:
            if self._thread is None:
                # A daemon: if the process exits without stop(), the requests still queued
                # had no answer yet, so dropping them breaks no promise (and exit cannot hang).
                self._thread = threading.Thread(target=self._run, name="submit-writer", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def enqueue(self, item: SubmitRequest) -> Future[store.Submitted]:
        """Queue a submit; the future completes once it is committed (or has failed)."""
        future = item.future = item.future or Future()
        if self._thread is None:
            future.set_exception(RuntimeError("submit writer is not running"))
        else:
            self._queue.put(item)
        return future

    def submit(self, item: SubmitRequest) -> store.Submitted:
        """Queue a submit and block until it is committed."""
        return self.enqueue(item).result()

    async def submit_async(self, item: SubmitRequest) -> store.Submitted:
        """Queue a submit and wait, without blocking the event loop, until committed.

        The waiter is a plain asyncio future, completed from the writer thread together
        with the rest of its batch: one wake-up of the event loop per batch, not one
        thread-safe future and one wake-up per request.
        """
        if self._thread is None:
            msg = "submit writer is not running"
            raise RuntimeError(msg)
        item.waiter = asyncio.get_running_loop().create_future()
        self._queue.put(item)
        return await item.waiter

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self.commit_batch(batch)

    def commit_batch(self, batch: list[SubmitRequest]) -> None:
        """Commit one batch and complete its futures (what the writer thread does per batch).

        Public so a test can hand it an exact batch; the API goes through :meth:`enqueue`.
        """
        # Every queued request is committed, even one whose caller has gone away: it got
        # no 201, and a retry with its key finds it.
        try:
            outcomes = submit_batch(self.db, batch)
        except OUTAGE_ERRORS as exc:
            # The database itself failed (down, unreachable, locked out): no one request is
            # to blame, and retrying each alone would only meet the outage once per request
            # (a connect timeout each). All of them get the error (a 503: retry later).
            log.warning("a batch of %d submits failed: %s", len(batch), exc)
            outcomes = [exc] * len(batch)
        except Exception as exc:  # noqa: BLE001 (any other failure: isolate it, one request each)
            log.warning("a batch of %d submits failed (%s); retrying one by one", len(batch), exc)
            outcomes = [self._one(item) for item in batch]
        _deliver(batch, outcomes)
        created = any(isinstance(o, store.Submitted) and o.created for o in outcomes)
        if created and self.on_commit is not None:
            self.on_commit()

    def _one(self, item: SubmitRequest) -> Outcome:
        try:
            return store.submit(
                self.db,
                item.req,
                tenant=item.tenant,
                token_id=item.token_id,
                now=item.now,
                idempotency_key=item.idempotency_key,
            )
        except Exception as exc:  # noqa: BLE001 (handed to the request that caused it)
            return exc


def _deliver(batch: Sequence[SubmitRequest], outcomes: Sequence[Outcome]) -> None:
    """Hand each outcome to its waiter: threads' futures at once, each event loop's in one
    callback per loop (run on that loop's thread, as asyncio futures require)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.waiter is not None:
            by_loop.setdefault(item.waiter.get_loop(), []).append((item.waiter, outcome))
        if item.future is not None:
            _settle(item.future, outcome)
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, pairs)
        except RuntimeError:  # that loop is closed: nobody waits on it any more
            log.debug("an event loop closed before its %d submits were answered", len(pairs))


def _settle(future: Future[Any] | asyncio.Future[Any], outcome: Outcome) -> None:
    if future.done():  # the waiter gave up (cancelled); the job is committed regardless
        return
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except (InvalidStateError, asyncio.InvalidStateError):  # cancelled since the check
        pass


def _settle_all(pairs: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, outcome in pairs:
        _settle(future, outcome)
