"""Nothing lost: 200 submissions from 8 concurrent clients, ``kill -9`` of the server midway,
restart. Every job that got a 201 is there exactly once, and the local jobs that were running
when the server died are reconciled (they end completed, none stays running or is duplicated).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from aifactory.service.tables import job_events, jobs
from test_service_support import DB_PARAMS, database_url, wait_for

CLIENTS = 8
PER_CLIENT = 25


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, port: int, data: Path) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "aifactory",
            "serve",
            "--database-url",
            url,
            "--port",
            str(port),
            "--executor",
            "local",
            "--data-dir",
            str(data),
            "--tick",
            "0.1",
            "--log-level",
            "warning",
        ]
        self.base = f"http://127.0.0.1:{port}"
        self.log = (data / "server.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log)
        wait_for(self.healthy, timeout=30, every=0.1)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def test_kill9_midway_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    db.upgrade()
    _, token = create_token(db, tenant="lab", role=Role.MEMBER, now=time.time())
    server = Server(db_url, free_port(), tmp_path)
    server.start()
    got: dict[str, int] = {}  # idempotency key -> job id, for every 201/200 received
    created: dict[str, int] = {}  # only the 201s
    lock = threading.Lock()
    accepted = threading.Semaphore(0)

    def client(n: int) -> None:
        http = httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        for i in range(PER_CLIENT):
            key = f"c{n}-{i}"
            body = {"name": key, "gpus": 1, "gpu_class": "h100", "command": "sleep 1"}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    resp = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    time.sleep(0.1)  # server down: retry with the same key
                    continue
                if resp.status_code in (200, 201):
                    with lock:
                        got[key] = resp.json()["id"]
                        if resp.status_code == 201:
                            created[key] = resp.json()["id"]
                    accepted.release()
                    break
                time.sleep(0.1)  # 503 while the database is busy: retry
        http.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for _ in range(CLIENTS * PER_CLIENT // 2):
            assert accepted.acquire(timeout=60)
        server.kill9()
        with db.read() as conn:
            running_at_kill = conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == "running")
            ).scalar_one()
        time.sleep(0.5)
        server.start()
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads)

        def settled() -> bool:
            with db.read() as conn:
                return not conn.execute(
                    sa.select(jobs.c.id).where(jobs.c.state.in_(["pending", "running"]))
                ).first()

        wait_for(settled, timeout=90, every=0.25)
    finally:
        server.stop()

    assert len(got) == CLIENTS * PER_CLIENT
    assert running_at_kill > 0  # the restart did have running local jobs to reconcile
    with db.read() as conn:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.idempotency_key, jobs.c.state, jobs.c.exit_code)
        ).all()
        events = conn.execute(
            sa.select(job_events.c.job_id, sa.func.count())
            .where(job_events.c.state == "running")
            .group_by(job_events.c.job_id)
        ).all()
    by_key: dict[str, list[int]] = {}
    for r in rows:
        by_key.setdefault(r.idempotency_key, []).append(r.id)
    # every acknowledged job exactly once, with the id the client was given
    for key, job_id in got.items():
        assert by_key.get(key) == [job_id], key
    assert len(rows) == len(got)
    assert set(created.values()) <= {r.id for r in rows}
    # every job ran to completion: the ones running at the kill were reconciled, not lost
    assert {r.state for r in rows} == {"completed"}
    assert {r.exit_code for r in rows} == {0}
    starts = dict(events)
    assert all(n >= 1 for n in starts.values())
    db.dispose()
