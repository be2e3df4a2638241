"""The authenticator's token cache: a hit costs no database read, and a revoked token is
refused once the cache entry is older than ``CACHE_TTL_S`` (the documented window)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.service.auth import (
    CACHE_TTL_S,
    Authenticator,
    Principal,
    Role,
    create_token,
    revoke_token,
)
from aifactory.service.db import Database
from test_service_support import DB_PARAMS, migrated_database


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database(request.param, tmp_path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_token_is_refused_once_its_cache_entry_expires(db: Database) -> None:
    clock = Clock()
    auth = Authenticator(db, clock)
    token_id, token = create_token(db, tenant="lab", role=Role.MEMBER, now=clock.now)
    assert auth.cached(token) == (False, None)  # never seen: the caller must resolve
    who = auth.resolve(token)
    assert who == Principal(token_id, "lab", Role.MEMBER)
    assert auth.cached(token) == (True, who)
    assert revoke_token(db, token_id, now=clock.now)
    clock.now += CACHE_TTL_S / 2
    assert auth.cached(token) == (True, who)  # within the window: still accepted
    assert auth.resolve(token) == who
    clock.now += CACHE_TTL_S
    assert auth.cached(token) == (False, None)  # expired: no answer without the database
    assert auth.resolve(token) is None
    assert auth.cached(token) == (True, None)  # and the refusal is cached in turn


def test_unknown_tokens_are_refused_and_cached_as_refused(db: Database) -> None:
    auth = Authenticator(db, Clock())
    assert auth.resolve("aif_not-a-token") is None
    assert auth.cached("aif_not-a-token") == (True, None)
