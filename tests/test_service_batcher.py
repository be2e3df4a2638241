"""Group commit of submits: every request committed exactly once, idempotency within and
across batches, and one bad request failing alone. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from aifactory.service import batcher as batcher_module
from aifactory.service import store
from aifactory.service.batcher import SubmitBatcher, SubmitRequest, submit_batch
from aifactory.service.db import Database
from aifactory.service.schemas import JobSubmit
from aifactory.service.tables import job_events, jobs
from test_service_support import DB_PARAMS, migrated_database


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


def req(
    name: str = "job", gpus: int = 1, key: str | None = None, tenant: str = "lab"
) -> SubmitRequest:
    body = JobSubmit(name=name, gpus=gpus, gpu_class="h100", command="true")
    return SubmitRequest(body, tenant, 1, time.time(), key, future=Future())


def stored(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(sa.select(jobs).order_by(jobs.c.id)).mappings()
        return [dict(r) for r in rows]


def submitted_events(db: Database) -> dict[int, int]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(job_events.c.job_id, sa.func.count())
            .where(job_events.c.detail == "submitted")
            .group_by(job_events.c.job_id)
        )
        return {int(r[0]): int(r[1]) for r in rows}


def test_concurrent_submits_are_all_committed_exactly_once(db: Database) -> None:
    woken = threading.Event()
    writer = SubmitBatcher(db, on_commit=woken.set)
    writer.start()
    results: list[store.Submitted] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(40):
            done = writer.submit(req(name=f"c{n}-{i}", key=f"k{n}-{i}" if i % 2 else None))
            with lock:
                results.append(done)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    writer.stop()
    assert woken.is_set()
    assert len(results) == 320
    assert all(r.created for r in results)
    rows = stored(db)
    assert len(rows) == 320
    assert sorted(int(r.job["id"]) for r in results) == [int(r["id"]) for r in rows]
    by_id = {int(r["id"]): r for r in rows}
    for r in results:  # what each caller was told is what the database holds
        row = by_id[int(r.job["id"])]
        assert (row["name"], row["idempotency_key"]) == (r.job["name"], r.job["idempotency_key"])
        assert store.to_view(r.job) == store.to_view(row)
    assert submitted_events(db) == dict.fromkeys(by_id, 1)


def test_idempotency_within_one_batch(db: Database) -> None:
    first = req(name="a", key="k")
    outcomes = submit_batch(
        db,
        [
            first,
            req(name="a", key="k"),  # a retry of the first, in the same batch
            req(name="b", key="k"),  # the same key with another body
            req(name="a", key="k", tenant="startup"),  # another tenant's key space
            req(name="c"),
        ],
    )
    made, retry, clash, other, plain = outcomes
    assert isinstance(made, store.Submitted)
    assert made.created
    assert isinstance(retry, store.Submitted)
    assert not retry.created
    assert retry.job["id"] == made.job["id"]
    assert isinstance(clash, store.IdempotencyConflictError)
    assert isinstance(other, store.Submitted)
    assert other.created
    assert isinstance(plain, store.Submitted)
    assert plain.created
    assert len(stored(db)) == 3
    assert len(submitted_events(db)) == 3


def test_idempotency_across_batches(db: Database) -> None:
    (made,) = submit_batch(db, [req(name="a", key="k")])
    assert isinstance(made, store.Submitted)
    again, clash, fresh = submit_batch(
        db, [req(name="a", key="k"), req(name="b", key="k"), req(name="d", key="k2")]
    )
    assert isinstance(again, store.Submitted)
    assert not again.created
    assert again.job["id"] == made.job["id"]
    assert store.to_view(again.job) == store.to_view(made.job)
    assert isinstance(clash, store.IdempotencyConflictError)
    assert isinstance(fresh, store.Submitted)
    assert fresh.created
    assert len(stored(db)) == 2


def test_a_bad_request_fails_alone_and_the_rest_of_its_batch_commits_once(
    db: Database,
) -> None:
    # a body pydantic never saw (no command): the database refuses it (NOT NULL)
    bad = SubmitRequest(
        JobSubmit.model_construct(name="bad", gpus=1, command=None),
        "lab",
        1,
        time.time(),
        "kb",
        future=Future(),
    )
    good = [req(name=f"g{i}", key=f"kg{i}" if i % 2 else None) for i in range(5)]
    batch = [good[0], good[1], bad, *good[2:]]
    SubmitBatcher(db).commit_batch(batch)
    with pytest.raises(IntegrityError):
        bad.future.result(0)
    done = [g.future.result(0) for g in good]
    assert all(d.created for d in done)
    rows = stored(db)
    assert sorted(r["name"] for r in rows) == [f"g{i}" for i in range(5)]
    assert sorted(int(d.job["id"]) for d in done) == [int(r["id"]) for r in rows]
    assert submitted_events(db) == {int(r["id"]): 1 for r in rows}


def test_a_batch_failing_after_its_inserts_is_rolled_back_and_retried_one_by_one(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's rows are written, then it fails (here: the row holding a retried key
    cannot be read back): nothing of it may stay, and each request is then retried on its
    own, so each job exists once."""
    theirs = store.submit(
        db, req(name="a").req, tenant="lab", token_id=1, now=time.time(), idempotency_key="k"
    )
    monkeypatch.setattr(batcher_module, "_existing_keys", lambda conn, keyed: {})
    retry, keyed, plain = req(name="a", key="k"), req(name="b", key="k2"), req(name="c")
    SubmitBatcher(db).commit_batch([retry, keyed, plain])
    replayed = retry.future.result(0)
    assert not replayed.created
    assert replayed.job["id"] == theirs.job["id"]
    assert keyed.future.result(0).created
    assert plain.future.result(0).created
    assert sorted(r["name"] for r in stored(db)) == ["a", "b", "c"]
    assert len(submitted_events(db)) == 3


def test_two_replicas_racing_on_the_same_keys_make_one_job_per_key(db: Database) -> None:
    other = Database(db.url.render_as_string(hide_password=False))
    writers = [SubmitBatcher(db), SubmitBatcher(other)]
    for w in writers:
        w.start()
    keys = [f"k{i}" for i in range(60)]
    try:
        futures = [(k, w.enqueue(req(name=k, key=k))) for k in keys for w in writers]
        answers = [(k, f.result(30)) for k, f in futures]
    finally:
        for w in writers:
            w.stop()
        other.dispose()
    rows = stored(db)
    assert sorted(r["idempotency_key"] for r in rows) == sorted(keys)
    ids = {r["idempotency_key"]: int(r["id"]) for r in rows}
    assert all(int(done.job["id"]) == ids[k] for k, done in answers)
    created = sorted(k for k, done in answers if done.created)
    assert created == sorted(keys)  # one 201 per key, the other answer a 200 replay


def test_a_stopped_writer_commits_what_was_queued_and_refuses_more(db: Database) -> None:
    writer = SubmitBatcher(db)
    writer.start()
    futures = [writer.enqueue(req(name=f"q{i}")) for i in range(20)]
    writer.stop()
    assert all(f.result(0).created for f in futures)
    late = writer.enqueue(req(name="late"))
    with pytest.raises(RuntimeError, match="not running"):
        late.result(0)
    assert len(stored(db)) == 20


def test_event_loop_waiters_are_answered_and_one_that_gives_up_loses_nothing(
    db: Database,
) -> None:
    writer = SubmitBatcher(db)
    writer.start()

    async def main() -> list[object]:
        tasks = [asyncio.create_task(writer.submit_async(req(name=f"a{i}"))) for i in range(30)]
        await asyncio.sleep(0)  # every task has queued its request and waits
        tasks[0].cancel()  # its caller goes away before (or just after) the commit
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    try:
        results = asyncio.run(main())
    finally:
        writer.stop()
    first, rest = results[0], results[1:]
    assert isinstance(first, asyncio.CancelledError) or (
        isinstance(first, store.Submitted) and first.created
    )
    assert all(isinstance(r, store.Submitted) and r.created for r in rest)
    assert len(stored(db)) == 30  # the one that gave up was queued, so it is committed


def test_a_database_outage_fails_the_whole_batch_at_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Down or unreachable: every request gets the error (the API's 503), and none is
    retried alone, which would only meet the outage once per request."""
    down = OperationalError("INSERT ...", {}, Exception("connection refused"))

    def outage(*args: object, **kwargs: object) -> None:
        raise down

    def must_not_retry(*args: object, **kwargs: object) -> None:
        pytest.fail("an outage must not be retried request by request")

    monkeypatch.setattr(batcher_module, "submit_batch", outage)
    monkeypatch.setattr(store, "submit", must_not_retry)
    batch = [req(name=f"o{i}", key=f"ko{i}" if i % 2 else None) for i in range(4)]
    SubmitBatcher(db).commit_batch(batch)
    for item in batch:
        assert item.future is not None
        with pytest.raises(OperationalError):
            item.future.result(0)
    assert stored(db) == []
