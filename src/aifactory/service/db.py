"""Database access: engines for SQLite (the default) and PostgreSQL, and schema migrations.

SQLite runs in WAL mode so readers never block the writer, and every *write* transaction
starts with ``BEGIN IMMEDIATE``: with Python's default deferred ``BEGIN``, two writers that
both read first deadlock on the lock upgrade and one fails at once with "database is
locked", without waiting for the busy timeout. Reads use a second engine with a plain
``BEGIN`` so they never queue behind writers.

Durability, said plainly: SQLite runs with ``synchronous=NORMAL``, which in WAL mode
does not fsync at each commit, only at checkpoints. A committed transaction survives a
crash of the *process* (``kill -9``: the WAL is in the OS page cache and is replayed),
so "every job that got a 201 is there" holds across server crashes; it does not hold
across an OS crash or power loss, which can roll back the last commits. Where that
matters, use PostgreSQL (whose default ``synchronous_commit=on`` flushes the WAL at
every commit; group commit in :mod:`.batcher` makes that one flush per batch).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATA_DIR = Path("aifactory-data")
DEFAULT_URL = f"sqlite:///{DEFAULT_DATA_DIR}/aifactory.db"
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0


class DatabaseError(ValueError):
    """A database URL that cannot be used."""


class Database:
    """One database: a write path and a read path, and its migrations."""

    def __init__(self, url: str, *, pool_size: int = 16) -> None:
        try:
            self.url = make_url(url)
        except ArgumentError as exc:
            msg = f"database URL: cannot parse {url!r} ({exc})"
            raise DatabaseError(msg) from None
        backend = self.url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            msg = f"database URL: unsupported backend '{backend}' (use sqlite or postgresql)"
            raise DatabaseError(msg)
        self.is_sqlite = backend == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            path = self.sqlite_path
            if path is None:
                msg = "database URL: in-memory SQLite cannot be shared; give a file path"
                raise DatabaseError(msg)
            try:
                _private_sqlite(path)
            except OSError as exc:
                msg = f"database URL: cannot create {path}: {exc}"
                raise DatabaseError(msg) from exc
            self._write = _sqlite_engine(url, immediate=True, pool_size=pool_size)
            self._read = _sqlite_engine(url, immediate=False, pool_size=pool_size)
        else:
            self._write = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                # No ping before each checkout: it was one more round trip per transaction
                # (each a GIL hand-off for the thread under load), about 15% of the submit
                # rate. A connection the server dropped fails its first statement instead
                # (a 503 the client retries; the scheduler steps down and leads again), and
                # SQLAlchemy then replaces every pooled connection as stale.
                pool_pre_ping=False,
                # executemany as psycopg's pipeline of one short prepared statement, not
                # one long multi-row INSERT that the driver parses afresh every time
                use_insertmanyvalues=False,
            )
            self._read = self._write

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, for SQLite URLs that name one."""
        if not self.is_sqlite:
            return None
        db = self.url.database
        if not db or db == ":memory:" or db.startswith("file::memory:"):
            return None
        return Path(db)

    @property
    def engine(self) -> Engine:
        """The write engine (also used for dedicated connections such as leader locks)."""
        return self._write

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on exit, rolled back on an exception.

        On SQLite, writers of this process queue on a lock first: SQLite's own busy
        handler polls with sleeps of up to 100 ms, which made the p99 of a submit burst
        ten times its median. Other processes still meet the busy timeout.
        """
        if self._write_lock is None:
            with self._write.begin() as conn:
                yield conn
            return
        with self._write_lock, self._write.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot on PostgreSQL and SQLite WAL)."""
        with self._read.begin() as conn:
            yield conn

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision`` (idempotent)."""
        cfg = alembic_config()
        with self._write.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()

    def current_revision(self) -> str | None:
        """The schema's Alembic revision, or None for an empty database."""
        with self._read.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._write.dispose()
        if self._read is not self._write:
            self._read.dispose()


def _private_sqlite(path: Path) -> None:
    """Make the SQLite file (and a directory made for it) the service's alone: 0600, 0700.

    Jobs must never read or write the database. SQLite gives its ``-wal``, ``-shm`` and
    ``-journal`` files the database file's mode, so creating the file 0600 before SQLite
    does covers them; files left more open by an earlier version are tightened. A
    directory that already existed is left as it is (it may be shared, like ``/tmp``).
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        file = path.with_name(name)
        with suppress(FileNotFoundError):
            st = file.stat()
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
                file.chmod(stat.S_IMODE(st.st_mode) & 0o700)


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
