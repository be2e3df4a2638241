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
from aifactory.service.jobrows import live_jobs, to_job
from aifactory.service.tables import jobs, metadata, tokens
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
    assert db.current_revision() == "0007"
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


def test_0004_reads_the_jobs_of_0003_as_asking_for_no_memory_and_one_class(
    db: Database,
) -> None:
    """A job submitted before revision 0004 runs as before after the upgrade (no memory
    asked, its one class or any), and the downgrade back to 0003 keeps the job."""
    db.upgrade("0003")
    with db.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (tenant, name, gpus, gpu_class, command, time_limit_s, "
                "priority_class, preemptible, state, submitted_at, attempts) VALUES "
                "('lab', 'old', 8, 'h100', 'true', 60.0, 'normal', true, 'pending', 1.0, 0)"
            )
        )
    db.upgrade()
    with db.read() as conn:
        (row,) = live_jobs(conn)
    assert (row["gpu_classes"], row["hbm_gb_per_gpu"]) == (None, None)
    job = to_job(row)
    assert (job.gpu_class, job.gpu_classes, job.hbm_gb_per_gpu) == ("h100", (), None)
    with db.write() as conn:
        conn.execute(sa.update(jobs).values(gpu_class=None, gpu_classes=["h100", "gb200"]))
    with db.read() as conn:
        assert to_job(live_jobs(conn)[0]).gpu_classes == ("h100", "gb200")
    cfg = alembic_config()
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
        conn.commit()
    assert db.current_revision() == "0003"
    with db.read() as conn:
        assert conn.execute(sa.text("SELECT name FROM jobs")).scalar_one() == "old"


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
