"""Leadership: only one replica's scheduler acts on a database at a time.

PostgreSQL: a session-level advisory lock held on a dedicated connection; it is released
by the server the moment that connection dies, so a crashed leader never blocks the
others. The key is scoped to the current schema, so test schemas do not contend.
SQLite: an exclusive ``flock`` on a file beside the database (all replicas of a SQLite
database are on one host); the kernel drops it when the process dies.

Whatever a leader believes, the ``allocations`` table's primary key is the last line of
defence: a GPU can be inserted there only once.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from aifactory.service.db import Database

log = logging.getLogger(__name__)

LEADER_LOCK_CLASS = 0x41494600  # "AIF\0"


class LeaderLock(Protocol):
    """A non-blocking, process-death-safe exclusive lock."""

    def acquire(self) -> bool:
        """Try once; True if this replica now leads."""
        ...

    def held(self) -> bool:
        """Whether the lock is (still) held."""
        ...

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        ...


class PgAdvisoryLock:
    """``pg_try_advisory_lock`` on a connection kept open while leading."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        """Try once to take the lock."""
        if self._conn is not None:
            return self.held()
        conn = self._db.engine.connect()
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:c, hashtext(current_schema()))"),
                {"c": LEADER_LOCK_CLASS},
            ).scalar_one()
            conn.commit()
        except SQLAlchemyError:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        """True while the lock's connection is alive (the server holds the lock for it)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar_one()
            self._conn.commit()
        except SQLAlchemyError:
            log.warning("leader lock connection lost")
            self._drop()
            return False
        return True

    def release(self) -> None:
        """Unlock and close the connection."""
        if self._conn is None:
            return
        try:
            self._conn.execute(
                text("SELECT pg_advisory_unlock(:c, hashtext(current_schema()))"),
                {"c": LEADER_LOCK_CLASS},
            )
            self._conn.commit()
        except SQLAlchemyError:
            log.warning("could not unlock cleanly; closing the connection drops the lock")
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # never back to the pool: the lock dies with it
                self._conn.close()
            except SQLAlchemyError:
                log.debug("closing a dead lock connection failed", exc_info=True)
            self._conn = None


class FileLock:
    """An exclusive ``flock`` on ``path``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Try once to take the lock."""
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Unlock (closing the descriptor drops the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def leader_lock(db: Database) -> LeaderLock:
    """The right lock for the database's backend."""
    path = db.sqlite_path
    if path is not None:
        return FileLock(path.with_name(path.name + ".scheduler.lock"))
    return PgAdvisoryLock(db)
