"""Migrations: they build exactly the schema the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aifactory.service.auth import (
    Authenticator,
    Role,
    create_token,
    revocation_version,
    revoke_token,
)
from aifactory.service.db import Database, DatabaseError, alembic_config
from aifactory.service.tables import metadata, tokens
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
    assert db.current_revision() == "0003"
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_0002_keeps_the_tokens_of_0001_and_counts_revocations(db: Database) -> None:
    """Upgrading a live 0001 database: its tokens keep working (no expiry), a revocation
    moves the counter, and the downgrade back to 0001 works too."""
    db.upgrade("0001")
    with db.write() as conn:
        conn.execute(
            sa.insert(tokens).values(
                token_hash="a" * 64, tenant="lab", role="member", note="", created_at=1.0
            )
        )
    db.upgrade("0002")
    assert db.current_revision() == "0002"
    with db.read() as conn:
        assert conn.execute(sa.select(tokens.c.expires_at)).scalar_one() is None
    token_id, token = create_token(db, tenant="lab", role=Role.MEMBER, now=1.0, expires_at=9.0)
    auth = Authenticator(db, lambda: 2.0)
    assert auth.resolve(token) is not None
    with db.read() as conn:
        before = revocation_version(conn)
    assert revoke_token(db, token_id, now=3.0)
    with db.read() as conn:
        assert revocation_version(conn) == before + 1
    cfg = alembic_config()
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
        conn.commit()
    assert db.current_revision() == "0001"
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tokens)).scalar_one() == 2


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
