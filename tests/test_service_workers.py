"""``aifactory serve --workers N``: settings reach the workers intact, SQLite is refused,
and on PostgreSQL several workers accept submits while exactly one schedules them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from aifactory.service.settings import ExecutorKind, LostPolicy, ServiceSettings
from aifactory.service.tables import jobs
from aifactory.service.workers import settings_from_env, settings_to_env
from test_service_support import database_url, wait_for


def test_settings_survive_the_trip_to_a_worker(tmp_path: Path) -> None:
    settings = ServiceSettings(
        database_url="postgresql+psycopg://u@h/db",
        fleet="korea-2025",
        executor=ExecutorKind.NOOP,
        data_dir=tmp_path / "data",
        policy="fifo",
        backfill="none",
        tick_s=0.25,
        lost_policy=LostPolicy.FAIL,
        run_scheduler=False,
        migrate=False,
    )
    assert settings_from_env(settings_to_env(settings)) == settings


def serve(url: str, port: int, data: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "aifactory",
        "serve",
        "--database-url",
        url,
        "--port",
        str(port),
        "--executor",
        "noop",
        "--data-dir",
        str(data),
        "--tick",
        "0.1",
        "--log-level",
        "warning",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    proc = serve(f"sqlite:///{tmp_path}/a.db", free_port(), tmp_path, "--workers", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert b"--workers" in out
    assert b"PostgreSQL" in out


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    yield from database_url("postgres", tmp_path)


@pytest.mark.postgres
def test_two_workers_accept_submits_and_one_schedules_them(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url)
    db.upgrade()
    _, token = create_token(db, tenant="lab", role=Role.MEMBER, now=time.time())
    port = free_port()
    proc = serve(pg_url, port, tmp_path, "--workers", "2")
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60, every=0.2)
        ids = []
        for i in range(40):  # a fresh connection each: the kernel spreads them over workers
            resp = httpx.post(
                f"{base}/v1/jobs",
                json={"gpus": 1, "gpu_class": "h100", "command": "true", "name": f"w{i}"},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"w{i}"},
                timeout=10,
            )
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        roles = {httpx.get(f"{base}/healthz", timeout=5).json()["scheduler"] for _ in range(30)}
        assert "leader" in roles

        def all_running() -> bool:
            with db.read() as conn:
                states = conn.execute(sa.select(jobs.c.state).where(jobs.c.id.in_(ids))).all()
            return len(states) == len(ids) and {s[0] for s in states} == {"running"}

        wait_for(all_running, timeout=30, every=0.1)
    finally:
        proc.terminate()
        proc.wait(30)
        db.dispose()
    assert len(set(ids)) == 40
