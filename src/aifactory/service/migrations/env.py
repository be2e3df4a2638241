"""Alembic environment: runs migrations on the connection the service hands over.

The service calls :func:`aifactory.service.db.upgrade`, which passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line (``alembic -c
src/aifactory/service/alembic.ini``) instead builds one from ``sqlalchemy.url``.
On PostgreSQL a transaction-scoped advisory lock serialises replicas that start together.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

from aifactory.service.tables import metadata

MIGRATION_LOCK_KEY = 0x41494601  # "AIF\x01": distinct from the scheduler's leader key


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the given connection, or one made from the configured URL."""
    config = context.config
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        msg = "sqlalchemy.url: not set (use `aifactory db upgrade --database-url ...`)"
        raise RuntimeError(msg)
    engine = create_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    msg = "offline (SQL script) migrations are not supported; use `aifactory db upgrade`"
    raise RuntimeError(msg)
run_migrations_online()
