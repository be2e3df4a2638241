"""The authenticator's token cache: a hit costs no database read; a revocation reaches
every replica through the database's revocation counter within ``CACHE_TTL_S``; an
expired token is refused at its expiry, cached or not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from aifactory.service.api import Service, create_app
from aifactory.service.auth import (
    CACHE_TTL_S,
    Authenticator,
    Principal,
    Role,
    create_token,
    revoke_token,
)
from aifactory.service.db import Database
from aifactory.service.settings import ServiceSettings
from test_service_support import DB_PARAMS, FakeExecutor, migrated_database


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """Counts the statements run on a database's engine."""

    def __init__(self, db: Database) -> None:
        self.n = 0
        sa.event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: object) -> None:
        self.n += 1


def test_a_hit_reads_nothing_and_a_revocation_is_seen_within_the_window(db: Database) -> None:
    clock = Clock()
    auth = Authenticator(db, clock)
    token_id, token = create_token(db, tenant="lab", role=Role.MEMBER, now=clock.now)
    assert auth.cached(token) == (False, None)  # never seen: the caller must resolve
    who = auth.resolve(token)
    assert who == Principal(token_id, "lab", Role.MEMBER)
    reads = Reads(db) if db.is_sqlite else None
    assert auth.cached(token) == (True, who)
    assert auth.resolve(token) == who
    if reads is not None:
        assert reads.n == 0
    assert revoke_token(db, token_id, now=clock.now)
    clock.now += CACHE_TTL_S / 2
    assert auth.cached(token) == (True, who)  # within the window: still accepted
    clock.now += CACHE_TTL_S / 2
    assert auth.cached(token) == (False, None)  # the counter is due: no answer without it
    assert auth.resolve(token) is None
    assert auth.cached(token) == (True, None)  # and the refusal is cached in turn


def test_a_revocation_empties_another_replicas_cache_of_every_token(db: Database) -> None:
    clock = Clock()
    here, there = Authenticator(db, clock), Authenticator(db, clock)
    kept_id, kept = create_token(db, tenant="lab", role=Role.MEMBER, now=clock.now)
    gone_id, gone = create_token(db, tenant="lab", role=Role.MEMBER, now=clock.now)
    assert there.resolve(kept) is not None
    assert there.resolve(gone) is not None
    assert revoke_token(db, gone_id, now=clock.now)
    here.invalidate()
    assert here.resolve(gone) is None
    clock.now += CACHE_TTL_S
    assert there.cached(gone) == (False, None)
    assert there.resolve(gone) is None
    assert there.cached(kept) == (False, None)  # the whole cache went with the new counter
    assert there.resolve(kept) == Principal(kept_id, "lab", Role.MEMBER)


def test_an_expired_token_is_refused_at_its_expiry_even_when_cached(db: Database) -> None:
    clock = Clock()
    auth = Authenticator(db, clock)
    _, token = create_token(
        db, tenant="lab", role=Role.MEMBER, now=clock.now, expires_at=clock.now + 0.2
    )
    assert auth.resolve(token) is not None
    clock.now += 0.2
    assert auth.cached(token) == (True, None)
    assert auth.resolve(token) is None
    with pytest.raises(ValueError, match="expires_at"):
        create_token(db, tenant="lab", role=Role.MEMBER, now=clock.now, expires_at=clock.now)


def test_unknown_tokens_are_refused_and_cached_as_refused(db: Database) -> None:
    auth = Authenticator(db, Clock())
    assert auth.resolve("aif_not-a-token") is None
    assert auth.cached("aif_not-a-token") == (True, None)


def test_two_replicas_over_one_database_refuse_a_revoked_token_within_a_second(
    tmp_path: Path,
) -> None:
    """Revoked through replica A's API, the token is refused by replica B (which had it
    cached, and runs the real cache window) within a second."""
    url = f"sqlite:///{tmp_path}/shared.db"

    def replica(name: str) -> Service:
        settings = ServiceSettings(
            database_url=url, fleet="demo", data_dir=tmp_path / name, run_scheduler=False
        )
        return Service(settings, executor=FakeExecutor())

    a, b = replica("a"), replica("b")
    with TestClient(create_app(a)) as api_a, TestClient(create_app(b)) as api_b:
        _, admin = create_token(a.db, tenant=None, role=Role.ADMIN, now=time.time())
        token_id, token = create_token(a.db, tenant="lab", role=Role.MEMBER, now=time.time())
        mine = {"Authorization": f"Bearer {token}"}
        assert api_b.get("/v1/jobs", headers=mine).status_code == 200  # now cached in B
        assert api_b.get("/v1/jobs", headers=mine).status_code == 200
        revoked = api_a.delete(
            f"/v1/tokens/{token_id}", headers={"Authorization": f"Bearer {admin}"}
        )
        assert revoked.status_code == 204
        at = time.monotonic()
        assert api_a.get("/v1/jobs", headers=mine).status_code == 401  # A: at once
        while api_b.get("/v1/jobs", headers=mine).status_code == 200:
            assert time.monotonic() - at < 1.0, "replica B still accepts the revoked token"
            time.sleep(0.01)
        took = time.monotonic() - at
        assert api_b.get("/v1/jobs", headers=mine).status_code == 401
        print(f"replica B refused the revoked token {took * 1000:.0f} ms after the revocation")
