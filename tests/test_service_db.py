"""Migrations: they build exactly the schema the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aifactory.service.db import Database, DatabaseError
from aifactory.service.tables import metadata
from test_service_support import DB_PARAMS, database_url


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    for url in database_url(request.param, tmp_path):
        database = Database(url)
        yield database
        database.dispose()


def test_migrations_match_the_tables_and_are_idempotent(db: Database) -> None:
    assert db.current_revision() is None
    db.upgrade()
    db.upgrade()
    assert db.current_revision() == "0001"
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/x/wal.db")
    db.upgrade()
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [("mysql://h/db", "unsupported backend"), ("sqlite://", "in-memory"), ("::", "cannot parse")],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        Database(url)
