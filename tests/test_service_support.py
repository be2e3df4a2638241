"""Helpers shared by the control-plane tests (no tests here).

Every database test runs on SQLite and on PostgreSQL. The PostgreSQL runs get a fresh
schema each (dropped afterwards), so tests are repeatable and do not see each other;
they are skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.service.db import Database
from aifactory.service.executors.base import Launch, RunState, Status

PG_URL = os.environ.get(
    "AIFACTORY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

DB_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@cache
def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 (any failure to connect means: skip, say why)
        return f"PostgreSQL at {PG_URL} unreachable ({type(exc).__name__}: {exc})"
    return None


def migrated_database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of ``kind`` with the schema applied, disposed afterwards (for a
    test's ``db`` fixture: ``yield from migrated_database(request.param, tmp_path)``)."""
    for url in database_url(kind, tmp_path):
        database = Database(url)
        database.upgrade()
        yield database
        database.dispose()


def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of ``kind``; PostgreSQL: a schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/aifactory.db"
        return
    why = pg_unreachable()
    if why is not None:
        pytest.skip(why)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class FakeExecutor:
    """An executor whose jobs end when the test says so; it checks no GPU is held twice.

    Several replicas may share one instance (like several service processes sharing one
    machine): a start on a GPU that another started job still holds is recorded as a
    violation, which the two-replica test asserts never happens.
    """

    name = "fake"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.launches: dict[str, Launch] = {}
        self.states: dict[str, Status] = {}
        self.cancelled: list[str] = []
        self.held: dict[tuple[str, int], str] = {}
        self.violations: list[str] = []
        self.starts = 0

    def _gpus(self, launch: Launch) -> list[tuple[str, int]]:
        return [(s.node, g) for s in launch.nodes for g in s.gpus]

    def start(self, launch: Launch) -> str:
        with self.lock:
            self.starts += 1
            for key in self._gpus(launch):
                holder = self.held.get(key)
                if holder is not None:
                    self.violations.append(f"{key} given to {launch.job_id} while {holder} runs")
                self.held[key] = launch.job_id
            handle = f"fake:{launch.job_id}:{self.starts}"
            self.launches[handle] = launch
            self.states[handle] = Status(RunState.RUNNING)
            return handle

    def _release(self, handle: str) -> None:
        launch = self.launches.get(handle)
        if launch is None:
            return
        for key in self._gpus(launch):
            if self.held.get(key) == launch.job_id:
                del self.held[key]

    def find(self, name: str) -> str | None:
        with self.lock:
            return next((h for h, ln in self.launches.items() if ln.name == name), None)

    def started(self, job_id: int | str, attempt: int) -> int:
        """How many times attempt ``attempt`` of job ``job_id`` was started."""
        with self.lock:
            return sum(
                1
                for ln in self.launches.values()
                if ln.job_id == str(job_id) and ln.attempt == attempt
            )

    def poll(self, handle: str) -> Status:
        with self.lock:
            return self.states.get(handle, Status(RunState.LOST, detail="unknown handle"))

    def cancel(self, handle: str) -> None:
        with self.lock:
            self.cancelled.append(handle)
            if handle in self.states:
                self.states[handle] = Status(RunState.CANCELLED)
            self._release(handle)

    def end(self, job_id: str, code: int = 0) -> None:
        """Make a running job exit with ``code``."""
        with self.lock:
            for handle, launch in self.launches.items():
                if launch.job_id == job_id and self.states[handle].state is RunState.RUNNING:
                    state = RunState.COMPLETED if code == 0 else RunState.FAILED
                    self.states[handle] = Status(state, exit_code=code)
                    self._release(handle)

    def running(self) -> list[str]:
        """Job ids the backend is running."""
        with self.lock:
            return [
                self.launches[h].job_id
                for h, s in self.states.items()
                if s.state is RunState.RUNNING
            ]


def wait_for(predicate: object, timeout: float = 10.0, every: float = 0.02) -> None:
    """Poll ``predicate()`` until true; fail the test with a message on timeout."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    pytest.fail(f"condition not met within {timeout} s")
