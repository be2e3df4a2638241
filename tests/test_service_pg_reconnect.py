"""PostgreSQL connections dropped under the service (a server restart, a failover, an
idle timeout): submits fail with a 503 at most briefly, then work again, and every job
that got a 201 is stored once. Only this test's own backends are terminated (they are
found by a unique application_name), so other users of the server are not touched."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from aifactory.service import auth
from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from test_service_support import PG_URL, FakeExecutor, database_url, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def named_url(tmp_path: Path) -> Iterator[tuple[str, str]]:
    name = f"aif_test_{uuid.uuid4().hex[:10]}"
    for url in database_url("postgres", tmp_path):
        yield f"{url}&application_name={name}", name


def terminate_backends(app_name: str) -> int:
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": app_name},
        ).scalar_one()
    admin.dispose()
    return int(killed)


def test_submits_recover_after_the_server_drops_every_connection(
    named_url: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, app_name = named_url
    monkeypatch.setattr(auth, "CACHE_TTL_S", 0.0)  # every request also reads its token
    settings = ServiceSettings(
        database_url=url, fleet="demo", data_dir=tmp_path, tick_s=0.05, lock_retry_s=0.05
    )
    service = Service(settings, executor=FakeExecutor())
    with TestClient(create_app(service)) as client:
        _, token = create_token(service.db, tenant="lab", role=Role.MEMBER, now=time.time())
        headers = {"Authorization": f"Bearer {token}"}
        body = {"gpus": 1, "command": "true"}
        assert client.post("/v1/jobs", json=body, headers=headers).status_code == 201
        wait_for(lambda: service.loop is not None and service.loop.leading)
        assert terminate_backends(app_name) > 0
        created: list[int] = []
        failures = 0
        for _ in range(20):
            resp = client.post("/v1/jobs", json=body, headers=headers)
            if resp.status_code == 201:
                created.append(resp.json()["id"])
            else:
                assert resp.status_code == 503, resp.text
                failures += 1
        # the first statement on a stale connection fails; SQLAlchemy then replaces them all
        assert failures <= 2
        assert len(created) == 20 - failures
        # the scheduler lost its lock's session too; it leads again and starts the jobs
        wait_for(lambda: service.loop is not None and service.loop.leading, timeout=20)

        def started() -> bool:
            with service.db.read() as conn:
                states = conn.execute(sa.select(jobs.c.state).where(jobs.c.id.in_(created)))
                return {s[0] for s in states} == {"running"}

        wait_for(started, timeout=20)
        with service.db.read() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
        assert stored == 1 + len(created)  # every 201 once; the 503s stored nothing
